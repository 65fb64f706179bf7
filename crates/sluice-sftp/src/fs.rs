//! The tenant's tree on disk: maps resolved [`VirtualPath`]s to files under
//! `DATA_DIR/tenants/NAME/` and performs the operations the policy allows.
//!
//! Paths arrive here already resolved and policy-checked names never contain `/`, `..` or
//! NUL, so joining them below the tenant's directory cannot leave it. Symlinks are never
//! followed: files are opened with `O_NOFOLLOW`, metadata is read with `lstat`, and anything
//! that is not a regular file is invisible.

use crate::protocol::{Attrs, StatusCode};
use sha2::{Digest, Sha256};
use sluice_core::{Node, PathError, PolicyError, Sha256Hex, TreeLayout, VirtualPath};
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("{0}")]
    Policy(#[from] PolicyError),
    #[error("invalid path: {0}")]
    Path(#[from] PathError),
    #[error("no such file or folder: {0}")]
    NotFound(String),
    #[error("{0} already exists")]
    Exists(String),
    #[error("{0}")]
    Refused(String),
    #[error("{what} failed: {source}")]
    Io { what: String, source: io::Error },
}

impl FsError {
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        FsError::Io { what: what.into(), source }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            FsError::Policy(_) => StatusCode::PermissionDenied,
            FsError::Path(_) | FsError::NotFound(_) => StatusCode::NoSuchFile,
            FsError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => StatusCode::NoSuchFile,
            FsError::Exists(_) | FsError::Refused(_) | FsError::Io { .. } => StatusCode::Failure,
        }
    }

    /// The message a client sees. I/O details (real paths) stay in the server log.
    pub fn client_message(&self) -> String {
        match self {
            FsError::Io { what, source } if source.kind() == io::ErrorKind::NotFound => {
                format!("{what}: no such file")
            }
            FsError::Io { what, .. } => format!("{what} failed on the server; please retry"),
            other => other.to_string(),
        }
    }
}

pub type FsResult<T> = Result<T, FsError>;

/// One tenant's view of its tree.
pub struct TenantTree {
    pub layout: TreeLayout,
    /// `DATA_DIR/tenants/NAME`
    pub root: PathBuf,
    /// With `[storage] backend = "s3"`: where the tenant's `/exports` (and `/exports/photos`)
    /// are kept instead of under `root`.
    pub bucket: Option<TreeBucket>,
}

/// The bucket a tenant's exports are read from, and where a file read is copied to first.
#[derive(Clone)]
pub struct TreeBucket {
    pub bucket: std::sync::Arc<sluice_files::Bucket>,
    pub tenant: sluice_core::TenantName,
    /// A private local folder for the copies being read (unnamed files, gone when closed).
    pub spool: PathBuf,
}

pub(crate) fn bucket_error(what: String, e: sluice_files::FilesError) -> FsError {
    tracing::warn!("{what}: {e}");
    FsError::io(what, io::Error::other(e))
}

impl TenantTree {
    /// Creates the tenant's directory and folders if they are missing.
    pub fn ensure_dirs(&self) -> io::Result<()> {
        for (folder, _) in self.layout.folders() {
            std::fs::create_dir_all(self.root.join(folder))?;
        }
        Ok(())
    }

    /// The real path of a folder or an entry in a folder; `None` for the root or outside.
    pub fn real_path(&self, path: &VirtualPath) -> Option<PathBuf> {
        match self.layout.classify(path) {
            Node::Folder { name, .. } => Some(self.root.join(name)),
            Node::Entry { folder, name, .. } => Some(self.root.join(folder).join(name)),
            Node::Root | Node::Outside => None,
        }
    }

    /// The bucket and folder key of `folder` when it is kept in the bucket (`exports`,
    /// `exports/photos`).
    fn in_bucket(&self, folder: &str) -> Option<(&TreeBucket, sluice_files::ObjectKey)> {
        let kept =
            folder == sluice_core::layout::EXPORTS || folder == sluice_core::layout::EXPORT_PHOTOS_FOLDER;
        let b = self.bucket.as_ref().filter(|_| kept)?;
        Some((b, sluice_files::ObjectKey::folder(&b.tenant, folder)))
    }

