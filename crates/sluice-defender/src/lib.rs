//! The defender, as one service the SFTP server and the dashboard share: guessing on one counts
//! on the other. The rules are `sluice_core::defender` (pure); this crate holds them in memory
//! behind a mutex, counts (`Metrics`), logs `banned` and `unbanned`, and keeps bans in the
//! store, so that they survive a restart and `sluice defender list|unban` (another process)
//! sees and lifts them.
//!
//! Every call is synchronous and touches only memory: it never waits for the database. The
//! keeper task (`Defender::run`) saves new bans, notices bans lifted in the store (within a
//! second) and bans that ended, and forgets old ones.
//!
//! Nodes sharing a store ([`Sharing::Nodes`]: several `sluice serve` on one PostgreSQL
//! database) also count for each other: each node's keeper writes what its defender saw (the
//! events that score, failed and successful logins; one entry per source, service and kind a
//! second, with a count) to the store every second and counts the other nodes'
//! (`Scoreboard::absorb`), so that a source guessing through a load balancer is banned once its
//! failures on all the nodes together reach the threshold, and an account's limit of failed
//! logins is one limit across them. What happened in the last two seconds may not be counted
//! elsewhere yet: a burst sent to every node at once passes the threshold by what the nodes
//! check in that time. A node bans for its own events only, and a ban saved while another
//! node's for the same source is in force is not kept: each ban is saved and audited once.
//!
//! How a front door uses it:
//! - at accept, [`Defender::admit`]; refuse the connection when it says so;
//! - before checking a password, [`Defender::login_attempt`];
//! - after the check, [`Defender::login_failed`] or [`Defender::login_succeeded`];
//! - anything else a client does wrong, [`Defender::record`].

use sluice_core::defender::Scoreboard;
use sluice_core::metrics::{Metrics, Refused};
use sluice_core::net::Source;
use sluice_store::roles::*;
use sluice_store::{SharedStore, StoreError, now_ms};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

pub use sluice_core::defender::{Ban, DefenderConfig, Event, HumanDuration, Scores, Service};
use sluice_core::defender::{Happening, What};

/// Whether the defender counts what other servers on its store see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// The only server on its store (SQLite, one server per data directory).
    Alone,
    /// One of the nodes sharing the store (PostgreSQL): scores and account failures are
    /// counted across them.
    Nodes,
}

/// What a node keeps for the other nodes between two writes, at most, in entries (source,
/// service, what): a flood of more sources than that in a second is counted here, and bans
/// here, but only the first ones are told.
const MOST_UNSHARED: usize = 20_000;
/// What a node reads of the others' at a time, and at most in one second (entries: a
/// source's events of a second on one node are one). Beyond it, the reader goes on from where
/// it stopped at the next second, and falls behind while the flood lasts.
const HAPPENINGS_PAGE: usize = 5_000;
const MOST_ABSORBED: usize = 50_000;
/// How long what nodes share is kept in the store (they read it within a second or two; a
/// node that starts reads what the others saw in the last minute).
const HAPPENINGS_KEPT_MS: i64 = 60_000;

/// Why a connection or login was refused before any password was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The source is banned for `remaining` more.
    Banned { remaining: Duration },
    /// The account took its share of failed logins from all sources; it may try again after
    /// `retry_after`.
    AccountLimit { retry_after: Duration },
}

impl Refusal {
    /// When to try again (for `Retry-After`).
    pub fn retry_after(&self) -> Duration {
        match *self {
            Refusal::Banned { remaining } => remaining,
            Refusal::AccountLimit { retry_after } => retry_after,
        }
    }
}

/// The sentence a refused client is shown.
impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Refusal::Banned { remaining } => write!(
                f,
                "This address is temporarily blocked after too many failed attempts; try again in {}.",
                HumanDuration(remaining)
            ),
            Refusal::AccountLimit { retry_after } => write!(
                f,
                "Too many failed logins for this account; try again in {}.",
                HumanDuration(retry_after)
            ),
        }
    }
}

/// What a failed login led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailedLogin {
    /// Counted; the source may go on.
    Counted,
    /// This failure got the source banned for `duration`: answer it as a failure (it is one)
    /// and say that the source is now blocked.
    Banned { duration: Duration },
    /// The source was banned while its password was being checked: answer with the refusal,
    /// exactly as a success would be answered, so the answer does not tell which it was.
    Refused(Refusal),
}

