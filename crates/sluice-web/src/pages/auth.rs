//! Who is looking: the `Viewer` extractor (the session cookie), the CSRF check of posted
//! forms, and logging in and out, with the defender's limits on failed logins.

use super::layout::{page, status_page};
use super::{CsrfForm, Failed, blocking};
use crate::Web;
use axum::Form;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use sluice_defender::{FailedLogin, HumanDuration, Refusal, Service};
use sluice_store::{Account, Role};

pub(super) const COOKIE: &str = "sluice_session";
const LOGIN_COOKIE: &str = "sluice_login";
pub(super) const SESSION_LIFETIME_MS: i64 = 12 * 3600 * 1000;

/// The logged-in account, from the session cookie; without one, a redirect to the login page.
pub struct Viewer {
    pub account: Account,
    csrf: String,
    token_hash: String,
    /// The client's address (through trusted proxies), for the audit log.
    source: String,
    /// The same as an address, for the defender's limits (password checks on pages).
    pub(super) ip: std::net::IpAddr,
}

impl Viewer {
    /// Who this is, for the audit log: the account, from the client's address.
    pub fn actor(&self) -> sluice_core::audit::Actor {
        sluice_core::audit::Actor {
            kind: sluice_core::audit::ActorKind::Account,
            name: self.account.email.clone(),
            source: self.source.clone(),
        }
    }

    /// The session's CSRF token, for the hidden field of a form (`layout::csrf_field`).
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// A MAC of `text` under this session's secret (its CSRF token, never sent to another site).
    pub fn sign(&self, text: &str) -> String {
        sluice_core::hmac_sha256_hex(self.csrf.as_bytes(), text.as_bytes())
    }

    pub fn may(&self, tenant: &str) -> bool {
        let operator = self.account.role == Role::Admin && self.account.tenant.is_none();
        operator || self.account.tenant.as_deref() == Some(tenant)
    }

    /// SFTP credentials and import settings: an owner, a user an owner granted it, or the
    /// operator (the seed documents' rule).
    pub fn manages(&self, tenant: &str) -> bool {
        self.may(tenant) && (self.account.role == Role::Admin || self.account.manages)
    }

    /// The CSRF check of every posted form: the refusal to send when `sent` is not this
    /// session's token.
    pub fn refuse_without_csrf(&self, sent: &str) -> Option<Response> {
        // Compared in constant time: the token is a secret of the session.
        (!same_secret(&self.csrf, sent)).then(|| {
            status_page(
                StatusCode::FORBIDDEN,
                "Refused",
                self,
                html! {
                    h1 { "Refused" }
                    p { "This form is out of date (CSRF check). Go back, reload the page and try again." }
                },
            )
        })
    }
}

pub(super) fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(&format!("{name}=")).map(str::to_owned))
        .filter(|t| !t.is_empty() && t.len() <= 200)
}

impl FromRequestParts<Web> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Web) -> Result<Self, Self::Rejection> {
        let to_login = || Redirect::to("/login").into_response();
        let token = cookie_value(&parts.headers, COOKIE).ok_or_else(to_login)?;
        let token_hash = crate::keys::hash(&token);
        let ip = crate::audit::client(parts, web).unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
        let source = ip.to_string();
        match web.ingest.store.session(&token_hash) {
            Ok(Some((account, csrf))) => {
                // An account the operator's rule covers and that has no second factor yet
                // sees its account page (to set one up) and nothing else.
                let path = parts.uri.path();
                let may_go = path == "/account" || path.starts_with("/account/") || path == "/logout";
                if web.second_factor.requires(&account) && !account.second_factor && !may_go {
                    return Err(Redirect::to("/account").into_response());
                }
                Ok(Viewer { account, csrf, token_hash, source, ip })
            }
            Ok(None) => Err(to_login()),
            Err(e) => {
                tracing::warn!("dashboard session: {e}");
                Err(StatusCode::SERVICE_UNAVAILABLE.into_response())
            }
        }
    }
}

