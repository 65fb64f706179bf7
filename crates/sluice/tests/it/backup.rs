//! `sluice backup` while the server runs, and `sluice restore` into a new data directory: the
//! same tenants, records, photos, waiting files, host key and secret key come back; a damaged
//! or forged backup restores nothing.

use crate::common::*;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// On the suite's PostgreSQL run: `sluice backup` and `restore` copy SQLite deployments and
/// refuse with the way to back PostgreSQL up (pg_dump), changing nothing. True when it did.
fn refused_on_postgres(server: &Server) -> bool {
    if !on_postgres() {
        return false;
    }
    let file = server.dir.path().join("backup.zip");
    for args in [["backup", file.to_str().unwrap()], ["restore", file.to_str().unwrap()]] {
        let out = server.cli(&args);
        assert!(!out.status.success(), "{args:?} on PostgreSQL: {}", output_text(&out));
        assert!(output_text(&out).contains("pg_dump"), "{}", output_text(&out));
    }
    assert!(!file.exists(), "nothing written");
    true
}

fn restore(into: &Path, file: &Path) -> std::process::Output {
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("--data-dir").arg(into).arg("restore").arg(file);
    run_with_timeout(&mut cmd, Duration::from_secs(60))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_made_while_serving_restores_into_a_new_data_directory_that_serves_the_same() {
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    if refused_on_postgres(&server) {
        return;
    }
    server.cli_ok(&["tenant", "set", "acme", "types=students,guardians,photos"]);
    let students = "sisId,firstName,lastName\nS1,Ann,Lee\nS2,Bo,Ng\nS3,Cy,Ode\n";
    let file = write_file(server.dir.path(), "students.csv", students.as_bytes());
    server.cli_ok(&["import", "--tenant", "acme", "--type", "students", file.to_str().unwrap()]);
    let zip = crate::photos::zip_of(&[("S1.png", &crate::photos::png(40, 50, 120))]);
    let file = write_file(server.dir.path(), "photos.zip", &zip);
    server.cli_ok(&["import", "--tenant", "acme", "--type", "photos", file.to_str().unwrap()]);
    // A held import (it would delete two of three students), approved after the restore.
    let one = write_file(server.dir.path(), "one.csv", b"sisId,firstName,lastName\nS1,Ann,Lee\n");
    let held = server.cli(&["import", "--tenant", "acme", "--type", "students", one.to_str().unwrap()]);
    assert!(output_text(&held).contains("held"), "{}", output_text(&held));
    let held_id = server.imports("acme")[0]["id"].as_i64().unwrap();
    // A file whose name has a backslash, as a Windows client may leave.
    std::fs::write(server.tenant_dir("acme").join("guardians").join("back\\slash.csv"), b"x\n").unwrap();
    // A backup inside the data directory: refused (a tenant could download it).
    let inside = server.tenant_dir("acme").join("exports").join("full.zip");
    let refused = server.cli(&["backup", inside.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2), "{}", output_text(&refused));
    assert!(!inside.exists());
    // A file waiting for its sync, uploaded over SFTP; the session stays open during the backup.
    server.cli_ok(&["tenant", "set", "acme", "trigger=manual"]);
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    let waiting = b"sisId,firstName,lastName\nS4,Di,Pu\n";
    put(&sftp, "/students/next.csv", waiting).await.unwrap();
    let fingerprint = server.host_fingerprint();

    let backup = server.dir.path().join("nightly.zip");
    let server = tokio::task::spawn_blocking(move || {
        let made = server.cli(&["backup", backup.to_str().unwrap()]);
        assert!(made.status.success(), "{}", output_text(&made));
        let said = output_text(&made);
        assert!(said.contains("records: 3") && said.contains("secret key"), "{said}");
        let again = server.cli(&["backup", backup.to_str().unwrap()]);
        assert_eq!(again.status.code(), Some(2), "a backup never replaces a file: {}", output_text(&again));
        server
    })
    .await
    .unwrap();
    let backup = server.dir.path().join("nightly.zip");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777, 0o600);

    let fresh = tempfile::tempdir().unwrap();
    let into = fresh.path().join("data");
    let out = restore(&into, &backup);
    let said = output_text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("records: 3 (the backup said 3)"), "{said}");
    let twice = restore(&into, &backup);
    assert_eq!(twice.status.code(), Some(2), "{}", output_text(&twice));
    assert!(output_text(&twice).contains("is not empty"), "{}", output_text(&twice));
    for key in ["secret.key", "ssh_host_ed25519_key"] {
        assert_eq!(
            std::fs::read(server.data_dir().join(key)).ok(),
            std::fs::read(into.join(key)).ok(),
            "{key}"
        );
    }

    let restored = Server::start_in(fresh);
    assert_eq!(restored.host_fingerprint(), fingerprint, "clients see the same server");
    let (_ssh, sftp) = sftp_login(restored.port, "acme", "pw-for-tests").await;
    let mut f = sftp.open("/students/next.csv").await.unwrap();
    let mut got = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut f, &mut got).await.unwrap();
    assert_eq!(got, waiting, "the waiting file came back");
    let (restored, server) = tokio::task::spawn_blocking(move || {
        let records = restored.cli_ok(&["records", "--tenant", "acme", "--type", "students"]);
        assert!(["S1", "S2", "S3"].iter().all(|k| records.contains(k)), "{records}");
        let photos = std::fs::read_dir(restored.data_dir().join("photos").join("acme")).unwrap().count();
        assert!(photos >= 1, "the photo came back");
        let log = restored.cli_ok(&["audit"]);
        assert!(log.contains("backup.restore"), "{log}");
        assert!(restored.tenant_dir("acme").join("guardians").join("back\\slash.csv").exists());
        // The held import's file came along, at its new place: approving it applies it.
        let approved = restored.cli(&["approve", &held_id.to_string()]);
        assert!(approved.status.success(), "{}", output_text(&approved));
        let left = restored.cli_ok(&["records", "--tenant", "acme", "--type", "students"]);
        assert!(left.contains("S1") && !left.contains("S2"), "{left}");
        (restored, server)
    })
    .await
    .unwrap();
    assert!(server.cli_ok(&["audit"]).contains("backup.make"));
    drop(restored);
}

