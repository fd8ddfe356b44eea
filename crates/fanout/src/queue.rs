//! The bounded per-session outbound queue.
//!
//! Producers (the fan-out strategies, the router) push [`Frame`]s from any
//! thread; the session's writer task waits on [`OutboundQueue::notified`],
//! drains everything queued, and writes it with one vectored write.
//!
//! # Slow consumers
//! The queue holds at most `capacity` frames. A push into a full queue
//! fails with [`PushError::Full`] and *overflows* the queue: every later
//! push fails with [`PushError::Closed`], and the writer is woken so it can
//! end the stream with `<policy-violation/>`. Nothing is dropped silently:
//! each failed push is counted by its caller, and the posts the session
//! missed stay in history, where the client fetches them after it
//! reconnects. Disconnecting beats an unbounded buffer (memory) and beats
//! dropping quietly (a client that never learns it missed posts).
//!
//! Why `SegQueue` and an atomic length rather than `ArrayQueue`: an
//! `ArrayQueue` allocates all `capacity` slots up front, which at 100k
//! sessions × 256 slots is gigabytes of mostly empty queues. `SegQueue`
//! allocates 31-slot blocks only while frames are queued.

use std::io::IoSlice;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_queue::SegQueue;
use stanza::Notification;
use tokio::sync::Notify;

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

const OPEN: u8 = 0;
const OVERFLOWED: u8 = 1;
const CLOSED: u8 = 2;

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

/// A bounded multi-producer, single-consumer queue of frames.
#[derive(Debug)]
pub struct OutboundQueue {
    frames: SegQueue<Frame>,
    len: AtomicUsize,
    capacity: usize,
    state: AtomicU8,
    /// Set by the first push after a drain; cleared by the writer. Lets a
    /// burst of pushes wake the writer once instead of per frame.
    notified: AtomicBool,
    notify: Notify,
    /// The session's full JID escaped for an attribute, computed once.
    to: Bytes,
}

impl OutboundQueue {
    /// A queue for the session `to_jid`, holding at most `capacity` frames.
    pub fn new(to_jid: &str, capacity: usize) -> Self {
        Self {
            frames: SegQueue::new(),
            len: AtomicUsize::new(0),
            capacity: capacity.max(1),
            state: AtomicU8::new(OPEN),
            notified: AtomicBool::new(false),
            notify: Notify::new(),
            to: stanza::escape_jid(to_jid),
        }
    }

    /// The session's escaped full JID (the `to` of shared notifications).
    pub fn to_escaped(&self) -> &[u8] {
        &self.to
    }

    /// The configured capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Frames queued now.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues `frame` and wakes the writer.
    #[inline]
    pub fn push(&self, frame: Frame) -> Result<(), PushError> {
        let r = self.push_quiet(frame);
        if !matches!(r, Err(PushError::Closed)) {
            self.wake();
        }
        r
    }

    /// Queues `frame` without waking the writer; call [`Self::wake`] after a
    /// batch. On `Err(Full)` the caller must still wake (the writer has to
    /// see the overflow).
    #[inline]
    pub fn push_quiet(&self, frame: Frame) -> Result<(), PushError> {
        if self.state.load(Ordering::Acquire) != OPEN {
            return Err(PushError::Closed);
        }
        let prev = self.len.fetch_add(1, Ordering::AcqRel);
        if prev >= self.capacity {
            self.len.fetch_sub(1, Ordering::AcqRel);
            return match self.state.compare_exchange(
                OPEN,
                OVERFLOWED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => Err(PushError::Full),
                Err(_) => Err(PushError::Closed),
            };
        }
        self.frames.push(frame);
        Ok(())
    }

    /// Wakes the writer unless a wake is already pending.
    #[inline]
    pub fn wake(&self) {
        if self.claim_wake() {
            self.notify.notify_one();
        }
    }

    /// Takes the duty to wake the writer: true when no wake was pending, in
    /// which case the caller must call [`Self::notify_claimed`] after its
    /// batch. Lets a batch of pushes (several posts) wake a writer once.
    #[inline]
    pub fn claim_wake(&self) -> bool {
        !self.notified.load(Ordering::Acquire) && !self.notified.swap(true, Ordering::AcqRel)
    }

    /// Wakes the writer after a successful [`Self::claim_wake`].
    #[inline]
    pub fn notify_claimed(&self) {
        self.notify.notify_one();
    }

    /// Waits until something was pushed (or the state changed) since the
    /// last drain. For the writer task only.
    pub async fn notified(&self) {
        loop {
            if self.notified.load(Ordering::Acquire) || self.state() != QueueState::Open {
                return;
            }
            self.notify.notified().await;
        }
    }

    /// Pops up to `max` frames into `out`; returns how many. Clears the
    /// pending wake first, so a push racing with the drain wakes again.
    pub fn drain_into(&self, out: &mut Vec<Frame>, max: usize) -> usize {
        self.notified.store(false, Ordering::Release);
        let mut n = 0;
        while n < max {
            match self.frames.pop() {
                Some(f) => {
                    out.push(f);
                    n += 1;
                }
                None => break,
            }
        }
        if n > 0 {
            self.len.fetch_sub(n, Ordering::AcqRel);
        }
        n
    }

    /// Whether the writer should go on, disconnect for overflow, or stop.
    pub fn state(&self) -> QueueState {
        match self.state.load(Ordering::Acquire) {
            OPEN => QueueState::Open,
            OVERFLOWED => QueueState::Overflowed,
            _ => QueueState::Closed,
        }
    }

    /// Refuses further pushes and wakes the writer.
    pub fn close(&self) {
        self.state.store(CLOSED, Ordering::Release);
        self.notified.store(true, Ordering::Release);
        self.notify.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let ok = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..500 {
                        if q.push_quiet(Frame::Bytes(Bytes::new())).is_ok() {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(ok.load(Ordering::Relaxed), 1000);
        assert_eq!(q.len(), 1000);
    }
}
