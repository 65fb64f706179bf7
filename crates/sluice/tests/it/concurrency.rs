//! Many sessions at once on a 2-core machine.

use crate::common::*;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_uploads_arrive_intact() {
    const SESSIONS: usize = 200;
    let server = Server::start_with(&[
        ("SLUICE_SFTP_MAX_SESSIONS_PER_TENANT", "250"),
        ("SLUICE_SFTP_MAX_UNAUTHENTICATED_PER_IP", "250"),
        ("SLUICE_SFTP_LOGIN_GRACE_SECS", "120"),
    ]);
    server.tenant("acme", "pw-for-tests");
    let port = server.port;
    let mut tasks = Vec::new();
    for i in 0..SESSIONS {
        tasks.push(tokio::spawn(async move {
            let (ssh, sftp) = sftp_login(port, "acme", "pw-for-tests").await;
            let data = pseudo_random(256 * 1024 + i, i as u64 + 1);
            let mut f = sftp.create(format!("/students/file-{i:03}.csv")).await.unwrap();
            f.write_all(&data).await.unwrap();
            f.shutdown().await.unwrap();
            drop(f);
            let _ = sftp.close().await;
            drop(ssh);
            (i, sha256_hex(&data))
        }));
    }
    let mut expected = std::collections::HashMap::new();
    for t in tasks {
        let (i, sha) = t.await.unwrap();
        expected.insert(format!("/students/file-{i:03}.csv"), sha);
    }
    for (path, sha) in &expected {
        let on_disk = std::fs::read(server.tenant_dir("acme").join(path.trim_start_matches('/'))).unwrap();
        assert_eq!(&sha256_hex(&on_disk), sha, "{path} arrived damaged");
    }
    let uploads = server.uploads("acme");
    assert_eq!(uploads.len(), SESSIONS, "every upload must be recorded exactly once");
    let mut seen = std::collections::HashSet::new();
    for u in &uploads {
        let path = u["path"].as_str().unwrap().to_owned();
        assert_eq!(u["sha256"].as_str().unwrap(), expected[&path]);
        assert!(seen.insert(path), "duplicate upload event");
    }
    println!("200 concurrent sessions: server peak RSS {} MiB", server.peak_rss_kib() / 1024);
    assert!(server.spool_is_empty());
}
