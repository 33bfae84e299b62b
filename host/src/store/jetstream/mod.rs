//! [`JetStreamStore`]: the store of cluster mode, over a NATS JetStream
//! cluster. The node holds no data: every topic is a stream replicated by
//! JetStream's own Raft, and any node serves any topic.
//!
//! - A stream per topic: one subject, `replicas` copies, file storage,
//!   message deletes and purges denied, the topic's retention as the
//!   stream's limits (discard old), direct gets allowed, the topic's name
//!   in its metadata. Names: [`crate::nats::names`].
//! - Offset = stream sequence − 1, dense because nothing is deleted but by
//!   retention, from the front.
//! - An append publishes each record (in order, on one connection) and
//!   resolves when JetStream acknowledged every one: after a quorum of
//!   servers stored it. A record's id is its `Nats-Msg-Id`, so a retry
//!   through any node within the topic's window is stored once.
//! - Which topics exist: [`topics`], from a key-value bucket.
//! - Feeds: [`tail`], an ordered consumer per topic per node, started
//!   once a feed (a subscription) wants the topic: a node that only
//!   publishes reads nothing back.
//! - Reads: [`read`], batched direct gets.
//!
//! # Layout
//!
//! - here: [`JetStreamStore`], opening, topic admin and the [`Store`] impl.
//! - [`append`]: publishing a batch, riding out elections.
//! - [`envelope`]: a record in a JetStream message.
//! - [`topics`]: the topic cache and its bucket entries.
//! - [`tail`]: following a stream into the feeds.
//! - [`read`]: reading a stream from an offset.

mod append;
mod envelope;
mod read;
mod tail;
mod topics;
mod watch;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::kv;
use async_nats::jetstream::stream::{Config as StreamConfig, DiscardPolicy, StorageType};
use futures_util::future::{BoxFuture, FutureExt};
use sluice_proto::{Pattern, TopicInfo};
use tokio::sync::{broadcast, watch as tokio_watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use self::envelope::{decode, BadEnvelope};
use self::topics::{Change, Topic, TopicEntryValue, Topics};
use super::api::{AppendTicket, Store, TopicEvent, TopicMeta, TopicSettings};
use super::error::StoreError;
use super::feed::Feed;
use super::log::ReadBatch;
use super::record::NewRecord;
use super::registry::SubscriberRegistry;
use crate::nats::{names, Nats};
use crate::sync::{read, write};

/// Topic events kept for slow receivers.
const EVENT_BUFFER: usize = 1024;

/// The store of cluster mode. Cheap to clone.
#[derive(Clone)]
pub struct JetStreamStore {
    inner: Arc<Inner>,
}

pub(super) struct Inner {
    nats: Nats,
    namespace: names::Namespace,
    defaults: TopicSettings,
    bucket: kv::Store,
    topics: RwLock<Topics>,
    registry: Arc<SubscriberRegistry>,
    commits: tokio_watch::Sender<u64>,
    events: broadcast::Sender<TopicEvent>,
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl JetStreamStore {
    /// Opens the store on `nats`: the topics bucket (created if missing),
    /// every topic in it, and the watch that keeps them current. Topics
    /// created without settings get `defaults`.
    pub async fn open(nats: Nats, defaults: TopicSettings) -> Result<JetStreamStore, StoreError> {
        JetStreamStore::open_in(nats, defaults, names::TOPICS).await
    }

    /// [`JetStreamStore::open`] on the topics of `namespace`, which no
    /// other namespace's store sees.
    pub async fn open_in(
        nats: Nats,
        defaults: TopicSettings,
        namespace: names::Namespace,
    ) -> Result<JetStreamStore, StoreError> {
        let bucket = open_bucket(&nats, namespace.bucket).await?;
        let store = JetStreamStore {
            inner: Arc::new(Inner {
                nats,
                namespace,
                defaults,
                bucket,
                topics: RwLock::new(Topics::default()),
                registry: Arc::new(SubscriberRegistry::default()),
                commits: tokio_watch::channel(0).0,
                events: broadcast::channel(EVENT_BUFFER).0,
                tasks: TaskTracker::new(),
                stop: CancellationToken::new(),
            }),
        };
        let from = watch::load(&store.inner).await?;
        store
            .inner
            .tasks
            .spawn(watch::follow(store.inner.clone(), from));
        Ok(store)
    }

    fn get(&self, name: &str) -> Result<Arc<Topic>, StoreError> {
        read(&self.inner.topics)
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::TopicNotFound(name.to_owned()))
    }

    async fn create(&self, name: &str, settings: TopicSettings) -> Result<TopicMeta, StoreError> {
        sluice_proto::validate_topic(name).map_err(|reason| StoreError::InvalidTopic {
            name: name.to_owned(),
            reason,
        })?;
        let stream = self.inner.namespace.stream(name);
        let mut config = stream_config(&self.inner.nats, name, &stream, &settings);
        config.deny_purge = !self.inner.namespace.purgeable;
        let js = &self.inner.nats.jetstream;
        self.inner
            .nats
            .retrying(|| js.get_or_create_stream(config.clone()))
            .await
            .map_err(|e| unavailable("create the stream of", name, e))?;
        let value = serde_json::to_vec(&TopicEntryValue {
            name: name.to_owned(),
            settings,
        })
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let value = bytes::Bytes::from(value);
        let revision = match self
            .inner
            .nats
            .retrying(|| self.inner.bucket.create(&stream, value.clone()))
            .await
        {
            Ok(revision) => revision,
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                return Err(StoreError::TopicExists(name.to_owned()))
            }
            Err(e) => return Err(unavailable("record", name, e)),
        };
        // The watch applies the same entry; whichever comes first wins.
        watch::apply_put(
            &self.inner,
            &stream,
            revision,
            value_of(name, settings),
            watch::Position::NEW,
        );
        self.get(name).map(|t| t.meta())
    }

    async fn bucket_entry(&self, stream: &str) -> Result<Option<kv::Entry>, StoreError> {
        self.inner
            .nats
            .retrying(|| self.inner.bucket.entry(stream))
            .await
            .map(|e| e.filter(|e| e.operation == kv::Operation::Put))
            .map_err(|e| StoreError::Unavailable(format!("topics bucket: {e}")))
    }

    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        let stream = self.inner.namespace.stream(name);
        let Some(entry) = self.bucket_entry(&stream).await? else {
            return Err(StoreError::TopicNotFound(name.to_owned()));
        };
        self.inner
            .bucket
            .delete_expect_revision(&stream, Some(entry.revision))
            .await
            .map_err(|e| unavailable("delete", name, e))?;
        watch::apply_delete(&self.inner, &stream, entry.revision + 1);
        if let Err(e) = self.inner.nats.jetstream.delete_stream(&stream).await {
            // The entry is gone, so the topic is; the stream is replaced
            // when the topic is created again.
            tracing::warn!(topic = %name, %stream, error = %e, "the topic is deleted but its stream could not be removed");
        }
        Ok(())
    }
}