/// Named contents.
type Files<'a> = Vec<(&'a str, &'a [u8])>;

/// Writes a backup-shaped zip: (name, bytes) entries and a manifest listing `listed`.
fn forged(path: &Path, entries: &[(&str, &[u8])], listed: &[(&str, &[u8])]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default();
    for (name, bytes) in entries {
        zip.start_file(*name, options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    let files: Vec<serde_json::Value> = listed
        .iter()
        .map(|(name, bytes)| serde_json::json!({"path": name, "bytes": bytes.len(), "sha256": sha256_hex(bytes)}))
        .collect();
    let manifest =
        serde_json::json!({"format": "sluice-backup/1", "created_ms": 0, "counts": {}, "files": files});
    zip.start_file("backup.json", options).unwrap();
    zip.write_all(manifest.to_string().as_bytes()).unwrap();
    zip.finish().unwrap();
}

/// A backup with a name that climbs out, an entry its manifest does not list, a file that
/// does not match its manifest, or one entry twice: refused before anything is written.
#[test]
fn a_forged_or_damaged_backup_restores_nothing() {
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    if refused_on_postgres(&server) {
        return;
    }
    let backup = server.dir.path().join("real.zip");
    server.cli_ok(&["backup", backup.to_str().unwrap()]);
    let mut db = Vec::new();
    {
        let mut archive = zip::ZipArchive::new(std::fs::File::open(&backup).unwrap()).unwrap();
        std::io::Read::read_to_end(&mut archive.by_name("sluice.db").unwrap(), &mut db).unwrap();
    }
    let db = db.as_slice();
    let work = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Files<'_>, Files<'_>, &str)> = vec![
        (
            "climb",
            vec![("sluice.db", db), ("../evil", b"x")],
            vec![("sluice.db", db), ("../evil", b"x")],
            "not a name",
        ),
        ("absolute", vec![("sluice.db", db), ("/tmp/evil", b"x")], vec![("sluice.db", db)], "not a name"),
        (
            "unlisted",
            vec![("sluice.db", db), ("tenants/acme/x.csv", b"x")],
            vec![("sluice.db", db)],
            "not in its manifest",
        ),
        (
            "damaged",
            vec![("sluice.db", db), ("tenants/acme/x.csv", b"y")],
            vec![("sluice.db", db), ("tenants/acme/x.csv", b"x")],
            "does not match",
        ),
        (
            "twice",
            vec![("sluice.db", db), ("tenants/acme/x.csv", b"x")],
            vec![("sluice.db", db), ("tenants/acme/x.csv", b"x"), ("tenants/acme/x.csv", b"x")],
            "twice",
        ),
        (
            "no database",
            vec![("tenants/acme/x.csv", b"x")],
            vec![("tenants/acme/x.csv", b"x")],
            "no database",
        ),
    ];
    for (case, entries, listed, why) in cases {
        let file = work.path().join(format!("{case}.zip"));
        forged(&file, &entries, &listed);
        let into = work.path().join(format!("{case}-data"));
        let out = restore(&into, &file);
        let said = output_text(&out);
        assert!(!out.status.success() && said.contains(why), "{case}: {said}");
        assert!(!into.join("sluice.db").exists(), "{case}: nothing restored");
        assert!(!work.path().join("evil").exists() && !Path::new("/tmp/evil").exists(), "{case}");
        assert!(!into.join("tenants/acme/x.csv").exists(), "{case}");
    }
    // A database that is not one, with a manifest that says so truthfully: refused after
    // staging, nothing in place, and the same directory takes a good backup afterwards.
    let junk: &[u8] = b"not a database at all, but its manifest matches";
    let file = work.path().join("junk.zip");
    forged(&file, &[("sluice.db", junk)], &[("sluice.db", junk)]);
    let into = work.path().join("retry-data");
    let out = restore(&into, &file);
    assert!(
        !out.status.success() && output_text(&out).contains("nothing was restored"),
        "{}",
        output_text(&out)
    );
    assert!(!into.join("sluice.db").exists() && !into.join(".restoring").exists());
    let out = restore(&into, &backup);
    assert!(out.status.success(), "a retry into the same directory: {}", output_text(&out));
    // A target with anything in it (here a link planted where photos go): refused.
    let planted = work.path().join("planted-data");
    std::fs::create_dir_all(&planted).unwrap();
    std::os::unix::fs::symlink(work.path(), planted.join("photos")).unwrap();
    let out = restore(&planted, &backup);
    assert!(!out.status.success() && output_text(&out).contains("not empty"), "{}", output_text(&out));

    let not_zip = work.path().join("notes.txt");
    std::fs::write(&not_zip, "hello").unwrap();
    let out = restore(&work.path().join("n-data"), &not_zip);
    assert!(
        !out.status.success() && output_text(&out).contains("not a sluice backup"),
        "{}",
        output_text(&out)
    );
}
