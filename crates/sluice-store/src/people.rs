//! People and their roles. Linking runs inside an import's final transaction, after its
//! records are written: every record the import added or changed is (re)linked to a person,
//! roles whose record is gone are dropped, and people left without a role are removed.

use crate::{Result, Store};
use rusqlite::{Connection, params};
use sluice_core::import::PersonColumns;
use sluice_core::people::Contact;
use std::collections::HashMap;

/// At most this many "kept as separate people" warnings per import; then a count.
const MAX_WARNINGS: usize = 20;

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

/// Links the records of `type_name` written by `import_id` to people; returns warnings.
/// Records that are gone, or marked `tobedeleted`, stop being roles.
pub(crate) fn link_people(
    c: &Connection,
    tenant_id: i64,
    type_name: &str,
    import_id: i64,
    p: &PersonPaths,
) -> Result<Vec<String>> {
    c.execute(
        "DELETE FROM main.person_roles WHERE tenant_id = ?1 AND type = ?2 AND NOT EXISTS
         (SELECT 1 FROM main.records r WHERE r.tenant_id = ?1 AND r.type = ?2 AND r.key = person_roles.key
          AND r.inactive = 0)",
        params![tenant_id, type_name],
    )?;
    let mut changed = c.prepare(
        "SELECT key, COALESCE(line, 0), json_extract(data, ?4), json_extract(data, ?5), json_extract(data, ?6),
                json_extract(data, ?7), json_extract(data, ?8)
         FROM main.records WHERE tenant_id = ?1 AND type = ?2 AND updated_import = ?3
         AND inactive = 0",
    )?;
    let rows = changed
        .query_map(
            params![tenant_id, type_name, import_id, p.id, p.first_name, p.last_name, p.email, p.phone],
            |r| {
                let text = |i: usize| r.get::<_, Option<String>>(i).map(Option::unwrap_or_default);
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    text(2)?,
                    text(3)?,
                    text(4)?,
                    text(5)?,
                    text(6)?,
                ))
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let people: i64 =
        c.query_row("SELECT COUNT(*) FROM main.people WHERE tenant_id = ?1", [tenant_id], |r| r.get(0))?;
    // Many rows (a first import): hold the tenant's people in memory, one statement per row.
    // A few (a delta): ask the database for each.
    let mut index =
        if rows.len() as i64 * 8 > people { Index::load(c, tenant_id, &p.role)? } else { Index::Database };
    let mut warnings = Vec::new();
    let mut separate = 0usize;
    for (key, line, source_id, first, last, email, phone) in rows {
        let contact = Contact::new(&first, &last, &email, &phone);
        let known =
            if source_id.is_empty() { None } else { index.source(c, tenant_id, &p.role, &source_id)? };
        let person = match known {
            Some(id) => {
                // The source's id is the better identity: contact details follow it.
                c.prepare_cached(
                    "UPDATE main.people SET first_name = ?2, last_name = ?3, email = ?4, phone = ?5 WHERE id = ?1",
                )?
                .execute(params![id, contact.first_name, contact.last_name, contact.email, contact.phone])?;
                index.moved(id, contact);
                id
            }
            // Names alone are no identity (two students may share one), and a person who
            // holds this role under another source id is someone else.
            None => match index
                .contact(c, tenant_id, &contact)?
                .filter(|_| !contact.email.is_empty() || !contact.phone.is_empty())
            {
                Some(id)
                    if !source_id.is_empty() && index.holds_other_source(c, id, &p.role, &source_id)? =>
                {
                    index.create(c, tenant_id, &contact, line, &mut warnings, &mut separate)?
                }
                Some(id) => id,
                None => index.create(c, tenant_id, &contact, line, &mut warnings, &mut separate)?,
            },
        };
        if !source_id.is_empty() {
            index.remember(Some(source_id.clone()), None, None, person);
            index.holds(person, &p.role, &source_id);
        }
        c.prepare_cached(
            "INSERT INTO main.person_roles (tenant_id, type, key, person_id, role, source_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (tenant_id, type, key) DO UPDATE SET person_id = excluded.person_id, role = excluded.role,
                 source_id = excluded.source_id",
        )?
        .execute(params![tenant_id, type_name, key, person, p.role, source_id])?;
    }
    if separate > MAX_WARNINGS {
        warnings.push(format!(
            "... {} more people were kept separate for the same reason",
            separate - MAX_WARNINGS
        ));
    }
    c.execute(
        "DELETE FROM main.people WHERE tenant_id = ?1 AND NOT EXISTS
         (SELECT 1 FROM main.person_roles r WHERE r.person_id = people.id)",
        [tenant_id],
    )?;
    Ok(warnings)
}

