//! The dashboard: server-rendered pages that work without JavaScript and on a phone. Every
//! value from a tenant's files or the store is escaped (`esc`) before it is written: a CSV
//! cell can never run script in anyone's browser. Every form carries the session's CSRF token.

use crate::Web;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use sluice_core::import::ReadSetting;
use sluice_defender::{FailedLogin, HumanDuration, Refusal, Service};
use sluice_store::roles::*;
use sluice_store::{Account, ImportRecord, ImportStatus, Role};
use std::fmt::Write;

const COOKIE: &str = "sluice_session";
const SESSION_LIFETIME_MS: i64 = 12 * 3600 * 1000;
const PAGE: usize = 50;

pub fn routes() -> Router<Web> {
    Router::new()
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/", get(home))
        .route("/t/{tenant}", get(overview))
        .route("/t/{tenant}/imports", get(history))
        .route("/t/{tenant}/sync", post(sync))
        .route("/imports/{id}", get(import_page))
        .route("/imports/{id}/errors.csv", get(errors_csv))
        .route("/imports/{id}/file", get(kept_file))
        .route("/imports/{id}/approve", post(approve))
        .route("/imports/{id}/discard", post(discard))
        .route("/t/{tenant}/sftp", get(sftp_page))
        .route("/t/{tenant}/sftp/keys", post(add_key))
        .route("/t/{tenant}/sftp/keys/remove", post(remove_key))
        .route("/t/{tenant}/sftp/password", post(set_password))
        .route("/t/{tenant}/settings", get(settings_page).post(save_settings))
        .route("/t/{tenant}/team", get(team_page).post(grant))
        .route("/t/{tenant}/api-keys", get(api_keys_page).post(add_api_key))
        .route("/t/{tenant}/api-keys/revoke", post(revoke_api_key))
}

