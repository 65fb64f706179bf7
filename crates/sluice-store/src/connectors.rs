//! Connectors (a tenant's own SFTP servers, by name): where, how they log in (the sealed
//! credential, opened only by `sluice_connect`), the pinned host key; and the log of every
//! transfer attempt.

use crate::{Result, Store, StoreError, now_ms};
use rusqlite::{OptionalExtension, params};
use sluice_core::connector::{AfterPull, AuthKind, Connector, ConnectorName, HostKey, Pull, SftpAddress};
use sluice_core::schedule::Cron;

/// A connector's columns, in [`ConnectorRow`]'s order, of `connectors c` (every backend's
/// table has them).
pub const CONNECTOR_COLUMNS: &str =
    "c.name, c.address, c.auth, c.host_key, c.rename, c.secret, c.pull, c.after_pull";
const FROM: &str = "FROM connectors c JOIN tenants t ON t.id = c.tenant_id";

/// A connector as every backend stores it (the columns of [`CONNECTOR_COLUMNS`], in order):
/// written from a [`Connector`] and its sealed credential by [`ConnectorRow::of`], read back by
/// [`ConnectorRow::parse`].
#[derive(Debug, Clone)]
pub struct ConnectorRow {
    pub name: String,
    pub address: String,
    pub auth: String,
    pub host_key: Option<String>,
    pub rename: bool,
    /// The sealed credential.
    pub secret: String,
    /// `None`: it does not pull; `on_demand`, or its cron schedule.
    pub pull: Option<String>,
    /// What happens to a pulled remote file (`keep`, `remove`, `move:DIR`).
    pub after_pull: Option<String>,
}

impl ConnectorRow {
    /// The row that stores `connector` with its sealed credential.
    pub fn of(connector: &Connector, sealed: &str) -> Self {
        ConnectorRow {
            name: connector.name.as_str().to_owned(),
            address: connector.address.to_string(),
            auth: connector.auth.as_str().to_owned(),
            host_key: connector.host_key.as_ref().map(HostKey::to_string),
            rename: connector.rename,
            secret: sealed.to_owned(),
            pull: connector
                .pull
                .as_ref()
                .map(|p| p.schedule.as_ref().map_or("on_demand".to_owned(), |s| s.to_string())),
            after_pull: connector.pull.as_ref().map(|p| p.after.as_text()),
        }
    }

