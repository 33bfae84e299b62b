//! One connection after its handshake: the control stream's requests,
//! each read in order and answered by id, and the connection's delivery
//! streams.
//!
//! Every request is answered one way: [`dispatch`] turns it into an
//! [`Answer`], either ready now or a future that [`Session::answer`] runs
//! on a task of its own (at most `limits.max_in_flight_requests` at once),
//! so the read loop goes on with the next frame. Publishes are appended in
//! the read loop, so a connection's publishes are stored in the order they
//! were sent; their acks are awaited on the task.
//!
//! # Layout
//!
//! - [`dispatch`]: what each request kind does.
//! - [`checks`]: rights and limits, checked before the broker is called.
//! - [`streams`]: subscriptions and group consumers, one stream each.

mod checks;
mod dispatch;
mod streams;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use sluice_client::wire::{FrameReader, WireError};
use sluice_proto::{
    frame, request_id_of, ClientFrame, CodecError, ErrorBody, ErrorCode, Response, ResponseBody,
    ServerFrame,
};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Shared;
use crate::auth::Principal;
use crate::broker::BrokerError;
use streams::Stream;

/// How a connection ends, and what the client is told.
pub(super) enum Close {
    /// The client finished its control stream or closed the connection.
    Client,
    /// The broker is shutting down.
    Shutdown,
    /// The client broke the protocol: an error frame and a close with its code.
    Refused(ErrorBody),
    /// The same, already logged (at a rate limit).
    RefusedQuietly(ErrorBody),
}

/// How a request is answered: now, or when a future completes.
pub(super) enum Answer {
    /// The answer is ready.
    Now(Result<ResponseBody, BrokerError>),
    /// Answered when this completes, on a task of its own.
    Later(BoxFuture<'static, Result<ResponseBody, BrokerError>>),
}

impl Answer {
    /// An answer that needs the broker's time: run it off the read loop.
    pub(super) fn later(
        work: impl std::future::Future<Output = Result<ResponseBody, BrokerError>> + Send + 'static,
    ) -> Answer {
        Answer::Later(Box::pin(work))
    }
}

/// The state of one connection after its handshake.
pub(super) struct Session {
    conn: quinn::Connection,
    shared: Arc<Shared>,
    writer: mpsc::Sender<Bytes>,
    in_flight: Arc<Semaphore>,
    requests: TaskTracker,
    deliveries: TaskTracker,
    /// Cancelled when the connection ends: ends every subscription.
    closing: CancellationToken,
    /// Cancelled when the control stream ends, before the requests read
    /// are awaited: requests waiting for a reply stop waiting.
    reading_done: CancellationToken,
    subscriptions: Arc<Mutex<HashMap<u64, Stream>>>,
    client_name: String,
    /// Who the client authenticated as.
    principal: Arc<Principal>,
    /// The client asked for compact delivery frames.
    compact: bool,
}

impl Session {
    pub(super) fn new(
        conn: quinn::Connection,
        shared: Arc<Shared>,
        writer: mpsc::Sender<Bytes>,
        client_name: String,
        principal: Arc<Principal>,
        compact: bool,
    ) -> Self {
        let in_flight = Arc::new(Semaphore::new(shared.config.limits.max_in_flight_requests));
        Session {
            conn,
            shared,
            writer,
            in_flight,
            requests: TaskTracker::new(),
            deliveries: TaskTracker::new(),
            closing: CancellationToken::new(),
            reading_done: CancellationToken::new(),
            subscriptions: Arc::new(Mutex::new(HashMap::new())),
            client_name,
            principal,
            compact,
        }
    }

