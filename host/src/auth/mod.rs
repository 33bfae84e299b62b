//! Who a client is and what it may do.
//!
//! A client authenticates once, at Hello, with a token (checked against the
//! argon2 hashes of `[[auth.principal]]`) or a client certificate issued by
//! `auth.client_ca` (its subject CN names the principal), or both (then they
//! must agree). Every request after that is checked against the principal's
//! [`Permissions`]; with `auth.mode = "none"` every client is the anonymous
//! principal, which may do everything.
//!
//! Certificates are checked here rather than inside the TLS handshake so
//! that a refused client gets an error frame it can show (`unauthorized`,
//! with the reason: expired, unknown issuer) instead of a bare TLS alert.
//! The handshake still proves the client holds the certificate's key, and
//! no request is read before the check.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use sha2::{Digest, Sha256};
use sluice_proto::{ErrorBody, ErrorCode};

use crate::config::{AuthConfig, AuthMode};
use crate::sync::lock;

mod error;
mod log_limit;
mod permissions;

pub use error::{ClientCaError, ConnectionLimitReached, TokenError};
pub use log_limit::LogLimit;
pub use permissions::{authorize, covers, Action, AdminRight, Denied, Permissions};

/// Token checks that run at once (each is an argon2 hash: tens of ms of
/// one core, on the blocking pool).
const CONCURRENT_TOKEN_CHECKS: usize = 2;

/// Refused token digests remembered before that cache is cleared (the
/// accepted ones are at most one per principal).
const REFUSED_TOKENS_KEPT: usize = 4096;

/// Longer tokens are refused without hashing.
const MAX_TOKEN_BYTES: usize = 4096;

/// The argon2 hash of `secret` with a fresh salt, as `sluice token hash`
/// prints it.
pub fn hash_token(secret: &str) -> Result<String, TokenError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(TokenError::Hash)
}

pub use crate::config::{check_token_hash, TokenHashError};

/// An authenticated identity.
#[derive(Debug)]
pub struct Principal {
    /// Its name, as configured (or `anonymous`).
    pub name: String,
    /// What it may do.
    pub permissions: Permissions,
    token_hash: Option<String>,
    max_connections: Option<usize>,
    anonymous: bool,
}

impl Principal {
    /// The principal of every client when auth is off.
    pub fn anonymous() -> Principal {
        Principal {
            name: "anonymous".into(),
            permissions: Permissions::all(),
            token_hash: None,
            max_connections: None,
            anonymous: true,
        }
    }

    /// A principal of `[[auth.principal]]`.
    pub fn configured(p: &crate::config::PrincipalConfig) -> Principal {
        Principal {
            name: p.name.clone(),
            permissions: Permissions::from_config(p),
            token_hash: p.token_hash.clone(),
            max_connections: p.max_connections,
            anonymous: false,
        }
    }
}

/// Why a client was not let in: a metrics label and the message it gets.
#[derive(Debug)]
pub struct AuthFailure {
    /// `no_credentials`, `bad_token`, `bad_certificate`,
    /// `unknown_principal` or `mismatch`.
    pub reason: &'static str,
    /// What the client is told.
    pub message: String,
}

impl AuthFailure {
    fn new(reason: &'static str, message: impl Into<String>) -> AuthFailure {
        AuthFailure {
            reason,
            message: message.into(),
        }
    }

    /// As sent to the client.
    pub fn to_body(&self) -> ErrorBody {
        ErrorBody::new(ErrorCode::Unauthorized, self.message.clone())
    }
}

