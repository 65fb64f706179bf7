//! The SSH server: algorithms, authentication, connection limits, and the hand-off of an
//! `sftp` subsystem channel to [`crate::session`].

use crate::fs::TenantTree;
use crate::session::{self, ConnectionShare, SessionSlot, SftpShared};
use russh::keys::{PrivateKey, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, Disconnect, MethodKind, MethodSet, Preferred, cipher, kex, mac};
use sluice_core::TenantName;
use sluice_core::net::Source;
use sluice_core::{FolderName, Tenant};
use sluice_defender::{Event, FailedLogin, Service};
use sluice_store::{AuthorizedKey, SharedStore};
use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// SSH-level settings; every one is configurable.
#[derive(Debug, Clone)]
pub struct SshSettings {
    /// Adds hmac-sha2-256/512 (encrypt-and-MAC) for the CTR ciphers, for SSH libraries that
    /// cannot do encrypt-then-MAC (libssh2 before 1.11).
    pub compat: bool,
    /// Offers only the hybrid post-quantum key exchange (mlkem768x25519-sha256). Clients
    /// without it (OpenSSH before 9.9, PuTTY, paramiko, libssh2) can then not connect.
    pub post_quantum_only: bool,
    /// Time a connection has to authenticate.
    pub login_grace: Duration,
    pub max_auth_attempts: usize,
    /// Connections from one address that have not authenticated yet.
    pub max_unauthenticated_per_ip: usize,
    pub max_sessions_per_tenant: usize,
    /// SFTP channels one connection may have open at once (OpenSSH's `MaxSessions`).
    pub max_channels_per_connection: usize,
    /// An authenticated connection that moves no SFTP bytes for this long is closed.
    pub idle_timeout: Duration,
    /// On shutdown, how long transfers in flight may take to finish.
    pub drain: Duration,
    /// How often live sessions are checked against their tenant's credentials.
    pub credential_check: Duration,
    /// TCP balancers whose connections start with a PROXY protocol header naming the client
    /// ([`crate::proxy`]); empty: none is read.
    pub proxy_protocol_from: Vec<sluice_core::net::IpRange>,
}

