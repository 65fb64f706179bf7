//! API keys: bearer tokens for the REST API, one tenant's or the operator's. Only a SHA-256
//! of each token is stored. The tokens are 256 random bits, so a fast hash is as safe as a
//! slow one (nothing to guess), and checking a request costs microseconds, not the 19 MiB and
//! tens of milliseconds of argon2id that passwords need.

use crate::{ApiKey, KeyOwner};
use crate::{Result, Store, StoreError, now_ms};
use rusqlite::{OptionalExtension, params};

/// The operator's keys have no tenant. A key whose tenant row is gone (deleted by hand, with
/// foreign keys off) matches nothing: it must never read as the operator's.
const KEY_SELECT: &str = "SELECT k.id, t.name, k.name, k.prefix, k.created_ms, k.revoked_ms, k.access, k.types
    FROM api_keys k LEFT JOIN tenants t ON t.id = k.tenant_id WHERE (k.tenant_id IS NULL OR t.id IS NOT NULL)";

fn key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKey> {
    let tenant: Option<String> = r.get(1)?;
    Ok(ApiKey {
        id: r.get(0)?,
        owner: tenant.map_or(KeyOwner::Operator, KeyOwner::Tenant),
        name: r.get(2)?,
        prefix: r.get(3)?,
        created_ms: r.get(4)?,
        revoked_ms: r.get(5)?,
        scope: crate::KeyScope::from_columns(&r.get::<_, String>(6)?, &r.get::<_, String>(7)?),
    })
}

impl crate::roles::ApiKeys for Store {
    fn add_api_key(
        &self,
        tenant: Option<&str>,
        name: &str,
        prefix: &str,
        sha256_hex: &str,
        scope: &crate::KeyScope,
    ) -> Result<i64> {
        self.with(|c| {
            let tenant_id = tenant.map(|t| crate::tenant_id(c, t)).transpose()?;
            c.execute(
                "INSERT INTO api_keys (tenant_id, name, prefix, hash, created_ms, access, types)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![tenant_id, name, prefix, sha256_hex, now_ms(), scope.access(), scope.types_column()],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    fn api_key_by_hash(&self, sha256_hex: &str) -> Result<Option<ApiKey>> {
        self.with(|c| {
            Ok(c.query_row(
                &format!("{KEY_SELECT} AND k.hash = ?1 AND k.revoked_ms IS NULL"),
                [sha256_hex],
                key_row,
            )
            .optional()?)
        })
    }

    fn api_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKey>> {
        self.with(|c| {
            let tenant_id = tenant.map(|t| crate::tenant_id(c, t)).transpose()?;
            let mut stmt = c.prepare(&format!("{KEY_SELECT} AND k.tenant_id IS ?1 ORDER BY k.id DESC"))?;
            let rows = stmt.query_map([tenant_id], key_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    fn revoke_api_key(&self, id: i64, of: Option<&str>) -> Result<()> {
        self.with(|c| {
            match c.execute(
                "UPDATE api_keys SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL
                 AND (?3 IS NULL OR tenant_id = (SELECT id FROM tenants WHERE name = ?3))",
                params![id, now_ms(), of],
            )? {
                0 => Err(StoreError::NoSuchKey(id)),
                _ => Ok(()),
            }
        })
    }
}
