//! `sluice export`: a tenant's records of one type as a CSV or XLSX file, into the tenant's
//! `/exports` (replaced whole) or to a file of the user's; and saved exports (`export add`,
//! `list`, `remove`, `run`, `runs`), which the server also runs on their schedule or after
//! imports.

use crate::cli::{ExportCommand, ExportWhat};
use crate::config::Config;
use crate::dirs::DataDirs;
use crate::failure::{Failure, usage};
use anyhow::{Context, anyhow};
use sluice_core::TenantName;
use sluice_core::saved_export::{ExportFormat, ExportWhen, RunCause, RunOutcome, SavedExport};
use sluice_core::views::{ExportRunView, SavedExportView};
use sluice_export::{Export, Format, write_into};
use std::path::PathBuf;

pub fn export(
    config: &Config,
    dirs: &DataDirs,
    tenant: TenantName,
    what: ExportWhat,
    out: Option<PathBuf>,
) -> Result<(), Failure> {
    let types = crate::imports::load_types(config)?;
    let type_name = what
        .type_name
        .as_deref()
        .ok_or_else(|| usage(anyhow!("--type is required: sluice export --tenant {tenant} --type TYPE")))?;
    let ty = types
        .get(type_name)
        .ok_or_else(|| usage(anyhow!("no import type {type_name:?}; `sluice types` lists them")))?;
    let format = Format::parse(&what.format).ok_or_else(|| usage(anyhow!("--format is csv or xlsx")))?;
    let export = Export::new(ty, &types, format, &what.columns, &what.filters, what.bom)
        .map_err(|e| usage(e.into()))?;
    let store = dirs.open_store().map_err(usage)?;
    let t = store.require_tenant(&tenant)?;
    // As a saved export is: an empty file of a type the tenant has not is no answer.
    sluice_export::saved::tenants_type(&t, ty).map_err(|e| usage(e.into()))?;
    if what.to.is_some() && out.as_deref().is_some_and(|p| p.as_os_str() == "-") {
        return Err(usage(anyhow!("--to pushes a file: it cannot go with --out -")));
    }
    if let Some(to) = &what.to
        && store.connector(&tenant, to)?.is_none()
    {
        return Err(sluice_store::StoreError::NoSuchConnector(to.to_string()).into());
    }
    let exports = dirs.exports();
    let spool = exports.spool();
    std::fs::create_dir_all(spool).with_context(|| format!("cannot create {}", spool.display()))?;
    match out.as_deref() {
        Some(path) if path.as_os_str() == "-" => {
            // Written whole first (an XLSX file is a zip: its end comes last), then copied.
            let temporary = tempfile::Builder::new().prefix(".export-").tempfile_in(spool)?;
            export.write(&*store, &tenant, temporary.path())?;
            let mut file = std::fs::File::open(temporary.path())?;
            let copied = std::io::copy(&mut file, &mut std::io::stdout().lock());
            match copied {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                other => {
                    other?;
                }
            }
        }
        Some(path) => {
            // Beside the file, so the rename never crosses filesystems; replaced whole, 0600.
            let folder =
                path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            let written = write_into(&export, &*store, &tenant, folder, path)?;
            outln!(
                "exported {} records of {} to {} ({} bytes)",
                written.rows,
                ty.name,
                path.display(),
                written.bytes
            );
            if let Some(to) = &what.to {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                push(config, dirs, &*store, &tenant, to, path, &name)?;
            }
        }
        None => {
            let done = exports.into_folder(&export, &*store, &tenant)?;
            outln!(
                "exported {} records of {} to {} ({} bytes) for tenant {tenant}",
                done.written.rows,
                ty.name,
                done.path,
                done.written.bytes
            );
            if let Some(to) = &what.to {
                let name = export.file_name();
                let local = exports.local(&tenant, &name)?;
                push(config, dirs, &*store, &tenant, to, local.path(), &name)?;
            }
        }
    }
    Ok(())
}

