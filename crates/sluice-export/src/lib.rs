//! Data out: a tenant's records of one import type as a CSV or XLSX file.
//!
//! An [`Export`] is parsed once from what the user asked for (type, format, columns, filters),
//! naming the type's columns when one is unknown; [`Export::write`] streams the records from
//! the store into a file in constant memory (rows are never collected), and
//! [`replace_atomically`] puts a finished file in place with a rename, so that a client
//! listing or downloading `/exports` sees the old file or the new one, never half of one.
//!
//! CSV cells follow `sluice_core::cells` (formulas neutralised, plain numbers kept). XLSX
//! cells are typed by the column's kind: text as text (never a formula), dates as dates,
//! integers, decimals and booleans as such; the header row is frozen and filtered.

use rust_xlsxwriter::{ExcelDateTime, Format as CellFormat, Workbook, XlsxError};
use sluice_core::cells::csv_cell;
use sluice_core::import::{ColumnKind, ImportType, ImportTypes};
use sluice_store::roles::Imports;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// The file formats an export writes (`csv`, `xlsx`).
pub use sluice_core::saved_export::ExportFormat as Format;

pub mod photos;
pub mod saved;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("type {type_name} has no column {column:?}; its columns are: {columns}")]
    NoSuchColumn { type_name: String, column: String, columns: String },
    #[error(
        "type {type_name} is keyed by several columns: the {referrer} records referring to it cannot be listed \
         in a column"
    )]
    CompositeKey { type_name: String, referrer: String },
    #[error("an export kept out of /exports must go to a connector (--to CONNECTOR)")]
    NowhereToGo,
    #[error("--where {0:?} is not COLUMN=VALUE")]
    BadFilter(String),
    #[error(
        "--where names the column {0} twice: a record holds one value there, so no record could pass both (and \
         the export would be empty); name each column once, and export each value separately"
    )]
    FilterTwice(String),
    #[error("type {0} is not a CSV import type: only the records of CSV types can be exported")]
    NotCsvType(String),
    #[error(transparent)]
    Store(#[from] sluice_store::StoreError),
    #[error("no import type {0:?}; `sluice types` lists them")]
    NoSuchType(String),
    #[error("tenant {tenant} has no folder for import type {type_name}: it has no such records to export")]
    NotTenantsType { type_name: String, tenant: String },
    #[error("{0:?} is not a file name")]
    BadFileName(String),
    #[error("--bom is for CSV files (an XLSX file says its encoding itself)")]
    BomForXlsx,
    #[error("photos are written one file per record into /exports/photos (`--photos`), not as one file")]
    PhotosNotAFile,
    #[error("type {0} takes no photos, so it has none to export (types with photos: {1})")]
    NoPhotos(String, String),
    #[error("a photo export writes every photo of the type: no --columns, --where or --bom")]
    PhotosTakeNoColumns,
    // The cause follows in the error's chain.
    #[error("cannot write the export")]
    Io(#[from] std::io::Error),
    #[error("cannot write the spreadsheet")]
    Xlsx(#[from] XlsxError),
    #[error(transparent)]
    Bucket(#[from] sluice_files::FilesError),
    #[error("{path} is not in {bucket} (removed meanwhile?): run the export again")]
    NotInBucket { path: String, bucket: String },
    #[error(
        "{bucket} already holds {tenant}'s {path}, which is not this data directory's: another deployment may \
         keep its files under the same bucket and prefix; give this one a prefix of its own ([storage] prefix), \
         or remove what is there"
    )]
    BucketHoldsOthers { tenant: String, path: String, bucket: String },
    #[error(
        "{path} cannot be copied into the bucket: its name is not one sluice writes (nor can a district ask for \
         it); move it out of the exports folder"
    )]
    UnmovableName { path: std::path::PathBuf },
    #[error(
        "the copy of {path} read back from {bucket} is not the file on disk (SHA-256 {local}, read back {read})"
    )]
    CopyDiffers { path: std::path::PathBuf, bucket: String, local: String, read: String },
    #[error(
        "exports are kept on the local disk here ([storage] backend = \"local\"): there is no bucket to copy into"
    )]
    NoBucket,
}

/// What a finished export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub rows: u64,
    pub bytes: u64,
}

/// One export of a tenant's records of one type, as asked for.
#[derive(Debug, Clone)]
pub struct Export<'t> {
    ty: &'t ImportType,
    format: Format,
    /// What each column of the file holds, in the order they are written.
    columns: Vec<Col>,
    /// The types whose records refer to this one that `Col::Referrers` columns list.
    referrers: Vec<sluice_store::Referrers>,
    /// Their columns' headers.
    headers: Vec<String>,
    /// Only records whose column (index) holds this value.
    filters: Vec<(usize, String)>,
    /// CSV: start with a UTF-8 byte order mark (Excel then reads accents right).
    bom: bool,
}

