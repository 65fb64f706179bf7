//! What an HTTP client can hold before it authenticates is bounded: the time to send a
//! request's head and its body, the time a kept-alive connection may sit idle, and the number
//! of open connections (in all, and per address). Raw sockets against the real binary, over
//! plain HTTP and HTTPS.

use crate::common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Half a request head: the request line and one header, no blank line.
const HALF_HEAD: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n";
/// How long one read waits, so that the loops below can watch the clock.
const POLL: Duration = Duration::from_millis(100);
const LOGIN_HEAD: &str = "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n";

fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(POLL)).unwrap();
    stream
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime =
        tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
}

/// A connection from another loopback address (`127.0.0.2`, ...): one host of many.
fn connect_from(source: [u8; 4], port: u16) -> std::io::Result<TcpStream> {
    RUNTIME.with(|rt| {
        rt.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::from((source, 0)))?;
            let stream = socket.connect(SocketAddr::from(([127, 0, 0, 1], port))).await?.into_std()?;
            stream.set_nonblocking(false)?;
            stream.set_read_timeout(Some(POLL))?;
            Ok(stream)
        })
    })
}

fn waiting(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted)
}

/// Reads (and drops) what the server sends until it closes the connection: how long that
/// took, or `None` when it was still open after `within`. The stream reads with [`POLL`].
fn closed_within(stream: &mut impl Read, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while start.elapsed() < within {
        match stream.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if waiting(&e) => {}
            // Reset, or (TLS) cut without close_notify.
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

/// Sends `bytes` one at a time, `every` apart: how long until the server closed the
/// connection, or `None` when it was still open after `within`.
fn trickle(
    stream: &mut (impl Read + Write),
    bytes: &[u8],
    every: Duration,
    within: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    for byte in bytes {
        if start.elapsed() > within {
            return None;
        }
        if stream.write_all(std::slice::from_ref(byte)).and_then(|()| stream.flush()).is_err() {
            return Some(start.elapsed());
        }
        if closed_within(stream, every).is_some() {
            return Some(start.elapsed());
        }
    }
    None
}

/// One whole answer (head and `Content-Length` body) from a kept-alive connection.
fn read_response(stream: &mut impl Read) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap()))
                .unwrap_or(0);
            if raw.len() >= end + 4 + length {
                return String::from_utf8_lossy(&raw).into_owned();
            }
        }
        assert!(Instant::now() < deadline, "no whole answer in 15 s: {:?}", String::from_utf8_lossy(&raw));
        match stream.read(&mut buf) {
            Ok(0) => panic!("closed before a whole answer: {:?}", String::from_utf8_lossy(&raw)),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if waiting(&e) => {}
            Err(e) => panic!("{e} after {:?}", String::from_utf8_lossy(&raw)),
        }
    }
}

/// `GET /healthz` on a kept-alive connection; asserts the answer is 200.
fn healthz_on(stream: &mut (impl Read + Write)) {
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    stream.flush().unwrap();
    let answer = read_response(stream);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

fn assert_about(took: Duration, expected: Duration, what: &str) {
    // Not before the timeout (less a little for the clock's start), not much after it (the
    // machine is shared and slow).
    assert!(
        took + Duration::from_millis(300) >= expected && took <= expected + Duration::from_secs(3),
        "{what}: closed after {took:?}, expected about {expected:?}"
    );
}

#[test]
fn a_request_head_sent_halfway_is_cut_off_at_the_header_timeout() {
    let server = Server::start_with(&[
        ("SLUICE_HTTP_HEADER_TIMEOUT_SECS", "1"),
        ("SLUICE_HTTP_BODY_TIMEOUT_SECS", "30"),
        ("SLUICE_HTTP_IDLE_TIMEOUT_SECS", "30"),
    ]);
    // Half a request line and a header, then silence.
    let mut half = connect(server.http_port);
    half.write_all(HALF_HEAD).unwrap();
    let took =
        closed_within(&mut half, Duration::from_secs(10)).expect("a half-sent head holds its connection");
    assert_about(took, Duration::from_secs(1), "half a head");
    // Nothing at all.
    let mut silent = connect(server.http_port);
    let took = closed_within(&mut silent, Duration::from_secs(10)).expect("a silent connection stays open");
    assert_about(took, Duration::from_secs(1), "a silent connection");
    // A byte every 200 ms: the head has a total time, not a time between bytes.
    let mut slow = connect(server.http_port);
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
    let took = trickle(&mut slow, &[b'a'; 500], Duration::from_millis(200), Duration::from_secs(15))
        .expect("a head sent a byte at a time holds its connection");
    assert_about(took, Duration::from_secs(1), "a trickled head");
    // Whole requests are served as before.
    assert_eq!(server.http_get("/healthz"), (200, "ok\n".to_owned()));
}

#[test]
fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let server = Server::start_with(&[
        ("SLUICE_HTTP_HEADER_TIMEOUT_SECS", "1"),
        ("SLUICE_HTTP_IDLE_TIMEOUT_SECS", "3"),
    ]);
    let mut conn = connect(server.http_port);
    healthz_on(&mut conn);
    // Between requests the idle timeout applies, not the (shorter) header timeout.
    std::thread::sleep(Duration::from_millis(1800));
    healthz_on(&mut conn);
    let took = closed_within(&mut conn, Duration::from_secs(10)).expect("an idle connection stays open");
    assert_about(took, Duration::from_secs(3), "an idle kept-alive connection");
}

