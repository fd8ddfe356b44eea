//! The concurrent map behind the registry's account index, in two
//! implementations the benches compare: `dashmap` and a sharded
//! `RwLock<HashMap>`. The registry uses [`AccountMap`], set to the one that
//! measured faster (see `results/BENCHMARKS.md`, group `registry`).
//!
//! The index is only on the slow path (attach, detach, follow changes):
//! publishes walk direct `Arc` links and never look a follower up by JID.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};

use parking_lot::RwLock;

/// What the registry needs from a concurrent map of `Arc`-like values.
pub trait ConcurrentMap<K, V>: Send + Sync {
    /// An empty map.
    fn new() -> Self;
    /// A clone of the value for `k`.
    fn get(&self, k: &K) -> Option<V>;
    /// The value for `k`, inserting `make()` first when absent.
    fn get_or_insert_with(&self, k: &K, make: impl FnOnce() -> V) -> V;
    /// Removes `k`, returning its value.
    fn remove(&self, k: &K) -> Option<V>;
    /// Entries.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `dashmap::DashMap`.
#[derive(Debug)]
pub struct Dash<K: Eq + Hash, V>(dashmap::DashMap<K, V>);

impl<K: Eq + Hash + Clone + Send + Sync, V: Clone + Send + Sync> ConcurrentMap<K, V>
    for Dash<K, V>
{
    fn new() -> Self {
        Self(dashmap::DashMap::new())
    }
    fn get(&self, k: &K) -> Option<V> {
        self.0.get(k).map(|v| v.clone())
    }
    fn get_or_insert_with(&self, k: &K, make: impl FnOnce() -> V) -> V {
        if let Some(v) = self.0.get(k) {
            return v.clone();
        }
        self.0.entry(k.clone()).or_insert_with(make).clone()
    }
    fn remove(&self, k: &K) -> Option<V> {
        self.0.remove(k).map(|(_, v)| v)
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// A fixed number of `RwLock<HashMap>` shards, picked by hash.
#[derive(Debug)]
pub struct ShardedLock<K, V> {
    shards: Box<[RwLock<HashMap<K, V>>]>,
    hasher: RandomState,
}

impl<K: Eq + Hash, V> ShardedLock<K, V> {
    fn shard(&self, k: &K) -> &RwLock<HashMap<K, V>> {
        let h = self.hasher.hash_one(k) as usize;
        &self.shards[h % self.shards.len()]
    }
}

impl<K: Eq + Hash + Clone + Send + Sync, V: Clone + Send + Sync> ConcurrentMap<K, V>
    for ShardedLock<K, V>
{
    fn new() -> Self {
        // Four shards per core, as dashmap does, so the two are compared
        // at the same lock granularity.
        let n =
            (std::thread::available_parallelism().map_or(4, |n| n.get()) * 4).next_power_of_two();
        Self {
            shards: (0..n).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }
    fn get(&self, k: &K) -> Option<V> {
        self.shard(k).read().get(k).cloned()
    }
    fn get_or_insert_with(&self, k: &K, make: impl FnOnce() -> V) -> V {
        let shard = self.shard(k);
        if let Some(v) = shard.read().get(k) {
            return v.clone();
        }
        shard.write().entry(k.clone()).or_insert_with(make).clone()
    }
    fn remove(&self, k: &K) -> Option<V> {
        self.shard(k).write().remove(k)
    }
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }
}

/// The map the registry uses for its account index.
pub type AccountMap<K, V> = Dash<K, V>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn exercise<M: ConcurrentMap<u64, Arc<u64>>>() {
        let m = M::new();
        assert!(m.is_empty());
        let a = m.get_or_insert_with(&1, || Arc::new(10));
        let b = m.get_or_insert_with(&1, || Arc::new(20));
        assert!(
            Arc::ptr_eq(&a, &b),
            "second insert must return the first value"
        );
        assert_eq!(m.get(&1).as_deref(), Some(&10));
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let m = &m;
                s.spawn(move || {
                    for i in 0..1000 {
                        m.get_or_insert_with(&(t * 1000 + i + 100), || Arc::new(i));
                    }
                });
            }
        });
        assert_eq!(m.len(), 4001);
        assert_eq!(m.remove(&1).as_deref(), Some(&10));
        assert_eq!(m.get(&1), None);
    }

    #[test]
    fn dash() {
        exercise::<Dash<u64, Arc<u64>>>();
    }

    #[test]
    fn sharded_lock() {
        exercise::<ShardedLock<u64, Arc<u64>>>();
    }
}
