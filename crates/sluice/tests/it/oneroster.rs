//! OneRoster 1.1 and 1.2 packages: fixtures written from the specification, one hostile
//! fixture per rule, bulk and delta, the safeguard across a term rollover, and SFTP.

use crate::common::*;
use serde_json::Value;
use std::io::Write;

/// A zip of (name, contents), deflated like the packages SIS exports send.
pub fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

const FILES_1_2: [&str; 21] = [
    "academicSessions",
    "categories",
    "classes",
    "classResources",
    "courses",
    "courseResources",
    "demographics",
    "enrollments",
    "lineItemLearningObjectiveIds",
    "lineItems",
    "lineItemScoreScales",
    "orgs",
    "resources",
    "resultLearningObjectiveIds",
    "results",
    "resultScoreScales",
    "roles",
    "scoreScales",
    "userProfiles",
    "userResources",
    "users",
];
const FILES_1_1: [&str; 13] = [
    "academicSessions",
    "categories",
    "classes",
    "classResources",
    "courses",
    "courseResources",
    "demographics",
    "enrollments",
    "lineItems",
    "orgs",
    "resources",
    "results",
    "users",
];

pub fn manifest(version: &str, files: &[(&str, &str)]) -> String {
    let all: &[&str] = if version == "1.1" { &FILES_1_1 } else { &FILES_1_2 };
    let mut s = format!("propertyName,value\nmanifest.version,1.0\noneroster.version,{version}\n");
    for f in all {
        let mode = files.iter().find(|(n, _)| n == f).map_or("absent", |(_, m)| m);
        s.push_str(&format!("file.{f},{mode}\n"));
    }
    s.push_str("source.systemName,Test SIS\n");
    s
}

pub const ORGS: &str = "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId\n";
pub const SESSIONS: &str =
    "sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,schoolYear\n";
pub const COURSES: &str = "sourcedId,status,dateLastModified,schoolYearSourcedId,title,courseCode,grades,orgSourcedId,subjects,subjectCodes\n";
pub const CLASSES: &str = "sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,classType,location,schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods\n";
pub const USERS_1_2: &str = "sourcedId,status,dateLastModified,enabledUser,username,userIds,givenName,familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password,userMasterIdentifier,preferredGivenName,preferredMiddleName,preferredFamilyName,primaryOrgSourcedId,pronouns\n";
pub const USERS_1_1: &str = "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,givenName,familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password\n";
pub const ROLES: &str = "sourcedId,status,dateLastModified,userSourcedId,roleType,role,beginDate,endDate,orgSourcedId,userProfileSourcedId\n";
pub const ENROLLMENTS: &str = "sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,primary,beginDate,endDate\n";

/// A small 1.2 district: two schools, a year with two terms, classes in both terms.
pub struct District {
    pub orgs: String,
    pub sessions: String,
    pub courses: String,
    pub classes: String,
    pub users: String,
    pub roles: String,
    pub enrollments: String,
}

impl Default for District {
    fn default() -> Self {
        Self::new()
    }
}

impl District {
    pub fn new() -> Self {
        let mut d = District {
            orgs: ORGS.to_owned(),
            sessions: SESSIONS.to_owned(),
            courses: COURSES.to_owned(),
            classes: CLASSES.to_owned(),
            users: USERS_1_2.to_owned(),
            roles: ROLES.to_owned(),
            enrollments: ENROLLMENTS.to_owned(),
        };
        // A child before its parent: parents may come later in the file.
        d.orgs.push_str(",,,Lincoln High,school,LHS,d1\n".replacen(',', "s1,", 1).as_str());
        d.orgs.push_str("s2,,,Adams Middle,school,AMS,d1\n");
        d.orgs.push_str("d1,,,Springfield District,district,SD,\n");
        d.sessions.push_str("y2027,,,2026-2027,schoolYear,2026-08-15,2027-06-15,,2027\n");
        d.sessions.push_str("fall,,,Fall 2026,term,2026-08-15,2027-01-10,y2027,2027\n");
        d.sessions.push_str("spring,,,Spring 2027,term,2027-01-11,2027-06-15,y2027,2027\n");
        d.courses.push_str("alg,,,y2027,Algebra I,ALG1,09,s1,Math,\n");
        d.courses.push_str("bio,,,y2027,Biology,BIO1,\"09,10\",s1,Science,\n");
        for (id, course, term) in [
            ("alg-f", "alg", "fall"),
            ("bio-f", "bio", "fall"),
            ("alg-s", "alg", "spring"),
            ("bio-s", "bio", "spring"),
        ] {
            d.classes
                .push_str(&format!("{id},,,{id} class,09,{course},{id},scheduled,Room 1,s1,{term},,,1\n"));
        }
        d.user("t1", "Tess", "Teacher", "teacher", "tess@example.org");
        for i in 1..=6 {
            d.user(&format!("st{i}"), &format!("Stu{i}"), "Dent", "student", "");
        }
        for class in ["alg-f", "bio-f", "alg-s", "bio-s"] {
            d.enrollments.push_str(&format!("e-{class}-t1,,,{class},s1,t1,teacher,true,,\n"));
            for i in 1..=6 {
                d.enrollments.push_str(&format!("e-{class}-st{i},,,{class},s1,st{i},student,,,\n"));
            }
        }
        d
    }

