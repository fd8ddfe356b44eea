//! `shared`: serialize once, push a shared handle per recipient.
//!
//! The notification is built once ([`stanza::Notification`]); each
//! recipient's queue gets an `Arc` to it, and the writer completes it with
//! the session's own `to` in a vectored write. Per recipient the cost is one
//! reference-count increment and one queue push.

use std::sync::Arc;

use stanza::{BareJid, FullJid, Notification};

use super::{count_push, deliver_remote, DeliveryReport, Fanout, Publish, Stats, StatsSnapshot};
use crate::handle::OutboundHandle;
use crate::queue::Frame;
use crate::registry::{Registry, Target};

/// See the module docs.
#[derive(Debug)]
pub struct Shared {
    registry: Arc<Registry>,
    stats: Stats,
}

impl Shared {
    /// Over `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        Self {
            registry,
            stats: Stats::default(),
        }
    }
}

impl Fanout for Shared {
    fn name(&self) -> &'static str {
        "shared"
    }
    fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }
    fn attach(&self, jid: FullJid, queue_capacity: usize) -> OutboundHandle {
        OutboundHandle::new(self.registry.attach(jid, queue_capacity), None)
    }
    fn detach(&self, jid: &FullJid) {
        if let Some(s) = self.registry.detach(jid) {
            s.queue().close();
        }
    }
    fn publish(&self, publisher: &BareJid, p: &Publish<'_>) -> DeliveryReport {
        let mut report = DeliveryReport::default();
        let Some(account) = self.registry.find_account(publisher) else {
            return report;
        };
        let node = self.registry.node_id(p.event.node);
        let notification = Arc::new(Notification::new(publisher.as_str(), p.id, &p.event));
        report.recipients = self.registry.visit(&account, node, None, |t| match t {
            Target::Session(s) => count_push(
                s.queue().push(Frame::Notification(notification.clone())),
                &mut report,
            ),
            remote => deliver_remote(&self.registry, remote, publisher, p, &mut report),
        });
        self.stats.record(&report);
        report
    }
    fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }
}
