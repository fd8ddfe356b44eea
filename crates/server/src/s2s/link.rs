//! One outgoing stream per (local domain, remote domain), shared by every
//! sender: a bounded queue that fills while the stream connects, a task
//! that finds the server, connects, negotiates with [`Outgoing`], then
//! drains the queue in batches, and closes when idle.
//!
//! The task outlives its connections: an idle link holds its queue and
//! waits, so the fan-out always has a route, and the next stanza connects
//! again. A domain that cannot be reached bounces what was queued for it
//! (`remote-server-not-found`, or `remote-server-timeout` when the connect
//! timeout passed) and is not tried again for a back-off that doubles up
//! to `reconnect_max_secs`; stanzas meanwhile bounce at once.
//!
//! The same stream carries our `<db:verify/>` questions about keys that
//! the remote domain's servers gave our incoming streams.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fanout::{Frame, OutboundQueue, QueueState};
use stanza::{ns, Element, Event, StanzaErrorCondition as C, StreamErrorCondition};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::outgoing::{Action, Outgoing, State};
use super::wire::{self, Conn, ReadEnd};
use crate::metrics::Metrics;
use crate::stream::Transport;
use crate::Shared;

/// Most frames one write takes.
const BATCH: usize = 256;
/// Questions about keys waiting for a link's stream.
const VERIFY_QUEUE: usize = 256;
/// The first wait after a failure.
const BACKOFF_START: Duration = Duration::from_secs(1);

/// A question for the remote domain's authoritative server.
#[derive(Debug)]
pub(crate) struct VerifyReq {
    /// The remote domain that claimed to send to us.
    pub originating: String,
    /// Our domain it wanted to send to.
    pub receiving: String,
    /// Our incoming stream's id.
    pub id: String,
    /// The key it gave.
    pub key: String,
    /// The verdict goes here.
    pub reply: oneshot::Sender<bool>,
}

/// The shared end of an outgoing stream.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) local: String,
    pub(crate) remote: String,
    /// Stanzas for the remote domain, from `local`.
    pub(crate) queue: Arc<OutboundQueue>,
    pub(crate) verify: mpsc::Sender<VerifyReq>,
}

impl Link {
    /// A link and the receiving end of its questions, for [`run`].
    pub(crate) fn new(
        local: &str,
        remote: &str,
        queue: usize,
        queue_bytes: usize,
    ) -> (Arc<Self>, mpsc::Receiver<VerifyReq>) {
        let q = OutboundQueue::new(remote, queue);
        q.set_max_bytes(queue_bytes);
        // A burst past the queue bounces what does not fit; the link goes
        // on (only sessions end on overflow).
        q.set_shedding();
        let (tx, rx) = mpsc::channel(VERIFY_QUEUE);
        let link = Arc::new(Self {
            local: local.to_owned(),
            remote: remote.to_owned(),
            queue: Arc::new(q),
            verify: tx,
        });
        (link, rx)
    }
}

/// Why the negotiation's view of an event stops the stream.
enum Stop {
    /// The peer closed the stream or sent a stream error (an idle timeout,
    /// a shutdown): after verification, what is queued goes on a new
    /// connection.
    PeerEnded,
    /// We end it for this error.
    Fail(StreamErrorCondition, &'static str),
}

/// How a connection ended.
enum Ended {
    /// Idle, or the peer closed after we were verified: connect again when
    /// there is something to send.
    Idle,
    /// It never got ready: bounce what is queued with this condition.
    Failed(C),
    /// The server is stopping.
    Stopping,
}

/// The link's task: connect when there is work, until shutdown.
pub(crate) async fn run(
    shared: Arc<Shared>,
    link: Arc<Link>,
    mut questions: mpsc::Receiver<VerifyReq>,
) {
    let mut backoff = BACKOFF_START;
    let mut held: Vec<VerifyReq> = Vec::new();
    // A batch taken from the queue whose write failed: sent first on the
    // next connection, so a stream that breaks loses nothing (a peer may
    // see a stanza twice, never none).
    let mut carry: Vec<Bytes> = Vec::new();
    loop {
        // Idle: wait for a stanza or a question.
        if held.is_empty() && carry.is_empty() {
            tokio::select! {
                () = link.queue.notified() => {}
                q = questions.recv() => match q {
                    Some(q) => held.push(q),
                    None => return,
                },
                () = shared.stopping() => return,
            }
        }
        if link.queue.state() == QueueState::Closed {
            return;
        }
        if link.queue.is_empty() && held.is_empty() && carry.is_empty() {
            // Woken by a drain's leftovers: nothing to do.
            link.queue.drain_into(&mut Vec::new(), 0);
            continue;
        }
        let started = Instant::now();
        match connect_and_serve(&shared, &link, &mut questions, &mut held, &mut carry).await {
            // A stream that broke mid-send goes again, after a pause, so a
            // peer that keeps dropping us is not hammered.
            Ended::Idle if !carry.is_empty() => {
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shared.stopping() => return,
                }
                backoff = (backoff * 2).min(shared.config.s2s.reconnect_max());
            }
            Ended::Idle => backoff = BACKOFF_START,
            Ended::Stopping => return,
            Ended::Failed(cond) => {
                warn!(local = %link.local, remote = %link.remote, ?cond, after = ?started.elapsed(),
                      "s2s: could not reach the remote domain");
                for q in held.drain(..) {
                    let _ = q.reply.send(false);
                }
                for b in carry.drain(..) {
                    bounce_one(&shared, &link, &b, cond);
                }
                bounce_queued(&shared, &link, cond);
                // Back off: what comes meanwhile bounces at once.
                let until = Instant::now() + backoff;
                backoff = (backoff * 2).min(shared.config.s2s.reconnect_max());
                loop {
                    tokio::select! {
                        () = tokio::time::sleep_until(until) => break,
                        () = link.queue.notified() => bounce_queued(&shared, &link, C::RemoteServerNotFound),
                        q = questions.recv() => match q {
                            Some(q) => { let _ = q.reply.send(false); }
                            None => return,
                        },
                        () = shared.stopping() => return,
                    }
                }
            }
        }
    }
}

