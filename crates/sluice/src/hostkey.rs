//! The server's Ed25519 host key: generated on first start, reused afterwards.

use anyhow::{Context, Result};
use russh::keys::PrivateKey;
use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::Ed25519Keypair;
use std::path::Path;

/// Reads the host key at `path`; when there is none, makes one if `may_generate` (sluice's own
/// file in the data directory), and otherwise says how to make it.
pub fn load_or_generate(path: &Path, may_generate: bool) -> Result<PrivateKey> {
    if !path.exists() && !may_generate {
        anyhow::bail!(
            "[sftp] host_key_file = {:?} does not exist: make it with `ssh-keygen -t ed25519 -N '' -f {}` \
             (or copy the key the server had, so clients keep trusting it)",
            path.display().to_string(),
            path.display()
        );
    }
    if path.exists() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read host key {}", path.display()))?;
        return PrivateKey::from_openssh(&text)
            .with_context(|| format!("host key {} is not an OpenSSH private key", path.display()));
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("cannot get random bytes from the operating system to generate the host key")?;
    let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    let text = key.to_openssh(LineEnding::LF).context("cannot encode the host key")?;
    // Written whole, then linked into place: servers starting together on one data directory
    // never read half a key, and the first key made is everyone's (the others load it).
    let linked = sluice_core::spool::create_whole_private(path, text.as_bytes());
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return load_or_generate(path, false),
        Err(e) => return Err(e).with_context(|| format!("cannot create host key {}", path.display())),
    }
    tracing::info!(
        "generated SSH host key {} ({})",
        path.display(),
        key.public_key().fingerprint(russh::keys::HashAlg::Sha256)
    );
    Ok(key)
}
