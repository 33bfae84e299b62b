//! The blocking API (`sluice.Client`): each call waits for its answer
//! with the GIL released ([`wait`]); subscriptions and consumers are
//! iterators.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyType;
use pyo3::IntoPyObjectExt;

use crate::api::{client_methods, Api};
use crate::convert::timeout;
use crate::errors::Result;
use crate::ops::{self, Settle, SharedConsumer, SharedResponder, SharedSubscription};
use crate::shared::{Next, Shared};
use crate::types::{delivery_object, request_object, Message};

/// How often a blocking call looks for pending signals.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// Runs `future` to its end on the shared runtime without holding the
/// GIL, waking every [`SIGNAL_CHECK`] to let Python handle signals
/// (Ctrl-C raises `KeyboardInterrupt` and drops the future).
pub fn wait<F, T>(py: Python<'_>, future: F) -> PyResult<T>
where
    F: Future<Output = Result<T>> + Send,
    T: Send,
{
    let runtime = crate::runtime();
    let mut future = std::pin::pin!(future);
    loop {
        let step = py.detach(|| {
            // The timer is made inside the runtime: it needs its clock.
            runtime.block_on(async { tokio::time::timeout(SIGNAL_CHECK, future.as_mut()).await })
        });
        match step {
            Ok(done) => return done.map_err(|e| e.into_py(py)),
            Err(_) => py.check_signals()?,
        }
    }
}

/// The next item of `shared`, waiting up to `limit`; `None` once nothing
/// more comes.
fn receive<T: Next>(
    py: Python<'_>,
    shared: &Arc<Shared<T>>,
    limit: Option<Duration>,
) -> PyResult<Option<T::Item>> {
    // Each turn hands out an item, ends, or waits until one is at hand.
    loop {
        if let Some(item) = shared.take() {
            return item.map(Some).map_err(|e| e.into_py(py));
        }
        if shared.is_over() {
            return Ok(None);
        }
        wait(py, shared.clone().fill(limit))?;
    }
}

/// Runs calls to the end.
pub struct Blocking;

impl Api for Blocking {
    type Client = Client;
    type Subscription = Subscription;
    type Consumer = Consumer;
    type Responder = Responder;

    fn run<'py, F, T>(py: Python<'py>, future: F) -> PyResult<Bound<'py, PyAny>>
    where
        F: Future<Output = Result<T>> + Send + 'static,
        T: for<'a> IntoPyObject<'a> + Send + 'static,
    {
        wait(py, future)?.into_bound_py_any(py)
    }
}

/// A connection to a sluice broker (or to one node of a cluster at a
/// time). Thread-safe; usable as a context manager, which closes it.
#[pyclass(module = "sluice", frozen)]
pub struct Client {
    inner: sluice_client::Client,
}

client_methods!(Client, Blocking);

#[pymethods]
impl Client {
    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _kind: Option<Bound<'_, PyType>>,
        _value: Option<Bound<'_, PyAny>>,
        _traceback: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.close(py).map(drop)
    }
}

/// Messages of a subscription, in order per topic: iterate over it, or
/// `receive(timeout)`. `close()` (or leaving its `with` block) ends it.
#[pyclass(module = "sluice", frozen)]
pub struct Subscription {
    inner: SharedSubscription,
}

impl From<SharedSubscription> for Subscription {
    fn from(inner: SharedSubscription) -> Self {
        Subscription { inner }
    }
}

#[pymethods]
impl Subscription {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Message>> {
        self.receive(py, None)
    }

    /// The next message, waiting up to `timeout` seconds (forever if
    /// None); raises `Timeout` when none came, None once it ended.
    #[pyo3(signature = (timeout=None))]
    fn receive(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Message>> {
        let next = receive(py, &self.inner, self::timeout(timeout)?)?;
        Ok(next.map(|inner| Message { inner }))
    }

    /// Live messages the broker dropped because this subscriber fell
    /// behind (a `"latest"` subscription only; replays never drop).
    #[getter]
    fn dropped(&self) -> u64 {
        self.inner.dropped()
    }

    /// Ends the subscription; returns once the request to end it is on its
    /// way (the broker drops it as soon as it reads that).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let inner = self.inner.clone();
        wait(py, async move {
            inner.close().await;
            Ok(())
        })
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _kind: Option<Bound<'_, PyType>>,
        _value: Option<Bound<'_, PyAny>>,
        _traceback: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.close(py)
    }
}

/// Membership of a consumer group: iterate over it for `Delivery`s, or
/// `receive(timeout)`. `close()` leaves the group; what it held unsettled
/// goes to the other members.
#[pyclass(module = "sluice", frozen)]
pub struct Consumer {
    inner: SharedConsumer,
}

impl From<SharedConsumer> for Consumer {
    fn from(inner: SharedConsumer) -> Self {
        Consumer { inner }
    }
}

#[pymethods]
impl Consumer {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, Delivery>>> {
        self.receive(py, None)
    }

