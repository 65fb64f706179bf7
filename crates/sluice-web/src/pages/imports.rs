//! Imports: all tenants (the operator's start page), a tenant's overview and history, one
//! import with its rejected rows, its error report and kept file, approving or discarding a
//! held import, and Sync now.

use super::layout::{badge, csrf_field, not_found, notice, page, status_page};
use super::{CsrfForm, Failed, NoticeQuery, TenantPath, Viewer, blocking, managing, when};
use crate::Web;
use crate::audit::Did;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use sluice_core::audit::action;
use sluice_store::{ImportRecord, ImportStatus, Role};

/// Rejected rows per page of an import.
const PAGE: usize = 50;

fn import_rows(list: &[ImportRecord]) -> Markup {
    html! {
        div.wrap { table {
            tr { th { "Import" } th { "When" } th { "Type" } th { "File" } th { "Status" } th { "Rows" } th { "Added" } th { "Updated" } th { "Deleted" } th { "Rejected" } }
            @for r in list {
                @let c = r.counts;
                tr {
                    td { a href={ "/imports/" (r.id) } { "#" (r.id) } }
                    td { (when(r.created_ms)) }
                    td { (r.type_name) }
                    td { (r.file_name) }
                    td { (badge(r.status)) }
                    td { (c.rows) } td { (c.added) } td { (c.updated) } td { (c.deleted) } td { (c.rejected) }
                }
            }
        } }
    }
}

pub async fn home(State(web): State<Web>, viewer: Viewer) -> Response {
    if let Some(t) = &viewer.account.tenant {
        return Redirect::to(&format!("/t/{t}")).into_response();
    }
    if viewer.account.role != Role::Admin {
        return not_found(&viewer);
    }
    let store = web.ingest.store.clone();
    let rows = blocking(move || {
        let mut rows: Vec<(String, Option<ImportRecord>, usize, bool)> = Vec::new();
        for t in store.tenants()? {
            let recent = store.imports(t.name.as_str(), 50)?;
            let attention = recent
                .iter()
                .filter(|r| {
                    r.status == ImportStatus::Held
                        || (r.status == ImportStatus::Failed && r.acknowledged_ms.is_none())
                })
                .count();
            rows.push((t.name.to_string(), recent.first().cloned(), attention, t.disabled));
        }
        // Failures and holds first.
        rows.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
        Ok(rows)
    })
    .await;
    let Ok(rows) = rows else { return StatusCode::SERVICE_UNAVAILABLE.into_response() };
    let body = html! {
        h1 { "All tenants" }
        p { "Failed and held imports first. " a href="/audit" { "Audit log" } }
        div.wrap { table {
            tr { th { "Tenant" } th { "Attention" } th { "Latest import" } th {} }
            @for (name, last, attention, disabled) in &rows {
                tr {
                    td { a href={ "/t/" (name) } { (name) } @if *disabled { " " span.badge.discarded { "disabled" } } }
                    td { @if *attention > 0 { span class="badge failed" { (attention) " to look at" } } }
                    td {
                        @match last {
                            Some(r) => { (badge(r.status)) " " (r.type_name) " " (when(r.created_ms)) },
                            None => { "no imports yet" },
                        }
                    }
                    td {
                        form.inline method="post" action="/tenants/enabled" {
                            (csrf_field(&viewer))
                            input type="hidden" name="name" value=(name);
                            @if *disabled {
                                input type="hidden" name="enabled" value="1";
                                button { "Enable" }
                            } @else {
                                input type="hidden" name="enabled" value="0";
                                button.danger { "Disable" }
                            }
                        }
                    }
                }
            }
        } }
        div.card {
            h2 { "Add a tenant" }
            form method="post" action="/tenants/add" {
                (csrf_field(&viewer))
                p { label {
                    "Name (its SFTP login: lowercase letters, digits, - and _)" br;
                    input name="name" required pattern="[a-z][a-z0-9_-]*" maxlength="64";
                } }
                p { button { "Add" } " " small { "with the default folders; then set its SFTP password or key" } }
            }
        }
    };
    page("All tenants", Some(&viewer), body).into_response()
}

