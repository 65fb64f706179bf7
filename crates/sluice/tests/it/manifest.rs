//! `.done` manifests over real SFTP, every branch of the protocol.

use crate::common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

fn accounts(rows: &[&str]) -> String {
    let mut s = String::from("Username,FirstName,LastName,CampusEmail\n");
    for r in rows {
        s.push_str(&format!("{r},First,Last,{r}@campus.edu\n"));
    }
    s
}

/// MD5 by the system's md5sum, independent of sluice's own.
fn md5_hex(data: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    std::fs::write(&f, data).unwrap();
    let out = std::process::Command::new("md5sum").arg(&f).output().unwrap();
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_owned()
}

fn manifest(lines: &[(&str, &str, &str)]) -> String {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<manifest>\n");
    for (name, sum, kind) in lines {
        s.push_str(&format!("  <file name=\"{name}\" checksum=\"{sum}\" checksumhashtype=\"{kind}\"/>\n"));
    }
    s.push_str("</manifest>\n");
    s
}

fn folder(server: &Server) -> std::path::PathBuf {
    server.tenant_dir("acme").join("accounts")
}

fn names(server: &Server) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(folder(server))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn history(server: &Server) -> Vec<Value> {
    let v: Value =
        serde_json::from_str(&server.cli_ok(&["imports", "--tenant", "acme", "--json", "--limit", "5000"]))
            .unwrap();
    v.as_array().unwrap().clone()
}

