//! Files as SIS systems write them, uploaded over SFTP as a district would, read by a
//! lenient tenant (the default) and a strict one: PowerSchool AutoSend's tab-delimited
//! files, European Excel's semicolons with a BOM and a `sep=;` line, pipe-delimited exports,
//! OneRoster 1.1 exports with `TRUE`, `Scheduled`, a blank manifest line and datetimes with a
//! space, a package with a blank manifest line and a misspelt header, a file that turns to
//! Latin-1 half way, and the error report a data manager opens in Excel.

use crate::common::*;
use crate::oneroster::{District, ORGS, USERS_1_1, manifest, zip};
use serde_json::Value;
use std::time::Duration;

/// A server with two tenants importing students and OneRoster packages: `acme` reads
/// leniently (the default), `bolt` strictly.
fn setup() -> Server {
    let server = Server::start();
    for tenant in ["acme", "bolt"] {
        server.importing_tenant(tenant, "pw-for-tests");
        server.cli_ok(&["tenant", "set", tenant, "types=students,oneroster"]);
    }
    server.cli_ok(&["tenant", "set", "bolt", "strictness=strict"]);
    server
}

/// Uploads `data` to `path` over SFTP (create, write, close, as ordinary clients do) and
/// returns the import it made, with its errors.
async fn upload(server: &Server, tenant: &str, path: &str, data: &[u8]) -> Value {
    let before = server.imports(tenant).len();
    let (_ssh, sftp) = sftp_login(server.port, tenant, "pw-for-tests").await;
    put(&sftp, path, data).await.unwrap();
    let list = crate::imports::wait_for_status(server, tenant, before + 1, Duration::from_secs(30));
    assert!(list.len() > before, "no import after uploading {path}");
    let id = list[0]["id"].to_string();
    serde_json::from_str(&server.cli_ok(&["import", "show", &id, "--errors", "--json"])).unwrap()
}

fn errors(v: &Value) -> Vec<Value> {
    v["errors"].as_array().cloned().unwrap_or_default()
}

