//! A tenant's webhook URL, and which addresses a webhook may reach.
//!
//! [`WebhookUrl::parse`] is the one parser of webhook URLs: saving one (CLI, API, dashboard,
//! through [`check_url`]) and delivering to one (the notifier) read it the same way.
//! [`private_reason`] is the one address policy: an address is not public when it is this
//! machine, a private, shared, link-local, reserved or multicast network, or an IPv6 address
//! that carries such an IPv4 address inside it (NAT64, 6to4, Teredo, IPv4-compatible,
//! IPv4-mapped or -translated). Pure: the notifier resolves names and connects.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An `http://` or `https://` URL split into what a delivery needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    secure: bool,
    /// As written (`host`, `host:port`, `[v6]:port`), for the `Host` header.
    authority: String,
    /// The host name or address, without an IPv6 address's brackets.
    host: String,
    port: u16,
    /// From the first `/` (or `?`), without any `#fragment`; at least `/`.
    path: String,
    /// The whole URL as it is read (WHATWG serialisation): what is stored and shown, so that
    /// what a tenant sees is where deliveries go.
    normalized: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookUrlError {
    #[error("{0:?} is not an http:// or https:// URL (leave it empty for no webhook)")]
    NotHttp(String),
    #[error("{url:?} is not a usable webhook URL: {why}")]
    Unusable { url: String, why: &'static str },
    #[error(
        "{url:?} goes to {address}, {reason}; webhooks go to public addresses unless the operator sets [notifications] allow_private_webhooks = true"
    )]
    Private { url: String, address: IpAddr, reason: String },
}

impl WebhookUrl {
    /// Parses with the WHATWG URL parser (the `url` crate, as browsers and curl read URLs),
    /// after refusing what it would silently repair: white space or control characters
    /// (it drops tabs and line breaks), a missing host (`http:///x` would take `x` as the host),
    /// user information, and an empty or zero port.
    pub fn parse(raw: &str) -> Result<Self, WebhookUrlError> {
        let unusable = |why| WebhookUrlError::Unusable { url: raw.to_owned(), why };
        let rest = match (raw.strip_prefix("http://"), raw.strip_prefix("https://")) {
            (Some(r), _) | (_, Some(r)) => r,
            _ => return Err(WebhookUrlError::NotHttp(raw.to_owned())),
        };
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(unusable("it contains spaces or control characters"));
        }
        let written = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        if written.is_empty() {
            return Err(unusable("it has no host"));
        }
        if written.contains('@') {
            return Err(unusable(
                "a user name or password does not belong in it (the webhook secret signs each POST)",
            ));
        }
        if written.ends_with(':') {
            return Err(unusable("its port is not a number from 1 to 65535"));
        }
        let url = url::Url::parse(raw).map_err(|e| match e {
            url::ParseError::InvalidPort => unusable("its port is not a number from 1 to 65535"),
            url::ParseError::InvalidIpv6Address => unusable("the address in [...] is not an IPv6 address"),
            url::ParseError::EmptyHost => unusable("it has no host"),
            _ => unusable("its host is neither a name nor an address"),
        })?;
        let secure = url.scheme() == "https";
        let (host, bracketed) = match url.host() {
            Some(url::Host::Ipv6(a)) => (a.to_string(), format!("[{a}]")),
            Some(url::Host::Ipv4(a)) => (a.to_string(), a.to_string()),
            Some(url::Host::Domain(d)) => (d.to_owned(), d.to_owned()),
            None => return Err(unusable("it has no host")),
        };
        let port = match url.port_or_known_default() {
            Some(0) | None => return Err(unusable("its port is not a number from 1 to 65535")),
            Some(p) => p,
        };
        let authority = match url.port() {
            Some(p) => format!("{bracketed}:{p}"),
            None => bracketed,
        };
        let path = url[url::Position::BeforePath..url::Position::AfterQuery].to_owned();
        let normalized = url[..url::Position::AfterQuery].to_owned();
        Ok(Self { secure, authority, host, port, path, normalized })
    }

    /// The URL as it is read, without a `#fragment` (`http://Evil.com\\x` is
    /// `http://evil.com/x`).
    pub fn as_str(&self) -> &str {
        &self.normalized
    }

    pub fn secure(&self) -> bool {
        self.secure
    }

    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The host name or address (an IPv6 address without brackets), e.g. for TLS.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// `host:port` for resolving (an IPv6 address in brackets).
    pub fn socket_address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The address the host stands for without asking DNS: an IPv6 address, a dotted IPv4
    /// address, or any other numeric form the system resolver reads as IPv4 (`127.1`,
    /// `2130706433`, `0x7f.0.0.1`). `None` for a host name.
    pub fn literal_address(&self) -> Option<IpAddr> {
        if let Ok(v6) = self.host.parse::<Ipv6Addr>() {
            return Some(IpAddr::V6(v6));
        }
        numeric_ipv4(&self.host).map(IpAddr::V4)
    }
}

