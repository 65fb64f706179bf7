//! Clients on their default settings, on a folder that imports on upload: they check what
//! they uploaded (stat, set its time, list the folder) after the import already took the
//! file in, and some retry. Every upload counts once.

use crate::common::*;
use std::process::Command;
use std::time::Duration;

fn students(rows: usize, tag: &str) -> String {
    let mut s = String::from("sisId,firstName,lastName\n");
    for i in 0..rows {
        s.push_str(&format!("{tag}{i},First{i},Last{tag}\n"));
    }
    s
}

/// Waits until the tenant has `n` imports and returns them.
fn wait_for_imports(server: &Server, tenant: &str, n: usize) -> Vec<serde_json::Value> {
    let done = |s: &Server| {
        let imports = s.imports(tenant);
        imports.len() >= n && imports.iter().all(|i| i["status"] != "running")
    };
    assert!(
        server.wait_until(Duration::from_secs(20), done),
        "expected {n} imports: {:?}\n{}",
        server.imports(tenant),
        server.log()
    );
    // Each upload's snapshot goes once its event is handled.
    assert!(server.wait_until(Duration::from_secs(5), |s| s.snapshots_left() == 0), "snapshots left behind");
    server.imports(tenant)
}

/// rclone with no options but where to go: it uploads, sets the modification time, reads
/// the file's attributes back, and would upload again if that failed.
#[test]
fn rclone_copy_on_defaults_imports_each_upload_once() {
    if !have("rclone", "rclone") {
        return;
    }
    let server = Server::start();
    server.importing_tenant("acme", "pw-rclone-for-tests");
    let local = server.dir.path().join("outbox");
    std::fs::create_dir_all(&local).unwrap();
    for run in 1..=3 {
        // The nightly file: the same students and a few new ones each night.
        std::fs::write(local.join("students.csv"), students(10 * run, "R")).unwrap();
        let copy = ["copy", "-v", local.to_str().unwrap(), "sluice:/students"];
        let out = rclone(&server, "acme", "pw-rclone-for-tests", &copy);
        let text = output_text(&out);
        assert!(out.status.success(), "run {run}: {text}");
        assert!(!text.contains("ERROR"), "run {run}: {text}");
        let imports = wait_for_imports(&server, "acme", run);
        assert_eq!(imports.len(), run, "run {run} imported more than once: {imports:?}");
        assert_eq!(imports[0]["status"], "complete", "{imports:?}");
        assert_eq!(imports[0]["counts"]["added"], 10, "{imports:?}");
    }
    let uploads = server.uploads("acme");
    assert_eq!(uploads.len(), 3, "rclone uploaded again: {uploads:?}");
}

