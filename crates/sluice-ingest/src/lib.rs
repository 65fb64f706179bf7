//! The import pipeline: from a file (an upload, or a path on the command line) to records,
//! with a precise report of what happened to every row. Knows nothing about SSH or HTTP.

mod manifest;
mod oneroster;
mod photos;
pub mod report;
mod run;
mod worker;
mod zipdir;

pub use jiff::Timestamp;
pub use run::{ImportContext, ImportError, ImportRequest, Verdict, dry_run, import_file};
/// Entry points for the fuzz targets in `fuzz/`; not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::oneroster::{EntryRead, read_package};
}

pub use worker::{
    ApproveError, DeleteError, Ingest, next_run, next_scheduled_run, snapshots_dir, staging_dir,
};
