//! Bounded waiting: every wait in the suite goes through a deadline and
//! fails with what it was waiting for, never a bare sleep before an assert.

use std::future::Future;
use std::time::{Duration, Instant};

/// The default bound of a single wait (a response, a batch of deliveries).
pub const WAIT: Duration = Duration::from_secs(10);

/// How often [`wait_until`] looks again: often enough that a wait ends soon
/// after its condition holds, rarely enough not to load the broker.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Awaits `fut` for at most `limit`; panics naming `what` when it takes longer.
pub async fn bounded_for<F: Future>(what: &str, limit: Duration, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// [`bounded_for`] with the default bound [`WAIT`].
pub async fn bounded<F: Future>(what: &str, fut: F) -> F::Output {
    bounded_for(what, WAIT, fut).await
}

/// Waits until an async condition holds: runs `check` until it returns
/// `Ok`, every [`POLL_INTERVAL`], for at most `limit`. Panics naming `what`
/// and the last state seen (`check`'s `Err`, formatted only then) otherwise.
///
/// For conditions that can only be observed by asking (a group's info, a
/// metric, a file, a count kept by a spawned task); a message that arrives
/// on its own is awaited directly, with [`bounded`] or `collect`.
pub async fn wait_until<T, E, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Debug,
{
    let deadline = Instant::now() + limit;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {limit:?} waiting for {what}; last state: {last:?}")
            }
            Err(_) => tokio::time::sleep(POLL_INTERVAL).await,
        }
    }
}