/// Where linking looks people up: the database, or a copy in memory for large imports.
enum Index {
    Database,
    Memory(Box<People>),
}

/// The tenant's people as the database would answer for them, held for one import.
struct People {
    by_source: HashMap<String, i64>,
    /// (person, role) -> a source id they hold it under.
    source_of: HashMap<(i64, String), String>,
    /// person -> their contact details now.
    contact_of: HashMap<i64, Contact>,
    by_contact: HashMap<Contact, i64>,
    by_name: HashMap<(String, String), i64>,
}

impl Index {
    fn load(c: &Connection, tenant_id: i64, role: &str) -> Result<Self> {
        let mut by_source: HashMap<String, i64> = HashMap::new();
        let mut source_of = HashMap::new();
        let mut stmt = c.prepare(
            "SELECT source_id, MIN(person_id) FROM main.person_roles INDEXED BY person_roles_by_source
             WHERE tenant_id = ?1 AND role = ?2 AND source_id != '' GROUP BY source_id",
        )?;
        let mut q = stmt.query(params![tenant_id, role])?;
        while let Some(r) = q.next()? {
            let (source, person): (String, i64) = (r.get(0)?, r.get(1)?);
            source_of.entry((person, role.to_owned())).or_insert_with(|| source.clone());
            by_source.insert(source, person);
        }
        let (mut by_contact, mut by_name, mut contact_of) = (HashMap::new(), HashMap::new(), HashMap::new());
        let mut stmt = c.prepare(
            "SELECT id, first_name, last_name, email, phone FROM main.people WHERE tenant_id = ?1 ORDER BY id",
        )?;
        let mut q = stmt.query([tenant_id])?;
        while let Some(r) = q.next()? {
            let id: i64 = r.get(0)?;
            let contact =
                Contact { first_name: r.get(1)?, last_name: r.get(2)?, email: r.get(3)?, phone: r.get(4)? };
            by_name.entry((contact.first_name.clone(), contact.last_name.clone())).or_insert(id);
            contact_of.insert(id, contact.clone());
            by_contact.entry(contact).or_insert(id);
        }
        Ok(Index::Memory(Box::new(People { by_source, source_of, contact_of, by_contact, by_name })))
    }

    fn source(&self, c: &Connection, tenant_id: i64, role: &str, source_id: &str) -> Result<Option<i64>> {
        match self {
            Index::Memory(m) => Ok(m.by_source.get(source_id).copied()),
            // Without statistics the planner would walk the primary key: name the index.
            Index::Database => Ok(c
                .prepare_cached(
                    "SELECT MIN(person_id) FROM main.person_roles INDEXED BY person_roles_by_source
                     WHERE tenant_id = ?1 AND role = ?2 AND source_id = ?3",
                )?
                .query_row(params![tenant_id, role, source_id], |r| r.get(0))?),
        }
    }

    fn contact(&self, c: &Connection, tenant_id: i64, contact: &Contact) -> Result<Option<i64>> {
        match self {
            Index::Memory(m) => Ok(m.by_contact.get(contact).copied()),
            Index::Database => Ok(c
                .prepare_cached(
                    "SELECT MIN(id) FROM main.people WHERE tenant_id = ?1 AND last_name = ?2 AND first_name = ?3
                     AND email = ?4 AND phone = ?5",
                )?
                .query_row(
                    params![tenant_id, contact.last_name, contact.first_name, contact.email, contact.phone],
                    |r| r.get(0),
                )?),
        }
    }

    fn namesake(&self, c: &Connection, tenant_id: i64, name: &(String, String)) -> Result<Option<i64>> {
        match self {
            Index::Memory(m) => Ok(m.by_name.get(name).copied()),
            Index::Database => Ok(c
                .prepare_cached(
                    "SELECT MIN(id) FROM main.people WHERE tenant_id = ?1 AND last_name = ?3 AND first_name = ?2",
                )?
                .query_row(params![tenant_id, name.0, name.1], |r| r.get(0))?),
        }
    }