pub struct Defender {
    state: Mutex<State>,
    /// Where bans are kept; `None` keeps them in memory only.
    store: Option<SharedStore>,
    /// This node's name among the nodes sharing the store ([`Sharing::Nodes`]): the process
    /// and the moment it started, so that it does not count what it saw itself twice.
    node: Option<String>,
    metrics: Arc<Metrics>,
    /// Wakes the keeper when a ban is waiting to be saved.
    wake: Notify,
}

struct State {
    board: Scoreboard,
    /// Bans not saved yet. The keeper does not take a ban missing from the store for lifted
    /// while it is here.
    unsaved: HashMap<Source, Ban>,
    /// What this node saw since the keeper last told the other nodes ([`Sharing::Nodes`]):
    /// per source, service and what, when it last happened and how many times (a source
    /// guessing in a flood of others is one entry, however fast it guesses).
    unshared: HashMap<(Source, Service, What), (i64, u32)>,
    /// What could not be kept for them (more than [`MOST_UNSHARED`] entries in a second).
    not_shared: u64,
}

impl Defender {
    /// A defender that keeps its bans in `store`, with the bans saved there put back.
    pub fn open(
        config: DefenderConfig,
        store: SharedStore,
        metrics: Arc<Metrics>,
        sharing: Sharing,
    ) -> Result<Arc<Self>, StoreError> {
        let now = now_ms();
        let remembered = store.bans(now - millis(config.max_ban_time))?;
        let mut board = Scoreboard::new(config);
        board.restore(remembered);
        let in_force = board.active_bans(now).len();
        if in_force > 0 {
            info!(bans = in_force, "defender: bans in force from before the restart");
        }
        let node = match sharing {
            Sharing::Alone => None,
            Sharing::Nodes => {
                let started = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                // (And a count, for defenders made in one process: tests.)
                static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Some(format!("{}-{started}-{n}", std::process::id()))
            }
        };
        Ok(Self::with(board, Some(store), metrics, node))
    }

    /// A defender that keeps nothing beyond this process (tests, and the web crate's default).
    pub fn in_memory(config: DefenderConfig, metrics: Arc<Metrics>) -> Arc<Self> {
        Self::with(Scoreboard::new(config), None, metrics, None)
    }

