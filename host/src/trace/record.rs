//! [`Journal`]: the bounded per-message event record behind `sluice trace`:
//! what happened to recent messages, kept in memory.
//!
//! Events are kept per publish and per delivery chunk, not per message, so
//! the record costs the publish path one short lock and a few small
//! vectors per publish: a message's id and trace id are kept only if it
//! has them, its stage outcomes only if a pipeline ran. The oldest events
//! are forgotten first once the record covers more than
//! `[telemetry.record] messages` published messages, holds events older
//! than `window`, or its estimated size passes `max_bytes`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use opentelemetry::trace::TraceId;

use crate::config::RecordConfig;
use crate::sync::lock;

/// What a stage did to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// Kept it.
    Pass,
    /// Dropped it.
    Drop,
    /// Replaced it with new messages.
    Replace,
    /// Routed it to other topics.
    Route,
    /// Rejected it.
    Reject,
    /// Sent it to the dead-letter topic.
    DeadLetter,
    /// The stage failed on the batch; the pipeline's `on_error` applied.
    Failed,
}

impl StepOutcome {
    /// The outcome's name, as `sluice trace` prints it.
    pub fn name(self) -> &'static str {
        match self {
            StepOutcome::Pass => "pass",
            StepOutcome::Drop => "drop",
            StepOutcome::Replace => "replace",
            StepOutcome::Route => "route",
            StepOutcome::Reject => "reject",
            StepOutcome::DeadLetter => "dead-letter",
            StepOutcome::Failed => "failed",
        }
    }
}

/// One stage's call on one batch of a publish.
#[derive(Debug, Clone)]
pub struct StageRun {
    /// The plugin.
    pub plugin: String,
    /// Its version (content hash).
    pub version: String,
    /// When the call started.
    pub started: SystemTime,
    /// How long the call took.
    pub took_us: u64,
    /// Why the stage failed on the whole batch, if it did.
    pub error: Option<String>,
}

/// One stage's outcome for one message.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// The message's index (in the publish; in a pipeline's report, in
    /// the records the pipeline ran on).
    pub origin: u32,
    /// The stage run (index into [`Published::runs`]).
    pub run: u32,
    /// What the stage did.
    pub outcome: StepOutcome,
}

/// What a pipeline's run reports, for the record and the spans.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    /// Each stage's call, in order.
    pub runs: Vec<StageRun>,
    /// Each message's outcome at each stage it reached.
    pub steps: Vec<Step>,
}

/// Where a message ended up, in the common cases without a vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Stored in the topic it was published to, at this offset.
    Stored(u64),
    /// A duplicate (by message id) of the message at this offset.
    Duplicate(u64),
    /// Stored elsewhere, several times or as a dead letter: see
    /// [`Published::places`].
    Elsewhere,
    /// Rejected: see [`Published::rejections`].
    Rejected,
    /// Dropped by a stage.
    Dropped,
}

/// One place a message was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The topic.
    pub topic: String,
    /// The offset.
    pub offset: u64,
    /// A duplicate of the message already there.
    pub duplicate: bool,
    /// Set if it is a dead letter: the reason.
    pub dead_letter: Option<String>,
}

/// One publish request.
#[derive(Debug, Clone)]
pub struct Published {
    /// When it was received (ms since the Unix epoch).
    pub at_ms: i64,
    /// Who published.
    pub principal: Arc<str>,
    /// The topics published to.
    pub topics: Vec<String>,
    /// Per message: the index of its topic in `topics`, and its fate.
    pub messages: Vec<(u32, Fate)>,
    /// Message ids, of the messages that have one.
    pub ids: Vec<(u32, String)>,
    /// Trace ids, of the messages with a valid `traceparent`.
    pub traces: Vec<(u32, TraceId)>,
    /// Stage calls, in order.
    pub runs: Vec<StageRun>,
    /// Stage outcomes per message.
    pub steps: Vec<Step>,
    /// Places of messages whose fate is [`Fate::Elsewhere`].
    pub places: Vec<(u32, Place)>,
    /// Reasons of messages whose fate is [`Fate::Rejected`].
    pub rejections: Vec<(u32, String)>,
}

impl Published {
    /// A publish of `total` messages received at `at_ms` from `principal`,
    /// each dropped until its fate is known.
    pub fn new(at_ms: i64, principal: Arc<str>, total: usize) -> Published {
        Published {
            at_ms,
            principal,
            topics: Vec::new(),
            messages: vec![(0, Fate::Dropped); total],
            ids: Vec::new(),
            traces: Vec::new(),
            runs: Vec::new(),
            steps: Vec::new(),
            places: Vec::new(),
            rejections: Vec::new(),
        }
    }
}

