//! Records' photos: which image (by SHA-256, in the tenant's image store) each record shows.
//! A record's photo row goes with the record (a trigger, migration 26), so a deleted record
//! never keeps a photo; the image file is removed by the ingest once nothing shows it.

use crate::imports::{apply_outcome, still_open};
use crate::{Outcome, Result, Store, StoreError};
use rusqlite::{OptionalExtension, Row, params};
use sluice_core::photo::{ImageFormat, Photo};

/// A photo's columns, in [`PhotoRow`]'s order (every backend's `photos` table has them).
pub const PHOTO_COLUMNS: &str = "key, sha256, format, width, height, bytes, import_id";

/// A photo as every backend stores it: (key, sha256, format, width, height, bytes,
/// import_id), read by [`photo_from_row`].
pub type PhotoRow = (String, String, String, i64, i64, i64, i64);

/// The photo a row holds.
pub fn photo_from_row((key, sha256, format, width, height, bytes, import_id): PhotoRow) -> Photo {
    Photo {
        key,
        sha256,
        // Written only by `apply_photos`, from an `ImageFormat`.
        format: ImageFormat::from_ext(&format).unwrap_or(ImageFormat::Jpeg),
        width: width.clamp(0, i64::from(u32::MAX)) as u32,
        height: height.clamp(0, i64::from(u32::MAX)) as u32,
        bytes: bytes.max(0) as u64,
        import_id,
    }
}

fn photo_of(r: &Row<'_>) -> rusqlite::Result<Photo> {
    Ok(photo_from_row((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))
}

impl crate::roles::Photos for Store {
    fn record_keys(&self, tenant: &str, type_name: &str, each: &mut dyn FnMut(&str)) -> Result<u64> {
        self.with(|c| {
            let tenant_id = crate::tenant_id(c, tenant)?;
            let mut stmt = c.prepare(
                "SELECT key FROM records WHERE tenant_id = ?1 AND type = ?2 AND +inactive = 0 ORDER BY key",
            )?;
            let mut rows = stmt.query(params![tenant_id, type_name])?;
            let mut n = 0;
            while let Some(r) = rows.next()? {
                each(r.get_ref(0)?.as_str().map_err(|e| StoreError::Corrupt(e.to_string()))?);
                n += 1;
            }
            Ok(n)
        })
    }

    fn photo(&self, tenant: &str, type_name: &str, key: &str) -> Result<Option<Photo>> {
        self.with(|c| {
            let tenant_id = crate::tenant_id(c, tenant)?;
            Ok(c.prepare_cached(&format!(
                "SELECT {PHOTO_COLUMNS} FROM photos WHERE tenant_id = ?1 AND type = ?2 AND key = ?3"
            ))?
            .query_row(params![tenant_id, type_name, key], photo_of)
            .optional()?)
        })
    }

    fn apply_photos(
        &self,
        tenant: &str,
        type_name: &str,
        import_id: i64,
        photos: &[Photo],
        outcome: &Outcome<'_>,
    ) -> Result<Vec<String>> {
        self.with_write(|c| {
            let tenant_id = crate::tenant_id(c, tenant)?;
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            still_open(&tx, import_id)?;
            let mut replaced = Vec::new();
            {
                let mut before =
                    tx.prepare_cached("SELECT sha256 FROM photos WHERE tenant_id = ?1 AND type = ?2 AND key = ?3")?;
                let mut write = tx.prepare_cached(
                    "INSERT INTO photos (tenant_id, type, key, sha256, format, width, height, bytes, import_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (tenant_id, type, key) DO UPDATE SET sha256 = excluded.sha256,
                         format = excluded.format, width = excluded.width, height = excluded.height,
                         bytes = excluded.bytes, import_id = excluded.import_id
                     WHERE photos.sha256 != excluded.sha256",
                )?;
                // A record deleted since the import matched it gets no photo.
                let mut exists = tx.prepare_cached(
                    "SELECT 1 FROM records WHERE tenant_id = ?1 AND type = ?2 AND key = ?3 AND +inactive = 0",
                )?;
                for p in photos {
                    if !exists.exists(params![tenant_id, type_name, p.key])? {
                        continue;
                    }
                    let old: Option<String> =
                        before.query_row(params![tenant_id, type_name, p.key], |r| r.get(0)).optional()?;
                    write.execute(params![
                        tenant_id,
                        type_name,
                        p.key,
                        p.sha256,
                        p.format.ext(),
                        i64::from(p.width),
                        i64::from(p.height),
                        p.bytes as i64,
                        import_id
                    ])?;
                    replaced.extend(old.filter(|o| *o != p.sha256));
                }
            }
            apply_outcome(&tx, import_id, outcome)?;
            let mut gone = Vec::new();
            {
                let mut in_use = tx.prepare_cached("SELECT 1 FROM photos WHERE tenant_id = ?1 AND sha256 = ?2")?;
                for sha in &replaced {
                    if !in_use.exists(params![tenant_id, sha])? && !gone.contains(sha) {
                        gone.push(sha.clone());
                    }
                }
            }
            tx.commit()?;
            Ok(gone)
        })
    }

    fn photos(&self, tenant: &str, type_name: &str, each: &mut dyn FnMut(&Photo)) -> Result<u64> {
        self.with(|c| {
            let tenant_id = crate::tenant_id(c, tenant)?;
            let mut stmt = c.prepare(&format!(
                "SELECT {} FROM photos p WHERE p.tenant_id = ?1 AND p.type = ?2 AND EXISTS
                 (SELECT 1 FROM records r WHERE r.tenant_id = ?1 AND r.type = ?2 AND r.key = p.key AND +r.inactive = 0)
                 ORDER BY p.key",
                PHOTO_COLUMNS.split(", ").map(|c| format!("p.{c}")).collect::<Vec<_>>().join(", ")
            ))?;
            let mut rows = stmt.query(params![tenant_id, type_name])?;
            let mut n = 0;
            while let Some(r) = rows.next()? {
                each(&photo_of(r)?);
                n += 1;
            }
            Ok(n)
        })
    }

    fn image_in_use(&self, tenant: &str, sha256: &str) -> Result<bool> {
        self.with(|c| {
            let tenant_id = crate::tenant_id(c, tenant)?;
            Ok(c.prepare_cached("SELECT 1 FROM photos WHERE tenant_id = ?1 AND sha256 = ?2")?
                .exists(params![tenant_id, sha256])?)
        })
    }
}
