//! The broker: topics, publishing, live and replaying subscriptions, fetch
//! and topic admin. Knows nothing of QUIC: the server calls it, and it calls
//! only the store below it.
//!
//! # Layout
//!
//! - [`topic`] - one topic's log and its committer (group commit, fan-out, acks).
//! - [`fanout`] - subscriber sinks and which topics they match.
//! - [`subscription`] - what one subscriber receives (live or replaying).
//! - [`group`] - consumer groups: acks, redelivery, dead letters, key order.
//! - [`error`] - [`BrokerError`] and its wire codes.

mod dedup;
pub mod error;
pub(crate) mod fanout;
pub mod group;
pub mod subscription;
pub mod topic;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use sluice_proto::{
    validate_topic, CreateTopic, Delivered, FetchBatch, GroupInfo, GroupOptions, MessageOutcome,
    Pattern, PublishAck, PublishMessage, RetentionSpec, Settle, SettleAction, StartPosition,
    StoredAt, TopicInfo,
};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use error::BrokerError;
pub use group::Consumer;
pub use subscription::{Chunk, Slice, Subscription};
pub use topic::StoredBatch;

use crate::auth::{LogLimit, Principal};
use crate::config::{Config, FsyncPolicy};
use crate::plugin::{Destination, PluginRegistry, PluginSet};
use crate::store::{NewRecord, StoreError};
use fanout::{Sink, SubscriberRegistry};
use topic::{Appended, CommitResult, Topic, TopicSettings};

/// Something the server streams to a client: a subscription or a
/// consumer-group member.
pub trait DeliverySource: Send + 'static {
    /// Waits for the next chunk of messages. Must be cancel-safe.
    fn next_chunk(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Chunk, BrokerError>> + Send;
    /// For logs: the pattern or group.
    fn describe(&self) -> String;
}

impl DeliverySource for Subscription {
    fn next_chunk(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Chunk, BrokerError>> + Send {
        Subscription::next_chunk(self)
    }
    fn describe(&self) -> String {
        format!("subscription on {}", self.pattern())
    }
}

impl DeliverySource for Consumer {
    fn next_chunk(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Chunk, BrokerError>> + Send {
        Consumer::next_chunk(self)
    }
    fn describe(&self) -> String {
        format!("member of group {}", self.group())
    }
}

/// What a pipelined publish will append, grouped by destination topic in
/// the order destinations first appear.
#[derive(Default)]
struct Plan {
    by_topic: Vec<(String, Vec<PlannedRecord>)>,
}

/// One record to append: the published message it comes from, the record,
/// and the dead-letter reason if it is one.
type PlannedRecord = (usize, NewRecord, Option<String>);

impl Plan {
    fn push(&mut self, topic: String, origin: usize, record: NewRecord, dead: Option<String>) {
        match self.by_topic.iter_mut().find(|(t, _)| *t == topic) {
            Some((_, entries)) => entries.push((origin, record, dead)),
            None => self.by_topic.push((topic, vec![(origin, record, dead)])),
        }
    }

