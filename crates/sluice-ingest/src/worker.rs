//! The ingest service: turns upload events into imports, and serves the CLI's import,
//! approve and discard. A pool of workers runs imports of different tenants in parallel; a
//! tenant's imports take turns, in upload order (see [`Ingest::turn`]), and the tenants with
//! waiting uploads are served in turn (see [`Rotation`]).

use crate::run::{ImportContext, ImportError, ImportRequest, Verdict, held_path, import_file};
use jiff::Timestamp;
use sluice_core::import::{ImportTypes, SafeguardSetting};
use sluice_core::metrics::Metrics;
use sluice_core::{Sha256Hex, Trigger, UploadEvent, VirtualPath, is_transfer_temp_name};
use sluice_store::{ImportRecord, ImportStatus, SharedStore, StoredUpload};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tracing::{info, warn};

/// Where uploads wait while they are imported (`DATA_DIR/spool/staging`).
pub fn staging_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("spool").join("staging")
}

/// Where the SFTP server keeps each upload's own bytes until its import
/// (`DATA_DIR/spool/snapshots`, beside the staging folder: a snapshot is staged by a rename).
pub fn snapshots_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("spool").join("snapshots")
}

pub struct Ingest {
    pub store: SharedStore,
    pub types: ImportTypes,
    tenants_root: PathBuf,
    staging: PathBuf,
    /// Uploads' own bytes as they closed (see [`snapshots_dir`]).
    snapshots: PathBuf,
    /// Shared by every import, exclusive for a backup (see [`Ingest::turn`]).
    lock: PathBuf,
    /// `TENANT.lock`: held while one of the tenant's imports runs, by whichever process runs it.
    tenant_locks: PathBuf,
    held: PathBuf,
    reports: PathBuf,
    /// Records' photos, one image store per tenant (`DATA_DIR/photos/TENANT`).
    photos: PathBuf,
    /// How long error reports stay in tenants' `/errors` (`None`: forever).
    error_reports_kept: Option<Duration>,
    /// How long audit log entries are kept (`None`: for ever).
    audit_kept: Option<Duration>,
    /// Per tenant with a settle time, the newest upload whose set was already queued.
    settled: std::sync::Mutex<HashMap<String, i64>>,
    /// Scheduled runs this process took and could not queue yet (key, due time): tried again
    /// at each tick, so a moment's store error skips nothing.
    unqueued: std::sync::Mutex<Vec<(String, i64)>>,
    /// Where processed uploads are kept, and for how long; `None` deletes them at once.
    archive: Option<(PathBuf, Duration)>,
    /// Imports by status, rows by outcome, durations, for `/metrics`.
    metrics: Arc<Metrics>,
    /// Woken when an import ends and its notifications are queued.
    notifier: Option<Arc<Notify>>,
    /// An upload repeating the bytes of an upload of the same file this recently is a
    /// client's retry and is not imported again; `None` imports every upload.
    duplicate_window: Option<Duration>,
}

/// Where an upload's bytes are staged from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Staging {
    /// Its snapshot: the bytes it carried, whatever replaced its file in the folder since.
    FromSnapshot,
    /// Its folder (a sync's or a pull's file, or an upload whose snapshot is gone).
    FromFolder,
}

/// How old a snapshot no upload names must be before it is removed as a leftover.
const SNAPSHOT_GRACE: Duration = Duration::from_secs(3600);

/// How long a claimed upload is reserved for the worker that claimed it.
const LEASE: Duration = Duration::from_secs(300);

impl Ingest {
    pub fn new(store: SharedStore, types: ImportTypes, data_dir: &Path) -> std::io::Result<Self> {
        let me = Self {
            store,
            types,
            tenants_root: data_dir.join("tenants"),
            staging: staging_dir(data_dir),
            snapshots: snapshots_dir(data_dir),
            lock: data_dir.join("spool").join("import.lock"),
            tenant_locks: data_dir.join("spool").join("locks"),
            held: data_dir.join("spool").join("held"),
            reports: data_dir.join("reports"),
            photos: data_dir.join("photos"),
            settled: std::sync::Mutex::default(),
            unqueued: std::sync::Mutex::default(),
            error_reports_kept: None,
            audit_kept: None,
            archive: None,
            metrics: Arc::default(),
            notifier: None,
            duplicate_window: None,
        };
        for d in [&me.staging, &me.snapshots, &me.held, &me.reports, &me.tenant_locks, &me.photos] {
            std::fs::create_dir_all(d)?;
        }
        Ok(me)
    }

    /// Counts imports into `metrics` (shared with the SFTP server and `/metrics`).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Wakes `notifier` whenever an import's notifications are queued.
    pub fn with_notifier(mut self, notifier: Arc<Notify>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Uploads that repeat an upload of the same file with the same bytes within `window`
    /// (rclone retrying after a check of its upload failed, say) are not imported again
    /// (zero: every upload is imported).
    pub fn with_duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = (!window.is_zero()).then_some(window);
        self
    }

    /// Purges audit log entries older than `days` days (0: kept for ever), hourly.
    pub fn with_audit_days(mut self, days: u32) -> Self {
        self.audit_kept = (days > 0).then(|| Duration::from_secs(u64::from(days) * 86_400));
        self
    }

    /// Removes the audit log's entries older than its retention.
    pub fn sweep_audit(&self) -> usize {
        let Some(keep) = self.audit_kept else { return 0 };
        let before = sluice_store::now_ms() - keep.as_millis() as i64;
        self.store.purge_audit(before).unwrap_or_else(|e| {
            warn!("purging the audit log: {e}");
            0
        })
    }

    /// Removes error reports from tenants' `/errors` after `days` days (0: kept forever).
    pub fn with_error_report_days(mut self, days: u32) -> Self {
        self.error_reports_kept = (days > 0).then(|| Duration::from_secs(u64::from(days) * 86_400));
        self
    }

