//! Saved exports and the log of their runs on PostgreSQL, as `sluice-store`'s
//! `saved_exports.rs` keeps them on SQLite (one row codec for both: `SavedExportRow`,
//! `ExportRunRow`).
//!
//! Where SQLite's write lock made saving read-then-write safe, here the export's row is locked
//! (`FOR UPDATE`) and a new name is inserted `ON CONFLICT DO NOTHING`: two nodes saving one
//! name at once (any case) save it once, and the other is answered as if it had come second
//! (`ExportExists`, or its replacement). The connector an export pushes to is held
//! (`FOR KEY SHARE`) until the export is saved, so a connector removed meanwhile on another
//! node sees the export that uses it.
//!
//! Names are matched whatever their case as SQLite matches them: `lower()` of ASCII only
//! (the columns and every parameter compared with them are `COLLATE "C"`; the database's own
//! locale would fold more, the Kelvin sign to `k`).

use crate::deliveries::bigint;
use crate::{PgStore, db, tenant_id};
use postgres::Row;
use sluice_core::saved_export::{ExportRun, RunCause, RunOutcome, SavedExport};
use sluice_store::{
    APPLIED_STATUSES, EXPORT_RUN_SELECT, ExportRunRow, INTERRUPTED_RUN, Result, SAVED_EXPORT_COLUMNS,
    SavedExportRow, SavedExports, StoreError, now_ms,
};

const FROM: &str = "FROM saved_exports e JOIN tenants t ON t.id = e.tenant_id";

/// A saved export's row from the columns starting at `at` ([`SAVED_EXPORT_COLUMNS`]).
fn export_at(r: &Row, at: usize) -> SavedExportRow {
    SavedExportRow {
        name: r.get(at),
        type_name: r.get(at + 1),
        format: r.get(at + 2),
        columns: r.get(at + 3),
        filters: r.get(at + 4),
        bom: r.get(at + 5),
        when: r.get(at + 6),
        push_to: r.get(at + 7),
        in_exports: r.get(at + 8),
    }
}

fn run(r: &Row) -> ExportRun {
    ExportRunRow {
        id: r.get(0),
        tenant: r.get(1),
        export: r.get(2),
        cause: r.get(3),
        started_ms: r.get(4),
        finished_ms: r.get(5),
        status: r.get(6),
        rows: r.get(7),
        bytes: r.get(8),
        destination: r.get(9),
        error: r.get(10),
    }
    .into_run()
}

/// How many times a save goes round when another node's save of the same name keeps getting
/// in first and out again (each round waits for that node's commit; two are enough unless the
/// name is removed between them).
pub(crate) const SAVE_ROUNDS: usize = 5;

/// A save that lost every round to saves of the same name on other nodes.
pub(crate) fn contended(what: &str) -> StoreError {
    StoreError::Database(sluice_store::DatabaseError::other(std::io::Error::other(format!(
        "{what} was saved and removed by other nodes {SAVE_ROUNDS} times while this save waited: try again"
    ))))
}

