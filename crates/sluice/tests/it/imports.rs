//! The import pipeline, through the CLI and end to end over SFTP.

use crate::common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

fn students(rows: &[(&str, &str, &str)]) -> String {
    let mut s = String::from("sisId,firstName,lastName\r\n");
    for (id, first, last) in rows {
        s.push_str(&format!("{id},{first},{last}\r\n"));
    }
    s
}

fn many_students(n: usize, prefix: &str) -> String {
    let mut s = String::from("sisId,firstName,lastName,birthDate\n");
    for i in 0..n {
        s.push_str(&format!("{prefix}{i},First{i},Last{i},2010-01-{:02}\n", 1 + i % 28));
    }
    s
}

fn import(server: &Server, tenant: &str, file: &str, contents: &[u8]) -> (Option<i32>, Value) {
    let path = write_file(server.dir.path(), file, contents);
    let out = server.cli(&["import", "--tenant", tenant, path.to_str().unwrap()]);
    (out.status.code(), last_import(server, tenant))
}

fn last_import(server: &Server, tenant: &str) -> Value {
    let list: Value =
        serde_json::from_str(&server.cli_ok(&["imports", "--tenant", tenant, "--json", "--limit", "1"]))
            .unwrap();
    list[0].clone()
}

fn records_csv(server: &Server, tenant: &str, t: &str) -> String {
    server.cli_ok(&["records", "--tenant", tenant, "--type", t])
}

fn counts(v: &Value) -> [u64; 6] {
    let c = &v["counts"];
    ["rows", "added", "updated", "unchanged", "deleted", "rejected"].map(|k| c[k].as_u64().unwrap())
}

#[test]
fn cli_import_counts_and_the_same_file_twice_changes_nothing() {
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    let file = students(&[("S1", "Ann", "Lee"), ("S2", "Bob", "Ray"), ("S3", "Cy", "Doe")]);
    let (code, v) = import(&server, "acme", "students.csv", file.as_bytes());
    assert_eq!((code, v["status"].as_str()), (Some(0), Some("complete")), "{v}");
    assert_eq!(counts(&v), [3, 3, 0, 0, 0, 0]);
    let before = records_csv(&server, "acme", "students");
    let (_, v) = import(&server, "acme", "students.csv", file.as_bytes());
    assert_eq!(counts(&v), [3, 0, 0, 3, 0, 0], "{v}");
    assert_eq!(records_csv(&server, "acme", "students"), before);
    let changed =
        students(&[("S1", "Ann", "Lee"), ("S2", "Bobby", "Ray"), ("S3", "Cy", "Doe"), ("S4", "Di", "Fox")]);
    let (_, v) = import(&server, "acme", "students.csv", changed.as_bytes());
    assert_eq!(counts(&v), [4, 1, 1, 2, 0, 0], "{v}");
    assert!(records_csv(&server, "acme", "students").contains("S2,Bobby,Ray"));
}

