//! [`LogLimit`]: at most one log line per interval, for refusals that a
//! client can provoke at will.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sync::lock;

/// At most one log line per interval; counts what it held back.
#[derive(Debug)]
pub struct LogLimit {
    interval: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogLimit {
    /// A limit of one line per `interval`.
    pub const fn new(interval: Duration) -> LogLimit {
        LogLimit {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(held back since the last line)` if a line may be logged now.
    pub fn allow(&self) -> Option<u64> {
        let mut state = lock(&self.state);
        let now = Instant::now();
        match state.0 {
            Some(last) if now.duration_since(last) < self.interval => {
                state.1 += 1;
                None
            }
            _ => {
                let held = state.1;
                *state = (Some(now), 0);
                Some(held)
            }
        }
    }
}