impl SavedExports for PgStore {
    fn save_export(&self, tenant: &str, export: &SavedExport, replace: bool) -> Result<()> {
        let row = SavedExportRow::of(export)?;
        self.with(|c| {
            for _ in 0..SAVE_ROUNDS {
                let mut tx = c.transaction().map_err(db)?;
                let tenant_id = tenant_id(&mut tx, tenant)?;
                let existing: Option<String> = tx
                    .query_opt(
                        "SELECT name FROM saved_exports WHERE tenant_id = $1 AND lower(name) = lower($2::text COLLATE \"C\")
                         FOR UPDATE",
                        &[&tenant_id, &row.name],
                    )
                    .map_err(db)?
                    .map(|r| r.get(0));
                if let Some(to) = &row.push_to {
                    let known = tx
                        .query_opt(
                            "SELECT 1 FROM connectors WHERE tenant_id = $1 AND lower(name) = lower($2::text COLLATE \"C\")
                             FOR KEY SHARE",
                            &[&tenant_id, to],
                        )
                        .map_err(db)?;
                    if known.is_none() {
                        return Err(StoreError::NoSuchConnector(to.clone()));
                    }
                }
                // An after-import export answers imports from now on, not the ones before it.
                let sql = format!(
                    "SELECT coalesce(max(id), 0) FROM imports WHERE tenant_id = $1 AND type = $2
                     AND status IN {APPLIED_STATUSES}"
                );
                let seen: i64 = tx.query_one(sql.as_str(), &[&tenant_id, &row.type_name]).map_err(db)?.get(0);
                match existing {
                    Some(name) if !replace => return Err(StoreError::ExportExists(name)),
                    Some(name) => {
                        // The name stays as first spelled (its file in /exports stays the same).
                        tx.execute(
                            "UPDATE saved_exports SET type = $3, format = $4, columns = $5, filters = $6, bom = $7,
                             run_when = $8, seen_import = $9, push_to = $10, in_exports = $11
                             WHERE tenant_id = $1 AND name = $2",
                            &[
                                &tenant_id,
                                &name,
                                &row.type_name,
                                &row.format,
                                &row.columns,
                                &row.filters,
                                &row.bom,
                                &row.when,
                                &seen,
                                &row.push_to,
                                &row.in_exports,
                            ],
                        )
                        .map_err(db)?;
                    }
                    None => {
                        // Another node saving the same name (any case) meanwhile: this waits
                        // for its commit, inserts nothing, and the next round finds its row.
                        let inserted = tx
                            .execute(
                                "INSERT INTO saved_exports (tenant_id, name, type, format, columns, filters, bom,
                                 run_when, seen_import, created_ms, push_to, in_exports)
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING",
                                &[
                                    &tenant_id,
                                    &row.name,
                                    &row.type_name,
                                    &row.format,
                                    &row.columns,
                                    &row.filters,
                                    &row.bom,
                                    &row.when,
                                    &seen,
                                    &now_ms(),
                                    &row.push_to,
                                    &row.in_exports,
                                ],
                            )
                            .map_err(db)?;
                        if inserted == 0 {
                            continue;
                        }
                    }
                }
                tx.commit().map_err(db)?;
                return Ok(());
            }
            Err(contended(&format!("export {:?}", row.name)))
        })
    }

    fn saved_export(&self, tenant: &str, name: &str) -> Result<Option<SavedExport>> {
        self.with(|c| {
            let tenant_id = tenant_id(c, tenant)?;
            let sql = format!(
                "SELECT {SAVED_EXPORT_COLUMNS} {FROM} WHERE e.tenant_id = $1 AND lower(e.name) = lower($2::text COLLATE \"C\")"
            );
            let found = c.query_opt(sql.as_str(), &[&tenant_id, &name]).map_err(db)?;
            found.map(|r| export_at(&r, 0).parse()).transpose()
        })
    }

    fn saved_exports(&self, tenant: &str) -> Result<Vec<SavedExport>> {
        self.with(|c| {
            let tenant_id = tenant_id(c, tenant)?;
            let sql = format!("SELECT {SAVED_EXPORT_COLUMNS} {FROM} WHERE e.tenant_id = $1 ORDER BY e.name");
            let rows = c.query(sql.as_str(), &[&tenant_id]).map_err(db)?;
            rows.iter().map(|r| export_at(r, 0).parse()).collect()
        })
    }

    fn scheduled_exports(&self) -> Result<Vec<(String, String, SavedExport)>> {
        self.with(|c| {
            let sql = format!(
                "SELECT t.name, t.timezone, {SAVED_EXPORT_COLUMNS} {FROM}
                 WHERE NOT t.disabled AND e.run_when NOT IN ('on_demand', 'after_import') ORDER BY t.name, e.name"
            );
            let rows = c.query(sql.as_str(), &[]).map_err(db)?;
            rows.iter().map(|r| Ok((r.get(0), r.get(1), export_at(r, 2).parse()?))).collect()
        })
    }

    fn exports_after_imports(&self) -> Result<Vec<(String, SavedExport, i64)>> {
        self.with(|c| {
            let sql = format!(
                "SELECT t.name, latest, {SAVED_EXPORT_COLUMNS}
                 FROM (SELECT e.*, (SELECT max(i.id) FROM imports i WHERE i.tenant_id = e.tenant_id
                         AND (i.type = e.type OR (e.format = 'photos' AND i.record_types = e.type))
                         AND i.status IN {APPLIED_STATUSES} AND i.added + i.updated + i.deleted > 0) AS latest
                       FROM saved_exports e WHERE e.run_when = 'after_import') e
                 JOIN tenants t ON t.id = e.tenant_id
                 WHERE NOT t.disabled AND latest > e.seen_import ORDER BY t.name, e.name"
            );
            let rows = c.query(sql.as_str(), &[]).map_err(db)?;
            rows.iter().map(|r| Ok((r.get(0), export_at(r, 2).parse()?, r.get(1)))).collect()
        })
    }

    fn mark_import_seen(&self, tenant: &str, name: &str, import_id: i64) -> Result<bool> {
        self.with(|c| {
            let tenant_id = tenant_id(c, tenant)?;
            // One conditional statement: of two nodes answering at once, the second waits for
            // the first's row lock, then finds the import answered and changes nothing.
            let taken = c
                .execute(
                    "UPDATE saved_exports SET seen_import = $3 WHERE tenant_id = $1 AND name = $2 AND seen_import < $3",
                    &[&tenant_id, &name, &import_id],
                )
                .map_err(db)?;
            Ok(taken == 1)
        })
    }

    fn remove_saved_export(&self, tenant: &str, name: &str) -> Result<()> {
        self.with(|c| {
            let tenant_id = tenant_id(c, tenant)?;
            let n = c
                .execute(
                    "DELETE FROM saved_exports WHERE tenant_id = $1 AND lower(name) = lower($2::text COLLATE \"C\")",
                    &[&tenant_id, &name],
                )
                .map_err(db)?;
            if n == 0 {
                return Err(StoreError::NoSuchExport(name.to_owned()));
            }
            Ok(())
        })
    }

    fn start_export_run(&self, tenant: &str, export: &str, cause: RunCause) -> Result<i64> {
        self.with(|c| {
            let tenant_id = tenant_id(c, tenant)?;
            let row = c
                .query_one(
                    "INSERT INTO export_runs (tenant_id, export, cause, started_ms, status, owner)
                     VALUES ($1, $2, $3, $4, 'running', $5) RETURNING id",
                    &[&tenant_id, &export, &cause.as_str(), &now_ms(), &sluice_core::spool::owner_tag()],
                )
                .map_err(db)?;
            Ok(row.get(0))
        })
    }

    fn finish_export_run(&self, id: i64, outcome: &RunOutcome) -> Result<()> {
        self.with(|c| {
            match outcome {
                RunOutcome::Written { rows, bytes, destination } => c.execute(
                    "UPDATE export_runs SET status = 'written', rows = $2, bytes = $3, destination = $4, finished_ms = $5
                     WHERE id = $1",
                    &[
                        &id,
                        &i64::try_from(*rows).unwrap_or(i64::MAX),
                        &i64::try_from(*bytes).unwrap_or(i64::MAX),
                        destination,
                        &now_ms(),
                    ],
                ),
                RunOutcome::Failed(why) => c.execute(
                    "UPDATE export_runs SET status = 'failed', error = $2, finished_ms = $3 WHERE id = $1",
                    &[&id, why, &now_ms()],
                ),
            }
            .map_err(db)?;
            Ok(())
        })
    }

    fn export_run(&self, id: i64) -> Result<Option<ExportRun>> {
        self.with(|c| {
            let sql = format!("{EXPORT_RUN_SELECT} WHERE r.id = $1");
            Ok(c.query_opt(sql.as_str(), &[&id]).map_err(db)?.as_ref().map(run))
        })
    }

    fn fail_interrupted_runs(&self, ended: &dyn Fn(&str) -> bool) -> Result<usize> {
        self.with(|c| {
            let running =
                c.query("SELECT id, owner FROM export_runs WHERE status = 'running'", &[]).map_err(db)?;
            let mut failed = 0;
            for row in running {
                let (id, owner): (i64, Option<String>) = (row.get(0), row.get(1));
                if owner.as_deref().is_none_or(ended) {
                    failed += c
                        .execute(
                            "UPDATE export_runs SET status = 'failed', finished_ms = $2, error = $3
                             WHERE id = $1 AND status = 'running'",
                            &[&id, &now_ms(), &INTERRUPTED_RUN],
                        )
                        .map_err(db)?;
                }
            }
            Ok(usize::try_from(failed).unwrap_or(usize::MAX))
        })
    }

    fn export_runs(&self, tenant: &str, export: Option<&str>, limit: usize) -> Result<Vec<ExportRun>> {
        self.with(|c| {
            let tenant_id = tenant_id(c, tenant)?;
            let sql = format!(
                "{EXPORT_RUN_SELECT} WHERE r.tenant_id = $1
                   AND ($2::text IS NULL OR lower(r.export) = lower($2::text COLLATE \"C\"))
                 ORDER BY r.id DESC LIMIT $3"
            );
            let rows = c.query(sql.as_str(), &[&tenant_id, &export, &bigint(limit)]).map_err(db)?;
            Ok(rows.iter().map(run).collect())
        })
    }
}
