//! One subscription's unidirectional delivery stream: a `Start` frame, then
//! `Messages` frames as the broker yields chunks, then `End`.
//!
//! Messages are encoded straight from the broker's shared batches through
//! borrowed mirror types of `sluice_proto::DeliveryFrame`, so fan-out to
//! many subscribers copies no payload before encoding. A chunk is encoded
//! and written one frame at a time, so what a stream holds encoded is one
//! frame whatever the chunk's size; a client that does not read holds the
//! stream in `write_all` (QUIC flow control), and the broker then stops
//! asking its source for chunks.

pub(crate) mod requests;

use std::borrow::Cow;

use serde::Serialize;
use sluice_proto::{frame, DeliveryFrame, ErrorBody, ErrorCode};
use tokio_util::sync::CancellationToken;

use crate::broker::{Chunk, DeliverySource};
use crate::store::Record;
use crate::trace::deliver::{self, Delivering};

/// Encoded payload bytes after which a delivery frame is sent.
const FRAME_TARGET_BYTES: usize = 256 * 1024;
use super::OUTGOING_SLACK_BYTES as FRAME_SLACK_BYTES;

/// Borrowed twin of `sluice_proto::Delivered`: same field names on the wire.
#[derive(Serialize)]
struct DeliveredRef<'a> {
    topic: &'a str,
    offset: u64,
    timestamp_ms: i64,
    #[serde(with = "serde_bytes")]
    key: Option<&'a [u8]>,
    headers: Cow<'a, [(String, String)]>,
    #[serde(with = "serde_bytes")]
    payload: &'a [u8],
    id: Option<&'a str>,
    attempt: u32,
}

/// Borrowed twin of `sluice_proto::CompactDelivered`: an array.
#[derive(Serialize)]
struct CompactRef<'a>(
    u64,
    i64,
    #[serde(with = "serde_bytes")] Option<&'a [u8]>,
    Cow<'a, [(String, String)]>,
    #[serde(with = "serde_bytes")] &'a [u8],
    Option<&'a str>,
    u32,
);

/// Borrowed twin of `sluice_proto::DeliveryRun`.
#[derive(Serialize)]
struct RunRef<'a> {
    topic: &'a str,
    messages: Vec<CompactRef<'a>>,
}

/// Borrowed twin of `sluice_proto::DeliveryFrame::{Messages, Compact}`.
#[derive(Serialize)]
enum DeliveryFrameRef<'a> {
    Messages {
        messages: Vec<DeliveredRef<'a>>,
        dropped: u64,
    },
    Compact {
        runs: Vec<RunRef<'a>>,
        dropped: u64,
    },
}

/// How messages are laid out in delivery frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// `Messages`: one named map per message (every client understands it).
    Named,
    /// `Compact`: the topic once per run, each message an array (clients
    /// that asked for `compact-delivery`): fewer bytes and less work on
    /// both ends for small messages.
    Compact,
}

/// Messages of one frame being built, in either layout.
enum Pending<'a> {
    Named(Vec<DeliveredRef<'a>>),
    Compact(Vec<RunRef<'a>>),
}

impl<'a> Pending<'a> {
    fn new(layout: Layout) -> Self {
        match layout {
            Layout::Named => Pending::Named(Vec::new()),
            Layout::Compact => Pending::Compact(Vec::new()),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Pending::Named(m) => m.is_empty(),
            Pending::Compact(runs) => runs.is_empty(),
        }
    }

    fn push(
        &mut self,
        topic: &'a str,
        r: &'a Record,
        headers: Cow<'a, [(String, String)]>,
        attempt: u32,
    ) {
        match self {
            Pending::Named(m) => m.push(delivered_ref(topic, r, headers, attempt)),
            Pending::Compact(runs) => {
                let m = CompactRef(
                    r.offset,
                    r.timestamp_ms,
                    r.key.as_deref(),
                    headers,
                    &r.payload,
                    r.id.as_deref(),
                    attempt,
                );
                match runs.last_mut() {
                    Some(run) if run.topic == topic => run.messages.push(m),
                    _ => runs.push(RunRef {
                        topic,
                        messages: vec![m],
                    }),
                }
            }
        }
    }

    fn into_frame(self, dropped: u64) -> DeliveryFrameRef<'a> {
        match self {
            Pending::Named(messages) => DeliveryFrameRef::Messages { messages, dropped },
            Pending::Compact(runs) => DeliveryFrameRef::Compact { runs, dropped },
        }
    }
}

