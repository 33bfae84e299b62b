//! [`Recorder`]: what the clients of a cluster fault run did and saw, as
//! they saw it, kept as a [`History`] for [`check`](super::check) to judge.
//!
//! Every operation is recorded with the time it happened, on one clock
//! (the recorder's, all clients being in one process): each publish when
//! it is invoked and when it is answered (acked at an offset, or failed;
//! never answered is unknown), each message a subscription hands out, each
//! group delivery and the answer to its settlement, and the faults, as
//! marks. Messages are known by their ids; nothing here knows the client
//! library, so the records can be made by hand in tests of the checker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::SettleAnswer;

/// How a publish ended, as its client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishOutcome {
    /// No answer before the end of the run: it may or may not be stored.
    Unknown,
    /// Acked: stored at `offset`. `duplicate`: the broker found an earlier
    /// copy by its id (a retry of a publish that was stored).
    Acked {
        /// Where it is stored.
        offset: u64,
        /// Stored earlier, by another attempt.
        duplicate: bool,
    },
    /// Answered with an error. It may still be stored: an error after the
    /// write (a timeout waiting for the replicas) does not undo it.
    Failed(String),
}

/// One publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Its message id, unique in the history.
    pub id: String,
    /// Its key, if it has one.
    pub key: Option<String>,
    /// When it was invoked.
    pub invoked: Duration,
    /// When it was answered, if it was.
    pub answered: Option<Duration>,
    /// How it ended.
    pub outcome: PublishOutcome,
}

/// A message as a subscription handed it out, or as the topic holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Its offset.
    pub offset: u64,
    /// Its message id.
    pub id: Option<String>,
    /// Its key.
    pub key: Option<String>,
}

/// What one subscription handed out, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionLog {
    /// Its name in reports.
    pub name: String,
    /// `Some(offset)`: it replays from `offset` and was read until it had
    /// the whole topic, so it must hold every offset from there to the end.
    /// `None`: a live subscription, checked between its first and last.
    pub from: Option<u64>,
    /// The messages, in the order they were handed out.
    pub received: Vec<Seen>,
    /// Why it stopped before the end of the run, if it did.
    pub ended: Option<String>,
}

/// How a group member settled a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Done.
    Ack,
    /// Failed: deliver it again.
    Nack,
    /// Poison: dead-letter it.
    Reject,
}

/// A group member's delivery, or its settlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEvent {
    /// Member `member` received attempt `attempt` of the message at
    /// `offset`.
    Delivered {
        /// The member.
        member: usize,
        /// The message's offset.
        offset: u64,
        /// Which delivery of it this is, as the broker numbered it.
        attempt: u32,
        /// The message id delivered.
        id: Option<String>,
        /// When.
        at: Duration,
    },
    /// Member `member` settled that delivery and the broker answered.
    Settled {
        /// The member.
        member: usize,
        /// The message's offset.
        offset: u64,
        /// The delivery it settles.
        attempt: u32,
        /// How.
        verdict: Verdict,
        /// What the broker answered.
        answer: SettleAnswer,
        /// When the answer came.
        at: Duration,
    },
    /// Member `member`'s consumer failed or ended.
    MemberEnded {
        /// The member.
        member: usize,
        /// How.
        error: String,
    },
}

/// A fault, or its end, as it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// When.
    pub at: Duration,
    /// What, e.g. `SIGKILL n2 (stream leader)`.
    pub what: String,
}

/// Everything recorded in a run. One publisher: its publishes are in the
/// order it invoked them, which is the order each key's messages must keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// The publishes, in the order they were invoked.
    pub publishes: Vec<Publish>,
    /// The subscriptions.
    pub subscriptions: Vec<SubscriptionLog>,
    /// The group's deliveries and settlements, in the order recorded.
    pub group: Vec<GroupEvent>,
    /// The faults.
    pub marks: Vec<Mark>,
}

/// Records a [`History`] from many tasks at once.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    history: Mutex<History>,
    /// Publishes acked, read often while the load runs.
    acked: AtomicU64,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A task that panicked while recording leaves the records as they are.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Recorder {
    /// An empty history; its clock starts now.
    pub fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            history: Mutex::new(History::default()),
            acked: AtomicU64::new(0),
        }
    }

    /// The time on the history's clock.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Records a publish about to be sent; its index, for
    /// [`answered`](Self::answered).
    pub fn invoked(&self, id: &str, key: Option<&str>) -> usize {
        let publish = Publish {
            id: id.to_owned(),
            key: key.map(str::to_owned),
            invoked: self.now(),
            answered: None,
            outcome: PublishOutcome::Unknown,
        };
        let mut history = lock(&self.history);
        history.publishes.push(publish);
        history.publishes.len() - 1
    }

    /// Records the answer to publish `index`.
    pub fn answered(&self, index: usize, outcome: PublishOutcome) {
        if matches!(outcome, PublishOutcome::Acked { .. }) {
            self.acked.fetch_add(1, Ordering::Relaxed);
        }
        let at = self.now();
        let mut history = lock(&self.history);
        let publish = &mut history.publishes[index];
        publish.answered = Some(at);
        publish.outcome = outcome;
    }

    /// Publishes acked so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Records a new subscription (see [`SubscriptionLog::from`]); its
    /// index, for [`received`](Self::received).
    pub fn subscribed(&self, name: &str, from: Option<u64>) -> usize {
        let mut history = lock(&self.history);
        history.subscriptions.push(SubscriptionLog {
            name: name.to_owned(),
            from,
            received: Vec::new(),
            ended: None,
        });
        history.subscriptions.len() - 1
    }

    /// Records a message subscription `index` handed out.
    pub fn received(&self, index: usize, message: Seen) {
        lock(&self.history).subscriptions[index]
            .received
            .push(message);
    }

    /// The offset after the highest one subscription `index` received.
    pub fn received_up_to(&self, index: usize) -> u64 {
        let history = lock(&self.history);
        let received = &history.subscriptions[index].received;
        received.iter().map(|m| m.offset + 1).max().unwrap_or(0)
    }

    /// Records that subscription `index` ended, and how.
    pub fn subscription_ended(&self, index: usize, error: String) {
        lock(&self.history).subscriptions[index].ended = Some(error);
    }

    /// Records a group delivery.
    pub fn delivered(&self, member: usize, offset: u64, attempt: u32, id: Option<&str>) {
        let at = self.now();
        lock(&self.history).group.push(GroupEvent::Delivered {
            member,
            offset,
            attempt,
            id: id.map(str::to_owned),
            at,
        });
    }

    /// Records a settlement and the broker's answer to it.
    pub fn settled(
        &self,
        member: usize,
        (offset, attempt): (u64, u32),
        verdict: Verdict,
        answer: SettleAnswer,
    ) {
        let at = self.now();
        lock(&self.history).group.push(GroupEvent::Settled {
            member,
            offset,
            attempt,
            verdict,
            answer,
            at,
        });
    }

    /// Records that a member's consumer ended.
    pub fn member_ended(&self, member: usize, error: String) {
        lock(&self.history)
            .group
            .push(GroupEvent::MemberEnded { member, error });
    }

    /// Records a fault (or its end) made now.
    pub fn mark(&self, what: impl Into<String>) {
        let at = self.now();
        lock(&self.history).marks.push(Mark {
            at,
            what: what.into(),
        });
    }

    /// The history so far.
    pub fn history(&self) -> History {
        lock(&self.history).clone()
    }
}
