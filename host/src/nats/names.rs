//! sluice names mapped to names NATS accepts.
//!
//! Topics and groups have dots and run to 255 bytes; stream and consumer
//! names cannot hold a dot and NATS advises keeping them short. A name here
//! is a readable prefix (the first characters, anything but ASCII letters,
//! digits, `-` and `_` turned into `_`) and a hash of the whole name, so two
//! names never share a stream and an operator can still tell them apart.
//! The full name is kept in the stream's metadata and in the buckets.

use sha2::{Digest, Sha256};

/// Characters of the readable part.
const READABLE_CHARS: usize = 32;

/// The bucket holding every topic's settings (key: its stream name).
pub const TOPICS_BUCKET: &str = "sluice-topics";

/// The bucket holding every group's settings (key: [`group_key`]).
pub const GROUPS_BUCKET: &str = "sluice-groups";

/// Where a store keeps its topics: the bucket of their settings and the
/// prefix of their streams' names (and so of their subjects). Two
/// namespaces never share a stream, whatever their topics are called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Namespace {
    /// The bucket holding every topic's settings (key: its stream name).
    pub bucket: &'static str,
    prefix: &'static str,
    /// Whether its streams may be purged (`Store::trim`). Users' topics
    /// may not: their offsets go only by retention.
    pub purgeable: bool,
}

/// The users' topics.
pub const TOPICS: Namespace = Namespace {
    bucket: TOPICS_BUCKET,
    prefix: "SL",
    purgeable: false,
};

/// The broker's schedule of delayed messages (`crate::schedule`).
pub const SCHEDULE: Namespace = Namespace {
    bucket: "sluice-schedule-topics",
    prefix: "SLS",
    purgeable: true,
};

impl Namespace {
    /// The stream of a topic in this namespace.
    pub fn stream(&self, topic: &str) -> String {
        format!("{}_{}_{}", self.prefix, readable(topic), hash(&[topic]))
    }
}

/// The stream of a user's topic.
pub fn stream(topic: &str) -> String {
    TOPICS.stream(topic)
}

/// The subject the topic's messages are published on.
pub fn subject(stream: &str) -> String {
    format!("sluice.t.{stream}")
}

/// The durable consumer of a group on one topic.
pub fn consumer(group: &str, topic: &str) -> String {
    format!("G_{}_{}", readable(group), hash(&[group, topic]))
}

/// The key of a group in [`GROUPS_BUCKET`].
pub fn group_key(group: &str) -> String {
    format!("G_{}_{}", readable(group), hash(&[group]))
}

fn readable(name: &str) -> String {
    name.chars()
        .take(READABLE_CHARS)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// 64 bits of SHA-256 over the parts, each followed by a NUL, in hex.
fn hash(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hasher.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nats_name_ok(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    }

    #[test]
    fn names_are_valid_for_nats_and_readable() {
        let long = "a.".repeat(127);
        for topic in ["orders.us", "x", long.as_str(), "ünï.cødé", "a b"] {
            let s = stream(topic);
            assert!(nats_name_ok(&s), "{s}");
            let c = consumer("billing.workers", topic);
            assert!(nats_name_ok(&c), "{c}");
        }
        assert!(stream("orders.us").starts_with("SL_orders_us_"));
        assert_eq!(subject("SL_a_1"), "sluice.t.SL_a_1");
    }

    #[test]
    fn names_that_read_alike_get_different_streams() {
        assert_ne!(stream("orders.us"), stream("orders_us"));
        assert_ne!(
            stream("a".repeat(40).as_str()),
            stream(&format!("{}b", "a".repeat(40)))
        );
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(consumer("ab", "c"), consumer("a", "bc"));
        assert_eq!(stream("orders.us"), stream("orders.us"));
    }
}
