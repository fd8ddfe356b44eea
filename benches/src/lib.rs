//! Shared pieces of the benches: the realistic stanza corpus, the fan-out
//! worlds, and the timing loops. The `bench-report` binary uses the corpus
//! too, to turn bytes/s into stanzas/s.
//!
//! # Layout
//! - [`corpus`]: deterministic realistic stanzas (messages, presences with
//!   caps, publishes with 300 B and 3 KB Atom entries).
//! - [`world`]: a registry with W followers of P publishers, and the
//!   publish-then-drain loop every fan-out bench times.

pub mod corpus;
pub mod world;

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};

/// Criterion settings shared by every bench binary: short warm-up and
/// measurement so the whole suite fits a few minutes on two cores.
pub fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

/// The allocator comparison: the same fan-out workload under whichever
/// global allocator the calling bench binary set, labelled `label`.
pub fn alloc_bench(c: &mut Criterion, label: &str) {
    let mut g = c.benchmark_group("alloc");
    g.sampling_mode(SamplingMode::Flat);
    for strategy in ["naive", "shared"] {
        let mut world: Option<world::World> = None;
        let mut seq = 0;
        g.throughput(Throughput::Elements(10_000));
        g.bench_function(BenchmarkId::new(label, format!("{strategy}_10k")), |b| {
            let w = world.get_or_insert_with(|| world::World::new(strategy, 10_000, 1, 2));
            b.iter_custom(|iters| w.time_single(iters, &mut seq))
        });
    }
    g.finish();
}
