//! `shared`: serialize once, push a shared handle per recipient.
//!
//! The notification is built once ([`stanza::Notification`]); each
//! recipient's queue gets an `Arc` to it, and the writer completes it with
//! the session's own `to` in a vectored write. Per recipient the cost is one
//! reference-count increment and one queue push.

use std::sync::Arc;

use stanza::{BareJid, Notification};

use super::{core_methods, queue_sessions, Core, DeliveryReport, Fanout, Publish};
use crate::queue::Frame;
use crate::registry::Registry;

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
        let notification = Arc::new(Notification::new(publisher.as_str(), p.id, &p.event));
        self.core
            .push_each(publisher, p, |_| Frame::Notification(notification.clone()))
    }
}