/// `sluice export --photos` (or `--format photos`): the photos of a type's records into the
/// tenant's `/exports/photos/`, and pushed to `--to CONNECTOR` in one session.
pub fn export_photos(
    config: &Config,
    dirs: &DataDirs,
    tenant: TenantName,
    what: ExportWhat,
    out: Option<PathBuf>,
) -> Result<(), Failure> {
    if out.is_some() {
        return Err(usage(anyhow!(
            "photos are written one file per record into /exports/photos/ (or pushed with --to): --out takes one file"
        )));
    }
    let types = crate::imports::load_types(config)?;
    let type_name = what.type_name.clone().ok_or_else(|| {
        usage(anyhow!("--type is required: sluice export --tenant {tenant} --type TYPE --photos"))
    })?;
    let store = dirs.open_store().map_err(usage)?;
    let t = store.require_tenant(&tenant)?;
    // The one check a saved photo export gets: the type has photos and is the tenant's.
    let asked = SavedExport {
        name: sluice_core::saved_export::ExportName::parse("photos").map_err(|e| usage(anyhow!("{e}")))?,
        type_name,
        format: ExportFormat::Photos,
        columns: what.columns,
        filters: what.filters,
        bom: what.bom,
        when: ExportWhen::OnDemand,
        push_to: what.to,
        in_exports: true,
    };
    let saved = sluice_export::saved::checked(&types, &t, asked).map_err(|e| usage(e.into()))?;
    let target = saved.type_name.as_str();
    let exports = dirs.exports();
    let (done, path) = exports.photos_into_folder(&*store, &tenant, target, &types.photo_targets())?;
    outln!(
        "exported the photos of {target} to {path} for tenant {tenant}: {} written, {} unchanged, {} removed",
        done.written,
        done.unchanged,
        done.removed
    );
    if !done.skipped.is_empty() {
        let more = done.skipped.len().saturating_sub(5);
        let more = if more > 0 { format!(", and {more} more") } else { String::new() };
        outln!(
            "not exported: {} photos: {}{more}",
            done.skipped.len(),
            done.skipped.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
        );
    }
    if let Some(to) = &saved.push_to {
        if store.connector(&tenant, to)?.is_none() {
            return Err(sluice_store::StoreError::NoSuchConnector(to.to_string()).into());
        }
        let transfers = dirs.transfers(config).map_err(usage)?;
        let runner =
            sluice_export::saved::Runner { types: &types, exports: &exports, transfers: Some(&transfers) };
        let push_only = SavedExport { in_exports: false, ..saved.clone() };
        match runner.photos(&*store, &tenant, &push_only) {
            RunOutcome::Written { rows, bytes, destination } => {
                outln!("pushed {rows} photos ({bytes} bytes) to {destination}");
            }
            RunOutcome::Failed(why) => return Err(Failure { code: 1, error: anyhow!("{why}") }),
        }
    }
    Ok(())
}

/// Pushes a written export to a connector, saying where it went.
fn push(
    config: &Config,
    dirs: &DataDirs,
    store: &dyn sluice_store::roles::Connectors,
    tenant: &TenantName,
    to: &sluice_core::connector::ConnectorName,
    local: &std::path::Path,
    name: &str,
) -> Result<(), Failure> {
    let transfers = dirs.transfers(config).map_err(usage)?;
    let pushed = transfers.push_to(store, tenant, to, local, name)?;
    outln!("pushed {} bytes to {to}: {}", pushed.bytes, pushed.remote);
    Ok(())
}

