//! Settlements, failed deliveries and dead letters: what happens to a
//! message after it was handed out.
//!
//! A settlement answers one delivery: the one in flight with the member
//! that settles, at the attempt it names. Anything else is stale (the ack
//! wait ran out, the message went to another member, or it came back as a
//! later attempt) and is refused without touching the message, so a late
//! nack from an old member never redelivers what a new member holds.

use std::sync::Arc;
use std::time::Duration;

use sluice_proto::SettleAction;
use tokio::time::Instant;

use super::{Actor, MessageId, DEAD_LETTER_RETRY};
use crate::error::BrokerError;
use crate::groups::local::state::Event;
use crate::groups::policy::{self, AfterFailure, Staleness};
use crate::groups::{store_dead_letter, SettleItem};

impl Actor {
    /// A member left: what it held goes to the others at once.
    pub(super) fn member_left(&mut self, member: u64) {
        if self.members.remove(&member).is_none() {
            return;
        }
        let now = Instant::now();
        let held: Vec<MessageId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.member == Some(member))
            .map(|(id, _)| id.clone())
            .collect();
        tracing::debug!(group = %self.name, member, handed_over = held.len(), "member left");
        for id in held {
            // A delivery to a member that went away counts as a failed
            // attempt: at max_deliver the message is dead-lettered (it may
            // be what brings workers down), otherwise it is due at once.
            self.retry(&id, "member left", Some(Duration::ZERO), now);
        }
    }
    pub(super) fn release_member_credit(&mut self, member: Option<u64>) {
        if let Some(m) = member.and_then(|m| self.members.get_mut(&m)) {
            m.in_flight = m.in_flight.saturating_sub(1);
        }
    }
    /// Settles one message for one of `members`, if the delivery the item
    /// answers is the one in flight; a stale settlement changes nothing.
    pub(super) fn settle(
        &mut self,
        members: &[u64],
        item: SettleItem,
        now: Instant,
    ) -> Result<(), BrokerError> {
        let SettleItem {
            topic,
            offset,
            action,
            attempt,
        } = item;
        let id: MessageId = (Arc::from(topic.as_str()), offset);
        let ack_wait = self.ack_wait();
        let Some(p) = self.pending.get_mut(&id) else {
            return Err(BrokerError::UnknownDelivery(format!(
                "{topic}@{offset} is not pending in group {} (never delivered, or already settled)",
                self.name
            )));
        };
        if let Some(stale) = Staleness::of(p.member, p.attempt, members, attempt) {
            return Err(BrokerError::StaleSettle(format!(
                "{topic}@{offset} in group {}: {stale}; this settlement changed nothing",
                self.name
            )));
        }
        // Not stale: the message is in flight with one of `members`.
        let holder = p.member;
        match action {
            SettleAction::Ack => {
                self.release_member_credit(holder);
                self.finish(&id);
            }
            SettleAction::Nack { delay_ms } => {
                self.release_member_credit(holder);
                self.retry(&id, "nacked", delay_ms.map(Duration::from_millis), now);
            }
            SettleAction::Reject { reason } => {
                self.release_member_credit(holder);
                self.unschedule(&id);
                self.dead_letters.push((id, policy::rejected(&reason)));
            }
            SettleAction::InProgress => {
                let new_deadline = now + ack_wait;
                if let Some(old) = p.deadline.replace(new_deadline) {
                    self.deadlines.remove(&(old, id.clone()));
                }
                self.deadlines.insert((new_deadline, id));
            }
        }
        Ok(())
    }
    /// Removes a pending message from the timers.
    pub(super) fn unschedule(&mut self, id: &MessageId) {
        if let Some(p) = self.pending.get_mut(id) {
            if let Some(deadline) = p.deadline.take() {
                self.deadlines.remove(&(deadline, id.clone()));
            }
            if let Some(due) = p.due.take() {
                self.ready.remove(&(due, id.clone()));
            }
            p.member = None;
        }
    }
    /// The message is done (acked or dead-lettered).
    pub(super) fn finish(&mut self, id: &MessageId) {
        self.unschedule(id);
        if let Some(p) = self.pending.remove(id) {
            if self.key_ordered() {
                if let Some(key) = &p.record.key {
                    self.busy_keys.remove(key);
                }
            }
        }
        self.record_event(Event::Settled {
            topic: id.0.to_string(),
            offset: id.1,
        });
    }
    /// Schedules a redelivery, or a dead letter after `max_deliver` attempts.
    pub(super) fn retry(
        &mut self,
        id: &MessageId,
        reason: &str,
        delay: Option<Duration>,
        now: Instant,
    ) {
        self.unschedule(id);
        let Some(p) = self.pending.get_mut(id) else {
            return;
        };
        p.last_reason = reason.to_owned();
        match policy::after_failure(&self.settings.options, p.attempt, reason, delay) {
            AfterFailure::DeadLetter { reason } => self.dead_letters.push((id.clone(), reason)),
            AfterFailure::Redeliver { after } => {
                let due = now + after;
                p.due = Some(due);
                self.ready.insert((due, id.clone()));
            }
        }
    }
    /// Ack deadlines that passed.
    pub(super) fn expire(&mut self, now: Instant) {
        while let Some((deadline, id)) = self.deadlines.first().cloned() {
            if deadline > now {
                break;
            }
            self.deadlines.remove(&(deadline, id.clone()));
            let member = self.pending.get_mut(&id).and_then(|p| {
                p.deadline = None;
                p.member
            });
            self.release_member_credit(member);
            self.retry(&id, "ack wait expired", None, now);
        }
    }
    /// Stores queued dead letters, then settles them.
    pub(super) async fn store_dead_letters(&mut self) {
        for (id, reason) in std::mem::take(&mut self.dead_letters) {
            let Some(p) = self.pending.get(&id) else {
                continue;
            };
            let dlq_topic = self
                .settings
                .options
                .dead_letter_topic
                .clone()
                .unwrap_or_else(|| crate::dead_letter::topic_for(&id.0));
            let record =
                crate::dead_letter::from_group(&p.record, &id.0, &self.name, p.attempt, &reason);
            let stored = store_dead_letter(&*self.store, &dlq_topic, record).await;
            match stored {
                Ok(at) => {
                    crate::trace::record::dead_lettered(
                        &self.record,
                        &self.name,
                        (&id.0, id.1),
                        p.attempt,
                        &reason,
                        (&dlq_topic, at),
                    );
                    tracing::info!(group = %self.name, topic = %id.0, offset = id.1, dead_letter_topic = %dlq_topic, %reason, "message dead-lettered");
                    self.dead_lettered += 1;
                    self.finish(&id);
                }
                Err(e) => {
                    tracing::error!(group = %self.name, topic = %id.0, offset = id.1, error = %e, "cannot store dead letter; will retry");
                    self.dead_letter_retry = Some(Instant::now() + DEAD_LETTER_RETRY);
                    self.dead_letters.push((id, reason));
                }
            }
        }
    }
}
