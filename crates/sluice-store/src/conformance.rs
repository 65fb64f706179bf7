//! What every store backend must do, written against the role traits only (garage's
//! `db/test.rs` is the model). The SQLite store runs it in its tests; a new backend runs the
//! same functions on a fresh, empty store of its own. Each function panics on the first
//! behaviour that differs, naming it.

use crate::roles::{
    Accounts, ApiKeys, Audit, Bans, Connectors, Deliveries, ImportQueue, Imports, People, Photos, Records,
    SavedExports, Schedules, Tenants, Uploads,
};
use crate::{AuthorizedKey, KeyOwner, Outcome, Role, SecondFactor, StageKind, StoreError};
use sluice_core::audit::AuditFilter;
use sluice_core::defender::Ban;
use sluice_core::import::{ImportTypes, LoadMode};
use sluice_core::net::Source;
use sluice_core::{
    FolderName, PasswordHash, SettingsChange, SettingsContext, TenantName, Trigger, UploadEvent, VirtualPath,
};
use std::time::Duration;

/// Runs every check, each on a fresh store from `open`.
/// A students file's person columns as the checks write their rows: `[id, first, last, email]`.
pub fn student_columns() -> sluice_core::import::PersonColumns {
    sluice_core::import::PersonColumns {
        role: "student".into(),
        id: Some(0),
        first_name: 1,
        last_name: 2,
        email: Some(3),
        phone: None,
    }
}

pub fn run<
    S: Tenants
        + Accounts
        + ApiKeys
        + Bans
        + Uploads
        + ImportQueue
        + Audit
        + Deliveries
        + SavedExports
        + Connectors
        + Schedules,
>(
    open: &dyn Fn() -> S,
) {
    tenants(&open());
    settings(&open());
    ssh_keys(&open());
    accounts_and_sessions(&open());
    second_factor_and_resets(&open());
    api_keys(&open());
    bans(&open());
    upload_queue(&open());
    schedules(&open());
    audit(&open());
    deliveries(&open());
    saved_exports_without_imports(&open());
    connectors(&open());
}

/// The audit log: entries come back newest first, by tenant or all, and the retention purges
/// only what is older than it.
pub fn audit(s: &impl Audit) {
    use sluice_core::audit::{Actor, ActorKind, AuditOutcome, NewAuditEntry};
    let ann = Actor { kind: ActorKind::Account, name: "ann@acme.org".into(), source: "192.0.2.7".into() };
    let cli = Actor { kind: ActorKind::Cli, name: "root".into(), source: "local".into() };
    let entry = |tenant, actor, action, outcome| NewAuditEntry {
        tenant,
        actor,
        action,
        target: "settings",
        outcome,
        before: Some("{\"trigger\":\"manual\"}".into()),
        after: Some("{\"trigger\":\"on_upload\"}".into()),
    };
    let first = s.record_audit(&entry(Some("acme"), &ann, "tenant.settings", AuditOutcome::Done)).unwrap();
    let second = s.record_audit(&entry(Some("beta"), &cli, "tenant.add", AuditOutcome::Done)).unwrap();
    s.record_audit(&entry(None, &cli, "admin.password", AuditOutcome::Refused)).unwrap();
    assert!(second > first);
    let all = s.audit_entries(&AuditFilter { limit: 10, ..Default::default() }).unwrap();
    assert_eq!(
        all.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["admin.password", "tenant.add", "tenant.settings"]
    );
    assert_eq!((all[0].tenant.as_deref(), all[0].outcome), (None, AuditOutcome::Refused));
    let acme = s
        .audit_entries(&AuditFilter { tenant: Some("acme".into()), limit: 10, ..Default::default() })
        .unwrap();
    assert_eq!(acme.len(), 1);
    assert_eq!((&acme[0].actor, acme[0].after.as_deref()), (&ann, Some("{\"trigger\":\"on_upload\"}")));
    assert_eq!(
        s.audit_entries(&AuditFilter {
            since_ms: Some(acme[0].at_ms + 60_000),
            limit: 10,
            ..Default::default()
        })
        .unwrap()
        .len(),
        0
    );
    assert_eq!(s.audit_entries(&AuditFilter { limit: 2, ..Default::default() }).unwrap().len(), 2);
    // Paging: older than the last entry of a page.
    let older = s
        .audit_entries(&AuditFilter { before_id: Some(all[1].id), limit: 10, ..Default::default() })
        .unwrap();
    assert_eq!(older.iter().map(|e| e.id).collect::<Vec<_>>(), [all[2].id]);
    // By action: one, or a family (`tenant` is every `tenant.*`), never a longer name.
    let of = |action: &str| {
        let f = AuditFilter { action: Some(action.into()), limit: 10, ..Default::default() };
        s.audit_entries(&f).unwrap().iter().map(|e| e.action.clone()).collect::<Vec<_>>()
    };
    assert_eq!(of("tenant.add"), ["tenant.add"]);
    assert_eq!(of("tenant"), ["tenant.add", "tenant.settings"]);
    assert!(of("tenant.a").is_empty() && of("admin").len() == 1);
    assert_eq!(s.purge_audit(acme[0].at_ms - 60_000).unwrap(), 0);
    // An entry less than a day old cannot be removed, whatever the retention asks.
    assert!(s.purge_audit(i64::MAX).is_err());
    assert_eq!(s.audit_entries(&AuditFilter { limit: 10, ..Default::default() }).unwrap().len(), 3);
}

fn name(n: &str) -> TenantName {
    TenantName::parse(n).expect("a valid tenant name")
}

fn folders(list: &str) -> Vec<FolderName> {
    FolderName::parse_list(list).expect("valid folders")
}

pub fn tenants(s: &impl Tenants) {
    let t = s.add_tenant(&name("north"), &folders("students,guardians")).expect("add a tenant");
    assert_eq!((t.name.as_str(), t.disabled, t.password.is_none()), ("north", false, true));
    assert_eq!(t.layout.import_folders(), folders("students,guardians").as_slice());
    assert_eq!(t.trigger, Trigger::OnUpload, "a new tenant imports on upload");
    assert_eq!(t.timezone, "UTC");
    assert!(
        matches!(s.add_tenant(&name("north"), &[]), Err(StoreError::TenantExists(_))),
        "tenant names are unique"
    );
    s.add_tenant(&name("east"), &[]).expect("add a second tenant");
    let names: Vec<String> = s.tenants().expect("list").into_iter().map(|t| t.name.to_string()).collect();
    assert_eq!(names, ["east", "north"], "tenants are listed by name");
    assert!(s.tenant("south").expect("look up").is_none());
    assert!(matches!(s.require_tenant("south"), Err(StoreError::NoSuchTenant(_))));

    s.set_disabled(&name("north"), true).expect("disable");
    let hash = PasswordHash::create("a long passphrase").expect("hash");
    s.set_password(&name("north"), &hash).expect("set a password");
    let north = s.require_tenant("north").expect("north");
    assert!(north.disabled && north.password.expect("stored").verify("a long passphrase"));
    let east = s.require_tenant("east").expect("east");
    assert!(!east.disabled && east.password.is_none(), "a change touches only its tenant");
    assert!(matches!(s.set_disabled(&name("south"), true), Err(StoreError::NoSuchTenant(_))));
    assert!(matches!(s.set_password(&name("south"), &hash), Err(StoreError::NoSuchTenant(_))));
}

fn change(pairs: &[(&str, &str)]) -> SettingsChange {
    let types = ImportTypes::default();
    let cx = SettingsContext { types: &types, allow_private_webhooks: false };
    let mut c = SettingsChange::default();
    for (k, v) in pairs {
        c.set(k, v, cx).expect("a valid setting");
    }
    c
}

pub fn settings(s: &impl Tenants) {
    s.add_tenant(&name("north"), &folders("students")).expect("add");
    let t = s
        .change_settings(
            "north",
            &change(&[
                ("trigger", "schedule"),
                ("schedule", "0 2 * * *"),
                ("timezone", "America/Chicago"),
                ("strictness", "strict"),
                ("notify.email", "ops@north.org"),
                ("notify.webhook", "https://hooks.example/x"),
                ("notify.webhook_secret", "s3cret"),
                ("folders", "students,staff"),
            ]),
        )
        .expect("a valid change");
    let stored = s.require_tenant("north").expect("north");
    for seen in [&t, &stored] {
        assert_eq!(seen.trigger, Trigger::Schedule);
        assert_eq!(seen.schedule.as_ref().map(|c| c.as_str()), Some("0 2 * * *"));
        assert_eq!(seen.timezone, "America/Chicago");
        assert_eq!(seen.read_settings.len(), 1);
        assert_eq!(seen.notify_emails, ["ops@north.org"]);
        assert_eq!(seen.webhook, Some(("https://hooks.example/x".to_owned(), "s3cret".to_owned())));
        assert_eq!(seen.layout.import_folders(), folders("students,staff").as_slice());
    }
    // Refused as a whole: the schedule may not go while the trigger needs it.
    let refused = change(&[("notify.email", "other@north.org"), ("schedule", "")]);
    assert!(matches!(s.change_settings("north", &refused), Err(StoreError::Refused(_))));
    let after = s.require_tenant("north").expect("north");
    assert_eq!(after.notify_emails, ["ops@north.org"], "a refused change changes nothing");
    assert!(after.schedule.is_some());
    assert!(matches!(s.change_settings("south", &change(&[])), Err(StoreError::NoSuchTenant(_))));
}

fn key(blob: &str, fingerprint: &str) -> AuthorizedKey {
    AuthorizedKey {
        algorithm: "ssh-ed25519".into(),
        key_base64: blob.into(),
        comment: "nightly job".into(),
        fingerprint: fingerprint.into(),
    }
}

pub fn ssh_keys(s: &impl Tenants) {
    s.add_tenant(&name("north"), &[]).expect("add");
    s.add_tenant(&name("east"), &[]).expect("add");
    s.add_key(&name("north"), &key("AAAA1", "SHA256:one")).expect("add a key");
    s.add_key(&name("north"), &key("AAAA2", "SHA256:two")).expect("add another");
    assert!(
        matches!(s.add_key(&name("north"), &key("AAAA1", "SHA256:one")), Err(StoreError::KeyExists { .. })),
        "a tenant holds a key once"
    );
    s.add_key(&name("east"), &key("AAAA1", "SHA256:one")).expect("another tenant may hold the same key");
    let fingerprints = |t: &str| -> Vec<String> {
        let mut f: Vec<String> = s.keys(t).expect("keys").into_iter().map(|k| k.fingerprint).collect();
        f.sort();
        f
    };
    assert_eq!(fingerprints("north"), ["SHA256:one", "SHA256:two"]);
    s.remove_key("north", "SHA256:one").expect("remove");
    assert_eq!(fingerprints("north"), ["SHA256:two"]);
    assert_eq!(fingerprints("east"), ["SHA256:one"], "removing touches only its tenant");
    assert!(matches!(s.remove_key("north", "SHA256:one"), Err(StoreError::NoSuchSshKey(_))));
    assert!(matches!(
        s.add_key(&name("south"), &key("AAAA3", "SHA256:three")),
        Err(StoreError::NoSuchTenant(_))
    ));
}

pub fn accounts_and_sessions<S: Tenants + Accounts>(s: &S) {
    s.add_tenant(&name("north"), &[]).expect("add");
    let ann = s.add_account(Some("north"), "ann@north.org", Role::Owner, "hash-1").expect("add an owner");
    s.add_account(None, "admin", Role::Admin, "hash-0").expect("add the operator");
    assert!(
        matches!(
            s.add_account(Some("north"), "ann@north.org", Role::User, "x"),
            Err(StoreError::AccountExists(_))
        ),
        "emails are unique"
    );
    let a = s.account_by_email("ann@north.org").expect("look up").expect("ann");
    assert_eq!((a.id, a.role, a.tenant.as_deref()), (ann, Role::Owner, Some("north")));
    let of_north: Vec<String> =
        s.accounts(Some("north")).expect("list").into_iter().map(|a| a.email).collect();
    assert_eq!(of_north, ["ann@north.org"]);
    s.set_account_password("ann@north.org", "hash-2").expect("new password");
    assert!(matches!(s.set_account_password("bob@north.org", "x"), Err(StoreError::NoSuchAccount(_))));

    s.create_session(ann, "token-1", "csrf-1", 60_000).expect("a session");
    s.create_session(ann, "token-2", "csrf-2", -1).expect("an expired session");
    let (who, csrf) = s.session("token-1").expect("look up").expect("live");
    assert_eq!((who.email.as_str(), csrf.as_str()), ("ann@north.org", "csrf-1"));
    assert!(s.session("token-2").expect("look up").is_none(), "an expired session is no session");
    assert!(s.session("token-3").expect("look up").is_none());
    s.end_session("token-1").expect("log out");
    assert!(s.session("token-1").expect("look up").is_none());
    s.create_session(ann, "token-4", "csrf-4", 60_000).expect("a session");
    s.end_sessions_of("ann@north.org").expect("end all");
    assert!(s.session("token-4").expect("look up").is_none(), "a password change ends every session");
}

