//! OpenSSH's `sftp` in batch mode, the way SIS export scripts run it.

use crate::common::*;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

pub fn sftp_batch(server: &Server, key: &Path, batch: &str, extra: &[&str]) -> Output {
    let batch_file = server.dir.path().join(format!("batch-{}.txt", rand_suffix()));
    std::fs::write(&batch_file, batch).unwrap();
    let mut cmd = Command::new("sftp");
    cmd.args([
        "-b",
        batch_file.to_str().unwrap(),
        "-P",
        &server.port.to_string(),
        "-i",
        key.to_str().unwrap(),
    ])
    .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"])
    .args(["-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR"])
    .args(extra)
    .arg("acme@127.0.0.1")
    .current_dir(server.dir.path());
    run_with_timeout(&mut cmd, Duration::from_secs(120))
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

#[test]
fn openssh_sftp_batch_upload_list_download_rename() {
    if !have("sftp", "openssh-client") {
        return;
    }
    let server = Server::start();
    server.tenant("acme", "unused-password");
    let key = server.key("acme");
    let small = pseudo_random(1_000_003, 21);
    let big = pseudo_random(24 * 1024 * 1024, 22);
    write_file(server.dir.path(), "students.csv", &small);
    write_file(server.dir.path(), "big.csv", &big);

    let out = sftp_batch(
        &server,
        &key,
        "put students.csv /students/students.csv\n\
         put big.csv /employees/big.csv\n\
         ls -l /students\n\
         get /students/students.csv back.csv\n\
         get /employees/big.csv big-back.csv\n\
         rename /students/students.csv /students/renamed.csv\n\
         ls /students\n\
         rm /employees/big.csv\n",
        &[],
    );
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("students.csv"), "{text}");
    assert!(text.contains("renamed.csv"), "{text}");
    assert!(std::fs::read(server.dir.path().join("back.csv")).unwrap() == small);
    assert!(std::fs::read(server.dir.path().join("big-back.csv")).unwrap() == big, "24 MB download differs");
    assert!(server.tenant_dir("acme").join("students/renamed.csv").exists());
    assert!(!server.tenant_dir("acme").join("employees/big.csv").exists());

    let uploads = server.uploads("acme");
    assert_eq!(uploads.len(), 2, "{uploads:?}");
    assert_eq!(uploads[0]["path"], "/students/students.csv");
    assert_eq!(uploads[0]["sha256"], sha256_hex(&small));
    assert_eq!(uploads[1]["sha256"], sha256_hex(&big));
}

#[test]
fn openssh_sftp_refused_operations() {
    if !have("sftp", "openssh-client") {
        return;
    }
    let server = Server::start();
    server.tenant("acme", "unused-password");
    let key = server.key("acme");
    write_file(server.dir.path(), "f.csv", b"a,b\n");
    for command in [
        "mkdir /new",
        "rmdir /students",
        "put f.csv /f.csv",
        "put f.csv /exports/f.csv",
        "put f.csv /errors/f.csv",
        "ln -s /students/f.csv /students/link",
        "chmod 777 /students",
        "rename /students /pupils",
    ] {
        let out = sftp_batch(&server, &key, &format!("{command}\n"), &[]);
        let text = output_text(&out);
        assert!(!out.status.success(), "{command} should fail: {text}");
        assert!(text.contains("Permission denied"), "{command}: {text}");
    }
    let out = sftp_batch(&server, &key, "get /students/missing.csv x\n", &[]);
    assert!(output_text(&out).contains("not found"), "{}", output_text(&out));
    assert!(server.uploads("acme").is_empty());
}

