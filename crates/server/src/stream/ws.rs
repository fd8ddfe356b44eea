//! The WebSocket transport (RFC 7395): each text message carries one
//! complete element; the stream opens and closes with `<open/>` and
//! `<close/>` in `urn:ietf:params:xml:ns:xmpp-framing`.
//!
//! Stanzas still go through the framer, with the same limits as on TCP:
//! the framer is primed with a `jabber:client` stream header of our own,
//! so each message's stanzas are cut and checked exactly as on a TCP
//! stream. `<open/>` and `<close/>` become the stream events that
//! negotiation and the read loop already know.

use std::collections::VecDeque;
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use bytes::Bytes;
use fanout::{Frame, OutboundHandle};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use stanza::escape::escape_attr;
use stanza::{ser, Element, Event, Framer, StreamErrorCondition, StreamHeader};
use tokio::task::JoinHandle;

use super::negotiate::Opening;
use super::writer::Sink;
use super::{Transport, WriterParams};

/// The framing namespace of RFC 7395.
pub(crate) const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";

/// What the framer reads before the first message, so that stanzas are
/// read as children of a client stream.
const PRIME: &[u8] =
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

/// A WebSocket carrying one XMPP stream.
pub(crate) struct Ws {
    rx: SplitStream<WebSocket>,
    tx: Option<SplitSink<WebSocket, Message>>,
    framer: Framer,
    /// `<open/>` and `<close/>` read, and refusals, ahead of the framer.
    pending: VecDeque<Result<Event, StreamErrorCondition>>,
}

impl Ws {
    /// A transport over an upgraded socket, reading with `limits`.
    pub(crate) fn new(socket: WebSocket, limits: stanza::Limits) -> Self {
        let (tx, rx) = socket.split();
        let mut ws = Self {
            rx,
            tx: Some(tx),
            framer: Framer::new(limits),
            pending: VecDeque::new(),
        };
        ws.prime();
        ws
    }

    fn prime(&mut self) {
        self.framer.feed(PRIME);
        // The header just fed: ours, not the peer's.
        let _ = self.framer.next();
    }

    /// One text message from the peer.
    fn on_text(&mut self, text: &str) {
        let t = text.trim_start();
        if t.starts_with("<open") || t.starts_with("<close") {
            self.pending.push_back(framing_event(t));
        } else if t.starts_with("<stream:") || t.starts_with("<?xml") {
            // A TCP-style stream over WebSocket: not this protocol.
            self.pending
                .push_back(Err(StreamErrorCondition::InvalidNamespace));
        } else {
            self.framer.feed(text.as_bytes());
        }
    }
}

/// `<open/>` or `<close/>`, read as the stream events they stand for.
fn framing_event(text: &str) -> Result<Event, StreamErrorCondition> {
    let el = Element::parse(text).map_err(|_| StreamErrorCondition::NotWellFormed)?;
    match el.name.as_str() {
        "open" => Ok(Event::StreamOpen(StreamHeader {
            name: "open".into(),
            attrs: el
                .attrs
                .iter()
                .filter(|a| a.prefix.is_none())
                .map(|a| (a.name.clone(), a.value.clone()))
                .collect(),
            namespaces: vec![(String::new(), el.ns.clone())],
        })),
        "close" if el.ns == FRAMING => Ok(Event::StreamClose),
        _ => Err(StreamErrorCondition::InvalidNamespace),
    }
}

/// Our own messages name the stream namespace: there is no enclosing
/// `<stream:stream>` to declare it.
fn standalone(bytes: &[u8]) -> Bytes {
    const DECL: &[u8] = b" xmlns:stream='http://etherx.jabber.org/streams'";
    // A stream error on TCP ends the document too; here `<close/>` does.
    let bytes = bytes.strip_suffix(b"</stream:stream>").unwrap_or(bytes);
    for prefix in [&b"<stream:features"[..], b"<stream:error"] {
        // Once only: a stream error made by `stream_error` is written
        // through `write` too.
        if bytes.starts_with(prefix) && !bytes[prefix.len()..].starts_with(DECL) {
            let mut out = Vec::with_capacity(bytes.len() + DECL.len());
            out.extend_from_slice(prefix);
            out.extend_from_slice(DECL);
            out.extend_from_slice(&bytes[prefix.len()..]);
            return Bytes::from(out);
        }
    }
    Bytes::copy_from_slice(bytes)
}

fn text(bytes: Bytes) -> std::io::Result<Message> {
    Utf8Bytes::try_from(bytes)
        .map(Message::Text)
        .map_err(|_| std::io::ErrorKind::InvalidData.into())
}

fn io_error(e: axum::Error) -> std::io::Error {
    std::io::Error::other(e)
}

fn close_message() -> Bytes {
    Bytes::from(format!("<close xmlns='{FRAMING}'/>"))
}

impl Transport for Ws {
    const STARTTLS: bool = false;

    fn framer(&mut self) -> &mut Framer {
        &mut self.framer
    }

    fn restart(&mut self, limits: stanza::Limits) {
        self.framer.reset();
        self.framer.set_limits(limits);
        self.prime();
    }