fn warnings(v: &Value) -> Vec<String> {
    v["warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap().to_owned()).collect()
}

fn has_warning(v: &Value, expected: &str) -> bool {
    warnings(v).iter().any(|w| w == expected)
}

fn students(server: &Server, tenant: &str) -> String {
    server.cli_ok(&["records", "--tenant", tenant, "--type", "students"])
}

/// PowerSchool AutoSend's defaults: tab between fields, CR-LF between lines, no quotes (so a
/// comma or an apostrophe in a name is plain text), a header row of PowerSchool field names.
fn autosend() -> Vec<u8> {
    let rows = [
        ["Student_Number", "First_Name", "Last_Name", "Grade_Level", "DOB", "SchoolID"],
        ["100234", "Zoë", "Núñez", "9", "08/31/2010", "105"],
        ["100235", "Marcus", "Lee, Jr.", "10", "01/02/2009", "105"],
        ["100236", "Siobhan", "O'Brien", "11", "12/24/2008", "106"],
    ];
    rows.iter().map(|r| format!("{}\r\n", r.join("\t"))).collect::<String>().into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn powerschool_autosend_tab_files_load_in_both_modes_and_record_their_delimiter() {
    let server = setup();
    for tenant in ["acme", "bolt"] {
        let v = upload(&server, tenant, "/students/students.txt", &autosend()).await;
        assert_eq!(v["status"], "complete", "{tenant}: {v}");
        assert_eq!(v["counts"]["added"], 3, "{v}");
        assert_eq!(v["delimiter"], "tab", "{v}");
        let records = students(&server, tenant);
        assert!(records.contains("100235,Marcus,\"Lee, Jr.\""), "{records}");
        assert!(records.contains("Zoë,Núñez") && records.contains("2010-08-31"), "{records}");
        let shown = server.cli_ok(&["import", "show", &v["id"].to_string()]);
        assert!(shown.contains("delimiter: tab"), "{shown}");
    }
    // A tenant may fix the delimiter; a file that does not use it then says what to do.
    // (Each upload under its own name: the same bytes to the same name moments later are a
    // client's retry, not imported again.)
    server.cli_ok(&["tenant", "set", "acme", "delimiter.students=comma"]);
    let v = upload(&server, "acme", "/students/monday.txt", &autosend()).await;
    assert_eq!(v["status"], "failed", "{v}");
    let message = v["message"].as_str().unwrap();
    assert!(
        message.contains("required column \"sisId\" is missing")
            && message.contains("read as comma-delimited")
            && message.contains("delimiter.students="),
        "{message}"
    );
    assert_eq!(errors(&v)[0]["line"], 1, "{v}");
    server.cli_ok(&["tenant", "set", "acme", "delimiter.students=tab"]);
    let v = upload(&server, "acme", "/students/tuesday.txt", &autosend()).await;
    assert_eq!(v["status"], "complete", "{v}");
    let settings: Value =
        serde_json::from_str(&server.cli_ok(&["tenant", "show", "acme", "--json"])).unwrap();
    assert_eq!(settings["read_settings"]["delimiter.students"], "tab", "{settings}");
}

/// PowerSchool's own field names for the middle name, home phone and email load into the
/// preset's columns, and a nickname written with quotes (`"Bo" Jr`: AutoSend never quotes)
/// is a name, not a broken file, in both modes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn powerschool_field_names_and_quoted_nicknames_load() {
    let server = setup();
    let rows = [
        ["Student_Number", "First_Name", "Middle_Name", "Last_Name", "Home_Phone", "Student_Email"],
        ["200001", "\"Bo\" Jr", "Lee", "Park", "(312) 555-0107", "bo@example.org"],
        ["200002", "Ann", "", "O'Neil", "", ""],
    ];
    let file: String = rows.iter().map(|r| format!("{}\r\n", r.join("\t"))).collect();
    for tenant in ["acme", "bolt"] {
        let v = upload(&server, tenant, "/students/students.txt", file.as_bytes()).await;
        assert_eq!(
            (v["status"].as_str(), v["counts"]["added"].as_u64()),
            (Some("complete"), Some(2)),
            "{tenant}: {v}"
        );
        let records = students(&server, tenant);
        // sisId, firstName, lastName, middleName, grade, birthDate, schoolId, email, phone
        assert!(
            records.contains("200001,\"\"\"Bo\"\" Jr\",Park,Lee,,,,bo@example.org,3125550107"),
            "{tenant}: {records}"
        );
    }
}

/// A nickname typed with one quote (`"Bobby`) goes out of PowerSchool as it is: in a tab file
/// the quote opens nothing. Lenient reading (the default) takes it as text and says on which
/// line; strict reading refuses the file, naming the line; it used to be refused in both as
/// a stray quote that swallowed rows. In the last column, before the next row, likewise (a
/// phone, which the row check then rejects as the bad phone it is).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_powerschool_nickname_with_one_quote_is_text_when_reading_is_lenient() {
    let server = setup();
    let rows = [
        ["Student_Number", "First_Name", "Last_Name", "Grade_Level", "Home_Phone"],
        ["300001", "\"Bobby", "Ray", "10", "(312) 555-0107"],
        ["300002", "Ann", "Lee", "9", ""],
        ["300003", "Cy", "\"Doe", "11", ""],
        ["300004", "Di", "Fox", "12", "\"312 555-0108"],
        ["300005", "Ed", "Orr", "12", ""],
    ];
    let file: String = rows.iter().map(|r| format!("{}\r\n", r.join("\t"))).collect();
    let v = upload(&server, "acme", "/students/students.txt", file.as_bytes()).await;
    // The phone that begins with a quote is read on its own line, and is not a phone.
    assert_eq!((v["status"].as_str(), v["counts"]["added"].as_u64()), (Some("incomplete"), Some(4)), "{v}");
    assert_eq!(
        (errors(&v)[0]["line"].as_u64(), errors(&v)[0]["code"].as_str()),
        (Some(5), Some("bad_phone"))
    );
    assert!(
        has_warning(
            &v,
            "students.txt: lines 2, 4, 5: a field begins with a \" that nothing closes on its line: read as text, \
             with the quote (tab files are not quoted)"
        ),
        "{v}"
    );
    let records = students(&server, "acme");
    // sisId, firstName, lastName, middleName, grade, birthDate, schoolId, email, phone
    assert!(records.contains("300001,\"\"\"Bobby\",Ray,,10,"), "{records}");
    assert!(records.contains("300003,Cy,\"\"\"Doe\",,11,"), "{records}");
    assert!(records.contains("300005,Ed,Orr,,12,"), "{records}");
    let v = upload(&server, "bolt", "/students/students.txt", file.as_bytes()).await;
    assert_eq!(v["status"], "failed", "{v}");
    let message = v["message"].as_str().unwrap();
    assert!(
        message.contains("line 2: a field begins with a \" that nothing closes on its line (lines 2, 4, 5)")
            && message.contains("strictness=lenient"),
        "{message}"
    );
    assert!(students(&server, "bolt").lines().count() <= 1, "nothing loaded");
}

