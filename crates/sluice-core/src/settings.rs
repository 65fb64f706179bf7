//! One change of a tenant's settings. The CLI (`sluice tenant set T KEY=VALUE...`), the API
//! (`PATCH /api/v1/tenants/{t}/settings`) and the dashboard's settings form all build a
//! [`SettingsChange`] from `KEY=VALUE` pairs with [`SettingsChange::set`] (every value is
//! parsed and checked there, against the import types), and the store applies it with
//! [`SettingsChange::apply`] inside one transaction: the checks that need the tenant's current
//! settings (a schedule trigger needs a schedule) run there, on the settings as they are at
//! that moment. A refused change changes nothing.

use crate::import::{ImportTypes, ReadSetting, SafeguardSetting};
use crate::schedule::Cron;
use crate::{FolderName, Tenant, TreeLayout, Trigger};

/// The keys `sluice tenant set` knows, for error messages.
pub const KEYS: &str = "types, folders, routing, trigger, trigger.TYPE, schedule, schedule.TYPE, timezone, settle_secs, blackout, safeguard.TYPE.deleted, \
     safeguard.TYPE.changed, strictness, strictness.TYPE (lenient, strict or default), delimiter.TYPE, notify.email, notify.webhook, \
     notify.webhook_secret";

/// Why a change was refused: the setting and the reason, e.g.
/// `timezone: unknown time zone "Mars/Olympus"; use an IANA name such as America/Chicago or UTC`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {reason}")]
pub struct SettingsError {
    pub setting: String,
    pub reason: String,
}

impl SettingsError {
    fn new(setting: &str, reason: impl Into<String>) -> Self {
        Self { setting: setting.to_owned(), reason: reason.into() }
    }

    /// A short machine-readable code for the API (`bad_trigger`, `bad_schedule`, ...).
    pub fn code(&self) -> &'static str {
        let family = self.setting.split('.').next().unwrap_or("");
        match family {
            "trigger" => "bad_trigger",
            "schedule" | "settle_secs" | "blackout" => "bad_schedule",
            "timezone" => "bad_timezone",
            "safeguard" => "bad_safeguard",
            "notify" => "bad_notify",
            "folders" | "types" | "routing" => "bad_folders",
            "strictness" | "delimiter" => "bad_reading",
            _ => "bad_setting",
        }
    }
}

/// What a change may refer to: the import types, and whether webhooks may point at private
/// addresses (`[notifications] allow_private_webhooks`).
#[derive(Clone, Copy)]
pub struct SettingsContext<'a> {
    pub types: &'a ImportTypes,
    pub allow_private_webhooks: bool,
}

/// A parsed, checked change of some of a tenant's settings; what is not named stays as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SettingsChange {
    folders: Option<Vec<FolderName>>,
    routing: Option<crate::Routing>,
    trigger: Option<Trigger>,
    /// `None`: the type follows the tenant's trigger again.
    type_triggers: Vec<(String, Option<Trigger>)>,
    /// `Some(None)`: no schedule.
    schedule: Option<Option<Cron>>,
    /// By type; `None`: the type's own schedule is removed.
    type_schedules: Vec<(String, Option<Cron>)>,
    settle_secs: Option<u32>,
    blackouts: Option<Vec<crate::tenant::Blackout>>,
    timezone: Option<String>,
    safeguards: Vec<SafeguardSetting>,
    /// By key; `None`: the tenant's setting is removed (`strictness=default`).
    read_settings: Vec<(String, Option<ReadSetting>)>,
    notify_emails: Option<Vec<String>>,
    /// "" for no webhook.
    webhook_url: Option<String>,
    webhook_secret: Option<String>,
}

/// At most this many per-type entries in one change (two safeguard limits per type; more is a
/// mistake, or an attempt to keep the store busy).
pub const MAX_ENTRIES: usize = 256;

impl SettingsChange {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether checking `key` needs the import types (a caller may skip loading them).
    pub fn names_types(key: &str) -> bool {
        key == "types"
            || ["trigger.", "schedule.", "safeguard.", "strictness.", "delimiter."]
                .iter()
                .any(|p| key.starts_with(p))
    }

