//! Imports on PostgreSQL: their history and decisions ([`Imports`]), and the loader that
//! applies one ([`PgLoader`], a [`Loading`]).
//!
//! A loader has a connection and a transaction of its own, from its first row to its commit,
//! as SQLite's does. Rows are staged in a TEMP table with COPY, in batches buffered in memory
//! (a query of the loader's sends what is buffered first), so staging costs no round trip per
//! row; a repeated key is noticed by a set of 64-bit fingerprints (8 bytes a row) and checked
//! against the stage whenever a fingerprint repeats, so a collision never rejects a row. Plans
//! and the apply are set-based, as SQLite's: upsert of changed rows, deletions, search rows
//! of what was written, tombstones, deactivations, then people linked, the outcome, errors
//! and the upload consumed, committed together.
//!
//! Where SQLite's one write lock made a check-then-write safe, rows are locked: the import's
//! own row (`FOR UPDATE`) before it applies, so an approval and a newer import that race are
//! decided by whichever locks it first, and held imports superseded are locked as they are
//! updated. One import of a tenant's type at a time is the caller's to ensure (the worker's
//! turn): today a lock file in the data directory, so within one node only; across nodes it
//! is still to come (an upload is applied once all the same: `apply_outcome`).

use crate::{PgStore, db, tenant_id};
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, GenericClient, NoTls, Row, Statement};
use sluice_core::history::{Counts, ImportRecord, ImportStatus, StoredError};
use sluice_core::import::{LoadMode, OnDelete};
use sluice_core::people::Contact;
use sluice_store::{
    Emptied, IMPORT_SELECT, ImportRow, Imports, Loading, ONEROSTER, Outcome, PersonPaths, Referrer,
    Referrers, Result, STORED_ERRORS, SearchPaths, StageKind, StoreError, now_ms, people_of, sample_entry,
    search_paths, superseded_warning, supersedes, warnings_to_json,
};
use std::cell::RefCell;
use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::io::Write;
use std::mem::ManuallyDrop;

fn import_row(r: &Row) -> ImportRecord {
    ImportRow {
        id: r.get(0),
        tenant: r.get(1),
        type_name: r.get(2),
        file_name: r.get(3),
        source: r.get(4),
        upload_id: r.get(5),
        status: r.get(6),
        encoding: r.get(7),
        counts: [r.get(8), r.get(9), r.get(10), r.get(11), r.get(12), r.get(13)],
        message: r.get(14),
        warnings: r.get(15),
        held_file: r.get(16),
        report_file: r.get(17),
        created_ms: r.get(18),
        finished_ms: r.get(19),
        decided_by: r.get(20),
        decided_ms: r.get(21),
        delimiter: r.get(22),
        superseded_by: r.get(23),
        acknowledged_by: r.get(24),
        acknowledged_ms: r.get(25),
    }
    .into_record()
}

/// The text at JSON path `path` (an SQL expression giving a `jsonpath`, as SQLite's paths are
/// written: `$[2]`, `$.email`) of the JSON text `data`, NULL when there is none: what SQLite's
/// `json_extract` gives for a string.
pub(crate) fn json_text(data: &str, path: &str) -> String {
    format!("(jsonb_path_query_first(({data})::jsonb, ({path})::jsonpath) #>> '{{}}')")
}

/// A package record's JSON text with its status `tobedeleted`, written as SQLite's `json_set`
/// writes it (the status replaced where it is, or added last), so that both backends hold the
/// same text: sluice writes package records as flat, compact objects.
const MARK_TOBEDELETED: &str = "CASE WHEN data ~ '\"status\":\"[^\"\\\\]*\"'
    THEN regexp_replace(data, '\"status\":\"[^\"\\\\]*\"', '\"status\":\"tobedeleted\"')
    ELSE left(data, -1) || CASE WHEN data = '{}' THEN '' ELSE ',' END || '\"status\":\"tobedeleted\"}' END";

/// Text folded for search as `sluice_store::fold` folds it (Unicode lower case, whatever the
/// database's locale): NULL is empty.
pub(crate) fn folded(expr: &str) -> String {
    format!("lower(COALESCE({expr}, '') COLLATE \"und-x-icu\")")
}

impl Imports for PgStore {
    fn create_import(
        &self,
        tenant: &str,
        type_name: &str,
        file_name: &str,
        source: &str,
        upload_id: Option<i64>,
        manifest_upload: Option<i64>,
    ) -> Result<i64> {
        self.with(|c| {
            let row = c
                .query_opt(
                    "INSERT INTO imports (tenant_id, type, file_name, source, upload_id, manifest_upload, status, created_ms)
                     SELECT id, $2, $3, $4, $5, $6, 'running', $7 FROM tenants WHERE name = $1 RETURNING id",
                    &[&tenant, &type_name, &file_name, &source, &upload_id, &manifest_upload, &now_ms()],
                )
                .map_err(db)?;
            row.map(|r| r.get(0)).ok_or_else(|| StoreError::NoSuchTenant(tenant.to_owned()))
        })
    }

    fn manifest_file_import(&self, manifest_upload: i64, file_name: &str) -> Result<Option<ImportRecord>> {
        self.with(|c| {
            let sql = format!(
                "{IMPORT_SELECT} WHERE i.manifest_upload = $1 AND i.file_name = $2 AND i.status != 'running'
                 ORDER BY i.id DESC LIMIT 1"
            );
            Ok(c.query_opt(sql.as_str(), &[&manifest_upload, &file_name])
                .map_err(db)?
                .as_ref()
                .map(import_row))
        })
    }

    fn import(&self, id: i64) -> Result<Option<ImportRecord>> {
        self.with(|c| {
            let sql = format!("{IMPORT_SELECT} WHERE i.id = $1");
            Ok(c.query_opt(sql.as_str(), &[&id]).map_err(db)?.as_ref().map(import_row))
        })
    }

    fn imports(&self, tenant: &str, limit: usize) -> Result<Vec<ImportRecord>> {
        self.with(|c| {
            let sql = format!("{IMPORT_SELECT} WHERE t.name = $1 ORDER BY i.id DESC LIMIT $2");
            Ok(c.query(sql.as_str(), &[&tenant, &crate::count_param(limit)])
                .map_err(db)?
                .iter()
                .map(import_row)
                .collect())
        })
    }

