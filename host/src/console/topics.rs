//! The topics pages: the list with rates, one topic with its last
//! messages and consumer groups, and publishing a test message.
//!
//! Rights are those of the same request over QUIC: a topic is listed and
//! described for whoever may describe it, its messages are shown to
//! whoever may read it, and the form publishes as the signed-in principal.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use base64::Engine;
use bytes::Bytes;
use sluice_proto::{MessageOutcome, PublishMessage, RetentionSpec, StartPosition, TopicInfo};

use super::error::{bad_request, ConsoleError};
use super::{Console, Signed};
use crate::auth::{authorize, Action, AdminRight};
use crate::broker::PublishBatch;

/// Messages a topic page shows by default, and at most.
const DEFAULT_LAST: u32 = 20;
const MAX_LAST: u32 = 500;
/// Payload bytes a topic page fetches at most.
const MAX_BYTES: u32 = 4 * 1024 * 1024;

/// A topic in the list.
#[derive(Debug, serde::Serialize)]
pub struct Row {
    pub name: String,
    pub messages: u64,
    pub bytes: u64,
    pub start_offset: u64,
    pub next_offset: u64,
    /// Messages stored per second, over the last second.
    pub rate: f64,
    pub retention: RetentionSpec,
    pub newest_timestamp_ms: Option<i64>,
    /// Delayed messages waiting to be put in the topic.
    pub waiting: u64,
}

fn row(console: &Console, t: TopicInfo) -> Row {
    Row {
        rate: console.rates.topic(&t.name),
        name: t.name,
        messages: t.messages,
        bytes: t.bytes,
        start_offset: t.start_offset,
        next_offset: t.next_offset,
        retention: t.retention,
        newest_timestamp_ms: t.newest_timestamp_ms,
        waiting: t.waiting,
    }
}

/// `GET /api/topics`: the topics the principal may describe.
pub async fn list(State(console): State<Arc<Console>>, signed: Signed) -> Json<Vec<Row>> {
    let mut topics = console.broker.list_topics().await;
    topics.retain(|t| authorize(&signed.principal, Action::Describe, &t.name).is_ok());
    Json(topics.into_iter().map(|t| row(&console, t)).collect())
}

/// A group's position on one topic, as a topic page lists it.
#[derive(Debug, serde::Serialize)]
pub struct TopicGroup {
    pub name: String,
    pub lag: u64,
    pub pending: u64,
    pub members: usize,
}

/// One topic.
#[derive(Debug, serde::Serialize)]
pub struct Topic {
    #[serde(flatten)]
    pub row: Row,
    pub segments: u32,
    pub segment_bytes: u64,
    pub dedup_window_ms: u64,
    pub oldest_timestamp_ms: Option<i64>,
    /// What the principal may do here.
    pub may_read: bool,
    pub may_publish: bool,
    /// `None` without the `groups` admin right.
    pub groups: Option<Vec<TopicGroup>>,
}

/// `GET /api/topics/{name}`.
pub async fn show(
    State(console): State<Arc<Console>>,
    signed: Signed,
    Path(name): Path<String>,
) -> Result<Json<Topic>, ConsoleError> {
    signed.check(&console, Action::Describe, &name)?;
    let info = console.broker.topic_info(&name).await?;
    let groups = if signed.may(AdminRight::Groups) {
        let groups = console.broker.list_groups().await;
        Some(
            groups
                .into_iter()
                .filter_map(|g| {
                    let at = g.topics.iter().find(|t| t.topic == name)?;
                    Some(TopicGroup {
                        lag: at.lag,
                        pending: at.pending,
                        members: g.members.len(),
                        name: g.name,
                    })
                })
                .collect(),
        )
    } else {
        None
    };
    let principal = &signed.principal;
    Ok(Json(Topic {
        segments: info.segments,
        segment_bytes: info.segment_bytes,
        dedup_window_ms: info.dedup_window_ms,
        oldest_timestamp_ms: info.oldest_timestamp_ms,
        may_read: authorize(principal, Action::Subscribe, &name).is_ok(),
        may_publish: authorize(principal, Action::Publish, &name).is_ok(),
        row: row(&console, info),
        groups,
    }))
}

