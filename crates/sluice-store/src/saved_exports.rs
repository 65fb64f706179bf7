//! Saved exports (a tenant's export definitions, by name) and the log of their runs.

use crate::{Result, Store, StoreError, now_ms};
use rusqlite::{OptionalExtension, params};
use sluice_core::connector::ConnectorName;
use sluice_core::saved_export::{
    ExportFormat, ExportName, ExportRun, ExportWhen, RunCause, RunOutcome, SavedExport,
};

/// A saved export's columns, in [`SavedExportRow`]'s order, of `saved_exports e` (every
/// backend's table has them).
pub const SAVED_EXPORT_COLUMNS: &str =
    "e.name, e.type, e.format, e.columns, e.filters, e.bom, e.run_when, e.push_to, e.in_exports";

const FROM: &str = "FROM saved_exports e JOIN tenants t ON t.id = e.tenant_id";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SavedExportRow> {
    row_at(r, 0)
}

fn collect(rows: impl Iterator<Item = rusqlite::Result<SavedExportRow>>) -> Result<Vec<SavedExport>> {
    let mut out = Vec::new();
    for r in rows {
        out.push(r?.parse()?);
    }
    Ok(out)
}

/// An export run with its tenant's name, in [`ExportRunRow`]'s order (every backend's
/// `export_runs` and `tenants` tables have these columns).
pub const EXPORT_RUN_SELECT: &str =
    "SELECT r.id, t.name, r.export, r.cause, r.started_ms, r.finished_ms, r.status,
    r.rows, r.bytes, r.destination, r.error FROM export_runs r JOIN tenants t ON t.id = r.tenant_id";

/// What a run left `running` by a process that stopped is failed with.
pub const INTERRUPTED_RUN: &str =
    "interrupted: sluice stopped while it ran (nothing half-written: the last file stays)";

/// An export run as every backend stores it (the columns of [`EXPORT_RUN_SELECT`], in order),
/// read by [`ExportRunRow::into_run`].
#[derive(Debug, Clone)]
pub struct ExportRunRow {
    pub id: i64,
    pub tenant: String,
    pub export: String,
    pub cause: String,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub status: String,
    pub rows: Option<i64>,
    pub bytes: Option<i64>,
    pub destination: Option<String>,
    pub error: Option<String>,
}

impl ExportRunRow {
    /// The run this row holds (no outcome while it runs).
    pub fn into_run(self) -> ExportRun {
        let outcome = match self.status.as_str() {
            "written" => Some(RunOutcome::Written {
                rows: self.rows.unwrap_or(0).max(0) as u64,
                bytes: self.bytes.unwrap_or(0).max(0) as u64,
                destination: self.destination.unwrap_or_default(),
            }),
            "failed" => Some(RunOutcome::Failed(self.error.unwrap_or_default())),
            _ => None,
        };
        ExportRun {
            id: self.id,
            tenant: self.tenant,
            export: self.export,
            cause: RunCause::parse(&self.cause).unwrap_or(RunCause::OnDemand),
            started_ms: self.started_ms,
            finished_ms: self.finished_ms,
            outcome,
        }
    }
}

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExportRun> {
    Ok(ExportRunRow {
        id: r.get(0)?,
        tenant: r.get(1)?,
        export: r.get(2)?,
        cause: r.get(3)?,
        started_ms: r.get(4)?,
        finished_ms: r.get(5)?,
        status: r.get(6)?,
        rows: r.get(7)?,
        bytes: r.get(8)?,
        destination: r.get(9)?,
        error: r.get(10)?,
    }
    .into_run())
}

/// The statuses of imports that applied their changes, as an SQL list.
pub const APPLIED_STATUSES: &str = "('complete', 'incomplete')";

