//! [`JetStreamGroups`]: consumer groups of cluster mode. A group is an
//! entry in the `sluice-groups` bucket (name, pattern, options) and a
//! durable pull consumer per topic it consumes ([`consumers`]); members on
//! every node pull from the same consumers, so they share the messages.
//! What is acknowledged, and where the group is, lives in JetStream; a
//! node keeps only the deliveries its own members hold ([`group`]).
//!
//! Settlements map to JetStream acknowledgements: ack → ACK (confirmed by
//! the server before the settle resolves), nack → NAK with the policy's
//! delay, or the dead-letter topic then TERM once the group's deliveries
//! are used up; reject → dead-letter topic then TERM; in progress → WPI.
//!
//! Key order: a key-ordered group has one message per topic in flight at a
//! time (`max_ack_pending` 1), which keeps every key's order across nodes
//! at the cost of parallelism within a topic.
//!
//! # Layout
//!
//! - here: [`JetStreamGroups`] and the [`Groups`] impl.
//! - [`consumers`]: the JetStream consumer of a group on a topic.
//! - [`group`]: one group on this node: members, deliveries held,
//!   settlement, ack-wait expiry.
//! - [`member`]: a member's pull tasks.

mod consumers;
mod group;
mod member;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_nats::jetstream::kv;
use futures_util::future::{BoxFuture, FutureExt};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sluice_proto::{GroupInfo, GroupOptions, GroupTopicInfo, Pattern, StartPosition};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::group::{nak, Group, MemberEntry};
use self::member::Puller;
use super::{Groups, JoinRequest, Member, SettleItem};
use crate::error::BrokerError;
use crate::nats::{names, Nats};
use crate::store::Store;
use crate::sync::lock;

/// A group's entry in the bucket.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct GroupEntry {
    name: String,
    pattern: String,
    options: GroupOptions,
}

/// Consumer groups over NATS JetStream. Cheap to clone.
#[derive(Clone)]
pub struct JetStreamGroups {
    inner: Arc<Inner>,
}

struct Inner {
    nats: Nats,
    store: Arc<dyn Store>,
    /// Where dead letters are recorded for `sluice trace`.
    record: Arc<crate::trace::Journal>,
    bucket: kv::Store,
    groups: Mutex<HashMap<String, Arc<Group>>>,
    /// Serialises group creation on this node.
    admin: tokio::sync::Mutex<()>,
    next_member: AtomicU64,
    tasks: TaskTracker,
    stop: CancellationToken,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Internal(format!("cluster groups: cannot {what}: {e}"))
}

impl JetStreamGroups {
    /// Opens the groups of the cluster behind `nats`, reading topics from
    /// `store`.
    pub async fn open(
        nats: Nats,
        store: Arc<dyn Store>,
        record: Arc<crate::trace::Journal>,
    ) -> Result<JetStreamGroups, BrokerError> {
        let bucket = crate::store::jetstream::open_bucket(&nats, names::GROUPS_BUCKET)
            .await
            .map_err(|e| unavailable("open the groups bucket", e))?;
        Ok(JetStreamGroups {
            inner: Arc::new(Inner {
                nats,
                store,
                record,
                bucket,
                groups: Mutex::new(HashMap::new()),
                admin: tokio::sync::Mutex::new(()),
                next_member: AtomicU64::new(1),
                tasks: TaskTracker::new(),
                stop: CancellationToken::new(),
            }),
        })
    }

    fn local(&self, name: &str) -> Option<Arc<Group>> {
        lock(&self.inner.groups).get(name).cloned()
    }

    /// The group, from this node's cache or the bucket.
    async fn group(&self, name: &str) -> Result<Arc<Group>, BrokerError> {
        if let Some(group) = self.local(name) {
            return Ok(group);
        }
        let entry = self
            .entry(name)
            .await?
            .ok_or_else(|| BrokerError::GroupNotFound(name.to_owned()))?;
        self.cache(entry)
    }

    async fn entry(&self, name: &str) -> Result<Option<GroupEntry>, BrokerError> {
        let key = names::group_key(name);
        let entry = self
            .inner
            .nats
            .retrying(|| self.inner.bucket.get(key.as_str()))
            .await
            .map_err(|e| unavailable("read the groups bucket", e))?;
        entry
            .map(|bytes| serde_json::from_slice(&bytes))
            .transpose()
            .map_err(|e| unavailable("read a group entry", e))
    }

    /// The group of `entry`, kept on this node from now on. An entry whose
    /// pattern does not parse (written outside sluice) is refused.
    fn cache(&self, entry: GroupEntry) -> Result<Arc<Group>, BrokerError> {
        let mut groups = lock(&self.inner.groups);
        if let Some(group) = groups.get(&entry.name) {
            return Ok(group.clone());
        }
        let pattern =
            Pattern::parse(&entry.pattern).map_err(|reason| BrokerError::InvalidPattern {
                pattern: entry.pattern.clone(),
                reason,
            })?;
        let group = Arc::new(Group::new(
            &entry.name,
            pattern,
            entry.options,
            self.inner.store.clone(),
            self.inner.record.clone(),
        ));
        self.inner.tasks.spawn(group.clone().expire());
        groups.insert(entry.name, group.clone());
        Ok(group)
    }

