//! People and their roles. Linking runs inside an import's final transaction, after its
//! records are written: every record the import added or changed is (re)linked to a person,
//! roles whose record is gone are dropped, and people left without a role are removed.

use crate::{Result, Store};
use rusqlite::{Connection, Statement, params};
use sluice_core::import::PersonColumns;
use sluice_core::people::Contact;

/// At most this many "kept as separate people" warnings per import; then a count.
pub const MAX_SEPARATE_WARNINGS: usize = 20;

/// The warning for the people kept separate beyond the first [`MAX_SEPARATE_WARNINGS`].
pub fn more_separate(n: usize) -> String {
    format!("... {n} more people were kept separate for the same reason")
}

/// The warning of a record on `line` whose person `contact` is kept apart from `namesake`
/// (another person of the same name, with these email and phone).
pub fn separate_warning(line: i64, contact: &Contact, other: i64, email: &str, phone: &str) -> String {
    let why = if contact.email.is_empty() && contact.phone.is_empty() {
        "because neither has an email or phone to tell them apart by"
    } else {
        "because the email or phone differ"
    };
    format!(
        "line {line}: {} is kept as a separate person from person {other} of the same name ({}), {why}; \
         use the same name, email and phone for every role of one person to merge them",
        contact.describe(),
        Contact::new(&contact.first_name, &contact.last_name, email, phone).describe()
    )
}

/// Where a record's person is found in its JSON data: `$[2]` in a CSV type's array, `$.email`
/// in a package file's object. A missing path reads as empty.
pub struct PersonPaths {
    pub role: String,
    pub id: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone: String,
}

impl PersonPaths {
    pub fn of_columns(p: &PersonColumns) -> Self {
        let path = |i: Option<usize>| i.map_or("$.none".to_owned(), |i| format!("$[{i}]"));
        Self {
            role: p.role.clone(),
            id: path(p.id),
            first_name: path(Some(p.first_name)),
            last_name: path(Some(p.last_name)),
            email: path(p.email),
            phone: path(p.phone),
        }
    }

    /// OneRoster users: `sourcedId`, `givenName`, `familyName`, `email`, `phone`.
    pub fn oneroster_users() -> Self {
        Self {
            role: "oneroster-user".into(),
            id: "$.sourcedId".into(),
            first_name: "$.givenName".into(),
            last_name: "$.familyName".into(),
            email: "$.email".into(),
            phone: "$.phone".into(),
        }
    }
}

/// The page cache of the import's connection while linking: the people and role indexes
/// it probes and extends stay in memory up to this size, whatever the number of rows.
const LINK_CACHE_KIB: i64 = 64 * 1024;

/// Links the records of `type_name` written by `import_id` to people; returns warnings.
/// Records that are gone, or marked `tobedeleted`, stop being roles; a person left without a
/// role goes.
///
/// The changed records are read in key order through one cursor and linked one at a time
/// against the database (which sees every person and role linked before them): nothing is
/// collected, so memory does not grow with the import (see ARCHITECTURE.md, "Memory does not
/// grow with file size").
///
/// A package's delta (`package_delta`: OneRoster's) reads only what it listed: the records
/// it wrote active through its staged keys, the roles it ends are those of the rows it marks
/// `tobedeleted` (a package never erases a record, and what else makes a record inactive ends
/// its role itself: a deletion by hand, a referred record's deletion), and the people it may
/// leave without a role are those whose role it ended or moved to someone else. Any other
/// import (a bulk, a single type's file, which may erase records) walks every record it wrote,
/// every role of its type and every person of the tenant.
pub(crate) fn link_people(
    c: &Connection,
    tenant_id: i64,
    type_name: &str,
    import_id: i64,
    p: &PersonPaths,
    package_delta: bool,
) -> Result<Vec<String>> {
    let cache: i64 = c.pragma_query_value(None, "cache_size", |r| r.get(0))?;
    c.pragma_update(None, "cache_size", -LINK_CACHE_KIB)?;
    let linked = link(c, tenant_id, type_name, import_id, p, package_delta);
    c.pragma_update(None, "cache_size", cache)?;
    linked
}

