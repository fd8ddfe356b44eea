//! The bounded per-session outbound queue.
//!
//! Producers (the fan-out strategies, the router) push [`Frame`]s from any
//! thread; the session's writer task waits on [`OutboundQueue::notified`],
//! drains everything queued, and writes it with one vectored write.
//!
//! # Slow consumers
//! The queue holds at most `capacity` frames and, when a byte limit is set
//! ([`OutboundQueue::set_max_bytes`]), at most that many bytes (a frame
//! larger than the limit still goes into an empty queue, so one big stanza
//! is never refused alone). A push into a full queue
//! fails with [`PushError::Full`] and *overflows* the queue: every later
//! push fails with [`PushError::Closed`], and the writer is woken so it can
//! end the stream with `<policy-violation/>`. Nothing is dropped silently:
//! each failed push is counted by its caller, and the posts the session
//! missed stay in history, where the client fetches them after it
//! reconnects. Disconnecting beats an unbounded buffer (memory) and beats
//! dropping quietly (a client that never learns it missed posts).
//!
//! Why a `Mutex<Vec>` and not a lock-free queue: a delivery's cost is
//! dominated by cache misses, not by the lock. Keeping the frames, the
//! state, the wake flag and the writer's waker behind one uncontended
//! `parking_lot` mutex puts them on one cache line, which the producer
//! touches once per push. (A `SegQueue` pads head and tail to separate
//! 128-byte lines and allocates a block every 31 pushes; an `ArrayQueue`
//! allocates all `capacity` slots up front for every session.) The writer
//! swaps its emptied batch vector in at each drain, so steady-state pushes do not
//! allocate. Measured in `results/BENCHMARKS.md`.

use std::io::IoSlice;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use stanza::Notification;
use std::task::{Context, Poll, Waker};

/// One queued unit of output.
#[derive(Debug, Clone)]
pub enum Frame {
    /// A complete stanza (or any bytes) for this session.
    Bytes(Bytes),
    /// A shared notification; the writer inserts the session's own `to`.
    Notification(Arc<Notification>),
}

impl Frame {
    /// Appends the slices to write for a session whose escaped full JID is
    /// `to`. At most three slices per frame.
    #[inline]
    pub fn io_slices<'a>(&'a self, to: &'a [u8], out: &mut Vec<IoSlice<'a>>) {
        match self {
            Frame::Bytes(b) => out.push(IoSlice::new(b)),
            Frame::Notification(n) => {
                for p in n.parts(to) {
                    out.push(IoSlice::new(p));
                }
            }
        }
    }

    /// Bytes this frame writes for a session whose escaped JID is `to`.
    #[inline]
    pub fn len_for(&self, to: &[u8]) -> usize {
        match self {
            Frame::Bytes(b) => b.len(),
            Frame::Notification(n) => n.len_for(to),
        }
    }

    /// The frame as contiguous bytes for that session (tests, fallbacks).
    pub fn to_bytes(&self, to: &[u8]) -> Bytes {
        match self {
            Frame::Bytes(b) => b.clone(),
            Frame::Notification(n) => n.to_bytes_for(to),
        }
    }
}

/// Why a push failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The queue was full; it is now overflowed and the session will be
    /// disconnected.
    #[error("outbound queue full")]
    Full,
    /// The queue already overflowed or the session detached.
    #[error("outbound queue closed")]
    Closed,
}

/// What the writer should do after draining.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueState {
    /// Keep serving.
    Open,
    /// A push found the queue full: end the stream with `policy-violation`.
    Overflowed,
    /// The session was detached.
    Closed,
}

#[derive(Debug)]
#[repr(C)]
struct Inner {
    frames: Vec<Frame>,
    /// The oldest frame when it is a shared notification. A writer that
    /// keeps up holds at most one frame at a time, so this slot takes most
    /// deliveries without touching `frames`' heap buffer: one cache line
    /// less per delivery.
    first: Option<Arc<Notification>>,
    capacity: u32,
    /// Bytes the queued frames will write; `u32` keeps the push path in one
    /// cache line (a queue holds far less than 4 GiB).
    bytes: u32,
    /// Most bytes queued at once (`u32::MAX`: frames only).
    max_bytes: u32,
    state: QueueState,
    /// Set by the first push after a drain; cleared by the writer. Lets a
    /// burst of pushes wake the writer once instead of per frame.
    notified: bool,
    /// A full queue refuses the frame and stays open
    /// ([`OutboundQueue::set_shedding`]).
    sheds: bool,
    /// Whether the writer left a waker in [`OutboundQueue::waker`]. Checked
    /// under this lock, so a push to a session whose writer is busy (or a
    /// bench without writers) never touches the waker's cache line.
    has_waker: bool,
}

