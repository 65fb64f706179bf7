//! The HTTP side of sluice, in the same process as the SFTP server: the REST API (`api`),
//! `/metrics` (Prometheus text format) and `/healthz`. Knows the store, the import service and
//! the shared counters; nothing of SSH.

mod api;
pub mod client;
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

/// A client's address, over plain HTTP or TLS.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tls::TlsListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, tls::TlsListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

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
}

impl Web {
    pub fn new(
        ingest: Arc<Ingest>,
        metrics: Arc<Metrics>,
        parse_key: fn(&str) -> Result<sluice_store::AuthorizedKey, String>,
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
        }
    }
}

pub fn router(web: Web) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .merge(api::routes())
        .merge(pages::routes())
        .layer(axum::middleware::map_response(security_headers))
        .with_state(web)
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
/// (session cookies are then `Secure`), plain HTTP otherwise (behind a TLS proxy).
pub async fn serve(
    listener: tokio::net::TcpListener,
    mut web: Web,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    web.secure_cookies |= tls.is_some();
    // The peer address feeds the defender.
    let app = router(web).into_make_service_with_connect_info::<Peer>();
    match tls {
        Some(config) => {
            axum::serve(tls::TlsListener::new(listener, config)?, app).with_graceful_shutdown(shutdown).await
        }
        None => axum::serve(listener, app).with_graceful_shutdown(shutdown).await,
    }
}

async fn metrics(State(web): State<Web>) -> Response {
    let store = web.ingest.store.clone();
    // Two small counts; the store is synchronous. Bans are counted in the store, which
    // `sluice defender unban` changes too.
    let counts = tokio::task::spawn_blocking(move || -> sluice_store::Result<Gauges> {
        Ok(Gauges {
            queue_depth: store.pending_uploads()?,
            banned_sources: store.bans_in_force(sluice_store::now_ms())?,
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
        Ok(Ok(_)) => (StatusCode::OK, "ok\n").into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "the database cannot be read\n").into_response(),
    }
}
