//! "Export now" on a tenant's overview: any of the tenant's people puts a fresh CSV or XLSX
//! file of a type's records into the tenant's /exports (as `sluice export` and the API do);
//! and the tenant's saved exports page (`/t/{tenant}/exports`): listed with their recent runs,
//! run now by anyone of the tenant's, saved and removed by those who manage it.

use super::layout::{csrf_field, not_found, notice, page};
use super::{Failed, ManagedForm, NoticeQuery, TenantPath, Viewer, back_to, blocking, reported};
use crate::Web;
use crate::audit::Did;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;
use sluice_core::audit::action;
use sluice_core::import::TypeFormat;
use sluice_core::saved_export::{ExportFormat, ExportName, ExportWhen, RunCause, RunOutcome, SavedExport};
use sluice_core::views::{ExportRunView, SavedExportView};

#[derive(Deserialize)]
pub struct ExportForm {
    #[serde(default)]
    csrf: String,
    #[serde(default, rename = "type")]
    type_name: String,
    #[serde(default)]
    format: String,
}

pub async fn export_now(
    State(web): State<Web>,
    viewer: Viewer,
    TenantPath(tenant): TenantPath,
    Form(form): Form<ExportForm>,
) -> Response {
    if !viewer.may(tenant.as_str()) {
        return not_found(&viewer);
    }
    if let Some(refused) = viewer.refuse_without_csrf(&form.csrf) {
        return refused;
    }
    let here = format!("/t/{tenant}");
    let name = tenant.clone();
    let (audit_web, what) = (web.clone(), form.type_name.clone());
    let done = blocking(move || {
        let asked = crate::ExportAsked {
            type_name: &form.type_name,
            format: &form.format,
            columns: &[],
            filters: &[],
            bom: form.format == "csv",
        };
        match crate::export_for(&web, &name, asked) {
            Ok(done) => Ok(done),
            Err(crate::ExportRefused::NotTheirs) => Err(Failed::said("this tenant takes no such type")),
            Err(crate::ExportRefused::Bad(why)) => Err(Failed::Said(why)),
            Err(crate::ExportRefused::Failed(_)) => {
                Err(Failed::said("the file could not be written; the server log says why"))
            }
        }
    })
    .await;
    if matches!(done, Err(Failed::Interrupted)) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let did = Did::new(Some(tenant.as_str()), action::EXPORT_WRITE, what, done.is_ok());
    crate::audit::record_off(&audit_web, viewer.actor(), did).await;
    reported(&viewer, done, &here, "Not exported", |(d, ty)| {
        format!("Exported {} {ty} records to {} ({} bytes).", d.written.rows, d.path, d.written.bytes)
    })
}

