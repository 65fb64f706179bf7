//! The audit log in the dashboard: the operator sees every entry (`/audit`), a tenant's owners
//! and the users they granted it see the tenant's own (`/t/{tenant}/audit`); either as a CSV
//! file (`?format=csv`).

use super::layout::{not_found, page};
use super::{TenantPath, Viewer, blocking, managing, when};
use crate::Web;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;
use sluice_core::audit::AuditEntry;
use sluice_store::Role;

/// Entries a page shows (the CSV has as many as the log keeps, up to this many).
const PAGE: usize = 200;
const CSV_MAX: usize = 100_000;

#[derive(Deserialize)]
pub struct AuditQuery {
    format: Option<String>,
    /// Older entries: those before this id (the "Older" link).
    before: Option<i64>,
    /// One action or a family of them (`login`, `user`, `tenant.settings`).
    #[serde(default)]
    action: String,
}

/// The operator's view: every tenant's entries and the operator's own.
pub async fn all(State(web): State<Web>, viewer: Viewer, Query(q): Query<AuditQuery>) -> Response {
    if viewer.account.role != Role::Admin || viewer.account.tenant.is_some() {
        return not_found(&viewer);
    }
    shown(web, viewer, None, q).await
}

/// A tenant's entries, for those who manage it.
pub async fn tenant(
    State(web): State<Web>,
    viewer: Viewer,
    TenantPath(tenant): TenantPath,
    Query(q): Query<AuditQuery>,
) -> Response {
    if let Some(refused) = managing(&viewer, &tenant) {
        return refused;
    }
    shown(web, viewer, Some(tenant.to_string()), q).await
}

async fn shown(web: Web, viewer: Viewer, tenant: Option<String>, q: AuditQuery) -> Response {
    let csv = q.format.as_deref() == Some("csv");
    // The CSV has everything, whichever page it was asked from.
    let q = AuditQuery { before: if csv { None } else { q.before }, ..q };
    let limit = if csv { CSV_MAX } else { PAGE };
    let of = tenant.clone();
    let action = q.action.trim().to_owned();
    // The filter as links carry it on.
    let and_action: String = if action.is_empty() {
        String::new()
    } else {
        let encoded: String = action
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b == b'.' || b == b'_' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        format!("&action={encoded}")
    };
    let Ok(entries) = blocking(move || {
        // A tenant's entries from its creation on: one removed before under the same name is
        // not this one.
        let since = match of.as_deref() {
            Some(t) => Some(web.ingest.store.require_tenant(t)?.created_ms),
            None => None,
        };
        let filter = sluice_core::audit::AuditFilter {
            tenant: of.clone(),
            since_ms: since,
            before_id: q.before,
            action: Some(q.action.trim().to_owned()).filter(|a| !a.is_empty()),
            limit,
        };
        Ok(web.ingest.store.audit_entries(&filter)?)
    })
    .await
    else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    if csv {
        return csv_file(&entries, tenant.as_deref());
    }
    let here = tenant.as_ref().map_or("/audit".to_owned(), |t| format!("/t/{t}/audit"));
    let older = entries.last().filter(|_| entries.len() == PAGE).map(|e| e.id);
    let body = html! {
        h1 { "Audit log" @if let Some(t) = &tenant { " of " (t) } }
        div.card {
            p {
                "Who changed what, when and from where, newest first (" (PAGE) " a page). "
                a href={ (here) "?format=csv" (and_action) } { "Download all as CSV" }
            }
            form method="get" action=(here) {
                label { "Only the action (or family: login, user, tenant.settings) "
                    input name="action" type="text" value=(action) style="max-width:14em"; }
                " " button { "Show" }
                @if !action.is_empty() { " " a href=(here) { "All" } }
            }
            div.wrap { table {
                tr { th { "When" } @if tenant.is_none() { th { "Tenant" } } th { "Who" } th { "From" } th { "What" } th { "On" } th { "Outcome" } }
                @for e in &entries {
                    tr {
                        td { (when(e.at_ms)) }
                        @if tenant.is_none() { td { (e.tenant.as_deref().unwrap_or("-")) } }
                        td { (e.actor.name) " " small { "(" (e.actor.kind.as_str()) ")" } }
                        td { (e.actor.source) }
                        td { code { (e.action) } }
                        td {
                            (e.target)
                            // A settings change: what it was and what it became.
                            @if let (Some(before), Some(after)) = (&e.before, &e.after) {
                                details { summary { "before and after" } pre { (before) } pre { (after) } }
                            }
                        }
                        td { (e.outcome.as_str()) }
                    }
                }
            } }
            @if let Some(id) = older { p { a href={ (here) "?before=" (id) (and_action) } { "Older entries" } } }
        }
    };
    page("Audit log", Some(&viewer), body).into_response()
}

/// The entries as a CSV file (cells quoted and neutralised as every CSV sluice writes).
fn csv_file(entries: &[AuditEntry], tenant: Option<&str>) -> Response {
    let cell = sluice_core::cells::csv_cell;
    let mut out =
        String::from("\u{feff}id,at,tenant,actor_kind,actor,source,action,target,outcome,before,after\r\n");
    for e in entries {
        let at =
            sluice_ingest::Timestamp::from_millisecond(e.at_ms).map(|t| t.to_string()).unwrap_or_default();
        let fields = [
            e.id.to_string(),
            at,
            e.tenant.clone().unwrap_or_default(),
            e.actor.kind.as_str().to_owned(),
            e.actor.name.clone(),
            e.actor.source.clone(),
            e.action.clone(),
            e.target.clone(),
            e.outcome.as_str().to_owned(),
            e.before.clone().unwrap_or_default(),
            e.after.clone().unwrap_or_default(),
        ];
        out.push_str(&fields.iter().map(|f| cell(f)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    let name = tenant.map_or("audit.csv".to_owned(), |t| format!("audit-{t}.csv"));
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        out,
    )
        .into_response()
}
