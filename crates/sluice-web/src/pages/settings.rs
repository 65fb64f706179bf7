//! A tenant's settings: when imports run, how files are read, and who hears when one ends.
//! A refused change shows the form again with what was typed and why, nothing saved.

use super::layout::{csrf_field, not_found, notice, page};
use super::{Failed, ManagedForm, NoticeQuery, TenantPath, Viewer, blocking, managing, reported};
use crate::Web;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use sluice_core::audit::action;
use sluice_core::import::ReadSetting;
use sluice_core::{Tenant, TenantName};

const TRIGGERS: [(&str, &str); 4] = [
    ("on_upload", "as soon as an upload closes"),
    ("manual", "only on Sync now"),
    ("schedule", "on a schedule"),
    ("manifest", "when a .done manifest arrives"),
];

const ROUTING: [(&str, &str); 3] = [
    ("folders", "into a folder per type (/students, /guardians, ...)"),
    ("root", "at / under each type's required file name (students.csv, ...)"),
    ("both", "either: into the folders, or at / by required file name"),
];

const STRICTNESS: [(&str, &str); 3] = [
    ("default", "as each type says (lenient unless a type says strict)"),
    ("lenient", "lenient, for every type"),
    ("strict", "strict, for every type"),
];

/// What the form shows in its fields: the stored settings, or what was just sent.
struct Fields {
    routing: String,
    settle: String,
    blackouts: String,
    trigger: String,
    schedule: String,
    timezone: String,
    strictness: String,
    emails: String,
    webhook: String,
}

impl Fields {
    fn stored(t: &Tenant) -> Self {
        let strictness = t
            .read_settings
            .iter()
            .find_map(|r| match r {
                ReadSetting::Strictness { type_name: None, strictness } => Some(strictness.as_str()),
                _ => None,
            })
            .unwrap_or("default");
        Fields {
            routing: t.routing.as_str().to_owned(),
            settle: t.settle_secs.to_string(),
            blackouts: t.blackouts.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
            trigger: t.trigger.as_str().to_owned(),
            schedule: t.schedule.as_ref().map_or("", |c| c.as_str()).to_owned(),
            timezone: t.timezone.clone(),
            strictness: strictness.to_owned(),
            emails: t.notify_emails.join(", "),
            webhook: t.webhook.as_ref().map(|(url, _)| url.clone()).unwrap_or_default(),
        }
    }

    /// What was sent, over the stored settings (a form without strictness keeps it).
    fn sent(form: &SettingsForm, t: &Tenant) -> Self {
        let stored = Fields::stored(t);
        Fields {
            routing: if form.routing.is_empty() { stored.routing.clone() } else { form.routing.clone() },
            settle: if form.settle_secs.is_empty() {
                stored.settle.clone()
            } else {
                form.settle_secs.clone()
            },
            blackouts: form.blackouts.clone().unwrap_or(stored.blackouts.clone()),
            trigger: form.trigger.clone(),
            schedule: form.schedule.clone(),
            timezone: form.timezone.clone(),
            strictness: if form.strictness.is_empty() { stored.strictness } else { form.strictness.clone() },
            emails: form.emails.clone(),
            webhook: form.webhook.clone(),
        }
    }
}

/// The settings form of `t`, showing `fields`, with `above` (a notice or a refusal) on top.
fn settings_form(viewer: &Viewer, tenant: &TenantName, t: &Tenant, fields: &Fields, above: Markup) -> Markup {
    // What is set per type (changed with `sluice tenant set` or the API), shown so that the
    // choices above are not read as the whole story.
    let per_type: Vec<String> = t
        .type_triggers
        .iter()
        .map(|(ty, g)| format!("trigger.{ty}={}", g.as_str()))
        .chain(t.type_schedules.iter().map(|(ty, c)| format!("schedule.{ty}={c}")))
        .chain(t.read_settings.iter().filter(|r| r.type_name().is_some()).map(|r| {
            let (k, v) = r.to_pair();
            format!("{k}={v}")
        }))
        .chain(
            t.safeguards
                .iter()
                .map(|g| format!("safeguard.{}.{}={}", g.type_name, g.limit.as_str(), g.percent)),
        )
        .collect();
    html! {
        h1 { "Settings of " (tenant) }
        (above)
        form method="post" action={ "/t/" (tenant) "/settings" } {
            (csrf_field(viewer))
            div.card {
                h2 { "When imports run" }
                p { label { "Trigger" br; select name="trigger" {
                    @for (value, label) in TRIGGERS {
                        option value=(value) selected[fields.trigger == value] { (label) }
                    }
                } } }
                p { label {
                    "Schedule (cron: minute hour day month weekday)" br;
                    input name="schedule" value=(fields.schedule) placeholder="0 2 * * *";
                } }
                p { label { "Time zone" br; input name="timezone" value=(fields.timezone); } }
                p { label {
                    "Settle time in seconds (imports wait until uploads have been quiet this long, then run as a set; 0: at once)" br;
                    input name="settle_secs" value=(fields.settle) inputmode="numeric";
                } }
                p { label {
                    "Blackouts (date ranges in which full files delete nothing, e.g. 2026-06-15..2026-08-20)" br;
                    input name="blackouts" value=(fields.blackouts) placeholder="2026-06-15..2026-08-20";
                } }
            }
            div.card {
                h2 { "Where files go" }
                p { label { "Uploads go" br; select name="routing" {
                    @for (value, label) in ROUTING {
                        option value=(value) selected[fields.routing == value] { (label) }
                    }
                } } }
            }
            div.card {
                h2 { "How files are read" }
                p { label { "Strictness" br; select name="strictness" {
                    @for (value, label) in STRICTNESS {
                        option value=(value) selected[fields.strictness == value] { (label) }
                    }
                } } }
                p {
                    "Lenient reads what is unambiguous (" code { "TRUE" } " as " code { "true" }
                    ", spaced dates, a " code { "sep=" } " line) and reports each as a warning; strict refuses it."
                }
                p { "Set per type:" }
                ul {
                    @for line in &per_type { li { code { (line) } } }
                    @if per_type.is_empty() { li { "none" } }
                }
            }
            div.card {
                h2 { "Notifications" }
                p { label {
                    "Email these addresses when an import ends (comma-separated)" br;
                    input name="emails" value=(fields.emails);
                } }
                p { label { "Webhook URL" br; input name="webhook" value=(fields.webhook); } }
                p { label {
                    "Webhook secret (signs each POST; leave empty to keep it)" br;
                    input name="webhook_secret" type="password" autocomplete="off";
                } }
            }
            p { button { "Save" } }
        }
    }
}

