//! Root routing (Visitor Aware's table of required file names; ClassTag's "SFTP Path ... is
//! always /"): a tenant's `/` takes its types' required file names, from every client on its
//! defaults, and refuses any other name saying which are accepted.

use crate::common::*;
use crate::openssh::sftp_batch;
use std::process::Command;
use std::time::Duration;

fn students(rows: usize, tag: &str) -> String {
    let mut s = String::from("sisId,firstName,lastName\n");
    for i in 0..rows {
        s.push_str(&format!("{tag}{i},First{i},Last{tag}\n"));
    }
    s
}

fn guardians(tag: &str) -> String {
    format!(
        "guardianSisId,studentSisId,firstName,lastName,email\nG{tag},{tag}0,Gail,Kent,gail{tag}@example.org\n"
    )
}

/// Waits until the tenant has `n` finished imports and returns them, newest first.
fn imports(server: &Server, n: usize) -> Vec<serde_json::Value> {
    let done = |s: &Server| {
        let all = s.imports("acme");
        all.len() >= n && all.iter().all(|i| i["status"] != "running")
    };
    assert!(
        server.wait_until(Duration::from_secs(30), done),
        "expected {n} imports: {:?}",
        server.imports("acme")
    );
    server.imports("acme")
}

fn routed_tenant(server: &Server, password: &str, routing: &str) {
    server.importing_tenant("acme", password);
    server.cli_ok(&["tenant", "set", "acme", "folders=students,guardians", &format!("routing={routing}")]);
}

