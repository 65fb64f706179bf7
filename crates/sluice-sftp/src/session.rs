//! One SFTP session: a reader task, a processor and a writer, joined by queues.
//!
//! russh delivers channel data through a bounded queue and blocks its whole connection loop
//! (including window adjustments) while that queue is full. A serial "read request, write
//! reply" loop therefore deadlocks as soon as a reply waits for window while the client keeps
//! pipelining requests (paramiko's prefetch, OpenSSH's 64 outstanding reads). So:
//!
//! * the reader only drains the channel and splits packets; it never waits on a reply. Its
//!   queue is bounded by bytes (a semaphore), large enough for any sane pipelining client;
//! * the processor executes requests in order (plain pread/pwrite on std files);
//! * the writer sends replies, batching small ones, and is the only part that waits for the
//!   client's window.

use crate::fs::{
    FsError, FsResult, TenantTree, digest_hex, dir_attrs, file_attrs, hash_file, long_name, rename_no_replace,
};
use crate::protocol::{self, Attrs, Packet, Request, StatusCode, msg, open_flags, status};
use bytes::{Bytes, BytesMut};
use russh::ChannelMsg;
use russh::server::Msg;
use russh::{ChannelReadHalf, ChannelWriteHalf};
use sha2::{Digest, Sha256};
use sluice_core::{Node, Operation, Sha256Hex, TenantName, UploadEvent, VirtualPath, is_transfer_temp_name};
use sluice_store::Store;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tracing::{debug, info, warn};

/// Limits of one SFTP session.
#[derive(Debug, Clone)]
pub struct SftpLimits {
    /// Largest file a client may upload.
    pub max_upload_bytes: u64,
    /// Open file and directory handles per session.
    pub max_handles: usize,
    /// Bytes of queued request payload (uploads' data) before the reader stops draining the
    /// channel. Bounds a session's memory when the disk is slower than the network.
    pub queue_budget_bytes: usize,
    /// Requests queued before the reader stops draining the channel. Large, because a READ
    /// costs ~100 bytes and pipelining clients (paramiko's prefetch) send one per 32 KiB of
    /// the file up front: pausing while they wait for replies would deadlock the session.
    pub queue_budget_requests: usize,
}

impl Default for SftpLimits {
    fn default() -> Self {
        Self {
            max_upload_bytes: 10 << 30,
            max_handles: 256,
            queue_budget_bytes: 4 << 20,
            queue_budget_requests: 1 << 18,
        }
    }
}

/// Everything a session needs, shared by all sessions of a server.
pub struct SftpShared {
    pub store: Arc<Store>,
    /// `DATA_DIR/spool/uploads`: bytes in flight, outside every tenant's tree.
    pub spool: PathBuf,
    pub limits: SftpLimits,
    /// Woken after every recorded upload event.
    pub uploaded: Arc<Notify>,
    /// Sessions, failed logins, uploads and their bytes, for `/metrics`.
    pub metrics: Arc<sluice_core::metrics::Metrics>,
}

