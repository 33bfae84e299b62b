//! [`Rates`]: publish and deliver rates over the last minutes, sampled
//! once a second while the console is on, for the overview's chart and
//! the topics' rates.
//!
//! The publish rate of a topic is how fast its committed end moves, read
//! from the store's in-memory view of its topics (no I/O, also in cluster
//! mode, where it counts what this node has seen stored); the deliver rate
//! is the broker's delivered-messages counter.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::Console;
use crate::sync::lock;

/// How often a sample is taken.
pub const EVERY: Duration = Duration::from_secs(1);
/// Samples kept: five minutes.
const KEPT: usize = 300;

/// One point of the chart.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Point {
    /// When (ms since the Unix epoch).
    pub at_ms: i64,
    /// Messages stored per second, over all topics.
    pub published: f64,
    /// Messages delivered per second.
    pub delivered: f64,
    /// Client connections open.
    pub connections: i64,
}

struct Totals {
    at: Instant,
    delivered: u64,
    /// Next offset of each topic.
    offsets: HashMap<String, u64>,
}

#[derive(Default)]
struct Inner {
    points: VecDeque<Point>,
    last: Option<Totals>,
    /// Messages per second of each topic over the last sample.
    per_topic: HashMap<String, f64>,
}

/// The sampled rates.
#[derive(Default)]
pub struct Rates(Mutex<Inner>);

impl Rates {
    /// The chart's points, oldest first.
    pub fn points(&self) -> Vec<Point> {
        lock(&self.0).points.iter().copied().collect()
    }

    /// A topic's publish rate (messages per second) over the last sample.
    pub fn topic(&self, name: &str) -> f64 {
        lock(&self.0).per_topic.get(name).copied().unwrap_or(0.0)
    }

    fn record(&self, now: Totals, connections: i64) {
        let mut inner = lock(&self.0);
        if let Some(last) = inner.last.take() {
            let secs = now.at.duration_since(last.at).as_secs_f64().max(1e-3);
            let mut published = 0;
            let mut per_topic = HashMap::with_capacity(now.offsets.len());
            for (topic, end) in &now.offsets {
                // A topic new since the last sample counts from 0; one
                // deleted and made again starts over (no negative rate).
                let stored = end.saturating_sub(last.offsets.get(topic).copied().unwrap_or(0));
                published += stored;
                per_topic.insert(topic.clone(), stored as f64 / secs);
            }
            inner.per_topic = per_topic;
            let at_ms = crate::store::now_ms();
            if inner.points.len() == KEPT {
                inner.points.pop_front();
            }
            inner.points.push_back(Point {
                at_ms,
                published: published as f64 / secs,
                delivered: now.delivered.saturating_sub(last.delivered) as f64 / secs,
                connections,
            });
        }
        inner.last = Some(now);
    }
}

/// Takes a sample every [`EVERY`] until `shutdown`.
pub async fn sample(console: Arc<Console>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let broker = &console.broker;
        let offsets = sluice_proto::Pattern::parse(">")
            .map(|every| broker.store().topics(&every))
            .unwrap_or_default()
            .into_iter()
            .map(|t| (t.name.to_string(), t.committed_end))
            .collect();
        let metrics = broker.metrics();
        let totals = Totals {
            at: Instant::now(),
            delivered: metrics.delivered_total(),
            offsets,
        };
        console.rates.record(totals, metrics.open_connections());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(at: Instant, delivered: u64, offsets: &[(&str, u64)]) -> Totals {
        Totals {
            at,
            delivered,
            offsets: offsets.iter().map(|(t, o)| ((*t).to_owned(), *o)).collect(),
        }
    }

    #[test]
    fn rates_are_the_change_over_the_time_between_samples() {
        let rates = Rates::default();
        let t0 = Instant::now();
        rates.record(totals(t0, 0, &[("a", 10)]), 1);
        assert!(rates.points().is_empty(), "one sample has no rate yet");
        let t1 = t0 + Duration::from_secs(2);
        rates.record(totals(t1, 40, &[("a", 30), ("b", 4)]), 3);
        let points = rates.points();
        assert_eq!(points.len(), 1);
        // a: 20 in 2 s; b is new since the last sample: 4 in 2 s.
        assert_eq!(points[0].published, 12.0);
        assert_eq!(points[0].delivered, 20.0);
        assert_eq!(points[0].connections, 3);
        assert_eq!(rates.topic("a"), 10.0);
        assert_eq!(rates.topic("b"), 2.0);
        // Topics there at the first sample are the baseline, not a burst.
        let fresh = Rates::default();
        fresh.record(totals(t0, 0, &[("old", 1_000_000)]), 0);
        fresh.record(totals(t1, 0, &[("old", 1_000_002)]), 0);
        assert_eq!(fresh.points()[0].published, 1.0);
    }

    #[test]
    fn only_the_last_minutes_are_kept() {
        let rates = Rates::default();
        let t0 = Instant::now();
        for i in 0..(KEPT as u64 + 10) {
            rates.record(totals(t0 + Duration::from_secs(i), i, &[]), 0);
        }
        assert_eq!(rates.points().len(), KEPT);
    }
}
