//! Records one at a time, for a person browsing them: search by key, names and email (through
//! `record_search`, which the loader keeps beside `records` in each import's transaction), one
//! record with what wrote it and its person, people search, the records referring to one, and
//! deleting a record by hand (leaving a tombstone, so that a later import that carries the key
//! again says it added it back).
//!
//! Search is by prefix of folded text (Unicode lower case, `sluice_fold`, registered on every
//! connection the store opens): each word of the query must begin the record's key, first
//! name, last name or email. The first word is looked up in four indexes (one range each); the
//! others filter what it found. Nothing is read per record of the type.
//!
//! A type whose records carry no names (no name or email columns: most types but people's and
//! OneRoster's users) is found by key alone, and only its keys that mix cases or have
//! characters beyond ASCII (`Abc-1`, `Émile-5`) have search rows: a key of ASCII characters
//! all in lower case (`e1`, `10001`) is found in `records`' own primary key by a range of the
//! word's bytes, one all in upper case (`S0001`, `ABC-1`) by a range of the word in ASCII upper
//! case. ASCII's cases are the same to every store (PostgreSQL's ICU and Rust's tables differ
//! beyond it, by Unicode version), so both decide alike which keys need rows and a store moved
//! to PostgreSQL finds the same ASCII keys (beyond ASCII, keys as names are folded by the
//! store that wrote their rows). A first
//! import of such a type then writes no search rows for such keys (it wrote five index entries
//! per record).

use crate::referrers::drop_inactive_roles;
use crate::{Person, Referrer, Result, Store, StoreError, now_ms};
use rusqlite::functions::FunctionFlags;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use sluice_core::import::{ImportType, LayoutChange, OnDelete, layout_change};

/// The SQL functions of search: `sluice_fold` folds text (NULL is empty, numbers are their
/// text); `sluice_key_needs_row` says whether a key of a type found by key alone needs a search
/// row ([`key_needs_row`]).
pub(crate) fn register_functions(c: &Connection) -> Result<()> {
    c.create_scalar_function(
        "sluice_key_needs_row",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            Ok(match ctx.get_raw(0) {
                ValueRef::Text(t) => key_needs_row(&String::from_utf8_lossy(t)),
                _ => false,
            })
        },
    )?;
    c.create_scalar_function(
        "sluice_fold",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            Ok(match ctx.get_raw(0) {
                ValueRef::Text(t) => fold(&String::from_utf8_lossy(t)),
                ValueRef::Integer(i) => i.to_string(),
                ValueRef::Real(f) => f.to_string(),
                ValueRef::Null | ValueRef::Blob(_) => String::new(),
            })
        },
    )?;
    Ok(())
}

/// Text as search compares it: lower case (Unicode), so `Émile` is found by `émile`.
pub fn fold(s: &str) -> String {
    s.to_lowercase()
}

/// Whether a key of a type found by key alone needs a search row: it has a character beyond
/// ASCII, or ASCII letters in both cases (see the module's documentation).
pub fn key_needs_row(key: &str) -> bool {
    !key.is_ascii()
        || (key.bytes().any(|b| b.is_ascii_lowercase()) && key.bytes().any(|b| b.is_ascii_uppercase()))
}

/// The ranges of `records`' primary key that hold the keys a folded `word` begins and that have
/// no search row: the word's own, and the word in ASCII upper case when that differs. (A word
/// beyond ASCII begins no such key: they are all ASCII.)
pub fn key_ranges(word: &str) -> Vec<String> {
    if !word.is_ascii() {
        return Vec::new();
    }
    let upper = word.to_ascii_uppercase();
    if upper == word { vec![word.to_owned()] } else { vec![word.to_owned(), upper] }
}

/// The end of the range of texts that begin with `prefix`: above every such text (U+10FFFF is
/// the largest character, and its UTF-8 the largest bytes).
pub fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

/// At most this many words of a query are used; longer words are cut.
const MAX_WORDS: usize = 5;
const MAX_WORD_CHARS: usize = 100;

/// The words of a search, folded: split at white space and commas ("Smith, Ann").
pub fn search_words(q: &str) -> Vec<String> {
    q.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .take(MAX_WORDS)
        .map(|w| fold(&w.chars().take(MAX_WORD_CHARS).collect::<String>()))
        .collect()
}

/// How a page of records is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordSort {
    #[default]
    Key,
    /// Last name, first name, then key (records without names first).
    Name,
}

/// What a records page asks for.
#[derive(Debug, Clone, Default)]
pub struct RecordQuery {
    /// Words each of which must begin the key, a name or the email (empty: all records).
    pub q: String,
    pub sort: RecordSort,
    pub descending: bool,
    /// Only records whose value at this JSON path is this value (a student's guardians).
    pub filter: Option<(String, String)>,
    /// Only active (`Some(false)`) or deactivated (`Some(true)`) records, or all.
    pub deactivated: Option<bool>,
    pub limit: usize,
    pub offset: usize,
}

/// One stored record and what wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub key: String,
    /// The record's JSON: an array in its type's column order, or a package file's object.
    pub data: String,
    pub inactive: bool,
    /// The import that added it.
    pub created_import: i64,
    /// The import that last wrote it (its line in that import's file).
    pub updated_import: i64,
    pub line: Option<i64>,
    /// Its version before the import that last changed it: (the import that had written it,
    /// its data). Read by [`crate::roles::Records::record`] only (a search page leaves it out).
    pub previous: Option<(i64, String)>,
}

/// A page of records and how many match in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundRecords {
    pub total: u64,
    pub records: Vec<StoredRecord>,
}

/// A type's records rewritten in its new column order ([`crate::Records::settle_layouts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relaid {
    pub type_name: String,
    /// Records rewritten, of every tenant.
    pub records: u64,
    /// Columns found under another stored name: (stored, current).
    pub renamed: Vec<(String, String)>,
    /// New columns, empty in every record.
    pub added: Vec<String>,
    /// Columns the type no longer has, with how many records held a value there (gone).
    pub dropped: Vec<(String, u64)>,
}

