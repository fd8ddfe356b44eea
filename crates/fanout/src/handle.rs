//! What a session's writer holds: its queue, plus whatever a strategy
//! delivers to the session outside that queue (the channel receivers of
//! `broadcast`).

use std::sync::Arc;

use crate::queue::{Frame, OutboundQueue, QueueState};
use crate::registry::{SessionEntry, SessionId};

/// Frames a strategy holds for a session outside its queue.
pub(crate) trait SideChannel: std::fmt::Debug + Send + Sync {
    /// Moves up to `max` frames for session `me` into `out`; how many.
    fn drain(&self, me: SessionId, out: &mut Vec<Frame>, max: usize) -> usize;
    /// True once after frames for this session were lost.
    fn take_lost(&self) -> bool;
}

/// The writer's side of a session. Dropping it does not detach the
/// session: call [`crate::Fanout::detach`].
#[derive(Debug, Clone)]
pub struct OutboundHandle {
    session: Arc<SessionEntry>,
    side: Option<Arc<dyn SideChannel>>,
}

impl OutboundHandle {
    pub(crate) fn new(session: Arc<SessionEntry>, side: Option<Arc<dyn SideChannel>>) -> Self {
        Self { session, side }
    }

    /// The registry entry (id, JID, presence).
    pub fn session(&self) -> &Arc<SessionEntry> {
        &self.session
    }

    /// The queue, for pushing stanzas routed to this session.
    pub fn queue(&self) -> &OutboundQueue {
        self.session.queue()
    }

    /// The session's escaped full JID, to pass to [`Frame::io_slices`].
    pub fn to_escaped(&self) -> &[u8] {
        self.session.queue().to_escaped()
    }

    /// Waits until there may be something to drain.
    pub async fn notified(&self) {
        self.session.queue().notified().await
    }

    /// Moves up to `max` frames into `out`: the queue first, then anything
    /// the strategy holds outside it. Returns how many.
    pub fn drain(&self, out: &mut Vec<Frame>, max: usize) -> usize {
        let mut n = self.session.queue().drain_into(out, max);
        if let Some(side) = &self.side {
            n += side.drain(self.session.id(), out, max.saturating_sub(n));
        }
        n
    }

    /// Whether the writer should go on, disconnect for overflow, or stop.
    pub fn state(&self) -> QueueState {
        self.session.queue().state()
    }

    /// True once after this session lost frames held outside its queue (a
    /// `broadcast` receiver lagged). The server treats it as an overflow:
    /// the session ends, and its client fetches what it missed from
    /// history, as after any other overflow.
    pub fn take_lost(&self) -> bool {
        self.side.as_ref().is_some_and(|s| s.take_lost())
    }
}
