//! Import types, declared as data (TOML) and parsed into closed, checked structures.
//!
//! ```toml
//! [[type]]
//! name = "students"            # unique; also the default folder
//! folder = "students"          # where uploads of this type go (optional)
//! file_name = "students.csv"   # required file name (optional)
//! exact_headers = false        # true: header names case-sensitive, aliases off
//! key = ["sisId"]              # column(s) identifying a record
//! mode = "mirror"              # upsert | mirror | delta
//! delimiter = "tab"            # comma | tab | semicolon | pipe (default: detected)
//! strictness = "lenient"       # lenient | strict (default lenient; a tenant may override)
//! references = [{ column = "studentSisId", to = "students.sisId", on_delete = "hold" }]
//!                              # on_delete: keep | deactivate | hold (default), what happens to
//!                              # these records when an import deletes the record they name
//! [type.safeguard]            # hold for approval past these shares of existing records
//! deleted_percent = 10         # default 10
//! changed_percent = 75         # default 100 (never)
//! [[type.column]]
//! name = "sisId"
//! aliases = ["Student ID"]
//! required = true
//! kind = "id"                  # text integer decimal boolean date datetime email phone enum id
//! ```

use super::csv::Delimiter;
use super::safeguard::Safeguard;
use super::values::DateFormat;
use crate::FolderName;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadMode {
    /// Rows absent from the file stay.
    Upsert,
    /// Rows absent from the file are deleted, behind the deletion safeguard.
    Mirror,
    /// A status column says, per row, whether the record is active or deleted.
    Delta,
}

impl LoadMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LoadMode::Upsert => "upsert",
            LoadMode::Mirror => "mirror",
            LoadMode::Delta => "delta",
        }
    }
}

/// How forgiving reading is. Lenient (the default) accepts and normalises what is
/// unambiguous (an Excel `sep=` line, trailing empty columns and rows; in OneRoster packages
/// also the case of booleans and vocabulary values, white space around values, a date and
/// time joined by a space, a blank manifest line for a file the package does not carry) and
/// warns about each; strict refuses each of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strictness {
    #[default]
    Lenient,
    Strict,
}

impl Strictness {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "lenient" => Some(Strictness::Lenient),
            "strict" => Some(Strictness::Strict),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Strictness::Lenient => "lenient",
            Strictness::Strict => "strict",
        }
    }

    pub fn is_strict(self) -> bool {
        self == Strictness::Strict
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ColumnKind {
    Text { max_length: usize },
    Integer,
    Decimal,
    Boolean,
    Date { formats: Vec<DateFormat> },
    DateTime,
    Email,
    Phone,
    Enum { values: Vec<String> },
    Id,
}

impl ColumnKind {
    pub fn name(&self) -> &'static str {
        match self {
            ColumnKind::Text { .. } => "text",
            ColumnKind::Integer => "integer",
            ColumnKind::Decimal => "decimal",
            ColumnKind::Boolean => "boolean",
            ColumnKind::Date { .. } => "date",
            ColumnKind::DateTime => "datetime",
            ColumnKind::Email => "email",
            ColumnKind::Phone => "phone",
            ColumnKind::Enum { .. } => "enum",
            ColumnKind::Id => "id",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub aliases: Vec<String>,
    pub required: bool,
    pub kind: ColumnKind,
}

/// `column` of this type must name an existing record of type `to_type` (by its key).
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    pub column: usize,
    pub to_type: String,
    /// What happens to a record of this type when an import deletes the record it names.
    pub on_delete: OnDelete,
}

/// What happens to records that refer to records an import deletes (guardians of a student a
/// mirror file no longer lists, enrollments of a class a package marks `tobedeleted`). Either
/// way the import counts them and says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDelete {
    /// They stay as they are, naming a record that is gone.
    Keep,
    /// They are deactivated in the same transaction: a CSV type's record keeps its data and is
    /// flagged deactivated (no longer a person's role; listed as such; a later import that
    /// lists it again makes it active), a OneRoster record becomes `tobedeleted`.
    Deactivate,
    /// The import is held for approval, saying how many records refer to what it deletes;
    /// approving applies it and keeps them as they are.
    #[default]
    Hold,
}