impl Relaid {
    /// What an operator reads in the log and on the command line.
    pub fn sentence(&self) -> String {
        let mut parts = Vec::new();
        if !self.added.is_empty() {
            parts.push(format!("added {} (empty)", quoted(self.added.iter())));
        }
        for (from, to) in &self.renamed {
            parts.push(format!("{from:?} read as {to:?}"));
        }
        for (name, lost) in &self.dropped {
            parts.push(format!("{name:?} removed ({lost} values dropped)"));
        }
        format!(
            "type {}: its columns changed; {} records (of every tenant) rewritten in the new column order; {}",
            self.type_name,
            self.records,
            if parts.is_empty() { "columns moved".to_owned() } else { parts.join("; ") }
        )
    }

    /// From a relayout and what the rewrite counted.
    pub fn of(type_name: &str, r: &sluice_core::import::Relayout, records: u64, lost: &[u64]) -> Self {
        Self {
            type_name: type_name.to_owned(),
            records,
            renamed: r.renamed.clone(),
            added: r.added.clone(),
            dropped: r.dropped.iter().zip(lost).map(|((_, n), l)| (n.clone(), *l)).collect(),
        }
    }
}

fn quoted<'a>(names: impl Iterator<Item = &'a String>) -> String {
    names.map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
}

/// What [`crate::Records::settle_layouts`] may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settling {
    /// Remember the layouts of types seen for the first time, and refuse when a type's
    /// records need rewriting: a command, beside a server that may run with other types.
    RememberOnly,
    /// Write nothing, and refuse like `RememberOnly` (`sluice doctor`, which reports).
    Look,
    /// Rewrite the records that need it (the server as it starts); `drop_values`: also when
    /// a removed column holds values, which are then gone.
    Rewrite { drop_values: bool },
}

/// Each type's change from its stored layout (`stored`, in the same order), those with
/// something to do; refused when `settling` may not rewrite what needs it.
pub fn changes<'t>(
    types: &[&'t ImportType],
    stored: &[Option<String>],
    settling: Settling,
) -> Result<Vec<(&'t ImportType, LayoutChange)>> {
    let mut changes = Vec::new();
    for (t, stored) in types.iter().zip(stored) {
        match layout_change(stored.as_deref(), t).map_err(StoreError::Corrupt)? {
            LayoutChange::Unchanged => {}
            change => changes.push((*t, change)),
        }
    }
    let relaid: Vec<&str> = changes
        .iter()
        .filter(|(_, c)| matches!(c, LayoutChange::Relay { .. }))
        .map(|(t, _)| t.name.as_str())
        .collect();
    if matches!(settling, Settling::RememberOnly | Settling::Look) && !relaid.is_empty() {
        return Err(StoreError::LayoutRefused(format!(
            "the columns of type{} {} changed since {} records were stored: the server rewrites them in the new \
             column order when it starts (stop it if it runs, then start it: `sluice serve`); until then, commands \
             are refused, so that nothing reads or writes them in the wrong order; nothing was changed",
            if relaid.len() == 1 { "" } else { "s" },
            relaid.join(", "),
            if relaid.len() == 1 { "its" } else { "their" }
        )));
    }
    Ok(changes)
}

/// Refuses a rewrite that drops values, unless `settling` allows it (the transaction is then
/// not committed).
pub fn refuse_drops(relaid: &Relaid, settling: Settling) -> Result<()> {
    let lost: Vec<String> = relaid
        .dropped
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(c, n)| format!("{c:?} (values in {n} records)"))
        .collect();
    if lost.is_empty() || settling == (Settling::Rewrite { drop_values: true }) {
        return Ok(());
    }
    Err(StoreError::LayoutRefused(format!(
        "type {} no longer has the column{} {}: add {} back to the type, or name {} as an alias of the column \
         that takes {} place, and start again; to drop those values for good, start the server with \
         `sluice serve --drop-removed-columns`; nothing was changed",
        relaid.type_name,
        if lost.len() == 1 { "" } else { "s" },
        lost.join(", "),
        if lost.len() == 1 { "it" } else { "them" },
        if lost.len() == 1 { "it" } else { "each" },
        if lost.len() == 1 { "its" } else { "their" }
    )))
}

/// Rewrites one batch of a type's records in a new column order: `(key, data, previous)` in,
/// `(key, data, hash, previous)` out for those that are arrays; counts dropped values in `lost`.
pub fn relaid_batch(
    r: &sluice_core::import::Relayout,
    rows: Vec<(String, String, Option<String>)>,
    lost: &mut [u64],
) -> Vec<(String, String, i64, Option<String>)> {
    rows.into_iter()
        .filter_map(|(key, data, previous)| {
            let new = r.apply(&data)?;
            for n in r.lost_in(&data) {
                lost[n] += 1;
            }
            let hash = sluice_core::import::content_hash(&new);
            let previous = previous.map(|p| r.apply(&p).unwrap_or(p));
            Some((key, new, hash, previous))
        })
        .collect()
}

/// Rewrites every record of `type_name`, of every tenant, in a batch of keys at a time.
fn relay(c: &Connection, type_name: &str, r: &sluice_core::import::Relayout) -> Result<Relaid> {
    let tenants: Vec<i64> = c
        .prepare("SELECT id FROM main.tenants")?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut read = c.prepare(
        "SELECT key, data, previous_data FROM main.records
         WHERE tenant_id = ?1 AND type = ?2 AND key > ?3 ORDER BY key LIMIT 1000",
    )?;
    let mut write = c.prepare(
        "UPDATE main.records SET data = ?4, hash = ?5, previous_data = ?6
         WHERE tenant_id = ?1 AND type = ?2 AND key = ?3",
    )?;
    let (mut records, mut lost) = (0u64, vec![0u64; r.dropped.len()]);
    for tenant in tenants {
        let mut after = String::new();
        loop {
            let rows: Vec<(String, String, Option<String>)> = read
                .query_map(params![tenant, type_name, after], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let Some(last) = rows.last().map(|(k, _, _)| k.clone()) else { break };
            let full = rows.len() == 1000;
            for (key, data, hash, previous) in relaid_batch(r, rows, &mut lost) {
                write.execute(params![tenant, type_name, key, data, hash, previous])?;
                records += 1;
            }
            if !full {
                break;
            }
            after = last;
        }
    }
    Ok(Relaid::of(type_name, r, records, &lost))
}

/// A record deleted by hand: an import that carries its key again says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    pub type_name: String,
    pub key: String,
    pub deleted_ms: i64,
    pub deleted_by: String,
}