/// Imports per day by status over the last fortnight, as an inline SVG bar chart.
fn chart(list: &[ImportRecord], now_ms: i64) -> Markup {
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
    // (x, y, height, status) of each bar segment, stacked from the bottom.
    let mut bars = Vec::new();
    for (i, day) in counts.iter().enumerate() {
        let mut y = 100.0;
        for (s, n) in day.iter().enumerate().filter(|(_, n)| **n > 0) {
            let h = 100.0 * f64::from(*n) / f64::from(max);
            y -= h;
            bars.push((i * 20 + 2, format!("{y:.1}"), format!("{h:.1}"), *n, s));
        }
    }
    html! {
        svg viewBox="0 0 280 100" width="100%" height="120" role="img" aria-label="Imports per day, last 14 days" {
            @for (x, y, h, n, s) in &bars {
                rect x=(x) y=(y) width="16" height=(h) fill=(colors[*s]) { title { (n) " " (statuses[*s].as_str()) } }
            }
        }
        p {
            @for (s, c) in statuses.iter().zip(colors) {
                span style={ "color:" (c) } { "■" } " " (s.as_str()) " "
            }
        }
    }
}

pub async fn overview(
    State(web): State<Web>,
    viewer: Viewer,
    TenantPath(tenant): TenantPath,
    Query(q): Query<NoticeQuery>,
) -> Response {
    if !viewer.may(tenant.as_str()) {
        return not_found(&viewer);
    }
    let w = web.clone();
    let name = tenant.clone();
    let data = blocking(move || {
        let t = w.ingest.store.require_tenant(name.as_str())?;
        let recent = w.ingest.store.imports(name.as_str(), 1000)?;
        let counts = w.ingest.store.record_counts(name.as_str())?;
        let exportable = super::exports::exportable_types(&w, &t);
        let waiting = w.ingest.waiting_files(&t, 50);
        Ok((t, recent, counts, exportable, waiting))
    })
    .await;
    let Ok((t, recent, counts, exportable, (waiting, waiting_count))) = data else {
        return not_found(&viewer);
    };
    let manages = viewer.manages(tenant.as_str());
    let mut latest = Vec::new();
    for r in &recent {
        if !latest.iter().any(|l: &ImportRecord| l.type_name == r.type_name) {
            latest.push(r.clone());
        }
    }
    let next = sluice_ingest::next_scheduled_run(&t, sluice_ingest::Timestamp::now());
    let body = html! {
        h1 { (tenant) }
        (notice(&viewer, &q))
        div.card {
            p {
                @match (&t.schedule, next) {
                    (Some(cron), Some(next)) => {
                        "Imports run on schedule " code { (cron.as_str()) } " (" (t.timezone) "); next: " (next.to_string())
                    },
                    _ => { "Imports run: " (t.trigger.as_str()) },
                }
                @if t.settle_secs > 0 && t.trigger == sluice_core::Trigger::OnUpload {
                    ", once uploads have been quiet " (t.settle_secs) " s"
                }
            }
            @for (type_name, cron) in &t.type_schedules {
                p {
                    (type_name) " waits for its own schedule " code { (cron.as_str()) } " (" (t.timezone) ")"
                    @if let Ok(Some(next)) = sluice_ingest::next_run(cron, &t.timezone, sluice_ingest::Timestamp::now()) {
                        "; next: " (next.to_string())
                    }
                }
            }
            @if let Some(b) = t.blackout_at(sluice_ingest::Timestamp::now()) {
                p { strong { "Blackout " (b.to_string()) ": " } "full files delete nothing they leave out." }
            }
            form method="post" action={ "/t/" (tenant) "/sync" } {
                (csrf_field(&viewer))
                button { "Sync now" }
                " "
                small { "imports every complete file waiting in the folders" }
            }
        }
        @if waiting_count > 0 {
            div.card #waiting {
                h2 { "Files waiting (" (waiting_count) ")" }
                p { "Complete files in the folders that no import has taken yet (the trigger is not on upload, or they wait for quiet): " strong { "Sync now" } " imports them." }
                div.wrap { table {
                    tr { th { "File" } th { "Bytes" } th { "Uploaded" } }
                    @for (path, size, at) in &waiting {
                        tr { td { code { (path) } } td { (size) } td { (when(*at)) } }
                    }
                } }
                @if waiting_count > waiting.len() { p { "... and " (waiting_count - waiting.len()) " more." } }
            }
        }
        div.card { h2 { "Latest import per type" } (import_rows(&latest)) }
        div.card { h2 { "Imports per day" } (chart(&recent, sluice_store::now_ms())) }
        div.card {
            h2 { "Records" }
            table {
                tr { th { "Type" } th { "Records" } }
                @for (ty, n) in &counts {
                    tr { td { a href={ "/t/" (tenant) "/records/" (super::records::part(ty)) } { (ty) } } td { (n) } }
                }
            }
            @if !exportable.is_empty() {
                form method="post" action={ "/t/" (tenant) "/export" } {
                    (csrf_field(&viewer))
                    p {
                        "Export "
                        select name="type" { @for ty in &exportable { option value=(ty) { (ty) } } }
                        " as "
                        select name="format" { option value="csv" { "CSV" } option value="xlsx" { "Excel (XLSX)" } }
                        " "
                        button { "Export now" }
                        " "
                        small { "into /exports, where your SFTP login downloads it" }
                    }
                }
            }
        }
        p {
            a href={ "/t/" (tenant) "/imports" } { "All imports" } " · "
            a href={ "/t/" (tenant) "/records" } { "Records" } " · "
            a href={ "/t/" (tenant) "/people" } { "People" } " · "
            a href={ "/t/" (tenant) "/exports" } { "Saved exports" } " · "
            // What only an owner or a granted user may open is not offered to the others.
            @if manages {
                a href={ "/t/" (tenant) "/sftp" } { "SFTP credentials" } " · "
                a href={ "/t/" (tenant) "/settings" } { "Settings" } " · "
                a href={ "/t/" (tenant) "/api-keys" } { "API keys" } " · "
                a href={ "/t/" (tenant) "/audit" } { "Audit log" } " · "
            }
            a href={ "/t/" (tenant) "/team" } { "Team" }
        }
    };
    page(tenant.as_str(), Some(&viewer), body).into_response()
}

