//! W3C trace context on messages: reading `traceparent` and `tracestate`
//! from a message's headers and writing them onto a delivered copy, with
//! the OpenTelemetry SDK's propagator (headers are matched without regard
//! to case, as HTTP does).

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceId};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// The W3C header of a message's trace and parent span.
pub const TRACEPARENT: &str = "traceparent";

/// The W3C header of vendor trace state, kept with `traceparent`.
pub const TRACESTATE: &str = "tracestate";

/// Header the broker adds to a traced message it stores: the id of its
/// store span, the parent of the message's delivery spans (the stored
/// `traceparent` stays as the publisher sent it).
pub const STORE_SPAN: &str = "sluice-store-span";

/// A message's headers, read by the propagator.
struct Headers<'a>(&'a [(String, String)]);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        header(self.0, key)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_str()).collect()
    }
}

/// A message's headers, written by the propagator: a header it sets
/// replaces one of the same name.
struct HeadersMut<'a>(&'a mut Vec<(String, String)>);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        // The propagator writes an empty `tracestate` for a context with
        // none; a message that had none keeps having none.
        if !value.is_empty() {
            set_header(self.0, key, value);
        }
    }
}

/// Sets header `name` to `value`, replacing one of the same name (matched
/// without regard to case).
pub fn set_header(headers: &mut Vec<(String, String)>, name: &str, value: String) {
    match headers
        .iter_mut()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
    {
        Some((_, old)) => *old = value,
        None => headers.push((name.to_owned(), value)),
    }
}

/// The value of header `name`, matched without regard to case.
pub fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// True if the message carries a `traceparent` header (cheap: no parsing).
pub fn has_traceparent(headers: &[(String, String)]) -> bool {
    !headers.is_empty() && header(headers, TRACEPARENT).is_some()
}

/// The span context a message's `traceparent` (and `tracestate`) names,
/// if it names a valid one.
pub fn extract(headers: &[(String, String)]) -> Option<SpanContext> {
    if !has_traceparent(headers) {
        return None;
    }
    let cx = TraceContextPropagator::new().extract(&Headers(headers));
    let span = cx.span();
    let context = span.span_context();
    context.is_valid().then(|| context.clone())
}

/// The trace id of a message, if its `traceparent` is valid.
pub fn trace_id(headers: &[(String, String)]) -> Option<TraceId> {
    extract(headers).map(|c| c.trace_id())
}

/// Sets `traceparent` and `tracestate` of `headers` to `context`.
pub fn inject(headers: &mut Vec<(String, String)>, context: &SpanContext) {
    let cx = Context::new().with_remote_span_context(context.clone());
    TraceContextPropagator::new().inject_context(&cx, &mut HeadersMut(headers));
}

/// The store span a traced stored message names, if any.
pub fn store_span(headers: &[(String, String)]) -> Option<SpanId> {
    header(headers, STORE_SPAN)
        .and_then(|hex| SpanId::from_hex(hex).ok())
        .filter(|id| *id != SpanId::INVALID)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{TraceFlags, TraceState};

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_is_read_whatever_the_case_of_its_name() {
        let headers = vec![("TraceParent".to_owned(), PARENT.to_owned())];
        let context = extract(&headers).expect("valid");
        assert_eq!(
            context.trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert!(context.is_sampled());
        assert!(extract(&[("traceparent".into(), "00-zz-11-01".into())]).is_none());
        assert!(extract(&[]).is_none());
    }

    #[test]
    fn injecting_replaces_the_parent_and_keeps_the_state() {
        let mut headers = vec![
            ("traceparent".to_owned(), PARENT.to_owned()),
            ("tracestate".to_owned(), "vendor=1".to_owned()),
        ];
        let old = extract(&headers).unwrap();
        let child = SpanContext::new(
            old.trace_id(),
            SpanId::from_hex("1111111111111111").unwrap(),
            TraceFlags::SAMPLED,
            false,
            old.trace_state().clone(),
        );
        inject(&mut headers, &child);
        assert_eq!(headers.len(), 2, "{headers:?}");
        assert_eq!(
            header(&headers, TRACEPARENT),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01")
        );
        assert_eq!(header(&headers, TRACESTATE), Some("vendor=1"));
        let _ = TraceState::default();
    }
}
