//! The front door under real conditions: sessions held past every timeout, clients that
//! drop mid-transfer or pad their requests, limits on channels, handles and descriptors,
//! exclusive creates, revoked credentials, and a shutdown that lets transfers finish.

use crate::common::*;
use crate::openssh::sftp_batch;
use russh_sftp::protocol::OpenFlags;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The grace covers logging in only: a session idle past it, then a throttled upload that
/// takes three times as long, both go on.
#[test]
fn sessions_outlive_the_login_grace_and_throttled_uploads_finish() {
    if !have("sftp", "openssh-client") {
        return;
    }
    let server = Server::start_with(&[("SLUICE_SFTP_LOGIN_GRACE_SECS", "2")]);
    server.tenant("acme", "unused-password");
    let key = server.key("acme");
    // `!sleep 4` holds the logged-in session idle past the grace.
    let out = sftp_batch(&server, &key, "ls /\n!sleep 4\nls /students\n", &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    // `-l 400` (kbit/s) makes one upload take several times the grace.
    let data = pseudo_random(600_000, 7);
    write_file(server.dir.path(), "slow.csv", &data);
    let start = Instant::now();
    let out = sftp_batch(&server, &key, "put slow.csv /students/slow.csv\nls -l /students\n", &["-l", "400"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        start.elapsed() > Duration::from_secs(4),
        "the transfer was not throttled: {:?}",
        start.elapsed()
    );
    assert!(std::fs::read(server.tenant_dir("acme").join("students/slow.csv")).unwrap() == data);
    assert!(!server.log().contains("login grace time exceeded"), "{}", server.log());
    // The grace still ends connections that never log in.
    let mut idle = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut idle, &mut sink);
    assert!(server.wait_for_log("not authenticated within", Duration::from_secs(5)));
}

/// paramiko's `get` prefetches the whole file; the client then stops reading (the server's
/// writer waits for window) and is killed. Everything the session held is given back.
#[test]
fn a_prefetching_download_dropped_mid_transfer_frees_everything() {
    if !have_python_module("paramiko", "paramiko (pip)") {
        return;
    }
    let server = Server::start();
    server.tenant("acme", "pw-for-tests");
    std::fs::write(server.tenant_dir("acme").join("students/big.csv"), pseudo_random(64 << 20, 3)).unwrap();
    let baseline = server.fd_count();
    let script = write_file(
        server.dir.path(),
        "prefetch.py",
        br#"
import sys, time, paramiko
t = paramiko.Transport(("127.0.0.1", int(sys.argv[1])))
t.connect(username="acme", password="pw-for-tests")
s = paramiko.SFTPClient.from_transport(t)
f = s.open("/students/big.csv", "rb")
f.prefetch()
f.read(1 << 20)
g = s.open("/students/big.csv", "rb")
print("ready", flush=True)
time.sleep(600)
"#,
    );
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(server.port.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    // Let the server's writer fill the client's window and wait on it.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(server.metric("sluice_sftp_sessions"), 1);
    assert_eq!(server.metric("sluice_sftp_open_handles"), 2);
    child.kill().unwrap();
    child.wait().unwrap();
    let freed = server.wait_until(Duration::from_secs(10), |s| {
        s.metric("sluice_sftp_sessions") == 0
            && s.metric("sluice_sftp_open_handles") == 0
            && s.fd_count() <= baseline
    });
    assert!(
        freed,
        "sessions {}, handles {}, descriptors {} (before: {baseline})",
        server.metric("sluice_sftp_sessions"),
        server.metric("sluice_sftp_open_handles"),
        server.fd_count()
    );
}

/// READs padded to just under a kilobyte, asking for the largest reply, pipelined by a
/// client that never reads a reply (paramiko's channel, so that it keeps sending while the
/// server's replies wait for window): the session holds a bounded amount, not the ~340 MB
/// one channel could pin before; when the client is killed, the stalled session is ended by
/// the idle clock and everything is given back.
#[test]
fn padded_requests_cannot_pin_memory() {
    if !have_python_module("paramiko", "paramiko (pip)") {
        return;
    }
    let server = Server::start_with(&[("SLUICE_SFTP_IDLE_TIMEOUT_SECS", "10")]);
    server.tenant("acme", "pw-for-tests");
    std::fs::write(server.tenant_dir("acme").join("students/f.csv"), pseudo_random(1 << 20, 5)).unwrap();
    let script = write_file(
        server.dir.path(),
        "padded.py",
        br#"
import struct, sys, paramiko
t = paramiko.Transport(("127.0.0.1", int(sys.argv[1])))
t.connect(username="acme", password="pw-for-tests")
c = t.open_session()
c.invoke_subsystem("sftp")
def packet(body):
    return struct.pack(">I", len(body)) + body
def string(b):
    return struct.pack(">I", len(b)) + b
def reply():
    n = struct.unpack(">I", c.recv(4))[0]
    data = b""
    while len(data) < n:
        data += c.recv(n - len(data))
    return data
c.sendall(packet(b"\x01" + struct.pack(">I", 3)))
assert reply()[0] == 2
c.sendall(packet(b"\x03" + struct.pack(">I", 1) + string(b"/students/f.csv") + struct.pack(">II", 1, 0)))
r = reply()
assert r[0] == 102, r
handle = r[9:]
read = b"\x05" + struct.pack(">I", 7) + string(handle) + struct.pack(">QI", 0, 255 * 1024)
padded = packet(read + b"\x00" * (1020 - len(read)))
print("ready", flush=True)
chunk = padded * 64
for i in range(150000 // 64):
    c.sendall(chunk)
print("sent everything", flush=True)
import time
time.sleep(600)
"#,
    );
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(server.port.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    std::thread::sleep(Duration::from_millis(300));
    let before = server.rss_kib();
    // 150,000 requests of 1,020 bytes: 150 MB of requests, each asking for 255 KiB back. The
    // server stops draining once its budgets are full; the client's sends then block.
    std::thread::sleep(Duration::from_secs(6));
    let grown = server.rss_kib().saturating_sub(before);
    println!("one channel's padded requests grew the server by {} MiB", grown / 1024);
    assert!(grown < 96 * 1024, "the server grew by {grown} KiB for one channel's padded requests");
    child.kill().unwrap();
    child.wait().unwrap();
    let freed = server.wait_until(Duration::from_secs(30), |s| {
        s.metric("sluice_sftp_sessions") == 0 && s.metric("sluice_sftp_open_handles") == 0
    });
    assert!(freed, "the stalled session was not released after the idle timeout");
}

/// OpenSSH's MaxSessions: ten SFTP channels on one connection, not more; a closed one
/// makes room. Handles count per tenant across its connections.
#[tokio::test]
async fn channels_per_connection_and_handles_per_tenant_are_limited() {
    let server = Server::start_with(&[("SLUICE_SFTP_MAX_OPEN_HANDLES_PER_TENANT", "4")]);
    server.tenant("acme", "pw-for-tests");
    std::fs::write(server.tenant_dir("acme").join("students/a.csv"), b"a").unwrap();
    let ssh = ssh_login(server.port, "acme", "pw-for-tests").await.unwrap();
    let mut sessions = Vec::new();
    for _ in 0..10 {
        sessions.push(sftp_open(&ssh).await);
    }
    assert!(ssh.channel_open_session().await.is_err(), "an eleventh channel was opened");
    sessions.pop().unwrap().close().await.unwrap();
    let mut reopened = false;
    for _ in 0..50 {
        if let Ok(channel) = ssh.channel_open_session().await {
            channel.request_subsystem(true, "sftp").await.unwrap();
            reopened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reopened, "closing a channel must make room for another");

    let mut files = Vec::new();
    for _ in 0..3 {
        files.push(sessions[0].open("/students/a.csv").await.unwrap());
    }
    let (_other_ssh, other) = sftp_login(server.port, "acme", "pw-for-tests").await;
    files.push(other.open("/students/a.csv").await.unwrap());
    let (_, message) = sftp_status(other.open("/students/a.csv").await);
    assert!(message.contains("too many open files for this account"), "{message}");
    drop(files.pop());
    let mut opened = false;
    for _ in 0..50 {
        if other.open("/students/a.csv").await.is_ok() {
            opened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(opened, "a closed handle must make room for another");
}

/// A server whose open-file limit is small: one tenant opens channels and files until it is
/// refused, with a message saying why; another tenant still logs in and uploads, and the
/// dashboard and the import worker keep working.
#[tokio::test]
async fn one_tenant_cannot_take_every_descriptor() {
    let server = Server::start_limited(&[], Some(400));
    server.tenant("hog", "pw-for-tests");
    server.importing_tenant("other", "pw-for-tests");
    std::fs::write(server.tenant_dir("hog").join("students/a.csv"), b"a").unwrap();
    let mut messages = Vec::new();
    let (mut connections, mut sessions, mut files) = (Vec::new(), Vec::new(), Vec::new());
    'connections: for _ in 0..20 {
        let Ok(ssh) = ssh_login(server.port, "hog", "pw-for-tests").await else { break };
        for _ in 0..10 {
            let Ok(channel) = ssh.channel_open_session().await else { break };
            channel.request_subsystem(true, "sftp").await.unwrap();
            let sftp = russh_sftp::client::SftpSession::new(channel.into_stream()).await.unwrap();
            for _ in 0..256 {
                match sftp.open("/students/a.csv").await {
                    Ok(f) => files.push(f),
                    Err(e) => {
                        messages.push(format!("{e}"));
                        break 'connections;
                    }
                }
            }
            sessions.push(sftp);
        }
        connections.push(ssh);
    }
    let refusal = messages.first().expect("the hog was never refused");
    assert!(refusal.contains("too many open files"), "{refusal}");
    assert!(!refusal.contains("no such file"), "{refusal}");
    let (_ssh, sftp) = sftp_login(server.port, "other", "pw-for-tests").await;
    put(&sftp, "/students/students.csv", b"sisId,firstName,lastName\n1,A,B\n").await.unwrap();
    let server = tokio::task::spawn_blocking(move || {
        assert!(
            server.wait_until(Duration::from_secs(10), |s| s
                .imports("other")
                .first()
                .is_some_and(|i| i["status"] == "complete")),
            "the other tenant's upload was not imported: {:?}",
            server.imports("other")
        );
        assert_eq!(server.http_get("/healthz").0, 200);
        server
    })
    .await
    .unwrap();
    assert!(!server.log().contains("Too many open files"), "the server ran out of descriptors");
    drop((files, sessions, connections));
}

/// Writing into an existing file (no TRUNC) starts from a copy of it: made off the async
/// threads, keeping a sparse file's holes, and charged to the tenant's spool bound.
#[tokio::test]
async fn writes_into_existing_files_do_not_stall_the_server_or_fill_the_disk() {
    let server = Server::start_with(&[("SLUICE_SFTP_SPOOL_BYTES_PER_TENANT", "2500000000")]);
    server.tenant("acme", "pw-for-tests");
    let big = server.tenant_dir("acme").join("students/sparse.csv");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(1 << 30).unwrap();
    drop(f);
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    let http = server.http_port;
    let probe = tokio::spawn(async move {
        let mut worst = Duration::ZERO;
        for _ in 0..30 {
            let start = Instant::now();
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", http)).await.unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.unwrap();
            worst = worst.max(start.elapsed());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        worst
    });
    let first = sftp.open_with_flags("/students/sparse.csv", OpenFlags::WRITE).await.unwrap();
    let second = sftp.open_with_flags("/students/sparse.csv", OpenFlags::WRITE).await.unwrap();
    let (_, refused) = sftp_status(sftp.open_with_flags("/students/sparse.csv", OpenFlags::WRITE).await);
    assert!(refused.contains("unfinished uploads may take at most"), "{refused}");
    let worst = probe.await.unwrap();
    assert!(worst < Duration::from_secs(1), "/healthz took {worst:?} while files were copied");
    let spool_blocks: u64 = std::fs::read_dir(server.data_dir().join("spool/uploads"))
        .unwrap()
        .map(|e| std::os::unix::fs::MetadataExt::blocks(&e.unwrap().metadata().unwrap()))
        .sum();
    assert!(spool_blocks * 512 < 64 << 20, "two copies of a sparse file took {} bytes", spool_blocks * 512);
    drop((first, second));
}

/// CREAT|EXCL is exclusive across sessions: a second exclusive create of the same new name
/// fails while the first is in progress, and an exclusive upload never replaces a file that
/// appeared meanwhile.
#[tokio::test]
async fn exclusive_create_is_exclusive() {
    let server = Server::start();
    server.tenant("acme", "pw-for-tests");
    let (_a_ssh, a) = sftp_login(server.port, "acme", "pw-for-tests").await;
    let (_b_ssh, b) = sftp_login(server.port, "acme", "pw-for-tests").await;
    let excl = OpenFlags::CREATE | OpenFlags::EXCLUDE | OpenFlags::WRITE;
    let mut first = a.open_with_flags("/students/new.csv", excl).await.unwrap();
    let (_, message) = sftp_status(b.open_with_flags("/students/new.csv", excl).await);
    assert!(message.contains("already exists"), "{message}");
    first.write_all(b"first").await.unwrap();
    first.shutdown().await.unwrap();
    assert_eq!(std::fs::read(server.tenant_dir("acme").join("students/new.csv")).unwrap(), b"first");
    assert!(b.open_with_flags("/students/new.csv", excl).await.is_err(), "the name exists now");

    let mut slow = a.open_with_flags("/students/race.csv", excl).await.unwrap();
    slow.write_all(b"exclusive").await.unwrap();
    put(&b, "/students/race.csv", b"plain upload").await.unwrap();
    assert!(slow.shutdown().await.is_err(), "the exclusive upload replaced a file that appeared meanwhile");
    assert_eq!(std::fs::read(server.tenant_dir("acme").join("students/race.csv")).unwrap(), b"plain upload");
    assert!(server.wait_until(Duration::from_secs(5), |s| s.spool_is_empty()));
}

async fn session_ends(ssh: &ClientHandle, sftp: &russh_sftp::client::SftpSession, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if ssh.is_closed() || sftp.read_dir("/").await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Disabling a tenant, changing its password or removing a key ends the sessions that
/// depend on it at once; other sessions go on.
#[tokio::test]
async fn revoked_credentials_end_their_sessions() {
    let server = Server::start();
    server.tenant("acme", "pw-for-tests");
    server.tenant("other", "pw-for-tests");
    let key = server.key("acme");
    let key_session = || async {
        let mut ssh = ssh_connect(server.port).await;
        let private = russh::keys::PrivateKey::from_openssh(std::fs::read_to_string(&key).unwrap()).unwrap();
        let auth = ssh
            .authenticate_publickey(
                "acme",
                russh::keys::PrivateKeyWithHashAlg::new(std::sync::Arc::new(private), None),
            )
            .await
            .unwrap();
        assert!(auth.success());
        let sftp = sftp_open(&ssh).await;
        (ssh, sftp)
    };

    let (pw_ssh, pw_sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    let (key_ssh, key_sftp) = key_session().await;
    server.cli_stdin(&["tenant", "passwd", "acme", "--password-stdin"], "new-pw-for-tests\n");
    assert!(
        session_ends(&pw_ssh, &pw_sftp, Duration::from_secs(5)).await,
        "password changed, session went on"
    );
    assert!(key_sftp.read_dir("/").await.is_ok(), "a key session does not depend on the password");

    let fingerprint = server.cli_ok(&["key", "list", "acme", "--json"]);
    let fingerprint: serde_json::Value = serde_json::from_str(&fingerprint).unwrap();
    let fingerprint = fingerprint[0]["fingerprint"].as_str().unwrap().to_owned();
    server.cli_ok(&["key", "remove", "acme", &fingerprint]);
    assert!(session_ends(&key_ssh, &key_sftp, Duration::from_secs(5)).await, "key removed, session went on");

    let (ssh, sftp) = sftp_login(server.port, "acme", "new-pw-for-tests").await;
    let (other_ssh, other) = sftp_login(server.port, "other", "pw-for-tests").await;
    let mut upload = sftp.create("/students/in-flight.csv").await.unwrap();
    upload.write_all(b"partial").await.unwrap();
    upload.flush().await.unwrap();
    server.cli_ok(&["tenant", "disable", "acme"]);
    assert!(session_ends(&ssh, &sftp, Duration::from_secs(5)).await, "tenant disabled, session went on");
    assert!(!server.tenant_dir("acme").join("students/in-flight.csv").exists());
    assert!(other.read_dir("/").await.is_ok() && !other_ssh.is_closed(), "another tenant's session ended");
    assert!(server.wait_for_log("ending session: the tenant was disabled", Duration::from_secs(5)));
}

/// SIGTERM: new connections are refused, a throttled upload in flight finishes and is
/// recorded, then the server exits.
#[test]
fn shutdown_lets_transfers_in_flight_finish() {
    if !have("sftp", "openssh-client") {
        return;
    }
    let mut server = Server::start_with(&[("SLUICE_SFTP_DRAIN_SECS", "30")]);
    server.tenant("acme", "unused-password");
    let key = server.key("acme");
    let data = pseudo_random(400_000, 9);
    write_file(server.dir.path(), "drain.csv", &data);
    let batch = server.dir.path().join("drain.batch");
    std::fs::write(&batch, "put drain.csv /students/drain.csv\n").unwrap();
    let mut client = Command::new("sftp")
        .args(["-b", batch.to_str().unwrap(), "-P", &server.port.to_string(), "-i", key.to_str().unwrap()])
        .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"])
        .args(["-o", "IdentitiesOnly=yes", "-l", "400", "acme@127.0.0.1"])
        .current_dir(server.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(server.wait_until(Duration::from_secs(10), |s| s.spool_files() == 1), "the upload did not start");
    let pid = server.pid().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(server.wait_for_log("SIGTERM received", Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", server.port)).is_err(),
        "a new connection was accepted during shutdown"
    );
    let status = client.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut client.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "the upload in flight was cut: {stderr}");
    assert!(std::fs::read(server.tenant_dir("acme").join("students/drain.csv")).unwrap() == data);
    assert_eq!(server.uploads("acme").len(), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.is_running() {
        assert!(Instant::now() < deadline, "the server did not exit after its transfers finished");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// After a wrong password the same connection may try the right one: paramiko's
/// `auth_password` twice on one transport, and OpenSSH's password prompt.
#[test]
fn a_wrong_password_can_be_followed_by_the_right_one() {
    if !have_python_module("paramiko", "paramiko (pip)") || !have("sftp", "openssh-client") {
        return;
    }
    let server = Server::start();
    server.tenant("acme", "right-pw-for-tests");
    let script = write_file(
        server.dir.path(),
        "retry.py",
        br#"
import sys, paramiko
t = paramiko.Transport(("127.0.0.1", int(sys.argv[1])))
t.start_client()
try:
    t.auth_password("acme", "wrong-pw")
    print("wrong accepted")
except paramiko.AuthenticationException as e:
    print("refused:", e)
t.auth_password("acme", "right-pw-for-tests")
s = paramiko.SFTPClient.from_transport(t)
print("listing:", sorted(s.listdir("/")))
"#,
    );
    let out = run_with_timeout(
        Command::new("python3").arg(&script).arg(server.port.to_string()),
        Duration::from_secs(30),
    );
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("refused:"), "{text}");
    assert!(
        text.contains("listing: ['employees', 'errors', 'exports', 'guardians', 'students', 'visitors']"),
        "{text}"
    );

    // OpenSSH asks for the password again after a wrong one (its askpass answers wrong, then right).
    let askpass = server.dir.path().join("askpass.sh");
    let count = server.dir.path().join("askpass.count");
    std::fs::write(
        &askpass,
        format!(
            "#!/bin/sh\nif [ -e {c} ]; then echo right-pw-for-tests; else touch {c}; echo wrong-pw; fi\n",
            c = count.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&askpass, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let batch = write_file(server.dir.path(), "ls.batch", b"ls /\n");
    let out = run_with_timeout(
        // `-b` turns BatchMode on (no password prompts) unless an earlier option said otherwise.
        Command::new("sftp")
            .args(["-o", "BatchMode=no", "-b", batch.to_str().unwrap(), "-P", &server.port.to_string()])
            .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
            .args(["-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password"])
            .arg("acme@127.0.0.1")
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0"),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("students"), "{}", output_text(&out));
}

/// Guessing passwords by reconnecting: the source is banned once its failures reach the
/// threshold, the right password is then refused too (at connect, with a sentence saying
/// why), and `sluice defender unban` lets it back in.
#[tokio::test]
async fn sftp_password_guessing_gets_the_source_banned() {
    let server = Server::start();
    server.tenant("acme", "right-pw-for-tests");
    let mut guesses = 0;
    while guesses < 50 {
        match ssh_login(server.port, "acme", &format!("guess-{guesses}")).await {
            Ok(_) => panic!("a wrong password was accepted"),
            Err(e) if e.starts_with("connection failed") => break,
            Err(_) => guesses += 1,
        }
    }
    assert!(guesses <= 10, "{guesses} guesses before the ban");
    assert!(
        ssh_login(server.port, "acme", "right-pw-for-tests").await.is_err(),
        "the right password got in while banned"
    );
    let mut line = String::new();
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port)).await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_string(&mut line)).await;
    assert!(line.contains("temporarily blocked"), "{line:?}");
    let server = tokio::task::spawn_blocking(move || {
        let bans: serde_json::Value =
            serde_json::from_str(&server.cli_ok(&["defender", "list", "--json"])).unwrap();
        assert!(bans.to_string().contains("127.0.0.1"), "{bans}");
        assert!(server.log().contains("banned"), "no ban in the log");
        // In the audit log: the ban (the defender's, once), and the wrong passwords for acme.
        let banned = |s: &Server| {
            let log: serde_json::Value = serde_json::from_str(&s.cli_ok(&["audit", "--json"])).unwrap();
            log.as_array()
                .unwrap()
                .iter()
                .filter(|e| e["action"] == "ban" && e["actor"] == "defender")
                .count()
        };
        assert!(server.wait_until(Duration::from_secs(10), |s| banned(s) == 1), "the ban is audited once");
        let acme = server.cli_ok(&["audit", "--tenant", "acme"]);
        assert!(acme.contains("sftp.login") && acme.contains("refused"), "{acme}");
        server.cli_ok(&["defender", "unban", "127.0.0.1"]);
        server
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if ssh_login(server.port, "acme", "right-pw-for-tests").await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "still refused after the unban");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let logged_in = |s: &Server| {
        let log: serde_json::Value =
            serde_json::from_str(&s.cli_ok(&["audit", "--tenant", "acme", "--json"])).unwrap();
        log.as_array().unwrap().iter().any(|e| e["action"] == "sftp.login" && e["outcome"] == "done")
    };
    assert!(server.wait_until(Duration::from_secs(10), logged_in), "an SFTP login is audited");
}

/// Health checks (connect and close; read the banner and close) and a burst of correct
/// logins from one address (a school's NAT, a vendor's batch) are not held against the
/// address: afterwards it still logs in.
#[tokio::test]
async fn health_checks_and_login_bursts_are_not_banned() {
    let server = Server::start();
    server.tenant("acme", "pw-for-tests");
    for i in 0..30 {
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port)).await.unwrap();
        if i % 2 == 1 {
            let mut banner = [0u8; 8];
            let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut banner)).await;
        }
        drop(tcp);
    }
    // Sixteen at once, with ten unauthenticated slots per address: the rest wait their turn.
    let port = server.port;
    let logins: Vec<_> =
        (0..16).map(|_| tokio::spawn(async move { ssh_login(port, "acme", "pw-for-tests").await })).collect();
    let mut failed = Vec::new();
    for l in logins {
        if let Err(e) = l.await.unwrap() {
            failed.push(e);
        }
    }
    assert!(failed.is_empty(), "logins in a burst failed: {failed:?}");
    assert!(ssh_login(server.port, "acme", "pw-for-tests").await.is_ok(), "the address was banned");
    assert!(!server.log().contains("banned"), "{}", server.log());
}

/// One tenant whose clients pipeline without reading their replies, on many channels at
/// once, slows no other tenant: each channel holds at most its window.
#[test]
fn a_tenant_stalling_its_sessions_does_not_slow_another() {
    if !have_python_module("paramiko", "paramiko (pip)") {
        return;
    }
    let server = Server::start();
    server.tenant("acme", "pw-for-tests");
    server.tenant("beta", "pw2-for-tests");
    std::fs::write(server.tenant_dir("acme").join("students/f.csv"), pseudo_random(1 << 20, 3)).unwrap();
    let script = write_file(
        server.dir.path(),
        "stall.py",
        br#"
import struct, sys, threading, time, paramiko
def pkt(t, body):
    p = bytes([t]) + body
    return struct.pack(">I", len(p)) + p
def s(b):
    return struct.pack(">I", len(b)) + b
def reply(c):
    n = struct.unpack(">I", c.recv(4))[0]
    data = b""
    while len(data) < n:
        data += c.recv(n - len(data))
    return data
def stall(t):
    # A 32 KiB window for the server's replies, which this client never reads.
    c = t.open_session(window_size=32768, max_packet_size=32768)
    c.invoke_subsystem("sftp")
    c.sendall(pkt(1, struct.pack(">I", 3)))
    reply(c)
    c.sendall(pkt(3, struct.pack(">I", 1) + s(b"/students/f.csv") + struct.pack(">II", 1, 0)))
    handle = reply(c)[9:]
    for i in range(40):
        c.sendall(pkt(5, struct.pack(">I", 10 + i) + s(handle) + struct.pack(">QI", 0, 200000)))
    pad = b"\x00" * (255 * 1024)
    for i in range(200):
        c.sendall(pkt(17, struct.pack(">I", 1000 + i) + s(b"/students") + pad))
held = []
threads = []
for j in range(4):
    t = paramiko.Transport(("127.0.0.1", int(sys.argv[1])))
    t.connect(username="acme", password="pw-for-tests")
    held.append(t)
    for k in range(9):
        th = threading.Thread(target=stall, args=(t,), daemon=True)
        th.start()
        threads.append(th)
time.sleep(4)
print("stalled", flush=True)
time.sleep(600)
"#,
    );
    let mut attacker = Command::new("python3")
        .arg(&script)
        .arg(server.port.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let before = server.rss_kib();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(attacker.stdout.take().unwrap()), &mut line)
        .unwrap();
    assert_eq!(line.trim(), "stalled");
    let grown = server.rss_kib().saturating_sub(before);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let worst = rt.block_on(async {
        let (_ssh, beta) = sftp_login(server.port, "beta", "pw2-for-tests").await;
        let mut worst = Duration::ZERO;
        for _ in 0..5 {
            let start = Instant::now();
            beta.read_dir("/students").await.unwrap();
            worst = worst.max(start.elapsed());
        }
        worst
    });
    attacker.kill().unwrap();
    attacker.wait().unwrap();
    println!(
        "36 stalled channels: server grew {} MiB; another tenant's listing took at most {worst:?}",
        grown / 1024
    );
    assert!(worst < Duration::from_secs(2), "another tenant waited {worst:?}");
    assert!(grown < 200 * 1024, "36 stalled channels grew the server by {grown} KiB");
}

/// paramiko's `get` of a file far larger than a channel's window: its prefetch sends READs
/// as the window allows and the download completes (no reader/writer deadlock).
#[test]
fn a_prefetching_download_far_beyond_the_window_completes() {
    if !have_python_module("paramiko", "paramiko (pip)") {
        return;
    }
    let server = Server::start_with(&[("SLUICE_SFTP_WINDOW_BYTES", "1048576")]);
    server.tenant("acme", "pw-for-tests");
    let data = pseudo_random(160 << 20, 12);
    std::fs::write(server.tenant_dir("acme").join("students/big.csv"), &data).unwrap();
    let out = server.dir.path().join("big-back.csv");
    let script = write_file(
        server.dir.path(),
        "get.py",
        br#"
import sys, paramiko
t = paramiko.Transport(("127.0.0.1", int(sys.argv[1])))
t.connect(username="acme", password="pw-for-tests")
s = paramiko.SFTPClient.from_transport(t)
s.get("/students/big.csv", sys.argv[2])
"#,
    );
    let result = run_with_timeout(
        Command::new("python3").arg(&script).arg(server.port.to_string()).arg(&out),
        Duration::from_secs(180),
    );
    assert!(result.status.success(), "{}", output_text(&result));
    assert!(std::fs::read(&out).unwrap() == data, "the download differs");
}

/// Listing a folder holds the folder open, not its entries: 256 listings of a folder of
/// 20,000 long names at once stay small.
#[tokio::test]
async fn listings_of_a_large_folder_do_not_pin_memory() {
    let server = Server::start();
    server.tenant("acme", "pw-for-tests");
    let folder = server.tenant_dir("acme").join("students");
    let long = "n".repeat(200);
    for i in 0..20_000 {
        std::fs::write(folder.join(format!("{long}-{i:05}.csv")), b"").unwrap();
    }
    let mut raw = Raw::open(server.port, "acme", "pw-for-tests").await;
    let before = server.rss_kib();
    for i in 0..256u32 {
        raw.send(11, &(100 + i).to_be_bytes(), &string(b"/students")).await;
        let (kind, _) = raw.recv().await.unwrap();
        assert_eq!(kind, 102, "OPENDIR {i} was refused");
    }
    let grown = server.rss_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "256 open listings grew the server by {grown} KiB");
    // A listing read to its end still names every file.
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    assert_eq!(sftp.read_dir("/students").await.unwrap().count(), 20_000);
}

/// A write far past the end of what was sent is refused (it would make a sparse file that
/// costs its whole size to hash), and opening a file for writing and closing it without a
/// write changes nothing and records nothing.
#[tokio::test]
async fn far_writes_are_refused_and_empty_reopens_change_nothing() {
    let server = Server::start();
    server.tenant("acme", "pw-for-tests");
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    let mut f = sftp.create("/students/gap.csv").await.unwrap();
    f.write_all(b"start").await.unwrap();
    use tokio::io::AsyncSeekExt;
    f.seek(std::io::SeekFrom::Start(2 << 30)).await.unwrap();
    let gap = async {
        f.write_all(b"x").await?;
        f.shutdown().await
    };
    assert!(gap.await.is_err(), "a write 2 GiB past the end was accepted");
    assert!(!server.tenant_dir("acme").join("students/gap.csv").exists());

    put(&sftp, "/students/keep.csv", b"the same").await.unwrap();
    let uploads = server.uploads("acme").len();
    let f = sftp.open_with_flags("/students/keep.csv", OpenFlags::WRITE).await.unwrap();
    drop(f);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.uploads("acme").len(), uploads, "an unchanged file was recorded again");
    assert_eq!(std::fs::read(server.tenant_dir("acme").join("students/keep.csv")).unwrap(), b"the same");
}

/// Guesses spread over many addresses take an account's password logins to their limit, but
/// never from an allow-listed address, nor from one the account logged in from lately.
#[test]
fn spread_guessing_does_not_lock_the_owner_out() {
    if !have_python_module("paramiko", "paramiko (pip)") {
        return;
    }
    let server = Server::start_with(&[("SLUICE_DEFENDER_ALLOW_LIST", "127.0.0.1")]);
    server.tenant("acme", "right-password");
    let script = write_file(
        server.dir.path(),
        "spread.py",
        br#"
import sys, socket, paramiko, logging
logging.getLogger("paramiko").setLevel(logging.CRITICAL)
port = int(sys.argv[1])
def attempt(src, pw):
    sock = socket.socket()
    sock.bind((src, 0))
    sock.connect(("127.0.0.1", port))
    t = paramiko.Transport(sock)
    t.start_client()
    try:
        t.auth_password("acme", pw)
        r = "ok"
    except Exception as e:
        r = "refused"
    t.close()
    return r
print("owner first:", attempt("127.0.0.9", "right-password"))
for ip in range(2, 9):
    for k in range(8):
        attempt("127.0.0.%d" % ip, "guess%d" % k)
print("stranger:", attempt("127.0.0.20", "right-password"))
print("allow-listed:", attempt("127.0.0.1", "right-password"))
print("owner again:", attempt("127.0.0.9", "right-password"))
"#,
    );
    let out = run_with_timeout(
        Command::new("python3").arg(&script).arg(server.port.to_string()),
        Duration::from_secs(120),
    );
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("owner first: ok"), "{text}");
    assert!(text.contains("stranger: refused"), "the account limit did not hold: {text}");
    assert!(text.contains("allow-listed: ok"), "{text}");
    assert!(text.contains("owner again: ok"), "{text}");
}