/// A column of an export's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    /// One of the type's columns (an index into them).
    Own(usize),
    /// The records of another type that refer to this record (an index into `referrers`):
    /// a student's guardians, named by their ids, `;` between them.
    Referrers(usize),
}

impl<'t> Export<'t> {
    /// `columns`: the columns to write, in order (all of the type's when empty), each one of
    /// the type's columns or the name of a type whose records refer to this one (`guardians`
    /// in an export of `students`: each student's guardians' ids); `filters`: `COLUMN=VALUE`
    /// each, on the type's own columns.
    pub fn new(
        ty: &'t ImportType,
        types: &ImportTypes,
        format: Format,
        columns: &[String],
        filters: &[String],
        bom: bool,
    ) -> Result<Self, ExportError> {
        if bom && format == Format::Xlsx {
            return Err(ExportError::BomForXlsx);
        }
        if format == Format::Photos {
            return Err(ExportError::PhotosNotAFile);
        }
        if ty.format != sluice_core::import::TypeFormat::Csv {
            return Err(ExportError::NotCsvType(ty.name.clone()));
        }
        let index = |name: &str| {
            // As a file's header is matched: case-insensitively, and through the aliases.
            let named = |c: &sluice_core::import::types::Column| {
                c.name.eq_ignore_ascii_case(name) || c.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
            };
            ty.columns.iter().position(named).ok_or_else(|| ExportError::NoSuchColumn {
                type_name: ty.name.clone(),
                column: name.to_owned(),
                columns: ty.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", "),
            })
        };
        let mut referrers: Vec<sluice_store::Referrers> = Vec::new();
        let mut headers: Vec<String> = Vec::new();
        let mut column = |name: &str| -> Result<Col, ExportError> {
            let own = index(name);
            if own.is_ok() {
                return own.map(Col::Own);
            }
            // The type a keyed reference names (`students` in an export of guardians keyed by
            // student and guardian): for each row, the referred ids of every row with the
            // same other key column (all of this guardian's students).
            if let Some(reference) = ty.references.iter().find(|r| r.to_type.eq_ignore_ascii_case(name))
                && ty.key.len() == 2
                && ty.key.contains(&reference.column)
                && let Some(&own_id) = ty.key.iter().find(|&&k| k != reference.column)
            {
                referrers.push(sluice_store::Referrers {
                    type_name: ty.name.clone(),
                    refers_by: format!("$[{own_id}]"),
                    named_by: format!("$[{}]", reference.column),
                    matched_on: Some(format!("$[{own_id}]")),
                });
                headers.push(reference.to_type.clone());
                return Ok(Col::Referrers(referrers.len() - 1));
            }
            let Some((r, reference)) =
                types.referrers_of(&ty.name).into_iter().find(|(r, _)| r.name.eq_ignore_ascii_case(name))
            else {
                return own.map(Col::Own);
            };
            if ty.key.len() != 1 {
                return Err(ExportError::CompositeKey {
                    type_name: ty.name.clone(),
                    referrer: r.name.clone(),
                });
            }
            // A referring record is named by its key's other column (a guardian's id beside its
            // student's), or by its key.
            let named = r.key.iter().copied().find(|&k| k != reference.column).unwrap_or(r.key[0]);
            referrers.push(sluice_store::Referrers {
                type_name: r.name.clone(),
                refers_by: format!("$[{}]", reference.column),
                named_by: format!("$[{named}]"),
                matched_on: None,
            });
            headers.push(r.name.clone());
            Ok(Col::Referrers(referrers.len() - 1))
        };
        let columns = if columns.is_empty() {
            (0..ty.columns.len()).map(Col::Own).collect()
        } else {
            columns.iter().map(|c| column(c.trim())).collect::<Result<_, _>>()?
        };
        let filters: Vec<(usize, String)> = filters
            .iter()
            .map(|f| {
                let (column, value) = f.split_once('=').ok_or_else(|| ExportError::BadFilter(f.clone()))?;
                Ok((index(column.trim())?, value.to_owned()))
            })
            .collect::<Result<_, ExportError>>()?;
        if let Some((i, _)) =
            filters.iter().enumerate().find(|(n, (i, _))| filters[..*n].iter().any(|(j, _)| j == i))
        {
            return Err(ExportError::FilterTwice(ty.columns[filters[i].0].name.clone()));
        }
        Ok(Export { ty, format, columns, referrers, headers, filters, bom })
    }

    /// The import type whose records it writes.
    pub fn import_type(&self) -> &'t ImportType {
        self.ty
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The file name in `/exports`: `TYPE.csv` or `TYPE.xlsx`.
    pub fn file_name(&self) -> String {
        format!("{}.{}", self.ty.name, self.format.extension())
    }

    /// Writes the tenant's active records of the type to `path` (created or truncated).
    pub fn write(&self, store: &dyn Imports, tenant: &str, path: &Path) -> Result<Written, ExportError> {
        let rows = match self.format {
            Format::Csv => self.write_csv(store, tenant, path)?,
            Format::Xlsx => self.write_xlsx(store, tenant, path)?,
            Format::Photos => return Err(ExportError::PhotosNotAFile),
        };
        Ok(Written { rows, bytes: std::fs::metadata(path)?.len() })
    }

    /// Calls `each` with the values of every record the filters let through, in key order,
    /// and the names of the records referring to it (one per `Col::Referrers`).
    fn each_record(
        &self,
        store: &dyn Imports,
        tenant: &str,
        mut each: impl FnMut(&[String], &[Option<String>]) -> Result<(), ExportError>,
    ) -> Result<u64, ExportError> {
        let mut failed: Option<ExportError> = None;
        let mut rows = 0u64;
        let mut one = |data: &str, names: &[Option<String>]| {
            if failed.is_some() {
                return;
            }
            // CSV types store an array in the type's column order.
            let values: Vec<String> = serde_json::from_str(data).unwrap_or_default();
            let value = |i: usize| values.get(i).map_or("", String::as_str);
            if self.filters.iter().all(|(i, v)| value(*i) == v) {
                rows += 1;
                if let Err(e) = each(&values, names) {
                    failed = Some(e);
                }
            }
        };
        if self.referrers.is_empty() {
            store.records(tenant, &self.ty.name, Some(false), &mut |_key, data| one(data, &[]))?;
        } else {
            store.records_with_referrers(
                tenant,
                &self.ty.name,
                &self.referrers,
                &mut |_key, data, names| one(data, names),
            )?;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(rows),
        }
    }

    /// A column's header.
    fn header(&self, col: Col) -> &str {
        match col {
            Col::Own(i) => &self.ty.columns[i].name,
            Col::Referrers(k) => &self.headers[k],
        }
    }

    fn write_csv(&self, store: &dyn Imports, tenant: &str, path: &Path) -> Result<u64, ExportError> {
        let mut out = BufWriter::with_capacity(1 << 16, File::create(path)?);
        if self.bom {
            out.write_all("\u{feff}".as_bytes())?;
        }
        let mut line = String::new();
        write_csv_line(&mut out, &mut line, self.columns.iter().map(|&c| self.header(c)))?;
        let rows = self.each_record(store, tenant, |values, names| {
            let cells = self.columns.iter().map(|&c| cell(c, values, names));
            Ok(write_csv_line(&mut out, &mut line, cells)?)
        })?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        Ok(rows)
    }

    fn write_xlsx(&self, store: &dyn Imports, tenant: &str, path: &Path) -> Result<u64, ExportError> {
        let mut book = Workbook::new();
        let sheet = book.add_worksheet_with_constant_memory()?;
        sheet.set_name(sheet_name(&self.ty.name))?;
        let bold = CellFormat::new().set_bold();
        let date = CellFormat::new().set_num_format("yyyy-mm-dd");
        for (col, &c) in self.columns.iter().enumerate() {
            sheet.write_string_with_format(0, col as u16, self.header(c), &bold)?;
        }
        let mut row = 0u32;
        let rows = self.each_record(store, tenant, |values, names| {
            row += 1;
            for (col, &c) in self.columns.iter().enumerate() {
                let v = cell(c, values, names);
                if v.is_empty() {
                    continue;
                }
                let col = col as u16;
                let typed = match c {
                    Col::Own(i) => typed(&self.ty.columns[i].kind, v),
                    Col::Referrers(_) => Typed::Text,
                };
                match typed {
                    Typed::Number(n) => sheet.write_number(row, col, n)?,
                    Typed::Boolean(b) => sheet.write_boolean(row, col, b)?,
                    Typed::Date(d) => sheet.write_datetime_with_format(row, col, &d, &date)?,
                    // Text is written as text: a value starting with `=` is never a formula.
                    Typed::Text => sheet.write_string(row, col, v)?,
                };
            }
            Ok(())
        })?;
        let last_col = self.columns.len().saturating_sub(1) as u16;
        sheet.set_freeze_panes(1, 0)?;
        sheet.autofilter(0, 0, row, last_col)?;
        book.save(path)?;
        Ok(rows)
    }
}