/// A nightly file that lost a column would empty it in every record that holds a value there:
/// held until a person decides, the records untouched meanwhile; approved, the values go; a
/// file without a column that no record holds a value in is applied at once.
#[test]
fn a_file_that_lost_a_column_the_records_hold_is_held_until_approved() {
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    let full =
        "sisId,firstName,lastName,email,birthDate\nS1,Ann,Lee,ann@x.org,\nS2,Bo,Ng,,\nS3,Cy,Ma,cy@x.org,\n";
    let (_, v) = import(&server, "acme", "students.csv", full.as_bytes());
    assert_eq!(v["status"], "complete", "{v}");
    // Excel-style: the same students, the email column gone (birthDate too, empty everywhere).
    let short = "sisId;firstName;lastName\r\nS1;Ann;Lee\r\nS2;Bo;Ng\r\nS3;Cy;Ma\r\n";
    let (code, v) = import(&server, "acme", "students.csv", short.as_bytes());
    assert_eq!((code, v["status"].as_str()), (Some(0), Some("held")), "{v}");
    let message = v["message"].as_str().unwrap();
    assert!(
        message.contains(r#"no column "email": applying it would empty it in 2 students records"#),
        "{message}"
    );
    assert!(!message.contains("birthDate"), "a column no record holds a value in loses nothing: {message}");
    assert!(
        message.contains("send the file again with it") && message.contains("sluice approve"),
        "{message}"
    );
    assert!(records_csv(&server, "acme", "students").contains("ann@x.org"), "held: nothing changed");
    let shown = server.cli_ok(&["import", "show", &v["id"].to_string()]);
    assert!(shown.contains(r#""email""#), "{shown}");
    // Approved: the values go, and the import says so.
    server.cli_ok(&["approve", &v["id"].to_string()]);
    let v = last_import(&server, "acme");
    assert_eq!(v["status"], "complete", "{v}");
    assert_eq!(counts(&v), [3, 0, 2, 1, 0, 0], "{v}");
    assert!(v["warnings"].to_string().contains("applied as approved: this file has no column"), "{v}");
    let records = records_csv(&server, "acme", "students");
    assert!(!records.contains("ann@x.org") && !records.contains("cy@x.org"), "{records}");
    // The next file without the column finds nothing to empty: applied at once.
    let (_, v) = import(&server, "acme", "students.csv", short.replace("Bo;", "Bob;").as_bytes());
    assert_eq!(v["status"], "complete", "{v}");
    assert_eq!(counts(&v), [3, 0, 1, 2, 0, 0], "{v}");
    assert!(!v.to_string().contains("no column"), "{v}");
}

#[test]
fn mirror_deletions_beyond_the_safeguard_are_held_until_approved_or_discarded() {
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    import(&server, "acme", "students.csv", many_students(20, "S").as_bytes());
    // A file with half the students would delete 50%: held, nothing changes.
    let (code, v) = import(&server, "acme", "students.csv", many_students(10, "S").as_bytes());
    assert_eq!(code, Some(0));
    assert_eq!(v["status"], "held", "{v}");
    let message = v["message"].as_str().unwrap();
    assert!(message.contains("10 of 20") && message.contains("sluice approve"), "{message}");
    assert_eq!(records_csv(&server, "acme", "students").lines().count(), 21);
    let id = v["id"].as_i64().unwrap().to_string();
    let out = server.cli_with_env(&["approve", &id], &[("USER", "ops-jane")]);
    assert!(out.status.success(), "{}", output_text(&out));
    let v = last_import(&server, "acme");
    assert_eq!(v["status"], "complete", "{v}");
    assert_eq!(v["decided_by"], "ops-jane (command line)", "{v}");
    let shown = server.cli_ok(&["import", "show", &id]);
    assert!(shown.contains("held by the safeguard; approved by ops-jane (command line) at "), "{shown}");
    assert_eq!(counts(&v)[4], 10, "approval deletes the 10 missing students");
    assert_eq!(records_csv(&server, "acme", "students").lines().count(), 11);
    // Approving twice is refused.
    assert_eq!(server.cli(&["approve", &id]).status.code(), Some(1));
    // Held again, then discarded: nothing changes.
    let (_, v) = import(&server, "acme", "students.csv", many_students(2, "S").as_bytes());
    assert_eq!(v["status"], "held");
    server.cli_ok(&["discard", &v["id"].as_i64().unwrap().to_string()]);
    let v = last_import(&server, "acme");
    assert_eq!(v["status"], "discarded");
    assert!(v["decided_by"].as_str().unwrap().ends_with("command line"), "{v}");
    assert_eq!(records_csv(&server, "acme", "students").lines().count(), 11);
    // Within the safeguard (1 of 10 = 10%), a mirror applies at once.
    let (_, v) = import(&server, "acme", "students.csv", many_students(9, "S").as_bytes());
    assert_eq!((v["status"].as_str(), counts(&v)[4]), (Some("complete"), 1), "{v}");
}

#[test]
fn upsert_keeps_records_absent_from_the_file() {
    let server = Server::start();
    server.cli_ok(&["tenant", "add", "acme", "--folders", "badge"]);
    let file = "ID,Campus,FirstName,LastName,BirthDate\n1,North,Ann,Lee,8/31/2012\n2,North,Bob,Ray,08-01-2011\n1,South,Cy,Doe,2010-12-24\n";
    let (_, v) = import(&server, "acme", "badge.csv", file.as_bytes());
    assert_eq!(counts(&v), [3, 3, 0, 0, 0, 0], "{v}");
    let (_, v) = import(&server, "acme", "badge.csv", b"ID,Campus,FirstName,LastName\n2,North,Bobby,Ray\n");
    assert_eq!(counts(&v), [1, 0, 1, 0, 0, 0], "{v}");
    let records = records_csv(&server, "acme", "badge");
    assert_eq!(records.lines().count(), 4, "{records}");
    assert!(records.contains("1,South,Cy,Doe,,,2010-12-24"), "{records}");
    assert!(records.contains("1,North,Ann,Lee,,,2012-08-31"), "dates normalise to ISO: {records}");
}

/// Stray quotes that swallow whole rows into one value while the record keeps its width (a
/// pair in one column of a 3-column file, or in the key column): a mirror would delete the
/// swallowed students, under the safeguard's limit and without a word. Held, naming the line
/// and the record, nothing changed; approved (the person decides), it applies. A name on two
/// lines that is no one's row, and two-line values without a row's shape, still load. An
/// upsert file with the same stray quotes applies and warns (the swallowed row's change is
/// lost, and it says which).
#[test]
fn rows_swallowed_into_a_value_hold_a_mirror_file_and_warn_in_others() {
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    let roster = |rows: &[&str]| {
        let mut s = String::from("sisId,firstName,lastName\r\n");
        for i in 1..=20 {
            match rows.iter().find(|r| r.starts_with(&format!("S{i},")) || r.starts_with(&format!("\"S{i},")))
            {
                Some(r) => s.push_str(r),
                None if rows
                    .iter()
                    .any(|r| r.contains(&format!("\nS{i},")) || r.contains(&format!("\nS{i}\""))) =>
                {
                    continue;
                }
                None => s.push_str(&format!("S{i},First{i},Last{i}")),
            }
            s.push_str("\r\n");
        }
        s
    };
    let (_, v) = import(&server, "acme", "students.csv", roster(&[]).as_bytes());
    assert_eq!(counts(&v)[1], 20, "{v}");
    let before = records_csv(&server, "acme", "students");
    let one_column = roster(&["S5,First5,\"Last5\r\nS6,First6,Last6\""]);
    for (what, file, said) in [
        (
            "in the key column",
            roster(&["\"S5,First5,Last5\r\nS6\",First6,Last6"]),
            "line 6 is inside a quoted value but looks like the row of S5",
        ),
        ("in one column", one_column.clone(), "line 7 is inside a quoted value but looks like the row of S6"),
    ] {
        let (_, v) = import(&server, "acme", "students.csv", file.as_bytes());
        assert_eq!(v["status"], "held", "{what}: {v}");
        let message = v["message"].as_str().unwrap();
        assert!(message.contains(said) && message.contains("stray"), "{what}: {message}");
        assert_eq!(records_csv(&server, "acme", "students"), before, "{what}: nothing changed");
        let id = v["id"].to_string();
        if what == "in one column" {
            server.cli_ok(&["approve", &id]);
            let v = last_import(&server, "acme");
            assert_eq!((v["status"].as_str(), counts(&v)[4]), (Some("complete"), 1), "approved: {v}");
        } else {
            server.cli_ok(&["discard", &id]);
        }
    }
    // A last name on two lines that is no one's row, an address with a row's commas but no
    // one's key: loaded.
    let (_, v) = import(
        &server,
        "acme",
        "students.csv",
        roster(&["S5,First5,\"Last5\r\nSmith\"", "S8,First8,\"12 Main St\r\nApt 4, Springfield, IL\""])
            .as_bytes(),
    );
    assert_eq!((v["status"].as_str(), counts(&v)[4]), (Some("complete"), 0), "{v}");

    // An upsert file (badge: keyed by ID and campus) deletes nothing, but the swallowed row's
    // change is lost and its text lands in another record's value. It lists a few records each
    // night, so "nowhere else" is weak evidence (and a held one would be superseded by the
    // next): it applies, and says which row it did not apply.
    let badges = |rows: &[&str]| {
        let mut s = String::from("ID,Campus,FirstName,LastName\r\n");
        for i in 1..=6 {
            match rows.iter().find(|r| r.starts_with(&format!("B{i},"))) {
                Some(r) => s.push_str(r),
                None if rows.iter().any(|r| r.contains(&format!("\nB{i},"))) => continue,
                None => s.push_str(&format!("B{i},North,First{i},Last{i}")),
            }
            s.push_str("\r\n");
        }
        s
    };
    server.cli_ok(&["tenant", "set", "acme", "folders=students,badge"]);
    let (_, v) = import(&server, "acme", "badge.csv", badges(&[]).as_bytes());
    assert_eq!((v["type"].as_str(), counts(&v)[1]), (Some("badge"), 6), "{v}");
    let before = records_csv(&server, "acme", "badge");
    let (_, v) = import(
        &server,
        "acme",
        "badge.csv",
        badges(&["B3,North,First3,\"Last3\r\nB4,North,Renamed4,Last4\""]).as_bytes(),
    );
    assert_eq!((v["status"].as_str(), counts(&v)[2]), (Some("complete"), 1), "{v}");
    assert!(
        v["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().contains(
            "line 5 is inside a quoted value but looks like the row of B4+North, which this file lists nowhere \
             else: if a stray \" swallowed that row, it was not applied to B4+North"
        )),
        "{v}"
    );
    let after = records_csv(&server, "acme", "badge");
    // B4 is as it was; the row's text is B3's last name, as the file has it.
    assert!(after.contains("\r\nB4,North,First4,Last4,"), "{before}\n{after}");
    assert!(after.contains("B3,North,First3,\"Last3\nB4,North,Renamed4,Last4\","), "{after}");
}

/// An operator inserts a column into a type's TOML: the records stored in the old order are
/// rewritten in the new one when the server starts again (and it says so), so nothing reads an
/// email under "grade", and the same file imported again changes nothing.
#[test]
fn records_follow_a_column_inserted_into_their_type() {
    let dir = tempfile::tempdir().unwrap();
    let kids = |columns: &[&str]| {
        let mut text =
            String::from("[[type]]\nname = \"kids\"\nfolder = \"kids\"\nkey = [\"id\"]\nmode = \"mirror\"\n");
        for c in columns {
            let kind = if *c == "email" { "email" } else { "text" };
            text.push_str(&format!(
                "[[type.column]]\nname = {c:?}\nkind = {kind:?}\nrequired = {}\n",
                *c == "id"
            ));
        }
        std::fs::write(dir.path().join("kids.toml"), text).unwrap();
    };
    kids(&["id", "email"]);
    let mut server = Server::start_with(&[("SLUICE_IMPORTS_TYPES_DIR", dir.path().to_str().unwrap())]);
    server.cli_ok(&["tenant", "add", "acme", "--folders", "kids"]);
    let file = b"id,email\nK1,a@x.org\nK2,b@x.org\n";
    let (_, v) = import(&server, "acme", "kids.csv", file);
    assert_eq!(counts(&v), [2, 2, 0, 0, 0, 0], "{v}");
    kids(&["id", "grade", "email"]);
    server.kill_and_restart();
    assert!(
        server.wait_for_log(
            "type kids: its columns changed; 2 records (of every tenant) rewritten in the new column order; added \"grade\" (empty)",
            Duration::from_secs(10)
        ),
        "{}",
        server.log()
    );
    assert_eq!(records_csv(&server, "acme", "kids"), "id,grade,email\r\nK1,,a@x.org\r\nK2,,b@x.org\r\n");
    let (_, v) = import(&server, "acme", "kids.csv", file);
    assert_eq!((v["status"].as_str(), counts(&v)), (Some("complete"), [2, 0, 0, 2, 0, 0]), "{v}");
    // The column removed again while the server runs with it: a command does not rewrite
    // what the running server reads by position; it refuses, and says what to do.
    kids(&["id", "email"]);
    let out = server.cli(&["records", "--tenant", "acme", "--type", "kids"]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("the columns of type kids changed since its records were stored"),
        "{}",
        output_text(&out)
    );
    assert!(output_text(&out).contains("`sluice serve`"), "{}", output_text(&out));
    // `sluice doctor` says so too, as a problem of its own (the database itself is fine).
    let out = server.cli(&["doctor"]);
    let said = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.lines().any(|l| l.starts_with("ok       database:")), "{said}");
    assert!(
        said.lines().any(|l| l.starts_with("PROBLEM  records' columns: the columns of type kids changed")),
        "{said}"
    );
    // Restarted, the server rewrites them (the column held nothing: nothing is lost).
    server.kill_and_restart();
    assert!(
        server.wait_for_log("\"grade\" removed (0 values dropped)", Duration::from_secs(10)),
        "{}",
        server.log()
    );
    assert_eq!(records_csv(&server, "acme", "kids"), "id,email\r\nK1,a@x.org\r\nK2,b@x.org\r\n");
    let said = server.cli_ok(&["doctor"]);
    assert!(
        said.contains("ok       records' columns: every type's records are stored in its columns' order"),
        "{said}"
    );
}

#[test]
fn delta_types_from_a_types_dir_delete_by_status() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("enrollments.toml"),
        r#"
[[type]]
name = "enrollments"
folder = "enrollments"
key = ["sourcedId"]
mode = "delta"
status_column = "status"
deleted_values = ["tobedeleted"]
[[type.column]]
name = "sourcedId"
required = true
kind = "id"
[[type.column]]
name = "status"
required = true
kind = "enum"
values = ["active", "tobedeleted"]
"#,
    )
    .unwrap();
    let server = Server::start_with(&[("SLUICE_IMPORTS_TYPES_DIR", dir.path().to_str().unwrap())]);
    server.cli_ok(&["tenant", "add", "acme", "--folders", "enrollments"]);
    assert!(server.cli_ok(&["types"]).contains("enrollments"));
    let (_, v) =
        import(&server, "acme", "enrollments.csv", b"sourcedId,status\ne1,active\ne2,active\ne3,active\n");
    assert_eq!(counts(&v)[1], 3);
    let (_, v) = import(&server, "acme", "enrollments.csv", b"sourcedId,status\ne2,tobedeleted\ne4,active\n");
    assert_eq!(counts(&v), [2, 1, 0, 0, 1, 0], "{v}");
    let records = records_csv(&server, "acme", "enrollments");
    assert_eq!(
        records.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect::<Vec<_>>(),
        ["e1", "e3", "e4"]
    );
}

