//! Running saved exports: one by name when asked (`sluice export run`, the API, the
//! dashboard), and the ones whose time came ([`Runner::run_due`]: a cron schedule in the tenant's time
//! zone, or an applied import of their type that changed records). Every run is logged in the
//! store (when, why, records, bytes, where, or why it failed); a run writes
//! `/exports/NAME.csv|xlsx` whole or not at all, so a failed run leaves the last good file.

use crate::{Export, ExportError, Exports};
use sluice_connect::Transfers;
use sluice_core::TenantName;
use sluice_core::import::ImportTypes;
use sluice_core::saved_export::ExportFormat;
use sluice_core::saved_export::{ExportWhen, RunCause, RunOutcome, SavedExport};
use sluice_core::schedule::next_run;
use sluice_store::roles::{Backend, Connectors, Imports};

/// One finished run: its id in the log and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    pub id: i64,
    pub outcome: RunOutcome,
}

/// What runs saved exports: the import types, where `/exports` are, and (where connectors are
/// set up) what pushes files to a tenant's own server.
#[derive(Clone, Copy)]
pub struct Runner<'a> {
    pub types: &'a ImportTypes,
    pub exports: &'a Exports,
    pub transfers: Option<&'a Transfers>,
}

impl Runner<'_> {
    /// Runs one saved export now and logs the run: written to `/exports/NAME.EXT`, then pushed
    /// to its connector if it has one. A failure to write or push is the run's outcome (logged
    /// as failed, and notified like an import's end: to the tenant's recipients and webhook);
    /// only a failure to log it is an error.
    pub fn run(
        &self,
        store: &dyn Backend,
        tenant: &TenantName,
        saved: &SavedExport,
        cause: RunCause,
    ) -> Result<Ran, sluice_store::StoreError> {
        let id = store.start_export_run(tenant, &saved.name, cause)?;
        let outcome = match (&saved.push_to, saved.in_exports) {
            _ if saved.format == ExportFormat::Photos => self.photos(store, tenant, saved),
            (Some(to), false) => self.push_only(store, tenant, saved, to),
            _ => self.write_in_folder(store, tenant, saved),
        };
        store.finish_export_run(id, &outcome)?;
        if matches!(outcome, RunOutcome::Failed(_)) {
            store.queue_export_failure(id)?;
        }
        Ok(Ran { id, outcome })
    }

    /// A photo export now (not logged: [`Runner::run`] logs): one `KEY.jpg|png` per record
    /// with a photo, into `/exports/photos/` (the other types' photos there stay) and/or pushed
    /// to its connector in one session.
    pub fn photos(&self, store: &dyn Backend, tenant: &TenantName, saved: &SavedExport) -> RunOutcome {
        let with_photos = self.types.photo_targets();
        let (mut rows, mut bytes, mut went) = (0, 0, Vec::new());
        if saved.in_exports {
            match self.exports.photos_into_folder(store, tenant, &saved.type_name, &with_photos) {
                Ok((done, path)) => {
                    (rows, bytes) = (done.written + done.unchanged, done.bytes);
                    // The run's log says which records' photos were not exported, and why.
                    went.push(format!("{path}{}", not_exported(&done.skipped)));
                }
                Err(e) => return RunOutcome::Failed(failure_text(&e)),
            }
        }
        if let Some(to) = &saved.push_to {
            // As into /exports/photos: a name two photo types' records have goes to neither.
            let listed = crate::photos::photo_files(
                store,
                tenant,
                &saved.type_name,
                &with_photos,
                self.exports.photos_dir(),
            );
            let (files, skipped) = match listed {
                Ok(listed) => listed,
                Err(e) => return RunOutcome::Failed(failure_text(&e)),
            };
            // Said once: by the folder's part when it has one.
            let skipped = if saved.in_exports { String::new() } else { not_exported(&skipped) };
            let Some(transfers) = self.transfers else {
                return RunOutcome::Failed("connectors are not set up in this process".into());
            };
            let refs: Vec<(&std::path::Path, &str)> =
                files.iter().map(|(p, n)| (p.as_path(), n.as_str())).collect();
            match transfers.push_all_to(store, tenant, to, &refs) {
                Ok(pushed) => {
                    rows = rows.max(pushed.len() as u64);
                    bytes = bytes.max(pushed.iter().map(|p| p.bytes).sum());
                    went.push(format!("{to} ({} files){skipped}", pushed.len()));
                }
                Err(e) if saved.in_exports => {
                    return RunOutcome::Failed(format!(
                        "written to /exports/photos/ but not pushed to {to}: {e}"
                    ));
                }
                Err(e) => return RunOutcome::Failed(format!("not pushed to {to}: {e}")),
            }
        }
        RunOutcome::Written { rows, bytes, destination: went.join(" and ") }
    }

    /// Written to `/exports` (and pushed, if it has a connector).
    fn write_in_folder(&self, store: &dyn Backend, tenant: &TenantName, saved: &SavedExport) -> RunOutcome {
        match write(store, self.types, self.exports, tenant, saved) {
            Ok(done) => match &saved.push_to {
                None => RunOutcome::Written {
                    rows: done.written.rows,
                    bytes: done.written.bytes,
                    destination: done.path,
                },
                Some(to) => match self
                    .exports
                    .local(tenant, &saved.file_name())
                    .map_err(|e| failure_text(&e))
                    .and_then(|local| self.push(store, tenant, to, local.path(), &saved.file_name()))
                {
                    Ok(pushed) => RunOutcome::Written {
                        rows: done.written.rows,
                        bytes: done.written.bytes,
                        destination: format!("{} and {to}:{}", done.path, pushed.remote),
                    },
                    Err(why) => {
                        RunOutcome::Failed(format!("written to {} but not pushed to {to}: {why}", done.path))
                    }
                },
            },
            Err(e) => RunOutcome::Failed(failure_text(&e)),
        }
    }

    /// Written to a private file in the spool, pushed to the connector, removed: the tenant's
    /// `/exports` never holds it.
    fn push_only(
        &self,
        store: &dyn Backend,
        tenant: &TenantName,
        saved: &SavedExport,
        to: &sluice_core::connector::ConnectorName,
    ) -> RunOutcome {
        let written = (|| {
            let export = export_of(self.types, saved)?;
            std::fs::create_dir_all(self.exports.spool())?;
            let temporary = tempfile::Builder::new().prefix(".export-").tempfile_in(self.exports.spool())?;
            let written = export.write(store, tenant, temporary.path())?;
            Ok::<_, ExportError>((temporary, written))
        })();
        match written {
            Err(e) => RunOutcome::Failed(failure_text(&e)),
            Ok((temporary, written)) => {
                match self.push(store, tenant, to, temporary.path(), &saved.file_name()) {
                    Ok(pushed) => RunOutcome::Written {
                        rows: written.rows,
                        bytes: written.bytes,
                        destination: format!("{to}:{}", pushed.remote),
                    },
                    Err(e) => {
                        RunOutcome::Failed(format!("not pushed to {to} (nothing kept in /exports): {e}"))
                    }
                }
            }
        }
    }

    fn push(
        &self,
        store: &dyn Connectors,
        tenant: &TenantName,
        connector: &str,
        local: &std::path::Path,
        file_name: &str,
    ) -> Result<sluice_connect::Pushed, String> {
        let transfers = self.transfers.ok_or("connectors are not set up in this process")?;
        transfers.push_to(store, tenant, connector, local, file_name).map_err(|e| e.to_string())
    }

    /// The saved exports whose time came in (`since`, `now`]: scheduled ones whose next run
    /// after `since` is at or before `now`, and after-import ones with an applied import of
    /// their type that changed records since they last ran (each such import is answered once:
    /// it is marked answered here, so the caller must run what this returns; a run that fails
    /// is not repeated until the next change). Also the scheduled runs that a stopped server
    /// took and did not finish (taken over here, once). A scheduled run's due time is
    /// finished by whoever runs it ([`DueRun::finish`]).
    pub fn due(
        &self,
        store: &dyn Backend,
        since: jiff::Timestamp,
        now: jiff::Timestamp,
    ) -> Result<Vec<DueRun>, sluice_store::StoreError> {
        let mut due: Vec<DueRun> = Vec::new();
        let mut push = |tenant: &str, saved: SavedExport, cause: RunCause, claim: Option<(String, i64)>| {
            if let Ok(tenant) = TenantName::parse(tenant) {
                due.push(DueRun { tenant, saved, cause, claim });
            }
        };
        // Each once, whichever server asks first. A store error for one export is said and
        // the others still run (what was taken here must be run by this caller).
        let taken = |what: Result<bool, sluice_store::StoreError>, tenant: &str, saved: &SavedExport| {
            what.unwrap_or_else(|e| {
                tracing::warn!(tenant, export = %saved.name, "saved export: {e}");
                false
            })
        };
        // Read before anything is taken: once a run is taken here, no error may drop it.
        let scheduled = store.scheduled_exports()?;
        let after_imports = store.exports_after_imports()?;
        let owner = sluice_core::spool::owner_tag();
        let mut retaken = store.retake_due("export/", owner, &sluice_core::spool::other_ended)?;
        if !retaken.is_empty() {
            // The stopped server's runs are logged as interrupted before they run again.
            if let Err(e) = store.fail_interrupted_runs(&sluice_core::spool::other_ended) {
                tracing::warn!("saved exports: marking a stopped server's runs interrupted: {e}");
            }
        }
        for (tenant, tz, saved) in scheduled {
            let ExportWhen::Schedule(cron) = &saved.when else { continue };
            let key = format!("export/{tenant}/{}", saved.name.as_str().to_ascii_lowercase());
            for (_, at) in retaken.iter().filter(|(k, _)| *k == key) {
                tracing::info!(tenant, export = %saved.name, due_ms = at, "running a scheduled export a stopped server left");
                push(&tenant, saved.clone(), RunCause::Schedule, Some((key.clone(), *at)));
            }
            retaken.retain(|(k, _)| *k != key);
            if let Ok(Some(at)) = next_run(cron, &tz, since)
                && at <= now
                && taken(store.claim_due(&key, at.as_millisecond(), owner), &tenant, &saved)
            {
                push(&tenant, saved, RunCause::Schedule, Some((key, at.as_millisecond())));
            }
        }
        // Taken over, but no longer scheduled: nothing to run.
        for (key, at) in retaken {
            if let Err(e) = store.finish_due(&key, at) {
                tracing::warn!("saved export {key}: {e}");
            }
        }
        // An import an after-import export answers is claimed like a due time (the key names
        // the import, the time is when it was answered), so that one answered by a server that
        // died before it ran is run by another.
        for (tenant, saved, import_id) in after_imports {
            if taken(store.mark_import_seen(&tenant, saved.name.as_str(), import_id), &tenant, &saved) {
                let key = format!(
                    "{AFTER_IMPORT}{tenant}/{}/{import_id}",
                    saved.name.as_str().to_ascii_lowercase()
                );
                let at = sluice_store::now_ms();
                if let Err(e) = store.claim_due(&key, at, owner) {
                    tracing::warn!(tenant, export = %saved.name, "saved export: {e}");
                }
                push(&tenant, saved, RunCause::AfterImport, Some((key, at)));
            }
        }
        match store.retake_due(AFTER_IMPORT, owner, &sluice_core::spool::other_ended) {
            Ok(left) => {
                for (key, at) in left {
                    let mut parts = key.strip_prefix(AFTER_IMPORT).unwrap_or_default().splitn(3, '/');
                    let found = match (parts.next(), parts.next()) {
                        (Some(tenant), Some(name)) => {
                            Some((tenant.to_owned(), store.saved_export(tenant, name)))
                        }
                        _ => None,
                    };
                    match found {
                        Some((tenant, Ok(Some(saved)))) if saved.when == ExportWhen::AfterImport => {
                            tracing::info!(tenant, export = %saved.name, "running an after-import export a stopped server left ({key})");
                            push(&tenant, saved, RunCause::AfterImport, Some((key, at)));
                        }
                        // Kept for the next look (this server's now; another's if it stops).
                        Some((tenant, Err(e))) => tracing::warn!(tenant, "saved export {key}: {e}"),
                        // No longer an after-import export of that name: nothing to run.
                        _ => {
                            if let Err(e) = store.finish_due(&key, at) {
                                tracing::warn!("saved export {key}: {e}");
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::warn!("saved exports: taking over a stopped server's after-import runs: {e}"),
        }
        Ok(due)
    }

    /// [`Runner::due`], each run at once, one after the other: (tenant, export, run).
    pub fn run_due(
        &self,
        store: &dyn Backend,
        since: jiff::Timestamp,
        now: jiff::Timestamp,
    ) -> Result<Vec<(String, String, Ran)>, sluice_store::StoreError> {
        let mut ran = Vec::new();
        for due in self.due(store, since, now)? {
            let run = self.run(store, &due.tenant, &due.saved, due.cause)?;
            due.finish(store)?;
            ran.push((due.tenant.to_string(), due.saved.name.to_string(), run));
        }
        Ok(ran)
    }
}

/// The prefix of the claim keys of imports answered by after-import exports
/// (`after/TENANT/EXPORT/IMPORT_ID`, the time it was answered as the due time).
const AFTER_IMPORT: &str = "after/";

/// A saved export's run that is due ([`Runner::due`]).
pub struct DueRun {
    pub tenant: TenantName,
    pub saved: SavedExport,
    pub cause: RunCause,
    /// The schedule's key and due time taken for this run, finished once it ran.
    pub claim: Option<(String, i64)>,
}

impl DueRun {
    /// Says the run is done (a scheduled one is then not taken over by another server).
    pub fn finish(&self, store: &dyn Backend) -> Result<(), sluice_store::StoreError> {
        match &self.claim {
            Some((key, at)) => store.finish_due(key, *at),
            None => Ok(()),
        }
    }
}

fn write(
    store: &dyn Imports,
    types: &ImportTypes,
    exports: &Exports,
    tenant: &TenantName,
    saved: &SavedExport,
) -> Result<crate::Delivered, ExportError> {
    exports.into_folder_as(&export_of(types, saved)?, store, tenant, &saved.file_name())
}

/// The export a saved export makes: its type's, with its columns, filters and format.
fn export_of<'t>(types: &'t ImportTypes, saved: &SavedExport) -> Result<Export<'t>, ExportError> {
    let ty = types.get(&saved.type_name).ok_or_else(|| ExportError::NoSuchType(saved.type_name.clone()))?;
    Export::new(ty, types, saved.format, &saved.columns, &saved.filters, saved.bom)
}

/// The error and its causes in one line (an I/O error's cause says which file and why).
fn failure_text(e: &ExportError) -> String {
    // A run's outcome is the tenant's to read (history, notifications): where the operator's
    // object storage is stays in the server's log.
    if let ExportError::Bucket(detail) = e {
        tracing::warn!("an export could not reach object storage: {detail}");
        return "the file could not be stored: the object storage did not answer; sluice's log says more"
            .to_owned();
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The runs of saved exports and pulls in progress in this process: at most one of each saved
/// export (or connector's pull) at a time, at most half of `limit` of one tenant's (so one
/// tenant's slow server cannot take every slot), and at most `limit` at once, whoever asks (the
/// API, the dashboard, the server's scheduler). A run asked for while its export runs, or while
/// the slots are taken, is refused at once instead of waiting on a thread.
pub struct RunSlots {
    running: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
    limit: usize,
}

/// Why a run could not start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// This export (or pull) is running.
    Running,
    /// As many runs as allowed are running.
    Full,
}

/// A taken slot; given back when dropped.
pub struct Slot {
    slots: std::sync::Arc<RunSlots>,
    key: (String, String),
}

impl RunSlots {
    pub fn new(limit: usize) -> std::sync::Arc<Self> {
        std::sync::Arc::new(RunSlots { running: Default::default(), limit: limit.max(1) })
    }

    /// Takes the slot of `what` (an export's name, or `pull:CONNECTOR`) of `tenant`, names
    /// compared whatever their case.
    pub fn try_take(self: &std::sync::Arc<Self>, tenant: &str, what: &str) -> Result<Slot, Busy> {
        let key = (tenant.to_owned(), what.to_ascii_lowercase());
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if running.contains(&key) {
            return Err(Busy::Running);
        }
        let tenants = running.iter().filter(|(t, _)| *t == key.0).count();
        if running.len() >= self.limit || tenants >= (self.limit / 2).max(1) {
            return Err(Busy::Full);
        }
        running.insert(key.clone());
        Ok(Slot { slots: self.clone(), key })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.key);
    }
}

/// ` (not exported: 2 photos: A (why), B (why))` for a run's log, or nothing.
fn not_exported(skipped: &[String]) -> String {
    if skipped.is_empty() {
        return String::new();
    }
    let more = skipped.len().saturating_sub(5);
    let more = if more > 0 { format!(", and {more} more") } else { String::new() };
    format!(
        " (not exported: {} photos: {}{more})",
        skipped.len(),
        skipped.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
    )
}

/// Refuses a type the tenant has no folder for (it has no such records to export).
pub fn tenants_type(
    tenant: &sluice_core::Tenant,
    ty: &sluice_core::import::ImportType,
) -> Result<(), ExportError> {
    if ty.folder.as_ref().is_some_and(|f| tenant.layout.import_folders().contains(f)) {
        return Ok(());
    }
    Err(ExportError::NotTenantsType { type_name: ty.name.clone(), tenant: tenant.name.to_string() })
}

/// A saved export as asked for, checked as a run would check it (the type exists, is one of
/// the tenant's (its folder is one of the tenant's) and is a CSV type, the columns and filters name its columns, no BOM for XLSX), with the type's own
/// name. The one check the CLI, the API and the dashboard make before saving.
pub fn checked(
    types: &ImportTypes,
    tenant: &sluice_core::Tenant,
    asked: SavedExport,
) -> Result<SavedExport, ExportError> {
    if asked.format == ExportFormat::Photos {
        return checked_photos(types, tenant, asked);
    }
    let ty = export_of(types, &asked)?.import_type();
    tenants_type(tenant, ty)?;
    if !asked.in_exports && asked.push_to.is_none() {
        return Err(ExportError::NowhereToGo);
    }
    Ok(SavedExport { type_name: ty.name.clone(), ..asked })
}

/// [`checked`] for a photo export: the type (or a photos type's target) has photos and is
/// the tenant's; no columns, filters or BOM.
fn checked_photos(
    types: &ImportTypes,
    tenant: &sluice_core::Tenant,
    asked: SavedExport,
) -> Result<SavedExport, ExportError> {
    let ty = types.get(&asked.type_name).ok_or_else(|| ExportError::NoSuchType(asked.type_name.clone()))?;
    let target = match (&ty.format, &ty.photos) {
        (sluice_core::import::TypeFormat::Photos, Some(rules)) => rules.target.clone(),
        _ => ty.name.clone(),
    };
    let with_photos = types.photo_targets();
    if !with_photos.contains(&target) {
        return Err(ExportError::NoPhotos(target, with_photos.join(", ")));
    }
    if !asked.columns.is_empty() || !asked.filters.is_empty() || asked.bom {
        return Err(ExportError::PhotosTakeNoColumns);
    }
    let theirs = |name: &str| {
        types
            .get(name)
            .and_then(|t| t.folder.as_ref())
            .is_some_and(|f| tenant.layout.import_folders().contains(f))
    };
    if !theirs(&target) && !theirs(&ty.name) {
        return Err(ExportError::NotTenantsType { type_name: target, tenant: tenant.name.to_string() });
    }
    if !asked.in_exports && asked.push_to.is_none() {
        return Err(ExportError::NowhereToGo);
    }
    Ok(SavedExport { type_name: target, ..asked })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::import::LoadMode;
    use sluice_core::saved_export::ExportName;
    use sluice_core::{FolderName, SettingsChange, SettingsContext};
    use sluice_store::roles::SavedExports;
    use sluice_store::roles::Tenants;
    use sluice_store::{Counts, ImportStatus, Outcome, StageKind, Store};

    fn types() -> ImportTypes {
        ImportTypes::parse(&[(
            "t.toml".into(),
            "[[type]]\nname = \"students\"\nfolder = \"students\"\nkey = [\"id\"]\nmode = \"upsert\"\n\
             [[type.column]]\nname = \"id\"\nrequired = true\nkind = \"id\"\n\
             [[type.column]]\nname = \"grade\"\nkind = \"text\"\n"
                .into(),
        )])
        .unwrap()
    }

    /// acme (in Chicago) with students 1 (grade 9) and 2 (grade 10).
    fn acme() -> (tempfile::TempDir, Store, Exports) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("sluice.db")).unwrap();
        store.add_tenant(&name(), &FolderName::parse_list("students").unwrap()).unwrap();
        let types = types();
        let mut change = SettingsChange::default();
        let cx = SettingsContext { types: &types, allow_private_webhooks: false };
        change.set("timezone", "America/Chicago", cx).unwrap();
        store.change_settings("acme", &change).unwrap();
        load(&store, &[("1", "9"), ("2", "10")]);
        let exports = Exports::new(&dir.path().join("tenants"), &dir.path().join("spool"));
        (dir, store, exports)
    }

    fn name() -> TenantName {
        TenantName::parse("acme").unwrap()
    }

    fn load(store: &dyn Imports, rows: &[(&str, &str)]) {
        let id = store.create_import("acme", "students", "students.csv", "upload", None, None).unwrap();
        let mut l = store.loader("acme", "students", id).unwrap();
        for (n, (key, grade)) in rows.iter().enumerate() {
            l.stage(n as u64 + 2, key, &format!("[\"{key}\",\"{grade}\"]"), n as i64, StageKind::Load)
                .unwrap();
        }
        let plan = l.plan("students", LoadMode::Upsert).unwrap();
        l.commit(Outcome::new(
            ImportStatus::Complete,
            Counts { rows: rows.len() as u64, ..plan },
            Some(LoadMode::Upsert),
        ))
        .unwrap();
    }

    fn saved(n: &str, when: &str) -> SavedExport {
        SavedExport {
            name: ExportName::parse(n).unwrap(),
            type_name: "students".into(),
            format: sluice_core::saved_export::ExportFormat::Csv,
            columns: vec![],
            filters: vec!["grade=9".into()],
            bom: false,
            when: ExportWhen::parse(when).unwrap(),
            push_to: None,
            in_exports: true,
        }
    }

    fn runner<'a>(types: &'a ImportTypes, exports: &'a Exports) -> Runner<'a> {
        Runner { types, exports, transfers: None }
    }

    fn t(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_scheduled_export_runs_when_its_time_comes_in_the_tenants_zone_and_only_then() {
        let (dir, store, exports) = acme();
        store.save_export("acme", &saved("daily", "0 2 * * *"), false).unwrap();
        // 02:00 in Chicago is 08:00 UTC in November.
        assert!(
            runner(&types(), &exports)
                .run_due(&store, t("2026-11-23T07:58:00Z"), t("2026-11-23T07:59:58Z"))
                .unwrap()
                .is_empty()
        );
        let ran = runner(&types(), &exports)
            .run_due(&store, t("2026-11-23T07:59:58Z"), t("2026-11-23T08:00:00Z"))
            .unwrap();
        assert_eq!(ran.len(), 1, "{ran:?}");
        let file = dir.path().join("tenants/acme/exports/daily.csv");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "id,grade\r\n1,9\r\n");
        assert!(
            runner(&types(), &exports)
                .run_due(&store, t("2026-11-23T08:00:00Z"), t("2026-11-23T08:00:02Z"))
                .unwrap()
                .is_empty()
        );
        let runs = store.export_runs("acme", Some("daily"), 10).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].cause, RunCause::Schedule);
        assert_eq!(
            runs[0].outcome,
            Some(RunOutcome::Written { rows: 1, bytes: 15, destination: "/exports/daily.csv".into() })
        );
    }

    /// With `[storage] backend = "s3"`: a scheduled run's file is put in the bucket, whole,
    /// nothing of it in the tenant's folder on disk or left in the spool; what a connector
    /// would be sent is a local copy of the object, removed once dropped.
    #[test]
    fn a_scheduled_export_goes_to_the_bucket_and_its_local_copy_is_the_objects() {
        let (dir, store, exports) = acme();
        let bucket = std::sync::Arc::new(sluice_files::testing::memory_bucket());
        let exports = exports.in_bucket(Some(bucket.clone()));
        store.save_export("acme", &saved("daily", "0 2 * * *"), false).unwrap();
        let ran = runner(&types(), &exports)
            .run_due(&store, t("2026-11-23T07:59:58Z"), t("2026-11-23T08:00:00Z"))
            .unwrap();
        assert_eq!(ran.len(), 1, "{ran:?}");
        assert!(!dir.path().join("tenants/acme/exports/daily.csv").exists(), "not on disk");
        let folder = sluice_files::ObjectKey::folder(&name(), "exports");
        let listed = bucket.list(&folder).unwrap();
        assert_eq!(
            listed.files.iter().map(|e| (e.name.as_str(), e.size)).collect::<Vec<_>>(),
            [("daily.csv", 15)]
        );
        let local = exports.local(&name(), "daily.csv").unwrap();
        assert_eq!(std::fs::read_to_string(local.path()).unwrap(), "id,grade\r\n1,9\r\n");
        let copy = local.path().to_path_buf();
        drop(local);
        assert!(!copy.exists(), "the copy goes when dropped");
        assert_eq!(std::fs::read_dir(exports.spool()).unwrap().count(), 0, "nothing left in the spool");
        assert!(
            exports
                .local(&name(), "absent.csv")
                .unwrap_err()
                .to_string()
                .contains("/exports/absent.csv is not in memory")
        );
        assert!(exports.local(&name(), "../daily.csv").is_err(), "a name, not a path");
        let runs = store.export_runs("acme", Some("daily"), 10).unwrap();
        assert_eq!(
            runs[0].outcome,
            Some(RunOutcome::Written { rows: 1, bytes: 15, destination: "/exports/daily.csv".into() })
        );
    }

    /// A run that cannot reach the bucket fails, and its outcome (the tenant's to read) does
    /// not say where the operator's object storage is.
    #[test]
    fn a_run_whose_bucket_is_gone_fails_without_naming_the_operators_storage() {
        let (_dir, store, exports) = acme();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let settings = sluice_files::BucketSettings {
            endpoint: format!("http://127.0.0.1:{closed}"),
            bucket: "internal-exports".into(),
            region: "us-east-1".into(),
            path_style: true,
            access_key_id: "AKID".into(),
            secret_access_key: "secret".into(),
            ..Default::default()
        };
        let bucket = std::sync::Arc::new(sluice_files::Bucket::open(&settings).unwrap());
        let exports = exports.in_bucket(Some(bucket));
        store.save_export("acme", &saved("daily", "0 2 * * *"), false).unwrap();
        runner(&types(), &exports)
            .run_due(&store, t("2026-11-23T07:59:58Z"), t("2026-11-23T08:00:00Z"))
            .unwrap();
        let runs = store.export_runs("acme", Some("daily"), 10).unwrap();
        let Some(RunOutcome::Failed(why)) = &runs[0].outcome else { panic!("{runs:?}") };
        assert!(why.contains("object storage did not answer"), "{why}");
        assert!(!why.contains("127.0.0.1") && !why.contains("internal-exports"), "{why}");
    }

    /// A server answered an import for an after-import export and died before it exported
    /// (its claim is in the store, its owner file unlocked): the next server to look exports
    /// it, once.
    #[test]
    fn an_import_a_stopped_server_answered_but_did_not_export_is_exported_by_the_next() {
        use sluice_store::roles::{SavedExports, Schedules};
        let (dir, store, exports) = acme();
        let owners = dir.path().join("spool/owners");
        sluice_core::spool::hold_owner(&owners).unwrap();
        store.save_export("acme", &saved("nightly", "after_import"), false).unwrap();
        load(&store, &[("3", "9")]);
        let (_, _, import_id) = store.exports_after_imports().unwrap().remove(0);
        assert!(store.mark_import_seen("acme", "nightly", import_id).unwrap());
        let dead = "p9-dead-00000009";
        std::fs::write(owners.join(format!("{dead}.owner")), "").unwrap();
        assert!(store.claim_due(&format!("after/acme/nightly/{import_id}"), 1_000, dead).unwrap());
        let now = jiff::Timestamp::now();
        let ran = runner(&types(), &exports).run_due(&store, now, now).unwrap();
        assert_eq!(ran.len(), 1, "{ran:?}");
        let file = dir.path().join("tenants/acme/exports/nightly.csv");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "id,grade\r\n1,9\r\n3,9\r\n");
        assert!(runner(&types(), &exports).run_due(&store, now, now).unwrap().is_empty(), "exported once");
        assert_eq!(store.retake_due("after/", "p8-other-00000008", &|_| true).unwrap(), vec![], "finished");
    }

    #[test]
    fn an_after_import_export_answers_each_changing_import_once_and_a_failed_run_keeps_the_last_file() {
        let (dir, store, exports) = acme();
        store.save_export("acme", &saved("nightly", "after_import"), false).unwrap();
        let now = jiff::Timestamp::now();
        assert!(
            runner(&types(), &exports).run_due(&store, now, now).unwrap().is_empty(),
            "no import since it was saved"
        );
        load(&store, &[("3", "9")]);
        let ran = runner(&types(), &exports).run_due(&store, now, now).unwrap();
        assert_eq!(ran.len(), 1);
        let file = dir.path().join("tenants/acme/exports/nightly.csv");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "id,grade\r\n1,9\r\n3,9\r\n");
        assert!(runner(&types(), &exports).run_due(&store, now, now).unwrap().is_empty(), "answered once");
        load(&store, &[("3", "9")]);
        assert!(
            runner(&types(), &exports).run_due(&store, now, now).unwrap().is_empty(),
            "an import that changed nothing"
        );

        // The type is gone from the configuration: the run fails, is logged, the file stays.
        load(&store, &[("4", "9")]);
        let none = ImportTypes::parse(&[]).unwrap();
        let ran = runner(&none, &exports).run_due(&store, now, now).unwrap();
        assert!(matches!(&ran[0].2.outcome, RunOutcome::Failed(why) if why.contains("students")), "{ran:?}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "id,grade\r\n1,9\r\n3,9\r\n");
        let runs = store.export_runs("acme", None, 10).unwrap();
        assert_eq!(runs.len(), 2);
        assert!(runs[0].finished_ms.is_some() && matches!(runs[0].outcome, Some(RunOutcome::Failed(_))));
    }

    #[test]
    fn one_run_per_export_and_a_bounded_number_at_once() {
        let slots = RunSlots::new(4);
        let a = slots.try_take("acme", "Roster").unwrap();
        assert_eq!(slots.try_take("acme", "roster").err(), Some(Busy::Running), "the same export, any case");
        let _a2 = slots.try_take("acme", "other").unwrap();
        assert_eq!(slots.try_take("acme", "third").err(), Some(Busy::Full), "half the slots per tenant");
        let _b = slots.try_take("beta", "roster").unwrap();
        let _c = slots.try_take("gamma", "roster").unwrap();
        assert_eq!(slots.try_take("delta", "roster").err(), Some(Busy::Full), "all of them taken");
        drop(a);
        assert!(slots.try_take("acme", "roster").is_ok(), "given back when dropped");
    }

    #[test]
    fn what_is_saved_is_checked_as_a_run_would_check_it() {
        let (_dir, store, _) = acme();
        let tenant = store.require_tenant("acme").unwrap();
        let checked = |e| checked(&types(), &tenant, e);
        let mut bad = saved("x", "on_demand");
        bad.columns = vec!["nickname".into()];
        let e = checked(bad).unwrap_err().to_string();
        assert!(e.contains("nickname") && e.contains("id, grade"), "{e}");
        let mut xlsx = saved("x", "on_demand");
        (xlsx.format, xlsx.bom) = (sluice_core::saved_export::ExportFormat::Xlsx, true);
        assert!(checked(xlsx).is_err());
        let mut other = saved("x", "on_demand");
        other.type_name = "badge".into();
        assert!(checked(other).unwrap_err().to_string().contains("badge"));
    }
}
