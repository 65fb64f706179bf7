//! `sluice export`: a tenant's records as CSV or XLSX, into its /exports (fetched over SFTP
//! as a district would) or to a file; what a spreadsheet would run is never a formula.

use crate::common::*;
use crate::openssh::sftp_batch;

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