impl Default for SshSettings {
    fn default() -> Self {
        Self {
            compat: false,
            post_quantum_only: false,
            login_grace: Duration::from_secs(30),
            max_auth_attempts: 6,
            max_unauthenticated_per_ip: 10,
            max_sessions_per_tenant: 20,
            max_channels_per_connection: 10,
            idle_timeout: Duration::from_secs(600),
            drain: Duration::from_secs(30),
            credential_check: Duration::from_secs(1),
            proxy_protocol_from: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error(transparent)]
    Russh(#[from] russh::Error),
    #[error("store: {0}")]
    Store(#[from] sluice_store::StoreError),
    /// The defender ended the connection (the source is banned, or the account reached its
    /// limit of failed logins).
    #[error("{0}")]
    Refused(String),
}

const STRICT_KEX_AND_EXT: [kex::Name; 2] =
    [kex::EXTENSION_SUPPORT_AS_SERVER, kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER];

/// The public-key signature algorithms sluice accepts from clients, best first.
const CLIENT_KEY_ALGORITHMS: &[russh::keys::Algorithm] = {
    use russh::keys::Algorithm;
    use russh::keys::EcdsaCurve;
    use russh::keys::HashAlg;
    &[
        Algorithm::Ed25519,
        Algorithm::Ecdsa { curve: EcdsaCurve::NistP256 },
        Algorithm::Ecdsa { curve: EcdsaCurve::NistP384 },
        Algorithm::Ecdsa { curve: EcdsaCurve::NistP521 },
        Algorithm::Rsa { hash: Some(HashAlg::Sha512) },
        Algorithm::Rsa { hash: Some(HashAlg::Sha256) },
    ]
};

/// The algorithms sluice offers: no SHA-1, no CBC, encrypt-then-MAC only unless `compat`.
pub fn algorithms(compat: bool, post_quantum_only: bool) -> Preferred {
    let mut kexes = vec![kex::MLKEM768X25519_SHA256];
    if !post_quantum_only {
        kexes.extend([kex::CURVE25519, kex::CURVE25519_PRE_RFC_8731]);
    }
    kexes.extend(STRICT_KEX_AND_EXT);
    let ciphers = vec![
        cipher::AES_128_GCM,
        cipher::AES_256_GCM,
        cipher::CHACHA20_POLY1305,
        cipher::AES_256_CTR,
        cipher::AES_192_CTR,
        cipher::AES_128_CTR,
    ];
    let mut macs = vec![mac::HMAC_SHA256_ETM, mac::HMAC_SHA512_ETM];
    if compat {
        macs.extend([mac::HMAC_SHA256, mac::HMAC_SHA512]);
    }
    Preferred {
        kex: Cow::Owned(kexes),
        // Host keys: only those sluice has (Ed25519) are offered. The same list is the
        // `server-sig-algs` a client reads to choose how to sign with its own key: without
        // ECDSA and rsa-sha2 there, OpenSSH and paramiko cannot use an RSA or ECDSA key at
        // all. SHA-1 `ssh-rsa` stays out.
        key: Cow::Borrowed(CLIENT_KEY_ALGORITHMS),
        cipher: Cow::Owned(ciphers),
        mac: Cow::Owned(macs),
        ..Preferred::DEFAULT
    }
}

/// russh's configuration, tuned for throughput (see DEVELOPERS.md, Known traps). `window` is
/// what a client may send on a channel before sluice processed it (refilled as it does).
pub fn russh_config(host_key: PrivateKey, settings: &SshSettings, window: u32) -> russh::server::Config {
    let mut methods = MethodSet::empty();
    methods.push(MethodKind::PublicKey);
    methods.push(MethodKind::Password);
    russh::server::Config {
        server_id: russh::SshId::Standard(Cow::Borrowed("SSH-2.0-sluice")),
        methods,
        auth_rejection_time: Duration::from_millis(300),
        auth_rejection_time_initial: Some(Duration::from_millis(0)),
        keys: vec![host_key],
        window_size: window,
        // The patched russh (vendor/README.md) refills a channel's window only as the session
        // reports requests processed, and disconnects a client that sends beyond it: what a
        // channel holds is bounded by the window, and the session never stops reading.
        window_refill_on_consumption: true,
        maximum_packet_size: 64 << 10,
        // The session reader drains this queue continuously (see session.rs), so it can be
        // short; each entry holds up to one 64 KiB packet.
        channel_buffer_size: 64,
        event_buffer_size: 64,
        preferred: algorithms(settings.compat, settings.post_quantum_only),
        max_auth_attempts: settings.max_auth_attempts,
        inactivity_timeout: Some(settings.idle_timeout),
        // A client that vanished (a dropped VPN, a sleeping laptop) is found within about
        // three minutes, and its session slot freed, rather than after the idle timeout.
        keepalive_interval: Some(Duration::from_secs(60)),
        keepalive_max: 3,
        nodelay: true,
        ..Default::default()
    }
}

pub struct SftpServer {
    shared: Arc<SftpShared>,
    tenants_root: PathBuf,
    config: Arc<russh::server::Config>,
    settings: SshSettings,
    /// Connections that have not logged in yet, per source (an IPv4 address or IPv6 /64):
    /// `max_unauthenticated_per_ip` of them proceed, a few more wait for a slot.
    unauthenticated: Mutex<HashMap<Source, SourceSlots>>,
    /// All connections that have not logged in yet: at most half the descriptor budget, so
    /// that logged-in tenants always have the other half.
    unauthenticated_total: AtomicUsize,
    live: Mutex<LiveConnections>,
    /// argon2id needs 19 MiB per verification: a login storm must queue, not allocate
    /// gigabytes (200 concurrent logins measured 3.7 GiB peak before this bound).
    password_checks: tokio::sync::Semaphore,
    /// (folder, required file name) of every import type that has one: what a tenant with
    /// root routing may upload at `/` (the names of the types whose folders it has).
    root_files: Vec<(FolderName, String)>,
    /// `[storage] backend = "s3"`: the bucket tenants' exports are read from, and the private
    /// folder files read from it are copied to.
    bucket: Option<(Arc<sluice_files::Bucket>, PathBuf)>,
}

/// How a connection logged in: what must still be true for it to stay.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Login {
    /// The tenant's password hash (PHC string) when the connection logged in with it.
    Password(String),
    /// The authorised key it logged in with (its base64 blob).
    Key(String),
}

/// An authenticated connection: its tenant, how it logged in, and how to end it.
struct LiveConnection {
    tenant: TenantName,
    login: Login,
    /// Cancelled, with `reason` set, to end the connection (tenant disabled, key removed).
    revoke: CancellationToken,
    reason: Arc<Mutex<Option<String>>>,
}

#[derive(Default)]
struct LiveConnections {
    next_id: u64,
    by_id: HashMap<u64, LiveConnection>,
    per_tenant: HashMap<TenantName, usize>,
}

impl SftpServer {
    pub fn new(
        shared: Arc<SftpShared>,
        tenants_root: PathBuf,
        host_key: PrivateKey,
        settings: SshSettings,
    ) -> Self {
        Self {
            config: Arc::new(russh_config(host_key, &settings, shared.limits.window_bytes)),
            shared,
            tenants_root,
            settings,
            unauthenticated: Mutex::new(HashMap::new()),
            unauthenticated_total: AtomicUsize::new(0),
            live: Mutex::default(),
            password_checks: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            ),
            root_files: Vec::new(),
            bucket: None,
        }
    }

    /// Tenants' exports are read from `bucket`, through copies in `spool`.
    pub fn with_bucket(mut self, bucket: Option<Arc<sluice_files::Bucket>>, spool: PathBuf) -> Self {
        self.bucket = bucket.map(|b| (b, spool));
        self
    }

    /// The required file names of the import types, by their folders (see `root_files`).
    pub fn with_root_files(mut self, root_files: Vec<(FolderName, String)>) -> Self {
        self.root_files = root_files;
        self
    }

    pub fn store(&self) -> &SharedStore {
        &self.shared.store
    }

    fn live(&self) -> MutexGuard<'_, LiveConnections> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Accepts connections until `shutdown` resolves; then stops accepting, lets transfers
    /// in flight finish for [`SshSettings::drain`], and disconnects every client.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let stop = CancellationToken::new();
        let mut connections = JoinSet::new();
        let watcher_stop = CancellationToken::new();
        let watcher = tokio::spawn(self.clone().watch_credentials(watcher_stop.clone()));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => {
                    let (socket, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            warn!("accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let accepted_at = Instant::now();
                    if self.settings.proxy_protocol_from.iter().any(|r| r.contains(peer.ip())) {
                        // From a balancer: the client is named by the header, read on a task of
                        // its own (a slow balancer holds up no one else), then admitted as any.
                        // Until then it counts with the connections logging in (the server's cap).
                        let Some(fd) = self.shared.fds.try_take_connection() else {
                            warn!(%peer, "refusing connection: the server is at its open-file limit ({} in use)",
                                self.shared.fds.in_use());
                            continue;
                        };
                        let phase = match HeaderPhase::take(&self) {
                            Ok(phase) => phase,
                            Err(why) => {
                                info!(balancer = %peer, "refusing connection: {why}");
                                continue;
                            }
                        };
                        let (me, stop) = (self.clone(), stop.clone());
                        connections.spawn(async move {
                            let mut socket = socket;
                            let read = tokio::select! {
                                read = crate::proxy::read_header(&mut socket, me.settings.login_grace) => read,
                                _ = stop.cancelled() => return,
                            };
                            drop(phase);
                            let client = match read {
                                Ok(Some(client)) => client,
                                // The balancer's own (a health check, which only connects):
                                // closed, never served, never counted or refused as banned (a
                                // ban of its address would take every node out of service).
                                Ok(None) => return debug!(balancer = %peer, "the balancer's own connection: closed"),
                                Err(e) => return info!(balancer = %peer, "disconnecting: {e}"),
                            };
                            if let Some((socket, slot)) = me.admit(socket, client) {
                                let _fd = fd;
                                me.connection(socket, client, slot, stop, accepted_at).await
                            }
                        });
                        continue;
                    }
                    let Some(fd) = self.shared.fds.try_take_connection() else {
                        warn!(%peer, "refusing connection: the server is at its open-file limit ({} in use)",
                            self.shared.fds.in_use());
                        continue;
                    };
                    let Some((socket, slot)) = self.admit(socket, peer) else { continue };
                    let me = self.clone();
                    let stop = stop.clone();
                    connections.spawn(async move {
                        let _fd = fd;
                        me.connection(socket, peer, slot, stop, accepted_at).await
                    });
                }
            }
        }
        drop(listener);
        self.shared.draining.store(true, Ordering::Release);
        info!(
            "SFTP server stopping: {} connection(s) open; transfers in flight may take {:?} to finish",
            connections.len(),
            self.settings.drain
        );
        stop.cancel();
        let drain = async { while connections.join_next().await.is_some() {} };
        // The credential watcher goes on while transfers drain: a tenant disabled now still
        // loses its sessions at once.
        if tokio::time::timeout(self.settings.drain + Duration::from_secs(5), drain).await.is_err() {
            connections.abort_all();
        }
        watcher_stop.cancel();
        let _ = watcher.await;
    }

