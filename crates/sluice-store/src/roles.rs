//! The store's roles: what each part of sluice asks of persistence, as traits. `Store` (SQLite)
//! implements them all; another backend implements the same traits and passes the same
//! conformance suite (`conformance.rs`, run here against SQLite). The traits are synchronous, like
//! the store: async callers run them on a blocking thread.
//!
//! The server holds the store as a [`SharedStore`] (every role, through [`Backend`]), never as
//! a backend's own type: which database is behind it is decided once, where the store is
//! opened. A part that needs a single role takes `&dyn ThatRole`. Through a `dyn Backend` (or a
//! `dyn ThatRole`) the roles' methods need no import; callers of a backend's own type (the
//! SQLite `Store` where it is opened, tests) bring the roles they use into scope with
//! `use sluice_store::roles::*` (or by name).

use crate::{
    Account, ApiKey, AuthorizedKey, Counts, Deletion, Delivery, FoundRecords, ImportRecord, Outcome, Person,
    RecordQuery, Referrer, Referring, Result, Role, SecondFactor, StageKind, StoredError, StoredRecord,
    StoredUpload, Tombstone,
};
use sluice_core::UploadEvent;
use sluice_core::audit::{AuditEntry, AuditFilter, NewAuditEntry};
use sluice_core::connector::{Connector, HostKey};
use sluice_core::defender::{Ban, Happening};
use sluice_core::import::LoadMode;
use sluice_core::net::Source;
use sluice_core::photo::Photo;
use sluice_core::saved_export::{ExportRun, RunCause, RunOutcome, SavedExport};
use sluice_core::{FolderName, PasswordHash, SettingsChange, Tenant, TenantName};
use std::time::Duration;

/// The whole store: every role at once, what the server's parts hold (through
/// [`SharedStore`]) so that they run on whichever backend was opened (SQLite's `Store`, or
/// another implementing the same roles) without knowing which. Nothing to implement: every
/// type with all the roles is a `Backend` (the blanket impl below). A part that needs one role
/// only takes `&dyn ThatRole` (a `&dyn Backend` coerces to it: pass `&*store` of a
/// `SharedStore`).
pub trait Backend:
    Tenants
    + Accounts
    + ApiKeys
    + Bans
    + Uploads
    + ImportQueue
    + Audit
    + Deliveries
    + SavedExports
    + Connectors
    + Imports
    + People
    + Photos
    + Records
    + Schedules
    + Send
    + Sync
{
}

impl<T> Backend for T where
    T: Tenants
        + Accounts
        + ApiKeys
        + Bans
        + Uploads
        + ImportQueue
        + Audit
        + Deliveries
        + SavedExports
        + Connectors
        + Imports
        + People
        + Photos
        + Records
        + Schedules
        + Send
        + Sync
{
}

/// The store as the server's parts share it: one backend behind every role, opened once (by
/// `sluice serve`, say) and handed to the SFTP server, the import workers, the web side, the
/// notifier and the defender alike.
pub type SharedStore = std::sync::Arc<dyn Backend>;

/// Scheduled work (a tenant's or a type's import schedule, a saved export's, a connector's
/// pull) runs once per due time, however many servers share the store: each asks for the due
/// time first, and the one that gets it runs it.
pub trait Schedules {
    /// Takes the run of schedule `key` due at `due_ms` for process `owner` (its
    /// `sluice_core::spool::owner_tag`); false if someone already took it. The taker runs it
    /// and then says so ([`Schedules::finish_due`]).
    fn claim_due(&self, key: &str, due_ms: i64, owner: &str) -> Result<bool>;

    /// The run of `key` due at `due_ms` is done: ran, or handed to work that survives its
    /// process (an import queued).
    fn finish_due(&self, key: &str, due_ms: i64) -> Result<()>;

    /// Takes over, for `owner`, the runs of schedules whose keys start with `prefix` that were
    /// taken and not finished by a process that has ended (`ended` says of an owner tag), so
    /// that a due time is never skipped because its taker died: each such run is taken over
    /// by one caller. Returns their (key, due_ms), to run and finish as if claimed.
    fn retake_due(
        &self,
        prefix: &str,
        owner: &str,
        ended: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<(String, i64)>>;

    /// Forgets the finished runs due before `before_ms` (nothing asks for them any more), and
    /// the unfinished ones [`crate::UNFINISHED_KEPT_MS`] older still.
    fn forget_due_claims(&self, before_ms: i64) -> Result<usize>;
}

/// Tenants and their SSH credentials.
pub trait Tenants {
    fn add_tenant(&self, name: &TenantName, folders: &[FolderName]) -> Result<Tenant>;