impl OnDelete {
    pub fn as_str(self) -> &'static str {
        match self {
            OnDelete::Keep => "keep",
            OnDelete::Deactivate => "deactivate",
            OnDelete::Hold => "hold",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_rows: u64,
    pub max_file_bytes: u64,
    pub max_row_bytes: usize,
    pub max_columns: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_rows: 10_000_000, max_file_bytes: 4 << 30, max_row_bytes: 64 << 10, max_columns: 1000 }
    }
}

/// The other end of a relationship a record names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Related {
    Student,
    Class,
}

impl Related {
    pub fn what(self) -> &'static str {
        match self {
            Related::Student => "student",
            Related::Class => "class",
        }
    }

    /// Whether a referred-to type is this kind of thing (students, clever-students; classes,
    /// clever-sections).
    fn matches(self, to_type: &str) -> bool {
        let plural: &[&str] = match self {
            Related::Student => &["students"],
            Related::Class => &["classes", "sections"],
        };
        plural.iter().any(|p| to_type == *p || to_type.ends_with(&format!("-{p}")))
    }
}

/// What a type's uploads are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeFormat {
    /// One CSV file, read with the type's columns.
    Csv,
    /// A OneRoster zip package: its manifest says which files it holds, each loaded as the
    /// record type `oneroster.FILE` (see [`crate::oneroster`]).
    OneRoster,
    /// A zip of images, each matched to a record of the type [`PhotoRules::target`] names
    /// (see [`crate::photo`]).
    Photos,
}

/// How a type takes photos: a `photos` type's zips (folder `/photos`), or a CSV type that
/// also accepts zips of photos of its own records in its folder (Campus Labs' accounts).
#[derive(Debug, Clone, PartialEq)]
pub struct PhotoRules {
    /// The type whose records the images belong to.
    pub target: String,
    pub matching: crate::photo::KeyMatching,
    /// The largest image accepted, in bytes (default 10 MiB).
    pub max_image_bytes: u64,
    /// The most pixels an image may declare (default 40 million).
    pub max_pixels: u64,
    /// The largest zip accepted, in bytes (default 200 MiB).
    pub max_zip_bytes: u64,
    /// The most entries a zip may hold (default 100,000).
    pub max_entries: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImportType {
    pub name: String,
    pub format: TypeFormat,
    /// Header names must match the columns' names exactly (case included; no aliases).
    pub exact_headers: bool,
    pub description: String,
    pub folder: Option<FolderName>,
    pub file_name: Option<String>,
    pub columns: Vec<Column>,
    /// Indexes into `columns`.
    pub key: Vec<usize>,
    pub mode: LoadMode,
    /// How much of the existing records one import may delete or change before it is held.
    pub safeguard: Safeguard,
    /// Delta mode: the status column and the values that mean "deleted".
    pub status: Option<(usize, Vec<String>)>,
    pub references: Vec<Reference>,
    pub limits: Limits,
    /// Each record is a role of a person (see [`PersonColumns`]).
    pub person: Option<PersonColumns>,
    /// The type's delimiter (`None`: detected from the header line).
    pub delimiter: Option<Delimiter>,
    /// The type's strictness (`None`: lenient unless the tenant says otherwise).
    pub strictness: Option<Strictness>,
    /// A package type: `on_delete` per reference of its files, `("enrollments.classSourcedId",
    /// policy)`; a reference not listed is `hold`. (A CSV type declares it on each reference.)
    pub package_on_delete: Vec<(String, OnDelete)>,
    /// Photos: a `photos` type's rules, or a CSV type's that takes zips of photos too.
    pub photos: Option<PhotoRules>,
}

/// The columns that say who a record's person is. A person is matched first by the source id
/// (within the role), else by exact name, email and phone, so one person can hold several
/// roles (staff and guardian, guardian of several students), as ClassTag's sync does.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonColumns {
    /// e.g. `guardian`, `staff`, `student`.
    pub role: String,
    /// The person's id in the source system; may be empty in a row.
    pub id: Option<usize>,
    pub first_name: usize,
    pub last_name: usize,
    pub email: Option<usize>,
    pub phone: Option<usize>,
}

impl ImportType {
    /// A record's key as people read and type it: a key of several columns joined by `+`
    /// (stored joined by U+001F).
    pub fn shown_key(&self, stored: &str) -> String {
        stored.replace('\u{1f}', "+")
    }

