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
use crate::groups::policy::{self, AfterFailure};
use crate::groups::SettleItem;
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

/// Why a settlement does not answer the delivery in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Staleness {
    /// Nobody holds the message: its ack wait ran out or it was nacked,
    /// and it waits to be delivered again (or to be dead-lettered).
    NotHeld,
    /// Another member holds it, as attempt `attempt` (it was delivered
    /// again, or the settlement came from a connection it was not
    /// delivered to).
    OtherMember { attempt: u32 },
    /// The settling member holds attempt `in_flight`, not `answered`.
    OtherAttempt { answered: u32, in_flight: u32 },
}

impl Staleness {
    /// Whether a settlement by one of `members` for `attempt` (any, if
    /// `None`) is stale, given the message's `holder` and the attempt
    /// `in_flight`.
    fn of(
        holder: Option<u64>,
        in_flight: u32,
        members: &[u64],
        attempt: Option<u32>,
    ) -> Option<Staleness> {
        let Some(holder) = holder else {
            return Some(Staleness::NotHeld);
        };
        if !members.contains(&holder) {
            return Some(Staleness::OtherMember { attempt: in_flight });
        }
        match attempt {
            Some(answered) if answered != in_flight => Some(Staleness::OtherAttempt {
                answered,
                in_flight,
            }),
            _ => None,
        }
    }
}

impl std::fmt::Display for Staleness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Staleness::NotHeld => write!(
                f,
                "its delivery ended (ack wait ran out, or its member left) and it waits to be delivered again or dead-lettered"
            ),
            Staleness::OtherMember { attempt } => write!(
                f,
                "another member holds it (attempt {attempt}): settle it through the consumer it was delivered to"
            ),
            Staleness::OtherAttempt {
                answered,
                in_flight,
            } => write!(
                f,
                "this settles attempt {answered}, but attempt {in_flight} is in flight"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Staleness;

    #[test]
    fn only_the_holder_settles_the_attempt_in_flight() {
        // (holder, attempt in flight, settling members, attempt answered)
        assert_eq!(Staleness::of(Some(1), 1, &[1], Some(1)), None);
        assert_eq!(Staleness::of(Some(1), 3, &[1], None), None, "any attempt");
        assert_eq!(Staleness::of(Some(2), 1, &[1, 2], None), None, "any member");
        assert_eq!(
            Staleness::of(Some(2), 2, &[1], Some(1)),
            Some(Staleness::OtherMember { attempt: 2 }),
            "redelivered to another member"
        );
        assert_eq!(
            Staleness::of(Some(2), 2, &[1], None),
            Some(Staleness::OtherMember { attempt: 2 })
        );
        assert_eq!(
            Staleness::of(Some(1), 2, &[1], Some(1)),
            Some(Staleness::OtherAttempt {
                answered: 1,
                in_flight: 2
            }),
            "redelivered to the same member"
        );
        assert_eq!(
            Staleness::of(Some(1), 2, &[1], Some(3)),
            Some(Staleness::OtherAttempt {
                answered: 3,
                in_flight: 2
            })
        );
        assert_eq!(
            Staleness::of(None, 1, &[1], Some(1)),
            Some(Staleness::NotHeld),
            "ack wait ran out"
        );
        assert_eq!(
            Staleness::of(Some(1), 1, &[], None),
            Some(Staleness::OtherMember { attempt: 1 }),
            "no member on the connection"
        );
    }
}
