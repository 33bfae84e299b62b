//! The local groups over a local store: helpers shared with the
//! crash-state enumeration, and a topic deleted and created again, live and
//! across a restart.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sluice_proto::{GroupOptions, SettleAction};

use super::{GroupsOptions, LocalGroups};
use crate::config::FsyncPolicy;
use crate::disk::{self, SharedDisk};
use crate::groups::{GroupDelivery, Groups, JoinRequest, Member, SettleItem};
use crate::metrics::Metrics;
use crate::store::{LocalOptions, LocalStore, NewRecord, Store, TopicSettings};

pub(super) const WAIT: Duration = Duration::from_secs(10);

fn test_store_options(disk: SharedDisk, data: &Path) -> LocalOptions {
    LocalOptions {
        disk,
        data_dir: data.to_owned(),
        defaults: TopicSettings {
            retention: Default::default(),
            segment_bytes: 1 << 20,
            dedup_window_ms: 0,
            default_ttl_ms: None,
            dead_letter_expired: false,
        },
        fsync: FsyncPolicy::Always,
        fsync_interval: Duration::from_millis(100),
        retention_check_interval: Duration::from_secs(3600),
        dedup_max_bytes: 1 << 20,
        max_open_files: 64,
    }
}

/// A store on `disk` in `data`.
pub(super) async fn store(disk: SharedDisk, data: &Path) -> Arc<dyn Store> {
    let options = test_store_options(disk, data);
    let store = LocalStore::open(options, Arc::new(Metrics::default()))
        .await
        .expect("store opens");
    Arc::new(store)
}

/// The groups of that store.
pub(super) async fn groups(store: Arc<dyn Store>, disk: SharedDisk, data: &Path) -> LocalGroups {
    LocalGroups::open(
        store,
        GroupsOptions {
            disk,
            dir: data.join("groups"),
            fsync: FsyncPolicy::Always,
            fsync_interval: Duration::from_millis(100),
            record: Arc::new(crate::trace::Journal::off()),
        },
    )
    .await
    .expect("groups open")
}

/// Publishes payloads and waits for them to be stored.
pub(super) async fn publish(store: &dyn Store, topic: &str, payloads: &[&str]) {
    let records = payloads
        .iter()
        .map(|p| NewRecord {
            payload: Bytes::from(p.to_string()),
            ..NewRecord::default()
        })
        .collect();
    let ticket = store.append(topic, records).await.expect("appended");
    ticket.await.expect("stored");
}

/// Options of a group that does not redeliver by itself during a test.
pub(super) fn patient() -> GroupOptions {
    GroupOptions {
        ack_wait_ms: 600_000,
        ..GroupOptions::default()
    }
}

pub(super) fn join(groups: &LocalGroups, name: &str) -> Member {
    groups
        .join(
            name,
            JoinRequest {
                client: "test".into(),
                max_in_flight: 64,
                limit: None,
            },
        )
        .expect("joined")
}

pub(super) async fn next(member: &mut Member) -> GroupDelivery {
    tokio::time::timeout(WAIT, member.next())
        .await
        .expect("a delivery in time")
        .expect("the group runs")
}

/// Acks deliveries; panics unless each is accepted.
pub(super) async fn ack(groups: &LocalGroups, member: &Member, done: &[&GroupDelivery]) {
    let items = done
        .iter()
        .map(|d| SettleItem {
            topic: d.topic.to_string(),
            offset: d.record.offset,
            action: SettleAction::Ack,
            attempt: Some(d.attempt),
        })
        .collect();
    let results = groups
        .settle(member.group(), vec![member.id()], items)
        .await
        .expect("settled");
    for result in results {
        result.expect("accepted");
    }
}