/// `sluice export add|list|remove|run|runs`.
pub fn saved_command(config: &Config, dirs: &DataDirs, cmd: ExportCommand) -> Result<(), Failure> {
    let store = dirs.open_store().map_err(usage)?;
    match cmd {
        ExportCommand::Add { tenant, name, what, schedule, after_import, not_in_exports, replace } => {
            let t = store.require_tenant(&tenant)?;
            let types = crate::imports::load_types(config)?;
            let type_name = what.type_name.ok_or_else(|| {
                usage(anyhow!("--type is required: sluice export add {tenant} {name} --type TYPE"))
            })?;
            let format =
                ExportFormat::parse(&what.format).ok_or_else(|| usage(anyhow!("--format is csv or xlsx")))?;
            let when = match (schedule, after_import) {
                (Some(cron), _) => ExportWhen::parse(&cron).map_err(|e| usage(e.into()))?,
                (None, true) => ExportWhen::AfterImport,
                (None, false) => ExportWhen::OnDemand,
            };
            let asked = SavedExport {
                name,
                type_name,
                format,
                columns: what.columns,
                filters: what.filters,
                bom: what.bom,
                when,
                push_to: what.to,
                in_exports: !not_in_exports,
            };
            let saved = sluice_export::saved::checked(&types, &t, asked).map_err(|e| usage(e.into()))?;
            store.save_export(&tenant, &saved, replace)?;
            let saved = store.saved_export(&tenant, &saved.name)?.unwrap_or(saved);
            let when = match &saved.when {
                ExportWhen::OnDemand => format!("on demand: sluice export run {tenant} {}", saved.name),
                ExportWhen::AfterImport => {
                    format!("after every import of {} that changes records", saved.type_name)
                }
                ExportWhen::Schedule(cron) => format!("at {cron} ({})", t.timezone),
            };
            outln!("saved export {} of tenant {tenant}: writes {}, {when}", saved.name, goes_to(&saved));
            Ok(())
        }
        ExportCommand::List { tenant, json } => {
            store.require_tenant(&tenant)?;
            let list = store.saved_exports(&tenant)?;
            if json {
                let views: Vec<SavedExportView> = list.iter().map(SavedExportView::from).collect();
                outln!("{}", serde_json::to_string_pretty(&views)?);
            } else if list.is_empty() {
                outln!("tenant {tenant} has no saved exports; `sluice export add` saves one");
            } else {
                for e in &list {
                    let view = SavedExportView::from(e);
                    outln!(
                        "{:<24} {:<12} {:<4} {:<18} {}",
                        view.name,
                        view.type_name,
                        e.format.extension(),
                        view.when,
                        goes_to(e)
                    );
                }
            }
            Ok(())
        }
        ExportCommand::Remove { tenant, name } => {
            store.require_tenant(&tenant)?;
            let kept = store.saved_export(&tenant, &name)?.is_some_and(|e| e.in_exports);
            store.remove_saved_export(&tenant, &name)?;
            let kept = if kept { " (/exports keeps its last file)" } else { "" };
            outln!("removed saved export {name} of tenant {tenant}{kept}");
            Ok(())
        }
        ExportCommand::Run { tenant, name } => {
            store.require_tenant(&tenant)?;
            // Its run keeps this process's tag: a server starting meanwhile sees the owner
            // file locked and leaves the run alone.
            sluice_core::spool::hold_owner(&dirs.spool_owners())
                .with_context(|| format!("cannot lock an owner file in {}", dirs.spool_owners().display()))?;
            let saved = store
                .saved_export(&tenant, &name)?
                .ok_or_else(|| sluice_store::StoreError::NoSuchExport(name.to_string()))?;
            let types = crate::imports::load_types(config)?;
            let transfers = saved.push_to.as_ref().map(|_| dirs.transfers(config)).transpose()?;
            let exports = dirs.exports();
            let runner = sluice_export::saved::Runner {
                types: &types,
                exports: &exports,
                transfers: transfers.as_ref(),
            };
            let ran = runner.run(&*store, &tenant, &saved, RunCause::OnDemand)?;
            match ran.outcome {
                RunOutcome::Written { rows, bytes, destination } => {
                    outln!(
                        "export {} of tenant {tenant}: {rows} records to {destination} ({bytes} bytes)",
                        saved.name
                    );
                    Ok(())
                }
                RunOutcome::Failed(why) => {
                    Err(anyhow!("export {} of tenant {tenant} failed (run {}): {why}", saved.name, ran.id)
                        .into())
                }
            }
        }
        ExportCommand::Runs { tenant, name, limit, json } => {
            store.require_tenant(&tenant)?;
            let runs = store.export_runs(&tenant, name.as_deref(), limit)?;
            // A name that is neither saved nor in the log is a mistake, not an empty log.
            if let Some(name) = &name
                && runs.is_empty()
                && store.saved_export(&tenant, name)?.is_none()
            {
                return Err(sluice_store::StoreError::NoSuchExport(name.to_string()).into());
            }
            let views: Vec<ExportRunView> = runs.iter().map(ExportRunView::from).collect();
            if json {
                outln!("{}", serde_json::to_string_pretty(&views)?);
            } else {
                for r in views {
                    let what = match (&r.destination, &r.error) {
                        (Some(to), _) => {
                            format!("{} records, {} bytes to {to}", r.rows.unwrap_or(0), r.bytes.unwrap_or(0))
                        }
                        (_, Some(why)) => why.clone(),
                        _ => String::new(),
                    };
                    outln!(
                        "{:>6} {} {:<24} {:<12} {:<8} {}",
                        r.id,
                        crate::connectors::at_text(r.started_ms),
                        r.export,
                        r.cause.as_str(),
                        r.status,
                        what
                    );
                }
            }
            Ok(())
        }
    }
}