    async fn create(
        &self,
        name: &str,
        pattern: &str,
        options: GroupOptions,
    ) -> Result<GroupOptions, BrokerError> {
        let _admin = self.inner.admin.lock().await;
        if let Some(existing) = self.entry(name).await? {
            return Ok(self
                .cache(same_pattern(name, pattern, existing)?)?
                .options
                .clone());
        }
        let parsed = Pattern::parse(pattern).map_err(|reason| BrokerError::InvalidPattern {
            pattern: pattern.to_owned(),
            reason,
        })?;
        if parsed.is_literal() && self.inner.store.topic(pattern).is_none() {
            return Err(BrokerError::TopicNotFound(pattern.to_owned()));
        }
        // Consumers first, so a group that is visible has them; a topic
        // created in between gets its consumer from its start.
        for topic in self.inner.store.topics(&parsed) {
            self.create_consumer(
                name,
                &topic.name,
                &options,
                consumers::deliver_policy(options.start),
            )
            .await?;
        }
        let entry = GroupEntry {
            name: name.to_owned(),
            pattern: pattern.to_owned(),
            options: options.clone(),
        };
        let value = serde_json::to_vec(&entry).map_err(|e| unavailable("encode a group", e))?;
        let (key, value) = (names::group_key(name), bytes::Bytes::from(value));
        match self
            .inner
            .nats
            .retrying(|| self.inner.bucket.create(key.as_str(), value.clone()))
            .await
        {
            Ok(_) => {
                tracing::info!(group = %name, %pattern, "consumer group created");
                Ok(self.cache(entry)?.options.clone())
            }
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                let existing = self
                    .entry(name)
                    .await?
                    .ok_or_else(|| BrokerError::GroupNotFound(name.to_owned()))?;
                Ok(self
                    .cache(same_pattern(name, pattern, existing)?)?
                    .options
                    .clone())
            }
            Err(e) => Err(unavailable("record the group", e)),
        }
    }

    async fn create_consumer(
        &self,
        group: &str,
        topic: &str,
        options: &GroupOptions,
        deliver: async_nats::jetstream::consumer::DeliverPolicy,
    ) -> Result<(), BrokerError> {
        let stream_name = names::stream(topic);
        let stream = self
            .inner
            .nats
            .jetstream
            .get_stream_no_info(&stream_name)
            .await
            .map_err(|e| unavailable("find a topic's stream", e))?;
        let config = consumers::config(
            &self.inner.nats,
            group,
            topic,
            &names::subject(&stream_name),
            options,
            deliver,
        );
        let name = names::consumer(group, topic);
        self.inner
            .nats
            .retrying(|| stream.get_or_create_consumer(&name, config.clone()))
            .await
            .map_err(|e| unavailable("create a group's consumer", e))?;
        Ok(())
    }

    async fn group_info(&self, group: &Group) -> GroupInfo {
        let mut topics = Vec::new();
        for topic in self.inner.store.topics(&group.pattern) {
            let stream = names::stream(&topic.name);
            let Ok(stream) = self.inner.nats.jetstream.get_stream_no_info(&stream).await else {
                continue;
            };
            let Ok(mut consumer) = stream
                .get_consumer::<async_nats::jetstream::consumer::pull::Config>(&names::consumer(
                    &group.name,
                    &topic.name,
                ))
                .await
            else {
                continue;
            };
            let Ok(info) = consumer.info().await else {
                continue;
            };
            topics.push(GroupTopicInfo {
                topic: topic.name.to_string(),
                ack_floor: info.ack_floor.stream_sequence,
                cursor: info.delivered.stream_sequence,
                end_offset: info.delivered.stream_sequence + info.num_pending,
                lag: info.num_pending + info.num_ack_pending as u64,
                pending: info.num_ack_pending as u64,
            });
        }
        GroupInfo {
            name: group.name.to_string(),
            pattern: group.pattern.as_str().to_owned(),
            options: group.options.clone(),
            members: group.members(),
            topics,
            redeliveries: group.redeliveries.load(Ordering::Relaxed),
            dead_lettered: group.dead_lettered.load(Ordering::Relaxed),
        }
    }

    async fn reset_to(&self, name: &str, to: StartPosition) -> Result<GroupInfo, BrokerError> {
        let group = self.group(name).await?;
        for flight in group.forget_all() {
            nak(flight.message(), std::time::Duration::ZERO).await;
        }
        for topic in self.inner.store.topics(&group.pattern) {
            let stream_name = names::stream(&topic.name);
            if let Ok(stream) = self
                .inner
                .nats
                .jetstream
                .get_stream_no_info(&stream_name)
                .await
            {
                let _ = stream
                    .delete_consumer(&names::consumer(name, &topic.name))
                    .await;
            }
            self.create_consumer(
                name,
                &topic.name,
                &group.options,
                consumers::deliver_policy(to),
            )
            .await?;
        }
        tracing::info!(group = %name, ?to, "consumer group reset");
        Ok(self.group_info(&group).await)
    }
}

