//! Connectors: sluice pushing exports to a district's own SFTP server. The district's server
//! is a real OpenSSH `sshd` started here on loopback (internal-sftp, key login), and a second
//! sluice (password login). The host key is pinned before anything is sent; a server whose key
//! changed is refused with both fingerprints and nothing written.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An OpenSSH server for this test: the user running the tests logs in with `client_key`, SFTP
/// only. (As root, sshd runs as it does in production; as another user it can only let that
/// same user in, which is all the tests need.)
struct Sshd {
    dir: PathBuf,
    port: u16,
    child: Child,
    client_key: PathBuf,
    remote: PathBuf,
}

impl Sshd {
    fn start(dir: &Path) -> Option<Sshd> {
        let found = Path::new("/usr/sbin/sshd").is_file() && have("ssh-keygen", "openssh-client");
        if !external_check(found, "/usr/sbin/sshd", "openssh-server") {
            return None;
        }
        let dir = dir.join("sshd");
        std::fs::create_dir_all(&dir).unwrap();
        let keygen = |path: &Path| {
            let out = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(path)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", output_text(&out));
        };
        let client_key = dir.join("client_key");
        keygen(&client_key);
        std::fs::copy(client_key.with_extension("pub"), dir.join("authorized_keys")).unwrap();
        keygen(&dir.join("host_key"));
        let remote = dir.join("remote");
        std::fs::create_dir_all(&remote).unwrap();
        // Where sshd (as root) puts its privilege-separated children; not needed otherwise.
        let _ = std::fs::create_dir_all("/run/sshd");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut me =
            Sshd { dir: dir.clone(), port, child: Command::new("true").spawn().unwrap(), client_key, remote };
        me.launch();
        Some(me)
    }

    /// (Re)starts sshd on the same port with the current host key.
    fn launch(&mut self) {
        let d = &self.dir;
        // A second host key, of another type, once `add_rsa_host_key` made one.
        let rsa = d.join("host_key_rsa");
        let rsa = if rsa.exists() { format!("HostKey {}\n", rsa.display()) } else { String::new() };
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {}\nListenAddress 127.0.0.1\nHostKey {}/host_key\n{rsa}AuthorizedKeysFile {}/authorized_keys\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 UsePAM no\nStrictModes no\nSubsystem sftp internal-sftp\nPidFile {}/sshd.pid\n",
                self.port,
                d.display(),
                d.display(),
                d.display()
            ),
        )
        .unwrap();
        self.child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("sshd.log")).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not start: {}",
                std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// An RSA host key beside the Ed25519 one (as many servers have both); returns its public
    /// key line (`ssh-rsa AAAA...`).
    fn add_rsa_host_key(&mut self) -> String {
        self.stop();
        let path = self.dir.join("host_key_rsa");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "rsa", "-b", "2048", "-N", "", "-f"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
        self.launch();
        let line = std::fs::read_to_string(path.with_extension("pub")).unwrap();
        line.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
    }

    /// A new host key: the server is not the one that was pinned any more.
    fn change_host_key(&mut self) {
        self.stop();
        std::fs::remove_file(self.dir.join("host_key")).unwrap();
        std::fs::remove_file(self.dir.join("host_key.pub")).unwrap();
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(self.dir.join("host_key"))
            .output()
            .unwrap();
        assert!(out.status.success());
        self.launch();
    }

    /// `SHA256:...` of the host key, as ssh-keygen prints it.
    fn fingerprint(&self) -> String {
        let out = Command::new("ssh-keygen").arg("-lf").arg(self.dir.join("host_key.pub")).output().unwrap();
        String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).unwrap().to_owned()
    }

    fn url(&self) -> String {
        format!("sftp://{}@127.0.0.1:{}{}", user(), self.port, self.remote.display())
    }

    fn remote_files(&self) -> Vec<String> {
        files_in(&self.remote)
    }
}

/// The name of the user running the tests (whom the test's sshd lets in).
fn user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn with_students(server: &Server) {
    server.importing_tenant("acme", "pw-for-tests");
    let file = write_file(
        server.dir.path(),
        "students.csv",
        "sisId,firstName,lastName\nS1,Zoë,Núñez\nS2,Bo,Ray\n".as_bytes(),
    );
    server.cli_ok(&["import", "--tenant", "acme", "--type", "students", file.to_str().unwrap()]);
}