    fn superseded_by(&self, id: i64) -> Result<Vec<i64>> {
        self.with(|c| {
            let rows =
                c.query("SELECT id FROM imports WHERE superseded_by = $1 ORDER BY id", &[&id]).map_err(db)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn import_errors(&self, id: i64, limit: usize, offset: usize) -> Result<Vec<StoredError>> {
        self.with(|c| {
            let rows = c
                .query(
                    "SELECT line, column_name, code, reason, value, record_key, record_name FROM import_errors
                     WHERE import_id = $1 ORDER BY seq LIMIT $2 OFFSET $3",
                    &[&id, &crate::count_param(limit), &crate::count_param(offset)],
                )
                .map_err(db)?;
            Ok(rows
                .iter()
                .map(|r| StoredError {
                    line: r.get::<_, i64>(0).max(0) as u64,
                    column: r.get(1),
                    code: r.get(2),
                    reason: r.get(3),
                    value: r.get(4),
                    key: r.get(5),
                    name: r.get(6),
                })
                .collect())
        })
    }

    fn acknowledge_import(&self, id: i64, by: &str) -> Result<()> {
        self.with(|c| {
            let changed = c
                .execute(
                    "UPDATE imports SET acknowledged_by = $2, acknowledged_ms = $3
                     WHERE id = $1 AND status IN ('failed', 'incomplete') AND acknowledged_ms IS NULL",
                    &[&id, &by, &now_ms()],
                )
                .map_err(db)?;
            if changed == 0 {
                return Err(StoreError::Misuse(
                    "only a failed or incomplete import not yet acknowledged can be",
                ));
            }
            Ok(())
        })
    }

    fn record_approval(&self, id: i64, by: &str) -> Result<()> {
        self.with(|c| {
            let n = c
                .execute(
                    "UPDATE imports SET decided_by = $2, decided_ms = $3 WHERE id = $1 AND status = 'held'",
                    &[&id, &by, &now_ms()],
                )
                .map_err(db)?;
            if n == 0 {
                return Err(StoreError::NotHeld(id));
            }
            Ok(())
        })
    }

    fn discard_import(&self, id: i64, by: &str) -> Result<()> {
        self.with(|c| {
            let now = now_ms();
            let n = c
                .execute(
                    "UPDATE imports SET status = 'discarded', held_file = NULL, finished_ms = $2, decided_by = $3,
                     decided_ms = $2,
                     message = CASE WHEN strpos(message, $4) > 0 THEN substr(message, 1, strpos(message, $4) - 1)
                               ELSE message END
                     WHERE id = $1 AND status = 'held'",
                    &[&id, &now, &by, &sluice_core::import::safeguard::CLI_HINT],
                )
                .map_err(db)?;
            if n == 0 {
                return Err(StoreError::NotHeld(id));
            }
            Ok(())
        })
    }

    fn record_failed_import(
        &self,
        tenant: &str,
        type_name: &str,
        file_name: &str,
        source: &str,
        upload_id: Option<i64>,
        message: &str,
    ) -> Result<i64> {
        self.with(|c| {
            let tenant_id = tenant_id(c, tenant)?;
            let mut tx = c.transaction().map_err(db)?;
            let now = now_ms();
            // An import of this upload that crashed left its row `running`: this entry replaces it.
            tx.execute("DELETE FROM imports WHERE upload_id = $1 AND status = 'running'", &[&upload_id])
                .map_err(db)?;
            let id: i64 = tx
                .query_one(
                    "INSERT INTO imports (tenant_id, type, file_name, source, upload_id, status, message, created_ms, finished_ms)
                     VALUES ($1, $2, $3, $4, $5, 'failed', $6, $7, $7) RETURNING id",
                    &[&tenant_id, &type_name, &file_name, &source, &upload_id, &message, &now],
                )
                .map_err(db)?
                .get(0);
            if let Some(upload) = upload_id {
                tx.execute(
                    "UPDATE upload_events SET consumed_ms = $2, import_id = $3 WHERE id = $1",
                    &[&upload, &now, &id],
                )
                .map_err(db)?;
            }
            tx.commit().map_err(db)?;
            Ok(id)
        })
    }

    fn loader(&self, tenant: &str, type_name: &str, import_id: i64) -> Result<Box<dyn Loading>> {
        Ok(Box::new(crate::blocking(|| PgLoader::open(self, tenant, import_id, Some(type_name)))?))
    }

    fn package_loader(&self, tenant: &str, import_id: i64) -> Result<Box<dyn Loading>> {
        Ok(Box::new(crate::blocking(|| PgLoader::open(self, tenant, import_id, None))?))
    }

    fn records(
        &self,
        tenant: &str,
        type_name: &str,
        deactivated: Option<bool>,
        each: &mut dyn FnMut(&str, &str),
    ) -> Result<u64> {
        self.with(|c| {
            // Streamed as the server sends them: nothing collected.
            let params: [&(dyn ToSql + Sync); 3] = [&tenant, &type_name, &deactivated];
            let mut rows = c
                .query_raw(
                    "SELECT r.key, r.data FROM records r JOIN tenants t ON t.id = r.tenant_id
                     WHERE t.name = $1 AND r.type = $2 AND ($3::boolean IS NULL OR r.inactive = $3) ORDER BY r.key",
                    params,
                )
                .map_err(db)?;
            let mut n = 0;
            while let Some(row) = rows.next().map_err(db)? {
                each(row.get(0), row.get(1));
                n += 1;
            }
            Ok(n)
        })
    }

    fn record_count(&self, tenant: &str, type_name: &str) -> Result<u64> {
        self.with(|c| {
            let n: i64 = c
                .query_one(
                    "SELECT COUNT(*) FROM records r JOIN tenants t ON t.id = r.tenant_id WHERE t.name = $1 AND r.type = $2",
                    &[&tenant, &type_name],
                )
                .map_err(db)?
                .get(0);
            Ok(n as u64)
        })
    }

    fn records_with_referrers(
        &self,
        tenant: &str,
        type_name: &str,
        referrers: &[Referrers],
        each: &mut sluice_store::roles::RecordWithReferrers<'_>,
    ) -> Result<u64> {
        self.with(|c| {
            let tenant_id = tenant_id(c, tenant)?;
            // One grouped table per referring type, joined to the records in key order.
            let mut with = Vec::new();
            let mut select = String::from("SELECT r.key, r.data");
            let mut joins = String::new();
            for k in 0..referrers.len() {
                let p = 3 + 4 * k;
                with.push(format!(
                    "ref{k} AS (SELECT v, string_agg(id, ';' ORDER BY id COLLATE \"C\") AS ids FROM (SELECT {} AS v, {} AS id
                     FROM records g WHERE g.tenant_id = $1 AND g.type = ${p} AND NOT g.inactive) x
                     WHERE v IS NOT NULL AND id IS NOT NULL GROUP BY v)",
                    json_text("g.data", &format!("${}::text", p + 1)),
                    json_text("g.data", &format!("${}::text", p + 2)),
                ));
                select.push_str(&format!(", ref{k}.ids"));
                joins.push_str(&format!(
                    " LEFT JOIN ref{k} ON ref{k}.v = COALESCE({}, r.key)",
                    json_text("r.data", &format!("${}::text", p + 3))
                ));
            }
            let sql = format!(
                "{}{select} FROM records r{joins} WHERE r.tenant_id = $1 AND r.type = $2 AND NOT r.inactive ORDER BY r.key",
                if with.is_empty() { String::new() } else { format!("WITH {} ", with.join(", ")) }
            );
            let mut values: Vec<&(dyn ToSql + Sync)> = vec![&tenant_id, &type_name];
            for r in referrers {
                values.extend([&r.type_name as &(dyn ToSql + Sync), &r.refers_by, &r.named_by, &r.matched_on]);
            }
            let mut rows = c.query_raw(sql.as_str(), values).map_err(db)?;
            let (mut n, mut names) = (0, Vec::with_capacity(referrers.len()));
            while let Some(row) = rows.next().map_err(db)? {
                names.clear();
                for k in 0..referrers.len() {
                    names.push(row.get::<_, Option<String>>(2 + k));
                }
                each(row.get(0), row.get(1), &names);
                n += 1;
            }
            Ok(n)
        })
    }
}

/// An import that staged this many rows analyses the records before it links people.
const ANALYZE_AFTER: u64 = 1_000;

/// Rows buffered for the next COPY into the stage.
const STAGE_BATCH_BYTES: usize = 4 << 20;

/// Writes `value` as a field of COPY's text format.
fn copy_field(out: &mut Vec<u8>, value: &str) -> Result<()> {
    if value.contains('\0') {
        return Err(StoreError::Misuse("a value with a NUL character cannot be stored in PostgreSQL"));
    }
    for b in value.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b => out.push(b),
        }
    }
    Ok(())
}

/// The mutable part of a loader (the trait's staging and planning take `&self`).
struct Inner {
    /// Closed by `Drop` (through `blocking`), not by the drop glue.
    c: ManuallyDrop<Client>,
    buffer: Vec<u8>,
    /// A fingerprint of (type, key) of every staged row.
    seen: HashSet<u64>,
    fingerprints: RandomState,
    /// The stage has an index on (type, key) (made when a fingerprint first repeats).
    indexed: bool,
    /// Rows staged.
    staged: u64,
    /// Rows were sent since the stage was last analysed (the planner knows nothing of a
    /// TEMP table's size until then).
    unanalysed: bool,
    reference: Option<Statement>,
    active: Option<Statement>,
}

