//! `[storage] backend = "s3"`: tenants' exports kept in an S3-compatible bucket (SeaweedFS, a
//! real distributed object store, started here), written by one node and downloaded from any,
//! as districts download them; the bucket's health seen by `/healthz` and `sluice doctor`.

use crate::common::*;
use crate::openssh::sftp_batch;
use crate::photos::{jpeg, png, zip_of};
use sluice_files::testing::{ACCESS_KEY_ID, SECRET_ACCESS_KEY, SeaweedFs};
use sluice_files::{Bucket, ObjectKey};
use std::time::Duration;

const BUCKET: &str = "sluice-it";

/// The environment of a server keeping exports in `weed`'s bucket, under `prefix`, with the
/// credentials in the usual AWS variables.
fn bucket_env(weed: &SeaweedFs, prefix: &str) -> Vec<(String, String)> {
    vec![
        ("SLUICE_STORAGE_BACKEND".into(), "s3".into()),
        ("SLUICE_STORAGE_ENDPOINT".into(), weed.endpoint()),
        ("SLUICE_STORAGE_BUCKET".into(), BUCKET.into()),
        ("SLUICE_STORAGE_PREFIX".into(), prefix.into()),
        ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY_ID.into()),
        ("AWS_SECRET_ACCESS_KEY".into(), SECRET_ACCESS_KEY.into()),
    ]
}

fn refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn tenant(name: &str) -> sluice_core::TenantName {
    sluice_core::TenantName::parse(name).unwrap()
}

/// acme with three students and two photos (imported from a zip over SFTP).
fn school(server: &Server) -> std::path::PathBuf {
    server.importing_tenant("acme", "pw-for-tests");
    server.cli_ok(&["tenant", "set", "acme", "folders=students,photos"]);
    let file = write_file(
        server.dir.path(),
        "students.csv",
        "sisId,firstName,lastName\nS1,Zoë,Núñez\nS2,Bo,Ray\nS3,Ann,Lee\n".as_bytes(),
    );
    server.cli_ok(&["import", "--tenant", "acme", "--type", "students", file.to_str().unwrap()]);
    let key = server.key("acme");
    let zip = zip_of(&[("S1.jpg", &jpeg(64, 80)), ("S2.png", &png(40, 50, 90))]);
    let local = write_file(server.dir.path(), "photos.zip", &zip);
    let out = sftp_batch(server, &key, &format!("put {} /photos/\n", local.display()), &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        server.wait_until(Duration::from_secs(30), |s| {
            let imports = s.imports("acme");
            imports.len() >= 2 && imports.iter().all(|i| i["status"] != "running")
        }),
        "the photos were not imported: {}",
        server.log()
    );
    key
}

