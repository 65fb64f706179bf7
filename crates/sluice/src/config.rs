//! Layered configuration: embedded defaults < TOML file (`--config`) < `SLUICE_*` environment
//! variables < command-line flags. Every key of the file has an environment variable named
//! `SLUICE_<SECTION>_<KEY>` in upper case (`[sftp] listen` is `SLUICE_SFTP_LISTEN`; top-level
//! `data_dir` is `SLUICE_DATA_DIR`).

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULTS: &str = r#"
data_dir = "./sluice-data"

[sftp]
listen = "127.0.0.1:2222"
# The host name tenants' clients connect to, as the dashboard's credentials page shows it
# ("" = the listening address, or the dashboard's own host name when listening on all).
public_host = ""
# The server's SSH host key, an OpenSSH private key file ("" = DATA_DIR/ssh_host_ed25519_key,
# made on first start). Set it to keep one key across machines or from a secret store: the
# file must exist (ssh-keygen -t ed25519 -N '' -f FILE); sluice only reads it.
host_key_file = ""
# Admit hmac-sha2-256/512 (encrypt-and-MAC) for SSH libraries without encrypt-then-MAC,
# such as libssh2 before 1.11 (Debian 12's curl).
compat = false
# Offer only the hybrid post-quantum key exchange (mlkem768x25519-sha256). Locks out
# clients without it: OpenSSH before 9.9, PuTTY/WinSCP/FileZilla before ML-KEM, paramiko, libssh2.
post_quantum_only = false
# Time a connection has to log in (from TCP connect). Once logged in, only the idle
# timeout applies.
login_grace_secs = 30
max_auth_attempts = 6
max_unauthenticated_per_ip = 10
# Logged-in connections per tenant, and SFTP channels per connection (OpenSSH's MaxSessions).
max_sessions_per_tenant = 20
max_channels_per_connection = 10
# A logged-in connection that moves no SFTP bytes for this long is closed.
idle_timeout_secs = 600
# On shutdown (SIGTERM, Ctrl-C): how long transfers in flight may take to finish.
drain_secs = 30
max_upload_bytes = 10737418240
# Open files and folders per session, and per tenant across its sessions.
max_open_handles = 256
max_open_handles_per_tenant = 1024
# Bytes a tenant's unfinished uploads may take in the spool.
spool_bytes_per_tenant = 21474836480
# Bytes a client may send on a channel before sluice processed them (its window; refilled as
# requests are processed), bytes of one session's replies waiting for the client, and bytes
# of requests and replies all of a tenant's sessions may hold together.
window_bytes = 2097152
reply_budget_bytes = 2097152
tenant_queue_bytes = 268435456
# For this long after an upload, its client may stat, list and set the time of the file
# although the import already took it in (paramiko, rclone and WinSCP check their uploads).
recent_upload_secs = 120
# TCP load balancers in front of sluice's SFTP port that send the PROXY protocol (HAProxy's
# send-proxy or send-proxy-v2; AWS NLB, nginx stream, Traefik), as addresses or CIDR ranges
# ("10.0.0.5", "10.0.0.0/24"): a connection from them must start with the header, and the
# client it names is the one the defender's limits and bans, the logs and the audit trail
# count. List the balancers themselves, not their network: a host listed here can name any
# address. Empty: no header is read (a balancer's address would be every client's).
proxy_protocol_from = []

[http]
# The dashboard, the REST API (/api/v1), /metrics and /healthz.
listen = "127.0.0.1:8080"
# HTTPS: a PEM certificate chain and its key. "" = plain HTTP (behind a TLS proxy, or local).
tls_cert = ""
tls_key = ""
# The dashboard's address as people reach it (https://sluice.example.org): password reset
# links in emails point there. "" = no password resets by email (the operator sets passwords).
public_url = ""
# Who must log in with a second factor (TOTP) after the password: "optional" (each account
# chooses), "owners" (tenants' owners and the operator) or "everyone".
second_factor = "optional"
# Mark session cookies Secure although sluice serves plain HTTP: set it when a reverse proxy
# terminates TLS in front of sluice.
secure_cookies = false
# Reverse proxies in front of sluice, as addresses or CIDR ranges ("127.0.0.1", "10.0.0.0/8"):
# their X-Forwarded-For names the client, so that login limits count each client apart.
# Empty: the connection's address is the client, and X-Forwarded-For is ignored.
trusted_proxies = []
# What a client holds before it has authenticated is bounded. A client has this long to send
# a request's head (request line and headers), counted from its connection (covering the TLS
# handshake) or from the first byte of a later request on a kept-alive connection.
header_timeout_secs = 10
# ...and this long to send the body, counted from the end of its head (forms and JSON are small).
body_timeout_secs = 30
# A kept-alive connection with no request in flight is closed after this long; so is one
# whose client stops reading an answer for this long.
idle_timeout_secs = 60
# Open connections, TLS handshakes included. When all are taken, new clients wait in the
# kernel's listen backlog until one is free (existing connections are never held up).
max_connections = 1024
# Open connections from one client address (an IPv6 /64). Addresses in trusted_proxies are
# exempt: a reverse proxy brings every client over its own connections.
max_connections_per_ip = 64

