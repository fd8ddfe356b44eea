//! Fan-out strategies behind one interface, [`Fanout`].
//!
//! All of them deliver exactly the recipient set of
//! [`Registry::visit`](crate::Registry::visit) into the same bounded
//! [`OutboundQueue`](crate::OutboundQueue)s; they differ in how the work is
//! done:
//!
//! | name | per publish | per recipient |
//! |---|---|---|
//! | [`naive`] | nothing | serialize the whole message, push it |
//! | [`shared`] | serialize once | push an `Arc` |
//! | [`sharded`] | serialize once, one channel send per shard | shard worker pushes an `Arc`, wakes writers once per batch |
//! | [`broadcast`] | serialize once, collect recipient ids, one `broadcast::send` | writer filters on receipt |
//!
//! Every strategy counts what it delivered and what it dropped, by reason,
//! so `delivered + dropped == recipients` always holds.

pub mod broadcast;
pub mod naive;
pub mod sharded;
pub mod shared;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use stanza::{BareJid, FullJid, PubsubEvent};

use crate::handle::OutboundHandle;
use crate::queue::{Frame, PushError};
use crate::registry::{Account, NodeId, Registry, SessionEntry, Target};

/// The names [`by_name`] accepts.
pub const STRATEGIES: &[&str] = &["naive", "shared", "sharded", "broadcast"];

/// One publish to fan out.
#[derive(Debug, Clone, Copy)]
pub struct Publish<'a> {
    /// The notification's stanza id (one per publish, shared by recipients).
    pub id: &'a str,
    /// The event, including the node.
    pub event: PubsubEvent<'a>,
}

/// Why a delivery was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The session's queue was full; the session is being disconnected.
    QueueFull,
    /// The session's queue had already overflowed or closed.
    Closed,
    /// A remote recipient with no connected route.
    NoRoute,
    /// A `broadcast` receiver lagged behind its channel (counted when the
    /// session drains; the server then ends the session as for an
    /// overflow).
    Lagged,
}

/// Drop counts by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// See [`DropReason::QueueFull`].
    pub queue_full: u64,
    /// See [`DropReason::Closed`].
    pub closed: u64,
    /// See [`DropReason::NoRoute`].
    pub no_route: u64,
    /// See [`DropReason::Lagged`].
    pub lagged: u64,
}

impl Dropped {
    /// All drops.
    pub fn total(&self) -> u64 {
        self.queue_full + self.closed + self.no_route + self.lagged
    }
    /// Counts one drop.
    pub fn add(&mut self, reason: DropReason) {
        match reason {
            DropReason::QueueFull => self.queue_full += 1,
            DropReason::Closed => self.closed += 1,
            DropReason::NoRoute => self.no_route += 1,
            DropReason::Lagged => self.lagged += 1,
        }
    }
    /// Adds another set of counts.
    pub fn merge(&mut self, o: &Dropped) {
        self.queue_full += o.queue_full;
        self.closed += o.closed;
        self.no_route += o.no_route;
        self.lagged += o.lagged;
    }
}

/// What one publish did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Recipients under PROTOCOL §6.
    pub recipients: u64,
    /// Queued for a session or route (for `broadcast`: handed to the channel).
    pub delivered: u64,
    /// Not queued, by reason.
    pub dropped: Dropped,
}

impl DeliveryReport {
    /// Adds another report (e.g. one shard's) into this one.
    pub fn merge(&mut self, o: &DeliveryReport) {
        self.recipients += o.recipients;
        self.delivered += o.delivered;
        self.dropped.merge(&o.dropped);
    }
}

/// Cumulative counters of a strategy, for metrics.
#[derive(Debug, Default)]
pub struct Stats {
    publishes: AtomicU64,
    recipients: AtomicU64,
    delivered: AtomicU64,
    queue_full: AtomicU64,
    closed: AtomicU64,
    no_route: AtomicU64,
    lagged: AtomicU64,
}

