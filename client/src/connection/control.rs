//! The control stream's two tasks: one writes queued request frames, the
//! other routes each response to the request waiting for it.

use std::sync::Arc;

use bytes::Bytes;
use sluice_proto::{ErrorBody, ServerFrame};
use tokio::sync::mpsc;

use super::{gone_error, lock, Shared};
use crate::wire::FrameReader;

/// Frames written at most in one call.
const WRITE_BATCH_FRAMES: usize = 64;

/// Writes queued frames, coalescing whatever is queued into one write.
pub(super) async fn write_control(mut send: quinn::SendStream, mut queue: mpsc::Receiver<Bytes>) {
    let mut batch = Vec::with_capacity(WRITE_BATCH_FRAMES);
    while queue.recv_many(&mut batch, WRITE_BATCH_FRAMES).await > 0 {
        if send.write_all_chunks(&mut batch).await.is_err() {
            return;
        }
        batch.clear();
    }
    let _ = send.finish();
}

/// Routes responses to their waiting requests until the stream ends; then
/// the requests are handed over to the next connection or failed (see
/// [`Requests::end`](super::requests::Requests::end)).
pub(super) async fn read_control(
    mut reader: FrameReader,
    shared: Arc<Shared>,
    reader_conn: quinn::Connection,
) {
    let failure: Option<ErrorBody> = loop {
        match reader.next_frame::<ServerFrame>().await {
            Ok(Some(ServerFrame::Response(response))) => {
                lock(&shared.requests).answer(response);
            }
            Ok(Some(ServerFrame::Error(error))) => break Some(error),
            Ok(Some(ServerFrame::Welcome(_))) => {
                tracing::warn!("broker sent a second Welcome; closing");
                break None;
            }
            Ok(None) => break None,
            Err(e) => {
                tracing::debug!(error = %e, "control stream ended");
                break None;
            }
        }
    };
    if let Some(failure) = &failure {
        *lock(&shared.failure) = Some(failure.clone());
    }
    let lost = gone_error(failure.clone(), &reader_conn).is_connection_loss();
    lock(&shared.requests).end(lost, || gone_error(failure.clone(), &reader_conn));
}
