//! TLS for the client: which certificates to trust, TLS 1.3 only, ALPN
//! `sluice/1`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::error::ClientError;
use crate::options::{ClientIdentity, Trust};

/// The SHA-256 fingerprint of a DER certificate, as colon-separated hex
/// (the form the broker logs at start).
pub fn certificate_fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots_from_pem(pem: &[u8], origin: &str) -> Result<rustls::RootCertStore, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    let mut reader = pem;
    for cert in rustls_pemfile::certs(&mut reader) {
        let cert = cert.map_err(|e| {
            ClientError::Config(format!("cannot read certificates from {origin}: {e}"))
        })?;
        roots
            .add(cert)
            .map_err(|e| ClientError::Config(format!("bad certificate in {origin}: {e}")))?;
    }
    if roots.is_empty() {
        return Err(ClientError::Config(format!(
            "no PEM certificate found in {origin}"
        )));
    }
    Ok(roots)
}

/// The certificate chain and key of a client identity.
fn identity_parts(
    identity: &ClientIdentity,
) -> Result<
    (
        Vec<CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ),
    ClientError,
> {
    let certs = rustls_pemfile::certs(&mut identity.cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClientError::Config(format!("cannot read the client certificate: {e}")))?;
    if certs.is_empty() {
        return Err(ClientError::Config(
            "no PEM certificate in the client certificate".into(),
        ));
    }
    let key = rustls_pemfile::private_key(&mut identity.key_pem.as_slice())
        .map_err(|e| ClientError::Config(format!("cannot read the client key: {e}")))?
        .ok_or_else(|| ClientError::Config("no PEM private key in the client key".into()))?;
    Ok((certs, key))
}

/// The rustls configuration for `trust`, presenting `identity` if given.
pub(crate) fn client_config(
    trust: &Trust,
    identity: Option<&ClientIdentity>,
) -> Result<rustls::ClientConfig, ClientError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::Config(format!("TLS set-up failed: {e}")))?;
    let builder = match trust {
        Trust::CaFile(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                ClientError::Config(format!("cannot read CA file {}: {e}", path.display()))
            })?;
            let roots = roots_from_pem(&pem, &path.display().to_string())?;
            builder.with_root_certificates(roots)
        }
        Trust::CaPem(pem) => {
            let roots = roots_from_pem(pem, "the given PEM")?;
            builder.with_root_certificates(roots)
        }
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            })),
    };
    let mut config = match identity {
        Some(identity) => {
            let (certs, key) = identity_parts(identity)?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                ClientError::Config(format!("the client certificate cannot be used: {e}"))
            })?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![sluice_proto::ALPN.to_vec()];
    Ok(config)
}

/// The name a certificate is checked against.
pub(crate) fn server_name(name: &str) -> Result<ServerName<'static>, ClientError> {
    ServerName::try_from(name.to_owned())
        .map_err(|e| ClientError::Config(format!("{name:?} is not a valid server name: {e}")))
}

/// `--insecure`: accepts any certificate but still checks that the peer
/// holds the key of the certificate it showed.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Only TLS 1.3 is offered.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_colon_separated_sha256() {
        let fp = certificate_fingerprint(b"abc");
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert!(fp.starts_with("BA:78:16:BF"));
    }

    #[test]
    fn empty_pem_is_a_clear_error() {
        let err = client_config(&Trust::CaPem(b"not a pem".to_vec()), None).unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
    }

    #[test]
    fn missing_ca_file_names_the_file() {
        let err = client_config(&Trust::CaFile("/nonexistent/ca.pem".into()), None).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
