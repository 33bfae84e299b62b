//! A history checker outside the broker, for crash tests: clients record
//! what they sent and what the broker acknowledged, and the checker
//! compares that with what the broker stores and delivers afterwards.
//!
//! - `publisher.rs`: [`publish_until_failure`], pipelined publishing until
//!   the broker dies, each ack reported, the unacked batches given back.
//! - `ledger.rs`: [`Ledger`], the publishes (sent, acked at an offset) and
//!   the check of a topic's log: dense offsets, every acked publish there
//!   with its bytes, nothing stored twice or unknown.
//! - `group.rs`: [`GroupLedger`], a consumer group's deliveries and settles
//!   and their checks: no delivery after a confirmed ack, deliveries carry
//!   the log's bytes, and once the group is drained every message acked.
//! - `violation.rs`: [`Violation`], what the checks report.
//!
//! The ledgers are pure: no I/O, unit-tested here. `ledger` and `group`
//! use `violation`; `publisher` uses nothing of the rest.

mod group;
mod ledger;
mod publisher;
mod violation;

pub use group::{GroupLedger, SettleAnswer, SettleKind};
pub use ledger::Ledger;
pub use publisher::{publish_until_failure, AckedAt, Outgoing, PublishEnd};
pub use violation::{At, Attempt, Violation};