    /// A new connection from `client` (the peer, or the client a balancer named): refused
    /// while the client is banned (told why) or beyond its share of unauthenticated slots.
    fn admit(
        self: &Arc<Self>,
        socket: tokio::net::TcpStream,
        client: SocketAddr,
    ) -> Option<(tokio::net::TcpStream, UnauthenticatedSlot)> {
        if let Err(refusal) = self.shared.defender.admit(client.ip(), Service::Sftp) {
            // Lines before the version string are allowed (RFC 4253, 4.2); clients such as
            // OpenSSH show them.
            let _ = socket.try_write(format!("{refusal}\r\n").as_bytes());
            return None;
        }
        // A resource limit, not a sign of guessing: a school's NAT or a vendor's batch may
        // open many connections at once. Not held against the source.
        let slot = match UnauthenticatedSlot::queue(self, client.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                info!(peer = %client, "refusing connection: {why}");
                return None;
            }
        };
        let _ = socket.set_nodelay(true);
        Some((socket, slot))
    }

    async fn connection(
        self: Arc<Self>,
        socket: tokio::net::TcpStream,
        peer: SocketAddr,
        slot: UnauthenticatedSlot,
        server_stop: CancellationToken,
        accepted_at: Instant,
    ) {
        // A connection beyond its source's share of unauthenticated slots waits for one,
        // within the grace (from its TCP accept), before anything is said to it.
        let deadline = accepted_at + self.settings.login_grace;
        let mut slot = slot;
        if !slot.wait(deadline).await {
            info!(%peer, "disconnecting: no free login slot for this address within {:?}", self.settings.login_grace);
            return;
        }
        let share = Arc::new(ConnectionShare::new());
        // However this task ends (even aborted), the connection's sessions stop with it.
        let _ended = share.ended.clone().drop_guard();
        let authenticated = CancellationToken::new();
        let trail = Arc::new(AuthTrail::default());
        let revoke = CancellationToken::new();
        let reason = Arc::new(Mutex::new(None));
        let handler = Handler {
            server: self.clone(),
            peer,
            share: share.clone(),
            authenticated: authenticated.clone(),
            trail: trail.clone(),
            revoke: revoke.clone(),
            reason: reason.clone(),
            unauthenticated_slot: Some(slot),
            tenant: None,
            live: None,
            channels: HashMap::new(),
        };
        // The grace period covers the whole handshake (and the wait for a slot above): a
        // client that never sends its version line is dropped as surely as one that never
        // authenticates.
        let started = tokio::time::timeout_at(
            deadline,
            russh::server::run_stream(self.config.clone(), socket, handler),
        );
        let running = match started.await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                debug!(%peer, "connection ended before key exchange: {e}");
                // Closing before (or right after reading) the version line is what health
                // checks and monitors do: not an error. Garbage instead of a version is one.
                let event = match e {
                    SshError::Russh(
                        russh::Error::IO(_)
                        | russh::Error::Disconnect
                        | russh::Error::HUP
                        | russh::Error::SendError,
                    ) => Event::NoAuth,
                    _ => Event::ProtocolError,
                };
                self.shared.defender.record(peer.ip(), Service::Sftp, event);
                return;
            }
            Err(_) => {
                info!(%peer, "disconnecting: not authenticated within {:?}", self.settings.login_grace);
                self.shared.defender.record(peer.ip(), Service::Sftp, Event::LimitHit);
                return;
            }
        };
        let handle = running.handle();
        tokio::pin!(running);
        let mut authed = false;
        let mut draining: Option<Instant> = None;
        let idle = self.settings.idle_timeout;
        let disconnect = |why: String| {
            let handle = handle.clone();
            async move {
                let _ = handle.disconnect(Disconnect::ByApplication, why, "en".into()).await;
            }
        };
        let ended_by_us = loop {
            // Checked again on every turn: the grace ends at authentication, the idle
            // clock only runs after it, and a drain waits for the transfers in flight.
            let idle_check = Instant::now() + idle.saturating_sub(share.activity.idle_for());
            tokio::select! {
                result = &mut running => {
                    if let Err(e) = result {
                        self.log_session_error(peer, &e);
                    }
                    break None;
                }
                _ = authenticated.cancelled(), if !authed => authed = true,
                _ = tokio::time::sleep_until(deadline), if !authed => {
                    if authenticated.is_cancelled() {
                        authed = true;
                        continue;
                    }
                    info!(%peer, "disconnecting: not authenticated within {:?}", self.settings.login_grace);
                    // Only a client that never tried to log in is held against its source: one
                    // whose password waited its turn for a check (a burst of logins) is not.
                    if !trail.tried_anything() {
                        self.shared.defender.record(peer.ip(), Service::Sftp, Event::LimitHit);
                    }
                    break Some("login grace time exceeded".to_owned());
                }
                _ = tokio::time::sleep_until(idle_check), if authed && !idle.is_zero() => {
                    if share.activity.idle_for() >= idle {
                        info!(%peer, "disconnecting: no SFTP traffic for {idle:?}");
                        break Some(format!("idle for {} seconds", idle.as_secs()));
                    }
                }
                _ = revoke.cancelled() => {
                    let why = reason.lock().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_default();
                    break Some(why);
                }
                _ = server_stop.cancelled(), if draining.is_none() => {
                    draining = Some(Instant::now() + self.settings.drain);
                }
                _ = tokio::time::sleep(Duration::from_millis(100)), if draining.is_some() => {
                    let open = share.open_handles.load(Ordering::Acquire);
                    if !authed || open == 0 {
                        break Some("server shutting down".to_owned());
                    }
                    if draining.is_some_and(|until| Instant::now() >= until) {
                        info!(%peer, open, "disconnecting: transfers still open when the shutdown grace ended");
                        break Some("server shutting down".to_owned());
                    }
                }
            }
        };
        let ended_by_us_flag = ended_by_us.is_some();
        if let Some(why) = ended_by_us {
            // The session loop may be stuck (a client that reads nothing): say goodbye if it
            // can be said, then drop the connection either way.
            let bye = async {
                disconnect(why).await;
                let _ = running.as_mut().await;
            };
            let _ = tokio::time::timeout(Duration::from_secs(3), bye).await;
        }
        if !authenticated.is_cancelled() {
            // Left without logging in: offered keys that were all refused count once as a
            // failed login (clients offer several keys; each offer is not a guess).
            if trail.key_refused.load(Ordering::Acquire) && !trail.password_tried.load(Ordering::Acquire) {
                self.shared.defender.record(peer.ip(), Service::Sftp, Event::LoginFailed);
            } else if !trail.password_tried.load(Ordering::Acquire) && !ended_by_us_flag {
                self.shared.defender.record(peer.ip(), Service::Sftp, Event::NoAuth);
            }
        }
    }

    /// Ends live connections whose tenant was disabled or removed, whose password changed,
    /// or whose key was removed, within [`SshSettings::credential_check`] of the change
    /// (made by this process or another one on the same database); forgets old recent uploads.
    async fn watch_credentials(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.settings.credential_check);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.shared.tenants.sweep(self.shared.limits.recent_upload);
            let tenants: Vec<TenantName> = self.live().per_tenant.keys().cloned().collect();
            if tenants.is_empty() {
                continue;
            }
            let store = self.shared.store.clone();
            let looked_up = tokio::task::spawn_blocking(move || {
                tenants
                    .into_iter()
                    .map(|name| {
                        let tenant = store.tenant(name.as_str());
                        let keys = store.keys(name.as_str());
                        (name, tenant, keys)
                    })
                    .collect::<Vec<_>>()
            })
            .await;
            let Ok(looked_up) = looked_up else { continue };
            let live = self.live();
            for (name, tenant, keys) in looked_up {
                let (Ok(tenant), Ok(keys)) = (tenant, keys) else {
                    continue; // the database is busy or gone: check again next time
                };
                for conn in live.by_id.values().filter(|c| c.tenant == name) {
                    if let Some(why) = revoked(tenant.as_ref(), &keys, &conn.login)
                        && !conn.revoke.is_cancelled()
                    {
                        info!(tenant = %name, "ending session: {why}");
                        *conn.reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.to_owned());
                        conn.revoke.cancel();
                    }
                }
            }
        }
    }

    fn log_session_error(&self, peer: SocketAddr, error: &SshError) {
        match error {
            SshError::Russh(russh::Error::NoCommonAlgo { kind, ours, theirs }) => {
                // A host key type sluice has not is no misbehaviour: ssh-keyscan asks for each
                // type on a connection of its own, and a monitor scanning every few minutes (or
                // all clients behind one balancer's address) would be banned for it.
                if !matches!(kind, russh::AlgorithmKind::Key) {
                    self.shared.defender.record(peer.ip(), Service::Sftp, Event::ProtocolError);
                }
                warn!(
                    %peer,
                    "algorithm negotiation failed: no common {kind:?} algorithm. The client offered [{}]; sluice allows [{}]. {}",
                    theirs.join(", "),
                    ours.join(", "),
                    negotiation_hint(kind, theirs, self.settings.compat)
                );
            }
            SshError::Russh(russh::Error::IO(e)) => debug!(%peer, "connection closed: {e}"),
            SshError::Refused(why) => info!(%peer, "connection ended: {why}"),
            other => debug!(%peer, "connection ended: {other}"),
        }
    }
}

