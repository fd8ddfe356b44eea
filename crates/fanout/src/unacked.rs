//! Stream management (XEP-0198) counts for one session, without I/O: what
//! was handled, what was sent and not yet acknowledged, and what a
//! resumption must send again.
//!
//! The unacknowledged stanzas are kept as the frames that were written
//! (a shared notification stays shared), bounded in bytes like the
//! outbound queue: a client that never acknowledges cannot make the
//! server keep its stanzas without limit. Past the bound the session is
//! no longer resumable; its client fetches what it missed from history.

use std::collections::VecDeque;

use crate::queue::Frame;

/// The client acknowledged more than was sent (XEP-0198 §5: a stream
/// error, `undefined-condition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("acknowledged {acked} stanzas of {sent} sent")]
pub struct TooHigh {
    /// What the client's `h` claims, past what was acknowledged before.
    pub acked: u32,
    /// What was sent and not yet acknowledged.
    pub sent: u32,
}

/// One session's counts and unacknowledged stanzas.
#[derive(Debug)]
pub struct Tracker {
    /// Client stanzas handled, modulo 2^32 (the `h` we report).
    handled: u32,
    /// Our stanzas the client acknowledged, modulo 2^32.
    acked: u32,
    /// Sent after `acked`, oldest first, with each one's length for `to`.
    unacked: VecDeque<(Frame, usize)>,
    bytes: usize,
    max_bytes: usize,
    /// Set once the bound was passed: resumption is off for good.
    overflowed: bool,
}

impl Tracker {
    /// Counting from zero both ways (XEP-0198 §4), keeping at most
    /// `max_bytes` of unacknowledged stanzas.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            handled: 0,
            acked: 0,
            unacked: VecDeque::new(),
            bytes: 0,
            max_bytes,
            overflowed: false,
        }
    }

    /// A stanza from the client was handled.
    pub fn handled_one(&mut self) {
        self.handled = self.handled.wrapping_add(1);
    }

    /// The `h` to report.
    pub fn handled(&self) -> u32 {
        self.handled
    }

    /// Whether the session can still be resumed.
    pub fn resumable(&self) -> bool {
        !self.overflowed
    }

    /// A stanza was written (`len`: its bytes as sent). Past the byte
    /// bound nothing more is kept and the session stops being resumable.
    pub fn sent(&mut self, frame: Frame, len: usize) {
        if self.overflowed {
            return;
        }
        if self.bytes.saturating_add(len) > self.max_bytes {
            self.overflowed = true;
            self.unacked.clear();
            self.bytes = 0;
            return;
        }
        self.bytes += len;
        self.unacked.push_back((frame, len));
    }

    /// Stanzas sent and not acknowledged, counting those no longer kept.
    fn outstanding(&self) -> u32 {
        self.unacked.len() as u32
    }

    /// The client's `<a h/>`: releases what it acknowledged.
    pub fn ack(&mut self, h: u32) -> Result<(), TooHigh> {
        let n = h.wrapping_sub(self.acked);
        if self.overflowed {
            // Nothing is kept to release; the count still moves.
            self.acked = h;
            return Ok(());
        }
        if n > self.outstanding() {
            return Err(TooHigh {
                acked: n,
                sent: self.outstanding(),
            });
        }
        for _ in 0..n {
            if let Some((_, len)) = self.unacked.pop_front() {
                self.bytes -= len;
            }
        }
        self.acked = h;
        Ok(())
    }

    /// A resumption with the client's `h`: acknowledges up to it and
    /// returns what must be sent again, oldest first. `None` when the
    /// session is not resumable.
    pub fn resume(&mut self, h: u32) -> Option<Result<Vec<Frame>, TooHigh>> {
        if self.overflowed {
            return None;
        }
        Some(self.ack(h).map(|()| {
            self.bytes = 0;
            self.unacked.drain(..).map(|(f, _)| f).collect()
        }))
    }

    /// What was never acknowledged, when the session finally ends (for
    /// RFC 6121 §8.5 handling of messages, and errors for iqs).
    pub fn take_unacked(&mut self) -> Vec<Frame> {
        self.bytes = 0;
        self.unacked.drain(..).map(|(f, _)| f).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn frame(s: &'static str) -> (Frame, usize) {
        (Frame::Bytes(Bytes::from_static(s.as_bytes())), s.len())
    }

    fn text(frames: &[Frame]) -> Vec<String> {
        frames
            .iter()
            .map(|f| match f {
                Frame::Bytes(b) => String::from_utf8(b.to_vec()).unwrap(),
                Frame::Notification(_) => "notification".into(),
            })
            .collect()
    }

    #[test]
    fn acks_release_and_resume_sends_the_rest_again() {
        let mut t = Tracker::new(1 << 20);
        for s in ["<m1/>", "<m2/>", "<m3/>"] {
            let (f, l) = frame(s);
            t.sent(f, l);
        }
        t.handled_one();
        t.handled_one();
        assert_eq!(t.handled(), 2);
        t.ack(1).unwrap();
        // A repeated ack changes nothing.
        t.ack(1).unwrap();
        let again = t.resume(2).unwrap().unwrap();
        assert_eq!(text(&again), ["<m3/>"]);
        assert!(t.take_unacked().is_empty());
    }

    #[test]
    fn an_ack_past_what_was_sent_is_refused() {
        let mut t = Tracker::new(1 << 20);
        let (f, l) = frame("<m/>");
        t.sent(f, l);
        assert_eq!(t.ack(2), Err(TooHigh { acked: 2, sent: 1 }));
        assert!(t.ack(1).is_ok());
        assert!(t.resume(5).unwrap().is_err());
    }

    #[test]
    fn counts_wrap_at_two_to_the_32() {
        let mut t = Tracker::new(1 << 20);
        t.acked = u32::MAX - 1;
        t.handled = u32::MAX;
        t.handled_one();
        assert_eq!(t.handled(), 0);
        for s in ["<a/>", "<b/>", "<c/>"] {
            let (f, l) = frame(s);
            t.sent(f, l);
        }
        // MAX-1 + 2 wraps to 0.
        t.ack(0).unwrap();
        assert_eq!(text(&t.take_unacked()), ["<c/>"]);
    }

    #[test]
    fn past_the_byte_bound_the_session_is_not_resumable() {
        let mut t = Tracker::new(10);
        let (f, l) = frame("<12345/>");
        t.sent(f, l);
        assert!(t.resumable());
        let (f, l) = frame("<67890/>");
        t.sent(f, l);
        assert!(!t.resumable());
        assert!(t.resume(0).is_none());
        // Acks still count, with nothing kept.
        assert!(t.ack(2).is_ok());
        assert!(t.take_unacked().is_empty());
    }
}
