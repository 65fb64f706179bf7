//! `sluice export`: a tenant's records as CSV or XLSX, into its /exports (fetched over SFTP
//! as a district would) or to a file; what a spreadsheet would run is never a formula.

use crate::common::*;
use crate::openssh::sftp_batch;
use std::time::Duration;

/// acme with students as a SIS writes them: accents, a formula in a name, a phone number with
/// its `+`, a date.
fn students(server: &Server) {
    server.importing_tenant("acme", "pw-for-tests");
    let file = write_file(
        server.dir.path(),
        "students.csv",
        "sisId,firstName,lastName,middleName,phone,birthDate,grade\n\
         S1,Zoë,Núñez,,+13125550107,2010-04-05,5\n\
         S2,=HYPERLINK(\"http://evil\"),Ray,-2+3,,2011-12-31,6\n\
         S3,Ann,Lee,,,2012-01-15,5\n"
            .as_bytes(),
    );
    server.cli_ok(&["import", "--tenant", "acme", "--type", "students", file.to_str().unwrap()]);
}

#[test]
fn a_csv_export_lands_whole_in_exports_and_neutralises_only_formulas() {
    let server = Server::start();
    students(&server);
    let said = server.cli_ok(&["export", "--tenant", "acme", "--type", "students", "--bom"]);
    assert!(said.contains("exported 3 records of students to /exports/students.csv"), "{said}");
    // Fetched as the district fetches it.
    let key = server.key("acme");
    let out = sftp_batch(&server, &key, "get /exports/students.csv fetched.csv\nls -a /exports\n", &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    let listing = output_text(&out);
    assert!(
        !listing.contains(".export-") && !listing.contains("partial"),
        "no temporary file is seen: {listing}"
    );
    let text = std::fs::read_to_string(server.dir.path().join("fetched.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("\u{feff}sisId,firstName,lastName,"), "{header}");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 3, "{text}");
    // The preset's column order: sisId, firstName, lastName, middleName, grade, birthDate,
    // schoolId, email, phone.
    assert_eq!(rows[0], "S1,Zoë,Núñez,,5,2010-04-05,,,+13125550107", "a plain number keeps its +");
    assert_eq!(
        rows[1], "S2,\"'=HYPERLINK(\"\"http://evil\"\")\",Ray,'-2+3,6,2011-12-31,,,",
        "formulas neutralised"
    );
    // No temporary file is left in the private spool either.
    let spool = server.data_dir().join("spool").join("exports");
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0, "spool: {spool:?}");
}

#[test]
fn columns_and_filters_choose_what_is_exported_and_mistakes_name_the_columns() {
    let server = Server::start();
    students(&server);
    let out = server.cli_ok(&[
        "export",
        "--tenant",
        "acme",
        "--type",
        "students",
        "--columns",
        "lastName,sisId",
        "--where",
        "grade=5",
        "--out",
        "-",
    ]);
    assert_eq!(out, "lastName,sisId\r\nNúñez,S1\r\nLee,S3\r\n");
    // Named as a file's header may name them: any case, or an alias.
    let out = server.cli_ok(&[
        "export",
        "--tenant",
        "acme",
        "--type",
        "students",
        "--columns",
        "LASTNAME,Student_Number",
        "--where",
        "Grade Level=6",
        "--out",
        "-",
    ]);
    assert_eq!(out, "lastName,sisId\r\nRay,S2\r\n");
    let o = server.cli(&["export", "--tenant", "acme", "--type", "students", "--columns", "sisId,nickname"]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no column \"nickname\"") && err.contains("firstName"), "{err}");
    let o = server.cli(&["export", "--tenant", "acme", "--type", "students", "--where", "grade"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("COLUMN=VALUE"));
    // One column twice (grades 5 and 6, as a newcomer asked): no record could pass both, and
    // a saved export showed the last value while writing nothing. Refused, saying why.
    for args in [
        &["export", "--tenant", "acme", "--type", "students", "--where", "grade=5", "--where", "Grade=6"][..],
        &["export", "add", "acme", "young", "--type", "students", "--where", "grade=5", "--where", "grade=6"],
    ] {
        let o = server.cli(args);
        assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("--where names the column grade twice"),
            "{}",
            output_text(&o)
        );
    }
    assert!(!server.cli_ok(&["export", "list", "acme"]).contains("young"), "not saved");
    // A type the tenant has no folder for: refused, as a saved export is (it wrote an empty
    // file and said it had exported 0 records).
    let o = server.cli(&["export", "--tenant", "acme", "--type", "badge"]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert!(
        output_text(&o).contains("tenant acme has no folder for import type badge"),
        "{}",
        output_text(&o)
    );
    assert!(!server.tenant_dir("acme").join("exports").join("badge.csv").exists());
    assert!(!server.tenant_dir("acme").join("exports").join("students.csv").exists(), "nothing written");
}

/// The XLSX file read back by openpyxl: text cells stay text (a `=` value is not a formula),
/// dates are dates, integers numbers; the header is frozen and filtered.
#[test]
fn an_xlsx_export_types_its_cells_and_never_writes_a_formula() {
    if !have_python_module("openpyxl", "openpyxl (pip install openpyxl)") {
        return;
    }
    let server = Server::start();
    students(&server);
    let path = server.dir.path().join("students.xlsx");
    let said = server.cli_ok(&[
        "export",
        "--tenant",
        "acme",
        "--type",
        "students",
        "--format",
        "xlsx",
        "--out",
        path.to_str().unwrap(),
    ]);
    assert!(said.contains("exported 3 records"), "{said}");
    let script = r#"
import sys, openpyxl, datetime
wb = openpyxl.load_workbook(sys.argv[1])
ws = wb.active
rows = list(ws.iter_rows(values_only=True))
head = rows[0]
col = {name: i for i, name in enumerate(head)}
s1, s2 = rows[1], rows[2]
assert s1[col['firstName']] == 'Zoë', s1
assert s1[col['phone']] == '+13125550107', s1
assert s2[col['firstName']] == '=HYPERLINK("http://evil")', s2
cell = ws.cell(row=3, column=col['firstName'] + 1)
assert cell.data_type == 's', cell.data_type
assert isinstance(s1[col['birthDate']], datetime.datetime) and s1[col['birthDate']].date() == datetime.date(2010, 4, 5), s1
assert ws.freeze_panes == 'A2', ws.freeze_panes
assert ws.auto_filter.ref and ws.auto_filter.ref.startswith('A1:'), ws.auto_filter.ref
print('ok', ws.title, len(rows))
"#;
    let out =
        std::process::Command::new("python3").args(["-c", script, path.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok students 4");
}

/// `--out` replaces a file whole and private (0600); a killed export's temporary file is
/// cleared by the next one; `--bom` is refused for XLSX.
#[test]
fn out_files_are_replaced_whole_and_private_and_killed_exports_leave_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start();
    students(&server);
    let out = server.dir.path().join("mine.csv");
    std::fs::write(&out, "the previous export\n").unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).unwrap();
    server.cli_ok(&["export", "--tenant", "acme", "--type", "students", "--out", out.to_str().unwrap()]);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.starts_with("sisId,") && text.lines().count() == 4, "{text}");
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    let beside: Vec<_> = std::fs::read_dir(server.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".export-"))
        .collect();
    assert!(beside.is_empty(), "no temporary file left beside --out");
    // A temporary file an export killed two hours ago left behind.
    let spool = server.data_dir().join("spool").join("exports");
    let stale = spool.join(".export-killed");
    std::fs::write(&stale, "S1,Zoë,Núñez\n").unwrap();
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::options().write(true).open(&stale).unwrap().set_modified(two_hours_ago).unwrap();
    server.cli_ok(&["export", "--tenant", "acme", "--type", "students"]);
    assert!(!stale.exists(), "a killed export's records leave the spool");
    let o = server.cli(&["export", "--tenant", "acme", "--type", "students", "--format", "xlsx", "--bom"]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--bom is for CSV"), "{}", output_text(&o));
}

/// A saved export as a district's data manager uses one: saved once, written to
/// `/exports/NAME.csv` after each upload that changes students (fetched over SFTP), not after
/// one that changes nothing, run on demand, every run logged; mistakes are refused naming what
/// is wrong; removing it leaves its last file and its log.
#[test]
fn a_saved_export_follows_imports_runs_on_demand_and_logs_every_run() {
    let server = Server::start();
    students(&server);
    let said = server.cli_ok(&[
        "export",
        "add",
        "acme",
        "Roster",
        "--type",
        "students",
        "--columns",
        "sisId,lastName",
        "--where",
        "grade=5",
        "--after-import",
    ]);
    assert!(
        said.contains("/exports/Roster.csv") && said.contains("after every import of students"),
        "{said}"
    );
    // Refused: a second export of the name (any case), an unknown column, a bad schedule, a
    // name that is not one file name.
    for (args, needle) in [
        (vec!["roster", "--type", "students"], "already has an export named \"Roster\""),
        (vec!["x", "--type", "students", "--columns", "nickname"], "no column \"nickname\""),
        (vec!["x", "--type", "students", "--schedule", "at two"], "schedule \"at two\""),
        (vec!["../x", "--type", "students"], "export name \"../x\" is not allowed"),
        (vec!["x", "--type", "sections"], "no import type \"sections\""),
        (vec!["x", "--type", "badge"], "tenant acme has no folder for import type badge"),
    ] {
        let o = server.cli(&[&["export", "add", "acme"][..], &args].concat());
        assert!(!o.status.success(), "{args:?}");
        assert!(String::from_utf8_lossy(&o.stderr).contains(needle), "{args:?}: {}", output_text(&o));
    }
    let list: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["export", "list", "acme", "--json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["when"], "after_import");
    assert_eq!(list[0]["where"]["grade"], "5");
    assert_eq!(list[0]["path"], "/exports/Roster.csv");

    // The district uploads a changed file: the export follows.
    let key = server.key("acme");
    let upload = |body: &str| {
        let file = write_file(server.dir.path(), "students.csv", body.as_bytes());
        let script = format!("put {} /students/students.csv\n", file.display());
        let out = sftp_batch(&server, &key, &script, &[]);
        assert!(out.status.success(), "{}", output_text(&out));
    };
    let header = "sisId,firstName,lastName,middleName,phone,birthDate,grade\n";
    // (Every student is in the file: the preset mirrors, and a file that dropped most of them
    // would be held by the deletion safeguard, not applied.)
    let body = format!(
        "{header}S1,Zoë,Núñez,,+13125550107,2010-04-05,5\nS2,Bo,Ray,,,2011-12-31,6\nS3,Ann,Lee,,,2012-01-15,5\n\
         S4,Kim,Park,,,2010-01-01,5\n"
    );
    upload(&body);
    let file = server.tenant_dir("acme").join("exports").join("Roster.csv");
    let runs = |server: &Server| -> Vec<serde_json::Value> {
        let text = server.cli_ok(&["export", "runs", "acme", "roster", "--json"]);
        serde_json::from_str::<serde_json::Value>(&text).unwrap().as_array().unwrap().clone()
    };
    // A run is logged `running` before its file is written: wait for it to end (on a slow
    // machine the file was fetched before it was there).
    let ended = |s: &Server| {
        let all = runs(s);
        all.len() == 1 && all[0]["status"] != "running"
    };
    assert!(server.wait_until(Duration::from_secs(20), ended), "no run after the import");
    let fetched = sftp_batch(&server, &key, "get /exports/Roster.csv roster-fetched.csv\n", &[]);
    assert!(fetched.status.success(), "{}", output_text(&fetched));
    let text = std::fs::read_to_string(server.dir.path().join("roster-fetched.csv")).unwrap();
    assert_eq!(text, "sisId,lastName\r\nS1,Núñez\r\nS3,Lee\r\nS4,Park\r\n");
    let run = &runs(&server)[0];
    assert_eq!(
        (run["cause"].as_str(), run["status"].as_str(), run["rows"].as_u64()),
        (Some("after_import"), Some("written"), Some(3)),
        "{run}"
    );
    assert_eq!(run["destination"], "/exports/Roster.csv");

    // The same file again changes nothing: no run. (Its import is finished before looking.)
    let imports_before = server.imports("acme").len();
    upload(&format!("{body}\n"));
    assert!(server.wait_until(Duration::from_secs(20), |s| {
        let all = s.imports("acme");
        all.len() > imports_before && all.iter().all(|i| i["status"] != "running")
    }));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(runs(&server).len(), 1, "an import that changed nothing is not followed");

    // On demand; its log grows; removed, its last file stays.
    let said = server.cli_ok(&["export", "run", "acme", "roster"]);
    assert!(said.contains("3 records to /exports/Roster.csv"), "{said}");
    let all = runs(&server);
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["cause"], "on_demand");
    server.cli_ok(&["export", "remove", "acme", "ROSTER"]);
    assert!(file.exists(), "the last file stays");
    let o = server.cli(&["export", "run", "acme", "roster"]);
    assert_eq!(o.status.code(), Some(1), "{}", output_text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no export named \"roster\""), "{}", output_text(&o));
    let text = server.cli_ok(&["export", "runs", "acme"]);
    assert_eq!(text.lines().count(), 2, "the log outlives the export: {text}");
}

