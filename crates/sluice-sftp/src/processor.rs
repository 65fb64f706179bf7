//! The processor of one SFTP session: executes requests in order against the tenant's tree.
//!
//! Every open handle holds a [`HandleSlot`] (the session's, the tenant's and the server's
//! descriptor counts) and every upload its spool charge; dropping the processor, however the
//! session ended, gives all of it back and removes unfinished uploads' spool files.
//!
//! Clients check what they uploaded: paramiko's `put` stats the file, rclone and WinSCP set
//! its modification time, some list the folder. On a folder that imports on upload the
//! worker may already have moved the file away; the tenant's recent uploads (kept for
//! [`SftpLimits::recent_upload`](crate::SftpLimits)) answer those requests instead, so that
//! the client sees its upload succeed and does not send it again.

use crate::fs::{
    FsError, FsResult, Listing, TenantTree, dir_attrs, file_attrs, hash_file, long_name, rename_no_replace,
};
use crate::protocol::{self, Attrs, Packet, Request, StatusCode, msg, open_flags, status};
use crate::session::SftpShared;
use crate::tenant_state::{HandleSlot, RecentUpload, Refusal, SpoolCharge};
use crate::upload::{NewUpload, Upload, copy_existing};
use bytes::Bytes;
use sluice_core::{
    Node, Operation, Sha256Hex, SnapshotName, TenantName, UploadEvent, VirtualPath, is_transfer_temp_name,
};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use tracing::{debug, info, warn};

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Digests of closed temporary uploads a session remembers (for their rename) at most.
const MAX_TEMP_MEMOS: usize = 1024;

enum Handle {
    /// `copy`: a file read from the bucket is a local copy, made as the object arrives.
    Read {
        file: File,
        copy: Option<Box<BucketCopy>>,
    },
    Write(Box<Upload>),
    Dir(Box<Listing>),
}

/// A file read from the bucket: how far its local copy has come (a read waits for its part),
/// and the copy's charge to the tenant's spool while the handle is open.
struct BucketCopy {
    arrival: sluice_files::Arrival,
    _charge: SpoolCharge,
    _fds: crate::limits::FdPermit,
}

struct OpenHandle {
    handle: Handle,
    _slot: HandleSlot,
}

pub(crate) struct Processor {
    shared: Arc<SftpShared>,
    tenant: TenantName,
    owner: String,
    tree: TenantTree,
    /// The session's end (see [`Processor::new`]).
    stop: tokio_util::sync::CancellationToken,
    handles: HashMap<u32, OpenHandle>,
    next_handle: u32,
    initialized: bool,
    /// Handles open on this session's connection (shutdown waits for them).
    connection_handles: Arc<AtomicUsize>,
    /// Size and digest of files closed under a client's temporary name, so the rename to
    /// the final name can be recorded without hashing the file again.
    temp_uploads: HashMap<VirtualPath, (u64, Sha256Hex)>,
}

type Reply = Result<Bytes, FsError>;

fn ok(id: u32) -> Reply {
    Ok(status(id, StatusCode::Ok, "OK"))
}

fn now_secs() -> u32 {
    u32::try_from(sluice_store::now_ms() / 1000).unwrap_or(u32::MAX)
}

impl Processor {
    /// `stop`: the session's end, which a read waiting for a copy from the bucket does not
    /// outlast.
    pub fn new(
        shared: Arc<SftpShared>,
        tenant: TenantName,
        tree: TenantTree,
        connection_handles: Arc<AtomicUsize>,
        stop: tokio_util::sync::CancellationToken,
    ) -> Self {
        Self {
            stop,
            shared,
            owner: tenant.to_string(),
            tenant,
            tree,
            handles: HashMap::new(),
            next_handle: 1,
            initialized: false,
            connection_handles,
            temp_uploads: HashMap::new(),
        }
    }

    pub fn tenant(&self) -> &TenantName {
        &self.tenant
    }

