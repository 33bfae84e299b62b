//! What calls return, as read-only Python objects.

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::PyClass;
use sluice_proto::{Delivered, GroupInfo as WireGroup, TopicInfo as WireTopic};

/// Where a published message was stored. When a routing plugin stored it
/// in several places, `topic` and `offset` are the first and `routed`
/// holds every place.
#[pyclass(module = "sluice", frozen, get_all)]
#[derive(Clone)]
pub struct Stored {
    /// The topic.
    pub topic: String,
    /// Its offset there.
    pub offset: u64,
    /// True when the broker had stored a message with this id already.
    pub duplicate: bool,
    /// When it is due, if it was delayed (ms since the Unix epoch): it
    /// waits in the broker's schedule, `offset` is its place there, and it
    /// takes its offset in `topic` when due.
    pub deliver_at_ms: Option<i64>,
    /// Every place it was stored, in order (one, unless a plugin routed
    /// or split it).
    pub routed: Vec<Place>,
}

/// One place a message was stored at.
#[pyclass(module = "sluice", frozen, get_all)]
#[derive(Clone)]
pub struct Place {
    /// The topic.
    pub topic: String,
    /// The offset.
    pub offset: u64,
    /// Stored earlier under the same id.
    pub duplicate: bool,
}

impl From<sluice_client::Stored> for Stored {
    fn from(stored: sluice_client::Stored) -> Self {
        Stored {
            topic: stored.topic,
            offset: stored.offset,
            duplicate: stored.duplicate,
            deliver_at_ms: stored.deliver_at_ms,
            routed: stored
                .routed
                .into_iter()
                .map(|p| Place {
                    topic: p.topic,
                    offset: p.offset,
                    duplicate: p.duplicate,
                })
                .collect(),
        }
    }
}

#[pymethods]
impl Stored {
    fn __repr__(&self) -> String {
        let duplicate = if self.duplicate { "True" } else { "False" };
        let due = self
            .deliver_at_ms
            .map_or_else(String::new, |ms| format!(", deliver_at_ms={ms}"));
        format!(
            "Stored(topic={:?}, offset={}, duplicate={duplicate}{due})",
            self.topic, self.offset
        )
    }
}

#[pymethods]
impl Place {
    fn __repr__(&self) -> String {
        format!("Place(topic={:?}, offset={})", self.topic, self.offset)
    }
}

/// A stored message as a reader gets it. Group deliveries (`Delivery`)
/// are messages too, with ways to settle them.
#[pyclass(module = "sluice", frozen, subclass)]
pub struct Message {
    pub inner: Delivered,
}

#[pymethods]
impl Message {
    /// The topic it is stored in.
    #[getter]
    fn topic(&self) -> &str {
        &self.inner.topic
    }
    /// Its offset there.
    #[getter]
    fn offset(&self) -> u64 {
        self.inner.offset
    }
    /// When it was stored: milliseconds since the Unix epoch.
    #[getter]
    fn timestamp_ms(&self) -> i64 {
        self.inner.timestamp_ms
    }
    /// The body.
    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.payload)
    }
    /// The key, if it has one.
    #[getter]
    fn key<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.inner.key.as_ref().map(|k| PyBytes::new(py, k))
    }
    /// The headers, as `(name, value)` pairs in order.
    #[getter]
    fn headers(&self) -> Vec<(String, String)> {
        self.inner.headers.clone()
    }
    /// The first value of header `name`, or `None`.
    fn header(&self, name: &str) -> Option<&str> {
        self.inner
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    /// Its W3C `traceparent` header, if it has one: the publisher's trace,
    /// with the broker's delivery span as the parent when the broker traced
    /// it. Publish with `headers={"traceparent": ...}` to start one.
    #[getter]
    fn traceparent(&self) -> Option<&str> {
        self.inner.traceparent()
    }
    /// The producer's message id.
    #[getter]
    fn message_id(&self) -> Option<&str> {
        self.inner.id.as_deref()
    }
    /// For group deliveries, which attempt this is (1 for the first); 0
    /// for subscriptions.
    #[getter]
    fn attempt(&self) -> u32 {
        self.inner.attempt
    }
    /// The payload as text (UTF-8).
    fn text(&self) -> PyResult<&str> {
        std::str::from_utf8(&self.inner.payload).map_err(|e| {
            pyo3::exceptions::PyValueError::new_err(format!("payload is not UTF-8: {e}"))
        })
    }
    fn __repr__(&self) -> String {
        format!(
            "Message(topic={:?}, offset={}, payload=<{} bytes>)",
            self.inner.topic,
            self.inner.offset,
            self.inner.payload.len()
        )
    }
}

/// What the broker knows about a topic.
#[pyclass(module = "sluice", frozen, get_all)]
pub struct TopicInfo {
    /// The name.
    pub name: String,
    /// The oldest offset still stored.
    pub start_offset: u64,
    /// The offset the next message gets.
    pub next_offset: u64,
    /// Messages stored.
    pub messages: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// Retention by age, in seconds (None: unlimited).
    pub max_age: Option<f64>,
    /// Retention by size (None: unlimited).
    pub max_bytes: Option<u64>,
    /// Retention by count (None: unlimited).
    pub max_messages: Option<u64>,
    /// Delayed messages waiting to be put in the topic.
    pub waiting: u64,
    /// Time-to-live of messages published without one, in seconds (None:
    /// they do not expire).
    pub default_ttl: Option<f64>,
}

