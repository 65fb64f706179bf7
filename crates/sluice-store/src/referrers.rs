//! Records that refer to records an import deletes: guardians of a student a mirror file no
//! longer lists, enrollments of a class a package marks `tobedeleted`. The import counts them
//! when it plans (for its verdict: keep, deactivate, or hold) and, for `deactivate`,
//! deactivates them in its own transaction, before its deletions.

use crate::Result;
use crate::imports::Loader;
use rusqlite::{Connection, params};
use sluice_core::import::{LoadMode, OnDelete};

/// One reference to the type an import deletes records of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    /// The referring records' type: `guardians`, `oneroster.enrollments`.
    pub from_type: String,
    /// Where the reference is in such a record's JSON: `$[1]`, `$.classSourcedId`.
    pub path: String,
    /// The referred type (the importing one, or a file of the package): `students`.
    pub to_type: String,
    pub on_delete: OnDelete,
    /// The referred type's key has several columns and the reference names its first (a
    /// teacher keyed by id and school, named by id): it dangles only when no record with that
    /// first column is left.
    pub prefix: bool,
}

impl Referrer {
    /// What the import says about `n` of them: "3 guardians refer to students this import
    /// deletes".
    pub fn sentence(&self, n: u64) -> String {
        let what = |t: &str| {
            t.strip_prefix("oneroster.").map(|f| format!("{f}.csv records")).unwrap_or(t.to_owned())
        };
        let column = self.path.strip_prefix("$.").map(|c| format!(" (by {c})")).unwrap_or_default();
        format!("{n} {}{column} refer to {} this import deletes", what(&self.from_type), what(&self.to_type))
    }
}

/// `v` names key column `k` (exactly, or as the first of several columns).
fn names(k: &str, v: &str, prefix: bool) -> String {
    if prefix {
        format!("({k} = {v} OR ({k} >= {v} || char(31) AND {k} < {v} || char(32)))")
    } else {
        format!("{k} = {v}")
    }
}

/// Referring records `g` of a CSV type left dangling by a staged import of `?2` in `mode`.
/// Parameters: ?1 tenant, ?2 the importing type, ?3 the referring type, ?4 the JSON path.
fn csv_dangling(mode: LoadMode, prefix: bool, same_type: bool) -> Option<String> {
    let deleted = |alias: &str| match mode {
        LoadMode::Upsert => None,
        LoadMode::Mirror => {
            Some(format!("NOT EXISTS (SELECT 1 FROM temp.stage s WHERE s.type = ?2 AND s.key = {alias}.key)"))
        }
        LoadMode::Delta => Some(format!(
            "EXISTS (SELECT 1 FROM temp.stage s WHERE s.type = ?2 AND s.key = {alias}.key AND s.kind = 1)"
        )),
    };
    let v = "json_extract(g.data, ?4)";
    let mut sql = format!(
        "g.tenant_id = ?1 AND g.type = ?3 AND g.inactive = 0 AND COALESCE({v}, '') != ''
         AND EXISTS (SELECT 1 FROM main.records d WHERE d.tenant_id = ?1 AND d.type = ?2 AND {} AND {})",
        names("d.key", v, prefix),
        deleted("d")?
    );
    if prefix {
        // Another record with the same first key column stays: the reference still resolves.
        let survives = match mode {
            LoadMode::Mirror => {
                format!("EXISTS (SELECT 1 FROM temp.stage s WHERE s.type = ?2 AND {})", names("s.key", v, true))
            }
            _ => format!(
                "EXISTS (SELECT 1 FROM main.records r WHERE r.tenant_id = ?1 AND r.type = ?2 AND {}
                 AND NOT EXISTS (SELECT 1 FROM temp.stage s WHERE s.type = ?2 AND s.key = r.key AND s.kind = 1))
                 OR EXISTS (SELECT 1 FROM temp.stage s WHERE s.type = ?2 AND s.kind = 0 AND {})",
                names("r.key", v, true),
                names("s.key", v, true)
            ),
        };
        sql.push_str(&format!(" AND NOT ({survives})"));
    }
    if same_type {
        // A record deleted itself does not dangle.
        sql.push_str(&format!(" AND NOT {}", deleted("g")?));
    }
    Some(sql)
}

