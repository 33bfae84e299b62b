//! The broker: the publish pipeline, routing, authorization of routed
//! outputs, live and replaying subscriptions, fetch, topic admin and
//! consumer groups. Knows nothing of QUIC (the server calls it) and reaches
//! storage and group state only through the [`Store`] and [`Groups`] traits.
//!
//! # Layout
//!
//! - [`publish`] - one publish: grouping by topic, pipelines, routing, appends, acks.
//! - [`admin`] - topic admin and fetch.
//! - [`consume`] - consumer groups, through the [`Groups`] trait.
//! - [`consumer`] - a group member as the server streams it.
//! - [`subscription`] - what one subscriber receives (live or replaying).
//! - [`checks`] - request arguments checked before anything is done.
//! - [`request`] - request-reply: responders, requests (through the
//!   pipeline of their topic) and replies.

mod admin;
mod checks;
mod consume;
mod consumer;
mod publish;
mod request;
pub mod subscription;

use std::sync::Arc;

pub use crate::delivery::{Chunk, Slice};
pub use crate::error::BrokerError;
pub use crate::store::StoredBatch;
pub use admin::MAX_FETCH_MESSAGES;
pub use consumer::Consumer;
pub use publish::{PendingPublish, PublishBatch};
pub use subscription::Subscription;

use crate::config::Config;
use crate::groups::Groups;
use crate::metrics::Metrics;
use crate::plugin::{Distribution, PluginRegistry};
use crate::reply::Responders;
use crate::schedule::Schedule;
use crate::store::Store;
use crate::trace::Observer;

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

/// Where the broker keeps messages and group state.
pub struct Backing {
    /// The topics.
    pub store: Arc<dyn Store>,
    /// The consumer groups.
    pub groups: Arc<dyn Groups>,
    /// Delayed messages waiting to be due.
    pub schedule: Arc<Schedule>,
}

/// A handle to the broker. Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    store: Arc<dyn Store>,
    groups: Arc<dyn Groups>,
    schedule: Arc<Schedule>,
    /// Loaded plugins and the pipelines that run them (swapped by reloads).
    plugins: Arc<PluginRegistry>,
    /// Where deployed plugin versions go and whose status is listed.
    distribution: Arc<dyn Distribution>,
    /// Event counters for `/metrics`.
    metrics: Arc<Metrics>,
    /// Spans of traced messages and the event record behind `sluice trace`.
    observer: Arc<Observer>,
    /// Live responders and the requests waiting for a reply.
    replies: Arc<Responders>,
}

impl Broker {
    /// A broker over a store, consumer groups and a schedule.
    pub fn new(
        config: Config,
        backing: Backing,
        plugins: Arc<PluginRegistry>,
        distribution: Arc<dyn Distribution>,
        metrics: Arc<Metrics>,
        observer: Arc<Observer>,
    ) -> Broker {
        Broker {
            inner: Arc::new(Inner {
                config,
                store: backing.store,
                groups: backing.groups,
                schedule: backing.schedule,
                plugins,
                distribution,
                metrics,
                observer,
                replies: Arc::default(),
            }),
        }
    }

    /// The store behind the broker.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Event counters for `/metrics`.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Spans of traced messages and the event record.
    pub fn observer(&self) -> &Arc<Observer> {
        &self.inner.observer
    }

    /// The plugins and pipelines in force, and their reloads.
    pub fn plugins(&self) -> &Arc<PluginRegistry> {
        &self.inner.plugins
    }

    /// Status of the loaded plugins (of every node, in cluster mode).
    pub async fn plugin_status(&self) -> Vec<sluice_proto::PluginStatus> {
        self.inner.distribution.status().await
    }

    /// Puts `wasm` in force as plugin `name`'s new version, wherever the
    /// plugin runs; its hash.
    pub async fn deploy_plugin(
        &self,
        name: &str,
        wasm: bytes::Bytes,
    ) -> Result<String, BrokerError> {
        self.inner
            .distribution
            .deploy(name, wasm)
            .await
            .map_err(admin::plugin_refusal)
    }

    /// Live subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.inner.store.feeds()
    }

    /// Starts the subscription `request` asks for: live (`Latest`) or
    /// replaying (anything else, or resumed from per-topic positions).
    pub async fn subscribe(
        &self,
        request: &sluice_proto::Subscribe,
    ) -> Result<Subscription, BrokerError> {
        let parsed = checks::pattern(&request.pattern)?;
        let filter = match &request.plugin {
            Some(spec) => Some(self.delivery_plugin(spec).await?),
            None => None,
        };
        let limits = &self.inner.config.limits;
        let buffer = subscription::BufferLimits {
            messages: limits.subscriber_buffer_messages,
            bytes: limits.subscriber_buffer_bytes,
        };
        Subscription::start(
            self.inner.store.clone(),
            parsed,
            request.from,
            &request.resume,
            buffer,
            filter,
            self.inner.metrics.clone(),
        )
        .await
    }

    /// The plugin a subscription or consumer asked for, following reloads.
    /// Made on the blocking pool: with its own config it instantiates.
    async fn delivery_plugin(
        &self,
        spec: &sluice_proto::DeliveryPlugin,
    ) -> Result<Arc<crate::plugin::delivery::DeliveryFilter>, BrokerError> {
        let (plugins, spec) = (self.inner.plugins.clone(), spec.clone());
        tokio::task::spawn_blocking(move || {
            crate::plugin::delivery::DeliveryFilter::new(plugins, &spec)
        })
        .await
        .map_err(|e| BrokerError::Internal(format!("delivery plugin task failed: {e}")))?
        .map_err(|e| BrokerError::InvalidArgument(e.to_string()))
    }

    /// Stops the consumer groups, then the store: commits what is pending
    /// and fsyncs every log. Call after the server stopped taking requests.
    pub async fn shutdown(&self) {
        self.inner.groups.shutdown().await;
        self.inner.store.shutdown().await;
        self.inner.schedule.shutdown().await;
        // Exports what spans wait, up to the export timeout (blocking).
        let observer = self.inner.observer.clone();
        let _ = tokio::task::spawn_blocking(move || observer.spans.shutdown()).await;
    }

    /// What the event record says of the messages `key` names, keeping
    /// those published to or stored in topics `may_read` allows.
    pub fn trace(
        &self,
        key: &sluice_proto::TraceKey,
        may_read: impl Fn(&str) -> bool,
    ) -> sluice_proto::TraceReport {
        crate::trace::query::find(&self.inner.observer.record, key, may_read)
    }
}

#[cfg(test)]
mod tests;
