//! [`check`]: the history of a cluster fault run judged against what the
//! topic and the group hold at the end. Pure: records in, a [`Report`]
//! out, every rule a list of [`Violation`]s.
//!
//! - The topic: offsets dense from 0; every acked publish in it exactly
//!   once, at the offset its ack named (messages are known by id, so a
//!   retry stored twice shows as one id at two offsets); nothing in it
//!   that was never published; each key's messages in the order they were
//!   published. Failed and unknown publishes may be there or not, once.
//! - Each subscription: each offset at most once, in increasing order,
//!   none skipped between the first and the last it received (a replaying
//!   one: from where it started to the topic's end), each what the topic
//!   holds there, each key in publishing order; it did not fail.
//! - The group: each delivery is what the topic holds; by the end every
//!   message is acked or in the dead-letter topic, no message is
//!   dead-lettered twice, the broker counts nothing pending, and no member
//!   failed. An ack whose answer was lost counts as done: the broker may
//!   have applied it, and then has nothing more to deliver.

use std::collections::{HashMap, HashSet};

use super::readers::{check_group, check_subscription};
use super::record::{History, PublishOutcome, Seen};
use super::summary::Summary;
use super::violation::{At, Violation};

/// What the group's broker-side state says at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupEnd {
    /// Delivered and not settled.
    pub pending: u64,
    /// Not settled, delivered or not.
    pub lag: u64,
}

/// What the cluster holds at the end of a run, read through a node once
/// the faults stopped and the load drained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The topic's name.
    pub topic: String,
    /// The whole topic, read from offset 0 to its end.
    pub stored: Vec<Seen>,
    /// The offsets that the group's dead letters name, one per letter.
    pub dead_letters: Vec<u64>,
    /// The group's state, when the run had a group.
    pub group: Option<GroupEnd>,
}

/// What [`check`] found.
#[derive(Debug, Clone)]
pub struct Report {
    /// Everything that contradicts the history; empty when it holds.
    pub violations: Vec<Violation>,
    /// Counts and times of the run.
    pub summary: Summary,
}

/// The topic as read at the end, indexed.
pub(super) struct Log<'a> {
    pub topic: &'a str,
    /// One past the highest offset read.
    pub end: u64,
    by_offset: HashMap<u64, &'a Seen>,
    offsets_of: HashMap<&'a str, Vec<u64>>,
    /// Each published id's place in the publishing order.
    order: HashMap<&'a str, usize>,
}

impl<'a> Log<'a> {
    fn new(history: &'a History, observed: &'a Observed) -> Log<'a> {
        let mut offsets_of: HashMap<&str, Vec<u64>> = HashMap::new();
        for message in &observed.stored {
            if let Some(id) = &message.id {
                offsets_of.entry(id).or_default().push(message.offset);
            }
        }
        Log {
            topic: &observed.topic,
            end: observed
                .stored
                .iter()
                .map(|m| m.offset + 1)
                .max()
                .unwrap_or(0),
            by_offset: observed.stored.iter().map(|m| (m.offset, m)).collect(),
            offsets_of,
            order: (history.publishes.iter().enumerate())
                .map(|(i, p)| (p.id.as_str(), i))
                .collect(),
        }
    }

    pub fn at(&self, offset: u64) -> At {
        At::new(self.topic, offset)
    }

    /// The id stored at `offset`; `None` past the end.
    pub fn id_at(&self, offset: u64) -> Option<Option<&'a str>> {
        (self.by_offset.get(&offset)).map(|m| m.id.as_deref())
    }
}

/// Judges `history` against `observed`.
pub fn check(history: &History, observed: &Observed) -> Report {
    let log = Log::new(history, observed);
    let mut violations = Vec::new();
    check_dense(observed, &mut violations);
    check_publishes(history, &log, &mut violations);
    check_key_order("the topic", &observed.stored, &log, &mut violations);
    for subscription in &history.subscriptions {
        check_subscription(subscription, &log, &mut violations);
    }
    if let Some(end) = observed.group {
        check_group(history, observed, end, &log, &mut violations);
    }
    Report {
        violations,
        summary: Summary::of(history, observed),
    }
}

/// Offsets dense from 0, in order.
fn check_dense(observed: &Observed, out: &mut Vec<Violation>) {
    let mut expected = 0;
    for message in &observed.stored {
        if message.offset != expected {
            out.push(Violation::Gap {
                topic: observed.topic.clone(),
                expected,
                found: message.offset,
            });
        }
        expected = message.offset + 1;
    }
}

