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

/// A transfer's runtime. Multi-threaded (one worker) rather than current-thread: the
/// callbacks a transfer makes as each file goes (logging it in the store) may block on a
/// database client, which can step out of a multi-threaded runtime (`block_in_place`) but not
/// out of a current-thread one.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()
}

/// The host key the connector's server presents now (nothing but the handshake is sent): of
/// the pinned key's type when there is one and the server has a key of it (as the transfers
/// ask), else whichever it prefers.
pub fn probe(address: &SftpAddress, pinned: Option<&HostKey>) -> Result<HostKey, ConnectError> {
    let rt = runtime()
        .map_err(|e| ConnectError::Unreachable { address: address.to_string(), why: e.to_string() })?;
    rt.block_on(async {
        if let Some(found) = match pinned {
            Some(p) => client::probe(address, Some(p)).await.ok(),
            None => None,
        } {
            return Ok(found);
        }
        client::probe(address, None).await
    })
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
    push_logged(connector, credential, local, name, retry, lock, &mut |_| {})
}

/// [`push`], telling `attempted` how each attempt ended, as it ends (bytes, or why not).
pub fn push_logged(
    connector: &Connector,
    credential: &Credential,
    local: &Path,
    name: &str,
    retry: Retry,
    lock: &Path,
    attempted: &mut dyn FnMut(Result<u64, &str>),
) -> Result<Pushed, PushError> {
    let mut pushed =
        push_all(connector, credential, &[(local, name)], retry, lock, &mut |_, outcome| attempted(outcome))?;
    Ok(pushed.remove(0))
}

