//! [`Telemetry`]: whether a message is traced, and its spans, made with the
//! OpenTelemetry SDK and exported over OTLP/HTTP (see [`super::export`]).
//!
//! The decision is made once per message, before any span exists: a
//! message whose `traceparent` is sampled is traced, one without is traced
//! for the configured fraction, and nothing else costs more than a look at
//! its headers. The SDK's sampler is then always-on: it sees only
//! messages already chosen.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanContext, SpanKind, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, Span,
};
use opentelemetry_sdk::Resource;

use super::export::{Bounded, Counting, ExportCounts, OnRuntime};
use crate::config::TelemetryConfig;

/// Spans exported in one request at most.
const EXPORT_BATCH_SPANS: usize = 512;

/// How often waiting spans are exported when fewer than a batch wait.
const EXPORT_DELAY: Duration = Duration::from_millis(500);

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter refused its settings.
    #[error("cannot set up the OTLP exporter for {endpoint}: {message}")]
    Exporter {
        /// The URL spans would go to.
        endpoint: String,
        /// Why.
        message: String,
    },
}

/// Spans being exported: the provider (shut down with the broker) and its tracer.
struct Exporting {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

/// The broker's OpenTelemetry spans: off unless `[telemetry] endpoint` is set.
pub struct Telemetry {
    exporting: Option<Exporting>,
    sampling: f64,
    counts: Arc<ExportCounts>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("on", &self.exporting.is_some())
            .field("sampling", &self.sampling)
            .finish()
    }
}

/// A snapshot of [`ExportCounts`], for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpanCounts {
    /// Spans the collector accepted.
    pub exported: u64,
    /// Spans dropped because the export queue was full.
    pub dropped: u64,
    /// Spans whose export failed.
    pub failed: u64,
}

impl Telemetry {
    /// No spans.
    pub fn off() -> Telemetry {
        Telemetry {
            exporting: None,
            sampling: 0.0,
            counts: Arc::default(),
        }
    }

    /// Spans exported as `config` says; off without an endpoint. Must be
    /// called on the broker's tokio runtime, which carries the exports.
    pub fn start(config: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
        let Some(url) = config.traces_url() else {
            return Ok(Telemetry::off());
        };
        let counts = Arc::new(ExportCounts::default());
        let client = OnRuntime {
            client: opentelemetry_http::hyper::HyperClient::with_default_connector(
                config.export_timeout,
                None,
            ),
            runtime: tokio::runtime::Handle::current(),
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(url.clone())
            .with_timeout(config.export_timeout)
            .with_http_client(client)
            .build()
            .map_err(|e| TelemetryError::Exporter {
                endpoint: url.clone(),
                message: e.to_string(),
            })?;
        let batch = BatchConfigBuilder::default()
            // Our bound (`Bounded`) is the one that drops; the SDK's queue
            // never fills before it.
            .with_max_queue_size(config.queue_spans + 1)
            .with_max_export_batch_size(EXPORT_BATCH_SPANS.min(config.queue_spans))
            .with_scheduled_delay(EXPORT_DELAY)
            .build();
        let processor = BatchSpanProcessor::builder(Counting {
            inner: exporter,
            counts: counts.clone(),
        })
        .with_batch_config(batch)
        .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(Bounded {
                inner: processor,
                counts: counts.clone(),
                cap: config.queue_spans,
            })
            .with_sampler(Sampler::AlwaysOn)
            .with_resource(
                Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("sluice");
        tracing::info!(endpoint = %url, sampling = config.sampling, "exporting spans of traced messages over OTLP/HTTP");
        Ok(Telemetry {
            exporting: Some(Exporting { provider, tracer }),
            sampling: config.sampling,
            counts,
        })
    }

    /// True if spans are made and exported.
    pub fn is_on(&self) -> bool {
        self.exporting.is_some()
    }

    /// The context a published message's spans hang from, if it is traced,
    /// given what its `traceparent` says (`None`: it has none; `Some(None)`:
    /// one that is not valid): its sampled context, or a new trace for the
    /// configured fraction of messages without one.
    pub fn parent_of(&self, sent: Option<Option<SpanContext>>) -> Option<Context> {
        self.exporting.as_ref()?;
        match sent {
            Some(sent) => sent
                .filter(SpanContext::is_sampled)
                .map(|c| Context::new().with_remote_span_context(c)),
            None => (self.sampling > 0.0 && fastrand::f64() < self.sampling).then(Context::new),
        }
    }

    /// Starts a span of `kind` named `name` under `parent`, begun at `start`.
    /// With telemetry off it is a span that records nothing.
    pub fn span(
        &self,
        name: &'static str,
        kind: SpanKind,
        parent: &Context,
        start: SystemTime,
        attributes: Vec<KeyValue>,
    ) -> Option<Span> {
        let tracer = &self.exporting.as_ref()?.tracer;
        let builder = tracer
            .span_builder(name)
            .with_kind(kind)
            .with_start_time(start)
            .with_attributes(attributes);
        Some(tracer.build_with_context(builder, parent))
    }

    /// What became of the spans so far.
    pub fn counts(&self) -> SpanCounts {
        SpanCounts {
            exported: self.counts.exported.load(Ordering::Relaxed),
            dropped: self.counts.dropped.load(Ordering::Relaxed),
            failed: self.counts.failed.load(Ordering::Relaxed),
        }
    }

    /// Exports what is waiting and stops. Blocks (up to the export
    /// timeout): call it off the async workers.
    pub fn shutdown(&self) {
        if let Some(exporting) = &self.exporting {
            if let Err(error) = exporting.provider.shutdown() {
                tracing::debug!(%error, "telemetry shutdown");
            }
        }
    }
}

/// A context whose parent is `span`: for its children.
pub fn child_of(span: &Span) -> Context {
    use opentelemetry::trace::Span as _;
    Context::new().with_remote_span_context(span.span_context().clone())
}
