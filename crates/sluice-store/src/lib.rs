//! Persistence of sluice: tenants, their SSH credentials and the upload events that feed the
//! import pipeline. SQLite (embedded) through rusqlite; every statement is parameterised.
//!
//! The store is synchronous; async callers run it on a blocking thread. One connection
//! guarded by a mutex is enough: SQLite serialises writers anyway, and WAL lets the CLI read
//! while the server runs.

mod accounts;
mod api_keys;
mod audit;
mod bans;
pub mod conformance;
mod connectors;
mod deliveries;
pub mod dump;
mod imports;
mod migrations;
mod people;
mod photos;
mod records;
mod referrers;
pub mod roles;
mod saved_exports;
mod schedules;
pub use schedules::UNFINISHED_KEPT_MS;

// Domain records live in core; re-exported here for the store's callers.
pub use bans::{happening, storable};
pub use connectors::{
    CONNECTOR_COLUMNS, ConnectorRow, TRANSFER_COLUMNS, Transfer, TransferRow, transfer_from_row,
};
pub use deliveries::{DELIVERY_SELECT, DeliveryRow, delivery_targets};
pub use imports::{Loader, Outcome, STORED_ERRORS, StageKind};
// What every backend's imports share (row codec, rules, wording); used by sluice-store-pg.
pub use imports::{
    IMPORT_SELECT, ImportRow, ONEROSTER, people_of, sample_entry, search_paths, superseded_warning,
    supersedes, warnings_from_json, warnings_to_json,
};
pub use people::{MAX_SEPARATE_WARNINGS, PersonPaths, more_separate, separate_warning};
pub use people::{Person, PersonRole};
pub use photos::{PHOTO_COLUMNS, PhotoRow, photo_from_row};
pub use records::{
    Deletion, FoundRecords, RecordQuery, RecordSort, Referring, Relaid, SearchPaths, Settling, StoredRecord,
    Tombstone, changes, fold, refuse_drops, relaid_batch, search_words,
};
pub use records::{MAX_READDED, held_deletion, more_readded, prefix_end, readded_warning, referred_value};
pub use records::{key_needs_row, key_ranges};
pub use referrers::Referrer;
pub use roles::{
    Accounts, ApiKeys, Audit, Backend, Bans, Connectors, Deliveries, Emptied, ImportQueue, Imports, Loading,
    People, Photos, Records, Referrers, SavedExports, Schedules, SharedStore, Tenants, Uploads,
};
pub use saved_exports::{
    APPLIED_STATUSES, EXPORT_RUN_SELECT, ExportRunRow, INTERRUPTED_RUN, SAVED_EXPORT_COLUMNS, SavedExportRow,
};
pub use sluice_core::access::{Account, ApiKey, AuthorizedKey, KeyOwner, KeyScope, Role, SecondFactor};
pub use sluice_core::delivery::{Channel, Delivery};
pub use sluice_core::history::{Counts, ImportRecord, ImportStatus, StoredError};

