//! The data directory: where things live under it, and the only two ways it comes to exist
//! (`sluice serve`, `sluice tenant add`).

use anyhow::{Context, Result, bail};
use sluice_store::{Settling, SharedStore, Store};
use std::path::{Path, PathBuf};

/// Where things live under the data directory, and the database: SQLite's file in it, or
/// the PostgreSQL database `[database] url` names.
#[derive(Clone)]
pub struct DataDirs {
    pub root: PathBuf,
    /// `[database] url` (never printed: it may carry a password).
    database_url: Option<String>,
    /// `[storage] backend = "s3"`: the bucket tenants' exports are kept in.
    bucket: Option<std::sync::Arc<sluice_files::Bucket>>,
    /// `[imports] types_dir`: with the presets, the types whose records
    /// [`Self::settle_layouts`] keeps in their columns' order.
    types_dir: Option<PathBuf>,
    /// `sluice migrate --storage` is moving exports from the disk into the bucket: the data
    /// directory is neither checked against the bucket nor marked until it is done.
    moving_exports: bool,
}

impl std::fmt::Debug for DataDirs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataDirs")
            .field("root", &self.root)
            .field("postgres", &self.database_url.is_some())
            .field("bucket", &self.bucket.as_ref().map(|b| b.shown().to_owned()))
            .finish()
    }
}

