//! Subscriptions and group consumers of a session: each a delivery
//! stream of its own, counted against the connection's limits.

use std::sync::Arc;

use sluice_proto::ResponseBody;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Session;
use crate::auth::Action;
use crate::broker::{BrokerError, DeliverySource};
use crate::server::delivery;
use crate::sync::lock;

/// A delivery stream of the connection: what it is and how to end it.
pub(super) struct Stream {
    pub(super) consumer: bool,
    pub(super) cancel: CancellationToken,
    /// Tells this stream from a later one that re-uses its id.
    marker: Arc<()>,
}

impl Session {
    /// Starts the delivery stream of a subscription or consumer.
    pub(super) fn start_stream<S: DeliverySource>(&self, id: u64, source: S, consumer: bool) {
        let cancel = self.closing.child_token();
        let marker = Arc::new(());
        lock(&self.subscriptions).insert(
            id,
            Stream {
                consumer,
                cancel: cancel.clone(),
                marker: marker.clone(),
            },
        );
        let registry = self.subscriptions.clone();
        let conn = self.conn.clone();
        let shutdown = self.shared.shutdown.clone();
        let max = self.shared.config.limits.max_frame_bytes;
        let metrics = self.shared.broker.metrics().clone();
        let layout = if self.compact {
            delivery::Layout::Compact
        } else {
            delivery::Layout::Named
        };
        tracing::debug!(subscription = id, source = %source.describe(), "delivery stream starting");
        self.deliveries.spawn(
            async move {
                let settings = delivery::StreamSettings {
                    max_frame_bytes: max,
                    layout,
                    metrics,
                };
                delivery::run(conn, id, source, cancel, shutdown, settings).await;
                // Unless the id was unsubscribed and taken again meanwhile.
                let mut registry = lock(&registry);
                if registry
                    .get(&id)
                    .is_some_and(|s| Arc::ptr_eq(&s.marker, &marker))
                {
                    registry.remove(&id);
                }
            }
            .in_current_span(),
        );
    }

    pub(super) async fn subscribe(
        &self,
        request: sluice_proto::Subscribe,
    ) -> Result<ResponseBody, BrokerError> {
        self.check_subscribe(&request.pattern)?;
        self.check_stream_slot(request.subscription, false)?;
        let subscription = self
            .shared
            .broker
            .subscribe(&request.pattern, request.from, request.plugin.as_ref())
            .await?;
        self.start_stream(request.subscription, subscription, false);
        Ok(ResponseBody::Subscribed {
            subscription: request.subscription,
        })
    }

    pub(super) async fn consume(
        &self,
        request: sluice_proto::Consume,
    ) -> Result<ResponseBody, BrokerError> {
        self.check_subscribe(&request.pattern)?;
        // A group's own dead-letter topic is written with the rights of
        // whoever names it.
        if let Some(topic) = &request.options.dead_letter_topic {
            self.authorize(Action::Publish, topic)?;
        }
        self.check_stream_slot(request.consumer, true)?;
        let id = request.consumer;
        let consumer = self
            .shared
            .broker
            .consume(request, &self.client_name)
            .await?;
        self.start_stream(id, consumer, true);
        Ok(ResponseBody::Consuming { consumer: id })
    }
}
