//! [`LocalStore`]: the [`Store`] of one machine, a segmented log per topic
//! in the data directory (`<data>/topics/<name>/`).
//!
//! Each topic has a committer task (group commit, fan-out to feeds, acks);
//! background jobs apply retention and, under `fsync = "interval"`, sync
//! every log. Topic creation and deletion are serialised by an async admin
//! lock and do their file work on the blocking pool; the map of topics is
//! only locked to look up, insert or remove, never across I/O.
//!
//! # Layout
//!
//! - [`topic`]: one topic's log, de-duplication and committer.
//! - [`dedup`]: message ids within the de-duplication window.

mod dedup;
mod topic;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use sluice_proto::{validate_topic, Pattern, TopicInfo};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::api::{AppendTicket, Store, TopicEvent, TopicMeta, TopicSettings};
use super::error::StoreError;
use super::feed::Feed;
use super::files::Files;
use super::log::ReadBatch;
use super::record::NewRecord;
use super::registry::SubscriberRegistry;
use crate::config::FsyncPolicy;
use crate::disk::{self, SharedDisk};
use crate::metrics::Metrics;
use crate::sync::{read, write};
use topic::{dir_name, Topic, TopicFile};

/// Topic events kept for receivers that fall behind.
const EVENT_BUFFER: usize = 1024;

/// How the local store runs.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// The file system the store writes to.
    pub disk: SharedDisk,
    /// The data directory; topics live in `<data_dir>/topics`.
    pub data_dir: PathBuf,
    /// Settings of topics created without settings of their own.
    pub defaults: TopicSettings,
    /// When appended records are fsynced.
    pub fsync: FsyncPolicy,
    /// Period of the fsync job under [`FsyncPolicy::Interval`].
    pub fsync_interval: Duration,
    /// Period of the retention job.
    pub retention_check_interval: Duration,
    /// Most memory one topic's de-duplication ids may take.
    pub dedup_max_bytes: usize,
    /// Most files of sealed segments kept open at once (the rest are
    /// opened on demand).
    pub max_open_files: usize,
}

impl LocalOptions {
    /// The options `sluice.toml` sets.
    pub fn from_config(config: &crate::config::Config) -> LocalOptions {
        LocalOptions {
            disk: disk::real(),
            data_dir: config.server.data_dir.clone(),
            defaults: TopicSettings::defaults(config),
            fsync: config.storage.fsync,
            fsync_interval: config.storage.fsync_interval,
            retention_check_interval: config.storage.retention_check_interval,
            dedup_max_bytes: config.storage.dedup_max_bytes,
            max_open_files: config.storage.max_open_files,
        }
    }
}

/// The store of one machine. Cheap to clone.
#[derive(Clone)]
pub struct LocalStore {
    inner: Arc<Inner>,
}