/// Why a connection that logged in as `login` may no longer stay, if it may not.
fn revoked(tenant: Option<&Tenant>, keys: &[AuthorizedKey], login: &Login) -> Option<&'static str> {
    let Some(tenant) = tenant else { return Some("the tenant was removed") };
    if tenant.disabled {
        return Some("the tenant was disabled");
    }
    match login {
        Login::Password(phc) if tenant.password.as_ref().is_none_or(|p| p.as_phc() != phc) => {
            Some("the tenant's password was changed")
        }
        Login::Key(blob) if !keys.iter().any(|k| &k.key_base64 == blob) => {
            Some("the key it logged in with was removed")
        }
        _ => None,
    }
}

/// What an operator can do about a client that failed negotiation.
pub fn negotiation_hint(kind: &russh::AlgorithmKind, theirs: &[String], compat: bool) -> String {
    let offers = |names: &[&str]| theirs.iter().any(|t| names.contains(&t.as_str()));
    match kind {
        russh::AlgorithmKind::Mac if !compat && offers(&["hmac-sha2-256", "hmac-sha2-512"]) => {
            "This client cannot do encrypt-then-MAC (libssh2 before 1.11 does this); set `compat = true` under [sftp] \
             in the config, or SLUICE_SFTP_COMPAT=1, to admit hmac-sha2-256/512 with the CTR ciphers."
                .into()
        }
        // ssh-keyscan asks for one host key type per connection: its RSA probe lands here.
        russh::AlgorithmKind::Key => "sluice's host key is Ed25519 and this client asked for other host key types \
             only: expected from ssh-keyscan (one type per connection); any other client needs Ed25519 host keys \
             (OpenSSH 6.5 and later, PuTTY 0.68, paramiko 2.2)."
            .into(),
        _ => "No sluice setting admits what this client offers (SHA-1, CBC and other weak algorithms are never \
              enabled); update the client's SSH library."
            .into(),
    }
}

