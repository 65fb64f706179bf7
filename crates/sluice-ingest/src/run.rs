//! One import of one file, synchronously. The caller decides where the file came from.

use crate::report::Report;
use sluice_core::import::OnDelete;
use sluice_core::import::safeguard::held_message;
use sluice_core::import::{
    CsvError, CsvReader, Delimiter, HeaderMap, ImportType, LoadMode, Notes, PersonColumns, Record, RowError,
    Safeguard, SafeguardSetting, Strictness, TypeFormat, Values,
};
use sluice_core::people::Contact;
use sluice_store::roles::*;
use sluice_store::{Backend, Counts, ImportRecord, ImportStatus, Outcome, Referrer, StageKind, StoreError};
use std::fs::File;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

/// Copies `from` to `to` as a file private to sluice's user (0600), whatever `from`'s mode
/// (`std::fs::copy` gives the copy the mode of, say, an operator's world-readable file).
pub(crate) fn copy_private(from: impl AsRef<Path>, to: impl AsRef<Path>) -> std::io::Result<u64> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut source = std::fs::File::open(from)?;
    let mut target =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(to)?;
    target.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    std::io::copy(&mut source, &mut target)
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ImportError {
    let what = what.into();
    move |source| ImportError::Io { what, source }
}

/// One import: what to import, for whom, where it came from, and how. What [`Ingest::run`]
/// and [`import_file`] take; the rules and places it runs under are an [`ImportContext`].
///
/// [`Ingest::run`]: crate::Ingest::run
pub struct ImportRequest<'a> {
    pub tenant: &'a str,
    pub import_type: &'a ImportType,
    /// The file to read: a private copy (the pipeline never reads a tenant's folder
    /// directly), or the operator's own path.
    pub file: &'a Path,
    /// The name the tenant knows the file by.
    pub file_name: &'a str,
    /// `upload`, `manifest`, `cli`, `sync`, ...
    pub source: &'a str,
    pub upload_id: Option<i64>,
    /// The `.done` manifest's upload event, for a file it listed.
    pub manifest_upload: Option<i64>,
    /// Approving a held import: the deletion safeguard is not applied again.
    pub approved: bool,
    /// Re-run of an existing (held) import instead of a new one.
    pub existing_import: Option<i64>,
    /// Called now and then with (bytes read, rows read), for a progress bar.
    pub progress: Option<&'a dyn Fn(u64, u64)>,
}

impl<'a> ImportRequest<'a> {
    /// A new import of `file` (nothing approved, no upload event, no progress).
    pub fn new(
        tenant: &'a str,
        import_type: &'a ImportType,
        file: &'a Path,
        file_name: &'a str,
        source: &'a str,
    ) -> Self {
        Self {
            tenant,
            import_type,
            file,
            file_name,
            source,
            upload_id: None,
            manifest_upload: None,
            approved: false,
            existing_import: None,
            progress: None,
        }
    }
}

/// The rules and places an import runs under: built by [`Ingest`](crate::Ingest) from its
/// configuration and the tenant's settings, or [`ImportContext::offline`] for validation.
pub struct ImportContext<'a> {
    /// Where the error report goes (`DATA_DIR/reports`).
    pub reports_dir: &'a Path,
    /// The tenant's `/errors`, where a copy of the report is put before the import's outcome
    /// is committed (whoever sees the outcome finds the report); `None`: nowhere.
    pub errors_dir: Option<PathBuf>,
    /// Where a held import keeps its file until approved (`DATA_DIR/spool/held`).
    pub held_dir: &'a Path,
    /// Offline validation has no records to resolve references against.
    pub check_references: bool,
    /// The type's safeguard with the tenant's settings applied.
    pub safeguard: Safeguard,
    /// The tenant's safeguard settings (packages apply them per file).
    pub safeguard_settings: &'a [SafeguardSetting],
    /// The references of other types to this one, with their `on_delete` policies (a
    /// package finds its own between its files).
    pub referrers: Vec<Referrer>,
    /// Where records' photos are kept (`DATA_DIR/photos`, one image store per tenant).
    pub photos_dir: &'a Path,
    /// A photos type's target type (the key names a mapping file's header may use).
    pub photo_target: Option<&'a ImportType>,
    /// The tenant's blackout in force today: a mirror import deletes nothing by omission.
    pub blackout: Option<sluice_core::Blackout>,
}

impl<'a> ImportContext<'a> {
    /// Validation in a scratch directory: no safeguard, no references to resolve.
    pub fn offline(scratch: &'a Path) -> Self {
        Self {
            reports_dir: scratch,
            errors_dir: None,
            held_dir: scratch,
            check_references: false,
            safeguard: Safeguard::default(),
            safeguard_settings: &[],
            referrers: Vec::new(),
            photos_dir: scratch,
            photo_target: None,
            blackout: None,
        }
    }
}

impl ImportRequest<'_> {
    /// The import row this request runs as: the held one it re-runs, or a new `running` one.
    pub(crate) fn import_id(&self, store: &dyn Imports) -> Result<i64, ImportError> {
        match self.existing_import {
            Some(id) => Ok(id),
            None => Ok(store.create_import(
                self.tenant,
                &self.import_type.name,
                self.file_name,
                self.source,
                self.upload_id,
                self.manifest_upload,
            )?),
        }
    }
}

/// How this request's file is read: the type's strictness and delimiter, overridden by the
/// tenant's settings (`sluice tenant set T strictness=strict`, `delimiter.TYPE=tab`).
pub(crate) fn reading(
    store: &dyn Tenants,
    req: &ImportRequest<'_>,
) -> Result<(Strictness, Option<Delimiter>), ImportError> {
    let settings = store.tenant(req.tenant)?.map(|t| t.read_settings).unwrap_or_default();
    Ok(sluice_core::import::reading(req.import_type, &settings))
}

