//! Photos out (Badge: "Images exported ... will be saved as single image files for each
//! record"): one file per record of a type that has a photo, `KEY.jpg` or `KEY.png`, in the
//! tenant's `/exports/photos/`. Each file is put in place with a rename (a client sees the
//! old image or the new one, never a part), and images of records that no longer exist, or
//! no longer have a photo, are removed from the folder.

use crate::ExportError;
use sluice_core::photo::{Photo, image_store};
use sluice_store::roles::Photos;
use std::collections::HashSet;
use std::path::Path;

/// The folder under `/exports` that photos go to.
pub const PHOTOS_FOLDER: &str = "photos";

/// The prefix of a photo being put in place (the folder's listing skips nothing else).
const TEMPORARY: &str = ".export-photo-";

/// What a photo export did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhotosWritten {
    /// Images written or replaced.
    pub written: u64,
    /// Images already there, the same.
    pub unchanged: u64,
    /// The bytes of the images the folder now holds for the type.
    pub bytes: u64,
    /// Files removed: of records gone or without a photo now.
    pub removed: u64,
    /// Records not exported, each named with why (`A/B (its key cannot be a file name)`): a
    /// key that cannot be a file name, or whose file name a record of another type with
    /// photos has too (its photo would replace theirs: neither is exported).
    pub skipped: Vec<String>,
}

/// The file name each photo of the tenant's other photo types would be exported as, with its
/// type (the folder is shared).
fn names_of_others(
    store: &dyn Photos,
    tenant: &str,
    type_name: &str,
    others: &[String],
) -> Result<std::collections::HashMap<String, String>, ExportError> {
    let mut names = std::collections::HashMap::new();
    for other in others.iter().filter(|o| *o != type_name) {
        store.photos(tenant, other, &mut |photo: &Photo| {
            if let Some(name) = photo.export_name() {
                names.entry(name).or_insert_with(|| other.clone());
            }
        })?;
    }
    Ok(names)
}

/// Photos to send, each (the stored image, its file name), and the records skipped, each
/// with why (see [`photo_files`]).
pub type PhotoFiles = (Vec<(std::path::PathBuf, String)>, Vec<String>);

/// The photos of `type_name`'s records to send elsewhere (a connector's folder): (the stored
/// image, the file name), by the rules of [`write_photos`] (a name another photo type's
/// record has too is not sent), and the records skipped, each with why.
pub fn photo_files(
    store: &dyn Photos,
    tenant: &str,
    type_name: &str,
    others: &[String],
    photos_dir: &Path,
) -> Result<PhotoFiles, ExportError> {
    let images = image_store(photos_dir, tenant);
    let theirs = names_of_others(store, tenant, type_name, others)?;
    let (mut files, mut shared, mut skipped) = (Vec::new(), HashSet::new(), Vec::new());
    store.photos(tenant, type_name, &mut |photo: &Photo| {
        if let Some(name) = export_name(photo, &theirs, &mut shared, &mut skipped) {
            files.push((images.join(photo.stored_name()), name));
        }
    })?;
    Ok((files, skipped))
}

/// This type's photo's file name, if it is to be exported: `None` (named in `skipped`, with
/// why) when its key cannot be a file name, or another type's record has the name too
/// (`shared` then holds it: that file is no one's).
fn export_name(
    photo: &Photo,
    others: &std::collections::HashMap<String, String>,
    shared: &mut HashSet<String>,
    skipped: &mut Vec<String>,
) -> Option<String> {
    let key = photo.key.replace('\u{1f}', "+");
    // A key that cannot be a file name, or would be a hidden one, is not exported.
    let Some(name) = photo.export_name().filter(|n| !n.starts_with('.')) else {
        skipped.push(format!("{key} (its key cannot be a file name)"));
        return None;
    };
    if let Some(other) = others.get(&name) {
        skipped.push(format!(
            "{key} (a record of {other} has a photo that would be {name} too: neither is exported)"
        ));
        shared.insert(name);
        return None;
    }
    Some(name)
}

