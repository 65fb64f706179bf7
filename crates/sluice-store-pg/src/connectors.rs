//! Connectors, their transfer log and the remote files already pulled on PostgreSQL, as
//! `sluice-store`'s `connectors.rs` keeps them on SQLite (one row codec for both:
//! `ConnectorRow`, `transfer_from_row`).
//!
//! Where SQLite's write lock made a read-then-write safe: a connector saved under a name
//! (any case) another node saves at the same moment is saved once, the other save answered as
//! if it came second (its row locked `FOR UPDATE`, a new one inserted `ON CONFLICT DO
//! NOTHING`); a connector being removed is locked before the exports that push to it are
//! looked for, so an export saved meanwhile on another node (which holds the connector's row
//! while it saves) is seen; a pulled file is recorded by one upsert.

use crate::deliveries::bigint;
use crate::saved_exports::{SAVE_ROUNDS, contended};
use crate::{PgStore, db, tenant_id};
use postgres::Row;
use sluice_core::connector::{Connector, HostKey};
use sluice_store::{
    CONNECTOR_COLUMNS, ConnectorRow, Connectors, Result, StoreError, TRANSFER_COLUMNS, Transfer, now_ms,
    transfer_from_row,
};

const FROM: &str = "FROM connectors c JOIN tenants t ON t.id = c.tenant_id";

/// A connector's row from the columns of [`CONNECTOR_COLUMNS`], first.
fn connector_row(r: &Row) -> ConnectorRow {
    ConnectorRow {
        name: r.get(0),
        address: r.get(1),
        auth: r.get(2),
        host_key: r.get(3),
        rename: r.get(4),
        secret: r.get(5),
        pull: r.get(6),
        after_pull: r.get(7),
    }
}

