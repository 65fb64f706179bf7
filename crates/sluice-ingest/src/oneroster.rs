//! A OneRoster package: one zip, one import. The zip is checked before anything is inflated
//! (entry names, count, sizes, compression ratios), its manifest decides the version and each
//! file's mode, every file's header and rows are checked against the specification, every
//! reference is resolved against the package (and, where the package does not replace the
//! referred file, against the tenant's records), and all files are applied in one
//! transaction or not at all.

use crate::report::Report;
use crate::run::{ImportContext, ImportError, ImportRequest, Verdict, content_hash, held_path};
use sluice_core::import::{CsvReader, Encoding, LoadMode, Notes, Record, RowError, Strictness};
use sluice_core::oneroster::{self, FileMode, FileSpec, Manifest, check_header, check_row, is_empty_row};
use sluice_store::{Backend, Counts, ImportRecord, ImportStatus, Loading, Referrer, StageKind, StoreError};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::hash::BuildHasher;
use std::io::Read;
use tracing::debug;

/// Bounds on what a package may make sluice inflate.
#[derive(Debug, Clone, Copy)]
pub struct ZipLimits {
    pub max_entries: usize,
    pub max_total_bytes: u64,
    /// Uncompressed size over compressed size, for entries past `ratio_floor` bytes.
    pub max_ratio: u64,
    pub ratio_floor: u64,
    pub max_manifest_bytes: u64,
}

impl Default for ZipLimits {
    fn default() -> Self {
        Self {
            max_entries: 64,
            max_total_bytes: 4 << 30,
            max_ratio: 200,
            ratio_floor: 1 << 20,
            max_manifest_bytes: 64 << 10,
        }
    }
}

/// The longest entry name a zip may have (bytes).
const MAX_ENTRY_NAME: usize = 1024;

/// What a zip is for: the checks before inflating are the same, what may be in it differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ZipKind {
    /// A OneRoster package: CSV files at the root.
    Package,
    /// Photos: images, in folders or not, and a mapping file.
    Photos,
}

impl ZipKind {
    fn what(self) -> &'static str {
        match self {
            ZipKind::Package => "a OneRoster package",
            ZipKind::Photos => "a zip of photos",
        }
    }

    fn path_advice(self) -> &'static str {
        match self {
            ZipKind::Package => {
                "has a folder or path in its name; put manifest.csv and the CSV files at the root of the zip, with no folders"
            }
            ZipKind::Photos => {
                "has a path that leaves the zip (an absolute path, `..`, a drive or a backslash); zip the photos from their folder"
            }
        }
    }
}

/// One problem with the package as a whole (not with a row).
pub(crate) struct Problem {
    pub(crate) file: String,
    pub(crate) line: u64,
    pub(crate) code: &'static str,
    pub(crate) reason: String,
}

pub(crate) fn problem(file: &str, code: &'static str, reason: impl Into<String>) -> Problem {
    Problem { file: file.to_owned(), line: 0, code, reason: reason.into() }
}

impl Problem {
    fn named(self, file: &str) -> Problem {
        Problem { file: file.to_owned(), ..self }
    }
}

/// Imports a package: one import row, one transaction.
pub(crate) fn import_package(
    store: &dyn Backend,
    req: &ImportRequest<'_>,
    ctx: &ImportContext<'_>,
) -> Result<ImportRecord, ImportError> {
    let id = req.import_id(store)?;
    let (loader, verdict, types) = evaluate_package(store, req, ctx, id, false)?;
    let names: Vec<String> = types.iter().map(|(t, _)| t.clone()).collect();
    let types: Vec<(&str, LoadMode)> = types.iter().map(|(t, m)| (t.as_str(), *m)).collect();
    let started = std::time::Instant::now();
    let outcome =
        sluice_store::Outcome { record_types: Some(&names), ..verdict.outcome(req.upload_id, None) };
    let published = crate::run::publish_report(ctx, id, req.file_name, verdict.report_file.as_deref());
    loader.commit_types(&types, outcome)?;
    published.keep();
    debug!(import = id, ms = started.elapsed().as_millis() as u64, "package applied");
    Ok(store.import(id)?.ok_or(StoreError::Corrupt(format!("import {id} vanished")))?)
}

/// What importing a package would do, with nothing changed.
pub(crate) fn dry_run_package(
    store: &dyn Backend,
    req: &ImportRequest<'_>,
    ctx: &ImportContext<'_>,
) -> Result<Verdict, ImportError> {
    let (loader, mut verdict, _) = evaluate_package(store, req, ctx, 0, true)?;
    loader.abandon()?;
    if let Some(report) = verdict.report_file.take() {
        let _ = std::fs::remove_file(report);
    }
    Ok(verdict)
}