fn value_of(name: &str, settings: TopicSettings) -> TopicEntryValue {
    TopicEntryValue {
        name: name.to_owned(),
        settings,
    }
}

fn unavailable(what: &str, topic: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("cannot {what} topic {topic:?}: {e}"))
}

/// The key-value bucket `name`, created if missing (history 1, replicas as
/// configured).
pub(crate) async fn open_bucket(nats: &Nats, name: &str) -> Result<kv::Store, StoreError> {
    if let Ok(bucket) = nats.jetstream.get_key_value(name).await {
        return Ok(bucket);
    }
    let config = kv::Config {
        bucket: name.to_owned(),
        history: 1,
        num_replicas: nats.replicas,
        storage: StorageType::File,
        ..Default::default()
    };
    // Creating a bucket that exists with this configuration returns it, so
    // nodes starting together agree.
    nats.retrying(|| nats.jetstream.create_key_value(config.clone()))
        .await
        .map_err(|e| StoreError::Unavailable(format!("cannot create the bucket {name}: {e}")))
}

/// The stream of topic `name`.
fn stream_config(nats: &Nats, name: &str, stream: &str, settings: &TopicSettings) -> StreamConfig {
    let retention = &settings.retention;
    let limit = |v: Option<u64>| v.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX));
    let max_age = Duration::from_millis(retention.max_age_ms.unwrap_or(0));
    // JetStream wants the window within max_age; 0 means its default, so a
    // topic without de-duplication gets the smallest window and its
    // records carry no id header.
    let mut window = Duration::from_millis(settings.dedup_window_ms.max(1));
    if !max_age.is_zero() {
        window = window.min(max_age);
    }
    StreamConfig {
        name: stream.to_owned(),
        subjects: vec![names::subject(stream)],
        num_replicas: nats.replicas,
        storage: StorageType::File,
        discard: DiscardPolicy::Old,
        max_age,
        max_bytes: limit(retention.max_bytes),
        max_messages: limit(retention.max_messages),
        duplicate_window: window,
        deny_delete: true,
        deny_purge: true,
        allow_direct: true,
        metadata: HashMap::from([("sluice.topic".to_owned(), name.to_owned())]),
        description: Some(format!("sluice topic {name}")),
        ..Default::default()
    }
}

impl Store for JetStreamStore {
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
            match self.create(&name, self.inner.defaults).await {
                // Another node or publisher created it first.
                Err(StoreError::TopicExists(_)) => {
                    watch::catch_up(&self.inner, &self.inner.namespace.stream(&name)).await?;
                    self.get(&name).map(|t| t.meta())
                }
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
            .all()
            .filter(|t| pattern.matches(&t.name))
            .map(|t| t.meta())
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics
    }

