//! `sluice backup FILE` and `sluice restore FILE`: a whole deployment in one zip file, made
//! while the server runs, and put back into a new data directory.
//!
//! What a backup holds: `sluice.db` (a snapshot: `VACUUM INTO`, one read transaction), the
//! tenants' folders (uploads waiting, exports, error reports), photos, archived files, held
//! imports' files and the error reports imports keep, the SSH host key, the secret key
//! (`[secrets] key_file`, wherever it lives: without it no connector's credential or second
//! factor opens), and `backup.json` last: each file's size and SHA-256 and the database's
//! counts. Imports wait while a backup runs (it holds `spool/import.lock`, which every import
//! shares), so the database and the files imports move agree; uploads are still taken, and a
//! file replaced meanwhile is read whole, old or new (sluice replaces by rename).
//!
//! A restore checks everything before anything lands: the target is empty, the manifest and
//! every entry's name (one of the places above, no `..`, no links, nothing the manifest does
//! not list), the space it needs; it writes into a staging directory, checking each file's
//! size and SHA-256, opens the database there (migrations, integrity, counts) and points its
//! kept files at the new place, and only then moves everything in, undoing the moves if one
//! fails.

use crate::config::Config;
use crate::dirs::DataDirs;
use crate::failure::{Failure, usage};
use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const FORMAT: &str = "sluice-backup/1";
const MANIFEST: &str = "backup.json";
const DATABASE: &str = "sluice.db";
const SECRET_KEY: &str = "secret.key";
const HOST_KEY: &str = "ssh_host_ed25519_key";
/// The directories a backup carries, under the data directory.
const TREES: [&str; 5] = ["tenants", "photos", "archive", "reports", "spool/held"];

#[derive(Serialize, Deserialize)]
struct Manifest {
    format: String,
    created_ms: i64,
    /// What the database held: tenants, records, users, imports, audit entries.
    counts: BTreeMap<String, i64>,
    files: Vec<Entry>,
}

