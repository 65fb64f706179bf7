//! sluice as an SFTP client of a tenant's own server: russh for SSH (the host key checked
//! against the pinned one before any credential is sent), the SFTP protocol through
//! russh-sftp's raw session (requests pipelined by this module).

use crate::secrets::Credential;
use russh::client::{Handle, Handler};
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags};
use sluice_core::connector::{Connector, HostKey, SftpAddress};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long connecting, logging in and each SFTP request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// How a push's temporary files end (`.part`: a name upload watchers, sluice's too, skip).
const TEMPORARY_SUFFIX: &str = ".sluice.part";

/// 16 random hexadecimal digits.
fn random_tag() -> std::io::Result<String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    ring::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| std::io::Error::other("no randomness"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes in flight at once, and the size of each.
const WRITES_IN_FLIGHT: usize = 64;
const WRITE_LEN: usize = 32 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot reach {address}: {why}")]
    Unreachable { address: String, why: String },
    #[error(
        "the connector has no pinned host key, so nothing is sent to {address}: check the server's key \
         ({fingerprint}) with its administrator, then `sluice connector test TENANT NAME --accept` pins it"
    )]
    NotPinned { address: String, fingerprint: String },
    #[error(
        "the server at {address} presented host key {found}, not the pinned {expected}: refused, nothing was sent \
         or written. If the district changed its server's key, check the new one with them and pin it again \
         (`sluice connector test TENANT NAME --accept`)"
    )]
    HostKeyChanged { address: String, expected: String, found: String },
    #[error("the server at {address} presented a certificate; pin its plain host key instead")]
    Certificate { address: String },
    #[error("the server at {address} refused the login of {user} with the connector's {kind}")]
    LoginRefused { address: String, user: String, kind: &'static str },
    #[error("the connector's private key cannot be read: {0}")]
    BadPrivateKey(String),
    #[error("{address}: {what}: {why}")]
    Sftp { address: String, what: String, why: String },
    /// The server refused an operation in a way retrying will not change (a missing folder, a
    /// permission).
    #[error("{address}: {what}: {why}")]
    Refused { address: String, what: String, why: String },
    #[error("{address} did not answer within {secs} s ({what})")]
    Timeout { address: String, what: &'static str, secs: u64 },
    #[error("cannot read {path}: {why}")]
    Local { path: String, why: String },
}

/// The host-key check: records what the server presented, accepts it only if it is the
/// pinned one (or when probing, with nothing pinned and no credential to send).
struct Pin {
    pinned: Option<HostKey>,
    seen: Arc<Mutex<Option<Result<HostKey, ()>>>>,
}

impl Handler for Pin {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(Err(()));
            return Ok(false);
        };
        let Ok(bytes) = key.to_bytes() else { return Ok(false) };
        let seen = HostKey::from_wire(key.algorithm().as_str(), &bytes);
        let accepted = self.pinned.as_ref().is_none_or(|p| *p == seen);
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(Ok(seen));
        Ok(accepted)
    }
}

/// The client's configuration. With a pinned key, only its type is offered as host-key
/// algorithm (as OpenSSH does with a known host): a server with keys of several types then
/// presents the pinned one, not whichever it prefers.
fn config(pinned: Option<&HostKey>) -> Arc<russh::client::Config> {
    let mut preferred = russh::Preferred::default();
    if let Some(algorithm) = pinned.and_then(|k| k.algorithm.parse::<russh::keys::Algorithm>().ok()) {
        let offered: Vec<russh::keys::Algorithm> = match algorithm {
            russh::keys::Algorithm::Rsa { .. } => vec![
                russh::keys::Algorithm::Rsa { hash: Some(russh::keys::HashAlg::Sha512) },
                russh::keys::Algorithm::Rsa { hash: Some(russh::keys::HashAlg::Sha256) },
                russh::keys::Algorithm::Rsa { hash: None },
            ],
            other => vec![other],
        };
        preferred.key = offered.into();
    }
    Arc::new(russh::client::Config {
        inactivity_timeout: Some(Duration::from_secs(120)),
        keepalive_interval: Some(Duration::from_secs(15)),
        window_size: 8 * 1024 * 1024,
        nodelay: true,
        preferred,
        ..Default::default()
    })
}

