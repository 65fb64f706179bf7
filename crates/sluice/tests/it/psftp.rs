//! PuTTY's psftp: the SSH code FileZilla and WinSCP share.

use crate::common::*;
use std::process::{Command, Output};
use std::time::Duration;

pub fn psftp(server: &Server, script: &str) -> Output {
    let path = server.dir.path().join("psftp-script.txt");
    std::fs::write(&path, script).unwrap();
    let mut cmd = Command::new("psftp");
    cmd.args([
        "-batch",
        "-P",
        &server.port.to_string(),
        "-pw",
        "pw-putty-for-tests",
        "-hostkey",
        &server.host_fingerprint(),
    ])
    .args(["-b", path.to_str().unwrap(), "acme@127.0.0.1"])
    .current_dir(server.dir.path());
    run_with_timeout(&mut cmd, Duration::from_secs(120))
}

#[test]
fn psftp_upload_list_download_rename() {
    if !have("psftp", "putty-tools") {
        return;
    }
    let server = Server::start();
    server.tenant("acme", "pw-putty-for-tests");
    let data = pseudo_random(5 * 1024 * 1024 + 5, 31);
    write_file(server.dir.path(), "guardians.csv", &data);
    let out = psftp(
        &server,
        "put guardians.csv /guardians/guardians.csv\n\
         ls /guardians\n\
         get /guardians/guardians.csv back.csv\n\
         mv /guardians/guardians.csv /guardians/g2.csv\n\
         ls /guardians\n",
    );
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("g2.csv"), "{text}");
    assert!(std::fs::read(server.dir.path().join("back.csv")).unwrap() == data);
    let uploads = server.uploads("acme");
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0]["sha256"], sha256_hex(&data));
    assert_eq!(uploads[0]["path"], "/guardians/guardians.csv");
}

#[test]
fn psftp_refused_operations() {
    if !have("psftp", "putty-tools") {
        return;
    }
    let server = Server::start();
    server.tenant("acme", "pw-putty-for-tests");
    write_file(server.dir.path(), "f.csv", b"x\n");
    for command in
        ["mkdir /new", "rmdir /students", "put f.csv /f.csv", "put f.csv /exports/f.csv", "rm /students"]
    {
        let out = psftp(&server, &format!("{command}\n"));
        let text = output_text(&out);
        assert!(!out.status.success(), "{command} should fail: {text}");
        assert!(text.to_lowercase().contains("permission denied"), "{command}: {text}");
    }
    assert!(server.uploads("acme").is_empty());
}
