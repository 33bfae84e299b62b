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
    /// that appear later start at their beginning. A topic deleted and
    /// created again (a new incarnation) starts over at the start position.
    pub(super) async fn discover_topics(&mut self, at_creation: bool) {
        for topic in self.store.topics(&self.pattern) {
            let known = self.state.topics.get(&*topic.name).map(|c| c.incarnation);
            match known {
                None => {
                    let start = if at_creation {
                        resolve_position(&*self.store, &topic, self.settings.options.start).await
                    } else {
                        topic.start_offset
                    };
                    self.record_event(Event::TopicAdded {
                        topic: topic.name.to_string(),
                        start,
                    });
                    self.record_incarnation(&topic, None);
                }
                // Known from before incarnations were kept: this is it.
                Some(None) => self.record_incarnation(&topic, None),
                Some(Some(incarnation)) if incarnation != topic.incarnation => {
                    let start =
                        resolve_position(&*self.store, &topic, self.settings.options.start).await;
                    tracing::warn!(group = %self.name, topic = %topic.name, start, "topic was deleted and created again; the group starts over on it");
                    self.forget_topic(&topic.name);
                    self.record_incarnation(&topic, Some(start));
                }
                Some(Some(_)) => {}
            }
            if !self.read_pos.contains_key(&topic.name) {
                let cursor = self.state.topics.get(&*topic.name).map_or(0, |c| c.cursor);
                self.read_pos.insert(topic.name.clone(), cursor);
            }
        }
    }

    fn record_incarnation(&mut self, topic: &TopicMeta, restart_at: Option<u64>) {
        self.record_event(Event::Incarnation {
            topic: topic.name.to_string(),
            incarnation: topic.incarnation,
            restart_at,
        });
    }

    /// Drops what the group holds in memory of a topic (deleted, or
    /// deleted and created again): its pending and read-ahead messages go,
    /// and the members holding them get their credit back.
    pub(super) fn forget_topic(&mut self, name: &str) {
        let ids: Vec<MessageId> = self
            .pending
            .keys()
            .filter(|id| &*id.0 == name)
            .cloned()
            .collect();
        for id in ids {
            let member = self.pending.get(&id).and_then(|p| p.member);
            self.release_member_credit(member);
            self.unschedule(&id);
            if let Some(p) = self.pending.remove(&id) {
                if let Some(key) = &p.record.key {
                    self.busy_keys.remove(key);
                }
            }
        }
        self.fresh.retain(|f| &*f.topic != name);
        self.dead_letters.retain(|(id, _)| &*id.0 != name);
        self.unreadable.retain(|(topic, _)| topic != name);
        self.read_pos.remove(name);
    }

    /// After a power loss under a lax fsync policy a log can come back
    /// shorter than the group's position on it: the offsets past its end
    /// will be new messages, which the group must not skip.
    pub(super) fn check_positions(&mut self) {
        let mut truncated = Vec::new();
        for (name, cursor) in &self.state.topics {
            let Some(topic) = self.store.topic(name) else {
                continue;
            };
            if cursor.incarnation.is_some_and(|i| i != topic.incarnation) {
                continue;
            }
            if cursor.cursor > topic.committed_end {
                tracing::warn!(group = %self.name, topic = %name, cursor = cursor.cursor, end = topic.committed_end, "the log is shorter than the group's position (lost in a crash before it was fsynced); the group goes back to its end");
                truncated.push((topic.name.clone(), topic.committed_end));
            }
        }
        for (name, end) in truncated {
            self.record_event(Event::Truncated {
                topic: name.to_string(),
                end,
            });
            self.read_pos.insert(name, end);
        }
    }

    /// After a restart every pending message is delivered again, first and
    /// in offset order (so key order holds), with its attempt count kept.
    /// A pending message that cannot be read now stays pending and is tried
    /// again (see [`Actor::read_unreadable`]); only one the log no longer
    /// holds (retention) is skipped.
    pub(super) async fn recover_pending(&mut self) {
        // Only what the log can hold: positions were checked against the
        // log's end already, and a topic that is gone has nothing to deliver.
        let mut pending = Vec::new();
        for (name, cursor) in &self.state.topics {
            let Some(topic) = self.store.topic(name) else {
                continue;
            };
            let end = cursor.cursor.min(topic.committed_end);
            pending.extend(
                (cursor.floor..end)
                    .filter(|o| !cursor.settled.contains(o))
                    .map(|o| (name.clone(), o)),
            );
        }
        self.unreadable = pending;
        self.read_unreadable().await;
        if !self.fresh.is_empty() {
            tracing::info!(group = %self.name, messages = self.fresh.len(), "redelivering messages pending at the last stop");
        }
    }

    /// Reads the pending messages not read yet, queueing them first for
    /// delivery; those that still cannot be read wait for the next try.
    pub(super) async fn read_unreadable(&mut self) {
        let mut recovered = Vec::new();
        let mut missing = Vec::new();
        let mut still = Vec::new();
        for (topic_name, offset) in std::mem::take(&mut self.unreadable) {
            let Some(topic) = self.store.topic(&topic_name) else {
                continue;
            };
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
                Ok(_) => {
                    if offset >= topic.start_offset {
                        tracing::warn!(group = %self.name, topic = %topic_name, offset, "a pending message is missing from the log (damaged segment); skipping it");
                    }
                    missing.push((topic_name, offset));
                }
                Err(error) => {
                    tracing::error!(group = %self.name, topic = %topic_name, offset, %error, "cannot read a pending message; it stays pending and is tried again");
                    still.push((topic_name, offset));
                }
            }
        }
        self.unreadable = still;
        self.unreadable_retry = (!self.unreadable.is_empty())
            .then(|| tokio::time::Instant::now() + super::UNREADABLE_RETRY);
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
