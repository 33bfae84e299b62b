//! Delayed delivery and time-to-live: the headers that carry them.
//!
//! They are plain headers, so the full and the compact publish forms carry
//! them alike and a routing plugin sees and may change them:
//! - [`DELIVER_AT_HEADER`]: when the message is due, RFC 3339 in UTC. The
//!   broker stores a message due later at once in its schedule, and puts
//!   it in its topic (where it takes its offset) when due.
//! - [`DELAY_HEADER`]: a delay in milliseconds, counted by the broker's
//!   clock from when it reads the publish; the broker turns it into
//!   [`DELIVER_AT_HEADER`] before any plugin runs.
//! - [`TTL_HEADER`]: a time-to-live in milliseconds, counted from the due
//!   time (or the time the message was stored, when it was not delayed).
//! - [`EXPIRED_HEADER`]: added, with the value `true`, to a message that a
//!   replay delivers after its time-to-live ran out.

/// When a message is due (RFC 3339, UTC).
pub const DELIVER_AT_HEADER: &str = "sluice-deliver-at";
/// A delay in milliseconds, turned into [`DELIVER_AT_HEADER`] by the broker.
pub const DELAY_HEADER: &str = "sluice-delay";
/// A time-to-live in milliseconds, counted from the due time.
pub const TTL_HEADER: &str = "sluice-ttl";
/// Marks a replayed message whose time-to-live ran out.
pub const EXPIRED_HEADER: &str = "sluice-expired";