/// The unauthenticated connections of one source: slots, and how many hold or wait for one.
struct SourceSlots {
    slots: Arc<tokio::sync::Semaphore>,
    queued: usize,
}

/// A connection that has not authenticated yet, counted against its source: it holds one of
/// the source's slots, or waits for one.
struct UnauthenticatedSlot {
    server: Arc<SftpServer>,
    source: Source,
    slots: Arc<tokio::sync::Semaphore>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// A connection from a balancer while its PROXY header is read: counted with the connections
/// logging in, against the server's cap (its source is not known yet).
struct HeaderPhase {
    server: Arc<SftpServer>,
}

impl HeaderPhase {
    fn take(server: &Arc<SftpServer>) -> Result<Self, String> {
        let total_cap = (server.shared.fds.limit() / 2).max(1);
        if server.unauthenticated_total.fetch_add(1, Ordering::AcqRel) >= total_cap {
            server.unauthenticated_total.fetch_sub(1, Ordering::AcqRel);
            return Err(format!(
                "{total_cap} connections are logging in already (half the descriptor budget)"
            ));
        }
        Ok(Self { server: server.clone() })
    }
}

impl Drop for HeaderPhase {
    fn drop(&mut self) {
        self.server.unauthenticated_total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Connections a source may have waiting for a slot, per slot it has.
const WAITING_PER_SLOT: usize = 4;

impl UnauthenticatedSlot {
    /// Counts a new connection against its source and the server, or says why it is refused.
    fn queue(server: &Arc<SftpServer>, ip: IpAddr) -> Result<Self, String> {
        let total_cap = (server.shared.fds.limit() / 2).max(1);
        if server.unauthenticated_total.load(Ordering::Acquire) >= total_cap {
            return Err(format!(
                "{total_cap} connections are logging in already (half the descriptor budget)"
            ));
        }
        let cap = server.settings.max_unauthenticated_per_ip;
        let source = Source::of(ip);
        let mut map = server.unauthenticated.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map
            .entry(source)
            .or_insert_with(|| SourceSlots { slots: Arc::new(tokio::sync::Semaphore::new(cap)), queued: 0 });
        if entry.queued >= cap * (1 + WAITING_PER_SLOT) {
            return Err(format!(
                "{} connections from this address are logging in or waiting to",
                entry.queued
            ));
        }
        entry.queued += 1;
        server.unauthenticated_total.fetch_add(1, Ordering::AcqRel);
        Ok(Self { server: server.clone(), source, slots: entry.slots.clone(), permit: None })
    }

    /// Waits for one of the source's slots until `deadline`; false if none came free.
    async fn wait(&mut self, deadline: Instant) -> bool {
        match tokio::time::timeout_at(deadline, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => {
                self.permit = Some(permit);
                true
            }
            _ => false,
        }
    }
}

impl Drop for UnauthenticatedSlot {
    fn drop(&mut self) {
        self.permit.take();
        self.server.unauthenticated_total.fetch_sub(1, Ordering::AcqRel);
        let mut map = self.server.unauthenticated.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = map.get_mut(&self.source) {
            entry.queued -= 1;
            if entry.queued == 0 {
                map.remove(&self.source);
            }
        }
    }
}

/// An authenticated connection in the server's registry, counted against its tenant;
/// removed on drop.
struct LiveSlot {
    server: Arc<SftpServer>,
    id: u64,
}

impl LiveSlot {
    fn take(server: &Arc<SftpServer>, connection: LiveConnection) -> Option<Self> {
        let mut live = server.live();
        let count = live.per_tenant.entry(connection.tenant.clone()).or_insert(0);
        if *count >= server.settings.max_sessions_per_tenant {
            if *count == 0 {
                live.per_tenant.remove(&connection.tenant);
            }
            return None;
        }
        *count += 1;
        live.next_id += 1;
        let id = live.next_id;
        live.by_id.insert(id, connection);
        server.shared.metrics.session_opened();
        Some(Self { server: server.clone(), id })
    }
}

impl Drop for LiveSlot {
    fn drop(&mut self) {
        self.server.shared.metrics.session_closed();
        let mut live = self.server.live();
        if let Some(conn) = live.by_id.remove(&self.id)
            && let Some(count) = live.per_tenant.get_mut(&conn.tenant)
        {
            *count -= 1;
            if *count == 0 {
                live.per_tenant.remove(&conn.tenant);
            }
        }
    }
}

/// One SSH connection.
struct Handler {
    server: Arc<SftpServer>,
    peer: SocketAddr,
    share: Arc<ConnectionShare>,
    /// Cancelled when the connection authenticates (ends the login grace).
    authenticated: CancellationToken,
    /// What the client tried before it logged in (or left), for the defender.
    trail: Arc<AuthTrail>,
    revoke: CancellationToken,
    reason: Arc<Mutex<Option<String>>>,
    unauthenticated_slot: Option<UnauthenticatedSlot>,
    tenant: Option<Tenant>,
    live: Option<LiveSlot>,
    /// Session channels opened but not yet running SFTP.
    channels: HashMap<ChannelId, Channel<Msg>>,
}

enum Credential {
    Password(String),
    Key(PublicKey),
}

/// What checking a credential found.
enum Checked {
    Valid(Box<Tenant>, Login),
    /// Wrong: `known` says whether the account exists (a disabled tenant does).
    Invalid {
        known: bool,
    },
}

/// The login attempts of one connection, as far as the defender cares.
#[derive(Default)]
struct AuthTrail {
    password_tried: AtomicBool,
    key_refused: AtomicBool,
}

impl AuthTrail {
    fn tried_anything(&self) -> bool {
        self.password_tried.load(Ordering::Acquire) || self.key_refused.load(Ordering::Acquire)
    }
}

/// An argon2id hash of nothing anyone knows, made once, to check passwords against when there
/// is no real hash to check (see [`Handler::check`]).
fn dummy_password_hash() -> Option<&'static sluice_core::PasswordHash> {
    static DUMMY: std::sync::OnceLock<Option<sluice_core::PasswordHash>> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| sluice_core::PasswordHash::create("sluice: no such account").ok()).as_ref()
}

/// After a refused attempt every method stays on offer (until `max_auth_attempts`): a
/// client that typed a wrong password may type the right one next.
fn reject_keep_methods() -> Auth {
    let mut methods = MethodSet::empty();
    methods.push(MethodKind::PublicKey);
    methods.push(MethodKind::Password);
    Auth::Reject { proceed_with_methods: Some(methods), partial_success: false }
}

impl Handler {
    /// Looks the tenant up and checks the credential on a blocking thread (argon2 is slow
    /// by design). Returns the tenant and how it logged in when the credential is valid and
    /// the tenant enabled.
    async fn check(&self, user: &str, credential: Credential) -> Result<Checked, SshError> {
        let store = self.server.shared.store.clone();
        let user = user.to_owned();
        tokio::task::spawn_blocking(move || -> Result<Checked, SshError> {
            // A password for an account that cannot log in with one costs the same argon2
            // check as any other, so the time taken does not tell which names exist.
            let spend_a_check = |credential: &Credential| {
                if let Credential::Password(pw) = credential {
                    let _ = dummy_password_hash().map(|h| h.verify(pw));
                }
            };
            let Some(tenant) = store.tenant(&user)? else {
                spend_a_check(&credential);
                return Ok(Checked::Invalid { known: false });
            };
            if tenant.disabled {
                spend_a_check(&credential);
                return Ok(Checked::Invalid { known: true });
            }
            if tenant.password.is_none() {
                spend_a_check(&credential);
            }
            let login = match &credential {
                Credential::Password(pw) => tenant
                    .password
                    .as_ref()
                    .filter(|h| h.verify(pw))
                    .map(|h| Login::Password(h.as_phc().to_owned())),
                Credential::Key(offered) => store
                    .keys(&user)?
                    .into_iter()
                    .find(|k| {
                        PublicKey::from_openssh(&format!("{} {}", k.algorithm, k.key_base64))
                            .is_ok_and(|stored| stored.key_data() == offered.key_data())
                    })
                    .map(|k| Login::Key(k.key_base64)),
            };
            Ok(match login {
                Some(l) => Checked::Valid(Box::new(tenant), l),
                None => Checked::Invalid { known: true },
            })
        })
        .await
        .map_err(|e| SshError::Russh(russh::Error::IO(std::io::Error::other(e))))?
    }