    fn tenant(&self, name: &str) -> Result<Option<Tenant>>;

    fn require_tenant(&self, name: &str) -> Result<Tenant>;

    fn tenants(&self) -> Result<Vec<Tenant>>;

    fn set_disabled(&self, name: &TenantName, disabled: bool) -> Result<()>;

    /// Removes a tenant and everything of its in the store (records, imports, keys, accounts,
    /// exports, connectors; the audit log keeps its entries). Its files are the caller's.
    fn remove_tenant(&self, name: &TenantName) -> Result<()>;

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

    /// Makes a tenant's account an owner or a user (`Owner` or `User`; a user made of an owner
    /// no longer manages until granted again).
    fn set_account_role(&self, email: &str, role: Role) -> Result<()>;

    /// Starts a session for an account; `token_hash` is the SHA-256 of the cookie's value.
    fn create_session(&self, account: i64, token_hash: &str, csrf: &str, lifetime_ms: i64) -> Result<()>;

    /// The account and CSRF token of a live session.
    fn session(&self, token_hash: &str) -> Result<Option<(Account, String)>>;

    fn end_session(&self, token_hash: &str) -> Result<()>;

    /// Ends every session of an account (its password changed).
    fn end_sessions_of(&self, email: &str) -> Result<()>;

    /// Removes an account and its sessions (`NoSuchAccount` if there is none).
    fn remove_account(&self, email: &str) -> Result<()>;

    /// Keeps a password reset for the account `email` (its token's SHA-256), usable once until
    /// `lifetime_ms` from now; `None` when there is no such account, or it has
    /// [`MAX_LIVE_RESETS`] live links already (nothing kept, no email to send).
    fn start_password_reset(
        &self,
        email: &str,
        token_hash: &str,
        lifetime_ms: i64,
    ) -> Result<Option<Account>>;

    /// Uses a reset: when its token is known, unused and unexpired, sets the account's password,
    /// marks the token used and ends every session of the account, in one transaction, and
    /// returns the account; `None` otherwise (nothing changed).
    fn finish_password_reset(&self, token_hash: &str, password_hash: &str) -> Result<Option<Account>>;

    /// Whether a reset link (its token's SHA-256) is known, unused and unexpired.
    fn password_reset_is_live(&self, token_hash: &str) -> Result<bool>;

    /// Starts a session that has the password right but still needs the second factor: it
    /// opens no page ([`Accounts::session`] does not find it) until completed.
    fn create_pending_session(
        &self,
        account: i64,
        token_hash: &str,
        csrf: &str,
        lifetime_ms: i64,
    ) -> Result<()>;

    /// A live pending session: its account, CSRF token and wrong codes so far.
    fn pending_session(&self, token_hash: &str) -> Result<Option<(Account, String, i64)>>;

    /// Takes one of a pending session's `max` tries at a code, atomically (parallel guesses
    /// cannot all slip past): `false` when it has none left.
    fn take_pending_try(&self, token_hash: &str, max: i64) -> Result<bool>;

    /// The second factor came: the pending session becomes a full one for `lifetime_ms`,
    /// under a new token and CSRF token (a planted pending cookie does not become a session).
    fn complete_session(
        &self,
        token_hash: &str,
        new_token_hash: &str,
        new_csrf: &str,
        lifetime_ms: i64,
    ) -> Result<bool>;

    /// An account's second factor as stored (all empty when it has none).
    fn second_factor(&self, account: i64) -> Result<SecondFactor>;

    /// Keeps a sealed secret being enrolled (replacing one being enrolled before).
    fn start_second_factor(&self, account: i64, sealed: &str) -> Result<()>;

    /// Switches the secret being enrolled (`pending`, as the page showed it) on, with `step`
    /// used and the recovery codes' hashes replacing earlier ones; `false` when that secret is
    /// no longer the one being enrolled.
    fn enable_second_factor(
        &self,
        account: i64,
        pending: &str,
        step: i64,
        recovery_hashes: &[String],
    ) -> Result<bool>;