/// Pushes several files in one session (a type's photos): each to a temporary name, then
/// renamed, in order. A failure that may pass (a dropped connection) reconnects and goes on
/// from the file it stopped at, as `retry` says; one that will not (a refused login, a changed
/// host key) ends the push. `attempted` hears of each file's attempt as it ends.
pub fn push_all(
    connector: &Connector,
    credential: &Credential,
    files: &[(&Path, &str)],
    retry: Retry,
    lock: &Path,
    attempted: &mut dyn FnMut(&str, Result<u64, &str>),
) -> Result<Vec<Pushed>, PushError> {
    let _turn = lock_file(lock)?;
    let rt = runtime().map_err(PushError::Runtime)?;
    let mut earlier = Vec::new();
    let mut wait = retry.first_wait;
    let mut done: Vec<Pushed> = Vec::with_capacity(files.len());
    for attempt in 1..=retry.attempts.max(1) {
        // An attempt that fails before a file's upload (the connection, the host key, the
        // login) is logged against the file it was to send.
        let mut told = false;
        let outcome: Result<(), ConnectError> = rt.block_on(async {
            let remote = client::open(connector, credential).await?;
            for (local, name) in &files[done.len()..] {
                let written = remote.upload(local, &connector.address.path, name, connector.rename).await;
                match &written {
                    Ok(bytes) => attempted(name, Ok(*bytes)),
                    Err(e) => {
                        told = true;
                        attempted(name, Err(&e.to_string()));
                    }
                }
                match written {
                    Ok(bytes) => done.push(Pushed {
                        bytes,
                        failed_attempts: std::mem::take(&mut earlier),
                        remote: client::remote_path(&connector.address.path, name),
                    }),
                    Err(e) => {
                        remote.close().await;
                        return Err(e);
                    }
                }
            }
            remote.close().await;
            Ok(())
        });
        if let (Err(e), false) = (&outcome, told)
            && let Some((_, name)) = files.get(done.len())
        {
            attempted(name, Err(&e.to_string()));
        }
        match outcome {
            Ok(()) => return Ok(done),
            Err(
                e @ (ConnectError::NotPinned { .. }
                | ConnectError::HostKeyChanged { .. }
                | ConnectError::Certificate { .. }
                | ConnectError::LoginRefused { .. }
                | ConnectError::BadPrivateKey(_)
                | ConnectError::Refused { .. }
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

/// What moves files between sluice and tenants' connectors: the key that opens their
/// credentials, where their transfer locks live, and how pushes retry. Every attempt is logged
/// in the store.
pub struct Transfers {
    pub key: SecretKey,
    /// A folder for the connectors' lock files (`DATA_DIR/spool/locks`).
    pub locks: std::path::PathBuf,
    pub retry: Retry,
    /// Pulls: how long a remote file must keep its size and time between two listings to be
    /// fetched (one still being written waits for the next pull).
    pub settle: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum PushFailure {
    #[error(transparent)]
    Store(#[from] sluice_store::StoreError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Push(#[from] PushError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(
        "connector {0} is not set up to pull: add it again with --pull (and --replace) if the district leaves \
         files there for sluice to fetch"
    )]
    NotPulling(String),
}

impl Transfers {
    /// Pushes several files (`(local, name)`) to the tenant's connector in one session, logging
    /// each file's attempts: a type's photos.
    pub fn push_all_to(
        &self,
        store: &dyn sluice_store::roles::Connectors,
        tenant: &str,
        connector: &str,
        files: &[(&Path, &str)],
    ) -> Result<Vec<Pushed>, PushFailure> {
        let (connector, sealed) = store
            .connector(tenant, connector)?
            .ok_or_else(|| sluice_store::StoreError::NoSuchConnector(connector.to_owned()))?;
        let credential = self.key.open(tenant, &connector.name, &sealed)?;
        let lock = self
            .locks
            .join(format!("connector-{tenant}-{}.lock", connector.name.as_str().to_ascii_lowercase()));
        let mut attempted = |name: &str, result: Result<u64, &str>| {
            if let Err(e) = store.log_transfer(tenant, &connector.name, "push", name, result) {
                tracing::warn!(tenant, connector = %connector.name, "cannot log a push attempt: {e}");
            }
        };
        Ok(push_all(&connector, &credential, files, self.retry, &lock, &mut attempted)?)
    }

    /// Pushes `local` as `name` to the tenant's connector, logging each attempt.
    pub fn push_to(
        &self,
        store: &dyn sluice_store::roles::Connectors,
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
        // Each attempt is logged as it ends (a failure to log is noted; the push goes on).
        let mut attempted = |result: Result<u64, &str>| {
            if let Err(e) = store.log_transfer(tenant, &connector.name, "push", name, result) {
                tracing::warn!(tenant, connector = %connector.name, "cannot log a push attempt: {e}");
            }
        };
        let outcome = push_logged(&connector, &credential, local, name, self.retry, &lock, &mut attempted);
        if let Err(e @ (PushError::Lock { .. } | PushError::Runtime(_))) = &outcome {
            attempted(Err(&e.to_string()));
        }
        Ok(outcome?)
    }
}

/// What one pull did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pulled {
    /// Fetched and recorded as uploads: (where in the tenant's tree, bytes).
    pub fetched: Vec<(String, u64)>,
    /// Still changing between the two listings: left for the next pull.
    pub changing: Vec<String>,
    /// Pulled before with the same size and time.
    pub already: usize,
    /// Fetched, but what happened after (remove, move) failed: (remote path, why).
    pub after_failed: Vec<(String, String)>,
    /// Not fetched, and why (left for the next pull).
    pub failed: Vec<(String, String)>,
}

/// A remote file a pull may fetch.
struct Candidate {
    /// From a subfolder named like the tenant's folder (else from the connector's folder).
    from_subfolder: bool,
    remote: String,
    folder: sluice_core::FolderName,
    name: sluice_core::FileName,
    size: u64,
    mtime: u32,
}

impl Transfers {
    /// Pulls from a tenant's connector: the files in its remote folder's subfolders named like
    /// the tenant's import folders, and the files in the folder itself named as one of the
    /// tenant's types requires, are fetched (only those whose size and time held still between
    /// two listings `settle` apart, and not pulled before with the same size and time) into
    /// the tenant's folder and recorded as uploads, exactly as if the district had uploaded
    /// them; then removed, moved or kept on the server as the connector says.
    #[allow(clippy::too_many_arguments)]
    pub fn pull(
        &self,
        store: &dyn sluice_store::Backend,
        types: &sluice_core::import::ImportTypes,
        tenants_root: &Path,
        spool: &Path,
        tenant: &sluice_core::Tenant,
        connector: &str,
    ) -> Result<Pulled, PushFailure> {
        let (connector, sealed) = store
            .connector(&tenant.name, connector)?
            .ok_or_else(|| sluice_store::StoreError::NoSuchConnector(connector.to_owned()))?;
        let Some(pull) = &connector.pull else {
            return Err(PushFailure::NotPulling(connector.name.to_string()));
        };
        let after = pull.after.clone();
        let credential = self.key.open(&tenant.name, &connector.name, &sealed)?;
        let lock = self.locks.join(format!(
            "connector-{}-{}.lock",
            tenant.name,
            connector.name.as_str().to_ascii_lowercase()
        ));
        let _turn = lock_file(&lock)?;
        let rt = runtime().map_err(PushError::Runtime)?;
        let log = |file: &str, result: Result<u64, &str>| {
            store.log_transfer(&tenant.name, &connector.name, "pull", file, result)
        };
        let outcome = rt.block_on(async {
            let remote = client::open(&connector, &credential).await?;
            let first = candidates(&remote, &connector, types, tenant).await?;
            tokio::time::sleep(self.settle).await;
            let second = candidates(&remote, &connector, types, tenant).await?;
            let mut pulled = Pulled::default();
            // One remote file per local name in a pull (a name a type requires at the root and
            // the same name in its folder would land on each other): the first is taken, the
            // other waits for the next pull. `.done` manifests last, after the files they list.
            let mut landing = std::collections::HashSet::new();
            let mut first = first;
            let is_manifest = |c: &Candidate| c.name.as_str().to_ascii_lowercase().ends_with(".done");
            first.sort_by_key(is_manifest);
            // The files of each folder left for the next pull: a manifest that lists one waits
            // with it (taken now, a manifest whose file was still being written failed, and the
            // file, taken by the next pull with no manifest, was never imported; both gone from
            // the district's server).
            let mut left: Vec<(sluice_core::FolderName, String)> = Vec::new();
            for c in first {
                let still =
                    second.iter().any(|d| d.remote == c.remote && d.size == c.size && d.mtime == c.mtime);
                if !still {
                    left.push((c.folder.clone(), c.name.as_str().to_ascii_lowercase()));
                    pulled.changing.push(c.remote);
                    continue;
                }
                if store.was_pulled(&tenant.name, &connector.name, &c.remote, c.size, c.mtime)? {
                    pulled.already += 1;
                    continue;
                }
                let left_here: Vec<&str> =
                    left.iter().filter(|(f, _)| *f == c.folder).map(|(_, n)| n.as_str()).collect();
                if is_manifest(&c)
                    && !left_here.is_empty()
                    && let Some(waits_for) = self.lists_one_of(&remote, spool, &c, &left_here).await
                {
                    let why = format!(
                        "it lists {waits_for}, which was left for the next pull: the manifest waits for it"
                    );
                    pulled.failed.push((c.remote, why));
                    continue;
                }
                if !landing.insert((c.folder.clone(), c.name.as_str().to_ascii_lowercase())) {
                    let why = format!(
                        "another file of this pull lands as /{}/{}: left for the next pull",
                        c.folder, c.name
                    );
                    left.push((c.folder.clone(), c.name.as_str().to_ascii_lowercase()));
                    pulled.failed.push((c.remote, why));
                    continue;
                }
                let landed = self.land(&remote, store, tenants_root, spool, tenant, &c).await;
                match landed {
                    Ok((bytes, sha)) => {
                        store.record_pulled(
                            &tenant.name,
                            &connector.name,
                            &c.remote,
                            c.size,
                            c.mtime,
                            &sha,
                        )?;
                        log(&c.remote, Ok(bytes))?;
                        pulled.fetched.push((format!("/{}/{}", c.folder, c.name), bytes));
                        let done = match &after {
                            sluice_core::connector::AfterPull::Keep => Ok(()),
                            sluice_core::connector::AfterPull::Remove => remote.remove(&c.remote).await,
                            sluice_core::connector::AfterPull::Move(dir) => {
                                let dir = if dir.starts_with('/') {
                                    dir.clone()
                                } else {
                                    client::remote_path(&connector.address.path, dir)
                                };
                                // Each folder's files into their own folder there, never over
                                // a file already in it.
                                let dir = match c.from_subfolder {
                                    true => client::remote_path(&dir, c.folder.as_str()),
                                    false => dir,
                                };
                                remote.archive(&c.remote, &dir, c.name.as_str()).await
                            }
                        };
                        if let Err(e) = done {
                            log(&c.remote, Err(&format!("fetched, but {}: {e}", after.as_text())))?;
                            pulled.after_failed.push((c.remote.clone(), e.to_string()));
                        }
                    }
                    Err(e) => {
                        // Said, and left for the next pull; the other files go on.
                        left.push((c.folder.clone(), c.name.as_str().to_ascii_lowercase()));
                        log(&c.remote, Err(&e.to_string()))?;
                        pulled.failed.push((c.remote.clone(), e.to_string()));
                    }
                }
            }
            remote.close().await;
            Ok::<_, PushFailure>(pulled)
        });
        if let Err(PushFailure::Connect(e)) = &outcome {
            // Connecting or listing failed: say so in the log too.
            let _ = log(&connector.address.path, Err(&e.to_string()));
        }
        outcome
    }

    /// The first of `left` (lowercase names of the manifest's folder left for the next pull)
    /// that the remote manifest `c` lists, read into the spool and parsed; `None` when it
    /// lists none of them, or cannot be read or parsed (its import then says what is wrong).
    async fn lists_one_of(
        &self,
        remote: &client::Remote,
        spool: &Path,
        c: &Candidate,
        left: &[&str],
    ) -> Option<String> {
        if c.size > sluice_core::manifest::MAX_MANIFEST_BYTES as u64 {
            return None;
        }
        std::fs::create_dir_all(spool).ok()?;
        let temporary = tempfile_in(spool).ok()?;
        let read = remote.download(&c.remote, &temporary, c.size).await;
        let bytes = std::fs::read(&temporary);
        let _ = std::fs::remove_file(&temporary);
        let manifest = sluice_core::manifest::Manifest::parse(&bytes.ok().filter(|_| read.is_ok())?).ok()?;
        manifest.entries.iter().find_map(|e| {
            let name = e.file.as_ref().ok()?.as_str().to_ascii_lowercase();
            left.contains(&name.as_str()).then_some(e.name.clone())
        })
    }

    /// Fetches one file into the spool, then puts it in the tenant's folder and records the
    /// upload. Returns its bytes and SHA-256.
    async fn land(
        &self,
        remote: &client::Remote,
        store: &dyn sluice_store::roles::Uploads,
        tenants_root: &Path,
        spool: &Path,
        tenant: &sluice_core::Tenant,
        c: &Candidate,
    ) -> Result<(u64, String), ConnectError> {
        let local_err = |path: &Path| {
            let path = path.display().to_string();
            move |e: std::io::Error| ConnectError::Local { path, why: e.to_string() }
        };
        std::fs::create_dir_all(spool).map_err(local_err(spool))?;
        let temporary = tempfile_in(spool).map_err(local_err(spool))?;
        let result = async {
            let (bytes, sha256) = remote.download(&c.remote, &temporary, c.size).await?;
            if bytes != c.size {
                return Err(ConnectError::Sftp {
                    address: remote.address().to_string(),
                    what: format!("fetching {}", c.remote),
                    why: format!("it changed while it was fetched ({} bytes listed, {bytes} read)", c.size),
                });
            }
            let size = bytes;
            let folder = tenants_root.join(tenant.name.as_str()).join(c.folder.as_str());
            std::fs::create_dir_all(&folder).map_err(local_err(&folder))?;
            let dest = folder.join(c.name.as_str());
            std::fs::rename(&temporary, &dest).map_err(local_err(&dest))?;
            let path = sluice_core::VirtualPath::resolve(format!("/{}/{}", c.folder, c.name).as_bytes())
                .map_err(|e| ConnectError::Local { path: dest.display().to_string(), why: e.to_string() })?;
            let event = sluice_core::UploadEvent {
                tenant: tenant.name.clone(),
                path,
                size,
                sha256: sha256.clone(),
                at_ms: sluice_store::now_ms(),
                snapshot: None,
            };
            store
                .record_upload(&event)
                .map_err(|e| ConnectError::Local { path: dest.display().to_string(), why: e.to_string() })?;
            Ok((size, sha256.as_str().to_owned()))
        }
        .await;
        let _ = std::fs::remove_file(&temporary);
        result
    }
}

/// A new, empty private file in `dir` for a download (its name: this process's tag, then
/// `pull-` and random digits; see `sluice_core::spool`).
fn tempfile_in(dir: &Path) -> std::io::Result<std::path::PathBuf> {
    use ring::rand::SecureRandom;
    use std::os::unix::fs::OpenOptionsExt;
    let mut random = [0u8; 8];
    ring::rand::SystemRandom::new().fill(&mut random).map_err(|_| std::io::Error::other("no randomness"))?;
    let path = dir.join(format!("{}.pull-{}", sluice_core::spool::owner_tag(), u64::from_le_bytes(random)));
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
    Ok(path)
}

/// The remote files a pull looks at for a tenant: `PATH/FOLDER/*` for each of its import
/// folders, and `PATH/NAME` for each of its types that requires the name `NAME`. Names that
/// are not plain file names here (or are a client's temporary names, or hidden) are skipped.
async fn candidates(
    remote: &client::Remote,
    connector: &sluice_core::connector::Connector,
    types: &sluice_core::import::ImportTypes,
    tenant: &sluice_core::Tenant,
) -> Result<Vec<Candidate>, ConnectError> {
    let base = &connector.address.path;
    // The connector's own folder must be there: a mistyped path pulled nothing, said "pulled
    // 0 files" and logged nothing, every night (its subfolders may be missing: a folder the
    // district does not use).
    if remote.list_if_there(base).await?.is_none() {
        return Err(ConnectError::Refused {
            address: remote.address().to_string(),
            what: format!("listing {base}"),
            why: "no such folder: check the connector's path (`sluice connector list`) with the district"
                .into(),
        });
    }
    let name_of = |n: &str| {
        // A name that was not UTF-8 reaches us with U+FFFD in it: it cannot be opened by that
        // name, so it is left alone.
        (!n.starts_with('.') && !n.contains('\u{FFFD}') && !sluice_core::is_transfer_temp_name(n))
            .then(|| sluice_core::FileName::parse(n).ok())
            .flatten()
    };
    let mut out = Vec::new();
    for folder in tenant.layout.import_folders() {
        let dir = client::remote_path(base, folder.as_str());
        for (n, size, mtime) in remote.list_if_there(&dir).await?.unwrap_or_default() {
            if let Some(name) = name_of(&n) {
                out.push(Candidate {
                    from_subfolder: true,
                    remote: client::remote_path(&dir, &n),
                    folder: folder.clone(),
                    name,
                    size,
                    mtime,
                });
            }
        }
    }
    let folders = tenant.layout.import_folders();
    let named: Vec<(&str, &sluice_core::FolderName)> = types
        .all()
        .iter()
        .filter_map(|t| Some((t.file_name.as_deref()?, t.folder.as_ref().filter(|f| folders.contains(f))?)))
        .collect();
    if !named.is_empty() {
        for (n, size, mtime) in remote.list_if_there(base).await?.unwrap_or_default() {
            let Some((_, folder)) = named.iter().find(|(required, _)| required.eq_ignore_ascii_case(&n))
            else {
                continue;
            };
            if let Some(name) = name_of(&n) {
                out.push(Candidate {
                    from_subfolder: false,
                    remote: client::remote_path(base, &n),
                    folder: (*folder).clone(),
                    name,
                    size,
                    mtime,
                });
            }
        }
    }
    Ok(out)
}