    fn reject(&self, user: &str, method: &str, why: &str) -> Auth {
        self.server.shared.metrics.failed_login();
        info!(peer = %self.peer, user, method, "login failed: {why}");
        reject_keep_methods()
    }

    fn accept(&mut self, tenant: Tenant, login: Login, method: &str) -> Auth {
        let connection = LiveConnection {
            tenant: tenant.name.clone(),
            login,
            revoke: self.revoke.clone(),
            reason: self.reason.clone(),
        };
        let Some(slot) = LiveSlot::take(&self.server, connection) else {
            return self.reject(
                tenant.name.as_str(),
                method,
                &format!("tenant already has {} sessions open", self.server.settings.max_sessions_per_tenant),
            );
        };
        info!(peer = %self.peer, tenant = %tenant.name, method, "login");
        self.audit_login(tenant.name.as_str(), method, true);
        self.live = Some(slot);
        self.tenant = Some(tenant);
        self.unauthenticated_slot = None;
        self.share.activity.touch();
        self.authenticated.cancel();
        Auth::Accept
    }

    /// An SFTP login to a tenant, or a wrong password for one, in the audit log (off the
    /// connection's task). Failures for names that are no tenant are not: scanners try
    /// `root` and `admin` all day, and the defender's bans record those.
    fn audit_login(&self, tenant: &str, method: &str, done: bool) {
        use sluice_core::audit::{Actor, ActorKind, AuditOutcome, NewAuditEntry, action};
        let store = self.server.shared.store.clone();
        let actor =
            Actor { kind: ActorKind::Account, name: tenant.to_owned(), source: self.peer.ip().to_string() };
        let (tenant, target) = (tenant.to_owned(), format!("sftp, {method}"));
        tokio::task::spawn_blocking(move || {
            let entry = NewAuditEntry {
                tenant: Some(&tenant),
                actor: &actor,
                action: action::SFTP_LOGIN,
                target: &target,
                outcome: if done { AuditOutcome::Done } else { AuditOutcome::Refused },
                before: None,
                after: None,
            };
            if let Err(e) = store.record_audit(&entry) {
                warn!("the audit log could not be written: {e}");
            }
        });
    }

