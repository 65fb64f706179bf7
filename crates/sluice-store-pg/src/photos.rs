//! Records' photos on PostgreSQL ([`Photos`]), as SQLite keeps them (see `sluice-store`'s
//! `photos.rs`): which image (by SHA-256, in the tenant's image store) each record shows. A
//! record's photo goes with the record (the `records_erased` statement trigger).
//!
//! A photo import applies in one transaction, set-based: the import's row locked and checked
//! still open, the active records matched read with their current photos in one statement
//! (locked `FOR SHARE`: a record another node's import deletes or deactivates at the same
//! moment is either seen so and gets no photo, or changes only after this commits, a deleted
//! one's photo going with it), the photos written in one more, then the outcome. The photos
//! are walked in order in between, so a key given twice ends as SQLite's one write after
//! another would leave it.

use crate::imports::{apply_outcome, still_open};
use crate::{PgStore, db, tenant_id};
use postgres::Row;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use sluice_core::photo::Photo;
use sluice_store::{Outcome, PHOTO_COLUMNS, PhotoRow, Photos, Result, photo_from_row};
use std::collections::{HashMap, HashSet};

fn photo_row(r: &Row) -> PhotoRow {
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6))
}

/// A key PostgreSQL cannot hold (text has no NUL character) names no record: looked up as
/// SQLite would (nothing found), not sent.
fn storable(key: &str) -> bool {
    !key.contains('\0')
}

impl Photos for PgStore {
    fn record_keys(&self, tenant: &str, type_name: &str, each: &mut dyn FnMut(&str)) -> Result<u64> {
        self.with(|c| {
            let tenant_id = tenant_id(c, tenant)?;
            // Streamed as the server sends them: nothing collected.
            let params: [&(dyn ToSql + Sync); 2] = [&tenant_id, &type_name];
            let mut rows = c
                .query_raw(
                    "SELECT key FROM records WHERE tenant_id = $1 AND type = $2 AND NOT inactive ORDER BY key",
                    params,
                )
                .map_err(db)?;
            let mut n = 0;
            while let Some(row) = rows.next().map_err(db)? {
                each(row.get(0));
                n += 1;
            }
            Ok(n)
        })
    }