impl Stats {
    fn record(&self, r: &DeliveryReport) {
        self.publishes.fetch_add(1, Ordering::Relaxed);
        self.recipients.fetch_add(r.recipients, Ordering::Relaxed);
        self.delivered.fetch_add(r.delivered, Ordering::Relaxed);
        self.queue_full
            .fetch_add(r.dropped.queue_full, Ordering::Relaxed);
        self.closed.fetch_add(r.dropped.closed, Ordering::Relaxed);
        self.no_route
            .fetch_add(r.dropped.no_route, Ordering::Relaxed);
        self.lagged.fetch_add(r.dropped.lagged, Ordering::Relaxed);
    }
    pub(crate) fn add_lagged(&self, n: u64) {
        self.lagged.fetch_add(n, Ordering::Relaxed);
    }
    /// A consistent-enough copy of the counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            publishes: self.publishes.load(Ordering::Relaxed),
            recipients: self.recipients.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped: Dropped {
                queue_full: self.queue_full.load(Ordering::Relaxed),
                closed: self.closed.load(Ordering::Relaxed),
                no_route: self.no_route.load(Ordering::Relaxed),
                lagged: self.lagged.load(Ordering::Relaxed),
            },
        }
    }
}

/// A copy of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Publishes fanned out.
    pub publishes: u64,
    /// Recipients over all publishes.
    pub recipients: u64,
    /// Deliveries queued.
    pub delivered: u64,
    /// Drops by reason.
    pub dropped: Dropped,
}

/// The interface every strategy implements. The server holds an
/// `Arc<dyn Fanout>` and changes strategy by name, nothing else.
pub trait Fanout: Send + Sync + std::fmt::Debug {
    /// The strategy's name, as [`by_name`] takes it.
    fn name(&self) -> &'static str;
    /// The registry the strategy reads.
    fn registry(&self) -> &Arc<Registry>;
    /// Registers a session; the handle is what its writer drains.
    fn attach(&self, jid: FullJid, queue_capacity: usize) -> OutboundHandle;
    /// Removes a session and closes its queue.
    fn detach(&self, jid: &FullJid);
    /// Fans one event out to the recipients of `publisher`'s node.
    fn publish(&self, publisher: &BareJid, publish: &Publish<'_>) -> DeliveryReport;
    /// Cumulative counters.
    fn stats(&self) -> StatsSnapshot;
}

/// An unknown strategy name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown fan-out strategy {0:?} (expected one of: naive, shared, sharded, broadcast)")]
pub struct UnknownStrategy(pub String);

/// Settings the strategies take. (`sharded` runs one worker per registry
/// shard: choose the shard count when building the [`Registry`].)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// `broadcast`: channel capacity per publisher, in posts.
    pub broadcast_capacity: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            broadcast_capacity: 1024,
        }
    }
}

/// Builds the strategy called `name` over `registry`.
pub fn by_name(
    name: &str,
    registry: Arc<Registry>,
    config: Config,
) -> Result<Arc<dyn Fanout>, UnknownStrategy> {
    Ok(match name {
        "naive" => Arc::new(naive::Naive::new(registry)),
        "shared" => Arc::new(shared::Shared::new(registry)),
        "sharded" => Arc::new(sharded::Sharded::new(registry)),
        "broadcast" => Arc::new(broadcast::Broadcast::new(
            registry,
            config.broadcast_capacity,
        )),
        other => return Err(UnknownStrategy(other.to_owned())),
    })
}

/// What every strategy holds: the registry and its counters.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) registry: Arc<Registry>,
    pub(crate) stats: Arc<Stats>,
}

impl Core {
    pub(crate) fn new(registry: Arc<Registry>) -> Self {
        Self {
            registry,
            stats: Arc::new(Stats::default()),
        }
    }

    /// A session whose writer drains only its queue.
    pub(crate) fn attach_queue(&self, jid: FullJid, queue_capacity: usize) -> OutboundHandle {
        OutboundHandle::new(self.registry.attach(jid, queue_capacity), None)
    }

    /// Detaches the session and closes its queue.
    pub(crate) fn detach(&self, jid: &FullJid) -> Option<Arc<SessionEntry>> {
        let s = self.registry.detach(jid)?;
        s.queue().close();
        Some(s)
    }

    /// The publisher's account and the node's id; `None` when the registry
    /// has never heard of the publisher (so nobody can be a recipient).
    pub(crate) fn target(
        &self,
        publisher: &BareJid,
        p: &Publish<'_>,
    ) -> Option<(Arc<Account>, NodeId)> {
        let account = self.registry.find_account(publisher)?;
        Some((account, self.registry.node_id(p.event.node)))
    }

