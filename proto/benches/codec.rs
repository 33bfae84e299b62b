//! Frame codec: encoding and decoding a publish of 64 messages (128 B and
//! 1 KiB payloads) and the delivery frame of the same messages.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice_proto::frame::{self, FrameDecoder};
use sluice_proto::{
    ClientFrame, Delivered, DeliveryFrame, Publish, PublishMessage, Request, RequestBody,
};

const MAX: u32 = 16 * 1024 * 1024;

fn publish(size: usize) -> ClientFrame {
    ClientFrame::Request(Request {
        id: 7,
        body: RequestBody::Publish(Publish {
            messages: (0..64)
                .map(|i| PublishMessage {
                    topic: "orders.eu".into(),
                    key: Some(Bytes::from(format!("customer-{i}"))),
                    headers: vec![("region".into(), "eu".into())],
                    payload: Bytes::from(vec![b'x'; size]),
                    id: None,
                })
                .collect(),
        }),
    })
}

fn delivery(size: usize) -> DeliveryFrame {
    DeliveryFrame::Messages {
        messages: (0..64)
            .map(|i| Delivered {
                topic: "orders.eu".into(),
                offset: 1_000_000 + i,
                timestamp_ms: 1_700_000_000_000,
                key: None,
                headers: vec![("region".into(), "eu".into())],
                payload: Bytes::from(vec![b'x'; size]),
                id: None,
                attempt: 0,
            })
            .collect(),
        dropped: 0,
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    for size in [128usize, 1024] {
        group.throughput(Throughput::Elements(64));
        let p = publish(size);
        group.bench_with_input(BenchmarkId::new("encode publish x64", size), &p, |b, p| {
            let mut out = Vec::with_capacity(128 * 1024);
            b.iter(|| {
                out.clear();
                frame::encode_into(p, MAX, &mut out).unwrap();
            })
        });
        let encoded = frame::encode(&p, MAX).unwrap();
        group.bench_with_input(
            BenchmarkId::new("decode publish x64", size),
            &encoded,
            |b, encoded| {
                b.iter(|| {
                    let mut d = FrameDecoder::new(MAX);
                    d.extend(encoded);
                    let f: ClientFrame = d.next_frame().unwrap().unwrap();
                    f
                })
            },
        );
        let d = delivery(size);
        group.bench_with_input(BenchmarkId::new("encode delivery x64", size), &d, |b, d| {
            let mut out = Vec::with_capacity(128 * 1024);
            b.iter(|| {
                out.clear();
                frame::encode_into(d, MAX, &mut out).unwrap();
            })
        });
        let encoded = frame::encode(&d, MAX).unwrap();
        group.bench_with_input(
            BenchmarkId::new("decode delivery x64", size),
            &encoded,
            |b, encoded| {
                b.iter(|| {
                    let mut dec = FrameDecoder::new(MAX);
                    dec.extend(encoded);
                    let f: DeliveryFrame = dec.next_frame().unwrap().unwrap();
                    f
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
