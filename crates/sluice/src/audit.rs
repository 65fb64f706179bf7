//! The command line's part of the audit log: every command that changes something is
//! recorded once, after it ran (done, or refused with nothing changed), with the OS login that
//! ran it; a settings change with the settings before and after. `sluice audit` reads the log.
//! Secrets never reach it: commands take passwords on standard input, and settings are shown
//! through `SettingsView`, which has no secret.

use crate::cli::*;
use crate::dirs::DataDirs;
use crate::failure::Failure;
use sluice_core::audit::{Actor, ActorKind, AuditOutcome, NewAuditEntry, action};
use sluice_core::views::SettingsView;

/// What a command changes, for the log.
pub(crate) struct Change {
    tenant: Option<String>,
    action: &'static str,
    target: String,
    /// A settings change: the settings are logged before and after.
    settings: bool,
    /// What names the tenant when the command does not (an import's id, an account's email).
    tenant_of: Option<TenantOf>,
}

enum TenantOf {
    Import(i64),
    Account(String),
}

fn change(tenant: Option<&str>, action: &'static str, target: impl Into<String>) -> Option<Change> {
    Some(Change {
        tenant: tenant.map(str::to_owned),
        action,
        target: target.into(),
        settings: false,
        tenant_of: None,
    })
}

fn of(c: Option<Change>, tenant_of: TenantOf) -> Option<Change> {
    c.map(|c| Change { tenant_of: Some(tenant_of), ..c })
}

