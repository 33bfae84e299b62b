//! Cost of a plugin call per message, by batch size: a pass-through
//! plugin (the boundary alone) and the example router; and each stage of
//! the example order pipeline (`sluice bench pipeline`) on 1 KiB orders,
//! so a slow pipeline can be pinned on its stage. Needs the example
//! components: `cargo xtask plugins`, then `cargo bench -p sluice`.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice::plugin::pipeline::to_batch;
use sluice::plugin::{LoadedPlugin, PluginEngine, PluginSpec};
use sluice::store::NewRecord;

fn component(file: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/dist")
        .join(file);
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask plugins` first",
        path.display()
    );
    path
}

/// Loads an example plugin from `plugins/dist` as the broker would.
fn load(engine: &PluginEngine, label: &str, file: &str, config: &str) -> LoadedPlugin {
    engine
        .load(PluginSpec {
            name: label.into(),
            path: component(file),
            config_json: config.into(),
            timeout: Duration::from_secs(5),
            memory_bytes: 64 * 1024 * 1024,
        })
        .expect("plugin loads")
}

fn records(n: usize) -> Vec<NewRecord> {
    (0..n)
        .map(|i| NewRecord {
            key: Some(Bytes::from(format!("customer-{i}"))),
            headers: vec![("region".into(), "eu".into())],
            payload: Bytes::from(vec![b'x'; 1024]),
            id: None,
        })
        .collect()
}

fn bench_plugins(c: &mut Criterion) {
    let engine = PluginEngine::new().expect("engine");
    let plugins = [
        ("pass-through", "test_hostile.wasm", r#"{"mode": "pass"}"#),
        (
            "route-by-header",
            "route_by_header.wasm",
            r#"{"header": "region", "prefix": "orders."}"#,
        ),
    ];
    for (label, file, config) in plugins {
        let plugin = load(&engine, label, file, config);
        let mut group = c.benchmark_group(format!("plugin call/{label}"));
        for size in [1usize, 16, 256] {
            let recs = records(size);
            group.throughput(Throughput::Elements(size as u64));
            // The boundary alone: lowering the flat batch, the guest's
            // work, lifting the outcomes.
            let batch = std::sync::Arc::new(to_batch("orders.incoming", recs.iter(), 0));
            group.bench_with_input(BenchmarkId::new("call", size), &batch, |b, batch| {
                b.iter(|| plugin.call(batch).expect("call succeeds"))
            });
            // What a publish pays: laying the messages out flat, then the call.
            group.bench_with_input(BenchmarkId::new("layout+call", size), &recs, |b, recs| {
                b.iter(|| {
                    let batch = std::sync::Arc::new(to_batch("orders.incoming", recs.iter(), 0));
                    plugin.call(&batch).expect("call succeeds")
                })
            });
        }
        group.finish();
    }
}

/// 64 orders of about 1 KiB, as `sluice bench pipeline` publishes them.
fn orders() -> Vec<NewRecord> {
    let order = Bytes::from(format!(
        r#"{{"id":"o-1","region":"eu","total":42.5,"customer":{{"email":"ann@example.com","phone":"+44 20 7946 0000"}},"note":"{}"}}"#,
        "n".repeat(1024 - 120)
    ));
    (0..64)
        .map(|_| NewRecord {
            key: None,
            headers: vec![("region".into(), "eu".into())],
            payload: order.clone(),
            id: None,
        })
        .collect()
}

fn bench_order_stages(c: &mut Criterion) {
    let engine = PluginEngine::new().expect("engine");
    let stages = [
        (
            "validate",
            "validate_json_schema.wasm",
            r#"{"schema": {"type": "object", "required": ["id", "region", "total"], "properties": {"id": {"type": "string"}, "region": {"type": "string", "enum": ["eu", "us", "apac"]}, "total": {"type": "number", "minimum": 0}}}}"#,
        ),
        (
            "filter",
            "filter_json.wasm",
            r#"{"conditions": [{"field": "test", "exists": false}]}"#,
        ),
        (
            "redact",
            "redact_pii.wasm",
            r#"{"fields": ["customer.phone"]}"#,
        ),
        (
            "route",
            "route_by_header.wasm",
            r#"{"header": "region", "prefix": "bench.orders."}"#,
        ),
    ];
    let recs = orders();
    let batch = std::sync::Arc::new(to_batch("bench.pipeline.orders", recs.iter(), 0));
    let mut group = c.benchmark_group("order pipeline stage, 64 x 1 KiB");
    group.throughput(Throughput::Elements(recs.len() as u64));
    for (label, file, config) in stages {
        let plugin = load(&engine, label, file, config);
        group.bench_function(label, |b| {
            b.iter(|| plugin.call(&batch).expect("call succeeds"))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench_plugins, bench_order_stages
}
criterion_main!(benches);
