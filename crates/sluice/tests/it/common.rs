#![allow(dead_code)]

use russh::keys::PrivateKey;
use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::Ed25519Keypair;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// True when `program` is on PATH. Otherwise prints why the test is skipped, or fails the
/// test when SLUICE_REQUIRE_EXTERNAL=1 (CI) says every external program must be there.
pub fn have(program: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    external_check(found, program, package)
}

pub fn have_python_module(module: &str, package: &str) -> bool {
    let found = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    external_check(found, &format!("python module {module}"), package)
}

pub fn external_check(found: bool, what: &str, package: &str) -> bool {
    if found {
        return true;
    }
    if std::env::var("SLUICE_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
        panic!("{what} is required (SLUICE_REQUIRE_EXTERNAL=1) but missing: install {package}");
    }
    eprintln!("SKIPPED: {what} is not installed (install {package} to run this test)");
    false
}

/// The test switch that runs every server of the suite on PostgreSQL: an admin connection
/// string (`host=127.0.0.1 port=5432 user=postgres`). Each server gets a database of its own,
/// created when it starts and dropped with it; its files stay in its data directory.
pub const POSTGRES_SWITCH: &str = "SLUICE_TEST_POSTGRES";

/// Whether this run of the suite is the one on PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var(POSTGRES_SWITCH).is_ok_and(|v| !v.is_empty())
}

/// A PostgreSQL database that lives as long as the server using it.
pub struct TestDatabase {
    admin: String,
    name: String,
}

impl TestDatabase {
    /// A new database on the suite's PostgreSQL run (`None` on SQLite's).
    pub fn create() -> Option<Self> {
        let admin = std::env::var(POSTGRES_SWITCH).ok().filter(|v| !v.is_empty())?;
        // Random bytes from the OS: names seeded from the clock repeated between tests
        // started in the same instant (CREATE DATABASE then failed on a duplicate name).
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).expect("random bytes");
        let name = format!("sluice_it_{}", hex(&bytes));
        // A name made here (hex), not an input: CREATE DATABASE takes no parameters.
        admin_sql(&admin, &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("{POSTGRES_SWITCH}={admin}: cannot create a database: {e}"));
        Some(Self { admin, name })
    }

    /// The server's `SLUICE_DATABASE_URL`.
    pub fn url(&self) -> String {
        format!("{} dbname={}", self.admin, self.name)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = admin_sql(&self.admin, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

/// Runs `sql` on the admin connection, on a thread of its own: the synchronous client blocks on
/// a runtime of its own, which tokio refuses inside an async test.
fn admin_sql(admin: &str, sql: &str) -> Result<(), String> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut client = postgres::Client::connect(admin, postgres::NoTls).map_err(|e| e.to_string())?;
            client.batch_execute(sql).map_err(|e| e.to_string())
        })
        .join()
        .unwrap_or_else(|_| Err("the admin connection's thread panicked".into()))
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How the server process is started, beyond its environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Launch {
    /// Its open-file limit (soft and hard), else the test process's.
    pub nofile: Option<u64>,
    /// The umask the server and the CLI start with, else the test process's.
    pub umask: Option<libc::mode_t>,
}

/// A running `sluice serve` with its own data directory.
pub struct Server {
    child: Child,
    pub port: u16,
    /// The HTTP port (`/metrics`, `/healthz`).
    pub http_port: u16,
    pub dir: TempDir,
    env: Vec<(String, String)>,
    launch: Launch,
    /// The server's database on the suite's PostgreSQL run (dropped after the server).
    database: Option<TestDatabase>,
}

impl Server {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(env: &[(&str, &str)]) -> Self {
        Self::launch(env, Launch::default())
    }

    /// A server whose open-file limit (soft and hard) is `nofile`.
    pub fn start_limited(env: &[(&str, &str)], nofile: Option<u64>) -> Self {
        Self::launch(env, Launch { nofile, ..Launch::default() })
    }

