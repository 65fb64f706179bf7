//! Imports, their errors, and the records they load.
//!
//! An import, of one type's file or of a package's several, stages its rows in one TEMP
//! table keyed by (type, key) on a connection of its own (temp tables never take the main
//! database's write lock, so SFTP logins and upload events go on meanwhile, and other
//! tenants' imports commit), checks references with plain reads, plans each type's changes
//! with a few set-based counts, and then applies everything in one short write transaction
//! with set-based SQL: new rows inserted and changed ones rewritten (unchanged rows, detected
//! by content hash, are not: `write_staged`), deletions for mirror and delta (a package's
//! only mark records `tobedeleted`), the import's row, its errors, and the upload event it
//! consumed. Either all of that commits or none of it.

use crate::roles::{Emptied, Loading};
use crate::{Result, Store, StoreError, now_ms};
use rusqlite::{Connection, OptionalExtension, params};
use sluice_core::history::{Counts, ImportRecord, ImportStatus, StoredError};
use sluice_core::import::{LoadMode, RowError};
use std::time::Duration;

/// How a staged row takes part in the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageKind {
    Load = 0,
    /// Delta mode: the row says the record is deleted.
    Delete = 1,
    /// The row was rejected but its key is valid: mirror must not delete that record.
    Keep = 2,
}

/// The final state of an import, written in the same transaction as its effects.
#[derive(Clone)]
pub struct Outcome<'a> {
    pub status: ImportStatus,
    pub counts: Counts,
    pub encoding: Option<String>,
    pub delimiter: Option<String>,
    pub message: Option<String>,
    pub warnings: &'a [String],
    pub errors: &'a [RowError],
    pub held_file: Option<String>,
    pub report_file: Option<String>,
    /// Whether to change records (false for failed and held imports).
    pub apply: Option<LoadMode>,
    pub upload_id: Option<i64>,
    /// The type's records are roles of people: link them after applying.
    pub person: Option<&'a sluice_core::import::PersonColumns>,
    /// A package: the record types it carries (`oneroster.users`, ...). Applying it
    /// supersedes the older held packages that carry any of them; `None`: a single type,
    /// which supersedes every older held import of that type.
    pub record_types: Option<&'a [String]>,
    /// References to what the import deletes, whose `deactivate` policies it carries out.
    pub referrers: &'a [crate::Referrer],
}

impl Outcome<'_> {
    /// An outcome with a status, counts and a mode and nothing else (no message, warnings,
    /// errors, files, upload, people, package types or referrers): the base the pipeline
    /// and the tests fill in.
    pub fn new(status: ImportStatus, counts: Counts, apply: Option<LoadMode>) -> Self {
        Outcome {
            status,
            counts,
            encoding: None,
            delimiter: None,
            message: None,
            warnings: &[],
            errors: &[],
            held_file: None,
            report_file: None,
            apply,
            upload_id: None,
            person: None,
            record_types: None,
            referrers: &[],
        }
    }
}

/// How long an import waits for the write lock to apply (see [`Store::import_connection`]).
const IMPORT_WRITE_WAIT: Duration = Duration::from_secs(3600);

/// At most this many errors are stored per import; the report file has them all.
pub const STORED_ERRORS: usize = 10_000;

/// An import with its tenant's name, in [`ImportRow`]'s order (every backend's `imports`
/// and `tenants` tables have these columns).
pub const IMPORT_SELECT: &str =
    "SELECT i.id, t.name, i.type, i.file_name, i.source, i.upload_id, i.status, i.encoding,
    i.rows, i.added, i.updated, i.unchanged, i.deleted, i.rejected, i.message, i.warnings, i.held_file,
    i.report_file, i.created_ms, i.finished_ms, i.decided_by, i.decided_ms, i.delimiter, i.superseded_by,
    i.acknowledged_by, i.acknowledged_ms
    FROM imports i JOIN tenants t ON t.id = i.tenant_id";

/// An import's row as [`IMPORT_SELECT`] reads it, in any backend's column types; one decoder
/// ([`ImportRow::into_record`]) for all of them.
pub struct ImportRow {
    pub id: i64,
    pub tenant: String,
    pub type_name: String,
    pub file_name: String,
    pub source: String,
    pub upload_id: Option<i64>,
    pub status: String,
    pub encoding: Option<String>,
    /// rows, added, updated, unchanged, deleted, rejected.
    pub counts: [i64; 6],
    pub message: Option<String>,
    pub warnings: String,
    pub held_file: Option<String>,
    pub report_file: Option<String>,
    pub created_ms: i64,
    pub finished_ms: Option<i64>,
    pub decided_by: Option<String>,
    pub decided_ms: Option<i64>,
    pub delimiter: Option<String>,
    pub superseded_by: Option<i64>,
    pub acknowledged_by: Option<String>,
    pub acknowledged_ms: Option<i64>,
}

impl ImportRow {
    pub fn into_record(self) -> ImportRecord {
        let n = |i: usize| self.counts[i].max(0) as u64;
        ImportRecord {
            id: self.id,
            tenant: self.tenant,
            type_name: self.type_name,
            file_name: self.file_name,
            source: self.source,
            upload_id: self.upload_id,
            // A status no sluice writes reads as a failure, never as a success.
            status: ImportStatus::parse(&self.status).unwrap_or(ImportStatus::Failed),
            encoding: self.encoding,
            counts: Counts {
                rows: n(0),
                added: n(1),
                updated: n(2),
                unchanged: n(3),
                deleted: n(4),
                rejected: n(5),
            },
            message: self.message,
            warnings: warnings_from_json(&self.warnings),
            held_file: self.held_file,
            report_file: self.report_file,
            created_ms: self.created_ms,
            finished_ms: self.finished_ms,
            decided_by: self.decided_by,
            decided_ms: self.decided_ms,
            delimiter: self.delimiter,
            superseded_by: self.superseded_by,
            acknowledged_by: self.acknowledged_by,
            acknowledged_ms: self.acknowledged_ms,
        }
    }
}

fn import_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ImportRecord> {
    Ok(ImportRow {
        id: r.get(0)?,
        tenant: r.get(1)?,
        type_name: r.get(2)?,
        file_name: r.get(3)?,
        source: r.get(4)?,
        upload_id: r.get(5)?,
        status: r.get(6)?,
        encoding: r.get(7)?,
        counts: [r.get(8)?, r.get(9)?, r.get(10)?, r.get(11)?, r.get(12)?, r.get(13)?],
        message: r.get(14)?,
        warnings: r.get(15)?,
        held_file: r.get(16)?,
        report_file: r.get(17)?,
        created_ms: r.get(18)?,
        finished_ms: r.get(19)?,
        decided_by: r.get(20)?,
        decided_ms: r.get(21)?,
        delimiter: r.get(22)?,
        superseded_by: r.get(23)?,
        acknowledged_by: r.get(24)?,
        acknowledged_ms: r.get(25)?,
    }
    .into_record())
}

