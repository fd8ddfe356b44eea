//! One XMPP client session: connect (from a chosen loopback source
//! address), open the stream, authenticate (PLAIN, SCRAM-SHA-1 or
//! SCRAM-SHA-256 with cached keys), bind, and then live: announce presence
//! with `+notify` caps, answer the server's disco#info, publish on command,
//! and record every delivery it receives.
//!
//! Nothing here is specific to Starling: it speaks RFC 6120/6121,
//! XEP-0115, XEP-0060 and XEP-0163 as any server expects.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use stanza::{Element, Event, Framer, Kind, Stanza};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

/// What followers' sessions run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
pub enum Transport {
    /// XMPP over TCP (RFC 6120).
    #[default]
    Tcp,
    /// XMPP over WebSocket (RFC 7395).
    Websocket,
    /// The Mastodon-compatible streaming API (server-sent events): the
    /// follower reads its user stream with a token, and posts nothing.
    Sse,
}

/// The SASL mechanism a session logs in with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Mech {
    /// PLAIN (needs TLS, or a server that allows it in the clear).
    Plain,
    /// SCRAM-SHA-1.
    ScramSha1,
    /// SCRAM-SHA-256.
    ScramSha256,
}

/// Why a session failed or ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The TCP connection failed.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// The socket failed or closed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The server sent something this client cannot read.
    #[error("bad XML from the server: {0}")]
    Xml(String),
    /// The server ended the stream with this condition.
    #[error("stream error: {0}")]
    Stream(String),
    /// Authentication failed.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// Something else went wrong in the negotiation.
    #[error("negotiation: {0}")]
    Negotiation(String),
    /// No answer in time.
    #[error("timed out during {0}")]
    Timeout(&'static str),
    /// STARTTLS was refused or the TLS handshake failed.
    #[error("tls: {0}")]
    Tls(String),
}

impl SessionError {
    /// A short kind for error tallies.
    pub fn kind(&self) -> String {
        match self {
            Self::Connect(e) => format!("connect:{:?}", e.kind()),
            Self::Io(_) => "io".into(),
            Self::Xml(_) => "xml".into(),
            Self::Stream(c) => format!("stream:{c}"),
            Self::Auth(_) => "auth".into(),
            Self::Negotiation(_) => "negotiation".into(),
            Self::Timeout(w) => format!("timeout:{w}"),
            Self::Tls(_) => "tls".into(),
        }
    }
}

/// How to reach the server and log in.
#[derive(Debug, Clone)]
pub struct Login {
    /// The server's c2s address.
    pub addr: SocketAddr,
    /// The local address to connect from (spreads ephemeral ports).
    pub source: Option<IpAddr>,
    /// The XMPP domain.
    pub domain: String,
    /// The localpart.
    pub user: String,
    /// The password.
    pub password: String,
    /// The mechanism.
    pub mech: Mech,
    /// The resource to bind.
    pub resource: String,
    /// Negotiate STARTTLS before authenticating.
    pub tls: bool,
    /// Connect over WebSocket (RFC 7395) to this HTTP address instead of
    /// TCP to `addr`.
    pub ws: Option<SocketAddr>,
    /// Follow over the streaming API at this HTTP address instead: no
    /// XMPP session at all (see [`crate::sse`]).
    pub sse: Option<SocketAddr>,
}

/// The read half of a session's stream (TCP, or TLS over TCP).
pub type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of a session's stream.
pub type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// A bound session's connection.
pub struct Conn {
    rd: ReadHalf,
    /// The write half.
    pub wr: WriteHalf,
    framer: Framer,
    /// The bound full JID.
    pub jid: String,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("jid", &self.jid)
            .finish_non_exhaustive()
    }
}

const NEGOTIATION: Duration = Duration::from_secs(30);

