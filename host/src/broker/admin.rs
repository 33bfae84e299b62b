//! Topic admin (create, delete, list, info) and fetch: requests that go to
//! the store with the broker's checks and defaults in front; and plugin
//! rollouts, which go to the plugin registry.

use sluice_proto::{
    CreateTopic, Delivered, FetchBatch, RolloutRequest, RolloutStatus, StartPosition, TopicInfo,
};

use super::checks;
use super::Broker;
use crate::error::BrokerError;
use crate::groups::MAX_NACK_DELAY_MS;
use crate::plugin::PluginError;

/// Largest fetch, in messages.
pub const MAX_FETCH_MESSAGES: u32 = 10_000;

/// What a client is told when a plugin request fails: the broker's own
/// failures (its disk, its engine, the plugin's file or state) as internal
/// errors, the rest as a refusal of the request.
pub(super) fn plugin_refusal(e: PluginError) -> BrokerError {
    match e {
        PluginError::Store { .. }
        | PluginError::Engine { .. }
        | PluginError::Read { .. }
        | PluginError::State { .. } => BrokerError::Internal(e.to_string()),
        other => BrokerError::InvalidArgument(other.to_string()),
    }
}

impl Broker {
    /// Starts, finishes or reads a plugin's shadow or canary rollout (off
    /// the async workers: starting one compiles the candidate).
    pub async fn plugin_rollout(
        &self,
        request: RolloutRequest,
    ) -> Result<RolloutStatus, BrokerError> {
        if !self.inner.distribution.supports_rollouts() {
            return Err(BrokerError::InvalidArgument(
                "plugin rollouts (shadow, canary) run on a single node for now; in cluster mode, deploy with `sluice plugin deploy`".into(),
            ));
        }
        let registry = self.inner.plugins.clone();
        tokio::task::spawn_blocking(move || match request {
            RolloutRequest::Shadow { name, wasm } => registry.start_rollout(&name, wasm, None),
            RolloutRequest::Canary { name, wasm, plan } => {
                registry.start_rollout(&name, wasm, Some(plan))
            }
            RolloutRequest::Promote { name } => registry.promote(&name),
            RolloutRequest::Rollback { name } => registry.rollback(&name),
            RolloutRequest::Status { name } => registry.rollout_status(&name),
        })
        .await
        .map_err(|e| BrokerError::Internal(format!("plugin rollout task failed: {e}")))?
        .map_err(plugin_refusal)
    }

    /// Reads stored messages of one topic.
    pub async fn fetch(
        &self,
        topic: &str,
        from: StartPosition,
        max_messages: u32,
        max_bytes: u32,
    ) -> Result<FetchBatch, BrokerError> {
        checks::topic(topic)?;
        if max_messages == 0 || max_messages > MAX_FETCH_MESSAGES {
            return Err(BrokerError::InvalidArgument(format!(
                "max_messages must be between 1 and {MAX_FETCH_MESSAGES}, not {max_messages}"
            )));
        }
        let store = &self.inner.store;
        if store.topic(topic).is_none() {
            return Err(BrokerError::TopicNotFound(topic.to_owned()));
        }
        // A replicated store's view may lag: brought up to what is stored
        // now, so the fetch sees what was published through any node.
        let literal = sluice_proto::Pattern::parse(topic)
            .map_err(|reason| BrokerError::InvalidArgument(format!("topic {topic:?}: {reason}")))?;
        store
            .catch_up(&literal)
            .await
            .map_err(|e| BrokerError::store(topic, e))?;
        let meta = store
            .topic(topic)
            .ok_or_else(|| BrokerError::TopicNotFound(topic.to_owned()))?;
        let from = match from {
            StartPosition::Earliest => meta.start_offset,
            StartPosition::Latest => meta.committed_end,
            StartPosition::Offset(o) => o,
            StartPosition::Timestamp(ts) => store
                .offset_for_time(topic, ts)
                .await
                .map_err(|e| BrokerError::store(topic, e))?,
        };
        let read = store
            .read(
                topic,
                meta.incarnation,
                from,
                max_messages as usize,
                max_bytes.max(1) as usize,
            )
            .await
            .map_err(|e| BrokerError::store(topic, e))?;
        let end_offset = store
            .topic(topic)
            .map_or(meta.committed_end, |t| t.committed_end);
        let now = crate::store::now_ms();
        Ok(FetchBatch {
            messages: read
                .records
                .into_iter()
                .map(|mut r| {
                    // A read shows what is stored, marking what expired.
                    if crate::schedule::expired(&r.headers, r.timestamp_ms, now) {
                        r.headers
                            .push((sluice_proto::EXPIRED_HEADER.to_owned(), "true".to_owned()));
                    }
                    r
                })
                .map(|r| Delivered {
                    topic: topic.to_owned(),
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
            end_offset,
        })
    }

    /// Creates a topic with the given or default settings.
    pub async fn create_topic(&self, request: &CreateTopic) -> Result<TopicInfo, BrokerError> {
        let name = request.name.as_str();
        checks::topic(name)?;
        let mut settings = crate::store::TopicSettings::defaults(&self.inner.config);
        if let Some(retention) = request.retention {
            settings.retention = retention;
        }
        if let Some(window) = request.dedup_window_ms {
            if window > MAX_NACK_DELAY_MS {
                return Err(BrokerError::InvalidArgument(format!(
                    "dedup_window_ms must be at most {MAX_NACK_DELAY_MS} (one day), not {window}"
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
        if let Some(ttl) = request.default_ttl_ms {
            settings.default_ttl_ms = (ttl > 0).then_some(ttl);
        }
        if let Some(on) = request.dead_letter_expired {
            settings.dead_letter_expired = on;
        }
        self.inner
            .store
            .create_topic(name, settings)
            .await
            .map_err(|e| BrokerError::store(name, e))?;
        self.info_of(name).await
    }

    /// What the store says of a topic, with the delayed messages waiting
    /// for it.
    async fn info_of(&self, name: &str) -> Result<TopicInfo, BrokerError> {
        let mut info = self
            .inner
            .store
            .info(name)
            .await
            .map_err(|e| BrokerError::store(name, e))?;
        info.waiting = self.inner.schedule.waiting(name);
        Ok(info)
    }

    /// Deletes a topic and its files.
    pub async fn delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        checks::topic(name)?;
        self.inner
            .store
            .delete_topic(name)
            .await
            .map_err(|e| BrokerError::store(name, e))
    }

    /// All topics, by name.
    pub async fn list_topics(&self) -> Vec<TopicInfo> {
        let store = &self.inner.store;
        let mut infos = Vec::new();
        let every =
            sluice_proto::Pattern::parse(">").map_or_else(|_| Vec::new(), |p| store.topics(&p));
        for topic in every {
            // A topic deleted meanwhile is simply not listed.
            if let Ok(info) = self.info_of(&topic.name).await {
                infos.push(info);
            }
        }
        infos
    }

    /// One topic.
    pub async fn topic_info(&self, name: &str) -> Result<TopicInfo, BrokerError> {
        checks::topic(name)?;
        self.info_of(name).await
    }
}
