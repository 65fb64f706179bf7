//! One suite, run on every adapter: a local directory, memory, and SeaweedFS's S3 API (a real
//! object store, when `weed` is installed).

use super::*;
use crate::testing::SeaweedFs;

fn tenant(name: &str) -> TenantName {
    TenantName::parse(name).expect("tenant name")
}

fn name(raw: &str) -> FileName {
    FileName::parse(raw).expect("file name")
}

fn local_file(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write a local file");
    path
}

fn fetched(bucket: &Bucket, key: &ObjectKey, spool: &Path) -> Option<Vec<u8>> {
    let mut got = bucket.fetch(key, spool).expect("fetch")?;
    let mut bytes = Vec::new();
    got.file.read_to_end(&mut bytes).expect("read the copy");
    assert_eq!(got.entry.size, bytes.len() as u64, "the entry's size is the bytes'");
    Some(bytes)
}

/// A bucket on a fake store listening on `port` of the loopback.
fn on_loopback(port: u16, bucket: &str) -> BucketSettings {
    BucketSettings {
        endpoint: format!("http://127.0.0.1:{port}"),
        bucket: bucket.into(),
        region: "us-east-1".into(),
        path_style: true,
        access_key_id: "AKID".into(),
        secret_access_key: "secret".into(),
        ..Default::default()
    }
}

