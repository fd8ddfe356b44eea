//! The registry's concurrent map: dashmap against a sharded
//! `RwLock<HashMap>`, on the registry's workload (bare JID -> Arc), read
//! mostly, single-threaded and with two threads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fanout::map::{ConcurrentMap, Dash, ShardedLock};
use stanza::BareJid;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEYS: usize = 100_000;
const OPS: usize = 20_000;

/// One thread's share of a round: mostly lookups, some get-or-insert, and a
/// few insert/remove pairs (logins and logouts).
fn work<M: ConcurrentMap<BareJid, Arc<u64>>>(
    m: &M,
    keys: &[BareJid],
    fresh: &[BareJid],
    seed: usize,
) {
    let mut i = seed;
    for op in 0..OPS {
        i = i
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let k = &keys[(i >> 17) % keys.len()];
        match op % 100 {
            0 => {
                let f = &fresh[(i >> 7) % fresh.len()];
                m.get_or_insert_with(f, || Arc::new(0));
                m.remove(f);
            }
            1..=9 => {
                std::hint::black_box(m.get_or_insert_with(k, || Arc::new(0)));
            }
            _ => {
                std::hint::black_box(m.get(k));
            }
        }
    }
}

fn bench_map<M: ConcurrentMap<BareJid, Arc<u64>>>(c: &mut Criterion, name: &str) {
    let keys: Vec<BareJid> = (0..KEYS)
        .map(|i| BareJid::new(&format!("user{i}@example.org")).unwrap())
        .collect();
    let fresh: Vec<BareJid> = (0..1000)
        .map(|i| BareJid::new(&format!("new{i}@example.org")).unwrap())
        .collect();
    let m = M::new();
    for (i, k) in keys.iter().enumerate() {
        m.get_or_insert_with(k, || Arc::new(i as u64));
    }
    let mut g = c.benchmark_group("registry_map");
    g.throughput(Throughput::Elements(OPS as u64));
    g.bench_function(BenchmarkId::new(name, "1thread"), |b| {
        b.iter(|| work(&m, &keys, &fresh, 1))
    });
    g.throughput(Throughput::Elements(2 * OPS as u64));
    g.bench_function(BenchmarkId::new(name, "2threads"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for it in 0..iters {
                let t = Instant::now();
                std::thread::scope(|s| {
                    for th in 0..2 {
                        let (m, keys, fresh) = (&m, &keys, &fresh);
                        s.spawn(move || work(m, keys, fresh, (it as usize) * 2 + th));
                    }
                });
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
}

fn maps(c: &mut Criterion) {
    bench_map::<Dash<BareJid, Arc<u64>>>(c, "dashmap");
    bench_map::<ShardedLock<BareJid, Arc<u64>>>(c, "sharded_rwlock");
}

criterion_group! {
    name = benches;
    config = benchkit::criterion();
    targets = maps
}
criterion_main!(benches);
