//! Reading ahead from the group's topics and handing messages to members
//! with credit: due redeliveries first, then new messages, in key order
//! where the group keeps it.

use std::sync::Arc;

use tokio::time::Instant;

use super::{
    Actor, Fresh, Member, MessageId, Pending, KEY_SCAN, MAX_WINDOW, READ_AHEAD, READ_BATCH,
};
use crate::groups::local::state::Event;
use crate::groups::policy;
use crate::groups::GroupDelivery;
use crate::store::now_ms;

impl Actor {
    /// Reads ahead from the topics with new committed messages.
    pub(super) async fn fill(&mut self) {
        if self.unreadable_retry.is_some_and(|at| at <= Instant::now()) {
            self.read_unreadable().await;
        }
        if self.fresh.len() >= READ_AHEAD / 2 {
            return;
        }
        let topics: Vec<(Arc<str>, u64)> =
            self.read_pos.iter().map(|(t, p)| (t.clone(), *p)).collect();
        for (name, pos) in topics {
            if self.fresh.len() >= READ_AHEAD {
                break;
            }
            let Some(topic) = self.store.topic(&name) else {
                continue;
            };
            let Some(cursor) = self.state.topics.get(&*name) else {
                continue;
            };
            if cursor.incarnation.is_some_and(|i| i != topic.incarnation) {
                // Created again: the topic event that says so resets it first.
                continue;
            }
            let window_end = cursor.floor.saturating_add(MAX_WINDOW);
            if topic.committed_end <= pos || pos >= window_end {
                continue;
            }
            let want = READ_BATCH
                .min(READ_AHEAD - self.fresh.len())
                .min(usize::try_from(window_end - pos).unwrap_or(usize::MAX));
            let read = self
                .store
                .read(&name, topic.incarnation, pos, want, 4 * 1024 * 1024)
                .await;
            let batch = match read {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(group = %self.name, topic = %name, error = %e, "cannot read topic");
                    continue;
                }
            };
            if let Some(first) = batch.records.first() {
                if first.offset > pos {
                    self.record_event(Event::Skipped {
                        topic: name.to_string(),
                        from: pos,
                        to: first.offset,
                    });
                }
            }
            let next = batch
                .records
                .last()
                .map_or(batch.next_offset.max(pos), |r| r.offset + 1);
            self.read_pos.insert(name.clone(), next);
            for record in batch.records {
                self.fresh.push_back(Fresh {
                    topic: name.clone(),
                    record,
                });
            }
        }
    }
    /// The next member with credit, round robin.
    pub(super) fn member_with_credit(&self) -> Option<u64> {
        let has_credit = |(id, m): (&u64, &Member)| {
            (m.in_flight < m.max_in_flight && m.remaining != Some(0)).then_some(*id)
        };
        self.members
            .range(self.last_member + 1..)
            .find_map(has_credit)
            .or_else(|| self.members.range(..=self.last_member).find_map(has_credit))
    }
    /// Hands messages to members while both exist.
    pub(super) fn pump(&mut self, now: Instant) {
        while let Some(member) = self.member_with_credit() {
            // Redeliveries first: they own their keys already.
            if let Some((due, id)) = self.ready.first().cloned() {
                if due <= now {
                    self.ready.remove(&(due, id.clone()));
                    if let Some(p) = self.pending.get_mut(&id) {
                        p.due = None;
                    }
                    self.redeliveries += 1;
                    self.deliver(id, member, now);
                    continue;
                }
            }
            let Some(fresh) = self.take_fresh() else {
                break;
            };
            let id: MessageId = (fresh.topic.clone(), fresh.record.offset);
            if self.key_ordered() {
                if let Some(key) = &fresh.record.key {
                    self.busy_keys.insert(key.clone());
                }
            }
            let attempt = self.state.attempts(&fresh.topic, fresh.record.offset);
            self.pending.insert(
                id.clone(),
                Pending {
                    record: fresh.record,
                    attempt,
                    member: None,
                    deadline: None,
                    due: None,
                    last_reason: String::new(),
                },
            );
            self.deliver(id, member, now);
        }
    }
    /// A message whose time-to-live ran out is not delivered: settled, or
    /// dead-lettered (reason `expired`) if its topic says so.
    fn drop_expired(&mut self, id: MessageId) {
        if self
            .store
            .topic(&id.0)
            .is_some_and(|t| t.dead_letter_expired)
        {
            self.dead_letters
                .push((id, crate::groups::policy::EXPIRED.to_owned()));
        } else {
            self.finish(&id);
        }
    }
    /// The first read-ahead message that may go now (key order respected).
    pub(super) fn take_fresh(&mut self) -> Option<Fresh> {
        let keys = self.fresh.iter().map(|f| f.record.key.as_ref());
        let index = policy::next_to_deliver(self.key_ordered(), keys, &self.busy_keys, KEY_SCAN)?;
        self.fresh.remove(index)
    }
    pub(super) fn deliver(&mut self, id: MessageId, member: u64, now: Instant) {
        let deadline = now + self.ack_wait();
        let Some(p) = self.pending.get_mut(&id) else {
            return;
        };
        let record = &p.record;
        if crate::schedule::expired(&record.headers, record.timestamp_ms, now_ms()) {
            self.drop_expired(id);
            return;
        }
        p.attempt += 1;
        p.member = Some(member);
        p.deadline = Some(deadline);
        let attempt = p.attempt;
        let record = p.record.clone();
        self.deadlines.insert((deadline, id.clone()));
        if let Some(m) = self.members.get_mut(&member) {
            m.in_flight += 1;
            m.delivered += 1;
            if let Some(remaining) = m.remaining.as_mut() {
                *remaining = remaining.saturating_sub(1);
            }
        }
        self.last_member = member;
        self.record_event(Event::Delivered {
            topic: id.0.to_string(),
            offset: id.1,
            attempt,
        });
        self.outbox.push((
            member,
            GroupDelivery {
                topic: id.0,
                record,
                attempt,
            },
        ));
    }
}
