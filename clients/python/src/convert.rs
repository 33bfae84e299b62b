//! Python arguments to the client's types. Wrong types raise `TypeError`,
//! wrong values `ValueError`, each naming the argument.

use std::time::Duration;

use bytes::Bytes;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyString};
use sluice_client::{ClientIdentity, ClientOptions, Message, Trust};
use sluice_proto::{DeliveryPlugin, StartPosition};

/// Bytes from `bytes`, `bytearray` or `str` (as UTF-8).
pub fn bytes(what: &str, value: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    if let Ok(b) = value.cast::<PyBytes>() {
        return Ok(Bytes::copy_from_slice(b.as_bytes()));
    }
    if let Ok(b) = value.cast::<PyByteArray>() {
        return Ok(Bytes::from(b.to_vec()));
    }
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(Bytes::copy_from_slice(s.to_str()?.as_bytes()));
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be bytes or str, not {}",
        type_name(value)
    )))
}

/// Headers from a dict or an iterable of `(name, value)` pairs of strings.
pub fn headers(value: &Bound<'_, PyAny>) -> PyResult<Vec<(String, String)>> {
    let pairs = match value.cast::<PyDict>() {
        Ok(dict) => dict.items().into_any(),
        Err(_) => value.clone(),
    };
    let mut out = Vec::new();
    for pair in pairs.try_iter().map_err(|_| headers_type(value))? {
        let (name, value): (String, String) = pair?.extract().map_err(|_| headers_type(value))?;
        out.push((name, value));
    }
    Ok(out)
}

fn headers_type(value: &Bound<'_, PyAny>) -> PyErr {
    PyTypeError::new_err(format!(
        "headers must be a dict of str to str or (name, value) pairs, not {}",
        type_name(value)
    ))
}

/// One message to publish.
pub fn message(
    topic: String,
    payload: &Bound<'_, PyAny>,
    key: Option<&Bound<'_, PyAny>>,
    headers: Option<&Bound<'_, PyAny>>,
    message_id: Option<String>,
) -> PyResult<Message> {
    let mut message = Message::new(topic, bytes("payload", payload)?);
    if let Some(key) = key {
        message = message.key(bytes("key", key)?);
    }
    for (name, value) in headers.map(self::headers).transpose()?.unwrap_or_default() {
        message = message.header(name, value);
    }
    if let Some(id) = message_id {
        if id.is_empty() {
            return Err(PyValueError::new_err("message_id must not be empty"));
        }
        message = message.id(id);
    }
    Ok(message)
}

/// `message` delivered no earlier than `delay` seconds from when the broker
/// stores it or than the datetime `deliver_at`, and expiring `ttl` seconds
/// after it is due.
pub fn timed(
    mut message: Message,
    delay: Option<f64>,
    deliver_at: Option<&Bound<'_, PyAny>>,
    ttl: Option<f64>,
) -> PyResult<Message> {
    match (delay, deliver_at) {
        (Some(_), Some(_)) => {
            return Err(PyValueError::new_err(
                "give delay= or deliver_at=, not both",
            ))
        }
        (Some(delay), None) => message = message.delay(seconds("delay", delay)?),
        (None, Some(at)) => {
            let since_epoch: f64 = at
                .call_method0("timestamp")
                .and_then(|t| t.extract())
                .map_err(|_| {
                    PyTypeError::new_err(format!(
                        "deliver_at must be a datetime, not {}",
                        type_name(at)
                    ))
                })?;
            let at = std::time::UNIX_EPOCH + seconds("deliver_at (since 1970)", since_epoch)?;
            message = message.deliver_at(at);
        }
        (None, None) => {}
    }
    if let Some(ttl) = ttl {
        message = message.ttl(seconds("ttl", ttl)?);
    }
    Ok(message)
}

