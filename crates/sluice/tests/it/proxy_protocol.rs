//! SFTP behind a TCP load balancer that sends the PROXY protocol: a real HAProxy
//! (`send-proxy-v2`, with its health checks) in front of sluice. The client's address, not
//! the balancer's, is what the defender bans and the log names; the balancer's own checks
//! are not held against it; a connection from the balancer without a header is refused, and
//! a header from anyone else is never read.

use crate::common::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// HAProxy on a free loopback port, forwarding to `sftp_port` with a PROXY v2 header (its
/// health checks too, every 300 ms). The caller kills it.
fn start_haproxy(dir: &std::path::Path, sftp_port: u16) -> (Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = dir.join("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "global\n    maxconn 200\n\
             defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n\
             frontend sftp\n    bind 127.0.0.1:{port}\n    default_backend nodes\n\
             backend nodes\n    server node1 127.0.0.1:{sftp_port} send-proxy-v2 check check-send-proxy inter 300ms\n"
        ),
    )
    .unwrap();
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "haproxy did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, port)
}

/// A password login to `port` from the loopback address `local` (127.0.0.0/8 is all this
/// machine's): one client address per role in the test.
async fn login_from(local: [u8; 4], port: u16, user: &str, password: &str) -> Result<ClientHandle, String> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((local, 0).into()).unwrap();
    let stream =
        socket.connect(([127, 0, 0, 1], port).into()).await.map_err(|e| format!("connection failed: {e}"))?;
    ssh_login_over(stream, user, password).await
}

/// What the server says first to a connection from `local` that starts with `first`.
async fn first_words(local: [u8; 4], port: u16, first: &[u8]) -> String {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((local, 0).into()).unwrap();
    let mut tcp = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    tcp.write_all(first).await.unwrap();
    let mut said = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut said))
        .await
        .map_or(0, |r| r.unwrap_or(0));
    String::from_utf8_lossy(&said[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_haproxy_the_client_is_the_one_counted_and_banned_not_the_balancer() {
    if !have("haproxy", "haproxy") {
        return;
    }
    let server = Server::start_with(&[
        ("SLUICE_SFTP_PROXY_PROTOCOL_FROM", "127.0.0.1"),
        ("SLUICE_SFTP_LOGIN_GRACE_SECS", "3"),
    ]);
    server.importing_tenant("acme", "right-pw-for-tests");
    let (mut haproxy, port) = start_haproxy(server.dir.path(), server.port);
    let (district, guesser, balancer) = ([127, 0, 0, 7], [127, 0, 0, 9], [127, 0, 0, 1]);

    // A district's upload through the balancer: logged in, imported, named by its address.
    let handle = login_from(district, port, "acme", "right-pw-for-tests").await.unwrap();
    let sftp = sftp_open(&handle).await;
    put(&sftp, "/students/students.csv", b"sisId,firstName,lastName\nS1,Ann,Lee\n").await.unwrap();
    drop(sftp);
    drop(handle);
    assert!(server.wait_until(Duration::from_secs(20), |s| s.imports("acme").len() == 1));
    assert!(server.log().contains("127.0.0.7"), "the client's address is not in the log: {}", server.log());

    // Someone guessing through the balancer is banned, by their own address.
    let mut guesses = 0;
    while guesses < 50 {
        match login_from(guesser, port, "acme", &format!("guess-{guesses}")).await {
            Ok(_) => panic!("a wrong password was accepted"),
            Err(e) if e.starts_with("connection failed") => break,
            Err(_) => guesses += 1,
        }
    }
    assert!(guesses <= 10, "{guesses} guesses before the ban");
    let server = tokio::task::spawn_blocking(move || {
        let bans = server.cli_ok(&["defender", "list", "--json"]);
        assert!(bans.contains("127.0.0.9"), "{bans}");
        assert!(!bans.contains("127.0.0.1\""), "the balancer was banned: {bans}");
        server
    })
    .await
    .unwrap();
    // ...while the district, through the same balancer, still gets in (and its checks, a
    // few a second all along, cost it nothing).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let handle = login_from(district, port, "acme", "right-pw-for-tests").await;
    assert!(handle.is_ok(), "{:?}", handle.err());

    // From the balancer's address, a connection without a header is not served.
    let said = first_words(balancer, server.port, b"SSH-2.0-OpenSSH_9.2\r\n").await;
    assert!(!said.starts_with("SSH-"), "served without a header: {said:?}");
    assert!(
        server.wait_until(Duration::from_secs(5), |s| s.log().contains("not a PROXY protocol header")),
        "{}",
        server.log()
    );
    // From anyone else, a header is not read: claiming the banned guesser's address (or any)
    // gets an SSH server's greeting, not the guesser's refusal.
    let forged = b"PROXY TCP4 127.0.0.9 127.0.0.1 40000 22\r\nSSH-2.0-OpenSSH_9.2\r\n";
    let said = first_words([127, 0, 0, 8], server.port, forged).await;
    assert!(said.starts_with("SSH-2.0-"), "{said:?}");
    let _ = haproxy.kill();
    let _ = haproxy.wait();
}
