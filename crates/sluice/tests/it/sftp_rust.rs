//! The Rust SFTP client (russh + russh-sftp) against the real server.

use crate::common::*;
use russh_sftp::protocol::{OpenFlags, StatusCode};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn upload_list_download_rename_remove_round_trip() {
    let server = Server::start();
    server.tenant("acme", "pw-acme-for-tests");
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-acme-for-tests").await;

    assert_eq!(sftp.canonicalize(".").await.unwrap(), "/");
    let mut root: Vec<String> = sftp.read_dir("/").await.unwrap().map(|e| e.file_name()).collect();
    root.sort();
    assert_eq!(root, ["employees", "errors", "exports", "guardians", "students", "visitors"]);

    let data = pseudo_random(3 * 1024 * 1024 + 17, 1);
    let mut f = sftp.create("/students/students.csv").await.unwrap();
    f.write_all(&data).await.unwrap();
    f.shutdown().await.unwrap();
    drop(f);

    let listed: Vec<_> = sftp.read_dir("/students").await.unwrap().collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].file_name(), "students.csv");
    assert_eq!(listed[0].metadata().size, Some(data.len() as u64));
    assert_eq!(sftp.metadata("students/students.csv").await.unwrap().size, Some(data.len() as u64));

    let mut back = Vec::new();
    sftp.open("/students/students.csv").await.unwrap().read_to_end(&mut back).await.unwrap();
    assert!(back == data, "downloaded bytes differ");
    assert_eq!(std::fs::read(server.tenant_dir("acme").join("students/students.csv")).unwrap(), data);

    sftp.rename("/students/students.csv", "/students/renamed.csv").await.unwrap();
    assert!(!sftp.try_exists("/students/students.csv").await.unwrap());
    sftp.remove_file("/students/renamed.csv").await.unwrap();
    assert_eq!(sftp.read_dir("/students").await.unwrap().count(), 0);

    let uploads = server.uploads("acme");
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    assert_eq!(uploads[0]["path"], "/students/students.csv");
    assert_eq!(uploads[0]["size"], data.len() as u64);
    assert_eq!(uploads[0]["sha256"], sha256_hex(&data));
    assert!(server.spool_is_empty());
}

#[tokio::test]
async fn refused_operations_say_why() {
    let server = Server::start();
    server.tenant("acme", "pw-for-tests");
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    std::fs::write(server.tenant_dir("acme").join("exports/out.csv"), "a,b\n").unwrap();
    std::fs::write(server.tenant_dir("acme").join("students/in.csv"), "a,b\n").unwrap();

    let denied = |(code, msg): (StatusCode, String), hint: &str| {
        assert_eq!(code, StatusCode::PermissionDenied, "{msg}");
        assert!(msg.contains(hint), "message {msg:?} should mention {hint:?}");
    };
    denied(sftp_status(sftp.create_dir("/new").await), "folders cannot be created");
    denied(sftp_status(sftp.create_dir("/students/sub").await), "folders cannot be created");
    denied(sftp_status(sftp.remove_dir("/students").await), "folders cannot be created");
    denied(sftp_status(sftp.remove_dir("/exports").await), "folders cannot be created");
    denied(sftp_status(sftp.remove_file("/students").await), "folders cannot be created");
    denied(sftp_status(sftp.rename("/students", "/pupils").await), "folders cannot be created");
    denied(sftp_status(sftp.symlink("/students/link", "/etc/passwd").await), "symbolic links");
    denied(sftp_status(sftp.create("/root.csv").await), "root folder is read-only");
    denied(sftp_status(sftp.create("/exports/x.csv").await), "/exports is read-only");
    denied(sftp_status(sftp.create("/errors/x.csv").await), "/errors is read-only");
    denied(sftp_status(sftp.remove_file("/exports/out.csv").await), "/exports is read-only");
    denied(sftp_status(sftp.rename("/exports/out.csv", "/exports/o2.csv").await), "/exports is read-only");
    denied(sftp_status(sftp.rename("/students/in.csv", "/employees/in.csv").await), "within its own folder");
    denied(sftp_status(sftp.create("/students/sub/x.csv").await), "subfolders are not supported");
    denied(sftp_status(sftp.create("/nowhere/x.csv").await), "no folder /nowhere");
    let mut attrs = russh_sftp::protocol::FileAttributes::empty();
    attrs.permissions = Some(0o777);
    denied(sftp_status(sftp.set_metadata("/students", attrs.clone()).await), "folder attributes");
    // Setting attributes on a file is accepted (and ignored): clients do it after uploads.
    sftp.set_metadata("/students/in.csv", attrs).await.unwrap();

    // Read-only folders can still be read.
    let mut out = String::new();
    sftp.open("/exports/out.csv").await.unwrap().read_to_string(&mut out).await.unwrap();
    assert_eq!(out, "a,b\n");
    // Nothing was changed by the refusals.
    assert!(server.tenant_dir("acme").join("exports/out.csv").exists());
    assert!(!server.tenant_dir("acme").join("new").exists());
    assert!(server.uploads("acme").is_empty());
}

