//! Saved exports (a tenant's export definitions, by name) and the log of their runs.

use crate::{Result, Store, StoreError, now_ms};
use rusqlite::{OptionalExtension, params};
use sluice_core::connector::ConnectorName;
use sluice_core::saved_export::{
    ExportFormat, ExportName, ExportRun, ExportWhen, RunCause, RunOutcome, SavedExport,
};

const SELECT: &str =
    "SELECT e.name, e.type, e.format, e.columns, e.filters, e.bom, e.run_when, e.push_to, e.in_exports
    FROM saved_exports e JOIN tenants t ON t.id = e.tenant_id";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<std::result::Result<SavedExport, String>> {
    row_at(r, 0)
}

fn collect(
    rows: impl Iterator<Item = rusqlite::Result<std::result::Result<SavedExport, String>>>,
) -> Result<Vec<SavedExport>> {
    let mut out = Vec::new();
    for r in rows {
        out.push(r?.map_err(StoreError::Corrupt)?);
    }
    Ok(out)
}

const RUN_SELECT: &str = "SELECT r.id, t.name, r.export, r.cause, r.started_ms, r.finished_ms, r.status,
    r.rows, r.bytes, r.destination, r.error FROM export_runs r JOIN tenants t ON t.id = r.tenant_id";

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExportRun> {
    let cause: String = r.get(3)?;
    let status: String = r.get(6)?;
    let outcome = match status.as_str() {
        "written" => Some(RunOutcome::Written {
            rows: r.get::<_, Option<i64>>(7)?.unwrap_or(0).max(0) as u64,
            bytes: r.get::<_, Option<i64>>(8)?.unwrap_or(0).max(0) as u64,
            destination: r.get::<_, Option<String>>(9)?.unwrap_or_default(),
        }),
        "failed" => Some(RunOutcome::Failed(r.get::<_, Option<String>>(10)?.unwrap_or_default())),
        _ => None,
    };
    Ok(ExportRun {
        id: r.get(0)?,
        tenant: r.get(1)?,
        export: r.get(2)?,
        cause: RunCause::parse(&cause).unwrap_or(RunCause::OnDemand),
        started_ms: r.get(4)?,
        finished_ms: r.get(5)?,
        outcome,
    })
}

/// The statuses of imports that applied their changes.
const APPLIED: &str = "('complete', 'incomplete')";

