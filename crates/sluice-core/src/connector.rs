//! Connectors: a tenant's own SFTP server (the district's), which sluice pushes exports to.
//! Parsed once where they come in: the name, the `sftp://USER@HOST:PORT/PATH` address and a
//! pinned host key (`TYPE BASE64`, as `known_hosts` and `ssh-keyscan` write it).
//!
//! The credential (a password or a private key) is never here in the clear: the store keeps
//! it sealed (see `sluice_connect::secrets`), and no view carries it.

use serde::Serialize;
use sha2::Digest;
use std::fmt;

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// A connector's name: as a saved export's, one safe component (1 to 64 letters, digits, `-`,
/// `_`, `.`, starting with a letter or digit).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectorName(String);

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error(
    "connector name {0:?} is not allowed: use 1 to 64 letters, digits, '-', '_' and '.', starting with a letter or a digit"
)]
pub struct ConnectorNameError(pub String);

impl ConnectorName {
    pub fn parse(raw: &str) -> Result<Self, ConnectorNameError> {
        crate::saved_export::ExportName::parse(raw)
            .map(|n| ConnectorName(n.to_string()))
            .map_err(|_| ConnectorNameError(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for ConnectorName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConnectorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ConnectorName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ConnectorName::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// Where a connector logs in: `sftp://USER@HOST:PORT/PATH` (port 22 when left out; the path is
/// the remote folder, absolute, `/` when left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftpAddress {
    pub user: String,
    pub host: String,
    pub port: u16,
    pub path: String,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{url:?} is not an SFTP address: {why}; write sftp://USER@HOST:PORT/PATH")]
pub struct SftpAddressError {
    pub url: String,
    pub why: &'static str,
}

impl SftpAddress {
    pub fn parse(raw: &str) -> Result<Self, SftpAddressError> {
        // A password given in the address never reaches a message.
        let shown = match (raw.find("://"), raw.rfind('@')) {
            (Some(s), Some(at)) if at > s && raw[s + 3..at].contains(':') => {
                let user = &raw[s + 3..at];
                format!("{}{}:***{}", &raw[..s + 3], &user[..user.find(':').unwrap_or(0)], &raw[at..])
            }
            _ => raw.to_owned(),
        };
        let err = |why| SftpAddressError { url: shown.clone(), why };
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err("it holds white space or control characters"));
        }
        // The URL parser would quietly drop `.` and `..`: refuse them before it sees them.
        let dotted = |c: &str| {
            let c = c.to_ascii_lowercase().replace("%2e", ".");
            c == "." || c == ".."
        };
        if raw.split('/').skip(3).any(dotted) {
            return Err(err("the path climbs with .."));
        }
        let url = url::Url::parse(raw).map_err(|_| err("it cannot be read as a URL"))?;
        if url.scheme() != "sftp" {
            return Err(err("the scheme is not sftp"));
        }
        if url.password().is_some() {
            return Err(err("a password does not belong in the address (give it with --password-stdin)"));
        }
        let user = percent_decoded(url.username())
            .ok_or_else(|| err("the user name is not UTF-8 or has a stray %"))?;
        if user.is_empty() {
            return Err(err("it names no user"));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            None => return Err(err("it names no host")),
        };
        if url.query().is_some() || url.fragment().is_some() {
            return Err(err("it has a query or a fragment"));
        }
        let path =
            percent_decoded(url.path()).ok_or_else(|| err("the path is not UTF-8 or has a stray %"))?;
        if path.split('/').any(|c| c == "..") {
            return Err(err("the path climbs with .."));
        }
        if path.chars().chain(user.chars()).any(char::is_control) {
            return Err(err("the user or path holds control characters"));
        }
        if path.contains('\\') {
            return Err(err("the path holds a backslash (write folders with /)"));
        }
        if url.port() == Some(0) {
            return Err(err("port 0 is not a port to connect to"));
        }
        let path = if path.is_empty() { "/".to_owned() } else { path };
        Ok(SftpAddress { user, host, port: url.port().unwrap_or(22), path })
    }
}

/// As a URL writes it (what [`SftpAddress::parse`] reads back): the user and path
/// percent-encoded where a URL needs it (`District%20Uploads`).
impl fmt::Display for SftpAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        let user = percent_encoded(&self.user, "-._~!$&'()*+,;=");
        let path = percent_encoded(&self.path, "-._~!$&'()*+,;=:@/");
        write!(f, "sftp://{user}@{host}:{}{path}", self.port)
    }
}

