//! Stable error codes. The number is the contract (clients match on it);
//! the message is for people and may change.

use serde::{Deserialize, Serialize};

/// Defines [`ErrorCode`] from one list of `Variant = wire value => "name"`,
/// so that the enum, [`ErrorCode::ALL`] and [`ErrorCode::name`] cannot
/// disagree: a new code is in all three (and in PROTOCOL.md's table, which
/// `tests/protocol_doc.rs` checks against `ALL`).
macro_rules! error_codes {
    ($(
        $(#[doc = $doc:literal])*
        $variant:ident = $value:literal => $name:literal,
    )*) => {
        /// Why a request or a connection failed. The numeric value of each variant
        /// is stable across releases; new codes may be added.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[doc = $doc])* $variant = $value,)*
        }

        impl ErrorCode {
            /// Every code, by wire value, for tables and tests.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// A short stable name, as shown by the CLI (`topic_not_found`).
            pub fn name(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $name,)*
                }
            }
        }
    };
}

error_codes! {
    /// A frame could not be decoded.
    MalformedFrame = 1 => "malformed_frame",
    /// A frame's length prefix is above the negotiated maximum.
    FrameTooLarge = 2 => "frame_too_large",
    /// The client speaks a protocol version this broker does not.
    UnsupportedVersion = 3 => "unsupported_version",
    /// A request arrived before the Hello handshake.
    HandshakeRequired = 4 => "handshake_required",
    /// The frame is well formed but not allowed here (a second Hello, ...).
    ProtocolViolation = 5 => "protocol_violation",
    /// The request kind is unknown to this broker.
    UnknownRequest = 6 => "unknown_request",
    /// Authentication failed or is missing.
    Unauthorized = 7 => "unauthorized",
    /// The principal may not do this.
    Forbidden = 8 => "forbidden",
    /// A topic name is not valid.
    InvalidTopic = 100 => "invalid_topic",
    /// A subscription pattern is not valid.
    InvalidPattern = 101 => "invalid_pattern",
    /// The topic does not exist (and is not auto-created).
    TopicNotFound = 102 => "topic_not_found",
    /// The topic already exists.
    TopicExists = 103 => "topic_exists",
    /// A request field has a value the broker cannot accept.
    InvalidArgument = 104 => "invalid_argument",
    /// The subscription id is not known on this connection.
    UnknownSubscription = 105 => "unknown_subscription",
    /// A configured limit was reached.
    LimitExceeded = 106 => "limit_exceeded",
    /// The subscription id is already in use on this connection.
    SubscriptionExists = 107 => "subscription_exists",
    /// A consumer group name is not valid.
    InvalidGroup = 108 => "invalid_group",
    /// The settled message is not pending in that group (never delivered, or already settled).
    UnknownDelivery = 109 => "unknown_delivery",
    /// The consumer group does not exist.
    GroupNotFound = 110 => "group_not_found",
    /// A plugin rejected the message (or a request: rejected, dropped or
    /// dead-lettered it).
    Rejected = 111 => "rejected",
    /// The settlement answers a delivery that is no longer in flight: the
    /// ack wait ran out, the message went to another member, or it came
    /// back as a later attempt. Nothing was changed; the message's current
    /// holder settles it.
    StaleSettle = 112 => "stale_settle",
    /// No live responder matches the request's topic (or every one that
    /// got it went away before answering).
    NoResponders = 113 => "no_responders",
    /// No reply came within the request's timeout.
    RequestTimeout = 114 => "request_timeout",
    /// The responder answered with an error instead of a reply.
    ResponderError = 115 => "responder_error",
    /// No request waits for this reply: it was answered already, timed
    /// out, or the token is unknown.
    NotWaiting = 116 => "not_waiting",
    /// The storage layer failed; the request had no effect or its effect is unknown.
    Storage = 200 => "storage",
    /// The broker is shutting down.
    ShuttingDown = 201 => "shutting_down",
    /// The disk (or the quota) is full: nothing was stored. Writing
    /// resumes by itself when space comes back, so a later retry can work.
    StorageFull = 202 => "storage_full",
    /// An unexpected broker error.
    Internal = 255 => "internal",
}

impl ErrorCode {
    /// The wire value.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// The code for a wire value, if this version knows it.
    pub fn from_u16(value: u16) -> Option<ErrorCode> {
        Self::ALL.iter().copied().find(|c| c.as_u16() == value)
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
        // Defined in wire-value order, so tables made from `ALL` are too.
        assert!(ErrorCode::ALL
            .windows(2)
            .all(|w| w[0].as_u16() < w[1].as_u16()));
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
