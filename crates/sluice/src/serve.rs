//! `sluice serve`: everything in one process.

use crate::config::Config;
use crate::dirs::DataDirs;
use crate::hostkey;
use anyhow::{Context, Result};
use sluice_core::metrics::Metrics;
use sluice_sftp::{SftpServer, SftpShared};
use std::sync::Arc;
use tokio::sync::Notify;
use tracing::info;

/// Serves `dirs` (the data directory, database and bucket of `config`, opened once by the
/// dispatcher) until a signal stops it.
/// `drop_removed_columns`: a type's records may lose the values of columns its TOML no longer
/// has (otherwise the server refuses to start and says which).
pub async fn run(config: Config, dirs: DataDirs, drop_removed_columns: bool) -> Result<()> {
    // Install signal handlers before announcing anything, so an early SIGTERM is clean too.
    let shutdown = shutdown_signal()?;
    // Held until the process ends.
    let _serving = dirs.lock_for_serving()?;
    let settling = sluice_store::Settling::Rewrite { drop_values: drop_removed_columns };
    let store: sluice_store::SharedStore = dirs.create_store_settling(settling)?;
    if let Some(bucket) = dirs.bucket() {
        bucket.check().with_context(|| {
            format!(
                "[storage] backend = \"s3\": {} cannot be used, and tenants' exports are kept there: check \
                 endpoint, bucket (it must exist) and the credentials (credentials: {}); the cause follows",
                bucket.shown(),
                bucket.credentials()
            )
        })?;
        info!(bucket = %bucket.shown(), "tenants' exports are kept in object storage");
    }
    // Uploads that were in flight when the last process stopped can never complete. (Servers
    // sharing the data directory share the spool: only ended processes' files go.)
    let owners = dirs.spool_owners();
    sluice_core::spool::hold_owner(&owners)
        .with_context(|| format!("cannot lock an owner file in {}", owners.display()))?;
    for entry in std::fs::read_dir(dirs.upload_spool())?.flatten() {
        if sluice_core::spool::is_leftover(&owners, &entry.path(), std::time::Duration::from_secs(86_400)) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    sluice_core::spool::sweep_owners(&owners, sluice_core::spool::ENDED_OWNER_KEPT);
    // So can exports that were being written (by this server or a killed `sluice export`).
    let _ = sluice_export::clear_stale(&dirs.export_spool(), std::time::Duration::from_secs(600));
    let (host_key_file, may_generate) = config.host_key_file();
    let host_key = hostkey::load_or_generate(&host_key_file, may_generate)?;
    let host_key_public = host_key.public_key().clone();
    let types = crate::types::load(config.imports.types_dir())?;
    let metrics = Arc::new(Metrics::default());
    // One defender for SFTP and the dashboard: guessing on one counts on the other.
    // Nodes on one PostgreSQL database count guesses for each other.
    let sharing =
        if dirs.on_postgres() { sluice_defender::Sharing::Nodes } else { sluice_defender::Sharing::Alone };
    let defender =
        sluice_defender::Defender::open(config.defender.rules()?, store.clone(), metrics.clone(), sharing)
            .context("cannot read the defender's bans")?;
    let notify = Arc::new(Notify::new());
    let ingest = Arc::new(
        dirs.ingest_keeping_audit(store.clone(), types, &config.imports, config.audit.keep_days)?
            .with_metrics(metrics.clone())
            .with_notifier(notify.clone()),
    );
    let notifier = Arc::new(sluice_notify::Notifier {
        store: store.clone(),
        smtp: config.notifications.smtp()?,
        allow_private_webhooks: config.notifications.allow_private_webhooks,
    });
    ingest.recover()?;
    // Export runs a stopped server left `running` never finished: say so in their log.
    let interrupted =
        ingest.store.fail_interrupted_runs(&|tag| sluice_core::spool::owner_ended(&owners, tag))?;
    if interrupted > 0 {
        tracing::warn!(interrupted, "export runs interrupted by the last stop are logged as failed");
    }
    let uploaded = Arc::new(Notify::new());
    let (http_limits, sftp_descriptor_budget) = descriptor_budgets(&config.http);
    let shared = Arc::new(
        SftpShared::new(
            store.clone(),
            dirs.upload_spool(),
            config.sftp_limits(),
            uploaded.clone(),
            metrics.clone(),
            sftp_descriptor_budget,
            defender.clone(),
        )
        .with_snapshots(dirs.upload_snapshots()),
    );
    let root_files =
        ingest.types.all().iter().filter_map(|t| Some((t.folder.clone()?, t.file_name.clone()?))).collect();
    let server = Arc::new(
        SftpServer::new(shared, dirs.tenants(), host_key, config.ssh_settings())
            .with_root_files(root_files)
            .with_bucket(dirs.bucket().cloned(), dirs.read_spool()),
    );
    let listener = tokio::net::TcpListener::bind(config.sftp.listen)
        .await
        .with_context(|| format!("cannot listen for SFTP on {}", config.sftp.listen))?;
    let bound = listener.local_addr()?;
    let state = if dirs.on_postgres() { "postgresql" } else { "sqlite" };
    let proxy_protocol_from = config.sftp.proxy_protocol_from.join(",");
    info!(data_dir = %config.data_dir.display(), state, compat = config.sftp.compat, proxy_protocol_from, "sluice {} starting", env!("CARGO_PKG_VERSION"));
    let http_listener = tokio::net::TcpListener::bind(config.http.listen).await.with_context(|| {
        format!("cannot listen for HTTP on {} ([http] listen, --http-listen)", config.http.listen)
    })?;
    let http_bound = http_listener.local_addr()?;
    let http_tls = config.http.tls()?;
    let scheme = if http_tls.is_some() { "https" } else { "http" };
    // Scripts and tests read these lines to learn the ports when listening on port 0.
    announce(&format!("sftp listening on {bound}"));
    announce(&format!("http listening on {http_bound} ({scheme})"));
    if store.account_by_email(crate::accounts::ADMIN)?.is_none() {
        // The operator's first login, shown once; `sluice admin passwd` sets another.
        let (token, ..) = sluice_web::keys::generate().context("cannot read random bytes")?;
        let password = &token[4..24];
        let hash = sluice_core::PasswordHash::create(password)?;
        match store.add_account(None, crate::accounts::ADMIN, sluice_store::Role::Admin, hash.as_phc()) {
            Ok(_) => announce(&format!(
                "dashboard: {scheme}://{http_bound}/ log in as {} with password {password} (shown once; change it with `sluice admin passwd`)",
                crate::accounts::ADMIN
            )),
            // Nodes starting together on a new database: the first made it, and showed its
            // password; this one goes on.
            Err(sluice_store::StoreError::AccountExists(_)) => announce(&format!(
                "dashboard: {scheme}://{http_bound}/ (the operator's first password was shown by another node starting at the same time)"
            )),
            Err(e) => return Err(e.into()),
        }
    }
    if store.tenants()?.is_empty() {
        // On PostgreSQL the commands need the server's database too.
        let database = if dirs.on_postgres() {
            "\n(with this server's [database] url: SLUICE_DATABASE_URL set, or --config FILE)"
        } else {
            ""
        };
        announce(&format!(
            "No tenants yet. Create one and give it a password:\n  sluice --data-dir {dir} tenant add acme\n  sluice --data-dir {dir} tenant passwd acme{database}\nthen connect: sftp -P {port} acme@{host}",
            dir = config.data_dir.display(),
            port = bound.port(),
            host = bound.ip()
        ));
    }
    // The key sealing connectors' credentials: made on first start (0600), read after.
    let transfers = Arc::new(dirs.transfers_of(&config, &*store)?);
    // Runs of saved exports and pulls, shared by the scheduler, the API and the dashboard.
    let run_slots = sluice_export::saved::RunSlots::new(4);
    let stop_http = Arc::new(Notify::new());
    let http = {
        let stop = stop_http.clone();
        let mut web = sluice_web::Web::new(
            ingest.clone(),
            metrics.clone(),
            sluice_sftp::parse_public_key,
            dirs.exports(),
        );
        web.secure_cookies = config.http.secure_cookies;
        web.trusted_proxies = config.http.trusted_proxies()?.into();
        web.defender = defender.clone();
        web.allow_private_webhooks = config.notifications.allow_private_webhooks;
        web.transfers = Some(transfers.clone());
        web.run_slots = run_slots.clone();
        web.second_factor =
            sluice_web::SecondFactorRule::parse(&config.http.second_factor).unwrap_or_default();
        // Password resets by email: a public address for the links, and SMTP to send them.
        let smtp = config.notifications.smtp()?;
        if !config.http.public_url.is_empty() && !smtp.host.is_empty() {
            let smtp = Arc::new(smtp);
            web.resets = Some(sluice_web::Resets {
                public_url: config.http.public_url.trim_end_matches('/').to_owned(),
                send: Arc::new(move |to: &str, subject: &str, body: &str| {
                    let message = sluice_notify::plain_email(&smtp.from, to, subject, body);
                    sluice_notify::send_email(&smtp, to, &message).map_err(|e| e.to_string())
                }),
            });
        }
        web.tenant_folders = sluice_core::FolderName::parse_list(&config.tenants.default_folders.join(","))
            .map_err(anyhow::Error::from)?;
        web.sftp = Some(sluice_web::SftpEndpoint {
            listen: bound,
            public_host: Some(config.sftp.public_host.clone()).filter(|h| !h.is_empty()),
            key_type: host_key_public.algorithm().as_str().to_owned(),
            fingerprint: host_key_public.fingerprint(russh::keys::HashAlg::Sha256).to_string(),
        });
        tokio::spawn(sluice_web::serve(http_listener, web, http_tls, http_limits, async move {
            stop.notified().await
        }))
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
        let workers = config.imports.worker_count();
        tokio::spawn(ingest.clone().run_worker(workers, uploaded, async move { stop.notified().await }))
    };
    let stop_exporter = Arc::new(Notify::new());
    let exporter = {
        let stop = stop_exporter.clone();
        tokio::spawn(crate::exports::run_exporter(
            ingest.clone(),
            dirs.clone(),
            transfers.clone(),
            run_slots.clone(),
            async move { stop.notified().await },
        ))
    };
    server.serve(listener, shutdown).await;
    stop_exporter.notify_one();
    stop_http.notify_one();
    stop_worker.notify_one();
    stop_notifier.notify_one();
    let _ = notifications.await;
    if let Err(e) = http.await {
        tracing::warn!("http server task: {e}");
    }
    let _ = worker.await;
    let _ = exporter.await;
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

/// Raises the process's open-file limit to what the system allows, then shares it out: at
/// most half to HTTP connections (`[http] max_connections`, lowered with a warning if it is
/// more), a reserve for the database, logging, imports and accepting, and the rest to SFTP
/// connections and open files. A flood on either side leaves the other, and the database,
/// their descriptors.
fn descriptor_budgets(
    http: &crate::config::HttpConfig,
) -> (sluice_web::connections::Limits, Arc<sluice_sftp::FdBudget>) {
    let files = match sluice_sftp::raise_fd_limit() {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("cannot read the open-file limit ({e}); assuming 1024");
            1024
        }
    };
    let mut limits = http.limits();
    if let Some(allowed) = over_half_the_files(limits.max_connections, files) {
        tracing::warn!(
            "[http] max_connections = {} is more than half the open-file limit ({files}): allowing {allowed}; \
             raise the limit (ulimit -n, systemd LimitNOFILE=) to allow more",
            limits.max_connections,
        );
        limits.max_connections = allowed;
    }
    let reserve = (files / 16).max(64);
    let sftp = files.saturating_sub(limits.max_connections + reserve).max(16);
    info!(files, http = limits.max_connections, sftp, reserve, "open-file limit shared out");
    (limits, sluice_sftp::FdBudget::new(sftp))
}

/// Half of `files` (at least 1) when `max_connections` is more.
fn over_half_the_files(max_connections: usize, files: usize) -> Option<usize> {
    let half = (files / 2).max(1);
    (max_connections > half).then_some(half)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_connections_take_at_most_half_the_open_files() {
        assert_eq!(over_half_the_files(1024, 1024), Some(512));
        assert_eq!(over_half_the_files(1024, 2048), None);
        assert_eq!(over_half_the_files(1024, 1_048_576), None);
        assert_eq!(over_half_the_files(10, 1), Some(1));
    }
}