/// What a record's row holds in column `c`.
fn cell<'a>(c: Col, values: &'a [String], names: &'a [Option<String>]) -> &'a str {
    match c {
        Col::Own(i) => values.get(i).map_or("", String::as_str),
        Col::Referrers(k) => names.get(k).and_then(|n| n.as_deref()).unwrap_or(""),
    }
}

/// A stored value as the spreadsheet cell its column's kind calls for.
enum Typed {
    Text,
    Number(f64),
    Boolean(bool),
    Date(ExcelDateTime),
}

/// Integers stay numbers only while a spreadsheet holds them exactly (15 digits); anything
/// that does not read back as it was written is text.
fn typed(kind: &ColumnKind, v: &str) -> Typed {
    match kind {
        ColumnKind::Integer => match v.parse::<i64>() {
            Ok(n) if n.unsigned_abs() < 1_000_000_000_000_000 && n.to_string() == v => {
                Typed::Number(n as f64)
            }
            _ => Typed::Text,
        },
        ColumnKind::Decimal => match v.parse::<f64>() {
            Ok(n) if n.is_finite() && v.trim_start_matches(['-', '+']).len() <= 16 => Typed::Number(n),
            _ => Typed::Text,
        },
        ColumnKind::Boolean => match v {
            "true" => Typed::Boolean(true),
            "false" => Typed::Boolean(false),
            _ => Typed::Text,
        },
        ColumnKind::Date { .. } => iso_date(v).map_or(Typed::Text, Typed::Date),
        _ => Typed::Text,
    }
}