    /// Switches an account's second factor off, recovery codes too; `false` when it had none.
    fn disable_second_factor(&self, email: &str) -> Result<bool>;

    /// Uses a TOTP step: `true` only when it is later than the last one used (atomically: two
    /// logins racing with one code, one wins).
    fn use_second_factor_step(&self, account: i64, step: i64) -> Result<bool>;

    /// Replaces an account's recovery codes (their hashes); `false` when its second factor is
    /// off (nothing kept).
    fn replace_recovery_codes(&self, account: i64, hashes: &[String]) -> Result<bool>;

    /// Uses a recovery code (its hash) once.
    fn use_recovery_code(&self, account: i64, code_hash: &str) -> Result<bool>;

    /// Whether any account has a sealed second-factor secret (a new secret key would open none).
    fn any_second_factor(&self) -> Result<bool>;
}

/// Reset links an account may have live at once: asking again sends no more email.
pub const MAX_LIVE_RESETS: i64 = 3;

/// REST API keys (stored as SHA-256).
pub trait ApiKeys {
    /// Stores a key (its hash); returns its id.
    fn add_api_key(
        &self,
        tenant: Option<&str>,
        name: &str,
        prefix: &str,
        sha256_hex: &str,
        scope: &crate::KeyScope,
    ) -> Result<i64>;

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

    /// Queues the notifications of a saved export's failed run, to the same recipients and
    /// webhook as an import's; returns how many.
    fn queue_export_failure(&self, run_id: i64) -> Result<usize>;

    /// Claims the pending deliveries whose time has come, oldest first, at most `per_tenant`
    /// of each tenant's (one tenant's backlog cannot crowd the others out), for `lease`: no
    /// other caller (another notifier, another node) gets them, nor any of those tenants'
    /// deliveries, until each is attempted or released, or the lease runs out (its holder
    /// died: they are sent then). A tenant's deliveries thus go out one sender at a time, in
    /// order.
    fn claim_deliveries(&self, per_tenant: usize, lease: Duration) -> Result<Vec<Delivery>>;

    /// Gives back claimed deliveries not attempted (a notifier stopping): due again at once.
    fn release_deliveries(&self, ids: &[i64]) -> Result<()>;

    /// Records an attempt: sent, or failed with a retry at `retry_at_ms` (`None`: given up).
    /// Its claim ends.
    fn delivery_attempted(&self, id: i64, error: Option<&str>, retry_at_ms: Option<i64>) -> Result<()>;

    /// A tenant's delivery log, newest first.
    fn deliveries(&self, tenant: &str, limit: usize) -> Result<Vec<Delivery>>;
}

/// The defender's bans, kept across restarts.
pub trait Bans {
    /// Records a ban, replacing the source's earlier one when that had ended by the time this
    /// one began. Returns false when a ban in force then is kept instead (another node's, for
    /// the same guesses: it is the one in force, and the one audited).
    fn save_ban(&self, ban: &Ban) -> Result<bool>;

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

    /// Keeps what the defender of `node` saw, for the other nodes sharing the store to count.
    /// (An account name is kept with any NUL replaced by U+FFFD: not every database stores one.)
    fn share_happenings(&self, node: &str, happenings: &[Happening]) -> Result<()>;

    /// What nodes other than `node` shared, with a number above `after` (numbers grow in the
    /// order rows are written, though one written a moment earlier may show up a moment later),
    /// in number order, at most `limit`; `None` for a row this build cannot read (written by a
    /// newer one), so that the reader can go on past it.
    fn happenings_after(&self, after: i64, node: &str, limit: usize)
    -> Result<Vec<(i64, Option<Happening>)>>;

    /// Forgets what was shared more than `kept_ms` ago by the database's clock; returns how
    /// many.
    fn forget_happenings(&self, kept_ms: i64) -> Result<usize>;
}

/// Upload events: what the SFTP server and syncs record for the import pipeline.
pub trait Uploads {
    /// Records a completed upload; the import pipeline consumes these in id order.
    fn record_upload(&self, event: &UploadEvent) -> Result<i64>;

    /// Queues a file found by a sync: whichever process claims it imports it, even for a
    /// tenant whose trigger is manual or scheduled.
    fn request_import(&self, event: &UploadEvent) -> Result<i64>;

