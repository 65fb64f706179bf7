//! Headers and rows of a OneRoster file, checked against the file's table.

use super::manifest::FileMode;
use super::spec::{FileSpec, Kind, Version};
use crate::import::values::{DateFormat, check_value, shown};
use crate::import::{ColumnKind, Notes, Record, RowError, Strictness};
use std::borrow::Cow;

/// Where each column of the table sits in a file, and the extension columns after them.
#[derive(Debug, Clone)]
pub struct HeaderLayout {
    /// For each column of the table, its field index (`None`: a column the 1.2.1 errata
    /// removed, which this file leaves out).
    pub columns: Vec<Option<usize>>,
    /// `metadata.*` extension columns: (field index, name).
    pub metadata: Vec<(usize, String)>,
    pub width: usize,
    /// The header's length with its trailing empty columns: a row may carry empty fields up
    /// to it when lenient, never more (a stray delimiter is not guessed at).
    pub header_len: usize,
    /// Lenient: white space around values is trimmed, the case of booleans and vocabulary
    /// values and a space between date and time are normalised, and empty fields past
    /// `width` are ignored (each with a note).
    pub lenient: bool,
}

/// Checks a header: the table's columns, exactly and in order, then only `metadata.*`.
/// Lenient: white space around names and empty names at the end are let through, noted.
pub fn check_header(
    spec: &FileSpec,
    header: &Record,
    strictness: Strictness,
    notes: &mut Notes,
) -> Result<HeaderLayout, String> {
    let lenient = !strictness.is_strict();
    let file = spec.file_name();
    let mut names: Vec<&str> = header.iter().collect();
    if lenient {
        let width = names.iter().rposition(|n| !n.trim().is_empty()).map_or(0, |i| i + 1);
        if width < names.len() {
            let n = names.len() - width;
            notes.once(
                &file,
                "trailing_columns",
                format!("{n} empty column(s) at the end of the header ignored"),
            );
            names.truncate(width);
        }
        for n in names.iter_mut() {
            if n.trim() != *n {
                notes.value(&format!("{file}:{}", n.trim()), "header_white_space", n, n.trim());
                *n = n.trim();
            }
        }
    }
    let expected = || spec.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(",");
    let mut columns = Vec::with_capacity(spec.columns.len());
    let mut at = 0;
    for c in &spec.columns {
        match names.get(at) {
            Some(n) if *n == c.name => {
                columns.push(Some(at));
                at += 1;
            }
            _ if c.removed_in.is_some() => columns.push(None),
            found => {
                let found = match found {
                    Some(n) => format!("is {n:?}"),
                    None => "is missing".into(),
                };
                return Err(format!(
                    "column {} {found}, but OneRoster {} requires {:?} there (names are case-sensitive); the header must be exactly: {}",
                    at + 1,
                    spec.version.as_str(),
                    c.name,
                    expected()
                ));
            }
        }
    }
    let mut metadata: Vec<(usize, String)> = Vec::new();
    for (i, n) in names.iter().enumerate().skip(at) {
        if !n.starts_with("metadata.") || n.len() == "metadata.".len() {
            return Err(format!(
                "column {} {n:?} is not a OneRoster {} column of {}; extension columns go after the defined ones and are named metadata.<name>",
                i + 1,
                spec.version.as_str(),
                spec.file_name()
            ));
        }
        if metadata.iter().any(|(_, m)| m == n) {
            return Err(format!("column {} {n:?} appears twice", i + 1));
        }
        metadata.push((i, (*n).to_owned()));
    }
    Ok(HeaderLayout { columns, metadata, width: names.len(), header_len: header.len(), lenient })
}

