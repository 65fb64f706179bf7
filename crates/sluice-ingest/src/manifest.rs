//! Manifest-driven imports (Campus Labs' `.done` protocol, shared/seeds/001), step by step,
//! each step visible in the tenant's folder:
//!
//! 1. `X.done` -> `X.PROCESSING` (one retry, then move on);
//! 2. parse, bounded and without DTDs -> `X.INVALIDSCHEMA` if it fails;
//! 3. every listed file must be in the folder and match its MD5, else the manifest is
//!    rewritten with `INVALID="..."` on those lines as `X.CONTAINSINVALIDFILES`;
//! 4. no import type for a listed file -> `X.IMPORTCONFIGMISSING`;
//! 5. each file is moved to private staging and imported; the manifest is removed, or kept
//!    as `X.COMPLETEDWITHERRORS` when an import had errors to show (report in /errors).
//!
//! The manifest's upload event is consumed only at the end. After a crash it is claimed
//! again and the manifest resumes from `X.PROCESSING`: files already imported (their imports
//! carry the manifest's event id) are skipped, staged ones are imported from staging.
//!
//! Each outcome also appears in the tenant's import history.

use crate::run::ImportError;
use crate::run::ImportRequest;
use crate::worker::Ingest;
use sluice_core::Tenant;
use sluice_core::manifest::{MAX_MANIFEST_BYTES, Manifest, mark_invalid, md5_of};
use sluice_core::{FileName, is_transfer_temp_name};
use sluice_store::ImportStatus;
use std::io::Read;
use std::path::{Path, PathBuf};
use tracing::{info, warn};

impl Ingest {
    pub(crate) fn process_manifest(
        &self,
        tenant: &Tenant,
        folder: &str,
        name: &str,
        upload_id: i64,
    ) -> Result<(), ImportError> {
        let tenant_name = tenant.name.as_str();
        let dir = self.tenants_root().join(tenant_name).join(folder);
        let stem = &name[..name.len() - ".done".len()];
        let processing = dir.join(format!("{stem}.PROCESSING"));
        let resuming = !dir.join(name).exists() && processing.exists();
        let renamed = if resuming {
            Ok(())
        } else {
            std::fs::rename(dir.join(name), &processing)
                .or_else(|_| std::fs::rename(dir.join(name), &processing))
        };
        if let Err(e) = renamed {
            warn!(tenant = tenant_name, manifest = name, "cannot rename the manifest to .PROCESSING: {e}");
            self.store.consume_upload(upload_id, None)?;
            return Ok(());
        }
        let history = |message: String| -> Result<(), ImportError> {
            self.store.record_failed_import(tenant_name, "-", name, "manifest", Some(upload_id), &message)?;
            Ok(())
        };
        let finish_as = |suffix: &str| {
            let _ = std::fs::rename(&processing, dir.join(format!("{stem}.{suffix}")));
        };

        let xml = match read_bounded(&processing) {
            Ok(Some(xml)) => xml,
            Ok(None) => {
                finish_as("INVALIDSCHEMA");
                return history(format!(
                    "INVALIDSCHEMA: the manifest is larger than {MAX_MANIFEST_BYTES} bytes; list the files in a small XML file"
                ));
            }
            Err(e) => return Err(ImportError::Io { what: format!("reading {name}"), source: e }),
        };
        let manifest = match Manifest::parse(&xml) {
            Ok(m) => m,
            Err(e) => {
                finish_as("INVALIDSCHEMA");
                info!(tenant = tenant_name, manifest = name, "manifest rejected: {e}");
                return history(format!("INVALIDSCHEMA: {e}"));
            }
        };

        // Every listed file must be here, complete, and match its checksum (or, resuming,
        // already imported, or staged). A line's name is parsed like an SFTP path in this
        // folder (`FileName`); only a parsed name is ever joined under a directory.
        let staged_path = |file: &FileName| self.staging().join(format!("manifest-{upload_id}-{file}"));
        let mut invalid: Vec<(usize, String)> = Vec::new();
        let mut listed: Vec<&FileName> = Vec::new();
        for (i, entry) in manifest.entries.iter().enumerate() {
            let file = match &entry.file {
                Ok(file) => file,
                Err(e) => {
                    invalid.push((
                        i,
                        format!(
                            "the name {:?} is not allowed: {e}; list a data file in this folder by its name alone",
                            entry.name
                        ),
                    ));
                    continue;
                }
            };
            if file.as_str().eq_ignore_ascii_case(name) || is_transfer_temp_name(file.as_str()) {
                invalid.push((i, "list a data file in this folder by its name alone".into()));
                continue;
            }
            listed.push(file);
            if self.store.manifest_file_import(upload_id, file.as_str())?.is_some() {
                continue;
            }
            let staged = staged_path(file);
            let path = if staged.exists() { staged } else { dir.join(file.as_str()) };
            let is_file = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file());
            if !is_file {
                invalid.push((i, "no such file in this folder (is it still uploading?)".into()));
                continue;
            }
            if let Some(expected) = &entry.md5 {
                let actual = open_no_follow(&path)
                    .and_then(md5_of)
                    .map_err(|e| ImportError::Io { what: format!("reading {file}"), source: e })?;
                if &actual != expected {
                    invalid.push((i, format!("checksum mismatch: the file's MD5 is {actual}")));
                }
            }
        }
        if !invalid.is_empty() {
            // Resumed after a crash: files staged before it go back where the tenant put them.
            for file in &listed {
                let back = dir.join(file.as_str());
                if !back.exists() {
                    let _ = std::fs::rename(staged_path(file), back);
                }
            }
            let marked = mark_invalid(&xml, &invalid).unwrap_or_else(|_| xml.clone());
            let target = dir.join(format!("{stem}.CONTAINSINVALIDFILES"));
            write_atomically(&self.staging().join(format!("manifest-{upload_id}.xml")), &target, &marked)
                .map_err(|e| ImportError::Io { what: format!("writing {}", target.display()), source: e })?;
            let _ = std::fs::remove_file(&processing);
            let names: Vec<String> =
                invalid.iter().map(|(i, why)| format!("{:?} ({why})", manifest.entries[*i].name)).collect();
            return history(format!("CONTAINSINVALIDFILES: nothing was imported: {}", names.join("; ")));
        }

