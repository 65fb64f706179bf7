//! Where sluice keeps files that are not on the local disk: an S3-compatible bucket (AWS S3,
//! MinIO, SeaweedFS, Garage...), through `object_store`, behind one small blocking API.
//!
//! What this room promises:
//! - A file appears in the bucket whole or not at all: a put of one request, or a multipart
//!   upload completed in one request; nothing is renamed (S3 renames are copy + delete).
//! - Keys are built from names already parsed at the edge ([`TenantName`], [`FileName`]) and
//!   sluice's own folder names; every segment is encoded by `object_store`, so a name never
//!   reaches another tenant's keys and `..` is just a name.
//! - Calls block the calling thread (the callers are SFTP handlers, export writers and
//!   commands, most of them already on blocking threads); the I/O runs on this room's own
//!   small runtime, so a call made from inside another runtime neither deadlocks nor starves it.
//! - Secrets are never printed: [`BucketSettings`]'s `Debug` shows no credential.

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sluice_core::{FileName, TenantName};
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod tests;

/// The environment variables credentials are read from when the settings give none.
const CREDENTIAL_VARIABLES: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
];

/// How long a question about names and sizes (head, list, remove) may take, retries included:
/// a store that accepts connections and never answers must not hold an SFTP session, a
/// health probe or a thread for minutes.
const METADATA_DEADLINE: Duration = Duration::from_secs(15);

/// Files up to this size go in one request; larger ones in parts of this size.
pub const PART_BYTES: usize = 8 * 1024 * 1024;
/// Parts of one file in flight at once (memory: this many parts).
const PARTS_IN_FLIGHT: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// The bucket answered with an error, or could not be reached. Shows the innermost cause
    /// once (object_store's errors repeat their causes in their own text).
    /// (`cause` is not the error's `source`: its innermost cause is in the text already, and
    /// a chain printed after it would repeat it, with the store's XML, several times.)
    #[error("object storage ({bucket}): {what}: {}", root_cause(cause))]
    Store { bucket: String, what: String, cause: object_store::Error },
    /// A local file (the one sent, or the copy fetched) could not be read or written.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The settings cannot make a client (a bad endpoint, no bucket).
    #[error("[storage]: {0}")]
    Settings(String),
    /// This room's runtime stopped before the call finished (the process is stopping).
    #[error("object storage ({0}): the call was cut short; the server is stopping")]
    Stopped(String),
    /// The copy of an object being read broke off (the store's answer ended early, the local
    /// disk failed): what broke it.
    #[error("{0}")]
    CopyBroken(String),
}

pub type FilesResult<T> = Result<T, FilesError>;

/// How to reach the bucket. Credentials not given here come from the usual `AWS_*` variables
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, a web identity) or the
/// instance's role, as the AWS tools find them.
#[derive(Clone, Default)]
pub struct BucketSettings {
    /// `https://s3.example.org:9000`; empty: AWS S3 in `region`.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    /// Keys start with this (`sluice` -> `sluice/tenants/...`): one bucket, several uses.
    pub prefix: String,
    /// `https://endpoint/bucket/key` rather than `https://bucket.endpoint/key` (MinIO,
    /// SeaweedFS and most self-hosted stores want this).
    pub path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for BucketSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketSettings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("path_style", &self.path_style)
            .field("access_key_id", &(!self.access_key_id.is_empty()))
            .field("secret_access_key", &(!self.secret_access_key.is_empty()))
            .finish()
    }
}

impl BucketSettings {
    /// `s3://bucket/prefix` (at the endpoint, when one is set): how logs and errors name it.
    pub fn shown(&self) -> String {
        let mut shown = self.url();
        if !self.endpoint.is_empty() {
            shown = format!("{shown} at {}", self.endpoint);
        }
        shown
    }

    /// `s3://bucket/prefix` (`s3://bucket` without a prefix): the bucket and prefix, as
    /// `sluice migrate --storage` names them.
    pub fn url(&self) -> String {
        let prefix = self.prefix.trim_matches('/');
        match prefix {
            "" => format!("s3://{}", self.bucket.trim()),
            prefix => format!("s3://{}/{prefix}", self.bucket.trim()),
        }
    }
}