/// A run the server's scheduler owes: a saved export's, or a connector's pull.
enum Job {
    Export(sluice_export::saved::DueRun),
    /// A connector's pull, with the schedule's key and due time taken for it.
    Pull(TenantName, sluice_core::connector::ConnectorName, (String, i64)),
}

impl Job {
    fn slot(&self) -> (&str, String) {
        match self {
            Job::Export(due) => (due.tenant.as_str(), due.saved.name.to_string()),
            Job::Pull(t, c, _) => (t.as_str(), format!("pull:{c}")),
        }
    }
}

/// The server's scheduler of exports and pulls: every two seconds, queues the saved exports
/// whose schedule came or whose type an import changed ([`sluice_export::saved::Runner::due`])
/// and the pulls of connectors whose schedule came, and starts what it can: each on a blocking
/// thread of its own, at most one per export or pull and as many at once as `slots` allows
/// (shared with the API and the dashboard), so one tenant's slow server holds up only its own.
/// A job that cannot start yet stays queued. Until `stop`, then it lets the runs in progress
/// finish (an export's file is written whole or not at all either way).
pub async fn run_exporter(
    ingest: std::sync::Arc<sluice_ingest::Ingest>,
    dirs: crate::dirs::DataDirs,
    transfers: std::sync::Arc<sluice_connect::Transfers>,
    slots: std::sync::Arc<sluice_export::saved::RunSlots>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let exports = std::sync::Arc::new(dirs.exports());
    let mut since = jiff::Timestamp::now();
    let mut queue: std::collections::VecDeque<Job> = Default::default();
    let mut running = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(done) = running.join_next(), if !running.is_empty() => {
                if let Err(e) = done {
                    tracing::warn!("export or pull crashed: {e}");
                }
                continue;
            }
            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
        }
        let now = jiff::Timestamp::now();
        let (i, e) = (ingest.clone(), exports.clone());
        let found = tokio::task::spawn_blocking(move || {
            let runner = sluice_export::saved::Runner { types: &i.types, exports: &e, transfers: None };
            let mut jobs: Vec<Job> =
                runner.due(&*i.store, since, now)?.into_iter().map(Job::Export).collect();
            jobs.extend(due_pulls(&i, since, now));
            Ok::<_, sluice_store::StoreError>(jobs)
        })
        .await;
        match found {
            Ok(Ok(jobs)) => queue.extend(jobs),
            Ok(Err(e)) => tracing::warn!("exporter: {e}"),
            Err(e) => tracing::warn!("exporter crashed: {e}"),
        }
        since = now;
        for _ in 0..queue.len() {
            let Some(job) = queue.pop_front() else { break };
            let (tenant, what) = job.slot();
            let Ok(slot) = slots.try_take(tenant, &what) else {
                queue.push_back(job);
                continue;
            };
            let (i, e, t, d) = (ingest.clone(), exports.clone(), transfers.clone(), dirs.clone());
            running.spawn_blocking(move || {
                let _slot = slot;
                run_job(&i, &d, &e, &t, job);
            });
        }
    }
    while running.join_next().await.is_some() {}
}