#[test]
fn a_request_body_that_stops_or_trickles_is_cut_off() {
    let server = Server::start_with(&[
        ("SLUICE_HTTP_HEADER_TIMEOUT_SECS", "1"),
        ("SLUICE_HTTP_BODY_TIMEOUT_SECS", "3"),
        ("SLUICE_HTTP_IDLE_TIMEOUT_SECS", "30"),
    ]);
    // Content-Length 1000, then 10 bytes and silence. The login form reads its body before
    // anything else, unauthenticated.
    let mut stalled = connect(server.http_port);
    stalled.write_all(format!("{LOGIN_HEAD}login_toke").as_bytes()).unwrap();
    let start = Instant::now();
    assert!(
        closed_within(&mut stalled, Duration::from_millis(1800)).is_none(),
        "the head was whole: its timeout no longer applies"
    );
    closed_within(&mut stalled, Duration::from_secs(10)).expect("a stalled body holds its connection");
    assert_about(start.elapsed(), Duration::from_secs(3), "a stalled body");
    // A byte every 200 ms (the 1000 would take 200 s): the body has a total time too.
    let mut slow = connect(server.http_port);
    slow.write_all(LOGIN_HEAD.as_bytes()).unwrap();
    let took = trickle(&mut slow, &[b'a'; 1000], Duration::from_millis(200), Duration::from_secs(15))
        .expect("a body sent a byte at a time holds its connection");
    assert_about(took, Duration::from_secs(3), "a trickled body");
    // A body larger than any form or JSON document sluice takes is refused unread.
    let mut big = connect(server.http_port);
    big.write_all(
        b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\n",
    )
    .unwrap();
    let answer = read_response(&mut big);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[test]
fn a_client_that_does_not_read_its_answers_is_cut_off_after_the_idle_timeout() {
    let server = Server::start_with(&[
        ("SLUICE_HTTP_HEADER_TIMEOUT_SECS", "30"),
        ("SLUICE_HTTP_BODY_TIMEOUT_SECS", "30"),
        ("SLUICE_HTTP_IDLE_TIMEOUT_SECS", "2"),
    ]);
    // Requests for the login page, pipelined, never reading an answer: once the socket
    // buffers are full, the server waits to write.
    let mut stream = TcpStream::connect(("127.0.0.1", server.http_port)).unwrap();
    let mut kept = stream.try_clone().unwrap();
    std::thread::spawn(move || {
        let requests = b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n".repeat(1000);
        (0..100).any(|_| stream.write_all(&requests).is_err())
    });
    let start = Instant::now();
    let connections = |server: &Server| {
        let (_, text) = server.http_get("/metrics");
        let line = text.lines().find(|l| l.starts_with("sluice_http_connections ")).unwrap().to_owned();
        line.rsplit(' ').next().unwrap().parse::<u32>().unwrap()
    };
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(connections(&server), 2, "the writer's connection and this one");
    while connections(&server) > 1 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "a client that reads nothing holds its connection"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("a client that reads nothing was cut off after {:?} (idle timeout 2 s)", start.elapsed());
    // The server closed it (unread requests make that a reset).
    let refused = (0..20).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        kept.write_all(b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n").is_err()
    });
    assert!(refused, "the connection still takes requests");
}