fn delivered_ref<'a>(
    topic: &'a str,
    r: &'a Record,
    headers: Cow<'a, [(String, String)]>,
    attempt: u32,
) -> DeliveredRef<'a> {
    DeliveredRef {
        topic,
        offset: r.offset,
        timestamp_ms: r.timestamp_ms,
        key: r.key.as_deref(),
        headers,
        payload: &r.payload,
        id: r.id.as_deref(),
        attempt,
    }
}

/// What a message is taken to add to a frame, for splitting chunks into
/// frames before encoding.
fn estimate(topic: &str, record: &Record) -> usize {
    record.payload.len()
        + record.key.as_ref().map_or(0, |k| k.len())
        + record
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 8)
            .sum::<usize>()
        + record.id.as_ref().map_or(0, |id| id.len())
        + topic.len()
        + 64
}

/// A chunk being encoded, one delivery frame at a time.
struct ChunkFrames<'c> {
    chunk: &'c Chunk,
    max_frame_bytes: u32,
    layout: Layout,
    /// Where the next frame starts: slice, then record within its records.
    slice: usize,
    record: usize,
    /// Sent in the first frame.
    dropped: u64,
    /// The deliver spans of traced messages, when spans are on.
    delivering: Option<Delivering<'c>>,
}

impl<'c> ChunkFrames<'c> {
    fn new(
        chunk: &'c Chunk,
        max_frame_bytes: u32,
        layout: Layout,
        delivering: Option<Delivering<'c>>,
    ) -> Self {
        ChunkFrames {
            chunk,
            max_frame_bytes,
            layout,
            slice: 0,
            record: 0,
            dropped: chunk.dropped,
            delivering,
        }
    }

    /// Appends the next frame to `out`; `false` once the chunk is all
    /// encoded (a chunk with no messages and nothing dropped has no frame).
    fn next_frame(&mut self, out: &mut Vec<u8>) -> Result<bool, sluice_proto::CodecError> {
        let target = FRAME_TARGET_BYTES.min(self.max_frame_bytes as usize / 2);
        let mut pending = Pending::new(self.layout);
        let mut size = 0;
        while let Some(slice) = self.chunk.slices.get(self.slice) {
            let Some(record) = slice.records().get(self.record) else {
                self.slice += 1;
                self.record = 0;
                continue;
            };
            let estimate = estimate(&slice.batch.topic, record);
            if !pending.is_empty() && size + estimate > target {
                break;
            }
            size += estimate;
            let headers = match &mut self.delivering {
                Some(d) => d.headers(&slice.batch.topic, record, slice.attempt),
                None => Cow::Borrowed(record.headers.as_slice()),
            };
            pending.push(&slice.batch.topic, record, headers, slice.attempt);
            self.record += 1;
        }
        if pending.is_empty() && self.dropped == 0 {
            return Ok(false);
        }
        let limit = self.max_frame_bytes.saturating_add(FRAME_SLACK_BYTES);
        let frame = pending.into_frame(std::mem::take(&mut self.dropped));
        frame::encode_into(&frame, limit, out)?;
        Ok(true)
    }
}

/// Encodes a whole chunk into `out` (tests look at every frame at once).
#[cfg(test)]
fn encode_chunk(
    chunk: &Chunk,
    max_frame_bytes: u32,
    layout: Layout,
    out: &mut Vec<u8>,
) -> Result<(), sluice_proto::CodecError> {
    let mut frames = ChunkFrames::new(chunk, max_frame_bytes, layout, None);
    while frames.next_frame(out)? {}
    Ok(())
}

/// Why writing a chunk stopped short.
enum Unwritten {
    /// The chunk could not be encoded: the stream ends with this error.
    Encode(ErrorBody),
    /// The client stopped reading or left, or the stream was cancelled
    /// while a write waited: nothing more can be sent.
    Gone,
}

