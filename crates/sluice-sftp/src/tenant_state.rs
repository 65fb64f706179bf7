//! What each tenant holds across all its sessions: open handles, spool bytes, names being
//! created exclusively, and the files it just uploaded. Each count is taken through a guard
//! that gives it back on drop, so a session that ends in any state releases everything.

use crate::limits::FdPermit;
use sluice_core::metrics::Metrics;
use sluice_core::{TenantName, VirtualPath};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// A file a tenant uploaded a moment ago, as its client may still ask about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecentUpload {
    pub size: u64,
    /// Seconds since the epoch: the upload's time, or what the client set since.
    pub mtime: u32,
    at: Instant,
}

/// Files remembered per tenant at most; the oldest go first.
const MAX_RECENT_PER_TENANT: usize = 1024;

#[derive(Default)]
struct TenantState {
    handles: usize,
    spool_bytes: u64,
    exclusive: HashSet<VirtualPath>,
    recent: HashMap<VirtualPath, RecentUpload>,
}

impl TenantState {
    fn is_idle(&self) -> bool {
        self.handles == 0 && self.spool_bytes == 0 && self.exclusive.is_empty() && self.recent.is_empty()
    }
}

/// Every tenant's state; one per server.
pub struct TenantStates {
    map: Mutex<HashMap<TenantName, TenantState>>,
    /// Open handles of all tenants are counted here for `/metrics`.
    metrics: Arc<Metrics>,
    /// Per tenant: bytes of requests and replies its sessions may hold queued together.
    queue_budgets: Mutex<HashMap<TenantName, Arc<Semaphore>>>,
    queue_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    TenantHandles(usize),
    Spool(u64),
    ExclusiveBusy,
}

impl TenantStates {
    pub fn new(metrics: Arc<Metrics>, queue_bytes: usize) -> Self {
        Self { map: Mutex::default(), metrics, queue_budgets: Mutex::default(), queue_bytes }
    }

    /// The budget `tenant`'s sessions share for queued requests and replies (one semaphore
    /// per tenant, kept for the server's life: a few bytes per tenant that ever connected).
    pub fn queue_budget(&self, tenant: &TenantName) -> Arc<Semaphore> {
        let mut budgets = self.queue_budgets.lock().unwrap_or_else(|p| p.into_inner());
        budgets
            .entry(tenant.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.queue_bytes.min(Semaphore::MAX_PERMITS))))
            .clone()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TenantName, TenantState>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with<T>(&self, tenant: &TenantName, f: impl FnOnce(&mut TenantState) -> T) -> T {
        let mut map = self.lock();
        let state = map.entry(tenant.clone()).or_default();
        let out = f(state);
        if state.is_idle() {
            map.remove(tenant);
        }
        out
    }

    pub fn open_handles(&self) -> usize {
        usize::try_from(self.metrics.open_handles()).unwrap_or(0)
    }

    /// One more open handle for `tenant`, unless it has `max` already. `fd` is the descriptor
    /// the handle holds, if any; `connection` counts the handles of the SSH connection.
    pub fn take_handle(
        self: &Arc<Self>,
        tenant: &TenantName,
        max: usize,
        fd: Option<FdPermit>,
        connection: Arc<AtomicUsize>,
    ) -> Result<HandleSlot, Refusal> {
        self.with(tenant, |s| {
            if s.handles >= max {
                return Err(Refusal::TenantHandles(max));
            }
            s.handles += 1;
            Ok(())
        })?;
        self.metrics.handle_opened();
        connection.fetch_add(1, Ordering::AcqRel);
        Ok(HandleSlot { states: self.clone(), tenant: tenant.clone(), _fd: fd, connection })
    }

    /// Charges `bytes` more of spool to `tenant`, unless that passes `max`.
    fn charge_spool(&self, tenant: &TenantName, bytes: u64, max: u64) -> Result<(), Refusal> {
        self.with(tenant, |s| {
            if s.spool_bytes.saturating_add(bytes) > max {
                return Err(Refusal::Spool(max));
            }
            s.spool_bytes += bytes;
            Ok(())
        })
    }

    /// An empty spool charge, grown as the upload grows.
    pub fn spool_charge(self: &Arc<Self>, tenant: &TenantName, max: u64) -> SpoolCharge {
        SpoolCharge { states: self.clone(), tenant: tenant.clone(), bytes: 0, max }
    }

    /// Claims `path` for an exclusive create, unless another session holds such a claim.
    pub fn claim_exclusive(
        self: &Arc<Self>,
        tenant: &TenantName,
        path: &VirtualPath,
    ) -> Result<ExclusiveClaim, Refusal> {
        self.with(tenant, |s| {
            if s.exclusive.insert(path.clone()) { Ok(()) } else { Err(Refusal::ExclusiveBusy) }
        })?;
        Ok(ExclusiveClaim { states: self.clone(), tenant: tenant.clone(), path: path.clone() })
    }

    pub fn remember_upload(&self, tenant: &TenantName, path: &VirtualPath, size: u64, mtime: u32) {
        self.with(tenant, |s| {
            if s.recent.len() >= MAX_RECENT_PER_TENANT
                && !s.recent.contains_key(path)
                && let Some(oldest) = s.recent.iter().min_by_key(|(_, r)| r.at).map(|(p, _)| p.clone())
            {
                s.recent.remove(&oldest);
            }
            s.recent.insert(path.clone(), RecentUpload { size, mtime, at: Instant::now() });
        });
    }

    /// The upload of `path` within the last `window`, if there was one.
    pub fn recent(&self, tenant: &TenantName, path: &VirtualPath, window: Duration) -> Option<RecentUpload> {
        self.with(tenant, |s| {
            let found = s.recent.get(path).copied();
            match found {
                Some(r) if r.at.elapsed() <= window => Some(r),
                Some(_) => {
                    s.recent.remove(path);
                    None
                }
                None => None,
            }
        })
    }

    /// Records the modification time a client set on a recent upload; false if there is none.
    pub fn set_recent_mtime(
        &self,
        tenant: &TenantName,
        path: &VirtualPath,
        mtime: u32,
        window: Duration,
    ) -> bool {
        self.with(tenant, |s| match s.recent.get_mut(path) {
            Some(r) if r.at.elapsed() <= window => {
                r.mtime = mtime;
                true
            }
            _ => false,
        })
    }

    pub fn forget_upload(&self, tenant: &TenantName, path: &VirtualPath) -> bool {
        self.with(tenant, |s| s.recent.remove(path).is_some())
    }

    /// Recent uploads directly in `folder`: (file name, upload).
    pub fn recent_in_folder(
        &self,
        tenant: &TenantName,
        folder: &str,
        window: Duration,
    ) -> Vec<(String, RecentUpload)> {
        self.with(tenant, |s| {
            s.recent
                .iter()
                .filter(|(_, r)| r.at.elapsed() <= window)
                .filter_map(|(p, r)| match p.components() {
                    [f, name] if f == folder => Some((name.clone(), *r)),
                    // The root's own files (root routing): `folder` is `layout::ROOT`.
                    [name] if folder.is_empty() => Some((name.clone(), *r)),
                    _ => None,
                })
                .collect()
        })
    }

    /// Forgets recent uploads older than `window` (called now and then).
    pub fn sweep(&self, window: Duration) {
        let mut map = self.lock();
        for state in map.values_mut() {
            state.recent.retain(|_, r| r.at.elapsed() <= window);
        }
        map.retain(|_, s| !s.is_idle());
    }
}

