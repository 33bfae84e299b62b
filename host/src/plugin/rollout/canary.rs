//! [`Canary`]: which messages the candidate handles, and whether it does
//! worse than the current version.
//!
//! The split: with `by_key`, a message's key hash (CRC-32C) picks its
//! version, so one key always gets one version while the plan stands;
//! messages without a key, and every message without `by_key`, are spread
//! by a golden-ratio sequence, which gives the exact share over any run of
//! messages without randomness.
//!
//! The judgement: each version's messages, failed messages (in batches
//! whose call failed), rejected and dead-lettered messages, and batch
//! latencies are counted in buckets of a tenth of the window. Once the
//! canary handled `min_messages` in the window, it is rolled back when its
//! failure rate or reject rate is above the current version's by more
//! than the plan's margin, or its p99 latency by more than `max_p99_us`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sluice_proto::{CanaryPlan, CanaryWindow, VersionWindow};

use crate::sync::lock;

/// Latency buckets: bucket `i` counts batches under `2^i` µs.
const LATENCY_BUCKETS: usize = 32;
/// Buckets per window.
const SLICES: u32 = 10;

/// Which version handles a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The current version.
    Current,
    /// The canary.
    Canary,
}

#[derive(Debug, Clone, Copy)]
struct Counts {
    messages: u64,
    failed: u64,
    rejected: u64,
    latency: [u64; LATENCY_BUCKETS],
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            messages: 0,
            failed: 0,
            rejected: 0,
            latency: [0; LATENCY_BUCKETS],
        }
    }
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.messages += other.messages;
        self.failed += other.failed;
        self.rejected += other.rejected;
        for (a, b) in self.latency.iter_mut().zip(&other.latency) {
            *a += b;
        }
    }

    fn p99_us(&self) -> u64 {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = (total as f64 * 0.99).ceil() as u64;
        let mut seen = 0;
        for (i, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return 1 << i;
            }
        }
        1 << (LATENCY_BUCKETS - 1)
    }

    fn rate(part: u64, of: u64) -> f64 {
        if of == 0 {
            0.0
        } else {
            part as f64 / of as f64
        }
    }

    fn report(&self) -> VersionWindow {
        VersionWindow {
            messages: self.messages,
            failed: self.failed,
            rejected: self.rejected,
            p99_us: self.p99_us(),
        }
    }
}

/// Counts of both versions per slice of the window, newest last.
#[derive(Debug, Default)]
struct Slices {
    slices: VecDeque<(Instant, [Counts; 2])>,
}

/// A canary's split and measurements.
#[derive(Debug)]
pub struct Canary {
    plan: CanaryPlan,
    /// Share as a fraction.
    share: f64,
    /// Messages split by sequence so far.
    sequence: AtomicU64,
    slices: Mutex<Slices>,
}

/// The golden ratio's fractional part: consecutive multiples of it spread
/// evenly over [0, 1).
const GOLDEN: f64 = 0.618_033_988_749_895;

impl Canary {
    /// A canary under `plan` (validated by the caller).
    pub fn new(plan: CanaryPlan) -> Canary {
        Canary {
            share: (plan.percent / 100.0).clamp(0.0, 1.0),
            plan,
            sequence: AtomicU64::new(0),
            slices: Mutex::new(Slices::default()),
        }
    }

    /// Its plan.
    pub fn plan(&self) -> &CanaryPlan {
        &self.plan
    }

    fn window(&self) -> Duration {
        Duration::from_millis(self.plan.window_ms.max(1))
    }

    /// The version that handles a message with `key`.
    pub fn side(&self, key: Option<&[u8]>) -> Side {
        let point = match key {
            Some(key) if self.plan.by_key => crc32c::crc32c(key) as f64 / (u32::MAX as f64 + 1.0),
            _ => {
                let n = self.sequence.fetch_add(1, Ordering::Relaxed);
                (n as f64 * GOLDEN).fract()
            }
        };
        if point < self.share {
            Side::Canary
        } else {
            Side::Current
        }
    }