/// Whether two secrets are equal, compared in constant time.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What checking a login's password found.
enum Checked {
    Right(Account),
    /// A wrong password (`tenant`: the account's), or no such account (`known` false).
    Wrong {
        known: bool,
        tenant: Option<String>,
    },
}

/// 429 with the sentence that says why and for how long, before any password was checked.
fn refused(refusal: Refusal, secure_cookie: bool) -> Response {
    let mut response = login_page(&refusal.to_string(), secure_cookie);
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let secs = refusal.retry_after().as_secs_f64().ceil().max(1.0) as u64;
    if let Ok(value) = axum::http::HeaderValue::from_str(&secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// The login form, with a fresh token in a cookie and in the form (a double-submit token:
/// another site cannot post a login of its choosing, since it can read neither).
fn login_page(message: &str, secure_cookie: bool) -> Response {
    let Ok((token, _)) = crate::keys::secret() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let html = page(
        "Log in",
        None,
        html! {
            div.card {
                h1 { "Log in" }
                @if !message.is_empty() { p.error { (message) } }
                form method="post" action="/login" {
                    input type="hidden" name="login_token" value=(token);
                    // A tenant's account logs in with its email, the operator as `admin`.
                    p { label { "Email or user name" br; input name="email" type="text" autocomplete="username" required; } }
                    p { label { "Password" br; input name="password" type="password" autocomplete="current-password" required; } }
                    p { button { "Log in" } }
                }
                p { a href="/reset" { "Forgot your password?" } }
            }
        },
    );
    let secure = if secure_cookie { "; Secure" } else { "" };
    let cookie =
        format!("{LOGIN_COOKIE}={token}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600{secure}");
    ([(header::SET_COOKIE, cookie)], html).into_response()
}

pub async fn login_form(State(web): State<Web>) -> Response {
    login_page("", web.secure_cookies)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    login_token: String,
}

pub async fn login(
    State(web): State<Web>,
    ConnectInfo(crate::Peer(peer)): ConnectInfo<crate::Peer>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let cookie = cookie_value(&headers, LOGIN_COOKIE).unwrap_or_default();
    if cookie.is_empty() || !same_secret(&cookie, &form.login_token) {
        let mut refused =
            login_page("The login form was out of date; please log in again.", web.secure_cookies);
        *refused.status_mut() = StatusCode::FORBIDDEN;
        return refused;
    }
    let email = form.email.trim().to_lowercase();
    if email.len() > 254 || form.password.len() > 1024 {
        return (StatusCode::UNAUTHORIZED, login_page("Wrong email or password.", web.secure_cookies))
            .into_response();
    }
    // argon2id takes 19 MiB and tens of milliseconds: a flood of logins queues for a few
    // slots rather than taking all memory and every blocking thread.
    let Ok(_slot) = web.password_checks.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            login_page("Busy; try again in a moment.", web.secure_cookies),
        )
            .into_response();
    };
    // Before any password is checked: a banned address, or an account that took its share of
    // failures, is refused (and counted against nothing).
    let client = crate::client::client_ip(peer.ip(), &headers, &web.trusted_proxies);
    if let Err(refusal) = web.defender.login_attempt(client, Service::Dashboard, &email) {
        return refused(refusal, web.secure_cookies);
    }
    let store = web.ingest.store.clone();
    let account_email = email.clone();
    let checked = blocking(move || {
        let account = store.account_by_email(&account_email)?;
        let Some(account) = account else {
            // Spend the same time as a real check, so timing does not tell which emails exist.
            let _ = sluice_core::PasswordHash::create(&form.password);
            return Ok(Checked::Wrong { known: false, tenant: None });
        };
        let hash =
            sluice_core::PasswordHash::from_stored(account.password_hash.clone()).map_err(Failed::said)?;
        Ok(if hash.verify(&form.password) {
            Checked::Right(account)
        } else {
            Checked::Wrong { known: true, tenant: account.tenant.clone() }
        })
    })
    .await;
    // Logins are in the audit log: who, from where, and whether it worked (never the password).
    // What was typed is recorded only when it names an account: a password typed into the
    // email field must not end up in the log.
    let logged = |tenant: Option<String>, target: &'static str, done: bool, known: bool| {
        let actor = sluice_core::audit::Actor {
            kind: sluice_core::audit::ActorKind::Account,
            name: if known { email.clone() } else { "(no such account)".to_owned() },
            source: client.to_string(),
        };
        let did = crate::audit::Did::new(tenant.as_deref(), sluice_core::audit::action::LOGIN, target, done);
        crate::audit::record_off(&web, actor, did)
    };
    let account = match checked {
        // With a second factor, the password alone is no success yet: the defender hears of
        // it after the code (so guessing codes counts against the account like guessing
        // passwords); only a ban that came meanwhile refuses now.
        Ok(Checked::Right(account)) if account.second_factor => {
            if let Err(refusal) = web.defender.login_attempt(client, Service::Dashboard, &email) {
                return refused(refusal, web.secure_cookies);
            }
            logged(account.tenant.clone(), "dashboard, password (code next)", true, true).await;
            account
        }
        Ok(Checked::Right(account)) => {
            match web.defender.login_succeeded(client, Service::Dashboard, &email) {
                Ok(()) => {
                    logged(account.tenant.clone(), "dashboard", true, true).await;
                    account
                }
                Err(refusal) => return refused(refusal, web.secure_cookies),
            }
        }
        Ok(Checked::Wrong { known, tenant }) => {
            logged(tenant, "dashboard", false, known).await;
            let message = match web.defender.login_failed(client, Service::Dashboard, &email, known) {
                FailedLogin::Counted => "Wrong email or password.".to_owned(),
                FailedLogin::Banned { duration } => format!(
                    "Wrong email or password. After too many failed attempts, this address is blocked for {}.",
                    HumanDuration(duration)
                ),
                FailedLogin::Refused(refusal) => return refused(refusal, web.secure_cookies),
            };
            return (StatusCode::UNAUTHORIZED, login_page(&message, web.secure_cookies)).into_response();
        }
        Err(e) => {
            if let Failed::Said(e) = e {
                tracing::warn!("login: {e}");
            }
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    if account.second_factor {
        // The password was right; the session opens pages once the code comes.
        return start_session(&web, &account, true);
    }
    start_session(&web, &account, false)
}

/// The session cookie that carries `token`.
pub(super) fn session_cookie(web: &Web, token: &str) -> String {
    let secure = if web.secure_cookies { "; Secure" } else { "" };
    format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_LIFETIME_MS / 1000
    )
}

