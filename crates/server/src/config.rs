//! Server configuration: a TOML file, with CLI overrides applied by `main`.
//!
//! Every limit is here, with its default and what exceeding it does; the
//! README's limits table mirrors this file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown keys.
    #[error("parsing {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: toml::de::Error,
    },
    /// A value is out of range; the text names the key.
    #[error("invalid setting `{key}`: {why}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// Why.
        why: String,
    },
}

/// Limits, each an operator setting with a documented default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest stanza in bytes (256 KiB). Exceeded: `policy-violation`.
    pub max_stanza_bytes: usize,
    /// Largest stanza in bytes before authentication (16 KiB), sized for
    /// SASL and in-band registration. Exceeded: `policy-violation`.
    pub pre_auth_max_stanza_bytes: usize,
    /// Deepest element nesting in a stanza (64). Exceeded: `policy-violation`.
    pub max_depth: usize,
    /// Most attributes on one element (64). Exceeded: `policy-violation`.
    pub max_attributes: usize,
    /// Most namespace declarations in one stanza (64). Exceeded:
    /// `policy-violation`.
    pub max_namespace_decls: usize,
    /// Frames a session's outbound queue holds (8192; memory is taken only
    /// as the queue fills). Exceeded: the
    /// session is disconnected with `policy-violation`; history keeps the
    /// posts it missed.
    pub outbound_queue: usize,
    /// Bytes a session's outbound queue holds (4 MiB): with
    /// `outbound_queue`, the slow-consumer bound, for every kind of stanza
    /// (notifications, presence, roster pushes, iq results). Exceeded: the
    /// session is disconnected with `policy-violation`.
    pub outbound_queue_bytes: usize,
    /// Seconds one write to a client may make no progress (60). Exceeded:
    /// the session is closed, so a client that stops reading cannot hold
    /// its queue and socket buffers.
    pub write_stall_timeout_secs: u64,
    /// Seconds a connection has to finish the stream negotiation through
    /// resource binding (30). Exceeded: `connection-timeout`.
    pub handshake_timeout_secs: u64,
    /// Seconds a session with stream management (XEP-0198) outlives its
    /// connection, waiting to be resumed (300). Exceeded: its unacknowledged
    /// messages get RFC 6121 §8.5 handling (headlines are dropped and
    /// counted), its iqs an error, and it goes unavailable.
    pub resumption_timeout_secs: u64,
    /// Seconds without any byte from the client (whitespace keepalives
    /// count) before the stream is closed (300). Exceeded:
    /// `connection-timeout`.
    pub idle_timeout_secs: u64,
    /// Failed SASL attempts allowed on one connection (3). Exceeded: the
    /// stream is closed with `policy-violation`.
    pub max_auth_failures: u32,
    /// New connections per second from one IP address (10, with bursts of
    /// `connection_burst`). Exceeded: the connection gets
    /// `policy-violation` at once.
    pub connections_per_ip_per_sec: u32,
    /// Burst of new connections from one IP address (50).
    pub connection_burst: u32,
    /// Whether loopback addresses are rate-limited too (false: local load
    /// generators and gateways are trusted).
    pub limit_loopback: bool,
    /// Stanzas per second one account may send, over all its sessions
    /// (200, with bursts of `stanza_burst`). Exceeded: the server stops
    /// reading that session until the rate is back (Prosody's mod_limits
    /// does the same), so a flood slows the flooder only.
    pub stanzas_per_sec: u32,
    /// Burst of stanzas per account (1000).
    pub stanza_burst: u32,
    /// Publishes per second one account may make (20, with bursts of
    /// `publish_burst`). Exceeded: the publish gets `resource-constraint`
    /// (type `wait`) and nothing is stored.
    pub publishes_per_sec: u32,
    /// Burst of publishes per account (100).
    pub publish_burst: u32,
    /// Login back-off: the delay after the first failed login on an
    /// account or from an address (250 ms); it doubles with each further
    /// failure, across connections.
    pub login_backoff_base_ms: u64,
    /// The longest back-off delay (30 s). Nobody is ever locked out: the
    /// right password works once the delay has passed.
    pub login_backoff_max_secs: u64,
    /// Seconds after the last failure when an account's or address's
    /// failures are forgotten (900).
    pub login_backoff_forget_secs: u64,
    /// Most accounts and addresses the back-off remembers at once
    /// (100,000); past it the oldest are forgotten first.
    pub login_backoff_max_entries: usize,
    /// In-band registrations from one address: one per this many seconds
    /// (60), with bursts of `registration_burst_per_ip`. Loopback is exempt
    /// unless `limit_loopback`. Exceeded: `resource-constraint` (wait).
    pub registration_period_per_ip_secs: u64,
    /// Burst of registrations from one address (3).
    pub registration_burst_per_ip: u32,
    /// In-band registrations per second from everywhere together (5, with
    /// bursts of `registration_burst`). Exceeded: `resource-constraint`.
    pub registrations_per_sec: u32,
    /// Burst of registrations from everywhere (50).
    pub registration_burst: u32,
    /// Verified caps (XEP-0115) answers kept, shared by all sessions
    /// (10,000); past it the least recently used is forgotten and asked
    /// again when next seen.
    pub caps_cache_entries: usize,
    /// Caps disco#info queries one session may have unanswered (4); past it
    /// new `ver`s are not asked about until answers come back.
    pub max_caps_queries: usize,
    /// Most PEP nodes one account may own (100). Exceeded: a publish that
    /// would create a node gets `policy-violation` + `max-nodes-exceeded`.
    pub max_nodes_per_account: usize,
    /// Largest item payload in bytes (128 KiB). Exceeded: `not-acceptable`
    /// + `payload-too-big` (XEP-0060 §7.1.3.4).
    pub max_item_bytes: usize,
    /// Most roster items per account, hidden pending requests included
    /// (100,000: a popular account's followers by presence are roster
    /// items). Exceeded: `policy-violation`.
    pub max_roster_items: usize,
    /// Most pending incoming subscription requests per account (1,000).
    /// Exceeded: the request bounces with `policy-violation`.
    pub max_pending_requests: usize,
    /// Most entries in one block list (1,000). Exceeded: `policy-violation`.
    pub max_blocklist_items: usize,
    /// Most resources bound at once per account (10). Exceeded: the bind
    /// gets `resource-constraint` (RFC 6120 §7.6.2.1).
    pub max_resources_per_account: usize,
    /// Most distinct recipients of directed presence per session (100).
    /// Exceeded: the presence bounces with `policy-violation`.
    pub max_directed_presences: usize,
    /// Most items in one reply: an items request (with or without
    /// `max_items`, by id, or an RSM page) and the last items replayed to a
    /// resource coming online (256, Prosody's `pep_max_items`). More: the
    /// reply is cut at the limit; RSM pages say where they stopped.
    pub max_reply_items: usize,
    /// Most item payload bytes in one such reply (1 MiB). More: the reply
    /// is cut before the item that would pass it.
    pub max_reply_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let f = stanza::Limits::default();
        Self {
            max_stanza_bytes: f.max_stanza_bytes,
            pre_auth_max_stanza_bytes: 16 * 1024,
            max_depth: f.max_depth,
            max_attributes: f.max_attributes,
            max_namespace_decls: f.max_namespace_decls,
            outbound_queue: 8192,
            outbound_queue_bytes: 4 << 20,
            write_stall_timeout_secs: 60,
            handshake_timeout_secs: 30,
            resumption_timeout_secs: 300,
            idle_timeout_secs: 300,
            max_auth_failures: 3,
            connections_per_ip_per_sec: 10,
            connection_burst: 50,
            limit_loopback: false,
            stanzas_per_sec: 200,
            stanza_burst: 1000,
            publishes_per_sec: 20,
            publish_burst: 100,
            login_backoff_base_ms: 250,
            login_backoff_max_secs: 30,
            login_backoff_forget_secs: 900,
            login_backoff_max_entries: 100_000,
            registration_period_per_ip_secs: 60,
            registration_burst_per_ip: 3,
            registrations_per_sec: 5,
            registration_burst: 50,
            caps_cache_entries: 10_000,
            max_caps_queries: 4,
            max_nodes_per_account: 100,
            max_item_bytes: 128 * 1024,
            max_roster_items: 100_000,
            max_pending_requests: 1_000,
            max_blocklist_items: 1_000,
            max_resources_per_account: 10,
            max_directed_presences: 100,
            max_reply_items: 256,
            max_reply_bytes: 1 << 20,
        }
    }
}