/// A district's nightly `get -r /exports`: OpenSSH makes each local folder with the mode the
/// server lists, so read-only folders listed `dr-xr-xr-x` became read-only folders on the
/// district's machine, and the next night's run failed to write a new file there (`Permission
/// denied`, as any user but root; found by a newcomer's walk). The tenant's folders are listed
/// `drwxr-xr-x`; what may be written there is still the server's to say (refused below).
#[test]
fn a_nightly_get_r_of_exports_leaves_local_folders_it_can_write_again() {
    if !have("sftp", "openssh-client") {
        return;
    }
    let server = Server::start();
    server.tenant("acme", "unused-password");
    let key = server.key("acme");
    let file = write_file(server.dir.path(), "students.csv", b"sisId,firstName,lastName\nS1,Ann,Lee\n");
    server.cli_ok(&["import", "--tenant", "acme", file.to_str().unwrap()]);
    server.cli_ok(&["export", "--tenant", "acme", "--type", "students"]);
    let out = sftp_batch(&server, &key, "get -r /exports\n", &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    use std::os::unix::fs::PermissionsExt;
    let local = server.dir.path().join("exports");
    let mode = std::fs::metadata(&local).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o200, 0o200, "the local folder is {mode:o}: the next night cannot add a file to it");
    assert!(local.join("students.csv").is_file());
    let out = sftp_batch(&server, &key, "put students.csv /exports/students.csv\n", &[]);
    assert!(
        !out.status.success() && output_text(&out).contains("Permission denied"),
        "{}",
        output_text(&out)
    );
}

#[test]
fn negotiation_failure_names_the_compat_switch() {
    if !have("sftp", "openssh-client") {
        return;
    }
    let old_client = ["-o", "MACs=hmac-sha2-256", "-o", "Ciphers=aes128-ctr"];
    let server = Server::start();
    server.tenant("acme", "unused-password");
    let key = server.key("acme");
    let out = sftp_batch(&server, &key, "ls /\n", &old_client);
    assert!(!out.status.success());
    assert!(server.wait_for_log("compat = true", Duration::from_secs(5)), "{}", server.log());
    assert!(server.log().contains("hmac-sha2-256"), "the log must say what the client offered");

    let compat = Server::start_with(&[("SLUICE_SFTP_COMPAT", "1")]);
    compat.tenant("acme", "unused-password");
    let key = compat.key("acme");
    let out = sftp_batch(&compat, &key, "ls /\n", &old_client);
    assert!(out.status.success(), "{}", output_text(&out));
    // Weak algorithms stay refused even in compat mode.
    let out = sftp_batch(&compat, &key, "ls /\n", &["-o", "MACs=hmac-sha1", "-o", "Ciphers=aes128-ctr"]);
    assert!(!out.status.success());
}

/// `ssh-keyscan` on its defaults asks for each host key type on a connection of its own: it
/// gets the Ed25519 key, and its RSA probe is logged as what it is, not as a client to update
/// (a newcomer checking that nodes share one host key was told to update OpenSSH).
#[test]
fn ssh_keyscan_gets_the_host_key_and_its_other_probes_are_explained() {
    if !have("ssh-keyscan", "openssh-client") {
        return;
    }
    let server = Server::start();
    let out = run_with_timeout(
        Command::new("ssh-keyscan").args(["-p", &server.port.to_string(), "127.0.0.1"]),
        Duration::from_secs(30),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ssh-ed25519 "), "{}", output_text(&out));
    assert!(server.wait_for_log("expected from ssh-keyscan", Duration::from_secs(5)), "{}", server.log());
    // Scanned again and again (a monitor), it is never banned.
    for _ in 0..4 {
        let out = run_with_timeout(
            Command::new("ssh-keyscan").args(["-p", &server.port.to_string(), "127.0.0.1"]),
            Duration::from_secs(30),
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("ssh-ed25519 "), "{}", output_text(&out));
    }
    assert!(!server.log().contains("banned"), "{}", server.log());
}

/// RSA (2048+ bits) and ECDSA keys log in with OpenSSH on its defaults: the server names the
/// signature algorithms it accepts (`server-sig-algs`), or the client has none to sign with.
#[test]
fn rsa_and_ecdsa_keys_log_in_with_openssh_defaults() {
    if !have("sftp", "openssh-client") || !have("ssh-keygen", "openssh-client") {
        return;
    }
    let server = Server::start();
    server.tenant("acme", "unused-password");
    for (kind, bits) in [("rsa", "3072"), ("ecdsa", "256"), ("ecdsa", "384")] {
        let key = server.dir.path().join(format!("id_{kind}_{bits}"));
        let made = Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-b", bits, "-N", "", "-f", key.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(made.status.success(), "{}", output_text(&made));
        server.cli_ok(&["key", "add", "acme", key.with_extension("pub").to_str().unwrap()]);
        let out = sftp_batch(&server, &key, "ls /\n", &[]);
        assert!(out.status.success(), "{kind} {bits}: {}", output_text(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("students"), "{}", output_text(&out));
    }
}