    /// Deletes error reports in the tenants' `/errors` folders older than their retention
    /// (the stored errors stay with the import: the API and the dashboard still show them).
    pub fn sweep_error_reports(&self) -> usize {
        let Some(keep) = self.error_reports_kept else { return 0 };
        let mut removed = 0;
        for tenant in std::fs::read_dir(&self.tenants_root).into_iter().flatten().flatten() {
            let errors = tenant.path().join(sluice_core::layout::ERRORS);
            for file in std::fs::read_dir(&errors).into_iter().flatten().flatten() {
                let name = file.file_name().to_string_lossy().into_owned();
                let old = file
                    .metadata()
                    .ok()
                    .filter(|m| m.is_file())
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.elapsed().ok());
                if name.ends_with("-errors.csv")
                    && old.is_some_and(|age| age > keep)
                    && std::fs::remove_file(file.path()).is_ok()
                {
                    removed += 1;
                }
            }
        }
        removed
    }

    /// Removes from each tenant's image store the images no photo shows any more (their
    /// records were deleted since), with the store locked as a photo import locks it.
    pub fn sweep_photos(&self) -> usize {
        let mut swept = 0;
        for tenant in std::fs::read_dir(&self.photos).into_iter().flatten().flatten() {
            let Ok(name) = tenant.file_name().into_string() else { continue };
            let Ok(_turn) = crate::photos::lock(&tenant.path()) else { continue };
            match crate::photos::sweep(&*self.store, &name, &tenant.path()) {
                Ok(()) => swept += 1,
                Err(e) => warn!(tenant = name, "sweeping photos: {e}"),
            }
        }
        swept
    }

    /// Deletes the files kept for download of imports that can no longer be approved (a
    /// superseded held import's, a failed import's) once they are older than the error
    /// reports' retention; a held import's file stays as long as it waits for a decision.
    pub fn sweep_kept_files(&self) -> usize {
        let Some(keep) = self.error_reports_kept else { return 0 };
        let mut removed = 0;
        for file in std::fs::read_dir(&self.held).into_iter().flatten().flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".held").and_then(|i| i.parse::<i64>().ok()) else { continue };
            let closed = match self.store.import(id) {
                Ok(Some(r)) => r.status != ImportStatus::Held,
                Ok(None) => true,
                Err(_) => false,
            };
            let old = file.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok());
            if closed && old.is_some_and(|age| age > keep) && std::fs::remove_file(file.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// Keeps processed uploads in `DATA_DIR/archive/TENANT/` for `days` days (0: not kept).
    pub fn with_archive(mut self, data_dir: &Path, days: u32) -> Self {
        self.archive =
            (days > 0).then(|| (data_dir.join("archive"), Duration::from_secs(u64::from(days) * 86_400)));
        self
    }

    /// Deletes archived uploads older than the retention period.
    pub fn sweep_archive(&self) -> usize {
        let Some((root, keep)) = &self.archive else { return 0 };
        let mut removed = 0;
        for tenant in std::fs::read_dir(root).into_iter().flatten().flatten() {
            for file in std::fs::read_dir(tenant.path()).into_iter().flatten().flatten() {
                let old = file.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok());
                if old.is_some_and(|age| age > *keep) && std::fs::remove_file(file.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }

    /// The staged copy of a processed upload: archived if retention is on, else deleted.
    pub(crate) fn retire(&self, staged: &Path, tenant: &str, import_id: i64, name: &str) {
        if let Some((root, _)) = &self.archive {
            let dir = root.join(tenant);
            if std::fs::create_dir_all(&dir).is_ok()
                && std::fs::rename(staged, dir.join(format!("{import_id}-{name}"))).is_ok()
            {
                return;
            }
            warn!(tenant, import = import_id, "could not archive the upload; deleting it");
        }
        let _ = std::fs::remove_file(staged);
    }

    /// After a crash: imports that were running never committed (their uploads run again,
    /// see [`Ingest::take_back_abandoned`]), and staged copies of uploads already imported are
    /// leftovers.
    pub fn recover(&self) -> Result<(), ImportError> {
        self.take_back_abandoned()?;
        for entry in std::fs::read_dir(&self.staging).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // `upload-ID`, or `manifest-ID-FILE` (a file a manifest listed): kept while the
            // event is unconsumed (it runs again, from there), a leftover once it is.
            let event = name.strip_prefix("upload-").or_else(|| {
                name.strip_prefix("manifest-").and_then(|rest| rest.split_once('-')).map(|(id, _)| id)
            });
            if let Some(id) = event.and_then(|n| n.parse::<i64>().ok())
                && self.store.upload_consumed(id)?
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        self.sweep_snapshots()?;
        Ok(())
    }

    /// Work a process left when it died mid-import (an import `running`, its upload under a
    /// lease), taken back for every tenant whose turn is free: `running` rows and leases are
    /// made only in the tenant's turn, and a process that fails without dying removes its own
    /// `running` row (see [`Ingest::import_next`]), so a `running` row found by whoever gets
    /// the turn is a dead process's. The row is removed and the tenant's leases released: the
    /// upload is claimed again at once, not when its lease runs out (the server looks every
    /// few seconds; a `sluice sync` or a node killed mid-import is taken over within seconds).
    /// An upload whose import failed with an error keeps its lease, which spaces out the
    /// retries. A tenant whose turn is held is at work and left alone. Returns how many
    /// tenants had work taken back.
    pub fn take_back_abandoned(&self) -> Result<usize, ImportError> {
        let mut taken = 0;
        for tenant in self.store.tenants_at_work()? {
            let Some(_turn) = self.try_turn(&tenant)? else { continue };
            let removed = self.store.remove_interrupted_imports(&tenant)?;
            if removed == 0 {
                continue;
            }
            let released = self.store.release_leases(&tenant, None)?;
            taken += 1;
            info!(
                tenant,
                interrupted = removed,
                uploads = released,
                "work left by a stopped process runs again"
            );
        }
        Ok(taken)
    }

    /// Removes snapshots no waiting upload names (its upload was imported, or the server
    /// stopped between keeping it and recording the upload) once they are an hour old: a
    /// younger one may belong to an upload being recorded right now.
    fn sweep_snapshots(&self) -> Result<usize, ImportError> {
        self.sweep_snapshots_older_than(SNAPSHOT_GRACE)
    }

    /// Snapshots are aged by their inode's change time, which linking them set: their
    /// modification time is the client's (WinSCP, `put -p` and lftp's mirror keep a file's
    /// own, years old).
    fn sweep_snapshots_older_than(&self, grace: Duration) -> Result<usize, ImportError> {
        use std::os::unix::fs::MetadataExt;
        let in_use: HashSet<String> =
            self.store.snapshots_in_use()?.iter().map(|s| s.as_str().to_owned()).collect();
        let now = jiff::Timestamp::now().as_second();
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.snapshots).into_iter().flatten().flatten() {
            let age = entry.metadata().ok().map(|m| now.saturating_sub(m.ctime()));
            if !in_use.contains(&*entry.file_name().to_string_lossy())
                && age.is_some_and(|secs| secs >= 0 && secs as u64 >= grace.as_secs())
                && std::fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The import types a tenant has: those whose folder is one of the tenant's folders.
    pub fn tenant_types(&self, tenant: &sluice_core::Tenant) -> Vec<String> {
        let folders = tenant.layout.import_folders();
        self.types
            .all()
            .iter()
            .filter(|t| t.folder.as_ref().is_some_and(|f| folders.contains(f)))
            .map(|t| t.name.clone())
            .collect()
    }

    /// The trigger for uploads into `folder`: an override for a type living there, or the
    /// tenant's own.
    pub fn folder_trigger(&self, tenant: &sluice_core::Tenant, folder: &str) -> Trigger {
        let lives_here = |ty: &str| {
            self.types.get(ty).and_then(|t| t.folder.as_ref()).is_some_and(|f| f.as_str() == folder)
        };
        // A type with its own schedule waits for it.
        if tenant.type_schedules.iter().any(|(ty, _)| lives_here(ty)) {
            return Trigger::Schedule;
        }
        tenant
            .type_triggers
            .iter()
            .find(|(t, _)| {
                self.types.get(t).and_then(|t| t.folder.as_ref()).is_some_and(|f| f.as_str() == folder)
            })
            .map_or(tenant.trigger, |(_, trigger)| *trigger)
    }

    /// Handles every waiting upload event, one at a time, tenants in turn; returns how many
    /// there were. (The server runs them in parallel: [`Ingest::run_worker`].)
    pub fn drain(&self) -> Result<usize, ImportError> {
        let mut rotation = Rotation::default();
        let mut n = 0;
        while let Some(tenant) = rotation.next(&self.store.waiting_tenants()?, &HashSet::new()) {
            if self.import_next(&tenant)? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Handles the tenant's waiting upload events, in upload order; returns how many.
    fn drain_for(&self, tenant: &str) -> Result<usize, ImportError> {
        let mut n = 0;
        while self.import_next(tenant)? {
            n += 1;
        }
        Ok(n)
    }

    /// Handles the tenant's oldest waiting upload event in the tenant's turn; returns whether
    /// there was one.
    pub fn import_next(&self, tenant: &str) -> Result<bool, ImportError> {
        // Claimed in the turn: a lease never runs out while its import waits for the turn.
        let _turn = self.turn(tenant)?;
        let Some(upload) = self.store.claim_upload(LEASE, Some(tenant))? else { return Ok(false) };
        if let Err(e) = self.contain_crash(&upload, || self.process_upload(&upload)) {
            // Failed, not dead: the `running` row this left goes now (it would read as a dead
            // process's work and be retried at once); the lease stays, and the upload is tried
            // again when it runs out.
            // (In the turn, every other `running` row and lease of the tenant is a dead
            // process's: those are let go at once.)
            let cleanup = self
                .store
                .remove_interrupted_imports(tenant)
                .and_then(|_| self.store.release_leases(tenant, Some(upload.id)));
            if let Err(cleanup) = cleanup {
                warn!(tenant, "after a failed import: {cleanup}");
            }
            return Err(e);
        }
        // Imported, or handled without an import (a manual trigger's file waits in its folder):
        // the upload's snapshot is done with. (Not consumed: it runs again, from the snapshot.)
        if let Some(snapshot) = &upload.event.snapshot
            && self.store.upload_consumed(upload.id)?
        {
            let _ = std::fs::remove_file(self.snapshots.join(snapshot.as_str()));
        }
        Ok(true)
    }

    /// Imports every complete file waiting in a tenant's import folders now (the "Sync
    /// now" button, `sluice sync`). Returns how many files were found.
    pub fn sync_tenant(&self, tenant_name: &str) -> Result<usize, ImportError> {
        let found = self.queue_sync(tenant_name)?;
        // Another process (the server, beside `sluice sync`) may claim some of these events;
        // it imports them too, and in the same order, since the tenant's imports take turns.
        self.drain_for(tenant_name)?;
        Ok(found)
    }

    /// Queues an import of every complete file waiting in a tenant's import folders, for
    /// whichever worker or process claims them (scheduled runs: the server's workers).
    /// Returns how many files were found.
    pub fn queue_sync(&self, tenant_name: &str) -> Result<usize, ImportError> {
        let tenant = self.store.require_tenant(tenant_name)?;
        self.queue_waiting(&tenant, Waiting::All)
    }

    /// The complete files waiting for a tenant's import (a manual or scheduled trigger, a
    /// settle time, or left after a trigger change), as the tenant sees them: (path, bytes,
    /// modified, in ms since the epoch), by path; at most `limit`, and how many there are.
    pub fn waiting_files(
        &self,
        tenant: &sluice_core::Tenant,
        limit: usize,
    ) -> (Vec<(String, u64, i64)>, usize) {
        let root = self.tenants_root.join(tenant.name.as_str());
        let mut dirs: Vec<(String, PathBuf)> = Vec::new();
        if tenant.routing != sluice_core::Routing::Folders {
            dirs.push((String::new(), root.clone()));
        }
        dirs.extend(tenant.layout.import_folders().iter().map(|f| (format!("/{f}"), root.join(f.as_str()))));
        let mut all = Vec::new();
        for (prefix, dir) in dirs {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let Ok(name) = entry.file_name().into_string() else { continue };
                let Ok(meta) = entry.metadata() else { continue };
                if !meta.is_file() || is_transfer_temp_name(&name) {
                    continue;
                }
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_millis() as i64);
                all.push((format!("{prefix}/{name}"), meta.len(), modified));
            }
        }
        all.sort();
        let count = all.len();
        all.truncate(limit);
        (all, count)
    }

    /// Queues an import of every complete file waiting for `tenant` (at its root under a
    /// required name, with root routing, and in its import folders), of one type or of all,
    /// referred-to types first across folders (students before guardians; Clever's schools
    /// before sections before enrollments), so that one sync of a full set resolves every
    /// reference. Returns how many files were queued.
    fn queue_waiting(&self, tenant: &sluice_core::Tenant, scope: Waiting<'_>) -> Result<usize, ImportError> {
        let all = matches!(scope, Waiting::All);
        let allowed = self.tenant_types(tenant);
        let root = self.tenants_root.join(tenant.name.as_str());
        // (depth, virtual path, file on disk)
        // (depth, when it was uploaded, virtual path, file on disk): referred-to types first,
        // and within a type the files in the order they came (the newest last, so it wins).
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let mut waiting: Vec<(usize, Option<std::time::SystemTime>, String, PathBuf)> = Vec::new();
        let mut take = |t: Option<&sluice_core::import::ImportType>, vpath: String, real: PathBuf| {
            if let Some(t) = t
                && self.in_scope(tenant, t, scope)
            {
                waiting.push((self.types.depth(&t.name), modified(&real), vpath, real));
            }
        };
        // Manifests, and files no type reads (their import fails, saying where they belong).
        let mut untyped: Vec<(usize, Option<std::time::SystemTime>, String, PathBuf)> = Vec::new();
        let files_in = |dir: &Path| -> Vec<String> {
            std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.metadata().is_ok_and(|m| m.is_file()))
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !is_transfer_temp_name(n))
                .collect()
        };
        if tenant.routing != sluice_core::Routing::Folders {
            for name in files_in(&root) {
                take(self.types.for_root_upload(&allowed, &name), format!("/{name}"), root.join(&name));
            }
        }
        for folder in tenant.layout.import_folders() {
            let dir = root.join(folder.as_str());
            // A manifest tenant's files are imported through their manifests only.
            let manifest = self.folder_trigger(tenant, folder.as_str()) == Trigger::Manifest;
            for name in files_in(&dir) {
                if manifest && (!all || !name.to_ascii_lowercase().ends_with(".done")) {
                    continue;
                }
                let found =
                    if manifest { None } else { self.types.for_upload(&allowed, folder.as_str(), &name) };
                match found {
                    Some(t) => take(Some(t), format!("/{folder}/{name}"), dir.join(&name)),
                    None if all => untyped.push((
                        0,
                        modified(&dir.join(&name)),
                        format!("/{folder}/{name}"),
                        dir.join(&name),
                    )),
                    None => {}
                }
            }
        }
        waiting.extend(untyped);
        waiting.sort();
        let mut found = 0;
        for (_, _, vpath, real) in waiting {
            let Ok(path) = VirtualPath::resolve(vpath.as_bytes()) else { continue };
            let (size, sha256) = match hash_file(&real) {
                Ok(found) => found,
                // Taken meanwhile (an import staged it, the tenant removed it): nothing to queue.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                // One file sluice cannot read (an operator's, with other permissions) holds up
                // none of the others.
                Err(e) => {
                    warn!(tenant = %tenant.name, %path, "not queued: cannot read the file: {e}");
                    continue;
                }
            };
            self.store.request_import(&UploadEvent {
                tenant: tenant.name.clone(),
                path,
                size,
                sha256,
                at_ms: sluice_store::now_ms(),
                snapshot: None,
            })?;
            found += 1;
        }
        Ok(found)
    }

    /// Whether a waiting file of type `t` is taken by a sync of `scope`.
    fn in_scope(
        &self,
        tenant: &sluice_core::Tenant,
        t: &sluice_core::import::ImportType,
        scope: Waiting<'_>,
    ) -> bool {
        let own_schedule = tenant.type_schedules.iter().any(|(ty, _)| *ty == t.name);
        match scope {
            Waiting::All => true,
            Waiting::TenantSchedule => !own_schedule,
            Waiting::Type(name) => t.name == name,
            Waiting::Settled => {
                !own_schedule
                    && t.folder
                        .as_ref()
                        .is_some_and(|f| self.folder_trigger(tenant, f.as_str()) == Trigger::OnUpload)
            }
        }
    }

    /// Queues what is due: the syncs of scheduled tenants and of types with their own
    /// schedule whose next run falls in (`since`, `now`], and the sets of tenants with a settle
    /// time whose uploads have been quiet that long. The workers import them, tenants in turn.
    pub fn run_schedules(&self, since: Timestamp, now: Timestamp) {
        let tenants = match self.store.tenants() {
            Ok(t) => t,
            Err(e) => return warn!("scheduler: {e}"),
        };
        // Due in (since, now], and this server's to run: servers sharing the store each see
        // the due time, and the first to ask runs it (`key` names the schedule); its due time.
        let owner = sluice_core::spool::owner_tag();
        let due = |t: &sluice_core::Tenant, cron: &sluice_core::schedule::Cron, key: &str| {
            let at = match next_run(cron, &t.timezone, since) {
                Ok(Some(at)) if at <= now => at.as_millisecond(),
                Ok(_) => return None,
                Err(e) => {
                    warn!(tenant = %t.name, "schedule: {e}");
                    return None;
                }
            };
            let taken = self.store.claim_due(key, at, owner).unwrap_or_else(|e| {
                warn!(tenant = %t.name, "schedule: {e}");
                false
            });
            taken.then_some(at)
        };
        // Runs taken by a server that ended before it queued them (run here, once), and this
        // server's own that it could not queue at their time.
        let mut retaken =
            self.store.retake_due("import/", owner, &sluice_core::spool::other_ended).unwrap_or_else(|e| {
                warn!("scheduler: taking over runs of a stopped server: {e}");
                Vec::new()
            });
        let unqueued = std::mem::take(&mut *self.unqueued.lock().unwrap_or_else(|p| p.into_inner()));
        retaken.extend(unqueued);
        let mut orphans: Vec<&(String, i64)> = retaken.iter().collect();
        let finish = |key: &str, at: i64| {
            if let Err(e) = self.store.finish_due(key, at) {
                warn!("schedule {key}: {e}");
            }
        };
        for t in tenants.iter().filter(|t| !t.disabled) {
            let queue = |scope: Waiting<'_>, what: &str| {
                info!(tenant = %t.name, "{what}");
                match self.queue_waiting(t, scope) {
                    Ok(_) => true,
                    Err(e) => {
                        warn!(tenant = %t.name, "{what} failed (tried again in a moment): {e}");
                        false
                    }
                }
            };
            // A scheduled run is done once queued; else it is tried again at the next tick.
            let queued = |key: &str, at: i64, ok: bool| {
                if ok {
                    finish(key, at);
                } else {
                    let mut unqueued = self.unqueued.lock().unwrap_or_else(|p| p.into_inner());
                    if !unqueued.iter().any(|(k, a)| k == key && *a == at) {
                        unqueued.push((key.to_owned(), at));
                    }
                }
            };
            let mut schedules: Vec<(String, &sluice_core::schedule::Cron, Waiting<'_>, String)> = Vec::new();
            if let (Trigger::Schedule, Some(cron)) = (t.trigger, &t.schedule) {
                let what = format!("scheduled import ({cron})");
                schedules.push((format!("import/{}", t.name), cron, Waiting::TenantSchedule, what));
            }
            for (type_name, cron) in &t.type_schedules {
                let what = format!("scheduled import of {type_name} ({cron})");
                schedules.push((
                    format!("import/{}/{type_name}", t.name),
                    cron,
                    Waiting::Type(type_name),
                    what,
                ));
            }
            for (key, cron, scope, what) in schedules {
                // The due times of this schedule still to queue (taken over, or not queued at
                // their time) and the one due now: one queue of what waits answers them all.
                let mut owed: Vec<i64> =
                    retaken.iter().filter(|(k, _)| *k == key).map(|(_, at)| *at).collect();
                orphans.retain(|(k, _)| *k != key);
                let now_due = due(t, cron, &key);
                owed.extend(now_due);
                if owed.is_empty() {
                    continue;
                }
                let ok = if now_due.is_some() {
                    queue(scope, &what)
                } else {
                    queue(scope, &format!("{what}, due before and not queued then"))
                };
                for at in owed {
                    queued(&key, at, ok);
                }
            }
            if t.settle_secs == 0 {
                // The settle time was just turned off: what waited for it is imported now.
                let was_settling =
                    self.settled.lock().unwrap_or_else(|p| p.into_inner()).remove(t.name.as_str());
                if was_settling.is_some() {
                    queue(Waiting::Settled, "settle time turned off: importing what waited for it");
                }
            }
            if t.settle_secs > 0 {
                let last = match self.store.last_upload_ms(t.name.as_str()) {
                    Ok(Some(last)) => last,
                    Ok(None) => continue,
                    Err(e) => {
                        warn!(tenant = %t.name, "settle: {e}");
                        continue;
                    }
                };
                let quiet = now.as_millisecond() - last >= i64::from(t.settle_secs) * 1000;
                let mut settled = self.settled.lock().unwrap_or_else(|p| p.into_inner());
                settled.entry(t.name.to_string()).or_insert(0);
                let done = settled.get(t.name.as_str()).is_some_and(|s| *s >= last);
                if quiet && !done {
                    settled.insert(t.name.to_string(), last);
                    drop(settled);
                    queue(
                        Waiting::Settled,
                        &format!("uploads quiet for {} s: importing the set", t.settle_secs),
                    );
                }
            }
        }
        // Taken over, but the schedule is gone (or its tenant disabled) since: nothing to run.
        for (key, at) in orphans {
            info!("schedule {key}: due at {at} ms, left by a stopped server, is no longer scheduled");
            finish(key, *at);
        }
    }

    /// Runs `import` for one upload; should it panic (a bug: no input may do that), the
    /// upload gets a failed entry saying so instead of being claimed again after its lease,
    /// crashing each time, and the file is kept for the report. The import's transaction
    /// rolled back as the panic unwound, so nothing of it was applied.
    fn contain_crash(
        &self,
        upload: &StoredUpload,
        import: impl FnOnce() -> Result<Option<ImportRecord>, ImportError>,
    ) -> Result<Option<ImportRecord>, ImportError> {
        let panic = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(import)) {
            Ok(outcome) => return outcome,
            Err(panic) => panic,
        };
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        let staged = self.staging.join(format!("upload-{}", upload.id));
        let kept = self.staging.join(format!("crashed-upload-{}", upload.id));
        let file = upload.event.path.components().last().map_or("-", String::as_str).to_owned();
        let message = if std::fs::rename(&staged, &kept).is_ok() {
            format!(
                "sluice failed on this file with an internal error ({what}); nothing was imported. \
                 Please report it: the file is kept as {}",
                kept.display()
            )
        } else {
            format!(
                "sluice failed on this file with an internal error ({what}); nothing was imported. Please report it"
            )
        };
        tracing::error!(tenant = %upload.event.tenant, path = %upload.event.path, "{message}");
        let id = self.store.record_failed_import(
            upload.event.tenant.as_str(),
            "-",
            &file,
            "upload",
            Some(upload.id),
            &message,
        )?;
        Ok(self.store.import(id)?)
    }

    /// Stages an upload from its snapshot, and takes the file out of its folder if it is still
    /// that upload's (a newer upload of the same name stays, for its own import).
    fn stage_snapshot(
        &self,
        upload: &StoredUpload,
        source: &Path,
        staged: &Path,
    ) -> Result<Staging, ImportError> {
        let Some(snapshot) = &upload.event.snapshot else { return Ok(Staging::FromFolder) };
        let snapshot = self.snapshots.join(snapshot.as_str());
        match std::fs::rename(&snapshot, staged) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                warn!(upload = upload.id, path = %upload.event.path, "the upload's snapshot is gone; importing the file in its folder");
                return Ok(Staging::FromFolder);
            }
            Err(e) => {
                return Err(ImportError::Io { what: format!("staging {}", upload.event.path), source: e });
            }
        }
        self.take_out_of_folder(upload, source, staged);
        Ok(Staging::FromSnapshot)
    }

    /// Removes an upload's file from its folder if it is the staged upload itself (one file,
    /// two names), and leaves any other there. (Removed meanwhile, the upload is imported all
    /// the same: it counts from its close; lftp's mirror removes a file before sending it
    /// again.) The file is moved aside before it is compared, so that a newer upload renamed
    /// onto the name in between is never removed: one that is not this upload's is put back,
    /// or, if the name was taken again meanwhile, kept in staging (`displaced-N`) and said.
    fn take_out_of_folder(&self, upload: &StoredUpload, source: &Path, staged: &Path) {
        use std::os::unix::fs::MetadataExt;
        let aside = self.staging.join(format!("taking-{}", upload.id));
        let is_this_upload = |aside: &Path| match (std::fs::metadata(aside), std::fs::metadata(staged)) {
            (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
            _ => false,
        };
        // A try that stopped with the file aside: this upload's goes, another's goes back
        // (never over a newer one); if it cannot, the folder is left alone.
        if aside.exists() {
            if is_this_upload(&aside) {
                let _ = std::fs::remove_file(&aside);
            } else {
                self.put_back(upload, &aside, source);
            }
            if aside.exists() {
                return;
            }
        }
        if std::fs::rename(source, &aside).is_err() {
            return; // gone already
        }
        if is_this_upload(&aside) {
            let _ = std::fs::remove_file(&aside);
            return;
        }
        // Another upload's file: back where it was, unless the name is taken again.
        self.put_back(upload, &aside, source);
    }

    /// Puts a file moved aside back at `source` without replacing anything there (a hard link,
    /// then the aside name goes). If a newer file took the name meanwhile, the one aside is
    /// kept in staging as `displaced-N` and said; any other failure leaves it aside, said.
    fn put_back(&self, upload: &StoredUpload, aside: &Path, source: &Path) {
        match std::fs::hard_link(aside, source) {
            Ok(()) => {
                let _ = std::fs::remove_file(aside);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let displaced = self.staging.join(format!("displaced-{}", upload.id));
                match std::fs::rename(aside, &displaced) {
                    Ok(()) => warn!(
                        upload = upload.id, path = %upload.event.path, kept = %displaced.display(),
                        "a file uploaded while this upload was staged was replaced again meanwhile; kept aside"
                    ),
                    Err(e) => {
                        warn!(upload = upload.id, path = %upload.event.path, kept = %aside.display(), "could not keep a displaced file apart: {e}")
                    }
                }
            }
            Err(e) => warn!(
                upload = upload.id, path = %upload.event.path, kept = %aside.display(),
                "could not put a file back in its folder: {e}"
            ),
        }
    }

    fn process_upload(&self, upload: &StoredUpload) -> Result<Option<ImportRecord>, ImportError> {
        let tenant_name = upload.event.tenant.as_str();
        let Some(tenant) = self.store.tenant(tenant_name)? else {
            self.store.consume_upload(upload.id, None)?;
            return Ok(None);
        };
        let allowed = self.tenant_types(&tenant);
        // A file in a folder, or at the root under a type's required name (root routing).
        let (folder, name, found) = match upload.event.path.components() {
            [folder, name] => (folder.as_str(), name.as_str(), self.types.for_upload(&allowed, folder, name)),
            [name] => {
                let found = self.types.for_root_upload(&allowed, name);
                (sluice_core::layout::ROOT, name.as_str(), found)
            }
            _ => {
                self.store.consume_upload(upload.id, None)?;
                return Ok(None);
            }
        };
        // A root file follows the trigger of its type's folder.
        let trigger_folder = match (folder, found.and_then(|t| t.folder.as_ref())) {
            (sluice_core::layout::ROOT, Some(f)) => f.as_str(),
            _ => folder,
        };
        let trigger = self.folder_trigger(&tenant, trigger_folder);
        if trigger == Trigger::Manifest
            && name.to_ascii_lowercase().ends_with(".done")
            && folder != sluice_core::layout::ROOT
        {
            self.process_manifest(&tenant, folder, name, upload.id)?;
            return Ok(None);
        }
        let Some(import_type) = found else {
            // Nothing can read this file, whatever the trigger: say where it belongs now, and
            // leave it where it is.
            let message = self.no_type_message(&allowed, folder, name);
            let id = self.store.record_failed_import(
                tenant_name,
                "-",
                name,
                "upload",
                Some(upload.id),
                &message,
            )?;
            warn!(tenant = tenant_name, path = %upload.event.path, import = id, "{message}");
            return Ok(self.store.import(id)?);
        };
        // A manifest's data files wait for it even during a sync; the others wait for the
        // sync or the schedule unless the trigger is on_upload.
        // With a settle time, uploads wait until the tenant's uploads have been quiet that long;
        // the scheduler then queues the set (`run_schedules`).
        let settling = trigger == Trigger::OnUpload && tenant.settle_secs > 0;
        if trigger == Trigger::Manifest || ((trigger != Trigger::OnUpload || settling) && !upload.requested) {
            self.store.consume_upload(upload.id, None)?;
            return Ok(None);
        }
        // Move the upload out of the tenant's folder first, so that a new upload of the same
        // name can neither change it mid-import nor be deleted with it afterwards.
        let staged = self.staging.join(format!("upload-{}", upload.id));
        let source = self.tenants_root.join(tenant_name).join(folder).join(name);
        // (Already staged by an earlier try that did not finish: imported from there, and its
        // folder's file taken out if that try stopped before it could.)
        if staged.exists() && upload.event.snapshot.is_some() {
            self.take_out_of_folder(upload, &source, &staged);
        } else if !staged.exists() {
            match self.stage_snapshot(upload, &source, &staged)? {
                Staging::FromSnapshot => {}
                Staging::FromFolder => match std::fs::rename(&source, &staged) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        // Removed by the tenant, or already imported under a newer upload event.
                        self.store.consume_upload(upload.id, None)?;
                        return Ok(None);
                    }
                    Err(e) => {
                        return Err(ImportError::Io {
                            what: format!("staging {}", upload.event.path),
                            source: e,
                        });
                    }
                },
            }
        }
        if let Some(original) = self.retry_of(upload, &staged)? {
            let _ = std::fs::remove_file(&staged);
            self.store.consume_as_duplicate(upload.id, original)?;
            info!(
                tenant = tenant_name,
                path = %upload.event.path,
                upload = upload.id,
                "not imported again: the same bytes as upload {original} of this file moments ago (a client's retry)"
            );
            return Ok(None);
        }
        let record = self.run_in_turn(ImportRequest {
            upload_id: Some(upload.id),
            ..ImportRequest::new(tenant_name, import_type, &staged, name, "upload")
        })?;
        self.retire(&staged, tenant_name, record.id, name);
        Ok(Some(record))
    }

    /// The earlier upload `upload` repeats, if it is a client's retry: the store names an
    /// upload of the same file with the same bytes within the window that was (or is being)
    /// imported, and the staged file really holds those bytes (the folder may have held a
    /// newer upload by the time this one was staged; that one is imported as usual).
    fn retry_of(&self, upload: &StoredUpload, staged: &Path) -> Result<Option<i64>, ImportError> {
        let Some(window) = self.duplicate_window else { return Ok(None) };
        let since = upload.event.at_ms - window.as_millis() as i64;
        let Some(original) = self.store.retried_upload(upload, since)? else { return Ok(None) };
        let (_, sha256) = hash_file(staged)
            .map_err(|e| ImportError::Io { what: format!("reading {}", upload.event.path), source: e })?;
        Ok((sha256 == upload.event.sha256).then_some(original))
    }

    pub(crate) fn tenants_root(&self) -> &Path {
        &self.tenants_root
    }

    pub(crate) fn staging(&self) -> &Path {
        &self.staging
    }

    /// Where records' photos are kept (`DATA_DIR/photos`).
    pub fn photos_dir(&self) -> &Path {
        &self.photos
    }

    pub(crate) fn no_type_message(&self, allowed: &[String], folder: &str, name: &str) -> String {
        if folder == sluice_core::layout::ROOT {
            let names = self.types.root_files(allowed);
            return format!(
                "no import type takes {name} at the root for this tenant; upload one of {}",
                if names.is_empty() {
                    "none (this tenant's types have no required file names)".to_owned()
                } else {
                    names.join(", ")
                }
            );
        }
        let by_name = self.types.all().iter().find(|t| {
            allowed.contains(&t.name) && t.file_name.as_deref().is_some_and(|f| f.eq_ignore_ascii_case(name))
        });
        match by_name.and_then(|t| t.folder.as_ref()) {
            Some(right) => {
                format!("{name} was put in /{folder}, but it belongs in /{right}; upload it there")
            }
            None => format!(
                "no import type reads /{folder}/{name} for this tenant (types: {}); check the folder and file name",
                if allowed.is_empty() { "none".to_owned() } else { allowed.join(", ") }
            ),
        }
    }

    /// The rules and places `req` runs under: the tenant's safeguard settings `settings`
    /// applied to its type, and the references of other types to it.
    fn context<'a>(
        &'a self,
        req: &ImportRequest<'a>,
        settings: &'a [SafeguardSetting],
        blackout: Option<sluice_core::Blackout>,
    ) -> ImportContext<'a> {
        let t = req.import_type;
        ImportContext {
            blackout,
            photos_dir: &self.photos,
            photo_target: t.photos.as_ref().and_then(|p| self.types.get(&p.target)),
            reports_dir: &self.reports,
            errors_dir: Some(self.tenants_root.join(req.tenant).join("errors")),
            held_dir: &self.held,
            check_references: true,
            safeguard: t.safeguard.for_tenant(&t.name, settings),
            safeguard_settings: settings,
            referrers: self.referrers_of(t),
        }
    }

    /// The references of every type to `t`'s records (a student's guardians), as the store
    /// counts and follows them when records of `t` are deleted.
    pub fn referrers_of(&self, t: &sluice_core::import::ImportType) -> Vec<sluice_store::Referrer> {
        self.types
            .referrers_of(&t.name)
            .into_iter()
            .map(|(from, r)| sluice_store::Referrer {
                from_type: from.name.clone(),
                path: format!("$[{}]", r.column),
                to_type: t.name.clone(),
                on_delete: r.on_delete,
                prefix: t.key.len() > 1,
            })
            .collect()
    }

    /// Deletes records of a CSV type by hand (the CLI's `records delete`, the API's DELETE, the
    /// dashboard's confirmed button), in the tenant's turn, so no import plans against records
    /// that change under it: one transaction (see `Records::delete_records`: unknown keys refuse
    /// it whole; referring records follow their reference's `on_delete`, `hold` refusing until
    /// `confirmed`; a tombstone remains, so the import that carries a key again says so).
    pub fn delete_records(
        &self,
        tenant: &str,
        type_name: &str,
        keys: &[String],
        by: &str,
        confirmed: bool,
    ) -> Result<sluice_store::Deletion, DeleteError> {
        let t = self.deletable(type_name)?;
        let referrers = self.referrers_of(t);
        let _turn = self.turn(tenant)?;
        Ok(self.store.delete_records(tenant, type_name, keys, by, &referrers, confirmed)?)
    }

    /// The CSV type whose records may be deleted by hand: a package's records change with it.
    pub fn deletable(&self, type_name: &str) -> Result<&sluice_core::import::ImportType, DeleteError> {
        match self.types.get(type_name) {
            Some(t) if t.format == sluice_core::import::TypeFormat::Csv => Ok(t),
            _ if self.types.has_records_of(type_name) => Err(DeleteError::Package(type_name.to_owned())),
            _ => Err(DeleteError::NoSuchType(type_name.to_owned())),
        }
    }

    /// A tenant's imports run one at a time across processes (the server's workers and the
    /// CLI): each plans its changes, references and safeguard against the records the one
    /// before it left, and applies them before the next one reads. Imports of different
    /// tenants run side by side (they read and write only their own tenant's records). OS
    /// file locks, released on drop and by a process that dies: `spool/locks/TENANT.lock`
    /// exclusive, and `spool/import.lock` shared, so that a backup can wait for every import
    /// to end. Leases and `running` imports are made only in the turn (see
    /// [`Ingest::take_back_abandoned`]).
    pub fn turn(&self, tenant: &str) -> Result<Turn, ImportError> {
        let path = self.tenant_lock(tenant)?;
        let all = self.lock_file(&self.lock, Lock::Shared)?;
        let tenant = self.lock_file(&path, Lock::Exclusive)?;
        Ok(Turn { _tenant: tenant, _all: all })
    }

    /// The tenant's turn if no one has it now (`None`: an import of the tenant is running).
    pub fn try_turn(&self, tenant: &str) -> Result<Option<Turn>, ImportError> {
        let path = self.tenant_lock(tenant)?;
        let all = self.lock_file(&self.lock, Lock::Shared)?;
        let io = |source| ImportError::Io { what: format!("locking {}", path.display()), source };
        let file =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Turn { _tenant: file, _all: all })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
        }
    }

    fn tenant_lock(&self, tenant: &str) -> Result<PathBuf, ImportError> {
        // A tenant name is a safe file name (`TenantName`); anything else is no tenant.
        let name = sluice_core::TenantName::parse(tenant)
            .map_err(|_| sluice_store::StoreError::NoSuchTenant(tenant.to_owned()))?;
        Ok(self.tenant_locks.join(format!("{name}.lock")))
    }

    fn lock_file(&self, path: &Path, how: Lock) -> Result<std::fs::File, ImportError> {
        let io = |source| ImportError::Io { what: format!("locking {}", path.display()), source };
        let file =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(io)?;
        match how {
            Lock::Shared => file.lock_shared(),
            Lock::Exclusive => file.lock(),
        }
        .map_err(io)?;
        Ok(file)
    }

    /// What importing this file would do now, with nothing changed.
    pub fn dry_run(&self, req: ImportRequest<'_>) -> Result<Verdict, ImportError> {
        let _turn = self.turn(req.tenant)?;
        let tenant = self.store.require_tenant(req.tenant)?;
        let blackout = tenant.blackout_at(Timestamp::now());
        crate::run::dry_run(&*self.store, &req, &self.context(&req, &tenant.safeguards, blackout))
    }

    /// Runs one import, in its tenant's turn (see [`Ingest::turn`]).
    pub fn run(&self, req: ImportRequest<'_>) -> Result<ImportRecord, ImportError> {
        let _turn = self.turn(req.tenant)?;
        self.run_in_turn(req)
    }

    /// Runs one import and copies its error report into the tenant's /errors folder; the
    /// caller holds the turn.
    pub(crate) fn run_in_turn(&self, req: ImportRequest<'_>) -> Result<ImportRecord, ImportError> {
        let (tenant, t, file_name) = (req.tenant, req.import_type, req.file_name);
        let started = std::time::Instant::now();
        let tenant_now = self.store.require_tenant(req.tenant)?;
        let blackout = tenant_now.blackout_at(Timestamp::now());
        // (The error report is put in the tenant's /errors before the outcome is committed.)
        let record = import_file(&*self.store, &req, &self.context(&req, &tenant_now.safeguards, blackout))?;
        let c = record.counts;
        let rows = [c.added, c.updated, c.unchanged, c.deleted, c.rejected];
        self.metrics.import_finished(record.status.as_str(), rows, started.elapsed());
        match self.store.superseded_by(record.id) {
            Ok(older) if !older.is_empty() => {
                self.metrics.imports_superseded(older.len() as u64);
                info!(tenant, import = record.id, superseded = ?older, "older held imports superseded");
            }
            Ok(_) => {}
            Err(e) => warn!(tenant, import = record.id, "could not list the imports it superseded: {e}"),
        }
        // Queued, not sent: a slow or broken mail server never holds up or fails an import.
        match self.store.queue_deliveries(record.id) {
            Ok(n) if n > 0 => {
                if let Some(n) = &self.notifier {
                    n.notify_one();
                }
            }
            Ok(_) => {}
            Err(e) => warn!(tenant, import = record.id, "could not queue notifications: {e}"),
        }
        info!(
            tenant, import = record.id, file = file_name, r#type = %t.name, status = record.status.as_str(),
            rows = c.rows, added = c.added, updated = c.updated, unchanged = c.unchanged, deleted = c.deleted,
            rejected = c.rejected, ms = started.elapsed().as_millis() as u64, "import finished"
        );
        Ok(record)
    }

    /// Applies a held import despite the deletion safeguard.
    /// Applies a held import past its safeguard; `by` says who decided (kept on the import).
    pub fn approve(&self, id: i64, by: &str) -> Result<ImportRecord, ApproveError> {
        // Status checked in the tenant's turn: two approvals, or an approval and a discard,
        // cannot both act on one held import.
        let _turn = self.turn_of_import(id)?;
        let record = self.store.import(id)?.ok_or(ApproveError::NoSuchImport(id))?;
        if let (ImportStatus::Superseded, Some(by)) = (record.status, record.superseded_by) {
            return Err(ApproveError::Superseded { id, by });
        }
        if record.status != ImportStatus::Held {
            return Err(ApproveError::NotHeld(id, record.status.as_str()));
        }
        let t = self
            .types
            .get(&record.type_name)
            .ok_or_else(|| ApproveError::NoType(record.type_name.clone()))?;
        let file = held_path(&self.held, id);
        self.store.record_approval(id, by)?;
        // A newer import may supersede it between here and the approval's write transaction
        // (if imports ever run beside approvals): the store checks again there, and refuses.
        let done = self
            .run_in_turn(ImportRequest {
                approved: true,
                existing_import: Some(id),
                ..ImportRequest::new(&record.tenant, t, &file, &record.file_name, &record.source)
            })
            .map_err(|e| match e {
                ImportError::Store(sluice_store::StoreError::Superseded { id, by }) => {
                    ApproveError::Superseded { id, by }
                }
                e => ApproveError::Import(e),
            })?;
        if !matches!(done.status, ImportStatus::Held | ImportStatus::Failed) {
            // Held again (the records changed since): the file waits for the next decision;
            // failed: it is the only copy of what was sent, kept for download.
            let _ = std::fs::remove_file(&file);
        }
        Ok(done)
    }

    pub fn discard(&self, id: i64, by: &str) -> Result<(), ApproveError> {
        let _turn = self.turn_of_import(id)?;
        let record = self.store.import(id)?.ok_or(ApproveError::NoSuchImport(id))?;
        if record.status != ImportStatus::Held {
            return Err(ApproveError::NotHeld(id, record.status.as_str()));
        }
        self.store.discard_import(id, by)?;
        let _ = std::fs::remove_file(held_path(&self.held, id));
        Ok(())
    }

    /// The turn of the tenant an import belongs to.
    fn turn_of_import(&self, id: i64) -> Result<Turn, ApproveError> {
        let record = self.store.import(id)?.ok_or(ApproveError::NoSuchImport(id))?;
        Ok(self.turn(&record.tenant)?)
    }

    /// Imports uploads as they are recorded, `workers` at a time (tenants in turn, at most
    /// one import of a tenant at once), until `shutdown` resolves; then starts nothing new,
    /// lets the imports running finish, and returns. (Killed instead, a running import
    /// commits nothing: its upload is claimed again at the next start, see [`Ingest::recover`].)
    pub async fn run_worker(
        self: Arc<Self>,
        workers: usize,
        wake: Arc<Notify>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let workers = workers.max(1);
        tokio::pin!(shutdown);
        let scheduler = tokio::spawn(self.clone().run_scheduler(wake.clone()));
        let mut rotation = Rotation::default();
        let mut busy: HashSet<String> = HashSet::new();
        let mut tenants: HashMap<tokio::task::Id, String> = HashMap::new();
        let mut running = tokio::task::JoinSet::new();
        let (mut stopping, mut pause) = (false, false);
        info!(workers, "import workers started");
        loop {
            while !stopping && !pause && running.len() < workers {
                let me = self.clone();
                let waiting = match tokio::task::spawn_blocking(move || me.store.waiting_tenants()).await {
                    Ok(Ok(waiting)) => waiting,
                    Ok(Err(e)) => {
                        warn!("import workers: {e}");
                        pause = true;
                        break;
                    }
                    Err(e) => {
                        warn!("import workers: {e}");
                        pause = true;
                        break;
                    }
                };
                let Some(tenant) = rotation.next(&waiting, &busy) else { break };
                busy.insert(tenant.clone());
                let (me, name) = (self.clone(), tenant.clone());
                let task = running.spawn_blocking(move || me.import_next(&name));
                tenants.insert(task.id(), tenant);
            }
            tokio::select! {
                _ = &mut shutdown, if !stopping => {
                    stopping = true;
                    if !running.is_empty() {
                        info!("waiting for {} running import(s) to finish", running.len());
                    }
                }
                Some(done) = running.join_next_with_id() => {
                    let (id, outcome) = match done {
                        Ok((id, outcome)) => (id, outcome.map(|_| ()).map_err(|e| e.to_string())),
                        Err(e) => (e.id(), Err(format!("crashed: {e}"))),
                    };
                    let tenant = tenants.remove(&id).unwrap_or_default();
                    busy.remove(&tenant);
                    if let Err(e) = outcome {
                        // Its upload stays claimed until the lease ends; look again later
                        // rather than at once (the store may be failing).
                        warn!(tenant, "import worker: {e}");
                        pause = true;
                    }
                }
                _ = wake.notified() => pause = false,
                // Leases of a crashed process expire; look again now and then.
                _ = tokio::time::sleep(Duration::from_secs(5)) => pause = false,
            }
            if stopping && running.is_empty() {
                break;
            }
        }
        scheduler.abort();
    }

    /// Queues scheduled syncs (and sweeps the archive hourly); the workers import them.
    async fn run_scheduler(self: Arc<Self>, wake: Arc<Notify>) {
        let mut last_tick = Timestamp::now();
        let mut last_sweep = std::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let since = last_tick;
            last_tick = Timestamp::now();
            let now = last_tick;
            let sweep = last_sweep.elapsed() > Duration::from_secs(3600);
            if sweep {
                last_sweep = std::time::Instant::now();
            }
            let me = self.clone();
            let work = move || {
                me.run_schedules(since, now);
                if let Err(e) = me.take_back_abandoned() {
                    warn!("taking back work left by a stopped process: {e}");
                }
                if sweep {
                    // This server is alive: its owner file says so by its age.
                    sluice_core::spool::refresh_owner();
                    if let Err(e) = me.sweep_snapshots() {
                        warn!("sweeping snapshots: {e}");
                    }
                    me.sweep_archive();
                    me.sweep_error_reports();
                    me.sweep_kept_files();
                    me.sweep_photos();
                    me.sweep_audit();
                    // Due times a day old are asked for by no one any more.
                    let day_ago = sluice_store::now_ms() - 86_400_000;
                    if let Err(e) = me.store.forget_due_claims(day_ago) {
                        warn!("forgetting scheduled runs: {e}");
                    }
                }
            };
            if let Err(e) = tokio::task::spawn_blocking(work).await {
                warn!("scheduler crashed: {e}");
            }
            wake.notify_one();
        }
    }
}