use rusqlite::{Connection, OptionalExtension, params};
use sluice_core::import::{ReadSetting, SafeguardSetting};
use sluice_core::{
    FolderName, PasswordHash, SettingsChange, Sha256Hex, Tenant, TenantName, TreeLayout, Trigger,
    UploadEvent, VirtualPath,
};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed; what it said, without its driver's types (the store's callers
    /// do not know which database is behind it).
    #[error("database error: {0}")]
    Database(DatabaseError),
    #[error("no tenant named {0:?}; `sluice tenant list` shows the tenants")]
    NoSuchTenant(String),
    #[error("a tenant named {0:?} already exists")]
    TenantExists(String),
    #[error("tenant {tenant:?} already has the key {fingerprint}")]
    KeyExists { tenant: String, fingerprint: String },
    #[error("the database holds a value sluice cannot read ({0}); was it edited by hand?")]
    Corrupt(String),
    #[error("import {0} is not held: only a held import can be approved or discarded")]
    NotHeld(i64),
    #[error(
        "import {id} is superseded by import {by}, a newer file of the same type that was applied after it was held; \
         approving it would put its older data over that newer data. Its file is kept for download; upload it \
         again if it is still meant"
    )]
    Superseded { id: i64, by: i64 },
    #[error("no live API key {0}; `sluice apikey list` shows them")]
    NoSuchKey(i64),
    #[error("the tenant has no SSH key {0}")]
    NoSuchSshKey(String),
    #[error("the tenant already has an export named {0:?}; `sluice export list` shows them")]
    ExportExists(String),
    #[error("the tenant has no export named {0:?}; `sluice export list` shows them")]
    NoSuchExport(String),
    #[error("the tenant already has a connector named {0:?}; `sluice connector list` shows them")]
    ConnectorExists(String),
    #[error("the tenant has no connector named {0:?}; `sluice connector list` shows them")]
    NoSuchConnector(String),
    #[error(
        "connector {connector:?} is used by the saved export {export:?}: remove that export (or save it without --to) first"
    )]
    ConnectorInUse { connector: String, export: String },
    #[error("an account {0:?} already exists")]
    AccountExists(String),
    #[error("no account {0:?}; `sluice user list` shows them")]
    NoSuchAccount(String),
    #[error("the tenant has no record {key:?} of type {type_name}")]
    NoSuchRecord { type_name: String, key: String },
    /// A deletion by hand refused because records refer to what it deletes, and their
    /// reference holds such deletions for a decision (`on_delete = "hold"`): nothing changed.
    #[error(
        "not deleted: {0}, through a reference that holds deletions for a decision (on_delete = \"hold\"); \
         deleting anyway keeps them as they are, naming a record that is gone"
    )]
    Referred(String),
    /// A settings change that was refused: nothing was changed.
    #[error(transparent)]
    Refused(#[from] sluice_core::SettingsError),
    /// An import's upload was consumed by another import meanwhile (a node that claimed it
    /// after this one's lease ran out): this import applied nothing; the upload was imported once.
    #[error(
        "upload event {0} was imported meanwhile by another worker (this one's lease on it ran out); \
         this import changed nothing"
    )]
    AlreadyConsumed(i64),
    #[error("the database was written by a newer sluice (schema {found}, this build knows {known})")]
    TooNew { found: i64, known: i64 },
    /// A caller asked the store for something it does not do (a bug in sluice, not in data).
    #[error("the store was used wrongly: {0}")]
    Misuse(&'static str),
    /// `sluice migrate` refused to move a state into this database; why, and what to do.
    #[error("{0}")]
    MoveRefused(String),
    /// A type's records cannot be brought to its columns here ([`Records::settle_layouts`]);
    /// why, and what to do.
    #[error("{0}")]
    LayoutRefused(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A database failure, opaque outside the store: SQLite's, or another backend's (an adapter
/// in a crate of its own wraps its driver's errors with [`DatabaseError::other`]).
#[derive(Debug)]
pub struct DatabaseError(Driver);

#[derive(Debug)]
enum Driver {
    Sqlite(rusqlite::Error),
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl std::fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Driver::Sqlite(e) => e.fmt(f),
            Driver::Other(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for DatabaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            Driver::Sqlite(e) => e.source(),
            Driver::Other(e) => e.source(),
        }
    }
}

impl DatabaseError {
    /// Another backend's failure.
    pub fn other(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        DatabaseError(Driver::Other(Box::new(e)))
    }

    /// Another connection holds SQLite's write lock.
    fn is_busy(&self) -> bool {
        matches!(&self.0, Driver::Sqlite(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy))
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(DatabaseError(Driver::Sqlite(e)))
    }
}

#[derive(Debug, Clone)]
pub struct StoredUpload {
    pub id: i64,
    pub event: UploadEvent,
    /// Queued by a sync ("Sync now", `sluice sync`, a schedule) rather than by an upload:
    /// imported whatever the tenant's trigger. The intent lives in the queue, not in the
    /// process that happens to claim the event.
    pub requested: bool,
    /// Not imported: a client's retry of this earlier upload (the same bytes, moments later).
    pub duplicate_of: Option<i64>,
}

pub struct Store {
    conn: Mutex<Connection>,
    /// The database file; imports open connections of their own to it.
    path: Option<std::path::PathBuf>,
}

// SQLite's store is a whole backend: what `sluice serve` opens and shares as a `SharedStore`.
const _: fn() = || {
    fn backend<T: Backend>() {}
    backend::<Store>();
};

/// How long a write waits for the write lock (long enough to wait out a large import's
/// apply; see ARCHITECTURE.md, "Write-lock time").
const WRITE_WAIT: Duration = Duration::from_secs(60);

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_millis() as i64
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        Self::setup(conn, Some(path.to_path_buf()))
    }

    pub fn open_in_memory() -> Result<Self> {
        Self::setup(Connection::open_in_memory()?, None)
    }

    fn setup(conn: Connection, path: Option<std::path::PathBuf>) -> Result<Self> {
        // Long enough to wait out a large import's apply (which holds the write lock) rather
        // than fail an upload; see ARCHITECTURE.md, "Write-lock time".
        conn.busy_timeout(WRITE_WAIT)?;
        // WAL: readers never block the writer. NORMAL: a committed transaction survives a
        // process crash; only an OS crash can lose the last few, like the uploaded files
        // themselves (which are not fsynced unless the client asks).
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        records::register_functions(&conn)?;
        migrations::migrate(&conn)?;
        Ok(Self { conn: Mutex::new(conn), path })
    }

    /// For a short write that someone is waiting on (an upload's record, a login's session,
    /// an import worker's bookkeeping): waits for the write lock, which a large import holds
    /// while it applies, in short tries, and lets go of the store between them, so that everything else the store serves
    /// (logins, key lookups, pages) goes on meanwhile. `f` may run more than once.
    pub(crate) fn with_write<T>(&self, mut f: impl FnMut(&mut Connection) -> Result<T>) -> Result<T> {
        let deadline = std::time::Instant::now() + WRITE_WAIT;
        loop {
            let outcome = self.with(|c| {
                c.busy_timeout(Duration::from_millis(100))?;
                let outcome = f(c);
                c.busy_timeout(WRITE_WAIT)?;
                outcome
            });
            match outcome {
                Err(StoreError::Database(e)) if e.is_busy() && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        // A panic while holding the lock cannot leave a half-applied transaction (rusqlite
        // rolls back on drop), so a poisoned lock is safe to reuse.
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn)
    }

    fn update_tenant(&self, name: &TenantName, sql: &str, value: impl rusqlite::ToSql) -> Result<()> {
        self.with(|c| match c.execute(sql, params![name.as_str(), value])? {
            0 => Err(StoreError::NoSuchTenant(name.to_string())),
            _ => Ok(()),
        })
    }

    fn queue_upload(&self, event: &UploadEvent, requested: bool) -> Result<i64> {
        self.with_write(|c| {
            // Runs once per uploaded file, on the upload's critical path: one cached statement.
            let mut stmt = c.prepare_cached(
                "INSERT INTO upload_events (tenant_id, path, size, sha256, at_ms, requested, snapshot)
                 SELECT id, ?2, ?3, ?4, ?5, ?6, ?7 FROM tenants WHERE name = ?1",
            )?;
            let inserted = stmt.execute(params![
                event.tenant.as_str(),
                event.path.to_string(),
                event.size as i64,
                event.sha256.as_str(),
                event.at_ms,
                requested,
                event.snapshot.as_ref().map(|s| s.as_str())
            ])?;
            if inserted == 0 {
                return Err(StoreError::NoSuchTenant(event.tenant.to_string()));
            }
            Ok(c.last_insert_rowid())
        })
    }

    pub fn integrity_check(&self) -> Result<String> {
        self.with(|c| Ok(c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?))
    }

    /// A consistent copy of the whole database at `path` (which must not exist), taken while
    /// others read and write: SQLite's `VACUUM INTO` (one read transaction; compact).
    pub fn snapshot_to(&self, path: &std::path::Path) -> Result<()> {
        let target =
            path.to_str().ok_or_else(|| StoreError::Corrupt(format!("{} is not UTF-8", path.display())))?;
        self.with(|c| {
            c.execute("VACUUM INTO ?1", [target])?;
            Ok(())
        })
    }

    /// Points the files imports keep (a held import's file, an error report) at `data_dir`:
    /// after a restore into another data directory, each by its file name under
    /// `spool/held/` and `reports/`. Returns how many were changed.
    pub fn rebase_kept_files(&self, data_dir: &std::path::Path) -> Result<usize> {
        self.with(|c| {
            let tx = c.transaction()?;
            let rows: Vec<(i64, Option<String>, Option<String>)> = {
                let mut stmt = tx.prepare(
                    "SELECT id, held_file, report_file FROM imports WHERE held_file IS NOT NULL OR report_file IS NOT NULL",
                )?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let moved = |kept: &Option<String>, under: &std::path::Path| -> Option<String> {
                let name = std::path::Path::new(kept.as_ref()?).file_name()?;
                Some(under.join(name).display().to_string())
            };
            let (held, reports) = (data_dir.join("spool").join("held"), data_dir.join("reports"));
            for (id, held_file, report_file) in &rows {
                tx.execute(
                    "UPDATE imports SET held_file = ?2, report_file = ?3 WHERE id = ?1",
                    params![id, moved(held_file, &held), moved(report_file, &reports)],
                )?;
            }
            tx.commit()?;
            Ok(rows.len())
        })
    }

    /// What a backup says it holds, to check a restore against: tenants, records, accounts,
    /// imports, audit entries.
    pub fn counts(&self) -> Result<std::collections::BTreeMap<String, i64>> {
        self.with(|c| {
            let mut out = std::collections::BTreeMap::new();
            for table in ["tenants", "records", "users", "imports", "audit_log"] {
                let n: i64 = c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
                out.insert(table.to_owned(), n);
            }
            Ok(out)
        })
    }
}

/// An upload event with its tenant's name, in [`UploadRow`]'s order (every backend's
/// `upload_events` and `tenants` tables have these columns).
pub const UPLOAD_SELECT: &str =
    "SELECT u.id, t.name, u.path, u.size, u.sha256, u.at_ms, u.requested, u.duplicate_of, u.snapshot FROM upload_events u
    JOIN tenants t ON t.id = u.tenant_id";

fn upload_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UploadRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?))
}