    /// Answers one request; `None` for requests that get no reply.
    pub async fn handle(&mut self, request: Request, draining: bool) -> Option<Bytes> {
        if let Request::Init { version } = request {
            debug!(tenant = %self.tenant, version, "SFTP init");
            self.initialized = true;
            return Some(protocol::version_reply());
        }
        let id = request.id()?;
        if !self.initialized {
            return Some(status(id, StatusCode::BadMessage, "SSH_FXP_INIT must come first"));
        }
        if draining && matches!(request, Request::Open { .. } | Request::Opendir { .. }) {
            return Some(status(
                id,
                StatusCode::Failure,
                "the server is shutting down; try again in a minute",
            ));
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
                let path = self.resolve(&path)?;
                Ok(attrs_reply(id, &self.stat(&path)?))
            }
            Request::Fstat { handle, .. } => {
                let attrs = match &self.handle_mut(&handle)?.handle {
                    // The object's size and time, however much of it has arrived.
                    Handle::Read { copy: Some(copy), .. } => {
                        crate::fs::bucket_file_attrs(&copy.arrival.entry, false)
                    }
                    Handle::Read { file, .. } => {
                        file_attrs(&file.metadata().map_err(|e| FsError::io("stat", e))?, true)
                    }
                    Handle::Write(u) => {
                        file_attrs(&u.file.metadata().map_err(|e| FsError::io("stat", e))?, true)
                    }
                    Handle::Dir { .. } => dir_attrs(None),
                };
                Ok(attrs_reply(id, &attrs))
            }
            Request::Opendir { path, .. } => {
                let path = self.resolve(&path)?;
                // A folder's listing holds its directory open (a descriptor), not its entries.
                let slot = self.reserve_handle(true)?;
                let listing = self.open_listing(&path)?;
                Ok(self.new_handle(id, Handle::Dir(Box::new(listing)), slot))
            }
            Request::Readdir { handle, .. } => {
                let owner = self.owner.clone();
                let Handle::Dir(listing) = &mut self.handle_mut(&handle)?.handle else {
                    return Err(FsError::Refused("handle is not a directory".into()));
                };
                let batch = listing.next_batch(128);
                if batch.is_empty() {
                    return Ok(status(id, StatusCode::Eof, "end of directory"));
                }
                let now = sluice_store::now_ms() / 1000;
                let mut packet = Packet::new(msg::NAME, Some(id), batch.len() * 128);
                packet.u32(batch.len() as u32);
                for (name, attrs) in &batch {
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
                let slot = self.reserve_handle(true)?;
                if flags & writes != 0 {
                    let upload = self.start_upload(path, flags).await?;
                    Ok(self.new_handle(id, Handle::Write(Box::new(upload)), slot))
                } else if self.tree.kept_in_bucket(&path) {
                    // A file kept in the bucket is copied to local disk as it arrives. The copy
                    // takes two more descriptors (its writer's, its connection's), and is
                    // charged to the tenant's spool: nothing is asked of the store when the
                    // account has no room left, and the whole size as soon as the store says
                    // it (a refusal stops the copy), so a client opening a large export many
                    // times cannot fill the server's disk.
                    let fds = self.shared.fds.try_take_files(2).ok_or_else(|| {
                        warn!(tenant = %self.tenant, "refusing an open: the server is at its open-file limit");
                        FsError::Refused("the server has too many files open right now; try again in a minute".into())
                    })?;
                    let limit = self.shared.limits.spool_bytes_per_tenant;
                    let mut charge = self.shared.tenants.spool_charge(&self.tenant, limit);
                    let refused = |size: &str| {
                        FsError::Refused(format!(
                            "{path}{size} cannot be opened now: this account's downloads and unfinished uploads \
                             may take at most {limit} bytes; close other files first"
                        ))
                    };
                    charge.grow_to(1).map_err(|_| refused(""))?;
                    let arriving =
                        self.tree.open_arriving(&path)?.ok_or_else(|| FsError::NotFound(path.to_string()))?;
                    let size = arriving.arrival.entry.size;
                    charge.grow_to(size).map_err(|_| refused(&format!(" ({size} bytes)")))?;
                    let copy = Box::new(BucketCopy { arrival: arriving.arrival, _charge: charge, _fds: fds });
                    Ok(self.new_handle(id, Handle::Read { file: arriving.file, copy: Some(copy) }, slot))
                } else {
                    let file = self.tree.open_read(&path)?;
                    Ok(self.new_handle(id, Handle::Read { file, copy: None }, slot))
                }
            }
            Request::Read { handle, offset, len, .. } => {
                let stop = self.stop.clone();
                if let Handle::Read { copy: Some(copy), .. } = &self.handle_mut(&handle)?.handle {
                    let end = offset.saturating_add(u64::from(len.min(protocol::MAX_DATA)));
                    tokio::select! {
                        biased;
                        _ = stop.cancelled() => return Err(FsError::Refused("the session is ending".into())),
                        // The copy said once, in the log, what broke it: not again per READ
                        // (a client has many in flight).
                        arrived = copy.arrival.wait_for(end) => arrived.map_err(|e| {
                            FsError::io("reading a file kept in the bucket", io::Error::other(e))
                        })?,
                    }
                }
                let file = match &self.handle_mut(&handle)?.handle {
                    Handle::Read { file, .. } => file,
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
                let reply = packet.finish();
                // A short read near the end of a file must not keep the whole buffer it asked
                // for while it waits in the reply queue.
                Ok(if n < len / 2 { Bytes::copy_from_slice(&reply) } else { reply })
            }
            Request::Write { handle, offset, data, .. } => {
                let max = self.shared.limits.max_upload_bytes;
                let Handle::Write(upload) = &mut self.handle_mut(&handle)?.handle else {
                    return Err(FsError::Refused("file was not opened for writing".into()));
                };
                upload.write(offset, &data, max).map_err(FsError::Refused)?;
                ok(id)
            }
            Request::Close { handle, .. } => {
                let key = handle_key(&handle).ok_or_else(bad_handle)?;
                let open = self.handles.remove(&key).ok_or_else(bad_handle)?;
                match open.handle {
                    Handle::Write(upload) => self.finish_upload(*upload).await.and_then(|()| ok(id)),
                    Handle::Read { .. } | Handle::Dir { .. } => ok(id),
                }
            }
            Request::Setstat { path, attrs, .. } => {
                let path = self.resolve(&path)?;
                self.tree.layout.check(Operation::SetAttributes, &path)?;
                self.set_attributes(&path, &attrs)?;
                ok(id)
            }
            Request::Fsetstat { handle, attrs, .. } => {
                if let Handle::Write(upload) = &mut self.handle_mut(&handle)?.handle
                    && let Some((_, mtime)) = attrs.atime_mtime
                {
                    upload.set_mtime(mtime);
                }
                ok(id)
            }
            Request::Fsync { handle, .. } => {
                if let Handle::Write(upload) = &self.handle_mut(&handle)?.handle {
                    upload.file.sync_all().map_err(|e| FsError::io("fsync", e))?;
                }
                ok(id)
            }
            Request::Remove { path, .. } => {
                let path = self.resolve(&path)?;
                self.tree.layout.check(Operation::Remove, &path)?;
                if self.tree.stat(&path).is_err() && self.shared.tenants.forget_upload(&self.tenant, &path) {
                    // Already taken in by the import; the folder no longer holds it either way.
                    info!(tenant = %self.tenant, %path, "client removed a file that was already imported");
                    return ok(id);
                }
                self.tree.stat(&path)?;
                let real = self.tree.real_path(&path).ok_or_else(|| FsError::NotFound(path.to_string()))?;
                std::fs::remove_file(real).map_err(|e| FsError::io(format!("removing {path}"), e))?;
                self.shared.tenants.forget_upload(&self.tenant, &path);
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

    fn recent(&self, path: &VirtualPath) -> Option<RecentUpload> {
        self.shared.tenants.recent(&self.tenant, path, self.shared.limits.recent_upload)
    }

    /// A file's attributes; a file uploaded a moment ago and already taken in by the import
    /// still answers, as it was uploaded.
    fn stat(&self, path: &VirtualPath) -> FsResult<Attrs> {
        match self.tree.stat(path) {
            Err(FsError::NotFound(missing)) => match self.recent(path) {
                Some(r) => Ok(recent_attrs(r)),
                None => Err(FsError::NotFound(missing)),
            },
            other => other,
        }
    }

    /// A folder's listing, with the files uploaded a moment ago that the import took in: each
    /// listed once, whenever the import moves it (before the listing, while it is read, or not
    /// at all).
    fn open_listing(&self, path: &VirtualPath) -> FsResult<Listing> {
        let mut listing = self.tree.open_listing(path)?;
        if let Node::Folder { name, writable: true } = self.tree.layout.classify(path) {
            let window = self.shared.limits.recent_upload;
            let recent: Vec<(String, Attrs)> = self
                .shared
                .tenants
                .recent_in_folder(&self.tenant, name, window)
                .into_iter()
                .map(|(file, r)| (file, recent_attrs(r)))
                .collect();
            listing.with_recent(recent);
        } else if matches!(self.tree.layout.classify(path), Node::Root)
            && !self.tree.layout.root_files().is_empty()
        {
            // Root routing: the root is listed whole; a file the import took is listed from
            // memory, once.
            let window = self.shared.limits.recent_upload;
            let recent: Vec<(String, Attrs)> = self
                .shared
                .tenants
                .recent_in_folder(&self.tenant, sluice_core::layout::ROOT, window)
                .into_iter()
                .filter(|(file, _)| !self.tree.root.join(file).exists())
                .map(|(file, r)| (file, recent_attrs(r)))
                .collect();
            listing.with_recent(recent);
        }
        Ok(listing)
    }

    /// SETSTAT: a file's modification time is kept (clients that preserve timestamps set
    /// it after an upload); permissions and owners are sluice's and are left as they are.
    fn set_attributes(&self, path: &VirtualPath, attrs: &Attrs) -> FsResult<()> {
        let window = self.shared.limits.recent_upload;
        match self.tree.stat(path) {
            Ok(_) => {
                let (Some((atime, mtime)), Some(real)) = (attrs.atime_mtime, self.tree.real_path(path))
                else {
                    return Ok(());
                };
                match set_times_nofollow(&real, atime, mtime) {
                    Ok(()) => {
                        // The import may take the file in a moment from now: what the client
                        // reads back then is what it set.
                        self.shared.tenants.set_recent_mtime(&self.tenant, path, mtime, window);
                        return Ok(());
                    }
                    // Taken in by the import between the stat and now (seen under load with
                    // rclone, which sets the time right after its upload): as if already gone.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(FsError::io("setting the time", e)),
                }
            }
            Err(FsError::NotFound(_)) => {}
            Err(other) => return Err(other),
        }
        let known = match attrs.atime_mtime.map(|(_, m)| m) {
            Some(m) => self.shared.tenants.set_recent_mtime(&self.tenant, path, m, window),
            None => self.recent(path).is_some(),
        };
        if known { Ok(()) } else { Err(FsError::NotFound(path.to_string())) }
    }

    /// Takes a handle's place in the session's, the tenant's and (for a file) the server's
    /// descriptor counts, or says which limit was reached.
    fn reserve_handle(&self, needs_fd: bool) -> FsResult<HandleSlot> {
        let limits = &self.shared.limits;
        if self.handles.len() >= limits.max_handles {
            return Err(FsError::Refused(format!(
                "too many open files in this session (limit {}); close some first",
                limits.max_handles
            )));
        }
        let fd = match needs_fd {
            true => Some(self.shared.fds.try_take_files(1).ok_or_else(|| {
                warn!(tenant = %self.tenant, "refusing an open: the server is at its open-file limit");
                FsError::Refused("the server has too many files open right now; try again in a minute".into())
            })?),
            false => None,
        };
        // No tenant may hold more than half of the descriptors files may use, whatever the
        // setting says: the others must still be able to work.
        let per_tenant = limits.max_handles_per_tenant.min((self.shared.fds.file_limit() / 2).max(1));
        self.shared.tenants.take_handle(&self.tenant, per_tenant, fd, self.connection_handles.clone()).map_err(|_| {
            FsError::Refused(format!(
                "too many open files for this account across its sessions (limit {per_tenant}); close some first"
            ))
        })
    }

    fn new_handle(&mut self, id: u32, handle: Handle, slot: HandleSlot) -> Bytes {
        let mut key = self.next_handle;
        while self.handles.contains_key(&key) {
            key = key.wrapping_add(1);
        }
        self.next_handle = key.wrapping_add(1);
        self.handles.insert(key, OpenHandle { handle, _slot: slot });
        let mut packet = Packet::new(msg::HANDLE, Some(id), 16);
        packet.string(format!("h{key}").as_bytes());
        packet.finish()
    }

    fn handle_mut(&mut self, raw: &[u8]) -> FsResult<&mut OpenHandle> {
        let key = handle_key(raw).ok_or_else(bad_handle)?;
        self.handles.get_mut(&key).ok_or_else(bad_handle)
    }

    async fn start_upload(&self, path: VirtualPath, flags: u32) -> FsResult<Upload> {
        self.tree.layout.check(Operation::Write, &path)?;
        let target = self.tree.real_path(&path).ok_or_else(|| FsError::NotFound(path.to_string()))?;
        let exclusive = flags & open_flags::EXCL != 0;
        let claim = if exclusive {
            let claim =
                self.shared.tenants.claim_exclusive(&self.tenant, &path).map_err(|_| {
                    FsError::Exists(format!("{path} (another session is creating it right now)"))
                })?;
            Some(claim)
        } else {
            None
        };
        let existing = std::fs::symlink_metadata(&target).ok();
        if let Some(meta) = &existing {
            if !meta.file_type().is_file() {
                return Err(FsError::Refused(format!("{path} cannot be overwritten")));
            }
            if exclusive {
                return Err(FsError::Exists(path.to_string()));
            }
        } else if flags & open_flags::CREAT == 0 {
            return Err(FsError::NotFound(path.to_string()));
        }
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        // Named by this process's tag first: servers sharing a data directory share the spool.
        let temp =
            self.shared.spool.join(format!("{}.{}-{n}.upload", sluice_core::spool::owner_tag(), self.tenant));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| FsError::io("starting the upload", e))?;
        let mut upload = Upload::new(NewUpload {
            file,
            temp,
            target,
            vpath: path,
            append: flags & open_flags::APPEND != 0,
            spool: self.shared.tenants.spool_charge(&self.tenant, self.shared.limits.spool_bytes_per_tenant),
            exclusive: claim,
        });
        // Without TRUNC a client writes into the existing file (resume, partial update): the
        // spool copy starts from its content. The copy is charged in full to the tenant's
        // spool first, and made on a blocking thread (a reflink, or the data regions only).
        if existing.is_some() && flags & open_flags::TRUNC == 0 {
            let src = self.tree.open_read(&upload.vpath)?;
            let size = src.metadata().map_err(|e| FsError::io("starting the upload", e))?.len();
            upload.started_from_copy(size).map_err(|r| match r {
                Refusal::Spool(limit) => FsError::Refused(format!(
                    "writing into {} needs a copy of its {size} bytes, and this account's unfinished \
                     uploads may take at most {limit} bytes; upload the whole file instead (truncate)",
                    upload.vpath
                )),
                other => FsError::Refused(format!("{other:?}")),
            })?;
            let _extra_fd = self.shared.fds.try_take_files(1).ok_or_else(|| {
                FsError::Refused("the server has too many files open right now; try again in a minute".into())
            })?;
            let dst = upload.file.try_clone().map_err(|e| FsError::io("starting the upload", e))?;
            tokio::task::spawn_blocking(move || copy_existing(&src, &dst))
                .await
                .map_err(|e| FsError::io("starting the upload", io::Error::other(e)))?
                .map_err(|e| FsError::io("starting the upload", e))?;
        }
        Ok(upload)
    }

    async fn finish_upload(&mut self, upload: Upload) -> FsResult<()> {
        let vpath = upload.vpath.clone();
        if upload.is_unchanged_copy() {
            // Opened for writing and closed without a write: the file is as it was.
            debug!(tenant = %self.tenant, path = %vpath, "closed without writing; nothing changed");
            return Ok(());
        }
        let name = vpath.file_name().unwrap_or_default();
        // A client's temporary file counts once renamed: its snapshot is taken then.
        let temporary = is_transfer_temp_name(name);
        let snapshot = if temporary { None } else { self.new_snapshot() };
        let (snapshot_name, snapshot_path) = snapshot.unzip();
        // The usual upload was hashed as it arrived: finishing is an fstat and a rename.
        // Only out-of-order writes need the file read again, which is done off the runtime.
        let (size, sha, kept) = if upload.hashed_in_full() {
            upload.commit(snapshot_path)?
        } else {
            tokio::task::spawn_blocking(move || upload.commit(snapshot_path))
                .await
                .map_err(|e| FsError::io("finishing the upload", io::Error::other(e)))??
        };
        let snapshot = snapshot_name.filter(|_| kept.is_some());
        if temporary {
            debug!(tenant = %self.tenant, path = %vpath, "temporary upload closed; waiting for rename");
            // Kept only to spare hashing again on the rename; a client that never renames its
            // temporary files must not grow it without end.
            if self.temp_uploads.len() >= MAX_TEMP_MEMOS {
                self.temp_uploads.clear();
            }
            self.temp_uploads.insert(vpath, (size, sha));
            return Ok(());
        }
        self.record(vpath, size, sha, snapshot).await
    }

    /// A new name for an upload's snapshot, and where it goes (`None`: this server keeps no
    /// snapshots).
    fn new_snapshot(&self) -> Option<(SnapshotName, std::path::PathBuf)> {
        let dir = self.shared.snapshots.as_ref()?;
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name =
            SnapshotName::parse(&format!("snap-{}-{}-{n}", sluice_core::spool::owner_tag(), self.tenant))?;
        let path = dir.join(name.as_str());
        Some((name, path))
    }

    async fn rename(&mut self, id: u32, from: &[u8], to: &[u8], replace: bool) -> Reply {
        let (from, to) = (self.resolve(from)?, self.resolve(to)?);
        self.tree.layout.check_rename(&from, &to)?;
        self.tree.stat(&from)?;
        let (src, dst) = match (self.tree.real_path(&from), self.tree.real_path(&to)) {
            (Some(s), Some(d)) => (s, d),
            _ => return Err(FsError::NotFound(from.to_string())),
        };
        let from_temp = from.file_name().is_some_and(is_transfer_temp_name);
        let to_temp = to.file_name().is_some_and(is_transfer_temp_name);
        // A client's temporary file becoming its final name is an upload: its bytes are kept
        // before the rename, so that nothing renamed over it meanwhile is imported in its place.
        let snapshot = if from_temp && !to_temp {
            self.new_snapshot().filter(|(_, path)| match std::fs::hard_link(&src, path) {
                Ok(()) => true,
                Err(e) => {
                    warn!(tenant = %self.tenant, %from, "could not keep a snapshot of the upload ({e}); it is imported from its folder");
                    false
                }
            })
        } else {
            None
        };
        let result = if replace { std::fs::rename(&src, &dst) } else { rename_no_replace(&src, &dst) };
        if let (Err(_), Some((_, path))) = (&result, &snapshot) {
            let _ = std::fs::remove_file(path);
        }
        result.map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => FsError::Exists(to.to_string()),
            _ => FsError::io(format!("renaming {from}"), e),
        })?;
        info!(tenant = %self.tenant, %from, %to, "file renamed by client");
        self.shared.tenants.forget_upload(&self.tenant, &from);
        let memo = self.temp_uploads.remove(&from);
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
            self.record(to, size, sha, snapshot.map(|(name, _)| name)).await?;
        }
        ok(id)
    }