/// Getting back in and a second factor: at most three live reset links, each used once and
/// spending the others and every session; a second factor switched on only from the secret
/// enrolled and never over one that is on, a code's step used once, recovery codes used once
/// and replaced only while the factor is on; a half-logged-in session counts its tries and
/// becomes a session under a new token; roles, grants and removal.
pub fn second_factor_and_resets<S: Tenants + Accounts>(s: &S) {
    s.add_tenant(&name("north"), &[]).expect("add");
    let ann = s.add_account(Some("north"), "ann@north.org", Role::Owner, "hash-1").expect("add");
    s.add_account(None, "admin", Role::Admin, "hash-0").expect("add the operator");

    for token in ["reset-1", "reset-2", "reset-3"] {
        assert!(s.start_password_reset("ann@north.org", token, 60_000).expect("ask").is_some());
    }
    assert!(
        s.start_password_reset("ann@north.org", "reset-4", 60_000).expect("ask").is_none(),
        "three live links"
    );
    assert!(
        s.start_password_reset("bob@north.org", "reset-5", 60_000).expect("ask").is_none(),
        "no such account"
    );
    assert!(s.password_reset_is_live("reset-2").expect("live?"));
    s.create_session(ann, "session-1", "csrf-1", 60_000).expect("a session");
    let reset = s.finish_password_reset("reset-2", "hash-2").expect("use").expect("a live link");
    assert_eq!((reset.email.as_str(), reset.password_hash.as_str()), ("ann@north.org", "hash-2"));
    assert!(s.finish_password_reset("reset-2", "hash-3").expect("again").is_none(), "a link works once");
    assert!(!s.password_reset_is_live("reset-1").expect("live?"), "using one spends the others");
    assert!(!s.password_reset_is_live("reset-3").expect("live?"), "every other");
    assert!(s.session("session-1").expect("look up").is_none(), "and ends every session");
    assert!(
        s.start_password_reset("ann@north.org", "reset-6", 60_000).expect("ask").is_some(),
        "spent ones go"
    );
    s.start_password_reset("ann@north.org", "reset-7", -1).expect("ask").expect("kept");
    assert!(!s.password_reset_is_live("reset-7").expect("live?"), "an expired link");
    assert!(s.finish_password_reset("reset-7", "hash-4").expect("use").is_none(), "is no link");
    s.set_account_password("ann@north.org", "hash-5").expect("a new password");
    assert!(!s.password_reset_is_live("reset-6").expect("live?"), "a new password spends the links");

    assert_eq!(s.second_factor(ann).expect("read"), SecondFactor::default());
    assert!(!s.any_second_factor().expect("any"));
    s.start_second_factor(ann, "sealed-a").expect("enrol");
    let codes = ["code-1".to_owned(), "code-2".to_owned()];
    assert!(!s.enable_second_factor(ann, "sealed-b", 5, &codes).expect("on"), "only the secret enrolled");
    assert!(s.enable_second_factor(ann, "sealed-a", 5, &codes).expect("on"));
    let on = s.second_factor(ann).expect("read");
    assert_eq!(
        (on.sealed.as_deref(), on.pending.as_deref(), on.last_step),
        (Some("sealed-a"), None, Some(5))
    );
    assert_eq!(on.recovery_codes_left, 2);
    assert!(s.account_by_email("ann@north.org").expect("look up").expect("ann").second_factor);
    s.start_second_factor(ann, "sealed-c").expect("enrol again");
    assert!(!s.enable_second_factor(ann, "sealed-c", 9, &codes).expect("on"), "never over one that is on");
    assert!(!s.use_second_factor_step(ann, 5).expect("step"), "the step that switched it on is used");
    assert!(s.use_second_factor_step(ann, 6).expect("step"));
    assert!(!s.use_second_factor_step(ann, 6).expect("step"), "a code works once");
    assert!(s.use_recovery_code(ann, "code-1").expect("code"));
    assert!(!s.use_recovery_code(ann, "code-1").expect("code"), "a recovery code works once");
    assert_eq!(s.second_factor(ann).expect("read").recovery_codes_left, 1, "used codes are not counted");
    assert!(s.replace_recovery_codes(ann, &["code-3".to_owned()]).expect("replace"));
    assert!(!s.use_recovery_code(ann, "code-2").expect("code"), "replaced codes stop working");
    assert_eq!(s.second_factor(ann).expect("read").recovery_codes_left, 1);
    assert!(s.any_second_factor().expect("any"));
    assert!(s.disable_second_factor("ann@north.org").expect("off"));
    assert!(!s.disable_second_factor("ann@north.org").expect("off"), "off once");
    assert!(!s.replace_recovery_codes(ann, &["code-4".to_owned()]).expect("replace"), "not while off");
    assert_eq!(s.second_factor(ann).expect("read"), SecondFactor::default(), "the enrolled secret goes too");
    assert!(!s.any_second_factor().expect("any"));

    s.create_pending_session(ann, "half-0", "csrf-0", -1).expect("an expired half login");
    assert!(s.pending_session("half-0").expect("look up").is_none(), "expired");
    assert!(!s.complete_session("half-0", "session-0", "csrf-0", 60_000).expect("complete"));
    s.create_pending_session(ann, "half-1", "csrf-h", 60_000).expect("half a login");
    assert!(s.session("half-1").expect("look up").is_none(), "a pending session is no session");
    assert_eq!(s.pending_session("half-1").expect("look up").expect("pending").2, 0);
    assert!(s.take_pending_try("half-1", 2).expect("try") && s.take_pending_try("half-1", 2).expect("try"));
    assert!(!s.take_pending_try("half-1", 2).expect("try"), "tries are counted");
    assert!(s.complete_session("half-1", "session-2", "csrf-2", 60_000).expect("complete"));
    assert!(!s.complete_session("half-1", "session-3", "csrf-3", 60_000).expect("complete"), "once");
    assert!(s.pending_session("half-1").expect("look up").is_none());
    assert_eq!(s.session("session-2").expect("look up").expect("live").1, "csrf-2");

    s.set_account_role("ann@north.org", Role::User).expect("a user now");
    assert!(!s.account_by_email("ann@north.org").expect("look up").expect("ann").manages);
    s.set_account_manages("ann@north.org", true).expect("granted");
    assert!(s.account_by_email("ann@north.org").expect("look up").expect("ann").manages);
    assert!(matches!(s.set_account_role("admin", Role::Owner), Err(StoreError::NoSuchAccount(_))));
    s.remove_account("ann@north.org").expect("remove");
    assert!(s.session("session-2").expect("look up").is_none(), "a removed account's sessions end");
    assert!(matches!(s.remove_account("ann@north.org"), Err(StoreError::NoSuchAccount(_))));
}

pub fn api_keys<S: Tenants + ApiKeys>(s: &S) {
    s.add_tenant(&name("north"), &[]).expect("add");
    s.add_tenant(&name("east"), &[]).expect("add");
    let north = s
        .add_api_key(Some("north"), "SIS job", "slk_ab", "hash-north", &crate::KeyScope::default())
        .expect("a tenant's key");
    let operator = s
        .add_api_key(None, "ops", "slk_cd", "hash-operator", &crate::KeyScope::default())
        .expect("the operator's key");
    let k = s.api_key_by_hash("hash-north").expect("look up").expect("live");
    assert_eq!((k.id, &k.owner, k.name.as_str()), (north, &KeyOwner::Tenant("north".into()), "SIS job"));
    assert_eq!(s.api_key_by_hash("hash-operator").expect("look up").expect("live").owner, KeyOwner::Operator);
    assert!(k.scope.write && k.scope.types.is_empty(), "a key may write, every type, unless made otherwise");
    let limited = crate::KeyScope { write: false, types: vec!["guardians".into(), "students".into()] };
    s.add_api_key(Some("north"), "reports", "slk_ef", "hash-read", &limited).expect("a read-only key");
    assert_eq!(s.api_key_by_hash("hash-read").expect("look up").expect("live").scope, limited);
    assert_eq!(s.api_keys(Some("north")).expect("list").len(), 2);
    assert_eq!(s.api_keys(Some("east")).expect("list").len(), 0);
    assert!(
        matches!(s.revoke_api_key(north, Some("east")), Err(StoreError::NoSuchKey(_))),
        "a tenant cannot revoke another tenant's key"
    );
    s.revoke_api_key(north, Some("north")).expect("revoke");
    assert!(s.api_key_by_hash("hash-north").expect("look up").is_none(), "a revoked key no longer works");
    assert!(matches!(s.revoke_api_key(north, None), Err(StoreError::NoSuchKey(_))), "revoked once");
    s.revoke_api_key(operator, None).expect("the operator revokes any key");
}

pub fn bans(s: &impl Bans) {
    let source = |ip: &str| -> Source { ip.parse().expect("an address") };
    let ban = |ip: &str, at_ms: i64, until_ms: i64, count: u32| Ban {
        source: source(ip),
        at_ms,
        until_ms,
        count,
        score: 0,
        reason: "sftp: failed login".into(),
    };
    assert!(s.save_ban(&ban("192.0.2.1", 1_000, 5_000, 1)).expect("save"));
    assert!(s.save_ban(&ban("192.0.2.2", 1_000, 9_000, 1)).expect("save"));
    assert!(s.save_ban(&ban("192.0.2.1", 6_000, 20_000, 2)).expect("a second ban replaces the first, ended"));
    // Another node's ban for the same guesses, made while this one is in force, does not
    // replace it, ending sooner or later: the one in force is the one kept (and audited).
    assert!(!s.save_ban(&ban("192.0.2.1", 6_100, 15_000, 1)).expect("save"));
    assert!(!s.save_ban(&ban("192.0.2.1", 6_200, 21_000, 1)).expect("save"));
    assert!(!s.save_ban(&ban("192.0.2.1", 6_000, 20_000, 2)).expect("saved again"), "the same ban twice");
    let at = |now: i64| -> Vec<(String, u32)> {
        s.bans(now).expect("bans").into_iter().map(|b| (b.source.to_string(), b.count)).collect()
    };
    assert_eq!(at(7_000), [("192.0.2.1".to_owned(), 2), ("192.0.2.2".to_owned(), 1)], "latest-ending first");
    assert_eq!(s.bans_in_force(7_000).expect("count"), 2);
    assert_eq!(s.bans_in_force(10_000).expect("count"), 1);
    assert!(s.lift_ban(&source("192.0.2.1"), 7_000).expect("lift"));
    assert!(!s.lift_ban(&source("192.0.2.1"), 7_000).expect("lift again"), "nothing left to lift");
    assert_eq!(s.forget_bans(9_000).expect("forget"), 1);
    assert!(at(0).is_empty(), "nothing remembered");

    // What nodes' defenders share: each node reads the others', in order, from a number on.
    use sluice_core::defender::{Event, Happening, Service, What};
    let seen = |ip: &str, at_ms: i64, what: What, count: u32| Happening {
        at_ms,
        source: source(ip),
        service: Service::Sftp,
        what,
        count,
    };
    let a = [
        seen(
            "192.0.2.1",
            1_000,
            What::LoginFailed { event: Event::UnknownAccount, account: "sftp:nobody".into() },
            1,
        ),
        seen("2001:db8:0:7::1", 1_001, What::Event(Event::ProtocolError), 7),
    ];
    s.share_happenings("node-a", &a).expect("share");
    s.share_happenings("node-a", &[]).expect("nothing to share");
    let owner = What::LoginSucceeded { account: "sftp:acme".into() };
    s.share_happenings("node-b", &[seen("192.0.2.9", 2_000, owner, 1)]).expect("share");
    let read = s.happenings_after(0, "node-b", 10).expect("read");
    let happenings: Vec<Happening> = read.iter().filter_map(|(_, h)| h.clone()).collect();
    assert_eq!(happenings, a, "node b reads node a's, not its own");
    assert!(read[0].0 < read[1].0);
    assert_eq!(s.happenings_after(0, "node-b", 1).expect("read").len(), 1, "at most the limit");
    assert!(s.happenings_after(read[1].0, "node-b", 10).expect("read").is_empty(), "after the last one read");
    let for_a = s.happenings_after(0, "node-a", 10).expect("read");
    assert_eq!(for_a.len(), 1);
    assert!(
        matches!(&for_a[0].1, Some(Happening { what: What::LoginSucceeded { account }, .. }) if account == "sftp:acme")
    );
    // A name with a NUL (what a client typed) is kept, as U+FFFD: the batch is not lost.
    let typed = What::LoginFailed { event: Event::UnknownAccount, account: "dashboard:a\0b".into() };
    s.share_happenings("node-c", &[seen("192.0.2.3", 3_000, typed, 1)]).expect("a NUL in a name");
    let last = s.happenings_after(for_a[0].0, "node-a", 10).expect("read");
    assert!(
        matches!(&last[..], [(_, Some(Happening { what: What::LoginFailed { account, .. }, .. }))] if account == "dashboard:a\u{fffd}b"),
        "{last:?}"
    );
    assert_eq!(s.forget_happenings(60_000).expect("forget"), 0, "kept a minute");
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(s.forget_happenings(0).expect("forget"), 4, "then forgotten");
    assert!(s.happenings_after(0, "node-z", 10).expect("read").is_empty());
}

pub fn upload_queue<S: Tenants + Uploads + ImportQueue>(s: &S) {
    s.add_tenant(&name("north"), &folders("students")).expect("add");
    s.add_tenant(&name("east"), &folders("students")).expect("add");
    let event = |tenant: &str, at_ms: i64| UploadEvent {
        tenant: name(tenant),
        path: VirtualPath::resolve(b"/students/students.csv").expect("a path"),
        size: 3,
        sha256: sluice_core::sha256_of(&b"abc"[..]).expect("hash").1,
        at_ms,
        snapshot: None,
    };
    let lease = Duration::from_secs(60);
    let first = s.record_upload(&event("north", 1_000)).expect("record");
    let second = s.record_upload(&event("north", 2_000)).expect("record");
    let other = s.record_upload(&event("east", 3_000)).expect("record");
    assert_eq!(s.pending_uploads().expect("count"), 3);
    assert_eq!(s.uploads("north").expect("list").len(), 2, "a tenant's uploads only");
    let claimed = s.claim_upload(lease, Some("north")).expect("claim").expect("one waiting");
    assert_eq!((claimed.id, claimed.requested), (first, false), "in upload order");
    let next = s.claim_upload(lease, Some("north")).expect("claim").expect("another waiting");
    assert_eq!(next.id, second, "a leased event is not claimed twice");
    assert!(s.claim_upload(lease, Some("north")).expect("claim").is_none(), "all of north's are leased");
    assert_eq!(s.claim_upload(lease, None).expect("claim").map(|u| u.id), Some(other));
    assert!(s.tenants_at_work().expect("at work").is_empty(), "leases are not imports running");
    assert_eq!(s.release_leases("north", Some(second)).expect("release"), 1, "the tenant's claims but one");
    assert_eq!(s.claim_upload(lease, None).expect("claim").map(|u| u.id), Some(first), "claimable again");
    assert_eq!(s.release_leases("east", None).expect("release"), 1, "another tenant's are its own");
    assert_eq!(s.release_leases("north", None).expect("release"), 2);
    s.consume_upload(first, None).expect("consume");
    assert!(s.upload_consumed(first).expect("consumed?"));
    assert!(!s.upload_consumed(second).expect("consumed?"));
    assert_eq!(s.pending_uploads().expect("count"), 2);
    s.consume_as_duplicate(second, first).expect("a retry");
    assert_eq!(s.pending_uploads().expect("count"), 1);
    let synced = s.request_import(&event("north", 4_000)).expect("a sync's event");
    let claimed = s.claim_upload(lease, Some("north")).expect("claim").expect("the synced one");
    assert_eq!((claimed.id, claimed.requested), (synced, true), "a sync's event carries its intent");

    // An upload's snapshot comes back with its event, and is in use until it is consumed.
    let snap = sluice_core::SnapshotName::parse("snap-north-1-9").expect("a name");
    let kept = s
        .record_upload(&UploadEvent { snapshot: Some(snap.clone()), ..event("north", 5_000) })
        .expect("record");
    assert_eq!(s.snapshots_in_use().expect("in use"), vec![snap.clone()]);
    s.consume_upload(synced, None).expect("consume");
    let claimed = s.claim_upload(lease, Some("north")).expect("claim").expect("the snapshot's");
    assert_eq!((claimed.id, claimed.event.snapshot), (kept, Some(snap)));
    s.consume_upload(kept, None).expect("consume");
    assert!(s.snapshots_in_use().expect("in use").is_empty(), "a consumed upload's snapshot is a leftover");
}