/// Released when the processor is done with a request.
type QueuePermit = (OwnedSemaphorePermit, OwnedSemaphorePermit);

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Part of every spool file's name, so that two servers sharing a spool never collide.
fn process_id() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// Serves SFTP on a channel until the client closes it.
pub async fn run(
    shared: Arc<SftpShared>,
    tenant: TenantName,
    tree: TenantTree,
    mut read: ChannelReadHalf,
    write: ChannelWriteHalf<Msg>,
) {
    let byte_budget = Arc::new(Semaphore::new(shared.limits.queue_budget_bytes));
    let request_budget = Arc::new(Semaphore::new(shared.limits.queue_budget_requests));
    let (req_tx, mut req_rx) = mpsc::unbounded_channel::<(Bytes, QueuePermit)>();
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(256);

    let reader = tokio::spawn(async move {
        let mut splitter = protocol::PacketSplitter::default();
        let mut packets = Vec::new();
        while let Some(m) = read.wait().await {
            match m {
                ChannelMsg::Data { data } => {
                    if let Err(e) = splitter.feed(data, &mut packets) {
                        warn!("closing SFTP session: {e}");
                        return;
                    }
                    for packet in packets.drain(..) {
                        // Small requests cost only a request slot; big ones (writes) also bytes.
                        let bytes = if packet.len() > 1024 { packet.len().min(1 << 20) as u32 } else { 0 };
                        let (Ok(slot), Ok(data)) = (
                            request_budget.clone().acquire_owned().await,
                            byte_budget.clone().acquire_many_owned(bytes).await,
                        ) else {
                            return;
                        };
                        if req_tx.send((packet, (slot, data))).is_err() {
                            return;
                        }
                    }
                }
                ChannelMsg::Eof | ChannelMsg::Close => return,
                _ => {}
            }
        }
    });

    let writer = tokio::spawn(async move {
        // Small replies (status, handles, attrs) are batched into one channel write.
        while let Some(first) = out_rx.recv().await {
            let data = if first.len() >= 16 * 1024 {
                first
            } else {
                let mut batch = BytesMut::from(&first[..]);
                while batch.len() < 64 * 1024 {
                    match out_rx.try_recv() {
                        Ok(next) => batch.extend_from_slice(&next),
                        Err(_) => break,
                    }
                }
                batch.freeze()
            };
            if write.data_bytes(data).await.is_err() {
                return;
            }
        }
        let _ = write.eof().await;
        let _ = write.close().await;
    });

    let mut processor = Processor {
        shared,
        owner: tenant.to_string(),
        tenant,
        tree,
        handles: HashMap::new(),
        next_handle: 1,
        initialized: false,
        temp_uploads: HashMap::new(),
    };
    while let Some((packet, permit)) = req_rx.recv().await {
        let request = match Request::decode(packet) {
            Ok(r) => r,
            Err(e) => {
                warn!(tenant = %processor.tenant, "closing SFTP session: malformed packet: {e}");
                break;
            }
        };
        let reply = processor.handle(request).await;
        drop(permit);
        if let Some(bytes) = reply
            && out_tx.send(bytes).await.is_err()
        {
            break;
        }
    }
    reader.abort();
    drop(out_tx);
    let _ = writer.await;
    // Dropping the processor drops unfinished uploads, which removes their temporary files.
    debug!(tenant = %processor.tenant, "SFTP session ended");
}

enum Handle {
    Read { file: File },
    Write(Box<Upload>),
    Dir { entries: Vec<(String, Attrs)>, pos: usize },
}

/// A file being uploaded: written to the spool, moved into place on a successful close.
struct Upload {
    file: File,
    temp: PathBuf,
    target: PathBuf,
    vpath: VirtualPath,
    append: bool,
    hasher: Sha256,
    hashed_to: u64,
    in_order: bool,
    failed: Option<String>,
    committed: bool,
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

impl Upload {
    fn write(&mut self, offset: u64, data: &[u8], max: u64) -> Result<(), String> {
        if let Some(reason) = &self.failed {
            return Err(reason.clone());
        }
        let offset =
            if self.append { self.file.metadata().map(|m| m.len()).unwrap_or(offset) } else { offset };
        if offset.saturating_add(data.len() as u64) > max {
            let reason = format!("upload exceeds the {max}-byte limit for one file");
            self.failed = Some(reason.clone());
            return Err(reason);
        }
        if let Err(e) = self.file.write_all_at(data, offset) {
            let reason = format!("writing failed on the server ({})", e.kind());
            warn!(path = %self.vpath, "upload write failed: {e}");
            self.failed = Some(reason.clone());
            return Err(reason);
        }
        if self.in_order && offset == self.hashed_to {
            self.hasher.update(data);
            self.hashed_to += data.len() as u64;
        } else {
            self.in_order = false;
        }
        Ok(())
    }

