//! The dashboard over plain HTTP, as a browser without JavaScript uses it: login, sessions,
//! CSRF, what a tenant's account may see, and escaping of values from tenants' files.

use crate::common::*;

pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) head: String,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}: ", name.to_ascii_lowercase());
        self.head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().starts_with(&prefix).then(|| l[prefix.len()..].to_owned()))
    }
}

pub(crate) fn request(server: &Server, method: &str, path: &str, cookie: Option<&str>, form: &str) -> Reply {
    request_with(server, method, path, cookie, form, "")
}

/// `extra`: more header lines, each ending in CRLF.
fn request_with(
    server: &Server,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: &str,
    extra: &str,
) -> Reply {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.http_port)).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let cookie = cookie.map(|c| format!("Cookie: {c}\r\n")).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{cookie}{extra}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Reply { status, head: head.to_owned(), body: body.to_owned() }
}

fn login(server: &Server, email: &str, password: &str) -> Reply {
    login_from(server, email, password, None)
}

/// A login through a reverse proxy that says the client was `forwarded_for`.
fn login_from(server: &Server, email: &str, password: &str, forwarded_for: Option<&str>) -> Reply {
    let extra = forwarded_for.map(|a| format!("X-Forwarded-For: {a}\r\n")).unwrap_or_default();
    // As a browser does: fetch the form (its token, in a cookie and a field), then post it.
    let form = request_with(server, "GET", "/login", None, "", &extra);
    let cookie = form.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    let at = form.body.find("name=\"login_token\" value=\"").unwrap() + 26;
    let token = &form.body[at..at + form.body[at..].find('"').unwrap()];
    request_with(
        server,
        "POST",
        "/login",
        Some(&cookie),
        &format!("login_token={token}&email={email}&password={password}"),
        &extra,
    )
}

/// Logs in; returns the session cookie (`sluice_session=...`).
pub(crate) fn session(server: &Server, email: &str, password: &str) -> String {
    let r = login(server, email, password);
    assert_eq!(r.status, 303, "{}\n{}", r.head, r.body);
    r.header("set-cookie").unwrap().split(';').next().unwrap().to_owned()
}

pub(crate) fn csrf(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + 19;
    page[at..at + page[at..].find('"').unwrap()].to_owned()
}

fn setup() -> Server {
    setup_with(&[])
}

pub(crate) fn setup_with(env: &[(&str, &str)]) -> Server {
    let server = Server::start_with(env);
    for (t, email, role) in [("acme", "ann@acme.org", "owner"), ("beta", "bob@beta.org", "user")] {
        server.importing_tenant(t, "pw-for-tests");
        let out = server.cli_stdin(
            &["user", "add", t, email, "--role", role, "--password-stdin"],
            "secret-1-for-tests\n",
        );
        assert!(out.status.success(), "{}", output_text(&out));
        let students = format!(
            "sisId,firstName,lastName,birthDate\n{t}1,Ann,Lee,2010-01-01\n{t}2,<script>alert(1)</script>,x,2010-01-02\n{t}3,Cy,y,<img src=x onerror=alert(2)>\n"
        );
        let file = write_file(server.dir.path(), "students.csv", students.as_bytes());
        server.cli(&["import", "--tenant", t, file.to_str().unwrap()]);
    }
    let out = server.cli_stdin(&["admin", "passwd", "--password-stdin"], "admin-pw-for-tests\n");
    assert!(out.status.success(), "{}", output_text(&out));
    server
}

fn last_import_id(server: &Server, tenant: &str) -> i64 {
    let list: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["imports", "--tenant", tenant, "--json", "--limit", "1"]))
            .unwrap();
    list[0]["id"].as_i64().unwrap()
}

#[test]
fn a_tenants_account_sees_only_its_tenant_and_the_operator_sees_all() {
    let server = setup();
    let r = request(&server, "GET", "/", None, "");
    assert_eq!((r.status, r.header("location").as_deref()), (303, Some("/login")));
    let r = login(&server, "ann@acme.org", "wrong");
    assert_eq!(r.status, 401);
    assert!(r.body.contains("Wrong email or password"));
    // No script runs, nothing loads from elsewhere, no framing, no caching of tenant data.
    let csp = r.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("default-src 'none'") && !csp.contains("script-src"), "{}", r.head);
    assert_eq!(r.header("x-frame-options").as_deref(), Some("DENY"));
    assert_eq!(r.header("x-content-type-options").as_deref(), Some("nosniff"));
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));

    let r = login(&server, "ann@acme.org", "secret-1-for-tests");
    assert_eq!((r.status, r.header("location").as_deref()), (303, Some("/t/acme")));
    let cookie_header = r.header("set-cookie").unwrap();
    let flags = cookie_header.to_ascii_lowercase();
    assert!(flags.contains("httponly") && flags.contains("samesite=strict"), "{cookie_header}");
    let ann = cookie_header.split(';').next().unwrap().to_owned();

    let page = request(&server, "GET", "/t/acme", Some(&ann), "");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Sync now") && page.body.contains("<svg"), "{}", page.body);
    let beta_import = last_import_id(&server, "beta");
    for path in [
        "/t/beta".to_owned(),
        "/t/beta/imports".to_owned(),
        format!("/imports/{beta_import}"),
        format!("/imports/{beta_import}/errors.csv"),
    ] {
        let r = request(&server, "GET", &path, Some(&ann), "");
        assert_eq!(r.status, 404, "{path}");
        assert!(!r.body.contains("beta1"), "{path} leaks: {}", r.body);
    }
    let r = request(&server, "POST", "/t/beta/sync", Some(&ann), &format!("csrf={}", csrf(&page.body)));
    assert_eq!(r.status, 404);

    let admin = session(&server, "admin", "admin-pw-for-tests");
    let all = request(&server, "GET", "/", Some(&admin), "");
    assert!(all.body.contains("/t/acme") && all.body.contains("/t/beta"), "{}", all.body);
    assert_eq!(request(&server, "GET", &format!("/imports/{beta_import}"), Some(&admin), "").status, 200);
}

#[test]
fn forms_need_the_csrf_token_and_file_values_never_become_markup() {
    let server = setup();
    let ann = session(&server, "ann@acme.org", "secret-1-for-tests");
    let id = last_import_id(&server, "acme");
    let page = request(&server, "GET", &format!("/imports/{id}"), Some(&ann), "");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("&lt;img src=x onerror=alert(2)&gt;"), "{}", page.body);
    assert!(!page.body.contains("<img src=x") && !page.body.contains("<script>alert"), "{}", page.body);
    let report = request(&server, "GET", &format!("/imports/{id}/errors.csv"), Some(&ann), "");
    assert_eq!(report.status, 200);
    assert!(report.header("content-disposition").unwrap().contains("attachment"));

    // Sync now: refused without the session's token, done with it.
    let overview = request(&server, "GET", "/t/acme", Some(&ann), "");
    let token = csrf(&overview.body);
    assert_eq!(request(&server, "POST", "/t/acme/sync", Some(&ann), "").status, 403);
    assert_eq!(request(&server, "POST", "/t/acme/sync", Some(&ann), "csrf=forged").status, 403);
    std::fs::write(
        server.tenant_dir("acme").join("students/students.csv"),
        "sisId,firstName,lastName\nacme1,Ann,Lee\n",
    )
    .unwrap();
    server.cli_ok(&["tenant", "set", "acme", "trigger=manual"]);
    // The overview shows what waits in the folders...
    let overview = request(&server, "GET", "/t/acme", Some(&ann), "").body;
    assert!(
        overview.contains("Files waiting (1)") && overview.contains("/students/students.csv"),
        "{overview}"
    );
    // ...and Sync now says what it did.
    let r = request(&server, "POST", "/t/acme/sync", Some(&ann), &format!("csrf={token}"));
    let location = r.header("location").unwrap_or_default();
    assert_eq!(r.status, 303);
    assert!(location.starts_with("/t/acme?done=Sync%3A%201%20file%20was%20waiting"), "{location}");
    let told = request(&server, "GET", &location, Some(&ann), "").body;
    assert!(told.contains("Sync: 1 file was waiting") && !told.contains("Files waiting ("), "{told}");
    let held = last_import_id(&server, "acme");
    let detail = request(&server, "GET", &format!("/imports/{held}"), Some(&ann), "");
    assert!(
        detail.body.contains("held by the safeguard") && detail.body.contains("Approve"),
        "{}",
        detail.body
    );
    assert!(
        detail.body.contains("approving deletes acme2 (&lt;script&gt;alert(1)&lt;/script&gt; x)"),
        "what approval deletes is shown: {}",
        detail.body
    );
    let r =
        request(&server, "POST", &format!("/imports/{held}/approve"), Some(&ann), &format!("csrf={token}"));
    assert_eq!(r.status, 303);
    let detail = request(&server, "GET", &format!("/imports/{held}"), Some(&ann), "");
    assert!(detail.body.contains("badge complete"), "{}", detail.body);
    let far = request(&server, "GET", &format!("/imports/{held}?page=18446744073709551615"), Some(&ann), "");
    assert_eq!(far.status, 200, "a page far past the end is an empty page: {}", far.body);
    assert!(detail.body.contains("approved by ann@acme.org (dashboard)"), "{}", detail.body);

    // Logging out ends the session.
    assert_eq!(request(&server, "POST", "/logout", Some(&ann), &format!("csrf={token}")).status, 303);
    assert_eq!(request(&server, "GET", "/t/acme", Some(&ann), "").status, 303);
}

#[test]
fn a_login_posted_from_elsewhere_is_refused() {
    let server = setup();
    // No form token (another site posting a login of its choosing): refused.
    let r = request(&server, "POST", "/login", None, "email=ann@acme.org&password=secret-1-for-tests");
    assert_eq!(r.status, 403, "{}", r.body);
    let r = request(
        &server,
        "POST",
        "/login",
        Some("sluice_login=abc"),
        "login_token=abd&email=ann@acme.org&password=secret-1-for-tests",
    );
    assert_eq!(r.status, 403);
    assert_eq!(login(&server, "ann@acme.org", "secret-1-for-tests").status, 303);
}

