//! [`Connection`]: one QUIC connection to a broker, shared by a
//! [`Client`](crate::Client) and every subscription and consumer made from
//! it. Requests are pipelined on the control stream (any number in flight,
//! answered by id, in any order); each subscription's deliveries come on a
//! unidirectional stream of its own.
//!
//! - [`handshake`]: dials the broker and exchanges `Hello` / `Welcome`.
//! - [`control`]: the tasks writing requests to and reading responses from
//!   the control stream.
//! - [`deliveries`]: the tasks reading the delivery streams and handing
//!   them to their subscriptions.

mod control;
mod deliveries;
mod handshake;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sluice_proto::{frame, ClientFrame, ErrorBody, Request, RequestBody, ResponseBody};
use tokio::sync::{mpsc, oneshot};

pub(crate) use deliveries::SubscriptionEvent;

use crate::error::ClientError;
use crate::options::ClientOptions;

/// Frames queued for the control stream before `request` waits: enough to
/// keep a pipelining producer busy, small enough to bound memory.
const WRITE_QUEUE_FRAMES: usize = 1024;
/// Delivery frames buffered per subscription before the client stops
/// reading its stream (QUIC flow control then slows the broker's sender).
const SUBSCRIPTION_QUEUE_FRAMES: usize = 64;

type Pending = HashMap<u64, oneshot::Sender<Result<ResponseBody, ClientError>>>;

/// State shared with the connection's background tasks.
struct Shared {
    /// Requests waiting for their response; `None` once the connection is gone.
    pending: Mutex<Option<Pending>>,
    /// Open subscriptions by id.
    subscriptions: Mutex<HashMap<u64, mpsc::Sender<SubscriptionEvent>>>,
    /// Why the broker ended the session, if it said.
    failure: Mutex<Option<ErrorBody>>,
}

/// An open connection after the handshake, with its background tasks
/// running. Dropping it closes the connection.
pub(crate) struct Connection {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    writer: mpsc::Sender<Bytes>,
    shared: Arc<Shared>,
    next_request: AtomicU64,
    next_subscription: AtomicU64,
    max_frame_bytes: u32,
    server: String,
    /// The broker takes compact publishes.
    compact_publish: bool,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.conn.close(0u32.into(), b"client dropped");
    }
}

impl Connection {
    /// Connects, performs the handshake and starts the connection's
    /// background tasks.
    pub(crate) async fn open(options: &ClientOptions) -> Result<Connection, ClientError> {
        let handshake::Established {
            endpoint,
            conn,
            send,
            reader,
            welcome,
        } = handshake::establish(options).await?;

        let shared = Arc::new(Shared {
            pending: Mutex::new(Some(HashMap::new())),
            subscriptions: Mutex::new(HashMap::new()),
            failure: Mutex::new(None),
        });
        let (writer, queue) = mpsc::channel(WRITE_QUEUE_FRAMES);
        tokio::spawn(control::write_control(send, queue));
        tokio::spawn(control::read_control(reader, shared.clone(), conn.clone()));
        tokio::spawn(deliveries::accept_deliveries(
            conn.clone(),
            shared.clone(),
            options.max_frame_bytes,
        ));

        Ok(Connection {
            endpoint,
            conn,
            writer,
            shared,
            next_request: AtomicU64::new(1),
            next_subscription: AtomicU64::new(1),
            max_frame_bytes: welcome.max_frame_bytes,
            compact_publish: welcome
                .features
                .iter()
                .any(|f| f == sluice_proto::FEATURE_COMPACT_PUBLISH),
            server: welcome.server,
        })
    }

    /// The broker's name and version, from the handshake.
    pub(crate) fn server(&self) -> &str {
        &self.server
    }

    /// The largest frame the broker accepts.
    pub(crate) fn max_frame_bytes(&self) -> u32 {
        self.max_frame_bytes
    }

    /// The underlying QUIC connection.
    pub(crate) fn quic(&self) -> &quinn::Connection {
        &self.conn
    }

    /// True if the broker takes compact publishes.
    pub(crate) fn compact_publish(&self) -> bool {
        self.compact_publish
    }

    /// Sends one request and waits for its response.
    pub(crate) async fn request(&self, body: RequestBody) -> Result<ResponseBody, ClientError> {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let frame = frame::encode(
            &ClientFrame::Request(Request { id, body }),
            self.max_frame_bytes,
        )?;
        let (tx, rx) = oneshot::channel();
        match lock(&self.shared.pending).as_mut() {
            Some(pending) => pending.insert(id, tx),
            None => return Err(self.closed_error()),
        };
        if self.writer.send(frame).await.is_err() {
            if let Some(pending) = lock(&self.shared.pending).as_mut() {
                pending.remove(&id);
            }
            return Err(self.closed_error());
        }
        rx.await.map_err(|_| self.closed_error())?
    }

    /// Queues a request whose answer nobody waits for (unsubscribe on drop).
    pub(crate) fn request_detached(&self, body: RequestBody) {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        if let Ok(frame) = frame::encode(
            &ClientFrame::Request(Request { id, body }),
            self.max_frame_bytes,
        ) {
            let _ = self.writer.try_send(frame);
        }
    }

    /// A new subscription id, and the events the delivery reader will hand
    /// to it once the broker opens its stream.
    pub(crate) fn register_subscription(&self) -> (u64, mpsc::Receiver<SubscriptionEvent>) {
        let id = self.next_subscription.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_QUEUE_FRAMES);
        lock(&self.shared.subscriptions).insert(id, tx);
        (id, rx)
    }

    /// Forgets a subscription; false if it was already gone (ended, or the
    /// connection closed).
    pub(crate) fn unregister_subscription(&self, id: u64) -> bool {
        lock(&self.shared.subscriptions).remove(&id).is_some()
    }

    /// Closes the connection and waits (briefly) for the close to reach the
    /// broker.
    pub(crate) async fn close(&self) {
        self.conn.close(0u32.into(), b"client closed");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }

    fn closed_error(&self) -> ClientError {
        let failure = lock(&self.shared.failure).clone();
        gone_error(failure, &self.conn)
    }
}

/// Why requests can no longer be answered: the broker's stated reason if
/// it gave one, else how the connection closed.
fn gone_error(failure: Option<ErrorBody>, conn: &quinn::Connection) -> ClientError {
    if let Some(failure) = failure {
        return ClientError::Server(failure);
    }
    match conn.close_reason() {
        Some(reason) => reason.into(),
        None => ClientError::Closed,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the maps in a
    // state worse than the panic itself; keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
