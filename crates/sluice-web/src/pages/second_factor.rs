//! The second factor: TOTP (RFC 6238, `sluice_core::totp`) after the password, with recovery
//! codes for a lost phone.
//!
//! - Logging in: a right password for an account with a second factor starts a *pending*
//!   session (it opens no page) and asks for a code; five wrong codes end it (the password
//!   again), and every wrong one counts with the defender like a failed login. A code works
//!   once (the step is kept), a recovery code too.
//! - Enrolling, on the account page: a new secret, sealed under `[secrets] key_file` and bound
//!   to the account, is shown as a QR code and as text; a code from the app switches it on and
//!   the recovery codes are shown once (kept only hashed). Switching it off takes the password
//!   and a code. Every step is audited (never a secret or a code).
//! - `[http] second_factor = "owners" | "everyone"`: an account the rule covers that has none
//!   sees only its account page until it sets one up (the `Viewer` extractor).

use super::auth::{COOKIE, SESSION_LIFETIME_MS, cookie_value, same_secret};
use super::layout::{csrf_field, page};
use super::{Failed, Viewer, back_to, blocking};
use crate::Web;
use axum::Form;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;
use sluice_core::audit::{Actor, ActorKind, action};
use sluice_core::totp;
use sluice_defender::Service;
use sluice_store::{Account, SecondFactor};
use zeroize::Zeroizing;

/// How long a pending session waits for its code.
pub(super) const PENDING_LIFETIME_MS: i64 = 5 * 60 * 1000;
/// Wrong codes a pending session may send before the password is asked again.
const MAX_TRIES: i64 = 5;

/// What a secret is sealed for: this account's second factor, nothing else.
fn purpose(account: i64) -> String {
    format!("sluice second factor of account {account}")
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn key(web: &Web) -> Result<&sluice_connect::SecretKey, Failed> {
    web.transfers
        .as_deref()
        .map(|t| &t.key)
        .ok_or_else(|| Failed::said("this server keeps no secret key ([secrets] key_file)"))
}

/// What a typed code turned out to be.
#[derive(Debug, PartialEq, Eq)]
enum Code {
    Totp,
    Recovery,
}

/// Checks a typed code (TOTP, or a recovery code) against an account and uses it up.
fn check_code(web: &Web, account: &Account, typed: &str) -> Result<Option<Code>, Failed> {
    let store = &web.ingest.store;
    let factor = store.second_factor(account.id)?;
    let Some(sealed) = factor.sealed else { return Ok(None) };
    let secret = key(web)?.open_bytes(&purpose(account.id), &sealed).map_err(Failed::said)?;
    let last = factor.last_step.and_then(|s| u64::try_from(s).ok());
    if let Some(step) = totp::accept(&secret, typed, now_secs(), last) {
        // Atomic: of two logins racing with one code, one wins.
        let step = i64::try_from(step).map_err(|_| Failed::said("a step out of range"))?;
        return Ok(store.use_second_factor_step(account.id, step)?.then_some(Code::Totp));
    }
    let normalised = totp::normalise_recovery_code(typed);
    if normalised.len() == 10 {
        let used = store.use_recovery_code(account.id, &crate::keys::hash(&normalised))?;
        return Ok(used.then_some(Code::Recovery));
    }
    Ok(None)
}

fn code_page(csrf: &str, message: &str) -> Markup {
    html! { div.card {
        h1 { "Two-step login" }
        @if !message.is_empty() { p.error { (message) } }
        form method="post" action="/login/code" {
            input type="hidden" name="csrf" value=(csrf);
            p { label {
                "The 6-digit code from your authenticator app, or one of your recovery codes" br;
                input name="code" type="text" inputmode="numeric" autocomplete="one-time-code" autofocus required;
            } }
            p { button { "Log in" } }
        }
        p { small { "Lost your phone and your recovery codes? Ask the operator to switch your second factor off." } }
    } }
}

fn pending(web: &Web, headers: &HeaderMap) -> Option<(String, Account, String, i64)> {
    let token_hash = crate::keys::hash(&cookie_value(headers, COOKIE)?);
    match web.ingest.store.pending_session(&token_hash) {
        Ok(Some((account, csrf, tries))) => Some((token_hash, account, csrf, tries)),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!("pending session: {e}");
            None
        }
    }
}