    /// Counts one batch handled by `side`: its messages, whether the call
    /// failed, how many it rejected or dead-lettered, and its latency.
    pub fn record(&self, side: Side, messages: usize, failed: bool, rejected: u64, took: Duration) {
        let now = Instant::now();
        let slice = self.window() / SLICES;
        let mut s = lock(&self.slices);
        let window = self.window();
        while s
            .slices
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > window)
        {
            s.slices.pop_front();
        }
        let fresh = s
            .slices
            .back()
            .is_none_or(|(at, _)| now.duration_since(*at) >= slice);
        if fresh {
            s.slices.push_back((now, [Counts::default(); 2]));
        }
        let Some((_, both)) = s.slices.back_mut() else {
            return;
        };
        let c = &mut both[side as usize];
        c.messages += messages as u64;
        if failed {
            c.failed += messages as u64;
        }
        c.rejected += rejected;
        let micros = took.as_micros().max(1) as u64;
        c.latency[(64 - micros.leading_zeros() as usize).min(LATENCY_BUCKETS - 1)] += 1;
    }

    fn totals(&self) -> [Counts; 2] {
        let now = Instant::now();
        let window = self.window();
        let s = lock(&self.slices);
        let mut totals = [Counts::default(); 2];
        for (at, both) in &s.slices {
            if now.duration_since(*at) <= window {
                totals[0].add(&both[0]);
                totals[1].add(&both[1]);
            }
        }
        totals
    }

    /// Both versions over the window.
    pub fn window_report(&self) -> CanaryWindow {
        let [current, canary] = self.totals();
        CanaryWindow {
            current: current.report(),
            candidate: canary.report(),
        }
    }

    /// Why the canary should be rolled back now, if it should.
    pub fn verdict(&self) -> Option<String> {
        let [current, canary] = self.totals();
        if canary.messages < self.plan.min_messages.max(1) {
            return None;
        }
        let percent = |r: f64| format!("{:.1}%", r * 100.0);
        let failed = (
            Counts::rate(canary.failed, canary.messages),
            Counts::rate(current.failed, current.messages),
        );
        if failed.0 - failed.1 > self.plan.max_error_rate {
            return Some(format!(
                "{} of its messages failed (traps, timeouts, errors) against {} for the current version: more than {} above it (--max-error-rate)",
                percent(failed.0),
                percent(failed.1),
                percent(self.plan.max_error_rate)
            ));
        }
        let rejected = (
            Counts::rate(canary.rejected, canary.messages),
            Counts::rate(current.rejected, current.messages),
        );
        if rejected.0 - rejected.1 > self.plan.max_reject_rate {
            return Some(format!(
                "{} of its messages were rejected or dead-lettered against {} for the current version: more than {} above it (--max-reject-rate)",
                percent(rejected.0),
                percent(rejected.1),
                percent(self.plan.max_reject_rate)
            ));
        }
        let (p99, base) = (canary.p99_us(), current.p99_us());
        match self.plan.max_p99_us {
            Some(max) if current.messages > 0 && p99 > base.saturating_add(max) => Some(format!(
                "its p99 batch latency is {p99} µs against {base} µs for the current version: more than {max} µs above it (--max-p99)"
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(percent: f64, by_key: bool) -> CanaryPlan {
        CanaryPlan {
            percent,
            by_key,
            max_error_rate: 0.01,
            max_reject_rate: 0.05,
            max_p99_us: None,
            window_ms: 60_000,
            min_messages: 20,
        }
    }

    #[test]
    fn the_split_gives_the_share_and_keeps_each_key_on_one_version() {
        let c = Canary::new(plan(10.0, false));
        let canary = (0..10_000).filter(|_| c.side(None) == Side::Canary).count();
        assert!((990..=1010).contains(&canary), "{canary}");
        let c = Canary::new(plan(30.0, true));
        let keys: Vec<String> = (0..2000).map(|i| format!("customer-{i}")).collect();
        let first: Vec<Side> = keys.iter().map(|k| c.side(Some(k.as_bytes()))).collect();
        for _ in 0..3 {
            let again: Vec<Side> = keys.iter().map(|k| c.side(Some(k.as_bytes()))).collect();
            assert_eq!(again, first);
        }
        let canary = first.iter().filter(|s| **s == Side::Canary).count();
        assert!((500..=700).contains(&canary), "{canary} of 2000 keys");
    }

    #[test]
    fn a_canary_that_fails_more_than_the_margin_is_judged_only_after_enough_messages() {
        let c = Canary::new(plan(50.0, false));
        let ms = Duration::from_millis(1);
        for _ in 0..19 {
            c.record(Side::Current, 1, false, 0, ms);
        }
        c.record(Side::Canary, 1, true, 0, ms);
        for _ in 0..18 {
            c.record(Side::Canary, 1, false, 0, ms);
        }
        assert_eq!(c.verdict(), None, "19 canary messages: not judged yet");
        c.record(Side::Canary, 1, false, 0, ms);
        let reason = c.verdict().expect("1 of 20 failed: 5% against 0%");
        assert!(
            reason.contains("5.0%") && reason.contains("0.0%"),
            "{reason}"
        );
        let w = c.window_report();
        assert_eq!((w.candidate.messages, w.candidate.failed), (20, 1));
        assert_eq!(w.current.messages, 19);
    }

    #[test]
    fn rejects_and_latency_are_judged_against_the_current_version() {
        let mut p = plan(50.0, false);
        p.max_p99_us = Some(1000);
        let c = Canary::new(p.clone());
        for _ in 0..40 {
            c.record(Side::Current, 1, false, 1, Duration::from_micros(100));
            c.record(Side::Canary, 1, false, 1, Duration::from_micros(100));
        }
        assert_eq!(c.verdict(), None, "both reject everything: no worse");
        let c = Canary::new(p.clone());
        for _ in 0..40 {
            c.record(Side::Current, 1, false, 0, Duration::from_micros(100));
            c.record(Side::Canary, 1, false, 0, Duration::from_millis(5));
        }
        assert!(c.verdict().expect("slow").contains("p99"));
        let c = Canary::new(p);
        for _ in 0..40 {
            c.record(Side::Current, 10, false, 0, Duration::from_micros(100));
            c.record(Side::Canary, 10, false, 1, Duration::from_micros(100));
        }
        assert!(c.verdict().expect("10% rejected").contains("rejected"));
    }
}