pub async fn history(State(web): State<Web>, viewer: Viewer, TenantPath(tenant): TenantPath) -> Response {
    if !viewer.may(tenant.as_str()) {
        return not_found(&viewer);
    }
    let store = web.ingest.store.clone();
    let name = tenant.clone();
    let Ok(list) = blocking(move || Ok(store.imports(name.as_str(), 200)?)).await else {
        return not_found(&viewer);
    };
    let body = html! { h1 { "Imports of " (tenant) } (import_rows(&list)) };
    page("Imports", Some(&viewer), body).into_response()
}

#[derive(Deserialize)]
pub struct PageQuery {
    page: Option<usize>,
}

/// An import the viewer may see.
async fn visible(web: &Web, viewer: &Viewer, id: i64) -> Option<ImportRecord> {
    let store = web.ingest.store.clone();
    let record = blocking(move || Ok(store.import(id)?)).await.ok()??;
    viewer.may(&record.tenant).then_some(record)
}

pub async fn import_page(
    State(web): State<Web>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Query(q): Query<PageQuery>,
) -> Response {
    let Some(r) = visible(&web, &viewer, id).await else { return not_found(&viewer) };
    // Bounded, so that the offset and the next page's number cannot overflow.
    let page_no = q.page.unwrap_or(1).clamp(1, 1_000_000_000);
    let store = web.ingest.store.clone();
    let errors = blocking(move || Ok(store.import_errors(id, PAGE, (page_no - 1) * PAGE)?)).await;
    let Ok(errors) = errors else { return StatusCode::SERVICE_UNAVAILABLE.into_response() };
    let c = r.counts;
    let body = html! {
        h1 { "Import #" (id) " " (badge(r.status)) }
        div.card {
            p { strong { (r.file_name) } " · " (r.type_name) " · " (when(r.created_ms)) " · from " (r.source) }
            p {
                (c.rows) " rows: " (c.added) " added, " (c.updated) " updated, " (c.unchanged) " unchanged, "
                (c.deleted) " deleted, " (c.rejected) " rejected"
            }
            // The page's own buttons decide it; the command line's hint is not for here.
            @if let Some(m) = &r.message { p { (sluice_core::import::safeguard::without_cli_hint(m)) } }
            @if r.encoding.is_some() || r.delimiter.is_some() {
                p {
                    "Read as " (r.encoding.as_deref().unwrap_or("unknown encoding")) ", "
                    (r.delimiter.as_deref().unwrap_or("comma")) "-delimited"
                }
            }
            @for w in &r.warnings { p { "Warning: " (w) } }
            @if let Some((what, by, at)) = r.decision() {
                p { "Held by the safeguard; " (what) " by " (by) " on " (when(at)) "." }
            }
            @if r.status == ImportStatus::Held {
                p {
                    strong { "This import is held by the safeguard." }
                    " Approving applies it as it is, deletions included."
                }
                @if viewer.manages(&r.tenant) {
                    form.inline method="post" action={ "/imports/" (id) "/approve" } {
                        (csrf_field(&viewer)) button { "Approve" }
                    }
                    " "
                    form.inline method="post" action={ "/imports/" (id) "/discard" } {
                        (csrf_field(&viewer)) button.danger { "Discard" }
                    }
                } @else {
                    p { "An owner of the tenant, or a user they granted it, approves or discards it." }
                }
            }
            @if let (ImportStatus::Superseded, Some(by)) = (r.status, r.superseded_by) {
                p {
                    strong { "Superseded by " a href={ "/imports/" (by) } { "import #" (by) } }
                    ", a newer file of the same type applied after this one was held: approving this one \
                     would put older data over newer, so it can no longer be approved. Upload it again if \
                     it is still meant."
                }
            }
            @if r.held_file.is_some() {
                p { a href={ "/imports/" (id) "/file" } { "Download the file" } }
            }
            @if let (Some(by), Some(at)) = (&r.acknowledged_by, r.acknowledged_ms) {
                p { "Looked at by " (by) " on " (when(at)) "." }
            } @else if matches!(r.status, ImportStatus::Failed | ImportStatus::Incomplete) && viewer.manages(&r.tenant) {
                form.inline method="post" action={ "/imports/" (id) "/acknowledge" } {
                    (csrf_field(&viewer))
                    button { "Acknowledge" }
                    " " small { "it leaves the list of imports to look at" }
                }
            }
        }
        @if c.rejected > 0 {
            div.card {
                h2 { "Rejected rows" }
                p { a href={ "/imports/" (id) "/errors.csv" } { "Download the error report (CSV)" } }
                div.wrap { table {
                    tr { th { "Line" } th { "Key" } th { "Name" } th { "Column" } th { "Code" } th { "Reason" } th { "Value" } }
                    @for e in &errors {
                        tr {
                            td { (e.line) } td { (e.key) } td { (e.name) } td { (e.column) }
                            td { (e.code) } td { (e.reason) } td { code { (e.value) } }
                        }
                    }
                } }
                p {
                    "Page " (page_no) " "
                    @if page_no > 1 { a href={ "/imports/" (id) "?page=" (page_no - 1) } { "previous" } " " }
                    @if errors.len() == PAGE { a href={ "/imports/" (id) "?page=" (page_no + 1) } { "next" } }
                }
            }
        }
        p { a href={ "/t/" (r.tenant) } { "Back to " (r.tenant) } }
    };
    page(&format!("Import {id}"), Some(&viewer), body).into_response()
}

