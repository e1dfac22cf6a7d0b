//! Sign-in throttling per account.
//!
//! The per-address limiter slows one machine down; it does nothing against
//! many addresses guessing one account's password. This does, without
//! letting an attacker lock the account's owner out for long:
//! - the first [`FREE_FAILURES`] failed sign-ins in a row cost nothing;
//! - after that, each further try must wait 1 s, 2 s, 4 s … after the last
//!   failure, doubling up to [`MAX_DELAY`] (one minute): an attacker gets at
//!   most one guess a minute per account, and the owner waits at most a
//!   minute once the attack stops (or between two of its guesses);
//! - a success clears the account's record; one that has seen no failure
//!   for [`FORGET_AFTER`] is forgotten;
//! - attempts under way count, so a burst of concurrent guesses cannot slip
//!   through before the first failure is recorded.
//!
//! Unknown emails are throttled alike, so the answers tell no one which
//! accounts exist. The records live in memory, per node.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed sign-ins in a row before any delay applies.
pub const FREE_FAILURES: u32 = 5;
/// The longest delay between two tries at one account.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// A record with no failure for this long is dropped.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// At most this many accounts are tracked; past it the stalest go first.
const MAX_ACCOUNTS: usize = 100_000;

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
}

#[derive(Default)]
pub struct LoginThrottle {
    accounts: Mutex<HashMap<String, Record>>,
}

/// An attempt that was let through; say how it ended with
/// [`Attempt::succeeded`] or [`Attempt::failed`]. Dropped without either
/// (the request was cancelled, or the server was too busy to check), it
/// counts as nothing.
#[must_use]
pub struct Attempt<'a> {
    throttle: &'a LoginThrottle,
    account: String,
    settled: bool,
}

impl LoginThrottle {
    /// Lets a sign-in at `account` go ahead, or says how long to wait.
    pub fn begin(&self, account: &str, now: Instant) -> Result<Attempt<'_>, Duration> {
        let key = account.trim().to_lowercase();
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        if accounts.len() >= MAX_ACCOUNTS && !accounts.contains_key(&key) {
            prune_locked(&mut accounts, now);
        }
        let record = accounts.entry(key.clone()).or_default();
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
            account: key,
            settled: false,
        })
    }

    /// Forgets accounts without a failure for [`FORGET_AFTER`].
    pub fn prune(&self, now: Instant) {
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        prune_locked(&mut accounts, now);
    }

    fn settle(&self, account: &str, outcome: Option<Instant>) {
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        let Some(record) = accounts.get_mut(account) else {
            return;
        };
        record.in_flight = record.in_flight.saturating_sub(1);
        if let Some(now) = outcome {
            record.failures = record.failures.saturating_add(1);
            record.last_failure = Some(now);
        }
        if record.failures == 0 && record.in_flight == 0 {
            accounts.remove(account);
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.accounts.lock().unwrap().len()
    }
}

impl Attempt<'_> {
    /// The password was right: the account starts afresh.
    pub fn succeeded(mut self) {
        self.settled = true;
        let mut accounts = self
            .throttle
            .accounts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        accounts.remove(&self.account);
    }

    pub fn failed(mut self, now: Instant) {
        self.settled = true;
        self.throttle.settle(&self.account, Some(now));
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.throttle.settle(&self.account, None);
        }
    }
}

fn prune_locked(accounts: &mut HashMap<String, Record>, now: Instant) {
    accounts
        .retain(|_, r| r.in_flight > 0 || r.last_failure.is_some_and(|at| now - at < FORGET_AFTER));
    if accounts.len() >= MAX_ACCOUNTS {
        // Still full of fresh records (a spray over many emails): keep the
        // newer half.
        let mut ages: Vec<Instant> = accounts.values().filter_map(|r| r.last_failure).collect();
        ages.sort_unstable();
        if let Some(&cutoff) = ages.get(ages.len() / 2) {
            accounts
                .retain(|_, r| r.in_flight > 0 || r.last_failure.is_some_and(|at| at >= cutoff));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(t: &LoginThrottle, who: &str, now: Instant) {
        t.begin(who, now).expect("let through").failed(now);
    }

    #[test]
    fn five_free_failures_then_a_doubling_wait_capped_at_a_minute() {
        let t = LoginThrottle::default();
        let start = Instant::now();
        for _ in 0..FREE_FAILURES {
            fail(&t, "sam@example.com", start);
        }
        // The sixth try must wait a second after the fifth failure.
        assert_eq!(
            t.begin("SAM@example.com ", start).err(),
            Some(Duration::from_secs(1))
        );
        let mut now = start;
        let mut waits = vec![];
        while waits.len() < 10 {
            let wait = match t.begin("sam@example.com", now) {
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
        assert!(t.begin("alex@example.com", now).is_ok());
    }

    #[test]
    fn a_success_clears_the_record_and_concurrent_tries_count() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        let held: Vec<Attempt<'_>> = (0..FREE_FAILURES)
            .map(|_| t.begin("sam@example.com", now).unwrap())
            .collect();
        // Five under way: the sixth concurrent guess is refused.
        assert!(t.begin("sam@example.com", now).is_err());
        let mut held = held.into_iter();
        held.next().unwrap().succeeded();
        assert_eq!(t.tracked(), 0);
        // The others end unanswered (dropped): they count as nothing.
        drop(held);
        assert_eq!(t.tracked(), 0);
        assert!(t.begin("sam@example.com", now).is_ok());
    }

    #[test]
    fn old_records_are_forgotten() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for i in 0..10 {
            fail(&t, &format!("user{i}@example.com"), now);
        }
        t.prune(now + FORGET_AFTER / 2);
        assert_eq!(t.tracked(), 10);
        t.prune(now + FORGET_AFTER);
        assert_eq!(t.tracked(), 0);
    }
}
