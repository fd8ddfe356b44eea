//! Routes to remote domains: the queue each remote domain's stanzas take
//! (the server's s2s side, made on demand), and which domains take
//! XEP-0033 multicast.

use std::sync::Arc;

use super::Registry;
use crate::map::ConcurrentMap;
use crate::queue::OutboundQueue;

impl Registry {
    /// Sets the queue that carries stanzas for a remote domain (s2s).
    pub fn set_route(&self, domain: &str, queue: Arc<OutboundQueue>) {
        self.routes.remove(&domain.to_owned());
        self.routes.get_or_insert_with(&domain.to_owned(), || queue);
    }

    /// The queue for a remote domain set with [`Self::set_route`].
    pub fn route(&self, domain: &str) -> Option<Arc<OutboundQueue>> {
        self.routes.get(&domain.to_owned())
    }

    /// Records whether `domain` takes XEP-0033 multicast: its remote
    /// recipients of one publish then get one stanza per domain.
    pub fn set_multicast(&self, domain: &str, on: bool) {
        let mut m = self.multicast.write();
        if on {
            m.insert(domain.to_owned());
        } else {
            m.remove(domain);
        }
    }

    /// Whether `domain` takes XEP-0033 multicast.
    pub fn multicast(&self, domain: &str) -> bool {
        self.multicast.read().contains(domain)
    }

    /// Sets how a missing route from `local` to `remote` is made: the
    /// server's federation, which opens a stream to the domain on demand.
    pub fn on_missing_route(
        &self,
        make: impl Fn(&str, &str) -> Option<Arc<OutboundQueue>> + Send + Sync + 'static,
    ) {
        *self.route_maker.write() = Some(Box::new(make));
    }

    /// The queue for stanzas from `local` (a domain served here) to
    /// `remote`: a route set for the domain, else one made on demand.
    pub fn route_between(&self, local: &str, remote: &str) -> Option<Arc<OutboundQueue>> {
        if let Some(q) = self.route(remote) {
            return Some(q);
        }
        self.route_maker
            .read()
            .as_ref()
            .and_then(|m| m(local, remote))
    }
}
