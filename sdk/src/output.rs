//! What a plugin answers: one [`Outcome`] per message, plus the new
//! messages and destination topics those outcomes refer to, all kept flat
//! as the WIT contract wants them.
//!
//! [`Output::decoded`], the same answer as plain values for tests, lives in
//! [`crate::testing`]: the test helpers build on this module, not the
//! other way round.

use crate::batch::{encode_headers, FLAG_KEY};

/// A new message made by a transform.
///
/// ```
/// use sluice_sdk::MessageBuilder;
/// let m = MessageBuilder::new(r#"{"id":1}"#).key("customer-7").header("redacted", "true");
/// assert_eq!(m.payload(), br#"{"id":1}"#);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageBuilder {
    payload: Vec<u8>,
    key: Option<Vec<u8>>,
    headers: Vec<(String, String)>,
}

impl MessageBuilder {
    /// A message with this payload.
    pub fn new(payload: impl Into<Vec<u8>>) -> Self {
        MessageBuilder {
            payload: payload.into(),
            ..Self::default()
        }
    }

    /// A message with a JSON payload.
    pub fn json<T: serde::Serialize>(value: &T) -> Result<Self, crate::Error> {
        serde_json::to_vec(value)
            .map(Self::new)
            .map_err(|e| crate::Error::new(format!("cannot encode JSON: {e}")))
    }

    /// A copy of an incoming message (payload, key and headers), to change.
    pub fn from_message(message: &crate::Message<'_>) -> Self {
        MessageBuilder {
            payload: message.payload().to_vec(),
            key: message.key().map(<[u8]>::to_vec),
            headers: message
                .headers()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets a header, replacing any of the same name.
    pub fn set_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value.into()));
        self
    }

    /// Removes every header of this name (`sluice-deliver-at`, say, to
    /// deliver a delayed message at once).
    pub fn without_header(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| n != name);
        self
    }

    /// Replaces the payload.
    pub fn payload_bytes(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.payload = payload.into();
        self
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The key.
    pub fn get_key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    /// The headers.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }
}

/// New messages, flat.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FlatMessages {
    pub payloads: Vec<u8>,
    pub payload_ends: Vec<u32>,
    pub keys: Vec<u8>,
    pub key_ends: Vec<u32>,
    pub headers: Vec<u8>,
    pub header_ends: Vec<u32>,
    pub flags: Vec<u8>,
}

impl FlatMessages {
    fn push(&mut self, m: MessageBuilder) {
        self.payloads.extend_from_slice(&m.payload);
        self.payload_ends.push(self.payloads.len() as u32);
        if let Some(key) = &m.key {
            self.keys.extend_from_slice(key);
        }
        self.key_ends.push(self.keys.len() as u32);
        encode_headers(
            &mut self.headers,
            m.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        );
        self.header_ends.push(self.headers.len() as u32);
        self.flags.push(if m.key.is_some() { FLAG_KEY } else { 0 });
    }

    pub fn len(&self) -> usize {
        self.payload_ends.len()
    }
}

/// What happens to one message (the SDK's mirror of the WIT `outcome`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Pass,
    Drop,
    Replace { start: u32, len: u32 },
    Route { start: u32, len: u32 },
    Reject(String),
    DeadLetter(String),
}

/// The answer being built for one batch: call exactly one method per
/// message, in order. Used directly by [`crate::Plugin`] implementations;
/// the other plugin kinds fill it for you.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    pub(crate) results: Vec<Outcome>,
    pub(crate) output: FlatMessages,
    pub(crate) topics: Vec<String>,
}

impl Output {
    /// An empty answer with room for `messages` outcomes (the only
    /// allocation a batch of `pass`/`drop` outcomes makes).
    pub fn with_capacity(messages: usize) -> Self {
        Output {
            results: Vec::with_capacity(messages),
            ..Output::default()
        }
    }

    /// Outcomes given so far.
    pub fn len(&self) -> usize {
        self.results.len()
    }

    /// True if no outcome was given yet.
    pub fn is_empty(&self) -> bool {
        self.results.is_empty()
    }

    /// Keep the message unchanged.
    pub fn pass(&mut self) {
        self.results.push(Outcome::Pass);
    }

    /// Discard the message.
    pub fn drop_message(&mut self) {
        self.results.push(Outcome::Drop);
    }

    /// Replace the message with these (none: drop it).
    pub fn replace(&mut self, messages: impl IntoIterator<Item = MessageBuilder>) {
        let start = self.output.len() as u32;
        for m in messages {
            self.output.push(m);
        }
        let len = self.output.len() as u32 - start;
        self.results.push(Outcome::Replace { start, len });
    }

    /// Store the message in these topics instead of its own.
    pub fn route<S: Into<String>>(&mut self, topics: impl IntoIterator<Item = S>) {
        let start = self.topics.len() as u32;
        self.topics.extend(topics.into_iter().map(Into::into));
        let len = self.topics.len() as u32 - start;
        self.results.push(Outcome::Route { start, len });
    }

    /// Refuse the message: the publish fails with this reason.
    pub fn reject(&mut self, reason: impl Into<String>) {
        self.results.push(Outcome::Reject(reason.into()));
    }

    /// Send the message to the dead-letter topic with this reason.
    pub fn dead_letter(&mut self, reason: impl Into<String>) {
        self.results.push(Outcome::DeadLetter(reason.into()));
    }
}