/// Every acked publish once, where its ack said; every id at one offset;
/// nothing unpublished.
fn check_publishes(history: &History, log: &Log, out: &mut Vec<Violation>) {
    for publish in &history.publishes {
        let PublishOutcome::Acked { offset, .. } = publish.outcome else {
            continue;
        };
        match log.offsets_of.get(publish.id.as_str()) {
            None => out.push(Violation::LostWrite {
                id: publish.id.clone(),
                acked: log.at(offset),
            }),
            Some(offsets) if !offsets.contains(&offset) => out.push(Violation::AckedElsewhere {
                id: publish.id.clone(),
                acked: log.at(offset),
                stored: offsets[0],
            }),
            Some(_) => {}
        }
    }
    let mut duplicates: Vec<(&str, &Vec<u64>)> = (log.offsets_of.iter())
        .filter(|(_, offsets)| offsets.len() > 1)
        .map(|(id, offsets)| (*id, offsets))
        .collect();
    duplicates.sort_by_key(|(_, offsets)| offsets[0]);
    out.extend(
        duplicates
            .into_iter()
            .map(|(id, offsets)| Violation::DuplicateId {
                topic: log.topic.to_owned(),
                id: id.to_owned(),
                offsets: offsets.clone(),
            }),
    );
    let mut strangers: Vec<&Seen> = (log.by_offset.values())
        .filter(|m| !m.id.as_deref().is_some_and(|id| log.order.contains_key(id)))
        .copied()
        .collect();
    strangers.sort_by_key(|m| m.offset);
    out.extend(strangers.into_iter().map(|m| Violation::StrangerStored {
        at: log.at(m.offset),
        id: m.id.clone(),
    }));
}

/// Each key's messages in `messages` (in the order found) in the order
/// they were published. Only the first copy of a message counts (a copy
/// found again is another rule's to report), and one message found late
/// is reported once.
pub(super) fn check_key_order(place: &str, messages: &[Seen], log: &Log, out: &mut Vec<Violation>) {
    // Per key: the latest-published message found so far.
    let mut latest: HashMap<&str, (usize, u64, &str)> = HashMap::new();
    let mut found: HashSet<&str> = HashSet::new();
    for message in messages {
        let (Some(key), Some(id)) = (&message.key, &message.id) else {
            continue;
        };
        let Some(&published) = log.order.get(id.as_str()) else {
            continue;
        };
        if !found.insert(id) {
            continue;
        }
        match latest.get(key.as_str()) {
            Some(&(newest, offset, newer)) if published < newest => out.push(Violation::KeyOrder {
                key: key.clone(),
                place: place.to_owned(),
                published_first: (message.offset, id.clone()),
                found_before: (offset, newer.to_owned()),
            }),
            _ => {
                latest.insert(key, (published, message.offset, id));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::seeded::{clean, id, publishes_only, seen, violations};
    use super::*;

    #[test]
    fn a_history_that_holds_has_no_violations() {
        let (history, observed) = clean();
        let report = check(&history, &observed);
        assert_eq!(report.violations, vec![]);
        assert_eq!(report.summary.acked, 6);
        assert_eq!(report.summary.dead_letters, 1);
    }

    #[test]
    fn a_lost_acked_write_is_flagged() {
        let (history, mut observed) = publishes_only();
        observed.stored.pop();
        assert_eq!(
            violations(&history, &observed),
            vec![Violation::LostWrite {
                id: id(5),
                acked: At::new("t", 5),
            }]
        );
    }

    #[test]
    fn a_duplicate_is_flagged_by_its_id() {
        let (history, mut observed) = publishes_only();
        observed.stored.push(seen(6, 2));
        assert_eq!(
            violations(&history, &observed),
            vec![Violation::DuplicateId {
                topic: "t".into(),
                id: id(2),
                offsets: vec![2, 6],
            }]
        );
    }

    #[test]
    fn failed_and_unknown_publishes_may_be_stored_once_or_not_at_all() {
        let (mut history, mut observed) = publishes_only();
        history.publishes[4].outcome = PublishOutcome::Failed("timed out".into());
        history.publishes[5].outcome = PublishOutcome::Unknown;
        observed.stored.pop();
        assert_eq!(violations(&history, &observed), vec![]);
        // Stored although it failed: fine, once.
        observed.stored.push(seen(5, 5));
        assert_eq!(violations(&history, &observed), vec![]);
        observed.stored.push(seen(6, 4));
        assert_eq!(violations(&history, &observed).len(), 1);
    }

    #[test]
    fn a_gap_in_the_topic_is_flagged() {
        let (history, mut observed) = publishes_only();
        observed.stored.remove(2);
        let found = violations(&history, &observed);
        assert!(
            found.contains(&Violation::Gap {
                topic: "t".into(),
                expected: 2,
                found: 3
            }),
            "{found:?}"
        );
    }

    #[test]
    fn a_reordering_of_one_key_is_flagged_in_the_topic_and_in_a_subscription() {
        let (mut history, mut observed) = clean();
        history.group.clear();
        observed.group = None;
        // p-2 and p-4 (key k0) stored the other way round, each acked where
        // it is: offsets stay dense and every ack holds.
        observed.stored[2] = seen(2, 4);
        observed.stored[4] = seen(4, 2);
        history.publishes[2].outcome = PublishOutcome::Acked {
            offset: 4,
            duplicate: false,
        };
        history.publishes[4].outcome = PublishOutcome::Acked {
            offset: 2,
            duplicate: false,
        };
        history.subscriptions[0].received = observed.stored.clone();
        let found = violations(&history, &observed);
        let places: Vec<&str> = found
            .iter()
            .map(|v| match v {
                Violation::KeyOrder { key, place, .. } if key == "k0" => place.as_str(),
                other => panic!("unexpected {other}"),
            })
            .collect();
        assert_eq!(places, ["the topic", "subscription replay"]);
        assert!(
            found[0]
                .to_string()
                .contains("\"p-2\" was published before \"p-4\""),
            "{}",
            found[0]
        );
    }
}
