//! The command line. Every command loads the layered configuration first.

use crate::config::{Config, Overrides};
use crate::serve::{self, DataDirs};
use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use serde_json::json;
use sluice_core::Tenant;
use sluice_core::{FolderName, PasswordHash, TenantName, Trigger};
use sluice_sftp::fs::TenantTree;
use sluice_store::roles::*;
use sluice_store::{AuthorizedKey, Store};
use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "sluice", version, about = "SFTP data exchange and import automation")]
struct Cli {
    /// Configuration file (TOML). Without one, sluice runs on embedded defaults.
    #[arg(long, global = true, env = "SLUICE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (database, tenant folders, host key). Env: SLUICE_DATA_DIR.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run sluice: the SFTP server, the dashboard and REST API, and the import workers.
    Serve {
        /// Address for SFTP, e.g. 0.0.0.0:22 (port 0 picks a free port). Env: SLUICE_SFTP_LISTEN.
        #[arg(long, value_name = "ADDR")]
        sftp_listen: Option<SocketAddr>,
        /// Address for HTTP (the dashboard, the REST API, /metrics, /healthz), e.g. 127.0.0.1:8080. Env: SLUICE_HTTP_LISTEN.
        #[arg(long, value_name = "ADDR")]
        http_listen: Option<SocketAddr>,
    },
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage tenants' SSH public keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Manage REST API keys (bearer tokens), a tenant's or the operator's.
    #[command(subcommand)]
    Apikey(ApiKeyCommand),
    /// Manage dashboard accounts of tenants (owners and users).
    #[command(subcommand)]
    User(UserCommand),
    /// The operator's dashboard account.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Sources (an IPv4 address, an IPv6 /64) the defender banned for guessing passwords and
    /// other abuse: list them, or lift a ban.
    #[command(subcommand)]
    Defender(DefenderCommand),
    /// List import types with their columns.
    Types {
        #[arg(long)]
        json: bool,
    },
    /// Check files against an import type offline; exit 1 if anything would be rejected.
    Validate {
        #[arg(long = "type", value_name = "TYPE")]
        type_name: String,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Import files for a tenant without SFTP (or `import show ID`).
    #[command(args_conflicts_with_subcommands = true)]
    Import {
        #[command(subcommand)]
        show: Option<ImportCommand>,
        #[arg(long)]
        tenant: Option<String>,
        /// The import type; by default taken from each file's name (students.csv -> students).
        #[arg(long = "type", value_name = "TYPE")]
        type_name: Option<String>,
        /// Report what the import would do (counts, errors, whether it would be held) and change nothing.
        #[arg(long)]
        dry_run: bool,
        files: Vec<PathBuf>,
    },
    /// A tenant's import history, newest first.
    Imports {
        #[arg(long)]
        tenant: String,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Import the files waiting in a tenant's folders now.
    Sync {
        #[arg(long)]
        tenant: String,
    },
    /// Apply a held import despite the deletion safeguard.
    Approve { id: i64 },
    /// Drop a held import without changing anything.
    Discard { id: i64 },
    /// A tenant's records of one type.
    Records {
        #[arg(long)]
        tenant: String,
        #[arg(long = "type", value_name = "TYPE")]
        type_name: String,
        #[arg(long, default_value = "csv", value_parser = ["csv", "json"])]
        format: String,
        /// Only the records that name this student (a student's guardians or enrollments).
        #[arg(long, value_name = "ID", conflicts_with = "class")]
        student: Option<String>,
        /// Only the records that name this class or section (its enrollments).
        #[arg(long, value_name = "ID")]
        class: Option<String>,
        /// The records deactivated because an import deleted what they named (`on_delete =
        /// "deactivate"`), instead of the active ones.
        #[arg(long)]
        deactivated: bool,
    },
    /// A tenant's notifications: sent, waiting to be retried, or given up.
    Deliveries {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// A tenant's people, each with every record that is one of their roles.
    People {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// Check a deployment: configuration, data directory, database integrity, import types.
    Doctor,
    /// List the uploads a tenant completed, as recorded for the import pipeline.
    Uploads {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum ImportCommand {
    /// One import: status, counts, warnings, and with --errors its rejected rows.
    Show {
        id: i64,
        #[arg(long)]
        errors: bool,
        #[arg(long)]
        json: bool,
    },
    /// The file a held or superseded import keeps, as uploaded (to stdout, or --output).
    File {
        id: i64,
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum TenantCommand {
    /// Create a tenant and its folders.
    Add {
        name: String,
        /// Import folders, comma-separated (default: [tenants] default_folders).
        #[arg(long, value_name = "LIST")]
        folders: Option<String>,
    },
    /// List tenants.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one tenant's settings.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Stop a tenant from logging in.
    Disable { name: String },
    /// Allow a disabled tenant to log in again.
    Enable { name: String },
    /// Set a tenant's SFTP password (prompted, or one line from stdin).
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change settings: `types=students,guardians` (or `folders=...`), `trigger=on_upload|manual|schedule`,
    /// `schedule="0 2 * * *"`, `timezone=America/Chicago`, `safeguard.students.deleted=5`
    /// (hold an import that would delete more than 5% of students; `.changed` for updates).
    Set {
        name: String,
        #[arg(required = true, value_name = "KEY=VALUE")]
        settings: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Add a tenant's dashboard account; the password is prompted (or read from stdin).
    Add {
        tenant: String,
        email: String,
        #[arg(long, value_parser = ["owner", "user"])]
        role: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts (a tenant's, or with no tenant the operator's).
    List { tenant: Option<String> },
    /// Let a user manage SFTP credentials and import settings, as owners do.
    Grant { email: String },
    /// Take that back.
    Ungrant { email: String },
    /// Set an account's password (its sessions end).
    Passwd {
        email: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Set the operator admin's password (creating the account if needed).
    Passwd {
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand, Debug)]
enum DefenderCommand {
    /// The bans in force: source, until when, how many in a row, and why.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Lift a source's ban and forget its earlier ones; the running server lets it in again
    /// within a couple of seconds.
    Unban {
        /// An address (an IPv6 address stands for its /64), e.g. 203.0.113.9 or 2001:db8::/64.
        address: String,
    },
}

#[derive(Subcommand, Debug)]
enum ApiKeyCommand {
    /// Create a key and print it (once: only its hash is kept).
    Add {
        /// The tenant the key acts for.
        #[arg(long, required_unless_present = "operator", conflicts_with = "operator")]
        tenant: Option<String>,
        /// A key for the operator: every tenant.
        #[arg(long)]
        operator: bool,
        /// What the key is for, e.g. "SIS nightly job".
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List keys (prefix, name, state), never the keys themselves.
    List {
        #[arg(long, conflicts_with = "operator")]
        tenant: Option<String>,
        #[arg(long)]
        operator: bool,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key: it stops working at once.
    Revoke { id: i64 },
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Authorise the public key(s) in FILE (OpenSSH `.pub` or authorized_keys format).
    Add { tenant: String, file: PathBuf },
    /// List a tenant's keys.
    List {
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a key (by its `SHA256:...` fingerprint, as `key list` shows it); SFTP sessions
    /// that logged in with it end within a second.
    Remove { tenant: String, fingerprint: String },
}

/// A failure with the exit code the contract gives it.
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

pub fn usage(error: anyhow::Error) -> Failure {
    Failure { code: 2, error }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure { code: 1, error: e.into() }
    }
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`| head`): nothing more to say, to anyone.
        Err(f) if closed_pipe(&f.error) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

fn closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: Cli) -> Result<(), Failure> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let (sftp_listen, http_listen) = match &cli.command {
        Command::Serve { sftp_listen, http_listen } => (*sftp_listen, *http_listen),
        _ => (None, None),
    };
    let overrides = Overrides { data_dir: cli.data_dir.clone(), sftp_listen, http_listen };
    let config = Config::load(cli.config.as_deref(), &env, &overrides).map_err(usage)?;
    // The CLI's own commands print their results; their logs only matter when they fail.
    let serving = matches!(cli.command, Command::Serve { .. });
    init_logging(if serving { &config.log.level } else { "warn" });
    let dirs = DataDirs::new(&config.data_dir);
    match cli.command {
        Command::Serve { .. } => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(serve::run(config)).map_err(usage)
        }
        Command::Tenant(cmd) => tenant_command(&config, &dirs, cmd),
        Command::Doctor => doctor(&config, &dirs),
        Command::Types { json } => crate::imports::types(&config, json),
        Command::Validate { type_name, files } => crate::imports::validate(&config, &type_name, &files),
        Command::Import { show: Some(ImportCommand::Show { id, errors, json }), .. } => {
            crate::imports::show(&dirs, id, errors, json)
        }
        Command::Import { show: Some(ImportCommand::File { id, output }), .. } => {
            crate::imports::kept_file(&dirs, id, output.as_deref())
        }
        Command::Import { show: None, tenant, type_name, dry_run, files } => {
            let tenant = tenant
                .ok_or_else(|| usage(anyhow!("--tenant is required: sluice import --tenant T FILE...")))?;
            if files.is_empty() {
                return Err(usage(anyhow!(
                    "name at least one file: sluice import --tenant {tenant} FILE..."
                )));
            }
            crate::imports::import(&config, &dirs, &tenant, type_name.as_deref(), &files, dry_run)
        }
        Command::Imports { tenant, limit, json } => crate::imports::history(&dirs, &tenant, limit, json),
        Command::Sync { tenant } => crate::imports::sync(&config, &dirs, &tenant),
        Command::Approve { id } => crate::imports::approve(&config, &dirs, id),
        Command::Discard { id } => crate::imports::discard(&config, &dirs, id),
        Command::Records { tenant, type_name, format, student, class, deactivated } => {
            let related = match (student, class) {
                (Some(id), _) => Some((sluice_core::import::Related::Student, id)),
                (_, Some(id)) => Some((sluice_core::import::Related::Class, id)),
                _ => None,
            };
            crate::imports::records(&config, &dirs, &tenant, &type_name, &format, related, deactivated)
        }
        Command::People { tenant, json } => crate::imports::people(&dirs, &tenant, json),
        Command::Deliveries { tenant, json } => {
            let store = dirs.open_store().map_err(usage)?;
            store.require_tenant(&tenant)?;
            let list = store.deliveries(&tenant, 200)?;
            if json {
                let rows: Vec<_> = list
                    .iter()
                    .map(|d| json!({"id": d.id, "import": d.import_id, "channel": d.channel.as_str(), "target": d.target,
                        "status": d.status, "attempts": d.attempts, "last_error": d.last_error,
                        "created_ms": d.created_ms, "finished_ms": d.finished_ms}))
                    .collect();
                outln!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for d in list {
                    let error = d.last_error.map(|e| format!("  ({e})")).unwrap_or_default();
                    outln!(
                        "{:>6} import {:<6} {:<7} {:<8} x{} {}{error}",
                        d.id,
                        d.import_id,
                        d.channel.as_str(),
                        d.status,
                        d.attempts,
                        d.target
                    );
                }
            }
            Ok(())
        }
        Command::Key(cmd) => key_command(&dirs, cmd),
        Command::Defender(cmd) => defender_command(&dirs, cmd),
        Command::Apikey(cmd) => api_key_command(&dirs, cmd),
        Command::User(cmd) => user_command(&dirs, cmd),
        Command::Admin(AdminCommand::Passwd { password_stdin }) => {
            let store = dirs.open_store().map_err(usage)?;
            let password = if password_stdin {
                read_password_line()?
            } else {
                prompt_for("password for the dashboard admin")?
            };
            let hash = PasswordHash::choose(&password)?;
            match store.set_account_password(ADMIN, hash.as_phc()) {
                Err(sluice_store::StoreError::NoSuchAccount(_)) => {
                    store.add_account(None, ADMIN, sluice_store::Role::Admin, hash.as_phc())?;
                }
                other => other?,
            }
            store.end_sessions_of(ADMIN)?;
            outln!("password set for the dashboard account {ADMIN}");
            Ok(())
        }
        Command::Uploads { tenant, json } => {
            let store = dirs.open_store().map_err(usage)?;
            store.require_tenant(&tenant)?;
            let uploads = store.uploads(&tenant)?;
            if json {
                let rows: Vec<_> = uploads
                    .iter()
                    .map(|u| {
                        json!({"id": u.id, "tenant": u.event.tenant.as_str(), "path": u.event.path.to_string(),
                               "size": u.event.size, "sha256": u.event.sha256.as_str(), "at_ms": u.event.at_ms,
                               "duplicate_of": u.duplicate_of})
                    })
                    .collect();
                outln!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for u in uploads {
                    let retry = u.duplicate_of.map(|o| format!("  (retry of {o}: not imported again)"));
                    outln!(
                        "{:>6}  {:<40} {:>12}  {}{}",
                        u.id,
                        u.event.path,
                        u.event.size,
                        u.event.sha256.as_str(),
                        retry.unwrap_or_default()
                    );
                }
            }
            Ok(())
        }
    }
}

fn doctor(config: &Config, dirs: &DataDirs) -> Result<(), Failure> {
    let mut problems = 0;
    let mut report: Vec<String> = Vec::new();
    let mut check = |what: &str, result: Result<String>| match result {
        Ok(detail) => report.push(format!("ok       {what}: {detail}")),
        Err(e) => {
            problems += 1;
            report.push(format!("PROBLEM  {what}: {e:#}"));
        }
    };
    check(
        "configuration",
        Ok(format!("data dir {}, SFTP on {}", config.data_dir.display(), config.sftp.listen)),
    );
    check(
        "data directory",
        (if dirs.root.is_dir() {
            dirs.create()
        } else {
            Err(anyhow!("{} does not exist", dirs.root.display()))
        })
        .and_then(|()| {
            let probe = dirs.root.join(".doctor-probe");
            std::fs::write(&probe, b"").context("not writable")?;
            std::fs::remove_file(&probe)?;
            Ok("writable".into())
        }),
    );
    check(
        "database",
        dirs.open_store().and_then(|s| {
            let result = s.integrity_check()?;
            if result == "ok" {
                Ok(format!("{} (integrity ok)", dirs.database().display()))
            } else {
                bail!(result)
            }
        }),
    );
    check(
        "import types",
        crate::types::load(config.imports.types_dir()).map(|t| format!("{} types", t.all().len())),
    );
    let key = dirs.host_key();
    check(
        "host key",
        if key.exists() {
            std::fs::read_to_string(&key)
                .map(|_| key.display().to_string())
                .with_context(|| format!("{}", key.display()))
        } else {
            Ok("not generated yet (created on first `sluice serve`)".into())
        },
    );
    for line in report {
        outln!("{line}");
    }
    if problems > 0 {
        return Err(Failure { code: 1, error: anyhow!("{problems} problem(s) found") });
    }
    Ok(())
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

fn tenant_name(raw: &str) -> Result<TenantName, Failure> {
    Ok(TenantName::parse(raw)?)
}

fn tenant_command(config: &Config, dirs: &DataDirs, cmd: TenantCommand) -> Result<(), Failure> {
    // The first tenant may come before the first `sluice serve`.
    let store =
        if matches!(cmd, TenantCommand::Add { .. }) { dirs.create_store() } else { dirs.open_store() }
            .map_err(usage)?;
    match cmd {
        TenantCommand::Add { name, folders } => {
            let name = tenant_name(&name)?;
            let folders =
                FolderName::parse_list(&folders.unwrap_or_else(|| config.tenants.default_folders.join(",")))?;
            let tenant = store.add_tenant(&name, &folders)?;
            ensure_tree(dirs, &tenant)?;
            outln!(
                "tenant {} created with folders {}; set a password with `sluice tenant passwd {}` or add a key with `sluice key add {} FILE.pub`",
                tenant.name,
                folder_list(&tenant),
                tenant.name,
                tenant.name
            );
        }
        TenantCommand::List { json } => {
            let tenants = store.tenants()?;
            if json {
                let rows: Vec<_> = tenants.iter().map(|t| tenant_json(&store, t)).collect::<Result<_>>()?;
                outln!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for t in tenants {
                    let state = if t.disabled { "disabled" } else { "enabled" };
                    outln!("{:<32} {:<9} {}", t.name, state, folder_list(&t));
                }
            }
        }
        TenantCommand::Show { name, json } => {
            let t = store.require_tenant(&name)?;
            let v = tenant_json(&store, &t)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                outln!(
                    "name:      {}\nstate:     {}\nfolders:   {}\npassword:  {}\nkeys:      {}\nimports:   {}",
                    t.name,
                    if t.disabled { "disabled" } else { "enabled" },
                    folder_list(&t),
                    if t.password.is_some() { "set" } else { "not set" },
                    v["keys"].as_array().map_or(0, Vec::len),
                    when(&t)
                );
                for (type_name, trigger) in &t.type_triggers {
                    outln!("           {type_name}: {}", trigger.as_str());
                }
                if !t.notify_emails.is_empty() {
                    outln!("email:     {}", t.notify_emails.join(", "));
                }
                if let Some((url, secret)) = &t.webhook {
                    outln!(
                        "webhook:   {url} ({})",
                        if secret.is_empty() { "unsigned: set notify.webhook_secret" } else { "signed" }
                    );
                }
                for s in &t.read_settings {
                    let (k, v) = s.to_pair();
                    outln!("reading:   {k}={v}");
                }
                for s in &t.safeguards {
                    outln!(
                        "safeguard: hold {} imports that would {} more than {}%",
                        s.type_name,
                        s.limit.as_str().trim_end_matches('d'),
                        s.percent
                    );
                }
            }
        }
        TenantCommand::Disable { name } => {
            store.set_disabled(&tenant_name(&name)?, true)?;
            outln!("tenant {name} disabled: it can no longer log in, and its open SFTP sessions end now");
        }
        TenantCommand::Enable { name } => {
            store.set_disabled(&tenant_name(&name)?, false)?;
            outln!("tenant {name} enabled");
        }
        TenantCommand::Passwd { name, password_stdin } => {
            let name = tenant_name(&name)?;
            store.require_tenant(name.as_str())?;
            let password = if password_stdin { read_password_line()? } else { prompt_password(&name)? };
            store.set_password(&name, &PasswordHash::choose(&password)?)?;
            outln!("password set for tenant {name}");
        }
        TenantCommand::Set { name, settings } => {
            let name = tenant_name(&name)?;
            let types = crate::types::load(config.imports.types_dir()).map_err(usage)?;
            let cx = sluice_core::SettingsContext {
                types: &types,
                allow_private_webhooks: config.notifications.allow_private_webhooks,
            };
            let mut change = sluice_core::SettingsChange::default();
            for setting in settings {
                let (key, value) = setting.split_once('=').ok_or_else(|| {
                    usage(anyhow!("{setting:?} is not KEY=VALUE (e.g. folders=students,guardians)"))
                })?;
                change.set(key, value, cx).map_err(|e| usage(e.into()))?;
            }
            let tenant = store.change_settings(name.as_str(), &change).map_err(|e| match e {
                refused @ sluice_store::StoreError::Refused(_) => usage(refused.into()),
                other => other.into(),
            })?;
            ensure_tree(dirs, &tenant)?;
            outln!(
                "tenant {} now has folders {} and imports {}",
                tenant.name,
                folder_list(&tenant),
                when(&tenant)
            );
        }
    }
    Ok(())
}

fn ensure_tree(dirs: &DataDirs, tenant: &Tenant) -> Result<()> {
    let tree = TenantTree { layout: tenant.layout.clone(), root: dirs.tenants().join(tenant.name.as_str()) };
    tree.ensure_dirs().with_context(|| format!("cannot create folders under {}", tree.root.display()))
}

/// When a tenant's uploads are imported, in words.
fn when(t: &Tenant) -> String {
    match (t.trigger, &t.schedule) {
        (Trigger::OnUpload, _) => "as soon as an upload closes".into(),
        (Trigger::Manual, _) => "only on `sluice sync`".into(),
        (Trigger::Schedule, Some(cron)) => {
            let next = sluice_ingest::next_run(cron, &t.timezone, jiff::Timestamp::now())
                .ok()
                .flatten()
                .map(|ts| {
                    ts.to_zoned(jiff::tz::TimeZone::get(&t.timezone).unwrap_or(jiff::tz::TimeZone::UTC))
                        .to_string()
                })
                .unwrap_or_else(|| "never".into());
            format!("on schedule \"{cron}\" ({}), next {next}", t.timezone)
        }
        (Trigger::Schedule, None) => "on a schedule that is not set".into(),
        (Trigger::Manifest, _) => "when a .done manifest listing them arrives".into(),
    }
}

fn folder_list(t: &Tenant) -> String {
    t.layout.folders().map(|(f, _)| format!("/{f}")).collect::<Vec<_>>().join(" ")
}

fn tenant_json(store: &Store, t: &Tenant) -> Result<serde_json::Value> {
    let keys = store.keys(t.name.as_str())?;
    let mut v = json!({
        "name": t.name.as_str(),
        "disabled": t.disabled,
        "folders": t.layout.import_folders().iter().map(FolderName::as_str).collect::<Vec<_>>(),
        "password_set": t.password.is_some(),
        "imports": when(t),
        "keys": keys.iter().map(|k| json!({"algorithm": k.algorithm, "fingerprint": k.fingerprint, "comment": k.comment})).collect::<Vec<_>>(),
        "created_ms": t.created_ms,
    });
    // The settings as the API shows them.
    if let (Some(v), serde_json::Value::Object(settings)) = (v.as_object_mut(), sluice_web::json::settings(t))
    {
        v.extend(settings);
    }
    Ok(v)
}

fn read_password_line() -> Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("cannot read the password from stdin")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        bail!(
            "no password on stdin: pipe one line, e.g. `echo 'a long passphrase' | sluice tenant passwd NAME --password-stdin`"
        );
    }
    Ok(password)
}

fn prompt_password(name: &TenantName) -> Result<String> {
    prompt_for(&format!("SFTP password for {name}"))
}

fn defender_command(dirs: &DataDirs, cmd: DefenderCommand) -> Result<(), Failure> {
    let store = dirs.open_store().map_err(usage)?;
    let now = sluice_store::now_ms();
    match cmd {
        DefenderCommand::List { json } => {
            let bans = store.bans(now)?;
            let when = |ms: i64| {
                sluice_ingest::Timestamp::from_millisecond(ms)
                    .map_or_else(|_| ms.to_string(), |t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
            };
            if json {
                let rows: Vec<_> = bans
                    .iter()
                    .map(|b| {
                        json!({"source": b.source.to_string(), "banned_at_ms": b.at_ms, "banned_until_ms": b.until_ms,
                               "remaining_secs": b.remaining(now).as_secs(), "bans": b.count, "reason": b.reason})
                    })
                    .collect();
                outln!("{}", serde_json::to_string_pretty(&rows)?);
            } else if bans.is_empty() {
                outln!("no bans in force");
            } else {
                for b in bans {
                    outln!(
                        "{:<24} until {} ({} left)  ban {} in a row  {}",
                        b.source.to_string(),
                        when(b.until_ms),
                        sluice_defender::HumanDuration(b.remaining(now)),
                        b.count,
                        b.reason
                    );
                }
            }
        }
        DefenderCommand::Unban { address } => {
            let source: sluice_core::net::Source = address.parse().map_err(|e: String| anyhow!(e))?;
            if !store.lift_ban(&source, now)? {
                return Err(anyhow!("{source} is not banned (`sluice defender list` shows the bans)").into());
            }
            outln!("unbanned {source}; the running server lets it in again within a couple of seconds");
        }
    }
    Ok(())
}

fn key_command(dirs: &DataDirs, cmd: KeyCommand) -> Result<(), Failure> {
    let store = dirs.open_store().map_err(usage)?;
    match cmd {
        KeyCommand::Add { tenant, file } => {
            let name = tenant_name(&tenant)?;
            store.require_tenant(name.as_str())?;
            let keys = parse_key_file(&file)?;
            for key in keys {
                store.add_key(&name, &key)?;
                outln!("added {} key {} for tenant {name}", key.algorithm, key.fingerprint);
            }
        }
        KeyCommand::List { tenant, json } => {
            store.require_tenant(&tenant)?;
            let keys = store.keys(&tenant)?;
            if json {
                let rows: Vec<_> = keys
                    .iter()
                    .map(|k| json!({"algorithm": k.algorithm, "fingerprint": k.fingerprint, "comment": k.comment}))
                    .collect();
                outln!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for k in keys {
                    outln!("{:<20} {} {}", k.algorithm, k.fingerprint, k.comment);
                }
            }
        }
        KeyCommand::Remove { tenant, fingerprint } => {
            store.require_tenant(&tenant)?;
            store.remove_key(&tenant, &fingerprint)?;
            outln!("removed key {fingerprint} of tenant {tenant}; sessions that logged in with it end now");
        }
    }
    Ok(())
}

/// The operator's dashboard login.
pub const ADMIN: &str = "admin";

fn user_command(dirs: &DataDirs, cmd: UserCommand) -> Result<(), Failure> {
    let store = dirs.open_store().map_err(usage)?;
    match cmd {
        UserCommand::Add { tenant, email, role, password_stdin } => {
            store.require_tenant(&tenant)?;
            let email = email.trim().to_lowercase();
            if email.is_empty() || email.contains(char::is_whitespace) || email == ADMIN {
                return Err(usage(anyhow!("{email:?} cannot be a login; use an email address")));
            }
            let role = sluice_store::Role::parse(&role).unwrap_or(sluice_store::Role::User);
            let password = if password_stdin {
                read_password_line()?
            } else {
                prompt_for(&format!("password for {email}"))?
            };
            store.add_account(Some(&tenant), &email, role, PasswordHash::choose(&password)?.as_phc())?;
            outln!("{} {email} added to tenant {tenant}", role.as_str());
        }
        UserCommand::List { tenant } => {
            for a in store.accounts(tenant.as_deref())? {
                let manages = if a.manages { "manages credentials and settings" } else { "" };
                outln!("{:<32} {:<6} {manages}", a.email, a.role.as_str());
            }
        }
        UserCommand::Grant { email } => {
            store.set_account_manages(&email, true)?;
            outln!("{email} may now manage SFTP credentials and import settings");
        }
        UserCommand::Ungrant { email } => {
            store.set_account_manages(&email, false)?;
            outln!("{email} may no longer manage SFTP credentials and import settings");
        }
        UserCommand::Passwd { email, password_stdin } => {
            let password = if password_stdin {
                read_password_line()?
            } else {
                prompt_for(&format!("password for {email}"))?
            };
            store.set_account_password(&email, PasswordHash::choose(&password)?.as_phc())?;
            store.end_sessions_of(&email)?;
            outln!("password set for {email}; their sessions ended");
        }
    }
    Ok(())
}

fn prompt_for(who: &str) -> Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!("stdin is not a terminal: use --password-stdin to read the password from it");
    }
    let first = rpassword::prompt_password(format!("New {who}: "))?;
    let second = rpassword::prompt_password("Repeat it: ")?;
    if first != second {
        bail!("the passwords do not match; nothing was changed");
    }
    Ok(first)
}

fn api_key_command(dirs: &DataDirs, cmd: ApiKeyCommand) -> Result<(), Failure> {
    let store = dirs.open_store().map_err(usage)?;
    match cmd {
        ApiKeyCommand::Add { tenant, operator: _, name } => {
            if let Some(t) = &tenant {
                store.require_tenant(t)?;
            }
            let (token, prefix, hash) = sluice_web::keys::generate().context("cannot read random bytes")?;
            let id = store.add_api_key(tenant.as_deref(), &name, &prefix, &hash)?;
            let whose = tenant.map_or("the operator (every tenant)".to_owned(), |t| format!("tenant {t}"));
            eprintln!("API key {id} for {whose}; it is shown only now, so store it safely:");
            outln!("{token}");
        }
        ApiKeyCommand::List { tenant, operator: _, json } => {
            if let Some(t) = &tenant {
                store.require_tenant(t)?;
            }
            let keys = store.api_keys(tenant.as_deref())?;
            if json {
                let rows: Vec<_> = keys
                    .iter()
                    .map(|k| json!({"id": k.id, "name": k.name, "prefix": k.prefix, "created_ms": k.created_ms, "revoked_ms": k.revoked_ms}))
                    .collect();
                outln!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for k in keys {
                    let state = if k.revoked_ms.is_some() { "revoked" } else { "live" };
                    outln!("{:>5}  {}...  {:<8} {}", k.id, k.prefix, state, k.name);
                }
            }
        }
        ApiKeyCommand::Revoke { id } => {
            store.revoke_api_key(id, None)?;
            outln!("API key {id} revoked");
        }
    }
    Ok(())
}

/// Parses an OpenSSH public key file; each non-blank, non-comment line is one key.
fn parse_key_file(path: &Path) -> Result<Vec<AuthorizedKey>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let where_ = format!("{}:{}", path.display(), i + 1);
        keys.push(sluice_sftp::parse_public_key(line).map_err(|e| anyhow!("{where_}: {e}"))?);
    }
    if keys.is_empty() {
        bail!("{} holds no public key", path.display());
    }
    Ok(keys)
}
