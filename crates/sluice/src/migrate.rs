//! `sluice migrate --to URL`: a SQLite deployment moves its state into PostgreSQL, to grow
//! into several servers. The copy is `sluice_store_pg::PgStore::move_in_from` (one
//! transaction, read back and compared); here the data directory is held against a server
//! starting meanwhile, what was copied is printed, and the directory is switched over: its
//! SQLite database is kept aside under another name and the directory marked as on
//! PostgreSQL, so that nothing opens the old state by mistake.
//!
//! `sluice migrate --storage s3://BUCKET/PREFIX`: tenants' exports move from the local disk
//! into the `[storage]` bucket (`sluice_export::Exports::copy_into_bucket`: each object read
//! back and compared), the directory is marked `EXPORTS-IN-BUCKET` and the files on disk are
//! kept in the archive. Both can be asked at once: the exports move first.

use crate::dirs::DataDirs;
use crate::failure::{Failure, usage};
use anyhow::{Context, anyhow};
use sluice_files::Bucket;
use std::path::Path;
use std::sync::Arc;

/// The name the SQLite database is kept under once its state moved.
pub const MOVED: &str = "sluice.db.moved-to-postgresql";

pub(crate) fn migrate(
    dirs: &DataDirs,
    to: Option<String>,
    to_file: Option<&Path>,
    storage: Option<&str>,
) -> Result<(), Failure> {
    // Everything asked is checked before anything moves (the targets once no server can
    // start).
    let url = match (to, to_file) {
        (None, None) => None,
        (to, to_file) => Some(database_target(dirs, to, to_file)?),
    };
    let bucket = storage.map(|target| storage_target(dirs, target)).transpose()?;
    // Held for the whole move: a server starting meanwhile would write to the state being
    // left (and one running now makes this fail, saying so).
    let _held = dirs.lock_for_moving().map_err(usage)?;
    if let Some(url) = &url {
        check_database_target(url)?;
    }
    if let Some(bucket) = bucket {
        move_exports(dirs, &bucket)?;
    }
    match url {
        Some(url) => move_state(dirs, &url),
        None => Ok(()),
    }
}

/// The PostgreSQL database `--to` or `--to-file` names, if the state can move there.
fn database_target(dirs: &DataDirs, to: Option<String>, to_file: Option<&Path>) -> Result<String, Failure> {
    if dirs.marked_on_postgres() {
        return Err(usage(anyhow!(
            "the state of {} is in PostgreSQL already (it was moved, or its servers started on PostgreSQL): \
             nothing to move; run servers and commands with the database's url (SLUICE_DATABASE_URL, or \
             [database] url or url_file)",
            dirs.root.display()
        )));
    }
    if dirs.on_postgres() {
        return Err(usage(anyhow!(
            "[database] url is set (SLUICE_DATABASE_URL or the config file): `sluice migrate` reads the SQLite \
             state, so run it without the url and name the target with --to or --to-file; nothing was changed"
        )));
    }
    let url = match (to, to_file) {
        (Some(url), _) => url,
        (None, Some(file)) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the url from {}", file.display()))
            .map_err(usage)?
            .trim()
            .to_owned(),
        (None, None) => {
            return Err(usage(anyhow!("name the PostgreSQL database: --to URL or --to-file FILE")));
        }
    };
    Ok(url)
}

/// The url is never printed: it may carry a password. The target is looked at before
/// sluice's schema is made there, so that a refusal leaves it as it was.
fn check_database_target(url: &str) -> Result<(), Failure> {
    sluice_store_pg::moving_in::check_move_target(url).map_err(|e| match e {
        sluice_store::StoreError::MoveRefused(why) => usage(anyhow!("{why}")),
        other => unreachable_database(other),
    })
}

fn unreachable_database(e: sluice_store::StoreError) -> Failure {
    usage(anyhow!("cannot open the PostgreSQL database (--to): {e}"))
}

