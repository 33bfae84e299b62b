//! [`GroupState`]: the durable part of a consumer group, as a pure state
//! machine over journal [`Event`]s, so recovery is "replay the events".
//!
//! Per topic the group keeps an *ack floor* (every offset below it is
//! settled), the offsets settled above the floor, and a *cursor* (one past
//! the highest offset ever delivered). Everything in `[floor, cursor)` that
//! is not settled is pending: after a restart it is delivered again.
//! Attempt counts of pending messages are kept so `max_deliver` holds
//! across restarts.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

/// One change to a group's durable state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Event {
    /// The group started reading a topic at `start`.
    TopicAdded { topic: String, start: u64 },
    /// A message was handed to a member (attempt 1 is the first delivery).
    Delivered {
        topic: String,
        offset: u64,
        attempt: u32,
    },
    /// A message is done: acked, or moved to the dead-letter topic.
    Settled { topic: String, offset: u64 },
    /// Offsets `from..to` are gone from the log (retention): nothing to deliver.
    Skipped { topic: String, from: u64, to: u64 },
    /// The group was moved; everything pending is forgotten.
    Reset { topic: String, position: u64 },
    /// The topic's incarnation (see `store::TopicMeta`). With `restart_at`,
    /// the topic was deleted and created again: the group starts over on
    /// the new one there, and forgets what it knew of the old.
    Incarnation {
        topic: String,
        incarnation: u64,
        restart_at: Option<u64>,
    },
    /// The log came back shorter than the group's position (a power loss
    /// under a lax fsync policy): offsets from `end` on are new messages.
    Truncated { topic: String, end: u64 },
}

/// The group's position on one topic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TopicCursor {
    /// Every offset below is settled.
    pub floor: u64,
    /// One past the highest offset delivered.
    pub cursor: u64,
    /// Settled offsets at or above the floor.
    pub settled: BTreeSet<u64>,
    /// The incarnation of the topic these offsets are of (none in state
    /// written before incarnations were kept).
    #[serde(default)]
    pub incarnation: Option<u64>,
}

impl TopicCursor {
    fn at(position: u64) -> Self {
        TopicCursor {
            floor: position,
            cursor: position,
            settled: BTreeSet::new(),
            incarnation: None,
        }
    }

    /// True if `offset` was delivered and is not settled.
    #[cfg(test)]
    pub fn is_pending(&self, offset: u64) -> bool {
        offset >= self.floor && offset < self.cursor && !self.settled.contains(&offset)
    }

    /// Pending messages.
    pub fn pending(&self) -> u64 {
        self.cursor
            .saturating_sub(self.floor)
            .saturating_sub(self.settled.len() as u64)
    }

    /// Pending offsets, ascending.
    #[cfg(test)]
    pub fn pending_offsets(&self) -> impl Iterator<Item = u64> + '_ {
        (self.floor..self.cursor).filter(|o| !self.settled.contains(o))
    }

    fn settle(&mut self, offset: u64) {
        if offset < self.floor {
            return;
        }
        self.settled.insert(offset);
        while self.floor < u64::MAX && self.settled.remove(&self.floor) {
            self.floor += 1;
        }
    }

    fn delivered(&mut self, offset: u64) {
        // Offsets below a delivered one that were not delivered yet (key
        // order lets later keys overtake) stay pending: after a restart they
        // are delivered, never lost.
        self.cursor = self.cursor.max(offset.saturating_add(1));
    }

    fn skipped(&mut self, from: u64, to: u64) {
        if from <= self.floor {
            // Everything below `to` is done: no need to note each offset.
            self.floor = self.floor.max(to);
            let floor = self.floor;
            self.settled.retain(|o| *o >= floor);
        } else {
            // A gap above the floor is as long as what the log lost: short.
            for offset in from..to.min(from.saturating_add(MAX_SKIPPED_ABOVE_FLOOR)) {
                self.settled.insert(offset);
            }
        }
        self.cursor = self.cursor.max(to);
        while self.floor < u64::MAX && self.settled.remove(&self.floor) {
            self.floor += 1;
        }
    }
}

/// Most offsets one `Skipped` event above the floor notes (the group never
/// reads further than its window past the floor, so real events stay below).
const MAX_SKIPPED_ABOVE_FLOOR: u64 = 1 << 20;

/// The durable state of one group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GroupState {
    pub topics: BTreeMap<String, TopicCursor>,
    /// Delivery attempts of pending messages.
    pub attempts: HashMap<String, HashMap<u64, u32>>,
}