    /// A new person for `contact`; warns when someone of the same name exists.
    fn create(
        &mut self,
        c: &Connection,
        tenant_id: i64,
        contact: &Contact,
        line: i64,
        warnings: &mut Vec<String>,
        separate: &mut usize,
    ) -> Result<i64> {
        let name = (contact.first_name.clone(), contact.last_name.clone());
        // Looked up before the insert, which would otherwise be its own namesake.
        let namesake = self.namesake(c, tenant_id, &name)?;
        c.prepare_cached(
            "INSERT INTO main.people (tenant_id, first_name, last_name, email, phone) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![tenant_id, contact.first_name, contact.last_name, contact.email, contact.phone])?;
        let id = c.last_insert_rowid();
        if let Some(other) = namesake {
            *separate += 1;
            if warnings.len() < MAX_WARNINGS {
                let (email, phone): (String, String) =
                    c.query_row("SELECT email, phone FROM main.people WHERE id = ?1", [other], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?;
                let why = if contact.email.is_empty() && contact.phone.is_empty() {
                    "because neither has an email or phone to tell them apart by"
                } else {
                    "because the email or phone differ"
                };
                warnings.push(format!(
                    "line {line}: {} is kept as a separate person from person {other} of the same name ({}), {why}; \
                     use the same name, email and phone for every role of one person to merge them",
                    contact.describe(),
                    Contact::new(&name.0, &name.1, &email, &phone).describe()
                ));
            }
            self.remember(None, Some(contact.clone()), None, id);
        } else {
            self.remember(None, Some(contact.clone()), Some(name), id);
        }
        Ok(id)
    }

    /// Whether `person` holds `role` under a source id other than `source_id`.
    fn holds_other_source(&self, c: &Connection, person: i64, role: &str, source_id: &str) -> Result<bool> {
        match self {
            Index::Memory(m) => {
                Ok(m.source_of.get(&(person, role.to_owned())).is_some_and(|s| s != source_id))
            }
            Index::Database => Ok(c
                .prepare_cached(
                    "SELECT 1 FROM main.person_roles WHERE person_id = ?1 AND role = ?2 AND source_id != ''
                     AND source_id != ?3",
                )?
                .exists(params![person, role, source_id])?),
        }
    }

    fn holds(&mut self, person: i64, role: &str, source_id: &str) {
        if let Index::Memory(m) = self {
            m.source_of.entry((person, role.to_owned())).or_insert_with(|| source_id.to_owned());
        }
    }

    /// A person's contact details changed (the source id matched them): the memory copy
    /// answers as the database now would, the lowest id of a contact or name winning.
    fn moved(&mut self, id: i64, contact: Contact) {
        if let Index::Memory(m) = self {
            let People { contact_of, by_contact, by_name, .. } = &mut **m;
            if let Some(old) = contact_of.insert(id, contact.clone()) {
                let old_name = (old.first_name.clone(), old.last_name.clone());
                if by_contact.get(&old) == Some(&id) {
                    by_contact.remove(&old);
                }
                if by_name.get(&old_name) == Some(&id) {
                    by_name.remove(&old_name);
                }
            }
            let name = (contact.first_name.clone(), contact.last_name.clone());
            let lowest = |slot: &mut i64| *slot = (*slot).min(id);
            by_name.entry(name).and_modify(lowest).or_insert(id);
            by_contact.entry(contact).and_modify(lowest).or_insert(id);
        }
    }

    /// A person was created or matched: later rows of the same import find them.
    fn remember(
        &mut self,
        source: Option<String>,
        contact: Option<Contact>,
        name: Option<(String, String)>,
        id: i64,
    ) {
        if let Index::Memory(m) = self {
            let People { by_source, by_contact, by_name, contact_of, .. } = &mut **m;
            if let Some(c) = &contact {
                contact_of.entry(id).or_insert_with(|| c.clone());
            }
            if let Some(s) = source {
                by_source.entry(s).or_insert(id);
            }
            if let Some(c) = contact {
                by_contact.entry(c).or_insert(id);
            }
            if let Some(n) = name {
                by_name.entry(n).or_insert(id);
            }
        }
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

impl Store {
    /// A tenant's people, by name, each with their roles.
    pub fn people(&self, tenant: &str) -> Result<Vec<Person>> {
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

    /// How many records a tenant has of each type.
    pub fn record_counts(&self, tenant: &str) -> Result<Vec<(String, u64)>> {
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

    /// One page of a tenant's records of a type, in key order, optionally only those whose
    /// value at `filter.0` (a JSON path) is `filter.1`: (key, data) pairs.
    pub fn records_page(
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

    /// Records of `type_name` whose value at `json_path` (`$[2]` for a CSV type's third
    /// column, `$.classSourcedId` for a package file) is `value`: a student's guardians, a
    /// class's enrollments. Returns how many there were.
    pub fn records_where(
        &self,
        tenant: &str,
        type_name: &str,
        json_path: &str,
        value: &str,
        deactivated: Option<bool>,
        mut each: impl FnMut(&str, &str),
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
