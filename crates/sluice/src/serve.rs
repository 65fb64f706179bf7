//! `sluice serve`: everything in one process.

use crate::config::Config;
use crate::hostkey;
use anyhow::{Context, Result};
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
    let ingest =
        Arc::new(dirs.ingest(store.clone(), types)?.with_archive(&dirs.root, config.imports.archive_days));
    ingest.recover()?;
    let uploaded = Arc::new(Notify::new());
    let shared = Arc::new(SftpShared {
        store: store.clone(),
        spool: dirs.upload_spool(),
        limits: config.sftp_limits(),
        uploaded: uploaded.clone(),
    });
    let server = Arc::new(SftpServer::new(shared, dirs.tenants(), host_key, config.ssh_settings()));
    let listener = tokio::net::TcpListener::bind(config.sftp.listen)
        .await
        .with_context(|| format!("cannot listen for SFTP on {}", config.sftp.listen))?;
    let bound = listener.local_addr()?;
    info!(data_dir = %config.data_dir.display(), compat = config.sftp.compat, "sluice {} starting", env!("CARGO_PKG_VERSION"));
    // Scripts and tests read this line to learn the port when listening on port 0.
    announce(&format!("sftp listening on {bound}"));
    if store.tenants()?.is_empty() {
        announce(&format!(
            "No tenants yet. Create one and give it a password:\n  sluice --data-dir {dir} tenant add acme\n  sluice --data-dir {dir} tenant passwd acme\nthen connect: sftp -P {port} acme@{host}",
            dir = config.data_dir.display(),
            port = bound.port(),
            host = bound.ip()
        ));
    }
    let stop_worker = Arc::new(Notify::new());
    let worker = {
        let stop = stop_worker.clone();
        tokio::spawn(ingest.run_worker(uploaded, async move { stop.notified().await }))
    };
    server.serve(listener, shutdown).await;
    stop_worker.notify_one();
    let _ = worker.await;
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
