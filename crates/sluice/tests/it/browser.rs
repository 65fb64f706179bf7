//! The dashboard in Debian's headless Chromium, driven by playwright-core
//! (`tests/browser/dashboard.js`): what a district's staff does after a nightly upload.
//! `DASHBOARD_SCREENSHOTS=DIR` keeps the screenshots (docs/screenshots/ holds a set).

use crate::common::*;
use crate::imports::wait_for_status;
use std::path::Path;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_log_in_see_the_upload_open_its_errors_download_the_report_sync_and_approve() {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !have("node", "nodejs") || !have("chromium", "chromium") {
        return;
    }
    if !browser_dir.join("node_modules/playwright-core").is_dir()
        && !external_check(false, "playwright-core", "npm ci in crates/sluice/tests/browser")
    {
        return;
    }
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    server.importing_tenant("beta", "pw-for-tests");
    let out = server.cli_stdin(
        &["user", "add", "acme", "ann@acme.org", "--role", "owner", "--password-stdin"],
        "owner-password\n",
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let out = server.cli_stdin(&["admin", "passwd", "--password-stdin"], "admin-password\n");
    assert!(out.status.success(), "{}", output_text(&out));

    // The nightly upload, over SFTP: twenty students, one with a bad date (and markup).
    let mut students = String::from("sisId,firstName,lastName,birthDate\n");
    for i in 0..20 {
        students.push_str(&format!("S{i},First{i},Last{i},2010-01-{:02}\n", i % 28 + 1));
    }
    students.push_str("S99,Bad,Date,not a date\nS98,Evil,Value,<img src=x onerror=alert(1)>\n");
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    put(&sftp, "/students/students.csv", students.as_bytes()).await.unwrap();
    let list = wait_for_status(&server, "acme", 1, Duration::from_secs(20));
    assert_eq!(list[0]["status"], "incomplete", "{}", list[0]);
    let uploaded = list[0]["id"].to_string();
    // The next file waits for Sync now, and would delete half the students.
    server.cli_ok(&["tenant", "set", "acme", "trigger=manual"]);
    let half: String = students.lines().take(11).map(|l| format!("{l}\n")).collect();
    std::fs::write(server.tenant_dir("acme").join("students/students.csv"), half).unwrap();

    let shots = std::env::var("DASHBOARD_SCREENSHOTS").ok();
    let mut cmd = std::process::Command::new("node");
    cmd.arg("dashboard.js")
        .current_dir(&browser_dir)
        .env("SLUICE_URL", format!("http://127.0.0.1:{}", server.http_port))
        .env("OWNER_EMAIL", "ann@acme.org")
        .env("OWNER_PASSWORD", "owner-password")
        .env("ADMIN_PASSWORD", "admin-password")
        .env("UPLOADED_IMPORT", &uploaded)
        .env("SCREENSHOT_DIR", shots.unwrap_or_default());
    let out = run_with_timeout(&mut cmd, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "the browser test failed:\n{}\nserver log:\n{}",
        output_text(&out),
        server.log()
    );
    assert!(output_text(&out).contains("browser test passed"));
    let last = &wait_for_status(&server, "acme", 2, Duration::from_secs(5))[0];
    assert_eq!(
        (last["status"].as_str(), last["counts"]["deleted"].as_u64()),
        (Some("complete"), Some(10)),
        "{last}"
    );
}

/// Records in Chromium (`tests/browser/records.js`): search, sort, the record page with its
/// person and relationships both ways, deleting after the confirmation page, people; a plain
/// user sees no delete button and is refused the delete page.
#[test]
fn staff_search_records_follow_relationships_and_delete_one_after_confirming() {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !have("node", "nodejs") || !have("chromium", "chromium") {
        return;
    }
    if !browser_dir.join("node_modules/playwright-core").is_dir()
        && !external_check(false, "playwright-core", "npm ci in crates/sluice/tests/browser")
    {
        return;
    }
    let server = Server::start();
    for t in ["acme", "beta"] {
        server.importing_tenant(t, "pw-for-tests");
        server.cli_ok(&["tenant", "set", t, "types=students,guardians"]);
        let students = "sisId,firstName,lastName,email\nst1,Ann,Smith,ann.smith@acme.org\n\
            st2,Bob,Smithers,bob@acme.org\nst3,Émile,Zola,ez@acme.org\nst4,Ann,Jones,aj@acme.org\n";
        let file = write_file(server.dir.path(), "students.csv", students.as_bytes());
        server.cli_ok(&["import", "--tenant", t, file.to_str().unwrap()]);
    }
    let guardians = "guardianSisId,studentSisId,firstName,lastName,email\nG1,st1,Cy,Smith,cy@example.org\n";
    let file = write_file(server.dir.path(), "guardians.csv", guardians.as_bytes());
    server.cli_ok(&["import", "--tenant", "acme", file.to_str().unwrap()]);
    // st1's school photo, a real PNG the browser decodes.
    server.cli_ok(&["tenant", "set", "acme", "types=students,guardians,photos"]);
    let zip = crate::photos::zip_of(&[("st1.png", &crate::photos::png(40, 50, 120))]);
    let file = write_file(server.dir.path(), "photos.zip", &zip);
    server.cli_ok(&["import", "--tenant", "acme", "--type", "photos", file.to_str().unwrap()]);
    for (email, role, password) in
        [("ann@acme.org", "owner", "owner-password"), ("uma@acme.org", "user", "user-password")]
    {
        let out = server.cli_stdin(
            &["user", "add", "acme", email, "--role", role, "--password-stdin"],
            &format!("{password}\n"),
        );
        assert!(out.status.success(), "{}", output_text(&out));
    }
    let shots = std::env::var("DASHBOARD_SCREENSHOTS").ok();
    let mut cmd = std::process::Command::new("node");
    cmd.arg("records.js")
        .current_dir(&browser_dir)
        .env("SLUICE_URL", format!("http://127.0.0.1:{}", server.http_port))
        .env("OWNER_EMAIL", "ann@acme.org")
        .env("OWNER_PASSWORD", "owner-password")
        .env("USER_EMAIL", "uma@acme.org")
        .env("USER_PASSWORD", "user-password")
        .env("SCREENSHOT_DIR", shots.unwrap_or_default());
    let out = run_with_timeout(&mut cmd, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "the browser test failed:\n{}\nserver log:\n{}",
        output_text(&out),
        server.log()
    );
    assert!(output_text(&out).contains("records browser test passed"));
    let left = server.cli_ok(&["records", "--tenant", "acme", "--type", "students"]);
    assert!(!left.contains("st1,") && left.contains("st2,"), "{left}");
}

/// Accounts in Chromium (`tests/browser/accounts.js`): a password reset by email, the Team
/// page, changing the password, setting up two-step login and logging in with a recovery
/// code, and the audit log that shows it all.
#[test]
fn an_owner_resets_changes_and_secures_the_password_and_reads_the_audit_log() {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !have("node", "nodejs") || !have("chromium", "chromium") {
        return;
    }
    if !have_python_module("aiosmtpd", "aiosmtpd (pip install aiosmtpd)") {
        return;
    }
    if !browser_dir.join("node_modules/playwright-core").is_dir()
        && !external_check(false, "playwright-core", "npm ci in crates/sluice/tests/browser")
    {
        return;
    }
    let maildir = tempfile::tempdir().unwrap();
    let (mut smtpd, port) = start_smtpd(maildir.path(), None);
    let port_text = port.to_string();
    let server = Server::start_with(&[
        ("SLUICE_HTTP_PUBLIC_URL", "https://sluice.example.org"),
        ("SLUICE_NOTIFICATIONS_SMTP_HOST", "127.0.0.1"),
        ("SLUICE_NOTIFICATIONS_SMTP_PORT", &port_text),
        ("SLUICE_NOTIFICATIONS_FROM", "sluice@vendor.example"),
    ]);
    server.importing_tenant("acme", "pw-for-tests");
    let out = server.cli_stdin(
        &["user", "add", "acme", "ann@acme.org", "--role", "owner", "--password-stdin"],
        "forgotten-password\n",
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let shots = std::env::var("DASHBOARD_SCREENSHOTS").ok();
    let mut cmd = std::process::Command::new("node");
    cmd.arg("accounts.js")
        .current_dir(&browser_dir)
        .env("SLUICE_URL", format!("http://127.0.0.1:{}", server.http_port))
        .env("OWNER_EMAIL", "ann@acme.org")
        .env("MAILDIR", maildir.path())
        .env("SCREENSHOT_DIR", shots.unwrap_or_default());
    let out = run_with_timeout(&mut cmd, Duration::from_secs(120));
    let _ = smtpd.kill();
    let _ = smtpd.wait();
    assert!(
        out.status.success(),
        "the browser test failed:\n{}\nserver log:\n{}",
        output_text(&out),
        server.log()
    );
    assert!(output_text(&out).contains("browser test passed"));
    // What the browser did is in the log as the owner's, once each.
    let log: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["audit", "--tenant", "acme", "--json"])).unwrap();
    let by_ann = |action: &str| {
        log.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == action && e["actor"] == "ann@acme.org")
            .count()
    };
    for action in ["password_reset.used", "user.add", "user.remove", "user.password", "second_factor.on"] {
        assert_eq!(by_ann(action), 1, "{action}: {log:#}");
    }
}