impl Inner {
    /// Sends what is buffered.
    fn flush(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let mut w =
            self.c.copy_in("COPY stage (type, key, line, data, hash, kind) FROM STDIN").map_err(db)?;
        w.write_all(&self.buffer).map_err(|e| StoreError::Database(sluice_store::DatabaseError::other(e)))?;
        w.finish().map_err(db)?;
        self.buffer.clear();
        self.unanalysed = true;
        Ok(())
    }

    /// Flushes, and analyses the stage once after it grew: before planning and applying.
    fn ready(&mut self) -> Result<&mut Client> {
        self.flush()?;
        if !self.indexed {
            // The plans and the apply look rows up by key (anti-joins from the records).
            self.c.batch_execute("CREATE INDEX stage_by_key ON stage (type, key)").map_err(db)?;
            self.indexed = true;
        }
        if self.unanalysed {
            self.c.batch_execute("ANALYZE stage").map_err(db)?;
            self.unanalysed = false;
        }
        Ok(&mut self.c)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // SAFETY: taken once, here, and never used again: `self` is being dropped.
        crate::close(unsafe { ManuallyDrop::take(&mut self.c) });
    }
}

/// One import's loader on PostgreSQL (see the module's documentation).
pub struct PgLoader {
    inner: RefCell<Inner>,
    tenant_id: i64,
    import_id: i64,
    /// A single-type import's type; `None`: a package (its types start with [`ONEROSTER`]).
    single: Option<String>,
    /// The tenant had no records of the import's types: nothing to compare with or delete.
    first: bool,
    existing: u64,
}

impl PgLoader {
    fn open(store: &PgStore, tenant: &str, import_id: i64, single: Option<&str>) -> Result<Self> {
        let mut c = Client::connect(&store.url, NoTls).map_err(db)?;
        // The tables an import joins, analysed if much of them changed since (an import that
        // committed a moment ago is not yet counted by autovacuum): with stale statistics the
        // planner took a reload's anti-joins of 10,000 records for nested loops of seconds.
        // Before the transaction, so that its lock is not held through the import, and
        // skipping a table another session is analysing (never waiting for it).
        let stale: Vec<String> = c
            .query(
                "SELECT relname::text FROM pg_stat_user_tables
                 WHERE relname IN ('records', 'record_search', 'person_roles', 'people')
                 AND n_mod_since_analyze >= $1 AND n_mod_since_analyze > n_live_tup / 10 ORDER BY relname",
                &[&(ANALYZE_AFTER as i64)],
            )
            .map_err(db)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !stale.is_empty() {
            // Names from the list above, not inputs.
            c.batch_execute(&format!("ANALYZE (SKIP_LOCKED) {}", stale.join(", "))).map_err(db)?;
        }
        c.batch_execute(
            "SET lock_timeout = '60s';
             BEGIN;
             CREATE TEMP TABLE stage (type TEXT COLLATE \"C\" NOT NULL, key TEXT COLLATE \"C\" NOT NULL,
                 line BIGINT NOT NULL, data TEXT NOT NULL, hash BIGINT NOT NULL, kind SMALLINT NOT NULL)
                 ON COMMIT DROP;",
        )
        .map_err(db)?;
        let tenant_id = tenant_id(&mut c, tenant)?;
        // Kept until the import ends: the tenant is not removed under it (the rows it writes
        // have no foreign key to check that, migration 13), and its settings still change.
        // (A tenant removed while this waited for its row: none comes back, and nothing is
        // written for it.)
        if c.query_opt("SELECT 1 FROM tenants WHERE id = $1 FOR KEY SHARE", &[&tenant_id])
            .map_err(db)?
            .is_none()
        {
            return Err(StoreError::NoSuchTenant(tenant.to_owned()));
        }
        let (first, existing) = match single {
            Some(type_name) => {
                let r = c
                    .query_one(
                        "SELECT COUNT(*), COUNT(*) FILTER (WHERE NOT inactive) FROM records
                         WHERE tenant_id = $1 AND type = $2",
                        &[&tenant_id, &type_name],
                    )
                    .map_err(db)?;
                (r.get::<_, i64>(0) == 0, r.get::<_, i64>(1) as u64)
            }
            None => {
                let any = c
                    .query_opt(
                        "SELECT 1 FROM records WHERE tenant_id = $1 AND type >= $2 AND type < $3 LIMIT 1",
                        &[&tenant_id, &ONEROSTER, &format!("{}/", ONEROSTER.trim_end_matches('.'))],
                    )
                    .map_err(db)?;
                (any.is_none(), 0)
            }
        };
        Ok(PgLoader {
            inner: RefCell::new(Inner {
                c: ManuallyDrop::new(c),
                buffer: Vec::new(),
                seen: HashSet::new(),
                fingerprints: RandomState::new(),
                indexed: false,
                staged: 0,
                unanalysed: false,
                reference: None,
                active: None,
            }),
            tenant_id,
            import_id,
            single: single.map(str::to_owned),
            first,
            existing,
        })
    }

    fn marks(&self) -> bool {
        self.single.is_none()
    }

    fn own_type(&self) -> Result<&str> {
        self.single.as_deref().ok_or(StoreError::Misuse("a package's loader needs the type of each row"))
    }

