//! CLI commands around imports: types, validate, import, imports, import show, sync,
//! approve, discard, records.

use crate::config::Config;
use crate::dirs::DataDirs;
use crate::failure::{Failure, usage};
use anyhow::{Context, anyhow};
use serde_json::{Value, json};
use sluice_core::TenantName;
use sluice_core::import::{ColumnKind, ImportType, ImportTypes, Related};
use sluice_core::views::ImportView;
use sluice_ingest::Ingest;
use sluice_ingest::report::csv_cell;
use sluice_store::roles::*;
use sluice_store::{ImportRecord, ImportStatus, Store};
use std::io::Write;
use std::path::{Path, PathBuf};

pub(crate) fn load_types(config: &Config) -> Result<ImportTypes, Failure> {
    crate::types::load(config.imports.types_dir()).map_err(usage)
}

pub fn types(config: &Config, json: bool) -> Result<(), Failure> {
    let types = load_types(config)?;
    if json {
        let rows: Vec<Value> = types.all().iter().map(type_json).collect();
        outln!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    for t in types.all() {
        let key: Vec<&str> = t.key.iter().map(|&k| t.columns[k].name.as_str()).collect();
        outln!(
            "{:<14} folder /{:<14} mode {:<7} key {}",
            t.name,
            t.folder.as_ref().map_or("-", |f| f.as_str()),
            t.mode.as_str(),
            key.join("+")
        );
        let cols: Vec<String> = t
            .columns
            .iter()
            .map(|c| format!("{}{}:{}", c.name, if c.required { "*" } else { "" }, c.kind.name()))
            .collect();
        outln!("    {}", cols.join(", "));
    }
    Ok(())
}

fn type_json(t: &ImportType) -> Value {
    json!({
        "name": t.name,
        "description": t.description,
        "folder": t.folder.as_ref().map(|f| f.as_str()),
        "file_name": t.file_name,
        "key": t.key.iter().map(|&k| t.columns[k].name.as_str()).collect::<Vec<_>>(),
        "mode": t.mode.as_str(),
        "safeguard": {"deleted_percent": t.safeguard.deleted_percent, "changed_percent": t.safeguard.changed_percent},
        "references": t.references.iter().map(|r| json!({"column": t.columns[r.column].name, "type": r.to_type, "on_delete": r.on_delete.as_str()})).collect::<Vec<_>>(),
        "columns": t.columns.iter().map(|c| {
            let mut v = json!({"name": c.name, "kind": c.kind.name(), "required": c.required, "aliases": c.aliases});
            match &c.kind {
                ColumnKind::Enum { values } => v["values"] = json!(values),
                ColumnKind::Date { formats } => v["formats"] = json!(formats.iter().map(|f| f.source.as_str()).collect::<Vec<_>>()),
                ColumnKind::Text { max_length } => v["max_length"] = json!(max_length),
                _ => {}
            }
            v
        }).collect::<Vec<_>>(),
    })
}

fn type_for_file<'a>(
    types: &'a ImportTypes,
    explicit: Option<&str>,
    file: &Path,
    allowed: Option<&[String]>,
) -> Result<&'a ImportType, Failure> {
    if let Some(name) = explicit {
        return types
            .get(name)
            .ok_or_else(|| usage(anyhow!("unknown import type {name:?}; `sluice types` lists them")));
    }
    let file_name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let stem = file_name.rsplit_once('.').map_or(file_name, |(s, _)| s).to_lowercase();
    // The tenant's own types first: Visitor Aware's students.csv and Clever's are different types.
    let pick = |only: Option<&[String]>| {
        let candidates = || types.all().iter().filter(move |t| only.is_none_or(|a| a.contains(&t.name)));
        candidates().find(|t| t.name == stem).or_else(|| {
            candidates().find(|t| t.file_name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(file_name)))
        })
    };
    pick(allowed).or_else(|| pick(None)).ok_or_else(|| {
        usage(anyhow!(
            "cannot tell the import type of {}; name it with --type (`sluice types` lists them)",
            file.display()
        ))
    })
}

