//! Email (to a real SMTP server, Python's aiosmtpd) and webhooks (to a receiver in this test
//! that fails first, to prove the retry), with the signature checked.

use crate::common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

const STUDENTS: &str = "sisId,firstName,lastName,birthDate\nS1,Ann,Lee,2010-01-01\nS2,Bob,Ray,not a date\n=cmd,Cy,Doe,2011-02-02\n";

fn import(server: &Server) {
    import_for(server, "acme");
}

fn import_for(server: &Server, tenant: &str) {
    let file = write_file(server.dir.path(), "students.csv", STUDENTS.as_bytes());
    server.cli(&["import", "--tenant", tenant, file.to_str().unwrap()]);
}

#[test]
fn an_import_is_emailed_with_its_counts_first_errors_and_report() {
    if !have_python_module("aiosmtpd", "aiosmtpd (pip install aiosmtpd)") {
        return;
    }
    let maildir = tempfile::tempdir().unwrap();
    let (mut smtpd, port) = start_smtpd(maildir.path(), None);
    let port_text = port.to_string();
    let server = Server::start_with(&[
        ("SLUICE_NOTIFICATIONS_SMTP_HOST", "127.0.0.1"),
        ("SLUICE_NOTIFICATIONS_SMTP_PORT", &port_text),
        ("SLUICE_NOTIFICATIONS_FROM", "imports@vendor.example"),
    ]);
    server.importing_tenant("acme", "pw-for-tests");
    let bad = server.cli(&["tenant", "set", "acme", "notify.email=ops@district.org,not an address"]);
    assert_eq!(bad.status.code(), Some(2), "{}", output_text(&bad));
    server.cli_ok(&["tenant", "set", "acme", "notify.email=ops@district.org,sis@district.org"]);
    import(&server);

    let new = maildir.path().join("new");
    let deadline = Instant::now() + Duration::from_secs(30);
    let messages = loop {
        let found: Vec<_> =
            std::fs::read_dir(&new).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        if found.len() == 2 || Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = smtpd.kill();
    let _ = smtpd.wait();
    assert_eq!(
        messages.len(),
        2,
        "one message per recipient; deliveries: {}",
        server.cli_ok(&["deliveries", "--tenant", "acme"])
    );
    let raw = std::fs::read_to_string(&messages[0]).unwrap();
    // Let Python's email package read it as a mail client would.
    let check = std::process::Command::new("python3")
        .args([
            "-c",
            "import email,sys\nm=email.message_from_string(open(sys.argv[1]).read())\nprint('SUBJECT', m['Subject'])\nprint('FROM', m['From'])\n\
             for p in m.walk():\n  if p.get_content_maintype()=='multipart': continue\n  print('PART', p.get_content_type(), p.get_filename())\n  print(p.get_payload(decode=True).decode())",
        ])
        .arg(&messages[0])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        text.contains("SUBJECT [sluice] acme: students.csv import incomplete (3 rows: 2 added"),
        "{text}\n{raw}"
    );
    assert!(text.contains("FROM imports@vendor.example"), "{text}");
    assert!(text.contains("line 3, birthDate: expected a date"), "the first errors are in the body: {text}");
    assert!(text.contains("PART text/csv 00000001-students-errors.csv"), "{text}");
    assert!(
        text.contains("line,key,name,column,code,reason,value") && text.contains("not a date"),
        "the report is attached: {text}"
    );
    let log = server.cli_ok(&["deliveries", "--tenant", "acme", "--json"]);
    assert_eq!(log.matches("\"sent\"").count(), 2, "{log}");
}

/// A receiver that answers 500 to the first request and 200 after; returns what it got.
fn receiver() -> (u16, std::sync::mpsc::Receiver<(String, String)>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length: ") {
                    length = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let status = if n == 0 { "500 Internal Server Error" } else { "200 OK" };
            let _ = write!(stream, "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = stream.shutdown(std::net::Shutdown::Write);
            let _ = tx.send((head, String::from_utf8_lossy(&body).into_owned()));
        }
    });
    (port, rx)
}

