//! Failed logins, counted per account and client address (`POST
//! /auth/login`). Three counters, each with its own threshold:
//!
//! - per account **and** address (the tight one): an attacker guessing one
//!   account's password from one address is locked out quickly, the real
//!   user signing in from anywhere else is not;
//! - per account from any address (looser): a guess spread over many
//!   addresses; addresses that signed in to the account before are exempt,
//!   so the real user from a known address is never locked out by it;
//! - per address over all accounts (looser): one password tried against
//!   many accounts.
//!
//! Reaching a threshold locks that counter for `lockout`; each further
//! failure doubles the lock, up to `max_lockout`. Failures are forgotten
//! after `window` without one. A success clears the account-and-address
//! counter only (an attacker with an account of their own must not reset
//! the others). Attempts in flight count as failures until they finish, so
//! parallel requests do not slip past a threshold. The state is this
//! process's memory: with several server processes each counts alone.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries per counter family before stale ones are dropped.
const MAX_ENTRIES: usize = 100_000;
/// Addresses remembered per account as having signed in.
const KNOWN_PER_ACCOUNT: usize = 16;
/// How long a successful address stays known.
const KNOWN_FOR: Duration = Duration::from_secs(30 * 24 * 3600);
/// Account names are compared on at most this many bytes.
const MAX_ACCOUNT_BYTES: usize = 320;

#[derive(Debug, Clone, Copy)]
pub struct LoginLimitConfig {
    /// Failures per account and address before a lock (≥ 1).
    pub max_failures: u32,
    /// Failures per account, from addresses that never signed in to it.
    pub max_failures_per_account: u32,
    /// Failures per address, over all accounts.
    pub max_failures_per_address: u32,
    /// The first lock; each further failure doubles it.
    pub lockout: Duration,
    pub max_lockout: Duration,
    /// Failures are forgotten this long after the last one.
    pub window: Duration,
}

impl Default for LoginLimitConfig {
    fn default() -> Self {
        Self {
            max_failures: 5,
            max_failures_per_account: 20,
            max_failures_per_address: 50,
            lockout: Duration::from_secs(1),
            max_lockout: Duration::from_secs(300),
            window: Duration::from_secs(900),
        }
    }
}

/// Why an attempt is refused before the password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Seconds until an attempt can pass (≥ 1).
    pub retry_after_secs: u64,
    /// Which counter refused: `account_address`, `account` or `address`.
    pub scope: &'static str,
}

#[derive(Debug, Clone, Copy)]
struct Strikes {
    failures: u32,
    in_flight: u32,
    last_failure: Instant,
    locked_until: Option<Instant>,
}

impl Strikes {
    fn new(now: Instant) -> Self {
        Self {
            failures: 0,
            in_flight: 0,
            last_failure: now,
            locked_until: None,
        }
    }

    fn locked(&self, now: Instant) -> Option<Duration> {
        self.locked_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    /// Forgets failures once `window` has passed since the last one.
    fn age(&mut self, now: Instant, window: Duration) {
        if self.failures > 0
            && now.saturating_duration_since(self.last_failure) > window
            && self.locked(now).is_none()
        {
            self.failures = 0;
            self.locked_until = None;
        }
    }

    fn stale(&self, now: Instant, window: Duration) -> bool {
        self.in_flight == 0
            && self.locked(now).is_none()
            && (self.failures == 0 || now.saturating_duration_since(self.last_failure) > window)
    }

    /// Refused: locked, or as many attempts are in flight as may still fail
    /// before the next lock (below the threshold, what is left of it; past
    /// it, one attempt each time a lock runs out).
    fn refuses(&self, now: Instant, threshold: u32) -> Option<Duration> {
        if let Some(left) = self.locked(now) {
            return Some(left);
        }
        let room = threshold.saturating_sub(self.failures).max(1);
        (self.in_flight >= room).then_some(Duration::from_secs(1))
    }

    /// Records a failure; returns the lock it sets, if any.
    fn fail(&mut self, now: Instant, threshold: u32, c: &LoginLimitConfig) -> Option<Duration> {
        self.failures = self.failures.saturating_add(1);
        self.last_failure = now;
        let beyond = self.failures.checked_sub(threshold)?;
        let factor = 1u32.checked_shl(beyond).unwrap_or(u32::MAX);
        let lock = c
            .lockout
            .checked_mul(factor)
            .unwrap_or(c.max_lockout)
            .min(c.max_lockout);
        self.locked_until = Some(now + lock);
        Some(lock)
    }
}

/// One family of counters (by account and address, by account, by address).
struct Family<K> {
    threshold: u32,
    entries: HashMap<K, Strikes>,
}

impl<K: Hash + Eq + Clone> Family<K> {
    fn new(threshold: u32) -> Self {
        Self {
            threshold: threshold.max(1),
            entries: HashMap::new(),
        }
    }