#[test]
fn http_connections_are_capped_and_the_idle_ones_reaped() {
    let server = Server::start_with(&[
        ("SLUICE_HTTP_HEADER_TIMEOUT_SECS", "2"),
        ("SLUICE_HTTP_MAX_CONNECTIONS", "50"),
    ]);
    let baseline = server.fd_count();
    let idle: Vec<TcpStream> = (0..200).map(|_| connect(server.http_port)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let held = server.fd_count();
    assert!(held <= baseline + 50 + 5, "200 idle connections: {baseline} descriptors before, {held} now");
    assert!(
        server.wait_for_log("all 50 HTTP connections are open", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    // A fresh client waits in the kernel's backlog, behind the idle ones, and is served once
    // they are reaped (50 at a time, each after 2 s).
    let start = Instant::now();
    assert_eq!(server.http_get("/healthz"), (200, "ok\n".to_owned()));
    eprintln!("healthz behind 200 idle connections (cap 50, header timeout 2 s): {:?}", start.elapsed());
    assert!(start.elapsed() < Duration::from_secs(20));
    drop(idle);
}

#[test]
fn one_address_cannot_take_every_http_connection() {
    let server = Server::start_with(&[
        ("SLUICE_HTTP_HEADER_TIMEOUT_SECS", "30"),
        ("SLUICE_HTTP_MAX_CONNECTIONS_PER_IP", "5"),
    ]);
    let mut conns: Vec<TcpStream> =
        (0..20).map(|_| connect_from([127, 0, 0, 2], server.http_port).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let open: Vec<bool> =
        conns.iter_mut().map(|c| closed_within(c, Duration::from_millis(200)).is_none()).collect();
    assert_eq!(open.iter().filter(|o| **o).count(), 5, "{open:?}");
    // Another address is served at once.
    let start = Instant::now();
    assert_eq!(server.http_get("/healthz"), (200, "ok\n".to_owned()));
    assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
    // A closed connection gives its address's slot back.
    let first_open = open.iter().position(|o| *o).unwrap();
    drop(conns.remove(first_open));
    std::thread::sleep(Duration::from_millis(300));
    let mut again = connect_from([127, 0, 0, 2], server.http_port).unwrap();
    assert!(closed_within(&mut again, Duration::from_millis(500)).is_none());
    let (_, metrics) = server.http_get("/metrics");
    assert!(metrics.contains("\nsluice_http_connections_refused_total 15\n"), "{metrics}");
    assert!(metrics.contains("\nsluice_http_connections 6\n"), "{metrics}");
}

/// Raises this process's soft limit on open files to `want` (the server it starts inherits
/// it); false when the hard limit is lower.
fn raise_file_limit(want: u64) -> bool {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read and write the struct given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return false;
    }
    if limit.rlim_cur >= want {
        return true;
    }
    if limit.rlim_max < want {
        return false;
    }
    limit.rlim_cur = want;
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 }
}

#[test]
fn healthz_answers_while_2000_half_open_connections_are_opened() {
    if !external_check(raise_file_limit(8192), "a hard limit of 8192 open files", "ulimit -Hn 8192") {
        return;
    }
    let server = Server::start_with(&[("SLUICE_HTTP_HEADER_TIMEOUT_SECS", "2")]);
    let port = server.http_port;
    let baseline = server.fd_count();
    let flooding = Arc::new(std::sync::atomic::AtomicBool::new(true));
    // 2000 connections from 40 addresses (fewer than the per-address cap from each), each
    // sending half a head, as fast as they connect.
    let flood = {
        let flooding = flooding.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for i in 0..2000u32 {
                let source = [127, 0, 1, 1 + (i % 40) as u8];
                let mut c = connect_from(source, port).unwrap();
                let _ = c.write_all(HALF_HEAD);
                held.push(c);
            }
            flooding.store(false, std::sync::atomic::Ordering::Relaxed);
            held
        })
    };
    let mut latencies = Vec::new();
    let mut most_fds = 0;
    while flooding.load(std::sync::atomic::Ordering::Relaxed) || latencies.len() < 10 {
        most_fds = most_fds.max(server.fd_count());
        let start = Instant::now();
        let (status, body) = server.http_get("/healthz");
        assert_eq!((status, body.as_str()), (200, "ok\n"), "after {:?}", start.elapsed());
        latencies.push(start.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    let held = flood.join().unwrap();
    let slowest = latencies.iter().max().unwrap();
    eprintln!(
        "{} healthz answered during the flood, slowest {slowest:?}; server descriptors {baseline} before, at most {most_fds} during",
        latencies.len()
    );
    // A fresh client waits for a slot at most about one header timeout.
    assert!(*slowest < Duration::from_secs(6), "{latencies:?}");
    assert!(most_fds <= baseline + 1024 + 10, "{baseline} descriptors before, {most_fds} during the flood");
    drop(held);
}

/// A TLS client that trusts `ca`, its handshake done.
fn tls_connect(ca: &Path, port: u16) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(ca).unwrap()).unwrap();
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let conn = rustls::ClientConnection::new(Arc::new(config), "127.0.0.1".try_into().unwrap()).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, connect(port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while stream.conn.is_handshaking() {
        assert!(Instant::now() < deadline, "TLS handshake did not finish");
        match stream.conn.complete_io(&mut stream.sock) {
            Ok(_) => {}
            Err(e) if waiting(&e) => {}
            Err(e) => panic!("TLS handshake: {e}"),
        }
    }
    stream
}

#[test]
fn https_bounds_handshakes_heads_and_connections_alike() {
    let dir = tempfile::tempdir().unwrap();
    let Some((ca, cert, key)) = test_certificates(dir.path()) else { return };
    if !have("curl", "curl") {
        return;
    }
    let server = Server::start_with(&[
        ("SLUICE_HTTP_TLS_CERT", cert.to_str().unwrap()),
        ("SLUICE_HTTP_TLS_KEY", key.to_str().unwrap()),
        ("SLUICE_HTTP_HEADER_TIMEOUT_SECS", "1"),
        ("SLUICE_HTTP_IDLE_TIMEOUT_SECS", "30"),
        ("SLUICE_HTTP_MAX_CONNECTIONS", "20"),
    ]);
    // A handshake that never starts.
    let mut silent = connect(server.http_port);
    let took = closed_within(&mut silent, Duration::from_secs(10))
        .expect("a stalled handshake holds its connection");
    assert_about(took, Duration::from_secs(1), "a stalled handshake");
    // A whole handshake, then half a head.
    let mut tls = tls_connect(&ca, server.http_port);
    healthz_on(&mut tls);
    tls.write_all(HALF_HEAD).unwrap();
    tls.flush().unwrap();
    let took = closed_within(&mut tls, Duration::from_secs(10))
        .expect("a half-sent head over TLS holds its connection");
    assert_about(took, Duration::from_secs(1), "half a head over TLS");
    // Handshakes in progress count against the cap.
    let baseline = server.fd_count();
    let stalled: Vec<TcpStream> = (0..100).map(|_| connect(server.http_port)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let held = server.fd_count();
    assert!(held <= baseline + 20 + 5, "100 stalled handshakes: {baseline} descriptors before, {held} now");
    // A real client is served once they are reaped.
    let start = Instant::now();
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "30", "--cacert", ca.to_str().unwrap()])
        .arg(format!("https://127.0.0.1:{}/healthz", server.http_port))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n", "{}", String::from_utf8_lossy(&out.stderr));
    eprintln!(
        "https healthz behind 100 stalled handshakes (cap 20, header timeout 1 s): {:?}",
        start.elapsed()
    );
    drop(stalled);
}

