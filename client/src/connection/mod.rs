//! [`Connection`]: one QUIC connection to one broker address. Requests are
//! pipelined on the control stream (any number in flight, answered by id,
//! in any order); each subscription's deliveries come on a unidirectional
//! stream of its own. A client goes through several connections when it
//! fails over (`crate::link`); each knows its generation, and tags what
//! it delivers with it.
//!
//! - [`handshake`]: dials the broker and exchanges `Hello` / `Welcome`.
//! - [`control`]: the tasks writing requests to and reading responses from
//!   the control stream.
//! - [`requests`]: the requests waiting for their answers. One that may go
//!   to another connection outlives its own: when the connection is lost
//!   it is handed over ([`Connection::unanswered`]) and the link sends it,
//!   in its first order, on the next one ([`Connection::adopt`]); its
//!   caller just waits for the answer.
//! - [`deliveries`]: the tasks reading the delivery streams and handing
//!   them to their subscriptions.

mod control;
mod deliveries;
mod handshake;
mod requests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sluice_proto::ErrorBody;
use tokio::sync::mpsc;

pub(crate) use deliveries::SubscriptionEvent;
pub(crate) use requests::{Reply, Resend, Unanswered};

use crate::error::ClientError;
use crate::options::ClientOptions;

/// Frames queued for the control stream before `submit` waits: enough to
/// keep a pipelining producer busy, small enough to bound memory.
const WRITE_QUEUE_FRAMES: usize = 1024;

/// Where a subscription's events go: each tagged with the generation of
/// the connection it came on.
pub(crate) type EventSender = mpsc::Sender<(u64, SubscriptionEvent)>;

/// State shared with the connection's background tasks.
struct Shared {
    /// Requests waiting for their response, and once the connection is
    /// lost, those for the next.
    requests: Mutex<requests::Requests>,
    /// Open subscriptions by id.
    subscriptions: Mutex<HashMap<u64, EventSender>>,
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
    max_frame_bytes: u32,
    server: String,
    /// The broker takes compact publishes.
    compact_publish: bool,
    /// The address dialed.
    address: String,
    /// Which of its client's connections this is (the first is 1).
    generation: u64,
    /// The task routing responses; it ends once the connection is gone.
    reader: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.conn.close(0u32.into(), b"client dropped");
    }
}

impl Connection {
    /// Connects to `address`, performs the handshake and starts the
    /// connection's background tasks.
    pub(crate) async fn open(
        options: &ClientOptions,
        address: &str,
        generation: u64,
    ) -> Result<Connection, ClientError> {
        let handshake::Established {
            endpoint,
            conn,
            send,
            reader,
            welcome,
        } = handshake::establish(options, address).await?;

        let shared = Arc::new(Shared {
            requests: Mutex::new(requests::Requests::new()),
            subscriptions: Mutex::new(HashMap::new()),
            failure: Mutex::new(None),
        });
        let (writer, queue) = mpsc::channel(WRITE_QUEUE_FRAMES);
        tokio::spawn(control::write_control(send, queue));
        let reader = tokio::spawn(control::read_control(reader, shared.clone(), conn.clone()));
        tokio::spawn(deliveries::accept_deliveries(
            conn.clone(),
            shared.clone(),
            options.max_frame_bytes,
            generation,
        ));

        Ok(Connection {
            endpoint,
            conn,
            writer,
            shared,
            max_frame_bytes: welcome.max_frame_bytes,
            compact_publish: welcome
                .features
                .iter()
                .any(|f| f == sluice_proto::FEATURE_COMPACT_PUBLISH),
            server: welcome.server,
            address: address.to_owned(),
            generation,
            reader: Mutex::new(Some(reader)),
        })
    }

    /// The broker's name and version, from the handshake.
    pub(crate) fn server(&self) -> &str {
        &self.server
    }

    /// The address this connection was dialed at.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// Which of its client's connections this is.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
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

    /// Sends one encoded request (whose id is `id`), to be answered on
    /// this connection or, as `resend` allows, on the next. An error means
    /// it was not sent and this connection takes nothing more.
    pub(crate) async fn submit(
        &self,
        id: u64,
        frame: Bytes,
        resend: Resend,
    ) -> Result<Reply, ClientError> {
        let placed = lock(&self.shared.requests).place(id, frame.clone(), resend);
        match placed {
            requests::Placed::Pending(reply) => {
                // A write that fails finds the connection gone: the
                // request is then handed over or failed with the others.
                let _ = self.writer.send(frame).await;
                Ok(reply)
            }
            requests::Placed::Kept(reply) => Ok(reply),
            requests::Placed::Gone => Err(self.closed_error()),
        }
    }

    /// Once the connection is gone: the requests it hands over to the next
    /// (none if it ended for good). It takes nothing more after this.
    pub(crate) async fn unanswered(&self) -> Unanswered {
        let reader = lock(&self.reader).take();
        if let Some(reader) = reader {
            let _ = reader.await;
        }
        lock(&self.shared.requests).take_left()
    }

    /// Sends `unanswered` (a lost connection's) here, in their first order,
    /// with the same ids; their callers get the answers from here. What
    /// this connection, gone too, cannot take is handed back.
    pub(crate) async fn adopt(&self, unanswered: Unanswered) -> Unanswered {
        let (frames, refused) =
            lock(&self.shared.requests).adopt_all(unanswered, self.max_frame_bytes);
        for frame in frames {
            if self.writer.send(frame).await.is_err() {
                break;
            }
        }
        refused
    }

    /// Queues an encoded request whose answer nobody waits for
    /// (unsubscribe on drop).
    pub(crate) fn submit_detached(&self, frame: Bytes) {
        let _ = self.writer.try_send(frame);
    }

    /// Hands the broker's delivery stream for subscription `id` to `events`.
    pub(crate) fn register_subscription(&self, id: u64, events: EventSender) {
        lock(&self.shared.subscriptions).insert(id, events);
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

    /// Why requests can no longer be answered here.
    pub(crate) fn closed_error(&self) -> ClientError {
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

/// Locks `m`, whether or not a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the maps in a
    // state worse than the panic itself; keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