#[allow(clippy::type_complexity)]
fn evaluate_package(
    store: &dyn Backend,
    req: &ImportRequest<'_>,
    ctx: &ImportContext<'_>,
    id: i64,
    dry_run: bool,
) -> Result<(Box<dyn Loading>, Verdict, Vec<(String, LoadMode)>), ImportError> {
    let mut loader = store.package_loader(req.tenant, id)?;
    let report_name = crate::run::report_name(id, dry_run);
    let (strictness, _) = crate::run::reading(store, req)?;
    let mut run = PackageRun {
        req,
        check_references: ctx.check_references,
        strictness,
        notes: Notes::default(),
        held: HashMap::new(),
        report: Report::new(ctx.reports_dir.join(report_name)),
        errors: Vec::new(),
        counts: Counts::default(),
        ids: HashMap::new(),
        gone: HashMap::new(),
        hasher: Default::default(),
        failed: false,
        unread: HashSet::new(),
        summary: Vec::new(),
    };
    let started = std::time::Instant::now();
    let mut found: Vec<(Referrer, u64)> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let outcome = run.read(&mut *loader);
    debug!(import = id, ms = started.elapsed().as_millis() as u64, "package read and staged");
    let started = std::time::Instant::now();
    let (status, message, apply, held_file, loaded) = match outcome? {
        Err(problems) => {
            let n = problems.len();
            let first = problems.first().map(|p| format!("{}: {}", p.file, p.reason)).unwrap_or_default();
            // The package's own problems first: they are the cause of what follows.
            let row_errors = std::mem::take(&mut run.errors);
            for p in problems {
                run.error(RowError {
                    line: p.line,
                    column: p.file,
                    code: p.code,
                    reason: p.reason,
                    value: String::new(),
                    ..Default::default()
                })?;
            }
            // Every problem counts: the package's and its rows'.
            let others = n - 1 + row_errors.len();
            let room = sluice_store::STORED_ERRORS.saturating_sub(run.errors.len());
            run.errors.extend(row_errors.into_iter().take(room));
            let more = match others {
                0 => String::new(),
                1 => " (and 1 more problem, see the errors)".to_owned(),
                _ => format!(" (and {others} more problems, see the errors)"),
            };
            let message = format!("the package was rejected, nothing was changed: {first}{more}");
            (ImportStatus::Failed, Some(message), None, None, Vec::new())
        }
        Ok(mut loaded) => {
            // In a blackout a bulk file marks nothing it leaves out (`tobedeleted`); what it
            // lists applies, and a delta file's own deletions still do.
            if let Some(blackout) = ctx.blackout {
                for (file, mode) in loaded.iter_mut().filter(|(_, m)| *m == LoadMode::Mirror) {
                    let left_out = loader.plan(&oneroster::record_type(file), LoadMode::Mirror)?.deleted;
                    if left_out > 0 {
                        warnings.push(format!(
                            "{file}.csv: {left_out} records no longer listed were not marked tobedeleted: deletions by \
                             omission are held during the blackout {blackout} (the first bulk file after it marks them)"
                        ));
                    }
                    *mode = LoadMode::Delta;
                }
            }
            let mut breach = None;
            let mut counts =
                Counts { rows: run.counts.rows, rejected: run.counts.rejected, ..Counts::default() };
            // Record types the package marks `tobedeleted` records of, and how.
            let mut deleting: Vec<(String, LoadMode)> = Vec::new();
            for (file, mode) in &loaded {
                let record_type = oneroster::record_type(file);
                let plan = loader.plan(&record_type, *mode)?;
                let safeguard = req
                    .import_type
                    .safeguard
                    .for_tenant(&req.import_type.name, ctx.safeguard_settings)
                    .for_tenant(&record_type, ctx.safeguard_settings);
                let implicit = if *mode == LoadMode::Mirror { plan.deleted } else { 0 };
                // The safeguard weighs deletions by omission and updates against the active
                // records, counted only when there is something to weigh (a delta's deletions
                // are its own rows: 400,000 enrollments were counted for nothing).
                if breach.is_none() && (implicit > 0 || plan.updated > 0) {
                    let existing = loader.existing_of(&record_type)?;
                    breach =
                        safeguard.breach(existing, implicit, plan.updated).map(|b| (record_type.clone(), b));
                }
                run.summary.push(format!(
                    "{file}: {} added, {} updated, {} unchanged, {} {}",
                    plan.added,
                    plan.updated,
                    plan.unchanged,
                    plan.deleted,
                    if *mode == LoadMode::Mirror { "no longer listed (tobedeleted)" } else { "tobedeleted" }
                ));
                counts.added += plan.added;
                counts.updated += plan.updated;
                counts.unchanged += plan.unchanged;
                counts.deleted += plan.deleted;
                if plan.deleted > 0 {
                    deleting.push((record_type.clone(), *mode));
                }
            }
            // Records of files the package does not rewrite whole that name what it deletes
            // (enrollments of a class, when only classes.csv is bulk).
            for (file, column, to_file) in oneroster::single_references() {
                let to_type = oneroster::record_type(to_file);
                let Some(&(_, mode)) = deleting.iter().find(|(t, _)| *t == to_type) else { continue };
                if loaded.iter().any(|(f, m)| f == file && *m == LoadMode::Mirror) {
                    continue;
                }
                let r = Referrer {
                    from_type: oneroster::record_type(file),
                    path: format!("$.{column}"),
                    to_type,
                    on_delete: req.import_type.package_policy(&format!("{file}.{column}")),
                    prefix: false,
                };
                let n = loader.dangling(mode, &r)?;
                if n > 0 {
                    found.push((r, n));
                }
            }
            run.counts = counts;
            debug!(import = id, ms = started.elapsed().as_millis() as u64, "package planned");
            let summary = run.summary.join("; ");
            let covered = crate::run::approval_covers(store, req, counts.deleted, counts.updated)?;
            let reasons = breach.filter(|_| !covered).map(|(record_type, b)| b.reason(&record_type));
            let reason = crate::run::hold_reason(
                reasons.into_iter().collect(),
                &found,
                covered,
                req,
                Some(&summary),
                id,
                &mut warnings,
            );
            match reason {
                Some(b) => {
                    let held = held_path(ctx.held_dir, id);
                    if !dry_run && req.file != held {
                        crate::run::copy_private(req.file, &held)
                            .map_err(crate::run::io("keeping the held file"))?;
                    }
                    (ImportStatus::Held, Some(b), None, Some(held), loaded)
                }
                None if run.counts.rows > 0 && run.counts.rejected == run.counts.rows => {
                    let message = format!(
                        "every one of the {} rows was rejected; nothing was changed (see the errors)",
                        run.counts.rows
                    );
                    (ImportStatus::Failed, Some(message), None, None, Vec::new())
                }
                None => {
                    let status = if run.counts.rejected > 0 {
                        ImportStatus::Incomplete
                    } else {
                        ImportStatus::Complete
                    };
                    (status, Some(summary), Some(LoadMode::Mirror), None, loaded)
                }
            }
        }
    };
    if status == ImportStatus::Failed {
        run.counts = Counts { rows: run.counts.rows, rejected: run.counts.rows, ..Counts::default() };
    }
    let report_file = run.report.finish().map_err(crate::run::io("writing the error report"))?;
    let held_file = crate::run::kept_on_failure(req, ctx, id, status, held_file);
    let verdict = Verdict {
        status,
        counts: run.counts,
        encoding: Some("utf-8".into()),
        delimiter: Some("comma".into()),
        message,
        warnings: run.notes.warnings().into_iter().chain(warnings).collect(),
        errors: run.errors,
        held_file,
        report_file,
        apply,
        referrers: found.into_iter().map(|(r, _)| r).collect(),
    };
    let types = loaded.into_iter().map(|(f, m)| (oneroster::record_type(&f), m)).collect();
    Ok((loader, verdict, types))
}

