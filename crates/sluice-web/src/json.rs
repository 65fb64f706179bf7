//! JSON shapes shared by the REST API and the CLI's `--json` output.

use serde_json::{Value, json};
use sluice_core::Tenant;
use sluice_store::ImportRecord;

pub fn import(r: &ImportRecord) -> Value {
    let c = r.counts;
    json!({
        "id": r.id, "tenant": r.tenant, "type": r.type_name, "file_name": r.file_name, "source": r.source,
        "status": r.status.as_str(), "encoding": r.encoding, "delimiter": r.delimiter, "message": r.message, "warnings": r.warnings,
        "counts": {"rows": c.rows, "added": c.added, "updated": c.updated, "unchanged": c.unchanged,
                   "deleted": c.deleted, "rejected": c.rejected},
        "created_ms": r.created_ms, "finished_ms": r.finished_ms,
        "decided_by": r.decided_by, "decided_ms": r.decided_ms, "superseded_by": r.superseded_by,
    })
}

/// A tenant's settings, as `GET /api/v1/tenants/{t}/settings` answers and
/// `sluice tenant show --json` prints them. The webhook secret is write-only.
pub fn settings(t: &Tenant) -> Value {
    json!({
        "trigger": t.trigger.as_str(),
        "schedule": t.schedule.as_ref().map(|c| c.as_str()),
        "timezone": t.timezone,
        "type_triggers": t.type_triggers.iter().map(|(ty, g)| (ty.clone(), json!(g.as_str()))).collect::<serde_json::Map<_, _>>(),
        "safeguards": t.safeguards.iter().map(|s| json!({"type": s.type_name, "limit": s.limit.as_str(), "percent": s.percent})).collect::<Vec<_>>(),
        "read_settings": t.read_settings.iter().map(|r| { let (k, v) = r.to_pair(); (k, json!(v)) }).collect::<serde_json::Map<_, _>>(),
        "notify_emails": t.notify_emails,
        "webhook_url": t.webhook.as_ref().map(|(url, _)| url.as_str()),
    })
}
