//! A tenant's SFTP credentials: its public keys (added and removed) and its password.

use super::layout::{csrf_field, not_found, notice, page};
use super::{Failed, ManagedForm, NoticeQuery, TenantPath, Viewer, back_to, blocking, managing, reported};
use crate::Web;
use crate::audit::Did;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;
use sluice_core::audit::action;

pub async fn sftp_page(
    State(web): State<Web>,
    viewer: Viewer,
    TenantPath(tenant): TenantPath,
    Query(q): Query<NoticeQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Some(refused) = managing(&viewer, &tenant) {
        return refused;
    }
    let store = web.ingest.store.clone();
    let name = tenant.clone();
    let Ok((t, keys)) =
        blocking(move || Ok((store.require_tenant(name.as_str())?, store.keys(name.as_str())?))).await
    else {
        return not_found(&viewer);
    };
    let min = sluice_core::PasswordHash::MIN_CHOSEN_CHARS;
    // The host clients connect to: the listening address, or (listening on every address)
    // the host name this page was asked for under.
    let endpoint = web.sftp.as_ref().map(|e| {
        let host = if let Some(host) = &e.public_host {
            host.clone()
        } else if e.listen.ip().is_unspecified() {
            headers
                .get(axum::http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.parse::<axum::http::uri::Authority>().ok())
                .map(|a| a.host().to_owned())
                .unwrap_or_else(|| "this server's address".to_owned())
        } else {
            e.listen.ip().to_string()
        };
        (host, e.listen.port(), e)
    });
    let body = html! {
        h1 { "SFTP credentials of " (tenant) }
        (notice(&viewer, &q))
        @if let Some((host, port, e)) = &endpoint {
            div.card #connect {
                h2 { "Connecting" }
                table {
                    tr { th { "Host" } td { code { (host) } } }
                    tr { th { "Port" } td { code { (port) } } }
                    tr { th { "Login name" } td { code { (tenant) } } }
                    tr { th { "Host key" } td { code { (e.key_type) " " (e.fingerprint) } } }
                    tr { th { "Folders" } td { (t.layout.import_folders().iter().map(|f| format!("/{f}")).collect::<Vec<_>>().join(" ")) " (routing: " (t.routing.as_str()) ")" } }
                }
                p { "Check the host key your client shows on its first connection against the one above (psftp, WinSCP and FileZilla ask)." }
                p { "From a shell: " code { "sftp -P " (port) " " (tenant) "@" (host) } }
            }
        }
        div.card {
            h2 { "Public keys" }
            div.wrap { table {
                tr { th { "Algorithm" } th { "Fingerprint" } th { "Comment" } th {} }
                @for k in &keys {
                    tr {
                        td { (k.algorithm) }
                        td { code { (k.fingerprint) } }
                        td { (k.comment) }
                        td {
                            form.inline method="post" action={ "/t/" (tenant) "/sftp/keys/remove" } {
                                (csrf_field(&viewer))
                                input type="hidden" name="fingerprint" value=(k.fingerprint);
                                button.danger { "Remove" }
                            }
                        }
                    }
                }
            } }
            form method="post" action={ "/t/" (tenant) "/sftp/keys" } {
                (csrf_field(&viewer))
                p { label { "Add a key (one line of an OpenSSH .pub file)" br; textarea name="public_key" rows="3" style="width:100%" {} } }
                p { button { "Add key" } }
            }
        }
        div.card {
            h2 { "Password" }
            p { "The SFTP password is " (if t.password.is_some() { "set" } else { "not set" }) "." }
            form method="post" action={ "/t/" (tenant) "/sftp/password" } {
                (csrf_field(&viewer))
                p { label {
                    "New password (at least " (min) " characters)" br;
                    input name="password" type="password" autocomplete="new-password" minlength=(min) required;
                } }
                p { button { "Set password" } }
            }
        }
    };
    page("SFTP credentials", Some(&viewer), body).into_response()
}

#[derive(Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    public_key: String,
    #[serde(default)]
    fingerprint: String,
}

posted!(KeyForm, PasswordForm);

pub async fn add_key(
    State(web): State<Web>,
    ManagedForm { viewer, tenant, form }: ManagedForm<KeyForm>,
) -> Response {
    let here = format!("/t/{tenant}/sftp");
    let key = match (web.parse_key)(&form.public_key) {
        Ok(k) => k,
        Err(e) => return back_to(&viewer, &here, &format!("Not added: {e}")),
    };
    let store = web.ingest.store.clone();
    let name = tenant.clone();
    let done = blocking(move || {
        let t = store.require_tenant(name.as_str())?;
        store.add_key(&t.name, &key)?;
        Ok(key.fingerprint)
    })
    .await;
    let target = done.as_ref().map_or_else(|_| "a key".to_owned(), |fp| format!("key {fp}"));
    let did = Did::new(Some(tenant.as_str()), action::SSH_KEY_ADD, target, done.is_ok());
    crate::audit::record_off(&web, viewer.actor(), did).await;
    reported(&viewer, done, &here, "Not added", |fp| format!("Key {fp} added."))
}

pub async fn remove_key(
    State(web): State<Web>,
    ManagedForm { viewer, tenant, form }: ManagedForm<KeyForm>,
) -> Response {
    let store = web.ingest.store.clone();
    let name = tenant.clone();
    let fp = form.fingerprint.clone();
    let done = blocking(move || Ok(store.remove_key(name.as_str(), &fp)?)).await;
    let did = Did::new(
        Some(tenant.as_str()),
        action::SSH_KEY_REMOVE,
        format!("key {}", form.fingerprint),
        done.is_ok(),
    );
    crate::audit::record_off(&web, viewer.actor(), did).await;
    let here = format!("/t/{tenant}/sftp");
    reported(&viewer, done, &here, "Not removed", |()| format!("Key {} removed.", form.fingerprint))
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
}

pub async fn set_password(
    State(web): State<Web>,
    ManagedForm { viewer, tenant, form }: ManagedForm<PasswordForm>,
) -> Response {
    let here = format!("/t/{tenant}/sftp");
    // argon2id takes 19 MiB: as for logins, a few at a time.
    let Ok(_slot) = web.password_checks.clone().try_acquire_owned() else {
        return back_to(&viewer, &here, "Not set: busy; try again in a moment.");
    };
    let store = web.ingest.store.clone();
    let name = tenant.clone();
    let done = blocking(move || {
        let t = store.require_tenant(name.as_str())?;
        let hash = sluice_core::PasswordHash::choose(&form.password).map_err(Failed::said)?;
        Ok(store.set_password(&t.name, &hash)?)
    })
    .await;
    let did = Did::new(Some(tenant.as_str()), action::TENANT_PASSWORD, "SFTP password", done.is_ok());
    crate::audit::record_off(&web, viewer.actor(), did).await;
    reported(&viewer, done, &here, "Not set", |()| "Password set.".into())
}
