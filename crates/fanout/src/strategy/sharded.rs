//! `sharded`: one worker thread per registry shard.
//!
//! Accounts (and so their sessions) are partitioned over N shards by the
//! registry. A publish serializes the notification once and crosses each
//! shard's crossbeam channel once; each worker walks only its own shard's
//! followers, pushes `Arc`s into their queues, and wakes each writer once per
//! batch of jobs (a burst of posts to the same follower costs one wake-up).
//! The publishing thread waits for every shard's report, so `publish` is
//! synchronous like the other strategies; a server calls it off its async
//! workers.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use stanza::{BareJid, Notification};

use super::{
    core_methods, count_push, queue_sessions, Core, DeliveryReport, Fanout, Publish, Remotes,
};
use crate::queue::Frame;
use crate::registry::{Account, NodeId, Registry, Target};

/// Most jobs a worker takes from its channel before waking writers.
const BATCH: usize = 64;

type Remote = (Arc<Account>, Option<Arc<str>>);

struct Job {
    account: Arc<Account>,
    node: NodeId,
    notification: Arc<Notification>,
    reply: Sender<(DeliveryReport, Vec<Remote>)>,
}

/// See the module docs.
pub struct Sharded {
    core: Core,
    workers: Vec<Sender<Job>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Sharded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sharded")
            .field("shards", &self.workers.len())
            .finish()
    }
}

impl Sharded {
    /// Starts one worker per shard of `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        let n = registry.shards();
        let mut workers = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for shard in 0..n {
            let (tx, rx) = crossbeam_channel::unbounded::<Job>();
            let reg = registry.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("fanout-shard-{shard}"))
                    .spawn(move || worker(shard, &reg, &rx))
                    .expect("spawn fan-out shard worker"),
            );
            workers.push(tx);
        }
        Self {
            core: Core::new(registry),
            workers,
            threads: Mutex::new(threads),
        }
    }
}

impl Drop for Sharded {
    fn drop(&mut self) {
        self.workers.clear();
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
    }
}

fn worker(shard: usize, registry: &Registry, rx: &Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(BATCH);
    let mut to_wake: Vec<std::task::Waker> = Vec::new();
    let mut replies = Vec::with_capacity(BATCH);
    while let Ok(job) = rx.recv() {
        batch.push(job);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        for job in batch.drain(..) {
            let mut report = DeliveryReport::default();
            let mut remotes = Vec::new();
            report.recipients = registry.visit(&job.account, job.node, Some(shard), |t| match t {
                Target::Session(s) => {
                    match s
                        .queue()
                        .push_quiet(Frame::Notification(job.notification.clone()))
                    {
                        Ok(waker) => {
                            report.delivered += 1;
                            to_wake.extend(waker);
                        }
                        Err(e) => count_push(Err(e), &mut report),
                    }
                }
                Target::Remote { account, resource } => {
                    remotes.push((account.clone(), resource.map(Arc::from)));
                }
            });
            replies.push((job.reply, report, remotes));
        }
        for w in to_wake.drain(..) {
            w.wake();
        }
        for (reply, report, remotes) in replies.drain(..) {
            let _ = reply.send((report, remotes));
        }
    }
}

impl Fanout for Sharded {
    core_methods!("sharded");
    queue_sessions!();
    fn publish(&self, publisher: &BareJid, p: &Publish<'_>) -> DeliveryReport {
        let mut report = DeliveryReport::default();
        let Some((account, node)) = self.core.target(publisher, p) else {
            return report;
        };
        let notification = Arc::new(Notification::new(publisher.as_str(), p.id, &p.event));
        let (tx, rx) = crossbeam_channel::bounded(self.workers.len());
        for w in &self.workers {
            let job = Job {
                account: account.clone(),
                node,
                notification: notification.clone(),
                reply: tx.clone(),
            };
            w.send(job)
                .expect("shard workers live as long as the strategy");
        }
        drop(tx);
        // Remote deliveries serialize per address from the borrowed event,
        // so they happen here rather than on a worker; gathered over every
        // shard first, so a multicast domain gets one stanza per publish.
        let mut remotes = Vec::new();
        for (shard_report, shard_remotes) in rx.iter() {
            report.merge(&shard_report);
            remotes.extend(shard_remotes);
        }
        let mut remote_report = DeliveryReport::default();
        let mut batch = Remotes::default();
        for (account, resource) in &remotes {
            batch.add(Target::Remote {
                account,
                resource: resource.as_deref(),
            });
        }
        batch.send(&self.core.registry, publisher, p, &mut remote_report);
        report.delivered += remote_report.delivered;
        report.dropped.merge(&remote_report.dropped);
        self.core.finish(report)
    }
}