/// Imports one file. Every outcome, including a rejected file, ends as an import row with
/// a status; only store and I/O failures of sluice itself are errors here.
pub fn import_file(
    store: &dyn Backend,
    req: &ImportRequest<'_>,
    ctx: &ImportContext<'_>,
) -> Result<ImportRecord, ImportError> {
    let t = req.import_type;
    if t.format == TypeFormat::OneRoster {
        return crate::oneroster::import_package(store, req, ctx);
    }
    if let Some(rules) = photo_rules(req) {
        return crate::photos::import_photos(store, req, ctx, rules);
    }
    let id = req.import_id(store)?;
    let (loader, verdict) = evaluate(store, req, ctx, id, false)?;
    let published = publish_report(ctx, id, req.file_name, verdict.report_file.as_deref());
    loader.commit(verdict.outcome(req.upload_id, t.person.as_ref()))?;
    published.keep();
    Ok(store.import(id)?.ok_or(StoreError::Corrupt(format!("import {id} vanished")))?)
}

/// Puts a copy of import `id`'s error report (if it has one) in the tenant's `/errors`,
/// before its outcome is committed; [`Published::keep`] once it is. Dropped without that (the
/// commit failed), the copy goes and the report it replaced (an approval re-runs a held
/// import under its id) comes back. A copy that fails is logged; the report stays in
/// `DATA_DIR/reports` and the import goes on.
pub(crate) fn publish_report(
    ctx: &ImportContext<'_>,
    id: i64,
    file_name: &str,
    report: Option<&Path>,
) -> Published {
    let (Some(dir), Some(report)) = (&ctx.errors_dir, report) else { return Published::default() };
    let name = sluice_core::history::error_report_name(id, file_name);
    let target = dir.join(&name);
    // Set aside out of the tenant's sight (the same filesystem: both under DATA_DIR).
    let previous = ctx.reports_dir.join(format!("{name}.previous"));
    let previous = std::fs::rename(&target, &previous).is_ok().then_some(previous);
    if let Err(e) = copy_private(report, &target) {
        tracing::warn!(import = id, "could not copy the error report to /errors: {e}");
    }
    Published { target: Some(target), previous }
}

/// An error report put in `/errors` ahead of its import's commit (see [`publish_report`]).
#[derive(Default)]
#[must_use = "a report is taken back unless kept"]
pub(crate) struct Published {
    target: Option<PathBuf>,
    previous: Option<PathBuf>,
}

impl Published {
    /// The import committed: its report stays, the one it replaced goes.
    pub(crate) fn keep(mut self) {
        if let Some(previous) = self.previous.take() {
            let _ = std::fs::remove_file(previous);
        }
        self.target = None;
    }
}

impl Drop for Published {
    fn drop(&mut self) {
        if let Some(target) = self.target.take() {
            let _ = std::fs::remove_file(&target);
            if let Some(previous) = self.previous.take() {
                let _ = std::fs::rename(previous, target);
            }
        }
    }
}

/// What an import of this file would do, worked out exactly as [`import_file`] does (the
/// same validation, references and safeguard) and then rolled back: nothing changes.
pub fn dry_run(
    store: &dyn Backend,
    req: &ImportRequest<'_>,
    ctx: &ImportContext<'_>,
) -> Result<Verdict, ImportError> {
    if req.import_type.format == TypeFormat::OneRoster {
        return crate::oneroster::dry_run_package(store, req, ctx);
    }
    if photo_rules(req).is_some() {
        return Ok(Verdict {
            status: ImportStatus::Failed,
            counts: Counts::default(),
            encoding: None,
            delimiter: None,
            message: Some(
                "a zip of photos has no dry run; import it (photos only add and replace images)".into(),
            ),
            warnings: Vec::new(),
            errors: Vec::new(),
            held_file: None,
            report_file: None,
            apply: None,
            referrers: Vec::new(),
        });
    }
    let (loader, mut verdict) = evaluate(store, req, ctx, 0, true)?;
    loader.abandon()?;
    if let Some(report) = verdict.report_file.take() {
        let _ = std::fs::remove_file(report);
    }
    Ok(verdict)
}

/// The photo rules an upload is imported by: a photos type's, or those of a type that takes
/// zips of photos of its records in its folder (a `.zip` there).
fn photo_rules<'t>(req: &ImportRequest<'t>) -> Option<&'t sluice_core::import::types::PhotoRules> {
    let t = req.import_type;
    let rules = t.photos.as_ref()?;
    (t.format == TypeFormat::Photos || req.file_name.to_ascii_lowercase().ends_with(".zip")).then_some(rules)
}

/// How an import ends: everything written to the store in its final transaction.
#[derive(Debug)]
pub struct Verdict {
    pub status: ImportStatus,
    pub counts: Counts,
    pub encoding: Option<String>,
    /// The delimiter the file was read with.
    pub delimiter: Option<String>,
    pub message: Option<String>,
    pub warnings: Vec<String>,
    /// The first [`sluice_store::STORED_ERRORS`] errors; the report has them all.
    pub errors: Vec<RowError>,
    pub held_file: Option<PathBuf>,
    pub report_file: Option<PathBuf>,
    pub(crate) apply: Option<LoadMode>,
    /// References left dangling by what the import deletes (their `deactivate` policies are
    /// carried out when it is applied).
    pub(crate) referrers: Vec<Referrer>,
}

