//! curl's sftp:// (libssh2), as SIS export jobs often use it. Debian 12's libssh2 1.10
//! cannot do encrypt-then-MAC, so it needs the compatibility switch.

use crate::common::*;
use std::process::{Command, Output};
use std::time::Duration;

fn curl(server: &Server, args: &[&str]) -> Output {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--insecure", "--user", "acme:pw-curl-for-tests"])
        .args(args)
        .current_dir(server.dir.path());
    run_with_timeout(&mut cmd, Duration::from_secs(60))
}

#[test]
fn curl_with_compat_uploads_lists_downloads_renames() {
    if !have("curl", "curl") {
        return;
    }
    let server = Server::start_with(&[("SLUICE_SFTP_COMPAT", "true")]);
    server.tenant("acme", "pw-curl-for-tests");
    let data = pseudo_random(3_000_000, 51);
    write_file(server.dir.path(), "s.csv", &data);
    let base = format!("sftp://127.0.0.1:{}", server.port);

    let out = curl(&server, &["-T", "s.csv", &format!("{base}/students/s.csv")]);
    assert!(out.status.success(), "upload: {}", output_text(&out));
    let out = curl(&server, &[&format!("{base}/students/")]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("s.csv"), "list: {}", output_text(&out));
    let out = curl(&server, &["-o", "back.csv", &format!("{base}/students/s.csv")]);
    assert!(out.status.success(), "download: {}", output_text(&out));
    assert!(std::fs::read(server.dir.path().join("back.csv")).unwrap() == data);
    let out = curl(&server, &["-Q", "rename /students/s.csv /students/t.csv", &format!("{base}/students/")]);
    assert!(out.status.success(), "rename: {}", output_text(&out));
    assert!(server.tenant_dir("acme").join("students/t.csv").exists());
    let out = curl(&server, &["-Q", "mkdir /new", &format!("{base}/")]);
    assert!(!out.status.success(), "mkdir must be refused");
    let out = curl(&server, &["-T", "s.csv", &format!("{base}/exports/s.csv")]);
    assert!(!out.status.success(), "upload to /exports must be refused");

    let uploads = server.uploads("acme");
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0]["sha256"], sha256_hex(&data));
}

#[test]
fn curl_without_compat_fails_and_the_log_says_how_to_admit_it() {
    if !have("curl", "curl") {
        return;
    }
    let server = Server::start();
    server.tenant("acme", "pw-curl-for-tests");
    let out = curl(&server, &[&format!("sftp://127.0.0.1:{}/students/", server.port)]);
    if out.status.success() {
        // A libssh2 new enough for encrypt-then-MAC needs no switch: nothing to check.
        eprintln!("curl's libssh2 supports encrypt-then-MAC; compat not needed");
        return;
    }
    assert!(server.wait_for_log("SLUICE_SFTP_COMPAT=1", Duration::from_secs(5)), "{}", server.log());
}
