//! Who sent a request: the connection's peer or, when the peer is a reverse proxy the operator
//! trusts (`[http] trusted_proxies`), the client that proxy forwarded. Feeds the login limits,
//! which must tell clients apart without believing what a client says about itself.

use axum::http::HeaderMap;
use std::net::IpAddr;
use std::str::FromStr;

/// One address (`10.0.0.1`, `::1`) or a range in CIDR form (`10.0.0.0/8`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    base: IpAddr,
    prefix: u8,
}

impl FromStr for IpRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let wrong =
            || format!("{text:?} is not an IP address or range (write 10.0.0.1, 10.0.0.0/8 or fd00::/8)");
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| wrong())?)),
            None => (text.trim(), None),
        };
        let base = addr.parse::<IpAddr>().map_err(|_| wrong())?.to_canonical();
        let width = if base.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(width);
        if prefix > width {
            return Err(wrong());
        }
        Ok(Self { base: mask(base, prefix), prefix })
    }
}

impl IpRange {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.base.is_ipv4() && mask(ip, self.prefix) == self.base
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4) & u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(bits.into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(bits.into())
        }
    }
}

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

/// The unit the login limits count: an IPv4 address, or an IPv6 /64 (one host can use any
/// address of its /64).
pub fn limit_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        v4 @ IpAddr::V4(_) => v4.to_string(),
        v6 => format!("{}/64", mask(v6, 64)),
    }
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
    fn ranges_parse_and_contain() {
        let r: IpRange = "10.1.2.3/8".parse().unwrap();
        assert!(r.contains(ip("10.200.0.1")) && !r.contains(ip("11.0.0.1")));
        assert!(r.contains(ip("::ffff:10.0.0.9")), "IPv4-mapped peers of a dual-stack listener");
        let one: IpRange = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let v6: IpRange = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        let all: IpRange = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")) && !all.contains(ip("::1")));
        for bad in ["proxy.local", "10.0.0.0/33", "::/129", "10.0.0.0/x", ""] {
            let e = bad.parse::<IpRange>().unwrap_err();
            assert!(e.contains("not an IP address or range"), "{bad}: {e}");
        }
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

    #[test]
    fn ipv6_clients_count_per_64() {
        assert_eq!(limit_key(ip("2001:db8:0:7::1")), limit_key(ip("2001:db8:0:7:ffff::2")));
        assert_ne!(limit_key(ip("2001:db8:0:7::1")), limit_key(ip("2001:db8:0:8::1")));
        assert_eq!(limit_key(ip("::ffff:192.0.2.1")), "192.0.2.1");
    }
}