/// Scheduled runs: a due time is taken once; another due time, or another schedule's, is
/// free; old ones are forgotten.
pub fn schedules(s: &impl Schedules) {
    let (a, b) = ("p1-nodea-00000001", "p2-nodeb-00000002");
    assert!(s.claim_due("import/north", 60_000, a).expect("claim"), "the first to ask runs it");
    assert!(!s.claim_due("import/north", 60_000, b).expect("claim"), "once per due time");
    assert!(s.claim_due("import/north", 120_000, a).expect("claim"), "the next due time is free");
    assert!(s.claim_due("export/north/nightly", 60_000, a).expect("claim"), "another schedule's too");
    // Node a ended with its runs unfinished: b takes over the ones it asks for, once.
    let a_ended = |tag: &str| tag == a;
    assert_eq!(
        s.retake_due("import/", b, &|_| false).expect("retake"),
        vec![],
        "a running node's runs stay its own"
    );
    assert_eq!(
        s.retake_due("import/", b, &a_ended).expect("retake"),
        vec![("import/north".to_owned(), 60_000), ("import/north".to_owned(), 120_000)]
    );
    assert_eq!(
        s.retake_due("import/", "p3-nodec-00000003", &a_ended).expect("retake"),
        vec![],
        "taken over once"
    );
    s.finish_due("import/north", 60_000).expect("finish");
    assert_eq!(
        s.retake_due("import/", "p3-nodec-00000003", &|t| t == b).expect("retake"),
        vec![("import/north".to_owned(), 120_000)],
        "b ended too: its unfinished run goes on, its finished one is done"
    );
    s.finish_due("import/north", 120_000).expect("finish");
    assert_eq!(
        s.retake_due("", b, &|_| true).expect("retake"),
        vec![("export/north/nightly".to_owned(), 60_000)]
    );
    s.finish_due("export/north/nightly", 60_000).expect("finish");
    assert_eq!(s.retake_due("", a, &|_| true).expect("retake"), vec![], "nothing unfinished");
    assert!(!s.claim_due("import/north", 60_000, b).expect("claim"), "a finished run is not run again");
    assert!(s.claim_due("pull/north/sis", 30_000, b).expect("claim"));
    assert_eq!(s.forget_due_claims(100_000).expect("forget"), 2, "the finished ones");
    assert!(!s.claim_due("import/north", 120_000, b).expect("claim"), "a recent one is remembered");
    assert!(!s.claim_due("pull/north/sis", 30_000, a).expect("claim"), "an unfinished one too");
    assert_eq!(s.forget_due_claims(30_001 + crate::UNFINISHED_KEPT_MS).expect("forget"), 2);
}

/// An outcome that applies (`apply`) or only records (`None`) an import, with `counts`.
fn outcome(status: crate::ImportStatus, counts: crate::Counts, apply: Option<LoadMode>) -> Outcome<'static> {
    Outcome::new(status, counts, apply)
}

/// Every record of a type, as (key, data), in key order; `deactivated` as in
/// [`Imports::records`].
fn records_of(s: &impl Imports, type_name: &str, deactivated: Option<bool>) -> Vec<(String, String)> {
    let mut all = Vec::new();
    let n = s
        .records("north", type_name, deactivated, &mut |k, d| all.push((k.to_owned(), d.to_owned())))
        .expect("read the records");
    assert_eq!(n as usize, all.len(), "records returns how many it passed on");
    all
}

/// Loading: a single type's rows staged, planned and committed, read back; a mirror import
/// that deletes one and changes one; a held import that changes nothing; a package whose
/// bulk file marks the record it no longer lists `tobedeleted`. Needs a store whose imports
/// open loaders (SQLite: a database file, not one in memory).
pub fn loading<S: Tenants + Imports>(s: &S) {
    use crate::{Counts, ImportStatus::*};
    s.add_tenant(&name("north"), &folders("students")).expect("add a tenant");
    let import =
        || s.create_import("north", "students", "students.csv", "upload", None, None).expect("an import");

    let first = import();
    assert_eq!(s.import(first).expect("read").expect("created").status, Running);
    let mut l = s.loader("north", "students", first).expect("a loader");
    assert_eq!(l.existing(), 0);
    for (line, key) in [(2, "S1"), (3, "S2"), (4, "S3")] {
        assert_eq!(
            l.stage(line, key, &format!("[\"{key}\",\"a\"]"), line as i64, StageKind::Load).expect("stage"),
            None
        );
    }
    assert_eq!(
        l.stage(5, "S2", "[\"S2\",\"b\"]", 9, StageKind::Load).expect("stage"),
        Some(3),
        "a repeated key names its first line"
    );
    let plan = l.plan("students", LoadMode::Mirror).expect("plan");
    assert_eq!((plan.added, plan.updated, plan.unchanged, plan.deleted), (3, 0, 0, 0));
    let counts = Counts { rows: 4, rejected: 1, ..plan };
    l.commit(outcome(Complete, counts, Some(LoadMode::Mirror))).expect("commit");
    let done = s.import(first).expect("read").expect("kept");
    assert_eq!((done.status, done.counts, done.type_name.as_str()), (Complete, counts, "students"));
    assert!(done.finished_ms.is_some(), "a finished import has its end time");
    assert_eq!(
        records_of(s, "students", None),
        [("S1", "[\"S1\",\"a\"]"), ("S2", "[\"S2\",\"a\"]"), ("S3", "[\"S3\",\"a\"]")]
            .map(|(k, d)| (k.to_owned(), d.to_owned()))
    );
    assert_eq!(s.record_count("north", "students").expect("count"), 3);

    // Mirror: S1 unchanged, S2 changed, S3 no longer listed.
    let second = import();
    let mut l = s.loader("north", "students", second).expect("a loader");
    assert_eq!(l.existing(), 3);
    l.stage(2, "S1", "[\"S1\",\"a\"]", 2, StageKind::Load).expect("stage");
    l.stage(3, "S2", "[\"S2\",\"c\"]", 30, StageKind::Load).expect("stage");
    let plan = l.plan("students", LoadMode::Mirror).expect("plan");
    assert_eq!((plan.added, plan.updated, plan.unchanged, plan.deleted), (0, 1, 1, 1));
    assert_eq!(l.deletion_sample(10, None).expect("sample"), ["S3"]);
    // What a file without columns 2 and 8 would empty: the records it rewrites that hold a
    // value there (S2; S1 is unchanged, S3 not listed; no record holds an eighth value).
    assert_eq!(
        l.emptied(&["$[1]".to_owned(), "$[7]".to_owned()]).expect("emptied"),
        crate::Emptied { records: 1, per_column: vec![1, 0] }
    );
    l.commit(outcome(Complete, plan, Some(LoadMode::Mirror))).expect("commit");
    assert_eq!(
        records_of(s, "students", None),
        [("S1", "[\"S1\",\"a\"]"), ("S2", "[\"S2\",\"c\"]")].map(|(k, d)| (k.to_owned(), d.to_owned()))
    );

    // Held: recorded, nothing applied.
    let held = import();
    let mut l = s.loader("north", "students", held).expect("a loader");
    l.stage(2, "S9", "[\"S9\",\"a\"]", 1, StageKind::Load).expect("stage");
    assert_eq!(l.emptied(&["$[1]".to_owned()]).expect("emptied").records, 0, "a new record loses nothing");
    l.commit(outcome(Held, Counts::default(), None)).expect("commit");
    assert_eq!(s.import(held).expect("read").expect("kept").status, Held);
    assert_eq!(s.record_count("north", "students").expect("count"), 2, "a held import changes no record");

    // A package: a bulk file's unlisted record stays, marked `tobedeleted` and inactive.
    let package =
        || s.create_import("north", "oneroster", "roster.zip", "upload", None, None).expect("an import");
    let org = |id: &str| format!("{{\"sourcedId\":\"{id}\",\"status\":\"active\"}}");
    let types = [("oneroster.orgs", LoadMode::Mirror)];
    let record_types = ["oneroster.orgs".to_owned()];
    let p1 = package();
    let l = s.package_loader("north", p1).expect("a package loader");
    for (line, id) in [(2, "O1"), (3, "O2")] {
        l.stage_in("oneroster.orgs", line, id, &org(id), line as i64, StageKind::Load).expect("stage");
    }
    assert_eq!(l.plan("oneroster.orgs", LoadMode::Mirror).expect("plan").added, 2);
    let o = Outcome {
        record_types: Some(&record_types),
        ..outcome(Complete, Counts::default(), Some(LoadMode::Mirror))
    };
    l.commit_types(&types, o.clone()).expect("commit");
    let p2 = package();
    let l = s.package_loader("north", p2).expect("a package loader");
    assert_eq!(l.existing_of("oneroster.orgs").expect("existing"), 2);
    l.stage_in("oneroster.orgs", 2, "O1", &org("O1"), 2, StageKind::Load).expect("stage");
    let plan = l.plan("oneroster.orgs", LoadMode::Mirror).expect("plan");
    assert_eq!((plan.added, plan.updated, plan.unchanged, plan.deleted), (0, 0, 1, 1));
    l.commit_types(&types, o).expect("commit");
    assert_eq!(records_of(s, "oneroster.orgs", Some(false)).len(), 1);
    let gone = records_of(s, "oneroster.orgs", Some(true));
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].0, "O2");
    assert!(gone[0].1.contains("\"status\":\"tobedeleted\""), "{}", gone[0].1);
}