/// What every adapter does alike.
fn suite(bucket: &Bucket) {
    let work = tempfile::tempdir().expect("work dir");
    let spool = work.path().join("spool");
    let acme = ObjectKey::folder(&tenant("acme"), "exports");
    let acme2 = ObjectKey::folder(&tenant("acme2"), "exports");

    // Nothing yet: an empty folder, no file, removing nothing is fine.
    assert_eq!(bucket.list(&acme).expect("list"), Listing::default());
    assert!(bucket.head(&acme.file(&name("students.csv"))).expect("head").is_none());
    assert!(fetched(bucket, &acme.file(&name("students.csv")), &spool).is_none());
    bucket.delete(&acme.file(&name("students.csv"))).expect("removing nothing");
    bucket.check().expect("the bucket answers");

    // A small file, and names as districts write them (space, percent, accents, dots).
    let odd = ["students.csv", "a b.csv", "100%.csv", "Zoë Núñez.csv", "..csv", "#1?.csv"];
    for (i, n) in odd.iter().enumerate() {
        let path = local_file(work.path(), "up", format!("sisId\nS{i}\n").as_bytes());
        assert_eq!(bucket.put_file(&acme.file(&name(n)), &path).expect("put"), 9);
    }
    let listed = bucket.list(&acme).expect("list");
    let mut expected: Vec<&str> = odd.to_vec();
    expected.sort();
    assert_eq!(listed.files.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), expected);
    assert!(listed.files.iter().all(|e| e.size == 9));
    let ago = SystemTime::now() - Duration::from_secs(600);
    assert!(listed.files.iter().all(|e| e.modified > ago), "modified now: {listed:?}");
    for (i, n) in odd.iter().enumerate() {
        let bytes = fetched(bucket, &acme.file(&name(n)), &spool).expect("there");
        assert_eq!(bytes, format!("sisId\nS{i}\n").as_bytes(), "{n}");
    }
    let fetched_at = bucket.fetch(&acme.file(&name("a b.csv")), &spool).expect("fetch").expect("there");
    let head = bucket.head(&acme.file(&name("a b.csv"))).expect("head").expect("there");
    assert_eq!(fetched_at.entry, head);
    let copy_time = fetched_at.file.metadata().expect("meta").modified().expect("mtime");
    let diff = copy_time.duration_since(head.modified).unwrap_or_else(|e| e.duration());
    assert!(diff < Duration::from_secs(1), "the copy carries the object's time");
    drop(fetched_at);
    assert_eq!(std::fs::read_dir(&spool).expect("spool").count(), 0, "fetched copies have no name");

    // Another tenant whose name starts alike sees none of it, and is not seen.
    let path = local_file(work.path(), "other", b"sisId\nX\n");
    bucket.put_file(&acme2.file(&name("students.csv")), &path).expect("put");
    assert_eq!(bucket.list(&acme).expect("list").files.len(), odd.len());
    assert_eq!(bucket.list(&acme2).expect("list").files.len(), 1);

    // A subfolder is listed as a folder, its files in it only.
    let photos = ObjectKey::folder(&tenant("acme"), "exports/photos");
    let path = local_file(work.path(), "photo", b"\x89PNG...");
    bucket.put_file(&photos.file(&name("S1.png")), &path).expect("put");
    let listed = bucket.list(&acme).expect("list");
    assert_eq!(listed.folders, ["photos"]);
    assert!(!listed.files.iter().any(|e| e.name == "S1.png"));
    assert_eq!(bucket.list(&photos).expect("list").files[0].name, "S1.png");

    // Replaced whole: the new bytes, the new size.
    let path = local_file(work.path(), "up", b"sisId\nS1\nS2\nS3\n");
    bucket.put_file(&acme.file(&name("students.csv")), &path).expect("replace");
    assert_eq!(
        fetched(bucket, &acme.file(&name("students.csv")), &spool).expect("there"),
        b"sisId\nS1\nS2\nS3\n"
    );
    bucket.put_bytes(&acme.file(&name("students.csv")), b"sisId\n".to_vec()).expect("replace");
    assert_eq!(bucket.head(&acme.file(&name("students.csv"))).expect("head").expect("there").size, 6);

    // Larger than a part: sent in parts, read back byte for byte.
    let big: Vec<u8> = (0..PART_BYTES * 2 + 12_345).map(|i| (i % 251) as u8).collect();
    let path = local_file(work.path(), "big", &big);
    let key = acme.file(&name("big.xlsx"));
    assert_eq!(bucket.put_file(&key, &path).expect("multipart put"), big.len() as u64);
    assert!(fetched(bucket, &key, &spool).expect("there") == big, "the big file comes back whole");
    // Read while it arrives: the copy has the object's size from the start, a part can be
    // read once it is in, and the whole once the copy is.
    let wait = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let Arriving { file, arrival } = bucket.read_arriving(&key, &spool).expect("open").expect("there");
    assert_eq!(file.metadata().expect("meta").len(), big.len() as u64);
    assert_eq!(arrival.entry.size, big.len() as u64);
    wait.block_on(arrival.wait_for(10)).expect("the first bytes");
    let mut first = [0u8; 10];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut first, 0).expect("read");
    assert_eq!(first, big[..10]);
    wait.block_on(arrival.wait_for(u64::MAX)).expect("all of it");
    assert!(arrival.is_whole());
    let mut whole = vec![0u8; big.len()];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut whole, 0).expect("read");
    assert!(whole == big, "the copy read while it arrived is the object");
    // Open copies are counted until dropped (which stops the copy), and have no name to leave.
    assert_eq!(bucket.counts().copies_open, 1);
    let early = bucket.read_arriving(&key, &spool).expect("open").expect("there");
    assert_eq!(bucket.counts().copies_open, 2);
    drop(early);
    drop((file, arrival));
    assert_eq!(bucket.counts().copies_open, 0);
    assert!(bucket.counts().bytes_read >= 2 * big.len() as u64, "{:?}", bucket.counts());
    assert_eq!(std::fs::read_dir(&spool).expect("spool").count(), 0, "copies have no name");
    assert!(bucket.read_arriving(&acme.file(&name("absent.csv")), &spool).expect("open").is_none());

    // Removal: one file, then everything of a tenant; the other tenant keeps its file.
    bucket.delete(&key).expect("delete");
    assert!(bucket.head(&key).expect("head").is_none());
    let removed = bucket.delete_under(&ObjectKey::tenant(&tenant("acme"))).expect("delete all");
    assert_eq!(removed, odd.len() + 1);
    // (A store with real folders, a local directory or SeaweedFS's filer, may still list the
    // emptied `photos` folder; sluice lists its own subfolders anyway.)
    assert_eq!(bucket.list(&acme).expect("list").files, []);
    // And a folder emptied file by file lists no file either.
    let path = local_file(work.path(), "again", b"x");
    bucket.put_file(&acme.file(&name("again.csv")), &path).expect("put");
    bucket.delete(&acme.file(&name("again.csv"))).expect("delete");
    assert_eq!(bucket.list(&acme).expect("list").files, []);
    assert_eq!(bucket.list(&acme2).expect("list").files.len(), 1, "acme2 keeps its file");
}

#[test]
fn a_local_directory_passes_the_suite() {
    let dir = tempfile::tempdir().expect("dir");
    let store = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).expect("local store");
    suite(&Bucket::over(Arc::new(store), "", "local"));
}

#[test]
fn memory_passes_the_suite_with_a_prefix() {
    suite(&Bucket::over(Arc::new(object_store::memory::InMemory::new()), "sluice/", "memory"));
}

#[test]
fn seaweedfs_passes_the_suite_and_keeps_keys_under_the_prefix() {
    let Some(weed) = SeaweedFs::start("sluice-suite") else { return };
    let bucket = Bucket::open(&weed.settings("sluice-suite", "vendor/sluice")).expect("open");
    suite(&bucket);
    // The keys are under the prefix: another use of the bucket sees them there.
    let path = tempfile::NamedTempFile::new().expect("file");
    bucket
        .put_file(&ObjectKey::folder(&tenant("north"), "exports").file(&name("a.csv")), path.path())
        .expect("put");
    let whole = Bucket::open(&weed.settings("sluice-suite", "")).expect("open");
    let at =
        ObjectKey(vec!["vendor".into(), "sluice".into(), "tenants".into(), "north".into(), "exports".into()]);
    assert_eq!(whole.list(&at).expect("list").files[0].name, "a.csv");
}