impl Verdict {
    pub(crate) fn outcome<'v>(
        &'v self,
        upload_id: Option<i64>,
        person: Option<&'v PersonColumns>,
    ) -> Outcome<'v> {
        Outcome {
            status: self.status,
            counts: self.counts,
            encoding: self.encoding.clone(),
            delimiter: self.delimiter.clone(),
            message: self.message.clone(),
            warnings: &self.warnings,
            errors: &self.errors,
            held_file: self.held_file.as_ref().map(|p| p.display().to_string()),
            report_file: self.report_file.as_ref().map(|p| p.display().to_string()),
            apply: self.apply,
            upload_id,
            person,
            record_types: None,
            referrers: &self.referrers,
        }
    }
}

/// Whether an approval covers what the import would do now. The held import's counts are
/// what its approver saw; should newer imports since have made it delete or change more,
/// it is held again, with the new counts, for a decision on those.
pub(crate) fn approval_covers(
    store: &dyn Imports,
    req: &ImportRequest<'_>,
    deleted: u64,
    updated: u64,
) -> Result<bool, ImportError> {
    if !req.approved {
        return Ok(false);
    }
    let Some(held) = req.existing_import else { return Ok(true) };
    let seen = store.import(held)?.map(|r| r.counts);
    Ok(seen.is_none_or(|c| deleted <= c.deleted && updated <= c.updated))
}

/// Rows a stray quote swallowed (see [`HeaderMap::swallowed_keys`]: lines of a value with a
/// row's shape) are at most this many keys, which the import looks up.
const MAX_SWALLOWED: usize = 100;

/// The first whole row found inside a value (`(line, key)`) whose record is active and which
/// the file does not list otherwise: a mirror import would delete it, any import leave it as
/// it is.
fn swallowed_record(
    loader: &mut dyn sluice_store::Loading,
    type_name: &str,
    swallowed: &[(u64, String)],
) -> Result<Option<(u64, String)>, ImportError> {
    for (line, key) in swallowed {
        if loader.active(type_name, key)? && !loader.listed(type_name, key)? {
            return Ok(Some((*line, key.clone())));
        }
    }
    Ok(None)
}

/// Values a file without some of its type's columns would empty.
struct ColumnLoss {
    /// The missing columns that records hold values in, quoted.
    columns: Vec<String>,
    records: u64,
    type_name: String,
}

impl ColumnLoss {
    /// "this file has no column "email": applying it {empties} it in 412 students records that
    /// hold a value there".
    fn sentence(&self, empties: &str) -> String {
        let (column, them) = if self.columns.len() == 1 { ("column", "it") } else { ("columns", "them") };
        let (n, records) = (self.records, if self.records == 1 { "record" } else { "records" });
        format!(
            "this file has no {column} {}: applying it {empties} {them} in {n} {} {records} that held a value there",
            self.columns.join(", "),
            self.type_name
        )
    }
}

/// What a file without some of the type's columns would empty, when records it rewrites hold
/// values there (a deactivated record listed again included): a mirror file is held like a
/// breach of the safeguard (a district's export that lost a column must not blank it in every
/// record; a column left out on purpose is approved once, and the next files find it empty).
/// `None` when nothing held a value.
fn column_loss(
    loader: &dyn sluice_store::Loading,
    absent: &[(usize, String)],
    type_name: &str,
) -> Result<Option<ColumnLoss>, ImportError> {
    if absent.is_empty() || loader.existing() == 0 {
        return Ok(None);
    }
    let paths: Vec<String> = absent.iter().map(|(i, _)| format!("$[{i}]")).collect();
    let emptied = loader.emptied(&paths)?;
    if emptied.records == 0 {
        return Ok(None);
    }
    // Only the columns that hold something: those always empty lose nothing.
    let columns = absent
        .iter()
        .zip(&emptied.per_column)
        .filter(|(_, n)| **n > 0)
        .map(|((_, c), _)| format!("{c:?}"))
        .collect();
    Ok(Some(ColumnLoss { columns, records: emptied.records, type_name: type_name.to_owned() }))
}

/// What an import says about the records left referring to what it deletes, by policy, once
/// its status is known (`held_otherwise`: another reason holds it); and, for `hold` policies,
/// the reason it is held (`None`: they do not hold it).
fn dangling_verdict(
    found: &[(Referrer, u64)],
    approved: bool,
    held_otherwise: bool,
    warnings: &mut Vec<String>,
) -> Option<String> {
    let holding: Vec<String> = found
        .iter()
        .filter(|(r, _)| r.on_delete == OnDelete::Hold && !approved)
        .map(|(r, n)| r.sentence(*n))
        .collect();
    let held = !holding.is_empty() || held_otherwise;
    for (r, n) in found {
        let what = match (r.on_delete, held) {
            (OnDelete::Keep, false) => "they are kept as they are (on_delete = \"keep\")",
            (OnDelete::Keep, true) => "approving keeps them as they are (on_delete = \"keep\")",
            (OnDelete::Deactivate, false) => "they are deactivated (on_delete = \"deactivate\")",
            (OnDelete::Deactivate, true) => "approving deactivates them (on_delete = \"deactivate\")",
            (OnDelete::Hold, false) => "kept as they are, as approved (on_delete = \"hold\")",
            (OnDelete::Hold, true) => "approving keeps them as they are (on_delete = \"hold\")",
        };
        warnings.push(format!("{}; {what}", r.sentence(*n)));
    }
    (!holding.is_empty()).then(|| format!("{} (on_delete = \"hold\")", holding.join("; ")))
}

/// Why an import is held: the `reasons` found, then those of the records its deletions leave
/// referring ([`dangling_verdict`], whose warnings go to `warnings` either way; `covered`: an
/// approval covers them), in one message ([`held_message`]; approved and held all the same,
/// it says the approval no longer covers it). `None`: nothing holds it.
pub(crate) fn hold_reason(
    mut reasons: Vec<String>,
    found: &[(Referrer, u64)],
    covered: bool,
    req: &ImportRequest<'_>,
    detail: Option<&str>,
    id: i64,
    warnings: &mut Vec<String>,
) -> Option<String> {
    reasons.extend(dangling_verdict(found, covered, !reasons.is_empty(), warnings));
    (!reasons.is_empty()).then(|| held_message(&reasons, req.approved, detail, id))
}