#[test]
fn sigterm_finishes_http_requests_in_flight_and_cuts_off_the_rest() {
    let mut server = Server::start_with(&[
        ("SLUICE_HTTP_HEADER_TIMEOUT_SECS", "2"),
        ("SLUICE_HTTP_BODY_TIMEOUT_SECS", "30"),
        ("SLUICE_HTTP_IDLE_TIMEOUT_SECS", "30"),
    ]);
    // A kept-alive connection between requests, a half-sent head, and a request whose body
    // is on its way (12 of 20 bytes).
    let mut idle = connect(server.http_port);
    healthz_on(&mut idle);
    let mut half = connect(server.http_port);
    half.write_all(HALF_HEAD).unwrap();
    let mut busy = connect(server.http_port);
    busy.write_all(
        b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 20\r\n\r\nlogin_token=",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    server.sigterm();
    // The idle connection is closed at once.
    closed_within(&mut idle, Duration::from_secs(5)).expect("an idle connection survives shutdown");
    // The request in flight is finished and answered (403: it carried no login cookie).
    busy.write_all(b"x&email=").unwrap();
    let answer = read_response(&mut busy);
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    // The half-sent head does not hold the server up past its timeout.
    assert_eq!(server.wait_for_exit(Duration::from_secs(10)), Some(0), "{}", server.log());
    assert!(start.elapsed() < Duration::from_secs(6), "{:?}", start.elapsed());
    drop(half);
}
