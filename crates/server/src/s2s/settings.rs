//! The `[s2s]` settings: where to listen, how to find and reach other
//! servers, and the limits of server-to-server streams. Each is an
//! operator setting with its default; the README's limits table lists
//! them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigError;

/// Federation settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S2sConfig {
    /// Server-to-server listen addresses (`0.0.0.0:5269`). Empty: no
    /// incoming federation (outgoing streams still work, but peers that
    /// check us with dialback need to reach this port).
    pub listen: Vec<SocketAddr>,
    /// A static host map, domain → `host:port`, which wins over DNS: for
    /// tests and private deployments.
    pub hosts: BTreeMap<String, String>,
    /// Require TLS on server streams, both ways (true, as Prosody 0.12).
    /// A peer's certificate is not checked: dialback authenticates it.
    pub require_tls: bool,
    /// Seconds to find and connect to a remote server and finish dialback
    /// (10). Exceeded: what was queued for it bounces with
    /// `remote-server-timeout`.
    pub connect_timeout_secs: u64,
    /// Seconds an outgoing stream with nothing to send stays open (300).
    pub idle_timeout_secs: u64,
    /// The longest wait before connecting again to a domain that failed
    /// (60 s; the wait starts at 1 s and doubles). Stanzas for it bounce
    /// meanwhile with `remote-server-not-found`.
    pub reconnect_max_secs: u64,
    /// Stanzas queued for one remote domain (100,000: one post to 5,000
    /// remote followers is 5,000 stanzas). Exceeded: the stanza bounces
    /// and the drop is counted for the domain.
    pub queue: usize,
    /// Bytes queued for one remote domain (64 MiB).
    pub queue_bytes: usize,
    /// Stanzas per second one incoming stream may send (100,000, with
    /// bursts of `stanza_burst`). Exceeded: the server stops reading that
    /// stream until the rate is back. c2s's per-account rate does not
    /// apply to servers.
    pub stanzas_per_sec: u32,
    /// Burst of stanzas per incoming stream (100,000).
    pub stanza_burst: u32,
    /// Most incoming server streams at once (1,000). Exceeded: the
    /// connection is refused.
    pub max_incoming: usize,
    /// Most remote domains with an outgoing stream (10,000). Exceeded:
    /// stanzas to a further domain bounce with `resource-constraint`.
    pub max_remote_domains: usize,
    /// Keys one incoming stream may have awaiting verification (16), and
    /// (remote, local) domain pairs it may verify (100). Exceeded:
    /// `policy-violation`.
    pub max_pending_keys: usize,
    /// See `max_pending_keys`.
    pub max_domains_per_stream: usize,
    /// Remote resources tracked for presence-based delivery (100,000):
    /// each is a session in the fan-out with its own bounded queue.
    /// Exceeded: further remote resources get no presence-based
    /// notifications (explicit subscriptions still deliver to the bare
    /// JID).
    pub max_remote_resources: usize,
    /// XEP-0033 multicast (true): offer it to peers (delivering to our own
    /// users only), and send one notification per publish to a peer domain
    /// that offers it instead of one per recipient.
    pub multicast: bool,
}

impl Default for S2sConfig {
    fn default() -> Self {
        Self {
            listen: vec!["0.0.0.0:5269".parse().expect("literal address")],
            hosts: BTreeMap::new(),
            require_tls: true,
            connect_timeout_secs: 10,
            idle_timeout_secs: 300,
            reconnect_max_secs: 60,
            queue: 100_000,
            queue_bytes: 64 << 20,
            stanzas_per_sec: 100_000,
            stanza_burst: 100_000,
            max_incoming: 1_000,
            max_remote_domains: 10_000,
            max_pending_keys: 16,
            max_domains_per_stream: 100,
            max_remote_resources: 100_000,
            multicast: true,
        }
    }
}

impl S2sConfig {
    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, why: String| Err(ConfigError::Invalid { key, why });
        for (domain, host) in &self.hosts {
            if stanza::BareJid::new(domain).map_or(true, |j| j.node().is_some()) {
                return invalid("s2s.hosts", format!("{domain:?} is not a domain"));
            }
            if host_port(host).is_none() {
                return invalid(
                    "s2s.hosts",
                    format!("{host:?} (for {domain}) is not host:port"),
                );
            }
        }
        for (key, v) in [
            ("s2s.connect_timeout_secs", self.connect_timeout_secs),
            ("s2s.idle_timeout_secs", self.idle_timeout_secs),
            ("s2s.reconnect_max_secs", self.reconnect_max_secs),
            ("s2s.queue", self.queue as u64),
            ("s2s.queue_bytes", self.queue_bytes as u64),
            ("s2s.stanzas_per_sec", u64::from(self.stanzas_per_sec)),
            ("s2s.stanza_burst", u64::from(self.stanza_burst)),
            ("s2s.max_incoming", self.max_incoming as u64),
            ("s2s.max_remote_domains", self.max_remote_domains as u64),
            ("s2s.max_pending_keys", self.max_pending_keys as u64),
            ("s2s.max_remote_resources", self.max_remote_resources as u64),
            (
                "s2s.max_domains_per_stream",
                self.max_domains_per_stream as u64,
            ),
        ] {
            if v == 0 {
                return invalid(key, "must be at least 1".into());
            }
        }
        Ok(())
    }

    /// The static host entry for `domain`.
    pub fn static_host(&self, domain: &str) -> Option<(&str, u16)> {
        self.hosts.get(domain).and_then(|h| host_port(h))
    }

    /// See `connect_timeout_secs`.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }

    /// See `idle_timeout_secs`.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    /// See `reconnect_max_secs`.
    pub fn reconnect_max(&self) -> Duration {
        Duration::from_secs(self.reconnect_max_secs)
    }
}

/// `host:port`, with `[v6]:port` for IPv6 literals.
fn host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = port.parse().ok().filter(|&p| p != 0)?;
    (!host.is_empty()).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_map_parses_and_bad_entries_name_the_key() {
        let c: S2sConfig = toml::from_str(
            "require_tls = false\n[hosts]\n'b.example' = '127.0.0.3:5269'\n'c.example' = '[::1]:5270'\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.static_host("b.example"), Some(("127.0.0.3", 5269)));
        assert_eq!(c.static_host("c.example"), Some(("::1", 5270)));
        assert_eq!(c.static_host("d.example"), None);
        let bad: S2sConfig = toml::from_str("[hosts]\n'b.example' = '127.0.0.3'\n").unwrap();
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("s2s.hosts") && e.contains("127.0.0.3"), "{e}");
        let zero = S2sConfig {
            queue: 0,
            ..S2sConfig::default()
        };
        assert!(zero
            .validate()
            .unwrap_err()
            .to_string()
            .contains("s2s.queue"));
    }
}
