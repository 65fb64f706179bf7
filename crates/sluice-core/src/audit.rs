//! The audit log's records: who changed what, when, from where, and how it ended. Pure. An
//! entry never holds a secret: passwords, keys and tokens are named, never written (a
//! setting's value is shown through `SettingsView`, which has none).

use serde::Serialize;

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A command run on the server's machine (`sluice tenant set ...`): the OS login.
    Cli,
    /// A dashboard account (its email).
    Account,
    /// An API key (its name and id).
    ApiKey,
    /// sluice itself (a schedule, the defender).
    System,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Cli => "cli",
            ActorKind::Account => "account",
            ActorKind::ApiKey => "api_key",
            ActorKind::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cli" => Some(ActorKind::Cli),
            "account" => Some(ActorKind::Account),
            "api_key" => Some(ActorKind::ApiKey),
            "system" => Some(ActorKind::System),
            _ => None,
        }
    }
}

/// Who acted, and from where (an address, or `local` for the command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub kind: ActorKind,
    pub name: String,
    pub source: String,
}

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    Done,
    /// Not allowed, or refused as given (a bad value): nothing changed.
    Refused,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Done => "done",
            AuditOutcome::Refused => "refused",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "done" => Some(AuditOutcome::Done),
            "refused" => Some(AuditOutcome::Refused),
            _ => None,
        }
    }
}

/// The actions the log records, by name (`tenant.settings`, ...).
pub mod action {
    pub const TENANT_ADD: &str = "tenant.add";
    pub const TENANT_DISABLE: &str = "tenant.disable";
    pub const TENANT_ENABLE: &str = "tenant.enable";
    pub const TENANT_PASSWORD: &str = "tenant.password";
    pub const TENANT_SETTINGS: &str = "tenant.settings";
    pub const TENANT_REMOVE: &str = "tenant.remove";
    pub const USER_REMOVE: &str = "user.remove";
    pub const SSH_KEY_ADD: &str = "ssh_key.add";
    pub const SSH_KEY_REMOVE: &str = "ssh_key.remove";
    pub const USER_ADD: &str = "user.add";
    pub const USER_GRANT: &str = "user.grant";
    pub const USER_ROLE: &str = "user.role";
    pub const USER_UNGRANT: &str = "user.ungrant";
    pub const USER_PASSWORD: &str = "user.password";
    pub const ADMIN_PASSWORD: &str = "admin.password";
    pub const API_KEY_ADD: &str = "api_key.add";
    pub const API_KEY_REVOKE: &str = "api_key.revoke";
    pub const IMPORT_RUN: &str = "import.run";
    pub const IMPORT_SYNC: &str = "import.sync";
    pub const IMPORT_APPROVE: &str = "import.approve";
    pub const IMPORT_DISCARD: &str = "import.discard";
    pub const IMPORT_ACKNOWLEDGE: &str = "import.acknowledge";
    pub const EXPORT_WRITE: &str = "export.write";
    pub const EXPORT_SAVE: &str = "export.save";
    pub const EXPORT_REMOVE: &str = "export.remove";
    pub const EXPORT_RUN: &str = "export.run";
    pub const CONNECTOR_ADD: &str = "connector.add";
    pub const CONNECTOR_REMOVE: &str = "connector.remove";
    pub const CONNECTOR_PIN: &str = "connector.pin";
    pub const CONNECTOR_PUSH: &str = "connector.push";
    pub const CONNECTOR_PULL: &str = "connector.pull";
    pub const BAN_LIFT: &str = "ban.lift";
    pub const BACKUP: &str = "backup.make";
    pub const RESTORE: &str = "backup.restore";
    pub const MIGRATE: &str = "state.migrate";
    pub const STORAGE_MIGRATE: &str = "storage.migrate";
    pub const RECORD_DELETE: &str = "record.delete";
    pub const LOGIN: &str = "login";
    pub const PASSWORD_RESET_ASKED: &str = "password_reset.asked";
    pub const PASSWORD_RESET: &str = "password_reset.used";
    /// A person or key asked for something it may not do (403): what it asked, refused.
    pub const ACCESS_REFUSED: &str = "access.refused";
    /// The defender banned an address after too many failed logins.
    pub const BAN: &str = "ban";
    pub const SFTP_LOGIN: &str = "sftp.login";
    pub const LOGIN_SECOND_FACTOR: &str = "login.second_factor";
    pub const SECOND_FACTOR_ON: &str = "second_factor.on";
    pub const SECOND_FACTOR_OFF: &str = "second_factor.off";
    pub const RECOVERY_CODES: &str = "second_factor.recovery_codes";
}

/// An entry as it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEntry<'a> {
    /// The tenant acted on (`None`: the operator's own: accounts of the operator, bans).
    pub tenant: Option<&'a str>,
    pub actor: &'a Actor,
    pub action: &'a str,
    /// What was acted on, in words (`students.csv`, `import 17`, `key SHA256:...`).
    pub target: &'a str,
    pub outcome: AuditOutcome,
    /// What the thing was before and after, as JSON, where that makes sense (settings).
    pub before: Option<String>,
    pub after: Option<String>,
}

/// Which entries to read, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// One tenant's (`None`: every entry, the operator's view).
    pub tenant: Option<String>,
    /// From this time on (milliseconds since the epoch).
    pub since_ms: Option<i64>,
    /// Older than this entry (the next page after one that ended at it).
    pub before_id: Option<i64>,
    /// One action, or a family of them: `login` is `login` and `login.second_factor`, `user`
    /// every `user.*`.
    pub action: Option<String>,
    pub limit: usize,
}

/// An entry as it is read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    pub at_ms: i64,
    pub tenant: Option<String>,
    pub actor: Actor,
    pub action: String,
    pub target: String,
    pub outcome: AuditOutcome,
    pub before: Option<String>,
    pub after: Option<String>,
}
