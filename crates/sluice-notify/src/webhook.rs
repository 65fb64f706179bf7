//! Webhooks: a JSON POST over HTTP/1.1, signed so the receiver can trust it:
//! `X-Sluice-Signature: sha256=HEX`, the HMAC-SHA256 of `TIMESTAMP.BODY` under the tenant's
//! secret, with `X-Sluice-Timestamp: TIMESTAMP` (Unix seconds, to refuse replays).

use crate::tls::Conn;
use sluice_core::hmac_sha256_hex;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The signature header's value for a body sent at `timestamp`.
pub fn signature_header(secret: &str, timestamp: i64, body: &str) -> String {
    format!("sha256={}", hmac_sha256_hex(secret.as_bytes(), format!("{timestamp}.{body}").as_bytes()))
}

/// Whether a tenant's webhook may reach `ip` without the operator's leave: not this machine,
/// not a private, link-local, shared (CGNAT) or multicast network, not cloud metadata.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let [o0, o1, ..] = a.octets();
            !(a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_multicast()
                || a.is_broadcast()
                || a.is_documentation()
                || o0 == 0
                || (o0 == 100 && (o1 & 0xc0) == 64))
        }
        IpAddr::V6(a) => {
            let s0 = a.segments()[0];
            let mapped_ok = a.to_ipv4_mapped().is_none_or(|v4| is_public(IpAddr::V4(v4)));
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s0 & 0xfe00) == 0xfc00
                || (s0 & 0xffc0) == 0xfe80)
                && mapped_ok
        }
    }
}

/// How long one delivery may take, all told: one slow receiver must not hold up the others.
const DEADLINE: Duration = Duration::from_secs(30);

/// POSTs `body` to `url` (http or https); Ok when the receiver answers 2xx. Unless
/// `allow_private`, the receiver's address must be public (see [`is_public`]); the address
/// checked is the one connected to.
pub fn post(
    tls: &Arc<rustls::ClientConfig>,
    url: &str,
    secret: &str,
    delivery: i64,
    body: &str,
    allow_private: bool,
) -> Result<(), String> {
    let started = Instant::now();
    let (secure, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(r), _) => (false, r),
        (_, Some(r)) => (true, r),
        _ => return Err(format!("{url:?} is not an http:// or https:// URL")),
    };
    let (authority, path) =
        rest.split_once('/').map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    if authority.is_empty()
        || authority.contains(['@', ' ', '\r', '\n', '\t'])
        || path.contains([' ', '\r', '\n', '\t'])
    {
        return Err(format!("{url:?} is not a usable webhook URL"));
    }
    let (host, address) = match authority.rsplit_once(':') {
        Some((h, _)) => (h, authority.to_owned()),
        None => (authority, format!("{authority}:{}", if secure { 443 } else { 80 })),
    };
    let candidates: Vec<SocketAddr> =
        address.to_socket_addrs().map_err(|e| format!("cannot resolve {address}: {e}"))?.collect();
    let target = candidates.iter().find(|a| allow_private || is_public(a.ip())).ok_or_else(|| {
        format!(
            "{address} is a private address ({}); webhooks go to public addresses unless the operator sets [notifications] allow_private_webhooks = true",
            candidates.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>().join(", ")
        )
    })?;
    let tcp = TcpStream::connect_timeout(target, Duration::from_secs(10))
        .map_err(|e| format!("cannot reach {address}: {e}"))?;
    let timeout = Some(Duration::from_secs(10));
    tcp.set_read_timeout(timeout).and_then(|()| tcp.set_write_timeout(timeout)).map_err(|e| e.to_string())?;
    let mut stream = if secure { Conn::tls(tls, host, tcp)? } else { Conn::Plain(tcp) };
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

#[cfg(test)]
mod tests {
    #[test]
    fn internal_addresses_are_not_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!super::is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "2606:2800:220:1::1"] {
            assert!(super::is_public(public.parse().unwrap()), "{public}");
        }
    }
}
