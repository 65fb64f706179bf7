//! The command line: tenants, keys, passwords, configuration errors and exit codes.

use crate::common::*;
use std::process::Command;

fn sluice(data: &std::path::Path, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Runs a command whose reader goes away: at once, or after the first byte (`| head -c1`).
fn with_stdout_closed(data: &std::path::Path, args: &[&str], after_one_byte: bool) -> std::process::Output {
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .current_dir(data)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    if after_one_byte {
        let _ = std::io::Read::read(&mut stdout, &mut [0u8; 1]);
    }
    drop(stdout);
    child.wait_with_output().unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn tenant_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = sluice(d, &["tenant", "add", "north-high", "--folders", "students,guardians"], "");
    assert!(out.status.success(), "{}", text(&out));
    assert!(d.join("tenants/north-high/students").is_dir());
    assert!(d.join("tenants/north-high/exports").is_dir());
    assert!(d.join("tenants/north-high/errors").is_dir());
    // Private files never live inside a tenant's tree.
    assert!(d.join("sluice.db").is_file());

    let dup = sluice(d, &["tenant", "add", "north-high"], "");
    assert_eq!(dup.status.code(), Some(1));
    assert!(text(&dup).contains("already exists"));

    let bad = sluice(d, &["tenant", "add", "../evil"], "");
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad).contains("not allowed"), "{}", text(&bad));
    assert!(!d.join("evil").exists());

    // One password rule everywhere (the dashboard's): at least 12 characters.
    let short = sluice(d, &["tenant", "passwd", "north-high", "--password-stdin"], "s3cret\n");
    assert_eq!(short.status.code(), Some(1), "{}", text(&short));
    assert!(text(&short).contains("at least 12 characters"), "{}", text(&short));
    let pw = sluice(d, &["tenant", "passwd", "north-high", "--password-stdin"], "s3cret-passphrase\n");
    assert!(pw.status.success(), "{}", text(&pw));
    let empty = sluice(d, &["tenant", "passwd", "north-high", "--password-stdin"], "");
    assert_eq!(empty.status.code(), Some(1));
    assert!(text(&empty).contains("no password on stdin"));

    let show = sluice(d, &["tenant", "show", "north-high", "--json"], "");
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(v["folders"], serde_json::json!(["students", "guardians"]));
    assert_eq!(v["password_set"], true);
    assert_eq!(v["disabled"], false);
    // The hash is argon2id and the plain password is stored nowhere.
    let db = std::fs::read(d.join("sluice.db")).unwrap();
    assert!(!db.windows(6).any(|w| w == b"s3cret"));
    assert!(!db.windows(17).any(|w| w == b"s3cret-passphrase"));
    assert!(db.windows(9).any(|w| w == b"$argon2id"));

    assert!(sluice(d, &["tenant", "disable", "north-high"], "").status.success());
    let list = sluice(d, &["tenant", "list", "--json"], "");
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v[0]["disabled"], true);

    let set = sluice(d, &["tenant", "set", "north-high", "folders=students,oneroster"], "");
    assert!(set.status.success(), "{}", text(&set));
    assert!(d.join("tenants/north-high/oneroster").is_dir());
    let by_type = sluice(d, &["tenant", "set", "north-high", "types=students,badge,guardians"], "");
    assert!(by_type.status.success(), "{}", text(&by_type));
    let v: serde_json::Value =
        serde_json::from_slice(&sluice(d, &["tenant", "show", "north-high", "--json"], "").stdout).unwrap();
    assert_eq!(v["folders"], serde_json::json!(["students", "badge", "guardians"]));
    assert_eq!(sluice(d, &["tenant", "set", "north-high", "types=unicorns"], "").status.code(), Some(2));
    let shown = text(&sluice(d, &["tenant", "show", "north-high"], ""));
    assert!(shown.contains("imports:   as soon as an upload closes"), "{shown}");
    let unknown = sluice(d, &["tenant", "set", "north-high", "colour=blue"], "");
    assert_eq!(unknown.status.code(), Some(2));
    let missing = sluice(d, &["tenant", "disable", "nobody"], "");
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing).contains("no tenant named"));
    // A name that cannot be a tenant's is refused where the command line is read, as
    // rejected input, whichever command takes it.
    for args in [
        &["tenant", "show", "North-High"][..],
        &["imports", "--tenant", "../north-high"],
        &["export", "--tenant", "north high", "--type", "students"],
        &["key", "list", "north-high-north-high-north-high-x"],
    ] {
        let bad = sluice(d, args, "");
        assert_eq!(bad.status.code(), Some(1), "{args:?}: {}", text(&bad));
        assert!(text(&bad).contains("tenant name"), "{args:?}: {}", text(&bad));
    }
}