/// A row, checked.
#[derive(Debug, Default)]
pub struct RowCheck {
    /// The sourcedId, when it is valid (even if other fields are not).
    pub key: Option<String>,
    /// Delta: the row says the record is to be deleted.
    pub deleted: bool,
    /// (table column, referred file, id) of every reference in the row.
    pub references: Vec<(usize, &'static str, String)>,
    pub errors: Vec<RowError>,
    /// The record as a JSON object, header names to values (bulk rows get status "active").
    pub data: String,
    /// What a person would call the record (a user's given and family name, an org's name, a
    /// class's title), for error reports; empty when the file has no such column.
    pub name: String,
}

/// The record's name in a row: `givenName familyName`, else `name`, else `title`.
fn name_of(spec: &FileSpec, layout: &HeaderLayout, rec: &Record) -> String {
    let field = |n: &str| {
        spec.columns
            .iter()
            .position(|c| c.name == n)
            .and_then(|ci| layout.columns[ci])
            .and_then(|at| rec.get(at))
            .map(str::trim)
            .unwrap_or("")
    };
    let person = format!("{} {}", field("givenName"), field("familyName"));
    let person = person.trim();
    let name = if !person.is_empty() {
        person
    } else if !field("name").is_empty() {
        field("name")
    } else {
        field("title")
    };
    name.chars().take(200).collect()
}

const SOURCED_ID_CHARS: &str = "._/@-";
/// sourcedIds one list field may hold (a user's orgs, a class's terms): a district's schools
/// fit, and a row of a few thousand tiny ids cannot swell into megabytes of references.
pub const MAX_IDS_PER_FIELD: usize = 1000;

/// Whether every field of a record is empty (a spreadsheet's trailing empty row).
pub fn is_empty_row(rec: &Record) -> bool {
    rec.iter().all(|f| f.trim().is_empty())
}

/// What lenient reading makes of a value that strict reading would refuse, if it is
/// unambiguous: (the value, the kind of note).
fn lenient_value<'v>(kind: Kind, values: &[String], v: &'v str) -> Option<(Cow<'v, str>, &'static str)> {
    let vocabulary = |item: &str| values.iter().find(|a| a.eq_ignore_ascii_case(item) && *a != item).cloned();
    match kind {
        Kind::Boolean => {
            let lower = v.to_ascii_lowercase();
            (matches!(lower.as_str(), "true" | "false") && lower != v)
                .then_some((Cow::Owned(lower), "letter_case"))
        }
        Kind::Status => {
            let lower = v.to_ascii_lowercase();
            (matches!(lower.as_str(), "active" | "tobedeleted") && lower != v)
                .then_some((Cow::Owned(lower), "letter_case"))
        }
        Kind::Enum => vocabulary(v).map(|a| (Cow::Owned(a), "letter_case")),
        Kind::EnumList => {
            let items: Vec<&str> = v.split(',').map(str::trim).collect();
            let mut changed = false;
            let fixed: Vec<String> = items
                .iter()
                .map(|i| match vocabulary(i) {
                    Some(a) => {
                        changed = true;
                        a
                    }
                    None => (*i).to_owned(),
                })
                .collect();
            changed.then(|| (Cow::Owned(fixed.join(",")), "letter_case"))
        }
        Kind::DateTime if v.len() >= 19 && v.as_bytes()[10] == b' ' && v.is_ascii() => {
            Some((Cow::Owned(format!("{}T{}", &v[..10], &v[11..])), "date_time_separator"))
        }
        _ => None,
    }
}