/// The next framed event from `rd`, waiting at most `limit`.
async fn read_event<R: AsyncRead + Unpin + ?Sized>(
    rd: &mut R,
    framer: &mut Framer,
    what: &'static str,
    limit: Duration,
) -> Result<Event, SessionError> {
    loop {
        match framer.next() {
            Ok(Some(ev)) => return Ok(ev),
            Ok(None) => {}
            Err(e) => return Err(SessionError::Xml(e.to_string())),
        }
        framer.buffer_mut().reserve(8192);
        let n = tokio::time::timeout(limit, rd.read_buf(framer.buffer_mut()))
            .await
            .map_err(|_| SessionError::Timeout(what))??;
        if n == 0 {
            return Err(SessionError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
}

/// The next top-level element from `rd` (headers skipped); stream errors
/// are returned as errors.
async fn read_element<R: AsyncRead + Unpin + ?Sized>(
    rd: &mut R,
    framer: &mut Framer,
    what: &'static str,
) -> Result<Element, SessionError> {
    loop {
        match read_event(rd, framer, what, NEGOTIATION).await? {
            Event::StreamOpen(_) => continue,
            Event::StreamClose => return Err(SessionError::Stream("closed".into())),
            Event::Stanza(b) => {
                let el = Element::from_stanza(&b).map_err(|e| SessionError::Xml(e.to_string()))?;
                if el.name == "error" && el.ns == stanza::ns::STREAM {
                    let cond = el
                        .first_element()
                        .map_or_else(|| "unknown".to_owned(), |c| c.name.clone());
                    return Err(SessionError::Stream(cond));
                }
                return Ok(el);
            }
        }
    }
}

/// Writes a stream header to `wr` and reads the features from `rd`.
async fn open_stream<R, W>(
    rd: &mut R,
    wr: &mut W,
    framer: &mut Framer,
    domain: &str,
) -> Result<Element, SessionError>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    framer.reset();
    wr.write_all(
        format!(
            "<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' \
             xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
        )
        .as_bytes(),
    )
    .await?;
    let f = read_element(rd, framer, "stream features").await?;
    if f.name != "features" {
        return Err(SessionError::Negotiation(format!(
            "expected features, got <{}>",
            f.name
        )));
    }
    Ok(f)
}

impl Conn {
    /// Logs out as RFC 6120 §4.4 has it: our closing tag, then the
    /// server's, and its end of the connection, before ours. The server
    /// closes first, so the wait in TIME_WAIT is its socket's, not one of
    /// our source ports: at thousands of logins a second (`--churn`)
    /// those would run out within a minute, and binding a port gets slow
    /// long before. Bounded: a server that never closes gets 5 s.
    pub async fn log_out(&mut self) {
        if self.wr.write_all(b"</stream:stream>").await.is_err() {
            return;
        }
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::copy(&mut self.rd, &mut tokio::io::sink()),
        )
        .await;
    }

    /// The next framed event, waiting at most the negotiation timeout.
    pub async fn read_event(&mut self, what: &'static str) -> Result<Event, SessionError> {
        self.read_event_within(what, NEGOTIATION).await
    }

    /// The next framed event, waiting at most `limit`.
    pub async fn read_event_within(
        &mut self,
        what: &'static str,
        limit: Duration,
    ) -> Result<Event, SessionError> {
        read_event(&mut self.rd, &mut self.framer, what, limit).await
    }

    /// The next top-level element (headers skipped); stream errors are
    /// returned as errors.
    pub async fn element(&mut self, what: &'static str) -> Result<Element, SessionError> {
        read_element(&mut self.rd, &mut self.framer, what).await
    }

    /// Opens (or restarts) the stream; returns the features.
    pub async fn open(&mut self, domain: &str) -> Result<Element, SessionError> {
        open_stream(&mut self.rd, &mut self.wr, &mut self.framer, domain).await
    }
}

/// A socket for a connection to `addr`, bound to `source` when given
/// (sessions spread over loopback addresses to get more ports).
pub(crate) fn socket_for(
    addr: std::net::SocketAddr,
    source: Option<std::net::IpAddr>,
) -> Result<tokio::net::TcpSocket, SessionError> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(SessionError::Connect)?;
    if let Some(src) = source {
        socket
            .bind(std::net::SocketAddr::new(src, 0))
            .map_err(SessionError::Connect)?;
    }
    Ok(socket)
}

