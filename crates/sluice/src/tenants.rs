//! `sluice tenant ...` and `sluice key ...`: tenants, their settings and their SSH keys.

use crate::accounts::{prompt_for, read_password_line};
use crate::cli::*;
use crate::config::Config;
use crate::dirs::DataDirs;
use crate::failure::{Failure, usage};
use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;
use sluice_core::views::{KeyView, SettingsView};
use sluice_core::{FolderName, PasswordHash, Tenant, TenantName, Trigger};
use sluice_sftp::fs::TenantTree;
use sluice_store::AuthorizedKey;
use sluice_store::roles::*;
use std::path::Path;

pub(crate) fn tenant_command(config: &Config, dirs: &DataDirs, cmd: TenantCommand) -> Result<(), Failure> {
    // The first tenant may come before the first `sluice serve`.
    let store =
        if matches!(cmd, TenantCommand::Add { .. }) { dirs.create_store() } else { dirs.open_store() }
            .map_err(usage)?;
    match cmd {
        TenantCommand::Add { name, folders } => {
            let folders =
                FolderName::parse_list(&folders.unwrap_or_else(|| config.tenants.default_folders.join(",")))?;
            // What a removal of an earlier tenant of this name left in the bucket is not this
            // one's (a tenant that exists keeps its exports: adding it again is refused below).
            if store.tenant(&name)?.is_none() {
                let kept = dirs.exports().clear_leftovers(&name).with_context(|| {
                    format!(
                        "cannot clear tenants/{name}/ in the bucket before adding the tenant; nothing added"
                    )
                })?;
                if let Some((files, dir)) = kept {
                    outln!(
                        "the bucket held {files} files under the name {name} (an earlier tenant's, or another \
                         deployment's under the same prefix): they are kept in {} and the new tenant starts empty",
                        dir.display()
                    );
                }
            }
            let tenant = store.add_tenant(&name, &folders)?;
            ensure_tree(dirs, &tenant)?;
            outln!(
                "tenant {} created in {} with folders {}; set a password with `sluice tenant passwd {}` or add a key with `sluice key add {} FILE.pub`",
                tenant.name,
                std::path::absolute(&dirs.root).unwrap_or_else(|_| dirs.root.clone()).display(),
                folder_list(&tenant),
                tenant.name,
                tenant.name
            );
        }
        TenantCommand::List { json } => {
            let tenants = store.tenants()?;
            if json {
                let rows: Vec<_> = tenants.iter().map(|t| tenant_json(&*store, t)).collect::<Result<_>>()?;
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
            let v = tenant_json(&*store, &t)?;
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
                if t.routing != sluice_core::Routing::Folders {
                    outln!("routing:   {} (files at / by their required names)", t.routing.as_str());
                }
                if let (Some(cron), false) = (&t.schedule, t.trigger == Trigger::Schedule) {
                    outln!("schedule:  \"{cron}\" ({}), used when trigger=schedule", t.timezone);
                }
                for (type_name, trigger) in &t.type_triggers {
                    outln!("           {type_name}: {}", trigger.as_str());
                }
                for (type_name, cron) in &t.type_schedules {
                    outln!("           {type_name}: on its own schedule \"{cron}\" ({})", t.timezone);
                }
                if t.settle_secs > 0 {
                    outln!("settle:    imports wait until uploads have been quiet {} s", t.settle_secs);
                }
                if !t.blackouts.is_empty() {
                    let list: Vec<String> = t.blackouts.iter().map(ToString::to_string).collect();
                    outln!("blackout:  {} (mirror imports delete nothing by omission)", list.join(", "));
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
        TenantCommand::Remove { name, yes } => {
            let t = store.require_tenant(&name)?;
            let records: u64 = store.record_counts(&name)?.iter().map(|(_, n)| n).sum();
            let accounts = store.accounts(Some(&name))?.len();
            let keys = store.keys(&name)?.len();
            let tree = dirs.tenants().join(name.as_str());
            let said = format!(
                "tenant {name}: {records} records, {} imports kept in its history, {accounts} dashboard accounts, {keys} SSH keys, its API keys, saved exports and connectors, and its files in {}{}",
                store.imports(&name, usize::MAX)?.len(),
                tree.display(),
                dirs.bucket().map(|b| format!(" and its exports in {}", b.shown())).unwrap_or_default()
            );
            if !yes {
                outln!("would remove {said}");
                return Err(usage(anyhow!(
                    "nothing removed: run `sluice tenant remove {name} --yes` to remove it (its files are archived first)"
                )));
            }
            // The files first, kept: a mistake can be undone by hand from the archive.
            let archive = dirs.root.join("archive").join("removed");
            std::fs::create_dir_all(&archive)
                .with_context(|| format!("cannot create {}", archive.display()))?;
            let stamp = sluice_core::layout::archive_stamp();
            let kept = archive.join(format!("{name}-{stamp}"));
            // The exports in the bucket first, into a folder of their own beside the archive:
            // if the bucket cannot be read, nothing has moved yet.
            let from_bucket = archive.join(format!("{name}-{stamp}.bucket"));
            let archived = dirs.exports().archive_tenant(&name, &from_bucket).map_err(|e| {
                let _ = std::fs::remove_dir_all(&from_bucket);
                anyhow!(e).context(format!(
                    "cannot copy tenant {name}'s exports out of the bucket; nothing was removed or moved"
                ))
            })?;
            if tree.exists() {
                std::fs::rename(&tree, &kept)
                    .with_context(|| format!("cannot move {} to {}", tree.display(), kept.display()))?;
            } else {
                std::fs::create_dir_all(&kept)
                    .with_context(|| format!("cannot create {}", kept.display()))?;
            }
            if archived > 0 {
                let into = kept.join("from-bucket");
                std::fs::rename(&from_bucket, &into).with_context(|| {
                    format!("cannot move {} to {}", from_bucket.display(), into.display())
                })?;
                outln!("archived {archived} exported files from the bucket into {}", into.display());
            } else {
                let _ = std::fs::remove_dir_all(&from_bucket);
            }
            let photos = dirs.photos().join(name.as_str());
            if photos.exists() {
                std::fs::rename(&photos, kept.join(".photos"))
                    .with_context(|| format!("cannot move {} into the archive", photos.display()))?;
            }
            store.remove_tenant(&t.name)?;
            outln!("removed {said}; its files are in {}; its open SFTP sessions end now", kept.display());
            // Its exports leave the bucket only now that it is gone (they are in the archive).
            if let Err(e) = dirs.exports().forget_tenant(&name) {
                outln!(
                    "its exports could not be removed from the bucket ({e:#}); they are removed when a tenant \
                     named {name} is next added, or remove tenants/{name}/ from the bucket yourself"
                );
            }
        }
        TenantCommand::Disable { name } => {
            store.set_disabled(&name, true)?;
            outln!("tenant {name} disabled: it can no longer log in, and its open SFTP sessions end now");
        }
        TenantCommand::Enable { name } => {
            store.set_disabled(&name, false)?;
            outln!("tenant {name} enabled");
        }
        TenantCommand::Passwd { name, password_stdin } => {
            store.require_tenant(name.as_str())?;
            let password = if password_stdin { read_password_line()? } else { prompt_password(&name)? };
            store.set_password(&name, &PasswordHash::choose(&password)?)?;
            outln!("password set for tenant {name}");
        }
        TenantCommand::Set { name, settings } => {
            // The types are read only when a setting names one.
            let names_types = settings.iter().any(|s| {
                sluice_core::SettingsChange::names_types(s.split_once('=').map_or(s.as_str(), |(k, _)| k))
            });
            let types = if names_types {
                crate::types::load(config.imports.types_dir()).map_err(usage)?
            } else {
                sluice_core::import::ImportTypes::default()
            };
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
                sluice_store::StoreError::Refused(e) if e.setting == "trigger" || e.setting == "schedule" => usage(
                    anyhow!("{e}; e.g. sluice tenant set {name} trigger=schedule schedule=\"0 2 * * *\" [timezone=America/Chicago]"),
                ),
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
    let tree = TenantTree {
        layout: tenant.layout.clone(),
        root: dirs.tenants().join(tenant.name.as_str()),
        bucket: None,
    };
    tree.ensure_dirs().with_context(|| format!("cannot create folders under {}", tree.root.display()))
}

/// When a tenant's uploads are imported, in words (types with a schedule of their own, a
/// settle time and blackouts included).
fn when(t: &Tenant) -> String {
    let mut said = trigger_words(t);
    if t.settle_secs > 0 && t.trigger == Trigger::OnUpload {
        said = format!("once uploads have been quiet {} s", t.settle_secs);
    }
    for (type_name, cron) in &t.type_schedules {
        said.push_str(&format!("; {type_name} on its own schedule \"{cron}\" ({})", t.timezone));
    }
    if !t.blackouts.is_empty() {
        let list: Vec<String> = t.blackouts.iter().map(ToString::to_string).collect();
        said.push_str(&format!("; full files delete nothing during {}", list.join(", ")));
    }
    said
}

fn trigger_words(t: &Tenant) -> String {
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

fn tenant_json(store: &dyn Tenants, t: &Tenant) -> Result<serde_json::Value> {
    let keys = store.keys(t.name.as_str())?;
    let mut v = json!({
        "name": t.name.as_str(),
        "disabled": t.disabled,
        "folders": t.layout.import_folders().iter().map(FolderName::as_str).collect::<Vec<_>>(),
        "password_set": t.password.is_some(),
        "imports": when(t),
        "keys": keys.iter().map(KeyView::from).collect::<Vec<_>>(),
        "created_ms": t.created_ms,
    });
    // The settings as the API shows them.
    if let (Some(v), serde_json::Value::Object(settings)) =
        (v.as_object_mut(), serde_json::to_value(SettingsView::from(t))?)
    {
        v.extend(settings);
    }
    Ok(v)
}

fn prompt_password(name: &TenantName) -> Result<String> {
    prompt_for(&format!("SFTP password for {name}"))
}

pub(crate) fn key_command(dirs: &DataDirs, cmd: KeyCommand) -> Result<(), Failure> {
    let store = dirs.open_store().map_err(usage)?;
    match cmd {
        KeyCommand::Add { tenant, file } => {
            let name = tenant;
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
                let rows: Vec<_> = keys.iter().map(KeyView::from).collect();
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