    fn refuses(&mut self, key: &K, now: Instant, window: Duration) -> Option<Duration> {
        let s = self.entries.get_mut(key)?;
        s.age(now, window);
        s.refuses(now, self.threshold)
    }

    fn entry(&mut self, key: &K, now: Instant, window: Duration) -> &mut Strikes {
        if self.entries.len() >= MAX_ENTRIES && !self.entries.contains_key(key) {
            self.entries.retain(|_, s| !s.stale(now, window));
            if self.entries.len() >= MAX_ENTRIES {
                // Still full: keep what locks or is in flight, forget the rest.
                self.entries
                    .retain(|_, s| s.in_flight > 0 || s.locked(now).is_some());
            }
        }
        let s = self
            .entries
            .entry(key.clone())
            .or_insert_with(|| Strikes::new(now));
        s.age(now, window);
        s
    }

    fn begin(&mut self, key: &K, now: Instant, window: Duration) {
        let s = self.entry(key, now, window);
        s.in_flight = s.in_flight.saturating_add(1);
    }

    fn end(&mut self, key: &K) {
        if let Some(s) = self.entries.get_mut(key) {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
    }

    fn fail(&mut self, key: &K, now: Instant, c: &LoginLimitConfig) -> Option<Duration> {
        let threshold = self.threshold;
        self.entry(key, now, c.window).fail(now, threshold, c)
    }

    fn shrink(&mut self, now: Instant, window: Duration) {
        self.entries.retain(|_, s| !s.stale(now, window));
        self.entries.shrink_to_fit();
    }
}

struct State {
    pairs: Family<(String, IpAddr)>,
    accounts: Family<String>,
    addresses: Family<IpAddr>,
    /// Addresses that signed in to each account, with when.
    known: HashMap<String, Vec<(IpAddr, Instant)>>,
}

impl State {
    fn is_known(&self, account: &str, ip: IpAddr, now: Instant) -> bool {
        self.known.get(account).is_some_and(|list| {
            list.iter()
                .any(|(a, at)| *a == ip && now.saturating_duration_since(*at) < KNOWN_FOR)
        })
    }
}

/// What a failure did, for the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailureOutcome {
    /// Failures of this account from this address, in the window.
    pub failures: u32,
    /// The longest lock the failure set, if it set one.
    pub locked_for: Option<Duration>,
}

pub struct LoginLimiter {
    config: LoginLimitConfig,
    state: Mutex<State>,
}

/// The limiter's key for an address: IPv4 as it is, IPv6 by its /64 (one
/// host usually holds a whole /64), an IPv4-mapped IPv6 address as IPv4.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// The limiter's key for an account: the email as typed, trimmed and
/// lower-cased (as the login looks it up), whether or not it exists.
pub fn account_key(email: &str) -> String {
    let mut a = email.trim().to_lowercase();
    if a.len() > MAX_ACCOUNT_BYTES {
        let mut cut = MAX_ACCOUNT_BYTES;
        while !a.is_char_boundary(cut) {
            cut -= 1;
        }
        a.truncate(cut);
    }
    a
}

impl LoginLimiter {
    pub fn new(config: LoginLimitConfig) -> Self {
        Self {
            state: Mutex::new(State {
                pairs: Family::new(config.max_failures),
                accounts: Family::new(config.max_failures_per_account),
                addresses: Family::new(config.max_failures_per_address),
                known: HashMap::new(),
            }),
            config,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Admits an attempt (counted as in flight until the ticket is finished
    /// or dropped), or refuses it.
    pub fn begin(&self, email: &str, ip: IpAddr) -> Result<Ticket<'_>, Refusal> {
        self.begin_at(email, ip, Instant::now())
    }

    pub fn begin_at(&self, email: &str, ip: IpAddr, now: Instant) -> Result<Ticket<'_>, Refusal> {
        let account = account_key(email);
        let ip = address_key(ip);
        let window = self.config.window;
        let pair = (account.clone(), ip);
        let mut st = self.lock();
        let known = st.is_known(&account, ip, now);
        let refusals = [
            ("account_address", st.pairs.refuses(&pair, now, window)),
            (
                "account",
                (!known)
                    .then(|| st.accounts.refuses(&account, now, window))
                    .flatten(),
            ),
            ("address", st.addresses.refuses(&ip, now, window)),
        ];
        if let Some((scope, wait)) = refusals
            .into_iter()
            .filter_map(|(scope, wait)| wait.map(|w| (scope, w)))
            .max_by_key(|(_, wait)| *wait)
        {
            return Err(Refusal {
                retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                scope,
            });
        }
        st.pairs.begin(&pair, now, window);
        st.accounts.begin(&account, now, window);
        st.addresses.begin(&ip, now, window);
        drop(st);
        Ok(Ticket {
            limiter: self,
            account,
            ip,
            done: false,
        })
    }

    fn end(&self, st: &mut State, account: &String, ip: IpAddr) {
        st.pairs.end(&(account.clone(), ip));
        st.accounts.end(account);
        st.addresses.end(&ip);
    }

    /// Drops counters with nothing left to remember (bounded memory).
    pub fn shrink(&self) {
        let now = Instant::now();
        let window = self.config.window;
        let mut st = self.lock();
        st.pairs.shrink(now, window);
        st.accounts.shrink(now, window);
        st.addresses.shrink(now, window);
        st.known.retain(|_, list| {
            list.retain(|(_, at)| now.saturating_duration_since(*at) < KNOWN_FOR);
            !list.is_empty()
        });
    }
}

/// An admitted attempt. Finish it with [`Ticket::failed`] or
/// [`Ticket::succeeded`]; dropped unfinished (the request went away, or an
/// error other than wrong credentials), it counts as neither.
pub struct Ticket<'a> {
    limiter: &'a LoginLimiter,
    account: String,
    ip: IpAddr,
    done: bool,
}

impl Ticket<'_> {
    /// Wrong credentials: counts a failure on each counter.
    pub fn failed(self) -> FailureOutcome {
        self.failed_at(Instant::now())
    }

