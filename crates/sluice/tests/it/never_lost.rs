//! Data that must never be lost: an old held file approved after a newer one was applied
//! (superseded, refused), an approval racing a newer upload, and records left referring to
//! what an import deletes (`on_delete = "keep" | "deactivate" | "hold"`), uploaded over SFTP
//! as a district sends them.

use crate::common::*;
use crate::imports::wait_for_status;
use crate::oneroster::{CLASSES, District, manifest, zip};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

const HEADER: &str = "sisId,firstName,lastName,grade,birthDate,email\r\n";

/// A full students file as an SIS exports it: every column filled.
fn full_students(ids: &[u32], grade_of_4: &str) -> String {
    let mut s = String::from(HEADER);
    for &i in ids {
        let grade = if i == 4 { grade_of_4 } else { "09" };
        s.push_str(&format!("S{i},First{i},Last{i},{grade},2011-03-{i:02},s{i}@example.org\r\n"));
    }
    s
}

fn show(server: &Server, id: i64) -> Value {
    serde_json::from_str(&server.cli_ok(&["import", "show", &id.to_string(), "--json"])).unwrap()
}

/// Uploads `data` over SFTP and waits for the import it makes; returns it.
async fn upload(
    server: &Server,
    sftp: &russh_sftp::client::SftpSession,
    tenant: &str,
    path: &str,
    data: &[u8],
) -> Value {
    let before = server.imports(tenant).len();
    put(sftp, path, data).await.unwrap();
    let list = wait_for_status(server, tenant, before + 1, Duration::from_secs(60));
    assert!(list.len() > before, "no import of {path}: {list:?}");
    list[0].clone()
}

fn records(server: &Server, tenant: &str, t: &str) -> String {
    server.cli_ok(&["records", "--tenant", tenant, "--type", t])
}

fn warnings(v: &Value) -> String {
    v["warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect::<Vec<_>>().join("\n")
}

/// The scenario a district met: a held 3-row students file approved after a full 6-row
/// reload was applied deleted 4 students and blanked fields of 2. Now the reload supersedes
/// the held file: approving it is refused, saying which import superseded it; nothing changes;
/// its file can still be downloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_held_file_cannot_be_approved_over_a_newer_reload() {
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    let first = upload(
        &server,
        &sftp,
        "acme",
        "/students/students.csv",
        full_students(&[1, 2, 3, 4, 5, 6], "10").as_bytes(),
    )
    .await;
    assert_eq!(first["status"], "complete", "{first}");

    // A partial export: three students, fewer columns. It would delete half: held.
    let partial = "sisId,firstName,lastName\r\nS1,First1,Last1\r\nS2,First2,Last2\r\nS7,First7,Last7\r\n";
    let held = upload(&server, &sftp, "acme", "/students/students.csv", partial.as_bytes()).await;
    assert_eq!(held["status"], "held", "{held}");
    let held_id = held["id"].as_i64().unwrap();

    // The next night's full reload, with a change, is applied; it supersedes the held file.
    let reload = upload(
        &server,
        &sftp,
        "acme",
        "/students/students.csv",
        full_students(&[1, 2, 3, 4, 5, 6], "11").as_bytes(),
    )
    .await;
    assert_eq!(reload["status"], "complete", "{reload}");
    let reload_id = reload["id"].as_i64().unwrap();
    assert!(
        warnings(&reload).contains(&format!("supersedes held import {held_id} (students.csv)")),
        "the newer import (and its notification) says so: {reload}"
    );
    let old = show(&server, held_id);
    assert_eq!(
        (old["status"].as_str(), old["superseded_by"].as_i64()),
        (Some("superseded"), Some(reload_id)),
        "{old}"
    );
    let listed = server.imports("acme");
    assert_eq!(listed.iter().find(|v| v["id"] == held_id).unwrap()["status"], "superseded");
    let text = server.cli_ok(&["import", "show", &held_id.to_string()]);
    assert!(
        text.contains("(superseded)") && text.contains(&format!("superseded by import {reload_id}")),
        "{text}"
    );
    assert!(!text.contains("approve it with"), "a superseded import cannot be approved: {text}");
    assert!(
        text.contains("(superseded): 3 rows, 1 would be added, 2 updated, 0 unchanged, 4 deleted, 0 rejected; not applied"),
        "its counts are what it would have done: {text}"
    );

    let before = records(&server, "acme", "students");
    assert_eq!(before.lines().count(), 7, "{before}");
    assert!(before.contains("S4,First4,Last4,,11,2011-03-04,,s4@example.org"), "{before}");

    // Approving the old file is refused, with the reason, by the CLI and the API.
    let out = server.cli(&["approve", &held_id.to_string()]);
    let said = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains(&format!("superseded by import {reload_id}")), "{said}");
    let key = server.api_key(Some("acme"));
    let (status, _, body) = server.http("POST", &format!("/api/v1/imports/{held_id}/approve"), Some(&key));
    assert_eq!(status, 409, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "superseded", "{body}");
    assert_eq!(records(&server, "acme", "students"), before, "nothing changed");
    assert_eq!(show(&server, held_id)["status"], "superseded");

    // Its file is kept, byte for byte, for the CLI and the API.
    let kept = server.cli(&["import", "file", &held_id.to_string()]);
    assert!(kept.status.success(), "{}", output_text(&kept));
    assert_eq!(kept.stdout, partial.as_bytes());
    let (status, content_type, body) =
        server.http("GET", &format!("/api/v1/imports/{held_id}/file"), Some(&key));
    assert_eq!((status, content_type.as_str()), (200, "application/octet-stream"));
    assert_eq!(body, partial);
    let (status, _, _) = server.http("GET", &format!("/api/v1/imports/{reload_id}/file"), Some(&key));
    assert_eq!(status, 404, "a complete import keeps no file");

    // Counted in /metrics.
    let (_, metrics) = server.http_get("/metrics");
    assert!(metrics.contains("sluice_imports_total{status=\"superseded\"} 1"), "{metrics}");
}