    /// Adds `key=value` to the change, parsed and checked; a later value of the same key
    /// replaces an earlier one.
    pub fn set(&mut self, key: &str, value: &str, cx: SettingsContext<'_>) -> Result<(), SettingsError> {
        let err = |reason: String| SettingsError::new(key, reason);
        let entries = self.type_triggers.len()
            + self.type_schedules.len()
            + self.safeguards.len()
            + self.read_settings.len();
        if entries >= MAX_ENTRIES {
            return Err(err(format!("at most {MAX_ENTRIES} per-type settings in one change")));
        }
        // How files are read: strictness, strictness.TYPE, delimiter.TYPE; `default` removes
        // the tenant's own strictness.
        if (key == "strictness" || key.starts_with("strictness.")) && value == "default" {
            if let Some(type_name) = key.strip_prefix("strictness.")
                && cx.types.get(type_name).is_none()
            {
                return Err(err(format!("no import type {type_name:?}; `sluice types` lists them")));
            }
            self.read_settings.retain(|(k, _)| k != key);
            self.read_settings.push((key.to_owned(), None));
            return Ok(());
        }
        if let Some(read) = ReadSetting::parse(key, value).map_err(|e| SettingsError::new(key, e))? {
            if let Some(type_name) = read.type_name()
                && cx.types.get(type_name).is_none()
            {
                return Err(err(format!("no import type {type_name:?}; `sluice types` lists them")));
            }
            self.read_settings.retain(|(k, _)| *k != read.key());
            self.read_settings.push((read.key(), Some(read)));
            return Ok(());
        }
        match key {
            "folders" => {
                self.folders = Some(FolderName::parse_list(value).map_err(|e| err(e.to_string()))?);
            }
            "types" => {
                // A tenant imports the types whose folders it has.
                let mut folders: Vec<FolderName> = Vec::new();
                for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    let t = cx.types.get(name).ok_or_else(|| {
                        err(format!("unknown import type {name:?}; `sluice types` lists them"))
                    })?;
                    let folder = t.folder.clone().ok_or_else(|| {
                        err(format!("import type {name:?} has no folder, so a tenant cannot upload it"))
                    })?;
                    if !folders.contains(&folder) {
                        folders.push(folder);
                    }
                }
                self.folders = Some(folders);
            }
            "routing" => {
                self.routing = Some(crate::Routing::parse(value.trim()).ok_or_else(|| {
                    err(format!(
                        "{value:?}: expected folders (a folder per type), root (files at / by their required names) or both"
                    ))
                })?);
            }
            "trigger" => {
                self.trigger = Some(Trigger::parse(value).ok_or_else(|| {
                    err(format!("{value:?}: expected on_upload, manual, schedule or manifest"))
                })?);
            }
            per_type if per_type.starts_with("trigger.") => {
                let type_name = &per_type["trigger.".len()..];
                if cx.types.get(type_name).and_then(|t| t.folder.as_ref()).is_none() {
                    return Err(err(format!(
                        "no import type {type_name:?} with a folder; `sluice types` lists them"
                    )));
                }
                let trigger = match value {
                    "default" => None,
                    v => match Trigger::parse(v) {
                        Some(Trigger::Schedule) => {
                            return Err(err(format!(
                                "give the type its own schedule with schedule.{type_name}=CRON (its uploads then wait for it)"
                            )));
                        }
                        Some(t) => Some(t),
                        None => {
                            return Err(err(format!(
                                "{v:?}: expected on_upload, manual, manifest or default"
                            )));
                        }
                    },
                };
                self.type_triggers.retain(|(t, _)| t != type_name);
                self.type_triggers.push((type_name.to_owned(), trigger));
            }
            per_type if per_type.starts_with("schedule.") => {
                let type_name = &per_type["schedule.".len()..];
                if cx.types.get(type_name).and_then(|t| t.folder.as_ref()).is_none() {
                    return Err(err(format!(
                        "no import type {type_name:?} with a folder; `sluice types` lists them"
                    )));
                }
                let cron = match value.trim() {
                    "" | "default" => None,
                    v => Some(Cron::parse(v).map_err(|e| err(e.to_string()))?),
                };
                self.type_schedules.retain(|(t, _)| t != type_name);
                self.type_schedules.push((type_name.to_owned(), cron));
            }
            "settle_secs" => {
                let secs: u32 = value.trim().parse().map_err(|_| {
                    err(format!("{value:?}: a number of seconds (0: import each upload at once)"))
                })?;
                if secs > 86_400 {
                    return Err(err("at most 86400 (a day)".into()));
                }
                self.settle_secs = Some(secs);
            }
            "blackout" if value.contains(';') => {
                return Err(err(
                    "separate date ranges with commas: 2026-06-15..2026-08-20,2026-12-20..2027-01-03".into(),
                ));
            }
            "blackout" => {
                self.blackouts = Some(crate::tenant::Blackout::parse_list(value).map_err(|e| {
                    err(format!("{e}; write date ranges such as 2026-06-15..2026-08-20, separated by commas"))
                })?);
            }
            "schedule" => {
                self.schedule = Some(match value.trim() {
                    "" => None,
                    v => Some(Cron::parse(v).map_err(|e| err(e.to_string()))?),
                });
            }
            "timezone" => {
                check_timezone(value.trim()).map_err(err)?;
                self.timezone = Some(value.trim().to_owned());
            }
            limit if limit.starts_with("safeguard.") => {
                let setting = SafeguardSetting::parse(&limit["safeguard.".len()..], value).map_err(err)?;
                if !cx.types.has_records_of(&setting.type_name) {
                    return Err(err(format!(
                        "no import type {:?}; `sluice types` lists them",
                        setting.type_name
                    )));
                }
                self.safeguards.retain(|s| s.type_name != setting.type_name || s.limit != setting.limit);
                self.safeguards.push(setting);
            }
            "notify.email" => {
                self.notify_emails = Some(crate::people::recipients([value]).map_err(err)?);
            }
            "notify.webhook" => {
                let url = value.trim();
                let url = crate::webhook::check_url(url, cx.allow_private_webhooks)
                    .map_err(|e| err(e.to_string()))?;
                self.webhook_url = Some(url);
            }
            "notify.webhook_secret" => self.webhook_secret = Some(value.to_owned()),
            other => {
                return Err(SettingsError::new(
                    other,
                    format!("unknown tenant setting; known settings: {KEYS}"),
                ));
            }
        }
        Ok(())
    }

    /// Applies the change to `tenant` as it is now, or refuses it (leaving `tenant` as it was
    /// only in the sense that the caller must then not write it).
    pub fn apply(&self, tenant: &mut Tenant) -> Result<(), SettingsError> {
        if let Some(folders) = &self.folders {
            tenant.layout = TreeLayout::new(folders.clone());
        }
        if let Some(routing) = self.routing {
            tenant.routing = routing;
        }
        if let Some(trigger) = self.trigger {
            tenant.trigger = trigger;
        }
        for (type_name, trigger) in &self.type_triggers {
            tenant.type_triggers.retain(|(t, _)| t != type_name);
            if let Some(trigger) = trigger {
                tenant.type_triggers.push((type_name.clone(), *trigger));
            }
        }
        if let Some(schedule) = &self.schedule {
            tenant.schedule = schedule.clone();
        }
        for (type_name, cron) in &self.type_schedules {
            tenant.type_schedules.retain(|(t, _)| t != type_name);
            if let Some(cron) = cron {
                tenant.type_schedules.push((type_name.clone(), cron.clone()));
            }
        }
        if let Some(secs) = self.settle_secs {
            tenant.settle_secs = secs;
        }
        if let Some(blackouts) = &self.blackouts {
            tenant.blackouts = blackouts.clone();
        }
        if let Some(tz) = &self.timezone {
            tenant.timezone = tz.clone();
        }
        for s in &self.safeguards {
            tenant.safeguards.retain(|o| o.type_name != s.type_name || o.limit != s.limit);
            tenant.safeguards.push(s.clone());
        }
        for (key, r) in &self.read_settings {
            tenant.read_settings.retain(|o| o.key() != *key);
            tenant.read_settings.extend(r.clone());
        }
        if let Some(emails) = &self.notify_emails {
            tenant.notify_emails = emails.clone();
        }
        if self.webhook_url.is_some() || self.webhook_secret.is_some() {
            let (old_url, old_secret) = tenant.webhook.clone().unwrap_or_default();
            let url = self.webhook_url.clone().unwrap_or(old_url);
            let secret = self.webhook_secret.clone().unwrap_or(old_secret);
            if url.is_empty() && self.webhook_secret.as_deref().is_some_and(|s| !s.is_empty()) {
                // Kept nowhere, it would leave the webhook set later unsigned.
                return Err(SettingsError::new(
                    "notify.webhook_secret",
                    "there is no webhook to sign: give the webhook's URL in the same change",
                ));
            }
            tenant.webhook = (!url.is_empty()).then_some((url, secret));
        }
        if tenant.trigger == Trigger::Schedule && tenant.schedule.is_none() {
            return Err(SettingsError::new(
                if self.schedule.is_some() { "schedule" } else { "trigger" },
                "a schedule trigger needs a schedule (cron: minute hour day month weekday, e.g. \"0 2 * * *\")",
            ));
        }
        Ok(())
    }
}