/// The change the issue measured: a bad time zone in the same command as a schedule trigger
/// left the tenant on a schedule trigger "that is not set". Now it is one change, refused whole.
#[test]
fn a_refused_tenant_set_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(sluice(d, &["tenant", "add", "acme", "--folders", "students"], "").status.success());
    let out = sluice(
        d,
        &["tenant", "set", "acme", "trigger=schedule", "schedule=0 2 * * *", "timezone=Mars/Olympus"],
        "",
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("timezone: unknown time zone \"Mars/Olympus\""), "{}", text(&out));
    let shown = text(&sluice(d, &["tenant", "show", "acme"], ""));
    assert!(shown.contains("imports:   as soon as an upload closes"), "{shown}");
    // A schedule trigger without a schedule is refused with the command that would do.
    let out = sluice(d, &["tenant", "set", "acme", "notify.email=ann@acme.org", "trigger=schedule"], "");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("schedule=\"0 2 * * *\""), "{}", text(&out));
    let v: serde_json::Value =
        serde_json::from_slice(&sluice(d, &["tenant", "show", "acme", "--json"], "").stdout).unwrap();
    assert_eq!(
        (v["trigger"].as_str(), v["notify_emails"].as_array().map(Vec::len)),
        (Some("on_upload"), Some(0)),
        "{v}"
    );
    // Together, in one command, they are one change.
    let out = sluice(
        d,
        &[
            "tenant",
            "set",
            "acme",
            "trigger=schedule",
            "schedule=0 2 * * *",
            "timezone=America/Chicago",
            "strictness=strict",
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&sluice(d, &["tenant", "show", "acme"], ""));
    assert!(
        shown.contains("0 2 * * *")
            && shown.contains("America/Chicago")
            && shown.contains("strictness=strict"),
        "{shown}"
    );
}

/// Run from the wrong directory, a command says where it looked and creates nothing; only
/// `serve` and `tenant add` create a data directory.
#[test]
fn a_command_on_a_missing_data_directory_exits_2_without_creating_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("sluice-data");
    for args in
        [&["tenant", "list"][..], &["imports", "--tenant", "acme"], &["doctor"], &["key", "list", "acme"]]
    {
        let out = sluice(&missing, args, "");
        let text = text(&out);
        let expected = if args[0] == "doctor" { 1 } else { 2 };
        assert_eq!(out.status.code(), Some(expected), "{args:?}: {text}");
        assert!(
            text.contains(&missing.display().to_string()) && text.contains("--data-dir"),
            "{args:?}: {text}"
        );
        assert!(!missing.exists(), "{args:?} created the data directory");
    }
    // An existing folder that is not a data directory (empty, or `tenants/` one level too
    // deep) is not made into one either.
    std::fs::create_dir(&missing).unwrap();
    let out = sluice(&missing, &["tenant", "list"], "");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("no sluice.db"), "{}", text(&out));
    assert_eq!(std::fs::read_dir(&missing).unwrap().count(), 0, "nothing was created in it");
    let out = sluice(&missing, &["tenant", "add", "acme"], "");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("created in {}", missing.display())), "{}", text(&out));
    assert!(missing.join("sluice.db").is_file());
    assert!(sluice(&missing, &["tenant", "list"], "").status.success());
}