#[derive(Serialize, Deserialize, Clone)]
struct Entry {
    path: String,
    bytes: u64,
    sha256: String,
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// What `sluice backup` and `restore` say on a deployment whose state is in PostgreSQL.
const ON_POSTGRES: &str = "the state is in PostgreSQL ([database] url): back it up with pg_dump and the data \
    directory's files with your file backups (see docs/deploy.md, \"PostgreSQL\"); sluice backup and restore \
    copy a deployment on SQLite";

/// `sluice backup FILE`.
pub(crate) fn backup(config: &Config, dirs: &DataDirs, file: &Path) -> Result<(), Failure> {
    if dirs.on_postgres() {
        return Err(usage(anyhow!(ON_POSTGRES)));
    }
    // A directory whose state moved to PostgreSQL says so (it has no sluice.db either).
    dirs.refuse_sqlite_if_on_postgres().map_err(usage)?;
    if !dirs.database().exists() {
        return Err(usage(anyhow!("no deployment in {}: nothing to back up", dirs.root.display())));
    }
    let file = std::path::absolute(file)?;
    // Inside the data directory it would be read into itself, and a tenant could download
    // it (secret key included) from its own folder.
    let real_root = dirs.root.canonicalize().unwrap_or_else(|_| dirs.root.clone());
    let real_parent = file.parent().and_then(|p| p.canonicalize().ok()).unwrap_or_default();
    if real_parent.starts_with(&real_root) || file.starts_with(&dirs.root) {
        return Err(usage(anyhow!(
            "{} is inside the data directory {}: write backups elsewhere (they hold everything, the secret key too)",
            file.display(),
            dirs.root.display()
        )));
    }
    if file.exists() {
        return Err(usage(anyhow!(
            "{} exists: name a new file (a backup never replaces one)",
            file.display()
        )));
    }
    let store = dirs.open_sqlite().map_err(usage)?;
    let partial = PathBuf::from(format!("{}.partial", file.display()));
    let spool = dirs.root.join("spool");
    std::fs::create_dir_all(&spool)?;
    clear_stale_snapshots(&spool);
    let snapshot = spool.join(format!("backup-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&snapshot);
    let out = match std::fs::OpenOptions::new().write(true).create_new(true).mode_private().open(&partial) {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(usage(anyhow!(
                "{} exists: another backup to this name is running, or one was interrupted (remove it)",
                partial.display()
            )));
        }
        Err(e) => {
            return Err(anyhow::Error::from(e)
                .context(format!("cannot create {}", partial.display()))
                .into());
        }
    };
    // Imports wait meanwhile (each holds this lock shared): the database and the files they
    // move (uploads into held and archived files, reports) are copied as of one moment.
    let imports = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(spool.join("import.lock"))
        .context("cannot open the imports' lock")?;
    if imports.try_lock().is_err() {
        eprintln!("waiting for the imports in progress to end...");
        imports.lock().context("cannot lock the imports")?;
    }
    let key_file = config.secret_key_file();
    let made = (|| -> Result<Manifest> {
        store.snapshot_to(&snapshot).context("cannot snapshot the database")?;
        let counts = sluice_store::Store::open(&snapshot)?.counts()?;
        let mut zip = zip::ZipWriter::new(out);
        let mut files = Vec::new();
        let mut add = |zip: &mut zip::ZipWriter<std::fs::File>, name: &str, from: &Path| -> Result<()> {
            let mut source = match std::fs::File::open(from) {
                Ok(f) => f,
                // Gone since the walk saw it (a tenant removed it): not part of this backup.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", from.display())),
            };
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .unix_permissions(0o600)
                .large_file(true);
            zip.start_file(name, options)?;
            let mut hashing = Hashing { inner: &mut *zip, hash: Sha256::new(), bytes: 0 };
            std::io::copy(&mut source, &mut hashing)
                .with_context(|| format!("cannot read {}", from.display()))?;
            let (bytes, sha256) = (hashing.bytes, hex(&hashing.hash.finalize()));
            files.push(Entry { path: name.to_owned(), bytes, sha256 });
            Ok(())
        };
        add(&mut zip, DATABASE, &snapshot)?;
        if key_file.exists() {
            add(&mut zip, SECRET_KEY, &key_file)?;
        }
        // The key clients trust, wherever it lives (restored into the data directory).
        let (host_key, _) = config.host_key_file();
        if host_key.exists() {
            add(&mut zip, HOST_KEY, &host_key)?;
        }
        for tree in TREES {
            for path in walk(&dirs.root.join(tree))? {
                let relative = path.strip_prefix(&dirs.root).map_err(|e| anyhow!("{e}"))?;
                let name = relative.to_str().ok_or_else(|| anyhow!("{} is not UTF-8", path.display()))?;
                // What a restore takes, a backup writes: a name it would refuse fails now.
                if !allowed(name) {
                    bail!("{} has a name a restore would refuse", path.display());
                }
                add(&mut zip, name, &path)?;
            }
        }
        let manifest =
            Manifest { format: FORMAT.to_owned(), created_ms: sluice_store::now_ms(), counts, files };
        zip.start_file(MANIFEST, zip::write::SimpleFileOptions::default().unix_permissions(0o600))?;
        zip.write_all(serde_json::to_string_pretty(&manifest)?.as_bytes())?;
        zip.finish()?.sync_all()?;
        Ok(manifest)
    })();
    drop(imports);
    let _ = std::fs::remove_file(&snapshot);
    let manifest = match made {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e.into());
        }
    };
    // Into place under its name, never over a file that appeared meanwhile.
    if let Err(e) = std::fs::hard_link(&partial, &file) {
        let _ = std::fs::remove_file(&partial);
        return Err(anyhow::Error::from(e)
            .context(format!("cannot name the backup {}", file.display()))
            .into());
    }
    let _ = std::fs::remove_file(&partial);
    let (sha, bytes) = {
        let (bytes, digest) = sluice_core::sha256_of(std::fs::File::open(&file)?)?;
        (digest.as_str().to_owned(), bytes)
    };
    let total: u64 = manifest.files.iter().map(|f| f.bytes).sum();
    outln!(
        "backup {} written: {} files, {} bytes before compression, {bytes} bytes",
        file.display(),
        manifest.files.len(),
        total
    );
    for (what, n) in &manifest.counts {
        outln!("  {what}: {n}");
    }
    outln!("  SHA-256 {sha}");
    if manifest.files.iter().any(|f| f.path == SECRET_KEY) {
        outln!("it holds the secret key: keep it as safe as the server itself");
    } else {
        eprintln!(
            "warning: no secret key at {} (is [secrets] key_file set as the server has it? SLUICE_CONFIG): \
             connectors' credentials and second factors will not open after a restore of this backup",
            key_file.display()
        );
    }
    Ok(())
}

