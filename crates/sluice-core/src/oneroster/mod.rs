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
