//! `sluice serve`: everything in one process.

use crate::config::Config;
use crate::hostkey;
use anyhow::{Context, Result};
use sluice_core::metrics::Metrics;
use sluice_sftp::{SftpServer, SftpShared};
use sluice_store::Store;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Notify;
use tracing::info;

/// Where things live under the data directory.
pub struct DataDirs {
    pub root: PathBuf,
}

impl DataDirs {
    pub fn new(root: &Path) -> Self {
        Self { root: root.to_path_buf() }
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
    pub fn host_key(&self) -> PathBuf {
        self.root.join("ssh_host_ed25519_key")
    }

    pub fn create(&self) -> Result<()> {
        for dir in [self.root.clone(), self.tenants(), self.upload_spool()] {
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        Ok(())
    }

    pub fn ingest(
        &self,
        store: Arc<Store>,
        types: sluice_core::import::ImportTypes,
    ) -> Result<sluice_ingest::Ingest> {
        sluice_ingest::Ingest::new(store, types, &self.root)
            .with_context(|| format!("cannot create the import directories under {}", self.root.display()))
    }

    pub fn open_store(&self) -> Result<Store> {
        self.create()?;
        Store::open(&self.database())
            .with_context(|| format!("cannot open database {}", self.database().display()))
    }
}

pub async fn run(config: Config) -> Result<()> {
    // Install signal handlers before announcing anything, so an early SIGTERM is clean too.
    let shutdown = shutdown_signal()?;
    let dirs = DataDirs::new(&config.data_dir);
    let store = Arc::new(dirs.open_store()?);
    // Uploads that were in flight when the last process stopped can never complete.
    for entry in std::fs::read_dir(dirs.upload_spool())?.flatten() {
        let _ = std::fs::remove_file(entry.path());
    }
    let host_key = hostkey::load_or_generate(&dirs.host_key())?;
    let types = crate::types::load(config.imports.types_dir())?;
    let metrics = Arc::new(Metrics::default());
    // One defender for SFTP and the dashboard: guessing on one counts on the other.
    let defender = sluice_defender::Defender::open(config.defender.rules()?, store.clone(), metrics.clone())
        .context("cannot read the defender's bans")?;
    let notify = Arc::new(Notify::new());
    let ingest = Arc::new(
        dirs.ingest(store.clone(), types)?
            .with_archive(&dirs.root, config.imports.archive_days)
            .with_metrics(metrics.clone())
            .with_notifier(notify.clone()),
    );
    let notifier = Arc::new(sluice_notify::Notifier {
        store: store.clone(),
        smtp: config.notifications.smtp()?,
        allow_private_webhooks: config.notifications.allow_private_webhooks,
    });
    ingest.recover()?;
    let uploaded = Arc::new(Notify::new());
    let shared = Arc::new(SftpShared {
        store: store.clone(),
        spool: dirs.upload_spool(),
        limits: config.sftp_limits(),
        uploaded: uploaded.clone(),
        metrics: metrics.clone(),
    });
    let server = Arc::new(SftpServer::new(shared, dirs.tenants(), host_key, config.ssh_settings()));
    let listener = tokio::net::TcpListener::bind(config.sftp.listen)
        .await
        .with_context(|| format!("cannot listen for SFTP on {}", config.sftp.listen))?;
    let bound = listener.local_addr()?;
    info!(data_dir = %config.data_dir.display(), compat = config.sftp.compat, "sluice {} starting", env!("CARGO_PKG_VERSION"));
    let http_listener = tokio::net::TcpListener::bind(config.http.listen).await.with_context(|| {
        format!("cannot listen for HTTP on {} ([http] listen, --http-listen)", config.http.listen)
    })?;
    let http_bound = http_listener.local_addr()?;
    let http_tls = config.http.tls()?;
    let scheme = if http_tls.is_some() { "https" } else { "http" };
    // Scripts and tests read these lines to learn the ports when listening on port 0.
    announce(&format!("sftp listening on {bound}"));
    announce(&format!("http listening on {http_bound} ({scheme})"));
    if store.account_by_email(crate::cli::ADMIN)?.is_none() {
        // The operator's first login, shown once; `sluice admin passwd` sets another.
        let (token, ..) = sluice_web::keys::generate().context("cannot read random bytes")?;
        let password = &token[4..24];
        store.add_account(
            None,
            crate::cli::ADMIN,
            sluice_store::Role::Admin,
            sluice_core::PasswordHash::create(password)?.as_phc(),
        )?;
        announce(&format!(
            "dashboard: {scheme}://{http_bound}/ log in as {} with password {password} (shown once; change it with `sluice admin passwd`)",
            crate::cli::ADMIN
        ));
    }
    if store.tenants()?.is_empty() {
        announce(&format!(
            "No tenants yet. Create one and give it a password:\n  sluice --data-dir {dir} tenant add acme\n  sluice --data-dir {dir} tenant passwd acme\nthen connect: sftp -P {port} acme@{host}",
            dir = config.data_dir.display(),
            port = bound.port(),
            host = bound.ip()
        ));
    }
    let stop_http = Arc::new(Notify::new());
    let http = {
        let stop = stop_http.clone();
        let mut web = sluice_web::Web::new(ingest.clone(), metrics.clone(), sluice_sftp::parse_public_key);
        web.secure_cookies = config.http.secure_cookies;
        web.trusted_proxies = config.http.trusted_proxies()?.into();
        web.defender = defender.clone();
        tokio::spawn(sluice_web::serve(http_listener, web, http_tls, async move { stop.notified().await }))
    };
    let stop_notifier = Arc::new(Notify::new());
    let notifications = {
        let stop = stop_notifier.clone();
        tokio::spawn(notifier.run(notify, async move { stop.notified().await }))
    };
    let stop_defender = Arc::new(Notify::new());
    let keeper = {
        let stop = stop_defender.clone();
        tokio::spawn(defender.clone().run(async move { stop.notified().await }))
    };
    let stop_worker = Arc::new(Notify::new());
    let worker = {
        let stop = stop_worker.clone();
        tokio::spawn(ingest.run_worker(uploaded, async move { stop.notified().await }))
    };
    server.serve(listener, shutdown).await;
    stop_http.notify_one();
    stop_worker.notify_one();
    stop_notifier.notify_one();
    let _ = notifications.await;
    match http.await {
        Ok(Err(e)) => tracing::warn!("http server: {e}"),
        Err(e) => tracing::warn!("http server task: {e}"),
        Ok(Ok(())) => {}
    }
    let _ = worker.await;
    // Last: saves the bans the front doors made until they closed.
    stop_defender.notify_one();
    let _ = keeper.await;
    info!("sluice stopped");
    Ok(())
}

/// Prints to stdout for operators and scripts; a closed stdout must not stop the server.
fn announce(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => info!("SIGINT received"),
            _ = term.recv() => info!("SIGTERM received"),
        }
    })
}
