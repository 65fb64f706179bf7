//! Getting back in: a password reset by email. The link holds a random token the store keeps
//! only as its SHA-256; it works once, for 30 minutes. Asking answers the same whether or not
//! the address has an account, at once (the email is sent off the request), and counts
//! against the asking address like a failed login (the defender's limits). Every reset
//! asked for and used is audited. Links point at `[http] public_url`, never at the request's
//! Host (which would let anyone send a victim a link to their own site).

use super::layout::page;
use super::{Failed, blocking};
use crate::Web;
use axum::Form;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use sluice_core::audit::{Actor, ActorKind, action};
use sluice_defender::Service;

const LIFETIME_MS: i64 = 30 * 60 * 1000;

fn shell(body: maud::Markup) -> Response {
    page("Reset your password", None, body).into_response()
}

pub async fn ask_form(State(web): State<Web>) -> Response {
    if web.resets.is_none() {
        return shell(html! { div.card {
            h1 { "Reset your password" }
            p { "This server does not send password resets by email: ask your tenant's owner or the operator to set a new password." }
        } });
    }
    // A token in a cookie and in the form, as the login form has: another site cannot post
    // asks in a visitor's name (each counts against the visitor's address).
    let Ok((token, _)) = crate::keys::secret() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let page = shell(html! { div.card {
        h1 { "Reset your password" }
        form method="post" action="/reset" {
            input type="hidden" name="ask_token" value=(token);
            p { label { "Your email" br; input name="email" type="email" autocomplete="username" required; } }
            p { button { "Send me a link" } }
        }
    } });
    let secure = if web.secure_cookies { "; Secure" } else { "" };
    let cookie =
        format!("{ASK_COOKIE}={token}; Path=/reset; HttpOnly; SameSite=Strict; Max-Age=3600{secure}");
    ([(header::SET_COOKIE, cookie)], page).into_response()
}

const ASK_COOKIE: &str = "sluice_reset";

#[derive(Deserialize)]
pub struct AskForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    ask_token: String,
}

pub async fn ask(
    State(web): State<Web>,
    ConnectInfo(peer): ConnectInfo<crate::Peer>,
    headers: HeaderMap,
    Form(form): Form<AskForm>,
) -> Response {
    let Some(resets) = web.resets.clone() else { return Redirect::to("/reset").into_response() };
    let cookie = super::auth::cookie_value(&headers, ASK_COOKIE).unwrap_or_default();
    if cookie.is_empty() || !super::auth::same_secret(&cookie, &form.ask_token) {
        let body = html! { div.card { h1 { "Reset your password" } p { "The form was out of date: " a href="/reset" { "ask again" } "." } } };
        return (StatusCode::FORBIDDEN, shell(body)).into_response();
    }
    let email = form.email.trim().to_lowercase();
    if email.len() > 254 {
        return Redirect::to("/reset").into_response();
    }
    let client = crate::client::client_ip(peer.0.ip(), &headers, &web.trusted_proxies);
    // Limited like logins, on a count of its own (asks for an address never lock its account
    // out of logging in): a banned address, or an address asked for too often, gets the
    // refusal, which says so whatever the address (not whether it has an account). An
    // account has at most three live links besides: asking again sends no more email.
    let asked_for = format!("password reset:{email}");
    if let Err(refusal) = web.defender.login_attempt(client, Service::Dashboard, &asked_for) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            shell(html! { div.card { h1 { "Not now" } p { (refusal.to_string()) } } }),
        )
            .into_response();
    }
    let _ = web.defender.login_failed(client, Service::Dashboard, &asked_for, false);
    // The rest happens off the request: the answer comes at once, the same for everyone.
    let w = web.clone();
    tokio::task::spawn_blocking(move || {
        let Ok((token, hash)) = crate::keys::secret() else { return };
        let account = match w.ingest.store.start_password_reset(&email, &hash, LIFETIME_MS) {
            Ok(a) => a,
            Err(e) => return tracing::warn!("password reset: {e}"),
        };
        let Some(account) = account else { return };
        let link = format!("{}/reset/{token}", resets.public_url);
        let body = format!(
            "Someone (we hope you) asked to reset the sluice password of {email}.\r\n\r\nChoose a new one here within 30 minutes (the link works once):\r\n\r\n{link}\r\n\r\nIf you did not ask, ignore this email: your password stays as it is.\r\n"
        );
        let sent = (resets.send)(&email, "[sluice] Reset your password", &body);
        if let Err(e) = &sent {
            tracing::warn!("password reset email: {e}");
        }
        // Whoever asked is not logged in: anyone may ask for any address. The entry says
        // which account was asked for, not that its owner asked.
        let actor = Actor {
            kind: ActorKind::Account,
            name: "(not logged in)".to_owned(),
            source: client.to_string(),
        };
        let did = crate::audit::Did::new(
            account.tenant.as_deref(),
            action::PASSWORD_RESET_ASKED,
            email.clone(),
            sent.is_ok(),
        );
        crate::audit::record(&w, &actor, did);
    });
    shell(html! { div.card {
        h1 { "Check your email" }
        p { "If an account has this address, we have sent it a link to choose a new password. It works once, for 30 minutes." }
        p { a href="/login" { "Back to logging in" } }
    } })
}