impl Connectors for PgStore {
    fn save_connector(&self, tenant: &str, connector: &Connector, sealed: &str, replace: bool) -> Result<()> {
        let row = ConnectorRow::of(connector, sealed);
        self.with(|c| {
            for _ in 0..SAVE_ROUNDS {
                let mut tx = c.transaction().map_err(db)?;
                let tenant_id = tenant_id(&mut tx, tenant)?;
                let existing: Option<String> = tx
                    .query_opt(
                        "SELECT name FROM connectors WHERE tenant_id = $1 AND lower(name) = lower($2::text COLLATE \"C\")
                         FOR UPDATE",
                        &[&tenant_id, &row.name],
                    )
                    .map_err(db)?
                    .map(|r| r.get(0));
                let params: [&(dyn postgres::types::ToSql + Sync); 10] = [
                    &tenant_id,
                    &row.name,
                    &row.address,
                    &row.auth,
                    &row.secret,
                    &row.host_key,
                    &row.rename,
                    &now_ms(),
                    &row.pull,
                    &row.after_pull,
                ];
                match existing {
                    Some(name) if !replace => return Err(StoreError::ConnectorExists(name)),
                    Some(name) => {
                        // Every column written, the name as now spelled: what SQLite's delete
                        // and insert leave, in the same row (a save of an export that holds it
                        // meanwhile then still finds it).
                        let mut with_old: Vec<&(dyn postgres::types::ToSql + Sync)> = params.to_vec();
                        with_old.push(&name);
                        tx.execute(
                            "UPDATE connectors SET name = $2, address = $3, auth = $4, secret = $5, host_key = $6,
                             rename = $7, created_ms = $8, pull = $9, after_pull = $10
                             WHERE tenant_id = $1 AND name = $11",
                            &with_old,
                        )
                        .map_err(db)?;
                    }
                    None => {
                        // Another node saving the same name (any case) meanwhile: this waits
                        // for its commit, inserts nothing, and the next round finds its row.
                        let inserted = tx
                            .execute(
                                "INSERT INTO connectors (tenant_id, name, address, auth, secret, host_key, rename,
                                 created_ms, pull, after_pull) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                                 ON CONFLICT DO NOTHING",
                                &params,
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
            Err(contended(&format!("connector {:?}", row.name)))
        })
    }

    fn connector(&self, tenant: &str, name: &str) -> Result<Option<(Connector, String)>> {
        self.with(|c| {
            let tenant_id = tenant_id(c, tenant)?;
            let sql = format!(
                "SELECT {CONNECTOR_COLUMNS} {FROM} WHERE c.tenant_id = $1 AND lower(c.name) = lower($2::text COLLATE \"C\")"
            );
            let found = c.query_opt(sql.as_str(), &[&tenant_id, &name]).map_err(db)?;
            found.map(|r| connector_row(&r).parse()).transpose()
        })
    }

    fn any_connectors(&self) -> Result<bool> {
        self.with(|c| Ok(c.query_one("SELECT EXISTS (SELECT 1 FROM connectors)", &[]).map_err(db)?.get(0)))
    }

    fn connectors(&self, tenant: &str) -> Result<Vec<Connector>> {
        self.with(|c| {
            let tenant_id = tenant_id(c, tenant)?;
            let sql = format!("SELECT {CONNECTOR_COLUMNS} {FROM} WHERE c.tenant_id = $1 ORDER BY c.name");
            let rows = c.query(sql.as_str(), &[&tenant_id]).map_err(db)?;
            rows.iter().map(|r| Ok(connector_row(r).parse()?.0)).collect()
        })
    }

    fn pin_host_key(&self, tenant: &str, name: &str, key: &HostKey) -> Result<()> {
        self.with(|c| {
            let tenant_id = tenant_id(c, tenant)?;
            let n = c
                .execute(
                    "UPDATE connectors SET host_key = $3
                     WHERE tenant_id = $1 AND lower(name) = lower($2::text COLLATE \"C\")",
                    &[&tenant_id, &name, &key.to_string()],
                )
                .map_err(db)?;
            if n == 0 {
                return Err(StoreError::NoSuchConnector(name.to_owned()));
            }
            Ok(())
        })
    }

    fn remove_connector(&self, tenant: &str, name: &str) -> Result<()> {
        self.with(|c| {
            let mut tx = c.transaction().map_err(db)?;
            let tenant_id = tenant_id(&mut tx, tenant)?;
            // The connector first: an export being saved to push to it holds its row, so this
            // waits for that save, and the next statement sees the export.
            tx.execute(
                "SELECT 1 FROM connectors WHERE tenant_id = $1 AND lower(name) = lower($2::text COLLATE \"C\") FOR UPDATE",
                &[&tenant_id, &name],
            )
            .map_err(db)?;
            let user = tx
                .query_opt(
                    "SELECT name FROM saved_exports WHERE tenant_id = $1 AND lower(push_to) = lower($2::text COLLATE \"C\")
                     ORDER BY name LIMIT 1",
                    &[&tenant_id, &name],
                )
                .map_err(db)?;
            if let Some(export) = user {
                return Err(StoreError::ConnectorInUse { connector: name.to_owned(), export: export.get(0) });
            }
            let n = tx
                .execute(
                    "DELETE FROM connectors WHERE tenant_id = $1 AND lower(name) = lower($2::text COLLATE \"C\")",
                    &[&tenant_id, &name],
                )
                .map_err(db)?;
            if n == 0 {
                return Err(StoreError::NoSuchConnector(name.to_owned()));
            }
            tx.commit().map_err(db)?;
            Ok(())
        })
    }

    fn log_transfer(
        &self,
        tenant: &str,
        connector: &str,
        direction: &str,
        file: &str,
        outcome: std::result::Result<u64, &str>,
    ) -> Result<()> {
        self.with(|c| {
            let tenant_id = tenant_id(c, tenant)?;
            let (bytes, error) = match outcome {
                Ok(b) => (Some(i64::try_from(b).unwrap_or(i64::MAX)), None),
                Err(e) => (None, Some(e)),
            };
            c.execute(
                "INSERT INTO connector_log (tenant_id, connector, at_ms, direction, file, bytes, error)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[&tenant_id, &connector, &now_ms(), &direction, &file, &bytes, &error],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn pulling_connectors(&self) -> Result<Vec<(String, String, Connector)>> {
        self.with(|c| {
            let sql = format!(
                "SELECT {CONNECTOR_COLUMNS}, t.name, t.timezone {FROM}
                 WHERE NOT t.disabled AND c.pull IS NOT NULL AND c.pull <> 'on_demand' ORDER BY t.name, c.name"
            );
            let rows = c.query(sql.as_str(), &[]).map_err(db)?;
            rows.iter().map(|r| Ok((r.get(8), r.get(9), connector_row(r).parse()?.0))).collect()
        })
    }

    fn was_pulled(
        &self,
        tenant: &str,
        connector: &str,
        remote_path: &str,
        size: u64,
        mtime: u32,
    ) -> Result<bool> {
        self.with(|c| {
            let tenant_id = tenant_id(c, tenant)?;
            let found = c
                .query_opt(
                    "SELECT 1 FROM pulled WHERE tenant_id = $1 AND connector = lower($2::text COLLATE \"C\")
                     AND remote_path = $3 AND size = $4 AND mtime = $5",
                    &[
                        &tenant_id,
                        &connector,
                        &remote_path,
                        &i64::try_from(size).unwrap_or(i64::MAX),
                        &i64::from(mtime),
                    ],
                )
                .map_err(db)?;
            Ok(found.is_some())
        })
    }

    fn record_pulled(
        &self,
        tenant: &str,
        connector: &str,
        remote_path: &str,
        size: u64,
        mtime: u32,
        sha256: &str,
    ) -> Result<()> {
        self.with(|c| {
            let tenant_id = tenant_id(c, tenant)?;
            // SQLite's INSERT OR REPLACE, in one statement: two nodes recording the same file
            // at once both succeed, the later one's hash and time kept.
            c.execute(
                "INSERT INTO pulled (tenant_id, connector, remote_path, size, mtime, sha256, at_ms)
                 VALUES ($1, lower($2::text COLLATE \"C\"), $3, $4, $5, $6, $7)
                 ON CONFLICT (tenant_id, connector, remote_path, size, mtime)
                 DO UPDATE SET sha256 = excluded.sha256, at_ms = excluded.at_ms",
                &[
                    &tenant_id,
                    &connector,
                    &remote_path,
                    &i64::try_from(size).unwrap_or(i64::MAX),
                    &i64::from(mtime),
                    &sha256,
                    &now_ms(),
                ],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn transfers(&self, tenant: &str, connector: Option<&str>, limit: usize) -> Result<Vec<Transfer>> {
        self.with(|c| {
            let tenant_id = tenant_id(c, tenant)?;
            let sql = format!(
                "SELECT {TRANSFER_COLUMNS} FROM connector_log
                 WHERE tenant_id = $1 AND ($2::text IS NULL OR lower(connector) = lower($2::text COLLATE \"C\"))
                 ORDER BY id DESC LIMIT $3"
            );
            let rows = c.query(sql.as_str(), &[&tenant_id, &connector, &bigint(limit)]).map_err(db)?;
            Ok(rows
                .iter()
                .map(|r| transfer_from_row((r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6))))
                .collect())
        })
    }
}
