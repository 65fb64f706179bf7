//! The data directory is private whatever the umask: records, password hashes, the host key
//! and error reports are readable by sluice's user only.

use crate::common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Every file and directory under `root` (itself included) with its mode, symlinks not followed.
fn walk(root: &Path) -> Vec<(PathBuf, u32)> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(path) = todo.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        out.push((path.clone(), meta.permissions().mode() & 0o7777));
        if meta.is_dir() {
            todo.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    out
}

fn open_to_others(root: &Path) -> Vec<String> {
    walk(root)
        .into_iter()
        .filter(|(_, mode)| mode & 0o077 != 0)
        .map(|(p, m)| format!("{:o} {}", m, p.display()))
        .collect()
}

fn students(n: usize) -> String {
    let mut s = String::from("sisId,firstName,lastName,birthDate\n");
    for i in 0..n {
        s.push_str(&format!("S{i},First{i},Last{i},2010-01-01\n"));
    }
    s
}

fn imports(server: &Server) -> Vec<serde_json::Value> {
    serde_json::from_str(&server.cli_ok(&["imports", "--tenant", "acme", "--json"])).unwrap()
}

/// Under umask 022, the server and the CLI used to leave the database (records, password
/// hashes), its WAL, the error reports and uploads readable by everyone (0644). Everything
/// under the data directory grants nothing to group or others, and a data directory an older
/// version left open is closed at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_is_private_whatever_the_umask() {
    let mut server = Server::start_with_umask(&[("SLUICE_IMPORTS_ARCHIVE_DAYS", "7")], 0o022);
    server.importing_tenant("acme", "pw-for-tests");
    let key = server.key("acme");
    assert!(key.exists());
    // An upload over SFTP that imports with errors: a report in the spool and in /errors.
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    let mut bad = students(20);
    bad.push_str("S99,Bad,Date,not-a-date\n");
    put(&sftp, "/students/students.csv", bad.as_bytes()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while imports(&server).first().is_none_or(|v| v["status"] == "running") {
        assert!(Instant::now() < deadline, "the upload was not imported");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(imports(&server)[0]["status"], "incomplete", "{:?}", imports(&server));
    let errors: Vec<String> = sftp.read_dir("/errors").await.unwrap().map(|e| e.file_name()).collect();
    assert_eq!(errors.len(), 1, "the report is in /errors: {errors:?}");
    // The tenant still downloads its report: sluice serves it, whatever its mode.
    let mut report = sftp.open(format!("/errors/{}", errors[0])).await.unwrap();
    let mut text = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut report, &mut text).await.unwrap();
    assert!(text.contains("not-a-date"), "{text}");
    // A file the operator imports with the CLI, world-readable where it lies, is held (half
    // the students gone): the held copy sluice keeps is private too.
    let outside = server.dir.path().join("operator");
    std::fs::create_dir(&outside).unwrap();
    let file = write_file(&outside, "students.csv", students(10).as_bytes());
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    server.cli_ok(&["import", "--tenant", "acme", file.to_str().unwrap()]);
    assert_eq!(imports(&server)[0]["status"], "held", "{:?}", imports(&server));
    // And a file left waiting in a tenant's folder.
    server.cli_ok(&["tenant", "set", "acme", "trigger=manual"]);
    put(&sftp, "/students/waiting.csv", students(3).as_bytes()).await.unwrap();

    let data = server.data_dir();
    let all = walk(&data);
    // The database's files are in the data directory on SQLite (on PostgreSQL, in its server).
    let database =
        if on_postgres() { vec![] } else { vec![data.join("sluice.db"), data.join("sluice.db-wal")] };
    for expected in database.into_iter().chain([
        data.join("ssh_host_ed25519_key"),
        server.tenant_dir("acme").join("students/waiting.csv"),
        server.tenant_dir("acme").join("errors").join(&errors[0]),
    ]) {
        assert!(all.iter().any(|(p, _)| *p == expected), "{} is missing: {all:?}", expected.display());
    }
    assert!(all.iter().any(|(p, _)| p.starts_with(data.join("archive"))), "an archived upload: {all:?}");
    assert!(all.iter().any(|(p, _)| p.to_string_lossy().ends_with(".held")), "a held file: {all:?}");
    assert_eq!(open_to_others(&data), Vec::<String>::new(), "group or others may read these");
    assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);

    // A data directory an older version left open (0755, its database or key 0644) is closed at start.
    drop(sftp);
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let key = data.join(if on_postgres() { "ssh_host_ed25519_key" } else { "sluice.db" });
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    server.kill_and_restart();
    assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(open_to_others(&data), Vec::<String>::new());
    // The CLI closes it too (it opens the same database, perhaps before any server ran).
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    server.cli_ok(&["tenant", "list"]);
    assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
}
