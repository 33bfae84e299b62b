//! A clean history and its end, for the checker's unit tests to seed
//! faults into: six publishes acked in order, the topic holding them, a
//! replaying subscription that received them all, and a group that acked
//! all but the last, which it rejected into the dead-letter topic.

use std::time::Duration;

use super::check::check;
use super::observed::{GroupEnd, Observed};
use super::record::{
    GroupEvent, History, Mark, Publish, PublishOutcome, Seen, SubscriptionLog, Verdict,
};
use super::violation::Violation;
use super::SettleAnswer;

/// The id of the `n`-th publish.
pub fn id(n: u64) -> String {
    format!("p-{n}")
}

/// The `n`-th publish (keys `k0` and `k1` in turn) found at `offset`.
pub fn seen(offset: u64, n: u64) -> Seen {
    Seen {
        offset,
        id: Some(id(n)),
        key: Some(format!("k{}", n % 2)),
    }
}

/// `s` seconds on the history's clock.
pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The clean history and what the cluster holds at its end.
pub fn clean() -> (History, Observed) {
    let publishes = (0..6)
        .map(|n| Publish {
            id: id(n),
            key: Some(format!("k{}", n % 2)),
            invoked: secs(n),
            answered: Some(secs(n + 1)),
            outcome: PublishOutcome::Acked {
                offset: n,
                duplicate: false,
            },
        })
        .collect();
    let stored: Vec<Seen> = (0..6).map(|n| seen(n, n)).collect();
    let mut group = Vec::new();
    for n in 0..6 {
        group.push(GroupEvent::Delivered {
            member: (n % 2) as usize,
            offset: n,
            attempt: 1,
            id: Some(id(n)),
            at: secs(n + 1),
        });
        group.push(GroupEvent::Settled {
            member: (n % 2) as usize,
            offset: n,
            attempt: 1,
            verdict: if n == 5 {
                Verdict::Reject
            } else {
                Verdict::Ack
            },
            answer: SettleAnswer::Confirmed,
            at: secs(n + 2),
        });
    }
    let history = History {
        publishes,
        subscriptions: vec![SubscriptionLog {
            name: "replay".into(),
            from: Some(0),
            received: stored.clone(),
            ended: None,
        }],
        group,
        marks: vec![Mark {
            at: secs(2),
            what: "fault".into(),
        }],
    };
    let observed = Observed {
        topic: "t".into(),
        stored,
        dead_letters: vec![5],
        group: Some(GroupEnd { pending: 0, lag: 0 }),
    };
    (history, observed)
}

/// The publishes and the topic alone: no subscription, no group.
pub fn publishes_only() -> (History, Observed) {
    let (mut history, mut observed) = clean();
    history.subscriptions.clear();
    history.group.clear();
    observed.group = None;
    (history, observed)
}

/// What the checker finds.
pub fn violations(history: &History, observed: &Observed) -> Vec<Violation> {
    check(history, observed).violations
}