struct Inner {
    options: LocalOptions,
    files: Files,
    topics_dir: PathBuf,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Serialises topic creation and deletion (held across their file work,
    /// which runs on the blocking pool; appends never take it).
    admin: tokio::sync::Mutex<()>,
    registry: Arc<SubscriberRegistry>,
    /// Bumped after every commit.
    commits: Arc<watch::Sender<u64>>,
    events: broadcast::Sender<TopicEvent>,
    metrics: Arc<Metrics>,
    /// Committers and background jobs.
    tasks: TaskTracker,
    /// Stops committers and background jobs.
    stop: CancellationToken,
}

impl LocalStore {
    /// Opens every topic under `<data_dir>/topics` (recovering their logs,
    /// on the blocking pool) and starts the committers and the retention
    /// and fsync jobs.
    pub async fn open(
        options: LocalOptions,
        metrics: Arc<Metrics>,
    ) -> Result<LocalStore, StoreError> {
        tokio::task::spawn_blocking(move || LocalStore::recover(options, metrics))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// [`LocalStore::open`]'s file work (blocking).
    fn recover(options: LocalOptions, metrics: Arc<Metrics>) -> Result<LocalStore, StoreError> {
        let topics_dir = options.data_dir.join("topics");
        disk::create_dir_durably(&*options.disk, &topics_dir)
            .map_err(|e| StoreError::io("create", &topics_dir, e))?;
        let store = LocalStore {
            inner: Arc::new(Inner {
                files: Files::new(options.disk.clone(), options.max_open_files),
                options,
                topics_dir,
                topics: RwLock::new(HashMap::new()),
                admin: tokio::sync::Mutex::new(()),
                registry: Arc::new(SubscriberRegistry::default()),
                commits: Arc::new(watch::channel(0).0),
                events: broadcast::channel(EVENT_BUFFER).0,
                metrics,
                tasks: TaskTracker::new(),
                stop: CancellationToken::new(),
            }),
        };
        store.load_topics()?;
        store.start_background_jobs();
        Ok(store)
    }

    fn disk(&self) -> &dyn disk::Disk {
        &*self.inner.options.disk
    }

    fn load_topics(&self) -> Result<(), StoreError> {
        let dir = &self.inner.topics_dir;
        let entries = self
            .disk()
            .read_dir(dir)
            .map_err(|e| StoreError::io("list", dir, e))?;
        for entry in entries {
            let path = dir.join(&entry.name);
            if entry.name.starts_with('.') {
                // Left over from a creation or deletion interrupted by a crash.
                if let Err(error) = self.disk().remove_dir_all(&path) {
                    tracing::warn!(path = %path.display(), %error, "cannot remove a leftover directory");
                }
                continue;
            }
            if !entry.is_dir {
                tracing::warn!(path = %path.display(), "ignoring unexpected entry in the topics directory");
                continue;
            }
            let file = match topic::load_settings(self.disk(), &path) {
                Ok(file) => file,
                Err(error) => {
                    // A topic directory is only ever renamed into place with
                    // its topic.json durable: this one was damaged outside
                    // sluice. Its data stays untouched for an operator.
                    tracing::error!(path = %path.display(), %error, "topic directory without a readable topic.json: not served (restore the file to serve it)");
                    continue;
                }
            };
            let name = file.name.clone().unwrap_or_else(|| entry.name.clone());
            // A long name's directory is shortened; one made before that
            // was named after the topic itself, and still opens.
            if check_name(&name).is_err() || (dir_name(&name) != entry.name && name != entry.name) {
                tracing::warn!(path = %path.display(), topic = %name, "ignoring a directory whose name does not match its topic");
                continue;
            }
            let topic = Arc::new(self.open_topic(&name, path, file)?);
            tracing::info!(topic = %name, next_offset = topic.log.next_offset(), "topic recovered");
            self.start_committer(&topic);
            write(&self.inner.topics).insert(name, topic);
        }
        Ok(())
    }

    fn open_topic(&self, name: &str, dir: PathBuf, file: TopicFile) -> Result<Topic, StoreError> {
        Topic::open(
            self.inner.files.clone(),
            name,
            dir,
            file,
            &self.inner.options,
            self.inner.stop.child_token(),
            self.inner.metrics.topic(name),
        )
    }

    /// Makes the directory of a new topic: built under a temporary name
    /// with its `topic.json` durable, then renamed into place, so a topic
    /// directory never exists without its settings, even after a power loss.
    fn create_dir(&self, name: &str, settings: TopicSettings) -> Result<Topic, StoreError> {
        let disk = self.disk();
        let dir = self.inner.topics_dir.join(dir_name(name));
        let tmp = self
            .inner
            .topics_dir
            .join(format!(".new-{}", dir_name(name)));
        if disk
            .exists(&tmp)
            .map_err(|e| StoreError::io("stat", &tmp, e))?
        {
            disk.remove_dir_all(&tmp)
                .map_err(|e| StoreError::io("remove", &tmp, e))?;
        }
        let file = TopicFile {
            name: Some(name.to_owned()),
            incarnation: Some(topic::new_incarnation()),
            settings,
        };
        disk.create_dir_all(&tmp)
            .map_err(|e| StoreError::io("create", &tmp, e))?;
        topic::save_settings(disk, &tmp, &file)?;
        disk.rename(&tmp, &dir)
            .map_err(|e| StoreError::io("rename", &tmp, e))?;
        disk.sync_dir(&self.inner.topics_dir)
            .map_err(|e| StoreError::io("fsync", &self.inner.topics_dir, e))?;
        self.open_topic(name, dir, file)
    }

    fn start_committer(&self, topic: &Arc<Topic>) {
        self.inner.tasks.spawn(topic.clone().run_committer(
            self.inner.options.fsync,
            self.inner.registry.clone(),
            self.inner.commits.clone(),
        ));
    }

    fn start_background_jobs(&self) {
        let options = &self.inner.options;
        // Retention runs at start too: a restart may find old segments.
        let retention = options.retention_check_interval;
        self.every(Duration::ZERO, retention, |store| async move {
            store.apply_retention().await
        });
        let period = options.fsync_interval;
        match options.fsync {
            FsyncPolicy::Interval => {
                self.every(
                    period,
                    period,
                    |store| async move { store.sync_all().await },
                )
            }
            // Segments sealed by a roll (see `LogConfig::sync_on_roll`).
            FsyncPolicy::Never => {
                self.every(
                    period,
                    period,
                    |store| async move { store.sync_sealed().await },
                )
            }
            FsyncPolicy::Always => {}
        }
    }

    /// Runs `job` after `first`, then every `period`, until the store stops.
    fn every<F, Fut>(&self, first: Duration, period: Duration, job: F)
    where
        F: Fn(LocalStore) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let store = self.clone();
        self.inner.tasks.spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + first, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => job(store.clone()).await,
                    () = store.inner.stop.cancelled() => return,
                }
            }
        });
    }

    fn all_topics(&self) -> Vec<Arc<Topic>> {
        read(&self.inner.topics).values().cloned().collect()
    }

    fn get(&self, name: &str) -> Result<Arc<Topic>, StoreError> {
        read(&self.inner.topics)
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::TopicNotFound(name.to_owned()))
    }

    async fn apply_retention(&self) {
        let now = super::now_ms();
        for topic in self.all_topics() {
            let t = topic.clone();
            match tokio::task::spawn_blocking(move || t.log.apply_retention(now)).await {
                Ok(Ok(outcome)) if outcome.segments_removed > 0 => {
                    tracing::info!(topic = %topic.name, segments = outcome.segments_removed, bytes = outcome.bytes_removed, messages = outcome.messages_removed, "retention removed old segments");
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(topic = %topic.name, error = %e, "retention failed"),
                Err(e) => tracing::warn!(topic = %topic.name, error = %e, "retention task failed"),
            }
        }
    }

    async fn sync_all(&self) {
        self.sync_each(Topic::sync).await;
    }

    async fn sync_sealed(&self) {
        self.sync_each(Topic::sync_sealed).await;
    }

    /// Runs `sync` on every topic on the blocking pool; a failure fails
    /// that topic's log (and is logged there).
    async fn sync_each(&self, sync: fn(&Topic) -> Result<(), StoreError>) {
        let topics = self.all_topics();
        let result = tokio::task::spawn_blocking(move || {
            for topic in topics {
                let _ = sync(&topic);
            }
        })
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "periodic fsync task failed");
        }
    }

    async fn create(&self, name: &str, settings: TopicSettings) -> Result<TopicMeta, StoreError> {
        check_name(name)?;
        let _admin = self.inner.admin.lock().await;
        if read(&self.inner.topics).contains_key(name) {
            return Err(StoreError::TopicExists(name.to_owned()));
        }
        let store = self.clone();
        let owned = name.to_owned();
        let topic = tokio::task::spawn_blocking(move || store.create_dir(&owned, settings))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))??;
        let topic = Arc::new(topic);
        self.start_committer(&topic);
        let meta = topic.meta();
        write(&self.inner.topics).insert(name.to_owned(), topic);
        let _ = self.inner.events.send(TopicEvent::Created(meta.clone()));
        tracing::info!(topic = %name, "topic created");
        Ok(meta)
    }

    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        check_name(name)?;
        let admin = self.inner.admin.lock().await;
        let topic = self.get(name)?;
        // Renamed first, under the admin lock: a failed rename changes
        // nothing (the topic goes on serving), and a publish that re-creates
        // the topic right after gets a fresh directory, not the old files.
        let graveyard =
            self.inner
                .topics_dir
                .join(format!(".deleted-{}-{}", dir_name(name), super::now_ms()));
        let store = self.clone();
        let (from, to) = (topic.dir.clone(), graveyard.clone());
        let retiring = topic.clone();
        tokio::task::spawn_blocking(move || {
            let disk = store.disk();
            retiring
                .log
                .retire(|| disk.rename(&from, &to))
                .map_err(|e| StoreError::io("rename", &from, e))?;
            let topics = &store.inner.topics_dir;
            if let Err(e) = disk.sync_dir(topics) {
                // The rename is done; a power loss may bring the topic back.
                tracing::warn!(path = %topics.display(), error = %e, "cannot fsync the topics directory after a delete");
            }
            Ok::<_, StoreError>(())
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))??;
        {
            let mut topics = write(&self.inner.topics);
            topics.remove(name);
            topic.mark_deleted();
            topic.stop.cancel();
            // Under the lock: a re-created topic gets fresh series.
            self.inner.metrics.topic_deleted(name);
        }
        let _ = self.inner.events.send(TopicEvent::Deleted {
            name: topic.name.clone(),
            incarnation: topic.incarnation,
        });
        drop(admin);
        drop(topic);
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            store
                .disk()
                .remove_dir_all(&graveyard)
                .map_err(|e| StoreError::io("remove", &graveyard, e))
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))??;
        tracing::info!(topic = %name, "topic deleted");
        Ok(())
    }
}

