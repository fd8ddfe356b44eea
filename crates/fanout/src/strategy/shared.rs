//! `shared`: serialize once, push a shared handle per recipient.
//!
//! The notification is built once ([`stanza::Notification`]); each
//! recipient's queue gets an `Arc` to it, and the writer completes it with
//! the session's own `to` in a vectored write. Per recipient the cost is one
//! reference-count increment and one queue push.

use std::sync::Arc;

use stanza::{BareJid, Notification};

use super::{
    core_methods, count_push, deliver_remote, queue_sessions, Core, DeliveryReport, Fanout, Publish,
};
use crate::queue::Frame;
use crate::registry::{Registry, Target};

/// See the module docs.
#[derive(Debug)]
pub struct Shared {
    core: Core,
}

impl Shared {
    /// Over `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        Self {
            core: Core::new(registry),
        }
    }
}

impl Fanout for Shared {
    core_methods!("shared");
    queue_sessions!();
    fn publish(&self, publisher: &BareJid, p: &Publish<'_>) -> DeliveryReport {
        let mut report = DeliveryReport::default();
        let Some((account, node)) = self.core.target(publisher, p) else {
            return report;
        };
        let registry = &self.core.registry;
        let notification = Arc::new(Notification::new(publisher.as_str(), p.id, &p.event));
        report.recipients = registry.visit(&account, node, None, |t| match t {
            Target::Session(s) => count_push(
                s.queue().push(Frame::Notification(notification.clone())),
                &mut report,
            ),
            remote => deliver_remote(registry, remote, publisher, p, &mut report),
        });
        self.core.finish(report)
    }
}
