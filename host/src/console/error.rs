//! [`ConsoleError`]: what a console request can fail with, answered as
//! JSON `{"code": ..., "message": ...}` with a matching HTTP status. The
//! codes are stable: the console's script and scripts of operators match
//! on them. Broker errors keep the broker's own code names.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sluice_proto::ErrorCode;

use crate::error::BrokerError;

/// Why a console request failed.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// No session, or it expired.
    #[error("sign in first: no console session, or it expired")]
    SignedOut,
    /// The token was refused.
    #[error("{0}")]
    Unauthorized(String),
    /// An action without the session's CSRF token, or from another site.
    #[error("{0}")]
    Csrf(&'static str),
    /// The principal lacks the right.
    #[error("{0}")]
    Forbidden(String),
    /// A console without auth, asked from beyond this machine.
    #[error("the console has no auth (auth.mode = \"none\") and answers this machine only; sign-in needs [auth], or set [admin] console_allow_remote = true")]
    LocalOnly,
    /// A request the console cannot read.
    #[error("{0}")]
    BadRequest(String),
    /// Too many of these at once; try again.
    #[error("{0}")]
    Busy(&'static str),
    /// A request body over the admin listener's limit.
    #[error("{0}")]
    TooLarge(String),
    /// No such page or thing.
    #[error("{0}")]
    NotFound(String),
    /// The broker refused or failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

impl ConsoleError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ConsoleError::SignedOut => "signed_out",
            ConsoleError::Unauthorized(_) => "unauthorized",
            ConsoleError::Csrf(_) => "csrf",
            ConsoleError::Forbidden(_) => "forbidden",
            ConsoleError::LocalOnly => "local_only",
            ConsoleError::BadRequest(_) => "bad_request",
            ConsoleError::TooLarge(_) => "too_large",
            ConsoleError::Busy(_) => "busy",
            ConsoleError::NotFound(_) => "not_found",
            ConsoleError::Broker(e) => e.code().name(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ConsoleError::SignedOut | ConsoleError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ConsoleError::Csrf(_) | ConsoleError::Forbidden(_) | ConsoleError::LocalOnly => {
                StatusCode::FORBIDDEN
            }
            ConsoleError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ConsoleError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ConsoleError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
            ConsoleError::NotFound(_) => StatusCode::NOT_FOUND,
            ConsoleError::Broker(e) => match e.code() {
                ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
                ErrorCode::Forbidden => StatusCode::FORBIDDEN,
                ErrorCode::TopicNotFound | ErrorCode::GroupNotFound => StatusCode::NOT_FOUND,
                ErrorCode::TopicExists => StatusCode::CONFLICT,
                ErrorCode::Rejected => StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::LimitExceeded => StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::ShuttingDown | ErrorCode::Storage | ErrorCode::StorageFull => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            },
        }
    }
}

/// The JSON body of an error (also of one item of a batch action).
#[derive(Debug, serde::Serialize)]
pub struct ErrorBody {
    pub code: &'static str,
    pub message: String,
}

impl From<&ConsoleError> for ErrorBody {
    fn from(e: &ConsoleError) -> ErrorBody {
        ErrorBody {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        (self.status(), Json(ErrorBody::from(&self))).into_response()
    }
}

/// A refusal of axum's extractors (a body or a query).
pub trait Rejection: std::fmt::Display {
    fn status(&self) -> StatusCode;
}

impl Rejection for axum::extract::rejection::JsonRejection {
    fn status(&self) -> StatusCode {
        axum::extract::rejection::JsonRejection::status(self)
    }
}

impl Rejection for axum::extract::rejection::QueryRejection {
    fn status(&self) -> StatusCode {
        axum::extract::rejection::QueryRejection::status(self)
    }
}

/// Turns axum's refusals of a body or query into a [`ConsoleError`] with
/// the reason.
pub fn bad_request(rejection: impl Rejection) -> ConsoleError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ConsoleError::TooLarge(format!(
            "the request body is over the limit of {} bytes",
            super::MAX_BODY
        ));
    }
    ConsoleError::BadRequest(format!("bad request: {rejection}"))
}