impl LimitsConfig {
    /// The framer's share of the limits.
    pub fn framer(&self) -> stanza::Limits {
        stanza::Limits {
            max_stanza_bytes: self.max_stanza_bytes,
            max_depth: self.max_depth,
            max_attributes: self.max_attributes,
            max_namespace_decls: self.max_namespace_decls,
        }
    }
    /// The framer's limits before authentication.
    pub fn pre_auth_framer(&self) -> stanza::Limits {
        stanza::Limits {
            max_stanza_bytes: self.pre_auth_max_stanza_bytes.min(self.max_stanza_bytes),
            ..self.framer()
        }
    }
    /// The handshake timeout.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }
    /// How long a detached session waits to be resumed.
    pub fn resumption_timeout(&self) -> Duration {
        Duration::from_secs(self.resumption_timeout_secs)
    }
    /// The roster quotas.
    pub fn roster_quota(&self) -> crate::store::RosterQuota {
        crate::store::RosterQuota {
            max_items: self.max_roster_items,
            max_pending: self.max_pending_requests,
        }
    }
    /// What one items reply or replay batch may carry.
    pub fn reply_budget(&self) -> crate::store::Budget {
        crate::store::Budget {
            items: self.max_reply_items,
            bytes: self.max_reply_bytes,
        }
    }
    /// The write-stall timeout.
    pub fn write_stall_timeout(&self) -> Duration {
        Duration::from_secs(self.write_stall_timeout_secs)
    }
    /// The idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Domains served here. The first is the default.
    pub domains: Vec<String>,
    /// Client-to-server listen addresses (5222).
    pub c2s_listen: Vec<SocketAddr>,
    /// Client-to-server listen addresses with direct TLS (XEP-0368, 5223).
    pub c2s_tls_listen: Vec<SocketAddr>,
    /// Where the store lives.
    pub data_dir: PathBuf,
    /// Offer TLS (STARTTLS and direct TLS). On by default.
    pub tls: bool,
    /// Require TLS before authentication (RFC 6120 §5.3.1). On by default;
    /// loopback benchmarks turn it off.
    pub require_encryption: bool,
    /// PEM certificate chain. With `tls_key`; when both are unset a
    /// self-signed pair is generated in `data_dir/tls/` on first start.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Offer SASL PLAIN without TLS. Off by default; loopback benchmarks
    /// turn it on.
    pub allow_plaintext_auth: bool,
    /// Open in-band registration (XEP-0077).
    pub allow_registration: bool,
    /// PBKDF2 iterations for new SCRAM keys (4096, RFC 5802's minimum;
    /// Prosody uses 10000).
    pub scram_iterations: u32,
    /// Most concurrent client connections. Default: the process's open-file
    /// limit minus 64 for the store, listeners and logs.
    pub max_connections: usize,
    /// The fan-out strategy (`naive`, `shared`, `sharded`, `broadcast`).
    pub fanout: String,
    /// Where to serve Prometheus metrics over HTTP (`GET /metrics`); a
    /// loopback address. Off (unset) by default.
    pub metrics_listen: Option<SocketAddr>,
    /// Where to serve HTTP: XMPP over WebSocket at `/xmpp-websocket`
    /// (RFC 7395) and its discovery (XEP-0156). Off (empty) by default.
    /// Plain `ws://`, for loopback and behind a TLS-terminating proxy.
    pub http_listen: Vec<SocketAddr>,
    /// The same over TLS (`wss://`), with the certificate of c2s. Off
    /// (empty) by default.
    pub https_listen: Vec<SocketAddr>,
    /// Addresses whose plain WebSocket connections count as encrypted for
    /// `require_encryption`: a TLS-terminating proxy in front of
    /// `http_listen` (loopback, when the proxy runs on this host). Empty by
    /// default.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// The WebSocket URL announced by XEP-0156 discovery; by default built
    /// from the request's `Host` and the listener's scheme.
    pub websocket_url: Option<String>,
    /// The store's page cache in MiB (8). It fills with the pages reads
    /// touch, about 1 KB per account that logged in, up to this bound;
    /// past it reads come from the OS page cache.
    pub store_cache_mib: usize,
    /// Limits.
    pub limits: LimitsConfig,
    /// Federation (`[s2s]`): listener, host map, TLS and s2s limits.
    pub s2s: crate::s2s::S2sConfig,
    /// The HTTP API and feeds (`[web]`): their limits.
    pub web: crate::web::WebConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            domains: vec!["localhost".into()],
            c2s_listen: vec!["0.0.0.0:5222".parse().expect("literal address")],
            c2s_tls_listen: vec!["0.0.0.0:5223".parse().expect("literal address")],
            data_dir: PathBuf::from("data"),
            tls: true,
            require_encryption: true,
            tls_cert: None,
            tls_key: None,
            allow_plaintext_auth: false,
            allow_registration: false,
            scram_iterations: 4096,
            max_connections: open_file_limit().saturating_sub(64).max(1),
            store_cache_mib: crate::store::redb::DEFAULT_CACHE_BYTES >> 20,
            fanout: "shared".into(),
            metrics_listen: None,
            http_listen: Vec::new(),
            https_listen: Vec::new(),
            trusted_proxies: Vec::new(),
            websocket_url: None,
            limits: LimitsConfig::default(),
            s2s: crate::s2s::S2sConfig::default(),
            web: crate::web::WebConfig::default(),
        }
    }
}

