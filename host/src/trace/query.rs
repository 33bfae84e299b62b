//! The event record read back: what happened to the messages a
//! [`TraceKey`] names, as `sluice trace` shows it.

use sluice_proto::{
    DeadLetterTrace, DeliveryTrace, MessageTrace, PlaceTrace, SettleTrace, StageTrace, TraceKey,
    TraceReport,
};

use opentelemetry::trace::TraceId;

use super::record::{Event, Fate, Journal, Published, Receiver};

/// Set on a message found only through its deliveries: its publish is no
/// longer (or never was) in this broker's record.
pub const UNRECORDED: &str = "unrecorded";

/// Messages reported at most; a key that names more (a trace id shared by
/// a bulk publish) gets the oldest and `truncated`.
pub const MAX_FOUND: usize = 100;

/// What the record says of the messages `key` names. Only what happened in
/// topics `may_read` allows is shown: a message is reported if its topic
/// or one of its places is readable, and its places, deliveries,
/// settlements and dead letters in other topics are left out.
///
/// The record is scanned under its lock, twice, in time linear in its
/// size (milliseconds for a full record); publishes wait meanwhile, so the
/// server runs it off the async workers.
pub fn find(journal: &Journal, key: &TraceKey, may_read: impl Fn(&str) -> bool) -> TraceReport {
    let trace = match key {
        TraceKey::Trace(hex) => TraceId::from_hex(hex).ok(),
        _ => None,
    };
    let mut found: Vec<MessageTrace> = Vec::new();
    let mut truncated = false;
    journal.scan(|event| {
        let Event::Published(publish) = event else {
            return;
        };
        for index in matching(publish, key, trace) {
            if found.len() == MAX_FOUND {
                truncated = true;
                return;
            }
            found.push(message(publish, index));
        }
    });
    if found.is_empty() {
        if let TraceKey::At { topic, offset } = key {
            found.push(unrecorded(topic, *offset));
        }
    }
    found.retain(|m| may_read(&m.topic) || m.stored.iter().any(|p| may_read(&p.topic)));
    for m in &mut found {
        m.stored.retain(|p| may_read(&p.topic));
    }
    if !found.is_empty() {
        journal.scan(|event| attach(event, &mut found));
    }
    for m in &mut found {
        // Dead letters are in topics of their own.
        m.dead_letters.retain(|l| may_read(&l.topic));
    }
    found.retain(|m| {
        m.outcome != UNRECORDED
            || !(m.deliveries.is_empty() && m.settlements.is_empty() && m.dead_letters.is_empty())
    });
    let size = journal.size();
    TraceReport {
        messages: found,
        record_messages: size.messages as u64,
        record_oldest_ms: size.oldest_ms,
        record_off: !journal.is_on(),
        truncated,
    }
}

/// A place known only from what followed its publish.
fn unrecorded(topic: &str, offset: u64) -> MessageTrace {
    MessageTrace {
        topic: topic.to_owned(),
        id: None,
        trace_id: None,
        received_ms: 0,
        principal: String::new(),
        stages: Vec::new(),
        outcome: UNRECORDED.into(),
        reason: None,
        stored: vec![PlaceTrace {
            topic: topic.to_owned(),
            offset,
            duplicate: false,
            dead_letter: None,
        }],
        deliveries: Vec::new(),
        settlements: Vec::new(),
        dead_letters: Vec::new(),
    }
}

/// The indexes of the messages of `publish` that `key` names, in order,
/// in one pass over each of its lists.
fn matching(publish: &Published, key: &TraceKey, trace: Option<TraceId>) -> Vec<usize> {
    let mut indexes: Vec<usize> = match key {
        TraceKey::At { topic, offset } => {
            let own = publish.topics.iter().position(|t| t == topic);
            let mut at: Vec<usize> = publish
                .messages
                .iter()
                .enumerate()
                .filter(|(_, (t, fate))| {
                    Some(*t as usize) == own
                        && matches!(fate, Fate::Stored(o) | Fate::Duplicate(o) if o == offset)
                })
                .map(|(i, _)| i)
                .collect();
            at.extend(
                publish
                    .places
                    .iter()
                    .filter(|(_, p)| p.topic == *topic && p.offset == *offset)
                    .map(|(i, _)| *i as usize),
            );
            at
        }
        TraceKey::Id(id) => publish
            .ids
            .iter()
            .filter(|(_, x)| x == id)
            .map(|(i, _)| *i as usize)
            .collect(),
        TraceKey::Trace(_) => publish
            .traces
            .iter()
            .filter(|(_, t)| Some(*t) == trace)
            .map(|(i, _)| *i as usize)
            .collect(),
    };
    indexes.sort_unstable();
    indexes.dedup();
    indexes.retain(|i| *i < publish.messages.len());
    indexes
}