    /// Starts the server, and later runs the CLI, with this umask (as a shell would set it).
    pub fn start_with_umask(env: &[(&str, &str)], umask: libc::mode_t) -> Self {
        Self::launch(env, Launch { umask: Some(umask), ..Launch::default() })
    }

    pub fn launch(env: &[(&str, &str)], launch: Launch) -> Self {
        Self::launch_on(env, launch, TestDatabase::create())
    }

    /// A server keeping its state in SQLite, whichever pass of the suite runs.
    pub fn start_on_sqlite() -> Self {
        Self::launch_on(&[], Launch::default(), None)
    }

    fn launch_on(env: &[(&str, &str)], launch: Launch, database: Option<TestDatabase>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut env: Vec<(String, String)> =
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        if let Some(db) = &database {
            env.push(("SLUICE_DATABASE_URL".into(), db.url()));
        }
        let (child, port, http_port) = spawn_server(dir.path(), &env, launch);
        Self { child, port, http_port, dir, env, launch, database }
    }

    /// Another server on a data directory of its own (another machine) sharing this one's
    /// database on the suite's PostgreSQL run; with `env` (its bucket, say).
    pub fn start_beside(&self, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut env: Vec<(String, String)> =
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        if let Some(url) = self.database_url() {
            env.push(("SLUICE_DATABASE_URL".into(), url));
        }
        let (child, port, http_port) = spawn_server(dir.path(), &env, self.launch);
        Self { child, port, http_port, dir, env, launch: self.launch, database: None }
    }

    /// A server on a data directory prepared beforehand (`dir/data`: a restored backup).
    pub fn start_in(dir: TempDir) -> Self {
        let (child, port, http_port) = spawn_server(dir.path(), &[], Launch::default());
        Self { child, port, http_port, dir, env: Vec::new(), launch: Launch::default(), database: None }
    }

    /// Starts the (stopped) server again on the same data directory, with its state in
    /// `database` from now on (its commands too).
    pub fn start_again_on(&mut self, database: TestDatabase) {
        self.env.retain(|(k, _)| k != "SLUICE_DATABASE_URL");
        self.env.push(("SLUICE_DATABASE_URL".into(), database.url()));
        self.database = Some(database);
        let (child, port, http_port) = spawn_server(self.dir.path(), &self.env, self.launch);
        self.child = child;
        self.port = port;
        self.http_port = http_port;
    }

    /// Starts the (stopped) server again on the same data directory with `env` added to its
    /// environment, or replacing what it had of those variables (its commands too).
    pub fn start_again_with(&mut self, env: &[(&str, &str)]) {
        self.env.retain(|(k, _)| !env.iter().any(|(name, _)| name == k));
        self.env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let (child, port, http_port) = spawn_server(self.dir.path(), &self.env, self.launch);
        self.child = child;
        self.port = port;
        self.http_port = http_port;
    }