impl Config {
    /// Reads a TOML file; keys left out keep their defaults.
    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, why: &str| {
            Err(ConfigError::Invalid {
                key,
                why: why.to_owned(),
            })
        };
        if self.domains.is_empty() {
            return invalid("domains", "at least one domain is required");
        }
        for d in &self.domains {
            if stanza::BareJid::new(d)
                .map(|j| j.node().is_some())
                .unwrap_or(true)
            {
                return Err(ConfigError::Invalid {
                    key: "domains",
                    why: format!("{d:?} is not a domain"),
                });
            }
        }
        if self.scram_iterations < 4096 {
            return invalid("scram_iterations", "RFC 5802 requires at least 4096");
        }
        if self.require_encryption && !self.tls {
            return invalid("require_encryption", "needs tls = true");
        }
        if !self.https_listen.is_empty() && !self.tls {
            return invalid("https_listen", "needs tls = true");
        }
        if self
            .websocket_url
            .as_deref()
            .is_some_and(|u| !(u.starts_with("ws://") || u.starts_with("wss://")))
        {
            return invalid("websocket_url", "must start with ws:// or wss://");
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return invalid("tls_cert", "tls_cert and tls_key go together");
        }
        if self.store_cache_mib == 0 || self.store_cache_mib > 1 << 20 {
            return invalid("store_cache_mib", "must be 1 to 1048576");
        }
        if self.max_connections == 0 {
            return invalid("max_connections", "must be at least 1");
        }
        if !fanout::STRATEGIES.contains(&self.fanout.as_str()) {
            return Err(ConfigError::Invalid {
                key: "fanout",
                why: format!(
                    "unknown strategy {:?}; one of {}",
                    self.fanout,
                    fanout::STRATEGIES.join(", ")
                ),
            });
        }
        if self.limits.max_stanza_bytes < 1024 {
            return invalid("limits.max_stanza_bytes", "must be at least 1024");
        }
        if self.limits.pre_auth_max_stanza_bytes < 1024 {
            return invalid("limits.pre_auth_max_stanza_bytes", "must be at least 1024");
        }
        if self.limits.registration_period_per_ip_secs == 0 {
            return invalid(
                "limits.registration_period_per_ip_secs",
                "must be at least 1",
            );
        }
        if self.limits.login_backoff_max_entries == 0 {
            return invalid("limits.login_backoff_max_entries", "must be at least 1");
        }
        if self.limits.caps_cache_entries == 0 {
            return invalid("limits.caps_cache_entries", "must be at least 1");
        }
        for (key, v) in [
            (
                "limits.max_nodes_per_account",
                self.limits.max_nodes_per_account,
            ),
            ("limits.max_item_bytes", self.limits.max_item_bytes),
            ("limits.max_roster_items", self.limits.max_roster_items),
            (
                "limits.max_resources_per_account",
                self.limits.max_resources_per_account,
            ),
        ] {
            if v == 0 {
                return invalid(key, "must be at least 1");
            }
        }
        if self.limits.max_reply_items == 0 {
            return invalid("limits.max_reply_items", "must be at least 1");
        }
        if self.limits.max_reply_bytes < self.limits.max_stanza_bytes {
            return invalid(
                "limits.max_reply_bytes",
                "must be at least limits.max_stanza_bytes, so the largest item fits in a reply",
            );
        }
        if self.limits.outbound_queue_bytes < self.limits.max_stanza_bytes {
            return invalid(
                "limits.outbound_queue_bytes",
                "must be at least limits.max_stanza_bytes",
            );
        }
        if self.limits.write_stall_timeout_secs == 0 {
            return invalid("limits.write_stall_timeout_secs", "must be at least 1");
        }
        if self.limits.outbound_queue == 0 {
            return invalid("limits.outbound_queue", "must be at least 1");
        }
        for (key, v) in [
            (
                "limits.connections_per_ip_per_sec",
                self.limits.connections_per_ip_per_sec,
            ),
            ("limits.connection_burst", self.limits.connection_burst),
            ("limits.stanzas_per_sec", self.limits.stanzas_per_sec),
            ("limits.stanza_burst", self.limits.stanza_burst),
            ("limits.publishes_per_sec", self.limits.publishes_per_sec),
            ("limits.publish_burst", self.limits.publish_burst),
            (
                "limits.registration_burst_per_ip",
                self.limits.registration_burst_per_ip,
            ),
            (
                "limits.registrations_per_sec",
                self.limits.registrations_per_sec,
            ),
            ("limits.registration_burst", self.limits.registration_burst),
        ] {
            if v == 0 {
                return invalid(key, "must be at least 1");
            }
        }
        self.s2s.validate()?;
        self.web.validate()?;
        if self.metrics_listen.is_some_and(|a| !a.ip().is_loopback()) {
            return invalid(
                "metrics_listen",
                "metrics are served on loopback only; put a proxy in front to expose them",
            );
        }
        Ok(())
    }

    /// The served domain matching `to`, normalised.
    pub fn served_domain(&self, to: &str) -> Option<&str> {
        let to = stanza::BareJid::new(to).ok()?;
        self.domains
            .iter()
            .find(|d| d.as_str() == to.as_str())
            .map(String::as_str)
    }
}

