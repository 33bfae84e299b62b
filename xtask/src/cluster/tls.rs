//! The cluster's certificates: one CA, and a certificate per node signed
//! by it for `127.0.0.1` and `localhost`, so that a client trusting the CA
//! verifies every node it fails over to.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// clients keep trusting the same CA.
pub fn ensure_tls(dir: &Path, nodes: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let (ca_cert_path, ca_key_path) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    let new_ca = !(ca_cert_path.exists() && ca_key_path.exists());
    let ca_key = if new_ca {
        let key = KeyPair::generate().context("failed to make the CA's key")?;
        write_file(&ca_key_path, &key.serialize_pem(), true)?;
        key
    } else {
        let pem = std::fs::read_to_string(&ca_key_path)
            .with_context(|| format!("failed to read {}", ca_key_path.display()))?;
        KeyPair::from_pem(&pem).with_context(|| {
            format!(
                "{} is not a private key; remove {} to make a new CA",
                ca_key_path.display(),
                dir.display()
            )
        })?
    };
    // Same name, same key: what this signs verifies against the ca.pem
    // written the first time.
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "sluice local cluster CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca
        .self_signed(&ca_key)
        .context("failed to make the CA certificate")?;
    if new_ca {
        write_file(&ca_cert_path, &ca.pem(), false)?;
    }
    for i in 1..=nodes {
        let (cert_path, key_path) = (
            dir.join(format!("node-{i}.pem")),
            dir.join(format!("node-{i}-key.pem")),
        );
        if !new_ca && cert_path.exists() && key_path.exists() {
            continue;
        }
        let key = KeyPair::generate().context("failed to make a node's key")?;
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("sluice node-{i}"));
        params.is_ca = IsCa::ExplicitNoCa;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &ca, &ca_key)
            .context("failed to sign a node's certificate")?;
        write_file(&key_path, &key.serialize_pem(), true)?;
        write_file(&cert_path, &cert.pem(), false)?;
    }
    Ok(())
}

/// Writes `text` to `path`, readable by the owner only if `secret`.
pub(super) fn write_file(path: &Path, text: &str, secret: bool) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .with_context(|| format!("failed to create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("failed to write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_made_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("xtask-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        ensure_tls(&dir, 2).unwrap();
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        let (ca, node) = (read("ca.pem"), read("node-1.pem"));
        std::fs::remove_file(dir.join("node-2.pem")).unwrap();
        ensure_tls(&dir, 2).unwrap();
        assert_eq!(read("ca.pem"), ca);
        assert_eq!(read("node-1.pem"), node);
        assert!(read("node-2.pem").contains("BEGIN CERTIFICATE"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
