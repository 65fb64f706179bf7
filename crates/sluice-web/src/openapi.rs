//! The OpenAPI 3 document of `/api/v1`, kept beside the handlers it describes (tests call
//! every path it lists; schemathesis checks the answers against it).

use serde_json::{Value, json};

pub fn document() -> Value {
    let error = json!({"$ref": "#/components/responses/Error"});
    let errors = |codes: &[&str]| -> Value {
        codes.iter().map(|c| (c.to_string(), error.clone())).collect::<serde_json::Map<_, _>>().into()
    };
    let ok = |schema: &str, extra: &[&str]| -> Value {
        let mut r = errors(extra);
        r["200"] = json!({"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
        r
    };
    let tenant = json!({"name": "tenant", "in": "path", "required": true, "schema": {"type": "string"}});
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "integer", "format": "int64"}});
    let limit =
        json!({"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}});
    let offset = json!({"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": crate::api::MAX_OFFSET}});
    let nullable = |t: &str| json!({"type": t, "nullable": true});
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "sluice",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Tenants, imports, their errors and records. Authenticate with an API key: `Authorization: Bearer slk_...` (`sluice apikey add`). A tenant's key sees only its tenant; anything else is 404."
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/tenants": {"get": {"summary": "The tenants the key may see", "operationId": "listTenants",
                "responses": ok("TenantList", &["400", "401"])}},
            "/api/v1/tenants/{tenant}": {"get": {"summary": "A tenant: settings, latest import per type, record counts", "operationId": "getTenant",
                "parameters": [tenant], "responses": ok("TenantDetail", &["400", "401", "404"])}},
            "/api/v1/tenants/{tenant}/imports": {"get": {"summary": "Import history, newest first", "operationId": "listImports",
                "parameters": [tenant, limit], "responses": ok("ImportList", &["400", "401", "404"])}},
            "/api/v1/tenants/{tenant}/sync": {"post": {"summary": "Import the files waiting in the tenant's folders now", "operationId": "syncTenant",
                "parameters": [tenant], "responses": ok("SyncResult", &["400", "401", "404"])}},
            "/api/v1/tenants/{tenant}/records/{type}": {"get": {"summary": "Records of one type, by key, paged", "operationId": "listRecords",
                "parameters": [tenant, {"name": "type", "in": "path", "required": true, "schema": {"type": "string"}}, limit, offset,
                    {"name": "student", "in": "query", "schema": {"type": "string"}, "description": "only records naming this student"},
                    {"name": "class", "in": "query", "schema": {"type": "string"}, "description": "only records naming this class or section"},
                    {"name": "deactivated", "in": "query", "schema": {"type": "boolean"}, "description": "CSV types: the records deactivated by on_delete = \"deactivate\" instead of the active ones"}],
                "responses": ok("RecordPage", &["400", "401", "404"])}},
            "/api/v1/tenants/{tenant}/keys": {
                "get": {"summary": "The tenant's SSH public keys (SFTP logins)", "operationId": "listKeys",
                    "parameters": [tenant], "responses": ok("KeyList", &["400", "401", "404"])},
                "post": {"summary": "Authorise an SSH public key", "operationId": "addKey", "parameters": [tenant],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewKey"}}}},
                    "responses": {"201": {"description": "Added", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Key"}}}},
                        "400": error, "401": error, "404": error, "409": error}},
                "delete": {"summary": "Remove an SSH public key", "operationId": "removeKey",
                    "parameters": [tenant, {"name": "fingerprint", "in": "query", "required": true, "schema": {"type": "string"}}],
                    "responses": ok("KeyRemoved", &["400", "401", "404"])}},
            "/api/v1/tenants/{tenant}/settings": {
                "get": {"summary": "When imports run, and the tenant's safeguards", "operationId": "getSettings",
                    "parameters": [tenant], "responses": ok("Settings", &["400", "401", "404"])},
                "patch": {"summary": "Change settings in one transaction; a refused change changes nothing", "operationId": "changeSettings", "parameters": [tenant],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SettingsChange"}}}},
                    "responses": ok("Settings", &["400", "401", "404"])}},
            "/api/v1/imports/{id}": {"get": {"summary": "One import", "operationId": "getImport",
                "parameters": [id], "responses": ok("Import", &["400", "401", "404"])}},
            "/api/v1/imports/{id}/errors": {"get": {"summary": "An import's rejected rows (JSON, or the CSV report)", "operationId": "listImportErrors",
                "parameters": [id, limit, offset, {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "csv"]}}],
                "responses": {
                    "200": {"description": "OK", "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorPage"}},
                        "text/csv": {"schema": {"type": "string"}}}},
                    "400": error, "401": error, "404": error}}},
            "/api/v1/imports/{id}/file": {"get": {"summary": "The file a held or superseded import keeps, as uploaded", "operationId": "getImportFile",
                "parameters": [id],
                "responses": {
                    "200": {"description": "OK", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                    "400": error, "401": error, "404": error}}},
            "/api/v1/imports/{id}/approve": {"post": {"summary": "Apply a held import despite the safeguard", "operationId": "approveImport",
                "parameters": [id], "responses": ok("Import", &["400", "401", "404", "409"])}},
            "/api/v1/imports/{id}/discard": {"post": {"summary": "Drop a held import", "operationId": "discardImport",
                "parameters": [id], "responses": ok("Import", &["400", "401", "404", "409"])}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {"description": "An error, with a stable code", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
                "Tenant": {"type": "object", "required": ["name", "disabled", "folders", "types", "trigger", "schedule", "timezone"], "properties": {
                    "name": {"type": "string"}, "disabled": {"type": "boolean"},
                    "folders": {"type": "array", "items": {"type": "string"}}, "types": {"type": "array", "items": {"type": "string"}},
                    "trigger": {"type": "string", "enum": ["on_upload", "manual", "schedule", "manifest"]},
                    "schedule": nullable("string"), "timezone": {"type": "string"}}},
                "TenantList": {"type": "object", "required": ["tenants"], "properties": {"tenants": {"type": "array", "items": {"$ref": "#/components/schemas/Tenant"}}}},
                "TenantDetail": {"allOf": [{"$ref": "#/components/schemas/Tenant"}, {"type": "object", "required": ["next_run", "latest_imports", "records"], "properties": {
                    "next_run": nullable("string"),
                    "latest_imports": {"type": "array", "items": {"$ref": "#/components/schemas/Import"}},
                    "records": {"type": "object", "additionalProperties": {"type": "integer"}}}}]},
                "Counts": {"type": "object", "required": ["rows", "added", "updated", "unchanged", "deleted", "rejected"], "properties": {
                    "rows": {"type": "integer"}, "added": {"type": "integer"}, "updated": {"type": "integer"},
                    "unchanged": {"type": "integer"}, "deleted": {"type": "integer"}, "rejected": {"type": "integer"}}},
                "Import": {"type": "object", "required": ["id", "tenant", "type", "file_name", "source", "status", "encoding", "delimiter", "message", "warnings", "counts", "created_ms", "finished_ms", "decided_by", "decided_ms", "superseded_by"], "properties": {
                    "id": {"type": "integer"}, "tenant": {"type": "string"}, "type": {"type": "string"},
                    "file_name": {"type": "string"}, "source": {"type": "string"},
                    "status": {"type": "string", "enum": ["running", "complete", "incomplete", "failed", "held", "discarded", "superseded"]},
                    "encoding": nullable("string"), "delimiter": nullable("string"), "message": nullable("string"),
                    "warnings": {"type": "array", "items": {"type": "string"}},
                    "counts": {"$ref": "#/components/schemas/Counts"},
                    "created_ms": {"type": "integer"}, "finished_ms": nullable("integer"),
                    "decided_by": nullable("string"), "decided_ms": nullable("integer"), "superseded_by": nullable("integer")}},
                "ImportList": {"type": "object", "required": ["imports"], "properties": {"imports": {"type": "array", "items": {"$ref": "#/components/schemas/Import"}}}},
                "SyncResult": {"type": "object", "required": ["found", "imports"], "properties": {"found": {"type": "integer"}, "imports": {"type": "array", "items": {"$ref": "#/components/schemas/Import"}}}},
                "RowError": {"type": "object", "required": ["line", "key", "name", "column", "code", "reason", "value"], "properties": {
                    "line": {"type": "integer"}, "key": {"type": "string"}, "name": {"type": "string"}, "column": {"type": "string"}, "code": {"type": "string"}, "reason": {"type": "string"}, "value": {"type": "string"}}},
                "ErrorPage": {"type": "object", "required": ["import", "rejected", "offset", "limit", "errors"], "properties": {
                    "import": {"type": "integer"}, "rejected": {"type": "integer"}, "offset": {"type": "integer"}, "limit": {"type": "integer"},
                    "errors": {"type": "array", "items": {"$ref": "#/components/schemas/RowError"}}}},
                "Key": {"type": "object", "required": ["algorithm", "fingerprint", "comment"], "properties": {
                    "algorithm": {"type": "string"}, "fingerprint": {"type": "string"}, "comment": {"type": "string"}}},
                "KeyList": {"type": "object", "required": ["keys"], "properties": {"keys": {"type": "array", "items": {"$ref": "#/components/schemas/Key"}}}},
                "NewKey": {"type": "object", "required": ["public_key"], "additionalProperties": false, "properties": {
                    "public_key": {"type": "string", "description": "one OpenSSH public key line, e.g. ssh-ed25519 AAAA... comment"}}},
                "KeyRemoved": {"type": "object", "required": ["removed"], "properties": {"removed": {"type": "string"}}},
                "Safeguard": {"type": "object", "required": ["type", "limit", "percent"], "additionalProperties": false, "properties": {
                    "type": {"type": "string"}, "limit": {"type": "string", "enum": ["deleted", "changed"]},
                    "percent": {"type": "number", "minimum": 0, "maximum": 100}}},
                "Settings": {"type": "object", "required": ["trigger", "schedule", "timezone", "type_triggers", "read_settings", "safeguards", "notify_emails", "webhook_url"], "properties": {
                    "notify_emails": {"type": "array", "items": {"type": "string"}}, "webhook_url": nullable("string"),
                    "trigger": {"type": "string", "enum": ["on_upload", "manual", "schedule", "manifest"]},
                    "schedule": nullable("string"), "timezone": {"type": "string"},
                    "type_triggers": {"type": "object", "additionalProperties": {"type": "string"}},
                    "read_settings": {"type": "object", "additionalProperties": {"type": "string"}, "description": "how files are read: strictness, strictness.TYPE, delimiter.TYPE"},
                    "safeguards": {"type": "array", "items": {"$ref": "#/components/schemas/Safeguard"}}}},
                "SettingsChange": {"type": "object", "additionalProperties": false, "properties": {
                    "notify_emails": {"type": "array", "items": {"type": "string"}, "description": "who is emailed when an import ends"},
                    "webhook_url": {"type": "string", "description": "http(s) URL POSTed when an import ends; \"\" for none. A host that is a private address (or an IPv6 address carrying one) is refused (400 bad_notify) unless the operator allows private webhooks"},
                    "webhook_secret": {"type": "string", "description": "signs each POST (HMAC-SHA256); write-only; refused (400 bad_notify) when there is no webhook URL"},
                    "trigger": {"type": "string", "enum": ["on_upload", "manual", "schedule", "manifest"]},
                    "schedule": {"type": "string", "description": "cron: minute hour day month weekday, e.g. 0 2 * * *; \"\" for none (refused while the trigger is schedule)"},
                    "timezone": {"type": "string", "description": "IANA name, e.g. America/Chicago"},
                    "type_triggers": {"type": "object", "additionalProperties": {"type": "string", "enum": ["on_upload", "manual", "manifest", "default"]}, "description": "per import type; default: the tenant's trigger"},
                    "read_settings": {"type": "object", "additionalProperties": {"type": "string"}, "description": "strictness (lenient|strict|default), strictness.TYPE, delimiter.TYPE (comma|tab|semicolon|pipe|detect)"},
                    "safeguards": {"type": "array", "items": {"$ref": "#/components/schemas/Safeguard"}}}},
                "RecordPage": {"type": "object", "required": ["type", "offset", "limit", "records"], "properties": {
                    "type": {"type": "string"}, "offset": {"type": "integer"}, "limit": {"type": "integer"},
                    "records": {"type": "array", "items": {"type": "object", "additionalProperties": {"type": "string"}}}}},
            }
        }
    })
}