/// The soft open-file limit of this process (Linux), or 1024.
pub fn open_file_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_overrides_defaults_and_rejects_unknown_keys() {
        let c: Config = toml::from_str(
            "domains = ['example.org']\nallow_plaintext_auth = true\n[limits]\nmax_stanza_bytes = 4096\n",
        )
        .unwrap();
        assert_eq!(c.domains, ["example.org"]);
        assert!(c.allow_plaintext_auth);
        assert_eq!(c.limits.max_stanza_bytes, 4096);
        assert_eq!(c.limits.max_depth, 64);
        c.validate().unwrap();
        assert!(toml::from_str::<Config>("domian = 'x'").is_err());
    }

    #[test]
    fn validation_names_the_key() {
        let c = Config {
            fanout: "fastest".into(),
            ..Config::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("`fanout`") && e.contains("fastest"), "{e}");
        let c = Config {
            scram_iterations: 10,
            ..Config::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("scram_iterations"));
        let c = Config {
            domains: vec!["a@b".into()],
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("domains"));
        let c = Config {
            store_cache_mib: 0,
            ..Config::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("store_cache_mib"), "{e}");
    }

    #[test]
    fn max_connections_defaults_below_the_file_limit() {
        assert!(Config::default().max_connections < open_file_limit());
    }
}
