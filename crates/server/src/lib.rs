//! # starling-server
//!
//! The `starling` XMPP server: listeners, stream negotiation, SASL,
//! storage, and delivery through `starling-fanout`. The binary is a thin
//! `main`; everything runs through [`run`], which tests call on port 0.
//!
//! # Layout
//! Transport and streams:
//! - `stream`: one stream layer for every transport: negotiation as a
//!   state machine without I/O, the TCP and WebSocket transports, the
//!   coalescing writer.
//! - `web`: the HTTP side (axum): XMPP over WebSocket at `/xmpp-websocket`
//!   and XEP-0156 discovery.
//! - `c2s`: client streams on that layer: the read loop, the bind, a bound
//!   session's stanzas and its own presence.
//! - [`s2s`]: server-to-server streams: the 5269 listener, one outgoing
//!   link per remote domain, STARTTLS and dialback, presence and PEP across
//!   domains, remote presence followers as fan-out sessions, XEP-0033.
//! - [`tls`]: STARTTLS and direct TLS (rustls), with a generated
//!   certificate when none is configured.
//! - [`sasl`]: SCRAM-SHA-1, SCRAM-SHA-256 and PLAIN on stored keys.
//! - `backoff`, `limits`: login back-off across connections, and rate
//!   limits (connections, stanzas, publishes, registrations).
//!
//! Policy on requests:
//! - `pep`: publish, items and RSM, subscriptions, the `#owner` use cases,
//!   and node access from the roster.
//! - `presence`: rosters, subscription exchanges and presence broadcast, on
//!   the pure state machine in [`roster`].
//! - `blocking` (XEP-0191), `disco` (XEP-0030), `register` (XEP-0077),
//!   `route` (messages and iqs, locally and to other domains), [`caps`]
//!   (XEP-0115).
//! - [`pubsub`]: node configuration, publish-options, stored items.
//!
//! State and operations:
//! - [`store`]: the durable store by concern, behind traits; redb is its
//!   one implementation. `commit` groups publishes into one fsync.
//! - `account` (deletion), `control` (ending sessions from outside),
//!   [`admin`] (the control socket), `files` (private files, the server
//!   secret), `metrics` (Prometheus).
//! - [`config`]: the TOML configuration and every limit, with defaults.

mod account;
pub mod admin;
mod backoff;
mod blocking;
mod c2s;
pub mod caps;
mod commit;
pub mod config;
mod control;
mod disco;
mod files;
mod limits;
mod metrics;
mod pep;
mod presence;
pub mod pubsub;
mod register;
pub mod roster;
mod route;
pub mod s2s;
pub mod sasl;
pub mod store;
mod stream;
pub mod tls;
mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