fn manifest_server() -> Server {
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    server.cli_ok(&["tenant", "set", "acme", "types=accounts,students", "trigger=manifest"]);
    server.cli_ok(&["tenant", "set", "acme", "folders=accounts,students,inbox"]);
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_wait_for_their_manifest_then_import_and_everything_is_removed() {
    let server = manifest_server();
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    let a = accounts(&["ann", "bob"]);
    let b = accounts(&["cy"]);
    put(&sftp, "/accounts/a.csv", a.as_bytes()).await.unwrap();
    put(&sftp, "/accounts/b.csv", b.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(names(&server), ["a.csv", "b.csv"], "data files wait for a manifest");
    assert!(history(&server).is_empty());
    // Upper-case checksum and hash type, and a line without a checksum.
    let m = manifest(&[("a.csv", &md5_hex(a.as_bytes()).to_uppercase(), "MD5"), ("b.csv", "", "none")]);
    put(&sftp, "/accounts/nightly.done", m.as_bytes()).await.unwrap();
    wait_for("the manifest to be processed", Duration::from_secs(20), || names(&server).is_empty());
    let h = history(&server);
    assert_eq!(h.len(), 2, "{h:?}");
    assert!(h.iter().all(|v| v["status"] == "complete" && v["source"] == "manifest"), "{h:?}");
    assert_eq!(server.cli_ok(&["records", "--tenant", "acme", "--type", "accounts"]).lines().count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_files_and_wrong_checksums_mark_the_lines_and_import_nothing() {
    let server = manifest_server();
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    let a = accounts(&["ann"]);
    put(&sftp, "/accounts/a.csv", a.as_bytes()).await.unwrap();
    // A manifest that arrives while its data file is still uploading: the partial upload is
    // invisible (private spool), so the line is invalid and nothing partial is imported.
    let mut partial = sftp.create("/accounts/late.csv").await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut partial, b"Username,FirstName").await.unwrap();
    tokio::io::AsyncWriteExt::flush(&mut partial).await.unwrap();
    let m = manifest(&[
        ("a.csv", "00000000000000000000000000000000", "md5"),
        ("late.csv", "", ""),
        ("../../etc/passwd", "", "none"),
    ]);
    put(&sftp, "/accounts/x.done", m.as_bytes()).await.unwrap();
    let want = "x.CONTAINSINVALIDFILES".to_string();
    wait_for("CONTAINSINVALIDFILES", Duration::from_secs(20), || names(&server).contains(&want));
    assert_eq!(
        names(&server),
        ["a.csv", "x.CONTAINSINVALIDFILES"],
        "the data file stays, nothing else is left"
    );
    let marked = std::fs::read_to_string(folder(&server).join("x.CONTAINSINVALIDFILES")).unwrap();
    let mismatch = format!("INVALID=\"checksum mismatch: the file's MD5 is {}\"", md5_hex(a.as_bytes()));
    assert!(marked.contains(&mismatch), "{marked}");
    assert!(
        marked.contains("name=\"late.csv\" checksum=\"\" checksumhashtype=\"\" INVALID=\"no such file"),
        "{marked}"
    );
    assert!(
        marked.contains("name=\"../../etc/passwd\" checksum=\"\" checksumhashtype=\"none\" INVALID=\"the name &quot;../../etc/passwd&quot; is not allowed: it contains a path separator ('/' or '\\'); list a data file in this folder by its name alone\""),
        "{marked}"
    );
    let h = history(&server);
    assert_eq!(h.len(), 1);
    assert!(h[0]["message"].as_str().unwrap().starts_with("CONTAINSINVALIDFILES"), "{h:?}");
    assert_eq!(server.cli_ok(&["records", "--tenant", "acme", "--type", "accounts"]).lines().count(), 1);
    // The tenant can read and delete the marked manifest.
    let mut text = String::new();
    let mut f = sftp.open("/accounts/x.CONTAINSINVALIDFILES").await.unwrap();
    tokio::io::AsyncReadExt::read_to_string(&mut f, &mut text).await.unwrap();
    assert_eq!(text, marked);
    sftp.remove_file("/accounts/x.CONTAINSINVALIDFILES").await.unwrap();
    drop(partial);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_and_malformed_manifests_are_invalidschema() {
    let server = manifest_server();
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    put(&sftp, "/accounts/a.csv", accounts(&["ann"]).as_bytes()).await.unwrap();
    let laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol9 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<manifest><file name="&lol9;" checksum="" checksumhashtype=""/></manifest>"#;
    let xxe = r#"<?xml version="1.0"?><!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]><m><file name="&x;" checksum="" checksumhashtype=""/></m>"#;
    let mut huge = b"<manifest>".to_vec();
    huge.extend(std::iter::repeat_n(b' ', 100 << 20));
    huge.extend_from_slice(b"<file name=\"a.csv\" checksum=\"\" checksumhashtype=\"\"/></manifest>");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("broken", b"<manifest><file name=\"a.csv\"".to_vec()),
        ("empty", b"<manifest></manifest>".to_vec()),
        ("sha1", manifest(&[("a.csv", "abc", "sha1")]).into_bytes()),
        ("laughs", laughs.as_bytes().to_vec()),
        ("xxe", xxe.as_bytes().to_vec()),
        ("huge", huge),
    ];
    for (stem, body) in &cases {
        put(&sftp, &format!("/accounts/{stem}.done"), body).await.unwrap();
        let want = format!("{stem}.INVALIDSCHEMA");
        wait_for(&want, Duration::from_secs(30), || names(&server).contains(&want));
    }
    assert_eq!(names(&server).iter().filter(|n| n.ends_with(".INVALIDSCHEMA")).count(), cases.len());
    assert!(names(&server).contains(&"a.csv".to_string()), "nothing was imported");
    let h = history(&server);
    assert_eq!(h.len(), cases.len());
    assert!(h.iter().all(|v| v["message"].as_str().unwrap().starts_with("INVALIDSCHEMA")), "{h:?}");
    assert!(h.iter().any(|v| v["message"].as_str().unwrap().contains("DTDs")), "{h:?}");
    assert!(!server.log().contains("root:x:0:0"), "no external entity was read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_missing_and_completed_with_errors() {
    let server = manifest_server();
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    // /inbox has no import type.
    put(&sftp, "/inbox/a.csv", accounts(&["ann"]).as_bytes()).await.unwrap();
    put(&sftp, "/inbox/in.done", manifest(&[("a.csv", "", "")]).as_bytes()).await.unwrap();
    let inbox = server.tenant_dir("acme").join("inbox");
    wait_for("IMPORTCONFIGMISSING", Duration::from_secs(20), || {
        inbox.join("in.IMPORTCONFIGMISSING").exists()
    });
    assert!(inbox.join("a.csv").exists());
    // A file with a bad row: imported, manifest kept, report in /errors.
    let bad = format!("{}dee,First,Last,not-an-email\n", accounts(&["cy"]));
    put(&sftp, "/accounts/c.csv", bad.as_bytes()).await.unwrap();
    put(&sftp, "/accounts/c.done", manifest(&[("c.csv", "", "none")]).as_bytes()).await.unwrap();
    wait_for("COMPLETEDWITHERRORS", Duration::from_secs(20), || names(&server) == ["c.COMPLETEDWITHERRORS"]);
    let h = history(&server);
    let import = h.iter().find(|v| v["file_name"] == "c.csv").unwrap();
    assert_eq!(import["status"], "incomplete");
    let errors: Vec<String> = sftp.read_dir("/errors").await.unwrap().map(|e| e.file_name()).collect();
    assert_eq!(errors, [format!("{:08}-c-errors.csv", import["id"].as_i64().unwrap())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_manifests_in_flight_and_a_file_in_the_wrong_folder() {
    let server = manifest_server();
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    for (file, done) in [("a.csv", "a.done"), ("b.csv", "b.done"), ("c.csv", "c.done")] {
        put(&sftp, &format!("/accounts/{file}"), accounts(&[file.trim_end_matches(".csv")]).as_bytes())
            .await
            .unwrap();
        put(&sftp, &format!("/accounts/{done}"), manifest(&[(file, "", "none")]).as_bytes()).await.unwrap();
    }
    wait_for("three manifests", Duration::from_secs(20), || names(&server).is_empty());
    assert_eq!(history(&server).iter().filter(|v| v["status"] == "complete").count(), 3);
    // A data file where no import type lives gets a history entry at once, and stays.
    put(&sftp, "/inbox/accounts.csv", accounts(&["zed"]).as_bytes()).await.unwrap();
    wait_for("the wrong-folder entry", Duration::from_secs(20), || history(&server).len() == 4);
    let entry = &history(&server)[0];
    assert_eq!(entry["status"], "failed");
    assert!(entry["message"].as_str().unwrap().contains("/inbox/accounts.csv"), "{entry}");
    assert!(server.tenant_dir("acme").join("inbox/accounts.csv").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_listing_a_thousand_files() {
    let server = manifest_server();
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    let mut lines = Vec::new();
    for i in 0..1000 {
        let body = accounts(&[&format!("user{i}")]);
        if let Err(e) = put(&sftp, &format!("/accounts/f{i:04}.csv"), body.as_bytes()).await {
            let log = server.log();
            panic!("upload {i} failed: {e:?}\n{}", &log[log.len().saturating_sub(3000)..]);
        }
        lines.push((format!("f{i:04}.csv"), md5_hex(body.as_bytes())));
    }
    let entries: Vec<(&str, &str, &str)> =
        lines.iter().map(|(n, s)| (n.as_str(), s.as_str(), "md5")).collect();
    put(&sftp, "/accounts/bulk.done", manifest(&entries).as_bytes()).await.unwrap();
    wait_for("1000 imports", Duration::from_secs(180), || names(&server).is_empty());
    assert_eq!(history(&server).len(), 1000);
    assert_eq!(server.cli_ok(&["records", "--tenant", "acme", "--type", "accounts"]).lines().count(), 1001);
}

/// Runs the README's example script, exactly as printed, with OpenSSH's sftp.
#[test]
fn the_readme_example_script_works() {
    if !have("sftp", "openssh-client") || !have("md5sum", "coreutils") {
        return;
    }
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let section =
        &readme[readme.find("### Example: upload with a manifest").expect("README example section")..];
    let start = section.find("```sh\n").unwrap() + "```sh\n".len();
    let script = &section[start..start + section[start..].find("```").unwrap()];
    let server = manifest_server();
    let key = server.key("acme");
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("accounts.csv"), accounts(&["ann", "bob"])).unwrap();
    std::fs::write(work.path().join("example.sh"), script).unwrap();
    let opts =
        "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes -o LogLevel=ERROR";
    let out = run_with_timeout(
        std::process::Command::new("sh")
            .arg("example.sh")
            .current_dir(work.path())
            .env("SFTP_HOST", "127.0.0.1")
            .env("SFTP_USER", "acme")
            .env("SFTP_PORT", server.port.to_string())
            .env("SFTP_KEY", &key)
            .env("SFTP_OPTS", opts),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", output_text(&out));
    wait_for("the example's import", Duration::from_secs(20), || names(&server).is_empty());
    let h = history(&server);
    assert_eq!((h.len(), h[0]["status"].as_str()), (1, Some("complete")), "{h:?}");
}

/// `trigger.TYPE=manifest`: one type waits for manifests while the tenant's others import on upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_type_manifest_trigger() {
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    server.cli_ok(&["tenant", "set", "acme", "types=accounts,students", "trigger.accounts=manifest"]);
    assert_eq!(server.cli(&["tenant", "set", "acme", "trigger.accounts=schedule"]).status.code(), Some(2));
    assert_eq!(server.cli(&["tenant", "set", "acme", "trigger.nope=manual"]).status.code(), Some(2));
    let show: Value = serde_json::from_str(&server.cli_ok(&["tenant", "show", "acme", "--json"])).unwrap();
    assert_eq!(show["type_triggers"]["accounts"], "manifest");
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    put(&sftp, "/accounts/a.csv", accounts(&["ann"]).as_bytes()).await.unwrap();
    put(&sftp, "/students/students.csv", b"sisId,firstName,lastName\nS1,A,B\n").await.unwrap();
    wait_for("the students import", Duration::from_secs(20), || history(&server).len() == 1);
    assert_eq!(history(&server)[0]["type"], "students");
    assert_eq!(names(&server), ["a.csv"], "accounts wait for their manifest");
    put(&sftp, "/accounts/a.done", manifest(&[("a.csv", "", "")]).as_bytes()).await.unwrap();
    wait_for("the accounts import", Duration::from_secs(20), || names(&server).is_empty());
    assert_eq!(history(&server).len(), 2);
    // Back to the tenant's trigger.
    server.cli_ok(&["tenant", "set", "acme", "trigger.accounts=default"]);
    put(&sftp, "/accounts/b.csv", accounts(&["bob"]).as_bytes()).await.unwrap();
    wait_for("an on-upload accounts import", Duration::from_secs(20), || history(&server).len() == 3);
}

/// SIGKILL while the second file a manifest lists is importing: after the restart the
/// manifest resumes, the first file is not imported again, the second is imported from
/// staging, and nothing is lost or left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_interrupted_by_a_crash_resumes_where_it_stopped() {
    let mut server = manifest_server();
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    let small = accounts(&["ann", "bob"]);
    let users: Vec<String> = (0..300_000).map(|i| format!("u{i}")).collect();
    let big = accounts(&users.iter().map(String::as_str).collect::<Vec<_>>());
    put(&sftp, "/accounts/a.csv", small.as_bytes()).await.unwrap();
    put(&sftp, "/accounts/b.csv", big.as_bytes()).await.unwrap();
    let m = manifest(&[("a.csv", "", "none"), ("b.csv", &md5_hex(big.as_bytes()), "md5")]);
    put(&sftp, "/accounts/nightly.done", m.as_bytes()).await.unwrap();
    wait_for("b.csv to be importing", Duration::from_secs(60), || {
        history(&server).iter().any(|v| v["file_name"] == "b.csv" && v["status"] == "running")
    });
    server.kill_and_restart();
    wait_for("the manifest to be resumed and finished", Duration::from_secs(120), || {
        names(&server).is_empty()
            && history(&server).iter().any(|v| v["file_name"] == "b.csv" && v["status"] == "complete")
    });
    let h = history(&server);
    let of = |file: &str| h.iter().filter(|v| v["file_name"] == file).collect::<Vec<_>>();
    assert_eq!(of("a.csv").len(), 1, "a.csv is imported once: {h:?}");
    assert_eq!(of("b.csv").len(), 1, "{h:?}");
    assert!(h.iter().all(|v| v["status"] == "complete"), "{h:?}");
    assert_eq!(of("b.csv")[0]["counts"]["added"], 300_000);
    let staging = server.data_dir().join("spool/staging");
    let left: Vec<_> = std::fs::read_dir(&staging).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "staging is empty: {left:?}");
    let records = server.cli_ok(&["records", "--tenant", "acme", "--type", "accounts"]);
    assert_eq!(records.lines().count(), 1 + 2 + 300_000);
}

/// Reports whether any of some files was opened or read (inotify), to prove the server
/// never touched them.
struct OpenWatch(std::os::fd::OwnedFd);

impl OpenWatch {
    fn new(paths: &[&std::path::Path]) -> Self {
        use std::os::fd::{FromRawFd, OwnedFd};
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: plain system calls; the descriptor is owned from here on.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(fd >= 0, "inotify_init1: {}", std::io::Error::last_os_error());
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        for path in paths {
            let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
            let mask = libc::IN_OPEN | libc::IN_ACCESS;
            // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
            let wd =
                unsafe { libc::inotify_add_watch(std::os::fd::AsRawFd::as_raw_fd(&fd), c.as_ptr(), mask) };
            assert!(wd >= 0, "watching {}: {}", path.display(), std::io::Error::last_os_error());
        }
        Self(fd)
    }

    /// Bytes of inotify events queued so far (0: nothing was opened or read).
    fn events(&self) -> usize {
        let mut buf = [0u8; 4096];
        // SAFETY: reads into a buffer we own, of the length we pass.
        let n = unsafe {
            libc::read(std::os::fd::AsRawFd::as_raw_fd(&self.0), buf.as_mut_ptr().cast(), buf.len())
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "reading inotify: {e}");
            return 0;
        }
        n as usize
    }
}

/// Names in a manifest are resolved like SFTP paths, inside the manifest's folder, with no
/// separators: `../../../ssh_host_ed25519_key` once came back with the host key's real MD5.
/// Every line naming something else than a file of this folder is invalid, says why, and
/// nothing outside the folder is opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_names_outside_the_folder_are_refused_and_never_opened() {
    let server = manifest_server();
    let data = server.data_dir();
    let host_key = data.join("ssh_host_ed25519_key");
    // A file the tenant cannot reach: in its own directory, beside the folder.
    let canary = server.tenant_dir("acme").join("canary.csv");
    std::fs::write(&canary, accounts(&["secret"])).unwrap();
    let key_md5 = md5_hex(&std::fs::read(&host_key).unwrap());
    let canary_md5 = md5_hex(&std::fs::read(&canary).unwrap());
    let watch = OpenWatch::new(&[&host_key, &canary]);
    let (_ssh, sftp) = sftp_login(server.port, "acme", "pw-for-tests").await;
    let a = accounts(&["ann"]);
    put(&sftp, "/accounts/a.csv", a.as_bytes()).await.unwrap();
    let zeros = "00000000000000000000000000000000";
    let hostile = [
        "../../../ssh_host_ed25519_key",
        "../../../sluice.db",
        "../../sluice.db",
        "../canary.csv",
        "sub/x.csv",
        "..\\x.csv",
        "/etc/passwd",
        "./a.csv",
        "..",
        ".",
    ];
    let mut lines: Vec<(&str, &str, &str)> = hostile.iter().map(|n| (*n, zeros, "md5")).collect();
    let a_md5 = md5_hex(a.as_bytes());
    lines.push(("a.csv", &a_md5, "md5"));
    put(&sftp, "/accounts/x.done", manifest(&lines).as_bytes()).await.unwrap();
    let want = "x.CONTAINSINVALIDFILES".to_string();
    wait_for("CONTAINSINVALIDFILES", Duration::from_secs(20), || names(&server).contains(&want));
    let marked = std::fs::read_to_string(folder(&server).join(&want)).unwrap();
    assert!(!marked.contains(&key_md5), "the host key's MD5 leaked: {marked}");
    assert!(!marked.contains(&canary_md5), "a file outside the folder was read: {marked}");
    assert!(!marked.contains("checksum mismatch"), "nothing outside was hashed: {marked}");
    assert!(!marked.contains("no such file"), "nothing outside was looked up: {marked}");
    let parsed: Vec<&str> = marked.lines().filter(|l| l.contains("<file ")).collect();
    assert_eq!(parsed.len(), hostile.len() + 1, "{marked}");
    for (line, name) in parsed.iter().zip(hostile) {
        assert!(line.contains("INVALID=\"the name "), "{name}: {line}");
        assert!(line.contains("is not allowed"), "{name}: {line}");
        assert!(line.contains("list a data file in this folder by its name alone"), "{name}: {line}");
    }
    assert!(!parsed[hostile.len()].contains("INVALID"), "a.csv is a fine line: {marked}");
    assert_eq!(watch.events(), 0, "the host key or a file outside the folder was opened");
    std::fs::read(&canary).unwrap();
    assert!(watch.events() > 0, "the watch sees opens (so its silence above means something)");
    let h = history(&server);
    assert_eq!(h.len(), 1, "{h:?}");
    let message = h[0]["message"].as_str().unwrap();
    assert!(message.starts_with("CONTAINSINVALIDFILES"), "{message}");
    assert!(!message.contains(&key_md5) && !message.contains("checksum mismatch"), "{message}");
    assert!(names(&server).contains(&"a.csv".to_string()), "nothing was imported");
}