#[test]
fn exports_kept_in_a_bucket_are_written_whole_and_downloaded_over_sftp_from_any_node() {
    if !have("sftp", "openssh-client") {
        return;
    }
    let Some(mut weed) = SeaweedFs::start(BUCKET) else { return };
    let env = bucket_env(&weed, "district-data");
    let server = Server::start_with(&refs(&env));
    let key = school(&server);

    // A CSV export and a photo export go to the bucket, not to the data directory.
    let said = server.cli_ok(&["export", "--tenant", "acme", "--type", "students"]);
    assert!(said.contains("exported 3 records of students to /exports/students.csv"), "{said}");
    let said = server.cli_ok(&["export", "--tenant", "acme", "--type", "students", "--photos"]);
    assert!(said.contains("2 written, 0 unchanged, 0 removed"), "{said}");
    let on_disk = server.tenant_dir("acme").join("exports");
    let local: Vec<_> = walk(&on_disk);
    assert!(local.is_empty(), "nothing of /exports on the local disk: {local:?}");
    let bucket = Bucket::open(&weed.settings(BUCKET, "district-data")).unwrap();
    let exports = ObjectKey::folder(&tenant("acme"), "exports");
    let listed = bucket.list(&exports).unwrap();
    assert_eq!(listed.files.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["students.csv"]);
    let photos = bucket.list(&ObjectKey::folder(&tenant("acme"), "exports/photos")).unwrap();
    assert_eq!(photos.files.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["S1.jpg", "S2.png"]);

    // The same photos again: nothing sent (the objects already hold their bytes).
    let said = server.cli_ok(&["export", "--tenant", "acme", "--type", "students", "--photos"]);
    assert!(said.contains("0 written, 2 unchanged, 0 removed"), "{said}");

    // Downloaded as a district downloads them: listed with their sizes, read whole.
    let out = sftp_batch(
        &server,
        &key,
        "ls -l /exports\nls -l /exports/photos\nget /exports/students.csv fetched.csv\nget /exports/photos/S1.jpg ann.jpg\n",
        &[],
    );
    let said = output_text(&out);
    assert!(out.status.success(), "{said}\n{}", server.log());
    let fetched = std::fs::read(server.dir.path().join("fetched.csv")).unwrap();
    let mut object = bucket.fetch(&exports.file(&name("students.csv")), server.dir.path()).unwrap().unwrap();
    let mut in_bucket = Vec::new();
    std::io::Read::read_to_end(&mut object.file, &mut in_bucket).unwrap();
    assert_eq!(fetched, in_bucket, "the bytes downloaded are the bucket's");
    assert!(
        String::from_utf8_lossy(&fetched).contains("S1,Zoë,Núñez"),
        "{}",
        String::from_utf8_lossy(&fetched)
    );
    assert_eq!(std::fs::read(server.dir.path().join("ann.jpg")).unwrap(), jpeg(64, 80));
    assert!(said.contains("students.csv") && said.contains(&in_bucket.len().to_string()), "{said}");
    assert!(said.contains("S1.jpg") && said.contains("S2.png"), "{said}");
    assert!(!said.contains("1970"), "the photos folder has a date: {said}");
    // A file that is not there is "no such file", as on disk; /exports stays read-only.
    let out = sftp_batch(&server, &key, "get /exports/absent.csv\n", &[]);
    assert!(!out.status.success() && output_text(&out).contains("not found"), "{}", output_text(&out));
    let out = sftp_batch(&server, &key, "rm /exports/students.csv\n", &[]);
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(bucket.head(&exports.file(&name("students.csv"))).unwrap().is_some(), "still there");
    // Read copies (unnamed files in spool/reads) are closed with their handles.
    assert!(
        server.wait_until(Duration::from_secs(10), |s| open_read_copies(s.pid()) == 0),
        "read copies still open: {}",
        open_read_copies(server.pid())
    );
    // /metrics counts what came out of the bucket, and no copy is open now.
    let read = server.metric("sluice_object_storage_read_bytes_total");
    assert!(read >= (in_bucket.len() + jpeg(64, 80).len()) as i64, "{read}");
    assert_eq!(server.metric("sluice_object_storage_read_copies"), 0);
    assert_eq!(server.metric("sluice_object_storage_failed_calls_total"), 0);

    // Another node (its own data directory: another machine) on the same database and
    // bucket serves the export the first one wrote.
    if on_postgres() {
        let other = server.start_beside(&refs(&env));
        let out = sftp_batch(&other, &key, "get /exports/students.csv from-b.csv\n", &[]);
        assert!(out.status.success(), "{}\n{}", output_text(&out), other.log());
        assert_eq!(std::fs::read(other.dir.path().join("from-b.csv")).unwrap(), in_bucket);
        assert_eq!(other.http_get("/healthz").0, 200);
    }

    // Healthy while the bucket answers; not once it is gone, and saying which part failed.
    assert_eq!(server.http_get("/healthz"), (200, "ok\n".to_owned()));
    let doctor = server.cli_ok(&["doctor"]);
    assert!(doctor.contains("object storage: s3://sluice-it/district-data at http://127.0.0.1:"), "{doctor}");
    weed.stop();
    let (status, body) = server.http_get("/healthz");
    assert_eq!((status, body.as_str()), (503, "the object storage bucket cannot be reached\n"));
    // A client sees a failure to retry, not a missing file (OpenSSH's sftp says "not found"
    // whatever the status, so the status is read with another client).
    let (code, message) = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
        sftp_status(sftp.open("/exports/students.csv").await)
    });
    assert_eq!(code, russh_sftp::protocol::StatusCode::Failure, "{message}");
    assert!(message.contains("/exports/students.csv failed on the server; please retry"), "{message}");
    assert!(server.metric("sluice_object_storage_failed_calls_total") > 0, "the failures are counted");
    assert!(server.log().contains("s3://sluice-it/district-data"), "the log says which bucket");
    let failed = server.cli(&["export", "--tenant", "acme", "--type", "students"]);
    let said = output_text(&failed);
    assert!(!failed.status.success() && said.contains("s3://sluice-it/district-data"), "{said}");
    let doctor = server.cli(&["doctor"]);
    assert!(output_text(&doctor).contains("PROBLEM  object storage"), "{}", output_text(&doctor));
    // The server itself goes on: SFTP logins and the database are fine.
    let out = sftp_batch(&server, &key, "ls /students\n", &[]);
    assert!(out.status.success(), "{}", output_text(&out));
}

