//! The REST API under `/api/v1`: bearer API keys (a tenant's, or the operator's), JSON
//! everywhere (errors carry a stable `code`), and an OpenAPI 3 document that describes it.
//! A tenant's key sees only that tenant: anything else answers 404, as if it did not exist.

use crate::Web;
use crate::json::{
    AuditList, ErrorBody, ErrorDetail, ErrorPage, ExportDone, ExportRunList, ImportList, KeyList, KeyRemoved,
    RecordPage, SavedExportList, SyncResult, TenantDetail, TenantList,
};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;
use sluice_core::TenantName;
use sluice_core::audit::action;
use sluice_core::connector::ConnectorName;
use sluice_core::import::{Related, TypeFormat};
use sluice_core::saved_export::{ExportFormat, ExportName, ExportWhen, RunCause, RunOutcome, SavedExport};
use sluice_core::views::{
    ExportRunView, ImportView, KeyView, RecordsDeletedView, SavedExportView, SettingsView, TenantView,
};
use sluice_ingest::{ApproveError, DeleteError};
use sluice_store::{ImportRecord, KeyOwner, StoreError};
use utoipa::{IntoParams, IntoResponses, ToSchema};

pub fn routes() -> Router<Web> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/tenants", get(tenants))
        .route("/api/v1/tenants/{tenant}", get(tenant))
        .route("/api/v1/tenants/{tenant}/imports", get(imports))
        .route("/api/v1/tenants/{tenant}/sync", post(sync))
        .route("/api/v1/tenants/{tenant}/records/{type}", get(records))
        .route("/api/v1/tenants/{tenant}/records/{type}/{key}", delete(delete_record))
        .route("/api/v1/tenants/{tenant}/records/{type}/{key}/photo", get(record_photo))
        .route("/api/v1/tenants/{tenant}/keys", get(keys).post(add_key).delete(remove_key))
        .route("/api/v1/tenants/{tenant}/settings", get(settings).patch(change_settings))
        .route("/api/v1/tenants/{tenant}/exports", get(saved_exports).post(export))
        .route(
            "/api/v1/tenants/{tenant}/exports/{name}",
            get(saved_export).put(save_export).delete(remove_saved_export),
        )
        .route("/api/v1/tenants/{tenant}/exports/{name}/run", post(run_saved_export))
        .route("/api/v1/tenants/{tenant}/exports/{name}/runs", get(export_runs))
        .route("/api/v1/imports/{id}", get(import))
        .route("/api/v1/imports/{id}/errors", get(import_errors))
        .route("/api/v1/imports/{id}/file", get(import_file))
        .route("/api/v1/imports/{id}/approve", post(approve))
        .route("/api/v1/imports/{id}/discard", post(discard))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint; see /api/v1/openapi.json")
        })
        .layer(axum::middleware::map_response(in_the_api_shape))
}

/// Refusals made before a handler runs (a method the path does not take, a body over the
/// limit) in this API's error shape, like every other answer.
async fn in_the_api_shape(response: Response) -> Response {
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if json || !(response.status().is_client_error() || response.status().is_server_error()) {
        return response;
    }
    let error = match response.status() {
        StatusCode::METHOD_NOT_ALLOWED => ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this endpoint does not take that method (the allow header lists those it takes); see /api/v1/openapi.json",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => too_large(),
        status => ApiError::new(status, "bad_request", "the request is not what this endpoint takes"),
    };
    let mut answer = error.into_response();
    if let Some(allow) = response.headers().get(header::ALLOW) {
        answer.headers_mut().insert(header::ALLOW, allow.clone());
    }
    answer
}

/// A request body over the limit (`crate::MAX_BODY_BYTES`).
pub(crate) fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("the request body is larger than the {} KiB sluice takes", crate::MAX_BODY_BYTES / 1024),
    )
}

/// An error as the API returns it: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// A refusal to a known key, audited (see `audit::Refusal`).
    refused: Option<Box<crate::audit::Refusal>>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), refused: None }
    }

    /// This error refuses `caller` something it may not do: the audit log records it.
    fn refusing(mut self, caller: &Caller) -> Self {
        let tenant = match &caller.0 {
            KeyOwner::Operator => None,
            KeyOwner::Tenant(t) => Some(t.clone()),
        };
        self.refused = Some(Box::new(crate::audit::Refusal { actor: caller.actor(), tenant }));
        self
    }

    fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("no {what}, or not yours"))
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::warn!("api: {e}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "sluice could not answer; the server log says why",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.code, message: self.message } };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        match self.refused {
            Some(refusal) => (*refusal).attach(response),
            None => response,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoSuchTenant(_) => ApiError::not_found("such tenant"),
            StoreError::NoSuchExport(_) => ApiError::not_found("such saved export"),
            StoreError::NoSuchConnector(_) => ApiError::not_found("such connector"),
            other => ApiError::internal(other),
        }
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// `Path`, with a bad value answered in this API's error shape.
pub struct ApiPath<T>(T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            // A name parsed at the edge (a tenant's) says its own rule first.
            Ok(_) if parts.uri.path().contains("%00") => Err(holds_nul("path", "%00")),
            Ok(Path(v)) => Ok(ApiPath(v)),
            Err(e) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("the path is not valid: {}", e.body_text()),
            )),
        }
    }
}

/// No stored name or value holds a NUL, and PostgreSQL refuses text with one (an error of its
/// own, a 500 here, found by schemathesis on `?tenant=%00`): the path, the query and the body
/// are refused at the edge when one holds a NUL.
fn holds_nul(part: &str, written: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad_request",
        format!("the {part} is not valid: it holds a NUL character ({written}); no name or value may"),
    )
}

/// `Query`, likewise.
pub struct ApiQuery<T>(T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if parts.uri.query().is_some_and(|q| q.contains("%00")) {
            return Err(holds_nul("query", "%00"));
        }
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(ApiQuery(v)),
            Err(e) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("the query is not valid: {}", e.body_text()),
            )),
        }
    }
}

/// The tenant in the path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // describes the path; handlers read it with `ApiPath`
struct TenantParam {
    /// The tenant's name.
    tenant: String,
}

/// The import in the path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct IdParam {
    /// The import's id.
    id: i64,
}

/// What any endpoint may answer instead.
#[derive(IntoResponses)]
#[allow(dead_code)] // describes `ApiError`'s answers
enum Refused {
    /// The path, query or body is not valid.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No API key, or an unknown or revoked one.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// Outside the key's scope (code `scope`): a change asked of a read-only key, or a type
    /// the key is not limited to.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// No such thing, or not the key's.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// A request body over 64 KiB.
    #[response(status = 413)]
    TooLarge(ErrorBody),
}

/// What an endpoint that changes state may also answer.
#[derive(IntoResponses)]
#[response(status = 409)]
#[allow(dead_code)]
/// The state does not allow it (not held, superseded, the key exists).
struct Conflict(ErrorBody);