pub(crate) fn upload_by_id(c: &Connection, id: i64) -> Result<Option<StoredUpload>> {
    let row = c.query_row(&format!("{UPLOAD_SELECT} WHERE u.id = ?1"), [id], upload_row).optional()?;
    row.map(upload_from_row).transpose()
}

/// An upload event as every backend stores it: (id, tenant, path, size, sha256, at_ms,
/// requested, duplicate_of, snapshot), read by [`upload_from_row`].
pub type UploadRow = (i64, String, String, i64, String, i64, bool, Option<i64>, Option<String>);

/// A stored snapshot name; one no sluice writes (a path, say) is [`StoreError::Corrupt`].
pub fn snapshot_from_row(raw: &str) -> Result<sluice_core::SnapshotName> {
    sluice_core::SnapshotName::parse(raw).ok_or_else(|| StoreError::Corrupt(format!("snapshot name {raw:?}")))
}

/// The upload event a row holds; a value no sluice writes is [`StoreError::Corrupt`].
pub fn upload_from_row(
    (id, tenant, path, size, sha, at_ms, requested, duplicate_of, snapshot): UploadRow,
) -> Result<StoredUpload> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("upload event {id}: {what}"));
    Ok(StoredUpload {
        id,
        event: UploadEvent {
            tenant: TenantName::parse(&tenant).map_err(|_| corrupt("tenant name"))?,
            path: VirtualPath::resolve(path.as_bytes()).map_err(|_| corrupt("path"))?,
            size: u64::try_from(size).map_err(|_| corrupt("size"))?,
            sha256: Sha256Hex::parse(&sha).ok_or_else(|| corrupt("sha256"))?,
            at_ms,
            snapshot: snapshot.as_deref().map(snapshot_from_row).transpose()?,
        },
        requested,
        duplicate_of,
    })
}