/// Checks one row of a file read in `mode` (bulk or delta). Lenient normalisations (see
/// [`HeaderLayout::lenient`]) are noted in `notes`.
pub fn check_row(
    spec: &'static FileSpec,
    layout: &HeaderLayout,
    rec: &Record,
    mode: FileMode,
    notes: &mut Notes,
) -> RowCheck {
    let mut out = RowCheck::default();
    let mut errors = Vec::new();
    let file = spec.file_name();
    let mut error = |column: &str, code: &'static str, reason: String, value: &str| {
        errors.push(RowError {
            line: rec.line,
            column: format!("{file}:{column}"),
            code,
            reason,
            value: value.chars().take(200).collect(),
            ..Default::default()
        })
    };
    let extra_empty = rec.len() > layout.width
        && rec.len() <= layout.header_len
        && rec.iter().skip(layout.width).all(|f| f.trim().is_empty());
    if layout.lenient && extra_empty {
        notes.other(&file, "trailing_fields", "empty fields past the header's last column ignored");
    } else if rec.len() != layout.width {
        // The row cannot be read, but its record must not look absent from a snapshot.
        // Keyed as a readable row would be: trimmed when lenient.
        let raw_id = rec.get(0).unwrap_or("");
        let id = if layout.lenient { raw_id.trim() } else { raw_id };
        if !id.is_empty() && check_id(spec.version, id).is_ok() {
            out.key = Some(id.to_owned());
        }
        error(
            "",
            "field_count",
            format!("the row has {} fields but the header has {}", rec.len(), layout.width),
            "",
        );
        for e in &mut errors {
            e.key = id.trim().chars().take(200).collect();
        }
        out.errors = errors;
        return out;
    }
    let bulk = mode == FileMode::Bulk;
    // Each column's value as it will be stored (normalised when lenient).
    let mut stored: Vec<Cow<'_, str>> = Vec::with_capacity(spec.columns.len());
    for (ci, c) in spec.columns.iter().enumerate() {
        let Some(at) = layout.columns[ci] else {
            stored.push(Cow::Borrowed(""));
            continue;
        };
        let raw = rec.get(at).unwrap_or("");
        let name = c.name.as_str();
        let mut v = Cow::Borrowed(raw);
        if layout.lenient {
            let trimmed = raw.trim();
            if trimmed.len() != raw.len() {
                notes.value(&format!("{file}:{name}"), "white_space", raw, trimmed);
                v = Cow::Borrowed(trimmed);
            }
            if let Some((fixed, kind)) = lenient_value(c.kind, &c.values, trimmed) {
                notes.value(&format!("{file}:{name}"), kind, trimmed, &fixed);
                v = Cow::Owned(fixed.into_owned());
            }
        }
        // Many SIS exports fill `status` (`active`) and `dateLastModified` in bulk files too.
        // Lenient: a bulk file lists what is active, so `active` and a valid date say nothing
        // more and are ignored with a warning; `tobedeleted` in a bulk file stays an error.
        if layout.lenient && bulk && c.required_for_delta && !v.is_empty() {
            let redundant = match c.kind {
                Kind::Status => v == "active",
                _ => check_value_of(spec.version, c.kind, &c.values, c.ext_allowed, &v).is_ok(),
            };
            if redundant {
                notes.other(
                    &format!("{file}:{name}"),
                    "filled_in_bulk",
                    format!("`{}` in a bulk file ignored (a bulk file lists what is active)", shown(&v)),
                );
                v = Cow::Borrowed("");
            }
        }
        stored.push(v.clone());
        let v: &str = &v;
        if c.required_for_delta {
            if bulk && !v.is_empty() {
                error(
                    name,
                    "not_blank_in_bulk",
                    format!("{name} must be blank in a bulk file (the manifest says bulk)"),
                    v,
                );
                continue;
            }
            if !bulk && v.is_empty() {
                error(name, "required", format!("{name} is required in a delta file"), v);
                continue;
            }
        }
        if v.is_empty() {
            if c.required {
                error(name, "required", "a value is required".into(), v);
            }
            continue;
        }
        let problem = check_value_of(spec.version, c.kind, &c.values, c.ext_allowed, v);
        if let Err((code, reason)) = problem {
            error(name, code, reason, v);
            continue;
        }
        if c.kind == Kind::Status {
            out.deleted = v == "tobedeleted";
        }
        if ci == 0 {
            out.key = Some(v.to_owned());
        }
        if let Some(target) = c.refers_to.as_deref() {
            // Each id once, in the order given.
            let mut seen = std::collections::HashSet::new();
            let ids: Vec<&str> =
                v.split(',').map(str::trim).filter(|s| !s.is_empty() && seen.insert(*s)).collect();
            if ids.len() > MAX_IDS_PER_FIELD {
                let reason = format!(
                    "{} sourcedIds in one field; at most {MAX_IDS_PER_FIELD} are accepted (split the record's links)",
                    ids.len()
                );
                error(name, "too_many_ids", reason, v);
                continue;
            }
            out.references.extend(ids.into_iter().map(|id| (ci, target, id.to_owned())));
        }
    }
    // Rows with references may yet fail to resolve them: they carry their name too.
    if !errors.is_empty() || !out.references.is_empty() {
        out.name = name_of(spec, layout, rec);
    }
    if !errors.is_empty() {
        let key: String = stored.first().map_or("", |v| v).chars().take(200).collect();
        for e in &mut errors {
            e.key.clone_from(&key);
            e.name.clone_from(&out.name);
        }
    }
    out.errors = errors;
    out.data = record_json(spec, layout, rec, &stored, bulk);
    out
}

