//! Settlements, failed deliveries and dead letters: what happens to a
//! message after it was handed out.

use std::sync::Arc;
use std::time::Duration;

use sluice_proto::SettleAction;
use tokio::time::Instant;

use super::{Actor, MessageId, DEAD_LETTER_RETRY};
use crate::error::BrokerError;
use crate::groups::local::state::Event;
use crate::groups::policy::{self, AfterFailure};
use crate::store::{Store, StoreError};

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
    pub(super) fn settle(
        &mut self,
        topic: &str,
        offset: u64,
        action: SettleAction,
        now: Instant,
    ) -> Result<(), BrokerError> {
        let id: MessageId = (Arc::from(topic), offset);
        let ack_wait = self.ack_wait();
        let Some(p) = self.pending.get_mut(&id) else {
            return Err(BrokerError::UnknownDelivery(format!(
                "{topic}@{offset} is not pending in group {} (never delivered, or already settled)",
                self.name
            )));
        };
        match action {
            SettleAction::Ack => {
                let member = p.member;
                self.release_member_credit(member);
                self.finish(&id);
            }
            SettleAction::Nack { delay_ms } => {
                let Some(member) = p.member else {
                    return Ok(()); // already waiting for redelivery
                };
                self.release_member_credit(Some(member));
                self.retry(&id, "nacked", delay_ms.map(Duration::from_millis), now);
            }
            SettleAction::Reject { reason } => {
                let member = p.member;
                self.release_member_credit(member);
                self.unschedule(&id);
                self.dead_letters.push((id, policy::rejected(&reason)));
            }
            SettleAction::InProgress => {
                if p.member.is_some() {
                    let new_deadline = now + ack_wait;
                    if let Some(old) = p.deadline.replace(new_deadline) {
                        self.deadlines.remove(&(old, id.clone()));
                    }
                    self.deadlines.insert((new_deadline, id));
                }
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
                Ok(_) => {
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

/// Stores a dead letter made by the group (no pipeline runs, and the topic
/// is created whatever `auto_create` says). Completes once committed.
async fn store_dead_letter(
    store: &dyn Store,
    topic: &str,
    record: crate::store::NewRecord,
) -> Result<u64, StoreError> {
    store.ensure_topic(topic).await?;
    let ticket = store.append(topic, vec![record]).await?;
    let appended = ticket.await?;
    appended
        .first()
        .map(|a| a.offset())
        .ok_or_else(|| StoreError::Task("dead letter not appended".into()))
}