/// Photos: a photo import applies to the active records it matched (others ignored), read
/// back one by one and in key order (bytes: `B8` before `S1` before `b7`) beside the keys of
/// the active records; an image shown by a photo is in use, a replaced one is handed back
/// once nothing shows it (not while another record still does), a photo that shows the image
/// its record shows already changes nothing, and of a key given twice the last photo stays;
/// a deactivated record gets no photo and is not listed; a record a mirror import deletes takes
/// its photo with it; an import superseded, discarded or already done is refused, nothing
/// written. Needs a store whose imports open loaders.
pub fn photos<S: Tenants + Imports + Photos>(s: &S) {
    use crate::{Counts, ImportStatus::*};
    use sluice_core::photo::{ImageFormat, Photo};
    s.add_tenant(&name("north"), &folders("students")).expect("add a tenant");
    s.add_tenant(&name("south"), &folders("students")).expect("add another tenant");
    let load = |type_name: &str, keys: &[&str], status| {
        let id = s.create_import("north", type_name, "f.csv", "upload", None, None).expect("an import");
        let mut l = s.loader("north", type_name, id).expect("a loader");
        for (i, key) in keys.iter().enumerate() {
            let data = format!("[\"{key}\"]");
            l.stage(i as u64 + 2, key, &data, hash_of(&data), StageKind::Load).expect("stage");
        }
        let plan = l.plan(type_name, LoadMode::Mirror).expect("plan");
        let apply = (status != Held).then_some(LoadMode::Mirror);
        l.commit(outcome(status, plan, apply)).expect("commit");
        id
    };
    let sha = |tag: &str| tag.repeat(64 / tag.len());
    let photo = |key: &str, tag: &str, import_id: i64| Photo {
        key: key.to_owned(),
        sha256: sha(tag),
        format: ImageFormat::Jpeg,
        width: 300,
        height: 400,
        bytes: 20_000,
        import_id,
    };
    let photo_import =
        || s.create_import("north", "student_photos", "photos.zip", "upload", None, None).expect("an import");
    let students = ["students".to_owned()];
    let apply = |id: i64, photos: &[Photo]| {
        let counts = Counts { rows: photos.len() as u64, added: photos.len() as u64, ..Counts::default() };
        let o = Outcome { record_types: Some(&students), ..outcome(Complete, counts, None) };
        s.apply_photos("north", "students", id, photos, &o)
    };
    let shown = |key: &str| s.photo("north", "students", key).expect("read a photo").map(|p| p.sha256);
    let listed = || {
        let mut all = Vec::new();
        let n = s.photos("north", "students", &mut |p| all.push(p.clone())).expect("list the photos");
        assert_eq!(n as usize, all.len(), "photos returns how many it passed on");
        all
    };
    let keys = |type_name: &str| {
        let mut all = Vec::new();
        let n = s.record_keys("north", type_name, &mut |k| all.push(k.to_owned())).expect("list the keys");
        assert_eq!(n as usize, all.len(), "record_keys returns how many it passed on");
        all
    };
    let in_use = |tag: &str| s.image_in_use("north", &sha(tag)).expect("image in use");

    assert!(keys("students").is_empty(), "no records yet");
    assert!(listed().is_empty(), "no photos yet");
    load("students", &["S3", "S1", "b7", "S2", "S10", "B8"], Complete);
    assert_eq!(keys("students"), ["B8", "S1", "S10", "S2", "S3", "b7"], "active keys, in byte order");
    assert!(matches!(s.record_keys("nowhere", "students", &mut |_| {}), Err(StoreError::NoSuchTenant(_))));

    // The first photos: X9 is no record, so no photo.
    let p1 = photo_import();
    let first = [
        photo("S2", "a", p1),
        photo("b7", "b", p1),
        photo("B8", "c", p1),
        photo("S1", "d", p1),
        photo("X9", "e", p1),
    ];
    assert_eq!(apply(p1, &first).expect("apply photos"), Vec::<String>::new(), "nothing replaced");
    let done = s.import(p1).expect("read").expect("kept");
    assert_eq!((done.status, done.counts.added), (Complete, 5), "the outcome is written with the photos");
    assert_eq!(s.photo("north", "students", "S1").expect("read"), Some(photo("S1", "d", p1)));
    assert_eq!(shown("X9"), None, "a photo of no record is not kept");
    assert!(!in_use("e"));
    assert_eq!(s.photo("north", "students", "nobody").expect("read"), None);
    assert_eq!(
        listed().iter().map(|p| p.key.as_str()).collect::<Vec<_>>(),
        ["B8", "S1", "S2", "b7"],
        "photos in byte order of their keys"
    );
    assert!(in_use("a") && in_use("b") && in_use("c") && in_use("d"));
    assert!(!s.image_in_use("south", &sha("a")).expect("image in use"), "images are the tenant's own");

    // Replacing: S1's image goes (nothing else shows it); S2 gets the image it shows already,
    // so keeps the photo of the first import; S3 now shows the image B8 shows.
    let p2 = photo_import();
    let png = Photo { format: ImageFormat::Png, width: 64, height: 80, bytes: 1_234, ..photo("S1", "f", p2) };
    let gone = apply(p2, &[png.clone(), photo("S2", "a", p2), photo("S3", "c", p2)]).expect("apply photos");
    assert_eq!(gone, [sha("d")], "the replaced image no photo shows");
    assert!(!in_use("d") && in_use("f"));
    assert_eq!(s.photo("north", "students", "S1").expect("read"), Some(png));
    assert_eq!(
        s.photo("north", "students", "S2").expect("read"),
        Some(photo("S2", "a", p1)),
        "the same image: the photo is unchanged"
    );
    // B8's image is replaced, but S3 still shows it; b7's twice in one import, the last stays.
    let p3 = photo_import();
    let gone = apply(p3, &[photo("B8", "01", p3), photo("b7", "02", p3), photo("b7", "03", p3)])
        .expect("apply photos");
    assert_eq!(gone, [sha("b"), sha("02")], "replaced images, in order, only those no photo shows");
    assert!(in_use("c") && !in_use("b") && !in_use("02"));
    assert_eq!(s.photo("north", "students", "b7").expect("read"), Some(photo("b7", "03", p3)));

    // A mirror import that no longer lists S3 and S1 deletes them, and their photos go too.
    load("students", &["S2", "S10", "B8", "b7"], Complete);
    assert_eq!((shown("S3"), shown("S1")), (None, None), "a deleted record's photo goes with it");
    assert!(!in_use("f"), "nothing shows the deleted record's image");
    assert!(!in_use("c"), "S3 was the last to show it");
    assert_eq!(
        listed().iter().map(|p| (p.key.as_str(), p.sha256.clone())).collect::<Vec<_>>(),
        [("B8", sha("01")), ("S2", sha("a")), ("b7", sha("03"))]
    );

    // Refused: a held import a newer import superseded, a discarded one, one already done.
    let held = load("students", &["S2"], Held);
    let discarded = load("students", &["S2"], Held);
    s.discard_import(discarded, "ann").expect("discard");
    let newer = load("students", &["S2", "S10", "B8", "b7"], Complete);
    assert_eq!(s.import(held).expect("read").expect("kept").status, Superseded);
    let refused = |id: i64| apply(id, &[photo("S2", "0a", id), photo("S10", "0b", id)]);
    assert!(
        matches!(refused(held), Err(StoreError::Superseded { id, by }) if id == held && by == newer),
        "a superseded import applies no photo"
    );
    assert!(matches!(refused(discarded), Err(StoreError::NotHeld(id)) if id == discarded));
    assert!(matches!(refused(p1), Err(StoreError::NotHeld(id)) if id == p1), "an import applies once");
    assert_eq!((shown("S2"), shown("S10")), (Some(sha("a")), None), "nothing written when refused");
    assert_eq!(s.import(held).expect("read").expect("kept").status, Superseded, "nor the outcome");
    assert_eq!(s.import(p1).expect("read").expect("kept").counts.added, 5);

    // A package's record deactivated: no longer listed, and no new photo for it.
    let package = |ids: &[&str]| {
        let id =
            s.create_import("north", "oneroster", "roster.zip", "upload", None, None).expect("an import");
        let l = s.package_loader("north", id).expect("a package loader");
        for (i, o) in ids.iter().enumerate() {
            let data = format!("{{\"sourcedId\":\"{o}\",\"status\":\"active\"}}");
            l.stage_in("oneroster.orgs", i as u64 + 2, o, &data, hash_of(&data), StageKind::Load)
                .expect("stage");
        }
        let types = ["oneroster.orgs".to_owned()];
        let o = Outcome {
            record_types: Some(&types),
            ..outcome(Complete, Counts::default(), Some(LoadMode::Mirror))
        };
        l.commit_types(&[("oneroster.orgs", LoadMode::Mirror)], o).expect("commit");
    };
    package(&["O1", "O2"]);
    let orgs = ["oneroster.orgs".to_owned()];
    let apply_orgs = |photos: &[Photo]| {
        let id = photo_import();
        let o = Outcome { record_types: Some(&orgs), ..outcome(Complete, Counts::default(), None) };
        s.apply_photos("north", "oneroster.orgs", id, photos, &o).expect("apply photos")
    };
    apply_orgs(&[photo("O1", "11", 0), photo("O2", "12", 0)]);
    package(&["O1"]);
    assert_eq!(keys("oneroster.orgs"), ["O1"], "a deactivated record's key is not listed");
    let mut orgs_listed = Vec::new();
    s.photos("north", "oneroster.orgs", &mut |p| orgs_listed.push(p.key.clone())).expect("list the photos");
    assert_eq!(orgs_listed, ["O1"], "nor its photo");
    apply_orgs(&[photo("O2", "13", 0)]);
    assert!(!in_use("13"), "a deactivated record gets no photo");
    assert_eq!(
        s.photo("north", "oneroster.orgs", "O2").expect("read").map(|p| p.sha256),
        Some(sha("12")),
        "it keeps the one it had"
    );
}

/// An upload is imported once: a worker whose lease ran out while it imported (a node that
/// stalled) and a worker that claimed the upload after it both commit; the second to commit
/// fails with [`StoreError::AlreadyConsumed`] and changes nothing. Needs a store whose imports
/// open loaders.
pub fn imported_once<S: Tenants + Uploads + ImportQueue + Imports>(s: &S) {
    use crate::{Counts, ImportStatus::*};
    s.add_tenant(&name("north"), &folders("students")).expect("add a tenant");
    let upload = s
        .record_upload(&UploadEvent {
            tenant: name("north"),
            path: VirtualPath::resolve(b"/students/students.csv").expect("a path"),
            size: 3,
            sha256: sluice_core::sha256_of(&b"abc"[..]).expect("hash").1,
            at_ms: 1_000,
            snapshot: None,
        })
        .expect("record");
    let stalled = s.claim_upload(Duration::from_millis(1), None).expect("claim").expect("waiting");
    std::thread::sleep(Duration::from_millis(20));
    let reclaimed = s.claim_upload(Duration::from_secs(60), None).expect("claim").expect("its lease ran out");
    assert_eq!((stalled.id, reclaimed.id), (upload, upload));
    let stage = |key: &str| {
        let id = s
            .create_import("north", "students", "students.csv", "upload", Some(upload), None)
            .expect("import");
        let mut l = s.loader("north", "students", id).expect("a loader");
        l.stage(2, key, &format!("[\"{key}\"]"), 1, StageKind::Load).expect("stage");
        (id, l)
    };
    let (first_id, first) = stage("S1");
    let (second_id, second) = stage("S2");
    let applies = || Outcome {
        upload_id: Some(upload),
        ..outcome(Complete, Counts { rows: 1, added: 1, ..Counts::default() }, Some(LoadMode::Mirror))
    };
    second.commit(applies()).expect("the first to commit applies");
    let late = first.commit(applies());
    assert!(matches!(late, Err(StoreError::AlreadyConsumed(u)) if u == upload), "{late:?}");
    assert_eq!(records_of(s, "students", None), [("S2".to_owned(), "[\"S2\"]".to_owned())], "applied once");
    assert_eq!(s.import(second_id).expect("read").expect("kept").status, Complete);
    assert_eq!(
        s.import(first_id).expect("read").expect("kept").status,
        Running,
        "the late one wrote nothing"
    );
    assert!(s.upload_consumed(upload).expect("consumed?"));
    // The late one's `running` row is work its process left: removed for its tenant only.
    s.add_tenant(&name("south"), &folders("students")).expect("add a tenant");
    let other = s.create_import("south", "students", "s.csv", "cli", None, None).expect("import");
    assert_eq!(s.tenants_at_work().expect("at work"), ["north", "south"]);
    assert_eq!(s.remove_interrupted_imports("north").expect("remove"), 1);
    assert!(s.import(first_id).expect("read").is_none(), "the stale row is gone");
    assert_eq!(s.tenants_at_work().expect("at work"), ["south"]);
    assert_eq!(s.import(other).expect("read").map(|i| i.status), Some(Running), "another tenant's stays");
}

/// Saved exports: saved, listed by name, found whatever the case, refused twice unless
/// replaced, removed; their runs logged newest first; an after-import export is due once per
/// applied import of its type that changed records (not for imports before it was saved, a
/// failed import, an import that changed nothing, or another type's), and a scheduled one is
/// listed with its tenant's time zone. Needs a store whose imports open loaders.
pub fn saved_exports<S: Tenants + Imports + SavedExports>(s: &S) {
    use crate::{Counts, ImportStatus::*};
    use sluice_core::saved_export::{
        ExportFormat, ExportName, ExportWhen, RunCause, RunOutcome, SavedExport,
    };
    s.add_tenant(&name("north"), &folders("students,guardians")).expect("add a tenant");
    let apply = |type_name: &str, added: u64| {
        let id = s.create_import("north", type_name, "f.csv", "upload", None, None).expect("an import");
        let mut l = s.loader("north", type_name, id).expect("a loader");
        l.stage(2, "K", "[\"K\"]", 1, StageKind::Load).expect("stage");
        let counts = Counts { rows: 1, added, unchanged: 1 - added, ..Counts::default() };
        l.commit(outcome(Complete, counts, Some(LoadMode::Upsert))).expect("commit");
        id
    };
    apply("students", 1);
    let export = |n: &str, when: ExportWhen| SavedExport {
        name: ExportName::parse(n).expect("a name"),
        type_name: "students".to_owned(),
        format: ExportFormat::Csv,
        columns: vec!["id".to_owned()],
        filters: vec!["grade=9".to_owned()],
        bom: false,
        when,
        push_to: None,
        in_exports: true,
    };
    let after = export("Nightly", ExportWhen::AfterImport);
    s.save_export("north", &after, false).expect("save");
    assert!(
        matches!(
            s.save_export("north", &export("nightly", ExportWhen::OnDemand), false),
            Err(StoreError::ExportExists(_))
        ),
        "names are unique whatever their case"
    );
    let daily = export("daily", ExportWhen::parse("0 6 * * *").expect("cron"));
    s.save_export("north", &daily, false).expect("save a second");
    let names: Vec<String> =
        s.saved_exports("north").expect("list").iter().map(|e| e.name.to_string()).collect();
    assert_eq!(names, ["Nightly", "daily"]);
    assert_eq!(s.saved_export("north", "NIGHTLY").expect("find"), Some(after.clone()), "read back as saved");
    assert!(
        s.exports_after_imports().expect("due").is_empty(),
        "imports before the export was saved are not its"
    );

    let scheduled = s.scheduled_exports().expect("scheduled");
    assert_eq!(scheduled, [("north".to_owned(), "UTC".to_owned(), daily.clone())]);

    apply("guardians", 1);
    apply("students", 0);
    s.record_failed_import("north", "students", "s.csv", "upload", None, "bad").expect("a failed import");
    assert!(s.exports_after_imports().expect("due").is_empty(), "nothing changed students");
    let changed = apply("students", 1);
    let due = s.exports_after_imports().expect("due");
    assert_eq!(due, [("north".to_owned(), after.clone(), changed)]);
    assert!(s.mark_import_seen("north", "Nightly", changed).expect("answered"), "taken by the first to ask");
    assert!(!s.mark_import_seen("north", "Nightly", changed).expect("answered"), "not by a second server");
    assert!(s.exports_after_imports().expect("due").is_empty(), "each import is answered once");

    let run = s.start_export_run("north", "Nightly", RunCause::AfterImport).expect("start");
    let written = RunOutcome::Written { rows: 3, bytes: 40, destination: "/exports/Nightly.csv".to_owned() };
    s.finish_export_run(run, &written).expect("finish");
    let failed_run = s.start_export_run("north", "daily", RunCause::Schedule).expect("start");
    s.finish_export_run(failed_run, &RunOutcome::Failed("disk full".to_owned())).expect("finish");
    let runs = s.export_runs("north", None, 10).expect("runs");
    assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), [failed_run, run], "newest first");
    assert_eq!(s.export_run(run).expect("one run").map(|r| r.id), Some(run));
    let killed = s.start_export_run("north", "daily", RunCause::Schedule).expect("start");
    assert_eq!(s.fail_interrupted_runs(&|_| true).expect("sweep"), 1);
    let swept = s.export_run(killed).expect("read").expect("kept");
    assert!(
        matches!(swept.outcome, Some(RunOutcome::Failed(ref why)) if why.contains("interrupted")),
        "{swept:?}"
    );
    assert!(swept.finished_ms.is_some());
    assert_eq!(runs[1].outcome, Some(written));
    assert_eq!(runs[1].cause, RunCause::AfterImport);
    assert!(runs[1].finished_ms.is_some());
    assert_eq!(s.export_runs("north", Some("nightly"), 10).expect("runs").len(), 1, "one export's runs");

    let replaced = export("NIGHTLY", ExportWhen::OnDemand);
    s.save_export("north", &replaced, true).expect("replace");
    let as_first_spelled = SavedExport { name: ExportName::parse("Nightly").expect("a name"), ..replaced };
    assert_eq!(
        s.saved_export("north", "nightly").expect("find"),
        Some(as_first_spelled),
        "replaced, its name kept"
    );
    s.remove_saved_export("north", "nightly").expect("remove");
    assert!(matches!(s.remove_saved_export("north", "nightly"), Err(StoreError::NoSuchExport(_))));
    assert_eq!(s.export_runs("north", None, 10).expect("runs").len(), 3, "the log outlives the export");
    assert!(matches!(s.saved_exports("south"), Err(StoreError::NoSuchTenant(_))));
}