struct PackageRun<'r, 'a> {
    req: &'r ImportRequest<'a>,
    /// See [`ImportContext::check_references`].
    check_references: bool,
    strictness: Strictness,
    /// What lenient reading accepted and normalised, for the import's warnings.
    notes: Notes,
    /// Whether the tenant holds any record of a file (asked once per file).
    held: HashMap<&'static str, bool>,
    report: Report,
    errors: Vec<RowError>,
    counts: Counts,
    /// Ids each referred-to file holds in this package (rows that will be active), as keyed
    /// 64-bit hashes: memory stays small however long the ids, and a random key means no
    /// upload can choose ids that collide.
    ids: HashMap<&'static str, HashSet<u64>>,
    /// Ids a referred-to file deletes or fails to load here: the tenant's old record of the
    /// same id no longer counts.
    gone: HashMap<&'static str, HashSet<u64>>,
    hasher: std::collections::hash_map::RandomState,
    /// A file was unusable: the package fails; later files still have their rows checked.
    failed: bool,
    /// Files that could not be read (a bad header, an unreadable entry): references to them
    /// cannot be checked, and are not reported as naming nothing.
    unread: HashSet<&'static str>,
    summary: Vec<String>,
}

impl PackageRun<'_, '_> {
    fn error(&mut self, e: RowError) -> Result<(), ImportError> {
        self.report.add(&e).map_err(crate::run::io("writing the error report"))?;
        if self.errors.len() < sluice_store::STORED_ERRORS {
            self.errors.push(e);
        }
        Ok(())
    }

    /// Reads and stages the whole package. `Ok(Err(..))`: the package is unusable.
    #[allow(clippy::type_complexity)]
    fn read(
        &mut self,
        loader: &mut dyn Loading,
    ) -> Result<Result<Vec<(String, LoadMode)>, Vec<Problem>>, ImportError> {
        let t = self.req.import_type;
        let OpenPackage { mut zip, entries, manifest, mut problems } = match open_package(
            self.req.file,
            self.req.file_name,
            t.limits.max_file_bytes,
            t.name.as_str(),
            self.strictness,
            &mut self.notes,
        )? {
            Ok(p) => p,
            Err(problems) => return Ok(Err(problems)),
        };
        // A package already refused (its manifest, its entries) still has every file it
        // carries checked, so that one pass reports every problem.
        self.failed = !problems.is_empty();
        let referred: HashSet<&str> = oneroster::files(manifest.version)
            .flat_map(|f| f.columns.iter().filter_map(|c| c.refers_to.as_deref()))
            .collect();
        let mut loaded = Vec::new();
        for spec in oneroster::files(manifest.version) {
            let mode = manifest.mode(&spec.name);
            let index = entries.iter().find(|(n, _)| *n == spec.file_name()).map(|(_, i)| *i);
            let index = match (mode, index) {
                (FileMode::Absent, None) => continue,
                // Carried but not to be read (the manifest says absent, or its line is wrong):
                // refused already; its header is still checked.
                (FileMode::Absent, Some(i)) if self.failed => i,
                (FileMode::Absent, Some(_)) => continue,
                (_, Some(i)) => i,
                (_, None) => continue,
            };
            if let Some(p) = self.read_file(&mut zip, index, spec, &manifest, &referred, loader)? {
                problems.push(p);
                self.failed = true;
                self.unread.insert(spec.name.as_str());
                continue;
            }
            let package_mode = if mode == FileMode::Bulk { LoadMode::Mirror } else { LoadMode::Delta };
            loaded.push((spec.name.clone(), package_mode));
        }
        if !problems.is_empty() {
            return Ok(Err(problems));
        }
        Ok(Ok(loaded))
    }