fn evaluate(
    store: &dyn Backend,
    req: &ImportRequest<'_>,
    ctx: &ImportContext<'_>,
    id: i64,
    dry_run: bool,
) -> Result<(Box<dyn sluice_store::Loading>, Verdict), ImportError> {
    let t = req.import_type;
    let mut loader = store.loader(req.tenant, &t.name, id)?;
    let report_name = report_name(id, dry_run);
    let mut report = Report::new(ctx.reports_dir.join(report_name));
    let mut errors: Vec<RowError> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let mut counts = Counts::default();
    let mut found: Vec<(Referrer, u64)> = Vec::new();

    let mut delimiter = None;
    let outcome = read_and_stage(
        store,
        req,
        ctx,
        &mut *loader,
        &mut report,
        &mut errors,
        &mut warnings,
        &mut counts,
        &mut delimiter,
    );
    let (status, message, apply, held_file, encoding) = match outcome? {
        Staged::Rejected { message, encoding, problems } => {
            // What rejected the file comes first: it is the cause of what follows.
            let row_errors = std::mem::take(&mut errors);
            for e in problems {
                report.add(&e).map_err(io("writing the error report"))?;
                errors.push(e);
            }
            let room = sluice_store::STORED_ERRORS.saturating_sub(errors.len());
            errors.extend(row_errors.into_iter().take(room));
            (ImportStatus::Failed, Some(message), None, None, encoding)
        }
        Staged::Rows { encoding, absent, swallowed } => {
            // In a blackout a mirror file is applied as upsert: what it leaves out stays.
            let mode = match (t.mode, ctx.blackout) {
                (LoadMode::Mirror, Some(blackout)) => {
                    let left_out = loader.plan(&t.name, LoadMode::Mirror)?.deleted;
                    if left_out > 0 {
                        warnings.push(format!(
                            "{left_out} {} records missing from this file were not deleted: deletions by omission are held \
                             during the blackout {blackout} (the first full file after it deletes them)",
                            t.name
                        ));
                    }
                    LoadMode::Upsert
                }
                (mode, _) => mode,
            };
            let plan = loader.plan(&t.name, mode)?;
            counts = Counts { rows: counts.rows, rejected: counts.rejected, ..plan };
            // The deletion limit guards against rows that are merely missing (a truncated
            // file); a delta file's deletions are each asked for by name.
            let implicit = if mode == LoadMode::Mirror { plan.deleted } else { 0 };
            let breach = ctx.safeguard.breach(loader.existing(), implicit, plan.updated);
            let covered = approval_covers(store, req, plan.deleted, plan.updated)?;
            if plan.deleted > 0 {
                for r in &ctx.referrers {
                    let n = loader.dangling(mode, r)?;
                    if n > 0 {
                        found.push((r.clone(), n));
                    }
                }
            }
            // Why it is held, in this order: a row a stray quote swallowed, a lost column, the
            // safeguard, then (in `hold_reason`) the records its deletions leave referring.
            let mut reasons = Vec::new();
            // A row inside a quoted value whose record this file does not list otherwise: a stray
            // quote's work. A mirror would delete that record: held for a person to see
            // (approved, the file applies as it is). A partial file (upsert, delta) lists a few
            // records each night, so "nowhere else" is weak evidence there, and a held one is
            // superseded by the next: it applies, and says which row it did not apply.
            let inside = if covered { None } else { swallowed_record(&mut *loader, &t.name, &swallowed)? };
            match inside {
                None => {}
                Some((line, key)) if mode == LoadMode::Mirror => {
                    let key = key.replace('\u{1f}', "+");
                    let said = format!(
                        "line {line} is inside a quoted value but looks like the row of {key}, which this file lists \
                         nowhere else, so applying it would delete {key}: a stray \" probably swallowed that row (fix \
                         the quote and send the file again)"
                    );
                    let problem = file_problem(line, "swallowed_row", said.clone());
                    report.add(&problem).map_err(io("writing the error report"))?;
                    errors.insert(0, problem);
                    reasons.push(said);
                }
                Some((line, key)) => {
                    let key = key.replace('\u{1f}', "+");
                    let was = if dry_run { "would not be" } else { "was not" };
                    warnings.push(format!(
                        "line {line} is inside a quoted value but looks like the row of {key}, which this file lists \
                         nowhere else: if a stray \" swallowed that row, it {was} applied to {key} (fix the quote and \
                         send that row again)"
                    ));
                }
            }
            // Nothing rewritten, nothing emptied: the count is asked for only when rows changed.
            let loss = if plan.updated > 0 { column_loss(&*loader, &absent, &t.name)? } else { None };
            match loss {
                None => {}
                // A partial file (upsert, delta) lists other records each night: approving one
                // would not settle the next, so it says what it empties instead of holding.
                Some(loss) if covered || mode != LoadMode::Mirror => {
                    let (done, empties) = match (dry_run, covered) {
                        (true, _) => ("", "would empty"),
                        (false, true) => ("applied as approved: ", "emptied"),
                        (false, false) => ("", "emptied"),
                    };
                    warnings.push(format!("{done}{}", loss.sentence(empties)));
                }
                Some(loss) => reasons.push(format!(
                    "{} (if the column was left out by mistake, send the file again with it)",
                    loss.sentence("would empty")
                )),
            }
            reasons.extend(breach.filter(|_| !covered).map(|b| b.reason(&t.name)));
            let reason = hold_reason(reasons, &found, covered, req, None, id, &mut warnings);
            match reason {
                Some(message) => {
                    let held = held_path(ctx.held_dir, id);
                    if !dry_run && req.file != held {
                        copy_private(req.file, &held).map_err(io("keeping the held file"))?;
                    }
                    if mode == LoadMode::Mirror && plan.deleted > 0 {
                        // What approving would delete, for the person who decides.
                        let names = t
                            .person
                            .as_ref()
                            .map(|p| (format!("$[{}]", p.first_name), format!("$[{}]", p.last_name)));
                        let sample = loader
                            .deletion_sample(20, names.as_ref().map(|(f, l)| (f.as_str(), l.as_str())))?;
                        let more = plan.deleted.saturating_sub(sample.len() as u64);
                        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
                        warnings.push(format!("approving deletes {}{more}", sample.join(", ")));
                    }
                    (ImportStatus::Held, Some(message), None, Some(held), encoding)
                }
                None => {
                    let status =
                        if counts.rejected > 0 { ImportStatus::Incomplete } else { ImportStatus::Complete };
                    (status, None, Some(mode), None, encoding)
                }
            }
        }
    };
    if status == ImportStatus::Failed {
        counts = Counts { rows: counts.rows, rejected: counts.rows, ..Counts::default() };
    }
    let report_file = report.finish().map_err(io("writing the error report"))?;
    let delimiter = delimiter.map(|d: Delimiter| d.name().to_owned());
    let referrers = found.into_iter().map(|(r, _)| r).collect();
    let held_file = kept_on_failure(req, ctx, id, status, held_file);
    let verdict = Verdict {
        status,
        counts,
        encoding,
        delimiter,
        message,
        warnings,
        errors,
        held_file,
        report_file,
        apply,
        referrers,
    };
    Ok((loader, verdict))
}