    /// The next delivery, waiting up to `timeout` seconds (forever if
    /// None); raises `Timeout` when none came, None once it ended.
    #[pyo3(signature = (timeout=None))]
    fn receive<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Option<Bound<'py, Delivery>>> {
        let next = receive(py, &self.inner, self::timeout(timeout)?)?;
        next.map(|d| delivery_object(py, d, |inner| Delivery { inner }))
            .transpose()
    }

    /// Acks every delivery of the list in one go: for many, much cheaper
    /// than one `ack()` each. Raises the first error after trying all.
    fn ack_many(&self, py: Python<'_>, deliveries: Vec<PyRef<'_, Delivery>>) -> PyResult<()> {
        let deliveries = deliveries.iter().map(|d| d.inner.clone()).collect();
        wait(py, ops::ack_all(deliveries))
    }

    /// Leaves the group; returns once the request to leave is on its way
    /// (the broker drops the member as soon as it reads that).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let inner = self.inner.clone();
        wait(py, async move {
            inner.close().await;
            Ok(())
        })
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _kind: Option<Bound<'_, PyType>>,
        _value: Option<Bound<'_, PyAny>>,
        _traceback: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.close(py)
    }
}

/// A message delivered by a consumer group. Settle it once: `ack()`,
/// `nack(delay=seconds)` or `reject(reason)`; `in_progress()` buys time.
/// Unsettled, it comes back after the group's ack wait.
#[pyclass(module = "sluice", frozen, extends = Message)]
pub struct Delivery {
    inner: Arc<sluice_client::Delivery>,
}

impl Delivery {
    fn settle(&self, py: Python<'_>, how: Settle) -> PyResult<()> {
        wait(py, ops::settle(self.inner.clone(), how))
    }
}

#[pymethods]
impl Delivery {
    /// Done: the group never delivers it again.
    fn ack(&self, py: Python<'_>) -> PyResult<()> {
        self.settle(py, Settle::Ack)
    }

    /// Failed: deliver it again after `delay` seconds, or after the
    /// group's backoff.
    #[pyo3(signature = (delay=None))]
    fn nack(&self, py: Python<'_>, delay: Option<f64>) -> PyResult<()> {
        let delay = delay
            .map(|d| crate::convert::seconds("delay", d))
            .transpose()?;
        self.settle(py, Settle::Nack(delay))
    }

    /// Poison: move it to the dead-letter topic, with this reason.
    fn reject(&self, py: Python<'_>, reason: String) -> PyResult<()> {
        self.settle(py, Settle::Reject(reason))
    }

    /// Still working on it: restart the ack-wait clock.
    fn in_progress(&self, py: Python<'_>) -> PyResult<()> {
        self.settle(py, Settle::InProgress)
    }
}

/// Requests to answer: iterate over it for `Request`s, or
/// `receive(timeout)`. `close()` (or leaving its `with` block) stops
/// answering; the requests it held are answered `no_responders`.
#[pyclass(module = "sluice", frozen)]
pub struct Responder {
    inner: SharedResponder,
}

impl From<SharedResponder> for Responder {
    fn from(inner: SharedResponder) -> Self {
        Responder { inner }
    }
}

#[pymethods]
impl Responder {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, Request>>> {
        self.receive(py, None)
    }

    /// The next request, waiting up to `timeout` seconds (forever if
    /// None); raises `Timeout` when none came, None once it ended.
    #[pyo3(signature = (timeout=None))]
    fn receive<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Option<Bound<'py, Request>>> {
        let next = receive(py, &self.inner, self::timeout(timeout)?)?;
        next.map(|r| request_object(py, r, |inner| Request { inner }))
            .transpose()
    }

    /// Stops answering; returns once the request to stop is on its way.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let inner = self.inner.clone();
        wait(py, async move {
            inner.close().await;
            Ok(())
        })
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _kind: Option<Bound<'_, PyType>>,
        _value: Option<Bound<'_, PyAny>>,
        _traceback: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.close(py)
    }
}

/// A request to answer: a `Message` (offset 0: not stored) and the right
/// to answer it once, with `reply(payload)` or `reply_error(message)`.
/// The first answer of all its responders reaches the requester; a later
/// one raises `NotWaiting`.
#[pyclass(module = "sluice", frozen, extends = Message)]
pub struct Request {
    inner: Arc<sluice_client::IncomingRequest>,
}

#[pymethods]
impl Request {
    /// Answers with `payload` (and `headers`).
    #[pyo3(signature = (payload, *, headers=None))]
    fn reply(
        &self,
        py: Python<'_>,
        payload: &Bound<'_, PyAny>,
        headers: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let reply = crate::types::reply(payload, headers)?;
        wait(py, ops::answer(self.inner.clone(), Ok(reply)))
    }

    /// Answers with an error: the requester's call raises
    /// `ResponderError` with `message`.
    fn reply_error(&self, py: Python<'_>, message: String) -> PyResult<()> {
        wait(py, ops::answer(self.inner.clone(), Err(message)))
    }
}
