//! Clever-style SIS CSVs: the six files of a full snapshot, imported in one sync.

use crate::common::*;
use serde_json::Value;

#[test]
fn a_clever_snapshot_syncs_in_reference_order_with_contacts_and_co_teachers() {
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    server.cli_ok(&["tenant", "set", "acme", "types=clever-schools", "trigger=manual"]);
    let dir = server.tenant_dir("acme").join("clever");
    let put = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    // Column order is free; header names are exact.
    put(
        "schools.csv",
        "School_name,School_id,School_number,Low_grade,High_grade\nLincoln,s1,101,9,12\nAdams,s2,102,Kindergarten,5\n",
    );
    // Written in the order a sync imports them (files of types that do not refer to each
    // other are taken in the order they came).
    put(
        "students.csv",
        "Student_id,School_id,First_name,Last_name,Grade,DOB,Contact_name,Contact_email,Contact_type\n\
         st1,s1,Ann,Lee,9,3/4/2011,Mary Lee,mary@example.org,Parent/Guardian\n\
         st1,s1,Ann,Lee,9,3/4/2011,John Lee,john@example.org,Emergency\n\
         st2,s1,Bob,Ray,10,2010-05-06,,,\n",
    );
    put(
        "teachers.csv",
        "School_id,Teacher_id,First_name,Last_name,Teacher_email\ns1,t1,Tess,Teacher,tess@example.org\ns2,t1,Tess,Teacher,tess@example.org\ns1,t2,Carl,Coteach,\n",
    );
    put(
        "sections.csv",
        "School_id,Section_id,Teacher_id,Teacher_2_id,Name,Term_start,Term_end\ns1,sec1,t1,t2,Algebra,08/15/2026,1/10/2027\ns1,sec2,t2,ghost,Biology,08/15/2026,01/10/2027\n",
    );
    put("enrollments.csv", "School_id,Section_id,Student_id\ns1,sec1,st1\ns1,sec1,st2\ns1,sec2,st1\n");
    let out = server.cli_ok(&["sync", "--tenant", "acme"]);
    let imports: Vec<Value> =
        serde_json::from_str(&server.cli_ok(&["imports", "--tenant", "acme", "--json"])).unwrap();
    let order: Vec<&str> = imports.iter().rev().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(
        order,
        ["clever-schools", "clever-students", "clever-teachers", "clever-sections", "clever-enrollments"],
        "{out}"
    );
    let by_type = |t: &str| imports.iter().find(|i| i["type"] == t).unwrap().clone();
    for t in ["clever-schools", "clever-students", "clever-teachers"] {
        assert_eq!(by_type(t)["status"], "complete", "{t}: {}", by_type(t));
    }
    // Two contact rows of one student and one teacher at two schools are separate records.
    assert_eq!(by_type("clever-students")["counts"]["added"], 3);
    assert_eq!(by_type("clever-teachers")["counts"]["added"], 3);
    // A co-teacher who is not in teachers.csv is named precisely.
    let sections = by_type("clever-sections");
    assert_eq!(sections["status"], "incomplete", "{sections}");
    let id = sections["id"].to_string();
    let errors = server.cli_ok(&["import", "show", &id, "--errors"]);
    assert!(errors.contains(":3: Teacher_2_id: unknown_reference"), "{errors}");
    // ...and the enrollment in the rejected section is rejected with it, not loaded dangling.
    let enrollments = by_type("clever-enrollments");
    assert_eq!(
        (enrollments["counts"]["added"].as_u64(), enrollments["counts"]["rejected"].as_u64()),
        (Some(2), Some(1))
    );
    let errors = server.cli_ok(&["import", "show", &enrollments["id"].to_string(), "--errors"]);
    assert!(errors.contains(":4: Section_id: unknown_reference"), "{errors}");
    let students = server.cli_ok(&["records", "--tenant", "acme", "--type", "clever-students"]);
    assert!(students.contains("2011-03-04"), "dates are stored as ISO: {students}");

    // A header in the wrong case is refused, and the message says how to write it.
    std::fs::write(dir.join("schools.csv"), "school_id,School_name,School_number\ns1,Lincoln,101\n").unwrap();
    server.cli_ok(&["sync", "--tenant", "acme"]);
    let last: Vec<Value> =
        serde_json::from_str(&server.cli_ok(&["imports", "--tenant", "acme", "--json", "--limit", "1"]))
            .unwrap();
    assert_eq!(last[0]["status"], "failed", "{}", last[0]);
    let message = last[0]["message"].as_str().unwrap();
    assert!(message.contains("found \"school_id\"") && message.contains("write \"School_id\""), "{message}");
}
