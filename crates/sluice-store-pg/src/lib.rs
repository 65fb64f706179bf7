//! sluice's store on PostgreSQL (issue 16), behind the role traits of `sluice-store` and held
//! to the same conformance suite as the embedded SQLite store.
//!
//! Every role is here: [`Tenants`] (with SSH keys and settings),
//! [`sluice_store::Accounts`] (sessions, reset links, second factors), [`ApiKeys`], [`Bans`],
//! [`Audit`], [`Uploads`] and [`ImportQueue`] (claimed with `FOR UPDATE SKIP LOCKED`: nodes
//! claiming at once each get another event), [`sluice_store::Deliveries`] (the notifications'
//! queue and log), [`sluice_store::SavedExports`] (saved exports and their runs),
//! [`sluice_store::Connectors`] (connectors, their transfer log and the files pulled),
//! [`sluice_store::Imports`] with a loader of its own (rows staged by COPY, applied
//! set-based), [`sluice_store::Records`] and [`sluice_store::People`] (search, people,
//! deleting by hand), [`sluice_store::Photos`] (records' photos, a photo import applied in
//! one transaction) and [`sluice_store::Schedules`] (a due time taken once). The server opens
//! it when `[database] url` is set (`DataDirs::create_store`).
//!
//! Several nodes run on one database and one shared data directory: uploads are claimed,
//! deliveries are claimed, due times are taken once, and abandoned work (`release_leases`,
//! `remove_interrupted_imports`) is taken back per tenant by whoever holds the tenant's turn
//! (a lock file on the shared directory); a starting node fails only the export runs of
//! processes that ended (`fail_interrupted_runs` asks about each run's owner).
//!
//! Every statement is parameterised. The schema is migrated on connect, from any earlier
//! version, under an advisory lock, so that nodes starting together migrate once.

mod accounts;
mod connectors;
mod deliveries;
mod imports;
mod migrations;
pub mod moving_in;
mod photos;
mod records;
mod saved_exports;
mod schedules;

use postgres::{Client, NoTls, Row};
use sluice_core::audit::{Actor, ActorKind, AuditEntry, AuditFilter, AuditOutcome, NewAuditEntry};
use sluice_core::defender::{Ban, Happening};
use sluice_core::net::Source;
use sluice_core::{FolderName, PasswordHash, SettingsChange, Tenant, TenantName, UploadEvent};
use sluice_store::{
    ApiKey, ApiKeys, Audit, AuthorizedKey, Bans, DatabaseError, ImportQueue, KeyOwner, KeyScope, RawTenant,
    Result, StoreError, StoredUpload, TENANT_COLUMNS, Tenants, UPLOAD_SELECT, UploadRow, Uploads, now_ms,
    upload_from_row,
};
use std::mem::ManuallyDrop;
use std::sync::Mutex;
use std::time::Duration;

/// The store on one PostgreSQL database.
pub struct PgStore {
    /// Dropped by `Drop` (through [`blocking`]), not by the drop glue.
    client: Mutex<ManuallyDrop<Client>>,
    /// Where to connect again: each import's loader has a connection of its own.
    url: String,
}

/// Runs `f`, which waits for the database, wherever it is called from. The synchronous client
/// blocks on a runtime of its own, which tokio refuses on a thread of an async runtime: there
/// the thread steps out of the runtime first (its other tasks move to another thread), as
/// SQLite's calls simply block it. (The server's runtime has several threads; a caller on a
/// single-threaded runtime must use `spawn_blocking`.)
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        let client = self.client.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        // SAFETY: taken once, here, and never used again: `self` is being dropped.
        let client = unsafe { ManuallyDrop::take(client) };
        close(client);
    }
}

/// Closes a connection wherever the last reference goes (the server's runtime thread as it
/// ends, say): closing blocks on the client's own runtime, like every call.
pub(crate) fn close(client: Client) {
    blocking(move || drop(client));
}

