//! Rate limits (governor's GCRA token buckets): new connections per IP,
//! stanzas and publishes per account. Each is a setting in
//! [`crate::config::LimitsConfig`].

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use stanza::BareJid;

use crate::config::LimitsConfig;

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

/// The server's rate limiters.
#[derive(Debug)]
pub(crate) struct Limiters {
    connections: Keyed<IpAddr>,
    stanzas: Keyed<BareJid>,
    publishes: Keyed<BareJid>,
    registrations_ip: Keyed<IpAddr>,
    registrations_all:
        RateLimiter<governor::state::NotKeyed, governor::state::InMemoryState, DefaultClock>,
    limit_loopback: bool,
}

fn quota(per_sec: u32, burst: u32) -> Quota {
    let one = NonZeroU32::MIN;
    Quota::per_second(NonZeroU32::new(per_sec).unwrap_or(one))
        .allow_burst(NonZeroU32::new(burst).unwrap_or(one))
}

impl Limiters {
    pub(crate) fn new(l: &LimitsConfig) -> Self {
        Self {
            connections: RateLimiter::keyed(quota(
                l.connections_per_ip_per_sec,
                l.connection_burst,
            )),
            stanzas: RateLimiter::keyed(quota(l.stanzas_per_sec, l.stanza_burst)),
            publishes: RateLimiter::keyed(quota(l.publishes_per_sec, l.publish_burst)),
            registrations_ip: RateLimiter::keyed(
                Quota::with_period(Duration::from_secs(
                    l.registration_period_per_ip_secs.max(1),
                ))
                .expect("a non-zero period")
                .allow_burst(
                    NonZeroU32::new(l.registration_burst_per_ip).unwrap_or(NonZeroU32::MIN),
                ),
            ),
            registrations_all: RateLimiter::direct(quota(
                l.registrations_per_sec,
                l.registration_burst,
            )),
            limit_loopback: l.limit_loopback,
        }
    }

    /// Whether a new connection from `ip` is within its rate.
    pub(crate) fn connection(&self, ip: IpAddr) -> bool {
        if ip.is_loopback() && !self.limit_loopback {
            return true;
        }
        let ok = self.connections.check_key(&ip).is_ok();
        // Forget addresses whose buckets are full again, now and then, so
        // the table does not grow with every address ever seen.
        if self.connections.len() > 10_000 {
            self.connections.retain_recent();
        }
        ok
    }

    /// How long `account` must wait before its next stanza is read; zero
    /// when it is within its rate.
    pub(crate) fn stanza(&self, account: &BareJid) -> Duration {
        match self.stanzas.check_key(account) {
            Ok(()) => Duration::ZERO,
            Err(not_until) => not_until.wait_time_from(DefaultClock::default().now()),
        }
    }

    /// Whether a registration attempt from `ip` may go ahead: within the
    /// address's rate (loopback exempt unless configured) and the global one.
    pub(crate) fn registration(&self, ip: IpAddr) -> bool {
        let exempt = ip.is_loopback() && !self.limit_loopback;
        if !exempt {
            if self.registrations_ip.check_key(&ip).is_err() {
                return false;
            }
            if self.registrations_ip.len() > 10_000 {
                self.registrations_ip.retain_recent();
            }
        }
        self.registrations_all.check().is_ok()
    }

    /// Whether `account` may publish now.
    pub(crate) fn publish(&self, account: &BareJid) -> bool {
        self.publishes.check_key(account).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> LimitsConfig {
        LimitsConfig {
            connections_per_ip_per_sec: 1,
            connection_burst: 3,
            stanzas_per_sec: 1,
            stanza_burst: 2,
            publishes_per_sec: 1,
            publish_burst: 2,
            ..LimitsConfig::default()
        }
    }

    #[test]
    fn bursts_pass_then_the_rate_holds() {
        let l = Limiters::new(&limits());
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert!((0..3).all(|_| l.connection(ip)));
        assert!(!l.connection(ip), "the fourth at once is over the burst");
        assert!(l.connection("192.0.2.8".parse().unwrap()), "per address");
        let jane = BareJid::new("jane@example.org").unwrap();
        assert!(l.publish(&jane) && l.publish(&jane));
        assert!(!l.publish(&jane));
        assert!(l.publish(&BareJid::new("joe@example.org").unwrap()));
        assert_eq!(l.stanza(&jane), Duration::ZERO);
        assert_eq!(l.stanza(&jane), Duration::ZERO);
        let wait = l.stanza(&jane);
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
    }

    #[test]
    fn registrations_per_address_and_overall() {
        let l = Limiters::new(&LimitsConfig {
            registration_period_per_ip_secs: 3600,
            registration_burst_per_ip: 2,
            registrations_per_sec: 1,
            registration_burst: 3,
            ..LimitsConfig::default()
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(l.registration(a) && l.registration(a));
        assert!(!l.registration(a), "a third from one address");
        assert!(l.registration("192.0.2.2".parse().unwrap()));
        assert!(
            !l.registration("192.0.2.3".parse().unwrap()),
            "the global burst of 3 is spent"
        );
    }

    #[test]
    fn loopback_is_trusted_unless_configured() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let l = Limiters::new(&limits());
        assert!((0..100).all(|_| l.connection(lo)));
        let strict = Limiters::new(&LimitsConfig {
            limit_loopback: true,
            ..limits()
        });
        assert!(!(0..100).all(|_| strict.connection(lo)));
    }
}
