//! Client certificates: one issued by the configured CA names the
//! principal; a foreign, expired or unknown one is refused, as is a
//! certificate that disagrees with the token.

use std::path::{Path, PathBuf};

use sluice_client::{Client, ClientError, ClientIdentity, ErrorCode};
use sluice_tests::{bounded, client_options, TestBroker};

use super::{principals_toml, refused, sample, scrape, with_config, ADMIN_TOKEN, ORDERS_TOKEN};

async fn connect_with_cert(
    broker: &TestBroker,
    identity: &Pki,
    token: Option<&str>,
) -> Result<Client, ClientError> {
    let mut options = client_options(broker.addr(), broker.cert_path()).identity(ClientIdentity {
        cert_pem: identity.cert_pem.clone(),
        key_pem: identity.key_pem.clone(),
    });
    if let Some(token) = token {
        options = options.token(token);
    }
    bounded("a client connection", Client::connect(options)).await
}

/// A CA, or a certificate it issued, as PEM.
struct Pki {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl Pki {
    fn ca(name: &str) -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        Pki {
            cert_pem: cert.pem().into_bytes(),
            key_pem: key.serialize_pem().into_bytes(),
            cert,
            key,
        }
    }

    /// A client certificate for `cn`, valid now unless `expired`.
    fn client(&self, cn: &str, expired: bool) -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("signed");
        Pki {
            cert_pem: cert.pem().into_bytes(),
            key_pem: key.serialize_pem().into_bytes(),
            cert,
            key,
        }
    }

    fn write_cert(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.cert_pem).expect("write the CA file");
        path
    }
}

#[tokio::test]
async fn client_certificates_name_the_principal_and_bad_ones_are_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = Pki::ca("sluice test client CA");
    let foreign = Pki::ca("someone else's CA");
    let ca_path = ca.write_cert(dir.path(), "client-ca.pem");
    let toml = principals_toml(&format!("client_ca = {:?}", ca_path.display().to_string()));
    let broker = TestBroker::start_with(with_config(&toml)).await?;

    // Issued by the configured CA for `orders`: in, with orders' rights.
    let good = ca.client("orders", false);
    let client = connect_with_cert(&broker, &good, None).await?;
    client.publish("orders.eu", "by cert").await?;
    let err = client.publish("billing.x", "no").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
    // With the principal's own token as well: they agree.
    connect_with_cert(&broker, &good, Some(ORDERS_TOKEN))
        .await?
        .ping()
        .await?;

    // Another CA's certificate for the same name.
    let message = refused(
        connect_with_cert(&broker, &foreign.client("orders", false), None).await,
        ErrorCode::Unauthorized,
    );
    assert!(
        message.contains("client certificate refused") && message.contains("Issuer"),
        "{message}"
    );
    // Expired.
    let message = refused(
        connect_with_cert(&broker, &ca.client("orders", true), None).await,
        ErrorCode::Unauthorized,
    );
    assert!(message.to_lowercase().contains("expired"), "{message}");
    // Valid, but for a principal the broker does not know.
    let message = refused(
        connect_with_cert(&broker, &ca.client("stranger", false), None).await,
        ErrorCode::Unauthorized,
    );
    assert!(message.contains("stranger"), "{message}");
    // A certificate for one principal and another's token.
    let message = refused(
        connect_with_cert(&broker, &good, Some(ADMIN_TOKEN)).await,
        ErrorCode::Unauthorized,
    );
    assert!(message.contains("admin"), "{message}");
    // A foreign certificate does not pass even with a good token.
    refused(
        connect_with_cert(&broker, &foreign.client("admin", false), Some(ADMIN_TOKEN)).await,
        ErrorCode::Unauthorized,
    );

    let metrics = scrape(&broker).await;
    assert!(
        sample(
            &metrics,
            "sluice_auth_failures_total{reason=\"bad_certificate\"}"
        ) >= 3.0,
        "{metrics}"
    );
    Ok(())
}
