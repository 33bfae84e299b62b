//! The errors of setting up and admitting clients: hashing a token,
//! reading the client CA, a principal at its connection limit. (A refused
//! client's [`super::AuthFailure`] is not one: it is an answer.)

use std::path::PathBuf;

/// Why a token could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// argon2 could not hash the secret (it refuses one over 4 GiB).
    #[error("failed to hash the token")]
    Hash(#[source] argon2::password_hash::Error),
}

/// Why the client CA of `auth.client_ca` cannot be used. The cause is the
/// error's source, not part of its message.
#[derive(Debug, thiserror::Error)]
pub enum ClientCaError {
    /// The file could not be read.
    #[error("failed to read auth.client_ca {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not PEM.
    #[error("failed to parse auth.client_ca {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A certificate in it cannot be a trust anchor.
    #[error("unusable CA certificate in {path}")]
    Unusable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rustls::Error,
    },
    /// The file holds no certificate.
    #[error("no PEM certificate in auth.client_ca {0}")]
    Empty(PathBuf),
    /// rustls cannot build a verifier from the certificates.
    #[error("auth.client_ca {path} cannot verify clients")]
    Verifier {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rustls::server::VerifierBuilderError,
    },
}

/// A principal is at its limit of open connections; the message names the
/// setting that sets it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "principal {principal:?} has {open} connections open, the most allowed ({setting} = {limit})"
)]
pub struct ConnectionLimitReached {
    /// The principal.
    pub principal: String,
    /// Its connections open now.
    pub open: usize,
    /// The limit.
    pub limit: usize,
    /// `its max_connections` or `limits.max_connections_per_principal`.
    pub setting: &'static str,
}

/// As sent to the client in the refusal.
impl From<ConnectionLimitReached> for String {
    fn from(e: ConnectionLimitReached) -> String {
        e.to_string()
    }
}
