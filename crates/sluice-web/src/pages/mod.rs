//! The dashboard: server-rendered pages that work without JavaScript and on a phone.
//!
//! Every page is a maud template (`html!`): a value from a tenant's files or the store is
//! escaped by construction when it is written, so a CSV cell can never run script in anyone's
//! browser. The only raw text is the constant style sheet. Every form carries the session's
//! CSRF token (`layout::csrf_field`), checked by one helper (`Viewer::refuse_without_csrf`);
//! a change to a tenant's credentials, keys or settings arrives as a `ManagedForm`, which makes
//! the manager check and the CSRF check before the handler runs.
//!
//! The rooms: `layout` (page shell, nav, badges, notices, the not-found and refusal pages),
//! `auth` (the `Viewer` extractor, sessions and cookies, login and logout with the defender's
//! limits), `imports` (all tenants, a tenant's overview and history, one import, its error
//! report and kept file, approve/discard, sync), `records` (records searched, one record with
//! its person and relationships, deleting one; people), `sftp` (keys and password), `settings`,
//! `team` and `api_keys`.

/// `Posted` for forms whose token is their `csrf` field.
macro_rules! posted {
    ($($form:ty),+) => {
        $(impl super::Posted for $form {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        })+
    };
}

mod account;
mod api_keys;
mod audit;
mod auth;
mod exports;
mod imports;
mod layout;
mod records;
mod reset;
mod second_factor;
mod settings;
mod sftp;
mod team;

use crate::Web;
use crate::blocking::Interrupted;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use sluice_core::TenantName;

pub use auth::Viewer;

pub fn routes() -> Router<Web> {
    Router::new()
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/reset", get(reset::ask_form).post(reset::ask))
        .route("/reset/{token}", get(reset::new_form).post(reset::set))
        .route("/account", get(account::account_page))
        .route("/account/password", post(account::change_password))
        .route("/login/code", get(second_factor::code_form).post(second_factor::code))
        .route("/account/second-factor", get(second_factor::enrol_page))
        .route("/account/second-factor/start", post(second_factor::start))
        .route("/account/second-factor/confirm", post(second_factor::confirm))
        .route("/account/second-factor/off", post(second_factor::off))
        .route("/account/second-factor/recovery-codes", post(second_factor::renew_codes))
        .route("/", get(imports::home))
        .route("/tenants/add", post(imports::add_tenant))
        .route("/tenants/enabled", post(imports::set_enabled))
        .route("/t/{tenant}", get(imports::overview))
        .route("/t/{tenant}/imports", get(imports::history))
        .route("/t/{tenant}/sync", post(imports::sync))
        .route("/t/{tenant}/export", post(exports::export_now))
        .route("/t/{tenant}/exports", get(exports::exports_page).post(exports::save_export))
        .route("/t/{tenant}/exports/run", post(exports::run_export))
        .route("/t/{tenant}/exports/remove", post(exports::remove_export))
        .route("/imports/{id}", get(imports::import_page))
        .route("/imports/{id}/errors.csv", get(imports::errors_csv))
        .route("/imports/{id}/file", get(imports::kept_file))
        .route("/imports/{id}/approve", post(imports::approve))
        .route("/imports/{id}/discard", post(imports::discard))
        .route("/imports/{id}/acknowledge", post(imports::acknowledge))
        .route("/t/{tenant}/records", get(records::types_page))
        .route("/t/{tenant}/records/{type}", get(records::records_page))
        .route("/t/{tenant}/records/{type}/{key}", get(records::record_page))
        .route("/t/{tenant}/records/{type}/{key}/photo", get(records::photo_image))
        .route(
            "/t/{tenant}/records/{type}/{key}/delete",
            get(records::delete_page).post(records::delete_record),
        )
        .route("/t/{tenant}/people", get(records::people_page))
        .route("/t/{tenant}/people/{id}", get(records::person_page))
        .route("/t/{tenant}/sftp", get(sftp::sftp_page))
        .route("/t/{tenant}/sftp/keys", post(sftp::add_key))
        .route("/t/{tenant}/sftp/keys/remove", post(sftp::remove_key))
        .route("/t/{tenant}/sftp/password", post(sftp::set_password))
        .route("/t/{tenant}/settings", get(settings::settings_page).post(settings::save_settings))
        .route("/t/{tenant}/team", get(team::team_page).post(team::grant))
        .route("/t/{tenant}/team/add", post(team::add_member))
        .route("/t/{tenant}/team/remove", post(team::remove_member))
        .route("/t/{tenant}/team/role", post(team::change_role))
        .route("/t/{tenant}/api-keys", get(api_keys::api_keys_page).post(api_keys::add_api_key))
        .route("/t/{tenant}/api-keys/revoke", post(api_keys::revoke_api_key))
        .route("/audit", get(audit::all))
        .route("/t/{tenant}/audit", get(audit::tenant))
}

