//! Following messages: W3C trace context, OpenTelemetry spans exported
//! over OTLP, and the per-message event record behind `sluice trace`.
//!
//! A published message is traced when its `traceparent` is sampled, or,
//! without one, for `[telemetry] sampling` of messages. A traced message
//! gets a `receive` span (a child of the publisher's span), a `stage` span
//! per pipeline stage and a `store` span per place it is stored (children
//! of `receive`; `store` covers the append and the fsync wait). The id of
//! the store span is kept on the stored message (header
//! `sluice-store-span`), and each delivery to a subscriber or group member
//! makes a `deliver` span under it; the delivered copy's `traceparent`
//! names the delivery span, so the consumer's own spans hang from it. The
//! stored `traceparent` stays as the publisher sent it.
//!
//! Independently of spans, the [`Journal`] records what happened to every
//! recent message, bounded in messages, time and bytes.
//!
//! # Layout
//!
//! - [`context`] - `traceparent` and `tracestate` on message headers.
//! - [`telemetry`] - whether a message is traced, and its spans.
//! - [`export`] - the bounded, counted OTLP/HTTP export.
//! - [`record`] - the event record.
//! - [`publish`] - what one publish records and the spans it makes.
//! - [`deliver`] - what one delivery records and the spans it makes.
//! - [`query`] - the record read back for `sluice trace`.
//!
//! This module depends on the config, the store's record type and the
//! auth rate limiter only; the broker, the groups and the server call it.

pub mod context;
pub mod deliver;
mod export;
pub mod publish;
pub mod query;
pub mod record;
pub mod telemetry;

use std::sync::Arc;

pub use publish::PublishTrace;
pub use record::{Event, Journal, Receiver};
pub use telemetry::{SpanCounts, Telemetry, TelemetryError};

use crate::config::TelemetryConfig;

/// What the broker keeps of messages beyond the messages themselves: their
/// spans and the event record.
#[derive(Debug)]
pub struct Observer {
    /// OpenTelemetry spans of traced messages.
    pub spans: Telemetry,
    /// The event record behind `sluice trace`.
    pub record: Arc<Journal>,
}

impl Observer {
    /// Spans and record as `config` says. Must be called on the broker's
    /// tokio runtime (exports run on it).
    pub fn start(config: &TelemetryConfig) -> Result<Observer, TelemetryError> {
        Ok(Observer {
            spans: Telemetry::start(config)?,
            record: Arc::new(Journal::new(&config.record)),
        })
    }

    /// Neither spans nor record.
    pub fn off() -> Observer {
        Observer {
            spans: Telemetry::off(),
            record: Arc::new(Journal::off()),
        }
    }
}