/// An import's warnings as stored (a JSON array of strings).
pub fn warnings_to_json(w: &[String]) -> String {
    let mut s = String::from("[");
    for (i, x) in w.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push('"');
        for c in x.chars() {
            match c {
                '"' => s.push_str("\\\""),
                '\\' => s.push_str("\\\\"),
                c if (c as u32) < 0x20 => s.push_str(&format!("\\u{:04x}", c as u32)),
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s.push(']');
    s
}

/// The warnings [`warnings_to_json`] stored.
pub fn warnings_from_json(s: &str) -> Vec<String> {
    // Written only by warnings_to_json: a flat array of strings.
    let mut out = Vec::new();
    let mut chars = s.trim().trim_start_matches('[').trim_end_matches(']').chars().peekable();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut cur = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('u') => {
                        let hex: String = chars.by_ref().take(4).collect();
                        if let Some(ch) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                            cur.push(ch);
                        }
                    }
                    Some(o) => cur.push(o),
                    None => {}
                },
                c => cur.push(c),
            }
        }
        out.push(cur);
    }
    out
}

impl Store {
    /// A connection of an import's own: staging in its temp schema never blocks the store's.
    /// It waits as long as it takes for the write lock (imports of other tenants apply one at
    /// a time), off the store's shared connection, so waiting holds up no one else.
    pub(crate) fn import_connection(&self, cache_kib: i64) -> Result<Connection> {
        let path = self
            .path
            .as_ref()
            .ok_or_else(|| StoreError::Corrupt("imports need a file-backed database".into()))?;
        let conn = Connection::open(path)?;
        conn.busy_timeout(IMPORT_WRITE_WAIT)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        crate::records::register_functions(&conn)?;
        conn.pragma_update(None, "temp_store", "FILE")?;
        conn.pragma_update(None, "cache_size", -cache_kib)?;
        // As durable as the rest of the store (see Store::open): survives a process crash.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(conn)
    }
}

/// See [`Loader::reference_exists`]: ?1 tenant, ?2 referred type, ?3 key.
pub(crate) const REFERENCE_EXISTS: &str = "SELECT 1 FROM main.records WHERE tenant_id = ?1 AND type = ?2
    AND key >= ?3 AND key < ?3 || char(32) AND (key = ?3 OR key >= ?3 || char(31)) AND +inactive = 0";

