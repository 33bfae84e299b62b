//! Errors on their way to Python. The futures end in [`Error`], a plain
//! Rust value; it becomes an exception ([`Error::into_py`]) only where the
//! GIL is held already: after a blocking wait, or when pyo3-async-runtimes
//! hands a result to asyncio. The exception classes live in
//! `sluice/errors.py` (one per error kind a caller would catch); this side
//! says which kind an error is, with the broker's code when it gave one,
//! and lets `sluice.errors.from_native` build the exception.

use std::time::Duration;

use pyo3::prelude::*;
use sluice_client::ClientError;
use sluice_proto::MessageOutcome;

/// Why a call failed.
#[derive(Debug)]
pub enum Error {
    /// The client's own error, or the broker's refusal.
    Client(ClientError),
    /// Nothing arrived within the time the caller gave.
    Timeout(Duration),
}

impl From<ClientError> for Error {
    fn from(error: ClientError) -> Self {
        Error::Client(error)
    }
}

/// A call's result.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The `sluice.errors` exception for it.
    pub fn into_py(self, py: Python<'_>) -> PyErr {
        match self {
            Error::Client(error) => {
                let (number, name) = code(&error);
                build(py, kind(&error), name, number, message(&error))
            }
            Error::Timeout(limit) => build(
                py,
                Some("timeout"),
                None,
                None,
                format!("nothing arrived within {limit:?}"),
            ),
        }
    }
}

/// The kind of a client-side error, as `sluice.errors` names it; `None`
/// for an error the broker answered with (its code decides).
fn kind(error: &ClientError) -> Option<&'static str> {
    match error {
        ClientError::Server(_) => None,
        ClientError::NotStored(MessageOutcome::Rejected(_)) => None,
        ClientError::NotStored(_) => Some("not_stored"),
        ClientError::Config(_) => Some("config"),
        ClientError::Connect { .. } | ClientError::Unreachable(_) => Some("unreachable"),
        ClientError::Connection(_) => Some("connection_lost"),
        ClientError::Protocol(_) | ClientError::Codec(_) => Some("protocol"),
        ClientError::Closed => Some("closed"),
        ClientError::Timeout(_) => Some("timeout"),
        ClientError::DeliveryLost { .. } => Some("delivery_lost"),
    }
}

/// The broker's code: its number, and its name if this client knows it.
fn code(error: &ClientError) -> (Option<u16>, Option<&'static str>) {
    match error {
        ClientError::Server(body) => (Some(body.code), body.error_code().map(|c| c.name())),
        other => {
            let code = other.code();
            (code.map(|c| c.as_u16()), code.map(|c| c.name()))
        }
    }
}

/// The message to show: the broker's own words for a refusal, the
/// client's description otherwise.
fn message(error: &ClientError) -> String {
    match error {
        ClientError::Server(body) => body.message.clone(),
        other => other.to_string(),
    }
}

fn build(
    py: Python<'_>,
    kind: Option<&'static str>,
    name: Option<&'static str>,
    number: Option<u16>,
    message: String,
) -> PyErr {
    let built = py
        .import("sluice.errors")
        .and_then(|m| m.getattr("from_native"))
        .and_then(|f| f.call1((kind, name, number, message)));
    match built {
        Ok(exception) => PyErr::from_value(exception),
        Err(e) => e,
    }
}

/// A result handed to Python: its value, or its error raised.
pub struct Answer<T>(pub Result<T>);

impl<'py, T: IntoPyObject<'py>> IntoPyObject<'py> for Answer<T> {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        use pyo3::IntoPyObjectExt;
        match self.0 {
            Ok(value) => value.into_bound_py_any(py),
            Err(error) => Err(error.into_py(py)),
        }
    }
}