#[tokio::test]
async fn paths_cannot_leave_the_tenant_tree() {
    let server = Server::start();
    server.tenant("acme", "pw-for-tests");
    server.tenant("beta", "pw2-for-tests");
    let secret = server.tenant_dir("beta").join("students/secret.csv");
    std::fs::write(&secret, "beta's data").unwrap();
    // An operator-made symlink inside acme's folder must not be followed.
    std::os::unix::fs::symlink(&secret, server.tenant_dir("acme").join("students/link.csv")).unwrap();
    std::os::unix::fs::symlink("/etc", server.tenant_dir("acme").join("students/etc")).unwrap();

    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    for path in [
        "../beta/students/secret.csv",
        "/../beta/students/secret.csv",
        "/students/../../beta/students/secret.csv",
        "//students//..//..//beta/students/secret.csv",
        "../../../../etc/passwd",
        "/etc/passwd",
        "/students/link.csv",
        "/students/etc/passwd",
        "/students/a\0/../../beta/students/secret.csv",
    ] {
        let r = sftp.open(path).await;
        assert!(r.is_err(), "{path:?} must not be readable");
        assert!(sftp.metadata(path).await.is_err(), "{path:?} must not be stat-able");
    }
    // `..` stops at the root: this lands in acme's own /students, nowhere else.
    put(&sftp, "../../students/up.csv", b"mine").await.unwrap();
    assert_eq!(std::fs::read(server.tenant_dir("acme").join("students/up.csv")).unwrap(), b"mine");
    assert_eq!(sftp.canonicalize("../../..").await.unwrap(), "/");
    // NUL bytes are refused, not truncated.
    assert!(put(&sftp, "/students/evil\0.csv", b"x").await.is_err());
    assert!(!server.tenant_dir("acme").join("students/evil").exists());
    // Writing onto the symlink must neither follow nor replace it.
    assert!(put(&sftp, "/students/link.csv", b"overwrite").await.is_err());
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "beta's data");
    // Symlinks are invisible in listings.
    let names: Vec<String> = sftp.read_dir("/students").await.unwrap().map(|e| e.file_name()).collect();
    assert_eq!(names, ["up.csv"]);
    // beta sees none of acme's files.
    let (_ssh2, beta) = sftp_login(server.port, "beta", "pw2-for-tests").await;
    let beta_files: Vec<String> = beta.read_dir("/students").await.unwrap().map(|e| e.file_name()).collect();
    assert_eq!(beta_files, ["secret.csv"]);
    assert!(beta.open("/students/up.csv").await.is_err());
}

