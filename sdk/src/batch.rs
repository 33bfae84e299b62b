//! The batch a plugin receives, and the borrowed [`Message`] view of one
//! of its messages. The batch is kept in the flat layout it crossed the
//! boundary in; a `Message` only points into it, so reading a message
//! copies and allocates nothing.

use serde::de::DeserializeOwned;

use crate::Error;

/// Flag bit: the message has a key.
pub(crate) const FLAG_KEY: u8 = 1;
/// Flag bit: the message's offset is known.
pub(crate) const FLAG_OFFSET: u8 = 2;

/// A batch of messages of one topic, in the flat layout of the WIT
/// contract. Build one for tests with [`crate::testing::BatchBuilder`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    pub(crate) topic: String,
    pub(crate) payloads: Vec<u8>,
    pub(crate) payload_ends: Vec<u32>,
    pub(crate) keys: Vec<u8>,
    pub(crate) key_ends: Vec<u32>,
    pub(crate) headers: Vec<u8>,
    pub(crate) header_ends: Vec<u32>,
    pub(crate) timestamps: Vec<i64>,
    pub(crate) offsets: Vec<u64>,
    pub(crate) flags: Vec<u8>,
}

/// The bytes `[ends[i-1], ends[i])` of `data`; empty if the layout is off
/// (the broker never sends that, and a plugin must not panic on it).
fn span<'a>(data: &'a [u8], ends: &[u32], i: usize) -> &'a [u8] {
    let end = ends.get(i).copied().unwrap_or(0) as usize;
    let start = if i == 0 {
        0
    } else {
        ends.get(i - 1).copied().unwrap_or(0) as usize
    };
    data.get(start..end).unwrap_or(&[])
}

impl Batch {
    /// The topic of every message in the batch.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Number of messages.
    pub fn len(&self) -> usize {
        self.payload_ends.len()
    }

    /// True if the batch has no message.
    pub fn is_empty(&self) -> bool {
        self.payload_ends.is_empty()
    }

    /// Message `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<Message<'_>> {
        (index < self.len()).then_some(Message { batch: self, index })
    }

    /// Every message, in order.
    pub fn messages(&self) -> impl ExactSizeIterator<Item = Message<'_>> + '_ {
        (0..self.len()).map(move |index| Message { batch: self, index })
    }
}

/// A borrowed view of one message of a [`Batch`].
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    batch: &'a Batch,
    index: usize,
}

impl<'a> Message<'a> {
    /// Its position in the batch.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The topic it was published to.
    pub fn topic(&self) -> &'a str {
        &self.batch.topic
    }

    /// The body.
    pub fn payload(&self) -> &'a [u8] {
        span(&self.batch.payloads, &self.batch.payload_ends, self.index)
    }

    /// The body as UTF-8 text.
    pub fn payload_str(&self) -> Result<&'a str, Error> {
        std::str::from_utf8(self.payload())
            .map_err(|e| Error::new(format!("payload is not UTF-8: {e}")))
    }

    /// The body parsed as JSON into `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(self.payload())
            .map_err(|e| Error::new(format!("payload is not the expected JSON: {e}")))
    }

    /// The body parsed as any JSON value.
    pub fn json_value(&self) -> Result<serde_json::Value, Error> {
        self.json()
    }

    /// The key, if it has one.
    pub fn key(&self) -> Option<&'a [u8]> {
        let has_key = self
            .batch
            .flags
            .get(self.index)
            .is_some_and(|f| f & FLAG_KEY != 0);
        has_key.then(|| span(&self.batch.keys, &self.batch.key_ends, self.index))
    }

    /// The key as UTF-8 text, if it has one and it is text.
    pub fn key_str(&self) -> Option<&'a str> {
        self.key().and_then(|k| std::str::from_utf8(k).ok())
    }

    /// Its headers, in order (names may repeat).
    pub fn headers(&self) -> Headers<'a> {
        Headers {
            data: span(&self.batch.headers, &self.batch.header_ends, self.index),
        }
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Publish time, in milliseconds since the Unix epoch.
    pub fn timestamp_ms(&self) -> i64 {
        self.batch.timestamps.get(self.index).copied().unwrap_or(0)
    }

    /// Its offset in the topic, when known (messages being delivered;
    /// messages being published have none yet).
    pub fn offset(&self) -> Option<u64> {
        let known = self
            .batch
            .flags
            .get(self.index)
            .is_some_and(|f| f & FLAG_OFFSET != 0);
        known
            .then(|| self.batch.offsets.get(self.index).copied())
            .flatten()
    }
}

/// Iterator over a message's headers as `(name, value)`.
#[derive(Debug, Clone)]
pub struct Headers<'a> {
    data: &'a [u8],
}

fn take_field<'a>(data: &mut &'a [u8]) -> Option<&'a str> {
    let len_bytes: [u8; 4] = data.get(..4)?.try_into().ok()?;
    let len = u32::from_le_bytes(len_bytes) as usize;
    let field = data.get(4..4 + len)?;
    *data = &data[4 + len..];
    std::str::from_utf8(field).ok()
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let name = take_field(&mut self.data)?;
        let value = take_field(&mut self.data)?;
        Some((name, value))
    }
}

/// Appends headers in the wire encoding.
pub(crate) fn encode_headers<'h>(
    out: &mut Vec<u8>,
    headers: impl IntoIterator<Item = (&'h str, &'h str)>,
) {
    for (name, value) in headers {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value.as_bytes());
    }
}