/// The change `cmd` makes, if it makes one (reading commands make none).
pub(crate) fn change_of(cmd: &Command) -> Option<Change> {
    match cmd {
        Command::Tenant(t) => match t {
            TenantCommand::Add { name, .. } => change(Some(name), action::TENANT_ADD, name.as_str()),
            TenantCommand::Disable { name } => change(Some(name), action::TENANT_DISABLE, name.as_str()),
            TenantCommand::Enable { name } => change(Some(name), action::TENANT_ENABLE, name.as_str()),
            TenantCommand::Passwd { name, .. } => {
                change(Some(name), action::TENANT_PASSWORD, "SFTP password")
            }
            TenantCommand::Set { name, settings } => {
                // The keys changed, never their values (a webhook secret is one).
                let keys: Vec<&str> = settings.iter().map(|s| s.split('=').next().unwrap_or(s)).collect();
                Some(Change {
                    tenant: Some(name.to_string()),
                    action: action::TENANT_SETTINGS,
                    target: keys.join(", "),
                    settings: true,
                    tenant_of: None,
                })
            }
            TenantCommand::Remove { name, yes: true } => {
                change(Some(name), action::TENANT_REMOVE, name.as_str())
            }
            TenantCommand::Remove { yes: false, .. }
            | TenantCommand::List { .. }
            | TenantCommand::Show { .. } => None,
        },
        Command::Key(k) => match k {
            KeyCommand::Add { tenant, file } => {
                change(Some(tenant), action::SSH_KEY_ADD, format!("keys from {}", file.display()))
            }
            KeyCommand::Remove { tenant, fingerprint } => {
                change(Some(tenant), action::SSH_KEY_REMOVE, format!("key {fingerprint}"))
            }
            KeyCommand::List { .. } => None,
        },
        Command::User(u) => match u {
            UserCommand::Add { tenant, email, role, .. } => {
                change(Some(tenant), action::USER_ADD, format!("{email} ({role})"))
            }
            UserCommand::Grant { email } => {
                of(change(None, action::USER_GRANT, email.as_str()), TenantOf::Account(email.clone()))
            }
            UserCommand::Remove { email } => {
                of(change(None, action::USER_REMOVE, email.as_str()), TenantOf::Account(email.clone()))
            }
            UserCommand::Role { email, role } => of(
                change(None, action::USER_ROLE, format!("{email} ({role})")),
                TenantOf::Account(email.clone()),
            ),
            UserCommand::Ungrant { email } => {
                of(change(None, action::USER_UNGRANT, email.as_str()), TenantOf::Account(email.clone()))
            }
            UserCommand::Passwd { email, .. } => {
                of(change(None, action::USER_PASSWORD, email.as_str()), TenantOf::Account(email.clone()))
            }
            UserCommand::SecondFactorOff { email } => {
                of(change(None, action::SECOND_FACTOR_OFF, email.as_str()), TenantOf::Account(email.clone()))
            }
            UserCommand::List { .. } => None,
        },
        Command::Admin(AdminCommand::Passwd { .. }) => change(None, action::ADMIN_PASSWORD, "admin"),
        Command::Apikey(a) => match a {
            ApiKeyCommand::Add { tenant, name, scope, types, .. } => change(
                tenant.as_deref(),
                action::API_KEY_ADD,
                format!(
                    "{} (scope {scope}{})",
                    if name.is_empty() { "(unnamed)" } else { name },
                    if types.is_empty() { String::new() } else { format!(", types {}", types.join(",")) }
                ),
            ),
            ApiKeyCommand::Revoke { id } => change(None, action::API_KEY_REVOKE, format!("API key {id}")),
            ApiKeyCommand::List { .. } => None,
        },
        Command::Defender(DefenderCommand::Unban { address }) => {
            change(None, action::BAN_LIFT, address.as_str())
        }
        Command::Defender(DefenderCommand::List { .. }) => None,
        Command::Import { show: None, tenant, files, dry_run: false, .. } => {
            let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            change(tenant.as_deref(), action::IMPORT_RUN, names.join(", "))
        }
        Command::Sync { tenant } => change(Some(tenant), action::IMPORT_SYNC, "files waiting"),
        Command::Approve { id } => {
            of(change(None, action::IMPORT_APPROVE, format!("import {id}")), TenantOf::Import(*id))
        }
        Command::Discard { id } => {
            of(change(None, action::IMPORT_DISCARD, format!("import {id}")), TenantOf::Import(*id))
        }
        Command::Records { change: Some(RecordsCommand::Delete { tenant, type_name, keys, .. }), .. } => {
            change(Some(tenant), action::RECORD_DELETE, format!("{type_name} {}", keys.join(", ")))
        }
        Command::Export { saved: None, tenant, what, out: None, photos } => {
            let what = if *photos { "photos".to_owned() } else { what.type_name.clone().unwrap_or_default() };
            change(tenant.as_deref(), action::EXPORT_WRITE, what)
        }
        Command::Export { saved: Some(e), .. } => match e {
            ExportCommand::Add { tenant, name, .. } => {
                change(Some(tenant), action::EXPORT_SAVE, name.as_str())
            }
            ExportCommand::Remove { tenant, name } => {
                change(Some(tenant), action::EXPORT_REMOVE, name.as_str())
            }
            ExportCommand::Run { tenant, name } => change(Some(tenant), action::EXPORT_RUN, name.as_str()),
            ExportCommand::List { .. } | ExportCommand::Runs { .. } => None,
        },
        Command::Connector(c) => match c {
            ConnectorCommand::Add { tenant, name, .. } => {
                change(Some(tenant), action::CONNECTOR_ADD, name.as_str())
            }
            ConnectorCommand::Remove { tenant, name } => {
                change(Some(tenant), action::CONNECTOR_REMOVE, name.as_str())
            }
            ConnectorCommand::Test { tenant, name, accept: true } => {
                change(Some(tenant), action::CONNECTOR_PIN, name.as_str())
            }
            ConnectorCommand::Push { tenant, name, file, .. } => {
                change(Some(tenant), action::CONNECTOR_PUSH, format!("{} to {name}", file.display()))
            }
            ConnectorCommand::Pull { tenant, name } => {
                change(Some(tenant), action::CONNECTOR_PULL, name.as_str())
            }
            ConnectorCommand::Test { .. } | ConnectorCommand::List { .. } | ConnectorCommand::Log { .. } => {
                None
            }
        },
        // A copy of everything left the server: who made it, and where to.
        Command::Backup { file } => change(None, action::BACKUP, file.display().to_string()),
        // Recorded in the restored log: where it came from.
        Command::Restore { file } => change(None, action::RESTORE, file.display().to_string()),
        _ => None,
    }
}

/// Who runs this command: the OS login (from the environment the shell gives every
/// command), on this machine.
pub(crate) fn cli_actor() -> Actor {
    Actor { kind: ActorKind::Cli, name: login(), source: "local".to_owned() }
}