#[test]
fn a_webhook_is_signed_and_retried_until_it_is_taken() {
    let (port, received) = receiver();
    // The receiver is on this machine: the operator must allow that.
    let server = Server::start_with(&[("SLUICE_NOTIFICATIONS_ALLOW_PRIVATE_WEBHOOKS", "true")]);
    server.importing_tenant("acme", "pw-for-tests");
    server.cli_ok(&[
        "tenant",
        "set",
        "acme",
        &format!("notify.webhook=http://127.0.0.1:{port}/hooks/sluice"),
        "notify.webhook_secret=s3cret",
    ]);
    import(&server);
    let first = received.recv_timeout(Duration::from_secs(20)).expect("a first attempt");
    let (head, body) = received.recv_timeout(Duration::from_secs(30)).expect("a retry after the 500");
    assert_eq!(first.1, body, "the retry sends the same body");
    assert!(head.starts_with("POST /hooks/sluice HTTP/1.1"), "{head}");
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| panic!("no {name} in {head}"))
    };
    let timestamp: i64 = header("X-Sluice-Timestamp").parse().unwrap();
    let expected = sluice_notify::signature_header("s3cret", timestamp, &body);
    assert_eq!(header("X-Sluice-Signature"), expected);
    assert_ne!(sluice_notify::signature_header("other", timestamp, &body), expected);
    let event: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (event["event"].as_str(), event["import"]["status"].as_str()),
        (Some("import.finished"), Some("incomplete"))
    );
    assert_eq!(event["import"]["counts"]["rejected"], 1);
    // The log shows two attempts, the first failed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log: serde_json::Value =
            serde_json::from_str(&server.cli_ok(&["deliveries", "--tenant", "acme", "--json"])).unwrap();
        if log[0]["status"] == "sent" {
            assert_eq!(log[0]["attempts"], 2, "{log}\n{}", server.log());
            break;
        }
        assert!(Instant::now() < deadline, "{log}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_tenants_webhook_cannot_reach_internal_addresses_unless_the_operator_allows_it() {
    let (port, received) = receiver();
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    // A literal private address is refused when saved; a host name is checked when the
    // delivery connects (what it resolves to may change), here `localhost`.
    let literal =
        server.cli(&["tenant", "set", "acme", &format!("notify.webhook=http://127.0.0.1:{port}/admin")]);
    assert_eq!(literal.status.code(), Some(2), "{}", output_text(&literal));
    server.cli_ok(&["tenant", "set", "acme", &format!("notify.webhook=http://localhost:{port}/admin")]);
    import(&server);
    let deadline = Instant::now() + Duration::from_secs(20);
    let log = loop {
        let log = server.cli_ok(&["deliveries", "--tenant", "acme"]);
        if log.contains("private address") || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(log.contains("allow_private_webhooks"), "{log}");
    assert!(
        received.recv_timeout(Duration::from_millis(500)).is_err(),
        "nothing reached the internal address"
    );
}

#[test]
fn a_receiver_that_never_answers_holds_up_only_its_own_tenant() {
    // Accepted by the kernel, never answered: sluice waits out its 30 s deadline on it.
    let stuck = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stuck_port = stuck.local_addr().unwrap().port();
    let (port, received) = receiver();
    let server = Server::start_with(&[("SLUICE_NOTIFICATIONS_ALLOW_PRIVATE_WEBHOOKS", "true")]);
    for (tenant, port) in [("slow", stuck_port), ("acme", port)] {
        server.importing_tenant(tenant, "pw-for-tests");
        server.cli_ok(&["tenant", "set", tenant, &format!("notify.webhook=http://127.0.0.1:{port}/hook")]);
    }
    // The stuck tenant's delivery is queued first.
    import_for(&server, "slow");
    import_for(&server, "acme");
    let started = Instant::now();
    let got = received.recv_timeout(Duration::from_secs(10));
    assert!(
        got.is_ok(),
        "acme's webhook waited behind slow's receiver: {}",
        server.cli_ok(&["deliveries", "--tenant", "slow"])
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let log: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["deliveries", "--tenant", "slow", "--json"])).unwrap();
    assert_eq!(log[0]["status"], "pending", "{log}");
    drop(stuck);
}