fn same_pattern(
    name: &str,
    pattern: &str,
    existing: GroupEntry,
) -> Result<GroupEntry, BrokerError> {
    if existing.pattern != pattern {
        return Err(BrokerError::InvalidArgument(format!(
            "group {name:?} consumes {:?}, not {pattern:?} (use another group name)",
            existing.pattern
        )));
    }
    Ok(existing)
}

impl Groups for JetStreamGroups {
    fn open(
        &self,
        name: &str,
        pattern: &str,
        options: GroupOptions,
    ) -> BoxFuture<'_, Result<GroupOptions, BrokerError>> {
        let (name, pattern) = (name.to_owned(), pattern.to_owned());
        async move {
            if let Some(group) = self.local(&name) {
                if group.pattern.as_str() != pattern {
                    return Err(BrokerError::InvalidArgument(format!(
                        "group {name:?} consumes {:?}, not {pattern:?} (use another group name)",
                        group.pattern.as_str()
                    )));
                }
                return Ok(group.options.clone());
            }
            self.create(&name, &pattern, options).await
        }
        .boxed()
    }

    fn join(&self, name: &str, request: JoinRequest) -> Result<Member, BrokerError> {
        let group = self
            .local(name)
            .ok_or_else(|| BrokerError::GroupNotFound(name.to_owned()))?;
        let id = self.inner.next_member.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        let stop = self.inner.stop.child_token();
        group.add_member(
            id,
            MemberEntry {
                client: request.client,
                max_in_flight: request.max_in_flight,
                delivered: 0,
                tx,
                stop: stop.clone(),
            },
        );
        let puller = Puller {
            nats: self.inner.nats.clone(),
            store: self.inner.store.clone(),
            group: group.clone(),
            member: id,
            credit: Arc::new(Semaphore::new(request.max_in_flight.max(1) as usize)),
            stop,
            remaining: request.limit.map(|n| Arc::new(AtomicU64::new(n))),
        };
        self.inner
            .tasks
            .spawn(puller.run(self.inner.store.events()));
        let leaving = group.clone();
        let tasks = self.inner.tasks.clone();
        let leave = Box::new(move || {
            let held = leaving.remove_member(id);
            if !held.is_empty() {
                tasks.spawn(async move {
                    for flight in held {
                        nak(flight.message(), std::time::Duration::ZERO).await;
                    }
                });
            }
        });
        Ok(Member::new(group.name.clone(), id, rx, leave))
    }

    fn settle(
        &self,
        name: &str,
        members: Vec<u64>,
        items: Vec<SettleItem>,
    ) -> BoxFuture<'_, Result<Vec<Result<(), BrokerError>>, BrokerError>> {
        let name = name.to_owned();
        async move {
            let group = self.group(&name).await?;
            Ok(group.settle(&members, items).await)
        }
        .boxed()
    }

    fn info(&self, name: &str) -> BoxFuture<'_, Result<GroupInfo, BrokerError>> {
        let name = name.to_owned();
        async move {
            let group = self.group(&name).await?;
            Ok(self.group_info(&group).await)
        }
        .boxed()
    }

    fn list(&self) -> BoxFuture<'_, Vec<GroupInfo>> {
        async move {
            let mut names = Vec::new();
            if let Ok(mut keys) = self.inner.bucket.keys().await {
                while let Some(Ok(key)) = keys.next().await {
                    if let Ok(Some(bytes)) = self.inner.bucket.get(&key).await {
                        if let Ok(entry) = serde_json::from_slice::<GroupEntry>(&bytes) {
                            names.push(entry);
                        }
                    }
                }
            }
            let mut infos = Vec::with_capacity(names.len());
            for entry in names {
                match self.cache(entry) {
                    Ok(group) => infos.push(self.group_info(&group).await),
                    Err(e) => {
                        tracing::warn!(error = %e, "a group entry sluice cannot use; not listed")
                    }
                }
            }
            infos.sort_by(|a, b| a.name.cmp(&b.name));
            infos
        }
        .boxed()
    }

    fn reset(
        &self,
        name: &str,
        to: StartPosition,
    ) -> BoxFuture<'_, Result<GroupInfo, BrokerError>> {
        let name = name.to_owned();
        async move { self.reset_to(&name, to).await }.boxed()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        async move {
            self.inner.stop.cancel();
            let groups: Vec<Arc<Group>> = lock(&self.inner.groups).values().cloned().collect();
            for group in groups {
                group.stop.cancel();
                // Hand back what this node's members hold, so that members
                // on other nodes get it now rather than after the ack wait.
                for flight in group.forget_all() {
                    nak(flight.message(), std::time::Duration::ZERO).await;
                }
            }
            self.inner.tasks.close();
            self.inner.tasks.wait().await;
            let _ = self.inner.nats.client.flush().await;
        }
        .boxed()
    }
}