    /// The condition on `g` that a referring record is left dangling (see `sluice-store`'s
    /// `referrers.rs`, whose SQLite text this is): $1 tenant, $2 the referred type, $3 the
    /// referring type, $4 the JSON path.
    fn dangling_condition(&self, mode: LoadMode, r: &Referrer) -> Option<String> {
        let v = json_text("g.data", "$4::text");
        if self.marks() {
            let deleted = match mode {
                LoadMode::Upsert => return None,
                LoadMode::Mirror => "NOT EXISTS (SELECT 1 FROM stage s WHERE s.type = $2 AND s.key = d.key)",
                LoadMode::Delta => {
                    "EXISTS (SELECT 1 FROM stage s WHERE s.type = $2 AND s.key = d.key AND s.kind = 1)"
                }
            };
            return Some(format!(
                "g.tenant_id = $1 AND g.type = $3 AND NOT g.inactive
                 AND NOT EXISTS (SELECT 1 FROM stage s WHERE s.type = $3 AND s.key = g.key)
                 AND EXISTS (SELECT 1 FROM records d WHERE d.tenant_id = $1 AND d.type = $2
                     AND d.key = {v} AND NOT d.inactive AND {deleted})"
            ));
        }
        let deleted = |alias: &str| match mode {
            LoadMode::Upsert => None,
            LoadMode::Mirror => {
                Some(format!("NOT EXISTS (SELECT 1 FROM stage s WHERE s.type = $2 AND s.key = {alias}.key)"))
            }
            LoadMode::Delta => Some(format!(
                "EXISTS (SELECT 1 FROM stage s WHERE s.type = $2 AND s.key = {alias}.key AND s.kind = 1)"
            )),
        };
        let names = |k: &str, prefix: bool| {
            if prefix {
                format!("({k} = {v} OR ({k} >= {v} || chr(31) AND {k} < {v} || chr(32)))")
            } else {
                format!("{k} = {v}")
            }
        };
        let mut sql = format!(
            "g.tenant_id = $1 AND g.type = $3 AND NOT g.inactive AND COALESCE({v}, '') != ''
             AND EXISTS (SELECT 1 FROM records d WHERE d.tenant_id = $1 AND d.type = $2 AND {} AND {})",
            names("d.key", r.prefix),
            deleted("d")?
        );
        if r.prefix {
            // Another record with the same first key column stays: the reference still resolves.
            let survives = match mode {
                LoadMode::Mirror => {
                    format!("EXISTS (SELECT 1 FROM stage s WHERE s.type = $2 AND {})", names("s.key", true))
                }
                _ => format!(
                    "EXISTS (SELECT 1 FROM records r WHERE r.tenant_id = $1 AND r.type = $2 AND {}
                     AND NOT EXISTS (SELECT 1 FROM stage s WHERE s.type = $2 AND s.key = r.key AND s.kind = 1))
                     OR EXISTS (SELECT 1 FROM stage s WHERE s.type = $2 AND s.kind = 0 AND {})",
                    names("r.key", true),
                    names("s.key", true)
                ),
            };
            sql.push_str(&format!(" AND NOT ({survives})"));
        }
        if r.from_type == r.to_type {
            // A record deleted itself does not dangle.
            sql.push_str(&format!(" AND NOT {}", deleted("g")?));
        }
        Some(sql)
    }

    /// Carries out the `deactivate` policies of the references to `types` (see SQLite's
    /// `Loader::deactivate`).
    fn deactivate(&self, c: &mut Client, types: &[(&str, LoadMode)], referrers: &[Referrer]) -> Result<()> {
        let marked =
            format!("data = {MARK_TOBEDELETED}, hash = hash + 1, updated_import = $5, inactive = TRUE");
        let set = if self.marks() { marked.as_str() } else { "inactive = TRUE, updated_import = $5" };
        for r in referrers.iter().filter(|r| r.on_delete == OnDelete::Deactivate) {
            let Some(&(_, mode)) = types.iter().find(|(t, _)| *t == r.to_type) else { continue };
            let Some(cond) = self.dangling_condition(mode, r) else { continue };
            c.execute(
                &format!(
                    "UPDATE records SET {set}
                     WHERE tenant_id = $1 AND type = $3 AND key IN (SELECT g.key FROM records g WHERE {cond})"
                ),
                &[&self.tenant_id, &r.to_type, &r.from_type, &r.path, &self.import_id],
            )
            .map_err(db)?;
            drop_inactive_roles(c, self.tenant_id, &r.from_type)?;
        }
        Ok(())
    }

    fn apply(&self, c: &mut Client, staged: u64, types: &[(&str, LoadMode)], o: &Outcome<'_>) -> Result<()> {
        let (t, id) = (self.tenant_id, self.import_id);
        let marks = self.marks();
        still_open(c, id)?;
        let mut readded = Vec::new();
        if o.apply.is_some() {
            if marks {
                self.deactivate(c, types, o.referrers)?;
            }
            for &(ty, mode) in types {
                readded.extend(readded_warnings(c, t, ty)?);
                // A package's record listed again is active again when a deletion by hand of
                // what it refers to deactivated it (its data, and hash, unchanged).
                let (rows, rewrite) = if marks {
                    (
                        "(s.kind = 0 OR (s.kind = 1 AND EXISTS (SELECT 1 FROM records r
                             WHERE r.tenant_id = $1 AND r.type = s.type AND r.key = s.key)))",
                        "records.hash != excluded.hash OR (records.inactive AND NOT excluded.inactive)",
                    )
                } else {
                    ("s.kind = 0", "records.hash != excluded.hash OR records.inactive")
                };
                // A first import meets no record of its own (and an insert that may meet one
                // costs a speculative insertion per row).
                let upsert = if self.first {
                    String::new()
                } else {
                    format!(
                        "ON CONFLICT (tenant_id, type, key) DO UPDATE SET data = excluded.data, hash = excluded.hash,
                             updated_import = excluded.updated_import, line = excluded.line, inactive = excluded.inactive,
                             previous_data = records.data, previous_import = records.updated_import
                             WHERE {rewrite}"
                    )
                };
                c.execute(
                    &format!(
                        "INSERT INTO records (tenant_id, type, key, data, hash, created_import, updated_import, line, inactive)
                         SELECT $1, s.type, s.key, s.data, s.hash, $3, $3, s.line, s.kind = 1 FROM stage s
                         WHERE s.type = $2 AND {rows} {upsert}"
                    ),
                    &[&t, &ty, &id],
                )
                .map_err(db)?;
                if staged >= ANALYZE_AFTER {
                    // What the import wrote is seen by the planner before the deletions and the
                    // linking that join it (no autovacuum can have counted it in this
                    // transaction): without it, a mirror import's anti-join of 10,000 records
                    // ran a nested loop for seconds, linking 50,000 guardians for minutes.
                    c.batch_execute("ANALYZE (SKIP_LOCKED) records").map_err(db)?;
                }
                if marks {
                    if mode == LoadMode::Mirror {
                        c.execute(
                            &format!(
                                "UPDATE records SET data = {MARK_TOBEDELETED}, hash = hash + 1, updated_import = $3,
                                     inactive = TRUE
                                 WHERE tenant_id = $1 AND type = $2 AND NOT inactive
                                 AND NOT EXISTS (SELECT 1 FROM stage s WHERE s.type = $2 AND s.key = records.key)"
                            ),
                            &[&t, &ty, &id],
                        )
                        .map_err(db)?;
                    }
                } else {
                    self.deactivate(c, &[(ty, mode)], o.referrers)?;
                    match mode {
                        // A first import has nothing of its own to delete.
                        _ if self.first => {}
                        LoadMode::Upsert => {}
                        LoadMode::Mirror => {
                            c.execute(
                                "DELETE FROM records WHERE tenant_id = $1 AND type = $2
                                 AND NOT EXISTS (SELECT 1 FROM stage s WHERE s.type = $2 AND s.key = records.key)",
                                &[&t, &ty],
                            )
                            .map_err(db)?;
                        }
                        LoadMode::Delta => {
                            c.execute(
                                "DELETE FROM records WHERE tenant_id = $1 AND type = $2
                                 AND key IN (SELECT key FROM stage WHERE type = $2 AND kind = 1)",
                                &[&t, &ty],
                            )
                            .map_err(db)?;
                        }
                    }
                }
                index_search(c, t, ty, id, &search_paths(marks, ty, o.person))?;
            }
            if staged >= ANALYZE_AFTER {
                c.batch_execute("ANALYZE (SKIP_LOCKED) people, person_roles, record_search").map_err(db)?;
            }
        }
        let mut warnings = o.warnings.to_vec();
        warnings.extend(readded);
        if let (Some(_), Some((ty, paths))) = (o.apply, people_of(self.single.as_deref(), types, o.person)) {
            warnings.extend(link_people(c, t, ty, id, &paths)?);
        }
        apply_outcome(c, id, &Outcome { warnings: &warnings, ..o.clone() })
    }
}

impl Loading for PgLoader {
    fn stage(&mut self, line: u64, key: &str, data: &str, hash: i64, kind: StageKind) -> Result<Option<u64>> {
        crate::blocking(|| {
            let type_name = self.own_type()?.to_owned();
            self.stage_in(&type_name, line, key, data, hash, kind)
        })
    }

    fn stage_in(
        &self,
        type_name: &str,
        line: u64,
        key: &str,
        data: &str,
        hash: i64,
        kind: StageKind,
    ) -> Result<Option<u64>> {
        crate::blocking(|| {
            let mut inner = self.inner.borrow_mut();
            let inner = &mut *inner;
            let fingerprint = inner.fingerprints.hash_one((type_name, key));
            if !inner.seen.insert(fingerprint) {
                // The same fingerprint: the same key, or (rarely) a collision. The stage says.
                inner.flush()?;
                if !inner.indexed {
                    inner.c.batch_execute("CREATE INDEX stage_by_key ON stage (type, key)").map_err(db)?;
                    inner.indexed = true;
                }
                let earlier = inner
                    .c
                    .query_opt(
                        "SELECT line FROM stage WHERE type = $1 AND key = $2 ORDER BY line LIMIT 1",
                        &[&type_name, &key],
                    )
                    .map_err(db)?;
                if let Some(r) = earlier {
                    return Ok(Some(r.get::<_, i64>(0) as u64));
                }
            }
            inner.staged += 1;
            let b = &mut inner.buffer;
            copy_field(b, type_name)?;
            b.push(b'\t');
            copy_field(b, key)?;
            b.extend_from_slice(format!("\t{line}\t").as_bytes());
            copy_field(b, data)?;
            b.extend_from_slice(format!("\t{hash}\t{}\n", kind as i64).as_bytes());
            if b.len() >= STAGE_BATCH_BYTES {
                inner.flush()?;
            }
            Ok(None)
        })
    }