/// Checks a webhook URL as a tenant saves it ("" means none): it must parse, and unless
/// `allow_private`, a host written as an address must be public ([`private_reason`]). A host
/// name is checked when a delivery connects, against what it resolves to then.
/// Returns the URL to store: as it is read (see [`WebhookUrl::as_str`]), or "" for none.
pub fn check_url(url: &str, allow_private: bool) -> Result<String, WebhookUrlError> {
    if url.is_empty() {
        return Ok(String::new());
    }
    let parsed = WebhookUrl::parse(url)?;
    if !allow_private
        && let Some(address) = parsed.literal_address()
        && let Some(reason) = private_reason(address)
    {
        return Err(WebhookUrlError::Private { url: url.to_owned(), address, reason });
    }
    Ok(parsed.normalized)
}

/// Whether a tenant's webhook may reach `ip` without the operator's leave.
pub fn is_public(ip: IpAddr) -> bool {
    private_reason(ip).is_none()
}

/// Why a tenant's webhook may not reach `ip` without the operator's leave, or `None` when
/// it is a public address.
pub fn private_reason(ip: IpAddr) -> Option<String> {
    match ip {
        IpAddr::V4(a) => ipv4_reason(a).map(str::to_owned),
        IpAddr::V6(a) => ipv6_reason(a),
    }
}

fn ipv4_reason(a: Ipv4Addr) -> Option<&'static str> {
    let [o0, o1, o2, _] = a.octets();
    Some(if a.is_loopback() {
        "this machine (loopback)"
    } else if a.is_private() {
        "a private network"
    } else if a.is_link_local() {
        "a link-local address (cloud metadata lives there)"
    } else if o0 == 100 && (o1 & 0xc0) == 64 {
        "a shared (carrier-grade NAT) network"
    } else if o0 == 0 {
        "this network (0.0.0.0/8)"
    } else if a.is_multicast() {
        "a multicast address"
    } else if o0 >= 240 {
        "a reserved address (240.0.0.0/4)"
    } else if a.is_documentation() {
        "a documentation address"
    } else if o0 == 198 && (o1 & 0xfe) == 18 {
        "a benchmarking network (198.18.0.0/15)"
    } else if o0 == 192 && o1 == 0 && o2 == 0 {
        "an IETF protocol address (192.0.0.0/24)"
    } else {
        return None;
    })
}

