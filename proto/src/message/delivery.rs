//! Reading: where a subscription or fetch starts, the requests that read,
//! and the stored message as it is delivered to a reader (subscriptions,
//! fetches and consumer groups alike).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Where a subscription or fetch starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartPosition {
    /// The oldest stored message.
    Earliest,
    /// Only messages stored from now on.
    Latest,
    /// A given offset (per topic, for a pattern).
    Offset(u64),
    /// The first message stored at or after this time (ms since the Unix epoch).
    Timestamp(i64),
}

/// Start a subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscribe {
    /// Chosen by the client, unique among its subscriptions on this connection.
    pub subscription: u64,
    /// A topic or a pattern with `*` and `>`.
    pub pattern: String,
    /// Where to start. `Latest` is a live, at-most-once subscription;
    /// anything else replays stored messages first and then follows live
    /// without gaps.
    pub from: StartPosition,
    /// A loaded plugin that filters or transforms what this subscription
    /// receives (what is stored does not change).
    #[serde(default)]
    pub plugin: Option<DeliveryPlugin>,
    /// Per topic, the next offset to deliver: overrides `from` for the
    /// topics named. A client that lost its connection subscribes again
    /// with the offset after the last message it delivered of each topic,
    /// so nothing is skipped or delivered twice. A topic that does not
    /// exist, or whose log ends before the offset (it was deleted and
    /// created again), starts where `from` says. With any entry a `Latest`
    /// subscription replays too: it misses nothing stored after these
    /// offsets (and topics it names no offset for start at their end).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resume: BTreeMap<String, u64>,
}

/// A plugin applied to one subscription's deliveries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryPlugin {
    /// The name of a `[[plugin]]` loaded in the broker.
    pub name: String,
    /// A JSON config for this subscription's own instance; `None` uses the
    /// plugin's configured one.
    #[serde(default)]
    pub config: Option<String>,
}

/// Read stored messages of one topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fetch {
    /// The topic.
    pub topic: String,
    /// Where to start.
    pub from: StartPosition,
    /// At most this many messages (at least 1).
    pub max_messages: u32,
    /// Roughly at most this many payload bytes (at least one message is returned if any is stored).
    pub max_bytes: u32,
}

/// The answer to a fetch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchBatch {
    /// The messages, in offset order.
    pub messages: Vec<Delivered>,
    /// The offset to fetch from next.
    pub next_offset: u64,
    /// The topic's next offset at the time of the fetch (lag = end - next).
    pub end_offset: u64,
}

/// A stored message as delivered to a reader.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivered {
    /// The topic it is stored in.
    pub topic: String,
    /// Its offset there.
    pub offset: u64,
    /// When it was stored (ms since the Unix epoch).
    pub timestamp_ms: i64,
    /// Its key.
    #[serde(default)]
    pub key: Option<Bytes>,
    /// Its headers.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// Its body.
    pub payload: Bytes,
    /// The producer's message id, if it gave one.
    #[serde(default)]
    pub id: Option<String>,
    /// For consumer-group deliveries: which delivery attempt this is (1 for
    /// the first). 0 for subscriptions and fetches.
    #[serde(default)]
    pub attempt: u32,
}

impl Delivered {
    /// The value of header `name`, matched without regard to case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Its W3C `traceparent`: the publisher's trace, with the broker's
    /// delivery span as the parent when the broker traced it. Start the
    /// consumer's span from it to continue the trace.
    pub fn traceparent(&self) -> Option<&str> {
        self.header("traceparent")
    }
}
