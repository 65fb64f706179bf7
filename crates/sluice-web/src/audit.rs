//! The dashboard's and the API's part of the audit log: each change a person or an API key
//! makes is recorded once, after it ran (done, or refused with nothing changed), with the
//! account or the key and the client's address; a settings change with the settings before
//! and after (`SettingsView`: no secret). Logins and failed logins too.

use crate::Web;
use axum::http::request::Parts;
use sluice_core::audit::{Actor, AuditOutcome, NewAuditEntry};

/// The client's address as the audit log names it (through `[http] trusted_proxies`).
pub(crate) fn source(parts: &Parts, web: &Web) -> String {
    match client(parts, web) {
        Some(ip) => ip.to_string(),
        None => "unknown".to_owned(),
    }
}

/// The client's address (through `[http] trusted_proxies`), for the defender and the log.
pub(crate) fn client(parts: &Parts, web: &Web) -> Option<std::net::IpAddr> {
    let peer = parts.extensions.get::<axum::extract::ConnectInfo<crate::Peer>>().map(|c| c.0.0.ip())?;
    Some(crate::client::client_ip(peer, &parts.headers, &web.trusted_proxies))
}

/// What an action was, for [`record`].
pub(crate) struct Did {
    pub tenant: Option<String>,
    pub action: &'static str,
    pub target: String,
    pub done: bool,
    pub before: Option<String>,
    pub after: Option<String>,
}

impl Did {
    pub fn new(tenant: Option<&str>, action: &'static str, target: impl Into<String>, done: bool) -> Self {
        Did {
            tenant: tenant.map(str::to_owned),
            action,
            target: target.into(),
            done,
            before: None,
            after: None,
        }
    }
}

/// Records an action (a write to the store: call it where the change itself ran, off the
/// async threads). A log that cannot be written is logged; the action's answer stands.
pub(crate) fn record(web: &Web, actor: &Actor, did: Did) {
    let entry = NewAuditEntry {
        tenant: did.tenant.as_deref(),
        actor,
        action: did.action,
        target: &did.target,
        outcome: if did.done { AuditOutcome::Done } else { AuditOutcome::Refused },
        before: did.before,
        after: did.after,
    };
    if let Err(e) = web.ingest.store.record_audit(&entry) {
        tracing::warn!("the audit log could not be written: {e}");
    }
}

/// [`record`] from the async threads.
pub(crate) async fn record_off(web: &Web, actor: Actor, did: Did) {
    let web = web.clone();
    let _ = tokio::task::spawn_blocking(move || record(&web, &actor, did)).await;
}

/// Marks an answer as a refusal to audit: who asked, for which tenant. Whatever answers 403
/// to a known person or key (the dashboard's refusal pages, the CSRF check, the API's scope
/// checks) attaches it; [`refusals`] records it once, naming the method and path asked for.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    pub actor: Actor,
    pub tenant: Option<String>,
}

impl Refusal {
    pub fn attach(self, mut response: axum::response::Response) -> axum::response::Response {
        response.extensions_mut().insert(self);
        response
    }
}

/// The middleware that records [`Refusal`]s: `access.refused`, the target `POST /t/acme/...`.
pub(crate) async fn refusals(
    axum::extract::State(web): axum::extract::State<Web>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let asked = format!("{} {}", request.method(), request.uri().path());
    let mut response = next.run(request).await;
    if let Some(refusal) = response.extensions_mut().remove::<Refusal>() {
        let did =
            Did::new(refusal.tenant.as_deref(), sluice_core::audit::action::ACCESS_REFUSED, asked, false);
        record_off(&web, refusal.actor, did).await;
    }
    response
}

/// A tenant's settings as the log keeps them before and after a change (JSON).
pub(crate) fn settings_of(t: &sluice_core::Tenant) -> String {
    serde_json::to_string(&sluice_core::views::SettingsView::audited(t)).unwrap_or_default()
}
