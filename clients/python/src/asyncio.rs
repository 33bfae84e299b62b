//! The asyncio API (`sluice.aio.Client`): each call returns an awaitable
//! of a Rust future on the shared runtime (no thread per call);
//! cancelling the task drops the future, and the connection stays usable.
//! Subscriptions and consumers are async iterators whose receive loop is
//! `sluice/_aio.py`: it awaits [`Shared::fill`] and then takes an item with
//! a plain call, so a cancelled receive loses nothing.

use std::future::Future;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyType;
use pyo3_async_runtimes::tokio::future_into_py;

use crate::api::{client_methods, Api};
use crate::convert::timeout;
use crate::errors::{Answer, Result};
use crate::ops::{self, Settle, SharedConsumer, SharedResponder, SharedSubscription};
use crate::shared::{Next, Shared};
use crate::types::{delivery_object, request_object, Message};

/// Hands calls to asyncio.
pub struct Asyncio;

impl Api for Asyncio {
    type Client = AsyncClient;
    type Subscription = AsyncSubscription;
    type Consumer = AsyncConsumer;
    type Responder = AsyncResponder;

    fn run<'py, F, T>(py: Python<'py>, future: F) -> PyResult<Bound<'py, PyAny>>
    where
        F: Future<Output = Result<T>> + Send + 'static,
        T: for<'a> IntoPyObject<'a> + Send + 'static,
    {
        // The error becomes an exception where pyo3-async-runtimes hands
        // the result to asyncio, with the GIL held.
        future_into_py(py, async move { Ok(Answer(future.await)) })
    }
}

/// The receive loop's coroutine function `sluice._aio.<name>`.
fn aio<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("sluice._aio")?.getattr(name)
}

/// `fill` of [`Shared`] as an awaitable.
fn fill<'py, T: Next>(
    py: Python<'py>,
    shared: &Arc<Shared<T>>,
    limit: Option<f64>,
) -> PyResult<Bound<'py, PyAny>> {
    let limit = timeout(limit)?;
    Asyncio::run(py, shared.clone().fill(limit))
}

/// `close` of [`Shared`] as an awaitable.
fn close<'py, T: Next>(py: Python<'py>, shared: &Arc<Shared<T>>) -> PyResult<Bound<'py, PyAny>> {
    let shared = shared.clone();
    Asyncio::run(py, async move {
        shared.close().await;
        Ok(())
    })
}

/// An awaitable of `value`, already done.
fn ready(value: Bound<'_, PyAny>) -> PyResult<Bound<'_, PyAny>> {
    let py = value.py();
    let value = value.unbind();
    future_into_py(py, async move { Ok(value) })
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
        ready(slf.into_any())
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

/// Declares an asyncio source class: `$class` holding `inner:
/// Arc<Shared<_>>`, whose items Python gets as `$item` objects.
macro_rules! async_source {
    ($class:ident, $shared:ty, $what:literal) => {
        impl From<$shared> for $class {
            fn from(inner: $shared) -> Self {
                $class { inner }
            }
        }

        #[pymethods]
        impl $class {
            fn __aiter__(slf: Py<Self>) -> Py<Self> {
                slf
            }

            fn __anext__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
                aio(slf.py(), "anext")?.call1((slf,))
            }

            #[doc = concat!("The next ", $what, ", waiting up to `timeout` seconds (forever if None); raises `Timeout` when none came, None once it ended.")]
            #[pyo3(signature = (timeout=None))]
            fn receive<'py>(
                slf: &Bound<'py, Self>,
                timeout: Option<f64>,
            ) -> PyResult<Bound<'py, PyAny>> {
                self::timeout(timeout)?;
                aio(slf.py(), "receive")?.call1((slf, timeout))
            }

            /// Waits until an item is at hand (internal: `sluice._aio`).
            #[pyo3(signature = (timeout=None))]
            fn _fill<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
                fill(py, &self.inner, timeout)
            }

            /// Whether nothing more comes (internal: `sluice._aio`).
            #[getter]
            fn _over(&self) -> bool {
                self.inner.is_over()
            }

            /// Ends it; the awaitable is done once the request to end it is on its
            /// way (the broker drops it as soon as it reads that).
            fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                close(py, &self.inner)
            }

            fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
                ready(slf.into_any())
            }

            fn __aexit__<'py>(
                &self,
                py: Python<'py>,
                _kind: Option<Bound<'py, PyType>>,
                _value: Option<Bound<'py, PyAny>>,
                _traceback: Option<Bound<'py, PyAny>>,
            ) -> PyResult<Bound<'py, PyAny>> {
                close(py, &self.inner)
            }
        }
    };
}