/// Records of one type referring to one record (by one reference).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referring {
    pub referrer: Referrer,
    /// How many of them are active (what a deletion leaves naming a record that is gone).
    pub active: u64,
    /// Some of them, in key order: (key, deactivated).
    pub sample: Vec<(String, bool)>,
}

/// What deleting records by hand did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Deletion {
    /// The keys deleted.
    pub deleted: Vec<String>,
    /// Records deactivated because they referred to a deleted one (`on_delete = "deactivate"`).
    pub deactivated: u64,
    /// Records left referring to a deleted one (`keep`, or `hold` confirmed).
    pub kept: u64,
}

/// Where a type's names are in its records' JSON (`None`: the record has no such value).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SearchPaths {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
}

impl SearchPaths {
    /// No names nor email: the type's records are found by key alone.
    pub fn keyed_only(&self) -> bool {
        self.first_name.is_none() && self.last_name.is_none() && self.email.is_none()
    }

    /// What the store remembers, to notice when a type's columns changed. A type found by key
    /// alone is `key` (it was `||`, a search row per record, before such types kept rows only
    /// for the keys that need one: a type indexed so is indexed whole at its next import).
    pub fn signature(&self) -> String {
        if self.keyed_only() {
            return "key".to_owned();
        }
        let p = |o: &Option<String>| o.clone().unwrap_or_default();
        format!("{}|{}|{}", p(&self.first_name), p(&self.last_name), p(&self.email))
    }
}

/// A name column's folded value from `r.data` at parameter `n`, or '' when the type has no such
/// column: then no record's JSON is parsed for it (a package's enrollments have no names).
fn folded(path: &Option<String>, n: u8) -> String {
    match path {
        Some(_) => format!("sluice_fold(json_extract(r.data, ?{n}))"),
        None => "''".to_owned(),
    }
}

/// Drops the search row of each record erased on the import's connection, by a TEMP trigger
/// (no other connection has it): a single type's mirror or delta deletions, a deletion's
/// cascade. Made only when a type of the import keeps its search rows as it is written (the
/// others are indexed whole after). What an import inserts or rewrites is indexed after each
/// type's rows are written ([`index_written`]), not by triggers: a trigger on the records'
/// rewrite, calling `sluice_fold`, would make SQLite journal every page the rewrite changes.
pub(crate) fn watch_erasures(c: &Connection) -> Result<()> {
    c.execute_batch(
        "CREATE TEMP TRIGGER IF NOT EXISTS search_erased AFTER DELETE ON main.records BEGIN
             DELETE FROM record_search WHERE tenant_id = OLD.tenant_id AND type = OLD.type AND key = OLD.key;
         END;",
    )?;
    Ok(())
}

/// Indexes the records of `type_name` that the import has just inserted or rewritten from its
/// staged rows (`written`; those it left alone keep their rows), set-based: the written keys
/// drive, each looking its record up, so a delta costs its own rows, not the type's. A row is
/// replaced whole; a type found by key alone keeps rows only for the keys that need one (a
/// key never changes, so a key that needs none never had one).
pub(crate) fn index_written(
    c: &Connection,
    tenant_id: i64,
    type_name: &str,
    paths: &SearchPaths,
    written: crate::imports::Written,
) -> Result<()> {
    write_search_rows(c, tenant_id, type_name, paths, Some(written))
}

/// Writes the search rows of a type's records, set-based: of every record (`None`, after its
/// rows were deleted), or replacing those of the records `written` lists.
fn write_search_rows(
    c: &Connection,
    tenant_id: i64,
    type_name: &str,
    paths: &SearchPaths,
    written: Option<crate::imports::Written>,
) -> Result<()> {
    let (first, last, email) =
        (folded(&paths.first_name, 3), folded(&paths.last_name, 4), folded(&paths.email, 5));
    // A type found by key alone: only the keys that need one.
    let which = if paths.keyed_only() { "AND sluice_key_needs_row(r.key)" } else { "" };
    let (verb, from) = match written {
        None => ("INSERT", "main.records r WHERE".to_owned()),
        Some(w) => (
            "INSERT OR REPLACE",
            format!("({}) w CROSS JOIN main.records r WHERE r.key = w.key AND", w.keys()),
        ),
    };
    let mut insert = c.prepare(&format!(
        "{verb} INTO main.record_search (tenant_id, type, key, key_f, first_f, last_f, email_f)
         SELECT ?1, ?2, r.key, sluice_fold(r.key), {first}, {last}, {email}
         FROM {from} r.tenant_id = ?1 AND r.type = ?2 {which}"
    ))?;
    // Only the parameters the statement has (a missing column is a literal there).
    insert.raw_bind_parameter(1, tenant_id)?;
    insert.raw_bind_parameter(2, type_name)?;
    for (n, path) in [(3, &paths.first_name), (4, &paths.last_name), (5, &paths.email)] {
        if let Some(path) = path {
            insert.raw_bind_parameter(n, path.as_str())?;
        }
    }
    insert.raw_execute()?;
    Ok(())
}

/// Whether the import's writes of `type_name` keep its search rows ([`index_written`]): yes
/// when the type was indexed with these paths. Otherwise (its name columns changed, or its
/// records predate search, or it has none yet) it is indexed whole after the import wrote it
/// ([`index_whole`]).
pub(crate) fn index_incrementally(
    c: &Connection,
    tenant_id: i64,
    type_name: &str,
    paths: &SearchPaths,
) -> Result<bool> {
    let known: Option<String> = c
        .query_row(
            "SELECT paths FROM main.record_search_columns WHERE tenant_id = ?1 AND type = ?2",
            params![tenant_id, type_name],
            |r| r.get(0),
        )
        .optional()?;
    Ok(known.as_deref() == Some(paths.signature().as_str()))
}

