//! Sign-in throttling per account.
//!
//! The per-address limiter slows one machine down; it does nothing against
//! many addresses guessing one account's password. This does, without
//! letting an attacker lock the account's owner out:
//! - the first [`FREE_FAILURES`] failed sign-ins in a row cost nothing;
//! - after that, each further try must wait 1 s, 2 s, 4 s … after the last
//!   failure, doubling up to [`MAX_DELAY`] (one minute): an attacker gets at
//!   most one guess a minute per account;
//! - an address that has signed in to the account before (on this node,
//!   within [`TRUST_FOR`]) is not held up by failures from other addresses:
//!   it has a record of its own, so the owner keeps signing in from their
//!   usual place while an attack goes on; from a new address they wait at
//!   most a minute between tries;
//! - a success clears the record it was counted in; one that has seen no
//!   failure for [`FORGET_AFTER`] is forgotten;
//! - attempts under way count, so a burst of concurrent guesses cannot slip
//!   through before the first failure is recorded.
//!
//! Accounts are keyed by a hash of the normalized email (so a long email
//! costs no more memory than a short one), and unknown emails are throttled
//! alike, so the answers tell no one which accounts exist. The records live
//! in memory, per node.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed sign-ins in a row before any delay applies.
pub const FREE_FAILURES: u32 = 5;
/// The longest delay between two tries at one account.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// A record with no failure for this long is dropped.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// How long an address that signed in stays trusted for that account.
pub const TRUST_FOR: Duration = Duration::from_secs(30 * 86_400);
/// At most this many records are kept; past it the stalest go first.
const MAX_RECORDS: usize = 100_000;
/// Addresses remembered per account.
const TRUSTED_PER_ACCOUNT: usize = 8;

/// An account, or an account from one trusted address.
type Key = ([u8; 32], Option<IpAddr>);

#[derive(Debug, Default, Clone, Copy)]
struct Record {
    failures: u32,
    last_failure: Option<Instant>,
    in_flight: u32,
}

impl Record {
    /// How long after the last failure the next try may come.
    fn delay(&self) -> Duration {
        let tries = self.failures + self.in_flight;
        if tries < FREE_FAILURES {
            return Duration::ZERO;
        }
        let secs = 1u64 << (tries - FREE_FAILURES).min(16);
        Duration::from_secs(secs).min(MAX_DELAY)
    }

    fn idle(&self) -> bool {
        self.failures == 0 && self.in_flight == 0
    }
}

#[derive(Default)]
struct Tables {
    records: HashMap<Key, Record>,
    /// Addresses that signed in to each account, with when they last did.
    trusted: HashMap<[u8; 32], Vec<(IpAddr, Instant)>>,
}

#[derive(Default)]
pub struct LoginThrottle {
    tables: Mutex<Tables>,
}

/// An attempt that was let through; say how it ended with
/// [`Attempt::succeeded`] or [`Attempt::failed`]. Dropped without either
/// (the request was cancelled, or the server was too busy to check), it
/// counts as nothing.
#[must_use]
pub struct Attempt<'a> {
    throttle: &'a LoginThrottle,
    key: Key,
    settled: bool,
}

fn account_key(account: &str) -> [u8; 32] {
    Sha256::digest(account.trim().to_lowercase().as_bytes()).into()
}

/// Rounds a wait up to whole seconds, as `Retry-After` says it: a client
/// that waits exactly that long is let in.
pub fn whole_seconds(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

impl LoginThrottle {
    /// Lets a sign-in at `account` from `from` go ahead, or says how long to wait.
    pub fn begin(
        &self,
        account: &str,
        from: IpAddr,
        now: Instant,
    ) -> Result<Attempt<'_>, Duration> {
        let account = account_key(account);
        let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        let trusted = t.trusted.get(&account).is_some_and(|list| {
            list.iter()
                .any(|(ip, at)| *ip == from && now.saturating_duration_since(*at) < TRUST_FOR)
        });
        let key = (account, trusted.then_some(from));
        if t.records.len() >= MAX_RECORDS && !t.records.contains_key(&key) {
            prune_locked(&mut t, now);
        }
        let record = t.records.entry(key).or_default();
        let delay = record.delay();
        if !delay.is_zero() {
            let since = record.last_failure.map_or(Duration::MAX, |at| now - at);
            if since < delay || record.in_flight > 0 {
                return Err(delay.saturating_sub(since).max(Duration::from_secs(1)));
            }
        }
        record.in_flight += 1;
        Ok(Attempt {
            throttle: self,
            key,
            settled: false,
        })
    }

    /// Forgets records without a failure for [`FORGET_AFTER`] and trust older than [`TRUST_FOR`].
    pub fn prune(&self, now: Instant) {
        let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        prune_locked(&mut t, now);
    }

    /// One attempt ended: a failure (at `now`) or nothing (`None`).
    fn settle(&self, key: &Key, failed_at: Option<Instant>) {
        let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        let Some(record) = t.records.get_mut(key) else {
            return;
        };
        record.in_flight = record.in_flight.saturating_sub(1);
        if let Some(now) = failed_at {
            record.failures = record.failures.saturating_add(1);
            record.last_failure = Some(now);
        }
        if record.idle() {
            t.records.remove(key);
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.tables.lock().unwrap().records.len()
    }
}

impl Attempt<'_> {
    /// The password was right: the record starts afresh (attempts still
    /// under way keep counting), and this address is trusted for the account.
    pub fn succeeded(mut self, from: IpAddr, now: Instant) {
        self.settled = true;
        let mut t = self
            .throttle
            .tables
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(record) = t.records.get_mut(&self.key) {
            record.in_flight = record.in_flight.saturating_sub(1);
            record.failures = 0;
            record.last_failure = None;
            if record.idle() {
                t.records.remove(&self.key);
            }
        }
        let list = t.trusted.entry(self.key.0).or_default();
        list.retain(|(ip, _)| *ip != from);
        list.push((from, now));
        if list.len() > TRUSTED_PER_ACCOUNT {
            list.remove(0);
        }
    }

    pub fn failed(mut self, now: Instant) {
        self.settled = true;
        self.throttle.settle(&self.key, Some(now));
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.throttle.settle(&self.key, None);
        }
    }
}

