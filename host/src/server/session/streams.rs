//! Subscriptions, group consumers and responders of a session: each a
//! delivery stream of its own, counted against the connection's limits. A
//! consumer's stream remembers its group member, which is who the
//! connection's settlements for that consumer are made as.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
    /// For a group consumer: its group and member id.
    pub(super) member: Option<(String, u64)>,
    pub(super) cancel: CancellationToken,
    /// Tells this stream from a later one that re-uses its id.
    marker: Arc<()>,
}

/// Forgets stream `id` of `registry` once its task ends, unless the id was
/// unsubscribed and taken again meanwhile (`marker` tells them apart).
fn forget(registry: &Mutex<HashMap<u64, Stream>>, id: u64, marker: &Arc<()>) {
    let mut registry = lock(registry);
    if registry
        .get(&id)
        .is_some_and(|s| Arc::ptr_eq(&s.marker, marker))
    {
        registry.remove(&id);
    }
}

impl Session {
    /// Registers stream `id`: how to end it, and its marker.
    fn register_stream(
        &self,
        id: u64,
        member: Option<(String, u64)>,
    ) -> (CancellationToken, Arc<()>) {
        let cancel = self.closing.child_token();
        let marker = Arc::new(());
        lock(&self.subscriptions).insert(
            id,
            Stream {
                member,
                cancel: cancel.clone(),
                marker: marker.clone(),
            },
        );
        (cancel, marker)
    }

    /// Starts the delivery stream of a subscription or (with its group
    /// and member id) a consumer.
    pub(super) fn start_stream<S: DeliverySource>(
        &self,
        id: u64,
        source: S,
        member: Option<(String, u64)>,
    ) {
        let (cancel, marker) = self.register_stream(id, member.clone());
        let registry = self.subscriptions.clone();
        let conn = self.conn.clone();
        let shutdown = self.shared.shutdown.clone();
        let max = self.shared.config.limits.max_frame_bytes;
        let metrics = self.shared.broker.metrics().clone();
        let observer = self.shared.broker.observer().clone();
        let principal: Arc<str> = self.principal.name.as_str().into();
        let receiver = Arc::new(match &member {
            Some((group, member)) => crate::trace::Receiver::Member {
                group: group.clone(),
                member: *member,
                principal,
            },
            None => crate::trace::Receiver::Subscription { id, principal },
        });
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
                    observer,
                    receiver,
                };
                delivery::run(conn, id, source, cancel, shutdown, settings).await;
                forget(&registry, id, &marker);
            }
            .in_current_span(),
        );
    }

    /// Starts a responder: its requests on a stream of their own, counted
    /// as a subscription.
    pub(super) async fn start_responder(
        &self,
        request: sluice_proto::Respond,
    ) -> Result<ResponseBody, BrokerError> {
        self.check_subscribe(&request.pattern)?;
        self.check_stream_slot(request.responder, false)?;
        let responder = self
            .shared
            .broker
            .respond(&request.pattern, request.group.clone())
            .await?;
        let id = request.responder;
        let (cancel, marker) = self.register_stream(id, None);
        let registry = self.subscriptions.clone();
        let conn = self.conn.clone();
        let shutdown = self.shared.shutdown.clone();
        let max = self.shared.config.limits.max_frame_bytes;
        tracing::debug!(responder = id, pattern = %request.pattern, group = ?request.group, "responder starting");
        self.deliveries.spawn(
            async move {
                delivery::requests::run(conn, id, responder, cancel, shutdown, max).await;
                forget(&registry, id, &marker);
            }
            .in_current_span(),
        );
        Ok(ResponseBody::Responding { responder: id })
    }

    pub(super) async fn subscribe(
        &self,
        request: sluice_proto::Subscribe,
    ) -> Result<ResponseBody, BrokerError> {
        self.check_subscribe(&request.pattern)?;
        self.check_stream_slot(request.subscription, false)?;
        let subscription = self.shared.broker.subscribe(&request).await?;
        self.start_stream(request.subscription, subscription, None);
        Ok(ResponseBody::Subscribed {
            subscription: request.subscription,
        })
    }

    pub(super) async fn consume(
        &self,
        request: sluice_proto::Consume,
    ) -> Result<ResponseBody, BrokerError> {
        self.check_subscribe(&request.pattern)?;
        self.authorize(Action::Group, &request.group)?;
        self.check_stream_slot(request.consumer, true)?;
        let id = request.consumer;
        let consumer = self
            .shared
            .broker
            .consume(request, &self.client_name, &self.principal)
            .await?;
        let member = (consumer.group().to_owned(), consumer.member_id());
        self.start_stream(id, consumer, Some(member));
        Ok(ResponseBody::Consuming { consumer: id })
    }

    /// The members a settlement in `group` is made as: the one of
    /// `consumer`, or every one of this connection in the group for a
    /// client that names no consumer. None (an empty list: every pending
    /// message is then refused as stale) when the consumer is not open
    /// here, or is another group's.
    pub(super) fn settling_members(&self, group: &str, consumer: Option<u64>) -> Vec<u64> {
        let streams = lock(&self.subscriptions);
        let of_group = |s: &Stream| match &s.member {
            Some((g, member)) if g == group => Some(*member),
            _ => None,
        };
        match consumer {
            Some(id) => streams.get(&id).and_then(of_group).into_iter().collect(),
            None => streams.values().filter_map(of_group).collect(),
        }
    }
}