impl GroupState {
    /// Applies one event.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::TopicAdded { topic, start } => {
                self.topics
                    .entry(topic.clone())
                    .or_insert_with(|| TopicCursor::at(*start));
            }
            Event::Delivered {
                topic,
                offset,
                attempt,
            } => {
                self.topics
                    .entry(topic.clone())
                    .or_insert_with(|| TopicCursor::at(*offset))
                    .delivered(*offset);
                self.attempts
                    .entry(topic.clone())
                    .or_default()
                    .insert(*offset, *attempt);
            }
            Event::Settled { topic, offset } => {
                if let Some(cursor) = self.topics.get_mut(topic) {
                    cursor.settle(*offset);
                }
                if let Some(attempts) = self.attempts.get_mut(topic) {
                    attempts.remove(offset);
                }
            }
            Event::Skipped { topic, from, to } => {
                if let Some(cursor) = self.topics.get_mut(topic) {
                    cursor.skipped(*from, *to);
                }
                if let Some(attempts) = self.attempts.get_mut(topic) {
                    attempts.retain(|o, _| *o < *from || *o >= *to);
                }
            }
            Event::Reset { topic, position } => {
                let incarnation = self.topics.get(topic).and_then(|c| c.incarnation);
                let mut cursor = TopicCursor::at(*position);
                cursor.incarnation = incarnation;
                self.topics.insert(topic.clone(), cursor);
                self.attempts.remove(topic);
            }
            Event::Incarnation {
                topic,
                incarnation,
                restart_at,
            } => {
                if let Some(position) = restart_at {
                    self.topics
                        .insert(topic.clone(), TopicCursor::at(*position));
                    self.attempts.remove(topic);
                }
                if let Some(cursor) = self.topics.get_mut(topic) {
                    cursor.incarnation = Some(*incarnation);
                }
            }
            Event::Truncated { topic, end } => {
                if let Some(cursor) = self.topics.get_mut(topic) {
                    cursor.cursor = cursor.cursor.min(*end);
                    cursor.floor = cursor.floor.min(*end);
                    cursor.settled.retain(|o| *o < *end);
                }
                if let Some(attempts) = self.attempts.get_mut(topic) {
                    attempts.retain(|o, _| *o < *end);
                }
            }
        }
    }

    /// Attempts made so far for a message.
    pub fn attempts(&self, topic: &str, offset: u64) -> u32 {
        self.attempts
            .get(topic)
            .and_then(|a| a.get(&offset))
            .copied()
            .unwrap_or(0)
    }

    /// True if the message was delivered and not settled.
    #[cfg(test)]
    pub fn is_pending(&self, topic: &str, offset: u64) -> bool {
        self.topics.get(topic).is_some_and(|c| c.is_pending(offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivered(topic: &str, offset: u64, attempt: u32) -> Event {
        Event::Delivered {
            topic: topic.into(),
            offset,
            attempt,
        }
    }

    fn settled(topic: &str, offset: u64) -> Event {
        Event::Settled {
            topic: topic.into(),
            offset,
        }
    }

    #[test]
    fn floor_advances_over_contiguous_acks_only() {
        let mut s = GroupState::default();
        s.apply(&Event::TopicAdded {
            topic: "t".into(),
            start: 0,
        });
        for o in 0..5 {
            s.apply(&delivered("t", o, 1));
        }
        s.apply(&settled("t", 1));
        s.apply(&settled("t", 3));
        let c = &s.topics["t"];
        assert_eq!((c.floor, c.cursor, c.pending()), (0, 5, 3));
        assert_eq!(c.pending_offsets().collect::<Vec<_>>(), vec![0, 2, 4]);
        s.apply(&settled("t", 0));
        s.apply(&settled("t", 2));
        let c = &s.topics["t"];
        assert_eq!((c.floor, c.pending()), (4, 1));
        assert!(c.settled.is_empty());
        assert!(s.is_pending("t", 4));
        assert!(!s.is_pending("t", 3));
    }

    #[test]
    fn attempts_are_kept_until_settled() {
        let mut s = GroupState::default();
        s.apply(&delivered("t", 7, 1));
        s.apply(&delivered("t", 7, 2));
        assert_eq!(s.attempts("t", 7), 2);
        s.apply(&settled("t", 7));
        assert_eq!(s.attempts("t", 7), 0);
        assert_eq!(s.topics["t"].floor, 8);
    }

    #[test]
    fn overtaken_offsets_stay_pending() {
        let mut s = GroupState::default();
        s.apply(&Event::TopicAdded {
            topic: "t".into(),
            start: 0,
        });
        s.apply(&delivered("t", 0, 1));
        s.apply(&delivered("t", 3, 1));
        assert_eq!(
            s.topics["t"].pending_offsets().collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
    }

    #[test]
    fn skipped_ranges_are_settled() {
        let mut s = GroupState::default();
        s.apply(&Event::TopicAdded {
            topic: "t".into(),
            start: 0,
        });
        s.apply(&Event::Skipped {
            topic: "t".into(),
            from: 0,
            to: 10,
        });
        assert_eq!((s.topics["t"].floor, s.topics["t"].cursor), (10, 10));
        s.apply(&delivered("t", 10, 1));
        s.apply(&delivered("t", 11, 1));
        s.apply(&Event::Skipped {
            topic: "t".into(),
            from: 12,
            to: 15,
        });
        assert_eq!(
            s.topics["t"].pending_offsets().collect::<Vec<_>>(),
            vec![10, 11]
        );
        assert_eq!(s.topics["t"].cursor, 15);
    }

    #[test]
    fn reset_forgets_pending() {
        let mut s = GroupState::default();
        s.apply(&delivered("t", 0, 3));
        s.apply(&Event::Reset {
            topic: "t".into(),
            position: 100,
        });
        assert_eq!(s.topics["t"].pending(), 0);
        assert_eq!(s.topics["t"].cursor, 100);
        assert_eq!(s.attempts("t", 0), 0);
    }

    #[test]
    fn a_recreated_topic_starts_over_and_forgets_the_old_one() {
        let mut s = GroupState::default();
        s.apply(&Event::TopicAdded {
            topic: "t".into(),
            start: 0,
        });
        let incarnation = |incarnation, restart_at| Event::Incarnation {
            topic: "t".into(),
            incarnation,
            restart_at,
        };
        s.apply(&incarnation(7, None));
        for o in 0..5 {
            s.apply(&delivered("t", o, 2));
        }
        s.apply(&settled("t", 0));
        assert_eq!(s.topics["t"].incarnation, Some(7));
        s.apply(&incarnation(9, Some(0)));
        let c = &s.topics["t"];
        assert_eq!(
            (c.floor, c.cursor, c.pending(), c.incarnation),
            (0, 0, 0, Some(9))
        );
        assert_eq!(s.attempts("t", 3), 0);
        // A reset keeps the incarnation.
        s.apply(&Event::Reset {
            topic: "t".into(),
            position: 4,
        });
        assert_eq!(s.topics["t"].incarnation, Some(9));
    }

    #[test]
    fn a_shorter_log_pulls_the_position_back() {
        let mut s = GroupState::default();
        for o in 0..10 {
            s.apply(&delivered("t", o, 1));
        }
        for o in [0, 1, 2, 7, 8] {
            s.apply(&settled("t", o));
        }
        s.apply(&Event::Truncated {
            topic: "t".into(),
            end: 6,
        });
        let c = &s.topics["t"];
        assert_eq!((c.floor, c.cursor), (3, 6));
        assert_eq!(c.pending_offsets().collect::<Vec<_>>(), vec![3, 4, 5]);
        assert!(c.settled.is_empty());
        assert_eq!(s.attempts("t", 8), 0);
        s.apply(&Event::Truncated {
            topic: "t".into(),
            end: 1,
        });
        assert_eq!((s.topics["t"].floor, s.topics["t"].cursor), (1, 1));
    }

    #[test]
    fn state_written_before_incarnations_still_decodes() {
        #[derive(Serialize)]
        struct OldCursor {
            floor: u64,
            cursor: u64,
            settled: BTreeSet<u64>,
        }
        #[derive(Serialize)]
        struct OldState {
            topics: BTreeMap<String, OldCursor>,
            attempts: HashMap<String, HashMap<u64, u32>>,
        }
        let old = OldState {
            topics: [(
                "t".to_owned(),
                OldCursor {
                    floor: 2,
                    cursor: 5,
                    settled: [3].into(),
                },
            )]
            .into(),
            attempts: HashMap::new(),
        };
        let state: GroupState = rmp_serde::from_slice(&rmp_serde::to_vec(&old).unwrap()).unwrap();
        let c = &state.topics["t"];
        assert_eq!((c.floor, c.cursor, c.incarnation), (2, 5, None));
    }
}
