//! Hostile input and resource limits, spoken at the SFTP wire level.

use crate::common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn malformed_packets_close_the_session_not_the_server() {
    let server = Server::start();
    server.tenant("acme", "pw-for-tests");
    // A length far beyond the limit.
    let mut raw = Raw::open(server.port, "acme", "pw-for-tests").await;
    raw.stream.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    raw.stream.write_all(b"junk").await.unwrap();
    assert!(tokio::time::timeout(Duration::from_secs(5), raw.recv()).await.unwrap().is_none());
    // A string length that runs past the end of its packet.
    let mut raw = Raw::open(server.port, "acme", "pw-for-tests").await;
    raw.send(3, &1u32.to_be_bytes(), &[0xff, 0xff, 0xff, 0xf0, b'a']).await;
    assert!(tokio::time::timeout(Duration::from_secs(5), raw.recv()).await.unwrap().is_none());
    // Unknown request types get OP_UNSUPPORTED and the session goes on.
    let mut raw = Raw::open(server.port, "acme", "pw-for-tests").await;
    raw.send(99, &7u32.to_be_bytes(), b"").await;
    let (kind, body) = raw.recv().await.unwrap();
    assert_eq!((kind, &body[..4], body[7]), (101, &7u32.to_be_bytes()[..], 8));
    // A handle that was never issued.
    raw.send(
        5,
        &8u32.to_be_bytes(),
        &[string(b"nope"), 0u64.to_be_bytes().to_vec(), 10u32.to_be_bytes().to_vec()].concat(),
    )
    .await;
    let (kind, body) = raw.recv().await.unwrap();
    assert_eq!((kind, body[7]), (101, 4));
    // The server is still serving everyone.
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    put(&sftp, "/students/ok.csv", b"fine").await.unwrap();
}

/// The russh-sftp deadlock: thousands of READs pipelined without reading a single reply
/// (paramiko's prefetch does this). Every reply must still arrive.
#[tokio::test]
async fn deeply_pipelined_reads_do_not_stall() {
    let server = Server::start();
    server.tenant("acme", "pw-for-tests");
    let data = pseudo_random(40 * 1024 * 1024, 11);
    std::fs::write(server.tenant_dir("acme").join("students/big.csv"), &data).unwrap();
    let mut raw = Raw::open(server.port, "acme", "pw-for-tests").await;
    let open =
        [string(b"/students/big.csv"), 1u32.to_be_bytes().to_vec(), 0u32.to_be_bytes().to_vec()].concat();
    raw.send(3, &1u32.to_be_bytes(), &open).await;
    let (kind, body) = raw.recv().await.unwrap();
    assert_eq!(kind, 102);
    let handle = body[4..].to_vec();
    let chunk = 32 * 1024u32;
    let count = data.len() as u32 / chunk;
    let (mut rd, mut wr) = tokio::io::split(raw.stream);
    let sender = tokio::spawn(async move {
        let mut all = Vec::new();
        for i in 0..count {
            let body =
                [handle.clone(), (u64::from(i * chunk)).to_be_bytes().to_vec(), chunk.to_be_bytes().to_vec()]
                    .concat();
            let len = (1 + 4 + body.len()) as u32;
            all.extend_from_slice(&len.to_be_bytes());
            all.push(5);
            all.extend_from_slice(&(100 + i).to_be_bytes());
            all.extend_from_slice(&body);
        }
        wr.write_all(&all).await.unwrap();
        wr
    });
    let mut received = vec![0u8; data.len()];
    let deadline = Instant::now() + Duration::from_secs(60);
    for _ in 0..count {
        let mut len = [0u8; 4];
        tokio::time::timeout_at(deadline.into(), rd.read_exact(&mut len))
            .await
            .expect("reads stalled")
            .unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        rd.read_exact(&mut body).await.unwrap();
        assert_eq!(body[0], 103, "expected DATA");
        let id = u32::from_be_bytes(body[1..5].try_into().unwrap()) - 100;
        let n = u32::from_be_bytes(body[5..9].try_into().unwrap()) as usize;
        let at = (id * chunk) as usize;
        received[at..at + n].copy_from_slice(&body[9..9 + n]);
    }
    let _wr = sender.await.unwrap();
    assert!(received == data, "pipelined download returned wrong bytes");
}

