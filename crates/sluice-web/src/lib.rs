//! The HTTP side of sluice, in the same process as the SFTP server: the REST API (`api`),
//! `/metrics` (Prometheus text format) and `/healthz`. Knows the store, the import service and
//! the shared counters; nothing of SSH.

mod api;
mod audit;
mod blocking;
pub mod client;
pub mod connections;
pub mod json;
pub mod keys;
mod openapi;
mod pages;
pub mod tls;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sluice_core::metrics::{Gauges, Metrics};
use sluice_ingest::Ingest;
use std::sync::Arc;

/// A client's address, over plain HTTP or TLS: handlers take it as `ConnectInfo<Peer>`.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

#[derive(Clone)]
pub struct Web {
    pub ingest: Arc<Ingest>,
    pub metrics: Arc<Metrics>,
    /// Parses an OpenSSH public key line (the SFTP layer's parser, handed in by the binary).
    pub parse_key: fn(&str) -> Result<sluice_store::AuthorizedKey, String>,
    /// Scores failed logins per source and account, and bans (shared with the SFTP server).
    pub defender: Arc<sluice_defender::Defender>,
    /// Session cookies carry `Secure` (when sluice is reached over HTTPS).
    pub secure_cookies: bool,
    /// Reverse proxies whose `X-Forwarded-For` names the client (`[http] trusted_proxies`).
    pub trusted_proxies: Arc<[client::IpRange]>,
    /// Dashboard logins checked at once (argon2id needs 19 MiB each).
    pub password_checks: Arc<tokio::sync::Semaphore>,
    /// Tenants may save webhooks to private addresses (`[notifications] allow_private_webhooks`).
    pub allow_private_webhooks: bool,
    /// Where exports asked for through the API and the dashboard go (each tenant's /exports).
    pub exports: Arc<sluice_export::Exports>,
    /// What pushes saved exports to tenants' connectors (none: such runs fail, saying so).
    pub transfers: Option<Arc<sluice_connect::Transfers>>,
    /// The saved-export runs and pulls in progress (shared with the server's scheduler).
    pub run_slots: Arc<sluice_export::saved::RunSlots>,
    /// Where a tenant's SFTP clients connect, as the credentials page tells them.
    pub sftp: Option<SftpEndpoint>,
    /// The folders a tenant the operator adds in the dashboard gets (`[tenants] default_folders`).
    pub tenant_folders: Vec<sluice_core::FolderName>,
    /// Password resets by email: the dashboard's public address (`[http] public_url`, where the
    /// links point; never the request's Host, which a client chooses) and what sends an email
    /// (to, subject, body). Without both, no resets by email.
    pub resets: Option<Resets>,
    /// Who must log in with a second factor (`[http] second_factor`).
    pub second_factor: SecondFactorRule,
}

/// Who must log in with a second factor (TOTP) after the password: nobody (each account may
/// choose it), owners (the operator, and users granted to manage as owners do), or everyone. An account the rule covers that has
/// none sees only its account page, to set one up, until it does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SecondFactorRule {
    #[default]
    Optional,
    Owners,
    Everyone,
}

impl SecondFactorRule {
    pub const NAMES: &str = "optional, owners or everyone";

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "optional" => Some(Self::Optional),
            "owners" => Some(Self::Owners),
            "everyone" => Some(Self::Everyone),
            _ => None,
        }
    }

    pub fn requires(self, account: &sluice_store::Account) -> bool {
        use sluice_store::Role;
        match self {
            Self::Optional => false,
            // Owners, the operator, and users an owner let manage as owners do.
            Self::Owners => matches!(account.role, Role::Owner | Role::Admin) || account.manages,
            Self::Everyone => true,
        }
    }
}

/// Sends one plain-text email: (to, subject, body); the error says why it was not sent.
pub type SendEmail = dyn Fn(&str, &str, &str) -> Result<(), String> + Send + Sync;

/// What password resets by email need (see [`Web::resets`]).
#[derive(Clone)]
pub struct Resets {
    pub public_url: String,
    pub send: Arc<SendEmail>,
}

/// The SFTP server as clients see it: what psftp, WinSCP and FileZilla ask for.
#[derive(Debug, Clone)]
pub struct SftpEndpoint {
    /// The address it listens on (an unspecified one: the dashboard's own host name is shown).
    pub listen: std::net::SocketAddr,
    /// The host name clients use (`[sftp] public_host`), shown instead of the address.
    pub public_host: Option<String>,
    /// The host key's algorithm (`ssh-ed25519`) and SHA-256 fingerprint (`SHA256:...`).
    pub key_type: String,
    pub fingerprint: String,
}