    /// The connector this row holds and its sealed credential; a value no sluice writes is
    /// [`StoreError::Corrupt`].
    pub fn parse(self) -> Result<(Connector, String)> {
        let ConnectorRow { name, address, auth, host_key, rename, secret, pull, after_pull } = self;
        let parsed = (|| {
            Ok(Connector {
                name: ConnectorName::parse(&name).map_err(|e| e.to_string())?,
                address: SftpAddress::parse(&address).map_err(|e| e.to_string())?,
                auth: AuthKind::parse(&auth).ok_or_else(|| format!("connector auth {auth:?}"))?,
                host_key: host_key.map(|k| HostKey::parse(&k)).transpose().map_err(|e| e.to_string())?,
                rename,
                pull: match pull {
                    None => None,
                    Some(when) => Some(Pull {
                        schedule: (when != "on_demand")
                            .then(|| Cron::parse(&when))
                            .transpose()
                            .map_err(|e| e.to_string())?,
                        after: AfterPull::parse(after_pull.as_deref().unwrap_or("keep"))?,
                    }),
                },
            })
        })();
        parsed.map(|c| (c, secret)).map_err(StoreError::Corrupt)
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConnectorRow> {
    Ok(ConnectorRow {
        name: r.get(0)?,
        address: r.get(1)?,
        auth: r.get(2)?,
        host_key: r.get(3)?,
        rename: r.get(4)?,
        secret: r.get(5)?,
        pull: r.get(6)?,
        after_pull: r.get(7)?,
    })
}

/// One transfer attempt, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub id: i64,
    pub connector: String,
    pub at_ms: i64,
    /// `push` or `pull`.
    pub direction: String,
    pub file: String,
    /// Bytes moved (a successful attempt).
    pub bytes: Option<u64>,
    /// Why the attempt failed.
    pub error: Option<String>,
}

/// A transfer's columns of `connector_log`, in [`TransferRow`]'s order.
pub const TRANSFER_COLUMNS: &str = "id, connector, at_ms, direction, file, bytes, error";

/// A transfer as every backend logs it (the columns of [`TRANSFER_COLUMNS`]): (id, connector,
/// at_ms, direction, file, bytes, error), read by [`transfer_from_row`].
pub type TransferRow = (i64, String, i64, String, String, Option<i64>, Option<String>);

/// The transfer a row of the log holds.
pub fn transfer_from_row((id, connector, at_ms, direction, file, bytes, error): TransferRow) -> Transfer {
    Transfer { id, connector, at_ms, direction, file, bytes: bytes.map(|b| b.max(0) as u64), error }
}

impl crate::roles::Connectors for Store {
    fn save_connector(&self, tenant: &str, connector: &Connector, sealed: &str, replace: bool) -> Result<()> {
        self.with_write(|c| {
            let row = ConnectorRow::of(connector, sealed);
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let tenant_id = crate::tenant_id(&tx, tenant)?;
            let existing: Option<String> = tx
                .query_row(
                    "SELECT name FROM connectors WHERE tenant_id = ?1 AND lower(name) = lower(?2)",
                    params![tenant_id, connector.name.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(name) = &existing {
                if !replace {
                    return Err(StoreError::ConnectorExists(name.clone()));
                }
                tx.execute(
                    "DELETE FROM connectors WHERE tenant_id = ?1 AND name = ?2",
                    params![tenant_id, name],
                )?;
            }
            tx.execute(
                "INSERT INTO connectors (tenant_id, name, address, auth, secret, host_key, rename, created_ms, pull,
                 after_pull) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    tenant_id,
                    row.name,
                    row.address,
                    row.auth,
                    row.secret,
                    row.host_key,
                    row.rename,
                    now_ms(),
                    row.pull,
                    row.after_pull
                ],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn connector(&self, tenant: &str, name: &str) -> Result<Option<(Connector, String)>> {
        self.with(|c| {
            let tenant_id = crate::tenant_id(c, tenant)?;
            let found = c
                .query_row(
                    &format!("SELECT {CONNECTOR_COLUMNS} {FROM} WHERE c.tenant_id = ?1 AND lower(c.name) = lower(?2)"),
                    params![tenant_id, name],
                    row,
                )
                .optional()?;
            found.map(ConnectorRow::parse).transpose()
        })
    }

    fn connectors(&self, tenant: &str) -> Result<Vec<Connector>> {
        self.with(|c| {
            let tenant_id = crate::tenant_id(c, tenant)?;
            let mut stmt = c.prepare(&format!(
                "SELECT {CONNECTOR_COLUMNS} {FROM} WHERE c.tenant_id = ?1 ORDER BY c.name"
            ))?;
            let mut out = Vec::new();
            for r in stmt.query_map([tenant_id], row)? {
                out.push(r?.parse()?.0);
            }
            Ok(out)
        })
    }

    fn any_connectors(&self) -> Result<bool> {
        self.with(|c| Ok(c.query_row("SELECT EXISTS (SELECT 1 FROM connectors)", [], |r| r.get(0))?))
    }

    fn pin_host_key(&self, tenant: &str, name: &str, key: &HostKey) -> Result<()> {
        self.with(|c| {
            let tenant_id = crate::tenant_id(c, tenant)?;
            let n = c.execute(
                "UPDATE connectors SET host_key = ?3 WHERE tenant_id = ?1 AND lower(name) = lower(?2)",
                params![tenant_id, name, key.to_string()],
            )?;
            if n == 0 {
                return Err(StoreError::NoSuchConnector(name.to_owned()));
            }
            Ok(())
        })
    }

    fn remove_connector(&self, tenant: &str, name: &str) -> Result<()> {
        self.with_write(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let tenant_id = crate::tenant_id(&tx, tenant)?;
            let user: Option<String> = tx
                .query_row(
                    "SELECT name FROM saved_exports WHERE tenant_id = ?1 AND lower(push_to) = lower(?2) ORDER BY name",
                    params![tenant_id, name],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(export) = user {
                return Err(StoreError::ConnectorInUse { connector: name.to_owned(), export });
            }
            let n = tx.execute(
                "DELETE FROM connectors WHERE tenant_id = ?1 AND lower(name) = lower(?2)",
                params![tenant_id, name],
            )?;
            if n == 0 {
                return Err(StoreError::NoSuchConnector(name.to_owned()));
            }
            tx.commit()?;
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
            let tenant_id = crate::tenant_id(c, tenant)?;
            let (bytes, error) = match outcome {
                Ok(b) => (Some(b as i64), None),
                Err(e) => (None, Some(e)),
            };
            c.execute(
                "INSERT INTO connector_log (tenant_id, connector, at_ms, direction, file, bytes, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![tenant_id, connector, now_ms(), direction, file, bytes, error],
            )?;
            Ok(())
        })
    }

    fn pulling_connectors(&self) -> Result<Vec<(String, String, Connector)>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {CONNECTOR_COLUMNS}, t.name, t.timezone {FROM}
                 WHERE t.disabled = 0 AND c.pull IS NOT NULL AND c.pull <> 'on_demand' ORDER BY t.name, c.name"
            ))?;
            let mut out = Vec::new();
            let rows = stmt.query_map([], |r| Ok((row(r)?, r.get::<_, String>(8)?, r.get::<_, String>(9)?)))?;
            for r in rows {
                let (connector, tenant, tz) = r?;
                out.push((tenant, tz, connector.parse()?.0));
            }
            Ok(out)
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
            let tenant_id = crate::tenant_id(c, tenant)?;
            Ok(c.query_row(
                "SELECT 1 FROM pulled WHERE tenant_id = ?1 AND connector = lower(?2) AND remote_path = ?3
                 AND size = ?4 AND mtime = ?5",
                params![tenant_id, connector, remote_path, size as i64, mtime],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
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
            let tenant_id = crate::tenant_id(c, tenant)?;
            c.execute(
                "INSERT OR REPLACE INTO pulled (tenant_id, connector, remote_path, size, mtime, sha256, at_ms)
                 VALUES (?1, lower(?2), ?3, ?4, ?5, ?6, ?7)",
                params![tenant_id, connector, remote_path, size as i64, mtime, sha256, now_ms()],
            )?;
            Ok(())
        })
    }

    fn transfers(&self, tenant: &str, connector: Option<&str>, limit: usize) -> Result<Vec<Transfer>> {
        self.with(|c| {
            let tenant_id = crate::tenant_id(c, tenant)?;
            let mut stmt = c.prepare(&format!(
                "SELECT {TRANSFER_COLUMNS} FROM connector_log
                 WHERE tenant_id = ?1 AND (?2 IS NULL OR lower(connector) = lower(?2)) ORDER BY id DESC LIMIT ?3"
            ))?;
            let rows = stmt
                .query_map(params![tenant_id, connector, limit as i64], |r| {
                    Ok(transfer_from_row((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    )))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }
}
