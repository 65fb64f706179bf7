//! The defender's rules: what a source (an IPv4 address, an IPv6 /64) did wrong, when that
//! gets it banned and for how long, and how many failed logins an account takes from all
//! sources together. Shared by the SFTP server and the dashboard login, so that guessing on one
//! counts on the other. Pure: the caller passes the time in (milliseconds since the epoch) and
//! does the persisting, logging and counting (`sluice-defender`).
//!
//! The model follows SFTPGo's defender (scores per event within an observation window, a
//! threshold, a ban, an allow-list) and OpenSSH's `PerSourcePenalties` (per-source penalties for
//! failed logins, protocol errors and grace-time expiry, sources grouped by network block,
//! an exempt list, a bounded table).
//!
//! - Each event adds its points to its source. A source is banned when the points of its events
//!   within the last `observation_window` reach `threshold`; its score then starts from zero.
//! - A ban lasts `ban_time`, grown by `ban_time_increment_percent` for each earlier ban of the
//!   same source that ended within `max_ban_time`, never longer than `max_ban_time`.
//! - Sources on the allow-list are never scored or banned.
//! - The table holds at most `max_hosts` sources. When it is full, the sources with the lowest
//!   scores are forgotten first; banned sources never are (a source that arrives while every
//!   slot holds a ban is not tracked, and counted in `untracked`).
//! - An account takes at most `account_max_failures` failed logins within `account_window`
//!   from all sources together. An attempt counts before its password is checked (so parallel
//!   guesses count too); an attempt refused for the limit counts against nothing; a success
//!   clears the account's count (not its source's score). At most `max_hosts` accounts are
//!   tracked; when full, those with the fewest failures are forgotten first.

use crate::net::{IpRange, Source};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::Duration;

/// Longest account key kept (longer names are cut): the key is whatever a client typed.
const MAX_ACCOUNT_KEY: usize = 256;
/// Highest threshold: a source holds at most `threshold` events, so this bounds its memory.
pub const MAX_THRESHOLD: u32 = 1000;

#[derive(Debug, Clone, PartialEq)]
pub struct DefenderConfig {
    /// Off: nothing is scored, banned or limited.
    pub enabled: bool,
    pub threshold: u32,
    pub scores: Scores,
    pub observation_window: Duration,
    pub ban_time: Duration,
    /// How much longer each repeated ban is than the one before, in percent (100 doubles).
    pub ban_time_increment_percent: u32,
    pub max_ban_time: Duration,
    pub allow_list: Vec<IpRange>,
    pub max_hosts: usize,
    pub account_max_failures: u32,
    pub account_window: Duration,
}

/// Points per event; 0 ignores the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scores {
    pub login_failed: u32,
    pub unknown_account: u32,
    pub protocol_error: u32,
    pub no_auth: u32,
    pub limit_hit: u32,
}

impl Default for DefenderConfig {
    /// The same values as the binary's embedded defaults (a test there keeps them equal).
    fn default() -> Self {
        Self {
            enabled: true,
            threshold: 10,
            // Unknown accounts score as known ones: were they to score more, a source would be
            // banned sooner for a made-up name than for a real one, and counting the tries
            // until a ban would tell which names exist (the login hides that otherwise).
            scores: Scores {
                login_failed: 1,
                unknown_account: 1,
                protocol_error: 1,
                no_auth: 0,
                limit_hit: 3,
            },
            observation_window: Duration::from_secs(1800),
            ban_time: Duration::from_secs(900),
            ban_time_increment_percent: 100,
            max_ban_time: Duration::from_secs(86_400),
            allow_list: Vec::new(),
            max_hosts: 50_000,
            account_max_failures: 50,
            account_window: Duration::from_secs(600),
        }
    }
}

impl DefenderConfig {
    /// What is wrong with these settings, in the configuration's own words.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=MAX_THRESHOLD).contains(&self.threshold) {
            return Err(format!("threshold must be between 1 and {MAX_THRESHOLD}, not {}", self.threshold));
        }
        if self.observation_window.is_zero() || self.ban_time.is_zero() || self.account_window.is_zero() {
            return Err("observation_window_secs, ban_secs and account_window_secs must be at least 1".into());
        }
        if self.max_ban_time < self.ban_time {
            return Err("max_ban_secs must be at least ban_secs".into());
        }
        if self.max_hosts < 100 {
            return Err(format!("max_hosts must be at least 100, not {}", self.max_hosts));
        }
        if self.account_max_failures == 0 {
            return Err("account_max_failures must be at least 1".into());
        }
        Ok(())
    }
}

/// Where an event happened; it names the reason of a ban.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Sftp,
    Dashboard,
}

impl Service {
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Sftp => "sftp",
            Service::Dashboard => "dashboard",
        }
    }

    pub fn parse(s: &str) -> Option<Service> {
        [Service::Sftp, Service::Dashboard].into_iter().find(|v| v.as_str() == s)
    }
}

