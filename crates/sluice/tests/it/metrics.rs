//! `/metrics` and `/healthz` over HTTP, counting what really happened.

use crate::common::*;
use std::time::{Duration, Instant};

fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_uploads_imports_rows_sessions_and_failed_logins() {
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    let (status, body) = server.http_get("/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    let students = "sisId,firstName,lastName\nS1,Ann,Lee\nS2,Bob,Ray\n,No,Id\n";
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    put(&sftp, "/students/students.csv", students.as_bytes()).await.unwrap();
    assert!(ssh_login(server.port, "acme", "wrong").await.is_err());

    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let (status, text) = server.http_get("/metrics");
        assert_eq!(status, 200);
        if sample(&text, "sluice_imports_total{status=\"incomplete\"}") == 1.0 || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(sample(&text, "sluice_uploads_total"), 1.0, "{text}");
    assert_eq!(sample(&text, "sluice_upload_bytes_total"), students.len() as f64);
    assert_eq!(sample(&text, "sluice_imports_total{status=\"incomplete\"}"), 1.0);
    assert_eq!(sample(&text, "sluice_import_rows_total{outcome=\"added\"}"), 2.0);
    assert_eq!(sample(&text, "sluice_import_rows_total{outcome=\"rejected\"}"), 1.0);
    assert_eq!(sample(&text, "sluice_import_duration_seconds_count"), 1.0);
    assert_eq!(sample(&text, "sluice_import_queue_depth"), 0.0);
    assert_eq!(sample(&text, "sluice_sftp_sessions"), 1.0, "the first session is still open");
    assert!(sample(&text, "sluice_failed_logins_total") >= 1.0);
    let (status, _) = server.http_get("/nowhere");
    assert_eq!(status, 404);
}