pub fn validate(config: &Config, type_name: &str, files: &[PathBuf]) -> Result<(), Failure> {
    let types = load_types(config)?;
    let t = type_for_file(&types, Some(type_name), Path::new(""), None)?;
    let scratch = std::env::temp_dir().join(format!(
        "sluice-validate-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
    ));
    std::fs::create_dir_all(&scratch).context("cannot create a scratch directory")?;
    let result = validate_in(&scratch, t, files);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn validate_in(scratch: &Path, t: &ImportType, files: &[PathBuf]) -> Result<(), Failure> {
    let store = Store::open(&scratch.join("validate.db"))?;
    store.add_tenant(&TenantName::parse("validate")?, &[])?;
    let mut rejected = false;
    for file in files {
        if !file.is_file() {
            return Err(Failure { code: 1, error: anyhow!("{}: no such file", file.display()) });
        }
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        let req = sluice_ingest::ImportRequest {
            approved: true,
            ..sluice_ingest::ImportRequest::new("validate", t, file, name, "validate")
        };
        let record =
            sluice_ingest::import_file(&store, &req, &sluice_ingest::ImportContext::offline(scratch))?;
        print_errors(&store, &record, &file.display().to_string())?;
        let c = record.counts;
        match record.status {
            ImportStatus::Failed => {
                rejected = true;
                outln!("{}: REJECTED: {}", file.display(), record.message.as_deref().unwrap_or("rejected"));
            }
            _ if c.rejected > 0 => {
                rejected = true;
                outln!(
                    "{}: {} of {} rows rejected ({} encoding)",
                    file.display(),
                    c.rejected,
                    c.rows,
                    enc(&record)
                );
            }
            _ => outln!("{}: OK, {} rows ({} encoding)", file.display(), c.rows, enc(&record)),
        }
        for w in &record.warnings {
            outln!("{}: warning: {w}", file.display());
        }
    }
    if !t.references.is_empty() {
        outln!("note: references to other types are checked only on import, against the tenant's records");
    }
    if t.format == sluice_core::import::TypeFormat::OneRoster {
        outln!(
            "note: references to files a package does not carry in bulk are checked only on import, against the tenant's records"
        );
    }
    if rejected { Err(Failure { code: 1, error: anyhow!("validation found problems") }) } else { Ok(()) }
}

fn enc(r: &ImportRecord) -> &str {
    r.encoding.as_deref().unwrap_or("unknown")
}

fn print_errors(store: &dyn Imports, record: &ImportRecord, label: &str) -> Result<(), Failure> {
    let mut offset = 0;
    loop {
        let batch = store.import_errors(record.id, 1000, offset)?;
        if batch.is_empty() {
            break;
        }
        for e in &batch {
            let column = if e.column.is_empty() { String::new() } else { format!(" {}:", e.column) };
            outln!(
                "{label}:{}:{column} {}: {} (value {:?}){}",
                e.line,
                e.code,
                e.reason,
                e.value,
                record_label(&e.key, &e.name)
            );
        }
        offset += batch.len();
    }
    if record.counts.rejected > 0 && offset >= sluice_store::STORED_ERRORS {
        outln!("{label}: more errors are in the full report");
    }
    Ok(())
}

/// ` [record S1 Ann Lee]`: which record an error is about, when the row said.
fn record_label(key: &str, name: &str) -> String {
    match (key.is_empty(), name.is_empty()) {
        (true, true) => String::new(),
        (false, true) => format!(" [record {key}]"),
        (true, false) => format!(" [record {name}]"),
        (false, false) => format!(" [record {key} {name}]"),
    }
}

fn open(config: &Config, dirs: &DataDirs) -> Result<Ingest, Failure> {
    let store = dirs.open_store().map_err(usage)?;
    let types = load_types(config)?;
    dirs.ingest(store, types, &config.imports).map_err(usage)
}

pub fn import(
    config: &Config,
    dirs: &DataDirs,
    tenant: &str,
    type_name: Option<&str>,
    files: &[PathBuf],
    dry_run: bool,
) -> Result<(), Failure> {
    let ingest = open(config, dirs)?;
    let t = ingest.store.require_tenant(tenant)?;
    let allowed = ingest.tenant_types(&t);
    let mut plan = Vec::new();
    for f in files {
        if !f.is_file() {
            return Err(Failure { code: 1, error: anyhow!("{}: no such file", f.display()) });
        }
        plan.push((type_for_file(&ingest.types, type_name, f, Some(&allowed))?, f));
    }
    // Types that others refer to first, so references resolve within the file set.
    plan.sort_by_key(|(t, _)| ingest.types.depth(&t.name));
    let mut failed = false;
    for (ty, file) in plan {
        if !allowed.contains(&ty.name) {
            return Err(usage(anyhow!(
                "tenant {tenant} has no {} folder, so no {} imports; add it with `sluice tenant set {tenant} folders=...`",
                ty.folder.as_ref().map_or(ty.name.as_str(), |f| f.as_str()),
                ty.name
            )));
        }
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        let total = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0).max(1);
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let bar = |bytes: u64, rows: u64| {
            eprint!("\r{name}: {:>3}% {rows} rows ", (100 * bytes / total).min(100));
        };
        let progress: Option<&dyn Fn(u64, u64)> = if terminal { Some(&bar) } else { None };
        if dry_run {
            let v = ingest.dry_run(sluice_ingest::ImportRequest {
                progress,
                ..sluice_ingest::ImportRequest::new(tenant, ty, file, name, "cli")
            })?;
            if terminal && total > 50_000 {
                eprint!("\r{:width$}\r", "", width = name.len() + 24);
            }
            print_dry_run(name, &ty.name, &v)?;
            failed |= matches!(v.status, ImportStatus::Failed | ImportStatus::Incomplete);
            continue;
        }
        let record = ingest.run(sluice_ingest::ImportRequest {
            progress,
            ..sluice_ingest::ImportRequest::new(tenant, ty, file, name, "cli")
        })?;
        if terminal && total > 50_000 {
            eprint!("\r{:width$}\r", "", width = name.len() + 24);
        }
        print_summary(&record)?;
        failed |= matches!(record.status, ImportStatus::Failed | ImportStatus::Incomplete);
    }
    if failed { Err(Failure { code: 1, error: anyhow!("some rows or files were rejected") }) } else { Ok(()) }
}