/// A message of `publish_many`: a `(topic, payload)` tuple, or a dict with
/// `topic`, `payload` and optionally `key`, `headers`, `message_id`,
/// `delay`, `deliver_at`, `ttl`.
pub fn batch_item(item: &Bound<'_, PyAny>) -> PyResult<Message> {
    if let Ok(dict) = item.cast::<PyDict>() {
        let field = |name: &str| dict.get_item(name);
        let topic: String = field("topic")?
            .ok_or_else(|| PyValueError::new_err("a message needs a `topic`"))?
            .extract()?;
        let payload = field("payload")?
            .ok_or_else(|| PyValueError::new_err("a message needs a `payload`"))?;
        let id = field("message_id")?.map(|v| v.extract()).transpose()?;
        let message = message(
            topic,
            &payload,
            field("key")?.as_ref(),
            field("headers")?.as_ref(),
            id,
        )?;
        let delay = field("delay")?.map(|v| v.extract()).transpose()?;
        let ttl = field("ttl")?.map(|v| v.extract()).transpose()?;
        return timed(message, delay, field("deliver_at")?.as_ref(), ttl);
    }
    match item.extract::<(String, Bound<'_, PyAny>)>() {
        Ok((topic, payload)) => message(topic, &payload, None, None, None),
        Err(_) => Err(PyTypeError::new_err(format!(
            "publish_many takes (topic, payload) tuples or dicts, not {}",
            type_name(item)
        ))),
    }
}

/// A start position: `"earliest"`, `"latest"`, an offset (int) or a
/// `datetime` (naive ones are local time, as `datetime.timestamp()` says).
pub fn start(value: &Bound<'_, PyAny>) -> PyResult<StartPosition> {
    if let Ok(s) = value.cast::<PyString>() {
        return match s.to_str()? {
            "earliest" => Ok(StartPosition::Earliest),
            "latest" => Ok(StartPosition::Latest),
            other => Err(PyValueError::new_err(format!(
                "start must be \"earliest\", \"latest\", an offset or a datetime, not {other:?}"
            ))),
        };
    }
    if value.is_instance_of::<pyo3::types::PyBool>() {
        return Err(start_type(value));
    }
    if let Ok(offset) = value.extract::<i128>() {
        return u64::try_from(offset)
            .map(StartPosition::Offset)
            .map_err(|_| PyValueError::new_err(format!("an offset is 0 or more, not {offset}")));
    }
    if value.is_instance_of::<pyo3::types::PyDateTime>() {
        let seconds: f64 = value.call_method0("timestamp")?.extract()?;
        return Ok(StartPosition::Timestamp((seconds * 1000.0).round() as i64));
    }
    Err(start_type(value))
}

fn start_type(value: &Bound<'_, PyAny>) -> PyErr {
    PyTypeError::new_err(format!(
        "start must be \"earliest\", \"latest\", an int offset or a datetime, not {}",
        type_name(value)
    ))
}

/// Seconds (int or float, 0 or more) as a duration.
pub fn seconds(what: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        PyValueError::new_err(format!("{what} must be 0 seconds or more, not {value}"))
    })
}

/// A `timeout` argument: seconds, or None for no limit.
pub fn timeout(value: Option<f64>) -> PyResult<Option<Duration>> {
    value.map(|t| seconds("timeout", t)).transpose()
}

/// A `plugin` argument: a plugin loaded in the broker, with an optional
/// JSON config of its own.
pub fn plugin(name: Option<String>, config: Option<String>) -> PyResult<Option<DeliveryPlugin>> {
    match (name, config) {
        (Some(name), config) => Ok(Some(DeliveryPlugin { name, config })),
        (None, None) => Ok(None),
        (None, Some(_)) => Err(PyValueError::new_err("plugin_config= needs plugin=")),
    }
}

/// What `Client.connect` takes.
pub struct Connect<'py> {
    pub servers: &'py Bound<'py, PyAny>,
    pub ca: Option<std::path::PathBuf>,
    pub token: Option<String>,
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
    pub insecure: bool,
    pub name: Option<String>,
    pub server_name: Option<String>,
    pub reconnect_timeout: Option<f64>,
}