/// A content hash for staged rows.
fn hash_of(data: &str) -> i64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut h);
    h.finish() as i64
}

/// Records one at a time: search by key, names and email (folded, each word a prefix; the
/// total beside a page; sorted by key or name, either way), kept by imports (a changed name is
/// found by its new one, an erased record is not found); deleting by hand (unknown keys refused
/// whole; a `hold` reference refuses until confirmed; `deactivate` deactivates the referring
/// records; the person role and the person go; a tombstone remains) and an import that carries
/// a deleted key again adds it back and says so. Needs a store whose imports open loaders.
pub fn records<S: Tenants + Imports + Records + People>(s: &S) {
    use crate::{ImportStatus::*, RecordQuery, RecordSort, Referrer};
    use sluice_core::import::{OnDelete, PersonColumns};
    s.add_tenant(&name("north"), &folders("students,guardians")).expect("add a tenant");
    s.add_tenant(&name("south"), &folders("students")).expect("add another tenant");
    let person = student_columns();
    let load =
        |tenant: &str, type_name: &str, rows: &[&[&str]], mode: LoadMode, person: Option<&PersonColumns>| {
            let id = s.create_import(tenant, type_name, "f.csv", "upload", None, None).expect("an import");
            let mut l = s.loader(tenant, type_name, id).expect("a loader");
            for (i, row) in rows.iter().enumerate() {
                let data = serde_json::to_string(row).expect("json");
                l.stage(i as u64 + 2, row[0], &data, hash_of(&data), StageKind::Load).expect("stage");
            }
            let plan = l.plan(type_name, mode).expect("plan");
            l.commit(Outcome { person, ..outcome(Complete, plan, Some(mode)) }).expect("commit");
            s.import(id).expect("read").expect("kept")
        };
    let students: &[&[&str]] = &[
        &["1042", "Ann", "Smith", "ann.smith@north.org"],
        &["1043", "Émile", "Zola", "ez@north.org"],
        &["2001", "Bob", "Smithers", "bob@north.org"],
        &["2002", "Ann", "Jones", "aj@north.org"],
    ];
    load("north", "students", students, LoadMode::Mirror, Some(&person));
    load("south", "students", &[&["1042", "Sam", "Smith", "sam@south.org"]], LoadMode::Mirror, Some(&person));
    let find = |q: &str, sort: RecordSort, descending: bool| {
        let query = RecordQuery { q: q.into(), sort, descending, limit: 2, ..RecordQuery::default() };
        let found = s.search_records("north", "students", &query).expect("search");
        (found.total, found.records.into_iter().map(|r| r.key).collect::<Vec<_>>())
    };
    let keys = |v: &[&str]| v.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    assert_eq!(find("", RecordSort::Key, false), (4, keys(&["1042", "1043"])), "all, a page of two");
    assert_eq!(find("", RecordSort::Key, true), (4, keys(&["2002", "2001"])), "key order, descending");
    assert_eq!(find("", RecordSort::Name, false), (4, keys(&["2002", "1042"])), "Jones, Smith, ...");
    assert_eq!(find("10", RecordSort::Key, false), (2, keys(&["1042", "1043"])), "a key prefix");
    assert_eq!(find("smith", RecordSort::Name, false), (2, keys(&["1042", "2001"])), "a last-name prefix");
    assert_eq!(find("SMITH ann", RecordSort::Key, false), (1, keys(&["1042"])), "every word, any case");
    assert_eq!(find("Smith, Ann", RecordSort::Key, false), (1, keys(&["1042"])), "a comma separates words");
    assert_eq!(find("émile", RecordSort::Key, false), (1, keys(&["1043"])), "Unicode case folding");
    assert_eq!(find("bob@", RecordSort::Key, false), (1, keys(&["2001"])), "an email prefix");
    assert_eq!(find("ith", RecordSort::Key, false), (0, keys(&[])), "a prefix, not a substring");
    assert_eq!(find("sam", RecordSort::Key, false), (0, keys(&[])), "another tenant's records are not found");
    let page2 = RecordQuery { q: "smith".into(), limit: 1, offset: 1, ..RecordQuery::default() };
    let found = s.search_records("north", "students", &page2).expect("search");
    assert_eq!(found.total, 2, "the total counts every match, not the page");
    assert_eq!(found.records.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["2001"], "the second page");
    let past = RecordQuery { q: "smith".into(), limit: 1, offset: 5, ..RecordQuery::default() };
    let found = s.search_records("north", "students", &past).expect("search");
    assert_eq!((found.total, found.records.len()), (2, 0), "a page past the last still has the total");
    let active =
        RecordQuery { q: "smith".into(), deactivated: Some(true), limit: 5, ..RecordQuery::default() };
    assert_eq!(s.search_records("north", "students", &active).expect("search").total, 0, "none deactivated");

    // Imports keep the search: a changed name is found by its new one, an erased record not at all.
    let renamed: &[&[&str]] = &[
        &["1042", "Ann", "Smythe", "ann.smith@north.org"],
        &["1043", "Émile", "Zola", "ez@north.org"],
        &["2001", "Bob", "Smithers", "bob@north.org"],
    ];
    load("north", "students", renamed, LoadMode::Mirror, Some(&person));
    assert_eq!(find("smith", RecordSort::Key, false), (1, keys(&["2001"])));
    assert_eq!(find("smythe", RecordSort::Key, false), (1, keys(&["1042"])));
    assert_eq!(find("jones", RecordSort::Key, false), (0, keys(&[])), "an erased record is not found");

    // A type without names is found by key alone, in any case: keys that mix cases or have
    // characters beyond ASCII have search rows, the others are found in the records' own key.
    let courses: &[&[&str]] = &[
        &["ABC-1"],
        &["abc-2"],
        &["Abc-3"],
        &["abd-4"],
        &["10001"],
        &["10002"],
        &["Émile-5"],
        &["STRASSE-1"],
        &["ÉCOLE-6"],
    ];
    load("north", "courses", courses, LoadMode::Mirror, None);
    let course = |q: &str, sort: RecordSort| {
        let query = RecordQuery { q: q.into(), sort, limit: 10, ..RecordQuery::default() };
        let found = s.search_records("north", "courses", &query).expect("search");
        (found.total, found.records.into_iter().map(|r| r.key).collect::<Vec<_>>())
    };
    assert_eq!(course("abc", RecordSort::Key), (3, keys(&["ABC-1", "Abc-3", "abc-2"])), "any case");
    assert_eq!(course("AB", RecordSort::Key), (4, keys(&["ABC-1", "Abc-3", "abc-2", "abd-4"])));
    assert_eq!(course("1000", RecordSort::Key), (2, keys(&["10001", "10002"])));
    assert_eq!(course("émile", RecordSort::Key), (1, keys(&["Émile-5"])), "Unicode case folding");
    assert_eq!(course("abc ABC-2", RecordSort::Key), (1, keys(&["abc-2"])), "every word begins the key");
    assert_eq!(course("bc", RecordSort::Key), (0, keys(&[])), "a prefix, not a substring");
    assert_eq!(
        course("a", RecordSort::Name),
        (4, keys(&["ABC-1", "Abc-3", "abc-2", "abd-4"])),
        "no names: by key"
    );
    assert_eq!(course("", RecordSort::Name).0, 9);
    assert_eq!(course("éco", RecordSort::Key), (1, keys(&["ÉCOLE-6"])), "upper case beyond ASCII");
    let descending = RecordQuery { q: "ab".into(), descending: true, limit: 10, ..RecordQuery::default() };
    let found = s.search_records("north", "courses", &descending).expect("search");
    assert_eq!(
        found.records.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        ["abd-4", "abc-2", "Abc-3", "ABC-1"]
    );
    assert_eq!(course("strasse", RecordSort::Key), (1, keys(&["STRASSE-1"])));
    assert_eq!(course("straße", RecordSort::Key), (0, keys(&[])), "STRASSE is not straße folded");
    let only_active =
        RecordQuery { q: "abc".into(), deactivated: Some(false), limit: 10, ..RecordQuery::default() };
    assert_eq!(s.search_records("north", "courses", &only_active).expect("search").total, 3);
    // A later import keeps it: new keys are found, erased ones are not.
    load("north", "courses", &[&["ABC-1"], &["xyz-9"], &["XYZ-10"], &["Xyz-11"]], LoadMode::Mirror, None);
    assert_eq!(course("abc", RecordSort::Key), (1, keys(&["ABC-1"])));
    assert_eq!(course("xyz", RecordSort::Key), (3, keys(&["XYZ-10", "Xyz-11", "xyz-9"])));
    assert_eq!(course("abd", RecordSort::Key), (0, keys(&[])), "an erased record is not found");
    assert_eq!(course("éco", RecordSort::Key), (0, keys(&[])), "nor one with a search row");
    // Deleted by hand, with or without a search row: not found.
    s.delete_records("north", "courses", &["Xyz-11".into(), "XYZ-10".into()], "ann@x", &[], true)
        .expect("delete");
    assert_eq!(course("xyz", RecordSort::Key), (1, keys(&["xyz-9"])));

    // One record, what wrote it, its person.
    let r = s.record("north", "students", "1042").expect("read").expect("there");
    assert!(r.data.contains("Smythe") && !r.inactive && r.line == Some(2), "{r:?}");
    assert!(r.updated_import > r.created_import, "the second import changed it");
    let p = s.person_of("north", "students", "1042").expect("person").expect("a role of a person");
    assert_eq!(p.contact.last_name, "Smythe");
    assert_eq!(s.person("north", p.id).expect("person"), Some(p.clone()));
    assert_eq!(s.person("south", p.id).expect("person"), None, "a person of another tenant is none");
    let (n, people) = s.search_people("north", "émi", 10, 0).expect("people");
    assert_eq!((n, people[0].contact.first_name.as_str()), (1, "Émile"));

    // Guardians refer to students; a `hold` reference refuses a deletion until it is confirmed.
    load("north", "guardians", &[&["G1", "1042"], &["G2", "1042"], &["G3", "2001"]], LoadMode::Mirror, None);
    let hold = Referrer {
        from_type: "guardians".into(),
        path: "$[1]".into(),
        to_type: "students".into(),
        on_delete: OnDelete::Hold,
        prefix: false,
    };
    let found = s.referring("north", "1042", std::slice::from_ref(&hold), 10).expect("referring");
    assert_eq!((found[0].active, found[0].sample.len()), (2, 2));
    let refused =
        s.delete_records("north", "students", &["1042".into()], "ann@x", std::slice::from_ref(&hold), false);
    assert!(matches!(&refused, Err(StoreError::Referred(m)) if m.contains("G1, G2")), "{refused:?}");
    let unknown = s.delete_records("north", "students", &["1043".into(), "nope".into()], "ann@x", &[], true);
    assert!(matches!(unknown, Err(StoreError::NoSuchRecord { .. })), "{unknown:?}");
    assert!(
        s.record("north", "students", "1043").expect("read").is_some(),
        "a refused deletion deletes nothing"
    );
    let other = s.delete_records("south", "students", &["2001".into()], "ann@x", &[], true);
    assert!(matches!(other, Err(StoreError::NoSuchRecord { .. })), "another tenant's key is no record");

    let done = s
        .delete_records("north", "students", &["1042".into()], "ann@x", std::slice::from_ref(&hold), true)
        .expect("confirmed");
    assert_eq!((done.deleted, done.kept, done.deactivated), (vec!["1042".to_owned()], 2, 0));
    assert!(s.record("north", "students", "1042").expect("read").is_none());
    assert_eq!(find("smythe", RecordSort::Key, false), (0, keys(&[])), "a deleted record is not found");
    assert!(s.person("north", p.id).expect("person").is_none(), "the person left without a role goes");
    let t = s.tombstone("north", "students", "1042").expect("tombstone").expect("kept");
    assert_eq!(t.deleted_by, "ann@x");
    assert!(s.record("south", "students", "1042").expect("read").is_some(), "the other tenant's 1042 stays");

    // `deactivate`: the referring records are deactivated in the same transaction.
    let deactivate = Referrer { on_delete: OnDelete::Deactivate, ..hold.clone() };
    let done = s
        .delete_records(
            "north",
            "students",
            &["2001".into()],
            "ann@x",
            std::slice::from_ref(&deactivate),
            false,
        )
        .expect("deactivating");
    assert_eq!((done.kept, done.deactivated), (0, 1));
    assert!(s.record("north", "guardians", "G3").expect("read").expect("kept").inactive);
    let guardians = |deactivated| {
        let q = RecordQuery { q: "g".into(), deactivated, limit: 10, ..RecordQuery::default() };
        let found = s.search_records("north", "guardians", &q).expect("search");
        (found.total, found.records.into_iter().map(|r| r.key).collect::<Vec<_>>())
    };
    assert_eq!(guardians(Some(false)), (2, keys(&["G1", "G2"])), "active ones");
    assert_eq!(guardians(Some(true)), (1, keys(&["G3"])), "deactivated ones");
    assert_eq!(guardians(None), (3, keys(&["G1", "G2", "G3"])), "all");

    // An upsert that carries a deleted key again adds it back and says so.
    let back = load(
        "north",
        "students",
        &[&["1042", "Ann", "Smith", "ann.smith@north.org"]],
        LoadMode::Upsert,
        Some(&person),
    );
    assert_eq!(back.counts.added, 1);
    let said = back.warnings.join("\n");
    assert!(
        said.contains("line 2: record 1042 was deleted by ann@x on ") && said.contains(" and is added again"),
        "{said}"
    );
    assert!(s.tombstone("north", "students", "1042").expect("tombstone").is_none(), "said once");
    let again = load(
        "north",
        "students",
        &[&["1042", "Ann", "Smith", "ann.smith@north.org"]],
        LoadMode::Upsert,
        Some(&person),
    );
    assert!(again.warnings.is_empty(), "{:?}", again.warnings);

    // A tenant removed takes its records, search rows and people with it, and only its own: a
    // tenant of the name made again starts empty.
    assert_eq!(s.people("south").expect("people").len(), 1);
    s.remove_tenant(&name("south")).expect("remove a tenant");
    s.add_tenant(&name("south"), &folders("students")).expect("add it again");
    assert_eq!(s.record_count("south", "students").expect("count"), 0);
    assert!(s.people("south").expect("people").is_empty());
    let query = RecordQuery { q: "sam".into(), limit: 10, ..RecordQuery::default() };
    assert_eq!(s.search_records("south", "students", &query).expect("search").total, 0);
    assert!(s.record("north", "students", "1042").expect("read").is_some(), "another tenant's stay");
    assert!(!s.people("north").expect("people").is_empty());
}