/// The record types of one import, and what deleting one of their records means.
#[derive(Debug, Clone)]
enum Scope {
    /// One type (a CSV file). A record the import deletes is erased; a record deactivated
    /// because what it named was deleted is made active again when a file lists it.
    Type(String),
    /// A package (a OneRoster zip): the types named `PREFIX...`. A record it deletes stays,
    /// marked `"status":"tobedeleted"` and inactive, and comes back to `active` when a later
    /// file lists it again (the status is in the data, so the hash sees it).
    Package(&'static str),
}

/// The prefix of the record types of a OneRoster package.
pub const ONEROSTER: &str = "oneroster.";

/// Whether an applying import supersedes an older held one: a single type's supersedes every
/// held import of its type; a package's, those that carry any of its record types
/// (`applying`, and `held`'s comma-separated list).
pub fn supersedes(applying: Option<&[String]>, held: Option<&str>) -> bool {
    match (applying, held) {
        (Some(mine), Some(theirs)) => theirs.split(',').any(|t| mine.iter().any(|m| m == t)),
        _ => true,
    }
}

/// The applying import's warning that it superseded held import `held_id` of `file`.
pub fn superseded_warning(held_id: i64, file: &str) -> String {
    format!(
        "supersedes held import {held_id} ({file}): it is older than this one, so it can no longer be \
         approved (its file is kept for download)"
    )
}

/// A record a deletion sample lists: `S10 (Ann Lee)`, its key's columns joined by `+`.
pub fn sample_entry(key: &str, name: &str) -> String {
    let key = key.replace('\u{1f}', "+");
    if name.is_empty() { key } else { format!("{key} ({name})") }
}

/// Where the names of `type_name`'s records are, for search: a single type's person columns
/// (`person`), a package's users; other records are found by key alone.
pub fn search_paths(
    package: bool,
    type_name: &str,
    person: Option<&sluice_core::import::PersonColumns>,
) -> crate::records::SearchPaths {
    use crate::records::SearchPaths;
    match (package, person) {
        (false, Some(p)) => SearchPaths {
            first_name: Some(format!("$[{}]", p.first_name)),
            last_name: Some(format!("$[{}]", p.last_name)),
            email: p.email.map(|e| format!("$[{e}]")),
        },
        (true, _) if type_name == "oneroster.users" => SearchPaths {
            first_name: Some("$.givenName".into()),
            last_name: Some("$.familyName".into()),
            email: Some("$.email".into()),
        },
        _ => SearchPaths::default(),
    }
}

/// The records of an applied import that are people's roles, and where their person is: a
/// single type's (`single`) by its person columns; a package's users (a teacher from the roster
/// and a guardian from guardians.csv with the same name, email and phone are one person).
pub fn people_of<'t>(
    single: Option<&'t str>,
    types: &[(&'t str, LoadMode)],
    person: Option<&sluice_core::import::PersonColumns>,
) -> Option<(&'t str, crate::people::PersonPaths)> {
    match (single, person) {
        (Some(ty), Some(person)) => Some((ty, crate::people::PersonPaths::of_columns(person))),
        (None, _) => types
            .iter()
            .find(|(ty, _)| *ty == "oneroster.users")
            .map(|(ty, _)| (*ty, crate::people::PersonPaths::oneroster_users())),
        (Some(_), None) => None,
    }
}

/// Stages one import's rows, of one type or of a package's several, in one TEMP table keyed
/// by (type, key), plans each type's changes from it, and applies them all in one write
/// transaction (see the module's documentation). A single-type import is a package of one
/// type, with its own ways: records it deletes are erased rather than marked, mirror and
/// upsert modes besides delta, its rows' people linked by the type's columns.
pub struct Loader {
    conn: Connection,
    tenant_id: i64,
    import_id: i64,
    scope: Scope,
    /// The tenant had no records of the import's types, active or not (the tenant's imports
    /// take turns, so none can come meanwhile): nothing to compare with, delete or mark.
    first: bool,
    /// Active records of a single-type import's type (what the safeguard's percentages are of).
    existing: u64,
}

impl Loader {
    fn open(store: &Store, tenant: &str, import_id: i64, scope: Scope) -> Result<Self> {
        let conn = store.import_connection(match scope {
            Scope::Type(_) => 16_000,
            Scope::Package(_) => 32_000,
        })?;
        let tenant_id = crate::tenant_id(&conn, tenant)?;
        // Rows are staged in the temp schema, without the write lock (a first import too:
        // other tenants' imports commit meanwhile), and applied set-based at the end.
        conn.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS stage (type TEXT NOT NULL, key TEXT NOT NULL,
                 line INTEGER NOT NULL, data TEXT NOT NULL, hash INTEGER NOT NULL, kind INTEGER NOT NULL,
                 PRIMARY KEY (type, key)) WITHOUT ROWID;
             DELETE FROM temp.stage;
             BEGIN;",
        )?;
        let (first, existing) = match &scope {
            // All records, and active ones: a deactivated record is not counted by the safeguard.
            Scope::Type(type_name) => {
                let (all, active) = crate::records::records_in_state(&conn, tenant_id, type_name)?;
                (all == 0, active)
            }
            Scope::Package(prefix) => {
                // The types that start with the prefix: [prefix, prefix with its last byte
                // raised) (the prefix ends in `.`).
                let end = format!("{}/", prefix.trim_end_matches('.'));
                let any = conn
                    .prepare("SELECT 1 FROM main.records WHERE tenant_id = ?1 AND type >= ?2 AND type < ?3")?
                    .exists(params![tenant_id, prefix, end])?;
                (!any, 0)
            }
        };
        Ok(Loader { conn, tenant_id, import_id, scope, first, existing })
    }

    /// Whether the import's deletions only mark records (a package's).
    pub(crate) fn marks(&self) -> bool {
        matches!(self.scope, Scope::Package(_))
    }

    /// The type of a single-type import.
    fn own_type(&self) -> Result<&str> {
        match &self.scope {
            Scope::Type(t) => Ok(t),
            Scope::Package(_) => Err(StoreError::Misuse("a package's loader needs the type of each row")),
        }
    }

    /// (connection, tenant, first), for the reference checks in `referrers`: a first import
    /// deletes nothing.
    pub(crate) fn parts(&self) -> (&Connection, i64, bool) {
        (&self.conn, self.tenant_id, self.first)
    }

    pub(crate) fn import_id(&self) -> i64 {
        self.import_id
    }

    fn apply(&self, types: &[(&str, LoadMode)], o: &Outcome<'_>) -> Result<()> {
        let c = &self.conn;
        let (t, id) = (self.tenant_id, self.import_id);
        let marks = self.marks();
        still_open(c, id)?;
        // Records deleted by hand that this import adds back (it says so).
        let mut readded = Vec::new();
        if o.apply.is_some() {
            // The types whose search rows are kept as they are written; the others are indexed
            // whole after. Only with such a type, every record erased from here drops its
            // search row (`records.rs`).
            let mut searched = Vec::with_capacity(types.len());
            for &(ty, _) in types {
                let paths = self.search_paths(ty, o);
                let incremental = crate::records::index_incrementally(c, t, ty, &paths)?;
                searched.push((paths, incremental));
            }
            if searched.iter().any(|(_, incremental)| *incremental) {
                crate::records::watch_erasures(c)?;
            }
            if marks {
                // Before any file is written: what the package deletes is still as planned.
                self.deactivate(c, types, o.referrers)?;
            }
            for (&(ty, mode), (search, incremental)) in types.iter().zip(&searched) {
                readded.extend(crate::records::readded(c, t, ty, crate::records::MAX_READDED)?);
                let written = write_staged(c, t, ty, id, marks)?;
                if *incremental {
                    crate::records::index_written(c, t, ty, search, written)?;
                }
                if marks {
                    if mode == LoadMode::Mirror {
                        // The hash changes with the status, so the same row listed again later
                        // counts as an update (a reactivation), not as unchanged.
                        c.execute(
                            "UPDATE main.records SET data = json_set(data, '$.status', 'tobedeleted'),
                                 hash = hash + 1, updated_import = ?3, inactive = 1
                             WHERE tenant_id = ?1 AND type = ?2 AND inactive = 0
                             AND NOT EXISTS (SELECT 1 FROM temp.stage s WHERE s.type = ?2 AND s.key = records.key)",
                            params![t, ty, id],
                        )?;
                    }
                    if !*incremental {
                        crate::records::index_whole(c, t, ty, search)?;
                    }
                    continue;
                }
                // Listed again: a record deactivated because what it named was deleted is
                // active (above); what this import's deletions leave dangling is deactivated
                // now, before they go.
                self.deactivate(c, &[(ty, mode)], o.referrers)?;
                match mode {
                    LoadMode::Upsert => {}
                    LoadMode::Mirror => {
                        c.execute(
                            "DELETE FROM main.records WHERE tenant_id = ?1 AND type = ?2
                             AND NOT EXISTS (SELECT 1 FROM temp.stage s WHERE s.type = ?2 AND s.key = records.key)",
                            params![t, ty],
                        )?;
                    }
                    LoadMode::Delta => {
                        c.execute(
                            "DELETE FROM main.records WHERE tenant_id = ?1 AND type = ?2
                             AND key IN (SELECT key FROM temp.stage WHERE type = ?2 AND kind = 1)",
                            params![t, ty],
                        )?;
                    }
                }
                if !*incremental {
                    crate::records::index_whole(c, t, ty, search)?;
                }
            }
        }
        let single = match &self.scope {
            Scope::Type(ty) => Some(ty.as_str()),
            Scope::Package(_) => None,
        };
        let people = people_of(single, types, o.person);
        let mut warnings = o.warnings.to_vec();
        warnings.extend(readded);
        if let (Some(_), Some((ty, paths))) = (o.apply, people) {
            // A package's delta links what it listed (see `link_people`).
            let package_delta = marks && types.iter().any(|&(t, m)| t == ty && m == LoadMode::Delta);
            warnings.extend(crate::people::link_people(c, t, ty, id, &paths, package_delta)?);
        }
        apply_outcome(c, id, &Outcome { warnings: &warnings, ..o.clone() })
    }

    fn search_paths(&self, type_name: &str, o: &Outcome<'_>) -> crate::records::SearchPaths {
        search_paths(self.marks(), type_name, o.person)
    }
}

impl Loading for Loader {
    fn dangling(&self, mode: LoadMode, r: &crate::Referrer) -> Result<u64> {
        self.count_dangling(mode, r)
    }

    fn stage(&mut self, line: u64, key: &str, data: &str, hash: i64, kind: StageKind) -> Result<Option<u64>> {
        self.stage_in(self.own_type()?, line, key, data, hash, kind)
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
        let mut insert = self.conn.prepare_cached(
            "INSERT INTO temp.stage (type, key, line, data, hash, kind) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (type, key) DO NOTHING",
        )?;
        if insert.execute(params![type_name, key, line as i64, data, hash, kind as i64])? == 1 {
            return Ok(None);
        }
        let mut first =
            self.conn.prepare_cached("SELECT line FROM temp.stage WHERE type = ?1 AND key = ?2")?;
        Ok(Some(first.query_row(params![type_name, key], |r| r.get::<_, i64>(0))? as u64))
    }

