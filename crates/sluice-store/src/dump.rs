//! Every row of the SQLite store, table by table, as it is stored: what `sluice migrate`
//! copies into PostgreSQL (whose schema has the same tables and columns).

use crate::{Result, Store, StoreError};
use rusqlite::types::ValueRef;

/// A stored value, as SQLite holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Store {
    /// The tables of the store (not SQLite's own), by name.
    pub fn table_names(&self) -> Result<Vec<String>> {
        self.with(|c| {
            let mut q = c.prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
            )?;
            let names = q.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
            Ok(names)
        })
    }

    /// The columns of `table`, in their order; empty when there is no such table.
    pub fn table_columns(&self, table: &str) -> Result<Vec<String>> {
        self.with(|c| {
            let mut q = c.prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")?;
            let names = q.query_map([table], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
            Ok(names)
        })
    }

    /// Passes every row of `table` to `each` (its `columns`, in that order), ordered by
    /// `order` (columns too, compared as SQLite compares: bytes for text); returns how many.
    /// Names are checked against the table's own before they are written into the statement.
    pub fn each_row(
        &self,
        table: &str,
        columns: &[String],
        order: &[String],
        each: &mut dyn FnMut(&[Cell]) -> Result<()>,
    ) -> Result<u64> {
        let known = self.table_columns(table)?;
        if known.is_empty() {
            return Err(StoreError::Misuse("no such table in the SQLite store"));
        }
        if let Some(unknown) = columns.iter().chain(order).find(|c| !known.contains(c)) {
            return Err(StoreError::Corrupt(format!("the SQLite table {table} has no column {unknown}")));
        }
        let quoted =
            |names: &[String]| names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ");
        let order_by = if order.is_empty() { String::new() } else { format!(" ORDER BY {}", quoted(order)) };
        self.with(|c| {
            let mut q = c.prepare(&format!("SELECT {} FROM \"{table}\"{order_by}", quoted(columns)))?;
            let mut rows = q.query([])?;
            let (mut n, mut cells) = (0u64, Vec::with_capacity(columns.len()));
            while let Some(row) = rows.next()? {
                cells.clear();
                for i in 0..columns.len() {
                    cells.push(match row.get_ref(i)? {
                        ValueRef::Null => Cell::Null,
                        ValueRef::Integer(v) => Cell::Int(v),
                        ValueRef::Real(v) => Cell::Real(v),
                        ValueRef::Text(t) => Cell::Text(
                            std::str::from_utf8(t)
                                .map_err(|_| {
                                    StoreError::Corrupt(format!(
                                        "text that is not UTF-8 in {table}, row {}",
                                        n + 1
                                    ))
                                })?
                                .to_owned(),
                        ),
                        ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
                    });
                }
                each(&cells)?;
                n += 1;
            }
            Ok(n)
        })
    }
}