/// A count (a page's limit or offset) as a parameter: `usize::MAX` (everything) is the
/// largest BIGINT, not -1 (which SQLite reads as no limit, and PostgreSQL refuses).
pub(crate) fn count_param(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A PostgreSQL failure as the store's callers see every database failure.
pub(crate) fn db(e: postgres::Error) -> StoreError {
    StoreError::Database(DatabaseError::other(PgError(e)))
}

/// A PostgreSQL failure that says what the server said (the driver's own text for a server
/// error is only "db error"): its message, code, detail and the constraint or table.
#[derive(Debug)]
struct PgError(postgres::Error);

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some(e) = self.0.as_db_error() else {
            // The driver's own text ("error connecting to server") and what it failed on.
            write!(f, "{}", self.0)?;
            let mut cause = std::error::Error::source(&self.0);
            while let Some(c) = cause {
                write!(f, ": {c}")?;
                cause = c.source();
            }
            return Ok(());
        };
        write!(f, "{} (PostgreSQL {})", e.message(), e.code().code())?;
        if let Some(detail) = e.detail() {
            write!(f, ": {detail}")?;
        }
        if let Some(c) = e.constraint() {
            write!(f, " [constraint {c}]")?;
        } else if let Some(t) = e.table() {
            write!(f, " [table {t}]")?;
        }
        Ok(())
    }
}

