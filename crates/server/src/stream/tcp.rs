//! The TCP transport (RFC 6120): one XML document per direction, framed
//! from the byte stream; `<stream:stream>` headers; STARTTLS by handing
//! the socket over to TLS.

use bytes::Bytes;
use stanza::{ns, ser, Event, Framer, StreamErrorCondition, StreamHeader};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
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

/// How much one read takes at most: a burst of stanzas in one system
/// call, and a whole TLS record.
const SCRATCH: usize = 32 * 1024;

thread_local! {
    /// The worker thread's read buffer. A session waiting for input holds
    /// no buffer of its own: what a read brings is copied into its framer,
    /// which keeps only the part not yet framed (#11: 4 KiB per idle
    /// session).
    static SCRATCH_BUF: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0; SCRATCH].into_boxed_slice());
}

/// One poll of a read into the thread's scratch buffer, whatever it got
/// appended to `framer`. `Ready(Ok(false))` at the end of the stream.
/// Pending reads nothing (the `AsyncRead` contract), so the buffer is
/// never held across a wait and the read is cancel-safe.
fn read_scratch<R: AsyncRead + Unpin>(
    cx: &mut Context<'_>,
    rd: &mut R,
    framer: &mut Framer,
) -> Poll<std::io::Result<bool>> {
    SCRATCH_BUF.with_borrow_mut(|scratch| {
        let mut buf = ReadBuf::new(scratch);
        match Pin::new(rd).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {
                let got = buf.filled();
                framer.feed(got);
                Poll::Ready(Ok(!got.is_empty()))
            }
        }
    })
}

/// The header's name and stream namespace (RFC 6120 §4.8), for client and
/// server streams alike.
pub(crate) fn check_stream_name(h: &StreamHeader) -> Result<(), StreamErrorCondition> {
    let (prefix, local) = h.name.split_once(':').unwrap_or(("", h.name.as_str()));
    if local != "stream" || h.namespace(prefix) != Some(ns::STREAM) {
        return Err(StreamErrorCondition::InvalidNamespace);
    }
    if prefix != "stream" {
        return Err(StreamErrorCondition::BadNamespacePrefix);
    }
    Ok(())
}

/// The header's name and namespaces (RFC 6120 §4.8), for
/// [`Opening::framing`].
pub(crate) fn check_header(h: &StreamHeader) -> Result<(), StreamErrorCondition> {
    check_stream_name(h)?;
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
        let (rd, framer) = (&mut self.rd, &mut self.framer);
        std::future::poll_fn(|cx| read_scratch(cx, rd, framer)).await
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

    async fn write_all_of(&mut self, parts: &[Bytes]) -> std::io::Result<()> {
        match parts {
            [] => Ok(()),
            [one] => self.write(one).await,
            many => self.write(&many.concat()).await,
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