fn prune_locked(t: &mut Tables, now: Instant) {
    t.records
        .retain(|_, r| r.in_flight > 0 || r.last_failure.is_some_and(|at| now - at < FORGET_AFTER));
    t.trusted.retain(|_, list| {
        list.retain(|(_, at)| now.saturating_duration_since(*at) < TRUST_FOR);
        !list.is_empty()
    });
    if t.records.len() >= MAX_RECORDS {
        // Still full of fresh records (a spray over many emails): keep the
        // newer half.
        let mut ages: Vec<Instant> = t.records.values().filter_map(|r| r.last_failure).collect();
        ages.sort_unstable();
        if let Some(&cutoff) = ages.get(ages.len() / 2) {
            t.records
                .retain(|_, r| r.in_flight > 0 || r.last_failure.is_some_and(|at| at >= cutoff));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    fn fail(t: &LoginThrottle, who: &str, from: IpAddr, now: Instant) {
        t.begin(who, from, now).expect("let through").failed(now);
    }

    #[test]
    fn five_free_failures_then_a_doubling_wait_capped_at_a_minute() {
        let t = LoginThrottle::default();
        let start = Instant::now();
        for n in 0..FREE_FAILURES {
            fail(&t, "sam@example.com", ip(n as u8), start);
        }
        // The sixth try, from yet another address, must wait a second.
        assert_eq!(
            t.begin("SAM@example.com ", ip(99), start).err(),
            Some(Duration::from_secs(1))
        );
        let mut now = start;
        let mut waits = vec![];
        while waits.len() < 10 {
            let wait = match t.begin("sam@example.com", ip(99), now) {
                Ok(a) => {
                    a.failed(now);
                    continue;
                }
                Err(w) => w,
            };
            waits.push(wait.as_secs());
            now += wait;
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
        // Another account is not affected.
        assert!(t.begin("alex@example.com", ip(99), now).is_ok());
    }

    #[test]
    fn the_owner_keeps_signing_in_from_a_trusted_address_during_an_attack() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        let home = ip(1);
        t.begin("sam@example.com", home, now)
            .unwrap()
            .succeeded(home, now);
        for n in 0..20 {
            let _ = t
                .begin("sam@example.com", ip(100 + n), now)
                .map(|a| a.failed(now));
        }
        assert!(t.begin("sam@example.com", ip(200), now).is_err());
        // Home is unaffected, and its own typos are counted on their own.
        for _ in 0..FREE_FAILURES {
            fail(&t, "sam@example.com", home, now);
        }
        assert!(t.begin("sam@example.com", home, now).is_err());
    }

    #[test]
    fn a_success_resets_while_concurrent_tries_keep_counting() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        let held: Vec<Attempt<'_>> = (0..FREE_FAILURES)
            .map(|_| t.begin("sam@example.com", ip(1), now).unwrap())
            .collect();
        // Five under way: the sixth concurrent guess is refused.
        assert!(t.begin("sam@example.com", ip(2), now).is_err());
        let mut held = held.into_iter();
        held.next().unwrap().succeeded(ip(1), now);
        // Four are still under way and still count.
        assert_eq!(t.tracked(), 1);
        // They end unanswered (dropped): they count as nothing.
        drop(held);
        assert_eq!(t.tracked(), 0);
        assert!(t.begin("sam@example.com", ip(2), now).is_ok());
    }

    #[test]
    fn old_records_are_forgotten_and_long_emails_cost_no_more() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for i in 0..10 {
            fail(
                &t,
                &format!("user{i}@example.com{}", "x".repeat(10_000)),
                ip(1),
                now,
            );
        }
        t.prune(now + FORGET_AFTER / 2);
        assert_eq!(t.tracked(), 10);
        t.prune(now + FORGET_AFTER);
        assert_eq!(t.tracked(), 0);
    }

    #[test]
    fn waits_round_up() {
        assert_eq!(whole_seconds(Duration::from_millis(3500)), 4);
        assert_eq!(whole_seconds(Duration::from_secs(3)), 3);
        assert_eq!(whole_seconds(Duration::ZERO), 1);
    }
}