enum Staged {
    /// The file as a whole was rejected; nothing will change. `problems`: what rejected it,
    /// each with its line, for the error report.
    Rejected { message: String, encoding: Option<String>, problems: Vec<RowError> },
    Rows {
        encoding: Option<String>,
        /// The type's columns the file does not have (position, name).
        absent: Vec<(usize, String)>,
        /// (line, key) of whole rows found inside values (up to [`MAX_SWALLOWED`]).
        swallowed: Vec<(u64, String)>,
    },
}

/// A whole-file problem as a line of the error report.
fn file_problem(line: u64, code: &'static str, reason: String) -> RowError {
    RowError { line, code, reason, ..Default::default() }
}

#[allow(clippy::too_many_arguments)]
fn read_and_stage(
    store: &dyn Tenants,
    req: &ImportRequest<'_>,
    ctx: &ImportContext<'_>,
    loader: &mut dyn sluice_store::Loading,
    report: &mut Report,
    errors: &mut Vec<RowError>,
    warnings: &mut Vec<String>,
    counts: &mut Counts,
    delimiter: &mut Option<Delimiter>,
) -> Result<Staged, ImportError> {
    let t = req.import_type;
    let (strictness, fixed_delimiter) = reading(store, req)?;
    let rejected = |message: String, encoding: Option<String>| {
        Ok(Staged::Rejected { message, encoding, problems: Vec::new() })
    };
    let rejected_at =
        |line: u64, code: &'static str, message: String, reason: String, encoding: Option<String>| {
            Ok(Staged::Rejected { message, encoding, problems: vec![file_problem(line, code, reason)] })
        };
    let size = std::fs::metadata(req.file).map_err(io(format!("reading {}", req.file_name)))?.len();
    if size > t.limits.max_file_bytes {
        return rejected(
            format!(
                "the file is {size} bytes; type {} accepts at most {} bytes",
                t.name, t.limits.max_file_bytes
            ),
            None,
        );
    }
    let file = File::open(req.file).map_err(io(format!("reading {}", req.file_name)))?;
    let mut csv = CsvReader::new(
        std::io::BufReader::with_capacity(256 << 10, file),
        t.limits.max_row_bytes,
        t.limits.max_columns,
    )
    .with_delimiter(fixed_delimiter);
    let enc = |csv: &CsvReader<_>| csv.encoding().map(|e| e.to_string());
    let mut rec = Record::default();
    let mut notes = Notes::default();
    let read = csv.read(&mut rec);
    *delimiter = csv.delimiter();
    match read {
        Ok(true) => {}
        Ok(false) => {
            return rejected("the file is empty: it has no header row and no data".into(), enc(&csv));
        }
        Err(e) => return rejected_at(csv_line(&e), "unreadable", csv_message(&e), e.to_string(), enc(&csv)),
    }
    if let Some(sep) = csv.sep_line() {
        let line = format!("sep={}", sep.byte() as char);
        if strictness.is_strict() {
            let reason = format!(
                "the first line is {line:?}, an Excel hint, not a header; remove it (or set strictness=lenient, which reads it)"
            );
            return rejected_at(
                1,
                "sep_line",
                format!("the file was rejected: line 1: {reason}"),
                reason,
                enc(&csv),
            );
        }
        notes.once(
            req.file_name,
            "sep_line",
            format!(
                "the first line `{line}` (Excel) was read as the delimiter ({}), not as the header",
                sep.name()
            ),
        );
    }
    let header = match HeaderMap::new(t, &rec, strictness, req.file_name, &mut notes) {
        Ok(h) => h,
        Err(problems) => {
            let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            let delimited = match csv.delimiter() {
                Some(d) if rec.len() == 1 => format!(
                    " (read as {}-delimited{}: the header has one column; if the file uses another delimiter, set delimiter.{}=detect, or tab, semicolon, pipe or comma)",
                    d.name(),
                    if fixed_delimiter.is_some() {
                        ", as the delimiter setting for this type says"
                    } else {
                        ""
                    },
                    t.name
                ),
                _ => String::new(),
            };
            let problems = problems
                .iter()
                .map(|p| RowError {
                    line: rec.line,
                    code: "bad_header",
                    // The report a district downloads says why too.
                    reason: format!("{p}{delimited}"),
                    ..Default::default()
                })
                .collect();
            return Ok(Staged::Rejected {
                message: format!(
                    "the header is not usable for type {}: {}{delimited}",
                    t.name,
                    text.join("; ")
                ),
                encoding: enc(&csv),
                problems,
            });
        }
    };
    for unknown in &header.unknown {
        warnings.push(format!("column {unknown:?} is not part of type {} and was ignored", t.name));
    }
    // A file without one of the type's columns empties it in every record it loads: the
    // verdict holds such an import when records hold values there (`column_loss`).
    let absent: Vec<(usize, String)> = header.absent(t).into_iter().map(|(i, c)| (i, c.to_owned())).collect();
    // Two stages on two threads: this one reads, validates, encodes and hashes rows; the
    // caller's thread owns the database connection and loads them. Batches through a short
    // bounded channel keep memory flat while both cores work.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(4);
    let header = &header;
    std::thread::scope(|scope| {
        scope.spawn(move || prepare_rows(t, header, strictness, csv, notes, tx));
        let mut missing_ids = Vec::new();
        let mut swallowed = Vec::new();
        let staged = load_rows(
            req,
            ctx.check_references,
            rx,
            loader,
            report,
            errors,
            warnings,
            counts,
            &mut missing_ids,
            &mut swallowed,
        );
        if let (Some(p), Some(&first)) = (&t.person, missing_ids.first()) {
            let id = &t.columns[p.id.unwrap_or_default()].name;
            let lines: Vec<String> = missing_ids.iter().take(10).map(u64::to_string).collect();
            let more = if missing_ids.len() > 10 { ", ..." } else { "" };
            warnings.push(format!(
                "{} rows have no {id} (line{} {}{more}): they were matched by name, email and phone, so a change \
                 of those details will make a new {}; send {id} to keep each one the same person",
                missing_ids.len(),
                if first == missing_ids[missing_ids.len() - 1] { "" } else { "s" },
                lines.join(", "),
                p.role
            ));
        }
        match staged {
            Ok(Staged::Rows { encoding, .. }) => Ok(Staged::Rows { encoding, absent, swallowed }),
            other => other,
        }
    })
}