    /// One range of the primary key, `[key, key || ' ')`, whatever the keys: written as
    /// `key = ?3 OR (range)` with a plain `inactive = 0`, SQLite (without statistics) chose
    /// the index of records by state that the store had then (tenant, type, inactive) instead
    /// and read every active record of the referred type for each row: a 200,000-row guardians
    /// file against 100,000 students did not finish in 5 minutes. `+inactive` keeps any index
    /// on the state out of the plan.
    fn reference_exists(&mut self, to_type: &str, key: &str) -> Result<bool> {
        let mut stmt = self.conn.prepare_cached(REFERENCE_EXISTS)?;
        Ok(stmt.exists(params![self.tenant_id, to_type, key])?)
    }

    fn active(&mut self, type_name: &str, key: &str) -> Result<bool> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT 1 FROM main.records WHERE tenant_id = ?1 AND type = ?2 AND key = ?3 AND inactive = 0",
        )?;
        Ok(stmt.exists(params![self.tenant_id, type_name, key])?)
    }

    fn listed(&self, type_name: &str, key: &str) -> Result<bool> {
        let mut stmt = self.conn.prepare_cached("SELECT 1 FROM temp.stage WHERE type = ?1 AND key = ?2")?;
        Ok(stmt.exists(params![type_name, key])?)
    }

    /// As `S10 (Ann Lee)`: the key, then the person's name where the type has one.
    fn deletion_sample(&self, limit: usize, names: Option<(&str, &str)>) -> Result<Vec<String>> {
        let type_name = self.own_type()?;
        let (first, last) = names.unwrap_or(("$.none", "$.none"));
        let mut stmt = self.conn.prepare(
            "SELECT r.key, trim(coalesce(json_extract(r.data, ?4), '') || ' ' || coalesce(json_extract(r.data, ?5), ''))
             FROM main.records r WHERE r.tenant_id = ?1 AND r.type = ?2
             AND NOT EXISTS (SELECT 1 FROM temp.stage s WHERE s.type = ?2 AND s.key = r.key) ORDER BY r.key LIMIT ?3",
        )?;
        let rows = stmt
            .query_map(params![self.tenant_id, type_name, limit as i64, first, last], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows.into_iter().map(|(k, name)| sample_entry(&k, &name)).collect())
    }

    fn existing(&self) -> u64 {
        self.existing
    }

    fn emptied(&self, paths: &[String]) -> Result<Emptied> {
        if self.first || paths.is_empty() {
            return Ok(Emptied { records: 0, per_column: vec![0; paths.len()] });
        }
        let type_name = self.own_type()?;
        let held: Vec<String> = (0..paths.len())
            .map(|i| format!("(coalesce(json_extract(r.data, ?{}), '') <> '')", i + 3))
            .collect();
        // CROSS JOIN: walk the staged rows, look each record up by key. A record whose hash
        // is the row's is not rewritten (its values there are empty already).
        let sql = format!(
            "SELECT COUNT(*), {} FROM temp.stage s CROSS JOIN main.records r
                 ON r.tenant_id = ?1 AND r.type = s.type AND r.key = s.key
             WHERE s.type = ?2 AND s.kind = 0 AND r.hash <> s.hash AND ({})",
            held.iter().map(|h| format!("coalesce(SUM({h}), 0)")).collect::<Vec<_>>().join(", "),
            held.join(" OR ")
        );
        let mut values: Vec<&dyn rusqlite::ToSql> = vec![&self.tenant_id, &type_name];
        values.extend(paths.iter().map(|p| p as &dyn rusqlite::ToSql));
        Ok(self.conn.query_row(&sql, values.as_slice(), |r| {
            let records = r.get::<_, i64>(0)? as u64;
            let per_column = (1..=paths.len())
                .map(|i| r.get::<_, i64>(i).map(|n| n as u64))
                .collect::<rusqlite::Result<_>>()?;
            Ok(Emptied { records, per_column })
        })?)
    }

    fn existing_of(&self, type_name: &str) -> Result<u64> {
        if self.first {
            return Ok(0);
        }
        if matches!(&self.scope, Scope::Type(t) if t == type_name) {
            return Ok(self.existing);
        }
        Ok(crate::records::records_in_state(&self.conn, self.tenant_id, type_name)?.1)
    }

    /// (added, updated, unchanged, deleted); a package's files are `Mirror` (bulk) or `Delta`.
    fn plan(&self, type_name: &str, mode: LoadMode) -> Result<Counts> {
        let q = |sql: &str| -> Result<u64> {
            Ok(self.conn.query_row(sql, params![self.tenant_id, type_name], |r| r.get::<_, i64>(0))? as u64)
        };
        if self.first {
            // Nothing to compare with, delete or mark: every active row adds a record;
            // deletions of records that cannot exist write nothing.
            return Ok(Counts {
                added: q("SELECT COUNT(*) FROM temp.stage WHERE type = ?2 AND kind = 0 AND ?1 IS NOT NULL")?,
                ..Counts::default()
            });
        }
        let marks = self.marks();
        // Rows that write a record: active rows; for a package, also deletions of records that
        // exist (written with their `tobedeleted` status).
        let writes = format!(
            "FROM temp.stage s LEFT JOIN main.records r ON r.tenant_id = ?1 AND r.type = s.type AND r.key = s.key
             WHERE s.type = ?2 AND (s.kind = 0{})",
            if marks { " OR (s.kind = 1 AND r.key IS NOT NULL)" } else { "" }
        );
        let added = q(&format!("SELECT COUNT(*) {writes} AND r.key IS NULL"))?;
        // Unchanged: what the write leaves alone ([`rewrites`]; a deactivated record listed
        // again is updated, made active). (A CROSS JOIN: the condition on `r.hash` turns the LEFT JOIN into an inner one, and
        // SQLite, without statistics, then walked the type's records and looked each up in
        // the stage: 100 ms for a delta of 4,000 rows beside 400,000 records.)
        let (kinds, rewritten) = rewrites(marks);
        let unchanged = q(&format!(
            "SELECT COUNT(*) FROM temp.stage s CROSS JOIN main.records r
                 ON r.tenant_id = ?1 AND r.type = s.type AND r.key = s.key
             WHERE s.type = ?2 AND {kinds} AND NOT {rewritten}"
        ))?;
        let written = if marks {
            q(&format!("SELECT COUNT(*) {writes}"))?
        } else {
            q("SELECT COUNT(*) FROM temp.stage WHERE type = ?2 AND kind = 0 AND ?1 IS NOT NULL")?
        };
        // A single type's deletions erase records, active or not; a package's mark the active
        // ones.
        let deleted = match (mode, marks) {
            (LoadMode::Upsert, _) => 0,
            (LoadMode::Mirror, false) => q("SELECT COUNT(*) FROM main.records r INDEXED BY records_keys
                 WHERE r.tenant_id = ?1 AND r.type = ?2
                 AND NOT EXISTS (SELECT 1 FROM temp.stage s WHERE s.type = ?2 AND s.key = r.key)")?,
            // The active records not listed: all those not listed less the inactive ones (two
            // small indexes; the active records have none of their own).
            (LoadMode::Mirror, true) => q("SELECT (SELECT COUNT(*) FROM main.records r INDEXED BY records_keys
                 WHERE r.tenant_id = ?1 AND r.type = ?2
                 AND NOT EXISTS (SELECT 1 FROM temp.stage s WHERE s.type = ?2 AND s.key = r.key))
                 - (SELECT COUNT(*) FROM main.records r INDEXED BY records_inactive
                 WHERE r.tenant_id = ?1 AND r.type = ?2 AND r.inactive = 1
                 AND NOT EXISTS (SELECT 1 FROM temp.stage s WHERE s.type = ?2 AND s.key = r.key))")?,
            // CROSS JOIN: walk the (small) delta, not the type's records.
            (LoadMode::Delta, _) => q(&format!(
                "SELECT COUNT(*) FROM temp.stage s CROSS JOIN main.records r
                 ON r.tenant_id = ?1 AND r.type = s.type AND r.key = s.key WHERE s.type = ?2 AND s.kind = 1{}",
                if marks { " AND r.inactive = 0" } else { "" }
            ))?,
        };
        // A package's delta deletions are among the rows written.
        let deletions_written = if marks && mode == LoadMode::Delta { deleted } else { 0 };
        Ok(Counts {
            added,
            unchanged,
            // Disjoint subsets of `written`; saturating all the same, so that a surprise can
            // never read as a huge number of changes.
            updated: written.saturating_sub(added + unchanged + deletions_written),
            deleted,
            ..Counts::default()
        })
    }

    fn abandon(self: Box<Self>) -> Result<()> {
        self.conn.execute_batch("ROLLBACK; DELETE FROM temp.stage;")?;
        Ok(())
    }

    fn commit(self: Box<Self>, outcome: Outcome<'_>) -> Result<()> {
        let type_name = self.own_type()?.to_owned();
        let types: Vec<(&str, LoadMode)> =
            outcome.apply.map(|m| (type_name.as_str(), m)).into_iter().collect();
        self.commit_types(&types, outcome)
    }

    fn commit_types(self: Box<Self>, types: &[(&str, LoadMode)], outcome: Outcome<'_>) -> Result<()> {
        finish(&self.conn, || self.apply(types, &outcome))
    }
}

