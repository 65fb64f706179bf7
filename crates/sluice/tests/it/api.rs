//! The REST API: every endpoint, with a tenant's key, another tenant's key, the operator's,
//! none, and a revoked one.

use crate::common::*;
use serde_json::Value;

struct Api {
    server: Server,
    acme: String,
    beta: String,
    operator: String,
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Two tenants, each with a held import, a rejected row and records.
fn setup() -> Api {
    let server = Server::start();
    for t in ["acme", "beta"] {
        server.importing_tenant(t, "pw-for-tests");
        server.cli_ok(&["tenant", "set", t, "types=students,guardians"]);
        let mut students = String::from("sisId,firstName,lastName\n");
        for i in 0..20 {
            students.push_str(&format!("{t}{i},F{i},L{i}\n"));
        }
        let file = write_file(server.dir.path(), "students.csv", students.as_bytes());
        server.cli_ok(&["import", "--tenant", t, file.to_str().unwrap()]);
        let guardians = format!(
            "guardianSisId,studentSisId,firstName,lastName,email\nG1,{t}1,Ann,Lee,ann@example.org\nG2,{t}2,=HYPERLINK(\"x\"),Ray,\nG3,nobody,Cy,Doe,\n"
        );
        let file = write_file(server.dir.path(), "guardians.csv", guardians.as_bytes());
        server.cli(&["import", "--tenant", t, file.to_str().unwrap()]);
        // Half the students: held by the safeguard.
        let half: String = students.lines().take(11).map(|l| format!("{l}\n")).collect();
        let file = write_file(server.dir.path(), "students.csv", half.as_bytes());
        server.cli_ok(&["import", "--tenant", t, file.to_str().unwrap()]);
    }
    let acme = server.api_key(Some("acme"));
    let beta = server.api_key(Some("beta"));
    let operator = server.api_key(None);
    Api { server, acme, beta, operator }
}

impl Api {
    fn get(&self, path: &str, key: &str) -> (u16, Value) {
        let (status, _, body) = self.server.http("GET", path, Some(key));
        (status, json(&body))
    }

    fn post(&self, path: &str, key: &str) -> (u16, Value) {
        let (status, _, body) = self.server.http("POST", path, Some(key));
        (status, json(&body))
    }