    /// Writes that arrived in order, from offset 0 without gaps or overlaps, were hashed as
    /// they came and the file is exactly `hashed_to` bytes long.
    fn hashed_in_full(&self) -> bool {
        self.in_order
    }

    /// Moves the finished file into place; returns its size and digest.
    fn commit(mut self) -> Result<(u64, Sha256Hex), FsError> {
        if let Some(reason) = self.failed.take() {
            return Err(FsError::Refused(format!("{}: {reason}; nothing was stored", self.vpath)));
        }
        let (size, sha) = if self.hashed_in_full() {
            (self.hashed_to, digest_hex(self.hasher.clone()))
        } else {
            hash_file(&self.temp).map_err(|e| FsError::io("finishing the upload", e))?
        };
        std::fs::rename(&self.temp, &self.target).map_err(|e| FsError::io("finishing the upload", e))?;
        self.committed = true;
        Ok((size, sha))
    }
}

struct Processor {
    shared: Arc<SftpShared>,
    tenant: TenantName,
    owner: String,
    tree: TenantTree,
    handles: HashMap<u32, Handle>,
    next_handle: u32,
    initialized: bool,
    /// Size and digest of files closed under a client's temporary name, so the rename to
    /// the final name can be recorded without hashing the file again.
    temp_uploads: HashMap<VirtualPath, (u64, Sha256Hex)>,
}

type Reply = Result<Bytes, FsError>;

fn ok(id: u32) -> Reply {
    Ok(status(id, StatusCode::Ok, "OK"))
}

impl Processor {
    async fn handle(&mut self, request: Request) -> Option<Bytes> {
        if let Request::Init { version } = request {
            debug!(tenant = %self.tenant, version, "SFTP init");
            self.initialized = true;
            return Some(protocol::version_reply());
        }
        let id = request.id()?;
        if !self.initialized {
            return Some(status(id, StatusCode::BadMessage, "SSH_FXP_INIT must come first"));
        }
        let reply = self.dispatch(id, request).await;
        Some(reply.unwrap_or_else(|e| {
            if let FsError::Io { .. } = e {
                warn!(tenant = %self.tenant, "SFTP request failed: {e}");
            } else {
                debug!(tenant = %self.tenant, "SFTP request refused: {e}");
            }
            status(id, e.status(), &e.client_message())
        }))
    }

    fn resolve(&self, raw: &[u8]) -> FsResult<VirtualPath> {
        Ok(VirtualPath::resolve(raw)?)
    }