impl Web {
    /// Runs saved exports as the server's exporter does.
    pub(crate) fn export_runner(&self) -> sluice_export::saved::Runner<'_> {
        sluice_export::saved::Runner {
            types: &self.ingest.types,
            exports: &self.exports,
            transfers: self.transfers.as_deref(),
        }
    }

    pub fn new(
        ingest: Arc<Ingest>,
        metrics: Arc<Metrics>,
        parse_key: fn(&str) -> Result<sluice_store::AuthorizedKey, String>,
        exports: sluice_export::Exports,
    ) -> Self {
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let defender = sluice_defender::Defender::in_memory(Default::default(), metrics.clone());
        Self {
            ingest,
            metrics,
            parse_key,
            defender,
            secure_cookies: false,
            trusted_proxies: Arc::new([]),
            password_checks: Arc::new(tokio::sync::Semaphore::new(cpus)),
            allow_private_webhooks: false,
            exports: Arc::new(exports),
            transfers: None,
            run_slots: sluice_export::saved::RunSlots::new(4),
            sftp: None,
            tenant_folders: Vec::new(),
            resets: None,
            second_factor: SecondFactorRule::Optional,
        }
    }
}

/// An export asked for through the API or the dashboard, as `sluice export` takes it.
pub(crate) struct ExportAsked<'a> {
    pub type_name: &'a str,
    pub format: &'a str,
    pub columns: &'a [String],
    /// `COLUMN=VALUE` each.
    pub filters: &'a [String],
    pub bom: bool,
}

/// Why an export asked for was not made.
pub(crate) enum ExportRefused {
    /// The tenant's folders take no such type (or there is no such tenant).
    NotTheirs,
    /// What was asked cannot be made (an unknown column, a bad format), and why.
    Bad(String),
    /// Writing it failed.
    Failed(String),
}

/// Makes the export into the tenant's /exports (blocking work): the one way the API and the
/// dashboard do it.
pub(crate) fn export_for(
    web: &Web,
    tenant: &sluice_core::TenantName,
    asked: ExportAsked<'_>,
) -> Result<(sluice_export::Delivered, String), ExportRefused> {
    let t = web.ingest.store.require_tenant(tenant).map_err(|_| ExportRefused::NotTheirs)?;
    if !web.ingest.tenant_types(&t).iter().any(|ty| ty == asked.type_name) {
        return Err(ExportRefused::NotTheirs);
    }
    let ty = web.ingest.types.get(asked.type_name).ok_or(ExportRefused::NotTheirs)?;
    let format = sluice_export::Format::parse(asked.format)
        .ok_or_else(|| ExportRefused::Bad(format!("format {:?} is csv or xlsx", asked.format)))?;
    let export =
        sluice_export::Export::new(ty, &web.ingest.types, format, asked.columns, asked.filters, asked.bom)
            .map_err(|e| ExportRefused::Bad(e.to_string()))?;
    let done = web.exports.into_folder(&export, &*web.ingest.store, tenant).map_err(|e| {
        tracing::warn!(tenant = tenant.as_str(), "export: {e}");
        ExportRefused::Failed(e.to_string())
    })?;
    Ok((done, ty.name.clone()))
}

/// The largest request body read: forms and JSON documents are a few KiB at most.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn router(web: Web) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .merge(api::routes())
        .merge(pages::routes().layer(axum::middleware::from_fn(no_nul_in_a_page_request)))
        .layer(axum::middleware::from_fn_with_state(web.clone(), audit::refusals))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_request(announced_body_size))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(web)
}

/// A request that announces a body larger than any sluice reads is answered at once, before
/// its body is waited for (the body limit alone would stop reading only past the limit).
async fn announced_body_size(request: axum::extract::Request) -> Result<axum::extract::Request, Response> {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match announced {
        // The API answers in its own error shape.
        Some(n) if n > MAX_BODY_BYTES as u64 && request.uri().path().starts_with("/api/") => {
            Err(api::too_large().into_response())
        }
        Some(n) if n > MAX_BODY_BYTES as u64 => Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("The request body is {n} bytes; sluice takes at most {MAX_BODY_BYTES}.\n"),
        )
            .into_response()),
        _ => Ok(request),
    }
}

/// A dashboard request whose path, query or form holds a NUL is refused here, once for every
/// page (the API refuses its own in its error shape, `api::holds_nul`): no name or value
/// sluice keeps holds one, and PostgreSQL refuses text with one, so a record page answered
/// 404, a deletion showed the database's error, a login skipped the defender's count.
async fn no_nul_in_a_page_request(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let refused = |part: &str| {
        (
            StatusCode::BAD_REQUEST,
            format!("The request's {part} holds a NUL character (%00); no name or value may.\n"),
        )
            .into_response()
    };
    if request.uri().path().contains("%00") {
        return refused("path");
    }
    if request.uri().query().is_some_and(|q| q.contains("%00")) {
        return refused("query");
    }
    let is_form =
        request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
            v.trim_start().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded")
        });
    if !is_form {
        return next.run(request).await;
    }
    // A form is a few KiB at most (the body limit): read whole, looked at, passed on.
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("The request body is over {MAX_BODY_BYTES} bytes, the most sluice takes.\n"),
        )
            .into_response();
    };
    if bytes.contains(&0) || bytes.windows(3).any(|w| w == b"%00") {
        return refused("form");
    }
    next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

