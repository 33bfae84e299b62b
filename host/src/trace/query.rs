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
/// published to topics `may_read` allows.
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
    found.retain(|m| may_read(&m.topic));
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