    async fn dispatch(&mut self, id: u32, request: Request) -> Reply {
        match request {
            Request::Init { .. } => Ok(status(id, StatusCode::BadMessage, "unexpected SSH_FXP_INIT")),
            Request::Realpath { path, .. } => {
                let p = self.resolve(&path)?.to_string();
                let mut packet = Packet::new(msg::NAME, Some(id), 64 + 2 * p.len());
                packet.u32(1).string(p.as_bytes()).string(p.as_bytes()).attrs(&Attrs::default());
                Ok(packet.finish())
            }
            Request::Stat { path, .. } | Request::Lstat { path, .. } => {
                let attrs = self.tree.stat(&self.resolve(&path)?)?;
                Ok(attrs_reply(id, &attrs))
            }
            Request::Fstat { handle, .. } => {
                let attrs = match self.handle_mut(&handle)? {
                    Handle::Read { file } => {
                        file_attrs(&file.metadata().map_err(|e| FsError::io("stat", e))?, true)
                    }
                    Handle::Write(u) => {
                        file_attrs(&u.file.metadata().map_err(|e| FsError::io("stat", e))?, true)
                    }
                    Handle::Dir { .. } => dir_attrs(false, None),
                };
                Ok(attrs_reply(id, &attrs))
            }
            Request::Opendir { path, .. } => {
                let path = self.resolve(&path)?;
                let entries = self.tree.list(&path)?;
                self.new_handle(id, Handle::Dir { entries, pos: 0 })
            }
            Request::Readdir { handle, .. } => {
                let owner = self.owner.clone();
                let Handle::Dir { entries, pos } = self.handle_mut(&handle)? else {
                    return Err(FsError::Refused("handle is not a directory".into()));
                };
                if *pos >= entries.len() {
                    return Ok(status(id, StatusCode::Eof, "end of directory"));
                }
                let now = sluice_store::now_ms() / 1000;
                let batch = &entries[*pos..entries.len().min(*pos + 128)];
                *pos += batch.len();
                let mut packet = Packet::new(msg::NAME, Some(id), batch.len() * 128);
                packet.u32(batch.len() as u32);
                for (name, attrs) in batch {
                    packet
                        .string(name.as_bytes())
                        .string(long_name(name, attrs, &owner, now).as_bytes())
                        .attrs(attrs);
                }
                Ok(packet.finish())
            }
            Request::Open { path, flags, .. } => {
                let path = self.resolve(&path)?;
                let writes = open_flags::WRITE | open_flags::APPEND | open_flags::CREAT | open_flags::TRUNC;
                if flags & writes != 0 {
                    let upload = self.start_upload(path, flags)?;
                    self.new_handle(id, Handle::Write(Box::new(upload)))
                } else {
                    let file = self.tree.open_read(&path)?;
                    self.new_handle(id, Handle::Read { file })
                }
            }
            Request::Read { handle, offset, len, .. } => {
                let file = match self.handle_mut(&handle)? {
                    Handle::Read { file } => &*file,
                    Handle::Write(u) => &u.file,
                    Handle::Dir { .. } => return Err(FsError::Refused("handle is a directory".into())),
                };
                let len = len.min(protocol::MAX_DATA) as usize;
                let mut packet = Packet::new(msg::DATA, Some(id), len + 4);
                let n = packet
                    .string_with(len, |buf| read_full_at(file, buf, offset))
                    .map_err(|e| FsError::io("reading", e))?;
                if n == 0 && len > 0 {
                    return Ok(status(id, StatusCode::Eof, "end of file"));
                }
                Ok(packet.finish())
            }
            Request::Write { handle, offset, data, .. } => {
                let max = self.shared.limits.max_upload_bytes;
                let Handle::Write(upload) = self.handle_mut(&handle)? else {
                    return Err(FsError::Refused("file was not opened for writing".into()));
                };
                upload.write(offset, &data, max).map_err(FsError::Refused)?;
                ok(id)
            }
            Request::Close { handle, .. } => {
                let key = handle_key(&handle).ok_or_else(bad_handle)?;
                match self.handles.remove(&key).ok_or_else(bad_handle)? {
                    Handle::Write(upload) => {
                        self.finish_upload(*upload).await.map(|()| status(id, StatusCode::Ok, "OK"))
                    }
                    Handle::Read { .. } | Handle::Dir { .. } => ok(id),
                }
            }
            Request::Setstat { path, .. } => {
                let path = self.resolve(&path)?;
                self.tree.layout.check(Operation::SetAttributes, &path)?;
                // Files exist or not; their permissions and times are sluice's to keep.
                self.tree.stat(&path)?;
                ok(id)
            }
            Request::Fsetstat { handle, .. } => {
                self.handle_mut(&handle)?;
                ok(id)
            }
            Request::Fsync { handle, .. } => {
                if let Handle::Write(upload) = self.handle_mut(&handle)? {
                    upload.file.sync_all().map_err(|e| FsError::io("fsync", e))?;
                }
                ok(id)
            }
            Request::Remove { path, .. } => {
                let path = self.resolve(&path)?;
                self.tree.layout.check(Operation::Remove, &path)?;
                self.tree.stat(&path)?;
                let real = self.tree.real_path(&path).ok_or_else(|| FsError::NotFound(path.to_string()))?;
                std::fs::remove_file(real).map_err(|e| FsError::io(format!("removing {path}"), e))?;
                info!(tenant = %self.tenant, %path, "file removed by client");
                ok(id)
            }
            Request::Mkdir { path, .. } => self.refuse(Operation::MakeDir, &path),
            Request::Rmdir { path, .. } => self.refuse(Operation::RemoveDir, &path),
            Request::Symlink { link, .. } => self.refuse(Operation::Symlink, &link),
            Request::Readlink { path, .. } => {
                let path = self.resolve(&path)?;
                Err(FsError::NotFound(format!("{path} (symbolic links are not supported)")))
            }
            Request::Rename { from, to, .. } => self.rename(id, &from, &to, false).await,
            Request::PosixRename { from, to, .. } => self.rename(id, &from, &to, true).await,
            Request::Limits { .. } => Ok(protocol::limits_reply(id, self.shared.limits.max_handles as u64)),
            Request::Unsupported { what, .. } => {
                Ok(status(id, StatusCode::OpUnsupported, &format!("{what} is not supported by sluice")))
            }
        }
    }

