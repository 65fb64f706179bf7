//! Cron schedules (`minute hour day-of-month month day-of-week`), evaluated on local civil
//! time; the caller converts to and from the tenant's time zone.
//!
//! Each field takes `*`, `N`, `A-B`, `*/S`, `A-B/S` and comma lists; months and weekdays
//! also take names (`JAN`, `MON`). `@hourly`, `@daily`, `@weekly` and `@monthly` are
//! shorthands. As in cron, when both day fields are restricted a day matching either runs.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    source: String,
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    day_restricted: bool,
    weekday_restricted: bool,
}

/// A local date and time to the minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CivilMinute {
    pub year: i32,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schedule {expression:?}: {problem}; write five fields, e.g. \"0 2 * * *\" for 02:00 every day")]
pub struct CronError {
    pub expression: String,
    pub problem: String,
}

const MONTHS: [&str; 12] =
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Cron {
    pub fn parse(source: &str) -> Result<Self, CronError> {
        let err = |problem: String| CronError { expression: source.to_owned(), problem };
        let expanded = match source.trim() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(err(format!("has {} fields", fields.len())));
        }
        let minutes = field(fields[0], 0, 59, &[]).map_err(|p| err(format!("minute: {p}")))?;
        let hours = field(fields[1], 0, 23, &[]).map_err(|p| err(format!("hour: {p}")))?;
        let days = field(fields[2], 1, 31, &[]).map_err(|p| err(format!("day of month: {p}")))?;
        let months = field(fields[3], 1, 12, &MONTHS).map_err(|p| err(format!("month: {p}")))?;
        // 7 is Sunday too.
        let mut weekdays = field(fields[4], 0, 7, &WEEKDAYS).map_err(|p| err(format!("day of week: {p}")))?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        let cron = Self {
            source: source.trim().to_owned(),
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: (weekdays & 0x7f) as u8,
            day_restricted: fields[2] != "*",
            weekday_restricted: fields[4] != "*",
        };
        // A date that never comes (February 30): nothing would ever run, and nobody be told.
        let start = CivilMinute { year: 2024, month: 1, day: 1, hour: 0, minute: 0 };
        if cron.next_after(start).is_none() {
            return Err(
                err("never matches a date (the day of the month is not in any of its months)".into()),
            );
        }
        Ok(cron)
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    fn day_matches(&self, year: i32, month: u8, day: u8) -> bool {
        let dom = self.days & (1 << day) != 0;
        let dow = self.weekdays & (1 << weekday(year, month, day)) != 0;
        match (self.day_restricted, self.weekday_restricted) {
            (true, true) => dom || dow,
            (true, false) => dom,
            (false, true) => dow,
            (false, false) => true,
        }
    }

    /// The first matching minute strictly after `after`, within the next ~4 years.
    pub fn next_after(&self, after: CivilMinute) -> Option<CivilMinute> {
        let mut t = add_minute(after);
        let limit = after.year + 5;
        while t.year <= limit {
            if self.months & (1 << t.month) == 0 {
                t = CivilMinute {
                    year: t.year + i32::from(t.month == 12),
                    month: t.month % 12 + 1,
                    day: 1,
                    hour: 0,
                    minute: 0,
                };
                continue;
            }
            if !self.day_matches(t.year, t.month, t.day) {
                t = next_day(t);
                continue;
            }
            if self.hours & (1 << t.hour) == 0 {
                t = if t.hour == 23 { next_day(t) } else { CivilMinute { hour: t.hour + 1, minute: 0, ..t } };
                continue;
            }
            if self.minutes & (1 << t.minute) == 0 {
                t = add_minute(t);
                continue;
            }
            return Some(t);
        }
        None
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// The first run of `cron`, read in the IANA time zone `tz`, strictly after the instant
/// `after`. Civil times are matched, then placed in time: one skipped by a DST change runs just
/// after the change; one repeated by it runs once, the first time. (The search starts two hours
/// of civil time before `after`, so a skipped time moved past `after`'s civil time is still
/// found; each candidate is kept only if its instant is later than `after`, so a repeated hour
/// never runs twice.)
pub fn next_run(cron: &Cron, tz: &str, after: jiff::Timestamp) -> Result<Option<jiff::Timestamp>, String> {
    let zone = jiff::tz::TimeZone::get(tz).map_err(|e| format!("time zone {tz:?}: {e}"))?;
    let start = after.checked_sub(jiff::SignedDuration::from_hours(2)).map_err(|e| e.to_string())?;
    let local = start.to_zoned(zone.clone()).datetime();
    let mut from = CivilMinute {
        year: i32::from(local.year()),
        month: local.month() as u8,
        day: local.day() as u8,
        hour: local.hour() as u8,
        minute: local.minute() as u8,
    };
    // A few hundred candidates at most (`* * * * *` over the two hours looked back).
    for _ in 0..1000 {
        let Some(next) = cron.next_after(from) else { return Ok(None) };
        let civil = jiff::civil::DateTime::new(
            next.year as i16,
            next.month as i8,
            next.day as i8,
            next.hour as i8,
            next.minute as i8,
            0,
            0,
        )
        .map_err(|e| e.to_string())?;
        let at = zone.to_ambiguous_zoned(civil).compatible().map_err(|e| e.to_string())?.timestamp();
        if at > after {
            return Ok(Some(at));
        }
        from = next;
    }
    Err(format!("schedule {cron}: no run found after {after}"))
}

fn field(text: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    let value = |s: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(i as u32 + min);
        }
        let v: u32 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
        if v < min || v > max {
            return Err(format!("{v} is outside {min}-{max}"));
        }
        Ok(v)
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().map_err(|_| format!("step {s:?} is not a number"))?),
            None => (part, 1),
        };
        if step == 0 {
            return Err("a step of 0".into());
        }
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            (v, if part.contains('/') { max } else { v })
        };
        if lo > hi {
            return Err(format!("range {lo}-{hi} is backwards"));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

fn days_in_month(year: i32, month: u8) -> u8 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][(month - 1) as usize]
}

