use super::*;

/// The conformance suite every backend runs, on SQLite (in memory and on disk, WAL).
#[test]
fn sqlite_passes_the_conformance_suite() {
    conformance::run(&|| Store::open_in_memory().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    conformance::run(&|| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Store::open(&dir.path().join(format!("sluice-{i}.db"))).unwrap()
    });
}

/// The conformance suite's loading checks, on SQLite: imports load on a database file.
#[test]
fn sqlite_passes_the_loading_checks() {
    let dir = tempfile::tempdir().unwrap();
    conformance::loading(&Store::open(&dir.path().join("sluice.db")).unwrap());
    conformance::imported_once(&Store::open(&dir.path().join("once.db")).unwrap());
    conformance::saved_exports(&Store::open(&dir.path().join("exports.db")).unwrap());
    conformance::records(&Store::open(&dir.path().join("records.db")).unwrap());
    conformance::package_people(&Store::open(&dir.path().join("package_people.db")).unwrap());
    conformance::package_relisting(&Store::open(&dir.path().join("package_relisting.db")).unwrap());
    conformance::layouts(&Store::open(&dir.path().join("layouts.db")).unwrap());
}

/// The conformance suite's photos check, on SQLite (a database file: imports load records).
#[test]
fn sqlite_passes_the_photos_check() {
    let dir = tempfile::tempdir().unwrap();
    conformance::photos(&Store::open(&dir.path().join("photos.db")).unwrap());
}

fn tenant(name: &str) -> TenantName {
    TenantName::parse(name).unwrap()
}

/// A settings change of `KEY=VALUE` pairs, as `sluice tenant set` takes them.
fn change(pairs: &[(&str, &str)]) -> SettingsChange {
    let types = sluice_core::import::ImportTypes::default();
    let cx = sluice_core::SettingsContext { types: &types, allow_private_webhooks: false };
    let mut c = SettingsChange::default();
    for (k, v) in pairs {
        c.set(k, v, cx).unwrap();
    }
    c
}

fn folders() -> Vec<FolderName> {
    FolderName::parse_list("students,employees").unwrap()
}

#[test]
fn tenants_round_trip_and_names_are_unique() {
    let s = Store::open_in_memory().unwrap();
    let t = s.add_tenant(&tenant("acme"), &folders()).unwrap();
    assert_eq!(t.name.as_str(), "acme");
    assert_eq!(t.layout.import_folders(), folders().as_slice());
    assert!(!t.disabled && t.password.is_none());
    assert!(matches!(s.add_tenant(&tenant("acme"), &folders()), Err(StoreError::TenantExists(_))));
    s.add_tenant(&tenant("beta"), &[]).unwrap();
    let names: Vec<_> = s.tenants().unwrap().into_iter().map(|t| t.name.to_string()).collect();
    assert_eq!(names, ["acme", "beta"]);
}

#[test]
fn disable_password_and_folders_update_only_that_tenant() {
    let s = Store::open_in_memory().unwrap();
    s.add_tenant(&tenant("acme"), &folders()).unwrap();
    s.add_tenant(&tenant("beta"), &folders()).unwrap();
    s.set_disabled(&tenant("acme"), true).unwrap();
    s.set_password(&tenant("acme"), &PasswordHash::create("pw").unwrap()).unwrap();
    s.change_settings("acme", &change(&[("folders", "guardians")])).unwrap();
    let a = s.require_tenant("acme").unwrap();
    assert!(a.disabled);
    assert!(a.password.unwrap().verify("pw"));
    assert_eq!(a.layout.import_folders()[0].as_str(), "guardians");
    let b = s.require_tenant("beta").unwrap();
    assert!(!b.disabled && b.password.is_none());
    assert!(matches!(s.set_disabled(&tenant("nobody"), true), Err(StoreError::NoSuchTenant(_))));
}

#[test]
fn keys_belong_to_one_tenant_and_are_not_duplicated() {
    let s = Store::open_in_memory().unwrap();
    s.add_tenant(&tenant("acme"), &folders()).unwrap();
    s.add_tenant(&tenant("beta"), &folders()).unwrap();
    let key = AuthorizedKey {
        algorithm: "ssh-ed25519".into(),
        key_base64: "AAAAC3NzaC1lZDI1NTE5AAAAIExample".into(),
        comment: "sis@district".into(),
        fingerprint: "SHA256:abc".into(),
    };
    s.add_key(&tenant("acme"), &key).unwrap();
    assert!(matches!(s.add_key(&tenant("acme"), &key), Err(StoreError::KeyExists { .. })));
    assert_eq!(s.keys("acme").unwrap(), vec![key]);
    assert!(s.keys("beta").unwrap().is_empty());
}

#[test]
fn upload_events_are_recorded_per_tenant_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    {
        let s = Store::open(&path).unwrap();
        s.add_tenant(&tenant("acme"), &folders()).unwrap();
        for i in 0..3 {
            s.record_upload(&UploadEvent {
                tenant: tenant("acme"),
                path: VirtualPath::resolve(format!("/students/{i}.csv").as_bytes()).unwrap(),
                size: i,
                sha256: Sha256Hex::from_digest(&[i as u8; 32]),
                at_ms: 1,
                snapshot: None,
            })
            .unwrap();
        }
    }
    // Reopening runs migrations again as a no-op and sees the durable rows.
    let s = Store::open(&path).unwrap();
    let ups = s.uploads("acme").unwrap();
    assert_eq!(ups.len(), 3);
    assert_eq!(ups[2].event.path.to_string(), "/students/2.csv");
    assert_eq!(ups[2].event.size, 2);
    assert!(ups[0].id < ups[1].id);
}

#[test]
fn refuses_a_database_from_a_newer_sluice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    Connection::open(&path).unwrap().pragma_update(None, "user_version", 999).unwrap();
    assert!(matches!(Store::open(&path), Err(StoreError::TooNew { found: 999, .. })));
}