/// A webhook URL whose host is a private address, written plainly or embedded in an IPv6
/// address (NAT64, 6to4, Teredo, IPv4-compatible or -mapped), is refused when it is saved:
/// by the CLI, the API and the dashboard alike (one check), unless the operator allows
/// private webhooks.
#[test]
fn a_webhook_url_embedding_a_private_address_is_refused_when_saved() {
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    server.cli_ok(&["tenant", "set", "acme", "notify.webhook=https://hooks.example.org/sluice"]);
    let saved = || -> String {
        let shown = server.cli_ok(&["tenant", "show", "acme"]);
        let line = shown.lines().find_map(|l| l.strip_prefix("webhook:")).unwrap_or_default();
        line.trim().split(' ').next().unwrap_or_default().to_owned()
    };
    assert_eq!(saved(), "https://hooks.example.org/sluice");
    let out = server.cli(&["tenant", "set", "acme", "notify.webhook=http://[64:ff9b::7f00:1]/hook"]);
    let text = output_text(&out);
    assert!(matches!(out.status.code(), Some(1 | 2)), "{text}");
    assert!(text.contains("notify.webhook"), "{text}");
    assert!(text.contains("127.0.0.1") && text.contains("NAT64"), "names the embedded address: {text}");
    assert!(text.contains("allow_private_webhooks"), "says what to do: {text}");
    for (url, embedded) in [
        ("http://10.0.0.5/hook", "10.0.0.5"),
        ("http://[64:ff9b::a9fe:a9fe]/latest/meta-data", "169.254.169.254"),
        ("http://[64:ff9b:1::a00:1]/", "64:ff9b:1::"),
        ("http://[2002:c0a8:101::1]:8080/hook", "192.168.1.1"),
        ("https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", "127.0.0.1"),
        ("http://[::10.1.2.3]/", "10.1.2.3"),
        ("http://[::ffff:192.168.0.1]/", "192.168.0.1"),
        ("http://[::ffff:0:172.16.0.1]/", "172.16.0.1"),
        ("http://[fd00::1]/", "fd00::1"),
        ("http://2130706433/", "127.0.0.1"),
        ("http://0x7f.1/", "127.0.0.1"),
    ] {
        let out = server.cli(&["tenant", "set", "acme", &format!("notify.webhook={url}")]);
        let text = output_text(&out);
        assert!(matches!(out.status.code(), Some(1 | 2)), "{url} was saved: {text}");
        assert!(text.contains(embedded) && text.contains("allow_private_webhooks"), "{url}: {text}");
    }
    assert_eq!(saved(), "https://hooks.example.org/sluice", "nothing refused was saved");
    // The API answers 400 with the same sentence.
    let key = server.api_key(Some("acme"));
    let body = r#"{"webhook_url": "http://[64:ff9b::7f00:1]/hook"}"#;
    let (status, _, reply) = server.http_with("PATCH", "/api/v1/tenants/acme/settings", Some(&key), body);
    assert_eq!(status, 400, "{reply}");
    assert!(reply.contains("bad_notify") && reply.contains("127.0.0.1"), "{reply}");
    assert_eq!(saved(), "https://hooks.example.org/sluice");
    // Public addresses, embedded or not, are fine.
    for url in
        ["http://[64:ff9b::5db8:d822]/hook", "http://93.184.216.34/hook", "http://[2002:5db8:d822::1]/"]
    {
        server.cli_ok(&["tenant", "set", "acme", &format!("notify.webhook={url}")]);
        assert_eq!(saved(), url);
    }
    // The operator may allow private webhooks (for the CLI here, as for the server).
    let allowed = server.cli_with_env(
        &["tenant", "set", "acme", "notify.webhook=http://[64:ff9b::7f00:1]/hook"],
        &[("SLUICE_NOTIFICATIONS_ALLOW_PRIVATE_WEBHOOKS", "true")],
    );
    assert!(allowed.status.success(), "{}", output_text(&allowed));
    assert_eq!(saved(), "http://[64:ff9b::7f00:1]/hook");
}

