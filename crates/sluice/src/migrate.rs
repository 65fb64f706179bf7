//! `sluice migrate --to URL`: a SQLite deployment moves its state into PostgreSQL, to grow
//! into several servers. The copy is `sluice_store_pg::PgStore::move_in_from` (one
//! transaction, read back and compared); here the data directory is held against a server
//! starting meanwhile, what was copied is printed, and the directory is switched over: its
//! SQLite database is kept aside under another name and the directory marked as on
//! PostgreSQL, so that nothing opens the old state by mistake.

use crate::dirs::DataDirs;
use crate::failure::{Failure, usage};
use anyhow::{Context, anyhow};
use std::path::Path;

/// The name the SQLite database is kept under once its state moved.
pub const MOVED: &str = "sluice.db.moved-to-postgresql";

pub(crate) fn migrate(dirs: &DataDirs, to: Option<String>, to_file: Option<&Path>) -> Result<(), Failure> {
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
    // Held for the whole move: a server starting meanwhile would write to the state being
    // left (and one running now makes this fail, saying so).
    let _held = dirs.lock_for_moving().map_err(usage)?;
    let sqlite = dirs.open_sqlite().map_err(usage)?;
    // The url is never printed: it may carry a password. The target is looked at before
    // sluice's schema is made there, so that a refusal leaves it as it was.
    let unreachable =
        |e: sluice_store::StoreError| usage(anyhow!("cannot open the PostgreSQL database (--to): {e}"));
    sluice_store_pg::moving_in::check_move_target(&url).map_err(|e| match e {
        sluice_store::StoreError::MoveRefused(why) => usage(anyhow!("{why}")),
        other => unreachable(other),
    })?;
    let postgres = sluice_store_pg::PgStore::connect(&url).map_err(unreachable)?;
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
    use sluice_core::audit::{AuditOutcome, NewAuditEntry, action};
    use sluice_store::Audit;
    let actor = crate::audit::cli_actor();
    let target = format!("{} ({tables} tables, {rows} rows) from SQLite to PostgreSQL", root.display());
    let entry = NewAuditEntry {
        tenant: None,
        actor: &actor,
        action: action::MIGRATE,
        target: &target,
        outcome: AuditOutcome::Done,
        before: None,
        after: None,
    };
    if let Err(e) = store.record_audit(&entry) {
        eprintln!("warning: the audit log could not be written: {e}");
    }
}