/// `YYYY-MM-DD` (how dates are stored) as a spreadsheet date; a date before March 1900 stays
/// text (spreadsheets count days from 1900 and believe 1900 was a leap year).
fn iso_date(v: &str) -> Option<ExcelDateTime> {
    let mut parts = v.splitn(3, '-');
    let y: u16 = parts.next()?.parse().ok()?;
    let m: u8 = parts.next()?.parse().ok()?;
    let d: u8 = parts.next()?.parse().ok()?;
    if (y, m) < (1900, 3) {
        return None;
    }
    ExcelDateTime::from_ymd(y, m, d).ok()
}

/// A worksheet name Excel accepts: at most 31 characters, none of `[]:*?/\`.
fn sheet_name(type_name: &str) -> String {
    let clean: String = type_name.chars().map(|c| if "[]:*?/\\".contains(c) { '_' } else { c }).collect();
    clean.chars().take(31).collect()
}

fn write_csv_line<'a>(
    out: &mut impl Write,
    line: &mut String,
    cells: impl Iterator<Item = &'a str>,
) -> std::io::Result<()> {
    line.clear();
    for (n, cell) in cells.enumerate() {
        if n > 0 {
            line.push(',');
        }
        line.push_str(&csv_cell(cell));
    }
    line.push_str("\r\n");
    out.write_all(line.as_bytes())
}

/// Where exports go: each tenant's `/exports` folder, written through a private spool on the
/// same filesystem. The one way `sluice export`, the API and the dashboard put a file there.
#[derive(Debug, Clone)]
pub struct Exports {
    tenants_root: std::path::PathBuf,
    spool: std::path::PathBuf,
    /// Where records' photos are kept (`DATA_DIR/photos`), for photo exports.
    photos: std::path::PathBuf,
    /// With `[storage] backend = "s3"`: the bucket that holds every tenant's `/exports`
    /// (written through the spool, then put whole); `None`: the tenants' folders on disk.
    bucket: Option<std::sync::Arc<sluice_files::Bucket>>,
}

/// A finished export as a local file, to push to a connector: the file in the tenant's
/// folder, or a private copy fetched from the bucket (removed when dropped).
#[derive(Debug)]
pub enum LocalExport {
    InFolder(std::path::PathBuf),
    Fetched(tempfile::TempPath),
}

impl LocalExport {
    pub fn path(&self) -> &Path {
        match self {
            LocalExport::InFolder(path) => path,
            LocalExport::Fetched(path) => path,
        }
    }
}

/// A tenant's exports on the local disk, checked against the bucket ([`Exports::on_disk`]).
#[derive(Debug, Clone)]
pub struct ExportsOnDisk {
    pub tenant: sluice_core::TenantName,
    /// To be copied into the bucket.
    pub files: Vec<DiskExport>,
    /// Finishing a move: files the bucket already holds (its copies win).
    pub in_bucket: Vec<DiskExport>,
}