[defender]
# Bans sources (an IPv4 address, an IPv6 /64) that keep doing wrong things, on SFTP and the
# dashboard login together. false: nothing limits password guessing (only when something in
# front of sluice does).
enabled = true
# A source is banned when the points of its events within observation_window_secs reach this.
threshold = 10
# Points per event (0: not counted).
# A wrong password, or no authorised key, for an account that exists.
score_login_failed = 1
# A login as an account that does not exist. More than score_login_failed bans made-up names
# sooner, and so tells a patient prober which names exist.
score_unknown_account = 1
# No SSH version line, no common algorithm, a malformed packet.
score_protocol_error = 1
# Connected and left without trying to log in (port scanners; load-balancer health checks too).
score_no_auth = 0
# Too many unauthenticated connections from the source, or the login grace time ran out.
score_limit_hit = 3
observation_window_secs = 1800
# The first ban's length.
ban_secs = 900
# Each repeated ban is this much longer than the one before, in percent (100 doubles it); a ban
# is repeated while the source's last one ended less than max_ban_secs ago.
ban_increment_percent = 100
max_ban_secs = 86400
# Addresses and CIDR ranges never scored or banned, e.g. ["192.0.2.10", "10.0.0.0/8"].
allow_list = []
# Sources remembered at most (about 250 bytes each). When full, the lowest scores are forgotten
# first, never a ban.
max_hosts = 50000
# An account takes at most this many failed logins within account_window_secs from all sources
# together (then it waits, whoever tries), so that many addresses cannot guess on without end.
account_max_failures = 50
account_window_secs = 600

[notifications]
# Email when an import ends (complete, incomplete, failed, held): to each address a tenant
# lists (`sluice tenant set T notify.email=...`). Empty host: no email.
smtp_host = ""
smtp_port = 25
# "none" (a relay on this machine or network), "starttls" (port 587) or "tls" (port 465).
smtp_security = "none"
smtp_username = ""
smtp_password = ""
# Send smtp_username/smtp_password although smtp_security = "none" (the password crosses the
# network readable by anyone on the path): only for a relay on a trusted network.
smtp_plaintext_auth = false
from = "sluice@localhost"
# A PEM file of certificate authorities to trust beside the public ones (a private relay's,
# or a webhook receiver's). "" = the public roots only.
ca_file = ""
# Let tenants' webhooks reach this machine and private networks (only for trusted tenants:
# otherwise a tenant could make sluice POST to internal services).
allow_private_webhooks = false

[tenants]
# Import folders a new tenant gets when `sluice tenant add` names none.
default_folders = ["students", "employees", "guardians", "visitors"]

[imports]
# A directory of extra import type files (*.toml), beside the built-in presets. "" = none.
types_dir = ""
# Keep each processed upload in DATA_DIR/archive/TENANT/ for this many days (0: delete at once).
archive_days = 0
# Remove error reports from tenants' /errors after this many days (0: keep them); the errors
# stay with each import in the history, the API and the dashboard.
error_report_days = 90
# An upload with the same bytes as an upload of the same file in the last N seconds that was
# imported (or is being imported) is a client's retry, and is not imported again (0: off),
# unless another import of its type or a deletion by hand came in between.
duplicate_window_secs = 120
# Imports of different tenants run side by side, this many at once; a tenant's own imports
# run one at a time, in upload order. 0: one per core, at least 2.
workers = 0

[connectors]
# A pull fetches only files whose size and time stay the same between two listings this many
# seconds apart (a file the district is still writing waits for the next pull).
settle_secs = 2

[database]
# Where sluice keeps its state. "" = SQLite in DATA_DIR (one node). A PostgreSQL URL
# (postgres://user:password@host:5432/sluice, or key=value pairs) lets several nodes share
# one database; its schema is brought up to date on start. url_file names a file holding the
# URL instead (a secret mounted by systemd or a container runtime); not both.
url = ""
url_file = ""

[storage]
# Where tenants' exports are kept (/exports and /exports/photos): "local" (in DATA_DIR/tenants)
# or "s3", an S3-compatible bucket (AWS S3, MinIO, SeaweedFS, Garage...) that every node on
# the database reads and writes, so an export written by one node is downloaded from any.
# Uploads, error reports and photos' originals stay in DATA_DIR (see docs/deploy.md).
backend = "local"
# "" = AWS S3 in region; else the store's URL (https://, or http:// on a private network).
endpoint = ""
bucket = ""
# "" = AWS_REGION (or AWS_DEFAULT_REGION), else us-east-1.
region = ""
# Keys start with this ("sluice" -> sluice/tenants/NAME/exports/FILE): one bucket, several uses.
prefix = ""
# https://endpoint/bucket/key (MinIO, SeaweedFS, most self-hosted stores) rather than
# https://bucket.endpoint/key (set false for AWS S3 if you prefer virtual-hosted style).
path_style = true
# Files holding the credentials (secrets mounted by systemd or a container runtime); "" =
# the usual AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN) variables, or
# the machine's role.
access_key_id_file = ""
secret_access_key_file = ""

[secrets]
# The key that seals connectors' credentials (passwords, private keys of the districts' own
# SFTP servers): a file of 64 hexadecimal digits, made (0600) when first needed. "" =
# DATA_DIR/secret.key. Back it up apart from the database: without it the stored credentials
# cannot be opened.
key_file = ""

[audit]
# Keep audit log entries (who changed what, when, from where) this many days (0: for ever).
keep_days = 365

[log]
# tracing filter, e.g. "info" or "sluice_sftp=debug,info"; RUST_LOG overrides it.
level = "info"
"#;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub data_dir: PathBuf,
    pub sftp: SftpConfig,
    pub http: HttpConfig,
    pub defender: DefenderSettings,
    pub notifications: NotificationsConfig,
    pub tenants: TenantsConfig,
    pub imports: ImportsConfig,
    pub connectors: ConnectorsConfig,
    pub secrets: SecretsConfig,
    pub database: DatabaseConfig,
    pub storage: StorageConfig,
    pub audit: AuditConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    pub keep_days: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorsConfig {
    pub settle_secs: u64,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: String,
    pub url_file: String,
}