    fn tree(&self, tenant: &Tenant) -> TenantTree {
        let folders = tenant.layout.import_folders();
        let names: Vec<(FolderName, String)> =
            self.server.root_files.iter().filter(|(f, _)| folders.contains(f)).cloned().collect();
        TenantTree {
            layout: tenant.layout.clone().routed(tenant.routing, &names),
            root: self.server.tenants_root.join(tenant.name.as_str()),
            bucket: self.server.bucket.as_ref().map(|(bucket, spool)| crate::fs::TreeBucket {
                bucket: bucket.clone(),
                tenant: tenant.name.clone(),
                spool: spool.clone(),
            }),
        }
    }
}

impl russh::server::Handler for Handler {
    type Error = SshError;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(reject_keep_methods())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        self.trail.password_tried.store(true, Ordering::Release);
        let (ip, defender) = (self.peer.ip(), self.server.shared.defender.clone());
        let server = self.server.clone();
        let _slot = server.password_checks.acquire().await;
        // Banned, or the account took its share of failures: refused before any check (asked
        // while holding a password-check slot, so parallel guesses cannot all slip past).
        if let Err(refusal) = defender.login_attempt(ip, Service::Sftp, user) {
            self.server.shared.metrics.failed_login();
            return Err(SshError::Refused(format!("login as {user} refused: {refusal}")));
        }
        match self.check(user, Credential::Password(password.to_owned())).await? {
            Checked::Valid(tenant, login) => match defender.login_succeeded(ip, Service::Sftp, user) {
                Ok(()) => Ok(self.accept(*tenant, login, "password")),
                // Banned while the password was checked: answered like a failure that
                // brought the ban, so the answer does not tell the password was right.
                Err(refusal) => {
                    self.reject(user, "password", "the source was banned meanwhile");
                    Err(SshError::Refused(refusal.to_string()))
                }
            },
            Checked::Invalid { known } => {
                let auth = self.reject(user, "password", "unknown user, disabled tenant or wrong password");
                if known {
                    self.audit_login(user, "password", false);
                }
                match defender.login_failed(ip, Service::Sftp, user, known) {
                    FailedLogin::Counted => Ok(auth),
                    FailedLogin::Banned { .. } | FailedLogin::Refused(_) => Err(SshError::Refused(format!(
                        "login as {user} failed, and the address is now banned"
                    ))),
                }
            }
        }
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // Tell the client early whether signing with this key is worth it; not a failure.
        match self.check(user, Credential::Key(offer.public_key.clone())).await? {
            Checked::Valid(..) => Ok(Auth::Accept),
            Checked::Invalid { .. } => {
                self.trail.key_refused.store(true, Ordering::Release);
                Ok(reject_keep_methods())
            }
        }
    }