pub async fn code_form(State(web): State<Web>, headers: HeaderMap) -> Response {
    match pending(&web, &headers) {
        Some((_, _, csrf, _)) => page("Two-step login", None, code_page(&csrf, "")).into_response(),
        None => Redirect::to("/login").into_response(),
    }
}

#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
}

pub async fn code(
    State(web): State<Web>,
    ConnectInfo(crate::Peer(peer)): ConnectInfo<crate::Peer>,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Response {
    let Some((token_hash, account, csrf, tries)) = pending(&web, &headers) else {
        return Redirect::to("/login").into_response();
    };
    if !same_secret(&csrf, &form.csrf) {
        return (
            StatusCode::FORBIDDEN,
            page("Two-step login", None, code_page(&csrf, "The form was out of date; try again.")),
        )
            .into_response();
    }
    let client = crate::client::client_ip(peer.ip(), &headers, &web.trusted_proxies);
    let actor = Actor { kind: ActorKind::Account, name: account.email.clone(), source: client.to_string() };
    let tenant = account.tenant.clone();
    // A try is taken before the code is looked at, atomically: parallel guesses on one
    // pending session get five checks between them, no more.
    match web.ingest.store.take_pending_try(&token_hash, MAX_TRIES) {
        Ok(true) => {}
        Ok(false) => {
            let _ = web.ingest.store.end_session(&token_hash);
            return Redirect::to("/login").into_response();
        }
        Err(e) => {
            tracing::warn!("second factor: {e}");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    }
    if let Err(refusal) = web.defender.login_attempt(client, Service::Dashboard, &account.email) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            page("Two-step login", None, code_page(&csrf, &refusal.to_string())),
        )
            .into_response();
    }
    if form.code.len() > 64 {
        return (
            StatusCode::UNAUTHORIZED,
            page("Two-step login", None, code_page(&csrf, "That code is not right.")),
        )
            .into_response();
    }
    let (w, a, typed) = (web.clone(), account.clone(), Zeroizing::new(form.code));
    let checked = blocking(move || check_code(&w, &a, &typed)).await;
    match checked {
        Ok(Some(kind)) => {
            // The session gets a new token now: a pending cookie someone planted in this
            // browser does not become a logged-in session.
            let (Ok((token, new_hash)), Ok((new_csrf, _))) = (crate::keys::secret(), crate::keys::secret())
            else {
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            };
            match web.ingest.store.complete_session(&token_hash, &new_hash, &new_csrf, SESSION_LIFETIME_MS) {
                Ok(true) => {}
                _ => return Redirect::to("/login").into_response(),
            }
            if let Err(refusal) = web.defender.login_succeeded(client, Service::Dashboard, &account.email) {
                let _ = web.ingest.store.end_session(&new_hash);
                let page = page("Two-step login", None, code_page(&csrf, &refusal.to_string()));
                return (StatusCode::TOO_MANY_REQUESTS, page).into_response();
            }
            let how = if kind == Code::Recovery { "recovery code" } else { "authenticator code" };
            let did = crate::audit::Did::new(tenant.as_deref(), action::LOGIN_SECOND_FACTOR, how, true);
            crate::audit::record_off(&web, actor, did).await;
            let cookie = super::auth::session_cookie(&web, &token);
            ([(axum::http::header::SET_COOKIE, cookie)], Redirect::to(&super::auth::landing(&account)))
                .into_response()
        }
        Ok(None) => {
            let _ = web.defender.login_failed(client, Service::Dashboard, &account.email, true);
            let did =
                crate::audit::Did::new(tenant.as_deref(), action::LOGIN_SECOND_FACTOR, "dashboard", false);
            crate::audit::record_off(&web, actor, did).await;
            if tries + 1 >= MAX_TRIES {
                let _ = web.ingest.store.end_session(&token_hash);
                return Redirect::to("/login").into_response();
            }
            let message = "That code is not right, or it was used already (an app's code: wait for the next one; a recovery code works once).";
            (StatusCode::UNAUTHORIZED, page("Two-step login", None, code_page(&csrf, message)))
                .into_response()
        }
        Err(Failed::Said(e)) => {
            tracing::warn!("second factor: {e}");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
        Err(Failed::Interrupted) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// Ten new recovery codes, and the hashes the store keeps of them.
fn new_recovery_codes() -> Result<(Vec<String>, Vec<String>), Failed> {
    let mut codes = Vec::with_capacity(totp::RECOVERY_CODES);
    for _ in 0..totp::RECOVERY_CODES {
        let mut random = [0u8; 7];
        getrandom::fill(&mut random).map_err(|_| Failed::said("no random numbers"))?;
        codes.push(totp::recovery_code(random));
    }
    let hashes = codes.iter().map(|c| crate::keys::hash(&totp::normalise_recovery_code(c))).collect();
    Ok((codes, hashes))
}

/// Audits a change that made recovery codes (`action`, done or refused), then shows the codes
/// once under `title`, or why not after `refused`.
async fn codes_shown(
    web: &Web,
    viewer: &Viewer,
    action: &'static str,
    done: Result<Vec<String>, Failed>,
    title: &str,
    refused: &str,
) -> Response {
    let tenant = viewer.account.tenant.clone();
    let did = crate::audit::Did::new(tenant.as_deref(), action, viewer.account.email.clone(), done.is_ok());
    crate::audit::record_off(web, viewer.actor(), did).await;
    match done {
        Ok(codes) => codes_page(viewer, title, &codes),
        Err(Failed::Said(why)) => back_to(viewer, "/account", &format!("{refused}: {why}")),
        Err(Failed::Interrupted) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// The recovery codes shown once, after setting up or renewing them.
fn codes_page(viewer: &Viewer, title: &str, codes: &[String]) -> Response {
    let body = html! {
        h1 { (title) }
        div.card {
            p { "Your recovery codes: each logs in once in place of a code from the app. Keep them somewhere safe, away from your phone. They are shown only now; any earlier ones no longer work." }
            pre { @for c in codes { (c) "\n" } }
            p { a href="/account" { "Done" } }
        }
    };
    page(title, Some(viewer), body).into_response()
}

/// The account page's part: the second factor's state and what can be done with it.
pub(super) fn section(viewer: &Viewer, factor: &SecondFactor, required: bool) -> Markup {
    html! { div.card {
        h2 { "Two-step login" }
        @if factor.sealed.is_some() {
            p { "On: after your password, you type a code from your authenticator app. "
                (factor.recovery_codes_left) " recovery codes left." }
            form method="post" action="/account/second-factor/recovery-codes" {
                (csrf_field(viewer))
                p { label { "Password" br; input name="password" type="password" autocomplete="current-password" required; } }
                p { label { "A code from the app" br; input name="code" type="text" inputmode="numeric" autocomplete="one-time-code" required; } }
                p { button { "New recovery codes" } " " small { "(the old ones stop working)" } }
            }
            @if required {
                p { small { "The operator requires it for your account: it stays on." } }
            } @else {
                form method="post" action="/account/second-factor/off" {
                    (csrf_field(viewer))
                    p { label { "Password" br; input name="password" type="password" autocomplete="current-password" required; } }
                    p { label { "A code from the app (or a recovery code)" br; input name="code" type="text" inputmode="numeric" autocomplete="one-time-code" required; } }
                    p { button.danger { "Switch two-step login off" } }
                }
            }
        } @else {
            @if required {
                p.error { "The operator requires two-step login for your account: set it up to go on." }
            }
            p { "After your password, a code from an authenticator app on your phone (any app that reads TOTP QR codes)." }
            form method="post" action="/account/second-factor/start" {
                (csrf_field(viewer))
                button { "Set up two-step login" }
            }
        }
    } }
}

/// The account's second factor, for the account page.
pub(super) async fn of(web: &Web, account: i64) -> SecondFactor {
    let store = web.ingest.store.clone();
    blocking(move || Ok(store.second_factor(account)?)).await.unwrap_or_default()
}

pub async fn start(State(web): State<Web>, viewer: Viewer, Form(form): Form<super::CsrfForm>) -> Response {
    if let Some(refused) = viewer.refuse_without_csrf(&form.csrf) {
        return refused;
    }
    let id = viewer.account.id;
    let w = web.clone();
    let started = blocking(move || {
        // Replacing a second factor that is on takes switching it off first (the password
        // and a code): a session alone, stolen or left open, cannot swap in another phone.
        if w.ingest.store.second_factor(id)?.sealed.is_some() {
            return Err(Failed::said(
                "two-step login is on already; switch it off first to use another phone",
            ));
        }
        let mut secret = Zeroizing::new([0u8; totp::SECRET_BYTES]);
        getrandom::fill(&mut secret[..]).map_err(|_| Failed::said("no random numbers"))?;
        let sealed = key(&w)?.seal_bytes(&purpose(id), &secret[..]).map_err(Failed::said)?;
        w.ingest.store.start_second_factor(id, &sealed)?;
        Ok(())
    })
    .await;
    match started {
        Ok(()) => Redirect::to("/account/second-factor").into_response(),
        Err(Failed::Said(why)) => back_to(&viewer, "/account", &format!("Not set up: {why}")),
        Err(Failed::Interrupted) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// The secret being enrolled, as a QR code and as text, and the form that confirms it.
pub async fn enrol_page(State(web): State<Web>, viewer: Viewer) -> Response {
    let id = viewer.account.id;
    let factor = of(&web, id).await;
    let Some(pending) = factor.pending else { return Redirect::to("/account").into_response() };
    let secret = match key(&web).and_then(|k| k.open_bytes(&purpose(id), &pending).map_err(Failed::said)) {
        Ok(s) => s,
        Err(_) => {
            return back_to(&viewer, "/account", "Not set up: the secret could not be opened; start again.");
        }
    };
    let uri = Zeroizing::new(totp::otpauth_uri("sluice", &viewer.account.email, &secret));
    let qr = qrcode::QrCode::new(uri.as_bytes())
        .map(|c| c.render::<qrcode::render::svg::Color<'_>>().min_dimensions(220, 220).build())
        .unwrap_or_default();
    let text = totp::secret_base32(&secret);
    let grouped: Vec<&str> = text.as_bytes().chunks(4).filter_map(|c| std::str::from_utf8(c).ok()).collect();
    let body = html! {
        h1 { "Set up two-step login" }
        div.card {
            p { "1. Scan this with your authenticator app (or type the key below into it)." }
            // The SVG is drawn by the qrcode crate from the otpauth address: markup it made, no
            // value of anyone else's.
            div { (PreEscaped(qr)) }
            p { "Key: " code { (grouped.join(" ")) } }
            p { "2. Type the 6-digit code the app shows." }
            form method="post" action="/account/second-factor/confirm" {
                (csrf_field(&viewer))
                input type="hidden" name="enrolling" value=(pending);
                p { label { "Code" br; input name="code" type="text" inputmode="numeric" autocomplete="one-time-code" required; } }
                p { button { "Switch it on" } }
            }
        }
    };
    page("Set up two-step login", Some(&viewer), body).into_response()
}

#[derive(Deserialize)]
pub struct ConfirmForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    enrolling: String,
    #[serde(default)]
    code: String,
}

pub async fn confirm(State(web): State<Web>, viewer: Viewer, Form(form): Form<ConfirmForm>) -> Response {
    if let Some(refused) = viewer.refuse_without_csrf(&form.csrf) {
        return refused;
    }
    let (w, id) = (web.clone(), viewer.account.id);
    let done = blocking(move || {
        let secret = key(&w)?
            .open_bytes(&purpose(id), &form.enrolling)
            .map_err(|_| Failed::said("the page was out of date; start again"))?;
        let step = totp::accept(&secret, &form.code, now_secs(), None)
            .ok_or_else(|| Failed::said("that code is not right (is the phone's clock right?)"))?;
        let (codes, hashes) = new_recovery_codes()?;
        let step = i64::try_from(step).map_err(|_| Failed::said("a step out of range"))?;
        if !w.ingest.store.enable_second_factor(id, &form.enrolling, step, &hashes)? {
            return Err(Failed::said("another setup was started meanwhile; use the newest page"));
        }
        Ok(codes)
    })
    .await;
    codes_shown(&web, &viewer, action::SECOND_FACTOR_ON, done, "Two-step login is on", "Not switched on")
        .await
}

#[derive(Deserialize)]
pub struct OffForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
}

pub async fn off(State(web): State<Web>, viewer: Viewer, Form(form): Form<OffForm>) -> Response {
    if let Some(refused) = viewer.refuse_without_csrf(&form.csrf) {
        return refused;
    }
    if web.second_factor.requires(&viewer.account) {
        let tenant = viewer.account.tenant.clone();
        let did = crate::audit::Did::new(
            tenant.as_deref(),
            action::SECOND_FACTOR_OFF,
            viewer.account.email.clone(),
            false,
        );
        crate::audit::record_off(&web, viewer.actor(), did).await;
        return back_to(
            &viewer,
            "/account",
            "Not switched off: the operator requires it for your account (a new phone: ask the operator to switch it off with sluice user second-factor-off, then set it up again).",
        );
    }
    let Ok(_slot) = web.password_checks.clone().try_acquire_owned() else {
        return back_to(&viewer, "/account", "Not switched off: busy; try again in a moment.");
    };
    // The password and the code are guessed here no faster than at the login.
    if let Err(refusal) = web.defender.login_attempt(viewer.ip, Service::Dashboard, &viewer.account.email) {
        return back_to(&viewer, "/account", &format!("Not switched off: {refusal}"));
    }
    let (w, account, ip) = (web.clone(), viewer.account.clone(), viewer.ip);
    let done = blocking(move || {
        let fresh = w
            .ingest
            .store
            .account_by_email(&account.email)?
            .ok_or_else(|| Failed::said("the account is gone"))?;
        let stored = sluice_core::PasswordHash::from_stored(fresh.password_hash).map_err(Failed::said)?;
        if !stored.verify(&form.password) || check_code(&w, &account, &form.code)?.is_none() {
            let _ = w.defender.login_failed(ip, Service::Dashboard, &account.email, true);
            return Err(Failed::said("the password or the code is not right (or the code was used already)"));
        }
        w.ingest.store.disable_second_factor(&account.email)?;
        Ok(())
    })
    .await;
    let tenant = viewer.account.tenant.clone();
    let did = crate::audit::Did::new(
        tenant.as_deref(),
        action::SECOND_FACTOR_OFF,
        viewer.account.email.clone(),
        done.is_ok(),
    );
    crate::audit::record_off(&web, viewer.actor(), did).await;
    match done {
        Ok(()) => back_to(&viewer, "/account", "Two-step login is off."),
        Err(Failed::Said(why)) => back_to(&viewer, "/account", &format!("Not switched off: {why}")),
        Err(Failed::Interrupted) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// New recovery codes for an account whose second factor is on: the password and a code from
/// the app first (checked and counted like the switch-off); the old codes stop working.
pub async fn renew_codes(State(web): State<Web>, viewer: Viewer, Form(form): Form<OffForm>) -> Response {
    if let Some(refused) = viewer.refuse_without_csrf(&form.csrf) {
        return refused;
    }
    let Ok(_slot) = web.password_checks.clone().try_acquire_owned() else {
        return back_to(&viewer, "/account", "Not renewed: busy; try again in a moment.");
    };
    if let Err(refusal) = web.defender.login_attempt(viewer.ip, Service::Dashboard, &viewer.account.email) {
        return back_to(&viewer, "/account", &format!("Not renewed: {refusal}"));
    }
    let (w, account, ip) = (web.clone(), viewer.account.clone(), viewer.ip);
    let done = blocking(move || {
        let fresh = w
            .ingest
            .store
            .account_by_email(&account.email)?
            .ok_or_else(|| Failed::said("the account is gone"))?;
        let stored = sluice_core::PasswordHash::from_stored(fresh.password_hash).map_err(Failed::said)?;
        // A code from the app: a recovery code does not make new ones.
        let right =
            stored.verify(&form.password) && check_code(&w, &account, &form.code)? == Some(Code::Totp);
        if !right {
            let _ = w.defender.login_failed(ip, Service::Dashboard, &account.email, true);
            return Err(Failed::said(
                "the password or the app's code is not right (or the code was used already)",
            ));
        }
        let (codes, hashes) = new_recovery_codes()?;
        if !w.ingest.store.replace_recovery_codes(account.id, &hashes)? {
            return Err(Failed::said("two-step login is not on"));
        }
        Ok(codes)
    })
    .await;
    codes_shown(&web, &viewer, action::RECOVERY_CODES, done, "New recovery codes", "Not renewed").await
}