/// Where an account lands after logging in.
pub(super) fn landing(account: &Account) -> String {
    account.tenant.as_ref().map_or("/".to_owned(), |t| format!("/t/{t}"))
}

/// A new session for `account` in a cookie, and the redirect to its landing page; or, when
/// `pending` (a second factor is still to come), a session that opens no page yet and the
/// redirect to the code form.
pub(super) fn start_session(web: &Web, account: &Account, pending: bool) -> Response {
    let Ok((token, token_hash)) = crate::keys::secret() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let Ok((csrf, _)) = crate::keys::secret() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let store = &web.ingest.store;
    let created = if pending {
        store.create_pending_session(
            account.id,
            &token_hash,
            &csrf,
            super::second_factor::PENDING_LIFETIME_MS,
        )
    } else {
        store.create_session(account.id, &token_hash, &csrf, SESSION_LIFETIME_MS)
    };
    if let Err(e) = created {
        tracing::warn!("login: {e}");
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let cookie = session_cookie(web, &token);
    let target = if pending { "/login/code".to_owned() } else { landing(account) };
    ([(header::SET_COOKIE, cookie)], Redirect::to(&target)).into_response()
}

pub async fn logout(State(web): State<Web>, viewer: Viewer, Form(form): Form<CsrfForm>) -> Response {
    if let Some(refused) = viewer.refuse_without_csrf(&form.csrf) {
        return refused;
    }
    let _ = web.ingest.store.end_session(&viewer.token_hash);
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}
