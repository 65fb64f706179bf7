//! A tenant's API keys: owners (and users granted it) make and revoke them here, as the
//! operator does with `sluice apikey`. A new key is shown once, on the answer to the form
//! (never in a URL), and only its SHA-256 is kept.

use super::layout::{csrf_field, not_found, notice, page};
use super::{ManagedForm, NoticeQuery, TenantPath, Viewer, back_to, blocking, managing, reported, when};
use crate::Web;
use crate::audit::Did;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;
use sluice_core::audit::action;

pub async fn api_keys_page(
    State(web): State<Web>,
    viewer: Viewer,
    TenantPath(tenant): TenantPath,
    Query(q): Query<NoticeQuery>,
) -> Response {
    if let Some(refused) = managing(&viewer, &tenant) {
        return refused;
    }
    let store = web.ingest.store.clone();
    let name = tenant.clone();
    let Ok(keys) = blocking(move || Ok(store.api_keys(Some(name.as_str()))?)).await else {
        return not_found(&viewer);
    };
    let body = html! {
        h1 { "API keys of " (tenant) }
        (notice(&viewer, &q))
        div.card {
            p {
                "A key acts for this tenant on the REST API (" code { "/api/v1" } ", "
                code { "Authorization: Bearer KEY" } "): imports, errors, records, sync, approvals, SFTP keys and settings."
            }
            div.wrap { table {
                tr { th { "Name" } th { "Key" } th { "May" } th { "Made" } th {} }
                @for k in &keys {
                    tr {
                        td { (k.name) }
                        td { code { (k.prefix) "…" } }
                        td { (k.scope.access()) @if !k.scope.types.is_empty() { " (" (k.scope.types.join(", ")) ")" } }
                        td { (when(k.created_ms)) }
                        td {
                            @match k.revoked_ms {
                                Some(at) => { "revoked " (when(at)) },
                                None => {
                                    form.inline method="post" action={ "/t/" (tenant) "/api-keys/revoke" } {
                                        (csrf_field(&viewer))
                                        input type="hidden" name="id" value=(k.id);
                                        button.danger { "Revoke" }
                                    }
                                },
                            }
                        }
                    }
                }
            } }
            form method="post" action={ "/t/" (tenant) "/api-keys" } {
                (csrf_field(&viewer))
                p { label {
                    "What the key is for" br;
                    input name="name" maxlength="64" required placeholder="SIS nightly job";
                } }
                p { label { "It may" br; select name="access" {
                    option value="write" { "read and change (imports, settings, keys, exports)" }
                    option value="read" { "only read" }
                } } }
                p { button { "Make a key" } }
            }
        }
    };
    page("API keys", Some(&viewer), body).into_response()
}

#[derive(Deserialize)]
pub struct ApiKeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    id: i64,
    /// `read` makes a read-only key; anything else (or nothing) a key that may change.
    #[serde(default)]
    access: String,
}

posted!(ApiKeyForm);

pub async fn add_api_key(
    State(web): State<Web>,
    ManagedForm { viewer, tenant, form }: ManagedForm<ApiKeyForm>,
) -> Response {
    let here = format!("/t/{tenant}/api-keys");
    let key_name = form.name.trim().to_owned();
    if key_name.is_empty() || key_name.chars().count() > 64 || key_name.chars().any(char::is_control) {
        return back_to(&viewer, &here, "Not made: name the key (1 to 64 characters), e.g. SIS nightly job.");
    }
    let Ok((token, prefix, hash)) = crate::keys::generate() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let store = web.ingest.store.clone();
    let scope = sluice_store::KeyScope { write: form.access != "read", types: Vec::new() };
    let (name, label) = (tenant.clone(), key_name.clone());
    let made =
        blocking(move || Ok(store.add_api_key(Some(name.as_str()), &label, &prefix, &hash, &scope)?)).await;
    let shown = if key_name.is_empty() { "(unnamed)".to_owned() } else { key_name.clone() };
    let did = Did::new(Some(tenant.as_str()), action::API_KEY_ADD, shown, made.is_ok());
    crate::audit::record_off(&web, viewer.actor(), did).await;
    let Ok(_) = made else { return back_to(&viewer, &here, "Not made: the key could not be stored.") };
    tracing::info!(tenant = tenant.as_str(), by = viewer.account.email, "API key made on the dashboard");
    let body = html! {
        h1 { "API key made" }
        div.card {
            p {
                "The key " strong { (key_name) } " for " (tenant) ". Copy it now: it is not shown again \
                 (sluice keeps only a hash of it)."
            }
            p { code { (token) } }
            p { a href={ "/t/" (tenant) "/api-keys" } { "Back to the API keys" } }
        }
    };
    page("API key made", Some(&viewer), body).into_response()
}

pub async fn revoke_api_key(
    State(web): State<Web>,
    ManagedForm { viewer, tenant, form }: ManagedForm<ApiKeyForm>,
) -> Response {
    let store = web.ingest.store.clone();
    let (name, id) = (tenant.clone(), form.id);
    // Only a key of this very tenant.
    let done = blocking(move || Ok(store.revoke_api_key(id, Some(name.as_str()))?)).await;
    let did =
        Did::new(Some(tenant.as_str()), action::API_KEY_REVOKE, format!("API key {}", form.id), done.is_ok());
    crate::audit::record_off(&web, viewer.actor(), did).await;
    let here = format!("/t/{tenant}/api-keys");
    reported(&viewer, done, &here, "Not revoked", |()| format!("API key {id} revoked."))
}
