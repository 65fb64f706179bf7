//! The credentials connectors keep, sealed with AES-256-GCM (ring) under a key that lives in a
//! file of its own (`[secrets] key_file`, by default `DATA_DIR/secret.key`, 0600, made on first
//! use): a copy of the database alone does not give away a district's password. Each sealed
//! value is bound to its tenant and connector (the AEAD's associated data), so a value copied
//! onto another connector does not open.

use base64::Engine;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use std::path::Path;
use zeroize::Zeroizing;

/// The key that seals connectors' credentials.
pub struct SecretKey(LessSafeKey);

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read the secret key file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot create the secret key file {path}: {source}")]
    Create { path: String, source: std::io::Error },
    #[error(
        "the secret key file {0} does not hold a key (64 hexadecimal digits); restore it from a backup: \
         without it the stored credentials cannot be opened"
    )]
    Malformed(String),
    #[error(
        "a stored credential cannot be opened with this secret key (a different key file, or the value was \
         altered); set the connector's credential again"
    )]
    Unsealable,
    #[error("the system's random number generator failed")]
    Random,
    #[error(
        "the secret key file {0} is missing, but connectors' credentials were sealed with it: restore it from \
         your backup (a new key cannot open them), or set [secrets] key_file to where it is"
    )]
    Missing(String),
}

/// A credential: what a connector logs in with.
pub enum Credential {
    Password(Zeroizing<String>),
    /// An OpenSSH private key (PEM text), unencrypted.
    PrivateKey(Zeroizing<String>),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret itself, in any log or error.
        f.write_str(match self {
            Credential::Password(_) => "Credential::Password(..)",
            Credential::PrivateKey(_) => "Credential::PrivateKey(..)",
        })
    }
}

impl Credential {
    pub fn kind(&self) -> sluice_core::connector::AuthKind {
        match self {
            Credential::Password(_) => sluice_core::connector::AuthKind::Password,
            Credential::PrivateKey(_) => sluice_core::connector::AuthKind::PrivateKey,
        }
    }
}

const SEALED_PREFIX: &str = "v1:";

