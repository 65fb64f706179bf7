//! One SFTP session: a reader task, a processor and a writer, joined by queues.
//!
//! russh delivers channel data through a bounded queue and blocks its whole connection loop
//! (including window adjustments and noticing a closed socket) while that queue is full. So
//! the reader never waits: it drains the channel and splits packets as they come. What a
//! client can have queued is bounded by flow control instead: the patched russh refills a
//! channel's window only when the processor reports requests processed (as OpenSSH does), and
//! disconnects a client that sends beyond it.
//!
//! * the reader splits packets and queues them, each charged what it keeps in memory (its
//!   packet, or the channel message a large write is a slice of, plus a fixed overhead) to
//!   its tenant's budget; a session that would pass it is closed (only a client that
//!   pipelines without reading its replies gets there);
//! * the processor executes requests in order (plain pread/pwrite on std files, see
//!   `processor.rs`), charges each reply to the session's and the tenant's reply budgets
//!   before queueing it (waiting for room), and then reports the request consumed, which
//!   refills the client's window;
//! * the writer sends replies, batching small ones, and is the only part that waits for the
//!   client's window.
//!
//! Every wait races the session's stop token, which is cancelled when the client closes the
//! channel, when the session fails, and (as a child of the connection's token) when the
//! connection ends for any reason: a writer waiting for window from a client that is gone
//! stops, and dropping the processor gives back every handle, spool byte and descriptor.

use crate::fs::TenantTree;
use crate::limits::{FdBudget, SftpLimits};
use crate::processor::Processor;
use crate::protocol;
use crate::tenant_state::TenantStates;
use bytes::{Bytes, BytesMut};
use russh::server::Msg;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use sluice_core::TenantName;
use sluice_defender::Defender;
use sluice_store::SharedStore;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// What a queued request costs beyond the bytes it keeps: its queue node, its permits.
const REQUEST_OVERHEAD: usize = 128;
/// Processed bytes are reported to russh (refilling the client's window) in batches of at
/// least this, or as soon as the queue runs empty.
const REPORT_BATCH: u32 = 32 * 1024;

/// Everything a session needs, shared by all sessions of a server.
pub struct SftpShared {
    pub store: SharedStore,
    /// `DATA_DIR/spool/uploads`: bytes in flight, outside every tenant's tree.
    pub spool: PathBuf,
    pub limits: SftpLimits,
    /// Woken after every recorded upload event.
    pub uploaded: Arc<Notify>,
    /// Sessions, failed logins, uploads and their bytes, for `/metrics`.
    pub metrics: Arc<sluice_core::metrics::Metrics>,
    /// Scores failed logins and protocol errors per source, shared with the dashboard.
    pub(crate) defender: Arc<Defender>,
    /// Handles, spool bytes, exclusive creates and recent uploads of each tenant.
    pub(crate) tenants: Arc<TenantStates>,
    /// Descriptors the server may use for connections and open files.
    pub(crate) fds: Arc<FdBudget>,
    /// Set on shutdown: transfers in flight finish, new ones are refused.
    pub(crate) draining: AtomicBool,
    /// Where each upload's own bytes are kept until its import (`DATA_DIR/spool/snapshots`,
    /// on the tenants' filesystem: a hard link per upload); `None` keeps none, and imports
    /// read the file in its folder.
    pub(crate) snapshots: Option<PathBuf>,
}

impl SftpShared {
    pub fn new(
        store: SharedStore,
        spool: PathBuf,
        limits: SftpLimits,
        uploaded: Arc<Notify>,
        metrics: Arc<sluice_core::metrics::Metrics>,
        fds: Arc<FdBudget>,
        defender: Arc<Defender>,
    ) -> Self {
        Self {
            defender,
            tenants: Arc::new(TenantStates::new(metrics.clone(), limits.tenant_queue_bytes)),
            store,
            spool,
            limits,
            uploaded,
            metrics,
            fds,
            draining: AtomicBool::new(false),
            snapshots: None,
        }
    }

    /// Keeps a snapshot of every upload in `dir` (see [`SftpShared::snapshots`]); the import
    /// worker takes it from there.
    pub fn with_snapshots(mut self, dir: PathBuf) -> Self {
        self.snapshots = Some(dir);
        self
    }