impl Inner {
    fn len(&self) -> usize {
        self.frames.len() + usize::from(self.first.is_some())
    }
}

/// A bounded multi-producer, single-consumer queue of frames.
///
/// Everything a push touches is in `inner`, laid out so that with the
/// session's state word it fits one cache line (see `SessionEntry`); only
/// the writer's waker spills past it.
#[derive(Debug)]
#[repr(C)]
pub struct OutboundQueue {
    inner: Mutex<Inner>,
    /// The writer's waker, taken by the first push after a drain. Locked
    /// only while holding `inner` (always in that order).
    waker: Mutex<Option<Waker>>,
    /// The session's full JID escaped for an attribute, computed once.
    to: Bytes,
}

impl OutboundQueue {
    /// A queue for the session `to_jid`, holding at most `capacity` frames.
    pub fn new(to_jid: &str, capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                frames: Vec::new(),
                first: None,
                has_waker: false,
                capacity: capacity.clamp(1, u32::MAX as usize) as u32,
                bytes: 0,
                max_bytes: u32::MAX,
                state: QueueState::Open,
                notified: false,
                sheds: false,
            }),
            waker: Mutex::new(None),
            to: stanza::escape_jid(to_jid),
        }
    }

    /// The session's escaped full JID (the `to` of shared notifications).
    pub fn to_escaped(&self) -> &[u8] {
        &self.to
    }

    /// The configured capacity.
    pub fn capacity(&self) -> usize {
        self.inner.lock().capacity as usize
    }

    /// Bounds the bytes queued at once: a slow reader is disconnected at
    /// this many bytes as at `capacity` frames.
    pub fn set_max_bytes(&self, max: usize) {
        self.inner.lock().max_bytes = max.clamp(1, u32::MAX as usize) as u32;
    }

    /// Bytes queued now.
    pub fn bytes(&self) -> usize {
        self.inner.lock().bytes as usize
    }

    /// Frames queued now.
    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues `frame` and wakes the writer.
    #[inline]
    pub fn push(&self, frame: Frame) -> Result<(), PushError> {
        if let Some(w) = self.push_quiet(frame)? {
            w.wake();
        }
        Ok(())
    }

    /// Queues `frame` without waking the writer. `Ok(Some(waker))` hands
    /// the caller the duty to wake the writer after its batch. A push that
    /// overflows the queue wakes the writer itself (it must see the
    /// overflow).
    #[inline]
    pub fn push_quiet(&self, frame: Frame) -> Result<Option<Waker>, PushError> {
        let mut inner = self.inner.lock();
        if inner.state != QueueState::Open {
            return Err(PushError::Closed);
        }
        let size = frame.len_for(&self.to).min(u32::MAX as usize) as u32;
        let over_bytes = inner.len() > 0 && inner.bytes.saturating_add(size) > inner.max_bytes;
        if inner.len() >= inner.capacity as usize || over_bytes {
            if inner.sheds {
                return Err(PushError::Full);
            }
            inner.state = QueueState::Overflowed;
            inner.notified = true;
            let w = self.take_waker(&mut inner);
            drop(inner);
            if let Some(w) = w {
                w.wake();
            }
            return Err(PushError::Full);
        }
        inner.bytes = inner.bytes.saturating_add(size);
        match frame {
            Frame::Notification(n) if inner.first.is_none() && inner.frames.is_empty() => {
                inner.first = Some(n);
            }
            frame => inner.frames.push(frame),
        }
        if inner.notified {
            return Ok(None);
        }
        inner.notified = true;
        Ok(self.take_waker(&mut inner))
    }

    /// Takes the duty to wake the writer without pushing (a strategy that
    /// delivers by another path). Wake the returned waker after the batch.
    #[inline]
    pub fn claim_wake(&self) -> Option<Waker> {
        let mut inner = self.inner.lock();
        if std::mem::replace(&mut inner.notified, true) {
            None
        } else {
            self.take_waker(&mut inner)
        }
    }

    /// Ready once something was pushed (or the state changed) since the
    /// last drain. For the writer task only.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.inner.lock();
        if inner.notified || inner.state != QueueState::Open {
            return Poll::Ready(());
        }
        let mut slot = self.waker.lock();
        match &*slot {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *slot = Some(cx.waker().clone()),
        }
        inner.has_waker = true;
        Poll::Pending
    }

    fn take_waker(&self, inner: &mut Inner) -> Option<Waker> {
        if !inner.has_waker {
            return None;
        }
        inner.has_waker = false;
        self.waker.lock().take()
    }

    /// Waits until [`Self::poll_ready`] is ready.
    pub async fn notified(&self) {
        std::future::poll_fn(|cx| self.poll_ready(cx)).await
    }

    /// Pops up to `max` frames into `out`, oldest first; returns how many.
    /// Clears the pending wake, so the next push wakes the writer again.
    pub fn drain_into(&self, out: &mut Vec<Frame>, max: usize) -> usize {
        let mut inner = self.inner.lock();
        inner.notified = false;
        let mut n = 0;
        if max == 0 {
            return 0;
        }
        if let Some(first) = inner.first.take() {
            out.push(Frame::Notification(first));
            n = 1;
        }
        let rest = inner.frames.len().min(max - n);
        if rest == inner.frames.len() {
            // Everything leaves: nothing to count.
            inner.bytes = 0;
        } else {
            let to = &self.to;
            let gone: usize = inner.frames[..rest]
                .iter()
                .map(|f| f.len_for(to))
                .sum::<usize>()
                + out.last().filter(|_| n == 1).map_or(0, |f| f.len_for(to));
            inner.bytes = inner
                .bytes
                .saturating_sub(gone.min(u32::MAX as usize) as u32);
        }
        if rest == inner.frames.len() && out.is_empty() {
            // Swap buffers: no copy, and the writer's empty vector (with its
            // capacity) becomes the queue's next buffer.
            std::mem::swap(&mut inner.frames, out);
        } else {
            out.extend(inner.frames.drain(..rest));
        }
        n + rest
    }

    /// Frees the frame buffer if nothing is queued: a writer that goes
    /// idle calls this, so an idle session keeps no room for its last
    /// batch (#11).
    pub fn release_if_empty(&self) {
        let mut inner = self.inner.lock();
        if inner.frames.is_empty() && inner.frames.capacity() > 0 {
            inner.frames = Vec::new();
        }
    }

    /// Whether the writer should go on, disconnect for overflow, or stop.
    pub fn state(&self) -> QueueState {
        self.inner.lock().state
    }

    /// Makes a full queue refuse the frame that does not fit and stay open,
    /// instead of overflowing. A session is disconnected on overflow (its
    /// client fell behind); a queue that outlives its consumer's lapses,
    /// such as a server-to-server link's, sheds what did not fit and
    /// goes on.
    pub fn set_shedding(&self) {
        self.inner.lock().sheds = true;
    }

    /// Refuses further pushes and wakes the writer.
    pub fn close(&self) {
        let w = {
            let mut inner = self.inner.lock();
            inner.state = QueueState::Closed;
            inner.notified = true;
            self.take_waker(&mut inner)
        };
        if let Some(w) = w {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shedding_queue_refuses_what_does_not_fit_and_stays_open() {
        let q = OutboundQueue::new("b.example", 1);
        q.set_shedding();
        q.push(Frame::Bytes(Bytes::from_static(b"<a/>"))).unwrap();
        for _ in 0..3 {
            let r = q.push(Frame::Bytes(Bytes::from_static(b"<b/>")));
            assert_eq!(r, Err(PushError::Full));
        }
        assert_eq!(q.state(), QueueState::Open);
        let mut out = Vec::new();
        assert_eq!(q.drain_into(&mut out, 10), 1);
        q.push(Frame::Bytes(Bytes::from_static(b"<c/>"))).unwrap();
        q.close();
        assert_eq!(q.state(), QueueState::Closed);
    }

    #[test]
    fn bounded_in_bytes_too() {
        let q = OutboundQueue::new("a@b/c", 100);
        q.set_max_bytes(10);
        let b = |n: usize| Frame::Bytes(Bytes::from(vec![b'x'; n]));
        // One frame over the limit still goes into an empty queue.
        q.push(b(25)).unwrap();
        assert_eq!(q.bytes(), 25);
        let mut out = Vec::new();
        assert_eq!(q.drain_into(&mut out, usize::MAX), 1);
        assert_eq!(q.bytes(), 0);
        q.push(b(4)).unwrap();
        q.push(b(6)).unwrap();
        assert_eq!(q.bytes(), 10);
        // A partial drain gives back what left.
        out.clear();
        assert_eq!(q.drain_into(&mut out, 1), 1);
        assert_eq!(q.bytes(), 6);
        q.push(b(4)).unwrap();
        assert_eq!(q.push(b(1)), Err(PushError::Full), "11 bytes > 10");
        assert_eq!(q.state(), QueueState::Overflowed);
        assert_eq!(q.push(b(1)), Err(PushError::Closed));
    }

    /// The writer's drain swaps its used buffer into the queue; going
    /// idle releases it, and a non-empty queue keeps what it holds.
    #[test]
    fn an_idle_queue_releases_its_buffer() {
        let q = OutboundQueue::new("a@b/c", 100);
        let b = || Frame::Bytes(Bytes::from_static(b"x"));
        for _ in 0..8 {
            q.push(b()).unwrap();
        }
        let mut out = Vec::new();
        assert_eq!(q.drain_into(&mut out, usize::MAX), 8);
        out.clear();
        assert_eq!(q.drain_into(&mut out, usize::MAX), 0);
        assert!(
            q.inner.lock().frames.capacity() >= 8,
            "the used buffer came back"
        );
        q.release_if_empty();
        assert_eq!(q.inner.lock().frames.capacity(), 0);
        q.push(b()).unwrap();
        q.push(b()).unwrap();
        q.release_if_empty();
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn bounded_and_overflow_is_sticky() {
        let q = OutboundQueue::new("a@b/c", 2);
        q.push(Frame::Bytes(Bytes::from_static(b"1"))).unwrap();
        q.push(Frame::Bytes(Bytes::from_static(b"2"))).unwrap();
        assert_eq!(
            q.push(Frame::Bytes(Bytes::from_static(b"3"))),
            Err(PushError::Full)
        );
        assert_eq!(q.state(), QueueState::Overflowed);
        let mut out = Vec::new();
        assert_eq!(q.drain_into(&mut out, 10), 2);
        // Draining does not reopen an overflowed queue: the session must go.
        assert_eq!(
            q.push(Frame::Bytes(Bytes::from_static(b"4"))),
            Err(PushError::Closed)
        );
    }

    #[test]
    fn push_path_fits_in_56_bytes() {
        // With the session's 8-byte state word, everything a push touches
        // stays in one 64-byte line whatever order lock_api gives the lock
        // byte and the data.
        assert!(std::mem::size_of::<Mutex<Inner>>() <= 56);
        assert_eq!(std::mem::offset_of!(OutboundQueue, inner), 0);
    }

    #[test]
    fn order_is_kept_across_the_inline_slot() {
        let q = OutboundQueue::new("a@b/c", 10);
        let ev = stanza::PubsubEvent {
            node: "n",
            kind: stanza::EventKind::Purge,
            delay: None,
        };
        let n = |id: &str| Frame::Notification(Arc::new(Notification::new("p@x", id, &ev)));
        q.push(n("1")).unwrap();
        q.push(Frame::Bytes(Bytes::from_static(b"2"))).unwrap();
        q.push(n("3")).unwrap();
        assert_eq!(q.len(), 3);
        let text = |f: &Frame| String::from_utf8(f.to_bytes(b"t").to_vec()).unwrap();
        let mut out = Vec::new();
        assert_eq!(q.drain_into(&mut out, 2), 2);
        assert!(text(&out[0]).contains("id='1'"));
        assert_eq!(text(&out[1]), "2");
        // The slot is free again while frame 3 waits in the buffer: a new
        // notification must queue behind it, not jump ahead.
        q.push(n("4")).unwrap();
        out.clear();
        assert_eq!(q.drain_into(&mut out, 10), 2);
        assert!(text(&out[0]).contains("id='3'"));
        assert!(text(&out[1]).contains("id='4'"));
        assert!(q.is_empty());
    }

    #[test]
    fn frames_write_the_session_jid() {
        let q = OutboundQueue::new("joe@x/it's", 4);
        assert_eq!(q.to_escaped(), b"joe@x/it&apos;s");
        let ev = stanza::PubsubEvent {
            node: "n",
            kind: stanza::EventKind::Purge,
            delay: None,
        };
        let f = Frame::Notification(Arc::new(Notification::new("jane@x", "1", &ev)));
        let mut slices = Vec::new();
        f.io_slices(q.to_escaped(), &mut slices);
        let joined: Vec<u8> = slices.iter().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(joined.len(), f.len_for(q.to_escaped()));
        assert_eq!(&joined[..], &f.to_bytes(q.to_escaped())[..]);
        assert!(std::str::from_utf8(&joined)
            .unwrap()
            .contains("to='joe@x/it&apos;s'"));
    }

    #[tokio::test]
    async fn writer_is_woken_once_per_burst() {
        let q = Arc::new(OutboundQueue::new("a@b/c", 100));
        let q2 = q.clone();
        let writer = tokio::spawn(async move {
            let mut got = Vec::new();
            while got.len() < 50 {
                q2.notified().await;
                q2.drain_into(&mut got, usize::MAX);
            }
            got.len()
        });
        for i in 0..50u8 {
            q.push(Frame::Bytes(Bytes::copy_from_slice(&[i]))).unwrap();
            tokio::task::yield_now().await;
        }
        assert_eq!(writer.await.unwrap(), 50);
    }

    #[test]
    fn concurrent_producers_respect_capacity() {
        let q = Arc::new(OutboundQueue::new("a@b/c", 1000));
        let ok = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..500 {
                        if q.push_quiet(Frame::Bytes(Bytes::new())).is_ok() {
                            ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(ok.load(std::sync::atomic::Ordering::Relaxed), 1000);
        assert_eq!(q.len(), 1000);
    }
}
