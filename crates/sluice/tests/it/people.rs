//! People with several roles, matched as ClassTag's guardian sync describes, and the
//! relationships between records.

use crate::common::*;
use serde_json::Value;

fn import(server: &Server, name: &str, text: &str) -> Value {
    let path = write_file(server.dir.path(), name, text.as_bytes());
    server.cli(&["import", "--tenant", "acme", path.to_str().unwrap()]);
    let list: Value =
        serde_json::from_str(&server.cli_ok(&["imports", "--tenant", "acme", "--json", "--limit", "1"]))
            .unwrap();
    list[0].clone()
}

fn people(server: &Server) -> Vec<Value> {
    serde_json::from_str(&server.cli_ok(&["people", "--tenant", "acme", "--json"])).unwrap()
}

fn person<'a>(people: &'a [Value], first: &str, last: &str) -> Vec<&'a Value> {
    people.iter().filter(|p| p["first_name"] == first && p["last_name"] == last).collect()
}

fn roles(p: &Value) -> Vec<String> {
    p["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", r["role"].as_str().unwrap(), r["key"].as_str().unwrap()))
        .collect()
}

#[test]
fn one_person_holds_several_roles_and_differing_contacts_make_separate_people() {
    let server = Server::start();
    server.importing_tenant("acme", "pw");
    // Two students share a name and have no email or phone: a name is no identity.
    let v = import(
        &server,
        "students.csv",
        "sisId,firstName,lastName\nst1,Kid,One\nst2,Kid,Two\nst3,Kid,Three\nst4,Kid,One\n",
    );
    assert!(v["warnings"].to_string().contains("line 5: Kid One is kept as a separate person"), "{v}");
    import(
        &server,
        "employees.csv",
        "employeeId,firstName,lastName,email,phone\nE1,Ann,Lee,ann@example.org,555-010-2000\nE2,Bob,Ray,bob@example.org,5550103000\n",
    );
    let v = import(
        &server,
        "guardians.csv",
        "guardianSisId,studentSisId,firstName,lastName,email,phone\n\
         G1,st1,Ann,Lee,Ann@Example.org,(555) 010-2000\n\
         G1,st2,Ann,Lee,ann@example.org,5550102000\n\
         ,st3,Cy,Doe,cy@example.org,\n\
         ,st1,Cy,Doe,cy@example.org,\n\
         G9,st3,Bob,Ray,bob@example.org,5550109999\n",
    );
    assert_eq!(v["status"], "complete", "{v}");
    let warnings = v["warnings"].to_string();
    assert!(warnings.contains("2 rows have no guardianSisId (lines 4, 5)"), "{warnings}");
    assert!(
        warnings.contains("Bob Ray, bob@example.org, 5550109999 is kept as a separate person"),
        "{warnings}"
    );

    let all = people(&server);
    // Ann: staff and guardian of two students, one person (same name, email and phone).
    let ann = person(&all, "Ann", "Lee");
    assert_eq!(ann.len(), 1, "{all:?}");
    assert_eq!(roles(ann[0]), ["guardian st1+G1", "guardian st2+G1", "staff E1"]);
    // Cy has no guardianSisId: matched by contact details, one person for both students.
    let cy = person(&all, "Cy", "Doe");
    assert_eq!(cy.len(), 1);
    assert_eq!(cy[0]["roles"].as_array().unwrap().len(), 2);
    // Bob's guardian phone differs from his staff record: two people.
    assert_eq!(person(&all, "Bob", "Ray").len(), 2);
    assert_eq!(person(&all, "Kid", "One").len(), 2);

    // The guardians of a student, through the relationship.
    let st1 = server.cli_ok(&["records", "--tenant", "acme", "--type", "guardians", "--student", "st1"]);
    assert_eq!(st1.lines().count(), 3, "header, Ann and Cy: {st1}");
    assert!(st1.contains("G1,st1,Ann") && st1.contains(",st1,Cy,Doe"), "{st1}");
    let out = server.cli(&["records", "--tenant", "acme", "--type", "employees", "--student", "st1"]);
    assert!(output_text(&out).contains("do not name a student"), "{}", output_text(&out));

    // Ann's email changes: her guardianSisId keeps her the same person (with both roles).
    // Cy's phone appears: without an id, that is a new person; the old one goes with its rows.
    // (Cy's two old rows are deleted: 40% of the guardians, over the 10% safeguard.)
    server.cli_ok(&["tenant", "set", "acme", "safeguard.guardians.deleted=50"]);
    let v = import(
        &server,
        "guardians.csv",
        "guardianSisId,studentSisId,firstName,lastName,email,phone\n\
         G1,st1,Ann,Lee,ann.lee@example.org,5550102000\n\
         G1,st2,Ann,Lee,ann.lee@example.org,5550102000\n\
         ,st3,Cy,Doe,cy@example.org,5550104000\n\
         ,st1,Cy,Doe,cy@example.org,5550104000\n\
         G9,st3,Bob,Ray,bob@example.org,5550109999\n",
    );
    assert_eq!((v["status"].as_str(), v["counts"]["deleted"].as_u64()), (Some("complete"), Some(2)), "{v}");
    let again = people(&server);
    let ann_now = person(&again, "Ann", "Lee");
    assert_eq!(ann_now.len(), 1);
    assert_eq!(ann_now[0]["id"], ann[0]["id"], "the same person");
    assert_eq!(ann_now[0]["email"], "ann.lee@example.org");
    let cy_now = person(&again, "Cy", "Doe");
    assert_eq!(cy_now.len(), 1, "{again:?}");
    assert_ne!(cy_now[0]["id"], cy[0]["id"], "new contact details without an id: a new guardian");
}