/// The state moves from SQLite into the PostgreSQL database at `url`.
fn move_state(dirs: &DataDirs, url: &str) -> Result<(), Failure> {
    let sqlite = dirs.open_sqlite().map_err(usage)?;
    let unreachable = unreachable_database;
    let postgres = sluice_store_pg::PgStore::connect(url).map_err(unreachable)?;
    let mut copied = postgres.move_in_from(&sqlite).map_err(|e| match e {
        sluice_store::StoreError::MoveRefused(why) => usage(anyhow!("{why}; nothing was moved")),
        other => usage(anyhow!("nothing was moved: {other}")),
    })?;
    copied.sort_by(|a, b| a.table.cmp(&b.table));
    outln!("{:<24} {:>10}  sha256 (SQLite = PostgreSQL)", "table", "rows");
    for t in &copied {
        outln!("{:<24} {:>10}  {}", t.table, t.rows, t.sha256);
    }
    let rows: u64 = copied.iter().map(|t| t.rows).sum();
    drop(sqlite);
    // Marked first: a command starting meanwhile refuses instead of making a new sluice.db.
    dirs.mark_as_on_postgres()?;
    // The SQLite state is kept, under a name nothing opens, with its write-ahead log if any.
    for suffix in ["", "-wal", "-shm"] {
        let from = dirs.root.join(format!("sluice.db{suffix}"));
        if from.exists() {
            let to = dirs.root.join(format!("{MOVED}{suffix}"));
            std::fs::rename(&from, &to).with_context(|| {
                format!("the state was copied, but {} could not be renamed", from.display())
            })?;
        }
    }
    record(&postgres, &dirs.root, rows, copied.len());
    outln!(
        "moved: {} tables, {rows} rows, each read back from PostgreSQL and compared. Files stay in {}.",
        copied.len(),
        dirs.root.display()
    );
    outln!(
        "From now on every server and command on this data directory needs the database's url: \
         SLUICE_DATABASE_URL, or [database] url or url_file in the config file. The SQLite database is kept \
         as {MOVED} (remove it once the servers run)."
    );
    Ok(())
}

/// The move in the audit log (now PostgreSQL's): who did it, from where.
fn record(store: &sluice_store_pg::PgStore, root: &Path, rows: u64, tables: usize) {
    let target = format!("{} ({tables} tables, {rows} rows) from SQLite to PostgreSQL", root.display());
    audit(store, sluice_core::audit::action::MIGRATE, &target);
}

fn audit(store: &dyn sluice_store::Audit, action: &str, target: &str) {
    use sluice_core::audit::{AuditOutcome, NewAuditEntry};
    let actor = crate::audit::cli_actor();
    let entry = NewAuditEntry {
        tenant: None,
        actor: &actor,
        action,
        target,
        outcome: AuditOutcome::Done,
        before: None,
        after: None,
    };
    if let Err(e) = store.record_audit(&entry) {
        eprintln!("warning: the audit log could not be written: {e}");
    }
}

/// The bucket `--storage` names, if it is the `[storage]` settings' and the exports are not
/// in it yet.
fn storage_target(dirs: &DataDirs, target: &str) -> Result<Arc<Bucket>, Failure> {
    let Some(bucket) = dirs.bucket() else {
        return Err(usage(anyhow!(
            "--storage moves tenants' exports into the bucket of the [storage] settings, and none is set: set \
             [storage] backend = \"s3\", endpoint, bucket and prefix (the config file, or SLUICE_STORAGE_*), as the \
             servers will have them; nothing was changed"
        )));
    };
    let asked = target.trim().trim_end_matches('/');
    if asked != bucket.url() {
        return Err(usage(anyhow!(
            "--storage {asked} is not the bucket of the [storage] settings ({}): the exports go where the servers \
             will look for them; give --storage {} or change [storage] bucket and prefix; nothing was changed",
            bucket.url(),
            bucket.url()
        )));
    }
    if let Some(marked) = dirs.marked_bucket_url().filter(|url| url != bucket.url()) {
        return Err(usage(anyhow!(
            "the data directory {} keeps tenants' exports in {marked} already (EXPORTS-IN-BUCKET), not in {}: \
             nothing was changed",
            dirs.root.display(),
            bucket.url()
        )));
    }
    // Asked before anything else (and before the server must be stopped): credentials that
    // only read, or a bucket that does not exist, are found now.
    bucket.check().and_then(|()| bucket.check_writable()).map_err(|e| {
        usage(anyhow!(
            "{} cannot be used ({e}): check endpoint, bucket (it must exist) and the credentials ({}: they must \
             allow listing, reading, writing and removing objects under the prefix); nothing was changed",
            bucket.shown(),
            bucket.credentials()
        ))
    })?;
    Ok(bucket.clone())
}

