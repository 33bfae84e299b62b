//! A member's deliveries: for each topic of its group, a task that pulls
//! from the group's consumer on that topic as much as the member has credit
//! for (`max_in_flight` less what it holds), so members on every node share
//! the group's messages and none holds more than it asked for. Topics
//! created later that match the group's pattern get a task when they
//! appear.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, Consumer, DeliverPolicy};
use futures_util::StreamExt;
use tokio::sync::{broadcast, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::consumers;
use super::group::{nak, Group};
use crate::nats::{names, Nats};
use crate::store::{Store, TopicEvent};

/// How long one pull waits for messages before asking again.
const PULL_WAIT: Duration = Duration::from_secs(2);

/// Most messages asked for in one pull.
const MAX_PULL: usize = 256;

/// The wait before pulling again after an error.
const RETRY_DELAY: Duration = Duration::from_millis(250);

/// What the pull tasks of one member share.
#[derive(Clone)]
pub(super) struct Puller {
    pub nats: Nats,
    pub store: Arc<dyn Store>,
    pub group: Arc<Group>,
    pub member: u64,
    pub credit: Arc<Semaphore>,
    pub stop: CancellationToken,
    /// Deliveries the member still takes, if it asked for a number.
    pub remaining: Option<Arc<AtomicU64>>,
}

impl Puller {
    /// Pulls every topic of the group, and those created later, until the
    /// member leaves.
    pub async fn run(self, mut events: broadcast::Receiver<TopicEvent>) {
        let tasks = tokio_util::task::TaskTracker::new();
        for topic in self.store.topics(&self.group.pattern) {
            tasks.spawn(self.clone().pull_topic(topic.name));
        }
        loop {
            tokio::select! {
                () = self.stop.cancelled() => break,
                event = events.recv() => match event {
                    Ok(TopicEvent::Created(topic)) if self.group.pattern.matches(&topic.name) => {
                        tasks.spawn(self.clone().pull_topic(topic.name));
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(group = %self.group.name, missed = n, "topic events missed; topics created meanwhile are pulled once a member joins again");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            }
        }
        tasks.close();
        tasks.wait().await;
    }

    /// Pulls one topic until the member leaves or the topic is deleted.
    async fn pull_topic(self, topic: Arc<str>) {
        let subject = names::subject(&names::stream(&topic));
        let mut consumer = None;
        loop {
            if self.stop.is_cancelled() {
                return;
            }
            if self.store.topic(&topic).is_none() {
                return; // deleted
            }
            let current = match consumer.take() {
                Some(c) => c,
                None => match self.consumer(&topic, &subject).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!(group = %self.group.name, %topic, error = %e, "no consumer yet");
                        if self.pause().await {
                            return;
                        }
                        continue;
                    }
                },
            };
            match self.pull_once(&topic, &current).await {
                Ok(()) => consumer = Some(current),
                Err(e) => {
                    tracing::debug!(group = %self.group.name, %topic, error = %e, "pulling again");
                    if self.pause().await {
                        return;
                    }
                }
            }
        }
    }

    /// Waits before retrying; true when the member left meanwhile.
    async fn pause(&self) -> bool {
        tokio::select! {
            () = self.stop.cancelled() => true,
            () = tokio::time::sleep(RETRY_DELAY) => false,
        }
    }

    /// The group's consumer on `topic`, created (from the topic's start:
    /// the topic is newer than the group) if it is missing.
    async fn consumer(&self, topic: &str, subject: &str) -> Result<Consumer<pull::Config>, String> {
        let stream = self
            .nats
            .jetstream
            .get_stream_no_info(names::stream(topic))
            .await
            .map_err(|e| e.to_string())?;
        let config = consumers::config(
            &self.nats,
            &self.group.name,
            topic,
            subject,
            &self.group.options,
            DeliverPolicy::All,
        );
        let name = names::consumer(&self.group.name, topic);
        match stream.get_consumer(&name).await {
            Ok(consumer) => Ok(consumer),
            Err(_) => stream
                .get_or_create_consumer(&name, config)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// One pull: waits for credit, asks for as many messages as there is
    /// credit for, and hands what comes to the member.
    async fn pull_once(
        &self,
        topic: &Arc<str>,
        consumer: &Consumer<pull::Config>,
    ) -> Result<(), String> {
        let mut credit: Vec<OwnedSemaphorePermit> = Vec::new();
        tokio::select! {
            () = self.stop.cancelled() => return Ok(()),
            permit = self.credit.clone().acquire_owned() => match permit {
                Ok(p) => credit.push(p),
                Err(_) => return Ok(()),
            },
        }
        while credit.len() < MAX_PULL {
            match self.credit.clone().try_acquire_owned() {
                Ok(p) => credit.push(p),
                Err(_) => break,
            }
        }
        let granted = self.reserve(credit.len() as u64);
        if granted == 0 {
            // The member had all it asked for: nothing more is pulled.
            self.stop.cancelled().await;
            return Ok(());
        }
        credit.truncate(granted as usize);
        let result = self.pull_batch(topic, consumer, &mut credit).await;
        // What was reserved and not delivered goes back.
        if let Some(remaining) = &self.remaining {
            remaining.fetch_add(credit.len() as u64, Ordering::AcqRel);
        }
        result
    }

    /// Takes up to `wanted` of the member's remaining deliveries.
    fn reserve(&self, wanted: u64) -> u64 {
        let Some(remaining) = &self.remaining else {
            return wanted;
        };
        let mut granted = 0;
        let _ = remaining.fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
            granted = left.min(wanted);
            Some(left - granted)
        });
        granted
    }

    async fn pull_batch(
        &self,
        topic: &Arc<str>,
        consumer: &Consumer<pull::Config>,
        credit: &mut Vec<OwnedSemaphorePermit>,
    ) -> Result<(), String> {
        let batch = consumer
            .fetch()
            .max_messages(credit.len())
            .expires(PULL_WAIT)
            .messages()
            .await
            .map_err(|e| e.to_string())?;
        tokio::pin!(batch);
        loop {
            let next = tokio::select! {
                () = self.stop.cancelled() => {
                    // The member left (or the node stops) with this pull
                    // still open: what JetStream sends to it until it
                    // expires is handed back now, not after the ack wait.
                    while let Ok(Some(Ok(message))) =
                        tokio::time::timeout(PULL_WAIT + PULL_WAIT, batch.next()).await
                    {
                        nak(&message, Duration::ZERO).await;
                    }
                    return Ok(());
                }
                next = batch.next() => next,
            };
            let Some(message) = next else {
                return Ok(());
            };
            let message = message.map_err(|e| e.to_string())?;
            let Some(permit) = credit.pop() else {
                // More than asked for: handed back at once.
                nak(&message, Duration::ZERO).await;
                continue;
            };
            self.handle(topic, message, permit).await;
        }
    }

    async fn handle(
        &self,
        topic: &Arc<str>,
        message: async_nats::jetstream::Message,
        permit: OwnedSemaphorePermit,
    ) {
        let (sequence, attempt) = match message.info() {
            Ok(info) => (info.stream_sequence, info.delivered.max(1) as u32),
            Err(e) => {
                tracing::warn!(group = %self.group.name, %topic, error = %e, "a message without JetStream metadata");
                return;
            }
        };
        let stream = names::stream(topic);
        let record = match crate::store::jetstream::decode(&stream, sequence, &message.payload) {
            Ok(record) => record,
            Err(e) => {
                tracing::warn!(group = %self.group.name, %topic, error = %e, "not a sluice record; ended");
                let _ = message
                    .ack_with(async_nats::jetstream::message::AckKind::Term)
                    .await;
                return;
            }
        };
        let previous = attempt.saturating_sub(1);
        // Its time-to-live ran out: not delivered; settled, or dead-lettered
        // if its topic says so.
        if crate::schedule::expired(&record.headers, record.timestamp_ms, crate::store::now_ms()) {
            if self.group.dead_letters_expired(topic) {
                let expired = crate::groups::policy::EXPIRED;
                if let Err(e) = self
                    .group
                    .store_letter(topic, &record, previous, expired)
                    .await
                {
                    tracing::error!(group = %self.group.name, %topic, error = %e, "cannot store the dead letter of an expired message; trying again");
                    nak(&message, Duration::from_secs(1)).await;
                    return;
                }
            }
            let _ = message
                .double_ack_with(async_nats::jetstream::message::AckKind::Term)
                .await;
            return;
        }
        // Delivered again by JetStream itself after the node that held it
        // went away, once more than the group allows.
        if let Some(reason) =
            crate::groups::policy::exhausted_at_restart(&self.group.options, previous)
        {
            match self
                .group
                .store_letter(topic, &record, previous, &reason)
                .await
            {
                Ok(()) => {
                    let _ = message
                        .double_ack_with(async_nats::jetstream::message::AckKind::Term)
                        .await;
                }
                Err(e) => {
                    tracing::error!(group = %self.group.name, %topic, error = %e, "cannot store the dead letter; the message will be delivered again");
                    nak(&message, Duration::from_secs(1)).await;
                }
            }
            return;
        }
        if let Some(message) =
            self.group
                .deliver(self.member, topic.clone(), record, attempt, message, permit)
        {
            // The member left while the pull was on its way.
            nak(&message, Duration::ZERO).await;
        }
    }
}
