//! `broadcast`: one `tokio::sync::broadcast` channel per publisher.
//!
//! A publish computes the recipient set (as every strategy must, PROTOCOL
//! §6), sends one item carrying the notification and the sorted recipient
//! session ids, and wakes those sessions' writers. Each session holds a
//! receiver on the channel of every publisher it follows (kept up to date through the registry's follow hook, before the
//! follow change returns). A writer drains its receivers and keeps the items
//! addressed to it. The owner's own sessions get their posts through
//! their queues, so a channel exists only for publishers someone follows.
//!
//! What it saves: no per-recipient queue push on the publishing thread. What
//! it costs: every receiver of a channel sees every item and filters, and a
//! session following many publishers polls many receivers.
//!
//! # Loss semantics
//! A channel holds the last `capacity` items. A receiver that falls further
//! behind gets `Lagged(n)`: the `n` oldest items are gone for it. Nothing
//! is lost silently: the `n` is added to the strategy's `lagged` drop count
//! (an upper bound for that session, since some of those items may not have
//! been addressed to it), and the session is flagged
//! ([`OutboundHandle::take_lost`]): the server ends it as it ends a session
//! whose queue overflowed, and its client fetches what it missed from
//! history. The per-session queue bound does not apply to broadcast items;
//! the channel capacity is their bound.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::Mutex;
use smallvec::SmallVec;
use stanza::{BareJid, FullJid, Notification};
use tokio::sync::broadcast::{self, error::TryRecvError};

use super::{core_methods, count_push, Core, DeliveryReport, DropReason, Fanout, Publish, Stats};
use crate::handle::OutboundHandle;
use crate::queue::{Frame, QueueState};
use crate::registry::{Registry, SessionId, Target};

/// One published item on a channel.
#[derive(Debug)]
pub struct Item {
    notification: Arc<Notification>,
    /// Sorted, for a binary search per receiver.
    recipients: Box<[SessionId]>,
}

type Channels = DashMap<BareJid, broadcast::Sender<Arc<Item>>>;

/// A session's receivers.
#[derive(Debug)]
pub struct Subscriptions {
    rxs: Mutex<Vec<(BareJid, broadcast::Receiver<Arc<Item>>)>>,
    lost: AtomicBool,
    stats: Arc<Stats>,
}

impl Subscriptions {
    fn add(&self, publisher: &BareJid, channels: &Channels, capacity: usize) {
        let mut rxs = self.rxs.lock();
        if rxs.iter().any(|(p, _)| p == publisher) {
            return;
        }
        let rx = channels
            .entry(publisher.clone())
            .or_insert_with(|| broadcast::channel(capacity).0)
            .subscribe();
        rxs.push((publisher.clone(), rx));
    }
}

impl crate::handle::SideChannel for Subscriptions {
    fn drain(&self, me: SessionId, out: &mut Vec<Frame>, max: usize) -> usize {
        let mut n = 0;
        let mut rxs = self.rxs.lock();
        for (_, rx) in rxs.iter_mut() {
            while n < max {
                match rx.try_recv() {
                    Ok(item) => {
                        if item.recipients.binary_search(&me).is_ok() {
                            out.push(Frame::Notification(item.notification.clone()));
                            n += 1;
                        }
                    }
                    Err(TryRecvError::Lagged(k)) => {
                        self.stats.add_lagged(k);
                        self.lost.store(true, Ordering::Release);
                    }
                    Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                }
            }
        }
        n
    }

    fn take_lost(&self) -> bool {
        self.lost.swap(false, Ordering::AcqRel)
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct Broadcast {
    core: Core,
    capacity: usize,
    channels: Arc<Channels>,
    subs: Arc<DashMap<SessionId, Arc<Subscriptions>>>,
}

impl Broadcast {
    /// Over `registry`, with `capacity` items per publisher channel.
    pub fn new(registry: Arc<Registry>, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let channels: Arc<Channels> = Arc::new(DashMap::new());
        let subs: Arc<DashMap<SessionId, Arc<Subscriptions>>> = Arc::new(DashMap::new());
        let (c, s) = (channels.clone(), subs.clone());
        // A new follow edge subscribes the follower's live sessions before
        // the registry call returns, so the next publish reaches them.
        registry.on_follow(move |follower, publisher| {
            for session in follower.sessions().iter() {
                if let Some(sub) = s.get(&session.id()) {
                    sub.add(publisher.jid(), &c, capacity);
                }
            }
        });
        Self {
            core: Core::new(registry),
            capacity,
            channels,
            subs,
        }
    }
}

impl Fanout for Broadcast {
    core_methods!("broadcast");
    fn attach(&self, jid: FullJid, queue_capacity: usize) -> OutboundHandle {
        let subs = Arc::new(Subscriptions {
            rxs: Mutex::new(Vec::new()),
            lost: AtomicBool::new(false),
            stats: self.core.stats.clone(),
        });
        let bare = jid.to_bare();
        let entry = self.core.registry.attach(jid, queue_capacity);
        self.subs.insert(entry.id(), subs.clone());
        // No receiver on its own channel: the owner's sessions get their own
        // posts through their queues, so a publisher's channel exists only
        // once someone follows it.
        let account = self.core.registry.account(&bare);
        for p in self.core.registry.following(&account) {
            subs.add(&p, &self.channels, self.capacity);
        }
        OutboundHandle::new(entry, Some(subs))
    }
    fn detach(&self, jid: &FullJid) {
        if let Some(s) = self.core.detach(jid) {
            self.subs.remove(&s.id());
        }
    }
    fn publish(&self, publisher: &BareJid, p: &Publish<'_>) -> DeliveryReport {
        let mut report = DeliveryReport::default();
        let Some((account, node)) = self.core.target(publisher, p) else {
            return report;
        };
        let registry = &self.core.registry;
        let owner: SmallVec<[SessionId; 4]> = account.sessions().iter().map(|s| s.id()).collect();
        let notification = Arc::new(Notification::new(publisher.as_str(), p.id, &p.event));
        let mut ids = Vec::new();
        let mut wake: Vec<std::task::Waker> = Vec::new();
        let mut remotes = super::Remotes::default();
        report.recipients = registry.visit(&account, node, None, |t| match t {
            Target::Session(s) => {
                let q = s.queue();
                if owner.contains(&s.id()) {
                    count_push(
                        q.push(Frame::Notification(notification.clone())),
                        &mut report,
                    );
                    return;
                }
                if q.state() != QueueState::Open {
                    report.dropped.add(DropReason::Closed);
                    return;
                }
                ids.push(s.id());
                wake.extend(q.claim_wake());
            }
            remote => remotes.add(remote),
        });
        remotes.send(registry, publisher, p, &mut report);
        if !ids.is_empty() {
            ids.sort_unstable();
            let n = ids.len() as u64;
            let item = Arc::new(Item {
                notification,
                recipients: ids.into_boxed_slice(),
            });
            let sent = self
                .channels
                .entry(publisher.clone())
                .or_insert_with(|| broadcast::channel(self.capacity).0)
                .send(item);
            match sent {
                Ok(_) => report.delivered += n,
                Err(_) => report.dropped.closed += n,
            }
        }
        for w in wake {
            w.wake();
        }
        self.core.finish(report)
    }
}