#[test]
fn failed_logins_are_rate_limited() {
    let server = setup();
    for _ in 0..10 {
        assert_eq!(login(&server, "bob@beta.org", "nope").status, 401);
    }
    let r = login(&server, "bob@beta.org", "secret-1-for-tests");
    assert_eq!(r.status, 429, "even the right password waits: {}", r.body);
    assert!(r.body.contains("temporarily blocked"), "{}", r.body);
}

/// The defender over real sockets: an address that guesses is banned, the right password is
/// refused too (before it is checked), the ban survives a restart, `sluice defender list`
/// (another process) shows it, and `sluice defender unban` lets the address in again within
/// seconds.
#[test]
fn a_guessing_address_is_banned_until_it_ends_or_an_operator_lifts_it() {
    let mut server = setup();
    let mut guesses = 0;
    loop {
        guesses += 1;
        let r = login(&server, "bob@beta.org", &format!("guess-{guesses}"));
        assert_eq!(r.status, 401, "guess {guesses}: {}", r.body);
        if r.body.contains("this address is blocked for 15 minutes") {
            break;
        }
        assert!(guesses < 10, "not banned after {guesses} guesses: {}", r.body);
    }
    assert_eq!(guesses, 10, "the threshold is 10 failed logins");
    let right = login(&server, "bob@beta.org", "secret-1-for-tests");
    assert_eq!(right.status, 429, "the right password is refused too: {}", right.body);
    assert!(
        right.body.contains("temporarily blocked") && right.body.contains("15 minutes"),
        "{}",
        right.body
    );
    let retry: u64 = right.header("retry-after").unwrap().trim().parse().unwrap();
    assert!((890..=900).contains(&retry), "Retry-After: {retry}");
    // Other accounts from the same address too: the address is banned, not the account.
    assert_eq!(login(&server, "ann@acme.org", "secret-1-for-tests").status, 429);

    let list: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["defender", "list", "--json"])).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["source"], "127.0.0.1");
    assert_eq!(list[0]["bans"], 1);
    assert_eq!(list[0]["reason"], "dashboard: failed login");
    assert!(list[0]["remaining_secs"].as_u64().unwrap() > 880, "{list}");
    let text = server.cli_ok(&["defender", "list"]);
    assert!(text.contains("127.0.0.1") && text.contains("dashboard: failed login"), "{text}");
    let (_, metrics) = server.http_get("/metrics");
    for line in [
        "sluice_defender_bans_total 1",
        "sluice_defender_banned_sources 1",
        "sluice_defender_refused_total{service=\"dashboard\",reason=\"banned\"} 2",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in\n{metrics}");
    }
    assert!(
        server.log().lines().any(|l| l.contains("banned")
            && l.contains("source=127.0.0.1")
            && l.contains("score=10")
            && l.contains("duration=15 minutes")
            && l.contains("reason=dashboard: failed login")),
        "{}",
        server.log()
    );

    // Killed and started again: still banned.
    server.kill_and_restart();
    assert_eq!(
        login(&server, "bob@beta.org", "secret-1-for-tests").status,
        429,
        "the ban survives a restart"
    );

    let out = server.cli_ok(&["defender", "unban", "127.0.0.1"]);
    assert!(out.contains("unbanned 127.0.0.1"), "{out}");
    let lifted = std::time::Instant::now();
    loop {
        let r = login(&server, "bob@beta.org", "secret-1-for-tests");
        if r.status == 303 {
            break;
        }
        assert_eq!(r.status, 429, "{}", r.body);
        assert!(lifted.elapsed() < std::time::Duration::from_secs(5), "still banned 5 s after the unban");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(server.wait_for_log("unbanned: lifted by an operator", std::time::Duration::from_secs(5)));
    let again = server.cli(&["defender", "unban", "127.0.0.1"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(output_text(&again).contains("127.0.0.1 is not banned"), "{}", output_text(&again));
    assert_eq!(server.cli_ok(&["defender", "list", "--json"]).trim(), "[]");
}

#[test]
fn forwarded_addresses_count_only_from_a_trusted_proxy() {
    // No trusted proxy: anyone can write X-Forwarded-For, so it changes nothing.
    let server = setup();
    for i in 0..10 {
        let r = login_from(&server, "bob@beta.org", "nope", Some(&format!("203.0.113.{i}")));
        assert_eq!(r.status, 401);
    }
    assert_eq!(login_from(&server, "bob@beta.org", "secret-1-for-tests", Some("198.51.100.7")).status, 429);
}

#[test]
fn one_guessing_address_cannot_lock_an_account_out_for_everyone() {
    // Behind a reverse proxy on this machine, which tells clients apart by X-Forwarded-For.
    let server = setup_with(&[("SLUICE_HTTP_TRUSTED_PROXIES", "127.0.0.1/32, ::1")]);
    let attacker = Some("203.0.113.9");
    for _ in 0..10 {
        assert_eq!(login_from(&server, "bob@beta.org", "nope", attacker).status, 401);
    }
    // The attacker goes on: refused unchecked, and not counted against Bob's account.
    for _ in 0..60 {
        assert_eq!(login_from(&server, "bob@beta.org", "nope", attacker).status, 429);
    }
    assert_eq!(login_from(&server, "bob@beta.org", "secret-1-for-tests", Some("198.51.100.7")).status, 303);
    // Addresses a client writes itself come first; the proxy appends the real one.
    let spoofed =
        login_from(&server, "bob@beta.org", "secret-1-for-tests", Some("198.51.100.7, 203.0.113.9"));
    assert_eq!(spoofed.status, 429);
    // IPv6 clients count per /64, where one host can pick any address.
    for i in 1..=10 {
        let r = login_from(&server, "ann@acme.org", "nope", Some(&format!("2001:db8:0:7::{i:x}")));
        assert_eq!(r.status, 401);
    }
    assert_eq!(login_from(&server, "ann@acme.org", "nope", Some("2001:db8:0:7::ffff")).status, 429);
    assert_eq!(
        login_from(&server, "ann@acme.org", "secret-1-for-tests", Some("2001:db8:0:8::1")).status,
        303
    );
    // Guesses from many addresses still lock the account, at a higher count.
    for i in 0..50 {
        let r = login_from(&server, "ann@acme.org", "nope", Some(&format!("192.0.2.{i}")));
        assert_eq!(r.status, 401, "guess {i}");
    }
    let r = login_from(&server, "ann@acme.org", "secret-1-for-tests", Some("198.51.100.8"));
    assert_eq!(r.status, 429, "{}", r.body);
}

#[test]
fn a_trusted_proxy_that_is_not_an_address_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["serve", "--sftp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .env("SLUICE_HTTP_TRUSTED_PROXIES", "10.0.0.0/8, proxy.local")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = output_text(&out);
    assert!(text.contains("trusted_proxies") && text.contains("proxy.local"), "{text}");
}

fn form_encode(v: &str) -> String {
    v.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[test]
fn only_owners_and_granted_users_manage_credentials_and_settings() {
    let server = setup();
    let bob = session(&server, "bob@beta.org", "secret-1-for-tests");
    // bob is a plain user of beta: he sees beta, but not its credentials or settings.
    assert_eq!(request(&server, "GET", "/t/beta", Some(&bob), "").status, 200);
    let r = request(&server, "GET", "/t/beta/sftp", Some(&bob), "");
    assert_eq!(r.status, 403);
    assert!(r.body.contains("Only an owner"), "{}", r.body);
    let token = csrf(&request(&server, "GET", "/t/beta", Some(&bob), "").body);
    assert_eq!(
        request(
            &server,
            "POST",
            "/t/beta/sftp/password",
            Some(&bob),
            &format!("csrf={token}&password=long-enough-pw")
        )
        .status,
        403
    );
    assert_eq!(request(&server, "GET", "/t/beta/settings", Some(&bob), "").status, 403);
    // Nor is he offered them.
    let overview = request(&server, "GET", "/t/beta", Some(&bob), "").body;
    assert!(!overview.contains("/t/beta/settings") && !overview.contains("/t/beta/sftp"), "{overview}");

    // Nor may he approve what the safeguard held: that overrides it, deletions included.
    let file = write_file(server.dir.path(), "students.csv", b"sisId,firstName,lastName\nbeta1,Ann,Lee\n");
    server.cli_ok(&["import", "--tenant", "beta", file.to_str().unwrap()]);
    let held = last_import_id(&server, "beta");
    let r =
        request(&server, "POST", &format!("/imports/{held}/approve"), Some(&bob), &format!("csrf={token}"));
    assert_eq!(r.status, 403, "{}", r.body);
    let page = request(&server, "GET", &format!("/imports/{held}"), Some(&bob), "").body;
    assert!(!page.contains("/approve") && page.contains("An owner of the tenant"), "{page}");
    assert!(!page.contains("sluice approve"), "the command line's hint is not for the web: {page}");
    let status: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["import", "show", &held.to_string(), "--json"])).unwrap();
    assert_eq!(status["status"], "held");
    // Each refusal is in the tenant's audit log, as bob's, naming what he asked for; a form
    // with a forged CSRF token too.
    let r = request(&server, "POST", "/account/password", Some(&bob), "csrf=forged&current=x&new=y");
    assert_eq!(r.status, 403);
    let log: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["audit", "--tenant", "beta", "--json"])).unwrap();
    let refused: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["action"] == "access.refused" && e["actor"] == "bob@beta.org" && e["outcome"] == "refused"
        })
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    let approve = format!("POST /imports/{held}/approve");
    for asked in [
        "GET /t/beta/sftp",
        "POST /t/beta/sftp/password",
        "GET /t/beta/settings",
        &approve,
        "POST /account/password",
    ] {
        assert_eq!(refused.iter().filter(|t| **t == asked).count(), 1, "{asked}: {refused:?}");
    }

    // Once granted, he may.
    server.cli_ok(&["user", "grant", "bob@beta.org"]);
    let page = request(&server, "GET", "/t/beta/sftp", Some(&bob), "");
    assert_eq!(page.status, 200, "{}", page.body);
    // The page says how to connect: host, port, login name and the host key a client asks
    // about on its first connection (psftp, WinSCP).
    let body = &page.body;
    assert!(body.contains(&server.host_fingerprint()) && body.contains("ssh-ed25519"), "{body}");
    assert!(
        body.contains(&format!("<code>{}</code>", server.port)) && body.contains("<code>beta</code>"),
        "{body}"
    );
    assert!(body.contains("<code>127.0.0.1</code>"), "{body}");
    let token = csrf(&page.body);
    let key = std::fs::read_to_string(server.key("acme").with_extension("pub")).unwrap();
    let r = request(
        &server,
        "POST",
        "/t/beta/sftp/keys",
        Some(&bob),
        &format!("csrf={token}&public_key={}", form_encode(key.trim())),
    );
    assert_eq!(r.status, 303);
    let listed = server.cli_ok(&["key", "list", "beta"]);
    assert!(listed.contains("ssh-ed25519"), "{listed}");
    let r = request(
        &server,
        "POST",
        "/t/beta/sftp/keys",
        Some(&bob),
        &format!("csrf={token}&public_key=not-a-key"),
    );
    assert!(r.header("location").unwrap().contains("Not%20added"), "{}", r.head);
    let short = request(
        &server,
        "POST",
        "/t/beta/sftp/password",
        Some(&bob),
        &format!("csrf={token}&password=short"),
    );
    assert!(short.header("location").unwrap().contains("at%20least%2012"), "{}", short.head);
    let r = request(
        &server,
        "POST",
        "/t/beta/sftp/password",
        Some(&bob),
        &format!("csrf={token}&password=a-long-new-password"),
    );
    assert!(r.header("location").unwrap().contains("Password%20set"), "{}", r.head);
    // The page shows the notice the change left, and only one this session signed: a link
    // from elsewhere cannot put its own words on a sluice page.
    let back = r.header("location").unwrap();
    let shown = request(&server, "GET", &back, Some(&bob), "");
    assert!(shown.body.contains("<p class=\"card\">Password set.</p>"), "{}", shown.body);
    let sig = back.split("sig=").nth(1).unwrap();
    let forged = format!("/t/beta/sftp?done=Call%20support%20at%20555-0100&sig={sig}");
    let shown = request(&server, "GET", &forged, Some(&bob), "");
    assert_eq!(shown.status, 200);
    assert!(!shown.body.contains("Call support"), "{}", shown.body);
    let ann = session(&server, "ann@acme.org", "secret-1-for-tests");
    let elsewhere = request(&server, "GET", &back.replace("/t/beta/", "/t/acme/"), Some(&ann), "");
    assert!(!elsewhere.body.contains("Password set."), "another session's notice: {}", elsewhere.body);
    // Without the token nothing changes.
    assert_eq!(
        request(&server, "POST", "/t/beta/sftp/password", Some(&bob), "password=another-long-one").status,
        403
    );

    // Settings: a bad time zone is refused whole; a good change is saved.
    let form = |tz: &str| {
        format!(
            "csrf={token}&trigger=schedule&schedule={}&timezone={}&emails={}&webhook=&webhook_secret=",
            form_encode("0 2 * * *"),
            form_encode(tz),
            form_encode("ops@beta.org")
        )
    };
    // (Refused, the form comes back with the reason and what was typed, not a redirect: see
    // `a_refused_settings_form_shows_what_was_typed_and_why`.)
    let r = request(&server, "POST", "/t/beta/settings", Some(&bob), &form("Mars/Olympus"));
    assert_eq!(r.status, 422, "{}", r.head);
    assert!(r.body.contains("Not saved") && r.body.contains("Mars/Olympus"), "{}", r.body);
    assert!(!server.cli_ok(&["tenant", "show", "beta"]).contains("ops@beta.org"));
    // A webhook to a private address (here cloud metadata behind an IPv4-mapped address) is
    // refused with the reason, and nothing is saved.
    let private = form("America/Chicago").replace(
        "&webhook=&",
        &format!("&webhook={}&", form_encode("http://[::ffff:169.254.169.254]/latest")),
    );
    let r = request(&server, "POST", "/t/beta/settings", Some(&bob), &private);
    assert_eq!(r.status, 422, "{}", r.head);
    let refusal = r.body.split("class=\"card error\">").nth(1).unwrap_or_default();
    assert!(refusal.starts_with("Not saved") && refusal.contains("169.254.169.254"), "{}", r.body);
    assert!(!server.cli_ok(&["tenant", "show", "beta"]).contains("ops@beta.org"));
    let r = request(
        &server,
        "POST",
        "/t/beta/settings",
        Some(&bob),
        &format!("{}&strictness=strict", form("America/Chicago")),
    );
    assert!(r.header("location").unwrap().contains("Saved"), "{}", r.head);
    let shown = server.cli_ok(&["tenant", "show", "beta"]);
    assert!(
        shown.contains("ops@beta.org")
            && shown.contains("America/Chicago")
            && shown.contains("strictness=strict"),
        "{shown}"
    );
    assert!(
        request(&server, "GET", "/t/beta/settings", Some(&bob), "")
            .body
            .contains("<option value=\"strict\" selected>")
    );
    // "As each type says" removes the tenant's own strictness.
    let r = request(
        &server,
        "POST",
        "/t/beta/settings",
        Some(&bob),
        &format!("{}&strictness=default", form("America/Chicago")),
    );
    assert!(r.header("location").unwrap().contains("Saved"), "{}", r.head);
    assert!(!server.cli_ok(&["tenant", "show", "beta"]).contains("strictness="));
    // What is set per type elsewhere is shown on the page.
    server.cli_ok(&["tenant", "set", "beta", "strictness.students=strict", "trigger.students=manual"]);
    let page = request(&server, "GET", "/t/beta/settings", Some(&bob), "").body;
    assert!(
        page.contains("strictness.students=strict") && page.contains("trigger.students=manual"),
        "{page}"
    );
    // Still nothing of another tenant.
    assert_eq!(request(&server, "GET", "/t/acme/sftp", Some(&bob), "").status, 404);
}