/// Snapshots that a killed backup left (their process is gone).
fn clear_stale_snapshots(spool: &Path) {
    let Ok(entries) = std::fs::read_dir(spool) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name.strip_prefix("backup-").and_then(|n| n.strip_suffix(".db"));
        if let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok())
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Every regular file under `dir`, sorted (none if it does not exist). Links are not
/// followed and not kept: sluice makes none.
fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", d.display())),
        };
        for entry in entries.flatten() {
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Whether a name in a backup is one a backup writes: the database, the keys, the manifest, or
/// a plain relative path below one of the trees (no `..`, no `.`, no empty part, no NUL).
fn allowed(name: &str) -> bool {
    if [DATABASE, SECRET_KEY, HOST_KEY, MANIFEST].contains(&name) {
        return true;
    }
    let parts: Vec<&str> = name.split('/').collect();
    let plain = !name.contains('\0') && parts.iter().all(|p| !p.is_empty() && *p != "." && *p != "..");
    plain
        && TREES.iter().any(|tree| {
            let below: Vec<&str> = tree.split('/').collect();
            parts.len() > below.len() && parts[..below.len()] == below[..]
        })
}

/// `sluice restore FILE`: into a data directory that holds nothing yet.
pub(crate) fn restore(config: &Config, dirs: &DataDirs, file: &Path) -> Result<(), Failure> {
    if dirs.on_postgres() {
        return Err(usage(anyhow!(ON_POSTGRES)));
    }
    // Nothing there yet (no file, no link for a restored file to follow), and no server may
    // start on it meanwhile.
    if !fresh(&dirs.root)? {
        return Err(usage(anyhow!(
            "{} is not empty: restore into a new, empty data directory (--data-dir NEW), then point the server at it",
            dirs.root.display()
        )));
    }
    let _serving = dirs.lock_for_serving().map_err(usage)?;
    let key_file = config.secret_key_file();
    let source = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let mut archive = zip::ZipArchive::new(source)
        .map_err(|e| usage(anyhow!("{} is not a sluice backup (not a zip file: {e})", file.display())))?;
    let manifest: Manifest = {
        let mut entry = archive
            .by_name(MANIFEST)
            .map_err(|_| usage(anyhow!("{} is not a sluice backup (no {MANIFEST})", file.display())))?;
        let mut text = String::new();
        entry.by_ref().take(64 << 20).read_to_string(&mut text)?;
        serde_json::from_str(&text)
            .map_err(|e| usage(anyhow!("{MANIFEST} in {} cannot be read: {e}", file.display())))?
    };
    if manifest.format != FORMAT {
        return Err(usage(anyhow!(
            "{} is a {:?} backup; this sluice reads {FORMAT}",
            file.display(),
            manifest.format
        )));
    }
    // Every entry named once, each a place a backup writes, each listed with the size the zip
    // declares: checked before anything is written.
    let listed: BTreeMap<&str, &Entry> = manifest.files.iter().map(|e| (e.path.as_str(), e)).collect();
    if listed.len() != manifest.files.len() {
        return Err(usage(anyhow!(
            "{MANIFEST} in {} lists a file twice; nothing was restored",
            file.display()
        )));
    }
    let mut seen = BTreeSet::new();
    for i in 0..archive.len() {
        let entry = archive.by_index_raw(i)?;
        let name = entry
            .name()
            .map_err(|e| usage(anyhow!("{} has an unreadable entry name: {e}", file.display())))?
            .into_owned();
        let bad =
            |why: &str| usage(anyhow!("{} holds {name:?}: {why}; nothing was restored", file.display()));
        if entry.is_symlink() || entry.is_dir() {
            return Err(bad("a link or a folder, which a sluice backup never holds"));
        }
        if !allowed(&name) {
            return Err(bad("not a name a sluice backup writes"));
        }
        if !seen.insert(name.clone()) {
            return Err(bad("twice"));
        }
        match listed.get(name.as_str()) {
            None if name != MANIFEST => return Err(bad("not in its manifest")),
            Some(e) if e.bytes != entry.size() => return Err(bad("a size other than its manifest's")),
            _ => {}
        }
    }
    if let Some(missing) = listed.keys().find(|p| !seen.contains(**p)) {
        return Err(usage(anyhow!(
            "{} lacks {missing}, which its manifest lists; nothing was restored",
            file.display()
        )));
    }
    if !listed.contains_key(DATABASE) {
        return Err(usage(anyhow!("{} holds no database; nothing was restored", file.display())));
    }
    let restores_key = listed.contains_key(SECRET_KEY);
    if restores_key && key_file.exists() {
        return Err(usage(anyhow!(
            "the secret key file {} exists: move it aside (the backup brings its own), then restore",
            key_file.display()
        )));
    }
    if restores_key && !key_file.parent().is_none_or(|p| p.as_os_str().is_empty() || p.is_dir()) {
        return Err(usage(anyhow!(
            "the secret key's folder {} does not exist ([secrets] key_file): make it, then restore",
            key_file.parent().map(|p| p.display().to_string()).unwrap_or_default()
        )));
    }
    let total: u64 = manifest.files.iter().map(|f| f.bytes).sum();
    let free = free_bytes(&dirs.root).unwrap_or(u64::MAX);
    if total.saturating_add(64 << 20) > free {
        return Err(usage(anyhow!(
            "{} needs {total} bytes and {} has {free} free; nothing was restored",
            file.display(),
            dirs.root.display()
        )));
    }

    // Into a staging directory beside the data, each file checked as it is written; then the
    // database is opened there.
    let staging = dirs.root.join(".restoring");
    let _ = std::fs::remove_dir_all(&staging);
    let staged = (|| -> Result<BTreeMap<String, i64>> {
        for e in &manifest.files {
            let mut entry = archive.by_name(&e.path)?;
            let target = staging.join(&e.path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode_private()
                .open(&target)
                .with_context(|| format!("cannot write {}", e.path))?;
            let mut hashing = Hashing { inner: out, hash: Sha256::new(), bytes: 0 };
            // Never more than the manifest (and the zip) declare.
            std::io::copy(&mut entry.by_ref().take(e.bytes + 1), &mut hashing)
                .with_context(|| format!("cannot unpack {}", e.path))?;
            let sha = hex(&hashing.hash.finalize());
            if hashing.bytes != e.bytes || sha != e.sha256 {
                bail!("{} does not match its manifest (size or SHA-256): the backup is damaged", e.path);
            }
            hashing.inner.sync_all()?;
        }
        let store = sluice_store::Store::open(&staging.join(DATABASE))
            .map_err(|e| anyhow!("its database cannot be opened: {e}"))?;
        let integrity = store.integrity_check()?;
        if integrity != "ok" {
            bail!("its database fails its integrity check: {integrity}");
        }
        let counts = store.counts()?;
        if manifest.counts.iter().any(|(what, n)| counts.get(what) != Some(n)) {
            bail!("its database's counts {counts:?} differ from its manifest's {:?}", manifest.counts);
        }
        // Held imports' files and error reports, at their new place.
        store.rebase_kept_files(&dirs.root)?;
        Ok(counts)
    })();
    let counts = match staged {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(usage(e.context("nothing was restored")));
        }
    };
    // Into place; a move that fails undoes the ones before it.
    let mut moved: Vec<(PathBuf, PathBuf)> = Vec::new();
    let placed = (|| -> Result<()> {
        for e in &manifest.files {
            let from = staging.join(&e.path);
            let to = if e.path == SECRET_KEY { key_file.clone() } else { dirs.root.join(&e.path) };
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            if to.exists() {
                bail!("{} appeared meanwhile", to.display());
            }
            match std::fs::rename(&from, &to) {
                Ok(()) => {}
                // The secret key's folder on another file system.
                Err(_) => {
                    std::fs::copy(&from, &to)
                        .with_context(|| format!("cannot put {} in place", to.display()))?;
                    let _ = std::fs::remove_file(&from);
                }
            }
            moved.push((to, from));
        }
        Ok(())
    })();
    if let Err(e) = placed {
        for (to, from) in moved.iter().rev() {
            if std::fs::rename(to, from).is_err() {
                let _ = std::fs::remove_file(to);
            }
        }
        let _ = std::fs::remove_dir_all(&staging);
        return Err(usage(e.context("nothing was restored")));
    }
    let _ = std::fs::remove_dir_all(&staging);
    dirs.create()?;
    outln!("restored {} files ({total} bytes) into {}", manifest.files.len(), dirs.root.display());
    for (what, n) in &counts {
        outln!("  {what}: {n} (the backup said {})", manifest.counts.get(what).copied().unwrap_or(0));
    }
    Ok(())
}

/// Whether `root` holds nothing yet: it does not exist, or holds only empty folders and the
/// serve lock (what a restore that failed left of the layout it made). No link anywhere.
fn fresh(root: &Path) -> Result<bool> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir == root => return Ok(true),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
        };
        for entry in entries {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if !(kind.is_file() && entry.path() == root.join("serve.lock")) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Bytes free for this user on the file system of `dir` (or of its nearest existing parent).
fn free_bytes(dir: &Path) -> Option<u64> {
    let mut at = dir.to_path_buf();
    while !at.exists() {
        at = at.parent()?.to_path_buf();
    }
    let c = std::ffi::CString::new(at.as_os_str().as_encoded_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a zeroed statvfs the call fills.
    if unsafe { libc::statvfs(c.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    Some(stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// Files only sluice's user may read.
trait Private {
    fn mode_private(&mut self) -> &mut Self;
}

impl Private for std::fs::OpenOptions {
    fn mode_private(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_names_a_backup_writes_are_restored() {
        for good in [
            "sluice.db",
            "secret.key",
            "tenants/acme/students/s.csv",
            "tenants/acme/students/back\\slash.csv",
            "photos/acme/ab.jpg",
            "archive/x",
            "reports/4.errors.csv",
            "spool/held/2.held",
        ] {
            assert!(super::allowed(good), "{good}");
        }
        for bad in [
            "../etc/passwd",
            "/etc/passwd",
            "tenants/../../x",
            "tenants",
            "tenants/",
            "spool/uploads/x",
            "serve.lock",
            "sluice.db-wal",
            "./tenants/x",
            "tenants/acme/./x.csv",
            "tenants//x",
            "spool/uploads/x",
            "spool/held",
            "",
        ] {
            assert!(!super::allowed(bad), "{bad}");
        }
    }
}
