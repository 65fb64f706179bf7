//! A file being uploaded: written to the private spool, hashed as it arrives, and moved into
//! the tenant's folder only when the client closes it after a successful write.

use crate::fs::{FsError, digest_hex, hash_file, rename_no_replace};
use crate::tenant_state::{ExclusiveClaim, Refusal, SpoolCharge};
use sha2::{Digest, Sha256};
use sluice_core::{Sha256Hex, VirtualPath};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};
use tracing::warn;

pub struct Upload {
    pub(crate) file: File,
    temp: PathBuf,
    target: PathBuf,
    pub(crate) vpath: VirtualPath,
    append: bool,
    hasher: Sha256,
    hashed_to: u64,
    in_order: bool,
    failed: Option<String>,
    committed: bool,
    spool: SpoolCharge,
    /// Held for CREAT|EXCL: no other session may create the name meanwhile, and the file is
    /// moved into place only if the name is still free.
    exclusive: Option<ExclusiveClaim>,
    /// A modification time the client set on the open file (FSETSTAT), applied on commit.
    mtime: Option<u32>,
    /// Where the file ends so far (what was written, or the copy it started from).
    end: u64,
    /// Started from a copy of the existing file, and nothing written since: closing it
    /// changes nothing, so nothing is moved or recorded.
    unchanged_copy: bool,
}

/// How far past the end of what was written a write may start. Clients write in order (and a
/// resume starts at the end); a far-off write would only make a sparse file that costs its
/// whole size to hash.
const MAX_GAP: u64 = 64 << 20;

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

pub(crate) struct NewUpload {
    pub file: File,
    pub temp: PathBuf,
    pub target: PathBuf,
    pub vpath: VirtualPath,
    pub append: bool,
    pub spool: SpoolCharge,
    pub exclusive: Option<ExclusiveClaim>,
}

impl Upload {
    pub(crate) fn new(n: NewUpload) -> Self {
        Self {
            file: n.file,
            temp: n.temp,
            target: n.target,
            vpath: n.vpath,
            append: n.append,
            hasher: Sha256::new(),
            hashed_to: 0,
            in_order: true,
            failed: None,
            committed: false,
            spool: n.spool,
            exclusive: n.exclusive,
            mtime: None,
            end: 0,
            unchanged_copy: false,
        }
    }

    /// The spool file now holds a copy of the existing file (a write without TRUNC): the
    /// bytes are no longer what arrives in order from offset 0.
    pub(crate) fn started_from_copy(&mut self, size: u64) -> Result<(), Refusal> {
        self.in_order = false;
        self.end = size;
        self.unchanged_copy = true;
        self.spool.grow_to(size)
    }

    /// A copy of an existing file that nothing was written to: committing it would record
    /// the same file again.
    pub(crate) fn is_unchanged_copy(&self) -> bool {
        self.unchanged_copy
    }

    pub(crate) fn set_mtime(&mut self, mtime: u32) {
        self.mtime = Some(mtime);
    }

    pub(crate) fn write(&mut self, offset: u64, data: &[u8], max: u64) -> Result<(), String> {
        if let Some(reason) = &self.failed {
            return Err(reason.clone());
        }
        let offset =
            if self.append { self.file.metadata().map(|m| m.len()).unwrap_or(offset) } else { offset };
        let end = offset.saturating_add(data.len() as u64);
        if end > max {
            return Err(self.fail(format!("upload exceeds the {max}-byte limit for one file")));
        }
        if offset > self.end.saturating_add(MAX_GAP) {
            return Err(self.fail(format!(
                "a write at offset {offset} would leave a gap of {} bytes after the {} written so far; \
                 write the file from its start",
                offset - self.end,
                self.end
            )));
        }
        if let Err(Refusal::Spool(limit)) = self.spool.grow_to(end) {
            return Err(self.fail(format!(
                "this account's unfinished uploads would take more than {limit} bytes on the server; \
                 finish or cancel some first"
            )));
        }
        if let Err(e) = self.file.write_all_at(data, offset) {
            warn!(path = %self.vpath, "upload write failed: {e}");
            return Err(self.fail(format!("writing failed on the server ({})", e.kind())));
        }
        self.end = self.end.max(end);
        self.unchanged_copy = false;
        if self.in_order && offset == self.hashed_to {
            self.hasher.update(data);
            self.hashed_to += data.len() as u64;
        } else {
            self.in_order = false;
        }
        Ok(())
    }

    fn fail(&mut self, reason: String) -> String {
        self.failed = Some(reason.clone());
        reason
    }