#[tokio::test]
async fn a_dropped_connection_leaves_nothing_visible() {
    let server = Server::start();
    server.tenant("acme", "pw-for-tests");
    {
        let (ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
        let mut f = sftp.create("/students/partial.csv").await.unwrap();
        f.write_all(&pseudo_random(2 * 1024 * 1024, 7)).await.unwrap();
        f.flush().await.unwrap();
        // While the upload is open nothing is visible in the folder.
        let visible = std::fs::read_dir(server.tenant_dir("acme").join("students")).unwrap().count();
        assert_eq!(visible, 0);
        // The connection drops without closing the file.
        drop(f);
        drop(sftp);
        let _ = ssh.disconnect(russh::Disconnect::ByApplication, "gone", "en").await;
    }
    for _ in 0..100 {
        if server.spool_is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(server.spool_is_empty(), "temporary upload was not cleaned up");
    assert_eq!(std::fs::read_dir(server.tenant_dir("acme").join("students")).unwrap().count(), 0);
    assert!(server.uploads("acme").is_empty());
}

#[tokio::test]
async fn client_temporary_names_count_once_renamed() {
    let server = Server::start();
    server.tenant("acme", "pw-for-tests");
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    let data = pseudo_random(100_000, 3);
    for temp in ["/students/a.csv.filepart", "/employees/b.csv.part", "/guardians/c.tmp"] {
        put(&sftp, temp, &data).await.unwrap();
    }
    assert!(server.uploads("acme").is_empty(), "temporary names must not count as uploads");
    sftp.rename("/students/a.csv.filepart", "/students/a.csv").await.unwrap();
    sftp.rename("/employees/b.csv.part", "/employees/b.csv").await.unwrap();
    let uploads = server.uploads("acme");
    assert_eq!(uploads.len(), 2);
    for u in &uploads {
        assert_eq!(u["sha256"], sha256_hex(&data));
        assert_eq!(u["size"], data.len() as u64);
    }
    // Plain rename refuses to overwrite; the target keeps its content.
    put(&sftp, "/students/x.csv", b"x").await.unwrap();
    put(&sftp, "/students/y.csv", b"y").await.unwrap();
    let (code, _) = sftp_status(sftp.rename("/students/x.csv", "/students/y.csv").await);
    assert_eq!(code, StatusCode::Failure);
    assert_eq!(std::fs::read(server.tenant_dir("acme").join("students/y.csv")).unwrap(), b"y");
    // Overwriting an existing file by upload replaces it atomically.
    put(&sftp, "/students/y.csv", b"new").await.unwrap();
    assert_eq!(std::fs::read(server.tenant_dir("acme").join("students/y.csv")).unwrap(), b"new");
}

#[tokio::test]
async fn exclusive_create_and_resume_without_truncate() {
    let server = Server::start();
    server.tenant("acme", "pw-for-tests");
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    put(&sftp, "/students/r.csv", b"hello ").await.unwrap();
    let excl = sftp
        .open_with_flags("/students/r.csv", OpenFlags::CREATE | OpenFlags::EXCLUDE | OpenFlags::WRITE)
        .await;
    assert!(excl.is_err(), "EXCL on an existing file must fail");
    // Append keeps the existing content (resume-style).
    let mut f = sftp.open_with_flags("/students/r.csv", OpenFlags::WRITE | OpenFlags::APPEND).await.unwrap();
    f.write_all(b"world").await.unwrap();
    f.shutdown().await.unwrap();
    drop(f);
    assert_eq!(std::fs::read(server.tenant_dir("acme").join("students/r.csv")).unwrap(), b"hello world");
    let uploads = server.uploads("acme");
    assert_eq!(uploads.last().unwrap()["sha256"], sha256_hex(b"hello world"));
}

#[tokio::test]
async fn authentication_rules() {
    let server = Server::start();
    server.tenant("acme", "right-password");
    let key = server.key("acme");
    assert!(ssh_login(server.port, "acme", "wrong").await.is_err());
    assert!(ssh_login(server.port, "nobody", "right-password").await.is_err());
    assert!(ssh_login(server.port, "acme", "right-password").await.is_ok());

    // Public key authentication with the authorised key.
    let private = russh::keys::PrivateKey::from_openssh(std::fs::read_to_string(&key).unwrap()).unwrap();
    let mut handle = ssh_connect(server.port).await;
    let auth = handle
        .authenticate_publickey(
            "acme",
            russh::keys::PrivateKeyWithHashAlg::new(std::sync::Arc::new(private.clone()), None),
        )
        .await
        .unwrap();
    assert!(auth.success());
    // The same key is not valid for another tenant.
    server.tenant("beta", "beta-password");
    let mut other = ssh_connect(server.port).await;
    let auth = other
        .authenticate_publickey(
            "beta",
            russh::keys::PrivateKeyWithHashAlg::new(std::sync::Arc::new(private), None),
        )
        .await
        .unwrap();
    assert!(!auth.success());

    server.cli_ok(&["tenant", "disable", "acme"]);
    assert!(
        ssh_login(server.port, "acme", "right-password").await.is_err(),
        "a disabled tenant must not log in"
    );
    server.cli_ok(&["tenant", "enable", "acme"]);
    assert!(ssh_login(server.port, "acme", "right-password").await.is_ok());
    assert!(!server.log().contains("right-password"), "passwords must never be logged");
}

#[tokio::test]
async fn shell_and_exec_are_refused() {
    let server = Server::start();
    server.tenant("acme", "pw-for-tests");
    let handle = ssh_login(server.port, "acme", "pw-for-tests").await.unwrap();
    let mut channel = handle.channel_open_session().await.unwrap();
    assert!(channel.exec(true, "cat /etc/passwd").await.is_ok());
    let mut saw_failure = false;
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(5), channel.wait()).await {
        match msg {
            russh::ChannelMsg::Failure => saw_failure = true,
            russh::ChannelMsg::Data { .. } => panic!("exec must not produce output"),
            russh::ChannelMsg::Close => break,
            _ => {}
        }
    }
    assert!(saw_failure, "exec request must be refused");
    let channel = handle.channel_open_session().await.unwrap();
    channel.request_subsystem(true, "not-sftp").await.unwrap();
}

/// Handles must survive clients that keep them as text: a binary handle with a byte above
/// 0x7F came back mangled from russh-sftp at the 128th file of a session.
#[tokio::test]
async fn hundreds_of_files_in_one_session() {
    let server = Server::start();
    server.tenant("acme", "pw-for-tests");
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    for i in 0..300 {
        put(&sftp, &format!("/students/f{i}.csv"), format!("{i}\n").as_bytes()).await.unwrap();
    }
    assert_eq!(sftp.read_dir("/students").await.unwrap().count(), 300);
    assert_eq!(server.uploads("acme").len(), 300);
}