/// A dry run's findings, in the words of a real import's summary.
fn print_dry_run(file: &str, type_name: &str, v: &sluice_ingest::Verdict) -> std::io::Result<()> {
    let c = v.counts;
    let would = match v.status {
        ImportStatus::Complete => "would complete",
        ImportStatus::Incomplete => "would be incomplete",
        ImportStatus::Held => "would be held",
        _ => "would fail",
    };
    outln!(
        "dry run: {file} {type_name} ({would}): {} rows, {} would be added, {} updated, {} unchanged, {} deleted, {} rejected; nothing was changed",
        c.rows,
        c.added,
        c.updated,
        c.unchanged,
        c.deleted,
        c.rejected
    );
    if let Some(m) = &v.message {
        let m = sluice_core::import::safeguard::without_cli_hint(m);
        outln!("  {m}");
    }
    for w in &v.warnings {
        outln!("  warning: {w}");
    }
    for e in &v.errors {
        let column = if e.column.is_empty() { String::new() } else { format!(" {}:", e.column) };
        outln!(
            "{file}:{}:{column} {}: {} (value {:?}){}",
            e.line,
            e.code,
            e.reason,
            e.value,
            record_label(&e.key, &e.name)
        );
    }
    Ok(())
}

fn print_summary(r: &ImportRecord) -> std::io::Result<()> {
    let c = r.counts;
    // A held, superseded or discarded import's counts are what it would do: nothing of it was
    // applied.
    let applied =
        !matches!(r.status, ImportStatus::Held | ImportStatus::Superseded | ImportStatus::Discarded);
    let (would, not_applied) = if applied { ("", "") } else { (" would be", "; not applied") };
    outln!(
        "import {}: {} {} ({}): {} rows, {}{would} added, {} updated, {} unchanged, {} deleted, {} rejected{not_applied}",
        r.id,
        r.file_name,
        r.type_name,
        r.status.as_str(),
        c.rows,
        c.added,
        c.updated,
        c.unchanged,
        c.deleted,
        c.rejected
    );
    if let Some(m) = &r.message {
        outln!("  {m}");
    }
    if c.rejected > 0 {
        outln!("  errors: `sluice import show {} --errors`", r.id);
    }
    Ok(())
}

