//! The local store against the [`Store`] contract, and data directories
//! written by earlier versions.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sluice_proto::{Pattern, RetentionSpec};
use tempfile::TempDir;

use super::{LocalOptions, LocalStore};
use crate::config::FsyncPolicy;
use crate::disk::{self, SharedDisk};
use crate::metrics::Metrics;
use crate::store::{
    Appended, Files, LogConfig, NewRecord, Store, StoreError, TopicEvent, TopicLog, TopicSettings,
};

const WAIT: Duration = Duration::from_secs(20);

pub(super) fn settings() -> TopicSettings {
    TopicSettings {
        retention: RetentionSpec::default(),
        segment_bytes: 1 << 20,
        dedup_window_ms: 60_000,
        default_ttl_ms: None,
        dead_letter_expired: false,
    }
}

/// The options of a test store on `disk` in `data_dir`.
pub(super) fn options(disk: SharedDisk, data_dir: &Path) -> LocalOptions {
    LocalOptions {
        disk,
        data_dir: data_dir.to_owned(),
        defaults: settings(),
        fsync: FsyncPolicy::Always,
        fsync_interval: Duration::from_millis(100),
        retention_check_interval: Duration::from_secs(60),
        dedup_max_bytes: 1 << 20,
        max_open_files: 64,
    }
}

/// Opens a store (on the blocking pool, as the broker does).
pub(super) async fn open_with(options: LocalOptions) -> Result<LocalStore, StoreError> {
    LocalStore::open(options, Arc::new(Metrics::default())).await
}

async fn open(dir: &TempDir) -> LocalStore {
    open_with(options(disk::real(), dir.path()))
        .await
        .expect("store opens")
}

pub(super) fn record(payload: &str, id: Option<&str>) -> NewRecord {
    NewRecord {
        payload: Bytes::from(payload.to_owned()),
        id: id.map(str::to_owned),
        ..NewRecord::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_resolve_when_committed_and_reads_see_them_in_order() {
    let dir = TempDir::new().expect("temp dir");
    let store = open(&dir).await;
    let mut events = store.events();
    let meta = store.ensure_topic("t").await.expect("created");
    assert_eq!((meta.start_offset, meta.committed_end), (0, 0));
    assert!(matches!(events.recv().await, Ok(TopicEvent::Created(m)) if m.name.as_ref() == "t"));
    let mut feed = store.feed(Pattern::parse("t").expect("pattern"), 100);
    let first = store
        .append("t", vec![record("a", Some("x")), record("b", None)])
        .await
        .expect("appended");
    let second = store
        .append("t", vec![record("c", Some("x"))])
        .await
        .expect("appended");
    let first = tokio::time::timeout(WAIT, first)
        .await
        .expect("in time")
        .expect("committed");
    assert!(matches!(first[0], Appended::Stored { offset: 0, .. }));
    assert!(matches!(first[1], Appended::Stored { offset: 1, .. }));
    let second = tokio::time::timeout(WAIT, second)
        .await
        .expect("in time")
        .expect("committed");
    assert_eq!(second, vec![Appended::Duplicate { offset: 0 }]);
    let fed = tokio::time::timeout(WAIT, feed.next())
        .await
        .expect("fed in time");
    let fed = fed.expect("open").expect("a batch");
    assert_eq!(fed.end_offset(), 2);
    let read = store
        .read("t", meta.incarnation, 0, 10, 1 << 20)
        .await
        .expect("read");
    let payloads: Vec<_> = read.records.iter().map(|r| r.payload.clone()).collect();
    assert_eq!(payloads, vec![Bytes::from("a"), Bytes::from("b")]);
    assert_eq!(store.topic("t").expect("exists").committed_end, 2);
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_topic_is_a_new_incarnation_and_old_readers_are_told() {
    let dir = TempDir::new().expect("temp dir");
    let store = open(&dir).await;
    let old = store.create_topic("t", settings()).await.expect("created");
    let again = store
        .create_topic("t", settings())
        .await
        .expect_err("exists");
    assert!(matches!(again, StoreError::TopicExists(_)));
    let ticket = store
        .append("t", vec![record("a", None)])
        .await
        .expect("appended");
    ticket.await.expect("committed");
    let mut events = store.events();
    store.delete_topic("t").await.expect("deleted");
    assert!(
        matches!(events.recv().await, Ok(TopicEvent::Deleted { incarnation, .. }) if incarnation == old.incarnation)
    );
    assert!(matches!(
        store.append("t", vec![record("b", None)]).await,
        Err(StoreError::TopicNotFound(_))
    ));
    let new = store.ensure_topic("t").await.expect("re-created");
    assert_ne!(new.incarnation, old.incarnation);
    assert_eq!(new.committed_end, 0, "nothing of the old topic is left");
    assert!(matches!(
        store.read("t", old.incarnation, 0, 10, 1024).await,
        Err(StoreError::TopicNotFound(_))
    ));
    assert!(matches!(
        store.create_topic("bad..name", settings()).await,
        Err(StoreError::InvalidTopic { .. })
    ));
    store.shutdown().await;
    assert!(matches!(
        store.append("t", vec![record("late", None)]).await,
        Err(StoreError::Closed)
    ));
}

/// A data directory as earlier versions wrote it: a topic whose settings
/// file predates de-duplication, records written by the log's own format
/// writer, and a leftover of an interrupted deletion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_of_an_earlier_version_opens_and_serves_every_message() {
    let dir = TempDir::new().expect("temp dir");
    let topic_dir = dir.path().join("topics").join("orders.eu");
    std::fs::create_dir_all(&topic_dir).expect("topic dir");
    std::fs::write(
        topic_dir.join("topic.json"),
        r#"{"retention":{"max_age_ms":null,"max_bytes":null,"max_messages":null},"segment_bytes":4096}"#,
    )
    .expect("settings");
    {
        let log = TopicLog::open(
            Files::real(),
            &topic_dir,
            LogConfig {
                segment_bytes: 4096,
                ..LogConfig::default()
            },
        )
        .expect("log");
        let batch = (0..100)
            .map(|n| record(&format!("order {n:04}"), None))
            .collect();
        log.append(batch, 1_700_000_000_000).expect("appended");
        log.sync().expect("synced");
    }
    std::fs::create_dir_all(dir.path().join("topics").join(".deleted-x-1")).expect("leftover");
    let store = open(&dir).await;
    let meta = store.topic("orders.eu").expect("recovered");
    assert_eq!((meta.start_offset, meta.committed_end), (0, 100));
    let info = store.info("orders.eu").await.expect("info");
    assert_eq!(
        info.dedup_window_ms, 120_000,
        "the default of topics made before dedup"
    );
    assert!(info.segments > 1, "several segments of 4 KiB");
    let mut next = 0;
    while next < 100 {
        let read = store
            .read("orders.eu", meta.incarnation, next, 1000, 1 << 20)
            .await
            .expect("read");
        for r in &read.records {
            assert_eq!(r.offset, next);
            assert_eq!(r.payload, Bytes::from(format!("order {next:04}")));
            next += 1;
        }
    }
    assert!(
        !dir.path().join("topics").join(".deleted-x-1").exists(),
        "leftover removed"
    );
    let ticket = store
        .append("orders.eu", vec![record("new", None)])
        .await
        .expect("appended");
    assert!(matches!(
        ticket.await.expect("committed")[0],
        Appended::Stored { offset: 100, .. }
    ));
    store.shutdown().await;
}