/// The `{tenant}` of a path, parsed once at the edge: a handler gets a valid `TenantName`.
/// A malformed name is the not-found page (after the login check, as for any tenant the
/// viewer may not see).
pub struct TenantPath(pub TenantName);

impl FromRequestParts<Web> for TenantPath {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Web) -> Result<Self, Self::Rejection> {
        // (`TenantName` deserialises by parsing.)
        match Path::<TenantName>::from_request_parts(parts, web).await.ok() {
            Some(Path(name)) => Ok(TenantPath(name)),
            // Only on this rare path: who is asking, for the page's nav (or the login page).
            None => match Viewer::from_request_parts(parts, web).await {
                Ok(viewer) => Err(layout::not_found(&viewer)),
                Err(to_login) => Err(to_login),
            },
        }
    }
}

/// Why blocking work of a page did not give its answer: a reason to show the viewer (a
/// refused change), or work that never finished (a 503).
#[derive(Debug)]
pub(crate) enum Failed {
    Said(String),
    Interrupted,
}

impl Failed {
    fn said(e: impl std::fmt::Display) -> Self {
        Failed::Said(e.to_string())
    }
}

impl From<Interrupted> for Failed {
    fn from(e: Interrupted) -> Self {
        tracing::warn!("dashboard: {e}");
        Failed::Interrupted
    }
}

impl From<sluice_store::StoreError> for Failed {
    fn from(e: sluice_store::StoreError) -> Self {
        Failed::said(e)
    }
}

/// A page's store or import work, on the blocking pool (the one helper the API uses too).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Failed> + Send + 'static,
) -> Result<T, Failed> {
    crate::blocking::blocking(f).await
}

/// The notice a change left in the URL (see `back_to`).
#[derive(Deserialize)]
struct NoticeQuery {
    #[serde(default)]
    done: String,
    #[serde(default)]
    sig: String,
}

/// A posted form that carries nothing but the session's CSRF token.
#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// A form that carries the session's CSRF token.
trait Posted {
    fn csrf(&self) -> &str;
}

/// A form posted to a tenant's page by someone who manages the tenant, with this session's
/// CSRF token: the one check of every change to credentials, keys and settings. Anything else
/// is refused (not found, not allowed, or the CSRF refusal) before the handler runs.
pub struct ManagedForm<T> {
    pub viewer: Viewer,
    pub tenant: TenantName,
    pub form: T,
}

impl<T: serde::de::DeserializeOwned + Posted + Send> FromRequest<Web> for ManagedForm<T> {
    type Rejection = Response;

    async fn from_request(request: Request, web: &Web) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, web).await?;
        let TenantPath(tenant) = TenantPath::from_request_parts(&mut parts, web).await?;
        if let Some(refused) = managing(&viewer, &tenant) {
            return Err(refused);
        }
        let Form(form) = Form::<T>::from_request(Request::from_parts(parts, body), web)
            .await
            .map_err(IntoResponse::into_response)?;
        match viewer.refuse_without_csrf(form.csrf()) {
            Some(refused) => Err(refused),
            None => Ok(ManagedForm { viewer, tenant, form }),
        }
    }
}

/// Whether the viewer may manage `tenant`; the response to send if not.
fn managing(viewer: &Viewer, tenant: &TenantName) -> Option<Response> {
    if !viewer.may(tenant.as_str()) {
        return Some(layout::not_found(viewer));
    }
    (!viewer.manages(tenant.as_str())).then(|| layout::not_allowed(viewer, tenant))
}

/// Ends a change made off the async threads: back to `here` with what happened.
fn reported<T>(
    viewer: &Viewer,
    done: Result<T, Failed>,
    here: &str,
    failed: &str,
    success: impl FnOnce(T) -> String,
) -> Response {
    match done {
        Ok(v) => back_to(viewer, here, &success(v)),
        Err(Failed::Said(e)) => back_to(viewer, here, &format!("{failed}: {e}")),
        Err(Failed::Interrupted) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// Back to `path`, showing `notice` there. The notice travels in the URL, signed with the
/// session's secret: a link from elsewhere cannot put words of its own on a sluice page.
fn back_to(viewer: &Viewer, path: &str, notice: &str) -> Response {
    let encoded: String = notice
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    let sig = viewer.sign(notice);
    Redirect::to(&format!("{path}?done={encoded}&sig={sig}")).into_response()
}

/// A time as the dashboard shows it.
fn when(ms: i64) -> String {
    sluice_ingest::Timestamp::from_millisecond(ms)
        .map_or_else(|_| ms.to_string(), |t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
}