    /// The walk `naive` and `shared` share: push `frame_for(session)` into
    /// every recipient's queue (remote targets through their route), count,
    /// record. Generic, so the per-recipient closure is inlined.
    #[inline]
    pub(crate) fn push_each(
        &self,
        publisher: &BareJid,
        p: &Publish<'_>,
        frame_for: impl Fn(&SessionEntry) -> Frame,
    ) -> DeliveryReport {
        let mut report = DeliveryReport::default();
        let Some((account, node)) = self.target(publisher, p) else {
            return report;
        };
        let registry = &self.registry;
        let mut remotes = Remotes::default();
        report.recipients = registry.visit(&account, node, None, |t| match t {
            Target::Session(s) => count_push(s.queue().push(frame_for(s)), &mut report),
            remote => remotes.add(remote),
        });
        remotes.send(registry, publisher, p, &mut report);
        self.finish(report)
    }

    /// Records a finished publish in the counters.
    pub(crate) fn finish(&self, report: DeliveryReport) -> DeliveryReport {
        self.stats.record(&report);
        report
    }
}

/// The trait methods every strategy implements the same way.
macro_rules! core_methods {
    ($name:literal) => {
        fn name(&self) -> &'static str {
            $name
        }
        fn registry(&self) -> &std::sync::Arc<crate::registry::Registry> {
            &self.core.registry
        }
        fn stats(&self) -> crate::strategy::StatsSnapshot {
            self.core.stats.snapshot()
        }
    };
}
pub(crate) use core_methods;

/// `attach` and `detach` for strategies whose writers drain only the queue.
macro_rules! queue_sessions {
    () => {
        fn attach(
            &self,
            jid: stanza::FullJid,
            queue_capacity: usize,
        ) -> crate::handle::OutboundHandle {
            self.core.attach_queue(jid, queue_capacity)
        }
        fn detach(&self, jid: &stanza::FullJid) {
            self.core.detach(jid);
        }
    };
}
pub(crate) use queue_sessions;

/// Pushes to one queue and counts the outcome.
#[inline]
pub(crate) fn count_push(r: Result<(), PushError>, report: &mut DeliveryReport) {
    match r {
        Ok(()) => report.delivered += 1,
        Err(PushError::Full) => report.dropped.add(DropReason::QueueFull),
        Err(PushError::Closed) => report.dropped.add(DropReason::Closed),
    }
}

/// Most recipients one multicast stanza names: a thousand addresses keep
/// it well under the 256 KiB stanza limit servers apply.
pub const MULTICAST_MAX: usize = 1000;

/// The remote recipients of one publish, gathered during the walk and sent
/// after it through each domain's route: one stanza per recipient, or per
/// domain (XEP-0033, in chunks of [`MULTICAST_MAX`]) where the domain takes
/// multicast. Remote recipients are few next to local sessions (one per
/// remote bare JID or subscribed resource), so each is serialized here.
#[derive(Debug, Default)]
pub(crate) struct Remotes {
    /// (domain, recipients), in order of first appearance.
    by_domain: Vec<(String, Vec<String>)>,
}

impl Remotes {
    /// Adds a [`Target::Remote`]; other targets are ignored.
    pub(crate) fn add(&mut self, target: Target<'_>) {
        let Target::Remote { account, resource } = target else {
            return;
        };
        let to = match resource {
            Some(r) => format!("{}/{r}", account.jid()),
            None => account.jid().to_string(),
        };
        let domain = account.jid().domain();
        match self.by_domain.iter_mut().find(|(d, _)| d == domain) {
            Some((_, list)) => list.push(to),
            None => self.by_domain.push((domain.to_owned(), vec![to])),
        }
    }

    /// Queues every recipient's notification on its domain's route, and
    /// counts each recipient as delivered or dropped.
    pub(crate) fn send(
        self,
        registry: &Registry,
        publisher: &BareJid,
        p: &Publish<'_>,
        report: &mut DeliveryReport,
    ) {
        for (domain, tos) in self.by_domain {
            let Some(route) = registry.route_between(publisher.domain(), &domain) else {
                for _ in &tos {
                    report.dropped.add(DropReason::NoRoute);
                }
                continue;
            };
            if tos.len() > 1 && registry.multicast(&domain) {
                for chunk in tos.chunks(MULTICAST_MAX) {
                    let bytes = stanza::event_message_multicast(
                        publisher.as_str(),
                        &domain,
                        p.id,
                        &p.event,
                        chunk,
                    );
                    let r = route.push(Frame::Bytes(bytes));
                    for _ in chunk {
                        count_push(r, report);
                    }
                }
                continue;
            }
            for to in &tos {
                let bytes = stanza::event_message(publisher.as_str(), to, p.id, &p.event);
                count_push(route.push(Frame::Bytes(bytes)), report);
            }
        }
    }
}

#[cfg(test)]
mod tests;
