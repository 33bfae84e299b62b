//! Errors of the client.

use sluice_proto::{CodecError, ErrorBody, ErrorCode, ResponseBody};

/// What can go wrong talking to a broker.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The options are not usable (bad address, unreadable CA file, ...).
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// The QUIC connection could not be set up.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address tried.
        addr: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The connection was lost or closed.
    #[error("connection lost: {0}")]
    Connection(quinn::ConnectionError),
    /// The broker answered with an error.
    #[error("broker refused: {0}")]
    Server(ErrorBody),
    /// The broker sent something this client did not expect.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A frame could not be encoded or decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A plugin on the broker did not let the message be stored as
    /// published: it was dropped, rejected or dead-lettered.
    #[error("message not stored: {}", describe(.0))]
    NotStored(sluice_proto::MessageOutcome),
    /// The client or its connection is closed.
    #[error("client is closed")]
    Closed,
    /// No answer in time.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The connection was lost and no broker address answered again
    /// within `reconnect_timeout`: every operation that waited fails with
    /// this, and subscriptions and consumers end with it.
    #[error(transparent)]
    Unreachable(Unreachable),
    /// A consumer-group delivery came on a connection that was lost since
    /// (or was lost while the settlement was on its way): it can no longer
    /// be settled. A settlement that reached the broker before the loss
    /// was applied; otherwise the broker released the delivery and the
    /// group delivers it again (to this consumer, which rejoined, or to
    /// another member): settle that delivery. Handling must be idempotent
    /// either way (at-least-once).
    #[error(
        "delivery {topic}@{offset} came on a connection that was lost: it cannot be settled any more; unless a settlement reached the broker before the loss, the group will deliver it again"
    )]
    DeliveryLost {
        /// The message's topic.
        topic: String,
        /// Its offset.
        offset: u64,
    },
}

/// Why a client stopped trying to reconnect: what was lost, why, and what
/// the attempts to reach a broker again ran into.
#[derive(Debug, Clone)]
pub struct Unreachable {
    /// The address whose connection was lost.
    pub lost: String,
    /// Why it was lost.
    pub cause: String,
    /// The broker's error code in `cause`, if it gave one (`shutting_down`).
    pub code: Option<ErrorCode>,
    /// The addresses the client tried.
    pub servers: String,
    /// How long it tried (`reconnect_timeout`).
    pub waited: std::time::Duration,
    /// What the last attempt ran into; `None` if reconnecting is off.
    pub last_attempt: Option<String>,
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "lost the connection to {} ({})", self.lost, self.cause)?;
        match &self.last_attempt {
            Some(last) => write!(
                f,
                " and no broker at {} answered within {:?} (last attempt: {last}); connect again once one is reachable",
                self.servers, self.waited
            ),
            None => write!(f, " (reconnecting is off)"),
        }
    }
}

impl std::error::Error for Unreachable {}

impl ClientError {
    /// The broker's stable error code, when the broker refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server(body) => body.error_code(),
            ClientError::NotStored(sluice_proto::MessageOutcome::Rejected(_)) => {
                Some(ErrorCode::Rejected)
            }
            ClientError::Unreachable(unreachable) => unreachable.code,
            ClientError::DeliveryLost { .. } => Some(ErrorCode::StaleSettle),
            _ => None,
        }
    }

    /// Whether this says the connection is gone (or going: the broker is
    /// shutting down) rather than answering what was asked: a reason to
    /// reconnect and, where that is safe, to ask again. A close by this
    /// client, or by the broker for a reason of its own (unauthorized, a
    /// protocol error), is not.
    pub(crate) fn is_connection_loss(&self) -> bool {
        match self {
            ClientError::Connection(e) => !matches!(e, quinn::ConnectionError::LocallyClosed),
            ClientError::Server(body) => body.error_code() == Some(ErrorCode::ShuttingDown),
            _ => false,
        }
    }

    /// The broker answered a request with a response of another kind.
    pub(crate) fn unexpected_response(body: ResponseBody) -> ClientError {
        ClientError::Protocol(format!("unexpected response {body:?}"))
    }
}

fn describe(outcome: &sluice_proto::MessageOutcome) -> String {
    use sluice_proto::MessageOutcome;
    match outcome {
        MessageOutcome::Stored(_) => "stored".into(),
        MessageOutcome::Dropped => "dropped by a plugin".into(),
        MessageOutcome::Rejected(reason) => format!("rejected: {reason}"),
        MessageOutcome::DeadLettered { reason, at } => {
            format!("dead-lettered to {}@{}: {reason}", at.topic, at.offset)
        }
    }
}

impl From<quinn::ConnectionError> for ClientError {
    /// A close by the broker with an error code carries the broker's reason:
    /// it becomes [`ClientError::Server`] so callers can match on the code.
    fn from(e: quinn::ConnectionError) -> Self {
        match &e {
            quinn::ConnectionError::ApplicationClosed(close)
                if close.error_code.into_inner() != 0 =>
            {
                ClientError::Server(ErrorBody {
                    code: u16::try_from(close.error_code.into_inner()).unwrap_or(u16::MAX),
                    message: String::from_utf8_lossy(&close.reason).into_owned(),
                })
            }
            _ => ClientError::Connection(e),
        }
    }
}

impl From<quinn::WriteError> for ClientError {
    fn from(e: quinn::WriteError) -> Self {
        match e {
            quinn::WriteError::ConnectionLost(c) => c.into(),
            other => ClientError::Protocol(format!("cannot write to the broker: {other}")),
        }
    }
}

impl From<quinn::ReadError> for ClientError {
    fn from(e: quinn::ReadError) -> Self {
        match e {
            quinn::ReadError::ConnectionLost(c) => c.into(),
            other => ClientError::Protocol(format!("cannot read from the broker: {other}")),
        }
    }
}

impl From<crate::wire::WireError> for ClientError {
    fn from(e: crate::wire::WireError) -> Self {
        match e {
            crate::wire::WireError::Read(r) => r.into(),
            crate::wire::WireError::Codec(c) => ClientError::Codec(c),
        }
    }
}