fn link(
    c: &Connection,
    tenant_id: i64,
    type_name: &str,
    import_id: i64,
    p: &PersonPaths,
    package_delta: bool,
) -> Result<Vec<String>> {
    // Without roles of this type before, no one can lose a role here: no one is left without.
    let had_roles = c
        .prepare_cached("SELECT 1 FROM main.person_roles WHERE tenant_id = ?1 AND type = ?2")?
        .exists(params![tenant_id, type_name])?;
    // The people whose role this link ends or moves (a package delta's; see `link_people`).
    c.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS left_people (id INTEGER PRIMARY KEY);
         DELETE FROM temp.left_people;",
    )?;
    let listed_only = had_roles && package_delta;
    if listed_only {
        let ended = "FROM main.person_roles WHERE tenant_id = ?1 AND type = ?2 AND key IN
             (SELECT key FROM temp.stage WHERE type = ?2 AND kind = 1)";
        c.execute(
            &format!("INSERT OR IGNORE INTO temp.left_people (id) SELECT person_id {ended}"),
            params![tenant_id, type_name],
        )?;
        c.execute(&format!("DELETE {ended}"), params![tenant_id, type_name])?;
    } else if had_roles {
        c.execute(
            "DELETE FROM main.person_roles WHERE tenant_id = ?1 AND type = ?2 AND NOT EXISTS
             (SELECT 1 FROM main.records r WHERE r.tenant_id = ?1 AND r.type = ?2 AND r.key = person_roles.key
              AND r.inactive = 0)",
            params![tenant_id, type_name],
        )?;
    }
    let mut linker = Linker::new(c, tenant_id, type_name, &p.role, had_roles)?;
    // The records this import wrote active, in key order: a package's delta reads them through
    // its staged keys, each looked up (every record it wrote active is one it listed: what it
    // marks or deactivates otherwise is inactive); any other import walks the type's records.
    let mut changed = c.prepare(if listed_only {
        "SELECT r.key, COALESCE(r.line, 0), json_extract(r.data, ?4), json_extract(r.data, ?5),
                json_extract(r.data, ?6), json_extract(r.data, ?7), json_extract(r.data, ?8)
         FROM temp.stage s CROSS JOIN main.records r ON r.tenant_id = ?1 AND r.type = ?2 AND r.key = s.key
         WHERE s.type = ?2 AND r.updated_import = ?3 AND r.inactive = 0 ORDER BY s.key"
    } else {
        "SELECT key, COALESCE(line, 0), json_extract(data, ?4), json_extract(data, ?5), json_extract(data, ?6),
                json_extract(data, ?7), json_extract(data, ?8)
         FROM main.records WHERE tenant_id = ?1 AND type = ?2 AND updated_import = ?3
         AND inactive = 0 ORDER BY key"
    })?;
    let mut rows = changed.query(params![
        tenant_id,
        type_name,
        import_id,
        p.id,
        p.first_name,
        p.last_name,
        p.email,
        p.phone
    ])?;
    while let Some(r) = rows.next()? {
        let text = |i: usize| r.get::<_, Option<String>>(i).map(Option::unwrap_or_default);
        let (key, line): (String, i64) = (r.get(0)?, r.get(1)?);
        let source_id = text(2)?;
        let contact = Contact::new(&text(3)?, &text(4)?, &text(5)?, &text(6)?);
        linker.link(&key, line, &source_id, &contact)?;
    }
    let Linker { mut warnings, separate, .. } = linker;
    if separate > MAX_SEPARATE_WARNINGS {
        warnings.push(more_separate(separate - MAX_SEPARATE_WARNINGS));
    }
    if listed_only {
        c.execute(
            "DELETE FROM main.people WHERE id IN (SELECT id FROM temp.left_people) AND NOT EXISTS
             (SELECT 1 FROM main.person_roles r WHERE r.person_id = people.id)",
            [],
        )?;
    } else if had_roles {
        c.execute(
            "DELETE FROM main.people WHERE tenant_id = ?1 AND NOT EXISTS
             (SELECT 1 FROM main.person_roles r WHERE r.person_id = people.id)",
            [tenant_id],
        )?;
    }
    Ok(warnings)
}

