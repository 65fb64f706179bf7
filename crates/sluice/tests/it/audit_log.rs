//! The audit log, as an auditor reads it: each change made with the command line leaves one
//! entry naming who, when, from where and what (settings before and after), refused ones too,
//! and no secret anywhere in the database.

use crate::common::*;
use serde_json::Value;

fn entries(server: &Server, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit", "--json"];
    all.extend(args);
    serde_json::from_str::<Value>(&server.cli_ok(&all)).unwrap().as_array().unwrap().clone()
}

#[test]
fn each_command_line_change_leaves_one_entry_with_who_and_what_and_no_secret() {
    let server = Server::start();
    let secret_password = "correct horse battery staple 42";
    let webhook_secret = "whsec-do-not-log-me-7c1f";
    server.cli_ok(&["tenant", "add", "acme"]);
    let out =
        server.cli_stdin(&["tenant", "passwd", "acme", "--password-stdin"], &format!("{secret_password}\n"));
    assert!(out.status.success(), "{}", output_text(&out));
    server.cli_ok(&[
        "tenant",
        "set",
        "acme",
        "trigger=manual",
        &format!("notify.webhook_secret={webhook_secret}"),
        "notify.webhook=https://hooks.example.org/x",
    ]);
    // Refused (a bad time zone): recorded as refused, nothing changed.
    let refused = server.cli(&["tenant", "set", "acme", "timezone=Mars/Olympus"]);
    assert!(!refused.status.success());
    let token = server.api_key(Some("acme"));
    // Reading changes nothing and is not recorded.
    server.cli_ok(&["tenant", "show", "acme"]);
    server.cli_ok(&["imports", "--tenant", "acme"]);

    let log = entries(&server, &["--tenant", "acme"]);
    let actions: Vec<&str> = log.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["api_key.add", "tenant.settings", "tenant.settings", "tenant.password", "tenant.add"],
        "newest first, one each: {log:#?}"
    );
    // The login the process runs as (its uid's name, as `id -un` says), not $USER, which
    // anyone can set.
    let id = std::process::Command::new("id").arg("-un").output().unwrap();
    let user = String::from_utf8(id.stdout).unwrap().trim().to_owned();
    for e in &log {
        assert_eq!(
            (e["actor_kind"].as_str(), e["actor"].as_str(), e["source"].as_str()),
            (Some("cli"), Some(user.as_str()), Some("local")),
            "{e}"
        );
        assert_eq!(e["tenant"], "acme");
    }
    assert_eq!((log[1]["outcome"].as_str(), log[1]["target"].as_str()), (Some("refused"), Some("timezone")));
    let changed = &log[2];
    assert_eq!(changed["outcome"], "done");
    assert!(changed["target"].as_str().unwrap().contains("notify.webhook_secret"), "{changed}");
    let before: Value = serde_json::from_str(changed["before"].as_str().unwrap()).unwrap();
    let after: Value = serde_json::from_str(changed["after"].as_str().unwrap()).unwrap();
    assert_eq!((before["trigger"].as_str(), after["trigger"].as_str()), (Some("on_upload"), Some("manual")));
    // The webhook's address without its path (a path can carry a token, as Slack's do).
    assert_eq!(after["webhook_url"], "https://hooks.example.org/…");
    // By action: a family (`tenant` is every `tenant.*`).
    let family: Vec<String> = entries(&server, &["--tenant", "acme", "--action", "tenant"])
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(family, ["tenant.settings", "tenant.settings", "tenant.password", "tenant.add"]);
    // The operator's view has everything; a date filter narrows it.
    assert_eq!(entries(&server, &[]).len(), 5);
    assert!(entries(&server, &["--since", "2099-01-01"]).is_empty());

    // No secret anywhere in the log, the database or its write-ahead log.
    let text = server.cli_ok(&["audit"]);
    let stored = server.stored_bytes();
    for secret in [secret_password, webhook_secret, token.as_str()] {
        assert!(!text.contains(secret), "{secret} in the log: {text}");
        let found = stored.windows(secret.len()).any(|w| w == secret.as_bytes());
        // The webhook secret is a setting the tenant keeps (it signs webhooks): stored, but
        // never in the audit log; the password and the API key are kept only hashed.
        if secret != webhook_secret {
            assert!(!found, "{secret} stored in the database");
        }
    }
}

/// Removing a tenant says what it removes and asks; removed, its files are kept in the
/// archive, its SFTP sessions end, and the audit log keeps what it did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_is_removed_only_when_confirmed_its_files_archived_and_its_sessions_ended() {
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    let file = write_file(server.dir.path(), "students.csv", b"sisId,firstName,lastName\nS1,Ann,Lee\n");
    server.cli_ok(&["import", "--tenant", "acme", "--type", "students", file.to_str().unwrap()]);
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    assert!(sftp.read_dir("/students").await.is_ok());
    let asked = server.cli(&["tenant", "remove", "acme"]);
    assert_eq!(asked.status.code(), Some(2), "{}", output_text(&asked));
    let said = output_text(&asked);
    assert!(said.contains("would remove tenant acme: 1 records") && said.contains("--yes"), "{said}");
    assert!(server.cli_ok(&["tenant", "list"]).contains("acme"));
    let done = server.cli_ok(&["tenant", "remove", "acme", "--yes"]);
    assert!(done.contains("removed tenant acme"), "{done}");
    assert!(!server.cli_ok(&["tenant", "list"]).contains("acme"));
    let archive = server.data_dir().join("archive").join("removed");
    let kept: Vec<_> = std::fs::read_dir(&archive).unwrap().flatten().collect();
    assert_eq!(kept.len(), 1);
    assert!(kept[0].path().join("students").is_dir() && !server.tenant_dir("acme").exists());
    // The open session ends within the credential watcher's few seconds.
    let mut ended = false;
    for _ in 0..40 {
        if sftp.read_dir("/students").await.is_err() {
            ended = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(ended, "the removed tenant's session still works");
    let log = server.cli_ok(&["audit"]);
    assert!(log.contains("tenant.remove"), "{log}");
}
