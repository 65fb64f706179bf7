//! Parses the command line, loads the configuration, and hands each command to its family.

use crate::cli::*;
use crate::config::{Config, Overrides};
use crate::dirs::DataDirs;
use crate::failure::closed_pipe;
use crate::failure::{Failure, usage};
use crate::serve;
use anyhow::{Result, anyhow};
use clap::Parser;
use serde_json::json;
use sluice_core::views::DeliveryView;
use std::io::IsTerminal;
use std::process::ExitCode;

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // A name that cannot be a tenant's is rejected input (1), as it always was; other
            // command-line mistakes are usage errors (2); help and version are not errors.
            let tenant_name =
                std::error::Error::source(&e).is_some_and(|s| s.is::<sluice_core::TenantNameError>());
            return ExitCode::from(match () {
                _ if !e.use_stderr() => 0,
                _ if tenant_name => 1,
                _ => 2,
            });
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

fn run(cli: Cli) -> Result<(), Failure> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let (sftp_listen, http_listen) = match &cli.command {
        Command::Serve { sftp_listen, http_listen, .. } => (*sftp_listen, *http_listen),
        _ => (None, None),
    };
    let overrides = Overrides { data_dir: cli.data_dir.clone(), sftp_listen, http_listen };
    let config = Config::load(cli.config.as_deref(), &env, &overrides).map_err(usage)?;
    // The CLI's own commands print their results; their logs only matter when they fail.
    let serving = matches!(cli.command, Command::Serve { .. });
    init_logging(if serving { &config.log.level } else { "warn" });
    // Its errors are the configuration's ([database], [storage], a marked data directory).
    let dirs = match &cli.command {
        // Exports still on the disk are what it moves into the bucket.
        Command::Migrate { storage: Some(_), .. } => DataDirs::of_moving_exports(&config),
        // It reports where exports are (and what disagrees) instead of refusing to look.
        Command::Doctor => DataDirs::of_moving_exports(&config),
        _ => DataDirs::of(&config),
    }
    .map_err(usage)?;
    // A command that changes something is recorded in the audit log once it has run.
    let mut audited = crate::audit::change_of(&cli.command);
    if let Some(c) = audited.as_mut() {
        crate::audit::resolve_tenant(&dirs, c);
    }
    let before = audited.as_ref().and_then(|c| crate::audit::snapshot(&dirs, c));
    let result = command(cli, config, &dirs);
    if let Some(c) = &audited {
        crate::audit::record(&dirs, c, before, &result);
    }
    result
}

fn command(cli: Cli, config: Config, dirs: &DataDirs) -> Result<(), Failure> {
    let dirs = dirs.clone();
    match cli.command {
        Command::Audit { tenant, since, limit, before, action, json } => {
            let shown = crate::audit::Shown {
                tenant: tenant.as_deref(),
                since: since.as_deref(),
                before,
                action,
                limit,
            };
            crate::audit::list(&dirs, shown, json)
        }
        Command::Serve { drop_removed_columns, .. } => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(serve::run(config, dirs, drop_removed_columns)).map_err(usage)
        }
        Command::Tenant(cmd) => crate::tenants::tenant_command(&config, &dirs, cmd),
        Command::Doctor => crate::operations::doctor(&config, &dirs),
        Command::Backup { file } => crate::backup::backup(&config, &dirs, &file),
        Command::Restore { file } => crate::backup::restore(&config, &dirs, &file),
        Command::Migrate { to, to_file, storage } => {
            crate::migrate::migrate(&dirs, to, to_file.as_deref(), storage.as_deref())
        }
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
        Command::Connector(cmd) => crate::connectors::command(&config, &dirs, cmd),
        Command::Export { saved: Some(cmd), .. } => crate::exports::saved_command(&config, &dirs, cmd),
        Command::Export { saved: None, tenant, what, out, photos } => {
            let tenant = tenant.ok_or_else(|| {
                usage(anyhow!(
                    "--tenant is required: sluice export --tenant T --type TYPE [--format csv|xlsx]"
                ))
            })?;
            if photos || what.format == "photos" {
                return crate::exports::export_photos(&config, &dirs, tenant, what, out);
            }
            crate::exports::export(&config, &dirs, tenant, what, out)
        }
        Command::Records {
            change: Some(RecordsCommand::Delete { tenant, type_name, keys, force, json }),
            ..
        } => crate::imports::delete_records(&config, &dirs, &tenant, &type_name, &keys, force, json),
        Command::Records { change: None, tenant, type_name, format, student, class, deactivated } => {
            let (Some(tenant), Some(type_name)) = (tenant, type_name) else {
                return Err(usage(anyhow!(
                    "--tenant and --type are required: sluice records --tenant T --type TYPE \
                     (or sluice records delete --tenant T --type TYPE KEY...)"
                )));
            };
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
                let rows: Vec<_> = list.iter().map(DeliveryView::from).collect();
                outln!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for d in list {
                    let error = d.last_error.map(|e| format!("  ({e})")).unwrap_or_default();
                    let about = match d.about {
                        sluice_core::delivery::About::Import(id) => format!("import {id}"),
                        sluice_core::delivery::About::ExportRun(id) => format!("export run {id}"),
                    };
                    outln!(
                        "{:>6} {:<16} {:<7} {:<8} x{} {}{error}",
                        d.id,
                        about,
                        d.channel.as_str(),
                        d.status,
                        d.attempts,
                        d.target
                    );
                }
            }
            Ok(())
        }
        Command::Key(cmd) => crate::tenants::key_command(&dirs, cmd),
        Command::Defender(cmd) => crate::operations::defender_command(&dirs, cmd),
        Command::Apikey(cmd) => crate::accounts::api_key_command(&config, &dirs, cmd),
        Command::User(cmd) => crate::accounts::user_command(&dirs, cmd),
        Command::Admin(AdminCommand::Passwd { password_stdin }) => {
            crate::accounts::admin_passwd(&dirs, password_stdin)
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
                               "duplicate_of": u.duplicate_of, "queued_by_sync": u.requested})
                    })
                    .collect();
                outln!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for u in uploads {
                    // A sync queues the files waiting in the folders as events of their own.
                    let retry = u
                        .duplicate_of
                        .map(|o| format!("  (retry of {o}: not imported again)"))
                        .or_else(|| {
                            u.requested
                                .then(|| "  (queued by a sync or schedule, not a new upload)".to_owned())
                        });
                    let at = jiff::Timestamp::from_millisecond(u.event.at_ms)
                        .map(|t| t.strftime("%Y-%m-%d %H:%M:%SZ").to_string())
                        .unwrap_or_default();
                    outln!(
                        "{:>6}  {at}  {:<40} {:>12}  {}{}",
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