    fn with(
        board: Scoreboard,
        store: Option<SharedStore>,
        metrics: Arc<Metrics>,
        node: Option<String>,
    ) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                board,
                unsaved: HashMap::new(),
                unshared: HashMap::new(),
                not_shared: 0,
            }),
            store,
            node,
            metrics,
            wake: Notify::new(),
        })
    }

    /// Keeps `what` for the other nodes, when there are any.
    fn tell(&self, state: &mut State, source: Source, service: Service, what: What) {
        if self.node.is_none() || !state.board.config().enabled {
            return;
        }
        let full = state.unshared.len() >= MOST_UNSHARED;
        match state.unshared.get_mut(&(source, service, what.clone())) {
            Some((at, count)) => {
                *at = now_ms();
                *count = count.saturating_add(1);
            }
            None if full => state.not_shared += 1,
            None => {
                state.unshared.insert((source, service, what), (now_ms(), 1));
            }
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every change to the state is complete before the lock is let go; a panic elsewhere
        // leaves nothing half-done.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// At accept (SFTP) or before a login form is handled (dashboard): `Err` when `ip` is
    /// banned; refuse it then, and say for how long. Counted in `/metrics`.
    pub fn admit(&self, ip: IpAddr, service: Service) -> Result<(), Refusal> {
        let source = Source::of(ip);
        let now = now_ms();
        let remaining = self.state().board.ban(source, now).map(|b| b.remaining(now));
        match remaining {
            Some(remaining) => {
                self.metrics.refused(service, Refused::Banned);
                debug!(%source, service = service.as_str(), "refused: banned");
                Err(Refusal::Banned { remaining })
            }
            None => Ok(()),
        }
    }

    /// Something `ip` did wrong (see [`Event`]); bans it when its score reaches the threshold.
    pub fn record(&self, ip: IpAddr, service: Service, event: Event) {
        let (source, now) = (Source::of(ip), now_ms());
        let ban = {
            let mut state = self.state();
            if state.board.counts(source, event) && state.board.ban(source, now).is_none() {
                self.tell(&mut state, source, service, What::Event(event));
            }
            state.board.record(source, service, event, now)
        };
        if let Some(ban) = ban {
            self.banned(ban);
        }
    }

    /// Before checking a password for `account` (what the client typed: a tenant, an email
    /// address lower-cased), while holding a password-check slot: `Err` when `ip` is banned
    /// or the account took its share of failures; refuse without checking then.
    pub fn login_attempt(&self, ip: IpAddr, service: Service, account: &str) -> Result<(), Refusal> {
        self.admit(ip, service)?;
        let key = account_key(service, account);
        let refused = self.state().board.account_check(&key, Source::of(ip), now_ms());
        refused.map_err(|retry_after| {
            self.metrics.refused(service, Refused::AccountLimit);
            info!(source = %Source::of(ip), service = service.as_str(), account, "login refused: the account's limit of failed logins is reached");
            Refusal::AccountLimit { retry_after }
        })
    }

    /// The password for `account` was wrong; `known` says whether the account exists.
    pub fn login_failed(&self, ip: IpAddr, service: Service, account: &str, known: bool) -> FailedLogin {
        let source = Source::of(ip);
        let now = now_ms();
        let event = if known { Event::LoginFailed } else { Event::UnknownAccount };
        let outcome = {
            let mut state = self.state();
            let key = account_key(service, account);
            state.board.account_failed(&key, now);
            self.tell(&mut state, source, service, What::LoginFailed { event, account: key });
            match state.board.ban(source, now) {
                Some(ban) => Err(ban.remaining(now)),
                None => Ok(state.board.record(source, service, event, now)),
            }
        };
        match outcome {
            Err(remaining) => FailedLogin::Refused(Refusal::Banned { remaining }),
            Ok(Some(ban)) => {
                let duration = ban.duration();
                self.banned(ban);
                FailedLogin::Banned { duration }
            }
            Ok(None) => FailedLogin::Counted,
        }
    }

    /// The password (or key) was right. `Err` when `ip` was banned meanwhile (by guesses
    /// checked at the same time): refuse the login then, as a failure would be refused. On
    /// `Ok` the account's count starts over; the source's score does not.
    pub fn login_succeeded(&self, ip: IpAddr, service: Service, account: &str) -> Result<(), Refusal> {
        let source = Source::of(ip);
        let now = now_ms();
        let mut state = self.state();
        if let Some(ban) = state.board.ban(source, now) {
            let remaining = ban.remaining(now);
            drop(state);
            self.metrics.refused(service, Refused::Banned);
            return Err(Refusal::Banned { remaining });
        }
        let key = account_key(service, account);
        state.board.account_succeeded(&key, source, now);
        self.tell(&mut state, source, service, What::LoginSucceeded { account: key });
        Ok(())
    }

    fn banned(&self, ban: Ban) {
        self.metrics.banned();
        warn!(
            source = %ban.source,
            score = ban.score,
            duration = %HumanDuration(ban.duration()),
            ban = ban.count,
            reason = %ban.reason,
            "banned"
        );
        if self.store.is_some() {
            self.state().unsaved.insert(ban.source, ban);
            self.wake.notify_one();
        }
    }

    /// The keeper: saves bans, notices bans lifted in the store and bans that ended, forgets
    /// bans past remembering; until `shutdown`, then saves what is left. Nothing to do for a
    /// defender without a store.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let Some(store) = self.store.clone() else { return shutdown.await };
        let mut keeper = Keeper::new(self, store);
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let (stopping, ticked) = tokio::select! {
                _ = &mut shutdown => (true, false),
                _ = keeper.defender.wake.notified() => (false, false),
                _ = tick.tick() => (false, true),
            };
            // A ban made here is saved at once; the rest once a second, whatever wakes the
            // keeper (a burst of bans does not make it read the store back to back).
            keeper.save().await;
            if stopping {
                keeper.share().await;
                break;
            }
            if !ticked {
                continue;
            }
            keeper.share().await;
            keeper.reconcile().await;
            keeper.absorb().await;
            keeper.forget().await;
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Accounts of the SFTP server (tenants) and the dashboard (emails) are counted apart. The
/// name is what the client typed: control characters (a NUL, which PostgreSQL cannot store)
/// are U+FFFD, and it is cut as the scoreboard keeps it, so that nothing longer is told to
/// the other nodes either.
fn account_key(service: Service, account: &str) -> String {
    let account: String = account.chars().map(|c| if c.is_control() { '\u{fffd}' } else { c }).collect();
    sluice_core::defender::account_key(&format!("{}:{account}", service.as_str())).to_owned()
}

/// The keeper's work, a step at a time (tests drive it step by step).
struct Keeper {
    defender: Arc<Defender>,
    store: SharedStore,
    /// Sources banned at the last look, to tell when a ban ended.
    in_force: HashSet<Source>,
    last_forget: Option<tokio::time::Instant>,
    /// What was read of the other nodes' ([`Sharing::Nodes`]).
    read: ReadSoFar,
}

/// Where reading the other nodes' happenings goes on from. Rows are numbered as they are
/// written, but on PostgreSQL one numbered lower can become visible a moment after a higher
/// one (two nodes writing at once): each read goes back to where the read before last ended,
/// and the numbers seen since are skipped.
#[derive(Default)]
struct ReadSoFar {
    from: i64,
    last_end: i64,
    seen: std::collections::BTreeSet<i64>,
    last_forget: Option<tokio::time::Instant>,
}

/// A ban in the audit log (once, when it is saved): the defender did it, to that address.
fn audit_ban(store: &dyn Audit, ban: &Ban) {
    use sluice_core::audit::{Actor, ActorKind, AuditOutcome, NewAuditEntry, action};
    let source = ban.source.to_string();
    let actor = Actor { kind: ActorKind::System, name: "defender".to_owned(), source: source.clone() };
    let length = HumanDuration(Duration::from_millis(u64::try_from(ban.until_ms - ban.at_ms).unwrap_or(0)));
    let target = format!("{source} for {length} ({}; ban {} in a row)", ban.reason, ban.count);
    let entry = NewAuditEntry {
        tenant: None,
        actor: &actor,
        action: action::BAN,
        target: &target,
        outcome: AuditOutcome::Done,
        before: None,
        after: None,
    };
    if let Err(e) = store.record_audit(&entry) {
        warn!("the audit log could not be written: {e}");
    }
}

impl Keeper {
    fn new(defender: Arc<Defender>, store: SharedStore) -> Self {
        let in_force = defender.state().board.active_bans(now_ms()).into_iter().map(|b| b.source).collect();
        Self { defender, store, in_force, last_forget: None, read: ReadSoFar::default() }
    }

    /// Tells the other nodes what this one saw since the last time (none: nothing to do). What
    /// cannot be written now is not kept: it is about the last second, and the scores here
    /// counted it anyway.
    async fn share(&mut self) {
        let Some(node) = self.defender.node.clone() else { return };
        let (entries, not_shared) = {
            let mut state = self.defender.state();
            (std::mem::take(&mut state.unshared), std::mem::take(&mut state.not_shared))
        };
        let batch: Vec<Happening> = entries
            .into_iter()
            .map(|((source, service, what), (at_ms, count))| Happening {
                at_ms,
                source,
                service,
                what,
                count,
            })
            .collect();
        if not_shared > 0 {
            warn!(
                not_shared,
                "defender: more happened in a second than is told to the other nodes; this node counted it"
            );
        }
        if batch.is_empty() {
            return;
        }
        let store = self.store.clone();
        let n = batch.len();
        match tokio::task::spawn_blocking(move || store.share_happenings(&node, &batch)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(events = n, "defender: cannot tell the other nodes what this one saw: {e}"),
            Err(_) => {}
        }
    }

    /// Counts what the other nodes saw (none: nothing to do), and forgets, once a minute, what
    /// every node has read.
    async fn absorb(&mut self) {
        let Some(node) = self.defender.node.clone() else { return };
        let store = self.store.clone();
        let from = self.read.from;
        let read = tokio::task::spawn_blocking(move || {
            let (mut after, mut all) = (from, Vec::new());
            loop {
                let page = store.happenings_after(after, &node, HAPPENINGS_PAGE)?;
                let full = page.len() == HAPPENINGS_PAGE;
                if let Some((id, _)) = page.last() {
                    after = *id;
                }
                all.extend(page);
                if !full || all.len() >= MOST_ABSORBED {
                    return Ok::<_, StoreError>((all, full));
                }
            }
        })
        .await;
        let (read, capped) = match read {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => {
                warn!("defender: cannot read what the other nodes saw: {e}");
                return;
            }
            Err(_) => return,
        };
        let end = read.last().map_or(self.read.last_end, |(id, _)| *id).max(self.read.last_end);
        let mut unreadable = 0;
        {
            let now = now_ms();
            let mut state = self.defender.state();
            for (id, happening) in &read {
                if self.read.seen.insert(*id) {
                    match happening {
                        Some(h) => state.board.absorb(h, now),
                        None => unreadable += 1,
                    }
                }
            }
        }
        if unreadable > 0 {
            warn!(
                unreadable,
                "defender: another node told what this build does not know (a newer sluice?); passed over"
            );
        }
        // More than a second's worth to read: go on from the end (no going back for late ones).
        self.read.from = if capped { end } else { self.read.last_end };
        self.read.last_end = end;
        let from = self.read.from;
        self.read.seen.retain(|id| *id > from);
        let now = tokio::time::Instant::now();
        if self.read.last_forget.is_some_and(|at| now.duration_since(at) < Duration::from_secs(60)) {
            return;
        }
        self.read.last_forget = Some(now);
        let store = self.store.clone();
        if let Ok(Err(e)) =
            tokio::task::spawn_blocking(move || store.forget_happenings(HAPPENINGS_KEPT_MS)).await
        {
            warn!("defender: cannot forget what the nodes shared: {e}");
        }
    }

    /// Saves the bans not saved yet; a ban that cannot be saved now is tried again.
    async fn save(&mut self) {
        let pending: Vec<Ban> = self.defender.state().unsaved.values().cloned().collect();
        if pending.is_empty() {
            return;
        }
        let store = self.store.clone();
        let saved = tokio::task::spawn_blocking(move || {
            let mut saved = Vec::new();
            for ban in pending {
                match store.save_ban(&ban) {
                    // Kept: audited. Not kept: another node banned the source for the same
                    // guesses a moment before, and its ban is the one in force and audited.
                    Ok(kept) => {
                        if kept {
                            audit_ban(&*store, &ban);
                        }
                        saved.push(ban)
                    }
                    Err(e) => warn!(source = %ban.source, "defender: cannot save a ban (tried again in a second): {e}"),
                }
            }
            saved
        })
        .await
        .unwrap_or_default();
        let mut state = self.defender.state();
        for ban in saved {
            if state.unsaved.get(&ban.source) == Some(&ban) {
                state.unsaved.remove(&ban.source);
            }
        }
    }

    /// Lifts bans an operator lifted in the store (`sluice defender unban`), puts in force
    /// the bans other servers sharing the store made, and logs bans that ended.
    async fn reconcile(&mut self) {
        let now = now_ms();
        let (active, untracked) = {
            let mut state = self.defender.state();
            (state.board.active_bans(now), state.board.take_untracked())
        };
        if untracked > 0 {
            warn!(
                max_hosts = self.defender.state().board.config().max_hosts,
                "defender: every slot holds a ban; {untracked} events of new sources were not counted"
            );
        }
        // Read every second: servers sharing the store (several nodes) ban for each other.
        // The bans that ended lately are read too: a row still there was not lifted.
        let store = self.store.clone();
        let remembered = now - millis(self.defender.state().board.config().max_ban_time);
        let stored = match tokio::task::spawn_blocking(move || store.bans(remembered)).await {
            Ok(Ok(bans)) => bans,
            Ok(Err(e)) => {
                warn!("defender: cannot read the bans: {e}");
                return;
            }
            Err(_) => return,
        };
        let stored_sources: HashSet<Source> = stored.iter().map(|b| b.source).collect();
        let (mut lifted, mut adopted) = (Vec::new(), Vec::new());
        {
            let mut state = self.defender.state();
            for ban in &active {
                let source = ban.source;
                if !stored_sources.contains(&source)
                    && !state.unsaved.contains_key(&source)
                    && state.board.lift(source, now)
                {
                    lifted.push(source);
                }
            }
            let made_elsewhere: Vec<Ban> = stored
                .into_iter()
                .filter(|b| b.until_ms > now && state.board.ban(b.source, now).is_none())
                .collect();
            let sources: Vec<Source> = made_elsewhere.iter().map(|b| b.source).collect();
            state.board.restore(made_elsewhere);
            // (What the board does not hold is not in force here: a source allowed, the
            // defender off, or every slot taken.)
            adopted.extend(sources.into_iter().filter(|s| state.board.ban(*s, now).is_some()));
        }
        for source in &lifted {
            info!(%source, "unbanned: lifted by an operator");
        }
        for source in &adopted {
            info!(%source, "banned: by another server sharing the store");
        }
        let now_in_force: HashSet<Source> = active
            .iter()
            .map(|b| b.source)
            .chain(adopted.iter().copied())
            .filter(|s| !lifted.contains(s))
            .collect();
        for source in self.in_force.difference(&now_in_force) {
            if !lifted.contains(source) {
                info!(%source, "unbanned: the ban ended");
            }
        }
        self.in_force = now_in_force;
    }

    /// Hourly: forgets bans that ended longer ago than the longest ban (they no longer
    /// lengthen the next one).
    async fn forget(&mut self) {
        let now = tokio::time::Instant::now();
        if self.last_forget.is_some_and(|at| now.duration_since(at) < Duration::from_secs(3600)) {
            return;
        }
        self.last_forget = Some(now);
        let before = now_ms() - millis(self.defender.state().board.config().max_ban_time);
        let store = self.store.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.forget_bans(before)).await {
            warn!("defender: cannot forget old bans: {e}");
        }
    }
}

#[cfg(test)]
mod tests;