/// The lookups of one record (see [`Linker::link`]); parameters ?1 tenant, ?2 role, ?3 source
/// id, ?4..?7 last name, first name, email, phone.
const LOOKUP: &str = "SELECT (SELECT MIN(person_id) FROM main.person_roles INDEXED BY person_roles_by_source
        WHERE tenant_id = ?1 AND role = ?2 AND source_id = ?3),
    (SELECT MIN(id) FROM main.people WHERE tenant_id = ?1 AND last_name = ?4 AND first_name = ?5
        AND email = ?6 AND phone = ?7),
    (SELECT MIN(id) FROM main.people WHERE tenant_id = ?1 AND last_name = ?4 AND first_name = ?5)";
/// [`LOOKUP`] for a record without a source id.
const LOOKUP_WITHOUT_SOURCE: &str = "SELECT NULL,
    (SELECT MIN(id) FROM main.people WHERE tenant_id = ?1 AND last_name = ?4 AND first_name = ?5
        AND email = ?6 AND phone = ?7),
    (SELECT MIN(id) FROM main.people WHERE tenant_id = ?1 AND last_name = ?4 AND first_name = ?5)";

/// Links one record at a time, asking the database, which holds every person created and
/// every role linked so far in the import, so later records find them.
struct Linker<'c> {
    c: &'c Connection,
    tenant_id: i64,
    type_name: &'c str,
    role: &'c str,
    warnings: Vec<String>,
    /// People kept separate from a namesake (a warning each, up to [`MAX_SEPARATE_WARNINGS`]).
    separate: usize,
    /// Records of the type were roles before this import: a record's role may exist already.
    had_roles: bool,
    /// The per-record statements, prepared once and held for the whole import. Not through
    /// the statement cache: it clears the bindings of a statement it takes back, and SQLite
    /// then parses and plans a statement with `col = ?` terms again at its next use.
    ///
    /// A role is looked up, then inserted or updated, by plain statements: as one upsert
    /// (`INSERT .. ON CONFLICT DO UPDATE`, which may write several rows and abort on a foreign
    /// key) SQLite opened a statement journal for each record and copied every B-tree page it
    /// touched into it, a file write per page (a quarter of a guardians import's time).
    lookup: Statement<'c>,
    lookup_without_source: Statement<'c>,
    update_person: Statement<'c>,
    insert_person: Statement<'c>,
    role_of: Statement<'c>,
    insert_role: Statement<'c>,
    update_role: Statement<'c>,
    holds_other: Statement<'c>,
    /// Notes a person whose role moved to someone else (`temp.left_people`).
    left: Statement<'c>,
}

