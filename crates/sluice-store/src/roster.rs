//! Loading a package of several record types (a OneRoster zip) as one import: every file's
//! rows are staged in one TEMP table, then applied in one write transaction. Records are
//! never removed here: a record a bulk file no longer lists, or a delta file marks
//! `tobedeleted`, keeps its data with `"status":"tobedeleted"`, and comes back to `active`
//! when a later file lists it again.
//!
//! Staging takes no write lock (a tenant's first package too): other tenants' imports commit
//! meanwhile; only the apply holds it.

use crate::Counts;
use crate::imports::{Outcome, StageKind, apply_outcome, finish};
use crate::{Result, Store};
use rusqlite::{Connection, params};

/// How a file's rows change the records of its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageMode {
    /// A full snapshot: records of the type it does not list become `tobedeleted`.
    Bulk,
    /// Changes only: each row says whether its record is active or to be deleted.
    Delta,
}

pub struct PackageLoader {
    conn: Connection,
    tenant_id: i64,
    import_id: i64,
    /// The tenant had no package records: nothing to compare with or mark.
    first: bool,
}

impl Store {
    /// Opens a loader for one package import, on a connection of its own.
    pub fn package_loader(&self, tenant: &str, import_id: i64) -> Result<PackageLoader> {
        let conn = self.import_connection(32_000)?;
        let tenant_id = crate::tenant_id(&conn, tenant)?;
        conn.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS package_stage (type TEXT NOT NULL, key TEXT NOT NULL,
                 line INTEGER NOT NULL, data TEXT NOT NULL, hash INTEGER NOT NULL, kind INTEGER NOT NULL,
                 PRIMARY KEY (type, key)) WITHOUT ROWID;
             DELETE FROM temp.package_stage;
             BEGIN;",
        )?;
        let first = !conn
            .prepare("SELECT 1 FROM main.records WHERE tenant_id = ?1 AND type >= 'oneroster.' AND type < 'oneroster/'")?
            .exists([tenant_id])?;
        Ok(PackageLoader { conn, tenant_id, import_id, first })
    }
}

impl PackageLoader {
    /// Stages a row; returns the line of an earlier row of the same type and key, if any.
    pub fn stage(
        &mut self,
        type_name: &str,
        line: u64,
        key: &str,
        data: &str,
        hash: i64,
        kind: StageKind,
    ) -> Result<Option<u64>> {
        let mut insert = self.conn.prepare_cached(
            "INSERT INTO temp.package_stage (type, key, line, data, hash, kind) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (type, key) DO NOTHING",
        )?;
        if insert.execute(params![type_name, key, line as i64, data, hash, kind as i64])? == 1 {
            return Ok(None);
        }
        let mut first =
            self.conn.prepare_cached("SELECT line FROM temp.package_stage WHERE type = ?1 AND key = ?2")?;
        Ok(Some(first.query_row(params![type_name, key], |r| r.get::<_, i64>(0))? as u64))
    }

    /// (connection, tenant, first), for the reference checks in `referrers`: a tenant's
    /// first package deletes nothing.
    pub(crate) fn parts(&self) -> (&Connection, i64, bool) {
        (&self.conn, self.tenant_id, self.first)
    }

    pub(crate) fn import_id(&self) -> i64 {
        self.import_id
    }

