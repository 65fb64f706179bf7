//! The JSON views of sluice's resources: one typed shape per resource, serialised the same
//! way wherever it leaves sluice (the REST API, the CLI's `--json` output, webhook bodies).
//! With the `openapi` feature each also describes itself (utoipa), and the API's OpenAPI
//! document is generated from these types, so the document cannot drift from the answers.
//!
//! A view is built from a domain record by `From`; it carries no secrets (a tenant's
//! password hash and webhook secret, an API key's hash are never part of one).

use crate::access::{ApiKey, AuthorizedKey};
use crate::delivery::{About, Delivery};
use crate::history::{Counts, ImportRecord, ImportStatus, StoredError};
use crate::saved_export::{ExportFormat, ExportRun, RunCause, RunOutcome, SavedExport};
use crate::tenant::Tenant;
use serde::Serialize;
use std::collections::BTreeMap;

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// One import: a file (or a package of files) read into a tenant's records.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema), schema(as = Import))]
pub struct ImportView {
    pub id: i64,
    pub tenant: String,
    /// The import type (`students`, `oneroster`, ...).
    #[serde(rename = "type")]
    pub type_name: String,
    pub file_name: String,
    /// Where the file came from: `upload`, `sync`, `manifest`, `approval`...
    pub source: String,
    pub status: ImportStatus,
    /// The character encoding the file was read in.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub encoding: Option<String>,
    /// The delimiter the file was read with (`comma`, `tab`, `semicolon`, `pipe`).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub delimiter: Option<String>,
    /// Why the import failed or was held, in one sentence.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub message: Option<String>,
    /// What lenient reading accepted and normalised, grouped.
    pub warnings: Vec<String>,
    pub counts: Counts,
    pub created_ms: i64,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub finished_ms: Option<i64>,
    /// Who approved or discarded the import when it was held.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub decided_by: Option<String>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub decided_ms: Option<i64>,
    /// The newer applied import that superseded this held one.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub superseded_by: Option<i64>,
    /// Who looked at this failed or incomplete import (it left the operator's list), and when.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub acknowledged_by: Option<String>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub acknowledged_ms: Option<i64>,
}

impl From<&ImportRecord> for ImportView {
    fn from(r: &ImportRecord) -> Self {
        ImportView {
            id: r.id,
            tenant: r.tenant.clone(),
            type_name: r.type_name.clone(),
            file_name: r.file_name.clone(),
            source: r.source.clone(),
            status: r.status,
            encoding: r.encoding.clone(),
            delimiter: r.delimiter.clone(),
            message: r.message.clone(),
            warnings: r.warnings.clone(),
            counts: r.counts,
            created_ms: r.created_ms,
            finished_ms: r.finished_ms,
            decided_by: r.decided_by.clone(),
            decided_ms: r.decided_ms,
            superseded_by: r.superseded_by,
            acknowledged_by: r.acknowledged_by.clone(),
            acknowledged_ms: r.acknowledged_ms,
        }
    }
}

/// What an SFTP login may upload with: an SSH public key, without its key material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema), schema(as = Key))]
pub struct KeyView {
    pub algorithm: String,
    /// `SHA256:...`, as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
    pub comment: String,
}

impl From<&AuthorizedKey> for KeyView {
    fn from(k: &AuthorizedKey) -> Self {
        KeyView {
            algorithm: k.algorithm.clone(),
            fingerprint: k.fingerprint.clone(),
            comment: k.comment.clone(),
        }
    }
}

/// An API key, without its secret: only the first characters of the token are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema), schema(as = ApiKey))]
pub struct ApiKeyView {
    pub id: i64,
    /// The tenant the key acts for; `null` for an operator's key (every tenant).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub tenant: Option<String>,
    pub name: String,
    /// The token's first characters, to tell keys apart.
    pub prefix: String,
    pub created_ms: i64,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub revoked_ms: Option<i64>,
    /// `read` (nothing changed with it) or `write`.
    pub access: String,
    /// The import types it reaches (empty: all).
    pub types: Vec<String>,
}

impl From<&ApiKey> for ApiKeyView {
    fn from(k: &ApiKey) -> Self {
        ApiKeyView {
            id: k.id,
            tenant: match &k.owner {
                crate::access::KeyOwner::Tenant(t) => Some(t.clone()),
                crate::access::KeyOwner::Operator => None,
            },
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            created_ms: k.created_ms,
            revoked_ms: k.revoked_ms,
            access: k.scope.access().to_owned(),
            types: k.scope.types.clone(),
        }
    }
}