/// A package's users as people across its imports: a bulk makes a person per user; a delta
/// that renames one keeps its person (the source id), one that marks a user `tobedeleted`
/// ends the role and removes the person it leaves without one, but not a person who still
/// holds another role (a guardian of the same name and email); a user deleted by hand takes
/// its role and person with it, and the next delta leaves no one behind; users listed again
/// are people again; a bulk that no longer lists a user ends its role the same way. No person
/// is ever left without a role. Needs a store whose imports open loaders.
pub fn package_people<S: Tenants + Imports + People + Records>(s: &S) {
    use crate::ImportStatus::Complete;
    use sluice_core::import::PersonColumns;
    s.add_tenant(&name("north"), &folders("guardians")).expect("add a tenant");
    let user = |id: &str, given: &str, family: &str, status: &str| {
        format!(
            "{{\"sourcedId\":\"{id}\",\"status\":\"{status}\",\"givenName\":\"{given}\",\"familyName\":\"{family}\",\"email\":\"{}@x.org\"}}",
            given.to_lowercase()
        )
    };
    let types = ["oneroster.users".to_owned()];
    let package = |mode: LoadMode, rows: &[(&str, &str, &str, &str)]| {
        let id =
            s.create_import("north", "oneroster", "roster.zip", "upload", None, None).expect("an import");
        let l = s.package_loader("north", id).expect("a package loader");
        for (i, (key, given, family, status)) in rows.iter().enumerate() {
            let data = user(key, given, family, status);
            let kind = if *status == "tobedeleted" { StageKind::Delete } else { StageKind::Load };
            l.stage_in("oneroster.users", i as u64 + 2, key, &data, hash_of(&data), kind).expect("stage");
        }
        let o = Outcome { record_types: Some(&types), ..outcome(Complete, Default::default(), Some(mode)) };
        l.commit_types(&[("oneroster.users", mode)], o).expect("commit");
    };
    // (first name, last name, roles as "type key") of every person, in name order; every
    // person of the tenant has a role (`people` shows those with one, the search them all).
    let people = || {
        let (all, _) = s.search_people("north", "", 100, 0).expect("search people");
        let with_roles = s.people("north").expect("people").len();
        assert_eq!(all, with_roles as u64, "a person without a role is left behind");
        let mut all: Vec<(String, String, Vec<String>)> = s
            .people("north")
            .expect("people")
            .into_iter()
            .map(|p| {
                let mut roles: Vec<String> =
                    p.roles.iter().map(|r| format!("{} {}", r.type_name, r.key)).collect();
                roles.sort();
                (p.contact.first_name, p.contact.last_name, roles)
            })
            .collect();
        all.sort();
        all
    };
    let id_of = |first: &str| {
        s.people("north").expect("people").into_iter().find(|p| p.contact.first_name == first).map(|p| p.id)
    };
    let person = |first: &str, last: &str, roles: &[&str]| {
        (first.to_owned(), last.to_owned(), roles.iter().map(|r| (*r).to_owned()).collect::<Vec<_>>())
    };
    package(
        LoadMode::Mirror,
        &[
            ("U1", "Ann", "Lee", "active"),
            ("U2", "Bob", "Ray", "active"),
            ("U3", "Cy", "Doe", "active"),
            ("U4", "Di", "Fox", "active"),
        ],
    );
    // A guardian with Cy's name and email is Cy.
    let guardian = PersonColumns {
        role: "guardian".into(),
        id: Some(0),
        first_name: 1,
        last_name: 2,
        email: Some(3),
        phone: None,
    };
    let g = s.create_import("north", "guardians", "g.csv", "upload", None, None).expect("an import");
    let mut l = s.loader("north", "guardians", g).expect("a loader");
    let data = serde_json::to_string(&["G1", "Cy", "Doe", "cy@x.org"]).expect("json");
    l.stage(2, "G1", &data, hash_of(&data), StageKind::Load).expect("stage");
    let plan = l.plan("guardians", LoadMode::Mirror).expect("plan");
    l.commit(Outcome { person: Some(&guardian), ..outcome(Complete, plan, Some(LoadMode::Mirror)) })
        .expect("commit");
    assert_eq!(
        people(),
        [
            person("Ann", "Lee", &["oneroster.users U1"]),
            person("Bob", "Ray", &["oneroster.users U2"]),
            person("Cy", "Doe", &["guardians G1", "oneroster.users U3"]),
            person("Di", "Fox", &["oneroster.users U4"]),
        ]
    );
    let bob = id_of("Bob");

    // A delta: Bob renamed (the same person), Ann and Cy deleted.
    package(
        LoadMode::Delta,
        &[
            ("U1", "Ann", "Lee", "tobedeleted"),
            ("U2", "Rob", "Ray", "active"),
            ("U3", "Cy", "Doe", "tobedeleted"),
        ],
    );
    assert_eq!(
        people(),
        [
            person("Cy", "Doe", &["guardians G1"]),
            person("Di", "Fox", &["oneroster.users U4"]),
            person("Rob", "Ray", &["oneroster.users U2"]),
        ],
        "Ann left without a role goes; Cy stays a guardian"
    );
    assert_eq!(id_of("Rob"), bob, "the source id keeps the person");

    // Di deleted by hand: her role and person go at once.
    s.delete_records("north", "oneroster.users", &["U4".to_owned()], "ann@x.org", &[], false)
        .expect("delete by hand");
    assert_eq!(
        people(),
        [person("Cy", "Doe", &["guardians G1"]), person("Rob", "Ray", &["oneroster.users U2"])]
    );

    // Ann and Di listed again are people again; a bulk that no longer lists Di ends her role.
    package(LoadMode::Delta, &[("U1", "Ann", "Lee", "active"), ("U4", "Di", "Fox", "active")]);
    assert_eq!(people().len(), 4);
    package(LoadMode::Mirror, &[("U1", "Ann", "Lee", "active"), ("U2", "Rob", "Ray", "active")]);
    assert_eq!(
        people(),
        [
            person("Ann", "Lee", &["oneroster.users U1"]),
            person("Cy", "Doe", &["guardians G1"]),
            person("Rob", "Ray", &["oneroster.users U2"]),
        ]
    );
}

/// A saved export of `students` (CSV, one column, one filter, run on demand) named `n`.
fn students_export(n: &str) -> sluice_core::saved_export::SavedExport {
    use sluice_core::saved_export::{ExportFormat, ExportName, ExportWhen, SavedExport};
    SavedExport {
        name: ExportName::parse(n).expect("a name"),
        type_name: "students".to_owned(),
        format: ExportFormat::Csv,
        columns: vec!["id".to_owned()],
        filters: vec!["grade=9".to_owned()],
        bom: false,
        when: ExportWhen::OnDemand,
        push_to: None,
        in_exports: true,
    }
}

/// Notifications, queued for a saved export's failed run (an import's end queues them the same
/// way, to the same recipients): one per recipient, then the webhook, none for a tenant with
/// neither; due oldest first, at most `per_tenant` of each tenant's (one tenant's backlog does
/// not crowd another out); an attempt that failed is retried at its time (not before), one
/// given up is `failed`, one sent is `sent` with its error cleared; a tenant's log newest
/// first, within its limit.
pub fn deliveries<S: Tenants + SavedExports + Deliveries>(s: &S) {
    use crate::Channel;
    use sluice_core::delivery::About;
    use sluice_core::saved_export::{RunCause, RunOutcome};
    for tenant in ["busy", "quiet", "silent"] {
        s.add_tenant(&name(tenant), &[]).expect("add a tenant");
    }
    let to_all =
        change(&[("notify.email", "a@busy.org, b@busy.org"), ("notify.webhook", "https://hooks.example/b")]);
    s.change_settings("busy", &to_all).expect("recipients and a webhook");
    s.change_settings("quiet", &change(&[("notify.email", "ops@quiet.org")])).expect("one recipient");
    let failed_run = |tenant: &str| {
        let run = s.start_export_run(tenant, "nightly", RunCause::Schedule).expect("start a run");
        s.finish_export_run(run, &RunOutcome::Failed("disk full".to_owned())).expect("finish it");
        run
    };
    let first = failed_run("busy");
    assert_eq!(s.queue_export_failure(first).expect("queue"), 3, "two recipients and the webhook");
    assert_eq!(s.queue_export_failure(failed_run("silent")).expect("queue"), 0, "no one to tell");
    assert!(s.queue_export_failure(first + 1_000).is_err(), "a run that is not there queues nothing");
    let queued = s.deliveries("busy", 10).expect("the log");
    let shown: Vec<(Channel, &str)> = queued.iter().rev().map(|d| (d.channel, d.target.as_str())).collect();
    assert_eq!(
        shown,
        [
            (Channel::Email, "a@busy.org"),
            (Channel::Email, "b@busy.org"),
            (Channel::Webhook, "https://hooks.example/b")
        ],
        "each recipient in order, then the webhook"
    );
    for d in &queued {
        assert_eq!(
            (d.tenant.as_str(), d.about, d.status.as_str()),
            ("busy", About::ExportRun(first), "pending")
        );
        assert_eq!((d.attempts, d.last_error.as_deref(), d.finished_ms), (0, None, None));
        assert!(d.created_ms > 0);
    }
    for _ in 0..3 {
        s.queue_export_failure(failed_run("busy")).expect("queue");
    }
    let quiet_run = failed_run("quiet");
    assert_eq!(s.queue_export_failure(quiet_run).expect("queue"), 1);
    let busy_ids: Vec<i64> = s.deliveries("busy", 100).expect("the log").iter().rev().map(|d| d.id).collect();
    assert_eq!(busy_ids.len(), 12);
    let lease = Duration::from_secs(60);
    let due = s.claim_deliveries(5, lease).expect("due");
    let of = |due: &[crate::Delivery], t: &str| {
        due.iter().filter(|d| d.tenant == t).map(|d| d.id).collect::<Vec<_>>()
    };
    assert_eq!(of(&due, "busy"), busy_ids[..5], "a tenant's oldest, at most per_tenant of them");
    assert_eq!(of(&due, "quiet").len(), 1, "the busy tenant's backlog does not crowd the quiet one out");
    assert_eq!(due.len(), 6);
    assert!(due.windows(2).all(|w| w[0].id < w[1].id), "oldest first");
    assert_eq!(due.iter().find(|d| d.tenant == "quiet").map(|d| d.about), Some(About::ExportRun(quiet_run)));
    // Claimed: another notifier (another node) gets none of them, nor the rest of busy's
    // backlog while busy's claim is out: a tenant's deliveries go one sender at a time.
    assert!(s.claim_deliveries(5, lease).expect("due").is_empty(), "everything due is claimed");
    s.release_deliveries(&[due[5].id]).expect("give quiet's back");
    assert_eq!(
        s.claim_deliveries(5, lease).expect("due").iter().map(|d| d.id).collect::<Vec<_>>(),
        [due[5].id]
    );

    // Sent, retried later, retried now, given up.
    let [sent, later, now, gone] = [busy_ids[0], busy_ids[1], busy_ids[2], busy_ids[3]];
    s.delivery_attempted(sent, None, None).expect("sent");
    s.delivery_attempted(later, Some("timed out"), Some(crate::now_ms() + 3_600_000)).expect("retry later");
    s.delivery_attempted(now, Some("HTTP 502"), Some(0)).expect("retry now");
    s.delivery_attempted(gone, Some("no such mailbox"), None).expect("given up");
    let log = s.deliveries("busy", 100).expect("the log");
    let find = |id: i64| log.iter().find(|d| d.id == id).expect("in the log");
    let d = find(sent);
    assert_eq!((d.status.as_str(), d.attempts, d.last_error.as_deref()), ("sent", 1, None));
    assert!(d.finished_ms.is_some(), "a sent delivery has its time");
    let d = find(later);
    assert_eq!((d.status.as_str(), d.attempts, d.last_error.as_deref()), ("pending", 1, Some("timed out")));
    assert_eq!(d.finished_ms, None, "a delivery to retry is not finished");
    let d = find(gone);
    assert_eq!(
        (d.status.as_str(), d.attempts, d.last_error.as_deref()),
        ("failed", 1, Some("no such mailbox"))
    );
    assert!(d.finished_ms.is_some(), "a delivery given up has its time");
    assert!(s.claim_deliveries(5, lease).expect("due").is_empty(), "busy's fifth is still claimed");
    s.release_deliveries(&[busy_ids[4]]).expect("give it back");
    let due = of(&s.claim_deliveries(5, lease).expect("due"), "busy");
    assert_eq!(
        due,
        busy_ids[2..3].iter().chain(&busy_ids[4..8]).copied().collect::<Vec<_>>(),
        "sent, given up and not-yet-retried deliveries are not due; one to retry now is"
    );
    // A claim whose holder died runs out: its deliveries are due again.
    s.release_deliveries(&due).expect("give them back");
    let short = s.claim_deliveries(5, Duration::from_millis(1)).expect("due");
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        of(&s.claim_deliveries(5, lease).expect("due"), "busy"),
        of(&short, "busy"),
        "due again once the lease ran out"
    );
    s.delivery_attempted(now, None, None).expect("sent at the second attempt");
    let d =
        s.deliveries("busy", 100).expect("the log").into_iter().find(|d| d.id == now).expect("in the log");
    assert_eq!(
        (d.status.as_str(), d.attempts, d.last_error.as_deref()),
        ("sent", 2, None),
        "its error cleared"
    );

    let newest = s.deliveries("busy", 2).expect("the log");
    assert_eq!(
        newest.iter().map(|d| d.id).collect::<Vec<_>>(),
        [busy_ids[11], busy_ids[10]],
        "newest first, at most limit"
    );
    assert_eq!(s.deliveries("quiet", 10).expect("the log").len(), 1, "a tenant's own deliveries");
    assert!(s.deliveries("south", 10).expect("no such tenant").is_empty());
}

