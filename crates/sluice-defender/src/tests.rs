use super::*;
use sluice_core::metrics::Gauges;
use sluice_store::Store;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    store: SharedStore,
    metrics: Arc<Metrics>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    let store: SharedStore = Arc::new(Store::open(&path).unwrap());
    Fixture { _dir: dir, path, store, metrics: Arc::default() }
}

impl Fixture {
    fn defender(&self) -> Arc<Defender> {
        Defender::open(DefenderConfig::default(), self.store.clone(), self.metrics.clone(), Sharing::Alone)
            .unwrap()
    }

    /// The nodes' keepers, driven a step at a time.
    fn keepers(&self, nodes: &[&Arc<Defender>]) -> Vec<Keeper> {
        nodes.iter().map(|n| Keeper::new(Arc::clone(n), self.store.clone())).collect()
    }

    /// A node of several on this fixture's store.
    fn node(&self) -> Arc<Defender> {
        Defender::open(DefenderConfig::default(), self.store.clone(), self.metrics.clone(), Sharing::Nodes)
            .unwrap()
    }
}

/// Wrong passwords for a known account from `from` until banned; returns how many it took.
fn guess_until_banned(d: &Defender, from: IpAddr, service: Service) -> u32 {
    for n in 1..=100 {
        d.login_attempt(from, service, "acme").unwrap();
        match d.login_failed(from, service, "acme", true) {
            FailedLogin::Counted => {}
            FailedLogin::Banned { duration } => {
                assert_eq!(duration, Duration::from_secs(900));
                return n;
            }
            other => panic!("{other:?}"),
        }
    }
    panic!("never banned")
}

#[tokio::test]
async fn a_guessing_source_is_banned_even_for_the_right_password_and_the_ban_survives_a_restart() {
    let f = fixture();
    let d = f.defender();
    let attacker = ip("203.0.113.9");
    assert_eq!(guess_until_banned(&d, attacker, Service::Sftp), 10);
    let refused = d.login_attempt(attacker, Service::Dashboard, "ann@acme.org").unwrap_err();
    assert!(matches!(refused, Refusal::Banned { remaining } if remaining > Duration::from_secs(890)));
    assert!(
        refused.to_string().contains("temporarily blocked") && refused.to_string().contains("15 minutes")
    );
    assert!(d.admit(attacker, Service::Sftp).is_err());
    assert!(d.admit(ip("203.0.113.10"), Service::Sftp).is_ok(), "only that address");
    let metrics = f.metrics.render(Gauges::default());
    assert!(metrics.contains("sluice_defender_bans_total 1\n"), "{metrics}");
    assert!(metrics.contains("sluice_defender_refused_total{service=\"sftp\",reason=\"banned\"} 1\n"));
    assert!(metrics.contains("sluice_defender_refused_total{service=\"dashboard\",reason=\"banned\"} 1\n"));

    let mut keeper = Keeper::new(d.clone(), f.store.clone());
    keeper.save().await;
    let stored = f.store.bans(now_ms()).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0].source.to_string(), stored[0].count), ("203.0.113.9".into(), 1));
    assert_eq!(stored[0].reason, "sftp: failed login");
    // Restarted: the ban is back, before anyone tries anything.
    let again = f.defender();
    assert!(again.admit(attacker, Service::Sftp).is_err());
}

#[tokio::test]
async fn an_unban_in_the_store_is_noticed_and_a_ban_not_yet_saved_is_not_taken_for_one() {
    let f = fixture();
    let d = f.defender();
    let attacker = ip("2001:db8:0:7::1");
    guess_until_banned(&d, attacker, Service::Dashboard);
    let mut keeper = Keeper::new(d.clone(), f.store.clone());
    // Not saved yet: missing from the store, yet not lifted.
    keeper.reconcile().await;
    assert!(d.admit(attacker, Service::Sftp).is_err());
    keeper.save().await;
    keeper.reconcile().await;
    assert!(d.admit(ip("2001:db8:0:7::2"), Service::Sftp).is_err(), "the whole /64");
    // `sluice defender unban`, another process with its own connection.
    let cli = Store::open(&f.path).unwrap();
    assert!(cli.lift_ban(&"2001:db8:0:7::ffff".parse().unwrap(), now_ms()).unwrap());
    keeper.reconcile().await;
    assert!(d.admit(attacker, Service::Sftp).is_ok());
    // Forgiven: it starts over with a first ban's length.
    assert_eq!(guess_until_banned(&d, attacker, Service::Dashboard), 10);
}

