//! Where the group's topics start, what was pending when the broker
//! stopped, resets, and the group's status.

use sluice_proto::{GroupInfo, GroupTopicInfo, MemberInfo, StartPosition};

use super::{Actor, Fresh, MessageId, Pending};
use crate::groups::local::state::Event;
use crate::groups::policy;
use crate::store::{Store, TopicMeta};

impl Actor {
    /// Starts reading topics that match and are new to the group. At
    /// creation, existing topics start at the group's start position; topics
    /// that appear later start at their beginning.
    pub(super) async fn discover_topics(&mut self, at_creation: bool) {
        for topic in self.store.topics(&self.pattern) {
            if !self.state.topics.contains_key(&*topic.name) {
                let start = if at_creation {
                    resolve_position(&*self.store, &topic, self.settings.options.start).await
                } else {
                    topic.start_offset
                };
                self.record_event(Event::TopicAdded {
                    topic: topic.name.to_string(),
                    start,
                });
            }
            if !self.read_pos.contains_key(&topic.name) {
                let cursor = self.state.topics.get(&*topic.name).map_or(0, |c| c.cursor);
                self.read_pos.insert(topic.name.clone(), cursor);
            }
        }
    }
    /// After a restart every pending message is delivered again, first and
    /// in offset order (so key order holds), with its attempt count kept.
    pub(super) async fn recover_pending(&mut self) {
        let mut missing = Vec::new();
        let mut recovered = Vec::new();
        let pending: Vec<(String, Vec<u64>)> = self
            .state
            .topics
            .iter()
            .map(|(t, c)| (t.clone(), c.pending_offsets().collect()))
            .collect();
        for (topic_name, offsets) in pending {
            let Some(topic) = self.store.topic(&topic_name) else {
                continue;
            };
            for offset in offsets {
                let read = self
                    .store
                    .read(&topic.name, topic.incarnation, offset, 1, 1)
                    .await;
                match read {
                    Ok(batch) if batch.records.first().is_some_and(|r| r.offset == offset) => {
                        let Some(record) = batch.records.into_iter().next() else {
                            continue;
                        };
                        let attempt = self.state.attempts(&topic_name, offset);
                        if let Some(reason) =
                            policy::exhausted_at_restart(&self.settings.options, attempt)
                        {
                            // Its last delivery ended with the broker: that
                            // was the last attempt it had.
                            let id: MessageId = (topic.name.clone(), offset);
                            if self.key_ordered() {
                                if let Some(key) = &record.key {
                                    self.busy_keys.insert(key.clone());
                                }
                            }
                            self.pending.insert(
                                id.clone(),
                                Pending {
                                    record,
                                    attempt,
                                    member: None,
                                    deadline: None,
                                    due: None,
                                    last_reason: "broker restarted".into(),
                                },
                            );
                            self.dead_letters.push((id, reason));
                            continue;
                        }
                        recovered.push(Fresh {
                            topic: topic.name.clone(),
                            record,
                        });
                    }
                    _ => missing.push((topic_name.clone(), offset)),
                }
            }
        }
        if !recovered.is_empty() {
            tracing::info!(group = %self.name, messages = recovered.len(), "redelivering messages pending at the last stop");
        }
        recovered.extend(self.fresh.drain(..));
        self.fresh = recovered.into();
        for (topic, offset) in missing {
            // Removed by retention while pending: nothing left to deliver.
            self.record_event(Event::Skipped {
                topic,
                from: offset,
                to: offset + 1,
            });
        }
    }
    pub(super) async fn reset(&mut self, to: StartPosition) {
        let topics = self.store.topics(&self.pattern);
        // Everything pending is forgotten; members' credits are restored.
        let ids: Vec<MessageId> = self.pending.keys().cloned().collect();
        for id in ids {
            self.unschedule(&id);
        }
        self.pending.clear();
        self.busy_keys.clear();
        self.fresh.clear();
        for m in self.members.values_mut() {
            m.in_flight = 0;
        }
        for topic in topics {
            let position = resolve_position(&*self.store, &topic, to).await;
            self.record_event(Event::Reset {
                topic: topic.name.to_string(),
                position,
            });
            self.read_pos.insert(topic.name.clone(), position);
        }
        tracing::info!(group = %self.name, to = ?to, "consumer group reset");
    }
    pub(super) fn info(&self) -> GroupInfo {
        let topics = self
            .state
            .topics
            .iter()
            .map(|(name, c)| {
                let end = self.store.topic(name).map_or(c.cursor, |t| t.committed_end);
                GroupTopicInfo {
                    topic: name.clone(),
                    ack_floor: c.floor,
                    cursor: c.cursor,
                    end_offset: end,
                    lag: end.saturating_sub(c.cursor),
                    pending: c.pending(),
                }
            })
            .collect();
        GroupInfo {
            name: self.name.clone(),
            pattern: self.settings.pattern.clone(),
            options: self.settings.options.clone(),
            members: self
                .members
                .iter()
                .map(|(id, m)| MemberInfo {
                    id: *id,
                    client: m.client.clone(),
                    in_flight: m.in_flight,
                    max_in_flight: m.max_in_flight,
                    delivered: m.delivered,
                })
                .collect(),
            topics,
            redeliveries: self.redeliveries,
            dead_lettered: self.dead_lettered,
        }
    }
}

/// Where `position` is on `topic` now.
async fn resolve_position(store: &dyn Store, topic: &TopicMeta, position: StartPosition) -> u64 {
    match position {
        StartPosition::Earliest => topic.start_offset,
        StartPosition::Latest => topic.committed_end,
        StartPosition::Offset(o) => o,
        StartPosition::Timestamp(ts) => store
            .offset_for_time(&topic.name, ts)
            .await
            .unwrap_or(topic.committed_end),
    }
}