/// 0 = Sunday (Zeller-style via days since 1970-01-01, a Thursday).
fn weekday(year: i32, month: u8, day: u8) -> u8 {
    let y = i64::from(if month <= 2 { year - 1 } else { year });
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days + 4).rem_euclid(7) as u8
}

fn next_day(t: CivilMinute) -> CivilMinute {
    if t.day < days_in_month(t.year, t.month) {
        CivilMinute { day: t.day + 1, hour: 0, minute: 0, ..t }
    } else if t.month < 12 {
        CivilMinute { month: t.month + 1, day: 1, hour: 0, minute: 0, ..t }
    } else {
        CivilMinute { year: t.year + 1, month: 1, day: 1, hour: 0, minute: 0 }
    }
}

fn add_minute(t: CivilMinute) -> CivilMinute {
    if t.minute < 59 {
        CivilMinute { minute: t.minute + 1, ..t }
    } else if t.hour < 23 {
        CivilMinute { hour: t.hour + 1, minute: 0, ..t }
    } else {
        next_day(t)
    }
}

#[cfg(test)]
mod tests {
    use super::next_run;

    /// Runs of `cron` in Chicago from `from` for `hours`, as the scheduler sees them: ticks of
    /// two seconds, a run whenever the next run after the last tick has come.
    fn runs(cron: &str, from: &str, hours: i64) -> Vec<String> {
        let cron = super::Cron::parse(cron).unwrap();
        let mut since: jiff::Timestamp = from.parse().unwrap();
        let end = since.checked_add(jiff::SignedDuration::from_hours(hours)).unwrap();
        let mut out = Vec::new();
        while since < end {
            let now = since.checked_add(jiff::SignedDuration::from_secs(2)).unwrap();
            if let Some(at) = next_run(&cron, "America/Chicago", since).unwrap()
                && at <= now
            {
                out.push(at.to_string());
            }
            since = now;
        }
        out
    }