/// A stored message as the page shows it.
#[derive(Debug, serde::Serialize)]
pub struct Shown {
    pub offset: u64,
    pub timestamp_ms: i64,
    /// Base64 (the page shows it as text, JSON or hex).
    pub key: Option<String>,
    pub headers: Vec<(String, String)>,
    /// Base64.
    pub payload: String,
    pub id: Option<String>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl From<sluice_proto::Delivered> for Shown {
    fn from(m: sluice_proto::Delivered) -> Shown {
        Shown {
            offset: m.offset,
            timestamp_ms: m.timestamp_ms,
            key: m.key.as_deref().map(b64),
            headers: m.headers,
            payload: b64(&m.payload),
            id: m.id,
        }
    }
}

/// `?last=N`.
#[derive(Debug, serde::Deserialize)]
pub struct Last {
    last: Option<u32>,
}

/// The last messages of a topic.
#[derive(Debug, serde::Serialize)]
pub struct Messages {
    pub messages: Vec<Shown>,
    pub next_offset: u64,
}

/// Fetches up to `last` messages ending at the topic's end.
pub async fn last_messages(
    console: &Console,
    topic: &str,
    last: u32,
) -> Result<Messages, ConsoleError> {
    let info = console.broker.topic_info(topic).await?;
    let from = info
        .next_offset
        .saturating_sub(u64::from(last))
        .max(info.start_offset);
    if from >= info.next_offset {
        return Ok(Messages {
            messages: Vec::new(),
            next_offset: info.next_offset,
        });
    }
    let batch = console
        .broker
        .fetch(topic, StartPosition::Offset(from), last, MAX_BYTES)
        .await?;
    Ok(Messages {
        messages: batch.messages.into_iter().map(Shown::from).collect(),
        next_offset: batch.end_offset,
    })
}

/// `GET /api/topics/{name}/messages?last=N`: needs read rights.
pub async fn messages(
    State(console): State<Arc<Console>>,
    signed: Signed,
    Path(name): Path<String>,
    query: Result<Query<Last>, QueryRejection>,
) -> Result<Json<Messages>, ConsoleError> {
    let Query(Last { last }) = query.map_err(bad_request)?;
    let last = last.unwrap_or(DEFAULT_LAST);
    if last == 0 || last > MAX_LAST {
        return Err(ConsoleError::BadRequest(format!(
            "last must be between 1 and {MAX_LAST}, not {last}"
        )));
    }
    signed.check(&console, Action::Subscribe, &name)?;
    Ok(Json(last_messages(&console, &name, last).await?))
}

/// A test message from the form.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestMessage {
    /// As text.
    payload: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    message_id: Option<String>,
}

/// Publishes one message as `signed`, through the topic's pipeline, and
/// waits until it is stored.
pub async fn publish_one(
    console: &Console,
    signed: &Signed,
    message: PublishMessage,
) -> Result<MessageOutcome, ConsoleError> {
    signed.check(console, Action::Publish, &message.topic)?;
    let batch = PublishBatch::from_messages(vec![message])?;
    let ack = console
        .broker
        .publish(batch, &signed.principal)
        .await?
        .wait()
        .await?;
    ack.outcomes.into_iter().next().ok_or_else(|| {
        ConsoleError::Broker(crate::error::BrokerError::Internal(
            "the broker answered a publish with no outcome".into(),
        ))
    })
}

/// `POST /api/topics/{name}/messages`: publishes a test message.
pub async fn publish(
    State(console): State<Arc<Console>>,
    signed: Signed,
    Path(name): Path<String>,
    body: Result<Json<TestMessage>, JsonRejection>,
) -> Result<Json<MessageOutcome>, ConsoleError> {
    let Json(body) = body.map_err(bad_request)?;
    let message = PublishMessage {
        topic: name,
        key: body.key.filter(|k| !k.is_empty()).map(Bytes::from),
        headers: body.headers,
        payload: Bytes::from(body.payload),
        id: body.message_id.filter(|id| !id.is_empty()),
    };
    Ok(Json(publish_one(&console, &signed, message).await?))
}