/// Saved exports as far as they need no import: saved, read back as saved, listed by name
/// (bytes: capitals first), found whatever the case of the name (ASCII only, as names are),
/// refused under a name in use unless replaced (the name then as first spelled); scheduled
/// ones listed with their tenant's time zone (not a disabled tenant's); their runs logged,
/// newest first, by export whatever the case, those left running swept as interrupted, the log
/// outliving the export.
pub fn saved_exports_without_imports<S: Tenants + SavedExports>(s: &S) {
    use sluice_core::saved_export::{
        ExportFormat, ExportName, ExportWhen, RunCause, RunOutcome, SavedExport,
    };
    s.add_tenant(&name("north"), &[]).expect("add a tenant");
    s.add_tenant(&name("east"), &[]).expect("add a tenant");
    s.change_settings("north", &change(&[("timezone", "America/Chicago")])).expect("a time zone");
    let nightly = SavedExport {
        format: ExportFormat::Xlsx,
        columns: vec!["id".to_owned(), "last name".to_owned(), "é \"quoted\"".to_owned()],
        filters: vec!["grade=9".to_owned(), "school=North, \"Main\"".to_owned()],
        bom: true,
        in_exports: false,
        ..students_export("Nightly")
    };
    s.save_export("north", &nightly, false).expect("save");
    assert_eq!(
        s.saved_export("north", "NIGHTLY").expect("find"),
        Some(nightly.clone()),
        "read back as saved"
    );
    assert!(
        matches!(
            s.save_export("north", &students_export("nightly"), false),
            Err(StoreError::ExportExists(ref n)) if n == "Nightly"
        ),
        "names are unique whatever their case; the refusal names the export as spelled"
    );
    assert_eq!(
        s.saved_export("north", "Nightly").expect("find"),
        Some(nightly.clone()),
        "a refused save changes nothing"
    );
    let daily =
        SavedExport { when: ExportWhen::parse("0 6 * * *").expect("cron"), ..students_export("daily") };
    let after = SavedExport { when: ExportWhen::AfterImport, ..students_export("Zeta") };
    s.save_export("north", &daily, false).expect("save");
    s.save_export("north", &after, false).expect("save");
    s.save_export("east", &students_export("nightly"), false)
        .expect("another tenant's export of the same name");
    let names: Vec<String> =
        s.saved_exports("north").expect("list").iter().map(|e| e.name.to_string()).collect();
    assert_eq!(names, ["Nightly", "Zeta", "daily"], "by name, as bytes");
    assert_eq!(s.saved_exports("east").expect("list").len(), 1, "a tenant's own exports");
    assert_eq!(s.saved_export("north", "\u{212A}ids").expect("look up"), None);
    s.save_export("north", &students_export("kids"), false).expect("save");
    assert_eq!(
        s.saved_export("north", "\u{212A}ids").expect("look up"),
        None,
        "the Kelvin sign is not a K: names fold ASCII only"
    );
    assert!(s.saved_export("north", "KIDS").expect("look up").is_some());

    // Scheduled: the tenant's time zone; a disabled tenant's are not run.
    let hourly =
        SavedExport { when: ExportWhen::parse("0 * * * *").expect("cron"), ..students_export("hourly") };
    s.save_export("east", &hourly, false).expect("save");
    s.set_disabled(&name("east"), true).expect("disable east");
    assert_eq!(
        s.scheduled_exports().expect("scheduled"),
        [("north".to_owned(), "America/Chicago".to_owned(), daily.clone())]
    );
    assert!(s.exports_after_imports().expect("due").is_empty(), "no import, nothing to answer");

    // Replaced: the contents change, the name stays as first spelled.
    let replaced =
        SavedExport { when: ExportWhen::parse("30 5 * * 1").expect("cron"), ..students_export("NIGHTLY") };
    s.save_export("north", &replaced, true).expect("replace");
    let as_first_spelled = SavedExport { name: ExportName::parse("Nightly").expect("a name"), ..replaced };
    assert_eq!(s.saved_export("north", "nightly").expect("find"), Some(as_first_spelled.clone()));
    assert_eq!(s.saved_exports("north").expect("list").len(), 4, "replaced, not added");
    assert_eq!(
        s.scheduled_exports()
            .expect("scheduled")
            .into_iter()
            .map(|(_, _, e)| e.name.to_string())
            .collect::<Vec<_>>(),
        ["Nightly", "daily"],
        "by tenant, then name"
    );

    // Runs.
    let written = RunOutcome::Written { rows: 3, bytes: 40, destination: "/exports/Nightly.xlsx".to_owned() };
    let first = s.start_export_run("north", "Nightly", RunCause::OnDemand).expect("start");
    let running = s.export_run(first).expect("read").expect("logged");
    assert_eq!(
        (running.tenant.as_str(), running.export.as_str(), running.cause),
        ("north", "Nightly", RunCause::OnDemand)
    );
    assert_eq!((running.outcome, running.finished_ms), (None, None), "a run under way has no outcome");
    s.finish_export_run(first, &written).expect("finish");
    let second = s.start_export_run("north", "daily", RunCause::Schedule).expect("start");
    s.finish_export_run(second, &RunOutcome::Failed("disk full".to_owned())).expect("finish");
    let killed = s.start_export_run("north", "daily", RunCause::Schedule).expect("start");
    let other = s.start_export_run("east", "nightly", RunCause::AfterImport).expect("another tenant's");
    s.finish_export_run(other, &written).expect("finish");
    let runs = s.export_runs("north", None, 10).expect("runs");
    assert_eq!(
        runs.iter().map(|r| r.id).collect::<Vec<_>>(),
        [killed, second, first],
        "newest first, the tenant's"
    );
    assert_eq!(runs[2].outcome, Some(written.clone()));
    assert!(runs[2].finished_ms.is_some_and(|f| f >= runs[2].started_ms));
    assert_eq!(runs[1].outcome, Some(RunOutcome::Failed("disk full".to_owned())));
    assert_eq!(s.export_runs("north", None, 2).expect("runs").len(), 2, "at most limit");
    let of_daily: Vec<i64> =
        s.export_runs("north", Some("DAILY"), 10).expect("runs").iter().map(|r| r.id).collect();
    assert_eq!(of_daily, [killed, second], "one export's runs, whatever the case");
    assert_eq!(s.fail_interrupted_runs(&|_| false).expect("sweep"), 0, "a running process's run stays");
    assert_eq!(s.fail_interrupted_runs(&|_| true).expect("sweep"), 1, "the run left running");
    let swept = s.export_run(killed).expect("read").expect("logged");
    assert!(
        matches!(swept.outcome, Some(RunOutcome::Failed(ref why)) if why.contains("interrupted")),
        "{swept:?}"
    );
    assert!(swept.finished_ms.is_some());
    assert_eq!(s.fail_interrupted_runs(&|_| true).expect("sweep"), 0, "nothing left running");
    assert_eq!(s.export_run(other + 1_000).expect("read"), None);

    s.mark_import_seen("north", "Zeta", 7).expect("answered");
    s.remove_saved_export("north", "DAILY").expect("remove, whatever the case");
    assert!(matches!(s.remove_saved_export("north", "daily"), Err(StoreError::NoSuchExport(_))));
    assert_eq!(s.saved_export("north", "daily").expect("look up"), None);
    assert_eq!(
        s.export_runs("north", Some("daily"), 10).expect("runs").len(),
        2,
        "the log outlives the export"
    );
    assert_eq!(
        s.saved_export("north", "nightly").expect("find"),
        Some(as_first_spelled),
        "only that one removed"
    );
    assert!(matches!(s.saved_exports("south"), Err(StoreError::NoSuchTenant(_))));
    assert!(matches!(s.save_export("south", &daily, false), Err(StoreError::NoSuchTenant(_))));
    assert!(matches!(
        s.start_export_run("south", "daily", RunCause::OnDemand),
        Err(StoreError::NoSuchTenant(_))
    ));
}

/// A valid ed25519 host key (its blob names its algorithm), `fill` its key bytes.
fn host_key(fill: u8) -> sluice_core::connector::HostKey {
    let mut blob = Vec::new();
    for part in [&b"ssh-ed25519"[..], &[fill; 32][..]] {
        blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
        blob.extend_from_slice(part);
    }
    sluice_core::connector::HostKey::from_wire("ssh-ed25519", &blob)
}

/// Connectors: saved with their sealed credential and read back as saved, names unique
/// whatever their case (a replacement takes the name as now spelled), listed by name as
/// bytes; a host key pinned; pulling ones on a schedule listed with their tenant's time zone;
/// not removed while an export pushes to them (an export cannot push to one that is not
/// there); the remote files pulled remembered by path, size and time; the transfer log newest
/// first, by connector whatever the case, within its limit.
pub fn connectors<S: Tenants + Connectors + SavedExports>(s: &S) {
    use sluice_core::connector::{AfterPull, AuthKind, Connector, ConnectorName, Pull, SftpAddress};
    use sluice_core::saved_export::SavedExport;
    s.add_tenant(&name("north"), &[]).expect("add a tenant");
    s.add_tenant(&name("east"), &[]).expect("add a tenant");
    s.change_settings("north", &change(&[("timezone", "Europe/Paris")])).expect("a time zone");
    let connector = |n: &str, url: &str| Connector {
        name: ConnectorName::parse(n).expect("a name"),
        address: SftpAddress::parse(url).expect("an address"),
        auth: AuthKind::Password,
        host_key: None,
        rename: true,
        pull: None,
    };
    assert!(!s.any_connectors().expect("any"), "none yet");
    let district = connector("District", "sftp://district@sftp.example.org:2222/in");
    s.save_connector("north", &district, "sealed-1", false).expect("save");
    assert!(s.any_connectors().expect("any"));
    assert_eq!(
        s.connector("north", "DISTRICT").expect("find"),
        Some((district.clone(), "sealed-1".to_owned())),
        "read back with its sealed credential"
    );
    assert!(
        matches!(
            s.save_connector("north", &connector("district", "sftp://x@y.org/"), "sealed-x", false),
            Err(StoreError::ConnectorExists(ref n)) if n == "District"
        ),
        "names are unique whatever their case"
    );
    assert_eq!(
        s.connector("north", "district").expect("find").map(|(_, sealed)| sealed).as_deref(),
        Some("sealed-1")
    );
    let archive = Connector {
        auth: AuthKind::PrivateKey,
        rename: false,
        host_key: Some(host_key(9)),
        ..connector("archive", "sftp://me%40x@[::1]/srv/archive")
    };
    s.save_connector("north", &archive, "sealed-2", false).expect("save");
    s.save_connector("north", &connector("Zeta", "sftp://z@z.example.org/"), "sealed-3", false)
        .expect("save");
    s.save_connector("east", &connector("district", "sftp://e@east.example.org/"), "sealed-e", false)
        .expect("another tenant's connector of the same name");
    let names: Vec<String> =
        s.connectors("north").expect("list").iter().map(|c| c.name.to_string()).collect();
    assert_eq!(names, ["District", "Zeta", "archive"], "by name, as bytes");
    assert_eq!(
        s.connector("north", "archive").expect("find"),
        Some((archive.clone(), "sealed-2".to_owned()))
    );
    assert!(matches!(s.connectors("south"), Err(StoreError::NoSuchTenant(_))));

    // Pinning.
    s.pin_host_key("north", "district", &host_key(1)).expect("pin");
    let pinned = s.connector("north", "District").expect("find").expect("there").0;
    assert_eq!(pinned.host_key, Some(host_key(1)));
    s.pin_host_key("north", "DISTRICT", &host_key(2)).expect("pin another");
    assert_eq!(s.connector("north", "District").expect("find").expect("there").0.host_key, Some(host_key(2)));
    assert!(matches!(s.pin_host_key("north", "nowhere", &host_key(1)), Err(StoreError::NoSuchConnector(_))));
    assert_eq!(
        s.connector("east", "district").expect("find").expect("there").0.host_key,
        None,
        "one tenant's only"
    );

    // Replaced: every column, and the name as now spelled.
    let pulling = Connector {
        pull: Some(Pull {
            schedule: Some(sluice_core::schedule::Cron::parse("*/15 * * * *").expect("cron")),
            after: AfterPull::Move("done/today".to_owned()),
        }),
        ..connector("DISTRICT", "sftp://district@sftp.example.org:22/out")
    };
    s.save_connector("north", &pulling, "sealed-4", true).expect("replace");
    assert_eq!(
        s.connector("north", "district").expect("find"),
        Some((pulling.clone(), "sealed-4".to_owned()))
    );
    assert_eq!(s.connectors("north").expect("list").len(), 3, "replaced, not added");
    let on_demand = Connector {
        pull: Some(Pull { schedule: None, after: AfterPull::Remove }),
        ..connector("pulls", "sftp://p@p.example.org/")
    };
    s.save_connector("north", &on_demand, "sealed-5", false).expect("save");
    assert_eq!(s.connector("north", "pulls").expect("find").map(|(c, _)| c), Some(on_demand));
    let east_pulls = Connector { name: ConnectorName::parse("pulling").expect("a name"), ..pulling.clone() };
    s.save_connector("east", &east_pulls, "sealed-6", false).expect("save");
    s.set_disabled(&name("east"), true).expect("disable east");
    assert_eq!(
        s.pulling_connectors().expect("pulling"),
        [("north".to_owned(), "Europe/Paris".to_owned(), pulling.clone())],
        "scheduled pulls of enabled tenants only"
    );

    // In use by an export.
    let to = |c: &str| SavedExport {
        push_to: Some(ConnectorName::parse(c).expect("a name")),
        ..students_export("nightly")
    };
    assert!(matches!(s.save_export("north", &to("nowhere"), false), Err(StoreError::NoSuchConnector(_))));
    assert_eq!(s.saved_export("north", "nightly").expect("look up"), None, "nothing saved");
    s.save_export("north", &to("district"), false).expect("an export pushing to it, whatever the case");
    assert_eq!(s.saved_export("north", "nightly").expect("find"), Some(to("district")));
    assert!(
        matches!(
            s.remove_connector("north", "District"),
            Err(StoreError::ConnectorInUse { ref connector, ref export }) if connector == "District" && export == "nightly"
        ),
        "not removed while an export pushes to it"
    );
    assert!(s.connector("north", "district").expect("find").is_some());
    s.save_export("north", &students_export("nightly"), true).expect("push no more");
    s.remove_connector("north", "dIsTrIcT").expect("remove, whatever the case");
    assert_eq!(s.connector("north", "district").expect("look up"), None);
    assert!(matches!(s.remove_connector("north", "district"), Err(StoreError::NoSuchConnector(_))));
    assert!(s.connector("east", "district").expect("find").is_some(), "another tenant's stays");

    // Pulled files: by tenant, connector (whatever the case), path, size and time.
    let sha = "a".repeat(64);
    assert!(!s.was_pulled("north", "archive", "/srv/archive/a.csv", 10, 1_000).expect("pulled?"));
    s.record_pulled("north", "Archive", "/srv/archive/a.csv", 10, 1_000, &sha).expect("record");
    assert!(s.was_pulled("north", "ARCHIVE", "/srv/archive/a.csv", 10, 1_000).expect("pulled?"));
    assert!(
        !s.was_pulled("north", "archive", "/srv/archive/a.csv", 11, 1_000).expect("pulled?"),
        "another size"
    );
    assert!(
        !s.was_pulled("north", "archive", "/srv/archive/a.csv", 10, 1_001).expect("pulled?"),
        "another time"
    );
    assert!(
        !s.was_pulled("north", "archive", "/srv/archive/A.csv", 10, 1_000).expect("pulled?"),
        "paths as bytes"
    );
    assert!(
        !s.was_pulled("north", "Zeta", "/srv/archive/a.csv", 10, 1_000).expect("pulled?"),
        "another connector"
    );
    assert!(!s.was_pulled("east", "archive", "/srv/archive/a.csv", 10, u32::MAX).expect("pulled?"));
    s.record_pulled("north", "archive", "/srv/archive/a.csv", 10, 1_000, &"b".repeat(64))
        .expect("again: kept once");
    s.record_pulled("east", "archive", "/srv/archive/a.csv", 10, u32::MAX, &sha).expect("record");
    assert!(
        s.was_pulled("east", "archive", "/srv/archive/a.csv", 10, u32::MAX).expect("pulled?"),
        "any time"
    );
    assert!(matches!(s.was_pulled("south", "archive", "/a", 1, 1), Err(StoreError::NoSuchTenant(_))));

    // The transfer log.
    s.log_transfer("north", "archive", "push", "Nightly.csv", Ok(120)).expect("log");
    s.log_transfer("north", "Zeta", "pull", "/in/students.csv", Err("connection refused")).expect("log");
    s.log_transfer("north", "Archive", "pull", "/srv/archive/a.csv", Ok(0)).expect("log");
    s.log_transfer("east", "archive", "push", "x.csv", Ok(1)).expect("another tenant's");
    let all = s.transfers("north", None, 10).expect("the log");
    let shown: Vec<_> = all
        .iter()
        .map(|t| (t.connector.as_str(), t.direction.as_str(), t.file.as_str(), t.bytes, t.error.as_deref()))
        .collect();
    assert_eq!(
        shown,
        [
            ("Archive", "pull", "/srv/archive/a.csv", Some(0), None),
            ("Zeta", "pull", "/in/students.csv", None, Some("connection refused")),
            ("archive", "push", "Nightly.csv", Some(120), None),
        ],
        "newest first, the tenant's, each as logged"
    );
    assert!(all.windows(2).all(|w| w[0].id > w[1].id && w[0].at_ms >= w[1].at_ms));
    let archive_log: Vec<i64> =
        s.transfers("north", Some("ARCHIVE"), 10).expect("the log").iter().map(|t| t.id).collect();
    assert_eq!(archive_log, [all[0].id, all[2].id], "one connector's, whatever the case");
    assert_eq!(
        s.transfers("north", None, 1).expect("the log").iter().map(|t| t.id).collect::<Vec<_>>(),
        [all[0].id]
    );
    assert_eq!(s.transfers("north", Some("archive"), 1).expect("the log").len(), 1, "at most limit");
    assert!(matches!(
        s.log_transfer("south", "archive", "push", "x", Ok(1)),
        Err(StoreError::NoSuchTenant(_))
    ));

    // Names fold ASCII only (as they are): the Kelvin sign is not a K.
    let kids = connector("kids", "sftp://k@k.example.org/");
    s.save_connector("north", &kids, "sealed-k", false).expect("save");
    s.record_pulled("north", "kids", "/a.csv", 1, 1, &sha).expect("record");
    s.log_transfer("north", "kids", "pull", "/a.csv", Ok(1)).expect("log");
    assert_eq!(s.connector("north", "KIDS").expect("find").map(|(c, _)| c), Some(kids));
    assert_eq!(s.connector("north", "\u{212A}ids").expect("look up"), None);
    assert!(matches!(
        s.pin_host_key("north", "\u{212A}ids", &host_key(1)),
        Err(StoreError::NoSuchConnector(_))
    ));
    assert!(!s.was_pulled("north", "\u{212A}ids", "/a.csv", 1, 1).expect("pulled?"));
    assert!(s.transfers("north", Some("\u{212A}ids"), 10).expect("the log").is_empty());
    assert!(matches!(s.remove_connector("north", "\u{212A}ids"), Err(StoreError::NoSuchConnector(_))));
    assert!(matches!(
        s.save_connector("north", &connector("Kids", "sftp://k@k.example.org/"), "sealed-k", false),
        Err(StoreError::ConnectorExists(_))
    ));
}