fn check_value_of(
    version: Version,
    kind: Kind,
    values: &[String],
    ext_allowed: bool,
    v: &str,
) -> Result<(), (&'static str, String)> {
    let in_vocabulary = |item: &str| {
        values.iter().any(|a| a == item) || (ext_allowed && item.len() > 4 && item.starts_with("ext:"))
    };
    let vocabulary = || {
        let ext = if ext_allowed { " (or an ext: value)" } else { "" };
        format!("expected one of: {}{ext}; values are case-sensitive", values.join(", "))
    };
    match kind {
        Kind::Id => check_id(version, v),
        Kind::IdList => v.split(',').map(str::trim).try_for_each(|id| check_id(version, id)),
        Kind::Status => match v {
            "active" | "tobedeleted" => Ok(()),
            _ => Err(("bad_status", "expected active or tobedeleted".into())),
        },
        Kind::Enum if in_vocabulary(v) => Ok(()),
        Kind::Enum => Err(("not_in_list", vocabulary())),
        Kind::EnumList => match v.split(',').map(str::trim).find(|i| !in_vocabulary(i)) {
            None => Ok(()),
            Some(_) => Err(("not_in_list", vocabulary())),
        },
        Kind::Boolean => match v {
            "true" | "false" => Ok(()),
            _ => Err(("not_boolean", "expected true or false (lower case)".into())),
        },
        Kind::Date => {
            let ok =
                v.len() == 10 && DateFormat::from_pattern("YYYY-MM-DD").and_then(|f| f.read(v)).is_some();
            if ok { Ok(()) } else { Err(("bad_date", "expected an ISO 8601 date, YYYY-MM-DD".into())) }
        }
        Kind::Year => {
            if v.len() == 4 && v.bytes().all(|b| b.is_ascii_digit()) {
                Ok(())
            } else {
                Err(("bad_year", "expected a year, YYYY".into()))
            }
        }
        // OneRoster writes a T between date and time (ISO 8601); lenient reading turns a
        // space into one before this check.
        Kind::DateTime if v.as_bytes().get(10) == Some(&b' ') => Err((
            "bad_datetime",
            "expected ISO 8601 with a T between date and time, e.g. 2017-05-06T08:01:05Z".into(),
        )),
        Kind::DateTime => check_value(&ColumnKind::DateTime, v).map(|_| ()),
        Kind::Integer => check_value(&ColumnKind::Integer, v).map(|_| ()),
        Kind::Float => check_value(&ColumnKind::Decimal, v).map(|_| ()),
        Kind::Email | Kind::Text | Kind::List => {
            check_value(&ColumnKind::Text { max_length: 65_536 }, v).map(|_| ())
        }
    }
}

/// sourcedIds: 1.2 allows at most 255 of `0-9 A-Z a-z . - _ / @`; 1.1 states no character
/// set, so only the length and control characters are checked there.
fn check_id(version: Version, id: &str) -> Result<(), (&'static str, String)> {
    if id.is_empty() {
        return Err(("bad_id", "an empty id in a list".into()));
    }
    if id.len() > 255 {
        return Err(("bad_id", "an id must be shorter than 256 characters".into()));
    }
    match version {
        Version::V1_2 => {
            if id.chars().all(|c| c.is_ascii_alphanumeric() || SOURCED_ID_CHARS.contains(c)) {
                Ok(())
            } else {
                Err(("bad_id", "OneRoster 1.2 ids may hold only letters, digits and . - _ / @".into()))
            }
        }
        Version::V1_1 => {
            if id.chars().any(char::is_control) {
                Err(("bad_id", "an id must not hold control characters".into()))
            } else {
                Ok(())
            }
        }
    }
}