#[test]
fn a_saved_export_is_pushed_whole_to_the_districts_server_once_its_host_key_is_pinned() {
    let server = Server::start();
    let Some(mut sshd) = Sshd::start(server.dir.path()) else { return };
    with_students(&server);
    let said = server.cli_ok(&[
        "connector",
        "add",
        "acme",
        "district",
        "--url",
        &sshd.url(),
        "--key",
        sshd.client_key.to_str().unwrap(),
    ]);
    assert!(said.contains("no host key pinned yet"), "{said}");
    server.cli_ok(&["export", "add", "acme", "roster", "--type", "students", "--to", "district"]);
    // Nothing is sent before the key is pinned; the export itself is in /exports.
    let o = server.cli(&["export", "run", "acme", "roster"]);
    assert_eq!(o.status.code(), Some(1), "{}", output_text(&o));
    assert!(output_text(&o).contains("no pinned host key"), "{}", output_text(&o));
    assert!(sshd.remote_files().is_empty());
    let exported = server.tenant_dir("acme").join("exports").join("roster.csv");
    assert!(exported.is_file());

    let said = server.cli_ok(&["connector", "test", "acme", "district"]);
    assert!(said.contains(&sshd.fingerprint()) && said.contains("not pinned"), "{said}");
    let said = server.cli_ok(&["connector", "test", "acme", "district", "--accept"]);
    assert!(
        said.contains(&format!("pinned {}", sshd.fingerprint())) && said.contains("holds 0 file(s)"),
        "{said}"
    );

    // Someone with access to the district's folder left a link under a temporary name an
    // older push might have used: it is removed, never written through.
    let victim = sshd.dir.join("victim.txt");
    std::fs::write(&victim, "untouched").unwrap();
    std::os::unix::fs::symlink(&victim, sshd.remote.join(".roster.csv.0123456789abcdef.sluice.part"))
        .unwrap();
    let said = server.cli_ok(&["export", "run", "acme", "roster"]);
    assert!(said.contains("and district:"), "{said}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
    assert_eq!(sshd.remote_files(), ["roster.csv"], "no temporary file left");
    let local = std::fs::read(&exported).unwrap();
    assert_eq!(std::fs::read(sshd.remote.join("roster.csv")).unwrap(), local, "byte-identical");
    // A second run replaces the file in one step.
    server.cli_ok(&["export", "run", "acme", "roster"]);
    assert_eq!(sshd.remote_files(), ["roster.csv"]);
    // An export that goes to the district alone: nothing in /exports, nothing left in the spool;
    // saving, listing and removing it say so (they named /exports/direct.csv).
    let said = server.cli_ok(&[
        "export",
        "add",
        "acme",
        "direct",
        "--type",
        "students",
        "--to",
        "district",
        "--not-in-exports",
    ]);
    assert!(said.contains("writes district only (not kept in /exports)"), "{said}");
    let listed = server.cli_ok(&["export", "list", "acme"]);
    let line = listed.lines().find(|l| l.starts_with("direct ")).unwrap_or_default();
    assert!(line.ends_with("district only (not kept in /exports)"), "{listed}");
    assert!(
        listed.lines().any(|l| l.starts_with("roster ") && l.ends_with("/exports/roster.csv and district")),
        "{listed}"
    );
    let said = server.cli_ok(&["export", "run", "acme", "direct"]);
    assert!(said.contains("to district:") && !said.contains("/exports"), "{said}");
    assert_eq!(sshd.remote_files(), ["direct.csv", "roster.csv"]);
    assert!(!server.tenant_dir("acme").join("exports").join("direct.csv").exists());
    let spool = server.data_dir().join("spool").join("exports");
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0, "no temporary file left");
    std::fs::remove_file(sshd.remote.join("direct.csv")).unwrap();
    let said = server.cli_ok(&["export", "remove", "acme", "direct"]);
    assert!(!said.contains("/exports"), "{said}");
    let o = server.cli(&["export", "add", "acme", "nowhere", "--type", "students", "--not-in-exports"]);
    assert_eq!(o.status.code(), Some(2), "--not-in-exports needs --to: {}", output_text(&o));

    // Any file, pushed by hand; a name that is not one file name on the server is refused.
    let notes = write_file(server.dir.path(), "notes.txt", b"for the district\n");
    let said = server.cli_ok(&[
        "connector",
        "push",
        "acme",
        "district",
        notes.to_str().unwrap(),
        "--as",
        "readme.txt",
    ]);
    assert!(said.contains("pushed 17 bytes"), "{said}");
    assert_eq!(std::fs::read(sshd.remote.join("readme.txt")).unwrap(), b"for the district\n");
    let o = server.cli(&[
        "connector",
        "push",
        "acme",
        "district",
        notes.to_str().unwrap(),
        "--as",
        "../escape.txt",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert!(!sshd.remote.parent().unwrap().join("escape.txt").exists());
    std::fs::remove_file(sshd.remote.join("readme.txt")).unwrap();

    // Replacing the connector (a new key, the same server) keeps its pin.
    let said = server.cli_ok(&[
        "connector",
        "add",
        "acme",
        "district",
        "--replace",
        "--url",
        &sshd.url(),
        "--key",
        sshd.client_key.to_str().unwrap(),
    ]);
    assert!(said.contains(&format!("host key {} pinned", sshd.fingerprint())), "{said}");
    // A folder the server does not have is said at once, not retried for half a minute.
    let started = Instant::now();
    let missing = format!("{}/nowhere", sshd.url());
    server.cli_ok(&[
        "connector",
        "add",
        "acme",
        "lost",
        "--url",
        &missing,
        "--key",
        sshd.client_key.to_str().unwrap(),
        "--host-key",
        &std::fs::read_to_string(sshd.dir.join("host_key.pub")).unwrap(),
    ]);
    let o = server.cli(&["connector", "push", "acme", "lost", notes.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", output_text(&o));
    assert!(output_text(&o).contains("no such file or folder"), "{}", output_text(&o));
    assert!(started.elapsed() < Duration::from_secs(5), "not retried: {:?}", started.elapsed());
    server.cli_ok(&["connector", "remove", "acme", "lost"]);

    // A connector added without --pull does not pull.
    let o = server.cli(&["connector", "pull", "acme", "district"]);
    assert_eq!(o.status.code(), Some(1), "{}", output_text(&o));
    assert!(output_text(&o).contains("not set up to pull"), "{}", output_text(&o));

    // The list shows the pin, never the credential.
    let list = server.cli_ok(&["connector", "list", "acme", "--json"]);
    assert!(list.contains(&sshd.fingerprint()) && !list.contains("PRIVATE KEY"), "{list}");

    // The district's server now presents another key: refused, both fingerprints named,
    // nothing written.
    let old = sshd.fingerprint();
    std::fs::remove_file(sshd.remote.join("roster.csv")).unwrap();
    sshd.change_host_key();
    let o = server.cli(&["export", "run", "acme", "roster"]);
    assert_eq!(o.status.code(), Some(1), "{}", output_text(&o));
    let text = output_text(&o);
    assert!(text.contains(&old) && text.contains(&sshd.fingerprint()), "{text}");
    assert!(sshd.remote_files().is_empty(), "nothing written to a server that is not the pinned one");
    let log = server.cli_ok(&["connector", "log", "acme", "district"]);
    assert!(log.lines().next().unwrap().contains("failed:"), "{log}");
    assert!(log.lines().filter(|l| l.contains(" bytes")).count() >= 2, "{log}");
}

/// The district's server is another sluice, logged in with a password: the push lands in the
/// tenant's folder there whole (sluice's own upload rules: a `.part` name becomes the file on
/// rename). The password is never stored or shown in the clear.
#[test]
fn a_push_to_another_sluice_logs_in_with_a_sealed_password() {
    let server = Server::start();
    with_students(&server);
    let district = Server::start();
    district.tenant("vendor", "district-pw-for-tests");
    let private = std::fs::read_to_string(district.data_dir().join("ssh_host_ed25519_key")).unwrap();
    let host_key =
        russh::keys::PrivateKey::from_openssh(&private).unwrap().public_key().to_openssh().unwrap();
    let out = server.cli_stdin(
        &[
            "connector",
            "add",
            "acme",
            "sis",
            "--url",
            &format!("sftp://vendor@127.0.0.1:{}/students", district.port),
            "--password-stdin",
            "--host-key",
            host_key.trim(),
        ],
        "district-pw-for-tests\n",
    );
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(output_text(&out).contains(&district.host_fingerprint()), "{}", output_text(&out));
    let said = server.cli_ok(&["export", "--tenant", "acme", "--type", "students", "--to", "sis"]);
    assert!(said.contains("pushed") && said.contains("/students/students.csv"), "{said}");
    let landed = district.tenant_dir("vendor").join("students").join("students.csv");
    let local = std::fs::read(server.tenant_dir("acme").join("exports").join("students.csv")).unwrap();
    assert_eq!(std::fs::read(&landed).unwrap(), local);
    let uploads = district.uploads("vendor");
    assert_eq!(uploads.len(), 1, "one upload, under its final name: {uploads:?}");
    // Sealed at rest: the database and the listing never hold the password.
    let db = server.stored_bytes();
    assert!(!db.windows(21).any(|w| w == b"district-pw-for-tests"), "the password is stored sealed");
    let key_file = server.data_dir().join("secret.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(!server.cli_ok(&["connector", "list", "acme", "--json"]).contains("district-pw"));
    // A wrong password is refused by the server and said so; nothing is retried forever.
    let out = server.cli_stdin(
        &[
            "connector",
            "add",
            "acme",
            "sis",
            "--replace",
            "--url",
            &format!("sftp://vendor@127.0.0.1:{}/students", district.port),
            "--password-stdin",
            "--host-key",
            host_key.trim(),
        ],
        "not-the-password\n",
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let o = server.cli(&["export", "--tenant", "acme", "--type", "students", "--to", "sis"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(output_text(&o).contains("refused the login of vendor"), "{}", output_text(&o));
}

/// A TCP relay to `target` that cuts its first connection after `cut_after` bytes from the
/// client (the network failing mid-transfer); later connections pass whole.
fn flaky_relay(target: u16, cut_after: usize) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (n, client) in listener.incoming().enumerate() {
            let Ok(client) = client else { continue };
            let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", target)) else { continue };
            let limit = if n == 0 { cut_after } else { usize::MAX };
            let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut s_read, mut c_write) = (server, client);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                let mut passed = 0usize;
                while let Ok(k) = c_read.read(&mut buf) {
                    if k == 0 || passed + k > limit || s_write.write_all(&buf[..k]).is_err() {
                        break;
                    }
                    passed += k;
                }
                let _ = s_write.shutdown(std::net::Shutdown::Both);
                let _ = c_read.shutdown(std::net::Shutdown::Both);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s_read, &mut c_write);
                let _ = c_write.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    port
}

/// The network fails in the middle of a 48 MiB push: nothing appears under the final name;
/// the retry writes the file whole, byte-identical, and leaves no temporary file.
#[test]
fn a_push_cut_mid_transfer_leaves_no_final_file_and_its_retry_completes() {
    let dir = tempfile::tempdir().unwrap();
    let Some(sshd) = Sshd::start(dir.path()) else { return };
    let data = pseudo_random(48 << 20, 7);
    let local = write_file(dir.path(), "big.csv", &data);
    let at = |port: u16| {
        let url = format!("sftp://{}@127.0.0.1:{port}{}", user(), sshd.remote.display());
        sluice_core::connector::SftpAddress::parse(&url).unwrap()
    };
    let host_key = sluice_connect::probe(&at(sshd.port), None).unwrap();
    assert_eq!(host_key.fingerprint(), sshd.fingerprint());
    // Each push goes through a relay that cuts its first connection after 8 MiB.
    let through_relay = || sluice_core::connector::Connector {
        name: sluice_core::connector::ConnectorName::parse("district").unwrap(),
        address: at(flaky_relay(sshd.port, 8 << 20)),
        auth: sluice_core::connector::AuthKind::PrivateKey,
        host_key: Some(host_key.clone()),
        rename: true,
        pull: None,
    };
    let key = zeroize::Zeroizing::new(std::fs::read_to_string(&sshd.client_key).unwrap());
    let credential = sluice_connect::Credential::PrivateKey(key);
    let lock = dir.path().join("district.lock");
    let once = sluice_connect::Retry { attempts: 1, first_wait: Duration::from_millis(100) };
    let failed = sluice_connect::push(&through_relay(), &credential, &local, "students.csv", once, &lock);
    assert!(matches!(failed, Err(sluice_connect::PushError::Failed { .. })), "{failed:?}");
    assert!(
        !sshd.remote.join("students.csv").exists(),
        "no file under the final name: {:?}",
        sshd.remote_files()
    );
    let retry = sluice_connect::Retry { attempts: 3, first_wait: Duration::from_millis(200) };
    let connector = through_relay();
    let pushed = sluice_connect::push(&connector, &credential, &local, "students.csv", retry, &lock).unwrap();
    assert_eq!(pushed.failed_attempts.len(), 1, "{pushed:?}");
    assert_eq!(pushed.bytes, data.len() as u64);
    assert_eq!(sshd.remote_files(), ["students.csv"], "the temporary file was replaced and renamed");
    assert!(std::fs::read(sshd.remote.join("students.csv")).unwrap() == data, "byte-identical");
}

/// Adds acme's connector `district` to `sshd` with these pull options, and pins its key.
fn add_pulling_connector(server: &Server, sshd: &Sshd, options: &[&str]) {
    let (url, key) = (sshd.url(), sshd.client_key.display().to_string());
    let mut args =
        vec!["connector", "add", "acme", "district", "--replace", "--url", &url, "--key", &key, "--pull"];
    args.extend_from_slice(options);
    server.cli_ok(&args);
    server.cli_ok(&["connector", "test", "acme", "district", "--accept"]);
}

/// A district drops students.csv in its own server's students/ folder: a pull imports it as
/// an upload, once; it is not fetched again (also after a restart) while it stays the same;
/// with --after-pull remove a new version is imported and removed from the server.
#[test]
fn a_pull_imports_a_district_file_once_and_never_again_across_restarts() {
    let mut server = Server::start();
    let Some(sshd) = Sshd::start(server.dir.path()) else { return };
    server.importing_tenant("acme", "pw-for-tests");
    std::fs::create_dir_all(sshd.remote.join("students")).unwrap();
    std::fs::write(
        sshd.remote.join("students/students.csv"),
        "sisId,firstName,lastName\nS1,Ann,Lee\nS2,Bo,Ray\n",
    )
    .unwrap();
    // Not fetched: a client's temporary name, a hidden file, a folder the tenant has not.
    std::fs::write(sshd.remote.join("students/students.csv.part"), "x").unwrap();
    std::fs::write(sshd.remote.join("students/.hidden.csv"), "x").unwrap();
    // A name that is not UTF-8 (a Windows district's Latin-1 name) is left alone; the others
    // are still fetched.
    use std::os::unix::ffi::OsStrExt;
    let latin1 = std::ffi::OsStr::from_bytes(b"caf\xe9.csv");
    std::fs::write(sshd.remote.join("students").join(latin1), "sisId,firstName,lastName\nX1,a,b\n").unwrap();
    std::fs::create_dir_all(sshd.remote.join("payroll")).unwrap();
    std::fs::write(sshd.remote.join("payroll/salaries.csv"), "x").unwrap();
    add_pulling_connector(&server, &sshd, &[]);
    let said = server.cli_ok(&["connector", "pull", "acme", "district"]);
    assert!(said.contains("fetched /students/students.csv") && said.contains("pulled 1 file(s)"), "{said}");
    assert!(
        server.wait_until(Duration::from_secs(20), |s| s
            .imports("acme")
            .iter()
            .any(|i| i["status"] == "complete")),
        "imported as an upload is: {:?}",
        server.imports("acme")
    );
    assert_eq!(server.cli_ok(&["records", "--tenant", "acme", "--type", "students"]).lines().count(), 3);
    assert!(sshd.remote.join("students/students.csv").exists(), "kept on the server (the default)");
    let said = server.cli_ok(&["connector", "pull", "acme", "district"]);
    assert!(said.contains("pulled 0 file(s)") && said.contains("(1 pulled before"), "{said}");
    server.kill_and_restart();
    let said = server.cli_ok(&["connector", "pull", "acme", "district"]);
    assert!(said.contains("pulled 0 file(s)"), "not fetched again after a restart: {said}");
    assert_eq!(server.uploads("acme").len(), 1);

    // A new version, and the connector now removes what it pulled.
    add_pulling_connector(&server, &sshd, &["--after-pull", "remove"]);
    std::fs::write(
        sshd.remote.join("students/students.csv"),
        "sisId,firstName,lastName\nS1,Ann,Lee\nS2,Bo,Ray\nS3,Cy,Doe\n",
    )
    .unwrap();
    let said = server.cli_ok(&["connector", "pull", "acme", "district"]);
    assert!(said.contains("pulled 1 file(s)"), "{said}");
    assert!(!sshd.remote.join("students/students.csv").exists(), "removed once fetched");
    assert!(server.wait_until(Duration::from_secs(20), |s| {
        s.cli_ok(&["records", "--tenant", "acme", "--type", "students"]).lines().count() == 4
    }));
    let log = server.cli_ok(&["connector", "log", "acme", "district"]);
    assert_eq!(log.lines().filter(|l| l.contains(" pull ") && l.contains(" bytes")).count(), 2, "{log}");
}

/// A file the district is still writing (its size changes between two listings) is left for
/// the next pull, which fetches it whole; so is the `.done` manifest beside it (taken at once,
/// its import failed for want of the file, and the file, pulled later with no manifest, was
/// never imported; with --after-pull remove both were gone from the district's server). A
/// connector whose folder is not there fails the pull, saying so (it "pulled 0 files" every
/// night; both found by a newcomer's walk).
#[test]
fn a_file_still_being_written_on_the_server_waits_for_the_next_pull() {
    let server = Server::start();
    let Some(sshd) = Sshd::start(server.dir.path()) else { return };
    server.tenant("acme", "pw-for-tests");
    std::fs::create_dir_all(sshd.remote.join("students")).unwrap();
    let path = sshd.remote.join("students/students.csv");
    std::fs::write(&path, "sisId,firstName,lastName\n").unwrap();
    let manifest = sshd.remote.join("students/students.done");
    std::fs::write(
        &manifest,
        "<manifest><file name=\"students.csv\" checksum=\"\" checksumhashtype=\"none\"/></manifest>\n",
    )
    .unwrap();
    // A manifest listing only files that were fetched does not wait for the one still changing.
    std::fs::write(sshd.remote.join("students/notes.csv"), "sisId,firstName,lastName\nN1,No,Tes\n").unwrap();
    std::fs::write(
        sshd.remote.join("students/notes.done"),
        "<manifest><file name=\"notes.csv\" checksum=\"\" checksumhashtype=\"none\"/></manifest>\n",
    )
    .unwrap();
    let (url, key) = (format!("{}/missing", sshd.url()), sshd.client_key.display().to_string());
    let host_key = std::fs::read_to_string(sshd.dir.join("host_key.pub")).unwrap();
    let host_key = host_key.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    server.cli_ok(&[
        "connector",
        "add",
        "acme",
        "lost",
        "--url",
        &url,
        "--key",
        &key,
        "--host-key",
        &host_key,
        "--pull",
    ]);
    let out = server.cli(&["connector", "pull", "acme", "lost"]);
    assert!(!out.status.success() && output_text(&out).contains("no such folder"), "{}", output_text(&out));
    add_pulling_connector(&server, &sshd, &["--after-pull", "remove"]);
    let writer = {
        let path = path.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            for i in 0..50 {
                let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
                writeln!(f, "S{i},First{i},Last{i}").unwrap();
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let said = server.cli_ok(&["connector", "pull", "acme", "district"]);
    assert!(said.contains("still changing") && said.contains("pulled 2 file(s)"), "notes and theirs: {said}");
    assert!(
        said.contains("students.done was not fetched")
            && said.contains("it lists students.csv, which was left for the next pull"),
        "{said}"
    );
    assert!(manifest.exists(), "the manifest is still on the district's server");
    writer.join().unwrap();
    let whole = std::fs::read(&path).unwrap();
    let said = server.cli_ok(&["connector", "pull", "acme", "district"]);
    assert!(said.contains("pulled 2 file(s)"), "the file, then its manifest: {said}");
    assert!(!said.contains("notes"), "fetched once: {said}");
    let landed = server.tenant_dir("acme").join("students").join("students.csv");
    // The tenant's import may have taken the file by now; its upload says what was fetched.
    let uploads = server.uploads("acme");
    let fetched = uploads.iter().find(|u| u["path"] == "/students/students.csv").expect("its upload");
    assert_eq!(fetched["sha256"], sha256_hex(&whole), "fetched whole ({})", landed.display());
}

/// A district's administrator gives the server's RSA key (`ssh-keyscan -t rsa`) while the
/// server also has an Ed25519 one: `connector test` asks for the pinned key's type, as the
/// transfers do, and passes (it asked for any, got the Ed25519 key and said the pinned key did
/// not match; `--accept` would then have pinned the other key; found by a newcomer's walk).
#[test]
fn a_pinned_rsa_key_passes_the_test_beside_an_ed25519_one() {
    let server = Server::start();
    let Some(mut sshd) = Sshd::start(server.dir.path()) else { return };
    server.tenant("acme", "pw-for-tests");
    let rsa = sshd.add_rsa_host_key();
    let (url, key) = (sshd.url(), sshd.client_key.display().to_string());
    server.cli_ok(&[
        "connector",
        "add",
        "acme",
        "district",
        "--url",
        &url,
        "--key",
        &key,
        "--host-key",
        &rsa,
    ]);
    let said = server.cli_ok(&["connector", "test", "acme", "district"]);
    assert!(said.contains("presents host key ssh-rsa") && said.contains("logged in as"), "{said}");
}

/// Clever's files may sit in the connector's folder (named as Clever's types require) or in a
/// `clever/` subfolder: two files that would land on the same name in one pull are not both
/// taken (the second would overwrite the first before its import); the other waits for the
/// next pull. With move:DIR, each is moved into DIR's folder of its own, never over another.
#[test]
fn two_remote_files_for_one_name_are_pulled_one_at_a_time() {
    let server = Server::start();
    let Some(sshd) = Sshd::start(server.dir.path()) else { return };
    server.cli_ok(&["tenant", "add", "acme", "--folders", "clever"]);
    server.cli_ok(&["tenant", "set", "acme", "trigger=manual"]);
    std::fs::create_dir_all(sshd.remote.join("clever")).unwrap();
    std::fs::write(sshd.remote.join("clever/schools.csv"), "School_id,School_name,School_number\n11,A,1\n")
        .unwrap();
    std::fs::write(sshd.remote.join("schools.csv"), "School_id,School_name,School_number\n22,B,2\n").unwrap();
    add_pulling_connector(&server, &sshd, &["--after-pull", "move:done/2026"]);
    let said = server.cli_ok(&["connector", "pull", "acme", "district"]);
    assert!(said.contains("pulled 1 file(s)") && said.contains("another file of this pull"), "{said}");
    let landed = std::fs::read_to_string(server.tenant_dir("acme").join("clever/schools.csv")).unwrap();
    server.cli_ok(&["sync", "--tenant", "acme"]);
    let said = server.cli_ok(&["connector", "pull", "acme", "district"]);
    assert!(said.contains("pulled 1 file(s)"), "the other one, next time: {said}");
    let second = std::fs::read_to_string(server.tenant_dir("acme").join("clever/schools.csv")).unwrap();
    assert_ne!(landed, second, "both files were fetched, one after the other");
    // Into DIR's folders, made as needed (a nested DIR failed every move: its parent was not).
    let mut moved: Vec<String> = walk(&sshd.remote.join("done/2026"));
    moved.sort();
    assert_eq!(moved, ["clever/schools.csv", "schools.csv"], "archived side by side");
}

/// The files below `dir`, as paths relative to it.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()).into_iter().map(|p| format!("{name}/{p}")));
        } else {
            out.push(name);
        }
    }
    out
}

/// Photos go back to the district's server as one image per record (Badge: "saved as single
/// image files for each record"), all in one session, from a saved export that runs after
/// each import of students.
#[test]
fn a_saved_photo_export_pushes_one_image_per_record_to_the_districts_server() {
    let server = Server::start();
    let Some(sshd) = Sshd::start(server.dir.path()) else { return };
    with_students(&server);
    server.cli_ok(&["tenant", "set", "acme", "folders=students,photos"]);
    let zip = crate::photos::zip_of(&[
        ("S1.jpg", &crate::photos::jpeg(8, 8)),
        ("S2.png", &crate::photos::png(4, 4, 7)),
    ]);
    let local = write_file(server.dir.path(), "photos.zip", &zip);
    server.cli_ok(&["import", "--tenant", "acme", "--type", "photos", local.to_str().unwrap()]);
    server.cli_ok(&[
        "connector",
        "add",
        "acme",
        "district",
        "--url",
        &sshd.url(),
        "--key",
        sshd.client_key.to_str().unwrap(),
    ]);
    server.cli_ok(&["connector", "test", "acme", "district", "--accept"]);
    // Columns make no sense for images.
    let refused = server.cli(&[
        "export",
        "add",
        "acme",
        "cards",
        "--type",
        "students",
        "--format",
        "photos",
        "--columns",
        "sisId",
    ]);
    assert!(
        !refused.status.success() && output_text(&refused).contains("no --columns"),
        "{}",
        output_text(&refused)
    );
    server.cli_ok(&[
        "export",
        "add",
        "acme",
        "cards",
        "--type",
        "photos",
        "--format",
        "photos",
        "--to",
        "district",
        "--after-import",
    ]);
    let said = server.cli_ok(&["export", "run", "acme", "cards"]);
    assert!(said.contains("/exports/photos/") && said.contains("district (2 files)"), "{said}");
    assert_eq!(sshd.remote_files(), ["S1.jpg", "S2.png"], "one image per record, no temporary file left");
    assert_eq!(std::fs::read(sshd.remote.join("S1.jpg")).unwrap(), crate::photos::jpeg(8, 8));
    let exported = server.tenant_dir("acme").join("exports/photos");
    assert!(exported.join("S1.jpg").is_file() && exported.join("S2.png").is_file());
    let runs = server.cli_ok(&["export", "runs", "acme", "cards"]);
    assert!(
        runs.contains("written") && runs.contains("2 records") && runs.contains("district (2 files)"),
        "{runs}"
    );
    // An account keyed S2 with a photo of its own: S2's photo would be S2.png for both, so
    // neither type sends it, to the district's server either (the push went by the student
    // alone), and the run says why.
    server.cli_ok(&["tenant", "set", "acme", "folders=students,photos,accounts"]);
    let accounts = write_file(
        server.dir.path(),
        "accounts.csv",
        b"Username,FirstName,LastName,CampusEmail\nS2,Al,Ng,al@x.org\n",
    );
    server.cli_ok(&["import", "--tenant", "acme", "--type", "accounts", accounts.to_str().unwrap()]);
    let zip = crate::photos::zip_of(&[("S2.png", &crate::photos::png(6, 6, 9))]);
    let local = write_file(server.dir.path(), "staff.zip", &zip);
    server.cli_ok(&["import", "--tenant", "acme", "--type", "accounts", local.to_str().unwrap()]);
    std::fs::remove_file(sshd.remote.join("S2.png")).unwrap();
    let said = server.cli_ok(&["export", "run", "acme", "cards"]);
    assert!(
        said.contains("district (1 files)") && said.contains("S2 (a record of accounts has a photo"),
        "{said}"
    );
    assert_eq!(sshd.remote_files(), ["S1.jpg"], "no one's S2.png");
}
