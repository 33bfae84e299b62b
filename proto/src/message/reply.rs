//! Request-reply: a request goes to the live responders of its topic, is
//! answered by the first reply, and is never stored.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The header a request carries, as delivered to a responder: the token
/// its reply names ([`ReplyTo::token`]). Holding it is the right to answer.
pub const REPLY_HEADER: &str = "sluice-reply";

/// Start answering requests on the topics `pattern` matches. They come on
/// a new unidirectional stream, as a subscription's messages do: each a
/// `Delivered` (offset 0: not stored) with the header [`REPLY_HEADER`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Respond {
    /// Chosen by the client, unique among its subscriptions, consumers and
    /// responders on this connection.
    pub responder: u64,
    /// A topic or a pattern with `*` and `>`.
    pub pattern: String,
    /// A queue group: each request goes to one responder of the group
    /// (round robin). Without one, every responder gets each request and
    /// the first reply wins.
    #[serde(default)]
    pub group: Option<String>,
}

/// One request: sent to the responders of `topic`, answered with
/// `Answered` by the first reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ask {
    /// The topic; no pattern.
    pub topic: String,
    /// Its key.
    #[serde(default)]
    pub key: Option<Bytes>,
    /// Its headers.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// Its body.
    pub payload: Bytes,
    /// How long to wait for a reply, in ms (1 to 300,000).
    pub timeout_ms: u64,
}

/// A reply to a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// Its headers.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// Its body.
    pub payload: Bytes,
}

/// A responder's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyTo {
    /// The request's [`REPLY_HEADER`].
    pub token: String,
    /// The reply, or why there is none (the requester gets code
    /// `responder_error` with this message).
    pub reply: Result<Reply, String>,
}