    fn refuse(&self, op: Operation, raw: &[u8]) -> Reply {
        let path = self.resolve(raw)?;
        self.tree.layout.check(op, &path)?;
        Err(FsError::Refused("operation not permitted".into()))
    }

    fn new_handle(&mut self, id: u32, handle: Handle) -> Reply {
        if self.handles.len() >= self.shared.limits.max_handles {
            return Err(FsError::Refused(format!(
                "too many open files (limit {}); close some first",
                self.shared.limits.max_handles
            )));
        }
        let key = self.next_handle;
        self.next_handle = self.next_handle.wrapping_add(1);
        self.handles.insert(key, handle);
        let mut packet = Packet::new(msg::HANDLE, Some(id), 8);
        packet.string(format!("h{key}").as_bytes());
        Ok(packet.finish())
    }

    fn handle_mut(&mut self, raw: &[u8]) -> FsResult<&mut Handle> {
        let key = handle_key(raw).ok_or_else(bad_handle)?;
        self.handles.get_mut(&key).ok_or_else(bad_handle)
    }

    fn start_upload(&self, path: VirtualPath, flags: u32) -> FsResult<Upload> {
        self.tree.layout.check(Operation::Write, &path)?;
        let target = self.tree.real_path(&path).ok_or_else(|| FsError::NotFound(path.to_string()))?;
        let existing = std::fs::symlink_metadata(&target).ok();
        if let Some(meta) = &existing {
            if !meta.file_type().is_file() {
                return Err(FsError::Refused(format!("{path} cannot be overwritten")));
            }
            if flags & open_flags::EXCL != 0 {
                return Err(FsError::Exists(path.to_string()));
            }
        } else if flags & open_flags::CREAT == 0 {
            return Err(FsError::NotFound(path.to_string()));
        }
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = self.shared.spool.join(format!("{}-{}-{n}.upload", self.tenant, process_id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| FsError::io("starting the upload", e))?;
        let mut upload = Upload {
            file,
            temp,
            target,
            vpath: path,
            append: flags & open_flags::APPEND != 0,
            hasher: Sha256::new(),
            hashed_to: 0,
            in_order: true,
            failed: None,
            committed: false,
        };
        // Without TRUNC a client writes into the existing file (resume, partial update):
        // start the temporary copy from its current content.
        if existing.is_some() && flags & open_flags::TRUNC == 0 {
            let mut src = self.tree.open_read(&upload.vpath)?;
            io::copy(&mut src, &mut upload.file).map_err(|e| FsError::io("starting the upload", e))?;
            upload.in_order = false;
        }
        Ok(upload)
    }

    async fn finish_upload(&mut self, upload: Upload) -> FsResult<()> {
        let vpath = upload.vpath.clone();
        // The usual upload was hashed as it arrived: finishing is an fstat and a rename.
        // Only out-of-order writes need the file read again, which is done off the runtime.
        let (size, sha) = if upload.hashed_in_full() {
            upload.commit()?
        } else {
            tokio::task::spawn_blocking(move || upload.commit())
                .await
                .map_err(|e| FsError::io("finishing the upload", io::Error::other(e)))??
        };
        let name = vpath.file_name().unwrap_or_default();
        if is_transfer_temp_name(name) {
            debug!(tenant = %self.tenant, path = %vpath, "temporary upload closed; waiting for rename");
            self.temp_uploads.insert(vpath, (size, sha));
            return Ok(());
        }
        self.record(vpath, size, sha).await
    }

    async fn rename(&mut self, id: u32, from: &[u8], to: &[u8], replace: bool) -> Reply {
        let (from, to) = (self.resolve(from)?, self.resolve(to)?);
        self.tree.layout.check_rename(&from, &to)?;
        self.tree.stat(&from)?;
        let (src, dst) = match (self.tree.real_path(&from), self.tree.real_path(&to)) {
            (Some(s), Some(d)) => (s, d),
            _ => return Err(FsError::NotFound(from.to_string())),
        };
        let result = if replace { std::fs::rename(&src, &dst) } else { rename_no_replace(&src, &dst) };
        result.map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => FsError::Exists(to.to_string()),
            _ => FsError::io(format!("renaming {from}"), e),
        })?;
        info!(tenant = %self.tenant, %from, %to, "file renamed by client");
        let memo = self.temp_uploads.remove(&from);
        let from_temp = from.file_name().is_some_and(is_transfer_temp_name);
        let to_temp = to.file_name().is_some_and(is_transfer_temp_name);
        if from_temp && !to_temp {
            let (size, sha) = match memo {
                Some((size, sha)) if std::fs::metadata(&dst).map(|m| m.len()).ok() == Some(size) => {
                    (size, sha)
                }
                _ => tokio::task::spawn_blocking(move || hash_file(&dst))
                    .await
                    .map_err(|e| FsError::io("hashing", io::Error::other(e)))?
                    .map_err(|e| FsError::io("hashing", e))?,
            };
            self.record(to, size, sha).await?;
        }
        ok(id)
    }