/// Everything queued bounces to its local sender.
fn bounce_queued(shared: &Shared, link: &Link, cond: C) {
    let mut frames = Vec::new();
    while link.queue.drain_into(&mut frames, BATCH) > 0 {
        for f in frames.drain(..) {
            if let Frame::Bytes(b) = f {
                bounce_one(shared, link, &b, cond);
            }
        }
    }
    link.queue.release_if_empty();
}

/// One stanza that will not go: counted, and bounced to its sender unless
/// it is one that is never answered with an error (a notification).
fn bounce_one(shared: &Shared, link: &Link, b: &Bytes, cond: C) {
    shared
        .metrics
        .s2s_drops
        .get_or_create(&Metrics::domain(&link.remote, "reason", cond.as_str()))
        .inc();
    if let Some(err) = crate::route::bounce(b, cond) {
        crate::route::deliver_local_error(shared, err);
    }
}

/// One connection: find the server, connect, negotiate, then send until
/// idle.
async fn connect_and_serve(
    shared: &Arc<Shared>,
    link: &Link,
    questions: &mut mpsc::Receiver<VerifyReq>,
    held: &mut Vec<VerifyReq>,
    carry: &mut Vec<Bytes>,
) -> Ended {
    let s2s = &shared.config.s2s;
    let deadline = Instant::now() + s2s.connect_timeout();
    let connected = tokio::select! {
        r = tokio::time::timeout_at(deadline, super::connect::connect(shared, &link.remote)) => r,
        () = shared.stopping() => return Ended::Stopping,
    };
    let (conn, peer) = match connected {
        Err(_) => return Ended::Failed(C::RemoteServerTimeout),
        Ok(Err(cond)) => return Ended::Failed(cond),
        Ok(Ok(c)) => c,
    };
    debug!(remote = %link.remote, %peer, "s2s: connected");
    let domain_labels = Metrics::domain(&link.remote, "direction", "out");
    shared
        .metrics
        .s2s_streams
        .get_or_create(&domain_labels)
        .inc();
    let mut stream = Stream {
        conn,
        neg: Outgoing::new(
            link.local.clone(),
            link.remote.clone(),
            shared.secret,
            true,
            s2s.require_tls,
        ),
        peer_id: None,
        asked: Vec::new(),
    };
    let ended = stream
        .serve(shared, link, (questions, held), carry, deadline)
        .await;
    shared
        .metrics
        .s2s_streams
        .get_or_create(&domain_labels)
        .dec();
    ended
}

/// A connected outgoing stream.
struct Stream {
    conn: Conn,
    neg: Outgoing,
    /// The peer's stream id (the key is bound to it).
    peer_id: Option<String>,
    /// Questions sent, awaiting their verdicts.
    asked: Vec<VerifyReq>,
}