    pub fn user(&mut self, id: &str, given: &str, family: &str, role: &str, email: &str) {
        self.users.push_str(&format!("{id},,,true,{id},,{given},{family},,,{email},,,,,,,,,,s1,\n"));
        self.roles.push_str(&format!("r-{id},,,{id},primary,{role},,,s1,\n"));
    }

    pub fn without_fall(mut self) -> Self {
        let drop = |text: &str| {
            text.lines()
                .filter(|l| !l.contains("-f,") && !l.contains("-f-"))
                .map(|l| format!("{l}\n"))
                .collect()
        };
        self.classes = drop(&self.classes);
        self.enrollments = drop(&self.enrollments);
        self
    }

    pub fn zip(&self) -> Vec<u8> {
        let files = ["academicSessions", "classes", "courses", "enrollments", "orgs", "roles", "users"];
        let m = manifest("1.2", &files.map(|f| (f, "bulk")));
        zip(&[
            ("manifest.csv", m.as_bytes()),
            ("orgs.csv", self.orgs.as_bytes()),
            ("academicSessions.csv", self.sessions.as_bytes()),
            ("courses.csv", self.courses.as_bytes()),
            ("classes.csv", self.classes.as_bytes()),
            ("users.csv", self.users.as_bytes()),
            ("roles.csv", self.roles.as_bytes()),
            ("enrollments.csv", self.enrollments.as_bytes()),
        ])
    }
}

fn setup() -> Server {
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    server.cli_ok(&["tenant", "set", "acme", "types=oneroster"]);
    server
}

/// Imports a package with the CLI; returns the import as JSON.
fn import(server: &Server, zip: &[u8]) -> Value {
    let path = write_file(server.dir.path(), "roster.zip", zip);
    server.cli(&["import", "--tenant", "acme", "--type", "oneroster", path.to_str().unwrap()]);
    let list: Value =
        serde_json::from_str(&server.cli_ok(&["imports", "--tenant", "acme", "--json", "--limit", "1"]))
            .unwrap();
    let id = list[0]["id"].to_string();
    serde_json::from_str(&server.cli_ok(&["import", "show", &id, "--errors", "--json"])).unwrap()
}

fn records(server: &Server, file: &str) -> Vec<Value> {
    serde_json::from_str(&server.cli_ok(&[
        "records",
        "--tenant",
        "acme",
        "--type",
        &format!("oneroster.{file}"),
        "--format",
        "json",
    ]))
    .unwrap()
}

fn status_of(records: &[Value], id: &str) -> String {
    records
        .iter()
        .find(|r| r["sourcedId"] == id)
        .map_or("missing".into(), |r| r["status"].as_str().unwrap().to_owned())
}

fn count(v: &Value, k: &str) -> u64 {
    v["counts"][k].as_u64().unwrap()
}