#[test]
fn seaweedfs_passes_the_suite_without_a_prefix() {
    let Some(weed) = SeaweedFs::start("sluice-whole") else { return };
    suite(&Bucket::open(&weed.settings("sluice-whole", "")).expect("open"));
}

#[test]
fn wrong_credentials_and_a_missing_bucket_are_errors_that_name_the_bucket() {
    let Some(mut weed) = SeaweedFs::start("sluice-there") else { return };
    let wrong =
        BucketSettings { secret_access_key: "not-the-key".into(), ..weed.settings("sluice-there", "") };
    let err = Bucket::open(&wrong).expect("open").check().expect_err("refused").to_string();
    assert!(err.contains("s3://sluice-there at http://127.0.0.1:"), "{err}");
    assert!(
        err.contains("SignatureDoesNotMatch") || err.contains("AccessDenied"),
        "the store's reason: {err}"
    );
    assert!(err.len() < 600, "said once: {err}");
    let missing = Bucket::open(&weed.settings("no-such-bucket", "")).expect("open");
    assert!(missing.check().is_err(), "a bucket that does not exist is not healthy");
    // The server gone: the check fails in seconds, not minutes.
    let bucket = Bucket::open(&weed.settings("sluice-there", "")).expect("open");
    bucket.check().expect("up");
    weed.stop();
    let started = std::time::Instant::now();
    assert!(bucket.check().is_err());
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
}

/// A store that takes connections and never answers: a question about names fails at its
/// deadline, not after the transfer timeout (minutes).
#[test]
fn a_store_that_never_answers_is_an_error_at_the_deadline() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream); // read nothing, answer nothing
        }
    });
    let bucket = Bucket::open(&on_loopback(port, "silent")).expect("open");
    let started = std::time::Instant::now();
    let err = bucket.check().expect_err("no answer").to_string();
    let took = started.elapsed();
    assert!(err.contains("no answer within 15 s") && err.contains("s3://silent"), "{err}");
    assert!(took >= METADATA_DEADLINE && took < METADATA_DEADLINE + Duration::from_secs(5), "{took:?}");
}

/// How the fake store of [`fake_store`] answers a GET of its one 1000-byte object (byte `i` is
/// `i % 251`): 100 bytes at a time from where it is asked to start, then...
#[derive(Clone, Copy, PartialEq)]
enum Fake {
    /// ...it closes the connection (a store or balancer that drops long answers).
    Breaks,
    /// ...it holds the connection open and sends nothing more.
    Stalls,
    /// ...it closes, and answers a request for the rest with the whole object again (a
    /// store that ignores ranges: the copy cannot go on).
    IgnoresRanges,
}

const FAKE_SIZE: usize = 1000;

fn fake_byte(i: usize) -> u8 {
    (i % 251) as u8
}

/// An S3 endpoint on the loopback that serves one object as `how` says; returns its port.
fn fake_store(how: Fake) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let (mut line, mut from) = (String::new(), None);
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                let lower = line.to_ascii_lowercase();
                if let Some(range) = lower.strip_prefix("range: bytes=") {
                    from = range.trim().trim_end_matches('-').parse::<usize>().ok();
                }
                line.clear();
            }
            let mut stream = reader.into_inner();
            let start = if how == Fake::IgnoresRanges { 0 } else { from.unwrap_or(0) };
            let status = match (from, how) {
                (Some(_), Fake::Breaks | Fake::Stalls) => format!(
                    "206 Partial Content\r\nContent-Range: bytes {start}-{}/{FAKE_SIZE}",
                    FAKE_SIZE - 1
                ),
                _ => "200 OK".to_owned(),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nLast-Modified: Wed, 21 Oct 2026 07:28:00 GMT\r\n\
                 ETag: \"abc\"\r\nConnection: close\r\n\r\n",
                FAKE_SIZE - start
            );
            let body: Vec<u8> = (start..(start + 100).min(FAKE_SIZE)).map(fake_byte).collect();
            let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&body));
            if how == Fake::Stalls {
                held.push(stream); // nothing more, and not closed
            }
        }
    });
    port
}

fn fake_key() -> ObjectKey {
    ObjectKey::folder(&tenant("acme"), "exports").file(&name("students.csv"))
}