/// Which waiting files a sync queues.
#[derive(Debug, Clone, Copy)]
enum Waiting<'s> {
    /// Every file (`sluice sync`, "Sync now").
    All,
    /// The tenant's schedule: every type but those with a schedule of their own.
    TenantSchedule,
    /// A type's own schedule.
    Type(&'s str),
    /// A settled set: the types imported on upload.
    Settled,
}

/// A tenant's turn to import (see [`Ingest::turn`]); given back when dropped.
pub struct Turn {
    _tenant: std::fs::File,
    _all: std::fs::File,
}

enum Lock {
    Shared,
    Exclusive,
}

/// Whose upload is imported next: of the tenants with waiting uploads and no import running,
/// the one served longest ago (never served: first), then the one waiting longest. A tenant
/// with fifty files queued holds one worker at a time, and every other tenant's file is next
/// in line as soon as a worker is free.
#[derive(Default)]
pub struct Rotation {
    /// When each tenant was last picked, by `clock`.
    served: HashMap<String, u64>,
    clock: u64,
}

impl Rotation {
    /// Picks from `waiting` (tenant, oldest waiting event), skipping `busy` tenants.
    pub fn next(&mut self, waiting: &[(String, i64)], busy: &HashSet<String>) -> Option<String> {
        let (tenant, _) = waiting
            .iter()
            .filter(|(t, _)| !busy.contains(t))
            .min_by_key(|(t, oldest)| (self.served.get(t).copied().unwrap_or(0), *oldest))?;
        self.clock += 1;
        self.served.insert(tenant.clone(), self.clock);
        Some(tenant.clone())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    #[error("no import {0}; `sluice imports --tenant T` lists them")]
    NoSuchImport(i64),
    #[error("import {0} is {1}, not held: only held imports can be approved or discarded")]
    NotHeld(i64, &'static str),
    #[error(
        "import {id} cannot be approved: it is superseded by import {by}, a newer file of the same type that was \
         applied after it was held (approving would put older data over newer). Its file is kept for download \
         (`sluice import file {id}`); upload it again if it is still meant"
    )]
    Superseded { id: i64, by: i64 },
    #[error("import type {0:?} no longer exists")]
    NoType(String),
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Store(#[from] sluice_store::StoreError),
}

/// Why records were not deleted by hand (nothing was).
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("no record type {0:?}; `sluice types` lists the types")]
    NoSuchType(String),
    #[error(
        "records of {0} come from a OneRoster package and change only with it: send a file that marks them tobedeleted"
    )]
    Package(String),
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Store(#[from] sluice_store::StoreError),
}