fn errors_text(v: &Value) -> String {
    v["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    format!("{} {} {} {} {}\n", e["column"], e["line"], e["code"], e["reason"], e["value"])
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_1_2_bulk_package_loads_every_file_in_one_import_and_a_delta_changes_only_what_it_names() {
    let server = setup();
    let d = District::new();
    let v = import(&server, &d.zip());
    assert_eq!(v["status"], "complete", "{v}\n{}", errors_text(&v));
    assert_eq!(v["type"], "oneroster");
    // 3 orgs, 3 sessions, 2 courses, 4 classes, 7 users, 7 roles, 28 enrollments.
    assert_eq!((count(&v, "rows"), count(&v, "added")), (54, 54), "{v}");
    assert!(v["message"].as_str().unwrap().contains("users: 7 added"), "{v}");
    let users = records(&server, "users");
    assert_eq!(users.len(), 7);
    let tess = users.iter().find(|u| u["sourcedId"] == "t1").unwrap();
    assert_eq!((tess["givenName"].as_str(), tess["status"].as_str()), (Some("Tess"), Some("active")));
    assert_eq!(records(&server, "enrollments").len(), 28);

    // The same package again changes nothing.
    let v = import(&server, &d.zip());
    assert_eq!((count(&v, "unchanged"), count(&v, "added"), count(&v, "updated")), (54, 0, 0), "{v}");

    // A delta: one user renamed, one enrollment dropped, one new class.
    let mut users = USERS_1_2.to_owned();
    users.push_str("st1,active,2026-11-20T10:00:00.000Z,true,st1,,Stuart,Dent,,,,,,,,,,,,,s1,\n");
    let mut enrollments = ENROLLMENTS.to_owned();
    enrollments.push_str("e-alg-f-st2,tobedeleted,2026-11-20T10:00:00Z,alg-f,s1,st2,student,,,\n");
    let mut classes = CLASSES.to_owned();
    classes.push_str("chem-s,active,2026-11-20T10:00:00Z,Chemistry,10,bio,CHEM,scheduled,,s1,spring,,,2\n");
    let m = manifest("1.2", &[("users", "delta"), ("enrollments", "delta"), ("classes", "delta")]);
    let delta = zip(&[
        ("manifest.csv", m.as_bytes()),
        ("users.csv", users.as_bytes()),
        ("enrollments.csv", enrollments.as_bytes()),
        ("classes.csv", classes.as_bytes()),
    ]);
    let v = import(&server, &delta);
    assert_eq!(v["status"], "complete", "{v}\n{}", errors_text(&v));
    assert_eq!(
        (count(&v, "rows"), count(&v, "added"), count(&v, "updated"), count(&v, "deleted")),
        (3, 1, 1, 1),
        "{v}"
    );
    let users = records(&server, "users");
    assert_eq!(users.iter().find(|u| u["sourcedId"] == "st1").unwrap()["givenName"], "Stuart");
    let enrollments = records(&server, "enrollments");
    assert_eq!(enrollments.len(), 28, "a deleted record is kept, marked tobedeleted");
    assert_eq!(status_of(&enrollments, "e-alg-f-st2"), "tobedeleted");
    assert_eq!(status_of(&records(&server, "classes"), "chem-s"), "active");
}

#[test]
fn a_1_1_package_loads_and_its_version_decides_the_headers() {
    let server = setup();
    let mut users = USERS_1_1.to_owned();
    users.push_str("u1,,,true,s1,teacher,tess,,Tess,Teacher,,,tess@example.org,,,,,\n");
    users.push_str("u2,,,true,s1,ext:counselor,carl,,Carl,Couns,,,,,,,,\n");
    let orgs = format!("{ORGS}s1,,,Lincoln High,school,LHS,\n");
    let m = manifest("1.1", &[("users", "bulk"), ("orgs", "bulk")]);
    let pkg = zip(&[
        ("manifest.csv", m.as_bytes()),
        ("orgs.csv", orgs.as_bytes()),
        ("users.csv", users.as_bytes()),
    ]);
    let v = import(&server, &pkg);
    assert_eq!(v["status"], "complete", "{v}\n{}", errors_text(&v));
    assert_eq!(records(&server, "users").len(), 2);

    // A 1.1 delta: Carl leaves, Tess changes role; orgs are absent, so her org resolves
    // against the tenant's records.
    let mut delta_users = USERS_1_1.to_owned();
    delta_users.push_str(
        "u1,active,2026-11-20T08:00:00Z,true,s1,administrator,tess,,Tess,Teacher,,,tess@example.org,,,,,\n",
    );
    delta_users
        .push_str("u2,tobedeleted,2026-11-20T08:00:00Z,true,s1,ext:counselor,carl,,Carl,Couns,,,,,,,,\n");
    let dm = manifest("1.1", &[("users", "delta")]);
    let v = import(&server, &zip(&[("manifest.csv", dm.as_bytes()), ("users.csv", delta_users.as_bytes())]));
    assert_eq!(v["status"], "complete", "{v}\n{}", errors_text(&v));
    assert_eq!((count(&v, "updated"), count(&v, "deleted")), (1, 1), "{v}");
    let users = records(&server, "users");
    assert_eq!(status_of(&users, "u2"), "tobedeleted");
    assert_eq!(users.iter().find(|u| u["sourcedId"] == "u1").unwrap()["role"], "administrator");

    // A 1.2 users.csv in a package that says 1.1: the header is wrong for the version.
    let d = District::new();
    let pkg = zip(&[
        ("manifest.csv", m.as_bytes()),
        ("orgs.csv", orgs.as_bytes()),
        ("users.csv", d.users.as_bytes()),
    ]);
    let v = import(&server, &pkg);
    assert_eq!(v["status"], "failed", "{v}");
    assert!(errors_text(&v).contains("OneRoster 1.1 requires \\\"orgSourcedIds\\\""), "{}", errors_text(&v));
}

/// Imports a hostile package; it must fail (or lose the bad rows) and change nothing.
fn rejected(server: &Server, pkg: &[u8]) -> (Value, String) {
    let before = records(server, "users").len();
    let v = import(server, pkg);
    assert_eq!(records(server, "users").len(), before, "a rejected package changes nothing");
    let text = format!("{}\n{}", v["message"], errors_text(&v));
    (v, text)
}

#[test]
fn every_package_rule_has_a_hostile_fixture_that_is_refused_with_a_clear_error() {
    let server = setup();
    let d = District::new();
    let bulk = ["academicSessions", "classes", "courses", "enrollments", "orgs", "roles", "users"]
        .map(|f| (f, "bulk"));
    let m = manifest("1.2", &bulk);
    let with = |replace: &str, contents: &[u8]| -> Vec<u8> {
        let mut entries: Vec<(&str, Vec<u8>)> = vec![
            ("manifest.csv", m.as_bytes().to_vec()),
            ("orgs.csv", d.orgs.as_bytes().to_vec()),
            ("academicSessions.csv", d.sessions.as_bytes().to_vec()),
            ("courses.csv", d.courses.as_bytes().to_vec()),
            ("classes.csv", d.classes.as_bytes().to_vec()),
            ("users.csv", d.users.as_bytes().to_vec()),
            ("roles.csv", d.roles.as_bytes().to_vec()),
            ("enrollments.csv", d.enrollments.as_bytes().to_vec()),
        ];
        for e in entries.iter_mut().filter(|(n, _)| *n == replace) {
            e.1 = contents.to_vec();
        }
        let refs: Vec<(&str, &[u8])> = entries.iter().map(|(n, c)| (*n, c.as_slice())).collect();
        zip(&refs)
    };
    let failed = |pkg: Vec<u8>, needle: &str| {
        let (v, text) = rejected(&server, &pkg);
        assert_eq!(v["status"], "failed", "{text}");
        assert!(text.contains(needle), "expected {needle:?} in: {text}");
    };

    // Wrong header order.
    let swapped = d.users.replacen("givenName,familyName", "familyName,givenName", 1);
    failed(
        with("users.csv", swapped.as_bytes()),
        "column 7 is \\\"familyName\\\", but OneRoster 1.2 requires \\\"givenName\\\"",
    );
    // Missing manifest.
    let no_manifest = zip(&[("users.csv", d.users.as_bytes())]);
    failed(no_manifest, "no manifest.csv");
    // A file the manifest does not mention, and one it names but the zip lacks.
    let absent = manifest("1.2", &bulk[..6]);
    failed(with("manifest.csv", absent.as_bytes()), "file.users,absent");
    // Zip slip.
    failed(zip(&[("manifest.csv", m.as_bytes()), ("../users.csv", d.users.as_bytes())]), "path_in_name");
    failed(
        zip(&[("manifest.csv", m.as_bytes()), ("data/users.csv", d.users.as_bytes())]),
        "at the root of the zip",
    );
    // Nested archive, by name and disguised as a CSV file.
    let inner = d.zip();
    failed(zip(&[("manifest.csv", m.as_bytes()), ("users.zip", &inner)]), "nested archives are not unpacked");
    failed(with("users.csv", &inner), "it is an archive, not a CSV file");
    // Duplicate file.
    failed(
        zip(&[
            ("manifest.csv", m.as_bytes()),
            ("users.csv", d.users.as_bytes()),
            ("Users.csv", d.users.as_bytes()),
        ]),
        "at most one of each file",
    );
    // Zip bomb: 64 MiB of zeros deflate to about 64 KiB.
    let bomb = vec![0u8; 64 << 20];
    failed(zip(&[("manifest.csv", m.as_bytes()), ("users.csv", &bomb)]), "looks like a zip bomb");
    // Not UTF-8.
    let latin1: Vec<u8> = d.users.replace("Tess", "T\u{e9}ss").chars().map(|c| c as u32 as u8).collect();
    failed(with("users.csv", &latin1), "must be UTF-8");
    // Not a zip at all.
    failed(b"sourcedId,name\n1,x\n".to_vec(), "not a readable zip file");

    // Row rules: the bad rows are rejected with file, line and column; the rest loads.
    let mut users = d.users.clone();
    users.push_str("bad-enum,,,maybe,x,,A,B,,,,,,,,,,,,,s1,\n");
    users.push_str("bad id!,,,true,y,,A,B,,,,,,,,,,,,,s1,\n");
    users.push_str("dangling,,,true,z,,A,B,,,,,,,,,,,,,nowhere,\n");
    users.push_str("with-status,tobedeleted,2026-01-01T00:00:00Z,true,w,,A,B,,,,,,,,,,,,,s1,\n");
    // As many SIS exports write bulk files: `active` and a date, ignored when lenient.
    users.push_str("filled-in,active,2026-01-01T00:00:00Z,true,f,,A,B,,,,,,,,,,,,,s1,\n");
    let v = import(&server, &with("users.csv", users.as_bytes()));
    let text = errors_text(&v);
    assert_eq!(v["status"], "incomplete", "{v}\n{text}");
    assert_eq!(count(&v, "rejected"), 4, "{text}");
    assert!(text.contains("\"users.csv:enabledUser\" 9 \"not_boolean\""), "{text}");
    assert!(text.contains("\"users.csv:sourcedId\" 10 \"bad_id\""), "{text}");
    assert!(text.contains("\"users.csv:primaryOrgSourcedId\" 11 \"unknown_reference\""), "{text}");
    assert!(text.contains("\"users.csv:status\" 12 \"not_blank_in_bulk\""), "{text}");
    let warnings = v["warnings"].to_string();
    assert!(warnings.contains("users.csv:status: `active` in a bulk file ignored"), "{warnings}");
    assert_eq!(records(&server, "users").len(), 8);
    // An enumeration out of range, and a dangling reference across files.
    let roles = d.roles.replacen(",teacher,", ",headmaster,", 1);
    let enrollments = format!("{}e-x,,,no-such-class,s1,st1,student,,,\n", d.enrollments);
    let mut pkg_roles = with("roles.csv", roles.as_bytes());
    let v = import(&server, &pkg_roles);
    assert!(errors_text(&v).contains("\"roles.csv:role\" 2 \"not_in_list\""), "{}", errors_text(&v));
    pkg_roles = with("enrollments.csv", enrollments.as_bytes());
    let v = import(&server, &pkg_roles);
    assert!(
        errors_text(&v).contains("\"enrollments.csv:classSourcedId\" 30 \"unknown_reference\""),
        "{}",
        errors_text(&v)
    );
    // Delta rows need status and dateLastModified.
    let delta_m = manifest("1.2", &[("users", "delta")]);
    let mut users = USERS_1_2.to_owned();
    users.push_str("st1,,,true,st1,,Stu,Dent,,,,,,,,,,,,,s1,\n");
    let v = import(&server, &zip(&[("manifest.csv", delta_m.as_bytes()), ("users.csv", users.as_bytes())]));
    assert_eq!(v["status"], "failed", "the only row is rejected");
    assert!(errors_text(&v).contains("status is required in a delta file"), "{}", errors_text(&v));
}

/// Between school years the SIS sends next year's snapshot: in a blackout a bulk file marks
/// nothing it leaves out, whatever the safeguard.
#[test]
fn in_a_blackout_a_bulk_package_marks_nothing_it_leaves_out() {
    let server = setup();
    let v = import(&server, &District::new().zip());
    assert_eq!(v["status"], "complete", "{v}");
    server.cli_ok(&["tenant", "set", "acme", "blackout=2000-01-01..2099-12-31"]);
    let v = import(&server, &District::new().without_fall().zip());
    assert_eq!(v["status"], "complete", "not held, and nothing marked: {v}");
    assert_eq!(v["counts"]["deleted"], 0, "{v}");
    let warnings = v["warnings"].to_string();
    assert!(
        warnings.contains("classes.csv: 2 records no longer listed were not marked tobedeleted")
            && warnings.contains("2000-01-01..2099-12-31"),
        "{warnings}"
    );
    assert_eq!(status_of(&records(&server, "classes"), "alg-f"), "active");
    // Once the blackout is over, the same snapshot marks them (behind the safeguard).
    server.cli_ok(&["tenant", "set", "acme", "blackout="]);
    let v = import(&server, &District::new().without_fall().zip());
    assert_eq!(v["status"], "held", "{v}");
}

#[test]
fn a_term_rollover_is_held_by_the_safeguard_and_applied_on_approval() {
    let server = setup();
    let v = import(&server, &District::new().zip());
    assert_eq!(v["status"], "complete", "{v}");
    // Spring: the fall classes and their enrollments are gone from the snapshot.
    let v = import(&server, &District::new().without_fall().zip());
    assert_eq!(v["status"], "held", "{v}");
    let message = v["message"].as_str().unwrap();
    assert!(message.contains("would delete 2 of 4 oneroster.classes records (50.0%)"), "{message}");
    assert!(message.contains("sluice approve"), "{message}");
    assert_eq!(status_of(&records(&server, "classes"), "alg-f"), "active", "held: nothing changed yet");

    // A dry run of the same package says the same and changes nothing.
    let path = write_file(server.dir.path(), "spring.zip", &District::new().without_fall().zip());
    let out = server.cli(&[
        "import",
        "--tenant",
        "acme",
        "--type",
        "oneroster",
        "--dry-run",
        path.to_str().unwrap(),
    ]);
    assert!(output_text(&out).contains("(would be held)"), "{}", output_text(&out));

    server.cli_ok(&["approve", &v["id"].to_string()]);
    let classes = records(&server, "classes");
    assert_eq!(status_of(&classes, "alg-f"), "tobedeleted");
    assert_eq!(status_of(&classes, "alg-s"), "active");
    let enrollments = records(&server, "enrollments");
    assert_eq!(enrollments.iter().filter(|e| e["status"] == "tobedeleted").count(), 14);

    // Next year the fall classes come back: reactivated, not duplicated.
    let v = import(&server, &District::new().zip());
    assert_eq!(v["status"], "held", "14 of 14 active enrollments changing is over the 75% change limit: {v}");
    server.cli_ok(&["tenant", "set", "acme", "safeguard.oneroster.changed=100"]);
    let v = import(&server, &District::new().zip());
    assert_eq!(v["status"], "complete", "{v}");
    assert_eq!(status_of(&records(&server, "classes"), "alg-f"), "active");
    assert_eq!(records(&server, "classes").len(), 4);
}

#[test]
fn a_package_uploaded_over_sftp_is_imported_and_removed() {
    if !have("sftp", "openssh-client") {
        return;
    }
    let server = setup();
    let key = server.key("acme");
    let pkg = write_file(server.dir.path(), "district.zip", &District::new().zip());
    let batch = format!("put {} /oneroster/district-2026.zip\n", pkg.display());
    let out = crate::openssh::sftp_batch(&server, &key, &batch, &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while records(&server, "users").len() < 7 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(records(&server, "users").len(), 7);
    assert!(!server.tenant_dir("acme").join("oneroster/district-2026.zip").exists());
}

/// A zip written byte by byte (stored entries), for layouts no zip library writes: entries
/// that share their data, or a compression method other than deflate.
fn raw_zip(entries: &[(&str, &[u8], u16)], shared: bool) -> Vec<u8> {
    let entries: Vec<CraftedEntry> =
        entries.iter().map(|(name, data, method)| CraftedEntry::new(name, data, *method)).collect();
    crafted_zip(&entries, shared, None)
}

/// One entry of [`crafted_zip`]: the name its local header gives may differ from the
/// central directory's.
#[derive(Clone)]
struct CraftedEntry<'a> {
    name: &'a str,
    local_name: &'a str,
    data: &'a [u8],
    method: u16,
}

impl<'a> CraftedEntry<'a> {
    fn new(name: &'a str, data: &'a [u8], method: u16) -> Self {
        Self { name, local_name: name, data, method }
    }
}

/// A zip written byte by byte. `shared`: every entry after the first points at the first
/// one's bytes. `eocd_count`: the number of entries the end record claims (else the truth).
fn crafted_zip(entries: &[CraftedEntry<'_>], shared: bool, eocd_count: Option<u16>) -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
    let mut out = Vec::new();
    let mut central = Vec::new();
    let mut offsets = Vec::new();
    for (i, CraftedEntry { name, local_name, data, method }) in entries.iter().enumerate() {
        let offset = if shared && i > 0 { offsets[0] } else { out.len() as u32 };
        offsets.push(offset);
        let crc = crc32(data);
        if !(shared && i > 0) {
            out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
            out.extend_from_slice(&[20, 0, 0, 0]);
            out.extend_from_slice(&method.to_le_bytes());
            out.extend_from_slice(&[0, 0, 0, 0]);
            out.extend_from_slice(&crc.to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(local_name.len() as u16).to_le_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(local_name.as_bytes());
            out.extend_from_slice(data);
        }
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&[20, 0, 20, 0, 0, 0]);
        central.extend_from_slice(&method.to_le_bytes());
        central.extend_from_slice(&[0, 0, 0, 0]);
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&(data.len() as u32).to_le_bytes());
        central.extend_from_slice(&(data.len() as u32).to_le_bytes());
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0; 12]);
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    let count = eocd_count.unwrap_or(entries.len() as u16);
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

/// The zip library keeps one entry per name, so a zip holding `users.csv` twice was read as
/// if it held only the second copy. The central directory is read by sluice itself: a
/// duplicate, an end record that hides entries, and local headers that name another file
/// than the directory are all refused, naming the entry.
#[test]
fn a_zip_whose_directory_says_two_things_is_refused_naming_the_entry() {
    let server = setup();
    let d = District::new();
    let files = ["academicSessions", "classes", "courses", "enrollments", "orgs", "roles", "users"];
    let m = manifest("1.2", &files.map(|f| (f, "bulk")));
    let mallory = format!("{}mallory,,,true,mallory,,Mal,Lory,,,,,,,,,,,,,s1,\n", d.users);
    let package = [
        ("manifest.csv", m.as_bytes()),
        ("orgs.csv", d.orgs.as_bytes()),
        ("academicSessions.csv", d.sessions.as_bytes()),
        ("courses.csv", d.courses.as_bytes()),
        ("classes.csv", d.classes.as_bytes()),
        ("users.csv", d.users.as_bytes()),
        ("roles.csv", d.roles.as_bytes()),
        ("enrollments.csv", d.enrollments.as_bytes()),
    ];
    let entries: Vec<CraftedEntry<'_>> =
        package.iter().map(|(name, data)| CraftedEntry::new(name, data, 0)).collect();
    let with = |extra: CraftedEntry<'static>| {
        let mut v = entries.clone();
        v.push(extra);
        v
    };
    // The byte-written package, as is, imports (so what follows is refused for its layout).
    let honest = crafted_zip(&entries, false, None);
    let check = import(&server, &honest);
    assert_eq!(check["status"], "complete", "{check}\n{}", errors_text(&check));
    let settled = records(&server, "users").len();
    assert_eq!(settled, 7);

    // users.csv twice, the second copy with one more user: two local headers, two central
    // records of exactly the same name.
    let mut twice = entries.clone();
    twice.push(CraftedEntry::new("users.csv", mallory.as_bytes(), 0));
    let twice = crafted_zip(&twice, false, None);
    let (v, text) = rejected(&server, &twice);
    assert_eq!(v["status"], "failed", "{text}");
    assert!(text.contains("duplicate_file"), "{text}");
    assert!(text.contains("users.csv") && text.contains("appears twice"), "{text}");
    assert_eq!(status_of(&records(&server, "users"), "mallory"), "missing");

    // An end record that counts one entry fewer than the directory holds: the last one
    // (a second users.csv under another name would do the same) is hidden from the library.
    let hidden = crafted_zip(&with(CraftedEntry::new("demographics.csv", b"x", 0)), false, Some(8));
    let (v, text) = rejected(&server, &hidden);
    assert_eq!(v["status"], "failed", "{text}");
    assert!(text.contains("entry_count_mismatch"), "{text}");
    assert!(text.contains("end record lists 8 entries") && text.contains("holds 9"), "{text}");

    // A local header naming another file than its central directory record.
    let mut renamed = entries.clone();
    renamed[5].local_name = "evil.csv";
    let (v, text) = rejected(&server, &crafted_zip(&renamed, false, None));
    assert_eq!(v["status"], "failed", "{text}");
    assert!(text.contains("inconsistent_names"), "{text}");
    assert!(text.contains("users.csv") && text.contains("evil.csv"), "{text}");
    assert_eq!(records(&server, "users").len(), settled);
}

#[test]
fn crafted_zips_are_refused_before_anything_is_inflated() {
    let server = setup();
    let d = District::new();
    let m = manifest("1.2", &[("users", "bulk"), ("roles", "bulk"), ("orgs", "bulk")]);
    // The byte-written zip is read like any other...
    let plain = raw_zip(&[("manifest.csv", m.as_bytes(), 0), ("users.csv", d.users.as_bytes(), 0)], false);
    let (v, text) = rejected(&server, &plain);
    assert!(text.contains("the zip has no roles.csv"), "{v}\n{text}");
    // ...but entries that share their bytes are refused, whatever their sizes.
    let shared = raw_zip(
        &[
            ("users.csv", d.users.as_bytes(), 0),
            ("roles.csv", d.users.as_bytes(), 0),
            ("orgs.csv", d.users.as_bytes(), 0),
        ],
        true,
    );
    let (v, text) = rejected(&server, &shared);
    assert_eq!(v["status"], "failed");
    assert!(text.contains("overlapping_entries"), "{text}");
    // A compression method sluice does not inflate is named, with what to do.
    let bzip2 = raw_zip(&[("manifest.csv", m.as_bytes(), 12)], false);
    let (_, text) = rejected(&server, &bzip2);
    assert!(text.contains("re-zip it"), "{text}");
}

#[test]
fn deletions_need_no_references_and_an_unreadable_row_keeps_its_record() {
    let server = setup();
    let d = District::new();
    assert_eq!(import(&server, &d.zip())["status"], "complete");
    // A delta deletes an enrollment of a class the same delta deletes, and one whose user is
    // unknown: both are fine, they are deletions.
    let mut classes = CLASSES.to_owned();
    classes.push_str(
        "alg-f,tobedeleted,2026-12-01T00:00:00Z,alg-f class,09,alg,alg-f,scheduled,Room 1,s1,fall,,,1\n",
    );
    let mut enrollments = ENROLLMENTS.to_owned();
    enrollments.push_str("e-alg-f-st1,tobedeleted,2026-12-01T00:00:00Z,alg-f,s1,st1,student,,,\n");
    enrollments.push_str("e-ghost,tobedeleted,2026-12-01T00:00:00Z,alg-f,s1,nobody,student,,,\n");
    // An active enrollment may not name the class this very package deletes.
    enrollments.push_str("e-new,active,2026-12-01T00:00:00Z,alg-f,s1,st2,student,,,\n");
    let m = manifest("1.2", &[("classes", "delta"), ("enrollments", "delta")]);
    let v = import(
        &server,
        &zip(&[
            ("manifest.csv", m.as_bytes()),
            ("classes.csv", classes.as_bytes()),
            ("enrollments.csv", enrollments.as_bytes()),
        ]),
    );
    // The class's six other enrollments would be left naming it: held for a decision
    // (`on_delete = "hold"`, the default), then approved.
    assert_eq!(v["status"], "held", "{v}");
    let message = v["message"].as_str().unwrap();
    assert!(
        message.contains("6 enrollments.csv records (by classSourcedId) refer to classes.csv records"),
        "{message}"
    );
    let id = v["id"].to_string();
    server.cli_ok(&["approve", &id]);
    let v: Value =
        serde_json::from_str(&server.cli_ok(&["import", "show", &id, "--errors", "--json"])).unwrap();
    let text = errors_text(&v);
    assert_eq!(v["status"], "incomplete", "{v}\n{text}");
    assert_eq!(count(&v, "rejected"), 1, "{text}");
    assert!(text.contains("\"enrollments.csv:classSourcedId\" 4 \"unknown_reference\""), "{text}");
    assert_eq!(status_of(&records(&server, "enrollments"), "e-alg-f-st1"), "tobedeleted");

    // A bulk row with a stray comma cannot be read; its user stays active, not tobedeleted.
    let users = d.users.replacen("st1,,,true,st1,,Stu1,Dent", "st1,,,true,st1,,Stu1,Dent, Jr.", 1);
    let pkg = {
        let files = ["academicSessions", "classes", "courses", "enrollments", "orgs", "roles", "users"];
        let m = manifest("1.2", &files.map(|f| (f, "bulk")));
        zip(&[
            ("manifest.csv", m.as_bytes()),
            ("orgs.csv", d.orgs.as_bytes()),
            ("academicSessions.csv", d.sessions.as_bytes()),
            ("courses.csv", d.courses.as_bytes()),
            ("classes.csv", d.classes.as_bytes()),
            ("users.csv", users.as_bytes()),
            ("roles.csv", d.roles.as_bytes()),
            ("enrollments.csv", d.enrollments.as_bytes()),
        ])
    };
    let v = import(&server, &pkg);
    assert!(errors_text(&v).contains("field_count"), "{}", errors_text(&v));
    assert_eq!(status_of(&records(&server, "users"), "st1"), "active");
}

#[test]
fn validate_checks_a_package_offline() {
    let server = Server::start();
    let good = write_file(server.dir.path(), "good.zip", &District::new().zip());
    let out = server.cli(&["validate", "--type", "oneroster", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(output_text(&out).contains("OK, 54 rows"), "{}", output_text(&out));
    let d = District::new();
    let m = manifest("1.2", &[("users", "bulk"), ("orgs", "bulk")]);
    let users = d.users.replacen("t1,,,true", "t1,,,yes", 1);
    let bad = write_file(
        server.dir.path(),
        "bad.zip",
        &zip(&[
            ("manifest.csv", m.as_bytes()),
            ("orgs.csv", d.orgs.as_bytes()),
            ("users.csv", users.as_bytes()),
        ]),
    );
    let out = server.cli(&["validate", "--type", "oneroster", bad.to_str().unwrap()]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("bad.zip:2: users.csv:enabledUser: not_boolean"), "{text}");
}

#[test]
fn a_refused_package_with_large_files_after_the_refusal_ends_promptly() {
    let server = setup();
    let d = District::new();
    let bad_orgs = d.orgs.replacen("name,type", "type,name", 1);
    let mut users = USERS_1_2.to_owned();
    for i in 0..6000 {
        users.push_str(&format!("u{i},,,true,u{i},,G{i},F{i},,,,,,,,,,,,,s1,\n"));
    }
    let m = manifest("1.2", &[("orgs", "bulk"), ("users", "bulk")]);
    let pkg = zip(&[
        ("manifest.csv", m.as_bytes()),
        ("orgs.csv", bad_orgs.as_bytes()),
        ("users.csv", users.as_bytes()),
    ]);
    let path = write_file(server.dir.path(), "big.zip", &pkg);
    let mut cmd = server.command();
    cmd.args(["import", "--tenant", "acme", "--type", "oneroster"]).arg(&path);
    let out = run_with_timeout(&mut cmd, std::time::Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(output_text(&out).contains("orgs.csv"), "{}", output_text(&out));
}

/// A users.csv that turns from UTF-8 to Latin-1 at line 2,500: refused, and the error names
/// line 2,500 (where the bad byte is), not the last row read before it.
#[test]
fn a_read_error_deep_in_a_file_names_its_own_line() {
    let server = setup();
    let d = District::new();
    let mut users = USERS_1_2.as_bytes().to_vec();
    for i in 2..2500 {
        users.extend_from_slice(format!("u{i},,,true,u{i},,Zoë{i},Núñez,,,,,,,,,,,,,s1,\n").as_bytes());
    }
    users.extend_from_slice(b"u2500,,,true,u2500,,Jos\xe9,Garc\xeda,,,,,,,,,,,,,s1,\n");
    let files = ["academicSessions", "classes", "courses", "enrollments", "orgs", "roles", "users"];
    let m = manifest("1.2", &files.map(|f| (f, "bulk")));
    let pkg = zip(&[
        ("manifest.csv", m.as_bytes()),
        ("orgs.csv", d.orgs.as_bytes()),
        ("academicSessions.csv", d.sessions.as_bytes()),
        ("courses.csv", d.courses.as_bytes()),
        ("classes.csv", d.classes.as_bytes()),
        ("users.csv", &users),
        ("roles.csv", d.roles.as_bytes()),
        ("enrollments.csv", d.enrollments.as_bytes()),
    ]);
    let (v, text) = rejected(&server, &pkg);
    assert_eq!(v["status"], "failed", "{text}");
    let unreadable: Vec<&Value> =
        v["errors"].as_array().unwrap().iter().filter(|e| e["code"] == "unreadable").collect();
    assert_eq!(unreadable.len(), 1, "{text}");
    assert_eq!(unreadable[0]["line"], 2500, "{text}");
    assert!(unreadable[0]["reason"].as_str().unwrap().contains("invalid UTF-8"), "{text}");
}

/// A SIS's users.csv may carry students' passwords (single sign-on): they are read and
/// checked like any column but never stored, so no record, API answer or export shows them.
#[test]
fn user_passwords_in_a_package_are_never_stored() {
    let server = setup();
    let mut d = District::new();
    d.users.push_str("p1,,,true,p1,,Pat,Doe,,,,,,,,hunter2-secret,,,,,s1,\n");
    d.roles.push_str("r-p1,,,p1,primary,student,,,s1,\n");
    let done = import(&server, &d.zip());
    assert_eq!(done["status"], "complete", "{done}");
    let users = records(&server, "users");
    let pat = users.iter().find(|u| u["sourcedId"] == "p1").unwrap_or_else(|| panic!("{users:?}"));
    assert!(pat.get("password").is_none(), "{pat}");
    let all =
        server.cli_ok(&["records", "--tenant", "acme", "--type", "oneroster.users", "--format", "json"]);
    assert!(!all.contains("hunter2-secret"), "{all}");
    let needle = b"hunter2-secret";
    let stored = server.stored_bytes();
    assert!(!stored.windows(needle.len()).any(|w| w == needle), "the password is not in the database");
}