pub use config::{Config, ConfigError};
/// XEP-0082 date-time in UTC for milliseconds since the Unix epoch.
pub use pep::datetime as xep0082_datetime;
pub use store::{AccountRecord, Redb, Store, StoreError};
pub use web::api::oauth::personal_token;

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The fan-out strategy is unknown.
    #[error(transparent)]
    Fanout(#[from] fanout::UnknownStrategy),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// A socket operation failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The sockets the server accepts on, bound by the caller (so tests can use
/// port 0 and read the address back).
#[derive(Debug)]
pub struct Listeners {
    /// Client-to-server (5222).
    pub c2s: Vec<TcpListener>,
    /// Client-to-server with direct TLS (XEP-0368, 5223).
    pub c2s_tls: Vec<TcpListener>,
    /// The Prometheus endpoint, when configured.
    pub metrics: Option<TcpListener>,
    /// HTTP (XMPP over WebSocket, discovery).
    pub http: Vec<TcpListener>,
    /// HTTPS, the same over TLS.
    pub https: Vec<TcpListener>,
    /// Server-to-server (5269).
    pub s2s: Vec<TcpListener>,
}

impl Listeners {
    /// Binds every address in the configuration.
    pub async fn bind(config: &Config) -> std::io::Result<Self> {
        let mut c2s = Vec::new();
        for addr in &config.c2s_listen {
            c2s.push(listen(*addr)?);
        }
        let mut c2s_tls = Vec::new();
        // Without TLS there is nothing to serve on a direct-TLS port, and
        // holding the default 5223 would stop a second server starting.
        if config.tls {
            for addr in &config.c2s_tls_listen {
                c2s_tls.push(listen(*addr)?);
            }
        }
        let metrics = match config.metrics_listen {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        let mut http = Vec::new();
        for addr in &config.http_listen {
            http.push(listen(*addr)?);
        }
        let mut https = Vec::new();
        if config.tls {
            for addr in &config.https_listen {
                https.push(listen(*addr)?);
            }
        }
        let mut s2s = Vec::new();
        for addr in &config.s2s.listen {
            s2s.push(listen(*addr)?);
        }
        Ok(Self {
            c2s,
            c2s_tls,
            metrics,
            http,
            https,
            s2s,
        })
    }

    /// The bound metrics address.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The bound client-to-server addresses.
    pub fn c2s_addrs(&self) -> Vec<SocketAddr> {
        self.c2s
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The bound HTTP addresses.
    pub fn http_addrs(&self) -> Vec<SocketAddr> {
        self.http
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The bound HTTPS addresses.
    pub fn https_addrs(&self) -> Vec<SocketAddr> {
        self.https
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The bound server-to-server addresses.
    pub fn s2s_addrs(&self) -> Vec<SocketAddr> {
        self.s2s
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The bound direct-TLS addresses.
    pub fn c2s_tls_addrs(&self) -> Vec<SocketAddr> {
        self.c2s_tls
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }
}

/// Accept-queue length for the client listeners. Thousands of clients
/// reconnecting at once (after a restart, or a load test's ramp) would
/// overflow the default of 1024 and wait out a one-second SYN retransmit;
/// the kernel caps this at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// What every connection shares.
pub(crate) struct Shared {
    pub(crate) config: Config,
    /// `config.domains`, shared by every connection's negotiation.
    pub(crate) domains: Arc<[String]>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) fanout: Arc<dyn fanout::Fanout>,
    pub(crate) committer: commit::Committer,
    pub(crate) caps: Arc<caps::CapsCache>,
    /// The last available presence of each available resource, stamped.
    pub(crate) presences: dashmap::DashMap<stanza::FullJid, stanza::Stanza>,
    /// Where each resource sent directed presence (RFC 6121 §4.6).
    pub(crate) directed: dashmap::DashMap<stanza::FullJid, Vec<stanza::Jid>>,
    /// `None` when TLS is off (`tls = false` in the configuration).
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Woken (all waiters) when shutdown is signalled: see `stopping`.
    pub(crate) stop_wake: tokio::sync::Notify,
    pub(crate) metrics: Arc<metrics::Metrics>,
    pub(crate) limiters: limits::Limiters,
    /// Serializes node-access refreshes per owner.
    pub(crate) access_locks: pep::AccessLocks,
    /// Sessions waiting to be resumed (XEP-0198), by resumption id.
    pub(crate) detached: dashmap::DashMap<String, c2s::sm::Detached>,
    /// Live resumable sessions, by resumption id: their account, and how
    /// to make one let go of its connection when a resumption arrives
    /// before the server noticed the old connection was dead.
    pub(crate) resumable: dashmap::DashMap<String, (stanza::BareJid, Arc<control::Control>)>,
    /// Each bound session's kill switch, by full JID.
    pub(crate) controls: dashmap::DashMap<stanza::FullJid, Arc<control::Control>>,
    /// Failed logins across connections, by account and address.
    pub(crate) backoff: backoff::LoginBackoff,
    /// The server secret (`data_dir/server.secret`): keys decoy SCRAM
    /// salts and dialback keys.
    pub(crate) secret: [u8; 32],
    /// Federation: outgoing links to other domains.
    pub(crate) s2s: s2s::Federation,
    /// When each account's feed last changed other than by a new item.
    pub(crate) feeds: web::feed::Changes,
    /// OAuth authorization codes waiting to be exchanged.
    pub(crate) oauth_codes: web::api::oauth::Codes,
    /// What the API's live streams share.
    pub(crate) api_streams: web::api::streaming::Streams,
    /// The API's request budgets per token and per address.
    pub(crate) api_limits: web::api::guard::ApiLimits,
}

impl Shared {
    /// Runs a store call on the blocking pool ([`store::blocking`]).
    pub(crate) async fn db<T, E>(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        store::blocking(&self.store, f).await
    }

    /// Resolves once shutdown was signalled. Every connection waits on
    /// this, so it is a small future: using it instead of `stopped` over
    /// the watch channel (160 bytes) made `Conn::run` 96 bytes smaller
    /// (#11).
    pub(crate) async fn stopping(&self) {
        // Registered before the flag is read: a signal in between still
        // wakes it.
        let woken = self.stop_wake.notified();
        if *self.shutdown.borrow() {
            return;
        }
        woken.await;
    }
}

/// Resolves once shutdown was signalled. (Wrapping `wait_for` keeps its
/// non-`Send` guard out of the callers' futures.)
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|&s| s).await;
}

/// Runs the server until `shutdown` completes, then tells every client
/// `<system-shutdown/>`, waits (up to 5 s) for the sessions to close, and
/// returns. Every acknowledged write is already durable.
pub async fn run(
    listeners: Listeners,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    config.validate()?;
    let store = Arc::new(Redb::open_with_cache(
        &config.data_dir,
        config.store_cache_mib << 20,
    )?);
    run_on(listeners, config, store, shutdown).await
}

/// [`run`] on a store the caller opened: another backend, or a
/// [`store::hooked::Hooked`] one in tests.
pub async fn run_on(
    listeners: Listeners,
    config: Config,
    store: Arc<dyn Store>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    config.validate()?;
    let secret = files::server_secret(&config.data_dir)?;
    let registry = rebuild_registry(&config, &*store)?;
    let fanout = fanout::by_name(&config.fanout, registry, fanout::Config::default())?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(config.max_connections));
    info!(
        domains = ?config.domains,
        c2s = ?listeners.c2s_addrs(),
        fanout = %config.fanout,
        max_connections = config.max_connections,
        "starling running"
    );
    let tls = if config.tls {
        let c = tls::server_config(
            config.tls_cert.as_deref(),
            config.tls_key.as_deref(),
            &config.domains,
            &config.data_dir,
        )?;
        Some(tokio_rustls::TlsAcceptor::from(c))
    } else {
        None
    };
    let metrics = metrics::Metrics::new();
    if let Some(l) = listeners.metrics {
        info!(addr = ?l.local_addr().ok(), "serving Prometheus metrics at /metrics");
        tokio::spawn(metrics::serve(l, metrics.clone(), stop_rx.clone()));
    }
    let committer = commit::Committer::start(store.clone(), metrics.clone());
    let limiters = limits::Limiters::new(&config.limits);
    let backoff = backoff::LoginBackoff::new(&config.limits);
    let caps = Arc::new(caps::CapsCache::new(config.limits.caps_cache_entries));
    let shared = Arc::new_cyclic(|me| Shared {
        s2s: s2s::Federation::new(me.clone(), &config.s2s),
        feeds: web::feed::Changes::default(),
        oauth_codes: web::api::oauth::Codes::default(),
        api_streams: web::api::streaming::Streams::default(),
        api_limits: web::api::guard::ApiLimits::new(&config.web, config.limits.limit_loopback),
        domains: config.domains.clone().into(),
        config,
        store,
        fanout,
        committer,
        caps,
        presences: dashmap::DashMap::new(),
        directed: dashmap::DashMap::new(),
        tls,
        shutdown: stop_rx.clone(),
        stop_wake: tokio::sync::Notify::new(),
        metrics,
        limiters,
        backoff,
        secret,
        controls: dashmap::DashMap::new(),
        detached: dashmap::DashMap::new(),
        resumable: dashmap::DashMap::new(),
        access_locks: pep::AccessLocks::default(),
    });
    // Remote recipients of the fan-out go through the link to their
    // domain, started on first use.
    let me = Arc::downgrade(&shared);
    shared
        .fanout
        .registry()
        .on_missing_route(move |local, remote| {
            let shared = me.upgrade()?;
            shared.s2s.link(local, remote).map(|l| l.queue.clone())
        });
    match admin::bind(&shared.config.data_dir) {
        Ok(l) => {
            tokio::spawn(admin::serve(l, shared.clone(), stop_rx.clone()));
        }
        // Not fatal: the server works without it, deletions then wait for
        // a stop.
        Err(e) => warn!(error = %e, "no control socket"),
    }
    let mut accept_loops = JoinSet::new();
    let web = listeners
        .http
        .into_iter()
        .map(|l| (l, false))
        .chain(listeners.https.into_iter().map(|l| (l, true)));
    for (listener, tls) in web {
        info!(addr = ?listener.local_addr().ok(), tls, "serving XMPP over WebSocket at {}", web::WS_PATH);
        accept_loops.spawn(web::serve(listener, tls, shared.clone(), permits.clone()));
    }
    for listener in listeners.s2s {
        info!(addr = ?listener.local_addr().ok(), "serving server-to-server streams");
        accept_loops.spawn(s2s::listen::accept_loop(listener, shared.clone()));
    }
    let all = listeners
        .c2s
        .into_iter()
        .map(|l| (l, false))
        .chain(listeners.c2s_tls.into_iter().map(|l| (l, true)));
    for (listener, direct_tls) in all {
        accept_loops.spawn(accept_c2s(
            listener,
            direct_tls,
            shared.clone(),
            permits.clone(),
        ));
    }
    shutdown.await;
    info!("shutting down");
    let _ = stop_tx.send(true);
    shared.stop_wake.notify_waiters();
    while accept_loops.join_next().await.is_some() {}
    // Outgoing s2s links close their streams on the same signal; give them
    // a moment to let go of the server.
    for _ in 0..200 {
        if Arc::strong_count(&shared) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Flush: commit what is queued, then close the store (its file lock is
    // released once the last connection task has let go of it).
    shared.committer.close();
    if Arc::strong_count(&shared) > 1 {
        warn!("connections outlived the shutdown grace period; the store closes when they end");
    }
    drop(shared);
    Ok(())
}

/// The store is the authority: the fan-out index is rebuilt from it at
/// start (follows, subscriptions, blocks, who may receive each node).
fn rebuild_registry(
    config: &Config,
    store: &dyn Store,
) -> Result<Arc<fanout::Registry>, ServerError> {
    let shards = std::thread::available_parallelism().map_or(1, |n| n.get());
    let registry = Arc::new(fanout::Registry::new(config.domains.clone(), shards));
    for sub in store.all_subscriptions()? {
        registry.subscribe(&sub.owner, &sub.node, &sub.jid);
    }
    for (owner, follower) in store.all_presence_follows()? {
        registry.set_presence_follow(&owner, &follower, true);
    }
    for (owner, list) in store.all_blocks()? {
        registry.set_blocklist(&owner, &list);
    }
    for (owner, node, node_config) in store.all_nodes()? {
        let roster = if node_config.access_model == pubsub::AccessModel::Roster {
            store.roster(&owner)?
        } else {
            Vec::new()
        };
        registry.set_node_access(&owner, &node, pep::allowed_for(&node_config, &roster));
    }
    Ok(registry)
}

/// Accepts client connections on one listener until shutdown; each runs
/// on its own task, within the per-address rate and `max_connections`.
async fn accept_c2s(
    listener: TcpListener,
    direct_tls: bool,
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
) {
    let mut stop = shared.shutdown.clone();
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    while conns.try_join_next().is_some() {}
                    if !shared.limiters.connection(peer.ip()) {
                        shared.metrics.limited("connection");
                        debug!(%peer, "connection rate exceeded, refusing");
                        tokio::spawn(c2s::refuse(stream, shared.clone()));
                        continue;
                    }
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        // At max_connections: refuse at once rather
                        // than hold a socket nobody will serve.
                        warn!(%peer, "max_connections reached, refusing");
                        drop(stream);
                        continue;
                    };
                    conns.spawn(c2s::serve(stream, peer, shared.clone(), direct_tls, permit));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = stopped(&mut stop) => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
}
