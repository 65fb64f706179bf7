//! TLS everywhere sluice talks HTTP or SMTP: HTTPS for the dashboard and API, STARTTLS to the
//! mail server, https webhooks; each against a CA the test makes.

use crate::common::*;
use std::time::{Duration, Instant};

#[test]
fn the_dashboard_and_api_are_served_over_https_with_secure_cookies() {
    let dir = tempfile::tempdir().unwrap();
    let Some((ca, cert, key)) = test_certificates(dir.path()) else { return };
    if !have("curl", "curl") {
        return;
    }
    let server = Server::start_with(&[
        ("SLUICE_HTTP_TLS_CERT", cert.to_str().unwrap()),
        ("SLUICE_HTTP_TLS_KEY", key.to_str().unwrap()),
    ]);
    server.importing_tenant("acme", "pw-for-tests");
    let out = server.cli_stdin(
        &["user", "add", "acme", "ann@acme.org", "--role", "owner", "--password-stdin"],
        "secret-pw-for-tests\n",
    );
    assert!(out.status.success());
    let url = format!("https://127.0.0.1:{}", server.http_port);
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "20", "--cacert", ca.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, body, err) = curl(&[&format!("{url}/healthz")]);
    assert!(ok && body == "ok\n", "{body} {err}");
    let jar = dir.path().join("cookies");
    let (ok, form, err) = curl(&["-c", jar.to_str().unwrap(), &format!("{url}/login")]);
    assert!(ok, "{err}");
    let at = form.find("name=\"login_token\" value=\"").unwrap() + 26;
    let token = &form[at..at + form[at..].find('"').unwrap()];
    let data = format!("login_token={token}&email=ann@acme.org&password=secret-pw-for-tests");
    let (ok, head, err) =
        curl(&["-i", "-b", jar.to_str().unwrap(), "-X", "POST", "--data", &data, &format!("{url}/login")]);
    assert!(ok, "{err}");
    let cookie = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(cookie.contains("; secure") && cookie.contains("httponly"), "{head}");
    // A client that does not trust the CA is refused; plain HTTP gets nowhere.
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", &format!("{url}/healthz")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let plain = std::net::TcpStream::connect(("127.0.0.1", server.http_port))
        .and_then(|mut s| {
            use std::io::{Read, Write};
            s.set_read_timeout(Some(Duration::from_secs(15)))?;
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
            let mut answer = Vec::new();
            let _ = s.read_to_end(&mut answer);
            Ok(String::from_utf8_lossy(&answer).into_owned())
        })
        .unwrap_or_default();
    assert!(!plain.contains("200 OK"), "plain HTTP to the HTTPS port: {plain}");
}

#[test]
fn email_goes_over_starttls_to_a_server_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let Some((ca, cert, key)) = test_certificates(dir.path()) else { return };
    if !have_python_module("aiosmtpd", "aiosmtpd (pip install aiosmtpd)") {
        return;
    }
    let maildir = dir.path().join("mail");
    // aiosmtpd requires STARTTLS before any mail when given a certificate.
    let (mut smtpd, port) = start_smtpd(&maildir, Some((&cert, &key)));
    let port_text = port.to_string();
    let server = Server::start_with(&[
        ("SLUICE_NOTIFICATIONS_SMTP_HOST", "127.0.0.1"),
        ("SLUICE_NOTIFICATIONS_SMTP_PORT", &port_text),
        ("SLUICE_NOTIFICATIONS_SMTP_SECURITY", "starttls"),
        ("SLUICE_NOTIFICATIONS_CA_FILE", ca.to_str().unwrap()),
    ]);
    server.importing_tenant("acme", "pw-for-tests");
    server.cli_ok(&["tenant", "set", "acme", "notify.email=ops@district.org"]);
    let file = write_file(server.dir.path(), "students.csv", b"sisId,firstName,lastName\nS1,Ann,Lee\n");
    server.cli_ok(&["import", "--tenant", "acme", file.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let delivered = loop {
        let n = std::fs::read_dir(maildir.join("new")).map(|d| d.count()).unwrap_or(0);
        if n > 0 || Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = smtpd.kill();
    let _ = smtpd.wait();
    assert_eq!(delivered, 1, "{}", server.cli_ok(&["deliveries", "--tenant", "acme"]));
}

#[test]
fn https_webhooks_are_delivered_to_a_receiver_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let Some((ca, cert, key)) = test_certificates(dir.path()) else { return };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let got = dir.path().join("got.json");
    let receiver = format!(
        "import http.server, ssl, sys\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20 def do_POST(self):\n\
         \x20   body = self.rfile.read(int(self.headers['Content-Length']))\n\
         \x20   open({got:?}, 'wb').write(body)\n\
         \x20   self.send_response(200); self.send_header('Content-Length', '0'); self.end_headers()\n\
         \x20 def log_message(self, *a): pass\n\
         s = http.server.HTTPServer(('127.0.0.1', {port}), H)\n\
         c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain({cert:?}, {key:?})\n\
         s.socket = c.wrap_socket(s.socket, server_side=True)\n\
         s.serve_forever()\n",
        got = got.to_str().unwrap(),
        cert = cert.to_str().unwrap(),
        key = key.to_str().unwrap(),
    );
    let mut python = std::process::Command::new("python3").args(["-c", &receiver]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the receiver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let server = Server::start_with(&[
        ("SLUICE_NOTIFICATIONS_CA_FILE", ca.to_str().unwrap()),
        ("SLUICE_NOTIFICATIONS_ALLOW_PRIVATE_WEBHOOKS", "true"),
    ]);
    server.importing_tenant("acme", "pw-for-tests");
    server.cli_ok(&[
        "tenant",
        "set",
        "acme",
        &format!("notify.webhook=https://127.0.0.1:{port}/hook"),
        "notify.webhook_secret=k",
    ]);
    let file = write_file(server.dir.path(), "students.csv", b"sisId,firstName,lastName\nS1,Ann,Lee\n");
    server.cli_ok(&["import", "--tenant", "acme", file.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !got.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = python.kill();
    let _ = python.wait();
    let body = std::fs::read_to_string(&got).unwrap_or_else(|_| {
        panic!("nothing arrived: {}", server.cli_ok(&["deliveries", "--tenant", "acme"]))
    });
    assert!(body.contains("\"import.finished\""), "{body}");
}
