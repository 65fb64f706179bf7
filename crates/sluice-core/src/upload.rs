//! What a completed upload leaves behind for the import pipeline.

use crate::{TenantName, VirtualPath};

/// A lowercase hex SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sha256Hex(String);

impl Sha256Hex {
    pub fn from_digest(bytes: &[u8; 32]) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(64);
        for b in bytes {
            s.push(HEX[(b >> 4) as usize] as char);
            s.push(HEX[(b & 15) as usize] as char);
        }
        Self(s)
    }

    /// Accepts a stored 64-character lowercase hex string.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            .then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// SHA-256 and length of everything `reader` yields (the caller opens the file).
pub fn sha256_of(mut reader: impl std::io::Read) -> std::io::Result<(u64, Sha256Hex)> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, Sha256Hex::from_digest(&hasher.finalize().into())))
}

/// A file that a tenant finished uploading: closed after a successful write and moved into
/// place (or renamed from a client's temporary name into its final one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadEvent {
    pub tenant: TenantName,
    pub path: VirtualPath,
    pub size: u64,
    pub sha256: Sha256Hex,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The upload's own bytes, kept from its close until it is imported (`None`: a file a
    /// sync or a pull found, read where it is). Another upload of the same name may replace
    /// the file in the tenant's folder before the import worker reaches this one; each
    /// upload still imports what it carried.
    pub snapshot: Option<SnapshotName>,
}

/// The name of an upload's snapshot in the snapshots folder (`DATA_DIR/spool/snapshots`):
/// a plain file name the server made, `snap-` then letters, digits, `-` and `.` (never `/`
/// or `..`), so that a name read back from the database is never a path elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SnapshotName(String);

impl SnapshotName {
    pub fn parse(name: &str) -> Option<Self> {
        let plain = (6..=200).contains(&name.len())
            && name.starts_with("snap-")
            && !name.contains("..")
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        plain.then(|| Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SnapshotName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Names that transfer clients give a file while it is still being written
/// (WinSCP `*.filepart`, others `*.part`, `*.tmp`). Such a file counts as uploaded only
/// once the client renames it to its final name.
pub fn is_transfer_temp_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".filepart", ".part", ".tmp"].iter().any(|ext| lower.ends_with(ext))
}

/// HMAC-SHA256 (RFC 2104), hex.
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    // HMAC takes keys of any length: `new_from_slice` cannot refuse one.
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(key) else { return String::new() };
    mac.update(message);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_digest_round_trips() {
        let d = Sha256Hex::from_digest(&[0xab; 32]);
        assert_eq!(d.as_str(), "ab".repeat(32));
        assert_eq!(Sha256Hex::parse(d.as_str()), Some(d));
        assert_eq!(Sha256Hex::parse("xyz"), None);
    }

    #[test]
    fn recognises_client_temp_names() {
        assert!(is_transfer_temp_name("students.csv.filepart"));
        assert!(is_transfer_temp_name("students.csv.PART"));
        assert!(is_transfer_temp_name("x.tmp"));
        assert!(!is_transfer_temp_name("students.csv"));
        assert!(!is_transfer_temp_name("partners.csv"));
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2 of RFC 4231.
        assert_eq!(
            super::hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block.
        assert_eq!(
            super::hmac_sha256_hex(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First"),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }
}

#[cfg(test)]
mod snapshot_tests {
    use super::SnapshotName;

    #[test]
    fn a_snapshot_name_is_a_plain_name_the_server_made() {
        assert!(SnapshotName::parse("snap-acme-41-7").is_some());
        for bad in ["", "snap-", "upload-3", "snap-../x", "snap-a/b", "snap-a b", "snap-..", "/snap-a"] {
            assert!(SnapshotName::parse(bad).is_none(), "{bad}");
        }
    }
}