fn record_json(
    spec: &FileSpec,
    layout: &HeaderLayout,
    rec: &Record,
    stored: &[Cow<'_, str>],
    bulk: bool,
) -> String {
    let mut s = String::with_capacity(rec.iter().map(|f| f.len() + 24).sum::<usize>() + 2);
    s.push('{');
    let mut first = true;
    let mut field = |name: &str, value: &str| {
        if !first {
            s.push(',');
        }
        first = false;
        crate::json::push_string(&mut s, name);
        s.push(':');
        crate::json::push_string(&mut s, value);
    };
    for (ci, c) in spec.columns.iter().enumerate() {
        if layout.columns[ci].is_none() || c.secret {
            continue;
        }
        let v = stored.get(ci).map_or("", |v| v);
        if bulk && c.kind == Kind::Status {
            field(&c.name, "active");
        } else {
            field(&c.name, v);
        }
    }
    for (at, name) in &layout.metadata {
        let v = rec.get(*at).unwrap_or("");
        field(name, if layout.lenient { v.trim() } else { v });
    }
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oneroster::{Version, file_spec};

    fn record(line: u64, fields: &[&str]) -> Record {
        let text: Vec<String> = fields.iter().map(|f| format!("\"{}\"", f.replace('"', "\"\""))).collect();
        let bytes = format!("{}\n", text.join(",")).into_bytes();
        let mut csv = crate::import::CsvReader::comma(bytes.as_slice(), 1 << 16, 100);
        let mut rec = Record::default();
        assert!(csv.read(&mut rec).unwrap());
        rec.line = line;
        rec
    }

    const ORGS: [&str; 7] =
        ["sourcedId", "status", "dateLastModified", "name", "type", "identifier", "parentSourcedId"];

    #[test]
    fn headers_must_be_the_tables_columns_in_order_then_metadata() {
        let orgs = file_spec(Version::V1_2, "orgs").unwrap();
        let layout =
            check_header(orgs, &record(1, &ORGS), Strictness::Strict, &mut Notes::default()).unwrap();
        assert_eq!(layout.columns, (0..7).map(Some).collect::<Vec<_>>());
        let mut with_meta = ORGS.to_vec();
        with_meta.push("metadata.ncesId");
        assert_eq!(
            check_header(orgs, &record(1, &with_meta), Strictness::Strict, &mut Notes::default())
                .unwrap()
                .metadata,
            [(7, "metadata.ncesId".to_owned())]
        );
        let mut swapped = ORGS.to_vec();
        swapped.swap(3, 4);
        assert!(
            check_header(orgs, &record(1, &swapped), Strictness::Strict, &mut Notes::default())
                .unwrap_err()
                .contains("column 4 is \"type\"")
        );
        let mut extra = ORGS.to_vec();
        extra.push("ncesId");
        assert!(
            check_header(orgs, &record(1, &extra), Strictness::Strict, &mut Notes::default())
                .unwrap_err()
                .contains("metadata.<name>")
        );
        assert!(
            check_header(orgs, &record(1, &ORGS[..5]), Strictness::Strict, &mut Notes::default())
                .unwrap_err()
                .contains("column 6 is missing")
        );
        let lower: Vec<String> = ORGS.iter().map(|c| c.to_lowercase()).collect();
        let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
        assert!(
            check_header(orgs, &record(1, &lower), Strictness::Strict, &mut Notes::default())
                .unwrap_err()
                .contains("case-sensitive")
        );
        // 1.2.1 removed users.resourceSourcedIds: both forms of the header are 1.2.
        let users = file_spec(Version::V1_2, "users").unwrap();
        let names: Vec<&str> = users.columns.iter().map(|c| c.name.as_str()).collect();
        assert!(check_header(users, &record(1, &names), Strictness::Strict, &mut Notes::default()).is_ok());
        let without: Vec<&str> = names.iter().copied().filter(|n| *n != "resourceSourcedIds").collect();
        assert!(
            check_header(users, &record(1, &without), Strictness::Strict, &mut Notes::default())
                .unwrap()
                .columns
                .contains(&None)
        );
    }

    #[test]
    fn id_lists_are_bounded_and_each_id_is_referred_to_once() {
        let classes = file_spec(Version::V1_2, "classes").unwrap();
        let names: Vec<&str> = classes.columns.iter().map(|c| c.name.as_str()).collect();
        let layout =
            check_header(classes, &record(1, &names), Strictness::Strict, &mut Notes::default()).unwrap();
        let row = |terms: &str| {
            let fields: Vec<String> = names
                .iter()
                .map(|n| match *n {
                    "sourcedId" => "c1".to_owned(),
                    "title" => "Algebra".to_owned(),
                    "courseSourcedId" => "co1".to_owned(),
                    "classType" => "scheduled".to_owned(),
                    "schoolSourcedId" => "s1".to_owned(),
                    "termSourcedIds" => terms.to_owned(),
                    _ => String::new(),
                })
                .collect();
            let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
            check_row(classes, &layout, &record(2, &fields), FileMode::Bulk, &mut Notes::default())
        };
        let ok = row("t2,t1,t2, t1");
        assert!(ok.errors.is_empty(), "{:?}", ok.errors);
        let terms: Vec<&str> =
            ok.references.iter().filter(|r| r.1 == "academicSessions").map(|r| r.2.as_str()).collect();
        assert_eq!(terms, ["t2", "t1"]);
        let many = (0..=MAX_IDS_PER_FIELD).map(|i| format!("t{i}")).collect::<Vec<_>>().join(",");
        let refused = row(&many);
        assert_eq!(refused.errors.len(), 1, "{:?}", refused.errors);
        assert_eq!(refused.errors[0].code, "too_many_ids");
        assert!(refused.errors[0].reason.starts_with("1001 sourcedIds in one field"));
        assert_eq!(refused.errors[0].value.chars().count(), 200, "error values are shortened");
        assert!(refused.references.iter().all(|r| r.1 != "academicSessions"));
    }

    /// SIS exports often fill `status` and `dateLastModified` in bulk files: lenient reading
    /// ignores `active` and a valid date with a warning, strict refuses them, and
    /// `tobedeleted` in a bulk file is refused either way.
    #[test]
    fn status_and_dates_filled_in_a_bulk_file_are_ignored_only_when_lenient() {
        let orgs = file_spec(Version::V1_1, "orgs").unwrap();
        let row = |status: &str, date: &str, strictness: Strictness| {
            let mut notes = Notes::default();
            let layout = check_header(orgs, &record(1, &ORGS), strictness, &mut notes).unwrap();
            let fields = ["s1", status, date, "Lincoln", "school", "", ""];
            let checked = check_row(orgs, &layout, &record(2, &fields), FileMode::Bulk, &mut notes);
            let codes: Vec<&str> = checked.errors.iter().map(|e| e.code).collect();
            (codes, notes.warnings(), checked.deleted)
        };
        let (codes, warnings, deleted) = row("Active", "2017-05-06 08:01:05", Strictness::Lenient);
        assert!(codes.is_empty() && !deleted, "{codes:?}");
        assert!(
            warnings.contains(
                &"orgs.csv:status: `active` in a bulk file ignored (a bulk file lists what is active), 1 row"
                    .to_owned()
            ),
            "{warnings:?}"
        );
        assert!(
            warnings
                .iter()
                .any(|w| w
                    .starts_with("orgs.csv:dateLastModified: `2017-05-06T08:01:05` in a bulk file ignored")),
            "{warnings:?}"
        );
        let (codes, ..) = row("tobedeleted", "", Strictness::Lenient);
        assert_eq!(codes, ["not_blank_in_bulk"]);
        let (codes, ..) = row("active", "2017-05-06T08:01:05Z", Strictness::Strict);
        assert_eq!(codes, ["not_blank_in_bulk", "not_blank_in_bulk"]);
        let (codes, ..) = row("", "yesterday", Strictness::Lenient);
        assert_eq!(codes, ["not_blank_in_bulk"], "a date that is not one is not ignored");
    }

    #[test]
    fn rows_are_checked_field_by_field_for_bulk_and_delta() {
        let orgs = file_spec(Version::V1_2, "orgs").unwrap();
        let layout =
            check_header(orgs, &record(1, &ORGS), Strictness::Strict, &mut Notes::default()).unwrap();
        let ok = check_row(
            orgs,
            &layout,
            &record(2, &["s1", "", "", "Lincoln", "school", "", "d1"]),
            FileMode::Bulk,
            &mut Notes::default(),
        );
        assert!(ok.errors.is_empty(), "{:?}", ok.errors);
        assert_eq!(ok.key.as_deref(), Some("s1"));
        assert_eq!(ok.references, [(6, "orgs", "d1".to_owned())]);
        assert!(ok.data.contains("\"status\":\"active\""), "{}", ok.data);
        let ext = check_row(
            orgs,
            &layout,
            &record(3, &["s2", "", "", "X", "ext:campus", "", ""]),
            FileMode::Bulk,
            &mut Notes::default(),
        );
        assert!(ext.errors.is_empty());
        let codes = |fields: &[&str], mode| {
            check_row(orgs, &layout, &record(4, fields), mode, &mut Notes::default())
                .errors
                .iter()
                .map(|e| e.code)
                .collect::<Vec<_>>()
        };
        assert_eq!(codes(&["s3", "", "", "", "School", "", ""], FileMode::Bulk), ["required", "not_in_list"]);
        assert_eq!(
            codes(&["s 3", "active", "", "X", "school", "", ""], FileMode::Bulk),
            ["bad_id", "not_blank_in_bulk"]
        );
        assert_eq!(codes(&["s3", "", "", "X", "school", "", ""], FileMode::Delta), ["required", "required"]);
        assert_eq!(
            codes(&["s3", "gone", "2026-13-01T00:00:00Z", "X", "school", "", ""], FileMode::Delta),
            ["bad_status", "bad_datetime"]
        );
        let deleted = check_row(
            orgs,
            &layout,
            &record(5, &["s3", "tobedeleted", "2026-11-01T00:00:00.000Z", "X", "school", "", ""]),
            FileMode::Delta,
            &mut Notes::default(),
        );
        assert!(deleted.errors.is_empty() && deleted.deleted);
        assert_eq!(codes(&["s3", "", ""], FileMode::Bulk), ["field_count"]);
        // Lists: every id of a list is checked and referred to.
        let classes = file_spec(Version::V1_2, "classes").unwrap();
        let names: Vec<&str> = classes.columns.iter().map(|c| c.name.as_str()).collect();
        let layout =
            check_header(classes, &record(1, &names), Strictness::Strict, &mut Notes::default()).unwrap();
        let row =
            ["c1", "", "", "Algebra", "09,10", "alg", "", "scheduled", "", "s1", "fall,spring", "", "", ""];
        let checked = check_row(classes, &layout, &record(2, &row), FileMode::Bulk, &mut Notes::default());
        assert!(checked.errors.is_empty(), "{:?}", checked.errors);
        let terms: Vec<&str> =
            checked.references.iter().filter(|r| r.1 == "academicSessions").map(|r| r.2.as_str()).collect();
        assert_eq!(terms, ["fall", "spring"]);
        // 1.1 states no id character set; 1.2 does.
        let v11 = file_spec(Version::V1_1, "orgs").unwrap();
        let layout = check_header(v11, &record(1, &ORGS), Strictness::Strict, &mut Notes::default()).unwrap();
        assert!(
            check_row(
                v11,
                &layout,
                &record(2, &["s 1", "", "", "X", "school", "", ""]),
                FileMode::Bulk,
                &mut Notes::default()
            )
            .errors
            .is_empty()
        );
    }

    /// A lenient row that cannot be read (a field too many) still names its record, keyed as
    /// a readable row is (white space trimmed), so a bulk file does not mark it deleted.
    #[test]
    fn a_lenient_row_with_a_field_too_many_is_keyed_by_its_trimmed_id() {
        let orgs = file_spec(Version::V1_2, "orgs").unwrap();
        let layout =
            check_header(orgs, &record(1, &ORGS), Strictness::Lenient, &mut Notes::default()).unwrap();
        let fields = [" s1 ", "", "", "Lincoln, Jr. High", "school", "", "", "extra"];
        let row = check_row(orgs, &layout, &record(2, &fields), FileMode::Bulk, &mut Notes::default());
        assert_eq!(row.errors.iter().map(|e| e.code).collect::<Vec<_>>(), ["field_count"]);
        assert_eq!(row.key.as_deref(), Some("s1"));
        assert_eq!(row.errors[0].key, "s1");
    }

    /// What SIS exports write (`TRUE`, `Scheduled`, a space between date and time, white
    /// space, trailing empty columns): lenient reading stores the specification's spelling
    /// and notes each, grouped; strict reading refuses each as before.
    #[test]
    fn lenient_reading_normalises_what_is_unambiguous_and_notes_it() {
        let users = file_spec(Version::V1_1, "users").unwrap();
        let mut names: Vec<&str> = users.columns.iter().map(|c| c.name.as_str()).collect();
        names.push("");
        let row = |id: &str, enabled: &str, modified: &str, given: &str| {
            let f: Vec<String> = names
                .iter()
                .map(|n| match *n {
                    "sourcedId" => id.to_owned(),
                    "status" => "Active".to_owned(),
                    "dateLastModified" => modified.to_owned(),
                    "enabledUser" => enabled.to_owned(),
                    "orgSourcedIds" => "s1".to_owned(),
                    "role" => "Student".to_owned(),
                    "username" => id.to_owned(),
                    "givenName" => given.to_owned(),
                    "familyName" => "Lee".to_owned(),
                    _ => String::new(),
                })
                .collect();
            f
        };
        let mut notes = Notes::default();
        let header = check_header(users, &record(1, &names), Strictness::Lenient, &mut notes).unwrap();
        let mut checked = Vec::new();
        for (i, id) in ["u1", "u2", "u3"].iter().enumerate() {
            let f = row(id, "TRUE", "2017-05-06 08:01:05", " Ann ");
            let f: Vec<&str> = f.iter().map(String::as_str).collect();
            checked.push(check_row(users, &header, &record(2 + i as u64, &f), FileMode::Delta, &mut notes));
        }
        for c in &checked {
            assert!(c.errors.is_empty(), "{:?}", c.errors);
            for field in [
                r#""status":"active""#,
                r#""enabledUser":"true""#,
                r#""role":"student""#,
                r#""dateLastModified":"2017-05-06T08:01:05""#,
                r#""givenName":"Ann""#,
            ] {
                assert!(c.data.contains(field), "{field} not in {}", c.data);
            }
        }
        let warnings = notes.warnings();
        for w in [
            "users.csv: 1 empty column(s) at the end of the header ignored",
            "users.csv:enabledUser: `TRUE` read as `true`, 3 rows",
            "users.csv:status: `Active` read as `active`, 3 rows",
            "users.csv:role: `Student` read as `student`, 3 rows",
            "users.csv:dateLastModified: `2017-05-06 08:01:05` read as `2017-05-06T08:01:05`, 3 rows",
            "users.csv:givenName: ` Ann ` read as `Ann`, 3 rows",
            "users.csv: empty fields past the header's last column ignored, 3 rows",
        ] {
            assert!(warnings.iter().any(|x| x == w), "{w:?} not in {warnings:#?}");
        }
        // A row longer than the header (a stray comma in a name) is not guessed at.
        let mut long = row("u9", "true", "", "Ann");
        long.push(String::new());
        let long: Vec<&str> = long.iter().map(String::as_str).collect();
        let codes: Vec<&str> = check_row(users, &header, &record(9, &long), FileMode::Delta, &mut notes)
            .errors
            .iter()
            .map(|e| e.code)
            .collect();
        assert_eq!(codes, ["field_count"]);
        // Strict: the trailing empty column is not part of the table, and each value is refused.
        let mut strict_notes = Notes::default();
        assert!(check_header(users, &record(1, &names), Strictness::Strict, &mut strict_notes).is_err());
        let header =
            check_header(users, &record(1, &names[..names.len() - 1]), Strictness::Strict, &mut strict_notes)
                .unwrap();
        let mut f = row("u1", "TRUE", "2017-05-06 08:01:05", "Ann");
        f.truncate(names.len() - 1);
        let f: Vec<&str> = f.iter().map(String::as_str).collect();
        let codes: Vec<&str> = check_row(users, &header, &record(2, &f), FileMode::Delta, &mut strict_notes)
            .errors
            .iter()
            .map(|e| e.code)
            .collect();
        assert_eq!(codes, ["bad_status", "bad_datetime", "not_boolean", "not_in_list"]);
        assert!(strict_notes.is_empty());
        // Lenient is not a guess: a value that is not a spelling of one allowed is refused.
        let mut f = row("u1", "yes", "2017-05-06", "Ann");
        f.truncate(names.len() - 1);
        let lenient = check_header(users, &record(1, &names), Strictness::Lenient, &mut notes).unwrap();
        let f: Vec<&str> = f.iter().map(String::as_str).collect();
        let codes: Vec<&str> = check_row(users, &lenient, &record(2, &f), FileMode::Delta, &mut notes)
            .errors
            .iter()
            .map(|e| e.code)
            .collect();
        assert_eq!(codes, ["bad_datetime", "not_boolean"]);
    }
}