/// `sluice imports --json | head -c1`: the reader goes away; the command ends quietly, exit 0,
/// nothing on stderr (it used to panic with a backtrace, or print "error: Broken pipe").
#[test]
fn the_cli_piped_into_head_exits_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(sluice(d, &["tenant", "add", "acme", "--folders", "students"], "").status.success());
    let file = d.join("students.csv");
    let mut csv = String::from("sisId,firstName,lastName\n");
    for i in 0..5000 {
        csv.push_str(&format!("S{i},First{i},Last{i}\n"));
    }
    std::fs::write(&file, csv).unwrap();
    let out = sluice(d, &["import", "--tenant", "acme", file.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", text(&out));
    for args in [
        &["imports", "--tenant", "acme", "--json"][..],
        &["tenant", "list"],
        &["types", "--json"],
        &["records", "--tenant", "acme", "--type", "students"],
        &["records", "--tenant", "acme", "--type", "students", "--format", "json"],
    ] {
        // Like `head -c1`: read one byte (if any comes), then close the pipe.
        let out = with_stdout_closed(d, args, true);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{args:?}");
    }
}

/// Its reader gone after the first line, a command still does all its work and exits with its
/// own code: every file is imported, a validation that rejects still exits 1.
#[test]
fn a_closed_pipe_drops_output_not_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(sluice(d, &["tenant", "add", "acme", "--folders", "students"], "").status.success());
    std::fs::write(d.join("a.csv"), "sisId,firstName,lastName\nS1,Ann,Lee\nS2,Bo,Ng\n").unwrap();
    std::fs::write(d.join("b.csv"), "sisId,firstName,lastName\nS1,Ann,Lee\nS2,Bo,Ng\nS3,Cy,Ma\n").unwrap();
    std::fs::write(d.join("bad.csv"), "sisId,firstName,lastName\nS1,,Lee\n").unwrap();
    let closed = |args: &[&str]| with_stdout_closed(d, args, false);
    let out = closed(&["import", "--tenant", "acme", "--type", "students", "a.csv", "b.csv"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value =
        serde_json::from_slice(&sluice(d, &["imports", "--tenant", "acme", "--json"], "").stdout).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(2), "both files imported: {v}");
    let out = closed(&["validate", "--type", "students", "bad.csv"]);
    assert_eq!(out.status.code(), Some(1), "a rejection is still exit 1: {}", text(&out));
    // An API key whose token nobody saw is revoked again, and the command says so.
    let out = closed(&["apikey", "add", "--tenant", "acme"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("revoked"), "{}", text(&out));
    let keys: serde_json::Value =
        serde_json::from_slice(&sluice(d, &["apikey", "list", "--tenant", "acme", "--json"], "").stdout)
            .unwrap();
    assert_eq!(keys.as_array().map(Vec::len), Some(1), "{keys}");
    assert!(keys[0]["revoked_ms"].is_i64(), "{keys}");
}

#[test]
fn keys_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(sluice(d, &["tenant", "add", "acme"], "").status.success());
    let junk = d.join("junk.pub");
    std::fs::write(&junk, "this is not a key\n").unwrap();
    let out = sluice(d, &["key", "add", "acme", junk.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("junk.pub:1"), "{}", text(&out));
    let good = d.join("good.pub");
    std::fs::write(
        &good,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGRdxvwK0wF8TDL6n1QmB4wtmN6G2bJpuIoSN2gIeMbU sis@district\n",
    )
    .unwrap();
    let out = sluice(d, &["key", "add", "acme", good.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("SHA256:"));
    let again = sluice(d, &["key", "add", "acme", good.to_str().unwrap()], "");
    assert_eq!(again.status.code(), Some(1));
    let list = sluice(d, &["key", "list", "acme", "--json"], "");
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v[0]["comment"], "sis@district");
}

#[test]
fn configuration_errors_exit_2_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sluice.toml");
    std::fs::write(&cfg, "[sftp]\nlisten = \"not an address\"\n").unwrap();
    let out = Command::new(BIN).args(["--config", cfg.to_str().unwrap(), "tenant", "list"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("listen"), "{}", text(&out));
    let out = Command::new(BIN).args(["--config", "/nonexistent.toml", "tenant", "list"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("/nonexistent.toml"));
    let out = Command::new(BIN).arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN)
        .args(["--data-dir", dir.path().to_str().unwrap(), "tenant", "list"])
        .env("SLUICE_SFTP_COMPAT", "maybe")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("SLUICE_SFTP_COMPAT"));
}

#[test]
fn serve_reuses_its_host_key_and_honours_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sluice.toml");
    std::fs::write(
        &cfg,
        // Port 0 for everything: the tests pass while a default `sluice serve` holds 2222 and 8080.
        format!(
            "data_dir = \"{}\"\n[sftp]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
            dir.path().join("d").display()
        ),
    )
    .unwrap();
    let key_path = dir.path().join("d/ssh_host_ed25519_key");
    let mut fingerprints = Vec::new();
    for _ in 0..2 {
        let mut child = Command::new(BIN)
            .args(["--config", cfg.to_str().unwrap(), "serve"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line)
            .unwrap();
        assert!(line.starts_with("sftp listening on 127.0.0.1:"), "{line}");
        fingerprints.push(std::fs::read(&key_path).unwrap());
        Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
        assert!(child.wait().unwrap().success(), "SIGINT must shut down cleanly");
    }
    assert_eq!(fingerprints[0], fingerprints[1], "host key must be generated once and reused");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key_path).unwrap().permissions());
    assert_eq!(mode & 0o077, 0, "host key must be private");
}