/// Writes a chunk frame by frame, reusing `buf`.
async fn write_chunk(
    send: &mut quinn::SendStream,
    chunk: &Chunk,
    settings: &StreamSettings,
    cancel: &CancellationToken,
    buf: &mut Vec<u8>,
) -> Result<(), Unwritten> {
    let delivering = settings
        .observer
        .spans
        .is_on()
        .then(|| Delivering::new(&settings.observer, &settings.receiver));
    let mut frames = ChunkFrames::new(chunk, settings.max_frame_bytes, settings.layout, delivering);
    loop {
        buf.clear();
        match frames.next_frame(buf) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(e) => {
                return Err(Unwritten::Encode(ErrorBody::new(
                    ErrorCode::Internal,
                    format!("cannot encode delivery: {e}"),
                )))
            }
        }
        tokio::select! {
            written = send.write_all(buf) => {
                if written.is_err() {
                    // The client stopped reading (unsubscribed) or left.
                    return Err(Unwritten::Gone);
                }
            },
            // A client that does not read must not hold up unsubscribe or
            // shutdown.
            () = cancel.cancelled() => {
                let _ = send.reset(u32::from(ErrorCode::ShuttingDown.as_u16()).into());
                return Err(Unwritten::Gone);
            }
        }
    }
}

/// Why a delivery stream ended, as told to the client.
pub(crate) enum EndReason {
    Unsubscribed,
    ShuttingDown,
}

/// What every delivery stream of a connection shares.
pub(crate) struct StreamSettings {
    /// The connection's frame limit.
    pub max_frame_bytes: u32,
    /// How messages are laid out (the client's `Hello` decides).
    pub layout: Layout,
    /// Where delivered messages are counted.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Spans of traced messages and the event record.
    pub observer: std::sync::Arc<crate::trace::Observer>,
    /// Who receives, for the record and the spans.
    pub receiver: std::sync::Arc<crate::trace::Receiver>,
}

/// Runs one subscription's stream until the client stops it, the
/// subscription is cancelled, or the connection goes.
pub(crate) async fn run<S: DeliverySource>(
    conn: quinn::Connection,
    id: u64,
    mut subscription: S,
    cancel: CancellationToken,
    shutting_down: CancellationToken,
    settings: StreamSettings,
) {
    let max_frame_bytes = settings.max_frame_bytes;
    let mut send = match conn.open_uni().await {
        Ok(send) => send,
        Err(e) => {
            tracing::debug!(subscription = id, error = %e, "cannot open delivery stream");
            return;
        }
    };
    let mut buf = Vec::with_capacity(64 * 1024);
    if frame::encode_into(
        &DeliveryFrame::Start { subscription: id },
        max_frame_bytes,
        &mut buf,
    )
    .is_err()
        || send.write_all(&buf).await.is_err()
    {
        return;
    }
    let end: Option<ErrorBody> = loop {
        tokio::select! {
            chunk = subscription.next_chunk() => match chunk {
                Ok(chunk) => match write_chunk(&mut send, &chunk, &settings, &cancel, &mut buf).await {
                    Ok(()) => {
                        deliver::delivered(&settings.observer, &settings.receiver, &chunk);
                        for slice in &chunk.slices {
                            let records = slice.records();
                            settings.metrics.delivered(
                                &slice.batch.topic,
                                records.len(),
                                records.iter().map(|r| r.payload.len()).sum(),
                            );
                        }
                    }
                    Err(Unwritten::Encode(error)) => break Some(error),
                    Err(Unwritten::Gone) => return,
                },
                Err(e) => break Some(e.to_body()),
            },
            () = cancel.cancelled() => {
                break match if shutting_down.is_cancelled() { EndReason::ShuttingDown } else { EndReason::Unsubscribed } {
                    EndReason::ShuttingDown => Some(ErrorBody::new(ErrorCode::ShuttingDown, "broker is shutting down")),
                    EndReason::Unsubscribed => None,
                };
            }
            _ = send.stopped() => return,
        }
    };
    buf.clear();
    if frame::encode_into(
        &DeliveryFrame::End { error: end },
        max_frame_bytes,
        &mut buf,
    )
    .is_ok()
    {
        let _ = send.write_all(&buf).await;
    }
    let _ = send.finish();
    tracing::debug!(subscription = id, source = %subscription.describe(), "delivery stream ended");
}

#[cfg(test)]
mod tests;
