//! The dead-letters page: browse `dlq.>` with why each message is there,
//! redrive messages to their original topic, or discard them.
//!
//! A log is not edited: a redriven or discarded dead letter stays stored,
//! and what was done to it is recorded in the topic
//! [`super::ledger::LEDGER`], one JSON entry per action, which the page
//! reads back to mark it. A redrive
//! publishes the message again, through the original topic's pipeline, as
//! the signed-in principal (who needs publish rights there), without the
//! `sluice-dlq-*` headers and with the message id
//! `sluice-redrive:<dead-letter topic>:<offset>`, so that a double click
//! (or two operators) store it once within the topic's de-duplication
//! window. Discarding needs read rights on the dead-letter topic and the
//! `topics` admin right.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use sluice_proto::{MessageOutcome, PublishMessage, StartPosition};

use super::error::{bad_request, ConsoleError, ErrorBody};
use super::ledger::{marks, record, Handled};
use super::topics::{last_messages, publish_one, Shown};
use super::{Console, Signed};
use crate::auth::{authorize, Action, AdminRight};
use crate::dead_letter;
use crate::store::now_ms;

/// Dead letters a page shows by default, and at most.
const DEFAULT_LAST: u32 = 50;
const MAX_LAST: u32 = 500;
/// Dead letters one action takes at most (each is a durable publish and
/// a durable ledger entry, well within the request timeout).
const MAX_SELECTED: usize = 100;
/// The header a redriven message carries: `<dead-letter topic>@<offset>`.
pub const REDRIVEN_FROM: &str = "sluice-redriven-from";

/// A dead-letter topic in the list.
#[derive(Debug, serde::Serialize)]
pub struct Row {
    pub name: String,
    pub messages: u64,
    pub next_offset: u64,
}

/// `GET /api/dead-letters`: the dead-letter topics the principal may see.
pub async fn list(State(console): State<Arc<Console>>, signed: Signed) -> Json<Vec<Row>> {
    let topics = console.broker.list_topics().await;
    Json(
        topics
            .into_iter()
            .filter(|t| dead_letter::is_dead_letter_topic(&t.name))
            .filter(|t| authorize(&signed.principal, Action::Describe, &t.name).is_ok())
            .map(|t| Row {
                name: t.name,
                messages: t.messages,
                next_offset: t.next_offset,
            })
            .collect(),
    )
}

/// A dead letter with why it is one.
#[derive(Debug, serde::Serialize)]
pub struct Letter {
    #[serde(flatten)]
    pub message: Shown,
    pub original_topic: Option<String>,
    pub reason: Option<String>,
    pub original_offset: Option<u64>,
    pub group: Option<String>,
    pub attempts: Option<u32>,
    pub stage: Option<String>,
    /// The last action on it, if any.
    pub handled: Option<Handled>,
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// `?last=N`.
#[derive(Debug, serde::Deserialize)]
pub struct Last {
    last: Option<u32>,
}

fn check_dead_letter_topic(topic: &str) -> Result<(), ConsoleError> {
    if dead_letter::is_dead_letter_topic(topic) {
        Ok(())
    } else {
        Err(ConsoleError::BadRequest(format!(
            "{topic:?} is not a dead-letter topic (they start with \"dlq.\")"
        )))
    }
}

/// `GET /api/dead-letters/{topic}?last=N`: needs read rights on it.
pub async fn show(
    State(console): State<Arc<Console>>,
    signed: Signed,
    Path(topic): Path<String>,
    query: Result<Query<Last>, QueryRejection>,
) -> Result<Json<Vec<Letter>>, ConsoleError> {
    let Query(Last { last }) = query.map_err(bad_request)?;
    let last = last.unwrap_or(DEFAULT_LAST);
    if last == 0 || last > MAX_LAST {
        return Err(ConsoleError::BadRequest(format!(
            "last must be between 1 and {MAX_LAST}, not {last}"
        )));
    }
    check_dead_letter_topic(&topic)?;
    signed.check(&console, Action::Subscribe, &topic)?;
    let mut handled = marks(&console, &topic).await?;
    let read = last_messages(&console, &topic, last).await?;
    Ok(Json(
        read.messages
            .into_iter()
            .map(|message| {
                let h = &message.headers;
                Letter {
                    original_topic: header(h, dead_letter::TOPIC).map(str::to_owned),
                    reason: header(h, dead_letter::REASON).map(str::to_owned),
                    original_offset: header(h, dead_letter::OFFSET).and_then(|v| v.parse().ok()),
                    group: header(h, dead_letter::GROUP).map(str::to_owned),
                    attempts: header(h, dead_letter::ATTEMPTS).and_then(|v| v.parse().ok()),
                    stage: header(h, dead_letter::STAGE).map(str::to_owned),
                    handled: handled.remove(&message.offset),
                    message,
                }
            })
            .collect(),
    ))
}

/// The dead letters an action takes.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    offsets: Vec<u64>,
}

/// What an action did to one dead letter.
#[derive(Debug, serde::Serialize)]
pub struct Done {
    pub offset: u64,
    /// A redrive's outcome in the original topic.
    pub outcome: Option<MessageOutcome>,
    /// Why it was not done.
    pub error: Option<ErrorBody>,
}

impl Done {
    fn of(offset: u64, result: Result<Option<MessageOutcome>, ConsoleError>) -> Done {
        match result {
            Ok(outcome) => Done {
                offset,
                outcome,
                error: None,
            },
            Err(e) => Done {
                offset,
                outcome: None,
                error: Some(ErrorBody::from(&e)),
            },
        }
    }
}

