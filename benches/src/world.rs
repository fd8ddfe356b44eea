//! Fan-out worlds for the benches: `followers` sessions, each following all
//! of `publishers` by presence subscription with `+notify`, behind one
//! strategy, with the real outbound queues as sinks.

use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fanout::{
    by_name, Config, DeliveryReport, Fanout, Frame, OutboundHandle, Presence, Publish, Registry,
};
use stanza::{ns, BareJid, EventItem, EventKind, FullJid, PubsubEvent};

/// Queue capacity for bench sessions: room for a round of 8 posts and more.
const QUEUE: usize = 1024;

/// A registry, a strategy and its sessions.
pub struct World {
    /// The strategy under test.
    pub fanout: Arc<dyn Fanout>,
    handles: Vec<OutboundHandle>,
    publishers: Vec<BareJid>,
    entry: Vec<u8>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("strategy", &self.fanout.name())
            .field("followers", &self.handles.len())
            .field("publishers", &self.publishers.len())
            .finish()
    }
}

impl World {
    /// Builds the world. `shards` is the registry's shard count (the
    /// `sharded` strategy runs one worker per shard).
    pub fn new(strategy: &str, followers: usize, publishers: usize, shards: usize) -> Self {
        let registry = Arc::new(Registry::new(["example.org"], shards));
        let fanout = by_name(
            strategy,
            registry.clone(),
            Config {
                broadcast_capacity: 64,
            },
        )
        .expect("known strategy");
        let publishers: Vec<BareJid> = (0..publishers)
            .map(|i| BareJid::new(&format!("pub{i}@example.org")).unwrap())
            .collect();
        let presence = Presence {
            available: true,
            priority: 0,
            notify: vec![ns::MICROBLOG.to_owned()],
        };
        let mut handles = Vec::with_capacity(followers);
        for i in 0..followers {
            let jid = FullJid::new(&format!("user{i}@example.org/phone")).unwrap();
            let bare = jid.to_bare();
            for p in &publishers {
                registry.set_presence_follow(p, &bare, true);
            }
            let h = fanout.attach(jid, QUEUE);
            registry.set_presence(h.session(), &presence);
            handles.push(h);
        }
        Self {
            fanout,
            handles,
            publishers,
            entry: crate::corpus::atom_entry(1, 300),
        }
    }

    /// Deliveries one round (every publisher posts once) should make.
    pub fn deliveries_per_round(&self) -> u64 {
        (self.handles.len() * self.publishers.len()) as u64
    }

    /// Publisher `p` posts item `seq`.
    pub fn publish(&self, p: usize, seq: u64) -> DeliveryReport {
        let id = format!("{seq:016x}");
        let publisher = &self.publishers[p];
        let items = [EventItem {
            id: &id,
            publisher: Some(publisher.as_str()),
            payload: &self.entry,
        }];
        self.fanout.publish(
            publisher,
            &Publish {
                id: &id,
                event: PubsubEvent {
                    node: ns::MICROBLOG,
                    kind: EventKind::Items(&items),
                    delay: None,
                },
            },
        )
    }

    /// Drains every session's queue, as the writers would. Returns frames.
    pub fn drain_all(&self) -> usize {
        let mut scratch: Vec<Frame> = Vec::with_capacity(16);
        let mut n = 0;
        for h in &self.handles {
            n += h.drain(&mut scratch, usize::MAX);
            scratch.clear();
        }
        n
    }

    /// Whether a delivery is complete only once writers drained (true for
    /// `broadcast`, whose per-recipient work happens on the receiving side).
    pub fn delivery_needs_drain(&self) -> bool {
        self.fanout.name() == "broadcast"
    }

    /// Times `iters` rounds by one publisher: publish, and for `broadcast`
    /// the receivers' drain too; other strategies drain untimed.
    pub fn time_single(&self, iters: u64, seq: &mut u64) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            *seq += 1;
            let t = Instant::now();
            let r = self.publish(0, *seq);
            if self.delivery_needs_drain() {
                self.drain_all();
            }
            total += t.elapsed();
            assert_eq!(
                r.delivered,
                self.handles.len() as u64,
                "bench world lost deliveries: {r:?}"
            );
            if !self.delivery_needs_drain() {
                self.drain_all();
            }
        }
        total
    }
}

/// One thread per publisher, started together by a barrier, so a round is
/// all publishers posting concurrently.
pub struct Publishers {
    world: Arc<World>,
    start: Arc<Barrier>,
    done: Arc<Barrier>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    seq: Arc<std::sync::atomic::AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Publishers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publishers")
            .field("threads", &self.threads.len())
            .finish()
    }
}

impl Publishers {
    /// Starts one thread per publisher of `world`.
    pub fn new(world: Arc<World>) -> Self {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let n = world.publishers.len();
        let start = Arc::new(Barrier::new(n + 1));
        let done = Arc::new(Barrier::new(n + 1));
        let stop = Arc::new(AtomicBool::new(false));
        let seq = Arc::new(AtomicU64::new(0));
        let threads = (0..n)
            .map(|p| {
                let (w, s, d, st, sq) = (
                    world.clone(),
                    start.clone(),
                    done.clone(),
                    stop.clone(),
                    seq.clone(),
                );
                std::thread::spawn(move || loop {
                    s.wait();
                    if st.load(Ordering::Acquire) {
                        break;
                    }
                    let r = w.publish(p, sq.fetch_add(1, Ordering::Relaxed));
                    assert_eq!(r.dropped.total(), 0, "bench world dropped: {r:?}");
                    d.wait();
                })
            })
            .collect();
        Self {
            world,
            start,
            done,
            stop,
            seq,
            threads,
        }
    }

    /// Times `iters` concurrent rounds (plus the drain, for `broadcast`).
    pub fn time(&self, iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let t = Instant::now();
            self.start.wait();
            self.done.wait();
            if self.world.delivery_needs_drain() {
                self.world.drain_all();
            }
            total += t.elapsed();
            if !self.world.delivery_needs_drain() {
                self.world.drain_all();
            }
        }
        let _ = &self.seq;
        total
    }
}

impl Drop for Publishers {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        self.start.wait();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_strategy_delivers_every_round() {
        for &s in fanout::STRATEGIES {
            let w = World::new(s, 50, 1, 2);
            let mut seq = 0;
            w.time_single(3, &mut seq);
            let w = Arc::new(World::new(s, 20, 3, 2));
            let p = Publishers::new(w.clone());
            p.time(2);
            drop(p);
            assert_eq!(w.deliveries_per_round(), 60);
        }
    }
}