/// An SMTP user name with `smtp_security = "none"` would send the password in clear text:
/// the configuration is refused (exit 2, saying what to change) unless the operator opts in.
#[test]
fn an_smtp_password_is_not_sent_unencrypted_unless_the_operator_says_so() {
    let server = Server::start();
    let plain = [
        ("SLUICE_NOTIFICATIONS_SMTP_HOST", "127.0.0.1"),
        ("SLUICE_NOTIFICATIONS_SMTP_USERNAME", "mailer"),
        ("SLUICE_NOTIFICATIONS_SMTP_PASSWORD", "smtp-secret-7"),
    ];
    let refused = server.cli_with_env(&["tenant", "list"], &plain);
    assert_eq!(refused.status.code(), Some(2), "{}", output_text(&refused));
    let text = output_text(&refused);
    assert!(
        text.contains("clear text") && text.contains("starttls") && text.contains("smtp_plaintext_auth"),
        "{text}"
    );
    assert!(!text.contains("smtp-secret-7"), "the password is never printed: {text}");
    let mut opted_in = plain.to_vec();
    opted_in.push(("SLUICE_NOTIFICATIONS_SMTP_PLAINTEXT_AUTH", "true"));
    let allowed = server.cli_with_env(&["tenant", "list"], &opted_in);
    assert!(allowed.status.success(), "{}", output_text(&allowed));
    let mut encrypted = plain.to_vec();
    encrypted.push(("SLUICE_NOTIFICATIONS_SMTP_SECURITY", "starttls"));
    let allowed = server.cli_with_env(&["tenant", "list"], &encrypted);
    assert!(allowed.status.success(), "{}", output_text(&allowed));
}

/// A saved export whose run fails (here its folder cannot be written) is notified like an
/// import: a signed webhook `export.failed` with the run as the API shows it, and the
/// delivery log names the run.
#[test]
fn a_failed_export_run_is_notified_like_an_import() {
    let (port, received) = receiver();
    let server = Server::start_with(&[("SLUICE_NOTIFICATIONS_ALLOW_PRIVATE_WEBHOOKS", "true")]);
    server.importing_tenant("acme", "pw-for-tests");
    server.cli_ok(&["tenant", "set", "acme", &format!("notify.webhook=http://127.0.0.1:{port}/hooks")]);
    server.cli_ok(&["export", "add", "acme", "roster", "--type", "students", "--after-import"]);
    // Where /exports should be, a file: nothing can be written there.
    let exports = server.tenant_dir("acme").join("exports");
    std::fs::remove_dir_all(&exports).unwrap();
    std::fs::write(&exports, "not a folder").unwrap();
    import(&server);
    let deadline = Instant::now() + Duration::from_secs(40);
    let event = loop {
        let (_, body) = received.recv_timeout(deadline - Instant::now()).expect("an export.failed webhook");
        let event: serde_json::Value = serde_json::from_str(&body).unwrap();
        if event["event"] == "export.failed" {
            break event;
        }
    };
    assert_eq!(
        (event["tenant"].as_str(), event["run"]["export"].as_str()),
        (Some("acme"), Some("roster")),
        "{event}"
    );
    assert_eq!(
        (event["run"]["status"].as_str(), event["run"]["cause"].as_str()),
        (Some("failed"), Some("after_import"))
    );
    assert!(event["run"]["error"].as_str().is_some_and(|e| !e.is_empty()), "{event}");
    let runs: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["export", "runs", "acme", "--json"])).unwrap();
    assert_eq!(runs[0]["status"], "failed", "{runs}");
    let log: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["deliveries", "--tenant", "acme", "--json"])).unwrap();
    let about_run = log.as_array().unwrap().iter().find(|d| d["export_run"] == runs[0]["id"]);
    assert!(about_run.is_some_and(|d| d["import"].is_null()), "{log}");
    assert_eq!(std::fs::read_to_string(&exports).unwrap(), "not a folder", "nothing written");
}
