//! [`PluginStats`]: calls, messages, errors and batch latency of one
//! plugin version, updated lock-free on every call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::error::PluginError;
use crate::sync::lock;

/// Latency buckets: bucket `i` counts calls that took under `2^i` µs.
const BUCKETS: usize = 32;

/// The outcomes a pipeline stage gives, in [`Outcomes`] order.
pub const OUTCOMES: usize = 6;

/// How many messages a plugin version passed, dropped, replaced, routed,
/// rejected and dead-lettered (as a pipeline stage).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Outcomes {
    pub pass: u64,
    pub drop: u64,
    pub replace: u64,
    pub route: u64,
    pub reject: u64,
    pub dead_letter: u64,
}

impl Outcomes {
    fn from_counts(c: [u64; OUTCOMES]) -> Outcomes {
        let [pass, drop, replace, route, reject, dead_letter] = c;
        Outcomes {
            pass,
            drop,
            replace,
            route,
            reject,
            dead_letter,
        }
    }
}

/// Counters of one plugin version.
#[derive(Debug, Default)]
pub struct PluginStats {
    calls: AtomicU64,
    messages: AtomicU64,
    errors: AtomicU64,
    busy_ns: AtomicU64,
    latency: [AtomicU64; BUCKETS],
    outcomes: [AtomicU64; OUTCOMES],
    last_error: Mutex<Option<(SystemTime, String)>>,
}

/// A snapshot of [`PluginStats`].
#[derive(Debug, Clone, PartialEq)]
pub struct StatsSnapshot {
    /// `handle` calls.
    pub calls: u64,
    /// Messages handled.
    pub messages: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Time spent in calls.
    pub busy: Duration,
    /// Median batch latency (upper bound of its bucket).
    pub p50: Duration,
    /// 99th percentile batch latency (upper bound of its bucket).
    pub p99: Duration,
    /// The last error and when.
    pub last_error: Option<(SystemTime, String)>,
    /// Outcomes given as a pipeline stage.
    pub outcomes: Outcomes,
}

impl PluginStats {
    /// Records one call.
    pub fn record(&self, messages: usize, took: Duration, error: Option<&PluginError>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.messages.fetch_add(messages as u64, Ordering::Relaxed);
        self.busy_ns
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        let micros = took.as_micros().max(1) as u64;
        let bucket = (64 - micros.leading_zeros() as usize).min(BUCKETS - 1);
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
        if let Some(error) = error {
            self.errors.fetch_add(1, Ordering::Relaxed);
            *lock(&self.last_error) = Some((SystemTime::now(), error.to_string()));
        }
    }

    /// Adds one batch's outcome counts, indexed as [`Outcomes`]' fields.
    pub fn record_outcomes(&self, counts: &[u64; OUTCOMES]) {
        for (total, n) in self.outcomes.iter().zip(counts) {
            if *n > 0 {
                total.fetch_add(*n, Ordering::Relaxed);
            }
        }
    }

    fn percentile(&self, counts: &[u64], p: f64) -> Duration {
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return Duration::ZERO;
        }
        let rank = ((total as f64) * p).ceil() as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Duration::from_micros(1u64 << i);
            }
        }
        Duration::from_micros(1u64 << (BUCKETS - 1))
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let counts: Vec<u64> = self
            .latency
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        StatsSnapshot {
            calls: self.calls.load(Ordering::Relaxed),
            messages: self.messages.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            busy: Duration::from_nanos(self.busy_ns.load(Ordering::Relaxed)),
            p50: self.percentile(&counts, 0.50),
            p99: self.percentile(&counts, 0.99),
            last_error: lock(&self.last_error).clone(),
            outcomes: Outcomes::from_counts(
                self.outcomes.each_ref().map(|c| c.load(Ordering::Relaxed)),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_buckets() {
        let stats = PluginStats::default();
        for _ in 0..98 {
            stats.record(10, Duration::from_micros(3), None);
        }
        stats.record(10, Duration::from_millis(5), None);
        stats.record(
            10,
            Duration::from_millis(5),
            Some(&PluginError::Trap {
                plugin: "p".into(),
                reason: "boom".into(),
            }),
        );
        let s = stats.snapshot();
        assert_eq!((s.calls, s.messages, s.errors), (100, 1000, 1));
        assert_eq!(s.p50, Duration::from_micros(4));
        assert_eq!(s.p99, Duration::from_micros(8192));
        assert!(s.last_error.unwrap().1.contains("boom"));
        stats.record_outcomes(&[3, 0, 1, 0, 0, 2]);
        stats.record_outcomes(&[1, 0, 0, 0, 0, 0]);
        let o = stats.snapshot().outcomes;
        assert_eq!((o.pass, o.replace, o.dead_letter, o.drop), (4, 1, 2, 0));
    }
}