/// The page cache of the import's connection while indexing a type whole (as while linking
/// people): the name indexes take rows in no order of theirs.
const INDEX_CACHE_KIB: i64 = 64 * 1024;

/// Indexes a type's records whole, set-based (nothing read into memory), and remembers the
/// paths it was indexed with.
pub(crate) fn index_whole(
    c: &Connection,
    tenant_id: i64,
    type_name: &str,
    paths: &SearchPaths,
) -> Result<()> {
    let cache: i64 = c.pragma_query_value(None, "cache_size", |r| r.get(0))?;
    c.pragma_update(None, "cache_size", -INDEX_CACHE_KIB)?;
    let indexed = (|| -> Result<()> {
        c.execute(
            "DELETE FROM main.record_search WHERE tenant_id = ?1 AND type = ?2",
            params![tenant_id, type_name],
        )?;
        write_search_rows(c, tenant_id, type_name, paths, None)?;
        c.execute(
            "INSERT INTO main.record_search_columns (tenant_id, type, paths) VALUES (?1, ?2, ?3)
             ON CONFLICT (tenant_id, type) DO UPDATE SET paths = excluded.paths",
            params![tenant_id, type_name, paths.signature()],
        )?;
        Ok(())
    })();
    c.pragma_update(None, "cache_size", cache)?;
    indexed
}

/// At most this many "added again" warnings per type and import; then a count.
pub const MAX_READDED: usize = 20;

/// The warning of an import whose `line` adds back record `key`, deleted by hand by `by` on
/// `day` (YYYY-MM-DD).
pub fn readded_warning(line: i64, key: &str, by: &str, day: &str) -> String {
    format!(
        "line {line}: record {} was deleted by {by} on {day} and is added again",
        key.replace('\u{1f}', "+")
    )
}

/// The warning for the records added back beyond the first [`MAX_READDED`].
pub fn more_readded(n: usize) -> String {
    format!("{n} more records deleted by hand are added again")
}

/// Warnings for the staged rows of `type_name` that add back records deleted by hand (at most
/// `max`, then a count), and forgets their tombstones: in the import's transaction.
pub(crate) fn readded(c: &Connection, tenant_id: i64, type_name: &str, max: usize) -> Result<Vec<String>> {
    let any = c
        .prepare_cached("SELECT 1 FROM main.deleted_records WHERE tenant_id = ?1 AND type = ?2")?
        .exists(params![tenant_id, type_name])?;
    if !any {
        return Ok(Vec::new());
    }
    let mut stmt = c.prepare(
        "SELECT s.line, s.key, d.deleted_by, strftime('%Y-%m-%d', d.deleted_ms / 1000, 'unixepoch')
         FROM main.deleted_records d CROSS JOIN temp.stage s ON s.type = d.type AND s.key = d.key
         WHERE d.tenant_id = ?1 AND d.type = ?2 AND s.kind = 0 ORDER BY s.line",
    )?;
    let mut rows = stmt.query(params![tenant_id, type_name])?;
    let mut warnings = Vec::new();
    let mut n = 0usize;
    while let Some(r) = rows.next()? {
        n += 1;
        if warnings.len() < max {
            let (line, key, by, day): (i64, String, String, String) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
            warnings.push(readded_warning(line, &key, &by, &day));
        }
    }
    if n > max {
        warnings.push(more_readded(n - max));
    }
    drop(rows);
    c.execute(
        // Walking the type's tombstones (few), each probing the stage by its key.
        "DELETE FROM main.deleted_records WHERE tenant_id = ?1 AND type = ?2
         AND EXISTS (SELECT 1 FROM temp.stage s WHERE s.type = ?2 AND s.key = deleted_records.key AND s.kind = 0)",
        params![tenant_id, type_name],
    )?;
    Ok(warnings)
}

fn stored_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRecord> {
    Ok(StoredRecord {
        key: r.get(0)?,
        data: r.get(1)?,
        inactive: r.get(2)?,
        created_import: r.get(3)?,
        updated_import: r.get(4)?,
        line: r.get(5)?,
        previous: None,
    })
}

/// The value a referring record holds for `key` (a reference to a key of several columns names
/// its first).
pub fn referred_value<'k>(r: &Referrer, key: &'k str) -> &'k str {
    if r.prefix { key.split('\u{1f}').next().unwrap_or(key) } else { key }
}

/// Why deleting record `key` of `type_name` waits for a confirmation: the active records
/// `found` that refer to it (a `hold` reference).
pub fn held_deletion(found: &Referring, type_name: &str, key: &str) -> String {
    let some: Vec<String> = found
        .sample
        .iter()
        .filter(|(_, inactive)| !inactive)
        .map(|(k, _)| k.replace('\u{1f}', "+"))
        .collect();
    format!(
        "{} {} ({}{}) refer to {type_name} {}",
        found.active,
        found.referrer.from_type,
        some.join(", "),
        if found.active as usize > some.len() { ", ..." } else { "" },
        key.replace('\u{1f}', "+")
    )
}

/// Whether deleting `key` leaves `r`'s records dangling: for a reference to the first of several
/// key columns, only when no other record with that first column stays.
fn dangles(c: &Connection, tenant_id: i64, r: &Referrer, key: &str) -> Result<bool> {
    if !r.prefix {
        return Ok(true);
    }
    let first = referred_value(r, key);
    Ok(!c
        .prepare_cached(
            "SELECT 1 FROM main.records WHERE tenant_id = ?1 AND type = ?2 AND key != ?3
             AND (key = ?4 OR (key >= ?4 || char(31) AND key < ?4 || char(32)))",
        )?
        .exists(params![tenant_id, r.to_type, key, first])?)
}