/// One row, validated and encoded, on its way to the loader.
struct Prepared {
    line: u64,
    /// The key, when every key column holds a valid value.
    key: Option<String>,
    data: String,
    hash: i64,
    valid: bool,
    delete: bool,
    /// (column, value) of each non-empty reference, to check against the database.
    references: Vec<(usize, String)>,
    errors: Vec<RowError>,
    /// The type names people and this row has no id for its person.
    no_person_id: bool,
    /// The person's name (types of people), for errors found while loading.
    name: String,
    /// (line, key) of whole rows a value of this row holds (a stray quote's swallowed rows).
    swallowed: Vec<(u64, String)>,
}

enum Batch {
    Rows {
        rows: Vec<Prepared>,
        bytes_read: u64,
    },
    /// The end of the file, with what lenient reading noted on the way.
    Done {
        encoding: Option<String>,
        notes: Notes,
    },
    Rejected {
        message: String,
        encoding: Option<String>,
        problem: RowError,
    },
}

const BATCH: usize = 1024;

fn prepare_rows<R: std::io::Read>(
    t: &ImportType,
    header: &HeaderMap,
    strictness: Strictness,
    mut csv: CsvReader<R>,
    mut notes: Notes,
    tx: std::sync::mpsc::SyncSender<Batch>,
) {
    let enc = |csv: &CsvReader<R>| csv.encoding().map(|e| e.to_string());
    let delimiter = csv.delimiter().unwrap_or(Delimiter::Comma).byte();
    let mut rec = Record::default();
    let mut values = Values::default();
    let mut batch = Vec::with_capacity(BATCH);
    let mut rows = 0u64;
    let file = header.file().to_owned();
    loop {
        match csv.read(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let problem = file_problem(csv_line(&e), "unreadable", e.to_string());
                let _ = tx.send(Batch::Rejected { message: csv_message(&e), encoding: enc(&csv), problem });
                return;
            }
        }
        if !strictness.is_strict() && rec.iter().all(|f| f.trim().is_empty()) {
            // A spreadsheet's empty row (`,,,`): nothing to read, nothing to reject.
            notes.other(&file, "empty_row", "empty rows (every field blank) skipped");
            continue;
        }
        rows += 1;
        if rows > t.limits.max_rows {
            let message =
                format!("the file has more than {} rows, the limit for type {}", t.limits.max_rows, t.name);
            let problem = file_problem(rec.line, "too_many_rows", message.clone());
            let _ = tx.send(Batch::Rejected { message, encoding: enc(&csv), problem });
            return;
        }
        let mut errors = Vec::new();
        let valid = header.check(t, &rec, &mut values, &mut errors, &mut notes);
        if !errors.is_empty() {
            let (key, name) = header.describe(t, &rec);
            for e in &mut errors {
                e.key.clone_from(&key);
                e.name.clone_from(&name);
            }
        }
        let key = key_of(t, &values, &errors);
        let name = if t.person.is_some() { header.describe(t, &rec).1 } else { String::new() };
        let swallowed = if rec.iter().any(|f| f.contains('\n')) {
            header.swallowed_keys(t, &rec, delimiter)
        } else {
            Vec::new()
        };
        let no_person_id =
            valid && t.person.as_ref().and_then(|p| p.id).is_some_and(|c| values.get(c).is_empty());
        let references = if valid {
            t.references
                .iter()
                .map(|r| (r.column, values.get(r.column)))
                .filter(|(_, v)| !v.is_empty())
                .map(|(c, v)| (c, v.to_owned()))
                .collect()
        } else {
            Vec::new()
        };
        let delete = valid
            && t.status
                .as_ref()
                .is_some_and(|(col, deleted)| deleted.contains(&values.get(*col).to_lowercase()));
        let (data, hash) = if key.is_some() {
            let mut data = String::with_capacity(rec_capacity(&values));
            encode_values(values.iter(), &mut data);
            let hash = content_hash(&data);
            (data, hash)
        } else {
            (String::new(), 0)
        };
        batch.push(Prepared {
            line: rec.line,
            key,
            data,
            hash,
            valid,
            delete,
            references,
            errors,
            no_person_id,
            name,
            swallowed,
        });
        if batch.len() == BATCH {
            let rows = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            if tx.send(Batch::Rows { rows, bytes_read: csv.bytes_read() }).is_err() {
                return;
            }
        }
    }
    if !batch.is_empty() && tx.send(Batch::Rows { rows: batch, bytes_read: csv.bytes_read() }).is_err() {
        return;
    }
    // A tab file's quotes that nothing closed on their line, read as text (a nickname typed
    // `"Bo`): said, or refused when reading is strict.
    let quotes = csv.quotes_as_text();
    if let Some(&first) = quotes.lines.first() {
        let mut lines: Vec<String> = quotes.lines.iter().map(u64::to_string).collect();
        if quotes.count > lines.len() as u64 {
            lines.push(format!("{} more", quotes.count - lines.len() as u64));
        }
        let (s, lines) = if quotes.count == 1 { ("", lines.join("")) } else { ("s", lines.join(", ")) };
        if strictness.is_strict() {
            let reason = format!(
                "a field begins with a \" that nothing closes on its line (line{s} {lines}); fix the quote, or set \
                 strictness=lenient, which reads it as text, as tab files are not quoted"
            );
            let message = format!("the file was rejected: line {first}: {reason}");
            let problem = file_problem(first, "quote_as_text", reason);
            let _ = tx.send(Batch::Rejected { message, encoding: enc(&csv), problem });
            return;
        }
        notes.once(
            &file,
            "quote_as_text",
            format!(
                "line{s} {lines}: a field begins with a \" that nothing closes on its line: read as text, with \
                 the quote (tab files are not quoted)"
            ),
        );
    }
    let _ = tx.send(Batch::Done { encoding: enc(&csv), notes });
}