    pub fn failed_at(mut self, now: Instant) -> FailureOutcome {
        self.done = true;
        let c = self.limiter.config;
        let mut st = self.limiter.lock();
        self.limiter.end(&mut st, &self.account, self.ip);
        let pair = (self.account.clone(), self.ip);
        let locks = [
            st.pairs.fail(&pair, now, &c),
            st.accounts.fail(&self.account, now, &c),
            st.addresses.fail(&self.ip, now, &c),
        ];
        FailureOutcome {
            failures: st.pairs.entries.get(&pair).map_or(0, |s| s.failures),
            locked_for: locks.into_iter().flatten().max(),
        }
    }

    /// Signed in: clears this account's counter for this address and
    /// remembers the address as one the account uses.
    pub fn succeeded(self) {
        self.succeeded_at(Instant::now())
    }

    pub fn succeeded_at(mut self, now: Instant) {
        self.done = true;
        let mut st = self.limiter.lock();
        self.limiter.end(&mut st, &self.account, self.ip);
        st.pairs.entries.remove(&(self.account.clone(), self.ip));
        let ip = self.ip;
        let list = st.known.entry(self.account.clone()).or_default();
        list.retain(|(a, _)| *a != ip);
        list.push((ip, now));
        if list.len() > KNOWN_PER_ACCOUNT {
            list.remove(0);
        }
    }