impl DataDirs {
    /// The data directory, made absolute once here: paths the database keeps (a held import's
    /// file, an error report) then do not depend on the directory a command was run from.
    pub fn new(root: &Path) -> Self {
        Self {
            root: std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf()),
            database_url: None,
            bucket: None,
            types_dir: None,
            moving_exports: false,
        }
    }

    /// The data directory, the database and the bucket of `config`.
    pub fn of(config: &crate::config::Config) -> Result<Self> {
        let dirs = Self { moving_exports: false, ..Self::of_moving_exports(config)? };
        dirs.check_bucket_marker()?;
        Ok(dirs)
    }

    /// [`Self::of`] for `sluice migrate --storage`, which copies exports still on the local
    /// disk into the bucket: the data directory is neither checked against the bucket nor
    /// marked as keeping exports there (the move marks it when it is done).
    pub fn of_moving_exports(config: &crate::config::Config) -> Result<Self> {
        let bucket = match config.storage.bucket()? {
            Some(settings) => Some(std::sync::Arc::new(sluice_files::Bucket::open(&settings)?)),
            None => None,
        };
        Ok(Self {
            database_url: config.database.url()?,
            bucket,
            types_dir: config.imports.types_dir().map(Path::to_path_buf),
            moving_exports: true,
            ..Self::new(&config.data_dir)
        })
    }

    /// Written in a data directory whose servers keep tenants' exports in a bucket: a command
    /// run without the `[storage]` settings then refuses, instead of writing exports where no
    /// district will ever see them.
    fn bucket_marker(&self) -> PathBuf {
        self.root.join("EXPORTS-IN-BUCKET")
    }

    fn check_bucket_marker(&self) -> Result<()> {
        if self.moving_exports {
            return Ok(());
        }
        if let (Some(bucket), true) = (&self.bucket, self.exports_place()?) {
            self.mark_exports_in_bucket(bucket)?;
        }
        Ok(())
    }

    /// Whether the `[storage]` settings agree with where this data directory keeps tenants'
    /// exports, changing nothing (`sluice doctor` asks this too). `Ok(true)`: the settings keep
    /// exports in a bucket, the directory is not marked yet, and nothing on its disk would be
    /// hidden by marking it. Refused: a directory marked for a bucket, and no `[storage]` or
    /// another bucket or prefix in the settings (exports written where no district would see
    /// them, or districts seeing another folder's); `[storage]` on a directory whose exports
    /// are still on its disk (they would vanish from the districts' `/exports`).
    pub(crate) fn exports_place(&self) -> Result<bool> {
        let marker = self.bucket_marker();
        let marked = self.marked_bucket_url();
        match (&self.bucket, marked) {
            (None, Some(_)) => bail!(
                "the data directory {} keeps tenants' exports in object storage ({}): give this command the \
                 same [storage] settings (--config, or SLUICE_STORAGE_BACKEND=s3 and the others); nothing was \
                 changed. To keep exports on the local disk again, copy them out of the bucket into \
                 tenants/NAME/exports/ and remove {}",
                self.root.display(),
                std::fs::read_to_string(&marker).unwrap_or_default().lines().next().unwrap_or_default(),
                marker.display()
            ),
            (None, None) => Ok(false),
            (Some(bucket), Some(url)) if url != bucket.url() => bail!(
                "the data directory {} keeps tenants' exports in {url} (EXPORTS-IN-BUCKET), but [storage] names {}: \
                 give every server and command the same bucket and prefix (the endpoint may differ between \
                 nodes); nothing was changed",
                self.root.display(),
                bucket.url()
            ),
            (Some(_), Some(_)) => Ok(false),
            (Some(_), None) if !self.root.is_dir() => Ok(false),
            (Some(bucket), None) => {
                // Exports still on the disk would vanish from the tenants' /exports.
                let tenants = self.tenants();
                let on_disk = self
                    .exports()
                    .first_on_disk()
                    .with_context(|| format!("cannot look for exports in {}", tenants.display()))?;
                if let Some(path) = on_disk {
                    bail!(
                        "[storage] keeps tenants' exports in {}, but the data directory {} has exports on the local \
                         disk ({}, maybe more), which its tenants would no longer see: stop the server and copy them \
                         into the bucket with `sluice migrate --storage {}` (with the same settings), or leave \
                         [storage] out to keep exports on the disk; nothing was changed",
                        bucket.shown(),
                        self.root.display(),
                        path.display(),
                        bucket.url()
                    );
                }
                Ok(true)
            }
        }
    }

    /// The bucket and prefix (`s3://bucket/prefix`) the data directory is marked as keeping
    /// exports in, if it is (the marker's first line is the bucket as shown: `URL at ENDPOINT`).
    pub(crate) fn marked_bucket_url(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.bucket_marker()).ok()?;
        let first = text.lines().next().unwrap_or_default();
        Some(first.split(" at ").next().unwrap_or_default().trim().to_owned())
    }

    /// Marks the data directory as keeping tenants' exports in `bucket` (see `bucket_marker`).
    pub(crate) fn mark_exports_in_bucket(&self, bucket: &sluice_files::Bucket) -> Result<()> {
        let marker = self.bucket_marker();
        std::fs::write(&marker, format!("{}\n", bucket.shown()))
            .with_context(|| format!("cannot write {}", marker.display()))
    }

    /// Whether the data directory is marked as keeping tenants' exports in a bucket.
    pub(crate) fn marked_exports_in_bucket(&self) -> bool {
        self.marked_bucket_url().is_some()
    }

    /// The bucket tenants' exports are kept in (`[storage] backend = "s3"`), if any.
    pub fn bucket(&self) -> Option<&std::sync::Arc<sluice_files::Bucket>> {
        self.bucket.as_ref()
    }

    /// Whether the state is in PostgreSQL (`[database] url`) rather than in `sluice.db`.
    pub fn on_postgres(&self) -> bool {
        self.database_url.is_some()
    }
    pub fn database(&self) -> PathBuf {
        self.root.join("sluice.db")
    }
    pub fn tenants(&self) -> PathBuf {
        self.root.join("tenants")
    }
    /// Uploads in flight: private, outside every tenant's tree, same filesystem.
    pub fn upload_spool(&self) -> PathBuf {
        self.root.join("spool").join("uploads")
    }
    /// Each running server's owner file, locked for its life (`sluice_core::spool`).
    pub fn spool_owners(&self) -> PathBuf {
        self.root.join("spool").join("owners")
    }
    /// Each upload's own bytes, from its close to its import (made by the SFTP server,
    /// taken by the import worker).
    pub fn upload_snapshots(&self) -> PathBuf {
        sluice_ingest::snapshots_dir(&self.root)
    }
    /// Exports being written: private, on the tenants' filesystem, renamed into place when whole.
    pub fn export_spool(&self) -> PathBuf {
        self.root.join("spool").join("exports")
    }
    /// Copies of files read from the bucket while clients download them (unnamed files).
    pub fn read_spool(&self) -> PathBuf {
        self.root.join("spool").join("reads")
    }
    /// Records' photos: one image store per tenant (`photos/TENANT/SHA256.jpg`), private.
    pub fn photos(&self) -> PathBuf {
        self.root.join("photos")
    }
    /// Where exports go (each tenant's `/exports`, through the export spool).
    pub fn exports(&self) -> sluice_export::Exports {
        sluice_export::Exports::new(&self.tenants(), &self.export_spool())
            .with_photos(&self.photos())
            .in_bucket(self.bucket.clone())
    }
    /// What pushes files to tenants' connectors: the secret key (made on first use; it also
    /// seals accounts' second factors), the connectors' lock files beside the tenants' import
    /// locks.
    pub fn transfers(&self, config: &crate::config::Config) -> Result<sluice_connect::Transfers> {
        self.transfers_of(config, &*self.open_store()?)
    }

    /// [`Self::transfers`], asking `store` (the server's, already open) whether a credential
    /// is sealed.
    pub fn transfers_of(
        &self,
        config: &crate::config::Config,
        store: &dyn sluice_store::Backend,
    ) -> Result<sluice_connect::Transfers> {
        let path = config.secret_key_file();
        // A missing key is made only while no credential is sealed: a new one opens none.
        let may_create = !path.exists() && !store.any_connectors()? && !store.any_second_factor()?;
        let key = sluice_connect::SecretKey::load_or_create(&path, may_create)?;
        Ok(sluice_connect::Transfers {
            key,
            locks: self.root.join("spool").join("locks"),
            retry: sluice_connect::Retry::default(),
            settle: std::time::Duration::from_secs(config.connectors.settle_secs),
        })
    }
    pub fn host_key(&self) -> PathBuf {
        self.root.join("ssh_host_ed25519_key")
    }

    /// Creates the layout, private to sluice's user (new files and directories are private
    /// by the umask `main` sets). A data directory, database or host key that an older
    /// version left readable to others (0755, 0644) is closed here, before the database is
    /// opened: SQLite gives its WAL and SHM files the database's mode.
    pub fn create(&self) -> Result<()> {
        for dir in [self.root.clone(), self.tenants(), self.upload_spool()] {
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        self.check_bucket_marker()?;
        let database = self.database().into_os_string();
        let wal = PathBuf::from(format!("{}-wal", database.to_string_lossy()));
        let shm = PathBuf::from(format!("{}-shm", database.to_string_lossy()));
        for path in [self.root.clone(), PathBuf::from(&database), wal, shm, self.host_key()] {
            close_to_others(&path)?;
        }
        Ok(())
    }

    /// The import service on this data directory, with the `[imports]` settings.
    pub fn ingest(
        &self,
        store: SharedStore,
        types: sluice_core::import::ImportTypes,
        settings: &crate::config::ImportsConfig,
    ) -> Result<sluice_ingest::Ingest> {
        self.ingest_keeping_audit(store, types, settings, 0)
    }

    /// [`Self::ingest`], purging audit entries older than `audit_days` (0: never) hourly.
    pub fn ingest_keeping_audit(
        &self,
        store: SharedStore,
        types: sluice_core::import::ImportTypes,
        settings: &crate::config::ImportsConfig,
        audit_days: u32,
    ) -> Result<sluice_ingest::Ingest> {
        Ok(sluice_ingest::Ingest::new(store, types, &self.root)
            .with_context(|| format!("cannot create the import directories under {}", self.root.display()))?
            .with_archive(&self.root, settings.archive_days)
            .with_error_report_days(settings.error_report_days)
            .with_audit_days(audit_days)
            .with_duplicate_window(std::time::Duration::from_secs(settings.duplicate_window_secs)))
    }

    /// Opens the database of an existing data directory. Only `sluice serve` and `sluice
    /// tenant add` create one ([`Self::create_store`]): any other command run from the wrong
    /// directory says where it looked instead of leaving an empty `./sluice-data` behind.
    /// The store of an existing deployment: PostgreSQL's, or the data directory's SQLite
    /// database (which must be there: nothing is created).
    pub fn open_store(&self) -> Result<SharedStore> {
        if self.database_url.is_some() {
            return self.create_store();
        }
        let store: SharedStore = std::sync::Arc::new(self.open_sqlite()?);
        self.settle_layouts(&store, Settling::RememberOnly)?;
        Ok(store)
    }

    /// Keeps the records of the CSV types this binary knows in their columns' current order
    /// (`Records::settle_layouts`): after a type's TOML gained, moved or lost a column, the
    /// server rewrites its records as it starts, and says so, before anything reads them in
    /// the wrong order (`settling`: a command only remembers new types, and refuses while a
    /// type's records wait for that rewrite: a server may run with the old columns). Types
    /// that do not load are left to the command that needs them to report.
    pub(crate) fn settle_layouts(&self, store: &SharedStore, settling: Settling) -> Result<()> {
        let Ok(types) = crate::types::load(self.types_dir.as_deref()) else { return Ok(()) };
        let csv: Vec<&sluice_core::import::ImportType> = types
            .all()
            .iter()
            .filter(|t| t.format == sluice_core::import::TypeFormat::Csv && !t.columns.is_empty())
            .collect();
        for relaid in store.settle_layouts(&csv, settling)? {
            tracing::warn!("{}", relaid.sentence());
        }
        Ok(())
    }

    /// The data directory's SQLite database, which must exist (what is SQLite's alone: backups).
    pub fn open_sqlite(&self) -> Result<Store> {
        self.refuse_sqlite_if_on_postgres()?;
        // The database, not only a directory: an existing folder that is not a data directory
        // (an empty one, or `tenants/` one level too deep) is not made into one.
        if !self.database().is_file() {
            let looked = std::path::absolute(&self.root).unwrap_or_else(|_| self.root.clone());
            bail!(
                "there is no sluice data directory at {} (no sluice.db there; nothing was created): `sluice serve` or \
                 `sluice tenant add` creates one; to use another, pass --data-dir DIR, set SLUICE_DATA_DIR or data_dir \
                 in the config file",
                looked.display()
            );
        }
        self.create_sqlite()
    }

    /// Written in a data directory whose state is in PostgreSQL by the first server or command
    /// that opened it with `[database] url`: a server or command without the url then refuses,
    /// instead of starting an empty SQLite database beside the real state.
    fn postgres_marker(&self) -> PathBuf {
        self.root.join("STATE-IN-POSTGRESQL")
    }

    pub(crate) fn refuse_sqlite_if_on_postgres(&self) -> Result<()> {
        if self.postgres_marker().exists() {
            bail!(
                "the data directory {} keeps its state in PostgreSQL (its servers run with [database] url): \
                 give this command the same database, with SLUICE_DATABASE_URL, or [database] url or url_file \
                 in the config file (--config); nothing was changed",
                self.root.display()
            );
        }
        Ok(())
    }

    /// The lock a `sluice serve` of this data directory holds for as long as it runs (the OS
    /// lets go of it when the process ends, however it ends). On SQLite it is exclusive: a
    /// second server on the same database would run every schedule and import twice. On
    /// PostgreSQL it is shared: servers on one database share the work and this data directory
    /// (a shared filesystem), and a server on SQLite cannot join them.
    pub fn lock_for_serving(&self) -> Result<std::fs::File> {
        let (file, path) = self.serve_lock_file()?;
        let shared = self.database_url.is_some();
        if !shared {
            self.refuse_sqlite_if_on_postgres()?;
        }
        let locked = if shared { file.try_lock_shared() } else { file.try_lock() };
        match locked {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if shared => anyhow::bail!(
                "a `sluice serve` keeping its state in SQLite is running on the data directory {}: \
                 servers share a data directory only on PostgreSQL; stop it, or give this one its own \
                 SLUICE_DATA_DIR",
                self.root.display()
            ),
            Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                "another `sluice serve` is running on the data directory {}: on SQLite one data \
                 directory serves one server (several servers share the work on one PostgreSQL \
                 database, [database] url, and one data directory on a shared filesystem); stop the \
                 other one, or give this one its own SLUICE_DATA_DIR",
                self.root.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }

    fn serve_lock_file(&self) -> Result<(std::fs::File, PathBuf)> {
        self.create()?;
        let path = self.root.join("serve.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok((file, path))
    }

    /// The serve lock, held exclusively while a state is moved out (`sluice migrate`): no
    /// server may run meanwhile.
    pub(crate) fn lock_for_moving(&self) -> Result<std::fs::File> {
        let (file, path) = self.serve_lock_file()?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "a `sluice serve` is running on the data directory {}: stop it first (systemctl stop sluice), \
                 then run sluice migrate again; nothing was changed",
                self.root.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }

    /// Whether a server or command opened this data directory on PostgreSQL (see
    /// `postgres_marker`).
    pub(crate) fn marked_on_postgres(&self) -> bool {
        self.postgres_marker().exists()
    }

    /// Creates the data directory if it does not exist, and opens its database.
    pub fn create_store(&self) -> Result<SharedStore> {
        self.create_store_settling(Settling::RememberOnly)
    }

    /// [`Self::create_store`], the records of types whose columns changed rewritten as
    /// `settling` allows (the server, as it starts).
    pub fn create_store_settling(&self, settling: Settling) -> Result<SharedStore> {
        let store = self.create_store_unsettled()?;
        self.settle_layouts(&store, settling)?;
        Ok(store)
    }

    /// The store, its records' layouts not looked at (`sluice doctor`, which reports them).
    pub(crate) fn create_store_unsettled(&self) -> Result<SharedStore> {
        self.create()?;
        match &self.database_url {
            // Its schema is brought up to date on connect. What failed is said without the URL.
            Some(url) => {
                // A SQLite state here is not silently left behind (nor marked as moved).
                if self.database().is_file() {
                    bail!(
                        "[database] url is set, but the data directory {} keeps its state in SQLite ({}): \
                         unset the url (SLUICE_DATABASE_URL) to use SQLite's; to move that state into PostgreSQL, \
                         stop the server and run `sluice migrate --to URL` (without the url set); nothing was changed",
                        self.root.display(),
                        self.database().display()
                    );
                }
                let store = sluice_store_pg::PgStore::connect(url)
                    .context("cannot open the PostgreSQL database of [database] url (SLUICE_DATABASE_URL)")?;
                self.mark_as_on_postgres()?;
                Ok(std::sync::Arc::new(store))
            }
            None => Ok(std::sync::Arc::new(self.create_sqlite()?)),
        }
    }

    pub(crate) fn mark_as_on_postgres(&self) -> Result<()> {
        let path = self.postgres_marker();
        let note = "This data directory's state is in PostgreSQL ([database] url). Every sluice server \
                    and command on it needs the same url (SLUICE_DATABASE_URL, or [database] url or url_file).\n";
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut file) => {
                use std::io::Write;
                file.write_all(note.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
        }
    }

    fn create_sqlite(&self) -> Result<Store> {
        self.refuse_sqlite_if_on_postgres()?;
        self.create()?;
        Store::open(&self.database())
            .with_context(|| format!("cannot open database {}", self.database().display()))
    }
}

/// Takes group and other permissions off `path` if it has any (and exists).
fn close_to_others(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = match std::fs::metadata(path) {
        Ok(meta) => meta.permissions().mode(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read the permissions of {}", path.display()));
        }
    };
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & !0o077)).with_context(|| {
            format!(
                "{} is readable by others (mode {:o}) and cannot be made private; run sluice as its owner, or chmod go= it",
                path.display(),
                mode & 0o7777
            )
        })?;
    }
    Ok(())
}