    async fn record(&self, path: VirtualPath, size: u64, sha256: Sha256Hex) -> FsResult<()> {
        if !matches!(self.tree.layout.classify(&path), Node::Entry { writable: true, .. }) {
            return Ok(());
        }
        let event =
            UploadEvent { tenant: self.tenant.clone(), path, size, sha256, at_ms: sluice_store::now_ms() };
        let store = self.shared.store.clone();
        let logged = event.clone();
        // Off the async threads: while a large first import holds the write lock, recording
        // waits for it, and must not stall every other session meanwhile.
        let recorded = tokio::task::spawn_blocking(move || store.record_upload(&event))
            .await
            .map_err(|e| sluice_store::StoreError::Corrupt(e.to_string()))
            .and_then(|r| r);
        recorded.map_err(|e| {
            warn!(tenant = %logged.tenant, path = %logged.path, "could not record upload: {e}");
            FsError::Refused("the file arrived but could not be recorded; please upload it again".into())
        })?;
        info!(tenant = %logged.tenant, path = %logged.path, size = logged.size, sha256 = logged.sha256.as_str(), "upload complete");
        self.shared.metrics.upload(logged.size);
        self.shared.uploaded.notify_one();
        Ok(())
    }
}

fn attrs_reply(id: u32, attrs: &Attrs) -> Bytes {
    let mut packet = Packet::new(msg::ATTRS, Some(id), 40);
    packet.attrs(attrs);
    packet.finish()
}

/// Handles are short ASCII strings (`h17`): some clients keep them as text, and a raw
/// binary handle with a byte above 0x7F comes back mangled (russh-sftp did, at handle 128).
fn handle_key(raw: &[u8]) -> Option<u32> {
    std::str::from_utf8(raw.strip_prefix(b"h")?).ok()?.parse().ok()
}

fn bad_handle() -> FsError {
    FsError::Refused("invalid or closed handle".into())
}

/// Reads until `buf` is full or the file ends.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
