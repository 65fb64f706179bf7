//! The conformance suite of `sluice-store`, run on PostgreSQL: each check on a database of
//! its own, created for it and dropped after, on the server at `127.0.0.1:5432` (trust auth,
//! as on this project's machines). Without a server the tests are skipped, unless
//! `SLUICE_REQUIRE_EXTERNAL=1` (CI) says it must be there.

use crate::PgStore;
use postgres::{Client, NoTls};
use sluice_store::conformance;

const ADMIN: &str = "host=127.0.0.1 port=5432 user=postgres dbname=postgres";

/// A database that exists while this lives.
struct TestDb {
    name: String,
}

impl TestDb {
    fn create() -> Option<TestDb> {
        Self::create_with("")
    }

    /// A database created with `options` after its name (a locale, say).
    fn create_with(options: &str) -> Option<TestDb> {
        let mut admin = match Client::connect(ADMIN, NoTls) {
            Ok(c) => c,
            Err(e) if std::env::var("SLUICE_REQUIRE_EXTERNAL").as_deref() == Ok("1") => {
                panic!(
                    "PostgreSQL is required (SLUICE_REQUIRE_EXTERNAL=1) but cannot be reached at {ADMIN}: {e}"
                )
            }
            Err(e) => {
                eprintln!("skipped: no PostgreSQL at {ADMIN} ({e})");
                return None;
            }
        };
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).expect("random bytes");
        let name = format!("sluice_test_{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
        // A name made here (hex), not an input: CREATE DATABASE takes no parameters.
        admin.batch_execute(&format!("CREATE DATABASE {name} {options}")).expect("create a test database");
        Some(TestDb { name })
    }

    fn url(&self) -> String {
        format!("host=127.0.0.1 port=5432 user=postgres dbname={}", self.name)
    }