    fn uploads(&self, tenant: &str) -> Result<Vec<StoredUpload>>;
}

/// The queue of upload events the import workers claim, lease and consume.
pub trait ImportQueue {
    /// Upload events not yet turned into imports, oldest first, whose lease (if any) expired.
    /// Claiming one sets a lease, so a crash mid-import lets it be claimed again later.
    fn claim_upload(&self, lease: Duration, tenant: Option<&str>) -> Result<Option<StoredUpload>>;

    /// Tenants with upload events that can be claimed now, each with its oldest such event,
    /// oldest first: what the import workers choose from.
    fn waiting_tenants(&self) -> Result<Vec<(String, i64)>>;

    /// Upload events waiting to be imported (all tenants).
    fn pending_uploads(&self) -> Result<u64>;

    /// When the tenant's newest upload completed (uploads only, not a sync's requests): what a
    /// settle time counts from.
    fn last_upload_ms(&self, tenant: &str) -> Result<Option<i64>>;

    /// Whether an upload event has been consumed.
    fn upload_consumed(&self, id: i64) -> Result<bool>;

    /// The snapshots of upload events not yet consumed: every other file in the snapshots
    /// folder is a leftover (its upload was imported, or never recorded).
    fn snapshots_in_use(&self) -> Result<Vec<sluice_core::SnapshotName>>;

    /// The upload whose retry `upload` is: the latest earlier upload of the same file, or the
    /// original that one was itself a retry of, if that original has the same bytes, came at
    /// or after `since_ms` (the window runs from the original, however many retries follow),
    /// and is waiting or being imported, or was imported (not failed, not discarded) with
    /// nothing since that its bytes would undo: no later import of its type (another file's,
    /// or a sync's) and no record of the tenant deleted by hand since it came. Sending the
    /// same bytes again then restores what changed meanwhile, so it is imported. Only the
    /// latest counts: A, then B, then A again is a new upload of A. Files a sync queued are
    /// never retries: a sync asks for an import.
    fn retried_upload(&self, upload: &StoredUpload, since_ms: i64) -> Result<Option<i64>>;

    /// Marks an upload event handled as a retry of `original`: not imported.
    fn consume_as_duplicate(&self, id: i64, original: i64) -> Result<()>;

    /// Marks an upload event handled without an import (e.g. no type for its folder).
    fn consume_upload(&self, id: i64, import_id: Option<i64>) -> Result<()>;

    /// Tenants with an import `running` (under way, or left by a process that died). By name.
    fn tenants_at_work(&self) -> Result<Vec<String>>;

    /// Forgets every claim on the tenant's unconsumed upload events but `keep`'s. Only for a
    /// caller in the tenant's turn: leases are taken only in it, so every other lease is then
    /// a dead process's, which would otherwise hold its upload back until the lease ran out.
    fn release_leases(&self, tenant: &str, keep: Option<i64>) -> Result<usize>;

    /// The tenant's imports left `running` by a process that died (only for a caller in the
    /// tenant's turn, as above): they never committed anything, their upload events are still
    /// unconsumed and run again, so the stale rows are removed (history then shows each
    /// upload imported exactly once).
    fn remove_interrupted_imports(&self, tenant: &str) -> Result<usize>;
}

/// One import being loaded, on a connection of its own: its rows staged and checked, what
/// applying them would do planned, then applied with the import's outcome in one transaction
/// (or abandoned). One loader serves a single type's file and a package's several files.
/// SQLite's is `Loader`; another backend brings its own behind the same calls.
pub trait Loading: Send {
    /// Stages a row of a single-type import (see [`Loading::stage_in`]).
    fn stage(&mut self, line: u64, key: &str, data: &str, hash: i64, kind: StageKind) -> Result<Option<u64>>;

    /// Stages a row of `type_name`. Returns the line of an earlier row of the same type and
    /// key, if there is one (the row is then not staged).
    fn stage_in(
        &self,
        type_name: &str,
        line: u64,
        key: &str,
        data: &str,
        hash: i64,
        kind: StageKind,
    ) -> Result<Option<u64>>;

    /// Whether a record of `to_type` exists whose key is `key`, or starts with it when the
    /// target's key has more columns (joined by U+001F).
    fn reference_exists(&mut self, to_type: &str, key: &str) -> Result<bool>;