#[test]
fn hostile_files_are_rejected_with_a_reason_and_change_nothing() {
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    import(&server, "acme", "students.csv", many_students(5, "S").as_bytes());
    let before = records_csv(&server, "acme", "students");
    let mut endless = b"sisId,firstName,lastName\n".to_vec();
    endless.extend(std::iter::repeat_n(b'x', 3 << 20));
    let wide = format!("{}\n", (0..10_000).map(|i| format!("c{i}")).collect::<Vec<_>>().join(","));
    let mut mixed = "sisId,firstName,lastName\n".to_string().into_bytes();
    for i in 0..5000 {
        mixed.extend_from_slice(format!("M{i},Zoë,Ünal\n").as_bytes());
    }
    mixed.extend_from_slice(b"M9,Jos\xe9,Lee\n");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("binary junk", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x01\0".to_vec(), "not text"),
        ("empty", Vec::new(), "empty"),
        ("header only", b"sisId,firstName,lastName\r\n".to_vec(), "no rows"),
        ("endless line", endless, "longer than"),
        ("10,000 columns", wide.into_bytes(), "more than 1000 fields"),
        (
            "unbalanced quote",
            b"sisId,firstName,lastName\nS1,\"Ann,Lee\nS2,Bob,Ray\n".to_vec(),
            "never closed",
        ),
        (
            "text after quote",
            b"sisId,firstName,lastName\nS1,\"Ann\"x,Lee\n".to_vec(),
            "after a closing quote",
        ),
        ("mixed encodings", mixed, "mixes in another encoding"),
        ("missing required column", b"sisId,firstName\nS1,Ann\n".to_vec(), "\"lastName\" is missing"),
        ("duplicate header", b"sisId,firstName,lastName,Last Name\nS1,A,B,C\n".to_vec(), "appears twice"),
        (
            "every row bad",
            b"sisId,firstName,lastName\n,Ann,Lee\n,Bob,Ray\n".to_vec(),
            "every one of the 2 rows",
        ),
    ];
    for (what, bytes, reason) in cases {
        let (code, v) = import(&server, "acme", "students.csv", &bytes);
        assert_eq!(code, Some(1), "{what}");
        assert_eq!(v["status"], "failed", "{what}: {v}");
        let message = v["message"].as_str().unwrap_or_default();
        assert!(message.contains(reason), "{what}: message {message:?} should say {reason:?}");
        assert_eq!(records_csv(&server, "acme", "students"), before, "{what} changed records");
    }
}