    fn info(&self, name: &str) -> BoxFuture<'_, Result<TopicInfo, StoreError>> {
        let topic = self.get(name);
        async move {
            let topic = topic?;
            let mut stream = self
                .inner
                .nats
                .jetstream
                .get_stream(&topic.stream)
                .await
                .map_err(|e| unavailable("read", &topic.name, e))?;
            let info = stream
                .info()
                .await
                .map_err(|e| unavailable("read", &topic.name, e))?;
            let state = &info.state;
            let start_offset = state.first_sequence.saturating_sub(1);
            let next_offset = state.last_sequence;
            let stored = state.messages > 0;
            Ok(TopicInfo {
                name: topic.name.to_string(),
                start_offset,
                next_offset,
                messages: state.messages,
                bytes: state.bytes,
                segments: 0,
                oldest_timestamp_ms: stored
                    .then(|| (state.first_timestamp.unix_timestamp_nanos() / 1_000_000) as i64),
                newest_timestamp_ms: stored
                    .then(|| (state.last_timestamp.unix_timestamp_nanos() / 1_000_000) as i64),
                retention: topic.settings.retention,
                segment_bytes: topic.settings.segment_bytes,
                dedup_window_ms: topic.settings.dedup_window_ms,
                waiting: 0,
                default_ttl_ms: topic.settings.default_ttl_ms,
                dead_letter_expired: topic.settings.dead_letter_expired,
            })
        }
        .boxed()
    }

    fn events(&self) -> broadcast::Receiver<TopicEvent> {
        self.inner.events.subscribe()
    }

    fn commits(&self) -> tokio_watch::Receiver<u64> {
        self.inner.commits.subscribe()
    }

    fn append(
        &self,
        topic: &str,
        records: Vec<NewRecord>,
    ) -> BoxFuture<'_, Result<AppendTicket, StoreError>> {
        let topic = self.get(topic);
        async move {
            let topic = topic?;
            if self.inner.stop.is_cancelled() {
                return Err(StoreError::Closed);
            }
            append::append(&self.inner.nats, &topic, &records).await
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
            read::read(&self.inner.nats, &topic, from, max_records, max_bytes).await
        }
        .boxed()
    }

    fn trim(&self, name: &str, before: u64) -> BoxFuture<'_, Result<(), StoreError>> {
        let topic = self.get(name);
        async move {
            let topic = topic?;
            let stream = self
                .inner
                .nats
                .jetstream
                .get_stream_no_info(&topic.stream)
                .await
                .map_err(|e| unavailable("trim", &topic.name, e))?;
            // Offsets are sequences less one: keep sequence `before + 1` on.
            stream
                .purge()
                .sequence(before + 1)
                .await
                .map_err(|e| unavailable("trim", &topic.name, e))?;
            Ok(())
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
            read::offset_for_time(&self.inner.nats, &topic, timestamp_ms).await
        }
        .boxed()
    }

    fn catch_up(&self, pattern: &Pattern) -> BoxFuture<'_, Result<(), StoreError>> {
        let topics: Vec<Arc<Topic>> = read(&self.inner.topics)
            .all()
            .filter(|t| pattern.matches(&t.name))
            .cloned()
            .collect();
        async move {
            for topic in topics {
                tail::caught_up(&self.inner, &topic).await?;
            }
            Ok(())
        }
        .boxed()
    }

    fn feed(&self, pattern: Pattern, max_queued: usize) -> Feed {
        let feed = self.inner.registry.feed(pattern, max_queued);
        // Registered first: a topic created from now on sees the feed and
        // starts its own tail; those known now are started here.
        let wanted: Vec<Arc<Topic>> = read(&self.inner.topics)
            .all()
            .filter(|t| feed.pattern().matches(&t.name))
            .cloned()
            .collect();
        for topic in &wanted {
            tail::start(&self.inner, topic, None);
        }
        feed
    }

    fn feeds(&self) -> usize {
        self.inner.registry.len()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        async move {
            self.inner.stop.cancel();
            write(&self.inner.topics).clear();
            self.inner.tasks.close();
            self.inner.tasks.wait().await;
            // Acknowledged publishes are stored already; what is left is
            // the connection's own buffer.
            let _ = self.inner.nats.client.flush().await;
        }
        .boxed()
    }
}

impl Change {
    /// The event this change is, if any.
    fn event(&self) -> Option<TopicEvent> {
        match self {
            Change::None => None,
            Change::Created { topic, .. } => Some(TopicEvent::Created(topic.meta())),
            Change::Deleted(topic) => Some(TopicEvent::Deleted {
                name: topic.name.clone(),
                incarnation: topic.incarnation,
            }),
        }
    }
}