pub async fn kept_file(State(web): State<Web>, viewer: Viewer, Path(id): Path<i64>) -> Response {
    let Some(r) = visible(&web, &viewer, id).await else { return not_found(&viewer) };
    crate::kept_file(&r).unwrap_or_else(|| not_found(&viewer))
}

pub async fn errors_csv(State(web): State<Web>, viewer: Viewer, Path(id): Path<i64>) -> Response {
    if visible(&web, &viewer, id).await.is_none() {
        return not_found(&viewer);
    }
    let store = web.ingest.store.clone();
    let Ok(errors) = blocking(move || Ok(store.import_errors(id, sluice_store::STORED_ERRORS, 0)?)).await
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

pub async fn sync(
    State(web): State<Web>,
    viewer: Viewer,
    TenantPath(tenant): TenantPath,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !viewer.may(tenant.as_str()) {
        return not_found(&viewer);
    }
    if let Some(refused) = viewer.refuse_without_csrf(&form.csrf) {
        return refused;
    }
    let ingest = web.ingest.clone();
    let name = tenant.clone();
    let done = blocking(move || ingest.sync_tenant(name.as_str()).map_err(Failed::said)).await;
    let did = Did::new(Some(tenant.as_str()), action::IMPORT_SYNC, "files waiting", done.is_ok());
    crate::audit::record_off(&web, viewer.actor(), did).await;
    if let Err(Failed::Said(e)) = &done {
        tracing::warn!(tenant = tenant.as_str(), "sync from the dashboard: {e}");
    }
    // Back to the overview, saying what it did.
    super::reported(&viewer, done, &format!("/t/{tenant}"), "Sync failed", |found| match found {
        0 => "Sync: no file was waiting in the folders.".to_owned(),
        1 => "Sync: 1 file was waiting; its import is in the list below.".to_owned(),
        n => format!("Sync: {n} files were waiting; their imports are in the list below."),
    })
}

async fn decide(web: Web, viewer: Viewer, id: i64, csrf: &str, approve: bool) -> Response {
    let Some(r) = visible(&web, &viewer, id).await else { return not_found(&viewer) };
    // Approving overrides the safeguard, deletions included: as for settings, an owner's call.
    // (A stored import's tenant is a valid name; anything else is no page of the viewer's.)
    let Ok(tenant) = sluice_core::TenantName::parse(&r.tenant) else { return not_found(&viewer) };
    if let Some(refused) = managing(&viewer, &tenant) {
        return refused;
    }
    if let Some(refused) = viewer.refuse_without_csrf(csrf) {
        return refused;
    }
    let ingest = web.ingest.clone();
    let by = format!("{} (dashboard)", viewer.account.email);
    let done = blocking(move || {
        if approve { ingest.approve(id, &by).map(|_| ()) } else { ingest.discard(id, &by) }
            .map_err(Failed::said)
    })
    .await;
    let verb = if approve { action::IMPORT_APPROVE } else { action::IMPORT_DISCARD };
    let did = Did::new(Some(r.tenant.as_str()), verb, format!("import {id}"), done.is_ok());
    crate::audit::record_off(&web, viewer.actor(), did).await;
    match done {
        Ok(()) => Redirect::to(&format!("/imports/{id}")).into_response(),
        Err(Failed::Said(e)) => status_page(
            StatusCode::CONFLICT,
            "Not done",
            &viewer,
            html! {
                h1 { "Not done" }
                p { (e) }
                p { a href={ "/imports/" (id) } { "Back to import #" (id) } " of " (r.tenant) }
            },
        ),
        Err(Failed::Interrupted) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

pub async fn approve(
    State(web): State<Web>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Response {
    decide(web, viewer, id, &form.csrf, true).await
}

pub async fn discard(
    State(web): State<Web>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Response {
    decide(web, viewer, id, &form.csrf, false).await
}

/// "Acknowledge": someone who manages the tenant has looked at a failed or incomplete import.
pub async fn acknowledge(
    State(web): State<Web>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let Some(r) = visible(&web, &viewer, id).await else { return not_found(&viewer) };
    let Ok(tenant) = sluice_core::TenantName::parse(&r.tenant) else { return not_found(&viewer) };
    if let Some(refused) = managing(&viewer, &tenant) {
        return refused;
    }
    if let Some(refused) = viewer.refuse_without_csrf(&form.csrf) {
        return refused;
    }
    let store = web.ingest.store.clone();
    let by = format!("{} (dashboard)", viewer.account.email);
    let done = blocking(move || Ok(store.acknowledge_import(id, &by)?)).await;
    let did =
        Did::new(Some(tenant.as_str()), action::IMPORT_ACKNOWLEDGE, format!("import {id}"), done.is_ok());
    crate::audit::record_off(&web, viewer.actor(), did).await;
    super::reported(&viewer, done, &format!("/imports/{id}"), "Not acknowledged", |()| "Acknowledged.".into())
}

#[derive(Deserialize)]
pub struct TenantForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    enabled: String,
}

/// The operator's alone.
fn operator_only(viewer: &Viewer, csrf: &str) -> Option<Response> {
    if viewer.account.role != Role::Admin || viewer.account.tenant.is_some() {
        return Some(not_found(viewer));
    }
    viewer.refuse_without_csrf(csrf)
}

/// The operator adds a tenant (with the default folders), then sets its credentials.
pub async fn add_tenant(State(web): State<Web>, viewer: Viewer, Form(form): Form<TenantForm>) -> Response {
    if let Some(refused) = operator_only(&viewer, &form.csrf) {
        return refused;
    }
    let name = match sluice_core::TenantName::parse(form.name.trim()) {
        Ok(n) => n,
        Err(e) => return super::back_to(&viewer, "/", &format!("Not added: {e}")),
    };
    let (store, folders, n) = (web.ingest.store.clone(), web.tenant_folders.clone(), name.clone());
    let exports = web.exports.clone();
    let done = blocking(move || {
        // What a removal of an earlier tenant of this name left in the bucket is not this
        // one's (a tenant that exists keeps its exports: adding it again is refused).
        if store.tenant(&n)?.is_none() {
            let kept = exports.clear_leftovers(&n).map_err(|e| {
                tracing::warn!("tenant {n} not added: its folder in the bucket could not be cleared: {e}");
                Failed::Said("the object storage did not answer; nothing was added: try again".into())
            })?;
            if let Some((files, dir)) = kept {
                tracing::warn!(
                    "the bucket held {files} files under the name {n} (an earlier tenant's, or another deployment's \
                     under the same prefix): kept in {}, and the new tenant starts empty",
                    dir.display()
                );
            }
        }
        Ok(store.add_tenant(&n, &folders).map(drop)?)
    })
    .await;
    let did = Did::new(Some(name.as_str()), action::TENANT_ADD, name.as_str(), done.is_ok());
    crate::audit::record_off(&web, viewer.actor(), did).await;
    match done {
        Ok(()) => super::back_to(
            &viewer,
            &format!("/t/{name}/sftp"),
            &format!("Tenant {name} added: set its SFTP password or key."),
        ),
        Err(e) => super::reported(&viewer, Err::<(), _>(e), "/", "Not added", |()| String::new()),
    }
}

/// The operator disables a tenant (it can no longer log in; its sessions end) or enables it.
pub async fn set_enabled(State(web): State<Web>, viewer: Viewer, Form(form): Form<TenantForm>) -> Response {
    if let Some(refused) = operator_only(&viewer, &form.csrf) {
        return refused;
    }
    let Ok(name) = sluice_core::TenantName::parse(&form.name) else { return not_found(&viewer) };
    let enable = form.enabled == "1";
    let (store, n) = (web.ingest.store.clone(), name.clone());
    let done = blocking(move || Ok(store.set_disabled(&n, !enable)?)).await;
    let verb = if enable { action::TENANT_ENABLE } else { action::TENANT_DISABLE };
    let did = Did::new(Some(name.as_str()), verb, name.as_str(), done.is_ok());
    crate::audit::record_off(&web, viewer.actor(), did).await;
    let said = if enable {
        format!("{name} enabled.")
    } else {
        format!("{name} disabled: its SFTP sessions end now.")
    };
    super::reported(&viewer, done, "/", "Not changed", |()| said)
}