pub async fn new_form(Path(token): Path<String>) -> Response {
    let min = sluice_core::PasswordHash::MIN_CHOSEN_CHARS;
    shell(html! { div.card {
        h1 { "Choose a new password" }
        form method="post" action={ "/reset/" (token) } {
            p { label {
                "New password (at least " (min) " characters)" br;
                input name="password" type="password" autocomplete="new-password" minlength=(min) required;
            } }
            p { button { "Set it" } }
        }
    } })
}

#[derive(Deserialize)]
pub struct NewForm {
    #[serde(default)]
    password: String,
}

pub async fn set(
    State(web): State<Web>,
    ConnectInfo(peer): ConnectInfo<crate::Peer>,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(form): Form<NewForm>,
) -> Response {
    let client = crate::client::client_ip(peer.0.ip(), &headers, &web.trusted_proxies);
    // A banned address is refused first; a link is looked up before any password is hashed,
    // and hashing takes one of the few password-check slots, off the async threads: guessed
    // links cost the server a lookup each.
    let guessing = format!("reset link:{client}");
    if let Err(refusal) = web.defender.login_attempt(client, Service::Dashboard, &guessing) {
        let body = html! { div.card { h1 { "Not now" } p { (refusal.to_string()) } } };
        return (StatusCode::TOO_MANY_REQUESTS, shell(body)).into_response();
    }
    let Ok(_slot) = web.password_checks.clone().try_acquire_owned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "busy; try again in a moment").into_response();
    };
    let (w, token_hash) = (web.clone(), crate::keys::hash(&token));
    let done = blocking(move || {
        if !w.ingest.store.password_reset_is_live(&token_hash)? {
            return Ok(None);
        }
        let hash = sluice_core::PasswordHash::choose(&form.password).map_err(Failed::said)?;
        Ok(w.ingest.store.finish_password_reset(&token_hash, hash.as_phc())?)
    })
    .await;
    match done {
        Ok(Some(account)) => {
            let actor =
                Actor { kind: ActorKind::Account, name: account.email.clone(), source: client.to_string() };
            let did = crate::audit::Did::new(
                account.tenant.as_deref(),
                action::PASSWORD_RESET,
                account.email,
                true,
            );
            crate::audit::record_off(&web, actor, did).await;
            shell(html! { div.card {
                h1 { "Password set" }
                p { "Every session of the account has ended. " a href="/login" { "Log in" } " with the new password." }
            } })
        }
        Ok(None) => {
            let _ = web.defender.login_failed(client, Service::Dashboard, &guessing, false);
            (StatusCode::NOT_FOUND, shell(html! { div.card {
                h1 { "This link does not work" }
                p { "It was used already, it is older than 30 minutes, or it is not one sluice sent. " a href="/reset" { "Ask for a new one" } "." }
            } }))
                .into_response()
        }
        Err(Failed::Said(e)) => shell(
            html! { div.card { h1 { "Not set" } p { (e) } p { a href={ "/reset/" (token) } { "Try again" } } } },
        ),
        Err(Failed::Interrupted) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}
