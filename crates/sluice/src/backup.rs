//! `sluice backup FILE` and `sluice restore FILE`: a whole deployment in one zip file, made
//! while the server runs, and put back into a new data directory.
//!
//! What a backup holds: `sluice.db` (a consistent snapshot: `VACUUM INTO`, one read
//! transaction), every file under the data directory but the spool, the lock and the live
//! database (tenants' folders, error reports, exports, photos, archived and kept files, the
//! SSH host key), the secret key (`[secrets] key_file`, wherever it lives: without it no
//! connector's credential or second factor opens), and `backup.json` last: each file's size
//! and SHA-256 and the database's counts. Files are read as they are when the walk reaches
//! them; a file replaced meanwhile is read whole, old or new (sluice replaces by rename).
//!
//! A restore checks everything before anything lands: the manifest, every entry's name (one
//! of the places above, no `..`, no links, no entry twice, nothing the manifest does not
//! list), size and SHA-256; it writes into a staging directory, then moves it into place, and
//! opens the database (migrations, integrity check) and compares its counts.

use crate::config::Config;
use crate::dirs::DataDirs;
use crate::failure::{Failure, usage};
use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

const FORMAT: &str = "sluice-backup/1";
const MANIFEST: &str = "backup.json";
const DATABASE: &str = "sluice.db";
const SECRET_KEY: &str = "secret.key";
const HOST_KEY: &str = "ssh_host_ed25519_key";
/// The directories a backup carries, under the data directory.
const TREES: [&str; 3] = ["tenants", "photos", "archive"];

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