/// When the tenant's scheduled imports run next: only while its trigger is `schedule` (a
/// schedule kept under another trigger runs nothing).
pub fn next_scheduled_run(t: &sluice_core::Tenant, after: Timestamp) -> Option<Timestamp> {
    let cron = t.schedule.as_ref().filter(|_| t.trigger == sluice_core::Trigger::Schedule)?;
    next_run(cron, &t.timezone, after).ok().flatten()
}

pub use sluice_core::schedule::next_run;

fn hash_file(path: &Path) -> std::io::Result<(u64, Sha256Hex)> {
    sluice_core::sha256_of(std::fs::File::open(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::schedule::Cron;

    fn waiting(tenants: &[(&str, i64)]) -> Vec<(String, i64)> {
        tenants.iter().map(|(t, id)| (t.to_string(), *id)).collect()
    }

    #[test]
    fn tenants_take_turns_however_many_files_one_has_queued() {
        let mut rotation = Rotation::default();
        let mut busy = HashSet::new();
        // A and C have fifty files each: the oldest upload first, then one import per tenant.
        let queue = waiting(&[("a", 1), ("c", 2)]);
        assert_eq!(rotation.next(&queue, &busy).as_deref(), Some("a"));
        busy.insert("a".to_owned());
        assert_eq!(rotation.next(&queue, &busy).as_deref(), Some("c"));
        busy.insert("c".to_owned());
        assert_eq!(rotation.next(&queue, &busy), None, "one import per tenant at a time");
        // B's one file arrives while both workers are busy; A's import ends. A has 49 more
        // files, all older than B's: B goes first all the same.
        busy.remove("a");
        let queue = waiting(&[("a", 3), ("c", 4), ("b", 60)]);
        assert_eq!(rotation.next(&queue, &busy).as_deref(), Some("b"));
        busy.insert("b".to_owned());
        // C's ends: A was served before C, so A is next, then C.
        busy.remove("c");
        assert_eq!(rotation.next(&queue, &busy).as_deref(), Some("a"));
        busy.insert("a".to_owned());
        busy.remove("b");
        let queue = waiting(&[("a", 5), ("c", 4)]);
        assert_eq!(rotation.next(&queue, &busy).as_deref(), Some("c"));
    }

    #[test]
    fn next_run_reads_the_schedule_in_the_tenant_time_zone() {
        let cron = Cron::parse("0 2 * * *").unwrap();
        // 2026-11-22 12:00 UTC; 02:00 in Chicago (UTC-6 in November) is 08:00 UTC next day.
        let now: Timestamp = "2026-11-22T12:00:00Z".parse().unwrap();
        let next = next_run(&cron, "America/Chicago", now).unwrap().unwrap();
        assert_eq!(next.to_string(), "2026-11-23T08:00:00Z");
        let utc = next_run(&cron, "UTC", now).unwrap().unwrap();
        assert_eq!(utc.to_string(), "2026-11-23T02:00:00Z");
        // Every name the settings accept, the scheduler finds.
        assert!(sluice_core::settings::check_timezone("Mars/Olympus").is_err());
        for tz in ["Europe/Paris", "America/Chicago", "UTC", "Asia/Kolkata"] {
            assert!(sluice_core::settings::check_timezone(tz).is_ok());
            assert!(next_run(&cron, tz, now).unwrap().is_some(), "{tz}");
        }
    }
}

#[cfg(test)]
mod scheduler_tests {
    use super::*;
    use sluice_core::{FolderName, TenantName};
    use sluice_store::Store;

    /// Tenant `acme` with the given trigger, a `students` type and two rows waiting in
    /// `/students/students.csv`.
    fn tenant_with_a_waiting_file(trigger: Trigger) -> (tempfile::TempDir, SharedStore, Ingest, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(Store::open(&dir.path().join("sluice.db")).unwrap());
        let name = TenantName::parse("acme").unwrap();
        store.add_tenant(&name, &FolderName::parse_list("students").unwrap()).unwrap();
        let types = ImportTypes::parse(&[(
            "t.toml".into(),
            "[[type]]\nname = \"students\"\nfolder = \"students\"\nkey = [\"id\"]\nmode = \"upsert\"\n\
             [[type.column]]\nname = \"id\"\nrequired = true\nkind = \"id\"\n"
                .into(),
        )])
        .unwrap();
        // A schedule trigger comes with its schedule (2 a.m. in Chicago).
        let mut settings = vec![("trigger", trigger.as_str())];
        if trigger == Trigger::Schedule {
            settings.extend([("schedule", "0 2 * * *"), ("timezone", "America/Chicago")]);
        }
        let cx = sluice_core::SettingsContext { types: &types, allow_private_webhooks: false };
        let mut change = sluice_core::SettingsChange::default();
        for (k, v) in settings {
            change.set(k, v, cx).unwrap();
        }
        store.change_settings("acme", &change).unwrap();
        let ingest = Ingest::new(store.clone(), types, dir.path()).unwrap();
        let folder = dir.path().join("tenants/acme/students");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("students.csv"), "id\n1\n2\n").unwrap();
        (dir, store, ingest, folder)
    }

    #[test]
    fn a_scheduled_tenant_is_synced_when_its_time_comes_and_only_then() {
        let (_dir, store, ingest, folder) = tenant_with_a_waiting_file(Trigger::Schedule);
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        // 02:00 in Chicago is 08:00 UTC in November: nothing before it...
        ingest.run_schedules(t("2026-11-23T07:58:00Z"), t("2026-11-23T07:59:30Z"));
        assert!(store.imports("acme", 10).unwrap().is_empty());
        // ...and one import when a tick passes it (queued by the tick, imported by the workers).
        ingest.run_schedules(t("2026-11-23T07:59:30Z"), t("2026-11-23T08:00:05Z"));
        assert_eq!(ingest.drain().unwrap(), 1);
        let imports = store.imports("acme", 10).unwrap();
        assert_eq!(imports.len(), 1);
        assert_eq!(imports[0].counts.added, 2);
        assert!(!folder.join("students.csv").exists());
        ingest.run_schedules(t("2026-11-23T08:00:05Z"), t("2026-11-23T08:01:05Z"));
        assert_eq!(ingest.drain().unwrap(), 0);
        assert_eq!(store.imports("acme", 10).unwrap().len(), 1);
    }
    /// A server took 08:00's run and ended before queueing it (its claim is in the store,
    /// unfinished): the next server's tick, long after 08:00, runs it once, and the due time
    /// is done. A server that has not ended keeps its runs.
    #[test]
    fn a_scheduled_run_left_by_a_stopped_server_is_run_by_the_next_one() {
        let (dir, store, ingest, folder) = tenant_with_a_waiting_file(Trigger::Schedule);
        let owners = dir.path().join("spool/owners");
        sluice_core::spool::hold_owner(&owners).unwrap();
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let at = t("2026-11-23T08:00:00Z").as_millisecond();
        let running = "p7-alive-0000beef";
        let alive = std::fs::File::create(owners.join(format!("{running}.owner"))).unwrap();
        alive.lock().unwrap();
        assert!(store.claim_due("import/acme", at, running).unwrap());
        ingest.run_schedules(t("2026-11-23T09:00:00Z"), t("2026-11-23T09:00:05Z"));
        assert_eq!(ingest.drain().unwrap(), 0, "a running server's run is its own");
        drop(alive);
        // (Locks within one process conflict only between open files.)
        ingest.run_schedules(t("2026-11-23T09:00:05Z"), t("2026-11-23T09:00:10Z"));
        assert_eq!(ingest.drain().unwrap(), 1);
        assert_eq!(store.imports("acme", 10).unwrap()[0].counts.added, 2);
        assert!(!folder.join("students.csv").exists());
        assert_eq!(store.retake_due("", "p8-other-00000000", &|_| true).unwrap(), vec![], "done");
        ingest.run_schedules(t("2026-11-23T09:00:10Z"), t("2026-11-23T09:00:15Z"));
        assert_eq!(ingest.drain().unwrap(), 0);
    }

    /// Error reports and the files kept of closed imports leave after the retention; a held
    /// import's file stays while it waits for a decision.
    #[test]
    fn old_error_reports_and_kept_files_of_closed_imports_are_swept() {
        let (dir, store, ingest, _) = tenant_with_a_waiting_file(Trigger::Manual);
        let ingest = ingest.with_error_report_days(1);
        let aged = |path: &Path| {
            let f = std::fs::File::options().write(true).open(path).unwrap();
            f.set_modified(std::time::SystemTime::now() - Duration::from_secs(3 * 86_400)).unwrap();
        };
        let errors = dir.path().join("tenants/acme/errors");
        std::fs::create_dir_all(&errors).unwrap();
        for name in ["00000001-a-errors.csv", "00000002-b-errors.csv"] {
            std::fs::write(errors.join(name), "x").unwrap();
        }
        aged(&errors.join("00000001-a-errors.csv"));
        // A held import's file (kept while it waits), and one of an import no longer there.
        let held_id = store.create_import("acme", "students", "s.csv", "cli", None, None).unwrap();
        let o = sluice_store::Outcome::new(ImportStatus::Held, sluice_store::Counts::default(), None);
        let loader = store.loader("acme", "students", held_id).unwrap();
        loader.commit(o).unwrap();
        for id in [held_id, 999] {
            let f = held_path(&dir.path().join("spool/held"), id);
            std::fs::write(&f, "x").unwrap();
            aged(&f);
        }
        assert_eq!(ingest.sweep_error_reports(), 1);
        assert!(errors.join("00000002-b-errors.csv").exists());
        assert_eq!(ingest.sweep_kept_files(), 1);
        assert!(held_path(&dir.path().join("spool/held"), held_id).exists());
    }

    /// A tenant importing on upload whose guardians have their own schedule (2 a.m.) and
    /// whose uploads settle for 30 s: students and guardians uploaded together wait, the
    /// students are imported as a set once quiet, the guardians only at their time.
    #[test]
    fn a_type_waits_for_its_own_schedule_and_a_set_for_the_quiet_time() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(Store::open(&dir.path().join("sluice.db")).unwrap());
        let name = TenantName::parse("acme").unwrap();
        store.add_tenant(&name, &FolderName::parse_list("students,guardians").unwrap()).unwrap();
        let types = ImportTypes::parse(&[(
            "t.toml".into(),
            "[[type]]\nname = \"students\"\nfolder = \"students\"\nkey = [\"id\"]\nmode = \"upsert\"\n\
             [[type.column]]\nname = \"id\"\nrequired = true\nkind = \"id\"\n\
             [[type]]\nname = \"guardians\"\nfolder = \"guardians\"\nkey = [\"gid\"]\nmode = \"upsert\"\n\
             references = [{ column = \"sid\", to = \"students.id\" }]\n\
             [[type.column]]\nname = \"gid\"\nrequired = true\nkind = \"id\"\n\
             [[type.column]]\nname = \"sid\"\nrequired = true\nkind = \"id\"\n"
                .into(),
        )])
        .unwrap();
        let cx = sluice_core::SettingsContext { types: &types, allow_private_webhooks: false };
        let mut change = sluice_core::SettingsChange::default();
        for (k, v) in
            [("schedule.guardians", "0 2 * * *"), ("timezone", "America/Chicago"), ("settle_secs", "30")]
        {
            change.set(k, v, cx).unwrap();
        }
        // A type's own schedule is not a trigger.TYPE value.
        let refused = change.clone().set("trigger.guardians", "schedule", cx).unwrap_err();
        assert!(refused.reason.contains("schedule.guardians=CRON"), "{refused}");
        store.change_settings("acme", &change).unwrap();
        let ingest = Ingest::new(store.clone(), types.clone(), dir.path()).unwrap();
        let root = dir.path().join("tenants/acme");
        for (folder, file, body) in
            [("students", "s.csv", "id\n1\n2\n"), ("guardians", "g.csv", "gid,sid\nG1,1\n")]
        {
            std::fs::create_dir_all(root.join(folder)).unwrap();
            std::fs::write(root.join(folder).join(file), body).unwrap();
        }
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let upload = |path: &str, at: &str| UploadEvent {
            tenant: name.clone(),
            path: VirtualPath::resolve(path.as_bytes()).unwrap(),
            size: 7,
            sha256: Sha256Hex::from_digest(&[0; 32]),
            at_ms: t(at).as_millisecond(),
            snapshot: None,
        };
        store.record_upload(&upload("/guardians/g.csv", "2026-11-23T15:00:00Z")).unwrap();
        store.record_upload(&upload("/students/s.csv", "2026-11-23T15:00:10Z")).unwrap();
        // Both wait: the guardians for 2 a.m., the students for quiet.
        assert_eq!(ingest.drain().unwrap(), 2);
        assert!(store.imports("acme", 10).unwrap().is_empty());
        // 25 s after the last upload: not quiet yet.
        ingest.run_schedules(t("2026-11-23T15:00:30Z"), t("2026-11-23T15:00:35Z"));
        assert_eq!(ingest.drain().unwrap(), 0);
        // 30 s after: the set (the students; the guardians keep waiting for their time).
        ingest.run_schedules(t("2026-11-23T15:00:35Z"), t("2026-11-23T15:00:40Z"));
        assert_eq!(ingest.drain().unwrap(), 1);
        let imports = store.imports("acme", 10).unwrap();
        assert_eq!((imports.len(), imports[0].type_name.as_str()), (1, "students"), "{imports:?}");
        assert!(root.join("guardians/g.csv").exists());
        // Once settled, nothing more until a new upload.
        ingest.run_schedules(t("2026-11-23T15:00:40Z"), t("2026-11-23T15:00:45Z"));
        assert_eq!(ingest.drain().unwrap(), 0);
        // 2 a.m. in Chicago (08:00 UTC): the guardians.
        ingest.run_schedules(t("2026-11-24T07:59:58Z"), t("2026-11-24T08:00:03Z"));
        assert_eq!(ingest.drain().unwrap(), 1);
        let imports = store.imports("acme", 10).unwrap();
        assert_eq!(imports[0].type_name, "guardians");
        assert_eq!(imports[0].status, ImportStatus::Complete, "{imports:?}");
        // A file that waits for quiet when the settle time is turned off is imported at the
        // next tick, not left behind.
        std::fs::write(root.join("students/s2.csv"), "id\n3\n").unwrap();
        store.record_upload(&upload("/students/s2.csv", "2026-11-24T09:00:00Z")).unwrap();
        assert_eq!(ingest.drain().unwrap(), 1);
        ingest.run_schedules(t("2026-11-24T09:00:01Z"), t("2026-11-24T09:00:05Z"));
        let mut off = sluice_core::SettingsChange::default();
        off.set("settle_secs", "0", cx).unwrap();
        store.change_settings("acme", &off).unwrap();
        ingest.run_schedules(t("2026-11-24T09:00:05Z"), t("2026-11-24T09:00:10Z"));
        assert_eq!(ingest.drain().unwrap(), 1);
        assert_eq!(store.imports("acme", 10).unwrap()[0].file_name, "s2.csv");
    }

    /// `sluice sync` queues what it finds while the server's worker keeps polling the same
    /// queue. Whichever claims a synced file must import it: a CI run once saw the server
    /// take three of a manual tenant's five synced files and leave them waiting.
    #[test]
    fn a_synced_file_claimed_by_another_process_is_imported_not_left_waiting() {
        let (_dir, store, ingest, folder) = tenant_with_a_waiting_file(Trigger::Manual);
        let event = UploadEvent {
            tenant: TenantName::parse("acme").unwrap(),
            path: VirtualPath::resolve(b"/students/students.csv").unwrap(),
            size: 7,
            sha256: Sha256Hex::from_digest(&[0; 32]),
            at_ms: 1,
            snapshot: None,
        };
        // An upload to a manual tenant waits for a sync...
        store.record_upload(&event).unwrap();
        assert_eq!(ingest.drain().unwrap(), 1);
        assert!(store.imports("acme", 10).unwrap().is_empty());
        assert!(folder.join("students.csv").exists());
        // ...and a file a sync queued is imported by the server's plain drain.
        store.request_import(&event).unwrap();
        assert_eq!(ingest.drain().unwrap(), 1);
        let imports = store.imports("acme", 10).unwrap();
        assert_eq!(imports.len(), 1);
        assert_eq!(imports[0].counts.added, 2);
        assert!(!folder.join("students.csv").exists());
    }

    /// lftp's `put` then `mirror` of one name, 4 ms apart: the second upload replaced the
    /// file in the folder before the worker staged the first, which then imported the newer
    /// bytes, and the second found nothing. Each upload's snapshot keeps its own bytes.
    #[test]
    fn two_uploads_of_one_name_before_the_worker_reaches_them_each_import_their_own_bytes() {
        let (dir, store, ingest, folder) = tenant_with_a_waiting_file(Trigger::OnUpload);
        let snapshots = snapshots_dir(dir.path());
        // As the SFTP server does: the finished file linked as the snapshot, then moved into
        // place (here it is in place already), then its event recorded.
        let upload = |n: u32, body: Option<&str>| {
            let name = sluice_core::SnapshotName::parse(&format!("snap-acme-1-{n}")).unwrap();
            let file = folder.join("students.csv");
            if let Some(body) = body {
                let temp = dir.path().join(format!("spool/uploads/{n}.upload"));
                std::fs::create_dir_all(temp.parent().unwrap()).unwrap();
                std::fs::write(&temp, body).unwrap();
                std::fs::hard_link(&temp, snapshots.join(name.as_str())).unwrap();
                std::fs::rename(&temp, &file).unwrap();
            } else {
                std::fs::hard_link(&file, snapshots.join(name.as_str())).unwrap();
            }
            let (size, sha256) = hash_file(&file).unwrap();
            store
                .record_upload(&UploadEvent {
                    tenant: TenantName::parse("acme").unwrap(),
                    path: VirtualPath::resolve(b"/students/students.csv").unwrap(),
                    size,
                    sha256,
                    at_ms: 1,
                    snapshot: Some(name),
                })
                .unwrap();
        };
        upload(1, None); // id 1, 2
        upload(2, Some("id\n1\n2\n3\n"));
        assert!(ingest.import_next("acme").unwrap());
        assert_eq!(
            std::fs::read_to_string(folder.join("students.csv")).unwrap(),
            "id\n1\n2\n3\n",
            "the first upload's import leaves the second's file in the folder"
        );
        assert_eq!(ingest.drain().unwrap(), 1);
        let imports = store.imports("acme", 10).unwrap();
        let counts: Vec<(u64, u64)> =
            imports.iter().rev().map(|i| (i.counts.added, i.counts.unchanged)).collect();
        assert_eq!(counts, [(2, 0), (1, 2)], "each upload imported with its own bytes: {imports:?}");
        assert!(!folder.join("students.csv").exists(), "the newest upload is taken out of its folder");
        assert_eq!(std::fs::read_dir(&snapshots).unwrap().count(), 0, "no snapshot left behind");

        // Removed from the folder before the worker reaches it (lftp's mirror removes a file
        // before sending it again): the upload counts all the same.
        upload(3, Some("id\n4\n"));
        std::fs::remove_file(folder.join("students.csv")).unwrap();
        assert_eq!(ingest.drain().unwrap(), 1);
        let imports = store.imports("acme", 10).unwrap();
        assert_eq!((imports.len(), imports[0].counts.added), (3, 1), "{imports:?}");
        assert_eq!(std::fs::read_dir(&snapshots).unwrap().count(), 0);

        // A snapshot whose event was never recorded (a stop in between) is swept at start once
        // it is an hour old (a younger one may be another server's, being recorded), aged by
        // when it was linked, not by the modification time a client gave its file; one
        // waiting for its import stays.
        std::fs::write(snapshots.join("snap-acme-1-9"), "id\n9\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(snapshots.join("snap-acme-1-9"))
            .unwrap()
            .set_modified(std::time::SystemTime::now() - 2 * SNAPSHOT_GRACE)
            .unwrap();
        store
            .change_settings("acme", &{
                let types = &ingest.types;
                let cx = sluice_core::SettingsContext { types, allow_private_webhooks: false };
                let mut change = sluice_core::SettingsChange::default();
                change.set("trigger", "manual", cx).unwrap();
                change
            })
            .unwrap();
        upload(4, Some("id\n5\n"));
        let left = || {
            let mut left: Vec<String> = std::fs::read_dir(&snapshots)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            left.sort();
            left
        };
        ingest.recover().unwrap();
        assert_eq!(left(), ["snap-acme-1-4", "snap-acme-1-9"], "linked just now, whatever its mtime");
        assert_eq!(ingest.sweep_snapshots_older_than(Duration::ZERO).unwrap(), 1);
        assert_eq!(left(), ["snap-acme-1-4"], "the leftover goes, the one in use stays");
        // A manual tenant's upload waits in its folder: its snapshot goes once it is handled.
        assert_eq!(ingest.drain().unwrap(), 1);
        assert_eq!(std::fs::read_dir(&snapshots).unwrap().count(), 0);
        assert!(folder.join("students.csv").exists(), "a manual tenant's file waits for a sync");
    }

    #[test]
    fn an_import_that_panics_fails_once_with_a_clear_entry_and_keeps_its_file() {
        let (dir, store, ingest, folder) = tenant_with_a_waiting_file(Trigger::OnUpload);
        store
            .record_upload(&UploadEvent {
                tenant: TenantName::parse("acme").unwrap(),
                path: VirtualPath::resolve(b"/students/students.csv").unwrap(),
                size: 7,
                sha256: Sha256Hex::from_digest(&[0; 32]),
                at_ms: 1,
                snapshot: None,
            })
            .unwrap();
        let upload = store.claim_upload(LEASE, None).unwrap().unwrap();
        let outcome = ingest.contain_crash(&upload, || {
            // As far as a real import gets before a bug: staged, and its `running` row made.
            std::fs::rename(
                folder.join("students.csv"),
                ingest.staging.join(format!("upload-{}", upload.id)),
            )
            .unwrap();
            store.create_import("acme", "students", "students.csv", "upload", Some(upload.id), None).unwrap();
            panic!("index out of bounds");
        });
        let failed = outcome.unwrap().unwrap();
        assert_eq!(failed.status, ImportStatus::Failed);
        let message = failed.message.unwrap();
        assert!(message.contains("internal error (index out of bounds)"), "{message}");
        assert!(message.contains("crashed-upload-"), "{message}");
        // One entry, the failed one; the upload is not claimed again; the file is kept.
        let imports = store.imports("acme", 10).unwrap();
        assert_eq!(imports.len(), 1, "{imports:?}");
        assert!(store.upload_consumed(upload.id).unwrap());
        assert_eq!(ingest.drain().unwrap(), 0);
        ingest.recover().unwrap();
        assert!(dir.path().join(format!("spool/staging/crashed-upload-{}", upload.id)).exists());
    }
}
