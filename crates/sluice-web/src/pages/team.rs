//! A tenant's team: its accounts, and owners letting users manage credentials and settings.

use super::layout::{csrf_field, not_found, notice, page, status_page};
use super::{Failed, NoticeQuery, TenantPath, Viewer, back_to, blocking};
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
                            @if may_grant && a.email != viewer.account.email {
                                " "
                                @let (role, label) = if a.role == Role::Owner { ("user", "Make a user") } else { ("owner", "Make an owner") };
                                form.inline method="post" action={ "/t/" (tenant) "/team/role" } {
                                    (csrf_field(&viewer))
                                    input type="hidden" name="email" value=(a.email);
                                    input type="hidden" name="role" value=(role);
                                    button { (label) }
                                }
                                " "
                                form.inline method="post" action={ "/t/" (tenant) "/team/remove" } {
                                    (csrf_field(&viewer))
                                    input type="hidden" name="email" value=(a.email);
                                    button.danger { "Remove" }
                                }
                            }
                        }
                    }
                }
            } }
        }
        @if may_grant {
            div.card {
                h2 { "Add someone" }
                form method="post" action={ "/t/" (tenant) "/team/add" } {
                    (csrf_field(&viewer))
                    p { label { "Email" br; input name="email" type="email" required; } }
                    p { label { "Role" br; select name="role" {
                        option value="user" { "user (sees imports; an owner may let them manage)" }
                        option value="owner" { "owner (manages everything of the tenant)" }
                    } } }
                    p { label {
                        "First password (at least " (sluice_core::PasswordHash::MIN_CHOSEN_CHARS) " characters; they change it on their account page)" br;
                        input name="password" type="password" autocomplete="new-password" required;
                    } }
                    p { button { "Add" } }
                }
            }
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

#[derive(Deserialize)]
pub struct MemberForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    password: String,
}

/// An owner (or the operator) adds an account to the tenant.
pub async fn add_member(
    State(web): State<Web>,
    viewer: Viewer,
    TenantPath(tenant): TenantPath,
    Form(form): Form<MemberForm>,
) -> Response {
    if let Some(refused) = owner_only(&viewer, &tenant, &form.csrf) {
        return refused;
    }
    let here = format!("/t/{tenant}/team");
    let email = form.email.trim().to_lowercase();
    if email.is_empty()
        || email.contains(char::is_whitespace)
        || !email.contains('@')
        || email.chars().any(char::is_control)
    {
        return back_to(&viewer, &here, "Not added: give an email address.");
    }
    let role = if form.role == "owner" { Role::Owner } else { Role::User };
    let Ok(_slot) = web.password_checks.clone().try_acquire_owned() else {
        return back_to(&viewer, &here, "Not added: busy; try again in a moment.");
    };
    let (store, name, who) = (web.ingest.store.clone(), tenant.clone(), email.clone());
    let done = blocking(move || {
        if store.account_by_email(&who)?.is_some() {
            return Err(Failed::said("an account with this email exists"));
        }
        let hash = sluice_core::PasswordHash::choose(&form.password).map_err(Failed::said)?;
        store.add_account(Some(name.as_str()), &who, role, hash.as_phc())?;
        Ok(())
    })
    .await;
    let did = Did::new(
        Some(tenant.as_str()),
        action::USER_ADD,
        format!("{email} ({})", role.as_str()),
        done.is_ok(),
    );
    crate::audit::record_off(&web, viewer.actor(), did).await;
    super::reported(&viewer, done, &here, "Not added", |()| format!("{email} added."))
}

/// An owner (or the operator) removes an account of the tenant; its sessions end.
pub async fn remove_member(
    State(web): State<Web>,
    viewer: Viewer,
    TenantPath(tenant): TenantPath,
    Form(form): Form<MemberForm>,
) -> Response {
    if let Some(refused) = owner_only(&viewer, &tenant, &form.csrf) {
        return refused;
    }
    let here = format!("/t/{tenant}/team");
    let (store, name, who) = (web.ingest.store.clone(), tenant.clone(), form.email.clone());
    let done = blocking(move || {
        // Only an account of this very tenant.
        match store.account_by_email(&who)? {
            Some(a) if a.tenant.as_deref() == Some(name.as_str()) => Ok(store.remove_account(&a.email)?),
            _ => Err(Failed::said("no such account of this tenant")),
        }
    })
    .await;
    let did = Did::new(Some(tenant.as_str()), action::USER_REMOVE, form.email.clone(), done.is_ok());
    crate::audit::record_off(&web, viewer.actor(), did).await;
    super::reported(&viewer, done, &here, "Not removed", |()| {
        format!("{} removed; their sessions ended.", form.email)
    })
}

/// An owner (or the operator) makes another account of the tenant an owner or a user. Not
/// one's own: an owner cannot lock themselves out of managing the team by a click.
pub async fn change_role(
    State(web): State<Web>,
    viewer: Viewer,
    TenantPath(tenant): TenantPath,
    Form(form): Form<MemberForm>,
) -> Response {
    if let Some(refused) = owner_only(&viewer, &tenant, &form.csrf) {
        return refused;
    }
    let here = format!("/t/{tenant}/team");
    let role = match form.role.as_str() {
        "owner" => Role::Owner,
        "user" => Role::User,
        _ => return back_to(&viewer, &here, "Not changed: a role is owner or user"),
    };
    let (store, name, who, me) =
        (web.ingest.store.clone(), tenant.clone(), form.email.clone(), viewer.account.email.clone());
    let done = blocking(move || {
        if who.trim().eq_ignore_ascii_case(&me) {
            return Err(Failed::said("not your own role (another owner, or the operator, changes it)"));
        }
        match store.account_by_email(&who)? {
            Some(a) if a.tenant.as_deref() == Some(name.as_str()) => {
                Ok(store.set_account_role(&a.email, role)?)
            }
            _ => Err(Failed::said("no such account of this tenant")),
        }
    })
    .await;
    let target = format!("{} ({})", form.email, role.as_str());
    let did = Did::new(Some(tenant.as_str()), action::USER_ROLE, target, done.is_ok());
    crate::audit::record_off(&web, viewer.actor(), did).await;
    super::reported(&viewer, done, &here, "Not changed", |()| {
        format!(
            "{} is now {} of {tenant}.",
            form.email,
            if role == Role::Owner { "an owner" } else { "a user" }
        )
    })
}

/// Owners and the operator manage the team: anyone else is refused (and a form without this
/// session's token).
fn owner_only(viewer: &Viewer, tenant: &TenantName, csrf: &str) -> Option<Response> {
    if !viewer.may(tenant.as_str()) {
        return Some(not_found(viewer));
    }
    if !grants(viewer, tenant) {
        let body =
            html! { h1 { "Not allowed" } p { "Only an owner adds and removes the tenant's accounts." } };
        return Some(status_page(StatusCode::FORBIDDEN, "Not allowed", viewer, body));
    }
    viewer.refuse_without_csrf(csrf)
}