/// The columns of a tenant's row, in [`RawTenant`]'s order (every backend's `tenants` table
/// has them).
pub const TENANT_COLUMNS: &str = "id, name, folders, disabled, password_hash, created_ms, trigger, schedule, timezone, type_triggers, safeguards, notify_emails, webhook_url, webhook_secret, read_settings, routing, type_schedules, settle_secs, blackouts";

/// A tenant as every backend stores it: text and integer columns, read back by
/// [`RawTenant::parse`] and written from a [`Tenant`] by [`RawTenant::settings_of`] (one
/// encoding of the settings, whichever database holds them).
#[derive(Debug, Clone)]
pub struct RawTenant {
    pub id: i64,
    pub name: String,
    pub folders: String,
    pub disabled: bool,
    pub password_hash: Option<String>,
    pub created_ms: i64,
    pub trigger: String,
    pub schedule: Option<String>,
    pub timezone: String,
    pub type_triggers: String,
    pub safeguards: String,
    pub notify_emails: String,
    pub webhook_url: String,
    pub webhook_secret: String,
    pub read_settings: String,
    pub routing: String,
    pub type_schedules: String,
    pub settle_secs: i64,
    pub blackouts: String,
}

/// The settings columns of a tenant's row (what [`Tenants::change_settings`] writes), encoded.
#[derive(Debug, Clone)]
pub struct TenantSettingsRow {
    pub folders: String,
    pub trigger: String,
    pub schedule: Option<String>,
    pub timezone: String,
    pub type_triggers: String,
    pub safeguards: String,
    pub read_settings: String,
    pub notify_emails: String,
    pub webhook_url: String,
    pub webhook_secret: String,
    pub routing: String,
    pub type_schedules: String,
    pub settle_secs: i64,
    pub blackouts: String,
}

