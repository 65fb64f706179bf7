//! The viewer's own account: who it is, and changing its password (the current one asked
//! first; every session of the account ends, this one included, and the change is audited).

use super::layout::{csrf_field, notice, page};
use super::{Failed, NoticeQuery, Viewer, back_to, blocking};
use crate::Web;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use sluice_core::audit::action;

pub async fn account_page(State(web): State<Web>, viewer: Viewer, Query(q): Query<NoticeQuery>) -> Response {
    let factor = super::second_factor::of(&web, viewer.account.id).await;
    let required = web.second_factor.requires(&viewer.account);
    let min = sluice_core::PasswordHash::MIN_CHOSEN_CHARS;
    let a = &viewer.account;
    let body = html! {
        h1 { "Your account" }
        (notice(&viewer, &q))
        div.card {
            p { strong { (a.email) } " · " (a.role.as_str()) @if let Some(t) = &a.tenant { " of " (t) } }
        }
        div.card {
            h2 { "Change your password" }
            form method="post" action="/account/password" {
                (csrf_field(&viewer))
                p { label { "Current password" br; input name="current" type="password" autocomplete="current-password" required; } }
                p { label {
                    "New password (at least " (min) " characters)" br;
                    input name="new" type="password" autocomplete="new-password" minlength=(min) required;
                } }
                p { button { "Change password" } }
                p { small { "Every session of this account ends: log in again with the new password." } }
            }
        }
        (super::second_factor::section(&viewer, &factor, required))
    };
    page("Your account", Some(&viewer), body).into_response()
}

#[derive(Deserialize)]
pub struct PasswordChange {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
}

pub async fn change_password(
    State(web): State<Web>,
    viewer: Viewer,
    Form(form): Form<PasswordChange>,
) -> Response {
    if let Some(refused) = viewer.refuse_without_csrf(&form.csrf) {
        return refused;
    }
    // argon2id twice (the check and the new hash): as for logins, a few at a time.
    let Ok(_slot) = web.password_checks.clone().try_acquire_owned() else {
        return back_to(&viewer, "/account", "Not changed: busy; try again in a moment.");
    };
    // The current password is guessed here no faster than at the login.
    let service = sluice_defender::Service::Dashboard;
    if let Err(refusal) = web.defender.login_attempt(viewer.ip, service, &viewer.account.email) {
        return back_to(&viewer, "/account", &format!("Not changed: {refusal}"));
    }
    let (w, email, ip) = (web.clone(), viewer.account.email.clone(), viewer.ip);
    let done = blocking(move || {
        let store = &w.ingest.store;
        let account = store.account_by_email(&email)?.ok_or_else(|| Failed::said("the account is gone"))?;
        let stored = sluice_core::PasswordHash::from_stored(account.password_hash).map_err(Failed::said)?;
        if !stored.verify(&form.current) {
            let _ = w.defender.login_failed(ip, service, &email, true);
            return Err(Failed::said("the current password is not right"));
        }
        let new = sluice_core::PasswordHash::choose(&form.new).map_err(Failed::said)?;
        store.set_account_password(&email, new.as_phc())?;
        store.end_sessions_of(&email)?;
        Ok(())
    })
    .await;
    let tenant = viewer.account.tenant.clone();
    let did = crate::audit::Did::new(
        tenant.as_deref(),
        action::USER_PASSWORD,
        viewer.account.email.clone(),
        done.is_ok(),
    );
    crate::audit::record_off(&web, viewer.actor(), did).await;
    match done {
        Ok(()) => {
            let cookie = "sluice_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0";
            ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
        }
        Err(Failed::Said(why)) => back_to(&viewer, "/account", &format!("Not changed: {why}")),
        Err(Failed::Interrupted) => axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}
