//! [`Link`]: a client's hold on its broker (or the nodes of a cluster)
//! across connections. It sends each request on the current
//! [`Connection`], waits for the next one while the client reconnects,
//! and sends again what a lost connection left unanswered where that is
//! safe; it keeps what must be redone on a new connection: the client's
//! subscriptions and consumers.
//!
//! - [`dial`]: connects to the first address of the list that answers.
//! - [`supervise`]: notices a lost connection, reconnects (round robin,
//!   bounded backoff, `reconnect_timeout` in all) and resumes the streams.
//! - [`streams`]: the subscriptions and consumers to resume, and the
//!   handle each holds ([`StreamHandle`]).
//!
//! The link is the only owner of connections above `connection`; the
//! client's types hold the link, never a connection.

mod dial;
mod streams;
mod supervise;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sluice_proto::{
    frame, ClientFrame, CodecError, ErrorBody, Request, RequestBody, ResponseBody, RolloutRequest,
};
use tokio::sync::watch;

pub(crate) use streams::{Batch, Opening, Position, StreamHandle};

use crate::connection::{lock, Connection, Resend, Unanswered};
use crate::error::{ClientError, Unreachable};
use crate::options::ClientOptions;
use streams::StreamEntry;

/// Where the link stands.
#[derive(Clone)]
enum State {
    /// Requests go to this connection.
    Up(Arc<Connection>),
    /// This connection was lost; the link is reconnecting.
    Reconnecting(Arc<Connection>),
    /// The link will not connect again: `end` says why.
    Over { last: Arc<Connection>, end: End },
}

impl State {
    fn connection(&self) -> &Arc<Connection> {
        match self {
            State::Up(c) | State::Reconnecting(c) | State::Over { last: c, .. } => c,
        }
    }
}

/// Why a link is over.
#[derive(Debug, Clone)]
enum End {
    /// The application closed the client.
    Closed,
    /// The broker closed the connection for a reason of its own
    /// (unauthorized, a protocol error): connecting again would not help.
    Refused(ErrorBody),
    /// No broker answered within `reconnect_timeout`.
    Unreachable(Unreachable),
}

impl End {
    /// The error that waiting operations fail with.
    fn error(&self) -> ClientError {
        match self {
            End::Closed => ClientError::Closed,
            End::Refused(body) => ClientError::Server(body.clone()),
            End::Unreachable(unreachable) => ClientError::Unreachable(unreachable.clone()),
        }
    }
}

/// A client's connection to its broker, replaced when it is lost.
pub(crate) struct Link {
    options: ClientOptions,
    /// The addresses of `options.server`.
    servers: Vec<String>,
    state: watch::Sender<State>,
    /// The subscriptions and consumers to resume on a new connection.
    streams: Mutex<HashMap<u64, Arc<StreamEntry>>>,
    /// While the link reconnects: the requests made meanwhile, sent in
    /// their order on the next connection.
    held: Mutex<Option<Unanswered>>,
    /// Request ids, unique across the link's connections, so that a
    /// request is sent again as the same frame.
    next_request: AtomicU64,
    /// Subscription and consumer ids, kept across connections.
    next_stream: AtomicU64,
    next_generation: AtomicU64,
}

impl Link {
    /// Connects to the first address of `options.server` that answers and
    /// starts watching the connection.
    pub(crate) async fn connect(options: ClientOptions) -> Result<Arc<Link>, ClientError> {
        let servers = options.servers()?;
        if options.idle_timeout.is_zero() {
            return Err(ClientError::Config(
                "idle_timeout must be above zero: it is how long a silent connection lasts before it counts as lost".into(),
            ));
        }
        let first = dial::first_answering(&options, &servers, 0, 1, None).await?;
        let quic = first.quic().clone();
        let link = Arc::new(Link {
            options,
            servers,
            state: watch::Sender::new(State::Up(Arc::new(first))),
            streams: Mutex::new(HashMap::new()),
            held: Mutex::new(None),
            next_request: AtomicU64::new(1),
            next_stream: AtomicU64::new(1),
            next_generation: AtomicU64::new(2),
        });
        tokio::spawn(supervise::run(Arc::downgrade(&link), quic));
        Ok(link)
    }

    /// The current connection, or the last one if the link is between
    /// connections or over.
    pub(crate) fn current(&self) -> Arc<Connection> {
        self.state.borrow().connection().clone()
    }

    /// The generation of the current (or last) connection.
    pub(crate) fn generation(&self) -> u64 {
        self.state.borrow().connection().generation()
    }

    /// The connection of `generation` if it is still the one requests go to.
    pub(crate) fn connection_of(&self, generation: u64) -> Option<Arc<Connection>> {
        match &*self.state.borrow() {
            State::Up(c) if c.generation() == generation => Some(c.clone()),
            _ => None,
        }
    }

    /// The connection requests go to once it is newer than generation
    /// `newer_than`: waits while the link reconnects; fails once it gave up.
    async fn connected(&self, newer_than: u64) -> Result<Arc<Connection>, ClientError> {
        // Up is the usual case: no wait, nor a turn of the task's budget
        // (which could let a later request overtake this one).
        if let State::Up(conn) = &*self.state.borrow() {
            if conn.generation() > newer_than {
                return Ok(conn.clone());
            }
        }
        let mut state = self.state.subscribe();
        let state = state
            .wait_for(|s| match s {
                State::Up(c) => c.generation() > newer_than,
                State::Reconnecting(_) => false,
                State::Over { .. } => true,
            })
            .await
            .map_err(|_| ClientError::Closed)?;
        match &*state {
            State::Over { end, .. } => Err(end.error()),
            other => Ok(other.connection().clone()),
        }
    }