/// Which staged rows write a record (a package's delta deletions too; never a row kept for a
/// rejection), and when a staged row `s` rewrites the record `r` it names: another hash, or an
/// inactive record listed again (a package's deactivated by a deletion by hand keeps its data;
/// those a package marks differ from an active row in their data anyway). One rule for the
/// plan's counts and the write. (Two texts, not a parameter: an `OR` on a bound flag made
/// SQLite look records up twice per row.)
fn rewrites(marks: bool) -> (&'static str, &'static str) {
    if marks {
        ("s.kind < 2", "(r.hash != s.hash OR s.kind = 0 AND r.inactive = 1)")
    } else {
        ("s.kind = 0", "(r.hash != s.hash OR r.inactive = 1)")
    }
}

/// Which records an import's write of a type inserted or rewrote: the keys of `temp.written`,
/// or (a type that had no records) every row it staged to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    Listed,
    AllStaged,
}

impl Written {
    /// A query of the written keys of type `?2`.
    pub(crate) fn keys(self) -> &'static str {
        match self {
            Written::Listed => "SELECT key FROM temp.written",
            Written::AllStaged => "SELECT key FROM temp.stage WHERE type = ?2 AND kind = 0",
        }
    }
}

/// Writes the staged rows of `type_name` into its records, in the import's write transaction:
/// new records inserted, changed ones (another hash, or an inactive one listed again: it is
/// active again) rewritten, unchanged ones left alone; a package writes its delta deletions of
/// records that exist, inactive (`tobedeleted`), and no other.
///
/// Not one upsert, which SQLite must be able to undo halfway (its update aborts on a NOT NULL
/// error) and so runs with a statement journal, a copy of every page it changes (12-14% of a
/// OneRoster delta's time): one pass over the stage, each row probing its record, lists what
/// is new or changed in `temp.written`; the changed records are rewritten by an
/// `UPDATE OR FAIL` of columns no foreign key names, with no trigger and no function, which
/// needs no statement journal (the import's transaction, rolled back on any error, undoes a
/// failure); the new ones are inserted. A type with no records yet (a first import, checked
/// here under the write lock) inserts its rows straight from the stage. The search rows follow
/// from what this returns ([`crate::records::index_written`]), not from row triggers, which
/// would bring the journal back.
fn write_staged(
    c: &Connection,
    tenant_id: i64,
    type_name: &str,
    import_id: i64,
    marks: bool,
) -> Result<Written> {
    let params = params![tenant_id, type_name, import_id];
    let any = c
        .prepare_cached("SELECT 1 FROM main.records WHERE tenant_id = ?1 AND type = ?2")?
        .exists(params![tenant_id, type_name])?;
    if !any {
        c.execute(
            "INSERT INTO main.records (tenant_id, type, key, data, hash, created_import, updated_import, line, inactive)
             SELECT ?1, s.type, s.key, s.data, s.hash, ?3, ?3, s.line, 0 FROM temp.stage s
             WHERE s.type = ?2 AND s.kind = 0",
            params,
        )?;
        return Ok(Written::AllStaged);
    }
    let (kinds, rewritten) = rewrites(marks);
    let changed = format!("{kinds} AND (r.key IS NULL AND s.kind = 0 OR {rewritten})");
    c.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS written (key TEXT PRIMARY KEY, new INTEGER NOT NULL) WITHOUT ROWID;
         DELETE FROM temp.written;",
    )?;
    c.execute(
        &format!(
            "INSERT INTO temp.written (key, new)
             SELECT s.key, r.key IS NULL FROM temp.stage s LEFT JOIN main.records r
                 ON r.tenant_id = ?1 AND r.type = ?2 AND r.key = s.key
             WHERE s.type = ?2 AND {changed}"
        ),
        params![tenant_id, type_name],
    )?;
    // The changed keys drive (`key IN`): joined to the stage alone, SQLite (without
    // statistics) would walk every record of the type and probe the stage for each.
    c.execute(
        "UPDATE OR FAIL main.records SET data = s.data, hash = s.hash, updated_import = ?3, line = s.line,
             inactive = s.kind = 1, previous_data = records.data, previous_import = records.updated_import
         FROM temp.stage s
         WHERE records.tenant_id = ?1 AND records.type = ?2
             AND records.key IN (SELECT key FROM temp.written WHERE new = 0)
             AND s.type = ?2 AND s.key = records.key",
        params,
    )?;
    c.execute(
        "INSERT INTO main.records (tenant_id, type, key, data, hash, created_import, updated_import, line, inactive)
         SELECT ?1, s.type, s.key, s.data, s.hash, ?3, ?3, s.line, 0
         FROM temp.written w CROSS JOIN temp.stage s
         WHERE w.new = 1 AND s.type = ?2 AND s.key = w.key",
        params,
    )?;
    Ok(Written::Listed)
}