/// Where an object is, below the bucket's prefix: segments built only from parsed names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectKey(Vec<String>);

impl ObjectKey {
    /// A tenant's folder (`tenants/NAME/exports`); `folder` is one of sluice's own folder
    /// names, with `/` between a folder and its subfolder (`exports/photos`).
    pub fn folder(tenant: &TenantName, folder: &str) -> Self {
        let mut parts = vec!["tenants".to_owned(), tenant.as_str().to_owned()];
        parts.extend(folder.split('/').filter(|p| !p.is_empty()).map(str::to_owned));
        ObjectKey(parts)
    }

    /// Everything of a tenant's (`tenants/NAME`).
    pub fn tenant(tenant: &TenantName) -> Self {
        ObjectKey(vec!["tenants".to_owned(), tenant.as_str().to_owned()])
    }

    /// The folder every tenant's folder is in (`tenants`): listed, its subfolders are the
    /// names of the tenants that have files in the bucket.
    pub fn tenants() -> Self {
        ObjectKey(vec!["tenants".to_owned()])
    }

    /// A file in this folder.
    pub fn file(&self, name: &FileName) -> Self {
        let mut parts = self.0.clone();
        parts.push(name.as_str().to_owned());
        ObjectKey(parts)
    }

    /// This room's own keys (the health probe's folder).
    fn own(name: &str) -> Self {
        ObjectKey(vec![name.to_owned()])
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("/"))
    }
}

/// A file in the bucket, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub size: u64,
    pub modified: SystemTime,
    /// The store's tag of these bytes (for an object put in one request to S3 and most
    /// compatible stores: the MD5 of its bytes, in hex).
    pub e_tag: Option<String>,
}

/// A folder's files and subfolders, each sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub files: Vec<Entry>,
    pub folders: Vec<String>,
}

/// A file fetched from the bucket into an unnamed local file (gone when closed), read from
/// its start; its modification time is the object's.
#[derive(Debug)]
pub struct Fetched {
    pub file: File,
    pub entry: Entry,
}

/// An object being copied into an unnamed local file while it is read
/// ([`Bucket::read_arriving`]):
/// `file` is the object's size from the start (the rest of it a hole), and only what has
/// arrived may be read: [`Arrival::wait_for`] says when.
#[derive(Debug)]
pub struct Arriving {
    pub file: File,
    pub arrival: Arrival,
}

/// How far the copy of an object has come; the copy stops when this is dropped.
#[derive(Debug)]
pub struct Arrival {
    pub entry: Entry,
    progress: tokio::sync::watch::Receiver<Progress>,
    copying: tokio::task::AbortHandle,
    shown: String,
    counters: Arc<Counters>,
}

#[derive(Debug, Clone)]
enum Progress {
    /// This many bytes from the start are in the file.
    Arrived(u64),
    /// The copy broke off after this many bytes, for this reason.
    Broken(u64, Arc<str>),
}

impl Arrival {
    /// Waits until the file holds its first `end` bytes (or all of it, when it is shorter).
    pub async fn wait_for(&self, end: u64) -> FilesResult<()> {
        let end = end.min(self.entry.size);
        let mut progress = self.progress.clone();
        let seen = progress
            .wait_for(|p| match p {
                Progress::Arrived(n) => *n >= end,
                Progress::Broken(..) => true,
            })
            .await
            .map_err(|_| FilesError::Stopped(self.shown.clone()))?;
        match &*seen {
            Progress::Arrived(_) => Ok(()),
            // What arrived before the break can still be read.
            Progress::Broken(n, _) if *n >= end => Ok(()),
            Progress::Broken(_, why) => Err(FilesError::CopyBroken(why.to_string())),
        }
    }

    /// Whether the whole object is in the file.
    pub fn is_whole(&self) -> bool {
        matches!(&*self.progress.borrow(), Progress::Arrived(n) if *n >= self.entry.size)
    }
}

impl Drop for Arrival {
    fn drop(&mut self) {
        self.copying.abort();
        self.counters.copies_open.fetch_sub(1, Relaxed);
    }
}

/// How many times in a row a copy is taken up again where it broke off without a byte coming
/// in between, before its reader is told it failed.
const RESUMES: u32 = 3;

