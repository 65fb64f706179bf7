//! The command line as clap types, and nothing else: each command family's code lives in its
//! own module (`tenants`, `accounts`, `imports`, `operations`), dispatched by `dispatch`.

use clap::{Parser, Subcommand};
use sluice_core::connector::{ConnectorName, ConnectorNameError};
use sluice_core::saved_export::{ExportName, ExportNameError};
use sluice_core::{TenantName, TenantNameError};
use std::net::SocketAddr;
use std::path::PathBuf;

/// A tenant name is parsed where the command line is read: a command gets a valid name, a
/// malformed one is a usage error that says the rule.
fn tenant_name(raw: &str) -> Result<TenantName, TenantNameError> {
    TenantName::parse(raw)
}

#[derive(Parser, Debug)]
#[command(name = "sluice", version, about = "SFTP data exchange and import automation")]
pub(crate) struct Cli {
    /// Configuration file (TOML). Without one, sluice runs on embedded defaults.
    #[arg(long, global = true, env = "SLUICE_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Data directory (database, tenant folders, host key). Env: SLUICE_DATA_DIR.
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Changes to a tenant's records by hand.
#[derive(Subcommand, Debug)]
pub(crate) enum RecordsCommand {
    /// Delete records (all or none): each key's person role goes with it; records referring to
    /// one follow their reference's on_delete (deactivate, keep; hold refuses and lists them
    /// unless --force, which keeps them). The next import that carries a deleted key adds it
    /// back and says so.
    Delete {
        #[arg(long, value_parser = tenant_name)]
        tenant: TenantName,
        #[arg(long = "type", value_name = "TYPE")]
        type_name: String,
        /// The records' keys (a key of several columns joined by `+`).
        #[arg(value_name = "KEY", required = true)]
        keys: Vec<String>,
        /// Delete even when records refer to one through a reference that holds deletions
        /// for a decision (on_delete = "hold"): they are kept as they are.
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
}

// Parsed once per process: the size of its largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Run sluice: the SFTP server, the dashboard and REST API, and the import workers.
    Serve {
        /// Address for SFTP, e.g. 0.0.0.0:22 (port 0 picks a free port). Env: SLUICE_SFTP_LISTEN.
        #[arg(long, value_name = "ADDR")]
        sftp_listen: Option<SocketAddr>,
        /// Address for HTTP (the dashboard, the REST API, /metrics, /healthz), e.g. 127.0.0.1:8080. Env: SLUICE_HTTP_LISTEN.
        #[arg(long, value_name = "ADDR")]
        http_listen: Option<SocketAddr>,
        /// A type's TOML lost a column that its records hold values in: drop those values as
        /// the records are rewritten in the new column order (without it, the server refuses
        /// to start and names them).
        #[arg(long)]
        drop_removed_columns: bool,
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
        #[arg(long, value_parser = tenant_name)]
        tenant: Option<TenantName>,
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
        #[arg(long, value_parser = tenant_name)]
        tenant: TenantName,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Import the files waiting in a tenant's folders now.
    Sync {
        #[arg(long, value_parser = tenant_name)]
        tenant: TenantName,
    },
    /// Apply a held import despite the deletion safeguard.
    Approve { id: i64 },
    /// Drop a held import without changing anything.
    Discard { id: i64 },
    /// A tenant's records of one type. `records delete` deletes records by hand.
    #[command(args_conflicts_with_subcommands = true)]
    Records {
        #[command(subcommand)]
        change: Option<RecordsCommand>,
        #[arg(long, value_parser = tenant_name)]
        tenant: Option<TenantName>,
        #[arg(long = "type", value_name = "TYPE")]
        type_name: Option<String>,
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
    /// Export a tenant's records of one type as a CSV or XLSX file: into the tenant's /exports
    /// as TYPE.csv or TYPE.xlsx (replaced whole: a client never sees half a file), or to --out.
    /// Saved exports: `export add|list|remove|run|runs`.
    #[command(args_conflicts_with_subcommands = true)]
    Export {
        #[command(subcommand)]
        saved: Option<ExportCommand>,
        #[arg(long, value_parser = tenant_name)]
        tenant: Option<TenantName>,
        #[command(flatten)]
        what: ExportWhat,
        /// Write here instead of the tenant's /exports ("-": standard output).
        #[arg(long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
        /// Write the records' photos instead, one KEY.jpg|png per record, into /exports/photos/
        /// (images of records gone since are removed).
        #[arg(long, conflicts_with_all = ["out", "columns", "filters", "bom", "to"])]
        photos: bool,
    },
    /// A tenant's connectors: its own SFTP servers, which exports are pushed to.
    #[command(subcommand)]
    Connector(ConnectorCommand),
    /// A tenant's notifications: sent, waiting to be retried, or given up.
    Deliveries {
        #[arg(long, value_parser = tenant_name)]
        tenant: TenantName,
        #[arg(long)]
        json: bool,
    },
    /// A tenant's people, each with every record that is one of their roles.
    People {
        #[arg(long, value_parser = tenant_name)]
        tenant: TenantName,
        #[arg(long)]
        json: bool,
    },
    /// Check a deployment: configuration, data directory, database integrity, import types.
    Doctor,
    /// Back up the whole deployment into one new file while the server runs: the database (a
    /// consistent snapshot), tenants' files, photos, archives, the host key and the secret key,
    /// with each file's SHA-256. Keep it as safe as the server.
    Backup { file: PathBuf },
    /// Restore a backup into a data directory that holds no deployment (`--data-dir NEW`),
    /// checking every file against the backup's manifest first. No server may run on it.
    Restore { file: PathBuf },
    /// Move this data directory's state from SQLite into a new, empty PostgreSQL database, so
    /// that several servers can share it: every table copied in one transaction, read back and
    /// compared (rows and SHA-256 per table, printed). With --storage, tenants' exports move
    /// from the local disk into the bucket of the [storage] settings, each read back and
    /// compared (files and SHA-256 per tenant, printed). No server may run meanwhile;
    /// afterwards every server and command needs the database's url, and the [storage] settings.
    #[command(group(clap::ArgGroup::new("database").args(["to", "to_file"])))]
    Migrate {
        /// The PostgreSQL database (postgres://USER:PASSWORD@HOST/DB, or
        /// "host=... user=... dbname=..."); it must hold no sluice state yet.
        #[arg(long)]
        to: Option<String>,
        /// A file holding the url (a secret kept out of the command line).
        #[arg(long)]
        to_file: Option<PathBuf>,
        /// The bucket tenants' exports move into, s3://BUCKET/PREFIX: the one the [storage]
        /// settings name (backend = "s3"; its endpoint and credentials are used).
        #[arg(long, value_name = "S3_URL", required_unless_present_any = ["to", "to_file"])]
        storage: Option<String>,
    },
    /// The audit log: who changed what (settings, credentials, accounts, API keys, approvals,
    /// deletions, exports, connectors), when, from where, and how it ended; newest first.
    Audit {
        /// One tenant's entries (default: all, the operator's view).
        #[arg(long, value_parser = tenant_name)]
        tenant: Option<TenantName>,
        /// Only entries from this day on (YYYY-MM-DD, UTC).
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Only entries older than this id (the next page after one that ended at it).
        #[arg(long, value_name = "ID")]
        before: Option<i64>,
        /// One action, or a family of them (`login` is `login` and `login.second_factor`).
        #[arg(long)]
        action: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List the uploads a tenant completed, as recorded for the import pipeline.
    Uploads {
        #[arg(long, value_parser = tenant_name)]
        tenant: TenantName,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum ImportCommand {
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
pub(crate) enum TenantCommand {
    /// Create a tenant and its folders.
    Add {
        #[arg(value_parser = tenant_name)]
        name: TenantName,
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
        #[arg(value_parser = tenant_name)]
        name: TenantName,
        #[arg(long)]
        json: bool,
    },
    /// Stop a tenant from logging in.
    Disable {
        #[arg(value_parser = tenant_name)]
        name: TenantName,
    },
    /// Allow a disabled tenant to log in again.
    Enable {
        #[arg(value_parser = tenant_name)]
        name: TenantName,
    },
    /// Set a tenant's SFTP password (prompted, or one line from stdin).
    Passwd {
        #[arg(value_parser = tenant_name)]
        name: TenantName,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change settings: `types=students,guardians` (or `folders=...`), `routing=folders|root|both`,
    /// `trigger=on_upload|manual|schedule`, `schedule="0 2 * * *"`, `schedule.guardians="0 2 * * *"`
    /// (a type's own), `timezone=America/Chicago`, `settle_secs=60`, `blackout=2026-06-15..2026-08-20`,
    /// `safeguard.students.deleted=5` (hold an import that would delete more than 5% of students;
    /// `.changed` for updates).
    Set {
        #[arg(value_parser = tenant_name)]
        name: TenantName,
        #[arg(required = true, value_name = "KEY=VALUE")]
        settings: Vec<String>,
    },
    /// Remove a tenant: its files are moved to DATA_DIR/archive/removed/ first, then its
    /// records, imports, keys, accounts, exports and connectors are deleted, and its SFTP
    /// sessions end. Without --yes it only says what it would remove.
    Remove {
        #[arg(value_parser = tenant_name)]
        name: TenantName,
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum UserCommand {
    /// Add a tenant's dashboard account; the password is prompted (or read from stdin).
    Add {
        #[arg(value_parser = tenant_name)]
        tenant: TenantName,
        email: String,
        #[arg(long, value_parser = ["owner", "user"])]
        role: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts (a tenant's, or with no tenant the operator's).
    List {
        #[arg(value_parser = tenant_name)]
        tenant: Option<TenantName>,
    },
    /// Remove a dashboard account; its sessions end at once.
    Remove { email: String },
    /// Let a user manage SFTP credentials and import settings, as owners do.
    Grant { email: String },
    /// Take that back.
    Ungrant { email: String },
    /// Make a tenant's account an owner or a user (a user made of an owner no longer manages
    /// until granted again).
    Role {
        email: String,
        #[arg(value_parser = ["owner", "user"])]
        role: String,
    },
    /// Set an account's password (its sessions end).
    Passwd {
        email: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Switch an account's second factor off (a lost phone and recovery codes): it logs in
    /// with its password alone (or sets up a new one, where the operator requires it); its
    /// sessions end.
    SecondFactorOff { email: String },
}

#[derive(Subcommand, Debug)]
pub(crate) enum AdminCommand {
    /// Set the operator admin's password (creating the account if needed).
    Passwd {
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum DefenderCommand {
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
pub(crate) enum ApiKeyCommand {
    /// Create a key and print it (once: only its hash is kept).
    Add {
        /// The tenant the key acts for.
        #[arg(long, required_unless_present = "operator", conflicts_with = "operator", value_parser = tenant_name)]
        tenant: Option<TenantName>,
        /// A key for the operator: every tenant.
        #[arg(long)]
        operator: bool,
        /// What the key is for, e.g. "SIS nightly job".
        #[arg(long, default_value = "")]
        name: String,
        /// read: it may read but change nothing; write (the default): it may also change.
        #[arg(long, default_value = "write", value_parser = ["read", "write"])]
        scope: String,
        /// Only these import types' records, imports and exports (default: all).
        #[arg(long, value_name = "TYPE,...", value_delimiter = ',')]
        types: Vec<String>,
    },
    /// List keys (prefix, name, state), never the keys themselves.
    List {
        #[arg(long, conflicts_with = "operator", value_parser = tenant_name)]
        tenant: Option<TenantName>,
        #[arg(long)]
        operator: bool,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key: it stops working at once.
    Revoke { id: i64 },
}

#[derive(Subcommand, Debug)]
pub(crate) enum KeyCommand {
    /// Authorise the public key(s) in FILE (OpenSSH `.pub` or authorized_keys format).
    Add {
        #[arg(value_parser = tenant_name)]
        tenant: TenantName,
        file: PathBuf,
    },
    /// List a tenant's keys.
    List {
        #[arg(value_parser = tenant_name)]
        tenant: TenantName,
        #[arg(long)]
        json: bool,
    },
    /// Remove a key (by its `SHA256:...` fingerprint, as `key list` shows it); SFTP sessions
    /// that logged in with it end within a second.
    Remove {
        #[arg(value_parser = tenant_name)]
        tenant: TenantName,
        fingerprint: String,
    },
}

/// What an export writes (`sluice export` and `sluice export add`).
#[derive(clap::Args, Debug)]
pub(crate) struct ExportWhat {
    #[arg(long = "type", value_name = "TYPE")]
    pub(crate) type_name: Option<String>,
    /// csv, xlsx, or photos (one KEY.jpg|png per record into /exports/photos/).
    #[arg(long, default_value = "csv", value_parser = ["csv", "xlsx", "photos"])]
    pub(crate) format: String,
    /// The columns to write, in this order (default: all of the type's).
    #[arg(long, value_name = "A,B,...", value_delimiter = ',')]
    pub(crate) columns: Vec<String>,
    /// Only the records whose COLUMN holds VALUE (repeat for several; all must hold).
    #[arg(long = "where", value_name = "COLUMN=VALUE")]
    pub(crate) filters: Vec<String>,
    /// CSV: start the file with a UTF-8 byte order mark (Excel then shows accents).
    #[arg(long)]
    pub(crate) bom: bool,
    /// Also push the file to this connector (the tenant's own SFTP server).
    #[arg(long, value_name = "CONNECTOR", value_parser = connector_name)]
    pub(crate) to: Option<ConnectorName>,
}

fn connector_name(raw: &str) -> Result<ConnectorName, ConnectorNameError> {
    ConnectorName::parse(raw)
}

#[derive(Subcommand, Debug)]
pub(crate) enum ConnectorCommand {
    /// Add a connector: the tenant's own SFTP server, which exports can be pushed to. The
    /// credential is stored sealed and never shown again; the host key must be pinned (here
    /// with --host-key, or after checking it with `connector test --accept`) before any
    /// transfer.
    Add {
        #[arg(value_parser = tenant_name)]
        tenant: TenantName,
        #[arg(value_parser = connector_name)]
        name: ConnectorName,
        /// sftp://USER@HOST:PORT/PATH (PATH: the remote folder).
        #[arg(long)]
        url: String,
        /// An OpenSSH private key file to log in with (unencrypted).
        #[arg(
            long,
            value_name = "FILE",
            conflicts_with = "password_stdin",
            required_unless_present = "password_stdin"
        )]
        key: Option<PathBuf>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// The server's host key, TYPE BASE64 (as `ssh-keyscan` or known_hosts has it).
        #[arg(long, value_name = "'TYPE BASE64'")]
        host_key: Option<String>,
        /// Write files under their final name at once (for servers that refuse renames);
        /// by default a file is written to a temporary name and renamed when whole.
        #[arg(long)]
        no_rename: bool,
        /// Also pull: files in the remote folder's subfolders named like the tenant's folders
        /// (students/, ...) are fetched and imported as if uploaded (`connector pull`).
        #[arg(long)]
        pull: bool,
        /// Pull by itself at these times, in the tenant's time zone (cron: "*/15 * * * *").
        #[arg(long, value_name = "CRON", requires = "pull")]
        schedule: Option<String>,
        /// After a file is pulled: keep it (the default; it is not fetched again while its
        /// size and time stay the same), remove it, or move:DIR it on the server.
        #[arg(long, value_name = "remove|keep|move:DIR", requires = "pull", default_value = "keep")]
        after_pull: String,
        /// Replace a connector of the same name.
        #[arg(long)]
        replace: bool,
    },
    /// Connect and show the server's host key and fingerprint; with --accept, pin it. With a
    /// pinned key, also log in and list the folder.
    Test {
        #[arg(value_parser = tenant_name)]
        tenant: TenantName,
        #[arg(value_parser = connector_name)]
        name: ConnectorName,
        #[arg(long)]
        accept: bool,
    },
    /// Push a file to the connector's folder now (written whole under a temporary name, then
    /// renamed), retried as exports' pushes are.
    Push {
        #[arg(value_parser = tenant_name)]
        tenant: TenantName,
        #[arg(value_parser = connector_name)]
        name: ConnectorName,
        file: PathBuf,
        /// The name on the server (default: the file's own name).
        #[arg(long = "as", value_name = "NAME")]
        remote_name: Option<String>,
    },
    /// Pull now: fetch the files waiting on the connector's server and record them as uploads.
    Pull {
        #[arg(value_parser = tenant_name)]
        tenant: TenantName,
        #[arg(value_parser = connector_name)]
        name: ConnectorName,
    },
    /// A tenant's connectors (never their credentials).
    List {
        #[arg(value_parser = tenant_name)]
        tenant: TenantName,
        #[arg(long)]
        json: bool,
    },
    /// Remove a connector (refused while a saved export pushes to it).
    Remove {
        #[arg(value_parser = tenant_name)]
        tenant: TenantName,
        #[arg(value_parser = connector_name)]
        name: ConnectorName,
    },
    /// Every transfer attempt, newest first (of one connector, or all).
    Log {
        #[arg(value_parser = tenant_name)]
        tenant: TenantName,
        #[arg(value_parser = connector_name)]
        name: Option<ConnectorName>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

fn export_name(raw: &str) -> Result<ExportName, ExportNameError> {
    ExportName::parse(raw)
}

#[derive(Subcommand, Debug)]
pub(crate) enum ExportCommand {
    /// Save an export by name: it writes /exports/NAME.csv (or .xlsx) when run, on demand,
    /// on a --schedule, or --after-import of its type.
    Add {
        #[arg(value_parser = tenant_name)]
        tenant: TenantName,
        #[arg(value_parser = export_name)]
        name: ExportName,
        #[command(flatten)]
        what: ExportWhat,
        /// Run at these times, read in the tenant's time zone (cron: "0 6 * * 1-5").
        #[arg(long, value_name = "CRON", conflicts_with = "after_import")]
        schedule: Option<String>,
        /// Run after every import of its type that added, changed or deleted records.
        #[arg(long)]
        after_import: bool,
        /// With --to: send the file to the connector alone, not kept in the tenant's /exports.
        #[arg(long, requires = "to")]
        not_in_exports: bool,
        /// Replace a saved export of the same name.
        #[arg(long)]
        replace: bool,
    },
    /// A tenant's saved exports.
    List {
        #[arg(value_parser = tenant_name)]
        tenant: TenantName,
        #[arg(long)]
        json: bool,
    },
    /// Remove a saved export (its file in /exports and its run log stay).
    Remove {
        #[arg(value_parser = tenant_name)]
        tenant: TenantName,
        #[arg(value_parser = export_name)]
        name: ExportName,
    },
    /// Run a saved export now; exits 1 if it failed (the last file stays).
    Run {
        #[arg(value_parser = tenant_name)]
        tenant: TenantName,
        #[arg(value_parser = export_name)]
        name: ExportName,
    },
    /// The log of a tenant's export runs (of one export, or all), newest first.
    Runs {
        #[arg(value_parser = tenant_name)]
        tenant: TenantName,
        #[arg(value_parser = export_name)]
        name: Option<ExportName>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
}
