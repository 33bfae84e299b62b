//! How long a scenario runs and what its figure covers. The NATS side of
//! `cargo xtask bench-vs-nats` (`bench/nats-harness`) compiles this same
//! file, so that both sides' figures mean the same: it depends on nothing
//! of this crate.
//!
//! Without `--duration` a scenario sends `--count` messages and its figure
//! covers all of them, from its start to the last message counted. With
//! `--duration` ([`Span::Timed`]) it runs a warm-up (`--warmup`) and then a
//! steady window, and its figure is the messages counted (received, or
//! acked) inside the window divided by the window's length: connection
//! set-up, buffers filling and the drain at the end stay outside it.
//!
//! The counters are read at the window's two edges by [`measure`], beside
//! the work, so that the work itself reads no clock per message.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// Messages per scenario without `--duration` or `--count`.
pub const DEFAULT_COUNT: u64 = 100_000;

/// When the warm-up ends and when the steady window closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phases {
    /// The end of the warm-up: counting starts.
    pub open: Instant,
    /// The end of the window: sending stops.
    pub close: Instant,
}

impl Phases {
    /// A warm-up of `warmup` from now, then a window of `window`.
    pub fn starting_now(warmup: Duration, window: Duration) -> Phases {
        let open = Instant::now() + warmup;
        Phases {
            open,
            close: open + window,
        }
    }

    /// Whether `at` falls inside the window.
    pub fn contains(&self, at: Instant) -> bool {
        self.open <= at && at < self.close
    }

    /// The window's length.
    pub fn window(&self) -> Duration {
        self.close - self.open
    }
}

/// How far a load goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// This many messages, however long they take.
    Count(u64),
    /// Until the window closes, and at most `limit` messages.
    Timed {
        /// The warm-up and the window.
        phases: Phases,
        /// The count, when one was given.
        limit: Option<u64>,
    },
}

impl Span {
    /// `count` messages ([`DEFAULT_COUNT`] when none is given), or with
    /// `timed` (warm-up, window) a warm-up starting now, the window, and
    /// at most `count` messages.
    pub fn new(count: Option<u64>, timed: Option<(Duration, Duration)>) -> Span {
        match timed {
            Some((warmup, window)) => Span::Timed {
                phases: Phases::starting_now(warmup, window),
                limit: count,
            },
            None => Span::Count(count.unwrap_or(DEFAULT_COUNT)),
        }
    }

    /// The most messages the load may send.
    pub fn limit(&self) -> u64 {
        match *self {
            Span::Count(n) => n,
            Span::Timed { limit, .. } => limit.unwrap_or(u64::MAX),
        }
    }

    /// Whether the load may still send at `now`.
    pub fn sending(&self, now: Instant) -> bool {
        match self {
            Span::Count(_) => true,
            Span::Timed { phases, .. } => now < phases.close,
        }
    }

    /// Whether a latency sample of a message sent at `at` belongs to the
    /// figure (timed: only what was sent inside the window).
    pub fn samples(&self, at: Instant) -> bool {
        match self {
            Span::Count(_) => true,
            Span::Timed { phases, .. } => phases.contains(at),
        }
    }

    /// The window, when timed.
    pub fn phases(&self) -> Option<Phases> {
        match self {
            Span::Count(_) => None,
            Span::Timed { phases, .. } => Some(*phases),
        }
    }
}

/// A counter's value, and when it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Messages counted so far.
    pub count: u64,
    /// When.
    pub at: Instant,
}

/// What a scenario's figure covers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Steady {
    /// Messages counted.
    pub messages: u64,
    /// Over this long.
    pub took: Duration,
    /// Timed: the window asked for (`took` is the window measured).
    pub planned: Option<Duration>,
    /// Timed: the work ran out (a consumed topic ran dry, or `--count` was
    /// reached) before the window closed, so `took` is shorter than asked.
    pub short: bool,
}

impl Steady {
    /// A timed run's figure from the counter's readings at the window's
    /// edges. A `close` reading taken before the window was due to close
    /// means that the work ended first: the window then ends at `last`,
    /// when the work counted its last message, and is short.
    pub fn timed(phases: Phases, open: Reading, close: Reading, last: Instant) -> Steady {
        // A timer never wakes early; the counts are read at its wake-ups,
        // so the window runs between those, not the planned instants.
        let ran_out = close.at < phases.close;
        let end = match ran_out {
            true => last.clamp(open.at, close.at),
            false => close.at,
        };
        Steady {
            messages: close.count.saturating_sub(open.count),
            took: end.saturating_duration_since(open.at),
            planned: Some(phases.window()),
            short: ran_out,
        }
    }