/// One exported file on disk: `folder` is `exports` or `exports/photos`.
#[derive(Debug, Clone)]
pub struct DiskExport {
    pub folder: &'static str,
    pub name: sluice_core::FileName,
    pub path: std::path::PathBuf,
}

/// What [`Exports::copy_into_bucket`] copied of a tenant's: `sha256` is that of one line per
/// file (`folder/name`, size, the file's SHA-256) in order, the same from the disk and from
/// the bucket's copies read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedExports {
    pub files: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// The regular files directly in `dir`, by name (none if it does not exist; links are not
/// followed).
fn files_in(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// A finished export in a tenant's folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub written: Written,
    /// Where the tenant finds it: `/exports/students.csv`.
    pub path: String,
}

impl Exports {
    /// `tenants_root`: `DATA_DIR/tenants`; `spool`: a private folder on the same filesystem.
    pub fn new(tenants_root: &Path, spool: &Path) -> Self {
        let photos = tenants_root.parent().unwrap_or(tenants_root).join("photos");
        Exports { tenants_root: tenants_root.to_path_buf(), spool: spool.to_path_buf(), photos, bucket: None }
    }

    /// Every tenant's `/exports` in `bucket` rather than on disk.
    pub fn in_bucket(mut self, bucket: Option<std::sync::Arc<sluice_files::Bucket>>) -> Self {
        self.bucket = bucket;
        self
    }

    /// The export `file_name` (one path component) of the tenant's `/exports`, as a local file.
    pub fn local(
        &self,
        tenant: &sluice_core::TenantName,
        file_name: &str,
    ) -> Result<LocalExport, ExportError> {
        let name = sluice_core::FileName::parse(file_name)
            .map_err(|_| ExportError::BadFileName(file_name.to_owned()))?;
        let Some(bucket) = &self.bucket else {
            return Ok(LocalExport::InFolder(self.folder(tenant).join(name.as_str())));
        };
        let key = sluice_files::ObjectKey::folder(tenant, sluice_core::layout::EXPORTS).file(&name);
        let mut fetched = bucket.fetch(&key, &self.spool)?.ok_or_else(|| ExportError::NotInBucket {
            path: format!("/{}/{}", sluice_core::layout::EXPORTS, name.as_str()),
            bucket: bucket.shown().to_owned(),
        })?;
        let mut copy = tempfile::Builder::new().prefix(TEMPORARY).tempfile_in(&self.spool)?;
        std::io::copy(&mut fetched.file, copy.as_file_mut())?;
        Ok(LocalExport::Fetched(copy.into_temp_path()))
    }

    /// Copies a tenant's exports out of the bucket into `archive` (`exports/`,
    /// `exports/photos/`): the tenant is being removed (on disk its folder is archived with its
    /// directory); [`Exports::forget_tenant`] removes them once the tenant is gone. Returns how
    /// many files were copied.
    pub fn archive_tenant(
        &self,
        tenant: &sluice_core::TenantName,
        archive: &Path,
    ) -> Result<usize, ExportError> {
        let Some(bucket) = &self.bucket else { return Ok(0) };
        let mut archived = 0;
        for folder in [sluice_core::layout::EXPORTS, sluice_core::layout::EXPORT_PHOTOS_FOLDER] {
            let key = sluice_files::ObjectKey::folder(tenant, folder);
            let into = archive.join(folder);
            for entry in bucket.list(&key)?.files {
                let Ok(name) = sluice_core::FileName::parse(&entry.name) else { continue };
                let Some(mut fetched) = bucket.fetch(&key.file(&name), &self.spool)? else { continue };
                std::fs::create_dir_all(&into)?;
                let mut copy = File::create(into.join(name.as_str()))?;
                std::io::copy(&mut fetched.file, &mut copy)?;
                copy.sync_all()?;
                archived += 1;
            }
        }
        Ok(archived)
    }

    /// Removes everything of a tenant's from the bucket (after its removal, and before a
    /// tenant of the same name is added: what a removal that failed half-way left must never
    /// be shown to a new tenant). Returns how many objects.
    pub fn forget_tenant(&self, tenant: &sluice_core::TenantName) -> Result<usize, ExportError> {
        match &self.bucket {
            Some(bucket) => Ok(bucket.delete_under(&sluice_files::ObjectKey::tenant(tenant))?),
            None => Ok(0),
        }
    }