#[test]
fn the_root_takes_required_file_names_from_openssh_and_refuses_others_by_name() {
    if !have("sftp", "openssh-client") {
        return;
    }
    let server = Server::start();
    routed_tenant(&server, "pw-for-tests", "root");
    // Photos have no required name: their folder stays with root routing.
    server.cli_ok(&["tenant", "set", "acme", "folders=students,guardians,photos"]);
    let shown = server.cli_ok(&["tenant", "show", "acme"]);
    assert!(shown.contains("routing:   root"), "{shown}");
    let key = server.key("acme");
    write_file(server.dir.path(), "students.csv", students(5, "O").as_bytes());
    write_file(server.dir.path(), "guardians.csv", guardians("O").as_bytes());
    write_file(server.dir.path(), "notes.txt", b"hello");
    let out =
        sftp_batch(&server, &key, "put students.csv /\nput guardians.csv /GUARDIANS.csv\nls -1 /\n", &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        listing.contains("exports") && !listing.contains("\nstudents\n"),
        "folders are not shown: {listing}"
    );
    assert!(listing.contains("photos"), "the photos folder stays: {listing}");
    let done = imports(&server, 2);
    let types: Vec<&str> = done.iter().take(2).map(|i| i["type"].as_str().unwrap()).collect();
    assert!(types.contains(&"students") && types.contains(&"guardians"), "{done:?}");
    assert!(done.iter().take(2).all(|i| i["status"] == "complete"), "{done:?}");
    // Any other name is refused (OpenSSH shows "Permission denied"; the server's sentence,
    // with the names it takes, is checked with paramiko, which prints it, below).
    let out = sftp_batch(&server, &key, "put notes.txt /\n", &[]);
    assert!(!out.status.success());
    assert!(output_text(&out).contains("Permission denied"), "{}", output_text(&out));
    // Folders are not there with root routing.
    let out = sftp_batch(&server, &key, "put students.csv /students/\n", &[]);
    assert!(!out.status.success(), "{}", output_text(&out));
    assert_eq!(server.uploads("acme").len(), 2, "{:?}", server.uploads("acme"));
    // Both: the folders again, and the root.
    server.cli_ok(&["tenant", "set", "acme", "routing=both"]);
    write_file(server.dir.path(), "students.csv", students(6, "O").as_bytes());
    let out = sftp_batch(
        &server,
        &key,
        "put students.csv /students/nightly.csv\nput students.csv /students.csv\n",
        &[],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let done = imports(&server, 4);
    assert!(done.iter().take(2).all(|i| i["type"] == "students"), "{done:?}");
    assert_eq!(done.len(), 4, "{done:?}");
}

/// Every row of Visitor Aware's table of required file names is a type: the Ascender and
/// PowerSchool exports, with their own column names, dropped at the root by OpenSSH, import
/// as their types.
#[test]
fn ascender_and_powerschool_files_are_taken_at_the_root_by_their_required_names() {
    if !have("sftp", "openssh-client") {
        return;
    }
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    server.cli_ok(&[
        "tenant",
        "set",
        "acme",
        "folders=students_ascender,visitors_powerschool,visitors_ascender",
        "routing=root",
    ]);
    let key = server.key("acme");
    write_file(
        server.dir.path(),
        "students_ascender.csv",
        b"Student ID,First Name,Last Name,Grade,Date of Birth,Campus ID
001234,Ana,Ruiz,05,04/12/2015,041
",
    );
    write_file(
        server.dir.path(),
        "visitors_powerschool.csv",
        b"Contact_ID,First_Name,Last_Name,Relationship,Email_Address
77,Rosa,Ruiz,Mother,rosa@example.org
",
    );
    write_file(
        server.dir.path(),
        "visitors_ascender.csv",
        b"Contact ID,First Name,Last Name,Relation,Phone Number
C9,Luis,Ruiz,Father,(512) 555-0100
",
    );
    let out = sftp_batch(
        &server,
        &key,
        "put students_ascender.csv /
put visitors_powerschool.csv /
put visitors_ascender.csv /
",
        &[],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let done = imports(&server, 3);
    let mut types: Vec<&str> = done.iter().map(|i| i["type"].as_str().unwrap()).collect();
    types.sort_unstable();
    assert_eq!(types, ["students_ascender", "visitors_ascender", "visitors_powerschool"], "{done:?}");
    assert!(done.iter().all(|i| i["status"] == "complete" && i["counts"]["added"] == 1), "{done:?}");
}

/// The clients that check or retry their uploads, on their defaults, at the root.
#[test]
fn paramiko_rclone_lftp_and_psftp_on_defaults_upload_at_the_root_once_each() {
    let tools = [
        have_python_module("paramiko", "paramiko (pip)"),
        have("rclone", "rclone"),
        have("lftp", "lftp"),
        have("psftp", "putty-tools"),
    ];
    if tools.iter().any(|t| !t) {
        return;
    }
    let server = Server::start();
    let password = "pw-putty-for-tests";
    routed_tenant(&server, password, "root");
    let mut expected = 0;

    // paramiko: put stats the file it sent (confirm=True), after the import took it in.
    for i in 0..3 {
        write_file(server.dir.path(), &format!("p{i}.csv"), students(3 + i, "P").as_bytes());
    }
    let script = write_file(
        server.dir.path(),
        "put.py",
        br#"
import sys, time, paramiko
t = paramiko.Transport(("127.0.0.1", int(sys.argv[1])))
t.connect(username="acme", password=sys.argv[3])
s = paramiko.SFTPClient.from_transport(t)
for i in range(3):
    attrs = s.put(sys.argv[2] + "/p%d.csv" % i, "/students.csv")
    print("put", i, attrs.st_size, flush=True)
    time.sleep(0.5)
print(sorted(s.listdir("/")))
try:
    s.put(sys.argv[2] + "/p0.csv", "/grades.csv")
except IOError as e:
    print("refused:", e)
"#,
    );
    let out = run_with_timeout(
        Command::new("python3")
            .arg(&script)
            .arg(server.port.to_string())
            .arg(server.dir.path())
            .arg(password),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let said = output_text(&out);
    assert!(
        said.contains("refused:")
            && said.contains("grades.csv is not a file name")
            && said.contains("guardians.csv, students.csv"),
        "{said}"
    );
    // The root lists no import folder; the file just uploaded is still seen a moment after
    // the import took it in (see the README's "Clients that check their uploads").
    assert!(said.contains("['errors', 'exports', 'students.csv']"), "{said}");
    expected += 3;
    imports(&server, expected);

    // rclone: uploads, sets the time, reads the attributes back.
    let outbox = server.dir.path().join("outbox");
    std::fs::create_dir_all(&outbox).unwrap();
    std::fs::write(outbox.join("students.csv"), students(7, "P")).unwrap();
    let out = rclone(&server, "acme", password, &["copy", "-v", outbox.to_str().unwrap(), "sluice:/"]);
    let text = output_text(&out);
    assert!(out.status.success() && !text.contains("ERROR"), "{text}");
    expected += 1;
    imports(&server, expected);

    // psftp (FileZilla's and WinSCP's SSH code).
    write_file(server.dir.path(), "guardians.csv", guardians("P").as_bytes());
    let out = crate::psftp::psftp(&server, "put guardians.csv /guardians.csv\nls /\n");
    assert!(out.status.success(), "{}", output_text(&out));
    expected += 1;
    imports(&server, expected);

    // lftp: answers ssh's password prompt itself; only the new host key is trusted.
    std::fs::write(outbox.join("students.csv"), students(8, "P")).unwrap();
    let script = format!(
        "set sftp:connect-program 'ssh -a -x -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'\n\
         open -u acme,{password} -p {} sftp://127.0.0.1\nput {} -o /students.csv\nbye\n",
        server.port,
        outbox.join("students.csv").display()
    );
    let script_file = write_file(server.dir.path(), "lftp.txt", script.as_bytes());
    let out = run_with_timeout(
        Command::new("lftp").args(["-f", script_file.to_str().unwrap()]),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", output_text(&out));
    expected += 1;

    let done = imports(&server, expected);
    assert_eq!(done.len(), expected, "each upload imported once: {done:?}");
    assert!(done.iter().all(|i| i["status"] == "complete"), "{done:?}");
    assert_eq!(
        server.uploads("acme").len(),
        expected,
        "no client uploaded twice: {:?}",
        server.uploads("acme")
    );
}

/// Files waiting at the root (a manual trigger) are imported by a sync, referred-to types
/// first, as a folder's are.
#[test]
fn a_sync_imports_what_waits_at_the_root_students_before_guardians() {
    let server = Server::start();
    routed_tenant(&server, "pw-for-tests", "root");
    server.cli_ok(&["tenant", "set", "acme", "trigger=manual"]);
    let root = server.tenant_dir("acme");
    std::fs::write(root.join("guardians.csv"), guardians("S")).unwrap();
    std::fs::write(root.join("students.csv"), students(2, "S")).unwrap();
    std::fs::write(root.join("notes.txt"), "not imported").unwrap();
    let said = server.cli_ok(&["sync", "--tenant", "acme"]);
    let _ = said;
    let done = imports(&server, 2);
    assert_eq!(done.len(), 2, "{done:?}");
    assert_eq!(
        (done[1]["type"].as_str(), done[0]["type"].as_str()),
        (Some("students"), Some("guardians")),
        "{done:?}"
    );
    assert!(
        done.iter().all(|i| i["status"] == "complete"),
        "the guardian's student was there first: {done:?}"
    );
    assert!(root.join("notes.txt").exists());
}
