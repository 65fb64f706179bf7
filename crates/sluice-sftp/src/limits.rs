//! What one session, one tenant and the whole server may hold: handles, queued bytes, spool
//! bytes and file descriptors. Every figure is a setting; every count is released by a guard's
//! `Drop`, so whatever way a session ends, what it held goes back.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Limits of the SFTP sessions.
#[derive(Debug, Clone)]
pub struct SftpLimits {
    /// Largest file a client may upload.
    pub max_upload_bytes: u64,
    /// Open file and directory handles per session.
    pub max_handles: usize,
    /// Open handles of one tenant across all its sessions.
    pub max_handles_per_tenant: usize,
    /// Bytes one tenant's unfinished uploads may take in the spool (a copy made for a write
    /// into an existing file counts in full).
    pub spool_bytes_per_tenant: u64,
    /// Bytes a client may send on an SFTP channel before sluice has processed them (the
    /// channel's window). The window is refilled only as requests are processed, as OpenSSH
    /// does, so this bounds what a channel can hold, and the session never has to stop
    /// reading (which would stall the connection, see session.rs).
    pub window_bytes: u32,
    /// Bytes of replies a session may have waiting for the client's window. A reply is
    /// charged what it occupies (a READ's buffer), before it is queued.
    pub reply_budget_bytes: usize,
    /// Requests and replies all of a tenant's sessions may have queued together. A session
    /// whose requests would pass it is closed (only a client that pipelines without reading
    /// its replies gets there); replies wait for room.
    pub tenant_queue_bytes: usize,
    /// How long a file that was just uploaded stays visible to its tenant's stat, setstat and
    /// listings after the import worker moved it away (clients check their uploads).
    pub recent_upload: Duration,
}

impl Default for SftpLimits {
    fn default() -> Self {
        Self {
            max_upload_bytes: 10 << 30,
            max_handles: 256,
            max_handles_per_tenant: 1024,
            spool_bytes_per_tenant: 20 << 30,
            window_bytes: 2 << 20,
            reply_budget_bytes: 2 << 20,
            tenant_queue_bytes: 256 << 20,
            recent_upload: Duration::from_secs(120),
        }
    }
}

/// File descriptors the SFTP server may use: the process's limit less a reserve that keeps
/// accepting, logging, the HTTP side and the database working when clients ask for more.
#[derive(Debug)]
pub struct FdBudget {
    limit: usize,
    used: AtomicUsize,
}

impl FdBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self { limit, used: AtomicUsize::new(0) })
    }

    /// Takes a descriptor for a connection, or none if the budget is spent.
    pub fn try_take_connection(self: &Arc<Self>) -> Option<FdPermit> {
        self.try_take(1, self.limit)
    }

    /// Takes `n` descriptors for open files; files may use three quarters of the budget, so
    /// that however many files clients open, new connections can still be accepted.
    pub fn try_take_files(self: &Arc<Self>, n: usize) -> Option<FdPermit> {
        self.try_take(n, self.file_limit())
    }

    /// Descriptors open files may take together.
    pub fn file_limit(&self) -> usize {
        self.limit / 4 * 3
    }

    fn try_take(self: &Arc<Self>, n: usize, limit: usize) -> Option<FdPermit> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            if used + n > limit {
                return None;
            }
            match self.used.compare_exchange_weak(used, used + n, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some(FdPermit { budget: self.clone(), n }),
                Err(now) => used = now,
            }
        }
    }

    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// Descriptors taken from an [`FdBudget`], given back on drop.
#[derive(Debug)]
pub struct FdPermit {
    budget: Arc<FdBudget>,
    n: usize,
}

impl Drop for FdPermit {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.n, Ordering::AcqRel);
    }
}

/// Raises the soft limit on open files to the hard limit (capped at a million) and returns
/// the new soft limit. Linux starts services at 1024 soft even where 500k are allowed.
pub fn raise_fd_limit() -> std::io::Result<usize> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let wanted = lim.rlim_max.min(1 << 20);
    if wanted > lim.rlim_cur {
        let raised = libc::rlimit { rlim_cur: wanted, rlim_max: lim.rlim_max };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = wanted;
        }
    }
    Ok(usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_never_passes_its_limit_and_permits_give_back() {
        let b = FdBudget::new(8);
        let files = b.try_take_files(5).unwrap();
        assert!(b.try_take_files(2).is_none(), "files may take three quarters");
        let more = b.try_take_files(1).unwrap();
        let conns: Vec<_> = (0..2).map(|_| b.try_take_connection().unwrap()).collect();
        assert!(b.try_take_connection().is_none());
        assert_eq!(b.in_use(), 8);
        drop(files);
        assert_eq!(b.in_use(), 3);
        assert!(b.try_take_files(3).is_some());
        drop((more, conns));
        assert_eq!(b.in_use(), 0);
    }
}