/// A tenant's saved exports: what each writes and when, its last runs, "Run now" for anyone
/// of the tenant's, and (for those who manage the tenant, as for settings) saving and removing.
pub async fn exports_page(
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
        let saved = w.ingest.store.saved_exports(name.as_str())?;
        let connectors = w.ingest.store.connectors(name.as_str())?;
        let runs = w.ingest.store.export_runs(name.as_str(), None, 30)?;
        let exportable = exportable_types(&w, &t);
        Ok((t, saved, runs, exportable, connectors))
    })
    .await;
    let Ok((t, saved, runs, exportable, connectors)) = data else { return not_found(&viewer) };
    let manages = viewer.manages(tenant.as_str());
    let body = html! {
        h1 { "Exports of " (tenant) }
        (notice(&viewer, &q))
        div.card {
            h2 { "Saved exports" }
            p { small { "Each writes /exports/NAME.csv or .xlsx, where your SFTP login downloads it; schedules are read in " (t.timezone) "." } }
            div.wrap { table {
                tr { th { "Name" } th { "Type" } th { "Format" } th { "Columns" } th { "Where" } th { "Runs" } th {} }
                @for e in &saved {
                    @let view = SavedExportView::from(e);
                    tr {
                        td {
                            (view.name) br; small { code { (view.path) } }
                            @if let Some(to) = &view.to { br; small { "and pushed to " (to) } }
                        }
                        td { (view.type_name) }
                        td { (e.format.extension()) }
                        td { @if e.columns.is_empty() { "all" } @else { (e.columns.join(", ")) } }
                        td { (e.filters.join(", ")) }
                        td { (when_text(&e.when)) }
                        td {
                            form.inline method="post" action={ "/t/" (tenant) "/exports/run" } {
                                (csrf_field(&viewer))
                                input type="hidden" name="name" value=(view.name);
                                button { "Run now" }
                            }
                            @if manages {
                                " "
                                form.inline method="post" action={ "/t/" (tenant) "/exports/remove" } {
                                    (csrf_field(&viewer))
                                    input type="hidden" name="name" value=(view.name);
                                    button.danger { "Remove" }
                                }
                            }
                        }
                    }
                }
            } }
            @if saved.is_empty() { p { "No saved exports yet." } }
            @if manages && !exportable.is_empty() {
                h2 { "Save an export" }
                form method="post" action={ "/t/" (tenant) "/exports" } {
                    (csrf_field(&viewer))
                    p {
                        label { "Name " input name="name" required pattern="[A-Za-z0-9][A-Za-z0-9._-]{0,63}" placeholder="nightly-roster"; }
                        " "
                        label { "Type " select name="type" { @for ty in &exportable { option value=(ty) { (ty) } } } }
                        " "
                        label { "Format " select name="format" { option value="csv" { "CSV" } option value="xlsx" { "Excel (XLSX)" } option value="photos" { "Photos (one image per record, into /exports/photos/)" } } }
                    }
                    p { label { "Columns (comma-separated, empty for all) " input name="columns" placeholder="sisId,lastName"; } }
                    p { label { "Only records where (COLUMN=VALUE, comma-separated) " input name="where" placeholder="grade=9"; } }
                    p { label { "Runs " input name="when" value="on_demand"; } " " small { "on_demand, after_import, or a cron schedule such as " code { "0 6 * * 1-5" } } }
                    @if !connectors.is_empty() {
                        p { label { "Also push to " select name="to" {
                            option value="" { "nowhere (only /exports)" }
                            @for c in &connectors { option value=(c.name) { (c.name) " (" (c.address) ")" } }
                        } } }
                    }
                    p { button { "Save export" } }
                }
            }
        }
        div.card {
            h2 { "Recent runs" }
            div.wrap { table {
                tr { th { "Started" } th { "Export" } th { "Why" } th { "Outcome" } }
                @for r in &runs {
                    @let view = ExportRunView::from(r);
                    tr {
                        td { (super::when(view.started_ms)) }
                        td { (view.export) }
                        td { (view.cause.as_str()) }
                        td {
                            @match (&view.destination, &view.error) {
                                (Some(to), _) => { (view.rows.unwrap_or(0)) " records to " code { (to) } },
                                (_, Some(why)) => { span.error { "failed: " (why) } },
                                _ => { "running" },
                            }
                        }
                    }
                }
            } }
        }
        p { a href={ "/t/" (tenant) } { "Back to " (tenant) } }
    };
    page("Exports", Some(&viewer), body).into_response()
}

/// The types an export can be made of: the tenant's CSV types.
pub(super) fn exportable_types(web: &Web, t: &sluice_core::Tenant) -> Vec<String> {
    web.ingest
        .tenant_types(t)
        .into_iter()
        .filter(|ty| web.ingest.types.get(ty).is_some_and(|t| t.format == TypeFormat::Csv))
        .collect()
}

fn when_text(when: &ExportWhen) -> String {
    match when {
        ExportWhen::OnDemand => "on demand".to_owned(),
        ExportWhen::AfterImport => "after each import that changes records".to_owned(),
        ExportWhen::Schedule(cron) => format!("on schedule {cron}"),
    }
}

#[derive(Deserialize)]
pub struct SavedExportForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default, rename = "type")]
    type_name: String,
    #[serde(default)]
    format: String,
    #[serde(default)]
    columns: String,
    #[serde(default, rename = "where")]
    filters: String,
    #[serde(default)]
    when: String,
    /// A connector's name, or empty.
    #[serde(default)]
    to: String,
}

posted!(SavedExportForm);