fn raw_tenant(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawTenant> {
    Ok(RawTenant {
        id: r.get(0)?,
        name: r.get(1)?,
        folders: r.get(2)?,
        disabled: r.get(3)?,
        password_hash: r.get(4)?,
        created_ms: r.get(5)?,
        trigger: r.get(6)?,
        schedule: r.get(7)?,
        timezone: r.get(8)?,
        type_triggers: r.get(9)?,
        safeguards: r.get(10)?,
        notify_emails: r.get(11)?,
        webhook_url: r.get(12)?,
        webhook_secret: r.get(13)?,
        read_settings: r.get(14)?,
        routing: r.get(15)?,
        type_schedules: r.get(16)?,
        settle_secs: r.get(17)?,
        blackouts: r.get(18)?,
    })
}

impl RawTenant {
    /// The settings columns of `t`'s row.
    pub fn settings_of(t: &Tenant) -> TenantSettingsRow {
        let joined = |pairs: Vec<(String, String)>| {
            pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
        };
        let (webhook_url, webhook_secret) = t.webhook.clone().unwrap_or_default();
        TenantSettingsRow {
            folders: join_folders(t.layout.import_folders()),
            trigger: t.trigger.as_str().to_owned(),
            schedule: t.schedule.as_ref().map(|c| c.as_str().to_owned()),
            timezone: t.timezone.clone(),
            type_triggers: joined(
                t.type_triggers.iter().map(|(ty, g)| (ty.clone(), g.as_str().to_owned())).collect(),
            ),
            safeguards: joined(
                t.safeguards
                    .iter()
                    .map(|s| (format!("{}.{}", s.type_name, s.limit.as_str()), s.percent.to_string()))
                    .collect(),
            ),
            read_settings: joined(t.read_settings.iter().map(ReadSetting::to_pair).collect()),
            notify_emails: t.notify_emails.join(","),
            webhook_url,
            webhook_secret,
            routing: t.routing.as_str().to_owned(),
            type_schedules: t
                .type_schedules
                .iter()
                .map(|(ty, c)| format!("{ty}={}", c.as_str()))
                .collect::<Vec<_>>()
                .join(";"),
            settle_secs: i64::from(t.settle_secs),
            blackouts: t.blackouts.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
        }
    }

    /// The tenant this row holds; a value no sluice writes is [`StoreError::Corrupt`].
    pub fn parse(self) -> Result<Tenant> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("tenant {:?}: {what}", self.name));
        Ok(Tenant {
            id: self.id,
            name: TenantName::parse(&self.name).map_err(|_| corrupt("name"))?,
            layout: TreeLayout::new(FolderName::parse_list(&self.folders).map_err(|_| corrupt("folders"))?),
            routing: sluice_core::Routing::parse(&self.routing).ok_or_else(|| corrupt("routing"))?,
            disabled: self.disabled,
            password: match self.password_hash {
                Some(phc) => Some(PasswordHash::from_stored(phc).map_err(|_| corrupt("password hash"))?),
                None => None,
            },
            trigger: Trigger::parse(&self.trigger).ok_or_else(|| corrupt("trigger"))?,
            schedule: match &self.schedule {
                Some(s) => Some(sluice_core::schedule::Cron::parse(s).map_err(|_| corrupt("schedule"))?),
                None => None,
            },
            timezone: self.timezone.clone(),
            type_triggers: self
                .type_triggers
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (t, g) = p.split_once('=').ok_or_else(|| corrupt("type_triggers"))?;
                    Ok((t.to_owned(), Trigger::parse(g).ok_or_else(|| corrupt("type_triggers"))?))
                })
                .collect::<Result<_>>()?,
            type_schedules: self
                .type_schedules
                .split(';')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (t, c) = p.split_once('=').ok_or_else(|| corrupt("type_schedules"))?;
                    let cron =
                        sluice_core::schedule::Cron::parse(c).map_err(|_| corrupt("type_schedules"))?;
                    Ok((t.to_owned(), cron))
                })
                .collect::<Result<_>>()?,
            settle_secs: u32::try_from(self.settle_secs).map_err(|_| corrupt("settle_secs"))?,
            blackouts: sluice_core::Blackout::parse_list(&self.blackouts)
                .map_err(|_| corrupt("blackouts"))?,
            safeguards: self
                .safeguards
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').ok_or_else(|| corrupt("safeguards"))?;
                    SafeguardSetting::parse(k, v).map_err(|_| corrupt("safeguards"))
                })
                .collect::<Result<_>>()?,
            read_settings: self
                .read_settings
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').ok_or_else(|| corrupt("read_settings"))?;
                    ReadSetting::parse(k, v).ok().flatten().ok_or_else(|| corrupt("read_settings"))
                })
                .collect::<Result<_>>()?,
            notify_emails: self
                .notify_emails
                .split(',')
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect(),
            webhook: (!self.webhook_url.is_empty())
                .then(|| (self.webhook_url.clone(), self.webhook_secret.clone())),
            created_ms: self.created_ms,
        })
    }
}