/// The OS account running this process: its uid's name in /etc/passwd (the environment's
/// `USER` is whatever the caller set), else `uid N`.
fn login() -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) else { return "unknown login".to_owned() };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            (fields.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// Names the change's tenant from the account it is about, as it is before the command runs
/// (a removed account has no tenant afterwards).
pub(crate) fn resolve_tenant(dirs: &DataDirs, c: &mut Change) {
    if let Some(TenantOf::Account(email)) = &c.tenant_of
        && let Ok(store) = dirs.open_store()
        && let Ok(Some(account)) = store.account_by_email(&email.trim().to_lowercase())
    {
        c.tenant = account.tenant;
        c.tenant_of = None;
    }
}

/// The settings of the change's tenant as the log shows them (JSON), if it is a settings change.
pub(crate) fn snapshot(dirs: &DataDirs, c: &Change) -> Option<String> {
    if !c.settings {
        return None;
    }
    let store = dirs.open_store().ok()?;
    let t = store.tenant(c.tenant.as_deref()?).ok()??;
    serde_json::to_string(&SettingsView::audited(&t)).ok()
}

/// Records `c`, as it ended. A log that cannot be written is said on stderr; the command's own
/// outcome stands.
pub(crate) fn record(dirs: &DataDirs, c: &Change, before: Option<String>, result: &Result<(), Failure>) {
    // An import that ran ends with exit code 1 when it rejected rows: it was done (its own
    // history says how it went); a refused one ends with 2 (usage) or before it started.
    let ran = match result {
        Ok(()) => true,
        Err(f) => f.code == 1 && matches!(c.action, action::IMPORT_RUN | action::IMPORT_SYNC),
    };
    let outcome = if ran { AuditOutcome::Done } else { AuditOutcome::Refused };
    let after = if result.is_ok() { snapshot(dirs, c) } else { None };
    let Ok(store) = dirs.open_store() else { return };
    let actor = cli_actor();
    let tenant = match &c.tenant_of {
        Some(TenantOf::Import(id)) => store.import(*id).ok().flatten().map(|r| r.tenant),
        Some(TenantOf::Account(email)) => store.account_by_email(email).ok().flatten().and_then(|a| a.tenant),
        None => c.tenant.clone(),
    };
    let entry = NewAuditEntry {
        tenant: tenant.as_deref(),
        actor: &actor,
        action: c.action,
        target: &c.target,
        outcome,
        before,
        after,
    };
    if let Err(e) = store.record_audit(&entry) {
        eprintln!("warning: the audit log could not be written: {e}");
    }
}

/// What `sluice audit` was asked to show.
pub(crate) struct Shown<'a> {
    pub tenant: Option<&'a str>,
    pub since: Option<&'a str>,
    pub before: Option<i64>,
    pub action: Option<String>,
    pub limit: usize,
}

/// `sluice audit`: the log, newest first.
pub(crate) fn list(dirs: &DataDirs, shown: Shown<'_>, json: bool) -> Result<(), Failure> {
    let since_ms = match shown.since {
        None => None,
        Some(day) => {
            let date: jiff::civil::Date = day.parse().map_err(|_| {
                crate::failure::usage(anyhow::anyhow!("--since {day:?} is not a date (YYYY-MM-DD)"))
            })?;
            let at = date.to_zoned(jiff::tz::TimeZone::UTC).map_err(|e| crate::failure::usage(e.into()))?;
            Some(at.timestamp().as_millisecond())
        }
    };
    let store = dirs.open_store().map_err(crate::failure::usage)?;
    // The operator's command: a removed tenant's entries stay readable by its name (and a
    // tenant added again under it shows both; `--since` narrows them).
    let filter = sluice_core::audit::AuditFilter {
        tenant: shown.tenant.map(str::to_owned),
        since_ms,
        before_id: shown.before,
        action: shown.action,
        limit: shown.limit,
    };
    let entries = store.audit_entries(&filter)?;
    if json {
        let views: Vec<sluice_core::views::AuditView> = entries.iter().map(Into::into).collect();
        outln!("{}", serde_json::to_string_pretty(&views)?);
        return Ok(());
    }
    // What a client typed (a login name, a record key) is shown with its control characters
    // escaped: a line break or an escape sequence cannot forge or hide a line.
    let shown = |s: &str| -> String { s.chars().flat_map(char::escape_default).collect() };
    for e in &entries {
        outln!(
            "{:>6} {} {:<10} {:<24} {:<16} {:<20} {:<8} {}",
            e.id,
            crate::connectors::at_text(e.at_ms),
            shown(e.tenant.as_deref().unwrap_or("-")),
            format!("{} {}", e.actor.kind.as_str(), shown(&e.actor.name)),
            shown(&e.actor.source),
            e.action,
            e.outcome.as_str(),
            shown(&e.target)
        );
    }
    Ok(())
}