/// Who received a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receiver {
    /// A subscription of a connection.
    Subscription {
        /// Its id on the connection.
        id: u64,
        /// Who subscribed.
        principal: Arc<str>,
    },
    /// A member of a consumer group.
    Member {
        /// The group.
        group: String,
        /// The member's id in the group.
        member: u64,
        /// Who joined.
        principal: Arc<str>,
    },
}

/// Messages of one topic written to one receiver.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// When (ms since the Unix epoch).
    pub at_ms: i64,
    /// The topic.
    pub topic: Arc<str>,
    /// The offsets, as inclusive ranges.
    pub offsets: Vec<(u64, u64)>,
    /// The delivery attempt (groups; 0 for subscriptions).
    pub attempt: u32,
    /// Who got them.
    pub to: Arc<Receiver>,
}

/// One settlement of messages of a consumer group.
#[derive(Debug, Clone)]
pub struct Settled {
    /// When (ms since the Unix epoch).
    pub at_ms: i64,
    /// The group.
    pub group: String,
    /// The member that settled, if one did.
    pub member: Option<u64>,
    /// Topic, offset and action (`ack`, `nack`, `dead-letter`, ...).
    pub items: Vec<(String, u64, &'static str)>,
}

/// A message a consumer group gave up on and stored as a dead letter.
#[derive(Debug, Clone)]
pub struct GroupDeadLetter {
    /// When (ms since the Unix epoch).
    pub at_ms: i64,
    /// The group.
    pub group: String,
    /// The message's topic.
    pub topic: String,
    /// The message's offset.
    pub offset: u64,
    /// Its last delivery attempt.
    pub attempt: u32,
    /// Why.
    pub reason: String,
    /// Where the dead letter is.
    pub dead_letter: (String, u64),
}

/// One entry of the record.
#[derive(Debug, Clone)]
pub enum Event {
    /// A publish.
    Published(Published),
    /// A delivery.
    Delivered(Delivered),
    /// Acks, nacks and other settlements.
    Settled(Settled),
    /// A dead letter stored by a consumer group.
    DeadLettered(GroupDeadLetter),
}

impl Event {
    fn at_ms(&self) -> i64 {
        match self {
            Event::Published(e) => e.at_ms,
            Event::Delivered(e) => e.at_ms,
            Event::Settled(e) => e.at_ms,
            Event::DeadLettered(e) => e.at_ms,
        }
    }

    /// Published messages it covers (what `messages` counts).
    fn messages(&self) -> usize {
        match self {
            Event::Published(e) => e.messages.len(),
            _ => 0,
        }
    }

    /// Its size in memory, estimated from its parts.
    fn bytes(&self) -> usize {
        let base = std::mem::size_of::<Event>() + 16;
        base + match self {
            Event::Published(e) => {
                e.topics.iter().map(|t| t.len() + 24).sum::<usize>()
                    + e.messages.len() * 24
                    + e.ids.iter().map(|(_, id)| id.len() + 32).sum::<usize>()
                    + e.traces.len() * 24
                    + e.runs
                        .iter()
                        .map(|r| r.plugin.len() + r.version.len() + 96)
                        .sum::<usize>()
                    + e.steps.len() * std::mem::size_of::<Step>()
                    + e.places
                        .iter()
                        .map(|(_, p)| p.topic.len() + 80)
                        .sum::<usize>()
                    + e.rejections
                        .iter()
                        .map(|(_, r)| r.len() + 32)
                        .sum::<usize>()
            }
            Event::Delivered(e) => e.offsets.len() * 16,
            Event::Settled(e) => {
                e.group.len() + e.items.iter().map(|i| i.0.len() + 48).sum::<usize>()
            }
            Event::DeadLettered(e) => {
                e.group.len() + e.topic.len() + e.reason.len() + e.dead_letter.0.len()
            }
        }
    }
}

/// How much the record holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordSize {
    /// Events kept.
    pub events: usize,
    /// Published messages they cover.
    pub messages: usize,
    /// Their estimated size in bytes.
    pub bytes: usize,
    /// When the oldest happened (ms since the Unix epoch), if any.
    pub oldest_ms: Option<i64>,
}

#[derive(Debug, Default)]
struct Ring {
    events: VecDeque<(Event, usize)>,
    messages: usize,
    bytes: usize,
}

/// The record: `None` inside when `[telemetry.record] enabled = false`.
#[derive(Debug)]
pub struct Journal {
    config: RecordConfig,
    ring: Option<Mutex<Ring>>,
}

impl Journal {
    /// A record as `config` says.
    pub fn new(config: &RecordConfig) -> Journal {
        Journal {
            config: config.clone(),
            ring: config.enabled.then(|| Mutex::new(Ring::default())),
        }
    }

    /// A record that keeps nothing.
    pub fn off() -> Journal {
        Journal {
            config: RecordConfig::default(),
            ring: None,
        }
    }

