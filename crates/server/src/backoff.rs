//! Login back-off across connections: failed SASL attempts are remembered
//! per account and per source address (an IPv6 address by its /64, the
//! block one host usually holds), and the next attempt on either waits a
//! delay that doubles with each failure, up to a cap.
//!
//! It slows guessing and never locks anyone out: the right password still
//! works after the delay, so nobody can lock another person out by failing
//! on purpose. Failures are forgotten a while after the last one. Time is
//! passed in, so the policy is tested without sleeping.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use stanza::BareJid;
use std::sync::{Mutex, MutexGuard};

use crate::config::LimitsConfig;

/// Whose failures count.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    /// Failures on one account, from anywhere.
    Account(BareJid),
    /// Failures from one address (IPv6: its /64), on any account.
    Addr(IpAddr),
}

impl Key {
    /// The key of a source address: IPv4 as is (an IPv4-mapped IPv6 address
    /// counts as its IPv4 address), IPv6 by its /64 prefix.
    pub(crate) fn addr(ip: IpAddr) -> Self {
        let ip = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
            },
            v4 => v4,
        };
        Self::Addr(ip)
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
}

/// The failure table and its settings.
#[derive(Debug)]
pub(crate) struct LoginBackoff {
    entries: Mutex<HashMap<Key, Entry>>,
    base: Duration,
    cap: Duration,
    forget: Duration,
    max_entries: usize,
}

impl LoginBackoff {
    pub(crate) fn new(l: &LimitsConfig) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            base: Duration::from_millis(l.login_backoff_base_ms),
            cap: Duration::from_secs(l.login_backoff_max_secs),
            forget: Duration::from_secs(l.login_backoff_forget_secs),
            max_entries: l.login_backoff_max_entries,
        }
    }

    fn table(&self) -> MutexGuard<'_, HashMap<Key, Entry>> {
        // Nothing here can panic while the lock is held; a poisoned lock
        // still holds a consistent table.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The delay after `failures` failures: base, 2×base, 4×base, … ≤ cap.
    fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32 << (failures - 1).min(20);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// How long an attempt that concerns `keys` must wait at `now`: until
    /// each key's last failure is its delay old. Never more than the cap.
    pub(crate) fn wait(&self, keys: &[Key], now: Instant) -> Duration {
        let entries = self.table();
        keys.iter()
            .filter_map(|k| entries.get(k))
            .filter(|e| now.saturating_duration_since(e.last) < self.forget)
            .map(|e| (e.last + self.delay(e.failures)).saturating_duration_since(now))
            .max()
            .unwrap_or(Duration::ZERO)
            .min(self.cap)
    }

    /// Records a failed attempt on every key.
    pub(crate) fn failed(&self, keys: &[Key], now: Instant) {
        let mut entries = self.table();
        if entries.len() >= self.max_entries {
            // Bounded memory: drop what is forgotten anyway, then, under a
            // flood of fresh keys, half of the rest.
            let forget = self.forget;
            entries.retain(|_, e| now.saturating_duration_since(e.last) < forget);
            if entries.len() >= self.max_entries {
                let mut n = 0;
                entries.retain(|_, _| {
                    n += 1;
                    n % 2 == 0
                });
            }
        }
        for k in keys {
            let e = entries.entry(k.clone()).or_insert(Entry {
                failures: 0,
                last: now,
            });
            if now.saturating_duration_since(e.last) >= self.forget {
                e.failures = 0;
            }
            e.failures = e.failures.saturating_add(1);
            e.last = now;
        }
    }

    /// A successful login clears the account's failures (not the
    /// address's: one's own account must not wash an address clean).
    pub(crate) fn succeeded(&self, account: &BareJid) {
        self.table().remove(&Key::Account(account.clone()));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.table().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> LoginBackoff {
        LoginBackoff::new(&LimitsConfig {
            login_backoff_base_ms: 250,
            login_backoff_max_secs: 8,
            login_backoff_forget_secs: 900,
            login_backoff_max_entries: 4,
            ..LimitsConfig::default()
        })
    }
    fn jane() -> Key {
        Key::Account(BareJid::new("jane@example.org").unwrap())
    }
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_delay_doubles_up_to_the_cap_and_is_shared_across_connections() {
        let b = backoff();
        let t0 = Instant::now();
        let ip = Key::addr("192.0.2.1".parse().unwrap());
        assert_eq!(b.wait(&[jane(), ip.clone()], t0), Duration::ZERO);
        b.failed(&[jane(), ip.clone()], t0);
        assert_eq!(b.wait(&[jane()], t0), 250 * MS);
        b.failed(&[jane(), ip.clone()], t0);
        assert_eq!(b.wait(&[jane()], t0), 500 * MS);
        // Another address, same account: the account's delay applies.
        let other = Key::addr("198.51.100.9".parse().unwrap());
        assert_eq!(b.wait(&[jane(), other.clone()], t0), 500 * MS);
        // The same address, another account: the address's delay applies.
        let joe = Key::Account(BareJid::new("joe@example.org").unwrap());
        assert_eq!(b.wait(&[joe, ip.clone()], t0), 500 * MS);
        // Time passes: the wait shrinks, then is gone.
        assert_eq!(b.wait(&[jane()], t0 + 200 * MS), 300 * MS);
        assert_eq!(b.wait(&[jane()], t0 + 600 * MS), Duration::ZERO);
        for _ in 0..20 {
            b.failed(&[jane()], t0);
        }
        assert_eq!(b.wait(&[jane()], t0), Duration::from_secs(8), "capped");
    }

    #[test]
    fn never_locked_out_and_forgotten_later() {
        let b = backoff();
        let t0 = Instant::now();
        for _ in 0..100 {
            b.failed(&[jane()], t0);
        }
        // However many failures, the wait ends.
        assert_eq!(
            b.wait(&[jane()], t0 + Duration::from_secs(8)),
            Duration::ZERO
        );
        // After the forget window a failure starts from one again.
        let later = t0 + Duration::from_secs(901);
        assert_eq!(b.wait(&[jane()], later), Duration::ZERO);
        b.failed(&[jane()], later);
        assert_eq!(b.wait(&[jane()], later), 250 * MS);
        b.succeeded(&BareJid::new("jane@example.org").unwrap());
        assert_eq!(b.wait(&[jane()], later), Duration::ZERO);
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let a = Key::addr("2001:db8:1:2::1".parse().unwrap());
        let b = Key::addr("2001:db8:1:2:ffff::9".parse().unwrap());
        let c = Key::addr("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            Key::addr("::ffff:192.0.2.1".parse().unwrap()),
            Key::addr("192.0.2.1".parse().unwrap())
        );
    }

    #[test]
    fn the_table_is_bounded() {
        let b = backoff();
        let t0 = Instant::now();
        for i in 0..100u32 {
            b.failed(&[Key::addr(std::net::Ipv4Addr::from(i).into())], t0);
            assert!(b.len() <= 4, "{}", b.len());
        }
    }
}
