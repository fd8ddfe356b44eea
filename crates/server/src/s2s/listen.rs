//! The s2s listener and each incoming stream's task: the header, STARTTLS
//! and dialback through [`Incoming`], keys checked with the originating
//! domain's authoritative server over our outgoing link to it, and then
//! stanzas from verified (from-domain, to-domain) pairs handed to
//! `inbound`. Anything else ends the stream with a stream error.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use governor::{Quota, RateLimiter};
use stanza::{ser, Element, Event, Kind, Stanza, StreamErrorCondition};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::incoming::{Action, Incoming, Policy};
use super::wire::{self, Conn, ReadEnd};
use crate::metrics::Metrics;
use crate::stream::Transport;
use crate::Shared;

/// Accepts server connections until shutdown.
pub(crate) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, peer)) => {
                    while conns.try_join_next().is_some() {}
                    let Ok(permit) = shared.s2s.incoming.clone().try_acquire_owned() else {
                        warn!(%peer, "s2s: max_incoming reached, refusing");
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    conns.spawn(serve(tcp, peer, shared.clone(), permit));
                }
                Err(e) => {
                    warn!(error = %e, "s2s: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = shared.stopping() => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
}

fn policy(shared: &Shared) -> Policy {
    let s2s = &shared.config.s2s;
    Policy {
        domains: shared.domains.clone(),
        tls_available: shared.tls.is_some(),
        require_tls: s2s.require_tls && shared.tls.is_some(),
        secret: shared.secret,
        max_pending: s2s.max_pending_keys,
        max_verified: s2s.max_domains_per_stream,
    }
}

/// A verdict from the authoritative server: (originating, receiving, valid).
type Verdict = (String, String, bool);

/// One incoming stream.
async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
) {
    let conn = Conn::new(Box::new(tcp), shared.config.limits.framer());
    let mut s = Stream {
        conn,
        neg: Incoming::new(policy(&shared), crate::stream::stream_id(), false),
        peer_from: None,
        domains: Vec::new(),
    };
    let (tx, mut verdicts) = mpsc::channel::<Verdict>(16);
    let s2s = &shared.config.s2s;
    let quota = Quota::per_second(NonZeroU32::new(s2s.stanzas_per_sec).unwrap_or(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::new(s2s.stanza_burst).unwrap_or(NonZeroU32::MIN));
    let limiter = RateLimiter::direct(quota);
    let handshake_until = Instant::now() + shared.config.limits.handshake_timeout();
    let idle = shared.config.limits.idle_timeout();
    let mut last_input = Instant::now();
    let end = loop {
        let until = if s.domains.is_empty() {
            handshake_until
        } else {
            last_input + idle
        };
        let step = tokio::select! {
            ev = wire::next_event(&mut s.conn) => {
                last_input = Instant::now();
                match ev {
                    Ok(ev) => s.on_event(&shared, ev, &tx, &limiter).await,
                    Err(ReadEnd::Closed) => Err(End::Gone),
                    Err(ReadEnd::Error(c)) => Err(End::Error(c, None)),
                }
            }
            Some((o, r, valid)) = verdicts.recv() => {
                if valid {
                    shared.metrics.s2s_streams
                        .get_or_create(&Metrics::domain(&o, "direction", "in")).inc();
                    s.domains.push(o.clone());
                    info!(%peer, from = %o, to = %r, "s2s: incoming stream verified");
                } else {
                    shared.metrics.s2s_dialback_failures
                        .get_or_create(&Metrics::domain(&o, "side", "theirs_refused")).inc();
                    warn!(%peer, from = %o, to = %r, "s2s: dialback key refused");
                }
                let actions = s.neg.on_verified(&o, &r, valid);
                s.act(&shared, actions, &tx).await
            }
            () = tokio::time::sleep_until(until) => Err(End::Error(StreamErrorCondition::ConnectionTimeout, None)),
            () = shared.stopping() => Err(End::Error(StreamErrorCondition::SystemShutdown, None)),
        };
        if let Err(e) = step {
            break e;
        }
    };
    match end {
        End::Error(cond, text) => {
            debug!(%peer, ?cond, text, "s2s: closing an incoming stream");
            let _ = s
                .conn
                .write_all_of(&[ser::stream_error(cond, text), ser::stream_close()])
                .await;
        }
        End::PeerClosed => {
            let _ = s.conn.write(&ser::stream_close()).await;
        }
        End::Gone => {}
    }
    s.conn.shutdown().await;
    for d in &s.domains {
        shared
            .metrics
            .s2s_streams
            .get_or_create(&Metrics::domain(d, "direction", "in"))
            .dec();
    }
}

/// Why a stream ends.
enum End {
    Error(StreamErrorCondition, Option<&'static str>),
    PeerClosed,
    Gone,
}

struct Stream {
    conn: Conn,
    neg: Incoming,
    /// The `from` of the peer's header, for ours.
    peer_from: Option<String>,
    /// Remote domains verified on this stream (for the metrics).
    domains: Vec<String>,
}

type Step = Result<(), End>;

impl Stream {
    async fn on_event(
        &mut self,
        shared: &Arc<Shared>,
        ev: Event,
        tx: &mpsc::Sender<Verdict>,
        limiter: &governor::DefaultDirectRateLimiter,
    ) -> Step {
        match ev {
            Event::StreamOpen(h) => {
                wire::check_header(&h).map_err(|c| End::Error(c, None))?;
                self.peer_from = h.attr("from").map(str::to_owned);
                let actions = self.neg.on_open(h.attr("to"), h.namespace(""));
                self.act(shared, actions, tx).await
            }
            Event::StreamClose => Err(End::PeerClosed),
            Event::Stanza(b) => {
                let stanza = Stanza::from_framed(b.clone())
                    .map_err(|_| End::Error(StreamErrorCondition::NotWellFormed, None))?;
                if stanza.kind() == Kind::Other {
                    let el = Element::from_stanza(&b)
                        .map_err(|_| End::Error(StreamErrorCondition::NotWellFormed, None))?;
                    let actions = self.neg.on_element(&el);
                    return self.act(shared, actions, tx).await;
                }
                self.neg
                    .accepts(stanza.from().as_deref(), stanza.to().as_deref())
                    .map_err(|c| End::Error(c, Some("sender not verified on this stream")))?;
                // The stream's rate, not an account's: one post to many
                // remote followers is many stanzas on one stream.
                if let Err(not_until) = limiter.check() {
                    use governor::clock::Clock;
                    let wait =
                        not_until.wait_time_from(governor::clock::DefaultClock::default().now());
                    shared.metrics.limited("s2s_stanza");
                    tokio::time::sleep(wait).await;
                }
                let from_domain = stanza
                    .from()
                    .and_then(|f| stanza::Jid::new(&f).ok())
                    .map(|j| j.domain().to_owned())
                    .unwrap_or_default();
                shared
                    .metrics
                    .s2s_stanzas
                    .get_or_create(&Metrics::domain(&from_domain, "direction", "in"))
                    .inc();
                super::inbound::stanza(shared, stanza).await;
                Ok(())
            }
        }
    }

    async fn act(
        &mut self,
        shared: &Arc<Shared>,
        actions: Vec<Action>,
        tx: &mpsc::Sender<Verdict>,
    ) -> Step {
        for a in actions {
            match a {
                Action::Open { from } => {
                    let header = ser::server_stream_header(
                        &from,
                        self.peer_from.as_deref(),
                        Some(self.neg.stream_id()),
                    );
                    self.write(&header).await?;
                }
                Action::Send(b) => self.write(&b).await?,
                Action::StartTls => self.start_tls(shared).await?,
                Action::Verify {
                    originating,
                    receiving,
                    key,
                } => {
                    let (shared, tx) = (shared.clone(), tx.clone());
                    let id = self.neg.stream_id().to_owned();
                    let wait = shared.config.s2s.connect_timeout() * 2;
                    tokio::spawn(async move {
                        let valid = tokio::time::timeout(
                            wait,
                            shared.s2s.verify(&receiving, &originating, &id, &key),
                        )
                        .await
                        .unwrap_or(false);
                        let _ = tx.send((originating, receiving, valid)).await;
                    });
                }
                Action::Close(cond, text) => return Err(End::Error(cond, text)),
            }
        }
        Ok(())
    }

    async fn write(&mut self, b: &Bytes) -> Step {
        self.conn.write(b).await.map_err(|_| End::Gone)
    }

    async fn start_tls(&mut self, shared: &Shared) -> Step {
        let Some(acceptor) = shared.tls.clone() else {
            return Err(End::Error(StreamErrorCondition::PolicyViolation, None));
        };
        self.write(&Bytes::from_static(
            b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
        ))
        .await?;
        let limits = shared.config.limits.framer();
        let placeholder = Conn::new(Box::new(tokio::io::duplex(1).0), limits);
        let old = std::mem::replace(&mut self.conn, placeholder);
        let io = old.into_inner().ok_or(End::Gone)?;
        let tls = acceptor.accept(io).await.map_err(|e| {
            debug!(error = %e, "s2s: TLS handshake failed");
            End::Gone
        })?;
        self.conn = Conn::new(Box::new(tls), limits);
        Ok(())
    }
}
