//! Rights and limits of a session, checked before the broker is called:
//! every check goes through [`authorize`], and a refusal is counted and
//! logged at a rate limit.

use super::Session;
use crate::auth::{authorize, Action, AdminRight, Denied};
use crate::broker::{BrokerError, PublishBatch};
use crate::sync::lock;

impl Session {
    /// Counts and logs (at a rate limit) a refused request; the error says
    /// who may not do what.
    pub(super) fn deny(&self, denied: Denied) -> BrokerError {
        self.shared.broker.metrics().denied(denied.action.label());
        let message = denied.to_string();
        if let Some(held) = self.shared.auth.log_limit.allow() {
            tracing::warn!(principal = %self.principal.name, action = denied.action.label(), held_back = held, "{message}");
        }
        BrokerError::Forbidden(message)
    }

    /// [`authorize`], counted and logged when refused.
    pub(super) fn authorize(&self, action: Action, target: &str) -> Result<(), BrokerError> {
        authorize(&self.principal, action, target).map_err(|denied| self.deny(denied))
    }

    /// A publish checked against the batch limit and the publisher's
    /// rights on every topic, then handed to the broker.
    pub(super) async fn publish(
        &self,
        batch: Result<PublishBatch, BrokerError>,
    ) -> Result<crate::broker::PendingPublish, BrokerError> {
        let batch = batch?;
        self.check_batch(batch.len())?;
        batch
            .topics()
            .try_for_each(|topic| self.authorize(Action::Publish, topic))?;
        self.shared.broker.publish(batch, &self.principal).await
    }

    /// A trace request: a valid key, and for a place the right to read
    /// its topic (other keys report only topics the principal may read).
    pub(super) fn check_trace(&self, key: &sluice_proto::TraceKey) -> Result<(), BrokerError> {
        use sluice_proto::TraceKey;
        match key {
            TraceKey::At { topic, .. } => {
                sluice_proto::validate_topic(topic).map_err(|reason| {
                    BrokerError::InvalidArgument(format!("invalid topic {topic:?}: {reason}"))
                })?;
                self.authorize(Action::Subscribe, topic)
            }
            TraceKey::Id(id) if id.is_empty() || id.len() > 1024 => Err(
                BrokerError::InvalidArgument("a message id has 1 to 1024 bytes".into()),
            ),
            TraceKey::Trace(hex)
                if hex.len() != 32
                    || !hex.bytes().all(|b| b.is_ascii_hexdigit())
                    || hex.bytes().all(|b| b == b'0') =>
            {
                Err(BrokerError::InvalidArgument(format!(
                    "{hex:?} is not a trace id: it has 32 hex digits, not all zero"
                )))
            }
            _ => Ok(()),
        }
    }

    pub(super) fn check_subscribe(&self, pattern: &str) -> Result<(), BrokerError> {
        if let Err(reason) = sluice_proto::Pattern::parse(pattern) {
            return Err(BrokerError::InvalidPattern {
                pattern: pattern.to_owned(),
                reason,
            });
        }
        self.authorize(Action::Subscribe, pattern)
    }

    /// Settling needs the right to take part in the group and read rights
    /// on each message's topic (a bad name is left to the broker, which
    /// answers it per item).
    pub(super) fn check_settle<'t>(
        &self,
        group: &str,
        topics: impl IntoIterator<Item = &'t str>,
    ) -> Result<(), BrokerError> {
        self.authorize(Action::Group, group)?;
        topics
            .into_iter()
            .try_for_each(|topic| self.authorize(Action::Settle, topic))
    }

    pub(super) fn check_admin(&self, right: AdminRight, what: &str) -> Result<(), BrokerError> {
        self.authorize(Action::Admin(right), what)
    }

    pub(super) fn check_batch(&self, count: usize) -> Result<(), BrokerError> {
        let limit = self.shared.config.limits.max_batch_messages;
        if count > limit {
            self.shared.broker.metrics().limit_hit("max_batch_messages");
            return Err(BrokerError::LimitExceeded(format!(
                "a batch of {count} messages is over the limit of {limit} (limits.max_batch_messages)"
            )));
        }
        Ok(())
    }

    /// Checks the per-connection limit of the kind and that the id is free.
    pub(super) fn check_stream_slot(&self, id: u64, consumer: bool) -> Result<(), BrokerError> {
        let subscriptions = lock(&self.subscriptions);
        let limits = &self.shared.config.limits;
        let (limit, name, what) = if consumer {
            (
                limits.max_consumers_per_connection,
                "max_consumers_per_connection",
                "group consumers",
            )
        } else {
            (
                limits.max_subscriptions_per_connection,
                "max_subscriptions_per_connection",
                "subscriptions",
            )
        };
        let open = subscriptions
            .values()
            .filter(|s| s.member.is_some() == consumer)
            .count();
        if open >= limit {
            self.shared.broker.metrics().limit_hit(name);
            return Err(BrokerError::LimitExceeded(format!(
                "this connection has {open} {what} open, the most allowed (limits.{name} = {limit})"
            )));
        }
        if subscriptions.contains_key(&id) {
            return Err(BrokerError::SubscriptionExists(id));
        }
        Ok(())
    }

    /// Group admin (list, info, reset) needs the `groups` admin right.
    pub(super) fn check_group_admin(&self) -> Result<(), BrokerError> {
        self.check_admin(AdminRight::Groups, "administer consumer groups")
    }
}
