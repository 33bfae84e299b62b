//! The event record read back: what happened to the messages a
//! [`TraceKey`] names, as `sluice trace` shows it.

use sluice_proto::{
    DeadLetterTrace, DeliveryTrace, MessageTrace, PlaceTrace, SettleTrace, StageTrace, TraceKey,
    TraceReport,
};

use super::record::{Event, Fate, Journal, Published, Receiver};

/// Set on a message found only through its deliveries: its publish is no
/// longer (or never was) in this broker's record.
pub const UNRECORDED: &str = "unrecorded";

/// What the record says of the messages `key` names, keeping only those
/// published to or stored in topics `may_read` allows. The record is
/// scanned under its lock (bounded by its size): publishes wait for the
/// scan, which takes milliseconds for a full record.
pub fn find(journal: &Journal, key: &TraceKey, may_read: impl Fn(&str) -> bool) -> TraceReport {
    let trace_hex = match key {
        TraceKey::Trace(hex) => Some(hex.to_ascii_lowercase()),
        _ => None,
    };
    let mut found: Vec<MessageTrace> = Vec::new();
    journal.scan(|event| {
        if let Event::Published(publish) = event {
            for index in 0..publish.messages.len() {
                if matches(publish, index, key, trace_hex.as_deref()) {
                    found.push(message(publish, index));
                }
            }
        }
    });
    if found.is_empty() {
        if let TraceKey::At { topic, offset } = key {
            found.push(MessageTrace {
                topic: topic.clone(),
                id: None,
                trace_id: None,
                received_ms: 0,
                principal: String::new(),
                stages: Vec::new(),
                outcome: UNRECORDED.into(),
                reason: None,
                stored: vec![PlaceTrace {
                    topic: topic.clone(),
                    offset: *offset,
                    duplicate: false,
                    dead_letter: None,
                }],
                deliveries: Vec::new(),
                settlements: Vec::new(),
                dead_letters: Vec::new(),
            });
        }
    }
    // A message is shown to whoever may read where it was published or
    // any place it was stored.
    found.retain(|m| may_read(&m.topic) || m.stored.iter().any(|p| may_read(&p.topic)));
    if !found.is_empty() {
        journal.scan(|event| attach(event, &mut found));
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
    }
}

fn matches(publish: &Published, index: usize, key: &TraceKey, trace_hex: Option<&str>) -> bool {
    let at = index as u32;
    match key {
        TraceKey::At { topic, offset } => {
            let (t, fate) = publish.messages[index];
            let own = &publish.topics[t as usize] == topic;
            match fate {
                Fate::Stored(o) | Fate::Duplicate(o) => own && o == *offset,
                Fate::Elsewhere => publish
                    .places
                    .iter()
                    .any(|(i, p)| *i == at && p.topic == *topic && p.offset == *offset),
                Fate::Rejected | Fate::Dropped => false,
            }
        }
        TraceKey::Id(id) => publish.ids.iter().any(|(i, x)| *i == at && x == id),
        TraceKey::Trace(_) => publish
            .traces
            .iter()
            .any(|(i, t)| *i == at && Some(t.to_string().as_str()) == trace_hex),
    }
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
                for place in m.stored.clone() {
                    let delivered = place.topic == *d.topic
                        && d.offsets
                            .iter()
                            .any(|(a, b)| (*a..=*b).contains(&place.offset));
                    if !delivered {
                        continue;
                    }
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
                        topic: place.topic.clone(),
                        offset: place.offset,
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
            at_ms: 10,
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
            at_ms: 11,
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
            at_ms: 12,
            group: "g".into(),
            member: Some(2),
            items: vec![("out".into(), 4, "nack"), ("out".into(), 5, "ack")],
        }));
        journal.push(Event::DeadLettered(GroupDeadLetter {
            at_ms: 13,
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