/// Never prints the URL: it may carry a password.
impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &if self.url.is_empty() { "" } else { "(set)" })
            .field("url_file", &self.url_file)
            .finish()
    }
}

impl DatabaseConfig {
    /// The PostgreSQL URL sluice runs on, or `None` for SQLite in the data directory.
    pub fn url(&self) -> Result<Option<String>> {
        match (self.url.trim(), self.url_file.trim()) {
            ("", "") => Ok(None),
            (url, "") => Ok(Some(url.to_owned())),
            ("", file) => {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("[database] url_file: cannot read {file}"))?;
                let url = text.trim();
                if url.is_empty() {
                    bail!("[database] url_file: {file} is empty; it must hold the database's URL");
                }
                Ok(Some(url.to_owned()))
            }
            _ => bail!("[database] url and url_file are both set: set one (url_file for a secret)"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    Local,
    S3,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub backend: StorageBackend,
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub prefix: String,
    pub path_style: bool,
    pub access_key_id_file: String,
    pub secret_access_key_file: String,
}

impl StorageConfig {
    /// The bucket's settings with `backend = "s3"` (credentials read from their files), or
    /// `None` for the local disk.
    pub fn bucket(&self) -> Result<Option<sluice_files::BucketSettings>> {
        if self.backend == StorageBackend::Local {
            return Ok(None);
        }
        if self.bucket.trim().is_empty() {
            bail!("[storage] backend = \"s3\" needs bucket: the name of the bucket sluice keeps files in");
        }
        let secret = |key: &str, file: &str| -> Result<String> {
            if file.trim().is_empty() {
                return Ok(String::new());
            }
            let text = std::fs::read_to_string(file.trim())
                .with_context(|| format!("[storage] {key}: cannot read {}", file.trim()))?;
            match text.trim() {
                "" => bail!("[storage] {key}: {} is empty; it must hold the credential", file.trim()),
                value => Ok(value.to_owned()),
            }
        };
        Ok(Some(sluice_files::BucketSettings {
            endpoint: self.endpoint.trim().to_owned(),
            bucket: self.bucket.trim().to_owned(),
            region: self.region.trim().to_owned(),
            prefix: self.prefix.trim().to_owned(),
            path_style: self.path_style,
            access_key_id: secret("access_key_id_file", &self.access_key_id_file)?,
            secret_access_key: secret("secret_access_key_file", &self.secret_access_key_file)?,
        }))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    pub key_file: String,
}

impl Config {
    /// Where the key sealing connectors' credentials is (`[secrets] key_file`, by default
    /// `DATA_DIR/secret.key`).
    /// The SSH host key's file, and whether sluice makes it when it is missing (only its own,
    /// in the data directory; a file the operator names must exist).
    pub fn host_key_file(&self) -> (PathBuf, bool) {
        if self.sftp.host_key_file.is_empty() {
            (self.data_dir.join("ssh_host_ed25519_key"), true)
        } else {
            (PathBuf::from(&self.sftp.host_key_file), false)
        }
    }

    pub fn secret_key_file(&self) -> PathBuf {
        if self.secrets.key_file.is_empty() {
            self.data_dir.join("secret.key")
        } else {
            PathBuf::from(&self.secrets.key_file)
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportsConfig {
    pub types_dir: String,
    pub archive_days: u32,
    pub error_report_days: u32,
    pub duplicate_window_secs: u64,
    pub workers: usize,
}

impl ImportsConfig {
    /// How many imports run at once: `workers`, or one per core (at least 2) when it is 0.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(2, usize::from).max(2),
            n => n,
        }
    }

    pub fn types_dir(&self) -> Option<&std::path::Path> {
        (!self.types_dir.is_empty()).then(|| std::path::Path::new(&self.types_dir))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftpConfig {
    pub listen: SocketAddr,
    pub public_host: String,
    pub host_key_file: String,
    pub compat: bool,
    pub post_quantum_only: bool,
    pub login_grace_secs: u64,
    pub max_auth_attempts: usize,
    pub max_unauthenticated_per_ip: usize,
    pub max_sessions_per_tenant: usize,
    pub max_channels_per_connection: usize,
    pub idle_timeout_secs: u64,
    pub drain_secs: u64,
    pub max_upload_bytes: u64,
    pub max_open_handles: usize,
    pub max_open_handles_per_tenant: usize,
    pub spool_bytes_per_tenant: u64,
    pub window_bytes: u32,
    pub reply_budget_bytes: usize,
    pub tenant_queue_bytes: usize,
    pub recent_upload_secs: u64,
    pub proxy_protocol_from: Vec<String>,
}

impl SftpConfig {
    pub fn proxy_protocol_from(&self) -> Result<Vec<sluice_core::net::IpRange>> {
        self.proxy_protocol_from
            .iter()
            .map(|p| p.parse().map_err(|e| anyhow::anyhow!("[sftp] proxy_protocol_from: {e}")))
            .collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    pub public_url: String,
    pub second_factor: String,
    pub tls_cert: String,
    pub tls_key: String,
    pub secure_cookies: bool,
    pub trusted_proxies: Vec<String>,
    pub header_timeout_secs: u64,
    pub body_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
}

impl HttpConfig {
    pub fn trusted_proxies(&self) -> Result<Vec<sluice_web::client::IpRange>> {
        self.trusted_proxies
            .iter()
            .map(|p| p.parse().map_err(|e| anyhow::anyhow!("[http] trusted_proxies: {e}")))
            .collect()
    }

    pub fn limits(&self) -> sluice_web::connections::Limits {
        sluice_web::connections::Limits {
            header_timeout: Duration::from_secs(self.header_timeout_secs),
            body_timeout: Duration::from_secs(self.body_timeout_secs),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
        }
    }

    /// The TLS configuration, when a certificate and key are configured.
    pub fn tls(&self) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>> {
        match (self.tls_cert.is_empty(), self.tls_key.is_empty()) {
            (true, true) => Ok(None),
            (false, false) => {
                sluice_web::tls::server_config(Path::new(&self.tls_cert), Path::new(&self.tls_key))
                    .map(Some)
                    .map_err(|e| anyhow::anyhow!("[http] tls_cert/tls_key: {e}"))
            }
            _ => bail!("[http] tls_cert and tls_key go together: set both for HTTPS, or neither"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefenderSettings {
    pub enabled: bool,
    pub threshold: u32,
    pub score_login_failed: u32,
    pub score_unknown_account: u32,
    pub score_protocol_error: u32,
    pub score_no_auth: u32,
    pub score_limit_hit: u32,
    pub observation_window_secs: u64,
    pub ban_secs: u64,
    pub ban_increment_percent: u32,
    pub max_ban_secs: u64,
    pub allow_list: Vec<String>,
    pub max_hosts: usize,
    pub account_max_failures: u32,
    pub account_window_secs: u64,
}

impl DefenderSettings {
    pub fn rules(&self) -> Result<sluice_defender::DefenderConfig> {
        let allow_list = self
            .allow_list
            .iter()
            .map(|r| r.parse().map_err(|e| anyhow::anyhow!("[defender] allow_list: {e}")))
            .collect::<Result<_>>()?;
        let rules = sluice_defender::DefenderConfig {
            enabled: self.enabled,
            threshold: self.threshold,
            scores: sluice_defender::Scores {
                login_failed: self.score_login_failed,
                unknown_account: self.score_unknown_account,
                protocol_error: self.score_protocol_error,
                no_auth: self.score_no_auth,
                limit_hit: self.score_limit_hit,
            },
            observation_window: Duration::from_secs(self.observation_window_secs),
            ban_time: Duration::from_secs(self.ban_secs),
            ban_time_increment_percent: self.ban_increment_percent,
            max_ban_time: Duration::from_secs(self.max_ban_secs),
            allow_list,
            max_hosts: self.max_hosts,
            account_max_failures: self.account_max_failures,
            account_window: Duration::from_secs(self.account_window_secs),
        };
        rules.check().map_err(|e| anyhow::anyhow!("[defender] {e}"))?;
        Ok(rules)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsConfig {
    pub smtp_host: String,
    pub smtp_port: u16,
    pub smtp_security: String,
    pub smtp_username: String,
    pub smtp_password: String,
    pub smtp_plaintext_auth: bool,
    pub from: String,
    pub ca_file: String,
    pub allow_private_webhooks: bool,
}

impl NotificationsConfig {
    pub fn smtp(&self) -> Result<sluice_notify::SmtpConfig> {
        let security = sluice_notify::SmtpSecurity::parse(&self.smtp_security).ok_or_else(|| {
            anyhow::anyhow!(
                "[notifications] smtp_security = {:?}: expected none, starttls or tls",
                self.smtp_security
            )
        })?;
        if !sluice_notify::valid_address(&self.from) {
            bail!("[notifications] from = {:?} is not an email address", self.from);
        }
        if !self.smtp_username.is_empty()
            && security == sluice_notify::SmtpSecurity::None
            && !self.smtp_plaintext_auth
        {
            bail!(
                "[notifications] smtp_username is set but smtp_security = \"none\": the password would cross the network in clear text. Use smtp_security = \"starttls\" (port 587) or \"tls\" (port 465), or set smtp_plaintext_auth = true for a relay on a trusted network"
            );
        }
        Ok(sluice_notify::SmtpConfig {
            host: self.smtp_host.clone(),
            port: self.smtp_port,
            security,
            username: self.smtp_username.clone(),
            password: self.smtp_password.clone(),
            plaintext_auth: self.smtp_plaintext_auth,
            from: self.from.clone(),
            tls: sluice_notify::tls::trust((!self.ca_file.is_empty()).then(|| Path::new(&self.ca_file)))
                .map_err(|e| anyhow::anyhow!("[notifications] ca_file: {e}"))?,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantsConfig {
    pub default_folders: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub level: String,
}

/// Values given on the command line, which beat everything else.
#[derive(Debug, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub sftp_listen: Option<SocketAddr>,
    pub http_listen: Option<SocketAddr>,
}

impl Config {
    pub fn load(file: Option<&Path>, env: &[(String, String)], overrides: &Overrides) -> Result<Self> {
        let mut table: toml::Table = toml::from_str(DEFAULTS).context("embedded defaults")?;
        let mut user_file = None;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            let from_file: toml::Table = toml::from_str(&text)
                .with_context(|| format!("config file {} is not valid TOML", path.display()))?;
            merge(&mut table, from_file);
            user_file = Some((path, text));
        }
        apply_env(&mut table, env)?;
        if let Some(d) = &overrides.data_dir {
            table.insert("data_dir".into(), toml::Value::String(d.display().to_string()));
        }
        if let Some(addr) = overrides.sftp_listen
            && let Some(toml::Value::Table(sftp)) = table.get_mut("sftp")
        {
            sftp.insert("listen".into(), toml::Value::String(addr.to_string()));
        }
        if let Some(addr) = overrides.http_listen
            && let Some(toml::Value::Table(http)) = table.get_mut("http")
        {
            http.insert("listen".into(), toml::Value::String(addr.to_string()));
        }
        // Round-trip through text so that an error has a span: the key it is about is found
        // there and named where the user wrote it (their file's line, or the variable).
        let merged = toml::to_string(&table).context("cannot render the merged configuration")?;
        let config: Config = toml::from_str(&merged)
            .map_err(|e| anyhow::anyhow!(where_it_went_wrong(&e, &merged, user_file.as_ref(), env)))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        // A level the log filter reads otherwise (`verbose` is a target name to it) would
        // silence every log line: each directive is a level or `target=level`.
        const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
        let level_ok = |l: &str| LEVELS.contains(&l.trim().to_ascii_lowercase().as_str());
        let directives_ok = self.log.level.split(',').all(|d| {
            level_ok(d)
                || d.split_once('=').is_some_and(|(target, l)| !target.trim().is_empty() && level_ok(l))
        });
        if !directives_ok || tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            bail!(
                "[log] level = {:?}: use error, warn, info, debug, trace or off, or a filter such as \"info,sluice_sftp=debug\"",
                self.log.level
            );
        }
        sluice_core::FolderName::parse_list(&self.tenants.default_folders.join(","))
            .context("[tenants] default_folders")?;
        self.notifications.smtp()?;
        self.http.trusted_proxies()?;
        self.sftp.proxy_protocol_from()?;
        self.defender.rules()?;
        let s = &self.sftp;
        if s.max_open_handles == 0
            || s.max_open_handles_per_tenant == 0
            || s.max_sessions_per_tenant == 0
            || s.max_channels_per_connection == 0
        {
            bail!(
                "[sftp] max_open_handles, max_open_handles_per_tenant, max_sessions_per_tenant and \
                 max_channels_per_connection must be at least 1"
            );
        }
        // One packet (256 KiB) and its overhead must always fit, or a session could wait forever.
        const ONE_MIB: usize = 1 << 20;
        for (key, value) in [
            ("window_bytes", s.window_bytes as usize),
            ("reply_budget_bytes", s.reply_budget_bytes),
            ("tenant_queue_bytes", s.tenant_queue_bytes),
        ] {
            if value < ONE_MIB {
                bail!("[sftp] {key} = {value}: must be at least {ONE_MIB} (1 MiB)");
            }
        }
        let h = &self.http;
        if [h.header_timeout_secs, h.body_timeout_secs, h.idle_timeout_secs].contains(&0) {
            bail!("[http] header_timeout_secs, body_timeout_secs and idle_timeout_secs must be at least 1");
        }
        if h.max_connections == 0 || h.max_connections_per_ip == 0 {
            bail!("[http] max_connections and max_connections_per_ip must be at least 1");
        }
        if sluice_web::SecondFactorRule::parse(&h.second_factor).is_none() {
            bail!(
                "[http] second_factor = {:?}: expected {}",
                h.second_factor,
                sluice_web::SecondFactorRule::NAMES
            );
        }
        if !h.public_url.is_empty() {
            let url = url::Url::parse(&h.public_url).ok();
            let fits = url.as_ref().is_some_and(|u| {
                matches!(u.scheme(), "http" | "https") && u.host().is_some() && u.query().is_none()
            });
            if !fits {
                bail!(
                    "[http] public_url = {:?}: expected the dashboard's address as people reach it, such as https://sluice.example.org",
                    h.public_url
                );
            }
        }
        Ok(())
    }

    pub fn ssh_settings(&self) -> sluice_sftp::SshSettings {
        let s = &self.sftp;
        sluice_sftp::SshSettings {
            compat: s.compat,
            post_quantum_only: s.post_quantum_only,
            login_grace: Duration::from_secs(s.login_grace_secs),
            max_auth_attempts: s.max_auth_attempts,
            max_unauthenticated_per_ip: s.max_unauthenticated_per_ip,
            max_sessions_per_tenant: s.max_sessions_per_tenant,
            max_channels_per_connection: s.max_channels_per_connection,
            idle_timeout: Duration::from_secs(s.idle_timeout_secs),
            drain: Duration::from_secs(s.drain_secs),
            // Checked when the configuration was read (`validate`).
            proxy_protocol_from: s.proxy_protocol_from().unwrap_or_default(),
            ..Default::default()
        }
    }

    pub fn sftp_limits(&self) -> sluice_sftp::SftpLimits {
        let s = &self.sftp;
        sluice_sftp::SftpLimits {
            max_upload_bytes: s.max_upload_bytes,
            max_handles: s.max_open_handles,
            max_handles_per_tenant: s.max_open_handles_per_tenant,
            spool_bytes_per_tenant: s.spool_bytes_per_tenant,
            window_bytes: s.window_bytes,
            reply_budget_bytes: s.reply_budget_bytes,
            tenant_queue_bytes: s.tenant_queue_bytes,
            recent_upload: Duration::from_secs(s.recent_upload_secs),
        }
    }
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

/// Environment variables that are not configuration keys.
/// Read by the test suite, not by sluice: CI's switches (every external program must be
/// there; run the servers on PostgreSQL).
const NOT_CONFIG: &[&str] = &["SLUICE_CONFIG", "SLUICE_REQUIRE_EXTERNAL", "SLUICE_TEST_POSTGRES"];

/// A configuration error in the user's terms: the file and line where they set the key, or
/// the `SLUICE_*` variable that set it (the merged text's line numbers mean nothing to them).
fn where_it_went_wrong(
    e: &toml::de::Error,
    merged: &str,
    file: Option<&(&Path, String)>,
    env: &[(String, String)],
) -> String {
    let generic =
        || format!("invalid configuration (after merging defaults, file and SLUICE_* variables): {e}");
    let Some(path) = e.span().and_then(|span| key_path_at(merged, span.start)) else {
        return generic();
    };
    let dotted = path.join(".");
    let variable = format!("SLUICE_{}", path.join("_").to_ascii_uppercase());
    // Matched as `apply_env` reads them: the part after `SLUICE_` in any case.
    if let Some((name, value)) = env.iter().find(|(name, _)| {
        name.strip_prefix("SLUICE_")
            .is_some_and(|rest| rest.eq_ignore_ascii_case(&variable["SLUICE_".len()..]))
    }) {
        let variable = name;
        return format!("{variable}={value:?} ({dotted}): {}", e.message());
    }
    if let Some((file, text)) = file
        && let Some(at) = key_path_span(text, &path)
    {
        let line_no = text[..at].matches('\n').count() + 1;
        let line = text.lines().nth(line_no - 1).unwrap_or("");
        return format!(
            "config file {}, line {line_no} ({dotted}): {}\n  {line_no} | {line}",
            file.display(),
            e.message()
        );
    }
    format!("{dotted}: {}", e.message())
}

/// The key path (`["sftp", "listen"]`) whose key or value holds byte `at` of `text`.
fn key_path_at(text: &str, at: usize) -> Option<Vec<String>> {
    fn walk(table: &toml::de::DeTable<'_>, at: usize, path: &mut Vec<String>) -> bool {
        for (key, value) in table.iter() {
            let (k, v) = (key.span(), value.span());
            let inside = (k.start <= at && at < k.end) || (v.start <= at && at < v.end.max(v.start + 1));
            if let toml::de::DeValue::Table(inner) = value.get_ref() {
                path.push(key.get_ref().to_string());
                if inside || walk(inner, at, path) {
                    return true;
                }
                path.pop();
            } else if inside {
                path.push(key.get_ref().to_string());
                return true;
            }
        }
        false
    }
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    walk(doc.get_ref(), at, &mut path).then_some(path)
}

/// Where `path`'s key is written in `text`, if it is.
fn key_path_span(text: &str, path: &[String]) -> Option<usize> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    for (i, name) in path.iter().enumerate() {
        let (key, value) = table.iter().find(|(k, _)| k.get_ref().as_ref() == name.as_str())?;
        if i + 1 == path.len() {
            return Some(key.span().start);
        }
        match value.get_ref() {
            toml::de::DeValue::Table(inner) => table = inner,
            _ => return Some(key.span().start),
        }
    }
    None
}

fn apply_env(table: &mut toml::Table, env: &[(String, String)]) -> Result<()> {
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("SLUICE_") else { continue };
        if NOT_CONFIG.contains(&name.as_str()) {
            continue;
        }
        let lower = rest.to_ascii_lowercase();
        let mut slot = None;
        if table.contains_key(&lower) && !matches!(table.get(&lower), Some(toml::Value::Table(_))) {
            slot = Some((None, lower.clone()));
        } else {
            for (section, value) in table.iter() {
                if let toml::Value::Table(t) = value
                    && let Some(key) = lower.strip_prefix(&format!("{section}_"))
                    && t.contains_key(key)
                {
                    slot = Some((Some(section.clone()), key.to_owned()));
                }
            }
        }
        let Some((section, key)) = slot else {
            bail!("unknown environment variable {name}: it names no configuration key");
        };
        let target = match &section {
            Some(s) => match table.get_mut(s) {
                Some(toml::Value::Table(t)) => t,
                _ => continue,
            },
            None => &mut *table,
        };
        let value = match target.get(&key) {
            Some(toml::Value::Boolean(_)) => toml::Value::Boolean(match raw.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" | "" => false,
                _ => bail!("{name}={raw:?}: expected true/false or 1/0"),
            }),
            Some(toml::Value::Integer(_)) => toml::Value::Integer(
                raw.trim().parse().with_context(|| format!("{name}={raw:?}: expected a whole number"))?,
            ),
            Some(toml::Value::Array(_)) => toml::Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| toml::Value::String(s.into()))
                    .collect(),
            ),
            _ => toml::Value::String(raw.clone()),
        };
        target.insert(key, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn embedded_defaults_load() {
        let c = Config::load(None, &[], &Overrides::default()).unwrap();
        assert_eq!(c.sftp.listen.to_string(), "127.0.0.1:2222");
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from("./sluice-data"));
        assert!(!c.sftp.compat);
        assert_eq!(c.tenants.default_folders, ["students", "employees", "guardians", "visitors"]);
    }

    #[test]
    fn import_workers_default_to_one_per_core_and_at_least_two() {
        let c = Config::load(None, &[], &Overrides::default()).unwrap();
        assert_eq!(c.imports.workers, 0);
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(c.imports.worker_count(), cores.max(2));
        let c = Config::load(None, &env(&[("SLUICE_IMPORTS_WORKERS", "3")]), &Overrides::default()).unwrap();
        assert_eq!(c.imports.worker_count(), 3);
    }

    #[test]
    fn object_storage_is_off_by_default_and_its_credentials_come_from_secret_files() {
        let none = Config::load(None, &[], &Overrides::default()).unwrap();
        assert!(none.storage.bucket().unwrap().is_none(), "local disk by default");
        let dir = tempfile::tempdir().unwrap();
        let (id, secret) = (dir.path().join("id"), dir.path().join("secret"));
        std::fs::write(&id, "AKID\n").unwrap();
        std::fs::write(&secret, "s3cr3t-key\n").unwrap();
        let set = Config::load(
            None,
            &env(&[
                ("SLUICE_STORAGE_BACKEND", "s3"),
                ("SLUICE_STORAGE_BUCKET", "district-files"),
                ("SLUICE_STORAGE_ENDPOINT", "https://minio.internal:9000"),
                ("SLUICE_STORAGE_PREFIX", "sluice"),
                ("SLUICE_STORAGE_ACCESS_KEY_ID_FILE", id.to_str().unwrap()),
                ("SLUICE_STORAGE_SECRET_ACCESS_KEY_FILE", secret.to_str().unwrap()),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        let bucket = set.storage.bucket().unwrap().expect("s3");
        assert_eq!((bucket.bucket.as_str(), bucket.prefix.as_str()), ("district-files", "sluice"));
        assert_eq!(
            (bucket.access_key_id.as_str(), bucket.secret_access_key.as_str()),
            ("AKID", "s3cr3t-key")
        );
        assert!(bucket.path_style && bucket.region.is_empty(), "the region from AWS_REGION, else us-east-1");
        assert!(!format!("{set:?}").contains("s3cr3t"), "never printed");
        let no_bucket =
            Config::load(None, &env(&[("SLUICE_STORAGE_BACKEND", "s3")]), &Overrides::default()).unwrap();
        assert!(no_bucket.storage.bucket().unwrap_err().to_string().contains("needs bucket"));
        let typo = Config::load(None, &env(&[("SLUICE_STORAGE_BACKEND", "s4")]), &Overrides::default());
        let typo = format!("{:#}", typo.unwrap_err());
        assert!(typo.contains("s4") && typo.contains("local") && typo.contains("s3"), "{typo}");
        std::fs::write(&secret, "").unwrap();
        let empty = set.storage.bucket().unwrap_err().to_string();
        assert!(empty.contains("secret_access_key_file") && empty.contains("is empty"), "{empty}");
    }

    #[test]
    fn the_http_address_layers_like_the_others() {
        let e = env(&[("SLUICE_HTTP_LISTEN", "0.0.0.0:9000")]);
        assert_eq!(
            Config::load(None, &e, &Overrides::default()).unwrap().http.listen.to_string(),
            "0.0.0.0:9000"
        );
        let flag = Overrides { http_listen: Some("127.0.0.1:9100".parse().unwrap()), ..Overrides::default() };
        assert_eq!(Config::load(None, &e, &flag).unwrap().http.listen.port(), 9100);
        let bad = env(&[("SLUICE_HTTP_LISTEN", "everywhere")]);
        assert!(Config::load(None, &bad, &Overrides::default()).is_err());
    }

    #[test]
    fn cli_beats_env_beats_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sluice.toml");
        std::fs::write(
            &file,
            "data_dir = \"/from/file\"\n[sftp]\nlisten = \"127.0.0.1:1000\"\nmax_auth_attempts = 3\n",
        )
        .unwrap();
        let c = Config::load(Some(&file), &[], &Overrides::default()).unwrap();
        assert_eq!((c.sftp.listen.port(), c.sftp.max_auth_attempts), (1000, 3));
        let e = env(&[
            ("SLUICE_SFTP_LISTEN", "127.0.0.1:2000"),
            ("SLUICE_SFTP_COMPAT", "1"),
            ("SLUICE_DATA_DIR", "/env"),
        ]);
        let c = Config::load(Some(&file), &e, &Overrides::default()).unwrap();
        assert_eq!(
            (c.sftp.listen.port(), c.sftp.compat, c.data_dir.clone()),
            (2000, true, PathBuf::from("/env"))
        );
        let o = Overrides {
            data_dir: Some("/cli".into()),
            sftp_listen: Some("127.0.0.1:3000".parse().unwrap()),
            http_listen: None,
        };
        let c = Config::load(Some(&file), &e, &o).unwrap();
        assert_eq!((c.sftp.listen.port(), c.data_dir), (3000, PathBuf::from("/cli")));
        assert_eq!(c.sftp.max_auth_attempts, 3);
    }

    #[test]
    fn the_database_url_comes_from_the_file_the_environment_or_a_secret_file() {
        let none = Config::load(None, &[], &Overrides::default()).unwrap();
        assert_eq!(none.database.url().unwrap(), None, "SQLite by default");
        let url = "postgres://sluice:s3cret@db.example:5432/sluice";
        let set = Config::load(None, &env(&[("SLUICE_DATABASE_URL", url)]), &Overrides::default()).unwrap();
        assert_eq!(set.database.url().unwrap().as_deref(), Some(url));
        assert!(!format!("{set:?}").contains("s3cret"), "the URL's password is never printed");
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("database_url");
        std::fs::write(&secret, format!("{url}\n")).unwrap();
        let from_file = Config::load(
            None,
            &env(&[("SLUICE_DATABASE_URL_FILE", secret.to_str().unwrap())]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(from_file.database.url().unwrap().as_deref(), Some(url), "read and trimmed");
        let both = Config::load(
            None,
            &env(&[("SLUICE_DATABASE_URL", url), ("SLUICE_DATABASE_URL_FILE", secret.to_str().unwrap())]),
            &Overrides::default(),
        )
        .unwrap();
        assert!(both.database.url().unwrap_err().to_string().contains("both set"));
        let missing = Config::load(
            None,
            &env(&[("SLUICE_DATABASE_URL_FILE", "/nonexistent/database_url")]),
            &Overrides::default(),
        )
        .unwrap();
        assert!(
            missing.database.url().unwrap_err().to_string().contains("cannot read /nonexistent/database_url")
        );
    }

    #[test]
    fn env_lists_and_numbers_are_typed() {
        let e = env(&[
            ("SLUICE_TENANTS_DEFAULT_FOLDERS", "students, oneroster"),
            ("SLUICE_SFTP_IDLE_TIMEOUT_SECS", "5"),
        ]);
        let c = Config::load(None, &e, &Overrides::default()).unwrap();
        assert_eq!(c.tenants.default_folders, ["students", "oneroster"]);
        assert_eq!(c.sftp.idle_timeout_secs, 5);
    }

    #[test]
    fn the_defenders_defaults_are_its_rules_defaults_and_layer_like_the_others() {
        let c = Config::load(None, &[], &Overrides::default()).unwrap();
        assert_eq!(c.defender.rules().unwrap(), sluice_defender::DefenderConfig::default());
        let e = env(&[
            ("SLUICE_DEFENDER_ALLOW_LIST", "192.0.2.10, 10.0.0.0/8"),
            ("SLUICE_DEFENDER_THRESHOLD", "20"),
            ("SLUICE_DEFENDER_ENABLED", "0"),
        ]);
        let rules = Config::load(None, &e, &Overrides::default()).unwrap().defender.rules().unwrap();
        assert_eq!((rules.threshold, rules.enabled, rules.allow_list.len()), (20, false, 2));
        let bad = env(&[("SLUICE_DEFENDER_ALLOW_LIST", "school.example")]);
        let e = Config::load(None, &bad, &Overrides::default()).unwrap_err();
        assert!(
            format!("{e:#}").contains("[defender] allow_list") && format!("{e:#}").contains("school.example")
        );
        let bad = env(&[("SLUICE_DEFENDER_THRESHOLD", "0")]);
        let e = Config::load(None, &bad, &Overrides::default()).unwrap_err();
        assert!(format!("{e:#}").contains("[defender] threshold"), "{e:#}");
    }

    #[test]
    fn mistakes_are_reported_clearly() {
        let bad_num =
            Config::load(None, &env(&[("SLUICE_SFTP_MAX_AUTH_ATTEMPTS", "many")]), &Overrides::default());
        assert!(format!("{:#}", bad_num.unwrap_err()).contains("SLUICE_SFTP_MAX_AUTH_ATTEMPTS"));
        let unknown = Config::load(None, &env(&[("SLUICE_SFTP_LISTN", "x")]), &Overrides::default());
        assert!(format!("{:#}", unknown.unwrap_err()).contains("SLUICE_SFTP_LISTN"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[sftp]\nlisten_addr = \"x\"\n").unwrap();
        let typo = Config::load(Some(&file), &[], &Overrides::default()).unwrap_err();
        assert!(format!("{typo:#}").contains("listen_addr"), "{typo:#}");
        std::fs::write(&file, "[tenants]\ndefault_folders = [\"exports\"]\n").unwrap();
        assert!(Config::load(Some(&file), &[], &Overrides::default()).is_err());
        // A log level the filter cannot read is refused, not a silent server.
        let e =
            Config::load(None, &env(&[("SLUICE_LOG_LEVEL", "verbose")]), &Overrides::default()).unwrap_err();
        assert!(format!("{e:#}").contains("[log] level = \"verbose\""), "{e:#}");
    }

    /// A 4-line file with a mistake is reported at its own line, not at a line of the merged
    /// defaults (it used to say "line 58").
    #[test]
    fn a_mistake_is_reported_at_the_users_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sluice.toml");
        std::fs::write(
            &file,
            "data_dir = \"/srv/sluice\"\n[sftp]\nlisten = \"0.0.0.0:22\"\nmax_auth_attemps = 3\n",
        )
        .unwrap();
        let e = format!("{:#}", Config::load(Some(&file), &[], &Overrides::default()).unwrap_err());
        assert!(
            e.starts_with(&format!(
                "config file {}, line 4 (sftp.max_auth_attemps): unknown field",
                file.display()
            )),
            "{e}"
        );
        assert!(e.contains("4 | max_auth_attemps = 3"), "{e}");
        std::fs::write(&file, "# nightly imports\n\n[imports]\nworkers = \"four\"\n").unwrap();
        let e = format!("{:#}", Config::load(Some(&file), &[], &Overrides::default()).unwrap_err());
        assert!(e.contains("line 4 (imports.workers): invalid type: string \"four\""), "{e}");
        // A variable, in whatever case it is written, is named as the user wrote it.
        std::fs::write(&file, "[sftp]\nlisten = \"0.0.0.0:2222\"\n").unwrap();
        let e = Config::load(Some(&file), &env(&[("SLUICE_sftp_listen", "nowhere")]), &Overrides::default())
            .unwrap_err();
        assert!(format!("{e:#}").starts_with("SLUICE_sftp_listen=\"nowhere\" (sftp.listen)"), "{e:#}");
        // A string-valued variable that does not parse is named by its variable.
        let e = Config::load(None, &env(&[("SLUICE_SFTP_LISTEN", "nowhere")]), &Overrides::default())
            .unwrap_err();
        assert!(format!("{e:#}").starts_with("SLUICE_SFTP_LISTEN=\"nowhere\" (sftp.listen)"), "{e:#}");
    }

    #[test]
    fn http_bounds_load_and_none_is_zero() {
        let c = Config::load(None, &[], &Overrides::default()).unwrap();
        let limits = c.http.limits();
        assert_eq!(
            (limits.header_timeout, limits.body_timeout, limits.idle_timeout),
            (Duration::from_secs(10), Duration::from_secs(30), Duration::from_secs(60))
        );
        assert_eq!((limits.max_connections, limits.max_connections_per_ip), (1024, 64));
        for key in [
            "SLUICE_HTTP_HEADER_TIMEOUT_SECS",
            "SLUICE_HTTP_BODY_TIMEOUT_SECS",
            "SLUICE_HTTP_IDLE_TIMEOUT_SECS",
            "SLUICE_HTTP_MAX_CONNECTIONS",
            "SLUICE_HTTP_MAX_CONNECTIONS_PER_IP",
        ] {
            let e = Config::load(None, &env(&[(key, "0")]), &Overrides::default()).unwrap_err();
            assert!(format!("{e:#}").contains("must be at least 1"), "{key}: {e:#}");
        }
    }
}