/// Two servers sharing one store (several nodes): a ban one of them makes is in force on the
/// other at its keeper's next look, logged as another server's; lifted by an operator, it is
/// lifted on both.
#[tokio::test]
async fn a_ban_made_by_another_server_on_the_store_is_in_force_here_at_the_next_look() {
    let f = fixture();
    let (a, b) = (f.defender(), f.defender());
    let attacker = ip("203.0.113.77");
    guess_until_banned(&a, attacker, Service::Sftp);
    let (mut keeper_a, mut keeper_b) =
        (Keeper::new(a.clone(), f.store.clone()), Keeper::new(b.clone(), f.store.clone()));
    assert!(b.admit(attacker, Service::Sftp).is_ok(), "not saved yet");
    keeper_a.save().await;
    keeper_b.reconcile().await;
    let refused = b.admit(attacker, Service::Dashboard).unwrap_err();
    assert!(matches!(refused, Refusal::Banned { remaining } if remaining > Duration::from_secs(890)));
    assert!(b.admit(ip("203.0.113.78"), Service::Sftp).is_ok(), "only that address");
    // Saved by the server that made it only: no second save, no second audit entry.
    keeper_b.save().await;
    assert_eq!(f.store.bans(now_ms()).unwrap().len(), 1);
    let cli = Store::open(&f.path).unwrap();
    assert!(cli.lift_ban(&Source::of(attacker), now_ms()).unwrap());
    keeper_a.reconcile().await;
    keeper_b.reconcile().await;
    assert!(a.admit(attacker, Service::Sftp).is_ok() && b.admit(attacker, Service::Sftp).is_ok());
}

/// One keeper second on each node, in turn: save, tell, look at the bans, count the others'.
async fn a_second_passes(keepers: &mut [Keeper]) {
    for k in keepers.iter_mut() {
        k.save().await;
        k.share().await;
    }
    for k in keepers.iter_mut() {
        k.reconcile().await;
        k.absorb().await;
    }
}

#[tokio::test]
async fn a_source_guessing_on_three_nodes_is_banned_at_the_threshold_counted_across_them() {
    let f = fixture();
    let nodes = [f.node(), f.node(), f.node()];
    let mut keepers = f.keepers(&nodes.iter().collect::<Vec<_>>());
    let attacker = ip("203.0.113.50");
    // A balancer hands the guesser's connections to the nodes in turn, a few a second: nine
    // failures, three on each node (each node alone would allow ten).
    for round in 0..3 {
        for node in &nodes {
            node.login_attempt(attacker, Service::Sftp, "acme").unwrap();
            assert_eq!(
                node.login_failed(attacker, Service::Sftp, "acme", true),
                FailedLogin::Counted,
                "round {round}"
            );
        }
        a_second_passes(&mut keepers).await;
    }
    // The tenth, on any node, bans; the ban is saved once and in force on every node.
    assert!(matches!(
        nodes[1].login_failed(attacker, Service::Sftp, "acme", true),
        FailedLogin::Banned { .. }
    ));
    a_second_passes(&mut keepers).await;
    for node in &nodes {
        assert!(node.admit(attacker, Service::Sftp).is_err(), "banned on every node");
    }
    a_second_passes(&mut keepers).await;
    assert_eq!(f.store.bans(now_ms()).unwrap().len(), 1);
    let filter = sluice_core::audit::AuditFilter { limit: 100, ..Default::default() };
    let audited = f.store.audit_entries(&filter).unwrap().iter().filter(|e| e.action == "ban").count();
    assert_eq!(audited, 1, "one ban, audited once");
    // What a node saw is not counted twice by itself: a source with three failures on one
    // node and nothing elsewhere has a score of three everywhere.
    let other = ip("198.51.100.20");
    for _ in 0..3 {
        nodes[0].login_failed(other, Service::Dashboard, "ann@acme.org", true);
    }
    a_second_passes(&mut keepers).await;
    a_second_passes(&mut keepers).await;
    for node in &nodes {
        assert_eq!(node.state().board.score(Source::of(other), now_ms()), 3);
    }
    // A node that starts now reads what the others saw in the last minute.
    let late = f.node();
    let mut late_keeper = Keeper::new(late.clone(), f.store.clone());
    late_keeper.absorb().await;
    assert_eq!(late.state().board.score(Source::of(other), now_ms()), 3);
}