/// A package's records deactivated by a deletion by hand of what they refer to (a class
/// deleted in the dashboard, its enrollments `deactivate`) are active again when a later
/// package lists them again as they were, with the class: updated (made active), not
/// unchanged, as a single type's are. (Their data and hash are those of their listing: the
/// deletion by hand changed only their state.)
pub fn package_relisting<S: Tenants + Imports + Records>(s: &S) {
    use crate::ImportStatus::Complete;
    use crate::Referrer;
    use sluice_core::import::OnDelete;
    s.add_tenant(&name("north"), &folders("guardians")).expect("add a tenant");
    let class = |id: &str| format!("{{\"sourcedId\":\"{id}\",\"status\":\"active\",\"title\":\"T{id}\"}}");
    let enrollment = |id: &str, class: &str| {
        format!("{{\"sourcedId\":\"{id}\",\"status\":\"active\",\"classSourcedId\":\"{class}\"}}")
    };
    let types = ["oneroster.classes".to_owned(), "oneroster.enrollments".to_owned()];
    let package = || -> Vec<(&'static str, crate::Counts)> {
        let id =
            s.create_import("north", "oneroster", "roster.zip", "upload", None, None).expect("an import");
        let l = s.package_loader("north", id).expect("a package loader");
        for (i, c) in ["C1", "C2"].into_iter().enumerate() {
            let d = class(c);
            l.stage_in("oneroster.classes", i as u64 + 2, c, &d, hash_of(&d), StageKind::Load)
                .expect("stage");
        }
        for (i, (e, c)) in [("E1", "C1"), ("E2", "C1"), ("E3", "C2")].into_iter().enumerate() {
            let d = enrollment(e, c);
            l.stage_in("oneroster.enrollments", i as u64 + 2, e, &d, hash_of(&d), StageKind::Load)
                .expect("stage");
        }
        let counts: Vec<(&'static str, crate::Counts)> = ["oneroster.classes", "oneroster.enrollments"]
            .into_iter()
            .map(|t| (t, l.plan(t, LoadMode::Mirror).expect("plan")))
            .collect();
        let o = Outcome {
            record_types: Some(&types),
            ..outcome(Complete, Default::default(), Some(LoadMode::Mirror))
        };
        l.commit_types(
            &[("oneroster.classes", LoadMode::Mirror), ("oneroster.enrollments", LoadMode::Mirror)],
            o,
        )
        .expect("commit");
        counts
    };
    let keys = |deactivated: bool| -> Vec<String> {
        records_of(s, "oneroster.enrollments", Some(deactivated)).into_iter().map(|(k, _)| k).collect()
    };
    package();
    let referrer = Referrer {
        from_type: "oneroster.enrollments".into(),
        path: "$.classSourcedId".into(),
        to_type: "oneroster.classes".into(),
        on_delete: OnDelete::Deactivate,
        prefix: false,
    };
    let done = s
        .delete_records("north", "oneroster.classes", &["C1".into()], "ann@x", &[referrer], true)
        .expect("delete a class by hand");
    assert_eq!(done.deactivated, 2, "its two enrollments");
    assert_eq!((keys(false), keys(true)), (vec!["E3".to_owned()], vec!["E1".to_owned(), "E2".to_owned()]));
    let counts = package();
    assert_eq!(
        (keys(false), keys(true)),
        (vec!["E1".to_owned(), "E2".to_owned(), "E3".to_owned()], vec![]),
        "listed again with their class, the enrollments are active again"
    );
    let (classes, enrollments) = (&counts[0].1, &counts[1].1);
    assert_eq!((classes.added, classes.unchanged), (1, 1), "the class deleted by hand comes back");
    assert_eq!(
        (enrollments.added, enrollments.updated, enrollments.unchanged),
        (0, 2, 1),
        "made active again: updated, not unchanged"
    );
    // Listed once more: now unchanged.
    let counts = package();
    assert_eq!((counts[1].1.updated, counts[1].1.unchanged), (0, 3));
}

/// Layouts: a CSV type seen for the first time is remembered as it is; a column inserted
/// rewrites every record of every tenant in the new order (an import of the same rows then
/// finds them unchanged: the hash is recomputed); unchanged columns rewrite nothing; a column
/// renamed with its old name as an alias keeps its values, a removed one counts the values
/// it drops.
pub fn layouts<S: Tenants + Imports + Records>(s: &S) {
    use crate::ImportStatus::Complete;
    use sluice_core::import::content_hash;
    let kids = |columns: &[(&str, &str)]| {
        let mut text =
            String::from("[[type]]\nname = \"kids\"\nfolder = \"kids\"\nkey = [\"id\"]\nmode = \"mirror\"\n");
        for (name, aliases) in columns {
            let required = *name == "id";
            text.push_str(&format!(
                "[[type.column]]\nname = {name:?}\nkind = \"text\"\nrequired = {required}\naliases = [{aliases}]\n"
            ));
        }
        ImportTypes::parse(&[("kids.toml".into(), text)])
            .expect("the type")
            .get("kids")
            .expect("kids")
            .clone()
    };
    let v1 = kids(&[("id", ""), ("email", "")]);
    use crate::Settling::{Look, RememberOnly, Rewrite};
    let rewrite = Rewrite { drop_values: false };
    // Looking remembers nothing: v1 looked at, then v2 is still a type seen first.
    let v2 = kids(&[("id", ""), ("grade", ""), ("email", "")]);
    assert_eq!(s.settle_layouts(&[&v1], Look).expect("look"), []);
    assert_eq!(s.settle_layouts(&[&v2], Look).expect("look"), [], "nothing was remembered");
    assert_eq!(
        s.settle_layouts(&[&v1], RememberOnly).expect("settle"),
        [],
        "a type seen first is remembered"
    );
    for tenant in ["north", "south"] {
        s.add_tenant(&name(tenant), &folders("kids")).expect("add a tenant");
        let id = s.create_import(tenant, "kids", "kids.csv", "upload", None, None).expect("an import");
        let mut l = s.loader(tenant, "kids", id).expect("a loader");
        for (line, data) in [(2, r#"["K1","a@x.org"]"#), (3, r#"["K2",""]"#)] {
            let key = if line == 2 { "K1" } else { "K2" };
            l.stage(line, key, data, content_hash(data), StageKind::Load).expect("stage");
        }
        let plan = l.plan("kids", LoadMode::Mirror).expect("plan");
        l.commit(outcome(Complete, plan, Some(LoadMode::Mirror))).expect("commit");
    }
    // A command (beside a server that may run with the old columns) does not rewrite: refused;
    // looking says the same.
    for settling in [RememberOnly, Look] {
        match s.settle_layouts(&[&v2], settling) {
            Err(StoreError::LayoutRefused(why)) => assert!(why.contains("type kids changed"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(records_of(s, "kids", None)[0].1, r#"["K1","a@x.org"]"#, "nothing changed");
    let relaid = s.settle_layouts(&[&v2], rewrite).expect("settle");
    assert_eq!(
        relaid,
        [crate::Relaid {
            type_name: "kids".into(),
            records: 4,
            renamed: vec![],
            added: vec!["grade".into()],
            dropped: vec![]
        }]
    );
    assert_eq!(
        records_of(s, "kids", None),
        [("K1", r#"["K1","","a@x.org"]"#), ("K2", r#"["K2","",""]"#)]
            .map(|(k, d)| (k.to_owned(), d.to_owned()))
    );
    assert_eq!(s.settle_layouts(&[&v2], RememberOnly).expect("settle"), [], "once is enough");
    // The same rows imported in the new order: unchanged, nothing rewritten.
    let id = s.create_import("south", "kids", "kids.csv", "upload", None, None).expect("an import");
    let mut l = s.loader("south", "kids", id).expect("a loader");
    for (line, key, data) in [(2, "K1", r#"["K1","","a@x.org"]"#), (3, "K2", r#"["K2","",""]"#)] {
        l.stage(line, key, data, content_hash(data), StageKind::Load).expect("stage");
    }
    let plan = l.plan("kids", LoadMode::Mirror).expect("plan");
    assert_eq!((plan.added, plan.updated, plan.unchanged), (0, 0, 2));
    l.abandon().expect("abandon");
    // `email` renamed `mail` (the old name an alias), `grade` removed: nothing held there.
    let v3 = kids(&[("id", ""), ("mail", "\"email\"")]);
    let relaid = s.settle_layouts(&[&v3], rewrite).expect("settle");
    assert_eq!(relaid[0].renamed, [("email".to_owned(), "mail".to_owned())]);
    assert_eq!(relaid[0].dropped, [("grade".to_owned(), 0)]);
    assert_eq!(records_of(s, "kids", None)[0].1, r#"["K1","a@x.org"]"#);
    // A column removed that holds values: refused unless asked for, then counted and said.
    let v4 = kids(&[("id", "")]);
    match s.settle_layouts(&[&v4], rewrite) {
        Err(StoreError::LayoutRefused(why)) => {
            assert!(why.contains(r#""mail" (values in 2 records)"#), "{why}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(records_of(s, "kids", None)[0].1, r#"["K1","a@x.org"]"#, "nothing changed");
    let relaid = s.settle_layouts(&[&v4], Rewrite { drop_values: true }).expect("settle");
    assert_eq!(relaid[0].dropped, [("mail".to_owned(), 2)], "K1 of both tenants held an address");
    assert!(
        relaid[0].sentence().contains(r#""mail" removed (2 values dropped)"#),
        "{}",
        relaid[0].sentence()
    );
}
