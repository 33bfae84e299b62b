//! One definition of the client's methods for both APIs. [`Api`] says how
//! a call runs (blocking: wait with the GIL released; asyncio: hand back
//! an awaitable) and which wrapper types it returns; [`client_methods!`]
//! writes the methods of `Client` and `AsyncClient` from it.

use std::future::Future;

use pyo3::prelude::*;

use crate::ops::{SharedConsumer, SharedResponder, SharedSubscription};
use crate::types::Stored;

/// How one API runs calls and what it wraps results in.
pub trait Api {
    /// Its client class.
    type Client: From<sluice_client::Client> + for<'py> IntoPyObject<'py> + Send + 'static;
    /// Its subscription class.
    type Subscription: From<SharedSubscription> + for<'py> IntoPyObject<'py> + Send + 'static;
    /// Its consumer class.
    type Consumer: From<SharedConsumer> + for<'py> IntoPyObject<'py> + Send + 'static;
    /// Its responder class.
    type Responder: From<SharedResponder> + for<'py> IntoPyObject<'py> + Send + 'static;

    /// Runs `future`: its result (blocking) or an awaitable of it.
    fn run<'py, F, T>(py: Python<'py>, future: F) -> PyResult<Bound<'py, PyAny>>
    where
        F: Future<Output = crate::errors::Result<T>> + Send + 'static,
        T: for<'a> IntoPyObject<'a> + Send + 'static;
}

/// What `publish_many` answers: a list with one `Stored` per message,
/// raising the first message's exception unless `return_exceptions`, where
/// the list holds the exceptions in place.
pub struct Outcomes {
    pub items: Vec<crate::errors::Result<Stored>>,
    pub return_exceptions: bool,
}

impl<'py> IntoPyObject<'py> for Outcomes {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let mut list = Vec::with_capacity(self.items.len());
        for item in self.items {
            list.push(match item {
                Ok(stored) => stored.into_pyobject(py)?.into_any(),
                Err(e) if self.return_exceptions => {
                    e.into_py(py).into_value(py).into_bound(py).into_any()
                }
                Err(e) => return Err(e.into_py(py)),
            });
        }
        Ok(pyo3::types::PyList::new(py, list)?.into_any())
    }
}