    pub(super) async fn run(self, reader: &mut FrameReader) -> Close {
        let shutdown = self.shared.shutdown.clone();
        let outcome = loop {
            let permit = tokio::select! {
                permit = self.in_flight.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break Close::Client,
                },
                () = shutdown.cancelled() => break Close::Shutdown,
            };
            let body = tokio::select! {
                body = reader.next_body() => body,
                () = shutdown.cancelled() => break Close::Shutdown,
            };
            match body {
                Ok(Some(body)) => match frame::decode_body::<ClientFrame>(&body) {
                    Ok(ClientFrame::Request(request)) => {
                        let id = request.id;
                        let answer = self.dispatch(request.body).await;
                        self.answer(id, permit, answer).await;
                    }
                    Ok(ClientFrame::Hello(_)) => {
                        break Close::Refused(ErrorBody::new(
                            ErrorCode::ProtocolViolation,
                            "Hello sent twice",
                        ))
                    }
                    Err(e) => match request_id_of(&body) {
                        Some(id) => self.respond(id, Err(dispatch::unknown_request(e))).await,
                        None => {
                            break Close::Refused(ErrorBody::new(
                                ErrorCode::MalformedFrame,
                                e.to_string(),
                            ))
                        }
                    },
                },
                Ok(None) => break Close::Client,
                Err(WireError::Read(e)) => {
                    tracing::debug!(error = %e, "control stream lost");
                    break Close::Client;
                }
                Err(e) => break Close::Refused(wire_error_body(&e)),
            }
        };
        // Requests already read are answered (publishes stored and acked)
        // before the connection closes.
        self.reading_done.cancel();
        self.requests.close();
        self.requests.wait().await;
        self.closing.cancel();
        self.deliveries.close();
        self.deliveries.wait().await;
        outcome
    }

    /// Sends an answer: at once, or from a task of its own that holds the
    /// request's in-flight permit until it is sent.
    async fn answer(&self, id: u64, permit: OwnedSemaphorePermit, answer: Answer) {
        let max = self.shared.config.limits.max_frame_bytes;
        match answer {
            Answer::Now(result) => {
                respond(&self.writer, max, id, result.map_err(|e| e.to_body())).await;
            }
            Answer::Later(work) => {
                let writer = self.writer.clone();
                self.requests.spawn(async move {
                    let result = work.await.map_err(|e| e.to_body());
                    respond(&writer, max, id, result).await;
                    drop(permit);
                });
            }
        }
    }

    async fn respond(&self, id: u64, result: Result<ResponseBody, ErrorBody>) {
        let max = self.shared.config.limits.max_frame_bytes;
        respond(&self.writer, max, id, result).await;
    }
}

async fn respond(
    writer: &mpsc::Sender<Bytes>,
    max_frame: u32,
    id: u64,
    result: Result<ResponseBody, ErrorBody>,
) {
    // Responses may carry a message that filled a whole publish frame (a
    // fetch), plus its envelope: allow the same slack as deliveries.
    let max_frame = max_frame.saturating_add(super::OUTGOING_SLACK_BYTES);
    let frame = match frame::encode(&ServerFrame::Response(Response { id, result }), max_frame) {
        Ok(frame) => frame,
        Err(e) => {
            let error = ErrorBody::new(
                ErrorCode::Internal,
                format!("response could not be encoded: {e}"),
            );
            match frame::encode(
                &ServerFrame::Response(Response {
                    id,
                    result: Err(error),
                }),
                max_frame,
            ) {
                Ok(frame) => frame,
                Err(_) => return,
            }
        }
    };
    // A send error means the connection is gone; nobody is left to tell.
    let _ = writer.send(frame).await;
}

/// The error a broken frame gets.
pub(super) fn wire_error_body(e: &WireError) -> ErrorBody {
    match e {
        WireError::Codec(CodecError::TooLarge { len, max }) => ErrorBody::new(
            ErrorCode::FrameTooLarge,
            format!(
                "frame of {len} bytes is over the limit of {max} bytes (limits.max_frame_bytes)"
            ),
        ),
        WireError::Codec(other) => ErrorBody::new(ErrorCode::MalformedFrame, other.to_string()),
        WireError::Read(other) => ErrorBody::new(ErrorCode::MalformedFrame, other.to_string()),
    }
}