/// Ends an import's transaction with `apply` in it. Imports stage and read in a deferred
/// transaction and take the write lock only now, for the set-based apply.
pub(crate) fn finish(conn: &Connection, apply: impl FnOnce() -> Result<()>) -> Result<()> {
    conn.execute_batch("COMMIT; BEGIN IMMEDIATE;")?;
    match apply() {
        Ok(()) => {
            conn.execute_batch("COMMIT")?;
            Ok(())
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Checked first in an import's write transaction (so after every other import that
/// committed before it): an import still `running`, or a held one being approved, may apply;
/// one a newer import superseded (or a decision discarded) meanwhile may not. An approval and
/// a newer import that race cannot both win: whichever commits second sees the other.
pub(crate) fn still_open(c: &Connection, id: i64) -> Result<()> {
    let row: Option<(String, Option<i64>)> = c
        .query_row("SELECT status, superseded_by FROM main.imports WHERE id = ?1", [id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    match row {
        // A dry run has no import row.
        None => Ok(()),
        Some((status, _)) if status == "running" || status == "held" => Ok(()),
        Some((_, Some(by))) => Err(StoreError::Superseded { id, by }),
        Some(_) => Err(StoreError::NotHeld(id)),
    }
}

/// Marks superseded, in the applying import's transaction, every older held import of the
/// same tenant and type (for a package: carrying any of the same record types). Returns the
/// warnings that say so on the applying import (its notification carries them).
fn supersede_older_held(c: &Connection, id: i64, record_types: Option<&[String]>) -> Result<Vec<String>> {
    let mut stmt = c.prepare_cached(
        "SELECT h.id, h.file_name, h.record_types FROM main.imports h JOIN main.imports i
             ON i.id = ?1 AND h.tenant_id = i.tenant_id AND h.type = i.type
         WHERE h.status = 'held' AND h.id < ?1 ORDER BY h.id",
    )?;
    let held = stmt
        .query_map([id], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<String>>(2)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut warnings = Vec::new();
    for (held_id, file, types) in held {
        if !supersedes(record_types, types.as_deref()) {
            continue;
        }
        c.execute(
            // Without the command line's way of approving it, which it no longer has.
            "UPDATE main.imports SET status = 'superseded', superseded_by = ?2, finished_ms = ?3,
                 message = CASE WHEN instr(message, ?4) > 0 THEN substr(message, 1, instr(message, ?4) - 1)
                           ELSE message END
             WHERE id = ?1 AND status = 'held'",
            params![held_id, id, now_ms(), sluice_core::import::safeguard::CLI_HINT],
        )?;
        warnings.push(superseded_warning(held_id, &file));
    }
    Ok(warnings)
}

/// Writes an import's final state, its errors and the upload it consumed. An applied import
/// supersedes the older held ones (see [`supersede_older_held`]).
pub(crate) fn apply_outcome(c: &Connection, id: i64, o: &Outcome<'_>) -> Result<()> {
    if o.apply.is_some() {
        let superseded = supersede_older_held(c, id, o.record_types)?;
        if !superseded.is_empty() {
            let mut warnings = o.warnings.to_vec();
            warnings.extend(superseded);
            return write_outcome(c, id, &Outcome { warnings: &warnings, ..o.clone() });
        }
    }
    write_outcome(c, id, o)
}

fn write_outcome(c: &Connection, id: i64, o: &Outcome<'_>) -> Result<()> {
    let k = o.counts;
    c.execute(
        "UPDATE main.imports SET status = ?2, encoding = ?3, rows = ?4, added = ?5, updated = ?6, unchanged = ?7,
             deleted = ?8, rejected = ?9, message = ?10, warnings = ?11, held_file = ?12, report_file = ?13,
             finished_ms = ?14, delimiter = ?15, record_types = ?16 WHERE id = ?1",
        params![
            id,
            o.status.as_str(),
            o.encoding,
            k.rows as i64,
            k.added as i64,
            k.updated as i64,
            k.unchanged as i64,
            k.deleted as i64,
            k.rejected as i64,
            o.message,
            warnings_to_json(o.warnings),
            o.held_file,
            o.report_file,
            if o.status == ImportStatus::Held { None } else { Some(now_ms()) },
            o.delimiter,
            o.record_types.map(|t| t.join(",")),
        ],
    )?;
    c.execute("DELETE FROM main.import_errors WHERE import_id = ?1", [id])?;
    let mut insert = c.prepare_cached(
        "INSERT INTO main.import_errors (import_id, seq, line, column_name, code, reason, value, record_key, record_name)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for (seq, e) in o.errors.iter().take(STORED_ERRORS).enumerate() {
        insert.execute(params![
            id,
            seq as i64,
            e.line as i64,
            e.column,
            e.code,
            e.reason,
            e.value,
            e.key,
            e.name
        ])?;
    }
    if let Some(upload) = o.upload_id {
        // Once: an upload another import consumed meanwhile fails this one's transaction.
        let consumed = c.execute(
            "UPDATE main.upload_events SET consumed_ms = ?2, import_id = ?3 WHERE id = ?1 AND consumed_ms IS NULL",
            params![upload, now_ms(), id],
        )?;
        if consumed == 0 {
            return Err(StoreError::AlreadyConsumed(upload));
        }
    }
    Ok(())
}

impl crate::roles::ImportQueue for Store {
    fn last_upload_ms(&self, tenant: &str) -> Result<Option<i64>> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT MAX(e.at_ms) FROM upload_events e JOIN tenants t ON t.id = e.tenant_id
                 WHERE t.name = ?1 AND e.requested = 0",
                [tenant],
                |r| r.get(0),
            )?)
        })
    }

    fn claim_upload(&self, lease: Duration, tenant: Option<&str>) -> Result<Option<crate::StoredUpload>> {
        self.with_write(|c| {
            let now = now_ms();
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let id: Option<i64> = tx
                .query_row(
                    "SELECT id FROM upload_events WHERE consumed_ms IS NULL
                     AND (lease_until_ms IS NULL OR lease_until_ms < ?1)
                     AND (?2 IS NULL OR tenant_id = (SELECT id FROM tenants WHERE name = ?2))
                     ORDER BY id LIMIT 1",
                    params![now, tenant],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(id) = id else { return Ok(None) };
            tx.execute(
                "UPDATE upload_events SET lease_until_ms = ?2 WHERE id = ?1",
                params![id, now + lease.as_millis() as i64],
            )?;
            tx.commit()?;
            crate::upload_by_id(c, id)
        })
    }

    fn waiting_tenants(&self) -> Result<Vec<(String, i64)>> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT t.name, MIN(u.id) AS oldest FROM upload_events u JOIN tenants t ON t.id = u.tenant_id
                 WHERE u.consumed_ms IS NULL AND (u.lease_until_ms IS NULL OR u.lease_until_ms < ?1)
                 GROUP BY u.tenant_id ORDER BY oldest",
            )?;
            let rows = stmt
                .query_map([now_ms()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    fn pending_uploads(&self) -> Result<u64> {
        self.with(|c| {
            Ok(c.query_row("SELECT COUNT(*) FROM upload_events WHERE consumed_ms IS NULL", [], |r| {
                r.get::<_, i64>(0)
            })? as u64)
        })
    }

    fn upload_consumed(&self, id: i64) -> Result<bool> {
        self.with(|c| {
            Ok(c.query_row("SELECT consumed_ms IS NOT NULL FROM upload_events WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?
            .unwrap_or(true))
        })
    }

    fn snapshots_in_use(&self) -> Result<Vec<sluice_core::SnapshotName>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT snapshot FROM upload_events WHERE consumed_ms IS NULL AND snapshot IS NOT NULL",
            )?;
            let names =
                stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
            names.iter().map(|n| crate::snapshot_from_row(n)).collect()
        })
    }

    fn retried_upload(&self, upload: &crate::StoredUpload, since_ms: i64) -> Result<Option<i64>> {
        if upload.requested {
            return Ok(None);
        }
        self.with(|c| {
            let latest = c
                .query_row(
                    "SELECT o.id, o.sha256 = ?3 AND o.at_ms >= ?4
                        AND (o.consumed_ms IS NULL
                             OR (i.id IS NOT NULL AND i.status NOT IN ('failed', 'discarded')
                                 AND NOT EXISTS (SELECT 1 FROM imports j
                                     WHERE j.tenant_id = i.tenant_id AND j.type = i.type AND j.id > i.id)
                                 AND NOT EXISTS (SELECT 1 FROM deleted_records d
                                     WHERE d.tenant_id = o.tenant_id AND d.deleted_ms >= o.at_ms)))
                     FROM upload_events u
                     JOIN upload_events o ON o.id = COALESCE(u.duplicate_of, u.id)
                     LEFT JOIN imports i ON i.id = o.import_id
                     WHERE u.tenant_id = (SELECT tenant_id FROM upload_events WHERE id = ?1)
                       AND u.path = ?2 AND u.id < ?1
                     ORDER BY u.id DESC LIMIT 1",
                    params![upload.id, upload.event.path.to_string(), upload.event.sha256.as_str(), since_ms],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, bool>(1)?)),
                )
                .optional()?;
            Ok(latest.and_then(|(original, repeats)| repeats.then_some(original)))
        })
    }

    fn consume_as_duplicate(&self, id: i64, original: i64) -> Result<()> {
        self.with_write(|c| {
            c.execute(
                "UPDATE upload_events SET consumed_ms = ?2, duplicate_of = ?3 WHERE id = ?1",
                params![id, now_ms(), original],
            )?;
            Ok(())
        })
    }

    fn consume_upload(&self, id: i64, import_id: Option<i64>) -> Result<()> {
        self.with_write(|c| {
            c.execute(
                "UPDATE upload_events SET consumed_ms = ?2, import_id = ?3 WHERE id = ?1",
                params![id, now_ms(), import_id],
            )?;
            Ok(())
        })
    }

    fn tenants_at_work(&self) -> Result<Vec<String>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT t.name FROM tenants t
                 WHERE EXISTS (SELECT 1 FROM imports i WHERE i.tenant_id = t.id AND i.status = 'running')
                 ORDER BY t.name",
            )?;
            let names = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(names)
        })
    }

    fn release_leases(&self, tenant: &str, keep: Option<i64>) -> Result<usize> {
        // Writes wait for the write lock in short tries, letting go of the store between them.
        self.with_write(|c| {
            Ok(c.execute(
                "UPDATE upload_events SET lease_until_ms = NULL WHERE consumed_ms IS NULL AND lease_until_ms IS NOT NULL
                 AND tenant_id = (SELECT id FROM tenants WHERE name = ?1) AND (?2 IS NULL OR id <> ?2)",
                params![tenant, keep],
            )?)
        })
    }

    fn remove_interrupted_imports(&self, tenant: &str) -> Result<usize> {
        self.with_write(|c| {
            Ok(c.execute(
                "DELETE FROM imports WHERE status = 'running' AND tenant_id = (SELECT id FROM tenants WHERE name = ?1)",
                [tenant],
            )?)
        })
    }
}