    /// A folder kept in the bucket, listed: its subfolders, then its files.
    fn bucket_listing(
        &self,
        path: &VirtualPath,
        folder: &str,
        writable: bool,
    ) -> FsResult<Option<Vec<(String, Attrs)>>> {
        let Some((b, key)) = self.in_bucket(folder) else { return Ok(None) };
        let listed = b.bucket.list(&key).map_err(|e| bucket_error(format!("listing {path}"), e))?;
        let mut out = self.subfolders(folder);
        out.extend(
            listed.files.into_iter().filter(|e| VirtualPath::root().join(e.name.as_bytes()).is_ok()).map(
                |e| {
                    let attrs = bucket_file_attrs(&e, writable);
                    (e.name, attrs)
                },
            ),
        );
        Ok(Some(out))
    }

    /// A folder's subfolders (`/exports/photos`), as listed in it: read-only folders.
    fn subfolders(&self, folder: &str) -> Vec<(String, Attrs)> {
        self.layout
            .subfolders(folder)
            .iter()
            .map(|sub| {
                // A folder kept in the bucket may have no directory on the disk: the tenant's
                // own folder's time, rather than 1970.
                let meta = std::fs::symlink_metadata(self.root.join(folder).join(sub))
                    .or_else(|_| std::fs::symlink_metadata(&self.root))
                    .ok();
                ((*sub).to_owned(), dir_attrs(meta.as_ref()))
            })
            .collect()
    }

    /// Attributes of whatever `path` names, or NotFound.
    pub fn stat(&self, path: &VirtualPath) -> FsResult<Attrs> {
        match self.layout.classify(path) {
            Node::Root => Ok(dir_attrs(None)),
            Node::Folder { name, .. } => {
                let meta = std::fs::symlink_metadata(self.root.join(name)).ok();
                Ok(dir_attrs(meta.as_ref()))
            }
            Node::Entry { folder, name, writable } if self.in_bucket(folder).is_some() => {
                let Some((b, key)) = self.in_bucket(folder) else { unreachable!("checked by the guard") };
                let name =
                    sluice_core::FileName::parse(name).map_err(|_| FsError::NotFound(path.to_string()))?;
                match b.bucket.head(&key.file(&name)) {
                    Ok(Some(e)) => Ok(bucket_file_attrs(&e, writable)),
                    Ok(None) => Err(FsError::NotFound(path.to_string())),
                    Err(e) => Err(bucket_error(format!("looking up {path}"), e)),
                }
            }
            Node::Entry { folder, name, writable } => {
                let meta = std::fs::symlink_metadata(self.root.join(folder).join(name))
                    .map_err(|_| FsError::NotFound(path.to_string()))?;
                if !meta.file_type().is_file() {
                    return Err(FsError::NotFound(path.to_string()));
                }
                Ok(file_attrs(&meta, writable))
            }
            Node::Outside => Err(FsError::NotFound(path.to_string())),
        }
    }

    /// Opens a directory for listing: the root's folders at once, a folder's files as the
    /// client asks for them (a folder of 100,000 files is never held in memory whole).
    pub fn open_listing(&self, path: &VirtualPath) -> FsResult<Listing> {
        match self.layout.classify(path) {
            Node::Folder { name, writable } => {
                if let Some(listed) = self.bucket_listing(path, name, writable)? {
                    return Ok(Listing { ready: listed, folder: None, recent: Vec::new() });
                }
                let dir = self.root.join(name);
                let entries = match DirStream::open(&dir) {
                    Ok(entries) => Some((entries, writable)),
                    // sluice's own subfolder (`/exports/photos`) before its first export: empty.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && name.contains('/') => None,
                    Err(e) => return Err(FsError::io(format!("listing {path}"), e)),
                };
                Ok(Listing { ready: self.subfolders(name), folder: entries, recent: Vec::new() })
            }
            _ => Ok(Listing { ready: self.list(path)?, folder: None, recent: Vec::new() }),
        }
    }