impl crate::roles::SavedExports for Store {
    fn save_export(&self, tenant: &str, export: &SavedExport, replace: bool) -> Result<()> {
        let columns =
            serde_json::to_string(&export.columns).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let filters =
            serde_json::to_string(&export.filters).map_err(|e| StoreError::Corrupt(e.to_string()))?;
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
                    "SELECT coalesce(max(id), 0) FROM imports WHERE tenant_id = ?1 AND type = ?2 AND status IN {APPLIED}"
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
                            export.type_name,
                            export.format.extension(),
                            columns,
                            filters,
                            export.bom,
                            export.when.as_str(),
                            seen,
                            export.push_to.as_ref().map(|c| c.as_str()),
                            export.in_exports
                        ],
                    )?;
                }
                None => {
                    tx.execute(
                        "INSERT INTO saved_exports (tenant_id, name, type, format, columns, filters, bom, run_when,
                         seen_import, created_ms, push_to, in_exports) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                        params![
                            tenant_id,
                            export.name.as_str(),
                            export.type_name,
                            export.format.extension(),
                            columns,
                            filters,
                            export.bom,
                            export.when.as_str(),
                            seen,
                            now_ms(),
                            export.push_to.as_ref().map(|c| c.as_str()),
                            export.in_exports
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
                    &format!("{SELECT} WHERE e.tenant_id = ?1 AND lower(e.name) = lower(?2)"),
                    params![tenant_id, name],
                    row,
                )
                .optional()?;
            found.map(|r| r.map_err(StoreError::Corrupt)).transpose()
        })
    }

    fn saved_exports(&self, tenant: &str) -> Result<Vec<SavedExport>> {
        self.with(|c| {
            let tenant_id = crate::tenant_id(c, tenant)?;
            let mut stmt = c.prepare(&format!("{SELECT} WHERE e.tenant_id = ?1 ORDER BY e.name"))?;
            collect(stmt.query_map([tenant_id], row)?)
        })
    }

    fn scheduled_exports(&self) -> Result<Vec<(String, String, SavedExport)>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT t.name, t.timezone, e.name, e.type, e.format, e.columns, e.filters, e.bom, e.run_when, e.push_to, e.in_exports
                 FROM saved_exports e JOIN tenants t ON t.id = e.tenant_id
                 WHERE t.disabled = 0 AND e.run_when NOT IN ('on_demand', 'after_import') ORDER BY t.name, e.name",
            )?;
            let mut out = Vec::new();
            let rows = stmt.query_map([], |r| {
                let (tenant, tz): (String, String) = (r.get(0)?, r.get(1)?);
                Ok((tenant, tz, row_at(r, 2)?))
            })?;
            for r in rows {
                let (tenant, tz, export) = r?;
                out.push((tenant, tz, export.map_err(StoreError::Corrupt)?));
            }
            Ok(out)
        })
    }

    fn exports_after_imports(&self) -> Result<Vec<(String, SavedExport, i64)>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT t.name, latest, e.name, e.type, e.format, e.columns, e.filters, e.bom, e.run_when, e.push_to, e.in_exports
                 FROM (SELECT e.*, (SELECT max(i.id) FROM imports i WHERE i.tenant_id = e.tenant_id
                         AND (i.type = e.type OR (e.format = 'photos' AND i.record_types = e.type))
                         AND i.status IN {APPLIED} AND i.added + i.updated + i.deleted > 0) AS latest
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
                out.push((tenant, export.map_err(StoreError::Corrupt)?, latest));
            }
            Ok(out)
        })
    }

    fn mark_import_seen(&self, tenant: &str, name: &str, import_id: i64) -> Result<()> {
        self.with(|c| {
            let tenant_id = crate::tenant_id(c, tenant)?;
            c.execute(
                "UPDATE saved_exports SET seen_import = max(seen_import, ?3) WHERE tenant_id = ?1 AND name = ?2",
                params![tenant_id, name, import_id],
            )?;
            Ok(())
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
                "INSERT INTO export_runs (tenant_id, export, cause, started_ms, status) VALUES (?1, ?2, ?3, ?4, 'running')",
                params![tenant_id, export, cause.as_str(), now_ms()],
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
        self.with(|c| Ok(c.query_row(&format!("{RUN_SELECT} WHERE r.id = ?1"), [id], run_row).optional()?))
    }

    fn fail_interrupted_runs(&self) -> Result<usize> {
        self.with(|c| {
            Ok(c.execute(
                "UPDATE export_runs SET status = 'failed', finished_ms = ?1,
                 error = 'interrupted: sluice stopped while it ran (nothing half-written: the last file stays)'
                 WHERE status = 'running'",
                [now_ms()],
            )?)
        })
    }

    fn export_runs(&self, tenant: &str, export: Option<&str>, limit: usize) -> Result<Vec<ExportRun>> {
        self.with(|c| {
            let tenant_id = crate::tenant_id(c, tenant)?;
            let mut stmt = c.prepare(&format!(
                "{RUN_SELECT} WHERE r.tenant_id = ?1 AND (?2 IS NULL OR lower(r.export) = lower(?2))
                 ORDER BY r.id DESC LIMIT ?3"
            ))?;
            let runs = stmt
                .query_map(params![tenant_id, export, limit as i64], run_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(runs)
        })
    }
}

/// A saved export read from the columns starting at `at` (name, type, format, columns,
/// filters, bom, run_when, push_to, in_exports).
fn row_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<std::result::Result<SavedExport, String>> {
    let (name, type_name, format, columns, filters, bom, when): (
        String,
        String,
        String,
        String,
        String,
        bool,
        String,
    ) = (
        r.get(at)?,
        r.get(at + 1)?,
        r.get(at + 2)?,
        r.get(at + 3)?,
        r.get(at + 4)?,
        r.get(at + 5)?,
        r.get(at + 6)?,
    );
    let push_to: Option<String> = r.get(at + 7)?;
    let in_exports: bool = r.get(at + 8)?;
    Ok(parse_export(name, type_name, format, columns, filters, bom, when).and_then(|mut e| {
        e.push_to = push_to.map(|c| ConnectorName::parse(&c)).transpose().map_err(|e| e.to_string())?;
        e.in_exports = in_exports;
        Ok(e)
    }))
}

fn parse_export(
    name: String,
    type_name: String,
    format: String,
    columns: String,
    filters: String,
    bom: bool,
    when: String,
) -> std::result::Result<SavedExport, String> {
    Ok(SavedExport {
        name: ExportName::parse(&name).map_err(|e| e.to_string())?,
        type_name,
        format: ExportFormat::parse(&format).ok_or_else(|| format!("export format {format:?}"))?,
        columns: serde_json::from_str(&columns).map_err(|e| e.to_string())?,
        filters: serde_json::from_str(&filters).map_err(|e| e.to_string())?,
        bom,
        when: ExportWhen::parse(&when).map_err(|e| e.to_string())?,
        push_to: None,
        in_exports: true,
    })
}
