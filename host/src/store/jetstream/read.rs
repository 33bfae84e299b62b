//! Reading a topic's stream: batched direct gets (ADR-31, `{"seq", "batch",
//! "max_bytes"}` to `$JS.API.DIRECT.GET.<stream>`), answered by any replica
//! with the messages from a sequence on, then an end-of-batch status.
//!
//! A follower may lag behind the leader: it answers with a prefix of what
//! is committed, which is never wrong, only short. When it has nothing from
//! the sequence asked for, the first message is read from the leader
//! (`STREAM.MSG.GET`), so a read of committed data always returns at least
//! one record, whichever node it goes through (a client reads what it
//! published through another node).

use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;

use super::envelope;
use super::topics::Topic;
use crate::nats::Nats;
use crate::store::{ReadBatch, Record, StoreError};

/// The header carrying a direct get's stream sequence.
const SEQUENCE_HEADER: &str = "Nats-Sequence";

#[derive(Serialize)]
struct DirectGet {
    seq: u64,
    batch: usize,
    max_bytes: usize,
}

/// Reads up to `max_records` (about `max_bytes` of payload, at least one
/// record when any is stored at or after `from`) of `topic` from offset
/// `from`.
pub(super) async fn read(
    nats: &Nats,
    topic: &Topic,
    from: u64,
    max_records: usize,
    max_bytes: usize,
) -> Result<ReadBatch, StoreError> {
    let records = direct_get(nats, topic, from, max_records.max(1), max_bytes.max(1)).await?;
    let records = if records.is_empty() {
        leader_get(nats, topic, from).await?.into_iter().collect()
    } else {
        records
    };
    let next_offset = records.last().map_or(from, |r| r.offset + 1);
    Ok(ReadBatch {
        records,
        next_offset,
    })
}

async fn direct_get(
    nats: &Nats,
    topic: &Topic,
    from: u64,
    batch: usize,
    max_bytes: usize,
) -> Result<Vec<Record>, StoreError> {
    let unavailable = |what: &str, e: &dyn std::fmt::Display| {
        StoreError::Unavailable(format!("{what} of stream {}: {e}", topic.stream))
    };
    let inbox = nats.client.new_inbox();
    let mut answers = nats
        .client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| unavailable("read", &e))?;
    let request = serde_json::to_vec(&DirectGet {
        seq: from + 1,
        batch,
        max_bytes,
    })
    .map_err(|e| unavailable("read", &e))?;
    nats.client
        .publish_with_reply(
            format!("$JS.API.DIRECT.GET.{}", topic.stream),
            inbox,
            request.into(),
        )
        .await
        .map_err(|e| unavailable("read", &e))?;
    let mut records = Vec::new();
    let deadline = tokio::time::Instant::now() + nats.request_timeout;
    loop {
        let Ok(answer) = tokio::time::timeout_at(deadline, answers.next()).await else {
            if records.is_empty() {
                return Err(unavailable("read", &"timed out"));
            }
            break; // what arrived is a valid prefix
        };
        let Some(message) = answer else {
            break;
        };
        if message.status.is_some() {
            // 204 end of batch, 404 nothing at or after the sequence, 408
            // and others: what arrived so far is the answer.
            break;
        }
        let Some(sequence) = message
            .headers
            .as_ref()
            .and_then(|h| h.get(SEQUENCE_HEADER))
            .and_then(|v| v.as_str().parse::<u64>().ok())
        else {
            break;
        };
        match envelope::decode(&topic.stream, sequence, &message.payload) {
            Ok(record) => {
                if records
                    .last()
                    .is_some_and(|r: &Record| r.offset + 1 != record.offset)
                {
                    break; // keep what is returned dense
                }
                records.push(record);
            }
            Err(e) => {
                tracing::warn!(topic = %topic.name, error = %e, "skipped");
                break;
            }
        }
        if records.len() >= batch {
            break;
        }
    }
    Ok(records)
}

/// The first message at or after offset `from`, from the stream's leader.
async fn leader_get(nats: &Nats, topic: &Topic, from: u64) -> Result<Option<Record>, StoreError> {
    let stream = nats
        .jetstream
        .get_stream_no_info(&topic.stream)
        .await
        .map_err(|e| StoreError::Unavailable(format!("stream {}: {e}", topic.stream)))?;
    let got = tokio::time::timeout(
        nats.request_timeout + Duration::from_secs(1),
        stream
            .raw_message_builder()
            .sequence(from + 1)
            .next_by_subject(topic.subject.clone())
            .send(),
    )
    .await
    .map_err(|_| StoreError::Unavailable(format!("read of stream {}: timed out", topic.stream)))?;
    match got {
        Ok(message) => envelope::decode(&topic.stream, message.sequence, &message.payload)
            .map(Some)
            .map_err(|e| StoreError::Unavailable(e.to_string())),
        // Nothing there any more: removed by retention.
        Err(e) if e.to_string().contains("not found") => Ok(None),
        Err(e) => Err(StoreError::Unavailable(format!(
            "read of stream {}: {e}",
            topic.stream
        ))),
    }
}

#[derive(Serialize)]
struct DirectGetByTime {
    start_time: String,
}

/// The first offset stored at or after `timestamp_ms` by the stream's own
/// clock (the time JetStream stored it), or the end of the topic when
/// every message is older.
pub(super) async fn offset_for_time(
    nats: &Nats,
    topic: &Topic,
    timestamp_ms: i64,
) -> Result<u64, StoreError> {
    let unavailable = |e: &dyn std::fmt::Display| {
        StoreError::Unavailable(format!("stream {}: {e}", topic.stream))
    };
    let at = std::time::UNIX_EPOCH + Duration::from_millis(timestamp_ms.max(0) as u64);
    let request = serde_json::to_vec(&DirectGetByTime {
        start_time: humantime::format_rfc3339_millis(at).to_string(),
    })
    .map_err(|e| unavailable(&e))?;
    let answer = tokio::time::timeout(
        nats.request_timeout,
        nats.client.request(
            format!("$JS.API.DIRECT.GET.{}", topic.stream),
            request.into(),
        ),
    )
    .await
    .map_err(|_| unavailable(&"timed out"))?
    .map_err(|e| unavailable(&e))?;
    if answer.status.is_none() {
        if let Some(sequence) = answer
            .headers
            .as_ref()
            .and_then(|h| h.get(SEQUENCE_HEADER))
            .and_then(|v| v.as_str().parse::<u64>().ok())
        {
            return Ok(sequence.saturating_sub(1));
        }
    }
    // Nothing at or after the time: the end.
    let mut stream = nats
        .jetstream
        .get_stream(&topic.stream)
        .await
        .map_err(|e| unavailable(&e))?;
    let info = stream.info().await.map_err(|e| unavailable(&e))?;
    Ok(info.state.last_sequence)
}