    #[allow(clippy::too_many_arguments)]
    fn read_file(
        &mut self,
        zip: &mut zip::ZipArchive<std::io::BufReader<File>>,
        index: usize,
        spec: &'static FileSpec,
        manifest: &Manifest,
        referred: &HashSet<&str>,
        loader: &mut dyn Loading,
    ) -> Result<Option<Problem>, ImportError> {
        let name = spec.file_name();
        let mode = manifest.mode(&spec.name);
        let record_type = oneroster::record_type(&spec.name);
        let t = self.req.import_type;
        // A file that names its own records (orgs' parents, users' agents) is read twice:
        // first for its ids, so that a parent may come after its child.
        if spec.refers_to_itself() {
            let mut own = HashSet::new();
            let mut csv = match open_csv(zip, index, t.limits.max_row_bytes) {
                Ok(csv) => csv,
                Err(p) => return Ok(Some(p.named(&name))),
            };
            let mut rec = Record::default();
            let mut rows = 0u64;
            // Problems (a bad row, too many rows) are found and reported by the main pass.
            while let Ok(true) = csv.read(&mut rec) {
                rows += 1;
                if rows > t.limits.max_rows.saturating_add(1) {
                    break;
                }
                if rows > 1
                    && let Some(id) = rec.get(0).filter(|v| !v.is_empty() && v.len() < 256)
                {
                    own.insert(self.hasher.hash_one(id));
                }
            }
            self.ids.insert(spec.name.as_str(), own);
        }
        // Two threads, as for a CSV file: one inflates, parses and checks rows (rendering and
        // hashing their records); this one resolves their references and loads them.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Parsed>(4);
        let (path, max_row_bytes) = (self.req.file, t.limits.max_row_bytes);
        let strictness = self.strictness;
        std::thread::scope(|scope| -> Result<Option<Problem>, ImportError> {
            // Owned here, so that every way out of this closure drops it: a parser blocked on a
            // full channel then fails its send and ends, and the scope can join it.
            let rx = rx;
            scope.spawn(move || parse_file(path, index, spec, mode, max_row_bytes, strictness, tx));
            match rx.recv() {
                Ok(Parsed::Header) => {}
                Ok(Parsed::Problem(p)) => return Ok(Some(p.named(&name))),
                _ => return Ok(Some(problem(&name, "unreadable", "cannot be read"))),
            }
            let keep_ids = referred.contains(spec.name.as_str());
            if self.failed {
                // The package is already refused: nothing is staged, but every row's own
                // problems and references are still reported (a file the manifest does not
                // say how to read has its header checked only).
                if mode == FileMode::Absent {
                    return Ok(None);
                }
                let (mut fresh_ids, mut gone) = (HashSet::new(), HashSet::new());
                for message in rx.iter() {
                    match message {
                        Parsed::Rows(batch) => {
                            for (line, mut row, _) in batch {
                                self.counts.rows += 1;
                                self.check_references(loader, manifest, spec, line, &mut row)?;
                                if let Some(key) = row.key.as_deref().filter(|_| keep_ids) {
                                    let ids = if !row.deleted
                                        && (row.errors.is_empty() || loader.active(&record_type, key)?)
                                    {
                                        &mut fresh_ids
                                    } else {
                                        &mut gone
                                    };
                                    ids.insert(self.hasher.hash_one(key));
                                }
                                if !row.errors.is_empty() {
                                    self.counts.rejected += 1;
                                    for e in std::mem::take(&mut row.errors) {
                                        self.error(e)?;
                                    }
                                }
                            }
                        }
                        Parsed::Problem(p) => return Ok(Some(p.named(&name))),
                        Parsed::Done(notes) => {
                            self.notes.merge(notes);
                            break;
                        }
                        Parsed::Header => {}
                    }
                }
                if keep_ids {
                    self.ids.insert(spec.name.as_str(), fresh_ids);
                    self.gone.insert(spec.name.as_str(), gone);
                }
                return Ok(None);
            }
            let mut fresh_ids: HashSet<u64> = HashSet::new();
            let mut gone: HashSet<u64> = HashSet::new();
            let mut rows = 0u64;
            let mut done = false;
            for message in rx.iter() {
                let batch = match message {
                    Parsed::Rows(batch) => batch,
                    Parsed::Problem(p) => return Ok(Some(p.named(&name))),
                    Parsed::Header => Vec::new(),
                    Parsed::Done(notes) => {
                        self.notes.merge(notes);
                        done = true;
                        break;
                    }
                };
                for (line, mut row, hash) in batch {
                    rows += 1;
                    self.counts.rows += 1;
                    if self.counts.rows > t.limits.max_rows {
                        return Ok(Some(problem(
                            &name,
                            "too_many_rows",
                            format!(
                                "the package has more than {} rows, the limit for type {} (limits.max_rows); send it in parts, or raise the limit",
                                t.limits.max_rows, t.name
                            ),
                        )));
                    }
                    // Every problem of a row, its references' too, in one pass.
                    self.check_references(loader, manifest, spec, line, &mut row)?;
                    let ok = row.errors.is_empty();
                    if let Some(key) = &row.key {
                        let kind = if !ok {
                            StageKind::Keep
                        } else if row.deleted {
                            StageKind::Delete
                        } else {
                            StageKind::Load
                        };
                        let hash = if ok { hash } else { 0 };
                        let data = if ok { row.data.as_str() } else { "" };
                        if let Some(first) = loader.stage_in(&record_type, line, key, data, hash, kind)? {
                            row.errors.push(RowError {
                                line,
                                column: format!("{name}:sourcedId"),
                                code: "duplicate_key",
                                reason: format!(
                                    "the same sourcedId as line {first}; each record may appear once"
                                ),
                                value: key.clone(),
                                key: key.clone(),
                                name: row.name.clone(),
                            });
                        } else if keep_ids {
                            // A rejected row keeps its old record, which others may still name; a
                            // deleted one, or a rejected new one, is gone for them.
                            if !row.deleted && (ok || loader.active(&record_type, key)?) {
                                fresh_ids.insert(self.hasher.hash_one(key.as_str()));
                            } else {
                                gone.insert(self.hasher.hash_one(key.as_str()));
                            }
                        }
                    }
                    if !row.errors.is_empty() {
                        self.counts.rejected += 1;
                        for e in std::mem::take(&mut row.errors) {
                            self.error(e)?;
                        }
                    }
                    if rows.is_multiple_of(50_000)
                        && let Some(progress) = self.req.progress
                    {
                        progress(0, self.counts.rows);
                    }
                }
            }
            if !done {
                return Ok(Some(problem(
                    &name,
                    "unreadable",
                    "the reader stopped before the end of the file",
                )));
            }
            if rows == 0 {
                return Ok(Some(problem(
                    &name,
                    "empty_file",
                    "has a header but no rows; a file without rows is marked absent in the manifest and left out",
                )));
            }
            if keep_ids {
                self.ids.insert(spec.name.as_str(), fresh_ids);
                self.gone.insert(spec.name.as_str(), gone);
            }
            Ok(None)
        })
    }