/// Comma-separated and trimmed, empty parts dropped.
fn list(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

pub async fn save_export(
    State(web): State<Web>,
    ManagedForm { viewer, tenant, form }: ManagedForm<SavedExportForm>,
) -> Response {
    let here = format!("/t/{tenant}/exports");
    let name = tenant.clone();
    let (audit_web, what) = (web.clone(), form.name.trim().to_owned());
    let done = blocking(move || {
        let export = ExportName::parse(form.name.trim()).map_err(Failed::said)?;
        let format = ExportFormat::parse(&form.format)
            .ok_or_else(|| Failed::said("the format is csv, xlsx or photos"))?;
        let when = ExportWhen::parse(&form.when).map_err(Failed::said)?;
        let t = web.ingest.store.require_tenant(name.as_str())?;
        let asked = SavedExport {
            name: export,
            type_name: form.type_name,
            format,
            columns: list(&form.columns),
            filters: list(&form.filters),
            bom: format == ExportFormat::Csv,
            when,
            push_to: match form.to.trim() {
                "" => None,
                to => Some(sluice_core::connector::ConnectorName::parse(to).map_err(Failed::said)?),
            },
            in_exports: true,
        };
        let saved = sluice_export::saved::checked(&web.ingest.types, &t, asked).map_err(Failed::said)?;
        web.ingest.store.save_export(name.as_str(), &saved, false)?;
        Ok(saved.file_name())
    })
    .await;
    let did = Did::new(Some(tenant.as_str()), action::EXPORT_SAVE, what, done.is_ok());
    crate::audit::record_off(&audit_web, viewer.actor(), did).await;
    reported(&viewer, done, &here, "Not saved", |file| format!("Saved: it writes /exports/{file}."))
}

pub async fn remove_export(
    State(web): State<Web>,
    ManagedForm { viewer, tenant, form }: ManagedForm<SavedExportForm>,
) -> Response {
    let here = format!("/t/{tenant}/exports");
    let name = tenant.clone();
    let export = form.name.clone();
    let audit_web = web.clone();
    let done = blocking(move || Ok(web.ingest.store.remove_saved_export(name.as_str(), &export)?)).await;
    let did = Did::new(Some(tenant.as_str()), action::EXPORT_REMOVE, form.name.clone(), done.is_ok());
    crate::audit::record_off(&audit_web, viewer.actor(), did).await;
    reported(&viewer, done, &here, "Not removed", |()| {
        format!("Export {} removed; /exports keeps its last file.", form.name)
    })
}

#[derive(Deserialize)]
pub struct RunForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

/// "Run now": anyone of the tenant's may run a saved export, as anyone may "Export now".
pub async fn run_export(
    State(web): State<Web>,
    viewer: Viewer,
    TenantPath(tenant): TenantPath,
    Form(form): Form<RunForm>,
) -> Response {
    if !viewer.may(tenant.as_str()) {
        return not_found(&viewer);
    }
    if let Some(refused) = viewer.refuse_without_csrf(&form.csrf) {
        return refused;
    }
    let here = format!("/t/{tenant}/exports");
    let slot = match web.run_slots.try_take(&tenant, &form.name) {
        Ok(slot) => slot,
        Err(sluice_export::saved::Busy::Running) => {
            return back_to(&viewer, &here, &format!("Not run: export {} is running now.", form.name));
        }
        Err(sluice_export::saved::Busy::Full) => {
            return back_to(
                &viewer,
                &here,
                "Not run: sluice is running as many exports as it may; try again in a moment.",
            );
        }
    };
    let name = tenant.clone();
    let (audit_web, what) = (web.clone(), form.name.clone());
    let done = blocking(move || {
        let _slot = slot;
        let store = &*web.ingest.store;
        let saved = store
            .saved_export(name.as_str(), &form.name)?
            .ok_or_else(|| Failed::said("there is no such saved export"))?;
        let ran = web.export_runner().run(store, &name, &saved, RunCause::OnDemand)?;
        match ran.outcome {
            RunOutcome::Written { rows, bytes, destination } => {
                Ok(format!("Export {} wrote {rows} records to {destination} ({bytes} bytes).", saved.name))
            }
            RunOutcome::Failed(why) => Err(Failed::Said(format!("run {} failed: {why}", ran.id))),
        }
    })
    .await;
    let did = Did::new(Some(tenant.as_str()), action::EXPORT_RUN, what, done.is_ok());
    crate::audit::record_off(&audit_web, viewer.actor(), did).await;
    reported(&viewer, done, &here, "Not exported", |said| said)
}