#[test]
fn oneroster_enrollments_of_a_student_and_of_a_class() {
    let server = Server::start();
    server.importing_tenant("acme", "pw");
    server.cli_ok(&["tenant", "set", "acme", "types=oneroster"]);
    let path = write_file(server.dir.path(), "roster.zip", &crate::oneroster::District::new().zip());
    server.cli_ok(&["import", "--tenant", "acme", "--type", "oneroster", path.to_str().unwrap()]);
    let of_student: Vec<Value> = serde_json::from_str(&server.cli_ok(&[
        "records",
        "--tenant",
        "acme",
        "--type",
        "oneroster.enrollments",
        "--student",
        "st3",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(of_student.len(), 4, "st3 is in all four classes");
    assert!(of_student.iter().all(|e| e["userSourcedId"] == "st3"));
    let of_class = server.cli_ok(&[
        "records",
        "--tenant",
        "acme",
        "--type",
        "oneroster.enrollments",
        "--class",
        "bio-s",
    ]);
    assert_eq!(of_class.lines().count(), 8, "header, a teacher and six students: {of_class}");
}

#[test]
fn a_small_import_among_many_people_warns_only_about_real_namesakes() {
    let server = Server::start();
    server.importing_tenant("acme", "pw");
    let mut students = String::from("sisId,firstName,lastName,email\n");
    for i in 0..20 {
        students.push_str(&format!("st{i},Kid{i},Smith,kid{i}@example.org\n"));
    }
    import(&server, "students.csv", &students);
    // One row among twenty people: looked up in the database, not held in memory.
    let v = import(
        &server,
        "employees.csv",
        "employeeId,firstName,lastName,email\nE1,Una,Known,una@example.org\n",
    );
    assert_eq!(v["warnings"].as_array().unwrap().len(), 0, "a new person is not their own namesake: {v}");
    let v = import(
        &server,
        "employees.csv",
        "employeeId,firstName,lastName,email\nE1,Una,Known,una@example.org\nE2,Kid3,Smith,teacher@example.org\n",
    );
    let warnings = v["warnings"].to_string();
    assert!(warnings.contains("Kid3 Smith, teacher@example.org is kept as a separate person"), "{warnings}");
    assert!(warnings.contains("(Kid3 Smith, kid3@example.org)"), "{warnings}");
}