    /// One range of the primary key, `[key, key || ' ')`, as SQLite's (see its `REFERENCE_EXISTS`).
    fn reference_exists(&mut self, to_type: &str, key: &str) -> Result<bool> {
        crate::blocking(|| {
            let inner = self.inner.get_mut();
            let stmt = match &inner.reference {
                Some(s) => s.clone(),
                None => {
                    let s = inner
                        .c
                        .prepare(
                            "SELECT 1 FROM records WHERE tenant_id = $1 AND type = $2
                             AND key >= $3 AND key < $3 || chr(32) AND (key = $3 OR key >= $3 || chr(31))
                             AND NOT inactive LIMIT 1",
                        )
                        .map_err(db)?;
                    inner.reference = Some(s.clone());
                    s
                }
            };
            Ok(inner.c.query_opt(&stmt, &[&self.tenant_id, &to_type, &key]).map_err(db)?.is_some())
        })
    }

    fn active(&mut self, type_name: &str, key: &str) -> Result<bool> {
        crate::blocking(|| {
            let inner = self.inner.get_mut();
            let stmt = match &inner.active {
                Some(s) => s.clone(),
                None => {
                    let s = inner
                        .c
                        .prepare("SELECT 1 FROM records WHERE tenant_id = $1 AND type = $2 AND key = $3 AND NOT inactive")
                        .map_err(db)?;
                    inner.active = Some(s.clone());
                    s
                }
            };
            Ok(inner.c.query_opt(&stmt, &[&self.tenant_id, &type_name, &key]).map_err(db)?.is_some())
        })
    }

    fn listed(&self, type_name: &str, key: &str) -> Result<bool> {
        crate::blocking(|| {
            let mut inner = self.inner.borrow_mut();
            let c = inner.ready()?;
            let found = c
                .query_opt("SELECT 1 FROM stage WHERE type = $1 AND key = $2", &[&type_name, &key])
                .map_err(db)?;
            Ok(found.is_some())
        })
    }

    fn deletion_sample(&self, limit: usize, names: Option<(&str, &str)>) -> Result<Vec<String>> {
        crate::blocking(|| {
            let type_name = self.own_type()?;
            let (first, last) = names.unwrap_or(("$.none", "$.none"));
            let mut inner = self.inner.borrow_mut();
            let c = inner.ready()?;
            let sql = format!(
                "SELECT r.key, trim(COALESCE({}, '') || ' ' || COALESCE({}, ''))
                 FROM records r WHERE r.tenant_id = $1 AND r.type = $2
                 AND NOT EXISTS (SELECT 1 FROM stage s WHERE s.type = $2 AND s.key = r.key) ORDER BY r.key LIMIT $3",
                json_text("r.data", "$4::text"),
                json_text("r.data", "$5::text")
            );
            let rows = c
                .query(
                    sql.as_str(),
                    &[&self.tenant_id, &type_name, &crate::count_param(limit), &first, &last],
                )
                .map_err(db)?;
            Ok(rows.iter().map(|r| sample_entry(r.get(0), r.get(1))).collect())
        })
    }

    fn existing(&self) -> u64 {
        self.existing
    }

    fn emptied(&self, paths: &[String]) -> Result<Emptied> {
        if self.first || paths.is_empty() {
            return Ok(Emptied { records: 0, per_column: vec![0; paths.len()] });
        }
        crate::blocking(|| {
            let type_name = self.own_type()?;
            // The record's text parsed once (`x.j`), each path read from it; a record whose
            // hash is the row's is not rewritten (its values there are empty already).
            let held: Vec<String> = (0..paths.len())
                .map(|i| {
                    format!(
                        "(COALESCE(jsonb_path_query_first(x.j, ${}::text::jsonpath) #>> '{{}}', '') <> '')",
                        i + 3
                    )
                })
                .collect();
            let sql = format!(
                "SELECT COUNT(*), {} FROM stage s JOIN records r
                     ON r.tenant_id = $1 AND r.type = s.type AND r.key = s.key
                 CROSS JOIN LATERAL (SELECT r.data::jsonb AS j) x
                 WHERE s.type = $2 AND s.kind = 0 AND r.hash <> s.hash AND ({})",
                held.iter().map(|h| format!("COUNT(*) FILTER (WHERE {h})")).collect::<Vec<_>>().join(", "),
                held.join(" OR ")
            );
            let mut inner = self.inner.borrow_mut();
            let c = inner.ready()?;
            let mut values: Vec<&(dyn ToSql + Sync)> = vec![&self.tenant_id, &type_name];
            values.extend(paths.iter().map(|p| p as &(dyn ToSql + Sync)));
            let row = c.query_one(sql.as_str(), &values).map_err(db)?;
            let count = |i: usize| row.get::<_, i64>(i) as u64;
            Ok(Emptied { records: count(0), per_column: (1..=paths.len()).map(count).collect() })
        })
    }

    fn existing_of(&self, type_name: &str) -> Result<u64> {
        crate::blocking(|| {
            if self.first {
                return Ok(0);
            }
            if self.single.as_deref() == Some(type_name) {
                return Ok(self.existing);
            }
            let mut inner = self.inner.borrow_mut();
            let n: i64 = inner
                .c
                .query_one(
                    "SELECT COUNT(*) FROM records WHERE tenant_id = $1 AND type = $2 AND NOT inactive",
                    &[&self.tenant_id, &type_name],
                )
                .map_err(db)?
                .get(0);
            Ok(n as u64)
        })
    }

