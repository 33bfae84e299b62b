//! The sluice wire protocol: frames, their codec, topic names and patterns,
//! and the stable error codes. Pure encode/decode: no I/O, no async runtime,
//! so that the client never pulls in the broker and every rule here can be
//! unit-tested on bytes.
//!
//! # Layout
//!
//! - [`frame`] - the length-prefixed MessagePack codec and its limits.
//! - [`message`] - what flows on the wire: the handshake, requests and
//!   responses on the control stream, deliveries on subscription streams.
//! - [`error`] - stable numeric error codes with human messages.
//! - [`subject`] - topic-name validation and `*` / `>` pattern matching.
//!
//! Dependencies point one way: `message` uses `frame` (in its tests) and
//! `error`; `frame`, `error` and `subject` use no sibling module.
//!
//! # Streams
//!
//! A client opens one bidirectional *control stream*, sends [`ClientFrame::Hello`]
//! and gets [`ServerFrame::Welcome`]; after that it pipelines
//! [`ClientFrame::Request`]s, each with an id the matching
//! [`ServerFrame::Response`] carries back (responses may come out of order).
//! The broker opens one unidirectional stream per subscription; it starts
//! with [`DeliveryFrame::Start`] naming the subscription, so one slow
//! subscription never blocks another.

pub mod error;
pub mod frame;
pub mod message;
pub mod subject;

pub use error::{ErrorBody, ErrorCode};
pub use frame::{CodecError, FrameDecoder};
pub use message::*;
pub use subject::{validate_topic, Pattern, SubjectError};

/// The protocol version spoken by this crate; sent in Hello and Welcome.
pub const PROTOCOL_VERSION: u16 = 1;

/// The TLS ALPN identifier of protocol version 1.
pub const ALPN: &[u8] = b"sluice/1";

/// Default upper bound on the body of one frame (1 MiB).
pub const DEFAULT_MAX_FRAME_BYTES: u32 = 1024 * 1024;
