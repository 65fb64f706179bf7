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
    metrics: Arc<Metrics>,
    /// Wakes the keeper when a ban is waiting to be saved.
    wake: Notify,
}

struct State {
    board: Scoreboard,
    /// Bans not saved yet. The keeper does not take a ban missing from the store for lifted
    /// while it is here.
    unsaved: HashMap<Source, Ban>,
}

impl Defender {
    /// A defender that keeps its bans in `store`, with the bans saved there put back.
    pub fn open(
        config: DefenderConfig,
        store: SharedStore,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, StoreError> {
        let now = now_ms();
        let remembered = store.bans(now - millis(config.max_ban_time))?;
        let mut board = Scoreboard::new(config);
        board.restore(remembered);
        let in_force = board.active_bans(now).len();
        if in_force > 0 {
            info!(bans = in_force, "defender: bans in force from before the restart");
        }
        Ok(Self::with(board, Some(store), metrics))
    }

    /// A defender that keeps nothing beyond this process (tests, and the web crate's default).
    pub fn in_memory(config: DefenderConfig, metrics: Arc<Metrics>) -> Arc<Self> {
        Self::with(Scoreboard::new(config), None, metrics)
    }

    fn with(board: Scoreboard, store: Option<SharedStore>, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State { board, unsaved: HashMap::new() }),
            store,
            metrics,
            wake: Notify::new(),
        })
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
        let ban = self.state().board.record(Source::of(ip), service, event, now_ms());
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
            state.board.account_failed(&account_key(service, account), now);
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
        state.board.account_succeeded(&account_key(service, account), source, now);
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
            let stopping = tokio::select! {
                _ = &mut shutdown => true,
                _ = keeper.defender.wake.notified() => false,
                _ = tick.tick() => false,
            };
            keeper.save().await;
            if stopping {
                break;
            }
            keeper.reconcile().await;
            keeper.forget().await;
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Accounts of the SFTP server (tenants) and the dashboard (emails) are counted apart.
fn account_key(service: Service, account: &str) -> String {
    format!("{}:{account}", service.as_str())
}

/// The keeper's work, a step at a time (tests drive it step by step).
struct Keeper {
    defender: Arc<Defender>,
    store: SharedStore,
    /// Sources banned at the last look, to tell when a ban ended.
    in_force: HashSet<Source>,
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
        Self { defender, store, in_force, last_forget: None }
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
                    Ok(()) => {
                        audit_ban(&*store, &ban);
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
