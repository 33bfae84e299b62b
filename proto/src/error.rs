//! Stable error codes. The number is the contract (clients match on it);
//! the message is for people and may change.

use serde::{Deserialize, Serialize};

/// Why a request or a connection failed. The numeric value of each variant
/// is stable across releases; new codes may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
#[non_exhaustive]
pub enum ErrorCode {
    /// A frame could not be decoded.
    MalformedFrame = 1,
    /// A frame's length prefix is above the negotiated maximum.
    FrameTooLarge = 2,
    /// The client speaks a protocol version this broker does not.
    UnsupportedVersion = 3,
    /// A request arrived before the Hello handshake.
    HandshakeRequired = 4,
    /// The frame is well formed but not allowed here (a second Hello, ...).
    ProtocolViolation = 5,
    /// The request kind is unknown to this broker.
    UnknownRequest = 6,
    /// Authentication failed or is missing.
    Unauthorized = 7,
    /// The principal may not do this.
    Forbidden = 8,
    /// A topic name is not valid.
    InvalidTopic = 100,
    /// A subscription pattern is not valid.
    InvalidPattern = 101,
    /// The topic does not exist (and is not auto-created).
    TopicNotFound = 102,
    /// The topic already exists.
    TopicExists = 103,
    /// A request field has a value the broker cannot accept.
    InvalidArgument = 104,
    /// The subscription id is not known on this connection.
    UnknownSubscription = 105,
    /// A configured limit was reached.
    LimitExceeded = 106,
    /// The subscription id is already in use on this connection.
    SubscriptionExists = 107,
    /// A consumer group name is not valid.
    InvalidGroup = 108,
    /// The settled message is not pending in that group (never delivered, or already settled).
    UnknownDelivery = 109,
    /// The consumer group does not exist.
    GroupNotFound = 110,
    /// A plugin rejected the message.
    Rejected = 111,
    /// The settlement answers a delivery that is no longer in flight: the
    /// ack wait ran out, the message went to another member, or it came
    /// back as a later attempt. Nothing was changed; the message's current
    /// holder settles it.
    StaleSettle = 112,
    /// The storage layer failed; the request had no effect or its effect is unknown.
    Storage = 200,
    /// The broker is shutting down.
    ShuttingDown = 201,
    /// The disk (or the quota) is full: nothing was stored. Writing
    /// resumes by itself when space comes back, so a later retry can work.
    StorageFull = 202,
    /// An unexpected broker error.
    Internal = 255,
}

impl ErrorCode {
    /// Every code, for tables and tests.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::MalformedFrame,
        ErrorCode::FrameTooLarge,
        ErrorCode::UnsupportedVersion,
        ErrorCode::HandshakeRequired,
        ErrorCode::ProtocolViolation,
        ErrorCode::UnknownRequest,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::InvalidTopic,
        ErrorCode::InvalidPattern,
        ErrorCode::TopicNotFound,
        ErrorCode::TopicExists,
        ErrorCode::InvalidArgument,
        ErrorCode::UnknownSubscription,
        ErrorCode::LimitExceeded,
        ErrorCode::SubscriptionExists,
        ErrorCode::InvalidGroup,
        ErrorCode::UnknownDelivery,
        ErrorCode::GroupNotFound,
        ErrorCode::Rejected,
        ErrorCode::StaleSettle,
        ErrorCode::Storage,
        ErrorCode::ShuttingDown,
        ErrorCode::StorageFull,
        ErrorCode::Internal,
    ];

    /// The wire value.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// The code for a wire value, if this version knows it.
    pub fn from_u16(value: u16) -> Option<ErrorCode> {
        Self::ALL.iter().copied().find(|c| c.as_u16() == value)
    }

    /// A short stable name, as shown by the CLI (`topic_not_found`).
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::MalformedFrame => "malformed_frame",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::HandshakeRequired => "handshake_required",
            ErrorCode::ProtocolViolation => "protocol_violation",
            ErrorCode::UnknownRequest => "unknown_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::InvalidTopic => "invalid_topic",
            ErrorCode::InvalidPattern => "invalid_pattern",
            ErrorCode::TopicNotFound => "topic_not_found",
            ErrorCode::TopicExists => "topic_exists",
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::UnknownSubscription => "unknown_subscription",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::SubscriptionExists => "subscription_exists",
            ErrorCode::InvalidGroup => "invalid_group",
            ErrorCode::UnknownDelivery => "unknown_delivery",
            ErrorCode::GroupNotFound => "group_not_found",
            ErrorCode::Rejected => "rejected",
            ErrorCode::StaleSettle => "stale_settle",
            ErrorCode::Storage => "storage",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::StorageFull => "storage_full",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.as_u16())
    }
}

/// An error as it crosses the wire: a stable numeric code and a message for
/// people. The code stays a number so that a client can carry a code from a
/// newer broker it does not know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The stable code (see [`ErrorCode`]).
    pub code: u16,
    /// What went wrong and, where possible, what to do about it.
    pub message: String,
}

impl ErrorBody {
    /// An error with a known code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            code: code.as_u16(),
            message: message.into(),
        }
    }

    /// The code, if this version knows it.
    pub fn error_code(&self) -> Option<ErrorCode> {
        ErrorCode::from_u16(self.code)
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.error_code() {
            Some(code) => write!(f, "{}: {}", code, self.message),
            None => write!(f, "error {}: {}", self.code, self.message),
        }
    }
}

impl std::error::Error for ErrorBody {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_u16()), "duplicate code {code}");
            assert_eq!(ErrorCode::from_u16(code.as_u16()), Some(*code));
        }
        assert_eq!(ErrorCode::from_u16(9999), None);
    }

    #[test]
    fn codes_are_stable() {
        // These numbers are a public contract: changing one breaks clients.
        assert_eq!(ErrorCode::MalformedFrame.as_u16(), 1);
        assert_eq!(ErrorCode::FrameTooLarge.as_u16(), 2);
        assert_eq!(ErrorCode::HandshakeRequired.as_u16(), 4);
        assert_eq!(ErrorCode::InvalidTopic.as_u16(), 100);
        assert_eq!(ErrorCode::TopicNotFound.as_u16(), 102);
        assert_eq!(ErrorCode::UnknownDelivery.as_u16(), 109);
        assert_eq!(ErrorCode::StaleSettle.as_u16(), 112);
        assert_eq!(ErrorCode::Storage.as_u16(), 200);
    }

    #[test]
    fn display_names_code_and_message() {
        let e = ErrorBody::new(ErrorCode::InvalidTopic, "bad name");
        assert_eq!(e.to_string(), "invalid_topic (100): bad name");
        let unknown = ErrorBody {
            code: 4242,
            message: "from the future".into(),
        };
        assert_eq!(unknown.to_string(), "error 4242: from the future");
    }
}
