//! Topic pattern matching: literals, `*`, `>`, and misses.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use sluice_proto::Pattern;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("pattern");
    let cases = [
        ("literal hit", "orders.eu.created", "orders.eu.created"),
        ("literal miss", "orders.eu.created", "orders.us.created"),
        ("star hit", "orders.*.created", "orders.eu.created"),
        ("star miss", "orders.*.created", "orders.eu.cancelled"),
        ("tail hit", "orders.>", "orders.eu.created.v2"),
        ("tail miss", "billing.>", "orders.eu.created.v2"),
    ];
    for (name, pattern, topic) in cases {
        let p = Pattern::parse(pattern).unwrap();
        group.bench_function(name, |b| b.iter(|| p.matches(black_box(topic))));
    }
    group.bench_function("parse", |b| {
        b.iter(|| Pattern::parse(black_box("orders.*.created.>")).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
