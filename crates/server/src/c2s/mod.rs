//! Client-to-server streams (RFC 6120), on any [`Transport`].
//!
//! One task reads: it takes events from the transport and drives the
//! stream through [`Negotiation`] (header, SASL, restart, bind), carrying
//! out the actions it returns: writes, back-offs, store reads. Once bound,
//! a writer task drains the session's outbound queue and the session's
//! stanzas go to [`session`]; answers and deliveries then share one queue
//! and one order, written with one vectored write per batch.
//!
//! # Layout
//! - [`accept`]: the connection's task over TCP (with STARTTLS and direct
//!   TLS) or another transport, and refusals;
//! - this module: the read loop, negotiation's actions, the bind, and the
//!   end of a stream;
//! - [`session`]: a bound session's stanzas;
//! - [`presence`]: its own presence, caps, and last-item replays.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use fanout::{Fanout, Frame};
use stanza::ser::{self, StanzaError};
use stanza::{ns, BareJid, Element, Event, Stanza, StanzaErrorCondition, StreamErrorCondition};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::control::Stopped;
use crate::sasl::{Hash, ScramKeys};
use crate::stream::negotiate::{Action, Negotiation, Policy};
use crate::stream::{Flow, Stop, Transport, WriterParams};
use crate::Shared;
use stanza::xep::{register, IqType};

mod accept;
mod presence;
mod publishes;
mod session;
pub(crate) mod sm;

use session::Session;

pub(crate) use accept::{refuse, serve, serve_transport};

/// One stream: its transport, its negotiation, and once bound its session.
struct Conn<T: Transport> {
    shared: Arc<Shared>,
    peer: SocketAddr,
    t: T,
    /// Negotiation, until the bind: boxed, and dropped once bound, so an
    /// idle session does not keep room for SASL's state (#11).
    neg: Option<Box<Negotiation>>,
    /// The served domain the stream is for, once `neg` is gone (an index
    /// into `Shared::domains`).
    domain: Option<usize>,
    session: Option<Session>,
    /// An event taken from the framer but not yet handled: the one that
    /// ended a run of publishes (`publishes`). Boxed: rarely there.
    held: Option<Box<Held>>,
}

/// An event the reader took but handles later.
pub(super) struct Held {
    pub(super) next: Result<Option<Event>, StreamErrorCondition>,
    /// The stanza was counted already, and this is its wait under the
    /// stanza rate.
    pub(super) wait: Option<Duration>,
}

impl<T: Transport> Conn<T> {
    fn new(t: T, peer: SocketAddr, shared: Arc<Shared>, tls: bool, deadline: Instant) -> Self {
        // STARTTLS only where the transport can hand over its socket.
        let starttls = T::STARTTLS && shared.tls.is_some();
        let policy = Policy::from_config(&shared.config, &shared.domains, starttls);
        Self {
            neg: Some(Box::new(Negotiation::new(policy, tls, deadline.into_std()))),
            domain: None,
            shared,
            peer,
            t,
            session: None,
            held: None,
        }
    }