/// paramiko's `put` stats the file to confirm its size (confirm=True is its default).
#[test]
fn paramiko_put_confirms_each_upload() {
    if !have_python_module("paramiko", "paramiko (pip)") {
        return;
    }
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    for i in 0..20 {
        write_file(server.dir.path(), &format!("s{i}.csv"), students(3 + i, "P").as_bytes());
    }
    let script = write_file(
        server.dir.path(),
        "put.py",
        br#"
import sys, time, paramiko
t = paramiko.Transport(("127.0.0.1", int(sys.argv[1])))
t.connect(username="acme", password="pw-for-tests")
s = paramiko.SFTPClient.from_transport(t)
for i in range(20):
    attrs = s.put(sys.argv[2] + "/s%d.csv" % i, "/students/students.csv")
    print("put", i, attrs.st_size, flush=True)
    time.sleep(0.3)
"#,
    );
    let out = run_with_timeout(
        Command::new("python3").arg(&script).arg(server.port.to_string()).arg(server.dir.path()),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let imports = wait_for_imports(&server, "acme", 20);
    assert_eq!(imports.len(), 20);
    assert!(imports.iter().all(|i| i["status"] == "complete"), "{imports:?}");
}

/// WinSCP's defaults: a file over 100 KB goes up as `NAME.filepart`, is renamed, then its
/// time is set (preserve timestamp); the folder is listed again.
#[test]
fn winscp_style_filepart_rename_and_timestamp_count_once() {
    if !have_python_module("paramiko", "paramiko (pip)") {
        return;
    }
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    write_file(server.dir.path(), "big.csv", students(5_000, "W").as_bytes());
    let script = write_file(
        server.dir.path(),
        "winscp.py",
        br#"
import json, sys, paramiko
t = paramiko.Transport(("127.0.0.1", int(sys.argv[1])))
t.connect(username="acme", password="pw-for-tests")
s = paramiko.SFTPClient.from_transport(t)
s.put(sys.argv[2] + "/big.csv", "/students/students.csv.filepart", confirm=False)
s.rename("/students/students.csv.filepart", "/students/students.csv")
s.utime("/students/students.csv", (1700000000, 1700000000))
st = s.stat("/students/students.csv")
listing = {a.filename: a.st_size for a in s.listdir_attr("/students")}
print(json.dumps({"size": st.st_size, "mtime": st.st_mtime, "listing": listing}))
"#,
    );
    let out = run_with_timeout(
        Command::new("python3").arg(&script).arg(server.port.to_string()).arg(server.dir.path()),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let size = students(5_000, "W").len() as u64;
    assert_eq!(v["size"], size);
    assert_eq!(v["mtime"], 1_700_000_000u64, "the time the client set is the time it reads back");
    assert_eq!(v["listing"]["students.csv"], size);
    let imports = wait_for_imports(&server, "acme", 1);
    assert_eq!(imports.len(), 1);
    assert_eq!(imports[0]["status"], "complete");
    assert_eq!(server.uploads("acme").len(), 1);
}

/// lftp's `put` and `mirror -R` on their defaults (lftp runs ssh and answers its password
/// prompt itself).
#[test]
fn lftp_put_and_mirror_on_defaults() {
    if !have("lftp", "lftp") || !have("ssh", "openssh-client") {
        return;
    }
    let server = Server::start();
    server.importing_tenant("acme", "pw-lftp-for-tests");
    let outbox = server.dir.path().join("outbox");
    std::fs::create_dir_all(&outbox).unwrap();
    write_file(server.dir.path(), "one.csv", students(4, "L").as_bytes());
    std::fs::write(outbox.join("students.csv"), students(6, "L")).unwrap();
    // Only the host key is taken on trust (a new server); everything else is lftp's default.
    let commands = format!(
        "set sftp:connect-program 'ssh -a -x -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'; \
         open -u acme,pw-lftp-for-tests -p {} sftp://127.0.0.1; put one.csv -o /students/students.csv; ls /students; \
         mirror -R outbox /students; bye",
        server.port
    );
    let out = run_with_timeout(
        Command::new("lftp").args(["-c", &commands]).current_dir(server.dir.path()),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let imports = wait_for_imports(&server, "acme", 2);
    assert_eq!(imports.len(), 2, "{imports:?}");
    assert!(imports.iter().all(|i| i["status"] == "complete"), "{imports:?}");
    // Each with its own bytes, however soon the second replaced the first in the folder.
    let rows: Vec<_> = imports.iter().rev().map(|i| i["counts"]["rows"].as_u64()).collect();
    assert_eq!(rows, [Some(4), Some(6)], "{imports:?}");
}

/// A client that sends the same bytes again moments later (a retry) gets no second import;
/// a later upload of the same bytes, or a retry of a failed import, is imported.
#[tokio::test]
async fn a_retried_upload_is_not_imported_twice() {
    let server = Server::start_with(&[("SLUICE_IMPORTS_DUPLICATE_WINDOW_SECS", "4")]);
    server.importing_tenant("acme", "pw-for-tests");
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    let file = students(5, "D");
    put(&sftp, "/students/students.csv", file.as_bytes()).await.unwrap();
    let server = tokio::task::spawn_blocking(move || {
        wait_for_imports(&server, "acme", 1);
        server
    })
    .await
    .unwrap();
    put(&sftp, "/students/students.csv", file.as_bytes()).await.unwrap();
    let server = tokio::task::spawn_blocking(move || {
        assert!(server.wait_for_log("not imported again", Duration::from_secs(10)));
        let uploads = server.uploads("acme");
        assert_eq!(uploads.len(), 2);
        assert_eq!(uploads[1]["duplicate_of"], uploads[0]["id"]);
        assert_eq!(server.imports("acme").len(), 1);
        assert!(
            !server.tenant_dir("acme").join("students/students.csv").exists(),
            "the retry was left behind"
        );
        std::thread::sleep(Duration::from_secs(5));
        server
    })
    .await
    .unwrap();
    // After the window, the same bytes are a new upload.
    put(&sftp, "/students/students.csv", file.as_bytes()).await.unwrap();
    let server = tokio::task::spawn_blocking(move || {
        wait_for_imports(&server, "acme", 2);
        server
    })
    .await
    .unwrap();
    // A file whose import failed is imported again when sent again at once.
    put(&sftp, "/students/students.csv", b"no,header,we,know\n1,2,3,4\n").await.unwrap();
    let server = tokio::task::spawn_blocking(move || {
        wait_for_imports(&server, "acme", 3);
        server
    })
    .await
    .unwrap();
    put(&sftp, "/students/students.csv", b"no,header,we,know\n1,2,3,4\n").await.unwrap();
    tokio::task::spawn_blocking(move || {
        let imports = wait_for_imports(&server, "acme", 4);
        let statuses: Vec<_> = imports.iter().map(|i| i["status"].as_str().unwrap().to_owned()).collect();
        assert_eq!(statuses, ["failed", "failed", "complete", "complete"], "{imports:?}");
    })
    .await
    .unwrap();
}

/// The same bytes sent again within the window are imported when something happened since
/// that they would undo: another file of the type imported (a district re-sends last night's
/// file after a wrong one), a record deleted by hand (re-sent to restore it). Only with nothing
/// in between is it a retry. And the window runs from the first upload, not from each retry.
#[tokio::test]
async fn the_same_bytes_sent_again_after_a_change_are_imported() {
    let server = Server::start_with(&[("SLUICE_IMPORTS_DUPLICATE_WINDOW_SECS", "120")]);
    server.importing_tenant("acme", "pw-for-tests");
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    let nightly = students(5, "D");
    let wrong = nightly.replace("D0,First0", "D0,Wrong");
    let first_names = |server: &Server| server.cli_ok(&["records", "--tenant", "acme", "--type", "students"]);
    put(&sftp, "/students/nightly.csv", nightly.as_bytes()).await.unwrap();
    let server = tokio::task::spawn_blocking(move || {
        wait_for_imports(&server, "acme", 1);
        server
    })
    .await
    .unwrap();
    put(&sftp, "/students/fix.csv", wrong.as_bytes()).await.unwrap();
    let server = tokio::task::spawn_blocking(move || {
        wait_for_imports(&server, "acme", 2);
        assert!(first_names(&server).contains("Wrong"));
        server
    })
    .await
    .unwrap();
    put(&sftp, "/students/nightly.csv", nightly.as_bytes()).await.unwrap();
    let server = tokio::task::spawn_blocking(move || {
        let imports = wait_for_imports(&server, "acme", 3);
        assert_eq!(imports[0]["counts"]["updated"], 1, "{imports:?}");
        assert!(!first_names(&server).contains("Wrong"), "last night's file is back");
        server.cli_ok(&["records", "delete", "--tenant", "acme", "--type", "students", "D1"]);
        server
    })
    .await
    .unwrap();
    put(&sftp, "/students/nightly.csv", nightly.as_bytes()).await.unwrap();
    let server = tokio::task::spawn_blocking(move || {
        let imports = wait_for_imports(&server, "acme", 4);
        assert_eq!(imports[0]["counts"]["added"], 1, "the record deleted by hand is back: {imports:?}");
        server
    })
    .await
    .unwrap();
    // Nothing since: a retry.
    put(&sftp, "/students/nightly.csv", nightly.as_bytes()).await.unwrap();
    tokio::task::spawn_blocking(move || {
        assert!(server.wait_for_log("not imported again", Duration::from_secs(10)));
        assert_eq!(server.imports("acme").len(), 4);
        let uploads = server.uploads("acme");
        assert_eq!(uploads.last().unwrap()["duplicate_of"], uploads[uploads.len() - 2]["id"], "{uploads:?}");
    })
    .await
    .unwrap();

    // The window (6 s) runs from the first upload: a retry 4 s after it is one, a third
    // sending 8 s after it is imported, though only 4 s after the retry.
    let server = Server::start_with(&[("SLUICE_IMPORTS_DUPLICATE_WINDOW_SECS", "6")]);
    server.importing_tenant("acme", "pw-for-tests");
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    let started = std::time::Instant::now();
    put(&sftp, "/students/students.csv", nightly.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(started.elapsed())).await;
    put(&sftp, "/students/students.csv", nightly.as_bytes()).await.unwrap();
    let server = tokio::task::spawn_blocking(move || {
        assert!(server.wait_for_log("not imported again", Duration::from_secs(10)));
        server
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(started.elapsed())).await;
    put(&sftp, "/students/students.csv", nightly.as_bytes()).await.unwrap();
    tokio::task::spawn_blocking(move || {
        let imports = wait_for_imports(&server, "acme", 2);
        assert_eq!(imports.len(), 2, "{imports:?}");
    })
    .await
    .unwrap();
}

/// For a while after an upload, stat, setstat and listings see the file the import took in;
/// then it is gone, as it is.
#[tokio::test]
async fn a_just_uploaded_file_can_be_checked_then_is_gone() {
    let server = Server::start_with(&[("SLUICE_SFTP_RECENT_UPLOAD_SECS", "3")]);
    server.importing_tenant("acme", "pw-for-tests");
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    let file = students(3, "S");
    put(&sftp, "/students/students.csv", file.as_bytes()).await.unwrap();
    let on_disk = server.tenant_dir("acme").join("students/students.csv");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while on_disk.exists() {
        assert!(std::time::Instant::now() < deadline, "the upload was not taken in");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let attrs = sftp.metadata("/students/students.csv").await.unwrap();
    assert_eq!(attrs.size, Some(file.len() as u64));
    let mut set = russh_sftp::protocol::FileAttributes::empty();
    set.atime = Some(1_600_000_000);
    set.mtime = Some(1_600_000_000);
    sftp.set_metadata("/students/students.csv", set).await.unwrap();
    assert_eq!(sftp.metadata("/students/students.csv").await.unwrap().mtime, Some(1_600_000_000));
    let names: Vec<String> = sftp.read_dir("/students").await.unwrap().map(|e| e.file_name()).collect();
    assert_eq!(names, ["students.csv"]);
    assert!(sftp.open("/students/students.csv").await.is_err(), "its bytes are not served from the import");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (code, _) = sftp_status(sftp.metadata("/students/students.csv").await);
    assert_eq!(code, russh_sftp::protocol::StatusCode::NoSuchFile);
    assert_eq!(sftp.read_dir("/students").await.unwrap().count(), 0);
}

/// OpenSSH's `put -p` (keeps the time: FSETSTAT before close) and `ls -l` right after, and
/// PuTTY's psftp (FileZilla's and WinSCP's SSH code) with its `put` then `dir`, on a folder
/// that imports on upload: every command succeeds and each upload is imported once.
#[test]
fn openssh_and_psftp_check_their_uploads_on_an_importing_folder() {
    if !have("sftp", "openssh-client") || !have("psftp", "putty-tools") {
        return;
    }
    let server = Server::start();
    server.importing_tenant("acme", "pw-putty-for-tests");
    let key = server.key("acme");
    write_file(server.dir.path(), "one.csv", students(3, "O").as_bytes());
    write_file(server.dir.path(), "two.csv", students(5, "O").as_bytes());
    let out = crate::openssh::sftp_batch(
        &server,
        &key,
        "put -p one.csv /students/students.csv\nls -l /students/students.csv\n",
        &[],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    wait_for_imports(&server, "acme", 1);
    let out = crate::psftp::psftp(&server, "cd /students\nput two.csv students.csv\ndir\n");
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(output_text(&out).contains("students.csv"), "{}", output_text(&out));
    let imports = wait_for_imports(&server, "acme", 2);
    assert_eq!(imports.len(), 2, "{imports:?}");
    assert!(imports.iter().all(|i| i["status"] == "complete"), "{imports:?}");
}

/// A, then B, then A again within the retry window: the second A is a new upload (the
/// tenant's data must end as A), not a retry of the first.
#[tokio::test]
async fn an_upload_returning_to_earlier_bytes_is_imported() {
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    let (a, b) = (students(20, "A"), students(21, "A"));
    let mut server = server;
    for (n, file) in [(1, &a), (2, &b), (3, &a)] {
        put(&sftp, "/students/students.csv", file.as_bytes()).await.unwrap();
        server = tokio::task::spawn_blocking(move || {
            wait_for_imports(&server, "acme", n);
            server
        })
        .await
        .unwrap();
    }
    let imports = server.imports("acme");
    assert_eq!(imports.len(), 3, "{imports:?}");
    assert_eq!(
        imports[0]["counts"]["deleted"], 1,
        "the third upload brought the tenant back to A: {imports:?}"
    );
}
