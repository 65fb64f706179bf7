//! Accepting and serving HTTP/1.1 connections (hyper), with everything a client can hold
//! before it authenticates bounded:
//! - open connections, in all and per client address, counted from before `accept` to the
//!   connection's end (TLS handshakes included): while all are taken, new clients wait in the
//!   kernel's listen backlog, which costs none of our descriptors and never holds up the
//!   connections being served;
//! - the time a client takes to send a request's head (from its connection, covering the TLS
//!   handshake, or from the first byte of a later request) and its body (from the end of
//!   the head): totals, so sending a byte now and then does not extend them;
//! - the time a kept-alive connection sits between requests, and the time a client may leave
//!   an answer unread.
//!
//! The time limits are enforced on the socket ([`Timed`]): a read or write that keeps the
//! server waiting on the client past its time fails, and hyper closes the connection.
//! While the server itself works on a request, no time limit runs.

use crate::Peer;
use crate::client::IpRange;
use axum::Router;
use axum::extract::ConnectInfo;
use http_body::Body as HttpBody;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use sluice_core::metrics::Metrics;
use sluice_core::net::Source;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

/// The bounds (`[http]` in the configuration, which documents them).
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_connections_per_ip: 64,
        }
    }
}

/// The largest request head (request line and headers) read: hyper's read buffer, so also
/// what one connection holds of a request at a time.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// What the accept loop shares with the connections it starts.
struct Shared {
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    metrics: Arc<Metrics>,
    addresses: Mutex<HashMap<Source, usize>>,
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, lets requests in
/// flight finish (connections between requests close at once) and returns when every
/// connection has ended.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    trusted_proxies: Arc<[IpRange]>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.min(Semaphore::MAX_PERMITS)));
    let shared = Arc::new(Shared { app, tls, limits, metrics, addresses: Mutex::default() });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut warned_full: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        // A slot before accepting: with none free, new clients wait in the backlog.
        let slot = tokio::select! {
            _ = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    warn!("http accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if slots.available_permits() == 0 && warned_full.is_none_or(|t| t.elapsed() > Duration::from_secs(60))
        {
            warn!(
                "all {} HTTP connections are open ([http] max_connections): new clients wait until one closes",
                shared.limits.max_connections
            );
            warned_full = Some(Instant::now());
        }
        // A reverse proxy brings every client over its own connections: only the total counts.
        let address = if trusted_proxies.iter().any(|r| r.contains(peer.ip())) {
            None
        } else {
            match AddressSlot::take(&shared, peer.ip()) {
                Some(slot) => Some(slot),
                None => {
                    shared.metrics.http_connection_refused();
                    debug!(
                        %peer,
                        "refusing HTTP connection: {} open from this address already ([http] max_connections_per_ip)",
                        shared.limits.max_connections_per_ip
                    );
                    if shared.tls.is_none() {
                        // Said if the socket takes it at once; never waited for.
                        let _ = stream.try_write(too_many().as_bytes());
                    }
                    continue;
                }
            }
        };
        let held = Held { _slot: slot, _address: address, metrics: shared.metrics.clone() };
        shared.metrics.http_connection_opened();
        tokio::spawn(connection(stream, peer, held, shared.clone(), stop_rx.clone()));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(stop_rx);
    // Every connection holds a receiver until it ends.
    stop_tx.closed().await;
}

/// The answer to a connection refused for its address's count (plain HTTP only).
fn too_many() -> String {
    let body = "Too many connections from your address: close some and try again.\n";
    format!(
        "HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// What an open connection counts against, given back when it ends.
struct Held {
    _slot: tokio::sync::OwnedSemaphorePermit,
    _address: Option<AddressSlot>,
    metrics: Arc<Metrics>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.metrics.http_connection_closed();
    }
}

/// One connection counted against its client's address (an IPv6 /64).
struct AddressSlot {
    shared: Arc<Shared>,
    key: Source,
}

impl AddressSlot {
    fn take(shared: &Arc<Shared>, ip: IpAddr) -> Option<Self> {
        let key = Source::of(ip);
        let mut open = shared.addresses.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(key).or_insert(0);
        if *count >= shared.limits.max_connections_per_ip {
            return None;
        }
        *count += 1;
        Some(Self { shared: shared.clone(), key })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.shared.addresses.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    _held: Held,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let clock = Arc::new(Clock::new(&shared.limits));
    let socket = Timed::new(stream, peer, clock.clone(), shared.limits.idle_timeout);
    let served = match &shared.tls {
        None => serve_connection(socket, peer, clock, &shared, &mut stop).await,
        Some(acceptor) => {
            // On this connection's own task, so a stalled handshake holds up no one else;
            // the first request's header timeout covers it.
            let handshake = tokio::select! {
                handshake = acceptor.accept(socket) => handshake,
                _ = stop.wait_for(|stop| *stop) => return,
            };
            match handshake {
                Ok(tls) => serve_connection(tls, peer, clock, &shared, &mut stop).await,
                Err(e) => {
                    debug!(%peer, "TLS handshake failed: {e}");
                    return;
                }
            }
        }
    };
    if let Err(e) = served {
        debug!(%peer, "http connection: {e}");
    }
}

async fn serve_connection<S>(
    socket: S,
    peer: SocketAddr,
    clock: Arc<Clock>,
    shared: &Shared,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let app = shared.app.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        clock.head_received(request.body().is_end_stream());
        let body_clock = clock.clone();
        let mut request = request.map(|body| RequestBody { body, clock: body_clock });
        // Handlers take the peer's address (the login limit) as `ConnectInfo<Peer>`.
        request.extensions_mut().insert(ConnectInfo(Peer(peer)));
        let answered = Answered(clock.clone());
        // Router is always ready (its `poll_ready` returns at once).
        let response = tower_service::Service::call(&mut app.clone(), request);
        async move {
            let response = response.await.unwrap_or_else(|never| match never {});
            Ok::<_, Infallible>(response.map(|body| ResponseBody { body, _answered: answered }))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        // The clock on the socket times heads; hyper's own timer would also run between
        // requests, where the (longer) idle timeout applies.
        .header_read_timeout(None)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(socket), service);
    tokio::pin!(conn);
    tokio::select! {
        served = conn.as_mut() => return served,
        _ = stop.wait_for(|stop| *stop) => conn.as_mut().graceful_shutdown(),
    }
    conn.await
}

/// Where a connection is in its exchange, and until when the client may keep the server
/// waiting for bytes.
struct Clock {
    header_timeout: Duration,
    body_timeout: Duration,
    idle_timeout: Duration,
    state: Mutex<ClockState>,
}

struct ClockState {
    phase: Phase,
    /// The task that last waited to read: woken when a request is answered, since hyper
    /// waits for the next one on the socket's readiness alone and would not look at the
    /// idle deadline again.
    reader: Option<Waker>,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// The client sends a request head (on a new connection: the TLS handshake first).
    Head(Instant),
    /// The client sends the body of a request whose head arrived.
    Body(Instant),
    /// The server has the request; the client owes nothing. `early`: bytes of a next
    /// request came meanwhile.
    Busy { early: bool },
    /// The request was answered; the connection waits for another.
    Idle(Instant),
}

impl Clock {
    fn new(limits: &Limits) -> Self {
        Self {
            header_timeout: limits.header_timeout,
            body_timeout: limits.body_timeout,
            idle_timeout: limits.idle_timeout,
            state: Mutex::new(ClockState {
                phase: Phase::Head(Instant::now() + limits.header_timeout),
                reader: None,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ClockState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes came from the client.
    fn heard(&self) {
        let mut state = self.state();
        match state.phase {
            Phase::Idle(_) => state.phase = Phase::Head(Instant::now() + self.header_timeout),
            Phase::Busy { .. } => state.phase = Phase::Busy { early: true },
            Phase::Head(_) | Phase::Body(_) => {}
        }
    }

    fn head_received(&self, no_body: bool) {
        self.state().phase = if no_body {
            Phase::Busy { early: false }
        } else {
            Phase::Body(Instant::now() + self.body_timeout)
        };
    }

    /// The body arrived, or the handler let it go.
    fn body_received(&self) {
        let mut state = self.state();
        if let Phase::Body(_) = state.phase {
            state.phase = Phase::Busy { early: false };
        }
    }

    fn answered(&self) {
        let mut state = self.state();
        state.phase = match state.phase {
            Phase::Busy { early: true } => Phase::Head(Instant::now() + self.header_timeout),
            _ => Phase::Idle(Instant::now() + self.idle_timeout),
        };
        if let Some(reader) = &state.reader {
            reader.wake_by_ref();
        }
    }

    /// Until when the client may keep the server waiting for its bytes, and what it owes;
    /// `reader` waits for them.
    fn read_due(&self, reader: &Waker) -> Option<(Instant, &'static str)> {
        let mut state = self.state();
        if !state.reader.as_ref().is_some_and(|w| w.will_wake(reader)) {
            state.reader = Some(reader.clone());
        }
        match state.phase {
            Phase::Head(due) => Some((due, "the request head took too long ([http] header_timeout_secs)")),
            Phase::Body(due) => Some((due, "the request body took too long ([http] body_timeout_secs)")),
            Phase::Idle(due) => Some((due, "idle ([http] idle_timeout_secs)")),
            Phase::Busy { .. } => None,
        }
    }
}

/// A request's body, which tells the clock when it has arrived (or was let go).
struct RequestBody {
    body: Incoming,
    clock: Arc<Clock>,
}

impl HttpBody for RequestBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let frame = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            self.clock.body_received();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        self.clock.body_received();
    }
}

/// Tells the clock that a request was answered when hyper lets go of the answer's body
/// (all of it written, or the connection failed).
struct Answered(Arc<Clock>);

impl Drop for Answered {
    fn drop(&mut self) {
        self.0.answered();
    }
}

struct ResponseBody {
    body: axum::body::Body,
    _answered: Answered,
}

impl HttpBody for ResponseBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A connection's socket: a read that waits on the client past the clock's time fails, and
/// so does a write that waits longer than the idle timeout for the client to read.
struct Timed<S> {
    socket: S,
    peer: SocketAddr,
    clock: Arc<Clock>,
    idle_timeout: Duration,
    read_timer: Pin<Box<Sleep>>,
    read_due: Instant,
    write_timer: Pin<Box<Sleep>>,
    write_due: Option<Instant>,
    /// Why the connection ran out of time; every later read or write fails too.
    expired: Option<&'static str>,
}

impl<S> Timed<S> {
    fn new(socket: S, peer: SocketAddr, clock: Arc<Clock>, idle_timeout: Duration) -> Self {
        let now = Instant::now();
        Self {
            socket,
            peer,
            clock,
            idle_timeout,
            read_timer: Box::pin(tokio::time::sleep_until(now)),
            read_due: now,
            write_timer: Box::pin(tokio::time::sleep_until(now)),
            write_due: None,
            expired: None,
        }
    }

    fn expire<T>(&mut self, why: &'static str) -> Poll<io::Result<T>> {
        if self.expired.is_none() {
            debug!(peer = %self.peer, "closing HTTP connection: {why}");
            self.expired = Some(why);
        }
        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)))
    }

    /// A write-side operation, failed once the client has not read for the idle timeout.
    fn write_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>>
    where
        S: Unpin,
    {
        if let Some(why) = self.expired {
            return self.expire(why);
        }
        match op(Pin::new(&mut self.socket), cx) {
            Poll::Ready(done) => {
                self.write_due = None;
                Poll::Ready(done)
            }
            Poll::Pending => {
                let due = match self.write_due {
                    Some(due) => due,
                    None => {
                        let due = Instant::now() + self.idle_timeout;
                        self.write_due = Some(due);
                        self.write_timer.as_mut().reset(due);
                        due
                    }
                };
                if due <= Instant::now() || self.write_timer.as_mut().poll(cx).is_ready() {
                    return self.expire("the client did not read the answer ([http] idle_timeout_secs)");
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Timed<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(why) = this.expired {
            return this.expire(why);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.socket).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.clock.heard();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let Some((due, why)) = this.clock.read_due(cx.waker()) else { return Poll::Pending };
                if due != this.read_due {
                    this.read_due = due;
                    this.read_timer.as_mut().reset(due);
                }
                if this.read_timer.as_mut().poll(cx).is_ready() {
                    return this.expire(why);
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Timed<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().write_with(cx, |s, cx| s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().write_with(cx, |s, cx| s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().write_with(cx, |s, cx| s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().write_with(cx, |s, cx| s.poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(clock: &Clock) -> Option<Duration> {
        clock.read_due(Waker::noop()).map(|(due, _)| due.saturating_duration_since(Instant::now()))
    }

    fn about(got: Option<Duration>, want: Duration) -> bool {
        got.is_some_and(|d| d <= want && d + Duration::from_secs(1) > want)
    }

    #[test]
    fn the_client_owes_its_head_then_its_body_then_nothing_until_answered() {
        let limits = Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            ..Limits::default()
        };
        let clock = Clock::new(&limits);
        // A new connection: its first head (and TLS handshake), from the start.
        assert!(about(due(&clock), limits.header_timeout));
        clock.heard();
        assert!(about(due(&clock), limits.header_timeout), "bytes do not extend the head's time");
        clock.head_received(false);
        assert!(about(due(&clock), limits.body_timeout));
        clock.body_received();
        assert_eq!(due(&clock), None, "the server works: no time runs against the client");
        clock.answered();
        assert!(about(due(&clock), limits.idle_timeout));
        clock.heard();
        assert!(about(due(&clock), limits.header_timeout), "a next request's first byte starts its head");
        clock.head_received(true);
        assert_eq!(due(&clock), None, "no body to wait for");
        // Bytes of a next request while this one is served: that head is timed from the answer.
        clock.heard();
        clock.answered();
        assert!(about(due(&clock), limits.header_timeout));
    }

    #[test]
    fn an_answer_wakes_the_task_waiting_to_read() {
        struct Flag(std::sync::atomic::AtomicBool);
        impl std::task::Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let flag = Arc::new(Flag(false.into()));
        let clock = Clock::new(&Limits::default());
        clock.head_received(true);
        assert_eq!(clock.read_due(&Waker::from(flag.clone())), None);
        clock.answered();
        assert!(
            flag.0.load(std::sync::atomic::Ordering::SeqCst),
            "hyper would not look at the idle deadline"
        );
    }
}
