//! Records and people, for browsing: a tenant's record types (`/t/{tenant}/records`), one type's
//! records searched, sorted and paged (`/records/{type}`, the store's indexed search), one
//! record with every field, its person and their other roles, the records it refers to and
//! that refer to it, and the imports that wrote it (`/records/{type}/{key}`); deleting it, for
//! those who manage the tenant, after a confirmation page that lists what refers to it
//! (`/records/{type}/{key}/delete`); people searched (`/people`) and one person with every role
//! (`/people/{id}`).
//!
//! Keys travel in paths as shown (a key of several columns joined by `+`), percent-encoded
//! whole; a path's tenant is parsed into a `TenantName` here (these paths carry more than the
//! tenant, which `TenantPath` reads alone).

use super::layout::{csrf_field, not_found, notice, page, status_page};
use super::{Failed, NoticeQuery, Viewer, back_to, blocking, managing, when};
use crate::Web;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;
use sluice_core::TenantName;
use sluice_core::import::{ImportType, TypeFormat};
use sluice_ingest::DeleteError;
use sluice_store::{Person, RecordQuery, RecordSort, StoreError, StoredRecord};

/// Records (and people) per page.
const PAGE: usize = 50;

/// A path part: every byte but letters and digits percent-encoded (keys may hold `/`, `?`, `+`).
pub(super) fn part(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

fn record_href(tenant: &str, type_name: &str, shown_key: &str) -> String {
    format!("/t/{tenant}/records/{}/{}", part(type_name), part(shown_key))
}

/// The tenant of a path, if the viewer may see it (else the page is not found).
fn seen_tenant(viewer: &Viewer, raw: &str) -> Option<TenantName> {
    TenantName::parse(raw).ok().filter(|t| viewer.may(t.as_str()))
}

/// A record type the tenant's records can be of: a CSV type, or a file of a package
/// (`oneroster.users`); `None` for a package's own type, which holds no records itself.
fn record_type<'a>(web: &'a Web, type_name: &str) -> Option<Option<&'a ImportType>> {
    let types = &web.ingest.types;
    match types.get(type_name) {
        Some(t) if t.format == TypeFormat::Csv => Some(Some(t)),
        Some(_) => None,
        None if types.has_records_of(type_name) => Some(None),
        None => None,
    }
}

fn shown(t: Option<&ImportType>, key: &str) -> String {
    t.map_or_else(|| key.replace('\u{1f}', "+"), |t| t.shown_key(key))
}

/// (column, value) pairs of a record: a CSV type's array in its column order, a package
/// file's object as it is.
fn fields(t: Option<&ImportType>, data: &str) -> Vec<(String, String)> {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    match (t, serde_json::from_str::<Value>(data)) {
        (Some(t), Ok(Value::Array(values))) => {
            t.columns.iter().zip(values.iter()).map(|(c, v)| (c.name.clone(), text(v))).collect()
        }
        (_, Ok(Value::Object(map))) => map.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
        _ => Vec::new(),
    }
}

/// The record's photo, when it has one (`url`: its image, served by [`photo_image`]).
fn photo(url: Option<&str>) -> Markup {
    html! {
        @if let Some(url) = url { img.photo src=(url) alt="Photo" style="max-width:160px;float:right"; }
    }
}