/// A notification of an import's end, by email or webhook, and how its sending went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema), schema(as = Delivery))]
pub struct DeliveryView {
    pub id: i64,
    /// The import it tells of (`null` for a failed export run).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub import: Option<i64>,
    /// The failed export run it tells of (`null` for an import).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub export_run: Option<i64>,
    /// `email` or `webhook`.
    pub channel: String,
    /// The address or URL.
    pub target: String,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    pub attempts: u32,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub last_error: Option<String>,
    pub created_ms: i64,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub finished_ms: Option<i64>,
}

impl From<&Delivery> for DeliveryView {
    fn from(d: &Delivery) -> Self {
        DeliveryView {
            id: d.id,
            import: match d.about {
                About::Import(id) => Some(id),
                About::ExportRun(_) => None,
            },
            export_run: match d.about {
                About::ExportRun(id) => Some(id),
                About::Import(_) => None,
            },
            channel: d.channel.as_str().to_owned(),
            target: d.target.clone(),
            status: d.status.clone(),
            attempts: d.attempts,
            last_error: d.last_error.clone(),
            created_ms: d.created_ms,
            finished_ms: d.finished_ms,
        }
    }
}

/// A saved export: what it writes, where, and when it runs by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema), schema(as = SavedExport))]
pub struct SavedExportView {
    pub name: String,
    /// The import type whose records it writes.
    #[serde(rename = "type")]
    pub type_name: String,
    pub format: ExportFormat,
    /// The columns, in order (empty: all of the type's).
    pub columns: Vec<String>,
    /// Only the records whose column holds the value (all must hold).
    #[serde(rename = "where")]
    pub filters: BTreeMap<String, String>,
    /// CSV: starts with a UTF-8 byte order mark.
    pub bom: bool,
    /// `on_demand`, `after_import` (after every import of its type that changed records), or
    /// a cron schedule read in the tenant's time zone.
    pub when: String,
    /// Where the tenant finds the file: `/exports/NAME.csv`.
    pub path: String,
    /// The connector each run also pushes the file to.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub to: Option<String>,
    /// Whether the file is kept in `/exports` (false: it goes to the connector alone).
    pub in_exports: bool,
}

impl From<&SavedExport> for SavedExportView {
    fn from(e: &SavedExport) -> Self {
        SavedExportView {
            name: e.name.to_string(),
            type_name: e.type_name.clone(),
            format: e.format,
            columns: e.columns.clone(),
            filters: e
                .filters
                .iter()
                .filter_map(|f| f.split_once('=').map(|(c, v)| (c.to_owned(), v.to_owned())))
                .collect(),
            bom: e.bom,
            when: e.when.as_str().to_owned(),
            path: format!("/{}/{}", crate::layout::EXPORTS, e.file_name()),
            to: e.push_to.as_ref().map(|c| c.to_string()),
            in_exports: e.in_exports,
        }
    }
}

/// A connector: a tenant's own SFTP server, without its credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema), schema(as = Connector))]
pub struct ConnectorView {
    pub name: String,
    /// `sftp://USER@HOST:PORT/PATH`.
    pub url: String,
    pub auth: crate::connector::AuthKind,
    /// The pinned host key (`TYPE BASE64`); `null`: none yet, nothing can be transferred.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub host_key: Option<String>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub fingerprint: Option<String>,
    /// Files are written to a temporary name and renamed when whole.
    pub rename: bool,
    /// Whether it pulls files, and when: `null`, or `on_demand` or a cron schedule.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub pull: Option<String>,
    /// After a pull: `keep`, `remove` or `move:DIR` (`null` when it does not pull).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub after_pull: Option<String>,
}

impl From<&crate::connector::Connector> for ConnectorView {
    fn from(c: &crate::connector::Connector) -> Self {
        ConnectorView {
            name: c.name.to_string(),
            url: c.address.to_string(),
            auth: c.auth,
            host_key: c.host_key.as_ref().map(|k| k.to_string()),
            fingerprint: c.host_key.as_ref().map(|k| k.fingerprint()),
            rename: c.rename,
            pull: c
                .pull
                .as_ref()
                .map(|p| p.schedule.as_ref().map_or("on_demand".to_owned(), |s| s.to_string())),
            after_pull: c.pull.as_ref().map(|p| p.after.as_text()),
        }
    }
}

/// One run of a saved export, as logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema), schema(as = ExportRun))]
pub struct ExportRunView {
    pub id: i64,
    /// The saved export's name.
    pub export: String,
    pub cause: RunCause,
    /// `running`, `written` or `failed` (a failed run wrote nothing: the last file stays).
    pub status: String,
    pub started_ms: i64,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub finished_ms: Option<i64>,
    /// Records written.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub rows: Option<u64>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub bytes: Option<u64>,
    /// Where the file was written (`/exports/NAME.csv`).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub destination: Option<String>,
    /// Why the run failed.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub error: Option<String>,
}

