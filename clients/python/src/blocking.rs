//! The blocking API (`sluice.Client`): each call waits for its answer
//! with the GIL released; subscriptions and consumers are iterators.

use std::future::Future;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyType;
use pyo3::IntoPyObjectExt;

use crate::api::{client_methods, Api};
use crate::ops::{self, Settle, SharedConsumer, SharedSubscription};
use crate::types::Message;
use crate::wait::wait;

/// Runs calls to the end.
pub struct Blocking;

impl Api for Blocking {
    type Client = Client;
    type Subscription = Subscription;
    type Consumer = Consumer;

    fn run<'py, F, T>(py: Python<'py>, future: F) -> PyResult<Bound<'py, PyAny>>
    where
        F: Future<Output = PyResult<T>> + Send + 'static,
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
        let timeout = timeout
            .map(|t| crate::convert::seconds("timeout", t))
            .transpose()?;
        if let Some(ready) = self.inner.ready() {
            return ready.map(|inner| Some(Message { inner }));
        }
        let next = wait(py, self.inner.clone().next(timeout))?;
        Ok(next.map(|inner| Message { inner }))
    }

    /// Ends the subscription.
    fn close(&self) {
        self.inner.close();
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        _kind: Option<Bound<'_, PyType>>,
        _value: Option<Bound<'_, PyAny>>,
        _traceback: Option<Bound<'_, PyAny>>,
    ) {
        self.inner.close();
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
        let timeout = timeout
            .map(|t| crate::convert::seconds("timeout", t))
            .transpose()?;
        let next = match self.inner.ready() {
            Some(ready) => Some(ready?),
            None => wait(py, self.inner.clone().next(timeout))?,
        };
        next.map(|d| Delivery::wrap(py, d)).transpose()
    }

    /// Acks every delivery of the list in one go: for many, much cheaper
    /// than one `ack()` each. Raises the first error after trying all.
    fn ack_many(&self, py: Python<'_>, deliveries: Vec<PyRef<'_, Delivery>>) -> PyResult<()> {
        let deliveries = deliveries.iter().map(|d| d.inner.clone()).collect();
        wait(py, ops::ack_all(deliveries))
    }

    /// Leaves the group.
    fn close(&self) {
        self.inner.close();
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        _kind: Option<Bound<'_, PyType>>,
        _value: Option<Bound<'_, PyAny>>,
        _traceback: Option<Bound<'_, PyAny>>,
    ) {
        self.inner.close();
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
    fn wrap(py: Python<'_>, delivery: sluice_client::Delivery) -> PyResult<Bound<'_, Delivery>> {
        let message = Message {
            inner: delivery.message.clone(),
        };
        let init = PyClassInitializer::from(message).add_subclass(Delivery {
            inner: Arc::new(delivery),
        });
        Bound::new(py, init)
    }

    fn settle(&self, py: Python<'_>, how: Settle) -> PyResult<()> {
        wait(py, ops::settle((*self.inner).clone(), how))
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