fn tenant_by_name(c: &Connection, name: &str) -> Result<Option<Tenant>> {
    let raw = c
        .query_row(&format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE name = ?1"), [name], raw_tenant)
        .optional()?;
    raw.map(RawTenant::parse).transpose()
}

pub(crate) fn tenant_id(c: &Connection, name: &str) -> Result<i64> {
    c.query_row("SELECT id FROM tenants WHERE name = ?1", [name], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::NoSuchTenant(name.to_owned()))
}

/// Folder names as a tenant's row keeps them.
pub fn join_folders(folders: &[FolderName]) -> String {
    folders.iter().map(FolderName::as_str).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests;

impl crate::roles::Tenants for Store {
    fn add_tenant(&self, name: &TenantName, folders: &[FolderName]) -> Result<Tenant> {
        self.with(|c| {
            let folders_text = join_folders(folders);
            let inserted = c.execute(
                "INSERT INTO tenants (name, folders, disabled, created_ms) VALUES (?1, ?2, 0, ?3)
                 ON CONFLICT (name) DO NOTHING",
                params![name.as_str(), folders_text, now_ms()],
            )?;
            if inserted == 0 {
                return Err(StoreError::TenantExists(name.to_string()));
            }
            tenant_by_name(c, name.as_str())?.ok_or_else(|| StoreError::NoSuchTenant(name.to_string()))
        })
    }

    fn tenant(&self, name: &str) -> Result<Option<Tenant>> {
        self.with(|c| tenant_by_name(c, name))
    }

    fn require_tenant(&self, name: &str) -> Result<Tenant> {
        self.tenant(name)?.ok_or_else(|| StoreError::NoSuchTenant(name.to_owned()))
    }

    fn tenants(&self) -> Result<Vec<Tenant>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!("SELECT {TENANT_COLUMNS} FROM tenants ORDER BY name"))?;
            let rows = stmt.query_map([], raw_tenant)?.collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter().map(RawTenant::parse).collect()
        })
    }

    fn remove_tenant(&self, name: &TenantName) -> Result<()> {
        self.with_write(|c| {
            if c.execute("DELETE FROM tenants WHERE name = ?1", [name.as_str()])? == 0 {
                return Err(StoreError::NoSuchTenant(name.to_string()));
            }
            Ok(())
        })
    }

    fn set_disabled(&self, name: &TenantName, disabled: bool) -> Result<()> {
        self.update_tenant(name, "UPDATE tenants SET disabled = ?2 WHERE name = ?1", disabled)
    }

    fn set_password(&self, name: &TenantName, hash: &PasswordHash) -> Result<()> {
        self.update_tenant(name, "UPDATE tenants SET password_hash = ?2 WHERE name = ?1", hash.as_phc())
    }

    fn change_settings(&self, name: &str, change: &SettingsChange) -> Result<Tenant> {
        self.with_write(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut t = tenant_by_name(&tx, name)?.ok_or_else(|| StoreError::NoSuchTenant(name.to_owned()))?;
            change.apply(&mut t)?;
            let row = RawTenant::settings_of(&t);
            tx.execute(
                "UPDATE tenants SET folders = ?2, trigger = ?3, schedule = ?4, timezone = ?5, type_triggers = ?6,
                     safeguards = ?7, read_settings = ?8, notify_emails = ?9, webhook_url = ?10, webhook_secret = ?11,
                     routing = ?12, type_schedules = ?13, settle_secs = ?14, blackouts = ?15
                 WHERE id = ?1",
                params![
                    t.id,
                    row.folders,
                    row.trigger,
                    row.schedule,
                    row.timezone,
                    row.type_triggers,
                    row.safeguards,
                    row.read_settings,
                    row.notify_emails,
                    row.webhook_url,
                    row.webhook_secret,
                    row.routing,
                    row.type_schedules,
                    row.settle_secs,
                    row.blackouts,
                ],
            )?;
            tx.commit()?;
            Ok(t)
        })
    }

    fn add_key(&self, tenant: &TenantName, key: &AuthorizedKey) -> Result<()> {
        self.with(|c| {
            let id = tenant_id(c, tenant.as_str())?;
            let inserted = c.execute(
                "INSERT INTO tenant_keys (tenant_id, algorithm, key_base64, comment, fingerprint, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (tenant_id, key_base64) DO NOTHING",
                params![id, key.algorithm, key.key_base64, key.comment, key.fingerprint, now_ms()],
            )?;
            if inserted == 0 {
                return Err(StoreError::KeyExists {
                    tenant: tenant.to_string(),
                    fingerprint: key.fingerprint.clone(),
                });
            }
            Ok(())
        })
    }

    fn remove_key(&self, tenant: &str, fingerprint: &str) -> Result<()> {
        self.with(|c| {
            let id = tenant_id(c, tenant)?;
            match c.execute(
                "DELETE FROM tenant_keys WHERE tenant_id = ?1 AND fingerprint = ?2",
                params![id, fingerprint],
            )? {
                0 => Err(StoreError::NoSuchSshKey(fingerprint.to_owned())),
                _ => Ok(()),
            }
        })
    }

    fn keys(&self, tenant: &str) -> Result<Vec<AuthorizedKey>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT k.algorithm, k.key_base64, k.comment, k.fingerprint FROM tenant_keys k
                 JOIN tenants t ON t.id = k.tenant_id WHERE t.name = ?1 ORDER BY k.id",
            )?;
            let keys = stmt
                .query_map([tenant], |r| {
                    Ok(AuthorizedKey {
                        algorithm: r.get(0)?,
                        key_base64: r.get(1)?,
                        comment: r.get(2)?,
                        fingerprint: r.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(keys)
        })
    }
}

impl crate::roles::Uploads for Store {
    fn record_upload(&self, event: &UploadEvent) -> Result<i64> {
        self.queue_upload(event, false)
    }

    fn request_import(&self, event: &UploadEvent) -> Result<i64> {
        self.queue_upload(event, true)
    }

    fn uploads(&self, tenant: &str) -> Result<Vec<StoredUpload>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!("{UPLOAD_SELECT} WHERE t.name = ?1 ORDER BY u.id"))?;
            let rows = stmt.query_map([tenant], upload_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter().map(upload_from_row).collect()
        })
    }
}