    fn push_dead_letter(
        &mut self,
        topic: &str,
        origin: usize,
        mut record: NewRecord,
        reason: String,
        stage: &str,
    ) {
        record
            .headers
            .push((crate::plugin::pipeline::DLQ_TOPIC.into(), topic.to_owned()));
        record
            .headers
            .push((crate::plugin::pipeline::DLQ_REASON.into(), reason.clone()));
        if !stage.is_empty() {
            record
                .headers
                .push((crate::plugin::pipeline::DLQ_STAGE.into(), stage.to_owned()));
        }
        // A dead letter is never a duplicate of anything.
        record.id = None;
        self.push(format!("dlq.{topic}"), origin, record, Some(reason));
    }
}

/// The publisher of publishes made without a principal (embedded use).
static ANONYMOUS: std::sync::LazyLock<Principal> = std::sync::LazyLock::new(Principal::anonymous);

/// Rate limit of the log lines about routes refused by permissions.
static ROUTE_DENIALS_LOG: LogLimit = LogLimit::new(std::time::Duration::from_secs(1));

/// Largest fetch, in messages.
pub const MAX_FETCH_MESSAGES: u32 = 10_000;

/// A handle to the broker. Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    topics_dir: PathBuf,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    registry: Arc<SubscriberRegistry>,
    next_sink: AtomicU64,
    groups_dir: PathBuf,
    groups: Mutex<HashMap<String, Arc<group::GroupHandle>>>,
    /// Bumped after every commit: wakes consumer groups.
    commits: Arc<watch::Sender<u64>>,
    /// Loaded plugins and the pipelines that run them (swapped by reloads).
    plugins: Arc<PluginRegistry>,
    /// Event counters for `/metrics`.
    metrics: Arc<crate::metrics::Metrics>,
    /// Committers and background jobs.
    tasks: TaskTracker,
    /// Stops committers and background jobs (after the server drained).
    stop: CancellationToken,
}

/// A publish whose messages are appended and whose acks are pending.
pub struct PendingPublish {
    commits: Vec<(Arc<str>, oneshot::Receiver<CommitResult>)>,
    ack: PublishAck,
}

impl PendingPublish {
    /// Waits until every message is stored under the fsync policy.
    pub async fn wait(self) -> Result<PublishAck, BrokerError> {
        for (topic, commit) in self.commits {
            match commit.await {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => {
                    return Err(BrokerError::Storage {
                        topic: topic.to_string(),
                        source: StoreError::io(
                            "commit",
                            topic.to_string(),
                            std::io::Error::other(reason.to_string()),
                        ),
                    })
                }
                Err(_) => return Err(BrokerError::ShuttingDown),
            }
        }
        Ok(self.ack)
    }
}

fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write_lock<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A publish grouped by topic, topics in order of first appearance: each
/// message with its index in the publish. Every topic name is checked, so
/// an invalid one stores nothing.
type TopicGroups = Vec<(String, Vec<(usize, NewRecord)>)>;

fn add_to_group(
    groups: &mut TopicGroups,
    topic: String,
    index: usize,
    record: NewRecord,
) -> Result<(), BrokerError> {
    match groups.iter_mut().find(|(t, _)| *t == topic) {
        Some((_, records)) => records.push((index, record)),
        None => {
            check_topic(&topic)?;
            groups.push((topic, vec![(index, record)]));
        }
    }
    Ok(())
}

fn group_messages(messages: Vec<PublishMessage>) -> Result<(TopicGroups, usize), BrokerError> {
    let total = messages.len();
    let mut groups = TopicGroups::new();
    for (index, m) in messages.into_iter().enumerate() {
        let record = NewRecord {
            key: m.key,
            headers: m.headers,
            payload: m.payload,
            id: m.id,
        };
        add_to_group(&mut groups, m.topic, index, record)?;
    }
    Ok((groups, total))
}

fn group_runs(runs: Vec<sluice_proto::PublishRun>) -> Result<(TopicGroups, usize), BrokerError> {
    let mut groups = TopicGroups::new();
    let mut index = 0;
    for run in runs {
        let records = run.messages.into_iter().map(|m| NewRecord {
            key: m.0,
            headers: m.1,
            payload: m.2,
            id: m.3,
        });
        match groups.iter_mut().find(|(t, _)| *t == run.topic) {
            Some((_, group)) => {
                for record in records {
                    group.push((index, record));
                    index += 1;
                }
            }
            None => {
                check_topic(&run.topic)?;
                let mut group = Vec::new();
                for record in records {
                    group.push((index, record));
                    index += 1;
                }
                groups.push((run.topic, group));
            }
        }
    }
    // An empty run adds a topic with no messages: nothing to store there.
    groups.retain(|(_, records)| !records.is_empty());
    Ok((groups, index))
}

/// What a settlement must satisfy before it reaches the group.
fn check_settle(topic: &str, action: &SettleAction) -> Result<(), BrokerError> {
    if let SettleAction::Nack {
        delay_ms: Some(delay),
    } = action
    {
        if *delay > group::MAX_NACK_DELAY_MS {
            return Err(BrokerError::InvalidArgument(format!(
                "nack delay of {delay} ms is over the limit of {} ms (one day)",
                group::MAX_NACK_DELAY_MS
            )));
        }
    }
    check_topic(topic)
}

fn check_group(name: &str) -> Result<(), BrokerError> {
    validate_topic(name).map_err(|reason| BrokerError::InvalidGroup {
        name: name.to_owned(),
        reason,
    })
}

fn check_group_options(options: &GroupOptions) -> Result<(), BrokerError> {
    let invalid = |m: String| Err(BrokerError::InvalidArgument(m));
    if options.max_deliver == 0 {
        return invalid("max_deliver must be at least 1".into());
    }
    if options.ack_wait_ms == 0 || options.ack_wait_ms > group::MAX_NACK_DELAY_MS {
        return invalid(format!(
            "ack_wait_ms must be between 1 and {}",
            group::MAX_NACK_DELAY_MS
        ));
    }
    if options
        .backoff_ms
        .iter()
        .any(|ms| *ms > group::MAX_NACK_DELAY_MS)
    {
        return invalid(format!(
            "backoff delays must be at most {} ms",
            group::MAX_NACK_DELAY_MS
        ));
    }
    if let Some(topic) = &options.dead_letter_topic {
        check_topic(topic)?;
    }
    Ok(())
}

fn check_topic(name: &str) -> Result<(), BrokerError> {
    validate_topic(name).map_err(|reason| BrokerError::InvalidTopic {
        name: name.to_owned(),
        reason,
    })
}

impl Broker {
    /// Opens every topic under `<data_dir>/topics` (recovering their logs)
    /// and starts the committers and the retention and fsync jobs.
    pub fn open(config: Config, plugins: Arc<PluginRegistry>) -> Result<Broker, BrokerError> {
        let topics_dir = config.server.data_dir.join("topics");
        let groups_dir = config.server.data_dir.join("groups");
        std::fs::create_dir_all(&topics_dir).map_err(|e| BrokerError::Storage {
            topic: String::new(),
            source: StoreError::io("create", &topics_dir, e),
        })?;
        let broker = Broker {
            inner: Arc::new(Inner {
                config,
                topics_dir,
                topics: RwLock::new(HashMap::new()),
                registry: Arc::new(SubscriberRegistry::default()),
                next_sink: AtomicU64::new(1),
                groups_dir,
                groups: Mutex::new(HashMap::new()),
                commits: Arc::new(watch::channel(0).0),
                plugins,
                metrics: Arc::default(),
                tasks: TaskTracker::new(),
                stop: CancellationToken::new(),
            }),
        };
        broker.load_topics()?;
        broker.load_groups()?;
        broker.start_background_jobs();
        Ok(broker)
    }

