//! Schema migrations, applied in order and recorded in `PRAGMA user_version`.

use crate::{Result, StoreError};
use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: tenants, credentials, upload events
    "CREATE TABLE tenants (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        folders TEXT NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0,
        password_hash TEXT,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE tenant_keys (
        id INTEGER PRIMARY KEY,
        tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        algorithm TEXT NOT NULL,
        key_base64 TEXT NOT NULL,
        comment TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        UNIQUE (tenant_id, key_base64)
    );
    CREATE TABLE upload_events (
        id INTEGER PRIMARY KEY,
        tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        consumed_ms INTEGER
    );
    CREATE INDEX upload_events_pending ON upload_events (consumed_ms, id);",
];

pub(crate) fn migrate(conn: &Connection) -> Result<()> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(StoreError::TooNew { found: current, known });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
