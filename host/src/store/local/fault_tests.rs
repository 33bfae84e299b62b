//! The local store when the disk fails: fsync errors, a full disk, short
//! writes, failed creates and renames, long names. Faults come from
//! [`FaultDisk`] over real files, or from the power-loss model.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;

use super::tests::{open_with, options, record, settings};
use super::LocalStore;
use crate::disk::fault::{Call, Fault, FaultDisk, EIO, EMFILE, ENOSPC};
use crate::disk::sim::{Crash, SimDisk};
use crate::disk::{self, Disk, SharedDisk};
use crate::store::{Appended, NewRecord, Store, StoreError, TopicSettings};

const WAIT: Duration = Duration::from_secs(20);

fn shared(disk: impl Disk) -> SharedDisk {
    Arc::new(disk)
}

/// Appends and waits for the commit.
async fn publish(
    store: &LocalStore,
    topic: &str,
    records: Vec<NewRecord>,
) -> Result<Vec<Appended>, StoreError> {
    let ticket = store.append(topic, records).await?;
    tokio::time::timeout(WAIT, ticket)
        .await
        .expect("answered in time")
}

/// Every committed payload of a topic, in offset order, checking the offsets are dense from 0.
async fn payloads(store: &LocalStore, topic: &str) -> Vec<String> {
    let meta = store.topic(topic).expect("topic exists");
    let mut out = Vec::new();
    let mut next = meta.start_offset;
    loop {
        let batch = store
            .read(topic, meta.incarnation, next, 1000, 1 << 20)
            .await
            .expect("read");
        if batch.records.is_empty() {
            return out;
        }
        for r in batch.records {
            assert_eq!(r.offset, next, "offsets are dense");
            next += 1;
            out.push(String::from_utf8(r.payload.to_vec()).expect("utf-8"));
        }
    }
}

fn stored_at(appended: &[Appended]) -> Vec<u64> {
    appended
        .iter()
        .map(|a| match a {
            Appended::Stored { offset, .. } => *offset,
            Appended::Duplicate { .. } => panic!("a duplicate: {appended:?}"),
        })
        .collect()
}

/// A store over real files in a temp dir, through a fault layer.
async fn faulty_store() -> (TempDir, FaultDisk, LocalStore) {
    let dir = TempDir::new().expect("temp dir");
    let faults = FaultDisk::new(disk::real());
    let store = open_with(options(shared(faults.clone()), dir.path()))
        .await
        .expect("opens");
    (dir, faults, store)
}