/// `sluice backup FILE`.
pub(crate) fn backup(config: &Config, dirs: &DataDirs, file: &Path) -> Result<(), Failure> {
    if !dirs.database().exists() {
        return Err(usage(anyhow!("no deployment in {}: nothing to back up", dirs.root.display())));
    }
    if file.exists() {
        return Err(usage(anyhow!(
            "{} exists: name a new file (a backup never replaces one)",
            file.display()
        )));
    }
    let store = dirs.open_store().map_err(usage)?;
    let partial = PathBuf::from(format!("{}.partial", file.display()));
    let snapshot = dirs.root.join("spool").join(format!("backup-{}.db", std::process::id()));
    std::fs::create_dir_all(dirs.root.join("spool"))?;
    let _ = std::fs::remove_file(&snapshot);
    let made = (|| -> Result<Manifest> {
        store.snapshot_to(&snapshot).context("cannot snapshot the database")?;
        let counts = sluice_store::Store::open(&snapshot)?.counts()?;
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode_private()
            .open(&partial)
            .with_context(|| format!("cannot create {}", partial.display()))?;
        let mut zip = zip::ZipWriter::new(out);
        let mut files = Vec::new();
        let mut add = |zip: &mut zip::ZipWriter<std::fs::File>, name: &str, from: &Path| -> Result<()> {
            let mut source = match std::fs::File::open(from) {
                Ok(f) => f,
                // Gone since the walk saw it (an import took it): not part of this backup.
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
        let key_file = config.secret_key_file();
        if key_file.exists() {
            add(&mut zip, SECRET_KEY, &key_file)?;
        }
        if dirs.host_key().exists() {
            add(&mut zip, HOST_KEY, &dirs.host_key())?;
        }
        for tree in TREES {
            for path in walk(&dirs.root.join(tree))? {
                let relative = path.strip_prefix(&dirs.root).map_err(|e| anyhow!("{e}"))?;
                let name = relative.to_str().ok_or_else(|| anyhow!("{} is not UTF-8", path.display()))?;
                // The backup being written, should it be named inside the data directory.
                if path == partial || path == file {
                    continue;
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
    let _ = std::fs::remove_file(&snapshot);
    let manifest = match made {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e.into());
        }
    };
    std::fs::rename(&partial, file)?;
    let (sha, bytes) = {
        let (bytes, digest) = sluice_core::sha256_of(std::fs::File::open(file)?)?;
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
    outln!("it holds the secret key: keep it as safe as the server itself");
    Ok(())
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
/// a plain relative path inside one of the trees.
fn allowed(name: &str) -> bool {
    if [DATABASE, SECRET_KEY, HOST_KEY, MANIFEST].contains(&name) {
        return true;
    }
    let path = Path::new(name);
    let mut parts = path.components();
    let first = match parts.next() {
        Some(Component::Normal(f)) => f.to_str().unwrap_or(""),
        _ => return false,
    };
    TREES.contains(&first)
        && path.components().count() >= 2
        && path.components().all(|c| matches!(c, Component::Normal(_)))
        && !name.contains('\\')
        && !name.ends_with('/')
}

/// `sluice restore FILE`: into a data directory that holds no deployment.
pub(crate) fn restore(config: &Config, dirs: &DataDirs, file: &Path) -> Result<(), Failure> {
    // No server may run on it meanwhile (and none starts until this is done).
    let _serving = dirs.lock_for_serving().map_err(usage)?;
    if dirs.database().exists() || dirs.tenants().read_dir().is_ok_and(|mut d| d.next().is_some()) {
        return Err(usage(anyhow!(
            "{} already holds a deployment: restore into a new data directory (--data-dir NEW), then point the server at it",
            dirs.root.display()
        )));
    }
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
    // Every entry named once, each a place a backup writes, each listed: checked before
    // anything is written.
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
        if !allowed(&name) || entry.is_symlink() || entry.is_dir() {
            return Err(bad("not a name a sluice backup writes"));
        }
        if !seen.insert(name.clone()) {
            return Err(bad("twice"));
        }
        if name != MANIFEST && !listed.contains_key(name.as_str()) {
            return Err(bad("not in its manifest"));
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
    if key_file.exists() && listed.contains_key(SECRET_KEY) {
        return Err(usage(anyhow!(
            "the secret key file {} exists: move it aside (the backup brings its own), then restore",
            key_file.display()
        )));
    }

    // Into a staging directory beside the data, checked as it is written.
    std::fs::create_dir_all(&dirs.root)?;
    let staging = dirs.root.join(".restoring");
    let _ = std::fs::remove_dir_all(&staging);
    let written = (|| -> Result<()> {
        for e in &manifest.files {
            let mut entry = archive.by_name(&e.path)?;
            let target = staging.join(&e.path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let out =
                std::fs::OpenOptions::new().write(true).create_new(true).mode_private().open(&target)?;
            let mut hashing = Hashing { inner: out, hash: Sha256::new(), bytes: 0 };
            // Never more than the manifest says: a forged size cannot fill the disk.
            std::io::copy(&mut entry.by_ref().take(e.bytes + 1), &mut hashing)?;
            let sha = hex(&hashing.hash.finalize());
            if hashing.bytes != e.bytes || sha != e.sha256 {
                bail!("{} does not match its manifest (size or SHA-256): the backup is damaged", e.path);
            }
            hashing.inner.sync_all()?;
        }
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(usage(e.context("nothing was restored")));
    }
    // Into place.
    for e in &manifest.files {
        let from = staging.join(&e.path);
        let to = if e.path == SECRET_KEY { key_file.clone() } else { dirs.root.join(&e.path) };
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::rename(&from, &to)
            .or_else(|_| std::fs::copy(&from, &to).map(|_| ()))
            .with_context(|| format!("cannot put {} in place", to.display()))?;
    }
    let _ = std::fs::remove_dir_all(&staging);
    dirs.create()?;
    let store = dirs.open_store().map_err(usage)?;
    let integrity = store.integrity_check()?;
    if integrity != "ok" {
        return Err(usage(anyhow!("the restored database fails its integrity check: {integrity}")));
    }
    let counts = store.counts()?;
    let total: u64 = manifest.files.iter().map(|f| f.bytes).sum();
    outln!("restored {} files ({total} bytes) into {}", manifest.files.len(), dirs.root.display());
    let mut differ = false;
    for (what, n) in &manifest.counts {
        let now = counts.get(what).copied().unwrap_or(0);
        outln!("  {what}: {now} (the backup said {n})");
        differ |= now != *n;
    }
    if differ {
        return Err(usage(anyhow!("the restored database's counts differ from the backup's")));
    }
    Ok(())
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
        for good in
            ["sluice.db", "secret.key", "tenants/acme/students/s.csv", "photos/acme/ab.jpg", "archive/x"]
        {
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
            "tenants/a\\..\\x",
            "./tenants/x",
            "",
        ] {
            assert!(!super::allowed(bad), "{bad}");
        }
    }
}
