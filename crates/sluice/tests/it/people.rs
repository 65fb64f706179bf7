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
    server.importing_tenant("acme", "pw-for-tests");
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
    server.importing_tenant("acme", "pw-for-tests");
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
    server.importing_tenant("acme", "pw-for-tests");
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

/// People of a tenant by name: (first, last) -> every person of that name.
fn by_name(people: &[Value]) -> std::collections::HashMap<(String, String), Vec<&Value>> {
    let mut map: std::collections::HashMap<(String, String), Vec<&Value>> = Default::default();
    for p in people {
        let name =
            (p["first_name"].as_str().unwrap().to_owned(), p["last_name"].as_str().unwrap().to_owned());
        map.entry(name).or_default().push(p);
    }
    map
}

fn the_one<'a>(
    map: &std::collections::HashMap<(String, String), Vec<&'a Value>>,
    first: &str,
    last: &str,
) -> &'a Value {
    let found = map.get(&(first.to_owned(), last.to_owned())).map(Vec::as_slice).unwrap_or_default();
    assert_eq!(found.len(), 1, "{first} {last}: {found:?}");
    found[0]
}

/// Linking at a size where it streams through the database (50,000 guardian rows among
/// 42,000 people), through the real pipeline: a guardian of several students is one person
/// by guardianSisId, a guardian without one is one person by contact details, a staff member
/// with the same contact details is the same person; then a reload that changes and deletes
/// rows: an email follows the id, a new phone without an id makes a new person, and people
/// whose every row is gone go with them.
#[test]
fn fifty_thousand_guardian_rows_link_people_and_a_reload_relinks_changes_and_deletions() {
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    let phone = |g: usize| format!("55{g:08}");
    let guardian = |i: usize| if i < 20_000 { i % 10_000 } else { 10_000 + i % 2_000 };

    let mut students = String::from("sisId,firstName,lastName,email\n");
    for i in 0..25_000 {
        students.push_str(&format!("s{i:05},Kid{i},Fam{},kid{i}@example.org\n", i % 1000));
    }
    assert_eq!(import(&server, "students.csv", &students)["status"], "complete");
    // Staff E0..E499 have exactly the contact details of guardians G0..G499.
    let mut employees = String::from("employeeId,firstName,lastName,email,phone\n");
    for k in 0..500 {
        employees.push_str(&format!("E{k},Gu{k},Ard{k},g{k}@example.org,{}\n", phone(k)));
    }
    assert_eq!(import(&server, "employees.csv", &employees)["status"], "complete");
    let staff_ids: Vec<Value> = by_name(&people(&server))
        .iter()
        .filter(|(n, _)| n.0.starts_with("Gu"))
        .map(|(_, p)| p[0]["id"].clone())
        .collect();
    assert_eq!(staff_ids.len(), 500);

    // Each student: a guardian with an id (G0..G11999, two or three students each) and one
    // without (Pa0..Pa4999, matched by name and email, five students each).
    let mut guardians = String::from("guardianSisId,studentSisId,firstName,lastName,email,phone\n");
    for i in 0..25_000 {
        let (g, h) = (guardian(i), i % 5_000);
        guardians.push_str(&format!("G{g},s{i:05},Gu{g},Ard{g},g{g}@example.org,{}\n", phone(g)));
        guardians.push_str(&format!(",s{i:05},Pa{h},Rent{h},p{h}@example.org,\n"));
    }
    let v = import(&server, "guardians.csv", &guardians);
    assert_eq!(
        (v["status"].as_str(), v["counts"]["added"].as_u64()),
        (Some("complete"), Some(50_000)),
        "{v}"
    );

    let before = people(&server);
    assert_eq!(
        before.len(),
        25_000 + 12_000 + 5_000,
        "students, guardians with ids (500 of them staff), without"
    );
    let names = by_name(&before);
    let g7 = the_one(&names, "Gu7", "Ard7");
    assert_eq!(roles(g7), ["guardian s00007+G7", "guardian s10007+G7", "staff E7"]);
    assert!(staff_ids.contains(&g7["id"]), "the staff member is the guardian");
    assert_eq!(
        roles(the_one(&names, "Gu9000", "Ard9000")),
        ["guardian s09000+G9000", "guardian s19000+G9000"]
    );
    assert_eq!(
        roles(the_one(&names, "Gu10500", "Ard10500")),
        ["guardian s20500+G10500", "guardian s22500+G10500", "guardian s24500+G10500"]
    );
    let pa3 = the_one(&names, "Pa3", "Rent3");
    let keys: Vec<String> =
        (0..5).map(|m| format!("guardian s{:05}+~Pa3|Rent3|p3@example.org|", 3 + 5_000 * m)).collect();
    assert_eq!(roles(pa3), keys);
    assert_eq!(roles(the_one(&names, "Kid24999", "Fam999")), ["student s24999"]);
    for g in (0..12_000).step_by(997) {
        assert_eq!(
            the_one(&names, &format!("Gu{g}"), &format!("Ard{g}"))["email"],
            format!("g{g}@example.org")
        );
    }

    // The reload: students s20000.. have no guardians any more (G10000..G11999 had no other
    // student), G0..G99 have a new email, Pa0..Pa49 a phone.
    server.cli_ok(&["tenant", "set", "acme", "safeguard.guardians.deleted=50"]);
    let mut reload = String::from("guardianSisId,studentSisId,firstName,lastName,email,phone\n");
    for i in 0..20_000 {
        let (g, h) = (guardian(i), i % 5_000);
        let email = if g < 100 { format!("new{g}@example.org") } else { format!("g{g}@example.org") };
        reload.push_str(&format!("G{g},s{i:05},Gu{g},Ard{g},{email},{}\n", phone(g)));
        let new_phone = if h < 50 { format!("77{h:08}") } else { String::new() };
        reload.push_str(&format!(",s{i:05},Pa{h},Rent{h},p{h}@example.org,{new_phone}\n"));
    }
    let v = import(&server, "guardians.csv", &reload);
    assert_eq!(v["status"], "complete", "{v}");
    // A new phone changes the key of a row without a guardianSisId: 200 rows go, 200 come.
    let c = &v["counts"];
    assert_eq!(
        (c["added"].as_u64(), c["updated"].as_u64(), c["deleted"].as_u64()),
        (Some(200), Some(200), Some(10_200)),
        "{v}"
    );

    let after = people(&server);
    assert_eq!(after.len(), 25_000 + 10_000 + 5_000, "G10000..G11999 are gone with their rows");
    let now = by_name(&after);
    assert!(!now.contains_key(&("Gu10500".to_owned(), "Ard10500".to_owned())));
    // The id keeps G7 the same person, now with the new email, still staff and guardian.
    let g7_now = the_one(&now, "Gu7", "Ard7");
    assert_eq!(g7_now["id"], g7["id"]);
    assert_eq!(g7_now["email"], "new7@example.org");
    assert_eq!(roles(g7_now), ["guardian s00007+G7", "guardian s10007+G7", "staff E7"]);
    assert_eq!(the_one(&now, "Gu500", "Ard500")["email"], "g500@example.org");
    // Pa3 without an id: new contact details, a new person; the old one went with its rows.
    let pa3_now = the_one(&now, "Pa3", "Rent3");
    assert_ne!(pa3_now["id"], pa3["id"]);
    assert_eq!(pa3_now["phone"], "7700000003");
    assert!(after.iter().all(|p| p["id"] != pa3["id"]));
    let keys: Vec<String> = (0..4)
        .map(|m| format!("guardian s{:05}+~Pa3|Rent3|p3@example.org|7700000003", 3 + 5_000 * m))
        .collect();
    assert_eq!(roles(pa3_now), keys);
    // Pa60 unchanged: the same person, one role fewer.
    let pa60 = the_one(&names, "Pa60", "Rent60");
    let pa60_now = the_one(&now, "Pa60", "Rent60");
    assert_eq!((pa60_now["id"].clone(), roles(pa60_now).len()), (pa60["id"].clone(), 4));
    // Every role is a record that exists: no role of a deleted row is left.
    let roles_now: usize = after.iter().map(|p| p["roles"].as_array().unwrap().len()).sum();
    assert_eq!(roles_now, 25_000 + 500 + 40_000);
}