mod login;
pub use login::{authenticate, connect, login};

mod presence;
use presence::{answer_request, initial_presence};
pub use presence::{available, caps_query, caps_ver, disco_result, iq_result};

/// Microseconds since the Unix epoch: the one clock every process of a run
/// shares.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A publish the scheduler hands to a publisher's session.
#[derive(Debug, Clone, Copy)]
pub struct PostCmd {
    /// The post's index in the run.
    pub index: u32,
    /// When it was scheduled, µs since the epoch.
    pub sched_us: u64,
}

/// How posts travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Mechanism {
    /// Mutual presence subscription plus `+notify` caps.
    Presence,
    /// An explicit XEP-0060 subscribe to each followed node.
    Pubsub,
    /// No server fan-out: the publisher sends one message per follower.
    Direct,
}

/// What a session's live phase needs.
#[derive(Debug, Clone)]
pub struct Live {
    /// This user's index.
    pub index: u32,
    /// How posts travel.
    pub mechanism: Mechanism,
    /// Payload bytes in each post's Atom content.
    pub payload: Arc<str>,
    /// For `direct`: the bare JIDs of this user's followers.
    pub followers: Arc<[String]>,
    /// Shared counters for progress.
    pub counters: Arc<Counters>,
    /// Posts scheduled before this are warm-up: not measured.
    pub measure_from_us: u64,
    /// `Some(n)`: the session is available already ([`available`]), and
    /// the server's stanzas it handled on the way number `n`.
    pub announced: Option<u32>,
}

/// Run-wide counters, for live progress.
#[derive(Debug, Default)]
pub struct Counters {
    /// Deliveries received (measured or not).
    pub received: AtomicU64,
    /// Publishes acknowledged.
    pub acked: AtomicU64,
    /// Connections dropped on purpose (`--chaos`) and made again.
    pub reconnects: AtomicU64,
}

/// One received delivery.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    /// The post.
    pub index: u32,
    /// Scheduled send → receipt, µs.
    pub latency_us: u32,
    /// When it arrived, ms since the run's measured phase began.
    pub at_ms: u32,
}

/// What one session reports at the end.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Deliveries of measured posts.
    pub deliveries: Vec<Delivery>,
    /// Publish → ack latencies of measured posts, µs.
    pub acks: Vec<u32>,
    /// Errors by kind.
    pub errors: Vec<String>,
    /// Why the session ended early, if it did, and when (µs since epoch).
    pub ended: Option<(String, u64)>,
    /// Last-item replays seen (not counted as deliveries).
    pub replays: u64,
    /// When this session first wrote a measured publish, µs since the
    /// epoch (0: never).
    pub first_publish_us: u64,
    /// When its last delivery of a measured post arrived, µs (0: none).
    pub last_delivery_us: u64,
}

/// Resolves when `--chaos` picks this session; never without chaos.
async fn killed(chaos: &Option<crate::sm::Chaos>) {
    match chaos {
        Some(ch) => ch.kill.notified().await,
        None => std::future::pending().await,
    }
}

/// Finds `attr='value'` (or `"value"`) after `from` in `s`.
fn attr_after<'a>(s: &'a [u8], from: usize, attr: &[u8]) -> Option<&'a [u8]> {
    let hay = &s[from..];
    let pos =
        memchr::memmem::find_iter(hay, attr).find(|&p| hay.get(p + attr.len()) == Some(&b'='))?;
    let q = *hay.get(pos + attr.len() + 1)?;
    if q != b'\'' && q != b'"' {
        return None;
    }
    let start = pos + attr.len() + 2;
    let end = hay[start..].iter().position(|&c| c == q)? + start;
    Some(&hay[start..end])
}

