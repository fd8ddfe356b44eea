//! `naive`: serialize the whole notification per recipient.
//!
//! The baseline the others are measured against: what a server does when it
//! builds each recipient's stanza from scratch.

use std::sync::Arc;

use stanza::BareJid;

use super::{
    core_methods, count_push, deliver_remote, queue_sessions, Core, DeliveryReport, Fanout, Publish,
};
use crate::queue::Frame;
use crate::registry::{Registry, Target};

/// See the module docs.
#[derive(Debug)]
pub struct Naive {
    core: Core,
}

impl Naive {
    /// Over `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        Self {
            core: Core::new(registry),
        }
    }
}

impl Fanout for Naive {
    core_methods!("naive");
    queue_sessions!();
    fn publish(&self, publisher: &BareJid, p: &Publish<'_>) -> DeliveryReport {
        let mut report = DeliveryReport::default();
        let Some((account, node)) = self.core.target(publisher, p) else {
            return report;
        };
        let registry = &self.core.registry;
        report.recipients = registry.visit(&account, node, None, |t| match t {
            Target::Session(s) => {
                let bytes =
                    stanza::event_message(publisher.as_str(), s.jid().as_str(), p.id, &p.event);
                count_push(s.queue().push(Frame::Bytes(bytes)), &mut report);
            }
            remote => deliver_remote(registry, remote, publisher, p, &mut report),
        });
        self.core.finish(report)
    }
}
