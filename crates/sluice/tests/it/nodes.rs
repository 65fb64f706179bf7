//! Several `sluice serve` nodes sharing the work: one PostgreSQL database and one data
//! directory (a shared filesystem; here, one machine). Uploads to any node are imported once;
//! a node killed mid-import leaves its import to another node within seconds; a schedule runs
//! once per due time; an API key works on every node. On SQLite a second server refuses to
//! share the data directory (and says multi-node needs PostgreSQL).

use crate::common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

/// `n` students, the same ids in every file (a mirror type: nothing is deleted), named `first`.
fn students(n: usize, first: &str) -> String {
    let mut s = String::from("sisId,firstName,lastName\n");
    for i in 0..n {
        s.push_str(&format!("S{i},{first}{i},Last{i}\n"));
    }
    s
}

/// The process holding `lock` exclusively (a tenant's import turn), from `/proc/locks`.
fn lock_holder(lock: &std::path::Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(lock).ok()?.ino();
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (kind, access, pid, file) = (f.get(1)?, f.get(3)?, f.get(4)?, f.get(5)?);
        let ours = *kind == "FLOCK" && *access == "WRITE" && file.rsplit(':').next()? == inode.to_string();
        if ours { pid.parse().ok() } else { None }
    })
}

fn export_runs(server: &Server, name: &str) -> Vec<Value> {
    serde_json::from_str(&server.cli_ok(&["export", "runs", "acme", name, "--json", "--limit", "1000"]))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_uploads_imports_schedules_and_logins_and_survive_a_killed_node() {
    let server = Server::start();
    if !on_postgres() {
        // SQLite: one server per data directory.
        let second = tokio::task::spawn_blocking({
            let mut command = server.command();
            command.args(["serve", "--sftp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"]);
            move || run_with_timeout(&mut command, Duration::from_secs(20))
        })
        .await
        .unwrap();
        let said = output_text(&second);
        assert!(!second.status.success() && said.contains("PostgreSQL"), "{said}");
        return;
    }
    // A command run without the servers' database url is refused, and makes no SQLite
    // database beside the real state (a newcomer followed the start hint without it).
    let stray = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(server.data_dir())
        .args(["tenant", "add", "stray"])
        .output()
        .unwrap();
    let said = output_text(&stray);
    assert!(!stray.status.success() && said.contains("keeps its state in PostgreSQL"), "{said}");
    assert!(!server.data_dir().join("sluice.db").exists(), "no SQLite database made");
    // The other way round: a SQLite data directory is not opened on PostgreSQL (nor marked).
    let sqlite = tempfile::tempdir().unwrap();
    let cli = |url: Option<&str>| {
        let mut command = std::process::Command::new(BIN);
        command.arg("--data-dir").arg(sqlite.path()).args(["tenant", "add", "north"]);
        if let Some(url) = url {
            command.env("SLUICE_DATABASE_URL", url);
        }
        command.output().unwrap()
    };
    assert!(cli(None).status.success(), "a SQLite data directory made");
    let refused = cli(server.database_url().as_deref());
    let said = output_text(&refused);
    assert!(!refused.status.success() && said.contains("keeps its state in SQLite"), "{said}");
    assert!(!sqlite.path().join("STATE-IN-POSTGRESQL").exists());
    server.importing_tenant("acme", "pw-nodes-for-tests");
    // A saved export due every minute, run by whichever node asks first.
    server.cli_ok(&["export", "add", "acme", "minutely", "--type", "students", "--schedule", "* * * * *"]);
    let added_at = jiff::Timestamp::now();
    // And one after every import that changes students, run by one node.
    server.cli_ok(&["export", "add", "acme", "roster", "--type", "students", "--after-import"]);
    let nodes = [server.start_node(), server.start_node()];
    let ports = [server.port, nodes[0].port, nodes[1].port];

    // Uploads spread over the three nodes, six each, at once: each imported exactly once.
    let mut sessions = Vec::new();
    for (n, port) in ports.iter().enumerate() {
        sessions.push(tokio::spawn({
            let port = *port;
            async move {
                let (_ssh, sftp) = sftp_login(port, "acme", "pw-nodes-for-tests").await;
                for i in 0..6 {
                    put(
                        &sftp,
                        &format!("/students/students-{n}-{i}.csv"),
                        students(20, &format!("N{n}F{i}-")).as_bytes(),
                    )
                    .await
                    .unwrap();
                }
            }
        }));
    }
    for s in sessions {
        s.await.unwrap();
    }
    let all_done = |s: &Server, n: usize| {
        let list = s.imports("acme");
        list.len() >= n && list.iter().all(|i| i["status"] != "running")
    };
    assert!(server.wait_until(Duration::from_secs(60), |s| all_done(s, 18)), "{:?}", server.imports("acme"));
    let imports = server.imports("acme");
    assert_eq!(imports.len(), 18, "one import per upload: {imports:?}");
    assert!(imports.iter().all(|i| i["status"] == "complete"), "{imports:?}");
    assert_eq!(server.uploads("acme").len(), 18);

    // The after-import exports settle (the nodes look every 2 s).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let answered = export_runs(&server, "roster").len();
    assert!((1..=18).contains(&answered), "{answered} after-import runs for 18 imports");

    // A large file; the node importing it (the one holding the tenant's turn) is killed.
    let (_ssh, sftp) = sftp_login(ports[1], "acme", "pw-nodes-for-tests").await;
    put(&sftp, "/students/big.csv", students(60_000, "Big").as_bytes()).await.unwrap();
    drop((sftp, _ssh));
    let lock = server.data_dir().join("spool/locks/acme.lock");
    let started = Instant::now();
    let holder = loop {
        let running = server.imports("acme").first().is_some_and(|i| i["status"] == "running");
        if let Some(pid) = lock_holder(&lock).filter(|_| running) {
            break pid;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the big import never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let pids = [server.pid(), nodes[0].pid(), nodes[1].pid()];
    assert!(pids.contains(&holder), "the turn is held by {holder}, not a node: {pids:?}");
    // SAFETY: a signal to a child process of this test.
    assert_eq!(unsafe { libc::kill(holder as i32, libc::SIGKILL) }, 0);
    let killed_at = Instant::now();
    assert!(
        server.wait_until(Duration::from_secs(120), |s| all_done(s, 19)),
        "another node did not take the import over: {:?}",
        server.imports("acme")
    );
    let imports = server.imports("acme");
    assert_eq!(imports.len(), 19, "the killed import's row is gone, its upload imported once: {imports:?}");
    assert_eq!(
        (imports[0]["status"].as_str(), imports[0]["counts"]["rows"].as_u64()),
        (Some("complete"), Some(60_000)),
        "{}",
        imports[0]
    );
    assert!(killed_at.elapsed() < Duration::from_secs(60), "taken over after {:?}", killed_at.elapsed());
    assert!(
        server.log().contains("work left by a stopped process runs again"),
        "not taken back: {}",
        server.log()
    );

    // One import, one after-import run, whichever node saw it first.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(export_runs(&server, "roster").len(), answered + 1, "{:?}", export_runs(&server, "roster"));

    // A key made once works on every node still up.
    let token = server.api_key(Some("acme"));
    let live: Vec<u16> =
        [(pids[0], server.http_port), (pids[1], nodes[0].http_port), (pids[2], nodes[1].http_port)]
            .into_iter()
            .filter(|(pid, _)| *pid != holder)
            .map(|(_, port)| port)
            .collect();
    assert_eq!(live.len(), 2);
    for port in live {
        let (status, _, body) = http_request(port, "GET", "/api/v1/tenants/acme/imports", Some(&token), "");
        assert_eq!(status, 200, "{body}");
    }

    // The minute schedule: once per due time, whatever the number of nodes (one was killed
    // in between). Waits for the first due time after the export was added, and the next.
    let every_minute = sluice_core::schedule::Cron::parse("* * * * *").unwrap();
    let first_due = sluice_core::schedule::next_run(&every_minute, "UTC", added_at).unwrap().unwrap();
    let until = first_due + jiff::SignedDuration::from_secs(75);
    while jiff::Timestamp::now() < until {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // (Had the killed node been writing it, its run is logged as interrupted and the due
    // time run again by another node.)
    let runs = export_runs(&server, "minutely");
    let scheduled: Vec<&Value> = runs.iter().filter(|r| r["cause"] == "schedule").collect();
    let written = scheduled.iter().filter(|r| r["status"] == "written").count();
    assert_eq!(written, 2, "one run per due time over two minutes: {runs:?}");
    assert!(scheduled.iter().all(|r| r["status"] == "written" || r["status"] == "failed"), "{runs:?}");
}

/// Three nodes started at the same moment on a new database and an empty data directory (a
/// cluster's first start): all three serve; one of them made the operator's first password
/// and showed it, the others say so. (The others stopped with "an account admin already
/// exists" before.)
#[test]
fn nodes_starting_together_on_a_new_database_all_serve() {
    use std::io::BufRead;
    let Some(database) = TestDatabase::create() else {
        eprintln!("runs on the suite's PostgreSQL pass ({POSTGRES_SWITCH})");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(3));
    let nodes: Vec<_> = (0..3)
        .map(|_| {
            let (dir, url, barrier) = (dir.path().join("data"), database.url(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut child = std::process::Command::new(BIN)
                    .arg("--data-dir")
                    .arg(&dir)
                    .args(["serve", "--sftp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
                    .env("SLUICE_DATABASE_URL", url)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                let mut said = Vec::new();
                for line in
                    std::io::BufReader::new(child.stdout.take().unwrap()).lines().map_while(Result::ok)
                {
                    // Every node on a new database ends its start with how to add a tenant; the
                    // node that made the operator's account showed its password before that
                    // (one that found it made already, as nodes started one after another
                    // take turns at the schema and the type layouts, says nothing of it).
                    let done = line.starts_with("No tenants yet");
                    said.push(line);
                    if done {
                        break;
                    }
                }
                let running = child.try_wait().unwrap().is_none();
                let _ = child.kill();
                let mut errors = String::new();
                let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut errors);
                let _ = child.wait();
                (running, said, errors)
            })
        })
        .collect();
    let ran: Vec<_> = nodes.into_iter().map(|n| n.join().unwrap()).collect();
    for (running, said, errors) in &ran {
        assert!(*running && said.iter().any(|l| l.starts_with("sftp listening on")), "{said:?}\n{errors}");
    }
    let shown = ran.iter().filter(|(_, said, _)| said.iter().any(|l| l.contains("with password"))).count();
    assert_eq!(shown, 1, "{ran:?}");
}

/// A source guessing passwords through a balancer that hands its connections to three nodes
/// in turn is banned once its failures on all of them together reach the threshold, as it
/// would be on one node (each node counted only its own before: three times the guesses),
/// and the ban is made and audited once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_guessing_on_three_nodes_is_counted_once_across_them() {
    let server = Server::start_with(&[("SLUICE_DEFENDER_THRESHOLD", "6")]);
    if !on_postgres() {
        eprintln!(
            "runs on the suite's PostgreSQL pass ({POSTGRES_SWITCH}): one server per SQLite data directory"
        );
        return;
    }
    server.tenant("acme", "right-pw-for-nodes");
    let nodes = [server.start_node(), server.start_node()];
    let ports = [server.port, nodes[0].port, nodes[1].port];
    // A guess a second, the nodes in turn (each node alone allows six: eighteen in all).
    let (mut failures, mut refused_by) = (0, None);
    for i in 0..24 {
        let port = ports[i % 3];
        match ssh_login(port, "acme", &format!("guess-{i}")).await {
            Ok(_) => panic!("a wrong password was accepted"),
            Err(e) if e.starts_with("connection failed") => {
                refused_by = Some(port);
                break;
            }
            Err(_) => failures += 1,
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    assert!(refused_by.is_some(), "never banned after {failures} failures");
    // Six counted across the nodes; what a node tells the others arrives within two seconds,
    // so at most two guesses more.
    assert!((6..=8).contains(&failures), "{failures} failures before the ban");
    // Banned on every node within a second or two, the right password too.
    let deadline = Instant::now() + Duration::from_secs(5);
    for port in ports {
        loop {
            match ssh_login(port, "acme", "right-pw-for-nodes").await {
                Err(e) if e.starts_with("connection failed") => break,
                other => {
                    assert!(
                        Instant::now() < deadline,
                        "node on port {port} still lets the source in: {:?}",
                        other.err()
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    let server = tokio::task::spawn_blocking(move || {
        let bans = |s: &Server| {
            let log: Value = serde_json::from_str(&s.cli_ok(&["audit", "--json"])).unwrap();
            log.as_array().unwrap().iter().filter(|e| e["action"] == "ban").count()
        };
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(bans(&server), 1, "one ban, made by one node");
        server
    })
    .await
    .unwrap();
    drop((server, nodes));
}