    /// True if events are kept.
    pub fn is_on(&self) -> bool {
        self.ring.is_some()
    }

    /// Keeps `event`, forgetting the oldest past the bounds.
    pub fn push(&self, event: Event) {
        let Some(ring) = &self.ring else {
            return;
        };
        let size = event.bytes();
        let at_ms = event.at_ms();
        let mut ring = lock(ring);
        ring.messages += event.messages();
        ring.bytes += size;
        ring.events.push_back((event, size));
        self.forget_old(&mut ring, at_ms);
    }

    /// Forgets the oldest events past the bounds, `now_ms` being now (an
    /// event's time, on the publish path, saves reading the clock). The
    /// newest event stays, whatever its size.
    fn forget_old(&self, ring: &mut Ring, now_ms: i64) {
        let cutoff = now_ms - self.config.window.as_millis() as i64;
        while let Some((oldest, size)) = ring.events.front() {
            let over = ring.messages > self.config.messages
                || ring.bytes > self.config.max_bytes
                || oldest.at_ms() < cutoff;
            if !over || ring.events.len() == 1 && oldest.at_ms() >= cutoff {
                break;
            }
            let (messages, size) = (oldest.messages(), *size);
            ring.events.pop_front();
            ring.messages -= messages;
            ring.bytes -= size;
        }
    }

    /// Calls `f` with every event kept, oldest first, under the lock
    /// (events past the window are forgotten first).
    pub fn scan(&self, mut f: impl FnMut(&Event)) {
        if let Some(ring) = &self.ring {
            let mut ring = lock(ring);
            self.forget_old(&mut ring, crate::store::now_ms());
            for (event, _) in &ring.events {
                f(event);
            }
        }
    }

    /// How much the record holds.
    pub fn size(&self) -> RecordSize {
        let Some(ring) = &self.ring else {
            return RecordSize::default();
        };
        let mut ring = lock(ring);
        self.forget_old(&mut ring, crate::store::now_ms());
        RecordSize {
            events: ring.events.len(),
            messages: ring.messages,
            bytes: ring.bytes,
            oldest_ms: ring.events.front().map(|(e, _)| e.at_ms()),
        }
    }
}

/// Records that consumer `group` stored a dead letter for the message at
/// `place` after `attempt` deliveries, at `dead_letter` (topic, offset).
pub fn dead_lettered(
    journal: &Journal,
    group: &str,
    place: (&str, u64),
    attempt: u32,
    reason: &str,
    dead_letter: (&str, u64),
) {
    if journal.is_on() {
        journal.push(Event::DeadLettered(GroupDeadLetter {
            at_ms: crate::store::now_ms(),
            group: group.to_owned(),
            topic: place.0.to_owned(),
            offset: place.1,
            attempt,
            reason: reason.to_owned(),
            dead_letter: (dead_letter.0.to_owned(), dead_letter.1),
        }));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn published(at_ms: i64, messages: usize) -> Event {
        let mut publish = Published::new(at_ms, "p".into(), messages);
        publish.topics.push("t".into());
        for (offset, message) in publish.messages.iter_mut().enumerate() {
            message.1 = Fate::Stored(offset as u64);
        }
        Event::Published(publish)
    }

    #[test]
    fn the_record_forgets_the_oldest_past_each_bound() {
        let config = RecordConfig {
            enabled: true,
            messages: 10,
            window: Duration::from_secs(60),
            max_bytes: 1 << 20,
        };
        let now = crate::store::now_ms();
        let journal = Journal::new(&config);
        for i in 0..5 {
            journal.push(published(now - 5 + i, 4));
        }
        let size = journal.size();
        assert!(size.messages <= 10, "{size:?}");
        assert_eq!(size.oldest_ms, Some(now - 2));

        // Past the window: everything older goes, also without a new event.
        let old = Journal::new(&config);
        old.push(published(now - 61_000, 1));
        assert_eq!(old.size().events, 0, "an idle record forgets too");
        journal.push(published(now + 61_000, 1));
        assert_eq!(journal.size().events, 1);

        // Past the bytes: the oldest goes even if few messages.
        let small = Journal::new(&RecordConfig {
            max_bytes: 2_000,
            messages: 1_000_000,
            ..config
        });
        for i in 0..100 {
            small.push(published(now + i, 1));
        }
        let size = small.size();
        assert!(size.bytes <= 2_000 && size.events < 100, "{size:?}");
    }

    #[test]
    fn a_disabled_record_keeps_nothing() {
        let journal = Journal::new(&RecordConfig {
            enabled: false,
            ..RecordConfig::default()
        });
        journal.push(published(0, 3));
        assert_eq!(journal.size(), RecordSize::default());
    }
}
