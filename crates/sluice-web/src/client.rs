//! Who sent a request: the connection's peer or, when the peer is a reverse proxy the operator
//! trusts (`[http] trusted_proxies`), the client that proxy forwarded. Feeds the defender,
//! which must tell clients apart without believing what a client says about itself.

use axum::http::HeaderMap;
pub use sluice_core::net::IpRange;
use std::net::IpAddr;

/// The client's address. A peer that is a trusted proxy passes on `X-Forwarded-For`; each
/// proxy appends the address it saw, so the client is the right-most entry that is not itself
/// a trusted proxy (entries to its left are whatever the client wrote). An entry that is not
/// an address stops the walk at the proxy that passed it on.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpRange]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|r| r.contains(ip));
    let mut client = peer.to_canonical();
    if !is_trusted(client) {
        return client;
    }
    let mut hops: Vec<&str> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else { return client };
        hops.extend(text.split(',').map(str::trim));
    }
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else { return client };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

/// `203.0.113.9`, `2001:db8::1`, or with a port: `203.0.113.9:4711`, `[2001:db8::1]:4711`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<std::net::SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_client_is_the_right_most_untrusted_hop() {
        let trusted: Vec<IpRange> = vec!["127.0.0.1".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
        let proxy = ip("127.0.0.1");
        // An untrusted peer's header is ignored.
        assert_eq!(client_ip(ip("198.51.100.1"), &forwarded(&["1.2.3.4"]), &trusted), ip("198.51.100.1"));
        // A trusted peer without a header is the client.
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
        // Spoofed entries on the left are skipped; trusted hops on the right are walked past.
        let h = forwarded(&["6.6.6.6, 203.0.113.9", "10.0.0.2"]);
        assert_eq!(client_ip(proxy, &h, &trusted), ip("203.0.113.9"));
        assert_eq!(client_ip(proxy, &forwarded(&["[2001:db8::1]:4711"]), &trusted), ip("2001:db8::1"));
        // Garbage stops at the proxy that passed it on.
        assert_eq!(client_ip(proxy, &forwarded(&["1.2.3.4, junk, 10.0.0.3"]), &trusted), ip("10.0.0.3"));
        assert_eq!(client_ip(proxy, &forwarded(&["unknown"]), &trusted), proxy);
    }
}