    /// Whether the tenant has an active record of this type and exactly this key.
    fn active(&mut self, type_name: &str, key: &str) -> Result<bool>;

    /// Whether this import staged a row of this type and key (any kind).
    fn listed(&self, type_name: &str, key: &str) -> Result<bool>;

    /// Some records a single-type mirror import would delete, in key order, each with its
    /// person's name where the type has one (`names`: the JSON paths of first and last name).
    fn deletion_sample(&self, limit: usize, names: Option<(&str, &str)>) -> Result<Vec<String>>;

    /// Active records of a single-type import's type the tenant has now.
    fn existing(&self) -> u64;

    /// The records of a single-type import's type that its file rewrites (listed, with other
    /// content; deactivated ones too) and that hold a value in one of `paths` (JSON paths of
    /// the type's columns, `$[i]`): the values a file without those columns would empty.
    fn emptied(&self, paths: &[String]) -> Result<Emptied>;

    /// Active records of a type before this import.
    fn existing_of(&self, type_name: &str) -> Result<u64>;

    /// What applying one type's staged rows in `mode` would do.
    fn plan(&self, type_name: &str, mode: LoadMode) -> Result<Counts>;

    /// How many records of `r.from_type` would be left naming a record this import deletes
    /// of `r.to_type`, in `mode`.
    fn dangling(&self, mode: LoadMode, r: &Referrer) -> Result<u64>;

    /// Drops everything staged (a dry run): the database is as it was.
    fn abandon(self: Box<Self>) -> Result<()>;

    /// Applies a single-type import (in the outcome's mode; nothing for failed and held
    /// imports) and records the outcome, in one transaction.
    fn commit(self: Box<Self>, outcome: Outcome<'_>) -> Result<()>;

    /// Applies the staged rows of `types`, each in its mode, if the outcome applies the import,
    /// and records the outcome, in one transaction.
    fn commit_types(self: Box<Self>, types: &[(&str, LoadMode)], outcome: Outcome<'_>) -> Result<()>;
}

/// What a file without some of its type's columns would empty ([`Loading::emptied`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Emptied {
    /// Records holding a value in any of the columns.
    pub records: u64,
    /// Records holding a value in each column, in the order asked.
    pub per_column: Vec<u64>,
}

/// Imports: their history, errors and decisions, and the loader that applies one.
pub trait Imports {
    /// Opens a new import in state `running`.
    fn create_import(
        &self,
        tenant: &str,
        type_name: &str,
        file_name: &str,
        source: &str,
        upload_id: Option<i64>,
        manifest_upload: Option<i64>,
    ) -> Result<i64>;

    /// The finished import of `file_name` listed by the manifest of upload event
    /// `manifest_upload`, if it ran (a manifest resumed after a crash skips it).
    fn manifest_file_import(&self, manifest_upload: i64, file_name: &str) -> Result<Option<ImportRecord>>;

    fn import(&self, id: i64) -> Result<Option<ImportRecord>>;

    fn imports(&self, tenant: &str, limit: usize) -> Result<Vec<ImportRecord>>;

    /// The held imports that import `id` superseded when it was applied.
    fn superseded_by(&self, id: i64) -> Result<Vec<i64>>;

    fn import_errors(&self, id: i64, limit: usize, offset: usize) -> Result<Vec<StoredError>>;

    /// Records that `by` looked at a failed or incomplete import (it leaves the operator's
    /// list of what to look at); `NotHeld`-like refusals for other statuses (`NotFailed`).
    fn acknowledge_import(&self, id: i64, by: &str) -> Result<()>;

    /// Records that `by` approved a held import, before it is applied: should applying it
    /// fail, the record still says who approved it.
    fn record_approval(&self, id: i64, by: &str) -> Result<()>;

    /// Marks a held import discarded by `by`.
    fn discard_import(&self, id: i64, by: &str) -> Result<()>;

    /// Records an import that failed before any row could be read (no import type for the
    /// folder, say), consuming its upload event in the same transaction.
    fn record_failed_import(
        &self,
        tenant: &str,
        type_name: &str,
        file_name: &str,
        source: &str,
        upload_id: Option<i64>,
        message: &str,
    ) -> Result<i64>;

    /// Opens a loader for one import of one type, on a connection of its own.
    fn loader(&self, tenant: &str, type_name: &str, import_id: i64) -> Result<Box<dyn Loading>>;

