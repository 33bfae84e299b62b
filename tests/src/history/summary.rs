//! [`Summary`]: the counts and times of a cluster fault run, for the one
//! line each scenario prints: how many operations, how many publishes were
//! acked, failed or left unknown, how often the group delivered a message
//! again, how many dead letters, and how long the publisher went without
//! an ack (the time the cluster took to recover, as a client saw it).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use super::observed::Observed;
use super::record::Verdict;
use super::record::{GroupEvent, History, PublishOutcome};
use super::SettleAnswer;

/// Distinct publish errors a summary names.
const FAILURES_SHOWN: usize = 3;

/// Counts and times of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Publishes invoked.
    pub publishes: u64,
    /// Of them acked.
    pub acked: u64,
    /// Of the acked, those the broker found stored already (retries).
    pub acked_duplicates: u64,
    /// Answered with an error.
    pub failed: u64,
    /// Never answered.
    pub unknown: u64,
    /// The most common errors of the failed publishes, with their counts
    /// (the first three).
    pub failures: Vec<(String, u64)>,
    /// Messages in the topic at the end.
    pub stored: u64,
    /// Messages the subscriptions handed out.
    pub received: u64,
    /// Group deliveries.
    pub group_deliveries: u64,
    /// Of them, of a message delivered before.
    pub redeliveries: u64,
    /// Deliveries of a message whose ack had been confirmed before (an
    /// at-least-once group may do this when an ack is lost with a leader;
    /// counted, not a violation).
    pub delivered_after_ack: u64,
    /// The first of them, described, for a closer look.
    pub first_delivered_after_ack: Option<String>,
    /// Settlements answered.
    pub settles: u64,
    /// Of them refused as stale (the delivery had moved on).
    pub refused_settles: u64,
    /// Of them in doubt: no answer, the broker may have applied them.
    pub settles_in_doubt: u64,
    /// Dead letters at the end.
    pub dead_letters: u64,
    /// The longest time between two publish acks.
    pub longest_stall: Duration,
    /// After each mark, how long until a publish invoked after it was
    /// acked (`None`: none was).
    pub recoveries: Vec<(String, Option<Duration>)>,
}

impl Summary {
    /// The summary of `history` and what was `observed` at its end.
    pub fn of(history: &History, observed: &Observed) -> Summary {
        let mut summary = Summary {
            publishes: history.publishes.len() as u64,
            stored: observed.stored.len() as u64,
            dead_letters: observed.dead_letters.len() as u64,
            received: (history.subscriptions.iter())
                .map(|s| s.received.len() as u64)
                .sum(),
            ..Summary::default()
        };
        let mut acks = Vec::new();
        let mut failures: Vec<(String, u64)> = Vec::new();
        for publish in &history.publishes {
            match &publish.outcome {
                PublishOutcome::Acked { duplicate, .. } => {
                    summary.acked += 1;
                    summary.acked_duplicates += u64::from(*duplicate);
                    acks.extend(publish.answered);
                }
                PublishOutcome::Failed(error) => {
                    summary.failed += 1;
                    match failures.iter_mut().find(|(e, _)| e == error) {
                        Some((_, n)) => *n += 1,
                        None => failures.push((error.clone(), 1)),
                    }
                }
                PublishOutcome::Unknown => summary.unknown += 1,
            }
        }
        failures.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        failures.truncate(FAILURES_SHOWN);
        summary.failures = failures;
        acks.sort_unstable();
        summary.longest_stall = (acks.windows(2))
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        summary.recoveries = (history.marks.iter())
            .map(|mark| {
                let first_ack = (history.publishes.iter())
                    .filter(|p| p.invoked >= mark.at)
                    .filter(|p| matches!(p.outcome, PublishOutcome::Acked { .. }))
                    .filter_map(|p| p.answered)
                    .min();
                (mark.what.clone(), first_ack.map(|at| at - mark.at))
            })
            .collect();
        summary.count_group(history);
        summary
    }

    fn count_group(&mut self, history: &History) {
        let mut delivered = HashSet::new();
        // Per offset: the attempt whose ack was confirmed, by whom, when.
        let mut acked: HashMap<u64, (u32, usize, Duration)> = HashMap::new();
        for event in &history.group {
            match event {
                GroupEvent::Delivered {
                    offset,
                    attempt,
                    member,
                    at,
                    ..
                } => {
                    self.group_deliveries += 1;
                    if !delivered.insert(*offset) {
                        self.redeliveries += 1;
                    }
                    if let Some((acked_attempt, by, when)) = acked.get(offset) {
                        self.delivered_after_ack += 1;
                        self.first_delivered_after_ack.get_or_insert_with(|| {
                            format!(
                                "offset {offset}: attempt {acked_attempt}'s ack by member {by} confirmed at {}, attempt {attempt} delivered to member {member} at {}",
                                seconds(*when),
                                seconds(*at)
                            )
                        });
                    }
                }
                GroupEvent::Settled {
                    member,
                    offset,
                    attempt,
                    answer,
                    verdict,
                    at,
                } => {
                    self.settles += 1;
                    match answer {
                        SettleAnswer::Confirmed if *verdict == Verdict::Ack => {
                            acked.insert(*offset, (*attempt, *member, *at));
                        }
                        SettleAnswer::Confirmed => {}
                        SettleAnswer::Refused => self.refused_settles += 1,
                        SettleAnswer::InDoubt => self.settles_in_doubt += 1,
                    }
                }
                GroupEvent::MemberEnded { .. } => {}
            }
        }
    }