#[tokio::test]
async fn login_grace_unauthenticated_and_session_limits() {
    let server = Server::start_with(&[
        ("SLUICE_SFTP_LOGIN_GRACE_SECS", "3"),
        ("SLUICE_SFTP_MAX_UNAUTHENTICATED_PER_IP", "2"),
        ("SLUICE_SFTP_MAX_SESSIONS_PER_TENANT", "1"),
    ]);
    server.tenant("acme", "pw-for-tests");
    // Two idle TCP connections take this address's unauthenticated slots...
    let mut idle1 = tokio::net::TcpStream::connect(("127.0.0.1", server.port)).await.unwrap();
    let idle2 = tokio::net::TcpStream::connect(("127.0.0.1", server.port)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ...so a third waits for one, hearing nothing meanwhile (a burst from one address, such as
    // a school's NAT, waits its turn rather than being refused).
    let mut third = tokio::net::TcpStream::connect(("127.0.0.1", server.port)).await.unwrap();
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), third.read(&mut buf)).await.is_err(),
        "the third connection was answered before a slot was free"
    );
    // Beyond the slots and a few waiting per slot (2 + 2 x 4), a connection is closed at once.
    let mut waiting = Vec::new();
    for _ in 0..7 {
        waiting.push(tokio::net::TcpStream::connect(("127.0.0.1", server.port)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut refused = tokio::net::TcpStream::connect(("127.0.0.1", server.port)).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(2), refused.read(&mut buf)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0, "the eleventh unauthenticated connection should be closed at once");
    assert!(server.wait_for_log("are logging in or waiting to", Duration::from_secs(5)));
    drop(waiting);
    // A slot comes free: the waiting connection is answered.
    drop(idle2);
    let n = tokio::time::timeout(Duration::from_secs(2), third.read(&mut buf)).await.unwrap().unwrap();
    assert!(buf[..n].starts_with(b"SSH-2.0-sluice"), "{:?}", String::from_utf8_lossy(&buf[..n]));
    // The login grace time disconnects the idle ones.
    let start = Instant::now();
    let mut total = Vec::new();
    loop {
        let n =
            tokio::time::timeout(Duration::from_secs(10), idle1.read(&mut buf)).await.unwrap().unwrap_or(0);
        if n == 0 {
            break;
        }
        total.extend_from_slice(&buf[..n]);
    }
    assert!(total.starts_with(b"SSH-2.0-sluice"));
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(server.wait_for_log("not authenticated within", Duration::from_secs(5)));
    drop(third);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // One session per tenant: the second login is refused while the first is open.
    let first = ssh_login(server.port, "acme", "pw-for-tests").await.unwrap();
    assert!(ssh_login(server.port, "acme", "pw-for-tests").await.is_err());
    assert!(server.wait_for_log("sessions open", Duration::from_secs(5)));
    drop(first);
    let mut ok = false;
    for _ in 0..50 {
        if ssh_login(server.port, "acme", "pw-for-tests").await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the slot must be released when the first session ends");
}

#[tokio::test]
async fn idle_sessions_are_closed() {
    let server = Server::start_with(&[("SLUICE_SFTP_IDLE_TIMEOUT_SECS", "1")]);
    server.tenant("acme", "pw-for-tests");
    let (ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    put(&sftp, "/students/a.csv", b"a").await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(sftp.read_dir("/").await.is_err() || ssh.is_closed(), "idle session should have been closed");
}

#[tokio::test]
async fn upload_size_limit_is_enforced() {
    let server = Server::start_with(&[("SLUICE_SFTP_MAX_UPLOAD_BYTES", "1000")]);
    server.tenant("acme", "pw-for-tests");
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    assert!(put(&sftp, "/students/big.csv", &[b'x'; 5000]).await.is_err());
    assert!(!server.tenant_dir("acme").join("students/big.csv").exists());
    put(&sftp, "/students/small.csv", &[b'x'; 1000]).await.unwrap();
    assert_eq!(server.uploads("acme").len(), 1);
}

/// An upload that never finishes holds a shutdown up for the drain time only, and leaves
/// nothing visible (`front_door::shutdown_lets_transfers_in_flight_finish` covers the rest).
#[tokio::test]
async fn sigterm_shuts_down_cleanly() {
    let mut server = Server::start_with(&[("SLUICE_SFTP_DRAIN_SECS", "1")]);
    server.tenant("acme", "pw-for-tests");
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    let mut f = sftp.create("/students/in-flight.csv").await.unwrap();
    f.write_all(b"partial").await.unwrap();
    f.flush().await.unwrap();
    assert_eq!(server.terminate(), Some(0));
    assert!(server.log().contains("SIGTERM received"));
    assert!(!server.tenant_dir("acme").join("students/in-flight.csv").exists());
}