    /// Whether the tenant has an active record of this type and key.
    pub fn active(&mut self, type_name: &str, key: &str) -> Result<bool> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT 1 FROM main.records WHERE tenant_id = ?1 AND type = ?2 AND key = ?3 AND inactive = 0",
        )?;
        Ok(stmt.exists(params![self.tenant_id, type_name, key])?)
    }

    /// Active records of a type before this import.
    pub fn existing(&self, type_name: &str) -> Result<u64> {
        if self.first {
            return Ok(0);
        }
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM main.records INDEXED BY records_by_state
             WHERE tenant_id = ?1 AND type = ?2 AND inactive = 0",
            params![self.tenant_id, type_name],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    /// What applying one type's staged rows would do.
    pub fn plan(&self, type_name: &str, mode: PackageMode) -> Result<Counts> {
        if self.first {
            // Nothing to compare with or mark (the tenant's imports take turns): every active
            // row adds a record; deletions of records that cannot exist write nothing.
            let added = self.conn.query_row(
                "SELECT COUNT(*) FROM temp.package_stage WHERE type = ?1 AND kind = 0",
                [type_name],
                |r| r.get::<_, i64>(0),
            )? as u64;
            return Ok(Counts { added, ..Counts::default() });
        }
        let q = |sql: &str| -> Result<u64> {
            Ok(self.conn.query_row(sql, params![self.tenant_id, type_name], |r| r.get::<_, i64>(0))? as u64)
        };
        // Rows that write a record: active rows, and deletions of records that exist.
        let writes = "FROM temp.package_stage s LEFT JOIN main.records r
             ON r.tenant_id = ?1 AND r.type = s.type AND r.key = s.key
             WHERE s.type = ?2 AND (s.kind = 0 OR (s.kind = 1 AND r.key IS NOT NULL))";
        let added = q(&format!("SELECT COUNT(*) {writes} AND r.key IS NULL"))?;
        let unchanged = q(&format!("SELECT COUNT(*) {writes} AND r.hash = s.hash"))?;
        let written = q(&format!("SELECT COUNT(*) {writes}"))?;
        let newly_deleted = match mode {
            PackageMode::Bulk => q("SELECT COUNT(*) FROM main.records r INDEXED BY records_by_state
                 WHERE r.tenant_id = ?1 AND r.type = ?2 AND r.inactive = 0
                 AND NOT EXISTS (SELECT 1 FROM temp.package_stage s WHERE s.type = ?2 AND s.key = r.key)")?,
            PackageMode::Delta => {
                // CROSS JOIN: walk the (small) delta, not the type's records.
                q("SELECT COUNT(*) FROM temp.package_stage s CROSS JOIN main.records r
                 ON r.tenant_id = ?1 AND r.type = s.type AND r.key = s.key
                 WHERE s.type = ?2 AND s.kind = 1 AND r.inactive = 0")?
            }
        };
        let deletions_written = match mode {
            PackageMode::Bulk => 0,
            PackageMode::Delta => newly_deleted,
        };
        Ok(Counts {
            added,
            unchanged,
            // Disjoint subsets of `written`; saturating all the same, so that a surprise can
            // never read as a huge number of changes.
            updated: written.saturating_sub(added + unchanged + deletions_written),
            deleted: newly_deleted,
            ..Counts::default()
        })
    }

    /// Drops everything staged (a dry run).
    pub fn abandon(self) -> Result<()> {
        self.conn.execute_batch("ROLLBACK; DELETE FROM temp.package_stage;")?;
        Ok(())
    }

    /// Applies the staged rows of `types` (none for failed and held imports) and records the
    /// outcome, in one transaction.
    pub fn commit(self, types: &[(&str, PackageMode)], outcome: Outcome<'_>) -> Result<()> {
        finish(&self.conn, || self.apply(types, &outcome))?;
        self.conn.execute_batch("DELETE FROM temp.package_stage;")?;
        Ok(())
    }

    fn apply(&self, types: &[(&str, PackageMode)], o: &Outcome<'_>) -> Result<()> {
        let c = &self.conn;
        let (t, id) = (self.tenant_id, self.import_id);
        crate::imports::still_open(c, id)?;
        if o.apply.is_some() {
            // Before any file is written: what the package deletes is still as planned.
            self.deactivate(c, types, o.referrers)?;
            for &(ty, mode) in types {
                c.execute(
                    "INSERT INTO main.records (tenant_id, type, key, data, hash, created_import, updated_import, line, inactive)
                     SELECT ?1, s.type, s.key, s.data, s.hash, ?3, ?3, s.line, s.kind = 1 FROM temp.package_stage s
                     WHERE s.type = ?2 AND (s.kind = 0 OR (s.kind = 1 AND EXISTS (SELECT 1 FROM main.records r
                         WHERE r.tenant_id = ?1 AND r.type = s.type AND r.key = s.key)))
                     ON CONFLICT (tenant_id, type, key) DO UPDATE SET data = excluded.data, hash = excluded.hash,
                         updated_import = excluded.updated_import, line = excluded.line, inactive = excluded.inactive
                         WHERE records.hash != excluded.hash",
                    params![t, ty, id],
                )?;
                if mode == PackageMode::Bulk {
                    // The hash changes with the status, so the same row listed again later
                    // counts as an update (a reactivation), not as unchanged.
                    c.execute(
                        "UPDATE main.records SET data = json_set(data, '$.status', 'tobedeleted'),
                             hash = hash + 1, updated_import = ?3, inactive = 1
                         WHERE tenant_id = ?1 AND type = ?2 AND inactive = 0
                         AND NOT EXISTS (SELECT 1 FROM temp.package_stage s WHERE s.type = ?2 AND s.key = records.key)",
                        params![t, ty, id],
                    )?;
                }
            }
        }
        if o.apply.is_some() && types.iter().any(|(ty, _)| *ty == "oneroster.users") {
            // Users are people too: a teacher from the roster and a guardian from
            // guardians.csv with the same name, email and phone are one person.
            let paths = crate::people::PersonPaths::oneroster_users();
            let mut warnings = o.warnings.to_vec();
            warnings.extend(crate::people::link_people(c, t, "oneroster.users", id, &paths)?);
            return apply_outcome(c, id, &Outcome { warnings: &warnings, ..o.clone() });
        }
        apply_outcome(c, id, o)
    }
}
