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

    /// Attributes of whatever `path` names, or NotFound.
    pub fn stat(&self, path: &VirtualPath) -> FsResult<Attrs> {
        match self.layout.classify(path) {
            Node::Root => Ok(dir_attrs(false, None)),
            Node::Folder { name, writable } => {
                let meta = std::fs::symlink_metadata(self.root.join(name)).ok();
                Ok(dir_attrs(writable, meta.as_ref()))
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

    /// Lists a directory: (name, attrs) of folders at the root, of regular files in a folder.
    pub fn list(&self, path: &VirtualPath) -> FsResult<Vec<(String, Attrs)>> {
        match self.layout.classify(path) {
            Node::Root => Ok(self
                .layout
                .folders()
                .map(|(name, writable)| {
                    let meta = std::fs::symlink_metadata(self.root.join(name)).ok();
                    (name.to_owned(), dir_attrs(writable, meta.as_ref()))
                })
                .collect()),
            Node::Folder { name, writable } => {
                let dir = self.root.join(name);
                let mut out = Vec::new();
                let entries =
                    std::fs::read_dir(&dir).map_err(|e| FsError::io(format!("listing {path}"), e))?;
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

    /// Opens an existing regular file for reading, never through a symlink.
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

fn mtime_secs(meta: &Metadata) -> u32 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs().min(u64::from(u32::MAX)) as u32)
        .unwrap_or(0)
}

pub fn file_attrs(meta: &Metadata, writable: bool) -> Attrs {
    let mtime = mtime_secs(meta);
    Attrs {
        size: Some(meta.size()),
        uid_gid: Some((0, 0)),
        permissions: Some(if writable { 0o100644 } else { 0o100444 }),
        atime_mtime: Some((mtime, mtime)),
    }
}

pub fn dir_attrs(writable: bool, meta: Option<&Metadata>) -> Attrs {
    let mtime = meta.map(mtime_secs).unwrap_or(0);
    Attrs {
        size: Some(4096),
        uid_gid: Some((0, 0)),
        permissions: Some(if writable { 0o40755 } else { 0o40555 }),
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
        let d = dir_attrs(false, None);
        assert!(long_name("exports", &d, "acme", 0).starts_with("dr-xr-xr-x"));
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
