//! A zip of photos: one import. The zip is checked before anything is inflated (the checks a
//! OneRoster package gets, with folders allowed), each image is matched to a record of the
//! target type by its file name or by a mapping file in the zip (`map.csv`, PowerSchool's
//! tab-delimited `Student_Number<TAB>file.jpg`, a PSPA `index.txt`), checked by its header
//! (JPEG or PNG, size within the limits; no pixel decoded), stored once by SHA-256 in the
//! tenant's image store (`DATA_DIR/photos/TENANT/`), and all photos are applied in one
//! transaction. An image that matches nothing, or is not a photo, is a row error in the usual
//! report; an image no record shows any more is removed.

use crate::oneroster::{Problem, ZipKind, ZipLimits, check_entries};
use crate::report::Report;
use crate::run::{ImportContext, ImportError, ImportRequest, io};
use sha2::{Digest, Sha256};
use sluice_core::import::PhotoRules;
use sluice_core::import::RowError;
use sluice_core::photo::{self, ImageFormat, Photo, image_store};
use sluice_store::roles::*;
use sluice_store::{Backend, Counts, ImportRecord, ImportStatus, Outcome, StoreError};
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Warnings one photo import keeps (a readme per folder of a big zip would be thousands).
const MAX_WARNINGS: usize = 20;

/// The largest mapping file read (a line per photo).
const MAX_MAPPING_BYTES: u64 = 16 << 20;

/// One image of the zip that is to become a photo.
struct Candidate {
    /// Where it is reported: the entry's position in the zip (1-based), or the mapping
    /// file's line.
    line: u64,
    entry: usize,
    name: String,
    /// The record key its file name or its mapping line gives.
    key: String,
    /// From a mapping file's line (else from the image's own name).
    mapped: bool,
}

fn error(line: u64, key: &str, column: &str, code: &'static str, reason: String, value: &str) -> RowError {
    RowError {
        line,
        // A key of several columns as the reports show one: joined by `+`.
        key: key.replace('\u{1f}', "+"),
        name: String::new(),
        column: column.to_owned(),
        code,
        reason,
        value: value.to_owned(),
    }
}

/// Imports a zip of photos (a `photos` type's upload, or a zip in the folder of a type that
/// takes photos of its records).
pub(crate) fn import_photos(
    store: &dyn Backend,
    req: &ImportRequest<'_>,
    ctx: &ImportContext<'_>,
    rules: &PhotoRules,
) -> Result<ImportRecord, ImportError> {
    let id = req.import_id(store)?;
    let images = image_store(ctx.photos_dir, req.tenant);
    std::fs::create_dir_all(&images).map_err(io(format!("creating {}", images.display())))?;
    // Imports of one tenant's photos take turns (of any type: they share the image store),
    // across processes too (the CLI beside the server), so that one never removes an image
    // another has just written and not yet applied.
    let _turn = lock(&images).map_err(io(format!("locking {}", images.display())))?;
    let mut report = Report::new(ctx.reports_dir.join(crate::run::report_name(id, false)));
    let mut run = PhotoRun {
        store,
        req,
        ctx,
        rules,
        images: &images,
        errors: Vec::new(),
        rejected: 0,
        warnings: Vec::new(),
        more_warnings: 0,
        report: &mut report,
    };
    let read = run.read()?;
    let PhotoRun { errors, mut warnings, more_warnings, rejected, .. } = run;
    if more_warnings > 0 {
        warnings.push(format!("... and {more_warnings} more like these"));
    }
    let read = match read {
        Err(problems) => {
            let message = problems.first().map(|p| format!("{}: {}", p.file, p.reason));
            let mut all: Vec<RowError> =
                problems.into_iter().map(|p| error(p.line, "", &p.file, p.code, p.reason, "")).collect();
            // What rejected the zip whole is in its report too, as a CSV's is (it used to be
            // in the import's errors only: no report in /errors).
            for e in &all {
                report.add(e).map_err(io("writing the error report"))?;
            }
            let report_file = report.finish().map_err(io("writing the error report"))?;
            let errors_kept = errors.len();
            all.extend(errors);
            let counts =
                Counts { rejected: (all.len() - errors_kept) as u64 + rejected, ..Counts::default() };
            let ended = Ended {
                status: ImportStatus::Failed,
                message,
                counts,
                errors: &all,
                warnings: &warnings,
                report_file,
            };
            let published = crate::run::publish_report(ctx, id, req.file_name, ended.report_file.as_deref());
            let finished = finish(store, req, id, ended, &[], &images, &[])?;
            published.keep();
            return Ok(finished);
        }
        Ok(found) => found,
    };
    let report_file = report.finish().map_err(io("writing the error report"))?;
    let Found { counts, photos, written } = read;
    let status = match (photos.len(), errors.is_empty()) {
        // A zip without one image (the wrong zip, an export that went wrong) is no import.
        _ if counts.rows == 0 => ImportStatus::Failed,
        (_, true) => ImportStatus::Complete,
        (0, false) if counts.unchanged == 0 => ImportStatus::Failed,
        _ => ImportStatus::Incomplete,
    };
    let message = match status {
        ImportStatus::Failed if counts.rows == 0 => {
            Some("the zip holds no image (JPEG or PNG) to match to a record; nothing was changed".to_owned())
        }
        ImportStatus::Failed => Some(format!(
            "no photo could be matched and stored ({} rejected; see the report)",
            counts.rejected
        )),
        _ => None,
    };
    let ended = Ended { status, message, counts, errors: &errors, warnings: &warnings, report_file };
    let published = crate::run::publish_report(ctx, id, req.file_name, ended.report_file.as_deref());
    let finished = finish(store, req, id, ended, &photos, &images, &written)?;
    published.keep();
    Ok(finished)
}