#[tokio::test]
async fn two_nodes_banning_a_source_at_once_make_one_ban_in_force_and_audited() {
    let f = fixture();
    let (a, b) = (f.node(), f.node());
    let mut keepers = f.keepers(&[&a, &b]);
    let attacker = ip("203.0.113.60");
    // Guesses in parallel: four on each node, counted on both after a second (eight of ten).
    for _ in 0..4 {
        for node in [&a, &b] {
            node.login_failed(attacker, Service::Sftp, "acme", true);
        }
    }
    a_second_passes(&mut keepers).await;
    // Then one more on each, in the same second: both reach ten, and both ban.
    for node in [&a, &b] {
        node.login_failed(attacker, Service::Sftp, "acme", true);
        node.login_failed(attacker, Service::Sftp, "acme", true);
        assert!(node.admit(attacker, Service::Sftp).is_err());
    }
    a_second_passes(&mut keepers).await;
    a_second_passes(&mut keepers).await;
    assert_eq!(f.store.bans(now_ms()).unwrap().len(), 1);
    let filter = sluice_core::audit::AuditFilter { limit: 100, ..Default::default() };
    let audited = f.store.audit_entries(&filter).unwrap().iter().filter(|e| e.action == "ban").count();
    assert_eq!(audited, 1, "one ban audited, not one per node");
    assert!(a.admit(attacker, Service::Sftp).is_err() && b.admit(attacker, Service::Sftp).is_err());
}

#[tokio::test]
async fn what_a_node_tells_is_one_entry_per_source_and_kind_a_second_and_a_flood_cannot_push_a_guesser_out() {
    let f = fixture();
    let (a, b) = (f.node(), f.node());
    let mut keepers = f.keepers(&[&a, &b]);
    let guesser = ip("203.0.113.70");
    a.login_failed(guesser, Service::Sftp, "acme", true);
    // A flood of other sources, more than a second's entries can hold.
    for i in 0..(MOST_UNSHARED as u32 + 500) {
        let from = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        a.record(from, Service::Sftp, Event::ProtocolError);
    }
    // The guesser goes on: its entry is already there.
    for _ in 0..5 {
        a.login_failed(guesser, Service::Sftp, "acme", true);
    }
    a_second_passes(&mut keepers).await;
    assert_eq!(b.state().board.score(Source::of(guesser), now_ms()), 6, "all six of the guesser's");
    let told = f.store.happenings_after(0, "nobody", 100_000).unwrap();
    assert_eq!(told.len(), MOST_UNSHARED, "one row per source and kind, the flood cut at the limit");
    let guesses: Vec<u32> = told
        .iter()
        .filter_map(|(_, h)| h.as_ref().filter(|h| h.source == Source::of(guesser)).map(|h| h.count))
        .collect();
    assert_eq!(guesses, [6]);
    // A name with control characters is told (and kept) with U+FFFD in their place.
    a.login_failed(ip("203.0.113.71"), Service::Dashboard, "a\0b\nc", false);
    a_second_passes(&mut keepers).await;
    let told = f.store.happenings_after(told.last().unwrap().0, "nobody", 10).unwrap();
    assert!(
        matches!(&told[..], [(_, Some(h))] if h.what.as_parts().1 == Some("dashboard:a\u{fffd}b\u{fffd}c")),
        "{told:?}"
    );
}

