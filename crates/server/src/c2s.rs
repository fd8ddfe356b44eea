//! Client-to-server connections (RFC 6120).
//!
//! One task reads: it feeds the framer and drives the stream through its
//! steps, each of which must complete before the next:
//!
//! 1. stream header: check `to`, the namespaces and the version; answer with
//!    our header and the features of the current step;
//! 2. SASL: SCRAM-SHA-256, SCRAM-SHA-1, and PLAIN when the operator allowed
//!    it; failures are slowed down exponentially and capped;
//! 3. stream restart, then resource binding: the session joins the fan-out
//!    registry and a writer task starts draining its outbound queue;
//! 4. the session: stanzas are handled and answered through that queue.
//!
//! Before binding, the reader writes its answers itself; after, everything
//! goes through the queue, so answers and deliveries keep one order and are
//! written with one vectored write per batch.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use fanout::{Fanout, Frame, OutboundHandle, QueueState};
use stanza::ser::{self, Features, SaslFailure, StanzaError};
use stanza::{
    ns, BareJid, Element, Event, FullJid, Kind, Stanza, StanzaErrorCondition, StreamErrorCondition,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::sasl::{self, Hash, ScramKeys, ScramServer};
use crate::Shared;

/// Most frames one vectored write takes.
const WRITE_BATCH: usize = 256;
/// How often a writer blocked on a peer that does not read looks at its
/// queue's state.
const STATE_CHECK: Duration = Duration::from_secs(1);
/// Longest caps `ver` the server asks about (a SHA-1 one is 28 bytes).
const MAX_VER_LEN: usize = 64;
/// Longest caps `node` the server asks about.
const MAX_CAPS_NODE_LEN: usize = 1024;

enum Step {
    /// Waiting for a stream header that will start SASL.
    Connected,
    /// SCRAM after the server-first message.
    Scram(Box<ScramServer>, BareJid),
    /// Authenticated; waiting for the restart and the bind.
    Authenticated(BareJid),
    /// Bound: a live session.
    Bound(Session),
}

struct Session {
    jid: FullJid,
    handle: OutboundHandle,
    writer: JoinHandle<()>,
    /// Set when this side closes the stream, so the writer can tell a
    /// normal close from a replacement by a newer session (`conflict`).
    closing: Arc<AtomicBool>,
    /// What the fan-out knows of this resource's presence.
    presence: fanout::Presence,
    /// The caps `ver` of the last available presence.
    caps_ver: Option<String>,
    /// Outstanding disco#info queries for caps: iq id -> ver.
    caps_pending: std::collections::HashMap<String, String>,
    /// Lets other tasks end this session (password change, deletion).
    control: Arc<crate::control::Control>,
    /// The (publisher, node) pairs whose last item was replayed since the
    /// resource became available; `None` while unavailable.
    replayed_for: Option<std::collections::HashSet<(BareJid, String)>>,
}

/// Why the reader stops.
enum Stop {
    /// Send this stream error, then close.
    Error(StreamErrorCondition, Option<&'static str>),
    /// The peer closed the stream; answer with our close.
    PeerClosed,
    /// The socket is gone.
    Gone,
    /// The writer task ended the stream (overflow, write failure, or a
    /// replacing session); it has been joined already.
    WriterEnded,
    /// The client sent `<starttls/>`: answer `<proceed/>` and hand over.
    StartTls,
}

type Flow = Result<(), Stop>;

/// What a connection runs on: plain TCP, or TLS over it.
trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

struct Conn<S: Io> {
    shared: Arc<Shared>,
    peer: SocketAddr,
    /// Whether the stream is encrypted (STARTTLS done, or direct TLS).
    tls: bool,
    rd: ReadHalf<S>,
    wr: Option<WriteHalf<S>>,
    framer: stanza::Framer,
    domain: Option<String>,
    header_sent: bool,
    step: Step,
    auth_failures: u32,
    /// The account the current SASL attempt names, for the back-off.
    attempt: Option<BareJid>,
    /// When negotiation must be over: fixed when the TCP connection was
    /// accepted, carried across STARTTLS, and applied to everything before
    /// the bind (reads, answers, back-off delays), so a client that stops
    /// reading cannot hold the connection past it.
    deadline: Instant,
}

impl<S: Io> Conn<S> {
    fn new(stream: S, peer: SocketAddr, shared: Arc<Shared>, tls: bool, deadline: Instant) -> Self {
        let (rd, wr) = tokio::io::split(stream);
        Self {
            // Before authentication only SASL and registration are spoken:
            // the much smaller pre-auth stanza limit applies.
            framer: stanza::Framer::new(shared.config.limits.pre_auth_framer()),
            deadline,
            shared,
            peer,
            tls,
            rd,
            wr: Some(wr),
            domain: None,
            header_sent: false,
            step: Step::Connected,
            auth_failures: 0,
            attempt: None,
        }
    }
}

/// Serves one client connection until it ends. `direct_tls`: the
/// connection came to the XEP-0368 port, and TLS starts at once.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    direct_tls: bool,
) {
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + shared.config.limits.handshake_timeout();
    if direct_tls {
        let Some(acceptor) = shared.tls.clone() else {
            return;
        };
        let handshake = tokio::time::timeout_at(deadline, acceptor.accept(stream));
        if let Ok(Ok(tls)) = handshake.await {
            serve_on(tls, peer, shared, true, deadline).await;
        }
        return;
    }
    let mut conn = Conn::new(stream, peer, shared.clone(), false, deadline);
    let stop = conn.run().await;
    if !matches!(stop, Stop::StartTls) {
        conn.finish(stop).await;
        return;
    }
    // RFC 6120 §5.4.3.3: nothing may follow <starttls/> until the handshake.
    // Bytes already buffered were sent in the clear and would be read as if
    // encrypted: the STARTTLS injection attack. Refuse, don't process.
    let tls_failure =
        Bytes::from_static(b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>");
    if conn.framer.buffered() > 0 {
        debug!(%peer, bytes = conn.framer.buffered(), "data after <starttls/>: refused");
        if let Some(wr) = conn.wr.as_mut() {
            let _ = tokio::time::timeout_at(deadline, async {
                let _ = wr.write_all(&tls_failure).await;
                let _ = wr.shutdown().await;
            })
            .await;
        }
        return;
    }
    let (Some(acceptor), Some(mut wr)) = (shared.tls.clone(), conn.wr.take()) else {
        return;
    };
    match tokio::time::timeout_at(deadline, wr.write_all(&ser::tls_proceed())).await {
        Ok(Ok(())) => {}
        _ => return,
    }
    let tcp = conn.rd.unsplit(wr);
    let handshake = tokio::time::timeout_at(deadline, acceptor.accept(tcp));
    match handshake.await {
        Ok(Ok(tls)) => serve_on(tls, peer, shared, true, deadline).await,
        _ => debug!(%peer, "TLS handshake failed or timed out"),
    }
}

/// Answers a connection over its address's rate with `policy-violation`
/// and closes it.
pub(crate) async fn refuse(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut out =
        ser::stream_header(ns::CLIENT, &shared.config.domains[0], None, "refused").to_vec();
    out.extend_from_slice(&ser::stream_error(
        StreamErrorCondition::PolicyViolation,
        Some("too many connections from your address"),
    ));
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = stream.write_all(&out).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

async fn serve_on<S: Io>(
    stream: S,
    peer: SocketAddr,
    shared: Arc<Shared>,
    tls: bool,
    deadline: Instant,
) {
    let mut conn = Conn::new(stream, peer, shared, tls, deadline);
    let stop = conn.run().await;
    conn.finish(stop).await;
}

impl<S: Io> Conn<S> {
    async fn run(&mut self) -> Stop {
        let handshake_deadline = self.deadline;
        let idle = self.shared.config.limits.idle_timeout();
        let mut shutdown = self.shared.shutdown.clone();
        loop {
            loop {
                match self.framer.next() {
                    Ok(Some(ev)) => {
                        let r = if matches!(self.step, Step::Bound(_)) {
                            self.on_event(ev).await
                        } else {
                            // Answers before the bind are written here, and a
                            // client that does not read would block them.
                            tokio::time::timeout_at(handshake_deadline, self.on_event(ev))
                                .await
                                .unwrap_or(Err(Stop::Error(
                                    StreamErrorCondition::ConnectionTimeout,
                                    None,
                                )))
                        };
                        if let Err(stop) = r {
                            return stop;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        debug!(peer = %self.peer, error = %e, "framing error");
                        return Stop::Error(e.condition(), None);
                    }
                }
            }
            let bound = matches!(self.step, Step::Bound(_));
            let deadline = if bound {
                Instant::now() + idle
            } else {
                handshake_deadline.min(Instant::now() + idle)
            };
            self.framer.buffer_mut().reserve(4096);
            let control = match &self.step {
                Step::Bound(s) => Some(s.control.clone()),
                _ => None,
            };
            let ended = async {
                match &control {
                    Some(c) => c.ended().await,
                    None => std::future::pending().await,
                }
            };
            let writer_done = async {
                match &mut self.step {
                    Step::Bound(s) => {
                        let _ = (&mut s.writer).await;
                    }
                    _ => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                r = tokio::time::timeout_at(deadline, self.rd.read_buf(self.framer.buffer_mut())) => match r {
                    Ok(Ok(0)) | Ok(Err(_)) => return Stop::Gone,
                    Ok(Ok(_)) => {}
                    Err(_) => return Stop::Error(StreamErrorCondition::ConnectionTimeout, None),
                },
                () = crate::stopped(&mut shutdown) => {
                    return Stop::Error(StreamErrorCondition::SystemShutdown, None);
                }
                () = writer_done => return Stop::WriterEnded,
                cond = ended => return Stop::Error(cond, None),
            }
        }
    }

    /// Sends the last bytes, leaves the registry, and closes.
    async fn finish(&mut self, stop: Stop) {
        let tail: Option<Bytes> = match stop {
            Stop::Error(cond, text) => {
                let mut out = Vec::new();
                if !self.header_sent {
                    out.extend_from_slice(&self.header_bytes());
                }
                out.extend_from_slice(&ser::stream_error(cond, text));
                Some(Bytes::from(out))
            }
            Stop::PeerClosed => Some(ser::stream_close()),
            Stop::Gone | Stop::WriterEnded | Stop::StartTls => None,
        };
        let writer_joined = matches!(stop, Stop::WriterEnded);
        match std::mem::replace(&mut self.step, Step::Connected) {
            Step::Bound(s) => {
                s.closing.store(true, Ordering::Release);
                if let Some(t) = tail {
                    let _ = s.handle.queue().push(Frame::Bytes(t));
                }
                if self.is_current(&s) {
                    // Unavailable to everyone who saw us (RFC 6121 §4.5.2).
                    crate::presence::broadcast(&self.shared, &s.jid, None).await;
                }
                self.leave(&s);
                self.shared.metrics.sessions.dec();
                // The writer drains what is queued, then closes the socket.
                // (A JoinHandle must not be awaited again once it returned.)
                if !writer_joined {
                    let _ = tokio::time::timeout(Duration::from_secs(5), s.writer).await;
                }
            }
            _ => {
                // The last words get a short grace past the deadline, no
                // more: a peer that does not read must not hold us here.
                let grace = self.deadline.max(Instant::now()) + Duration::from_secs(1);
                let _ = tokio::time::timeout_at(grace, async {
                    if let (Some(t), Some(wr)) = (tail, self.wr.as_mut()) {
                        let _ = wr.write_all(&t).await;
                    }
                    if let Some(mut wr) = self.wr.take() {
                        let _ = wr.shutdown().await;
                    }
                })
                .await;
            }
        }
    }

    /// Whether the registry's session for this JID is still ours (not
    /// replaced by a newer bind).
    fn is_current(&self, s: &Session) -> bool {
        self.shared
            .fanout
            .registry()
            .session(&s.jid)
            .is_some_and(|e| e.id() == s.handle.session().id())
    }

    /// Detaches from the registry unless a newer session took the JID.
    fn leave(&self, s: &Session) {
        self.shared
            .controls
            .remove_if(&s.jid, |_, c| c.id == s.control.id);
        let fanout = &self.shared.fanout;
        if self.is_current(s) {
            fanout.detach(&s.jid);
        } else {
            s.handle.queue().close();
        }
        info!(jid = %s.jid, "session ended");
    }

    fn header_bytes(&self) -> Bytes {
        let from = self
            .domain
            .as_deref()
            .unwrap_or(&self.shared.config.domains[0]);
        let id: [u8; 16] = rand::random();
        let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        ser::stream_header(ns::CLIENT, from, None, &id)
    }

    /// Sends bytes: through the queue once bound, directly before.
    async fn send(&mut self, bytes: Bytes) -> Flow {
        match &self.step {
            Step::Bound(s) => {
                // A full queue overflows the session: the writer ends it.
                let _ = s.handle.queue().push(Frame::Bytes(bytes));
                Ok(())
            }
            _ => {
                let wr = self.wr.as_mut().ok_or(Stop::Gone)?;
                wr.write_all(&bytes).await.map_err(|_| Stop::Gone)
            }
        }
    }

    async fn on_event(&mut self, ev: Event) -> Flow {
        match ev {
            Event::StreamOpen(h) => self.on_header(&h).await,
            Event::StreamClose => Err(Stop::PeerClosed),
            Event::Stanza(bytes) => {
                self.shared.metrics.stanzas_in.inc();
                if let Step::Bound(sess) = &self.step {
                    // Over the account's stanza rate: stop reading this
                    // session for a while; the flood slows only itself.
                    let wait = self.shared.limiters.stanza(&sess.jid.to_bare());
                    if !wait.is_zero() {
                        self.shared.metrics.limited("stanza");
                        tokio::time::sleep(wait).await;
                    }
                }
                let stanza = Stanza::from_framed(bytes)
                    .map_err(|_| Stop::Error(StreamErrorCondition::NotWellFormed, None))?;
                match &self.step {
                    Step::Connected | Step::Scram(..) => self.on_sasl(&stanza).await,
                    Step::Authenticated(_) => self.on_unbound(&stanza).await,
                    Step::Bound(_) => self.on_session(&stanza).await,
                }
            }
        }
    }

    async fn on_header(&mut self, h: &stanza::StreamHeader) -> Flow {
        // Find the domain first: our answering header names it.
        let to = h
            .attr("to")
            .and_then(|t| self.shared.config.served_domain(t))
            .map(str::to_owned);
        if let Some(d) = &to {
            self.domain = Some(d.clone());
        }
        let (prefix, local) = h.name.split_once(':').unwrap_or(("", h.name.as_str()));
        if local != "stream" || h.namespace(prefix) != Some(ns::STREAM) {
            return Err(Stop::Error(StreamErrorCondition::InvalidNamespace, None));
        }
        if prefix != "stream" {
            return Err(Stop::Error(StreamErrorCondition::BadNamespacePrefix, None));
        }
        if h.namespace("") != Some(ns::CLIENT) {
            return Err(Stop::Error(StreamErrorCondition::InvalidNamespace, None));
        }
        if to.is_none() {
            return Err(Stop::Error(StreamErrorCondition::HostUnknown, None));
        }
        if h.attr("version").is_none_or(|v| !v.starts_with("1.")) {
            return Err(Stop::Error(StreamErrorCondition::UnsupportedVersion, None));
        }
        let mut out = self.header_bytes().to_vec();
        self.header_sent = true;
        let config = &self.shared.config;
        match &self.step {
            Step::Connected => {
                let offer_tls = !self.tls && self.shared.tls.is_some();
                let mut mechs = Vec::new();
                if self.tls || !config.require_encryption {
                    mechs.extend([Hash::Sha256.mechanism(), Hash::Sha1.mechanism()]);
                    if self.tls || config.allow_plaintext_auth {
                        mechs.push("PLAIN");
                    }
                }
                out.extend_from_slice(&ser::features(&Features {
                    starttls: offer_tls.then_some(config.require_encryption),
                    mechanisms: &mechs,
                    register: config.allow_registration,
                    ..Features::default()
                }));
            }
            Step::Authenticated(jid) => {
                if Some(jid.domain()) != self.domain.as_deref() {
                    return Err(Stop::Error(StreamErrorCondition::HostUnknown, None));
                }
                out.extend_from_slice(&ser::features(&Features {
                    bind: true,
                    session: true,
                    ..Features::default()
                }));
            }
            // A header in the middle of SASL or of a session.
            _ => return Err(Stop::Error(StreamErrorCondition::BadFormat, None)),
        }
        self.send(Bytes::from(out)).await
    }

    async fn on_sasl(&mut self, stanza: &Stanza) -> Flow {
        let el = Element::from_stanza(stanza.bytes())
            .map_err(|_| Stop::Error(StreamErrorCondition::NotWellFormed, None))?;
        if el.is("starttls", ns::TLS)
            && !self.tls
            && self.shared.tls.is_some()
            && matches!(self.step, Step::Connected)
        {
            return Err(Stop::StartTls);
        }
        if el.is("iq", ns::CLIENT) && el.child("query", ns::REGISTER).is_some() {
            // XEP-0077 before authentication, over TLS when it is required.
            if !self.tls && self.shared.config.require_encryption {
                return Err(Stop::Error(
                    StreamErrorCondition::PolicyViolation,
                    Some("STARTTLS first"),
                ));
            }
            let domain = self.domain.clone().unwrap_or_default();
            let reply =
                crate::register::iq(&self.shared, None, None, &domain, self.peer.ip(), &el).await;
            return self.send(reply).await;
        }
        if el.ns != ns::SASL {
            return Err(Stop::Error(StreamErrorCondition::NotAuthorized, None));
        }
        if !self.tls && self.shared.config.require_encryption {
            self.send(ser::sasl_failure(SaslFailure::EncryptionRequired, None))
                .await?;
            return Err(Stop::Error(
                StreamErrorCondition::PolicyViolation,
                Some("STARTTLS first"),
            ));
        }
        let payload = || -> Result<Vec<u8>, SaslFailure> {
            let t = el.text();
            let t = t.trim();
            if t == "=" || t.is_empty() {
                return Ok(Vec::new());
            }
            B64.decode(t).map_err(|_| SaslFailure::IncorrectEncoding)
        };
        let step = std::mem::replace(&mut self.step, Step::Connected);
        let result: Result<(), SaslFailure> = match (el.name.as_str(), step) {
            ("auth", Step::Connected) => match payload() {
                Err(f) => Err(f),
                Ok(data) => {
                    self.start_auth(el.attr("mechanism").unwrap_or(""), &data)
                        .await
                }
            },
            ("response", Step::Scram(server, jid)) => match payload() {
                Err(f) => Err(f),
                Ok(data) => match server.finish(&data) {
                    Ok(server_final) => {
                        self.succeed(jid, Some(&server_final)).await?;
                        Ok(())
                    }
                    Err(e) => Err(e.failure()),
                },
            },
            ("abort", _) => Err(SaslFailure::Aborted),
            _ => Err(SaslFailure::MalformedRequest),
        };
        match result {
            Ok(()) => Ok(()),
            Err(f) => self.fail_auth(f).await,
        }
    }

    /// Handles `<auth/>`; answers a challenge or success itself.
    async fn start_auth(&mut self, mechanism: &str, data: &[u8]) -> Result<(), SaslFailure> {
        let domain = self.domain.clone().unwrap_or_default();
        let iterations = self.shared.config.scram_iterations;
        match mechanism {
            "PLAIN" if self.tls || self.shared.config.allow_plaintext_auth => {
                let (authz, user, pass) = sasl::parse_plain(data).map_err(|e| e.failure())?;
                let jid = BareJid::from_parts(Some(&user), &domain)
                    .map_err(|_| SaslFailure::NotAuthorized)?;
                if authz.is_some_and(|a| a != jid.as_str()) {
                    return Err(SaslFailure::InvalidAuthzid);
                }
                self.back_off(&jid).await;
                let j = jid.clone();
                let secret = self.shared.secret;
                let checked = self
                    .shared
                    .db(move |store| {
                        let found = store.account(&j)?.and_then(|r| r.keys(Hash::Sha1).cloned());
                        // An unknown account is checked against its decoy
                        // keys: the same PBKDF2, so the time tells nothing.
                        let exists = found.is_some();
                        let keys = found.unwrap_or_else(|| {
                            ScramKeys::decoy(Hash::Sha1, &secret, j.as_str(), iterations)
                        });
                        Ok::<_, crate::StoreError>(keys.verify_password(&pass) && exists)
                    })
                    .await;
                match checked {
                    Ok(true) => {}
                    Ok(false) => return Err(SaslFailure::NotAuthorized),
                    Err(e) => {
                        warn!(error = %e, "reading an account for PLAIN");
                        return Err(SaslFailure::TemporaryAuthFailure);
                    }
                }
                self.succeed(jid, None)
                    .await
                    .map_err(|_| SaslFailure::TemporaryAuthFailure)
            }
            "SCRAM-SHA-1" | "SCRAM-SHA-256" => {
                let hash = if mechanism == "SCRAM-SHA-1" {
                    Hash::Sha1
                } else {
                    Hash::Sha256
                };
                let first = sasl::parse_client_first(data).map_err(|e| e.failure())?;
                let jid = BareJid::from_parts(Some(&first.username), &domain)
                    .map_err(|_| SaslFailure::NotAuthorized)?;
                if first.authzid.as_deref().is_some_and(|a| a != jid.as_str()) {
                    return Err(SaslFailure::InvalidAuthzid);
                }
                self.back_off(&jid).await;
                // Read on this task, not the blocking pool: a redb read
                // transaction never waits for writers and the account table
                // stays in the store's cache, so the read costs a few µs,
                // less than the two thread hand-offs (a third of the
                // server's CPU at 5,000 logins/s).
                // An unknown user gets a full exchange with decoy keys: a
                // salt stable for the name, the same iteration count, and
                // the same work as a real account (a lookup, no PBKDF2), so
                // neither the answer nor its cost reveals which accounts
                // exist.
                let found = match self.shared.store.account(&jid) {
                    Ok(r) => r.and_then(|r| r.keys(hash).cloned()),
                    Err(e) => {
                        warn!(error = %e, "reading an account for SCRAM");
                        return Err(SaslFailure::TemporaryAuthFailure);
                    }
                };
                let keys = found.unwrap_or_else(|| {
                    ScramKeys::decoy(hash, &self.shared.secret, jid.as_str(), iterations)
                });
                let (server, server_first) = ScramServer::start(keys, first, &random_token());
                self.step = Step::Scram(Box::new(server), jid);
                self.send(ser::sasl_challenge(&server_first))
                    .await
                    .map_err(|_| SaslFailure::TemporaryAuthFailure)
            }
            _ => Err(SaslFailure::InvalidMechanism),
        }
    }

    /// Waits out the login back-off for `account` and this address, and
    /// remembers the account for [`Self::fail_auth`].
    async fn back_off(&mut self, account: &BareJid) {
        self.attempt = Some(account.clone());
        let keys = self.backoff_keys();
        let wait = self.shared.backoff.wait(&keys, std::time::Instant::now());
        if !wait.is_zero() {
            self.shared.metrics.limited("login");
            tokio::time::sleep(wait).await;
        }
    }

    fn backoff_keys(&self) -> Vec<crate::backoff::Key> {
        let mut keys = vec![crate::backoff::Key::addr(self.peer.ip())];
        if let Some(a) = &self.attempt {
            keys.push(crate::backoff::Key::Account(a.clone()));
        }
        keys
    }

    async fn succeed(&mut self, jid: BareJid, data: Option<&[u8]>) -> Flow {
        self.shared.backoff.succeeded(&jid);
        self.send(ser::sasl_success(data)).await?;
        self.shared.metrics.logins.inc();
        info!(peer = %self.peer, %jid, "authenticated");
        self.step = Step::Authenticated(jid);
        self.framer.reset();
        self.framer.set_limits(self.shared.config.limits.framer());
        self.header_sent = false;
        Ok(())
    }

    /// A failed attempt: back off, answer `<failure/>`, and end the stream
    /// after too many.
    async fn fail_auth(&mut self, f: SaslFailure) -> Flow {
        self.step = Step::Connected;
        // Every failure counts, an abort too: an abort after the server's
        // first message is a probe that cost the server a lookup and a
        // challenge, and cannot be a way around the limits.
        self.shared.metrics.auth_failures.inc();
        self.auth_failures += 1;
        // The back-off is shared with every other connection naming the
        // account or coming from this address: guessing gets slower, not
        // easier, however many connections it uses.
        let keys = self.backoff_keys();
        let now = std::time::Instant::now();
        self.shared.backoff.failed(&keys, now);
        tokio::time::sleep(self.shared.backoff.wait(&keys, now)).await;
        self.attempt = None;
        self.send(ser::sasl_failure(f, None)).await?;
        if self.auth_failures >= self.shared.config.limits.max_auth_failures {
            return Err(Stop::Error(
                StreamErrorCondition::PolicyViolation,
                Some("too many failed logins"),
            ));
        }
        Ok(())
    }

    async fn on_unbound(&mut self, stanza: &Stanza) -> Flow {
        if stanza.kind() != Kind::Iq {
            return Err(Stop::Error(StreamErrorCondition::NotAuthorized, None));
        }
        let el = Element::from_stanza(stanza.bytes())
            .map_err(|_| Stop::Error(StreamErrorCondition::NotWellFormed, None))?;
        let id = el.attr("id").unwrap_or("").to_owned();
        if let Some(bind) = el
            .child("bind", ns::BIND)
            .filter(|_| el.attr("type") == Some("set"))
        {
            let Step::Authenticated(bare) = &self.step else {
                return Err(Stop::Gone);
            };
            let bare = bare.clone();
            let resource = bind
                .child("resource", ns::BIND)
                .map(|r| r.text().trim().to_owned())
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| format!("starling-{}", &random_token()[..12]));
            let Ok(jid) = bare.with_resource(&resource) else {
                let err = StanzaError::new(StanzaErrorCondition::BadRequest)
                    .with_text("invalid resource");
                return self
                    .send(ser::stanza_error("iq", Some(&id), None, None, &err))
                    .await;
            };
            // RFC 6120 §7.6.2.1: too many resources is resource-constraint
            // (a bind that replaces one of them adds none).
            let bound = crate::presence::sessions(&self.shared, &bare);
            if bound.len() >= self.shared.config.limits.max_resources_per_account
                && !bound.iter().any(|s| *s.jid() == jid)
            {
                let err = StanzaError::new(StanzaErrorCondition::ResourceConstraint)
                    .with_text("too many resources for this account");
                return self
                    .send(ser::stanza_error("iq", Some(&id), None, None, &err))
                    .await;
            }
            return self.bind(jid, &id).await;
        }
        if el.child("session", ns::SESSION).is_some() {
            return self.send(ser::iq_result(&id, None, None, None)).await;
        }
        Err(Stop::Error(StreamErrorCondition::NotAuthorized, None))
    }

    async fn bind(&mut self, jid: FullJid, id: &str) -> Flow {
        let fanout: &Arc<dyn Fanout> = &self.shared.fanout;
        let limits = &self.shared.config.limits;
        let handle = fanout.attach(jid.clone(), limits.outbound_queue);
        handle.queue().set_max_bytes(limits.outbound_queue_bytes);
        let stall = limits.write_stall_timeout();
        // A session this bind replaces is no longer available.
        self.shared.presences.remove(&jid);
        let closing = Arc::new(AtomicBool::new(false));
        let wr = self.wr.take().ok_or(Stop::Gone)?;
        let writer = tokio::spawn(write_loop(
            wr,
            handle.clone(),
            closing.clone(),
            self.shared.metrics.clone(),
            stall,
        ));
        self.shared.metrics.sessions.inc();
        info!(peer = %self.peer, %jid, "bound");
        let control = crate::control::Control::new(handle.session().id());
        self.shared.controls.insert(jid.clone(), control.clone());
        self.step = Step::Bound(Session {
            control,
            jid: jid.clone(),
            handle,
            writer,
            closing,
            presence: fanout::Presence::default(),
            caps_ver: None,
            caps_pending: std::collections::HashMap::new(),
            replayed_for: None,
        });
        self.send(ser::bind_result(id, jid.as_str())).await
    }

    async fn on_session(&mut self, stanza: &Stanza) -> Flow {
        let Step::Bound(session) = &self.step else {
            return Err(Stop::Gone);
        };
        let me = session.jid.clone();
        match stanza.kind() {
            Kind::Iq => {
                let ty = stanza.type_();
                if matches!(ty.as_deref(), Some("result" | "error")) {
                    let to = stanza.to();
                    let for_us = to.as_deref().is_none_or(|t| {
                        Some(t) == self.domain.as_deref() || t == me.to_bare().as_str()
                    });
                    if !for_us {
                        // A client answering another client.
                        return self.route_iq(stanza, &me).await;
                    }
                    return self.on_iq_response(stanza).await;
                }
                let el = Element::from_stanza(stanza.bytes())
                    .map_err(|_| Stop::Error(StreamErrorCondition::NotWellFormed, None))?;
                let id = el.attr("id").unwrap_or("").to_owned();
                let to = el.attr("to").map(str::to_owned);
                let own_bare = me.to_bare();
                let to_domain = to.as_deref() == self.domain.as_deref();
                let to_own = to.as_deref() == Some(own_bare.as_str());
                // No `to`, or our own bare JID: the server answers for the
                // account (RFC 6120 §10.3.3).
                let to_server = to.is_none() || to_domain || to_own;
                let payload = el.first_element();
                let is = |name: &str, xmlns: &str| payload.is_some_and(|p| p.is(name, xmlns));
                let get = ty.as_deref() == Some("get");
                if to_server && is("query", ns::REGISTER) {
                    let domain = self.domain.clone().unwrap_or_default();
                    let reply = crate::register::iq(
                        &self.shared,
                        Some(&own_bare),
                        Some(&me),
                        &domain,
                        self.peer.ip(),
                        &el,
                    )
                    .await;
                    return self.send(reply).await;
                }
                if (to.is_none() || to_own) && is("query", ns::ROSTER) {
                    let reply = crate::presence::roster_iq(&self.shared, &me, &el).await;
                    return self.send(reply).await;
                }
                if (to.is_none() || to_own) && payload.is_some_and(|p| p.ns == ns::BLOCKING) {
                    let reply = crate::blocking::iq(&self.shared, &me, &el).await;
                    return self.send(reply).await;
                }
                if payload.is_some_and(|p| p.ns == ns::PUBSUB || p.ns == ns::PUBSUB_OWNER) {
                    for out in crate::pep::iq(&self.shared, &me, &el).await {
                        self.send(out).await?;
                    }
                    return Ok(());
                }
                let disco = payload.filter(|p| {
                    get && (p.is("query", ns::DISCO_INFO) || p.is("query", ns::DISCO_ITEMS))
                });
                if let Some(query) = disco {
                    let target = match to.as_deref().map(stanza::Jid::new) {
                        None => None,
                        Some(Ok(j)) if !j.is_full() => Some(j.to_bare()),
                        _ => {
                            // A full JID: the client answers for itself.
                            return self.route_iq(stanza, &me).await;
                        }
                    };
                    let target = target.filter(|t| t.node().is_some());
                    if target
                        .as_ref()
                        .is_some_and(|t| self.shared.config.served_domain(t.domain()).is_none())
                    {
                        return self.route_iq(stanza, &me).await;
                    }
                    let reply = match crate::disco::iq(&self.shared, &me, target.as_ref(), query)
                        .await
                    {
                        Ok(p) => ser::iq_result(&id, to.as_deref(), Some(me.as_str()), Some(&p)),
                        Err(e) => {
                            ser::stanza_error("iq", Some(&id), to.as_deref(), Some(me.as_str()), &e)
                        }
                    };
                    return self.send(reply).await;
                }
                let known = to_server
                    && payload.is_some_and(|p| {
                        (p.is("session", ns::SESSION) && ty.as_deref() == Some("set"))
                            || (p.is("ping", ns::PING) && get)
                    });
                if known {
                    return self
                        .send(ser::iq_result(&id, to.as_deref(), Some(me.as_str()), None))
                        .await;
                }
                if !to_server {
                    return self.route_iq(stanza, &me).await;
                }
                let err = StanzaError::new(StanzaErrorCondition::ServiceUnavailable);
                self.send(ser::stanza_error(
                    "iq",
                    Some(&id),
                    to.as_deref(),
                    Some(me.as_str()),
                    &err,
                ))
                .await
            }
            Kind::Message => match crate::route::message(&self.shared, &me, stanza) {
                Some(error) => self.send(error).await,
                None => Ok(()),
            },
            Kind::Presence => {
                let ty = stanza.type_().map(|t| t.into_owned());
                if let Some(kind) = ty.as_deref().and_then(crate::roster::SubKind::parse) {
                    if stanza.to().is_none() {
                        return Ok(());
                    }
                    return match crate::presence::subscription(&self.shared, &me, stanza, kind)
                        .await
                    {
                        Some(e) => self.send(e).await,
                        None => Ok(()),
                    };
                }
                if !matches!(ty.as_deref(), None | Some("unavailable")) {
                    // probe and error from a client: nothing to do.
                    return Ok(());
                }
                if stanza.to().is_some() {
                    return match crate::presence::directed(&self.shared, &me, stanza) {
                        Some(e) => self.send(e).await,
                        None => Ok(()),
                    };
                }
                self.on_own_presence(stanza).await
            }
            Kind::Other => Err(Stop::Error(
                StreamErrorCondition::UnsupportedStanzaType,
                None,
            )),
        }
    }
}

impl<S: Io> Conn<S> {
    /// An iq for another entity: routed to a full JID's session, answered
    /// for a bare JID (RFC 6121 §8.5).
    async fn route_iq(&mut self, stanza: &Stanza, me: &FullJid) -> Flow {
        match crate::route::iq(&self.shared, me, stanza) {
            Some(e) => self.send(e).await,
            None => Ok(()),
        }
    }

    /// Broadcast presence: availability, priority and caps, which decide
    /// what the fan-out delivers to this resource.
    async fn on_own_presence(&mut self, stanza: &Stanza) -> Flow {
        let el = Element::from_stanza(stanza.bytes())
            .map_err(|_| Stop::Error(StreamErrorCondition::NotWellFormed, None))?;
        let domain = self.domain.clone().unwrap_or_default();
        let caps = self.shared.caps.clone();
        let Step::Bound(s) = &mut self.step else {
            return Err(Stop::Gone);
        };
        let mut query = None;
        match el.attr("type") {
            None => {
                s.presence.available = true;
                s.presence.priority = el
                    .child("priority", ns::CLIENT)
                    .and_then(|p| p.text().trim().parse::<i32>().ok())
                    .map_or(0, |p| p.clamp(-128, 127) as i8);
                let c = el.child("c", ns::CAPS);
                let ver = c
                    .filter(|c| c.attr("hash") == Some("sha-1"))
                    .and_then(|c| c.attr("ver"));
                // A SHA-1 ver is 28 characters; anything much longer is
                // not one, and is not worth a query or a cache slot.
                let ver = ver.filter(|v| v.len() <= MAX_VER_LEN);
                let node_ok = c
                    .and_then(|c| c.attr("node"))
                    .is_none_or(|n| n.len() <= MAX_CAPS_NODE_LEN);
                s.caps_ver = ver.map(str::to_owned);
                let max_pending = self.shared.config.limits.max_caps_queries;
                match ver.filter(|_| node_ok) {
                    Some(ver) => match caps.get(ver) {
                        Some(interests) => s.presence.notify = interests.to_vec(),
                        None if s.caps_pending.len() >= max_pending
                            || s.caps_pending.values().any(|v| v == ver) =>
                        {
                            // Asked already, or too many questions open:
                            // no new one until answers come back.
                            s.presence.notify.clear();
                        }
                        None => {
                            // Unknown: ask, and verify the answer's hash.
                            s.presence.notify.clear();
                            let id = format!("caps-{}", &random_token()[..10]);
                            let node =
                                format!("{}#{ver}", c.and_then(|c| c.attr("node")).unwrap_or(""));
                            let mut w = ser::XmlWriter::with_capacity(128);
                            w.open("query")
                                .attr("xmlns", ns::DISCO_INFO)
                                .attr("node", &node)
                                .close_empty();
                            query = Some(ser::iq_request(
                                "get",
                                &id,
                                Some(&domain),
                                Some(s.jid.as_str()),
                                w.as_bytes(),
                            ));
                            s.caps_pending.insert(id, ver.to_owned());
                        }
                    },
                    None => s.presence.notify.clear(),
                }
            }
            Some("unavailable") => s.presence.available = false,
            _ => return Ok(()),
        }
        self.shared
            .fanout
            .registry()
            .set_presence(s.handle.session(), &s.presence);
        let me = s.jid.clone();
        let available = s.presence.available;
        crate::presence::broadcast(&self.shared, &me, available.then_some(stanza)).await;
        if let Some(q) = query {
            self.send(q).await?;
        }
        self.replay_last_items().await
    }

    /// A resource that became available gets the last item of every node it
    /// would receive now, marked with `<delay>` as a replay (PROTOCOL §6):
    /// nodes it holds an explicit subscription to (no `+notify` needed) and
    /// nodes in its `+notify` interests. When its interests grow later (caps
    /// verified after the presence), only what was not replayed yet is.
    async fn replay_last_items(&mut self) -> Flow {
        let Step::Bound(s) = &mut self.step else {
            return Ok(());
        };
        if !s.presence.available {
            s.replayed_for = None;
            return Ok(());
        }
        let first = s.replayed_for.is_none();
        let done = s.replayed_for.get_or_insert_with(Default::default);
        let registry = self.shared.fanout.registry();
        let session = s.handle.session().clone();
        let me = s.jid.to_bare();
        let mut publishers = registry.following(&registry.account(&me));
        publishers.push(me.clone());
        let mut wanted = Vec::new();
        for p in publishers {
            let Some(account) = registry.find_account(&p) else {
                continue;
            };
            let mut nodes = s.presence.notify.clone();
            if first {
                for n in registry.explicit_nodes(&account, &me) {
                    if !nodes.contains(&n) {
                        nodes.push(n);
                    }
                }
            }
            for node in nodes {
                let key = (p.clone(), node);
                if !done.contains(&key)
                    && registry.delivers_to(&account, registry.node_id(&key.1), &session)
                {
                    done.insert(key.clone());
                    wanted.push(key);
                }
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        // One replay batch is one reply's worth: following thousands of
        // publishers must not queue thousands of items at one presence.
        let budget = self.shared.config.limits.reply_budget();
        let last = self
            .shared
            .db(move |store| {
                let mut out = Vec::new();
                let mut used = 0;
                for (p, n) in wanted {
                    let Some(Some(node)) = store.node(&p, &n).ok() else {
                        continue;
                    };
                    if node.config.send_last != crate::pubsub::SendLast::OnSubAndPresence {
                        continue;
                    }
                    let Some(item) = store
                        .items(&p, &n, crate::store::Budget::items(1))
                        .ok()
                        .and_then(|mut v| v.pop())
                    else {
                        continue;
                    };
                    if !budget.fits(out.len(), used, item.payload.len()) {
                        break;
                    }
                    used += item.payload.len();
                    out.push((p, n, item));
                }
                Ok::<_, crate::StoreError>(out)
            })
            .await
            .unwrap_or_default();
        let to = s.jid.clone();
        for (publisher, node, it) in last {
            self.send(crate::pep::replay(&publisher, &to, &node, &it))
                .await?;
        }
        Ok(())
    }

    /// An iq result or error from the client: answers to our caps queries.
    async fn on_iq_response(&mut self, stanza: &Stanza) -> Flow {
        let Step::Bound(s) = &mut self.step else {
            return Err(Stop::Gone);
        };
        let Some(ver) = stanza
            .id()
            .and_then(|id| s.caps_pending.remove(id.as_ref()))
        else {
            return Ok(());
        };
        if stanza.type_().as_deref() != Some("result") {
            return Ok(());
        }
        let Ok(el) = Element::from_stanza(stanza.bytes()) else {
            return Ok(());
        };
        let Some(query) = el.child("query", ns::DISCO_INFO) else {
            return Ok(());
        };
        let verified = self.shared.caps.verify(&ver, query);
        self.shared
            .metrics
            .caps_cache
            .set(self.shared.caps.len() as i64);
        match verified {
            Some(interests) if s.caps_ver.as_deref() == Some(ver.as_str()) => {
                s.presence.notify = interests.to_vec();
                self.shared
                    .fanout
                    .registry()
                    .set_presence(s.handle.session(), &s.presence);
                return self.replay_last_items().await;
            }
            Some(_) => {}
            None => debug!(jid = %s.jid, %ver, "caps answer does not match its ver; not cached"),
        }
        Ok(())
    }
}

/// Drains a session's queue into the socket, one vectored write per batch,
/// until the session ends; then writes what is left and closes.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    handle: OutboundHandle,
    closing: Arc<AtomicBool>,
    metrics: Arc<crate::metrics::Metrics>,
    stall: Duration,
) {
    // Grows with the first batch: an idle session keeps no buffer.
    let mut frames: Vec<Frame> = Vec::new();
    loop {
        handle.notified().await;
        loop {
            frames.clear();
            if handle.drain(&mut frames, WRITE_BATCH) == 0 {
                break;
            }
            match write_frames(&mut wr, &frames, &handle, stall).await {
                Ok(()) => {}
                Err(e)
                    if e.kind() == std::io::ErrorKind::BrokenPipe
                        && handle.state() == QueueState::Overflowed =>
                {
                    // Overflowed during a write the peer is not reading.
                    debug!(jid = %handle.session().jid(), "outbound queue overflowed");
                    metrics.dropped("overflow_disconnect");
                    return;
                }
                Err(e) => {
                    if e.kind() == std::io::ErrorKind::TimedOut {
                        // A peer that takes nothing for this long is gone or
                        // hostile; what it holds stays in our memory.
                        debug!(jid = %handle.session().jid(), "write stalled; closing");
                        metrics.dropped("write_stall");
                    }
                    // Refuse further pushes: the reader sees the writer end.
                    handle.queue().close();
                    return;
                }
            }
            metrics.stanzas_out.inc_by(frames.len() as u64);
        }
        match handle.state() {
            QueueState::Open => {}
            QueueState::Overflowed => {
                debug!(jid = %handle.session().jid(), "outbound queue overflowed");
                metrics.dropped("overflow_disconnect");
                let _ = tokio::time::timeout(
                    stall.min(STATE_CHECK),
                    wr.write_all(&ser::stream_error(
                        StreamErrorCondition::PolicyViolation,
                        Some("outbound queue full"),
                    )),
                )
                .await;
                break;
            }
            QueueState::Closed => {
                if !closing.load(Ordering::Acquire) {
                    // Detached by someone else: a newer session bound the
                    // same full JID (RFC 6120 §7.7.2.2).
                    let _ = tokio::time::timeout(
                        stall,
                        wr.write_all(&ser::stream_error(StreamErrorCondition::Conflict, None)),
                    )
                    .await;
                }
                break;
            }
        }
    }
    let _ = tokio::time::timeout(stall, wr.shutdown()).await;
}

async fn write_frames<W: AsyncWrite + Unpin>(
    wr: &mut W,
    frames: &[Frame],
    handle: &OutboundHandle,
    stall: Duration,
) -> std::io::Result<()> {
    let to = handle.to_escaped();
    let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(frames.len() * 3);
    for f in frames {
        f.io_slices(to, &mut slices);
    }
    let mut bufs = &mut slices[..];
    while !bufs.is_empty() {
        // The stall timeout is per write call: a slow but moving reader is
        // fine, one that takes nothing at all is not. While a write waits,
        // the queue is looked at every second: a queue that overflowed
        // meanwhile ends the session now, not when the peer reads again.
        // (Dropping a pending write_vectored writes nothing, so retrying it
        // is safe.)
        let started = Instant::now();
        let n = loop {
            let left = stall.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
            match tokio::time::timeout(left.min(STATE_CHECK), wr.write_vectored(bufs)).await {
                Ok(r) => break r?,
                Err(_) if handle.state() != QueueState::Open => {
                    return Err(std::io::ErrorKind::BrokenPipe.into());
                }
                Err(_) => {}
            }
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut bufs, n);
    }
    Ok(())
}

fn random_token() -> String {
    let bytes: [u8; 18] = rand::random();
    B64.encode(bytes).replace(['+', '/'], "x")
}