fn percent_encoded(s: &str, keep: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || keep.as_bytes().contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decoded(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            // Exactly two hexadecimal digits (`from_str_radix` alone would take a sign).
            let hex = bytes.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit))?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A server's host key as pinned: `TYPE BASE64` (`ssh-ed25519 AAAAC3...`), compared by its
/// bytes; shown with its OpenSSH fingerprint (`SHA256:...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKey {
    pub algorithm: String,
    /// The key's wire encoding, base64 as in `known_hosts`.
    pub base64: String,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a host key: write it as known_hosts does, TYPE BASE64 (ssh-ed25519 AAAA...)")]
pub struct HostKeyError(pub String);

impl HostKey {
    /// `TYPE BASE64`, optionally preceded by host names (a `known_hosts` or `ssh-keyscan`
    /// line) and followed by a comment.
    pub fn parse(raw: &str) -> Result<Self, HostKeyError> {
        let words: Vec<&str> = raw.split_whitespace().collect();
        let at = words
            .iter()
            .position(|w| w.starts_with("ssh-") || w.starts_with("ecdsa-") || w.starts_with("sk-"))
            .ok_or_else(|| HostKeyError(raw.to_owned()))?;
        let (algorithm, blob) = match (words.get(at), words.get(at + 1)) {
            (Some(a), Some(b)) => (*a, *b),
            _ => return Err(HostKeyError(raw.to_owned())),
        };
        let bytes = base64_decode(blob).ok_or_else(|| HostKeyError(raw.to_owned()))?;
        // The blob starts with its own algorithm name (an SSH string).
        let named = bytes.get(..4).map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize);
        let inner = named.and_then(|n| bytes.get(4..4 + n));
        if inner != Some(algorithm.as_bytes()) {
            return Err(HostKeyError(raw.to_owned()));
        }
        Ok(HostKey { algorithm: algorithm.to_owned(), base64: blob.to_owned() })
    }

    /// The key as the server sends it (its wire encoding).
    pub fn from_wire(algorithm: &str, bytes: &[u8]) -> Self {
        HostKey { algorithm: algorithm.to_owned(), base64: base64_encode(bytes) }
    }

    /// `SHA256:...`, as `ssh-keygen -lf` prints it.
    pub fn fingerprint(&self) -> String {
        let bytes = base64_decode(&self.base64).unwrap_or_default();
        let digest = sha2::Sha256::digest(&bytes);
        format!("SHA256:{}", base64_encode(&digest).trim_end_matches('='))
    }
}

impl fmt::Display for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.algorithm, self.base64)
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut bits, mut n) = (0u32, 0);
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|a| *a == c)? as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    Some(out)
}

/// How a connector logs in (which one; the secret itself is stored sealed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    Password,
    PrivateKey,
}

impl AuthKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthKind::Password => "password",
            AuthKind::PrivateKey => "private_key",
        }
    }

    /// As a sentence says it: `password`, `private key`.
    pub fn in_words(self) -> &'static str {
        match self {
            AuthKind::Password => "password",
            AuthKind::PrivateKey => "private key",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "password" => Some(AuthKind::Password),
            "private_key" => Some(AuthKind::PrivateKey),
            _ => None,
        }
    }
}

/// What happens to a remote file once it was pulled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterPull {
    /// Left where it is (it is not fetched again while its size and time stay the same).
    Keep,
    Remove,
    /// Moved to this remote folder (relative to the connector's folder, or absolute).
    Move(String),
}

impl AfterPull {
    /// `keep`, `remove` or `move:DIR`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "keep" => Ok(AfterPull::Keep),
            "remove" => Ok(AfterPull::Remove),
            other => match other.strip_prefix("move:") {
                Some(dir)
                    if !dir.is_empty()
                        && !dir.split('/').any(|c| c == "..")
                        && !dir.chars().any(|c| c.is_control()) =>
                {
                    Ok(AfterPull::Move(dir.to_owned()))
                }
                _ => Err(format!(
                    "--after-pull {other:?}: write remove, keep, or move:DIR (a remote folder, without ..)"
                )),
            },
        }
    }

    pub fn as_text(&self) -> String {
        match self {
            AfterPull::Keep => "keep".to_owned(),
            AfterPull::Remove => "remove".to_owned(),
            AfterPull::Move(dir) => format!("move:{dir}"),
        }
    }
}

