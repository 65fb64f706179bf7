//! Saved exports: a tenant's export definitions, stored by name and run on demand, on a cron
//! schedule in the tenant's time zone, or after every import that changed records of their
//! type; and the log of their runs. What an export writes is `sluice_export`'s; this is what
//! is kept of it.
//!
//! Everything here is parsed once where it comes in (CLI, API, dashboard) and read back from
//! the store in the same shapes.

use crate::schedule::{Cron, CronError};
use serde::Serialize;
use std::fmt;

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// A saved export's name: the file it writes in `/exports` is `NAME.csv` or `NAME.xlsx`.
///
/// 1 to 64 characters, ASCII letters, digits, `-`, `_` and `.`, starting with a letter or a
/// digit: one safe path component, whatever the extension added to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExportName(String);

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error(
    "export name {0:?} is not allowed: use 1 to 64 letters, digits, '-', '_' and '.', starting with a letter or a digit"
)]
pub struct ExportNameError(pub String);

impl ExportName {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, ExportNameError> {
        let first_ok = raw.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        let rest_ok = raw.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !first_ok || !rest_ok || raw.len() > Self::MAX_LEN {
            return Err(ExportNameError(raw.to_owned()));
        }
        Ok(ExportName(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for ExportName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ExportName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ExportName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ExportName::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// The file formats an export writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Csv,
    Xlsx,
    /// The records' photos, one `KEY.jpg|png` each, into `/exports/photos/`.
    Photos,
}

impl ExportFormat {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "csv" => Some(ExportFormat::Csv),
            "xlsx" => Some(ExportFormat::Xlsx),
            "photos" => Some(ExportFormat::Photos),
            _ => None,
        }
    }

    /// The format's name (`csv`, `xlsx`, `photos`): a file's extension for the first two.
    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Xlsx => "xlsx",
            ExportFormat::Photos => "photos",
        }
    }
}

/// When a saved export runs by itself (it can always be run on demand as well).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportWhen {
    /// Only when asked: `sluice export run`, the dashboard's button, the API.
    OnDemand,
    /// At the times of a cron schedule, read in the tenant's time zone.
    Schedule(Cron),
    /// After every import of its type that added, changed or deleted a record.
    AfterImport,
}

impl ExportWhen {
    /// `on_demand`, `after_import`, or a cron schedule.
    pub fn parse(when: &str) -> Result<Self, CronError> {
        match when.trim() {
            "on_demand" | "" => Ok(ExportWhen::OnDemand),
            "after_import" => Ok(ExportWhen::AfterImport),
            cron => Ok(ExportWhen::Schedule(Cron::parse(cron)?)),
        }
    }

    /// What [`ExportWhen::parse`] reads back: `on_demand`, `after_import` or the schedule.
    pub fn as_str(&self) -> &str {
        match self {
            ExportWhen::OnDemand => "on_demand",
            ExportWhen::AfterImport => "after_import",
            ExportWhen::Schedule(cron) => cron.as_str(),
        }
    }
}

/// A saved export, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedExport {
    pub name: ExportName,
    /// The import type whose records it writes.
    pub type_name: String,
    pub format: ExportFormat,
    /// The columns, in order (empty: all of the type's), as the user named them.
    pub columns: Vec<String>,
    /// `COLUMN=VALUE` filters, all of which a record must pass.
    pub filters: Vec<String>,
    /// CSV: starts with a UTF-8 byte order mark.
    pub bom: bool,
    pub when: ExportWhen,
    /// The connector each run pushes the file to (the tenant's own SFTP server), besides
    /// writing it in `/exports`.
    pub push_to: Option<crate::connector::ConnectorName>,
    /// Whether the file is also kept in the tenant's `/exports` (off only for an export that
    /// goes to a connector alone).
    pub in_exports: bool,
}

impl SavedExport {
    /// The file it writes in the tenant's `/exports` (photos: the `photos` folder).
    pub fn file_name(&self) -> String {
        match self.format {
            ExportFormat::Photos => crate::layout::EXPORT_PHOTOS.to_owned(),
            f => format!("{}.{}", self.name, f.extension()),
        }
    }
}

/// Why a saved export ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunCause {
    OnDemand,
    Schedule,
    AfterImport,
}

impl RunCause {
    pub fn as_str(self) -> &'static str {
        match self {
            RunCause::OnDemand => "on_demand",
            RunCause::Schedule => "schedule",
            RunCause::AfterImport => "after_import",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "on_demand" => Some(RunCause::OnDemand),
            "schedule" => Some(RunCause::Schedule),
            "after_import" => Some(RunCause::AfterImport),
            _ => None,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// Written: how many records and bytes, and where the tenant finds the file.
    Written { rows: u64, bytes: u64, destination: String },
    /// Nothing was written (the old file, if any, is still there), and why.
    Failed(String),
}

/// One run of a saved export, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRun {
    pub id: i64,
    pub tenant: String,
    pub export: String,
    pub cause: RunCause,
    pub started_ms: i64,
    /// `None` while it runs (or when its process died while it ran).
    pub finished_ms: Option<i64>,
    pub outcome: Option<RunOutcome>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_names_are_one_safe_component() {
        for good in ["students", "Guardians-2026", "a.b_c", "9th-grade"] {
            assert!(ExportName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "../x", "a/b", "a b", "-x", "é", &"x".repeat(65)] {
            assert!(ExportName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn when_reads_back_what_it_writes() {
        for w in ["on_demand", "after_import", "0 2 * * *", "@daily"] {
            let when = ExportWhen::parse(w).unwrap();
            assert_eq!(ExportWhen::parse(when.as_str()).unwrap(), when);
        }
        assert!(ExportWhen::parse("at two").is_err());
    }
}
