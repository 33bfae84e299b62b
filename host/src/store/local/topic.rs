//! [`Topic`]: one durable log plus the commit step that makes appended
//! messages count as stored.
//!
//! A publish appends under the topic's writer lock (offsets are assigned in
//! arrival order) and queues its batch for the *committer*, one task per
//! topic. The committer takes everything queued, fsyncs once for all of it
//! when the policy is `always` (group commit), marks it committed, fans it out
//! to live subscribers in offset order, and only then acks the publishers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sluice_proto::TopicInfo;
use tokio::sync::{oneshot, watch, Notify};
use tokio_util::sync::CancellationToken;

use super::dedup::DedupIndex;
use crate::config::FsyncPolicy;
use crate::disk;
use crate::store::registry::{FanoutCache, SubscriberRegistry};
use crate::store::{
    now_ms, Appended, Files, LogConfig, NewRecord, ReadBatch, Record, Retention, StoreError,
    StoredBatch, TopicLog, TopicMeta, TopicSettings,
};
use crate::sync::lock;

/// Longest topic name used as its directory's name as it is. Longer names
/// (topic names go up to 255 bytes) are stored under a shortened name, so
/// the names derived from it (`.new-…`, `.deleted-…-<millis>`) still fit
/// the file system's 255 bytes.
const MAX_DIR_NAME: usize = 200;

/// The directory name of a topic: its name, or for a long one a prefix of
/// it, `~` (never in a topic name) and a hash of the whole name. The name
/// itself is in the directory's `topic.json`.
pub(super) fn dir_name(topic: &str) -> String {
    if topic.len() <= MAX_DIR_NAME {
        return topic.to_owned();
    }
    use sha2::Digest;
    let hash = sha2::Sha256::digest(topic.as_bytes());
    let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    // Topic names are ASCII, so any byte is a character boundary.
    format!("{}~{hex}", &topic[..MAX_DIR_NAME - 17])
}

/// Makes incarnations unique among the topics created by this process.
static NEXT_INCARNATION: AtomicU64 = AtomicU64::new(1);

/// Name of the per-topic settings file.
pub(crate) const SETTINGS_FILE: &str = "topic.json";

fn log_config(settings: &TopicSettings, fsync: FsyncPolicy) -> LogConfig {
    LogConfig {
        sync_on_roll: fsync == FsyncPolicy::Always,
        segment_bytes: settings.segment_bytes,
        retention: Retention {
            max_age_ms: settings.retention.max_age_ms,
            max_bytes: settings.retention.max_bytes,
            max_messages: settings.retention.max_messages,
        },
        ..LogConfig::default()
    }
}

/// What `topic.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TopicFile {
    /// The topic's name. Files written before names were kept here lack
    /// it: their directory is named after the topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// This incarnation of the topic: a deleted and re-created topic gets
    /// a new one, so groups can tell it from the old. Files written before
    /// incarnations were kept lack it and are given one when opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incarnation: Option<u64>,
    /// The settings.
    #[serde(flatten)]
    pub settings: TopicSettings,
}

/// A fresh incarnation: unique across restarts (time) and within this
/// process (a counter).
pub(crate) fn new_incarnation() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // Never 0, so it can mean "none" in older formats.
    (nanos.wrapping_add(NEXT_INCARNATION.fetch_add(1, Ordering::Relaxed) << 40)).max(1)
}