    /// Checks a row's references (not a deletion's: it may name what is already gone), adding
    /// an error to the row for each that names no record: in this package, or among the
    /// tenant's active records unless the package holds a full snapshot of the target.
    fn check_references(
        &mut self,
        loader: &mut dyn Loading,
        manifest: &Manifest,
        spec: &'static FileSpec,
        line: u64,
        row: &mut oneroster::RowCheck,
    ) -> Result<(), ImportError> {
        if row.deleted {
            return Ok(());
        }
        let name = spec.file_name();
        for (ci, target, id) in &row.references {
            if self.unread.contains(target) {
                continue;
            }
            if self.unchecked_absent(loader, manifest, target)? {
                // Lenient: the package says it leaves the file out and the
                // tenant holds none of it; the reference cannot be checked.
                self.notes.other(
                    &format!("{name}:{}", spec.columns[*ci].name),
                    "absent_reference",
                    format!(
                        "refers to {target}, which the manifest marks absent and the tenant does not hold: not checked"
                    ),
                );
                continue;
            }
            if !self.resolves(loader, manifest, target, id)? {
                let reason = if manifest.mode(target) == FileMode::Absent && !self.holds(loader, target)? {
                    format!(
                        "refers to {target}, which the manifest marks absent and the tenant does not hold \
                 (strict reading); send {target}.csv, or import it first"
                    )
                } else if manifest.mode(target) == FileMode::Bulk {
                    format!(
                        "no {target} record has this sourcedId in this package's {target}.csv, which is a full \
                 snapshot (bulk); add the record there"
                    )
                } else {
                    format!(
                        "no active {target} record has this sourcedId, in this package or among the tenant's \
                 records; add it to {target}.csv"
                    )
                };
                row.errors.push(RowError {
                    line,
                    column: format!("{name}:{}", spec.columns[*ci].name),
                    code: "unknown_reference",
                    reason,
                    value: id.clone(),
                    key: row.key.clone().unwrap_or_default(),
                    name: row.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// Whether the tenant holds any `target` record (asked once per file and package).
    fn holds(&mut self, loader: &dyn Loading, target: &str) -> Result<bool, ImportError> {
        let Some(file) = oneroster::files(oneroster::Version::V1_2)
            .chain(oneroster::files(oneroster::Version::V1_1))
            .map(|f| f.name.as_str())
            .find(|f| *f == target)
        else {
            return Ok(false);
        };
        if let Some(held) = self.held.get(file) {
            return Ok(*held);
        }
        let held = !self.check_references || loader.existing_of(&oneroster::record_type(file))? > 0;
        self.held.insert(file, held);
        Ok(held)
    }

    /// Lenient reading of a reference to a file the manifest marks absent and the tenant does
    /// not hold: it is let through unchecked (and noted); strict reading refuses it.
    fn unchecked_absent(
        &mut self,
        loader: &dyn Loading,
        manifest: &Manifest,
        target: &str,
    ) -> Result<bool, ImportError> {
        Ok(!self.strictness.is_strict()
            && manifest.mode(target) == FileMode::Absent
            && !self.ids.contains_key(target)
            && !self.holds(loader, target)?)
    }

    /// Whether `id` names a `target` record: in this package, or, unless the package holds a
    /// full snapshot of `target`, among the tenant's active records.
    fn resolves(
        &self,
        loader: &mut dyn Loading,
        manifest: &Manifest,
        target: &str,
        id: &str,
    ) -> Result<bool, ImportError> {
        let hash = self.hasher.hash_one(id);
        if self.ids.get(target).is_some_and(|ids| ids.contains(&hash)) {
            return Ok(true);
        }
        if self.gone.get(target).is_some_and(|gone| gone.contains(&hash)) {
            return Ok(false);
        }
        if manifest.mode(target) == FileMode::Bulk {
            return Ok(false);
        }
        if !self.check_references {
            // Offline validation has no tenant: what the package does not settle is checked
            // on import.
            return Ok(true);
        }
        Ok(loader.active(&oneroster::record_type(target), id)?)
    }
}

/// A package whose zip passed every check made before inflating, and whose manifest matches
/// its entries: (name, index) of each entry.
struct OpenPackage {
    zip: zip::ZipArchive<std::io::BufReader<File>>,
    entries: Vec<(String, usize)>,
    manifest: Manifest,
    /// What already refuses the package (its manifest, entries it does not match); the
    /// files are still checked, so that one pass reports everything.
    problems: Vec<Problem>,
}

/// Opens a package: its size, its zip directory and every entry (`check_entries`, nothing
/// inflated yet), then its manifest, read and checked against the entries. `Ok(Err(..))`:
/// the package is unusable.
fn open_package(
    path: &std::path::Path,
    file_name: &str,
    max_file_bytes: u64,
    type_name: &str,
    strictness: Strictness,
    notes: &mut Notes,
) -> Result<Result<OpenPackage, Vec<Problem>>, ImportError> {
    let limits = ZipLimits::default();
    let file = File::open(path).map_err(crate::run::io(format!("reading {}", file_name)))?;
    let length = file.metadata().map_err(crate::run::io(format!("reading {}", file_name)))?.len();
    if length > max_file_bytes {
        return Ok(Err(vec![problem(
            file_name,
            "too_large",
            format!(
                "the package is {length} bytes; type {} accepts at most {} (limits.max_file_bytes)",
                type_name, max_file_bytes
            ),
        )]));
    }
    // A second handle for reading the zip's structure by offset (`zipdir`).
    let raw = file.try_clone().map_err(crate::run::io(format!("reading {}", file_name)))?;
    let mut zip = match zip::ZipArchive::new(std::io::BufReader::new(file)) {
        Ok(z) => z,
        Err(e) => {
            return Ok(Err(vec![problem(
                file_name,
                "not_a_zip",
                format!(
                    "not a readable zip file ({e}); a OneRoster package is a .zip with manifest.csv and the CSV files at its root"
                ),
            )]));
        }
    };
    let entries = match check_entries(&mut zip, &raw, &limits, length, ZipKind::Package) {
        Ok(e) => e,
        Err(problems) => return Ok(Err(problems)),
    };
    let Some(manifest_index) = entries.iter().find(|(n, _)| n == "manifest.csv").map(|(_, i)| *i) else {
        return Ok(Err(vec![problem(
            "manifest.csv",
            "missing_manifest",
            "the package has no manifest.csv at its root; OneRoster 1.1 and 1.2 packages need one (propertyName,value lines naming the version and each file)",
        )]));
    };
    let mut bytes = Vec::new();
    let read = zip
        .by_index(manifest_index)
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|f| f.take(limits.max_manifest_bytes + 1).read_to_end(&mut bytes));
    if let Err(e) = read {
        return Ok(Err(vec![problem("manifest.csv", "unreadable", format!("cannot be read: {e}"))]));
    }
    if bytes.len() as u64 > limits.max_manifest_bytes {
        return Ok(Err(vec![problem(
            "manifest.csv",
            "too_large",
            "is larger than 64 KiB; a manifest is a few lines",
        )]));
    }
    let (manifest, list) = Manifest::read(&bytes);
    let mut problems: Vec<Problem> = list
        .into_iter()
        .map(|p| Problem {
            file: "manifest.csv".into(),
            line: p.line,
            code: "bad_manifest",
            reason: p.problem,
        })
        .collect();
    // Without a version, no file can be checked.
    let Some(manifest) = manifest else { return Ok(Err(problems)) };
    for (line, stem) in &manifest.blank {
        let carried = entries.iter().any(|(n, _)| *n == format!("{stem}.csv"));
        if carried || strictness.is_strict() {
            let why = if carried {
                format!("file.{stem} is blank but the zip has {stem}.csv; say bulk or delta")
            } else {
                format!(
                    "file.{stem} is blank; it must be bulk, delta or absent (strict reading; lenient reads a blank line for a file the package does not carry as absent)"
                )
            };
            problems.push(Problem {
                file: "manifest.csv".into(),
                line: *line,
                code: "bad_manifest",
                reason: why,
            });
        } else {
            notes.once(
                &format!("manifest.csv:{line}"),
                "blank_manifest",
                format!("file.{stem} is blank and the package has no {stem}.csv: read as absent"),
            );
        }
    }
    for (name, _) in entries.iter().filter(|(n, _)| n != "manifest.csv") {
        let stem = name.strip_suffix(".csv").unwrap_or("");
        match oneroster::file_spec(manifest.version, stem) {
                None => problems.push(problem(
                    name,
                    "unexpected_file",
                    format!("is not a OneRoster {} file; remove it from the zip", manifest.version.as_str()),
                )),
                // A blank or wrong line for the file is reported as such, not again here.
                Some(_) if manifest.mode(stem) == FileMode::Absent
                    && !problems.iter().any(|p| p.file == "manifest.csv" && p.reason.starts_with(&format!("file.{stem} "))) =>
                    problems.push(problem(
                    name,
                    "not_in_manifest",
                    format!("is in the zip but the manifest says file.{stem},absent; mark it bulk or delta, or leave it out"),
                )),
                Some(_) => {}
            }
    }
    for (stem, mode) in &manifest.files {
        if *mode != FileMode::Absent && !entries.iter().any(|(n, _)| *n == format!("{stem}.csv")) {
            problems.push(problem(
                &format!("{stem}.csv"),
                "missing_file",
                format!("the manifest says file.{stem},{} but the zip has no {stem}.csv", mode.as_str()),
            ));
        }
    }
    Ok(Ok(OpenPackage { zip, entries, manifest, problems }))
}

/// What reading one file of a package inflated, against what its zip entry declared.
#[derive(Debug)]
pub struct EntryRead {
    pub name: String,
    pub declared: u64,
    pub inflated: u64,
}

/// Reads a package as an import does, without a store, for the fuzz targets in `fuzz/`:
/// `open_package` (every check made before inflating, then the manifest), then each file the
/// manifest lists, checked row by row by `parse_file` and inflated once more through
/// `open_csv` to measure what the guard let through. `Err`: the problems that refuse it.
pub fn read_package(path: &std::path::Path) -> Result<Vec<EntryRead>, Vec<String>> {
    let limits = sluice_core::import::types::Limits::default();
    let say = |p: Problem| format!("{} ({}): {}", p.file, p.code, p.reason);
    let mut notes = Notes::default();
    let strictness = Strictness::Lenient;
    let OpenPackage { mut zip, entries, manifest, problems: refused } =
        match open_package(path, "package.zip", limits.max_file_bytes, "oneroster", strictness, &mut notes) {
            Ok(Ok(p)) => p,
            Ok(Err(problems)) => return Err(problems.into_iter().map(say).collect()),
            Err(e) => return Err(vec![e.to_string()]),
        };
    let mut read = Vec::new();
    let mut problems: Vec<String> = refused.into_iter().map(say).collect();
    for spec in oneroster::files(manifest.version) {
        let mode = manifest.mode(&spec.name);
        let name = spec.file_name();
        let Some(index) = entries.iter().find(|(n, _)| *n == name).map(|(_, i)| *i) else {
            continue;
        };
        if mode == FileMode::Absent {
            continue;
        }
        let (tx, rx) = std::sync::mpsc::sync_channel::<Parsed>(4);
        // Spawned and joined rather than scoped: a scope ends when the closure returns, before
        // the thread has run its thread-local destructors, which the fuzzer's leak check then
        // reports (glibc's `__cxa_thread_atexit_impl` list); `join` waits for the thread's end.
        let owned = path.to_path_buf();
        let max_row_bytes = limits.max_row_bytes;
        let parser =
            std::thread::spawn(move || parse_file(&owned, index, spec, mode, max_row_bytes, strictness, tx));
        for message in rx {
            if let Parsed::Problem(p) = message {
                problems.push(say(p.named(&name)));
            }
        }
        if parser.join().is_err() {
            problems.push(format!("{name}: the parser panicked"));
        }
        let declared = zip.by_index_raw(index).map(|e| e.size()).map_err(|e| vec![e.to_string()])?;
        let mut csv =
            open_csv(&mut zip, index, limits.max_row_bytes).map_err(|p| vec![say(p.named(&name))])?;
        let mut rec = Record::default();
        while let Ok(true) = csv.read(&mut rec) {}
        read.push(EntryRead { name, declared, inflated: csv.bytes_read() });
    }
    if problems.is_empty() { Ok(read) } else { Err(problems) }
}

/// What the parsing thread hands the loading one.
enum Parsed {
    /// The header is right; rows follow.
    Header,
    /// (line, the checked row, the hash of its record)
    Rows(Vec<(u64, oneroster::RowCheck, i64)>),
    Problem(Problem),
    /// The end of the file, with what lenient reading noted.
    Done(Notes),
}

const BATCH: usize = 1024;
/// A batch is also sent once its rows hold this much (data and references), so the batches
/// in flight stay small whatever the rows look like.
const BATCH_BYTES: usize = 4 << 20;

/// Inflates one entry on a thread of its own (with its own handle on the zip), checks the
/// header and then each row, and sends them on in batches. Stops when the receiver is gone.
fn parse_file(
    path: &std::path::Path,
    index: usize,
    spec: &'static FileSpec,
    mode: FileMode,
    max_row_bytes: usize,
    strictness: Strictness,
    tx: std::sync::mpsc::SyncSender<Parsed>,
) {
    let fail = |tx: &std::sync::mpsc::SyncSender<Parsed>, p: Problem| {
        let _ = tx.send(Parsed::Problem(p));
    };
    let zip = File::open(path)
        .map_err(|e| e.to_string())
        .and_then(|f| zip::ZipArchive::new(std::io::BufReader::new(f)).map_err(|e| e.to_string()));
    let mut zip = match zip {
        Ok(z) => z,
        Err(e) => return fail(&tx, problem("", "unreadable", format!("cannot be read: {e}"))),
    };
    let mut csv = match open_csv(&mut zip, index, max_row_bytes) {
        Ok(csv) => csv,
        Err(p) => return fail(&tx, p),
    };
    let mut rec = Record::default();
    match csv.read(&mut rec) {
        Ok(true) => {}
        Ok(false) => {
            let why = "is empty; a file without rows is marked absent in the manifest and left out";
            return fail(&tx, problem("", "empty_file", why));
        }
        Err(e) => return fail(&tx, problem("", "unreadable", format!("cannot be read: {e}"))),
    }
    let mut notes = Notes::default();
    let file = spec.file_name();
    if csv.sep_line().is_some() {
        if strictness.is_strict() {
            let reason =
                "the first line is an Excel sep= hint, not the header; remove it (strict reading)".into();
            return fail(&tx, Problem { file: String::new(), line: 1, code: "sep_line", reason });
        }
        notes.once(&file, "sep_line", "the first line `sep=,` (Excel) was skipped");
    }
    if let Some(enc) =
        csv.encoding().filter(|e| !matches!(e, Encoding::Utf8 | Encoding::Utf8Bom | Encoding::Ascii))
    {
        let why = format!("is {enc}; OneRoster files must be UTF-8 (a BOM is allowed)");
        return fail(&tx, problem("", "not_utf8", why));
    }
    let layout = match check_header(spec, &rec, strictness, &mut notes) {
        Ok(l) => l,
        Err(reason) => {
            return fail(&tx, Problem { file: String::new(), line: 1, code: "bad_header", reason });
        }
    };
    if tx.send(Parsed::Header).is_err() {
        return;
    }
    let mut batch = Vec::with_capacity(BATCH);
    let mut bytes = 0usize;
    loop {
        match csv.read(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let p = Problem {
                    file: String::new(),
                    // The error's own line: a bad byte may be rows past the last row read.
                    line: Some(crate::run::csv_line(&e)).filter(|&l| l > 0).unwrap_or(rec.line),
                    code: "unreadable",
                    reason: format!("cannot be read: {e}"),
                };
                return fail(&tx, p);
            }
        }
        if layout.lenient && is_empty_row(&rec) {
            notes.other(&file, "empty_row", "empty rows (every field blank) skipped");
            continue;
        }
        let row = check_row(spec, &layout, &rec, mode, &mut notes);
        let hash = if row.errors.is_empty() { content_hash(&row.data) } else { 0 };
        bytes += row.data.len() + row.references.iter().map(|r| r.2.len() + 48).sum::<usize>();
        batch.push((rec.line, row, hash));
        if batch.len() == BATCH || bytes >= BATCH_BYTES {
            bytes = 0;
            if tx.send(Parsed::Rows(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))).is_err() {
                return;
            }
        }
    }
    if !batch.is_empty() && tx.send(Parsed::Rows(batch)).is_err() {
        return;
    }
    let _ = tx.send(Parsed::Done(notes));
}

/// Checks every entry before anything is inflated; returns (name, index) of each. `raw` is
/// the zip's file, for reading its directory and headers as they are (`zipdir`).
pub(crate) fn check_entries(
    zip: &mut zip::ZipArchive<std::io::BufReader<File>>,
    raw: &File,
    limits: &ZipLimits,
    archive_bytes: u64,
    kind: ZipKind,
) -> Result<Vec<(String, usize)>, Vec<Problem>> {
    if zip.len() > limits.max_entries {
        return Err(vec![problem(
            "package",
            "too_many_entries",
            format!("the zip has {} entries; {} has at most {}", zip.len(), kind.what(), limits.max_entries),
        )]);
    }
    let mut problems = directory_problems(zip, raw, limits);
    let mut entries: Vec<(String, usize)> = Vec::new();
    // Lower-cased names seen, with the first spelling: one look each, whatever the count.
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut total = 0u64;
    let mut compressed = 0u64;
    let mut spans: Vec<(u64, u64)> = Vec::new();
    for i in 0..zip.len() {
        let entry = match zip.by_index_raw(i) {
            Ok(e) => e,
            Err(e) => {
                problems.push(problem("package", "bad_zip", format!("entry {i} cannot be read: {e}")));
                continue;
            }
        };
        let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
        match crate::zipdir::local_name(raw, entry.header_start()) {
            Ok(local) if local == entry.name_raw() => {}
            Ok(local) => {
                problems.push(problem(
                    &name,
                    "inconsistent_names",
                    format!(
                        "its local header names it {:?}: the zip's directory and its entries disagree, which only a crafted zip does; it was not unpacked",
                        String::from_utf8_lossy(&local)
                    ),
                ));
                // The other checks still run: entries sharing one header say so too.
            }
            Err(e) => {
                problems.push(problem(&name, "bad_zip", format!("its local header cannot be read: {e}")));
                continue;
            }
        }
        let lower = name.to_ascii_lowercase();
        // A name is a path of a few components, not a payload: longer ones are refused before
        // any other check looks at them.
        if name.len() > MAX_ENTRY_NAME {
            problems.push(problem(
                &name.chars().take(80).collect::<String>(),
                "path_in_name",
                format!("has a name of {} bytes; at most {MAX_ENTRY_NAME}", name.len()),
            ));
            continue;
        }
        if kind == ZipKind::Photos && (entry.is_dir() || sluice_core::photo::is_system_entry(&name)) {
            // Folders and what a Mac or Windows adds to a zip: not photos, not problems.
            continue;
        }
        let path_in_name = match kind {
            ZipKind::Package => {
                entry.is_dir()
                    || name.contains(['/', '\\', ':'])
                    || name.starts_with('.')
                    || name.contains('\0')
            }
            // Photos may sit in folders (a PSPA disc's Images/), but only below the zip's root.
            ZipKind::Photos => {
                name.contains(['\\', ':', '\0'])
                    || name.starts_with('/')
                    || name.split('/').any(|part| part.is_empty() || part == "." || part == "..")
            }
        };
        if path_in_name {
            problems.push(problem(&name, "path_in_name", kind.path_advice()));
            continue;
        }
        const ARCHIVES: [&str; 9] = [".zip", ".gz", ".tgz", ".tar", ".7z", ".rar", ".bz2", ".xz", ".jar"];
        if ARCHIVES.iter().any(|a| lower.ends_with(a)) {
            problems.push(problem(
                &name,
                "nested_archive",
                "is an archive inside the zip; nested archives are not unpacked",
            ));
            continue;
        }
        if !matches!(entry.compression(), zip::CompressionMethod::Stored | zip::CompressionMethod::Deflated) {
            problems.push(problem(
                &name,
                "unsupported_compression",
                format!(
                    "uses {} compression; {} uses deflate (the standard zip compression): re-zip it",
                    entry.compression(),
                    kind.what()
                ),
            ));
            continue;
        }
        if entry.encrypted() {
            problems.push(problem(&name, "encrypted", "is encrypted; send the package without a password"));
            continue;
        }
        if let Some(first) = seen.get(&name.to_ascii_lowercase()) {
            problems.push(problem(
                &name,
                "duplicate_file",
                format!("appears twice in the zip (as {first:?} too); a zip holds at most one of each file"),
            ));
            continue;
        }
        let size = entry.size();
        total = total.saturating_add(size);
        compressed = compressed.saturating_add(entry.compressed_size());
        spans.push((entry.header_start(), entry.header_start().saturating_add(entry.compressed_size())));
        if size > limits.ratio_floor && size / entry.compressed_size().max(1) > limits.max_ratio {
            problems.push(problem(
                &name,
                "zip_bomb",
                format!(
                    "would inflate from {} to {size} bytes, more than {}:1; this looks like a zip bomb and was not unpacked",
                    entry.compressed_size(),
                    limits.max_ratio
                ),
            ));
            continue;
        }
        seen.insert(lower, name.clone());
        entries.push((name, i));
    }
    // Entries that share their compressed bytes inflate the same data many times over.
    spans.sort_unstable();
    let overlapping = spans.windows(2).any(|w| w[1].0 < w[0].1);
    if overlapping || compressed > archive_bytes {
        problems.push(problem(
            "package",
            "overlapping_entries",
            "entries of the zip share their data, which only a crafted zip does; it was not unpacked",
        ));
    }
    if total > limits.ratio_floor && total / archive_bytes.max(1) > limits.max_ratio {
        problems.push(problem(
            "package",
            "zip_bomb",
            format!(
                "would inflate from {archive_bytes} to {total} bytes, more than {}:1; this looks like a zip bomb and was not unpacked",
                limits.max_ratio
            ),
        ));
    }
    if total > limits.max_total_bytes {
        problems.push(problem(
            "package",
            "too_large",
            format!(
                "the files would inflate to {total} bytes, more than the {} allowed",
                limits.max_total_bytes
            ),
        ));
    }
    if problems.is_empty() { Ok(entries) } else { Err(problems) }
}

/// What the zip library cannot see: it keeps one entry per name and reads only as many
/// directory records as the end record claims. So the records are read from the bytes: a
/// name recorded twice, or more records than the end record counts, is refused.
fn directory_problems(
    zip: &zip::ZipArchive<std::io::BufReader<File>>,
    raw: &File,
    limits: &ZipLimits,
) -> Vec<Problem> {
    let names = match crate::zipdir::central_names(raw, zip.central_directory_start(), limits.max_entries + 1)
    {
        Ok(names) => names,
        Err(e) => {
            return vec![problem("package", "bad_zip", format!("its central directory cannot be read: {e}"))];
        }
    };
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    let mut reported = HashSet::new();
    for name in &names {
        if !seen.insert(name.as_slice()) && reported.insert(name.as_slice()) {
            problems.push(problem(
                &String::from_utf8_lossy(name),
                "duplicate_file",
                "appears twice in the zip under exactly this name (two entries in its central directory); a package holds at most one of each file",
            ));
        }
    }
    if names.len() > limits.max_entries {
        problems.push(problem(
            "package",
            "too_many_entries",
            format!(
                "the zip has more than {} entries; a OneRoster package has at most {}",
                limits.max_entries, limits.max_entries
            ),
        ));
    } else if problems.is_empty() && names.len() != zip.len() {
        problems.push(problem(
            "package",
            "entry_count_mismatch",
            format!(
                "the zip's end record lists {} entries but its central directory holds {}, which only a crafted or damaged zip does; it was not unpacked",
                zip.len(),
                names.len()
            ),
        ));
    }
    problems
}

/// A CSV reader over one entry, inflating no more than the entry declared (a lying header
/// cannot make it produce more) and refusing an archive disguised as a CSV file.
fn open_csv<'z>(
    zip: &'z mut zip::ZipArchive<std::io::BufReader<File>>,
    index: usize,
    max_row_bytes: usize,
) -> Result<CsvReader<Guarded<zip::read::ZipFile<'z, std::io::BufReader<File>>>>, Problem> {
    let entry = zip
        .by_index(index)
        .map_err(|e| problem("", "unreadable", format!("cannot be unpacked ({e}); re-zip the package")))?;
    let declared = entry.size();
    Ok(CsvReader::comma(Guarded { inner: entry, left: declared, first: true }, max_row_bytes, 1000))
}