    fn load_topics(&self) -> Result<(), BrokerError> {
        let dir = &self.inner.topics_dir;
        let entries = std::fs::read_dir(dir).map_err(|e| BrokerError::Storage {
            topic: String::new(),
            source: StoreError::io("list", dir, e),
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            if name.starts_with('.') {
                // Left over from a deletion interrupted by a crash.
                let _ = std::fs::remove_dir_all(&path);
                continue;
            }
            if !path.is_dir() || validate_topic(&name).is_err() {
                tracing::warn!(path = %path.display(), "ignoring unexpected entry in the topics directory");
                continue;
            }
            let settings = TopicSettings::load(&path).unwrap_or_else(|| self.default_settings());
            let topic = Topic::open(
                &name,
                path,
                settings,
                false,
                self.inner.stop.child_token(),
                self.inner.metrics.topic(&name),
            )?;
            let topic = Arc::new(topic);
            tracing::info!(topic = %name, next_offset = topic.log.next_offset(), "topic recovered");
            self.start_committer(&topic);
            write_lock(&self.inner.topics).insert(name, topic);
        }
        Ok(())
    }

    fn default_settings(&self) -> TopicSettings {
        let r = &self.inner.config.topics.retention;
        TopicSettings {
            retention: RetentionSpec {
                max_age_ms: r.max_age.map(|d| d.as_millis() as u64),
                max_bytes: r.max_bytes,
                max_messages: r.max_messages,
            },
            segment_bytes: self.inner.config.storage.segment_bytes,
            dedup_window_ms: self.inner.config.topics.dedup_window.as_millis() as u64,
        }
    }

    fn start_committer(&self, topic: &Arc<Topic>) {
        self.inner.tasks.spawn(topic.clone().run_committer(
            self.inner.config.storage.fsync,
            self.inner.registry.clone(),
            self.inner.commits.clone(),
        ));
    }

    fn start_background_jobs(&self) {
        let storage = &self.inner.config.storage;
        self.every(storage.retention_check_interval, |broker| async move {
            broker.apply_retention().await
        });
        if storage.fsync == FsyncPolicy::Interval {
            self.every(storage.fsync_interval, |broker| async move {
                broker.sync_all().await
            });
        }
    }

    /// Runs `job` every `period` until the broker stops.
    fn every<F, Fut>(&self, period: std::time::Duration, job: F)
    where
        F: Fn(Broker) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let broker = self.clone();
        self.inner.tasks.spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => job(broker.clone()).await,
                    () = broker.inner.stop.cancelled() => return,
                }
            }
        });
    }

    fn all_topics(&self) -> Vec<Arc<Topic>> {
        read_lock(&self.inner.topics).values().cloned().collect()
    }

    pub(crate) fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        read_lock(&self.inner.topics).get(name).cloned()
    }

    pub(crate) fn matching_topics(&self, pattern: &Pattern) -> Vec<Arc<Topic>> {
        let mut topics: Vec<_> = read_lock(&self.inner.topics)
            .iter()
            .filter(|(name, _)| pattern.matches(name))
            .map(|(_, t)| t.clone())
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics
    }

    pub(crate) fn unregister(&self, sink: u64) {
        self.inner.registry.unregister(sink);
    }

    async fn apply_retention(&self) {
        let now = topic::now_ms();
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
        let topics = self.all_topics();
        let result = tokio::task::spawn_blocking(move || {
            for topic in topics {
                if let Err(e) = topic.log.sync() {
                    tracing::error!(topic = %topic.name, error = %e, "periodic fsync failed");
                }
            }
        })
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "periodic fsync task failed");
        }
    }

    fn get_or_create(&self, name: &str) -> Result<Arc<Topic>, BrokerError> {
        if let Some(topic) = self.topic(name) {
            return Ok(topic);
        }
        if !self.inner.config.topics.auto_create {
            return Err(BrokerError::TopicNotFound(name.to_owned()));
        }
        self.get_or_create_always(name)
    }

    fn create(&self, name: &str, settings: TopicSettings) -> Result<Arc<Topic>, BrokerError> {
        let mut topics = write_lock(&self.inner.topics);
        if topics.contains_key(name) {
            return Err(BrokerError::TopicExists(name.to_owned()));
        }
        let dir = self.inner.topics_dir.join(name);
        let topic = Arc::new(Topic::open(
            name,
            dir,
            settings,
            true,
            self.inner.stop.child_token(),
            self.inner.metrics.topic(name),
        )?);
        self.start_committer(&topic);
        topics.insert(name.to_owned(), topic.clone());
        tracing::info!(topic = %name, "topic created");
        Ok(topic)
    }

    /// Publishes one message or a batch (possibly over several topics):
    /// runs the pipelines of the topics that have one (on the blocking
    /// pool), appends, and returns the pending acks. Callers that await
    /// each publish before reading the next keep a connection's publishes
    /// in order; the acks can then be awaited concurrently.
    pub async fn publish(
        &self,
        messages: Vec<PublishMessage>,
    ) -> Result<PendingPublish, BrokerError> {
        self.publish_as(messages, &ANONYMOUS).await
    }

    /// [`Broker::publish`] on behalf of `publisher`: where a plugin routes
    /// a message must be a topic the publisher may publish to, or the
    /// message is rejected (the caller checks the topics published to).
    pub async fn publish_as(
        &self,
        messages: Vec<PublishMessage>,
        publisher: &Principal,
    ) -> Result<PendingPublish, BrokerError> {
        let (groups, total) = group_messages(messages)?;
        self.publish_groups(groups, total, publisher).await
    }

    /// [`Broker::publish`] of a compact publish: the same, without a topic
    /// string per message.
    pub async fn publish_compact(
        &self,
        publish: sluice_proto::PublishCompact,
    ) -> Result<PendingPublish, BrokerError> {
        self.publish_compact_as(publish, &ANONYMOUS).await
    }

    /// [`Broker::publish_as`] of a compact publish.
    pub async fn publish_compact_as(
        &self,
        publish: sluice_proto::PublishCompact,
        publisher: &Principal,
    ) -> Result<PendingPublish, BrokerError> {
        let (groups, total) = group_runs(publish.runs)?;
        self.publish_groups(groups, total, publisher).await
    }

    async fn publish_groups(
        &self,
        groups: TopicGroups,
        total: usize,
        publisher: &Principal,
    ) -> Result<PendingPublish, BrokerError> {
        if total == 0 {
            return Err(BrokerError::InvalidArgument(
                "a publish needs at least one message".into(),
            ));
        }
        if !self.inner.plugins.has_pipelines() {
            return self.append_direct(groups, total);
        }
        // One generation of plugins for the whole publish: a reload that
        // lands meanwhile takes effect from the next publish on.
        let set = self.inner.plugins.current();
        if groups.iter().any(|(t, _)| set.pipeline_for(t).is_some()) {
            self.publish_through_pipelines(set, groups, total, publisher)
                .await
        } else {
            self.append_direct(groups, total)
        }
    }

    /// The plugin a subscription or consumer asked for, following reloads.
    fn delivery_plugin(
        &self,
        spec: &sluice_proto::DeliveryPlugin,
    ) -> Result<Arc<crate::plugin::delivery::DeliveryFilter>, BrokerError> {
        crate::plugin::delivery::DeliveryFilter::new(self.inner.plugins.clone(), spec)
            .map_err(BrokerError::InvalidArgument)
    }

    /// Event counters for `/metrics`.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.inner.metrics
    }

    /// The plugins and pipelines in force, and their reloads.
    pub fn plugins(&self) -> &Arc<PluginRegistry> {
        &self.inner.plugins
    }

    /// Status of the loaded plugins.
    pub fn plugin_status(&self) -> Vec<sluice_proto::PluginStatus> {
        self.inner.plugins.status()
    }

    async fn publish_through_pipelines(
        &self,
        plugins: Arc<PluginSet>,
        groups: TopicGroups,
        total: usize,
        publisher: &Principal,
    ) -> Result<PendingPublish, BrokerError> {
        let mut plan = Plan::default();
        let mut rejected: Vec<Option<String>> = vec![None; total];
        for (topic, items) in groups {
            let Some(pipeline) = plugins
                .pipelines
                .iter()
                .position(|p| p.pattern.matches(&topic))
            else {
                for (origin, record) in items {
                    plan.push(topic.clone(), origin, record, None);
                }
                continue;
            };
            let (origins, records): (Vec<usize>, Vec<NewRecord>) = items.into_iter().unzip();
            let plugins = plugins.clone();
            let name = topic.clone();
            let run = move || plugins.pipelines[pipeline].run(&name, records, topic::now_ms());
            let dispositions = if tokio::runtime::Handle::current().runtime_flavor()
                == tokio::runtime::RuntimeFlavor::MultiThread
            {
                tokio::task::block_in_place(run)
            } else {
                tokio::task::spawn_blocking(run)
                    .await
                    .map_err(|e| BrokerError::Internal(format!("pipeline task failed: {e}")))?
            };
            for (origin, disposition) in origins.into_iter().zip(dispositions) {
                if let Some(reason) = disposition.rejected {
                    rejected[origin] = Some(reason);
                    continue;
                }
                // A routing rule cannot write where its publisher may not.
                let forbidden = disposition.outputs.iter().find_map(|(d, _)| match d {
                    Destination::Topic(to) if !publisher.permissions.may_publish(to) => Some(to),
                    _ => None,
                });
                if let Some(to) = forbidden {
                    self.inner.metrics.denied("route");
                    let reason = format!(
                        "a plugin routed the message to {to:?}, where principal {:?} may not publish",
                        publisher.name
                    );
                    if let Some(held) = ROUTE_DENIALS_LOG.allow() {
                        tracing::warn!(topic = %topic, principal = %publisher.name, held_back = held, "{reason}");
                    }
                    rejected[origin] = Some(reason);
                    continue;
                }
                for (destination, record) in disposition.outputs {
                    match destination {
                        Destination::Own => plan.push(topic.clone(), origin, record, None),
                        Destination::Topic(to) if validate_topic(&to).is_ok() => {
                            plan.push(to, origin, record, None)
                        }
                        Destination::Topic(to) => {
                            let reason = format!("a plugin routed the message to {to:?}, which is not a valid topic name");
                            plan.push_dead_letter(&topic, origin, record, reason, "");
                        }
                        Destination::DeadLetter { reason, stage } => {
                            plan.push_dead_letter(&topic, origin, record, reason, &stage)
                        }
                    }
                }
            }
        }
        // Append per destination, in the order destinations first appear.
        let mut places: Vec<Vec<(StoredAt, Option<String>)>> = vec![Vec::new(); total];
        // Resolve every destination first: a publish that fails must not
        // have stored part of its messages.
        let mut resolved = Vec::with_capacity(plan.by_topic.len());
        for (destination, _) in &plan.by_topic {
            resolved.push(if destination.starts_with("dlq.") {
                self.get_or_create_always(destination)?
            } else {
                self.get_or_create(destination)?
            });
        }
        let mut commits = Vec::new();
        for ((destination, entries), topic) in plan.by_topic.into_iter().zip(resolved) {
            let (meta, batch): (Vec<(usize, Option<String>)>, Vec<NewRecord>) = entries
                .into_iter()
                .map(|(origin, record, dead)| ((origin, dead), record))
                .unzip();
            let (appended, commit) = topic.append(batch)?;
            for ((origin, dead), appended) in meta.into_iter().zip(appended) {
                let (offset, duplicate) = match appended {
                    Appended::Stored(offset) => (offset, false),
                    Appended::Duplicate(offset) => (offset, true),
                };
                let at = StoredAt {
                    topic: destination.clone(),
                    offset,
                    duplicate,
                };
                places[origin].push((at, dead));
            }
            commits.push((topic.name.clone(), commit));
        }
        let outcomes = places
            .into_iter()
            .zip(rejected)
            .map(|(places, rejected)| {
                if let Some(reason) = rejected {
                    return MessageOutcome::Rejected(reason);
                }
                if places.is_empty() {
                    return MessageOutcome::Dropped;
                }
                if places.iter().all(|(_, dead)| dead.is_some()) {
                    let (at, dead) = places.into_iter().next().expect("not empty");
                    return MessageOutcome::DeadLettered {
                        reason: dead.unwrap_or_default(),
                        at,
                    };
                }
                MessageOutcome::Stored(places.into_iter().map(|(at, _)| at).collect())
            })
            .collect();
        Ok(PendingPublish {
            commits,
            ack: PublishAck { outcomes },
        })
    }

    /// Stores a dead letter made by the broker itself (consumer groups):
    /// no pipeline runs and the topic is created whatever `auto_create`
    /// says. Completes when it is committed.
    pub(crate) async fn store_dead_letter(
        &self,
        topic: &str,
        record: NewRecord,
    ) -> Result<u64, BrokerError> {
        check_topic(topic)?;
        let topic = self.get_or_create_always(topic)?;
        let (appended, commit) = topic.append(vec![record])?;
        let offset = match appended.first() {
            Some(Appended::Stored(offset) | Appended::Duplicate(offset)) => *offset,
            None => return Err(BrokerError::Internal("dead letter not appended".into())),
        };
        match commit.await {
            Ok(Ok(())) => Ok(offset),
            Ok(Err(reason)) => Err(BrokerError::Storage {
                topic: topic.name.to_string(),
                source: StoreError::io(
                    "commit",
                    topic.name.to_string(),
                    std::io::Error::other(reason.to_string()),
                ),
            }),
            Err(_) => Err(BrokerError::ShuttingDown),
        }
    }

    /// Creates a topic if missing, whatever `auto_create` says (dead-letter
    /// topics must exist for the broker's own writes).
    fn get_or_create_always(&self, name: &str) -> Result<Arc<Topic>, BrokerError> {
        if let Some(topic) = self.topic(name) {
            return Ok(topic);
        }
        match self.create(name, self.default_settings()) {
            Ok(topic) => Ok(topic),
            // Another publisher created it first.
            Err(BrokerError::TopicExists(_)) => self
                .topic(name)
                .ok_or_else(|| BrokerError::TopicNotFound(name.to_owned())),
            Err(e) => Err(e),
        }
    }

    /// Appends messages of topics without a pipeline.
    fn append_direct(
        &self,
        groups: TopicGroups,
        total: usize,
    ) -> Result<PendingPublish, BrokerError> {
        let topics = groups
            .iter()
            .map(|(name, _)| self.get_or_create(name))
            .collect::<Result<Vec<_>, _>>()?;
        let mut outcomes: Vec<Option<MessageOutcome>> = vec![None; total];
        let mut commits = Vec::with_capacity(groups.len());
        for ((name, records), topic) in groups.into_iter().zip(topics) {
            let (indexes, batch): (Vec<usize>, Vec<NewRecord>) = records.into_iter().unzip();
            let (appended, commit) = topic.append(batch)?;
            for (index, appended) in indexes.into_iter().zip(appended) {
                let (offset, duplicate) = match appended {
                    Appended::Stored(offset) => (offset, false),
                    Appended::Duplicate(offset) => (offset, true),
                };
                outcomes[index] = Some(MessageOutcome::Stored(vec![StoredAt {
                    topic: name.clone(),
                    offset,
                    duplicate,
                }]));
            }
            commits.push((topic.name.clone(), commit));
        }
        Ok(PendingPublish {
            commits,
            ack: PublishAck {
                outcomes: outcomes.into_iter().flatten().collect(),
            },
        })
    }

    /// Starts a subscription. Live (`Latest`) or replaying (anything else).
    pub fn subscribe(
        &self,
        pattern: &str,
        from: StartPosition,
        plugin: Option<&sluice_proto::DeliveryPlugin>,
    ) -> Result<Subscription, BrokerError> {
        let filter = plugin.map(|p| self.delivery_plugin(p)).transpose()?;
        let parsed = Pattern::parse(pattern).map_err(|reason| BrokerError::InvalidPattern {
            pattern: pattern.to_owned(),
            reason,
        })?;
        let id = self.inner.next_sink.fetch_add(1, Ordering::Relaxed);
        let (sink, rx) = Sink::new(
            id,
            parsed,
            self.inner.config.limits.subscriber_buffer_messages,
        );
        // Register before looking at the logs: whatever commits after this
        // point reaches the sink, whatever committed before is in the log.
        self.inner.registry.register(sink.clone());
        let topics = self.matching_topics(&sink.pattern);
        Subscription::new(self.clone(), sink, rx, from, topics, filter)
    }

    /// Reads stored messages of one topic.
    pub async fn fetch(
        &self,
        topic: &str,
        from: StartPosition,
        max_messages: u32,
        max_bytes: u32,
    ) -> Result<FetchBatch, BrokerError> {
        check_topic(topic)?;
        if max_messages == 0 || max_messages > MAX_FETCH_MESSAGES {
            return Err(BrokerError::InvalidArgument(format!(
                "max_messages must be between 1 and {MAX_FETCH_MESSAGES}, not {max_messages}"
            )));
        }
        let topic = self
            .topic(topic)
            .ok_or_else(|| BrokerError::TopicNotFound(topic.to_owned()))?;
        let t = topic.clone();
        tokio::task::spawn_blocking(move || {
            let from = match from {
                StartPosition::Earliest => t.log.start_offset(),
                StartPosition::Latest => t.committed_end(),
                StartPosition::Offset(o) => o,
                StartPosition::Timestamp(ts) => {
                    t.log
                        .offset_for_timestamp(ts)
                        .map_err(|e| BrokerError::Storage {
                            topic: t.name.to_string(),
                            source: e,
                        })?
                }
            };
            let read = t.read_committed(from, max_messages as usize, max_bytes.max(1) as usize)?;
            Ok(FetchBatch {
                messages: read
                    .records
                    .into_iter()
                    .map(|r| Delivered {
                        topic: t.name.to_string(),
                        offset: r.offset,
                        timestamp_ms: r.timestamp_ms,
                        key: r.key,
                        headers: r.headers,
                        payload: r.payload,
                        id: r.id,
                        attempt: 0,
                    })
                    .collect(),
                next_offset: read.next_offset,
                end_offset: t.committed_end(),
            })
        })
        .await
        .map_err(|e| BrokerError::Internal(e.to_string()))?
    }

    /// Creates a topic with the given or default settings.
    pub fn create_topic(&self, request: &CreateTopic) -> Result<TopicInfo, BrokerError> {
        let name = request.name.as_str();
        check_topic(name)?;
        let mut settings = self.default_settings();
        if let Some(retention) = request.retention {
            settings.retention = retention;
        }
        if let Some(window) = request.dedup_window_ms {
            if window > group::MAX_NACK_DELAY_MS {
                return Err(BrokerError::InvalidArgument(format!(
                    "dedup_window_ms must be at most {} (one day), not {window}",
                    group::MAX_NACK_DELAY_MS
                )));
            }
            settings.dedup_window_ms = window;
        }
        if let Some(bytes) = request.segment_bytes {
            if !(1024..=u64::from(u32::MAX)).contains(&bytes) {
                return Err(BrokerError::InvalidArgument(format!(
                    "segment_bytes must be between 1024 and {}, not {bytes}",
                    u32::MAX
                )));
            }
            settings.segment_bytes = bytes;
        }
        Ok(self.create(name, settings)?.info())
    }

    /// Deletes a topic and its files.
    pub async fn delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        check_topic(name)?;
        let graveyard = self
            .inner
            .topics_dir
            .join(format!(".deleted-{name}-{}", topic::now_ms()));
        let topic = {
            // Rename under the lock: a publish that re-creates the topic
            // right after must get a fresh directory, not the old files.
            let mut topics = write_lock(&self.inner.topics);
            let topic = topics
                .remove(name)
                .ok_or_else(|| BrokerError::TopicNotFound(name.to_owned()))?;
            topic.mark_deleted();
            topic.stop.cancel();
            if let Err(e) = std::fs::rename(&topic.dir, &graveyard) {
                topics.insert(name.to_owned(), topic.clone());
                return Err(BrokerError::Storage {
                    topic: name.to_owned(),
                    source: StoreError::io("rename", &topic.dir, e),
                });
            }
            // Under the lock: a re-created topic gets fresh series.
            self.inner.metrics.topic_deleted(name);
            topic
        };
        drop(topic);
        tokio::task::spawn_blocking(move || {
            std::fs::remove_dir_all(&graveyard).map_err(|e| StoreError::io("remove", &graveyard, e))
        })
        .await
        .map_err(|e| BrokerError::Internal(e.to_string()))?
        .map_err(|source| BrokerError::Storage {
            topic: name.to_owned(),
            source,
        })?;
        tracing::info!(topic = %name, "topic deleted");
        Ok(())
    }

    /// All topics, by name.
    pub fn list_topics(&self) -> Vec<TopicInfo> {
        let mut infos: Vec<_> = self.all_topics().iter().map(|t| t.info()).collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        infos
    }

    /// One topic.
    pub fn topic_info(&self, name: &str) -> Result<TopicInfo, BrokerError> {
        check_topic(name)?;
        self.topic(name)
            .map(|t| t.info())
            .ok_or_else(|| BrokerError::TopicNotFound(name.to_owned()))
    }

    pub(crate) fn fsync_policy(&self) -> FsyncPolicy {
        self.inner.config.storage.fsync
    }

    pub(crate) fn spawn_task<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.inner.tasks.spawn(task);
    }

    fn load_groups(&self) -> Result<(), BrokerError> {
        let dir = &self.inner.groups_dir;
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(BrokerError::Storage {
                    topic: String::new(),
                    source: StoreError::io("list", dir, e),
                })
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            if !path.is_dir() || validate_topic(&name).is_err() {
                continue;
            }
            let settings = match group::GroupSettings::load(&path) {
                Ok(settings) => settings,
                Err(e) => {
                    tracing::error!(group = %name, error = %e, "cannot load consumer group; skipping it");
                    continue;
                }
            };
            let handle = group::spawn(
                self,
                name.clone(),
                path,
                settings,
                false,
                self.inner.commits.subscribe(),
                self.inner.stop.child_token(),
            )?;
            lock(&self.inner.groups).insert(name, handle);
        }
        Ok(())
    }

    fn group(&self, name: &str) -> Result<Arc<group::GroupHandle>, BrokerError> {
        check_group(name)?;
        lock(&self.inner.groups)
            .get(name)
            .cloned()
            .ok_or_else(|| BrokerError::GroupNotFound(name.to_owned()))
    }

    /// Joins (creating if needed) a consumer group, for `client` (its name,
    /// for group status). The request's consumer id is the server's business.
    pub fn consume(
        &self,
        request: sluice_proto::Consume,
        client: &str,
    ) -> Result<Consumer, BrokerError> {
        let sluice_proto::Consume {
            group,
            pattern,
            options,
            max_in_flight,
            limit,
            plugin,
            consumer: _,
        } = request;
        let (group_name, pattern) = (group.as_str(), pattern.as_str());
        check_group(group_name)?;
        let filter = plugin
            .as_ref()
            .map(|p| self.delivery_plugin(p))
            .transpose()?;
        let parsed = Pattern::parse(pattern).map_err(|reason| BrokerError::InvalidPattern {
            pattern: pattern.to_owned(),
            reason,
        })?;
        if max_in_flight == 0 {
            return Err(BrokerError::InvalidArgument(
                "max_in_flight must be at least 1".into(),
            ));
        }
        let handle = {
            let mut groups = lock(&self.inner.groups);
            match groups.get(group_name) {
                Some(handle) => {
                    if handle.settings.pattern != pattern {
                        return Err(BrokerError::InvalidArgument(format!(
                            "group {group_name:?} consumes {:?}, not {pattern:?} (use another group name)",
                            handle.settings.pattern
                        )));
                    }
                    handle.clone()
                }
                None => {
                    if parsed.is_literal() && self.topic(pattern).is_none() {
                        return Err(BrokerError::TopicNotFound(pattern.to_owned()));
                    }
                    check_group_options(&options)?;
                    let settings = group::GroupSettings {
                        pattern: pattern.to_owned(),
                        options,
                    };
                    let dir = self.inner.groups_dir.join(group_name);
                    settings.save(&dir).map_err(|e| BrokerError::Storage {
                        topic: format!("group {group_name}"),
                        source: StoreError::io("create", &dir, e),
                    })?;
                    let handle = group::spawn(
                        self,
                        group_name.to_owned(),
                        dir,
                        settings,
                        true,
                        self.inner.commits.subscribe(),
                        self.inner.stop.child_token(),
                    )?;
                    groups.insert(group_name.to_owned(), handle.clone());
                    tracing::info!(group = %group_name, %pattern, "consumer group created");
                    handle
                }
            }
        };
        let member = self.inner.next_sink.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        handle
            .commands
            .send(group::Command::Join {
                member,
                client: client.to_owned(),
                max_in_flight,
                limit,
                deliveries: tx,
            })
            .map_err(|_| BrokerError::ShuttingDown)?;
        Ok(Consumer {
            group: handle,
            member,
            deliveries: rx,
            filter,
        })
    }

    /// Settles one delivered message.
    pub async fn settle(&self, settle: Settle) -> Result<(), BrokerError> {
        check_settle(&settle.topic, &settle.action)?;
        self.group(&settle.group)?
            .settle(settle.topic, settle.offset, settle.action)
            .await
    }

    /// Settles several messages of one group; one result per item (a bad
    /// item fails alone).
    pub async fn settle_batch(
        &self,
        batch: sluice_proto::SettleBatch,
    ) -> Result<Vec<Option<sluice_proto::ErrorBody>>, BrokerError> {
        let group = self.group(&batch.group)?;
        let mut errors: Vec<Option<sluice_proto::ErrorBody>> = vec![None; batch.items.len()];
        let mut valid = Vec::with_capacity(batch.items.len());
        let mut positions = Vec::with_capacity(batch.items.len());
        for (i, item) in batch.items.into_iter().enumerate() {
            if let Err(e) = check_settle(&item.topic, &item.action) {
                errors[i] = Some(e.to_body());
                continue;
            }
            positions.push(i);
            valid.push((item.topic, item.offset, item.action));
        }
        if !valid.is_empty() {
            let results = group.settle_many(valid).await?;
            for (i, result) in positions.into_iter().zip(results) {
                errors[i] = result.err().map(|e| e.to_body());
            }
        }
        Ok(errors)
    }

    /// Every consumer group, by name.
    pub async fn list_groups(&self) -> Vec<GroupInfo> {
        let handles: Vec<_> = lock(&self.inner.groups).values().cloned().collect();
        let mut infos = Vec::with_capacity(handles.len());
        for handle in handles {
            if let Ok(info) = handle.info().await {
                infos.push(info);
            }
        }
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        infos
    }

    /// One consumer group.
    pub async fn group_info(&self, name: &str) -> Result<GroupInfo, BrokerError> {
        self.group(name)?.info().await
    }

    /// Moves a group to a position; pending deliveries are forgotten.
    pub async fn reset_group(
        &self,
        name: &str,
        to: StartPosition,
    ) -> Result<GroupInfo, BrokerError> {
        self.group(name)?.reset(to).await
    }

    /// Live subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.inner.registry.len()
    }

    /// Commits what is pending, stops the committers and background jobs
    /// and fsyncs every log. Call after the server stopped taking requests.
    pub async fn shutdown(&self) {
        self.inner.stop.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        self.sync_all().await;
    }
}
