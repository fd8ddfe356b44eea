//! `naive`: serialize the whole notification per recipient.
//!
//! The baseline the others are measured against: what a server does when it
//! builds each recipient's stanza from scratch.

use std::sync::Arc;

use stanza::{BareJid, FullJid};

use super::{count_push, deliver_remote, DeliveryReport, Fanout, Publish, Stats, StatsSnapshot};
use crate::handle::OutboundHandle;
use crate::queue::Frame;
use crate::registry::{Registry, Target};

/// See the module docs.
#[derive(Debug)]
pub struct Naive {
    registry: Arc<Registry>,
    stats: Stats,
}

impl Naive {
    /// Over `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        Self {
            registry,
            stats: Stats::default(),
        }
    }
}

impl Fanout for Naive {
    fn name(&self) -> &'static str {
        "naive"
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
        report.recipients = self.registry.visit(&account, node, None, |t| match t {
            Target::Session(s) => {
                let bytes =
                    stanza::event_message(publisher.as_str(), s.jid().as_str(), p.id, &p.event);
                count_push(s.queue().push(Frame::Bytes(bytes)), &mut report);
            }
            remote => deliver_remote(&self.registry, remote, publisher, p, &mut report),
        });
        self.stats.record(&report);
        report
    }
    fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }
}