pub fn history(dirs: &DataDirs, tenant: &str, limit: usize, json: bool) -> Result<(), Failure> {
    let store = dirs.open_store().map_err(usage)?;
    store.require_tenant(tenant)?;
    let list = store.imports(tenant, limit)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&list.iter().map(ImportView::from).collect::<Vec<_>>())?);
    } else {
        for r in &list {
            print_summary(r)?;
        }
    }
    Ok(())
}

pub fn show(dirs: &DataDirs, id: i64, errors: bool, json: bool) -> Result<(), Failure> {
    let store = dirs.open_store().map_err(usage)?;
    let r = store.import(id)?.ok_or_else(|| Failure { code: 1, error: anyhow!("no import {id}") })?;
    if json {
        let mut v = serde_json::to_value(ImportView::from(&r))?;
        if errors {
            let errs = store.import_errors(id, sluice_store::STORED_ERRORS, 0)?;
            v["errors"] = serde_json::to_value(&errs)?;
        }
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    print_summary(&r)?;
    outln!("  encoding: {}", enc(&r));
    if let Some(d) = &r.delimiter {
        outln!("  delimiter: {d}");
    }
    if let Some((what, by, at)) = r.decision() {
        let at =
            sluice_ingest::Timestamp::from_millisecond(at).map_or_else(|_| at.to_string(), |t| t.to_string());
        outln!("  held by the safeguard; {what} by {by} at {at}");
    }
    if let Some(by) = r.superseded_by {
        outln!(
            "  superseded by import {by} (a newer file of the same type, applied after this one was held): it can \
             no longer be approved; its file: `sluice import file {}`",
            r.id
        );
    }
    for w in &r.warnings {
        outln!("  warning: {w}");
    }
    if errors {
        print_errors(&*store, &r, &r.file_name)?;
    }
    Ok(())
}

/// Writes the file a held or superseded import keeps to `output` (stdout if `None`).
pub fn kept_file(dirs: &DataDirs, id: i64, output: Option<&Path>) -> Result<(), Failure> {
    let store = dirs.open_store().map_err(usage)?;
    let r = store.import(id)?.ok_or_else(|| Failure { code: 1, error: anyhow!("no import {id}") })?;
    let Some(held) = &r.held_file else {
        return Err(Failure {
            code: 1,
            error: anyhow!(
                "import {id} is {}: only held and superseded imports (and failed approvals) keep their file",
                r.status.as_str()
            ),
        });
    };
    let mut file = std::fs::File::open(held).map_err(|e| anyhow!("reading the kept file {held}: {e}"))?;
    match output {
        Some(path) => {
            let mut out =
                std::fs::File::create(path).map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
            std::io::copy(&mut file, &mut out)?;
        }
        None => {
            std::io::copy(&mut file, &mut std::io::stdout().lock())?;
        }
    }
    Ok(())
}

pub fn sync(config: &Config, dirs: &DataDirs, tenant: &str) -> Result<(), Failure> {
    let ingest = open(config, dirs)?;
    let before = ingest.store.imports(tenant, 1)?.first().map_or(0, |r| r.id);
    let found = ingest.sync_tenant(tenant)?;
    outln!("{found} waiting file(s) found");
    let mut done: Vec<ImportRecord> =
        ingest.store.imports(tenant, 10_000)?.into_iter().filter(|r| r.id > before).collect();
    done.reverse();
    for r in &done {
        print_summary(r)?;
    }
    Ok(())
}

/// How a decision taken with the CLI is recorded: the login name, when the system gives one.
fn command_line_user() -> String {
    match std::env::var("USER").or_else(|_| std::env::var("LOGNAME")) {
        Ok(user) if !user.is_empty() && user.len() <= 64 => format!("{user} (command line)"),
        _ => "command line".to_owned(),
    }
}

pub fn approve(config: &Config, dirs: &DataDirs, id: i64) -> Result<(), Failure> {
    let ingest = open(config, dirs)?;
    let r = ingest.approve(id, &command_line_user()).map_err(|e| Failure { code: 1, error: e.into() })?;
    print_summary(&r)?;
    Ok(())
}

pub fn discard(config: &Config, dirs: &DataDirs, id: i64) -> Result<(), Failure> {
    let ingest = open(config, dirs)?;
    ingest.discard(id, &command_line_user()).map_err(|e| Failure { code: 1, error: e.into() })?;
    outln!("import {id} discarded; nothing was changed");
    Ok(())
}

/// `sluice records delete`: records deleted by hand, all or none (see `Ingest::delete_records`).
pub fn delete_records(
    config: &Config,
    dirs: &DataDirs,
    tenant: &str,
    type_name: &str,
    keys: &[String],
    force: bool,
    json: bool,
) -> Result<(), Failure> {
    let ingest = open(config, dirs)?;
    let t = match ingest.deletable(type_name) {
        Ok(t) => t,
        Err(e @ sluice_ingest::DeleteError::NoSuchType(_)) => return Err(usage(e.into())),
        Err(e) => return Err(e.into()),
    };
    let stored: Vec<String> = keys.iter().map(|k| t.stored_key(k)).collect();
    let done = ingest.delete_records(tenant, type_name, &stored, &command_line_user(), force).map_err(
        |e| match e {
            sluice_ingest::DeleteError::Store(sluice_store::StoreError::Referred(_)) => {
                anyhow!("{e}: add --force to delete anyway")
            }
            e => e.into(),
        },
    )?;
    let deleted: Vec<String> = done.deleted.iter().map(|k| t.shown_key(k)).collect();
    if json {
        let view = sluice_core::views::RecordsDeletedView {
            tenant: tenant.to_owned(),
            type_name: type_name.to_owned(),
            deleted,
            deactivated: done.deactivated,
            kept: done.kept,
        };
        outln!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    outln!("deleted {} {type_name} record(s): {}", deleted.len(), deleted.join(", "));
    if done.deactivated > 0 {
        outln!("{} record(s) referring to them deactivated (on_delete = \"deactivate\")", done.deactivated);
    }
    if done.kept > 0 {
        outln!("{} record(s) referring to them kept as they are", done.kept);
    }
    outln!("an import that carries one of these keys again adds it back and says so");
    Ok(())
}

pub fn records(
    config: &Config,
    dirs: &DataDirs,
    tenant: &str,
    type_name: &str,
    format: &str,
    related: Option<(Related, String)>,
    deactivated: bool,
) -> Result<(), Failure> {
    let types = load_types(config)?;
    let filter = match &related {
        Some((what, id)) => {
            let path = types
                .related_path(type_name, *what)
                .ok_or_else(|| usage(anyhow!("records of type {type_name} do not name a {}", what.what())))?;
            Some((path, id.as_str()))
        }
        None => None,
    };
    if types.get(type_name).is_none() && types.has_records_of(type_name) {
        if deactivated {
            return Err(usage(anyhow!(
                "--deactivated is for CSV types; a OneRoster record's status says whether it is tobedeleted"
            )));
        }
        return package_records(dirs, tenant, type_name, format, filter);
    }
    let t = type_for_file(&types, Some(type_name), Path::new(""), None)?;
    let store = dirs.open_store().map_err(usage)?;
    store.require_tenant(tenant)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
    let mut failed: Option<std::io::Error> = None;
    let mut write = |out: &mut dyn Write, line: String| {
        if failed.is_none()
            && let Err(e) = out.write_all(line.as_bytes())
        {
            failed = Some(e);
        }
    };
    if format == "csv" {
        write(&mut out, format!("{}\r\n", names.iter().map(|n| csv_cell(n)).collect::<Vec<_>>().join(",")));
    } else {
        write(&mut out, "[".into());
    }
    let mut first = true;
    let mut each = |_key: &str, data: &str| {
        let values: Vec<String> = serde_json::from_str(data).unwrap_or_default();
        if format == "csv" {
            write(
                &mut out,
                format!("{}\r\n", values.iter().map(|v| csv_cell(v)).collect::<Vec<_>>().join(",")),
            );
        } else {
            let obj: serde_json::Map<String, Value> =
                names.iter().zip(values).map(|(n, v)| (n.to_string(), Value::String(v))).collect();
            let sep = if first { "\n  " } else { ",\n  " };
            first = false;
            write(&mut out, format!("{sep}{}", Value::Object(obj)));
        }
    };
    match &filter {
        Some((path, id)) => store.records_where(tenant, &t.name, path, id, Some(deactivated), &mut each)?,
        None => store.records(tenant, &t.name, Some(deactivated), &mut each)?,
    };
    if format == "json" {
        write(&mut out, "\n]\n".into());
    }
    if let Some(e) = failed {
        return Err(Failure { code: 1, error: e.into() });
    }
    out.flush()?;
    Ok(())
}

/// Records of a package file (`oneroster.users`): stored as JSON objects, printed as they are
/// (JSON) or as CSV with the columns of the first record.
fn package_records(
    dirs: &DataDirs,
    tenant: &str,
    type_name: &str,
    format: &str,
    filter: Option<(String, &str)>,
) -> Result<(), Failure> {
    let store = dirs.open_store().map_err(usage)?;
    store.require_tenant(tenant)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed: Option<std::io::Error> = None;
    let mut write = |line: &str| {
        if failed.is_none()
            && let Err(e) = out.write_all(line.as_bytes())
        {
            failed = Some(e);
        }
    };
    let mut header: Option<Vec<String>> = None;
    let mut first = true;
    if format == "json" {
        write("[");
    }
    let mut each = |_key: &str, data: &str| {
        let obj: serde_json::Map<String, Value> = serde_json::from_str(data).unwrap_or_default();
        if format == "json" {
            write(&format!(
                "{}{}",
                if std::mem::take(&mut first) { "\n  " } else { ",\n  " },
                Value::Object(obj)
            ));
            return;
        }
        let names = header.get_or_insert_with(|| {
            let names: Vec<String> = obj.keys().cloned().collect();
            write(&format!("{}\r\n", names.iter().map(|n| csv_cell(n)).collect::<Vec<_>>().join(",")));
            names
        });
        let cells: Vec<String> =
            names.iter().map(|n| csv_cell(obj.get(n).and_then(Value::as_str).unwrap_or(""))).collect();
        write(&format!("{}\r\n", cells.join(",")));
    };
    match &filter {
        Some((path, id)) => store.records_where(tenant, type_name, path, id, None, &mut each)?,
        None => store.records(tenant, type_name, None, &mut each)?,
    };
    if format == "json" {
        write("\n]\n");
    }
    if let Some(e) = failed {
        return Err(Failure { code: 1, error: e.into() });
    }
    out.flush()?;
    Ok(())
}

pub fn people(dirs: &DataDirs, tenant: &str, json: bool) -> Result<(), Failure> {
    let store = dirs.open_store().map_err(usage)?;
    store.require_tenant(tenant)?;
    let people = store.people(tenant)?;
    if json {
        let rows: Vec<Value> = people
            .iter()
            .map(|p| {
                json!({"id": p.id, "first_name": p.contact.first_name, "last_name": p.contact.last_name,
                       "email": p.contact.email, "phone": p.contact.phone,
                       "roles": p.roles.iter().map(|r| json!({"role": r.role, "type": r.type_name,
                           "key": r.key.replace('\u{1f}', "+"), "source_id": r.source_id})).collect::<Vec<_>>()})
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    for p in &people {
        outln!("{:>6}  {}", p.id, p.contact.describe());
        for r in &p.roles {
            let id = if r.source_id.is_empty() { "no source id".to_owned() } else { r.source_id.clone() };
            outln!("        {:<10} {} {} ({id})", r.role, r.type_name, r.key.replace('\u{1f}', "+"));
        }
    }
    Ok(())
}
