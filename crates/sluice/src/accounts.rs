//! `sluice user ...`, `sluice admin passwd` and `sluice apikey ...`: who may use the dashboard
//! and the REST API.

use crate::cli::*;
use crate::dirs::DataDirs;
use crate::failure::{Failure, usage};
use anyhow::{Context, Result, anyhow, bail};
use sluice_core::PasswordHash;
use sluice_core::views::ApiKeyView;
use std::io::{BufRead, IsTerminal};

pub(crate) fn read_password_line() -> Result<String> {
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

/// The operator's dashboard login.
pub const ADMIN: &str = "admin";

pub(crate) fn user_command(dirs: &DataDirs, cmd: UserCommand) -> Result<(), Failure> {
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
        UserCommand::Remove { email } => {
            let email = email.trim().to_lowercase();
            if email == ADMIN {
                return Err(usage(anyhow!("the operator's admin account cannot be removed")));
            }
            store.remove_account(&email)?;
            outln!("{email} removed; its dashboard sessions ended");
        }
        UserCommand::Grant { email } => {
            store.set_account_manages(&email, true)?;
            outln!("{email} may now manage SFTP credentials and import settings");
        }
        UserCommand::Role { email, role } => {
            let role = if role == "owner" { sluice_store::Role::Owner } else { sluice_store::Role::User };
            store.set_account_role(&email.trim().to_lowercase(), role)?;
            let said = if role == sluice_store::Role::Owner { "an owner" } else { "a user" };
            outln!("{email} is now {said} of their tenant");
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
        UserCommand::SecondFactorOff { email } => {
            let email = email.trim().to_lowercase();
            if store.account_by_email(&email)?.is_none() {
                return Err(usage(anyhow!("no dashboard account {email}")));
            }
            if !store.disable_second_factor(&email)? {
                return Err(usage(anyhow!("{email} has no second factor; nothing changed")));
            }
            store.end_sessions_of(&email)?;
            outln!("second factor of {email} switched off; their sessions ended");
        }
    }
    Ok(())
}

pub(crate) fn prompt_for(who: &str) -> Result<String> {
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

pub(crate) fn api_key_command(
    config: &crate::config::Config,
    dirs: &DataDirs,
    cmd: ApiKeyCommand,
) -> Result<(), Failure> {
    let store = dirs.open_store().map_err(usage)?;
    match cmd {
        ApiKeyCommand::Add { tenant, operator: _, name, scope, types } => {
            if let Some(t) = &tenant {
                store.require_tenant(t)?;
            }
            let types: Vec<String> =
                types.iter().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).collect();
            if !types.is_empty() {
                let known = crate::types::load(config.imports.types_dir()).map_err(usage)?;
                if let Some(unknown) = types.iter().find(|t| !known.has_records_of(t)) {
                    return Err(usage(anyhow!(
                        "--types: no import type {unknown:?}; `sluice types` lists them"
                    )));
                }
            }
            let scope = sluice_store::KeyScope { write: scope == "write", types };
            let (token, prefix, hash) = sluice_web::keys::generate().context("cannot read random bytes")?;
            let id = store.add_api_key(tenant.as_deref(), &name, &prefix, &hash, &scope)?;
            let whose = tenant.map_or("the operator (every tenant)".to_owned(), |t| format!("tenant {t}"));
            eprintln!("API key {id} for {whose}; it is shown only now, so store it safely:");
            outln!("{token}");
            if crate::failure::stdout_closed() {
                // Nobody saw the token: a key no one holds is only a risk.
                store.revoke_api_key(id, None)?;
                return Err(anyhow!(
                    "API key {id} was revoked again: its token could not be shown (stdout is closed)"
                )
                .into());
            }
        }
        ApiKeyCommand::List { tenant, operator: _, json } => {
            if let Some(t) = &tenant {
                store.require_tenant(t)?;
            }
            let keys = store.api_keys(tenant.as_deref())?;
            if json {
                let rows: Vec<_> = keys.iter().map(ApiKeyView::from).collect();
                outln!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for k in keys {
                    let state = if k.revoked_ms.is_some() { "revoked" } else { "live" };
                    let access = if k.scope.write { "write" } else { "read" };
                    let types = if k.scope.types.is_empty() {
                        "all types".to_owned()
                    } else {
                        k.scope.types.join(",")
                    };
                    outln!(
                        "{:>5}  {}...  {:<8} {:<6} {:<24} {}",
                        k.id,
                        k.prefix,
                        state,
                        access,
                        types,
                        k.name
                    );
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

/// `sluice admin passwd`: the operator's dashboard password (the account is created if needed;
/// its sessions end).
pub(crate) fn admin_passwd(dirs: &DataDirs, password_stdin: bool) -> Result<(), Failure> {
    let store = dirs.open_store().map_err(usage)?;
    let password =
        if password_stdin { read_password_line()? } else { prompt_for("password for the dashboard admin")? };
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