/// Reading a file kept in the bucket copies it to local disk first: those copies count in the
/// tenant's spool while open, so opening a large export again and again cannot fill the disk.
#[test]
fn copies_of_exports_being_read_are_charged_to_the_tenants_spool() {
    let Some(weed) = SeaweedFs::start(BUCKET) else { return };
    let mut env = bucket_env(&weed, "");
    env.push(("SLUICE_SFTP_SPOOL_BYTES_PER_TENANT".into(), "1000".into()));
    let server = Server::start_with(&refs(&env));
    server.importing_tenant("acme", "pw-for-tests");
    let bucket = Bucket::open(&weed.settings(BUCKET, "")).unwrap();
    let big = write_file(server.dir.path(), "big.csv", &[b'x'; 600]);
    bucket.put_file(&ObjectKey::folder(&tenant("acme"), "exports").file(&name("big.csv")), &big).unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
        let first = sftp.open("/exports/big.csv").await.expect("the first copy fits");
        let (code, message) = sftp_status(sftp.open("/exports/big.csv").await);
        assert_eq!(code, russh_sftp::protocol::StatusCode::Failure, "{message}");
        assert!(message.contains("close other files first") && message.contains("1000 bytes"), "{message}");
        drop(first);
        // Closed (the drop sends CLOSE): its charge is given back.
        let mut again = None;
        for _ in 0..50 {
            if let Ok(file) = sftp.open("/exports/big.csv").await {
                again = Some(file);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut file = again.expect("opened again once the first was closed");
        let mut bytes = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut file, &mut bytes).await.unwrap();
        assert_eq!(bytes, vec![b'x'; 600]);
    });
}

/// A large export is read while it arrives from the bucket: the handle says its whole size at
/// once, the bytes read are the object's, and a handle closed half-way lets its copy go.
#[test]
fn a_large_export_is_read_as_it_arrives_and_its_copy_goes_with_its_handle() {
    let Some(weed) = SeaweedFs::start(BUCKET) else { return };
    let server = Server::start_with(&refs(&bucket_env(&weed, "")));
    server.importing_tenant("acme", "pw-for-tests");
    let bucket = Bucket::open(&weed.settings(BUCKET, "")).unwrap();
    let big = pseudo_random(40 * 1024 * 1024 + 3, 5);
    let key = ObjectKey::folder(&tenant("acme"), "exports").file(&name("big.csv"));
    bucket.put_file(&key, &write_file(server.dir.path(), "big.csv", &big)).unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
        let mut file = sftp.open("/exports/big.csv").await.unwrap();
        assert_eq!(file.metadata().await.unwrap().size, Some(big.len() as u64), "FSTAT: the object's size");
        // From the end first: the read waits for its part.
        file.seek(std::io::SeekFrom::Start(big.len() as u64 - 3)).await.unwrap();
        let mut tail = [0u8; 3];
        file.read_exact(&mut tail).await.unwrap();
        assert_eq!(tail, big[big.len() - 3..]);
        drop(file);
        // (russh-sftp's file keeps asking for as few bytes as its last read did: a new one.)
        let mut file = sftp.open("/exports/big.csv").await.unwrap();
        let mut whole = Vec::new();
        file.read_to_end(&mut whole).await.unwrap();
        assert!(whole == big, "the bytes read are the object's");
        drop(file);
        // Closed half-way: nothing of it is held.
        let mut half = sftp.open("/exports/big.csv").await.unwrap();
        let mut first = vec![0u8; 1024];
        half.read_exact(&mut first).await.unwrap();
        assert_eq!(first, big[..1024]);
        drop(half);
        // (The session stays open: the copy goes with its handle, not with the session.)
        let mut held = usize::MAX;
        for _ in 0..100 {
            held = open_read_copies(server.pid());
            if held == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(held, 0, "read copies left open with the session");
        let listed: Vec<String> = sftp.read_dir("/exports").await.unwrap().map(|e| e.file_name()).collect();
        assert!(listed.contains(&"big.csv".to_owned()), "the session goes on: {listed:?}");
    });
}

