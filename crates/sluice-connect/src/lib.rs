//! Connectors: sluice as an SFTP client of a tenant's own server (a district keeping its files
//! on its own SFTP server). The server's host key is always pinned: nothing is sent to a
//! server whose key is not the pinned one, and the refusal names both fingerprints. The
//! credential is kept sealed ([`secrets`]). A push writes to a temporary name and renames it
//! when whole, checks the size on the server, and retries with backoff; at most one transfer
//! runs per connector at a time (a file lock, so also across processes).
//!
//! The API is synchronous (each call runs its own small tokio runtime), for the CLI and for
//! the blocking threads saved exports run on.

pub mod client;
pub mod secrets;

pub use client::ConnectError;
pub use secrets::{Credential, SecretError, SecretKey};
use sluice_core::connector::{Connector, HostKey, SftpAddress};
use std::path::Path;
use std::time::Duration;

/// How a push retries: `attempts` in all, waiting `first_wait`, then twice as long each time.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub first_wait: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry { attempts: 4, first_wait: Duration::from_secs(5) }
    }
}

/// A push that succeeded: the bytes written and what each failed attempt before it said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub bytes: u64,
    pub failed_attempts: Vec<String>,
    /// Where the file now is on the server.
    pub remote: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("{attempts} attempts failed; the last: {last}")]
    Failed { attempts: u32, last: ConnectError, earlier: Vec<String> },
    /// Not retried: it will not go away by itself (a changed or missing host key, a refused
    /// login, an unreadable key).
    #[error(transparent)]
    Refused(ConnectError),
    #[error("cannot take the connector's transfer lock {path}: {why}")]
    Lock { path: String, why: String },
    #[error("cannot start the transfer: {0}")]
    Runtime(std::io::Error),
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// The host key the connector's server presents now (nothing but the handshake is sent).
pub fn probe(address: &SftpAddress) -> Result<HostKey, ConnectError> {
    let rt = runtime()
        .map_err(|e| ConnectError::Unreachable { address: address.to_string(), why: e.to_string() })?;
    rt.block_on(client::probe(address))
}

/// Logs in with the pinned key and lists the connector's folder: what `connector test` checks.
pub fn check(
    connector: &Connector,
    credential: &Credential,
) -> Result<Vec<(String, u64, u32)>, ConnectError> {
    let address = &connector.address;
    let rt = runtime()
        .map_err(|e| ConnectError::Unreachable { address: address.to_string(), why: e.to_string() })?;
    rt.block_on(async {
        let remote = client::open(connector, credential).await?;
        let listed = remote.list(&address.path).await;
        remote.close().await;
        listed
    })
}

/// Pushes `local` to the connector's folder as `name`, retrying as `retry` says, one transfer
/// per connector at a time (`lock`: the connector's lock file).
pub fn push(
    connector: &Connector,
    credential: &Credential,
    local: &Path,
    name: &str,
    retry: Retry,
    lock: &Path,
) -> Result<Pushed, PushError> {
    let _turn = lock_file(lock)?;
    let rt = runtime().map_err(PushError::Runtime)?;
    let mut earlier = Vec::new();
    let mut wait = retry.first_wait;
    for attempt in 1..=retry.attempts.max(1) {
        let outcome = rt.block_on(async {
            let remote = client::open(connector, credential).await?;
            let written = remote.upload(local, &connector.address.path, name, connector.rename).await;
            remote.close().await;
            written
        });
        match outcome {
            Ok(bytes) => {
                return Ok(Pushed {
                    bytes,
                    failed_attempts: earlier,
                    remote: client::remote_path(&connector.address.path, name),
                });
            }
            Err(
                e @ (ConnectError::NotPinned { .. }
                | ConnectError::HostKeyChanged { .. }
                | ConnectError::Certificate { .. }
                | ConnectError::LoginRefused { .. }
                | ConnectError::BadPrivateKey(_)
                | ConnectError::Local { .. }),
            ) => return Err(PushError::Refused(e)),
            Err(e) if attempt == retry.attempts.max(1) => {
                return Err(PushError::Failed { attempts: attempt, last: e, earlier });
            }
            Err(e) => {
                tracing::warn!(connector = %connector.name, attempt, "push failed, retrying in {wait:?}: {e}");
                earlier.push(e.to_string());
                std::thread::sleep(wait);
                wait *= 2;
            }
        }
    }
    unreachable!("the last attempt returns")
}

/// An exclusive OS lock on `path` (created if needed), released when the file is dropped, also
/// by a killed process.
fn lock_file(path: &Path) -> Result<std::fs::File, PushError> {
    use std::os::fd::AsRawFd;
    let err = |e: std::io::Error| PushError::Lock { path: path.display().to_string(), why: e.to_string() };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    let file =
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(err)?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    Ok(file)
}

/// What pushes files to a tenant's connectors: the key that opens their credentials, where
/// their transfer locks live, and how pushes retry. Every attempt is logged in the store.
pub struct Pusher {
    pub key: SecretKey,
    /// A folder for the connectors' lock files (`DATA_DIR/spool/locks`).
    pub locks: std::path::PathBuf,
    pub retry: Retry,
}

#[derive(Debug, thiserror::Error)]
pub enum PushFailure {
    #[error(transparent)]
    Store(#[from] sluice_store::StoreError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Push(#[from] PushError),
}

impl Pusher {
    /// Pushes `local` as `name` to the tenant's connector, logging each attempt.
    pub fn push_to(
        &self,
        store: &impl sluice_store::roles::Connectors,
        tenant: &str,
        connector: &str,
        local: &Path,
        name: &str,
    ) -> Result<Pushed, PushFailure> {
        let (connector, sealed) = store
            .connector(tenant, connector)?
            .ok_or_else(|| sluice_store::StoreError::NoSuchConnector(connector.to_owned()))?;
        let credential = self.key.open(tenant, &connector.name, &sealed)?;
        let lock = self
            .locks
            .join(format!("connector-{tenant}-{}.lock", connector.name.as_str().to_ascii_lowercase()));
        let outcome = push(&connector, &credential, local, name, self.retry, &lock);
        let log =
            |result: Result<u64, &str>| store.log_transfer(tenant, &connector.name, "push", name, result);
        match &outcome {
            Ok(p) => {
                for e in &p.failed_attempts {
                    log(Err(e))?;
                }
                log(Ok(p.bytes))?;
            }
            Err(PushError::Failed { last, earlier, .. }) => {
                for e in earlier {
                    log(Err(e))?;
                }
                log(Err(&last.to_string()))?;
            }
            Err(e) => log(Err(&e.to_string()))?,
        }
        Ok(outcome?)
    }
}