fn run_job(
    ingest: &sluice_ingest::Ingest,
    dirs: &crate::dirs::DataDirs,
    exports: &sluice_export::Exports,
    transfers: &sluice_connect::Transfers,
    job: Job,
) {
    match job {
        Job::Export(due) => {
            let runner =
                sluice_export::saved::Runner { types: &ingest.types, exports, transfers: Some(transfers) };
            let (tenant, saved) = (&due.tenant, &due.saved);
            let ran = runner.run(&*ingest.store, tenant, saved, due.cause);
            if let Err(e) = due.finish(&*ingest.store) {
                tracing::warn!(tenant = %tenant, export = %saved.name, "export's schedule: {e}");
            }
            match ran {
                Ok(run) => match run.outcome {
                    RunOutcome::Written { rows, bytes, destination } => tracing::info!(
                        tenant = %tenant,
                        export = %saved.name,
                        run = run.id,
                        rows,
                        bytes,
                        destination,
                        "export written"
                    ),
                    RunOutcome::Failed(why) => {
                        tracing::warn!(tenant = %tenant, export = %saved.name, run = run.id, "export failed: {why}")
                    }
                },
                Err(e) => tracing::warn!(tenant = %tenant, export = %saved.name, "export: {e}"),
            }
        }
        Job::Pull(tenant, connector, (key, at)) => {
            let pulled = match ingest.store.tenant(&tenant) {
                Ok(Some(t)) => transfers
                    .pull(
                        &*ingest.store,
                        &ingest.types,
                        &dirs.tenants(),
                        &dirs.upload_spool(),
                        &t,
                        &connector,
                    )
                    .map_err(|e| e.to_string()),
                Ok(None) => Err("the tenant is gone".to_owned()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = ingest.store.finish_due(&key, at) {
                tracing::warn!(tenant = %tenant, connector = %connector, "pull's schedule: {e}");
            }
            match pulled {
                Ok(p) => tracing::info!(
                    tenant = %tenant,
                    connector = %connector,
                    fetched = p.fetched.len(),
                    changing = p.changing.len(),
                    "pulled"
                ),
                Err(e) => tracing::warn!(tenant = %tenant, connector = %connector, "pull failed: {e}"),
            }
        }
    }
}

/// The connectors whose pull schedule came in (`since`, `now`], read in their tenant's time
/// zone, each with the due time taken for it; and the pulls a stopped server took and did not
/// finish (taken over here, once).
fn due_pulls(ingest: &sluice_ingest::Ingest, since: jiff::Timestamp, now: jiff::Timestamp) -> Vec<Job> {
    let owner = sluice_core::spool::owner_tag();
    let (pulling, retaken) = match ingest
        .store
        .pulling_connectors()
        .and_then(|p| Ok((p, ingest.store.retake_due("pull/", owner, &sluice_core::spool::other_ended)?)))
    {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!("pulls: {e}");
            return Vec::new();
        }
    };
    let mut unknown = retaken.clone();
    let mut jobs = Vec::new();
    for (tenant, tz, c) in pulling {
        let Some(cron) = c.pull.as_ref().and_then(|p| p.schedule.as_ref()) else { continue };
        let Ok(tenant_name) = TenantName::parse(&tenant) else { continue };
        // Once per due time, whichever server asks first.
        let key = format!("pull/{tenant}/{}", c.name.as_str().to_ascii_lowercase());
        let mut due: Vec<i64> = retaken.iter().filter(|(k, _)| *k == key).map(|(_, at)| *at).collect();
        unknown.retain(|(k, _)| *k != key);
        if let Ok(Some(at)) = sluice_core::schedule::next_run(cron, &tz, since)
            && at <= now
            && ingest.store.claim_due(&key, at.as_millisecond(), owner).unwrap_or_else(|e| {
                tracing::warn!(tenant, connector = %c.name, "pulls: {e}");
                false
            })
        {
            due.push(at.as_millisecond());
        }
        for at in due {
            jobs.push(Job::Pull(tenant_name.clone(), c.name.clone(), (key.clone(), at)));
        }
    }
    // Taken over, but no longer scheduled: nothing to run.
    for (key, at) in unknown {
        if let Err(e) = ingest.store.finish_due(&key, at) {
            tracing::warn!("pulls: {e}");
        }
    }
    jobs
}

/// Where a saved export's runs put the file: `/exports/NAME.csv`, and its connector, or the
/// connector alone (`--not-in-exports`).
fn goes_to(saved: &SavedExport) -> String {
    let folder = format!("/{}/{}", sluice_core::layout::EXPORTS, saved.file_name());
    match (&saved.push_to, saved.in_exports) {
        (Some(to), true) => format!("{folder} and {to}"),
        (Some(to), false) => format!("{to} only (not kept in /exports)"),
        (None, _) => folder,
    }
}