#[test]
fn a_removed_tenants_exports_leave_the_bucket_for_its_archive() {
    let Some(mut weed) = SeaweedFs::start(BUCKET) else { return };
    let env = bucket_env(&weed, "");
    let server = Server::start_with(&refs(&env));
    server.importing_tenant("acme", "pw-for-tests");
    server.importing_tenant("acme2", "pw-for-tests");
    let file = write_file(server.dir.path(), "students.csv", b"sisId,firstName,lastName\nS1,Ann,Lee\n");
    for t in ["acme", "acme2"] {
        server.cli_ok(&["import", "--tenant", t, "--type", "students", file.to_str().unwrap()]);
        server.cli_ok(&["export", "--tenant", t, "--type", "students", "--format", "xlsx"]);
    }
    let bucket = Bucket::open(&weed.settings(BUCKET, "")).unwrap();
    let said = server.cli_ok(&["tenant", "remove", "acme", "--yes"]);
    assert!(said.contains("archived 1 exported files from the bucket into"), "{said}");
    let archive = server.data_dir().join("archive").join("removed");
    let kept = walk(&archive);
    assert!(kept.iter().any(|p| p.ends_with("exports/students.xlsx")), "{kept:?}");
    let left = bucket.list(&ObjectKey::folder(&tenant("acme"), "exports")).unwrap();
    assert!(left.files.is_empty(), "{left:?}\n{said}");
    let other = bucket.list(&ObjectKey::folder(&tenant("acme2"), "exports")).unwrap();
    assert_eq!(other.files.len(), 1, "acme2's export stays: {other:?}");
    // What a removal that failed half-way would have left is never a new tenant's.
    let path = write_file(server.dir.path(), "left.csv", b"old district's data");
    let left = ObjectKey::folder(&tenant("acme"), "exports").file(&name("left.csv"));
    bucket.put_file(&left, &path).unwrap();
    server.importing_tenant("acme", "pw-for-tests");
    assert!(bucket.head(&left).unwrap().is_none(), "the new acme does not see the old one's files");
    let leftovers = walk(&server.data_dir().join("archive").join("bucket-leftovers"));
    let kept = leftovers.iter().find(|p| p.ends_with("exports/left.csv")).expect("kept, not deleted");
    assert_eq!(std::fs::read(kept).unwrap(), b"old district's data");
    // Adding a tenant that exists is refused and takes nothing of its exports.
    let again = server.cli(&["tenant", "add", "acme2"]);
    assert!(!again.status.success(), "{}", output_text(&again));
    assert_eq!(bucket.list(&ObjectKey::folder(&tenant("acme2"), "exports")).unwrap().files.len(), 1);
    // The bucket gone: a removal copies nothing, moves nothing and removes nothing.
    weed.stop();
    let archived_before = walk(&archive).len();
    let refused = server.cli(&["tenant", "remove", "acme2", "--yes"]);
    let said = output_text(&refused);
    assert!(!refused.status.success() && said.contains("nothing was removed or moved"), "{said}");
    assert!(server.tenant_dir("acme2").is_dir(), "its folders stay where they were");
    assert_eq!(walk(&archive).len(), archived_before, "nothing new in the archive");
    assert!(server.cli_ok(&["tenant", "list"]).contains("acme2"), "still a tenant");
    // And a command run without the [storage] settings refuses instead of writing exports
    // where no district would see them.
    let bare = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(server.data_dir())
        .args(["export", "--tenant", "acme2", "--type", "students"])
        .envs(server.database_url().map(|u| ("SLUICE_DATABASE_URL", u)))
        .output()
        .unwrap();
    let said = output_text(&bare);
    assert!(!bare.status.success() && said.contains("keeps tenants' exports in object storage"), "{said}");
    assert_eq!(bare.status.code(), Some(2), "a configuration error");
    assert!(said.contains("s3://sluice-it at http://127.0.0.1:"), "{said}");
}

