//! `naive`: serialize the whole notification per recipient.
//!
//! The baseline the others are measured against: what a server does when it
//! builds each recipient's stanza from scratch.

use std::sync::Arc;

use stanza::BareJid;

use super::{core_methods, queue_sessions, Core, DeliveryReport, Fanout, Publish};
use crate::queue::Frame;
use crate::registry::Registry;

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
        self.core.push_each(publisher, p, |s| {
            Frame::Bytes(stanza::event_message(
                publisher.as_str(),
                s.jid().as_str(),
                p.id,
                &p.event,
            ))
        })
    }
}
