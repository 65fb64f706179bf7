//! OneRoster CSV (1EdTech "OneRoster: CSV Binding", versions 1.1 and 1.2), without I/O: the
//! specification as data (`spec.toml`, one table per file and version), the package manifest,
//! and the checks of headers and rows. The caller reads the zip and the CSV.

mod manifest;
mod row;
mod spec;

pub use manifest::{FileMode, Manifest, ManifestProblem};
pub use row::{HeaderLayout, RowCheck, check_header, check_row, is_empty_row};
pub use spec::{Column, FileSpec, Kind, Version, file_spec, files};

/// The record type under which a package file's rows are stored: `oneroster.users`.
pub fn record_type(file: &str) -> String {
    format!("oneroster.{file}")
}

/// Whether `file` is a OneRoster file name (of either version), e.g. `users`.
pub fn is_file_name(file: &str) -> bool {
    [Version::V1_1, Version::V1_2].into_iter().any(|v| file_spec(v, file).is_some())
}

/// The single-id references between OneRoster files, of either version, once each:
/// (file, column, referred file), e.g. `("enrollments", "classSourcedId", "classes")`. Lists of
/// ids (`orgSourcedIds`, `termSourcedIds`) are not among them.
pub fn single_references() -> impl Iterator<Item = (&'static str, &'static str, &'static str)> {
    let mut seen: Vec<(&'static str, &'static str, &'static str)> = Vec::new();
    for v in [Version::V1_2, Version::V1_1] {
        for f in files(v) {
            for c in &f.columns {
                if let Some(to) = c.refers_to.as_deref()
                    && c.kind == Kind::Id
                    && c.name != "sourcedId"
                    && !seen.iter().any(|(sf, sc, _)| *sf == f.name && *sc == c.name)
                {
                    seen.push((f.name.as_str(), c.name.as_str(), to));
                }
            }
        }
    }
    seen.into_iter()
}