impl crate::roles::SavedExports for Store {
    fn save_export(&self, tenant: &str, export: &SavedExport, replace: bool) -> Result<()> {
        let row = SavedExportRow::of(export)?;
        self.with_write(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let tenant_id = crate::tenant_id(&tx, tenant)?;
            let existing: Option<String> = tx
                .query_row(
                    "SELECT name FROM saved_exports WHERE tenant_id = ?1 AND lower(name) = lower(?2)",
                    params![tenant_id, export.name.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(to) = &export.push_to {
                let known: Option<i64> = tx
                    .query_row(
                        "SELECT 1 FROM connectors WHERE tenant_id = ?1 AND lower(name) = lower(?2)",
                        params![tenant_id, to.as_str()],
                        |r| r.get(0),
                    )
                    .optional()?;
                if known.is_none() {
                    return Err(StoreError::NoSuchConnector(to.to_string()));
                }
            }
            // An after-import export answers imports from now on, not the ones before it.
            let seen: i64 = tx.query_row(
                &format!(
                    "SELECT coalesce(max(id), 0) FROM imports WHERE tenant_id = ?1 AND type = ?2 AND status IN {APPLIED_STATUSES}"
                ),
                params![tenant_id, export.type_name],
                |r| r.get(0),
            )?;
            match existing {
                Some(name) if !replace => return Err(StoreError::ExportExists(name)),
                Some(name) => {
                    tx.execute(
                        // The name stays as first spelled (its file in /exports stays the same).
                        "UPDATE saved_exports SET type = ?3, format = ?4, columns = ?5, filters = ?6, bom = ?7,
                         run_when = ?8, seen_import = ?9, push_to = ?10, in_exports = ?11 WHERE tenant_id = ?1 AND name = ?2",
                        params![
                            tenant_id,
                            name,
                            row.type_name,
                            row.format,
                            row.columns,
                            row.filters,
                            row.bom,
                            row.when,
                            seen,
                            row.push_to,
                            row.in_exports
                        ],
                    )?;
                }
                None => {
                    tx.execute(
                        "INSERT INTO saved_exports (tenant_id, name, type, format, columns, filters, bom, run_when,
                         seen_import, created_ms, push_to, in_exports) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                        params![
                            tenant_id,
                            row.name,
                            row.type_name,
                            row.format,
                            row.columns,
                            row.filters,
                            row.bom,
                            row.when,
                            seen,
                            now_ms(),
                            row.push_to,
                            row.in_exports
                        ],
                    )?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn saved_export(&self, tenant: &str, name: &str) -> Result<Option<SavedExport>> {
        self.with(|c| {
            let tenant_id = crate::tenant_id(c, tenant)?;
            let found = c
                .query_row(
                    &format!("SELECT {SAVED_EXPORT_COLUMNS} {FROM} WHERE e.tenant_id = ?1 AND lower(e.name) = lower(?2)"),
                    params![tenant_id, name],
                    row,
                )
                .optional()?;
            found.map(SavedExportRow::parse).transpose()
        })
    }

    fn saved_exports(&self, tenant: &str) -> Result<Vec<SavedExport>> {
        self.with(|c| {
            let tenant_id = crate::tenant_id(c, tenant)?;
            let mut stmt = c.prepare(&format!(
                "SELECT {SAVED_EXPORT_COLUMNS} {FROM} WHERE e.tenant_id = ?1 ORDER BY e.name"
            ))?;
            collect(stmt.query_map([tenant_id], row)?)
        })
    }

    fn scheduled_exports(&self) -> Result<Vec<(String, String, SavedExport)>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT t.name, t.timezone, {SAVED_EXPORT_COLUMNS} {FROM}
                 WHERE t.disabled = 0 AND e.run_when NOT IN ('on_demand', 'after_import') ORDER BY t.name, e.name"
            ))?;
            let mut out = Vec::new();
            let rows = stmt.query_map([], |r| {
                let (tenant, tz): (String, String) = (r.get(0)?, r.get(1)?);
                Ok((tenant, tz, row_at(r, 2)?))
            })?;
            for r in rows {
                let (tenant, tz, export) = r?;
                out.push((tenant, tz, export.parse()?));
            }
            Ok(out)
        })
    }

