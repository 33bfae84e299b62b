//! Crash-state enumeration: a workload runs on the power-loss model, and
//! at every durability point it passed (every fsync of a file or a
//! directory, and the end), each kind of power loss is applied, the store
//! is opened again, and the invariants are checked:
//!
//! - startup never fails;
//! - every acknowledged publish is there exactly once, at its offset, with
//!   its bytes (unless retention removed it, or its topic was deleted);
//! - offsets are dense;
//! - the recovered store takes writes at its next offset.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::tests::{open_with, options, record, settings};
use super::LocalStore;
use crate::disk::sim::{Crash, Point, SimDisk};
use crate::disk::{self, SharedDisk};
use crate::store::{Appended, Store, TopicSettings};

/// Mixed crashes tried at each point, besides the three fixed kinds.
const MIXED: u64 = 8;

/// One acknowledged message: where it went and when it was acked.
#[derive(Debug, Clone)]
struct Acked {
    topic: &'static str,
    incarnation: u64,
    offset: u64,
    payload: String,
    /// [`SimDisk::tick`] right after the ack.
    tick: u64,
}

/// The workload; returns what was acked.
async fn workload(disk: &SimDisk, store: &LocalStore) -> Vec<Acked> {
    let small = TopicSettings {
        segment_bytes: 160,
        retention: sluice_proto::RetentionSpec {
            max_messages: Some(6),
            ..Default::default()
        },
        ..settings()
    };
    store.create_topic("a", small).await.expect("topic a");
    store.ensure_topic("b").await.expect("topic b");
    let mut acked = Vec::new();
    for i in 0..24u32 {
        let (topic, count) = if i % 4 == 3 {
            ("b", 1)
        } else {
            ("a", 1 + i % 3)
        };
        let incarnation = store.topic(topic).expect("exists").incarnation;
        let records: Vec<_> = (0..count)
            .map(|k| {
                let payload = format!("{topic}-{i}-{k}");
                let id = (k == 0).then(|| format!("id-{i}"));
                record(&payload, id.as_deref())
            })
            .collect();
        let payloads: Vec<String> = records
            .iter()
            .map(|r| String::from_utf8(r.payload.to_vec()).expect("utf-8"))
            .collect();
        let ticket = store.append(topic, records).await.expect("appended");
        let outcomes = ticket.await.expect("committed");
        let tick = disk.tick();
        for (outcome, payload) in outcomes.iter().zip(payloads) {
            let Appended::Stored { offset, .. } = outcome else {
                panic!("nothing here is a duplicate: {outcomes:?}");
            };
            acked.push(Acked {
                topic,
                incarnation,
                offset: *offset,
                payload,
                tick,
            });
        }
        if i == 9 {
            store.delete_topic("b").await.expect("deleted");
            store.ensure_topic("b").await.expect("created again");
        }
        if i % 6 == 5 {
            store.apply_retention().await;
        }
    }
    acked
}

/// Every record of a topic from its start, checking the offsets are dense.
async fn read_all(store: &LocalStore, topic: &str, what: &str) -> (u64, Vec<(u64, String)>) {
    let meta = store.topic(topic).expect("topic");
    let mut next = meta.start_offset;
    let mut out = Vec::new();
    loop {
        let batch = store
            .read(topic, meta.incarnation, next, 1000, 1 << 20)
            .await
            .expect("a recovered topic reads");
        if batch.records.is_empty() {
            return (meta.start_offset, out);
        }
        for r in batch.records {
            assert_eq!(r.offset, next, "{what}: offsets of {topic} are dense");
            next += 1;
            out.push((
                r.offset,
                String::from_utf8(r.payload.to_vec()).expect("utf-8"),
            ));
        }
    }
}

/// A recovered topic: its incarnation, start offset and records.
type Recovered = (u64, u64, Vec<(u64, String)>);

/// Opens the store a crash left and checks the invariants.
async fn check(point: &Point, crash: Crash, acked: &[Acked]) {
    let what = format!("point {} crash {crash:?}", point.seq);
    let after = SimDisk::crash(point, crash);
    let store = open_with(options(Arc::new(after) as SharedDisk, Path::new("/data")))
        .await
        .unwrap_or_else(|e| panic!("{what}: startup failed: {e}"));
    // Retention runs at startup too; let it finish before reading from the start.
    store.apply_retention().await;
    let mut found: HashMap<&str, Recovered> = HashMap::new();
    for topic in ["a", "b"] {
        if let Some(meta) = store.topic(topic) {
            let (start, records) = read_all(&store, topic, &what).await;
            found.insert(topic, (meta.incarnation, start, records));
        }
    }
    // The first incarnation of "b" is deleted by the workload.
    let deleted = acked.iter().find(|a| a.topic == "b").map(|a| a.incarnation);
    for ack in acked.iter().filter(|a| a.tick < point.seq) {
        let Some((incarnation, start, records)) = found.get(ack.topic) else {
            assert_eq!(
                Some(ack.incarnation),
                deleted,
                "{what}: topic {} with acked messages is gone",
                ack.topic
            );
            continue;
        };
        if *incarnation != ack.incarnation || ack.offset < *start {
            // Deleted since (and the delete is durable), or retention removed it.
            continue;
        }
        let copies: Vec<_> = records.iter().filter(|(_, p)| *p == ack.payload).collect();
        assert_eq!(
            copies,
            [&(ack.offset, ack.payload.clone())],
            "{what}: acked {ack:?} must be there once, at its offset"
        );
    }
    // The recovered store takes writes where it left off.
    for (topic, (_, _, records)) in &found {
        let next = records.last().map_or(
            store.topic(topic).expect("topic").committed_end,
            |(o, _)| o + 1,
        );
        let ticket = store
            .append(topic, vec![record("after", None)])
            .await
            .expect("appends");
        let outcome = ticket
            .await
            .unwrap_or_else(|e| panic!("{what}: {topic} takes no write: {e}"));
        assert!(
            matches!(outcome[0], Appended::Stored { offset, .. } if offset == next),
            "{what}: {outcome:?} after {next}"
        );
    }
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_crash_state_of_the_store_keeps_every_acked_publish() {
    let disk = SimDisk::new();
    disk::create_dir_durably(&disk, Path::new("/data")).expect("data dir");
    disk.record_points(true);
    let store = open_with(options(
        Arc::new(disk.clone()) as SharedDisk,
        Path::new("/data"),
    ))
    .await
    .expect("opens");
    let acked = workload(&disk, &store).await;
    let mut points = disk.points();
    points.push(disk.now());
    store.shutdown().await;
    assert!(points.len() > 50, "{} durability points", points.len());

    let mut states = 0;
    for (point, crash) in Crash::states(&points, MIXED) {
        check(point, crash, &acked).await;
        states += 1;
    }
    // Reported in the issue notes: how many crash states were checked.
    eprintln!(
        "store crash states checked: {states} ({} points)",
        points.len()
    );
}