/// Checks an IANA time zone name the way the scheduler looks it up (`jiff::tz::TimeZone::get`:
/// the system's zoneinfo, else the database built into sluice), so that a zone accepted here is
/// one the schedule runs in. (The one read of the system in this crate.)
pub fn check_timezone(name: &str) -> Result<(), String> {
    jiff::tz::TimeZone::get(name)
        .map(|_| ())
        .map_err(|_| format!("unknown time zone {name:?}; use an IANA name such as America/Chicago or UTC"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TenantName;

    fn types() -> ImportTypes {
        let toml = "[[type]]\nname = \"students\"\nfolder = \"students\"\nkey = [\"sisId\"]\nmode = \"mirror\"\n\
                    [[type.column]]\nname = \"sisId\"\nrequired = true\nkind = \"id\"\n";
        ImportTypes::parse(&[("t.toml".into(), toml.into())]).unwrap()
    }

    fn tenant() -> Tenant {
        Tenant::new(1, TenantName::parse("acme").unwrap(), TreeLayout::new(vec![]), 0)
    }

    fn change(pairs: &[(&str, &str)]) -> Result<SettingsChange, SettingsError> {
        let types = types();
        let cx = SettingsContext { types: &types, allow_private_webhooks: false };
        let mut c = SettingsChange::default();
        for (k, v) in pairs {
            c.set(k, v, cx)?;
        }
        Ok(c)
    }

    #[test]
    fn a_bad_value_names_its_setting_and_what_to_do() {
        let e = change(&[("trigger", "schedule"), ("schedule", "0 2 * * *"), ("timezone", "Mars/Olympus")])
            .unwrap_err();
        assert_eq!(e.setting, "timezone");
        assert!(e.reason.contains("America/Chicago"), "{e}");
        assert_eq!(e.code(), "bad_timezone");
        let e = change(&[("strictness.teachers", "strict")]).unwrap_err();
        assert!(e.to_string().contains("no import type \"teachers\""), "{e}");
        let e = change(&[("mirror_threshold", "10%")]).unwrap_err();
        assert!(e.to_string().contains("unknown tenant setting"), "{e}");
    }

    #[test]
    fn a_schedule_trigger_needs_a_schedule_now_or_already() {
        let mut t = tenant();
        let e = change(&[("trigger", "schedule")]).unwrap().apply(&mut t.clone()).unwrap_err();
        assert_eq!(e.setting, "trigger");
        change(&[("trigger", "schedule"), ("schedule", "0 2 * * *")]).unwrap().apply(&mut t).unwrap();
        assert_eq!(t.trigger, Trigger::Schedule);
        // Clearing the schedule of a scheduled tenant is refused; with another trigger, allowed.
        assert!(change(&[("schedule", "")]).unwrap().apply(&mut t.clone()).is_err());
        change(&[("schedule", ""), ("trigger", "manual")]).unwrap().apply(&mut t).unwrap();
        assert_eq!((t.trigger, t.schedule.is_none()), (Trigger::Manual, true));
    }

    #[test]
    fn later_values_of_a_key_replace_earlier_ones_and_the_rest_is_kept() {
        let mut t = tenant();
        t.notify_emails = vec!["a@acme.org".into()];
        t.webhook = Some(("https://hooks.example/x".into(), "s3cret".into()));
        change(&[
            ("safeguard.students.deleted", "10"),
            ("safeguard.students.deleted", "20"),
            ("trigger.students", "manual"),
            ("notify.webhook", "https://hooks.example/y"),
        ])
        .unwrap()
        .apply(&mut t)
        .unwrap();
        assert_eq!(t.safeguards.len(), 1);
        assert_eq!(t.safeguards[0].percent, 20.0);
        assert_eq!(t.type_triggers, vec![("students".to_owned(), Trigger::Manual)]);
        assert_eq!(t.notify_emails, vec!["a@acme.org".to_owned()]);
        assert_eq!(t.webhook, Some(("https://hooks.example/y".into(), "s3cret".into())));
        change(&[("trigger.students", "default"), ("notify.webhook", "")]).unwrap().apply(&mut t).unwrap();
        assert!(t.type_triggers.is_empty());
        assert_eq!(t.webhook, None);
        // A secret with no webhook to sign is refused, not dropped.
        let e = change(&[("notify.webhook_secret", "s3cret")]).unwrap().apply(&mut t).unwrap_err();
        assert_eq!(e.code(), "bad_notify");
        change(&[("notify.webhook_secret", "s3cret"), ("notify.webhook", "https://hooks.example/z")])
            .unwrap()
            .apply(&mut t)
            .unwrap();
        assert_eq!(t.webhook, Some(("https://hooks.example/z".into(), "s3cret".into())));
        assert!(change(&[("strictness.teachers", "default")]).is_err(), "a type that does not exist");
        change(&[("strictness", "strict")]).unwrap().apply(&mut t).unwrap();
        assert_eq!(t.read_settings.len(), 1);
        change(&[("strictness", "default")]).unwrap().apply(&mut t).unwrap();
        assert!(t.read_settings.is_empty());
    }
}