impl From<&ExportRun> for ExportRunView {
    fn from(r: &ExportRun) -> Self {
        let (status, rows, bytes, destination, error) = match &r.outcome {
            None => ("running", None, None, None, None),
            Some(RunOutcome::Written { rows, bytes, destination }) => {
                ("written", Some(*rows), Some(*bytes), Some(destination.clone()), None)
            }
            Some(RunOutcome::Failed(why)) => ("failed", None, None, None, Some(why.clone())),
        };
        ExportRunView {
            id: r.id,
            export: r.export.clone(),
            cause: r.cause,
            status: status.to_owned(),
            started_ms: r.started_ms,
            finished_ms: r.finished_ms,
            rows,
            bytes,
            destination,
            error,
        }
    }
}

/// When a tenant's imports run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TriggerName {
    OnUpload,
    Manual,
    Schedule,
    Manifest,
}

impl From<crate::Trigger> for TriggerName {
    fn from(t: crate::Trigger) -> Self {
        match t {
            crate::Trigger::OnUpload => TriggerName::OnUpload,
            crate::Trigger::Manual => TriggerName::Manual,
            crate::Trigger::Schedule => TriggerName::Schedule,
            crate::Trigger::Manifest => TriggerName::Manifest,
        }
    }
}

/// A tenant: its folders, the types it imports, and when.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema), schema(as = Tenant))]
pub struct TenantView {
    pub name: String,
    pub disabled: bool,
    /// The folders uploads are imported from.
    pub folders: Vec<String>,
    /// The import types the tenant's folders take.
    pub types: Vec<String>,
    pub trigger: TriggerName,
    /// The cron schedule (minute hour day month weekday), when one is set.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub schedule: Option<String>,
    /// The IANA time zone the schedule is read in.
    pub timezone: String,
}

impl TenantView {
    /// `types`: the import types of the tenant's folders (the type registry knows them).
    pub fn new(t: &Tenant, types: Vec<String>) -> Self {
        TenantView {
            name: t.name.as_str().to_owned(),
            disabled: t.disabled,
            folders: t.layout.import_folders().iter().map(|f| f.as_str().to_owned()).collect(),
            types,
            trigger: t.trigger.into(),
            schedule: t.schedule.as_ref().map(|c| c.as_str().to_owned()),
            timezone: t.timezone.clone(),
        }
    }
}

/// A safeguard: an import of `type` that would delete or change more than `percent` of its
/// records is held for approval.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema), schema(as = Safeguard))]
pub struct SafeguardView {
    #[serde(rename = "type")]
    pub type_name: String,
    /// `deleted` or `changed`.
    pub limit: String,
    pub percent: f64,
}

/// A tenant's settings. The webhook secret is write-only: it is never shown.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema), schema(as = Settings))]
pub struct SettingsView {
    /// Where uploads go: `folders` (a folder per type), `root` (files at `/` by their
    /// required names) or `both`.
    pub routing: String,
    pub trigger: TriggerName,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub schedule: Option<String>,
    pub timezone: String,
    /// Per import type, the trigger that overrides the tenant's.
    pub type_triggers: BTreeMap<String, TriggerName>,
    /// Per import type, its own schedule (cron): its uploads wait for it.
    pub type_schedules: BTreeMap<String, String>,
    /// Imports wait until uploads have been quiet this many seconds, then run as a set (0:
    /// each at once).
    pub settle_secs: u32,
    /// Date ranges (`FROM..TO`, the tenant's days) in which mirror imports delete nothing.
    pub blackouts: Vec<String>,
    pub safeguards: Vec<SafeguardView>,
    /// How files are read: `strictness`, `strictness.TYPE`, `delimiter.TYPE`.
    pub read_settings: BTreeMap<String, String>,
    /// Who is emailed when an import ends.
    pub notify_emails: Vec<String>,
    /// Where a JSON notification is POSTed when an import ends.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub webhook_url: Option<String>,
}

/// A tenant's settings as the audit log keeps them before and after a change: the settings
/// view and the folders (no secret: the view has none).
#[derive(Debug, Clone, Serialize)]
pub struct AuditedSettings {
    pub folders: Vec<String>,
    #[serde(flatten)]
    pub settings: SettingsView,
}

impl SettingsView {
    pub fn audited(t: &Tenant) -> AuditedSettings {
        let mut settings = SettingsView::from(t);
        // A webhook URL often carries a token in its path or query (Slack's do): the log keeps
        // its scheme and host only.
        settings.webhook_url = settings.webhook_url.map(|u| match u.split_once("://") {
            Some((scheme, rest)) => {
                let host = rest.split(['/', '?', '#']).next().unwrap_or("");
                format!("{scheme}://{host}/…")
            }
            None => "…".to_owned(),
        });
        AuditedSettings {
            folders: t.layout.import_folders().iter().map(|f| f.as_str().to_owned()).collect(),
            settings,
        }
    }
}