    /// Records an upload event; `snapshot` names the upload's own bytes, kept for its import
    /// (removed here if the event is not recorded).
    async fn record(
        &self,
        path: VirtualPath,
        size: u64,
        sha256: Sha256Hex,
        snapshot: Option<SnapshotName>,
    ) -> FsResult<()> {
        let forget_snapshot = |snapshot: &Option<SnapshotName>| {
            if let (Some(name), Some(dir)) = (snapshot, &self.shared.snapshots) {
                let _ = std::fs::remove_file(dir.join(name.as_str()));
            }
        };
        if !matches!(self.tree.layout.classify(&path), Node::Entry { writable: true, .. }) {
            forget_snapshot(&snapshot);
            return Ok(());
        }
        let event = UploadEvent {
            tenant: self.tenant.clone(),
            path,
            size,
            sha256,
            at_ms: sluice_store::now_ms(),
            snapshot: snapshot.clone(),
        };
        let store = self.shared.store.clone();
        let logged = event.clone();
        // Off the async threads: while a large import's apply holds the write lock, recording
        // waits for it, and must not stall every other session meanwhile.
        let recorded = tokio::task::spawn_blocking(move || store.record_upload(&event))
            .await
            .map_err(|e| sluice_store::StoreError::Corrupt(e.to_string()))
            .and_then(|r| r);
        recorded.map_err(|e| {
            forget_snapshot(&snapshot);
            warn!(tenant = %logged.tenant, path = %logged.path, "could not record upload: {e}");
            FsError::Refused("the file arrived but could not be recorded; please upload it again".into())
        })?;
        info!(tenant = %logged.tenant, path = %logged.path, size = logged.size, sha256 = logged.sha256.as_str(), "upload complete");
        // Remembered before the worker is woken, so that the client's next STAT finds it
        // whichever of the two comes first.
        let mtime = self
            .tree
            .real_path(&logged.path)
            .and_then(|p| std::fs::symlink_metadata(p).ok())
            .and_then(|m| file_attrs(&m, true).atime_mtime)
            .map_or_else(now_secs, |(_, m)| m);
        self.shared.tenants.remember_upload(&self.tenant, &logged.path, logged.size, mtime);
        self.shared.metrics.upload(logged.size);
        self.shared.uploaded.notify_one();
        Ok(())
    }
}

fn recent_attrs(r: RecentUpload) -> Attrs {
    Attrs {
        size: Some(r.size),
        uid_gid: Some((0, 0)),
        permissions: Some(0o100644),
        atime_mtime: Some((r.mtime, r.mtime)),
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

/// Sets a file's access and modification times without following a symlink.
fn set_times_nofollow(path: &std::path::Path, atime: u32, mtime: u32) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let times = [
        libc::timespec { tv_sec: libc::time_t::from(atime), tv_nsec: 0 },
        libc::timespec { tv_sec: libc::time_t::from(mtime), tv_nsec: 0 },
    ];
    // SAFETY: a NUL-terminated path and an array of two timespecs, both alive for the call.
    let rc = unsafe {
        libc::utimensat(libc::AT_FDCWD, c_path.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW)
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
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
