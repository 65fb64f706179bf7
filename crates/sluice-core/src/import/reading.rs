//! How a tenant's files are read: the strictness and the delimiter, set by a type (TOML
//! `strictness`, `delimiter`) and overridden by a tenant (`sluice tenant set T
//! strictness=strict`, `strictness.TYPE=lenient`, `delimiter.TYPE=tab`).

use super::csv::Delimiter;
use super::types::{ImportType, Strictness};

/// One tenant setting about reading files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadSetting {
    /// `strictness=...` (every type) or `strictness.TYPE=...`.
    Strictness { type_name: Option<String>, strictness: Strictness },
    /// `delimiter.TYPE=...`; `detect` clears a type's own delimiter.
    Delimiter { type_name: String, delimiter: Option<Delimiter> },
}

impl ReadSetting {
    /// Parses `key=value` as `sluice tenant set` takes it; `Ok(None)`: not a read setting.
    pub fn parse(key: &str, value: &str) -> Result<Option<Self>, String> {
        let strictness = || {
            Strictness::parse(value)
                .ok_or_else(|| format!("{key}={value:?}: the strictness is `lenient` or `strict`"))
        };
        if key == "strictness" {
            return Ok(Some(ReadSetting::Strictness { type_name: None, strictness: strictness()? }));
        }
        if let Some(t) = key.strip_prefix("strictness.").filter(|t| !t.is_empty()) {
            return Ok(Some(ReadSetting::Strictness {
                type_name: Some(t.to_owned()),
                strictness: strictness()?,
            }));
        }
        if let Some(t) = key.strip_prefix("delimiter.").filter(|t| !t.is_empty()) {
            let delimiter = match value {
                "detect" => None,
                _ => Some(Delimiter::parse(value).ok_or_else(|| {
                    format!("{key}={value:?}: the delimiter is comma, tab, semicolon, pipe or detect")
                })?),
            };
            return Ok(Some(ReadSetting::Delimiter { type_name: t.to_owned(), delimiter }));
        }
        if key == "delimiter" {
            return Err("delimiter: name the type, e.g. delimiter.students=tab".into());
        }
        Ok(None)
    }

    /// The setting as `key=value`, as it was given.
    pub fn to_pair(&self) -> (String, String) {
        match self {
            ReadSetting::Strictness { type_name: None, strictness } => {
                ("strictness".into(), strictness.as_str().into())
            }
            ReadSetting::Strictness { type_name: Some(t), strictness } => {
                (format!("strictness.{t}"), strictness.as_str().into())
            }
            ReadSetting::Delimiter { type_name, delimiter } => {
                (format!("delimiter.{type_name}"), delimiter.map_or("detect", |d| d.name()).into())
            }
        }
    }

    /// The key a later setting of the same thing replaces.
    pub fn key(&self) -> String {
        self.to_pair().0
    }

    /// The type this setting names, if it names one.
    pub fn type_name(&self) -> Option<&str> {
        match self {
            ReadSetting::Strictness { type_name, .. } => type_name.as_deref(),
            ReadSetting::Delimiter { type_name, .. } => Some(type_name),
        }
    }
}

/// How files of `t` are read for a tenant with these settings: the tenant's setting for the
/// type, else the tenant's for every type, else the type's own, else lenient; the tenant's
/// delimiter for the type, else the type's own, else detected (`None`).
pub fn reading(t: &ImportType, settings: &[ReadSetting]) -> (Strictness, Option<Delimiter>) {
    let mut for_type = None;
    let mut for_all = None;
    let mut delimiter = t.delimiter;
    for s in settings {
        match s {
            ReadSetting::Strictness { type_name: Some(n), strictness } if *n == t.name => {
                for_type = Some(*strictness)
            }
            ReadSetting::Strictness { type_name: None, strictness } => for_all = Some(*strictness),
            ReadSetting::Delimiter { type_name, delimiter: d } if *type_name == t.name => delimiter = *d,
            _ => {}
        }
    }
    (for_type.or(for_all).or(t.strictness).unwrap_or_default(), delimiter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::ImportTypes;

    #[test]
    fn a_tenant_setting_overrides_the_type_which_overrides_the_default() {
        let types = ImportTypes::parse(&[(
            "t.toml".into(),
            r#"
[[type]]
name = "students"
key = ["id"]
mode = "upsert"
delimiter = "tab"
strictness = "strict"
[[type.column]]
name = "id"
required = true
kind = "id"
[[type]]
name = "staff"
key = ["id"]
mode = "upsert"
[[type.column]]
name = "id"
required = true
kind = "id"
"#
            .into(),
        )])
        .unwrap();
        let (students, staff) = (types.get("students").unwrap(), types.get("staff").unwrap());
        assert_eq!(reading(students, &[]), (Strictness::Strict, Some(Delimiter::Tab)));
        assert_eq!(reading(staff, &[]), (Strictness::Lenient, None));
        let parse = |k: &str, v: &str| ReadSetting::parse(k, v).unwrap().unwrap();
        let all_strict = parse("strictness", "strict");
        let students_lenient = parse("strictness.students", "lenient");
        let staff_pipe = parse("delimiter.staff", "|");
        let settings = [all_strict, students_lenient, staff_pipe, parse("delimiter.students", "detect")];
        assert_eq!(reading(students, &settings), (Strictness::Lenient, None));
        assert_eq!(reading(staff, &settings), (Strictness::Strict, Some(Delimiter::Pipe)));
        assert_eq!(settings[2].to_pair(), ("delimiter.staff".to_owned(), "pipe".to_owned()));
        assert!(ReadSetting::parse("strictness", "loose").unwrap_err().contains("lenient"));
        assert!(ReadSetting::parse("delimiter.staff", "colon").unwrap_err().contains("semicolon"));
        assert_eq!(ReadSetting::parse("timezone", "UTC"), Ok(None));
        let bad = ImportTypes::parse(&[(
            "t.toml".into(),
            "[[type]]\nname = \"x\"\nstrictness = \"loose\"\n".into(),
        )]);
        assert!(bad.unwrap_err().to_string().contains("lenient"));
    }
}
