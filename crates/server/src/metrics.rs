//! Prometheus metrics (prometheus-client), served as text on a loopback
//! HTTP port when `metrics_listen` is set; off by default.
//!
//! The HTTP side answers one request per connection, `GET /metrics`, and
//! nothing else: a scrape endpoint needs no more, and a full HTTP stack
//! would be most of the binary's dependencies for one route.

use std::sync::Arc;
use std::time::Duration;

use fanout::DeliveryReport;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::debug;

type Labels = Vec<(&'static str, &'static str)>;
/// Labels with a remote domain in them (s2s series).
pub(crate) type DomainLabels = Vec<(&'static str, String)>;

/// Every metric the server keeps.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    /// Open client connections.
    pub(crate) connections: Gauge,
    /// Bound sessions.
    pub(crate) sessions: Gauge,
    /// Successful logins (rate() gives logins/s).
    pub(crate) logins: Counter,
    /// Failed SASL attempts (aborts included).
    pub(crate) auth_failures: Counter,
    /// PBKDF2 derivations (PLAIN checks, new keys): mirrored from
    /// [`crate::sasl::pbkdf2_runs`] at each scrape.
    pbkdf2: Counter,
    /// Accounts created by in-band registration.
    pub(crate) registrations: Counter,
    /// Sessions resumed (XEP-0198).
    pub(crate) sm_resumed: Counter,
    /// Verified caps answers cached.
    pub(crate) caps_cache: Gauge,
    /// Stanzas read from clients.
    pub(crate) stanzas_in: Counter,
    /// Frames written to clients (stanzas and stream-level elements).
    pub(crate) stanzas_out: Counter,
    /// Publishes acknowledged.
    pub(crate) publishes: Counter,
    /// Notifications queued for a session by the fan-out.
    pub(crate) deliveries: Counter,
    /// Notifications not queued, and sessions ended for a full queue.
    pub(crate) drops: Family<Labels, Counter>,
    /// Requests refused or slowed by a rate limit, by kind.
    pub(crate) rate_limited: Family<Labels, Counter>,
    /// Seconds one group commit (write transaction + fsync) took.
    pub(crate) commit_seconds: Histogram,
    /// Publishes per group commit.
    pub(crate) commit_batch: Histogram,
    /// Server-to-server streams open, by remote domain and direction.
    pub(crate) s2s_streams: Family<DomainLabels, Gauge>,
    /// Stanzas over server streams, by remote domain and direction.
    pub(crate) s2s_stanzas: Family<DomainLabels, Counter>,
    /// Stanzas for a remote domain not sent (bounced or dropped), or from
    /// one not delivered (`unparsable`), by remote domain and reason.
    pub(crate) s2s_drops: Family<DomainLabels, Counter>,
    /// Dialback failures, by remote domain and which side failed.
    pub(crate) s2s_dialback_failures: Family<DomainLabels, Counter>,
    /// Open API streams (server-sent events).
    pub(crate) api_streams: Gauge,
    /// HTTP requests answered, by route and status.
    pub(crate) http_requests: Family<DomainLabels, Counter>,
    sync: std::sync::Mutex<()>,
}