/// An open handle of a tenant (and its descriptor), released on drop.
pub struct HandleSlot {
    states: Arc<TenantStates>,
    tenant: TenantName,
    _fd: Option<FdPermit>,
    connection: Arc<AtomicUsize>,
}

impl Drop for HandleSlot {
    fn drop(&mut self) {
        self.states.with(&self.tenant, |s| s.handles = s.handles.saturating_sub(1));
        self.states.metrics.handle_closed();
        self.connection.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Spool bytes an upload in progress takes, released on drop (when the file is moved into
/// place or thrown away).
pub struct SpoolCharge {
    states: Arc<TenantStates>,
    tenant: TenantName,
    bytes: u64,
    max: u64,
}

impl SpoolCharge {
    /// Makes the charge cover `total` bytes, unless the tenant's spool would pass its bound.
    pub fn grow_to(&mut self, total: u64) -> Result<(), Refusal> {
        if total <= self.bytes {
            return Ok(());
        }
        self.states.charge_spool(&self.tenant, total - self.bytes, self.max)?;
        self.bytes = total;
        Ok(())
    }
}

impl Drop for SpoolCharge {
    fn drop(&mut self) {
        let bytes = self.bytes;
        self.states.with(&self.tenant, |s| s.spool_bytes = s.spool_bytes.saturating_sub(bytes));
    }
}

/// A name being created with CREAT|EXCL by one session, released on drop.
pub struct ExclusiveClaim {
    states: Arc<TenantStates>,
    tenant: TenantName,
    path: VirtualPath,
}

impl Drop for ExclusiveClaim {
    fn drop(&mut self) {
        self.states.with(&self.tenant, |s| s.exclusive.remove(&self.path));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> TenantName {
        TenantName::parse("acme").unwrap()
    }

    fn p(s: &str) -> VirtualPath {
        VirtualPath::resolve(s.as_bytes()).unwrap()
    }

    #[test]
    fn guards_give_everything_back_and_the_tenant_is_forgotten() {
        let states = Arc::new(TenantStates::new(Arc::default(), 1 << 20));
        let conn = Arc::new(AtomicUsize::new(0));
        let a = states.take_handle(&t(), 2, None, conn.clone()).unwrap();
        let b = states.take_handle(&t(), 2, None, conn.clone()).unwrap();
        assert_eq!(states.take_handle(&t(), 2, None, conn.clone()).err(), Some(Refusal::TenantHandles(2)));
        assert_eq!((states.open_handles(), conn.load(Ordering::Relaxed)), (2, 2));
        let mut spool = states.spool_charge(&t(), 100);
        spool.grow_to(60).unwrap();
        assert_eq!(spool.grow_to(101), Err(Refusal::Spool(100)));
        let claim = states.claim_exclusive(&t(), &p("/students/a.csv")).unwrap();
        assert!(states.claim_exclusive(&t(), &p("/students/a.csv")).is_err());
        drop((a, b, spool, claim));
        assert_eq!((states.open_handles(), conn.load(Ordering::Relaxed)), (0, 0));
        assert!(states.lock().is_empty(), "nothing is kept for an idle tenant");
    }

    #[test]
    fn recent_uploads_are_seen_within_the_window_only() {
        let states = TenantStates::new(Arc::default(), 1 << 20);
        let path = p("/students/a.csv");
        states.remember_upload(&t(), &path, 10, 1_000);
        let window = Duration::from_secs(60);
        assert_eq!(states.recent(&t(), &path, window).map(|r| (r.size, r.mtime)), Some((10, 1_000)));
        assert!(states.set_recent_mtime(&t(), &path, 5, window));
        assert_eq!(states.recent_in_folder(&t(), "students", window)[0].1.mtime, 5);
        assert!(states.recent(&t(), &path, Duration::ZERO).is_none());
        assert!(states.lock().is_empty(), "an expired upload is dropped when seen");
    }
}
