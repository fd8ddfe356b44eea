//! One stream layer for every transport (RFC 6120 streams over TCP, RFC
//! 7395 over WebSocket).
//!
//! # Layout
//! - [`negotiate`]: header checks, features, STARTTLS, SASL, restart and
//!   bind as a state machine without I/O: input in, actions out.
//! - [`tcp`]: the TCP transport: the framer over a byte stream, the stream
//!   header, and the STARTTLS hand-off.
//! - [`ws`]: the WebSocket transport (RFC 7395): one element per message,
//!   `<open/>` and `<close/>` in the framing namespace.
//! - [`writer`]: the coalescing writer that drains a bound session's queue.
//!
//! A [`Transport`] is what differs between TCP and WebSocket: how events
//! are read, how our side of the stream opens and closes, and how a bound
//! session's writer is started. `c2s` drives any transport through the
//! same negotiation, limits, session and fan-out.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fanout::OutboundHandle;
use stanza::{Event, Framer, StreamErrorCondition, StreamHeader};
use tokio::task::JoinHandle;

pub(crate) mod negotiate;
pub(crate) mod tcp;
pub(crate) mod writer;
pub(crate) mod ws;

/// Why a stream's reader stops.
#[derive(Debug)]
pub(crate) enum Stop {
    /// Send this stream error, then close.
    Error(StreamErrorCondition, Option<&'static str>),
    /// The peer closed the stream; answer with our close.
    PeerClosed,
    /// The connection is gone.
    Gone,
    /// The writer task ended the stream (overflow, write failure, or a
    /// replacing session); it has been joined already.
    WriterEnded,
    /// The client sent `<starttls/>`: answer `<proceed/>` and hand over.
    StartTls,
}

/// A step's outcome: go on, or stop for this reason.
pub(crate) type Flow = Result<(), Stop>;

/// A session's stream management state, shared by its reader (acks, the
/// handled count) and its writer (what was sent): `None` until enabled.
#[derive(Debug, Default)]
pub(crate) struct SmSlot {
    /// The counts and unacknowledged stanzas, once `<enable/>` came.
    pub tracker: Option<fanout::unacked::Tracker>,
    /// Whether `<enabled/>` was written: counting starts after it, as the
    /// client's does after reading it (XEP-0198 §4).
    pub counting: bool,
    /// Whether the client asked for resumption.
    pub resume: bool,
}

/// The slot, behind the lock both tasks take once per batch or stanza.
pub(crate) type Sm = Arc<std::sync::Mutex<SmSlot>>;

/// What a bound session's writer needs.
#[derive(Debug, Clone)]
pub(crate) struct WriterParams {
    /// The session's queue.
    pub handle: OutboundHandle,
    /// Set when this side closes, to tell a close from a replacement.
    pub closing: Arc<AtomicBool>,
    /// Where drops and writes are counted.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// How long one write may make no progress.
    pub stall: Duration,
    /// Stream management: what is sent is recorded here before it is
    /// written, so a resumption can send it again.
    pub sm: Sm,
}

/// One transport's side of a stream.
// The futures are awaited only where the transport's type is concrete, so
// their `Send`-ness is known there.
#[allow(async_fn_in_trait)]
pub(crate) trait Transport: Send + 'static {
    /// Whether the stream can be upgraded with STARTTLS (TCP only: RFC
    /// 7395 has none).
    const STARTTLS: bool;
    /// The framer the input goes through.
    fn framer(&mut self) -> &mut Framer;
    /// A new stream after SASL success: the framer starts over, with these
    /// limits.
    fn restart(&mut self, limits: stanza::Limits);
    /// The next complete event already received, if any; a stream error
    /// for input this transport cannot accept.
    fn next_event(&mut self) -> Result<Option<Event>, StreamErrorCondition>;
    /// A header as the negotiation sees it, with this transport's checks
    /// of its name and namespaces.
    fn opening<'a>(&self, h: &'a StreamHeader) -> negotiate::Opening<'a>;
    /// Waits for more input; `Ok(false)` when the peer is gone. Must be
    /// cancel-safe: it races shutdown and timeouts.
    async fn fill(&mut self) -> std::io::Result<bool>;
    /// Our side's opening (a stream header, or `<open/>`).
    fn open(&self, from: &str, id: &str) -> Bytes;
    /// Our side's closing.
    fn close(&self) -> Bytes;
    /// A stream error as this transport sends it.
    fn stream_error(&self, cond: StreamErrorCondition, text: Option<&str>) -> Bytes;
    /// Writes directly (before the bind).
    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    /// Writes several elements directly (before the bind), in order. A
    /// byte stream sends them with one write: a stream header and its
    /// features are one system call, not two, on every login (#11).
    async fn write_all_of(&mut self, parts: &[Bytes]) -> std::io::Result<()> {
        for p in parts {
            self.write(p).await?;
        }
        Ok(())
    }
    /// Closes the write side (before the bind).
    async fn shutdown(&mut self);
    /// Hands the write side to a writer task draining the session's
    /// queue; `None` when it is gone.
    fn spawn_writer(&mut self, params: WriterParams) -> Option<JoinHandle<()>>;
}

/// A random stream id.
pub(crate) fn stream_id() -> String {
    let id: [u8; 16] = rand::random();
    stanza::escape::hex(&id)
}

/// Which of `domains` (normalised) `name` names.
pub(crate) fn domain_index(domains: &[String], name: &str) -> Option<usize> {
    let name = stanza::BareJid::new(name).ok()?;
    domains.iter().position(|d| d.as_str() == name.as_str())
}