/// Referring records `g` of a package file left dangling by the staged package, which
/// deletes records of `?2` in `mode` (`Mirror`: a bulk file) and does not rewrite `g` itself.
fn package_dangling(mode: LoadMode) -> Option<String> {
    let deleted = match mode {
        LoadMode::Upsert => return None,
        LoadMode::Mirror => "NOT EXISTS (SELECT 1 FROM temp.stage s WHERE s.type = ?2 AND s.key = d.key)",
        LoadMode::Delta => {
            "EXISTS (SELECT 1 FROM temp.stage s WHERE s.type = ?2 AND s.key = d.key AND s.kind = 1)"
        }
    };
    Some(format!(
        "g.tenant_id = ?1 AND g.type = ?3 AND g.inactive = 0
         AND NOT EXISTS (SELECT 1 FROM temp.stage s WHERE s.type = ?3 AND s.key = g.key)
         AND EXISTS (SELECT 1 FROM main.records d WHERE d.tenant_id = ?1 AND d.type = ?2
             AND d.key = json_extract(g.data, ?4) AND d.inactive = 0 AND {deleted})"
    ))
}

/// A deactivated record is no longer a person's role; people left without one go.
pub(crate) fn drop_inactive_roles(c: &Connection, tenant_id: i64, type_name: &str) -> Result<()> {
    c.execute(
        "DELETE FROM main.person_roles WHERE tenant_id = ?1 AND type = ?2 AND EXISTS
         (SELECT 1 FROM main.records r WHERE r.tenant_id = ?1 AND r.type = ?2 AND r.key = person_roles.key
          AND r.inactive = 1)",
        params![tenant_id, type_name],
    )?;
    c.execute(
        "DELETE FROM main.people WHERE tenant_id = ?1 AND NOT EXISTS
         (SELECT 1 FROM main.person_roles pr WHERE pr.person_id = people.id)",
        [tenant_id],
    )?;
    Ok(())
}

impl Loader {
    /// The records of `r.from_type` left dangling when this import deletes records of
    /// `r.to_type` in `mode`: a condition on `g`, with ?1 tenant, ?2 `r.to_type`, ?3
    /// `r.from_type`, ?4 `r.path`. A single type's deletions erase records; a package's mark
    /// them (and a file the package rewrites is not left dangling by it).
    fn dangling_condition(&self, mode: LoadMode, r: &Referrer) -> Option<String> {
        if self.marks() {
            package_dangling(mode)
        } else {
            csv_dangling(mode, r.prefix, r.from_type == r.to_type)
        }
    }

    /// How many records of `r.from_type` would be left naming a record this import deletes
    /// (erases, or marks `tobedeleted`) of `r.to_type`, in `mode`.
    pub(crate) fn count_dangling(&self, mode: LoadMode, r: &Referrer) -> Result<u64> {
        let (conn, tenant_id, fresh) = self.parts();
        if fresh {
            return Ok(0);
        }
        let Some(cond) = self.dangling_condition(mode, r) else { return Ok(0) };
        Ok(conn.query_row(
            &format!("SELECT COUNT(*) FROM main.records g WHERE {cond}"),
            params![tenant_id, r.to_type, r.from_type, r.path],
            |row| row.get::<_, i64>(0),
        )? as u64)
    }

    /// Carries out the `deactivate` policies of the references to `types` (each loaded in its
    /// mode), in the import's transaction: a single type's referring records become inactive
    /// (after its rows are written, before its deletions); a package's become `tobedeleted`,
    /// as a bulk file's unlisted records do (before any of its rows are written).
    pub(crate) fn deactivate(
        &self,
        c: &Connection,
        types: &[(&str, LoadMode)],
        referrers: &[Referrer],
    ) -> Result<()> {
        let (_, tenant_id, _) = self.parts();
        let set = if self.marks() {
            "data = json_set(data, '$.status', 'tobedeleted'), hash = hash + 1, updated_import = ?5, inactive = 1"
        } else {
            "inactive = 1, updated_import = ?5"
        };
        for r in referrers.iter().filter(|r| r.on_delete == OnDelete::Deactivate) {
            let Some(&(_, mode)) = types.iter().find(|(t, _)| *t == r.to_type) else { continue };
            let Some(cond) = self.dangling_condition(mode, r) else { continue };
            c.execute(
                &format!(
                    "UPDATE main.records SET {set}
                     WHERE tenant_id = ?1 AND type = ?3 AND key IN (SELECT g.key FROM main.records g WHERE {cond})"
                ),
                params![tenant_id, r.to_type, r.from_type, r.path, self.import_id()],
            )?;
            drop_inactive_roles(c, tenant_id, &r.from_type)?;
        }
        Ok(())
    }
}
