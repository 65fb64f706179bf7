//! The OpenAPI document of `/api/v1`, generated (utoipa) from the handlers' annotations in
//! `api` and the views they answer with, so that it cannot drift from the answers (tests call
//! every path it lists; schemathesis checks the answers against it).

use crate::api;
use crate::json::{
    AuditList, ErrorBody, ErrorDetail, ErrorPage, ExportDone, ExportRunList, ImportList, KeyList, KeyRemoved,
    RecordPage, SavedExportList, SyncResult, TenantDetail, TenantList,
};
use sluice_core::history::{Counts, ImportStatus, StoredError};
use sluice_core::saved_export::{ExportFormat, RunCause};
use sluice_core::views::{
    ExportFailedEvent, ExportRunView, ImportFinishedEvent, ImportView, KeyView, RecordsDeletedView,
    SafeguardView, SavedExportView, SettingsView, TenantView, TriggerName,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sluice",
        description = "Tenants, imports, their errors and records. Authenticate with an API key: \
            `Authorization: Bearer slk_...` (`sluice apikey add`). A tenant's key sees only its tenant; \
            anything else is 404. A key made with `--scope read` may call only the operations without \
            the `write` scope (any other answers 403 `scope`); one made with `--types` reaches only those \
            types' records, imports and exports."
    ),
    paths(
        api::tenants, api::tenant, api::imports, api::sync, api::records, api::delete_record, api::record_photo, api::keys, api::add_key,
        api::remove_key, api::settings, api::change_settings, api::import, api::import_errors,
        api::import_file, api::approve, api::discard, api::export, api::saved_exports, api::saved_export,
        api::save_export, api::remove_saved_export, api::run_saved_export, api::export_runs, api::audit,
    ),
    components(schemas(
        ErrorBody, ErrorDetail, TenantView, TenantList, TenantDetail, TriggerName, Counts, ImportStatus,
        ImportView, ImportList, SyncResult, StoredError, ErrorPage, KeyView, KeyList, KeyRemoved,
        SafeguardView, SettingsView, RecordPage, api::NewKey, api::SettingsBody, api::SafeguardChange,
        api::ReportFormat, ImportFinishedEvent, ExportFailedEvent, api::ExportBody, ExportDone, SavedExportView, SavedExportList,
        api::SavedExportBody, ExportRunView, ExportRunList, ExportFormat, RunCause, RecordsDeletedView,
        api::RecordSortBy, api::SortOrder, AuditList, sluice_core::views::AuditView,
        sluice_core::audit::ActorKind, sluice_core::audit::AuditOutcome,
    )),
    modifiers(&Bearer),
    security(("bearer" = [])),
)]
struct Document;

/// API keys, sent as `Authorization: Bearer <key>`.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    Document::openapi()
}
