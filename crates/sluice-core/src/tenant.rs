use crate::import::{ReadSetting, SafeguardSetting};
use crate::{PasswordHash, TreeLayout};
use std::fmt;

/// A tenant's name: its SSH login and the name of its directory on disk.
///
/// 1 to 32 characters, lowercase ASCII letters, digits, `-` and `_`, starting with a letter,
/// so that it is always a single safe path component and an unambiguous login.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantName(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TenantNameError {
    #[error("tenant name is empty")]
    Empty,
    #[error("tenant name {0:?} is longer than 32 characters")]
    TooLong(String),
    #[error(
        "tenant name {0:?} is not allowed: use lowercase letters, digits, '-' and '_', starting with a letter"
    )]
    BadCharacters(String),
}

impl TenantName {
    pub const MAX_LEN: usize = 32;

    pub fn parse(raw: &str) -> Result<Self, TenantNameError> {
        if raw.is_empty() {
            return Err(TenantNameError::Empty);
        }
        if raw.len() > Self::MAX_LEN {
            return Err(TenantNameError::TooLong(raw.to_owned()));
        }
        let mut chars = raw.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !(first_ok && rest_ok) {
            return Err(TenantNameError::BadCharacters(raw.to_owned()));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A name is text wherever text is read (store lookups, messages).
impl std::ops::Deref for TenantName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

/// Parsed at the edge: a path or body that names a tenant yields a valid name or an error.
impl<'de> serde::Deserialize<'de> for TenantName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        TenantName::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for TenantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// When a tenant's uploads are imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// As soon as the upload closes (the default).
    OnUpload,
    /// Only on `sluice sync` (or the dashboard's "Sync now"); uploads wait in their folders.
    Manual,
    /// At the times of the tenant's cron schedule, in its time zone; uploads wait till then.
    Schedule,
    /// When a `.done` manifest listing the files arrives (the Campus Labs protocol).
    Manifest,
}

impl Trigger {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "on_upload" => Some(Trigger::OnUpload),
            "manual" => Some(Trigger::Manual),
            "schedule" => Some(Trigger::Schedule),
            "manifest" => Some(Trigger::Manifest),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::OnUpload => "on_upload",
            Trigger::Manual => "manual",
            Trigger::Schedule => "schedule",
            Trigger::Manifest => "manifest",
        }
    }
}

/// Days in which a tenant's mirror imports delete nothing by omission (both days included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blackout {
    pub from: jiff::civil::Date,
    pub to: jiff::civil::Date,
}

impl Blackout {
    /// `2026-06-15..2026-08-20` (one day: `2026-07-04`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (a, b) = s.split_once("..").unwrap_or((s, s));
        let day = |d: &str| {
            d.trim()
                .parse::<jiff::civil::Date>()
                .map_err(|_| format!("{:?} is not a date (YYYY-MM-DD)", d.trim()))
        };
        let (from, to) = (day(a)?, day(b)?);
        if to < from {
            return Err(format!("{s:?} ends before it starts"));
        }
        Ok(Blackout { from, to })
    }

    /// A list, separated by commas; "" for none.
    pub fn parse_list(s: &str) -> Result<Vec<Self>, String> {
        s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(Blackout::parse).collect()
    }

    pub fn contains(&self, day: jiff::civil::Date) -> bool {
        self.from <= day && day <= self.to
    }
}

impl std::fmt::Display for Blackout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}..{}", self.from, self.to)
    }
}

impl Tenant {
    /// The blackout in force on the tenant's day at `now` (in its time zone), if any.
    pub fn blackout_at(&self, now: jiff::Timestamp) -> Option<Blackout> {
        let zone = jiff::tz::TimeZone::get(&self.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
        let today = now.to_zoned(zone).date();
        self.blackouts.iter().copied().find(|b| b.contains(today))
    }
}

/// Where a tenant's uploads go (Campus Labs: a folder per type; Visitor Aware and ClassTag:
/// the root, each type by its required file name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Routing {
    /// One folder per import type; the root is read-only (the default).
    #[default]
    Folders,
    /// Files go at the root under a type's required file name (`students.csv`); the import
    /// folders are not shown.
    Root,
    /// Both: the folders, and the required file names at the root.
    Both,
}

impl Routing {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "folders" => Some(Routing::Folders),
            "root" => Some(Routing::Root),
            "both" => Some(Routing::Both),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Routing::Folders => "folders",
            Routing::Root => "root",
            Routing::Both => "both",
        }
    }
}

/// A tenant: its login, folders, credentials and import settings (changed only through
/// [`crate::settings::SettingsChange`], apart from `disabled` and `password`).
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: i64,
    pub name: TenantName,
    pub layout: TreeLayout,
    /// Where uploads go: folders, the root, or both.
    pub routing: Routing,
    pub disabled: bool,
    pub password: Option<PasswordHash>,
    pub trigger: Trigger,
    /// Cron expression, for `Trigger::Schedule`.
    pub schedule: Option<crate::schedule::Cron>,
    /// IANA time zone name the schedule is read in.
    pub timezone: String,
    /// Per-type triggers that override `trigger`.
    pub type_triggers: Vec<(String, Trigger)>,
    /// Per-type schedules (`schedule.guardians = "0 2 * * *"`): the type's uploads wait for
    /// its own times, read in `timezone`, whatever the tenant's trigger.
    pub type_schedules: Vec<(String, crate::schedule::Cron)>,
    /// Imports of uploads wait until the tenant's uploads have been quiet this long, then the
    /// set runs in reference order (0: each upload at once).
    pub settle_secs: u32,
    /// Date ranges (in the tenant's time zone, both days included) in which a mirror import
    /// deletes nothing by omission: between school years, as Clever pauses syncs.
    pub blackouts: Vec<Blackout>,
    /// Per-type safeguard settings that override the types' own.
    pub safeguards: Vec<SafeguardSetting>,
    /// How the tenant's files are read: strictness, delimiters (override the types').
    pub read_settings: Vec<ReadSetting>,
    /// Who is emailed when an import ends.
    pub notify_emails: Vec<String>,
    /// Where import results are POSTed, and the HMAC secret that signs them.
    pub webhook: Option<(String, String)>,
    pub created_ms: i64,
}

impl Tenant {
    /// A tenant as it is created: no password, imports on upload, in UTC, no other settings.
    pub fn new(id: i64, name: TenantName, layout: TreeLayout, created_ms: i64) -> Self {
        Self {
            id,
            name,
            layout,
            disabled: false,
            password: None,
            routing: Routing::Folders,
            trigger: Trigger::OnUpload,
            schedule: None,
            timezone: "UTC".into(),
            type_triggers: Vec::new(),
            type_schedules: Vec::new(),
            settle_secs: 0,
            blackouts: Vec::new(),
            safeguards: Vec::new(),
            read_settings: Vec::new(),
            notify_emails: Vec::new(),
            webhook: None,
            created_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_simple_names() {
        for ok in ["acme", "district-12", "a", "north_high"] {
            assert_eq!(TenantName::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_names_that_could_escape_or_confuse() {
        for bad in ["", "..", ".", "a/b", "A", "1abc", "acme ", "ac\0me", "über", "-x", &"a".repeat(33)] {
            assert!(TenantName::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