/// A record's photo (the image itself), for those who may see the tenant.
pub async fn photo_image(
    State(web): State<Web>,
    viewer: Viewer,
    Path((raw, type_name, key)): Path<(String, String, String)>,
) -> Response {
    let Some(tenant) = seen_tenant(&viewer, &raw) else { return not_found(&viewer) };
    let stored = record_type(&web, &type_name).flatten().map_or_else(|| key.clone(), |t| t.stored_key(&key));
    let w = web.clone();
    match blocking(move || Ok(crate::photo_response(&w, tenant.as_str(), &type_name, &stored)?)).await {
        Ok(Some(image)) => image,
        Ok(None) | Err(Failed::Said(_)) => not_found(&viewer),
        Err(Failed::Interrupted) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

pub async fn types_page(State(web): State<Web>, viewer: Viewer, Path(raw): Path<String>) -> Response {
    let Some(tenant) = seen_tenant(&viewer, &raw) else { return not_found(&viewer) };
    let store = web.ingest.store.clone();
    let name = tenant.clone();
    let Ok(counts) = blocking(move || Ok(store.record_counts(name.as_str())?)).await else {
        return not_found(&viewer);
    };
    let body = html! {
        h1 { "Records of " (tenant) }
        div.card {
            table {
                tr { th { "Type" } th { "Records" } }
                @for (ty, n) in &counts {
                    tr { td { a href={ "/t/" (tenant) "/records/" (part(ty)) } { (ty) } } td { (n) } }
                }
            }
            p { a href={ "/t/" (tenant) "/people" } { "People" } }
        }
    };
    page("Records", Some(&viewer), body).into_response()
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SortBy {
    #[default]
    Key,
    Name,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    #[default]
    Asc,
    Desc,
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    sort: SortBy,
    #[serde(default)]
    order: Order,
    page: Option<usize>,
    #[serde(default)]
    done: String,
    #[serde(default)]
    sig: String,
}

pub async fn records_page(
    State(web): State<Web>,
    viewer: Viewer,
    Path((raw, type_name)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> Response {
    let Some(tenant) = seen_tenant(&viewer, &raw) else { return not_found(&viewer) };
    let Some(t) = record_type(&web, &type_name) else { return not_found(&viewer) };
    let t = t.cloned();
    // Bounded, so that the offset and the next page's number cannot overflow.
    let page_no = q.page.unwrap_or(1).clamp(1, 1_000_000);
    let query = RecordQuery {
        q: q.q.clone(),
        sort: if q.sort == SortBy::Name { RecordSort::Name } else { RecordSort::Key },
        descending: q.order == Order::Desc,
        limit: PAGE,
        offset: (page_no - 1) * PAGE,
        ..RecordQuery::default()
    };
    let store = web.ingest.store.clone();
    let (name, ty) = (tenant.clone(), type_name.clone());
    let Ok(found) = blocking(move || Ok(store.search_records(name.as_str(), &ty, &query)?)).await else {
        return not_found(&viewer);
    };
    let columns: Vec<String> = match &t {
        Some(t) => t.columns.iter().map(|c| c.name.clone()).collect(),
        None => found
            .records
            .first()
            .map(|r| fields(None, &r.data).into_iter().map(|(k, _)| k).collect())
            .unwrap_or_default(),
    };
    let here = format!("/t/{tenant}/records/{}", part(&type_name));
    let link = |p: usize| {
        format!(
            "{here}?q={}&sort={}&order={}&page={p}",
            part(&q.q),
            if q.sort == SortBy::Name { "name" } else { "key" },
            if q.order == Order::Desc { "desc" } else { "asc" }
        )
    };
    let notice_q = NoticeQuery { done: q.done.clone(), sig: q.sig.clone() };
    let body = html! {
        h1 { (type_name) " records of " (tenant) }
        (notice(&viewer, &notice_q))
        form.card method="get" action=(here) {
            input type="search" name="q" value=(q.q) placeholder="Key, name or email" aria-label="Search";
            " "
            select name="sort" aria-label="Sort by" {
                option value="key" selected[q.sort == SortBy::Key] { "by key" }
                option value="name" selected[q.sort == SortBy::Name] { "by name" }
            }
            " "
            select name="order" aria-label="Order" {
                option value="asc" selected[q.order == Order::Asc] { "ascending" }
                option value="desc" selected[q.order == Order::Desc] { "descending" }
            }
            " "
            button { "Search" }
        }
        p.count {
            @if q.q.is_empty() { (found.total) " records" } @else { (found.total) " records match " strong { (q.q) } }
        }
        div.wrap { table {
            tr { th { "Key" } @for c in &columns { th { (c) } } }
            @for r in &found.records {
                @let key = shown(t.as_ref(), &r.key);
                tr {
                    td {
                        a href=(record_href(tenant.as_str(), &type_name, &key)) { (key) }
                        @if r.inactive { " " span.badge.discarded { "deactivated" } }
                    }
                    @for (_, v) in fields(t.as_ref(), &r.data) { td { (v) } }
                }
            }
        } }
        p {
            "Page " (page_no) " "
            @if page_no > 1 { a href=(link(page_no - 1)) { "previous" } " " }
            @if (page_no * PAGE) < found.total as usize { a href=(link(page_no + 1)) { "next" } }
        }
        p { a href={ "/t/" (tenant) "/records" } { "All record types" } " · " a href={ "/t/" (tenant) } { "Back to " (tenant) } }
    };
    page(&format!("{type_name} records"), Some(&viewer), body).into_response()
}

/// Everything the record page shows.
struct RecordView {
    record: StoredRecord,
    has_photo: bool,
    person: Option<Person>,
    referring: Vec<sluice_store::Referring>,
    imports: Vec<sluice_store::ImportRecord>,
}

pub async fn record_page(
    State(web): State<Web>,
    viewer: Viewer,
    Path((raw, type_name, key)): Path<(String, String, String)>,
    Query(q): Query<NoticeQuery>,
) -> Response {
    let Some(tenant) = seen_tenant(&viewer, &raw) else { return not_found(&viewer) };
    let Some(t) = record_type(&web, &type_name) else { return not_found(&viewer) };
    let t = t.cloned();
    let stored = t.as_ref().map_or_else(|| key.clone(), |t| t.stored_key(&key));
    let w = web.clone();
    let (name, ty) = (tenant.clone(), type_name.clone());
    let referrers = t.as_ref().map(|t| web.ingest.referrers_of(t)).unwrap_or_default();
    let view = blocking(move || {
        let store = &w.ingest.store;
        let Some(record) = store.record(name.as_str(), &ty, &stored)? else {
            return Ok(Err(store.tombstone(name.as_str(), &ty, &stored)?));
        };
        let person = store.person_of(name.as_str(), &ty, &stored)?;
        let referring = store.referring(name.as_str(), &stored, &referrers, 20)?;
        let mut imports = Vec::new();
        for id in [record.created_import, record.updated_import] {
            if let Some(i) = store.import(id)?
                && !imports.iter().any(|x: &sluice_store::ImportRecord| x.id == i.id)
            {
                imports.push(i);
            }
        }
        let has_photo = store.photo(name.as_str(), &ty, &stored)?.is_some();
        Ok(Ok(RecordView { record, has_photo, person, referring, imports }))
    })
    .await;
    let view = match view {
        Ok(Ok(v)) => v,
        // A record deleted by hand: the page says by whom and when.
        Ok(Err(Some(gone))) => {
            return status_page(
                StatusCode::NOT_FOUND,
                "Deleted",
                &viewer,
                html! {
                    h1 { (type_name) " " (key) }
                    p {
                        "This record was deleted by " (gone.deleted_by) " on " (when(gone.deleted_ms))
                        ". The next import that carries it adds it back and says so."
                    }
                    p { a href={ "/t/" (tenant) "/records/" (part(&type_name)) } { "All " (type_name) " records" } }
                },
            );
        }
        Ok(Err(None)) | Err(Failed::Said(_)) => return not_found(&viewer),
        Err(Failed::Interrupted) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    let r = &view.record;
    let shown_key = shown(t.as_ref(), &r.key);
    let values = fields(t.as_ref(), &r.data);
    // The records this one refers to: each reference's column, linked to the record it names.
    let refers_to: Vec<(String, String, String)> = t
        .as_ref()
        .map(|t| {
            t.references
                .iter()
                .filter_map(|rf| {
                    let (column, value) = values.get(rf.column)?;
                    (!value.is_empty()).then(|| (column.clone(), rf.to_type.clone(), value.clone()))
                })
                .collect()
        })
        .unwrap_or_default();
    let deletable = t.is_some() && viewer.manages(tenant.as_str());
    // The last change, field by field: (column, before, after) of each value that differs.
    let changes: Vec<(String, String, String)> = r
        .previous
        .as_ref()
        .map(|(_, data)| {
            let before = fields(t.as_ref(), data);
            let mut out: Vec<(String, String, String)> = values
                .iter()
                .filter_map(|(column, now)| {
                    let was = before.iter().find(|(c, _)| c == column).map_or("", |(_, v)| v.as_str());
                    (was != now).then(|| (column.clone(), was.to_owned(), now.clone()))
                })
                .collect();
            // A field the record no longer has.
            out.extend(
                before
                    .iter()
                    .filter(|(c, _)| !values.iter().any(|(n, _)| n == c))
                    .map(|(c, v)| (c.clone(), v.clone(), String::new())),
            );
            out
        })
        .unwrap_or_default();
    let body = html! {
        h1 {
            (type_name) " " (shown_key)
            @if r.inactive { " " span.badge.discarded { "deactivated" } }
        }
        (notice(&viewer, &q))
        div.card {
            (photo(view.has_photo.then(|| format!("/t/{tenant}/records/{}/{}/photo", part(&type_name), part(&key))).as_deref()))
            h2 { "Fields" }
            div.wrap { table.fields {
                @for (c, v) in &values { tr { th { (c) } td { (v) } } }
            } }
        }
        div.card {
            h2 { "Person" }
            @match &view.person {
                Some(p) => {
                    p {
                        a href={ "/t/" (tenant) "/people/" (p.id) } { (p.contact.first_name) " " (p.contact.last_name) }
                        @if !p.contact.email.is_empty() { " · " (p.contact.email) }
                    }
                    @let others: Vec<_> = p.roles.iter().filter(|x| !(x.type_name == type_name && x.key == r.key)).collect();
                    @if !others.is_empty() {
                        p { "Also: "
                            @for x in others {
                                a href=(record_href(tenant.as_str(), &x.type_name, &shown(web.ingest.types.get(&x.type_name), &x.key))) {
                                    (x.role) " (" (x.type_name) " " (shown(web.ingest.types.get(&x.type_name), &x.key)) ")"
                                }
                                " "
                            }
                        }
                    }
                },
                None => p { "This record is no person's role." },
            }
        }
        div.card.relationships {
            h2 { "Relationships" }
            @if refers_to.is_empty() && view.referring.iter().all(|x| x.sample.is_empty()) {
                p { "None." }
            }
            @for (column, to_type, value) in &refers_to {
                // A reference to the first of several key columns names records, not one.
                @let whole = web.ingest.types.get(to_type).is_none_or(|t| t.key.len() == 1);
                @let href = if whole {
                    record_href(tenant.as_str(), to_type, value)
                } else {
                    format!("/t/{tenant}/records/{}?q={}", part(to_type), part(value))
                };
                p { (column) ": " a href=(href) { (to_type) " " (value) } }
            }
            @for x in view.referring.iter().filter(|x| !x.sample.is_empty()) {
                p {
                    (x.referrer.from_type) " referring to it: "
                    @for (k, inactive) in &x.sample {
                        @let k = shown(web.ingest.types.get(&x.referrer.from_type), k);
                        a href=(record_href(tenant.as_str(), &x.referrer.from_type, &k)) { (k) }
                        @if *inactive { " (deactivated)" }
                        " "
                    }
                    @if x.active as usize > x.sample.len() { "… (" (x.active) " active in all)" }
                }
            }
        }
        div.card {
            h2 { "History" }
            @for i in &view.imports {
                p {
                    @if i.id == r.created_import { "Added" } @if i.id == r.created_import && i.id == r.updated_import { " and last written" }
                    @if i.id != r.created_import { "Last changed" }
                    " by " a href={ "/imports/" (i.id) } { "import #" (i.id) } " (" (i.file_name) ", " (when(i.created_ms)) ")"
                    @if i.id == r.updated_import && let Some(line) = r.line { ", line " (line) }
                }
            }
            @if let Some((before_import, _)) = &r.previous {
                @if changes.is_empty() {
                    p { "Before it: written by import #" (before_import) " with the same values (only its status or line changed)." }
                } @else {
                    p { "What that import changed (before it, as import #" (before_import) " had written it):" }
                    div.wrap { table.changes {
                        tr { th { "Field" } th { "Before" } th { "After" } }
                        @for (column, before, after) in &changes {
                            tr { td { (column) } td { (before) } td { (after) } }
                        }
                    } }
                }
            }
            p { small { "sluice keeps each record's current values and those before its last change." } }
        }
        @if deletable {
            form method="get" action={ (record_href(tenant.as_str(), &type_name, &shown_key)) "/delete" } {
                button.danger { "Delete…" }
            }
        }
        p { a href={ "/t/" (tenant) "/records/" (part(&type_name)) } { "All " (type_name) " records" } }
    };
    page(&format!("{type_name} {shown_key}"), Some(&viewer), body).into_response()
}

/// What refers to a record, and what deleting it does to each: the confirmation page.
pub async fn delete_page(
    State(web): State<Web>,
    viewer: Viewer,
    Path((raw, type_name, key)): Path<(String, String, String)>,
) -> Response {
    let Some(tenant) = seen_tenant(&viewer, &raw) else { return not_found(&viewer) };
    if let Some(refused) = managing(&viewer, &tenant) {
        return refused;
    }
    let Ok(t) = web.ingest.deletable(&type_name) else { return not_found(&viewer) };
    let stored = t.stored_key(&key);
    let referrers = web.ingest.referrers_of(t);
    let w = web.clone();
    let (name, ty) = (tenant.clone(), type_name.clone());
    let found = blocking(move || {
        let store = &w.ingest.store;
        if store.record(name.as_str(), &ty, &stored)?.is_none() {
            return Ok(None);
        }
        Ok(Some(store.referring(name.as_str(), &stored, &referrers, 20)?))
    })
    .await;
    let referring = match found {
        Ok(Some(r)) => r,
        Ok(None) | Err(Failed::Said(_)) => return not_found(&viewer),
        Err(Failed::Interrupted) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    let referring: Vec<_> = referring.into_iter().filter(|x| x.active > 0).collect();
    let href = record_href(tenant.as_str(), &type_name, &key);
    let body = html! {
        h1 { "Delete " (type_name) " " (key) "?" }
        div.card {
            p { "The record is deleted, and it stops being its person's role (a person left without a role is removed)." }
            @if referring.is_empty() {
                p { "No record refers to it." }
            } @else {
                ul.referring {
                    @for x in &referring {
                        li {
                            (x.active) " " (x.referrer.from_type) " refer to it: "
                            @for (k, _) in x.sample.iter().filter(|(_, inactive)| !inactive) {
                                @let k = shown(web.ingest.types.get(&x.referrer.from_type), k);
                                a href=(record_href(tenant.as_str(), &x.referrer.from_type, &k)) { (k) } " "
                            }
                            " — "
                            @match x.referrer.on_delete {
                                sluice_core::import::OnDelete::Deactivate => "they will be deactivated",
                                _ => "they will be kept as they are, naming a record that is gone",
                            }
                        }
                    }
                }
            }
            p { "If a later import carries this key again, it adds the record back and says so." }
            form.inline method="post" action={ (href) "/delete" } {
                (csrf_field(&viewer))
                button.danger { "Delete " (type_name) " " (key) }
            }
            " "
            a href=(href) { "Cancel" }
        }
    };
    page("Delete a record", Some(&viewer), body).into_response()
}

#[derive(Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    csrf: String,
}

/// The confirmed deletion: the confirmation page said what happens to what refers to it.
pub async fn delete_record(
    State(web): State<Web>,
    viewer: Viewer,
    Path((raw, type_name, key)): Path<(String, String, String)>,
    Form(form): Form<DeleteForm>,
) -> Response {
    let Some(tenant) = seen_tenant(&viewer, &raw) else { return not_found(&viewer) };
    if let Some(refused) = managing(&viewer, &tenant) {
        return refused;
    }
    if let Some(refused) = viewer.refuse_without_csrf(&form.csrf) {
        return refused;
    }
    let Ok(t) = web.ingest.deletable(&type_name) else { return not_found(&viewer) };
    let stored = t.stored_key(&key);
    let by = format!("{} (dashboard)", viewer.account.email);
    let ingest = web.ingest.clone();
    let (name, ty) = (tenant.clone(), type_name.clone());
    let done = blocking(move || {
        ingest.delete_records(name.as_str(), &ty, &[stored], &by, true).map_err(|e| match e {
            DeleteError::Store(StoreError::NoSuchRecord { .. }) => Failed::Said(String::new()),
            e => Failed::said(e),
        })
    })
    .await;
    let did = crate::audit::Did::new(
        Some(tenant.as_str()),
        sluice_core::audit::action::RECORD_DELETE,
        format!("{type_name} {key}"),
        done.is_ok(),
    );
    crate::audit::record_off(&web, viewer.actor(), did).await;
    match done {
        Ok(d) => {
            let mut said = format!("Deleted {type_name} {key}.");
            if d.deactivated > 0 {
                said.push_str(&format!(" {} records referring to it were deactivated.", d.deactivated));
            }
            if d.kept > 0 {
                said.push_str(&format!(" {} records referring to it were kept.", d.kept));
            }
            back_to(&viewer, &format!("/t/{tenant}/records/{}", part(&type_name)), &said)
        }
        Err(Failed::Said(e)) if e.is_empty() => not_found(&viewer),
        Err(Failed::Said(e)) => status_page(
            StatusCode::CONFLICT,
            "Not deleted",
            &viewer,
            html! { h1 { "Not deleted" } p { (e) } p { a href=(record_href(tenant.as_str(), &type_name, &key)) { "Back" } } },
        ),
        Err(Failed::Interrupted) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

#[derive(Deserialize)]
pub struct PeopleQuery {
    #[serde(default)]
    q: String,
    page: Option<usize>,
}

fn roles(web: &Web, tenant: &str, p: &Person) -> Markup {
    html! {
        @for x in &p.roles {
            @let k = shown(web.ingest.types.get(&x.type_name), &x.key);
            a href=(record_href(tenant, &x.type_name, &k)) { (x.role) " (" (x.type_name) " " (k) ")" } " "
        }
    }
}

pub async fn people_page(
    State(web): State<Web>,
    viewer: Viewer,
    Path(raw): Path<String>,
    Query(q): Query<PeopleQuery>,
) -> Response {
    let Some(tenant) = seen_tenant(&viewer, &raw) else { return not_found(&viewer) };
    let page_no = q.page.unwrap_or(1).clamp(1, 1_000_000);
    let store = web.ingest.store.clone();
    let (name, words) = (tenant.clone(), q.q.clone());
    let Ok((total, people)) =
        blocking(move || Ok(store.search_people(name.as_str(), &words, PAGE, (page_no - 1) * PAGE)?)).await
    else {
        return not_found(&viewer);
    };
    let link = |p: usize| format!("/t/{tenant}/people?q={}&page={p}", part(&q.q));
    let body = html! {
        h1 { "People of " (tenant) }
        form.card method="get" action={ "/t/" (tenant) "/people" } {
            input type="search" name="q" value=(q.q) placeholder="Name or email" aria-label="Search";
            " " button { "Search" }
        }
        p.count { (total) " people" }
        div.wrap { table {
            tr { th { "Name" } th { "Email" } th { "Roles" } }
            @for p in &people {
                tr {
                    td { a href={ "/t/" (tenant) "/people/" (p.id) } { (p.contact.last_name) ", " (p.contact.first_name) } }
                    td { (p.contact.email) }
                    td { (roles(&web, tenant.as_str(), p)) }
                }
            }
        } }
        p {
            "Page " (page_no) " "
            @if page_no > 1 { a href=(link(page_no - 1)) { "previous" } " " }
            @if (page_no * PAGE) < total as usize { a href=(link(page_no + 1)) { "next" } }
        }
    };
    page("People", Some(&viewer), body).into_response()
}

pub async fn person_page(
    State(web): State<Web>,
    viewer: Viewer,
    Path((raw, id)): Path<(String, i64)>,
) -> Response {
    let Some(tenant) = seen_tenant(&viewer, &raw) else { return not_found(&viewer) };
    let store = web.ingest.store.clone();
    let name = tenant.clone();
    let Ok(Some(p)) = blocking(move || Ok(store.person(name.as_str(), id)?)).await else {
        return not_found(&viewer);
    };
    let c = &p.contact;
    let body = html! {
        h1 { (c.first_name) " " (c.last_name) }
        div.card {
            @if !c.email.is_empty() { p { "Email: " (c.email) } }
            @if !c.phone.is_empty() { p { "Phone: " (c.phone) } }
            h2 { "Roles" }
            div.wrap { table {
                tr { th { "Role" } th { "Record" } th { "Source id" } }
                @for x in &p.roles {
                    @let k = shown(web.ingest.types.get(&x.type_name), &x.key);
                    tr {
                        td { (x.role) }
                        td { a href=(record_href(tenant.as_str(), &x.type_name, &k)) { (x.type_name) " " (k) } }
                        td { (x.source_id) }
                    }
                }
            } }
        }
        p { a href={ "/t/" (tenant) "/people" } { "All people" } }
    };
    page(&format!("{} {}", c.first_name, c.last_name), Some(&viewer), body).into_response()
}