impl Stream {
    async fn serve(
        &mut self,
        shared: &Arc<Shared>,
        link: &Link,
        (questions, held): (&mut mpsc::Receiver<VerifyReq>, &mut Vec<VerifyReq>),
        carry: &mut Vec<Bytes>,
        deadline: Instant,
    ) -> Ended {
        let actions = self.neg.start();
        if let Err(e) = self.act(shared, link, actions).await {
            return e;
        }
        let idle = shared.config.s2s.idle_timeout();
        let mut last_sent = Instant::now();
        loop {
            let state = self.neg.state();
            let ready = state == State::Ready;
            // Questions may go once the peer's features came: waiting for
            // our own verdict first could deadlock two servers checking
            // each other.
            let can_ask = matches!(state, State::Dialback | State::Ready);
            if can_ask {
                for q in std::mem::take(held) {
                    if let Err(e) = self.ask(q).await {
                        return e;
                    }
                }
            }
            if ready && !carry.is_empty() {
                let parts = std::mem::take(carry);
                if self.conn.write_all_of(&parts).await.is_err() {
                    *carry = parts;
                    return self.lost(link, ready);
                }
                self.count_out(shared, link, parts.len());
                // The failed drain cleared the queue's wake: what it left
                // behind would otherwise wait for the next push.
                if let Err(e) = self.flush(shared, link, carry).await {
                    return e;
                }
            }
            let until = if ready { last_sent + idle } else { deadline };
            tokio::select! {
                ev = wire::next_event(&mut self.conn) => {
                    let actions = match ev {
                        Ok(ev) => match self.on_event(ev) {
                            Ok(a) => a,
                            Err(Stop::PeerEnded) => return self.lost(link, ready),
                            Err(Stop::Fail(cond, why)) => {
                                return self.fail(shared, link, (cond, why)).await
                            }
                        },
                        Err(ReadEnd::Closed) => return self.lost(link, ready),
                        Err(ReadEnd::Error(cond)) => {
                            let _ = self.conn.write(&stanza::ser::stream_error(cond, None)).await;
                            return self.lost(link, ready);
                        }
                    };
                    if let Err(e) = self.act(shared, link, actions).await {
                        return e;
                    }
                }
                () = link.queue.notified(), if ready => {
                    if let Err(e) = self.flush(shared, link, carry).await {
                        return e;
                    }
                    last_sent = Instant::now();
                }
                q = questions.recv(), if can_ask => match q {
                    Some(q) => if let Err(e) = self.ask(q).await { return e },
                    None => return Ended::Stopping,
                },
                () = tokio::time::sleep_until(until) => {
                    if !ready {
                        return Ended::Failed(C::RemoteServerTimeout);
                    }
                    if self.asked.is_empty() {
                        debug!(remote = %link.remote, "s2s: idle; closing");
                        self.close().await;
                        return Ended::Idle;
                    }
                    last_sent = Instant::now();
                }
                () = shared.stopping() => {
                    self.close().await;
                    return Ended::Stopping;
                }
            }
        }
    }

    /// Writes everything queued, in batches. A write that fails leaves
    /// its batch in `carry` for the next connection.
    async fn flush(
        &mut self,
        shared: &Shared,
        link: &Link,
        carry: &mut Vec<Bytes>,
    ) -> Result<(), Ended> {
        let mut frames = Vec::new();
        while link.queue.drain_into(&mut frames, BATCH) > 0 {
            let parts: Vec<Bytes> = frames
                .drain(..)
                .map(|f| f.to_bytes(link.queue.to_escaped()))
                .collect();
            if self.conn.write_all_of(&parts).await.is_err() {
                *carry = parts;
                return Err(self.lost(link, true));
            }
            debug!(remote = %link.remote, frames = parts.len(), "s2s: batch written");
            self.count_out(shared, link, parts.len());
        }
        link.queue.release_if_empty();
        if link.queue.state() == QueueState::Closed {
            return Err(Ended::Stopping);
        }
        Ok(())
    }

    fn count_out(&self, shared: &Shared, link: &Link, n: usize) {
        shared
            .metrics
            .s2s_stanzas
            .get_or_create(&Metrics::domain(&link.remote, "direction", "out"))
            .inc_by(n as u64);
    }

    /// The connection ended: after we were verified, what is still queued
    /// goes on a new connection; before, it bounces.
    fn lost(&mut self, link: &Link, ready: bool) -> Ended {
        for q in self.asked.drain(..) {
            let _ = q.reply.send(false);
        }
        debug!(remote = %link.remote, ready, "s2s: outgoing stream ended");
        if ready {
            Ended::Idle
        } else {
            Ended::Failed(C::RemoteServerNotFound)
        }
    }

