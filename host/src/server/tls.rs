//! The broker's TLS identity: configured certificate files, or a
//! self-signed development certificate created in the data directory at
//! first start. TLS 1.3 only, ALPN `sluice/1`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{LimitsConfig, ServerConfig};

/// Why the broker's TLS identity or QUIC configuration could not be set up.
///
/// The cause is the error's source, not part of its message: the broker's
/// start-up error chain shows both.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate file could not be read.
    #[error("failed to read certificate {path}")]
    ReadCert {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A certificate file is not PEM.
    #[error("failed to parse certificate {path}")]
    ParseCert {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A certificate file holds no certificate.
    #[error("no PEM certificate in {0}")]
    NoCert(PathBuf),
    /// A key file could not be read.
    #[error("failed to read private key {path}")]
    ReadKey {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key file is not PEM.
    #[error("failed to parse private key {path}")]
    ParseKey {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key file holds no private key.
    #[error("no PEM private key in {0}")]
    NoKey(PathBuf),
    /// The development certificate could not be generated.
    #[error("failed to generate a self-signed certificate")]
    Generate(#[source] rcgen::Error),
    /// The development certificate, its key or their directory could not
    /// be created.
    #[error("failed to create {path}")]
    Create {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The development certificate or its key could not be written.
    #[error("failed to write {path}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// rustls refused TLS 1.3 with the ring provider.
    #[error("failed to set up TLS 1.3")]
    Protocol(#[source] rustls::Error),
    /// The key does not belong to the certificate, or its type is unsupported.
    #[error("certificate and key do not match or are not supported")]
    KeyMismatch(#[source] rustls::Error),
    /// The TLS configuration lacks what QUIC needs.
    #[error("TLS configuration unusable for QUIC")]
    Quic(#[source] quinn::crypto::rustls::NoInitialCipherSuite),
    /// `limits.idle_timeout` does not fit QUIC's idle timeout.
    #[error("limits.idle_timeout is too large for QUIC; choose a shorter one")]
    IdleTimeout(#[source] quinn::VarIntBoundsExceeded),
}

/// The certificate chain and key the broker presents.
pub struct Identity {
    /// Certificate chain, leaf first.
    pub certs: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
    /// The certificate file (clients trust it with `--ca`).
    pub cert_path: PathBuf,
    /// SHA-256 of the leaf certificate.
    pub fingerprint: String,
    /// True if this is the generated development certificate.
    pub self_signed: bool,
}

/// Where the development certificate lives in a data directory.
pub fn dev_cert_path(data_dir: &Path) -> PathBuf {
    data_dir.join("tls").join("cert.pem")
}

fn dev_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("tls").join("key.pem")
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::ReadCert {
        path: path.to_owned(),
        source,
    })?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::ParseCert {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert(path.to_owned()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::ReadKey {
        path: path.to_owned(),
        source,
    })?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|source| TlsError::ParseKey {
            path: path.to_owned(),
            source,
        })?
        .ok_or_else(|| TlsError::NoKey(path.to_owned()))
}

fn write_new(path: &Path, contents: &[u8], private: bool) -> Result<(), TlsError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|source| TlsError::Create {
        path: path.to_owned(),
        source,
    })?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|source| TlsError::Write {
            path: path.to_owned(),
            source,
        })
}

fn generate_dev_cert(data_dir: &Path) -> Result<(), TlsError> {
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let generated = rcgen::generate_simple_self_signed(names).map_err(TlsError::Generate)?;
    let dir = data_dir.join("tls");
    std::fs::create_dir_all(&dir).map_err(|source| TlsError::Create {
        path: dir.clone(),
        source,
    })?;
    // Key first: a cert without its key is useless, a key without its cert is regenerated.
    let key_path = dev_key_path(data_dir);
    let cert_path = dev_cert_path(data_dir);
    let _ = std::fs::remove_file(&key_path);
    write_new(
        &key_path,
        generated.key_pair.serialize_pem().as_bytes(),
        true,
    )?;
    write_new(&cert_path, generated.cert.pem().as_bytes(), false)?;
    Ok(())
}

/// Loads the configured certificate, or the development certificate in the
/// data directory, creating it if it is not there.
pub fn load_or_create(config: &ServerConfig) -> Result<Identity, TlsError> {
    let (cert_path, key_path, self_signed) = match (&config.cert, &config.key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone(), false),
        _ => {
            let cert = dev_cert_path(&config.data_dir);
            if !cert.exists() {
                generate_dev_cert(&config.data_dir)?;
                tracing::info!(path = %cert.display(), "created a self-signed development certificate");
            }
            (cert, dev_key_path(&config.data_dir), true)
        }
    };
    let certs = read_certs(&cert_path)?;
    let key = read_key(&key_path)?;
    let fingerprint = sluice_client::certificate_fingerprint(&certs[0]);
    Ok(Identity {
        certs,
        key,
        cert_path,
        fingerprint,
        self_signed,
    })
}

/// The QUIC server configuration for `identity`.
/// `client_verifier` asks clients for certificates (mutual TLS).
pub fn quic_config(
    identity: &Identity,
    limits: &LimitsConfig,
    client_verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> Result<quinn::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Protocol)?;
    let builder = match client_verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut tls = builder
        .with_single_cert(identity.certs.clone(), identity.key.clone_key())
        .map_err(TlsError::KeyMismatch)?;
    tls.alpn_protocols = vec![sluice_proto::ALPN.to_vec()];
    tls.max_early_data_size = 0;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(TlsError::Quic)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = sluice_client::transport::transport_config();
    transport
        // One control stream per connection; the broker opens the rest.
        .max_concurrent_bidi_streams(1u32.into())
        .max_concurrent_uni_streams(0u32.into())
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(limits.idle_timeout).map_err(TlsError::IdleTimeout)?,
        ));
    config.transport_config(Arc::new(transport));
    Ok(config)
}