fn sim_data_dir(disk: &SimDisk) -> &'static Path {
    disk::create_dir_durably(disk, Path::new("/data")).expect("data dir");
    Path::new("/data")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_refuses_its_batch_and_the_topic_until_a_restart() {
    let disk = SimDisk::new();
    let data = sim_data_dir(&disk);
    let store = open_with(options(shared(disk.clone()), data))
        .await
        .expect("opens");
    store.ensure_topic("t").await.expect("topic");
    publish(&store, "t", vec![record("a", Some("a"))])
        .await
        .expect("stored");

    disk.fail_syncs("/data/topics/t/", 1);
    let failed = publish(&store, "t", vec![record("b", Some("b"))]).await;
    assert!(matches!(failed, Err(StoreError::Failed(_))), "{failed:?}");
    // Not retried as if nothing happened: the topic refuses writes now.
    let refused = publish(&store, "t", vec![record("c", None)]).await;
    assert!(matches!(refused, Err(StoreError::Failed(_))), "{refused:?}");
    // Readers never see what was not made durable.
    assert_eq!(payloads(&store, "t").await, ["a"]);
    assert_eq!(store.topic("t").expect("topic").committed_end, 1);

    // The power goes; the restart recovers what is really on disk, and the
    // retry of the unacked message is stored, not answered "duplicate".
    let point = disk.now();
    store.shutdown().await;
    let after = SimDisk::crash(&point, Crash::DurableOnly);
    let store = open_with(options(shared(after), data))
        .await
        .expect("reopens");
    assert_eq!(payloads(&store, "t").await, ["a"]);
    let retried = publish(&store, "t", vec![record("b", Some("b"))])
        .await
        .expect("stored");
    assert_eq!(stored_at(&retried), [1]);
    assert_eq!(payloads(&store, "t").await, ["a", "b"]);
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enospc_from_fsync_fails_the_topic_too() {
    let (dir, faults, store) = faulty_store().await;
    store.ensure_topic("t").await.expect("topic");
    faults.inject(Call::Sync, "topics/t/", Fault::Errno(ENOSPC), Some(1));
    let failed = publish(&store, "t", vec![record("x", Some("x"))]).await;
    assert!(matches!(failed, Err(StoreError::Failed(_))), "{failed:?}");
    assert!(publish(&store, "t", vec![record("y", None)]).await.is_err());
    // Other topics are not touched.
    store.ensure_topic("u").await.expect("topic");
    publish(&store, "u", vec![record("fine", None)])
        .await
        .expect("stored");
    store.shutdown().await;

    // The restart fsyncs what it recovers before counting it: here the page
    // cache did hold "x", so it is stored now and its id is known.
    let store = open_with(options(disk::real(), dir.path()))
        .await
        .expect("reopens");
    assert_eq!(payloads(&store, "t").await, ["x"]);
    let again = publish(&store, "t", vec![record("x", Some("x"))])
        .await
        .expect("answered");
    assert_eq!(again, [Appended::Duplicate { offset: 0 }]);
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_publishes_and_writing_resumes_when_space_returns() {
    let (dir, faults, store) = faulty_store().await;
    store.ensure_topic("t").await.expect("topic");
    store.ensure_topic("other").await.expect("topic");
    publish(&store, "t", vec![record("before", None)])
        .await
        .expect("stored");
    publish(&store, "other", vec![record("o", None)])
        .await
        .expect("stored");

    faults.fill();
    for _ in 0..3 {
        let full = publish(&store, "t", vec![record("during", Some("d"))]).await;
        assert!(matches!(full, Err(StoreError::Full { .. })), "{full:?}");
        assert!(full.unwrap_err().to_string().starts_with("storage full"));
    }
    // Reads go on, of this topic and the others.
    assert_eq!(payloads(&store, "t").await, ["before"]);
    assert_eq!(payloads(&store, "other").await, ["o"]);

    faults.clear();
    let resumed = publish(&store, "t", vec![record("after", Some("d"))])
        .await
        .expect("stored");
    assert_eq!(
        stored_at(&resumed),
        [1],
        "no offset was used by the refused writes"
    );
    store.shutdown().await;
    let store = open_with(options(disk::real(), dir.path()))
        .await
        .expect("reopens");
    assert_eq!(payloads(&store, "t").await, ["before", "after"]);
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_write_leaves_no_stray_record_behind() {
    let (dir, faults, store) = faulty_store().await;
    store.ensure_topic("t").await.expect("topic");
    publish(&store, "t", vec![record("first", None)])
        .await
        .expect("stored");
    // The write stops after the whole first record of a batch of two: on
    // disk it is a valid record that nobody was told is stored.
    let batch = vec![record("lost-1", Some("l1")), record("lost-2", None)];
    let first_len = crate::store::record::encoded_len(&batch[0]).expect("len");
    faults.inject(
        Call::Write,
        ".log",
        Fault::ShortWrite { keep: first_len },
        Some(1),
    );
    let failed = publish(&store, "t", batch).await;
    assert!(matches!(failed, Err(StoreError::Io { .. })), "{failed:?}");
    store.shutdown().await;

    // Nothing of it comes back at recovery, and its id was never taken.
    let store = open_with(options(disk::real(), dir.path()))
        .await
        .expect("reopens");
    assert_eq!(payloads(&store, "t").await, ["first"]);
    let retried = publish(&store, "t", vec![record("lost-1", Some("l1"))])
        .await
        .expect("stored");
    assert_eq!(stored_at(&retried), [1]);
    store.shutdown().await;
}

fn small_segments() -> TopicSettings {
    TopicSettings {
        segment_bytes: 200,
        ..settings()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_whose_creation_failed_is_created_on_the_next_try() {
    let (dir, faults, store) = faulty_store().await;
    store
        .create_topic("t", small_segments())
        .await
        .expect("topic");
    let fill = |from: usize| {
        (from..from + 3)
            .map(|i| record(&format!("m{i:03}-{}", "x".repeat(40)), None))
            .collect::<Vec<_>>()
    };
    publish(&store, "t", fill(0)).await.expect("stored");
    // The roll to a new segment cannot open its index (out of descriptors).
    faults.inject(Call::Open, ".idx", Fault::Errno(EMFILE), Some(1));
    assert!(publish(&store, "t", fill(3)).await.is_err());
    // No `.log` was left behind to fail every later try with EEXIST.
    publish(&store, "t", fill(3))
        .await
        .expect("the next try rolls");
    publish(&store, "t", fill(6)).await.expect("stored");
    let info = store.info("t").await.expect("info");
    assert!(info.segments > 2, "{info:?}");
    store.shutdown().await;
    let store = open_with(options(disk::real(), dir.path()))
        .await
        .expect("reopens");
    assert_eq!(payloads(&store, "t").await.len(), 9);
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delete_changes_nothing_and_the_next_one_works() {
    let (dir, faults, store) = faulty_store().await;
    store.ensure_topic("t").await.expect("topic");
    publish(&store, "t", vec![record("a", None)])
        .await
        .expect("stored");
    faults.inject(Call::Rename, "topics/t", Fault::Errno(EIO), Some(1));
    assert!(store.delete_topic("t").await.is_err());
    // Not wedged: it takes writes and can be deleted and created again.
    publish(&store, "t", vec![record("b", None)])
        .await
        .expect("stored");
    assert_eq!(payloads(&store, "t").await, ["a", "b"]);
    store.delete_topic("t").await.expect("deleted");
    store.ensure_topic("t").await.expect("created again");
    publish(&store, "t", vec![record("new", None)])
        .await
        .expect("stored");
    store.shutdown().await;
    let store = open_with(options(disk::real(), dir.path()))
        .await
        .expect("reopens");
    assert_eq!(payloads(&store, "t").await, ["new"]);
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_with_names_of_255_bytes_live_and_die_like_others() {
    let dir = TempDir::new().expect("temp dir");
    let store = open_with(options(disk::real(), dir.path()))
        .await
        .expect("opens");
    let long = format!("{}.{}", "a".repeat(200), "b".repeat(54));
    let other = format!("{}.{}", "a".repeat(200), "c".repeat(54));
    assert_eq!(long.len(), 255);
    for name in [&long, &other] {
        store.ensure_topic(name).await.expect("created");
        publish(&store, name, vec![record(name, None)])
            .await
            .expect("stored");
    }
    store.delete_topic(&long).await.expect("deleted");
    store.ensure_topic(&long).await.expect("created again");
    publish(&store, &long, vec![record("again", None)])
        .await
        .expect("stored");
    store.shutdown().await;

    let store = open_with(options(disk::real(), dir.path()))
        .await
        .expect("reopens");
    assert_eq!(payloads(&store, &long).await, ["again"]);
    assert_eq!(payloads(&store, &other).await, std::slice::from_ref(&other));
    let names: Vec<_> = store
        .topics(&sluice_proto::Pattern::parse(">").expect("pattern"))
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(names, [long.clone(), other.clone()]);
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_directory_without_its_settings_is_left_alone_not_given_defaults() {
    let dir = TempDir::new().expect("temp dir");
    let store = open_with(options(disk::real(), dir.path()))
        .await
        .expect("opens");
    store
        .create_topic(
            "t",
            TopicSettings {
                dedup_window_ms: 5,
                ..settings()
            },
        )
        .await
        .expect("created");
    publish(&store, "t", vec![record("a", None)])
        .await
        .expect("stored");
    store.shutdown().await;
    let settings_file = dir.path().join("topics/t/topic.json");
    std::fs::remove_file(&settings_file).expect("removed");
    let store = open_with(options(disk::real(), dir.path()))
        .await
        .expect("reopens");
    assert!(
        store.topic("t").is_none(),
        "not served with made-up settings"
    );
    assert!(
        dir.path()
            .join("topics/t/00000000000000000000.log")
            .exists(),
        "data kept"
    );
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_recovery_finds_is_made_durable_before_it_counts() {
    let disk = SimDisk::new();
    let data = sim_data_dir(&disk);
    let mut lax = options(shared(disk.clone()), data);
    lax.fsync = crate::config::FsyncPolicy::Never;
    let store = open_with(lax).await.expect("opens");
    store.ensure_topic("t").await.expect("topic");
    publish(&store, "t", vec![record("a", None), record("b", None)])
        .await
        .expect("acked, not fsynced");
    // The process dies; the page cache keeps the records.
    let killed = SimDisk::crash(&disk.now(), Crash::Everything);
    store.shutdown().await;
    let store = open_with(options(shared(killed.clone()), data))
        .await
        .expect("reopens");
    assert_eq!(payloads(&store, "t").await, ["a", "b"]);
    // What it served after the restart survives a power loss right after.
    let after = SimDisk::crash(&killed.now(), Crash::DurableOnly);
    store.shutdown().await;
    let store = open_with(options(shared(after), data))
        .await
        .expect("reopens");
    assert_eq!(payloads(&store, "t").await, ["a", "b"]);
    store.shutdown().await;
}

/// Publishes `m00`..`m11` to a topic of 200-byte segments (several rolls).
async fn publish_across_rolls(store: &LocalStore) -> Vec<String> {
    store
        .create_topic("t", small_segments())
        .await
        .expect("topic");
    let sent: Vec<String> = (0..12).map(|i| format!("m{i:02}")).collect();
    for payload in &sent {
        publish(store, "t", vec![record(payload, None)])
            .await
            .expect("acked");
    }
    sent
}

/// What a power loss now would leave of topic `t`.
async fn after_power_loss(disk: &SimDisk, data: &Path) -> Vec<String> {
    let after = SimDisk::crash(&disk.now(), Crash::DurableOnly);
    let store = open_with(options(shared(after), data))
        .await
        .expect("reopens");
    let found = match store.topic("t") {
        Some(_) => payloads(&store, "t").await,
        None => Vec::new(),
    };
    store.shutdown().await;
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_fsync_never_a_roll_does_not_wait_for_an_fsync() {
    let disk = SimDisk::new();
    let data = sim_data_dir(&disk);
    let mut never = options(shared(disk.clone()), data);
    never.fsync = crate::config::FsyncPolicy::Never;
    // The first periodic sync of sealed segments is an hour away.
    never.fsync_interval = Duration::from_secs(3600);
    let store = open_with(never).await.expect("opens");
    publish_across_rolls(&store).await;
    // Nothing was fsynced on the way: the rolls left it to the OS.
    assert_eq!(after_power_loss(&disk, data).await, Vec::<String>::new());
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_fsync_never_sealed_segments_become_durable_within_the_interval() {
    let disk = SimDisk::new();
    let data = sim_data_dir(&disk);
    let mut never = options(shared(disk.clone()), data);
    never.fsync = crate::config::FsyncPolicy::Never;
    never.fsync_interval = Duration::from_millis(10);
    let store = open_with(never).await.expect("opens");
    let sent = publish_across_rolls(&store).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let durable = loop {
        let durable = after_power_loss(&disk, data).await;
        // The segment holding m11 is active: only a roll seals it.
        if durable.len() >= sent.len() / 2 || tokio::time::Instant::now() > deadline {
            break durable;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        durable.len() >= sent.len() / 2 && durable.len() < sent.len(),
        "the sealed segments and not the active one are durable: {durable:?}"
    );
    assert_eq!(durable[..], sent[..durable.len()], "a prefix of the log");
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_in_the_dedup_window_does_not_stop_startup() {
    let dir = TempDir::new().expect("temp dir");
    let store = open_with(options(disk::real(), dir.path()))
        .await
        .expect("opens");
    store
        .create_topic("t", small_segments())
        .await
        .expect("topic");
    for i in 0..12 {
        let id = format!("id-{i}");
        publish(
            &store,
            "t",
            vec![record(&format!("m{i:02}-{}", "x".repeat(30)), Some(&id))],
        )
        .await
        .expect("stored");
    }
    store.shutdown().await;
    // Flip a byte inside the first (sealed) segment's second record.
    let first = dir.path().join("topics/t/00000000000000000000.log");
    let mut bytes = std::fs::read(&first).expect("read");
    let at = bytes.len() / 2 + 10;
    bytes[at] ^= 0xff;
    std::fs::write(&first, bytes).expect("write");
    let store = open_with(options(disk::real(), dir.path()))
        .await
        .expect("the damage does not keep the broker from starting");
    assert!(store.topic("t").is_some());
    // New publishes are taken.
    publish(&store, "t", vec![record("new", Some("id-new"))])
        .await
        .expect("stored");
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_named_topic_from_before_shortened_directories_still_opens() {
    let dir = TempDir::new().expect("temp dir");
    let name = format!("{}.old", "x".repeat(240));
    let topic_dir = dir.path().join("topics").join(&name);
    std::fs::create_dir_all(&topic_dir).expect("topic dir");
    std::fs::write(
        topic_dir.join("topic.json"),
        r#"{"retention":{"max_age_ms":null,"max_bytes":null,"max_messages":null},"segment_bytes":1048576}"#,
    )
    .expect("settings");
    let store = open_with(options(disk::real(), dir.path()))
        .await
        .expect("opens");
    publish(&store, &name, vec![record("kept", None)])
        .await
        .expect("stored");
    store.delete_topic(&name).await.expect("deleted");
    assert!(!topic_dir.exists());
    store.shutdown().await;
}