    /// A tenant's exports on the local disk (`/exports`, `/exports/photos`), to be copied into
    /// the bucket ([`Exports::copy_into_bucket`]). Exports half-written by a killed export are
    /// left out.
    ///
    /// Moving into the bucket for the first time (`finishing` false), the bucket must hold
    /// nothing of the tenant's but the same files with the same bytes (a move run again):
    /// anything else is another deployment's, under the same prefix, and would be shown to
    /// this tenant or overwritten by it. Finishing a move (the data directory already keeps
    /// exports in the bucket, and files were left on the disk: a move cut short, or an export
    /// written meanwhile), what the bucket holds wins: files it already has are only set aside
    /// ([`ExportsOnDisk::in_bucket`]), the others copied.
    pub fn on_disk(
        &self,
        tenant: &sluice_core::TenantName,
        finishing: bool,
    ) -> Result<ExportsOnDisk, ExportError> {
        let bucket = self.bucket.as_ref().ok_or(ExportError::NoBucket)?;
        let mut found = ExportsOnDisk { tenant: tenant.clone(), files: Vec::new(), in_bucket: Vec::new() };
        let others = |path: String| ExportError::BucketHoldsOthers {
            tenant: tenant.to_string(),
            path,
            bucket: bucket.shown().to_owned(),
        };
        for folder in [sluice_core::layout::EXPORTS, sluice_core::layout::EXPORT_PHOTOS_FOLDER] {
            let key = sluice_files::ObjectKey::folder(tenant, folder);
            let mut listed: std::collections::BTreeMap<String, sluice_files::Entry> =
                bucket.list(&key)?.files.into_iter().map(|e| (e.name.clone(), e)).collect();
            let dir = self.tenants_root.join(tenant.as_str()).join(folder);
            for path in files_in(&dir)? {
                let raw = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                if raw.starts_with(TEMPORARY) {
                    continue;
                }
                let name = sluice_core::FileName::parse(raw)
                    .map_err(|_| ExportError::UnmovableName { path: path.clone() })?;
                let file = DiskExport { folder, name, path };
                match listed.remove(file.name.as_str()) {
                    None => found.files.push(file),
                    Some(_) if finishing => found.in_bucket.push(file),
                    Some(_) => {
                        let (_, local) = sluice_core::upload::sha256_of(File::open(&file.path)?)?;
                        let object = self.sha256_in_bucket(bucket, &key.file(&file.name))?;
                        // (Removed meanwhile: nothing to overwrite.)
                        if object.is_some_and(|object| object != local) {
                            return Err(others(format!("/{folder}/{}", file.name.as_str())));
                        }
                        found.files.push(file);
                    }
                }
            }
            if let Some(other) = listed.into_keys().next().filter(|_| !finishing) {
                return Err(others(format!("/{folder}/{other}")));
            }
        }
        Ok(found)
    }

    /// An exported file on the local disk in any tenant's folder, if there is one: a data
    /// directory whose exports are still there must copy them into the bucket before its
    /// servers keep exports in one (tenants would no longer see them).
    pub fn first_on_disk(&self) -> std::io::Result<Option<std::path::PathBuf>> {
        let tenants = match std::fs::read_dir(&self.tenants_root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        for tenant in tenants {
            let tenant = tenant?;
            // Only tenants' folders (not a stray file, nor a mount's lost+found).
            let is_tenant = tenant.file_type()?.is_dir()
                && tenant.file_name().to_str().is_some_and(|n| sluice_core::TenantName::parse(n).is_ok());
            if !is_tenant {
                continue;
            }
            for folder in [sluice_core::layout::EXPORTS, sluice_core::layout::EXPORT_PHOTOS_FOLDER] {
                let found = files_in(&tenant.path().join(folder))?.into_iter().find(|p| {
                    !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(TEMPORARY))
                });
                if found.is_some() {
                    return Ok(found);
                }
            }
        }
        Ok(None)
    }

