//! `sluice._native`: the Python extension behind `import sluice`, over the
//! Rust client (`sluice-client`), so Python gets its behaviour and speed:
//! pipelined publishes, failover, credits, batched settlements.
//!
//! The Python package (`python/sluice/`) re-exports these classes:
//! `sluice` the blocking ones, `sluice.aio` the asyncio ones. Both run the
//! same futures ([`ops`]) on one tokio runtime ([`runtime`]): a blocking
//! call waits with the GIL released; an asyncio call hands Python an
//! awaitable that drops the future when its task is cancelled.
//!
//! # Layout
//!
//! - [`convert`] - Python arguments to the client's types, checked.
//! - [`errors`] - errors, made exceptions of `sluice.errors` where the
//!   GIL is held.
//! - [`types`] - what calls return: `Stored`, `Message`, `TopicInfo`,
//!   `GroupInfo`, `Reply`.
//! - [`ops`] - the futures both APIs run.
//! - [`shared`] - a subscription or consumer shared with the calls
//!   waiting on it: waits take items in, plain calls hand them out.
//! - [`blocking`] - `Client`, `Subscription`, `Consumer`, `Delivery`,
//!   `Responder`, `Request`, and running a future from a blocking call.
//! - [`asyncio`] - `AsyncClient`, `AsyncSubscription`, `AsyncConsumer`,
//!   `AsyncDelivery`, `AsyncResponder`, `AsyncRequest`.

mod api;
mod asyncio;
mod blocking;
mod convert;
mod errors;
mod ops;
mod shared;
mod types;

use pyo3::prelude::*;

/// The runtime every call runs on: pyo3-async-runtimes' own, so that
/// blocking and asyncio calls share the connections' background tasks.
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    pyo3_async_runtimes::tokio::get_runtime()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<types::Stored>()?;
    m.add_class::<types::Place>()?;
    m.add_class::<types::Message>()?;
    m.add_class::<types::TopicInfo>()?;
    m.add_class::<types::GroupInfo>()?;
    m.add_class::<types::Reply>()?;
    m.add_class::<blocking::Client>()?;
    m.add_class::<blocking::Subscription>()?;
    m.add_class::<blocking::Consumer>()?;
    m.add_class::<blocking::Delivery>()?;
    m.add_class::<blocking::Responder>()?;
    m.add_class::<blocking::Request>()?;
    // Named like their blocking twins in `sluice.aio`; prefixed here.
    let py = m.py();
    m.add("AsyncClient", py.get_type::<asyncio::AsyncClient>())?;
    m.add(
        "AsyncSubscription",
        py.get_type::<asyncio::AsyncSubscription>(),
    )?;
    m.add("AsyncConsumer", py.get_type::<asyncio::AsyncConsumer>())?;
    m.add("AsyncDelivery", py.get_type::<asyncio::AsyncDelivery>())?;
    m.add("AsyncResponder", py.get_type::<asyncio::AsyncResponder>())?;
    m.add("AsyncRequest", py.get_type::<asyncio::AsyncRequest>())?;
    Ok(())
}
