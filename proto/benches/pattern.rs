//! Topic pattern matching: literals, `*`, `>`, and misses; and one topic
//! against 10,000 subscriptions' patterns, which is what the broker does
//! for a topic when the set of subscriptions changes (it then caches the
//! matching ones per topic, so a commit matches nothing).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
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

    // 10,000 subscriptions: per tenant and region literals, wildcards and
    // tails, of which a handful match the topic.
    let patterns: Vec<Pattern> = (0..10_000)
        .map(|i| {
            let text = match i % 4 {
                0 => format!("orders.t{i}.created"),
                1 => format!("orders.*.created.t{i}"),
                2 => format!("billing.t{i}.>"),
                _ => format!("orders.t{}.*", i % 500),
            };
            Pattern::parse(&text).unwrap()
        })
        .collect();
    let mut group = c.benchmark_group("pattern x 10k subscriptions");
    group.throughput(Throughput::Elements(patterns.len() as u64));
    for (name, topic) in [
        ("some match", "orders.t7.created"),
        ("none match", "shipments.eu.created"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                patterns
                    .iter()
                    .filter(|p| p.matches(black_box(topic)))
                    .count()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
