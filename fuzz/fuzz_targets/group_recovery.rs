//! A consumer group's snapshot and journal replaced by arbitrary bytes, as
//! by a bad disk: the broker's groups open without a panic (the group
//! starts, or is left out with an error), what a started group reports
//! adds up, and opening it again finds the same state.
//!
//! Input: one byte picks how the bytes are framed (raw, or wrapped in valid
//! checksums so the decoders behind them are reached), two bytes split the
//! rest into the snapshot and the journal.

#![no_main]

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice::config::FsyncPolicy;
use sluice::disk::sim::{Crash, Point, SimDisk};
use sluice::disk::{self, Disk, OpenMode, SharedDisk};
use sluice::groups::{Groups, GroupsOptions, LocalGroups};
use sluice::metrics::Metrics;
use sluice::store::{LocalOptions, LocalStore, NewRecord, Store, TopicSettings};

const DATA: &str = "/data";
const GROUP: &str = "/data/groups/g";

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fn store_options(disk: SharedDisk) -> LocalOptions {
    LocalOptions {
        disk,
        data_dir: DATA.into(),
        defaults: TopicSettings {
            retention: Default::default(),
            segment_bytes: 1 << 20,
            dedup_window_ms: 0,
        },
        fsync: FsyncPolicy::Always,
        fsync_interval: Duration::from_secs(1),
        retention_check_interval: Duration::from_secs(3600),
        dedup_max_bytes: 1 << 20,
        max_open_files: 64,
    }
}

async fn open(disk: SharedDisk) -> (Arc<dyn Store>, LocalGroups) {
    let options = store_options(disk.clone());
    let store = LocalStore::open(options, Arc::new(Metrics::default()))
        .await
        .expect("the store opens");
    let store: Arc<dyn Store> = Arc::new(store);
    let groups = LocalGroups::open(
        store.clone(),
        GroupsOptions {
            disk,
            dir: Path::new(DATA).join("groups"),
            fsync: FsyncPolicy::Always,
            fsync_interval: Duration::from_secs(1),
        },
    )
    .await
    .expect("a damaged group never keeps the groups from opening");
    (store, groups)
}

/// A data directory with a topic of 20 messages and a group's settings,
/// made once.
fn base() -> &'static Point {
    static BASE: OnceLock<Point> = OnceLock::new();
    BASE.get_or_init(|| {
        let disk = SimDisk::new();
        disk::create_dir_durably(&disk, Path::new(DATA)).expect("data dir");
        runtime().block_on(async {
            let (store, groups) = open(Arc::new(disk.clone())).await;
            store.ensure_topic("t").await.expect("topic");
            let records = (0..20)
                .map(|i| NewRecord {
                    payload: Bytes::from(format!("m{i}")),
                    ..NewRecord::default()
                })
                .collect();
            store
                .append("t", records)
                .await
                .expect("append")
                .await
                .expect("stored");
            groups
                .open("g", "t", Default::default())
                .await
                .expect("group");
            groups.shutdown().await;
            store.shutdown().await;
        });
        disk.now()
    })
}

/// `u32 LE len | u32 LE crc32c | body` around each chunk.
fn framed(chunks: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in chunks.chunks(23) {
        out.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(chunk).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

fn write(disk: &SimDisk, path: &str, bytes: &[u8]) {
    let file = disk
        .open(Path::new(path), OpenMode::Truncate)
        .expect("open");
    file.write_at(bytes, 0).expect("write");
}

async fn status(groups: &LocalGroups) -> Option<(u64, u64, u64)> {
    let info = groups.info("g").await.ok()?;
    let t = info.topics.first()?;
    assert!(t.ack_floor <= t.cursor, "floor above cursor: {t:?}");
    assert!(
        t.pending <= t.cursor - t.ack_floor,
        "more pending than delivered: {t:?}"
    );
    Some((t.ack_floor, t.cursor, t.pending))
}

fuzz_target!(|data: &[u8]| {
    let [mode, hi, lo, rest @ ..] = data else {
        return;
    };
    let split = usize::from(u16::from_be_bytes([*hi, *lo])).min(rest.len());
    let (snapshot, journal) = rest.split_at(split);
    let disk = SimDisk::crash(base(), Crash::Everything);
    match mode % 4 {
        0 => {
            write(&disk, &format!("{GROUP}/snapshot"), snapshot);
            write(&disk, &format!("{GROUP}/journal"), journal);
        }
        1 => {
            // A valid header and checksum: the state decoder gets the bytes.
            let mut wrapped = b"SLGS\x01".to_vec();
            wrapped.extend_from_slice(&crc32c::crc32c(snapshot).to_le_bytes());
            wrapped.extend_from_slice(snapshot);
            write(&disk, &format!("{GROUP}/snapshot"), &wrapped);
            write(&disk, &format!("{GROUP}/journal"), journal);
        }
        2 => {
            // Valid entry frames: the event decoder gets the bytes.
            write(&disk, &format!("{GROUP}/journal"), &framed(journal));
        }
        _ => {
            // Good frames with damage between them.
            let mut bytes = framed(journal);
            bytes.splice(0..0, snapshot.iter().copied());
            write(&disk, &format!("{GROUP}/journal"), &bytes);
        }
    }
    runtime().block_on(async {
        let shared: SharedDisk = Arc::new(disk.clone());
        let (store, groups) = open(shared.clone()).await;
        let first = status(&groups).await;
        groups.shutdown().await;
        store.shutdown().await;
        drop(groups);
        let (store, groups) = open(shared).await;
        let second = status(&groups).await;
        assert_eq!(first, second, "recovery is not stable across a reopen");
        groups.shutdown().await;
        store.shutdown().await;
    });
});
