//! A tenant's team: its accounts, and owners letting users manage credentials and settings.

use super::layout::{csrf_field, not_found, notice, page, status_page};
use super::{NoticeQuery, TenantPath, Viewer, back_to, blocking};
use crate::Web;
use crate::audit::Did;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;
use sluice_core::TenantName;
use sluice_core::audit::action;
use sluice_store::Role;
use sluice_store::roles::*;

/// Owners (and the operator) decide which of the tenant's users may manage credentials and
/// settings.
fn grants(viewer: &Viewer, tenant: &TenantName) -> bool {
    viewer.may(tenant.as_str()) && matches!(viewer.account.role, Role::Admin | Role::Owner)
}

pub async fn team_page(
    State(web): State<Web>,
    viewer: Viewer,
    TenantPath(tenant): TenantPath,
    Query(q): Query<NoticeQuery>,
) -> Response {
    if !viewer.may(tenant.as_str()) {
        return not_found(&viewer);
    }
    let store = web.ingest.store.clone();
    let name = tenant.clone();
    let Ok(accounts) = blocking(move || Ok(store.accounts(Some(name.as_str()))?)).await else {
        return not_found(&viewer);
    };
    let may_grant = grants(&viewer, &tenant);
    let body = html! {
        h1 { "Team of " (tenant) }
        (notice(&viewer, &q))
        div.card {
            p { "Owners, and users an owner lets, manage SFTP credentials and import settings." }
            div.wrap { table {
                tr { th { "Account" } th { "Role" } th { "May" } th {} }
                @for a in &accounts {
                    tr {
                        td { (a.email) }
                        td { (a.role.as_str()) }
                        td { (if a.manages { "manages credentials and settings" } else { "sees imports" }) }
                        td {
                            @if may_grant && a.role == Role::User {
                                @let (value, label) = if a.manages { ("0", "Take back") } else { ("1", "Let manage") };
                                form.inline method="post" action={ "/t/" (tenant) "/team" } {
                                    (csrf_field(&viewer))
                                    input type="hidden" name="email" value=(a.email);
                                    input type="hidden" name="manages" value=(value);
                                    button { (label) }
                                }
                            }
                        }
                    }
                }
            } }
        }
    };
    page("Team", Some(&viewer), body).into_response()
}

#[derive(Deserialize)]
pub struct GrantForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    manages: String,
}

pub async fn grant(
    State(web): State<Web>,
    viewer: Viewer,
    TenantPath(tenant): TenantPath,
    Form(form): Form<GrantForm>,
) -> Response {
    if !viewer.may(tenant.as_str()) {
        return not_found(&viewer);
    }
    if !grants(&viewer, &tenant) {
        let body = html! {
            h1 { "Not allowed" }
            p { "Only an owner lets a user manage credentials and settings." }
        };
        return status_page(StatusCode::FORBIDDEN, "Not allowed", &viewer, body);
    }
    if let Some(refused) = viewer.refuse_without_csrf(&form.csrf) {
        return refused;
    }
    let store = web.ingest.store.clone();
    let name = tenant.clone();
    let (email, grants) = (form.email.clone(), form.manages == "1");
    let done = blocking(move || {
        // Only a user of this very tenant.
        let target = store.account_by_email(&form.email)?;
        match target {
            Some(a) if a.tenant.as_deref() == Some(name.as_str()) && a.role == Role::User => {
                store.set_account_manages(&a.email, form.manages == "1")?;
                Ok(true)
            }
            _ => Ok(false),
        }
    })
    .await;
    let here = format!("/t/{tenant}/team");
    let verb = if grants { action::USER_GRANT } else { action::USER_UNGRANT };
    let did = Did::new(Some(tenant.as_str()), verb, email, matches!(done, Ok(true)));
    crate::audit::record_off(&web, viewer.actor(), did).await;
    match done {
        Ok(true) => back_to(&viewer, &here, "Saved."),
        Ok(false) => back_to(&viewer, &here, "Not saved: no such user of this tenant."),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}