    /// The account's key, for the log (the email as typed, normalised).
    pub fn account(&self) -> &str {
        &self.account
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.done {
            let mut st = self.limiter.lock();
            self.limiter.end(&mut st, &self.account, self.ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "owner@example.com";

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn config() -> LoginLimitConfig {
        LoginLimitConfig {
            max_failures: 3,
            max_failures_per_account: 6,
            max_failures_per_address: 10,
            lockout: Duration::from_secs(2),
            max_lockout: Duration::from_secs(16),
            window: Duration::from_secs(60),
        }
    }

    /// Fails `n` attempts at `now`; panics if one is refused.
    fn fail_n(l: &LoginLimiter, email: &str, addr: &str, n: u32, now: Instant) -> FailureOutcome {
        let mut last = FailureOutcome::default();
        for _ in 0..n {
            last = l
                .begin_at(email, ip(addr), now)
                .expect("admitted")
                .failed_at(now);
        }
        last
    }

    #[test]
    fn a_lock_follows_the_threshold_and_doubles_with_each_failure_up_to_the_cap() {
        let l = LoginLimiter::new(config());
        let t0 = Instant::now();
        let out = fail_n(&l, A, "192.0.2.1", 3, t0);
        assert_eq!(out.locked_for, Some(Duration::from_secs(2)));
        let r = l.begin_at(A, ip("192.0.2.1"), t0).err().expect("locked");
        assert_eq!(
            r,
            Refusal {
                retry_after_secs: 2,
                scope: "account_address"
            }
        );
        let mut at = t0;
        for expected in [4, 8, 16, 16] {
            at += Duration::from_secs(20);
            let out = fail_n(&l, A, "192.0.2.1", 1, at);
            assert_eq!(out.locked_for, Some(Duration::from_secs(expected)));
        }
        let r = l
            .begin_at(A, ip("192.0.2.1"), at + Duration::from_secs(15))
            .err();
        assert_eq!(r.map(|r| r.retry_after_secs), Some(1));
        assert!(
            l.begin_at(A, ip("192.0.2.1"), at + Duration::from_secs(16))
                .is_ok()
        );
    }

    #[test]
    fn another_address_still_signs_in_and_a_success_clears_its_own_counter() {
        let l = LoginLimiter::new(config());
        let t0 = Instant::now();
        fail_n(&l, A, "192.0.2.1", 3, t0);
        assert!(l.begin_at(A, ip("192.0.2.1"), t0).is_err());
        l.begin_at(A, ip("198.51.100.7"), t0)
            .expect("another address")
            .succeeded_at(t0);
        // The attacker's lock stays.
        assert!(l.begin_at(A, ip("192.0.2.1"), t0).is_err());
        // Our counter is cleared by our success: three more tries before a lock.
        fail_n(&l, A, "198.51.100.7", 2, t0);
        l.begin_at(A, ip("198.51.100.7"), t0)
            .expect("admitted")
            .succeeded_at(t0);
        fail_n(&l, A, "198.51.100.7", 2, t0);
        assert!(l.begin_at(A, ip("198.51.100.7"), t0).is_ok());
    }

    #[test]
    fn failures_are_forgotten_after_the_window() {
        let l = LoginLimiter::new(config());
        let t0 = Instant::now();
        fail_n(&l, A, "192.0.2.1", 2, t0);
        let later = t0 + Duration::from_secs(61);
        let out = fail_n(&l, A, "192.0.2.1", 2, later);
        assert_eq!(
            out,
            FailureOutcome {
                failures: 2,
                locked_for: None
            }
        );
    }

    #[test]
    fn many_addresses_lock_the_account_except_for_addresses_that_signed_in_before() {
        let l = LoginLimiter::new(config());
        let t0 = Instant::now();
        l.begin_at(A, ip("198.51.100.7"), t0)
            .unwrap()
            .succeeded_at(t0);
        for i in 0..6 {
            fail_n(&l, A, &format!("192.0.2.{i}"), 1, t0);
        }
        let r = l
            .begin_at(A, ip("203.0.113.9"), t0)
            .err()
            .expect("account locked");
        assert_eq!(r.scope, "account");
        assert!(r.retry_after_secs <= 2, "short: {r:?}");
        l.begin_at(A, ip("198.51.100.7"), t0)
            .expect("known address")
            .succeeded_at(t0);
        assert!(
            l.begin_at(A, ip("203.0.113.9"), t0 + Duration::from_secs(2))
                .is_ok()
        );
    }

    #[test]
    fn one_address_spraying_accounts_is_locked() {
        let l = LoginLimiter::new(config());
        let t0 = Instant::now();
        for i in 0..10 {
            fail_n(&l, &format!("user{i}@example.com"), "192.0.2.1", 1, t0);
        }
        let r = l
            .begin_at("other@example.com", ip("192.0.2.1"), t0)
            .err()
            .expect("locked");
        assert_eq!(r.scope, "address");
        assert!(l.begin_at("other@example.com", ip("192.0.2.2"), t0).is_ok());
    }

    #[test]
    fn attempts_in_flight_count_until_they_finish() {
        let l = LoginLimiter::new(config());
        let t0 = Instant::now();
        let tickets: Vec<_> = (0..3)
            .map(|_| l.begin_at(A, ip("192.0.2.1"), t0).unwrap())
            .collect();
        assert!(
            l.begin_at(A, ip("192.0.2.1"), t0).is_err(),
            "a fourth in parallel"
        );
        drop(tickets);
        assert!(
            l.begin_at(A, ip("192.0.2.1"), t0).is_ok(),
            "dropped tickets count as nothing"
        );
    }

    #[test]
    fn keys_normalise_accounts_and_addresses() {
        assert_eq!(account_key("  Owner@Example.COM "), A);
        assert_eq!(account_key(&"é".repeat(400)).len(), 320);
        assert_eq!(
            address_key(ip("2001:db8:1:2:3:4:5:6")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(address_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        let l = LoginLimiter::new(config());
        let t0 = Instant::now();
        fail_n(&l, "OWNER@example.com", "2001:db8::1", 3, t0);
        assert!(
            l.begin_at(A, ip("2001:db8::ffff"), t0).is_err(),
            "same /64, same account"
        );
    }
}