#[test]
fn a_refused_settings_form_shows_what_was_typed_and_why() {
    let server = setup();
    let ann = session(&server, "ann@acme.org", "secret-1-for-tests");
    let token = csrf(&request(&server, "GET", "/t/acme/settings", Some(&ann), "").body);
    // A time zone that does not exist, and that is hostile markup besides.
    let typed = "Mars/<script>alert(1)</script>";
    let sent = format!(
        "csrf={token}&trigger=schedule&schedule={}&timezone={}&strictness=strict&emails={}&webhook=&webhook_secret=a-secret-not-echoed",
        form_encode("15 3 * * 1"),
        form_encode(typed),
        form_encode("ops@acme.org")
    );
    let r = request(&server, "POST", "/t/acme/settings", Some(&ann), &sent);
    assert_eq!(r.status, 422, "{}", r.head);
    assert!(r.header("location").is_none(), "{}", r.head);
    assert!(r.body.contains("class=\"card error\">Not saved: "), "{}", r.body);
    // The fields hold what was typed, not the stored settings...
    for field in [
        "name=\"schedule\" value=\"15 3 * * 1\"",
        "name=\"emails\" value=\"ops@acme.org\"",
        "<option value=\"schedule\" selected>",
        "<option value=\"strict\" selected>",
    ] {
        assert!(r.body.contains(field), "{field}: {}", r.body);
    }
    // ...escaped as any value is (an attribute cannot be closed, no element made), and the
    // secret is not sent back.
    assert!(
        r.body.contains("name=\"timezone\" value=\"Mars/&lt;script&gt;alert(1)&lt;/script&gt;\""),
        "{}",
        r.body
    );
    assert!(!r.body.contains("<script>alert"), "{}", r.body);
    assert!(!r.body.contains("a-secret-not-echoed"), "{}", r.body);
    // The form posts again as it is (the session's token), and nothing was saved.
    assert_eq!(csrf(&r.body), token);
    let shown = server.cli_ok(&["tenant", "show", "acme"]);
    assert!(!shown.contains("ops@acme.org") && !shown.contains("15 3 * * 1"), "{shown}");

    // Refused by the settings it would leave (a schedule trigger without a schedule), not by a
    // value: the same page, with what was typed.
    let sent = format!(
        "csrf={token}&trigger=schedule&schedule=&timezone=Asia%2FTokyo&strictness=strict&emails={}&webhook=",
        form_encode("ops@acme.org")
    );
    let r = request(&server, "POST", "/t/acme/settings", Some(&ann), &sent);
    assert_eq!(r.status, 422, "{}", r.head);
    assert!(r.body.contains("class=\"card error\">Not saved: "), "{}", r.body);
    for field in ["name=\"timezone\" value=\"Asia/Tokyo\"", "name=\"emails\" value=\"ops@acme.org\""] {
        assert!(r.body.contains(field), "{field}: {}", r.body);
    }
    let shown = server.cli_ok(&["tenant", "show", "acme"]);
    assert!(!shown.contains("Asia/Tokyo"), "{shown}");

    // The login form says what it takes: a tenant's account logs in by email, the operator
    // by the name `admin`.
    let form = request(&server, "GET", "/login", None, "");
    assert!(
        form.body.contains("Email or user name") && form.body.contains("name=\"email\""),
        "{}",
        form.body
    );
}

#[test]
fn an_owner_lets_a_user_manage_and_takes_it_back() {
    let server = setup();
    let out = server.cli_stdin(
        &["user", "add", "acme", "cy@acme.org", "--role", "user", "--password-stdin"],
        "secret-2-for-tests\n",
    );
    assert!(out.status.success());
    let cy = session(&server, "cy@acme.org", "secret-2-for-tests");
    assert_eq!(request(&server, "GET", "/t/acme/sftp", Some(&cy), "").status, 403);
    // cy cannot grant himself.
    let team = request(&server, "GET", "/t/acme/team", Some(&cy), "");
    assert!(!team.body.contains("Let manage"), "{}", team.body);
    let token = csrf(&team.body);
    let r = request(
        &server,
        "POST",
        "/t/acme/team",
        Some(&cy),
        &format!("csrf={token}&email=cy%40acme.org&manages=1"),
    );
    assert_eq!(r.status, 403);
    // ann, the owner, can; and cannot touch another tenant's user.
    let ann = session(&server, "ann@acme.org", "secret-1-for-tests");
    let team = request(&server, "GET", "/t/acme/team", Some(&ann), "");
    assert!(team.body.contains("Let manage"), "{}", team.body);
    let token = csrf(&team.body);
    let r = request(
        &server,
        "POST",
        "/t/acme/team",
        Some(&ann),
        &format!("csrf={token}&email=bob%40beta.org&manages=1"),
    );
    assert!(r.header("location").unwrap().contains("no%20such%20user"), "{}", r.head);
    let r = request(
        &server,
        "POST",
        "/t/acme/team",
        Some(&ann),
        &format!("csrf={token}&email=cy%40acme.org&manages=1"),
    );
    assert_eq!(r.status, 303);
    assert_eq!(request(&server, "GET", "/t/acme/sftp", Some(&cy), "").status, 200);
    request(
        &server,
        "POST",
        "/t/acme/team",
        Some(&ann),
        &format!("csrf={token}&email=cy%40acme.org&manages=0"),
    );
    assert_eq!(request(&server, "GET", "/t/acme/sftp", Some(&cy), "").status, 403);
}

