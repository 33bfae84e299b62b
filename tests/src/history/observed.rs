//! What the cluster holds at the end of a fault run ([`Observed`]), that
//! topic indexed for the checks ([`Log`]), and the rule every reader of
//! it shares: each key in publishing order. A leaf of the checker: the
//! topic's checks (`check.rs`), the readers' (`readers.rs`) and the
//! summary (`summary.rs`) all build on it.

use std::collections::{HashMap, HashSet};

use super::record::{History, Seen};
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

/// The topic as read at the end, indexed.
pub(super) struct Log<'a> {
    pub topic: &'a str,
    /// One past the highest offset read.
    pub end: u64,
    pub by_offset: HashMap<u64, &'a Seen>,
    pub offsets_of: HashMap<&'a str, Vec<u64>>,
    /// Each published id's place in the publishing order.
    pub order: HashMap<&'a str, usize>,
}

impl<'a> Log<'a> {
    pub fn new(history: &'a History, observed: &'a Observed) -> Log<'a> {
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