    fn plan(&self, type_name: &str, mode: LoadMode) -> Result<Counts> {
        crate::blocking(|| {
            let mut inner = self.inner.borrow_mut();
            let c = inner.ready()?;
            let mut q = |sql: &str| -> Result<u64> {
                let n: i64 = c.query_one(sql, &[&self.tenant_id, &type_name]).map_err(db)?.get(0);
                Ok(n as u64)
            };
            let staged = "SELECT COUNT(*) FROM stage WHERE type = $2 AND kind = 0 AND $1::bigint IS NOT NULL";
            if self.first {
                return Ok(Counts { added: q(staged)?, ..Counts::default() });
            }
            let marks = self.marks();
            let writes = format!(
                "FROM stage s LEFT JOIN records r ON r.tenant_id = $1 AND r.type = s.type AND r.key = s.key
                 WHERE s.type = $2 AND (s.kind = 0{})",
                if marks { " OR (s.kind = 1 AND r.key IS NOT NULL)" } else { "" }
            );
            let added = q(&format!("SELECT COUNT(*) {writes} AND r.key IS NULL"))?;
            // An inactive record listed again (active) is updated, not unchanged: a single
            // type's, and a package's deactivated by a deletion by hand (its data unchanged).
            let unchanged = q(&format!(
                "SELECT COUNT(*) {writes} AND r.hash = s.hash{}",
                if marks { " AND (s.kind = 1 OR NOT r.inactive)" } else { " AND NOT r.inactive" }
            ))?;
            let written = if marks { q(&format!("SELECT COUNT(*) {writes}"))? } else { q(staged)? };
            let deleted = match (mode, marks) {
                (LoadMode::Upsert, _) => 0,
                (LoadMode::Mirror, false) => q("SELECT COUNT(*) FROM records r WHERE r.tenant_id = $1 AND r.type = $2
                     AND NOT EXISTS (SELECT 1 FROM stage s WHERE s.type = $2 AND s.key = r.key)")?,
                (LoadMode::Mirror, true) => q("SELECT COUNT(*) FROM records r
                     WHERE r.tenant_id = $1 AND r.type = $2 AND NOT r.inactive
                     AND NOT EXISTS (SELECT 1 FROM stage s WHERE s.type = $2 AND s.key = r.key)")?,
                (LoadMode::Delta, _) => q(&format!(
                    "SELECT COUNT(*) FROM stage s JOIN records r
                     ON r.tenant_id = $1 AND r.type = s.type AND r.key = s.key WHERE s.type = $2 AND s.kind = 1{}",
                    if marks { " AND NOT r.inactive" } else { "" }
                ))?,
            };
            let deletions_written = if marks && mode == LoadMode::Delta { deleted } else { 0 };
            Ok(Counts {
                added,
                unchanged,
                updated: written.saturating_sub(added + unchanged + deletions_written),
                deleted,
                ..Counts::default()
            })
        })
    }

    fn dangling(&self, mode: LoadMode, r: &Referrer) -> Result<u64> {
        crate::blocking(|| {
            if self.first {
                return Ok(0);
            }
            let Some(cond) = self.dangling_condition(mode, r) else { return Ok(0) };
            let mut inner = self.inner.borrow_mut();
            let c = inner.ready()?;
            let n: i64 = c
                .query_one(
                    &format!("SELECT COUNT(*) FROM records g WHERE {cond}"),
                    &[&self.tenant_id, &r.to_type, &r.from_type, &r.path],
                )
                .map_err(db)?
                .get(0);
            Ok(n as u64)
        })
    }

    fn abandon(self: Box<Self>) -> Result<()> {
        crate::blocking(move || {
            let PgLoader { inner, .. } = *self;
            inner.into_inner().c.batch_execute("ROLLBACK").map_err(db)?;
            Ok(())
        })
    }

    fn commit(self: Box<Self>, outcome: Outcome<'_>) -> Result<()> {
        crate::blocking(move || {
            let type_name = self.own_type()?.to_owned();
            let types: Vec<(&str, LoadMode)> =
                outcome.apply.map(|m| (type_name.as_str(), m)).into_iter().collect();
            self.commit_types(&types, outcome)
        })
    }

    fn commit_types(self: Box<Self>, types: &[(&str, LoadMode)], outcome: Outcome<'_>) -> Result<()> {
        crate::blocking(move || {
            let mut inner = self.inner.borrow_mut();
            inner.ready()?;
            let staged = inner.staged;
            let c = &mut inner.c;
            match self.apply(c, staged, types, &outcome) {
                Ok(()) => {
                    c.batch_execute("COMMIT").map_err(db)?;
                    Ok(())
                }
                Err(e) => {
                    let _ = c.batch_execute("ROLLBACK");
                    Err(e)
                }
            }
        })
    }
}

/// See `sluice-store`'s `still_open`: checked with the import's row locked, so an approval and
/// a newer import that race cannot both win.
pub(crate) fn still_open(c: &mut impl GenericClient, id: i64) -> Result<()> {
    let row = c
        .query_opt("SELECT status, superseded_by FROM imports WHERE id = $1 FOR UPDATE", &[&id])
        .map_err(db)?;
    match row.map(|r| (r.get::<_, String>(0), r.get::<_, Option<i64>>(1))) {
        None => Ok(()),
        Some((status, _)) if status == "running" || status == "held" => Ok(()),
        Some((_, Some(by))) => Err(StoreError::Superseded { id, by }),
        Some(_) => Err(StoreError::NotHeld(id)),
    }
}

/// Warnings for the staged rows of `type_name` that add back records deleted by hand, and
/// forgets their tombstones.
fn readded_warnings(c: &mut Client, tenant_id: i64, type_name: &str) -> Result<Vec<String>> {
    let any = c
        .query_opt(
            "SELECT 1 FROM deleted_records WHERE tenant_id = $1 AND type = $2 LIMIT 1",
            &[&tenant_id, &type_name],
        )
        .map_err(db)?;
    if any.is_none() {
        return Ok(Vec::new());
    }
    let rows = c
        .query(
            "WITH back AS (DELETE FROM deleted_records d USING stage s
                 WHERE d.tenant_id = $1 AND d.type = $2 AND s.type = d.type AND s.key = d.key AND s.kind = 0
                 RETURNING s.line, s.key, d.deleted_by, d.deleted_ms)
             SELECT line, key, deleted_by, to_char(to_timestamp(deleted_ms / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD')
             FROM back ORDER BY line",
            &[&tenant_id, &type_name],
        )
        .map_err(db)?;
    let mut warnings: Vec<String> = rows
        .iter()
        .take(sluice_store::MAX_READDED)
        .map(|r| sluice_store::readded_warning(r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    if rows.len() > sluice_store::MAX_READDED {
        warnings.push(sluice_store::more_readded(rows.len() - sluice_store::MAX_READDED));
    }
    Ok(warnings)
}

/// Keeps `type_name`'s search rows in step with what import `import_id` wrote: the records it
/// wrote are (re)indexed when the type was indexed with these paths before; otherwise (its
/// name columns changed, or it has no search rows yet) the type is indexed whole. The search
/// rows of erased records went with them (the `records_erased` trigger).
pub(crate) fn index_search(
    c: &mut Client,
    tenant_id: i64,
    type_name: &str,
    import_id: i64,
    paths: &SearchPaths,
) -> Result<()> {
    let known: Option<String> = c
        .query_opt(
            "SELECT paths FROM record_search_columns WHERE tenant_id = $1 AND type = $2",
            &[&tenant_id, &type_name],
        )
        .map_err(db)?
        .map(|r| r.get(0));
    let name = |p: &Option<String>, n: u8| match p {
        Some(_) => folded(&json_text("r.data", &format!("${n}::text"))),
        None => "''".to_owned(),
    };
    let (first, last, email) = (name(&paths.first_name, 4), name(&paths.last_name, 5), name(&paths.email, 6));
    let whole = known.as_deref() != Some(paths.signature().as_str());
    if whole {
        c.execute("DELETE FROM record_search WHERE tenant_id = $1 AND type = $2", &[&tenant_id, &type_name])
            .map_err(db)?;
    }
    let only_written = if whole { "$3::bigint IS NOT NULL" } else { "r.updated_import = $3" };
    // A type found by key alone: only the keys beyond ASCII or with ASCII letters in both
    // cases (`sluice_store::key_needs_row`; the others are found in `records`' own key).
    let which = if paths.keyed_only() {
        "AND (r.key ~ '[^\\x01-\\x7f]' OR (r.key ~ '[a-z]' AND r.key ~ '[A-Z]'))"
    } else {
        ""
    };
    // Indexed whole, the type has no search rows left to meet.
    let upsert = if whole {
        ""
    } else {
        "ON CONFLICT (tenant_id, type, key) DO UPDATE SET key_f = excluded.key_f, first_f = excluded.first_f,
                 last_f = excluded.last_f, email_f = excluded.email_f"
    };
    let none = String::new();
    c.execute(
        &format!(
            "INSERT INTO record_search (tenant_id, type, key, key_f, first_f, last_f, email_f)
             SELECT $1, $2, r.key, {}, {first}, {last}, {email}
             FROM records r WHERE r.tenant_id = $1 AND r.type = $2 AND {only_written} {which}
                 AND $4::text IS NOT NULL AND $5::text IS NOT NULL AND $6::text IS NOT NULL {upsert}",
            folded("r.key")
        ),
        &[
            &tenant_id,
            &type_name,
            &import_id,
            paths.first_name.as_ref().unwrap_or(&none),
            paths.last_name.as_ref().unwrap_or(&none),
            paths.email.as_ref().unwrap_or(&none),
        ],
    )
    .map_err(db)?;
    if whole {
        c.execute(
            "INSERT INTO record_search_columns (tenant_id, type, paths) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id, type) DO UPDATE SET paths = excluded.paths",
            &[&tenant_id, &type_name, &paths.signature()],
        )
        .map_err(db)?;
    }
    Ok(())
}

/// A deactivated record is no longer a person's role; people left without one go.
pub(crate) fn drop_inactive_roles(
    c: &mut impl postgres::GenericClient,
    tenant_id: i64,
    type_name: &str,
) -> Result<()> {
    c.execute(
        "DELETE FROM person_roles pr USING records r
         WHERE pr.tenant_id = $1 AND pr.type = $2 AND r.tenant_id = $1 AND r.type = $2 AND r.key = pr.key AND r.inactive",
        &[&tenant_id, &type_name],
    )
    .map_err(db)?;
    c.execute(
        "DELETE FROM people WHERE tenant_id = $1 AND NOT EXISTS (SELECT 1 FROM person_roles pr WHERE pr.person_id = people.id)",
        &[&tenant_id],
    )
    .map_err(db)?;
    Ok(())
}

/// Records read and linked per round trip in [`link_people`].
const LINK_BATCH: i64 = 2_000;

/// Links the records of `type_name` written by `import_id` to people, as SQLite's
/// `people::link_people` does: each record in key order against every person and role linked
/// before it. A tenant's first people are made set-based when that gives the same people
/// ([`link_first_people`]); otherwise one record at a time against the database
/// ([`link_one_at_a_time`]). Records are read in batches by key, so nothing grows with the
/// import. Returns warnings.
fn link_people(
    c: &mut Client,
    tenant_id: i64,
    type_name: &str,
    import_id: i64,
    p: &PersonPaths,
) -> Result<Vec<String>> {
    let had_roles = c
        .query_opt(
            "SELECT 1 FROM person_roles WHERE tenant_id = $1 AND type = $2 LIMIT 1",
            &[&tenant_id, &type_name],
        )
        .map_err(db)?
        .is_some();
    if !had_roles && let Some(warnings) = link_first_people(c, tenant_id, type_name, import_id, p)? {
        return Ok(warnings);
    }
    link_one_at_a_time(c, tenant_id, type_name, import_id, p, had_roles)
}

/// Calls `each` with the records of `type_name` that `import_id` wrote and that are active, a
/// batch at a time in key order, their contacts normalised here (as every backend does,
/// `Contact::new`).
fn each_link_batch(
    c: &mut Client,
    tenant_id: i64,
    type_name: &str,
    import_id: i64,
    p: &PersonPaths,
    mut each: impl FnMut(&mut Client, &LinkBatch) -> Result<()>,
) -> Result<()> {
    let batch = c
        .prepare(&format!(
            "SELECT key, COALESCE(line, 0), {}, {}, {}, {}, {}
             FROM records WHERE tenant_id = $1 AND type = $2 AND updated_import = $3 AND NOT inactive AND key > $9
             ORDER BY key LIMIT {LINK_BATCH}",
            json_text("data", "$4::text"),
            json_text("data", "$5::text"),
            json_text("data", "$6::text"),
            json_text("data", "$7::text"),
            json_text("data", "$8::text"),
        ))
        .map_err(db)?;
    let mut after = String::new();
    loop {
        let rows = c
            .query(
                &batch,
                &[
                    &tenant_id,
                    &type_name,
                    &import_id,
                    &p.id,
                    &p.first_name,
                    &p.last_name,
                    &p.email,
                    &p.phone,
                    &after,
                ],
            )
            .map_err(db)?;
        let mut records = LinkBatch::default();
        for r in &rows {
            let text = |i: usize| r.get::<_, Option<String>>(i).unwrap_or_default();
            records.keys.push(r.get(0));
            records.lines.push(r.get(1));
            records.sources.push(text(2));
            records.contacts.push(Contact::new(&text(3), &text(4), &text(5), &text(6)));
        }
        each(c, &records)?;
        match rows.last() {
            Some(r) if rows.len() as i64 == LINK_BATCH => after = r.get(0),
            _ => return Ok(()),
        }
    }
}

/// A tenant's first people, made set-based: when the tenant has no people yet and every
/// record linked has a source id of its own (no two alike, none blank), the one-at-a-time
/// algorithm makes one new person per record (no source id is known, and a person matched by
/// contact already holds this role with another source id), so here they are made at once:
/// the records copied to a TEMP table, numbered in key order by the people's own sequence,
/// people and roles inserted from it, and a record whose name an earlier record has is
/// reported as kept apart from the first of them (the lowest id, as one at a time).
/// `None` when the records do not qualify (nothing written then).
pub(crate) fn link_first_people(
    c: &mut Client,
    tenant_id: i64,
    type_name: &str,
    import_id: i64,
    p: &PersonPaths,
) -> Result<Option<Vec<String>>> {
    if c.query_opt("SELECT 1 FROM people WHERE tenant_id = $1 LIMIT 1", &[&tenant_id]).map_err(db)?.is_some()
    {
        return Ok(None);
    }
    let sequence: String =
        c.query_one("SELECT pg_get_serial_sequence('people', 'id')", &[]).map_err(db)?.get(0);
    // The sequence's name is the catalog's, quoted as a literal (not an input).
    c.batch_execute(&format!(
        "CREATE TEMP TABLE link_first (key TEXT COLLATE \"C\" NOT NULL, line BIGINT NOT NULL, src TEXT NOT NULL,
             f TEXT COLLATE \"C\" NOT NULL, l TEXT COLLATE \"C\" NOT NULL, e TEXT COLLATE \"C\" NOT NULL,
             ph TEXT COLLATE \"C\" NOT NULL, pid BIGINT NOT NULL DEFAULT nextval('{}'::regclass))",
        sequence.replace('\'', "''")
    ))
    .map_err(db)?;
    let mut buffer = Vec::new();
    each_link_batch(c, tenant_id, type_name, import_id, p, |c, records| {
        buffer.clear();
        for (i, contact) in records.contacts.iter().enumerate() {
            copy_field(&mut buffer, &records.keys[i])?;
            buffer.extend_from_slice(format!("\t{}\t", records.lines[i]).as_bytes());
            for (n, v) in
                [&records.sources[i], &contact.first_name, &contact.last_name, &contact.email, &contact.phone]
                    .into_iter()
                    .enumerate()
            {
                if n > 0 {
                    buffer.push(b'\t');
                }
                copy_field(&mut buffer, v)?;
            }
            buffer.push(b'\n');
        }
        if !buffer.is_empty() {
            let mut w = c.copy_in("COPY link_first (key, line, src, f, l, e, ph) FROM STDIN").map_err(db)?;
            w.write_all(&buffer).map_err(|e| StoreError::Database(sluice_store::DatabaseError::other(e)))?;
            w.finish().map_err(db)?;
        }
        Ok(())
    })?;
    let own_sources: bool = c
        .query_one(
            "SELECT COUNT(*) FILTER (WHERE src = '') = 0 AND COUNT(DISTINCT src) = COUNT(*) FROM link_first",
            &[],
        )
        .map_err(db)?
        .get(0);
    if !own_sources {
        c.batch_execute("DROP TABLE link_first").map_err(db)?;
        return Ok(None);
    }
    c.execute(
        "INSERT INTO people (id, tenant_id, first_name, last_name, email, phone) OVERRIDING SYSTEM VALUE
         SELECT pid, $1, f, l, e, ph FROM link_first ORDER BY pid",
        &[&tenant_id],
    )
    .map_err(db)?;
    c.execute(
        "INSERT INTO person_roles (tenant_id, type, key, person_id, role, source_id)
         SELECT $1, $2, key, pid, $3, src FROM link_first ORDER BY key",
        &[&tenant_id, &type_name, &p.role],
    )
    .map_err(db)?;
    // Records whose name an earlier record has, the first of those kept apart from (key
    // order is the people's order), in key order, the first few with their details.
    let kept_apart = c
        .query(
            &format!(
                "WITH firsts AS (SELECT l, f, MIN(pid) AS other FROM link_first GROUP BY l, f HAVING COUNT(*) > 1)
                 SELECT k.line, k.f, k.l, k.e, k.ph, o.pid, o.e, o.ph, COUNT(*) OVER ()
                 FROM link_first k JOIN firsts USING (l, f) JOIN link_first o ON o.pid = firsts.other
                 WHERE k.pid <> firsts.other ORDER BY k.pid LIMIT {}",
                sluice_store::MAX_SEPARATE_WARNINGS
            ),
            &[],
        )
        .map_err(db)?;
    let mut warnings: Vec<String> = kept_apart
        .iter()
        .map(|r| {
            let contact =
                Contact { first_name: r.get(1), last_name: r.get(2), email: r.get(3), phone: r.get(4) };
            let (email, phone): (String, String) = (r.get(6), r.get(7));
            sluice_store::separate_warning(r.get(0), &contact, r.get(5), &email, &phone)
        })
        .collect();
    let separate = kept_apart.first().map_or(0, |r| r.get::<_, i64>(8) as usize);
    if separate > sluice_store::MAX_SEPARATE_WARNINGS {
        warnings.push(sluice_store::more_separate(separate - sluice_store::MAX_SEPARATE_WARNINGS));
    }
    c.batch_execute("DROP TABLE link_first").map_err(db)?;
    Ok(Some(warnings))
}

/// Links records one at a time in key order, on the server (`sluice_link_people`, a batch
/// per call), each against every person and role linked before it.
pub(crate) fn link_one_at_a_time(
    c: &mut Client,
    tenant_id: i64,
    type_name: &str,
    import_id: i64,
    p: &PersonPaths,
    had_roles: bool,
) -> Result<Vec<String>> {
    if had_roles {
        c.execute(
            "DELETE FROM person_roles WHERE tenant_id = $1 AND type = $2 AND NOT EXISTS
             (SELECT 1 FROM records r WHERE r.tenant_id = $1 AND r.type = $2 AND r.key = person_roles.key
              AND NOT r.inactive)",
            &[&tenant_id, &type_name],
        )
        .map_err(db)?;
    }
    let link = c
        .prepare(
            "SELECT o_line, o_other, o_email, o_phone
             FROM sluice_link_people($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .map_err(db)?;
    let (mut warnings, mut separate) = (Vec::new(), 0usize);
    each_link_batch(c, tenant_id, type_name, import_id, p, |c, records| {
        let [firsts, lasts, emails, phones] = records.contact_columns();
        let kept_apart = c
            .query(
                &link,
                &[
                    &tenant_id,
                    &type_name,
                    &p.role,
                    &had_roles,
                    &records.keys,
                    &records.lines,
                    &records.sources,
                    &firsts,
                    &lasts,
                    &emails,
                    &phones,
                ],
            )
            .map_err(db)?;
        for r in kept_apart {
            separate += 1;
            if warnings.len() < sluice_store::MAX_SEPARATE_WARNINGS {
                let line: i64 = r.get(0);
                let i = records.lines.iter().position(|l| *l == line).unwrap_or(0);
                let (email, phone): (Option<String>, Option<String>) = (r.get(2), r.get(3));
                warnings.push(sluice_store::separate_warning(
                    line,
                    &records.contacts[i],
                    r.get(1),
                    &email.unwrap_or_default(),
                    &phone.unwrap_or_default(),
                ));
            }
        }
        Ok(())
    })?;
    if separate > sluice_store::MAX_SEPARATE_WARNINGS {
        warnings.push(sluice_store::more_separate(separate - sluice_store::MAX_SEPARATE_WARNINGS));
    }
    if had_roles {
        c.execute(
            "DELETE FROM people WHERE tenant_id = $1 AND NOT EXISTS (SELECT 1 FROM person_roles r WHERE r.person_id = people.id)",
            &[&tenant_id],
        )
        .map_err(db)?;
    }
    Ok(warnings)
}

/// One batch of records to link, in key order.
#[derive(Default)]
struct LinkBatch {
    keys: Vec<String>,
    lines: Vec<i64>,
    sources: Vec<String>,
    contacts: Vec<Contact>,
}

impl LinkBatch {
    /// First names, last names, emails and phones, as the arrays the server takes.
    fn contact_columns(&self) -> [Vec<&str>; 4] {
        let column = |f: fn(&Contact) -> &str| self.contacts.iter().map(f).collect();
        [column(|c| &c.first_name), column(|c| &c.last_name), column(|c| &c.email), column(|c| &c.phone)]
    }
}

/// Writes an import's final state, its errors and the upload it consumed; an applied import
/// supersedes the older held ones (each locked as it is updated).
pub(crate) fn apply_outcome(c: &mut impl GenericClient, id: i64, o: &Outcome<'_>) -> Result<()> {
    let mut warnings = o.warnings.to_vec();
    if o.apply.is_some() {
        let held = c
            .query(
                "SELECT h.id, h.file_name, h.record_types FROM imports h JOIN imports i
                     ON i.id = $1 AND h.tenant_id = i.tenant_id AND h.type = i.type
                 WHERE h.status = 'held' AND h.id < $1 ORDER BY h.id FOR UPDATE OF h",
                &[&id],
            )
            .map_err(db)?;
        for r in held {
            let (held_id, file, types): (i64, String, Option<String>) = (r.get(0), r.get(1), r.get(2));
            if !supersedes(o.record_types, types.as_deref()) {
                continue;
            }
            c.execute(
                // Without the command line's way of approving it, which it no longer has.
                "UPDATE imports SET status = 'superseded', superseded_by = $2, finished_ms = $3,
                     message = CASE WHEN strpos(message, $4) > 0 THEN substr(message, 1, strpos(message, $4) - 1)
                               ELSE message END
                 WHERE id = $1 AND status = 'held'",
                &[&held_id, &id, &now_ms(), &sluice_core::import::safeguard::CLI_HINT],
            )
            .map_err(db)?;
            warnings.push(superseded_warning(held_id, &file));
        }
    }
    let k = o.counts;
    let n = |v: u64| v as i64;
    c.execute(
        "UPDATE imports SET status = $2, encoding = $3, rows = $4, added = $5, updated = $6, unchanged = $7,
             deleted = $8, rejected = $9, message = $10, warnings = $11, held_file = $12, report_file = $13,
             finished_ms = $14, delimiter = $15, record_types = $16 WHERE id = $1",
        &[
            &id,
            &o.status.as_str(),
            &o.encoding,
            &n(k.rows),
            &n(k.added),
            &n(k.updated),
            &n(k.unchanged),
            &n(k.deleted),
            &n(k.rejected),
            &o.message,
            &warnings_to_json(&warnings),
            &o.held_file,
            &o.report_file,
            &(if o.status == ImportStatus::Held { None } else { Some(now_ms()) }),
            &o.delimiter,
            &o.record_types.map(|t| t.join(",")),
        ],
    )
    .map_err(db)?;
    c.execute("DELETE FROM import_errors WHERE import_id = $1", &[&id]).map_err(db)?;
    if !o.errors.is_empty() {
        let mut buf = Vec::new();
        for (seq, e) in o.errors.iter().take(STORED_ERRORS).enumerate() {
            buf.extend_from_slice(format!("{id}\t{seq}\t{}\t", e.line).as_bytes());
            for (i, v) in
                [e.column.as_str(), e.code, &e.reason, &e.value, &e.key, &e.name].into_iter().enumerate()
            {
                if i > 0 {
                    buf.push(b'\t');
                }
                // A NUL byte in a rejected value cannot be stored: shown as U+FFFD.
                copy_field(&mut buf, &v.replace('\0', "\u{fffd}"))?;
            }
            buf.push(b'\n');
        }
        let mut w = c
            .copy_in(
                "COPY import_errors (import_id, seq, line, column_name, code, reason, value, record_key, record_name) FROM STDIN",
            )
            .map_err(db)?;
        w.write_all(&buf).map_err(|e| StoreError::Database(sluice_store::DatabaseError::other(e)))?;
        w.finish().map_err(db)?;
    }
    if let Some(upload) = o.upload_id {
        // Once: an upload another node's import consumed meanwhile fails this one's transaction
        // (the row is locked by the first, so the second waits for its commit, then sees it).
        let consumed = c
            .execute(
                "UPDATE upload_events SET consumed_ms = $2, import_id = $3 WHERE id = $1 AND consumed_ms IS NULL",
                &[&upload, &now_ms(), &id],
            )
            .map_err(db)?;
        if consumed == 0 {
            return Err(StoreError::AlreadyConsumed(upload));
        }
    }
    Ok(())
}