async fn timed<T, E: std::fmt::Display>(
    address: &SftpAddress,
    what: &'static str,
    f: impl std::future::Future<Output = Result<T, E>>,
    err: impl FnOnce(String) -> ConnectError,
) -> Result<T, ConnectError> {
    match tokio::time::timeout(TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(err(e.to_string())),
        Err(_) => Err(ConnectError::Timeout { address: address.to_string(), what, secs: TIMEOUT.as_secs() }),
    }
}

/// Connects and returns the SSH handle with the key the server presented; `pinned`: refuse any
/// other key (`None`: accept it, for probing only).
async fn connect(address: &SftpAddress, pinned: Option<&HostKey>) -> Result<Handle<Pin>, ConnectError> {
    let seen = Arc::new(Mutex::new(None));
    let pin = Pin { pinned: pinned.cloned(), seen: seen.clone() };
    let target = (address.host.clone(), address.port);
    let connected = tokio::time::timeout(TIMEOUT, russh::client::connect(config(pinned), target, pin)).await;
    let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match (connected, seen, pinned) {
        (Ok(Ok(handle)), _, _) => Ok(handle),
        (_, Some(Err(())), _) => Err(ConnectError::Certificate { address: address.to_string() }),
        (_, Some(Ok(found)), Some(expected)) if found != *expected => Err(ConnectError::HostKeyChanged {
            address: address.to_string(),
            expected: expected.fingerprint(),
            found: found.fingerprint(),
        }),
        (Ok(Err(e)), _, _) => {
            Err(ConnectError::Unreachable { address: address.to_string(), why: e.to_string() })
        }
        (Err(_), _, _) => Err(ConnectError::Timeout {
            address: address.to_string(),
            what: "connecting",
            secs: TIMEOUT.as_secs(),
        }),
    }
}

/// The host key the server at `address` presents (nothing is sent but the SSH handshake);
/// `prefer`: asking for that key's type only, as the transfers do with a pinned key.
pub async fn probe(address: &SftpAddress, prefer: Option<&HostKey>) -> Result<HostKey, ConnectError> {
    let seen = Arc::new(Mutex::new(None));
    let pin = Pin { pinned: None, seen: seen.clone() };
    let target = (address.host.clone(), address.port);
    let connected = tokio::time::timeout(TIMEOUT, russh::client::connect(config(prefer), target, pin)).await;
    let found = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Ok(Ok(handle)) = connected {
        let _ = handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    }
    match found {
        Some(Ok(key)) => Ok(key),
        Some(Err(())) => Err(ConnectError::Certificate { address: address.to_string() }),
        None => Err(ConnectError::Unreachable {
            address: address.to_string(),
            why: "no SSH server answered".to_owned(),
        }),
    }
}

/// A logged-in SFTP session on the tenant's server.
pub struct Remote {
    address: SftpAddress,
    handle: Handle<Pin>,
    sftp: Arc<RawSftpSession>,
    extensions: HashMap<String, String>,
}

/// Connects to the connector's server (its pinned key only), logs in, starts SFTP.
pub async fn open(connector: &Connector, credential: &Credential) -> Result<Remote, ConnectError> {
    let address = &connector.address;
    let pinned = connector.host_key.as_ref().ok_or_else(|| ConnectError::NotPinned {
        address: address.to_string(),
        fingerprint: "unknown until `sluice connector test` shows it".to_owned(),
    })?;
    let mut handle = connect(address, Some(pinned)).await?;
    let refused =
        |kind| ConnectError::LoginRefused { address: address.to_string(), user: address.user.clone(), kind };
    let unreachable = |why: String| ConnectError::Unreachable { address: address.to_string(), why };
    let result = match credential {
        Credential::Password(p) => {
            timed(address, "logging in", handle.authenticate_password(&address.user, p.as_str()), unreachable)
                .await?
        }
        Credential::PrivateKey(pem) => {
            let key = russh::keys::decode_secret_key(pem, None)
                .map_err(|e| ConnectError::BadPrivateKey(e.to_string()))?;
            let hash =
                timed(address, "logging in", handle.best_supported_rsa_hash(), unreachable).await?.flatten();
            let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
            timed(address, "logging in", handle.authenticate_publickey(&address.user, key), unreachable)
                .await?
        }
    };
    if !result.success() {
        return Err(refused(credential.kind().in_words()));
    }
    let sftp_err = |what: &str| {
        let what = what.to_owned();
        move |why: String| ConnectError::Sftp { address: address.to_string(), what: what.clone(), why }
    };
    let channel =
        timed(address, "opening a channel", handle.channel_open_session(), sftp_err("opening a session"))
            .await?;
    timed(address, "starting SFTP", channel.request_subsystem(true, "sftp"), sftp_err("starting SFTP"))
        .await?;
    let sftp = RawSftpSession::new(channel.into_stream());
    sftp.set_timeout(TIMEOUT.as_secs());
    let version = timed(address, "starting SFTP", sftp.init(), sftp_err("starting SFTP")).await?;
    Ok(Remote { address: address.clone(), handle, sftp: Arc::new(sftp), extensions: version.extensions })
}

