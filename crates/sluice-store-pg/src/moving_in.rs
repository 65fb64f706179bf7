//! Moving a SQLite store into PostgreSQL (`sluice migrate --to URL`): every table copied as
//! it is (the schemas have the same tables and columns), in one transaction, into an empty
//! database, then read back and compared.
//!
//! Each table's rows are streamed from SQLite in primary-key order (bytes for text, as both
//! compare) and written with COPY in its text format; a SHA-256 of that text is kept. Then
//! PostgreSQL's own COPY of the table, in the same order, is hashed: the two digests and the
//! counts must agree, or nothing is committed. Identity sequences continue after the largest
//! id copied. Tables are loaded referenced first (the foreign keys are checked as rows
//! arrive).

use crate::{PgStore, db};
use sha2::{Digest, Sha256};
use sluice_store::dump::Cell;
use sluice_store::{Result, Store, StoreError};
use std::io::{Read, Write};

/// What was copied of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCopied {
    pub table: String,
    pub rows: u64,
    /// SHA-256 (hex) of the table's rows in COPY's text format, in primary-key order: the same
    /// read from SQLite and read back from PostgreSQL.
    pub sha256: String,
}

/// Rows sent per COPY statement's buffer.
const BUFFER_BYTES: usize = 4 << 20;

/// Whether the database at `url` may receive a moved state, asked before sluice's schema is
/// made there (so that a refusal leaves it as it was): it must hold no tables, or sluice's
/// (a new database, or one an earlier refused move left with the schema only).
pub fn check_move_target(url: &str) -> Result<()> {
    crate::blocking(|| {
        let mut c = postgres::Client::connect(url, postgres::NoTls).map_err(db)?;
        let tables: Vec<String> = c
            .query(
                "SELECT table_name::text FROM information_schema.tables
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name",
                &[],
            )
            .map_err(db)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if tables.is_empty() {
            return Ok(());
        }
        if !tables.iter().any(|t| t == "sluice_schema") {
            return Err(StoreError::MoveRefused(format!(
                "the PostgreSQL database holds tables that are not sluice's ({}): move into a new, empty database \
                 (createdb); nothing was changed",
                tables.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        // Sluice's schema, left by a refused move: taken only at this build's version and
        // with no row anywhere (a live deployment's database is never touched, nor upgraded).
        let version: i64 =
            c.query_one("SELECT COALESCE(MAX(version), 0) FROM sluice_schema", &[]).map_err(db)?.get(0);
        if version != crate::migrations::known() {
            return Err(StoreError::MoveRefused(format!(
                "the PostgreSQL database holds a sluice schema of another version ({version}; this build's is {}): \
                 move into a new, empty database (createdb); nothing was changed",
                crate::migrations::known()
            )));
        }
        for table in tables.iter().filter(|t| *t != "sluice_schema") {
            // Names from the catalog, quoted.
            if c.query_opt(&format!("SELECT 1 FROM \"{table}\" LIMIT 1"), &[]).map_err(db)?.is_some() {
                return Err(StoreError::MoveRefused(format!(
                    "the PostgreSQL database is in use (its table {table} has rows): sluice moves a state only into \
                     a new, empty database (createdb); nothing was changed"
                )));
            }
        }
        Ok(())
    })
}

impl PgStore {
    /// Copies every table of `source` into this database, which must hold nothing yet, and
    /// checks what PostgreSQL then holds against what was read. All or nothing.
    pub fn move_in_from(&self, source: &Store) -> Result<Vec<TableCopied>> {
        self.with(|c| {
            let mut tx = c.transaction().map_err(db)?;
            let tables = tables_in_load_order(&mut tx)?;
            let sqlite_tables = source.table_names()?;
            if let Some(missing) = sqlite_tables.iter().find(|t| !tables.iter().any(|(n, _)| n == *t)) {
                return Err(StoreError::Corrupt(format!(
                    "the SQLite store has a table {missing} that PostgreSQL's schema lacks (a build mismatch?)"
                )));
            }
            if let Some((other, _)) = tables.iter().find(|(t, _)| !sqlite_tables.contains(t)) {
                return Err(StoreError::MoveRefused(format!(
                    "the PostgreSQL database holds a table that is not sluice's ({other}): move into a new, empty \
                     database (createdb)"
                )));
            }
            for (table, _) in &tables {
                let any = tx.query_opt(&format!("SELECT 1 FROM \"{table}\" LIMIT 1"), &[]).map_err(db)?;
                if any.is_some() {
                    return Err(StoreError::MoveRefused(format!(
                        "the PostgreSQL database is in use (its table {table} has rows): sluice moves a state only \
                         into a new, empty database (createdb)"
                    )));
                }
            }
            let mut copied = Vec::new();
            for (table, columns) in &tables {
                copied.push(copy_table(&mut tx, source, table, columns)?);
            }
            restart_identities(&mut tx)?;
            tx.commit().map_err(db)?;
            Ok(copied)
        })
    }
}

/// A column of PostgreSQL's schema: its name and type.
struct Column {
    name: String,
    kind: String,
}

/// The tables of the schema (not the migrations' own), each after the tables it refers to,
/// with their columns in order.
fn tables_in_load_order(c: &mut impl postgres::GenericClient) -> Result<Vec<(String, Vec<Column>)>> {
    let names: Vec<String> = c
        .query(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' AND table_name <> 'sluice_schema'
             ORDER BY table_name",
            &[],
        )
        .map_err(db)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let refers: Vec<(String, String)> = c
        .query(
            "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint
             WHERE contype = 'f' AND connamespace = current_schema()::regnamespace",
            &[],
        )
        .map_err(db)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut ordered: Vec<String> = Vec::new();
    while ordered.len() < names.len() {
        let before = ordered.len();
        for n in &names {
            let ready =
                refers.iter().filter(|(from, to)| from == n && to != n).all(|(_, to)| ordered.contains(to));
            if !ordered.contains(n) && ready {
                ordered.push(n.clone());
            }
        }
        if ordered.len() == before {
            return Err(StoreError::Misuse("the schema's foreign keys go round in a circle"));
        }
    }
    let mut tables = Vec::new();
    for table in ordered {
        let columns = c
            .query(
                "SELECT column_name::text, data_type::text FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                &[&table],
            )
            .map_err(db)?
            .iter()
            .map(|r| Column { name: r.get(0), kind: r.get(1) })
            .collect();
        tables.push((table, columns));
    }
    Ok(tables)
}

/// The primary key's columns of `table`, in order (all its columns if it has none).
fn order_of(c: &mut impl postgres::GenericClient, table: &str, columns: &[Column]) -> Result<Vec<String>> {
    let key: Vec<String> = c
        .query(
            "SELECT a.attname::text FROM pg_index i
             JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON TRUE
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE i.indrelid = $1::text::regclass AND i.indisprimary ORDER BY k.n",
            &[&table],
        )
        .map_err(db)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(if key.is_empty() { columns.iter().map(|c| c.name.clone()).collect() } else { key })
}

fn copy_table(
    tx: &mut postgres::Transaction<'_>,
    source: &Store,
    table: &str,
    columns: &[Column],
) -> Result<TableCopied> {
    let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
    let order = order_of(tx, table, columns)?;
    let sqlite_columns = source.table_columns(table)?;
    if let Some(missing) = names.iter().find(|n| !sqlite_columns.contains(n)) {
        return Err(StoreError::Corrupt(format!("the SQLite table {table} has no column {missing}")));
    }
    let list = names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ");
    let (mut sent, mut buffer, mut row) = (Sha256::new(), Vec::new(), 0u64);
    let rows = source.each_row(table, &names, &order, &mut |cells| {
        row += 1;
        for (i, (cell, column)) in cells.iter().zip(columns).enumerate() {
            if i > 0 {
                buffer.push(b'\t');
            }
            field(&mut buffer, cell, &column.kind).map_err(|why| {
                StoreError::Corrupt(format!("{table}, row {row}, column {}: {why}", column.name))
            })?;
        }
        buffer.push(b'\n');
        if buffer.len() >= BUFFER_BYTES {
            send(tx, table, &list, &mut buffer, &mut sent)?;
        }
        Ok(())
    })?;
    send(tx, table, &list, &mut buffer, &mut sent)?;
    // Read back in the same order (text compared as bytes, as SQLite did).
    let collated: Vec<String> = order
        .iter()
        .map(|o| match columns.iter().find(|c| &c.name == o) {
            Some(c) if c.kind == "text" => format!("\"{o}\" COLLATE \"C\""),
            _ => format!("\"{o}\""),
        })
        .collect();
    let mut reader = tx
        .copy_out(&format!(
            "COPY (SELECT {list} FROM \"{table}\" ORDER BY {}) TO STDOUT",
            collated.join(", ")
        ))
        .map_err(db)?;
    let (mut back, mut chunk, mut lines) = (Sha256::new(), vec![0u8; 64 << 10], 0u64);
    loop {
        let n = reader
            .read(&mut chunk)
            .map_err(|e| StoreError::Database(sluice_store::DatabaseError::other(e)))?;
        if n == 0 {
            break;
        }
        lines += chunk[..n].iter().filter(|b| **b == b'\n').count() as u64;
        back.update(&chunk[..n]);
    }
    drop(reader);
    let (sent, back) = (hex(&sent.finalize()), hex(&back.finalize()));
    if lines != rows || sent != back {
        return Err(StoreError::Corrupt(format!(
            "table {table}: {rows} rows read from SQLite (sha256 {sent}), {lines} read back from PostgreSQL (sha256 \
             {back}); nothing was committed"
        )));
    }
    Ok(TableCopied { table: table.to_owned(), rows, sha256: sent })
}

fn send(
    tx: &mut postgres::Transaction<'_>,
    table: &str,
    list: &str,
    buffer: &mut Vec<u8>,
    sent: &mut Sha256,
) -> Result<()> {
    if buffer.is_empty() {
        return Ok(());
    }
    sent.update(&buffer[..]);
    let mut w = tx.copy_in(&format!("COPY \"{table}\" ({list}) FROM STDIN")).map_err(db)?;
    w.write_all(buffer).map_err(|e| StoreError::Database(sluice_store::DatabaseError::other(e)))?;
    w.finish().map_err(db)?;
    buffer.clear();
    Ok(())
}

/// Writes `cell` as a field of COPY's text format for a column of type `kind`, exactly as
/// PostgreSQL's COPY TO writes it back (so the two can be compared byte for byte).
fn field(out: &mut Vec<u8>, cell: &Cell, kind: &str) -> std::result::Result<(), String> {
    match (cell, kind) {
        (Cell::Null, _) => out.extend_from_slice(b"\\N"),
        (Cell::Int(v), "bigint" | "integer" | "smallint") => out.extend_from_slice(v.to_string().as_bytes()),
        (Cell::Int(v), "boolean") => out.push(if *v == 0 { b'f' } else { b't' }),
        (Cell::Int(v), "text") => out.extend_from_slice(v.to_string().as_bytes()),
        (Cell::Text(t), "text") => text(out, t)?,
        (Cell::Text(t), "bigint" | "integer" | "smallint") if t.parse::<i64>().is_ok() => {
            out.extend_from_slice(t.parse::<i64>().unwrap_or_default().to_string().as_bytes())
        }
        (other, kind) => return Err(format!("{other:?} cannot be stored as {kind}")),
    }
    Ok(())
}

fn text(out: &mut Vec<u8>, t: &str) -> std::result::Result<(), String> {
    for b in t.bytes() {
        match b {
            0 => return Err("text with a NUL character (PostgreSQL cannot store one)".to_owned()),
            b'\\' => out.extend_from_slice(b"\\\\"),
            8 => out.extend_from_slice(b"\\b"),
            12 => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            11 => out.extend_from_slice(b"\\v"),
            b => out.push(b),
        }
    }
    Ok(())
}

/// Identity columns go on after the largest id copied.
fn restart_identities(c: &mut impl postgres::GenericClient) -> Result<()> {
    let identities: Vec<(String, String)> = c
        .query(
            "SELECT table_name::text, column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND is_identity = 'YES'",
            &[],
        )
        .map_err(db)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (table, column) in identities {
        c.execute(
            &format!(
                "SELECT setval(pg_get_serial_sequence($1, $2), COALESCE(MAX(\"{column}\"), 1), MAX(\"{column}\") IS NOT NULL)
                 FROM \"{table}\""
            ),
            &[&table, &column],
        )
        .map_err(db)?;
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