        // An import type for every file, or nothing at all.
        let allowed = self.tenant_types(tenant);
        let mut plan = Vec::new();
        for file in listed {
            match self.types.for_upload(&allowed, folder, file.as_str()) {
                Some(t) => plan.push((t, file)),
                None => {
                    finish_as("IMPORTCONFIGMISSING");
                    return history(format!(
                        "IMPORTCONFIGMISSING: {}",
                        self.no_type_message(&allowed, folder, file.as_str())
                    ));
                }
            }
        }
        // Each listed file becomes an import of its own.
        plan.sort_by_key(|(t, _)| !t.references.is_empty());
        let mut with_errors = false;
        for (t, file) in plan {
            let staged = staged_path(file);
            if let Some(done) = self.store.manifest_file_import(upload_id, file.as_str())? {
                // Imported before a crash (or listed twice).
                with_errors |= done.status != ImportStatus::Complete;
                if staged.exists() {
                    self.retire(&staged, tenant_name, done.id, file.as_str());
                }
                continue;
            }
            if !staged.exists()
                && let Err(e) = std::fs::rename(dir.join(file.as_str()), &staged)
            {
                warn!(tenant = tenant_name, file = file.as_str(), "listed file vanished before import: {e}");
                with_errors = true;
                continue;
            }
            let record = self.run_in_turn(ImportRequest {
                manifest_upload: Some(upload_id),
                ..ImportRequest::new(tenant_name, t, &staged, file.as_str(), "manifest")
            })?;
            with_errors |= record.status != ImportStatus::Complete;
            self.retire(&staged, tenant_name, record.id, file.as_str());
        }
        // Only now is the manifest handled: a crash before this line resumes it.
        self.store.consume_upload(upload_id, None)?;
        if with_errors {
            finish_as("COMPLETEDWITHERRORS");
        } else {
            let _ = std::fs::remove_file(&processing);
        }
        Ok(())
    }
}

/// The file's bytes, or `None` when it is larger than a manifest may be.
fn read_bounded(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    std::fs::File::open(path)?.take(MAX_MANIFEST_BYTES as u64 + 1).read_to_end(&mut buf)?;
    Ok((buf.len() <= MAX_MANIFEST_BYTES).then_some(buf))
}

/// Opens a listed file for reading without following a symlink (the SFTP layer's rule).
fn open_no_follow(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)
}

fn write_atomically(temp: &PathBuf, target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(temp, bytes)?;
    std::fs::rename(temp, target)
}
