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
