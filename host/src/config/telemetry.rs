//! `[telemetry]`: OpenTelemetry spans of messages, exported over OTLP/HTTP,
//! and `[telemetry.record]`, the bounded per-message event record behind
//! `sluice trace`.

use std::time::Duration;

use serde::Deserialize;

/// `[telemetry]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP endpoint spans are sent to (protobuf over HTTP), such
    /// as `http://127.0.0.1:4318`; `/v1/traces` is added when the URL has
    /// no path. Unset: no spans are made or exported.
    pub endpoint: Option<String>,
    /// The fraction of messages published without a `traceparent` header
    /// the broker starts a trace for (0 to 1). Messages that carry a
    /// sampled `traceparent` are always traced while `endpoint` is set.
    pub sampling: f64,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Spans waiting for export at most. A span that finds the queue full
    /// is dropped and counted (`sluice_telemetry_spans_dropped_total`): the
    /// publish path never waits for the collector.
    pub queue_spans: usize,
    /// How long one export request may take before it is abandoned.
    #[serde(with = "humantime_serde")]
    pub export_timeout: Duration,
    /// `[telemetry.record]`: what `sluice trace` reads.
    pub record: RecordConfig,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            endpoint: None,
            sampling: 0.0,
            service_name: "sluice".into(),
            queue_spans: 4096,
            export_timeout: Duration::from_secs(10),
            record: RecordConfig::default(),
        }
    }
}

/// `[telemetry.record]`: the broker's memory of what happened to recent
/// messages (received, each stage's outcome, where they were stored,
/// deliveries, acks, nacks and dead letters).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordConfig {
    /// Keep the record.
    pub enabled: bool,
    /// Forget what happened to messages beyond the last this many published.
    pub messages: usize,
    /// Forget events older than this.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// The record's memory at most, in bytes: the oldest events are
    /// forgotten first to stay under it.
    pub max_bytes: usize,
}

impl Default for RecordConfig {
    fn default() -> Self {
        RecordConfig {
            enabled: true,
            messages: 100_000,
            window: Duration::from_secs(15 * 60),
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

impl TelemetryConfig {
    /// What is wrong with these settings, if anything.
    pub fn problem(&self) -> Option<String> {
        if !(0.0..=1.0).contains(&self.sampling) {
            return Some("telemetry.sampling must be between 0 and 1".into());
        }
        if let Some(endpoint) = &self.endpoint {
            if !endpoint.starts_with("http://") && !endpoint.starts_with("https://") {
                return Some(format!(
                    "telemetry.endpoint {endpoint:?} must be an http:// URL of an OTLP/HTTP collector, such as http://127.0.0.1:4318"
                ));
            }
            if endpoint.starts_with("https://") {
                return Some(
                    "telemetry.endpoint: https is not supported; export to a collector on this machine or network over http://".into(),
                );
            }
        }
        if self.service_name.is_empty() {
            return Some("telemetry.service_name must not be empty".into());
        }
        if self.queue_spans == 0 || self.export_timeout.is_zero() {
            return Some(
                "telemetry.queue_spans and telemetry.export_timeout must be above zero".into(),
            );
        }
        if self.record.messages == 0 || self.record.window.is_zero() {
            return Some(
                "telemetry.record.messages and telemetry.record.window must be above zero".into(),
            );
        }
        if self.record.max_bytes < 64 * 1024 {
            return Some("telemetry.record.max_bytes must be at least 65536".into());
        }
        None
    }

    /// The URL spans are posted to: `endpoint`, with `/v1/traces` when it
    /// names no path.
    pub fn traces_url(&self) -> Option<String> {
        let endpoint = self.endpoint.as_deref()?;
        let after_scheme = endpoint
            .split_once("://")
            .map_or(endpoint, |(_, rest)| rest);
        let has_path = after_scheme
            .find('/')
            .is_some_and(|i| i + 1 < after_scheme.len());
        Some(if has_path {
            endpoint.to_owned()
        } else {
            format!("{}/v1/traces", endpoint.trim_end_matches('/'))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_path_is_added_only_when_missing() {
        let with = |e: &str| TelemetryConfig {
            endpoint: Some(e.into()),
            ..TelemetryConfig::default()
        };
        assert_eq!(
            with("http://127.0.0.1:4318").traces_url().unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            with("http://c:4318/").traces_url().unwrap(),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            with("http://c:4318/custom/traces").traces_url().unwrap(),
            "http://c:4318/custom/traces"
        );
        assert!(with("grpc://c:4317").problem().is_some());
        let bad = TelemetryConfig {
            sampling: 1.5,
            ..TelemetryConfig::default()
        };
        assert!(bad.problem().unwrap().contains("sampling"));
        assert_eq!(TelemetryConfig::default().problem(), None);
    }
}
