//! The safeguard that holds an import for a person's approval when one file would delete or
//! change more of a type's records than a routine sync does (Clever's and ClassLink's "sync
//! safeguards"). A type declares its limits; a tenant may tighten or loosen them per type.

/// Limits, in percent of the records of one type that exist before the import.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Safeguard {
    /// More deletions than this hold the import.
    pub deleted_percent: f64,
    /// More updated records than this hold the import (100: never).
    pub changed_percent: f64,
}

impl Default for Safeguard {
    fn default() -> Self {
        Self { deleted_percent: 10.0, changed_percent: 100.0 }
    }
}

/// Which limit a tenant setting changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Deleted,
    Changed,
}

impl Limit {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "deleted" => Some(Limit::Deleted),
            "changed" => Some(Limit::Changed),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Deleted => "deleted",
            Limit::Changed => "changed",
        }
    }
}

/// A tenant's setting `safeguard.TYPE.LIMIT=PERCENT`.
#[derive(Debug, Clone, PartialEq)]
pub struct SafeguardSetting {
    pub type_name: String,
    pub limit: Limit,
    pub percent: f64,
}

impl SafeguardSetting {
    /// Parses `TYPE.deleted` / `TYPE.changed` (TYPE may itself hold dots: `oneroster.users`)
    /// and a percentage.
    pub fn parse(key: &str, value: &str) -> Result<Self, String> {
        let (type_name, limit) = key.rsplit_once('.').ok_or_else(|| {
            format!("safeguard.{key}: expected safeguard.TYPE.deleted or safeguard.TYPE.changed")
        })?;
        let limit = Limit::parse(limit)
            .ok_or_else(|| format!("safeguard.{key}: the limit is `deleted` or `changed`, not {limit:?}"))?;
        let percent = parse_percent(value).ok_or_else(|| {
            format!("safeguard.{key}={value:?}: expected a percentage from 0 to 100, e.g. 10 or 12.5")
        })?;
        Ok(Self { type_name: type_name.to_owned(), limit, percent })
    }
}

pub fn parse_percent(value: &str) -> Option<f64> {
    let v: f64 = value.trim().trim_end_matches('%').parse().ok()?;
    (0.0..=100.0).contains(&v).then_some(v)
}

/// Why an import must wait for approval.
#[derive(Debug, Clone, PartialEq)]
pub struct Breach {
    pub limit: Limit,
    pub count: u64,
    pub existing: u64,
    pub percent: f64,
    pub allowed: f64,
}

impl Safeguard {
    /// This safeguard with a tenant's settings for `type_name` applied.
    pub fn for_tenant(mut self, type_name: &str, settings: &[SafeguardSetting]) -> Self {
        for s in settings.iter().filter(|s| s.type_name == type_name) {
            match s.limit {
                Limit::Deleted => self.deleted_percent = s.percent,
                Limit::Changed => self.changed_percent = s.percent,
            }
        }
        self
    }

    /// The first limit an import with these effects would pass, if any. A type with no
    /// records yet has nothing to protect.
    pub fn breach(&self, existing: u64, deleted: u64, updated: u64) -> Option<Breach> {
        if existing == 0 {
            return None;
        }
        let share = |n: u64| 100.0 * n as f64 / existing as f64;
        let checks = [
            (Limit::Deleted, deleted, self.deleted_percent),
            (Limit::Changed, updated, self.changed_percent),
        ];
        checks
            .into_iter()
            .find(|&(_, n, allowed)| n > 0 && share(n) > allowed)
            .map(|(limit, count, allowed)| Breach { limit, count, existing, percent: share(count), allowed })
    }
}

/// Where a held import's message turns to the command line's way of deciding it.
pub const CLI_HINT: &str = "; approve it with";

/// A held import's message without the command-line hint: for the dashboard, which decides
/// with its own buttons, a dry run, and a decided import.
pub fn without_cli_hint(message: &str) -> &str {
    message.split(CLI_HINT).next().unwrap_or(message)
}