fn rec_capacity(values: &Values) -> usize {
    values.iter().map(|v| v.len() + 3).sum::<usize>() + 2
}

#[allow(clippy::too_many_arguments)]
fn load_rows(
    req: &ImportRequest<'_>,
    check_references: bool,
    rx: std::sync::mpsc::Receiver<Batch>,
    loader: &mut dyn sluice_store::Loading,
    report: &mut Report,
    errors: &mut Vec<RowError>,
    warnings: &mut Vec<String>,
    counts: &mut Counts,
    missing_person_ids: &mut Vec<u64>,
    swallowed: &mut Vec<(u64, String)>,
) -> Result<Staged, ImportError> {
    let t = req.import_type;
    let mut loadable = 0u64;
    for batch in rx {
        let (rows, bytes_read) = match batch {
            Batch::Rows { rows, bytes_read } => (rows, bytes_read),
            Batch::Rejected { message, encoding, problem } => {
                return Ok(Staged::Rejected { message, encoding, problems: vec![problem] });
            }
            Batch::Done { encoding, notes } => {
                warnings.extend(notes.warnings());
                if counts.rows == 0 {
                    let message = "the file has a header but no rows; nothing was changed".into();
                    return Ok(Staged::Rejected { message, encoding, problems: Vec::new() });
                }
                if loadable == 0 {
                    let message = format!(
                        "every one of the {} rows was rejected; nothing was changed (see the errors)",
                        counts.rows
                    );
                    return Ok(Staged::Rejected { message, encoding, problems: Vec::new() });
                }
                return Ok(Staged::Rows { encoding, absent: Vec::new(), swallowed: Vec::new() });
            }
        };
        for p in rows {
            counts.rows += 1;
            if counts.rows.is_multiple_of(50_000)
                && let Some(progress) = req.progress
            {
                progress(bytes_read, counts.rows);
            }
            let mut row_errors = p.errors;
            if p.valid && check_references {
                for (column, value) in &p.references {
                    let to_type =
                        &t.references.iter().find(|r| r.column == *column).map_or("", |r| r.to_type.as_str());
                    if !loader.reference_exists(to_type, value)? {
                        row_errors.push(RowError {
                            line: p.line,
                            column: t.columns[*column].name.clone(),
                            code: "unknown_reference",
                            reason: format!("no {to_type} record has this key; import {to_type} first"),
                            value: value.clone(),
                            ..Default::default()
                        });
                    }
                }
            }
            let ok = row_errors.is_empty();
            if ok && p.no_person_id {
                missing_person_ids.push(p.line);
            }
            let room = MAX_SWALLOWED.saturating_sub(swallowed.len());
            swallowed.extend(p.swallowed.iter().take(room).cloned());
            if let Some(key) = &p.key {
                let kind = if !ok {
                    StageKind::Keep
                } else if p.delete {
                    StageKind::Delete
                } else {
                    StageKind::Load
                };
                if let Some(first) = loader.stage(p.line, key, &p.data, p.hash, kind)? {
                    row_errors.push(RowError {
                        line: p.line,
                        column: t
                            .key
                            .iter()
                            .map(|&k| t.columns[k].name.as_str())
                            .collect::<Vec<_>>()
                            .join("+"),
                        code: "duplicate_key",
                        reason: format!("the same key as line {first}; each record may appear once"),
                        value: key.replace('\u{1f}', "+"),
                        ..Default::default()
                    });
                } else if ok {
                    loadable += 1;
                }
            }
            if !row_errors.is_empty() {
                counts.rejected += 1;
                let key = p.key.as_deref().unwrap_or("").replace('\u{1f}', "+");
                for e in row_errors.iter_mut().filter(|e| e.key.is_empty()) {
                    e.key.clone_from(&key);
                    e.name.clone_from(&p.name);
                }
                for e in &row_errors {
                    report.add(e).map_err(io("writing the error report"))?;
                    if errors.len() < sluice_store::STORED_ERRORS {
                        errors.push(e.clone());
                    }
                }
            }
        }
    }
    Err(ImportError::Io {
        what: "reading the file".into(),
        source: std::io::Error::other("the row reader stopped unexpectedly"),
    })
}