impl crate::roles::Imports for Store {
    fn create_import(
        &self,
        tenant: &str,
        type_name: &str,
        file_name: &str,
        source: &str,
        upload_id: Option<i64>,
        manifest_upload: Option<i64>,
    ) -> Result<i64> {
        self.with_write(|c| {
            let tenant_id = crate::tenant_id(c, tenant)?;
            c.execute(
                "INSERT INTO imports (tenant_id, type, file_name, source, upload_id, manifest_upload, status, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', ?7)",
                params![tenant_id, type_name, file_name, source, upload_id, manifest_upload, now_ms()],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    fn manifest_file_import(&self, manifest_upload: i64, file_name: &str) -> Result<Option<ImportRecord>> {
        self.with(|c| {
            Ok(c.query_row(
                &format!(
                    "{IMPORT_SELECT} WHERE i.manifest_upload = ?1 AND i.file_name = ?2 AND i.status != 'running'
                     ORDER BY i.id DESC LIMIT 1"
                ),
                params![manifest_upload, file_name],
                import_row,
            )
            .optional()?)
        })
    }

    fn import(&self, id: i64) -> Result<Option<ImportRecord>> {
        self.with(|c| {
            Ok(c.query_row(&format!("{IMPORT_SELECT} WHERE i.id = ?1"), [id], import_row).optional()?)
        })
    }

    fn imports(&self, tenant: &str, limit: usize) -> Result<Vec<ImportRecord>> {
        self.with(|c| {
            let mut stmt =
                c.prepare(&format!("{IMPORT_SELECT} WHERE t.name = ?1 ORDER BY i.id DESC LIMIT ?2"))?;
            let rows = stmt
                .query_map(params![tenant, limit as i64], import_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    fn superseded_by(&self, id: i64) -> Result<Vec<i64>> {
        self.with(|c| {
            let mut stmt = c.prepare("SELECT id FROM imports WHERE superseded_by = ?1 ORDER BY id")?;
            let rows = stmt.query_map([id], |r| r.get(0))?.collect::<rusqlite::Result<Vec<i64>>>()?;
            Ok(rows)
        })
    }

    fn import_errors(&self, id: i64, limit: usize, offset: usize) -> Result<Vec<StoredError>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT line, column_name, code, reason, value, record_key, record_name FROM import_errors WHERE import_id = ?1
                 ORDER BY seq LIMIT ?2 OFFSET ?3",
            )?;
            let rows = stmt
                .query_map(params![id, limit as i64, offset as i64], |r| {
                    Ok(StoredError {
                        line: r.get::<_, i64>(0)?.max(0) as u64,
                        column: r.get(1)?,
                        code: r.get(2)?,
                        reason: r.get(3)?,
                        value: r.get(4)?,
                        key: r.get(5)?,
                        name: r.get(6)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    fn record_approval(&self, id: i64, by: &str) -> Result<()> {
        self.with_write(|c| {
            let n = c.execute(
                "UPDATE imports SET decided_by = ?2, decided_ms = ?3 WHERE id = ?1 AND status = 'held'",
                params![id, by, now_ms()],
            )?;
            if n == 0 {
                return Err(StoreError::NotHeld(id));
            }
            Ok(())
        })
    }

    fn discard_import(&self, id: i64, by: &str) -> Result<()> {
        self.with_write(|c| {
            let now = now_ms();
            let n = c.execute(
                "UPDATE imports SET status = 'discarded', held_file = NULL, finished_ms = ?2, decided_by = ?3,
                 decided_ms = ?2,
                 message = CASE WHEN instr(message, ?4) > 0 THEN substr(message, 1, instr(message, ?4) - 1) ELSE message END
                 WHERE id = ?1 AND status = 'held'",
                params![id, now, by, sluice_core::import::safeguard::CLI_HINT],
            )?;
            if n == 0 {
                return Err(StoreError::NotHeld(id));
            }
            Ok(())
        })
    }

    fn acknowledge_import(&self, id: i64, by: &str) -> Result<()> {
        self.with_write(|c| {
            let changed = c.execute(
                "UPDATE imports SET acknowledged_by = ?2, acknowledged_ms = ?3
                 WHERE id = ?1 AND status IN ('failed', 'incomplete') AND acknowledged_ms IS NULL",
                params![id, by, now_ms()],
            )?;
            if changed == 0 {
                return Err(StoreError::Misuse(
                    "only a failed or incomplete import not yet acknowledged can be",
                ));
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
        self.with_write(|c| {
            let tenant_id = crate::tenant_id(c, tenant)?;
            let tx = c.transaction()?;
            let now = now_ms();
            // An import of this upload that crashed left its row `running`: this entry replaces it.
            tx.execute("DELETE FROM imports WHERE upload_id = ?1 AND status = 'running'", params![upload_id])?;
            tx.execute(
                "INSERT INTO imports (tenant_id, type, file_name, source, upload_id, status, message, created_ms, finished_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'failed', ?6, ?7, ?7)",
                params![tenant_id, type_name, file_name, source, upload_id, message, now],
            )?;
            let id = tx.last_insert_rowid();
            if let Some(upload) = upload_id {
                tx.execute(
                    "UPDATE upload_events SET consumed_ms = ?2, import_id = ?3 WHERE id = ?1",
                    params![upload, now, id],
                )?;
            }
            tx.commit()?;
            Ok(id)
        })
    }

    fn loader(&self, tenant: &str, type_name: &str, import_id: i64) -> Result<Box<dyn Loading>> {
        Ok(Box::new(Loader::open(self, tenant, import_id, Scope::Type(type_name.to_owned()))?))
    }

    fn package_loader(&self, tenant: &str, import_id: i64) -> Result<Box<dyn Loading>> {
        Ok(Box::new(Loader::open(self, tenant, import_id, Scope::Package(ONEROSTER))?))
    }

    fn records(
        &self,
        tenant: &str,
        type_name: &str,
        deactivated: Option<bool>,
        each: &mut dyn FnMut(&str, &str),
    ) -> Result<u64> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT r.key, r.data FROM records r JOIN tenants t ON t.id = r.tenant_id
                 WHERE t.name = ?1 AND r.type = ?2 AND (?3 IS NULL OR r.inactive = ?3) ORDER BY r.key",
            )?;
            let mut rows = stmt.query(params![tenant, type_name, deactivated])?;
            let mut n = 0;
            while let Some(row) = rows.next()? {
                let key: String = row.get(0)?;
                let data: String = row.get(1)?;
                each(&key, &data);
                n += 1;
            }
            Ok(n)
        })
    }

    fn records_with_referrers(
        &self,
        tenant: &str,
        type_name: &str,
        referrers: &[crate::roles::Referrers],
        each: &mut crate::roles::RecordWithReferrers<'_>,
    ) -> Result<u64> {
        self.with(|c| {
            let tenant_id = crate::tenant_id(c, tenant)?;
            // One grouped table per referring type (SQLite sorts it on disk when large), joined
            // to the records in key order: the rows stream out, memory stays flat.
            let mut with = Vec::new();
            let mut select = String::from("SELECT r.key, r.data");
            let mut joins = String::new();
            for k in 0..referrers.len() {
                let p = 3 + 4 * k;
                with.push(format!(
                    "ref{k} AS (SELECT v, group_concat(id, ';') AS ids FROM (SELECT json_extract(g.data, ?{}) AS v,
                     json_extract(g.data, ?{}) AS id FROM records g WHERE g.tenant_id = ?1 AND g.type = ?{p}
                     AND g.inactive = 0 ORDER BY v, id) GROUP BY v)",
                    p + 1,
                    p + 2
                ));
                select.push_str(&format!(", ref{k}.ids"));
                // Matched against the record's key, or (`matched_on`) a value of it.
                joins.push_str(&format!(
                    " LEFT JOIN ref{k} ON ref{k}.v = coalesce(json_extract(r.data, ?{}), r.key)",
                    p + 3
                ));
            }
            let sql = format!(
                "{}{select} FROM records r{joins} WHERE r.tenant_id = ?1 AND r.type = ?2 AND r.inactive = 0 ORDER BY r.key",
                if with.is_empty() { String::new() } else { format!("WITH {} ", with.join(", ")) }
            );
            let mut stmt = c.prepare(&sql)?;
            let mut values: Vec<&dyn rusqlite::ToSql> = vec![&tenant_id, &type_name];
            for r in referrers {
                values.extend([&r.type_name as &dyn rusqlite::ToSql, &r.refers_by, &r.named_by, &r.matched_on]);
            }
            let mut rows = stmt.query(values.as_slice())?;
            let (mut n, mut names) = (0, Vec::with_capacity(referrers.len()));
            while let Some(row) = rows.next()? {
                let key: String = row.get(0)?;
                let data: String = row.get(1)?;
                names.clear();
                for k in 0..referrers.len() {
                    names.push(row.get::<_, Option<String>>(2 + k)?);
                }
                each(&key, &data, &names);
                n += 1;
            }
            Ok(n)
        })
    }

    fn record_count(&self, tenant: &str, type_name: &str) -> Result<u64> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM records r JOIN tenants t ON t.id = r.tenant_id WHERE t.name = ?1 AND r.type = ?2",
                params![tenant, type_name],
                |r| r.get::<_, i64>(0),
            )? as u64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_round_trip() {
        let w = vec!["column \"x\" is unknown".to_owned(), "tab\there\\".to_owned(), String::new()];
        assert_eq!(warnings_from_json(&warnings_to_json(&w)), w);
        assert!(warnings_from_json("[]").is_empty());
    }
}