    /// Lists a directory: (name, attrs) of folders at the root, of regular files in a folder.
    pub fn list(&self, path: &VirtualPath) -> FsResult<Vec<(String, Attrs)>> {
        match self.layout.classify(path) {
            Node::Root => {
                let mut out: Vec<(String, Attrs)> = self
                    .layout
                    .folders()
                    .map(|(name, _)| {
                        let meta = std::fs::symlink_metadata(self.root.join(name)).ok();
                        (name.to_owned(), dir_attrs(meta.as_ref()))
                    })
                    .collect();
                // Root routing: the files uploaded at the root under a required name.
                if !self.layout.root_files().is_empty() {
                    let mut files = Vec::new();
                    for entry in std::fs::read_dir(&self.root).into_iter().flatten().flatten() {
                        let Ok(name) = entry.file_name().into_string() else { continue };
                        let Ok(meta) = entry.metadata() else { continue };
                        if meta.file_type().is_file() && self.layout.root_accepts(&name) {
                            files.push((name, file_attrs(&meta, true)));
                        }
                    }
                    files.sort_by(|a, b| a.0.cmp(&b.0));
                    out.extend(files);
                }
                Ok(out)
            }
            Node::Folder { name, writable } => {
                if let Some(listed) = self.bucket_listing(path, name, writable)? {
                    return Ok(listed);
                }
                let dir = self.root.join(name);
                let mut out = self.subfolders(name);
                let entries = match std::fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    // sluice's own subfolder (`/exports/photos`) before its first export: empty.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && name.contains('/') => {
                        return Ok(out);
                    }
                    Err(e) => return Err(FsError::io(format!("listing {path}"), e)),
                };
                for entry in entries.flatten() {
                    let Ok(meta) = entry.metadata() else { continue };
                    let Ok(file_name) = entry.file_name().into_string() else { continue };
                    // Only regular files with names a client could also address.
                    if meta.file_type().is_file() && VirtualPath::root().join(file_name.as_bytes()).is_ok() {
                        out.push((file_name, file_attrs(&meta, writable)));
                    }
                }
                out.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(out)
            }
            Node::Entry { .. } => Err(FsError::Refused(format!("{path} is a file, not a folder"))),
            Node::Outside => Err(FsError::NotFound(path.to_string())),
        }
    }

    /// Whether `path` names a file kept in the bucket (`/exports` with `[storage]` s3).
    pub fn kept_in_bucket(&self, path: &VirtualPath) -> bool {
        matches!(self.layout.classify(path), Node::Entry { folder, .. } if self.in_bucket(folder).is_some())
    }

    /// Opens a file kept in the bucket for reading (`None`: `path` is not kept there). It is
    /// copied into an unnamed local file as it arrives, and read from there: the client's
    /// reads at any offset cost no request each, the first ones need not wait for the whole
    /// object, and an export replaced meanwhile does not change under its reader.
    pub fn open_arriving(&self, path: &VirtualPath) -> FsResult<Option<sluice_files::Arriving>> {
        let Node::Entry { folder, name, .. } = self.layout.classify(path) else { return Ok(None) };
        let Some((b, key)) = self.in_bucket(folder) else { return Ok(None) };
        let name = sluice_core::FileName::parse(name).map_err(|_| FsError::NotFound(path.to_string()))?;
        match b.bucket.read_arriving(&key.file(&name), &b.spool) {
            Ok(Some(arriving)) => Ok(Some(arriving)),
            Ok(None) => Err(FsError::NotFound(path.to_string())),
            Err(e) => Err(bucket_error(format!("opening {path}"), e)),
        }
    }

    /// Opens an existing regular file on the local disk for reading, never through a symlink.
    pub fn open_read(&self, path: &VirtualPath) -> FsResult<File> {
        let real = match self.layout.classify(path) {
            Node::Entry { .. } => self.real_path(path).ok_or_else(|| FsError::NotFound(path.to_string()))?,
            Node::Root | Node::Folder { .. } => return Err(FsError::Refused(format!("{path} is a folder"))),
            Node::Outside => return Err(FsError::NotFound(path.to_string())),
        };
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&real)
            .map_err(|e| match e.raw_os_error() {
                // Missing, or a symlink (O_NOFOLLOW), or not under a folder: nothing to read.
                Some(libc::ENOENT | libc::ELOOP | libc::ENOTDIR) => FsError::NotFound(path.to_string()),
                _ => FsError::io(format!("opening {path}"), e),
            })?;
        let meta = file.metadata().map_err(|e| FsError::io(format!("opening {path}"), e))?;
        if !meta.file_type().is_file() {
            return Err(FsError::NotFound(path.to_string()));
        }
        Ok(file)
    }
}