/// The largest `offset` a page may start at (far beyond any table, and within SQLite's i64).
pub const MAX_OFFSET: usize = 1_000_000_000_000;

fn offset(given: Option<usize>) -> Result<usize, ApiError> {
    match given.unwrap_or(0) {
        o if o <= MAX_OFFSET => Ok(o),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_offset",
            format!("offset must be from 0 to {MAX_OFFSET}"),
        )),
    }
}

/// Who is calling, from `Authorization: Bearer <key>`: the key's owner and name, and the
/// client's address.
#[derive(Clone)]
pub struct Caller(KeyOwner, String, String, sluice_store::KeyScope);

/// Records what a caller did in the audit log (done, or refused), and passes the answer on.
async fn audited<T>(
    web: &Web,
    caller: &Caller,
    tenant: Option<&str>,
    action: &'static str,
    target: String,
    answer: Result<T, ApiError>,
) -> Result<T, ApiError> {
    crate::audit::record_off(
        web,
        caller.actor(),
        crate::audit::Did::new(tenant, action, target, answer.is_ok()),
    )
    .await;
    answer
}

impl Caller {
    /// Who this is, for the audit log: the key's name (the operator's said so), from the
    /// client's address.
    fn actor(&self) -> sluice_core::audit::Actor {
        sluice_core::audit::Actor {
            kind: sluice_core::audit::ActorKind::ApiKey,
            name: match &self.0 {
                KeyOwner::Operator => format!("operator key {}", self.1),
                KeyOwner::Tenant(_) => self.1.clone(),
            },
            source: self.2.clone(),
        }
    }

    /// The tenant's name if the caller may act for it; otherwise "not found".
    /// How decisions by this caller are recorded.
    fn who(&self) -> String {
        match &self.0 {
            KeyOwner::Operator => format!("operator API key {:?}", self.1),
            KeyOwner::Tenant(_) => format!("API key {:?}", self.1),
        }
    }

    /// A change: refused (403, naming the scope it lacks) to a read-only key.
    fn may_write(&self) -> Result<(), ApiError> {
        if self.3.write {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "scope",
            "this API key may only read (scope read); changing needs a key made with --scope write",
        )
        .refusing(self))
    }

    /// Records, imports or exports of `type_name`: refused (403) to a key limited to others.
    fn may_type(&self, type_name: &str) -> Result<(), ApiError> {
        if self.3.covers(type_name) {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "scope",
            format!("this API key reaches only the types {}, not {type_name}", self.3.types.join(", ")),
        )
        .refusing(self))
    }

    /// All of a tenant's types at once (a sync imports whatever waits): refused (403) to a key
    /// limited to some.
    fn may_all_types(&self) -> Result<(), ApiError> {
        if self.3.types.is_empty() {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "scope",
            format!(
                "this API key reaches only the types {}: it cannot act on all of them",
                self.3.types.join(", ")
            ),
        )
        .refusing(self))
    }

    fn may(&self, tenant: &str) -> Result<(), ApiError> {
        match &self.0 {
            KeyOwner::Operator => Ok(()),
            KeyOwner::Tenant(own) if own == tenant => Ok(()),
            KeyOwner::Tenant(_) => Err(ApiError::not_found("such tenant")),
        }
    }
}