fn ipv6_reason(a: Ipv6Addr) -> Option<String> {
    let s = a.segments();
    let o = a.octets();
    let v4 = |at: usize| Ipv4Addr::new(o[at], o[at + 1], o[at + 2], o[at + 3]);
    // An IPv4 address carried inside: the IPv6 address reaches wherever that one does.
    let embedded = |inner: Ipv4Addr, how: &str| {
        ipv4_reason(inner).map(|why| format!("which carries {inner} ({how}): {why}"))
    };
    if a.is_unspecified() {
        return Some("the unspecified address".into());
    }
    if a.is_loopback() {
        return Some("this machine (loopback)".into());
    }
    match s {
        // IPv4-mapped ::ffff:a.b.c.d
        [0, 0, 0, 0, 0, 0xffff, ..] => embedded(v4(12), "IPv4-mapped"),
        // IPv4-translated ::ffff:0:a.b.c.d (SIIT)
        [0, 0, 0, 0, 0xffff, 0, ..] => embedded(v4(12), "IPv4-translated"),
        // IPv4-compatible ::a.b.c.d (deprecated, still routed by some stacks)
        [0, 0, 0, 0, 0, 0, ..] => embedded(v4(12), "IPv4-compatible"),
        // NAT64, the well-known prefix 64:ff9b::/96
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => embedded(v4(12), "NAT64"),
        // Local-use NAT64 64:ff9b:1::/48: a translator of the local network, whatever it carries
        [0x64, 0xff9b, 1, ..] => {
            Some("a local-use NAT64 address (64:ff9b:1::/48), translated inside the local network".into())
        }
        // 6to4 2002:AABB:CCDD::/48 carries AA.BB.CC.DD
        [0x2002, ..] => embedded(v4(2), "6to4"),
        // Teredo 2001:0:SERVER:flags:port:CLIENT, the client address inverted
        [0x2001, 0, ..] => {
            let client = Ipv4Addr::from(!u32::from(v4(12)));
            embedded(client, "Teredo client").or_else(|| embedded(v4(4), "Teredo server"))
        }
        [0x2001, 0xdb8, ..] => Some("a documentation address (2001:db8::/32)".into()),
        [0x100, 0, 0, 0, ..] => Some("a discard-only address (100::/64)".into()),
        _ if (s[0] & 0xfe00) == 0xfc00 => Some("a private network (unique local, fc00::/7)".into()),
        _ if (s[0] & 0xffc0) == 0xfe80 => Some("a link-local address".into()),
        _ if (s[0] & 0xffc0) == 0xfec0 => Some("a site-local address (fec0::/10)".into()),
        _ if a.is_multicast() => Some("a multicast address".into()),
        _ => None,
    }
}