/// What one node of several that share a store tells the others, so that a source's events
/// and an account's failed logins count on every node (`sluice-defender` carries them through
/// the store; [`Scoreboard::absorb`] counts another node's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Happening {
    /// When it last happened (this node's clock).
    pub at_ms: i64,
    pub source: Source,
    pub service: Service,
    pub what: What,
    /// How many times, within the second it was told in (at least 1).
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum What {
    /// An event of the source's ([`Scoreboard::record`]).
    Event(Event),
    /// A failed login as `account` (the defender's key of it): the source's event and one of
    /// the account's failures.
    LoginFailed { event: Event, account: String },
    /// A login as `account` succeeded: its count starts over, and the source is one of its
    /// owner's.
    LoginSucceeded { account: String },
}

impl What {
    /// Stored as (what, account): the event's name, or `login_succeeded`.
    pub fn as_parts(&self) -> (&'static str, Option<&str>) {
        match self {
            What::Event(e) => (e.as_str(), None),
            What::LoginFailed { event, account } => (event.as_str(), Some(account)),
            What::LoginSucceeded { account } => ("login_succeeded", Some(account)),
        }
    }

    pub fn from_parts(what: &str, account: Option<String>) -> Option<What> {
        match (what, account) {
            ("login_succeeded", Some(account)) => Some(What::LoginSucceeded { account }),
            (what, Some(account)) => Some(What::LoginFailed { event: Event::parse(what)?, account }),
            (what, None) => Some(What::Event(Event::parse(what)?)),
        }
    }
}

/// Something a source did wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// A wrong password (or no authorised key) for an account that exists.
    LoginFailed,
    /// A login as an account that does not exist.
    UnknownAccount,
    /// The client spoke the protocol wrongly: no SSH version line, no common algorithm,
    /// a malformed packet.
    ProtocolError,
    /// Connected and went away without trying to log in (port scanners; also load-balancer
    /// health checks, which is why it scores nothing by default).
    NoAuth,
    /// A limit hit: too many unauthenticated connections from the source, or the login grace
    /// time ran out.
    LimitHit,
}

impl Event {
    const ALL: [Event; 5] =
        [Event::LoginFailed, Event::UnknownAccount, Event::ProtocolError, Event::NoAuth, Event::LimitHit];

    /// The event's name where it is stored (the events nodes share).
    pub fn as_str(self) -> &'static str {
        match self {
            Event::LoginFailed => "login_failed",
            Event::UnknownAccount => "unknown_account",
            Event::ProtocolError => "protocol_error",
            Event::NoAuth => "no_auth",
            Event::LimitHit => "limit_hit",
        }
    }

    pub fn parse(s: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.as_str() == s)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Event::LoginFailed => "failed login",
            Event::UnknownAccount => "login as an unknown account",
            Event::ProtocolError => "protocol error",
            Event::NoAuth => "left without logging in",
            Event::LimitHit => "limit hit",
        }
    }
}

/// A ban on a source, or (once ended) the memory of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub source: Source,
    pub at_ms: i64,
    pub until_ms: i64,
    /// How many bans in a row this is (1 for the first).
    pub count: u32,
    /// The score that set it off (0 for a ban read back from the store).
    pub score: u32,
    /// What set it off, e.g. "sftp: failed login".
    pub reason: String,
}

impl Ban {
    pub fn remaining(&self, now_ms: i64) -> Duration {
        Duration::from_millis(u64::try_from(self.until_ms - now_ms).unwrap_or(0))
    }

    pub fn duration(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.until_ms - self.at_ms).unwrap_or(0))
    }

    fn active(&self, now_ms: i64) -> bool {
        now_ms < self.until_ms
    }
}

#[derive(Debug, Default)]
struct Host {
    /// (time, points) of the events within the observation window, oldest first; points > 0.
    events: VecDeque<(i64, u32)>,
    /// The current ban, or the last one while it is remembered.
    ban: Option<Ban>,
}

/// Scores, bans and account counts, in memory.
#[derive(Debug)]
pub struct Scoreboard {
    config: DefenderConfig,
    hosts: HashMap<Source, Host>,
    accounts: HashMap<String, VecDeque<i64>>,
    /// Per account, the sources it logged in from lately: its owner's usual addresses, which
    /// guesses spread over other addresses must not lock out.
    known_sources: HashMap<String, Vec<(Source, i64)>>,
    untracked: u64,
}