/// A directory being listed: entries ready to send, then the folder's, read on demand.
pub struct Listing {
    ready: Vec<(String, Attrs)>,
    folder: Option<(DirStream, bool)>,
    /// Files uploaded a moment ago, as they were uploaded: each is listed once, from the folder
    /// if the folder still holds it when it is read, or else (the import took it meanwhile)
    /// from here, after the folder's own entries.
    recent: Vec<(String, Attrs)>,
}

impl Listing {
    /// Files uploaded a moment ago that the import may take in while the listing is read.
    pub fn with_recent(&mut self, entries: Vec<(String, Attrs)>) {
        self.recent = entries;
        if self.folder.is_none() {
            self.ready.append(&mut self.recent);
        }
    }

    /// Up to `max` more entries; empty when the listing is done. Only regular files whose
    /// names a client could also address are listed; symlinks and the rest are invisible.
    pub fn next_batch(&mut self, max: usize) -> Vec<(String, Attrs)> {
        let mut out: Vec<(String, Attrs)> = Vec::new();
        loop {
            let take = self.ready.len().min(max - out.len());
            out.extend(self.ready.drain(..take));
            if out.len() >= max {
                break;
            }
            let Some((entries, writable)) = &mut self.folder else { break };
            let name = match entries.next_name() {
                Ok(Some(name)) => name,
                Ok(None) | Err(_) => {
                    self.folder = None;
                    // What the import took before the folder was read is listed from memory.
                    self.ready.append(&mut self.recent);
                    continue;
                }
            };
            let Ok(file_name) = String::from_utf8(name) else { continue };
            if VirtualPath::root().join(file_name.as_bytes()).is_err() {
                continue;
            }
            let remembered =
                self.recent.iter().position(|(n, _)| *n == file_name).map(|i| self.recent.swap_remove(i));
            match entries.regular_file(&file_name) {
                Ok(Some((size, mtime))) => out.push((file_name, file_attrs_of(size, mtime, *writable))),
                // Taken by the import between the folder's read and this look.
                _ => out.extend(remembered),
            }
        }
        out
    }
}

/// A directory read a little at a time with `getdents64` into a small buffer of its own:
/// std's `read_dir` buffers in proportion to the directory's size (~6 MB for 20,000 long
/// names, per open listing, measured), which a client holding many listings open could
/// multiply at will.
pub struct DirStream {
    fd: std::os::fd::OwnedFd,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    done: bool,
}

impl DirStream {
    const BUFFER: usize = 8 * 1024;

    pub fn open(dir: &Path) -> io::Result<Self> {
        use std::os::fd::FromRawFd;
        use std::os::unix::ffi::OsStrExt;
        let c_dir = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
        // SAFETY: a NUL-terminated path; the descriptor returned is owned below.
        let fd = unsafe {
            libc::open(
                c_dir.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a descriptor we just opened and nothing else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd, buf: vec![0; Self::BUFFER], pos: 0, len: 0, done: false })
    }

    /// The next entry's name (`.` and `..` skipped), or `None` at the end.
    pub fn next_name(&mut self) -> io::Result<Option<Vec<u8>>> {
        use std::os::fd::AsRawFd;
        loop {
            if self.pos >= self.len {
                if self.done {
                    return Ok(None);
                }
                // SAFETY: getdents64 writes at most `buf.len()` bytes into our buffer.
                let n = unsafe {
                    libc::syscall(
                        libc::SYS_getdents64,
                        self.fd.as_raw_fd(),
                        self.buf.as_mut_ptr(),
                        self.buf.len(),
                    )
                };
                if n < 0 {
                    return Err(io::Error::last_os_error());
                }
                if n == 0 {
                    self.done = true;
                    return Ok(None);
                }
                (self.pos, self.len) = (0, n as usize);
            }
            // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
            let record = &self.buf[self.pos..self.len];
            if record.len() < 19 {
                return Err(io::Error::other("truncated directory entry"));
            }
            let reclen = usize::from(u16::from_ne_bytes([record[16], record[17]]));
            if reclen < 19 || reclen > record.len() {
                return Err(io::Error::other("malformed directory entry"));
            }
            let name = &record[19..reclen];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            self.pos += reclen;
            if name != b"." && name != b".." {
                return Ok(Some(name.to_vec()));
            }
        }
    }