    /// The id of the tenant's import with this status.
    fn import_id(&self, tenant: &str, status: &str) -> i64 {
        let (_, v) = self.get(&format!("/api/v1/tenants/{tenant}/imports"), &self.operator);
        v["imports"].as_array().unwrap().iter().find(|i| i["status"] == status).unwrap()["id"]
            .as_i64()
            .unwrap()
    }
}

#[test]
fn a_tenants_key_sees_only_its_tenant_on_every_endpoint() {
    let api = setup();
    let acme_held = api.import_id("acme", "held");
    let beta_held = api.import_id("beta", "held");
    let beta_incomplete = api.import_id("beta", "incomplete");

    // Listing: the tenant's key sees itself, the operator everyone.
    let (status, v) = api.get("/api/v1/tenants", &api.acme);
    assert_eq!(status, 200);
    let names: Vec<&str> =
        v["tenants"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["acme"]);
    let (_, v) = api.get("/api/v1/tenants", &api.operator);
    assert_eq!(v["tenants"].as_array().unwrap().len(), 2);

    // Every read endpoint: 200 for one's own, 404 (as if absent) for the other tenant's.
    for (own, other) in [
        ("/api/v1/tenants/acme".to_owned(), "/api/v1/tenants/beta".to_owned()),
        ("/api/v1/tenants/acme/imports".to_owned(), "/api/v1/tenants/beta/imports".to_owned()),
        (
            "/api/v1/tenants/acme/records/students".to_owned(),
            "/api/v1/tenants/beta/records/students".to_owned(),
        ),
        (format!("/api/v1/imports/{acme_held}"), format!("/api/v1/imports/{beta_held}")),
        (
            format!("/api/v1/imports/{}/errors", api.import_id("acme", "incomplete")),
            format!("/api/v1/imports/{beta_incomplete}/errors"),
        ),
    ] {
        let (status, body) = api.get(&own, &api.acme);
        assert_eq!(status, 200, "{own}: {body}");
        let (status, body) = api.get(&other, &api.acme);
        assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{other}: {body}");
        assert!(!body.to_string().contains("beta0"), "nothing of the other tenant leaks: {body}");
        let (status, _) = api.get(&other, &api.operator);
        assert_eq!(status, 200, "the operator sees {other}");
    }
    // The CSV report of another tenant's import is hidden too.
    let (status, _, _) = api.server.http(
        "GET",
        &format!("/api/v1/imports/{beta_incomplete}/errors?format=csv"),
        Some(&api.acme),
    );
    assert_eq!(status, 404);

    // Every action: refused for the other tenant, and nothing changes.
    for path in [
        "/api/v1/tenants/beta/sync".to_owned(),
        format!("/api/v1/imports/{beta_held}/approve"),
        format!("/api/v1/imports/{beta_held}/discard"),
    ] {
        let (status, body) = api.post(&path, &api.acme);
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (_, v) = api.get(&format!("/api/v1/imports/{beta_held}"), &api.beta);
    assert_eq!(v["status"], "held", "beta's held import is untouched");
    let (status, _, body) =
        api.server.http("DELETE", "/api/v1/tenants/beta/records/students/beta3?force=true", Some(&api.acme));
    assert_eq!(status, 404, "{body}");
    let (_, v) = api.get("/api/v1/tenants/beta/records/students?q=beta3", &api.beta);
    assert_eq!(v["total"], 1, "beta's record is untouched: {v}");

    // Without a key, with a malformed one, with a revoked one: 401 with a stable code.
    let (status, _, body) = api.server.http("GET", "/api/v1/tenants", None);
    assert_eq!((status, json(&body)["error"]["code"].as_str()), (401, Some("unauthorized")));
    let (status, _) = api.get("/api/v1/tenants", "slk_0000");
    assert_eq!(status, 401);
    let listed = api.server.cli_ok(&["apikey", "list", "--tenant", "acme", "--json"]);
    assert!(!listed.contains(&api.acme[4..]), "a listing never shows the key");
    assert_eq!(json(&listed)[0]["tenant"], "acme", "whose key it is: {listed}");
    let operators = api.server.cli_ok(&["apikey", "list", "--operator", "--json"]);
    assert!(json(&operators)[0]["tenant"].is_null(), "an operator's key acts for every tenant: {operators}");
    let id = json(&listed)[0]["id"].to_string();
    api.server.cli_ok(&["apikey", "revoke", &id]);
    let (status, body) = api.get("/api/v1/tenants", &api.acme);
    assert_eq!(status, 401, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("revoked"));
}

#[test]
fn imports_errors_records_sync_approve_and_discard() {
    let api = setup();
    let key = &api.acme;
    // The tenant overview: latest import per type, record counts.
    let (_, t) = api.get("/api/v1/tenants/acme", key);
    assert_eq!(t["records"]["students"], 20, "{t}");
    let latest: Vec<&str> =
        t["latest_imports"].as_array().unwrap().iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(latest, ["students", "guardians"]);

    // Errors as JSON, paged, and as the CSV report with formulas neutralised.
    let incomplete = api.import_id("acme", "incomplete");
    let (_, e) = api.get(&format!("/api/v1/imports/{incomplete}/errors?limit=1"), key);
    assert_eq!((e["rejected"].as_u64(), e["errors"].as_array().unwrap().len()), (Some(1), 1), "{e}");
    assert_eq!(e["errors"][0]["code"], "unknown_reference");
    let (status, content_type, csv) =
        api.server.http("GET", &format!("/api/v1/imports/{incomplete}/errors?format=csv"), Some(key));
    assert_eq!((status, content_type.as_str()), (200, "text/csv; charset=utf-8"));
    assert!(
        csv.starts_with("\u{feff}line,key,name,column,code,reason,value\r\n4,nobody+G3,Cy Doe,studentSisId,unknown_reference"),
        "{csv}"
    );
    let (status, bad) = api.get(&format!("/api/v1/imports/{incomplete}/errors?format=xml"), key);
    assert_eq!((status, bad["error"]["code"].as_str()), (400, Some("bad_format")));

    // Records: paged, filtered by student, and objects by column name.
    let (_, page) = api.get("/api/v1/tenants/acme/records/students?limit=5&offset=5", key);
    let ids: Vec<&str> =
        page["records"].as_array().unwrap().iter().map(|r| r["sisId"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 5);
    let (_, g) = api.get("/api/v1/tenants/acme/records/guardians?student=acme1", key);
    let g = g["records"].as_array().unwrap();
    assert_eq!((g.len(), g[0]["firstName"].as_str()), (1, Some("Ann")));
    let (status, _) = api.get("/api/v1/tenants/acme/records/nosuchtype", key);
    assert_eq!(status, 404);
    let (status, _) = api.get("/api/v1/tenants/acme/records/students?limit=0", key);
    assert_eq!(status, 400);
    let (status, body) = api.get("/api/v1/tenants/acme/records/students?offset=18446744073709551615", key);
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_offset")), "{body}");

    // Approve the held import: 10 students deleted. Approving again is a conflict.
    let held = api.import_id("acme", "held");
    let (status, done) = api.post(&format!("/api/v1/imports/{held}/approve"), key);
    assert_eq!(
        (status, done["status"].as_str(), done["counts"]["deleted"].as_u64()),
        (200, Some("complete"), Some(10)),
        "{done}"
    );
    // Who overrode the safeguard is kept with the import.
    let by = done["decided_by"].as_str().unwrap_or_default();
    assert!(by.starts_with("API key \""), "{done}");
    assert!(done["decided_ms"].as_i64().unwrap() >= done["created_ms"].as_i64().unwrap());
    let (status, again) = api.post(&format!("/api/v1/imports/{held}/approve"), key);
    assert_eq!((status, again["error"]["code"].as_str()), (409, Some("not_held")));
    // Discard beta's held import with the operator's key.
    let beta_held = api.import_id("beta", "held");
    let (status, dropped) = api.post(&format!("/api/v1/imports/{beta_held}/discard"), &api.operator);
    assert_eq!((status, dropped["status"].as_str()), (200, Some("discarded")));
    // Why it was held stays; how to decide it (a command) no longer applies.
    let message = dropped["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("held: this import would delete") && !message.contains("sluice approve"),
        "{dropped}"
    );
    assert!(dropped["decided_by"].as_str().unwrap().starts_with("operator API key"), "{dropped}");

    // Sync now: a file waiting in the folder is imported.
    api.server.cli_ok(&["tenant", "set", "acme", "trigger=manual"]);
    std::fs::write(
        api.server.tenant_dir("acme").join("students/students.csv"),
        "sisId,firstName,lastName\nacme0,F0,L0\nnew1,N,N\n",
    )
    .unwrap();
    let (status, s) = api.post("/api/v1/tenants/acme/sync", key);
    assert_eq!((status, s["found"].as_u64()), (200, Some(1)), "{s}");
    assert_eq!(s["imports"][0]["counts"]["added"], 1, "{s}");
}

#[test]
fn the_openapi_document_lists_every_endpoint() {
    let api = setup();
    let (status, _, body) = api.server.http("GET", "/api/v1/openapi.json", None);
    assert_eq!(status, 200);
    let doc = json(&body);
    // Generated by utoipa from the views and handlers (OpenAPI 3.1; it was a hand-written 3.0.3
    // document before, which could drift from the answers).
    assert_eq!(doc["openapi"], "3.1.0");
    // The webhook's body is described beside the answers (the same views).
    let event = &doc["components"]["schemas"]["ImportFinished"]["properties"];
    assert!(event["import"].is_object() && event["first_errors"].is_object(), "{event}");
    let mut paths: Vec<&str> = doc["paths"].as_object().unwrap().keys().map(String::as_str).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/api/v1/audit",
            "/api/v1/imports/{id}",
            "/api/v1/imports/{id}/approve",
            "/api/v1/imports/{id}/discard",
            "/api/v1/imports/{id}/errors",
            "/api/v1/imports/{id}/file",
            "/api/v1/tenants",
            "/api/v1/tenants/{tenant}",
            "/api/v1/tenants/{tenant}/exports",
            "/api/v1/tenants/{tenant}/exports/{name}",
            "/api/v1/tenants/{tenant}/exports/{name}/run",
            "/api/v1/tenants/{tenant}/exports/{name}/runs",
            "/api/v1/tenants/{tenant}/imports",
            "/api/v1/tenants/{tenant}/keys",
            "/api/v1/tenants/{tenant}/records/{type}",
            "/api/v1/tenants/{tenant}/records/{type}/{key}",
            "/api/v1/tenants/{tenant}/records/{type}/{key}/photo",
            "/api/v1/tenants/{tenant}/settings",
            "/api/v1/tenants/{tenant}/sync",
        ]
    );
    // Every $ref resolves.
    let text = body.clone();
    for r in text.split("\"$ref\":\"#/components/").skip(1) {
        let path = &r[..r.find('"').unwrap()];
        let mut node = &doc["components"];
        for part in path.split('/') {
            node = &node[part];
        }
        assert!(!node.is_null(), "dangling $ref {path}");
    }
    let (status, _, body) = api.server.http("GET", "/api/v1/nothing", Some(&api.operator));
    assert_eq!((status, json(&body)["error"]["code"].as_str()), (404, Some("not_found")));
}

/// A tenant name is parsed once, at the edge: a path that cannot name a tenant is a bad
/// request that says the rule, before any lookup; a valid name that is not the key's is 404.
#[test]
fn a_path_that_cannot_name_a_tenant_is_refused_at_the_edge() {
    let api = setup();
    for bad in ["ACME", "a%2F..", "x%00y", &"a".repeat(33)] {
        let (status, v) = api.get(&format!("/api/v1/tenants/{bad}/imports"), &api.operator);
        assert_eq!((status, v["error"]["code"].as_str()), (400, Some("bad_request")), "{bad}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("tenant name"), "{bad}: {v}");
    }
    let (status, _) = api.get("/api/v1/tenants/nobody/imports", &api.operator);
    assert_eq!(status, 404);
}

/// Refusals made before a handler runs answer in the API's error shape too: a method the path
/// does not take (with the methods it does), a body over the limit, announced or streamed.
#[test]
fn refusals_before_any_handler_answer_in_the_api_shape() {
    let api = setup();
    use std::io::{Read, Write};
    let raw = |request: &str, body: &[&[u8]]| {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", api.server.http_port)).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        for part in body {
            let _ = stream.write_all(part);
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    };
    let (status, _, body) = api.server.http("PUT", "/api/v1/tenants", Some(&api.operator));
    assert_eq!((status, json(&body)["error"]["code"].as_str()), (405, Some("method_not_allowed")), "{body}");
    let answer = raw(
        &format!(
            "PUT /api/v1/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            api.operator
        ),
        &[],
    );
    assert!(answer.to_ascii_lowercase().contains("\r\nallow: get"), "the methods it takes: {answer}");
    let big = format!(r#"{{"public_key": "{}"}}"#, "A".repeat(100_000));
    let (status, _, body) = api.server.http_with("POST", "/api/v1/tenants/acme/keys", Some(&api.acme), &big);
    assert_eq!((status, json(&body)["error"]["code"].as_str()), (413, Some("too_large")), "{body}");
    // Streamed without a length: refused when the limit is passed, in the same shape.
    let chunk = format!("8000\r\n{}\r\n", "B".repeat(0x8000));
    let answer = raw(
        &format!(
            "PATCH /api/v1/tenants/acme/settings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            api.acme
        ),
        &[chunk.as_bytes(), chunk.as_bytes(), chunk.as_bytes(), b"0\r\n\r\n"],
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#""code":"too_large""#), "{answer}");
}

/// A tenant's key asks for a fresh export: the file lands in its /exports, replaced whole;
/// the same mistakes as on the command line are 400s that say what; another tenant's key
/// finds nothing.
#[test]
fn a_tenant_asks_for_an_export_through_the_api() {
    let api = setup();
    let ask =
        |key: &str, body: &str| api.server.http_with("POST", "/api/v1/tenants/acme/exports", Some(key), body);
    let (status, _, v) = ask(
        &api.acme,
        r#"{"type": "students", "columns": ["sisId", "Last Name"], "where": {"sisId": "acme3"}}"#,
    );
    let v = json(&v);
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["path"].as_str(), v["rows"].as_u64(), v["format"].as_str()),
        (Some("/exports/students.csv"), Some(1), Some("csv")),
        "{v}"
    );
    let file = api.server.tenant_dir("acme").join("exports").join("students.csv");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "sisId,lastName\r\nacme3,L3\r\n");
    let (status, _, v) = ask(&api.acme, r#"{"type": "students", "format": "xlsx"}"#);
    assert_eq!((status, json(&v)["path"].as_str()), (200, Some("/exports/students.xlsx")), "{v}");
    let (status, _, v) = ask(&api.acme, r#"{"type": "students", "columns": ["nickname"]}"#);
    assert_eq!((status, json(&v)["error"]["code"].as_str()), (400, Some("bad_export")), "{v}");
    assert!(v.contains("nickname") && v.contains("firstName"), "{v}");
    let (status, _, _) = ask(&api.acme, r#"{"type": "badge"}"#);
    assert_eq!(status, 404, "a type the tenant does not take");
    let (status, _, _) = ask(&api.beta, r#"{"type": "students"}"#);
    assert_eq!(status, 404, "another tenant's key");
}

/// Saved exports through the API: saved with PUT (the same checks as the command line, 400s
/// that say what), listed, read, run (the file lands, the run is logged), removed; another
/// tenant's key finds none of it.
#[test]
fn saved_exports_through_the_api() {
    let api = setup();
    let call = |method: &str, path: &str, key: &str, body: Option<&str>| {
        let (status, _, v) = match body {
            Some(b) => api.server.http_with(method, path, Some(key), b),
            None => api.server.http(method, path, Some(key)),
        };
        (status, json(&v))
    };
    let path = "/api/v1/tenants/acme/exports/Nightly-Roster";
    let body = r#"{"type": "students", "columns": ["sisId", "lastName"], "where": {"sisId": "acme3"}, "when": "0 6 * * 1-5"}"#;
    let (status, v) = call("PUT", path, &api.acme, Some(body));
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["path"].as_str(), v["when"].as_str(), v["format"].as_str()),
        (Some("/exports/Nightly-Roster.csv"), Some("0 6 * * 1-5"), Some("csv")),
        "{v}"
    );
    for (bad, needle) in [
        (r#"{"type": "students", "when": "at six"}"#, "at six"),
        (r#"{"type": "students", "columns": ["nickname"]}"#, "nickname"),
        (r#"{"type": "students", "format": "pdf"}"#, "pdf"),
        (r#"{"type": "students", "colour": "red"}"#, "colour"),
    ] {
        let (status, v) = call("PUT", path, &api.acme, Some(bad));
        assert_eq!(status, 400, "{bad}: {v}");
        assert!(v.to_string().contains(needle), "{bad}: {v}");
    }
    let (status, _) =
        call("PUT", "/api/v1/tenants/acme/exports/..%2Fx", &api.acme, Some(r#"{"type": "students"}"#));
    assert_eq!(status, 400, "a name that is not one file name");
    let (status, _) = call("PUT", "/api/v1/tenants/acme/exports/x", &api.acme, Some(r#"{"type": "badge"}"#));
    assert_eq!(status, 404, "a type the tenant does not take");

    let (status, v) = call("GET", "/api/v1/tenants/acme/exports", &api.acme, None);
    assert_eq!((status, v["exports"].as_array().map(Vec::len)), (200, Some(1)), "{v}");
    let (status, v) = call("GET", "/api/v1/tenants/acme/exports/nightly-roster", &api.acme, None);
    assert_eq!((status, v["name"].as_str()), (200, Some("Nightly-Roster")), "found whatever the case: {v}");
    let (status, v) = call("POST", &format!("{path}/run"), &api.acme, None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["status"].as_str(), v["rows"].as_u64(), v["cause"].as_str()),
        (Some("written"), Some(1), Some("on_demand")),
        "{v}"
    );
    let file = api.server.tenant_dir("acme").join("exports").join("Nightly-Roster.csv");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "sisId,lastName\r\nacme3,L3\r\n");
    let (status, v) = call("GET", &format!("{path}/runs"), &api.acme, None);
    assert_eq!((status, v["runs"].as_array().map(Vec::len)), (200, Some(1)), "{v}");

    // Another tenant's key sees nothing of it.
    for (method, p) in [
        ("GET", path.to_owned()),
        ("POST", format!("{path}/run")),
        ("GET", format!("{path}/runs")),
        ("DELETE", path.to_owned()),
    ] {
        let (status, _) = call(method, &p, &api.beta, None);
        assert_eq!(status, 404, "{method} {p}");
    }
    let (status, v) = call("DELETE", path, &api.acme, None);
    assert_eq!((status, v["name"].as_str()), (200, Some("Nightly-Roster")), "{v}");
    let (status, _) = call("POST", &format!("{path}/run"), &api.acme, None);
    assert_eq!(status, 404);
    assert!(file.exists(), "its last file stays");
}

/// The properties a schema of the document lists, following `$ref` and `allOf`.
pub(crate) fn schema_properties(doc: &Value, schema: &Value) -> (Vec<String>, Vec<String>) {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        return schema_properties(doc, &doc["components"]["schemas"][name]);
    }
    let (mut all, mut required) = (Vec::new(), Vec::new());
    for part in schema["allOf"].as_array().into_iter().flatten() {
        let (a, r) = schema_properties(doc, part);
        all.extend(a);
        required.extend(r);
    }
    all.extend(schema["properties"].as_object().into_iter().flatten().map(|(k, _)| k.clone()));
    required
        .extend(schema["required"].as_array().into_iter().flatten().map(|k| k.as_str().unwrap().to_owned()));
    all.sort();
    required.sort();
    (all, required)
}

/// The document is generated from the views the handlers answer with: every answer has
/// exactly the properties its schema lists, all of them required (present, `null` when unset).
#[test]
fn every_answer_has_exactly_the_properties_its_schema_lists() {
    let api = setup();
    let (_, doc) = api.get("/api/v1/openapi.json", &api.operator);
    let id = api.import_id("acme", "held");
    let settings = r#"{"schedule": "0 2 * * *", "webhook_url": "https://hooks.example.org/x",
        "safeguards": [{"type": "students", "limit": "deleted", "percent": 60}]}"#;
    let (status, _, _) =
        api.server.http_with("PATCH", "/api/v1/tenants/acme/settings", Some(&api.acme), settings);
    assert_eq!(status, 200);
    // A schedule kept under another trigger runs nothing: no next run is promised.
    let (_, t) = api.get("/api/v1/tenants/acme", &api.acme);
    assert!(t["next_run"].is_null(), "{t}");
    api.server.key("acme"); // a key for acme's key list
    api.server.cli_ok(&["export", "add", "acme", "daily", "--type", "students", "--schedule", "@daily"]);
    api.server.cli_ok(&["export", "run", "acme", "daily"]);
    let answers = [
        ("/api/v1/tenants", "TenantList", None),
        ("/api/v1/tenants", "Tenant", Some("/tenants/0")),
        ("/api/v1/tenants/acme", "TenantDetail", None),
        ("/api/v1/tenants/acme/imports", "Import", Some("/imports/0")),
        ("/api/v1/tenants/acme/settings", "Settings", None),
        ("/api/v1/tenants/acme/settings", "Safeguard", Some("/safeguards/0")),
        ("/api/v1/tenants/acme/keys", "Key", Some("/keys/0")),
        (&format!("/api/v1/imports/{id}"), "Import", None),
        (&format!("/api/v1/imports/{id}"), "Counts", Some("/counts")),
        (&format!("/api/v1/imports/{}/errors", api.import_id("acme", "incomplete")), "ErrorPage", None),
        (
            &format!("/api/v1/imports/{}/errors", api.import_id("acme", "incomplete")),
            "RowError",
            Some("/errors/0"),
        ),
        ("/api/v1/tenants/acme/records/students", "RecordPage", None),
        ("/api/v1/tenants/acme/exports", "SavedExportList", None),
        ("/api/v1/tenants/acme/exports", "SavedExport", Some("/exports/0")),
        ("/api/v1/tenants/acme/exports/daily/runs", "ExportRunList", None),
        ("/api/v1/tenants/acme/exports/daily/runs", "ExportRun", Some("/runs/0")),
        ("/api/v1/nothing", "Error", None),
    ];
    for (path, schema, pointer) in answers {
        let (_, v) = api.get(path, &api.operator);
        let v = pointer.map_or(&v, |p| v.pointer(p).unwrap_or_else(|| panic!("{path}: no {p} in {v}")));
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        let (listed, required) =
            schema_properties(&doc, &serde_json::json!({"$ref": format!("#/components/schemas/{schema}")}));
        assert_eq!(keys, listed, "{path}: the answer's properties are not the {schema} schema's");
        assert_eq!(required, listed, "{schema}: every property is always sent");
    }
}

#[test]
fn sftp_keys_and_settings_through_the_api() {
    let api = setup();
    let pubkey = std::fs::read_to_string(api.server.key("acme").with_extension("pub")).unwrap();
    let (status, _, v) = api.server.http("GET", "/api/v1/tenants/acme/keys", Some(&api.acme));
    assert_eq!((status, json(&v)["keys"].as_array().unwrap().len()), (200, 1));
    // The other tenant can neither see nor add nor remove them.
    let fingerprint = json(&v)["keys"][0]["fingerprint"].as_str().unwrap().to_owned();
    let (status, _, _) = api.server.http("GET", "/api/v1/tenants/acme/keys", Some(&api.beta));
    assert_eq!(status, 404);
    let body = serde_json::json!({"public_key": pubkey.trim()}).to_string();
    let (status, _, _) = api.server.http_with("POST", "/api/v1/tenants/acme/keys", Some(&api.beta), &body);
    assert_eq!(status, 404);
    let encoded: String = fingerprint.bytes().map(|b| format!("%{b:02X}")).collect();
    let (status, _, _) = api.server.http(
        "DELETE",
        &format!("/api/v1/tenants/acme/keys?fingerprint={encoded}"),
        Some(&api.beta),
    );
    assert_eq!(status, 404);
    // Its own key: adding it again is a conflict, a bad one is explained, removing works.
    let (status, _, v) = api.server.http_with("POST", "/api/v1/tenants/acme/keys", Some(&api.acme), &body);
    assert_eq!((status, json(&v)["error"]["code"].as_str()), (409, Some("key_exists")));
    let (status, _, v) = api.server.http_with(
        "POST",
        "/api/v1/tenants/acme/keys",
        Some(&api.acme),
        r#"{"public_key": "ssh-rsa AAAA"}"#,
    );
    assert_eq!((status, json(&v)["error"]["code"].as_str()), (400, Some("bad_key")));
    let (status, _, v) =
        api.server.http_with("POST", "/api/v1/tenants/acme/keys", Some(&api.acme), "{not json");
    assert_eq!((status, json(&v)["error"]["code"].as_str()), (400, Some("bad_request")));
    let (status, _, _) = api.server.http(
        "DELETE",
        &format!("/api/v1/tenants/acme/keys?fingerprint={encoded}"),
        Some(&api.acme),
    );
    assert_eq!(status, 200);
    let (status, _, v) = api.server.http_with("POST", "/api/v1/tenants/acme/keys", Some(&api.acme), &body);
    assert_eq!((status, json(&v)["fingerprint"].as_str()), (201, Some(fingerprint.as_str())));

    // Settings: checked as a whole, applied as a whole.
    let change = r#"{"trigger": "schedule", "schedule": "0 2 * * *", "timezone": "America/Chicago", "safeguards": [{"type": "students", "limit": "deleted", "percent": 5}]}"#;
    let (status, _, v) =
        api.server.http_with("PATCH", "/api/v1/tenants/acme/settings", Some(&api.acme), change);
    let v = json(&v);
    assert_eq!(
        (status, v["trigger"].as_str(), v["timezone"].as_str()),
        (200, Some("schedule"), Some("America/Chicago")),
        "{v}"
    );
    assert_eq!(v["safeguards"][0]["percent"], 5.0);
    let (_, t) = api.get("/api/v1/tenants/acme", &api.acme);
    assert!(t["next_run"].as_str().is_some_and(|n| n.ends_with('Z')), "a schedule trigger runs next at: {t}");
    let bad = r#"{"trigger": "manual", "timezone": "Mars/Olympus"}"#;
    let (status, _, v) = api.server.http_with("PATCH", "/api/v1/tenants/acme/settings", Some(&api.acme), bad);
    assert_eq!((status, json(&v)["error"]["code"].as_str()), (400, Some("bad_timezone")));
    // A secret alone is refused, in the API's own words.
    let (status, _, v) = api.server.http_with(
        "PATCH",
        "/api/v1/tenants/acme/settings",
        Some(&api.acme),
        r#"{"webhook_secret": "s"}"#,
    );
    let message = json(&v)["error"]["message"].as_str().unwrap_or_default().to_owned();
    assert_eq!(status, 400, "{v:?}");
    assert!(message.starts_with("webhook_secret: there is no webhook to sign"), "{message}");
    let (_, _, v) = api.server.http("GET", "/api/v1/tenants/acme/settings", Some(&api.acme));
    assert_eq!(json(&v)["trigger"], "schedule", "a refused change changes nothing");
    // How files are read, and per-type triggers, as the CLI sets them.
    let reading = r#"{"read_settings": {"strictness.students": "strict", "delimiter.students": "tab"}, "type_triggers": {"students": "manual"}}"#;
    let (status, _, v) =
        api.server.http_with("PATCH", "/api/v1/tenants/acme/settings", Some(&api.acme), reading);
    let v = json(&v);
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["read_settings"],
        serde_json::json!({"strictness.students": "strict", "delimiter.students": "tab"})
    );
    assert_eq!(v["type_triggers"]["students"], "manual");
    // `read_settings` carries read settings only, and a read setting names a type that exists.
    for bad in
        [r#"{"read_settings": {"trigger": "manual"}}"#, r#"{"read_settings": {"delimiter.unicorns": "tab"}}"#]
    {
        let (status, _, v) =
            api.server.http_with("PATCH", "/api/v1/tenants/acme/settings", Some(&api.acme), bad);
        assert_eq!((status, json(&v)["error"]["code"].as_str()), (400, Some("bad_reading")), "{bad}");
    }
    let (_, _, v) = api.server.http("GET", "/api/v1/tenants/acme/settings", Some(&api.acme));
    assert_eq!(json(&v)["trigger"], "schedule");
    let (status, _, _) = api.server.http_with(
        "PATCH",
        "/api/v1/tenants/acme/settings",
        Some(&api.beta),
        r#"{"trigger": "manual"}"#,
    );
    assert_eq!(status, 404);
}

/// schemathesis (PyPI) generates requests from `/api/v1/openapi.json` and checks that no
/// answer is a server error or contradicts the document.
#[test]
fn schemathesis_finds_no_server_errors_and_no_answers_the_schema_does_not_describe() {
    if !have("schemathesis", "schemathesis (pip install schemathesis)") {
        return;
    }
    let api = setup();
    let url = format!("http://127.0.0.1:{}/api/v1/openapi.json", api.server.http_port);
    let auth = format!("Authorization: Bearer {}", api.operator);
    let mut cmd = std::process::Command::new("schemathesis");
    cmd.args(["run", &url, "-H", &auth])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--max-time", "25", "--seed", "7", "--no-color"])
        .env("SCHEMATHESIS_TELEMETRY", "false");
    let out = run_with_timeout(&mut cmd, std::time::Duration::from_secs(180));
    let text = output_text(&out);
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    assert!(text.contains("passed"), "{text}");
}

#[test]
fn notification_settings_through_the_api() {
    let api = setup();
    let change = r#"{"notify_emails": ["Ops@District.org"], "webhook_url": "https://hooks.example.org/x", "webhook_secret": "s3cret-value"}"#;
    let (status, _, v) =
        api.server.http_with("PATCH", "/api/v1/tenants/acme/settings", Some(&api.acme), change);
    let v = json(&v);
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["notify_emails"][0].as_str(), v["webhook_url"].as_str()),
        (Some("ops@district.org"), Some("https://hooks.example.org/x"))
    );
    assert!(!v.to_string().contains("s3cret-value"), "the secret is never shown: {v}");
    let bad = r#"{"notify_emails": ["not an address"]}"#;
    let (status, _, v) = api.server.http_with("PATCH", "/api/v1/tenants/acme/settings", Some(&api.acme), bad);
    assert_eq!((status, json(&v)["error"]["code"].as_str()), (400, Some("bad_notify")));
    let off = r#"{"webhook_url": ""}"#;
    let (status, _, v) = api.server.http_with("PATCH", "/api/v1/tenants/acme/settings", Some(&api.acme), off);
    assert_eq!(
        (status, json(&v)["webhook_url"].is_null()),
        (200, true),
        "an empty URL turns the webhook off"
    );
}

/// A read-only key changes nothing: every operation the OpenAPI document marks as needing the
/// `write` scope answers it 403 `scope` (the document lists them; anything else is a read),
/// and nothing it tried is in the audit log as done. A key limited to some types reaches
/// only those.
#[test]
fn a_read_only_key_cannot_change_anything_on_any_operation_and_a_typed_key_sees_its_types_only() {
    let api = setup();
    let read =
        api.server.cli_ok(&["apikey", "add", "--tenant", "acme", "--scope", "read", "--name", "reporting"]);
    let read = read.trim().to_owned();
    let held = {
        let (_, list) = api.get("/api/v1/tenants/acme/imports", &api.acme);
        list["imports"].as_array().unwrap().iter().find(|i| i["status"] == "held").unwrap()["id"]
            .as_i64()
            .unwrap()
    };
    let (_, _, body) = api.server.http("GET", "/api/v1/openapi.json", None);
    let doc = json(&body);
    let mut writes = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let needs_write = op["security"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|r| r["bearer"].as_array().is_some_and(|scopes| scopes.iter().any(|x| x == "write")))
            });
            assert_eq!(
                needs_write,
                method != "get",
                "{method} {path}: only reads go without the write scope"
            );
            if !needs_write {
                continue;
            }
            writes += 1;
            let url = path
                .replace("{tenant}", "acme")
                .replace("{id}", &held.to_string())
                .replace("{type}", "students")
                .replace("{key}", "acme0")
                .replace("{name}", "roster");
            let url = if url.ends_with("/keys") && method == "delete" {
                format!("{url}?fingerprint=SHA256:x")
            } else {
                url
            };
            let (status, _, answer) =
                api.server.http_with(&method.to_uppercase(), &url, Some(&read), r#"{"type":"students"}"#);
            assert_eq!(status, 403, "{method} {url}: {answer}");
            assert_eq!(json(&answer)["error"]["code"], "scope", "{method} {url}: {answer}");
        }
    }
    assert!(writes >= 11, "{writes} write operations");
    // The document says so: every operation may answer 403.
    assert!(
        doc["paths"]["/api/v1/tenants/{tenant}/settings"]["patch"]["responses"]["403"].is_object(),
        "403 documented"
    );
    let listed = api.server.cli_ok(&["apikey", "list", "--tenant", "acme"]);
    assert!(listed.lines().any(|l| l.contains("reporting") && l.contains(" read ")), "{listed}");
    // Each refusal is in the audit log once, as the key's, naming what it asked for.
    let log: serde_json::Value =
        json(&api.server.cli_ok(&["audit", "--tenant", "acme", "--json", "--limit", "1000"]));
    let refused: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "access.refused" && e["actor"] == "reporting")
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert_eq!(refused.len(), writes, "{refused:?}");
    assert!(refused.contains(&format!("POST /api/v1/imports/{held}/approve").as_str()), "{refused:?}");
    // A NUL in the query, the path or the body is refused at the edge (PostgreSQL answered a
    // query's with an error: a 500).
    for query in ["tenant=%00%C3%8E&action=tenant.settings", "action=%00"] {
        let (status, body) = api.get(&format!("/api/v1/audit?{query}"), &api.operator);
        assert_eq!(status, 400, "{query}: {body}");
    }
    for (method, url, body) in [
        ("DELETE", "/api/v1/tenants/acme/records/students/S%00", ""),
        ("GET", "/api/v1/tenants/acme/records/students/S1%00/photo", ""),
        ("POST", "/api/v1/tenants/acme/keys", r#"{"public_key":"ssh-ed25519 AAAA x\u0000"}"#),
        ("PATCH", "/api/v1/tenants/acme/settings", r#"{"notify_email\u0000":"a@b.c"}"#),
    ] {
        let (status, _, answer) = api.server.http_with(method, url, Some(&api.operator), body);
        assert_eq!(status, 400, "{method} {url} {body}: {answer}");
        let message = json(&answer)["error"]["message"].as_str().unwrap_or_default().to_owned();
        assert!(message.contains("NUL character"), "{method} {url}: {answer}");
    }
    let (_, only) = api.get("/api/v1/audit?tenant=acme&action=access.refused&limit=1000", &api.acme);
    let only = only["entries"].as_array().unwrap();
    assert!(only.len() >= writes && only.iter().all(|e| e["action"] == "access.refused"), "{only:?}");
    // The API pages the log: a full page says where the next begins, and it begins there.
    let (_, first) = api.get("/api/v1/audit?tenant=acme&limit=2", &api.acme);
    let next = first["next_before_id"].as_i64().expect("a full page has a next one");
    let (_, second) = api.get(&format!("/api/v1/audit?tenant=acme&limit=2&before_id={next}"), &api.acme);
    let ids: Vec<i64> =
        second["entries"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.len() == 2 && ids.iter().all(|id| *id < next), "{second}");
    // It still reads.
    let (status, _) = api.get("/api/v1/tenants/acme/records/students", &read);
    assert_eq!(status, 200);
    let (_, held_now) = api.get(&format!("/api/v1/imports/{held}"), &read);
    assert_eq!(held_now["status"], "held", "nothing was approved");
    let log = api.server.cli_ok(&["audit", "--tenant", "acme"]);
    assert!(!log.lines().any(|l| l.contains("api_key reporting") && l.contains(" done ")), "{log}");

    // A key limited to guardians: their records and imports, not the students'.
    let typed = api.server.cli_ok(&["apikey", "add", "--tenant", "acme", "--types", "guardians"]);
    let typed = typed.trim().to_owned();
    let (status, _) = api.get("/api/v1/tenants/acme/records/guardians", &typed);
    assert_eq!(status, 200);
    let (status, _, answer) = api.server.http("GET", "/api/v1/tenants/acme/records/students", Some(&typed));
    assert_eq!((status, json(&answer)["error"]["code"].as_str()), (403, Some("scope")), "{answer}");
    let (_, imports) = api.get("/api/v1/tenants/acme/imports", &typed);
    let types: Vec<&str> =
        imports["imports"].as_array().unwrap().iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert!(!types.is_empty() && types.iter().all(|t| *t == "guardians"), "{types:?}");
    let (status, _, _) = api.server.http("POST", "/api/v1/tenants/acme/sync", Some(&typed));
    assert_eq!(status, 403, "a sync takes every type");
    // Nor the students' saved exports: not listed, not shown, run, replaced or removed (a
    // newcomer's walk ran, retyped and deleted one with a guardians key).
    let (status, _, answer) = api.server.http_with(
        "PUT",
        "/api/v1/tenants/acme/exports/roster",
        Some(&api.acme),
        r#"{"type":"students"}"#,
    );
    assert_eq!(status, 200, "{answer}");
    let (_, list) = api.get("/api/v1/tenants/acme/exports", &typed);
    assert!(list["exports"].as_array().unwrap().iter().all(|e| e["type"] != "students"), "{list}");
    for (method, url, body) in [
        ("GET", "/api/v1/tenants/acme/exports/roster", ""),
        ("GET", "/api/v1/tenants/acme/exports/roster/runs", ""),
        ("POST", "/api/v1/tenants/acme/exports/roster/run", ""),
        ("PUT", "/api/v1/tenants/acme/exports/roster", r#"{"type":"guardians"}"#),
        ("DELETE", "/api/v1/tenants/acme/exports/roster", ""),
    ] {
        let (status, _, answer) = api.server.http_with(method, url, Some(&typed), body);
        assert_eq!(
            (status, json(&answer)["error"]["code"].as_str()),
            (403, Some("scope")),
            "{method} {url}: {answer}"
        );
    }
    let (_, roster) = api.get("/api/v1/tenants/acme/exports/roster", &api.acme);
    assert_eq!(roster["type"], "students", "{roster}");
    let refused = api.server.cli(&["apikey", "add", "--tenant", "acme", "--types", "nosuchtype"]);
    assert_eq!(refused.status.code(), Some(2), "{}", output_text(&refused));
}