impl From<WireTopic> for TopicInfo {
    fn from(t: WireTopic) -> Self {
        TopicInfo {
            name: t.name,
            start_offset: t.start_offset,
            next_offset: t.next_offset,
            messages: t.messages,
            bytes: t.bytes,
            max_age: t.retention.max_age_ms.map(|ms| ms as f64 / 1000.0),
            max_bytes: t.retention.max_bytes,
            max_messages: t.retention.max_messages,
            waiting: t.waiting,
            default_ttl: t.default_ttl_ms.map(|ms| ms as f64 / 1000.0),
        }
    }
}

#[pymethods]
impl TopicInfo {
    fn __repr__(&self) -> String {
        format!(
            "TopicInfo(name={:?}, start_offset={}, next_offset={}, messages={})",
            self.name, self.start_offset, self.next_offset, self.messages
        )
    }
}

/// What the broker knows about a consumer group.
#[pyclass(module = "sluice", frozen, get_all)]
pub struct GroupInfo {
    /// The group.
    pub name: String,
    /// The topic or pattern it consumes.
    pub pattern: String,
    /// Connected members.
    pub members: usize,
    /// Messages not yet delivered, over its topics.
    pub lag: u64,
    /// Delivered and not settled, over its topics.
    pub pending: u64,
    /// Redeliveries since the broker started.
    pub redeliveries: u64,
    /// Messages sent to the dead-letter topic since the broker started.
    pub dead_lettered: u64,
    /// The dead-letter topic (None: `dlq.<topic>`).
    pub dead_letter_topic: Option<String>,
    /// Deliveries of one message before it is dead-lettered.
    pub max_deliver: u32,
}

impl From<WireGroup> for GroupInfo {
    fn from(g: WireGroup) -> Self {
        GroupInfo {
            members: g.members.len(),
            lag: g.topics.iter().map(|t| t.lag).sum(),
            pending: g.topics.iter().map(|t| t.pending).sum(),
            name: g.name,
            pattern: g.pattern,
            redeliveries: g.redeliveries,
            dead_lettered: g.dead_lettered,
            dead_letter_topic: g.options.dead_letter_topic,
            max_deliver: g.options.max_deliver,
        }
    }
}

#[pymethods]
impl GroupInfo {
    fn __repr__(&self) -> String {
        format!(
            "GroupInfo(name={:?}, pattern={:?}, members={}, lag={}, pending={})",
            self.name, self.pattern, self.members, self.lag, self.pending
        )
    }
}

/// A group delivery as a Python object of class `S`: a `Message` that
/// also settles it (`sluice.Delivery`, `sluice.aio.Delivery`).
pub fn delivery_object<'py, S: PyClass<BaseType = Message>>(
    py: Python<'py>,
    delivery: sluice_client::Delivery,
    make: impl FnOnce(std::sync::Arc<sluice_client::Delivery>) -> S,
) -> PyResult<Bound<'py, S>> {
    let message = Message {
        inner: delivery.message.clone(),
    };
    let settles = make(std::sync::Arc::new(delivery));
    Bound::new(py, PyClassInitializer::from(message).add_subclass(settles))
}

/// The answer to a request: its payload and headers.
#[pyclass(module = "sluice", frozen)]
pub struct Reply {
    inner: sluice_client::Reply,
}

impl From<sluice_client::Reply> for Reply {
    fn from(inner: sluice_client::Reply) -> Self {
        Reply { inner }
    }
}

#[pymethods]
impl Reply {
    /// The body.
    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.payload)
    }
    /// The headers, as `(name, value)` pairs in order.
    #[getter]
    fn headers(&self) -> Vec<(String, String)> {
        self.inner.headers.clone()
    }
    /// The first value of header `name`, or `None`.
    fn header(&self, name: &str) -> Option<&str> {
        self.inner
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    /// The payload as text (UTF-8).
    fn text(&self) -> PyResult<&str> {
        std::str::from_utf8(&self.inner.payload).map_err(|e| {
            pyo3::exceptions::PyValueError::new_err(format!("payload is not UTF-8: {e}"))
        })
    }
    fn __repr__(&self) -> String {
        format!("Reply(payload=<{} bytes>)", self.inner.payload.len())
    }
}

/// A request as a Python object: a `Message` (topic, key, headers,
/// payload; offset 0, it is not stored) of the subclass `make` builds,
/// which holds the right to answer it.
pub fn request_object<'py, S: PyClass<BaseType = Message>>(
    py: Python<'py>,
    request: sluice_client::IncomingRequest,
    make: impl FnOnce(std::sync::Arc<sluice_client::IncomingRequest>) -> S,
) -> PyResult<Bound<'py, S>> {
    let message = Message {
        inner: request.message().clone(),
    };
    let answers = make(std::sync::Arc::new(request));
    Bound::new(py, PyClassInitializer::from(message).add_subclass(answers))
}

/// A reply from Python arguments: a payload and optional headers.
pub fn reply(
    payload: &Bound<'_, PyAny>,
    headers: Option<&Bound<'_, PyAny>>,
) -> PyResult<sluice_client::Reply> {
    Ok(sluice_client::Reply {
        payload: crate::convert::bytes("payload", payload)?,
        headers: headers
            .map(crate::convert::headers)
            .transpose()?
            .unwrap_or_default(),
    })
}