impl SecretKey {
    /// Reads the key file, or makes one (32 random bytes, 0600, never replacing a file that
    /// appeared meanwhile) when there is none and `may_create` (no credential was sealed yet:
    /// a new key would not open those). A key file others may read is made private (0600).
    pub fn load_or_create(path: &Path, may_create: bool) -> Result<Self, SecretError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                use std::os::unix::fs::PermissionsExt;
                if let Ok(meta) = std::fs::metadata(path)
                    && meta.permissions().mode() & 0o077 != 0
                {
                    tracing::warn!(path = %path.display(), "the secret key file was readable by others: made private (0600)");
                    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
                }
                Self::from_hex(text.trim()).ok_or_else(|| SecretError::Malformed(path.display().to_string()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !may_create => {
                Err(SecretError::Missing(path.display().to_string()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = Zeroizing::new([0u8; 32]);
                SystemRandom::new().fill(&mut bytes[..]).map_err(|_| SecretError::Random)?;
                let hex: Zeroizing<String> =
                    Zeroizing::new(bytes.iter().map(|b| format!("{b:02x}")).collect());
                let line: Zeroizing<String> = Zeroizing::new(format!("{}\n", hex.as_str()));
                let created = sluice_core::spool::create_whole_private(path, line.as_bytes());
                match created {
                    Ok(()) => Ok(Self::from_bytes(&bytes[..])),
                    // Another process made it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Self::load_or_create(path, false)
                    }
                    Err(source) => Err(SecretError::Create { path: path.display().to_string(), source }),
                }
            }
            Err(source) => Err(SecretError::Read { path: path.display().to_string(), source }),
        }
    }

    fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self::from_bytes(&bytes[..]))
    }

    fn from_bytes(bytes: &[u8]) -> Self {
        // 32 bytes is AES-256's key length: the only way this is called.
        let key = UnboundKey::new(&AES_256_GCM, bytes).unwrap_or_else(|_| unreachable!("a 32-byte key"));
        SecretKey(LessSafeKey::new(key))
    }

    /// Seals a credential for one tenant's connector.
    pub fn seal(
        &self,
        tenant: &str,
        connector: &str,
        credential: &Credential,
    ) -> Result<String, SecretError> {
        let plain = match credential {
            Credential::Password(p) => Zeroizing::new(format!("password:{}", p.as_str())),
            Credential::PrivateKey(k) => Zeroizing::new(format!("private_key:{}", k.as_str())),
        };
        self.seal_bytes(&associated(tenant, connector), plain.as_bytes())
    }

    /// Opens what [`SecretKey::seal`] sealed for the same tenant and connector.
    pub fn open(&self, tenant: &str, connector: &str, sealed: &str) -> Result<Credential, SecretError> {
        let plain = self.open_bytes(&associated(tenant, connector), sealed)?;
        let text = std::str::from_utf8(&plain).map_err(|_| SecretError::Unsealable)?;
        if let Some(p) = text.strip_prefix("password:") {
            Ok(Credential::Password(Zeroizing::new(p.to_owned())))
        } else if let Some(k) = text.strip_prefix("private_key:") {
            Ok(Credential::PrivateKey(Zeroizing::new(k.to_owned())))
        } else {
            Err(SecretError::Unsealable)
        }
    }

    /// Seals any secret, bound to `purpose` (what it is and whose: it opens only for the same
    /// purpose). A connector's credential and an account's second-factor secret are both this.
    pub fn seal_bytes(&self, purpose: &str, plain: &[u8]) -> Result<String, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).map_err(|_| SecretError::Random)?;
        let mut data = Zeroizing::new(plain.to_vec());
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(purpose.as_bytes()),
                &mut *data,
            )
            .map_err(|_| SecretError::Unsealable)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(format!("{SEALED_PREFIX}{}", base64::engine::general_purpose::STANDARD.encode(out)))
    }

    /// Opens what [`SecretKey::seal_bytes`] sealed for the same purpose.
    pub fn open_bytes(&self, purpose: &str, sealed: &str) -> Result<Zeroizing<Vec<u8>>, SecretError> {
        let encoded = sealed.strip_prefix(SEALED_PREFIX).ok_or(SecretError::Unsealable)?;
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| SecretError::Unsealable)?;
        if bytes.len() < NONCE_LEN {
            return Err(SecretError::Unsealable);
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretError::Unsealable)?;
        let mut data = Zeroizing::new(rest.to_vec());
        let len = self
            .0
            .open_in_place(nonce, Aad::from(purpose.as_bytes()), &mut data)
            .map_err(|_| SecretError::Unsealable)?
            .len();
        data.truncate(len);
        Ok(data)
    }
}

fn associated(tenant: &str, connector: &str) -> String {
    format!("sluice connector {tenant}/{connector}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_credential_opens_only_with_its_key_for_its_connector() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let key = SecretKey::load_or_create(&path, true).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let sealed = key
            .seal("acme", "district", &Credential::Password(Zeroizing::new("hunter2-long".into())))
            .unwrap();
        assert!(!sealed.contains("hunter2"), "{sealed}");
        let again = SecretKey::load_or_create(&path, true).unwrap();
        match again.open("acme", "district", &sealed).unwrap() {
            Credential::Password(p) => assert_eq!(p.as_str(), "hunter2-long"),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(key.open("acme", "other", &sealed), Err(SecretError::Unsealable)),
            "bound to its connector"
        );
        assert!(
            matches!(key.open("beta", "district", &sealed), Err(SecretError::Unsealable)),
            "and its tenant"
        );
        let other = SecretKey::load_or_create(&dir.path().join("other.key"), true).unwrap();
        assert!(matches!(other.open("acme", "district", &sealed), Err(SecretError::Unsealable)));
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(key.open("acme", "district", &tampered).is_err());
        let twice = key
            .seal("acme", "district", &Credential::Password(Zeroizing::new("hunter2-long".into())))
            .unwrap();
        assert_ne!(sealed, twice, "a fresh nonce each time");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        SecretKey::load_or_create(&path, false).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "made private");
        std::fs::write(&path, "not a key\n").unwrap();
        assert!(matches!(SecretKey::load_or_create(&path, true), Err(SecretError::Malformed(_))));
        let gone = dir.path().join("gone.key");
        assert!(matches!(SecretKey::load_or_create(&gone, false), Err(SecretError::Missing(_))));
        assert!(!gone.exists(), "never made while credentials need the old one");
        assert_eq!(
            format!("{:?}", Credential::Password(Zeroizing::new("x".into()))),
            "Credential::Password(..)"
        );
    }
}