fn selection(body: Result<Json<Selection>, JsonRejection>) -> Result<Vec<u64>, ConsoleError> {
    let Json(Selection { offsets }) = body.map_err(bad_request)?;
    if offsets.is_empty() || offsets.len() > MAX_SELECTED {
        return Err(ConsoleError::BadRequest(format!(
            "select between 1 and {MAX_SELECTED} dead letters, not {}",
            offsets.len()
        )));
    }
    Ok(offsets)
}

/// The dead letter at `offset` of `dlq`.
async fn read_one(
    console: &Console,
    dlq: &str,
    offset: u64,
) -> Result<sluice_proto::Delivered, ConsoleError> {
    let batch = console
        .broker
        .fetch(dlq, StartPosition::Offset(offset), 1, 1)
        .await?;
    batch
        .messages
        .into_iter()
        .next()
        .filter(|m| m.offset == offset)
        .ok_or_else(|| ConsoleError::NotFound(format!("{dlq} has no message at offset {offset}")))
}

/// Refuses to redrive a message whose headers name a topic that does not
/// send its dead letters to `dlq`: anyone who may publish to `dlq` could
/// otherwise write a "dead letter" that an operator's redrive would
/// publish, with the operator's rights, wherever its header says.
async fn check_origin(
    console: &Console,
    headers: &[(String, String)],
    topic: &str,
    dlq: &str,
) -> Result<(), ConsoleError> {
    if dead_letter::topic_for(topic) == dlq {
        return Ok(());
    }
    // A group with a dead-letter topic of its own.
    if let Some(group) = header(headers, dead_letter::GROUP) {
        if let Ok(info) = console.broker.group_info(group).await {
            let pattern = sluice_proto::Pattern::parse(&info.pattern).ok();
            if info.options.dead_letter_topic.as_deref() == Some(dlq)
                && pattern.is_some_and(|p| p.matches(topic))
            {
                return Ok(());
            }
        }
    }
    Err(ConsoleError::BadRequest(format!(
        "refused: this message names {topic:?} as its topic, whose dead letters do not go to {dlq:?}; it may not be a dead letter the broker wrote"
    )))
}

async fn redrive_one(
    console: &Console,
    signed: &Signed,
    dlq: &str,
    offset: u64,
) -> Result<MessageOutcome, ConsoleError> {
    let letter = read_one(console, dlq, offset).await?;
    let topic = header(&letter.headers, dead_letter::TOPIC)
        .ok_or_else(|| {
            ConsoleError::BadRequest(format!(
                "{dlq}@{offset} has no {} header: nowhere to redrive it",
                dead_letter::TOPIC
            ))
        })?
        .to_owned();
    check_origin(console, &letter.headers, &topic, dlq).await?;
    let mut headers: Vec<(String, String)> = letter
        .headers
        .into_iter()
        .filter(|(name, _)| !name.starts_with("sluice-dlq-") && name != REDRIVEN_FROM)
        .collect();
    headers.push((REDRIVEN_FROM.into(), format!("{dlq}@{offset}")));
    let message = PublishMessage {
        topic: topic.clone(),
        key: letter.key,
        headers,
        payload: letter.payload,
        id: Some(format!("sluice-redrive:{dlq}:{offset}")),
    };
    let outcome = publish_one(console, signed, message).await?;
    let to_offset = match &outcome {
        MessageOutcome::Stored(at) => at
            .iter()
            .find(|s| s.topic == topic)
            .or(at.first())
            .map(|s| s.offset),
        // Not stored (a plugin dropped, rejected or dead-lettered it
        // again): not redriven; the answer says what happened.
        _ => return Ok(outcome),
    };
    record(
        console,
        &Handled {
            dlq: dlq.to_owned(),
            offset,
            action: "redriven".into(),
            by: signed.principal.name.clone(),
            at_ms: now_ms(),
            to_topic: Some(topic),
            to_offset,
        },
    )
    .await?;
    Ok(outcome)
}

/// `POST /api/dead-letters/{topic}/redrive` with `{"offsets": [...]}`:
/// one result per offset, in order.
pub async fn redrive(
    State(console): State<Arc<Console>>,
    signed: Signed,
    Path(dlq): Path<String>,
    body: Result<Json<Selection>, JsonRejection>,
) -> Result<Json<Vec<Done>>, ConsoleError> {
    let offsets = selection(body)?;
    check_dead_letter_topic(&dlq)?;
    signed.check(&console, Action::Subscribe, &dlq)?;
    let mut done = Vec::with_capacity(offsets.len());
    for offset in offsets {
        let result = redrive_one(&console, &signed, &dlq, offset).await;
        done.push(Done::of(offset, result.map(Some)));
    }
    Ok(Json(done))
}

/// `POST /api/dead-letters/{topic}/discard` with `{"offsets": [...]}`.
pub async fn discard(
    State(console): State<Arc<Console>>,
    signed: Signed,
    Path(dlq): Path<String>,
    body: Result<Json<Selection>, JsonRejection>,
) -> Result<Json<Vec<Done>>, ConsoleError> {
    let offsets = selection(body)?;
    check_dead_letter_topic(&dlq)?;
    signed.check(&console, Action::Subscribe, &dlq)?;
    signed.check(
        &console,
        Action::Admin(AdminRight::Topics),
        "discard dead letters",
    )?;
    let mut done = Vec::with_capacity(offsets.len());
    for offset in offsets {
        let result = async {
            read_one(&console, &dlq, offset).await?;
            let entry = Handled {
                dlq: dlq.clone(),
                offset,
                action: "discarded".into(),
                by: signed.principal.name.clone(),
                at_ms: now_ms(),
                to_topic: None,
                to_offset: None,
            };
            record(&console, &entry).await
        }
        .await;
        done.push(Done::of(offset, result.map(|()| None)));
    }
    Ok(Json(done))
}