/// An approval and a newer upload at the same moment: whichever the store takes first, the
/// newer file's data is what stays, and the older file never lands after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_racing_a_newer_upload_never_puts_older_data_over_it() {
    let server = Arc::new(Server::start());
    server.importing_tenant("acme", "pw-for-tests");
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    upload(
        &server,
        &sftp,
        "acme",
        "/students/students.csv",
        full_students(&[1, 2, 3, 4, 5, 6], "10").as_bytes(),
    )
    .await;
    let mut outcomes = Vec::new();
    for round in 0..4 {
        let partial = format!(
            "{HEADER}S1,First1,Last1,09,2011-03-01,s1@example.org\r\nS2,First2,Last2,09,2011-03-02,\r\n"
        );
        let held = upload(&server, &sftp, "acme", "/students/students.csv", partial.as_bytes()).await;
        assert_eq!(held["status"], "held", "{held}");
        let held_id = held["id"].as_i64().unwrap();
        let newer = full_students(&[1, 2, 3, 4, 5, 6], &format!("{}", 20 + round));
        let before = server.imports("acme").len();
        let approver = {
            let server = server.clone();
            tokio::task::spawn_blocking(move || server.cli(&["approve", &held_id.to_string()]))
        };
        // Half the rounds give the approval a head start.
        if round % 2 == 1 {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        put(&sftp, "/students/students.csv", newer.as_bytes()).await.unwrap();
        let approval = approver.await.unwrap();
        wait_for_status(&server, "acme", before + 1, Duration::from_secs(60));
        let list = server.imports("acme");
        let newest = &list[0];
        assert_eq!(newest["status"], "complete", "{newest}");
        assert_eq!(
            records(&server, "acme", "students"),
            {
                let mut expected = String::from(
                    "sisId,firstName,lastName,middleName,grade,birthDate,schoolId,email,phone\r\n",
                );
                for i in 1..=6 {
                    let grade = if i == 4 { format!("{}", 20 + round) } else { "09".into() };
                    expected.push_str(&format!(
                        "S{i},First{i},Last{i},,{grade},2011-03-{i:02},,s{i}@example.org,\r\n"
                    ));
                }
                expected
            },
            "round {round}: the newer file's data stays"
        );
        let old = show(&server, held_id);
        if approval.status.success() {
            // The approval went first: it was applied, and the newer file after it.
            assert_eq!(old["status"], "complete", "{old}");
            assert!(newest["id"].as_i64() > Some(held_id));
            outcomes.push("approved first");
        } else {
            let said = output_text(&approval);
            assert!(said.contains(&format!("superseded by import {}", newest["id"])), "{said}");
            assert_eq!(old["status"], "superseded", "{old}");
            assert_eq!(old["superseded_by"], newest["id"], "{old}");
            outcomes.push("superseded");
        }
    }
    println!("approval vs newer upload: {outcomes:?}");
}