/// An owner makes the tenant's API keys without asking the operator: the key is shown once,
/// works on the API at once, and stops working when revoked. A plain user cannot, and no
/// one reaches another tenant's keys.
#[test]
fn owners_make_and_revoke_their_tenants_api_keys() {
    let server = setup();
    let ann = session(&server, "ann@acme.org", "secret-1-for-tests");
    let page = request(&server, "GET", "/t/acme/api-keys", Some(&ann), "");
    assert_eq!(page.status, 200, "{}", page.body);
    let token = csrf(&page.body);
    // Without the CSRF token nothing is made.
    assert_eq!(request(&server, "POST", "/t/acme/api-keys", Some(&ann), "name=x").status, 403);
    let made = request(
        &server,
        "POST",
        "/t/acme/api-keys",
        Some(&ann),
        &format!("csrf={token}&name=SIS%20%3Cnightly%3E"),
    );
    assert_eq!(made.status, 200, "{}", made.body);
    assert!(made.body.contains("SIS &lt;nightly&gt;"), "the name is escaped: {}", made.body);
    let at = made.body.find("<code>slk_").expect("the key is shown") + "<code>".len();
    let key = &made.body[at..at + 68];
    assert_eq!(made.header("cache-control").as_deref(), Some("no-store"));
    let api = |key: &str, path: &str| {
        request_with(&server, "GET", path, None, "", &format!("Authorization: Bearer {key}\r\n")).status
    };
    assert_eq!(api(key, "/api/v1/tenants/acme"), 200);
    assert_eq!(api(key, "/api/v1/tenants/beta"), 404, "a tenant's key reaches only its tenant");
    // The list shows its name and prefix, never the key again.
    let list = request(&server, "GET", "/t/acme/api-keys", Some(&ann), "");
    assert!(list.body.contains("SIS &lt;nightly&gt;") && list.body.contains(&key[..12]));
    assert!(!list.body.contains(key), "{}", list.body);
    let id = list.body.split("name=\"id\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();

    // bob, a plain user of beta, may not make keys; ann may not revoke beta's or see them.
    let bob = session(&server, "bob@beta.org", "secret-1-for-tests");
    assert_eq!(request(&server, "GET", "/t/beta/api-keys", Some(&bob), "").status, 403);
    let bob_token = csrf(&request(&server, "GET", "/t/beta", Some(&bob), "").body);
    let r = request(&server, "POST", "/t/beta/api-keys", Some(&bob), &format!("csrf={bob_token}&name=x"));
    assert_eq!(r.status, 403);
    assert_eq!(request(&server, "GET", "/t/beta/api-keys", Some(&ann), "").status, 404);
    let beta_key = server.api_key(Some("beta"));
    let beta_id = server.cli_ok(&["apikey", "list", "--tenant", "beta"]);
    let beta_id = beta_id.split_whitespace().next().unwrap();
    let r = request(
        &server,
        "POST",
        "/t/acme/api-keys/revoke",
        Some(&ann),
        &format!("csrf={token}&id={beta_id}"),
    );
    assert!(r.header("location").unwrap_or_default().contains("Not%20revoked"), "{}", r.head);
    assert_eq!(api(&beta_key, "/api/v1/tenants/beta"), 200, "beta's key still works");

    // Revoking ann's own key ends it.
    let r = request(&server, "POST", "/t/acme/api-keys/revoke", Some(&ann), &format!("csrf={token}&id={id}"));
    assert!(r.header("location").unwrap_or_default().contains("revoked"), "{}", r.head);
    assert_eq!(api(key, "/api/v1/tenants/acme"), 401);
}

/// A held import a newer file superseded says so on its page, offers no Approve, and its
/// file can be downloaded, by its tenant's accounts only.
#[test]
fn a_superseded_import_shows_why_and_its_file_only_to_its_tenant() {
    let server = setup();
    let import = |text: &str| {
        let file = write_file(server.dir.path(), "students.csv", text.as_bytes());
        server.cli(&["import", "--tenant", "acme", file.to_str().unwrap()]);
        last_import_id(&server, "acme")
    };
    let partial = "sisId,firstName,lastName,birthDate\nacme1,Ann,Lee,2010-01-01\n";
    let held = import(partial);
    let newer = import(
        "sisId,firstName,lastName,birthDate\nacme1,Ann,Lee,2010-01-01\nacme2,Bo,x,2010-01-02\nacme3,Cy,y,\n",
    );
    let cookie = session(&server, "ann@acme.org", "secret-1-for-tests");
    let page = request(&server, "GET", &format!("/imports/{held}"), Some(&cookie), "");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("badge superseded"), "{}", page.body);
    assert!(
        page.body.contains(&format!("Superseded by <a href=\"/imports/{newer}\">import #{newer}</a>")),
        "{}",
        page.body
    );
    assert!(!page.body.contains("/approve"), "no Approve for a superseded import: {}", page.body);
    let file = request(&server, "GET", &format!("/imports/{held}/file"), Some(&cookie), "");
    assert_eq!(file.status, 200, "{}", file.head);
    assert_eq!(file.header("content-length").as_deref(), Some(partial.len().to_string().as_str()));
    assert_eq!(file.body, partial);
    let newer_page = request(&server, "GET", &format!("/imports/{newer}"), Some(&cookie), "");
    assert!(newer_page.body.contains(&format!("supersedes held import {held}")), "{}", newer_page.body);
    let other = session(&server, "bob@beta.org", "secret-1-for-tests");
    assert_eq!(request(&server, "GET", &format!("/imports/{held}/file"), Some(&other), "").status, 404);
}

/// Any of a tenant's people can put a fresh export in the tenant's /exports from the overview
/// (a user, not only an owner); another tenant's people cannot; the form needs the token.
#[test]
fn export_now_puts_a_fresh_file_in_the_tenants_exports() {
    let server = setup();
    let bob = session(&server, "bob@beta.org", "secret-1-for-tests");
    let overview = request(&server, "GET", "/t/beta", Some(&bob), "");
    assert!(
        overview.body.contains("Export now") && overview.body.contains("<option value=\"students\">"),
        "{}",
        overview.body
    );
    let token = csrf(&overview.body);
    let r = request(
        &server,
        "POST",
        "/t/beta/export",
        Some(&bob),
        &format!("csrf={token}&type=students&format=xlsx"),
    );
    assert_eq!(r.status, 303, "{}", r.head);
    let back = request(&server, "GET", &r.header("location").unwrap(), Some(&bob), "");
    assert!(back.body.contains("Exported 2 students records to /exports/students.xlsx"), "{}", back.body);
    assert!(server.tenant_dir("beta").join("exports").join("students.xlsx").is_file());
    // Not another tenant's, and not without the form's token.
    let r = request(
        &server,
        "POST",
        "/t/acme/export",
        Some(&bob),
        &format!("csrf={token}&type=students&format=csv"),
    );
    assert_eq!(r.status, 404, "{}", r.head);
    let r = request(&server, "POST", "/t/beta/export", Some(&bob), "csrf=forged&type=students&format=csv");
    assert_eq!(r.status, 403, "{}", r.head);
    assert!(!server.tenant_dir("beta").join("exports").join("students.csv").exists());
    assert!(!server.tenant_dir("acme").join("exports").join("students.csv").exists());
}

/// The saved exports page: an owner saves one (a mistake shows why), anyone of the tenant's
/// runs it and sees the run; a user (bob, not a manager) may run but not save or remove; the
/// values of a tenant's files and names are escaped.
#[test]
fn saved_exports_are_saved_by_managers_and_run_by_anyone_of_the_tenant() {
    let server = setup();
    let ann = session(&server, "ann@acme.org", "secret-1-for-tests");
    let page = request(&server, "GET", "/t/acme/exports", Some(&ann), "");
    assert_eq!(page.status, 200, "{}", page.head);
    assert!(
        page.body.contains("Save an export") && page.body.contains("No saved exports yet"),
        "{}",
        page.body
    );
    let token = csrf(&page.body);
    let save = |body: &str| {
        let r = request(&server, "POST", "/t/acme/exports", Some(&ann), &format!("csrf={token}&{body}"));
        assert_eq!(r.status, 303, "{}", r.head);
        request(&server, "GET", &r.header("location").unwrap(), Some(&ann), "").body
    };
    let back = save("name=roster&type=students&format=csv&columns=sisId%2CfirstName&where=&when=nightly");
    assert!(back.contains("Not saved: schedule"), "{back}");
    let back =
        save("name=roster&type=students&format=csv&columns=sisId%2CfirstName&where=&when=after_import");
    assert!(back.contains("Saved: it writes /exports/roster.csv."), "{back}");
    assert!(back.contains("after each import that changes records"), "{back}");
    let r = request(&server, "POST", "/t/acme/exports/run", Some(&ann), &format!("csrf={token}&name=roster"));
    let back = request(&server, "GET", &r.header("location").unwrap(), Some(&ann), "").body;
    assert!(back.contains("Export roster wrote 2 records to /exports/roster.csv"), "{back}");
    assert!(back.contains("on_demand") && !back.contains("<script>alert"), "{back}");
    let file = std::fs::read_to_string(server.tenant_dir("acme").join("exports").join("roster.csv")).unwrap();
    assert!(file.contains("acme2,<script>alert(1)</script>"), "the file holds the value as it is: {file}");

    // bob, a user of beta: may run beta's, not save or remove; sees nothing of acme's.
    server.cli_ok(&["export", "add", "beta", "list", "--type", "students"]);
    let bob = session(&server, "bob@beta.org", "secret-1-for-tests");
    let page = request(&server, "GET", "/t/beta/exports", Some(&bob), "");
    assert!(
        page.body.contains("Run now")
            && !page.body.contains("Save an export")
            && !page.body.contains(">Remove<"),
        "{}",
        page.body
    );
    let bob_token = csrf(&page.body);
    let r =
        request(&server, "POST", "/t/beta/exports/run", Some(&bob), &format!("csrf={bob_token}&name=list"));
    assert_eq!(r.status, 303, "{}", r.head);
    assert!(server.tenant_dir("beta").join("exports").join("list.csv").is_file());
    let r = request(
        &server,
        "POST",
        "/t/beta/exports",
        Some(&bob),
        &format!("csrf={bob_token}&name=x&type=students&format=csv&when=on_demand"),
    );
    assert_eq!(r.status, 403, "a user does not save exports: {}", r.head);
    let r = request(
        &server,
        "POST",
        "/t/beta/exports/remove",
        Some(&bob),
        &format!("csrf={bob_token}&name=list"),
    );
    assert_eq!(r.status, 403, "nor remove them: {}", r.head);
    assert_eq!(request(&server, "GET", "/t/acme/exports", Some(&bob), "").status, 404);
    let r =
        request(&server, "POST", "/t/acme/exports/run", Some(&bob), &format!("csrf={bob_token}&name=roster"));
    assert_eq!(r.status, 404);
    let r = request(&server, "POST", "/t/beta/exports/run", Some(&bob), "csrf=forged&name=list");
    assert_eq!(r.status, 403);
}

