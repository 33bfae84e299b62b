//! The checks of what the readers of a cluster fault run saw, for
//! [`check`](super::check): each subscription (each offset at most once,
//! in order, none skipped, each what the topic holds, each key in
//! publishing order, no failure) and the consumer group (each delivery
//! what the topic holds; by the end every message acked or dead-lettered
//! once, nothing pending, no member failed).

use std::collections::HashMap;

use super::observed::{check_key_order, GroupEnd, Log, Observed};
use super::record::{GroupEvent, History, SubscriptionLog, Verdict};
use super::violation::Violation;
use super::SettleAnswer;

/// One subscription's messages against the topic (`log`).
pub(super) fn check_subscription(
    subscription: &SubscriptionLog,
    log: &Log,
    out: &mut Vec<Violation>,
) {
    let name = &subscription.name;
    let gap = |expected, found| Violation::SubscriptionGap {
        subscription: name.clone(),
        topic: log.topic.to_owned(),
        expected,
        found,
    };
    // The highest offset received so far.
    let mut highest: Option<u64> = None;
    for message in &subscription.received {
        let offset = message.offset;
        match highest {
            None => {
                if let Some(from) = subscription.from.filter(|from| offset != *from) {
                    out.push(gap(from, offset));
                }
            }
            Some(h) if offset == h => out.push(Violation::SubscriptionRepeat {
                subscription: name.clone(),
                at: log.at(offset),
            }),
            Some(h) if offset < h => out.push(Violation::SubscriptionBackwards {
                subscription: name.clone(),
                after: h,
                at: log.at(offset),
            }),
            Some(h) if offset > h + 1 => out.push(gap(h + 1, offset)),
            Some(_) => {}
        }
        highest = highest.max(Some(offset));
        let stored = log.id_at(offset);
        if stored != Some(message.id.as_deref()) {
            out.push(Violation::SubscriptionDiffers {
                subscription: name.clone(),
                at: log.at(offset),
                received: message.id.clone(),
                stored: stored.flatten().map(str::to_owned),
            });
        }
    }
    if let Some(from) = subscription.from {
        let next = highest.map_or(from, |h| h + 1);
        if next < log.end {
            out.push(gap(next, log.end));
        }
    }
    check_key_order(
        &format!("subscription {name}"),
        &subscription.received,
        log,
        out,
    );
    if let Some(error) = &subscription.ended {
        out.push(Violation::SubscriptionEnded {
            subscription: name.clone(),
            error: error.clone(),
        });
    }
}

/// The group's deliveries and settlements, and its dead letters and
/// state at the end (`observed`, `end`), against the topic (`log`).
pub(super) fn check_group(
    history: &History,
    observed: &Observed,
    end: GroupEnd,
    log: &Log,
    out: &mut Vec<Violation>,
) {
    let mut deliveries: HashMap<u64, usize> = HashMap::new();
    let mut acked: HashMap<u64, bool> = HashMap::new();
    for event in &history.group {
        match event {
            GroupEvent::Delivered {
                offset,
                attempt,
                id,
                ..
            } => {
                *deliveries.entry(*offset).or_default() += 1;
                let stored = log.id_at(*offset);
                if stored != Some(id.as_deref()) {
                    out.push(Violation::GroupDeliveryDiffers {
                        at: log.at(*offset),
                        attempt: *attempt,
                        delivered: id.clone(),
                        stored: stored.flatten().map(str::to_owned),
                    });
                }
            }
            GroupEvent::Settled {
                offset,
                verdict: Verdict::Ack,
                answer: SettleAnswer::Confirmed | SettleAnswer::InDoubt,
                ..
            } => {
                acked.insert(*offset, true);
            }
            GroupEvent::Settled { .. } => {}
            GroupEvent::MemberEnded { member, error } => out.push(Violation::MemberEnded {
                member: *member,
                error: error.clone(),
            }),
        }
    }
    let mut letters: HashMap<u64, usize> = HashMap::new();
    for offset in &observed.dead_letters {
        *letters.entry(*offset).or_default() += 1;
    }
    for offset in 0..log.end {
        let copies = letters.get(&offset).copied().unwrap_or(0);
        if copies > 1 {
            out.push(Violation::DeadLetteredTwice {
                at: log.at(offset),
                copies,
            });
        }
        if copies == 0 && !acked.contains_key(&offset) {
            out.push(Violation::NeverSettled {
                at: log.at(offset),
                deliveries: deliveries.get(&offset).copied().unwrap_or(0),
            });
        }
    }
    if end.pending > 0 || end.lag > 0 {
        out.push(Violation::GroupNotDrained {
            pending: end.pending,
            lag: end.lag,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::seeded::{clean, seen, violations};
    use super::super::violation::At;
    use super::*;

    #[test]
    fn a_gap_in_a_subscription_or_its_stopping_short_is_flagged() {
        let (mut history, observed) = clean();
        history.subscriptions[0].received.remove(3);
        assert_eq!(
            violations(&history, &observed),
            vec![Violation::SubscriptionGap {
                subscription: "replay".into(),
                topic: "t".into(),
                expected: 3,
                found: 4,
            }]
        );
        // A replaying subscription that stopped short of the end.
        history.subscriptions[0].received = (0..4).map(|n| seen(n, n)).collect();
        assert_eq!(
            violations(&history, &observed),
            vec![Violation::SubscriptionGap {
                subscription: "replay".into(),
                topic: "t".into(),
                expected: 4,
                found: 6,
            }]
        );
    }

    #[test]
    fn a_subscription_that_repeats_or_goes_back_is_flagged() {
        let (mut history, observed) = clean();
        let received = &mut history.subscriptions[0].received;
        received.insert(3, seen(2, 2));
        received.push(seen(1, 1));
        let kinds: Vec<&str> = violations(&history, &observed)
            .iter()
            .map(Violation::kind)
            .collect();
        assert_eq!(
            kinds,
            [
                "subscription repeated an offset",
                "subscription went backwards"
            ]
        );
    }

    #[test]
    fn a_group_message_neither_acked_nor_dead_lettered_is_flagged() {
        let (mut history, mut observed) = clean();
        // The ack of offset 1 was refused, and nothing acked it later.
        for event in &mut history.group {
            if let GroupEvent::Settled {
                offset: 1, answer, ..
            } = event
            {
                *answer = SettleAnswer::Refused;
            }
        }
        observed.dead_letters.push(5);
        observed.group = Some(GroupEnd { pending: 1, lag: 1 });
        assert_eq!(
            violations(&history, &observed),
            vec![
                Violation::NeverSettled {
                    at: At::new("t", 1),
                    deliveries: 1,
                },
                Violation::DeadLetteredTwice {
                    at: At::new("t", 5),
                    copies: 2,
                },
                Violation::GroupNotDrained { pending: 1, lag: 1 },
            ]
        );
    }
}