    /// Messages per second (0 over an empty window).
    pub fn rate(&self) -> f64 {
        match self.took.as_secs_f64() {
            secs if secs > 0.0 => self.messages as f64 / secs,
            _ => 0.0,
        }
    }
}

/// Sleeps until `at`, or until `done`.
async fn until(at: Instant, done: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep_until(at.into()) => {}
        () = done.cancelled() => {}
    }
}

/// Runs `work` and measures it over `span`. `count` reads the counter the
/// work adds to; `work` returns its result and when it counted its last
/// message. Counted: everything from now to that last message, or, timed,
/// what the counter gained between the window's edges.
pub async fn measure<T>(
    span: Span,
    count: impl Fn() -> u64,
    work: impl Future<Output = anyhow::Result<(T, Instant)>>,
) -> anyhow::Result<(T, Steady)> {
    let Some(phases) = span.phases() else {
        let start = Instant::now();
        let (value, last) = work.await?;
        let steady = Steady {
            messages: count(),
            took: last.saturating_duration_since(start),
            planned: None,
            short: false,
        };
        return Ok((value, steady));
    };
    let done = CancellationToken::new();
    let work = async {
        let result = work.await;
        done.cancel();
        result
    };
    let edges = async {
        until(phases.open, &done).await;
        let open = Reading {
            count: count(),
            at: Instant::now(),
        };
        until(phases.close, &done).await;
        let close = Reading {
            count: count(),
            at: Instant::now(),
        };
        (open, close)
    };
    let (result, (open, close)) = tokio::join!(work, edges);
    let (value, last) = result?;
    Ok((value, Steady::timed(phases, open, close, last)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    fn phases(base: Instant) -> Phases {
        Phases {
            open: at(base, 1_000),
            close: at(base, 4_000),
        }
    }

    #[test]
    fn a_full_window_counts_what_came_between_its_edges() {
        let t = Instant::now();
        let open = Reading {
            count: 1_000,
            at: at(t, 1_002),
        };
        let close = Reading {
            count: 31_000,
            at: at(t, 4_005),
        };
        let steady = Steady::timed(phases(t), open, close, at(t, 4_001));
        assert_eq!(steady.messages, 30_000);
        assert_eq!(steady.took, Duration::from_millis(3_003));
        assert!(!steady.short);
        assert_eq!(steady.planned, Some(Duration::from_secs(3)));
        let exact = Reading {
            count: 31_000,
            at: at(t, 4_000),
        };
        let open = Reading {
            at: at(t, 1_000),
            ..open
        };
        assert_eq!(Steady::timed(phases(t), open, exact, t).rate(), 10_000.0);
    }

    #[test]
    fn a_window_cut_short_ends_at_the_last_message() {
        let t = Instant::now();
        let open = Reading {
            count: 0,
            at: at(t, 1_000),
        };
        let close = Reading {
            count: 20_000,
            at: at(t, 2_500),
        };
        let steady = Steady::timed(phases(t), open, close, at(t, 2_000));
        assert_eq!(steady.took, Duration::from_millis(1_000));
        assert_eq!(steady.rate(), 20_000.0);
        assert!(steady.short);
        // Ran dry in the warm-up: both readings at once, nothing counted.
        let dry = Reading {
            count: 5,
            at: at(t, 600),
        };
        let none = Steady::timed(phases(t), dry, dry, at(t, 500));
        assert_eq!((none.messages, none.took), (0, Duration::ZERO));
        assert_eq!((none.rate(), none.short), (0.0, true));
    }

    #[test]
    fn a_timed_span_sends_until_the_window_closes_and_samples_inside_it() {
        let t = Instant::now();
        let phases = Phases {
            open: at(t, 1_000),
            close: at(t, 4_000),
        };
        let span = Span::Timed {
            phases,
            limit: None,
        };
        assert!(span.sending(at(t, 3_999)) && !span.sending(at(t, 4_000)));
        assert!(!span.samples(at(t, 999)) && span.samples(at(t, 1_000)));
        assert!(!span.samples(at(t, 4_000)));
        assert_eq!(span.limit(), u64::MAX);
        assert_eq!(phases.window(), Duration::from_secs(3));
        let counted = Span::Count(10);
        assert!(counted.sending(at(t, 1_000_000)) && counted.samples(t));
        assert_eq!((counted.limit(), counted.phases()), (10, None));
    }
}