#[test]
fn one_tenants_backlog_of_deliveries_does_not_crowd_out_anothers() {
    let s = Store::open_in_memory().unwrap();
    for name in ["busy", "quiet"] {
        s.add_tenant(&tenant(name), &folders()).unwrap();
        s.change_settings(name, &change(&[("notify.webhook", "https://hooks.example/x")])).unwrap();
    }
    for _ in 0..30 {
        let id = s.record_failed_import("busy", "-", "a.csv", "upload", None, "no type").unwrap();
        assert_eq!(s.queue_deliveries(id).unwrap(), 1);
    }
    let id = s.record_failed_import("quiet", "-", "b.csv", "upload", None, "no type").unwrap();
    s.queue_deliveries(id).unwrap();
    let due = s.claim_deliveries(20, std::time::Duration::from_secs(60)).unwrap();
    let count = |t: &str| due.iter().filter(|d| d.tenant == t).count();
    assert_eq!((count("busy"), count("quiet")), (20, 1));
    assert!(due.windows(2).all(|w| w[0].id < w[1].id), "oldest first");
}

#[test]
fn a_key_or_account_whose_tenant_row_is_gone_is_nobodys_not_the_operators() {
    let s = Store::open_in_memory().unwrap();
    s.add_tenant(&tenant("acme"), &folders()).unwrap();
    s.add_api_key(Some("acme"), "sis", "slk_1234", "aa", &crate::KeyScope::default()).unwrap();
    s.add_api_key(None, "ops", "slk_5678", "bb", &crate::KeyScope::default()).unwrap();
    s.add_account(Some("acme"), "ann@acme.org", Role::Admin, "x").unwrap();
    // An operator deleting the tenant by hand in the sqlite3 shell, foreign keys off.
    s.with(|c| {
        c.execute_batch(
            "PRAGMA foreign_keys = OFF; DELETE FROM tenants WHERE name = 'acme'; PRAGMA foreign_keys = ON;",
        )?;
        Ok(())
    })
    .unwrap();
    assert!(s.api_key_by_hash("aa").unwrap().is_none());
    assert!(s.account_by_email("ann@acme.org").unwrap().is_none());
    assert_eq!(s.api_key_by_hash("bb").unwrap().unwrap().owner, KeyOwner::Operator);
}

/// A large import holds the write lock while it applies. Recording an upload waits
/// for it, but lets go of the store meanwhile: logins and lookups go on.
#[test]
fn a_write_waiting_for_the_lock_does_not_hold_up_the_rest_of_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    let s = std::sync::Arc::new(Store::open(&path).unwrap());
    s.add_tenant(&tenant("acme"), &folders()).unwrap();
    let importer = rusqlite::Connection::open(&path).unwrap();
    importer.execute_batch("BEGIN IMMEDIATE").unwrap();
    let writer = {
        let s = s.clone();
        std::thread::spawn(move || {
            s.record_upload(&UploadEvent {
                tenant: tenant("acme"),
                path: VirtualPath::resolve(b"/students/a.csv").unwrap(),
                size: 1,
                sha256: Sha256Hex::from_digest(&[1; 32]),
                at_ms: 1,
                snapshot: None,
            })
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let s = s.clone();
        std::thread::spawn(move || tx.send(s.tenant("acme").map(|t| t.is_some())).unwrap());
    }
    let read = rx.recv_timeout(std::time::Duration::from_secs(5));
    assert!(matches!(read, Ok(Ok(true))), "a lookup waited behind the blocked write: {read:?}");
    assert!(!writer.is_finished(), "the upload waits for the lock");
    importer.execute_batch("COMMIT").unwrap();
    assert!(writer.join().unwrap().is_ok());
    assert_eq!(s.uploads("acme").unwrap().len(), 1);
}

/// What the pipeline writes at the end of an import, with nothing but a status and a mode.
fn outcome(status: ImportStatus, apply: Option<sluice_core::import::LoadMode>) -> Outcome<'static> {
    Outcome::new(status, Counts::default(), apply)
}

fn load(s: &Store, id: i64, keys: &[&str]) -> Box<dyn crate::Loading> {
    let mut l = s.loader("acme", "students", id).unwrap();
    for (i, k) in keys.iter().enumerate() {
        l.stage(i as u64 + 2, k, &format!("[\"{k}\"]"), i as i64, StageKind::Load).unwrap();
    }
    l
}

/// An approval and a newer import that race: the approval planned before the newer import
/// committed, and commits after it. The check is inside the approval's write transaction, so
/// it is refused there, naming the newer import, and the newer records stay.
#[test]
fn an_approval_committing_after_a_newer_import_is_refused_in_its_transaction() {
    use sluice_core::import::LoadMode::Mirror;
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("sluice.db")).unwrap();
    s.add_tenant(&tenant("acme"), &folders()).unwrap();
    let import = || s.create_import("acme", "students", "students.csv", "upload", None, None).unwrap();
    let first = import();
    load(&s, first, &["S1", "S2", "S3", "S4"]).commit(outcome(ImportStatus::Complete, Some(Mirror))).unwrap();
    let held = import();
    load(&s, held, &["S1"]).commit(outcome(ImportStatus::Held, None)).unwrap();
    assert_eq!(s.import(held).unwrap().unwrap().status, ImportStatus::Held);

    // The approval re-plans the held file...
    let approval = load(&s, held, &["S1"]);
    // ...while a newer full file is applied.
    let newer = import();
    load(&s, newer, &["S1", "S2", "S3", "S4", "S5"])
        .commit(outcome(ImportStatus::Complete, Some(Mirror)))
        .unwrap();
    let old = s.import(held).unwrap().unwrap();
    assert_eq!((old.status, old.superseded_by), (ImportStatus::Superseded, Some(newer)));
    let said = s.import(newer).unwrap().unwrap().warnings.join("\n");
    assert!(said.contains(&format!("supersedes held import {held} (students.csv)")), "{said}");
    assert_eq!(s.superseded_by(newer).unwrap(), [held]);

    let refused = approval.commit(outcome(ImportStatus::Complete, Some(Mirror)));
    assert!(
        matches!(refused, Err(StoreError::Superseded { id, by }) if id == held && by == newer),
        "{refused:?}"
    );
    assert_eq!(s.record_count("acme", "students").unwrap(), 5, "the newer records stay");
    assert_eq!(s.import(held).unwrap().unwrap().status, ImportStatus::Superseded);
}