impl FromRequestParts<Web> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, web: &Web) -> Result<Self, Self::Rejection> {
        let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
        let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            unauthorized("send an API key: Authorization: Bearer <key> (`sluice apikey add`)")
        })?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 200)
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <key>`"))?;
        let hash = crate::keys::hash(token);
        // One indexed lookup: cheaper inline than a thread hop.
        match web.ingest.store.api_key_by_hash(&hash) {
            Ok(Some(key)) => {
                // The audit log names every key: an unnamed one by its id.
                let name = if key.name.is_empty() { format!("key {}", key.id) } else { key.name };
                Ok(Caller(key.owner, name, crate::audit::source(parts, web), key.scope))
            }
            Ok(None) => Err(unauthorized("this API key is unknown or revoked")),
            Err(e) => Err(ApiError::internal(e)),
        }
    }
}

/// Runs blocking store or import work off the async threads (the helper the dashboard shares).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    crate::blocking::blocking(f).await
}

/// Blocking work that never finished is an internal error.
impl From<crate::blocking::Interrupted> for ApiError {
    fn from(e: crate::blocking::Interrupted) -> Self {
        ApiError::internal(e)
    }
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi::document())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// One tenant's entries (a tenant's key sees only its own; the operator's all by default).
    tenant: Option<String>,
    /// Only entries from this time on (milliseconds since the epoch).
    #[param(minimum = 0)]
    since_ms: Option<i64>,
    /// How many at most (default 100).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
    /// Only entries older than this one (the previous page's `next_before_id`).
    before_id: Option<i64>,
    /// One action (`tenant.settings`), or a family of them (`login`: `login` and
    /// `login.second_factor`).
    action: Option<String>,
}

/// The audit log: who changed what, when, from where, and how it ended; newest first
#[utoipa::path(get, path = "/api/v1/audit", operation_id = "listAudit", params(AuditQuery),
    responses((status = 200, description = "OK", body = AuditList), Refused))]
pub(crate) async fn audit(
    State(web): State<Web>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<AuditList> {
    // A tenant's key reads its tenant's entries only, whatever it asks.
    let tenant = match (&caller.0, q.tenant) {
        (KeyOwner::Tenant(own), None) => Some(own.clone()),
        (_, Some(t)) => {
            caller.may(&t)?;
            Some(t)
        }
        (KeyOwner::Operator, None) => None,
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) || q.since_ms.is_some_and(|s| s < 0) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "limit is 1 to 10000 and since_ms is at least 0",
        ));
    }
    blocking(move || {
        // A tenant's entries from its creation on: one removed before under the same name is
        // not this one.
        let mut since = q.since_ms;
        if let Some(t) = &tenant {
            let created = web.ingest.store.require_tenant(t)?.created_ms;
            since = Some(since.unwrap_or(0).max(created));
        }
        let filter = sluice_core::audit::AuditFilter {
            tenant,
            since_ms: since,
            before_id: q.before_id,
            action: q.action.filter(|a| !a.is_empty()),
            limit,
        };
        let entries = web.ingest.store.audit_entries(&filter)?;
        let next_before_id = entries.last().filter(|_| entries.len() == limit).map(|e| e.id);
        Ok(Json(AuditList { entries: entries.iter().map(Into::into).collect(), next_before_id }))
    })
    .await
}

/// The tenants the key may see
#[utoipa::path(get, path = "/api/v1/tenants", operation_id = "listTenants",
    responses((status = 200, description = "OK", body = TenantList), Refused))]
pub(crate) async fn tenants(State(web): State<Web>, caller: Caller) -> ApiResult<TenantList> {
    let list = blocking(move || {
        let all = web.ingest.store.tenants()?;
        Ok(all
            .into_iter()
            .filter(|t| caller.may(t.name.as_str()).is_ok())
            .map(|t| tenant_view(&web, &t))
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(Json(TenantList { tenants: list }))
}

fn tenant_view(web: &Web, t: &sluice_core::Tenant) -> TenantView {
    TenantView::new(t, web.ingest.tenant_types(t))
}

/// A tenant: settings, latest import per type, record counts
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}", operation_id = "getTenant", params(TenantParam),
    responses((status = 200, description = "OK", body = TenantDetail), Refused))]
pub(crate) async fn tenant(
    State(web): State<Web>,
    caller: Caller,
    ApiPath(name): ApiPath<TenantName>,
) -> ApiResult<TenantDetail> {
    caller.may(&name)?;
    blocking(move || {
        let t = web.ingest.store.require_tenant(&name)?;
        let next_run = sluice_ingest::next_scheduled_run(&t, jiff_now()).map(|ts| ts.to_string());
        let mut latest_imports: Vec<ImportView> = Vec::new();
        for r in &web.ingest.store.imports(&name, 500)? {
            if !latest_imports.iter().any(|l| l.type_name == r.type_name) {
                latest_imports.push(r.into());
            }
        }
        let records = web.ingest.store.record_counts(&name)?.into_iter().collect();
        Ok(Json(TenantDetail { tenant: tenant_view(&web, &t), next_run, latest_imports, records }))
    })
    .await
}

fn jiff_now() -> sluice_ingest::Timestamp {
    sluice_ingest::Timestamp::now()
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct Paging {
    /// How many at most (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

impl Paging {
    fn limit(&self, default: usize) -> Result<usize, ApiError> {
        match self.limit.unwrap_or(default) {
            0 => Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_limit", "limit must be from 1 to 1000")),
            n if n > 1000 => {
                Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_limit", "limit must be from 1 to 1000"))
            }
            n => Ok(n),
        }
    }
}

/// Import history, newest first
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/imports", operation_id = "listImports", params(TenantParam, Paging),
    responses((status = 200, description = "OK", body = ImportList), Refused))]
pub(crate) async fn imports(
    State(web): State<Web>,
    caller: Caller,
    ApiPath(name): ApiPath<TenantName>,
    ApiQuery(p): ApiQuery<Paging>,
) -> ApiResult<ImportList> {
    caller.may(&name)?;
    let limit = p.limit(50)?;
    blocking(move || {
        web.ingest.store.require_tenant(&name)?;
        let list = web.ingest.store.imports(&name, limit)?;
        // A key limited to some types sees their imports only.
        let seen = list.iter().filter(|r| caller.3.covers(&r.type_name));
        Ok(Json(ImportList { imports: seen.map(ImportView::from).collect() }))
    })
    .await
}

/// An import the caller may see.
fn visible_import(web: &Web, caller: &Caller, id: i64) -> Result<ImportRecord, ApiError> {
    let record = web.ingest.store.import(id)?.ok_or_else(|| ApiError::not_found("such import"))?;
    caller.may(&record.tenant).map_err(|_| ApiError::not_found("such import"))?;
    caller.may_type(&record.type_name)?;
    Ok(record)
}

/// One import
#[utoipa::path(get, path = "/api/v1/imports/{id}", operation_id = "getImport", params(IdParam),
    responses((status = 200, description = "OK", body = ImportView), Refused))]
pub(crate) async fn import(
    State(web): State<Web>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<ImportView> {
    blocking(move || Ok(Json((&visible_import(&web, &caller, id)?).into()))).await
}

/// The file a held or superseded import keeps, as uploaded
///
/// What approving would apply, or what a newer import superseded.
#[utoipa::path(get, path = "/api/v1/imports/{id}/file", operation_id = "getImportFile", params(IdParam),
    responses((status = 200, description = "OK", content_type = "application/octet-stream", body = Vec<u8>), Refused))]
pub(crate) async fn import_file(
    State(web): State<Web>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    let record = blocking(move || visible_import(&web, &caller, id)).await?;
    crate::kept_file(&record).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_file",
            format!(
                "import {id} is {}: only held and superseded imports (and failed approvals) keep their file",
                record.status.as_str()
            ),
        )
    })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ErrorsQuery {
    /// How many rows at most (default 100; CSV: the whole report).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    #[param(minimum = 0, maximum = 1_000_000_000_000_u64)]
    offset: Option<usize>,
    /// json (the default), or csv: the whole report as a file.
    #[param(value_type = Option<ReportFormat>)]
    format: Option<String>,
}

/// The formats of an import's error report.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // describes the `format` parameter, which is read as text to answer `bad_format`
pub(crate) enum ReportFormat {
    Json,
    Csv,
}

/// An import's rejected rows (JSON, or the CSV report)
#[utoipa::path(get, path = "/api/v1/imports/{id}/errors", operation_id = "listImportErrors",
    params(IdParam, ErrorsQuery),
    responses((status = 200, description = "OK", content((ErrorPage = "application/json"), (String = "text/csv"))), Refused))]
pub(crate) async fn import_errors(
    State(web): State<Web>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<ErrorsQuery>,
) -> Result<Response, ApiError> {
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_format", "format is json or csv")),
    };
    let limit = Paging { limit: q.limit }.limit(if csv { 1000 } else { 100 })?;
    let offset = offset(q.offset)?;
    blocking(move || {
        let record = visible_import(&web, &caller, id)?;
        let errors = web.ingest.store.import_errors(
            record.id,
            if csv { sluice_store::STORED_ERRORS } else { limit },
            if csv { 0 } else { offset },
        )?;
        if csv {
            let text = sluice_ingest::report::stored_csv(&errors);
            let disposition = format!("attachment; filename=\"import-{id}-errors.csv\"");
            return Ok((
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                    (header::CONTENT_DISPOSITION, disposition),
                ],
                text,
            )
                .into_response());
        }
        Ok(Json(ErrorPage { import: id, rejected: record.counts.rejected, offset, limit, errors })
            .into_response())
    })
    .await
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RecordsQuery {
    /// How many at most (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    #[param(minimum = 0, maximum = 1_000_000_000_000_u64)]
    offset: Option<usize>,
    /// Only records naming this student.
    student: Option<String>,
    /// Only records naming this class or section.
    class: Option<String>,
    /// CSV types: the records deactivated by `on_delete = "deactivate"` instead of the
    /// active ones.
    deactivated: Option<bool>,
    /// Search: each word must begin the record's key, first or last name or email (any case).
    #[param(max_length = 500)]
    q: Option<String>,
    /// Order by key (default) or by name (last, first, then key).
    sort: Option<RecordSortBy>,
    /// `asc` (default) or `desc`.
    order: Option<SortOrder>,
}

/// What records are ordered by.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RecordSortBy {
    Key,
    Name,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SortOrder {
    Asc,
    Desc,
}

/// Records of one type, searched, sorted and paged, with how many match in all
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/records/{type}", operation_id = "listRecords",
    params(TenantParam, ("type" = String, Path, description = "a record type: a CSV import type or a OneRoster file's type"), RecordsQuery),
    responses((status = 200, description = "OK", body = RecordPage), Refused))]
pub(crate) async fn records(
    State(web): State<Web>,
    caller: Caller,
    ApiPath((name, type_name)): ApiPath<(TenantName, String)>,
    ApiQuery(q): ApiQuery<RecordsQuery>,
) -> ApiResult<RecordPage> {
    caller.may(&name)?;
    caller.may_type(&type_name)?;
    let limit = Paging { limit: q.limit }.limit(100)?;
    let offset = offset(q.offset)?;
    let types = &web.ingest.types;
    if !types.has_records_of(&type_name) || types.get(&type_name).is_some_and(|t| t.format != TypeFormat::Csv)
    {
        return Err(ApiError::not_found("such record type"));
    }
    let filter = match (&q.student, &q.class) {
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_filter",
                "filter by student or by class, not both",
            ));
        }
        (Some(id), None) => Some((Related::Student, id.clone())),
        (None, Some(id)) => Some((Related::Class, id.clone())),
        (None, None) => None,
    };
    let filter = match filter {
        Some((what, id)) => {
            let path = types.related_path(&type_name, what).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_filter",
                    format!("records of type {type_name} do not name a {}", what.what()),
                )
            })?;
            Some((path, id))
        }
        None => None,
    };
    blocking(move || {
        web.ingest.store.require_tenant(&name)?;
        let columns: Option<Vec<String>> =
            web.ingest.types.get(&type_name).map(|t| t.columns.iter().map(|c| c.name.clone()).collect());
        // A CSV type's deactivated records are listed apart; a OneRoster record's status says.
        let deactivated = columns.as_ref().map(|_| q.deactivated.unwrap_or(false));
        let query = sluice_store::RecordQuery {
            q: q.q.unwrap_or_default(),
            sort: match q.sort {
                Some(RecordSortBy::Name) => sluice_store::RecordSort::Name,
                _ => sluice_store::RecordSort::Key,
            },
            descending: matches!(q.order, Some(SortOrder::Desc)),
            filter,
            deactivated,
            limit,
            offset,
        };
        let found = web.ingest.store.search_records(&name, &type_name, &query)?;
        let records = found
            .records
            .iter()
            .map(|r| &r.data)
            .map(|data| match &columns {
                // CSV types store an array in the type's column order.
                Some(cols) => {
                    let values: Vec<Value> = serde_json::from_str(data).unwrap_or_default();
                    cols.iter().cloned().zip(values).collect()
                }
                None => serde_json::from_str(data).unwrap_or_default(),
            })
            .collect();
        Ok(Json(RecordPage { type_name, total: found.total, offset, limit, records }))
    })
    .await
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeleteQuery {
    /// Delete even when records refer to it through a reference that holds deletions for a
    /// decision (`on_delete = "hold"`): they are kept as they are. Without it such a deletion
    /// answers 409 and lists them.
    force: Option<bool>,
}

/// Delete one record (its person role goes with it; records referring to it follow their
/// reference's `on_delete`). A tombstone remains: the next import that carries the key adds it
/// back and says so in its warnings.
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant}/records/{type}/{key}", operation_id = "deleteRecord", security(("bearer" = ["write"])),
    params(TenantParam, ("type" = String, Path, description = "a CSV import type"),
        ("key" = String, Path, description = "the record's key (a key of several columns joined by `+`)"), DeleteQuery),
    responses((status = 200, description = "OK", body = RecordsDeletedView), Refused, Conflict))]
pub(crate) async fn delete_record(
    State(web): State<Web>,
    caller: Caller,
    ApiPath((name, type_name, key)): ApiPath<(TenantName, String, String)>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> ApiResult<RecordsDeletedView> {
    caller.may_write()?;
    caller.may(&name)?;
    caller.may_type(&type_name)?;
    let by = caller.who();
    let (w, tenant, target) = (web.clone(), name.to_string(), format!("{type_name} {key}"));
    let answer = blocking(move || {
        let stored = web.ingest.deletable(&type_name).map_err(delete_error)?.stored_key(&key);
        let done = web
            .ingest
            .delete_records(&name, &type_name, &[stored], &by, q.force.unwrap_or(false))
            .map_err(delete_error)?;
        let t = web.ingest.deletable(&type_name).map_err(delete_error)?;
        Ok(Json(RecordsDeletedView {
            tenant: name.to_string(),
            deleted: done.deleted.iter().map(|k| t.shown_key(k)).collect(),
            type_name,
            deactivated: done.deactivated,
            kept: done.kept,
        }))
    })
    .await;
    audited(&w, &caller, Some(&tenant), action::RECORD_DELETE, target, answer).await
}

/// A record's photo: the image, JPEG or PNG as checked on import
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/records/{type}/{key}/photo", operation_id = "getRecordPhoto",
    params(TenantParam, ("type" = String, Path, description = "the type whose records have photos (students)"),
        ("key" = String, Path, description = "the record's key (a key of several columns joined by `+`)")),
    responses((status = 200, description = "OK", content((Vec<u8> = "image/jpeg"), (Vec<u8> = "image/png"))), Refused))]
pub(crate) async fn record_photo(
    State(web): State<Web>,
    caller: Caller,
    ApiPath((name, type_name, key)): ApiPath<(TenantName, String, String)>,
) -> Result<Response, ApiError> {
    caller.may(&name)?;
    caller.may_type(&type_name)?;
    blocking(move || {
        let stored = web.ingest.types.get(&type_name).map_or_else(|| key.clone(), |t| t.stored_key(&key));
        crate::photo_response(&web, &name, &type_name, &stored)?
            .ok_or_else(|| ApiError::not_found("photo of such a record"))
    })
    .await
}

fn delete_error(e: DeleteError) -> ApiError {
    match e {
        DeleteError::NoSuchType(_) => ApiError::not_found("such record type"),
        DeleteError::Package(_) => ApiError::new(StatusCode::BAD_REQUEST, "not_deletable", e.to_string()),
        DeleteError::Store(StoreError::NoSuchRecord { .. }) => ApiError::not_found("such record"),
        DeleteError::Store(StoreError::Referred(_)) => ApiError::new(
            StatusCode::CONFLICT,
            "referred",
            format!("{e}: send force=true to delete it anyway"),
        ),
        DeleteError::Store(e) => e.into(),
        DeleteError::Import(e) => ApiError::internal(e),
    }
}

/// Import the files waiting in the tenant's folders now
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/sync", operation_id = "syncTenant", security(("bearer" = ["write"])), params(TenantParam),
    responses((status = 200, description = "OK", body = SyncResult), Refused))]
pub(crate) async fn sync(
    State(web): State<Web>,
    caller: Caller,
    ApiPath(name): ApiPath<TenantName>,
) -> ApiResult<SyncResult> {
    caller.may_all_types()?;
    caller.may_write()?;
    caller.may(&name)?;
    let (w, tenant) = (web.clone(), name.to_string());
    let answer = blocking(move || {
        web.ingest.store.require_tenant(&name)?;
        let before = web.ingest.store.imports(&name, 1)?.first().map_or(0, |r| r.id);
        let found = web.ingest.sync_tenant(&name).map_err(ApiError::internal)?;
        let mut imports: Vec<ImportView> = web
            .ingest
            .store
            .imports(&name, 10_000)?
            .iter()
            .filter(|r| r.id > before)
            .map(ImportView::from)
            .collect();
        imports.reverse();
        Ok(Json(SyncResult { found, imports }))
    })
    .await;
    audited(&w, &caller, Some(&tenant), action::IMPORT_SYNC, "files waiting".into(), answer).await
}

fn approval_error(e: ApproveError) -> ApiError {
    match e {
        ApproveError::NoSuchImport(_) => ApiError::not_found("such import"),
        e @ (ApproveError::NotHeld(..) | ApproveError::Store(StoreError::NotHeld(_))) => {
            ApiError::new(StatusCode::CONFLICT, "not_held", e.to_string())
        }
        e @ ApproveError::Superseded { .. } => {
            ApiError::new(StatusCode::CONFLICT, "superseded", e.to_string())
        }
        e => ApiError::internal(e),
    }
}

/// Apply a held import despite the safeguard
#[utoipa::path(post, path = "/api/v1/imports/{id}/approve", operation_id = "approveImport", security(("bearer" = ["write"])), params(IdParam),
    responses((status = 200, description = "OK", body = ImportView), Refused, Conflict))]
pub(crate) async fn approve(
    State(web): State<Web>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<ImportView> {
    caller.may_write()?;
    let (w, c) = (web.clone(), caller.clone());
    let answer = blocking(move || {
        let r = visible_import(&web, &caller, id)?;
        let done = web.ingest.approve(id, &caller.who()).map_err(approval_error);
        Ok((r.tenant, done))
    })
    .await;
    decided(&w, &c, id, action::IMPORT_APPROVE, answer).await.map(|done| Json((&done).into()))
}

/// An approval's or a discard's answer, recorded in the audit log once the import's tenant is
/// known (an import the caller may not see is not its to decide: not recorded).
async fn decided<T>(
    web: &Web,
    caller: &Caller,
    id: i64,
    action: &'static str,
    answer: Result<(String, Result<T, ApiError>), ApiError>,
) -> Result<T, ApiError> {
    let (tenant, done) = answer?;
    audited(web, caller, Some(&tenant), action, format!("import {id}"), done).await
}

/// Drop a held import
#[utoipa::path(post, path = "/api/v1/imports/{id}/discard", operation_id = "discardImport", security(("bearer" = ["write"])), params(IdParam),
    responses((status = 200, description = "OK", body = ImportView), Refused, Conflict))]
pub(crate) async fn discard(
    State(web): State<Web>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<ImportView> {
    caller.may_write()?;
    let (w, c) = (web.clone(), caller.clone());
    let answer = blocking(move || {
        let r = visible_import(&web, &caller, id)?;
        let done = web.ingest.discard(id, &caller.who()).map_err(approval_error).and_then(|()| {
            let after = visible_import(&web, &caller, id)?;
            Ok(Json(ImportView::from(&after)))
        });
        Ok((r.tenant, done))
    })
    .await;
    decided(&w, &c, id, action::IMPORT_DISCARD, answer).await
}

/// A JSON request body, read by hand so that a bad one gets this API's error shape.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let not_taken = |e: serde_json::Error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the request body is not what this endpoint takes: {e}"),
        )
    };
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(not_taken)?;
    if json_holds_nul(&value) {
        return Err(holds_nul("request body", "\\u0000"));
    }
    // Read again from the bytes, not the value: serde's messages then say the line and column.
    serde_json::from_slice(bytes).map_err(not_taken)
}

/// Whether any string of a JSON document, a member's name included, holds a NUL.
fn json_holds_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(json_holds_nul),
        Value::Object(members) => members.iter().any(|(k, v)| k.contains('\0') || json_holds_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// The tenant's SSH public keys (SFTP logins)
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/keys", operation_id = "listKeys", params(TenantParam),
    responses((status = 200, description = "OK", body = KeyList), Refused))]
pub(crate) async fn keys(
    State(web): State<Web>,
    caller: Caller,
    ApiPath(name): ApiPath<TenantName>,
) -> ApiResult<KeyList> {
    caller.may(&name)?;
    blocking(move || {
        web.ingest.store.require_tenant(&name)?;
        let keys = web.ingest.store.keys(&name)?;
        Ok(Json(KeyList { keys: keys.iter().map(KeyView::from).collect() }))
    })
    .await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewKey {
    /// One OpenSSH public key line, e.g. `ssh-ed25519 AAAA... comment`.
    public_key: String,
}

/// Authorise an SSH public key
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/keys", operation_id = "addKey", security(("bearer" = ["write"])), params(TenantParam), request_body = NewKey,
    responses((status = 201, description = "Added", body = KeyView), Refused, Conflict))]
pub(crate) async fn add_key(
    State(web): State<Web>,
    caller: Caller,
    ApiPath(name): ApiPath<TenantName>,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    caller.may_write()?;
    caller.may(&name)?;
    let new: NewKey = body(&bytes)?;
    let key =
        (web.parse_key)(&new.public_key).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_key", e))?;
    let (w, tenant_name, target) = (web.clone(), name.to_string(), format!("key {}", key.fingerprint));
    let answer = blocking(move || {
        let tenant = web.ingest.store.require_tenant(&name)?;
        match web.ingest.store.add_key(&tenant.name, &key) {
            Ok(()) => Ok((StatusCode::CREATED, Json(KeyView::from(&key))).into_response()),
            Err(e @ StoreError::KeyExists { .. }) => {
                Err(ApiError::new(StatusCode::CONFLICT, "key_exists", e.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    })
    .await;
    audited(&w, &caller, Some(&tenant_name), action::SSH_KEY_ADD, target, answer).await
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct KeyQuery {
    /// SHA256:..., as listed.
    fingerprint: String,
}

/// Remove an SSH public key
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant}/keys", operation_id = "removeKey", security(("bearer" = ["write"])),
    params(TenantParam, KeyQuery),
    responses((status = 200, description = "OK", body = KeyRemoved), Refused))]
pub(crate) async fn remove_key(
    State(web): State<Web>,
    caller: Caller,
    ApiPath(name): ApiPath<TenantName>,
    ApiQuery(q): ApiQuery<KeyQuery>,
) -> ApiResult<KeyRemoved> {
    caller.may_write()?;
    caller.may(&name)?;
    let (w, tenant, target) = (web.clone(), name.to_string(), format!("key {}", q.fingerprint));
    let answer = blocking(move || match web.ingest.store.remove_key(&name, &q.fingerprint) {
        Ok(()) => Ok(Json(KeyRemoved { removed: q.fingerprint })),
        Err(StoreError::NoSuchSshKey(_)) => Err(ApiError::not_found("such key")),
        Err(e) => Err(e.into()),
    })
    .await;
    audited(&w, &caller, Some(&tenant), action::SSH_KEY_REMOVE, target, answer).await
}

/// When imports run, and the tenant's safeguards
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/settings", operation_id = "getSettings", params(TenantParam),
    responses((status = 200, description = "OK", body = SettingsView), Refused))]
pub(crate) async fn settings(
    State(web): State<Web>,
    caller: Caller,
    ApiPath(name): ApiPath<TenantName>,
) -> ApiResult<SettingsView> {
    caller.may(&name)?;
    blocking(move || Ok(Json((&web.ingest.store.require_tenant(&name)?).into()))).await
}

/// The API's form of a settings change; turned into `KEY=VALUE` pairs for the one
/// `sluice_core::SettingsChange` the CLI and the dashboard build too.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SettingsChange)]
pub(crate) struct SettingsBody {
    /// Where uploads go: folders (a folder per type), root (files at / by their types'
    /// required names: students.csv, ...) or both.
    #[schema(value_type = Option<RoutingChoice>)]
    routing: Option<String>,
    #[schema(value_type = Option<TriggerChoice>)]
    trigger: Option<String>,
    /// Cron: minute hour day month weekday, e.g. `0 2 * * *`; "" for none (refused while the
    /// trigger is schedule).
    schedule: Option<String>,
    /// IANA name, e.g. America/Chicago.
    timezone: Option<String>,
    /// Per import type: on_upload, manual, manifest, or default (the tenant's trigger).
    #[serde(default)]
    type_triggers: std::collections::BTreeMap<String, String>,
    /// Per import type, its own schedule (cron, read in the tenant's time zone); "" removes it.
    #[serde(default)]
    type_schedules: std::collections::BTreeMap<String, String>,
    /// Imports wait until uploads have been quiet this many seconds, then run as a set in
    /// reference order (0: each upload at once).
    settle_secs: Option<u32>,
    /// Date ranges in which mirror imports delete nothing by omission, e.g.
    /// `["2026-06-15..2026-08-20"]`; `[]` for none.
    blackouts: Option<Vec<String>>,
    #[serde(default)]
    safeguards: Vec<SafeguardChange>,
    /// How files are read: strictness (lenient|strict|default), strictness.TYPE,
    /// delimiter.TYPE (comma|tab|semicolon|pipe|detect).
    #[serde(default)]
    read_settings: std::collections::BTreeMap<String, String>,
    /// Who is emailed when an import ends.
    notify_emails: Option<Vec<String>>,
    /// An http(s) URL POSTed when an import ends; "" for none. A host that is a private address
    /// (or an IPv6 address carrying one) is refused (400 bad_notify) unless the operator allows
    /// private webhooks.
    webhook_url: Option<String>,
    /// Signs each POST (HMAC-SHA256); write-only; refused (400 bad_notify) when there is no
    /// webhook URL.
    webhook_secret: Option<String>,
}

/// Where a tenant's uploads go.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub(crate) enum RoutingChoice {
    Folders,
    Root,
    Both,
}

/// The triggers a tenant may choose.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)] // describes `trigger`, which the settings change parses
pub(crate) enum TriggerChoice {
    OnUpload,
    Manual,
    Schedule,
    Manifest,
}

/// A safeguard to set: hold an import of `type` that would delete or change more than
/// `percent` of its records.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SafeguardChange {
    #[serde(rename = "type")]
    type_name: String,
    /// deleted or changed.
    limit: String,
    #[schema(minimum = 0, maximum = 100)]
    percent: f64,
}

impl SettingsBody {
    /// The change as `KEY=VALUE` pairs; `read_settings` may hold read settings only.
    fn pairs(self) -> Result<Vec<(String, String)>, ApiError> {
        if let Some(k) = self.read_settings.keys().find(|k| !is_read_key(k)) {
            return Err(bad_request(
                "bad_reading",
                format!("read_settings: {k:?} is not strictness, strictness.TYPE or delimiter.TYPE"),
            ));
        }
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut one = |key: &str, value: Option<String>| {
            if let Some(v) = value {
                pairs.push((key.to_owned(), v));
            }
        };
        one("routing", self.routing);
        one("trigger", self.trigger);
        one("schedule", self.schedule);
        one("timezone", self.timezone);
        one("notify.email", self.notify_emails.map(|list| list.join(",")));
        one("notify.webhook", self.webhook_url);
        one("notify.webhook_secret", self.webhook_secret);
        one("settle_secs", self.settle_secs.map(|s| s.to_string()));
        one("blackout", self.blackouts.map(|list| list.join(",")));
        pairs.extend(self.type_triggers.into_iter().map(|(t, g)| (format!("trigger.{t}"), g)));
        pairs.extend(self.type_schedules.into_iter().map(|(t, c)| (format!("schedule.{t}"), c)));
        pairs.extend(
            self.safeguards
                .into_iter()
                .map(|s| (format!("safeguard.{}.{}", s.type_name, s.limit), s.percent.to_string())),
        );
        pairs.extend(self.read_settings);
        Ok(pairs)
    }
}

fn is_read_key(k: &str) -> bool {
    k == "strictness" || k.starts_with("strictness.") || k.starts_with("delimiter.")
}

/// Change settings in one transaction; a refused change changes nothing
#[utoipa::path(patch, path = "/api/v1/tenants/{tenant}/settings", operation_id = "changeSettings", security(("bearer" = ["write"])), params(TenantParam),
    request_body = SettingsBody,
    responses((status = 200, description = "OK", body = SettingsView), Refused))]
pub(crate) async fn change_settings(
    State(web): State<Web>,
    caller: Caller,
    ApiPath(name): ApiPath<TenantName>,
    bytes: axum::body::Bytes,
) -> ApiResult<SettingsView> {
    caller.may_write()?;
    caller.may(&name)?;
    let body: SettingsBody = body(&bytes)?;
    // Named as this body names it (the change itself speaks `KEY=VALUE`).
    let refused = |e: sluice_core::SettingsError| {
        let field = match e.setting.as_str() {
            "notify.email" => "notify_emails".to_owned(),
            "notify.webhook" => "webhook_url".to_owned(),
            "notify.webhook_secret" => "webhook_secret".to_owned(),
            k if k.starts_with("trigger.") => format!("type_triggers.{}", &k["trigger.".len()..]),
            k if k.starts_with("schedule.") => format!("type_schedules.{}", &k["schedule.".len()..]),
            "blackout" => "blackouts".to_owned(),
            k if k.starts_with("safeguard.") => format!("safeguards ({})", &k["safeguard.".len()..]),
            k if is_read_key(k) => format!("read_settings.{k}"),
            k => k.to_owned(),
        };
        bad_request(e.code(), format!("{field}: {}", e.reason))
    };
    let mut change = sluice_core::SettingsChange::default();
    let cx = sluice_core::SettingsContext {
        types: &web.ingest.types,
        allow_private_webhooks: web.allow_private_webhooks,
    };
    let pairs = body.pairs()?;
    let target = pairs.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(", ");
    for (key, value) in &pairs {
        if let Err(e) = change.set(key, value, cx) {
            return audited(&web, &caller, Some(&name), action::TENANT_SETTINGS, target, Err(refused(e)))
                .await;
        }
    }
    let actor = caller.actor();
    blocking(move || {
        let store = &web.ingest.store;
        let before = store.tenant(&name)?.map(|t| crate::audit::settings_of(&t));
        let changed = store.change_settings(&name, &change);
        let did = crate::audit::Did {
            before,
            after: changed.as_ref().ok().map(crate::audit::settings_of),
            ..crate::audit::Did::new(Some(&name), action::TENANT_SETTINGS, target, changed.is_ok())
        };
        crate::audit::record(&web, &actor, did);
        match changed {
            Ok(t) => Ok(Json((&t).into())),
            Err(sluice_store::StoreError::Refused(e)) => Err(refused(e)),
            Err(e) => Err(e.into()),
        }
    })
    .await
}

/// An export to make now, as `sluice export` makes it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportBody {
    /// A CSV import type of the tenant's (`students`).
    #[serde(rename = "type")]
    type_name: String,
    /// csv (the default) or xlsx.
    #[serde(default)]
    format: Option<String>,
    /// The columns to write, in this order (default: all of the type's); names or aliases,
    /// any case.
    #[serde(default)]
    columns: Vec<String>,
    /// Only the records whose column holds the value (all must hold).
    #[serde(default, rename = "where")]
    filters: std::collections::BTreeMap<String, String>,
    /// CSV: start with a UTF-8 byte order mark.
    #[serde(default)]
    bom: bool,
}

/// Make an export now: the tenant's records of a type into its /exports, replaced whole
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/exports", operation_id = "exportRecords", security(("bearer" = ["write"])), params(TenantParam),
    request_body = ExportBody,
    responses((status = 200, description = "OK", body = ExportDone), Refused))]
pub(crate) async fn export(
    State(web): State<Web>,
    caller: Caller,
    ApiPath(name): ApiPath<TenantName>,
    bytes: axum::body::Bytes,
) -> ApiResult<ExportDone> {
    caller.may_write()?;
    caller.may(&name)?;
    let body: ExportBody = body(&bytes)?;
    caller.may_type(&body.type_name)?;
    let format = body.format.clone().unwrap_or_else(|| "csv".to_owned());
    let (w, tenant, target) = (web.clone(), name.to_string(), body.type_name.clone());
    let answer = blocking(move || {
        let filters: Vec<String> = body.filters.iter().map(|(c, v)| format!("{c}={v}")).collect();
        let asked = crate::ExportAsked {
            type_name: &body.type_name,
            format: &format,
            columns: &body.columns,
            filters: &filters,
            bom: body.bom,
        };
        match crate::export_for(&web, &name, asked) {
            Ok((done, type_name)) => Ok(Json(ExportDone {
                type_name,
                format: if format == "xlsx" { "xlsx" } else { "csv" },
                path: done.path,
                rows: done.written.rows,
                bytes: done.written.bytes,
            })),
            Err(crate::ExportRefused::NotTheirs) => {
                Err(ApiError::not_found("such import type for this tenant"))
            }
            Err(crate::ExportRefused::Bad(why)) => Err(bad_request("bad_export", why)),
            Err(crate::ExportRefused::Failed(why)) => Err(ApiError::internal(why)),
        }
    })
    .await;
    audited(&w, &caller, Some(&tenant), action::EXPORT_WRITE, target, answer).await
}

fn bad_request(code: &'static str, message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

/// The tenant and saved export in the path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // describes the path; handlers read it with `ApiPath`
struct SavedExportParams {
    /// The tenant's name.
    tenant: String,
    /// The saved export's name (letters, digits, `-`, `_`, `.`; any case finds it).
    name: String,
}

/// A tenant's saved exports
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/exports", operation_id = "listSavedExports", params(TenantParam),
    responses((status = 200, description = "OK", body = SavedExportList), Refused))]
pub(crate) async fn saved_exports(
    State(web): State<Web>,
    caller: Caller,
    ApiPath(name): ApiPath<TenantName>,
) -> ApiResult<SavedExportList> {
    caller.may(&name)?;
    blocking(move || {
        let list = web.ingest.store.saved_exports(&name)?;
        // A key limited to some types lists their exports only.
        let exports =
            list.iter().filter(|e| caller.3.covers(&e.type_name)).map(SavedExportView::from).collect();
        Ok(Json(SavedExportList { exports }))
    })
    .await
}

/// The tenant's saved export of that name, if the caller's key reaches its type (403 if not,
/// 404 if there is none).
fn reachable_export(
    web: &Web,
    caller: &Caller,
    tenant: &str,
    name: &ExportName,
) -> Result<SavedExport, ApiError> {
    let saved = web
        .ingest
        .store
        .saved_export(tenant, name)?
        .ok_or_else(|| ApiError::not_found("such saved export"))?;
    caller.may_type(&saved.type_name)?;
    Ok(saved)
}

/// One saved export
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/exports/{name}", operation_id = "getSavedExport",
    params(SavedExportParams),
    responses((status = 200, description = "OK", body = SavedExportView), Refused))]
pub(crate) async fn saved_export(
    State(web): State<Web>,
    caller: Caller,
    ApiPath((tenant, name)): ApiPath<(TenantName, ExportName)>,
) -> ApiResult<SavedExportView> {
    caller.may(&tenant)?;
    blocking(move || Ok(Json((&reachable_export(&web, &caller, &tenant, &name)?).into()))).await
}

/// A saved export as it is to be: what it writes and when it runs by itself.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SavedExportBody {
    /// A CSV import type of the tenant's (`students`).
    #[serde(rename = "type")]
    type_name: String,
    /// csv (the default) or xlsx.
    #[serde(default)]
    format: Option<String>,
    /// The columns to write, in this order (default: all of the type's).
    #[serde(default)]
    columns: Vec<String>,
    /// Only the records whose column holds the value (all must hold).
    #[serde(default, rename = "where")]
    filters: std::collections::BTreeMap<String, String>,
    /// CSV: start with a UTF-8 byte order mark.
    #[serde(default)]
    bom: bool,
    /// `on_demand` (the default), `after_import`, or a cron schedule read in the tenant's time
    /// zone (`0 6 * * 1-5`).
    #[serde(default)]
    when: Option<String>,
    /// A connector of the tenant's (its own SFTP server) each run pushes the file to, besides
    /// /exports.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    to: Option<ConnectorName>,
    /// With `to`: false sends the file to the connector alone, not kept in /exports (default
    /// true).
    #[serde(default)]
    in_exports: Option<bool>,
}

/// Save an export by name (replacing one of that name): it writes /exports/NAME.csv or .xlsx
#[utoipa::path(put, path = "/api/v1/tenants/{tenant}/exports/{name}", operation_id = "saveExport", security(("bearer" = ["write"])),
    params(SavedExportParams), request_body = SavedExportBody,
    responses((status = 200, description = "OK", body = SavedExportView), Refused))]
pub(crate) async fn save_export(
    State(web): State<Web>,
    caller: Caller,
    ApiPath((tenant, name)): ApiPath<(TenantName, ExportName)>,
    bytes: axum::body::Bytes,
) -> ApiResult<SavedExportView> {
    caller.may_write()?;
    caller.may(&tenant)?;
    let body: SavedExportBody = body(&bytes)?;
    caller.may_type(&body.type_name)?;
    let format = match body.format.as_deref() {
        None => ExportFormat::Csv,
        Some(f) => ExportFormat::parse(f)
            .ok_or_else(|| bad_request("bad_export", format!("format {f:?} is csv, xlsx or photos")))?,
    };
    let when = ExportWhen::parse(body.when.as_deref().unwrap_or("on_demand"))
        .map_err(|e| bad_request("bad_export", format!("when: {e}; or on_demand, after_import")))?;
    let (w, c, tenant_name, target) = (web.clone(), caller.clone(), tenant.to_string(), name.to_string());
    let answer = blocking(move || {
        let t = web.ingest.store.require_tenant(&tenant)?;
        // Replacing an export of a type the key does not reach is refused like reaching it.
        if web.ingest.store.saved_export(&tenant, &name)?.is_some() {
            reachable_export(&web, &c, &tenant, &name)?;
        }
        if !web.ingest.tenant_types(&t).iter().any(|ty| ty == &body.type_name) {
            return Err(ApiError::not_found("such import type for this tenant"));
        }
        let asked = SavedExport {
            name,
            type_name: body.type_name,
            format,
            columns: body.columns,
            filters: body.filters.iter().map(|(c, v)| format!("{c}={v}")).collect(),
            bom: body.bom,
            when,
            push_to: body.to,
            in_exports: body.in_exports.unwrap_or(true),
        };
        let saved = sluice_export::saved::checked(&web.ingest.types, &t, asked)
            .map_err(|e| bad_request("bad_export", e.to_string()))?;
        web.ingest.store.save_export(&tenant, &saved, true)?;
        // As stored: a name differing only in case is the same export, spelled as first saved.
        let stored = web.ingest.store.saved_export(&tenant, &saved.name)?.unwrap_or(saved);
        Ok(Json((&stored).into()))
    })
    .await;
    audited(&w, &caller, Some(&tenant_name), action::EXPORT_SAVE, target, answer).await
}

/// Remove a saved export (its last file in /exports and its run log stay)
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant}/exports/{name}", operation_id = "removeSavedExport", security(("bearer" = ["write"])),
    params(SavedExportParams),
    responses((status = 200, description = "OK", body = SavedExportView), Refused))]
pub(crate) async fn remove_saved_export(
    State(web): State<Web>,
    caller: Caller,
    ApiPath((tenant, name)): ApiPath<(TenantName, ExportName)>,
) -> ApiResult<SavedExportView> {
    caller.may_write()?;
    caller.may(&tenant)?;
    let (w, c, tenant_name, target) = (web.clone(), caller.clone(), tenant.to_string(), name.to_string());
    let answer = blocking(move || {
        let saved = reachable_export(&web, &c, &tenant, &name)?;
        web.ingest.store.remove_saved_export(&tenant, &saved.name)?;
        Ok(Json((&saved).into()))
    })
    .await;
    audited(&w, &caller, Some(&tenant_name), action::EXPORT_REMOVE, target, answer).await
}

/// Run a saved export now; the run is logged. A run that fails wrote nothing (the last file
/// stays) and is answered 500 with its log's reason
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/exports/{name}/run", operation_id = "runSavedExport", security(("bearer" = ["write"])),
    params(SavedExportParams),
    responses((status = 200, description = "OK: written", body = ExportRunView),
        (status = 409, description = "The export is running now", body = ErrorBody),
        (status = 503, description = "As many exports as sluice runs at once are running", body = ErrorBody),
        (status = 500, description = "The run failed (logged, with why); the last file stays", body = ErrorBody),
        Refused))]
pub(crate) async fn run_saved_export(
    State(web): State<Web>,
    caller: Caller,
    ApiPath((tenant, name)): ApiPath<(TenantName, ExportName)>,
) -> ApiResult<ExportRunView> {
    caller.may_write()?;
    caller.may(&tenant)?;
    // Taken before any thread is: a run asked for again while it runs, or while every slot is
    // busy, is answered at once.
    let slot = web.run_slots.try_take(&tenant, &name).map_err(|busy| match busy {
        sluice_export::saved::Busy::Running => ApiError::new(
            StatusCode::CONFLICT,
            "export_running",
            format!("export {name} is running now; its run log shows when it ends"),
        ),
        sluice_export::saved::Busy::Full => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "as many exports as sluice runs at once are running; try again in a moment",
        ),
    })?;
    let (w, c, tenant_name, target) = (web.clone(), caller.clone(), tenant.to_string(), name.to_string());
    let answer = blocking(move || {
        let _slot = slot;
        let store = &*web.ingest.store;
        let saved = reachable_export(&web, &c, &tenant, &name)?;
        let ran = web.export_runner().run(store, &tenant, &saved, RunCause::OnDemand)?;
        match &ran.outcome {
            RunOutcome::Failed(why) => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "export_failed",
                format!("run {} of export {} failed: {why}", ran.id, saved.name),
            )),
            RunOutcome::Written { .. } => {
                let run = store.export_run(ran.id)?.ok_or_else(|| ApiError::internal("the run's log"))?;
                Ok(Json((&run).into()))
            }
        }
    })
    .await;
    audited(&w, &caller, Some(&tenant_name), action::EXPORT_RUN, target, answer).await
}

/// The runs of a saved export, newest first
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/exports/{name}/runs", operation_id = "listExportRuns",
    params(SavedExportParams, Paging),
    responses((status = 200, description = "OK", body = ExportRunList), Refused))]
pub(crate) async fn export_runs(
    State(web): State<Web>,
    caller: Caller,
    ApiPath((tenant, name)): ApiPath<(TenantName, ExportName)>,
    ApiQuery(paging): ApiQuery<Paging>,
) -> ApiResult<ExportRunList> {
    caller.may(&tenant)?;
    let limit = paging.limit(50)?;
    blocking(move || {
        let saved = reachable_export(&web, &caller, &tenant, &name)?;
        let runs = web.ingest.store.export_runs(&tenant, Some(&saved.name), limit)?;
        Ok(Json(ExportRunList { runs: runs.iter().map(ExportRunView::from).collect() }))
    })
    .await
}
