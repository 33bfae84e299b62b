//! Client errors as Python exceptions. The exception classes live in
//! `sluice/errors.py` (one per error kind a caller would catch); this side
//! only says which kind an error is, with the broker's code when it gave
//! one, and lets `sluice.errors.from_native` build the exception.

use pyo3::prelude::*;
use sluice_client::ClientError;
use sluice_proto::MessageOutcome;

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

/// The Python exception for `error`.
pub fn to_py(error: ClientError) -> PyErr {
    let (number, name) = code(&error);
    build(kind(&error), name, number, message(&error))
}

/// Converts a client result.
pub fn py<T>(result: Result<T, ClientError>) -> PyResult<T> {
    result.map_err(to_py)
}

/// A `sluice.errors` exception of `kind` raised by this package itself
/// (`timeout`, `closed`).
pub fn local(kind: &'static str, message: String) -> PyErr {
    build(Some(kind), None, None, message)
}

fn build(
    kind: Option<&'static str>,
    name: Option<&'static str>,
    number: Option<u16>,
    message: String,
) -> PyErr {
    Python::attach(|py| {
        let built = py
            .import("sluice.errors")
            .and_then(|m| m.getattr("from_native"))
            .and_then(|f| f.call1((kind, name, number, message)));
        match built {
            Ok(exception) => PyErr::from_value(exception),
            Err(e) => e,
        }
    })
}
