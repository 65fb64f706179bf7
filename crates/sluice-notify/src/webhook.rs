//! Webhooks: a JSON POST over HTTP/1.1, signed so the receiver can trust it:
//! `X-Sluice-Signature: sha256=HEX`, the HMAC-SHA256 of `TIMESTAMP.BODY` under the tenant's
//! secret, with `X-Sluice-Timestamp: TIMESTAMP` (Unix seconds, to refuse replays).

use crate::tls::Conn;
use sluice_core::hmac_sha256_hex;
use sluice_core::webhook::{WebhookUrl, is_public, private_reason};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The signature header's value for a body sent at `timestamp`.
pub fn signature_header(secret: &str, timestamp: i64, body: &str) -> String {
    format!("sha256={}", hmac_sha256_hex(secret.as_bytes(), format!("{timestamp}.{body}").as_bytes()))
}

/// How long one delivery may take, all told: one slow receiver must not hold up the others.
const DEADLINE: Duration = Duration::from_secs(30);

/// POSTs `body` to `url` (http or https); Ok when the receiver answers 2xx. Unless
/// `allow_private`, the receiver's address must be public
/// ([`sluice_core::webhook::private_reason`], embedded IPv4 addresses included); the address
/// checked is the one connected to, resolved now (DNS may have changed since the URL was
/// saved).
pub fn post(
    tls: &Arc<rustls::ClientConfig>,
    url: &str,
    secret: &str,
    delivery: i64,
    body: &str,
    allow_private: bool,
) -> Result<(), String> {
    let started = Instant::now();
    let url = WebhookUrl::parse(url).map_err(|e| e.to_string())?;
    let (authority, path) = (url.authority(), url.path());
    let address = url.socket_address();
    let candidates: Vec<SocketAddr> =
        address.to_socket_addrs().map_err(|e| format!("cannot resolve {address}: {e}"))?.collect();
    let target = candidates.iter().find(|a| allow_private || is_public(a.ip())).ok_or_else(|| {
        let refused: Vec<String> = candidates
            .iter()
            .map(|a| format!("{}: {}", a.ip(), private_reason(a.ip()).unwrap_or_default()))
            .collect();
        format!(
            "{address} is a private address ({}); webhooks go to public addresses unless the operator sets [notifications] allow_private_webhooks = true",
            refused.join(", ")
        )
    })?;
    let tcp = TcpStream::connect_timeout(target, Duration::from_secs(10))
        .map_err(|e| format!("cannot reach {address}: {e}"))?;
    let timeout = Some(Duration::from_secs(10));
    tcp.set_read_timeout(timeout).and_then(|()| tcp.set_write_timeout(timeout)).map_err(|e| e.to_string())?;
    let mut stream = if url.secure() { Conn::tls(tls, url.host(), tcp)? } else { Conn::Plain(tcp) };
    let timestamp = sluice_store::now_ms() / 1000;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: sluice/{}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nX-Sluice-Delivery: {delivery}\r\nX-Sluice-Timestamp: {timestamp}\r\nX-Sluice-Signature: {}\r\n\
         Connection: close\r\n\r\n{body}",
        env!("CARGO_PKG_VERSION"),
        body.len(),
        signature_header(secret, timestamp, body)
    );
    stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.flush())
        .map_err(|e| format!("sending to {address}: {e}"))?;
    // The status line is all we need; read until it is complete.
    let mut head = Vec::with_capacity(128);
    let mut buf = [0u8; 128];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        if started.elapsed() > DEADLINE {
            return Err(format!("{address} took more than {} s to answer", DEADLINE.as_secs()));
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if head.is_empty() => return Err(format!("no answer from {address}: {e}")),
            Err(_) => break,
        }
    }
    let status_line = String::from_utf8_lossy(&head);
    let status: u16 = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("the receiver answered {}", status_line.lines().next().unwrap_or("nothing")))
    }
}