async fn stored_tenant(web: &Web, tenant: &TenantName) -> Option<Tenant> {
    let store = web.ingest.store.clone();
    let name = tenant.clone();
    blocking(move || Ok(store.require_tenant(name.as_str())?)).await.ok()
}

pub async fn settings_page(
    State(web): State<Web>,
    viewer: Viewer,
    TenantPath(tenant): TenantPath,
    Query(q): Query<NoticeQuery>,
) -> Response {
    if let Some(refused) = managing(&viewer, &tenant) {
        return refused;
    }
    let Some(t) = stored_tenant(&web, &tenant).await else { return not_found(&viewer) };
    let body = settings_form(&viewer, &tenant, &t, &Fields::stored(&t), notice(&viewer, &q));
    page("Settings", Some(&viewer), body).into_response()
}

#[derive(Deserialize)]
pub struct SettingsForm {
    #[serde(default)]
    csrf: String,
    /// Empty (a form without the field) changes nothing about it.
    #[serde(default)]
    routing: String,
    /// Empty (a form without the field) changes nothing about it.
    #[serde(default)]
    settle_secs: String,
    /// Absent (a form without the field) changes nothing; empty clears them.
    blackouts: Option<String>,
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

posted!(SettingsForm);

pub async fn save_settings(
    State(web): State<Web>,
    ManagedForm { viewer, tenant, form }: ManagedForm<SettingsForm>,
) -> Response {
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
    if !form.routing.is_empty() {
        pairs.push(("routing", form.routing.as_str()));
    }
    if !form.settle_secs.is_empty() {
        pairs.push(("settle_secs", form.settle_secs.as_str()));
    }
    if let Some(blackouts) = &form.blackouts {
        pairs.push(("blackout", blackouts.as_str()));
    }
    // An empty secret field keeps the secret.
    if !form.webhook_secret.is_empty() {
        pairs.push(("notify.webhook_secret", form.webhook_secret.as_str()));
    }
    let cx = sluice_core::SettingsContext {
        types: &web.ingest.types,
        allow_private_webhooks: web.allow_private_webhooks,
    };
    // Refused whole, whether by a value or by the settings it would leave (a schedule trigger
    // without a schedule): the form again, with what was typed (never the secret) and why.
    let (web_, viewer_, tenant_, form_) = (&web, &viewer, &tenant, &form);
    let refused = move |e: sluice_core::SettingsError| async move {
        let Some(t) = stored_tenant(web_, tenant_).await else { return not_found(viewer_) };
        let refusal = html! { p.card.error { "Not saved: " (e) } };
        let body = settings_form(viewer_, tenant_, &t, &Fields::sent(form_, &t), refusal);
        (StatusCode::UNPROCESSABLE_ENTITY, page("Settings", Some(viewer_), body)).into_response()
    };
    let mut change = sluice_core::SettingsChange::default();
    let keys: Vec<&str> = pairs.iter().map(|(k, _)| *k).collect();
    let target = keys.join(", ");
    for (key, value) in pairs {
        if let Err(e) = change.set(key, value, cx) {
            let did = crate::audit::Did::new(Some(tenant.as_str()), action::TENANT_SETTINGS, target, false);
            crate::audit::record_off(&web, viewer.actor(), did).await;
            return refused(e).await;
        }
    }
    let w = web.clone();
    let name = tenant.clone();
    let actor = viewer.actor();
    let done = blocking(move || {
        let store = &w.ingest.store;
        let before = store.tenant(name.as_str())?.map(|t| crate::audit::settings_of(&t));
        let changed = store.change_settings(name.as_str(), &change);
        let did = crate::audit::Did {
            before,
            after: changed.as_ref().ok().map(crate::audit::settings_of),
            ..crate::audit::Did::new(Some(name.as_str()), action::TENANT_SETTINGS, target, changed.is_ok())
        };
        crate::audit::record(&w, &actor, did);
        Ok(changed.map(drop))
    })
    .await;
    match done {
        Ok(Err(sluice_store::StoreError::Refused(e))) => refused(e).await,
        Ok(other) => reported(&viewer, other.map_err(Failed::from), &here, "Not saved", |()| "Saved.".into()),
        Err(e) => reported(&viewer, Err::<(), _>(e), &here, "Not saved", |()| "Saved.".into()),
    }
}