/// How long a copy may go without a byte before it is taken up again where it stopped.
const STALLED_AFTER: Duration = Duration::from_secs(30);

/// One object being copied into a local file ([`Bucket::read_arriving`]).
struct Copying {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    entry: Entry,
    failed: Failed,
    what: String,
    shown: String,
    key: String,
    stalled_after: Duration,
}

impl Copying {
    /// Writes the object's bytes into `copy` as they come, saying how far it has come. A
    /// stream that breaks off, stalls or reaches the client's time limit for one request (a
    /// large object on a slow line) is taken up again from where it stopped, for the same
    /// version of the object (`If-Match` its ETag); [`RESUMES`] times in a row without a byte
    /// between them, and the reader is told.
    async fn run(self, got: object_store::GetResult, copy: File, tell: tokio::sync::watch::Sender<Progress>) {
        let size = self.entry.size;
        let mut at = 0u64;
        let broken = |at: u64, e: FilesError| {
            tracing::warn!("{e}");
            tell.send_replace(Progress::Broken(at, e.to_string().into()));
        };
        let mut stream = got.into_stream();
        let mut resumed = 0;
        loop {
            let problem = match tokio::time::timeout(self.stalled_after, stream.next()).await {
                Ok(None) => break,
                Ok(Some(Ok(chunk))) => {
                    if at + chunk.len() as u64 > size {
                        let why = format!("the store sent more than the object's {size} bytes");
                        return broken(at, self.broke(why));
                    }
                    if let Err(source) = std::os::unix::fs::FileExt::write_all_at(&copy, &chunk, at) {
                        return broken(at, FilesError::Io { what: self.what.clone(), source });
                    }
                    at += chunk.len() as u64;
                    self.failed.counters.bytes_read.fetch_add(chunk.len() as u64, Relaxed);
                    if at == size {
                        // Writing moved the file's time: it is the object's again, before a
                        // reader waiting for the whole of it (and then dropping it) goes on.
                        let _ = copy.set_modified(self.entry.modified);
                    }
                    tell.send_replace(Progress::Arrived(at));
                    resumed = 0;
                    continue;
                }
                Ok(Some(Err(e))) => self.failed.at(e),
                Err(_) => self.broke(format!("no byte came for {} s", self.stalled_after.as_secs())),
            };
            if at == size {
                break;
            }
            resumed += 1;
            let Some(e_tag) = self.entry.e_tag.clone().filter(|_| resumed <= RESUMES) else {
                return broken(at, problem);
            };
            tracing::info!(key = %self.key, at, "taking the copy up again where it stopped: {problem}");
            let options = object_store::GetOptions {
                range: Some(object_store::GetRange::Offset(at)),
                if_match: Some(e_tag),
                ..Default::default()
            };
            match self.store.get_opts(&self.path, options).await {
                Ok(got) => stream = got.into_stream(),
                Err(e) => return broken(at, self.failed.at(e)),
            }
        }
        if at < size {
            let why = format!("the answer ended after {at} of {size} bytes");
            broken(at, self.broke(why));
        }
    }

    fn broke(&self, why: String) -> FilesError {
        self.failed.counters.failed_calls.fetch_add(1, Relaxed);
        FilesError::CopyBroken(format!("object storage ({}): reading {}: {why}", self.shown, self.key))
    }
}

/// What a bucket has done since the process started (`/metrics`).
#[derive(Debug, Default)]
struct Counters {
    failed_calls: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    copies_open: AtomicU64,
}

/// A bucket's counts at one moment ([`Bucket::counts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketCounts {
    /// Calls that ended in an error of the store's (or no answer in time).
    pub failed_calls: u64,
    /// Bytes copied out of the bucket (downloads, pushes, archives).
    pub bytes_read: u64,
    /// Bytes put into the bucket (exports, photos).
    pub bytes_written: u64,
    /// Objects being read through local copies now.
    pub copies_open: u64,
}

