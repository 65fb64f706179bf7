//! The REST API's answers: lists and pages of the resource views in `sluice_core::views`
//! (the same views the CLI's `--json` output and webhook bodies use), and the error shape.
//! Each derives its OpenAPI schema, so `openapi.json` is generated from what is sent.

use serde::Serialize;
use serde_json::{Map, Value};
use sluice_core::history::StoredError;
use sluice_core::views::{ImportView, KeyView, TenantView};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// An error: `{"error": {"code": "...", "message": "..."}}`. The code is stable; the
/// message says what to do.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: &'static str,
    pub message: String,
}

/// Audit log entries, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    pub entries: Vec<sluice_core::views::AuditView>,
    /// When the page was full: the `before_id` that asks for the next (older) page.
    pub next_before_id: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantList {
    pub tenants: Vec<TenantView>,
}

/// A tenant with when it next imports, its latest import of each type and its record counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantDetail {
    #[serde(flatten)]
    pub tenant: TenantView,
    /// The next scheduled run, while the tenant's trigger is `schedule`.
    #[schema(required = true)]
    pub next_run: Option<String>,
    pub latest_imports: Vec<ImportView>,
    /// Active records per type.
    pub records: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportList {
    pub imports: Vec<ImportView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SyncResult {
    /// Files found waiting in the tenant's folders.
    pub found: usize,
    /// The imports the sync ran, oldest first.
    pub imports: Vec<ImportView>,
}

/// A page of an import's rejected rows.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorPage {
    pub import: i64,
    /// All rejected rows of the import (the page holds at most `limit`).
    pub rejected: u64,
    pub offset: usize,
    pub limit: usize,
    pub errors: Vec<StoredError>,
}

/// A page of records of one type, each an object of its columns.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordPage {
    #[serde(rename = "type")]
    pub type_name: String,
    /// How many records match in all (the page holds at most `limit` of them).
    pub total: u64,
    pub offset: usize,
    pub limit: usize,
    #[schema(value_type = Vec<BTreeMap<String, String>>)]
    pub records: Vec<Map<String, Value>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

/// An export made: where the tenant finds it, and what it holds.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportDone {
    #[serde(rename = "type")]
    pub type_name: String,
    /// csv or xlsx.
    pub format: &'static str,
    /// In the tenant's tree: `/exports/students.csv`.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
}

/// A tenant's saved exports, by name.
#[derive(Debug, Serialize, ToSchema)]
pub struct SavedExportList {
    pub exports: Vec<sluice_core::views::SavedExportView>,
}

/// A saved export's runs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportRunList {
    pub runs: Vec<sluice_core::views::ExportRunView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyRemoved {
    /// The fingerprint of the key removed.
    pub removed: String,
}
