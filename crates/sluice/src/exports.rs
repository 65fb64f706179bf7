//! `sluice export`: a tenant's records of one type as a CSV or XLSX file, into the tenant's
//! `/exports` (replaced whole) or to a file of the user's.

use crate::config::Config;
use crate::dirs::DataDirs;
use crate::failure::{Failure, usage};
use anyhow::{Context, anyhow};
use sluice_core::TenantName;
use sluice_export::{Export, Format, write_into};
use sluice_store::roles::*;
use std::path::PathBuf;

/// What `sluice export` was asked for.
pub struct Request {
    pub tenant: TenantName,
    pub type_name: String,
    pub format: String,
    pub columns: Vec<String>,
    pub filters: Vec<String>,
    pub bom: bool,
    pub out: Option<PathBuf>,
}

pub fn export(config: &Config, dirs: &DataDirs, r: Request) -> Result<(), Failure> {
    let tenant = r.tenant;
    let types = crate::imports::load_types(config)?;
    let ty = types
        .get(&r.type_name)
        .ok_or_else(|| usage(anyhow!("no import type {:?}; `sluice types` lists them", r.type_name)))?;
    let format = Format::parse(&r.format).ok_or_else(|| usage(anyhow!("--format is csv or xlsx")))?;
    let export = Export::new(ty, format, &r.columns, &r.filters, r.bom).map_err(|e| usage(e.into()))?;
    let store = dirs.open_store().map_err(usage)?;
    store.require_tenant(&tenant)?;
    let exports = dirs.exports();
    let spool = exports.spool();
    std::fs::create_dir_all(spool).with_context(|| format!("cannot create {}", spool.display()))?;
    match r.out.as_deref() {
        Some(path) if path.as_os_str() == "-" => {
            // Written whole first (an XLSX file is a zip: its end comes last), then copied.
            let temporary = tempfile::Builder::new().prefix(".export-").tempfile_in(spool)?;
            export.write(&store, &tenant, temporary.path())?;
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
            let written = write_into(&export, &store, &tenant, folder, path)?;
            outln!(
                "exported {} records of {} to {} ({} bytes)",
                written.rows,
                ty.name,
                path.display(),
                written.bytes
            );
        }
        None => {
            let done = exports.into_folder(&export, &store, &tenant)?;
            outln!(
                "exported {} records of {} to {} ({} bytes) for tenant {tenant}",
                done.written.rows,
                ty.name,
                done.path,
                done.written.bytes
            );
        }
    }
    Ok(())
}