    async fn fail(
        &mut self,
        shared: &Shared,
        link: &Link,
        (cond, why): (StreamErrorCondition, &'static str),
    ) -> Ended {
        warn!(remote = %link.remote, ?cond, why, "s2s: outgoing stream failed");
        if cond == StreamErrorCondition::NotAuthorized {
            shared
                .metrics
                .s2s_dialback_failures
                .get_or_create(&Metrics::domain(&link.remote, "side", "ours_refused"))
                .inc();
        }
        let _ = self
            .conn
            .write_all_of(&[
                stanza::ser::stream_error(cond, Some(why)),
                stanza::ser::stream_close(),
            ])
            .await;
        self.lost(link, false)
    }

    async fn close(&mut self) {
        let _ = self.conn.write(&stanza::ser::stream_close()).await;
        self.conn.shutdown().await;
    }

    async fn ask(&mut self, q: VerifyReq) -> Result<(), Ended> {
        let actions = self.neg.verify(&q.originating, &q.receiving, &q.id, &q.key);
        self.asked.push(q);
        for a in actions {
            if let Action::Send(b) = a {
                if self.conn.write(&b).await.is_err() {
                    return Err(Ended::Failed(C::RemoteServerNotFound));
                }
            }
        }
        Ok(())
    }

    /// The negotiation's view of one event.
    fn on_event(&mut self, ev: Event) -> Result<Vec<Action>, Stop> {
        match ev {
            Event::StreamOpen(h) => {
                if let Err(cond) = wire::check_header(&h) {
                    return Err(Stop::Fail(cond, "bad stream header"));
                }
                if h.namespace("") != Some(ns::SERVER) {
                    return Err(Stop::Fail(
                        StreamErrorCondition::InvalidNamespace,
                        "not jabber:server",
                    ));
                }
                self.peer_id = h.attr("id").map(str::to_owned);
                Ok(Vec::new())
            }
            Event::StreamClose => Err(Stop::PeerEnded),
            Event::Stanza(b) => {
                let el = Element::from_stanza(&b).map_err(|_| {
                    Stop::Fail(StreamErrorCondition::NotWellFormed, "unparsable element")
                })?;
                if el.is("features", ns::STREAM) {
                    return Ok(self.neg.on_features(self.peer_id.as_deref(), &el));
                }
                if el.is("error", ns::STREAM) {
                    let cond = el
                        .elements()
                        .next()
                        .map(|c| c.name.clone())
                        .unwrap_or_default();
                    debug!(%cond, "s2s: the peer sent a stream error");
                    return Err(Stop::PeerEnded);
                }
                Ok(self.neg.on_element(&el))
            }
        }
    }

    /// Carries out the negotiation's actions.
    async fn act(
        &mut self,
        shared: &Shared,
        link: &Link,
        actions: Vec<Action>,
    ) -> Result<(), Ended> {
        for a in actions {
            match a {
                Action::Open { from, to } => {
                    let header = stanza::ser::server_stream_header(&from, Some(&to), None);
                    self.write(&header).await?;
                }
                Action::Send(b) => self.write(&b).await?,
                Action::StartTls => self.start_tls(shared, link).await?,
                Action::Ready => {
                    info!(local = %link.local, remote = %link.remote, "s2s: outgoing stream verified");
                    if let Some(q) = super::multicast::ask(shared, &link.local, &link.remote) {
                        self.write(&q).await?;
                    }
                }
                Action::Verified {
                    originating,
                    receiving,
                    valid,
                } => {
                    if let Some(at) = self
                        .asked
                        .iter()
                        .position(|q| q.originating == originating && q.receiving == receiving)
                    {
                        let q = self.asked.swap_remove(at);
                        let _ = q.reply.send(valid);
                    }
                }
                Action::Fail(cond, why) => {
                    return Err(self.fail(shared, link, (cond, why)).await);
                }
            }
        }
        Ok(())
    }

    async fn write(&mut self, b: &[u8]) -> Result<(), Ended> {
        self.conn
            .write(b)
            .await
            .map_err(|_| Ended::Failed(C::RemoteServerNotFound))
    }

    /// `<proceed/>` came: TLS as the client, then our header again.
    async fn start_tls(&mut self, shared: &Shared, link: &Link) -> Result<(), Ended> {
        let limits = shared.config.limits.framer();
        let placeholder = Conn::new(Box::new(tokio::io::duplex(1).0), limits);
        let old = std::mem::replace(&mut self.conn, placeholder);
        let Some(io) = old.into_inner() else {
            return Err(Ended::Failed(C::RemoteServerNotFound));
        };
        let name = rustls::pki_types::ServerName::try_from(link.remote.clone())
            .map_err(|_| Ended::Failed(C::RemoteServerNotFound))?;
        let tls = tokio_rustls::TlsConnector::from(shared.s2s.client_tls.clone())
            .connect(name, io)
            .await
            .map_err(|e| {
                debug!(remote = %link.remote, error = %e, "s2s: TLS handshake failed");
                Ended::Failed(C::RemoteServerNotFound)
            })?;
        self.conn = Conn::new(Box::new(tls), limits);
        self.peer_id = None;
        let actions = self.neg.start();
        Box::pin(self.act(shared, link, actions)).await
    }
}
