//! Records one at a time and people on PostgreSQL ([`Records`], [`People`]): the SQLite
//! store's statements (`sluice-store/src/records.rs`, `people.rs`) in PostgreSQL's words.
//! Search is by prefix of folded text in `record_search`, kept by each import's loader
//! (`imports.rs`): the first word is four index ranges (the columns are `COLLATE "C"`, so a
//! range of bytes is a range of the index), later words filter what it found.

use crate::imports::{drop_inactive_roles, folded, json_text};
use crate::{PgStore, db, tenant_id};
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{GenericClient, Row};
use sluice_core::import::{ImportType, LayoutChange, OnDelete};
use sluice_core::people::Contact;
use sluice_store::{
    Deletion, FoundRecords, People, Person, PersonRole, RecordQuery, RecordSort, Records, Referrer,
    Referring, Relaid, Result, Settling, StoreError, StoredRecord, Tombstone, changes, held_deletion,
    key_ranges, now_ms, prefix_end, referred_value, refuse_drops, relaid_batch, search_words,
};

type Param = Box<dyn ToSql + Sync + Send>;

/// Rewrites every record of `type_name`, of every tenant, a batch of keys at a time.
fn relay(c: &mut impl GenericClient, type_name: &str, r: &sluice_core::import::Relayout) -> Result<Relaid> {
    let tenants: Vec<i64> =
        c.query("SELECT id FROM tenants", &[]).map_err(db)?.iter().map(|row| row.get(0)).collect();
    let read = c
        .prepare(
            "SELECT key, data, previous_data FROM records
             WHERE tenant_id = $1 AND type = $2 AND key > $3 ORDER BY key LIMIT 1000",
        )
        .map_err(db)?;
    // A batch in one statement: the rows read, rewritten here, written back by key.
    let write = c
        .prepare(
            "UPDATE records r SET data = u.data, hash = u.hash, previous_data = u.previous
             FROM unnest($3::text[], $4::text[], $5::bigint[], $6::text[]) AS u(key, data, hash, previous)
             WHERE r.tenant_id = $1 AND r.type = $2 AND r.key = u.key",
        )
        .map_err(db)?;
    let (mut records, mut lost) = (0u64, vec![0u64; r.dropped.len()]);
    for tenant in tenants {
        let mut after = String::new();
        loop {
            let rows: Vec<(String, String, Option<String>)> = c
                .query(&read, &[&tenant, &type_name, &after])
                .map_err(db)?
                .iter()
                .map(|row| (row.get(0), row.get(1), row.get(2)))
                .collect();
            let Some(last) = rows.last().map(|(k, _, _)| k.clone()) else { break };
            let full = rows.len() == 1000;
            let relaid = relaid_batch(r, rows, &mut lost);
            let mut columns = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for (key, data, hash, previous) in relaid {
                columns.0.push(key);
                columns.1.push(data);
                columns.2.push(hash);
                columns.3.push(previous);
            }
            records += columns.0.len() as u64;
            c.execute(&write, &[&tenant, &type_name, &columns.0, &columns.1, &columns.2, &columns.3])
                .map_err(db)?;
            if !full {
                break;
            }
            after = last;
        }
    }
    Ok(Relaid::of(type_name, r, records, &lost))
}

/// Parameters of a statement built as it goes: each `push` returns the value's `$N`, cast to
/// its type (a parameter compared only with another needs one).
#[derive(Default)]
struct Bind(Vec<Param>);

impl Bind {
    fn text(&mut self, v: &str) -> String {
        self.0.push(Box::new(v.to_owned()));
        format!("${}::text", self.0.len())
    }

    fn int(&mut self, v: i64) -> String {
        self.0.push(Box::new(v));
        format!("${}::bigint", self.0.len())
    }

    fn flag(&mut self, v: bool) -> String {
        self.0.push(Box::new(v));
        format!("${}::boolean", self.0.len())
    }

    fn values(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect()
    }
}

