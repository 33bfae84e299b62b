//! The result of a scenario ([`Outcome`]: rates and latency percentiles)
//! and the table `sluice bench` prints without `--json`.

use std::time::Duration;

use super::window::Steady;
use crate::cli::args::BenchArgs;

/// One row of results.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    /// Scenario (and variant).
    pub scenario: String,
    /// Payload size.
    pub payload_bytes: usize,
    /// Messages measured (received, for fan-out).
    pub messages: u64,
    /// Messages per second.
    pub msgs_per_s: f64,
    /// Payload megabytes (10^6) per second.
    pub mb_per_s: f64,
    /// Latency percentiles (µs) where measured.
    pub p50_us: Option<u64>,
    /// 99th percentile (µs).
    pub p99_us: Option<u64>,
    /// 99.9th percentile (µs).
    pub p999_us: Option<u64>,
    /// `connections` with `--admin`: the broker's resident memory before
    /// and while the connections were held (bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_before_bytes: Option<u64>,
    /// See `rss_before_bytes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_held_bytes: Option<u64>,
    /// With `--duration`: the steady window the figure covers (seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_s: Option<f64>,
    /// With `--duration`: the window was cut short (the work ran out
    /// first: a `queue` topic ran dry, or `--count` was reached).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub short_window: Option<bool>,
}

impl Outcome {
    /// `messages` of `size` bytes in `took`, no latencies yet.
    pub fn new(scenario: &str, size: usize, messages: u64, took: Duration) -> Outcome {
        let secs = took.as_secs_f64().max(1e-9);
        Outcome {
            scenario: scenario.to_owned(),
            payload_bytes: size,
            messages,
            msgs_per_s: messages as f64 / secs,
            mb_per_s: (messages as f64 * size as f64) / secs / 1e6,
            p50_us: None,
            p99_us: None,
            p999_us: None,
            rss_before_bytes: None,
            rss_held_bytes: None,
            window_s: None,
            short_window: None,
        }
    }

    /// What `steady` counted; timed, with its window.
    pub fn measured(scenario: &str, size: usize, steady: Steady) -> Outcome {
        let mut row = Outcome::new(scenario, size, steady.messages, steady.took);
        // 0 over an empty window, not a count over a nanosecond.
        row.msgs_per_s = steady.rate();
        row.mb_per_s = steady.rate() * size as f64 / 1e6;
        if steady.planned.is_some() {
            row.window_s = Some(steady.took.as_secs_f64());
            row.short_window = Some(steady.short);
        }
        row
    }

    /// The percentiles of `samples` (µs); none when there are none.
    pub fn latencies(mut self, mut samples: Vec<u64>) -> Outcome {
        if samples.is_empty() {
            return self;
        }
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
        self.p50_us = Some(at(0.50));
        self.p99_us = Some(at(0.99));
        self.p999_us = Some(at(0.999));
        self
    }
}

/// The results as a table on standard output.
pub fn print_table(args: &BenchArgs, results: &[Outcome]) {
    let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    println!(
        "{:<28} {:>8} {:>10} {:>12} {:>9} {:>9} {:>9} {:>9}",
        "scenario", "payload", "messages", "msg/s", "MB/s", "p50 µs", "p99 µs", "p99.9 µs"
    );
    for r in results {
        println!(
            "{:<28} {:>8} {:>10} {:>12.0} {:>9.1} {:>9} {:>9} {:>9}",
            r.scenario,
            r.payload_bytes,
            r.messages,
            r.msgs_per_s,
            r.mb_per_s,
            opt(r.p50_us),
            opt(r.p99_us),
            opt(r.p999_us)
        );
    }
    if let Some(window) = args.duration {
        println!(
            "(each figure: what was received or acked in a {} window after a {} warm-up)",
            humantime::format_duration(window),
            humantime::format_duration(args.warmup)
        );
    }
    if args.embedded {
        println!(
            "(embedded broker, fsync={:?}; broker and clients share this machine's cores)",
            args.fsync
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_percentiles() {
        let row = Outcome::new("publish", 1000, 2000, Duration::from_secs(2))
            .latencies((1..=1000).rev().collect());
        assert_eq!(row.msgs_per_s, 1000.0);
        assert_eq!(row.mb_per_s, 1.0);
        assert_eq!(
            (row.p50_us, row.p99_us, row.p999_us),
            (Some(501), Some(991), Some(1000))
        );
        let none = Outcome::new("queue", 1, 1, Duration::ZERO).latencies(Vec::new());
        assert_eq!(none.p50_us, None);
        let short = Steady {
            messages: 500,
            took: Duration::from_millis(500),
            planned: Some(Duration::from_secs(3)),
            short: true,
        };
        let timed = Outcome::measured("queue", 1, short);
        assert_eq!(timed.msgs_per_s, 1000.0);
        assert_eq!(
            (timed.window_s, timed.short_window),
            (Some(0.5), Some(true))
        );
        let counted = Outcome::measured(
            "queue",
            1,
            Steady {
                planned: None,
                ..short
            },
        );
        assert_eq!((counted.window_s, counted.short_window), (None, None));
    }
}
