//! Client addresses as sluice reasons about them: ranges an operator writes in the
//! configuration (`IpRange`), and the unit that limits and bans count (`Source`).

use std::fmt;
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

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
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

/// Where a client comes from, as limits and bans count it: an IPv4 address, or an IPv6 /64
/// (one host can use any address of its /64). IPv4-mapped IPv6 addresses are IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Source(IpAddr);

impl Source {
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            v4 @ IpAddr::V4(_) => Source(v4),
            v6 => Source(mask(v6, 64)),
        }
    }

    /// Whether `range` covers this source (for an IPv6 source, its whole /64's first address).
    pub fn is_in(&self, range: &IpRange) -> bool {
        range.contains(self.0)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// `203.0.113.9`, `2001:db8::1` (its /64), or `2001:db8::/64` as `Display` writes it.
impl FromStr for Source {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let wrong =
            || format!("{text:?} is not an IP address (write 203.0.113.9, or 2001:db8::1 for its /64)");
        let addr = match text.split_once('/') {
            Some((a, "64")) if a.contains(':') => a,
            Some(_) => return Err(wrong()),
            None => text,
        };
        addr.parse::<IpAddr>().map(Source::of).map_err(|_| wrong())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
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
        assert_eq!(r.to_string(), "10.0.0.0/8");
        for bad in ["proxy.local", "10.0.0.0/33", "::/129", "10.0.0.0/x", ""] {
            let e = bad.parse::<IpRange>().unwrap_err();
            assert!(e.contains("not an IP address or range"), "{bad}: {e}");
        }
    }

    #[test]
    fn ipv6_sources_are_their_64() {
        assert_eq!(Source::of(ip("2001:db8:0:7::1")), Source::of(ip("2001:db8:0:7:ffff::2")));
        assert_ne!(Source::of(ip("2001:db8:0:7::1")), Source::of(ip("2001:db8:0:8::1")));
        assert_eq!(Source::of(ip("::ffff:192.0.2.1")).to_string(), "192.0.2.1");
        assert_eq!(Source::of(ip("2001:db8:0:7::1")).to_string(), "2001:db8:0:7::/64");
    }

    #[test]
    fn sources_read_back_what_they_write() {
        for text in ["192.0.2.1", "2001:db8:0:7::/64"] {
            assert_eq!(text.parse::<Source>().unwrap().to_string(), text);
        }
        assert_eq!("2001:db8:0:7::99".parse::<Source>().unwrap().to_string(), "2001:db8:0:7::/64");
        for bad in ["192.0.2.0/24", "2001:db8::/48", "example.org", ""] {
            assert!(bad.parse::<Source>().is_err(), "{bad}");
        }
    }
}