/// The dashboard, too: a tenant added under a removed one's name never sees what that one's
/// failed removal left in the bucket; adding one that exists takes nothing of its exports.
#[test]
fn a_tenant_added_in_the_dashboard_starts_with_an_empty_folder_in_the_bucket() {
    use crate::dashboard::{csrf, request, session, setup_with};
    let Some(weed) = SeaweedFs::start(BUCKET) else { return };
    let env = bucket_env(&weed, "");
    let server = setup_with(&refs(&env));
    let bucket = Bucket::open(&weed.settings(BUCKET, "")).unwrap();
    let path = write_file(server.dir.path(), "left.csv", b"an earlier district's data");
    let left = ObjectKey::folder(&tenant("gamma"), "exports").file(&name("left.csv"));
    bucket.put_file(&left, &path).unwrap();
    server.cli_ok(&["export", "--tenant", "acme", "--type", "students"]);
    let admin = session(&server, "admin", "admin-pw-for-tests");
    let token = csrf(&request(&server, "GET", "/", Some(&admin), "").body);
    let r = request(&server, "POST", "/tenants/add", Some(&admin), &format!("csrf={token}&name=gamma"));
    assert!(r.header("location").unwrap().starts_with("/t/gamma/sftp"), "{}", r.head);
    assert!(bucket.head(&left).unwrap().is_none(), "gamma starts with nothing");
    let again = request(&server, "POST", "/tenants/add", Some(&admin), &format!("csrf={token}&name=acme"));
    assert!(!again.header("location").unwrap_or_default().starts_with("/t/acme/sftp"), "{}", again.head);
    let acme = bucket.list(&ObjectKey::folder(&tenant("acme"), "exports")).unwrap();
    assert_eq!(acme.files.len(), 1, "acme keeps its export: {acme:?}");
}

#[test]
fn a_server_whose_bucket_cannot_be_reached_does_not_start_and_says_what_to_check() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let mut serve = std::process::Command::new(BIN);
    serve.arg("--data-dir").arg(dir.path().join("data")).arg("serve").envs([
        ("SLUICE_SFTP_LISTEN", "127.0.0.1:0"),
        ("SLUICE_HTTP_LISTEN", "127.0.0.1:0"),
        ("SLUICE_STORAGE_BACKEND", "s3"),
        ("SLUICE_STORAGE_ENDPOINT", &format!("http://127.0.0.1:{closed}")),
        ("SLUICE_STORAGE_BUCKET", "exports"),
        ("AWS_ACCESS_KEY_ID", "x"),
        ("AWS_SECRET_ACCESS_KEY", "y"),
    ]);
    let out = run_with_timeout(&mut serve, Duration::from_secs(60));
    let said = output_text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("s3://exports at http://127.0.0.1:") && said.contains("cannot be used"), "{said}");
    assert!(said.contains("check endpoint, bucket (it must exist) and the credentials"), "{said}");
    assert!(said.contains("credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"), "{said}");
    // And s3 without a bucket is a configuration error naming the setting.
    let mut serve = std::process::Command::new(BIN);
    serve.arg("--data-dir").arg(dir.path().join("data")).arg("serve").env("SLUICE_STORAGE_BACKEND", "s3");
    let out = run_with_timeout(&mut serve, Duration::from_secs(30));
    assert!(output_text(&out).contains("needs bucket"), "{}", output_text(&out));
    assert_eq!(out.status.code(), Some(2), "a configuration error");
}

