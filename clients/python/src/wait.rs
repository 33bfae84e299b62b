//! Running a future from a blocking call: on the shared runtime, with the
//! GIL released, waking every 100 ms to let Python handle signals (Ctrl-C
//! raises `KeyboardInterrupt` and drops the future).

use std::future::Future;
use std::time::Duration;

use pyo3::prelude::*;

/// How often a blocking call looks for pending signals.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// The runtime every call runs on (pyo3-async-runtimes' own, so that
/// blocking and asyncio calls share connections' background tasks).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    pyo3_async_runtimes::tokio::get_runtime()
}

/// Runs `future` to its end without holding the GIL.
pub fn wait<F, T>(py: Python<'_>, future: F) -> PyResult<T>
where
    F: Future<Output = PyResult<T>> + Send,
    T: Send,
{
    let runtime = runtime();
    let mut future = std::pin::pin!(future);
    loop {
        let step = py.detach(|| {
            // The timer is made inside the runtime: it needs its clock.
            runtime.block_on(async { tokio::time::timeout(SIGNAL_CHECK, future.as_mut()).await })
        });
        match step {
            Ok(done) => return done,
            Err(_) => py.check_signals()?,
        }
    }
}