    /// Size and modification time of `name` in this directory if it is a regular file (a
    /// symlink is not followed, and not one).
    pub fn regular_file(&self, name: &str) -> io::Result<Option<(u64, u32)>> {
        use std::os::fd::AsRawFd;
        let c_name = std::ffi::CString::new(name)?;
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: fstatat fills the stat buffer we own, for a NUL-terminated name.
        let rc = unsafe {
            libc::fstatat(self.fd.as_raw_fd(), c_name.as_ptr(), st.as_mut_ptr(), libc::AT_SYMLINK_NOFOLLOW)
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fstatat returned 0, so the buffer is filled.
        let st = unsafe { st.assume_init() };
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Ok(None);
        }
        let mtime = u32::try_from(st.st_mtime.max(0)).unwrap_or(u32::MAX);
        Ok(Some((u64::try_from(st.st_size).unwrap_or(0), mtime)))
    }
}

fn mtime_secs(meta: &Metadata) -> u32 {
    meta.modified().map(secs).unwrap_or(0)
}

fn secs(t: std::time::SystemTime) -> u32 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs().min(u64::from(u32::MAX)) as u32).unwrap_or(0)
}

pub fn file_attrs(meta: &Metadata, writable: bool) -> Attrs {
    file_attrs_of(meta.size(), mtime_secs(meta), writable)
}

/// A file kept in the bucket, as a client sees it.
pub fn bucket_file_attrs(entry: &sluice_files::Entry, writable: bool) -> Attrs {
    file_attrs_of(entry.size, secs(entry.modified), writable)
}

fn file_attrs_of(size: u64, mtime: u32, writable: bool) -> Attrs {
    Attrs {
        size: Some(size),
        uid_gid: Some((0, 0)),
        permissions: Some(if writable { 0o100644 } else { 0o100444 }),
        atime_mtime: Some((mtime, mtime)),
    }
}

/// A folder's attributes: `drwxr-xr-x` whether the tenant may write in it or not. The server
/// says what may be written (a write in `/exports` is refused); the mode is what clients copy:
/// OpenSSH's `get -r` made a read-only `exports` folder on the district's machine from
/// `dr-xr-xr-x`, and the next night's run could not add a file to it.
pub fn dir_attrs(meta: Option<&Metadata>) -> Attrs {
    let mtime = meta.map(mtime_secs).unwrap_or(0);
    Attrs {
        size: Some(4096),
        uid_gid: Some((0, 0)),
        permissions: Some(0o40755),
        atime_mtime: Some((mtime, mtime)),
    }
}