struct Guarded<R> {
    inner: R,
    left: u64,
    first: bool,
}

impl<R: Read> Read for Guarded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if std::mem::take(&mut self.first)
            && n >= 2
            && (buf.starts_with(b"PK") || buf.starts_with(&[0x1f, 0x8b]))
        {
            return Err(std::io::Error::other(
                "it is an archive, not a CSV file; nested archives are not unpacked",
            ));
        }
        if n as u64 > self.left {
            return Err(std::io::Error::other("it inflates to more than its declared size"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zip_of(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts =
            zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in entries {
            w.start_file(*name, opts).unwrap();
            w.write_all(data.as_bytes()).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn manifest_with_orgs() -> String {
        let mut m = String::from("propertyName,value\nmanifest.version,1.0\noneroster.version,1.2\n");
        for f in oneroster::files(oneroster::Version::V1_2) {
            let mode = if f.name == "orgs" { "bulk" } else { "absent" };
            m.push_str(&format!("file.{},{mode}\n", f.name));
        }
        m
    }

    /// The fuzz target's entry point reads what an import reads: a good package file by
    /// file, each inflated to exactly its declared size; a package an import refuses, refused.
    #[test]
    fn read_package_reads_every_listed_file_and_refuses_what_an_import_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("package.zip");
        let orgs = "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId\n\
                    s1,,,Lincoln High,school,LHS,d1\nd1,,,Springfield District,district,SD,\n";
        std::fs::write(&path, zip_of(&[("manifest.csv", &manifest_with_orgs()), ("orgs.csv", orgs)]))
            .unwrap();
        let read = read_package(&path).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(
            (read[0].name.as_str(), read[0].declared, read[0].inflated),
            ("orgs.csv", orgs.len() as u64, orgs.len() as u64)
        );

        let bad_header = zip_of(&[("manifest.csv", &manifest_with_orgs()), ("orgs.csv", "id,name\n1,x\n")]);
        std::fs::write(&path, bad_header).unwrap();
        let problems = read_package(&path).unwrap_err();
        assert!(problems.iter().any(|p| p.starts_with("orgs.csv (bad_header)")), "{problems:?}");

        std::fs::write(&path, zip_of(&[("orgs.csv", orgs)])).unwrap();
        let problems = read_package(&path).unwrap_err();
        assert!(problems.iter().any(|p| p.contains("missing_manifest")), "{problems:?}");
    }
}