/// Parses a post id `p{index}-{publisher}-{sched_us}`.
pub fn parse_post_id(id: &[u8]) -> Option<(u32, u32, u64)> {
    let s = std::str::from_utf8(id).ok()?.strip_prefix('p')?;
    let mut it = s.splitn(3, '-');
    Some((
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
    ))
}

/// The post a delivery carries, and whether it is a replay: for a pubsub
/// event, the first `<item id=…>`; for `direct`, the message id.
fn delivered_post(bytes: &[u8], mechanism: Mechanism) -> Option<((u32, u32, u64), bool)> {
    if mechanism == Mechanism::Direct {
        let id = attr_after(bytes, 0, b"id")?;
        return Some((parse_post_id(id)?, false));
    }
    let item = memchr::memmem::find(bytes, b"<item ")?;
    let id = attr_after(bytes, item, b"id")?;
    // A replay's <delay/> follows the event, so only the tail is searched.
    let replay = memchr::memmem::find(&bytes[item..], b"<delay ").is_some();
    Some((parse_post_id(id)?, replay))
}

fn publish_iq(cmd: PostCmd, me: u32, live: &Live) -> String {
    let id = format!("p{}-{me}-{}", cmd.index, cmd.sched_us);
    let options = if live.mechanism == Mechanism::Pubsub {
        // Followers subscribed explicitly: the node must be open to them.
        "<publish-options><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
         <field var='pubsub#access_model'><value>open</value></field></x></publish-options>"
    } else {
        ""
    };
    format!(
        "<iq type='set' id='{id}'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
         <publish node='{}'><item id='{id}'><entry xmlns='http://www.w3.org/2005/Atom'>\
         <title>post {}</title><content>{}</content></entry></item></publish>{options}</pubsub></iq>",
        stanza::ns::MICROBLOG,
        cmd.index,
        live.payload
    )
}

fn direct_messages(cmd: PostCmd, me: u32, live: &Live) -> String {
    let id = format!("p{}-{me}-{}", cmd.index, cmd.sched_us);
    let mut out = String::with_capacity(live.followers.len() * (160 + live.payload.len()));
    for f in live.followers.iter() {
        let mut w = stanza::ser::XmlWriter::with_capacity(160 + live.payload.len());
        w.open("message")
            .attr("type", "headline")
            .attr("to", f)
            .attr("id", &id)
            .close_start()
            .text_element("body", None, &live.payload)
            .end("message");
        out.push_str(&String::from_utf8_lossy(w.as_bytes()));
    }
    out
}