    /// Opens a loader for one import of a OneRoster package (its files' record types,
    /// `oneroster.users`, ...), on a connection of its own.
    fn package_loader(&self, tenant: &str, import_id: i64) -> Result<Box<dyn Loading>>;

    /// Records of one type, in key order: (key, JSON array of values). `deactivated`: only
    /// the active records (`Some(false)`), only the deactivated ones (`Some(true)`), or all.
    fn records(
        &self,
        tenant: &str,
        type_name: &str,
        deactivated: Option<bool>,
        each: &mut dyn FnMut(&str, &str),
    ) -> Result<u64>;

    fn record_count(&self, tenant: &str, type_name: &str) -> Result<u64>;

    /// The active records of one type in key order, each with, for each of `referrers` (a type
    /// whose records refer to this one, the JSON path of its referring column, the JSON path of
    /// the column that names its records), the names of its active records that refer to it,
    /// in order, joined by `;` (`None`: none). Streamed: `each` gets (key, data, names).
    fn records_with_referrers(
        &self,
        tenant: &str,
        type_name: &str,
        referrers: &[Referrers],
        each: &mut RecordWithReferrers<'_>,
    ) -> Result<u64>;
}

/// What `Imports::records_with_referrers` calls for each record: (key, data, names).
pub type RecordWithReferrers<'a> = dyn FnMut(&str, &str, &[Option<String>]) + 'a;

/// A type whose records refer to another's, as an export lists them (a student's guardians).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrers {
    pub type_name: String,
    /// JSON path of the column that holds the referred record's key (`$[1]`).
    pub refers_by: String,
    /// JSON path of the column that names a referring record (`$[0]`).
    pub named_by: String,
    /// What of the exported record `refers_by` is matched against: its key (`None`), or the
    /// value at this JSON path (a guardian's id, to list the students of every row of that
    /// guardian).
    pub matched_on: Option<String>,
}

/// People and the records that are their roles; record counts and pages for the dashboard
/// and the API.
pub trait People {
    /// A tenant's people, by name, each with their roles.
    fn people(&self, tenant: &str) -> Result<Vec<Person>>;

    /// How many records a tenant has of each type.
    fn record_counts(&self, tenant: &str) -> Result<Vec<(String, u64)>>;

    /// One page of a tenant's records of a type, in key order, optionally only those whose
    /// value at `filter.0` (a JSON path) is `filter.1`: (key, data) pairs.
    fn records_page(
        &self,
        tenant: &str,
        type_name: &str,
        filter: Option<(&str, &str)>,
        deactivated: Option<bool>,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<(String, String)>>;

    /// Records of `type_name` whose value at `json_path` (`$[2]` for a CSV type's third
    /// column, `$.classSourcedId` for a package file) is `value`: a student's guardians, a
    /// class's enrollments. Returns how many there were.
    fn records_where(
        &self,
        tenant: &str,
        type_name: &str,
        json_path: &str,
        value: &str,
        deactivated: Option<bool>,
        each: &mut dyn FnMut(&str, &str),
    ) -> Result<u64>;
}

/// Records' photos. The images are files named by their SHA-256 in the tenant's image store
/// (the ingest writes and removes them); the store says which record shows which image.
pub trait Photos {
    /// The keys of a type's active records, in key order; returns how many.
    fn record_keys(&self, tenant: &str, type_name: &str, each: &mut dyn FnMut(&str)) -> Result<u64>;

    /// A record's photo, if it has one.
    fn photo(&self, tenant: &str, type_name: &str, key: &str) -> Result<Option<Photo>>;

    /// Applies a photo import in one transaction: each photo replaces its record's previous
    /// one, and the import's outcome is written (refused, like any import, if a decision or a
    /// newer import closed it meanwhile). Returns the images no photo of the tenant shows any
    /// more, among those replaced.
    fn apply_photos(
        &self,
        tenant: &str,
        type_name: &str,
        import_id: i64,
        photos: &[Photo],
        outcome: &Outcome<'_>,
    ) -> Result<Vec<String>>;

    /// The photos of a type's active records, in key order; returns how many.
    fn photos(&self, tenant: &str, type_name: &str, each: &mut dyn FnMut(&Photo)) -> Result<u64>;