/// Reads `topic.json` of a topic directory.
pub(crate) fn load_settings(disk: &dyn disk::Disk, dir: &Path) -> Result<TopicFile, StoreError> {
    let path = dir.join(SETTINGS_FILE);
    let bytes = disk
        .read(&path)
        .map_err(|e| StoreError::io("read", &path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        StoreError::io(
            "parse",
            &path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })
}

/// Writes `topic.json` durably (temp file, fsync, rename, directory fsync).
pub(crate) fn save_settings(
    disk: &dyn disk::Disk,
    dir: &Path,
    file: &TopicFile,
) -> Result<(), StoreError> {
    let path = dir.join(SETTINGS_FILE);
    let json = serde_json::to_vec_pretty(file)
        .map_err(|e| StoreError::io("encode", &path, std::io::Error::other(e)))?;
    disk::replace_file(disk, &path, &json).map_err(|e| StoreError::io("write", &path, e))
}

/// Reads the ids of the last window of a log into a fresh index. A record
/// that cannot be read ends the rebuild early, with a warning: a damaged
/// log must not keep the topic from opening (its ids may be stored again).
fn rebuild_dedup(log: &TopicLog, window_ms: u64, max_bytes: usize) -> DedupIndex {
    let mut index = DedupIndex::new(window_ms, max_bytes);
    if !index.enabled() {
        return index;
    }
    let now = now_ms();
    let rebuilt = (|| {
        let mut from = log.offset_for_timestamp(now.saturating_sub(window_ms as i64))?;
        let end = log.next_offset();
        while from < end {
            let batch = log.read(from, 4096, 8 * 1024 * 1024)?;
            let Some(last) = batch.records.last() else {
                break;
            };
            from = last.offset + 1;
            for record in batch.records {
                if let Some(id) = &record.id {
                    index.insert(id, record.offset, record.timestamp_ms);
                }
            }
        }
        Ok::<_, StoreError>(())
    })();
    if let Err(error) = rebuilt {
        tracing::warn!(?log, %error, "cannot read the whole de-duplication window; ids past the damage are not known");
    }
    index.expire(now);
    index
}

/// The outcome a publisher waits for: `Err` carries the fsync failure.
pub(crate) type CommitResult = Result<(), Arc<str>>;

/// Appended and not yet committed, in offset order. `None` is a publish
/// whose messages were all duplicates: it is acked once everything before
/// it (the originals included) is committed.
type Uncommitted = Vec<(Option<Arc<StoredBatch>>, oneshot::Sender<CommitResult>)>;

struct Writer {
    uncommitted: Uncommitted,
    dedup: DedupIndex,
    deleted: bool,
    /// The committer has stopped: nothing appended now would be acked.
    closed: bool,
}

/// One topic: its log, its commit step and its subscriber cache.
pub(crate) struct Topic {
    pub name: Arc<str>,
    /// This incarnation of the topic, kept in `topic.json`.
    pub incarnation: u64,
    pub dir: PathBuf,
    pub settings: TopicSettings,
    pub log: TopicLog,
    writer: Mutex<Writer>,
    commit_wake: Notify,
    /// Every offset below this is committed (stored under the policy).
    committed_end: AtomicU64,
    pub fanout: FanoutCache,
    /// Cancelled to stop this topic's committer (deletion or shutdown).
    pub stop: CancellationToken,
    /// Messages and bytes stored (metrics).
    pub counters: crate::metrics::TopicCounters,
}

impl Topic {
    /// Opens (recovering) the topic stored in `dir`, whose `topic.json`
    /// says `file`. The directory must exist with its `topic.json`
    /// ([`create_dir`] makes one).
    pub fn open(
        files: Files,
        name: &str,
        dir: PathBuf,
        file: TopicFile,
        options: &super::LocalOptions,
        stop: CancellationToken,
        counters: crate::metrics::TopicCounters,
    ) -> Result<Topic, StoreError> {
        let incarnation = match file.incarnation {
            Some(incarnation) => incarnation,
            None => {
                // Written before incarnations were kept: from now on it has one.
                let incarnation = new_incarnation();
                let file = TopicFile {
                    name: Some(name.to_owned()),
                    incarnation: Some(incarnation),
                    ..file.clone()
                };
                save_settings(&**files.disk(), &dir, &file)?;
                incarnation
            }
        };
        let settings = file.settings;
        let log = TopicLog::open(files, &dir, log_config(&settings, options.fsync))?;
        let end = log.next_offset();
        let dedup = rebuild_dedup(&log, settings.dedup_window_ms, options.dedup_max_bytes);
        Ok(Topic {
            name: name.into(),
            incarnation,
            dir,
            settings,
            log,
            writer: Mutex::new(Writer {
                uncommitted: Vec::new(),
                dedup,
                deleted: false,
                closed: false,
            }),
            commit_wake: Notify::new(),
            committed_end: AtomicU64::new(end),
            fanout: FanoutCache::default(),
            stop,
            counters,
        })
    }

    /// Appends a non-empty batch, leaving out messages whose id was seen
    /// within the de-duplication window. Returns what happened to each
    /// message and a receiver that completes when the append (and every
    /// earlier one) is committed.
    pub fn append(
        &self,
        batch: Vec<NewRecord>,
    ) -> Result<(Vec<Appended>, oneshot::Receiver<CommitResult>), StoreError> {
        let (tx, rx) = oneshot::channel();
        let now = now_ms();
        let outcomes = {
            let mut writer = lock(&self.writer);
            if writer.deleted {
                return Err(StoreError::TopicNotFound(self.name.to_string()));
            }
            if writer.closed {
                return Err(StoreError::Closed);
            }
            let appended = if writer.dedup.enabled() && batch.iter().any(|r| r.id.is_some()) {
                self.append_deduplicated(&mut writer.dedup, batch, now)
            } else {
                self.log
                    .append(batch, now)
                    .map(|records| (records.iter().map(stored).collect(), records))
            };
            let (outcomes, records) = appended.inspect_err(|e| {
                if matches!(e, StoreError::Full { .. }) {
                    self.counters.storage_full();
                }
            })?;
            self.counters
                .stored(records.len(), records.iter().map(|r| r.payload.len()).sum());
            let stored = (!records.is_empty()).then(|| {
                Arc::new(StoredBatch {
                    topic: self.name.clone(),
                    incarnation: self.incarnation,
                    records,
                })
            });
            writer.uncommitted.push((stored, tx));
            outcomes
        };
        self.commit_wake.notify_one();
        Ok((outcomes, rx))
    }

    fn append_deduplicated(
        &self,
        dedup: &mut DedupIndex,
        batch: Vec<NewRecord>,
        now: i64,
    ) -> Result<(Vec<Appended>, Vec<Record>), StoreError> {
        dedup.expire(now);
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut fresh = Vec::with_capacity(batch.len());
        // Index into `fresh` of ids first seen in this very batch.
        let mut in_batch: hashbrown::HashMap<&str, usize> = hashbrown::HashMap::new();
        let mut slots = Vec::with_capacity(batch.len());
        for record in &batch {
            match record.id.as_deref() {
                Some(id) => {
                    if let Some(offset) = dedup.get(id) {
                        slots.push(Err(offset));
                    } else if let Some(&index) = in_batch.get(id) {
                        slots.push(Ok((index, true)));
                    } else {
                        in_batch.insert(id, slots.len());
                        slots.push(Ok((slots.len(), false)));
                    }
                }
                None => slots.push(Ok((slots.len(), false))),
            }
        }
        drop(in_batch);
        // Positions (in `batch`) that are stored, in order.
        let keep: Vec<bool> = slots.iter().map(|s| matches!(s, Ok((_, false)))).collect();
        let mut position_in_fresh = vec![0usize; batch.len()];
        for (i, record) in batch.into_iter().enumerate() {
            if keep[i] {
                position_in_fresh[i] = fresh.len();
                fresh.push(record);
            }
        }
        let records = if fresh.is_empty() {
            Vec::new()
        } else {
            self.log.append(fresh, now)?
        };
        for (i, slot) in slots.iter().enumerate() {
            outcomes.push(match slot {
                Err(offset) => Appended::Duplicate { offset: *offset },
                Ok((_, false)) => stored(&records[position_in_fresh[i]]),
                Ok((first, true)) => Appended::Duplicate {
                    offset: records[position_in_fresh[*first]].offset,
                },
            });
        }
        for record in &records {
            if let Some(id) = &record.id {
                let evicted = dedup.insert(id, record.offset, record.timestamp_ms);
                if evicted > 0 {
                    self.dedup_evicted(evicted);
                }
            }
        }
        Ok((outcomes, records))
    }

    /// fsyncs the log (blocking). A failure fails the topic: it refuses
    /// writes until a restart, and the metric says so.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.counted(self.log.sync())
    }

    /// fsyncs the segments sealed since the last sync (`fsync = "never"`).
    pub fn sync_sealed(&self) -> Result<(), StoreError> {
        self.counted(self.log.sync_sealed())
    }

    fn counted(&self, result: Result<(), StoreError>) -> Result<(), StoreError> {
        if result.is_err() {
            self.counters.storage_failed();
        }
        result
    }

    /// Ids left the de-duplication window early for its memory cap.
    fn dedup_evicted(&self, count: usize) {
        let before = self.counters.dedup_evicted.get();
        self.counters.dedup_evicted.inc_by(count as u64);
        // A warning on the first eviction and then every 100,000.
        if before / 100_000 != (before + count as u64) / 100_000 || before == 0 {
            tracing::warn!(topic = %self.name, evicted = before + count as u64, "de-duplication ids reach the memory cap ([storage] dedup_max_bytes): the oldest are forgotten before the window ends");
        }
    }

    /// Every offset below this is committed and may be read by subscribers.
    pub fn committed_end(&self) -> u64 {
        self.committed_end.load(Ordering::SeqCst)
    }

    /// Marks the topic deleted: later appends fail.
    pub fn mark_deleted(&self) {
        lock(&self.writer).deleted = true;
    }

    /// Reads committed records (blocking I/O: call from a blocking thread).
    pub fn read_committed(
        &self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<ReadBatch, StoreError> {
        let end = self.committed_end();
        let mut batch = self.log.read(from, max_records, max_bytes)?;
        if batch.records.iter().any(|r| r.offset >= end) {
            batch.records.retain(|r| r.offset < end);
            batch.next_offset = batch
                .records
                .last()
                .map_or(from.max(self.log.start_offset()).min(end), |r| r.offset + 1);
        }
        Ok(batch)
    }

    /// The committer: group commit, fan-out, acks. Runs until `stop`, then
    /// commits what is left and returns.
    pub async fn run_committer(
        self: Arc<Topic>,
        policy: FsyncPolicy,
        registry: Arc<SubscriberRegistry>,
        commits: Arc<watch::Sender<u64>>,
    ) {
        loop {
            let stopping = tokio::select! {
                () = self.commit_wake.notified() => false,
                () = self.stop.cancelled() => true,
            };
            let batches = std::mem::take(&mut lock(&self.writer).uncommitted);
            if !batches.is_empty() {
                self.commit(batches, policy, &registry).await;
                commits.send_modify(|n| *n = n.wrapping_add(1));
            }
            if stopping {
                // Appends racing with the stop are committed too; later
                // ones are refused rather than left unacked.
                let rest = {
                    let mut writer = lock(&self.writer);
                    writer.closed = true;
                    std::mem::take(&mut writer.uncommitted)
                };
                if !rest.is_empty() {
                    self.commit(rest, policy, &registry).await;
                }
                let topic = self.clone();
                let _ = tokio::task::spawn_blocking(move || topic.sync()).await;
                return;
            }
        }
    }

    async fn commit(
        self: &Arc<Self>,
        batches: Uncommitted,
        policy: FsyncPolicy,
        registry: &SubscriberRegistry,
    ) {
        let end = batches
            .iter()
            .filter_map(|(b, _)| b.as_ref().map(|b| b.end_offset()))
            .max()
            .unwrap_or(0);
        if policy == FsyncPolicy::Always {
            let topic = self.clone();
            let result = tokio::task::spawn_blocking(move || topic.sync())
                .await
                .unwrap_or_else(|e| {
                    Err(StoreError::io(
                        "fsync",
                        &self.dir,
                        std::io::Error::other(e.to_string()),
                    ))
                });
            if let Err(e) = result {
                self.fail_commit(batches, &e);
                return;
            }
        }
        // Committed before fan-out: a replaying subscriber registered before
        // this point either sees these records in the log or receives them.
        self.committed_end.fetch_max(end, Ordering::SeqCst);
        let inboxes = self.fanout.inboxes_for(&self.name, registry);
        for batch in batches.iter().filter_map(|(b, _)| b.as_ref()) {
            for inbox in inboxes.iter() {
                inbox.offer(batch);
            }
        }
        for (_, ack) in batches {
            let _ = ack.send(Ok(()));
        }
    }

    /// An fsync failed: the batches waiting on it are not durable. They
    /// are answered with the error, stay uncommitted (no reader or group
    /// sees them), and their message ids leave the de-duplication window,
    /// so a retry after the restart that recovers the topic is stored. The
    /// log refuses writes from now on (see `store::write`).
    fn fail_commit(&self, batches: Uncommitted, error: &StoreError) {
        tracing::error!(topic = %self.name, %error, "fsync failed: publishes waiting on it are refused and the topic takes no writes until a restart");
        let reason: Arc<str> = error.to_string().into();
        {
            let mut writer = lock(&self.writer);
            for batch in batches.iter().filter_map(|(b, _)| b.as_ref()) {
                for record in &batch.records {
                    if let Some(id) = &record.id {
                        writer.dedup.forget(id, record.offset);
                    }
                }
            }
        }
        for (_, ack) in batches {
            let _ = ack.send(Err(reason.clone()));
        }
    }

    /// The topic as the store reports it now.
    pub fn meta(&self) -> TopicMeta {
        TopicMeta {
            name: self.name.clone(),
            incarnation: self.incarnation,
            start_offset: self.log.start_offset(),
            committed_end: self.committed_end(),
            default_ttl_ms: self.settings.default_ttl_ms,
            dead_letter_expired: self.settings.dead_letter_expired,
        }
    }

    /// Removes the sealed segments holding only records below `offset`.
    pub fn trim_before(&self, offset: u64) -> Result<(), StoreError> {
        self.log.trim_before(offset).map(drop)
    }

    /// What `topics info` shows.
    pub fn info(&self) -> TopicInfo {
        let info = self.log.info();
        TopicInfo {
            name: self.name.to_string(),
            start_offset: info.start_offset,
            next_offset: info.next_offset,
            messages: info.next_offset.saturating_sub(info.start_offset),
            bytes: info.bytes,
            segments: info.segments as u32,
            oldest_timestamp_ms: info.oldest_timestamp_ms,
            newest_timestamp_ms: info.newest_timestamp_ms,
            retention: self.settings.retention,
            segment_bytes: self.settings.segment_bytes,
            dedup_window_ms: self.settings.dedup_window_ms,
            waiting: 0,
            default_ttl_ms: self.settings.default_ttl_ms,
            dead_letter_expired: self.settings.dead_letter_expired,
        }
    }
}

fn stored(record: &Record) -> Appended {
    Appended::Stored {
        offset: record.offset,
        timestamp_ms: record.timestamp_ms,
    }
}
