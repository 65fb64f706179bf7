//! ssh-audit (PyPI) against the default algorithms.

use crate::common::*;
use std::process::Command;
use std::time::Duration;

fn audit(server: &Server) -> (Option<i32>, String) {
    let out = run_with_timeout(
        Command::new("ssh-audit").args([
            "--skip-rate-test",
            "-n",
            "-p",
            &server.port.to_string(),
            "127.0.0.1",
        ]),
        Duration::from_secs(60),
    );
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn ssh_audit_finds_no_failures_and_only_the_post_quantum_note_on_curve25519() {
    if !have("ssh-audit", "ssh-audit (pip)") {
        return;
    }
    let server = Server::start();
    let (code, report) = audit(&server);
    assert!(!report.contains("[fail]"), "{report}");
    // curve25519 stays in the defaults so that clients without ML-KEM (Debian 12's OpenSSH,
    // PuTTY 0.78, paramiko, libssh2) can connect; ssh-audit notes it is not post-quantum.
    for line in report.lines().filter(|l| l.contains("[warn]")) {
        assert!(line.contains("curve25519") && line.contains("post-quantum"), "unexpected warning: {line}");
    }
    // Exactly these algorithms, nothing weaker.
    let offered: Vec<&str> = report
        .lines()
        .filter(|l| ["(kex)", "(key)", "(enc)", "(mac)"].iter().any(|p| l.starts_with(p)))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(
        offered,
        [
            "mlkem768x25519-sha256",
            "curve25519-sha256",
            "curve25519-sha256@libssh.org",
            "ext-info-s",
            "kex-strict-s-v00@openssh.com",
            "ssh-ed25519",
            "aes128-gcm@openssh.com",
            "aes256-gcm@openssh.com",
            "chacha20-poly1305@openssh.com",
            "aes256-ctr",
            "aes192-ctr",
            "aes128-ctr",
            "hmac-sha2-256-etm@openssh.com",
            "hmac-sha2-512-etm@openssh.com",
        ],
        "{report}"
    );
    assert!(report.contains("kex-strict-s-v00@openssh.com"), "strict kex must be offered");
    assert_ne!(code, Some(3), "ssh-audit reported failures");

    let pq = Server::start_with(&[("SLUICE_SFTP_POST_QUANTUM_ONLY", "1")]);
    let (code, report) = audit(&pq);
    assert_eq!(code, Some(0), "post-quantum-only mode must be clean: {report}");
}