/// HTML-escapes text for element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}
header{background:#1f3b57;color:#fff;padding:.6em 1em;display:flex;gap:1em;align-items:center;flex-wrap:wrap}
header a{color:#fff}main{padding:1em;max-width:1100px;margin:auto}
table{border-collapse:collapse;width:100%;background:#fff}th,td{padding:.35em .5em;border-bottom:1px solid #e3e6ea;text-align:left;vertical-align:top}
.wrap{overflow-x:auto}.badge{display:inline-block;padding:.05em .5em;border-radius:1em;font-size:.85em;color:#fff}
.complete{background:#2e7d32}.incomplete{background:#b26a00}.failed{background:#c62828}.held{background:#6a1b9a}.discarded{background:#607d8b}.superseded{background:#455a64}.running{background:#1565c0}
.card{background:#fff;border:1px solid #e3e6ea;border-radius:6px;padding:1em;margin:0 0 1em}
button{font:inherit;padding:.35em .9em;border-radius:4px;border:1px solid #1f3b57;background:#1f3b57;color:#fff;cursor:pointer}
button.danger{background:#c62828;border-color:#c62828}input{font:inherit;padding:.3em;width:100%;max-width:22em;box-sizing:border-box}
.error{color:#c62828}form.inline{display:inline}";

fn page(title: &str, viewer: Option<&Viewer>, body: &str) -> Html<String> {
    let mut nav = String::new();
    if let Some(v) = viewer {
        let home = match &v.account.tenant {
            Some(t) => format!("<a href=\"/t/{0}\">{0}</a>", esc(t)),
            None => "<a href=\"/\">All tenants</a>".into(),
        };
        let _ = write!(
            nav,
            "{home}<span style=\"margin-left:auto\">{} ({})</span>\
             <form class=\"inline\" method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button>Log out</button></form>",
            esc(&v.account.email),
            v.account.role.as_str(),
            esc(&v.csrf)
        );
    }
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} · sluice</title><style>{STYLE}</style></head><body><header><strong>sluice</strong>{nav}</header><main>{body}</main></body></html>",
        esc(title)
    ))
}

fn not_found(viewer: &Viewer) -> Response {
    (
        StatusCode::NOT_FOUND,
        page("Not found", Some(viewer), "<h1>Not found</h1><p>No such page, or not yours.</p>"),
    )
        .into_response()
}

/// The logged-in account, from the session cookie; without one, a redirect to the login page.
pub struct Viewer {
    account: Account,
    csrf: String,
    token_hash: String,
}

impl Viewer {
    /// A MAC of `text` under this session's secret (its CSRF token, never sent to another site).
    fn sign(&self, text: &str) -> String {
        sluice_core::hmac_sha256_hex(self.csrf.as_bytes(), text.as_bytes())
    }

    fn may(&self, tenant: &str) -> bool {
        let operator = self.account.role == Role::Admin && self.account.tenant.is_none();
        operator || self.account.tenant.as_deref() == Some(tenant)
    }

    /// SFTP credentials and import settings: an owner, a user an owner granted it, or the
    /// operator (the seed documents' rule).
    fn manages(&self, tenant: &str) -> bool {
        self.may(tenant) && (self.account.role == Role::Admin || self.account.manages)
    }

    /// The refusal to send when `sent` is not this session's CSRF token.
    fn refuse_without_csrf(&self, sent: &str) -> Option<Response> {
        // Compared in constant time: the token is a secret of the session.
        let same = same_secret(&self.csrf, sent);
        let refusal = "<h1>Refused</h1><p>This form is out of date (CSRF check). Go back, reload the page and try again.</p>";
        (!same).then(|| (StatusCode::FORBIDDEN, page("Refused", Some(self), refusal)).into_response())
    }
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
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
        match web.ingest.store.session(&token_hash) {
            Ok(Some((account, csrf))) => Ok(Viewer { account, csrf, token_hash }),
            Ok(None) => Err(to_login()),
            Err(e) => {
                tracing::warn!("dashboard session: {e}");
                Err(StatusCode::SERVICE_UNAVAILABLE.into_response())
            }
        }
    }
}

const LOGIN_COOKIE: &str = "sluice_login";

/// What checking a login's password found.
enum Checked {
    Right(Account),
    Wrong { known: bool },
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
    let Ok((token, ..)) = crate::keys::generate() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let note =
        if message.is_empty() { String::new() } else { format!("<p class=\"error\">{}</p>", esc(message)) };
    let html = page(
        "Log in",
        None,
        &format!(
            "<div class=\"card\"><h1>Log in</h1>{note}<form method=\"post\" action=\"/login\">\
             <input type=\"hidden\" name=\"login_token\" value=\"{token}\">\
             <p><label>Email<br><input name=\"email\" type=\"text\" autocomplete=\"username\" required></label></p>\
             <p><label>Password<br><input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label></p>\
             <p><button>Log in</button></p></form></div>"
        ),
    );
    let secure = if secure_cookie { "; Secure" } else { "" };
    let cookie =
        format!("{LOGIN_COOKIE}={token}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600{secure}");
    ([(header::SET_COOKIE, cookie)], html).into_response()
}

async fn login_form(State(web): State<Web>) -> Response {
    login_page("", web.secure_cookies)
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    login_token: String,
}

fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn login(
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
    let checked = tokio::task::spawn_blocking(move || -> Result<Checked, String> {
        let account = store.account_by_email(&account_email).map_err(|e| e.to_string())?;
        let Some(account) = account else {
            // Spend the same time as a real check, so timing does not tell which emails exist.
            let _ = sluice_core::PasswordHash::create(&form.password);
            return Ok(Checked::Wrong { known: false });
        };
        let hash = sluice_core::PasswordHash::from_stored(account.password_hash.clone())
            .map_err(|e| e.to_string())?;
        Ok(if hash.verify(&form.password) { Checked::Right(account) } else { Checked::Wrong { known: true } })
    })
    .await;
    let account = match checked {
        Ok(Ok(Checked::Right(account))) => {
            match web.defender.login_succeeded(client, Service::Dashboard, &email) {
                Ok(()) => account,
                Err(refusal) => return refused(refusal, web.secure_cookies),
            }
        }
        Ok(Ok(Checked::Wrong { known })) => {
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
        Ok(Err(e)) => {
            tracing::warn!("login: {e}");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        Err(e) => {
            tracing::warn!("login: {e}");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    let Ok((token, _, token_hash)) = crate::keys::generate() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let Ok((csrf, ..)) = crate::keys::generate() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    if let Err(e) = web.ingest.store.create_session(account.id, &token_hash, &csrf, SESSION_LIFETIME_MS) {
        tracing::warn!("login: {e}");
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let secure = if web.secure_cookies { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_LIFETIME_MS / 1000
    );
    let target = account.tenant.as_ref().map_or("/".to_owned(), |t| format!("/t/{t}"));
    ([(header::SET_COOKIE, cookie)], Redirect::to(&target)).into_response()
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(State(web): State<Web>, viewer: Viewer, Form(form): Form<CsrfForm>) -> Response {
    if let Some(refused) = viewer.refuse_without_csrf(&form.csrf) {
        return refused;
    }
    let _ = web.ingest.store.end_session(&viewer.token_hash);
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}

fn badge(status: ImportStatus) -> String {
    format!("<span class=\"badge {0}\">{0}</span>", status.as_str())
}

fn when(ms: i64) -> String {
    sluice_ingest::Timestamp::from_millisecond(ms)
        .map_or_else(|_| ms.to_string(), |t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
}

fn import_rows(list: &[ImportRecord]) -> String {
    let mut rows = String::new();
    for r in list {
        let c = r.counts;
        let _ = write!(
            rows,
            "<tr><td><a href=\"/imports/{id}\">#{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&when(r.created_ms)),
            esc(&r.type_name),
            esc(&r.file_name),
            badge(r.status),
            c.rows,
            c.added,
            c.updated,
            c.deleted,
            c.rejected,
            id = r.id
        );
    }
    format!(
        "<div class=\"wrap\"><table><tr><th>Import</th><th>When</th><th>Type</th><th>File</th><th>Status</th><th>Rows</th><th>Added</th><th>Updated</th><th>Deleted</th><th>Rejected</th></tr>{rows}</table></div>"
    )
}

async fn home(State(web): State<Web>, viewer: Viewer) -> Response {
    if let Some(t) = &viewer.account.tenant {
        return Redirect::to(&format!("/t/{t}")).into_response();
    }
    if viewer.account.role != Role::Admin {
        return not_found(&viewer);
    }
    let store = web.ingest.store.clone();
    let rows =
        tokio::task::spawn_blocking(move || -> Result<Vec<(String, Option<ImportRecord>, usize)>, String> {
            let mut rows = Vec::new();
            for t in store.tenants().map_err(|e| e.to_string())? {
                let recent = store.imports(t.name.as_str(), 50).map_err(|e| e.to_string())?;
                let attention = recent
                    .iter()
                    .filter(|r| matches!(r.status, ImportStatus::Failed | ImportStatus::Held))
                    .count();
                rows.push((t.name.to_string(), recent.first().cloned(), attention));
            }
            // Failures and holds first.
            rows.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
            Ok(rows)
        })
        .await;
    let Ok(Ok(rows)) = rows else { return StatusCode::SERVICE_UNAVAILABLE.into_response() };
    let mut table = String::new();
    for (name, last, attention) in rows {
        let last = last.map_or("no imports yet".into(), |r| {
            format!("{} {} {}", badge(r.status), esc(&r.type_name), esc(&when(r.created_ms)))
        });
        let flag = if attention > 0 {
            format!("<span class=\"badge failed\">{attention} to look at</span>")
        } else {
            String::new()
        };
        let _ = write!(
            table,
            "<tr><td><a href=\"/t/{0}\">{0}</a></td><td>{flag}</td><td>{last}</td></tr>",
            esc(&name)
        );
    }
    page(
        "All tenants",
        Some(&viewer),
        &format!("<h1>All tenants</h1><p>Failed and held imports first.</p><div class=\"wrap\"><table><tr><th>Tenant</th><th>Attention</th><th>Latest import</th></tr>{table}</table></div>"),
    )
    .into_response()
}

/// Imports per day by status over the last fortnight, as an inline SVG bar chart.
fn chart(list: &[ImportRecord], now_ms: i64) -> String {
    const DAYS: i64 = 14;
    let statuses =
        [ImportStatus::Complete, ImportStatus::Incomplete, ImportStatus::Held, ImportStatus::Failed];
    let colors = ["#2e7d32", "#b26a00", "#6a1b9a", "#c62828"];
    let today = now_ms / 86_400_000;
    let mut counts = vec![[0u32; 4]; DAYS as usize];
    for r in list {
        let day = today - r.created_ms / 86_400_000;
        if (0..DAYS).contains(&day)
            && let Some(s) = statuses.iter().position(|s| *s == r.status)
        {
            counts[(DAYS - 1 - day) as usize][s] += 1;
        }
    }
    let max = counts.iter().map(|c| c.iter().sum::<u32>()).max().unwrap_or(0).max(1);
    let mut bars = String::new();
    for (i, day) in counts.iter().enumerate() {
        let mut y = 100.0;
        for (s, n) in day.iter().enumerate().filter(|(_, n)| **n > 0) {
            let h = 100.0 * f64::from(*n) / f64::from(max);
            y -= h;
            let _ = write!(
                bars,
                "<rect x=\"{}\" y=\"{y:.1}\" width=\"16\" height=\"{h:.1}\" fill=\"{}\"><title>{n} {}</title></rect>",
                i * 20 + 2,
                colors[s],
                statuses[s].as_str()
            );
        }
    }
    let legend: String = statuses
        .iter()
        .zip(colors)
        .map(|(s, c)| format!("<span style=\"color:{c}\">■</span> {} ", s.as_str()))
        .collect();
    format!(
        "<svg viewBox=\"0 0 280 100\" width=\"100%\" height=\"120\" role=\"img\" aria-label=\"Imports per day, last 14 days\">{bars}</svg><p>{legend}</p>"
    )
}

async fn overview(State(web): State<Web>, viewer: Viewer, Path(tenant): Path<String>) -> Response {
    if !viewer.may(&tenant) {
        return not_found(&viewer);
    }
    let w = web.clone();
    let name = tenant.clone();
    let data = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let t = w.ingest.store.require_tenant(&name).map_err(|e| e.to_string())?;
        let recent = w.ingest.store.imports(&name, 1000).map_err(|e| e.to_string())?;
        let counts = w.ingest.store.record_counts(&name).map_err(|e| e.to_string())?;
        Ok((t, recent, counts))
    })
    .await;
    let Ok(Ok((t, recent, counts))) = data else { return not_found(&viewer) };
    let mut latest = Vec::new();
    for r in &recent {
        if !latest.iter().any(|l: &ImportRecord| l.type_name == r.type_name) {
            latest.push(r.clone());
        }
    }
    let next = t.schedule.as_ref().and_then(|cron| {
        sluice_ingest::next_run(cron, &t.timezone, sluice_ingest::Timestamp::now()).ok().flatten()
    });
    let schedule = match (&t.schedule, next) {
        (Some(cron), Some(next)) => format!(
            "Imports run on schedule <code>{}</code> ({}); next: {}",
            esc(cron.as_str()),
            esc(&t.timezone),
            esc(&next.to_string())
        ),
        _ => format!("Imports run: {}", esc(t.trigger.as_str())),
    };
    let records: String =
        counts.iter().map(|(ty, n)| format!("<tr><td>{}</td><td>{n}</td></tr>", esc(ty))).collect();
    let body = format!(
        "<h1>{name}</h1><div class=\"card\"><p>{schedule}</p>\
         <form method=\"post\" action=\"/t/{name}/sync\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button>Sync now</button> \
         <small>imports every complete file waiting in the folders</small></form></div>\
         <div class=\"card\"><h2>Latest import per type</h2>{latest}</div>\
         <div class=\"card\"><h2>Imports per day</h2>{chart}</div>\
         <div class=\"card\"><h2>Records</h2><table><tr><th>Type</th><th>Records</th></tr>{records}</table></div>\
         <p><a href=\"/t/{name}/imports\">All imports</a> · <a href=\"/t/{name}/sftp\">SFTP credentials</a> · <a href=\"/t/{name}/settings\">Settings</a> · <a href=\"/t/{name}/api-keys\">API keys</a> · <a href=\"/t/{name}/team\">Team</a></p>",
        name = esc(&tenant),
        csrf = esc(&viewer.csrf),
        latest = import_rows(&latest),
        chart = chart(&recent, sluice_store::now_ms()),
    );
    page(&tenant, Some(&viewer), &body).into_response()
}

async fn history(State(web): State<Web>, viewer: Viewer, Path(tenant): Path<String>) -> Response {
    if !viewer.may(&tenant) {
        return not_found(&viewer);
    }
    let store = web.ingest.store.clone();
    let name = tenant.clone();
    let Ok(Ok(list)) = tokio::task::spawn_blocking(move || store.imports(&name, 200)).await else {
        return not_found(&viewer);
    };
    let body = format!("<h1>Imports of {}</h1>{}", esc(&tenant), import_rows(&list));
    page("Imports", Some(&viewer), &body).into_response()
}

#[derive(Deserialize)]
struct PageQuery {
    page: Option<usize>,
}

/// An import the viewer may see.
async fn visible(web: &Web, viewer: &Viewer, id: i64) -> Option<ImportRecord> {
    let store = web.ingest.store.clone();
    let record = tokio::task::spawn_blocking(move || store.import(id)).await.ok()?.ok()??;
    viewer.may(&record.tenant).then_some(record)
}

async fn import_page(
    State(web): State<Web>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Query(q): Query<PageQuery>,
) -> Response {
    let Some(r) = visible(&web, &viewer, id).await else { return not_found(&viewer) };
    // Bounded, so that the offset and the next page's number cannot overflow.
    let page_no = q.page.unwrap_or(1).clamp(1, 1_000_000_000);
    let store = web.ingest.store.clone();
    let errors =
        tokio::task::spawn_blocking(move || store.import_errors(id, PAGE, (page_no - 1) * PAGE)).await;
    let Ok(Ok(errors)) = errors else { return StatusCode::SERVICE_UNAVAILABLE.into_response() };
    let c = r.counts;
    let mut body = format!(
        "<h1>Import #{id} {badge}</h1><div class=\"card\"><p><strong>{file}</strong> · {ty} · {when} · from {source}</p>\
         <p>{rows} rows: {added} added, {updated} updated, {unchanged} unchanged, {deleted} deleted, {rejected} rejected</p>",
        badge = badge(r.status),
        file = esc(&r.file_name),
        ty = esc(&r.type_name),
        when = esc(&when(r.created_ms)),
        source = esc(&r.source),
        rows = c.rows,
        added = c.added,
        updated = c.updated,
        unchanged = c.unchanged,
        deleted = c.deleted,
        rejected = c.rejected,
    );
    if let Some(m) = &r.message {
        let _ = write!(body, "<p>{}</p>", esc(m));
    }
    if r.encoding.is_some() || r.delimiter.is_some() {
        let _ = write!(
            body,
            "<p>Read as {}, {}-delimited</p>",
            esc(r.encoding.as_deref().unwrap_or("unknown encoding")),
            esc(r.delimiter.as_deref().unwrap_or("comma"))
        );
    }
    for w in &r.warnings {
        let _ = write!(body, "<p>Warning: {}</p>", esc(w));
    }
    if let Some((what, by, at)) = r.decision() {
        let _ = write!(body, "<p>Held by the safeguard; {what} by {} on {}.</p>", esc(by), esc(&when(at)));
    }
    if r.status == ImportStatus::Held {
        let _ = write!(
            body,
            "<p><strong>This import is held by the safeguard.</strong> Approving applies it as it is, deletions included.</p>\
             <form class=\"inline\" method=\"post\" action=\"/imports/{id}/approve\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button>Approve</button></form> \
             <form class=\"inline\" method=\"post\" action=\"/imports/{id}/discard\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button class=\"danger\">Discard</button></form>",
            csrf = esc(&viewer.csrf)
        );
    }
    if let (ImportStatus::Superseded, Some(by)) = (r.status, r.superseded_by) {
        let _ = write!(
            body,
            "<p><strong>Superseded by <a href=\"/imports/{by}\">import #{by}</a></strong>, a newer file of the same type \
             applied after this one was held: approving this one would put older data over newer, so it can no longer \
             be approved. Upload it again if it is still meant.</p>"
        );
    }
    if r.held_file.is_some() {
        let _ = write!(body, "<p><a href=\"/imports/{id}/file\">Download the file</a></p>");
    }
    body.push_str("</div>");
    if c.rejected > 0 {
        let mut rows = String::new();
        for e in &errors {
            let _ = write!(
                rows,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                e.line,
                esc(&e.key),
                esc(&e.name),
                esc(&e.column),
                esc(&e.code),
                esc(&e.reason),
                esc(&e.value)
            );
        }
        let mut pager = String::new();
        if page_no > 1 {
            let _ = write!(pager, "<a href=\"/imports/{id}?page={}\">previous</a> ", page_no - 1);
        }
        if errors.len() == PAGE {
            let _ = write!(pager, "<a href=\"/imports/{id}?page={}\">next</a>", page_no + 1);
        }
        let _ = write!(
            body,
            "<div class=\"card\"><h2>Rejected rows</h2><p><a href=\"/imports/{id}/errors.csv\">Download the error report (CSV)</a></p>\
             <div class=\"wrap\"><table><tr><th>Line</th><th>Key</th><th>Name</th><th>Column</th><th>Code</th><th>Reason</th><th>Value</th></tr>{rows}</table></div><p>Page {page_no} {pager}</p></div>"
        );
    }
    let _ = write!(body, "<p><a href=\"/t/{0}\">Back to {0}</a></p>", esc(&r.tenant));
    page(&format!("Import {id}"), Some(&viewer), &body).into_response()
}

async fn kept_file(State(web): State<Web>, viewer: Viewer, Path(id): Path<i64>) -> Response {
    let Some(r) = visible(&web, &viewer, id).await else { return not_found(&viewer) };
    crate::kept_file(&r).unwrap_or_else(|| not_found(&viewer))
}

async fn errors_csv(State(web): State<Web>, viewer: Viewer, Path(id): Path<i64>) -> Response {
    if visible(&web, &viewer, id).await.is_none() {
        return not_found(&viewer);
    }
    let store = web.ingest.store.clone();
    let Ok(Ok(errors)) =
        tokio::task::spawn_blocking(move || store.import_errors(id, sluice_store::STORED_ERRORS, 0)).await
    else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let text = sluice_ingest::report::stored_csv(&errors);
    let disposition = format!("attachment; filename=\"import-{id}-errors.csv\"");
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        text,
    )
        .into_response()
}

async fn sync(
    State(web): State<Web>,
    viewer: Viewer,
    Path(tenant): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !viewer.may(&tenant) {
        return not_found(&viewer);
    }
    if let Some(refused) = viewer.refuse_without_csrf(&form.csrf) {
        return refused;
    }
    let ingest = web.ingest.clone();
    let name = tenant.clone();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || ingest.sync_tenant(&name)).await {
        tracing::warn!(tenant, "sync from the dashboard: {e}");
    }
    Redirect::to(&format!("/t/{tenant}/imports")).into_response()
}

async fn decide(web: Web, viewer: Viewer, id: i64, csrf: &str, approve: bool) -> Response {
    let Some(r) = visible(&web, &viewer, id).await else { return not_found(&viewer) };
    // Approving overrides the safeguard, deletions included: as for settings, an owner's call.
    if let Some(refused) = managing(&viewer, &r.tenant) {
        return refused;
    }
    if let Some(refused) = viewer.refuse_without_csrf(csrf) {
        return refused;
    }
    let ingest = web.ingest.clone();
    let by = format!("{} (dashboard)", viewer.account.email);
    let done = tokio::task::spawn_blocking(move || {
        if approve { ingest.approve(id, &by).map(|_| ()) } else { ingest.discard(id, &by) }
    })
    .await;
    match done {
        Ok(Ok(())) => Redirect::to(&format!("/imports/{id}")).into_response(),
        Ok(Err(e)) => (StatusCode::CONFLICT, page("Not done", Some(&viewer), &format!("<h1>Not done</h1><p>{}</p><p><a href=\"/imports/{id}\">Back to import #{id}</a> of {}</p>", esc(&e.to_string()), esc(&r.tenant)))).into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

async fn approve(
    State(web): State<Web>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Response {
    decide(web, viewer, id, &form.csrf, true).await
}

async fn discard(
    State(web): State<Web>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Response {
    decide(web, viewer, id, &form.csrf, false).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            super::esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }
}

/// The page for a viewer who may see the tenant but not manage it.
fn not_allowed(viewer: &Viewer, tenant: &str) -> Response {
    let body = format!(
        "<h1>Not allowed</h1><p>Only an owner of {0}, or a user an owner granted it, manages SFTP credentials and import settings.</p><p><a href=\"/t/{0}\">Back</a></p>",
        esc(tenant)
    );
    (StatusCode::FORBIDDEN, page("Not allowed", Some(viewer), &body)).into_response()
}

/// Whether the viewer may manage `tenant`; the response to send if not.
fn managing(viewer: &Viewer, tenant: &str) -> Option<Response> {
    if !viewer.may(tenant) {
        return Some(not_found(viewer));
    }
    (!viewer.manages(tenant)).then(|| not_allowed(viewer, tenant))
}

/// The notice a change left (see `back_to`), if this session signed it.
fn notice(viewer: &Viewer, q: &NoticeQuery) -> String {
    if q.done.is_empty() || !same_secret(&viewer.sign(&q.done), &q.sig) {
        return String::new();
    }
    format!("<p class=\"card\">{}</p>", esc(&q.done))
}

#[derive(Deserialize)]
struct NoticeQuery {
    #[serde(default)]
    done: String,
    #[serde(default)]
    sig: String,
}

async fn sftp_page(
    State(web): State<Web>,
    viewer: Viewer,
    Path(tenant): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> Response {
    if let Some(refused) = managing(&viewer, &tenant) {
        return refused;
    }
    let store = web.ingest.store.clone();
    let name = tenant.clone();
    let Ok(Ok((t, keys))) = tokio::task::spawn_blocking(move || -> sluice_store::Result<_> {
        Ok((store.require_tenant(&name)?, store.keys(&name)?))
    })
    .await
    else {
        return not_found(&viewer);
    };
    let csrf = esc(&viewer.csrf);
    let mut rows = String::new();
    for k in &keys {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td><form class=\"inline\" method=\"post\" action=\"/t/{name}/sftp/keys/remove\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"fingerprint\" value=\"{fp}\"><button class=\"danger\">Remove</button></form></td></tr>",
            esc(&k.algorithm),
            esc(&k.fingerprint),
            esc(&k.comment),
            name = esc(&tenant),
            fp = esc(&k.fingerprint)
        );
    }
    let body = format!(
        "<h1>SFTP credentials of {name}</h1>{notice}<div class=\"card\"><h2>Public keys</h2><div class=\"wrap\"><table><tr><th>Algorithm</th><th>Fingerprint</th><th>Comment</th><th></th></tr>{rows}</table></div>\
         <form method=\"post\" action=\"/t/{name}/sftp/keys\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <p><label>Add a key (one line of an OpenSSH .pub file)<br><textarea name=\"public_key\" rows=\"3\" style=\"width:100%\"></textarea></label></p><p><button>Add key</button></p></form></div>\
         <div class=\"card\"><h2>Password</h2><p>The SFTP password is {pw}.</p><form method=\"post\" action=\"/t/{name}/sftp/password\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <p><label>New password (at least {min} characters)<br><input name=\"password\" type=\"password\" autocomplete=\"new-password\" minlength=\"{min}\" required></label></p><p><button>Set password</button></p></form></div>",
        name = esc(&tenant),
        notice = notice(&viewer, &q),
        pw = if t.password.is_some() { "set" } else { "not set" },
        min = sluice_core::PasswordHash::MIN_CHOSEN_CHARS,
    );
    page("SFTP credentials", Some(&viewer), &body).into_response()
}

/// Ends a change made off the async threads: back to `here` with what happened.
fn reported<T, E: std::fmt::Display>(
    viewer: &Viewer,
    done: Result<Result<T, E>, tokio::task::JoinError>,
    here: &str,
    failed: &str,
    success: impl FnOnce(T) -> String,
) -> Response {
    match done {
        Ok(Ok(v)) => back_to(viewer, here, &success(v)),
        Ok(Err(e)) => back_to(viewer, here, &format!("{failed}: {e}")),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
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

#[derive(Deserialize)]
struct KeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    public_key: String,
    #[serde(default)]
    fingerprint: String,
}

async fn add_key(
    State(web): State<Web>,
    viewer: Viewer,
    Path(tenant): Path<String>,
    Form(form): Form<KeyForm>,
) -> Response {
    if let Some(refused) = managing(&viewer, &tenant).or_else(|| viewer.refuse_without_csrf(&form.csrf)) {
        return refused;
    }
    let here = format!("/t/{tenant}/sftp");
    let key = match (web.parse_key)(&form.public_key) {
        Ok(k) => k,
        Err(e) => return back_to(&viewer, &here, &format!("Not added: {e}")),
    };
    let store = web.ingest.store.clone();
    let name = tenant.clone();
    let done = tokio::task::spawn_blocking(move || {
        let t = store.require_tenant(&name)?;
        store.add_key(&t.name, &key).map(|()| key.fingerprint)
    })
    .await;
    reported(&viewer, done, &here, "Not added", |fp| format!("Key {fp} added."))
}

async fn remove_key(
    State(web): State<Web>,
    viewer: Viewer,
    Path(tenant): Path<String>,
    Form(form): Form<KeyForm>,
) -> Response {
    if let Some(refused) = managing(&viewer, &tenant).or_else(|| viewer.refuse_without_csrf(&form.csrf)) {
        return refused;
    }
    let store = web.ingest.store.clone();
    let name = tenant.clone();
    let fp = form.fingerprint.clone();
    let done = tokio::task::spawn_blocking(move || store.remove_key(&name, &fp)).await;
    let here = format!("/t/{tenant}/sftp");
    reported(&viewer, done, &here, "Not removed", |()| format!("Key {} removed.", form.fingerprint))
}

/// The tenant's API keys: owners (and users granted it) make and revoke them here, as the
/// operator does with `sluice apikey`. A new key is shown once, on the answer to the form
/// (never in a URL), and only its SHA-256 is kept.
async fn api_keys_page(
    State(web): State<Web>,
    viewer: Viewer,
    Path(tenant): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> Response {
    if let Some(refused) = managing(&viewer, &tenant) {
        return refused;
    }
    let store = web.ingest.store.clone();
    let name = tenant.clone();
    let Ok(Ok(keys)) = tokio::task::spawn_blocking(move || store.api_keys(Some(&name))).await else {
        return not_found(&viewer);
    };
    let csrf = esc(&viewer.csrf);
    let mut rows = String::new();
    for k in &keys {
        let state = match k.revoked_ms {
            Some(at) => format!("revoked {}", esc(&when(at))),
            None => format!(
                "<form class=\"inline\" method=\"post\" action=\"/t/{t}/api-keys/revoke\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <input type=\"hidden\" name=\"id\" value=\"{id}\"><button class=\"danger\">Revoke</button></form>",
                t = esc(&tenant),
                id = k.id
            ),
        };
        let _ = write!(
            rows,
            "<tr><td>{}</td><td><code>{}…</code></td><td>{}</td><td>{state}</td></tr>",
            esc(&k.name),
            esc(&k.prefix),
            esc(&when(k.created_ms)),
        );
    }
    let body = format!(
        "<h1>API keys of {t}</h1>{notice}<div class=\"card\"><p>A key acts for this tenant on the REST API (<code>/api/v1</code>, \
         <code>Authorization: Bearer KEY</code>): imports, errors, records, sync, approvals, SFTP keys and settings.</p>\
         <div class=\"wrap\"><table><tr><th>Name</th><th>Key</th><th>Made</th><th></th></tr>{rows}</table></div>\
         <form method=\"post\" action=\"/t/{t}/api-keys\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <p><label>What the key is for<br><input name=\"name\" maxlength=\"64\" required placeholder=\"SIS nightly job\"></label></p>\
         <p><button>Make a key</button></p></form></div>",
        t = esc(&tenant),
        notice = notice(&viewer, &q),
    );
    page("API keys", Some(&viewer), &body).into_response()
}

#[derive(Deserialize)]
struct ApiKeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    id: i64,
}

async fn add_api_key(
    State(web): State<Web>,
    viewer: Viewer,
    Path(tenant): Path<String>,
    Form(form): Form<ApiKeyForm>,
) -> Response {
    if let Some(refused) = managing(&viewer, &tenant).or_else(|| viewer.refuse_without_csrf(&form.csrf)) {
        return refused;
    }
    let here = format!("/t/{tenant}/api-keys");
    let key_name = form.name.trim().to_owned();
    if key_name.is_empty() || key_name.chars().count() > 64 || key_name.chars().any(char::is_control) {
        return back_to(&viewer, &here, "Not made: name the key (1 to 64 characters), e.g. SIS nightly job.");
    }
    let Ok((token, prefix, hash)) = crate::keys::generate() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let store = web.ingest.store.clone();
    let (name, label) = (tenant.clone(), key_name.clone());
    let made =
        tokio::task::spawn_blocking(move || store.add_api_key(Some(&name), &label, &prefix, &hash)).await;
    let Ok(Ok(_)) = made else { return back_to(&viewer, &here, "Not made: the key could not be stored.") };
    tracing::info!(tenant, by = viewer.account.email, "API key made on the dashboard");
    let body = format!(
        "<h1>API key made</h1><div class=\"card\"><p>The key <strong>{label}</strong> for {t}. Copy it now: \
         it is not shown again (sluice keeps only a hash of it).</p><p><code>{token}</code></p>\
         <p><a href=\"/t/{t}/api-keys\">Back to the API keys</a></p></div>",
        label = esc(&key_name),
        t = esc(&tenant),
        token = esc(&token),
    );
    page("API key made", Some(&viewer), &body).into_response()
}

async fn revoke_api_key(
    State(web): State<Web>,
    viewer: Viewer,
    Path(tenant): Path<String>,
    Form(form): Form<ApiKeyForm>,
) -> Response {
    if let Some(refused) = managing(&viewer, &tenant).or_else(|| viewer.refuse_without_csrf(&form.csrf)) {
        return refused;
    }
    let store = web.ingest.store.clone();
    let (name, id) = (tenant.clone(), form.id);
    // Only a key of this very tenant.
    let done = tokio::task::spawn_blocking(move || store.revoke_api_key(id, Some(&name))).await;
    let here = format!("/t/{tenant}/api-keys");
    reported(&viewer, done, &here, "Not revoked", |()| format!("API key {id} revoked."))
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
}

async fn set_password(
    State(web): State<Web>,
    viewer: Viewer,
    Path(tenant): Path<String>,
    Form(form): Form<PasswordForm>,
) -> Response {
    if let Some(refused) = managing(&viewer, &tenant).or_else(|| viewer.refuse_without_csrf(&form.csrf)) {
        return refused;
    }
    let here = format!("/t/{tenant}/sftp");
    // argon2id takes 19 MiB: as for logins, a few at a time.
    let Ok(_slot) = web.password_checks.clone().try_acquire_owned() else {
        return back_to(&viewer, &here, "Not set: busy; try again in a moment.");
    };
    let store = web.ingest.store.clone();
    let name = tenant.clone();
    let done = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let t = store.require_tenant(&name).map_err(|e| e.to_string())?;
        let hash = sluice_core::PasswordHash::choose(&form.password).map_err(|e| e.to_string())?;
        store.set_password(&t.name, &hash).map_err(|e| e.to_string())
    })
    .await;
    reported(&viewer, done, &here, "Not set", |()| "Password set.".into())
}

async fn settings_page(
    State(web): State<Web>,
    viewer: Viewer,
    Path(tenant): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> Response {
    if let Some(refused) = managing(&viewer, &tenant) {
        return refused;
    }
    let store = web.ingest.store.clone();
    let name = tenant.clone();
    let Ok(Ok(t)) = tokio::task::spawn_blocking(move || store.require_tenant(&name)).await else {
        return not_found(&viewer);
    };
    let option = |value: &str, label: &str| {
        let selected = if t.trigger.as_str() == value { " selected" } else { "" };
        format!("<option value=\"{value}\"{selected}>{label}</option>")
    };
    let triggers = [
        ("on_upload", "as soon as an upload closes"),
        ("manual", "only on Sync now"),
        ("schedule", "on a schedule"),
        ("manifest", "when a .done manifest arrives"),
    ]
    .map(|(v, l)| option(v, l))
    .join("");
    let (url, _) = t.webhook.clone().unwrap_or_default();
    let current = t
        .read_settings
        .iter()
        .find_map(|r| match r {
            ReadSetting::Strictness { type_name: None, strictness } => Some(strictness.as_str()),
            _ => None,
        })
        .unwrap_or("default");
    let strictness = [
        ("default", "as each type says (lenient unless a type says strict)"),
        ("lenient", "lenient, for every type"),
        ("strict", "strict, for every type"),
    ]
    .map(|(v, l)| {
        format!("<option value=\"{v}\"{}>{l}</option>", if v == current { " selected" } else { "" })
    })
    .join("");
    // What is set per type (changed with `sluice tenant set` or the API), shown so that the
    // choices above are not read as the whole story.
    let mut per_type: Vec<String> = t
        .type_triggers
        .iter()
        .map(|(ty, g)| format!("trigger.{ty}={}", g.as_str()))
        .chain(t.read_settings.iter().filter(|r| r.type_name().is_some()).map(|r| {
            let (k, v) = r.to_pair();
            format!("{k}={v}")
        }))
        .chain(
            t.safeguards
                .iter()
                .map(|g| format!("safeguard.{}.{}={}", g.type_name, g.limit.as_str(), g.percent)),
        )
        .map(|line| format!("<li><code>{}</code></li>", esc(&line)))
        .collect();
    if per_type.is_empty() {
        per_type.push("<li>none</li>".into());
    }
    let per_type = per_type.join("");
    let body = format!(
        "<h1>Settings of {name}</h1>{notice}<form method=\"post\" action=\"/t/{name}/settings\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <div class=\"card\"><h2>When imports run</h2><p><label>Trigger<br><select name=\"trigger\">{triggers}</select></label></p>\
         <p><label>Schedule (cron: minute hour day month weekday)<br><input name=\"schedule\" value=\"{schedule}\" placeholder=\"0 2 * * *\"></label></p>\
         <p><label>Time zone<br><input name=\"timezone\" value=\"{tz}\"></label></p></div>\
         <div class=\"card\"><h2>How files are read</h2><p><label>Strictness<br><select name=\"strictness\">{strictness}</select></label></p>\
         <p>Lenient reads what is unambiguous (<code>TRUE</code> as <code>true</code>, spaced dates, a <code>sep=</code> line) and reports each as a warning; strict refuses it.</p><p>Set per type:</p><ul>{per_type}</ul></div>\
         <div class=\"card\"><h2>Notifications</h2><p><label>Email these addresses when an import ends (comma-separated)<br><input name=\"emails\" value=\"{emails}\"></label></p>\
         <p><label>Webhook URL<br><input name=\"webhook\" value=\"{url}\"></label></p>\
         <p><label>Webhook secret (signs each POST; leave empty to keep it)<br><input name=\"webhook_secret\" type=\"password\" autocomplete=\"off\"></label></p></div>\
         <p><button>Save</button></p></form>",
        name = esc(&tenant),
        notice = notice(&viewer, &q),
        csrf = esc(&viewer.csrf),
        schedule = esc(t.schedule.as_ref().map_or("", |c| c.as_str())),
        tz = esc(&t.timezone),
        emails = esc(&t.notify_emails.join(", ")),
        url = esc(&url),
    );
    page("Settings", Some(&viewer), &body).into_response()
}

#[derive(Deserialize)]
struct SettingsForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    trigger: String,
    #[serde(default)]
    schedule: String,
    #[serde(default)]
    timezone: String,
    /// Empty (a form without the field) changes nothing about it.
    #[serde(default)]
    strictness: String,
    #[serde(default)]
    emails: String,
    #[serde(default)]
    webhook: String,
    #[serde(default)]
    webhook_secret: String,
}

async fn save_settings(
    State(web): State<Web>,
    viewer: Viewer,
    Path(tenant): Path<String>,
    Form(form): Form<SettingsForm>,
) -> Response {
    if let Some(refused) = managing(&viewer, &tenant).or_else(|| viewer.refuse_without_csrf(&form.csrf)) {
        return refused;
    }
    let here = format!("/t/{tenant}/settings");
    // The same change `sluice tenant set` makes: every value checked, then one transaction.
    let mut pairs = vec![
        ("trigger", form.trigger.as_str()),
        ("schedule", form.schedule.as_str()),
        ("timezone", form.timezone.as_str()),
        ("notify.email", form.emails.as_str()),
        ("notify.webhook", form.webhook.as_str()),
    ];
    if !form.strictness.is_empty() {
        pairs.push(("strictness", form.strictness.as_str()));
    }
    // An empty secret field keeps the secret.
    if !form.webhook_secret.is_empty() {
        pairs.push(("notify.webhook_secret", form.webhook_secret.as_str()));
    }
    let cx = sluice_core::SettingsContext {
        types: &web.ingest.types,
        allow_private_webhooks: web.allow_private_webhooks,
    };
    let mut change = sluice_core::SettingsChange::default();
    for (key, value) in pairs {
        if let Err(e) = change.set(key, value, cx) {
            return back_to(&viewer, &here, &format!("Not saved: {e}"));
        }
    }
    let store = web.ingest.store.clone();
    let name = tenant.clone();
    let done = tokio::task::spawn_blocking(move || store.change_settings(&name, &change).map(drop)).await;
    reported(&viewer, done, &here, "Not saved", |()| "Saved.".into())
}

/// Owners (and the operator) decide which of the tenant's users may manage credentials and
/// settings.
fn grants(viewer: &Viewer, tenant: &str) -> bool {
    viewer.may(tenant) && matches!(viewer.account.role, Role::Admin | Role::Owner)
}

async fn team_page(
    State(web): State<Web>,
    viewer: Viewer,
    Path(tenant): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> Response {
    if !viewer.may(&tenant) {
        return not_found(&viewer);
    }
    let store = web.ingest.store.clone();
    let name = tenant.clone();
    let Ok(Ok(accounts)) = tokio::task::spawn_blocking(move || store.accounts(Some(&name))).await else {
        return not_found(&viewer);
    };
    let may_grant = grants(&viewer, &tenant);
    let mut rows = String::new();
    for a in &accounts {
        let action = if may_grant && a.role == Role::User {
            let (value, label) = if a.manages { ("0", "Take back") } else { ("1", "Let manage") };
            format!(
                "<form class=\"inline\" method=\"post\" action=\"/t/{t}/team\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <input type=\"hidden\" name=\"email\" value=\"{email}\"><input type=\"hidden\" name=\"manages\" value=\"{value}\"><button>{label}</button></form>",
                t = esc(&tenant),
                csrf = esc(&viewer.csrf),
                email = esc(&a.email)
            )
        } else {
            String::new()
        };
        let manages = if a.manages { "manages credentials and settings" } else { "sees imports" };
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{manages}</td><td>{action}</td></tr>",
            esc(&a.email),
            a.role.as_str()
        );
    }
    let body = format!(
        "<h1>Team of {}</h1>{}<div class=\"card\"><p>Owners, and users an owner lets, manage SFTP credentials and import settings.</p>\
         <div class=\"wrap\"><table><tr><th>Account</th><th>Role</th><th>May</th><th></th></tr>{rows}</table></div></div>",
        esc(&tenant),
        notice(&viewer, &q)
    );
    page("Team", Some(&viewer), &body).into_response()
}

#[derive(Deserialize)]
struct GrantForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    manages: String,
}

async fn grant(
    State(web): State<Web>,
    viewer: Viewer,
    Path(tenant): Path<String>,
    Form(form): Form<GrantForm>,
) -> Response {
    if !viewer.may(&tenant) {
        return not_found(&viewer);
    }
    if !grants(&viewer, &tenant) {
        let body = "<h1>Not allowed</h1><p>Only an owner lets a user manage credentials and settings.</p>";
        return (StatusCode::FORBIDDEN, page("Not allowed", Some(&viewer), body)).into_response();
    }
    if let Some(refused) = viewer.refuse_without_csrf(&form.csrf) {
        return refused;
    }
    let store = web.ingest.store.clone();
    let name = tenant.clone();
    let done = tokio::task::spawn_blocking(move || -> sluice_store::Result<bool> {
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
    match done {
        Ok(Ok(true)) => back_to(&viewer, &here, "Saved."),
        Ok(Ok(false)) => back_to(&viewer, &here, "Not saved: no such user of this tenant."),
        _ => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}
