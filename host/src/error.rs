//! [`BrokerError`]: why a request failed, with its stable wire code. The
//! broker, the consumer groups and the server answer with it.

use sluice_proto::{ErrorBody, ErrorCode, SubjectError};

use crate::store::StoreError;

/// Why a broker operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// A topic name is not valid.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopic {
        /// The name.
        name: String,
        /// Why.
        reason: SubjectError,
    },
    /// A pattern is not valid.
    #[error("invalid pattern {pattern:?}: {reason}")]
    InvalidPattern {
        /// The pattern.
        pattern: String,
        /// Why.
        reason: SubjectError,
    },
    /// No such topic, and it is not auto-created.
    #[error("topic {0:?} does not exist (create it first, or enable topics.auto_create)")]
    TopicNotFound(String),
    /// The topic exists already.
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    /// A request argument is out of range.
    #[error("{0}")]
    InvalidArgument(String),
    /// The log failed.
    #[error("storage failure on topic {topic:?}: {source}")]
    Storage {
        /// The topic.
        topic: String,
        /// The store's error.
        source: StoreError,
    },
    /// A configured limit was reached.
    #[error("{0}")]
    LimitExceeded(String),
    /// The subscription id is already used on this connection.
    #[error("subscription id {0} is already in use on this connection")]
    SubscriptionExists(u64),
    /// No subscription or consumer with this id on the connection.
    #[error("no subscription {0} on this connection")]
    UnknownSubscription(u64),
    /// A consumer group name is not valid.
    #[error("invalid group name {name:?}: {reason}")]
    InvalidGroup {
        /// The name.
        name: String,
        /// Why.
        reason: SubjectError,
    },
    /// The settled message is not pending in the group.
    #[error("{0}")]
    UnknownDelivery(String),
    /// The settlement answers a delivery that is no longer in flight (the
    /// message went to another member, came back as a later attempt, or
    /// waits for redelivery); nothing was changed.
    #[error("{0}")]
    StaleSettle(String),
    /// No such consumer group.
    #[error("consumer group {0:?} does not exist")]
    GroupNotFound(String),
    /// The principal may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The broker is shutting down.
    #[error("broker is shutting down")]
    ShuttingDown,
    /// A plugin rejected, dropped or dead-lettered a request.
    #[error("{0}")]
    Rejected(String),
    /// No live responder for a request.
    #[error("no responders: {0}")]
    NoResponders(String),
    /// No reply within a request's timeout.
    #[error("{0}")]
    RequestTimeout(String),
    /// The responder answered with an error.
    #[error("the responder answered with an error: {0}")]
    ResponderError(String),
    /// A reply no request waits for.
    #[error("{0}")]
    NotWaiting(String),
    /// Something that should not happen.
    #[error("internal error: {0}")]
    Internal(String),
}

impl BrokerError {
    /// A store failure on `topic`, under the code a client can act on.
    pub fn store(topic: &str, e: StoreError) -> BrokerError {
        match e {
            StoreError::TopicNotFound(name) => BrokerError::TopicNotFound(name),
            StoreError::TopicExists(name) => BrokerError::TopicExists(name),
            StoreError::InvalidTopic { name, reason } => BrokerError::InvalidTopic { name, reason },
            StoreError::Closed => BrokerError::ShuttingDown,
            source => BrokerError::Storage {
                topic: topic.to_owned(),
                source,
            },
        }
    }

    /// The stable wire code.
    pub fn code(&self) -> ErrorCode {
        match self {
            BrokerError::InvalidTopic { .. } => ErrorCode::InvalidTopic,
            BrokerError::InvalidPattern { .. } => ErrorCode::InvalidPattern,
            BrokerError::TopicNotFound(_) => ErrorCode::TopicNotFound,
            BrokerError::TopicExists(_) => ErrorCode::TopicExists,
            BrokerError::InvalidArgument(_) => ErrorCode::InvalidArgument,
            BrokerError::Storage {
                source: StoreError::Full { .. },
                ..
            } => ErrorCode::StorageFull,
            BrokerError::Storage { .. } => ErrorCode::Storage,
            BrokerError::LimitExceeded(_) => ErrorCode::LimitExceeded,
            BrokerError::SubscriptionExists(_) => ErrorCode::SubscriptionExists,
            BrokerError::UnknownSubscription(_) => ErrorCode::UnknownSubscription,
            BrokerError::InvalidGroup { .. } => ErrorCode::InvalidGroup,
            BrokerError::UnknownDelivery(_) => ErrorCode::UnknownDelivery,
            BrokerError::StaleSettle(_) => ErrorCode::StaleSettle,
            BrokerError::GroupNotFound(_) => ErrorCode::GroupNotFound,
            BrokerError::Forbidden(_) => ErrorCode::Forbidden,
            BrokerError::ShuttingDown => ErrorCode::ShuttingDown,
            BrokerError::Rejected(_) => ErrorCode::Rejected,
            BrokerError::NoResponders(_) => ErrorCode::NoResponders,
            BrokerError::RequestTimeout(_) => ErrorCode::RequestTimeout,
            BrokerError::ResponderError(_) => ErrorCode::ResponderError,
            BrokerError::NotWaiting(_) => ErrorCode::NotWaiting,
            BrokerError::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The error as it goes on the wire.
    pub fn to_body(&self) -> ErrorBody {
        ErrorBody::new(self.code(), self.to_string())
    }
}

impl From<&BrokerError> for ErrorBody {
    fn from(e: &BrokerError) -> Self {
        e.to_body()
    }
}
