//! Password hashing with argon2id (PHC string format). Plain passwords never leave this module.

use argon2::{Argon2, PasswordHasher, PasswordVerifier};

/// An argon2id hash in PHC string form, e.g. `$argon2id$v=19$m=19456,t=2,p=1$...`.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password is empty")]
    Empty,
    #[error("password is longer than {max} bytes")]
    TooLong { max: usize },
    #[error("the password must have at least {min} characters (a passphrase of a few words will do)")]
    TooShort { min: usize },
    #[error("stored password hash is not a valid argon2 PHC string")]
    CorruptHash,
    #[error("could not hash password: {0}")]
    Hashing(String),
}

impl PasswordHash {
    /// Longer inputs are refused so that a client cannot make us hash megabytes.
    pub const MAX_PASSWORD_LEN: usize = 1024;

    /// The fewest characters a chosen password may have: an SFTP login's, a dashboard
    /// account's, the operator's. One rule, wherever a password is set (CLI, dashboard).
    pub const MIN_CHOSEN_CHARS: usize = 12;

    /// A password someone chooses, checked against the one rule and hashed.
    pub fn choose(password: &str) -> Result<Self, PasswordError> {
        if password.chars().count() < Self::MIN_CHOSEN_CHARS {
            return Err(PasswordError::TooShort { min: Self::MIN_CHOSEN_CHARS });
        }
        Self::create(password)
    }

    /// Hashes `password` with argon2id, its default parameters and a random salt (no rule:
    /// for generated secrets and the hash a login compares against; a chosen password goes
    /// through [`Self::choose`]).
    pub fn create(password: &str) -> Result<Self, PasswordError> {
        Self::check_len(password)?;
        let hash = Argon2::default()
            .hash_password(password.as_bytes())
            .map_err(|e| PasswordError::Hashing(e.to_string()))?;
        Ok(Self(hash.to_string()))
    }

    /// Wraps a stored PHC string, checking that it parses.
    pub fn from_stored(phc: String) -> Result<Self, PasswordError> {
        argon2::PasswordHash::new(&phc).map_err(|_| PasswordError::CorruptHash)?;
        Ok(Self(phc))
    }

    /// True when `password` matches. Over-long input is a mismatch, never an error.
    pub fn verify(&self, password: &str) -> bool {
        if Self::check_len(password).is_err() {
            return false;
        }
        Argon2::default().verify_password(password.as_bytes(), self.0.as_str()).is_ok()
    }

    pub fn as_phc(&self) -> &str {
        &self.0
    }

    fn check_len(password: &str) -> Result<(), PasswordError> {
        if password.is_empty() {
            return Err(PasswordError::Empty);
        }
        if password.len() > Self::MAX_PASSWORD_LEN {
            return Err(PasswordError::TooLong { max: Self::MAX_PASSWORD_LEN });
        }
        Ok(())
    }
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_chosen_password_has_at_least_twelve_characters() {
        assert!(matches!(
            super::PasswordHash::choose("short"),
            Err(super::PasswordError::TooShort { min: 12 })
        ));
        // Characters, not bytes: eleven accented letters are still too short.
        assert!(super::PasswordHash::choose("ééééééééééé").is_err());
        assert!(super::PasswordHash::choose("correct horse").unwrap().verify("correct horse"));
    }

    use super::*;

    #[test]
    fn hashes_with_argon2id_and_verifies() {
        let h = PasswordHash::create("correct horse").unwrap();
        assert!(h.as_phc().starts_with("$argon2id$"), "{}", h.as_phc());
        assert!(h.verify("correct horse"));
        assert!(!h.verify("correct horse "));
        assert!(!h.verify(""));
        assert!(!h.verify(&"x".repeat(5000)));
        let again = PasswordHash::from_stored(h.as_phc().to_owned()).unwrap();
        assert!(again.verify("correct horse"));
    }

    #[test]
    fn the_same_password_gets_a_different_salt() {
        let a = PasswordHash::create("pw").unwrap();
        let b = PasswordHash::create("pw").unwrap();
        assert_ne!(a.as_phc(), b.as_phc());
    }

    #[test]
    fn refuses_corrupt_hashes_and_empty_passwords() {
        assert!(PasswordHash::from_stored("plaintext".into()).is_err());
        assert!(matches!(PasswordHash::create(""), Err(PasswordError::Empty)));
        assert!(!format!("{:?}", PasswordHash::create("s3cret").unwrap()).contains("argon2"));
    }
}