/// A type's first import (nothing to compare with); a failure late in the file must leave
/// nothing behind.
#[test]
fn a_first_import_that_fails_late_leaves_no_records() {
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    let mut file = many_students(5000, "S");
    file.push_str("S9999,\"never closed,Lee,2010-01-01\n");
    let (code, v) = import(&server, "acme", "students.csv", file.as_bytes());
    assert_eq!((code, v["status"].as_str()), (Some(1), Some("failed")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("line 5002"), "{v}");
    assert_eq!(records_csv(&server, "acme", "students").lines().count(), 1, "only the header");
    // Duplicates in a first import name the earlier line.
    let (_, v) = import(&server, "acme", "students.csv", b"sisId,firstName,lastName\nA,a,a\nB,b,b\nA,c,c\n");
    assert_eq!(counts(&v), [3, 2, 0, 0, 0, 1], "{v}");
    let shown = server.cli_ok(&["import", "show", &v["id"].to_string(), "--errors"]);
    assert!(shown.contains(":4: sisId: duplicate_key: the same key as line 2"), "{shown}");
}

#[test]
fn encodings_are_detected_recorded_and_decoded() {
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    let text = "sisId,firstName,lastName\nS1,José,Ñúñez\n";
    let mut utf16 = vec![0xFF, 0xFE];
    for u in text.encode_utf16() {
        utf16.extend_from_slice(&u.to_le_bytes());
    }
    let bom = [&[0xEF, 0xBB, 0xBF][..], text.as_bytes()].concat();
    let latin1 = b"sisId,firstName,lastName\nS1,Jos\xe9,\xd1\xfa\xf1ez\n".to_vec();
    for (bytes, encoding) in [
        (utf16, "utf-16le"),
        (bom, "utf-8 (with BOM)"),
        (latin1, "windows-1252"),
        (text.as_bytes().to_vec(), "utf-8"),
    ] {
        let (_, v) = import(&server, "acme", "students.csv", &bytes);
        assert_eq!(v["encoding"], encoding, "{v}");
        assert_eq!(v["status"], "complete", "{v}");
        assert!(records_csv(&server, "acme", "students").contains("S1,José,Ñúñez"), "{encoding}");
    }
}

#[test]
fn formula_cells_are_neutralised_in_reports_and_exports() {
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    let file =
        "sisId,firstName,lastName,email\nS1,=HYPERLINK(\"http://evil\"),Lee,ann@x.org\nS2,Bob,Ray,@SUM(A1)\n";
    let (_, v) = import(&server, "acme", "students.csv", file.as_bytes());
    assert_eq!(v["status"], "incomplete", "{v}");
    let records = records_csv(&server, "acme", "students");
    assert!(records.contains("\"'=HYPERLINK(\"\"http://evil\"\")\""), "{records}");
    let id = v["id"].as_i64().unwrap();
    let report = std::fs::read_to_string(
        server.tenant_dir("acme").join(format!("errors/{id:08}-students-errors.csv")),
    )
    .unwrap();
    assert!(report.starts_with("\u{feff}line,key,name,column,code,reason,value"), "{report}");
    assert!(report.contains("3,S2,Bob Ray,email,bad_email,") && report.contains("'@SUM(A1)"), "{report}");
    let shown = server.cli_ok(&["import", "show", &id.to_string(), "--errors"]);
    assert!(shown.contains("students.csv:3: email: bad_email"), "{shown}");
}

#[test]
fn validate_is_offline_and_exits_1_on_rejection() {
    let server = Server::start();
    let good = write_file(server.dir.path(), "good.csv", b"sisId,firstName,lastName\nS1,Ann,Lee\n");
    let bad = write_file(
        server.dir.path(),
        "bad.csv",
        b"sisId,firstName,lastName,birthDate\nS1,Ann,Lee,31/08/2012\nS1,Bob,Ray,\n",
    );
    let out = server.cli(&["validate", "--type", "students", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let out = server.cli(&["validate", "--type", "students", bad.to_str().unwrap()]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("bad.csv:2: birthDate: bad_date"), "{text}");
    assert!(text.contains("bad.csv:3: sisId: duplicate_key"), "{text}");
    assert_eq!(server.cli(&["validate", "--type", "nope", good.to_str().unwrap()]).status.code(), Some(2));
}

pub fn wait_for_status(server: &Server, tenant: &str, count: usize, timeout: Duration) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let list: Value = serde_json::from_str(
            &server.cli_ok(&["imports", "--tenant", tenant, "--json", "--limit", "1000"]),
        )
        .unwrap();
        let list = list.as_array().unwrap().clone();
        let done = list.iter().filter(|v| v["status"] != "running").count();
        if done >= count || start.elapsed() > timeout {
            return list;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sftp_upload_is_imported_within_a_second() {
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    let data = many_students(10_000, "S");
    put(&sftp, "/students/students.csv", data.as_bytes()).await.unwrap();
    let closed = Instant::now();
    let list = wait_for_status(&server, "acme", 1, Duration::from_secs(30));
    let observed = closed.elapsed();
    let v = &list[0];
    assert_eq!(v["status"], "complete", "{v}");
    assert_eq!(counts(v), [10_000, 10_000, 0, 0, 0, 0]);
    let uploads = server.uploads("acme");
    let latency_ms = v["finished_ms"].as_i64().unwrap() - uploads[0]["at_ms"].as_i64().unwrap();
    println!(
        "10,000-row upload: close-to-complete {latency_ms} ms (observed by polling the CLI: {observed:?})"
    );
    assert!(latency_ms < 5_000, "import took {latency_ms} ms");
    // The uploaded file is gone from the tenant's folder once processed (its client may still
    // see it for a moment: `clients::a_just_uploaded_file_can_be_checked_then_is_gone`).
    assert!(!server.tenant_dir("acme").join("students/students.csv").exists());

    // The same students plus one bad row: incomplete, and the report is in /errors.
    let mut bad = data.clone();
    bad.push_str("S99999,,Nameless,\n");
    put(&sftp, "/students/students.csv", bad.as_bytes()).await.unwrap();
    let list = wait_for_status(&server, "acme", 2, Duration::from_secs(30));
    let v = &list[0];
    assert_eq!(v["status"], "incomplete", "{v}");
    assert_eq!(counts(v), [10_001, 0, 0, 10_000, 0, 1]);
    let report_name = format!("/errors/{:08}-students-errors.csv", v["id"].as_i64().unwrap());
    let mut report = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut sftp.open(&report_name).await.unwrap(), &mut report)
        .await
        .unwrap();
    assert!(report.contains("10002,S99999,Nameless,firstName,required,a value is required,"), "{report}");
    // The tenant may read its reports but not remove them.
    assert!(sftp.remove_file(&report_name).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_no_import_type_reads_stays_and_the_history_says_why() {
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    server.cli_ok(&["tenant", "set", "acme", "folders=students,inbox"]);
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    put(&sftp, "/inbox/students.csv", b"sisId,firstName,lastName\nS1,A,B\n").await.unwrap();
    let list = wait_for_status(&server, "acme", 1, Duration::from_secs(20));
    let v = &list[0];
    assert_eq!(v["status"], "failed", "{v}");
    let message = v["message"].as_str().unwrap();
    // students.csv is the students type's required name: the message says where it belongs.
    assert!(message.contains("put in /inbox") && message.contains("belongs in /students"), "{message}");
    assert!(
        server.tenant_dir("acme").join("inbox/students.csv").exists(),
        "the file must be left where it is"
    );
}

/// The server is killed at random moments while files arrive and are imported; after a
/// restart every upload is imported exactly once and the database is intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_import_every_upload_is_imported_exactly_once() {
    let mut server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    server.cli_ok(&["tenant", "set", "acme", "folders=students,employees,badge"]);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for round in 0..6 {
        if let Ok(handle) = ssh_login(server.port, "acme", "pw-for-tests").await {
            let sftp = sftp_open(&handle).await;
            for (i, folder) in ["students", "employees", "badge"].iter().enumerate() {
                let body = match *folder {
                    "students" => many_students(3000 + round * 100, "S"),
                    "employees" => {
                        let mut s = String::from("employeeId,firstName,lastName\n");
                        for k in 0..2000 + round * 50 {
                            s.push_str(&format!("E{k},F{k},L{k}\n"));
                        }
                        s
                    }
                    _ => {
                        let mut s = String::from("ID,Campus,FirstName,LastName\n");
                        for k in 0..1000 {
                            s.push_str(&format!("{k},C{round},F{k},L{i}\n"));
                        }
                        s
                    }
                };
                let _ = put(&sftp, &format!("/{folder}/{folder}-{round}.csv"), body.as_bytes()).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(random(400))).await;
        server.kill_and_restart();
    }
    // Let the last server finish everything that was recorded.
    let uploads = server.uploads("acme");
    let start = Instant::now();
    let list = loop {
        let list: Value = serde_json::from_str(
            &server.cli_ok(&["imports", "--tenant", "acme", "--json", "--limit", "1000"]),
        )
        .unwrap();
        let list = list.as_array().unwrap().clone();
        if list.iter().filter(|v| v["status"] != "running").count() >= uploads.len()
            || start.elapsed() > Duration::from_secs(60)
        {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!uploads.is_empty());
    let out = server.cli(&["doctor"]);
    assert!(out.status.success(), "{}", output_text(&out));
    // SQLite's integrity check; PostgreSQL keeps its own (doctor says it is reachable).
    let intact = if on_postgres() { "schema up to date" } else { "integrity ok" };
    assert!(output_text(&out).contains(intact), "{}", output_text(&out));
    // Exactly one import per recorded upload, and none running.
    for u in &uploads {
        let path = u["path"].as_str().unwrap();
        let name = path.rsplit('/').next().unwrap();
        let n = list.iter().filter(|v| v["file_name"] == name).count();
        assert_eq!(n, 1, "{path} was imported {n} times: {list:?}");
    }
    assert_eq!(list.len(), uploads.len(), "imports without an upload: {list:?}");
    println!("kill test: {} uploads recorded, each imported exactly once", uploads.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_and_scheduled_tenants_wait_for_sync_and_archive_keeps_files() {
    let server = Server::start_with(&[("SLUICE_IMPORTS_ARCHIVE_DAYS", "7")]);
    server.importing_tenant("acme", "pw-for-tests");
    // Schedule settings are validated.
    let bad = server.cli(&["tenant", "set", "acme", "schedule=0 25 * * *"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(output_text(&bad).contains("hour: 25 is outside 0-23"), "{}", output_text(&bad));
    let bad = server.cli(&["tenant", "set", "acme", "timezone=Mars/Olympus"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(output_text(&bad).contains("unknown time zone"));
    let out = server.cli(&["tenant", "set", "acme", "trigger=schedule"]);
    assert_eq!(out.status.code(), Some(2), "a schedule trigger needs a schedule");
    let set = server.cli_ok(&[
        "tenant",
        "set",
        "acme",
        "trigger=schedule",
        "schedule=0 2 * * *",
        "timezone=America/Chicago",
    ]);
    assert!(set.contains("on schedule \"0 2 * * *\" (America/Chicago), next"), "{set}");
    let show: Value = serde_json::from_str(&server.cli_ok(&["tenant", "show", "acme", "--json"])).unwrap();
    assert_eq!((show["trigger"].as_str(), show["schedule"].as_str()), (Some("schedule"), Some("0 2 * * *")));

    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    put(&sftp, "/students/students.csv", students(&[("S1", "Ann", "Lee")]).as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        server.tenant_dir("acme").join("students/students.csv").exists(),
        "the upload waits for its schedule"
    );
    assert!(server.cli_ok(&["imports", "--tenant", "acme"]).is_empty());
    let synced = server.cli_ok(&["sync", "--tenant", "acme"]);
    assert!(synced.contains("1 waiting file(s) found") && synced.contains("(complete)"), "{synced}");
    assert!(!server.tenant_dir("acme").join("students/students.csv").exists());
    // Archiving is on: the processed upload is kept privately, not in the tenant's tree.
    let archived: Vec<_> =
        std::fs::read_dir(server.data_dir().join("archive/acme")).unwrap().flatten().collect();
    assert_eq!(archived.len(), 1);
    assert!(archived[0].file_name().to_string_lossy().ends_with("-students.csv"));
}

/// A tenant's imports take turns across processes: a CLI import waits while another import
/// of the tenant (here: the test, holding the tenant's lock) runs, then proceeds; another
/// tenant's import does not wait.
#[test]
fn imports_take_turns_across_processes() {
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    server.importing_tenant("other", "pw-for-tests");
    let lock_path = server.data_dir().join("spool").join("locks").join("acme.lock");
    let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).unwrap();
    lock.lock().unwrap();
    let file = write_file(server.dir.path(), "students.csv", students(&[("S1", "Ann", "Lee")]).as_bytes());
    let (code, v) = import(&server, "other", "students.csv", students(&[("S1", "Ann", "Lee")]).as_bytes());
    assert_eq!((code, v["status"].as_str()), (Some(0), Some("complete")), "another tenant's turn: {v}");
    let mut child = server
        .command()
        .args(["import", "--tenant", "acme"])
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(child.try_wait().unwrap().is_none(), "the import must wait for its turn");
    drop(lock);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the import never ran");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    assert_eq!(last_import(&server, "acme")["status"], "complete");
}

/// An approval covered what its approver saw: approving a held file after a newer full file
/// was applied used to re-plan it against the newer records (and hold it again, deleting
/// more). A newer applied import of the type now supersedes the held one instead: it can no
/// longer be approved at all, and the newer data stays (see `never_lost`).
#[test]
fn a_newer_applied_file_supersedes_a_held_one_instead_of_growing_its_deletions() {
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    import(&server, "acme", "students.csv", many_students(20, "S").as_bytes());
    let (_, held) = import(&server, "acme", "students.csv", many_students(10, "S").as_bytes());
    assert_eq!((held["status"].as_str(), counts(&held)[4]), (Some("held"), 10), "{held}");
    let id = held["id"].as_i64().unwrap().to_string();
    // A newer full file adds ten students: the held file would now delete twenty.
    let (_, newer) = import(&server, "acme", "students.csv", many_students(30, "S").as_bytes());
    assert_eq!(newer["status"], "complete", "{newer}");
    let show = |id: &str| -> Value {
        serde_json::from_str(&server.cli_ok(&["import", "show", id, "--json"])).unwrap()
    };
    let superseded = show(&id);
    assert_eq!(
        (superseded["status"].as_str(), counts(&superseded)[4]),
        (Some("superseded"), 10),
        "{superseded}"
    );
    assert_eq!(superseded["superseded_by"], newer["id"], "{superseded}");

    let out = server.cli(&["approve", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(
        output_text(&out).contains(&format!("superseded by import {}", newer["id"])),
        "{}",
        output_text(&out)
    );
    assert_eq!(records_csv(&server, "acme", "students").lines().count(), 31, "nothing changed");
    assert!(!server.cli_ok(&["import", "show", &id]).contains("approved by"), "not decided");
    // Nor can it be discarded: it is final, its file kept.
    assert_eq!(server.cli(&["discard", &id]).status.code(), Some(1));
    assert_eq!(server.cli(&["import", "file", &id]).stdout, many_students(10, "S").as_bytes());
}