    /// Operations made: publishes, subscription messages, group
    /// deliveries and settlements.
    pub fn operations(&self) -> u64 {
        self.publishes + self.received + self.group_deliveries + self.settles
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} operations: {} publishes ({} acked, {} of them retries found stored, {} failed, {} unknown), {} stored, {} received by subscriptions, {} group deliveries ({} redeliveries, {} after a confirmed ack), {} settlements ({} refused as stale, {} in doubt), {} dead letters; longest ack stall {}",
            self.operations(),
            self.publishes,
            self.acked,
            self.acked_duplicates,
            self.failed,
            self.unknown,
            self.stored,
            self.received,
            self.group_deliveries,
            self.redeliveries,
            self.delivered_after_ack,
            self.settles,
            self.refused_settles,
            self.settles_in_doubt,
            self.dead_letters,
            seconds(self.longest_stall),
        )?;
        for (what, recovery) in &self.recoveries {
            match recovery {
                Some(d) => write!(f, "; acked {} after {what}", seconds(*d))?,
                None => write!(f, "; nothing acked after {what}")?,
            }
        }
        if let Some(first) = &self.first_delivered_after_ack {
            write!(f, "; first delivery after a confirmed ack: {first}")?;
        }
        for (error, n) in &self.failures {
            write!(f, "; {n} publishes failed with: {error}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::{Mark, Publish, Seen};
    use super::*;

    fn publish(n: u64, invoked: u64, answered: u64, outcome: PublishOutcome) -> Publish {
        Publish {
            id: format!("p-{n}"),
            key: None,
            invoked: Duration::from_millis(invoked),
            answered: Some(Duration::from_millis(answered)),
            outcome,
        }
    }

    fn acked(offset: u64) -> PublishOutcome {
        PublishOutcome::Acked {
            offset,
            duplicate: offset == 1,
        }
    }

    #[test]
    fn counts_and_times_are_read_from_the_history() {
        let history = History {
            publishes: vec![
                publish(0, 0, 10, acked(0)),
                publish(1, 5, 20, acked(1)),
                publish(2, 30, 2_500, PublishOutcome::Failed("timed out".into())),
                publish(5, 31, 2_501, PublishOutcome::Failed("timed out".into())),
                publish(6, 32, 2_502, PublishOutcome::Failed("refused".into())),
                publish(3, 40, 3_020, acked(2)),
                publish(4, 50, 60, PublishOutcome::Unknown),
            ],
            group: vec![
                GroupEvent::Delivered {
                    member: 0,
                    offset: 0,
                    attempt: 1,
                    id: Some("p-0".into()),
                    at: Duration::ZERO,
                },
                GroupEvent::Settled {
                    member: 0,
                    offset: 0,
                    attempt: 1,
                    verdict: super::super::record::Verdict::Ack,
                    answer: SettleAnswer::Confirmed,
                    at: Duration::ZERO,
                },
                GroupEvent::Delivered {
                    member: 1,
                    offset: 0,
                    attempt: 2,
                    id: Some("p-0".into()),
                    at: Duration::ZERO,
                },
            ],
            marks: vec![Mark {
                at: Duration::from_millis(25),
                what: "SIGKILL n1".into(),
            }],
            ..History::default()
        };
        let observed = Observed {
            topic: "t".into(),
            stored: vec![Seen {
                offset: 0,
                id: Some("p-0".into()),
                key: None,
            }],
            dead_letters: vec![],
            group: None,
        };
        let summary = Summary::of(&history, &observed);
        assert_eq!(
            (
                summary.acked,
                summary.acked_duplicates,
                summary.failed,
                summary.unknown
            ),
            (3, 1, 3, 1)
        );
        assert_eq!(
            summary.failures,
            vec![("timed out".to_owned(), 2), ("refused".to_owned(), 1)]
        );
        assert_eq!((summary.redeliveries, summary.delivered_after_ack), (1, 1));
        assert_eq!(
            summary.first_delivered_after_ack.as_deref(),
            Some("offset 0: attempt 1's ack by member 0 confirmed at 0.0s, attempt 2 delivered to member 1 at 0.0s")
        );
        assert_eq!(summary.longest_stall, Duration::from_millis(3_000));
        assert_eq!(
            summary.recoveries,
            vec![("SIGKILL n1".into(), Some(Duration::from_millis(2_995)))]
        );
        assert_eq!(summary.operations(), 7 + 2 + 1);
        let line = summary.to_string();
        assert!(
            line.starts_with("10 operations: 7 publishes (3 acked"),
            "{line}"
        );
        assert!(
            line.ends_with(
                "acked 3.0s after SIGKILL n1; first delivery after a confirmed ack: offset 0: attempt 1's ack by member 0 confirmed at 0.0s, attempt 2 delivered to member 1 at 0.0s; 2 publishes failed with: timed out; 1 publishes failed with: refused"
            ),
            "{line}"
        );
    }
}