    /// The stored key of a key as shown (see [`ImportType::shown_key`]): for a key of several
    /// columns `+` separates them; a key of one column is as given.
    pub fn stored_key(&self, shown: &str) -> String {
        if self.key.len() > 1 { shown.replace('+', "\u{1f}") } else { shown.to_owned() }
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// A package type's policy for the reference `FILE.COLUMN` (`enrollments.classSourcedId`).
    pub fn package_policy(&self, reference: &str) -> OnDelete {
        self.package_on_delete.iter().find(|(r, _)| r == reference).map_or(OnDelete::Hold, |(_, p)| *p)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TypeError {
    #[error("{file}: not valid TOML: {message}")]
    Toml { file: String, message: String },
    #[error("{file}: type {name:?}: {problem}")]
    Invalid { file: String, name: String, problem: String },
    #[error("type {0:?} is defined twice")]
    Duplicate(String),
    #[error(
        "type {name:?} refers to {target:?}, which is not a type keyed by that column (write TYPE.COLUMN, naming the target's first key column)"
    )]
    BadReference { name: String, target: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDef {
    #[serde(rename = "type", default)]
    types: Vec<TypeDef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TypeDef {
    name: String,
    format: Option<String>,
    #[serde(default)]
    exact_headers: bool,
    #[serde(default)]
    description: String,
    folder: Option<String>,
    file_name: Option<String>,
    #[serde(default)]
    key: Vec<String>,
    mode: Option<LoadMode>,
    #[serde(default)]
    safeguard: SafeguardDef,
    status_column: Option<String>,
    #[serde(default)]
    deleted_values: Vec<String>,
    #[serde(rename = "column", default)]
    columns: Vec<ColumnDef>,
    #[serde(default)]
    references: Vec<ReferenceDef>,
    #[serde(default)]
    limits: LimitsDef,
    person: Option<PersonDef>,
    delimiter: Option<String>,
    strictness: Option<String>,
    /// A package type only: `{ "enrollments.classSourcedId" = "deactivate", ... }`.
    #[serde(default)]
    on_delete: std::collections::BTreeMap<String, OnDelete>,
    photos: Option<PhotosDef>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PhotosDef {
    /// The type whose records the photos are of (a `photos` type must name it; a CSV type's
    /// photos are of its own records).
    target: Option<String>,
    ignore_case: Option<bool>,
    ignore_leading_zeros: Option<bool>,
    max_image_bytes: Option<u64>,
    max_megapixels: Option<u64>,
    max_zip_bytes: Option<u64>,
    max_entries: Option<usize>,
}

fn photo_rules(def: &PhotosDef, target: &str) -> Result<PhotoRules, String> {
    let d = crate::photo::KeyMatching::default();
    let rules = PhotoRules {
        target: target.to_owned(),
        matching: crate::photo::KeyMatching {
            ignore_case: def.ignore_case.unwrap_or(d.ignore_case),
            ignore_leading_zeros: def.ignore_leading_zeros.unwrap_or(d.ignore_leading_zeros),
        },
        max_image_bytes: def.max_image_bytes.unwrap_or(10 << 20),
        max_pixels: def.max_megapixels.unwrap_or(40).saturating_mul(1_000_000),
        max_zip_bytes: def.max_zip_bytes.unwrap_or(200 << 20),
        max_entries: def.max_entries.unwrap_or(100_000),
    };
    if rules.max_image_bytes == 0
        || rules.max_pixels == 0
        || rules.max_zip_bytes == 0
        || rules.max_entries == 0
    {
        return Err("photos: limits must be above zero".into());
    }
    Ok(rules)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PersonDef {
    role: String,
    id: Option<String>,
    first_name: String,
    last_name: String,
    email: Option<String>,
    phone: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnDef {
    name: String,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    required: bool,
    kind: String,
    #[serde(default)]
    formats: Vec<String>,
    #[serde(default)]
    values: Vec<String>,
    max_length: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReferenceDef {
    column: String,
    to: String,
    #[serde(default)]
    on_delete: OnDelete,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SafeguardDef {
    deleted_percent: Option<f64>,
    changed_percent: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LimitsDef {
    max_rows: Option<u64>,
    max_file_bytes: Option<u64>,
    max_row_bytes: Option<usize>,
    max_columns: Option<usize>,
}

/// All known import types.
#[derive(Debug, Clone, Default)]
pub struct ImportTypes {
    types: Vec<ImportType>,
}

impl ImportTypes {
    /// Parses several TOML documents (`(file name, text)`), each holding `[[type]]` tables.
    pub fn parse(files: &[(String, String)]) -> Result<Self, TypeError> {
        let mut types: Vec<ImportType> = Vec::new();
        let mut targets = Vec::new();
        for (file, text) in files {
            let def: FileDef = toml::from_str(text)
                .map_err(|e| TypeError::Toml { file: file.clone(), message: e.to_string() })?;
            for t in def.types {
                let invalid = |problem: String| TypeError::Invalid {
                    file: file.clone(),
                    name: t.name.clone(),
                    problem,
                };
                let (parsed, refs) = parse_type(&t).map_err(invalid)?;
                if types.iter().any(|x| x.name == parsed.name) {
                    return Err(TypeError::Duplicate(parsed.name));
                }
                targets.extend(refs.into_iter().map(|r| (parsed.name.clone(), r)));
                types.push(parsed);
            }
        }
        for (name, target) in targets {
            let (to_type, to_column) = target.split_once('.').unwrap_or((&target, ""));
            // The referred column is the target's key, or the first column of it (a teacher
            // keyed by id and school is named by the id alone).
            let ok = types.iter().any(|t| {
                t.name == to_type
                    && !t.key.is_empty()
                    && ((to_column.is_empty() && t.key.len() == 1) || t.columns[t.key[0]].name == to_column)
            });
            if !ok {
                return Err(TypeError::BadReference { name, target });
            }
        }
        for t in types.iter().filter(|t| t.format == TypeFormat::Photos) {
            let target = t.photos.as_ref().map(|p| p.target.as_str()).unwrap_or_default();
            if !types.iter().any(|o| o.name == target && o.format == TypeFormat::Csv) {
                return Err(TypeError::Invalid {
                    file: "import types".into(),
                    name: t.name.clone(),
                    problem: format!(
                        "photos.target {target:?} is not a CSV type; name the type whose records the photos are of"
                    ),
                });
            }
        }
        Ok(Self { types })
    }

    pub fn all(&self) -> &[ImportType] {
        &self.types
    }

    /// Whether `type_name` names records or their safeguard: a type, or a file of a package
    /// type (`oneroster.users`).
    pub fn has_records_of(&self, type_name: &str) -> bool {
        self.get(type_name).is_some()
            || type_name.strip_prefix("oneroster.").is_some_and(|file| {
                self.types.iter().any(|t| t.format == TypeFormat::OneRoster)
                    && crate::oneroster::is_file_name(file)
            })
    }

    /// The JSON path, in a record of `type_name`, of the column that names a student or a
    /// class (a student's guardians, a class's enrollments): `$[1]` for a CSV type's second
    /// column, `$.classSourcedId` for a OneRoster file.
    pub fn related_path(&self, type_name: &str, related: Related) -> Option<String> {
        match self.get(type_name) {
            Some(t) => {
                t.references.iter().find(|r| related.matches(&r.to_type)).map(|r| format!("$[{}]", r.column))
            }
            None => {
                use crate::oneroster::{Kind, Version, file_spec};
                let file = type_name.strip_prefix("oneroster.")?;
                let target = if related == Related::Student { "users" } else { "classes" };
                [Version::V1_2, Version::V1_1]
                    .into_iter()
                    .filter_map(|v| file_spec(v, file))
                    .flat_map(|f| f.columns.iter())
                    .find(|c| {
                        c.refers_to.as_deref() == Some(target) && c.kind == Kind::Id && c.name != "sourcedId"
                    })
                    .map(|c| format!("$.{}", c.name))
            }
        }
    }

    /// The references of every type to `type_name` (a student's guardians, bus schedules,
    /// court orders): what an import deleting students leaves dangling.
    pub fn referrers_of(&self, type_name: &str) -> Vec<(&ImportType, &Reference)> {
        self.types
            .iter()
            .flat_map(|t| t.references.iter().map(move |r| (t, r)))
            .filter(|(_, r)| r.to_type == type_name)
            .collect()
    }

    /// How many references deep a type is (0: refers to nothing): importing types in this
    /// order lets every reference resolve within one batch of files.
    pub fn depth(&self, name: &str) -> usize {
        fn walk(types: &ImportTypes, name: &str, budget: usize) -> usize {
            let Some(t) = types.get(name) else { return 0 };
            if budget == 0 {
                return 0;
            }
            t.references
                .iter()
                .filter(|r| r.to_type != name)
                .map(|r| 1 + walk(types, &r.to_type, budget - 1))
                .max()
                .unwrap_or(0)
        }
        walk(self, name, self.types.len())
    }

    pub fn get(&self, name: &str) -> Option<&ImportType> {
        self.types.iter().find(|t| t.name == name)
    }

    /// The type for a file uploaded into `folder` under `file_name`. A type with a required
    /// file name matches that name; otherwise the folder decides: its type without a required
    /// name, or the folder's only type (`/students` takes `export-2026.csv` although the
    /// students type's name at the root is `students.csv`). Several named types in one folder
    /// (Clever's) take only their names.
    pub fn for_upload(&self, allowed: &[String], folder: &str, file_name: &str) -> Option<&ImportType> {
        let candidates = || self.types.iter().filter(|t| allowed.contains(&t.name));
        let in_folder = || candidates().filter(|t| t.folder.as_ref().is_some_and(|f| f.as_str() == folder));
        candidates()
            .find(|t| {
                t.file_name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(file_name))
                    && t.folder.as_ref().is_none_or(|f| f.as_str() == folder)
            })
            .or_else(|| in_folder().find(|t| t.file_name.is_none()))
            .or_else(|| {
                let mut all = in_folder();
                match (all.next(), all.next()) {
                    (Some(only), None) => Some(only),
                    _ => None,
                }
            })
    }

    /// The types whose records may have photos: the targets of photos types, and the CSV
    /// types that take zips of photos of their own records.
    pub fn photo_targets(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for t in &self.types {
            if let Some(rules) = &t.photos
                && !out.contains(&rules.target)
            {
                out.push(rules.target.clone());
            }
        }
        out
    }

    /// The type for a file uploaded at the root (routing `root` or `both`): the allowed type
    /// whose required file name it is, whatever the case.
    pub fn for_root_upload(&self, allowed: &[String], file_name: &str) -> Option<&ImportType> {
        self.types
            .iter()
            .filter(|t| allowed.contains(&t.name))
            .find(|t| t.file_name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(file_name)))
    }

    /// The required file names of the allowed types: what a tenant may upload at its root.
    pub fn root_files(&self, allowed: &[String]) -> Vec<String> {
        self.types.iter().filter(|t| allowed.contains(&t.name)).filter_map(|t| t.file_name.clone()).collect()
    }
}

fn parse_type(t: &TypeDef) -> Result<(ImportType, Vec<String>), String> {
    if FolderName::parse(&t.name).is_err() {
        return Err("the name must be lowercase letters, digits, '-' or '_'".into());
    }
    let folder = match &t.folder {
        Some(f) => Some(FolderName::parse(f).map_err(|e| e.to_string())?),
        None => None,
    };
    let strictness = match t.strictness.as_deref() {
        None => None,
        Some(s) => Some(
            Strictness::parse(s)
                .ok_or_else(|| format!("strictness = {s:?}: expected \"lenient\" or \"strict\""))?,
        ),
    };
    let delimiter = match t.delimiter.as_deref() {
        None => None,
        Some(d) => Some(Delimiter::parse(d).ok_or_else(|| {
            format!("delimiter = {d:?}: expected \"comma\", \"tab\", \"semicolon\" or \"pipe\"")
        })?),
    };
    match t.format.as_deref() {
        None | Some("csv") => {}
        Some("oneroster") => {
            if delimiter.is_some() {
                return Err("a oneroster package's files are comma-separated; remove delimiter".into());
            }
            return package_type(t, folder, strictness);
        }
        Some("photos") => return photos_type(t, folder),
        Some(other) => return Err(format!("unknown format {other:?}; expected csv, oneroster or photos")),
    }
    let Some(mode) = t.mode else {
        return Err("declares no mode (upsert, mirror or delta)".into());
    };
    if t.columns.is_empty() {
        return Err("declares no columns".into());
    }
    let mut columns: Vec<Column> = Vec::new();
    for c in &t.columns {
        let lower = c.name.to_lowercase();
        let clash = columns
            .iter()
            .any(|o| o.name.to_lowercase() == lower || o.aliases.iter().any(|a| a.to_lowercase() == lower))
            || c.aliases.iter().any(|a| columns.iter().any(|o| o.name.eq_ignore_ascii_case(a)));
        if clash {
            return Err(format!("column {:?} (or one of its aliases) is declared twice", c.name));
        }
        columns.push(Column {
            name: c.name.clone(),
            aliases: c.aliases.clone(),
            required: c.required,
            kind: kind(c)?,
        });
    }
    let index = |name: &str| {
        columns
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| format!("names column {name:?}, which it does not declare"))
    };
    if t.key.is_empty() {
        return Err("declares no key column".into());
    }
    let key = t.key.iter().map(|k| index(k)).collect::<Result<Vec<_>, _>>()?;
    let person = match &t.person {
        None => None,
        Some(p) => {
            let optional = |c: &Option<String>| c.as_deref().map(index).transpose();
            if FolderName::parse(&p.role).is_err() {
                return Err(format!("person.role {:?}: use lowercase letters, digits, '-' or '_'", p.role));
            }
            Some(PersonColumns {
                role: p.role.clone(),
                id: optional(&p.id)?,
                first_name: index(&p.first_name)?,
                last_name: index(&p.last_name)?,
                email: optional(&p.email)?,
                phone: optional(&p.phone)?,
            })
        }
    };
    // The first key column identifies the record and must always be there; later ones
    // (e.g. a Clever contact's name beside the student id) may be empty.
    if !columns[key[0]].required {
        return Err(format!(
            "key column {:?} must be required (the first key column always is)",
            columns[key[0]].name
        ));
    }
    let status = match (&t.status_column, mode) {
        (Some(col), LoadMode::Delta) => {
            if t.deleted_values.is_empty() {
                return Err("delta mode needs deleted_values, e.g. [\"tobedeleted\"]".into());
            }
            Some((index(col)?, t.deleted_values.iter().map(|v| v.to_lowercase()).collect()))
        }
        (None, LoadMode::Delta) => return Err("delta mode needs a status_column".into()),
        (Some(_), _) => return Err("status_column is only for mode = \"delta\"".into()),
        (None, _) => None,
    };
    let safeguard = safeguard(&t.safeguard)?;
    let mut references = Vec::new();
    let mut targets = Vec::new();
    for r in &t.references {
        let to_type = r.to.split('.').next().unwrap_or_default().to_owned();
        references.push(Reference { column: index(&r.column)?, to_type, on_delete: r.on_delete });
        targets.push(r.to.clone());
    }
    if !t.on_delete.is_empty() {
        return Err("on_delete is declared on each reference of a CSV type: references = [{ column = ..., to = ..., on_delete = \"keep\" }]".into());
    }
    let limits = limits(&t.limits);
    let photos = match &t.photos {
        None => None,
        Some(def) if def.target.as_ref().is_some_and(|target| *target != t.name) => {
            return Err(format!(
                "photos.target: a CSV type takes photos of its own records only; declare a format = \"photos\" type for photos of {:?}",
                def.target.as_deref().unwrap_or_default()
            ));
        }
        Some(def) => Some(photo_rules(def, &t.name)?),
    };
    let parsed = ImportType {
        name: t.name.clone(),
        format: TypeFormat::Csv,
        exact_headers: t.exact_headers,
        description: t.description.clone(),
        folder,
        file_name: t.file_name.clone(),
        columns,
        key,
        mode,
        safeguard,
        status,
        references,
        limits,
        person,
        delimiter,
        strictness,
        package_on_delete: Vec::new(),
        photos,
    };
    Ok((parsed, targets))
}

/// A photos type: zips of images for the records of `photos.target`.
fn photos_type(t: &TypeDef, folder: Option<FolderName>) -> Result<(ImportType, Vec<String>), String> {
    if !t.columns.is_empty()
        || !t.key.is_empty()
        || t.mode.is_some()
        || !t.references.is_empty()
        || t.person.is_some()
    {
        return Err("a photos type has no columns, key, mode, references or person: its zips hold images of another type's records; remove them".into());
    }
    if folder.is_none() {
        return Err("a photos type needs a folder to upload its zips to (e.g. folder = \"photos\")".into());
    }
    let Some(def) = &t.photos else {
        return Err("a photos type needs [type.photos] with target = \"TYPE\" (the type whose records the photos are of)".into());
    };
    let Some(target) = &def.target else {
        return Err("photos.target is missing: name the type whose records the photos are of".into());
    };
    let rules = photo_rules(def, target)?;
    let parsed = ImportType {
        name: t.name.clone(),
        format: TypeFormat::Photos,
        exact_headers: false,
        description: t.description.clone(),
        folder,
        file_name: t.file_name.clone(),
        columns: Vec::new(),
        key: Vec::new(),
        mode: LoadMode::Upsert,
        safeguard: Safeguard::default(),
        status: None,
        references: Vec::new(),
        limits: Limits { max_file_bytes: rules.max_zip_bytes, ..limits(&t.limits) },
        person: None,
        delimiter: None,
        strictness: None,
        package_on_delete: Vec::new(),
        photos: Some(rules),
    };
    // The target is checked once every type is known (ImportTypes::parse).
    Ok((parsed, Vec::new()))
}

/// A package type: its files and columns come from the package's own specification.
fn package_type(
    t: &TypeDef,
    folder: Option<FolderName>,
    strictness: Option<Strictness>,
) -> Result<(ImportType, Vec<String>), String> {
    if !t.columns.is_empty() || !t.key.is_empty() || t.mode.is_some() || !t.references.is_empty() {
        return Err("a oneroster type takes its columns, keys and modes from the OneRoster manifest; remove column, key, mode and references".into());
    }
    if folder.is_none() {
        return Err("a oneroster type needs a folder to upload its zip packages to".into());
    }
    let mut package_on_delete = Vec::new();
    for (reference, policy) in &t.on_delete {
        let known = crate::oneroster::single_references().any(|(file, column, _)| {
            reference.split_once('.').is_some_and(|(f, c)| f == file && c == column)
        });
        if !known {
            let all: Vec<String> =
                crate::oneroster::single_references().map(|(f, c, _)| format!("{f}.{c}")).collect();
            return Err(format!(
                "on_delete names {reference:?}, which is not a reference of a OneRoster file; use one of {}",
                all.join(", ")
            ));
        }
        package_on_delete.push((reference.clone(), *policy));
    }
    let parsed = ImportType {
        name: t.name.clone(),
        format: TypeFormat::OneRoster,
        exact_headers: true,
        description: t.description.clone(),
        folder,
        file_name: t.file_name.clone(),
        columns: Vec::new(),
        key: Vec::new(),
        mode: LoadMode::Mirror,
        safeguard: safeguard(&t.safeguard)?,
        status: None,
        references: Vec::new(),
        limits: limits(&t.limits),
        person: None,
        delimiter: None,
        strictness,
        package_on_delete,
        photos: None,
    };
    Ok((parsed, Vec::new()))
}

fn limits(def: &LimitsDef) -> Limits {
    let d = Limits::default();
    Limits {
        max_rows: def.max_rows.unwrap_or(d.max_rows),
        max_file_bytes: def.max_file_bytes.unwrap_or(d.max_file_bytes),
        max_row_bytes: def.max_row_bytes.unwrap_or(d.max_row_bytes),
        max_columns: def.max_columns.unwrap_or(d.max_columns),
    }
}

fn safeguard(def: &SafeguardDef) -> Result<Safeguard, String> {
    let d = Safeguard::default();
    let percent = |name: &str, v: Option<f64>, default: f64| match v {
        None => Ok(default),
        Some(p) if (0.0..=100.0).contains(&p) => Ok(p),
        Some(p) => Err(format!("safeguard.{name} = {p}: must be between 0 and 100")),
    };
    Ok(Safeguard {
        deleted_percent: percent("deleted_percent", def.deleted_percent, d.deleted_percent)?,
        changed_percent: percent("changed_percent", def.changed_percent, d.changed_percent)?,
    })
}

fn kind(c: &ColumnDef) -> Result<ColumnKind, String> {
    let k = match c.kind.as_str() {
        "text" => ColumnKind::Text { max_length: c.max_length.unwrap_or(1000) },
        "integer" => ColumnKind::Integer,
        "decimal" => ColumnKind::Decimal,
        "boolean" => ColumnKind::Boolean,
        "date" => {
            let formats =
                if c.formats.is_empty() { vec!["YYYY-MM-DD".to_owned()] } else { c.formats.clone() };
            ColumnKind::Date {
                formats: formats
                    .iter()
                    .map(|f| {
                        DateFormat::from_pattern(f)
                            .ok_or_else(|| format!("column {:?}: bad date format {f:?}", c.name))
                    })
                    .collect::<Result<_, _>>()?,
            }
        }
        "datetime" => ColumnKind::DateTime,
        "email" => ColumnKind::Email,
        "phone" => ColumnKind::Phone,
        "enum" => {
            if c.values.is_empty() {
                return Err(format!("column {:?}: an enum needs values", c.name));
            }
            ColumnKind::Enum { values: c.values.clone() }
        }
        "id" => ColumnKind::Id,
        other => return Err(format!("column {:?}: unknown kind {other:?}", c.name)),
    };
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ImportTypes, TypeError> {
        ImportTypes::parse(&[("test.toml".into(), text.into())])
    }

    const STUDENTS: &str = r#"
[[type]]
name = "students"
folder = "students"
key = ["sisId"]
mode = "mirror"
[[type.column]]
name = "sisId"
aliases = ["Student ID"]
required = true
kind = "id"
[[type.column]]
name = "birthDate"
kind = "date"
formats = ["MM/DD/YYYY", "YYYY-MM-DD"]

[[type]]
name = "guardians"
folder = "guardians"
file_name = "guardians.csv"
key = ["guardianSisId", "studentSisId"]
mode = "upsert"
references = [{ column = "studentSisId", to = "students.sisId" }]
[[type.column]]
name = "guardianSisId"
required = true
kind = "id"
[[type.column]]
name = "studentSisId"
required = true
kind = "id"
"#;

    /// A key is shown and typed with `+` between its columns; only a key of several columns
    /// turns `+` back into the separator (a one-column key may hold a `+` of its own).
    #[test]
    fn keys_of_several_columns_are_shown_and_typed_with_a_plus() {
        let t = parse(STUDENTS).unwrap();
        let (students, guardians) = (t.get("students").unwrap(), t.get("guardians").unwrap());
        assert_eq!(guardians.shown_key("G1\u{1f}st1"), "G1+st1");
        assert_eq!(guardians.stored_key("G1+st1"), "G1\u{1f}st1");
        assert_eq!(students.stored_key("a+b"), "a+b");
        assert_eq!(students.stored_key(&students.shown_key("1042")), "1042");
    }

    #[test]
    fn parses_types_and_routes_uploads() {
        let t = parse(STUDENTS).unwrap();
        let s = t.get("students").unwrap();
        assert_eq!(s.key, [0]);
        assert_eq!(s.mode, LoadMode::Mirror);
        assert_eq!(s.safeguard, Safeguard { deleted_percent: 10.0, changed_percent: 100.0 });
        let g = t.get("guardians").unwrap();
        assert_eq!(
            g.references,
            [Reference { column: 1, to_type: "students".into(), on_delete: OnDelete::Hold }]
        );
        let all = vec!["students".to_owned(), "guardians".to_owned()];
        assert_eq!(t.for_upload(&all, "students", "any.csv").unwrap().name, "students");
        assert_eq!(t.for_upload(&all, "guardians", "GUARDIANS.csv").unwrap().name, "guardians");
        // The folder's only type takes any name there; its required name is for the root.
        assert_eq!(t.for_upload(&all, "guardians", "other.csv").unwrap().name, "guardians");
        assert!(t.for_upload(&["guardians".into()], "students", "x.csv").is_none());
    }

    #[test]
    fn mistakes_in_type_files_are_explained() {
        let e = |s: &str| parse(s).unwrap_err().to_string();
        assert!(e("[[type]]\nname = 1").contains("test.toml"));
        let no_key = STUDENTS.replace("key = [\"sisId\"]", "key = [\"nope\"]");
        assert!(e(&no_key).contains("\"nope\""), "{}", e(&no_key));
        let optional_key = STUDENTS.replacen("required = true\nkind = \"id\"", "kind = \"id\"", 1);
        assert!(e(&optional_key).contains("must be required"));
        let bad_ref = STUDENTS.replace("students.sisId", "teachers.id");
        assert!(e(&bad_ref).contains("teachers.id"));
        let bad_kind = STUDENTS.replace("kind = \"date\"", "kind = \"colour\"");
        assert!(e(&bad_kind).contains("colour"));
        let typo = STUDENTS.replace("aliases", "alias");
        assert!(e(&typo).contains("alias"));
        let twice =
            format!("{STUDENTS}\n{}", &STUDENTS[..STUDENTS.find("[[type]]\nname = \"guardians\"").unwrap()]);
        assert!(matches!(parse(&twice), Err(TypeError::Duplicate(_))));
    }
}
