//! `sluice doctor` and `sluice defender ...`: checking a deployment, and the defender's bans.

use crate::cli::*;
use crate::config::Config;
use crate::dirs::DataDirs;
use crate::failure::{Failure, usage};
use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;

pub(crate) fn doctor(config: &Config, dirs: &DataDirs) -> Result<(), Failure> {
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
    let store = if dirs.on_postgres() {
        // Connecting brings the schema up to date, or says why it cannot.
        dirs.create_store_unsettled()
            .map(|s| (s, "PostgreSQL at [database] url (reachable, schema up to date)".to_owned()))
    } else {
        dirs.open_sqlite().and_then(|s| {
            let result = s.integrity_check()?;
            if result == "ok" {
                let store: sluice_store::SharedStore = std::sync::Arc::new(s);
                Ok((store, format!("{} (integrity ok)", dirs.database().display())))
            } else {
                bail!(result)
            }
        })
    };
    let store = match store {
        Ok((store, detail)) => {
            check("database", Ok(detail));
            Some(store)
        }
        Err(e) => {
            check("database", Err(e));
            None
        }
    };
    let types = crate::types::load(config.imports.types_dir());
    if let (Some(store), Ok(_)) = (&store, &types) {
        // A type whose columns were edited leaves its records to be rewritten when the server
        // next starts; commands are refused until then. Looked at, nothing written.
        check(
            "records' columns",
            dirs.settle_layouts(store, sluice_store::Settling::Look)
                .map(|()| "every type's records are stored in its columns' order".to_owned()),
        );
    }
    if let Some(bucket) = dirs.bucket() {
        check(
            "object storage",
            bucket
                .check()
                .and_then(|()| bucket.check_writable())
                .map(|()| format!("{} (reachable, listable, writable)", bucket.shown()))
                .map_err(|e| anyhow!("{e} (credentials: {})", bucket.credentials())),
        );
    }
    check(
        "tenants' exports",
        dirs.exports_place().map(|_| match (dirs.bucket(), dirs.marked_exports_in_bucket()) {
            (Some(bucket), true) => format!("in {}", bucket.url()),
            (Some(bucket), false) => {
                format!("in {} (the data directory is marked when it is first served)", bucket.url())
            }
            (None, _) => format!("on the local disk, in {}", dirs.tenants().display()),
        }),
    );
    check("import types", types.map(|t| format!("{} types", t.all().len())));
    let (key, generated) = config.host_key_file();
    check(
        "host key",
        if key.exists() {
            std::fs::read_to_string(&key)
                .map_err(anyhow::Error::from)
                .and_then(|text| {
                    russh::keys::PrivateKey::from_openssh(&text)
                        .map_err(|e| anyhow!("not an OpenSSH private key: {e}"))
                })
                .map(|k| {
                    format!(
                        "{} ({})",
                        key.display(),
                        k.public_key().fingerprint(russh::keys::HashAlg::Sha256)
                    )
                })
                .with_context(|| format!("{}", key.display()))
        } else if generated {
            Ok("not generated yet (created on first `sluice serve`)".into())
        } else {
            Err(anyhow!("[sftp] host_key_file {} does not exist", key.display()))
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

pub(crate) fn defender_command(dirs: &DataDirs, cmd: DefenderCommand) -> Result<(), Failure> {
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