    fn open(&self) -> PgStore {
        PgStore::connect(&self.url()).expect("connect and migrate")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = Client::connect(ADMIN, NoTls) {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

/// Returns once a session of `watch`'s database waits for a lock, or `finished` says the
/// other side is done (without waiting), or after 20 s.
fn until_a_session_waits_for_a_lock(watch: &mut Client, finished: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !finished() && std::time::Instant::now() < deadline {
        let waiting: i64 = watch
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .unwrap()
            .get(0);
        if waiting > 0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Runs `call` on every node at the same moment (a thread each, released together); returns
/// what each gave, in the nodes' order.
fn at_once<T: Send>(nodes: &[PgStore], call: impl Fn(usize, &PgStore) -> T + Sync) -> Vec<T> {
    let barrier = std::sync::Barrier::new(nodes.len());
    std::thread::scope(|scope| {
        let calls: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let (barrier, call) = (&barrier, &call);
                scope.spawn(move || {
                    barrier.wait();
                    call(i, node)
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().expect("a node")).collect()
    })
}

/// Runs `check` on a fresh store of its own.
fn on_fresh(check: impl FnOnce(&PgStore)) {
    let Some(db) = TestDb::create() else { return };
    let store = db.open();
    check(&store);
    drop(store);
}

#[test]
fn postgres_passes_the_tenants_checks() {
    on_fresh(conformance::tenants);
    on_fresh(conformance::settings);
    on_fresh(conformance::ssh_keys);
}

#[test]
fn postgres_passes_the_api_keys_check() {
    on_fresh(conformance::api_keys);
}

#[test]
fn postgres_passes_the_accounts_checks() {
    on_fresh(conformance::accounts_and_sessions);
    on_fresh(conformance::second_factor_and_resets);
}

#[test]
fn postgres_passes_the_upload_queue_check() {
    on_fresh(conformance::upload_queue);
}

#[test]
fn postgres_passes_the_schedules_check() {
    on_fresh(conformance::schedules);
}

/// Three nodes ask for the same due times at the same moment: each due time is run once.
#[test]
fn nodes_asking_for_one_due_time_at_once_run_it_once() {
    use sluice_store::Schedules;
    let Some(db) = TestDb::create() else { return };
    let nodes = [db.open(), db.open(), db.open()];
    for due in 0..30 {
        let taken = at_once(&nodes, |i, node| {
            node.claim_due("export/north/nightly", due * 60_000, &format!("p{i}-n-1"))
        });
        assert_eq!(taken.iter().filter(|t| matches!(t, Ok(true))).count(), 1, "due {due}: {taken:?}");
        assert!(taken.iter().all(Result::is_ok), "{taken:?}");
    }
    // The nodes that took them ended before running them: the others take each over once.
    let retaken = at_once(&nodes, |i, node| {
        node.retake_due("export/", &format!("p{}-n-2", i + 10), &|tag| tag.ends_with("-n-1")).expect("retake")
    });
    let mut all: Vec<i64> = retaken.iter().flatten().map(|(_, due)| *due).collect();
    all.sort();
    assert_eq!(all, (0..30).map(|due| due * 60_000).collect::<Vec<_>>(), "{retaken:?}");
}

#[test]
fn postgres_passes_the_loading_check() {
    on_fresh(conformance::loading);
}

#[test]
fn postgres_passes_the_layouts_check() {
    on_fresh(conformance::layouts);
}

#[test]
fn postgres_passes_the_imported_once_check() {
    on_fresh(conformance::imported_once);
}

#[test]
fn postgres_passes_the_records_check() {
    on_fresh(conformance::records);
}

#[test]
fn postgres_passes_the_package_people_check() {
    on_fresh(conformance::package_people);
}

#[test]
fn postgres_passes_the_package_relisting_check() {
    on_fresh(conformance::package_relisting);
}

/// A type without names keeps search rows only for the keys that need one, on PostgreSQL as
/// on SQLite (the same rule, ASCII's cases), at its first import and at a later one.
#[test]
fn a_type_without_names_keeps_search_rows_only_for_keys_that_need_one() {
    use sluice_core::TenantName;
    use sluice_core::import::LoadMode::Mirror;
    use sluice_store::{ImportStatus, Imports, Outcome, StageKind, Tenants};
    let Some(db) = TestDb::create() else { return };
    let s = db.open();
    s.add_tenant(&TenantName::parse("north").unwrap(), &[]).unwrap();
    let load = |keys: &[&str]| {
        let id = s.create_import("north", "courses", "c.csv", "upload", None, None).unwrap();
        let mut l = s.loader("north", "courses", id).unwrap();
        for (i, key) in keys.iter().enumerate() {
            l.stage(i as u64 + 2, key, &format!("[\"{key}\"]"), i as i64, StageKind::Load).unwrap();
        }
        let plan = l.plan("courses", Mirror).unwrap();
        l.commit(Outcome::new(ImportStatus::Complete, plan, Some(Mirror))).unwrap();
    };
    let rows = || -> Vec<String> {
        let mut c = Client::connect(&db.url(), NoTls).unwrap();
        c.query("SELECT key FROM record_search WHERE type = 'courses' ORDER BY key", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    load(&["c1", "C2", "10001", "Math-1", "École-1", "ÉCOLE-2"]);
    assert_eq!(rows(), ["Math-1", "ÉCOLE-2", "École-1"]);
    load(&["c1", "C2", "10001", "Math-1", "École-1", "ÉCOLE-2", "Art-1", "ART-2", "art-3"]);
    assert_eq!(rows(), ["Art-1", "Math-1", "ÉCOLE-2", "École-1"], "a later import's writes keep the rule");
}

#[test]
fn postgres_passes_the_photos_check() {
    on_fresh(conformance::photos);
}

/// A record being deleted (by another node's import, say) while a photo import applies a
/// photo to it: the photo import waits for the deletion (the record is locked `FOR SHARE`),
/// then finds the record gone and writes no photo for it, as SQLite's one writer would. Without
/// the lock the photo is written for a record no longer there, and stays.
#[test]
fn a_photo_of_a_record_deleted_meanwhile_is_not_kept() {
    use sluice_core::TenantName;
    use sluice_core::photo::{ImageFormat, Photo};
    use sluice_store::{Counts, ImportStatus, Imports, Outcome, Photos, StageKind, Tenants};
    let Some(db) = TestDb::create() else { return };
    let s = db.open();
    s.add_tenant(&TenantName::parse("north").unwrap(), &[]).unwrap();
    let load = s.create_import("north", "students", "s.csv", "upload", None, None).unwrap();
    let mut l = s.loader("north", "students", load).unwrap();
    for (line, key) in [(2, "S1"), (3, "S2")] {
        l.stage(line, key, &format!("[\"{key}\"]"), line as i64, StageKind::Load).unwrap();
    }
    let plan = l.plan("students", sluice_core::import::LoadMode::Mirror).unwrap();
    l.commit(Outcome::new(ImportStatus::Complete, plan, Some(sluice_core::import::LoadMode::Mirror)))
        .unwrap();

    let mut other = Client::connect(&db.url(), NoTls).unwrap();
    let mut deleting = other.transaction().unwrap();
    deleting.execute("DELETE FROM records WHERE key = 'S1'", &[]).unwrap();
    let node = db.open();
    let id = s.create_import("north", "student_photos", "p.zip", "upload", None, None).unwrap();
    let photo = |key: &str, fill: &str| Photo {
        key: key.to_owned(),
        sha256: fill.repeat(64),
        format: ImageFormat::Jpeg,
        width: 1,
        height: 1,
        bytes: 1,
        import_id: id,
    };
    let photos = [photo("S1", "a"), photo("S2", "b")];
    let mut watch = Client::connect(&db.url(), NoTls).unwrap();
    std::thread::scope(|scope| {
        let applying = scope.spawn(|| {
            let o = Outcome::new(ImportStatus::Complete, Counts::default(), None);
            node.apply_photos("north", "students", id, &photos, &o)
        });
        until_a_session_waits_for_a_lock(&mut watch, || applying.is_finished());
        deleting.commit().unwrap();
        assert_eq!(applying.join().unwrap().unwrap(), Vec::<String>::new());
    });
    assert_eq!(s.photo("north", "students", "S1").unwrap(), None, "no photo of a deleted record");
    assert!(!s.image_in_use("north", &"a".repeat(64)).unwrap());
    assert_eq!(s.photo("north", "students", "S2").unwrap(), Some(photo("S2", "b")));
    assert_eq!(s.import(id).unwrap().unwrap().status, ImportStatus::Complete);
}

#[test]
fn postgres_passes_the_saved_exports_check() {
    on_fresh(conformance::saved_exports);
}

/// Four nodes claim from one queue of 200 uploads of two tenants at the same time: every
/// upload is claimed exactly once (no two nodes get the same event, none is left).
#[test]
fn nodes_claiming_at_once_each_get_other_uploads() {
    use sluice_core::{TenantName, UploadEvent, VirtualPath};
    use sluice_store::{ImportQueue, Tenants, Uploads};
    let Some(db) = TestDb::create() else { return };
    let s = db.open();
    let mut ids = Vec::new();
    for tenant in ["north", "east"] {
        s.add_tenant(&TenantName::parse(tenant).unwrap(), &[]).unwrap();
        for i in 0..100 {
            let event = UploadEvent {
                tenant: TenantName::parse(tenant).unwrap(),
                path: VirtualPath::resolve(format!("/students/{i}.csv").as_bytes()).unwrap(),
                size: 3,
                sha256: sluice_core::sha256_of(&b"abc"[..]).unwrap().1,
                at_ms: i,
                snapshot: None,
            };
            ids.push(s.record_upload(&event).unwrap());
        }
    }
    let nodes: Vec<_> = (0..4)
        .map(|_| {
            let node = db.open();
            std::thread::spawn(move || {
                let mut claimed = Vec::new();
                while let Some(u) = node.claim_upload(std::time::Duration::from_secs(60), None).unwrap() {
                    claimed.push(u.id);
                }
                claimed
            })
        })
        .collect();
    let mut claimed: Vec<i64> = nodes.into_iter().flat_map(|n| n.join().unwrap()).collect();
    claimed.sort_unstable();
    ids.sort_unstable();
    assert_eq!(claimed, ids, "each upload claimed once");
}

#[test]
fn postgres_passes_the_deliveries_check() {
    on_fresh(conformance::deliveries);
}

#[test]
fn postgres_passes_the_saved_exports_check_without_imports() {
    on_fresh(conformance::saved_exports_without_imports);
}

#[test]
fn postgres_passes_the_connectors_check() {
    on_fresh(conformance::connectors);
}

/// An import's end queues its notifications as a failed export run's do (the conformance
/// check covers those): PostgreSQL has no `Imports` yet, so the import's row is written here
/// by hand, as the pipeline would.
#[test]
fn an_imports_end_queues_its_notifications() {
    use sluice_core::delivery::About;
    use sluice_core::import::ImportTypes;
    use sluice_core::{SettingsChange, SettingsContext, TenantName};
    use sluice_store::{Channel, Deliveries, Tenants};
    let Some(db) = TestDb::create() else { return };
    let s = db.open();
    let north = s.add_tenant(&TenantName::parse("north").unwrap(), &[]).unwrap();
    let types = ImportTypes::default();
    let cx = SettingsContext { types: &types, allow_private_webhooks: false };
    let mut change = SettingsChange::default();
    change.set("notify.email", "ops@north.org", cx).unwrap();
    change.set("notify.webhook", "https://hooks.example/n", cx).unwrap();
    s.change_settings("north", &change).unwrap();
    let mut c = Client::connect(&db.url(), NoTls).unwrap();
    let import: i64 = c
        .query_one(
            "INSERT INTO imports (tenant_id, type, file_name, source, status, created_ms)
             VALUES ($1, 'students', 'students.csv', 'upload', 'complete', 1) RETURNING id",
            &[&north.id],
        )
        .unwrap()
        .get(0);
    assert_eq!(s.queue_deliveries(import).unwrap(), 2);
    let queued: Vec<_> = s.deliveries("north", 10).unwrap().into_iter().rev().collect();
    assert_eq!(
        queued.iter().map(|d| (d.about, d.channel, d.target.as_str())).collect::<Vec<_>>(),
        [
            (About::Import(import), Channel::Email, "ops@north.org"),
            (About::Import(import), Channel::Webhook, "https://hooks.example/n")
        ]
    );
    assert_eq!(s.claim_deliveries(10, std::time::Duration::from_secs(60)).unwrap().len(), 2);
    assert!(s.queue_deliveries(import + 1).is_err(), "an import that is not there queues nothing");
}

/// Two nodes' notifiers claim from one queue at the same moment, over and over, sending (in
/// effect) what they claim: every delivery is claimed exactly once.
#[test]
fn two_nodes_claiming_deliveries_at_once_never_claim_one_twice() {
    use sluice_core::saved_export::{RunCause, RunOutcome};
    use sluice_core::{SettingsChange, SettingsContext, TenantName};
    use sluice_store::{Deliveries, SavedExports, Tenants};
    let Some(db) = TestDb::create() else { return };
    let s = db.open();
    let types = sluice_core::import::ImportTypes::default();
    let cx = SettingsContext { types: &types, allow_private_webhooks: false };
    for t in ["north", "east", "south"] {
        s.add_tenant(&TenantName::parse(t).unwrap(), &[]).unwrap();
        let mut change = SettingsChange::default();
        change.set("notify.email", &format!("a@{t}.org, b@{t}.org"), cx).unwrap();
        s.change_settings(t, &change).unwrap();
        for _ in 0..20 {
            let run = s.start_export_run(t, "nightly", RunCause::Schedule).unwrap();
            s.finish_export_run(run, &RunOutcome::Failed("disk full".to_owned())).unwrap();
            s.queue_export_failure(run).unwrap();
        }
    }
    let nodes = [db.open(), db.open()];
    let mut sent = std::collections::HashSet::new();
    for _ in 0..200 {
        let claimed = at_once(&nodes, |_, node| node.claim_deliveries(3, std::time::Duration::from_secs(60)));
        let mut any = false;
        for (i, batch) in claimed.into_iter().enumerate() {
            for d in batch.unwrap() {
                any = true;
                assert!(sent.insert(d.id), "delivery {} claimed twice", d.id);
                nodes[i].delivery_attempted(d.id, None, None).unwrap();
            }
        }
        if !any {
            break;
        }
    }
    assert_eq!(sent.len(), 3 * 20 * 2, "every delivery sent once");
}

/// Two nodes save an export of one name at the same moment (spelled differently), twenty
/// times over. Not replacing: exactly one saves it, the other is refused as SQLite refuses the
/// second (`ExportExists`, naming the export as the first spelled it), never with a database
/// error. Replacing: both succeed, one after the other, and one export remains.
#[test]
fn two_nodes_saving_one_export_name_at_once_save_it_once() {
    use sluice_core::TenantName;
    use sluice_core::saved_export::{ExportFormat, ExportName, ExportWhen, SavedExport};
    use sluice_store::{SavedExports, StoreError, Tenants};
    let Some(db) = TestDb::create() else { return };
    let s = db.open();
    s.add_tenant(&TenantName::parse("north").unwrap(), &[]).unwrap();
    let export = |name: &str| SavedExport {
        name: ExportName::parse(name).unwrap(),
        type_name: "students".to_owned(),
        format: ExportFormat::Csv,
        columns: vec![],
        filters: vec![],
        bom: false,
        when: ExportWhen::OnDemand,
        push_to: None,
        in_exports: true,
    };
    let nodes = [db.open(), db.open()];
    for round in 0..20 {
        let spelled = [format!("Export{round}"), format!("EXPORT{round}")];
        let saved = at_once(&nodes, |i, node| node.save_export("north", &export(&spelled[i]), false));
        let winner = match (&saved[0], &saved[1]) {
            (Ok(()), Err(StoreError::ExportExists(name))) | (Err(StoreError::ExportExists(name)), Ok(())) => {
                name.clone()
            }
            other => panic!("round {round}: {other:?}"),
        };
        let kept = s.saved_export("north", &spelled[0]).unwrap().expect("saved once");
        assert_eq!(kept.name.as_str(), winner, "round {round}: the refusal names the saved export");
        let replaced = at_once(&nodes, |i, node| node.save_export("north", &export(&spelled[i]), true));
        assert!(replaced.iter().all(Result::is_ok), "round {round}: {replaced:?}");
        assert_eq!(s.saved_export("north", &spelled[1]).unwrap().map(|e| e.name.to_string()), Some(winner));
    }
    assert_eq!(s.saved_exports("north").unwrap().len(), 20, "one export per name");
}

/// Two nodes save a connector of one name at the same moment, twenty times over: one saves
/// it, the other is refused (`ConnectorExists`), as on SQLite.
#[test]
fn two_nodes_saving_one_connector_name_at_once_save_it_once() {
    use sluice_core::TenantName;
    use sluice_core::connector::{AuthKind, Connector, ConnectorName, SftpAddress};
    use sluice_store::{Connectors, StoreError, Tenants};
    let Some(db) = TestDb::create() else { return };
    let s = db.open();
    s.add_tenant(&TenantName::parse("north").unwrap(), &[]).unwrap();
    let nodes = [db.open(), db.open()];
    for round in 0..20 {
        let spelled = [format!("district{round}"), format!("District{round}")];
        let saved = at_once(&nodes, |i, node| {
            let c = Connector {
                name: ConnectorName::parse(&spelled[i]).unwrap(),
                address: SftpAddress::parse("sftp://d@sftp.example.org/").unwrap(),
                auth: AuthKind::Password,
                host_key: None,
                rename: true,
                pull: None,
            };
            node.save_connector("north", &c, &format!("sealed-{i}"), false)
        });
        let refused = saved.iter().filter(|r| matches!(r, Err(StoreError::ConnectorExists(_)))).count();
        assert!(saved.iter().any(Result::is_ok) && refused == 1, "round {round}: {saved:?}");
    }
    assert_eq!(s.connectors("north").unwrap().len(), 20, "one connector per name");
}

/// A connector removed on one node while another saves an export that pushes to it, forty
/// times over: either the export is saved and the connector stays (`ConnectorInUse`), or the
/// connector goes and the export is refused (`NoSuchConnector`); never an export pushing to a
/// connector that is gone.
#[test]
fn an_export_saved_while_its_connector_is_removed_never_points_nowhere() {
    use sluice_core::TenantName;
    use sluice_core::connector::{AuthKind, Connector, ConnectorName, SftpAddress};
    use sluice_core::saved_export::{ExportFormat, ExportName, ExportWhen, SavedExport};
    use sluice_store::{Connectors, SavedExports, StoreError, Tenants};
    let Some(db) = TestDb::create() else { return };
    let s = db.open();
    s.add_tenant(&TenantName::parse("north").unwrap(), &[]).unwrap();
    let nodes = [db.open(), db.open()];
    for round in 0..40 {
        let name = format!("district{round}");
        let connector = Connector {
            name: ConnectorName::parse(&name).unwrap(),
            address: SftpAddress::parse("sftp://d@sftp.example.org/").unwrap(),
            auth: AuthKind::Password,
            host_key: None,
            rename: true,
            pull: None,
        };
        s.save_connector("north", &connector, "sealed", false).unwrap();
        let export = SavedExport {
            name: ExportName::parse(&format!("push{round}")).unwrap(),
            type_name: "students".to_owned(),
            format: ExportFormat::Csv,
            columns: vec![],
            filters: vec![],
            bom: false,
            when: ExportWhen::OnDemand,
            push_to: Some(connector.name.clone()),
            in_exports: true,
        };
        let done = at_once(&nodes, |i, node| match i {
            0 => node.save_export("north", &export, false),
            _ => node.remove_connector("north", &name),
        });
        let exported = s.saved_export("north", export.name.as_str()).unwrap().is_some();
        let connected = s.connector("north", &name).unwrap().is_some();
        match (&done[0], &done[1]) {
            (Ok(()), Err(StoreError::ConnectorInUse { .. })) => {
                assert!(exported && connected, "round {round}")
            }
            (Err(StoreError::NoSuchConnector(_)), Ok(())) => {
                assert!(!exported && !connected, "round {round}")
            }
            other => {
                panic!("round {round}: {other:?} (export saved: {exported}, connector there: {connected})")
            }
        }
    }
}

#[test]
fn postgres_passes_the_bans_check() {
    on_fresh(conformance::bans);
}

#[test]
fn postgres_passes_the_audit_check() {
    on_fresh(conformance::audit);
}

/// Connecting again migrates nothing twice and keeps the rows; several nodes connecting at
/// once migrate once (the advisory lock); a database from a newer sluice is refused.
#[test]
fn migrations_run_once_whoever_connects_first() {
    use sluice_store::{StoreError, Tenants};
    let Some(db) = TestDb::create() else { return };
    let nodes: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url();
            std::thread::spawn(move || PgStore::connect(&url).map(|_| ()))
        })
        .collect();
    for node in nodes {
        node.join().expect("a node").expect("connect and migrate beside the others");
    }
    let store = db.open();
    store.add_tenant(&sluice_core::TenantName::parse("north").unwrap(), &[]).unwrap();
    drop(store);
    let store = db.open();
    assert_eq!(store.tenants().unwrap().len(), 1, "the rows stay");
    drop(store);
    let mut c = Client::connect(&db.url(), NoTls).unwrap();
    let versions: i64 = c.query_one("SELECT count(*) FROM sluice_schema", &[]).unwrap().get(0);
    assert_eq!(versions, super::migrations_known(), "each migration recorded once");
    c.execute("INSERT INTO sluice_schema (version) VALUES (999)", &[]).unwrap();
    assert!(matches!(PgStore::connect(&db.url()), Err(StoreError::TooNew { found: 999, .. })));
}

/// Two nodes change different settings of one tenant at the same time, sixty times each:
/// neither loses the other's (the row is locked from read to write), as on SQLite.
#[test]
fn two_nodes_changing_settings_at_once_both_land() {
    use sluice_core::import::ImportTypes;
    use sluice_core::{SettingsChange, SettingsContext, TenantName};
    use sluice_store::Tenants;
    let Some(db) = TestDb::create() else { return };
    db.open().add_tenant(&TenantName::parse("acme").unwrap(), &[]).unwrap();
    let writers: Vec<_> = [("notify.email", "a{}@acme.org"), ("folders", "f{}")]
        .into_iter()
        .map(|(key, pattern)| {
            let node = db.open();
            std::thread::spawn(move || {
                let types = ImportTypes::default();
                let cx = SettingsContext { types: &types, allow_private_webhooks: false };
                for i in 0..60 {
                    let mut change = SettingsChange::default();
                    change.set(key, &pattern.replace("{}", &i.to_string()), cx).unwrap();
                    node.change_settings("acme", &change).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let t = db.open().require_tenant("acme").unwrap();
    assert_eq!(t.notify_emails, ["a59@acme.org"]);
    assert_eq!(t.layout.import_folders()[0].as_str(), "f59");
}

/// What SQLite does without asking, PostgreSQL is told: lists in byte order whatever the
/// database's locale (`north-z` before `northa`, as SQLite sorts them, in a database whose
/// collation ignores punctuation as glibc's `en_US` does); the audit log refuses TRUNCATE as it refuses DELETE; and a
/// tenant's key whose tenant row went behind the foreign key's back is nobody's, never the
/// operator's.
#[test]
fn postgres_sorts_and_guards_as_sqlite_does() {
    use sluice_core::TenantName;
    use sluice_store::{ApiKeys, KeyScope, Tenants};
    let Some(db) =
        TestDb::create_with("LOCALE_PROVIDER icu ICU_LOCALE 'en-US-u-ka-shifted' TEMPLATE template0")
    else {
        return;
    };
    let s = db.open();
    for name in ["northa", "north-z"] {
        s.add_tenant(&TenantName::parse(name).unwrap(), &[]).unwrap();
    }
    let names: Vec<String> = s.tenants().unwrap().into_iter().map(|t| t.name.to_string()).collect();
    assert_eq!(names, ["north-z", "northa"]);
    s.add_api_key(Some("northa"), "SIS job", "slk_ab", "hash-north", &KeyScope::default()).unwrap();
    let mut c = Client::connect(&db.url(), NoTls).unwrap();
    assert!(c.batch_execute("TRUNCATE audit_log").is_err(), "the audit log cannot be truncated");
    c.batch_execute(
        "SET session_replication_role = replica; DELETE FROM tenants WHERE name = 'northa';
         SET session_replication_role = origin;",
    )
    .unwrap();
    let left: i64 = c.query_one("SELECT count(*) FROM api_keys", &[]).unwrap().get(0);
    assert_eq!(left, 1, "the key row is still there");
    assert!(s.api_key_by_hash("hash-north").unwrap().is_none(), "and matches nothing");
}

/// The saved exports' and connectors' checks in a database whose collation sorts letters
/// whatever their case and ignores punctuation (ICU's `en-US-u-ka-shifted`), and whose
/// `lower()` folds more than ASCII (the Kelvin sign to `k`): they pass as on SQLite, names
/// sorted and folded as bytes (`COLLATE "C"`).
#[test]
fn exports_and_connectors_sort_and_fold_names_as_sqlite_whatever_the_locale() {
    let checks: [fn(&PgStore); 2] = [conformance::saved_exports_without_imports, conformance::connectors];
    for check in checks {
        let Some(db) =
            TestDb::create_with("LOCALE_PROVIDER icu ICU_LOCALE 'en-US-u-ka-shifted' TEMPLATE template0")
        else {
            return;
        };
        let store = db.open();
        check(&store);
        drop(store);
    }
}

/// Eight nodes ask for a reset link of one account at the same moment, five times over: never
/// more than three live links (the account's row is locked from the count to the insert).
#[test]
fn nodes_asking_reset_links_at_once_keep_three_at_most() {
    use sluice_store::{Accounts, Role};
    let Some(db) = TestDb::create() else { return };
    let s = db.open();
    s.add_account(None, "admin", Role::Admin, "hash-0").unwrap();
    let nodes: Vec<PgStore> = (0..8).map(|_| db.open()).collect();
    let mut c = Client::connect(&db.url(), NoTls).unwrap();
    for round in 0..5 {
        let kept = at_once(&nodes, |i, node| {
            node.start_password_reset("admin", &format!("reset-{round}-{i}"), 60_000).unwrap().is_some()
        })
        .into_iter()
        .filter(|kept| *kept)
        .count();
        let live: i64 = c.query_one("SELECT count(*) FROM password_resets", &[]).unwrap().get(0);
        assert!(kept == 3 && live == 3, "round {round}: {kept} links kept, {live} live");
        c.execute("UPDATE password_resets SET used_ms = 1", &[]).unwrap();
    }
}

/// Two links of one account used at the same moment on two nodes, ten times over: one sets
/// the password, the other finds its link spent; neither fails (the account's row is taken
/// first, as every change of an account takes it, so the two cannot deadlock).
#[test]
fn two_links_of_one_account_used_at_once_set_the_password_once() {
    use sluice_store::{Accounts, Role};
    let Some(db) = TestDb::create() else { return };
    let s = db.open();
    s.add_account(None, "admin", Role::Admin, "hash-0").unwrap();
    let nodes = [db.open(), db.open()];
    for round in 0..10 {
        for i in 0..2 {
            s.start_password_reset("admin", &format!("link-{round}-{i}"), 60_000).unwrap().unwrap();
        }
        let used = at_once(&nodes, |i, node| {
            node.finish_password_reset(&format!("link-{round}-{i}"), &format!("hash-{round}-{i}"))
                .expect("no error, whichever comes second")
                .is_some()
        });
        assert_eq!(used.iter().filter(|u| **u).count(), 1, "round {round}: {used:?}");
    }
}

/// Rows staged by COPY come back as they were written, whatever bytes COPY's text format
/// escapes (tab, newline, carriage return, backslash), across several batches; a key repeated
/// after its row was sent names its first line and is not staged twice; an abandoned loader
/// leaves nothing.
#[test]
fn staged_rows_survive_copy_and_repeats_are_found_after_a_batch_is_sent() {
    use sluice_core::import::LoadMode;
    use sluice_store::{Counts, ImportStatus, Imports, Outcome, StageKind, Tenants};
    let Some(db) = TestDb::create() else { return };
    let s = db.open();
    s.add_tenant(&sluice_core::TenantName::parse("north").unwrap(), &[]).unwrap();
    let data =
        |i: usize| format!("[\"S{i}\",\"tab\\there\",\"a\\\\b\",\"line\nbreak\r\",\"{}\"]", "x".repeat(100));
    let dry = s.create_import("north", "students", "students.csv", "upload", None, None).unwrap();
    let mut l = s.loader("north", "students", dry).unwrap();
    l.stage(2, "S1", &data(1), 1, StageKind::Load).unwrap();
    l.abandon().unwrap();
    assert_eq!(s.record_count("north", "students").unwrap(), 0, "an abandoned loader stages nothing");

    let id = s.create_import("north", "students", "students.csv", "upload", None, None).unwrap();
    let mut l = s.loader("north", "students", id).unwrap();
    let n = 60_000; // about 9 MiB: more than one batch
    for i in 0..n {
        assert_eq!(
            l.stage(i as u64 + 2, &format!("S{i}"), &data(i), i as i64, StageKind::Load).unwrap(),
            None
        );
    }
    assert_eq!(l.stage(70_000, "S7", "[]", 0, StageKind::Load).unwrap(), Some(9), "first seen on line 9");
    assert_eq!(l.stage(70_001, "S59999", "[]", 0, StageKind::Load).unwrap(), Some(60_001));
    assert_eq!(l.plan("students", LoadMode::Mirror).unwrap().added, n as u64);
    l.commit(Outcome::new(ImportStatus::Complete, Counts::default(), Some(LoadMode::Mirror))).unwrap();
    let mut seen = 0;
    s.records("north", "students", None, &mut |key, d| {
        let i: usize = key[1..].parse().unwrap();
        assert_eq!(d, data(i), "record {key} as staged");
        seen += 1;
    })
    .unwrap();
    assert_eq!(seen, n);
}

/// A settings change while an import of the tenant is applying (its records' foreign keys
/// hold the tenant's row FOR KEY SHARE until it commits) goes through at once: it locks the
/// row FOR NO KEY UPDATE. With FOR UPDATE it waited for the import (up to the lock timeout),
/// holding the node's store connection, and every other call of the node, meanwhile.
#[test]
fn a_settings_change_does_not_wait_for_an_import_applying() {
    use sluice_store::Tenants;
    let Some(db) = TestDb::create() else { return };
    let s = db.open();
    s.add_tenant(&sluice_core::TenantName::parse("north").unwrap(), &[]).unwrap();
    let mut import = Client::connect(&db.url(), NoTls).unwrap();
    let mut applying = import.transaction().unwrap();
    applying
        .execute(
            "INSERT INTO records (tenant_id, type, key, data, hash, created_import, updated_import)
             SELECT id, 'students', 'S1', '[]', 0, 1, 1 FROM tenants WHERE name = 'north'",
            &[],
        )
        .unwrap();
    let types = sluice_core::import::ImportTypes::default();
    let cx = sluice_core::SettingsContext { types: &types, allow_private_webhooks: false };
    let mut change = sluice_core::SettingsChange::default();
    change.set("trigger", "manual", cx).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let _ = tx.send(s.change_settings("north", &change).map(|_| ()));
        });
        let done = rx.recv_timeout(std::time::Duration::from_secs(5));
        applying.rollback().unwrap();
        assert!(matches!(done, Ok(Ok(()))), "the settings change waited for the import: {done:?}");
    });
}

/// A tenant's first people made set-based give what one record at a time gives: the same
/// people with the same contact details, the same records kept apart from the same namesakes
/// (with the same warnings, the people's ids read as their records' keys), over more than one
/// batch of records. Records whose source ids repeat or are blank are not made set-based, and
/// nothing is written then.
#[test]
fn a_tenants_first_people_made_at_once_are_the_people_made_one_at_a_time() {
    use crate::imports::{link_first_people, link_one_at_a_time};
    use sluice_core::TenantName;
    use sluice_core::import::LoadMode;
    use sluice_store::{ImportStatus, Imports, Outcome, PersonPaths, StageKind, Tenants};
    let Some(db) = TestDb::create() else { return };
    let s = db.open();
    // Rows as a district writes them: names padded, emails in capitals, phones formatted,
    // namesakes with and without details, more of them than the warnings list names.
    let row = |i: usize| -> Vec<String> {
        let (first, last) = match i % 9 {
            0 => ("Ann".to_owned(), "Lee".to_owned()),
            1 => (" Ann ".to_owned(), "Lee".to_owned()),
            2 => ("Émile".to_owned(), "Zola".to_owned()),
            _ => (format!("F{i}"), format!("L{}", i / 2)),
        };
        let email = match i % 4 {
            0 => String::new(),
            1 => format!("P{i}@Example.org "),
            _ => "shared@example.org".to_owned(),
        };
        let phone = if i.is_multiple_of(5) { format!("(555) 010-{i:04}") } else { String::new() };
        vec![format!("S{i:05}"), format!("{i}"), first, last, email, phone]
    };
    let load = |tenant: &str, rows: &[Vec<String>]| -> (i64, i64) {
        s.add_tenant(&TenantName::parse(tenant).unwrap(), &[]).unwrap();
        let id = s.create_import(tenant, "students", "s.csv", "upload", None, None).unwrap();
        let mut l = s.loader(tenant, "students", id).unwrap();
        for (i, r) in rows.iter().enumerate() {
            let data = serde_json::to_string(r).unwrap();
            l.stage(i as u64 + 2, &r[0], &data, i as i64, StageKind::Load).unwrap();
        }
        let plan = l.plan("students", LoadMode::Mirror).unwrap();
        l.commit(Outcome::new(ImportStatus::Complete, plan, Some(LoadMode::Mirror))).unwrap();
        let mut c = Client::connect(&db.url(), NoTls).unwrap();
        let tenant_id: i64 =
            c.query_one("SELECT id FROM tenants WHERE name = $1", &[&tenant]).unwrap().get(0);
        (tenant_id, id)
    };
    let rows: Vec<Vec<String>> = (0..2_500).map(row).collect();
    let (at_once, at_once_import) = load("north", &rows);
    let (one_by_one, one_by_one_import) = load("south", &rows);
    let paths = PersonPaths {
        role: "student".into(),
        id: "$[1]".into(),
        first_name: "$[2]".into(),
        last_name: "$[3]".into(),
        email: "$[4]".into(),
        phone: "$[5]".into(),
    };
    let mut c = Client::connect(&db.url(), NoTls).unwrap();
    c.batch_execute("BEGIN").unwrap();
    let made = link_first_people(&mut c, at_once, "students", at_once_import, &paths).unwrap();
    let made = made.expect("a first load with a source id per record is made at once");
    let linked =
        link_one_at_a_time(&mut c, one_by_one, "students", one_by_one_import, &paths, false).unwrap();
    // Each record's person: its details and the first record it shares the person with.
    let people = |c: &mut Client, tenant: i64| -> Vec<(String, String, String, String, String, String)> {
        c.query(
            "SELECT r.key, p.first_name, p.last_name, p.email, p.phone,
                 (SELECT MIN(o.key) FROM person_roles o WHERE o.person_id = p.id)
             FROM person_roles r JOIN people p ON p.id = r.person_id WHERE r.tenant_id = $1 ORDER BY r.key",
            &[&tenant],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect()
    };
    // A warning with the other person's id read as that person's first record's key.
    let by_key = |c: &mut Client, warnings: &[String]| -> Vec<String> {
        warnings
            .iter()
            .map(|w| match w.split_once("from person ") {
                Some((before, after)) => {
                    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
                    let key: String = c
                        .query_one(
                            "SELECT MIN(key) FROM person_roles WHERE person_id = $1",
                            &[&digits.parse::<i64>().unwrap()],
                        )
                        .unwrap()
                        .get(0);
                    format!("{before}from person {key}{}", &after[digits.len()..])
                }
                None => w.clone(),
            })
            .collect()
    };
    let (a, b) = (people(&mut c, at_once), people(&mut c, one_by_one));
    assert_eq!(a.len(), 2_500);
    assert_eq!(a, b);
    assert_eq!(a[1].1, "Ann", "names trimmed as Contact::new does");
    assert_eq!(a[1].3, "p1@example.org", "emails without case");
    assert_eq!(a[5].4, "5550100005", "phones as their digits");
    assert_eq!(made.len(), sluice_store::MAX_SEPARATE_WARNINGS + 1, "{made:?}");
    assert!(made.last().unwrap().contains("more people were kept separate"), "{made:?}");
    assert_eq!(by_key(&mut c, &made), by_key(&mut c, &linked));
    c.batch_execute("COMMIT").unwrap();

    // Source ids that repeat, or one blank: one at a time decides, and nothing was written.
    for (tenant, source) in [("east", "3"), ("west", "")] {
        let mut odd = rows[..30].to_vec();
        odd[7][1] = source.to_owned();
        let (tenant_id, import) = load(tenant, &odd);
        let mut c = Client::connect(&db.url(), NoTls).unwrap();
        c.batch_execute("BEGIN").unwrap();
        assert!(
            link_first_people(&mut c, tenant_id, "students", import, &paths).unwrap().is_none(),
            "{tenant}"
        );
        let written: i64 =
            c.query_one("SELECT COUNT(*) FROM people WHERE tenant_id = $1", &[&tenant_id]).unwrap().get(0);
        assert_eq!(written, 0, "{tenant}");
        link_one_at_a_time(&mut c, tenant_id, "students", import, &paths, false).unwrap();
        c.batch_execute("ROLLBACK").unwrap();
    }
}

/// A tenant removed while an import of its is applying: the removal waits for the import
/// (which holds the tenant's row), then deletes what it wrote, so no record, search row,
/// person or role is left for a tenant no longer there (these tables have no foreign key to
/// tenants to do it: migration 13).
#[test]
fn a_tenant_removed_while_an_import_applies_leaves_nothing_behind() {
    use sluice_core::TenantName;
    use sluice_core::import::{LoadMode, PersonColumns};
    use sluice_store::{ImportStatus, Imports, Outcome, StageKind, Tenants};
    let Some(db) = TestDb::create() else { return };
    let s = db.open();
    let north = TenantName::parse("north").unwrap();
    s.add_tenant(&north, &[]).unwrap();
    let id = s.create_import("north", "students", "s.csv", "upload", None, None).unwrap();
    let mut l = s.loader("north", "students", id).unwrap();
    for i in 0..500 {
        let data = serde_json::to_string(&[format!("S{i}"), format!("First{i}"), "Lee".to_owned()]).unwrap();
        l.stage(i + 2, &format!("S{i}"), &data, i as i64, StageKind::Load).unwrap();
    }
    let plan = l.plan("students", LoadMode::Mirror).unwrap();
    let mut c = Client::connect(&db.url(), NoTls).unwrap();
    let tenant_id: i64 = c.query_one("SELECT id FROM tenants WHERE name = 'north'", &[]).unwrap().get(0);
    let other = db.open();
    std::thread::scope(|scope| {
        let removing = scope.spawn(|| other.remove_tenant(&north));
        until_a_session_waits_for_a_lock(&mut c, || removing.is_finished());
        assert!(!removing.is_finished(), "the removal waits for the import");
        let person = PersonColumns {
            role: "student".into(),
            id: Some(0),
            first_name: 1,
            last_name: 2,
            email: None,
            phone: None,
        };
        let outcome = Outcome::new(ImportStatus::Complete, plan, Some(LoadMode::Mirror));
        l.commit(Outcome { person: Some(&person), ..outcome }).unwrap();
        removing.join().unwrap().unwrap();
    });
    for table in ["records", "record_search", "people", "person_roles"] {
        let left: i64 = c
            .query_one(&format!("SELECT count(*) FROM {table} WHERE tenant_id = $1"), &[&tenant_id])
            .unwrap()
            .get(0);
        assert_eq!(left, 0, "{table}");
    }
    assert!(s.tenant("north").unwrap().is_none());
}

/// A SQLite store moved in: every record's text arrives byte for byte (escapes COPY's text
/// format has, and control characters it writes back escaped), the checksums agree, ids go
/// on after the copied ones; a database that holds anything already is refused whole.
#[test]
fn a_sqlite_store_moves_in_whole_and_only_into_an_empty_database() {
    use sluice_core::TenantName;
    use sluice_core::import::LoadMode;
    use sluice_store::{ImportStatus, Imports, Outcome, StageKind, Tenants};
    let Some(db) = TestDb::create() else { return };
    let dir = tempfile::tempdir().unwrap();
    let sqlite = sluice_store::Store::open(&dir.path().join("sluice.db")).unwrap();
    sqlite.add_tenant(&TenantName::parse("north").unwrap(), &[]).unwrap();
    let id = sqlite.create_import("north", "students", "s.csv", "upload", None, None).unwrap();
    let mut l = sqlite.loader("north", "students", id).unwrap();
    let odd =
        ["tab\there", "line\nbreak\r", "back\\slash \\N", "ctl \u{8}\u{b}\u{c}\u{1}", "Zoë Núñez ✓", ""];
    for (i, text) in odd.iter().enumerate() {
        let data = serde_json::to_string(&[format!("S{i}"), text.to_string()]).unwrap();
        l.stage(i as u64 + 2, &format!("S{i}"), &data, i as i64, StageKind::Load).unwrap();
    }
    let plan = l.plan("students", LoadMode::Mirror).unwrap();
    l.commit(Outcome::new(ImportStatus::Complete, plan, Some(LoadMode::Mirror))).unwrap();

    let pg = db.open();
    let copied = pg.move_in_from(&sqlite).unwrap();
    let of = |t: &str| copied.iter().find(|c| c.table == t).unwrap().rows;
    assert_eq!((of("tenants"), of("imports"), of("records")), (1, 1, odd.len() as u64));
    assert!(copied.iter().all(|c| c.sha256.len() == 64));
    let records = |s: &dyn Imports| {
        let mut all = Vec::new();
        s.records("north", "students", None, &mut |k, d| all.push((k.to_owned(), d.to_owned()))).unwrap();
        all
    };
    assert_eq!(records(&pg), records(&sqlite));
    assert_eq!(format!("{:?}", pg.import(id).unwrap()), format!("{:?}", sqlite.import(id).unwrap()));
    // New rows take the next ids.
    pg.add_tenant(&TenantName::parse("south").unwrap(), &[]).unwrap();
    let next = pg.create_import("south", "students", "s.csv", "upload", None, None).unwrap();
    assert_eq!(next, id + 1);
    // Not into a database that holds a state.
    let err = pg.move_in_from(&sqlite).unwrap_err().to_string();
    assert!(err.contains("is in use") && err.contains("new, empty database"), "{err}");
}

/// An import that starts while its tenant is being removed waits for the removal, then finds
/// no tenant and writes nothing (its lock on the tenant's row locks nothing then).
#[test]
fn an_import_started_during_its_tenants_removal_writes_nothing() {
    use sluice_core::TenantName;
    use sluice_store::{Imports, StoreError, Tenants};
    let Some(db) = TestDb::create() else { return };
    let s = db.open();
    s.add_tenant(&TenantName::parse("north").unwrap(), &[]).unwrap();
    let id = s.create_import("north", "students", "s.csv", "upload", None, None).unwrap();
    let mut removing = Client::connect(&db.url(), NoTls).unwrap();
    let mut tx = removing.transaction().unwrap();
    tx.execute("SELECT 1 FROM tenants WHERE name = 'north' FOR UPDATE", &[]).unwrap();
    let mut watch = Client::connect(&db.url(), NoTls).unwrap();
    std::thread::scope(|scope| {
        let opening = scope.spawn(|| s.loader("north", "students", id).map(|_| ()));
        until_a_session_waits_for_a_lock(&mut watch, || opening.is_finished());
        tx.execute("DELETE FROM tenants WHERE name = 'north'", &[]).unwrap();
        tx.commit().unwrap();
        let opened = opening.join().unwrap();
        assert!(matches!(opened, Err(StoreError::NoSuchTenant(_))), "{opened:?}");
    });
}
