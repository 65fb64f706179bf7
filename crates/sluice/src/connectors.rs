//! `sluice connector`: a tenant's own SFTP servers (add, test and pin the host key, list,
//! remove, the transfer log).

use crate::cli::ConnectorCommand;
use crate::config::Config;
use crate::dirs::DataDirs;
use crate::failure::{Failure, usage};
use anyhow::{Context, anyhow};
use sluice_connect::Credential;
use sluice_core::connector::{AfterPull, Connector, HostKey, Pull, SftpAddress};
use sluice_core::schedule::Cron;
use sluice_core::views::ConnectorView;
use std::io::BufRead;
use zeroize::Zeroizing;

pub fn command(config: &Config, dirs: &DataDirs, cmd: ConnectorCommand) -> Result<(), Failure> {
    let store = dirs.open_store().map_err(usage)?;
    match cmd {
        ConnectorCommand::Add {
            tenant,
            name,
            url,
            key,
            password_stdin,
            host_key,
            no_rename,
            pull,
            schedule,
            after_pull,
            replace,
        } => {
            store.require_tenant(&tenant)?;
            let address = SftpAddress::parse(&url).map_err(|e| usage(e.into()))?;
            let pull = match pull {
                false => None,
                true => Some(Pull {
                    schedule: schedule.map(|s| Cron::parse(&s)).transpose().map_err(|e| usage(e.into()))?,
                    after: AfterPull::parse(&after_pull).map_err(|e| usage(anyhow!(e)))?,
                }),
            };
            let host_key = match host_key {
                Some(k) => Some(HostKey::parse(&k).map_err(|e| usage(e.into()))?),
                // Replacing (a new password, say) keeps the pin while the server is the same.
                None if replace => store.connector(&tenant, &name)?.and_then(|(old, _)| {
                    (old.address.host == address.host && old.address.port == address.port)
                        .then_some(old.host_key)
                        .flatten()
                }),
                None => None,
            };
            let credential = match (key, password_stdin) {
                (Some(path), _) => {
                    let text = Zeroizing::new(
                        std::fs::read_to_string(&path)
                            .with_context(|| format!("cannot read {}", path.display()))?,
                    );
                    // Checked now, not at the first push.
                    russh::keys::decode_secret_key(&text, None).map_err(|e| {
                        anyhow!("{} is not an unencrypted OpenSSH private key: {e}", path.display())
                    })?;
                    Credential::PrivateKey(text)
                }
                (None, true) => {
                    let mut line = Zeroizing::new(String::new());
                    std::io::stdin().lock().read_line(&mut line)?;
                    let password = line.trim_end_matches(['\r', '\n']);
                    if password.is_empty() {
                        return Err(anyhow!("no password on standard input").into());
                    }
                    Credential::Password(Zeroizing::new(password.to_owned()))
                }
                (None, false) => return Err(usage(anyhow!("give --key FILE or --password-stdin"))),
            };
            let transfers = dirs.transfers(config).map_err(usage)?;
            let sealed = transfers.key.seal(&tenant, &name, &credential)?;
            let connector =
                Connector { name, address, auth: credential.kind(), host_key, rename: !no_rename, pull };
            store.save_connector(&tenant, &connector, &sealed, replace)?;
            let pinned = match &connector.host_key {
                Some(k) => format!("host key {} pinned", k.fingerprint()),
                None => format!(
                    "no host key pinned yet: `sluice connector test {tenant} {} --accept` shows and pins it",
                    connector.name
                ),
            };
            outln!("added connector {} of tenant {tenant}: {} ({pinned})", connector.name, connector.address);
            Ok(())
        }
        ConnectorCommand::Test { tenant, name, accept } => {
            store.require_tenant(&tenant)?;
            let (connector, sealed) = store
                .connector(&tenant, &name)?
                .ok_or_else(|| sluice_store::StoreError::NoSuchConnector(name.to_string()))?;
            let presented = sluice_connect::probe(&connector.address, connector.host_key.as_ref())?;
            outln!("{} presents host key {} ({})", connector.address, presented, presented.fingerprint());
            let pinned = match (&connector.host_key, accept) {
                (Some(pinned), _) if *pinned == presented => pinned.clone(),
                (_, true) => {
                    store.pin_host_key(&tenant, &connector.name, &presented)?;
                    outln!("pinned {}", presented.fingerprint());
                    presented
                }
                (Some(pinned), false) => {
                    return Err(anyhow!(
                        "the pinned host key is {}, the server presents {}: transfers are refused. If the district \
                         changed its server's key, check the new one with them, then pin it with --accept",
                        pinned.fingerprint(),
                        presented.fingerprint()
                    )
                    .into());
                }
                (None, false) => {
                    outln!(
                        "not pinned: check this fingerprint with the server's administrator, then run again with --accept"
                    );
                    return Ok(());
                }
            };
            let connector = Connector { host_key: Some(pinned), ..connector };
            let transfers = dirs.transfers(config).map_err(usage)?;
            let credential = transfers.key.open(&tenant, &connector.name, &sealed)?;
            let files = sluice_connect::check(&connector, &credential)?;
            outln!(
                "logged in as {}; {} holds {} file(s)",
                connector.address.user,
                connector.address.path,
                files.len()
            );
            Ok(())
        }
        ConnectorCommand::Push { tenant, name, file, remote_name } => {
            store.require_tenant(&tenant)?;
            let remote_name = match remote_name {
                Some(n) => n,
                None => file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            };
            // One plain file name on the server, resolved here as an SFTP path would be.
            let remote_name = sluice_core::FileName::parse(&remote_name)
                .map_err(|e| usage(anyhow!("{remote_name:?} cannot be a file name on the server: {e}")))?;
            if !file.is_file() {
                return Err(usage(anyhow!("{} is not a file", file.display())));
            }
            let transfers = dirs.transfers(config).map_err(usage)?;
            let pushed = transfers.push_to(&*store, &tenant, &name, &file, remote_name.as_str())?;
            outln!("pushed {} bytes to {name}: {}", pushed.bytes, pushed.remote);
            Ok(())
        }
        ConnectorCommand::Pull { tenant, name } => {
            let t = store.require_tenant(&tenant)?;
            let types = crate::imports::load_types(config)?;
            let transfers = dirs.transfers(config).map_err(usage)?;
            let pulled = transfers.pull(&*store, &types, &dirs.tenants(), &dirs.upload_spool(), &t, &name)?;
            for (path, bytes) in &pulled.fetched {
                outln!("fetched {path} ({bytes} bytes)");
            }
            for remote in &pulled.changing {
                outln!("{remote} is still changing: left for the next pull");
            }
            for (remote, why) in &pulled.after_failed {
                outln!("{remote} was fetched, but: {why}");
            }
            for (remote, why) in &pulled.failed {
                outln!("{remote} was not fetched (the next pull tries again): {why}");
            }
            outln!(
                "pulled {} file(s) for tenant {tenant} from {name} ({} pulled before and unchanged); \
                 they are imported as uploads are",
                pulled.fetched.len(),
                pulled.already
            );
            Ok(())
        }
        ConnectorCommand::List { tenant, json } => {
            store.require_tenant(&tenant)?;
            let views: Vec<ConnectorView> =
                store.connectors(&tenant)?.iter().map(ConnectorView::from).collect();
            if json {
                outln!("{}", serde_json::to_string_pretty(&views)?);
            } else {
                for c in views {
                    let pin = c.fingerprint.unwrap_or_else(|| "host key not pinned".to_owned());
                    outln!("{:<20} {:<50} {:<11} {pin}", c.name, c.url, c.auth.as_str());
                }
            }
            Ok(())
        }
        ConnectorCommand::Remove { tenant, name } => {
            store.require_tenant(&tenant)?;
            store.remove_connector(&tenant, &name)?;
            outln!("removed connector {name} of tenant {tenant} and its credential");
            Ok(())
        }
        ConnectorCommand::Log { tenant, name, limit } => {
            store.require_tenant(&tenant)?;
            for t in store.transfers(&tenant, name.as_deref(), limit)? {
                let what = match (&t.bytes, &t.error) {
                    (Some(b), _) => format!("{b} bytes"),
                    (_, Some(e)) => format!("failed: {e}"),
                    _ => String::new(),
                };
                outln!(
                    "{:>6} {} {:<16} {:<4} {:<24} {what}",
                    t.id,
                    at_text(t.at_ms),
                    t.connector,
                    t.direction,
                    t.file
                );
            }
            Ok(())
        }
    }
}

/// A time as the CLI prints it.
pub(crate) fn at_text(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map_or_else(|_| ms.to_string(), |t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
}
