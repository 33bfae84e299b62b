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

use super::observed::{check_key_order, Log, Observed};
use super::readers::{check_group, check_subscription};
use super::record::{History, PublishOutcome, Seen};
use super::summary::Summary;
use super::violation::Violation;

/// What [`check`] found.
#[derive(Debug, Clone)]
pub struct Report {
    /// Everything that contradicts the history; empty when it holds.
    pub violations: Vec<Violation>,
    /// Counts and times of the run.
    pub summary: Summary,
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

#[cfg(test)]
mod tests {
    use super::super::seeded::{clean, id, publishes_only, seen, violations};
    use super::super::violation::At;
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
