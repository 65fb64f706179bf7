//! Header mapping and per-value validation. Values are trimmed and normalised (dates to
//! ISO 8601, booleans to true/false, enum values to their declared spelling) so that the
//! same record always stores, and hashes, the same way.

use super::csv::Record;
use super::types::{ColumnKind, ImportType, Strictness};
use std::borrow::Cow;

/// One rejected value (or row), as reported to the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RowError {
    pub line: u64,
    /// The record's key (its key columns joined by `+`) and name, when the row has them:
    /// a data manager finds the record without the original file.
    pub key: String,
    pub name: String,
    pub column: String,
    pub code: &'static str,
    pub reason: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("the file is empty: it has no header row")]
    Empty,
    #[error("required column {column:?} is missing from the header{hint}")]
    MissingRequired { column: String, hint: String },
    #[error("column {column:?} appears twice in the header (as {first:?} and {second:?})")]
    Duplicate { column: String, first: String, second: String },
    #[error("the header has {found} columns; type {type_name:?} allows at most {max}")]
    TooManyColumns { found: usize, max: usize, type_name: String },
    #[error(
        "column {position} of the header has no name (strict reading; trailing empty columns are ignored when lenient)"
    )]
    EmptyName { position: usize },
}

/// What lenient reading accepted and normalised, grouped per column and kind, for warnings
/// such as "users.csv:enabledUser: `TRUE` read as `true`, 6 rows". The groups are few (a
/// column times a kind), whatever the number of rows.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Notes {
    groups: Vec<NoteGroup>,
}

#[derive(Debug, Clone, PartialEq)]
struct NoteGroup {
    /// `users.csv:enabledUser`, or a file's name for what concerns the whole file.
    place: String,
    kind: &'static str,
    /// (first value as written, as read), or what was done for a file-level note.
    text: String,
    rows: u64,
    varied: bool,
}

pub(crate) fn shown(v: &str) -> String {
    let short: String = v.chars().take(40).collect();
    if short.len() < v.len() { format!("{short}...") } else { short }
}

impl Notes {
    /// A value read as something else (`TRUE` as `true`).
    pub fn value(&mut self, place: &str, kind: &'static str, from: &str, to: &str) {
        let text = format!("`{}` read as `{}`", shown(from), shown(to));
        self.add(place, kind, text);
    }

    /// Something done to a row or a file (an empty row skipped, a `sep=` line read).
    pub fn other(&mut self, place: &str, kind: &'static str, text: impl Into<String>) {
        self.add(place, kind, text.into());
    }

    /// Something about the file as a whole (its header, its first line): no row count.
    pub fn once(&mut self, place: &str, kind: &'static str, text: impl Into<String>) {
        if !self.groups.iter().any(|g| g.place == place && g.kind == kind) {
            let text = text.into();
            self.groups.push(NoteGroup { place: place.to_owned(), kind, text, rows: 0, varied: false });
        }
    }

    fn add(&mut self, place: &str, kind: &'static str, text: String) {
        match self.groups.iter_mut().find(|g| g.place == place && g.kind == kind) {
            Some(g) => {
                g.rows += 1;
                g.varied |= g.text != text;
            }
            None => {
                self.groups.push(NoteGroup { place: place.to_owned(), kind, text, rows: 1, varied: false })
            }
        }
    }