impl std::error::Error for PgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/database`, or key=value pairs) and brings
    /// the schema up to date.
    pub fn connect(url: &str) -> Result<Self> {
        blocking(|| Self::connect_here(url))
    }

    fn connect_here(url: &str) -> Result<Self> {
        let mut client = Client::connect(url, NoTls).map_err(db)?;
        // A row another node holds is waited for as long as SQLite waits for its write lock,
        // then the change fails instead of holding this node's connection forever.
        client.batch_execute("SET lock_timeout = '60s'").map_err(db)?;
        migrations::migrate(&mut client)?;
        Ok(Self { client: Mutex::new(ManuallyDrop::new(client)), url: url.to_owned() })
    }

    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut Client) -> Result<T>) -> Result<T> {
        blocking(|| {
            // A panic while the client was held leaves it usable: each call is its own
            // statement or transaction.
            let mut client = self.client.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut client)
        })
    }
}

fn raw_tenant(r: &Row) -> RawTenant {
    RawTenant {
        id: r.get(0),
        name: r.get(1),
        folders: r.get(2),
        disabled: r.get(3),
        password_hash: r.get(4),
        created_ms: r.get(5),
        trigger: r.get(6),
        schedule: r.get(7),
        timezone: r.get(8),
        type_triggers: r.get(9),
        safeguards: r.get(10),
        notify_emails: r.get(11),
        webhook_url: r.get(12),
        webhook_secret: r.get(13),
        read_settings: r.get(14),
        routing: r.get(15),
        type_schedules: r.get(16),
        settle_secs: r.get(17),
        blackouts: r.get(18),
    }
}

fn tenant_by_name(c: &mut impl postgres::GenericClient, name: &str, lock: bool) -> Result<Option<Tenant>> {
    let sql = format!(
        "SELECT {TENANT_COLUMNS} FROM tenants WHERE name = $1{}",
        // Not FOR UPDATE: a settings change keeps the key, so it must not wait for the
        // foreign-key checks (FOR KEY SHARE) of an import applying for the tenant meanwhile.
        if lock { " FOR NO KEY UPDATE" } else { "" }
    );
    let row = c.query_opt(sql.as_str(), &[&name]).map_err(db)?;
    row.as_ref().map(raw_tenant).map(RawTenant::parse).transpose()
}

pub(crate) fn tenant_id(c: &mut impl postgres::GenericClient, name: &str) -> Result<i64> {
    let row = c.query_opt("SELECT id FROM tenants WHERE name = $1", &[&name]).map_err(db)?;
    row.map(|r| r.get(0)).ok_or_else(|| StoreError::NoSuchTenant(name.to_owned()))
}

impl PgStore {
    fn update_tenant<T: postgres::types::ToSql + Sync>(
        &self,
        name: &TenantName,
        sql: &str,
        value: T,
    ) -> Result<()> {
        self.with(|c| match c.execute(sql, &[&name.as_str(), &value]).map_err(db)? {
            0 => Err(StoreError::NoSuchTenant(name.to_string())),
            _ => Ok(()),
        })
    }
}

impl Tenants for PgStore {
    fn add_tenant(&self, name: &TenantName, folders: &[FolderName]) -> Result<Tenant> {
        self.with(|c| {
            let inserted = c
                .execute(
                    "INSERT INTO tenants (name, folders, disabled, created_ms) VALUES ($1, $2, FALSE, $3)
                     ON CONFLICT (name) DO NOTHING",
                    &[&name.as_str(), &sluice_store::join_folders(folders), &now_ms()],
                )
                .map_err(db)?;
            if inserted == 0 {
                return Err(StoreError::TenantExists(name.to_string()));
            }
            tenant_by_name(c, name.as_str(), false)?.ok_or_else(|| StoreError::NoSuchTenant(name.to_string()))
        })
    }

    fn tenant(&self, name: &str) -> Result<Option<Tenant>> {
        self.with(|c| tenant_by_name(c, name, false))
    }

    fn require_tenant(&self, name: &str) -> Result<Tenant> {
        self.tenant(name)?.ok_or_else(|| StoreError::NoSuchTenant(name.to_owned()))
    }

    fn tenants(&self) -> Result<Vec<Tenant>> {
        self.with(|c| {
            let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants ORDER BY name");
            let rows = c.query(sql.as_str(), &[]).map_err(db)?;
            rows.iter().map(|r| raw_tenant(r).parse()).collect()
        })
    }

    fn set_disabled(&self, name: &TenantName, disabled: bool) -> Result<()> {
        self.update_tenant(name, "UPDATE tenants SET disabled = $2 WHERE name = $1", disabled)
    }

    fn remove_tenant(&self, name: &TenantName) -> Result<()> {
        self.with(|c| {
            let mut tx = c.transaction().map_err(db)?;
            // Locked first: an import applying for the tenant (which holds it `FOR KEY SHARE`)
            // commits before its rows are deleted, so none is left behind.
            let id: i64 = tx
                .query_opt("SELECT id FROM tenants WHERE name = $1 FOR UPDATE", &[&name.as_str()])
                .map_err(db)?
                .ok_or_else(|| StoreError::NoSuchTenant(name.to_string()))?
                .get(0);
            // The tables without a foreign key to tenants (migration 13); the rest cascade.
            for table in ["person_roles", "people", "record_search", "records"] {
                tx.execute(&format!("DELETE FROM {table} WHERE tenant_id = $1"), &[&id]).map_err(db)?;
            }
            tx.execute("DELETE FROM tenants WHERE id = $1", &[&id]).map_err(db)?;
            tx.commit().map_err(db)
        })
    }

    fn set_password(&self, name: &TenantName, hash: &PasswordHash) -> Result<()> {
        self.update_tenant(name, "UPDATE tenants SET password_hash = $2 WHERE name = $1", hash.as_phc())
    }

    fn change_settings(&self, name: &str, change: &SettingsChange) -> Result<Tenant> {
        self.with(|c| {
            // The row is locked from the read to the write: two changes at once (two nodes, two
            // people) apply one after the other, neither losing the other's.
            let mut tx = c.transaction().map_err(db)?;
            let mut t =
                tenant_by_name(&mut tx, name, true)?.ok_or_else(|| StoreError::NoSuchTenant(name.to_owned()))?;
            change.apply(&mut t)?;
            let row = RawTenant::settings_of(&t);
            tx.execute(
                "UPDATE tenants SET folders = $2, trigger = $3, schedule = $4, timezone = $5, type_triggers = $6,
                     safeguards = $7, read_settings = $8, notify_emails = $9, webhook_url = $10, webhook_secret = $11,
                     routing = $12, type_schedules = $13, settle_secs = $14, blackouts = $15
                 WHERE id = $1",
                &[
                    &t.id,
                    &row.folders,
                    &row.trigger,
                    &row.schedule,
                    &row.timezone,
                    &row.type_triggers,
                    &row.safeguards,
                    &row.read_settings,
                    &row.notify_emails,
                    &row.webhook_url,
                    &row.webhook_secret,
                    &row.routing,
                    &row.type_schedules,
                    &row.settle_secs,
                    &row.blackouts,
                ],
            )
            .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(t)
        })
    }

    fn add_key(&self, tenant: &TenantName, key: &AuthorizedKey) -> Result<()> {
        self.with(|c| {
            let id = tenant_id(c, tenant.as_str())?;
            let inserted = c
                .execute(
                    "INSERT INTO tenant_keys (tenant_id, algorithm, key_base64, comment, fingerprint, created_ms)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, key_base64) DO NOTHING",
                    &[&id, &key.algorithm, &key.key_base64, &key.comment, &key.fingerprint, &now_ms()],
                )
                .map_err(db)?;
            if inserted == 0 {
                return Err(StoreError::KeyExists { tenant: tenant.to_string(), fingerprint: key.fingerprint.clone() });
            }
            Ok(())
        })
    }

    fn remove_key(&self, tenant: &str, fingerprint: &str) -> Result<()> {
        self.with(|c| {
            let id = tenant_id(c, tenant)?;
            match c
                .execute(
                    "DELETE FROM tenant_keys WHERE tenant_id = $1 AND fingerprint = $2",
                    &[&id, &fingerprint],
                )
                .map_err(db)?
            {
                0 => Err(StoreError::NoSuchSshKey(fingerprint.to_owned())),
                _ => Ok(()),
            }
        })
    }

    fn keys(&self, tenant: &str) -> Result<Vec<AuthorizedKey>> {
        self.with(|c| {
            let rows = c
                .query(
                    "SELECT k.algorithm, k.key_base64, k.comment, k.fingerprint FROM tenant_keys k
                     JOIN tenants t ON t.id = k.tenant_id WHERE t.name = $1 ORDER BY k.id",
                    &[&tenant],
                )
                .map_err(db)?;
            Ok(rows
                .iter()
                .map(|r| AuthorizedKey {
                    algorithm: r.get(0),
                    key_base64: r.get(1),
                    comment: r.get(2),
                    fingerprint: r.get(3),
                })
                .collect())
        })
    }
}

/// The operator's keys have no tenant; a key of a tenant is listed with the tenant's name. A
/// key whose tenant row is gone (foreign keys bypassed by hand, `session_replication_role`)
/// matches nothing: it must never read as the operator's.
const KEY_SELECT: &str = "SELECT k.id, t.name, k.name, k.prefix, k.created_ms, k.revoked_ms, k.access, k.types
    FROM api_keys k LEFT JOIN tenants t ON t.id = k.tenant_id WHERE (k.tenant_id IS NULL OR t.id IS NOT NULL)";

fn api_key(r: &Row) -> ApiKey {
    let tenant: Option<String> = r.get(1);
    ApiKey {
        id: r.get(0),
        owner: tenant.map_or(KeyOwner::Operator, KeyOwner::Tenant),
        name: r.get(2),
        prefix: r.get(3),
        created_ms: r.get(4),
        revoked_ms: r.get(5),
        scope: KeyScope::from_columns(r.get(6), r.get(7)),
    }
}

impl ApiKeys for PgStore {
    fn add_api_key(
        &self,
        tenant: Option<&str>,
        name: &str,
        prefix: &str,
        sha256_hex: &str,
        scope: &KeyScope,
    ) -> Result<i64> {
        self.with(|c| {
            let tenant_id = tenant.map(|t| tenant_id(c, t)).transpose()?;
            let row = c
                .query_one(
                    "INSERT INTO api_keys (tenant_id, name, prefix, hash, created_ms, access, types)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                    &[
                        &tenant_id,
                        &name,
                        &prefix,
                        &sha256_hex,
                        &now_ms(),
                        &scope.access(),
                        &scope.types_column(),
                    ],
                )
                .map_err(db)?;
            Ok(row.get(0))
        })
    }

    fn api_key_by_hash(&self, sha256_hex: &str) -> Result<Option<ApiKey>> {
        self.with(|c| {
            let sql = format!("{KEY_SELECT} AND k.hash = $1 AND k.revoked_ms IS NULL");
            Ok(c.query_opt(sql.as_str(), &[&sha256_hex]).map_err(db)?.as_ref().map(api_key))
        })
    }

    fn api_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKey>> {
        self.with(|c| {
            let tenant_id = tenant.map(|t| tenant_id(c, t)).transpose()?;
            let sql = format!("{KEY_SELECT} AND k.tenant_id IS NOT DISTINCT FROM $1 ORDER BY k.id DESC");
            Ok(c.query(sql.as_str(), &[&tenant_id]).map_err(db)?.iter().map(api_key).collect())
        })
    }

    fn revoke_api_key(&self, id: i64, of: Option<&str>) -> Result<()> {
        self.with(|c| {
            match c
                .execute(
                    "UPDATE api_keys SET revoked_ms = $2 WHERE id = $1 AND revoked_ms IS NULL
                     AND ($3::text IS NULL OR tenant_id = (SELECT id FROM tenants WHERE name = $3))",
                    &[&id, &now_ms(), &of],
                )
                .map_err(db)?
            {
                0 => Err(StoreError::NoSuchKey(id)),
                _ => Ok(()),
            }
        })
    }
}

impl Bans for PgStore {
    fn save_ban(&self, ban: &Ban) -> Result<bool> {
        self.with(|c| {
            let written = c
                .execute(
                    "INSERT INTO bans (source, banned_until_ms, ban_count, reason, banned_at_ms) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (source) DO UPDATE SET banned_until_ms = excluded.banned_until_ms,
                        ban_count = excluded.ban_count, reason = excluded.reason, banned_at_ms = excluded.banned_at_ms
                     WHERE bans.banned_until_ms <= excluded.banned_at_ms",
                    &[&ban.source.to_string(), &ban.until_ms, &i64::from(ban.count), &ban.reason, &ban.at_ms],
                )
                .map_err(db)?;
            Ok(written > 0)
        })
    }

    fn bans(&self, after_ms: i64) -> Result<Vec<Ban>> {
        self.with(|c| {
            let rows = c
                .query(
                    "SELECT source, banned_until_ms, ban_count, reason, banned_at_ms FROM bans
                     WHERE banned_until_ms > $1 ORDER BY banned_until_ms DESC, source",
                    &[&after_ms],
                )
                .map_err(db)?;
            rows.iter()
                .map(|r| {
                    let corrupt = |what: String| StoreError::Corrupt(format!("bans.{what}"));
                    let source: Source =
                        r.get::<_, String>(0).parse().map_err(|e| corrupt(format!("source: {e}")))?;
                    let count = u32::try_from(r.get::<_, i64>(2)).map_err(|_| corrupt("ban_count".into()))?;
                    Ok(Ban { source, until_ms: r.get(1), count, reason: r.get(3), at_ms: r.get(4), score: 0 })
                })
                .collect()
        })
    }

    fn lift_ban(&self, source: &Source, now_ms: i64) -> Result<bool> {
        self.with(|c| {
            let lifted = c
                .query_opt(
                    "DELETE FROM bans WHERE source = $1 RETURNING banned_until_ms",
                    &[&source.to_string()],
                )
                .map_err(db)?;
            Ok(lifted.is_some_and(|r| r.get::<_, i64>(0) > now_ms))
        })
    }

    fn forget_bans(&self, until_ms: i64) -> Result<usize> {
        self.with(|c| {
            let n = c.execute("DELETE FROM bans WHERE banned_until_ms <= $1", &[&until_ms]).map_err(db)?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }

    fn bans_in_force(&self, now_ms: i64) -> Result<u64> {
        self.with(|c| {
            let n: i64 = c
                .query_one("SELECT count(*) FROM bans WHERE banned_until_ms > $1", &[&now_ms])
                .map_err(db)?
                .get(0);
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    fn share_happenings(&self, node: &str, happenings: &[Happening]) -> Result<()> {
        if happenings.is_empty() {
            return Ok(());
        }
        let (mut at, mut source, mut service, mut what, mut account, mut count) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for h in happenings {
            let (w, a) = h.what.as_parts();
            at.push(h.at_ms);
            source.push(h.source.to_string());
            service.push(h.service.as_str());
            what.push(w);
            account.push(a.map(sluice_store::storable));
            count.push(i64::from(h.count));
        }
        // One statement for the batch (a second's worth).
        self.with(|c| {
            c.execute(
                "INSERT INTO defender_happenings (node, at_ms, source, service, what, account, count)
                 SELECT $1, * FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[])",
                &[&node, &at, &source, &service, &what, &account, &count],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn happenings_after(
        &self,
        after: i64,
        node: &str,
        limit: usize,
    ) -> Result<Vec<(i64, Option<Happening>)>> {
        self.with(|c| {
            let rows = c
                .query(
                    "SELECT id, at_ms, source, service, what, account, count FROM defender_happenings
                     WHERE id > $1 AND node <> $2 ORDER BY id LIMIT $3",
                    &[&after, &node, &i64::try_from(limit).unwrap_or(i64::MAX)],
                )
                .map_err(db)?;
            Ok(rows
                .iter()
                .map(|r| {
                    let (source, service, what): (String, String, String) = (r.get(2), r.get(3), r.get(4));
                    (
                        r.get(0),
                        sluice_store::happening(r.get(1), &source, &service, &what, r.get(5), r.get(6)),
                    )
                })
                .collect())
        })
    }

    fn forget_happenings(&self, kept_ms: i64) -> Result<usize> {
        self.with(|c| {
            let n = c
                .execute(
                    "DELETE FROM defender_happenings
                     WHERE written_ms < (extract(epoch FROM clock_timestamp()) * 1000)::bigint - $1",
                    &[&kept_ms],
                )
                .map_err(db)?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }
}

impl Audit for PgStore {
    fn record_audit(&self, e: &NewAuditEntry<'_>) -> Result<i64> {
        self.with(|c| {
            let row = c
                .query_one(
                    "INSERT INTO audit_log (at_ms, tenant, actor_kind, actor, source, action, target, outcome, before, after)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
                    &[
                        &now_ms(),
                        &e.tenant,
                        &e.actor.kind.as_str(),
                        &e.actor.name,
                        &e.actor.source,
                        &e.action,
                        &e.target,
                        &e.outcome.as_str(),
                        &e.before,
                        &e.after,
                    ],
                )
                .map_err(db)?;
            Ok(row.get(0))
        })
    }

    fn audit_entries(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
        self.with(|c| {
            // A tenant's entries through its (tenant, id) index; the operator's through the
            // primary key. An action names itself or its family (`login` is `login.*` too).
            let by_tenant = if f.tenant.is_some() { "tenant = $1" } else { "$1::text IS NULL" };
            let sql = format!(
                "SELECT id, at_ms, tenant, actor_kind, actor, source, action, target, outcome, before, after
                 FROM audit_log WHERE {by_tenant} AND at_ms >= $2 AND id < $4
                 AND ($5::text IS NULL OR action = $5 OR left(action, length($5) + 1) = $5 || '.')
                 ORDER BY id DESC LIMIT $3"
            );
            let limit = i64::try_from(f.limit).unwrap_or(i64::MAX);
            let rows = c
                .query(
                    sql.as_str(),
                    &[
                        &f.tenant,
                        &f.since_ms.unwrap_or(0),
                        &limit,
                        &f.before_id.unwrap_or(i64::MAX),
                        &f.action,
                    ],
                )
                .map_err(db)?;
            rows.iter()
                .map(|r| {
                    let id: i64 = r.get(0);
                    let corrupt = |what: &str| StoreError::Corrupt(format!("audit entry {id}: {what}"));
                    Ok(AuditEntry {
                        id,
                        at_ms: r.get(1),
                        tenant: r.get(2),
                        actor: Actor {
                            kind: ActorKind::parse(r.get(3)).ok_or_else(|| corrupt("actor kind"))?,
                            name: r.get(4),
                            source: r.get(5),
                        },
                        action: r.get(6),
                        target: r.get(7),
                        outcome: AuditOutcome::parse(r.get(8)).ok_or_else(|| corrupt("outcome"))?,
                        before: r.get(9),
                        after: r.get(10),
                    })
                })
                .collect()
        })
    }

    fn purge_audit(&self, before_ms: i64) -> Result<usize> {
        self.with(|c| {
            let n = c.execute("DELETE FROM audit_log WHERE at_ms < $1", &[&before_ms]).map_err(db)?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }
}

fn upload_row(r: &Row) -> UploadRow {
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6), r.get(7), r.get(8))
}

fn upload_by_id(c: &mut Client, id: i64) -> Result<Option<StoredUpload>> {
    let sql = format!("{UPLOAD_SELECT} WHERE u.id = $1");
    let row = c.query_opt(sql.as_str(), &[&id]).map_err(db)?;
    row.as_ref().map(upload_row).map(upload_from_row).transpose()
}

impl PgStore {
    fn queue_upload(&self, event: &UploadEvent, requested: bool) -> Result<i64> {
        self.with(|c| {
            let size =
                i64::try_from(event.size).map_err(|_| StoreError::Misuse("an upload over 2^63 bytes"))?;
            let row = c
                .query_opt(
                    "INSERT INTO upload_events (tenant_id, path, size, sha256, at_ms, requested, snapshot)
                     SELECT id, $2, $3, $4, $5, $6, $7 FROM tenants WHERE name = $1 RETURNING id",
                    &[
                        &event.tenant.as_str(),
                        &event.path.to_string(),
                        &size,
                        &event.sha256.as_str(),
                        &event.at_ms,
                        &requested,
                        &event.snapshot.as_ref().map(|s| s.as_str()),
                    ],
                )
                .map_err(db)?;
            row.map(|r| r.get(0)).ok_or_else(|| StoreError::NoSuchTenant(event.tenant.to_string()))
        })
    }
}

impl Uploads for PgStore {
    fn record_upload(&self, event: &UploadEvent) -> Result<i64> {
        self.queue_upload(event, false)
    }

    fn request_import(&self, event: &UploadEvent) -> Result<i64> {
        self.queue_upload(event, true)
    }

    fn uploads(&self, tenant: &str) -> Result<Vec<StoredUpload>> {
        self.with(|c| {
            let sql = format!("{UPLOAD_SELECT} WHERE t.name = $1 ORDER BY u.id");
            c.query(sql.as_str(), &[&tenant])
                .map_err(db)?
                .iter()
                .map(|r| upload_from_row(upload_row(r)))
                .collect()
        })
    }
}

impl ImportQueue for PgStore {
    fn claim_upload(&self, lease: Duration, tenant: Option<&str>) -> Result<Option<StoredUpload>> {
        self.with(|c| {
            let now = now_ms();
            let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
            // The oldest event no one holds: a row another node is claiming this instant is
            // skipped, not waited for, and the lease is written in the same statement.
            let claimed = c
                .query_opt(
                    "UPDATE upload_events SET lease_until_ms = $2 WHERE id = (
                         SELECT id FROM upload_events WHERE consumed_ms IS NULL
                         AND (lease_until_ms IS NULL OR lease_until_ms < $1)
                         AND ($3::text IS NULL OR tenant_id = (SELECT id FROM tenants WHERE name = $3))
                         ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
                     RETURNING id",
                    &[&now, &until, &tenant],
                )
                .map_err(db)?;
            match claimed {
                Some(r) => upload_by_id(c, r.get(0)),
                None => Ok(None),
            }
        })
    }

    fn waiting_tenants(&self) -> Result<Vec<(String, i64)>> {
        self.with(|c| {
            let rows = c
                .query(
                    "SELECT t.name, MIN(u.id) AS oldest FROM upload_events u JOIN tenants t ON t.id = u.tenant_id
                     WHERE u.consumed_ms IS NULL AND (u.lease_until_ms IS NULL OR u.lease_until_ms < $1)
                     GROUP BY u.tenant_id, t.name ORDER BY oldest",
                    &[&now_ms()],
                )
                .map_err(db)?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn pending_uploads(&self) -> Result<u64> {
        self.with(|c| {
            let n: i64 = c
                .query_one("SELECT COUNT(*) FROM upload_events WHERE consumed_ms IS NULL", &[])
                .map_err(db)?
                .get(0);
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    fn last_upload_ms(&self, tenant: &str) -> Result<Option<i64>> {
        self.with(|c| {
            Ok(c.query_one(
                "SELECT MAX(e.at_ms) FROM upload_events e JOIN tenants t ON t.id = e.tenant_id
                 WHERE t.name = $1 AND NOT e.requested",
                &[&tenant],
            )
            .map_err(db)?
            .get(0))
        })
    }

    fn upload_consumed(&self, id: i64) -> Result<bool> {
        self.with(|c| {
            let row = c
                .query_opt("SELECT consumed_ms IS NOT NULL FROM upload_events WHERE id = $1", &[&id])
                .map_err(db)?;
            Ok(row.is_none_or(|r| r.get(0)))
        })
    }

    fn snapshots_in_use(&self) -> Result<Vec<sluice_core::SnapshotName>> {
        self.with(|c| {
            let rows = c
                .query(
                    "SELECT snapshot FROM upload_events WHERE consumed_ms IS NULL AND snapshot IS NOT NULL",
                    &[],
                )
                .map_err(db)?;
            rows.iter().map(|r| sluice_store::snapshot_from_row(r.get(0))).collect()
        })
    }

    fn retried_upload(&self, upload: &StoredUpload, since_ms: i64) -> Result<Option<i64>> {
        if upload.requested {
            return Ok(None);
        }
        self.with(|c| {
            let latest = c
                .query_opt(
                    "SELECT o.id, o.sha256 = $3 AND o.at_ms >= $4
                        AND (o.consumed_ms IS NULL
                             OR (i.id IS NOT NULL AND i.status NOT IN ('failed', 'discarded')
                                 AND NOT EXISTS (SELECT 1 FROM imports j
                                     WHERE j.tenant_id = i.tenant_id AND j.type = i.type AND j.id > i.id)
                                 AND NOT EXISTS (SELECT 1 FROM deleted_records d
                                     WHERE d.tenant_id = o.tenant_id AND d.deleted_ms >= o.at_ms)))
                     FROM upload_events u
                     JOIN upload_events o ON o.id = COALESCE(u.duplicate_of, u.id)
                     LEFT JOIN imports i ON i.id = o.import_id
                     WHERE u.tenant_id = (SELECT tenant_id FROM upload_events WHERE id = $1)
                       AND u.path = $2 AND u.id < $1
                     ORDER BY u.id DESC LIMIT 1",
                    &[&upload.id, &upload.event.path.to_string(), &upload.event.sha256.as_str(), &since_ms],
                )
                .map_err(db)?;
            Ok(latest.and_then(|r| r.get::<_, bool>(1).then(|| r.get(0))))
        })
    }

    fn consume_as_duplicate(&self, id: i64, original: i64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE upload_events SET consumed_ms = $2, duplicate_of = $3 WHERE id = $1",
                &[&id, &now_ms(), &original],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn consume_upload(&self, id: i64, import_id: Option<i64>) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE upload_events SET consumed_ms = $2, import_id = $3 WHERE id = $1",
                &[&id, &now_ms(), &import_id],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn tenants_at_work(&self) -> Result<Vec<String>> {
        self.with(|c| {
            let rows = c
                .query(
                    "SELECT t.name FROM tenants t
                     WHERE EXISTS (SELECT 1 FROM imports i WHERE i.tenant_id = t.id AND i.status = 'running')
                     ORDER BY t.name COLLATE \"C\"",
                    &[],
                )
                .map_err(db)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn release_leases(&self, tenant: &str, keep: Option<i64>) -> Result<usize> {
        self.with(|c| {
            let n = c
                .execute(
                    "UPDATE upload_events SET lease_until_ms = NULL WHERE consumed_ms IS NULL AND lease_until_ms IS NOT NULL
                     AND tenant_id = (SELECT id FROM tenants WHERE name = $1) AND ($2::bigint IS NULL OR id <> $2)",
                    &[&tenant, &keep],
                )
                .map_err(db)?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }

    fn remove_interrupted_imports(&self, tenant: &str) -> Result<usize> {
        self.with(|c| {
            let n = c
                .execute(
                    "DELETE FROM imports WHERE status = 'running' AND tenant_id = (SELECT id FROM tenants WHERE name = $1)",
                    &[&tenant],
                )
                .map_err(db)?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }
}

#[cfg(test)]
mod tests;

/// How many migrations this build knows (for the tests).
#[cfg(test)]
fn migrations_known() -> i64 {
    migrations::known()
}