    /// Copies `exports` into the bucket, each file read back and compared by SHA-256 with
    /// the one on disk (which stays: the caller moves it aside once every tenant's copy is
    /// whole). Copying again is harmless: the objects are replaced with the same bytes.
    pub fn copy_into_bucket(&self, exports: &ExportsOnDisk) -> Result<CopiedExports, ExportError> {
        let bucket = self.bucket.as_ref().ok_or(ExportError::NoBucket)?;
        std::fs::create_dir_all(&self.spool)?;
        let mut manifest = String::new();
        let mut bytes = 0;
        for file in &exports.files {
            let (size, local) = sluice_core::upload::sha256_of(File::open(&file.path)?)?;
            let key = sluice_files::ObjectKey::folder(&exports.tenant, file.folder).file(&file.name);
            bucket.put_file(&key, &file.path)?;
            let read = self.sha256_in_bucket(bucket, &key)?.ok_or_else(|| ExportError::NotInBucket {
                path: format!("/{}/{}", file.folder, file.name.as_str()),
                bucket: bucket.shown().to_owned(),
            })?;
            if read != local {
                return Err(ExportError::CopyDiffers {
                    path: file.path.clone(),
                    bucket: bucket.shown().to_owned(),
                    local: local.as_str().to_owned(),
                    read: read.as_str().to_owned(),
                });
            }
            bytes += size;
            manifest.push_str(&format!(
                "{}/{}\t{}\t{}\n",
                file.folder,
                file.name.as_str(),
                size,
                local.as_str()
            ));
        }
        let (_, sha256) = sluice_core::upload::sha256_of(manifest.as_bytes())?;
        Ok(CopiedExports { files: exports.files.len() as u64, bytes, sha256: sha256.as_str().to_owned() })
    }

    /// The SHA-256 of the object at `key`, read through the spool (`None`: there is none).
    fn sha256_in_bucket(
        &self,
        bucket: &sluice_files::Bucket,
        key: &sluice_files::ObjectKey,
    ) -> Result<Option<sluice_core::upload::Sha256Hex>, ExportError> {
        match bucket.fetch(key, &self.spool)? {
            Some(object) => Ok(Some(sluice_core::upload::sha256_of(object.file)?.1)),
            None => Ok(None),
        }
    }

    /// What the bucket has done since it was opened (`None`: exports are on the local disk).
    pub fn bucket_counts(&self) -> Option<sluice_files::BucketCounts> {
        self.bucket.as_ref().map(|b| b.counts())
    }

    /// Before a tenant of this name is added (it does not exist): what the bucket still holds
    /// under its name (an earlier namesake's removal that failed half-way; another
    /// deployment's, under the same prefix) is not the new tenant's. It is copied into
    /// `archive/bucket-leftovers/NAME-STAMP/` beside the tenants' folders, then removed from the
    /// bucket: the new tenant starts empty, and nothing is lost. Returns how many files were
    /// kept, and where (`None`: there were none).
    pub fn clear_leftovers(
        &self,
        tenant: &sluice_core::TenantName,
    ) -> Result<Option<(usize, std::path::PathBuf)>, ExportError> {
        if self.bucket.is_none() {
            return Ok(None);
        }
        let stamp = sluice_core::layout::archive_stamp();
        let root = self.tenants_root.parent().unwrap_or(&self.tenants_root);
        let kept = root.join("archive").join("bucket-leftovers").join(format!("{tenant}-{stamp}"));
        let archived = self.archive_tenant(tenant, &kept)?;
        self.forget_tenant(tenant)?;
        Ok((archived > 0).then_some((archived, kept)))
    }

    /// Whether the bucket answers (`None`: exports are on the local disk).
    pub fn check_bucket(&self) -> Option<Result<(), sluice_files::FilesError>> {
        self.bucket.as_ref().map(|b| b.check())
    }

    /// Photos are read from `photos` (`DATA_DIR/photos`; by default beside `tenants_root`).
    pub fn with_photos(mut self, photos: &Path) -> Self {
        self.photos = photos.to_path_buf();
        self
    }

    /// Where records' photos are kept.
    pub fn photos_dir(&self) -> &Path {
        &self.photos
    }

    /// A tenant's `/exports` folder on disk.
    pub fn folder(&self, tenant: &sluice_core::TenantName) -> std::path::PathBuf {
        self.tenants_root.join(tenant.as_str()).join(sluice_core::layout::EXPORTS)
    }

    /// The private spool exports are written in.
    pub fn spool(&self) -> &Path {
        &self.spool
    }

    /// Writes the photos of `type_name`'s records into the tenant's `/exports/photos/`, one
    /// `KEY.jpg|png` per record (see [`photos::write_photos`]).
    pub fn photos_into_folder(
        &self,
        store: &dyn sluice_store::roles::Photos,
        tenant: &sluice_core::TenantName,
        type_name: &str,
        others: &[String],
    ) -> Result<(photos::PhotosWritten, String), ExportError> {
        let done = match &self.bucket {
            Some(bucket) => {
                let folder =
                    sluice_files::ObjectKey::folder(tenant, sluice_core::layout::EXPORT_PHOTOS_FOLDER);
                photos::put_photos(store, tenant, type_name, others, &self.photos, bucket, &folder)?
            }
            None => {
                let folder = self.folder(tenant).join(photos::PHOTOS_FOLDER);
                photos::write_photos(store, tenant, type_name, others, &self.photos, &folder)?
            }
        };
        Ok((done, format!("/{}/{}/", sluice_core::layout::EXPORTS, photos::PHOTOS_FOLDER)))
    }

