//! Client flags to a connected [`Client`].

use anyhow::{bail, Context};
use sluice_client::{Client, ClientIdentity, ClientOptions, Trust};

use super::args::ClientArgs;
use crate::server::tls::dev_cert_path;

/// How the CLI checks the broker's certificate: `--insecure`, `--ca`, or
/// the development certificate of the data directory given by `--data`.
pub fn trust(args: &ClientArgs) -> anyhow::Result<Trust> {
    if args.insecure {
        tracing::warn!("--insecure: the broker's certificate is not checked; anyone on the path can impersonate it");
        eprintln!("warning: --insecure: the broker's certificate is not checked");
        return Ok(Trust::Insecure);
    }
    if let Some(ca) = &args.ca {
        return Ok(Trust::CaFile(ca.clone()));
    }
    let dev = dev_cert_path(&args.data);
    if dev.exists() {
        return Ok(Trust::CaFile(dev));
    }
    bail!(
        "cannot verify the broker's certificate: no {} found. Pass --ca FILE, --data DIR (the broker's data directory on this machine) or --insecure",
        dev.display()
    )
}

/// Connects as the flags say.
pub async fn connect(args: &ClientArgs) -> anyhow::Result<Client> {
    let mut options = ClientOptions::new(args.server.clone())
        .trust(trust(args)?)
        .client_name(format!("sluice-cli/{}", env!("CARGO_PKG_VERSION")));
    if let Some(token) = &args.token {
        options = options.token(token.clone());
    }
    match (&args.client_cert, &args.client_key) {
        (Some(cert), Some(key)) => {
            options = options.identity(ClientIdentity::from_files(cert, key)?)
        }
        (None, None) => {}
        _ => bail!(
            "--client-cert and --client-key go together (a client certificate and its private key)"
        ),
    }
    Client::connect(options)
        .await
        .with_context(|| format!("failed to connect to {}", args.server))
}