/// The records pages: values from files escaped, search counted, another tenant's records not
/// found (whatever the key's characters); deleting a record takes the manager check and the
/// session's CSRF token, and a plain user sees no delete button and is refused.
#[test]
fn records_pages_escape_values_and_only_managers_delete_with_the_csrf_token() {
    let server = setup();
    let ann = session(&server, "ann@acme.org", "secret-1-for-tests");
    let list = request(&server, "GET", "/t/acme/records/students?q=%3Cscript", Some(&ann), "");
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.body.contains("1 records match"), "{}", list.body);
    assert!(
        !list.body.contains("<script>alert") && list.body.contains("&lt;script&gt;alert(1)"),
        "{}",
        list.body
    );
    assert_eq!(request(&server, "GET", "/t/beta/records/students", Some(&ann), "").status, 404);
    assert_eq!(request(&server, "GET", "/t/beta/records/students/beta1", Some(&ann), "").status, 404);
    assert_eq!(request(&server, "GET", "/t/acme/records/students/..%2F..%2Fetc", Some(&ann), "").status, 404);
    assert_eq!(request(&server, "GET", "/t/acme/records/nothing", Some(&ann), "").status, 404);
    // A NUL in a page's path, query or form is refused before any page looks at it (on
    // PostgreSQL a record page answered 404 and a deletion showed the database's error); the
    // login form too, where it used to skip the defender's count.
    for (method, path, form) in [
        ("GET", "/t/acme/records/students/acme1%00", ""),
        ("POST", "/t/acme/records/students/acme1%00/delete", "csrf=x"),
        ("GET", "/t/acme/records/students?q=a%00", ""),
        ("POST", "/t/acme/settings", "csrf=x&notify_email=a%00@b.org"),
        ("POST", "/login", "login_token=x&email=ann%00@acme.org&password=p"),
    ] {
        let r = request(&server, method, path, Some(&ann), form);
        assert_eq!(r.status, 400, "{method} {path} {form}: {}", r.body);
        assert!(r.body.contains("holds a NUL character"), "{method} {path}: {}", r.body);
    }
    assert!(server.cli_ok(&["records", "--tenant", "acme", "--type", "students"]).contains("acme1,"));

    let record = request(&server, "GET", "/t/acme/records/students/acme2", Some(&ann), "");
    assert_eq!(record.status, 200, "{}", record.body);
    assert!(record.body.contains("Delete…") && !record.body.contains("<script>alert"), "{}", record.body);
    let confirm = request(&server, "GET", "/t/acme/records/students/acme2/delete", Some(&ann), "");
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    let token = csrf(&confirm.body);
    let forged = request(&server, "POST", "/t/acme/records/students/acme2/delete", Some(&ann), "csrf=forged");
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(server.cli_ok(&["records", "--tenant", "acme", "--type", "students"]).contains("acme2,"));
    let done = request(
        &server,
        "POST",
        "/t/acme/records/students/acme2/delete",
        Some(&ann),
        &format!("csrf={token}"),
    );
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(
        done.header("location").unwrap().starts_with("/t/acme/records/students?done=Deleted"),
        "{}",
        done.head
    );
    assert!(!server.cli_ok(&["records", "--tenant", "acme", "--type", "students"]).contains("acme2,"));
    let gone = request(&server, "GET", "/t/acme/records/students/acme2", Some(&ann), "");
    assert_eq!(gone.status, 404);
    assert!(gone.body.contains("This record was deleted by ann@acme.org (dashboard) on "), "{}", gone.body);

    // bob is a plain user of beta: he browses, but neither sees nor may use a delete button.
    let bob = session(&server, "bob@beta.org", "secret-1-for-tests");
    let record = request(&server, "GET", "/t/beta/records/students/beta1", Some(&bob), "");
    assert_eq!(record.status, 200, "{}", record.body);
    assert!(!record.body.contains("Delete"), "{}", record.body);
    let token = csrf(&record.body);
    assert_eq!(request(&server, "GET", "/t/beta/records/students/beta1/delete", Some(&bob), "").status, 403);
    let refused = request(
        &server,
        "POST",
        "/t/beta/records/students/beta1/delete",
        Some(&bob),
        &format!("csrf={token}"),
    );
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(server.cli_ok(&["records", "--tenant", "beta", "--type", "students"]).contains("beta1,"));
    let theirs = request(
        &server,
        "POST",
        "/t/acme/records/students/acme1/delete",
        Some(&bob),
        &format!("csrf={token}"),
    );
    assert_eq!(theirs.status, 404, "another tenant's record is not found");
    let people = request(&server, "GET", "/t/beta/people?q=ann", Some(&bob), "");
    assert!(people.body.contains("1 people") && people.body.contains("Lee, Ann"), "{}", people.body);
    assert_eq!(request(&server, "GET", "/t/acme/people", Some(&bob), "").status, 404);
}

/// What people do in the dashboard and keys do through the API is in the audit log: who (the
/// account, the key), from where, what (settings before and after), failed logins and
/// refusals too; the passwords and the key never.
#[test]
fn dashboard_and_api_changes_are_in_the_audit_log_with_who_and_from_where() {
    let server = setup();
    assert_eq!(login(&server, "ann@acme.org", "a-wrong-password").status, 401);
    let ann = session(&server, "ann@acme.org", "secret-1-for-tests");
    let token = csrf(&request(&server, "GET", "/t/acme/settings", Some(&ann), "").body);
    let form = format!("csrf={token}&trigger=manual&schedule=&timezone=UTC&emails=&webhook=");
    let r = request(&server, "POST", "/t/acme/settings", Some(&ann), &form);
    assert_eq!(r.status, 303, "{}", r.body);
    // Refused (a bad time zone): logged as refused.
    let bad = format!("csrf={token}&trigger=manual&schedule=&timezone=Mars%2FOlympus&emails=&webhook=");
    assert_eq!(request(&server, "POST", "/t/acme/settings", Some(&ann), &bad).status, 422);
    let key = server.api_key(Some("acme"));
    let (status, _, _) = server.http("POST", "/api/v1/tenants/acme/sync", Some(&key));
    assert_eq!(status, 200);

    let log: Vec<serde_json::Value> =
        serde_json::from_str(&server.cli_ok(&["audit", "--tenant", "acme", "--json"])).unwrap();
    let seen: Vec<(String, String, String)> = log
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (s("action"), s("actor_kind"), s("outcome"))
        })
        .collect();
    let has = |action: &str, kind: &str, outcome: &str| {
        seen.iter().any(|(a, k, o)| a == action && k == kind && o == outcome)
    };
    assert!(has("login", "account", "done") && has("tenant.settings", "account", "done"), "{seen:?}");
    assert!(has("tenant.settings", "account", "refused"), "{seen:?}");
    assert!(has("import.sync", "api_key", "done") && has("api_key.add", "cli", "done"), "{seen:?}");
    let settings = log.iter().find(|e| e["action"] == "tenant.settings" && e["outcome"] == "done").unwrap();
    assert_eq!(
        (settings["actor"].as_str(), settings["source"].as_str()),
        (Some("ann@acme.org"), Some("127.0.0.1"))
    );
    let after: serde_json::Value = serde_json::from_str(settings["after"].as_str().unwrap()).unwrap();
    assert_eq!(after["trigger"], "manual");
    // The failed login names no tenant (it was not let in): the operator's view has it.
    let all = server.cli_ok(&["audit"]);
    assert!(all.contains("login") && all.contains("refused"), "{all}");
    for secret in ["a-wrong-password", "secret-1-for-tests", key.as_str()] {
        assert!(!all.contains(secret), "{secret}: {all}");
    }
    // Through the API: a tenant's key reads its own entries only.
    let (status, _, body) = server.http("GET", "/api/v1/audit", Some(&key));
    let entries =
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["entries"].as_array().unwrap().clone();
    assert_eq!(status, 200);
    assert!(!entries.is_empty() && entries.iter().all(|e| e["tenant"] == "acme"), "{body}");
    let beta = server.api_key(Some("beta"));
    assert_eq!(server.http("GET", "/api/v1/audit?tenant=acme", Some(&beta)).0, 404);
    // In the dashboard: the tenant's page for its managers, a CSV download, the operator's all.
    let page = request(&server, "GET", "/t/acme/audit", Some(&ann), "").body;
    assert!(page.contains("tenant.settings") && page.contains("ann@acme.org"), "{page}");
    let csv = request(&server, "GET", "/t/acme/audit?format=csv", Some(&ann), "");
    assert!(csv.body.contains("tenant.settings") && csv.header("content-type").unwrap().contains("text/csv"));
    let bob = session(&server, "bob@beta.org", "secret-1-for-tests");
    assert_eq!(request(&server, "GET", "/t/beta/audit", Some(&bob), "").status, 403, "a plain user");
    assert_eq!(request(&server, "GET", "/audit", Some(&ann), "").status, 404, "only the operator sees all");
    let admin = session(&server, "admin", "admin-pw-for-tests");
    let everything = request(&server, "GET", "/audit", Some(&admin), "").body;
    assert!(everything.contains("acme") && everything.contains("beta"), "{everything}");
}