const GUARDIAN_COLUMNS: &str = r#"
[[type.column]]
name = "guardianSisId"
kind = "id"
[[type.column]]
name = "studentSisId"
required = true
kind = "id"
[[type.column]]
name = "firstName"
required = true
kind = "text"
[[type.column]]
name = "lastName"
required = true
kind = "text"
[[type.column]]
name = "email"
kind = "email"
"#;

/// Two more guardian-shaped types beside the `guardians` preset (`hold`, the default): one
/// whose records stay (`keep`), one whose records are deactivated (`deactivate`).
fn types_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut toml = String::new();
    for (name, folder, policy) in
        [("pickup_guardians", "pickup", "keep"), ("portal_guardians", "portal", "deactivate")]
    {
        toml.push_str(&format!(
            "[[type]]\nname = \"{name}\"\nfolder = \"{folder}\"\nkey = [\"studentSisId\", \"guardianSisId\"]\nmode = \"mirror\"\n\
             person = {{ role = \"guardian\", id = \"guardianSisId\", first_name = \"firstName\", last_name = \"lastName\", email = \"email\" }}\n\
             references = [{{ column = \"studentSisId\", to = \"students.sisId\", on_delete = \"{policy}\" }}]\n{GUARDIAN_COLUMNS}\n"
        ));
    }
    std::fs::write(dir.path().join("guardians.toml"), toml).unwrap();
    dir
}