impl<'c> Linker<'c> {
    fn new(
        c: &'c Connection,
        tenant_id: i64,
        type_name: &'c str,
        role: &'c str,
        had_roles: bool,
    ) -> Result<Self> {
        Ok(Self {
            c,
            tenant_id,
            type_name,
            role,
            warnings: Vec::new(),
            separate: 0,
            had_roles,
            lookup: c.prepare(LOOKUP)?,
            lookup_without_source: c.prepare(LOOKUP_WITHOUT_SOURCE)?,
            update_person: c.prepare(
                "UPDATE main.people SET first_name = ?2, last_name = ?3, email = ?4, phone = ?5 WHERE id = ?1
                 AND NOT (first_name = ?2 AND last_name = ?3 AND email = ?4 AND phone = ?5)",
            )?,
            insert_person: c.prepare(
                "INSERT INTO main.people (tenant_id, first_name, last_name, email, phone) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?,
            role_of: c.prepare(
                "SELECT person_id, role, source_id FROM main.person_roles WHERE tenant_id = ?1 AND type = ?2 AND key = ?3",
            )?,
            insert_role: c.prepare(
                "INSERT INTO main.person_roles (tenant_id, type, key, person_id, role, source_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?,
            update_role: c.prepare(
                "UPDATE main.person_roles SET person_id = ?4, role = ?5, source_id = ?6
                 WHERE tenant_id = ?1 AND type = ?2 AND key = ?3",
            )?,
            holds_other: c.prepare(
                "SELECT 1 FROM main.person_roles WHERE person_id = ?1 AND role = ?2 AND source_id != ''
                 AND source_id != ?3",
            )?,
            left: c.prepare("INSERT OR IGNORE INTO temp.left_people (id) VALUES (?1)")?,
        })
    }

    fn link(&mut self, key: &str, line: i64, source_id: &str, contact: &Contact) -> Result<()> {
        let t = self.tenant_id;
        let reachable = !contact.email.is_empty() || !contact.phone.is_empty();
        // One statement for the three lookups: the person holding the role under this source
        // id, the person with exactly these contact details, and a person of the same name.
        // Without statistics the planner would walk the primary key for the first: the index
        // is named. (Which lookups count is decided here, not by conditions on parameters in
        // the SQL, which SQLite would plan again for every new value.)
        let lookup = if source_id.is_empty() { &mut self.lookup_without_source } else { &mut self.lookup };
        let (known, by_contact, namesake): (Option<i64>, Option<i64>, Option<i64>) = lookup.query_row(
            params![
                t,
                self.role,
                source_id,
                contact.last_name,
                contact.first_name,
                contact.email,
                contact.phone
            ],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        // Names alone are no identity: a contact matches only with an email or phone.
        let by_contact = by_contact.filter(|_| reachable);
        let person = match (known, by_contact) {
            (Some(id), _) => {
                // The source's id is the better identity: contact details follow it.
                self.update_person.execute(params![
                    id,
                    contact.first_name,
                    contact.last_name,
                    contact.email,
                    contact.phone
                ])?;
                id
            }
            // A person who holds this role under another source id is someone else.
            (None, Some(id)) if source_id.is_empty() || !self.holds_other_source(id, source_id)? => id,
            (None, _) => self.create(contact, line, namesake)?,
        };
        self.set_role(key, person, source_id)
    }

    /// Makes record `key` the role of `person` under `source_id` (written only if it changed).
    fn set_role(&mut self, key: &str, person: i64, source_id: &str) -> Result<()> {
        let (t, type_name, role) = (self.tenant_id, self.type_name, self.role);
        let values = params![t, type_name, key, person, role, source_id];
        // Records are linked once each: without roles of the type before, none exists yet.
        let before: Option<(i64, String, String)> = if self.had_roles {
            self.role_of
                .query(params![t, type_name, key])?
                .next()?
                .map(|r| Ok::<_, rusqlite::Error>((r.get(0)?, r.get(1)?, r.get(2)?)))
                .transpose()?
        } else {
            None
        };
        match before {
            None => {
                self.insert_role.execute(values)?;
            }
            Some((p, r, s)) if p == person && r == role && s == source_id => {}
            Some((p, _, _)) => {
                self.update_role.execute(values)?;
                if p != person {
                    self.left.execute([p])?;
                }
            }
        }
        Ok(())
    }

    /// Whether `person` holds this role under a source id other than `source_id`.
    fn holds_other_source(&mut self, person: i64, source_id: &str) -> Result<bool> {
        Ok(self.holds_other.exists(params![person, self.role, source_id])?)
    }

    /// A new person for `contact`; warns when someone of the same name (`namesake`, looked up
    /// before the insert, which would otherwise be its own namesake) exists.
    fn create(&mut self, contact: &Contact, line: i64, namesake: Option<i64>) -> Result<i64> {
        let c = self.c;
        self.insert_person.execute(params![
            self.tenant_id,
            contact.first_name,
            contact.last_name,
            contact.email,
            contact.phone
        ])?;
        let id = c.last_insert_rowid();
        if let Some(other) = namesake {
            self.separate += 1;
            if self.warnings.len() < MAX_SEPARATE_WARNINGS {
                let (email, phone): (String, String) =
                    c.query_row("SELECT email, phone FROM main.people WHERE id = ?1", [other], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?;
                self.warnings.push(separate_warning(line, contact, other, &email, &phone));
            }
        }
        Ok(id)
    }
}

/// A person with every record that is one of their roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub id: i64,
    pub contact: Contact,
    /// (role, record type, record key, source id)
    pub roles: Vec<PersonRole>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonRole {
    pub role: String,
    pub type_name: String,
    pub key: String,
    pub source_id: String,
}

impl crate::roles::People for Store {
    fn people(&self, tenant: &str) -> Result<Vec<Person>> {
        self.with(|c| {
            let tenant_id = crate::tenant_id(c, tenant)?;
            let mut stmt = c.prepare(
                "SELECT p.id, p.first_name, p.last_name, p.email, p.phone, r.role, r.type, r.key, r.source_id
                 FROM main.people p JOIN main.person_roles r ON r.person_id = p.id
                 WHERE p.tenant_id = ?1 ORDER BY p.last_name, p.first_name, p.id, r.role, r.type, r.key",
            )?;
            let mut people: Vec<Person> = Vec::new();
            let mut rows = stmt.query([tenant_id])?;
            while let Some(r) = rows.next()? {
                let id: i64 = r.get(0)?;
                let role = PersonRole {
                    role: r.get(5)?,
                    type_name: r.get(6)?,
                    key: r.get(7)?,
                    source_id: r.get(8)?,
                };
                match people.last_mut() {
                    Some(p) if p.id == id => p.roles.push(role),
                    _ => people.push(Person {
                        id,
                        contact: Contact {
                            first_name: r.get(1)?,
                            last_name: r.get(2)?,
                            email: r.get(3)?,
                            phone: r.get(4)?,
                        },
                        roles: vec![role],
                    }),
                }
            }
            Ok(people)
        })
    }

    fn record_counts(&self, tenant: &str) -> Result<Vec<(String, u64)>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT r.type, COUNT(*) FROM main.records r JOIN main.tenants t ON t.id = r.tenant_id
                 WHERE t.name = ?1 GROUP BY r.type ORDER BY r.type",
            )?;
            let rows = stmt
                .query_map([tenant], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
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
            let mut stmt = c.prepare(
                "SELECT r.key, r.data FROM main.records r JOIN main.tenants t ON t.id = r.tenant_id
                 WHERE t.name = ?1 AND r.type = ?2 AND (?3 = 0 OR json_extract(r.data, ?4) = ?5)
                 AND (?8 IS NULL OR r.inactive = ?8)
                 ORDER BY r.key LIMIT ?6 OFFSET ?7",
            )?;
            let rows = stmt
                .query_map(
                    params![
                        tenant,
                        type_name,
                        filter.is_some(),
                        path,
                        value,
                        limit as i64,
                        offset as i64,
                        deactivated
                    ],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
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
            let mut stmt = c.prepare(
                "SELECT r.key, r.data FROM main.records r JOIN main.tenants t ON t.id = r.tenant_id
                 WHERE t.name = ?1 AND r.type = ?2 AND json_extract(r.data, ?3) = ?4
                 AND (?5 IS NULL OR r.inactive = ?5) ORDER BY r.key",
            )?;
            let mut rows = stmt.query(params![tenant, type_name, json_path, value, deactivated])?;
            let mut n = 0;
            while let Some(row) = rows.next()? {
                each(&row.get::<_, String>(0)?, &row.get::<_, String>(1)?);
                n += 1;
            }
            Ok(n)
        })
    }
}
