//! A message to publish.

use bytes::Bytes;
use sluice_proto::PublishMessage;

/// A message to publish: topic, payload and optional key, headers and id.
///
/// ```
/// use sluice_client::Message;
/// let m = Message::new("orders.created", r#"{"id":1}"#)
///     .key("customer-7")
///     .header("content-type", "application/json")
///     .id("order-1");
/// assert_eq!(m.topic(), "orders.created");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Message(pub(crate) PublishMessage);

impl Message {
    /// A message with a topic and a payload.
    pub fn new(topic: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        Message(PublishMessage {
            topic: topic.into(),
            payload: payload.into(),
            ..PublishMessage::default()
        })
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.0.key = Some(key.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.0.headers.push((name.into(), value.into()));
        self
    }

    /// Delivers the message no earlier than `delay` after the broker reads
    /// the publish (counted by the broker's clock). Until then it waits in
    /// the broker's schedule, stored and acknowledged; it takes its offset
    /// in the topic when due. Replaces an earlier [`Message::delay`] or
    /// [`Message::deliver_at`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use sluice_client::Message;
    /// let m = Message::new("reminders", "call back").delay(Duration::from_secs(30));
    /// ```
    pub fn delay(mut self, delay: std::time::Duration) -> Self {
        self.remove_headers(&[sluice_proto::DELAY_HEADER, sluice_proto::DELIVER_AT_HEADER]);
        self.0.headers.push((
            sluice_proto::DELAY_HEADER.into(),
            delay.as_millis().to_string(),
        ));
        self
    }

    /// Delivers the message no earlier than `at` (as [`Message::delay`]).
    pub fn deliver_at(mut self, at: std::time::SystemTime) -> Self {
        self.remove_headers(&[sluice_proto::DELAY_HEADER, sluice_proto::DELIVER_AT_HEADER]);
        self.0.headers.push((
            sluice_proto::DELIVER_AT_HEADER.into(),
            humantime::format_rfc3339_millis(at).to_string(),
        ));
        self
    }

    /// A time-to-live, counted from when the message is due: one not
    /// delivered by then is skipped by live subscriptions and consumer
    /// groups (which may dead-letter it, as its topic says). A replay
    /// still shows it, with the header `sluice-expired: true`.
    pub fn ttl(mut self, ttl: std::time::Duration) -> Self {
        self.remove_headers(&[sluice_proto::TTL_HEADER]);
        self.0
            .headers
            .push((sluice_proto::TTL_HEADER.into(), ttl.as_millis().to_string()));
        self
    }

    fn remove_headers(&mut self, names: &[&str]) {
        self.0.headers.retain(|(n, _)| !names.contains(&n.as_str()));
    }

    /// Sets the W3C trace context (`traceparent`, and `tracestate` when
    /// given) the message carries: a broker exporting spans traces it, and
    /// its consumers get the same trace (`Delivered::traceparent`).
    pub fn trace_context(
        mut self,
        traceparent: impl Into<String>,
        tracestate: Option<String>,
    ) -> Self {
        self.0.headers.retain(|(n, _)| {
            !n.eq_ignore_ascii_case("traceparent") && !n.eq_ignore_ascii_case("tracestate")
        });
        self.0
            .headers
            .push(("traceparent".into(), traceparent.into()));
        if let Some(state) = tracestate {
            self.0.headers.push(("tracestate".into(), state));
        }
        self
    }

    /// Sets the de-duplication id: the broker stores one message per id
    /// and topic within its de-duplication window, so a publish repeated
    /// with the same id (by this client after a lost connection, or by the
    /// application) is stored once. Without one, the client gives each
    /// message a random id when it publishes it.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.0.id = Some(id.into());
        self
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.0.topic
    }

    /// The payload.
    pub fn payload(&self) -> &Bytes {
        &self.0.payload
    }

    /// The wire form.
    pub fn into_wire(self) -> PublishMessage {
        self.0
    }
}

impl From<PublishMessage> for Message {
    fn from(m: PublishMessage) -> Self {
        Message(m)
    }
}