impl From<&Tenant> for SettingsView {
    fn from(t: &Tenant) -> Self {
        SettingsView {
            routing: t.routing.as_str().to_owned(),
            trigger: t.trigger.into(),
            schedule: t.schedule.as_ref().map(|c| c.as_str().to_owned()),
            timezone: t.timezone.clone(),
            type_triggers: t.type_triggers.iter().map(|(ty, g)| (ty.clone(), (*g).into())).collect(),
            type_schedules: t
                .type_schedules
                .iter()
                .map(|(ty, c)| (ty.clone(), c.as_str().to_owned()))
                .collect(),
            settle_secs: t.settle_secs,
            blackouts: t.blackouts.iter().map(ToString::to_string).collect(),
            safeguards: t
                .safeguards
                .iter()
                .map(|s| SafeguardView {
                    type_name: s.type_name.clone(),
                    limit: s.limit.as_str().to_owned(),
                    percent: s.percent,
                })
                .collect(),
            read_settings: t.read_settings.iter().map(|r| r.to_pair()).collect(),
            notify_emails: t.notify_emails.clone(),
            webhook_url: t.webhook.as_ref().map(|(url, _)| url.clone()),
        }
    }
}

/// The body of a webhook POST when an import ends (signed with the tenant's secret).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema), schema(as = ImportFinished))]
pub struct ImportFinishedEvent {
    /// Always `import.finished`.
    pub event: &'static str,
    /// The delivery's id: the same id on a retry.
    pub delivery: i64,
    pub import: ImportView,
    /// The first rejected rows (the report has all of them).
    pub first_errors: Vec<StoredError>,
}

/// The body of the webhook that tells of a saved export's failed run.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema), schema(as = ExportFailed))]
pub struct ExportFailedEvent {
    /// Always `export.failed`.
    pub event: &'static str,
    /// The delivery's id: the same id on a retry.
    pub delivery: i64,
    pub tenant: String,
    pub run: ExportRunView,
}

impl ExportFailedEvent {
    pub fn new(delivery: i64, tenant: &str, run: ExportRunView) -> Self {
        ExportFailedEvent { event: "export.failed", delivery, tenant: tenant.to_owned(), run }
    }
}

impl ImportFinishedEvent {
    pub fn new(delivery: i64, import: ImportView, first_errors: Vec<StoredError>) -> Self {
        ImportFinishedEvent { event: "import.finished", delivery, import, first_errors }
    }
}

/// Records deleted by hand (the API's `DELETE .../records/{type}/{key}`, `sluice records delete
/// --json`). Each key deleted leaves a tombstone: the next import that carries it adds it back
/// and says so in its warnings.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema), schema(as = RecordsDeleted))]
pub struct RecordsDeletedView {
    pub tenant: String,
    #[serde(rename = "type")]
    pub type_name: String,
    /// The keys deleted (a key of several columns joined by `+`).
    pub deleted: Vec<String>,
    /// Records deactivated because they referred to a deleted one (`on_delete = "deactivate"`).
    pub deactivated: u64,
    /// Records left referring to a deleted one (`on_delete = "keep"`, or `"hold"` confirmed).
    pub kept: u64,
}

/// One entry of the audit log: who did what, when, from where, and how it ended.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema), schema(as = AuditEntry))]
pub struct AuditView {
    pub id: i64,
    pub at_ms: i64,
    /// The tenant acted on (none: the operator's own: its accounts, bans).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub tenant: Option<String>,
    /// `cli` (an OS login on the server), `account` (a dashboard account), `api_key`, `system`.
    pub actor_kind: crate::audit::ActorKind,
    pub actor: String,
    /// The client's address, or `local` for the command line.
    pub source: String,
    /// `tenant.settings`, `import.approve`, ...
    pub action: String,
    pub target: String,
    pub outcome: crate::audit::AuditOutcome,
    /// What it was before and after, where that makes sense (settings), as JSON text.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub before: Option<String>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub after: Option<String>,
}

impl From<&crate::audit::AuditEntry> for AuditView {
    fn from(e: &crate::audit::AuditEntry) -> Self {
        AuditView {
            id: e.id,
            at_ms: e.at_ms,
            tenant: e.tenant.clone(),
            actor_kind: e.actor.kind,
            actor: e.actor.name.clone(),
            source: e.actor.source.clone(),
            action: e.action.clone(),
            target: e.target.clone(),
            outcome: e.outcome,
            before: e.before.clone(),
            after: e.after.clone(),
        }
    }
}