/// How a photo import ended.
struct Ended<'e> {
    status: ImportStatus,
    message: Option<String>,
    counts: Counts,
    errors: &'e [RowError],
    warnings: &'e [String],
    report_file: Option<PathBuf>,
}

fn finish(
    store: &dyn Backend,
    req: &ImportRequest<'_>,
    id: i64,
    ended: Ended<'_>,
    photos: &[Photo],
    images: &Path,
    written: &[String],
) -> Result<ImportRecord, ImportError> {
    let target = req.import_type.photos.as_ref().map_or(req.import_type.name.as_str(), |r| r.target.as_str());
    let stored: Vec<RowError> = ended.errors.iter().take(sluice_store::STORED_ERRORS).cloned().collect();
    // The photos are of the target's records: an after-import photo export of it answers.
    let of = [target.to_owned()];
    let outcome = Outcome {
        record_types: Some(&of),
        message: ended.message,
        errors: &stored,
        warnings: ended.warnings,
        report_file: ended.report_file.as_ref().map(|p| p.display().to_string()),
        upload_id: req.upload_id,
        ..Outcome::new(ended.status, ended.counts, None)
    };
    let applied = if ended.status == ImportStatus::Failed { &[][..] } else { photos };
    let gone = store.apply_photos(req.tenant, target, id, applied, &outcome);
    // Images written for this import that no photo shows (a failed import's, or one the
    // transaction refused), and images replaced: removed.
    let mut orphans: Vec<String> = gone.as_ref().map(|g| g.clone()).unwrap_or_default();
    orphans.extend(written.iter().cloned());
    for sha in orphans {
        if !store.image_in_use(req.tenant, &sha)? {
            for format in [ImageFormat::Jpeg, ImageFormat::Png] {
                let _ = std::fs::remove_file(images.join(format!("{sha}.{}", format.ext())));
            }
        }
    }
    gone?;
    sweep(store, req.tenant, images)?;
    Ok(store.import(id)?.ok_or(StoreError::Corrupt(format!("import {id} vanished")))?)
}

