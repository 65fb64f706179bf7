//! JSON shapes shared by the REST API and the CLI's `--json` output.

use serde_json::{Value, json};
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
