//! Imports of different tenants run side by side (`[imports] workers`); a tenant's own
//! imports take turns, in upload order; tenants with waiting files are served in turn.
//! Assertions are on the imports' own timestamps and statuses, never on wall-clock limits.

use crate::common::*;
use crate::imports::wait_for_status;
use serde_json::Value;
use std::time::Duration;

/// A students file as an SIS exports it: header, then `n` rows (ids `{prefix}{i}`).
fn students(n: usize, prefix: &str, first: &str) -> String {
    let mut s = String::from("sisId,firstName,lastName,birthDate\r\n");
    for i in 0..n {
        s.push_str(&format!("{prefix}{i},{first}{i},Last{i},2010-01-{:02}\r\n", 1 + i % 28));
    }
    s
}

fn ms(v: &Value, key: &str) -> i64 {
    v[key].as_i64().unwrap_or_else(|| panic!("{key} missing: {v}"))
}

fn added(v: &Value) -> u64 {
    v["counts"]["added"].as_u64().unwrap()
}

/// The tenant's imports, oldest first, once `count` of them have finished.
fn finished(server: &Server, tenant: &str, count: usize) -> Vec<Value> {
    let mut list = wait_for_status(server, tenant, count, Duration::from_secs(300));
    list.reverse();
    let done = list.iter().filter(|v| v["status"] != "running").count();
    assert!(done >= count, "{tenant}: {done} of {count} imports finished: {list:?}");
    list
}

/// Waits until the tenant's newest import is `running` (it has started and not ended).
fn wait_until_running(server: &Server, tenant: &str) {
    let running = server.wait_until(Duration::from_secs(120), |s| {
        s.imports(tenant).first().is_some_and(|v| v["status"] == "running")
    });
    assert!(running, "{tenant}'s import never showed as running: {:?}", server.imports(tenant));
}

/// The case: a 1-row file waited 5.7 s behind another tenant's 300,000-row file.
/// Now the small one starts after the large one and ends before it (100,000 rows here: the
/// debug build takes seconds over them, long enough for the small file to arrive and end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_row_import_completes_while_another_tenants_100k_row_import_runs() {
    let server = Server::start();
    server.importing_tenant("district", "pw-for-tests");
    server.importing_tenant("school", "pw-for-tests");
    let (_ssh_a, big) = sftp_login(server.port, "district", "pw-for-tests").await;
    let (_ssh_b, small) = sftp_login(server.port, "school", "pw-for-tests").await;

    // The district's first students file: its first import of the type (no records to
    // compare with), the case that used to hold the database's write lock throughout.
    put(&big, "/students/students.csv", students(100_000, "S", "First").as_bytes()).await.unwrap();
    wait_until_running(&server, "district");
    put(&small, "/students/students.csv", b"sisId,firstName,lastName\r\nS1,Ann,Lee\r\n").await.unwrap();

    let b = finished(&server, "school", 1).remove(0);
    assert_eq!(b["status"], "complete", "{b}");
    assert_eq!(added(&b), 1, "{b}");
    let a = finished(&server, "district", 1).remove(0);
    assert_eq!(a["status"], "complete", "{a}");
    assert_eq!(added(&a), 100_000, "{a}");
    // The small import started after the large one and finished before it: it ran while the
    // large one was running, instead of waiting for it.
    assert!(ms(&b, "created_ms") > ms(&a, "created_ms"), "school {b}\ndistrict {a}");
    assert!(ms(&b, "finished_ms") < ms(&a, "finished_ms"), "school {b}\ndistrict {a}");
    let upload = &server.uploads("school")[0];
    println!(
        "1-row import beside a 100,000-row import: {} ms from upload to complete; the large one took {} ms",
        ms(&b, "finished_ms") - ms(upload, "at_ms"),
        ms(&a, "finished_ms") - ms(&a, "created_ms"),
    );
}

/// A tenant's files of one type are imported one at a time, in upload order, while another
/// tenant's go on beside them: the last file uploaded is what the records say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_files_are_imported_one_at_a_time_in_upload_order() {
    let server = Server::start();
    let versions = ["First", "Second", "Third"];
    let mut sessions = Vec::new();
    for tenant in ["east", "west"] {
        server.importing_tenant(tenant, "pw-for-tests");
        sessions.push(sftp_login(server.port, tenant, "pw-for-tests").await);
    }
    // Three full snapshots of the same 10,000 students, each renaming them all, uploaded
    // back to back by both tenants (different names, so each is an upload of its own).
    for (n, first) in versions.iter().enumerate() {
        for (_, sftp) in &sessions {
            let path = format!("/students/students-{}.csv", n + 1);
            put(sftp, &path, students(10_000, "S", first).as_bytes()).await.unwrap();
        }
    }
    for tenant in ["east", "west"] {
        let imports = finished(&server, tenant, 3);
        let names: Vec<&str> = imports.iter().map(|v| v["file_name"].as_str().unwrap()).collect();
        assert_eq!(names, ["students-1.csv", "students-2.csv", "students-3.csv"], "{tenant}");
        let counts: Vec<[u64; 3]> = imports
            .iter()
            .map(|v| ["added", "updated", "unchanged"].map(|k| v["counts"][k].as_u64().unwrap()))
            .collect();
        assert_eq!(counts, [[10_000, 0, 0], [0, 10_000, 0], [0, 10_000, 0]], "{tenant}: {imports:?}");
        for pair in imports.windows(2) {
            assert_eq!(pair[0]["status"], "complete", "{tenant}: {}", pair[0]);
            assert!(
                ms(&pair[1], "created_ms") >= ms(&pair[0], "finished_ms"),
                "{tenant}: an import began before the one uploaded before it ended:\n{}\n{}",
                pair[0],
                pair[1]
            );
        }
        let records = server.cli_ok(&["records", "--tenant", tenant, "--type", "students"]);
        assert!(records.contains("S9999,Third9999,Last9999"), "{tenant}: the last upload must win");
        assert!(!records.contains("Second"), "{tenant}: an older snapshot was applied last");
    }
}