/// Removes the images no photo of the tenant shows (their records were deleted by other
/// imports since), and temporary files a killed import left. Runs with the tenant's image
/// store locked, at the end of each photo import.
pub(crate) fn sweep(store: &dyn Photos, tenant: &str, images: &Path) -> Result<(), ImportError> {
    let entries = std::fs::read_dir(images).map_err(io(format!("listing {}", images.display())))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((sha, ext)) = name.split_once('.') else { continue };
        let image = ImageFormat::from_ext(ext).is_some() && sha.len() == 64;
        let temporary = ext.contains("tmp-");
        if (image && !store.image_in_use(tenant, sha)?) || temporary {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

struct Found {
    counts: Counts,
    photos: Vec<Photo>,
    /// Images this import added to the store (removed again should it not apply).
    written: Vec<String>,
}

struct PhotoRun<'r, 'a> {
    store: &'r dyn Photos,
    req: &'r ImportRequest<'a>,
    ctx: &'r ImportContext<'a>,
    rules: &'r PhotoRules,
    images: &'r Path,
    errors: Vec<RowError>,
    /// Every rejection, the report's lines (`errors` keeps the first few).
    rejected: u64,
    warnings: Vec<String>,
    more_warnings: usize,
    report: &'r mut Report,
}

impl PhotoRun<'_, '_> {
    /// A rejected image or mapping line: written to the report; the first
    /// [`sluice_store::STORED_ERRORS`] are kept for the import's history, the rest counted.
    fn reject(&mut self, e: RowError) -> Result<(), ImportError> {
        self.report.add(&e).map_err(io("writing the error report"))?;
        self.rejected += 1;
        if self.errors.len() < sluice_store::STORED_ERRORS {
            self.errors.push(e);
        }
        Ok(())
    }

    /// A warning; past [`MAX_WARNINGS`] they are counted in the last one.
    fn warn(&mut self, w: String) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(w);
        } else {
            self.more_warnings += 1;
        }
    }

    fn read(&mut self) -> Result<Result<Found, Vec<Problem>>, ImportError> {
        let (req, rules) = (self.req, self.rules);
        let file = File::open(req.file).map_err(io(format!("reading {}", req.file_name)))?;
        let length = file.metadata().map_err(io(format!("reading {}", req.file_name)))?.len();
        let problem =
            |code, reason: String| Ok(Err(vec![crate::oneroster::problem(req.file_name, code, reason)]));
        if length > rules.max_zip_bytes {
            return problem(
                "too_large",
                format!(
                    "the zip is {length} bytes; photos are taken in zips of at most {} bytes (photos.max_zip_bytes): send several smaller zips",
                    rules.max_zip_bytes
                ),
            );
        }
        let raw = file.try_clone().map_err(io(format!("reading {}", req.file_name)))?;
        let mut zip = match zip::ZipArchive::new(std::io::BufReader::new(file)) {
            Ok(z) => z,
            Err(e) => {
                return problem(
                    "not_a_zip",
                    format!("not a readable zip file ({e}); photos are sent as a .zip of JPEG or PNG files"),
                );
            }
        };
        let limits = ZipLimits { max_entries: rules.max_entries, ..ZipLimits::default() };
        let entries = match check_entries(&mut zip, &raw, &limits, length, ZipKind::Photos) {
            Ok(e) => e,
            Err(problems) => return Ok(Err(problems)),
        };
        // What is in the zip: images, mapping files, and anything else (reported).
        let mut images: Vec<(String, usize)> = Vec::new();
        let mut mappings: Vec<(String, usize)> = Vec::new();
        for (position, (name, index)) in entries.iter().enumerate() {
            if photo::has_image_extension(name) {
                images.push((name.clone(), *index));
            } else if photo::is_mapping_name(name) {
                mappings.push((name.clone(), *index));
            } else if photo::is_readme(name) {
                // A photographer's disc has one; it says nothing about the records.
                self.warn(format!("{name} was not read (a readme, not a photo or a mapping file)"));
            } else {
                self.reject(error(
                    position as u64 + 1,
                    "",
                    name,
                    "not_a_photo",
                    "is neither a photo (.jpg, .jpeg or .png) nor a mapping file (map.csv, index.txt); it was skipped".into(),
                    name,
                ))?;
            }
        }
        // An entry's position in the zip (1-based), by its index: one map, looked up per image.
        let positions: HashMap<usize, u64> =
            entries.iter().enumerate().map(|(position, (_, index))| (*index, position as u64 + 1)).collect();
        let position_of = |index: usize| positions.get(&index).copied().unwrap_or(0);
        // Two images with the same file name in different folders name the same record.
        let mut by_base: HashMap<String, Vec<usize>> = HashMap::new();
        for (n, (name, _)) in images.iter().enumerate() {
            by_base.entry(photo::base_name(name).to_lowercase()).or_default().push(n);
        }
        let mapping = match mappings.len() {
            0 => None,
            _ => {
                // map.csv first, then a PSPA index.txt, then the only other one.
                let pick = mappings
                    .iter()
                    .position(|(n, _)| photo::base_name(n).eq_ignore_ascii_case("map.csv"))
                    .or_else(|| {
                        mappings
                            .iter()
                            .position(|(n, _)| photo::base_name(n).eq_ignore_ascii_case("index.txt"))
                    })
                    .or((mappings.len() == 1).then_some(0));
                let Some(pick) = pick else {
                    let names: Vec<&str> = mappings.iter().map(|(n, _)| n.as_str()).collect();
                    return problem(
                        "several_mappings",
                        format!(
                            "the zip holds several mapping files ({}); keep one (map.csv with key and file columns, or index.txt)",
                            names.join(", ")
                        ),
                    );
                };
                Some(mappings.swap_remove(pick))
            }
        };
        let mut candidates: Vec<Candidate> = Vec::new();
        match &mapping {
            None => {
                for (name, index) in &images {
                    let base = photo::base_name(name).to_lowercase();
                    if by_base.get(&base).is_some_and(|v| v.len() > 1) {
                        self.reject(error(
                            position_of(*index),
                            "",
                            name,
                            "duplicate_photo",
                            "another image in the zip has the same file name, so both name the same record; keep one".into(),
                            name,
                        ))?;
                        continue;
                    }
                    // A key of several columns as sluice's photo export names it (`77+North.jpg`):
                    // as many parts as the key has columns name that record whole.
                    let key = photo::key_of_file_name(name);
                    let columns = self.target_type().map_or(1, |t| t.key.len());
                    let key = match key.split('+').collect::<Vec<_>>() {
                        parts if columns > 1 && parts.len() == columns => parts.join("\u{1f}"),
                        _ => key.to_owned(),
                    };
                    candidates.push(Candidate {
                        line: position_of(*index),
                        entry: *index,
                        name: name.clone(),
                        key,
                        mapped: false,
                    });
                }
            }
            Some((map_name, map_index)) => {
                let mut bytes = Vec::new();
                let read = zip
                    .by_index(*map_index)
                    .map_err(|e| std::io::Error::other(e.to_string()))
                    .and_then(|f| f.take(MAX_MAPPING_BYTES + 1).read_to_end(&mut bytes));
                if let Err(e) = read {
                    return problem("unreadable", format!("{map_name} cannot be read: {e}"));
                }
                if bytes.len() as u64 > MAX_MAPPING_BYTES {
                    return problem(
                        "too_large",
                        format!("{map_name} is larger than 16 MiB; a mapping file has a line per photo"),
                    );
                }
                let target = self.target_type();
                let key_names: Vec<&str> = target
                    .map(|t| t.key.iter().map(|k| t.columns[*k].name.as_str()).collect())
                    .unwrap_or_default();
                let m = match photo::read_mapping(&bytes, &key_names) {
                    Ok(m) => m,
                    Err(why) => return problem("bad_mapping", format!("{map_name} {why}")),
                };
                // Without a header naming it, the key column is the one whose values match the
                // most records.
                let key_column = match m.key_column {
                    Some(c) => c,
                    None => self.best_key_column(&m)?,
                };
                let mut listed = vec![false; images.len()];
                for row in &m.rows {
                    let file = row.cells.get(m.file_column).map(String::as_str).unwrap_or("");
                    // A key of several columns, each named by the header, is their cells joined as
                    // the store joins them.
                    let joined;
                    let key = if m.key_columns.is_empty() {
                        row.cells.get(key_column).map(String::as_str).unwrap_or("")
                    } else {
                        let parts: Vec<&str> = m
                            .key_columns
                            .iter()
                            .map(|c| row.cells.get(*c).map(String::as_str).unwrap_or(""))
                            .collect();
                        joined = parts.join("\u{1f}");
                        joined.as_str()
                    };
                    if file.is_empty() && key.is_empty() {
                        continue;
                    }
                    let at = by_base.get(&photo::base_name(file).to_lowercase());
                    match at.map(Vec::as_slice) {
                        None | Some([]) => {
                            self.reject(error(
                                row.line,
                                key,
                                map_name,
                                "missing_photo",
                                format!("names {file:?}, which is not in the zip"),
                                file,
                            ))?;
                        }
                        Some([n]) if !listed[*n] => {
                            listed[*n] = true;
                            if key.is_empty() {
                                self.reject(error(
                                    row.line,
                                    "",
                                    map_name,
                                    "missing_key",
                                    format!("gives no record key for {file:?}"),
                                    file,
                                ))?;
                                continue;
                            }
                            candidates.push(Candidate {
                                line: row.line,
                                entry: images[*n].1,
                                name: images[*n].0.clone(),
                                key: key.to_owned(),
                                mapped: true,
                            });
                        }
                        Some([_]) => {
                            self.reject(error(
                                row.line,
                                key,
                                map_name,
                                "duplicate_photo",
                                format!("names {file:?} again; an image belongs to one record"),
                                file,
                            ))?;
                        }
                        Some(_) => {
                            self.reject(error(
                                row.line,
                                key,
                                map_name,
                                "duplicate_photo",
                                format!("names {file:?}, and the zip holds several images of that name in different folders; keep one"),
                                file,
                            ))?;
                        }
                    }
                }
                for (n, (name, index)) in images.iter().enumerate() {
                    if !listed[n] {
                        self.reject(error(
                            position_of(*index),
                            photo::key_of_file_name(name),
                            name,
                            "not_mapped",
                            format!(
                                "is not listed in {map_name}, so it belongs to no record; add a line for it"
                            ),
                            name,
                        ))?;
                    }
                }
            }
        }
        self.store_photos(&mut zip, candidates)
    }

    fn target_type(&self) -> Option<&sluice_core::import::ImportType> {
        // The request's own type when it takes photos of its records; else the ingest's types
        // are not at hand here, so the key names come from the target named in the rules.
        if self.req.import_type.name == self.rules.target {
            Some(self.req.import_type)
        } else {
            self.ctx.photo_target
        }
    }

    /// The column of a header-less mapping file whose values match the most records.
    fn best_key_column(&self, m: &photo::Mapping) -> Result<usize, ImportError> {
        let matching = self.rules.matching;
        let mut by_value: HashMap<String, Vec<usize>> = HashMap::new();
        for row in &m.rows {
            for (c, v) in row.cells.iter().enumerate() {
                if c != m.file_column && !v.is_empty() {
                    let list = by_value.entry(matching.normal(v)).or_default();
                    if !list.contains(&c) {
                        list.push(c);
                    }
                }
            }
        }
        let mut hits = vec![0u64; m.columns];
        if self.ctx.check_references {
            self.store.record_keys(self.req.tenant, &self.rules.target, &mut |key| {
                let first = key.split('\u{1f}').next().unwrap_or(key);
                if let Some(cols) = by_value.get(&matching.normal(first)) {
                    for c in cols {
                        hits[*c] += 1;
                    }
                }
            })?;
        }
        let first_other = (0..m.columns).find(|c| *c != m.file_column).unwrap_or(0);
        Ok(hits
            .iter()
            .enumerate()
            .filter(|(c, n)| *c != m.file_column && **n > 0)
            .max_by_key(|(c, n)| (**n, std::cmp::Reverse(*c)))
            .map_or(first_other, |(c, _)| c))
    }

    /// Matches each candidate to a record, checks and stores its image.
    fn store_photos(
        &mut self,
        zip: &mut zip::ZipArchive<std::io::BufReader<File>>,
        candidates: Vec<Candidate>,
    ) -> Result<Result<Found, Vec<Problem>>, ImportError> {
        let (rules, req) = (self.rules, self.req);
        let matching = rules.matching;
        // The records each candidate's key may name: one pass over the target's keys.
        let mut wanted: HashMap<String, Vec<String>> = HashMap::new();
        for c in &candidates {
            wanted.entry(matching.normal(c.key.split('\u{1f}').next().unwrap_or(&c.key))).or_default();
            // A name split at `+` may be a first value holding one (`a+b@x.org.jpg`): asked too.
            if !c.mapped && c.key.contains('\u{1f}') {
                wanted.entry(matching.normal(photo::key_of_file_name(&c.name))).or_default();
            }
        }
        if self.ctx.check_references {
            self.store.record_keys(req.tenant, &rules.target, &mut |key| {
                let first = key.split('\u{1f}').next().unwrap_or(key);
                if let Some(found) = wanted.get_mut(&matching.normal(first))
                    && found.len() < 8
                {
                    found.push(key.to_owned());
                }
            })?;
        }
        let mut counts = Counts::default();
        let mut photos: Vec<Photo> = Vec::new();
        let mut written: Vec<String> = Vec::new();
        let mut taken: HashMap<String, u64> = HashMap::new();
        for c in candidates {
            counts.rows += 1;
            let first = c.key.split('\u{1f}').next().unwrap_or(&c.key);
            let found = wanted.get(&matching.normal(first)).map(Vec::as_slice).unwrap_or(&[]);
            // A whole key of several columns (from a mapping file) names its record alone.
            let whole: Vec<String>;
            let (found, c) = if c.key.contains('\u{1f}') {
                let parts = |k: &str| k.split('\u{1f}').map(|p| matching.normal(p)).collect::<Vec<_>>();
                whole = found.iter().filter(|k| parts(k) == parts(&c.key)).cloned().collect();
                let plain = photo::key_of_file_name(&c.name);
                match wanted.get(&matching.normal(plain)) {
                    // No record has those values: the name is a first value with a `+` in it.
                    Some(by_first) if whole.is_empty() && !c.mapped && !by_first.is_empty() => {
                        (by_first.as_slice(), Candidate { key: plain.to_owned(), ..c })
                    }
                    _ => (whole.as_slice(), c),
                }
            } else {
                (found, c)
            };
            // The exact key wins over keys that differ only in case or leading zeros.
            let exact: Vec<&String> = found
                .iter()
                .filter(|k| **k == c.key || k.split('\u{1f}').next() == Some(c.key.as_str()))
                .collect();
            let key = match (exact.as_slice(), found) {
                ([one], _) => (*one).clone(),
                ([], [one]) => one.clone(),
                _ if !self.ctx.check_references => c.key.clone(),
                (_, []) => {
                    self.reject(error(
                        c.line,
                        &c.key,
                        &c.name,
                        "no_such_record",
                        if c.mapped {
                            format!(
                                "no {} record has the key {:?} that the mapping file gives it",
                                rules.target,
                                c.key.replace('\u{1f}', "+")
                            )
                        } else {
                            format!(
                                "no {} record has the key {:?}; name the image after the record's key (or list it in map.csv)",
                                rules.target, c.key
                            )
                        },
                        &c.name,
                    ))?;
                    continue;
                }
                _ => {
                    let shown: Vec<String> = found.iter().map(|k| k.replace('\u{1f}', "+")).collect();
                    self.reject(error(
                        c.line,
                        &c.key,
                        &c.name,
                        "ambiguous_key",
                        format!(
                            "{:?} matches several {} records ({}); name the image after one of them as the photo \
                             export does (`{}.jpg`), or list it in map.csv",
                            c.key,
                            rules.target,
                            shown.join(", "),
                            shown.first().map_or("", String::as_str)
                        ),
                        &c.name,
                    ))?;
                    continue;
                }
            };
            if let Some(line) = taken.get(&key) {
                self.reject(error(
                    c.line,
                    &key,
                    &c.name,
                    "duplicate_photo",
                    format!("record {key:?} already gets the image of line {line}; an import gives a record one photo"),
                    &c.name,
                ))?;
                continue;
            }
            let image = match self.inflate(zip, &c)? {
                Ok(image) => image,
                Err(e) => {
                    self.reject(e)?;
                    continue;
                }
            };
            let (bytes, info) = image;
            let sha256 = hex(&Sha256::digest(&bytes));
            let photo = Photo {
                key: key.clone(),
                sha256,
                format: info.format,
                width: info.width,
                height: info.height,
                bytes: bytes.len() as u64,
                import_id: 0,
            };
            let path = self.images.join(photo.stored_name());
            if !path.exists() {
                write_image(&path, &bytes).map_err(io(format!("storing {}", c.name)))?;
                written.push(photo.sha256.clone());
            }
            taken.insert(key.clone(), c.line);
            match self.store.photo(req.tenant, &rules.target, &key)? {
                Some(before) if before.sha256 == photo.sha256 => counts.unchanged += 1,
                Some(_) => {
                    counts.updated += 1;
                    photos.push(photo);
                }
                None => {
                    counts.added += 1;
                    photos.push(photo);
                }
            }
        }
        counts.rejected = self.rejected;
        Ok(Ok(Found { counts, photos, written }))
    }

    /// An image's bytes and header, checked against the limits before and while inflating.
    #[allow(clippy::type_complexity)]
    fn inflate(
        &self,
        zip: &mut zip::ZipArchive<std::io::BufReader<File>>,
        c: &Candidate,
    ) -> Result<Result<(Vec<u8>, photo::ImageInfo), RowError>, ImportError> {
        let rules = self.rules;
        let reject = |code, reason: String| Ok(Err(error(c.line, &c.key, &c.name, code, reason, &c.name)));
        let mut entry = match zip.by_index(c.entry) {
            Ok(e) => e,
            Err(e) => return reject("unreadable", format!("cannot be read from the zip: {e}")),
        };
        if entry.size() > rules.max_image_bytes {
            return reject(
                "too_large",
                format!(
                    "is {} bytes; an image may have at most {} (photos.max_image_bytes)",
                    entry.size(),
                    rules.max_image_bytes
                ),
            );
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        if let Err(e) = (&mut entry).take(rules.max_image_bytes + 1).read_to_end(&mut bytes) {
            return reject("unreadable", format!("cannot be inflated: {e}"));
        }
        if bytes.len() as u64 != entry.size() {
            return reject(
                "unreadable",
                "inflates to another size than the zip declares (a damaged or crafted zip)".into(),
            );
        }
        let info = match photo::sniff(&bytes) {
            Ok(i) => i,
            Err(why) => return reject("not_a_photo", why),
        };
        let pixels = u64::from(info.width) * u64::from(info.height);
        if pixels > rules.max_pixels {
            return reject(
                "too_many_pixels",
                format!(
                    "declares {} x {} pixels; an image may have at most {} megapixels (photos.max_megapixels)",
                    info.width,
                    info.height,
                    rules.max_pixels / 1_000_000
                ),
            );
        }
        Ok(Ok((bytes, info)))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes an image under its final name through a private temporary file: a reader never
/// sees half an image, and a crash leaves at most a temporary file.
fn write_image(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// An exclusive lock on the tenant's image store, held until dropped.
pub(crate) fn lock(images: &Path) -> std::io::Result<File> {
    let f =
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(images.join(".lock"))?;
    f.lock()?;
    Ok(f)
}