fn message(publish: &Published, index: usize) -> MessageTrace {
    let at = index as u32;
    let (t, fate) = publish.messages[index];
    let topic = publish.topics[t as usize].clone();
    let stages = publish
        .steps
        .iter()
        .filter(|s| s.origin == at)
        .filter_map(|s| {
            let run = publish.runs.get(s.run as usize)?;
            Some(StageTrace {
                plugin: run.plugin.clone(),
                version: run.version.clone(),
                outcome: s.outcome.name().into(),
                took_us: run.took_us,
                error: run.error.clone(),
            })
        })
        .collect();
    let mut reason = None;
    let (outcome, stored) = match fate {
        Fate::Stored(offset) | Fate::Duplicate(offset) => {
            let place = PlaceTrace {
                topic: topic.clone(),
                offset,
                duplicate: matches!(fate, Fate::Duplicate(_)),
                dead_letter: None,
            };
            ("stored", vec![place])
        }
        Fate::Elsewhere => {
            let places: Vec<PlaceTrace> = publish
                .places
                .iter()
                .filter(|(i, _)| *i == at)
                .map(|(_, p)| PlaceTrace {
                    topic: p.topic.clone(),
                    offset: p.offset,
                    duplicate: p.duplicate,
                    dead_letter: p.dead_letter.clone(),
                })
                .collect();
            let outcome = if places.iter().all(|p| p.dead_letter.is_some()) {
                "dead-lettered"
            } else if places.iter().any(|p| p.topic != topic) {
                "routed"
            } else {
                "stored"
            };
            (outcome, places)
        }
        Fate::Rejected => {
            reason = publish
                .rejections
                .iter()
                .find(|(i, _)| *i == at)
                .map(|(_, r)| r.clone());
            ("rejected", Vec::new())
        }
        Fate::Dropped => ("dropped", Vec::new()),
    };
    MessageTrace {
        topic,
        id: publish
            .ids
            .iter()
            .find(|(i, _)| *i == at)
            .map(|(_, id)| id.clone()),
        trace_id: publish
            .traces
            .iter()
            .find(|(i, _)| *i == at)
            .map(|(_, t)| t.to_string()),
        received_ms: publish.at_ms,
        principal: publish.principal.to_string(),
        stages,
        outcome: outcome.into(),
        reason,
        stored,
        deliveries: Vec::new(),
        settlements: Vec::new(),
        dead_letters: Vec::new(),
    }
}

