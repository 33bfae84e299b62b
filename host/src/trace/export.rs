//! The way spans leave the broker: the SDK's batch span processor and OTLP
//! exporter, behind a bound of our own that counts what it drops, and an
//! HTTP client that runs on the broker's tokio runtime (the batch
//! processor exports from a thread of its own).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry::Context;
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{BatchSpanProcessor, Span, SpanData, SpanExporter, SpanProcessor};
use opentelemetry_sdk::Resource;

use crate::auth::LogLimit;

/// Rate limit of the log lines about failed exports.
static EXPORT_FAILURES_LOG: LogLimit = LogLimit::new(Duration::from_secs(10));

/// What became of the spans the broker made.
#[derive(Debug, Default)]
pub struct ExportCounts {
    /// Spans the collector accepted.
    pub exported: AtomicU64,
    /// Spans dropped because the export queue was full.
    pub dropped: AtomicU64,
    /// Spans whose export failed (collector down, refused, timed out).
    pub failed: AtomicU64,
    /// Spans handed to the batch processor and not yet exported.
    pending: AtomicUsize,
}

/// The SDK's batch processor behind a bound: a span that would take the
/// spans waiting for export past `cap` is dropped and counted, so a slow
/// or absent collector costs the publish path one atomic add per span.
#[derive(Debug)]
pub(super) struct Bounded {
    pub inner: BatchSpanProcessor,
    pub counts: Arc<ExportCounts>,
    pub cap: usize,
}

impl SpanProcessor for Bounded {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.counts.pending.fetch_add(1, Ordering::Relaxed) >= self.cap {
            self.counts.pending.fetch_sub(1, Ordering::Relaxed);
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP exporter, counting what it exported or failed to.
#[derive(Debug)]
pub(super) struct Counting<E> {
    pub inner: E,
    pub counts: Arc<ExportCounts>,
}

impl<E: SpanExporter> SpanExporter for Counting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let result = self.inner.export(batch).await;
        self.counts.pending.fetch_sub(n, Ordering::Relaxed);
        match &result {
            Ok(()) => self.counts.exported.fetch_add(n as u64, Ordering::Relaxed),
            Err(error) => {
                if let Some(held) = EXPORT_FAILURES_LOG.allow() {
                    tracing::warn!(spans = n, held_back = held, %error, "exporting spans failed");
                }
                self.counts.failed.fetch_add(n as u64, Ordering::Relaxed)
            }
        };
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// hyper's client, run on the broker's runtime: the batch processor's
/// thread awaits the request's task.
#[derive(Debug)]
pub(super) struct OnRuntime {
    pub client: HyperClient,
    pub runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        self.runtime
            .spawn(async move { client.send_bytes(request).await })
            .await
            .map_err(|e| Box::new(e) as HttpError)?
    }
}