pub(crate) fn csv_message(e: &CsvError) -> String {
    format!("the file cannot be read as CSV: {e}; nothing was changed")
}

/// The line a reading error is on.
pub(crate) fn csv_line(e: &CsvError) -> u64 {
    match e {
        CsvError::UnclosedQuote { line }
        | CsvError::SwallowedRows { line, .. }
        | CsvError::TextAfterQuote { line }
        | CsvError::RowTooLong { line, .. }
        | CsvError::TooManyFields { line, .. }
        | CsvError::Decode { line, .. } => *line,
        CsvError::Io(_) => 0,
    }
}

/// Key columns joined by U+001F (which no valid value contains).
fn key_of(t: &ImportType, values: &Values, errors: &[RowError]) -> Option<String> {
    let mut key = String::new();
    for (i, &k) in t.key.iter().enumerate() {
        let v = values.get(k);
        if (v.is_empty() && t.columns[k].required) || errors.iter().any(|e| e.column == t.columns[k].name) {
            return None;
        }
        if i > 0 {
            key.push('\u{1f}');
        }
        match &t.person {
            // A person's missing source id: their contact details tell records apart instead.
            Some(p) if v.is_empty() && p.id == Some(k) => {
                // A row that cannot be read has no contact details to go by.
                if errors.iter().any(|e| e.code == "field_count") {
                    return None;
                }
                let at = |c: Option<usize>| c.map_or("", |c| values.get(c));
                let contact =
                    Contact::new(values.get(p.first_name), values.get(p.last_name), at(p.email), at(p.phone));
                key.push_str(&contact.key());
                continue;
            }
            _ => {}
        }
        key.push_str(v);
    }
    Some(key)
}

pub(crate) use sluice_core::import::{content_hash, encode_values};

/// Where a held import's file (a CSV file or a package) is kept.
/// An approval whose re-run fails keeps the held file: it is still the only copy of what was
/// sent, and stays downloadable.
pub(crate) fn kept_on_failure(
    req: &ImportRequest<'_>,
    ctx: &ImportContext<'_>,
    id: i64,
    status: ImportStatus,
    held_file: Option<PathBuf>,
) -> Option<PathBuf> {
    let held = held_path(ctx.held_dir, id);
    if status == ImportStatus::Failed && req.approved && req.file == held { Some(held) } else { held_file }
}

pub fn held_path(held_dir: &Path, id: i64) -> PathBuf {
    held_dir.join(format!("{id}.held"))
}

/// The error report's file name; a dry run's is unique to the run and removed after it.
pub(crate) fn report_name(id: i64, dry_run: bool) -> String {
    if dry_run {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        format!("dry-run-{}-{nanos}.errors.csv", std::process::id())
    } else {
        format!("{id}.errors.csv")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report put in /errors ahead of a commit that then fails is taken back, and the one
    /// it replaced (a held import re-run by its approval) is there again; kept, it stays.
    #[test]
    fn a_report_published_before_a_failed_commit_is_taken_back() {
        let dir = tempfile::tempdir().unwrap();
        let (errors, reports) = (dir.path().join("errors"), dir.path().join("reports"));
        std::fs::create_dir_all(&errors).unwrap();
        std::fs::create_dir_all(&reports).unwrap();
        let mut ctx = ImportContext::offline(&reports);
        ctx.errors_dir = Some(errors.clone());
        let report = reports.join("7.errors.csv");
        std::fs::write(&report, "new").unwrap();
        let shown = errors.join("00000007-students-errors.csv");
        std::fs::write(&shown, "held").unwrap();
        let published = publish_report(&ctx, 7, "students.csv", Some(&report));
        assert_eq!(std::fs::read_to_string(&shown).unwrap(), "new");
        drop(published);
        assert_eq!(std::fs::read_to_string(&shown).unwrap(), "held", "the earlier report is back");
        publish_report(&ctx, 7, "students.csv", Some(&report)).keep();
        assert_eq!(std::fs::read_to_string(&shown).unwrap(), "new");
        assert_eq!(std::fs::read_dir(&reports).unwrap().count(), 1, "nothing set aside is left");
        publish_report(&ctx, 8, "staff.csv", Some(&report)).keep();
        drop(publish_report(&ctx, 9, "staff.csv", Some(&report)));
        assert!(errors.join("00000008-staff-errors.csv").exists());
        assert!(
            !errors.join("00000009-staff-errors.csv").exists(),
            "no report of an import that did not commit"
        );
    }

    #[test]
    fn values_encode_as_json() {
        let mut s = String::new();
        encode_values(["a\"b", "line\nbreak", "é"].into_iter(), &mut s);
        let parsed: Vec<String> = serde_json::from_str(&s).unwrap();
        assert_eq!(parsed, ["a\"b", "line\nbreak", "é"]);
    }
}