    /// Whether any photo of the tenant shows the image `sha256`.
    fn image_in_use(&self, tenant: &str, sha256: &str) -> Result<bool>;
}

/// Records one at a time, for people browsing them (the dashboard, the API, the CLI): search,
/// one record, its person and what refers to it, and deleting records by hand.
pub trait Records {
    /// Brings the stored records of `types` (CSV types) to their current columns: a type whose
    /// columns changed since its records were written has every record's array (and previous
    /// version) rewritten in the new order, its hash recomputed, in one transaction with the
    /// layout it remembers (`sluice_core::import::Relayout`); a type seen for the first time is
    /// remembered as it is. What `settling` does not allow (a rewrite, a rewrite that drops
    /// values) is refused (`StoreError::LayoutRefused`), nothing changed. Returns what was
    /// rewritten.
    fn settle_layouts(
        &self,
        types: &[&sluice_core::import::ImportType],
        settling: crate::Settling,
    ) -> Result<Vec<crate::Relaid>>;

    /// A page of a type's records matching `q` (each word begins the key, a name or the email;
    /// indexed: see `records.rs`), and how many match in all.
    fn search_records(&self, tenant: &str, type_name: &str, q: &RecordQuery) -> Result<FoundRecords>;

    fn record(&self, tenant: &str, type_name: &str, key: &str) -> Result<Option<StoredRecord>>;

    /// When and by whom a record was deleted by hand, if it was and no import added it back.
    fn tombstone(&self, tenant: &str, type_name: &str, key: &str) -> Result<Option<Tombstone>>;

    /// The person a record is a role of, with all their roles.
    fn person_of(&self, tenant: &str, type_name: &str, key: &str) -> Result<Option<Person>>;

    /// One of a tenant's people (`None`: no such person of this tenant).
    fn person(&self, tenant: &str, id: i64) -> Result<Option<Person>>;

    /// A page of a tenant's people whose names or email begin with each word of `q`, by name,
    /// and how many match in all.
    fn search_people(&self, tenant: &str, q: &str, limit: usize, offset: usize)
    -> Result<(u64, Vec<Person>)>;

    /// For each of `referrers`, the records referring to `key` of its `to_type`: how many are
    /// active, and up to `limit` of them.
    fn referring(
        &self,
        tenant: &str,
        key: &str,
        referrers: &[Referrer],
        limit: usize,
    ) -> Result<Vec<Referring>>;