/// One `sluice serve` per data directory: a second one says why it will not start (it would
/// run every schedule and import twice on the same SQLite database); once the first has
/// stopped, however it stopped, a new one starts.
#[test]
fn a_second_server_on_the_same_data_directory_refuses_to_start() {
    let mut server = Server::start();
    let mut second = std::process::Command::new(BIN);
    second
        .args(["--data-dir"])
        .arg(server.data_dir())
        .arg("serve")
        .envs([("SLUICE_SFTP_LISTEN", "127.0.0.1:0"), ("SLUICE_HTTP_LISTEN", "127.0.0.1:0")]);
    let out = run_with_timeout(&mut second, std::time::Duration::from_secs(20));
    let said = output_text(&out);
    assert!(!out.status.success(), "{said}");
    if on_postgres() {
        // The first server's state is in PostgreSQL: one without its url is refused as such.
        assert!(
            said.contains("keeps its state in PostgreSQL") && said.contains("SLUICE_DATABASE_URL"),
            "{said}"
        );
    } else {
        assert!(said.contains("another `sluice serve` is running") && said.contains("PostgreSQL"), "{said}");
    }
    // Killed (no clean stop): the lock goes with the process.
    server.kill_and_restart();
    assert!(server.is_running(), "{}", server.log());
    assert_eq!(server.http_get("/healthz").0, 200, "{}", server.log());
}

/// `[sftp] host_key_file`: a key of the operator's (one per cluster, or from a secret store)
/// is read, never made; missing, the server says how to make it and does not start.
#[test]
fn a_host_key_of_the_operators_is_used_and_never_made() {
    let first = Server::start();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("cluster_host_key");
    std::fs::copy(first.data_dir().join("ssh_host_ed25519_key"), &key).unwrap();
    let key_text = key.to_str().unwrap();
    let second = Server::start_with(&[("SLUICE_SFTP_HOST_KEY_FILE", key_text)]);
    // What the server presents, as a client sees it.
    if have("ssh-keyscan", "openssh-client") {
        let scan = Command::new("ssh-keyscan")
            .args(["-t", "ed25519", "-p", &second.port.to_string(), "127.0.0.1"])
            .output()
            .unwrap();
        let presented = String::from_utf8_lossy(&scan.stdout).into_owned();
        let text = std::fs::read_to_string(&key).unwrap();
        let public = russh::keys::PrivateKey::from_openssh(&text).unwrap().public_key().to_openssh().unwrap();
        let blob = public.split_whitespace().nth(1).unwrap().to_owned();
        assert!(presented.contains(&blob), "the server presents the configured key: {presented}");
    }
    assert!(!second.data_dir().join("ssh_host_ed25519_key").exists(), "no key of its own made");
    let doctor = second.cli_with_env(&["doctor"], &[("SLUICE_SFTP_HOST_KEY_FILE", key_text)]);
    assert!(output_text(&doctor).contains("cluster_host_key (SHA256:"), "{}", output_text(&doctor));

    let missing = keys.path().join("nowhere");
    let mut serve = std::process::Command::new(BIN);
    serve.arg("--data-dir").arg(keys.path().join("data")).arg("serve").envs([
        ("SLUICE_SFTP_LISTEN", "127.0.0.1:0"),
        ("SLUICE_HTTP_LISTEN", "127.0.0.1:0"),
        ("SLUICE_SFTP_HOST_KEY_FILE", missing.to_str().unwrap()),
    ]);
    let out = run_with_timeout(&mut serve, std::time::Duration::from_secs(20));
    let said = output_text(&out);
    assert!(
        !out.status.success() && said.contains("does not exist") && said.contains("ssh-keygen"),
        "{said}"
    );
    assert!(!missing.exists());
}