fn check_name(name: &str) -> Result<(), StoreError> {
    validate_topic(name).map_err(|reason| StoreError::InvalidTopic {
        name: name.to_owned(),
        reason,
    })
}

impl Store for LocalStore {
    fn create_topic(
        &self,
        name: &str,
        settings: TopicSettings,
    ) -> BoxFuture<'_, Result<TopicMeta, StoreError>> {
        let name = name.to_owned();
        async move { self.create(&name, settings).await }.boxed()
    }

    fn ensure_topic(&self, name: &str) -> BoxFuture<'_, Result<TopicMeta, StoreError>> {
        let name = name.to_owned();
        async move {
            if let Ok(topic) = self.get(&name) {
                return Ok(topic.meta());
            }
            match self.create(&name, self.inner.options.defaults).await {
                // Another publisher created it first.
                Err(StoreError::TopicExists(_)) => self.get(&name).map(|t| t.meta()),
                other => other,
            }
        }
        .boxed()
    }

    fn delete_topic(&self, name: &str) -> BoxFuture<'_, Result<(), StoreError>> {
        let name = name.to_owned();
        async move { self.delete(&name).await }.boxed()
    }

    fn topic(&self, name: &str) -> Option<TopicMeta> {
        read(&self.inner.topics).get(name).map(|t| t.meta())
    }

    fn topics(&self, pattern: &Pattern) -> Vec<TopicMeta> {
        let mut topics: Vec<_> = read(&self.inner.topics)
            .iter()
            .filter(|(name, _)| pattern.matches(name))
            .map(|(_, t)| t.meta())
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics
    }

    fn info(&self, name: &str) -> BoxFuture<'_, Result<TopicInfo, StoreError>> {
        let topic = self.get(name);
        async move { topic.map(|t| t.info()) }.boxed()
    }

    fn events(&self) -> broadcast::Receiver<TopicEvent> {
        self.inner.events.subscribe()
    }

    fn commits(&self) -> watch::Receiver<u64> {
        self.inner.commits.subscribe()
    }

    fn append(
        &self,
        topic: &str,
        records: Vec<NewRecord>,
    ) -> BoxFuture<'_, Result<AppendTicket, StoreError>> {
        // The write happens now, before the future is first polled, so
        // appends are ordered by call.
        let appended = self.get(topic).and_then(|topic| topic.append(records));
        async move {
            let (outcomes, commit) = appended?;
            let ticket: AppendTicket = async move {
                match commit.await {
                    Ok(Ok(())) => Ok(outcomes),
                    Ok(Err(reason)) => Err(StoreError::Failed(reason.to_string())),
                    Err(_) => Err(StoreError::Closed),
                }
            }
            .boxed();
            Ok(ticket)
        }
        .boxed()
    }

    fn read(
        &self,
        topic: &str,
        incarnation: u64,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> BoxFuture<'_, Result<ReadBatch, StoreError>> {
        let topic = self.get(topic).and_then(|t| {
            if t.incarnation == incarnation {
                Ok(t)
            } else {
                Err(StoreError::TopicNotFound(t.name.to_string()))
            }
        });
        async move {
            let topic = topic?;
            tokio::task::spawn_blocking(move || topic.read_committed(from, max_records, max_bytes))
                .await
                .map_err(|e| StoreError::Task(e.to_string()))?
        }
        .boxed()
    }

    fn trim(&self, name: &str, before: u64) -> BoxFuture<'_, Result<(), StoreError>> {
        let topic = self.get(name);
        async move {
            let topic = topic?;
            tokio::task::spawn_blocking(move || topic.trim_before(before))
                .await
                .map_err(|e| StoreError::Task(e.to_string()))?
        }
        .boxed()
    }

    fn offset_for_time(
        &self,
        topic: &str,
        timestamp_ms: i64,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        let topic = self.get(topic);
        async move {
            let topic = topic?;
            tokio::task::spawn_blocking(move || topic.log.offset_for_timestamp(timestamp_ms))
                .await
                .map_err(|e| StoreError::Task(e.to_string()))?
        }
        .boxed()
    }

    fn catch_up(&self, _pattern: &Pattern) -> BoxFuture<'_, Result<(), StoreError>> {
        // Committed ends and feeds move in the same step as the commit.
        std::future::ready(Ok(())).boxed()
    }

    fn feed(&self, pattern: Pattern, max_queued: usize) -> Feed {
        self.inner.registry.feed(pattern, max_queued)
    }

    fn feeds(&self) -> usize {
        self.inner.registry.len()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        async move {
            self.inner.stop.cancel();
            self.inner.tasks.close();
            self.inner.tasks.wait().await;
            self.sync_all().await;
        }
        .boxed()
    }
}

#[cfg(test)]
mod crash_states;
#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod tests;
