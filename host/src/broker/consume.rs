//! Consumer groups as the broker serves them: arguments checked, the
//! member's delivery plugin made, the group's dead-letter topic checked
//! against the member's rights, then the [`crate::groups::Groups`] backend
//! does the rest.

use std::sync::Arc;

use sluice_proto::{ErrorBody, GroupInfo, Settle, SettleAction, SettleBatch, StartPosition};

use super::checks;
use super::consumer::Consumer;
use super::Broker;
use crate::auth::{Action, LogLimit, Principal};
use crate::error::BrokerError;
use crate::groups::{JoinRequest, SettleItem};
use crate::trace::record::{Event, Settled};

/// Rate limit of the log lines about dead-letter topics refused by
/// permissions.
static DEAD_LETTER_DENIALS_LOG: LogLimit = LogLimit::new(std::time::Duration::from_secs(1));

/// Most deliveries a group member may hold unsettled at once.
pub const MAX_IN_FLIGHT: u32 = 65_536;

impl Broker {
    /// Joins (creating if needed) a consumer group, for `client` (its name,
    /// for group status) authenticated as `principal`. The request's
    /// consumer id is the server's business, and so are the rights to read
    /// the pattern and join the group; the group's dead-letter topic, which
    /// this member's nacks and rejects write to, is checked here: the one
    /// the request names before a group is created, and the one of an
    /// existing group before the member joins.
    pub async fn consume(
        &self,
        request: sluice_proto::Consume,
        client: &str,
        principal: &Principal,
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
        checks::group(&group)?;
        checks::pattern(&pattern)?;
        if max_in_flight == 0 || max_in_flight > MAX_IN_FLIGHT {
            return Err(BrokerError::InvalidArgument(format!(
                "max_in_flight must be between 1 and {MAX_IN_FLIGHT}, not {max_in_flight}"
            )));
        }
        checks::group_options(&options)?;
        let filter = match &plugin {
            Some(spec) => Some(self.delivery_plugin(spec).await?),
            None => None,
        };
        let requested = options.dead_letter_topic.clone();
        self.check_dead_letter(principal, &group, requested.as_deref())?;
        let groups = &self.inner.groups;
        let in_force = groups.open(&group, &pattern, options).await?;
        if in_force.dead_letter_topic != requested {
            self.check_dead_letter(principal, &group, in_force.dead_letter_topic.as_deref())?;
        }
        let member = groups.join(
            &group,
            JoinRequest {
                client: client.to_owned(),
                max_in_flight,
                limit,
            },
        )?;
        Ok(Consumer::new(member, Arc::clone(groups), filter))
    }

    /// A group's own dead-letter topic is written with the rights of its
    /// members: each needs publish rights there. (`None`, the default
    /// `dlq.<topic>`, is the broker's own.)
    fn check_dead_letter(
        &self,
        principal: &Principal,
        group: &str,
        topic: Option<&str>,
    ) -> Result<(), BrokerError> {
        let Some(topic) = topic else {
            return Ok(());
        };
        crate::auth::authorize(principal, Action::Publish, topic).map_err(|denied| {
            self.inner.metrics.denied(denied.action.label());
            let message = format!("{denied}, the dead-letter topic of consumer group {group:?}");
            if let Some(held) = DEAD_LETTER_DENIALS_LOG.allow() {
                tracing::warn!(principal = %principal.name, %group, held_back = held, "{message}");
            }
            BrokerError::Forbidden(message)
        })
    }

    /// Settles one delivered message for one of `members` (see
    /// [`crate::groups::Groups::settle`]).
    pub async fn settle(&self, settle: Settle, members: Vec<u64>) -> Result<(), BrokerError> {
        checks::group(&settle.group)?;
        checks::settle(&settle.topic, &settle.action)?;
        let item = SettleItem {
            topic: settle.topic,
            offset: settle.offset,
            action: settle.action,
            attempt: settle.attempt,
        };
        let recorded = self.settle_event(&settle.group, &members, std::slice::from_ref(&item));
        let results = self
            .inner
            .groups
            .settle(&settle.group, members, vec![item])
            .await?;
        let result = results
            .into_iter()
            .next()
            .unwrap_or_else(|| Err(BrokerError::Internal("settlement not answered".into())));
        if let (Ok(()), Some(event)) = (&result, recorded) {
            self.inner.observer.record.push(Event::Settled(event));
        }
        result
    }

    /// Settles several messages of one group for one of `members`; one
    /// result per item (a bad item fails alone).
    pub async fn settle_batch(
        &self,
        batch: SettleBatch,
        members: Vec<u64>,
    ) -> Result<Vec<Option<ErrorBody>>, BrokerError> {
        checks::group(&batch.group)?;
        let mut errors: Vec<Option<ErrorBody>> = vec![None; batch.items.len()];
        let mut valid = Vec::with_capacity(batch.items.len());
        let mut positions = Vec::with_capacity(batch.items.len());
        for (i, item) in batch.items.into_iter().enumerate() {
            if let Err(e) = checks::settle(&item.topic, &item.action) {
                errors[i] = Some(e.to_body());
                continue;
            }
            positions.push(i);
            valid.push(SettleItem {
                topic: item.topic,
                offset: item.offset,
                action: item.action,
                attempt: item.attempt,
            });
        }
        if !valid.is_empty() {
            let mut recorded = self.settle_event(&batch.group, &members, &valid);
            let results = self
                .inner
                .groups
                .settle(&batch.group, members, valid)
                .await?;
            if let Some(event) = &mut recorded {
                // Only what was settled.
                let mut settled = results.iter().map(Result::is_ok);
                event.items.retain(|_| settled.next().unwrap_or(false));
            }
            if let Some(event) = recorded.filter(|e| !e.items.is_empty()) {
                self.inner.observer.record.push(Event::Settled(event));
            }
            for (i, result) in positions.into_iter().zip(results) {
                errors[i] = result.err().map(|e| e.to_body());
            }
        }
        Ok(errors)
    }

    /// Every consumer group, by name.
    pub async fn list_groups(&self) -> Vec<GroupInfo> {
        self.inner.groups.list().await
    }

    /// One consumer group.
    pub async fn group_info(&self, name: &str) -> Result<GroupInfo, BrokerError> {
        checks::group(name)?;
        self.inner.groups.info(name).await
    }

    /// Moves a group to a position; pending deliveries are forgotten.
    pub async fn reset_group(
        &self,
        name: &str,
        to: StartPosition,
    ) -> Result<GroupInfo, BrokerError> {
        checks::group(name)?;
        self.inner.groups.reset(name, to).await
    }

    /// The record's event for settling `items` of `group`, if the record
    /// is kept.
    fn settle_event(&self, group: &str, members: &[u64], items: &[SettleItem]) -> Option<Settled> {
        if !self.inner.observer.record.is_on() {
            return None;
        }
        Some(Settled {
            at_ms: crate::store::now_ms(),
            group: group.to_owned(),
            // Without the consumer's id, the settling member is one of
            // several the connection has: unknown.
            member: (members.len() == 1).then(|| members[0]),
            items: items
                .iter()
                .map(|i| {
                    let action = match i.action {
                        SettleAction::Ack => "ack",
                        SettleAction::Nack { .. } => "nack",
                        SettleAction::Reject { .. } => "dead-letter",
                        SettleAction::InProgress => "in-progress",
                    };
                    (i.topic.clone(), i.offset, action)
                })
                .collect(),
        })
    }
}
