//! The coalescing writer: a bound session's outbound queue drained into
//! its transport, one vectored write per batch of up to [`WRITE_BATCH`]
//! frames. Shared notifications are written from their one serialized copy
//! with the session's own `to` spliced in (no per-follower copy).

use std::io::IoSlice;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fanout::{Frame, OutboundHandle, QueueState};
use stanza::ser;
use stanza::StreamErrorCondition;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tracing::debug;

/// Most frames one vectored write takes.
pub(crate) const WRITE_BATCH: usize = 256;
/// How often a writer blocked on a peer that does not read looks at its
/// queue's state.
const STATE_CHECK: Duration = Duration::from_secs(1);

/// Drains a session's queue into the socket, one vectored write per batch,
/// until the session ends; then writes what is left and closes.
// An async block, not an async fn: an async fn's future keeps its
// arguments and the variables they move into apart, both twice.
#[allow(clippy::manual_async_fn)]
pub(crate) fn write_loop<W: Sink>(
    mut wr: W,
    p: super::WriterParams,
) -> impl std::future::Future<Output = ()> {
    async move {
        loop {
            p.handle.notified().await;
            // Boxed: the task of an idle session's writer holds the wait
            // above and no room for a write in progress (#11: it was 500
            // bytes a session).
            match Box::pin(write_ready(&mut wr, &p)).await {
                Next::Wait => {}
                Next::Close => break,
                Next::Stop => return,
            }
        }
        let _ = Box::pin(tokio::time::timeout(p.stall, wr.close())).await;
    }
}

/// What the writer does after writing what was ready.
enum Next {
    /// Wait for more.
    Wait,
    /// Close our side of the stream.
    Close,
    /// Stop without closing: the connection is gone, or the session may
    /// be resumed on another.
    Stop,
}

/// Writes everything queued, in batches, then looks at the queue's state.
async fn write_ready<W: Sink>(wr: &mut W, p: &super::WriterParams) -> Next {
    let super::WriterParams {
        handle,
        closing,
        metrics,
        stall,
        sm,
    } = p;
    let stall = *stall;
    // Allocated per wake, not kept: an idle writer holds no frame buffer.
    let mut frames: Vec<Frame> = Vec::new();
    loop {
        frames.clear();
        if handle.drain(&mut frames, WRITE_BATCH) == 0 {
            break;
        }
        let resumable = record(sm, &frames, handle);
        match wr.frames(&frames, handle, stall).await {
            Ok(()) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::BrokenPipe
                    && handle.state() == QueueState::Overflowed =>
            {
                // Overflowed during a write the peer is not reading.
                debug!(jid = %handle.session().jid(), "outbound queue overflowed");
                metrics.dropped("overflow_disconnect");
                return Next::Stop;
            }
            // The connection is gone but the session may be resumed
            // (XEP-0198): the queue stays open, and what was drained is
            // kept as unacknowledged.
            Err(_) if resumable => return Next::Stop,
            Err(e) => {
                if e.kind() == std::io::ErrorKind::TimedOut {
                    // A peer that takes nothing for this long is gone or
                    // hostile; what it holds stays in our memory.
                    debug!(jid = %handle.session().jid(), "write stalled; closing");
                    metrics.dropped("write_stall");
                }
                // Refuse further pushes: the reader sees the writer end.
                handle.queue().close();
                return Next::Stop;
            }
        }
        metrics.stanzas_out.inc_by(frames.len() as u64);
    }
    // Going idle: the buffer the last drain swapped into the queue goes.
    handle.queue().release_if_empty();
    // Lost frames outside the queue (a lagged broadcast receiver) are an
    // overflow too: the client must learn it missed something.
    let lost = handle.take_lost();
    match handle.state() {
        QueueState::Open if !lost => Next::Wait,
        QueueState::Open | QueueState::Overflowed => {
            debug!(jid = %handle.session().jid(), lost, "outbound queue overflowed");
            metrics.dropped("overflow_disconnect");
            // Refuse further pushes (an overflowed queue does already).
            handle.queue().close();
            let _ = tokio::time::timeout(
                stall.min(STATE_CHECK),
                wr.error(
                    StreamErrorCondition::PolicyViolation,
                    Some("outbound queue full"),
                ),
            )
            .await;
            Next::Close
        }
        QueueState::Closed => {
            if !closing.load(Ordering::Acquire) {
                // Detached by someone else: a newer session bound the same
                // full JID (RFC 6120 §7.7.2.2).
                let _ = tokio::time::timeout(stall, wr.error(StreamErrorCondition::Conflict, None))
                    .await;
            }
            Next::Close
        }
    }
}

/// Records a batch with stream management before it is written: the
/// stanzas after `<enabled/>` are kept until acknowledged. Returns whether
/// the session can still be resumed.
fn record(sm: &super::Sm, frames: &[Frame], handle: &OutboundHandle) -> bool {
    let mut slot = sm.lock().unwrap_or_else(|e| e.into_inner());
    let slot = &mut *slot;
    let Some(tracker) = slot.tracker.as_mut() else {
        return false;
    };
    for f in frames {
        let stanza = match f {
            Frame::Notification(_) => true,
            Frame::Bytes(b) => {
                if !slot.counting {
                    slot.counting = b.starts_with(b"<enabled");
                    continue;
                }
                b.starts_with(b"<message") || b.starts_with(b"<presence") || b.starts_with(b"<iq")
            }
        };
        if slot.counting && stanza {
            tracker.sent(f.clone(), f.len_for(handle.to_escaped()));
        }
    }
    slot.resume && tracker.resumable()
}

/// Where a writer puts frames: a byte stream, or WebSocket messages.
// Implemented for concrete transports and awaited only in `write_loop`,
// which each transport spawns with its concrete type.
#[allow(async_fn_in_trait)]
pub(crate) trait Sink: Send + 'static {
    /// Writes a batch (one write, or one flush), failing with `TimedOut`
    /// when the peer takes nothing for `stall`, and with `BrokenPipe` when
    /// the queue stopped being open while a write waited.
    async fn frames(
        &mut self,
        frames: &[Frame],
        handle: &OutboundHandle,
        stall: Duration,
    ) -> std::io::Result<()>;
    /// Writes a stream error (the closing will follow).
    async fn error(&mut self, cond: StreamErrorCondition, text: Option<&str>);
    /// Closes our side.
    async fn close(&mut self);
}

/// A byte stream: frames go out as one vectored write per batch.
pub(crate) struct Bytes<W>(pub W);

impl<W: AsyncWrite + Unpin + Send + 'static> Sink for Bytes<W> {
    async fn frames(
        &mut self,
        frames: &[Frame],
        handle: &OutboundHandle,
        stall: Duration,
    ) -> std::io::Result<()> {
        write_frames(&mut self.0, frames, handle, stall).await
    }

    async fn error(&mut self, cond: StreamErrorCondition, text: Option<&str>) {
        let _ = self.0.write_all(&ser::stream_error(cond, text)).await;
    }

    async fn close(&mut self) {
        let _ = self.0.shutdown().await;
    }
}

pub(crate) async fn write_frames<W: AsyncWrite + Unpin>(
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
