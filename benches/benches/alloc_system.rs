//! The `alloc` group's workload under the system allocator: this binary
//! deliberately sets no `#[global_allocator]`.

use criterion::{criterion_group, criterion_main, Criterion};

fn alloc(c: &mut Criterion) {
    benchkit::alloc_bench(c, "system");
}

criterion_group! {
    name = benches;
    config = benchkit::criterion();
    targets = alloc
}
criterion_main!(benches);