/// Records of `r.from_type` naming `key` (other than itself): (active count, up to `limit`).
fn referring_in(c: &Connection, tenant_id: i64, r: &Referrer, key: &str, limit: usize) -> Result<Referring> {
    let value = referred_value(r, key);
    let same = r.from_type == r.to_type;
    let active: i64 = c.query_row(
        "SELECT COUNT(*) FROM main.records WHERE tenant_id = ?1 AND type = ?2 AND json_extract(data, ?3) = ?4
         AND inactive = 0 AND NOT (?5 AND key = ?6)",
        params![tenant_id, r.from_type, r.path, value, same, key],
        |row| row.get(0),
    )?;
    let mut stmt = c.prepare(
        "SELECT key, inactive FROM main.records WHERE tenant_id = ?1 AND type = ?2 AND json_extract(data, ?3) = ?4
         AND NOT (?5 AND key = ?6) ORDER BY key LIMIT ?7",
    )?;
    let sample = stmt
        .query_map(params![tenant_id, r.from_type, r.path, value, same, key, limit as i64], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Referring { referrer: r.clone(), active: active.max(0) as u64, sample })
}

fn person_by_id(c: &Connection, tenant_id: i64, id: i64) -> Result<Option<Person>> {
    let mut stmt = c.prepare_cached(
        "SELECT p.first_name, p.last_name, p.email, p.phone, r.role, r.type, r.key, r.source_id
         FROM main.people p JOIN main.person_roles r ON r.person_id = p.id
         WHERE p.tenant_id = ?1 AND p.id = ?2 ORDER BY r.role, r.type, r.key",
    )?;
    let mut rows = stmt.query(params![tenant_id, id])?;
    let mut person: Option<Person> = None;
    while let Some(r) = rows.next()? {
        let role =
            crate::PersonRole { role: r.get(4)?, type_name: r.get(5)?, key: r.get(6)?, source_id: r.get(7)? };
        match &mut person {
            Some(p) => p.roles.push(role),
            None => {
                person = Some(Person {
                    id,
                    contact: sluice_core::people::Contact {
                        first_name: r.get(0)?,
                        last_name: r.get(1)?,
                        email: r.get(2)?,
                        phone: r.get(3)?,
                    },
                    roles: vec![role],
                })
            }
        }
    }
    Ok(person)
}

/// Parameters of a statement built as it goes: `push` returns the value's `?N`.
#[derive(Default)]
struct Bind(Vec<Value>);

impl Bind {
    fn push(&mut self, v: impl Into<Value>) -> String {
        self.0.push(v.into());
        format!("?{}", self.0.len())
    }
}

