//! [`PublishTrace`]: what one publish leaves behind: its event in the
//! record and the spans of its traced messages. The broker feeds it as the
//! publish goes (received, each pipeline's report, each record about to
//! be appended) and finishes it with the acks.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt};
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::Span;
use sluice_proto::StoredAt;

use super::context;
use super::record::{Event, Fate, Place, Published, RunReport, StageRun, Step, StepOutcome};
use super::telemetry::child_of;
use super::Observer;
use crate::store::NewRecord;

/// The spans of one traced message.
struct MessageSpans {
    receive: Span,
    /// True if the broker started the trace (no `traceparent` came).
    started_here: bool,
    /// Store spans not yet ended, by destination topic.
    stores: Vec<(String, Span)>,
}

/// One publish being followed.
pub struct PublishTrace {
    observer: Arc<Observer>,
    event: Published,
    /// By message index; empty when no message is traced.
    /// The traced messages' spans, by message index (sorted): few at a
    /// low sampling rate, so a publish with one traced message pays for one.
    spans: Vec<(usize, MessageSpans)>,
}

impl PublishTrace {
    /// Starts following a publish of `total` messages by `principal`,
    /// given as (message index, topic, record); `None` when there is
    /// neither a record nor spans to keep.
    pub fn begin<'a>(
        observer: &Arc<Observer>,
        principal: &str,
        total: usize,
        messages: impl Iterator<Item = (usize, &'a str, &'a NewRecord)>,
    ) -> Option<PublishTrace> {
        let telemetry = &observer.spans;
        if !observer.record.is_on() && !telemetry.is_on() {
            return None;
        }
        let received = SystemTime::now();
        let mut event = Published::new(crate::store::now_ms(), principal.into(), total);
        let mut spans: Vec<(usize, MessageSpans)> = Vec::new();
        for (index, topic, record) in messages {
            let at = index as u32;
            let t = match event.topics.iter().position(|x| x == topic) {
                Some(t) => t,
                None => {
                    event.topics.push(topic.to_owned());
                    event.topics.len() - 1
                }
            };
            event.messages[index].0 = t as u32;
            if let Some(id) = &record.id {
                event.ids.push((at, id.clone()));
            }
            // Read once, for the record and for the spans.
            let sent = context::has_traceparent(&record.headers)
                .then(|| context::extract(&record.headers));
            if let Some(Some(sent)) = &sent {
                event.traces.push((at, sent.trace_id()));
            }
            let Some(parent) = telemetry.parent_of(sent) else {
                continue;
            };
            let started_here = !parent.has_active_span();
            let mut attributes = vec![
                KeyValue::new("messaging.system", "sluice"),
                KeyValue::new("messaging.operation.type", "receive"),
                KeyValue::new("messaging.destination.name", topic.to_owned()),
                KeyValue::new("enduser.id", principal.to_owned()),
            ];
            if let Some(id) = &record.id {
                attributes.push(KeyValue::new("messaging.message.id", id.clone()));
            }
            let Some(receive) =
                telemetry.span("receive", SpanKind::Consumer, &parent, received, attributes)
            else {
                continue;
            };
            if started_here {
                event.traces.push((at, receive.span_context().trace_id()));
            }
            spans.push((
                index,
                MessageSpans {
                    receive,
                    started_here,
                    stores: Vec::new(),
                },
            ));
        }
        spans.sort_unstable_by_key(|(index, _)| *index);
        Some(PublishTrace {
            observer: observer.clone(),
            event,
            spans,
        })
    }

    /// Takes a pipeline's report on the messages `origins` (the message
    /// index of each record the pipeline ran on, in order).
    pub fn pipeline_ran(&mut self, report: RunReport, origins: &[usize]) {
        let first_run = self.event.runs.len();
        for step in &report.steps {
            let Some(&origin) = origins.get(step.origin as usize) else {
                continue;
            };
            let run = &report.runs[step.run as usize];
            self.event.steps.push(Step {
                origin: origin as u32,
                run: (first_run + step.run as usize) as u32,
                outcome: step.outcome,
            });
            if let Some(spans) = self.traced(origin) {
                stage_span(&self.observer, spans, run, step.outcome);
            }
        }
        self.event.runs.extend(report.runs);
    }

    /// Called with each record of message `origin` about to be appended to
    /// `topic`: a traced message gets its store span, whose id the stored
    /// record carries (and, if the broker started its trace, a
    /// `traceparent` naming its receive span).
    pub fn appending(&mut self, origin: usize, topic: &str, record: &mut NewRecord) {
        let at = self
            .spans
            .binary_search_by_key(&origin, |(index, _)| *index);
        let Some((_, spans)) = at.ok().and_then(|at| self.spans.get_mut(at)) else {
            // Only the broker names a store span: one a publisher sent (or
            // a consumer forwarded) would hang deliveries from a stranger.
            if !record.headers.is_empty() {
                record
                    .headers
                    .retain(|(n, _)| !n.eq_ignore_ascii_case(context::STORE_SPAN));
            }
            return;
        };
        let attributes = vec![
            KeyValue::new("messaging.system", "sluice"),
            KeyValue::new("messaging.destination.name", topic.to_owned()),
        ];
        let Some(store) = self.observer.spans.span(
            "store",
            SpanKind::Internal,
            &child_of(&spans.receive),
            SystemTime::now(),
            attributes,
        ) else {
            return;
        };
        if spans.started_here {
            context::inject(&mut record.headers, spans.receive.span_context());
        }
        let id = store.span_context().span_id().to_string();
        context::set_header(&mut record.headers, context::STORE_SPAN, id);
        spans.stores.push((topic.to_owned(), store));
    }

    /// The spans of message `origin`, if it is traced.
    fn traced(&self, origin: usize) -> Option<&MessageSpans> {
        let at = self
            .spans
            .binary_search_by_key(&origin, |(index, _)| *index);
        at.ok().map(|at| &self.spans[at].1)
    }

    /// Finishes a publish that failed whole: every message is recorded as
    /// not stored, with `error`.
    pub fn failed(self, error: &dyn std::fmt::Display) {
        let reason = Some(format!("not stored: {error}"));
        let rejected = vec![reason; self.event.messages.len()];
        self.finish(&[], &rejected);
    }

    /// Finishes with the publish's result: per message, where it was
    /// stored (and the dead-letter reason of each place) or why it was
    /// rejected. Ends the spans and keeps the event.
    pub fn finish(
        mut self,
        places: &[Vec<(StoredAt, Option<String>)>],
        rejected: &[Option<String>],
    ) {
        for (index, (t, fate)) in self.event.messages.iter_mut().enumerate() {
            let at = index as u32;
            let own = &self.event.topics[*t as usize];
            let places = places.get(index).map_or(&[][..], Vec::as_slice);
            *fate = if let Some(Some(reason)) = rejected.get(index) {
                self.event.rejections.push((at, reason.clone()));
                Fate::Rejected
            } else {
                match places {
                    [] => Fate::Dropped,
                    [(stored, None)] if stored.topic == *own => {
                        if stored.duplicate {
                            Fate::Duplicate(stored.offset)
                        } else {
                            Fate::Stored(stored.offset)
                        }
                    }
                    several => {
                        for (stored, dead) in several {
                            self.event.places.push((
                                at,
                                Place {
                                    topic: stored.topic.clone(),
                                    offset: stored.offset,
                                    duplicate: stored.duplicate,
                                    dead_letter: dead.clone(),
                                },
                            ));
                        }
                        Fate::Elsewhere
                    }
                }
            };
        }
        let now = SystemTime::now();
        for (index, spans) in &mut self.spans {
            let index = *index;
            let mine = places.get(index).map_or(&[][..], Vec::as_slice);
            // Store spans and places of one topic pair up in order (a
            // message replaced by several goes to one topic several times).
            let mut used = vec![false; mine.len()];
            for (topic, mut store) in spans.stores.drain(..) {
                let place = mine
                    .iter()
                    .enumerate()
                    .find(|(i, (at, _))| !used[*i] && at.topic == topic);
                if let Some((i, (at, _))) = place {
                    used[i] = true;
                    store.set_attribute(KeyValue::new("sluice.offset", at.offset as i64));
                    store.set_attribute(KeyValue::new("sluice.duplicate", at.duplicate));
                } else {
                    store.set_status(Status::error("not stored"));
                }
                store.end_with_timestamp(now);
            }
            let outcome = match self.event.messages[index].1 {
                Fate::Stored(_) | Fate::Duplicate(_) => "stored",
                Fate::Elsewhere if mine.iter().all(|(_, dead)| dead.is_some()) => "dead-lettered",
                Fate::Elsewhere => "routed",
                Fate::Rejected => "rejected",
                Fate::Dropped => "dropped",
            };
            spans
                .receive
                .set_attribute(KeyValue::new("sluice.outcome", outcome));
            if let Some(Some(reason)) = rejected.get(index) {
                spans.receive.set_status(Status::error(reason.clone()));
            }
            spans.receive.end_with_timestamp(now);
        }
        self.observer.record.push(Event::Published(self.event));
    }
}

/// The span of one stage's call, for one traced message.
fn stage_span(observer: &Observer, spans: &MessageSpans, run: &StageRun, outcome: StepOutcome) {
    let mut attributes = vec![
        KeyValue::new("sluice.plugin", run.plugin.clone()),
        KeyValue::new("sluice.plugin.version", run.version.clone()),
        KeyValue::new("sluice.outcome", outcome.name()),
    ];
    if let Some(error) = &run.error {
        attributes.push(KeyValue::new("sluice.error", error.clone()));
    }
    let Some(mut span) = observer.spans.span(
        "stage",
        SpanKind::Internal,
        &child_of(&spans.receive),
        run.started,
        attributes,
    ) else {
        return;
    };
    if let Some(error) = &run.error {
        span.set_status(Status::error(error.clone()));
    }
    span.end_with_timestamp(run.started + Duration::from_micros(run.took_us));
}
