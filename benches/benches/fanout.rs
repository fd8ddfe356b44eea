//! Fan-out strategies by width: every strategy at 1, 100, 10k, 100k and 1M
//! followers with one publisher, and at 1..100k with eight concurrent
//! publishers. Throughput is deliveries, into the real outbound queues.

use std::sync::Arc;

use benchkit::world::{Publishers, World};
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Registry shards: one per core of the benchmark machine.
const SHARDS: usize = 2;

fn widths() -> Vec<usize> {
    // STARLING_BENCH_MAX_WIDTH lets a quick run skip the million.
    let max: usize = std::env::var("STARLING_BENCH_MAX_WIDTH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    [1, 100, 10_000, 100_000, 1_000_000]
        .into_iter()
        .filter(|&w| w <= max)
        .collect()
}

fn fanout(c: &mut Criterion) {
    for &strategy in fanout::STRATEGIES {
        let mut g = c.benchmark_group(format!("fanout_{strategy}"));
        for w in widths() {
            if w >= 100_000 {
                g.sampling_mode(SamplingMode::Flat).sample_size(10);
            } else {
                g.sampling_mode(SamplingMode::Auto).sample_size(20);
            }
            g.throughput(Throughput::Elements(w as u64));
            let mut world: Option<World> = None;
            let mut seq = 0;
            g.bench_function(BenchmarkId::new("1pub", w), |b| {
                let world = world.get_or_insert_with(|| World::new(strategy, w, 1, SHARDS));
                b.iter_custom(|iters| world.time_single(iters, &mut seq))
            });
        }
        for w in widths().into_iter().filter(|&w| w <= 100_000) {
            if w >= 100_000 {
                g.sampling_mode(SamplingMode::Flat).sample_size(10);
            } else {
                g.sampling_mode(SamplingMode::Auto).sample_size(20);
            }
            g.throughput(Throughput::Elements(8 * w as u64));
            let mut pubs: Option<Publishers> = None;
            // Eight publisher threads on two cores: oversubscribed on purpose.
            g.bench_function(BenchmarkId::new("8pub_oversubscribed", w), |b| {
                let pubs = pubs.get_or_insert_with(|| {
                    Publishers::new(Arc::new(World::new(strategy, w, 8, SHARDS)))
                });
                b.iter_custom(|iters| pubs.time(iters))
            });
        }
        g.finish();
    }
}

fn alloc(c: &mut Criterion) {
    benchkit::alloc_bench(c, "mimalloc");
}

criterion_group! {
    name = benches;
    config = benchkit::criterion();
    targets = fanout, alloc
}
criterion_main!(benches);
