//! Tokens: API keys (`slk_` and 64 hex digits: 256 random bits from the OS, the prefix so a
//! secret scanner knows them) and the dashboard's own secrets (sessions, CSRF and login form
//! tokens, reset links: 64 hex digits, no prefix), each stored as a SHA-256.

/// A new API key token, its displayable prefix and its hash.
pub fn generate() -> std::io::Result<(String, String, String)> {
    let token = format!("slk_{}", random_hex()?);
    let prefix = token[..12].to_owned();
    let hash = hash(&token);
    Ok((token, prefix, hash))
}

/// A new secret of the dashboard's (a session, a CSRF or form token, a reset link) and its hash.
pub fn secret() -> std::io::Result<(String, String)> {
    let token = random_hex()?;
    let hash = hash(&token);
    Ok((token, hash))
}

fn random_hex() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What the store keeps of a token.
pub fn hash(token: &str) -> String {
    match sluice_core::sha256_of(token.as_bytes()) {
        Ok((_, digest)) => digest.as_str().to_owned(),
        // Hashing bytes in memory cannot fail; an empty hash matches no stored key.
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_random_and_only_their_hash_is_kept() {
        let (a, prefix, hash) = super::generate().unwrap();
        let (b, ..) = super::generate().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("slk_") && a.len() == 68 && a.starts_with(&prefix));
        assert_eq!(hash, super::hash(&a));
        assert_eq!(hash.len(), 64);
        assert!(!hash.contains(&a[4..]));
    }

    #[test]
    fn the_dashboards_secrets_are_random_unprefixed_and_only_their_hash_is_kept() {
        let (a, hash) = super::secret().unwrap();
        let (b, _) = super::secret().unwrap();
        assert_ne!(a, b);
        assert!(a.len() == 64 && a.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_eq!(hash, super::hash(&a));
    }
}