impl Connect<'_> {
    /// The client's options, checked.
    pub fn options(self) -> PyResult<ClientOptions> {
        let servers: Vec<String> = match self.servers.cast::<PyString>() {
            Ok(one) => vec![one.to_str()?.to_owned()],
            Err(_) => self.servers.extract().map_err(|_| {
                PyTypeError::new_err(format!(
                    "servers must be \"host:port\" or a list of them, not {}",
                    type_name(self.servers)
                ))
            })?,
        };
        if servers.is_empty() || servers.iter().any(|s| s.trim().is_empty()) {
            return Err(PyValueError::new_err(
                "servers must name at least one \"host:port\", and no empty one",
            ));
        }
        let trust = match (self.ca, self.insecure) {
            (Some(_), true) => {
                return Err(PyValueError::new_err(
                    "give either ca= (the broker's CA certificate) or insecure=True, not both",
                ))
            }
            (Some(ca), false) => Trust::CaFile(ca),
            (None, true) => Trust::Insecure,
            (None, false) => {
                return Err(PyValueError::new_err(
                    "ca= is required: the PEM file of the CA that signed the broker's certificate \
                     (a development broker writes <data dir>/tls/cert.pem); insecure=True skips the check",
                ))
            }
        };
        let mut options = ClientOptions::new(servers.join(",")).trust(trust);
        if let Some(token) = self.token {
            options = options.token(token);
        }
        match (self.cert, self.key) {
            (Some(cert), Some(key)) => {
                options = options.identity(
                    ClientIdentity::from_files(cert, key)
                        .map_err(|e| crate::errors::Error::from(e).into_py(self.servers.py()))?,
                )
            }
            (None, None) => {}
            _ => {
                return Err(PyValueError::new_err(
                    "cert= and key= go together (a client certificate and its private key)",
                ))
            }
        }
        if let Some(name) = self.name {
            options = options.client_name(name);
        }
        if let Some(name) = self.server_name {
            options = options.server_name(name);
        }
        if let Some(timeout) = self.reconnect_timeout {
            options = options.reconnect_timeout(seconds("reconnect_timeout", timeout)?);
        }
        Ok(options)
    }
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// What `consume` takes besides the pattern and group.
pub struct Consume {
    pub start: Option<StartPosition>,
    pub max_in_flight: Option<u32>,
    pub max_deliver: Option<u32>,
    pub key_order: bool,
    pub ack_wait: Option<f64>,
    pub backoff: Option<Vec<f64>>,
    pub dead_letter_topic: Option<String>,
    pub limit: Option<u64>,
    pub plugin: Option<DeliveryPlugin>,
}

impl Consume {
    /// The client's options, checked.
    pub fn options(self) -> PyResult<sluice_client::ConsumeOptions> {
        let mut options = sluice_client::ConsumeOptions {
            limit: self.limit,
            plugin: self.plugin,
            ..Default::default()
        };
        if let Some(n) = self.max_in_flight {
            if n == 0 {
                return Err(PyValueError::new_err("max_in_flight must be 1 or more"));
            }
            options.max_in_flight = n;
        }
        let group = &mut options.group;
        if let Some(start) = self.start {
            group.start = start;
        }
        if let Some(n) = self.max_deliver {
            if n == 0 {
                return Err(PyValueError::new_err("max_deliver must be 1 or more"));
            }
            group.max_deliver = n;
        }
        group.key_ordered = self.key_order;
        if let Some(wait) = self.ack_wait {
            let wait = seconds("ack_wait", wait)?.as_millis() as u64;
            if wait == 0 {
                return Err(PyValueError::new_err("ack_wait must be 1 ms or more"));
            }
            group.ack_wait_ms = wait;
        }
        if let Some(delays) = self.backoff {
            group.backoff_ms = delays
                .into_iter()
                .map(|d| seconds("backoff", d).map(|d| d.as_millis() as u64))
                .collect::<PyResult<_>>()?;
        }
        group.dead_letter_topic = self.dead_letter_topic;
        Ok(options)
    }
}

/// Retention limits from `create_topic`'s arguments (`None`: unlimited).
pub fn retention(
    max_age: Option<f64>,
    max_bytes: Option<u64>,
    max_messages: Option<u64>,
) -> PyResult<Option<sluice_proto::RetentionSpec>> {
    if max_age.is_none() && max_bytes.is_none() && max_messages.is_none() {
        return Ok(None);
    }
    Ok(Some(sluice_proto::RetentionSpec {
        max_age_ms: max_age
            .map(|s| seconds("max_age", s).map(|d| d.as_millis() as u64))
            .transpose()?,
        max_bytes,
        max_messages,
    }))
}