/// Adds what `event` says of the places of `found`.
fn attach(event: &Event, found: &mut [MessageTrace]) {
    let stored_at = |m: &MessageTrace, topic: &str, offset: u64| {
        m.stored
            .iter()
            .any(|p| p.topic == topic && p.offset == offset)
    };
    match event {
        Event::Published(_) => {}
        Event::Delivered(d) => {
            for m in found.iter_mut() {
                let places: Vec<u64> = m
                    .stored
                    .iter()
                    .filter(|p| p.topic == *d.topic)
                    .map(|p| p.offset)
                    .filter(|o| d.offsets.iter().any(|(a, b)| (*a..=*b).contains(o)))
                    .collect();
                for offset in places {
                    let (principal, subscription, group, member) = match &*d.to {
                        Receiver::Subscription { id, principal } => {
                            (principal.to_string(), Some(*id), None, None)
                        }
                        Receiver::Member {
                            group,
                            member,
                            principal,
                        } => (
                            principal.to_string(),
                            None,
                            Some(group.clone()),
                            Some(*member),
                        ),
                    };
                    m.deliveries.push(DeliveryTrace {
                        at_ms: d.at_ms,
                        topic: d.topic.to_string(),
                        offset,
                        principal,
                        subscription,
                        group,
                        member,
                        attempt: d.attempt,
                    });
                }
            }
        }
        Event::Settled(s) => {
            for m in found.iter_mut() {
                for (topic, offset, action) in &s.items {
                    if stored_at(m, topic, *offset) {
                        m.settlements.push(SettleTrace {
                            at_ms: s.at_ms,
                            group: s.group.clone(),
                            member: s.member,
                            topic: topic.clone(),
                            offset: *offset,
                            action: (*action).into(),
                        });
                    }
                }
            }
        }
        Event::DeadLettered(l) => {
            for m in found.iter_mut() {
                if stored_at(m, &l.topic, l.offset) {
                    m.dead_letters.push(DeadLetterTrace {
                        at_ms: l.at_ms,
                        group: l.group.clone(),
                        attempt: l.attempt,
                        reason: l.reason.clone(),
                        topic: l.dead_letter.0.clone(),
                        offset: l.dead_letter.1,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use super::*;
    use crate::config::RecordConfig;
    use crate::trace::record::{
        Delivered, GroupDeadLetter, Place, Settled, StageRun, Step, StepOutcome,
    };

    /// A routed message (0), a rejected one (1), each with an id.
    fn journal() -> Journal {
        let journal = Journal::new(&RecordConfig::default());
        let now = crate::store::now_ms();
        let run = |plugin: &str| StageRun {
            plugin: plugin.into(),
            version: "v1".into(),
            started: SystemTime::now(),
            took_us: 3,
            error: None,
        };
        let step = |origin, run, outcome| Step {
            origin,
            run,
            outcome,
        };
        journal.push(Event::Published(Published {
            at_ms: now,
            principal: "ann".into(),
            topics: vec!["in".into()],
            messages: vec![(0, Fate::Elsewhere), (0, Fate::Rejected)],
            ids: vec![(0, "a".into()), (1, "b".into())],
            traces: Vec::new(),
            runs: vec![run("check"), run("route")],
            steps: vec![
                step(0, 0, StepOutcome::Pass),
                step(1, 0, StepOutcome::Reject),
                step(0, 1, StepOutcome::Route),
            ],
            places: vec![(
                0,
                Place {
                    topic: "out".into(),
                    offset: 4,
                    duplicate: false,
                    dead_letter: None,
                },
            )],
            rejections: vec![(1, "bad".into())],
        }));
        journal.push(Event::Delivered(Delivered {
            at_ms: now + 1,
            topic: "out".into(),
            offsets: vec![(3, 5)],
            attempt: 1,
            to: Arc::new(Receiver::Member {
                group: "g".into(),
                member: 2,
                principal: "bob".into(),
            }),
        }));
        journal.push(Event::Settled(Settled {
            at_ms: now + 2,
            group: "g".into(),
            member: Some(2),
            items: vec![("out".into(), 4, "nack"), ("out".into(), 5, "ack")],
        }));
        journal.push(Event::DeadLettered(GroupDeadLetter {
            at_ms: now + 3,
            group: "g".into(),
            topic: "out".into(),
            offset: 4,
            attempt: 1,
            reason: "max".into(),
            dead_letter: ("dlq.out".into(), 0),
        }));
        journal
    }

    #[test]
    fn a_routed_message_is_found_by_its_place_with_what_followed() {
        let report = find(
            &journal(),
            &TraceKey::At {
                topic: "out".into(),
                offset: 4,
            },
            |_| true,
        );
        let [m] = &report.messages[..] else {
            panic!("{report:?}")
        };
        assert_eq!((m.topic.as_str(), m.outcome.as_str()), ("in", "routed"));
        let stages: Vec<(&str, &str)> = m
            .stages
            .iter()
            .map(|s| (s.plugin.as_str(), s.outcome.as_str()))
            .collect();
        assert_eq!(stages, [("check", "pass"), ("route", "route")]);
        assert_eq!(m.deliveries.len(), 1);
        assert_eq!(m.deliveries[0].member, Some(2));
        let actions: Vec<&str> = m.settlements.iter().map(|s| s.action.as_str()).collect();
        assert_eq!(actions, ["nack"], "only its own offset's settlement");
        assert_eq!(m.dead_letters[0].topic, "dlq.out");
        assert_eq!(report.record_messages, 2);
    }

    #[test]
    fn a_rejected_message_is_found_by_its_id_and_hidden_without_rights() {
        let journal = journal();
        let report = find(&journal, &TraceKey::Id("b".into()), |_| true);
        let m = &report.messages[0];
        assert_eq!(
            (m.outcome.as_str(), m.reason.as_deref()),
            ("rejected", Some("bad"))
        );
        assert_eq!(m.stages.len(), 1);
        let hidden = find(&journal, &TraceKey::Id("b".into()), |t| t != "in");
        assert!(hidden.messages.is_empty());
        // The routed one stays visible to a reader of where it went.
        let routed = find(&journal, &TraceKey::Id("a".into()), |t| t == "out");
        assert_eq!(routed.messages.len(), 1);
    }

    #[test]
    fn a_place_known_only_from_deliveries_is_shown_as_unrecorded() {
        let report = find(
            &journal(),
            &TraceKey::At {
                topic: "out".into(),
                offset: 5,
            },
            |_| true,
        );
        let m = &report.messages[0];
        assert_eq!(m.outcome, UNRECORDED);
        assert_eq!(m.settlements[0].action, "ack");
        let nothing = find(
            &journal(),
            &TraceKey::At {
                topic: "out".into(),
                offset: 9,
            },
            |_| true,
        );
        assert!(nothing.messages.is_empty());
    }
}
