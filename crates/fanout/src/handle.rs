//! What a session's writer holds: its queue, plus (for `broadcast`) the
//! channel receivers it drains alongside.

use std::sync::Arc;

use crate::queue::{Frame, OutboundQueue, QueueState};
use crate::registry::SessionEntry;
use crate::strategy::broadcast::Subscriptions;

/// The writer's side of a session. Dropping it does not detach the
/// session: call [`crate::Fanout::detach`].
#[derive(Debug, Clone)]
pub struct OutboundHandle {
    session: Arc<SessionEntry>,
    subs: Option<Arc<Subscriptions>>,
}

impl OutboundHandle {
    pub(crate) fn new(session: Arc<SessionEntry>, subs: Option<Arc<Subscriptions>>) -> Self {
        Self { session, subs }
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
    /// waiting on broadcast channels. Returns how many.
    pub fn drain(&self, out: &mut Vec<Frame>, max: usize) -> usize {
        let mut n = self.session.queue().drain_into(out, max);
        if let Some(subs) = &self.subs {
            n += subs.drain(self.session.id(), out, max.saturating_sub(n));
        }
        n
    }

    /// Whether the writer should go on, disconnect for overflow, or stop.
    pub fn state(&self) -> QueueState {
        self.session.queue().state()
    }

    /// True once after this session missed broadcast items (it lagged): the
    /// server should resend the latest items from history.
    pub fn take_resync(&self) -> bool {
        self.subs.as_ref().is_some_and(|s| s.take_resync())
    }
}