    pub fn merge(&mut self, other: Notes) {
        for g in other.groups {
            match self.groups.iter_mut().find(|m| m.place == g.place && m.kind == g.kind) {
                Some(m) => {
                    m.rows += g.rows;
                    m.varied |= g.varied || m.text != g.text;
                }
                None => self.groups.push(g),
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// One warning per group.
    pub fn warnings(&self) -> Vec<String> {
        self.groups
            .iter()
            .map(|g| {
                let similar = if g.varied { " (and similar)" } else { "" };
                let rows = match g.rows {
                    0 => String::new(),
                    1 => ", 1 row".to_owned(),
                    n => format!(", {n} rows"),
                };
                format!("{}: {}{similar}{rows}", g.place, g.text)
            })
            .collect()
    }
}

/// One row's normalised values, in the type's column order, in one reused buffer (no
/// allocation per value: a million-row file has fifteen million of them).
#[derive(Debug, Default, Clone)]
pub struct Values {
    buf: String,
    ends: Vec<usize>,
}

impl Values {
    pub fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }

    pub fn push(&mut self, v: &str) {
        self.buf.push_str(v);
        self.ends.push(self.buf.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn get(&self, i: usize) -> &str {
        match self.ends.get(i) {
            Some(&end) => &self.buf[if i == 0 { 0 } else { self.ends[i - 1] }..end],
            None => "",
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).map(|i| self.get(i))
    }
}

/// Where each of the type's columns is in the file.
#[derive(Debug, Clone)]
pub struct HeaderMap {
    /// `positions[i]` is the file field holding type column `i`.
    positions: Vec<Option<usize>>,
    width: usize,
    /// Lenient: rows may carry empty fields past `width`, up to the header's own length
    /// (its trailing empty columns); a row longer than the header is never guessed at.
    lenient: bool,
    header_len: usize,
    /// The file's name, for notes.
    file: String,
    /// File columns the type does not know: reported as warnings and ignored.
    pub unknown: Vec<String>,
}

impl HeaderMap {
    /// The type's columns the file does not have (optional ones: a missing required column
    /// refuses the header), with their positions in the type. Their values are stored empty
    /// for every row of the file.
    pub fn absent<'t>(&self, t: &'t ImportType) -> Vec<(usize, &'t str)> {
        t.columns
            .iter()
            .zip(&self.positions)
            .enumerate()
            .filter(|(_, (_, p))| p.is_none())
            .map(|(i, (c, _))| (i, c.name.as_str()))
            .collect()
    }

    /// Maps a header. Lenient: empty names at the end of the header (a spreadsheet's
    /// trailing empty columns) are left out, with a note; strict: an empty name is an error.
    pub fn new(
        t: &ImportType,
        header: &Record,
        strictness: Strictness,
        file: &str,
        notes: &mut Notes,
    ) -> Result<Self, Vec<HeaderError>> {
        if header.len() > t.limits.max_columns {
            return Err(vec![HeaderError::TooManyColumns {
                found: header.len(),
                max: t.limits.max_columns,
                type_name: t.name.clone(),
            }]);
        }
        let mut positions: Vec<Option<usize>> = vec![None; t.columns.len()];
        let mut errors = Vec::new();
        let mut unknown = Vec::new();
        let lenient = !strictness.is_strict();
        let named = |f: &str| !f.trim().trim_start_matches('\u{feff}').is_empty();
        let mut width = header.len();
        if lenient {
            width =
                (0..header.len()).rev().find(|&i| named(header.get(i).unwrap_or(""))).map_or(0, |i| i + 1);
            if width < header.len() {
                let n = header.len() - width;
                notes.once(
                    file,
                    "trailing_columns",
                    format!("{n} empty column(s) at the end of the header ignored"),
                );
            }
        }
        for (i, raw) in header.iter().enumerate().take(width) {
            let name = raw.trim().trim_start_matches('\u{feff}');
            if name.is_empty() && !lenient {
                errors.push(HeaderError::EmptyName { position: i + 1 });
                continue;
            }
            let found = t.columns.iter().position(|c| {
                if t.exact_headers {
                    c.name == name
                } else {
                    c.name.eq_ignore_ascii_case(name)
                        || c.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
                }
            });
            match found {
                Some(c) => match positions[c] {
                    Some(first) => errors.push(HeaderError::Duplicate {
                        column: t.columns[c].name.clone(),
                        first: header.get(first).unwrap_or_default().to_owned(),
                        second: name.to_owned(),
                    }),
                    None => positions[c] = Some(i),
                },
                None => unknown.push(name.to_owned()),
            }
        }
        for (c, col) in t.columns.iter().enumerate() {
            if col.required && positions[c].is_none() {
                let near = unknown.iter().find(|u| u.eq_ignore_ascii_case(&col.name));
                let hint = if let Some(near) = near.filter(|_| t.exact_headers) {
                    format!(
                        " (found {near:?}: this type's header names are case-sensitive; write {:?})",
                        col.name
                    )
                } else if col.aliases.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (also accepted as {})",
                        col.aliases.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(", ")
                    )
                };
                errors.push(HeaderError::MissingRequired { column: col.name.clone(), hint });
            }
        }
        if errors.is_empty() {
            Ok(Self { positions, width, lenient, header_len: header.len(), file: file.to_owned(), unknown })
        } else {
            Err(errors)
        }
    }

    /// Whole rows a stray quote may have swallowed into this record, as (line, key): each
    /// line of a value that runs over lines which, split at `delimiter` as a row of its own,
    /// has the shape of one (its first line the rest of a row from the value's own field on,
    /// a middle line a whole row, its last line a row up to the fields after the value) and
    /// valid values in its key columns. A mirror import would delete those records; the caller
    /// asks whether the file lists them.
    pub fn swallowed_keys(&self, t: &ImportType, rec: &Record, delimiter: u8) -> Vec<(u64, String)> {
        let mut keys = Vec::new();
        let mut line = rec.line;
        for (field, value) in rec.iter().enumerate() {
            let lines = value.split('\n').count();
            if lines == 1 {
                continue;
            }
            let after = rec.len() - 1 - field;
            for (n, text) in value.split('\n').enumerate() {
                let at = line + n as u64;
                let parts: Vec<&str> = text.split(delimiter as char).collect();
                let (offset, shape) = match n {
                    0 => (field, self.width.saturating_sub(field)),
                    _ if n + 1 == lines => (0, self.width.saturating_sub(after)),
                    _ => (0, self.width),
                };
                if parts.len() != shape || shape == 0 {
                    continue;
                }
                let mut key = String::new();
                for (i, &k) in t.key.iter().enumerate() {
                    let part = self.positions[k]
                        .and_then(|p| p.checked_sub(offset))
                        .and_then(|p| parts.get(p))
                        .map(|p| p.trim());
                    match part.map(|p| check_value(&t.columns[k].kind, p)) {
                        Some(Ok(v)) if !v.is_empty() => {
                            if i > 0 {
                                key.push('\u{1f}');
                            }
                            key.push_str(&v);
                        }
                        _ => {
                            key.clear();
                            break;
                        }
                    }
                }
                if !key.is_empty() {
                    keys.push((at, key));
                }
            }
            line += lines as u64 - 1;
        }
        keys
    }

    /// The file's name, as notes name it.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The record a row is about, for error reports: its key columns as written (joined by
    /// `+`) and, for a type of people, the person's first and last name.
    pub fn describe(&self, t: &ImportType, rec: &Record) -> (String, String) {
        let raw = |c: usize| self.positions[c].and_then(|p| rec.get(p)).unwrap_or("").trim();
        let short = |s: &str| s.chars().take(200).collect::<String>();
        let key: Vec<&str> = t.key.iter().map(|&k| raw(k)).collect();
        let key = if key.iter().all(|k| k.is_empty()) { String::new() } else { key.join("+") };
        let name = t.person.as_ref().map_or(String::new(), |p| {
            format!("{} {}", raw(p.first_name), raw(p.last_name)).trim().to_owned()
        });
        (short(&key), short(&name))
    }

    /// Checks one record, writing the normalised values (in the type's column order) into
    /// `values`. Returns false when the row is rejected; its errors are appended.
    pub fn check(
        &self,
        t: &ImportType,
        rec: &Record,
        values: &mut Values,
        errors: &mut Vec<RowError>,
        notes: &mut Notes,
    ) -> bool {
        values.clear();
        let extra_empty = rec.len() > self.width
            && rec.len() <= self.header_len
            && rec.iter().skip(self.width).all(|f| f.trim().is_empty());
        if self.lenient && extra_empty {
            notes.other(&self.file, "trailing_fields", "empty fields past the header's last column ignored");
        } else if rec.len() != self.width {
            errors.push(RowError {
                line: rec.line,
                column: String::new(),
                code: "field_count",
                reason: format!("expected {} fields like the header, found {}", self.width, rec.len()),
                value: String::new(),
                ..Default::default()
            });
            // The row cannot be read, but its record must not look absent from a mirror: its
            // key is read from the key columns' header positions (as written, normalised).
            for (c, col) in t.columns.iter().enumerate() {
                let raw = self.positions[c].and_then(|p| rec.get(p)).unwrap_or("").trim();
                match check_value(&col.kind, raw) {
                    Ok(v) if t.key.contains(&c) && !raw.is_empty() => values.push(&v),
                    _ => values.push(""),
                }
            }
            return false;
        }
        let before = errors.len();
        for (c, col) in t.columns.iter().enumerate() {
            let raw = self.positions[c].and_then(|p| rec.get(p)).unwrap_or("");
            let trimmed = raw.trim();
            if trimmed.is_empty() {
                if col.required {
                    errors.push(row_error(
                        rec.line,
                        &col.name,
                        "required",
                        "a value is required".into(),
                        raw,
                    ));
                }
                values.push("");
                continue;
            }
            match check_value(&col.kind, trimmed) {
                Ok(v) => values.push(&v),
                Err((code, reason)) => {
                    errors.push(row_error(rec.line, &col.name, code, reason, raw));
                    values.push("");
                }
            }
        }
        errors.len() == before
    }
}

fn row_error(line: u64, column: &str, code: &'static str, reason: String, value: &str) -> RowError {
    RowError {
        line,
        column: column.to_owned(),
        code,
        reason,
        value: value.chars().take(200).collect(),
        ..Default::default()
    }
}

/// Validates and normalises one non-empty, trimmed value (borrowed when already normal).
pub fn check_value<'v>(kind: &ColumnKind, v: &'v str) -> Result<Cow<'v, str>, (&'static str, String)> {
    match kind {
        ColumnKind::Text { max_length } => {
            // Bytes bound characters from above: count only when it could matter.
            if v.len() > *max_length && v.chars().count() > *max_length {
                return Err(("too_long", format!("longer than {max_length} characters")));
            }
            if v.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
                return Err(("control_character", "contains a control character".into()));
            }
            Ok(Cow::Borrowed(v))
        }
        ColumnKind::Id => {
            if v.len() > 255 || v.chars().any(char::is_control) {
                return Err((
                    "bad_id",
                    "an id must be at most 255 characters without control characters".into(),
                ));
            }
            Ok(Cow::Borrowed(v))
        }
        ColumnKind::Integer => {
            let n = v.parse::<i64>().map_err(|_| ("not_integer", "expected a whole number".to_owned()))?;
            // Already normal unless it has a sign or leading zeros.
            if v.starts_with(['+', '0']) && v != "0" {
                Ok(Cow::Owned(n.to_string()))
            } else {
                Ok(Cow::Borrowed(v))
            }
        }
        ColumnKind::Decimal => {
            let digits = v.strip_prefix(['-', '+']).unwrap_or(v);
            let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
            let ok = !(int.is_empty() && frac.is_empty())
                && int.bytes().all(|b| b.is_ascii_digit())
                && frac.bytes().all(|b| b.is_ascii_digit())
                && !(digits.contains('.') && frac.is_empty());
            if ok {
                Ok(Cow::Borrowed(v.trim_start_matches('+')))
            } else {
                Err(("not_decimal", "expected a number such as 12.5".into()))
            }
        }
        ColumnKind::Boolean => match v.to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "1" => Ok(Cow::Borrowed("true")),
            "false" | "f" | "no" | "n" | "0" => Ok(Cow::Borrowed("false")),
            _ => Err(("not_boolean", "expected true/false, yes/no or 1/0".into())),
        },
        ColumnKind::Date { formats } => formats
            .iter()
            .find_map(|f| f.read(v))
            .map(|(y, m, d)| {
                let iso = format!("{y:04}-{m:02}-{d:02}");
                if iso == v { Cow::Borrowed(v) } else { Cow::Owned(iso) }
            })
            .ok_or_else(|| {
                let names: Vec<&str> = formats.iter().map(|f| f.source.as_str()).collect();
                ("bad_date", format!("expected a date as {}", names.join(" or ")))
            }),
        ColumnKind::DateTime => check_datetime(v)
            .then_some(Cow::Borrowed(v))
            .ok_or(("bad_datetime", "expected ISO 8601, e.g. 2024-08-31T14:05:00Z".into())),
        ColumnKind::Email => {
            let ok = match v.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                        && !domain.contains('@')
                        && !v.chars().any(|c| c.is_whitespace() || c.is_control())
                }
                None => false,
            };
            if ok {
                Ok(Cow::Borrowed(v))
            } else {
                Err(("bad_email", "expected an email address like name@example.org".into()))
            }
        }
        ColumnKind::Phone => {
            let allowed = v.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c));
            let digits: String = v.chars().filter(char::is_ascii_digit).collect();
            if allowed && (7..=15).contains(&digits.len()) && !v[1..].contains('+') {
                Ok(Cow::Owned(if v.starts_with('+') { format!("+{digits}") } else { digits }))
            } else {
                Err(("bad_phone", "expected a phone number of 7 to 15 digits".into()))
            }
        }
        ColumnKind::Enum { values } => values
            .iter()
            .find(|a| a.eq_ignore_ascii_case(v))
            .map(|a| if a == v { Cow::Borrowed(v) } else { Cow::Owned(a.clone()) })
            .ok_or_else(|| ("not_in_list", format!("expected one of: {}", values.join(", ")))),
    }
}