/// A store whose answers break off every 100 bytes: the copy is taken up where it stopped,
/// for the same version of the object, and the reader gets every byte.
#[test]
fn a_copy_the_store_breaks_off_is_taken_up_where_it_stopped() {
    let bucket = Bucket::open(&on_loopback(fake_store(Fake::Breaks), "breaking")).expect("open");
    let spool = tempfile::tempdir().expect("spool");
    let Arriving { file, arrival } =
        bucket.read_arriving(&fake_key(), spool.path()).expect("answered").expect("there");
    let wait = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    wait.block_on(arrival.wait_for(u64::MAX)).expect("all of it, in ten answers");
    let mut got = vec![0u8; FAKE_SIZE];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut got, 0).expect("read");
    assert_eq!(got, (0..FAKE_SIZE).map(fake_byte).collect::<Vec<_>>());
    assert!(arrival.is_whole());
}

/// A store that stops sending without closing: after the stall time, the copy is taken up
/// where it stopped (the stall time is 30 s; a second here).
#[test]
fn a_copy_the_store_stops_sending_is_taken_up_after_the_stall_time() {
    let settings = on_loopback(fake_store(Fake::Stalls), "stalling");
    let bucket = Bucket::open(&settings).expect("open").with_stalled_after(Duration::from_secs(1));
    let spool = tempfile::tempdir().expect("spool");
    let Arriving { file, arrival } =
        bucket.read_arriving(&fake_key(), spool.path()).expect("answered").expect("there");
    let wait = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let started = std::time::Instant::now();
    wait.block_on(arrival.wait_for(u64::MAX)).expect("all of it");
    assert!(started.elapsed() >= Duration::from_secs(9), "nine stalls of a second: {:?}", started.elapsed());
    let mut got = vec![0u8; FAKE_SIZE];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut got, 0).expect("read");
    assert_eq!(got, (0..FAKE_SIZE).map(fake_byte).collect::<Vec<_>>());
}

/// A copy that cannot go on: what arrived can be read, the rest is an error that says what
/// broke (never a short file that looks whole, nor zeros).
#[test]
fn a_copy_that_cannot_go_on_is_an_error_for_the_rest() {
    let bucket = Bucket::open(&on_loopback(fake_store(Fake::IgnoresRanges), "breaking")).expect("open");
    let spool = tempfile::tempdir().expect("spool");
    let Arriving { file, arrival } =
        bucket.read_arriving(&fake_key(), spool.path()).expect("answered").expect("there");
    assert_eq!(arrival.entry.size, FAKE_SIZE as u64);
    let wait = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    wait.block_on(arrival.wait_for(100)).expect("what arrived");
    let mut got = [0u8; 100];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut got, 0).expect("read");
    assert_eq!(got.to_vec(), (0..100).map(fake_byte).collect::<Vec<_>>());
    let err = wait.block_on(arrival.wait_for(FAKE_SIZE as u64)).expect_err("the rest never came").to_string();
    assert!(err.contains("s3://breaking") && err.contains("students.csv"), "{err}");
    assert!(!arrival.is_whole());
    assert!(bucket.counts().failed_calls > 0, "counted: {:?}", bucket.counts());
    // fetch, which waits for the whole object, fails too.
    assert!(bucket.fetch(&fake_key(), spool.path()).is_err());
}

#[test]
fn settings_are_checked_and_never_show_a_secret() {
    let settings = BucketSettings {
        bucket: "b".into(),
        endpoint: "s3.example.org".into(),
        secret_access_key: "hunter2-secret".into(),
        access_key_id: "AKID".into(),
        ..Default::default()
    };
    assert!(!format!("{settings:?}").contains("hunter2"));
    let err = Bucket::open(&settings).expect_err("no scheme").to_string();
    assert!(err.contains("must start with https://"), "{err}");
    let half = BucketSettings { endpoint: String::new(), access_key_id: String::new(), ..settings.clone() };
    assert!(Bucket::open(&half).expect_err("half").to_string().contains("go together"));
    let none = BucketSettings { bucket: " ".into(), ..settings };
    assert!(Bucket::open(&none).expect_err("no bucket").to_string().contains("bucket is not set"));
}

/// Calls made from inside a runtime (the SFTP server's, a test's) neither deadlock nor panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_from_inside_a_multi_threaded_runtime_work() {
    let bucket = Bucket::over(Arc::new(object_store::memory::InMemory::new()), "", "memory");
    bucket.put_bytes(&ObjectKey::own("x"), b"1".to_vec()).expect("put");
    assert!(bucket.head(&ObjectKey::own("x")).expect("head").is_some());
    drop(bucket); // dropped on a runtime thread: no panic
}

#[tokio::test]
async fn calls_from_inside_a_current_thread_runtime_work() {
    let bucket = Bucket::over(Arc::new(object_store::memory::InMemory::new()), "", "memory");
    bucket.put_bytes(&ObjectKey::own("x"), b"1".to_vec()).expect("put");
    assert_eq!(bucket.head(&ObjectKey::own("x")).expect("head").expect("there").size, 1);
}