    fn photo(&self, tenant: &str, type_name: &str, key: &str) -> Result<Option<Photo>> {
        self.with(|c| {
            let tenant_id = tenant_id(c, tenant)?;
            if !storable(key) {
                return Ok(None);
            }
            let sql =
                format!("SELECT {PHOTO_COLUMNS} FROM photos WHERE tenant_id = $1 AND type = $2 AND key = $3");
            let row = c.query_opt(sql.as_str(), &[&tenant_id, &type_name, &key]).map_err(db)?;
            Ok(row.as_ref().map(photo_row).map(photo_from_row))
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
        self.with(|c| {
            let tenant_id = tenant_id(c, tenant)?;
            // Rolled back when dropped: any error below leaves nothing written.
            let mut tx = c.transaction().map_err(db)?;
            still_open(&mut tx, import_id)?;
            // The active records matched and the image each shows now. A record deleted since
            // the import matched it gets no photo.
            let keys: Vec<&str> = photos.iter().map(|p| p.key.as_str()).filter(|k| storable(k)).collect();
            let rows = tx
                .query(
                    "SELECT r.key, p.sha256 FROM records r LEFT JOIN photos p
                         ON p.tenant_id = r.tenant_id AND p.type = r.type AND p.key = r.key
                     WHERE r.tenant_id = $1 AND r.type = $2 AND r.key = ANY($3) AND NOT r.inactive
                     ORDER BY r.key FOR SHARE OF r",
                    &[&tenant_id, &type_name, &keys],
                )
                .map_err(db)?;
            let mut shown: HashMap<String, Option<String>> =
                rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            // One photo after another, as SQLite writes them: a photo showing the image its
            // record already shows changes nothing; any other replaces it (the last one given
            // for a key is what stays).
            let mut written: HashMap<&str, &Photo> = HashMap::new();
            let mut replaced = Vec::new();
            for p in photos {
                let Some(current) = shown.get_mut(p.key.as_str()) else { continue };
                if current.as_deref() == Some(p.sha256.as_str()) {
                    continue;
                }
                replaced.extend(current.replace(p.sha256.clone()));
                written.insert(&p.key, p);
            }
            if !written.is_empty() {
                let photos: Vec<&Photo> = written.into_values().collect();
                let column = |f: fn(&Photo) -> &str| photos.iter().map(|p| f(p)).collect::<Vec<&str>>();
                let number = |f: fn(&Photo) -> i64| photos.iter().map(|p| f(p)).collect::<Vec<i64>>();
                tx.execute(
                    "INSERT INTO photos (tenant_id, type, key, sha256, format, width, height, bytes, import_id)
                     SELECT $1, $2, u.key, u.sha256, u.format, u.width, u.height, u.bytes, $3
                     FROM unnest($4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[], $9::bigint[])
                         AS u (key, sha256, format, width, height, bytes)
                     ON CONFLICT (tenant_id, type, key) DO UPDATE SET sha256 = excluded.sha256,
                         format = excluded.format, width = excluded.width, height = excluded.height,
                         bytes = excluded.bytes, import_id = excluded.import_id",
                    &[
                        &tenant_id,
                        &type_name,
                        &import_id,
                        &column(|p| p.key.as_str()),
                        &column(|p| p.sha256.as_str()),
                        &column(|p| p.format.ext()),
                        &number(|p| i64::from(p.width)),
                        &number(|p| i64::from(p.height)),
                        &number(|p| i64::try_from(p.bytes).unwrap_or(i64::MAX)),
                    ],
                )
                .map_err(db)?;
            }
            apply_outcome(&mut tx, import_id, outcome)?;
            // The images replaced that no photo of the tenant shows any more, each once, in
            // the order they were replaced.
            let mut seen = HashSet::new();
            replaced.retain(|sha| seen.insert(sha.clone()));
            let mut gone = Vec::new();
            if !replaced.is_empty() {
                let in_use: HashSet<String> = tx
                    .query(
                        "SELECT DISTINCT sha256 FROM photos WHERE tenant_id = $1 AND sha256 = ANY($2)",
                        &[&tenant_id, &replaced],
                    )
                    .map_err(db)?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                gone = replaced.into_iter().filter(|sha| !in_use.contains(sha)).collect();
            }
            tx.commit().map_err(db)?;
            Ok(gone)
        })
    }

    fn photos(&self, tenant: &str, type_name: &str, each: &mut dyn FnMut(&Photo)) -> Result<u64> {
        self.with(|c| {
            let tenant_id = tenant_id(c, tenant)?;
            let columns = PHOTO_COLUMNS.split(", ").map(|c| format!("p.{c}")).collect::<Vec<_>>().join(", ");
            let sql = format!(
                "SELECT {columns} FROM photos p WHERE p.tenant_id = $1 AND p.type = $2 AND EXISTS
                 (SELECT 1 FROM records r WHERE r.tenant_id = $1 AND r.type = $2 AND r.key = p.key AND NOT r.inactive)
                 ORDER BY p.key"
            );
            // Streamed as the server sends them: nothing collected.
            let params: [&(dyn ToSql + Sync); 2] = [&tenant_id, &type_name];
            let mut rows = c.query_raw(sql.as_str(), params).map_err(db)?;
            let mut n = 0;
            while let Some(row) = rows.next().map_err(db)? {
                each(&photo_from_row(photo_row(&row)));
                n += 1;
            }
            Ok(n)
        })
    }

    fn image_in_use(&self, tenant: &str, sha256: &str) -> Result<bool> {
        self.with(|c| {
            let tenant_id = tenant_id(c, tenant)?;
            if !storable(sha256) {
                return Ok(false);
            }
            let row = c
                .query_opt(
                    "SELECT 1 FROM photos WHERE tenant_id = $1 AND sha256 = $2 LIMIT 1",
                    &[&tenant_id, &sha256],
                )
                .map_err(db)?;
            Ok(row.is_some())
        })
    }
}