fn check_datetime(v: &str) -> bool {
    let b = v.as_bytes();
    // Every slice below is at a fixed byte offset: only ASCII makes each one a char boundary.
    if b.len() < 19 || !v.is_ascii() {
        return false;
    }
    let date_ok = DateFormat::from_pattern("YYYY-MM-DD").and_then(|f| f.read(&v[..10])).is_some();
    let sep = b[10] == b'T' || b[10] == b' ';
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let time_ok = digits(11..13) && b[13] == b':' && digits(14..16) && b[16] == b':' && digits(17..19);
    let in_range = v[11..13].parse::<u8>().is_ok_and(|h| h < 24)
        && v[14..16].parse::<u8>().is_ok_and(|m| m < 60)
        && v[17..19].parse::<u8>().is_ok_and(|s| s < 61);
    let mut rest = &v[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    let zone_ok = rest.is_empty()
        || rest == "Z"
        || (rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && rest[1..3].bytes().all(|c| c.is_ascii_digit())
            && &rest[3..4] == ":"
            && rest[4..6].bytes().all(|c| c.is_ascii_digit()));
    date_ok && sep && time_ok && in_range && zone_ok
}

/// A date pattern built from `YYYY`, `MM`, `M`, `DD`, `D` and literal separators.
#[derive(Debug, Clone, PartialEq)]
pub struct DateFormat {
    pub source: String,
    parts: Vec<DatePart>,
}

#[derive(Debug, Clone, PartialEq)]
enum DatePart {
    Year,
    Month { exact: bool },
    Day { exact: bool },
    Literal(char),
}

impl DateFormat {
    pub fn from_pattern(source: &str) -> Option<Self> {
        let mut parts = Vec::new();
        let mut rest = source;
        while !rest.is_empty() {
            let (part, len) = if rest.starts_with("YYYY") {
                (DatePart::Year, 4)
            } else if rest.starts_with("MM") {
                (DatePart::Month { exact: true }, 2)
            } else if rest.starts_with("DD") {
                (DatePart::Day { exact: true }, 2)
            } else if rest.starts_with('M') {
                (DatePart::Month { exact: false }, 1)
            } else if rest.starts_with('D') {
                (DatePart::Day { exact: false }, 1)
            } else {
                let c = rest.chars().next()?;
                if c.is_ascii_alphanumeric() {
                    return None;
                }
                (DatePart::Literal(c), c.len_utf8())
            };
            parts.push(part);
            rest = &rest[len..];
        }
        let count = |f: fn(&DatePart) -> bool| parts.iter().filter(|p| f(p)).count();
        let valid = count(|p| matches!(p, DatePart::Year)) == 1
            && count(|p| matches!(p, DatePart::Month { .. })) == 1
            && count(|p| matches!(p, DatePart::Day { .. })) == 1;
        valid.then(|| Self { source: source.to_owned(), parts })
    }

    /// (year, month, day) if `v` matches this pattern and is a real calendar date.
    pub fn read(&self, v: &str) -> Option<(u32, u32, u32)> {
        let (mut y, mut m, mut d) = (0, 0, 0);
        let mut rest = v.as_bytes();
        for part in &self.parts {
            let take_digits = |rest: &mut &[u8], min: usize, max: usize| -> Option<u32> {
                let n = rest.iter().take(max).take_while(|b| b.is_ascii_digit()).count();
                if n < min {
                    return None;
                }
                let value = std::str::from_utf8(&rest[..n]).ok()?.parse().ok()?;
                *rest = &rest[n..];
                Some(value)
            };
            match part {
                DatePart::Year => y = take_digits(&mut rest, 4, 4)?,
                DatePart::Month { exact } => m = take_digits(&mut rest, if *exact { 2 } else { 1 }, 2)?,
                DatePart::Day { exact } => d = take_digits(&mut rest, if *exact { 2 } else { 1 }, 2)?,
                DatePart::Literal(c) => {
                    let mut buf = [0u8; 4];
                    rest = rest.strip_prefix(c.encode_utf8(&mut buf).as_bytes())?;
                }
            }
        }
        if !rest.is_empty() || !(1..=12).contains(&m) || d == 0 {
            return None;
        }
        let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][(m - 1) as usize];
        (d <= days && y >= 1000).then_some((y, m, d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_date(formats: &[&str]) -> ColumnKind {
        ColumnKind::Date { formats: formats.iter().map(|f| DateFormat::from_pattern(f).unwrap()).collect() }
    }

    #[test]
    fn dates_in_declared_formats_normalise_to_iso() {
        let k = kind_date(&["MM/DD/YYYY", "M/D/YYYY", "YYYY-MM-DD", "MM-DD-YYYY"]);
        for (input, iso) in [
            ("08/31/2012", "2012-08-31"),
            ("8/1/2012", "2012-08-01"),
            ("2012-08-31", "2012-08-31"),
            ("02-29-2024", "2024-02-29"),
        ] {
            assert_eq!(check_value(&k, input).unwrap(), iso, "{input}");
        }
        for bad in [
            "02/30/2012",
            "13/01/2012",
            "2023-02-29",
            "8/1/12",
            "2012-8-31",
            "31.08.2012",
            "08/31/2012x",
            "tomorrow",
        ] {
            let e = check_value(&k, bad).unwrap_err();
            assert_eq!(e.0, "bad_date", "{bad}");
            assert!(e.1.contains("MM/DD/YYYY"));
        }
        assert!(DateFormat::from_pattern("YYYY-MM").is_none());
        assert!(DateFormat::from_pattern("YYYY-MM-DDx").is_none());
    }

    #[test]
    fn other_kinds() {
        assert_eq!(check_value(&ColumnKind::Integer, "-42").unwrap(), "-42");
        assert_eq!(check_value(&ColumnKind::Integer, "4.2").unwrap_err().0, "not_integer");
        assert_eq!(check_value(&ColumnKind::Decimal, "+12.50").unwrap(), "12.50");
        assert!(check_value(&ColumnKind::Decimal, "12.").is_err());
        assert!(check_value(&ColumnKind::Decimal, "1e5").is_err());
        assert_eq!(check_value(&ColumnKind::Boolean, "Yes").unwrap(), "true");
        assert!(check_value(&ColumnKind::Boolean, "maybe").is_err());
        assert!(check_value(&ColumnKind::Email, "ann@school.org").is_ok());
        for bad in ["ann", "ann@school", "@school.org", "a b@school.org", "ann@@school.org", "ann@.org"] {
            assert_eq!(check_value(&ColumnKind::Email, bad).unwrap_err().0, "bad_email", "{bad}");
        }
        assert_eq!(check_value(&ColumnKind::Phone, "+1 (555) 010-2030").unwrap(), "+15550102030");
        assert_eq!(check_value(&ColumnKind::Phone, "555-0102").unwrap(), "5550102");
        assert!(check_value(&ColumnKind::Phone, "call me").is_err());
        assert!(check_value(&ColumnKind::Phone, "12").is_err());
        let e = ColumnKind::Enum { values: vec!["English".into(), "Spanish".into()] };
        assert_eq!(check_value(&e, "spanish").unwrap(), "Spanish");
        assert!(check_value(&e, "Klingon").unwrap_err().1.contains("English, Spanish"));
        assert!(check_value(&ColumnKind::DateTime, "2024-08-31T14:05:00Z").is_ok());
        assert!(check_value(&ColumnKind::DateTime, "2024-08-31 14:05:00.123+02:00").is_ok());
        assert!(check_value(&ColumnKind::DateTime, "2024-08-31T25:05:00Z").is_err());
    }

    /// A multi-byte character at any position of otherwise well-formed values is refused,
    /// never sliced through (a panic there once took the import worker down).
    #[test]
    fn non_ascii_at_any_position_is_an_error_not_a_panic() {
        let kinds = [
            ColumnKind::Text { max_length: 40 },
            ColumnKind::Integer,
            ColumnKind::Decimal,
            ColumnKind::Boolean,
            kind_date(&["MM/DD/YYYY", "YYYY-MM-DD"]),
            ColumnKind::DateTime,
            ColumnKind::Email,
            ColumnKind::Phone,
            ColumnKind::Enum { values: vec!["a".into()] },
            ColumnKind::Id,
        ];
        for good in
            ["2024-08-31T14:05:00+01:00", "2024-08-31 14:05:00.123Z", "+1 (555) 010-9999", "08/31/2012"]
        {
            for at in 0..=good.len() {
                for insert in ["é", "\u{1F600}", "\u{0}"] {
                    let hostile = format!("{}{insert}{}", &good[..at], &good[at..]);
                    let replaced = format!("{}{insert}{}", &good[..at], good.get(at + 1..).unwrap_or(""));
                    for v in [&hostile, &replaced] {
                        for k in &kinds {
                            let _ = check_value(k, v);
                        }
                    }
                }
            }
        }
        assert!(check_value(&ColumnKind::DateTime, "2024-08-0é00:00:00Z").is_err());
        assert!(check_value(&ColumnKind::DateTime, "2024-08-31T14:05:00+1é00").is_err());
        assert!(check_value(&ColumnKind::Text { max_length: 3 }, "abcd").is_err());
        // Formula-looking text is data, not an error: it is neutralised on the way out.
        assert_eq!(
            check_value(&ColumnKind::Text { max_length: 100 }, "=HYPERLINK(\"x\")"),
            Ok("=HYPERLINK(\"x\")".into())
        );
    }

    fn students() -> ImportType {
        let text = r#"
[[type]]
name = "students"
key = ["sisId"]
mode = "mirror"
person = { role = "student", id = "sisId", first_name = "firstName", last_name = "lastName" }
[[type.column]]
name = "sisId"
required = true
kind = "id"
[[type.column]]
name = "firstName"
required = true
kind = "text"
[[type.column]]
name = "lastName"
required = true
kind = "text"
[[type.column]]
name = "birthDate"
kind = "date"
"#;
        crate::import::ImportTypes::parse(&[("t.toml".into(), text.into())])
            .unwrap()
            .get("students")
            .unwrap()
            .clone()
    }

    fn record(fields: &[&str], line: u64) -> Record {
        let text = format!("{}\n", fields.join(";"));
        let mut r = crate::import::CsvReader::new(text.as_bytes(), 1 << 16, 100)
            .with_delimiter(Some(crate::import::Delimiter::Semicolon));
        let mut rec = Record::default();
        assert!(r.read(&mut rec).unwrap());
        rec.line = line;
        rec
    }

    /// A spreadsheet's trailing empty columns: ignored and noted when lenient, refused when
    /// strict; rows that carry them load either way only when lenient. Errors name the record.
    #[test]
    fn trailing_empty_columns_are_lenient_only_and_errors_name_their_record() {
        let t = students();
        let header = record(&["sisId", "firstName", "lastName", "birthDate", "", ""], 1);
        let mut notes = Notes::default();
        let map = HeaderMap::new(&t, &header, Strictness::Lenient, "students.csv", &mut notes).unwrap();
        assert!(map.unknown.is_empty(), "{:?}", map.unknown);
        let (mut values, mut errors) = (Values::default(), Vec::new());
        for line in 2..5 {
            let row = record(&["S1", "Zoë", "Núñez", "2010-01-02", "", ""], line);
            assert!(map.check(&t, &row, &mut values, &mut errors, &mut notes), "{errors:?}");
        }
        let short = record(&["S1", "Zoë", "Núñez", "2010-01-02"], 5);
        assert!(map.check(&t, &short, &mut values, &mut errors, &mut notes), "{errors:?}");
        assert_eq!(
            notes.warnings(),
            [
                "students.csv: 2 empty column(s) at the end of the header ignored",
                "students.csv: empty fields past the header's last column ignored, 3 rows",
            ]
        );
        let bad = record(&["S2", "Zoë", "Núñez", "31.02.2012", "x", ""], 6);
        assert!(!map.check(&t, &bad, &mut values, &mut errors, &mut notes));
        assert_eq!(errors[0].code, "field_count");
        assert_eq!(map.describe(&t, &bad), ("S2".to_owned(), "Zoë Núñez".to_owned()));
        // Longer than the header itself: a stray delimiter, not a spreadsheet's empty column.
        errors.clear();
        let long = record(&["S3", "Ann", "Lee", "2010-01-02", "", "", ""], 7);
        assert!(!map.check(&t, &long, &mut values, &mut errors, &mut notes));
        assert_eq!(errors[0].code, "field_count");

        let mut strict_notes = Notes::default();
        let refused = HeaderMap::new(&t, &header, Strictness::Strict, "students.csv", &mut strict_notes);
        assert_eq!(
            refused.unwrap_err(),
            [HeaderError::EmptyName { position: 5 }, HeaderError::EmptyName { position: 6 }]
        );
        assert!(strict_notes.is_empty());
    }

    #[test]
    fn notes_group_per_place_and_kind_whatever_the_rows() {
        let mut notes = Notes::default();
        for _ in 0..100_000 {
            notes.value("users.csv:enabledUser", "letter_case", "TRUE", "true");
        }
        notes.value("users.csv:enabledUser", "letter_case", "False", "false");
        notes.value("users.csv:role", "letter_case", "Student", "student");
        let mut other = Notes::default();
        other.value("users.csv:role", "letter_case", "Student", "student");
        notes.merge(other);
        assert_eq!(
            notes.warnings(),
            [
                "users.csv:enabledUser: `TRUE` read as `true` (and similar), 100001 rows",
                "users.csv:role: `Student` read as `student`, 2 rows",
            ]
        );
    }
}