/// A record's page shows what its last change changed, field by field.
#[test]
fn a_records_page_shows_the_values_before_its_last_change() {
    let server = setup();
    let file = write_file(
        server.dir.path(),
        "students.csv",
        b"sisId,firstName,lastName,birthDate\nacme1,Ann,Li-Lee,2010-01-01\nacme2,Bo,x,2010-01-02\nacme3,Cy,y,2010-01-03\n",
    );
    server.cli_ok(&["import", "--tenant", "acme", file.to_str().unwrap()]);
    let ann = session(&server, "ann@acme.org", "secret-1-for-tests");
    let page = request(&server, "GET", "/t/acme/records/students/acme1", Some(&ann), "").body;
    let changes = &page[page.find("table class=\"changes\"").expect("a table of changes")..];
    assert!(changes.contains("<td>lastName</td><td>Lee</td><td>Li-Lee</td>"), "{changes}");
    assert!(
        !changes[..changes.find("</table>").unwrap()].contains("firstName"),
        "only what changed: {changes}"
    );
}

/// The operator's "to look at" clears once someone has looked at a failure and said so.
#[test]
fn an_acknowledged_failure_leaves_the_operators_list() {
    let server = setup();
    let file = write_file(server.dir.path(), "students.csv", b"no,such,columns\n1,2,3\n");
    let _ = server.cli(&["import", "--tenant", "acme", "--type", "students", file.to_str().unwrap()]);
    let failed = last_import_id(&server, "acme");
    let admin = session(&server, "admin", "admin-pw-for-tests");
    let home = request(&server, "GET", "/", Some(&admin), "").body;
    let acme_row =
        |page: &str| page[page.find("/t/acme\"").unwrap()..].split("</tr>").next().unwrap().to_owned();
    assert!(acme_row(&home).contains("to look at"), "{home}");
    let ann = session(&server, "ann@acme.org", "secret-1-for-tests");
    let page = request(&server, "GET", &format!("/imports/{failed}"), Some(&ann), "").body;
    let token = csrf(&page);
    let r = request(
        &server,
        "POST",
        &format!("/imports/{failed}/acknowledge"),
        Some(&ann),
        &format!("csrf={token}"),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let home = request(&server, "GET", "/", Some(&admin), "").body;
    assert!(!acme_row(&home).contains("to look at"), "{home}");
    let page = request(&server, "GET", &format!("/imports/{failed}"), Some(&ann), "").body;
    assert!(page.contains("Looked at by ann@acme.org (dashboard)"), "{page}");
    let log = server.cli_ok(&["audit", "--tenant", "acme"]);
    assert!(log.contains("import.acknowledge"), "{log}");
    // A plain user is not offered it, and may not.
    let bob = session(&server, "bob@beta.org", "secret-1-for-tests");
    let file = write_file(server.dir.path(), "b.csv", b"no,such,columns\n1,2,3\n");
    let _ = server.cli(&["import", "--tenant", "beta", "--type", "students", file.to_str().unwrap()]);
    let beta_failed = last_import_id(&server, "beta");
    let page = request(&server, "GET", &format!("/imports/{beta_failed}"), Some(&bob), "").body;
    assert!(!page.contains("/acknowledge"), "{page}");
    let token = csrf(&page);
    let r = request(
        &server,
        "POST",
        &format!("/imports/{beta_failed}/acknowledge"),
        Some(&bob),
        &format!("csrf={token}"),
    );
    assert_eq!(r.status, 403);
}

/// A removed account is logged out at once.
#[test]
fn a_removed_user_is_logged_out_at_once() {
    let server = setup();
    let bob = session(&server, "bob@beta.org", "secret-1-for-tests");
    assert_eq!(request(&server, "GET", "/t/beta", Some(&bob), "").status, 200);
    server.cli_ok(&["user", "remove", "bob@beta.org"]);
    let r = request(&server, "GET", "/t/beta", Some(&bob), "");
    assert_eq!((r.status, r.header("location").as_deref()), (303, Some("/login")));
    assert_eq!(login(&server, "bob@beta.org", "secret-1-for-tests").status, 401);
    assert!(!server.cli(&["user", "remove", "bob@beta.org"]).status.success(), "no such account any more");
    // In the tenant's own log, although the account (and so its tenant) is gone.
    assert!(server.cli_ok(&["audit", "--tenant", "beta"]).contains("user.remove"));
}

/// Anyone changes their own password, after giving the current one; every session ends.
#[test]
fn an_account_changes_its_own_password_and_its_sessions_end() {
    let server = setup();
    let bob = session(&server, "bob@beta.org", "secret-1-for-tests");
    let other = session(&server, "bob@beta.org", "secret-1-for-tests");
    let page = request(&server, "GET", "/account", Some(&bob), "").body;
    assert!(page.contains("bob@beta.org") && page.contains("Change your password"), "{page}");
    let token = csrf(&page);
    let wrong = format!("csrf={token}&current=not-my-password&new=a-new-long-password");
    let r = request(&server, "POST", "/account/password", Some(&bob), &wrong);
    assert!(r.header("location").unwrap().contains("not%20right"), "{}", r.head);
    let short = format!("csrf={token}&current=secret-1-for-tests&new=short");
    let r = request(&server, "POST", "/account/password", Some(&bob), &short);
    assert!(r.header("location").unwrap().contains("Not%20changed"), "{}", r.head);
    let good = format!("csrf={token}&current=secret-1-for-tests&new=a-new-long-password");
    let r = request(&server, "POST", "/account/password", Some(&bob), &good);
    assert_eq!((r.status, r.header("location").as_deref()), (303, Some("/login")));
    for s in [&bob, &other] {
        assert_eq!(request(&server, "GET", "/t/beta", Some(s), "").status, 303, "every session ended");
    }
    assert_eq!(login(&server, "bob@beta.org", "secret-1-for-tests").status, 401);
    session(&server, "bob@beta.org", "a-new-long-password");
    let log = server.cli_ok(&["audit", "--tenant", "beta"]);
    assert!(
        log.contains("user.password") && log.contains("refused") && !log.contains("a-new-long-password"),
        "{log}"
    );
}

/// An owner adds and removes the tenant's accounts on the Team page; a user may not.
#[test]
fn an_owner_adds_and_removes_the_teams_accounts() {
    let server = setup();
    let ann = session(&server, "ann@acme.org", "secret-1-for-tests");
    let page = request(&server, "GET", "/t/acme/team", Some(&ann), "").body;
    assert!(page.contains("Add someone"), "{page}");
    let token = csrf(&page);
    let add = format!("csrf={token}&email=Cy%40acme.org&role=user&password=first-password-42");
    let r = request(&server, "POST", "/t/acme/team/add", Some(&ann), &add);
    assert!(r.header("location").unwrap().contains("added"), "{}", r.head);
    let cy = session(&server, "cy@acme.org", "first-password-42");
    assert_eq!(request(&server, "GET", "/t/acme", Some(&cy), "").status, 200);
    // Again: refused, it exists; a short password: refused.
    let r = request(&server, "POST", "/t/acme/team/add", Some(&ann), &add);
    assert!(r.header("location").unwrap().contains("Not%20added"), "{}", r.head);
    // A user may not add anyone.
    let cys_token = csrf(&request(&server, "GET", "/t/acme/team", Some(&cy), "").body);
    let by_user = format!("csrf={cys_token}&email=eve%40acme.org&role=owner&password=first-password-42");
    assert_eq!(request(&server, "POST", "/t/acme/team/add", Some(&cy), &by_user).status, 403);
    // Nor remove another tenant's account through this tenant.
    let other = format!("csrf={token}&email=bob%40beta.org");
    let r = request(&server, "POST", "/t/acme/team/remove", Some(&ann), &other);
    assert!(r.header("location").unwrap().contains("Not%20removed"), "{}", r.head);
    // Made an owner, cy manages the tenant; made a user again, no longer. Not one's own role.
    let role = |role: &str| format!("csrf={token}&email=cy%40acme.org&role={role}");
    let r = request(&server, "POST", "/t/acme/team/role", Some(&ann), &role("owner"));
    assert!(r.header("location").unwrap().contains("an%20owner"), "{}", r.head);
    assert_eq!(request(&server, "GET", "/t/acme/settings", Some(&cy), "").status, 200);
    let r = request(&server, "POST", "/t/acme/team/role", Some(&ann), &role("user"));
    assert!(r.header("location").unwrap().contains("a%20user"), "{}", r.head);
    assert_eq!(request(&server, "GET", "/t/acme/settings", Some(&cy), "").status, 403);
    let own = format!("csrf={token}&email=ann%40acme.org&role=user");
    let r = request(&server, "POST", "/t/acme/team/role", Some(&ann), &own);
    assert!(r.header("location").unwrap().contains("Not%20changed"), "{}", r.head);
    let cy_token = csrf(&request(&server, "GET", "/t/acme", Some(&cy), "").body);
    let by_user = format!("csrf={cy_token}&email=ann%40acme.org&role=user");
    assert_eq!(
        request(&server, "POST", "/t/acme/team/role", Some(&cy), &by_user).status,
        403,
        "users may not"
    );
    server.cli_ok(&["user", "role", "cy@acme.org", "owner"]);
    assert_eq!(request(&server, "GET", "/t/acme/settings", Some(&cy), "").status, 200);
    // The audit page, filtered to one action; a settings change shows what it was and became.
    let page = request(&server, "GET", "/t/acme/audit?action=user.role", Some(&ann), "").body;
    assert!(page.contains("user.role") && !page.contains("<code>user.add</code>"), "{page}");
    server.cli_ok(&["tenant", "set", "acme", "trigger=manual"]);
    let page = request(&server, "GET", "/t/acme/audit?action=tenant.settings", Some(&ann), "").body;
    assert!(page.contains("before and after") && page.contains("manual"), "{page}");
    // Removed: logged out at once.
    let remove = format!("csrf={token}&email=cy%40acme.org");
    let r = request(&server, "POST", "/t/acme/team/remove", Some(&ann), &remove);
    assert!(r.header("location").unwrap().contains("removed"), "{}", r.head);
    assert_eq!(request(&server, "GET", "/t/acme", Some(&cy), "").status, 303);
    let log = server.cli_ok(&["audit", "--tenant", "acme"]);
    assert!(
        log.contains("user.add")
            && log.contains("user.remove")
            && log.matches("user.role").count() == 4
            && !log.contains("first-password-42"),
        "{log}"
    );
}

/// The operator adds and disables tenants in the dashboard; no one else may.
#[test]
fn the_operator_adds_and_disables_tenants_in_the_dashboard() {
    let server = setup();
    let admin = session(&server, "admin", "admin-pw-for-tests");
    let home = request(&server, "GET", "/", Some(&admin), "").body;
    assert!(home.contains("Add a tenant"), "{home}");
    let token = csrf(&home);
    let r = request(&server, "POST", "/tenants/add", Some(&admin), &format!("csrf={token}&name=gamma"));
    assert!(r.header("location").unwrap().starts_with("/t/gamma/sftp"), "{}", r.head);
    let shown = server.cli_ok(&["tenant", "show", "gamma"]);
    assert!(shown.contains("/students"), "the default folders: {shown}");
    let bad = request(&server, "POST", "/tenants/add", Some(&admin), &format!("csrf={token}&name=..%2Fx"));
    assert!(bad.header("location").unwrap().contains("Not%20added"), "{}", bad.head);
    let r = request(
        &server,
        "POST",
        "/tenants/enabled",
        Some(&admin),
        &format!("csrf={token}&name=beta&enabled=0"),
    );
    assert_eq!(r.status, 303);
    assert!(server.cli_ok(&["tenant", "list"]).lines().any(|l| l.contains("beta") && l.contains("disabled")));
    // An owner may do neither.
    let ann = session(&server, "ann@acme.org", "secret-1-for-tests");
    let token = csrf(&request(&server, "GET", "/t/acme", Some(&ann), "").body);
    assert_eq!(
        request(&server, "POST", "/tenants/add", Some(&ann), &format!("csrf={token}&name=delta")).status,
        404
    );
    let log = server.cli_ok(&["audit"]);
    assert!(log.contains("tenant.add") && log.contains("tenant.disable"), "{log}");
}

/// Password reset by email: the same answer for any address, a link that works once and
/// ends every session, no token in the audit log, and refused once used.
#[test]
fn a_forgotten_password_is_reset_by_an_emailed_link_that_works_once() {
    use std::time::Duration;
    if !have_python_module("aiosmtpd", "aiosmtpd (pip install aiosmtpd)") {
        return;
    }
    let maildir = tempfile::tempdir().unwrap();
    let (mut smtpd, port) = start_smtpd(maildir.path(), None);
    let port_text = port.to_string();
    let server = setup_with(&[
        ("SLUICE_HTTP_PUBLIC_URL", "https://sluice.example.org/"),
        ("SLUICE_NOTIFICATIONS_SMTP_HOST", "127.0.0.1"),
        ("SLUICE_NOTIFICATIONS_SMTP_PORT", &port_text),
        ("SLUICE_NOTIFICATIONS_FROM", "sluice@vendor.example"),
    ]);
    let bob = session(&server, "bob@beta.org", "secret-1-for-tests");
    assert!(request(&server, "GET", "/login", None, "").body.contains("href=\"/reset\""));
    // An address with an account and one without get the same page.
    let known = ask_reset(&server, "Bob%40beta.org");
    let unknown = ask_reset(&server, "nobody%40beta.org");
    // Posted without the form's token (from another site): refused, nothing sent.
    let forged = request(&server, "POST", "/reset", None, "email=bob%40beta.org&ask_token=x");
    assert_eq!(forged.status, 403);
    assert_eq!((known.status, unknown.status), (200, 200));
    assert_eq!(known.body, unknown.body, "the answer does not say whether the address has an account");

    // Bob asks once more (a first mail slow to come): two links.
    assert_eq!(ask_reset(&server, "bob%40beta.org").status, 200);
    let new = maildir.path().join("new");
    let found = server.wait_until(Duration::from_secs(30), |_| std::fs::read_dir(&new).unwrap().count() >= 2);
    std::thread::sleep(Duration::from_millis(500));
    let mails: Vec<_> = std::fs::read_dir(&new).unwrap().flatten().map(|e| e.path()).collect();
    let _ = smtpd.kill();
    let _ = smtpd.wait();
    assert!(found && mails.len() == 2, "two emails, to the account that exists: {mails:?}");
    let tokens: Vec<String> = mails
        .iter()
        .map(|m| {
            // Read it as a mail client would (the body is base64).
            let read = std::process::Command::new("python3")
                .args([
                    "-c",
                    "import email,sys; m=email.message_from_binary_file(open(sys.argv[1],'rb')); print(m['To']); print(m.get_payload(decode=True).decode())",
                ])
                .arg(m)
                .output()
                .unwrap();
            let mail = String::from_utf8(read.stdout).unwrap();
            assert!(mail.starts_with("bob@beta.org"), "{mail}");
            let at = mail
                .find("https://sluice.example.org/reset/")
                .unwrap_or_else(|| panic!("a link to the public address: {mail}"))
                + 33;
            let token: String =
                mail[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect();
            assert!(token.len() >= 20, "{mail}");
            token
        })
        .collect();
    let token = tokens[0].clone();

    let path = format!("/reset/{token}");
    let form = request(&server, "GET", &path, None, "");
    assert!(form.status == 200 && form.body.contains("Choose a new password"), "{}", form.body);
    // A short password is refused and the link still works.
    let short = request(&server, "POST", &path, None, "password=short");
    assert!(short.body.contains("Not set"), "{}", short.body);
    let set = request(&server, "POST", &path, None, "password=a-brand-new-password");
    assert!(set.status == 200 && set.body.contains("Password set"), "{}", set.body);
    assert_eq!(request(&server, "GET", "/t/beta", Some(&bob), "").status, 303, "the old session ended");
    assert_eq!(login(&server, "bob@beta.org", "secret-1-for-tests").status, 401);
    session(&server, "bob@beta.org", "a-brand-new-password");
    // Once one is used, every link of the account is dead; so is one sluice never sent.
    let other = format!("/reset/{}", tokens[1]);
    assert_eq!(request(&server, "POST", &other, None, "password=another-new-password").status, 404);
    assert_eq!(request(&server, "POST", &path, None, "password=another-new-password").status, 404);
    assert_eq!(
        request(&server, "POST", "/reset/not-a-token-at-all", None, "password=another-new-password").status,
        404
    );
    session(&server, "bob@beta.org", "a-brand-new-password");

    let log = server.cli_ok(&["audit", "--tenant", "beta"]);
    assert!(log.contains("password_reset.asked") && log.contains("password_reset.used"), "{log}");
    let all = server.cli_ok(&["audit", "--json"]);
    assert!(!all.contains(&token) && !all.contains("a-brand-new-password"), "{all}");
    let server_log = server.log();
    assert!(!server_log.contains(&token) && !server_log.contains("a-brand-new-password"), "{server_log}");
    assert!(!stored_text(&server).contains(&token), "the token is kept only hashed");
    assert!(!all.contains("nobody@beta.org"), "an address with no account leaves no entry: {all}");
    // Anyone may ask for any address: the entry names the account asked for, not as its actor.
    let entries: serde_json::Value = serde_json::from_str(&all).unwrap();
    let asked = entries.as_array().unwrap().iter().find(|e| e["action"] == "password_reset.asked").unwrap();
    assert_eq!(
        (asked["actor"].as_str(), asked["target"].as_str()),
        (Some("(not logged in)"), Some("bob@beta.org"))
    );
}

/// Asks for a reset as a browser does: the form (its token in a cookie and a field), then the post.
fn ask_reset(server: &Server, email: &str) -> Reply {
    let form = request(server, "GET", "/reset", None, "");
    let cookie = form.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    let at = form.body.find("name=\"ask_token\" value=\"").unwrap() + 24;
    let token = &form.body[at..at + form.body[at..].find('"').unwrap()];
    request(server, "POST", "/reset", Some(&cookie), &format!("ask_token={token}&email={email}"))
}

/// Without a public address (or SMTP) the page says whom to ask instead.
#[test]
fn without_a_public_address_the_reset_page_says_whom_to_ask() {
    let server = setup();
    let r = request(&server, "GET", "/reset", None, "");
    assert!(r.status == 200 && r.body.contains("ask your tenant"), "{}", r.body);
    let out = server.cli_with_env(&["doctor"], &[("SLUICE_HTTP_PUBLIC_URL", "sluice.example.org")]);
    assert!(!out.status.success() && output_text(&out).contains("public_url"), "{}", output_text(&out));
}

/// What the database holds, as text (to look for what must not be stored).
fn stored_text(server: &Server) -> String {
    String::from_utf8_lossy(&server.stored_bytes()).into_owned()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Sets up a second factor as a person does: the key from the page into an "app", its code
/// back; returns the secret and the recovery codes shown.
fn enrol(server: &Server, cookie: &str) -> (Vec<u8>, Vec<String>) {
    let account = request(server, "GET", "/account", Some(cookie), "").body;
    assert!(account.contains("Set up two-step login"), "{account}");
    let r = request(
        server,
        "POST",
        "/account/second-factor/start",
        Some(cookie),
        &format!("csrf={}", csrf(&account)),
    );
    assert_eq!(
        (r.status, r.header("location").as_deref()),
        (303, Some("/account/second-factor")),
        "{}",
        r.body
    );
    let page = request(server, "GET", "/account/second-factor", Some(cookie), "").body;
    assert!(page.contains("<svg"), "a QR code: {page}");
    let at = page.find("Key: <code>").unwrap() + 11;
    let key: String = page[at..at + page[at..].find('<').unwrap()].split_whitespace().collect();
    let secret = data_encoding::BASE32_NOPAD.decode(key.as_bytes()).unwrap();
    let at = page.find("name=\"enrolling\" value=\"").unwrap() + 24;
    let enrolling = &page[at..at + page[at..].find('"').unwrap()];
    // A wrong code first: refused, nothing switched on.
    let wrong = sluice_core::totp::code_at(&secret, now_secs() + 600);
    let form = format!("csrf={}&enrolling={}&code=", csrf(&page), form_encode(enrolling));
    let r =
        request(server, "POST", "/account/second-factor/confirm", Some(cookie), &format!("{form}{wrong}"));
    assert!(r.header("location").unwrap().contains("Not%20switched%20on"), "{}", r.head);
    let code = sluice_core::totp::code_at(&secret, now_secs());
    let r = request(server, "POST", "/account/second-factor/confirm", Some(cookie), &format!("{form}{code}"));
    assert!(r.status == 200 && r.body.contains("Two-step login is on"), "{}", r.body);
    let at = r.body.find("<pre>").unwrap() + 5;
    let codes: Vec<String> =
        r.body[at..at + r.body[at..].find("</pre>").unwrap()].lines().map(str::to_owned).collect();
    assert_eq!(codes.len(), 10, "{}", r.body);
    (secret, codes)
}

/// A login that stops at the second step: its pending cookie and the code form's token.
fn password_step(server: &Server, email: &str, password: &str) -> (String, String) {
    let r = login(server, email, password);
    assert_eq!((r.status, r.header("location").as_deref()), (303, Some("/login/code")), "{}", r.body);
    let cookie = r.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    let form = request(server, "GET", "/login/code", Some(&cookie), "").body;
    (cookie.clone(), csrf(&form))
}

/// TOTP after the password: set up with a code from the app, recovery codes shown once; a
/// pending login opens no page; each code and each recovery code works once; five wrong
/// codes ask for the password again; switching it off takes the password and a code.
#[test]
fn a_second_factor_is_set_up_and_each_code_logs_in_once() {
    let server = setup();
    let bob = session(&server, "bob@beta.org", "secret-1-for-tests");
    let (secret, recovery) = enrol(&server, &bob);
    assert!(request(&server, "GET", "/account", Some(&bob), "").body.contains("10 recovery codes left"));

    let (pending, token) = password_step(&server, "bob@beta.org", "secret-1-for-tests");
    assert_eq!(request(&server, "GET", "/t/beta", Some(&pending), "").status, 303, "no page before the code");
    let code = sluice_core::totp::code_at(&secret, now_secs());
    // The code the enrolment used is spent: the same step is refused.
    let mut r = request(&server, "POST", "/login/code", Some(&pending), &format!("csrf={token}&code={code}"));
    let fresh = r.status == 303;
    if !fresh {
        assert_eq!(r.status, 401, "{}", r.body);
        assert!(r.body.contains("used already"), "{}", r.body);
        // A recovery code instead (dashes and case as typed).
        let typed = recovery[0].to_uppercase();
        r = request(&server, "POST", "/login/code", Some(&pending), &format!("csrf={token}&code={typed}"));
        assert_eq!((r.status, r.header("location").as_deref()), (303, Some("/t/beta")), "{}", r.body);
    }
    // The whole session has a new token; the pending one (which someone could have planted
    // in this browser) opens nothing.
    let full = r.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    assert_ne!(full, pending);
    assert_eq!(request(&server, "GET", "/t/beta", Some(&full), "").status, 200, "the session is whole now");
    assert_eq!(request(&server, "GET", "/t/beta", Some(&pending), "").status, 303);
    // With it on, setting up another phone is refused: a session alone cannot swap it.
    let account = request(&server, "GET", "/account", Some(&full), "").body;
    let r = request(
        &server,
        "POST",
        "/account/second-factor/start",
        Some(&full),
        &format!("csrf={}", csrf(&account)),
    );
    assert!(r.header("location").unwrap().contains("Not%20set%20up"), "{}", r.head);
    let pending = full;
    // Whichever way that went, the code is spent now: replayed, it is refused.
    let (replay, token) = password_step(&server, "bob@beta.org", "secret-1-for-tests");
    let r = request(&server, "POST", "/login/code", Some(&replay), &format!("csrf={token}&code={code}"));
    assert_eq!(r.status, 401, "fresh: {fresh}; {}", r.body);

    // A recovery code works once.
    let (second, token) = password_step(&server, "bob@beta.org", "secret-1-for-tests");
    let r =
        request(&server, "POST", "/login/code", Some(&second), &format!("csrf={token}&code={}", recovery[1]));
    assert_eq!(r.status, 303, "{}", r.body);
    let (third, token) = password_step(&server, "bob@beta.org", "secret-1-for-tests");
    let r =
        request(&server, "POST", "/login/code", Some(&third), &format!("csrf={token}&code={}", recovery[1]));
    assert_eq!(r.status, 401, "a used recovery code: {}", r.body);
    // Five wrong codes (that was the first): the pending login ends, a right code is too late.
    for _ in 0..3 {
        let r = request(&server, "POST", "/login/code", Some(&third), &format!("csrf={token}&code=abcdef"));
        assert_eq!(r.status, 401);
    }
    let r = request(&server, "POST", "/login/code", Some(&third), &format!("csrf={token}&code=abcdef"));
    assert_eq!((r.status, r.header("location").as_deref()), (303, Some("/login")), "the password again");
    let r =
        request(&server, "POST", "/login/code", Some(&third), &format!("csrf={token}&code={}", recovery[2]));
    assert_eq!((r.status, r.header("location").as_deref()), (303, Some("/login")), "the password again");

    // New recovery codes: the password and the app's next code (a recovery code does not
    // make new ones); the old codes stop working.
    let account = request(&server, "GET", "/account", Some(&pending), "").body;
    let renew = |code: &str| format!("csrf={}&password=secret-1-for-tests&code={code}", csrf(&account));
    let r = request(
        &server,
        "POST",
        "/account/second-factor/recovery-codes",
        Some(&pending),
        &renew(&recovery[3]),
    );
    assert!(r.header("location").unwrap().contains("Not%20renewed"), "{}", r.head);
    let next = sluice_core::totp::code_at(&secret, now_secs() + 30);
    let r = request(&server, "POST", "/account/second-factor/recovery-codes", Some(&pending), &renew(&next));
    assert!(r.status == 200 && r.body.contains("New recovery codes"), "{}", r.body);
    let at = r.body.find("<pre>").unwrap() + 5;
    let renewed: Vec<String> =
        r.body[at..at + r.body[at..].find("</pre>").unwrap()].lines().map(str::to_owned).collect();
    assert_eq!(renewed.len(), 10);
    let (fourth, token) = password_step(&server, "bob@beta.org", "secret-1-for-tests");
    let r =
        request(&server, "POST", "/login/code", Some(&fourth), &format!("csrf={token}&code={}", recovery[3]));
    assert_eq!(r.status, 401, "an old recovery code no longer works: {}", r.body);

    // Off: the password and a code (a new recovery code here; the app's was used this step).
    let account = request(&server, "GET", "/account", Some(&pending), "").body;
    let off = format!("csrf={}&password=secret-1-for-tests&code={}", csrf(&account), renewed[0]);
    let r = request(&server, "POST", "/account/second-factor/off", Some(&pending), &off);
    assert!(r.header("location").unwrap().contains("is%20off"), "{}", r.head);
    session(&server, "bob@beta.org", "secret-1-for-tests");

    let log = server.cli_ok(&["audit", "--tenant", "beta", "--json"]);
    for needle in [
        "second_factor.on",
        "second_factor.off",
        "second_factor.recovery_codes",
        "login.second_factor",
        "recovery code",
    ] {
        assert!(log.contains(needle), "{needle}: {log}");
    }
    let secret_text = data_encoding::BASE32_NOPAD.encode(&secret);
    let database = stored_text(&server);
    let server_log = server.log();
    for kept in
        [secret_text.as_str(), recovery[4].as_str(), &recovery[4].replace('-', ""), renewed[5].as_str()]
    {
        assert!(!log.contains(kept) && !database.contains(kept), "{kept} is stored or audited");
        assert!(!server_log.contains(kept), "{kept} is in the server's log");
    }
}

/// `[http] second_factor = "owners"`: an owner without one sees only the account page until
/// it sets one up; a user does not need one; the operator switches a lost one off.
#[test]
fn the_operator_requires_a_second_factor_for_owners() {
    let server = setup_with(&[("SLUICE_HTTP_SECOND_FACTOR", "owners")]);
    let ann = session(&server, "ann@acme.org", "secret-1-for-tests");
    let r = request(&server, "GET", "/t/acme", Some(&ann), "");
    assert_eq!((r.status, r.header("location").as_deref()), (303, Some("/account")));
    assert!(request(&server, "GET", "/account", Some(&ann), "").body.contains("requires two-step login"));
    let bob = session(&server, "bob@beta.org", "secret-1-for-tests");
    assert_eq!(request(&server, "GET", "/t/beta", Some(&bob), "").status, 200, "users may go without");
    // ... unless an owner lets them manage as owners do: then they are covered too.
    server.cli_ok(&["user", "grant", "bob@beta.org"]);
    let r = request(&server, "GET", "/t/beta", Some(&bob), "");
    assert_eq!((r.status, r.header("location").as_deref()), (303, Some("/account")));
    server.cli_ok(&["user", "ungrant", "bob@beta.org"]);

    let (secret, _) = enrol(&server, &ann);
    assert_eq!(request(&server, "GET", "/t/acme", Some(&ann), "").status, 200);
    let page = request(&server, "GET", "/account", Some(&ann), "").body;
    assert!(page.contains("it stays on") && !page.contains("second-factor/off"), "{page}");
    assert!(!secret.is_empty());

    // Lost phone: the operator switches it off; her sessions end; she must set one up again.
    let none = server.cli(&["user", "second-factor-off", "bob@beta.org"]);
    assert_eq!(none.status.code(), Some(2), "{}", output_text(&none));
    server.cli_ok(&["user", "second-factor-off", "ann@acme.org"]);
    assert_eq!(request(&server, "GET", "/t/acme", Some(&ann), "").status, 303);
    let again = session(&server, "ann@acme.org", "secret-1-for-tests");
    assert_eq!(
        request(&server, "GET", "/t/acme", Some(&again), "").header("location").as_deref(),
        Some("/account")
    );
    assert!(server.cli_ok(&["audit", "--tenant", "acme"]).contains("second_factor.off"));
    let bad = server.cli_with_env(&["doctor"], &[("SLUICE_HTTP_SECOND_FACTOR", "always")]);
    assert!(!bad.status.success() && output_text(&bad).contains("second_factor"), "{}", output_text(&bad));
}