/// Runs a bound session until `stop` is set: presence with caps, disco
/// answers, publishes on command, deliveries recorded.
pub async fn live(
    mut c: Conn,
    live: Live,
    mut posts: mpsc::UnboundedReceiver<PostCmd>,
    mut stop: watch::Receiver<bool>,
    run_start_us: u64,
    chaos: Option<crate::sm::Chaos>,
) -> Outcome {
    let mut out = Outcome::default();
    let mut counts = crate::sm::Counts {
        on: chaos.as_ref().is_some_and(|ch| ch.sm_id.is_some()),
        ..Default::default()
    };
    let presence = initial_presence();
    if let Some(n) = live.announced {
        counts.handled = n;
    } else if let Err(e) = c.wr.write_all(presence.as_bytes()).await {
        out.ended = Some((format!("io: {e}"), now_us()));
        return out;
    }
    loop {
        // Everything already framed first.
        loop {
            let ev = match c.framer.next() {
                Ok(Some(ev)) => ev,
                Ok(None) => break,
                Err(e) => {
                    out.ended = Some((format!("xml: {e}"), now_us()));
                    return out;
                }
            };
            let bytes: Bytes = match ev {
                Event::Stanza(b) => b,
                Event::StreamOpen(_) => continue,
                Event::StreamClose => {
                    out.ended = Some(("stream closed".into(), now_us()));
                    return out;
                }
            };
            let received_us = now_us();
            let Ok(st) = Stanza::from_framed(bytes) else {
                out.errors.push("unparsable stanza".into());
                continue;
            };
            let ack = match st.kind() {
                Kind::Message | Kind::Presence | Kind::Iq => counts.handled_one(),
                Kind::Other if counts.on && st.bytes().starts_with(b"<r ") => Some(counts.ack()),
                Kind::Other => None,
            };
            if let Some(a) = ack {
                if c.wr.write_all(&a).await.is_err() {
                    out.ended = Some(("io: write".into(), now_us()));
                    return out;
                }
            }
            match st.kind() {
                Kind::Message => {
                    if st.type_().as_deref() == Some("error") {
                        out.errors.push("message error".into());
                        continue;
                    }
                    let Some(((index, publisher, sched), replay)) =
                        delivered_post(st.bytes(), live.mechanism)
                    else {
                        continue;
                    };
                    if replay {
                        out.replays += 1;
                        continue;
                    }
                    if publisher == live.index {
                        // Our own post, back to us: not a delivery.
                        continue;
                    }
                    live.counters.received.fetch_add(1, Ordering::Relaxed);
                    if sched >= live.measure_from_us {
                        out.last_delivery_us = out.last_delivery_us.max(received_us);
                        out.deliveries.push(Delivery {
                            index,
                            latency_us: received_us.saturating_sub(sched).min(u32::MAX as u64)
                                as u32,
                            at_ms: (received_us.saturating_sub(run_start_us) / 1000) as u32,
                        });
                    }
                }
                Kind::Iq => {
                    let ty = st.type_();
                    match ty.as_deref() {
                        Some("get" | "set") => {
                            // Caps verification, roster pushes, anyone asking.
                            if let Some(answer) = answer_request(&st) {
                                if c.wr.write_all(&answer).await.is_err() {
                                    out.ended = Some(("io: write".into(), now_us()));
                                    return out;
                                }
                            }
                        }
                        Some(t @ ("result" | "error")) => {
                            let id = st.id().unwrap_or_default();
                            if let Some((_, _, sched)) = parse_post_id(id.as_bytes()) {
                                if t == "error" {
                                    let cond = Element::from_stanza(st.bytes())
                                        .ok()
                                        .and_then(|e| {
                                            e.child("error", stanza::ns::CLIENT).and_then(|er| {
                                                er.first_element().map(|c| c.name.clone())
                                            })
                                        })
                                        .unwrap_or_else(|| "unknown".into());
                                    out.errors.push(format!("publish:{cond}"));
                                } else {
                                    live.counters.acked.fetch_add(1, Ordering::Relaxed);
                                    if sched >= live.measure_from_us {
                                        out.acks.push(
                                            received_us.saturating_sub(sched).min(u32::MAX as u64)
                                                as u32,
                                        );
                                    }
                                }
                            }
                        }
                        _ => {}
                    }
                }
                Kind::Presence | Kind::Other => {
                    if st.bytes().starts_with(b"<stream:error") || st.bytes().starts_with(b"<error")
                    {
                        let cond = Element::from_stanza(st.bytes())
                            .ok()
                            .and_then(|e| e.first_element().map(|c| c.name.clone()))
                            .unwrap_or_else(|| "unknown".into());
                        out.ended = Some((format!("stream error: {cond}"), now_us()));
                        return out;
                    }
                }
            }
        }
        c.framer.buffer_mut().reserve(16 * 1024);
        tokio::select! {
            r = c.rd.read_buf(c.framer.buffer_mut()) => match r {
                Ok(0) | Err(_) => {
                    out.ended = Some(("connection closed".into(), now_us()));
                    return out;
                }
                Ok(_) => {}
            },
            Some(cmd) = posts.recv() => {
                let bytes = match live.mechanism {
                    Mechanism::Direct => direct_messages(cmd, live.index, &live),
                    _ => publish_iq(cmd, live.index, &live),
                };
                let sending_us = now_us();
                if c.wr.write_all(bytes.as_bytes()).await.is_err() {
                    out.ended = Some(("io: write".into(), now_us()));
                    return out;
                }
                if cmd.sched_us >= live.measure_from_us && out.first_publish_us == 0 {
                    out.first_publish_us = sending_us;
                }
                if live.mechanism == Mechanism::Direct {
                    // No ack to wait for: count it as sent.
                    live.counters.acked.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ = stop.changed() => {
                let _ = c.wr.write_all(b"</stream:stream>").await;
                return out;
            }
            () = killed(&chaos) => {
                let Some(ch) = &chaos else { continue };
                let started = std::time::Instant::now();
                if ch.churn.is_some() {
                    c.log_out().await;
                }
                // Dropped on purpose: the socket closes, a new one comes.
                let _ = c.wr.shutdown().await;
                let next = match &ch.sm_id {
                    Some(id) => crate::sm::resume(&ch.login, &ch.keys, id, counts.handled).await,
                    None => login(&ch.login, &ch.keys).await,
                };
                match next {
                    Ok(n) => c = n,
                    Err(e) => {
                        if let Some(st) = &ch.churn {
                            st.failed();
                        }
                        out.ended = Some((format!("reconnect: {}", e.kind()), now_us()));
                        return out;
                    }
                }
                live.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                if ch.sm_id.is_none() {
                    // A new session: available again, with its caps.
                    if c.wr.write_all(presence.as_bytes()).await.is_err() {
                        out.ended = Some(("io: write".into(), now_us()));
                        return out;
                    }
                }
                if let Some(st) = &ch.churn {
                    st.logged_in(started.elapsed(), now_us());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn answers_escape_what_the_server_sent() {
        let r = iq_result("a'b<c", Some("x&y@d/r"));
        let el = Element::parse(std::str::from_utf8(&r).unwrap()).unwrap();
        assert_eq!(el.attr("id"), Some("a'b<c"));
        assert_eq!(el.attr("to"), Some("x&y@d/r"));
        let d = disco_result("q'1", None, Some("n'ode#v"));
        let el = Element::parse(std::str::from_utf8(&d).unwrap()).unwrap();
        let q = el.first_element().unwrap();
        assert_eq!(q.attr("node"), Some("n'ode#v"));
        assert_eq!(server::caps::verification_string_hash(q), caps_ver());
    }

    use super::*;

    #[test]
    fn post_ids_round_trip_and_deliveries_are_found() {
        assert_eq!(
            parse_post_id(b"p12-3-1700000000000000"),
            Some((12, 3, 1_700_000_000_000_000))
        );
        assert_eq!(parse_post_id(b"x12-3-4"), None);
        let ev = br#"<message from='a@x' to='b@x/r' type='headline'><event xmlns='http://jabber.org/protocol/pubsub#event'><items node='n'><item id="p7-1-99" publisher='a@x'><entry/></item></items></event></message>"#;
        assert_eq!(
            delivered_post(ev, Mechanism::Presence),
            Some(((7, 1, 99), false))
        );
        let replay = br#"<message><event><items><item id='p7-1-99'/></items></event><delay xmlns='urn:xmpp:delay' stamp='x'/></message>"#;
        assert_eq!(
            delivered_post(replay, Mechanism::Pubsub),
            Some(((7, 1, 99), true))
        );
        let direct = b"<message type='headline' from='a@x/r' id='p8-2-5'><body>x</body></message>";
        assert_eq!(
            delivered_post(direct, Mechanism::Direct),
            Some(((8, 2, 5), false))
        );
    }

    #[test]
    fn the_caps_ver_matches_what_a_server_recomputes() {
        let q = Element::parse(&caps_query()).unwrap();
        assert_eq!(server::caps::verification_string_hash(&q), caps_ver());
        assert_eq!(
            server::caps::notify_nodes(&q),
            vec![stanza::ns::MICROBLOG.to_owned()]
        );
    }
}
