//! Stream-key guessing, slowed down: failed publish attempts are remembered per address, and
//! after a few an address must wait before its next attempt is even checked, twice as long after
//! each further failure (capped). Pure: time is passed in; the table is bounded and forgets.
//!
//! Why: without it one client tried 29 keys a second, 16 connections 1561 a second. With the
//! defaults (3 free failures, then 1 s doubling up to 60 s) an address gets about 60 guesses an
//! hour. An attempt refused while an address waits is not counted as a failure (it was not
//! checked), so the schedule does not depend on how hard the address hammers; a success clears
//! the address. The table holds at most `max_addresses`; when full, forgotten (expired)
//! entries go first, then the one whose last failure is oldest.

use super::admission::AddressKey;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The throttle's settings (from `rtmp.auth_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures an address may have before it has to wait.
    pub free_failures: u32,
    /// Wait after the first failure beyond the free ones; doubles with each further failure.
    pub initial_backoff: Duration,
    /// Longest wait.
    pub max_backoff: Duration,
    /// An address with no failure for this long is forgotten.
    pub forget_after: Duration,
    /// Addresses remembered at most.
    pub max_addresses: usize,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    blocked_until: Instant,
}

/// Failed publish attempts per address.
#[derive(Debug)]
pub struct KeyThrottle {
    policy: ThrottlePolicy,
    entries: HashMap<AddressKey, Entry>,
}

impl KeyThrottle {
    pub fn new(policy: ThrottlePolicy) -> KeyThrottle {
        KeyThrottle {
            policy,
            entries: HashMap::new(),
        }
    }

    /// Addresses remembered now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `Err(wait)` if `addr` must wait this long before an attempt is checked.
    pub fn check(&mut self, addr: AddressKey, now: Instant) -> Result<(), Duration> {
        let Some(e) = self.entries.get(&addr).copied() else {
            return Ok(());
        };
        if self.expired(&e, now) {
            self.entries.remove(&addr);
            return Ok(());
        }
        match e.blocked_until.checked_duration_since(now) {
            Some(wait) if !wait.is_zero() => Err(wait),
            _ => Ok(()),
        }
    }

    /// Records a failed attempt (a wrong, missing or unlisted key) from `addr`.
    pub fn failed(&mut self, addr: AddressKey, now: Instant) {
        if !self.entries.contains_key(&addr) && self.entries.len() >= self.policy.max_addresses {
            self.make_room(now);
        }
        let policy = self.policy;
        let e = self.entries.entry(addr).or_insert(Entry {
            failures: 0,
            last_failure: now,
            blocked_until: now,
        });
        if now.saturating_duration_since(e.last_failure) >= policy.forget_after {
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        e.last_failure = now;
        e.blocked_until = now + backoff(&policy, e.failures);
    }

    /// A successful publish from `addr`: its failures are forgotten.
    pub fn succeeded(&mut self, addr: AddressKey) {
        self.entries.remove(&addr);
    }

    fn expired(&self, e: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(e.last_failure) >= self.policy.forget_after
            && now >= e.blocked_until
    }

    /// Drops expired entries; if none was, the one whose last failure is oldest.
    fn make_room(&mut self, now: Instant) {
        let before = self.entries.len();
        let forget_after = self.policy.forget_after;
        self.entries.retain(|_, e| {
            now.saturating_duration_since(e.last_failure) < forget_after || now < e.blocked_until
        });
        if self.entries.len() < before {
            return;
        }
        if let Some(oldest) = self
            .entries
            .iter()
            .min_by_key(|(_, e)| e.last_failure)
            .map(|(k, _)| *k)
        {
            self.entries.remove(&oldest);
        }
    }
}

/// The wait after the `failures`-th failure: none for the free ones, then the initial backoff
/// doubling, capped.
pub fn backoff(policy: &ThrottlePolicy, failures: u32) -> Duration {
    let Some(beyond) = failures.checked_sub(policy.free_failures.saturating_add(1)) else {
        return Duration::ZERO;
    };
    let factor = 1u32.checked_shl(beyond.min(31)).unwrap_or(u32::MAX);
    policy
        .initial_backoff
        .saturating_mul(factor)
        .min(policy.max_backoff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn policy() -> ThrottlePolicy {
        ThrottlePolicy {
            free_failures: 3,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            forget_after: Duration::from_secs(600),
            max_addresses: 3,
        }
    }

    fn addr(s: &str) -> AddressKey {
        AddressKey::from(s.parse::<IpAddr>().unwrap())
    }

    #[test]
    fn the_backoff_doubles_after_the_free_failures_and_is_capped() {
        let p = policy();
        let waits: Vec<u64> = (1..=11).map(|f| backoff(&p, f).as_secs()).collect();
        assert_eq!(waits, [0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(backoff(&p, u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn an_address_waits_after_its_free_failures_and_others_do_not() {
        let mut t = KeyThrottle::new(policy());
        let now = Instant::now();
        let a = addr("192.0.2.1");
        for _ in 0..3 {
            assert!(t.check(a, now).is_ok());
            t.failed(a, now);
        }
        assert!(t.check(a, now).is_ok(), "three free failures");
        t.failed(a, now);
        assert_eq!(t.check(a, now), Err(Duration::from_secs(1)));
        assert!(t.check(addr("192.0.2.2"), now).is_ok(), "per address");
        // Refused attempts do not extend the wait; after it, one more check, then 2 s.
        let later = now + Duration::from_secs(1);
        assert!(t.check(a, later).is_ok());
        t.failed(a, later);
        assert_eq!(t.check(a, later), Err(Duration::from_secs(2)));
    }

    #[test]
    fn success_and_time_forget_an_address() {
        let mut t = KeyThrottle::new(policy());
        let now = Instant::now();
        let a = addr("192.0.2.1");
        for _ in 0..5 {
            t.failed(a, now);
        }
        assert!(t.check(a, now).is_err());
        t.succeeded(a);
        assert!(t.check(a, now).is_ok());
        for _ in 0..5 {
            t.failed(a, now);
        }
        let much_later = now + Duration::from_secs(601);
        assert!(t.check(a, much_later).is_ok());
        assert!(t.is_empty(), "forgotten on the check");
        // Failures long apart start counting again.
        for i in 0..10u64 {
            t.failed(a, now + Duration::from_secs(700 * (i + 1)));
        }
        assert!(
            t.check(a, now + Duration::from_secs(7000)).is_ok(),
            "one failure every 700 s is always the first"
        );
    }

    #[test]
    fn the_table_is_bounded() {
        let mut t = KeyThrottle::new(policy());
        let now = Instant::now();
        for i in 0..10u8 {
            let at = now + Duration::from_millis(u64::from(i));
            for _ in 0..5 {
                t.failed(addr(&format!("192.0.2.{i}")), at);
            }
        }
        assert_eq!(t.len(), 3, "at most max_addresses");
        // The newest survived, the oldest went.
        assert!(t.check(addr("192.0.2.9"), now).is_err());
        assert!(t.check(addr("192.0.2.0"), now).is_ok());
    }

    #[test]
    fn ipv6_addresses_of_one_network_share_an_entry() {
        let mut t = KeyThrottle::new(policy());
        let now = Instant::now();
        for i in 0..5 {
            t.failed(addr(&format!("2001:db8::{i}")), now);
        }
        assert!(t.check(addr("2001:db8::ffff"), now).is_err(), "one /64");
        assert!(t.check(addr("2001:db8:0:1::1"), now).is_ok());
    }
}