    /// Writes that arrived in order, from offset 0 without gaps or overlaps, were hashed as
    /// they came and the file is exactly `hashed_to` bytes long.
    pub(crate) fn hashed_in_full(&self) -> bool {
        self.in_order
    }

    /// Moves the finished file into place; returns its size and digest, and `snapshot` if a
    /// hard link to the finished file was made there first (the upload's own bytes, whatever
    /// replaces the file in the folder before it is imported; without it, the import reads
    /// the folder's file).
    pub(crate) fn commit(
        mut self,
        snapshot: Option<PathBuf>,
    ) -> Result<(u64, Sha256Hex, Option<PathBuf>), FsError> {
        if let Some(reason) = self.failed.take() {
            return Err(FsError::Refused(format!("{}: {reason}; nothing was stored", self.vpath)));
        }
        let (size, sha) = if self.hashed_in_full() {
            (self.hashed_to, digest_hex(self.hasher.clone()))
        } else {
            hash_file(&self.temp).map_err(|e| FsError::io("finishing the upload", e))?
        };
        if let Some(mtime) = self.mtime {
            let _ = self.file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(mtime)));
        }
        let snapshot = snapshot.filter(|path| match std::fs::hard_link(&self.temp, path) {
            Ok(()) => true,
            Err(e) => {
                warn!(path = %self.vpath, "could not keep a snapshot of the upload ({e}); it is imported from its folder");
                false
            }
        });
        let moved = if self.exclusive.is_some() {
            rename_no_replace(&self.temp, &self.target).map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => FsError::Refused(format!(
                    "{} already exists: it was created while this exclusive upload was in progress; \
                     nothing was stored",
                    self.vpath
                )),
                _ => FsError::io("finishing the upload", e),
            })
        } else {
            std::fs::rename(&self.temp, &self.target).map_err(|e| FsError::io("finishing the upload", e))
        };
        if let Err(e) = moved {
            if let Some(path) = &snapshot {
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
        self.committed = true;
        Ok((size, sha, snapshot))
    }
}

/// Copies `src` into the empty `dst` for a write into an existing file: a reflink where the
/// filesystem shares blocks (btrfs, XFS), else only the data regions, so that holes stay
/// holes. Runs on a blocking thread. Returns the size copied.
pub(crate) fn copy_existing(src: &File, dst: &File) -> io::Result<u64> {
    use std::os::fd::AsRawFd;
    let size = src.metadata()?.len();
    // SAFETY: FICLONE takes the source descriptor; both are open files we own.
    if unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) } == 0 {
        return Ok(size);
    }
    let mut pos: i64 = 0;
    let end = i64::try_from(size).map_err(io::Error::other)?;
    while pos < end {
        // SAFETY: lseek on a descriptor we own.
        let data = unsafe { libc::lseek(src.as_raw_fd(), pos, libc::SEEK_DATA) };
        if data < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole remains
            }
            return Err(e);
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(src.as_raw_fd(), data, libc::SEEK_HOLE) };
        let hole = if hole < 0 { end } else { hole.min(end) };
        let mut at = data;
        while at < hole {
            let mut from = at;
            let mut to = at;
            let want = usize::try_from(hole - at).unwrap_or(usize::MAX).min(1 << 30);
            // SAFETY: copy_file_range between two descriptors we own, with offsets we own.
            let n = unsafe {
                libc::copy_file_range(src.as_raw_fd(), &mut from, dst.as_raw_fd(), &mut to, want, 0)
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                break;
            }
            at += n as i64;
        }
        pos = hole;
    }
    dst.set_len(size)?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn copying_an_existing_file_keeps_its_bytes_and_its_holes() {
        let dir = tempfile::tempdir().unwrap();
        let src_path = dir.path().join("src");
        let src = File::create(&src_path).unwrap();
        src.write_all_at(b"head", 0).unwrap();
        src.write_all_at(b"tail", 512 << 20).unwrap();
        drop(src);
        let src = File::open(&src_path).unwrap();
        let dst_path = dir.path().join("dst");
        let dst =
            std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&dst_path).unwrap();
        assert_eq!(copy_existing(&src, &dst).unwrap(), (512 << 20) + 4);
        let meta = dst.metadata().unwrap();
        assert_eq!(meta.len(), (512 << 20) + 4);
        assert!(meta.blocks() * 512 < 16 << 20, "the hole was written out: {} blocks", meta.blocks());
        let mut buf = [0u8; 4];
        dst.read_exact_at(&mut buf, 512 << 20).unwrap();
        assert_eq!(&buf, b"tail");
        dst.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"head");
    }
}