impl Breach {
    /// Why it holds the import: what it would do and which limit (a reason for [`held_message`]).
    pub fn reason(&self, type_name: &str) -> String {
        let verb = match self.limit {
            Limit::Deleted => "delete",
            Limit::Changed => "change",
        };
        format!(
            "this import would {verb} {} of {} {type_name} records ({:.1}%), more than the {}% safeguard",
            self.count, self.existing, self.percent, self.allowed
        )
    }
}

/// A held import's message, the one place it is written: why it is held (each reason a
/// sentence, joined by "; and "), what the import adds (`detail`, in brackets), then how to
/// decide it on the command line, which [`without_cli_hint`] leaves out where buttons decide it
/// (the dashboard) and where nothing is to decide (a dry run, a discarded or superseded
/// import, whose stored message the stores cut there). `again`: it was approved, but imports since then changed what approving it does.
pub fn held_message(reasons: &[String], again: bool, detail: Option<&str>, import_id: i64) -> String {
    let held = if again {
        "held again: imports since it was held changed the records, so approving it now does more than what \
         was approved; "
    } else {
        "held: "
    };
    let detail = detail.map(|d| format!(" ({d})")).unwrap_or_default();
    format!(
        "{held}{}{detail}{CLI_HINT} `sluice approve {import_id}` or discard it with `sluice discard {import_id}`",
        reasons.join("; and ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_past_either_limit_and_never_on_a_first_import() {
        let s = Safeguard { deleted_percent: 10.0, changed_percent: 75.0 };
        assert_eq!(s.breach(0, 0, 0), None);
        assert_eq!(s.breach(100, 10, 75), None);
        let d = s.breach(100, 11, 0).unwrap();
        assert_eq!((d.limit, d.count), (Limit::Deleted, 11));
        assert_eq!(
            d.reason("students"),
            "this import would delete 11 of 100 students records (11.0%), more than the 10% safeguard"
        );
        assert_eq!(s.breach(100, 0, 76).unwrap().limit, Limit::Changed);
        let zero = Safeguard { deleted_percent: 0.0, ..s };
        assert_eq!(zero.breach(5, 1, 0).unwrap().limit, Limit::Deleted);
        assert_eq!(zero.breach(5, 0, 0), None);
    }

    #[test]
    fn a_held_message_keeps_every_reason_before_the_command_line_hint() {
        let reasons =
            vec!["A would happen".to_owned(), "3 guardians refer (on_delete = \"hold\")".to_owned()];
        let m = held_message(&reasons, false, Some("users: 2 added"), 7);
        assert_eq!(
            m,
            "held: A would happen; and 3 guardians refer (on_delete = \"hold\") (users: 2 added); approve it with \
             `sluice approve 7` or discard it with `sluice discard 7`"
        );
        // The dashboard and the API show every reason: the hint is only ever at the end.
        assert_eq!(
            without_cli_hint(&m),
            "held: A would happen; and 3 guardians refer (on_delete = \"hold\") (users: 2 added)"
        );
        let again = held_message(&reasons[..1], true, None, 7);
        assert!(again.starts_with("held again: imports since it was held changed the records"), "{again}");
        assert!(without_cli_hint(&again).ends_with("; A would happen"), "{again}");
    }

    #[test]
    fn tenant_settings_override_the_type() {
        let set = |k: &str, v: &str| SafeguardSetting::parse(k, v);
        let settings =
            vec![set("oneroster.classes.deleted", "30").unwrap(), set("students.changed", "50%").unwrap()];
        let s = Safeguard::default().for_tenant("oneroster.classes", &settings);
        assert_eq!(s, Safeguard { deleted_percent: 30.0, changed_percent: 100.0 });
        assert_eq!(Safeguard::default().for_tenant("students", &settings).changed_percent, 50.0);
        assert!(set("students", "5").unwrap_err().contains("safeguard.TYPE.deleted"));
        assert!(set("students.removed", "5").unwrap_err().contains("`deleted` or `changed`"));
        assert!(set("students.deleted", "150").unwrap_err().contains("0 to 100"));
        assert!(set("students.deleted", "lots").is_err());
    }
}