    #[test]
    fn a_schedule_that_never_runs_is_refused() {
        assert!(Cron::parse("0 0 31 2 *").unwrap_err().problem.contains("never"));
        assert!(Cron::parse("0 0 30 2 *").is_err());
        // February 29 comes every four years.
        assert!(Cron::parse("0 0 29 2 *").is_ok());
    }

    #[test]
    fn a_repeated_hour_runs_once_and_a_skipped_time_runs_just_after_the_change() {
        // Fall back: 2026-11-01 01:00-02:00 happens twice in Chicago (06:00Z-08:00Z).
        assert_eq!(runs("30 1 * * *", "2026-11-01T04:00:00Z", 6), ["2026-11-01T06:30:00Z"]);
        let every_five = runs("*/5 * * * *", "2026-11-01T05:00:00Z", 3);
        assert_eq!(every_five.len(), 24, "the repeated hour's times run once: {every_five:?}");
        let mut sorted = every_five.clone();
        sorted.dedup();
        assert_eq!(sorted, every_five, "never twice");
        // Spring forward: 2026-03-08 02:00-03:00 does not exist; 02:30 runs at 03:30 CDT.
        assert_eq!(runs("30 2 * * *", "2026-03-08T06:00:00Z", 4), ["2026-03-08T08:30:00Z"]);
        // An ordinary day: once, at its time.
        assert_eq!(runs("0 2 * * *", "2026-11-23T06:00:00Z", 4), ["2026-11-23T08:00:00Z"]);
    }

    use super::*;

    fn at(year: i32, month: u8, day: u8, hour: u8, minute: u8) -> CivilMinute {
        CivilMinute { year, month, day, hour, minute }
    }

    #[test]
    fn common_schedules() {
        let daily = Cron::parse("0 2 * * *").unwrap();
        assert_eq!(daily.next_after(at(2026, 11, 22, 14, 0)), Some(at(2026, 11, 23, 2, 0)));
        assert_eq!(daily.next_after(at(2026, 12, 31, 2, 0)), Some(at(2027, 1, 1, 2, 0)));
        let hourly = Cron::parse("@hourly").unwrap();
        assert_eq!(hourly.next_after(at(2026, 11, 22, 14, 0)), Some(at(2026, 11, 22, 15, 0)));
        let every15 = Cron::parse("*/15 6-18 * * MON-FRI").unwrap();
        // 2026-11-22 is a Sunday.
        assert_eq!(every15.next_after(at(2026, 11, 22, 14, 7)), Some(at(2026, 11, 23, 6, 0)));
        assert_eq!(every15.next_after(at(2026, 11, 23, 6, 0)), Some(at(2026, 11, 23, 6, 15)));
        let leap = Cron::parse("30 1 29 2 *").unwrap();
        assert_eq!(leap.next_after(at(2026, 1, 1, 0, 0)), Some(at(2028, 2, 29, 1, 30)));
        // Both day fields restricted: either matches (the 1st, or any Sunday).
        let either = Cron::parse("0 0 1 * 0").unwrap();
        assert_eq!(either.next_after(at(2026, 11, 22, 0, 0)), Some(at(2026, 11, 29, 0, 0)));
        assert_eq!(
            Cron::parse("0 0 * * 7").unwrap().next_after(at(2026, 11, 22, 0, 0)),
            Some(at(2026, 11, 29, 0, 0))
        );
    }

    #[test]
    fn weekdays_are_right() {
        assert_eq!(weekday(1970, 1, 1), 4);
        assert_eq!(weekday(2026, 11, 22), 0);
        assert_eq!(weekday(2000, 2, 29), 2);
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        for (bad, says) in [
            ("0 2 * *", "4 fields"),
            ("61 * * * *", "minute: 61 is outside 0-59"),
            ("0 25 * * *", "hour"),
            ("0 0 * FOO *", "month"),
            ("*/0 * * * *", "step of 0"),
            ("5-1 * * * *", "backwards"),
        ] {
            let e = Cron::parse(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert!(Cron::parse("0 31 30 2 *").is_err());
        // February 30 never comes: refused rather than never running.
        assert!(Cron::parse("0 0 30 2 *").unwrap_err().problem.contains("never"));
    }
}