/// An IPv4 address in any numeric form `inet_aton` (and so the system resolver) accepts:
/// one to four parts, each decimal, octal (leading `0`) or hex (`0x`), the last filling the
/// remaining bytes.
fn numeric_ipv4(host: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = host.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut values = Vec::with_capacity(4);
    for part in &parts {
        let (digits, radix) = if let Some(h) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (h, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (*part, 10)
        };
        if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
            return None;
        }
        values.push(u64::from_str_radix(digits, radix).ok()?);
    }
    let (last, leading) = values.split_last()?;
    if leading.iter().any(|&v| v > 255) || *last >= 1u64 << (8 * (4 - leading.len())) {
        return None;
    }
    let mut n = *last as u32;
    for (i, &v) in leading.iter().enumerate() {
        n |= (v as u32) << (8 * (3 - i));
    }
    Some(Ipv4Addr::from(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(ip: &str) -> Option<String> {
        private_reason(ip.parse().unwrap())
    }

    #[test]
    fn internal_ipv4_addresses_are_not_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "198.18.0.1",
            "192.0.0.170",
            "192.0.2.1",
        ] {
            assert!(reason(private).is_some(), "{private}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "100.128.0.1", "172.32.0.1", "198.20.0.1"] {
            assert_eq!(reason(public), None, "{public}");
        }
    }

    #[test]
    fn plain_internal_ipv6_addresses_are_not_public() {
        for private in
            ["::", "::1", "fd00::1", "fc00::1", "fe80::1", "fec0::1", "ff02::1", "2001:db8::1", "100::1"]
        {
            assert!(reason(private).is_some(), "{private}");
        }
        for public in ["2606:2800:220:1::1", "2a00:1450:4001:81b::200e", "2001:4860:4860::8888"] {
            assert_eq!(reason(public), None, "{public}");
        }
    }

    #[test]
    fn ipv6_addresses_carrying_an_internal_ipv4_address_are_not_public() {
        let cases = [
            ("::ffff:127.0.0.1", "127.0.0.1", "IPv4-mapped"),
            ("::ffff:10.0.0.1", "10.0.0.1", "IPv4-mapped"),
            ("::ffff:0:192.168.0.1", "192.168.0.1", "IPv4-translated"),
            ("::127.0.0.1", "127.0.0.1", "IPv4-compatible"),
            ("::10.1.2.3", "10.1.2.3", "IPv4-compatible"),
            ("::169.254.169.254", "169.254.169.254", "IPv4-compatible"),
            ("64:ff9b::7f00:1", "127.0.0.1", "NAT64"),
            ("64:ff9b::10.0.0.1", "10.0.0.1", "NAT64"),
            ("64:ff9b::a9fe:a9fe", "169.254.169.254", "NAT64"),
            ("2002:7f00:1::1", "127.0.0.1", "6to4"),
            ("2002:c0a8:101::", "192.168.1.1", "6to4"),
            ("2002:a00:1:1::5", "10.0.0.1", "6to4"),
            // Client 127.0.0.1 is stored inverted: 80ff:fffe.
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", "127.0.0.1", "Teredo client"),
            // Server 10.0.0.1, client public (8.8.8.8 inverted: f7f7:f7f7).
            ("2001:0:a00:1:8000:63bf:f7f7:f7f7", "10.0.0.1", "Teredo server"),
        ];
        for (v6, v4, how) in cases {
            let why = reason(v6).unwrap_or_else(|| panic!("{v6} is treated as public"));
            assert!(why.contains(v4) && why.contains(how), "{v6}: {why}");
        }
        let local_nat64 = reason("64:ff9b:1::a00:1").unwrap();
        assert!(local_nat64.contains("local-use NAT64"), "{local_nat64}");
        // The same forms carrying public addresses are public.
        for public in [
            "::ffff:93.184.216.34",
            "64:ff9b::5db8:d822",
            "2002:5db8:d822::1",
            "2001:0:5db8:d822:8000:63bf:f7f7:f7f7",
        ] {
            assert_eq!(reason(public), None, "{public}");
        }
    }

    #[test]
    fn urls_parse_into_what_a_delivery_needs() {
        let u = WebhookUrl::parse("https://hooks.example.org/sluice?x=1#frag").unwrap();
        assert_eq!(
            (u.secure(), u.host(), u.port(), u.path()),
            (true, "hooks.example.org", 443, "/sluice?x=1")
        );
        assert_eq!(u.socket_address(), "hooks.example.org:443");
        assert_eq!(u.literal_address(), None);
        let u = WebhookUrl::parse("http://[64:ff9b::7f00:1]:8080").unwrap();
        assert_eq!(
            (u.host(), u.port(), u.path(), u.authority()),
            ("64:ff9b::7f00:1", 8080, "/", "[64:ff9b::7f00:1]:8080")
        );
        assert_eq!(u.socket_address(), "[64:ff9b::7f00:1]:8080");
        assert_eq!(u.literal_address(), Some("64:ff9b::7f00:1".parse().unwrap()));
        let u = WebhookUrl::parse("http://[::1]/hook").unwrap();
        assert_eq!((u.host(), u.port()), ("::1", 80));
        let u = WebhookUrl::parse("http://h?q").unwrap();
        assert_eq!((u.host(), u.path()), ("h", "/?q"));
        // Read as a browser reads them: case, international names, numeric IPv4 forms.
        let u = WebhookUrl::parse("https://Hooks.EXAMPLE.org:443/A").unwrap();
        assert_eq!((u.host(), u.authority(), u.path()), ("hooks.example.org", "hooks.example.org", "/A"));
        let u = WebhookUrl::parse("https://bücher.example/x").unwrap();
        assert_eq!(u.host(), "xn--bcher-kva.example");
        // Stored as it is read, so what a tenant is shown is where deliveries go.
        assert_eq!(
            check_url("http://Evil.COM\\127.0.0.1/?q#f", false).unwrap(),
            "http://evil.com/127.0.0.1/?q"
        );
        assert_eq!(check_url("", false).unwrap(), "");
        for numeric in ["http://127.1/", "http://0x7f.0.0.1/", "http://2130706433/"] {
            let u = WebhookUrl::parse(numeric).unwrap();
            assert_eq!(u.literal_address(), Some("127.0.0.1".parse().unwrap()), "{numeric}");
            assert!(check_url(numeric, false).is_err(), "{numeric} is this machine");
        }
        for bad in [
            "ftp://h/x",
            "http://",
            "http:///x",
            "http://user:pw@h/x",
            "http://h:0/",
            "http://h:99999/",
            "http://h:+80/",
            "http://h:/",
            "http://[::1/",
            "http://[nope]/",
            "http://[::1]x/",
            "http://h x/",
            "http://h/\r\nX: y",
        ] {
            assert!(WebhookUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn numeric_hosts_are_read_as_the_resolver_reads_them() {
        let ip = |h: &str| numeric_ipv4(h).map(|a| a.to_string());
        assert_eq!(ip("127.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(ip("127.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(ip("2130706433").as_deref(), Some("127.0.0.1"));
        assert_eq!(ip("0x7f000001").as_deref(), Some("127.0.0.1"));
        assert_eq!(ip("0x7f.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(ip("017700000001").as_deref(), Some("127.0.0.1"));
        assert_eq!(ip("10.0.258").as_deref(), Some("10.0.1.2"));
        assert_eq!(ip("0.0").as_deref(), Some("0.0.0.0"));
        assert_eq!(ip("00").as_deref(), Some("0.0.0.0"));
        for name in [
            "127.0.0.1.",
            "0x",
            "hooks.example.org",
            "1.2.3.4.5",
            "256.1.1.1",
            "08.1.1.1",
            "1..1",
            "",
            "0xg",
            "4294967296",
        ] {
            assert_eq!(ip(name), None, "{name}");
        }
    }

    #[test]
    fn saving_refuses_literal_private_addresses_unless_allowed() {
        assert_eq!(check_url("", false), Ok(String::new()));
        assert!(check_url("https://hooks.example.org/x", false).is_ok());
        assert!(check_url("http://localhost:8080/x", false).is_ok(), "names are checked at delivery");
        assert!(matches!(check_url("ftp://h/x", false), Err(WebhookUrlError::NotHttp(_))));
        for url in [
            "http://127.0.0.1/x",
            "http://2130706433/x",
            "http://[64:ff9b::7f00:1]/hook",
            "http://[64:ff9b:1::a00:1]/",
            "http://[2002:c0a8:101::1]/",
            "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",
            "http://[::10.0.0.1]/",
            "http://[::ffff:169.254.169.254]/latest",
        ] {
            let e = check_url(url, false).unwrap_err();
            assert!(matches!(e, WebhookUrlError::Private { .. }), "{url}: {e}");
            assert!(e.to_string().contains("allow_private_webhooks"), "{e}");
            assert!(check_url(url, true).is_ok(), "{url} when allowed");
        }
        let e = check_url("http://[64:ff9b::7f00:1]/hook", false).unwrap_err().to_string();
        assert!(e.contains("which carries 127.0.0.1 (NAT64): this machine (loopback)"), "{e}");
        assert!(
            check_url("http://user@h/", true).is_err(),
            "allowing private addresses allows no malformed URL"
        );
    }
}