fn stored_record(r: &Row) -> StoredRecord {
    StoredRecord {
        key: r.get(0),
        data: r.get(1),
        inactive: r.get(2),
        created_import: r.get(3),
        updated_import: r.get(4),
        line: r.get(5),
        previous: None,
    }
}

/// The two statements of a search (how many match, one page), as SQLite's `Search` builds
/// them (see there for what each part is for); `keyed`: the type is found by key alone.
fn search_statement(
    tenant_id: i64,
    type_name: &str,
    q: &RecordQuery,
    words: &[String],
    count: bool,
    keyed: bool,
) -> (String, Bind) {
    let mut b = Bind::default();
    let (t, ty) = (b.int(tenant_id), b.text(type_name));
    let by_name = q.sort == RecordSort::Name && !count && !keyed;
    let (mut from, key, mut conds) = match words.first() {
        Some(w) => {
            let (lo, hi) = (b.text(w), b.text(&prefix_end(w)));
            let hits = if keyed {
                // Keys of ASCII in one case, then the search rows of the others (the same
                // rule as SQLite's: `sluice_store::key_ranges`).
                let mut hits: Vec<String> = key_ranges(w)
                    .iter()
                    .map(|from| {
                        let (klo, khi) = (b.text(from), b.text(&prefix_end(from)));
                        format!(
                            "SELECT key FROM records WHERE tenant_id = {t} AND type = {ty} AND key >= {klo} AND key < {khi}"
                        )
                    })
                    .collect();
                hits.push(format!(
                    "SELECT key FROM record_search WHERE tenant_id = {t} AND type = {ty} AND key_f >= {lo} AND key_f < {hi}"
                ));
                hits.join(" UNION ")
            } else {
                ["key_f", "last_f", "first_f", "email_f"]
                    .iter()
                    .map(|col| {
                        format!(
                            "SELECT key FROM record_search WHERE tenant_id = {t} AND type = {ty}
                             AND {col} >= {lo} AND {col} < {hi}"
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" UNION ")
            };
            let mut from = format!("({hits}) h");
            if !keyed && (words.len() > 1 || by_name) {
                from.push_str(&format!(
                    " JOIN record_search s ON s.tenant_id = {t} AND s.type = {ty} AND s.key = h.key"
                ));
            }
            (from, "h.key", vec![])
        }
        None if by_name => (
            "record_search s".to_owned(),
            "s.key",
            vec![format!("s.tenant_id = {t}"), format!("s.type = {ty}")],
        ),
        None => {
            ("records r".to_owned(), "r.key", vec![format!("r.tenant_id = {t}"), format!("r.type = {ty}")])
        }
    };
    let walks_records = from.starts_with("records");
    if let Some(d) = q.deactivated {
        let d = b.flag(d);
        conds.push(if walks_records {
            format!("r.inactive = {d}")
        } else {
            format!(
                "EXISTS (SELECT 1 FROM records a WHERE a.tenant_id = {t} AND a.type = {ty} AND a.inactive = {d}
                 AND a.key = {key})"
            )
        });
    }
    if let Some((path, value)) = &q.filter {
        if !walks_records {
            from.push_str(&format!(
                " JOIN records r ON r.tenant_id = {t} AND r.type = {ty} AND r.key = {key}"
            ));
        }
        let (path, value) = (b.text(path), b.text(value));
        conds.push(format!("{} = {value}", json_text("r.data", &path)));
    }
    for w in words.iter().skip(1) {
        let (lo, hi) = (b.text(w), b.text(&prefix_end(w)));
        if keyed {
            let folded = format!("({}) COLLATE \"C\"", folded(key));
            conds.push(format!("({folded} >= {lo} AND {folded} < {hi})"));
            continue;
        }
        conds.push(format!(
            "({})",
            ["key_f", "last_f", "first_f", "email_f"]
                .iter()
                .map(|col| format!("(s.{col} >= {lo} AND s.{col} < {hi})"))
                .collect::<Vec<_>>()
                .join(" OR ")
        ));
    }
    let wher = if conds.is_empty() { String::new() } else { format!("WHERE {}", conds.join(" AND ")) };
    if count {
        return (format!("SELECT COUNT(*) FROM {from} {wher}"), b);
    }
    let dir = if q.descending { "DESC" } else { "ASC" };
    let (names, inner, outer) = if by_name {
        (
            "s.last_f AS l, s.first_f AS f",
            format!("s.last_f {dir}, s.first_f {dir}, {key} {dir}"),
            format!("p.l {dir}, p.f {dir}, p.k {dir}"),
        )
    } else {
        ("'' AS l, '' AS f", format!("{key} {dir}"), format!("p.k {dir}"))
    };
    let n = if words.is_empty() { "NULL::bigint" } else { "COUNT(*) OVER ()" };
    let (limit, offset) = (b.int(crate::count_param(q.limit)), b.int(crate::count_param(q.offset)));
    let page = format!(
        "SELECT r.key, r.data, r.inactive, r.created_import, r.updated_import, r.line, p.n
         FROM (SELECT {key} AS k, {names}, {n} AS n FROM {from} {wher} ORDER BY {inner}
               LIMIT {limit} OFFSET {offset}) p
         JOIN records r ON r.tenant_id = {t} AND r.type = {ty} AND r.key = p.k
         ORDER BY {outer}"
    );
    (page, b)
}

fn person_by_id(c: &mut impl GenericClient, tenant_id: i64, id: i64) -> Result<Option<Person>> {
    let rows = c
        .query(
            "SELECT p.first_name, p.last_name, p.email, p.phone, r.role, r.type, r.key, r.source_id
             FROM people p JOIN person_roles r ON r.person_id = p.id
             WHERE p.tenant_id = $1 AND p.id = $2 ORDER BY r.role, r.type, r.key",
            &[&tenant_id, &id],
        )
        .map_err(db)?;
    let mut person: Option<Person> = None;
    for r in &rows {
        let role = PersonRole { role: r.get(4), type_name: r.get(5), key: r.get(6), source_id: r.get(7) };
        match &mut person {
            Some(p) => p.roles.push(role),
            None => {
                person = Some(Person {
                    id,
                    contact: Contact {
                        first_name: r.get(0),
                        last_name: r.get(1),
                        email: r.get(2),
                        phone: r.get(3),
                    },
                    roles: vec![role],
                })
            }
        }
    }
    Ok(person)
}

/// Whether deleting `key` leaves `r`'s records dangling (see SQLite's `dangles`).
fn dangles(c: &mut impl GenericClient, tenant_id: i64, r: &Referrer, key: &str) -> Result<bool> {
    if !r.prefix {
        return Ok(true);
    }
    let first = referred_value(r, key);
    Ok(c.query_opt(
        "SELECT 1 FROM records WHERE tenant_id = $1 AND type = $2 AND key != $3
         AND (key = $4 OR (key >= $4 || chr(31) AND key < $4 || chr(32))) LIMIT 1",
        &[&tenant_id, &r.to_type, &key, &first],
    )
    .map_err(db)?
    .is_none())
}

/// Records of `r.from_type` naming `key` (other than itself): (active count, up to `limit`).
fn referring_in(
    c: &mut impl GenericClient,
    tenant_id: i64,
    r: &Referrer,
    key: &str,
    limit: usize,
) -> Result<Referring> {
    let value = referred_value(r, key);
    let same = r.from_type == r.to_type;
    let names =
        format!("{} = $4::text AND NOT ($5::boolean AND key = $6::text)", json_text("data", "$3::text"));
    let active: i64 = c
        .query_one(
            &format!(
                "SELECT COUNT(*) FROM records WHERE tenant_id = $1 AND type = $2 AND {names} AND NOT inactive"
            ),
            &[&tenant_id, &r.from_type, &r.path, &value, &same, &key],
        )
        .map_err(db)?
        .get(0);
    let sample = c
        .query(
            &format!("SELECT key, inactive FROM records WHERE tenant_id = $1 AND type = $2 AND {names} ORDER BY key LIMIT $7"),
            &[&tenant_id, &r.from_type, &r.path, &value, &same, &key, &crate::count_param(limit)],
        )
        .map_err(db)?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    Ok(Referring { referrer: r.clone(), active: active.max(0) as u64, sample })
}

impl Records for PgStore {
    fn settle_layouts(&self, types: &[&ImportType], settling: Settling) -> Result<Vec<Relaid>> {
        let names: Vec<&str> = types.iter().map(|t| t.name.as_str()).collect();
        let layouts = |rows: Vec<Row>| -> Vec<Option<String>> {
            let found: std::collections::HashMap<String, String> =
                rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            names.iter().map(|n| found.get(*n).cloned()).collect()
        };
        const READ: &str = "SELECT type, columns FROM type_layouts WHERE type = ANY($1)";
        // Read first: nothing to do is the usual case, and takes no lock.
        let stored = layouts(self.with(|c| c.query(READ, &[&names]).map_err(db))?);
        if changes(types, &stored, settling)?.is_empty() || settling == Settling::Look {
            return Ok(Vec::new());
        }
        self.with(|c| {
            let mut tx = c.transaction().map_err(db)?;
            // One node at a time: the next finds the layouts current.
            tx.batch_execute("LOCK TABLE type_layouts IN EXCLUSIVE MODE").map_err(db)?;
            let stored = layouts(tx.query(READ, &[&names]).map_err(db)?);
            let mut done = Vec::new();
            for (t, change) in changes(types, &stored, settling)? {
                let layout = match change {
                    LayoutChange::Unchanged => continue,
                    LayoutChange::Remember { layout } => layout,
                    LayoutChange::Relay { relayout, layout } => {
                        let relaid = relay(&mut tx, &t.name, &relayout)?;
                        refuse_drops(&relaid, settling)?;
                        done.push(relaid);
                        layout
                    }
                };
                tx.execute(
                    "INSERT INTO type_layouts (type, columns) VALUES ($1, $2)
                     ON CONFLICT (type) DO UPDATE SET columns = excluded.columns",
                    &[&t.name, &layout],
                )
                .map_err(db)?;
            }
            tx.commit().map_err(db)?;
            Ok(done)
        })
    }

    fn search_records(&self, tenant: &str, type_name: &str, q: &RecordQuery) -> Result<FoundRecords> {
        self.with(|c| {
            let tenant_id = tenant_id(c, tenant)?;
            // One snapshot (rolled back when done): what the type was indexed as and the
            // search of it, which an import committing in between could both change.
            let mut c = c
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .map_err(db)?;
            let all_active = q.deactivated == Some(false)
                && c.query_opt(
                    "SELECT 1 FROM records WHERE tenant_id = $1 AND type = $2 AND inactive LIMIT 1",
                    &[&tenant_id, &type_name],
                )
                .map_err(db)?
                .is_none();
            let q = &if all_active { RecordQuery { deactivated: None, ..q.clone() } } else { q.clone() };
            let words = search_words(&q.q);
            // Found by key alone: a type last indexed without names (see SQLite's store).
            let keyed = c
                .query_opt(
                    "SELECT paths FROM record_search_columns WHERE tenant_id = $1 AND type = $2",
                    &[&tenant_id, &type_name],
                )
                .map_err(db)?
                .is_some_and(|r| r.get::<_, String>(0) == sluice_store::SearchPaths::default().signature());
            let (page, page_bind) = search_statement(tenant_id, type_name, q, &words, false, keyed);
            let rows = c.query(page.as_str(), &page_bind.values()).map_err(db)?;
            let counted = rows.first().and_then(|r| r.get::<_, Option<i64>>(6));
            let records = rows.iter().map(stored_record).collect();
            let total = match counted {
                Some(n) => n,
                None => {
                    let (count, bind) = search_statement(tenant_id, type_name, q, &words, true, keyed);
                    c.query_one(count.as_str(), &bind.values()).map_err(db)?.get(0)
                }
            };
            Ok(FoundRecords { total: total.max(0) as u64, records })
        })
    }

    fn record(&self, tenant: &str, type_name: &str, key: &str) -> Result<Option<StoredRecord>> {
        self.with(|c| {
            let tenant_id = tenant_id(c, tenant)?;
            let row = c
                .query_opt(
                    "SELECT key, data, inactive, created_import, updated_import, line, previous_import, previous_data
                     FROM records WHERE tenant_id = $1 AND type = $2 AND key = $3",
                    &[&tenant_id, &type_name, &key],
                )
                .map_err(db)?;
            Ok(row.map(|r| {
                let before: (Option<i64>, Option<String>) = (r.get(6), r.get(7));
                StoredRecord { previous: before.0.zip(before.1), ..stored_record(&r) }
            }))
        })
    }

    fn tombstone(&self, tenant: &str, type_name: &str, key: &str) -> Result<Option<Tombstone>> {
        self.with(|c| {
            let tenant_id = tenant_id(c, tenant)?;
            let row = c
                .query_opt(
                    "SELECT deleted_ms, deleted_by FROM deleted_records WHERE tenant_id = $1 AND type = $2 AND key = $3",
                    &[&tenant_id, &type_name, &key],
                )
                .map_err(db)?;
            Ok(row.map(|r| Tombstone {
                type_name: type_name.to_owned(),
                key: key.to_owned(),
                deleted_ms: r.get(0),
                deleted_by: r.get(1),
            }))
        })
    }

    fn person_of(&self, tenant: &str, type_name: &str, key: &str) -> Result<Option<Person>> {
        self.with(|c| {
            let tenant_id = tenant_id(c, tenant)?;
            let id = c
                .query_opt(
                    "SELECT person_id FROM person_roles WHERE tenant_id = $1 AND type = $2 AND key = $3",
                    &[&tenant_id, &type_name, &key],
                )
                .map_err(db)?;
            match id {
                Some(r) => person_by_id(c, tenant_id, r.get(0)),
                None => Ok(None),
            }
        })
    }

    fn person(&self, tenant: &str, id: i64) -> Result<Option<Person>> {
        self.with(|c| {
            let tenant_id = tenant_id(c, tenant)?;
            person_by_id(c, tenant_id, id)
        })
    }

    fn search_people(
        &self,
        tenant: &str,
        q: &str,
        limit: usize,
        offset: usize,
    ) -> Result<(u64, Vec<Person>)> {
        self.with(|c| {
            let tenant_id = tenant_id(c, tenant)?;
            let mut b = Bind::default();
            let mut conds = vec![format!("p.tenant_id = {}", b.int(tenant_id))];
            for w in search_words(q) {
                let (lo, hi) = (b.text(&w), b.text(&prefix_end(&w)));
                conds.push(format!(
                    "({})",
                    ["p.first_name", "p.last_name", "p.email"]
                        .iter()
                        .map(|col| {
                            let f = folded(col);
                            format!("({f} COLLATE \"C\" >= {lo} AND {f} COLLATE \"C\" < {hi})")
                        })
                        .collect::<Vec<_>>()
                        .join(" OR ")
                ));
            }
            let wher = conds.join(" AND ");
            let total: i64 = c
                .query_one(format!("SELECT COUNT(*) FROM people p WHERE {wher}").as_str(), &b.values())
                .map_err(db)?
                .get(0);
            let (l, o) = (b.int(crate::count_param(limit)), b.int(crate::count_param(offset)));
            let ids: Vec<i64> = c
                .query(
                    format!(
                        "SELECT p.id FROM people p WHERE {wher} ORDER BY p.last_name, p.first_name, p.id LIMIT {l} OFFSET {o}"
                    )
                    .as_str(),
                    &b.values(),
                )
                .map_err(db)?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let mut people = Vec::with_capacity(ids.len());
            for id in ids {
                people.extend(person_by_id(c, tenant_id, id)?);
            }
            Ok((total.max(0) as u64, people))
        })
    }

    fn referring(
        &self,
        tenant: &str,
        key: &str,
        referrers: &[Referrer],
        limit: usize,
    ) -> Result<Vec<Referring>> {
        self.with(|c| {
            let tenant_id = tenant_id(c, tenant)?;
            referrers.iter().map(|r| referring_in(c, tenant_id, r, key, limit)).collect()
        })
    }

    fn delete_records(
        &self,
        tenant: &str,
        type_name: &str,
        keys: &[String],
        by: &str,
        referrers: &[Referrer],
        confirmed: bool,
    ) -> Result<Deletion> {
        if keys.is_empty() {
            return Ok(Deletion::default());
        }
        self.with(|c| {
            let tenant_id = tenant_id(c, tenant)?;
            let mut tx = c.transaction().map_err(db)?;
            let mut keys: Vec<&String> = keys.iter().collect();
            keys.sort();
            keys.dedup();
            // The records are locked (in key order, as every deletion takes them) before what
            // refers to them is counted: an import applying meanwhile waits, or went first.
            for key in &keys {
                let exists = tx
                    .query_opt(
                        "SELECT 1 FROM records WHERE tenant_id = $1 AND type = $2 AND key = $3 FOR UPDATE",
                        &[&tenant_id, &type_name, key],
                    )
                    .map_err(db)?;
                if exists.is_none() {
                    return Err(StoreError::NoSuchRecord { type_name: type_name.to_owned(), key: key.to_string() });
                }
            }
            let mut held = Vec::new();
            let mut dangling: Vec<(&Referrer, &str, u64)> = Vec::new();
            for key in &keys {
                for r in referrers.iter().filter(|r| r.to_type == type_name) {
                    if !dangles(&mut tx, tenant_id, r, key)? {
                        continue;
                    }
                    let found = referring_in(&mut tx, tenant_id, r, key, 5)?;
                    if found.active == 0 {
                        continue;
                    }
                    if r.on_delete == OnDelete::Hold && !confirmed {
                        held.push(held_deletion(&found, type_name, key));
                    }
                    dangling.push((r, key.as_str(), found.active));
                }
            }
            if !held.is_empty() {
                return Err(StoreError::Referred(held.join("; ")));
            }
            let mut done = Deletion::default();
            for (r, key, n) in dangling {
                if r.on_delete == OnDelete::Deactivate {
                    let same = r.from_type == r.to_type;
                    done.deactivated += tx
                        .execute(
                            &format!(
                                "UPDATE records SET inactive = TRUE WHERE tenant_id = $1 AND type = $2 AND NOT inactive
                                 AND {} = $4::text AND NOT ($5::boolean AND key = $6::text)",
                                json_text("data", "$3::text")
                            ),
                            &[&tenant_id, &r.from_type, &r.path, &referred_value(r, key), &same, &key],
                        )
                        .map_err(db)?;
                    drop_inactive_roles(&mut tx, tenant_id, &r.from_type)?;
                } else {
                    done.kept += n;
                }
            }
            let now = now_ms();
            for key in &keys {
                let person: Option<i64> = tx
                    .query_opt(
                        "DELETE FROM person_roles WHERE tenant_id = $1 AND type = $2 AND key = $3 RETURNING person_id",
                        &[&tenant_id, &type_name, key],
                    )
                    .map_err(db)?
                    .map(|r| r.get(0));
                // The record's search row and photo go with it (the `records_erased` trigger).
                tx.execute("DELETE FROM records WHERE tenant_id = $1 AND type = $2 AND key = $3", &[
                    &tenant_id, &type_name, key,
                ])
                .map_err(db)?;
                tx.execute(
                    "INSERT INTO deleted_records (tenant_id, type, key, deleted_ms, deleted_by) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (tenant_id, type, key) DO UPDATE SET deleted_ms = excluded.deleted_ms,
                         deleted_by = excluded.deleted_by",
                    &[&tenant_id, &type_name, key, &now, &by],
                )
                .map_err(db)?;
                if let Some(person) = person {
                    tx.execute(
                        "DELETE FROM people WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM person_roles pr WHERE pr.person_id = $1)",
                        &[&person],
                    )
                    .map_err(db)?;
                }
                done.deleted.push(key.to_string());
            }
            tx.commit().map_err(db)?;
            Ok(done)
        })
    }
}

impl People for PgStore {
    fn people(&self, tenant: &str) -> Result<Vec<Person>> {
        self.with(|c| {
            let tenant_id = tenant_id(c, tenant)?;
            let rows = c
                .query(
                    "SELECT p.id, p.first_name, p.last_name, p.email, p.phone, r.role, r.type, r.key, r.source_id
                     FROM people p JOIN person_roles r ON r.person_id = p.id
                     WHERE p.tenant_id = $1 ORDER BY p.last_name, p.first_name, p.id, r.role, r.type, r.key",
                    &[&tenant_id],
                )
                .map_err(db)?;
            let mut people: Vec<Person> = Vec::new();
            for r in &rows {
                let id: i64 = r.get(0);
                let role = PersonRole { role: r.get(5), type_name: r.get(6), key: r.get(7), source_id: r.get(8) };
                match people.last_mut() {
                    Some(p) if p.id == id => p.roles.push(role),
                    _ => people.push(Person {
                        id,
                        contact: Contact { first_name: r.get(1), last_name: r.get(2), email: r.get(3), phone: r.get(4) },
                        roles: vec![role],
                    }),
                }
            }
            Ok(people)
        })
    }

    fn record_counts(&self, tenant: &str) -> Result<Vec<(String, u64)>> {
        self.with(|c| {
            let rows = c
                .query(
                    "SELECT r.type, COUNT(*) FROM records r JOIN tenants t ON t.id = r.tenant_id
                     WHERE t.name = $1 GROUP BY r.type ORDER BY r.type",
                    &[&tenant],
                )
                .map_err(db)?;
            Ok(rows.iter().map(|r| (r.get(0), r.get::<_, i64>(1).max(0) as u64)).collect())
        })
    }

    fn records_page(
        &self,
        tenant: &str,
        type_name: &str,
        filter: Option<(&str, &str)>,
        deactivated: Option<bool>,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<(String, String)>> {
        self.with(|c| {
            let (path, value) = filter.unwrap_or(("$", ""));
            let rows = c
                .query(
                    &format!(
                        "SELECT r.key, r.data FROM records r JOIN tenants t ON t.id = r.tenant_id
                         WHERE t.name = $1 AND r.type = $2 AND (NOT $3::boolean OR {} = $5::text)
                         AND ($8::boolean IS NULL OR r.inactive = $8)
                         ORDER BY r.key LIMIT $6 OFFSET $7",
                        json_text("r.data", "$4::text")
                    ),
                    &[
                        &tenant,
                        &type_name,
                        &filter.is_some(),
                        &path,
                        &value,
                        &crate::count_param(limit),
                        &crate::count_param(offset),
                        &deactivated,
                    ],
                )
                .map_err(db)?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn records_where(
        &self,
        tenant: &str,
        type_name: &str,
        json_path: &str,
        value: &str,
        deactivated: Option<bool>,
        each: &mut dyn FnMut(&str, &str),
    ) -> Result<u64> {
        self.with(|c| {
            let sql = format!(
                "SELECT r.key, r.data FROM records r JOIN tenants t ON t.id = r.tenant_id
                 WHERE t.name = $1 AND r.type = $2 AND {} = $4::text
                 AND ($5::boolean IS NULL OR r.inactive = $5) ORDER BY r.key",
                json_text("r.data", "$3::text")
            );
            let params: [&(dyn ToSql + Sync); 5] = [&tenant, &type_name, &json_path, &value, &deactivated];
            let mut rows = c.query_raw(sql.as_str(), params).map_err(db)?;
            let mut n = 0;
            while let Some(row) = rows.next().map_err(db)? {
                each(row.get(0), row.get(1));
                n += 1;
            }
            Ok(n)
        })
    }
}