/// A remote file name joined to a remote folder.
pub fn remote_path(folder: &str, name: &str) -> String {
    format!("{}/{name}", folder.trim_end_matches('/'))
}

fn ssh_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl Remote {
    /// An SFTP failure as a `ConnectError`: a missing file or folder, a refused permission or
    /// an unsupported operation will not go away by retrying (`Refused`).
    fn failed(
        &self,
        what: impl Into<String>,
    ) -> impl FnOnce(russh_sftp::client::error::Error) -> ConnectError + '_ {
        use russh_sftp::protocol::StatusCode;
        let what = what.into();
        move |e| match e {
            russh_sftp::client::error::Error::Status(s) => {
                let why = match s.status_code {
                    StatusCode::NoSuchFile => "no such file or folder".to_owned(),
                    StatusCode::PermissionDenied => "permission denied".to_owned(),
                    StatusCode::OpUnsupported => "the server does not support it".to_owned(),
                    StatusCode::Failure if s.error_message.is_empty() => "the server refused".to_owned(),
                    other => format!("{other:?}"),
                };
                let why = match s.error_message.trim() {
                    "" => why,
                    m if m.eq_ignore_ascii_case(&why) => why,
                    m => format!("{why} ({m})"),
                };
                let permanent = matches!(
                    s.status_code,
                    StatusCode::NoSuchFile | StatusCode::PermissionDenied | StatusCode::OpUnsupported
                );
                if permanent {
                    ConnectError::Refused { address: self.address.to_string(), what, why }
                } else {
                    ConnectError::Sftp { address: self.address.to_string(), what, why }
                }
            }
            other => ConnectError::Sftp { address: self.address.to_string(), what, why: other.to_string() },
        }
    }

    /// The folder's entries (regular files only): name, size, modification time (seconds).
    pub async fn list(&self, folder: &str) -> Result<Vec<(String, u64, u32)>, ConnectError> {
        let handle =
            self.sftp.opendir(folder).await.map_err(self.failed(format!("listing {folder}")))?.handle;
        let mut out = Vec::new();
        loop {
            match self.sftp.readdir(handle.as_str()).await {
                Ok(name) => {
                    for f in name.files {
                        let regular = f.attrs.permissions.is_none_or(|p| p & 0o170000 == 0o100000);
                        if regular && f.filename != "." && f.filename != ".." {
                            out.push((f.filename, f.attrs.size.unwrap_or(0), f.attrs.mtime.unwrap_or(0)));
                        }
                    }
                }
                Err(russh_sftp::client::error::Error::Status(s))
                    if s.status_code == russh_sftp::protocol::StatusCode::Eof =>
                {
                    break;
                }
                Err(e) => {
                    let _ = self.sftp.close(handle.as_str()).await;
                    return Err(self.failed(format!("listing {folder}"))(e));
                }
            }
        }
        let _ = self.sftp.close(handle.as_str()).await;
        Ok(out)
    }

    /// The server's address.
    pub fn address(&self) -> &SftpAddress {
        &self.address
    }

    /// The folder's regular files, or `None` when there is no such folder.
    pub async fn list_if_there(&self, folder: &str) -> Result<Option<Vec<(String, u64, u32)>>, ConnectError> {
        match self.sftp.stat(folder).await {
            Err(russh_sftp::client::error::Error::Status(s))
                if s.status_code == russh_sftp::protocol::StatusCode::NoSuchFile =>
            {
                Ok(None)
            }
            Err(e) => Err(self.failed(format!("looking at {folder}"))(e)),
            Ok(attrs) if attrs.attrs.permissions.is_some_and(|p| p & 0o170000 != 0o040000) => Ok(None),
            Ok(_) => self.list(folder).await.map(Some),
        }
    }

    /// Downloads `remote` into `local` (created or truncated), reads pipelined; returns the
    /// bytes written and their SHA-256 (hashed in order as the reads complete: no second pass).
    /// `expected`: the size the listing gave (reads are issued up to it, and on to the end of
    /// the file).
    pub async fn download(
        &self,
        remote: &str,
        local: &Path,
        expected: u64,
    ) -> Result<(u64, sluice_core::Sha256Hex), ConnectError> {
        use sha2::Digest;
        use std::os::unix::fs::FileExt;
        let local_err =
            |e: std::io::Error| ConnectError::Local { path: local.display().to_string(), why: e.to_string() };
        let file = std::fs::File::create(local).map_err(local_err)?;
        let handle = self
            .sftp
            .open(remote, OpenFlags::READ, FileAttributes::default())
            .await
            .map_err(self.failed(format!("opening {remote}")))?
            .handle;
        let mut inflight = tokio::task::JoinSet::new();
        let (mut next, mut end, mut eof) = (0u64, 0u64, false);
        // Chunks that arrived ahead of the hash, by offset (at most the reads in flight).
        let mut hasher = sha2::Sha256::new();
        let (mut hashed, mut ahead) = (0u64, std::collections::BTreeMap::<u64, Vec<u8>>::new());
        let outcome: Result<(), ConnectError> = async {
            loop {
                // Reads stop at the listed size (and one read past it, to see the end); the
                // chunks kept for the hash are bounded too.
                while !eof
                    && inflight.len() < WRITES_IN_FLIGHT
                    && ahead.len() < 2 * WRITES_IN_FLIGHT
                    && (next < expected || (inflight.is_empty() && next <= expected))
                {
                    let (sftp, h, at) = (self.sftp.clone(), handle.clone(), next);
                    inflight.spawn(async move {
                        (at, WRITE_LEN as u32, sftp.read(h, at, WRITE_LEN as u32).await)
                    });
                    next += WRITE_LEN as u64;
                }
                let Some(done) = inflight.join_next().await else { break };
                let (at, asked, result) = done.map_err(|e| ConnectError::Sftp {
                    address: self.address.to_string(),
                    what: format!("reading {remote}"),
                    why: e.to_string(),
                })?;
                match result {
                    Ok(data) => {
                        let got = data.data.len() as u64;
                        if at + got > expected {
                            return Err(ConnectError::Sftp {
                                address: self.address.to_string(),
                                what: format!("reading {remote}"),
                                why: format!("it grew past the {expected} bytes listed while it was fetched"),
                            });
                        }
                        file.write_all_at(&data.data, at).map_err(local_err)?;
                        end = end.max(at + got);
                        if got > 0 {
                            ahead.insert(at, data.data);
                        }
                        while let Some(chunk) = ahead.remove(&hashed) {
                            hasher.update(&chunk);
                            hashed += chunk.len() as u64;
                        }
                        if got > 0 && got < u64::from(asked) {
                            // A short read: ask for the rest of that range.
                            let (sftp, h, rest) = (self.sftp.clone(), handle.clone(), asked - got as u32);
                            inflight
                                .spawn(async move { (at + got, rest, sftp.read(h, at + got, rest).await) });
                        }
                    }
                    Err(russh_sftp::client::error::Error::Status(s))
                        if s.status_code == russh_sftp::protocol::StatusCode::Eof =>
                    {
                        eof = true;
                    }
                    Err(e) => return Err(self.failed(format!("reading {remote}"))(e)),
                }
            }
            Ok(())
        }
        .await;
        let _ = self.sftp.close(handle.as_str()).await;
        outcome?;
        file.sync_all().map_err(local_err)?;
        if hashed != end || !ahead.is_empty() {
            return Err(ConnectError::Sftp {
                address: self.address.to_string(),
                what: format!("reading {remote}"),
                why: format!(
                    "the server's answers left a gap in the file (read {end} bytes, {hashed} in order)"
                ),
            });
        }
        let digest: [u8; 32] = hasher.finalize().into();
        Ok((end, sluice_core::Sha256Hex::from_digest(&digest)))
    }

    /// Removes a remote file.
    pub async fn remove(&self, path: &str) -> Result<(), ConnectError> {
        self.sftp.remove(path).await.map(|_| ()).map_err(self.failed(format!("removing {path}")))
    }

    /// Moves a pulled remote file into `folder` (made if missing), never over a file already
    /// there (a plain SFTP rename, which refuses an existing name).
    pub async fn archive(&self, from: &str, folder: &str, name: &str) -> Result<(), ConnectError> {
        // The folder and each of its parents (`archive/2026/students`), those missing made; one
        // that exists answers an error, ignored: an error that matters shows in the rename.
        let mut at = String::new();
        for part in folder.split('/').filter(|p| !p.is_empty()) {
            if folder.starts_with('/') || !at.is_empty() {
                at.push('/');
            }
            at.push_str(part);
            let _ = self.sftp.mkdir(at.as_str(), FileAttributes::default()).await;
        }
        let to = remote_path(folder, name);
        self.sftp
            .rename(from, to.as_str())
            .await
            .map(|_| ())
            .map_err(self.failed(format!("moving {from} to {to}")))
    }

    /// Removes the temporary files earlier pushes of `name` left in `folder` (best effort).
    async fn remove_leftovers(&self, folder: &str, name: &str) {
        let prefix = format!(".{name}.");
        if let Ok(entries) = self.list_any(folder).await {
            for entry in
                entries.into_iter().filter(|n| n.starts_with(&prefix) && n.ends_with(TEMPORARY_SUFFIX))
            {
                let _ = self.sftp.remove(remote_path(folder, &entry)).await;
            }
        }
    }

    /// Every name in the folder (links and other kinds included).
    async fn list_any(&self, folder: &str) -> Result<Vec<String>, ConnectError> {
        let handle =
            self.sftp.opendir(folder).await.map_err(self.failed(format!("listing {folder}")))?.handle;
        let mut out = Vec::new();
        while let Ok(name) = self.sftp.readdir(handle.as_str()).await {
            out.extend(name.files.into_iter().map(|f| f.filename));
        }
        let _ = self.sftp.close(handle.as_str()).await;
        Ok(out)
    }

    /// Uploads `local` into `folder` as `name`: written to a fresh temporary name
    /// (`.NAME.RANDOM.sluice.part`, a name upload watchers skip)
    /// and renamed when whole (posix-rename where the server offers it, so an existing file is
    /// replaced in one step), unless `rename` is off; its size checked on the server. Returns
    /// the bytes written.
    pub async fn upload(
        &self,
        local: &Path,
        folder: &str,
        name: &str,
        rename: bool,
    ) -> Result<u64, ConnectError> {
        let local_err =
            |e: std::io::Error| ConnectError::Local { path: local.display().to_string(), why: e.to_string() };
        // Read in place: the runtime is this transfer's own, and the file is local.
        let mut file = std::fs::File::open(local).map_err(local_err)?;
        let size = file.metadata().map_err(local_err)?.len();
        let last = remote_path(folder, name);
        // A fresh random temporary name, created exclusively: a file or link someone left under
        // a predictable name is never written through. Those an interrupted push of this file
        // left are removed first (removing a link removes the link, not what it names).
        let (written_to, flags) = if rename {
            self.remove_leftovers(folder, name).await;
            let tag = random_tag().map_err(local_err)?;
            let temporary = remote_path(folder, &format!(".{name}.{tag}{TEMPORARY_SUFFIX}"));
            (temporary, OpenFlags::CREATE | OpenFlags::EXCLUDE | OpenFlags::WRITE)
        } else {
            (last.clone(), OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE)
        };
        let handle = self
            .sftp
            .open(written_to.as_str(), flags, FileAttributes::default())
            .await
            .map_err(self.failed(format!("creating {written_to}")))?
            .handle;
        let mut inflight = tokio::task::JoinSet::new();
        let mut offset = 0u64;
        let outcome: Result<(), ConnectError> = async {
            loop {
                let mut chunk = vec![0u8; WRITE_LEN];
                let n = read_full(&mut file, &mut chunk).map_err(local_err)?;
                if n == 0 {
                    break;
                }
                chunk.truncate(n);
                while inflight.len() >= WRITES_IN_FLIGHT {
                    self.written(inflight.join_next().await, &written_to)?;
                }
                let (sftp, h, at) = (self.sftp.clone(), handle.clone(), offset);
                inflight.spawn(async move { sftp.write(h, at, chunk).await });
                offset += n as u64;
            }
            while !inflight.is_empty() {
                self.written(inflight.join_next().await, &written_to)?;
            }
            Ok(())
        }
        .await;
        let closed = self.sftp.close(handle.as_str()).await;
        if let Err(e) = outcome {
            inflight.abort_all();
            // What was written goes, under its final name too (`--no-rename`): a part of the
            // file there would be read as the file (a full disk left 8 KiB of 54 under the
            // final name; found by a newcomer's walk). A dropped connection cannot remove it:
            // the retry writes it whole over it.
            let _ = self.sftp.remove(written_to.as_str()).await;
            return Err(e);
        }
        // A full disk may show only at the close: what was written goes then too.
        if let Err(e) = closed {
            let _ = self.sftp.remove(written_to.as_str()).await;
            return Err(self.failed(format!("closing {written_to}"))(e));
        }
        let attrs = self
            .sftp
            .stat(written_to.as_str())
            .await
            .map_err(self.failed(format!("checking {written_to}")))?;
        let there = attrs.attrs.size.unwrap_or(u64::MAX);
        if there != size || offset != size {
            let _ = self.sftp.remove(written_to.as_str()).await;
            return Err(ConnectError::Sftp {
                address: self.address.to_string(),
                what: format!("checking {written_to}"),
                why: format!("the server holds {there} bytes of the {size} sent"),
            });
        }
        if rename && let Err(e) = self.replace(&written_to, &last).await {
            let _ = self.sftp.remove(written_to.as_str()).await;
            return Err(e);
        }
        Ok(size)
    }

    fn written(
        &self,
        done: Option<
            Result<
                Result<russh_sftp::protocol::Status, russh_sftp::client::error::Error>,
                tokio::task::JoinError,
            >,
        >,
        path: &str,
    ) -> Result<(), ConnectError> {
        match done {
            Some(Ok(Ok(_))) | None => Ok(()),
            Some(Ok(Err(e))) => Err(self.failed(format!("writing {path}"))(e)),
            Some(Err(e)) => Err(ConnectError::Sftp {
                address: self.address.to_string(),
                what: format!("writing {path}"),
                why: e.to_string(),
            }),
        }
    }

    /// Renames `from` over `to`: posix-rename@openssh.com when offered (one step), else a plain
    /// rename, removing an existing `to` first if the server will not replace it.
    async fn replace(&self, from: &str, to: &str) -> Result<(), ConnectError> {
        if self.extensions.get("posix-rename@openssh.com").is_some_and(|v| v == "1") {
            let mut data = Vec::new();
            ssh_string(&mut data, from);
            ssh_string(&mut data, to);
            return match self.sftp.extended("posix-rename@openssh.com", data).await {
                Ok(russh_sftp::protocol::Packet::Status(s))
                    if s.status_code == russh_sftp::protocol::StatusCode::Ok =>
                {
                    Ok(())
                }
                Ok(russh_sftp::protocol::Packet::Status(s)) => Err(self
                    .failed(format!("renaming {from} to {to}"))(
                    russh_sftp::client::error::Error::Status(s),
                )),
                Ok(_) => Err(ConnectError::Sftp {
                    address: self.address.to_string(),
                    what: format!("renaming {from} to {to}"),
                    why: "the server answered with something else than a status".to_owned(),
                }),
                Err(e) => Err(self.failed(format!("renaming {from} to {to}"))(e)),
            };
        }
        if self.sftp.rename(from, to).await.is_ok() {
            return Ok(());
        }
        let _ = self.sftp.remove(to).await;
        self.sftp.rename(from, to).await.map(|_| ()).map_err(self.failed(format!("renaming {from} to {to}")))
    }

    pub async fn close(self) {
        let _ = self.handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    }
}

fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read;
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