/// Writes the photos of `type_name`'s records into `folder` (a tenant's `/exports/photos`),
/// from the tenant's image store under `photos_dir`; files of records gone are removed, except
/// those of the photos of the `others` types (the tenant's other types with photos). An image is hard-linked from the store
/// when it can be (the same bytes, no copy; the store's images are never written again), else
/// copied.
pub fn write_photos(
    store: &dyn Photos,
    tenant: &str,
    type_name: &str,
    others: &[String],
    photos_dir: &Path,
    folder: &Path,
) -> Result<PhotosWritten, ExportError> {
    use std::os::unix::fs::MetadataExt;
    std::fs::create_dir_all(folder)?;
    let images = image_store(photos_dir, tenant);
    let mut done = PhotosWritten::default();
    let mut names: HashSet<String> = HashSet::new();
    let mut failure: Option<std::io::Error> = None;
    let theirs = names_of_others(store, tenant, type_name, others)?;
    let mut shared = HashSet::new();
    store.photos(tenant, type_name, &mut |photo: &Photo| {
        if failure.is_some() {
            return;
        }
        let Some(name) = export_name(photo, &theirs, &mut shared, &mut done.skipped) else { return };
        let source = images.join(photo.stored_name());
        let dest = folder.join(&name);
        names.insert(name);
        done.bytes += photo.bytes;
        let same = match (std::fs::metadata(&source), std::fs::metadata(&dest)) {
            (Ok(s), Ok(d)) => s.ino() == d.ino() && s.dev() == d.dev(),
            _ => false,
        };
        if same {
            done.unchanged += 1;
            return;
        }
        // The image is linked, so the file carries the stored image's time: one stored in the
        // same import as the record's old photo, of the same size (two photos swapped), looked
        // unchanged to rclone and lftp, which compare size and time, and they kept the old one.
        // Its time is now (the other records' files showing it follow: downloaded once more).
        if let Ok(image) = std::fs::File::open(&source) {
            let _ = image.set_modified(std::time::SystemTime::now());
        }
        match put(&source, folder, &dest) {
            Ok(()) => done.written += 1,
            Err(e) => failure = Some(e),
        }
    })?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    // The tenant's other types' photos share the folder: theirs stay, but for a name two
    // types' records have (it may hold either's photo: no one's).
    names.extend(theirs.into_keys().filter(|n| !shared.contains(n)));
    for entry in std::fs::read_dir(folder)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale_temporary = name.starts_with(TEMPORARY)
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|a| a.as_secs() > 3600));
        let gone = !name.starts_with(TEMPORARY) && !names.contains(&name);
        if (gone || stale_temporary) && entry.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::remove_file(entry.path())?;
            done.removed += u64::from(gone);
        }
    }
    std::fs::File::open(folder)?.sync_all()?;
    Ok(done)
}

/// [`write_photos`] into a bucket's folder: each record's image put whole, skipped when the
/// object there already has its bytes (its tag is the image's MD5), and the objects of records
/// gone (or without a photo now) removed; the tenant's other types' photos stay.
pub fn put_photos(
    store: &dyn Photos,
    tenant: &str,
    type_name: &str,
    others: &[String],
    photos_dir: &Path,
    bucket: &sluice_files::Bucket,
    folder: &sluice_files::ObjectKey,
) -> Result<PhotosWritten, ExportError> {
    let there: std::collections::HashMap<String, Option<String>> =
        bucket.list(folder)?.files.into_iter().map(|e| (e.name, e.e_tag)).collect();
    let images = image_store(photos_dir, tenant);
    let mut done = PhotosWritten::default();
    let mut names: HashSet<String> = HashSet::new();
    let mut wanted: Vec<(std::path::PathBuf, String)> = Vec::new();
    let theirs = names_of_others(store, tenant, type_name, others)?;
    let mut shared = HashSet::new();
    store.photos(tenant, type_name, &mut |photo: &Photo| {
        let Some(name) = export_name(photo, &theirs, &mut shared, &mut done.skipped) else { return };
        done.bytes += photo.bytes;
        // Two records exported under one name: the last one's image, as on the local disk.
        if names.insert(name.clone()) {
            wanted.push((images.join(photo.stored_name()), name));
        } else if let Some(slot) = wanted.iter_mut().find(|(_, n)| *n == name) {
            slot.0 = images.join(photo.stored_name());
        }
    })?;
    for (source, name) in wanted {
        let Ok(file_name) = sluice_core::FileName::parse(&name) else {
            done.skipped.push(format!("{name} (not a file name the bucket takes)"));
            continue;
        };
        let key = folder.file(&file_name);
        let md5 = md5_hex(&source)?;
        if there.get(&name).is_some_and(|tag| tag.as_deref() == Some(md5.as_str())) {
            done.unchanged += 1;
            continue;
        }
        bucket.put_file(&key, &source)?;
        done.written += 1;
    }
    names.extend(theirs.into_keys().filter(|n| !shared.contains(n)));
    for name in there.keys().filter(|n| !names.contains(*n)) {
        if let Ok(file_name) = sluice_core::FileName::parse(name) {
            bucket.delete(&folder.file(&file_name))?;
            done.removed += 1;
        }
    }
    Ok(done)
}

fn md5_hex(path: &Path) -> std::io::Result<String> {
    use md5::Digest;
    let mut hasher = md5::Md5::new();
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match std::io::Read::read(&mut file, &mut buf)? {
            0 => break,
            n => hasher.update(&buf[..n]),
        }
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Puts `source`'s bytes at `dest` with a rename: linked (or copied) to a temporary name in
/// `folder` first.
fn put(source: &Path, folder: &Path, dest: &Path) -> std::io::Result<()> {
    let temporary = folder.join(format!("{TEMPORARY}{}-{}", std::process::id(), unique()));
    if std::fs::hard_link(source, &temporary).is_err() {
        let mut from = std::fs::File::open(source)?;
        let mut to = std::fs::OpenOptions::new().write(true).create_new(true).open(&temporary)?;
        std::io::copy(&mut from, &mut to)?;
        to.sync_all()?;
    }
    std::fs::rename(&temporary, dest).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
