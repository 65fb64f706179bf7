//! The store's roles: what each part of sluice asks of persistence, as traits. `Store` (SQLite)
//! implements them all; another backend implements the same traits and passes the same
//! conformance suite (`conformance.rs`, run here against SQLite). The traits are synchronous, like
//! the store: async callers run them on a blocking thread.
//!
//! Callers bring the roles they use into scope with `use sluice_store::roles::*` (or by name).

use crate::{Account, ApiKey, AuthorizedKey, Delivery, Result, Role};
use sluice_core::defender::Ban;
use sluice_core::net::Source;
use sluice_core::{FolderName, PasswordHash, SettingsChange, Tenant, TenantName};

/// Tenants and their SSH credentials.
pub trait Tenants {
    fn add_tenant(&self, name: &TenantName, folders: &[FolderName]) -> Result<Tenant>;

    fn tenant(&self, name: &str) -> Result<Option<Tenant>>;

    fn require_tenant(&self, name: &str) -> Result<Tenant>;

    fn tenants(&self) -> Result<Vec<Tenant>>;

    fn set_disabled(&self, name: &TenantName, disabled: bool) -> Result<()>;

    fn set_password(&self, name: &TenantName, hash: &PasswordHash) -> Result<()>;

    /// Applies one settings change (see `sluice_core::settings`) in one transaction: the
    /// tenant's settings are read, changed and written under the write lock, so a refused change
    /// changes nothing and two concurrent changes cannot lose each other's update.
    fn change_settings(&self, name: &str, change: &SettingsChange) -> Result<Tenant>;

    fn add_key(&self, tenant: &TenantName, key: &AuthorizedKey) -> Result<()>;

    /// Removes a tenant's key by its fingerprint (`SHA256:...`).
    fn remove_key(&self, tenant: &str, fingerprint: &str) -> Result<()>;

    fn keys(&self, tenant: &str) -> Result<Vec<AuthorizedKey>>;
}

/// Dashboard accounts and their sessions.
pub trait Accounts {
    /// Adds an account; emails are unique across sluice (they are the login name).
    fn add_account(&self, tenant: Option<&str>, email: &str, role: Role, password_hash: &str) -> Result<i64>;

    fn account_by_email(&self, email: &str) -> Result<Option<Account>>;

    fn accounts(&self, tenant: Option<&str>) -> Result<Vec<Account>>;

    fn set_account_password(&self, email: &str, password_hash: &str) -> Result<()>;

    /// Lets a tenant's user manage SFTP credentials and settings (or stops it).
    fn set_account_manages(&self, email: &str, manages: bool) -> Result<()>;

    /// Starts a session for an account; `token_hash` is the SHA-256 of the cookie's value.
    fn create_session(&self, account: i64, token_hash: &str, csrf: &str, lifetime_ms: i64) -> Result<()>;

    /// The account and CSRF token of a live session.
    fn session(&self, token_hash: &str) -> Result<Option<(Account, String)>>;

    fn end_session(&self, token_hash: &str) -> Result<()>;

    /// Ends every session of an account (its password changed).
    fn end_sessions_of(&self, email: &str) -> Result<()>;
}

/// REST API keys (stored as SHA-256).
pub trait ApiKeys {
    /// Stores a key (its hash); returns its id.
    fn add_api_key(&self, tenant: Option<&str>, name: &str, prefix: &str, sha256_hex: &str) -> Result<i64>;

    /// The live (not revoked) key with this hash.
    fn api_key_by_hash(&self, sha256_hex: &str) -> Result<Option<ApiKey>>;

    /// A tenant's keys (`Some`), or the operator's (`None`), newest first.
    fn api_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKey>>;

    /// Revokes a live key: any key (`of` = `None`, the operator), or only one of tenant `of`.
    fn revoke_api_key(&self, id: i64, of: Option<&str>) -> Result<()>;
}

/// Notifications: the queue the notifier drains, and its log.
pub trait Deliveries {
    /// Queues the notifications of an import's end, per the tenant's settings; returns how many.
    fn queue_deliveries(&self, import_id: i64) -> Result<usize>;

    /// Pending deliveries whose time has come, oldest first, at most `per_tenant` of each
    /// tenant's: one tenant's backlog cannot crowd the others out.
    fn due_deliveries(&self, per_tenant: usize) -> Result<Vec<Delivery>>;

    /// Records an attempt: sent, or failed with a retry at `retry_at_ms` (`None`: given up).
    fn delivery_attempted(&self, id: i64, error: Option<&str>, retry_at_ms: Option<i64>) -> Result<()>;

    /// A tenant's delivery log, newest first.
    fn deliveries(&self, tenant: &str, limit: usize) -> Result<Vec<Delivery>>;
}

/// The defender's bans, kept across restarts.
pub trait Bans {
    /// Records a ban (replacing the source's earlier one).
    fn save_ban(&self, ban: &Ban) -> Result<()>;

    /// Bans that end after `after_ms`, the latest-ending first: with `now` the bans in force,
    /// with an earlier time also the ones remembered since.
    fn bans(&self, after_ms: i64) -> Result<Vec<Ban>>;

    /// Lifts a source's ban and forgets its earlier ones. Returns whether a ban was in force
    /// at `now_ms`.
    fn lift_ban(&self, source: &Source, now_ms: i64) -> Result<bool>;

    /// Forgets bans that ended at or before `until_ms`; returns how many.
    fn forget_bans(&self, until_ms: i64) -> Result<usize>;

    /// How many bans are in force at `now_ms` (the `/metrics` gauge).
    fn bans_in_force(&self, now_ms: i64) -> Result<u64>;
}