    fn exports_after_imports(&self) -> Result<Vec<(String, SavedExport, i64)>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT t.name, latest, {SAVED_EXPORT_COLUMNS}
                 FROM (SELECT e.*, (SELECT max(i.id) FROM imports i WHERE i.tenant_id = e.tenant_id
                         AND (i.type = e.type OR (e.format = 'photos' AND i.record_types = e.type))
                         AND i.status IN {APPLIED_STATUSES} AND i.added + i.updated + i.deleted > 0) AS latest
                       FROM saved_exports e WHERE e.run_when = 'after_import') e
                 JOIN tenants t ON t.id = e.tenant_id
                 WHERE t.disabled = 0 AND latest > e.seen_import ORDER BY t.name, e.name"
            ))?;
            let mut out = Vec::new();
            let rows = stmt.query_map([], |r| {
                let (tenant, latest): (String, i64) = (r.get(0)?, r.get(1)?);
                Ok((tenant, latest, row_at(r, 2)?))
            })?;
            for r in rows {
                let (tenant, latest, export) = r?;
                out.push((tenant, export.parse()?, latest));
            }
            Ok(out)
        })
    }

    fn mark_import_seen(&self, tenant: &str, name: &str, import_id: i64) -> Result<bool> {
        self.with(|c| {
            let tenant_id = crate::tenant_id(c, tenant)?;
            let taken = c.execute(
                "UPDATE saved_exports SET seen_import = ?3 WHERE tenant_id = ?1 AND name = ?2 AND seen_import < ?3",
                params![tenant_id, name, import_id],
            )?;
            Ok(taken == 1)
        })
    }

    fn remove_saved_export(&self, tenant: &str, name: &str) -> Result<()> {
        self.with(|c| {
            let tenant_id = crate::tenant_id(c, tenant)?;
            let n = c.execute(
                "DELETE FROM saved_exports WHERE tenant_id = ?1 AND lower(name) = lower(?2)",
                params![tenant_id, name],
            )?;
            if n == 0 {
                return Err(StoreError::NoSuchExport(name.to_owned()));
            }
            Ok(())
        })
    }

    fn start_export_run(&self, tenant: &str, export: &str, cause: RunCause) -> Result<i64> {
        self.with(|c| {
            let tenant_id = crate::tenant_id(c, tenant)?;
            c.execute(
                "INSERT INTO export_runs (tenant_id, export, cause, started_ms, status, owner)
                 VALUES (?1, ?2, ?3, ?4, 'running', ?5)",
                params![tenant_id, export, cause.as_str(), now_ms(), sluice_core::spool::owner_tag()],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    fn finish_export_run(&self, id: i64, outcome: &RunOutcome) -> Result<()> {
        self.with(|c| {
            match outcome {
                RunOutcome::Written { rows, bytes, destination } => c.execute(
                    "UPDATE export_runs SET status = 'written', rows = ?2, bytes = ?3, destination = ?4, finished_ms = ?5
                     WHERE id = ?1",
                    params![id, *rows as i64, *bytes as i64, destination, now_ms()],
                )?,
                RunOutcome::Failed(why) => c.execute(
                    "UPDATE export_runs SET status = 'failed', error = ?2, finished_ms = ?3 WHERE id = ?1",
                    params![id, why, now_ms()],
                )?,
            };
            Ok(())
        })
    }

    fn export_run(&self, id: i64) -> Result<Option<ExportRun>> {
        self.with(|c| {
            Ok(c.query_row(&format!("{EXPORT_RUN_SELECT} WHERE r.id = ?1"), [id], run_row).optional()?)
        })
    }

    fn fail_interrupted_runs(&self, ended: &dyn Fn(&str) -> bool) -> Result<usize> {
        self.with(|c| {
            let running: Vec<(i64, Option<String>)> = c
                .prepare("SELECT id, owner FROM export_runs WHERE status = 'running'")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let mut failed = 0;
            for (id, owner) in running {
                if owner.as_deref().is_none_or(ended) {
                    failed += c.execute(
                        "UPDATE export_runs SET status = 'failed', finished_ms = ?2, error = ?3
                         WHERE id = ?1 AND status = 'running'",
                        params![id, now_ms(), INTERRUPTED_RUN],
                    )?;
                }
            }
            Ok(failed)
        })
    }

    fn export_runs(&self, tenant: &str, export: Option<&str>, limit: usize) -> Result<Vec<ExportRun>> {
        self.with(|c| {
            let tenant_id = crate::tenant_id(c, tenant)?;
            let mut stmt = c.prepare(&format!(
                "{EXPORT_RUN_SELECT} WHERE r.tenant_id = ?1 AND (?2 IS NULL OR lower(r.export) = lower(?2))
                 ORDER BY r.id DESC LIMIT ?3"
            ))?;
            let runs = stmt
                .query_map(params![tenant_id, export, limit as i64], run_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(runs)
        })
    }
}

/// A saved export read from the columns starting at `at` ([`SAVED_EXPORT_COLUMNS`]).
fn row_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<SavedExportRow> {
    Ok(SavedExportRow {
        name: r.get(at)?,
        type_name: r.get(at + 1)?,
        format: r.get(at + 2)?,
        columns: r.get(at + 3)?,
        filters: r.get(at + 4)?,
        bom: r.get(at + 5)?,
        when: r.get(at + 6)?,
        push_to: r.get(at + 7)?,
        in_exports: r.get(at + 8)?,
    })
}

/// A saved export as every backend stores it (the columns of [`SAVED_EXPORT_COLUMNS`], in
/// order): written from a [`SavedExport`] by [`SavedExportRow::of`], read back by
/// [`SavedExportRow::parse`].
#[derive(Debug, Clone)]
pub struct SavedExportRow {
    pub name: String,
    pub type_name: String,
    pub format: String,
    /// JSON: an array of column names.
    pub columns: String,
    /// JSON: an array of `COLUMN=VALUE` filters.
    pub filters: String,
    pub bom: bool,
    /// `run_when`: `on_demand`, `after_import` or a cron schedule.
    pub when: String,
    pub push_to: Option<String>,
    pub in_exports: bool,
}

impl SavedExportRow {
    /// The row that stores `export`.
    pub fn of(export: &SavedExport) -> Result<Self> {
        Ok(SavedExportRow {
            name: export.name.as_str().to_owned(),
            type_name: export.type_name.clone(),
            format: export.format.extension().to_owned(),
            columns: serde_json::to_string(&export.columns)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            filters: serde_json::to_string(&export.filters)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            bom: export.bom,
            when: export.when.as_str().to_owned(),
            push_to: export.push_to.as_ref().map(|c| c.as_str().to_owned()),
            in_exports: export.in_exports,
        })
    }

    /// The saved export this row holds; a value no sluice writes is [`StoreError::Corrupt`].
    pub fn parse(self) -> Result<SavedExport> {
        let text = |e: &dyn std::fmt::Display| StoreError::Corrupt(e.to_string());
        let format = &self.format;
        Ok(SavedExport {
            name: ExportName::parse(&self.name).map_err(|e| text(&e))?,
            type_name: self.type_name,
            format: ExportFormat::parse(format)
                .ok_or_else(|| StoreError::Corrupt(format!("export format {format:?}")))?,
            columns: serde_json::from_str(&self.columns).map_err(|e| text(&e))?,
            filters: serde_json::from_str(&self.filters).map_err(|e| text(&e))?,
            bom: self.bom,
            when: ExportWhen::parse(&self.when).map_err(|e| text(&e))?,
            push_to: self.push_to.map(|c| ConnectorName::parse(&c)).transpose().map_err(|e| text(&e))?,
            in_exports: self.in_exports,
        })
    }
}