    /// Reads and handles events until the stream stops, and says why.
    async fn run(&mut self) -> Stop {
        loop {
            loop {
                // In a block: what was read is moved into the handling's box
                // before any await, so the task keeps no room for an event
                // while it waits for input.
                let (handling, deadline) = {
                    let (next, counted) = match self.held.take() {
                        Some(h) => (h.next, h.wait),
                        None => (self.t.next_event(), None),
                    };
                    // Answers before the bind are written under negotiation's
                    // deadline: a client that does not read would block them.
                    let deadline = self.session.is_none().then(|| self.deadline());
                    match next {
                        Ok(Some(ev)) => (Box::pin(self.on_event(ev, counted)), deadline),
                        Ok(None) => break,
                        Err(cond) => {
                            debug!(peer = %self.peer, ?cond, "input refused");
                            return Stop::Error(cond, None);
                        }
                    }
                };
                // Boxed: an idle session's task holds only the wait below,
                // not room for the largest handling of a stanza (#11: 9 KB
                // per session before).
                let r =
                    match deadline {
                        None => handling.await,
                        Some(deadline) => tokio::time::timeout_at(deadline, handling)
                            .await
                            .unwrap_or(Err(Stop::Error(
                                StreamErrorCondition::ConnectionTimeout,
                                None,
                            ))),
                    };
                if let Err(stop) = r {
                    return stop;
                }
            }
            // Everything read has been framed and handled: an idle stream
            // keeps no receive buffer while it waits.
            self.t.framer().release_if_empty();
            let idle = Instant::now() + self.shared.config.limits.idle_timeout();
            let deadline = match &self.session {
                Some(_) => idle,
                None => self.deadline().min(idle),
            };
            let control = self.session.as_ref().map(|s| s.control.clone());
            let stopped = async {
                match &control {
                    Some(c) => c.stopped().await,
                    None => std::future::pending().await,
                }
            };
            let writer_done = async {
                match &mut self.session {
                    Some(s) => {
                        let _ = (&mut s.writer).await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                r = tokio::time::timeout_at(deadline, self.t.fill()) => match r {
                    Ok(Ok(true)) => {}
                    Ok(Ok(false) | Err(_)) => return Stop::Gone,
                    Err(_) => return Stop::Error(StreamErrorCondition::ConnectionTimeout, None),
                },
                () = self.shared.stopping() => {
                    return Stop::Error(StreamErrorCondition::SystemShutdown, None);
                }
                () = writer_done => return Stop::WriterEnded,
                s = stopped => return match s {
                    Stopped::Ended(cond) => Stop::Error(cond, None),
                    // A resumption on another connection: this one is dead.
                    Stopped::TakenOver => Stop::Gone,
                },
            }
        }
    }

    /// Sends the last bytes, leaves the registry, and closes.
    async fn finish(&mut self, stop: Stop) {
        let tail: Option<Bytes> = match stop {
            Stop::Error(cond, text) => {
                // Our side opens first if it has not: a stream error needs
                // a stream. (Written apart: a WebSocket message carries one
                // element.)
                if self.neg.as_ref().is_some_and(|n| !n.opened()) && self.session.is_none() {
                    let open = self.our_open();
                    let grace = self.deadline().max(Instant::now()) + Duration::from_secs(1);
                    let _ = tokio::time::timeout_at(grace, self.t.write(&open)).await;
                }
                Some(self.t.stream_error(cond, text))
            }
            Stop::PeerClosed => Some(self.t.close()),
            Stop::Gone | Stop::WriterEnded | Stop::StartTls => None,
        };
        let writer_joined = matches!(stop, Stop::WriterEnded);
        match self.session.take() {
            Some(s) if sm::parkable(&self.shared, &s, &stop) => sm::park(&self.shared, s),
            Some(s) => {
                s.closing.store(true, Ordering::Release);
                if let Some(t) = tail {
                    let _ = s.handle.queue().push(Frame::Bytes(t));
                }
                if s.is_current(&self.shared) {
                    // Unavailable to everyone who saw us (RFC 6121 §4.5.2).
                    crate::presence::broadcast(&self.shared, &s.jid, None).await;
                }
                s.leave(&self.shared);
                self.shared.metrics.sessions.dec();
                // The writer drains what is queued, then closes the socket.
                // (A JoinHandle must not be awaited again once it returned.)
                if !writer_joined {
                    let _ = tokio::time::timeout(Duration::from_secs(5), s.writer).await;
                }
            }
            None => {
                // The last words get a short grace past the deadline, no
                // more: a peer that does not read must not hold us here.
                let grace = self.deadline().max(Instant::now()) + Duration::from_secs(1);
                let _ = tokio::time::timeout_at(grace, async {
                    if let Some(t) = tail {
                        let _ = self.t.write(&t).await;
                    }
                    self.t.shutdown().await;
                })
                .await;
            }
        }
    }

    /// When negotiation must be over.
    fn deadline(&self) -> Instant {
        match &self.neg {
            Some(n) => Instant::from_std(n.deadline()),
            // Bound: negotiation is over, and its deadline passed with it.
            None => Instant::now(),
        }
    }

    /// The served domain the stream is for, once it was named.
    pub(super) fn domain(&self) -> Option<&str> {
        match &self.neg {
            Some(n) => n.domain(),
            None => self.domain.map(|i| self.shared.domains[i].as_str()),
        }
    }

    /// Negotiation's state machine; a bound stream has none, and a step
    /// of negotiation there is out of place.
    fn neg(&mut self) -> Result<&mut Negotiation, Stop> {
        self.neg
            .as_deref_mut()
            .ok_or(Stop::Error(StreamErrorCondition::BadFormat, None))
    }

    /// A bind (or a resumption) that failed: another may follow.
    pub(super) fn bind_refused(&mut self) {
        if let Some(n) = self.neg.as_deref_mut() {
            n.bound(false);
        }
    }

    /// The stream is bound: negotiation's state goes, its domain stays.
    pub(super) fn bound(&mut self) {
        if let Some(mut n) = self.neg.take() {
            n.bound(true);
            self.domain = n.domain_index();
        }
    }

    /// The account being bound (after SASL, before the bind).
    pub(super) fn binding(&self) -> Option<BareJid> {
        self.neg.as_ref().and_then(|n| n.binding()).cloned()
    }

    /// Our side's opening, from the domain asked for.
    fn our_open(&self) -> Bytes {
        let from = self.domain().unwrap_or(&self.shared.config.domains[0]);
        self.t.open(from, &crate::stream::stream_id())
    }

    /// Sends bytes: through the queue once bound, directly before.
    async fn send(&mut self, bytes: Bytes) -> Flow {
        match &self.session {
            Some(s) => {
                // A full queue overflows the session: the writer ends it.
                let _ = s.handle.queue().push(Frame::Bytes(bytes));
                Ok(())
            }
            None => self.t.write(&bytes).await.map_err(|_| Stop::Gone),
        }
    }

    /// Handles one event; `counted` when it was held after a run of
    /// publishes, which counted it then (with its wait under the rate).
    async fn on_event(&mut self, ev: Event, counted: Option<Duration>) -> Flow {
        match ev {
            Event::StreamOpen(h) => {
                let opening = self.t.opening(&h);
                let actions = self.neg()?.on_open(opening);
                self.apply(actions).await
            }
            Event::StreamClose => Err(Stop::PeerClosed),
            Event::Stanza(bytes) => {
                if counted.is_none() {
                    self.shared.metrics.stanzas_in.inc();
                }
                if let Some(s) = &self.session {
                    // Over the account's stanza rate: stop reading this
                    // session for a while; the flood slows only itself.
                    let wait =
                        counted.unwrap_or_else(|| self.shared.limiters.stanza(&s.jid.to_bare()));
                    if !wait.is_zero() {
                        self.shared.metrics.limited("stanza");
                        tokio::time::sleep(wait).await;
                    }
                }
                let stanza = Stanza::from_framed(bytes)
                    .map_err(|_| Stop::Error(StreamErrorCondition::NotWellFormed, None))?;
                if let Some(me) = self.session.as_ref().map(|s| s.jid.clone()) {
                    if let Some(p) = self.own_publish(&stanza, &me) {
                        return self.on_publishes(p, &me).await;
                    }
                    let counted = stanza.kind() != stanza::Kind::Other;
                    self.on_session(&stanza).await?;
                    if counted {
                        self.sm_handled();
                    }
                    return Ok(());
                }
                let el = Element::from_stanza(stanza.bytes())
                    .map_err(|_| Stop::Error(StreamErrorCondition::NotWellFormed, None))?;
                let actions = self.neg()?.on_element(&el);
                self.apply(actions).await
            }
        }
    }

    /// Carries out negotiation's actions in order; answers to lookups come
    /// back as more actions, carried out before the rest.
    async fn apply(&mut self, actions: Vec<Action>) -> Flow {
        let mut todo: VecDeque<Action> = actions.into();
        // Answers in a row go out together (a stream header and its
        // features in one write); anything else sends them first.
        let mut out: Vec<Bytes> = Vec::new();
        while let Some(action) = todo.pop_front() {
            if !matches!(action, Action::Open { .. } | Action::Send(_)) {
                self.send_all(&mut out).await?;
            }
            let more = match action {
                Action::Open { from } => {
                    out.push(self.t.open(&from, &crate::stream::stream_id()));
                    continue;
                }
                Action::Send(bytes) => {
                    out.push(bytes);
                    continue;
                }
                Action::StartTls => return Err(Stop::StartTls),
                Action::Close(cond, text) => return Err(Stop::Error(cond, text)),
                Action::Register(el) => {
                    let reply = self.register(&el).await;
                    self.send(reply).await?;
                    continue;
                }
                Action::LookUp { jid, hash } => {
                    self.back_off(&jid).await;
                    let keys = self.scram_keys(&jid, hash);
                    self.neg()?.on_keys(keys, &random_token())
                }
                Action::CheckPlain { jid, password } => {
                    self.back_off(&jid).await;
                    let ok = self.check_plain(jid, password).await;
                    self.neg()?.on_plain(ok)
                }
                Action::Failed { account } => {
                    self.failed(account).await;
                    continue;
                }
                Action::Authenticated(jid) => {
                    self.shared.backoff.succeeded(&jid);
                    self.shared.metrics.logins.inc();
                    info!(peer = %self.peer, %jid, "authenticated");
                    self.t.restart(self.shared.config.limits.framer());
                    continue;
                }
                Action::Bind { resource, id } => {
                    self.bind(resource, &id).await?;
                    continue;
                }
                Action::Resume { previd, h } => {
                    self.resume(&previd, h).await?;
                    continue;
                }
            };
            for a in more.into_iter().rev() {
                todo.push_front(a);
            }
        }
        self.send_all(&mut out).await
    }

    /// Sends what `out` holds, in order, and empties it.
    async fn send_all(&mut self, out: &mut Vec<Bytes>) -> Flow {
        if out.is_empty() {
            return Ok(());
        }
        if self.session.is_some() {
            // Bound: each goes through the queue, as `send` does.
            for bytes in out.drain(..) {
                self.send(bytes).await?;
            }
            return Ok(());
        }
        let r = self.t.write_all_of(out).await;
        out.clear();
        r.map_err(|_| Stop::Gone)
    }

    /// XEP-0077 before authentication: parsed, then answered.
    async fn register(&self, el: &Element) -> Bytes {
        let id = el.attr("id").unwrap_or("");
        let parsed = IqType::parse(el.attr("type"))
            .ok_or_else(|| StanzaError::new(StanzaErrorCondition::BadRequest))
            .and_then(|ty| {
                let query = el.child("query", ns::REGISTER);
                query.map_or_else(
                    || Err(StanzaError::new(StanzaErrorCondition::BadRequest)),
                    |q| register::Request::parse(ty, q),
                )
            });
        match parsed {
            Ok(req) => {
                let domain = self.domain().unwrap_or_default().to_owned();
                crate::register::iq(&self.shared, None, None, &domain, self.peer.ip(), id, req)
                    .await
            }
            Err(e) => ser::stanza_error("iq", Some(id), None, None, &e),
        }
    }

    /// The account's SCRAM keys, or decoys for an unknown account: the
    /// same salt for the name every time, the same iteration count, and
    /// the same work (a lookup, no PBKDF2), so neither the answer nor its
    /// cost tells which accounts exist. `None` when the store failed.
    ///
    /// Read on this task, not the blocking pool: a redb read transaction
    /// never waits for writers and the account table stays in the store's
    /// cache, so the read costs a few µs, less than the two thread
    /// hand-offs (a third of the server's CPU at 5,000 logins/s).
    fn scram_keys(&self, jid: &BareJid, hash: Hash) -> Option<ScramKeys> {
        let found = match self.shared.store.account(jid) {
            Ok(r) => r.and_then(|r| r.keys(hash).cloned()),
            Err(e) => {
                warn!(error = %e, "reading an account for SCRAM");
                return None;
            }
        };
        let iterations = self.shared.config.scram_iterations;
        Some(found.unwrap_or_else(|| {
            ScramKeys::decoy(hash, &self.shared.secret, jid.as_str(), iterations)
        }))
    }

    /// A PLAIN password, checked on the blocking pool (PBKDF2). An unknown
    /// account is checked against its decoy keys: the same PBKDF2, so the
    /// time tells nothing. `None` when the store failed.
    async fn check_plain(&self, jid: BareJid, password: String) -> Option<bool> {
        let secret = self.shared.secret;
        let iterations = self.shared.config.scram_iterations;
        let checked = self
            .shared
            .db(move |store| {
                let found = store
                    .account(&jid)?
                    .and_then(|r| r.keys(Hash::Sha1).cloned());
                let exists = found.is_some();
                let keys = found.unwrap_or_else(|| {
                    ScramKeys::decoy(Hash::Sha1, &secret, jid.as_str(), iterations)
                });
                Ok::<_, crate::StoreError>(keys.verify_password(&password) && exists)
            })
            .await;
        checked
            .map_err(|e| warn!(error = %e, "reading an account for PLAIN"))
            .ok()
    }

    /// Waits out the login back-off for `account` and this address.
    async fn back_off(&self, account: &BareJid) {
        let keys = self.backoff_keys(Some(account));
        let wait = self.shared.backoff.wait(&keys, std::time::Instant::now());
        if !wait.is_zero() {
            self.shared.metrics.limited("login");
            tokio::time::sleep(wait).await;
        }
    }

    /// A failed attempt. The back-off is shared with every other
    /// connection naming the account or coming from this address: guessing
    /// gets slower, not easier, however many connections it uses.
    async fn failed(&self, account: Option<BareJid>) {
        self.shared.metrics.auth_failures.inc();
        let keys = self.backoff_keys(account.as_ref());
        let now = std::time::Instant::now();
        self.shared.backoff.failed(&keys, now);
        tokio::time::sleep(self.shared.backoff.wait(&keys, now)).await;
    }

    fn backoff_keys(&self, account: Option<&BareJid>) -> Vec<crate::backoff::Key> {
        let mut keys = vec![crate::backoff::Key::addr(self.peer.ip())];
        if let Some(a) = account {
            keys.push(crate::backoff::Key::Account(a.clone()));
        }
        keys
    }

    /// Binds a resource: the session joins the fan-out and its writer
    /// starts. A refused bind is answered and may be retried.
    async fn bind(&mut self, resource: Option<String>, id: &str) -> Flow {
        let bare = self.binding().ok_or(Stop::Gone)?;
        let resource = resource.unwrap_or_else(|| format!("starling-{}", &random_token()[..12]));
        let refuse = |cond, text| {
            let err = StanzaError::new(cond).with_text(text);
            ser::stanza_error("iq", Some(id), None, None, &err)
        };
        let Ok(jid) = bare.with_resource(&resource) else {
            self.bind_refused();
            return self
                .send(refuse(StanzaErrorCondition::BadRequest, "invalid resource"))
                .await;
        };
        // RFC 6120 §7.6.2.1: too many resources is resource-constraint
        // (a bind that replaces one of them adds none).
        let bound = crate::presence::sessions(&self.shared, &bare);
        if bound.len() >= self.shared.config.limits.max_resources_per_account
            && !bound.iter().any(|s| *s.jid() == jid)
        {
            self.bind_refused();
            return self
                .send(refuse(
                    StanzaErrorCondition::ResourceConstraint,
                    "too many resources for this account",
                ))
                .await;
        }
        let fanout: &Arc<dyn Fanout> = &self.shared.fanout;
        let limits = &self.shared.config.limits;
        let handle = fanout.attach(jid.clone(), limits.outbound_queue);
        handle.queue().set_max_bytes(limits.outbound_queue_bytes);
        // A session this bind replaces is no longer available.
        self.shared.presences.remove(&jid);
        let closing = Arc::new(AtomicBool::new(false));
        let sm = crate::stream::Sm::default();
        let writer = self
            .t
            .spawn_writer(WriterParams {
                handle: handle.clone(),
                closing: closing.clone(),
                metrics: self.shared.metrics.clone(),
                stall: limits.write_stall_timeout(),
                sm: sm.clone(),
            })
            .ok_or(Stop::Gone)?;
        self.bound();
        self.shared.metrics.sessions.inc();
        info!(peer = %self.peer, %jid, "bound");
        let control = crate::control::Control::new(handle.session().id());
        self.shared.controls.insert(jid.clone(), control.clone());
        self.session = Some(Session::new(
            jid.clone(),
            handle,
            writer,
            closing,
            control,
            sm,
        ));
        self.send(ser::bind_result(id, jid.as_str())).await
    }
}

fn random_token() -> String {
    let bytes: [u8; 18] = rand::random();
    B64.encode(bytes).replace(['+', '/'], "x")
}

#[cfg(test)]
mod size_tests {
    use super::*;
    use crate::stream::tcp::Tcp;
    use tokio::net::TcpStream;

    /// The size of the future an async fn returns, without calling it.
    fn future_size1<A, Fut, F: FnOnce(A) -> Fut>(_: &F) -> usize {
        std::mem::size_of::<Fut>()
    }

    fn future_size5<A, B, C, D, E, Fut, F: FnOnce(A, B, C, D, E) -> Fut>(_: &F) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// After STARTTLS the session is served from its own box, without
    /// the plain stream's state beside it (it was 3,756 bytes with both).
    #[test]
    fn an_idle_tls_session_holds_only_its_encrypted_stream() {
        type Tls = tokio_rustls::server::TlsStream<TcpStream>;
        let tls = future_size5(&accept::serve_on::<Tls>);
        assert!(tls <= 1664, "serve_on over TLS {tls} bytes");
    }

    /// An idle session's writer waits for its queue and holds nothing
    /// else: the writing is boxed. (Its task was 400 to 500 bytes a session
    /// in the heap profile with the writing inline; #11.)
    #[test]
    fn an_idle_writer_task_stays_small() {
        type Sink = crate::stream::writer::Bytes<tokio::io::WriteHalf<TcpStream>>;
        let f = |w: Sink, p: WriterParams| crate::stream::writer::write_loop(w, p);
        let size = future_size2(&f);
        assert!(size <= 128, "write_loop {size} bytes");
    }

    fn future_size2<A, B, Fut, F: FnOnce(A, B) -> Fut>(_: &F) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// A connection's task is what an idle session costs most: its future
    /// holds room for the largest state it can be in. Stanza handling, the
    /// end of a stream and TLS are boxed, so it holds the connection and
    /// the wait for input. It was 8,992 bytes, then 1,824 with the task's
    /// wrapper, before negotiation's state was boxed and dropped at the
    /// bind and the wait's wake-ups were folded into one, then 1,240 before
    /// the stream header's copy, the event in hand and the STARTTLS path
    /// left the task (#11). Under 1,112 bytes, the task with tokio's
    /// header fits mimalloc's 1,280-byte size class.
    #[test]
    fn an_idle_connection_task_stays_small() {
        let run = |c: &'static mut Conn<Tcp<TcpStream>>| c.run();
        let (serve, run, conn) = (
            future_size5(&serve),
            future_size1(&run),
            std::mem::size_of::<Conn<Tcp<TcpStream>>>(),
        );
        assert!(conn <= 520, "Conn {conn} bytes");
        assert!(run <= 408, "Conn::run {run} bytes");
        assert!(serve <= 968, "serve {serve} bytes (Conn {conn}, run {run})");
    }
}