/// Districts download from `/exports` in the bucket with their own clients on their defaults:
/// rclone copies the folder (and checks sizes and times), lftp mirrors it, PuTTY's psftp (the
/// SSH code of FileZilla and WinSCP) gets one file, paramiko stats and gets one (prefetching
/// every block at once). Each gets the bucket's bytes, and every read copy is let go.
#[test]
fn districts_clients_download_exports_from_the_bucket_on_their_defaults() {
    let clients = [
        have("rclone", "rclone"),
        have("lftp", "lftp") && have("ssh", "openssh-client"),
        have("psftp", "putty-tools"),
        have_python_module("paramiko", "paramiko (pip)"),
    ];
    if clients.iter().all(|c| !c) {
        return;
    }
    let Some(weed) = SeaweedFs::start(BUCKET) else { return };
    let env = bucket_env(&weed, "");
    let server = Server::start_with(&refs(&env));
    // psftp's helper logs in with this password.
    server.importing_tenant("acme", "pw-putty-for-tests");
    let bucket = Bucket::open(&weed.settings(BUCKET, "")).unwrap();
    let big = pseudo_random(5 * 1024 * 1024 + 5, 77);
    let photo = jpeg(64, 80);
    let exports = ObjectKey::folder(&tenant("acme"), "exports");
    bucket.put_file(&exports.file(&name("big.csv")), &write_file(server.dir.path(), "big", &big)).unwrap();
    let photos = ObjectKey::folder(&tenant("acme"), "exports/photos");
    bucket.put_file(&photos.file(&name("S1.jpg")), &write_file(server.dir.path(), "s1", &photo)).unwrap();
    let work = server.dir.path();
    let read = |path: &str| std::fs::read(work.join(path)).unwrap_or_default();

    if clients[0] {
        let into = work.join("by-rclone");
        let copy = ["copy", "-v", "sluice:/exports", into.to_str().unwrap()];
        let out = rclone(&server, "acme", "pw-putty-for-tests", &copy);
        assert!(out.status.success(), "rclone: {}\n{}", output_text(&out), server.log());
        assert!(read("by-rclone/big.csv") == big, "rclone's copy differs: {}", output_text(&out));
        assert_eq!(read("by-rclone/photos/S1.jpg"), photo);
    }
    if clients[1] {
        let commands = format!(
            "set sftp:connect-program 'ssh -a -x -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'; \
             open -u acme,pw-putty-for-tests -p {} sftp://127.0.0.1; mirror /exports by-lftp; bye",
            server.port
        );
        let out = run_with_timeout(
            std::process::Command::new("lftp").args(["-c", &commands]).current_dir(work),
            Duration::from_secs(120),
        );
        assert!(out.status.success(), "lftp: {}\n{}", output_text(&out), server.log());
        assert!(read("by-lftp/big.csv") == big, "lftp's copy differs");
        assert_eq!(read("by-lftp/photos/S1.jpg"), photo);
    }
    if clients[2] {
        let out = crate::psftp::psftp(&server, "ls /exports\nget /exports/big.csv by-psftp.csv\n");
        assert!(out.status.success(), "psftp: {}\n{}", output_text(&out), server.log());
        assert!(read("by-psftp.csv") == big, "psftp's copy differs");
    }
    if clients[3] {
        let script = write_file(
            work,
            "get.py",
            br#"
import sys, paramiko
t = paramiko.Transport(("127.0.0.1", int(sys.argv[1])))
t.connect(username="acme", password="pw-putty-for-tests")
s = paramiko.SFTPClient.from_transport(t)
print(s.stat("/exports/big.csv").st_size)
s.get("/exports/big.csv", sys.argv[2] + "/by-paramiko.csv")
s.close(); t.close()
"#,
        );
        let out = run_with_timeout(
            std::process::Command::new("python3").arg(&script).arg(server.port.to_string()).arg(work),
            Duration::from_secs(120),
        );
        assert!(out.status.success(), "paramiko: {}\n{}", output_text(&out), server.log());
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), big.len().to_string());
        assert!(read("by-paramiko.csv") == big, "paramiko's copy differs");
    }
    // Every read copy was let go with its client's handle.
    assert!(
        server.wait_until(Duration::from_secs(10), |s| open_read_copies(s.pid()) == 0),
        "read copies left open: {}",
        open_read_copies(server.pid())
    );
}

