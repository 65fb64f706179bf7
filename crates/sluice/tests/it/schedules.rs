//! When a set of files is imported: a settle time that waits for an SIS export job's files to
//! stop arriving, and blackout days in which full files delete nothing.

use crate::common::*;
use crate::openssh::sftp_batch;
use std::time::Duration;

/// An SIS export job sends guardians first and students after: with a settle time both wait,
/// then run as a set, students first, so the guardians' references resolve.
#[test]
fn a_settled_set_of_uploads_runs_in_reference_order() {
    if !have("sftp", "openssh-client") {
        return;
    }
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    server.cli_ok(&["tenant", "set", "acme", "folders=students,guardians", "settle_secs=2"]);
    let shown = server.cli_ok(&["tenant", "show", "acme"]);
    assert!(shown.contains("quiet 2 s"), "{shown}");
    write_file(
        server.dir.path(),
        "guardians.csv",
        b"guardianSisId,studentSisId,firstName,lastName,email\nG1,S1,Gail,Kent,gail@example.org\n",
    );
    write_file(server.dir.path(), "students.csv", b"sisId,firstName,lastName\nS1,Sam,Kent\n");
    let key = server.key("acme");
    let out = sftp_batch(&server, &key, "put guardians.csv /guardians/\nput students.csv /students/\n", &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    // Nothing runs while the set may still be arriving.
    std::thread::sleep(Duration::from_millis(500));
    assert!(server.imports("acme").is_empty(), "{:?}", server.imports("acme"));
    let done = |s: &Server| {
        let all = s.imports("acme");
        all.len() == 2 && all.iter().all(|i| i["status"] != "running")
    };
    assert!(server.wait_until(Duration::from_secs(20), done), "{:?}", server.imports("acme"));
    let imports = server.imports("acme");
    assert_eq!(
        (imports[1]["type"].as_str(), imports[0]["type"].as_str()),
        (Some("students"), Some("guardians"))
    );
    assert!(imports.iter().all(|i| i["status"] == "complete"), "{imports:?}");
}

/// Between school years (Clever pauses syncs) a district's nightly file may hold only the
/// students enrolled for next year: in a blackout, what it leaves out is not deleted.
#[test]
fn in_a_blackout_a_full_file_adds_and_updates_but_deletes_nothing() {
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    let import = |name: &str, body: &str| {
        let file = write_file(server.dir.path(), name, body.as_bytes());
        let _ = server.cli(&["import", "--tenant", "acme", "--type", "students", file.to_str().unwrap()]);
        server.imports("acme")[0].clone()
    };
    import("all.csv", "sisId,firstName,lastName\nS1,Ann,Lee\nS2,Bob,Ray\nS3,Cy,Day\n");
    let refused = server.cli(&["tenant", "set", "acme", "blackout=2026-08-20..2026-06-15"]);
    assert!(
        !refused.status.success() && output_text(&refused).contains("ends before it starts"),
        "{}",
        output_text(&refused)
    );
    server.cli_ok(&["tenant", "set", "acme", "blackout=2000-01-01..2099-12-31"]);
    let v = import("summer.csv", "sisId,firstName,lastName\nS1,Ann,Lee-Smith\nS4,Di,Fox\n");
    assert_eq!(v["status"], "complete", "{v}");
    assert_eq!(
        (v["counts"]["added"].as_u64(), v["counts"]["updated"].as_u64(), v["counts"]["deleted"].as_u64()),
        (Some(1), Some(1), Some(0)),
        "{v}"
    );
    let warnings = v["warnings"].to_string();
    assert!(
        warnings.contains("2 students records missing from this file were not deleted")
            && warnings.contains("2000-01-01..2099-12-31"),
        "{warnings}"
    );
    let records = server.cli_ok(&["records", "--tenant", "acme", "--type", "students"]);
    assert_eq!(records.lines().count(), 5, "S1..S4 and the header: {records}");
    // After the blackout the same file deletes what it leaves out (here, held by the
    // deletion safeguard first, as any such file is).
    server.cli_ok(&["tenant", "set", "acme", "blackout="]);
    let v = import("summer.csv", "sisId,firstName,lastName\nS1,Ann,Lee-Smith\nS4,Di,Fox\n");
    assert_eq!(v["status"], "held", "{v}");
    assert_eq!(v["counts"]["deleted"], 2, "{v}");
}

/// Two files of one type wait in a folder (a manual trigger): a sync imports them in the order
/// they came, so the newer one is what the records say, whatever their names.
#[test]
fn a_sync_imports_the_files_of_one_type_in_the_order_they_came() {
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    server.cli_ok(&["tenant", "set", "acme", "trigger=manual"]);
    let folder = server.tenant_dir("acme").join("students");
    std::fs::write(folder.join("z-monday.csv"), "sisId,firstName,lastName,grade\nS1,Ann,Lee,5\n").unwrap();
    let older = std::fs::File::options().write(true).open(folder.join("z-monday.csv")).unwrap();
    older.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600)).unwrap();
    std::fs::write(folder.join("a-tuesday.csv"), "sisId,firstName,lastName,grade\nS1,Ann,Lee,6\n").unwrap();
    server.cli_ok(&["sync", "--tenant", "acme"]);
    let imports = server.imports("acme");
    assert_eq!(
        (imports[1]["file_name"].as_str(), imports[0]["file_name"].as_str()),
        (Some("z-monday.csv"), Some("a-tuesday.csv"))
    );
    let records = server.cli_ok(&["records", "--tenant", "acme", "--type", "students"]);
    assert!(records.contains("S1,Ann,Lee,,6,"), "Tuesday's grade: {records}");
}