/// A student's guardians as a column of the students export (each student's guardians' ids, in
/// order, `;` between them), and a guardian's students as a column of the guardians export; a
/// type that does not refer to students is an unknown column.
#[test]
fn an_export_lists_the_records_referring_to_each_record() {
    let server = Server::start();
    students(&server);
    let guardians = write_file(
        server.dir.path(),
        "guardians.csv",
        "guardianSisId,studentSisId,firstName,lastName,email\n\
         G2,S1,Ann,Núñez,ann@example.org\nG1,S1,Bob,Núñez,bob@example.org\nG3,S3,Cy,Lee,cy@example.org\n\
         G1,S3,Bob,Núñez,bob@example.org\n"
            .as_bytes(),
    );
    server.cli_ok(&["import", "--tenant", "acme", "--type", "guardians", guardians.to_str().unwrap()]);
    let out = server.cli_ok(&[
        "export",
        "--tenant",
        "acme",
        "--type",
        "students",
        "--columns",
        "sisId,Guardians",
        "--out",
        "-",
    ]);
    // Quoted: a `;` would split the cell for a spreadsheet set to semicolons.
    assert_eq!(out, "sisId,guardians\r\nS1,\"G1;G2\"\r\nS2,\r\nS3,\"G1;G3\"\r\n");
    // Bob (G1) guards S1 and S3: each of his rows lists both.
    let out = server.cli_ok(&[
        "export",
        "--tenant",
        "acme",
        "--type",
        "guardians",
        "--columns",
        "guardianSisId,studentSisId,students",
        "--out",
        "-",
    ]);
    assert_eq!(
        out,
        "guardianSisId,studentSisId,students\r\nG1,S1,\"S1;S3\"\r\nG2,S1,S1\r\nG1,S3,\"S1;S3\"\r\nG3,S3,S3\r\n"
    );
    let o = server.cli(&["export", "--tenant", "acme", "--type", "students", "--columns", "sisId,visitors"]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert!(output_text(&o).contains("no column \"visitors\""), "{}", output_text(&o));
    // A saved export takes the column too.
    server.cli_ok(&[
        "export",
        "add",
        "acme",
        "families",
        "--type",
        "students",
        "--columns",
        "sisId,guardians",
    ]);
    server.cli_ok(&["export", "run", "acme", "families"]);
    let file =
        std::fs::read_to_string(server.tenant_dir("acme").join("exports").join("families.csv")).unwrap();
    assert!(file.contains("S1,\"G1;G2\"\r\n"), "{file}");
}

/// A server killed while it writes a scheduled export, then started again: the run the
/// killed server left is logged as interrupted and run by the next server for the same due
/// time, not skipped until the next one (before, the due time was taken and never run).
#[test]
fn a_scheduled_export_a_killed_server_was_writing_is_run_by_the_next_server() {
    let mut server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    // Enough students that writing them as XLSX takes a moment to catch.
    let mut body = String::from("sisId,firstName,lastName,middleName,phone,birthDate,grade\n");
    for i in 0..60_000 {
        body.push_str(&format!("S{i:06},First{i},Last{},,,2010-04-05,{}\n", i % 997, i % 12 + 1));
    }
    let file = write_file(server.dir.path(), "students.csv", body.as_bytes());
    server.cli_ok(&["import", "--tenant", "acme", "--type", "students", file.to_str().unwrap()]);
    server.cli_ok(&[
        "export",
        "add",
        "acme",
        "Nightly",
        "--type",
        "students",
        "--format",
        "xlsx",
        "--schedule",
        "* * * * *",
    ]);
    // Watched through the API, often: the run takes a moment only.
    let token = server.api_key(Some("acme"));
    let runs = |server: &Server| -> Vec<serde_json::Value> {
        let (status, _, body) = server.http("GET", "/api/v1/tenants/acme/exports/Nightly/runs", Some(&token));
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v.as_array().or(v["runs"].as_array()).cloned().unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(150);
    while !runs(&server).first().is_some_and(|r| r["status"] == "running") {
        assert!(std::time::Instant::now() < deadline, "no run caught running: {:?}", runs(&server));
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill_and_restart();
    let due_minute = runs(&server)[0]["started_ms"].as_i64().unwrap() / 60_000;
    assert!(
        server.wait_until(Duration::from_secs(60), |s| runs(s).iter().any(|r| r["status"] == "written")),
        "{:?}",
        runs(&server)
    );
    let all = runs(&server);
    let (rerun, interrupted) = (&all[0], all.last().unwrap());
    assert_eq!(
        (interrupted["cause"].as_str(), interrupted["status"].as_str()),
        (Some("schedule"), Some("failed"))
    );
    assert!(interrupted["error"].as_str().unwrap_or("").contains("interrupted"), "{interrupted}");
    assert_eq!(
        (rerun["cause"].as_str(), rerun["rows"].as_u64()),
        (Some("schedule"), Some(60_000)),
        "{rerun}"
    );
    assert_eq!(
        rerun["started_ms"].as_i64().unwrap() / 60_000,
        due_minute,
        "run again at once, in the minute it was due, not at the next due time: {all:?}"
    );
    assert!(server.tenant_dir("acme").join("exports/Nightly.xlsx").exists());
}
