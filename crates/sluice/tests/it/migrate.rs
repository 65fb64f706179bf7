//! `sluice migrate --to URL`: a SQLite deployment moves its state into PostgreSQL and its
//! server goes on from there with everything it had: tenants and their passwords, imports,
//! records and people, API keys, saved exports, the audit log; new ids follow the old ones.

use crate::common::*;
use crate::openssh::sftp_batch;
use std::time::Duration;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Refused while a server runs on the data directory; a database that cannot be reached
/// moves nothing; either way the deployment stays as it was.
#[test]
fn a_move_refused_or_failed_changes_nothing() {
    let mut server = Server::start_on_sqlite();
    server.importing_tenant("acme", "pw-for-tests");
    let unreachable = "host=127.0.0.1 port=1 user=nobody dbname=none connect_timeout=2";
    let o = server.cli(&["migrate", "--to", unreachable]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert!(output_text(&o).contains("stop it first"), "{}", output_text(&o));
    server.sigterm();
    assert_eq!(server.wait_for_exit(Duration::from_secs(30)), Some(0));
    let o = server.cli(&["migrate", "--to", unreachable]);
    let said = output_text(&o);
    assert_eq!(o.status.code(), Some(2), "{said}");
    assert!(said.contains("cannot open the PostgreSQL database (--to)"), "{said}");
    assert!(!said.contains("nobody"), "the url is never printed: {said}");
    assert!(server.data_dir().join("sluice.db").is_file());
    assert!(!server.data_dir().join("STATE-IN-POSTGRESQL").exists());
    assert!(server.cli_ok(&["tenant", "list"]).contains("acme"));
}

#[test]
fn a_sqlite_deployment_moves_into_postgresql_and_goes_on_with_everything() {
    let mut server = Server::start_on_sqlite();
    let Some(database) = TestDatabase::create() else {
        eprintln!("runs on the suite's PostgreSQL pass ({POSTGRES_SWITCH})");
        return;
    };
    server.importing_tenant("acme", "pw-for-tests");
    let key = server.key("acme");
    let upload = |server: &Server, name: &str, body: &str| {
        let file = write_file(server.dir.path(), name, body.as_bytes());
        let out = sftp_batch(server, &key, &format!("put {} /students/{name}\n", file.display()), &[]);
        assert!(out.status.success(), "{}", output_text(&out));
    };
    let header = "sisId,firstName,lastName,middleName,phone,birthDate,grade\n";
    upload(
        &server,
        "students.csv",
        &format!("{header}S1,Zoë,Núñez,,+13125550107,2010-04-05,5\nS2,Bo,Ray,,,2011-12-31,6\n"),
    );
    assert!(server.wait_until(Duration::from_secs(20), |s| {
        let all = s.imports("acme");
        all.len() == 1 && all[0]["status"] != "running"
    }));
    let token = server.api_key(Some("acme"));
    server.cli_ok(&["export", "add", "acme", "Roster", "--type", "students", "--columns", "sisId,lastName"]);
    let before = |s: &Server| {
        (
            json(&s.cli_ok(&["imports", "--tenant", "acme", "--json"])),
            json(&s.cli_ok(&["people", "--tenant", "acme", "--json"])),
            json(&s.cli_ok(&["export", "list", "acme", "--json"])),
        )
    };
    let was = before(&server);
    server.sigterm();
    assert_eq!(server.wait_for_exit(Duration::from_secs(30)), Some(0));

    // Into a database another application uses: refused before anything is made there.
    let other = TestDatabase::create().expect("a database, as above");
    let sql = |db: &TestDatabase, q: &str| {
        let url = db.url();
        let q = q.to_owned();
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            c.query(q.as_str(), &[]).unwrap().iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>()
        })
        .join()
        .unwrap()
    };
    sql(&other, "CREATE TABLE inventory (item TEXT)");
    let o = server.cli(&["migrate", "--to", &other.url()]);
    let said = output_text(&o);
    assert_eq!(o.status.code(), Some(2), "{said}");
    assert!(said.contains("not sluice's (inventory)"), "{said}");
    let tables = "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'";
    assert_eq!(sql(&other, tables), ["inventory"], "nothing of sluice's was made there");

    let url = database.url();
    let moved = server.cli(&["migrate", "--to", &url]);
    let said = output_text(&moved);
    assert!(moved.status.success(), "{said}");
    assert!(said.contains("each read back from PostgreSQL and compared"), "{said}");
    let records = said.lines().find(|l| l.starts_with("records ")).unwrap_or_default();
    assert!(records.split_whitespace().nth(1) == Some("2"), "{said}");
    assert!(!said.contains(&url), "the url is never printed: {said}");
    assert!(!server.data_dir().join("sluice.db").exists());
    assert!(server.data_dir().join("sluice.db.moved-to-postgresql").is_file());
    // The directory is PostgreSQL's now: a command without the url refuses, and so does a
    // second move.
    let again = server.cli(&["migrate", "--to", &url]);
    assert_eq!(again.status.code(), Some(2), "{}", output_text(&again));
    assert!(output_text(&again).contains("is in PostgreSQL already"), "{}", output_text(&again));
    let listed = server.cli(&["tenant", "list"]);
    assert!(output_text(&listed).contains("keeps its state in PostgreSQL"), "{}", output_text(&listed));

    server.start_again_on(database);
    assert_eq!(before(&server), was, "the state read the same from PostgreSQL");
    let (status, _, body) = server.http("GET", "/api/v1/tenants/acme/imports", Some(&token));
    assert_eq!(status, 200, "the API key made on SQLite works: {body}");
    // The tenant's key logs in; a new upload gets the next import id.
    upload(
        &server,
        "students2.csv",
        &format!(
            "{header}S1,Zoë,Núñez,,+13125550107,2010-04-05,5\nS2,Bo,Ray,,,2011-12-31,6\nS3,Ann,Lee,,,2012-01-15,5\n"
        ),
    );
    assert!(server.wait_until(Duration::from_secs(20), |s| {
        let all = s.imports("acme");
        all.len() == 2 && all.iter().all(|i| i["status"] != "running")
    }));
    let imports = server.imports("acme");
    assert_eq!(imports[0]["id"].as_i64(), imports[1]["id"].as_i64().map(|i| i + 1), "{imports:?}");
    assert_eq!(imports[0]["counts"]["added"], 1, "{}", imports[0]);
    let audit = server.cli_ok(&["audit", "--json"]);
    assert!(audit.contains("state.migrate"), "{audit}");
    assert!(
        audit.contains("api_key.add") && audit.contains("tenant.add"),
        "the audit log came along: {audit}"
    );
}