/// On every answer: pages run no script and load nothing from elsewhere (the policy would
/// stop injected markup that escaping missed), cannot be framed, and are not cached, since
/// they show a tenant's data.
async fn security_headers(mut response: Response) -> Response {
    use axum::http::HeaderValue;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Serves `router` on `listener` until `shutdown` resolves: over TLS when `tls` is given
/// (session cookies are then `Secure`), plain HTTP otherwise (behind a TLS proxy); within
/// `limits` (see [`connections`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    mut web: Web,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: connections::Limits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    web.secure_cookies |= tls.is_some();
    let (trusted_proxies, metrics) = (web.trusted_proxies.clone(), web.metrics.clone());
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    connections::serve(listener, router(web), tls, limits, trusted_proxies, metrics, shutdown).await;
}

async fn metrics(State(web): State<Web>) -> Response {
    let store = web.ingest.store.clone();
    let object_storage = web.exports.bucket_counts().map(|c| sluice_core::metrics::ObjectStorage {
        failed_calls: c.failed_calls,
        bytes_read: c.bytes_read,
        bytes_written: c.bytes_written,
        copies_open: c.copies_open,
    });
    // Two small counts; the store is synchronous. Bans are counted in the store, which
    // `sluice defender unban` changes too.
    let counts = tokio::task::spawn_blocking(move || -> sluice_store::Result<Gauges> {
        Ok(Gauges {
            queue_depth: store.pending_uploads()?,
            banned_sources: store.bans_in_force(sluice_store::now_ms())?,
            object_storage,
        })
    })
    .await;
    let gauges = match counts {
        Ok(Ok(g)) => g,
        Ok(Err(e)) => {
            tracing::warn!("metrics: {e}");
            return (StatusCode::SERVICE_UNAVAILABLE, "the database cannot be read\n").into_response();
        }
        Err(e) => {
            tracing::warn!("metrics: {e}");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let text = web.metrics.render(gauges);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

async fn healthz(State(web): State<Web>) -> Response {
    let store = web.ingest.store.clone();
    match tokio::task::spawn_blocking(move || store.pending_uploads()).await {
        Ok(Ok(_)) => {}
        _ => return (StatusCode::SERVICE_UNAVAILABLE, "the database cannot be read\n").into_response(),
    }
    // With `[storage] backend = "s3"`: the bucket tenants' exports are kept in answers too.
    let exports = web.exports.clone();
    match tokio::task::spawn_blocking(move || exports.check_bucket()).await {
        Ok(None | Some(Ok(()))) => (StatusCode::OK, "ok\n").into_response(),
        _ => {
            (StatusCode::SERVICE_UNAVAILABLE, "the object storage bucket cannot be reached\n").into_response()
        }
    }
}

/// A held or superseded import's kept file, streamed in 64 KiB chunks read on a blocking
/// thread (a file may be gigabytes; memory holds a few chunks). `None`: nothing is kept.
pub(crate) fn kept_file(record: &sluice_store::ImportRecord) -> Option<Response> {
    use std::io::Read;
    let path = std::path::PathBuf::from(record.held_file.as_ref()?);
    let mut file = std::fs::File::open(&path).ok()?;
    let size = file.metadata().ok()?.len();
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        loop {
            let mut chunk = vec![0u8; 64 << 10];
            match file.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => {
                    chunk.truncate(n);
                    if tx.blocking_send(Ok(chunk.into())).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let name: String =
        record.file_name.chars().filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).collect();
    let disposition = format!("attachment; filename=\"import-{}-{name}\"", record.id);
    Some(
        (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                (header::CONTENT_DISPOSITION, disposition),
                (header::CONTENT_LENGTH, size.to_string()),
            ],
            axum::body::Body::new(ChunkBody(rx)),
        )
            .into_response(),
    )
}

struct ChunkBody(tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>);

impl http_body::Body for ChunkBody {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|r| r.map(http_body::Frame::data)))
    }
}

/// A record's photo as an HTTP answer (the API's and the dashboard's): the image from the
/// tenant's image store, its type from its header as checked on import (`image/jpeg` or
/// `image/png`, never what a browser would guess), revalidated by its SHA-256. `None`: the
/// record has no photo. Blocking.
pub(crate) fn photo_response(
    web: &Web,
    tenant: &str,
    type_name: &str,
    key: &str,
) -> Result<Option<Response>, sluice_store::StoreError> {
    let Some(photo) = web.ingest.store.photo(tenant, type_name, key)? else { return Ok(None) };
    let path = sluice_core::photo::image_store(web.ingest.photos_dir(), tenant).join(photo.stored_name());
    let Ok(bytes) = std::fs::read(&path) else { return Ok(None) };
    let name: String = photo
        .export_name()
        .unwrap_or_else(|| format!("photo.{}", photo.format.ext()))
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.+".contains(*c))
        .collect();
    Ok(Some(
        (
            [
                (header::CONTENT_TYPE, photo.format.mime().to_owned()),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
                (header::CACHE_CONTROL, "private, no-cache".to_owned()),
                (header::ETAG, format!("\"{}\"", photo.sha256)),
                (header::CONTENT_DISPOSITION, format!("inline; filename=\"{name}\"")),
            ],
            bytes,
        )
            .into_response(),
    ))
}