/// A record deactivated because what it named was deleted is not there for references, nor
/// counted among the records a safeguard's percentages are taken of.
#[test]
fn deactivated_records_are_neither_referable_nor_counted_as_existing() {
    use sluice_core::import::LoadMode::Mirror;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    let s = Store::open(&path).unwrap();
    s.add_tenant(&tenant("acme"), &folders()).unwrap();
    let first = s.create_import("acme", "students", "students.csv", "upload", None, None).unwrap();
    load(&s, first, &["S1", "S2", "S3", "S4"]).commit(outcome(ImportStatus::Complete, Some(Mirror))).unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("UPDATE records SET inactive = 1 WHERE key IN ('S3', 'S4')")
        .unwrap();
    let next = s.create_import("acme", "students", "students.csv", "upload", None, None).unwrap();
    let mut l = s.loader("acme", "students", next).unwrap();
    assert_eq!(l.existing(), 2, "two active students");
    assert!(l.reference_exists("students", "S1").unwrap());
    assert!(!l.reference_exists("students", "S3").unwrap(), "a deactivated record is not referable");
    l.abandon().unwrap();
}

#[test]
fn a_refused_settings_change_changes_nothing() {
    let s = Store::open_in_memory().unwrap();
    s.add_tenant(&tenant("acme"), &folders()).unwrap();
    // A schedule trigger without a schedule, with other valid settings in the same change.
    let refused =
        change(&[("trigger", "schedule"), ("notify.email", "ann@acme.org"), ("folders", "guardians")]);
    assert!(matches!(s.change_settings("acme", &refused), Err(StoreError::Refused(_))));
    let t = s.require_tenant("acme").unwrap();
    assert_eq!(t.trigger, Trigger::OnUpload);
    assert!(t.notify_emails.is_empty());
    assert_eq!(t.layout.import_folders(), folders().as_slice());
    assert!(matches!(s.change_settings("nobody", &change(&[])), Err(StoreError::NoSuchTenant(_))));
}