    /// SIGKILL, then start again on the same data directory (and a new port).
    pub fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, port, http_port) = spawn_server(self.dir.path(), &self.env, self.launch);
        self.child = child;
        self.port = port;
        self.http_port = http_port;
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs the CLI against this server's data directory.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_stdin(args, "")
    }

    pub fn cli_stdin(&self, args: &[&str], stdin: &str) -> Output {
        self.cli_full(args, stdin, &[])
    }

    /// The CLI with more environment variables.
    pub fn cli_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.cli_full(args, "", env)
    }

    fn cli_full(&self, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
        let mut command = Command::new(BIN);
        // The CLI runs under the same umask as the server (its open-file limit is its own).
        prepare(&mut command, Launch { umask: self.launch.umask, nofile: None });
        let mut child = command
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(args)
            .envs(self.env.iter().cloned())
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Everything the server's database holds, as bytes, to look for what must never be
    /// stored: SQLite's file and its write-ahead log, or a `pg_dump` of its PostgreSQL
    /// database on the suite's PostgreSQL run.
    pub fn stored_bytes(&self) -> Vec<u8> {
        match &self.database {
            Some(db) => {
                let out = Command::new("pg_dump").args(["--no-owner", "-d", &db.url()]).output().unwrap();
                assert!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
                out.stdout
            }
            None => ["sluice.db", "sluice.db-wal"]
                .iter()
                .flat_map(|f| std::fs::read(self.data_dir().join(f)).unwrap_or_default())
                .collect(),
        }
    }

    /// The binary with this server's data directory and environment (its database on the
    /// suite's PostgreSQL run), for a test that runs a command itself.
    pub fn command(&self) -> Command {
        let mut command = Command::new(BIN);
        command.arg("--data-dir").arg(self.data_dir()).envs(self.env.iter().cloned());
        command
    }

    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(out.status.success(), "sluice {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Creates a tenant with the default folders and a password.
    /// Creates a tenant with the default folders and a password whose uploads wait in their
    /// folders (trigger=manual): the SFTP tests look at uploaded files where they land.
    pub fn tenant(&self, name: &str, password: &str) {
        self.importing_tenant(name, password);
        self.cli_ok(&["tenant", "set", name, "trigger=manual"]);
    }

    /// A tenant whose uploads are imported as soon as they close (the default).
    pub fn importing_tenant(&self, name: &str, password: &str) {
        self.cli_ok(&["tenant", "add", name]);
        let out = self.cli_stdin(&["tenant", "passwd", name, "--password-stdin"], &format!("{password}\n"));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// Generates an Ed25519 key pair, authorises it for `tenant`, returns the private key path.
    pub fn key(&self, tenant: &str) -> PathBuf {
        let mut seed = [0u8; 32];
        std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut seed).unwrap();
        let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
        let path = self.dir.path().join(format!("{tenant}_id_ed25519"));
        std::fs::write(&path, key.to_openssh(LineEnding::LF).unwrap().as_bytes()).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let public = path.with_extension("pub");
        std::fs::write(&public, format!("{}\n", key.public_key().to_openssh().unwrap())).unwrap();
        self.cli_ok(&["key", "add", tenant, public.to_str().unwrap()]);
        path
    }

    pub fn uploads(&self, tenant: &str) -> Vec<Value> {
        let out = self.cli_ok(&["uploads", "--tenant", tenant, "--json"]);
        serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().clone()
    }

    pub fn tenant_dir(&self, tenant: &str) -> PathBuf {
        self.data_dir().join("tenants").join(tenant)
    }

    /// Snapshots of uploads not yet imported (`spool/snapshots`).
    pub fn snapshots_left(&self) -> usize {
        std::fs::read_dir(self.data_dir().join("spool/snapshots")).map(|d| d.count()).unwrap_or(0)
    }

    pub fn spool_is_empty(&self) -> bool {
        std::fs::read_dir(self.data_dir().join("spool/uploads")).unwrap().next().is_none()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Waits until the server log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Peak resident memory of the server process, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Current resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Open file descriptors of the server process.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map(|d| d.count()).unwrap_or(0)
    }

    /// One sample of `/metrics` (without labels), e.g. `sluice_sftp_open_handles`.
    pub fn metric(&self, name: &str) -> i64 {
        let (status, body) = self.http_get("/metrics");
        assert_eq!(status, 200, "{body}");
        body.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as i64)
            .unwrap_or_else(|| panic!("no metric {name} in\n{body}"))
    }

    /// Files waiting in the upload spool (uploads in flight).
    pub fn spool_files(&self) -> usize {
        std::fs::read_dir(self.data_dir().join("spool/uploads")).map(|d| d.count()).unwrap_or(0)
    }

    /// Waits until `check` holds, polling; false after `timeout`.
    pub fn wait_until(&self, timeout: Duration, mut check: impl FnMut(&Self) -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if check(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        check(self)
    }

    /// Imports of a tenant (`sluice imports --json`), newest first.
    pub fn imports(&self, tenant: &str) -> Vec<Value> {
        let out = self.cli_ok(&["imports", "--tenant", tenant, "--json", "--limit", "10000"]);
        serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().clone()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        self.sigterm();
        self.wait_for_exit(Duration::from_secs(10))
    }

    /// Sends SIGTERM and returns at once.
    pub fn sigterm(&self) {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
    }

    /// The exit status code, once the process has exited within `timeout`.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes `command` start as `launch` says: with its umask and open-file limit, if given.
fn prepare(command: &mut Command, launch: Launch) {
    if launch.umask.is_none() && launch.nofile.is_none() {
        return;
    }
    // SAFETY: umask and setrlimit are async-signal-safe; they run in the child before exec
    // and touch nothing but the child's own process.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(command, move || {
            if let Some(mask) = launch.umask {
                libc::umask(mask);
            }
            if let Some(n) = launch.nofile {
                let lim = libc::rlimit { rlim_cur: n, rlim_max: n };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

fn spawn_server(dir: &Path, env: &[(String, String)], launch: Launch) -> (Child, u16, u16) {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("server.log")).unwrap();
    let mut command = Command::new(BIN);
    prepare(&mut command, launch);
    let mut child = command
        .args(["--data-dir"])
        .arg(dir.join("data"))
        .args(["serve", "--sftp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .envs(env.iter().cloned())
        .env("RUST_LOG", "info,sluice_sftp=debug")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // "sftp listening on 127.0.0.1:2222", "http listening on 127.0.0.1:8080 (https)"
        let port =
            |addr: &str| addr.split(' ').next().unwrap().rsplit(':').next().unwrap().parse::<u16>().unwrap();
        let mut sftp = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("sftp listening on ") {
                sftp = Some(port(addr));
            }
            if let (Some(sftp), Some(addr)) = (sftp, line.strip_prefix("http listening on ")) {
                let _ = tx.send((sftp, port(addr)));
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok((sftp, http)) => (child, sftp, http),
        Err(_) => {
            let _ = child.kill();
            panic!("server did not start: {}", std::fs::read_to_string(dir.join("server.log")).unwrap());
        }
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// Deterministic pseudo-random bytes (xorshift), so failures are reproducible.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn write_file(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

// ---------- The Rust SFTP client (russh + russh-sftp) ----------

pub struct AcceptAnyHostKey;

impl russh::client::Handler for AcceptAnyHostKey {
    type Error = russh::Error;
    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

pub type ClientHandle = russh::client::Handle<AcceptAnyHostKey>;

pub async fn ssh_connect(port: u16) -> ClientHandle {
    let config = russh::client::Config { nodelay: true, ..Default::default() };
    russh::client::connect(Arc::new(config), ("127.0.0.1", port), AcceptAnyHostKey).await.unwrap()
}

pub async fn ssh_login(port: u16, user: &str, password: &str) -> Result<ClientHandle, String> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connection failed: {e}"))?;
    ssh_login_over(stream, user, password).await
}

/// A password login over a TCP connection made by the caller (from an address of its choice).
pub async fn ssh_login_over(
    stream: tokio::net::TcpStream,
    user: &str,
    password: &str,
) -> Result<ClientHandle, String> {
    let config = russh::client::Config { nodelay: true, ..Default::default() };
    let mut handle = russh::client::connect_stream(Arc::new(config), stream, AcceptAnyHostKey)
        .await
        .map_err(|e| format!("connection failed: {e}"))?;
    let result = handle.authenticate_password(user, password).await.map_err(|e| e.to_string())?;
    if !result.success() {
        return Err(format!("authentication failed: {result:?}"));
    }
    Ok(handle)
}

pub async fn sftp_open(handle: &ClientHandle) -> russh_sftp::client::SftpSession {
    let channel = handle.channel_open_session().await.unwrap();
    channel.request_subsystem(true, "sftp").await.unwrap();
    russh_sftp::client::SftpSession::new(channel.into_stream()).await.unwrap()
}

pub async fn sftp_login(
    port: u16,
    user: &str,
    password: &str,
) -> (ClientHandle, russh_sftp::client::SftpSession) {
    let handle = ssh_login(port, user, password).await.unwrap();
    let sftp = sftp_open(&handle).await;
    (handle, sftp)
}

/// The status code and message of a failed SFTP call.
pub fn sftp_status<T>(
    r: Result<T, russh_sftp::client::error::Error>,
) -> (russh_sftp::protocol::StatusCode, String) {
    match r {
        Err(russh_sftp::client::error::Error::Status(s)) => (s.status_code, s.error_message),
        Err(other) => panic!("expected an SFTP status error, got {other:?}"),
        Ok(_) => panic!("expected an SFTP status error, but the call succeeded"),
    }
}

/// Uploads `data` to `path` the way ordinary clients do (create, truncate, write, close).
pub async fn put(
    sftp: &russh_sftp::client::SftpSession,
    path: &str,
    data: &[u8],
) -> Result<(), russh_sftp::client::error::Error> {
    use tokio::io::AsyncWriteExt;
    let mut f = sftp.create(path).await?;
    f.write_all(data).await?;
    f.shutdown().await?;
    Ok(())
}

impl Server {
    /// `SHA256:...` of the server's host key, as clients display it.
    pub fn host_fingerprint(&self) -> String {
        let text = std::fs::read_to_string(self.data_dir().join("ssh_host_ed25519_key")).unwrap();
        let key = PrivateKey::from_openssh(&text).unwrap();
        key.public_key().fingerprint(russh::keys::HashAlg::Sha256).to_string()
    }
}

/// Runs a program with a timeout, returning its output (stdout, stderr, status).
/// rclone on its defaults, given only where `server` is and how `user` logs in (`args`: the
/// command, as `copy -v FROM sluice:/TO`); it runs for at most two minutes.
pub fn rclone(server: &Server, user: &str, password: &str, args: &[&str]) -> Output {
    let obscured = Command::new("rclone").args(["obscure", password]).output().unwrap();
    let obscured = String::from_utf8(obscured.stdout).unwrap().trim().to_owned();
    run_with_timeout(
        Command::new("rclone")
            .args(args)
            .env("RCLONE_CONFIG", "/dev/null")
            .env("RCLONE_CONFIG_SLUICE_TYPE", "sftp")
            .env("RCLONE_CONFIG_SLUICE_HOST", "127.0.0.1")
            .env("RCLONE_CONFIG_SLUICE_PORT", server.port.to_string())
            .env("RCLONE_CONFIG_SLUICE_USER", user)
            .env("RCLONE_CONFIG_SLUICE_PASS", &obscured),
        Duration::from_secs(120),
    )
}

pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{cmd:?} did not finish within {timeout:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn output_text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

impl Server {
    /// A plain HTTP/1.1 GET on the server's HTTP port: (status, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        let (status, _, body) = self.http("GET", path, None);
        (status, body)
    }

    /// An HTTP/1.1 request with an optional bearer token: (status, content type, body).
    pub fn http(&self, method: &str, path: &str, token: Option<&str>) -> (u16, String, String) {
        self.http_with(method, path, token, "")
    }

    /// The same, with a JSON request body.
    pub fn http_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (u16, String, String) {
        http_request(self.http_port, method, path, token, body)
    }

    /// The server's `SLUICE_DATABASE_URL` on the suite's PostgreSQL run.
    pub fn database_url(&self) -> Option<String> {
        self.database.as_ref().map(TestDatabase::url)
    }

    /// Another `sluice serve` on this server's data directory and database (a node sharing
    /// the work; on PostgreSQL), logging to the same `server.log`.
    pub fn start_node(&self) -> Node {
        let (child, port, http_port) = spawn_server(self.dir.path(), &self.env, self.launch);
        Node { child, port, http_port }
    }
}

/// A node started by [`Server::start_node`]; killed when dropped.
pub struct Node {
    child: Child,
    pub port: u16,
    pub http_port: u16,
}

impl Node {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An HTTP/1.1 request to this node: (status, content type, body).
    pub fn http(&self, method: &str, path: &str, token: Option<&str>) -> (u16, String, String) {
        http_request(self.http_port, method, path, token, "")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP/1.1 request to `127.0.0.1:port` with an optional bearer token and a JSON body:
/// (status, content type, body).
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String, String) {
    {
        use std::io::Read;
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let response = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let content_type = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type: ").map(str::to_owned))
            .unwrap_or_default();
        (status, content_type, body.to_owned())
    }
}

impl Server {
    /// A new API key (`sluice apikey add`), for a tenant or (`None`) the operator.
    pub fn api_key(&self, tenant: Option<&str>) -> String {
        let out = match tenant {
            Some(t) => self.cli_ok(&["apikey", "add", "--tenant", t]),
            None => self.cli_ok(&["apikey", "add", "--operator"]),
        };
        out.trim().to_owned()
    }
}

/// A throwaway CA and a certificate for 127.0.0.1 and localhost it signed, made with the
/// openssl command: (ca.pem, cert.pem, key.pem) in `dir`. `None` (after the skip notice) when
/// openssl is missing.
pub fn test_certificates(dir: &Path) -> Option<(PathBuf, PathBuf, PathBuf)> {
    if !have("openssl", "openssl") {
        return None;
    }
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=sluice test CA"],
    ]
    .concat());
    run(&[&["req"][..], &ec, &["-keyout", "key.pem", "-out", "req.csr", "-subj", "/CN=127.0.0.1"]].concat());
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "req.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    Some((dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem")))
}

/// Python's aiosmtpd delivering into the Maildir `maildir` (created here), on a free port;
/// `tls` = Some((cert, key)) makes it require STARTTLS. The caller kills it.
pub fn start_smtpd(maildir: &Path, tls: Option<(&Path, &Path)>) -> (Child, u16) {
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")]);
    if let Some((cert, key)) = tls {
        cmd.arg("--tlscert").arg(cert).arg("--tlskey").arg(key);
    }
    let child = cmd.args(["-c", "aiosmtpd.handlers.Mailbox"]).arg(maildir).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "aiosmtpd did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, port)
}

// ---------- Raw SFTP packets ----------

/// A raw SFTP connection: we write packets ourselves and read replies ourselves.
pub struct Raw {
    pub ssh: ClientHandle,
    pub stream: russh::ChannelStream<russh::client::Msg>,
}

impl Raw {
    /// Logs in and starts SFTP (INIT, VERSION) on a new connection.
    pub async fn open(port: u16, user: &str, password: &str) -> Raw {
        let ssh = ssh_login(port, user, password).await.unwrap();
        let channel = ssh.channel_open_session().await.unwrap();
        channel.request_subsystem(true, "sftp").await.unwrap();
        let mut raw = Raw { ssh, stream: channel.into_stream() };
        raw.send(1, &[], &3u32.to_be_bytes()).await;
        let (kind, _) = raw.recv().await.unwrap();
        assert_eq!(kind, 2, "expected SSH_FXP_VERSION");
        raw
    }

    pub async fn send(&mut self, kind: u8, id: &[u8], body: &[u8]) {
        let len = (1 + id.len() + body.len()) as u32;
        let mut p = len.to_be_bytes().to_vec();
        p.push(kind);
        p.extend_from_slice(id);
        p.extend_from_slice(body);
        tokio::io::AsyncWriteExt::write_all(&mut self.stream, &p).await.unwrap();
    }

    pub async fn recv(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut len = [0u8; 4];
        use tokio::io::AsyncReadExt;
        self.stream.read_exact(&mut len).await.ok()?;
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut body).await.ok()?;
        Some((body[0], body[1..].to_vec()))
    }
}

pub fn string(s: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(s);
    v
}

/// The names of the entries of `folder`, sorted.
pub fn files_in(folder: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