/// The broker's authenticator: principals, the client CA, connection
/// counts per principal.
pub struct Auth {
    mode: AuthMode,
    principals: HashMap<String, Arc<Principal>>,
    with_tokens: Vec<Arc<Principal>>,
    anonymous: Arc<Principal>,
    client_ca: Option<Arc<dyn ClientCertVerifier>>,
    /// SHA-256 of tokens seen before: accepted (→ principal) and refused.
    tokens: Mutex<TokenCache>,
    checks: Arc<tokio::sync::Semaphore>,
    open: OpenCounts,
    default_max_connections: usize,
    /// Rate limit of the log lines about refused clients and requests.
    pub log_limit: LogLimit,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("mode", &self.mode)
            .field("principals", &self.principals.len())
            .field("client_ca", &self.client_ca.is_some())
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// The authenticator of a validated config. `base_dir` resolves a
    /// relative `client_ca`.
    pub fn new(
        config: &AuthConfig,
        base_dir: Option<&Path>,
        default_max_connections: usize,
    ) -> Result<Auth, ClientCaError> {
        let mode = config.effective_mode();
        let mut principals = HashMap::new();
        let mut with_tokens = Vec::new();
        for p in &config.principals {
            let principal = Arc::new(Principal::configured(p));
            if principal.token_hash.is_some() {
                with_tokens.push(principal.clone());
            }
            principals.insert(p.name.clone(), principal);
        }
        let client_ca = match &config.client_ca {
            Some(path) => Some(client_verifier(&resolve(base_dir, path))?),
            None => None,
        };
        Ok(Auth {
            mode,
            principals,
            with_tokens,
            anonymous: Arc::new(Principal::anonymous()),
            client_ca,
            tokens: Mutex::new(TokenCache::default()),
            checks: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_TOKEN_CHECKS)),
            open: Arc::new(Mutex::new(HashMap::new())),
            default_max_connections,
            log_limit: LogLimit::new(Duration::from_secs(1)),
        })
    }

    /// Clients must authenticate.
    pub fn required(&self) -> bool {
        self.mode == AuthMode::Required
    }

    /// The verifier the TLS layer uses to ask for client certificates
    /// (checked later, by [`Auth::authenticate`]).
    pub fn tls_client_verifier(&self) -> Option<Arc<dyn ClientCertVerifier>> {
        self.client_ca
            .as_ref()
            .map(|inner| Arc::new(DeferredClientVerifier(inner.clone())) as _)
    }

    /// Who the client is, from its Hello token and the certificate chain it
    /// showed in the handshake.
    pub async fn authenticate(
        &self,
        token: Option<&str>,
        certs: Option<&[CertificateDer<'static>]>,
    ) -> Result<Arc<Principal>, AuthFailure> {
        if !self.required() {
            return Ok(self.anonymous.clone());
        }
        let by_cert = match certs.filter(|c| !c.is_empty()) {
            Some(chain) => Some(self.principal_of_certificate(chain)?),
            None => None,
        };
        let by_token = match token {
            Some(token) => Some(self.principal_of_token(token).await?),
            None => None,
        };
        match (by_cert, by_token) {
            (Some(c), Some(t)) if !Arc::ptr_eq(&c, &t) => Err(AuthFailure::new(
                "mismatch",
                format!(
                    "the client certificate names principal {:?} but the token belongs to {:?}",
                    c.name, t.name
                ),
            )),
            (Some(p), _) | (None, Some(p)) => Ok(p),
            (None, None) => Err(AuthFailure::new(
                "no_credentials",
                "this broker requires authentication: send a token (--token) or a client certificate (--client-cert/--client-key)",
            )),
        }
    }

    fn principal_of_certificate(
        &self,
        chain: &[CertificateDer<'static>],
    ) -> Result<Arc<Principal>, AuthFailure> {
        let Some(verifier) = &self.client_ca else {
            return Err(AuthFailure::new(
                "bad_certificate",
                "client certificates are not accepted here (no auth.client_ca is configured)",
            ));
        };
        let (leaf, intermediates) = chain
            .split_first()
            .ok_or_else(|| AuthFailure::new("bad_certificate", "empty certificate chain"))?;
        verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map_err(|e| {
                AuthFailure::new(
                    "bad_certificate",
                    format!("client certificate refused: {e}"),
                )
            })?;
        let cn = common_name(leaf).ok_or_else(|| {
            AuthFailure::new(
                "bad_certificate",
                "the client certificate's subject has no common name (CN) to name a principal",
            )
        })?;
        self.principals.get(&cn).cloned().ok_or_else(|| {
            AuthFailure::new(
                "unknown_principal",
                format!("the client certificate names principal {cn:?}, which is not configured"),
            )
        })
    }

    async fn principal_of_token(&self, token: &str) -> Result<Arc<Principal>, AuthFailure> {
        let refused = || AuthFailure::new("bad_token", "the token is not valid");
        if token.len() > MAX_TOKEN_BYTES {
            return Err(refused());
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        {
            let cache = lock(&self.tokens);
            if let Some(principal) = cache.accepted.get(&digest) {
                return Ok(principal.clone());
            }
            if cache.refused.contains(&digest) {
                return Err(refused());
            }
        }
        let permit = self
            .checks
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| refused())?;
        let candidates = self.with_tokens.clone();
        let secret = token.to_owned();
        let found = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            candidates.into_iter().find(|p| {
                p.token_hash
                    .as_deref()
                    .and_then(|h| PasswordHash::new(h).ok())
                    .is_some_and(|h| {
                        Argon2::default()
                            .verify_password(secret.as_bytes(), &h)
                            .is_ok()
                    })
            })
        })
        .await
        .map_err(|_| refused())?;
        let mut cache = lock(&self.tokens);
        match found {
            Some(principal) => {
                cache.accepted.insert(digest, principal.clone());
                Ok(principal)
            }
            None => {
                // A flood of made-up tokens evicts only refused ones.
                if cache.refused.len() >= REFUSED_TOKENS_KEPT {
                    cache.refused.clear();
                }
                cache.refused.insert(digest);
                Err(refused())
            }
        }
    }

    /// Takes one of the principal's connection slots, or says which limit
    /// it is at.
    pub fn open_connection(
        &self,
        principal: &Arc<Principal>,
    ) -> Result<PrincipalSlot, ConnectionLimitReached> {
        if principal.anonymous {
            return Ok(PrincipalSlot(None));
        }
        let limit = principal
            .max_connections
            .unwrap_or(self.default_max_connections);
        let mut open = lock(&self.open);
        let count = open.entry(principal.name.clone()).or_insert(0);
        if *count >= limit {
            return Err(ConnectionLimitReached {
                principal: principal.name.clone(),
                open: *count,
                limit,
                setting: if principal.max_connections.is_some() {
                    "its max_connections"
                } else {
                    "limits.max_connections_per_principal"
                },
            });
        }
        *count += 1;
        Ok(PrincipalSlot(Some((
            self.open.clone(),
            principal.name.clone(),
        ))))
    }
}

