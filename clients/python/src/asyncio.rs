//! The asyncio API (`sluice.aio.Client`): each call returns an awaitable
//! of a Rust future on the shared runtime (no thread per call);
//! cancelling the task drops the future, and the connection stays usable.
//! Subscriptions and consumers are async iterators.

use std::future::Future;
use std::sync::Arc;

use pyo3::exceptions::PyStopAsyncIteration;
use pyo3::prelude::*;
use pyo3::types::PyType;
use pyo3_async_runtimes::tokio::future_into_py;

use crate::api::{client_methods, Api};
use crate::ops::{self, Settle, SharedConsumer, SharedSubscription};
use crate::types::Message;

/// Hands calls to asyncio.
pub struct Asyncio;

impl Api for Asyncio {
    type Client = AsyncClient;
    type Subscription = AsyncSubscription;
    type Consumer = AsyncConsumer;

    fn run<'py, F, T>(py: Python<'py>, future: F) -> PyResult<Bound<'py, PyAny>>
    where
        F: Future<Output = PyResult<T>> + Send + 'static,
        T: for<'a> IntoPyObject<'a> + Send + 'static,
    {
        future_into_py(py, future)
    }
}

/// A connection to a sluice broker, for asyncio: `await
/// Client.connect(...)`, then `await` each call. Usable as an async
/// context manager, which closes it.
#[pyclass(module = "sluice.aio", name = "Client", frozen)]
pub struct AsyncClient {
    inner: sluice_client::Client,
}

client_methods!(AsyncClient, Asyncio);

#[pymethods]
impl AsyncClient {
    fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let me = slf.unbind();
        future_into_py(py, async move { Ok(me) })
    }

    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _kind: Option<Bound<'py, PyType>>,
        _value: Option<Bound<'py, PyAny>>,
        _traceback: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.close(py)
    }
}

/// A subscription, for asyncio: `async for message in subscription`, or
/// `await receive(timeout)`.
#[pyclass(module = "sluice.aio", name = "Subscription", frozen)]
pub struct AsyncSubscription {
    inner: SharedSubscription,
}

impl From<SharedSubscription> for AsyncSubscription {
    fn from(inner: SharedSubscription) -> Self {
        AsyncSubscription { inner }
    }
}

#[pymethods]
impl AsyncSubscription {
    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if let Some(ready) = self.inner.ready() {
            return resolved(py, ready.map(|inner| Message { inner }));
        }
        let next = self.inner.clone().next(None);
        future_into_py(py, async move {
            match next.await? {
                Some(inner) => Ok(Message { inner }),
                None => Err(PyStopAsyncIteration::new_err(())),
            }
        })
    }

    /// The next message, waiting up to `timeout` seconds (forever if
    /// None); raises `Timeout` when none came, None once it ended.
    #[pyo3(signature = (timeout=None))]
    fn receive<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        let timeout = timeout
            .map(|t| crate::convert::seconds("timeout", t))
            .transpose()?;
        let next = self.inner.clone().next(timeout);
        future_into_py(
            py,
            async move { Ok(next.await?.map(|inner| Message { inner })) },
        )
    }

    /// Ends the subscription.
    fn close(&self) {
        self.inner.close();
    }
}

/// Membership of a consumer group, for asyncio: `async for delivery in
/// consumer`, or `await receive(timeout)`.
#[pyclass(module = "sluice.aio", name = "Consumer", frozen)]
pub struct AsyncConsumer {
    inner: SharedConsumer,
}

impl From<SharedConsumer> for AsyncConsumer {
    fn from(inner: SharedConsumer) -> Self {
        AsyncConsumer { inner }
    }
}

/// An awaitable already done: what arrived already is handed out without
/// crossing to the runtime.
fn resolved<'py, T: IntoPyObject<'py>>(
    py: Python<'py>,
    result: PyResult<T>,
) -> PyResult<Bound<'py, PyAny>> {
    let future = pyo3_async_runtimes::get_running_loop(py)?.call_method0("create_future")?;
    match result {
        Ok(value) => future.call_method1("set_result", (value,))?,
        Err(e) => future.call_method1("set_exception", (e.into_value(py),))?,
    };
    Ok(future)
}

/// A delivery on its way to Python (built there, with its message).
struct NewDelivery(sluice_client::Delivery);

impl<'py> IntoPyObject<'py> for NewDelivery {
    type Target = AsyncDelivery;
    type Output = Bound<'py, AsyncDelivery>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, AsyncDelivery>> {
        let message = Message {
            inner: self.0.message.clone(),
        };
        let init = PyClassInitializer::from(message).add_subclass(AsyncDelivery {
            inner: Arc::new(self.0),
        });
        Bound::new(py, init)
    }
}

#[pymethods]
impl AsyncConsumer {
    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if let Some(ready) = self.inner.ready() {
            return resolved(py, ready.map(NewDelivery));
        }
        let next = self.inner.clone().next(None);
        future_into_py(py, async move {
            match next.await? {
                Some(delivery) => Ok(NewDelivery(delivery)),
                None => Err(PyStopAsyncIteration::new_err(())),
            }
        })
    }

    /// The next delivery, waiting up to `timeout` seconds (forever if
    /// None); raises `Timeout` when none came, None once it ended.
    #[pyo3(signature = (timeout=None))]
    fn receive<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        let timeout = timeout
            .map(|t| crate::convert::seconds("timeout", t))
            .transpose()?;
        if let Some(ready) = self.inner.ready() {
            return resolved(py, ready.map(|d| Some(NewDelivery(d))));
        }
        let next = self.inner.clone().next(timeout);
        future_into_py(py, async move { Ok(next.await?.map(NewDelivery)) })
    }

    /// Acks every delivery of the list in one go: for many, much cheaper
    /// than awaiting one `ack()` each. Raises the first error after trying
    /// all.
    fn ack_many<'py>(
        &self,
        py: Python<'py>,
        deliveries: Vec<PyRef<'py, AsyncDelivery>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let deliveries = deliveries.iter().map(|d| d.inner.clone()).collect();
        future_into_py(py, ops::ack_all(deliveries))
    }

    /// Leaves the group.
    fn close(&self) {
        self.inner.close();
    }
}

/// A group delivery, for asyncio: `await delivery.ack()`, and the rest as
/// on `sluice.Delivery`.
#[pyclass(module = "sluice.aio", name = "Delivery", frozen, extends = Message)]
pub struct AsyncDelivery {
    inner: Arc<sluice_client::Delivery>,
}

impl AsyncDelivery {
    fn settle<'py>(&self, py: Python<'py>, how: Settle) -> PyResult<Bound<'py, PyAny>> {
        future_into_py(py, ops::settle((*self.inner).clone(), how))
    }
}

#[pymethods]
impl AsyncDelivery {
    /// Done: the group never delivers it again.
    fn ack<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.settle(py, Settle::Ack)
    }

    /// Failed: deliver it again after `delay` seconds, or after the
    /// group's backoff.
    #[pyo3(signature = (delay=None))]
    fn nack<'py>(&self, py: Python<'py>, delay: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        let delay = delay
            .map(|d| crate::convert::seconds("delay", d))
            .transpose()?;
        self.settle(py, Settle::Nack(delay))
    }

    /// Poison: move it to the dead-letter topic, with this reason.
    fn reject<'py>(&self, py: Python<'py>, reason: String) -> PyResult<Bound<'py, PyAny>> {
        self.settle(py, Settle::Reject(reason))
    }

    /// Still working on it: restart the ack-wait clock.
    fn in_progress<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.settle(py, Settle::InProgress)
    }
}