/// A connector that pulls: files in the remote folder's subfolders named like the tenant's
/// folders (and files in the folder itself named as a type requires) are fetched and imported
/// as if the district had uploaded them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pull {
    /// When the server pulls by itself (read in the tenant's time zone); `None`: only on demand.
    pub schedule: Option<crate::schedule::Cron>,
    pub after: AfterPull,
}

/// A connector as stored: where, how it logs in (the sealed secret stays in the store), the
/// pinned host key (none yet: it cannot transfer until `connector test --accept` pins one),
/// whether it writes to a temporary name and renames (some servers refuse renames), and
/// whether it pulls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connector {
    pub name: ConnectorName,
    pub address: SftpAddress,
    pub auth: AuthKind,
    pub host_key: Option<HostKey>,
    pub rename: bool,
    pub pull: Option<Pull>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_read_once_and_whole() {
        let a = SftpAddress::parse("sftp://district@sftp.example.org:2222/incoming/sluice").unwrap();
        assert_eq!(
            (a.user.as_str(), a.host.as_str(), a.port, a.path.as_str()),
            ("district", "sftp.example.org", 2222, "/incoming/sluice")
        );
        let a = SftpAddress::parse("sftp://me%40x@[::1]").unwrap();
        assert_eq!((a.user.as_str(), a.host.as_str(), a.port, a.path.as_str()), ("me@x", "::1", 22, "/"));
        assert_eq!(a.to_string(), "sftp://me%40x@[::1]:22/");
        // What is written reads back the same (the store keeps the written form).
        for url in [
            "sftp://u@h/District%20Uploads/2026",
            "sftp://me%40x@[::1]:2200/a%25b/%C3%A9t%C3%A9",
            "sftp://u@h",
        ] {
            let a = SftpAddress::parse(url).unwrap();
            assert_eq!(SftpAddress::parse(&a.to_string()).unwrap(), a, "{url}");
        }
        assert_eq!(SftpAddress::parse("sftp://u@h/District%20Uploads").unwrap().path, "/District Uploads");
        let e = SftpAddress::parse("sftp://u:hunter2@h/a").unwrap_err().to_string();
        assert!(!e.contains("hunter2") && e.contains("u:***@h"), "{e}");
        for bad in [
            "ftp://u@h/x",
            "sftp://h/x",
            "sftp://u:pw@h/x",
            "sftp://u@h/../etc",
            "sftp://u@h/a/%2e%2e/etc",
            "sftp://u@h/a/./b",
            "sftp://u@h/a%+1",
            "sftp://u@h/a%0a",
            "sftp://u%0a@h/a",
            "sftp://u@h/a%5C..%5Cetc",
            "sftp://u@h:0/a",
            "sftp://u:hunter2@h/a",
            "sftp://u@h/a%2",
            "sftp://u@h/x?y",
            "sftp://u@ h/x",
            "u@h:/x",
        ] {
            assert!(SftpAddress::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_keys_are_read_as_known_hosts_writes_them() {
        // ssh-keygen -lf of this key prints SHA256:... as checked below.
        let line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
        let k = HostKey::parse(line).unwrap();
        assert_eq!(k.algorithm, "ssh-ed25519");
        assert_eq!(HostKey::parse(&format!("[h]:2222 {line} comment")).unwrap(), k);
        assert!(k.fingerprint().starts_with("SHA256:") && k.fingerprint().len() == 50, "{}", k.fingerprint());
        assert!(
            HostKey::parse("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl")
                .is_err(),
            "the blob names its type"
        );
        assert!(HostKey::parse("ssh-ed25519").is_err());
        assert!(HostKey::parse("ssh-ed25519 !!!").is_err());
        assert_eq!(base64_decode(&base64_encode(b"any bytes!")).unwrap(), b"any bytes!");
    }
}