/// Tokens already checked, by SHA-256.
#[derive(Default)]
struct TokenCache {
    accepted: HashMap<[u8; 32], Arc<Principal>>,
    refused: std::collections::HashSet<[u8; 32]>,
}

/// One open connection of a principal; released when dropped.
pub struct PrincipalSlot(Option<(OpenCounts, String)>);

/// Open connections per principal name.
type OpenCounts = Arc<Mutex<HashMap<String, usize>>>;

impl Drop for PrincipalSlot {
    fn drop(&mut self) {
        if let Some((open, name)) = self.0.take() {
            let mut open = lock(&open);
            if let Some(count) = open.get_mut(&name) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    open.remove(&name);
                }
            }
        }
    }
}

fn resolve(base_dir: Option<&Path>, path: &Path) -> PathBuf {
    match base_dir {
        Some(base) if path.is_relative() => base.join(path),
        _ => path.to_owned(),
    }
}

fn client_verifier(path: &Path) -> Result<Arc<dyn ClientCertVerifier>, ClientCaError> {
    let pem = std::fs::read(path).map_err(|source| ClientCaError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|source| ClientCaError::Parse {
            path: path.to_owned(),
            source,
        })?;
        roots.add(cert).map_err(|source| ClientCaError::Unusable {
            path: path.to_owned(),
            source,
        })?;
    }
    if roots.is_empty() {
        return Err(ClientCaError::Empty(path.to_owned()));
    }
    WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|source| ClientCaError::Verifier {
        path: path.to_owned(),
        source,
    })
}

/// The subject common name of a DER certificate.
fn common_name(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

/// Asks for a client certificate and checks that the client holds its key,
/// but leaves the chain's validation to [`Auth::authenticate`].
#[derive(Debug)]
struct DeferredClientVerifier(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for DeferredClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Checked after the handshake, before the client's first request.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covering_patterns() {
        // (allowed, wanted, covered)
        let cases = [
            ("orders.>", "orders.eu", true),
            ("orders.>", "orders.eu.created", true),
            ("orders.>", "orders.*", true),
            ("orders.>", "orders.>", true),
            ("orders.>", "orders", false),
            ("orders.>", ">", false),
            ("orders.>", "billing.x", false),
            ("orders.*", "orders.eu", true),
            ("orders.*", "orders.*", true),
            ("orders.*", "orders.>", false),
            ("orders.*", "orders.eu.x", false),
            ("orders.eu", "orders.eu", true),
            ("orders.eu", "orders.*", false),
            (">", "anything.at.all", true),
            ("*.created", "orders.created", true),
            ("*.created", "*.created", true),
            ("*.created", ">", false),
        ];
        for (allowed, wanted, expected) in cases {
            assert_eq!(
                covers(allowed, wanted),
                expected,
                "{allowed} covers {wanted}"
            );
        }
    }

    #[test]
    fn token_hashes_verify_and_check() {
        let hash = hash_token("s3cret").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        check_token_hash(&hash).unwrap();
        assert!(matches!(
            check_token_hash("plain-text"),
            Err(TokenHashError::Malformed(_))
        ));
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(Argon2::default()
            .verify_password(b"s3cret", &parsed)
            .is_ok());
        assert!(Argon2::default()
            .verify_password(b"other", &parsed)
            .is_err());
    }

    #[test]
    fn log_limit_holds_back_within_the_interval() {
        let limit = LogLimit::new(Duration::from_secs(3600));
        assert_eq!(limit.allow(), Some(0));
        assert_eq!(limit.allow(), None);
        assert_eq!(limit.allow(), None);
        let fast = LogLimit::new(Duration::ZERO);
        assert_eq!(fast.allow(), Some(0));
        assert_eq!(fast.allow(), Some(0));
    }
}