fn payload(d: &GroupDelivery) -> String {
    String::from_utf8(d.record.payload.to_vec()).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_created_again_is_read_from_its_start_live() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store(disk::real(), dir.path()).await;
    let groups = groups(store.clone(), disk::real(), dir.path()).await;
    store.ensure_topic("r").await.expect("topic");
    publish(&*store, "r", &["a", "b", "c"]).await;
    groups.open("g", "r", patient()).await.expect("group");
    let mut member = join(&groups, "g");
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next(&mut member).await);
    }
    ack(&groups, &member, &got.iter().collect::<Vec<_>>()).await;

    store.delete_topic("r").await.expect("deleted");
    store.ensure_topic("r").await.expect("created again");
    publish(&*store, "r", &["new-0", "new-1"]).await;
    let first = next(&mut member).await;
    let second = next(&mut member).await;
    assert_eq!(
        [
            (first.record.offset, payload(&first)),
            (second.record.offset, payload(&second))
        ],
        [(0, "new-0".to_owned()), (1, "new-1".to_owned())],
        "the new topic's first messages are not skipped"
    );
    ack(&groups, &member, &[&first, &second]).await;
    let info = groups.info("g").await.expect("info");
    assert_eq!((info.topics[0].cursor, info.topics[0].lag), (2, 0));
    drop(member);
    groups.shutdown().await;
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_created_again_while_the_groups_were_down_is_read_from_its_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store(disk::real(), dir.path()).await;
    let groups1 = groups(store.clone(), disk::real(), dir.path()).await;
    store.ensure_topic("r").await.expect("topic");
    publish(&*store, "r", &["a", "b", "c", "d"]).await;
    groups1.open("g", "r", patient()).await.expect("group");
    let mut member = join(&groups1, "g");
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next(&mut member).await);
    }
    // Three acked, one still pending at the stop.
    ack(&groups1, &member, &got[..3].iter().collect::<Vec<_>>()).await;
    drop(member);
    groups1.shutdown().await;
    drop(groups1);

    store.delete_topic("r").await.expect("deleted");
    store.ensure_topic("r").await.expect("created again");
    publish(&*store, "r", &["new-0", "new-1"]).await;
    let groups2 = groups(store.clone(), disk::real(), dir.path()).await;
    let mut member = join(&groups2, "g");
    let first = next(&mut member).await;
    let second = next(&mut member).await;
    assert_eq!(
        [payload(&first), payload(&second)],
        ["new-0", "new-1"],
        "nothing of the old topic, nothing of the new skipped"
    );
    ack(&groups2, &member, &[&first, &second]).await;
    let info = groups2.info("g").await.expect("info");
    assert_eq!((info.topics[0].pending, info.topics[0].lag), (0, 0));
    drop(member);
    groups2.shutdown().await;
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_message_that_cannot_be_read_at_restart_is_retried_not_skipped() {
    use crate::disk::fault::{Call, Fault, FaultDisk, EIO};
    let dir = tempfile::tempdir().expect("temp dir");
    let faults = FaultDisk::new(disk::real());
    let shared: SharedDisk = Arc::new(faults.clone());
    let store1 = store(shared.clone(), dir.path()).await;
    store1.ensure_topic("p").await.expect("topic");
    publish(&*store1, "p", &["only"]).await;
    let groups1 = groups(store1.clone(), shared.clone(), dir.path()).await;
    groups1.open("g", "p", patient()).await.expect("group");
    let mut member = join(&groups1, "g");
    let held = next(&mut member).await;
    assert_eq!(held.record.offset, 0);
    // Stopped with the message pending.
    drop(member);
    groups1.shutdown().await;
    store1.shutdown().await;

    let store2 = store(shared.clone(), dir.path()).await;
    // The first reads of the topic at the restart fail.
    faults.inject(Call::Read, "topics/p/", Fault::Errno(EIO), Some(3));
    let groups2 = groups(store2.clone(), shared, dir.path()).await;
    let mut member = join(&groups2, "g");
    let again = next(&mut member).await;
    assert_eq!((again.record.offset, again.attempt), (0, 2));
    assert!(faults.hits() >= 1, "the read did fail at first");
    ack(&groups2, &member, &[&again]).await;
    drop(member);
    groups2.shutdown().await;
    store2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_came_back_shorter_does_not_hide_new_messages() {
    use crate::disk::sim::{Crash, SimDisk};
    let disk = SimDisk::new();
    let data = Path::new("/data");
    disk::create_dir_durably(&disk, data).expect("data dir");
    let shared: SharedDisk = Arc::new(disk.clone());
    // The log is not fsynced; the group's journal is.
    let lax = {
        let store = store(shared.clone(), data).await;
        store.ensure_topic("s").await.expect("topic");
        store.shutdown().await;
        let options = LocalOptions {
            fsync: FsyncPolicy::Never,
            ..test_store_options(shared.clone(), data)
        };
        let store = LocalStore::open(options, Arc::new(Metrics::default()))
            .await
            .expect("opens");
        Arc::new(store) as Arc<dyn Store>
    };
    publish(&*lax, "s", &["lost-0", "lost-1", "lost-2"]).await;
    let groups1 = groups(lax.clone(), shared, data).await;
    groups1.open("g", "s", patient()).await.expect("group");
    let mut member = join(&groups1, "g");
    let got = [
        next(&mut member).await,
        next(&mut member).await,
        next(&mut member).await,
    ];
    ack(&groups1, &member, &got.iter().collect::<Vec<_>>()).await;
    let point = disk.now();
    drop(member);
    groups1.shutdown().await;
    lax.shutdown().await;

    // Power loss: the acks are on disk, the messages are not.
    let after: SharedDisk = Arc::new(SimDisk::crash(&point, Crash::DurableOnly));
    let store2 = store(after.clone(), data).await;
    assert_eq!(store2.topic("s").expect("topic").committed_end, 0);
    let groups2 = groups(store2.clone(), after, data).await;
    publish(&*store2, "s", &["new-0", "new-1"]).await;
    let mut member = join(&groups2, "g");
    let first = next(&mut member).await;
    let second = next(&mut member).await;
    assert_eq!(
        [
            (first.record.offset, payload(&first)),
            (second.record.offset, payload(&second))
        ],
        [(0, "new-0".to_owned()), (1, "new-1".to_owned())]
    );
    drop(member);
    groups2.shutdown().await;
    store2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_interval_the_journal_is_fsynced_within_the_interval() {
    use super::state::Event;
    use crate::disk::sim::{Crash, SimDisk};
    use crate::disk::Disk;
    use crate::store::journal::decode_entries;
    let disk = SimDisk::new();
    let data = Path::new("/data");
    disk::create_dir_durably(&disk, data).expect("data dir");
    let shared: SharedDisk = Arc::new(disk.clone());
    let store = store(shared.clone(), data).await;
    store.ensure_topic("i").await.expect("topic");
    publish(&*store, "i", &["x"]).await;
    let groups = LocalGroups::open(
        store.clone(),
        GroupsOptions {
            disk: shared,
            dir: data.join("groups"),
            fsync: FsyncPolicy::Interval,
            fsync_interval: Duration::from_millis(20),
            record: Arc::new(crate::trace::Journal::off()),
        },
    )
    .await
    .expect("groups open");
    groups.open("g", "i", patient()).await.expect("group");
    let mut member = join(&groups, "g");
    let d = next(&mut member).await;
    ack(&groups, &member, &[&d]).await;
    // Bounded: the ack reaches the disk within a few intervals.
    let durable_ack = || {
        let after = SimDisk::crash(&disk.now(), Crash::DurableOnly);
        after
            .read(Path::new("/data/groups/g/journal"))
            .map(|bytes| {
                decode_entries::<Event>(&bytes)
                    .events
                    .iter()
                    .any(|e| matches!(e, Event::Settled { offset: 0, .. }))
            })
            .unwrap_or(false)
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while !durable_ack() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the journal was never fsynced"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(member);
    groups.shutdown().await;
    store.shutdown().await;
}