/// Sources remembered per account, and for how long.
const KNOWN_SOURCES_PER_ACCOUNT: usize = 8;
const KNOWN_SOURCE_DAYS: i64 = 30;

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Scoreboard {
    pub fn new(config: DefenderConfig) -> Self {
        Self {
            config,
            hosts: HashMap::new(),
            accounts: HashMap::new(),
            known_sources: HashMap::new(),
            untracked: 0,
        }
    }

    pub fn config(&self) -> &DefenderConfig {
        &self.config
    }

    fn allowed(&self, source: Source) -> bool {
        self.config.allow_list.iter().any(|r| source.is_in(r))
    }

    fn window_ms(&self) -> i64 {
        millis(self.config.observation_window)
    }

    /// How long a ban is remembered after it ends, to lengthen the next one.
    fn memory_ms(&self) -> i64 {
        millis(self.config.max_ban_time)
    }

    /// The ban in force on `source` at `now_ms`.
    pub fn ban(&self, source: Source, now_ms: i64) -> Option<&Ban> {
        if !self.config.enabled || self.allowed(source) {
            return None;
        }
        self.hosts.get(&source)?.ban.as_ref().filter(|b| b.active(now_ms))
    }

    /// The points of `source`'s events within the observation window.
    pub fn score(&self, source: Source, now_ms: i64) -> u32 {
        self.hosts.get(&source).map_or(0, |h| Self::score_of(h, now_ms - self.window_ms()))
    }

    fn score_of(host: &Host, since_ms: i64) -> u32 {
        host.events.iter().filter(|(at, _)| *at > since_ms).map(|(_, p)| p).sum()
    }

    /// Adds an event's points to `source`; returns the ban it set off. Events of a banned or
    /// allowed source, and events worth no points, change nothing.
    pub fn record(&mut self, source: Source, service: Service, event: Event, now_ms: i64) -> Option<Ban> {
        self.add(source, service, event, now_ms, true)
    }

    /// Whether an event of `source`'s counts at all (what is worth telling other nodes).
    pub fn counts(&self, source: Source, event: Event) -> bool {
        self.config.enabled && self.points(event) > 0 && !self.allowed(source)
    }

    /// Counts what another node sharing the store saw, as of `now_ms` (when it arrived here).
    /// It adds to the source's score and the account's failures but never bans by itself: the
    /// source's next event on this node does, once the score is reached (the node that saw an
    /// event bans for it, and every node puts that ban in force from the store), so a ban is
    /// made and audited once, not once per node.
    /// (A count beyond what can matter, the threshold or the account's limit, is not
    /// counted one by one.)
    pub fn absorb(&mut self, h: &Happening, now_ms: i64) {
        let events = h.count.min(self.config.threshold);
        let failures = h.count.min(self.config.account_max_failures);
        match &h.what {
            What::Event(event) => {
                for _ in 0..events {
                    self.add(h.source, h.service, *event, now_ms, false);
                }
            }
            What::LoginFailed { event, account } => {
                for _ in 0..failures {
                    self.account_failed(account, now_ms);
                }
                for _ in 0..events {
                    self.add(h.source, h.service, *event, now_ms, false);
                }
            }
            What::LoginSucceeded { account } => self.account_succeeded(account, h.source, now_ms),
        }
    }

    fn add(
        &mut self,
        source: Source,
        service: Service,
        event: Event,
        now_ms: i64,
        may_ban: bool,
    ) -> Option<Ban> {
        let points = self.points(event);
        if !self.config.enabled || points == 0 || self.allowed(source) || self.ban(source, now_ms).is_some() {
            return None;
        }
        if !self.hosts.contains_key(&source) && self.hosts.len() >= self.config.max_hosts {
            self.make_room(now_ms);
            if self.hosts.len() >= self.config.max_hosts {
                self.untracked += 1;
                return None;
            }
        }
        let since = now_ms - self.window_ms();
        let (threshold, memory) = (self.config.threshold, self.memory_ms());
        let host = self.hosts.entry(source).or_default();
        while host.events.front().is_some_and(|(at, _)| *at <= since) {
            host.events.pop_front();
        }
        host.events.push_back((now_ms, points));
        let score = Self::score_of(host, since);
        if score < threshold || !may_ban {
            return None;
        }
        let count = match &host.ban {
            Some(last) if now_ms - last.until_ms <= memory => last.count.saturating_add(1),
            _ => 1,
        };
        host.events.clear();
        let ban = Ban {
            source,
            at_ms: now_ms,
            until_ms: now_ms.saturating_add(millis(self.ban_length(count))),
            count,
            score,
            reason: format!("{}: {}", service.as_str(), event.describe()),
        };
        self.hosts.entry(source).or_default().ban = Some(ban.clone());
        Some(ban)
    }

    fn points(&self, event: Event) -> u32 {
        let s = &self.config.scores;
        match event {
            Event::LoginFailed => s.login_failed,
            Event::UnknownAccount => s.unknown_account,
            Event::ProtocolError => s.protocol_error,
            Event::NoAuth => s.no_auth,
            Event::LimitHit => s.limit_hit,
        }
    }

    /// How long the `count`th ban in a row lasts.
    pub fn ban_length(&self, count: u32) -> Duration {
        let growth = 1.0 + f64::from(self.config.ban_time_increment_percent) / 100.0;
        let exponent = i32::try_from(count.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.config.ban_time.as_secs_f64() * growth.powi(exponent);
        let max = self.config.max_ban_time;
        if secs.is_finite() && secs < max.as_secs_f64() { Duration::from_secs_f64(secs) } else { max }
    }

    /// Frees at least a quarter of the table, if that many sources are not banned: first
    /// sources with nothing to their name, then the lowest scores (a flood of one-off sources
    /// must not wipe the score of the one that keeps guessing).
    fn make_room(&mut self, now_ms: i64) {
        let since = now_ms - self.window_ms();
        let memory = self.memory_ms();
        // (score, remembers a ban) of every source that may go; banned ones never do.
        let mut evictable: Vec<((u32, bool), Source)> = self
            .hosts
            .iter()
            .filter(|(_, h)| !h.ban.as_ref().is_some_and(|b| b.active(now_ms)))
            .map(|(s, h)| {
                let remembers = h.ban.as_ref().is_some_and(|b| now_ms - b.until_ms <= memory);
                ((Self::score_of(h, since), remembers), *s)
            })
            .collect();
        let target = self.config.max_hosts - self.config.max_hosts / 4;
        let excess = self.hosts.len().saturating_sub(target).min(evictable.len());
        if excess == 0 {
            return;
        }
        evictable.select_nth_unstable_by_key(excess - 1, |(rank, _)| *rank);
        for (_, source) in &evictable[..excess] {
            self.hosts.remove(source);
        }
    }

    /// Events dropped since the last call because every slot of the table held a ban.
    pub fn take_untracked(&mut self) -> u64 {
        std::mem::take(&mut self.untracked)
    }

    /// Sources tracked (for tests and the memory bound).
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// The bans in force at `now_ms`.
    pub fn active_bans(&self, now_ms: i64) -> Vec<Ban> {
        if !self.config.enabled {
            return Vec::new();
        }
        self.hosts
            .iter()
            .filter(|(s, _)| !self.allowed(**s))
            .filter_map(|(_, h)| h.ban.as_ref().filter(|b| b.active(now_ms)).cloned())
            .collect()
    }

    /// An operator lifted the ban: the source starts over (no score, no earlier bans).
    /// Returns whether a ban was in force.
    pub fn lift(&mut self, source: Source, now_ms: i64) -> bool {
        self.hosts.remove(&source).and_then(|h| h.ban).is_some_and(|b| b.active(now_ms))
    }

    /// Puts back a ban (in force or remembered) read from the store at start. Beyond the table's
    /// size, only the bans that end last are kept.
    pub fn restore(&mut self, bans: impl IntoIterator<Item = Ban>) {
        let mut bans: Vec<Ban> = bans.into_iter().collect();
        bans.sort_by_key(|b| std::cmp::Reverse(b.until_ms));
        for ban in bans.into_iter().take(self.config.max_hosts.saturating_sub(self.hosts.len())) {
            let host = self.hosts.entry(ban.source).or_default();
            // The ban took the score that set it off, as on the node that made it: what this
            // node counted of the same guesses does not ban again when it ends.
            host.events.clear();
            host.ban = Some(ban);
        }
    }

    /// Before a password for `account` (any text the client typed, case-folded by the caller)
    /// is checked: refused, with the time until it may try again, when the account took its
    /// share of failures in the window. Nothing is counted here: a refused attempt counts
    /// against nothing, and callers check while holding one of the few password-check slots,
    /// so guesses sent in parallel pass the limit by at most the number of slots, while a
    /// client's many parallel logins (a vendor's batch of uploads) are not refused for being
    /// many.
    ///
    /// An allow-listed source, or one the account logged in from lately, is never refused for
    /// the account's failures: guesses from elsewhere cannot lock its owner out.
    pub fn account_check(&mut self, account: &str, source: Source, now_ms: i64) -> Result<(), Duration> {
        if !self.config.enabled || self.allowed(source) {
            return Ok(());
        }
        let since = now_ms - KNOWN_SOURCE_DAYS * 86_400_000;
        let known = self
            .known_sources
            .get(account_key(account))
            .is_some_and(|sources| sources.iter().any(|(s, at)| *s == source && *at > since));
        if known {
            return Ok(());
        }
        let window = millis(self.config.account_window);
        let max = self.config.account_max_failures as usize;
        let Some(failures) = self.accounts.get_mut(account_key(account)) else { return Ok(()) };
        while failures.front().is_some_and(|at| *at <= now_ms - window) {
            failures.pop_front();
        }
        if failures.len() >= max {
            let oldest = failures.front().copied().unwrap_or(now_ms);
            return Err(Duration::from_millis(
                u64::try_from(oldest + window - now_ms).unwrap_or(0).max(1000),
            ));
        }
        Ok(())
    }

    /// A wrong password (or a login as an unknown name) for `account`.
    pub fn account_failed(&mut self, account: &str, now_ms: i64) {
        if !self.config.enabled {
            return;
        }
        let key = account_key(account);
        let since = now_ms - millis(self.config.account_window);
        if !self.accounts.contains_key(key) && self.accounts.len() >= self.config.max_hosts {
            self.make_account_room(since);
        }
        let failures = self.accounts.entry(key.to_owned()).or_default();
        while failures.front().is_some_and(|at| *at <= since) {
            failures.pop_front();
        }
        failures.push_back(now_ms);
    }

    /// A login as `account` succeeded: its count starts over. Its source's score does not, or
    /// logging into an account of one's own between guesses would wipe the guesses.
    pub fn account_succeeded(&mut self, account: &str, source: Source, now_ms: i64) {
        let key = account_key(account);
        self.accounts.remove(key);
        if !self.known_sources.contains_key(key) && self.known_sources.len() >= self.config.max_hosts {
            // Forget the accounts seen longest ago, down to three quarters of the table.
            let mut last: Vec<(i64, String)> = self
                .known_sources
                .iter()
                .map(|(k, v)| (v.iter().map(|(_, at)| *at).max().unwrap_or(0), k.clone()))
                .collect();
            let excess = last.len() - (self.config.max_hosts - self.config.max_hosts / 4);
            last.select_nth_unstable_by_key(excess.saturating_sub(1), |(at, _)| *at);
            for (_, k) in &last[..excess] {
                self.known_sources.remove(k);
            }
        }
        let sources = self.known_sources.entry(key.to_owned()).or_default();
        sources.retain(|(s, _)| *s != source);
        if sources.len() >= KNOWN_SOURCES_PER_ACCOUNT {
            sources.sort_by_key(|(_, at)| *at);
            sources.remove(0);
        }
        sources.push((source, now_ms));
    }

    /// Forgets the accounts with the fewest failures, down to three quarters of the table.
    fn make_account_room(&mut self, since: i64) {
        self.accounts.retain(|_, f| f.back().is_some_and(|at| *at > since));
        let target = self.config.max_hosts - self.config.max_hosts / 4;
        let excess = self.accounts.len().saturating_sub(target);
        if excess == 0 {
            return;
        }
        let mut counts: Vec<(usize, String)> =
            self.accounts.iter().map(|(k, f)| (f.len(), k.clone())).collect();
        counts.select_nth_unstable_by_key(excess - 1, |(n, _)| *n);
        for (_, key) in &counts[..excess] {
            self.accounts.remove(key);
        }
    }

    /// Accounts tracked (for tests and the memory bound).
    pub fn accounts_len(&self) -> usize {
        self.accounts.len()
    }
}

/// An account's name as the scoreboard keeps it: cut to [`MAX_ACCOUNT_KEY`] bytes (it is
/// whatever a client typed).
pub fn account_key(account: &str) -> &str {
    if account.len() <= MAX_ACCOUNT_KEY {
        return account;
    }
    let mut end = MAX_ACCOUNT_KEY;
    while !account.is_char_boundary(end) {
        end -= 1;
    }
    &account[..end]
}

/// "14 minutes", "1 hour 5 minutes", "40 seconds": how long, for people.
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0);
        let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
        if secs < 60 {
            return f.write_str(&plural(secs.max(1), "second"));
        }
        let minutes = secs.div_ceil(60);
        if minutes < 60 {
            return f.write_str(&plural(minutes, "minute"));
        }
        let (hours, rest) = (minutes / 60, minutes % 60);
        if rest == 0 {
            f.write_str(&plural(hours, "hour"))
        } else {
            write!(f, "{} {}", plural(hours, "hour"), plural(rest, "minute"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    /// A guessing source, not on any list.
    fn src() -> Source {
        source("203.0.113.77")
    }

    fn source(s: &str) -> Source {
        Source::of(s.parse().unwrap())
    }

    fn board(f: impl FnOnce(&mut DefenderConfig)) -> Scoreboard {
        let mut c = DefenderConfig::default();
        f(&mut c);
        c.check().unwrap();
        Scoreboard::new(c)
    }

    /// Records `n` events `step_ms` apart from `start`; returns the ban the last one set off.
    fn guess(b: &mut Scoreboard, s: Source, event: Event, n: u32, start: i64, step_ms: i64) -> Option<Ban> {
        let mut last = None;
        for i in 0..n {
            last = b.record(s, Service::Sftp, event, start + i64::from(i) * step_ms);
        }
        last
    }

    #[test]
    fn events_score_by_kind_and_a_source_is_banned_at_the_threshold() {
        let mut b = board(|c| c.scores.unknown_account = 2);
        let a = source("203.0.113.9");
        assert!(guess(&mut b, a, Event::LoginFailed, 9, 0, 1000).is_none());
        assert_eq!(b.score(a, 9000), 9);
        assert!(b.ban(a, 9000).is_none());
        let ban = b.record(a, Service::Dashboard, Event::LoginFailed, 9000).expect("the tenth failure bans");
        assert_eq!((ban.count, ban.score, ban.reason.as_str()), (1, 10, "dashboard: failed login"));
        assert_eq!(ban.duration(), Duration::from_secs(900));
        assert_eq!(b.ban(a, 9001).map(|b| b.until_ms), Some(9000 + 900_000));
        // Unknown accounts weigh double here; health checks nothing; limits three.
        let u = source("198.51.100.1");
        assert!(guess(&mut b, u, Event::UnknownAccount, 4, 0, 1).is_none());
        assert!(b.record(u, Service::Sftp, Event::UnknownAccount, 10).is_some(), "5 x 2 = 10");
        let h = source("198.51.100.2");
        assert!(guess(&mut b, h, Event::NoAuth, 1000, 0, 1).is_none());
        assert_eq!(b.score(h, 1000), 0);
        let l = source("198.51.100.3");
        assert!(guess(&mut b, l, Event::LimitHit, 3, 0, 1).is_none());
        assert!(b.record(l, Service::Sftp, Event::ProtocolError, 5).is_some(), "3 x 3 + 1");
    }

    #[test]
    fn what_other_nodes_saw_counts_here_and_this_nodes_next_event_bans() {
        let mut b = board(|c| c.account_max_failures = 5);
        let a = src();
        let seen =
            |what: What, count: u32| Happening { at_ms: 0, source: a, service: Service::Sftp, what, count };
        // Nine failures on other nodes, as guesses on three nodes behind a balancer come in
        // (two told as one, with a count).
        for i in 0..7 {
            b.absorb(
                &seen(What::LoginFailed { event: Event::LoginFailed, account: "sftp:acme".into() }, 1),
                i,
            );
        }
        b.absorb(&seen(What::LoginFailed { event: Event::LoginFailed, account: "sftp:acme".into() }, 2), 8);
        assert_eq!(b.score(a, 10), 9);
        assert!(b.ban(a, 10).is_none(), "what other nodes saw never bans by itself");
        assert!(b.account_check("sftp:acme", source("198.51.100.7"), 10).is_err(), "the account's limit too");
        b.absorb(&seen(What::Event(Event::ProtocolError), 1), 11);
        assert!(b.ban(a, 12).is_none(), "the score is reached, the ban waits for an event here");
        assert!(
            b.record(a, Service::Sftp, Event::LoginFailed, 12).is_some(),
            "this node's next failure bans"
        );
        // A login elsewhere starts the account over here too, and its source is the owner's.
        let owner = source("192.0.2.44");
        b.absorb(
            &Happening {
                at_ms: 0,
                source: owner,
                service: Service::Sftp,
                what: What::LoginSucceeded { account: "sftp:acme".into() },
                count: 1,
            },
            20,
        );
        assert!(b.account_check("sftp:acme", source("198.51.100.7"), 21).is_ok());
        // A huge count is counted as far as it matters, not one by one.
        let flood = source("198.51.100.99");
        let many = Happening {
            at_ms: 0,
            source: flood,
            service: Service::Sftp,
            what: What::Event(Event::ProtocolError),
            count: u32::MAX,
        };
        b.absorb(&many, 30);
        assert_eq!(b.score(flood, 31), 10);
        // A ban made by another node, put in force here, takes the score with it: when it
        // ends, what this node counted of the same guesses does not ban again at once.
        let ban = Ban {
            source: flood,
            at_ms: 40,
            until_ms: 1_000,
            count: 1,
            score: 10,
            reason: "sftp: protocol error".into(),
        };
        b.restore([ban]);
        assert_eq!(b.score(flood, 2_000), 0);
        assert!(b.record(flood, Service::Sftp, Event::ProtocolError, 2_000).is_none());
        // Stored as text and read back.
        for what in [
            What::Event(Event::NoAuth),
            What::LoginFailed { event: Event::UnknownAccount, account: "dashboard:ann@acme.org".into() },
            What::LoginSucceeded { account: "sftp:acme".into() },
        ] {
            let (name, account) = what.as_parts();
            assert_eq!(What::from_parts(name, account.map(str::to_owned)), Some(what));
        }
        assert_eq!(What::from_parts("guessed", None), None);
        assert_eq!(Service::parse("dashboard"), Some(Service::Dashboard));
    }

    #[test]
    fn scores_decay_with_the_observation_window() {
        let mut b = board(|_| {});
        let a = source("203.0.113.9");
        // One failure every 3.5 minutes: never 10 within 30 minutes.
        assert!(guess(&mut b, a, Event::LoginFailed, 200, 0, 3 * MIN + 30_000).is_none());
        assert!(b.score(a, 200 * (3 * MIN + 30_000)) < 10);
        // The same ten within the window ban.
        let c = source("203.0.113.10");
        assert!(guess(&mut b, c, Event::LoginFailed, 10, 0, 3 * MIN).is_some());
        // Old events stop counting: 9 now, 9 more after the window.
        let d = source("203.0.113.11");
        assert!(guess(&mut b, d, Event::LoginFailed, 9, 0, 1).is_none());
        assert_eq!(b.score(d, 30 * MIN), 8, "the first one is 30 minutes old");
        assert_eq!(b.score(d, 30 * MIN + 8), 0);
        assert!(guess(&mut b, d, Event::LoginFailed, 9, 30 * MIN + 8, 1).is_none());
    }

    #[test]
    fn repeated_bans_grow_up_to_the_maximum_and_are_forgotten_after_it() {
        let mut b = board(|c| c.ban_time_increment_percent = 100);
        let a = source("203.0.113.9");
        let mut now = 0;
        let mut lengths = Vec::new();
        for _ in 0..10 {
            let ban = guess(&mut b, a, Event::LoginFailed, 10, now, 1).expect("banned");
            assert!(
                b.record(a, Service::Sftp, Event::LoginFailed, ban.until_ms - 1).is_none(),
                "ignored while banned"
            );
            lengths.push(ban.duration().as_secs() / 60);
            now = ban.until_ms + MIN;
        }
        assert_eq!(lengths, [15, 30, 60, 120, 240, 480, 960, 1440, 1440, 1440]);
        // A day after the last ban ended, the next one is a first one again.
        let ban = guess(&mut b, a, Event::LoginFailed, 10, now + 24 * 60 * MIN, 1).unwrap();
        assert_eq!((ban.count, ban.duration().as_secs()), (1, 900));
        // +50%: 15, 22.5, 33.75 minutes.
        let half = board(|c| c.ban_time_increment_percent = 50);
        assert_eq!(half.ban_length(3), Duration::from_secs_f64(900.0 * 2.25));
        assert_eq!(half.ban_length(u32::MAX), Duration::from_secs(86_400));
    }

    #[test]
    fn the_allow_list_is_never_scored_or_banned() {
        let mut b =
            board(|c| c.allow_list = vec!["10.0.0.0/8".parse().unwrap(), "2001:db8:1::/48".parse().unwrap()]);
        for s in [source("10.1.2.3"), source("2001:db8:1:2::1")] {
            assert!(guess(&mut b, s, Event::UnknownAccount, 1000, 0, 1).is_none());
            assert!(b.ban(s, 1000).is_none() && b.score(s, 1000) == 0);
        }
        // A ban read back from the store for a source allowed since is not in force either.
        let s = source("10.9.9.9");
        b.restore([Ban { source: s, at_ms: 0, until_ms: 10 * MIN, count: 1, score: 0, reason: "x".into() }]);
        assert!(b.ban(s, 1).is_none() && b.active_bans(1).is_empty());
        let outside = source("11.0.0.1");
        assert!(guess(&mut b, outside, Event::LoginFailed, 10, 0, 1).is_some());
    }

    #[test]
    fn a_lifted_ban_starts_over() {
        let mut b = board(|_| {});
        let a = source("203.0.113.9");
        let first = guess(&mut b, a, Event::LoginFailed, 10, 0, 1).unwrap();
        assert!(b.lift(a, 100) && b.ban(a, 100).is_none());
        assert!(!b.lift(a, 100), "nothing left to lift");
        let again = guess(&mut b, a, Event::LoginFailed, 10, 200, 1).unwrap();
        assert_eq!((first.count, again.count), (1, 1), "an operator's unban forgives earlier bans");
    }

    #[test]
    fn a_flood_of_100k_sources_keeps_memory_bounded_and_the_bans_and_high_scores() {
        let mut b = board(|c| c.max_hosts = 10_000);
        let banned: Vec<Source> = (0..50).map(|i| source(&format!("198.51.100.{i}"))).collect();
        for s in &banned {
            assert!(guess(&mut b, *s, Event::LoginFailed, 10, 0, 1).is_some());
        }
        let patient = source("203.0.113.9");
        assert!(guess(&mut b, patient, Event::LoginFailed, 9, 0, 1).is_none());
        // 100,000 one-off sources, each failing once (IPv6 /64s: as many as an attacker likes).
        for i in 0..100_000u32 {
            let s = Source::of(std::net::IpAddr::V6(std::net::Ipv6Addr::new(
                0x2001,
                0xdb8,
                (i >> 16) as u16,
                i as u16,
                0,
                0,
                0,
                1,
            )));
            b.record(s, Service::Sftp, Event::UnknownAccount, 1000);
            assert!(b.len() <= 10_000, "bounded at {i}");
        }
        for s in &banned {
            assert!(b.ban(*s, 2000).is_some(), "a ban survives the flood");
        }
        assert_eq!(b.score(patient, 2000), 9, "the highest score survives the flood");
        assert!(b.record(patient, Service::Sftp, Event::LoginFailed, 2000).is_some());
        assert_eq!(b.take_untracked(), 0);
    }

    #[test]
    fn a_table_full_of_bans_tracks_no_newcomer() {
        let mut b = board(|c| c.max_hosts = 100);
        for i in 0..100 {
            assert!(guess(&mut b, source(&format!("198.51.100.{i}")), Event::LimitHit, 4, 0, 1).is_some());
        }
        assert!(b.record(source("203.0.113.9"), Service::Sftp, Event::LimitHit, 10).is_none());
        assert_eq!((b.len(), b.take_untracked(), b.take_untracked()), (100, 1, 0));
        // Once the bans end, newcomers take their place.
        assert!(b.record(source("203.0.113.9"), Service::Sftp, Event::LimitHit, 16 * MIN).is_none());
        assert_eq!(b.score(source("203.0.113.9"), 16 * MIN), 3);
    }

    #[test]
    fn an_account_takes_its_limit_from_all_sources_then_waits() {
        let mut b = board(|_| {});
        // Many logins at once are not refused for being many: only failures count.
        for i in 0..500 {
            assert!(b.account_check("ann@acme.org", src(), i).is_ok());
        }
        for i in 0..50 {
            assert!(b.account_check("ann@acme.org", src(), i).is_ok(), "attempt {i}");
            b.account_failed("ann@acme.org", i);
        }
        let wait = b.account_check("ann@acme.org", src(), 60_000).unwrap_err();
        assert_eq!(
            wait,
            Duration::from_millis(600_000 - 60_000),
            "until the oldest failure leaves the window"
        );
        // Refused attempts count against nothing: once the window passes, it may try again.
        for _ in 0..100 {
            assert!(b.account_check("ann@acme.org", src(), 100_000).is_err());
        }
        assert!(b.account_check("ann@acme.org", src(), 600_001).is_ok());
        // A success starts the account over.
        b.account_succeeded("ann@acme.org", source("198.51.100.1"), 650_000);
        for i in 0..49 {
            b.account_failed("ann@acme.org", 700_000 + i);
        }
        assert!(b.account_check("ann@acme.org", src(), 700_100).is_ok());
    }

    #[test]
    fn an_allow_listed_or_known_source_is_not_locked_out_by_guesses_from_elsewhere() {
        let mut b = board(|c| c.allow_list = vec!["192.0.2.10".parse().unwrap()]);
        let owner = source("198.51.100.7");
        b.account_succeeded("acme", owner, 0);
        for i in 0..60 {
            b.account_failed("acme", 1000 + i);
        }
        assert!(b.account_check("acme", src(), 2000).is_err(), "a stranger waits");
        assert!(b.account_check("acme", owner, 2000).is_ok(), "the owner's usual address does not");
        assert!(b.account_check("acme", source("192.0.2.10"), 2000).is_ok(), "nor an allow-listed one");
    }

    #[test]
    fn a_flood_of_made_up_accounts_does_not_wipe_a_real_accounts_count() {
        let mut b = board(|c| c.max_hosts = 1000);
        for i in 0..49 {
            b.account_failed("ann@acme.org", i);
        }
        // Junk from many addresses, each name seen once, all newer than the victim's.
        for i in 0..20_000 {
            b.account_failed(&format!("junk{i}@example.org"), 1000);
            assert!(b.accounts_len() <= 1000);
        }
        assert!(b.account_check("ann@acme.org", src(), 2000).is_ok(), "the last guess under the limit");
        b.account_failed("ann@acme.org", 2000);
        assert!(b.account_check("ann@acme.org", src(), 2001).is_err(), "and then the account waits");
        // A name longer than any account is cut, not stored whole.
        let long = "x".repeat(100_000);
        b.account_failed(&long, 3000);
        assert!(b.accounts.keys().all(|k| k.len() <= MAX_ACCOUNT_KEY));
    }

    #[test]
    fn switched_off_it_does_nothing() {
        let mut b = board(|c| c.enabled = false);
        let a = source("203.0.113.9");
        assert!(guess(&mut b, a, Event::UnknownAccount, 100, 0, 1).is_none());
        assert!(b.is_empty() && b.ban(a, 1).is_none());
        for i in 0..100 {
            b.account_failed("ann@acme.org", i);
            assert!(b.account_check("ann@acme.org", src(), i).is_ok());
        }
    }

    #[test]
    fn settings_are_checked() {
        let bad = |f: fn(&mut DefenderConfig)| {
            let mut c = DefenderConfig::default();
            f(&mut c);
            c.check().unwrap_err()
        };
        assert!(bad(|c| c.threshold = 0).contains("threshold"));
        assert!(bad(|c| c.threshold = MAX_THRESHOLD + 1).contains("threshold"));
        assert!(bad(|c| c.max_ban_time = Duration::from_secs(1)).contains("max_ban_secs"));
        assert!(bad(|c| c.max_hosts = 5).contains("max_hosts"));
        assert!(DefenderConfig::default().check().is_ok());
    }

    #[test]
    fn durations_read_as_people_say_them() {
        let h = |s| HumanDuration(Duration::from_secs(s)).to_string();
        assert_eq!(h(0), "1 second");
        assert_eq!(h(40), "40 seconds");
        assert_eq!(h(60), "1 minute");
        assert_eq!(h(899), "15 minutes");
        assert_eq!(h(3600), "1 hour");
        assert_eq!(h(3900), "1 hour 5 minutes");
        assert_eq!(HumanDuration(Duration::from_millis(59_500)).to_string(), "1 minute");
    }
}