    fn next_event(&mut self) -> Result<Option<Event>, StreamErrorCondition> {
        // Stanzas of earlier messages first: each message was handled in
        // order, and framing events wait behind what the framer holds.
        match self.framer.next() {
            Ok(Some(ev)) => return Ok(Some(ev)),
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, "framing error");
                return Err(e.condition());
            }
        }
        self.pending.pop_front().transpose()
    }

    fn opening<'a>(&self, h: &'a StreamHeader) -> Opening<'a> {
        Opening {
            to: h.attr("to"),
            version: h.attr("version"),
            framing: if h.name == "open" && h.namespace("") == Some(FRAMING) {
                Ok(())
            } else {
                Err(StreamErrorCondition::InvalidNamespace)
            },
        }
    }

    async fn fill(&mut self) -> std::io::Result<bool> {
        loop {
            match self.rx.next().await {
                None | Some(Ok(Message::Close(_))) => return Ok(false),
                Some(Err(e)) => return Err(io_error(e)),
                Some(Ok(Message::Text(t))) => {
                    self.on_text(t.as_str());
                    return Ok(true);
                }
                Some(Ok(Message::Binary(_))) => {
                    // RFC 7395 §3.2: XMPP goes in text frames.
                    self.pending.push_back(Err(StreamErrorCondition::BadFormat));
                    return Ok(true);
                }
                // Pings are answered by the WebSocket layer.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            }
        }
    }

    fn open(&self, from: &str, id: &str) -> Bytes {
        Bytes::from(format!(
            "<open xmlns='{FRAMING}' from='{}' id='{}' version='1.0' xml:lang='en'/>",
            escape_attr(from),
            escape_attr(id)
        ))
    }

    fn close(&self) -> Bytes {
        close_message()
    }

    fn stream_error(&self, cond: StreamErrorCondition, text: Option<&str>) -> Bytes {
        standalone(&ser::stream_error(cond, text))
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let tx = self.tx.as_mut().ok_or(std::io::ErrorKind::NotConnected)?;
        tx.send(text(standalone(bytes))?).await.map_err(io_error)
    }

    async fn shutdown(&mut self) {
        if let Some(mut tx) = self.tx.take() {
            let _ = tx.send(text(close_message()).expect("ASCII")).await;
            let _ = tx.close().await;
        }
    }

    fn spawn_writer(&mut self, p: WriterParams) -> Option<JoinHandle<()>> {
        let tx = self.tx.take()?;
        Some(tokio::spawn(super::writer::write_loop(
            WsSink {
                tx,
                closed: false,
                buf: Vec::new(),
            },
            p,
        )))
    }
}

/// A bound session's messages: one per frame, flushed once per batch.
struct WsSink {
    tx: SplitSink<WebSocket, Message>,
    /// Whether our `<close/>` went out already.
    closed: bool,
    buf: Vec<u8>,
}

impl WsSink {
    async fn batch(&mut self, frames: &[Frame], handle: &OutboundHandle) -> std::io::Result<()> {
        let to = handle.to_escaped();
        for f in frames {
            let bytes = match f {
                Frame::Bytes(b) => b.clone(),
                Frame::Notification(_) => {
                    let mut slices = Vec::with_capacity(4);
                    f.io_slices(to, &mut slices);
                    self.buf.clear();
                    for s in &slices {
                        self.buf.extend_from_slice(s);
                    }
                    Bytes::copy_from_slice(&self.buf)
                }
            };
            if bytes.starts_with(b"<close") {
                self.closed = true;
            }
            self.tx
                .feed(text(standalone(&bytes))?)
                .await
                .map_err(io_error)?;
        }
        self.tx.flush().await.map_err(io_error)
    }
}

impl Sink for WsSink {
    async fn frames(
        &mut self,
        frames: &[Frame],
        handle: &OutboundHandle,
        stall: Duration,
    ) -> std::io::Result<()> {
        match tokio::time::timeout(stall, self.batch(frames, handle)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }

    async fn error(&mut self, cond: StreamErrorCondition, text_: Option<&str>) {
        if let Ok(m) = text(standalone(&ser::stream_error(cond, text_))) {
            let _ = self.tx.send(m).await;
        }
    }

    async fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            let _ = self.tx.send(text(close_message()).expect("ASCII")).await;
        }
        let _ = self.tx.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_messages_become_stream_events() {
        let open = framing_event(
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.org' version='1.0'/>",
        )
        .unwrap();
        let Event::StreamOpen(h) = open else {
            panic!("{open:?}")
        };
        assert_eq!(
            (h.attr("to"), h.attr("version"), h.namespace("")),
            (Some("example.org"), Some("1.0"), Some(FRAMING))
        );
        assert_eq!(
            framing_event("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"),
            Ok(Event::StreamClose)
        );
        assert_eq!(
            framing_event("<close xmlns='jabber:client'/>"),
            Err(StreamErrorCondition::InvalidNamespace)
        );
        assert_eq!(
            framing_event("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'"),
            Err(StreamErrorCondition::NotWellFormed)
        );
    }

    #[test]
    fn our_features_and_errors_declare_the_stream_prefix() {
        let f = standalone(
            b"<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>",
        );
        let el = Element::parse(std::str::from_utf8(&f).unwrap()).unwrap();
        assert!(el.is("features", stanza::ns::STREAM));
        let e = standalone(&ser::stream_error(StreamErrorCondition::Conflict, None));
        let el = Element::parse(std::str::from_utf8(&e).unwrap()).unwrap();
        assert!(el.is("error", stanza::ns::STREAM));
        assert_eq!(standalone(&e), e, "declared once");
        let iq = standalone(b"<iq type='result' id='1'/>");
        assert_eq!(&iq[..], b"<iq type='result' id='1'/>");
    }
}