#[tokio::test]
async fn an_accounts_limit_is_one_limit_across_the_nodes_and_its_owner_clears_it_on_any() {
    let f = fixture();
    let (a, b) = (f.node(), f.node());
    let mut keepers = f.keepers(&[&a, &b]);
    // The owner logs in on node b before the guessing starts.
    let owner = ip("192.0.2.8");
    b.login_attempt(owner, Service::Sftp, "acme").unwrap();
    b.login_succeeded(owner, Service::Sftp, "acme").unwrap();
    a_second_passes(&mut keepers).await;
    // Fifty failures from fifty sources, half on each node.
    for i in 0..50u8 {
        let (node, from) = (if i % 2 == 0 { &a } else { &b }, ip(&format!("198.51.100.{}", i + 100)));
        node.login_attempt(from, Service::Sftp, "acme").unwrap();
        node.login_failed(from, Service::Sftp, "acme", true);
    }
    a_second_passes(&mut keepers).await;
    for node in [&a, &b] {
        let refused = node.login_attempt(ip("203.0.113.200"), Service::Sftp, "acme").unwrap_err();
        assert!(matches!(refused, Refusal::AccountLimit { .. }), "{refused:?}");
    }
    // Its owner is not locked out on node a, where it never logged in, and its login there
    // starts the count over on both.
    a.login_attempt(owner, Service::Sftp, "acme").expect("the owner's address is known on every node");
    a.login_succeeded(owner, Service::Sftp, "acme").unwrap();
    a_second_passes(&mut keepers).await;
    assert!(
        b.login_attempt(ip("203.0.113.201"), Service::Sftp, "acme").is_ok(),
        "the count started over on b too"
    );
    // A name is what the client typed: what is told of it is cut like what is kept.
    a.login_failed(ip("203.0.113.202"), Service::Dashboard, &"é".repeat(20_000), false);
    a_second_passes(&mut keepers).await;
    let told = f.store.happenings_after(0, "nobody", 1000).unwrap();
    let told: Vec<_> = told.into_iter().filter_map(|(_, h)| h).collect();
    assert!(told.iter().any(|h| matches!(&h.what, sluice_core::defender::What::LoginFailed { account, .. } if account.starts_with("dashboard:é"))));
    for h in &told {
        let (_, account) = h.what.as_parts();
        assert!(account.is_none_or(|a| a.len() <= 256), "{} bytes told", account.map_or(0, str::len));
    }
}

#[tokio::test]
async fn guesses_checked_at_the_same_time_cannot_tell_which_password_was_right() {
    let d = Defender::in_memory(DefenderConfig::default(), Arc::default());
    let attacker = ip("203.0.113.9");
    // Twelve guesses get past the gate before any is checked (more slots than this machine has).
    for _ in 0..12 {
        d.login_attempt(attacker, Service::Sftp, "acme").unwrap();
    }
    for _ in 0..9 {
        assert_eq!(d.login_failed(attacker, Service::Sftp, "acme", true), FailedLogin::Counted);
    }
    assert!(matches!(d.login_failed(attacker, Service::Sftp, "acme", true), FailedLogin::Banned { .. }));
    // The eleventh was wrong, the twelfth right: both answered with the same refusal.
    let FailedLogin::Refused(wrong) = d.login_failed(attacker, Service::Sftp, "acme", true) else { panic!() };
    let right = d.login_succeeded(attacker, Service::Sftp, "acme").unwrap_err();
    assert!(matches!((wrong, right), (Refusal::Banned { .. }, Refusal::Banned { .. })));
}

