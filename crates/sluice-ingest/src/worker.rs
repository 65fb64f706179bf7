//! The ingest service: turns upload events into imports, and serves the CLI's import,
//! approve and discard. One worker runs imports one at a time, in upload order.

use crate::run::{ImportError, ImportRequest, held_path, import_file};
use sluice_core::Trigger;
use sluice_core::import::{ImportType, ImportTypes};
use sluice_store::{ImportRecord, ImportStatus, Store, StoredUpload};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tracing::{info, warn};

/// Where uploads wait while they are imported (`DATA_DIR/spool/staging`).
pub fn staging_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("spool").join("staging")
}

pub struct Ingest {
    pub store: Arc<Store>,
    pub types: ImportTypes,
    tenants_root: PathBuf,
    staging: PathBuf,
    held: PathBuf,
    reports: PathBuf,
}

/// How long a claimed upload is reserved for the worker that claimed it.
const LEASE: Duration = Duration::from_secs(300);

impl Ingest {
    pub fn new(store: Arc<Store>, types: ImportTypes, data_dir: &Path) -> std::io::Result<Self> {
        let me = Self {
            store,
            types,
            tenants_root: data_dir.join("tenants"),
            staging: staging_dir(data_dir),
            held: data_dir.join("spool").join("held"),
            reports: data_dir.join("reports"),
        };
        for d in [&me.staging, &me.held, &me.reports] {
            std::fs::create_dir_all(d)?;
        }
        Ok(me)
    }

    /// After a crash: imports that were running never committed (their uploads run again),
    /// and staged copies of uploads already imported are leftovers.
    pub fn recover(&self) -> Result<(), ImportError> {
        let removed = self.store.remove_interrupted_imports()?;
        if removed > 0 {
            info!("{removed} interrupted import(s) will run again");
        }
        for entry in std::fs::read_dir(&self.staging).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_prefix("upload-").and_then(|n| n.parse::<i64>().ok())
                && self.store.upload_consumed(id)?
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// The import types a tenant has: those whose folder is one of the tenant's folders.
    pub fn tenant_types(&self, tenant: &sluice_store::Tenant) -> Vec<String> {
        let folders = tenant.layout.import_folders();
        self.types
            .all()
            .iter()
            .filter(|t| t.folder.as_ref().is_some_and(|f| folders.contains(f)))
            .map(|t| t.name.clone())
            .collect()
    }

    /// Handles every waiting upload event; returns how many there were. `forced` (a sync)
    /// imports even for tenants whose trigger is manual.
    pub fn drain(&self, forced: bool) -> Result<usize, ImportError> {
        let mut n = 0;
        while let Some(upload) = self.store.claim_upload(LEASE)? {
            self.process_upload(&upload, forced)?;
            n += 1;
        }
        Ok(n)
    }

    fn process_upload(
        &self,
        upload: &StoredUpload,
        forced: bool,
    ) -> Result<Option<ImportRecord>, ImportError> {
        let tenant_name = upload.event.tenant.as_str();
        let [folder, name] = upload.event.path.components() else {
            self.store.consume_upload(upload.id, None)?;
            return Ok(None);
        };
        let Some(tenant) = self.store.tenant(tenant_name)? else {
            self.store.consume_upload(upload.id, None)?;
            return Ok(None);
        };
        if tenant.trigger == Trigger::Manual && !forced {
            // The file waits in its folder for `sluice sync`.
            self.store.consume_upload(upload.id, None)?;
            return Ok(None);
        }
        let allowed = self.tenant_types(&tenant);
        let Some(import_type) = self.types.for_upload(&allowed, folder, name) else {
            // Nothing can read this file: say where it belongs, and leave it where it is.
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
        // Move the upload out of the tenant's folder first, so that a new upload of the same
        // name can neither change it mid-import nor be deleted with it afterwards.
        let staged = self.staging.join(format!("upload-{}", upload.id));
        if !staged.exists() {
            let source = self.tenants_root.join(tenant_name).join(folder).join(name);
            match std::fs::rename(&source, &staged) {
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
            }
        }
        let record =
            self.run(tenant_name, import_type, &staged, name, "upload", Some(upload.id), false, None)?;
        let _ = std::fs::remove_file(&staged);
        Ok(Some(record))
    }

    fn no_type_message(&self, allowed: &[String], folder: &str, name: &str) -> String {
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

    /// Runs one import and copies its error report into the tenant's /errors folder.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        tenant: &str,
        t: &ImportType,
        file: &Path,
        file_name: &str,
        source: &str,
        upload_id: Option<i64>,
        approved: bool,
        existing_import: Option<i64>,
    ) -> Result<ImportRecord, ImportError> {
        let started = std::time::Instant::now();
        let req = ImportRequest {
            tenant,
            import_type: t,
            file,
            file_name,
            source,
            upload_id,
            reports_dir: &self.reports,
            held_dir: &self.held,
            approved,
            existing_import,
            check_references: true,
        };
        let record = import_file(&self.store, &req)?;
        if let Some(report) = &record.report_file {
            let stem = file_name.rsplit_once('.').map_or(file_name, |(s, _)| s);
            let target = self
                .tenants_root
                .join(tenant)
                .join("errors")
                .join(format!("{}-{stem}-errors.csv", record.id));
            if let Err(e) = std::fs::copy(report, &target) {
                warn!(tenant, import = record.id, "could not copy the error report to /errors: {e}");
            }
        }
        let c = record.counts;
        info!(
            tenant, import = record.id, file = file_name, r#type = %t.name, status = record.status.as_str(),
            rows = c.rows, added = c.added, updated = c.updated, unchanged = c.unchanged, deleted = c.deleted,
            rejected = c.rejected, ms = started.elapsed().as_millis() as u64, "import finished"
        );
        Ok(record)
    }

    /// Applies a held import despite the deletion safeguard.
    pub fn approve(&self, id: i64) -> Result<ImportRecord, ApproveError> {
        let record = self.store.import(id)?.ok_or(ApproveError::NoSuchImport(id))?;
        if record.status != ImportStatus::Held {
            return Err(ApproveError::NotHeld(id, record.status.as_str()));
        }
        let t = self
            .types
            .get(&record.type_name)
            .ok_or_else(|| ApproveError::NoType(record.type_name.clone()))?;
        let file = held_path(&self.held, id);
        let done =
            self.run(&record.tenant, t, &file, &record.file_name, &record.source, None, true, Some(id))?;
        let _ = std::fs::remove_file(&file);
        Ok(done)
    }

    pub fn discard(&self, id: i64) -> Result<(), ApproveError> {
        self.store.import(id)?.ok_or(ApproveError::NoSuchImport(id))?;
        self.store.discard_import(id)?;
        let _ = std::fs::remove_file(held_path(&self.held, id));
        Ok(())
    }

    /// Imports uploads as they are recorded, until `shutdown` resolves.
    pub async fn run_worker(
        self: Arc<Self>,
        wake: Arc<Notify>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            let me = self.clone();
            match tokio::task::spawn_blocking(move || me.drain(false)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => warn!("import worker: {e}"),
                Err(e) => warn!("import worker crashed: {e}"),
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = wake.notified() => {}
                // Leases of a crashed worker expire; look again now and then.
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    #[error("no import {0}; `sluice imports --tenant T` lists them")]
    NoSuchImport(i64),
    #[error("import {0} is {1}, not held: only held imports can be approved or discarded")]
    NotHeld(i64, &'static str),
    #[error("import type {0:?} no longer exists")]
    NoType(String),
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Store(#[from] sluice_store::StoreError),
}