/// Guardians of students 1..=10; students 9 and 10 have three between them.
fn guardians() -> String {
    let mut s = String::from("guardianSisId,studentSisId,firstName,lastName,email\r\n");
    for i in 1..=10 {
        s.push_str(&format!("G{i},S{i},Pat{i},Last{i},g{i}@example.org\r\n"));
    }
    s.push_str("G11,S9,Sam,Last9,g11@example.org\r\n");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_referring_to_deleted_students_are_kept_deactivated_or_hold_the_import() {
    let types = types_dir();
    let server = Server::start_with(&[("SLUICE_IMPORTS_TYPES_DIR", types.path().to_str().unwrap())]);
    let all: Vec<u32> = (1..=10).collect();
    let without_9_and_10: Vec<u32> = (1..=8).collect();

    // A tenant with only keep and deactivate references: the import is applied at once and
    // says what happened to them.
    server.importing_tenant("beta", "pw-for-tests");
    server.cli_ok(&[
        "tenant",
        "set",
        "beta",
        "folders=students,pickup,portal",
        "safeguard.students.deleted=50",
    ]);
    let (_ssh, sftp) = sftp_login(server.port, "beta", "pw-for-tests").await;
    upload(&server, &sftp, "beta", "/students/students.csv", full_students(&all, "09").as_bytes()).await;
    for folder in ["pickup", "portal"] {
        let v =
            upload(&server, &sftp, "beta", &format!("/{folder}/guardians.csv"), guardians().as_bytes()).await;
        assert_eq!(v["status"], "complete", "{v}");
    }
    let v = upload(
        &server,
        &sftp,
        "beta",
        "/students/students.csv",
        full_students(&without_9_and_10, "09").as_bytes(),
    )
    .await;
    assert_eq!((v["status"].as_str(), v["counts"]["deleted"].as_u64()), (Some("complete"), Some(2)), "{v}");
    let said = warnings(&v);
    assert!(said.contains("3 pickup_guardians refer to students this import deletes; they are kept as they are (on_delete = \"keep\")"), "{said}");
    assert!(said.contains("3 portal_guardians refer to students this import deletes; they are deactivated (on_delete = \"deactivate\")"), "{said}");
    assert_eq!(records(&server, "beta", "pickup_guardians").lines().count(), 12, "kept");
    let active = records(&server, "beta", "portal_guardians");
    assert_eq!(active.lines().count(), 9, "{active}");
    assert!(!active.contains("S9") && !active.contains("S10"), "{active}");
    let deactivated =
        server.cli_ok(&["records", "--tenant", "beta", "--type", "portal_guardians", "--deactivated"]);
    assert_eq!(deactivated.lines().count(), 4, "kept, with their data, as deactivated: {deactivated}");
    assert!(deactivated.contains("G11,S9,Sam,Last9,g11@example.org"), "{deactivated}");
    // The API lists them the same way.
    let key = server.api_key(Some("beta"));
    let page = |query: &str| -> Value {
        let (status, _, body) =
            server.http("GET", &format!("/api/v1/tenants/beta/records/portal_guardians{query}"), Some(&key));
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    assert_eq!(page("")["records"].as_array().unwrap().len(), 8);
    let off = page("?deactivated=true");
    assert_eq!(off["records"].as_array().unwrap().len(), 3, "{off}");
    assert_eq!(off["records"][0]["studentSisId"], "S10", "{off}");
    // Deactivated records are no one's role; the same guardian's pickup record still is.
    let people: Value =
        serde_json::from_str(&server.cli_ok(&["people", "--tenant", "beta", "--json"])).unwrap();
    let roles: Vec<String> = people
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["roles"].as_array().unwrap().iter())
        .map(|r| format!("{}:{}", r["type"].as_str().unwrap(), r["key"].as_str().unwrap_or_default()))
        .collect();
    assert!(!roles.iter().any(|r| r.starts_with("portal_guardians:S9")), "{roles:?}");
    assert!(roles.iter().any(|r| r.starts_with("pickup_guardians:S9")), "{roles:?}");
    // The students come back, then the portal file lists their guardians again: active again.
    upload(&server, &sftp, "beta", "/students/students.csv", full_students(&all, "09").as_bytes()).await;
    // (LF line ends this time: the same bytes moments later would be taken for a client's retry.)
    let again = guardians().replace("\r\n", "\n");
    let v = upload(&server, &sftp, "beta", "/portal/guardians.csv", again.as_bytes()).await;
    assert_eq!((v["status"].as_str(), v["counts"]["updated"].as_u64()), (Some("complete"), Some(3)), "{v}");
    assert_eq!(records(&server, "beta", "portal_guardians").lines().count(), 12);

    // With the `guardians` preset's records (hold, the default), the same deletion is held,
    // saying why; nothing changes until someone approves it.
    server.importing_tenant("acme", "pw-for-tests");
    server.cli_ok(&["tenant", "set", "acme", "folders=students,guardians,pickup,portal"]);
    let (_ssh2, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    upload(&server, &sftp, "acme", "/students/students.csv", full_students(&all, "09").as_bytes()).await;
    for folder in ["guardians", "pickup", "portal"] {
        upload(&server, &sftp, "acme", &format!("/{folder}/guardians.csv"), guardians().as_bytes()).await;
    }
    // Held by the safeguard (2 of 10 deleted, over its 10%) and by the guardians both: every
    // reason is said, also where the command line's hint is left out (the dashboard, a
    // discarded import: the message cut where the hint begins, which used to be the
    // safeguard's, in the middle).
    let both = upload(
        &server,
        &sftp,
        "acme",
        "/students/students.csv",
        full_students(&without_9_and_10, "10").as_bytes(),
    )
    .await;
    let message = both["message"].as_str().unwrap();
    let reasons = "held: this import would delete 2 of 10 students records (20.0%), more than the 10% \
                   safeguard; and 3 guardians refer to students this import deletes (on_delete = \"hold\")";
    assert!(message.starts_with(reasons), "{message}");
    assert!(message.ends_with(&format!("`sluice discard {}`", both["id"])), "{message}");
    server.cli_ok(&["discard", &both["id"].to_string()]);
    let discarded = show(&server, both["id"].as_i64().unwrap());
    assert_eq!(
        (discarded["status"].as_str(), discarded["message"].as_str()),
        (Some("discarded"), Some(reasons))
    );
    // Under a looser safeguard the guardians alone hold it.
    server.cli_ok(&["tenant", "set", "acme", "safeguard.students.deleted=50"]);
    let held = upload(
        &server,
        &sftp,
        "acme",
        "/students/students.csv",
        full_students(&without_9_and_10, "09").as_bytes(),
    )
    .await;
    assert_eq!(held["status"], "held", "{held}");
    let message = held["message"].as_str().unwrap();
    assert!(
        message.contains("held: 3 guardians refer to students this import deletes (on_delete = \"hold\")"),
        "{message}"
    );
    assert!(message.contains(&format!("sluice approve {}", held["id"])), "{message}");
    let said = warnings(&held);
    assert!(
        said.contains("3 portal_guardians refer to students this import deletes; approving deactivates them"),
        "{said}"
    );
    assert!(
        said.contains("3 pickup_guardians refer to students this import deletes; approving keeps them"),
        "{said}"
    );
    assert_eq!(records(&server, "acme", "students").lines().count(), 11, "nothing changed while held");
    assert_eq!(records(&server, "acme", "portal_guardians").lines().count(), 12);

    let out = server.cli(&["approve", &held["id"].to_string()]);
    assert!(out.status.success(), "{}", output_text(&out));
    let done = show(&server, held["id"].as_i64().unwrap());
    assert_eq!(
        (done["status"].as_str(), done["counts"]["deleted"].as_u64()),
        (Some("complete"), Some(2)),
        "{done}"
    );
    let said = warnings(&done);
    assert!(
        said.contains("3 guardians refer to students this import deletes; kept as they are, as approved"),
        "{said}"
    );
    assert!(
        said.contains("3 portal_guardians refer to students this import deletes; they are deactivated"),
        "{said}"
    );
    assert_eq!(records(&server, "acme", "students").lines().count(), 9);
    assert_eq!(records(&server, "acme", "guardians").lines().count(), 12, "approved: kept");
    assert_eq!(records(&server, "acme", "portal_guardians").lines().count(), 9);
}

/// OneRoster: a package whose classes.csv (bulk) drops a class while the tenant's enrollments
/// of it stay (the package carries no enrollments.csv). By default the package is held with
/// the count; a type declaring `deactivate` for `enrollments.classSourcedId` marks them
/// `tobedeleted` with the class. A newer package carrying classes.csv supersedes a held one;
/// one carrying other files only does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollments_of_a_class_a_package_deletes_hold_it_or_are_deactivated() {
    let types = tempfile::tempdir().unwrap();
    std::fs::write(
        types.path().join("roster.toml"),
        "[[type]]\nname = \"oneroster-lms\"\nformat = \"oneroster\"\nfolder = \"lms\"\n\
         on_delete = { \"enrollments.classSourcedId\" = \"deactivate\" }\n",
    )
    .unwrap();
    let server = Server::start_with(&[("SLUICE_IMPORTS_TYPES_DIR", types.path().to_str().unwrap())]);
    let district = District::new();
    let classes_only = |classes: &str| {
        let m = manifest("1.2", &[("classes", "bulk")]);
        zip(&[("manifest.csv", m.as_bytes()), ("classes.csv", classes.as_bytes())])
    };
    let without_alg_f: String =
        district.classes.lines().filter(|l| !l.starts_with("alg-f,")).map(|l| format!("{l}\n")).collect();
    assert!(district.classes.starts_with(CLASSES));

    for (tenant, folder) in [("acme", "oneroster"), ("beta", "lms")] {
        server.importing_tenant(tenant, "pw-for-tests");
        server.cli_ok(&[
            "tenant",
            "set",
            tenant,
            &format!("folders={folder}"),
            "safeguard.oneroster.classes.deleted=50",
        ]);
        let (_ssh, sftp) = sftp_login(server.port, tenant, "pw-for-tests").await;
        let v = upload(&server, &sftp, tenant, &format!("/{folder}/district.zip"), &district.zip()).await;
        assert_eq!(v["status"], "complete", "{v}");
        let v =
            upload(&server, &sftp, tenant, &format!("/{folder}/classes.zip"), &classes_only(&without_alg_f))
                .await;
        let enrollments = |server: &Server| -> Vec<Value> {
            serde_json::from_str(&server.cli_ok(&[
                "records",
                "--tenant",
                tenant,
                "--type",
                "oneroster.enrollments",
                "--class",
                "alg-f",
                "--format",
                "json",
            ]))
            .unwrap()
        };
        if tenant == "acme" {
            assert_eq!(v["status"], "held", "{v}");
            let message = v["message"].as_str().unwrap();
            assert!(message.contains("7 enrollments.csv records (by classSourcedId) refer to classes.csv records this import deletes (on_delete = \"hold\")"), "{message}");
            assert!(enrollments(&server).iter().all(|e| e["status"] == "active"));
            let held_id = v["id"].as_i64().unwrap();
            // A newer package with other files only does not supersede it...
            let orgs = zip(&[
                ("manifest.csv", manifest("1.2", &[("orgs", "bulk")]).as_bytes()),
                ("orgs.csv", district.orgs.as_bytes()),
            ]);
            let o = upload(&server, &sftp, tenant, "/oneroster/orgs.zip", &orgs).await;
            assert_eq!(o["status"], "complete", "{o}");
            assert_eq!(show(&server, held_id)["status"], "held");
            // ...a newer one carrying classes.csv does.
            let c =
                upload(&server, &sftp, tenant, "/oneroster/classes.zip", &classes_only(&district.classes))
                    .await;
            assert_eq!(c["status"], "complete", "{c}");
            let old = show(&server, held_id);
            assert_eq!(
                (old["status"].as_str(), old["superseded_by"].as_i64()),
                (Some("superseded"), c["id"].as_i64()),
                "{old}"
            );
            assert!(warnings(&c).contains(&format!("supersedes held import {held_id}")), "{c}");
            let out = server.cli(&["approve", &held_id.to_string()]);
            assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
            assert!(output_text(&out).contains("superseded by import"), "{}", output_text(&out));
        } else {
            assert_eq!(v["status"], "complete", "{v}");
            assert!(warnings(&v).contains("7 enrollments.csv records (by classSourcedId) refer to classes.csv records this import deletes; they are deactivated (on_delete = \"deactivate\")"), "{v}");
            let e = enrollments(&server);
            assert_eq!(e.len(), 7);
            assert!(e.iter().all(|e| e["status"] == "tobedeleted"), "{e:?}");
        }
    }
}

/// A held file whose approval fails on re-reading (here the tenant turned strict meanwhile,
/// and strict reading refuses European Excel's `sep=;` line) is still the only copy of what
/// the district sent: it stays downloadable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_file_whose_approval_fails_is_kept() {
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    let full = full_students(&[1, 2, 3, 4, 5, 6], "09");
    let v = upload(&server, &sftp, "acme", "/students/students.csv", full.as_bytes()).await;
    assert_eq!(v["status"], "complete", "{v}");
    let partial = "\u{feff}sep=;\r\nsisId;firstName;lastName\r\nS1;Ann;Lee\r\nS2;Bob;Ray\r\n";
    let held = upload(&server, &sftp, "acme", "/students/students.csv", partial.as_bytes()).await;
    assert_eq!(held["status"], "held", "{held}");
    let held_id = held["id"].as_i64().unwrap();

    server.cli_ok(&["tenant", "set", "acme", "strictness=strict"]);
    let out = server.cli(&["approve", &held_id.to_string()]);
    let after = show(&server, held_id);
    assert_eq!(after["status"], "failed", "{}\n{after}", output_text(&out));
    assert_eq!(records(&server, "acme", "students").lines().count(), 7, "nothing applied");

    let kept = server.cli(&["import", "file", &held_id.to_string()]);
    assert!(kept.status.success(), "{}", output_text(&kept));
    assert_eq!(kept.stdout, partial.as_bytes());
    let key = server.api_key(Some("acme"));
    let (status, _, body) = server.http("GET", &format!("/api/v1/imports/{held_id}/file"), Some(&key));
    assert_eq!((status, body.as_str()), (200, partial));
}