/// One bucket (and prefix in it).
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    prefix: Vec<String>,
    shown: String,
    /// `s3://bucket/prefix` ([`BucketSettings::url`]).
    url: String,
    /// Where the credentials came from, for errors that may be theirs.
    credentials: &'static str,
    counters: Arc<Counters>,
    /// How long a copy being read may go without a byte ([`STALLED_AFTER`]).
    stalled_after: Duration,
    /// Runs every call's I/O; shut down without waiting when the bucket is dropped (it may
    /// be dropped on another runtime's thread, where waiting is not allowed).
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket").field("shown", &self.shown).finish()
    }
}

impl Drop for Bucket {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Bucket {
    /// A client for an S3-compatible bucket. Nothing is sent yet: [`Bucket::check`] says
    /// whether it answers.
    pub fn open(settings: &BucketSettings) -> FilesResult<Self> {
        if settings.bucket.trim().is_empty() {
            return Err(FilesError::Settings(
                "bucket is not set: name the bucket sluice keeps files in".into(),
            ));
        }
        // reqwest's TLS takes the process's crypto provider: ring, as the rest of sluice.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Only the credentials come from the environment: the endpoint, region and the rest
        // are the configuration's (from_env would let AWS_ENDPOINT_URL_S3 or
        // AWS_SKIP_SIGNATURE quietly override them).
        let mut builder = object_store::aws::AmazonS3Builder::new();
        if settings.access_key_id.is_empty() {
            for (name, value) in std::env::vars().filter(|(n, _)| CREDENTIAL_VARIABLES.contains(&n.as_str()))
            {
                if let Ok(key) = name.to_ascii_lowercase().parse() {
                    builder = builder.with_config(key, value);
                }
            }
        }
        let region = match settings.region.trim() {
            "" => std::env::var("AWS_REGION")
                .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|_| "us-east-1".to_owned()),
            region => region.to_owned(),
        };
        builder = builder
            .with_region(region)
            .with_bucket_name(settings.bucket.trim())
            .with_virtual_hosted_style_request(!settings.path_style)
            .with_retry(object_store::RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(20),
                ..Default::default()
            })
            .with_client_options(
                object_store::ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(300)),
            );
        if !settings.endpoint.trim().is_empty() {
            let endpoint = settings.endpoint.trim();
            if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
                return Err(FilesError::Settings(format!(
                    "endpoint {endpoint:?} must start with https:// (or http:// on a private network)"
                )));
            }
            builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
        }
        match (settings.access_key_id.is_empty(), settings.secret_access_key.is_empty()) {
            (true, true) => {}
            (false, false) => {
                builder = builder
                    .with_access_key_id(&settings.access_key_id)
                    .with_secret_access_key(&settings.secret_access_key);
            }
            _ => {
                return Err(FilesError::Settings(
                    "access_key_id_file and secret_access_key_file go together: set both, or neither (then \
                     AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the machine's role, are used)"
                        .into(),
                ));
            }
        }
        if settings.access_key_id.is_empty() {
            let set = |n: &str| std::env::var(n).is_ok_and(|v| !v.is_empty());
            if set("AWS_ACCESS_KEY_ID") != set("AWS_SECRET_ACCESS_KEY") {
                return Err(FilesError::Settings(
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together: set both, or neither (then the \
                     machine's role is used)"
                        .into(),
                ));
            }
        }
        let store = builder.build().map_err(|e| FilesError::Settings(e.to_string()))?;
        let from_env = |n: &str| std::env::var(n).is_ok_and(|v| !v.is_empty());
        let credentials = if !settings.access_key_id.is_empty() {
            "the configured access_key_id_file and secret_access_key_file"
        } else if from_env("AWS_ACCESS_KEY_ID") {
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        } else if from_env("AWS_WEB_IDENTITY_TOKEN_FILE") {
            "the web identity in AWS_WEB_IDENTITY_TOKEN_FILE"
        } else {
            "none given (access_key_id_file and secret_access_key_file, or AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY), so the machine's role was asked"
        };
        let mut bucket = Self::over(Arc::new(store), &settings.prefix, &settings.shown());
        bucket.credentials = credentials;
        bucket.url = settings.url();
        Ok(bucket)
    }

    /// A bucket over any `object_store` adapter (a local directory, memory): the same calls,
    /// for the suite that every adapter passes.
    pub fn over(store: Arc<dyn ObjectStore>, prefix: &str, shown: &str) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sluice-bucket")
            .enable_all()
            .build()
            .ok();
        Bucket {
            store,
            prefix: prefix.split('/').filter(|p| !p.is_empty()).map(str::to_owned).collect(),
            shown: shown.to_owned(),
            url: shown.to_owned(),
            credentials: "the adapter's own",
            counters: Arc::default(),
            stalled_after: STALLED_AFTER,
            runtime,
        }
    }

    /// A copy being read that goes this long without a byte is taken up again where it
    /// stopped (tests shorten it; 30 s otherwise).
    pub fn with_stalled_after(mut self, after: Duration) -> Self {
        self.stalled_after = after;
        self
    }

    /// Where the credentials came from (for an error that may be theirs).
    pub fn credentials(&self) -> &str {
        self.credentials
    }

    /// What this bucket has done since it was opened.
    pub fn counts(&self) -> BucketCounts {
        let c = &self.counters;
        BucketCounts {
            failed_calls: c.failed_calls.load(Relaxed),
            bytes_read: c.bytes_read.load(Relaxed),
            bytes_written: c.bytes_written.load(Relaxed),
            copies_open: c.copies_open.load(Relaxed),
        }
    }

    /// The bucket and prefix (`s3://bucket/prefix`), as `sluice migrate --storage` names them.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How logs and errors name the bucket (`s3://bucket/prefix at endpoint`).
    pub fn shown(&self) -> &str {
        &self.shown
    }

    fn path(&self, key: &ObjectKey) -> ObjectPath {
        ObjectPath::from_iter(self.prefix.iter().chain(key.0.iter()).map(String::as_str))
    }

    fn failed(&self, what: impl Into<String>) -> Failed {
        Failed { bucket: self.shown.clone(), what: what.into(), counters: self.counters.clone() }
    }

    /// Runs `work` on this room's runtime and waits for it, from any thread: from a thread
    /// of a multi-threaded runtime, the wait is declared blocking so that runtime goes on.
    fn run<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = FilesResult<T>> + Send + 'static,
    ) -> FilesResult<T> {
        let Some(runtime) = &self.runtime else { return Err(FilesError::Stopped(self.shown.clone())) };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _ = tx.send(work.await);
        });
        let wait = || rx.recv().map_err(|_| FilesError::Stopped(self.shown.clone()))?;
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }

    /// [`Self::run`] with [`METADATA_DEADLINE`]: a store that does not answer in time is an error.
    fn run_briefly<T: Send + 'static>(
        &self,
        what: String,
        work: impl std::future::Future<Output = FilesResult<T>> + Send + 'static,
    ) -> FilesResult<T> {
        let bucket = self.shown.clone();
        let counters = self.counters.clone();
        self.run(async move {
            match tokio::time::timeout(METADATA_DEADLINE, work).await {
                Ok(done) => done,
                Err(_) => {
                    counters.failed_calls.fetch_add(1, Relaxed);
                    Err(FilesError::Store {
                        bucket,
                        what,
                        cause: object_store::Error::Generic {
                            store: "S3",
                            source: format!("no answer within {} s", METADATA_DEADLINE.as_secs()).into(),
                        },
                    })
                }
            }
        })
    }

    /// Puts the local file `from` at `key`, replacing what was there: readers see the old
    /// object or the new one, never a part. Returns the bytes sent.
    pub fn put_file(&self, key: &ObjectKey, from: &Path) -> FilesResult<u64> {
        let mut file = File::open(from)
            .map_err(|source| FilesError::Io { what: format!("reading {}", from.display()), source })?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let (store, path) = (self.store.clone(), self.path(key));
        let failed = self.failed(format!("putting {key}"));
        let local = from.display().to_string();
        let sent = self.run(async move {
            let read_err = |source| FilesError::Io { what: format!("reading {local}"), source };
            if size <= PART_BYTES as u64 {
                let mut bytes = Vec::with_capacity(size as usize);
                file.read_to_end(&mut bytes).map_err(read_err)?;
                let sent = bytes.len() as u64;
                store.put(&path, PutPayload::from(Bytes::from(bytes))).await.map_err(|e| failed.at(e))?;
                return Ok(sent);
            }
            let upload = store.put_multipart(&path).await.map_err(|e| failed.at(e))?;
            let mut parts = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
            let mut sent = 0u64;
            let mut buf = vec![0u8; PART_BYTES];
            loop {
                let n = match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => {
                        let _ = parts.abort().await;
                        return Err(read_err(e));
                    }
                };
                if let Err(e) = parts.wait_for_capacity(PARTS_IN_FLIGHT).await {
                    let _ = parts.abort().await;
                    return Err(failed.at(e));
                }
                parts.write(&buf[..n]);
                sent += n as u64;
            }
            parts.finish().await.map_err(|e| failed.at(e))?;
            Ok(sent)
        })?;
        self.counters.bytes_written.fetch_add(sent, Relaxed);
        Ok(sent)
    }

    /// Puts `bytes` at `key` in one request (small files sluice writes itself).
    pub fn put_bytes(&self, key: &ObjectKey, bytes: Vec<u8>) -> FilesResult<()> {
        let (store, path) = (self.store.clone(), self.path(key));
        let failed = self.failed(format!("putting {key}"));
        let sent = bytes.len() as u64;
        self.run(async move {
            store.put(&path, PutPayload::from(Bytes::from(bytes))).await.map_err(|e| failed.at(e))?;
            Ok(())
        })?;
        self.counters.bytes_written.fetch_add(sent, Relaxed);
        Ok(())
    }

    /// The object at `key`, to be read while it is copied into an unnamed file in `spool` (a
    /// private local folder), or `None` when there is none. Returns once the store has
    /// answered (in [`METADATA_DEADLINE`]); the copy goes on on this room's runtime until it
    /// is whole, breaks off, or the [`Arrival`] is dropped. The copy is of one version of
    /// the object: one replaced meanwhile does not change under its reader.
    pub fn read_arriving(&self, key: &ObjectKey, spool: &Path) -> FilesResult<Option<Arriving>> {
        let (store, path) = (self.store.clone(), self.path(key));
        let failed = self.failed(format!("reading {key}"));
        let (asked, at_path) = (store.clone(), path.clone());
        let got = self.run_briefly(format!("reading {key}"), async move {
            match asked.get(&at_path).await {
                Ok(got) => Ok(Some(got)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(failed.at(e)),
            }
        })?;
        let Some(got) = got else { return Ok(None) };
        let entry = entry_of(&got.meta);
        let what = format!("copying {key} into {}", spool.display());
        let io = |source| FilesError::Io { what: what.clone(), source };
        std::fs::create_dir_all(spool).map_err(io)?;
        let file = tempfile::tempfile_in(spool).map_err(io)?;
        // Its size and time from the start, as the client is told (a read waits for its part).
        file.set_len(entry.size).map_err(io)?;
        file.set_modified(entry.modified).map_err(io)?;
        let copy = file.try_clone().map_err(io)?;
        let (tell, progress) = tokio::sync::watch::channel(Progress::Arrived(0));
        let Some(runtime) = &self.runtime else { return Err(FilesError::Stopped(self.shown.clone())) };
        let copying = Copying {
            store,
            path,
            entry: entry.clone(),
            failed: self.failed(format!("reading {key}")),
            what,
            shown: self.shown.clone(),
            key: key.to_string(),
            stalled_after: self.stalled_after,
        };
        let copying = runtime.spawn(copying.run(got, copy, tell));
        self.counters.copies_open.fetch_add(1, Relaxed);
        let arrival = Arrival {
            entry,
            progress,
            copying: copying.abort_handle(),
            shown: self.shown.clone(),
            counters: self.counters.clone(),
        };
        Ok(Some(Arriving { file, arrival }))
    }

    /// The object at `key` copied into an unnamed file in `spool` (a private local folder),
    /// or `None` when there is none.
    pub fn fetch(&self, key: &ObjectKey, spool: &Path) -> FilesResult<Option<Fetched>> {
        let Some(Arriving { file, arrival }) = self.read_arriving(key, spool)? else { return Ok(None) };
        let entry = arrival.entry.clone();
        self.run(async move { arrival.wait_for(u64::MAX).await })?;
        Ok(Some(Fetched { file, entry }))
    }

    /// The object at `key`, as listed, or `None`.
    pub fn head(&self, key: &ObjectKey) -> FilesResult<Option<Entry>> {
        let (store, path) = (self.store.clone(), self.path(key));
        let failed = self.failed(format!("looking up {key}"));
        self.run_briefly(format!("looking up {key}"), async move {
            match store.head(&path).await {
                Ok(meta) => Ok(Some(entry_of(&meta))),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(failed.at(e)),
            }
        })
    }

    /// The files and subfolders directly in `folder`.
    pub fn list(&self, folder: &ObjectKey) -> FilesResult<Listing> {
        let (store, path) = (self.store.clone(), self.path(folder));
        let failed = self.failed(format!("listing {folder}"));
        self.run_briefly(format!("listing {folder}"), async move {
            let found = store.list_with_delimiter(Some(&path)).await.map_err(|e| failed.at(e))?;
            let mut listing = Listing {
                // Some stores (SeaweedFS) list an emptied folder's own marker in it: not a file.
                files: found.objects.iter().filter(|o| o.location != path).map(entry_of).collect(),
                folders: found.common_prefixes.iter().filter_map(|p| p.filename().map(decoded)).collect(),
            };
            listing.files.sort_by(|a, b| a.name.cmp(&b.name));
            listing.folders.sort();
            Ok(listing)
        })
    }

    /// Removes the object at `key`; removing one that is not there is not an error.
    pub fn delete(&self, key: &ObjectKey) -> FilesResult<()> {
        let (store, path) = (self.store.clone(), self.path(key));
        let failed = self.failed(format!("removing {key}"));
        self.run_briefly(format!("removing {key}"), async move {
            match store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(failed.at(e)),
            }
        })
    }

    /// Removes every object under `folder` (a tenant's files, when it is removed); returns
    /// how many.
    pub fn delete_under(&self, folder: &ObjectKey) -> FilesResult<usize> {
        let (store, path) = (self.store.clone(), self.path(folder));
        let failed = self.failed(format!("removing everything under {folder}"));
        self.run(async move {
            let mut removed = 0;
            let mut found = store.list(Some(&path));
            while let Some(meta) = found.next().await {
                let meta = meta.map_err(|e| failed.at(e))?;
                match store.delete(&meta.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => removed += 1,
                    Err(e) => return Err(failed.at(e)),
                }
            }
            Ok(removed)
        })
    }

    /// Whether the bucket answers and lets sluice list it (what `/healthz` and `sluice
    /// doctor` ask).
    pub fn check(&self) -> FilesResult<()> {
        self.list(&ObjectKey::own(".sluice-health")).map(|_| ())
    }

    /// Whether sluice may also write and remove objects under its prefix (a small object
    /// put and removed again): what moving exports into the bucket and `sluice doctor` ask,
    /// so that credentials that only read are found before anything is moved.
    pub fn check_writable(&self) -> FilesResult<()> {
        let probe = ObjectKey::own(".sluice-health").file(
            &FileName::parse("write-check")
                .map_err(|_| FilesError::Settings("the probe's name is not a file name".into()))?,
        );
        self.put_bytes(&probe, b"sluice checks that it may write here\n".to_vec())?;
        self.delete(&probe)
    }
}

/// What a call was doing, for its error.
struct Failed {
    bucket: String,
    what: String,
    counters: Arc<Counters>,
}

impl Failed {
    fn at(&self, source: object_store::Error) -> FilesError {
        self.counters.failed_calls.fetch_add(1, Relaxed);
        FilesError::Store { bucket: self.bucket.clone(), what: self.what.clone(), cause: source }
    }
}

/// The innermost cause of an error: "Connection refused", a store's "SignatureDoesNotMatch".
fn root_cause(e: &object_store::Error) -> String {
    let mut last: &dyn std::error::Error = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

fn entry_of(meta: &object_store::ObjectMeta) -> Entry {
    Entry {
        name: meta.location.filename().map(decoded).unwrap_or_default(),
        size: meta.size,
        modified: SystemTime::from(meta.last_modified),
        e_tag: meta.e_tag.as_ref().map(|t| t.trim_matches('"').to_owned()),
    }
}

/// A key segment as it was named (`object_store` percent-encodes what S3 keys should not hold).
fn decoded(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment).decode_utf8_lossy().into_owned()
}