    /// Deletes records of one type by hand, in one transaction: every key must exist
    /// (`NoSuchRecord`, nothing changed); records referring to one follow their reference's
    /// `on_delete` (`deactivate`: deactivated; `keep`: kept; `hold`: refused with them listed,
    /// `Referred`, unless `confirmed`, then kept); each record's person role goes (and the
    /// person, left without one); a tombstone (when, `by`) remains for each key.
    fn delete_records(
        &self,
        tenant: &str,
        type_name: &str,
        keys: &[String],
        by: &str,
        referrers: &[Referrer],
        confirmed: bool,
    ) -> Result<Deletion>;
}

/// The audit log: append-only, read by tenant and time, purged after its retention.
pub trait Audit {
    /// Appends an entry; returns its id.
    fn record_audit(&self, entry: &NewAuditEntry<'_>) -> Result<i64>;

    /// Entries, newest first: of one tenant (`Some`), or all (`None`: the operator's view),
    /// since `since_ms`, at most `limit`.
    /// Entries newest first, as `filter` says.
    fn audit_entries(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>>;

    /// Removes the entries older than `before_ms` (the retention); returns how many.
    fn purge_audit(&self, before_ms: i64) -> Result<usize>;
}

/// Saved exports (a tenant's export definitions, by name; names are unique whatever their
/// case) and the log of their runs.
pub trait SavedExports {
    /// Saves an export. An export of the same name (any case) is replaced when `replace` (it
    /// keeps the name as first spelled, so its file in `/exports` stays the same), else refused
    /// (`ExportExists`). An after-import export answers imports from now on.
    fn save_export(&self, tenant: &str, export: &SavedExport, replace: bool) -> Result<()>;

    /// A tenant's saved export by name (any case).
    fn saved_export(&self, tenant: &str, name: &str) -> Result<Option<SavedExport>>;

    /// A tenant's saved exports, by name.
    fn saved_exports(&self, tenant: &str) -> Result<Vec<SavedExport>>;

    /// Every enabled tenant's scheduled exports: (tenant, its time zone, export).
    fn scheduled_exports(&self) -> Result<Vec<(String, String, SavedExport)>>;

    /// Every enabled tenant's after-import exports with an applied import of their type that
    /// added, changed or deleted records since they last answered one: (tenant, export, the
    /// newest such import).
    fn exports_after_imports(&self) -> Result<Vec<(String, SavedExport, i64)>>;

    /// Records that an after-import export answers the imports up to `import_id`: true if this
    /// caller took them (the export had answered only older ones), false if another server
    /// did first, which then runs the export (so servers sharing the store run it once).
    fn mark_import_seen(&self, tenant: &str, name: &str, import_id: i64) -> Result<bool>;

    /// Removes a saved export (its run log stays); `NoSuchExport` if there is none.
    fn remove_saved_export(&self, tenant: &str, name: &str) -> Result<()>;

    /// Logs the start of a run; returns its id.
    fn start_export_run(&self, tenant: &str, export: &str, cause: RunCause) -> Result<i64>;

    fn finish_export_run(&self, id: i64, outcome: &RunOutcome) -> Result<()>;

    /// One run, by its id.
    fn export_run(&self, id: i64) -> Result<Option<ExportRun>>;

    /// Marks the runs left `running` by a process that stopped as failed, saying so; returns
    /// how many (the server calls it at start, before it runs anything). A run is its
    /// process's (`sluice_core::spool::owner_tag`, kept when it starts): `ended` says whether
    /// that process has ended (servers sharing the store each run their own; a run without
    /// an owner, from before owners were kept, counts as ended).
    fn fail_interrupted_runs(&self, ended: &dyn Fn(&str) -> bool) -> Result<usize>;

    /// A tenant's export runs (of one export, or all), newest first.
    fn export_runs(&self, tenant: &str, export: Option<&str>, limit: usize) -> Result<Vec<ExportRun>>;
}

/// Connectors: a tenant's own SFTP servers by name (unique whatever their case), their sealed
/// credentials (opened only by `sluice_connect`), pinned host keys, and the transfer log.
pub trait Connectors {
    /// Saves a connector with its sealed credential; one of the same name is replaced when
    /// `replace`, else refused (`ConnectorExists`).
    fn save_connector(&self, tenant: &str, connector: &Connector, sealed: &str, replace: bool) -> Result<()>;

    /// A connector and its sealed credential.
    fn connector(&self, tenant: &str, name: &str) -> Result<Option<(Connector, String)>>;

    /// Whether any tenant has a connector (a sealed credential).
    fn any_connectors(&self) -> Result<bool>;

    /// A tenant's connectors, by name (never their credentials).
    fn connectors(&self, tenant: &str) -> Result<Vec<Connector>>;

    /// Pins the host key the connector's server must present.
    fn pin_host_key(&self, tenant: &str, name: &str, key: &HostKey) -> Result<()>;

    /// Removes a connector; refused while a saved export pushes to it (`ConnectorInUse`).
    fn remove_connector(&self, tenant: &str, name: &str) -> Result<()>;

    /// Logs a transfer attempt: `push` or `pull`, the file, its bytes or why it failed.
    fn log_transfer(
        &self,
        tenant: &str,
        connector: &str,
        direction: &str,
        file: &str,
        outcome: std::result::Result<u64, &str>,
    ) -> Result<()>;

    /// Every enabled tenant's connectors that pull on a schedule: (tenant, its time zone,
    /// connector).
    fn pulling_connectors(&self) -> Result<Vec<(String, String, Connector)>>;

    /// Whether this remote file (path, size, time) was pulled before.
    fn was_pulled(
        &self,
        tenant: &str,
        connector: &str,
        remote_path: &str,
        size: u64,
        mtime: u32,
    ) -> Result<bool>;

    /// Records a pulled remote file, so that it is not fetched again.
    fn record_pulled(
        &self,
        tenant: &str,
        connector: &str,
        remote_path: &str,
        size: u64,
        mtime: u32,
        sha256: &str,
    ) -> Result<()>;

    /// The transfer log (of one connector, or all), newest first.
    fn transfers(&self, tenant: &str, connector: Option<&str>, limit: usize) -> Result<Vec<crate::Transfer>>;
}
