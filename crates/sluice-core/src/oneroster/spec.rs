//! The OneRoster CSV tables, parsed once from `spec.toml` (compiled in).

use serde::Deserialize;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    V1_1,
    V1_2,
}

impl Version {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "1.1" => Some(Version::V1_1),
            "1.2" => Some(Version::V1_2),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1_1 => "1.1",
            Version::V1_2 => "1.2",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Id,
    IdList,
    Enum,
    EnumList,
    Date,
    DateTime,
    Year,
    Integer,
    Float,
    Boolean,
    Email,
    Text,
    Status,
    List,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Column {
    pub name: String,
    pub required: bool,
    /// status and dateLastModified: required in delta files, blank in bulk ones.
    #[serde(default)]
    pub required_for_delta: bool,
    #[serde(deserialize_with = "kind")]
    pub kind: Kind,
    #[serde(default)]
    pub values: Vec<String>,
    /// Whether `ext:`-prefixed values extend the vocabulary.
    #[serde(default)]
    pub ext_allowed: bool,
    /// The file whose records this column names.
    #[serde(rename = "ref")]
    pub refers_to: Option<String>,
    /// A column the 1.2.1 errata removed: files may have it or not.
    pub removed_in: Option<String>,
    /// A secret (a user's password): read and checked like any column, never stored, so no
    /// view, export or log can show it.
    #[serde(default)]
    pub secret: bool,
}

#[derive(Debug, Clone)]
pub struct FileSpec {
    pub version: Version,
    pub name: String,
    pub columns: Vec<Column>,
}

impl FileSpec {
    pub fn file_name(&self) -> String {
        format!("{}.csv", self.name)
    }

    /// Files this one refers to, other than itself.
    pub fn depends_on(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().filter_map(|c| c.refers_to.as_deref()).filter(move |r| *r != self.name)
    }

    pub fn refers_to_itself(&self) -> bool {
        self.columns.iter().any(|c| c.refers_to.as_deref() == Some(&self.name))
    }
}

fn kind<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Kind, D::Error> {
    let s = String::deserialize(d)?;
    Ok(match s.as_str() {
        "id" => Kind::Id,
        "idlist" => Kind::IdList,
        "enum" => Kind::Enum,
        "enumlist" => Kind::EnumList,
        "date" => Kind::Date,
        "datetime" => Kind::DateTime,
        "year" => Kind::Year,
        "integer" => Kind::Integer,
        "float" | "decimal" => Kind::Float,
        "boolean" => Kind::Boolean,
        "email" => Kind::Email,
        "text" => Kind::Text,
        "status" => Kind::Status,
        "list" => Kind::List,
        other => return Err(serde::de::Error::custom(format!("unknown kind {other:?}"))),
    })
}

#[derive(Deserialize)]
struct SpecFile {
    file: Vec<RawFile>,
}

#[derive(Deserialize)]
struct RawFile {
    version: String,
    name: String,
    columns: Vec<Column>,
}

/// Every file of every version, in an order where a file comes after the files it refers to.
fn all() -> &'static [FileSpec] {
    static SPEC: OnceLock<Vec<FileSpec>> = OnceLock::new();
    SPEC.get_or_init(|| {
        // The spec is compiled in and covered by tests: a parse failure is a build defect.
        let raw: SpecFile = toml::from_str(include_str!("spec.toml")).expect("oneroster/spec.toml is valid");
        let mut files: Vec<FileSpec> = raw
            .file
            .into_iter()
            .map(|f| FileSpec {
                version: Version::parse(&f.version).expect("spec.toml versions are 1.1 or 1.2"),
                name: f.name,
                columns: f.columns,
            })
            .collect();
        files.sort_by(|a, b| a.version.cmp(&b.version).then(a.name.cmp(&b.name)));
        let mut ordered: Vec<FileSpec> = Vec::with_capacity(files.len());
        while !files.is_empty() {
            let ready = files
                .iter()
                .position(|f| {
                    f.depends_on().all(|d| ordered.iter().any(|o| o.version == f.version && o.name == d))
                })
                // A cycle between files (none in the spec) is broken by taking the first.
                .unwrap_or(0);
            ordered.push(files.remove(ready));
        }
        ordered
    })
}

/// The files of one version, referred-to files first.
pub fn files(version: Version) -> impl Iterator<Item = &'static FileSpec> {
    all().iter().filter(move |f| f.version == version)
}

pub fn file_spec(version: Version, name: &str) -> Option<&'static FileSpec> {
    files(version).find(|f| f.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_has_every_file_of_both_versions_in_dependency_order() {
        assert_eq!(files(Version::V1_1).count(), 13);
        assert_eq!(files(Version::V1_2).count(), 21);
        for v in [Version::V1_1, Version::V1_2] {
            let names: Vec<&str> = files(v).map(|f| f.name.as_str()).collect();
            for f in files(v) {
                let me = names.iter().position(|n| *n == f.name).unwrap();
                for d in f.depends_on() {
                    let dep = names.iter().position(|n| *n == d).unwrap_or_else(|| panic!("{d} missing"));
                    assert!(dep < me, "{} {} before {d}", v.as_str(), f.name);
                }
                assert_eq!(f.columns[0].name, "sourcedId");
            }
        }
        let users = file_spec(Version::V1_1, "users").unwrap();
        assert!(users.columns.iter().any(|c| c.name == "role"));
        let roles = file_spec(Version::V1_2, "roles").unwrap();
        assert_eq!(roles.depends_on().collect::<Vec<_>>(), ["users", "orgs", "userProfiles"]);
    }
}
