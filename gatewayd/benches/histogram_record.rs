//! Recording a request into a worker's metrics shard (counter + hdrhistogram) and merging.

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use gatewayd::metrics::Registry;

fn bench(c: &mut Criterion) {
    let reg = Registry::new(2);
    let m = reg.backend("web", "blue");
    let mut i = 0u64;
    c.bench_function("histogram_record/start_finish", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919);
            let shard = m.shard(0);
            shard.start();
            shard.finish(200, Some(Duration::from_micros(200 + i % 5000)));
        })
    });
    c.bench_function("histogram_record/merge_totals", |b| {
        b.iter(|| black_box(m.totals()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
