//! Deliveries as the record and the spans see them: a `deliver` span per
//! traced message and receiver, under the message's store span, whose
//! context the delivered copy's `traceparent` carries; and a record event
//! per slice written.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::trace::{Span as _, SpanContext, SpanKind, TraceContextExt, TraceFlags};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::Span;

use super::context;
use super::record::{Delivered, Event, Receiver};
use super::Observer;
use crate::delivery::Chunk;
use crate::store::Record;

/// The deliver spans of one chunk being written to one receiver; they end
/// when it is dropped, after the write.
pub struct Delivering<'o> {
    observer: &'o Observer,
    receiver: &'o Receiver,
    spans: Vec<Span>,
}

impl<'o> Delivering<'o> {
    /// For a chunk to `receiver`.
    pub fn new(observer: &'o Observer, receiver: &'o Receiver) -> Self {
        Delivering {
            observer,
            receiver,
            spans: Vec::new(),
        }
    }

    /// The headers `record` of `topic` is delivered with: as stored, or for
    /// a traced message, with a `traceparent` naming its new deliver span.
    pub fn headers<'r>(
        &mut self,
        topic: &str,
        record: &'r Record,
        attempt: u32,
    ) -> Cow<'r, [(String, String)]> {
        let stored = Cow::Borrowed(record.headers.as_slice());
        if !self.observer.spans.is_on() || !context::has_traceparent(&record.headers) {
            return stored;
        }
        let (Some(store), Some(sent)) = (
            context::store_span(&record.headers),
            context::extract(&record.headers).filter(SpanContext::is_sampled),
        ) else {
            return stored;
        };
        let parent = SpanContext::new(
            sent.trace_id(),
            store,
            TraceFlags::SAMPLED,
            true,
            sent.trace_state().clone(),
        );
        let mut attributes = vec![
            KeyValue::new("messaging.system", "sluice"),
            KeyValue::new("messaging.operation.type", "send"),
            KeyValue::new("messaging.destination.name", topic.to_owned()),
            KeyValue::new("sluice.offset", record.offset as i64),
        ];
        match self.receiver {
            Receiver::Subscription { id, principal } => {
                attributes.push(KeyValue::new("sluice.subscription", *id as i64));
                attributes.push(KeyValue::new("enduser.id", principal.to_string()));
            }
            Receiver::Member {
                group,
                member,
                principal,
            } => {
                attributes.push(KeyValue::new(
                    "messaging.consumer.group.name",
                    group.clone(),
                ));
                attributes.push(KeyValue::new("sluice.member", *member as i64));
                attributes.push(KeyValue::new("sluice.attempt", i64::from(attempt)));
                attributes.push(KeyValue::new("enduser.id", principal.to_string()));
            }
        }
        let Some(span) = self.observer.spans.span(
            "deliver",
            SpanKind::Producer,
            &Context::new().with_remote_span_context(parent),
            SystemTime::now(),
            attributes,
        ) else {
            return stored;
        };
        let mut headers = record.headers.clone();
        context::inject(&mut headers, span.span_context());
        self.spans.push(span);
        Cow::Owned(headers)
    }
}

/// Records that `chunk` was written to `to`.
pub fn delivered(observer: &Observer, to: &Arc<Receiver>, chunk: &Chunk) {
    if !observer.record.is_on() {
        return;
    }
    let at_ms = crate::store::now_ms();
    for slice in &chunk.slices {
        let mut offsets: Vec<(u64, u64)> = Vec::new();
        for record in slice.records() {
            match offsets.last_mut() {
                Some((_, last)) if *last + 1 == record.offset => *last = record.offset,
                _ => offsets.push((record.offset, record.offset)),
            }
        }
        if offsets.is_empty() {
            continue;
        }
        observer.record.push(Event::Delivered(Delivered {
            at_ms,
            topic: slice.batch.topic.clone(),
            offsets,
            attempt: slice.attempt,
            to: to.clone(),
        }));
    }
}
