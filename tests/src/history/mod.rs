//! History checkers outside the broker: clients record what they sent and
//! what the broker acknowledged, and a checker compares that with what the
//! broker stores and delivers afterwards. Two of them:
//!
//! - for crash tests of one broker (`e2e/crash.rs`, `sluice-crash-test`):
//!   messages known by their bytes, lives counted across SIGKILLs;
//! - for fault tests of a cluster (`e2e/cluster_faults/`): every operation
//!   of every client (invoked, acked, failed, unknown; each subscription
//!   message; each group delivery and settlement), messages known by
//!   their ids, judged at the end against the whole topic.
//!
//! # Layout
//!
//! - `publisher.rs`: [`publish_until_failure`], pipelined publishing until
//!   the broker dies, each ack reported, the unacked batches given back.
//! - `ledger.rs`: [`Ledger`], the publishes (sent, acked at an offset) and
//!   the check of a topic's log: dense offsets, every acked publish there
//!   with its bytes, nothing stored twice or unknown.
//! - `group.rs`: [`GroupLedger`], a consumer group's deliveries and settles
//!   and their checks: no delivery after a confirmed ack, deliveries carry
//!   the log's bytes, and once the group is drained every message acked.
//! - `record.rs`: [`Recorder`], the [`History`] of a cluster run as its
//!   clients record it.
//! - `check.rs`: [`check`], that history judged against what the cluster
//!   holds at the end ([`Observed`]): a [`Report`] of violations; the
//!   topic and the publishes here, `readers.rs` the subscriptions and the
//!   group. `seeded.rs`: the clean history their tests seed faults into.
//! - `observed.rs`: [`Observed`], what the cluster holds at the end, and
//!   the per-key order rule every check shares.
//! - `summary.rs`: [`Summary`], a run's counts and times in one line.
//! - `violation.rs`: [`Violation`], what the checks report.
//!
//! Everything but `publisher` does no I/O and is unit-tested here with
//! seeded faults; the checks are pure functions of the records.
//! `ledger`, `group`, `check` and `readers` use `violation`; `check`,
//! `readers` and `summary` use `record`; `publisher` uses nothing of the
//! rest.

mod check;
mod group;
mod ledger;
mod observed;
mod publisher;
mod readers;
mod record;
#[cfg(test)]
mod seeded;
mod summary;
mod violation;

pub use check::{check, Report};
pub use group::{GroupLedger, SettleAnswer, SettleKind};
pub use ledger::Ledger;
pub use observed::{GroupEnd, Observed};
pub use publisher::{publish_until_failure, AckedAt, Outgoing, PublishEnd};
pub use record::{
    GroupEvent, History, Mark, Publish, PublishOutcome, Recorder, Seen, SubscriptionLog, Verdict,
};
pub use summary::Summary;
pub use violation::{At, Attempt, Violation};