    async fn auth_publickey(&mut self, user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        match self.check(user, Credential::Key(key.public_key.clone())).await? {
            Checked::Valid(tenant, login) => {
                match self.server.shared.defender.login_succeeded(self.peer.ip(), Service::Sftp, user) {
                    Ok(()) => Ok(self.accept(*tenant, login, "publickey")),
                    Err(refusal) => Err(SshError::Refused(refusal.to_string())),
                }
            }
            Checked::Invalid { .. } => {
                self.trail.key_refused.store(true, Ordering::Release);
                Ok(self.reject(user, "publickey", "key not authorised or tenant disabled"))
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let open = self.channels.len() + self.share.sessions.load(Ordering::Acquire);
        if self.tenant.is_none() || open >= self.server.settings.max_channels_per_connection {
            if self.tenant.is_some() {
                info!(peer = %self.peer, open, "refusing a channel: {} per connection at most",
                    self.server.settings.max_channels_per_connection);
            }
            reply.reject(russh::ChannelOpenFailure::AdministrativelyProhibited).await;
            return Ok(());
        }
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (Some(tenant), true) = (&self.tenant, name == "sftp") else {
            session.channel_failure(id)?;
            return Ok(());
        };
        let Some(channel) = self.channels.remove(&id) else {
            session.channel_failure(id)?;
            return Ok(());
        };
        let tree = self.tree(tenant);
        if let Err(e) = tree.ensure_dirs() {
            warn!(tenant = %tenant.name, "cannot create the tenant's folders: {e}");
            session.channel_failure(id)?;
            return Ok(());
        }
        session.channel_success(id)?;
        let (read, write) = channel.split();
        let shared = self.server.shared.clone();
        let name: TenantName = tenant.name.clone();
        self.share.sessions.fetch_add(1, Ordering::AcqRel);
        let slot = SessionSlot(self.share.clone());
        tokio::spawn(session::run(shared, name, tree, slot, read, write));
        Ok(())
    }

    async fn data(&mut self, id: ChannelId, _data: &[u8], session: &mut Session) -> Result<(), Self::Error> {
        // Data on a channel that has not started SFTP would sit in its queue with nobody to
        // read it (and a full queue stalls the connection): the channel is closed instead.
        if self.channels.remove(&id).is_some() {
            info!(peer = %self.peer, "closing a channel that sent data before asking for SFTP");
            session.close(id)?;
        }
        Ok(())
    }

    async fn channel_close(&mut self, id: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        // A channel closed before it started SFTP no longer counts.
        self.channels.remove(&id);
        Ok(())
    }

    async fn shell_request(&mut self, id: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        refuse_non_sftp(id, session)
    }

    async fn exec_request(
        &mut self,
        id: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        refuse_non_sftp(id, session)
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        id: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(id)?;
        Ok(())
    }
}

fn refuse_non_sftp(id: ChannelId, session: &mut Session) -> Result<(), SshError> {
    session.extended_data(
        id,
        1,
        &b"sluice only serves SFTP; use an SFTP client such as sftp, FileZilla or WinSCP\r\n"[..],
    )?;
    session.channel_failure(id)?;
    session.close(id)?;
    Ok(())
}

/// Parses one OpenSSH public key line (`ssh-ed25519 AAAA... comment`) into what the store
/// keeps, refusing RSA keys under 2048 bits. The error says what to send instead.
pub fn parse_public_key(line: &str) -> Result<sluice_store::AuthorizedKey, String> {
    let key = russh::keys::PublicKey::from_openssh(line.trim()).map_err(|e| {
        format!("not an OpenSSH public key ({e}); expected a line like `ssh-ed25519 AAAA... comment` (options before the key are not supported)")
    })?;
    if let Some(rsa) = key.key_data().rsa() {
        let bits = rsa.key_size();
        if bits < 2048 {
            return Err(format!(
                "RSA key of {bits} bits is too weak; use ssh-ed25519 or RSA of at least 2048 bits"
            ));
        }
    }
    let openssh = key.to_openssh().map_err(|e| format!("cannot encode key: {e}"))?;
    let mut parts = openssh.split_whitespace();
    let (Some(algorithm), Some(blob)) = (parts.next(), parts.next()) else {
        return Err("cannot encode key".into());
    };
    Ok(sluice_store::AuthorizedKey {
        algorithm: algorithm.to_owned(),
        key_base64: blob.to_owned(),
        comment: key.comment().to_string(),
        fingerprint: key.fingerprint(russh::keys::HashAlg::Sha256).to_string(),
    })
}