/// `(s.key_f range OR s.last_f range OR ...)` for one word.
fn word_matches(b: &mut Bind, word: &str) -> String {
    let (lo, hi) = (b.push(word.to_owned()), b.push(prefix_end(word)));
    ["key_f", "last_f", "first_f", "email_f"]
        .iter()
        .map(|col| format!("(s.{col} >= {lo} AND s.{col} < {hi})"))
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// A type's records counted from two small indexes, never reading a record's data: every key
/// (`records_keys`) and the inactive ones (`records_inactive`, partial: the state is written
/// as a literal for the planner to use it). `t` and `ty` name the statement's parameters.
fn counted_keys(t: &str, ty: &str) -> (String, String) {
    (
        format!(
            "SELECT COUNT(*) FROM main.records INDEXED BY records_keys WHERE tenant_id = {t} AND type = {ty}"
        ),
        format!(
            "SELECT COUNT(*) FROM main.records INDEXED BY records_inactive
             WHERE tenant_id = {t} AND type = {ty} AND inactive = 1"
        ),
    )
}

/// (all, active) records of a type, from [`counted_keys`].
pub(crate) fn records_in_state(c: &Connection, tenant_id: i64, type_name: &str) -> Result<(u64, u64)> {
    let (all, inactive) = counted_keys("?1", "?2");
    let (all, inactive) = c
        .prepare_cached(&format!("SELECT ({all}), ({inactive})"))?
        .query_row(params![tenant_id, type_name], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
    Ok((all as u64, all.saturating_sub(inactive) as u64))
}

/// The two statements of a search (how many match, one page), each with its parameters.
///
/// With words, the first word's hits are four index ranges of `record_search`, unioned by
/// key; later words and a name order look each hit's `record_search` row up, the deactivated
/// filter probes `records_keys` and `records_inactive` (small entries: the records' data is
/// not read), and only a relationship filter reads a hit's record. The page's keys are chosen
/// that way first and only their records read. Without words, the count walks the records'
/// small indexes, a page by key the records themselves (in key order, up to the page's end:
/// active only, as any page, reads the inactive records it passes), a page by name
/// `record_search`'s name index.
struct Search {
    count: (String, Bind),
    page: (String, Bind),
}

impl Search {
    /// `keyed`: the type is found by key alone ([`found_by_key_alone`]).
    fn new(tenant_id: i64, type_name: &str, q: &RecordQuery, keyed: bool) -> Self {
        let words = search_words(&q.q);
        Search {
            count: Self::statement(tenant_id, type_name, q, &words, true, keyed),
            page: Self::statement(tenant_id, type_name, q, &words, false, keyed),
        }
    }

    fn statement(
        tenant_id: i64,
        type_name: &str,
        q: &RecordQuery,
        words: &[String],
        count: bool,
        keyed: bool,
    ) -> (String, Bind) {
        let mut b = Bind::default();
        let (t, ty) = (b.push(tenant_id), b.push(type_name.to_owned()));
        // Records without names are in key order by name too.
        let by_name = q.sort == RecordSort::Name && !count && !keyed;
        // What the statement walks, and the key of what it walks.
        let (mut from, key, mut conds) = match words.first() {
            Some(w) => {
                let (lo, hi) = (b.push(w.clone()), b.push(prefix_end(w)));
                let hits = if keyed {
                    // Keys of ASCII in one case, then the search rows of the others.
                    let mut hits: Vec<String> = key_ranges(w)
                        .iter()
                        .map(|from| {
                            let (klo, khi) = (b.push(from.clone()), b.push(prefix_end(from)));
                            format!(
                                "SELECT key FROM main.records WHERE tenant_id = {t} AND type = {ty}
                                 AND key >= {klo} AND key < {khi}"
                            )
                        })
                        .collect();
                    hits.push(format!(
                        "SELECT key FROM main.record_search WHERE tenant_id = {t} AND type = {ty}
                         AND key_f >= {lo} AND key_f < {hi}"
                    ));
                    hits.join(" UNION ")
                } else {
                    ["key_f", "last_f", "first_f", "email_f"]
                        .iter()
                        .map(|col| {
                            format!(
                                "SELECT key FROM main.record_search WHERE tenant_id = {t} AND type = {ty}
                                 AND {col} >= {lo} AND {col} < {hi}"
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(" UNION ")
                };
                let mut from = format!("({hits}) h");
                if !keyed && (words.len() > 1 || by_name) {
                    from.push_str(&format!(
                        " CROSS JOIN main.record_search s ON s.tenant_id = {t} AND s.type = {ty} AND s.key = h.key"
                    ));
                }
                (from, "h.key", vec![])
            }
            None if by_name => (
                "main.record_search s".to_owned(),
                "s.key",
                vec![format!("s.tenant_id = {t}"), format!("s.type = {ty}")],
            ),
            None => (
                "main.records r".to_owned(),
                "r.key",
                vec![format!("r.tenant_id = {t}"), format!("r.type = {ty}")],
            ),
        };
        let walks_records = from.starts_with("main.records");
        if let Some(d) = q.deactivated {
            // The state as a literal: `records_inactive` holds only `inactive = 1`, which a
            // bound parameter would hide from the planner.
            // An active hit is a record (a key of `records_keys`) that is not inactive, as the
            // filter said when it probed one index of every record by state.
            let inactive = format!(
                "EXISTS (SELECT 1 FROM main.records a INDEXED BY records_inactive
                 WHERE a.tenant_id = {t} AND a.type = {ty} AND a.inactive = 1 AND a.key = {key})"
            );
            conds.push(match (walks_records, d) {
                (true, true) => "r.inactive = 1".to_owned(),
                (true, false) => "r.inactive = 0".to_owned(),
                (false, true) => inactive,
                (false, false) => format!(
                    "EXISTS (SELECT 1 FROM main.records a INDEXED BY records_keys
                     WHERE a.tenant_id = {t} AND a.type = {ty} AND a.key = {key}) AND NOT {inactive}"
                ),
            });
        }
        if let Some((path, value)) = &q.filter {
            if !walks_records {
                from.push_str(&format!(
                    " CROSS JOIN main.records r ON r.tenant_id = {t} AND r.type = {ty} AND r.key = {key}"
                ));
            }
            conds.push(format!("json_extract(r.data, {}) = {}", b.push(path.clone()), b.push(value.clone())));
        }
        for w in words.iter().skip(1) {
            conds.push(if keyed {
                let (lo, hi) = (b.push(w.clone()), b.push(prefix_end(w)));
                format!("(sluice_fold({key}) >= {lo} AND sluice_fold({key}) < {hi})")
            } else {
                format!("({})", word_matches(&mut b, w))
            });
        }
        let wher = if conds.is_empty() { String::new() } else { format!("WHERE {}", conds.join(" AND ")) };
        if count {
            if walks_records && q.deactivated == Some(false) && q.filter.is_none() {
                // Every key less the inactive ones: the active records are not in an index of
                // their own.
                let (all, inactive) = counted_keys(&t, &ty);
                return (format!("SELECT ({all}) - ({inactive})"), b);
            }
            return (format!("SELECT COUNT(*) FROM {from} {wher}"), b);
        }
        let dir = if q.descending { "DESC" } else { "ASC" };
        let (names, inner, outer) = if by_name {
            (
                "s.last_f AS l, s.first_f AS f",
                format!("s.last_f {dir}, s.first_f {dir}, {key} {dir}"),
                format!("p.l {dir}, p.f {dir}, p.k {dir}"),
            )
        } else {
            ("'' AS l, '' AS f", format!("{key} {dir}"), format!("p.k {dir}"))
        };
        // With words, the page counts the hits it chose from (a window over them, before the
        // limit): the hits are found once, not once for the page and again for the count.
        let n = if words.is_empty() { "NULL" } else { "COUNT(*) OVER ()" };
        let (limit, offset) = (b.push(q.limit as i64), b.push(q.offset as i64));
        let page = format!(
            "SELECT r.key, r.data, r.inactive, r.created_import, r.updated_import, r.line, p.n
             FROM (SELECT {key} AS k, {names}, {n} AS n FROM {from} {wher} ORDER BY {inner}
                   LIMIT {limit} OFFSET {offset}) p
             CROSS JOIN main.records r ON r.tenant_id = {t} AND r.type = {ty} AND r.key = p.k
             ORDER BY {outer}"
        );
        (page, b)
    }
}

/// Whether `type_name`'s records were last indexed as a type found by key alone (its search
/// rows are only those of the keys [`key_needs_row`] names). A type indexed before that was so
/// (its signature was `||` then), or with names, has a search row per record until its next
/// import indexes it whole.
fn found_by_key_alone(c: &Connection, tenant_id: i64, type_name: &str) -> Result<bool> {
    let paths: Option<String> = c
        .prepare_cached("SELECT paths FROM main.record_search_columns WHERE tenant_id = ?1 AND type = ?2")?
        .query_row(params![tenant_id, type_name], |r| r.get(0))
        .optional()?;
    Ok(paths.as_deref() == Some(SearchPaths::default().signature().as_str()))
}

/// The query plans of a search's two statements (for the tests that keep search indexed).
#[cfg(test)]
pub(crate) fn explain_search(
    store: &Store,
    tenant: &str,
    type_name: &str,
    q: &RecordQuery,
) -> Result<Vec<String>> {
    store.with(|c| {
        let tenant_id = crate::tenant_id(c, tenant)?;
        let search = Search::new(tenant_id, type_name, q, found_by_key_alone(c, tenant_id, type_name)?);
        let mut plan = Vec::new();
        for (sql, bind) in [&search.count, &search.page] {
            let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
            let mut rows = stmt.query(params_from_iter(bind.0.iter()))?;
            while let Some(r) = rows.next()? {
                plan.push(r.get::<_, String>(3)?);
            }
        }
        Ok(plan)
    })
}

impl crate::roles::Records for Store {
    fn settle_layouts(&self, types: &[&ImportType], settling: Settling) -> Result<Vec<Relaid>> {
        let layouts = |c: &Connection| -> Result<Vec<Option<String>>> {
            let mut q = c.prepare_cached("SELECT columns FROM main.type_layouts WHERE type = ?1")?;
            let mut stored = Vec::with_capacity(types.len());
            for t in types {
                stored.push(q.query_row([&t.name], |r| r.get(0)).optional()?);
            }
            Ok(stored)
        };
        // Read first: nothing to do is the usual case, and takes no write lock.
        let stored = self.with(|c| layouts(c))?;
        if changes(types, &stored, settling)?.is_empty() || settling == Settling::Look {
            return Ok(Vec::new());
        }
        self.with_write(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let stored = layouts(&tx)?;
            let mut done = Vec::new();
            for (t, change) in changes(types, &stored, settling)? {
                let layout = match change {
                    LayoutChange::Unchanged => continue,
                    LayoutChange::Remember { layout } => layout,
                    LayoutChange::Relay { relayout, layout } => {
                        let relaid = relay(&tx, &t.name, &relayout)?;
                        refuse_drops(&relaid, settling)?;
                        done.push(relaid);
                        layout
                    }
                };
                tx.execute(
                    "INSERT INTO main.type_layouts (type, columns) VALUES (?1, ?2)
                     ON CONFLICT (type) DO UPDATE SET columns = excluded.columns",
                    params![t.name, layout],
                )?;
            }
            tx.commit()?;
            Ok(done)
        })
    }

    fn search_records(&self, tenant: &str, type_name: &str, q: &RecordQuery) -> Result<FoundRecords> {
        self.with(|c| {
            let tenant_id = crate::tenant_id(c, tenant)?;
            // One read transaction (rolled back when done): what the type was indexed as and
            // the search of it, which an import committing in between could both change.
            let _read = c.unchecked_transaction()?;
            // Only active records asked for, and the type has no other (the usual case): no
            // hit needs looking at for it.
            let all_active = q.deactivated == Some(false)
                && !c
                    .prepare_cached(
                        "SELECT 1 FROM main.records INDEXED BY records_inactive
                         WHERE tenant_id = ?1 AND type = ?2 AND inactive = 1",
                    )?
                    .exists(params![tenant_id, type_name])?;
            let q = &if all_active { RecordQuery { deactivated: None, ..q.clone() } } else { q.clone() };
            let keyed = found_by_key_alone(c, tenant_id, type_name)?;
            let Search { count: (count, count_bind), page: (page, page_bind) } =
                Search::new(tenant_id, type_name, q, keyed);
            let mut stmt = c.prepare(&page)?;
            let mut counted: Option<i64> = None;
            let records = stmt
                .query_map(params_from_iter(page_bind.0.iter()), |r| {
                    Ok((stored_record(r)?, r.get::<_, Option<i64>>(6)?))
                })?
                .map(|row| {
                    row.map(|(record, n)| {
                        counted = counted.or(n);
                        record
                    })
                })
                .collect::<rusqlite::Result<Vec<_>>>()?;
            // The page counted its hits, unless it was empty (then nothing may match, or the
            // page lies past the last: only the count says) or had no words (the count walks
            // a small index).
            let total: i64 = match counted {
                Some(n) => n,
                None => c.query_row(&count, params_from_iter(count_bind.0.iter()), |r| r.get(0))?,
            };
            Ok(FoundRecords { total: total.max(0) as u64, records })
        })
    }

    fn record(&self, tenant: &str, type_name: &str, key: &str) -> Result<Option<StoredRecord>> {
        self.with(|c| {
            let tenant_id = crate::tenant_id(c, tenant)?;
            Ok(c.query_row(
                "SELECT key, data, inactive, created_import, updated_import, line, previous_import, previous_data
                 FROM main.records WHERE tenant_id = ?1 AND type = ?2 AND key = ?3",
                params![tenant_id, type_name, key],
                |r| {
                    let before: (Option<i64>, Option<String>) = (r.get(6)?, r.get(7)?);
                    Ok(StoredRecord { previous: before.0.zip(before.1), ..stored_record(r)? })
                },
            )
            .optional()?)
        })
    }

    fn tombstone(&self, tenant: &str, type_name: &str, key: &str) -> Result<Option<Tombstone>> {
        self.with(|c| {
            let tenant_id = crate::tenant_id(c, tenant)?;
            Ok(c.query_row(
                "SELECT deleted_ms, deleted_by FROM main.deleted_records WHERE tenant_id = ?1 AND type = ?2 AND key = ?3",
                params![tenant_id, type_name, key],
                |r| {
                    Ok(Tombstone {
                        type_name: type_name.to_owned(),
                        key: key.to_owned(),
                        deleted_ms: r.get(0)?,
                        deleted_by: r.get(1)?,
                    })
                },
            )
            .optional()?)
        })
    }

    fn person_of(&self, tenant: &str, type_name: &str, key: &str) -> Result<Option<Person>> {
        self.with(|c| {
            let tenant_id = crate::tenant_id(c, tenant)?;
            let id: Option<i64> = c
                .query_row(
                    "SELECT person_id FROM main.person_roles WHERE tenant_id = ?1 AND type = ?2 AND key = ?3",
                    params![tenant_id, type_name, key],
                    |r| r.get(0),
                )
                .optional()?;
            match id {
                Some(id) => person_by_id(c, tenant_id, id),
                None => Ok(None),
            }
        })
    }

    fn person(&self, tenant: &str, id: i64) -> Result<Option<Person>> {
        self.with(|c| {
            let tenant_id = crate::tenant_id(c, tenant)?;
            person_by_id(c, tenant_id, id)
        })
    }

    fn search_people(
        &self,
        tenant: &str,
        q: &str,
        limit: usize,
        offset: usize,
    ) -> Result<(u64, Vec<Person>)> {
        self.with(|c| {
            let tenant_id = crate::tenant_id(c, tenant)?;
            let mut b = Bind::default();
            let mut conds = vec![format!("p.tenant_id = {}", b.push(tenant_id))];
            for w in search_words(q) {
                let (lo, hi) = (b.push(w.clone()), b.push(prefix_end(&w)));
                conds.push(format!(
                    "({})",
                    ["p.first_name", "p.last_name", "p.email"]
                        .iter()
                        .map(|col| format!("(sluice_fold({col}) >= {lo} AND sluice_fold({col}) < {hi})"))
                        .collect::<Vec<_>>()
                        .join(" OR ")
                ));
            }
            let wher = conds.join(" AND ");
            let total: i64 = c.query_row(
                &format!("SELECT COUNT(*) FROM main.people p WHERE {wher}"),
                params_from_iter(b.0.iter()),
                |r| r.get(0),
            )?;
            let (l, o) = (b.push(limit as i64), b.push(offset as i64));
            let ids = c
                .prepare(&format!(
                    "SELECT p.id FROM main.people p WHERE {wher} ORDER BY p.last_name, p.first_name, p.id LIMIT {l} OFFSET {o}"
                ))?
                .query_map(params_from_iter(b.0.iter()), |r| r.get::<_, i64>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut people = Vec::with_capacity(ids.len());
            for id in ids {
                people.extend(person_by_id(c, tenant_id, id)?);
            }
            Ok((total.max(0) as u64, people))
        })
    }

    fn referring(
        &self,
        tenant: &str,
        key: &str,
        referrers: &[Referrer],
        limit: usize,
    ) -> Result<Vec<Referring>> {
        self.with(|c| {
            let tenant_id = crate::tenant_id(c, tenant)?;
            referrers.iter().map(|r| referring_in(c, tenant_id, r, key, limit)).collect()
        })
    }

    fn delete_records(
        &self,
        tenant: &str,
        type_name: &str,
        keys: &[String],
        by: &str,
        referrers: &[Referrer],
        confirmed: bool,
    ) -> Result<Deletion> {
        if keys.is_empty() {
            return Ok(Deletion::default());
        }
        self.with_write(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let tenant_id = crate::tenant_id(&tx, tenant)?;
            let mut keys: Vec<&String> = keys.iter().collect();
            keys.sort();
            keys.dedup();
            for key in &keys {
                let exists = tx
                    .prepare_cached("SELECT 1 FROM main.records WHERE tenant_id = ?1 AND type = ?2 AND key = ?3")?
                    .exists(params![tenant_id, type_name, key])?;
                if !exists {
                    return Err(StoreError::NoSuchRecord { type_name: type_name.to_owned(), key: key.to_string() });
                }
            }
            // What the deletions would leave naming a record that is gone, per reference.
            let mut held = Vec::new();
            let mut dangling: Vec<(&Referrer, &str, u64)> = Vec::new();
            for key in &keys {
                for r in referrers.iter().filter(|r| r.to_type == type_name) {
                    if !dangles(&tx, tenant_id, r, key)? {
                        continue;
                    }
                    let found = referring_in(&tx, tenant_id, r, key, 5)?;
                    if found.active == 0 {
                        continue;
                    }
                    if r.on_delete == OnDelete::Hold && !confirmed {
                        held.push(held_deletion(&found, type_name, key));
                    }
                    dangling.push((r, key.as_str(), found.active));
                }
            }
            if !held.is_empty() {
                return Err(StoreError::Referred(held.join("; ")));
            }
            let mut done = Deletion::default();
            for (r, key, n) in dangling {
                if r.on_delete == OnDelete::Deactivate {
                    let same = r.from_type == r.to_type;
                    done.deactivated += tx.execute(
                        "UPDATE main.records SET inactive = 1 WHERE tenant_id = ?1 AND type = ?2 AND inactive = 0
                         AND json_extract(data, ?3) = ?4 AND NOT (?5 AND key = ?6)",
                        params![tenant_id, r.from_type, r.path, referred_value(r, key), same, key],
                    )? as u64;
                    drop_inactive_roles(&tx, tenant_id, &r.from_type)?;
                } else {
                    done.kept += n;
                }
            }
            let now = now_ms();
            for key in &keys {
                let person: Option<i64> = tx
                    .prepare_cached(
                        "SELECT person_id FROM main.person_roles WHERE tenant_id = ?1 AND type = ?2 AND key = ?3",
                    )?
                    .query_row(params![tenant_id, type_name, key], |r| r.get(0))
                    .optional()?;
                for sql in [
                    "DELETE FROM main.records WHERE tenant_id = ?1 AND type = ?2 AND key = ?3",
                    "DELETE FROM main.record_search WHERE tenant_id = ?1 AND type = ?2 AND key = ?3",
                    "DELETE FROM main.person_roles WHERE tenant_id = ?1 AND type = ?2 AND key = ?3",
                ] {
                    tx.prepare_cached(sql)?.execute(params![tenant_id, type_name, key])?;
                }
                tx.prepare_cached(
                    "INSERT INTO main.deleted_records (tenant_id, type, key, deleted_ms, deleted_by)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (tenant_id, type, key) DO UPDATE SET deleted_ms = excluded.deleted_ms,
                         deleted_by = excluded.deleted_by",
                )?
                .execute(params![tenant_id, type_name, key, now, by])?;
                // A person left without a role goes, as after an import.
                if let Some(person) = person {
                    tx.prepare_cached(
                        "DELETE FROM main.people WHERE id = ?1 AND NOT EXISTS
                         (SELECT 1 FROM main.person_roles pr WHERE pr.person_id = ?1)",
                    )?
                    .execute([person])?;
                }
                done.deleted.push(key.to_string());
            }
            tx.commit()?;
            Ok(done)
        })
    }
}
