//! One responder's unidirectional stream: a `Start` frame, then the
//! requests it is given as `Messages` frames (each message with its reply
//! token), then `End`. Requests are owned and few, so they are encoded as
//! they are: a frame holds what waits at once, up to
//! [`REQUESTS_PER_FRAME`] and about half a frame's bytes, and a request
//! that came in a publish-sized frame always fits one of its own (the
//! slack over `max_frame_bytes` that deliveries have).

use sluice_proto::{frame, Delivered, DeliveryFrame, ErrorBody, ErrorCode};
use tokio_util::sync::CancellationToken;

use crate::reply::Responder;
use crate::server::OUTGOING_SLACK_BYTES as FRAME_SLACK_BYTES;

/// Requests sent in one frame at most.
const REQUESTS_PER_FRAME: usize = 64;

/// Streams `responder`'s requests to the client as stream `id` until the
/// responder is cancelled or the client stops reading.
pub(crate) async fn run(
    conn: quinn::Connection,
    id: u64,
    mut responder: Responder,
    cancel: CancellationToken,
    shutting_down: CancellationToken,
    max_frame_bytes: u32,
) {
    let Ok(mut send) = conn.open_uni().await else {
        tracing::debug!(responder = id, "cannot open the responder's stream");
        return;
    };
    let limit = max_frame_bytes.saturating_add(FRAME_SLACK_BYTES);
    let mut buf = Vec::with_capacity(16 * 1024);
    let start = DeliveryFrame::Start { subscription: id };
    if frame::encode_into(&start, limit, &mut buf).is_err() || send.write_all(&buf).await.is_err() {
        return;
    }
    // A request taken from the queue that did not fit the last frame.
    let mut carried: Option<Delivered> = None;
    let end: Option<ErrorBody> = loop {
        let first = match carried.take() {
            Some(request) => request,
            None => tokio::select! {
                request = responder.next() => match request {
                    Some(request) => request,
                    None => break None,
                },
                () = cancel.cancelled() => break ended(&shutting_down),
                _ = send.stopped() => return,
            },
        };
        let (messages, left) = take_waiting(&mut responder, first, max_frame_bytes as usize / 2);
        carried = left;
        buf.clear();
        let batch = DeliveryFrame::Messages {
            messages,
            dropped: 0,
        };
        if let Err(e) = frame::encode_into(&batch, limit, &mut buf) {
            // Not expected: each request fitted a frame of the requester's.
            // Its requesters hear `no_responders` when this one ends.
            break Some(ErrorBody::new(ErrorCode::FrameTooLarge, e.to_string()));
        }
        // A client that does not read holds the write (flow control): an
        // unsubscribe or a shutdown still ends the stream.
        tokio::select! {
            written = send.write_all(&buf) => if written.is_err() { return },
            () = cancel.cancelled() => {
                let _ = send.reset(u32::from(ErrorCode::ShuttingDown.as_u16()).into());
                return;
            }
        }
    };
    buf.clear();
    if frame::encode_into(&DeliveryFrame::End { error: end }, limit, &mut buf).is_ok() {
        let _ = send.write_all(&buf).await;
    }
    let _ = send.finish();
    tracing::debug!(responder = id, "responder stream ended");
}

/// `first` and the requests waiting behind it, up to `target_bytes`
/// (`first` whatever its size); and the request taken that did not fit.
fn take_waiting(
    responder: &mut Responder,
    first: Delivered,
    target_bytes: usize,
) -> (Vec<Delivered>, Option<Delivered>) {
    let size = |d: &Delivered| {
        d.payload.len()
            + d.topic.len()
            + d.key.as_ref().map_or(0, |k| k.len())
            + d.headers
                .iter()
                .map(|(n, v)| n.len() + v.len() + 8)
                .sum::<usize>()
            + 32
    };
    let mut bytes = size(&first);
    let mut messages = vec![first];
    while messages.len() < REQUESTS_PER_FRAME {
        let Some(more) = responder.try_next() else {
            break;
        };
        bytes += size(&more);
        if bytes > target_bytes {
            return (messages, Some(more));
        }
        messages.push(more);
    }
    (messages, None)
}

/// How a responder's stream ends when it is cancelled.
fn ended(shutting_down: &CancellationToken) -> Option<ErrorBody> {
    shutting_down
        .is_cancelled()
        .then(|| ErrorBody::new(ErrorCode::ShuttingDown, "broker is shutting down"))
}
