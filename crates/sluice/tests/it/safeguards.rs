//! Tenant-level safety: per-type thresholds for deletions and updates, and dry runs.

use crate::common::*;
use serde_json::Value;

fn students(n: usize, last: &str) -> String {
    let mut s = String::from("sisId,firstName,lastName\n");
    for i in 0..n {
        s.push_str(&format!("S{i},First{i},{last}{i}\n"));
    }
    s
}

fn imports(server: &Server, tenant: &str) -> Vec<Value> {
    serde_json::from_str(&server.cli_ok(&["imports", "--tenant", tenant, "--json"])).unwrap()
}

#[test]
fn a_dry_run_reports_what_an_import_would_do_and_changes_nothing() {
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    let first = write_file(server.dir.path(), "students.csv", students(20, "Lee").as_bytes());
    server.cli_ok(&["import", "--tenant", "acme", first.to_str().unwrap()]);
    let before = server.cli_ok(&["records", "--tenant", "acme", "--type", "students"]);

    // Half the students gone, one renamed, one new, one bad row.
    let mut next = students(10, "Lee").replace("S3,First3,Lee3", "S3,First3,Ray3");
    next.push_str("S99,New,Kid\n,No,Id\n");
    let file = write_file(server.dir.path(), "students.csv", next.as_bytes());
    let out = server.cli(&["import", "--tenant", "acme", "--dry-run", file.to_str().unwrap()]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(
            "(would be held): 12 rows, 1 would be added, 1 updated, 9 unchanged, 10 deleted, 1 rejected"
        ),
        "{text}"
    );
    assert!(text.contains("would delete 10 of 20 students records"), "{text}");
    assert!(text.contains("students.csv:13: sisId: required"), "the bad row is shown with its line: {text}");
    assert!(text.contains("nothing was changed"), "{text}");
    assert_eq!(server.cli_ok(&["records", "--tenant", "acme", "--type", "students"]), before);
    assert_eq!(imports(&server, "acme").len(), 1, "a dry run leaves no import behind");
    assert!(file.exists());

    // The same file for real is held exactly as the dry run said.
    server.cli_ok(&["import", "--tenant", "acme", file.to_str().unwrap()]);
    let held = &imports(&server, "acme")[0];
    assert_eq!(held["status"], "held", "{held}");
    assert_eq!(held["counts"]["deleted"], 10);

    // A dry run of a clean first import of another tenant says it would complete.
    server.importing_tenant("beta", "pw-for-tests");
    let first = write_file(server.dir.path(), "students.csv", students(20, "Lee").as_bytes());
    let out = server.cli(&["import", "--tenant", "beta", "--dry-run", first.to_str().unwrap()]);
    assert!(
        output_text(&out).contains("(would complete): 20 rows, 20 would be added"),
        "{}",
        output_text(&out)
    );
    assert_eq!(server.cli_ok(&["records", "--tenant", "beta", "--type", "students"]).lines().count(), 1);
    assert!(imports(&server, "beta").is_empty());
}

#[test]
fn tenants_set_per_type_limits_for_deletions_and_updates() {
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    let import = |contents: String| {
        let f = write_file(server.dir.path(), "students.csv", contents.as_bytes());
        server.cli_ok(&["import", "--tenant", "acme", f.to_str().unwrap()]);
        imports(&server, "acme")[0].clone()
    };
    import(students(20, "Lee"));
    // By default updates never hold; 80% renamed goes through.
    let v = import(students(20, "Lee").replacen("Lee", "Ray", 16));
    assert_eq!((v["status"].as_str(), v["counts"]["updated"].as_u64()), (Some("complete"), Some(16)), "{v}");

    server.cli_ok(&[
        "tenant",
        "set",
        "acme",
        "safeguard.students.changed=75",
        "safeguard.students.deleted=5",
    ]);
    let shown: Value = serde_json::from_str(&server.cli_ok(&["tenant", "show", "acme", "--json"])).unwrap();
    assert_eq!(shown["safeguards"].as_array().unwrap().len(), 2, "{shown}");
    let v = import(students(20, "Fox"));
    assert_eq!(v["status"], "held", "{v}");
    assert!(v["message"].as_str().unwrap().contains("change 20 of 20 students records"), "{v}");
    server.cli_ok(&["discard", &v["id"].to_string()]);
    // 2 of 20 deleted is 10%, over the tenant's 5% (the type's own default would allow it).
    let v = import(students(18, "Lee").replacen("Lee", "Ray", 16));
    assert_eq!(v["status"], "held", "{v}");
    assert!(v["message"].as_str().unwrap().contains("delete 2 of 20"), "{v}");

    let bad = server.cli(&["tenant", "set", "acme", "safeguard.students.deleted=150"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(output_text(&bad).contains("0 to 100"), "{}", output_text(&bad));
    let bad = server.cli(&["tenant", "set", "acme", "safeguard.pupils.deleted=5"]);
    assert!(output_text(&bad).contains("no import type \"pupils\""), "{}", output_text(&bad));
}
