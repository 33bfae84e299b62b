//! The delivery streams: the broker opens one unidirectional stream per
//! subscription; a task per stream reads its frames and hands them, as
//! [`SubscriptionEvent`]s tagged with the connection's generation, to the
//! subscription registered under the id the stream starts with. A stream
//! cut by the loss of the connection says nothing: the subscription goes
//! on over the next connection.

use std::sync::Arc;

use sluice_proto::{Delivered, DeliveryFrame, ErrorBody};

use super::{lock, Shared};
use crate::wire::{FrameReader, WireError};

/// What the delivery-stream reader hands to a subscription.
#[derive(Debug)]
pub(crate) enum SubscriptionEvent {
    Messages {
        messages: Vec<Delivered>,
        dropped: u64,
    },
    End(Option<ErrorBody>),
    Failed(String),
}

/// Accepts the broker's delivery streams and hands each to its subscription.
pub(super) async fn accept_deliveries(
    conn: quinn::Connection,
    shared: Arc<Shared>,
    max_frame_bytes: u32,
    generation: u64,
) {
    while let Ok(stream) = conn.accept_uni().await {
        tokio::spawn(read_deliveries(
            FrameReader::new(stream, max_frame_bytes),
            shared.clone(),
            generation,
        ));
    }
    // Connection gone: the subscriptions no longer hear from it.
    lock(&shared.subscriptions).clear();
}

async fn read_deliveries(mut reader: FrameReader, shared: Arc<Shared>, generation: u64) {
    let id = match reader.next_frame::<DeliveryFrame>().await {
        Ok(Some(DeliveryFrame::Start { subscription })) => subscription,
        _ => {
            let _ = reader.stream_mut().stop(0u32.into());
            return;
        }
    };
    let Some(tx) = lock(&shared.subscriptions).get(&id).cloned() else {
        let _ = reader.stream_mut().stop(0u32.into());
        return;
    };
    loop {
        let event = match reader.next_frame::<DeliveryFrame>().await {
            Ok(Some(DeliveryFrame::Messages { messages, dropped })) => {
                SubscriptionEvent::Messages { messages, dropped }
            }
            Ok(Some(DeliveryFrame::Compact { runs, dropped })) => SubscriptionEvent::Messages {
                messages: runs.into_iter().flat_map(|r| r.into_delivered()).collect(),
                dropped,
            },
            Ok(Some(DeliveryFrame::End { error })) => SubscriptionEvent::End(error),
            Ok(Some(DeliveryFrame::Start { .. })) => {
                SubscriptionEvent::Failed("delivery stream started twice".into())
            }
            Ok(None) => SubscriptionEvent::End(None),
            // The broker resets a stream it cannot finish (shutdown while
            // this client was not reading): its code says why.
            Err(WireError::Read(quinn::ReadError::Reset(code))) => {
                SubscriptionEvent::End(Some(ErrorBody {
                    code: u16::try_from(code.into_inner()).unwrap_or(u16::MAX),
                    message: "the broker ended this delivery stream".into(),
                }))
            }
            // The connection went: whoever resumes the subscription says
            // what happens next.
            Err(WireError::Read(quinn::ReadError::ConnectionLost(_))) => return,
            Err(e) => SubscriptionEvent::Failed(e.to_string()),
        };
        let last = !matches!(event, SubscriptionEvent::Messages { .. });
        if tx.send((generation, event)).await.is_err() {
            let _ = reader.stream_mut().stop(0u32.into());
            return;
        }
        if last {
            return;
        }
    }
}