/// A deployment that kept exports on its disk moves them into a bucket with `sluice migrate
/// --storage`: until it does, [storage] is refused (its tenants would lose sight of them);
/// every copy is read back and compared; districts then download the same bytes from the
/// bucket; the files on disk are kept in the archive.
#[test]
fn exports_on_the_local_disk_move_into_the_bucket_with_migrate() {
    if !have("sftp", "openssh-client") {
        return;
    }
    let Some(weed) = SeaweedFs::start(BUCKET) else { return };
    let mut server = Server::start();
    let key = school(&server);
    server.importing_tenant("beta", "pw-for-tests");
    server.cli_ok(&["export", "--tenant", "acme", "--type", "students"]);
    server.cli_ok(&["export", "--tenant", "acme", "--type", "students", "--photos"]);
    let exports = server.tenant_dir("acme").join("exports");
    let csv = std::fs::read(exports.join("students.csv")).unwrap();
    assert!(String::from_utf8_lossy(&csv).contains("S1,Zoë,Núñez"));
    let env = bucket_env(&weed, "district-data");
    let marker = server.data_dir().join("EXPORTS-IN-BUCKET");

    // [storage] on a data directory whose exports are on its disk: refused, saying what to do.
    let refused = server.cli_with_env(&["tenant", "list"], &refs(&env));
    let said = output_text(&refused);
    assert_eq!(refused.status.code(), Some(2), "{said}");
    assert!(said.contains("sluice migrate --storage s3://sluice-it/district-data"), "{said}");
    assert!(said.contains("exports/students.csv") || said.contains("exports/photos"), "{said}");
    assert!(!marker.exists(), "nothing marked");
    // doctor says so too, and that the bucket can be used: settled before the server stops.
    let doctor = server.cli_with_env(&["doctor"], &refs(&env));
    let said = output_text(&doctor);
    assert!(
        said.contains("PROBLEM  tenants' exports") && said.contains("sluice migrate --storage"),
        "{said}"
    );
    assert!(said.contains("(reachable, listable, writable)"), "{said}");
    assert!(!marker.exists(), "doctor marks nothing");
    // Not while a server runs.
    let migrate = ["migrate", "--storage", "s3://sluice-it/district-data"];
    let refused = server.cli_with_env(&migrate, &refs(&env));
    assert!(output_text(&refused).contains("a `sluice serve` is running"), "{}", output_text(&refused));
    assert_eq!(server.terminate(), Some(0));
    // Not into another bucket or prefix than the servers will use.
    let refused = server.cli_with_env(&["migrate", "--storage", "s3://sluice-it/other"], &refs(&env));
    let said = output_text(&refused);
    assert_eq!(refused.status.code(), Some(2), "{said}");
    assert!(
        said.contains("is not the bucket of the [storage] settings (s3://sluice-it/district-data)"),
        "{said}"
    );
    // With a state move that cannot be made, the exports do not move either.
    let unreachable = "host=127.0.0.1 port=1 user=nobody dbname=none connect_timeout=2";
    let both = ["migrate", "--to", unreachable, "--storage", "s3://sluice-it/district-data"];
    let refused = server.cli_with_env(&both, &refs(&env));
    assert_eq!(refused.status.code(), Some(2), "{}", output_text(&refused));
    assert!(exports.join("students.csv").is_file() && !marker.exists(), "nothing moved or marked");
    // Not over another deployment's files under the same prefix.
    let bucket = Bucket::open(&weed.settings(BUCKET, "district-data")).unwrap();
    let stranger = ObjectKey::folder(&tenant("acme"), "exports").file(&name("theirs.csv"));
    bucket.put_file(&stranger, &write_file(server.dir.path(), "theirs.csv", b"someone else's")).unwrap();
    let refused = server.cli_with_env(&migrate, &refs(&env));
    let said = output_text(&refused);
    assert_eq!(refused.status.code(), Some(2), "a setting to change: {said}");
    assert!(said.contains("already holds acme's /exports/theirs.csv"), "{said}");
    assert!(said.contains("nothing was changed"), "{said}");
    assert!(exports.join("students.csv").is_file() && !marker.exists(), "nothing moved or marked");
    bucket.delete(&stranger).unwrap();
    // Nor over a file of the same name with other bytes (another district's students.csv).
    let theirs = ObjectKey::folder(&tenant("acme"), "exports").file(&name("students.csv"));
    bucket.put_file(&theirs, &write_file(server.dir.path(), "theirs.csv", b"sisId\nOTHER\n")).unwrap();
    let refused = server.cli_with_env(&migrate, &refs(&env));
    let said = output_text(&refused);
    assert!(said.contains("already holds acme's /exports/students.csv"), "{said}");
    assert!(exports.join("students.csv").is_file() && !marker.exists(), "nothing moved or marked");
    bucket.delete(&theirs).unwrap();
    // Nor beside exports of a tenant this deployment does not have.
    let zeta = ObjectKey::folder(&tenant("zeta"), "exports").file(&name("z.csv"));
    bucket.put_file(&zeta, &write_file(server.dir.path(), "z.csv", b"sisId\nZ\n")).unwrap();
    let refused = server.cli_with_env(&migrate, &refs(&env));
    let said = output_text(&refused);
    assert_eq!(refused.status.code(), Some(2), "{said}");
    assert!(said.contains("exports of a tenant named zeta"), "{said}");
    assert!(exports.join("students.csv").is_file() && !marker.exists(), "nothing moved or marked");
    bucket.delete(&zeta).unwrap();

    let moved = server.cli_with_env(&migrate, &refs(&env));
    assert!(moved.status.success(), "{}", output_text(&moved));
    let said = String::from_utf8(moved.stdout).unwrap();
    let acme = said.lines().find(|l| l.starts_with("acme ")).unwrap_or_default().to_owned();
    let columns: Vec<&str> = acme.split_whitespace().collect();
    assert_eq!(columns.len(), 4, "tenant, files, bytes, sha256: {said}");
    assert_eq!(columns[1], "3", "students.csv and two photos: {said}");
    assert_eq!(columns[3].len(), 64, "{said}");
    assert!(said.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()[..2] == ["beta", "0"]), "{said}");
    assert!(said.contains("each read back and compared"), "{said}");
    assert!(marker.exists());
    assert!(walk(&exports).is_empty(), "nothing left on the disk's /exports: {:?}", walk(&exports));
    let kept = walk(&server.data_dir().join("archive"));
    let kept_csv =
        kept.iter().find(|p| p.ends_with("acme/exports/students.csv")).expect("kept in the archive");
    assert_eq!(std::fs::read(kept_csv).unwrap(), csv);
    assert!(kept.iter().any(|p| p.ends_with("acme/exports/photos/S1.jpg")), "{kept:?}");
    let photos = bucket.list(&ObjectKey::folder(&tenant("acme"), "exports/photos")).unwrap();
    assert_eq!(photos.files.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["S1.jpg", "S2.png"]);

    // Districts download the same bytes, now from the bucket.
    server.start_again_with(&refs(&env));
    let out = sftp_batch(
        &server,
        &key,
        "get /exports/students.csv moved.csv\nget /exports/photos/S1.jpg s1.jpg\n",
        &[],
    );
    assert!(out.status.success(), "{}\n{}", output_text(&out), server.log());
    assert_eq!(std::fs::read(server.dir.path().join("moved.csv")).unwrap(), csv);
    assert_eq!(std::fs::read(server.dir.path().join("s1.jpg")).unwrap(), jpeg(64, 80));
    assert!(
        server.cli_ok(&["audit", "--action", "storage.migrate"]).contains("s3://sluice-it/district-data")
    );
    // The server writes the next export into the bucket. Files left on the disk afterwards (a
    // move cut short; an export some command wrote meanwhile) are finished by the same
    // command run again: what the bucket lacks is copied, what it has stays the bucket's.
    server.cli_ok(&["export", "--tenant", "acme", "--type", "students", "--format", "xlsx"]);
    assert_eq!(server.terminate(), Some(0));
    std::fs::write(exports.join("students.csv"), b"sisId\nSTALE\n").unwrap();
    std::fs::write(exports.join("late.csv"), b"sisId\nLATE\n").unwrap();
    let finished = server.cli(&migrate);
    let said = output_text(&finished);
    assert!(finished.status.success(), "{said}");
    assert!(said.contains("1 files left on the disk were in the bucket already"), "{said}");
    assert!(walk(&exports).is_empty(), "{:?}", walk(&exports));
    let object = |file: &str| {
        let key = ObjectKey::folder(&tenant("acme"), "exports").file(&name(file));
        let mut got = bucket.fetch(&key, server.dir.path()).unwrap().expect("in the bucket");
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut got.file, &mut bytes).unwrap();
        bytes
    };
    assert_eq!(object("late.csv"), b"sisId\nLATE\n");
    assert_eq!(object("students.csv"), csv, "the bucket's copy stays");
    assert!(!object("students.xlsx").is_empty());
    // Nothing left: nothing to do.
    let again = server.cli(&migrate);
    assert_eq!(again.status.code(), Some(2), "{}", output_text(&again));
    assert!(output_text(&again).contains("kept in object storage already"), "{}", output_text(&again));
    // A server or command given another prefix (a typo, a staging config) is refused: its
    // districts would see another folder, its exports go where none would look.
    let staging: Vec<(String, String)> = bucket_env(&weed, "staging");
    let refused = server.cli_with_env(&["export", "--tenant", "acme", "--type", "students"], &refs(&staging));
    let said = output_text(&refused);
    assert_eq!(refused.status.code(), Some(2), "{said}");
    assert!(said.contains("keeps tenants' exports in s3://sluice-it/district-data"), "{said}");
    assert!(said.contains("but [storage] names s3://sluice-it/staging"), "{said}");
    let elsewhere = Bucket::open(&weed.settings(BUCKET, "staging")).unwrap();
    assert!(elsewhere.list(&ObjectKey::folder(&tenant("acme"), "exports")).unwrap().files.is_empty());
}

/// How many read copies (unnamed files in `spool/reads`) the server process holds open.
fn open_read_copies(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy().contains("spool/reads")))
        .count()
}

fn name(raw: &str) -> sluice_core::FileName {
    sluice_core::FileName::parse(raw).unwrap()
}

/// Every file under `dir` (none if it does not exist).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() { todo.push(path) } else { out.push(path) }
        }
    }
    out
}