#[test]
fn concurrent_settings_changes_do_not_lose_each_others_update() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    Store::open(&path).unwrap().add_tenant(&tenant("acme"), &folders()).unwrap();
    // Two processes' worth of stores, each changing a different setting of the same tenant.
    let writers: Vec<_> = [("notify.email", "a{}@acme.org"), ("folders", "f{}")]
        .into_iter()
        .map(|(key, pattern)| {
            let store = Store::open(&path).unwrap();
            std::thread::spawn(move || {
                for i in 0..60 {
                    let value = pattern.replace("{}", &i.to_string());
                    store.change_settings("acme", &change(&[(key, &value)])).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let t = Store::open(&path).unwrap().require_tenant("acme").unwrap();
    assert_eq!(t.notify_emails, ["a59@acme.org"]);
    assert_eq!(t.layout.import_folders()[0].as_str(), "f59");
}

/// A reference names a record by its whole key, or by the first of several key columns; the
/// check is one search of the primary key, never a walk of the referred type's records.
#[test]
fn references_resolve_by_whole_key_or_first_column_through_the_primary_key() {
    use sluice_core::import::LoadMode::Mirror;
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("sluice.db")).unwrap();
    s.add_tenant(&tenant("acme"), &folders()).unwrap();
    let first = s.create_import("acme", "students", "students.csv", "upload", None, None).unwrap();
    load(&s, first, &["S1", "T1\u{1f}SCH1", "T2\u{1f}"])
        .commit(outcome(ImportStatus::Complete, Some(Mirror)))
        .unwrap();
    let next = s.create_import("acme", "students", "students.csv", "upload", None, None).unwrap();
    let mut l = s.loader("acme", "students", next).unwrap();
    assert!(l.reference_exists("students", "S1").unwrap());
    assert!(!l.reference_exists("students", "S").unwrap(), "a prefix of a key is not a first column");
    assert!(!l.reference_exists("students", "S10").unwrap());
    assert!(l.reference_exists("students", "T1").unwrap(), "the first of several key columns");
    assert!(l.reference_exists("students", "T1\u{1f}SCH1").unwrap());
    assert!(!l.reference_exists("students", "T").unwrap());
    assert!(l.reference_exists("students", "T2").unwrap());
    assert!(!l.reference_exists("employees", "S1").unwrap(), "another type's record");
    let plan: Vec<String> = {
        let c = s.import_connection(16_000).unwrap();
        let mut stmt =
            c.prepare(&format!("EXPLAIN QUERY PLAN {}", crate::imports::REFERENCE_EXISTS)).unwrap();
        stmt.query_map(params![1, "students", "S1"], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    };
    assert!(
        plan.iter().any(|p| p.contains("USING PRIMARY KEY (tenant_id=? AND type=? AND key>? AND key<?)")),
        "{plan:?}"
    );
    l.abandon().unwrap();
}

/// `Imports` and `People` are dyn-compatible: a backend can be held as `&dyn Imports`.
#[test]
fn imports_and_people_work_as_trait_objects() {
    use sluice_core::import::LoadMode::Mirror;
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("sluice.db")).unwrap();
    s.add_tenant(&tenant("acme"), &folders()).unwrap();
    let id = s.create_import("acme", "students", "students.csv", "upload", None, None).unwrap();
    load(&s, id, &["S1", "S2"]).commit(outcome(ImportStatus::Complete, Some(Mirror))).unwrap();
    let (imports, people): (&dyn Imports, &dyn People) = (&s, &s);
    let mut keys = Vec::new();
    assert_eq!(imports.records("acme", "students", None, &mut |k, _| keys.push(k.to_owned())).unwrap(), 2);
    assert_eq!(keys, ["S1", "S2"]);
    let mut found = Vec::new();
    let n =
        people.records_where("acme", "students", "$[0]", "S2", None, &mut |k, _| found.push(k.to_owned()));
    assert_eq!((n.unwrap(), found), (1, vec!["S2".to_owned()]));
}

/// The full scans in a search's query plan: `h` (the first word's hits), `(subquery-N)` (the
/// same, counted by the window), `p` (the page's keys, at most `limit`) and the constant row of
/// a count made of two counts are not.
fn full_scans(plan: &[String]) -> Vec<&String> {
    plan.iter()
        .filter(|l| {
            l.starts_with("SCAN")
                && !["SCAN h", "SCAN p", "SCAN CONSTANT ROW"].contains(&l.as_str())
                && !l.starts_with("SCAN (subquery-")
                && !l.contains("USING")
        })
        .collect()
}

/// Search stays indexed: on 20,000 students loaded through the loader, each kind of search
/// (a word, several words, none, sorted by key or name, with the deactivated filter) reads
/// index ranges only (no full scan of `records` or `record_search` in its query plan), and
/// finds what it should.
#[test]
fn searching_twenty_thousand_records_reads_index_ranges_only() {
    use crate::{RecordQuery, RecordSort};
    use sluice_core::import::LoadMode::Mirror;
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("sluice.db")).unwrap();
    s.add_tenant(&tenant("acme"), &folders()).unwrap();
    let id = s.create_import("acme", "students", "students.csv", "upload", None, None).unwrap();
    let mut l = s.loader("acme", "students", id).unwrap();
    let last = ["Smith", "Jones", "García", "Nguyen", "Müller"];
    for i in 0..20_000u64 {
        let data = format!(
            "[\"{}\",\"First{}\",\"{}{}\",\"s{i}@acme.org\"]",
            100_000 + i,
            i % 97,
            last[i as usize % 5],
            i % 13
        );
        l.stage(i + 2, &(100_000 + i).to_string(), &data, i as i64, StageKind::Load).unwrap();
    }
    let person = crate::conformance::student_columns();
    l.commit(Outcome { person: Some(&person), ..outcome(ImportStatus::Complete, Some(Mirror)) }).unwrap();

    let query =
        |q: &str, sort: RecordSort| RecordQuery { q: q.into(), sort, limit: 50, ..RecordQuery::default() };
    let found = s.search_records("acme", "students", &query("müller1", RecordSort::Name)).unwrap();
    // i % 5 == 4 and i % 13 in {1, 10, 11, 12}: 4 of every 65.
    assert_eq!(
        found.total,
        (0..20_000).filter(|i| i % 5 == 4 && [1, 10, 11, 12].contains(&(i % 13))).count() as u64
    );
    assert_eq!(found.records.len(), 50);
    let one = s.search_records("acme", "students", &query("S19999@ACME", RecordSort::Key)).unwrap();
    assert_eq!(one.records.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["119999"]);
    let all = s.search_records("acme", "students", &query("", RecordSort::Key)).unwrap();
    assert_eq!(all.total, 20_000);

    for (q, sort, deactivated) in [
        ("smi", RecordSort::Key, None),
        ("smi", RecordSort::Name, Some(false)),
        ("garcía first1", RecordSort::Name, None),
        ("1000", RecordSort::Key, Some(false)),
        ("", RecordSort::Name, None),
        ("", RecordSort::Key, Some(false)),
    ] {
        let plan = crate::records::explain_search(
            &s,
            "acme",
            "students",
            &RecordQuery { deactivated, ..query(q, sort) },
        )
        .unwrap();
        let scans = full_scans(&plan);
        assert!(scans.is_empty(), "{q:?} {sort:?}: a full scan in {plan:#?}");
        if deactivated.is_some() && !q.is_empty() {
            assert!(
                plan.iter().any(|l| l.contains("records_inactive (tenant_id=? AND type=? AND key=?)")),
                "{q:?}: the deactivated filter probes the small index, not the records: {plan:#?}"
            );
        }
        if !q.is_empty() {
            for index in [
                "record_search_by_key",
                "record_search_by_name",
                "record_search_by_first",
                "record_search_by_email",
            ] {
                assert!(plan.iter().any(|l| l.contains(index)), "{q:?}: {index} not used in {plan:#?}");
            }
        }
    }
}

/// The records an import writes and the search rows it keeps as it writes them. After a type's
/// first import (indexed whole): renamed, new, unchanged, deleted, delta-deleted records and
/// an inactive one listed again, in mirror and delta, and a type whose records were all
/// deleted by hand imported again. At each step the search rows are exactly those of the
/// type's records indexed whole, and an unchanged record's row is not touched (the import
/// indexed what it wrote, not the type); the records' columns say who wrote what.
#[test]
fn search_rows_kept_as_imports_write_are_those_of_the_records() {
    use sluice_core::import::LoadMode;
    type Row = (String, String, String, String, String);
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("sluice.db")).unwrap();
    s.add_tenant(&tenant("acme"), &folders()).unwrap();
    let person = crate::conformance::student_columns();
    let data =
        |key: &str, first: &str| format!("[\"{key}\",\"{first}\",\"Lee{first}\",\"{first}@Acme.org\"]");
    // (key, first name) per row; the last name and email follow from them.
    let import = |ty: &str, rows: &[(String, String)], deleted: &[String], mode: LoadMode| -> i64 {
        let id = s.create_import("acme", ty, "f.csv", "upload", None, None).unwrap();
        let mut l = s.loader("acme", ty, id).unwrap();
        for (i, (key, first)) in rows.iter().enumerate() {
            let data = data(key, first);
            let hash = data.bytes().fold(7i64, |h, b| h.wrapping_mul(31).wrapping_add(b as i64));
            l.stage(i as u64 + 2, key, &data, hash, StageKind::Load).unwrap();
        }
        for (i, key) in deleted.iter().enumerate() {
            l.stage(rows.len() as u64 + i as u64 + 2, key, &format!("[\"{key}\"]"), 0, StageKind::Delete)
                .unwrap();
        }
        let named = (ty == "students").then_some(&person);
        l.commit(Outcome { person: named, ..outcome(ImportStatus::Complete, Some(mode)) }).unwrap();
        id
    };
    let sql = |q: &str, ty: &str, key: &str| {
        s.with(|c| Ok(c.execute(q, params![ty, key])?)).unwrap();
    };
    let record = |ty: &str, key: &str| -> (String, Option<String>, i64, i64, bool) {
        s.with(|c| {
            Ok(c.query_row(
                "SELECT data, previous_data, created_import, updated_import, inactive FROM records
                 WHERE type = ?1 AND key = ?2",
                params![ty, key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )?)
        })
        .unwrap()
    };
    let rows_of = |ty: &str| -> (Vec<Row>, Vec<Row>) {
        s.with(|c| {
            let read = |sql: &str| -> rusqlite::Result<Vec<Row>> {
                let mut stmt = c.prepare(sql)?;
                let rows =
                    stmt.query_map([ty], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?;
                rows.collect()
            };
            let kept = read(
                "SELECT key, key_f, first_f, last_f, email_f FROM record_search WHERE type = ?1 ORDER BY key",
            )?;
            let whole = if ty == "students" {
                read(
                    "SELECT key, sluice_fold(key), sluice_fold(json_extract(data, '$[1]')),
                         sluice_fold(json_extract(data, '$[2]')), sluice_fold(json_extract(data, '$[3]'))
                     FROM records WHERE type = ?1 ORDER BY key",
                )?
            } else {
                read(
                    "SELECT key, sluice_fold(key), '', '', '' FROM records
                     WHERE type = ?1 AND sluice_key_needs_row(key) ORDER BY key",
                )?
            };
            Ok((kept, whole))
        })
        .unwrap()
    };
    for ty in ["students", "courses"] {
        let key = |i: usize| if i.is_multiple_of(3) { format!("Ab{i}") } else { format!("ab{i}") };
        let mut rows: Vec<(String, String)> = (0..300).map(|i| (key(i), format!("First{i}"))).collect();
        let first = import(ty, &rows, &[], LoadMode::Mirror);
        let (kept, whole) = rows_of(ty);
        assert_eq!(kept, whole, "{ty}: the first import, indexed whole");
        // Renamed (one to a name beyond ASCII), new, unlisted (deleted), one inactive listed
        // again as it was, the rest unchanged; one unchanged record's search row marked.
        for (i, row) in rows.iter_mut().enumerate().take(40) {
            row.1 = if i == 0 { "Élodie".into() } else { format!("Renamed{i}") };
        }
        rows.truncate(280);
        rows.extend((300..310).map(|i| (key(i), format!("New{i}"))));
        sql("UPDATE records SET inactive = 1 WHERE type = ?1 AND key = ?2", ty, &key(250));
        sql("UPDATE record_search SET key_f = 'marked' WHERE type = ?1 AND key = ?2", ty, &key(201));
        let second = import(ty, &rows, &[], LoadMode::Mirror);
        let marked: String = s
            .with(|c| {
                Ok(c.query_row(
                    "SELECT key_f FROM record_search WHERE type = ?1 AND key = ?2",
                    params![ty, key(201)],
                    |r| r.get(0),
                )?)
            })
            .unwrap();
        assert_eq!(marked, "marked", "{ty}: an unchanged record's search row is left alone");
        sql("UPDATE record_search SET key_f = sluice_fold(key) WHERE type = ?1 AND key = ?2", ty, &key(201));
        let (kept, whole) = rows_of(ty);
        assert_eq!(whole.len(), if ty == "students" { 290 } else { 98 });
        assert_eq!(kept, whole, "{ty}: a mirror import's writes and deletions");
        let renamed = record(ty, &key(3));
        assert_eq!(renamed, (data(&key(3), "Renamed3"), Some(data(&key(3), "First3")), first, second, false));
        assert_eq!(
            record(ty, &key(201)),
            (data(&key(201), "First201"), None, first, first, false),
            "unchanged"
        );
        let again = record(ty, &key(250));
        assert_eq!((again.3, again.4), (second, false), "{ty}: listed again, active again");
        assert_eq!(record(ty, &key(305)), (data(&key(305), "New305"), None, second, second, false));
        // A delta: renamed again, deleted, new.
        let changed: Vec<(String, String)> =
            (40..60).map(|i| (key(i), format!("Delta{i}"))).chain([(key(400), "Zoë".to_owned())]).collect();
        let deleted: Vec<String> = (60..70).map(key).collect();
        import(ty, &changed, &deleted, LoadMode::Delta);
        let (kept, whole) = rows_of(ty);
        assert_eq!(whole.len(), if ty == "students" { 281 } else { 94 });
        assert_eq!(kept, whole, "{ty}: a delta's writes and deletions");
        // Every record deleted by hand (search rows with them, as `delete_records` does; the
        // type stays indexed the same way), then imported again: written whole, indexed so.
        sql("DELETE FROM record_search WHERE type = ?1 AND ?2 = ?2", ty, "");
        sql("DELETE FROM records WHERE type = ?1 AND ?2 = ?2", ty, "");
        import(ty, &rows, &[], LoadMode::Mirror);
        let (kept, whole) = rows_of(ty);
        assert_eq!(whole.len(), if ty == "students" { 290 } else { 98 });
        assert_eq!(kept, whole, "{ty}: a type with no records left, imported again");
    }
}

/// A type without names (no person columns) is found by key alone: its first import writes
/// search rows only for the keys that mix cases or go beyond ASCII (it wrote one per record,
/// five index entries each), a later import keeps them so, a type indexed the earlier way (a
/// row per record) is searched through them until its next import indexes it whole, and its
/// searches read index ranges only.
#[test]
fn a_type_without_names_keeps_search_rows_only_for_keys_that_mix_cases() {
    use crate::{RecordQuery, RecordSort};
    use sluice_core::import::LoadMode::Mirror;
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("sluice.db")).unwrap();
    s.add_tenant(&tenant("acme"), &folders()).unwrap();
    let load = |keys: &[String]| {
        let id = s.create_import("acme", "courses", "courses.csv", "upload", None, None).unwrap();
        let mut l = s.loader("acme", "courses", id).unwrap();
        for (i, key) in keys.iter().enumerate() {
            l.stage(i as u64 + 2, key, &format!("[\"{key}\"]"), i as i64, StageKind::Load).unwrap();
        }
        l.commit(outcome(ImportStatus::Complete, Some(Mirror))).unwrap();
    };
    let mut keys: Vec<String> = (0..20_000).map(|i| format!("c{i}")).collect();
    keys.extend((0..100).map(|i| format!("S{i:04}")));
    keys.extend((0..10).map(|i| format!("Math-{i}")));
    keys.extend((0..3).map(|i| format!("ÉCOLE-{i}")));
    load(&keys);
    let rows = |s: &Store| -> i64 {
        s.with(|c| {
            Ok(c.query_row("SELECT count(*) FROM record_search WHERE type = 'courses'", [], |r| r.get(0))?)
        })
        .unwrap()
    };
    assert_eq!(rows(&s), 13, "only Math-0..9 and ÉCOLE-0..2");
    let query =
        |q: &str| RecordQuery { q: q.into(), sort: RecordSort::Name, limit: 50, ..RecordQuery::default() };
    assert_eq!(s.search_records("acme", "courses", &query("math")).unwrap().total, 10);
    assert_eq!(s.search_records("acme", "courses", &query("c1999")).unwrap().total, 11);
    assert_eq!(s.search_records("acme", "courses", &query("C1999")).unwrap().total, 11, "any case");
    assert_eq!(s.search_records("acme", "courses", &query("s00")).unwrap().total, 100, "upper case keys");
    assert_eq!(s.search_records("acme", "courses", &query("éc")).unwrap().total, 3);
    // Again with more upper case: the import's writes keep the rule.
    keys.extend((0..5).map(|i| format!("Art-{i}")));
    load(&keys);
    assert_eq!(rows(&s), 18);
    assert_eq!(s.search_records("acme", "courses", &query("art")).unwrap().total, 5);
    // A database from before: the type indexed with a row per record, as `||`.
    s.with(|c| {
        c.execute_batch(
            "UPDATE record_search_columns SET paths = '||' WHERE type = 'courses';
             INSERT OR IGNORE INTO record_search (tenant_id, type, key, key_f, first_f, last_f, email_f)
                 SELECT tenant_id, type, key, sluice_fold(key), '', '', '' FROM records WHERE type = 'courses';",
        )?;
        Ok(())
    })
    .unwrap();
    assert_eq!(rows(&s), keys.len() as i64);
    assert_eq!(s.search_records("acme", "courses", &query("s00")).unwrap().total, 100);
    // Searched through its rows (not the records' key): a row gone, its record is not found.
    s.with(|c| Ok(c.execute("DELETE FROM record_search WHERE type = 'courses' AND key = 'S0005'", [])?))
        .unwrap();
    assert_eq!(s.search_records("acme", "courses", &query("s0005")).unwrap().total, 0, "through its rows");
    load(&keys);
    assert_eq!(rows(&s), 18, "its next import indexed it whole, the new way");
    assert_eq!(s.search_records("acme", "courses", &query("s00")).unwrap().total, 100);
    assert_eq!(s.search_records("acme", "courses", &query("s0005")).unwrap().total, 1, "through its key");
    for q in ["math", "c19 c199", "s00", ""] {
        let plan = crate::records::explain_search(&s, "acme", "courses", &query(q)).unwrap();
        let scans = full_scans(&plan);
        assert!(scans.is_empty(), "{q:?}: a full scan in {plan:#?}");
    }
}

/// The benchmark of BENCHMARKS.md ("Records search"): 1,000,000 students with varied names
/// loaded through the loader, then prefix searches as the API makes them (active records, a
/// page of 50 with the total), timed. Run in a release build:
/// `cargo test --release -p sluice-store -- --ignored --nocapture search_benchmark`.
#[test]
#[ignore]
fn search_benchmark_on_a_million_students() {
    use crate::{RecordQuery, RecordSort};
    use sluice_core::import::LoadMode::Mirror;
    use std::time::Instant;
    const N: u64 = 1_000_000;
    let syllables = [
        "an", "bel", "car", "dor", "el", "fin", "gar", "hol", "ing", "jen", "kal", "lor", "mar", "nor", "ol",
        "par", "quin", "ros", "sal", "tor", "ul", "ven", "wil", "xan", "yor", "zel", "bra", "cle", "dru",
        "fro",
    ];
    // A deterministic spread of names: three syllables each for last and first names.
    let name = |i: u64, salt: u64| {
        let mut x = i.wrapping_mul(6364136223846793005).wrapping_add(salt) ^ (i >> 7);
        let mut s = String::new();
        for _ in 0..3 {
            s.push_str(syllables[(x % 30) as usize]);
            x /= 30;
        }
        let mut c = s.chars();
        c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
    };
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("sluice.db")).unwrap();
    s.add_tenant(&tenant("acme"), &folders()).unwrap();
    let id = s.create_import("acme", "students", "students.csv", "upload", None, None).unwrap();
    let started = Instant::now();
    let mut l = s.loader("acme", "students", id).unwrap();
    for i in 0..N {
        let (first, last) = (name(i, 17), name(i, 1_000_003));
        let data = format!("[\"{}\",\"{first}\",\"{last}\",\"{}.{}@acme.org\"]", 100_000_000 + i, first, i);
        l.stage(i + 2, &(100_000_000 + i).to_string(), &data, i as i64, StageKind::Load).unwrap();
    }
    let person = crate::conformance::student_columns();
    let staged = started.elapsed();
    l.commit(Outcome { person: Some(&person), ..outcome(ImportStatus::Complete, Some(Mirror)) }).unwrap();
    eprintln!("loaded {N} students in {:?} (staged in {staged:?})", started.elapsed());
    // The same file again, 1% of it changed: what a nightly mirror import costs.
    let id = s.create_import("acme", "students", "students.csv", "upload", None, None).unwrap();
    let again = Instant::now();
    let mut l = s.loader("acme", "students", id).unwrap();
    for i in 0..N {
        let first = if i % 100 == 0 { "Changed".to_owned() } else { name(i, 17) };
        let last = name(i, 1_000_003);
        let data =
            format!("[\"{}\",\"{first}\",\"{last}\",\"{}.{}@acme.org\"]", 100_000_000 + i, name(i, 17), i);
        let hash = if i % 100 == 0 { -(i as i64) - 1 } else { i as i64 };
        l.stage(i + 2, &(100_000_000 + i).to_string(), &data, hash, StageKind::Load).unwrap();
    }
    let staged = again.elapsed();
    l.commit(Outcome { person: Some(&person), ..outcome(ImportStatus::Complete, Some(Mirror)) }).unwrap();
    eprintln!("loaded them again, 1% changed, in {:?} (staged in {staged:?})", again.elapsed());
    // What the search index adds to a first import's apply: indexing every record again.
    let c = rusqlite::Connection::open(dir.path().join("sluice.db")).unwrap();
    crate::records::register_functions(&c).unwrap();
    c.pragma_update(None, "cache_size", -16_000).unwrap();
    let t = Instant::now();
    c.execute_batch(
        "BEGIN; DELETE FROM record_search;
         INSERT INTO record_search SELECT tenant_id, type, key, sluice_fold(key), sluice_fold(json_extract(data, '$[1]')),
             sluice_fold(json_extract(data, '$[2]')), sluice_fold(json_extract(data, '$[3]')) FROM records;
         ROLLBACK;",
    )
    .unwrap();
    eprintln!("indexing them for search: {:?}", t.elapsed());
    for (what, words) in [
        (
            "3-letter name prefix",
            (0..100).map(|i| name(i * 7919, 1_000_003)[..3].to_lowercase()).collect::<Vec<_>>(),
        ),
        ("6-letter name prefix", (0..100).map(|i| name(i * 7919, 1_000_003)[..6].to_lowercase()).collect()),
        ("whole last name", (0..100).map(|i| name(i * 7919, 1_000_003)).collect()),
        (
            "last and first name",
            (0..100).map(|i| format!("{} {}", name(i * 7919, 1_000_003), name(i * 7919, 17))).collect(),
        ),
        (
            "key prefix (5 digits)",
            (0..100).map(|i| (100_000_000 + i * 9_973).to_string()[..5].to_owned()).collect(),
        ),
        ("no words, by name", (0..100).map(|_| String::new()).collect()),
    ] {
        for sort in [RecordSort::Key, RecordSort::Name] {
            if words[0].is_empty() && sort == RecordSort::Key {
                continue;
            }
            let mut times = Vec::new();
            let mut total = 0;
            for q in &words {
                let query = RecordQuery {
                    q: q.clone(),
                    sort,
                    deactivated: Some(false),
                    limit: 50,
                    ..RecordQuery::default()
                };
                let t = Instant::now();
                let found = s.search_records("acme", "students", &query).unwrap();
                times.push(t.elapsed());
                total += found.total;
            }
            times.sort();
            eprintln!(
                "{what}, by {sort:?}: p50 {:?}, p95 {:?}, max {:?} (mean matches {})",
                times[50],
                times[95],
                times[99],
                total / words.len() as u64
            );
        }
    }
}

/// The audit log is append-only for the application: a row cannot be changed.
#[test]
fn the_audit_log_refuses_changes_to_its_rows() {
    use crate::roles::Audit;
    use sluice_core::audit::{Actor, ActorKind, AuditOutcome, NewAuditEntry};
    let store = Store::open_in_memory().unwrap();
    let actor = Actor { kind: ActorKind::Cli, name: "root".into(), source: "local".into() };
    let id = store
        .record_audit(&NewAuditEntry {
            tenant: None,
            actor: &actor,
            action: "admin.password",
            target: "admin",
            outcome: AuditOutcome::Done,
            before: None,
            after: None,
        })
        .unwrap();
    let changed =
        store.with(|c| Ok(c.execute("UPDATE audit_log SET actor = 'someone else' WHERE id = ?1", [id])?));
    assert!(changed.unwrap_err().to_string().contains("append-only"));
    let removed = store.with(|c| Ok(c.execute("DELETE FROM audit_log WHERE id = ?1", [id])?));
    assert!(removed.unwrap_err().to_string().contains("append-only"), "a fresh entry cannot be deleted");
    assert_eq!(
        store.audit_entries(&sluice_core::audit::AuditFilter { limit: 10, ..Default::default() }).unwrap()[0]
            .actor
            .name,
        "root"
    );
}

/// An account has at most three live reset links: asking again keeps none (no email goes).
#[test]
fn an_account_has_at_most_three_live_reset_links() {
    let s = Store::open_in_memory().unwrap();
    s.add_account(None, "ops@vendor.example", Role::Admin, "x").unwrap();
    for i in 0..crate::roles::MAX_LIVE_RESETS {
        assert!(s.start_password_reset("ops@vendor.example", &format!("h{i}"), 60_000).unwrap().is_some());
    }
    assert!(s.start_password_reset("ops@vendor.example", "one-too-many", 60_000).unwrap().is_none());
    assert!(s.password_reset_is_live("h0").unwrap() && !s.password_reset_is_live("one-too-many").unwrap());
    // Using one spends them all; a changed password spends any asked for after.
    assert!(s.finish_password_reset("h1", "new-hash").unwrap().is_some());
    assert!(!s.password_reset_is_live("h0").unwrap() && !s.password_reset_is_live("h2").unwrap());
    assert!(s.start_password_reset("ops@vendor.example", "later", 60_000).unwrap().is_some());
    s.set_account_password("ops@vendor.example", "newer-hash").unwrap();
    assert!(!s.password_reset_is_live("later").unwrap());
}

/// Migration 43 on a store written before it: the records' state in the two new indexes,
/// counted and searched by state as before (named and keyed types, with and without words; a
/// search row whose record is gone is no active hit), `records_by_state` gone, and a tenant's
/// removal still taking its rows and only its own.
#[test]
fn a_store_from_before_migration_43_counts_and_searches_records_by_state_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let c = Connection::open(&path).unwrap();
        crate::records::register_functions(&c).unwrap();
        crate::migrations::migrate_up_to(&c, 42).unwrap();
        c.execute_batch(
            r#"INSERT INTO tenants (id, name, folders, created_ms) VALUES (1, 'acme', 'students', 0), (2, 'beta', 'students', 0);
               INSERT INTO records (tenant_id, type, key, data, hash, created_import, updated_import, inactive)
               VALUES (1, 'students', 'S1', '{"first":"Ann"}', 1, 1, 1, 0),
                      (1, 'students', 'S2', '{"first":"Bob"}', 2, 1, 1, 1),
                      (2, 'students', 'S1', '{"first":"Cy"}', 3, 1, 1, 0),
                      (1, 'enrollments', 'E1', '{}', 4, 1, 1, 0),
                      (1, 'enrollments', 'E2', '{}', 5, 1, 1, 1);
               INSERT INTO record_search (tenant_id, type, key, key_f, first_f, last_f, email_f)
               VALUES (1, 'students', 'S1', 's1', 'ann', '', ''), (1, 'students', 'S2', 's2', 'bob', '', ''),
                      (2, 'students', 'S1', 's1', 'cy', '', ''), (1, 'students', 'S9', 's9', 'zed', '', '');
               INSERT INTO record_search_columns (tenant_id, type, paths)
               VALUES (1, 'students', 'x'), (2, 'students', 'x'), (1, 'enrollments', 'key');"#,
        )
        .unwrap();
    }
    let s = Store::open(&path).unwrap();
    s.with(|c| {
        let indexes = c
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name IN ('records', 'record_search') ORDER BY name")?
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        assert!(indexes.contains(&"records_keys".to_owned()) && indexes.contains(&"records_inactive".to_owned()), "{indexes:?}");
        assert!(!indexes.contains(&"records_by_state".to_owned()), "{indexes:?}");
        assert_eq!(crate::records::records_in_state(c, 1, "students")?, (2, 1));
        Ok(())
    })
    .unwrap();
    let found_in = |tenant: &str, type_name: &str, q: &str, deactivated: Option<bool>| {
        let q = RecordQuery { q: q.into(), limit: 10, deactivated, ..RecordQuery::default() };
        let found = s.search_records(tenant, type_name, &q).unwrap();
        (found.total, found.records.into_iter().map(|r| r.key).collect::<Vec<_>>())
    };
    let found =
        |tenant: &str, q: &str, deactivated: Option<bool>| found_in(tenant, "students", q, deactivated);
    let keys = |k: &[&str]| k.iter().map(|k| (*k).to_owned()).collect::<Vec<_>>();
    assert_eq!(found("acme", "bob", None), (1, keys(&["S2"])));
    assert_eq!(found("acme", "bob", Some(true)), (1, keys(&["S2"])));
    assert_eq!(found("acme", "bob", Some(false)), (0, keys(&[])));
    assert_eq!(found("acme", "s", Some(false)), (1, keys(&["S1"])));
    assert_eq!(found("acme", "zed", Some(false)), (0, keys(&[])), "a search row without its record");
    assert_eq!(found("acme", "", Some(false)), (1, keys(&["S1"])));
    assert_eq!(found("acme", "", Some(true)), (1, keys(&["S2"])));
    assert_eq!(found("acme", "", None), (2, keys(&["S1", "S2"])));
    // A type found by key alone: its keys' ranges in `records_keys`, its state in the two indexes.
    assert_eq!(found_in("acme", "enrollments", "e", None), (2, keys(&["E1", "E2"])));
    assert_eq!(found_in("acme", "enrollments", "e", Some(false)), (1, keys(&["E1"])));
    assert_eq!(found_in("acme", "enrollments", "E2", Some(true)), (1, keys(&["E2"])));
    assert_eq!(found_in("acme", "enrollments", "", Some(false)), (1, keys(&["E1"])));
    s.remove_tenant(&TenantName::parse("acme").unwrap()).unwrap();
    s.with(|c| {
        let left: Vec<i64> = c
            .prepare("SELECT tenant_id FROM record_search")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        assert_eq!(left, [2], "the removed tenant's search rows went, the other's stayed");
        Ok(())
    })
    .unwrap();
    assert_eq!(found("beta", "cy", None).0, 1);
}