#[tokio::test]
async fn sftp_and_dashboard_count_on_one_score_and_unknown_accounts_weigh_what_they_are_set_to() {
    let mut config = DefenderConfig::default();
    config.scores.unknown_account = 2;
    let d = Defender::in_memory(config, Arc::default());
    let a = ip("198.51.100.1");
    for _ in 0..5 {
        assert_eq!(d.login_failed(a, Service::Sftp, "acme", true), FailedLogin::Counted);
    }
    d.record(a, Service::Sftp, Event::LimitHit);
    assert_eq!(d.login_failed(a, Service::Dashboard, "acme", true), FailedLogin::Counted);
    assert!(
        matches!(d.login_failed(a, Service::Dashboard, "acme", true), FailedLogin::Banned { .. }),
        "5 + 3 + 2"
    );
    let b = ip("198.51.100.2");
    for _ in 0..4 {
        assert_eq!(d.login_failed(b, Service::Sftp, "acme", false), FailedLogin::Counted);
    }
    assert!(matches!(d.login_failed(b, Service::Sftp, "acme", false), FailedLogin::Banned { .. }));
}

#[tokio::test]
async fn an_account_guessed_from_many_sources_waits_but_its_owner_clears_it_by_logging_in() {
    let metrics: Arc<Metrics> = Arc::default();
    let d = Defender::in_memory(DefenderConfig::default(), metrics.clone());
    for i in 0..50 {
        let from = ip(&format!("192.0.2.{i}"));
        d.login_attempt(from, Service::Dashboard, "ann@acme.org").unwrap();
        assert_eq!(d.login_failed(from, Service::Dashboard, "ann@acme.org", true), FailedLogin::Counted);
    }
    let owner = ip("198.51.100.8");
    let refused = d.login_attempt(owner, Service::Dashboard, "ann@acme.org").unwrap_err();
    assert!(matches!(refused, Refusal::AccountLimit { .. }), "{refused:?}");
    assert!(refused.to_string().contains("for this account"));
    assert!(metrics.render(Gauges::default()).contains("reason=\"account_limit\"} 1\n"));
    // The tenant of the same name over SFTP is another account.
    assert!(d.login_attempt(owner, Service::Sftp, "ann@acme.org").is_ok());
    // A success clears the account's count.
    for i in 0..49 {
        let from = ip(&format!("192.0.2.{}", 100 + i % 5));
        d.login_attempt(from, Service::Dashboard, "bob@beta.org").unwrap();
        d.login_failed(from, Service::Dashboard, "bob@beta.org", true);
    }
    d.login_succeeded(owner, Service::Dashboard, "bob@beta.org").unwrap();
    for i in 0..49 {
        let from = ip(&format!("192.0.2.{}", 110 + i % 5));
        d.login_failed(from, Service::Dashboard, "bob@beta.org", true);
    }
    assert!(d.login_attempt(owner, Service::Dashboard, "bob@beta.org").is_ok());
    // Many logins at once (a vendor's parallel uploads) are not refused for being many.
    for _ in 0..500 {
        d.login_attempt(owner, Service::Sftp, "acme").unwrap();
    }
}

#[tokio::test]
async fn the_keeper_saves_a_ban_and_notices_an_unban_within_seconds() {
    let f = fixture();
    let d = f.defender();
    let stop = Arc::new(Notify::new());
    let keeper = tokio::spawn(d.clone().run({
        let stop = stop.clone();
        async move { stop.notified().await }
    }));
    let attacker = ip("203.0.113.9");
    guess_until_banned(&d, attacker, Service::Sftp);
    let within = |what: &str, check: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !check() {
            assert!(std::time::Instant::now() < deadline, "{what} took longer than 5 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let store = f.store.clone();
    tokio::task::spawn_blocking(move || within("saving", &|| store.bans_in_force(now_ms()).unwrap() == 1))
        .await
        .unwrap();
    let cli = Store::open(&f.path).unwrap();
    assert!(cli.lift_ban(&"203.0.113.9".parse().unwrap(), now_ms()).unwrap());
    let d2 = d.clone();
    tokio::task::spawn_blocking(move || within("the unban", &|| d2.admit(attacker, Service::Sftp).is_ok()))
        .await
        .unwrap();
    stop.notify_one();
    keeper.await.unwrap();
}