/// The `ls -l` style line that SFTP v3 clients (FileZilla, WinSCP, `ls -l`) show and parse.
/// `now` (seconds since the epoch) picks the `ls` date style: time of day for the last six
/// months, the year for older files.
pub fn long_name(name: &str, attrs: &Attrs, owner: &str, now: i64) -> String {
    let perm = attrs.permissions.unwrap_or(0);
    let mut mode = String::with_capacity(10);
    mode.push(if perm & 0o40000 != 0 { 'd' } else { '-' });
    for shift in [6, 3, 0] {
        let bits = (perm >> shift) & 7;
        mode.push(if bits & 4 != 0 { 'r' } else { '-' });
        mode.push(if bits & 2 != 0 { 'w' } else { '-' });
        mode.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    let mtime = attrs.atime_mtime.map(|(_, m)| i64::from(m)).unwrap_or(0);
    let (year, month, day) = civil_from_days(mtime.div_euclid(86_400));
    let secs = mtime.rem_euclid(86_400);
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month_name = MONTHS[(month - 1) as usize];
    let when = if (now - mtime).abs() < 182 * 86_400 {
        format!("{:02}:{:02}", secs / 3600, (secs / 60) % 60)
    } else {
        format!(" {year}")
    };
    format!(
        "{mode}    1 {owner:<8} {owner:<8} {size:>8} {month_name} {day:>2} {when} {name}",
        size = attrs.size.unwrap_or(0)
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// SHA-256 and size of a whole file, for uploads written out of order.
pub fn hash_file(path: &Path) -> io::Result<(u64, Sha256Hex)> {
    sluice_core::sha256_of(File::open(path)?)
}

/// Renames `from` to `to`, failing with `AlreadyExists` instead of replacing `to`.
pub fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c_from = CString::new(from.as_os_str().as_bytes())?;
    let c_to = CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: both arguments are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            c_from.as_ptr(),
            libc::AT_FDCWD,
            c_to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EINVAL) {
        // The filesystem lacks RENAME_NOREPLACE: link + unlink gives the same guarantee.
        std::fs::hard_link(from, to)?;
        return std::fs::remove_file(from);
    }
    Err(err)
}

pub fn digest_hex(hasher: Sha256) -> Sha256Hex {
    Sha256Hex::from_digest(&hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn long_names_look_like_ls() {
        let a =
            Attrs { size: Some(42), permissions: Some(0o100644), atime_mtime: Some((0, 0)), uid_gid: None };
        assert_eq!(
            long_name("a.csv", &a, "acme", 1_000_000_000),
            "-rw-r--r--    1 acme     acme           42 Jan  1  1970 a.csv"
        );
        let recent = Attrs { atime_mtime: Some((90_000, 90_000)), ..a };
        assert!(long_name("a.csv", &recent, "acme", 100_000).ends_with(" Jan  2 01:00 a.csv"));
        let d = dir_attrs(None);
        assert!(long_name("exports", &d, "acme", 0).starts_with("drwxr-xr-x"));
    }

    /// The import takes a just-uploaded file while a client's listing is being read (WinSCP
    /// lists right after its upload): the file is listed once, whichever side of the read the
    /// move falls on.
    #[test]
    fn a_file_the_import_takes_during_a_listing_is_listed_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("students")).unwrap();
        let tree = TenantTree {
            layout: TreeLayout::new(sluice_core::FolderName::parse_list("students").unwrap()),
            root: dir.path().to_path_buf(),
            bucket: None,
        };
        let folder = VirtualPath::resolve(b"/students").unwrap();
        let remembered = Attrs { size: Some(42), ..Attrs::default() };
        let names = |mut l: Listing| -> Vec<(String, Option<u64>)> {
            let mut all = Vec::new();
            loop {
                let batch = l.next_batch(2);
                if batch.is_empty() {
                    return all;
                }
                all.extend(batch.into_iter().map(|(n, a)| (n, a.size)));
            }
        };
        for taken in [false, true] {
            std::fs::write(dir.path().join("students/students.csv"), b"sisId\n1\n").unwrap();
            std::fs::write(dir.path().join("students/other.csv"), b"x").unwrap();
            let mut listing = tree.open_listing(&folder).unwrap();
            listing.with_recent(vec![("students.csv".into(), remembered.clone())]);
            if taken {
                // The import moves it after the listing was opened, before it is read.
                std::fs::remove_file(dir.path().join("students/students.csv")).unwrap();
            }
            let mut seen = names(listing);
            seen.sort();
            let size = if taken { 42 } else { 8 };
            assert_eq!(
                seen,
                [("other.csv".to_owned(), Some(1)), ("students.csv".to_owned(), Some(size))],
                "taken: {taken}"
            );
        }
    }

    #[test]
    fn a_directory_stream_lists_regular_files_only_and_every_one() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..500 {
            std::fs::write(dir.path().join(format!("{}-{i}.csv", "x".repeat(100))), format!("{i}")).unwrap();
        }
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link.csv")).unwrap();
        let mut stream = DirStream::open(dir.path()).unwrap();
        let mut files = 0;
        while let Some(name) = stream.next_name().unwrap() {
            let name = String::from_utf8(name).unwrap();
            match stream.regular_file(&name).unwrap() {
                Some((size, _)) => {
                    assert!(name.ends_with(".csv") && size > 0, "{name}");
                    files += 1;
                }
                None => assert!(name == "sub" || name == "link.csv", "{name}"),
            }
        }
        assert_eq!(files, 500);
        assert!(
            DirStream::open(&dir.path().join("link.csv")).is_err(),
            "a symlink is not opened as a folder"
        );
    }

    #[test]
    fn rename_no_replace_refuses_to_clobber() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "a").unwrap();
        std::fs::write(&b, "b").unwrap();
        assert_eq!(rename_no_replace(&a, &b).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        std::fs::remove_file(&b).unwrap();
        rename_no_replace(&a, &b).unwrap();
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "a");
    }
}