/// The methods of a client class `$class` (holding `inner:
/// sluice_client::Client`) run by `$api`.
macro_rules! client_methods {
    ($class:ident, $api:ty) => {
        #[pymethods]
        impl $class {
            /// Connects to the first of `servers` ("host:port", or a list of
            /// them: the nodes of a cluster) that answers. `ca` is the PEM
            /// file of the CA that signed the broker's certificate (a
            /// development broker writes `<data dir>/tls/cert.pem`); `token`
            /// a bearer token; `cert` and `key` a client certificate for
            /// mutual TLS. A lost connection is replaced by itself, for up to
            /// `reconnect_timeout` seconds (60 by default).
            #[staticmethod]
            #[pyo3(signature = (servers, *, ca=None, token=None, cert=None, key=None, insecure=false, name=None, server_name=None, reconnect_timeout=None))]
            #[allow(clippy::too_many_arguments)]
            fn connect<'py>(
                py: Python<'py>,
                servers: &Bound<'py, PyAny>,
                ca: Option<std::path::PathBuf>,
                token: Option<String>,
                cert: Option<std::path::PathBuf>,
                key: Option<std::path::PathBuf>,
                insecure: bool,
                name: Option<String>,
                server_name: Option<String>,
                reconnect_timeout: Option<f64>,
            ) -> PyResult<Bound<'py, PyAny>> {
                let options = $crate::convert::Connect {
                    servers, ca, token, cert, key, insecure, name, server_name, reconnect_timeout,
                }
                .options()?;
                <$api>::run(py, async move {
                    $crate::ops::connect(options)
                        .await
                        .map(<$api as $crate::api::Api>::Client::from)
                })
            }

            /// The broker's name and version.
            #[getter]
            fn server(&self) -> String {
                self.inner.server()
            }

            /// Publishes one message and waits for the broker's ack: a
            /// `Stored`. Raises `Rejected` or `NotStored` when a plugin did
            /// not let it be stored. `delay` (seconds) or `deliver_at` (a
            /// datetime) holds it back until due (`Stored.deliver_at_ms`
            /// says when); `ttl` (seconds, from when it is due) lets it
            /// expire undelivered.
            #[pyo3(signature = (topic, payload, *, key=None, headers=None, message_id=None, delay=None, deliver_at=None, ttl=None))]
            #[allow(clippy::too_many_arguments)]
            fn publish<'py>(
                &self,
                py: Python<'py>,
                topic: String,
                payload: &Bound<'py, PyAny>,
                key: Option<&Bound<'py, PyAny>>,
                headers: Option<&Bound<'py, PyAny>>,
                message_id: Option<String>,
                delay: Option<f64>,
                deliver_at: Option<&Bound<'py, PyAny>>,
                ttl: Option<f64>,
            ) -> PyResult<Bound<'py, PyAny>> {
                let message = $crate::convert::message(topic, payload, key, headers, message_id)?;
                let message = $crate::convert::timed(message, delay, deliver_at, ttl)?;
                <$api>::run(py, $crate::ops::publish(self.inner.clone(), message))
            }

            /// Publishes many messages in one pipelined request: `(topic,
            /// payload)` tuples or dicts with `topic`, `payload`, `key`,
            /// `headers`, `message_id`. One `Stored` per message, in order.
            #[pyo3(signature = (messages, *, return_exceptions=false))]
            fn publish_many<'py>(
                &self,
                py: Python<'py>,
                messages: &Bound<'py, PyAny>,
                return_exceptions: bool,
            ) -> PyResult<Bound<'py, PyAny>> {
                let messages = messages
                    .try_iter()?
                    .map(|m| $crate::convert::batch_item(&m?))
                    .collect::<PyResult<Vec<_>>>()?;
                let client = self.inner.clone();
                <$api>::run(py, async move {
                    let items = $crate::ops::publish_many(client, messages).await?;
                    Ok($crate::api::Outcomes { items, return_exceptions })
                })
            }

            /// Subscribes to a topic or pattern (`*` one token, `>` the
            /// rest) from `start`: "latest" (live only, the default),
            /// "earliest", an offset, or a datetime. `plugin` names a
            /// plugin loaded in the broker that filters or transforms what
            /// this subscription receives (with its own JSON
            /// `plugin_config`, or the configured one).
            #[pyo3(signature = (pattern, start=None, *, plugin=None, plugin_config=None))]
            #[pyo3(text_signature = "(self, pattern, start='latest', *, plugin=None, plugin_config=None)")]
            fn subscribe<'py>(
                &self,
                py: Python<'py>,
                pattern: String,
                start: Option<&Bound<'py, PyAny>>,
                plugin: Option<String>,
                plugin_config: Option<String>,
            ) -> PyResult<Bound<'py, PyAny>> {
                let start = match start {
                    Some(s) => $crate::convert::start(s)?,
                    None => sluice_proto::StartPosition::Latest,
                };
                let plugin = $crate::convert::plugin(plugin, plugin_config)?;
                let client = self.inner.clone();
                <$api>::run(py, async move {
                    $crate::ops::subscribe(client, pattern, start, plugin)
                        .await
                        .map(<$api as $crate::api::Api>::Subscription::from)
                })
            }

            /// Joins consumer group `group` on `pattern`, creating the group
            /// with these settings if it does not exist (a new group starts
            /// at "earliest" unless `start` says otherwise). Each message
            /// goes to one member at a time; settle each delivery. None
            /// takes the default: 64 in flight, 5 deliveries, a 30 s ack
            /// wait, backoff 1, 5, 30 s, dead letters to `dlq.<topic>`.
            #[pyo3(signature = (pattern, group, *, max_in_flight=None, max_deliver=None, key_order=false, ack_wait=None, backoff=None, dead_letter_topic=None, start=None, limit=None, plugin=None, plugin_config=None))]
            #[allow(clippy::too_many_arguments)]
            fn consume<'py>(
                &self,
                py: Python<'py>,
                pattern: String,
                group: String,
                max_in_flight: Option<u32>,
                max_deliver: Option<u32>,
                key_order: bool,
                ack_wait: Option<f64>,
                backoff: Option<Vec<f64>>,
                dead_letter_topic: Option<String>,
                start: Option<&Bound<'py, PyAny>>,
                limit: Option<u64>,
                plugin: Option<String>,
                plugin_config: Option<String>,
            ) -> PyResult<Bound<'py, PyAny>> {
                let options = $crate::convert::Consume {
                    start: start.map($crate::convert::start).transpose()?,
                    max_in_flight,
                    max_deliver,
                    key_order,
                    ack_wait,
                    backoff,
                    dead_letter_topic,
                    limit,
                    plugin: $crate::convert::plugin(plugin, plugin_config)?,
                }
                .options()?;
                let client = self.inner.clone();
                <$api>::run(py, async move {
                    $crate::ops::consume(client, pattern, group, options)
                        .await
                        .map(<$api as $crate::api::Api>::Consumer::from)
                })
            }

            /// Sends a request to the responders of `topic` and waits up
            /// to `timeout` seconds for the first `Reply`. Raises
            /// `NoResponders` at once when none listens, `RequestTimeout`
            /// when no reply comes in time, `ResponderError` when the
            /// responder answers with an error. Nothing of it is stored.
            #[pyo3(signature = (topic, payload, *, timeout=5.0, key=None, headers=None))]
            fn request<'py>(
                &self,
                py: Python<'py>,
                topic: String,
                payload: &Bound<'py, PyAny>,
                timeout: f64,
                key: Option<&Bound<'py, PyAny>>,
                headers: Option<&Bound<'py, PyAny>>,
            ) -> PyResult<Bound<'py, PyAny>> {
                let message = $crate::convert::message(topic, payload, key, headers, None)?;
                let timeout = $crate::convert::seconds("timeout", timeout)?;
                <$api>::run(py, $crate::ops::request(self.inner.clone(), message, timeout))
            }

            /// Answers requests on a topic or pattern: iterate over the
            /// `Responder` for `Request`s and answer each with `reply()`
            /// or `reply_error()`. In a queue `group`, each request goes
            /// to one member; without one, every responder gets it and the
            /// first reply wins.
            #[pyo3(signature = (pattern, *, group=None))]
            fn respond<'py>(
                &self,
                py: Python<'py>,
                pattern: String,
                group: Option<String>,
            ) -> PyResult<Bound<'py, PyAny>> {
                let client = self.inner.clone();
                <$api>::run(py, async move {
                    $crate::ops::respond(client, pattern, group)
                        .await
                        .map(<$api as $crate::api::Api>::Responder::from)
                })
            }

            /// Creates a topic; retention limits in seconds, bytes and
            /// messages (None: the broker's default).
            #[pyo3(signature = (name, *, max_age=None, max_bytes=None, max_messages=None))]
            fn create_topic<'py>(
                &self,
                py: Python<'py>,
                name: String,
                max_age: Option<f64>,
                max_bytes: Option<u64>,
                max_messages: Option<u64>,
            ) -> PyResult<Bound<'py, PyAny>> {
                let retention = $crate::convert::retention(max_age, max_bytes, max_messages)?;
                self.admin(py, $crate::ops::Admin::CreateTopic { name, retention })
            }

            /// Deletes a topic and everything stored in it.
            fn delete_topic<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
                self.admin(py, $crate::ops::Admin::DeleteTopic(name))
            }

            /// Every topic.
            fn list_topics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                self.admin(py, $crate::ops::Admin::ListTopics)
            }

            /// One topic.
            fn topic_info<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
                self.admin(py, $crate::ops::Admin::TopicInfo(name))
            }

            /// Every consumer group.
            fn list_groups<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                self.admin(py, $crate::ops::Admin::ListGroups)
            }

            /// One consumer group.
            fn group_info<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
                self.admin(py, $crate::ops::Admin::GroupInfo(name))
            }

            /// Moves a group to `start` on every topic it reads.
            fn reset_group<'py>(
                &self,
                py: Python<'py>,
                name: String,
                start: &Bound<'py, PyAny>,
            ) -> PyResult<Bound<'py, PyAny>> {
                let to = $crate::convert::start(start)?;
                self.admin(py, $crate::ops::Admin::ResetGroup(name, to))
            }

            /// A round trip to the broker, in seconds.
            fn ping<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                let client = self.inner.clone();
                <$api>::run(py, async move {
                    Ok(client.ping().await?.as_secs_f64())
                })
            }

            /// Closes the connection. What waits on it fails with `Closed`.
            fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                let client = self.inner.clone();
                <$api>::run(py, async move {
                    client.close().await;
                    Ok(())
                })
            }

            fn __repr__(&self) -> String {
                format!("<sluice client of {}>", self.inner.address())
            }
        }

        impl $class {
            fn admin<'py>(
                &self,
                py: Python<'py>,
                request: $crate::ops::Admin,
            ) -> PyResult<Bound<'py, PyAny>> {
                <$api>::run(py, $crate::ops::admin(self.inner.clone(), request))
            }
        }

        impl From<sluice_client::Client> for $class {
            fn from(inner: sluice_client::Client) -> Self {
                $class { inner }
            }
        }
    };
}

pub(crate) use client_methods;