/// European Excel ("CSV (semicolon)"): a BOM, a `sep=;` line so that Excel opens it right,
/// semicolons, CR-LF, and the empty columns and rows a sheet leaves behind.
fn excel_semicolons(sep_line: bool) -> Vec<u8> {
    let mut text = String::from("\u{feff}");
    if sep_line {
        text.push_str("sep=;\r\n");
    }
    text.push_str("sisId;firstName;lastName;birthDate;email;;\r\n");
    text.push_str("S1;Zoë;Núñez;2010-08-31;zoe@example.org;;\r\n");
    text.push_str("S2;Émile;Zola;2011-01-02;;;\r\n");
    text.push_str("S3;Åsa;Öberg;2011-03-04; asa@example.org ;;\r\n");
    text.push_str(";;;;;;\r\n;;;;;;\r\n");
    text.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excel_semicolon_files_with_a_bom_and_a_sep_line_load_leniently_and_are_refused_strictly() {
    let server = setup();
    let v = upload(&server, "acme", "/students/students.csv", &excel_semicolons(true)).await;
    assert_eq!(v["status"], "complete", "{v}");
    assert_eq!(v["counts"]["added"], 3, "{v}");
    assert_eq!(
        (v["delimiter"].as_str(), v["encoding"].as_str()),
        (Some("semicolon"), Some("utf-8 (with BOM)"))
    );
    for w in [
        "students.csv: the first line `sep=;` (Excel) was read as the delimiter (semicolon), not as the header",
        "students.csv: 2 empty column(s) at the end of the header ignored",
        "students.csv: empty rows (every field blank) skipped, 2 rows",
    ] {
        assert!(has_warning(&v, w), "{w:?} not in {:#?}", warnings(&v));
    }
    let records = students(&server, "acme");
    assert!(records.contains("S2,Émile,Zola") && records.contains("asa@example.org"), "{records}");
    let shown = server.cli_ok(&["import", "show", &v["id"].to_string()]);
    assert!(
        shown.contains("warning: students.csv: empty rows (every field blank) skipped, 2 rows"),
        "{shown}"
    );

    // Strict: the sep= line is refused, saying where and what to do; without it, the empty
    // columns are; nothing is imported either time.
    let v = upload(&server, "bolt", "/students/students.csv", &excel_semicolons(true)).await;
    assert_eq!(v["status"], "failed", "{v}");
    let e = &errors(&v)[0];
    assert_eq!((e["line"].as_u64(), e["code"].as_str()), (Some(1), Some("sep_line")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("\"sep=;\""), "{v}");
    let v = upload(&server, "bolt", "/students/students.csv", &excel_semicolons(false)).await;
    assert_eq!(v["status"], "failed", "{v}");
    assert!(v["message"].as_str().unwrap().contains("column 6 of the header has no name"), "{v}");
    assert!(!students(&server, "bolt").contains("S1"), "nothing imported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipe_delimited_exports_load_in_both_modes() {
    let server = setup();
    let file = "sisId|firstName|lastName|email|phone\n\
                P1|Ann|Lee, PhD|ann@example.org|(555) 010-2030\n\
                P2|Bob|\"Ray|Jr\"|bob@example.org|\n";
    for tenant in ["acme", "bolt"] {
        let v = upload(&server, tenant, "/students/export.psv", file.as_bytes()).await;
        assert_eq!(v["status"], "complete", "{tenant}: {v}");
        assert_eq!(v["delimiter"], "pipe", "{v}");
        let records = students(&server, tenant);
        assert!(records.contains("P1,Ann,\"Lee, PhD\"") && records.contains("Ray|Jr"), "{records}");
        assert!(warnings(&v).is_empty(), "{v}");
    }
}

/// A OneRoster 1.1 export as SIS systems write it: `TRUE` for booleans, `Scheduled` for a
/// vocabulary value, datetimes with a space, a manifest that lists `file.scoreScales` (a 1.2
/// file) with a blank value. Users come as a delta (status and dateLastModified filled).
fn oneroster_1_1_export() -> Vec<u8> {
    let mut m = manifest(
        "1.1",
        &[
            ("orgs", "bulk"),
            ("academicSessions", "bulk"),
            ("courses", "bulk"),
            ("classes", "bulk"),
            ("users", "delta"),
            ("enrollments", "bulk"),
        ],
    );
    m.push_str("file.scoreScales,\n");
    let orgs = format!("{ORGS}s1,,,Lincoln High,school,LHS,\n");
    let sessions = "sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,schoolYear\n\
                    t1,,,Fall 2017,term,2017-08-15,2017-12-20,,2018\n";
    let courses = "sourcedId,status,dateLastModified,schoolYearSourcedId,title,courseCode,grades,orgSourcedId,subjects,subjectCodes\n\
                   c1,,,,Algebra I,ALG1,09,s1,Math,\n";
    let classes = "sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,classType,location,schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods\n\
                   cl1,,,Algebra I - P1,09,c1,ALG1-1,Scheduled,Room 4,s1,t1,,,1\n";
    let mut users = USERS_1_1.to_owned();
    users.push_str(
        "u0,active,2017-05-06 08:01:05,TRUE,s1,teacher,tess,,Tess,Teacher,,,tess@example.org,,,,,\n",
    );
    let mut enrollments = String::from(
        "sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,primary,beginDate,endDate\n",
    );
    enrollments.push_str("e0,,,cl1,s1,u0,teacher,true,,\n");
    for i in 1..=5 {
        users.push_str(&format!(
            "u{i},active,2017-05-06 08:01:05,TRUE,s1,student,stu{i},,Stu{i},Dent,,,,,,,09,\n"
        ));
        enrollments.push_str(&format!("e{i},,,cl1,s1,u{i},student,,,\n"));
    }
    zip(&[
        ("manifest.csv", m.as_bytes()),
        ("orgs.csv", orgs.as_bytes()),
        ("academicSessions.csv", sessions.as_bytes()),
        ("courses.csv", courses.as_bytes()),
        ("classes.csv", classes.as_bytes()),
        ("users.csv", users.as_bytes()),
        ("enrollments.csv", enrollments.as_bytes()),
    ])
}

fn oneroster_records(server: &Server, tenant: &str, file: &str) -> Vec<Value> {
    let out = server.cli_ok(&[
        "records",
        "--tenant",
        tenant,
        "--type",
        &format!("oneroster.{file}"),
        "--format",
        "json",
    ]);
    serde_json::from_str(&out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_oneroster_1_1_export_with_true_scheduled_and_spaced_datetimes_loads_leniently_with_warnings() {
    let server = setup();
    let v = upload(&server, "acme", "/oneroster/export.zip", &oneroster_1_1_export()).await;
    assert_eq!(v["status"], "complete", "{v}");
    assert_eq!(v["counts"]["rows"], 16, "every row of every file: {v}");
    assert_eq!(v["counts"]["rejected"], 0, "{v}");
    for w in [
        "users.csv:enabledUser: `TRUE` read as `true`, 6 rows",
        "users.csv:dateLastModified: `2017-05-06 08:01:05` read as `2017-05-06T08:01:05`, 6 rows",
        "classes.csv:classType: `Scheduled` read as `scheduled`, 1 row",
    ] {
        assert!(has_warning(&v, w), "{w:?} not in {:#?}", warnings(&v));
    }
    assert!(
        warnings(&v)
            .iter()
            .any(|w| w.starts_with("manifest.csv:") && w.contains("file.scoreScales is blank")),
        "{:#?}",
        warnings(&v)
    );
    let users = oneroster_records(&server, "acme", "users");
    assert_eq!(users.len(), 6);
    assert!(
        users.iter().all(|u| u["enabledUser"] == "true" && u["dateLastModified"] == "2017-05-06T08:01:05")
    );
    assert_eq!(oneroster_records(&server, "acme", "classes")[0]["classType"], "scheduled");
    assert_eq!(oneroster_records(&server, "acme", "enrollments").len(), 6);
    // The dashboard and the API show the same warnings (one JSON view of an import).
    let token = server.api_key(Some("acme"));
    let (code, _, body) = server.http("GET", &format!("/api/v1/imports/{}", v["id"]), Some(&token));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("`TRUE` read as `true`, 6 rows"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_oneroster_1_1_export_is_refused_strictly_with_every_problem_in_one_pass() {
    let server = setup();
    let v = upload(&server, "bolt", "/oneroster/export.zip", &oneroster_1_1_export()).await;
    assert_eq!(v["status"], "failed", "{v}");
    let errs = errors(&v);
    let find = |column: &str, code: &str| {
        errs.iter().find(|e| e["column"] == column && e["code"] == code).cloned().unwrap_or_else(|| {
            panic!("no {code} error for {column:?} in {}", serde_json::to_string_pretty(&errs).unwrap())
        })
    };
    // The manifest first, then every file's rows: nothing stops at the first kind.
    assert_eq!(errs[0]["column"], "manifest.csv", "{errs:#?}");
    assert!(errs[0]["reason"].as_str().unwrap().contains("file.scoreScales is blank"), "{errs:#?}");
    find("classes.csv:classType", "not_in_list");
    find("users.csv:dateLastModified", "bad_datetime");
    let e = find("users.csv:enabledUser", "not_boolean");
    // Each row names its record, so a data manager finds the person without the file.
    assert_eq!((e["key"].as_str(), e["name"].as_str()), (Some("u0"), Some("Tess Teacher")), "{e}");
    assert_eq!(errs.iter().filter(|e| e["column"] == "users.csv:enabledUser").count(), 6);
    assert!(oneroster_records(&server, "bolt", "users").is_empty(), "nothing imported");
}

/// A 1.2 package whose manifest leaves `file.scoreScales` blank and whose users.csv header
/// misspells `familyName`: both are reported by one import, in either mode, and so are its
/// enrollments' own problems: one naming a class that does not exist, one whose `primary` is
/// wrong and whose class does not exist either (both), none for the users a misspelt header
/// left unread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blank_manifest_line_and_a_misspelt_header_are_reported_in_one_pass() {
    let server = setup();
    let mut d = District::new();
    d.enrollments
        .push_str("e-nope,,,cls-nope,s1,t1,teacher,true,,\ne-both,,,cls-gone,s1,t1,teacher,maybe,,\n");
    let files = ["academicSessions", "classes", "courses", "enrollments", "orgs", "roles", "users"];
    let m =
        manifest("1.2", &files.map(|f| (f, "bulk"))).replace("file.scoreScales,absent", "file.scoreScales,");
    let users = d.users.replacen("familyName", "famlyName", 1);
    let pkg = zip(&[
        ("manifest.csv", m.as_bytes()),
        ("orgs.csv", d.orgs.as_bytes()),
        ("academicSessions.csv", d.sessions.as_bytes()),
        ("courses.csv", d.courses.as_bytes()),
        ("classes.csv", d.classes.as_bytes()),
        ("users.csv", users.as_bytes()),
        ("roles.csv", d.roles.as_bytes()),
        ("enrollments.csv", d.enrollments.as_bytes()),
    ]);
    let blank_line = m.lines().position(|l| l == "file.scoreScales,").unwrap() + 1;
    // Lenient: the blank line is read as absent (a warning); the header still refuses it.
    let v = upload(&server, "acme", "/oneroster/district.zip", &pkg).await;
    assert_eq!(v["status"], "failed", "{v}");
    let errs = errors(&v);
    assert!(
        errs.iter().any(|e| e["column"] == "users.csv"
            && e["code"] == "bad_header"
            && e["reason"].as_str().unwrap().contains("\"famlyName\"")),
        "{errs:#?}"
    );
    assert!(errs.iter().all(|e| e["column"] != "manifest.csv"), "{errs:#?}");
    assert!(
        has_warning(
            &v,
            &format!(
                "manifest.csv:{blank_line}: file.scoreScales is blank and the package has no scoreScales.csv: read as absent"
            )
        ),
        "{:#?}",
        warnings(&v)
    );
    // Strict: both, in one import.
    let v = upload(&server, "bolt", "/oneroster/district.zip", &pkg).await;
    assert_eq!(v["status"], "failed", "{v}");
    let errs = errors(&v);
    assert!(
        errs.iter().any(|e| e["column"] == "manifest.csv" && e["line"] == blank_line as u64),
        "{errs:#?}"
    );
    assert!(errs.iter().any(|e| e["column"] == "users.csv" && e["code"] == "bad_header"), "{errs:#?}");
    let of = |key: &str| -> Vec<(String, String)> {
        errs.iter()
            .filter(|e| e["key"] == key)
            .map(|e| (e["column"].as_str().unwrap().to_owned(), e["code"].as_str().unwrap().to_owned()))
            .collect()
    };
    let reference = ("enrollments.csv:classSourcedId".to_owned(), "unknown_reference".to_owned());
    assert_eq!(of("e-nope"), std::slice::from_ref(&reference), "{errs:#?}");
    let both = of("e-both");
    assert!(
        both.contains(&reference) && both.iter().any(|(c, _)| c == "enrollments.csv:primary"),
        "{both:?}"
    );
    assert!(
        errs.iter().all(|e| e["column"] != "enrollments.csv:userSourcedId"),
        "users.csv was not read: references to it are not checked: {errs:#?}"
    );
    let message = v["message"].as_str().unwrap();
    assert!(message.contains("(and 4 more problems, see the errors)"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_turns_to_latin_1_is_rejected_at_its_line_with_its_reason() {
    let server = setup();
    let mut file = b"sisId,firstName,lastName\n".to_vec();
    for i in 1..=6000 {
        if i == 4500 {
            file.extend_from_slice(b"S4500,Jos\xe9,Garc\xeda\n");
        } else {
            file.extend_from_slice(format!("S{i},Zoë{i},Núñez\n").as_bytes());
        }
    }
    for tenant in ["acme", "bolt"] {
        let v = upload(&server, tenant, "/students/students.csv", &file).await;
        assert_eq!(v["status"], "failed", "{v}");
        let errs = errors(&v);
        assert!(!errs.is_empty(), "a rejection without its line: {v}");
        assert_eq!(errs[0]["line"], 4501, "header on line 1: {errs:#?}");
        assert!(errs[0]["reason"].as_str().unwrap().contains("invalid UTF-8"), "{errs:#?}");
        assert!(v["message"].as_str().unwrap().contains("line 4501"), "{v}");
        assert!(!students(&server, tenant).contains("S1,"), "nothing imported");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_error_report_names_each_record_and_opens_in_excel_with_its_accents() {
    let server = setup();
    let file = "sisId,firstName,lastName,birthDate\r\nS1,Ann,Lee,2010-01-02\r\nS2,Zoë,Núñez,31.02.2012\r\n";
    for tenant in ["acme", "bolt"] {
        let v = upload(&server, tenant, "/students/students.csv", file.as_bytes()).await;
        assert_eq!(v["status"], "incomplete", "{v}");
        let e = &errors(&v)[0];
        assert_eq!((e["key"].as_str(), e["name"].as_str()), (Some("S2"), Some("Zoë Núñez")), "{e}");
        let id = v["id"].as_i64().unwrap();
        let report =
            std::fs::read(server.tenant_dir(tenant).join(format!("errors/{id:08}-students-errors.csv")))
                .unwrap();
        assert!(report.starts_with(b"\xEF\xBB\xBFline,key,name,column,code,reason,value\r\n"), "{report:?}");
        let text = String::from_utf8(report).unwrap();
        assert!(text.contains("\r\n3,S2,Zoë Núñez,birthDate,bad_date,"), "{text}");
        // The API's download is the same report.
        let token = server.api_key(Some(tenant));
        let (code, _, body) =
            server.http("GET", &format!("/api/v1/imports/{id}/errors?format=csv"), Some(&token));
        assert_eq!(code, 200, "{body}");
        assert!(
            body.starts_with("\u{feff}line,key,name,column") && body.contains("3,S2,Zoë Núñez,birthDate"),
            "{body}"
        );
    }
}

/// Twenty students as a mirror file, with `row` in place of S17's line.
fn twenty_students_with(row: &str) -> Vec<u8> {
    let mut s = String::from("sisId,firstName,lastName\r\n");
    for i in 1..=20 {
        if i == 17 {
            s.push_str(row);
        } else {
            s.push_str(&format!("S{i},First{i},Last{i}"));
        }
        s.push_str("\r\n");
    }
    s.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_with_an_unquoted_comma_is_rejected_and_its_record_is_kept_by_a_mirror() {
    let server = setup();
    for tenant in ["acme", "bolt"] {
        let v = upload(&server, tenant, "/students/students.csv", &twenty_students_with("S17,Ann,Lee")).await;
        assert_eq!(v["status"], "complete", "{v}");
        // Excel-less hand edit: a comma in a name, not quoted, one field too many.
        let v = upload(&server, tenant, "/students/students.csv", &twenty_students_with("S17,Lee, Jr.,Ann"))
            .await;
        assert_eq!(v["status"], "incomplete", "{v}");
        assert_eq!(v["counts"]["deleted"], 0, "the rejected row's record is not deleted: {v}");
        assert_eq!(v["counts"]["rejected"], 1, "{v}");
        let errs = errors(&v);
        assert_eq!(
            (errs[0]["line"].as_i64(), errs[0]["code"].as_str()),
            (Some(18), Some("field_count")),
            "{errs:#?}"
        );
        assert_eq!(errs[0]["key"], "S17", "{errs:#?}");
        let records = students(&server, tenant);
        assert!(records.contains("S17,Ann,Lee"), "S17 kept as it was: {records}");
        assert_eq!(records.lines().count(), 21, "{records}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_excel_windows_1252_file_whose_first_accent_is_past_64_kib_loads() {
    let server = setup();
    // Excel's "CSV (Comma delimited)" writes Windows-1252; a sorted roster is plain ASCII
    // for thousands of rows before its first accented name.
    let mut file = b"sisId,firstName,lastName\r\n".to_vec();
    for i in 1..=4000 {
        file.extend_from_slice(format!("S{i},First{i},Last{i}\r\n").as_bytes());
    }
    assert!(file.len() > 64 * 1024);
    file.extend_from_slice(b"S4001,Jos\xe9,Garc\xeda\r\n");
    for tenant in ["acme", "bolt"] {
        let v = upload(&server, tenant, "/students/students.csv", &file).await;
        assert_eq!(
            (v["status"].as_str(), v["encoding"].as_str()),
            (Some("complete"), Some("windows-1252")),
            "{v}"
        );
        assert_eq!(v["counts"]["added"], 4001, "{v}");
        assert!(students(&server, tenant).contains("S4001,José,García"), "decoded as Windows-1252");
    }
}