    /// Open file and directory handles of every session.
    pub fn open_handles(&self) -> usize {
        self.tenants.open_handles()
    }

    /// Descriptors taken by connections and open files.
    pub fn descriptors_in_use(&self) -> usize {
        self.fds.in_use()
    }

    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

/// When a connection last moved SFTP bytes either way.
#[derive(Debug)]
pub(crate) struct Activity {
    base: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    pub fn new() -> Self {
        Self { base: Instant::now(), last_ms: AtomicU64::new(0) }
    }

    pub fn touch(&self) {
        self.last_ms.store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub fn idle_for(&self) -> Duration {
        let now = self.base.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// What the sessions of one SSH connection share with it.
#[derive(Debug)]
pub(crate) struct ConnectionShare {
    pub activity: Activity,
    /// Open handles of all the connection's sessions: shutdown waits for them to close.
    pub open_handles: Arc<AtomicUsize>,
    /// SFTP sessions running on the connection.
    pub sessions: AtomicUsize,
    /// Cancelled when the connection ends, however it ends.
    pub ended: CancellationToken,
}

impl ConnectionShare {
    pub fn new() -> Self {
        Self {
            activity: Activity::new(),
            open_handles: Arc::new(AtomicUsize::new(0)),
            sessions: AtomicUsize::new(0),
            ended: CancellationToken::new(),
        }
    }
}

/// Counts a session against its connection while it runs.
pub(crate) struct SessionSlot(pub Arc<ConnectionShare>);

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.0.sessions.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request waiting for the processor, with the tenant's budget it holds.
struct Queued {
    payload: Bytes,
    _permit: OwnedSemaphorePermit,
}

impl Queued {
    /// The bytes of the channel it came in (its length prefix included): what processing it
    /// gives back to the client's window.
    fn wire_len(&self) -> u32 {
        u32::try_from(self.payload.len() + 4).unwrap_or(u32::MAX)
    }
}

/// A reply waiting for the writer, with the session's and the tenant's budgets it holds.
pub(crate) struct Reply {
    bytes: Bytes,
    _permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
}

/// Serves SFTP on a channel until the client closes it or the connection ends.
pub(crate) async fn run(
    shared: Arc<SftpShared>,
    tenant: TenantName,
    tree: TenantTree,
    slot: SessionSlot,
    read: ChannelReadHalf,
    write: ChannelWriteHalf<Msg>,
) {
    let connection = slot.0.clone();
    let stop = connection.ended.child_token();
    let reply_budget = Arc::new(Semaphore::new(shared.limits.reply_budget_bytes.min(Semaphore::MAX_PERMITS)));
    let tenant_budget = shared.tenants.queue_budget(&tenant);
    let (req_tx, mut req_rx) = mpsc::unbounded_channel::<Queued>();
    let (out_tx, out_rx) = mpsc::unbounded_channel::<Reply>();
    let consumer = write.consumer();

    let reader = tokio::spawn(read_requests(
        read,
        req_tx,
        tenant_budget.clone(),
        stop.clone(),
        connection.clone(),
        tenant.clone(),
    ));
    let writer = tokio::spawn(write_replies(write, out_rx, stop.clone(), connection.clone()));

    let mut processor =
        Processor::new(shared.clone(), tenant, tree, connection.open_handles.clone(), stop.clone());
    let mut unreported = 0u32;
    loop {
        let queued = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            q = req_rx.recv() => match q {
                Some(q) => q,
                None => break, // the client sent EOF and everything it sent is answered
            },
        };
        unreported = unreported.saturating_add(queued.wire_len());
        let request = match protocol::Request::decode(queued.payload.clone()) {
            Ok(r) => r,
            Err(e) => {
                warn!(tenant = %processor.tenant(), "closing SFTP session: malformed packet: {e}");
                stop.cancel();
                break;
            }
        };
        drop(queued);
        if let Some(bytes) = processor.handle(request, shared.is_draining()).await {
            // Charged what it occupies; at most the whole budget, so that one reply always fits.
            let cost =
                bytes.len().clamp(1, shared.limits.reply_budget_bytes).min(Semaphore::MAX_PERMITS) as u32;
            let permits = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                p = async {
                    let session = reply_budget.clone().acquire_many_owned(cost).await.ok()?;
                    let tenant = tenant_budget.clone().acquire_many_owned(cost).await.ok()?;
                    Some((session, tenant))
                } => p,
            };
            let Some(permits) = permits else { break };
            if out_tx.send(Reply { bytes, _permits: permits }).is_err() {
                break;
            }
        }
        // Processed, and its reply queued: the client may send as much again.
        if unreported >= REPORT_BATCH || req_rx.is_empty() {
            let reported = tokio::select! {
                biased;
                _ = stop.cancelled() => false,
                r = consumer.consumed(unreported) => r.is_ok(),
            };
            if !reported {
                break;
            }
            unreported = 0;
        }
    }
    // Unfinished uploads remove their spool files; every handle gives back its counts.
    let tenant = processor.tenant().clone();
    drop(processor);
    drop(out_tx);
    let _ = writer.await;
    stop.cancel();
    let _ = reader.await;
    drop(slot);
    debug!(%tenant, "SFTP session ended");
}

async fn read_requests(
    mut read: ChannelReadHalf,
    tx: mpsc::UnboundedSender<Queued>,
    tenant_budget: Arc<Semaphore>,
    stop: CancellationToken,
    connection: Arc<ConnectionShare>,
    tenant: TenantName,
) {
    let mut tx = Some(tx);
    let mut splitter = protocol::PacketSplitter::default();
    let mut packets = Vec::new();
    loop {
        let message = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            m = read.wait() => m,
        };
        match message {
            Some(ChannelMsg::Data { data }) => {
                connection.activity.touch();
                // Data after EOF breaks the protocol; there is nobody left to answer it.
                let Some(sender) = &tx else { continue };
                if let Err(e) = splitter.feed(data, &mut packets) {
                    warn!(%tenant, "closing SFTP session: {e}");
                    stop.cancel();
                    return;
                }
                for packet in packets.drain(..) {
                    let cost = (packet.retained + REQUEST_OVERHEAD).min(Semaphore::MAX_PERMITS) as u32;
                    // Never waits: the window bounds what one channel can send; only a tenant
                    // whose clients pipeline without reading replies, on many channels at
                    // once, runs out, and then this session ends.
                    let Ok(permit) = tenant_budget.clone().try_acquire_many_owned(cost) else {
                        warn!(%tenant, "closing SFTP session: the tenant's sessions hold too many unanswered requests");
                        stop.cancel();
                        return;
                    };
                    if sender.send(Queued { payload: packet.payload, _permit: permit }).is_err() {
                        return;
                    }
                }
            }
            // The client sends nothing more: what it sent is answered, then the session ends.
            Some(ChannelMsg::Eof) => tx = None,
            Some(ChannelMsg::Close) | None => {
                stop.cancel();
                return;
            }
            Some(_) => {}
        }
    }
}

async fn write_replies(
    write: ChannelWriteHalf<Msg>,
    mut replies: mpsc::UnboundedReceiver<Reply>,
    stop: CancellationToken,
    connection: Arc<ConnectionShare>,
) {
    let mut held = Vec::new();
    loop {
        let first = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            r = replies.recv() => match r {
                Some(r) => r,
                None => break,
            },
        };
        // Small replies (status, handles, attrs) are batched into one channel write.
        let data = if first.bytes.len() >= 16 * 1024 {
            let data = first.bytes.clone();
            held.push(first);
            data
        } else {
            let mut batch = BytesMut::from(&first.bytes[..]);
            held.push(first);
            while batch.len() < 64 * 1024 {
                match replies.try_recv() {
                    Ok(next) => {
                        batch.extend_from_slice(&next.bytes);
                        held.push(next);
                    }
                    Err(_) => break,
                }
            }
            batch.freeze()
        };
        let sent = tokio::select! {
            biased;
            _ = stop.cancelled() => false,
            r = write.data_bytes(data) => r.is_ok(),
        };
        held.clear();
        if !sent {
            stop.cancel();
            break;
        }
        connection.activity.touch();
    }
    // Closing is a message to russh's loop; if that loop is gone or stuck, give up quickly.
    let close = async {
        let _ = write.eof().await;
        let _ = write.close().await;
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), close).await;
}