    /// Sends one request and waits for its response, over whichever
    /// connection is current; while the link reconnects, it waits in line.
    /// If the connection is lost before the answer, a request that may be
    /// carried out twice ([`replayable`]: a publish is, since its messages
    /// carry ids) goes again on the next connection; any other fails with
    /// the loss. On the next connection, what is sent again and what waited
    /// goes out in the order it was first asked for, before anything new.
    pub(crate) async fn request(&self, body: RequestBody) -> Result<ResponseBody, ClientError> {
        let resend = if replayable(&body) {
            Resend::Unanswered
        } else {
            Resend::Unsent
        };
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let frame = encode(id, body, self.current().max_frame_bytes())?;
        let mut newer_than = 0;
        loop {
            let held = lock(&self.held)
                .as_mut()
                .map(|held| held.hold(id, frame.clone(), resend));
            if let Some(reply) = held {
                return reply.answer().await;
            }
            let conn = self.connected(newer_than).await?;
            fits(&frame, conn.max_frame_bytes())?;
            match conn.submit(id, frame.clone(), resend).await {
                Ok(reply) => return reply.answer().await,
                Err(e) => {
                    tracing::debug!(request = id, error = %e, "not sent: the connection is gone; sending on the next");
                    newer_than = conn.generation();
                }
            }
        }
    }

    /// Sends one request on `conn` only: its answer, or why none came.
    pub(crate) async fn request_on(
        &self,
        conn: &Connection,
        body: RequestBody,
    ) -> Result<ResponseBody, ClientError> {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let frame = encode(id, body, conn.max_frame_bytes())?;
        conn.submit(id, frame, Resend::Never).await?.answer().await
    }

    /// Closes the current connection (waiting briefly for the close to
    /// reach the broker) and stops reconnecting.
    pub(crate) async fn close(&self) {
        let conn = self.current();
        self.finish(End::Closed);
        conn.close().await;
    }

    /// Ends the link: waiting requests fail with `end`'s error, and so do
    /// the streams (quietly for a close by the application).
    fn finish(&self, end: End) {
        let mut already_over = false;
        self.state.send_modify(|state| {
            if let State::Over { .. } = state {
                already_over = true;
                return;
            }
            let last = state.connection().clone();
            *state = State::Over {
                last,
                end: end.clone(),
            };
        });
        if already_over {
            return;
        }
        if let Some(held) = lock(&self.held).take() {
            held.fail(|| end.error());
        }
        let entries: Vec<Arc<StreamEntry>> = lock(&self.streams).drain().map(|(_, e)| e).collect();
        for entry in entries {
            match &end {
                End::Closed => {}
                other => entry.end_with(other.error()),
            }
        }
    }
}

/// Whether asking again after a lost connection is harmless though the
/// first request may have been carried out: reads, and publishes (their
/// messages carry ids, so the broker stores them once). Administrative
/// changes and settlements are not sent again; they fail with the loss.
fn replayable(body: &RequestBody) -> bool {
    match body {
        RequestBody::Publish(_)
        | RequestBody::PublishCompact(_)
        | RequestBody::Fetch(_)
        | RequestBody::ListTopics
        | RequestBody::TopicInfo { .. }
        | RequestBody::Ping
        | RequestBody::ListGroups
        | RequestBody::GroupInfo { .. }
        | RequestBody::ListPlugins
        | RequestBody::Rollout(RolloutRequest::Status { .. })
        | RequestBody::Trace(_) => true,
        RequestBody::Subscribe(_)
        | RequestBody::Unsubscribe { .. }
        | RequestBody::CreateTopic(_)
        | RequestBody::DeleteTopic { .. }
        | RequestBody::Consume(_)
        | RequestBody::Settle(_)
        | RequestBody::SettleBatch(_)
        | RequestBody::ResetGroup { .. }
        | RequestBody::DeployPlugin { .. }
        | RequestBody::Rollout(_)
        // A request may have reached its responders; its reply token dies
        // with the broker's memory of it.
        | RequestBody::Respond(_)
        | RequestBody::Ask(_)
        | RequestBody::Reply(_) => false,
    }
}

/// The frame of request `id`.
fn encode(id: u64, body: RequestBody, max_frame_bytes: u32) -> Result<Bytes, ClientError> {
    Ok(frame::encode(
        &ClientFrame::Request(Request { id, body }),
        max_frame_bytes,
    )?)
}

/// Whether `frame`, encoded for one connection, fits the limit of another.
fn fits(frame: &Bytes, max_frame_bytes: u32) -> Result<(), ClientError> {
    let len = (frame.len() - frame::LENGTH_PREFIX_BYTES) as u64;
    if len > u64::from(max_frame_bytes) {
        return Err(CodecError::TooLarge {
            len,
            max: max_frame_bytes,
        }
        .into());
    }
    Ok(())
}
