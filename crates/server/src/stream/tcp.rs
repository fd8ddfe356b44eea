//! The TCP transport (RFC 6120): one XML document per direction, framed
//! from the byte stream; `<stream:stream>` headers; STARTTLS by handing
//! the socket over to TLS.

use bytes::Bytes;
use stanza::{ns, ser, Event, Framer, StreamErrorCondition, StreamHeader};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::task::JoinHandle;

use super::negotiate::Opening;
use super::{Transport, WriterParams};

/// What a TCP stream runs on: plain TCP, or TLS over it.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A byte stream, framed.
pub(crate) struct Tcp<S: Io> {
    rd: ReadHalf<S>,
    wr: Option<WriteHalf<S>>,
    framer: Framer,
}

impl<S: Io> Tcp<S> {
    /// Frames `stream` with `limits`.
    pub(crate) fn new(stream: S, limits: stanza::Limits) -> Self {
        let (rd, wr) = tokio::io::split(stream);
        Self {
            rd,
            wr: Some(wr),
            framer: Framer::new(limits),
        }
    }

    /// The socket back, for the TLS hand-off; `None` once a writer took
    /// the write side.
    pub(crate) fn into_inner(self) -> Option<S> {
        let wr = self.wr?;
        Some(self.rd.unsplit(wr))
    }
}

/// The header's name and namespaces (RFC 6120 §4.8), for
/// [`Opening::framing`].
pub(crate) fn check_header(h: &StreamHeader) -> Result<(), StreamErrorCondition> {
    let (prefix, local) = h.name.split_once(':').unwrap_or(("", h.name.as_str()));
    if local != "stream" || h.namespace(prefix) != Some(ns::STREAM) {
        return Err(StreamErrorCondition::InvalidNamespace);
    }
    if prefix != "stream" {
        return Err(StreamErrorCondition::BadNamespacePrefix);
    }
    if h.namespace("") != Some(ns::CLIENT) {
        return Err(StreamErrorCondition::InvalidNamespace);
    }
    Ok(())
}

impl<S: Io> Transport for Tcp<S> {
    const STARTTLS: bool = true;

    fn framer(&mut self) -> &mut Framer {
        &mut self.framer
    }

    fn restart(&mut self, limits: stanza::Limits) {
        self.framer.reset();
        self.framer.set_limits(limits);
    }

    fn next_event(&mut self) -> Result<Option<Event>, StreamErrorCondition> {
        self.framer.next().map_err(|e| {
            tracing::debug!(error = %e, "framing error");
            e.condition()
        })
    }

    fn opening<'a>(&self, h: &'a StreamHeader) -> Opening<'a> {
        Opening {
            to: h.attr("to"),
            version: h.attr("version"),
            framing: check_header(h),
        }
    }

    async fn fill(&mut self) -> std::io::Result<bool> {
        let buf = self.framer.buffer_mut();
        buf.reserve(4096);
        Ok(self.rd.read_buf(buf).await? > 0)
    }

    fn open(&self, from: &str, id: &str) -> Bytes {
        ser::stream_header(ns::CLIENT, from, None, id)
    }

    fn close(&self) -> Bytes {
        ser::stream_close()
    }

    fn stream_error(&self, cond: StreamErrorCondition, text: Option<&str>) -> Bytes {
        ser::stream_error(cond, text)
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self.wr.as_mut() {
            Some(wr) => wr.write_all(bytes).await,
            None => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    async fn shutdown(&mut self) {
        if let Some(mut wr) = self.wr.take() {
            let _ = wr.shutdown().await;
        }
    }

    fn spawn_writer(&mut self, p: WriterParams) -> Option<JoinHandle<()>> {
        let wr = self.wr.take()?;
        Some(tokio::spawn(super::writer::write_loop(
            super::writer::Bytes(wr),
            p,
        )))
    }
}