/// Two workers, two tenants each with a long import running and twenty files queued behind
/// it: a third tenant's one file is next as soon as a worker is free, not after the queues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_with_many_queued_files_does_not_starve_another_tenants_one_file() {
    let server = Server::start_with(&[("SLUICE_IMPORTS_WORKERS", "2")]);
    let busy = ["alpha", "gamma"];
    let mut sessions = Vec::new();
    for tenant in busy {
        server.importing_tenant(tenant, "pw-for-tests");
        sessions.push(sftp_login(server.port, tenant, "pw-for-tests").await);
    }
    server.importing_tenant("beta", "pw-for-tests");
    let (_ssh_b, beta) = sftp_login(server.port, "beta", "pw-for-tests").await;
    let staff = b"employeeId,firstName,lastName\r\nE1,Ann,Lee\r\n";
    for (_, sftp) in &sessions {
        put(sftp, "/students/students.csv", students(100_000, "S", "First").as_bytes()).await.unwrap();
    }
    for i in 1..=20 {
        for (_, sftp) in &sessions {
            put(sftp, &format!("/employees/staff-{i:02}.csv"), staff).await.unwrap();
        }
    }
    for tenant in busy {
        wait_until_running(&server, tenant);
    }
    put(&beta, "/employees/staff.csv", staff).await.unwrap();
    let uploaded = ms(&server.uploads("beta")[0], "at_ms");

    let b = finished(&server, "beta", 1).remove(0);
    assert_eq!(b["status"], "complete", "{b}");
    let mut after_upload = 0;
    let mut before_beta = Vec::new();
    for tenant in busy {
        for v in finished(&server, tenant, 21) {
            assert_ne!(v["status"], "failed", "{v}");
            if ms(&v, "created_ms") > uploaded {
                after_upload += 1;
                if ms(&v, "created_ms") < ms(&b, "created_ms") {
                    before_beta.push(v);
                }
            }
        }
    }
    // The scenario is real: both queues were long when beta's file came.
    assert!(after_upload >= 20, "only {after_upload} queued imports started after beta's upload");
    // At most one import per worker may have been on its way when the upload was recorded.
    assert!(
        before_beta.len() <= 2,
        "{} queued imports of other tenants went before beta's one file: {before_beta:?}",
        before_beta.len()
    );
}

/// SIGTERM while a large import runs: it finishes and commits before the process exits;
/// an upload queued behind it is imported (now or after the restart), exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_running_imports_finish_and_leaves_queued_ones_claimable() {
    let mut server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    {
        let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
        put(&sftp, "/students/students.csv", students(100_000, "S", "First").as_bytes()).await.unwrap();
        put(&sftp, "/employees/staff.csv", b"employeeId,firstName,lastName\r\nE1,Ann,Lee\r\n").await.unwrap();
        wait_until_running(&server, "acme");
    }
    server.sigterm();
    assert_eq!(server.wait_for_exit(Duration::from_secs(120)), Some(0), "{}", server.log());
    let big = server.imports("acme").into_iter().find(|v| v["file_name"] == "students.csv").unwrap();
    assert_eq!(big["status"], "complete", "the running import must finish before the exit: {big}");
    assert_eq!(added(&big), 100_000);

    server.kill_and_restart();
    let imports = finished(&server, "acme", 2);
    assert_eq!(imports.len(), 2, "{imports:?}");
    assert!(imports.iter().all(|v| v["status"] == "complete"), "{imports:?}");
    let mut names: Vec<&str> = imports.iter().map(|v| v["file_name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["staff.csv", "students.csv"], "each upload imported once: {imports:?}");
}

/// `sluice sync` beside a running server, killed mid-import: its `running` import and its
/// upload's lease were left until the server's next start (a dashboard showed the import
/// running for ever, and the file waited). The server now takes such work back within
/// seconds: the sync's file is imported once, by the server, and nothing is left running.
#[test]
fn a_sync_killed_mid_import_beside_the_server_is_imported_by_the_server_within_seconds() {
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    server.cli_ok(&["tenant", "set", "acme", "trigger=manual"]);
    let rows = 50_000;
    write_file(
        &server.tenant_dir("acme").join("students"),
        "students.csv",
        students(rows, "S", "F").as_bytes(),
    );
    let mut sync = server.command().args(["sync", "--tenant", "acme"]).spawn().unwrap();
    wait_until_running(&server, "acme");
    sync.kill().unwrap();
    let _ = sync.wait();
    let killed_at = std::time::Instant::now();
    let list = finished(&server, "acme", 1);
    assert_eq!(list.len(), 1, "one import, the server's (the sync's running row is gone): {list:?}");
    assert_eq!((list[0]["status"].as_str(), added(&list[0])), (Some("complete"), rows as u64), "{list:?}");
    // Taken back at the server's next look (every 5 s), not when the lease ran out (300 s).
    assert!(killed_at.elapsed() < Duration::from_secs(120), "took {:?}", killed_at.elapsed());
    assert!(server.wait_for_log("work left by a stopped process runs again", Duration::from_secs(1)));
    let uploads = server.uploads("acme");
    assert_eq!(uploads.len(), 1, "{uploads:?}");
}