/// Every tenant's exports on the local disk go into `bucket`, each read back and compared;
/// then the data directory is marked as keeping exports there, and the files on disk are
/// kept in the archive. Nothing is marked or moved unless every copy is whole. On a data
/// directory marked already, what was left on the disk (a move cut short, an export written
/// meanwhile) is finished the same way, the bucket's copies winning.
fn move_exports(dirs: &DataDirs, bucket: &Bucket) -> Result<(), Failure> {
    let finishing = dirs.marked_exports_in_bucket();
    let store = dirs.open_store().map_err(usage)?;
    let tenants = store.tenants()?;
    // A tenant in the bucket that this deployment does not have is another deployment's.
    let listed =
        if finishing { Default::default() } else { bucket.list(&sluice_files::ObjectKey::tenants())? };
    let mut others = Vec::new();
    for folder in listed.folders.iter().filter(|f| !tenants.iter().any(|t| t.name.as_str() == f.as_str())) {
        // (A store with real folders may still list one emptied earlier: only files count.)
        let Ok(name) = sluice_core::TenantName::parse(folder) else { continue };
        for sub in [sluice_core::layout::EXPORTS, sluice_core::layout::EXPORT_PHOTOS_FOLDER] {
            if !bucket.list(&sluice_files::ObjectKey::folder(&name, sub))?.files.is_empty() {
                others.push(name.clone());
                break;
            }
        }
    }
    if let Some(other) = others.first() {
        return Err(usage(anyhow!(
            "{} already holds exports of a tenant named {other}, which this deployment does not have: another \
             deployment may keep its files under the same bucket and prefix; give this one a prefix of its own \
             ([storage] prefix), or remove what is there; nothing was changed",
            bucket.shown()
        )));
    }
    let exports = dirs.exports();
    let mut on_disk = Vec::new();
    for tenant in tenants {
        let found = exports.on_disk(&tenant.name, finishing).map_err(|e| {
            let settings = matches!(
                e,
                sluice_export::ExportError::BucketHoldsOthers { .. }
                    | sluice_export::ExportError::UnmovableName { .. }
            );
            let e = anyhow!(e).context("nothing was changed");
            if settings { usage(e) } else { Failure::from(e) }
        })?;
        on_disk.push(found);
    }
    if finishing && on_disk.iter().all(|t| t.files.is_empty() && t.in_bucket.is_empty()) {
        return Err(usage(anyhow!(
            "the exports of {} are kept in object storage already (EXPORTS-IN-BUCKET), and none is left on the \
             disk: nothing to move",
            dirs.root.display()
        )));
    }
    outln!("{:<24} {:>7} {:>14}  sha256 (disk = bucket)", "tenant", "files", "bytes");
    let (mut files, mut bytes) = (0, 0);
    for tenant in &on_disk {
        let copied = exports.copy_into_bucket(tenant).map_err(|e| {
            anyhow!(e).context(format!(
                "tenant {}'s exports could not be copied into the bucket; nothing on the disk was changed (run the \
                 command again: what was copied is copied again)",
                tenant.tenant
            ))
        })?;
        outln!("{:<24} {:>7} {:>14}  {}", tenant.tenant.as_str(), copied.files, copied.bytes, copied.sha256);
        files += copied.files;
        bytes += copied.bytes;
    }
    let left: usize = on_disk.iter().map(|t| t.in_bucket.len()).sum();
    if left > 0 {
        outln!(
            "{left} files left on the disk were in the bucket already: the bucket's copies stay, these are archived"
        );
    }
    let target = format!(
        "exports of {} tenants ({files} files, {bytes} bytes) from {} to {}",
        on_disk.len(),
        dirs.root.display(),
        bucket.url()
    );
    audit(&*store, sluice_core::audit::action::STORAGE_MIGRATE, &target);
    // Marked first: from now on servers show the bucket's copies; what is left on the disk
    // below (should the move stop half-way) is never shown again, and the command run again
    // finishes it.
    if !finishing {
        dirs.mark_exports_in_bucket(bucket)?;
    }
    let stamp = sluice_core::layout::archive_stamp();
    let kept = dirs.root.join("archive").join(format!("moved-to-bucket-{stamp}"));
    for tenant in &on_disk {
        for file in tenant.files.iter().chain(&tenant.in_bucket) {
            let into = kept.join(tenant.tenant.as_str()).join(file.folder);
            std::fs::create_dir_all(&into).with_context(|| format!("cannot create {}", into.display()))?;
            let to = into.join(file.name.as_str());
            std::fs::rename(&file.path, &to).with_context(|| {
                format!(
                    "the exports are in the bucket, but {} could not be moved to {}: run the command again to \
                     finish",
                    file.path.display(),
                    to.display()
                )
            })?;
        }
    }
    outln!(
        "moved: {files} exported files ({bytes} bytes) of {} tenants into {}, each read back and compared.{}",
        on_disk.len(),
        bucket.shown(),
        if files as usize + left > 0 {
            format!(
                " The files on the disk are kept in {} (remove them once the servers run).",
                kept.display()
            )
        } else {
            String::new()
        }
    );
    // An export written by a command while this ran is on the disk, unseen: said, not lost.
    if let Some(path) = exports.first_on_disk().context("cannot look for exports left on the disk")? {
        return Err(anyhow!(
            "{} was written while the exports moved (a `sluice export` or schedule run meanwhile?); it is not \
             shown to its tenant: run the same command again to move it",
            path.display()
        )
        .into());
    }
    outln!(
        "From now on every server and command on this data directory needs the same [storage] settings \
         (it is marked EXPORTS-IN-BUCKET)."
    );
    Ok(())
}