/// A subscription, for asyncio: `async for message in subscription`, or
/// `await receive(timeout)`.
#[pyclass(module = "sluice.aio", name = "Subscription", frozen)]
pub struct AsyncSubscription {
    inner: SharedSubscription,
}

async_source!(AsyncSubscription, SharedSubscription, "message");

#[pymethods]
impl AsyncSubscription {
    /// Live messages the broker dropped because this subscriber fell
    /// behind (a `"latest"` subscription only; replays never drop).
    #[getter]
    fn dropped(&self) -> u64 {
        self.inner.dropped()
    }

    /// A message at hand, or None (internal: `sluice._aio`).
    fn _take(&self, py: Python<'_>) -> PyResult<Option<Message>> {
        match self.inner.take() {
            None => Ok(None),
            Some(item) => item
                .map(|inner| Some(Message { inner }))
                .map_err(|e| e.into_py(py)),
        }
    }
}

/// Membership of a consumer group, for asyncio: `async for delivery in
/// consumer`, or `await receive(timeout)`.
#[pyclass(module = "sluice.aio", name = "Consumer", frozen)]
pub struct AsyncConsumer {
    inner: SharedConsumer,
}

async_source!(AsyncConsumer, SharedConsumer, "delivery");

#[pymethods]
impl AsyncConsumer {
    /// A delivery at hand, or None (internal: `sluice._aio`).
    fn _take<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, AsyncDelivery>>> {
        match self.inner.take() {
            None => Ok(None),
            Some(Err(e)) => Err(e.into_py(py)),
            Some(Ok(d)) => delivery_object(py, d, |inner| AsyncDelivery { inner }).map(Some),
        }
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
        Asyncio::run(py, ops::ack_all(deliveries))
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
        Asyncio::run(py, ops::settle(self.inner.clone(), how))
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

/// Requests to answer, for asyncio: `async for request in responder`, or
/// `await receive(timeout)`.
#[pyclass(module = "sluice.aio", name = "Responder", frozen)]
pub struct AsyncResponder {
    inner: SharedResponder,
}

async_source!(AsyncResponder, SharedResponder, "request");

#[pymethods]
impl AsyncResponder {
    /// A request at hand, or None (internal: `sluice._aio`).
    fn _take<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, AsyncRequest>>> {
        match self.inner.take() {
            None => Ok(None),
            Some(Err(e)) => Err(e.into_py(py)),
            Some(Ok(r)) => request_object(py, r, |inner| AsyncRequest { inner }).map(Some),
        }
    }
}

/// A request to answer, for asyncio: `await request.reply(payload)`, and
/// the rest as on `sluice.Request`.
#[pyclass(module = "sluice.aio", name = "Request", frozen, extends = Message)]
pub struct AsyncRequest {
    inner: Arc<sluice_client::IncomingRequest>,
}

#[pymethods]
impl AsyncRequest {
    /// Answers with `payload` (and `headers`).
    #[pyo3(signature = (payload, *, headers=None))]
    fn reply<'py>(
        &self,
        py: Python<'py>,
        payload: &Bound<'py, PyAny>,
        headers: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let reply = crate::types::reply(payload, headers)?;
        Asyncio::run(py, ops::answer(self.inner.clone(), Ok(reply)))
    }

    /// Answers with an error: the requester's call raises
    /// `ResponderError` with `message`.
    fn reply_error<'py>(&self, py: Python<'py>, message: String) -> PyResult<Bound<'py, PyAny>> {
        Asyncio::run(py, ops::answer(self.inner.clone(), Err(message)))
    }
}
