//! Log append on a temp dir under each fsync policy: batches of 64
//! messages of 1 KiB. `always` fsyncs after every batch (what a lone
//! publisher pays; concurrent publishers share fsyncs), `interval` every
//! 100 ms, `never` leaves it to the OS.

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice::store::{LogConfig, NewRecord, TopicLog};

fn batch() -> Vec<NewRecord> {
    (0..64)
        .map(|_| NewRecord {
            key: None,
            headers: Vec::new(),
            payload: Bytes::from(vec![b'x'; 1024]),
            id: None,
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("log append 64 x 1 KiB");
    group.throughput(Throughput::Elements(64));
    group.sample_size(20);
    for policy in ["always", "interval", "never"] {
        group.bench_function(policy, |b| {
            let dir = tempfile::tempdir().unwrap();
            let log = TopicLog::open(
                sluice::store::Files::real(),
                dir.path(),
                LogConfig::default(),
            )
            .unwrap();
            b.iter_custom(|iters| {
                let start = Instant::now();
                let mut last_sync = Instant::now();
                for _ in 0..iters {
                    log.append(batch(), 1_700_000_000_000).unwrap();
                    match policy {
                        "always" => log.sync().unwrap(),
                        "interval" if last_sync.elapsed() >= Duration::from_millis(100) => {
                            log.sync().unwrap();
                            last_sync = Instant::now();
                        }
                        _ => {}
                    }
                }
                start.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