impl Metrics {
    pub(crate) fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("starling");
        let m = Self {
            connections: Gauge::default(),
            sessions: Gauge::default(),
            logins: Counter::default(),
            auth_failures: Counter::default(),
            pbkdf2: Counter::default(),
            registrations: Counter::default(),
            sm_resumed: Counter::default(),
            caps_cache: Gauge::default(),
            stanzas_in: Counter::default(),
            stanzas_out: Counter::default(),
            publishes: Counter::default(),
            deliveries: Counter::default(),
            drops: Family::default(),
            rate_limited: Family::default(),
            commit_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            commit_batch: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            s2s_streams: Family::default(),
            s2s_stanzas: Family::default(),
            s2s_drops: Family::default(),
            s2s_dialback_failures: Family::default(),
            api_streams: Gauge::default(),
            http_requests: Family::default(),
            sync: std::sync::Mutex::new(()),
            registry: Registry::default(),
        };
        registry.register(
            "connections",
            "Open client connections",
            m.connections.clone(),
        );
        registry.register("sessions", "Bound client sessions", m.sessions.clone());
        registry.register(
            "api_streams",
            "Open API streams (server-sent events)",
            m.api_streams.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            m.http_requests.clone(),
        );
        registry.register("logins", "Successful logins", m.logins.clone());
        registry.register(
            "auth_failures",
            "Failed SASL attempts",
            m.auth_failures.clone(),
        );
        registry.register(
            "pbkdf2_derivations",
            "PBKDF2 derivations (password checks and new SCRAM keys)",
            m.pbkdf2.clone(),
        );
        registry.register(
            "registrations",
            "Accounts created by in-band registration",
            m.registrations.clone(),
        );
        registry.register(
            "sm_resumed",
            "Sessions resumed after their connection dropped (XEP-0198)",
            m.sm_resumed.clone(),
        );
        registry.register(
            "caps_cache_entries",
            "Verified XEP-0115 answers cached",
            m.caps_cache.clone(),
        );
        registry.register(
            "stanzas_in",
            "Stanzas read from clients",
            m.stanzas_in.clone(),
        );
        registry.register(
            "stanzas_out",
            "Frames written to clients",
            m.stanzas_out.clone(),
        );
        registry.register("publishes", "Publishes acknowledged", m.publishes.clone());
        registry.register(
            "deliveries",
            "Pubsub notifications queued for sessions",
            m.deliveries.clone(),
        );
        registry.register(
            "queue_drops",
            "Notifications not queued, and sessions disconnected for a full queue, by reason",
            m.drops.clone(),
        );
        registry.register(
            "rate_limited",
            "Connections refused, publishes refused and sessions slowed by rate limits",
            m.rate_limited.clone(),
        );
        registry.register(
            "store_commit_seconds",
            "Duration of one group commit (transaction and fsync)",
            m.commit_seconds.clone(),
        );
        registry.register(
            "store_commit_batch",
            "Publishes per group commit",
            m.commit_batch.clone(),
        );
        registry.register(
            "s2s_streams",
            "Server-to-server streams open, by remote domain and direction",
            m.s2s_streams.clone(),
        );
        registry.register(
            "s2s_stanzas",
            "Stanzas over server-to-server streams, by remote domain and direction",
            m.s2s_stanzas.clone(),
        );
        registry.register(
            "s2s_drops",
            "Stanzas for a remote domain bounced or dropped, or from one left undelivered, by remote domain and reason",
            m.s2s_drops.clone(),
        );
        registry.register(
            "s2s_dialback_failures",
            "Dialback failures, by remote domain and side (ours refused, theirs refused)",
            m.s2s_dialback_failures.clone(),
        );
        Arc::new(Self { registry, ..m })
    }

    /// The labels of a remote domain's series.
    pub(crate) fn domain(domain: &str, key: &'static str, value: &str) -> DomainLabels {
        vec![("domain", domain.to_owned()), (key, value.to_owned())]
    }

    /// Counts what one fan-out did.
    pub(crate) fn delivery(&self, r: &DeliveryReport) {
        self.deliveries.inc_by(r.delivered);
        for (reason, n) in [
            ("queue_full", r.dropped.queue_full),
            ("closed", r.dropped.closed),
            ("no_route", r.dropped.no_route),
            ("lagged", r.dropped.lagged),
        ] {
            if n > 0 {
                self.drops
                    .get_or_create(&vec![("reason", reason)])
                    .inc_by(n);
            }
        }
    }

    /// Counts one drop by reason.
    pub(crate) fn dropped(&self, reason: &'static str) {
        self.drops.get_or_create(&vec![("reason", reason)]).inc();
    }

    /// Counts one rate-limit hit by kind.
    pub(crate) fn limited(&self, kind: &'static str) {
        self.rate_limited.get_or_create(&vec![("kind", kind)]).inc();
    }

    /// The text exposition.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        {
            // One scrape at a time brings the mirror up to date.
            let _one = self.sync.lock();
            let now = crate::sasl::pbkdf2_runs();
            self.pbkdf2.inc_by(now.saturating_sub(self.pbkdf2.get()));
        }
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Serves `GET /metrics` until shutdown.
pub(crate) async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = listener.accept() => {
                let Ok((mut s, _)) = r else { continue };
                let m = metrics.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::with_capacity(1024);
                    let read = tokio::time::timeout(Duration::from_secs(5), async {
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                            if s.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                                break;
                            }
                        }
                    });
                    if read.await.is_err() {
                        return;
                    }
                    let (status, body) = if buf.starts_with(b"GET /metrics ") || buf.starts_with(b"GET /metrics?") {
                        ("200 OK", m.render())
                    } else {
                        ("404 Not Found", "not found: try /metrics\n".to_owned())
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = s.write_all(head.as_bytes()).await;
                    let _ = s.write_all(body.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
            () = crate::stopped(&mut shutdown) => break,
        }
    }
    debug!("metrics endpoint stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_with_the_prefix() {
        let m = Metrics::new();
        m.logins.inc();
        m.dropped("overflow_disconnect");
        m.limited("publish");
        m.commit_seconds.observe(0.002);
        let text = m.render();
        for want in [
            "starling_logins_total 1",
            "starling_queue_drops_total{reason=\"overflow_disconnect\"} 1",
            "starling_rate_limited_total{kind=\"publish\"} 1",
            "starling_store_commit_seconds_count 1",
            "starling_sessions 0",
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
    }
}