    /// Writes the export into the tenant's `/exports` as `TYPE.csv|xlsx`, replacing the file
    /// whole (see [`write_into`]); clears what killed exports left in the spool first.
    pub fn into_folder(
        &self,
        export: &Export<'_>,
        store: &dyn Imports,
        tenant: &sluice_core::TenantName,
    ) -> Result<Delivered, ExportError> {
        self.into_folder_as(export, store, tenant, &export.file_name())
    }

    /// As [`Exports::into_folder`], under another name (a saved export's `NAME.csv`):
    /// `file_name` must be one path component (a type's or a saved export's name, with its
    /// format's extension).
    pub fn into_folder_as(
        &self,
        export: &Export<'_>,
        store: &dyn Imports,
        tenant: &sluice_core::TenantName,
        file_name: &str,
    ) -> Result<Delivered, ExportError> {
        let file_name = sluice_core::FileName::parse(file_name)
            .map_err(|_| ExportError::BadFileName(file_name.to_owned()))?;
        let file_name = file_name.as_str();
        std::fs::create_dir_all(&self.spool)?;
        // An export killed an hour ago will not finish: its records leave the spool.
        clear_stale(&self.spool, std::time::Duration::from_secs(3600))?;
        let written = match &self.bucket {
            Some(bucket) => {
                // Written whole in the spool, then put whole: S3 shows the old object or the
                // new one, never a part.
                let temporary = tempfile::Builder::new().prefix(TEMPORARY).tempfile_in(&self.spool)?;
                let written = export.write(store, tenant, temporary.path())?;
                let name = sluice_core::FileName::parse(file_name)
                    .map_err(|_| ExportError::BadFileName(file_name.to_owned()))?;
                let key = sluice_files::ObjectKey::folder(tenant, sluice_core::layout::EXPORTS).file(&name);
                bucket.put_file(&key, temporary.path())?;
                written
            }
            None => {
                let folder = self.tenants_root.join(tenant.as_str()).join(sluice_core::layout::EXPORTS);
                std::fs::create_dir_all(&folder)?;
                write_into(export, store, tenant, &self.spool, &folder.join(file_name))?
            }
        };
        Ok(Delivered { written, path: format!("/{}/{file_name}", sluice_core::layout::EXPORTS) })
    }
}

/// The prefix of an export's temporary files (private to sluice's user: 0600).
const TEMPORARY: &str = ".export-";

/// Writes the export to `dest` whole or not at all: into a temporary file in `spool` (private),
/// then renamed over `dest`. A client listing or downloading `dest` meanwhile sees the old
/// file or the new one, never a part; a failed export leaves the old file and no temporary
/// one (a killed one is cleared by [`clear_stale`]). When `dest` is on another filesystem
/// than `spool`, the finished file is copied to a temporary file beside `dest` and renamed
/// from there. `dest` ends up 0600.
pub fn write_into(
    export: &Export<'_>,
    store: &dyn Imports,
    tenant: &str,
    spool: &Path,
    dest: &Path,
) -> Result<Written, ExportError> {
    let temporary = tempfile::Builder::new().prefix(TEMPORARY).tempfile_in(spool)?;
    let written = export.write(store, tenant, temporary.path())?;
    let folder = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    match temporary.persist(dest) {
        Ok(_) => {}
        Err(e) if e.error.kind() == std::io::ErrorKind::CrossesDevices => {
            let mut beside = tempfile::Builder::new().prefix(TEMPORARY).tempfile_in(folder)?;
            std::io::copy(&mut File::open(e.file.path())?, beside.as_file_mut())?;
            beside.as_file().sync_all()?;
            beside.persist(dest).map_err(|e| e.error)?;
        }
        Err(e) => return Err(e.error.into()),
    }
    File::open(folder)?.sync_all()?;
    Ok(written)
}

/// Removes temporary files of exports that can no longer finish (their process was killed):
/// those older than `age` (every one, with a zero age, when nothing else can be exporting).
pub fn clear_stale(spool: &Path, age: std::time::Duration) -> std::io::Result<usize> {
    let mut removed = 0;
    let entries = match std::fs::read_dir(spool) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        let stale = entry.file_name().to_string_lossy().starts_with(TEMPORARY)
            && entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|a| a >= age));
        if stale && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}
