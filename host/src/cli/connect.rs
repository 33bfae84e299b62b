//! Client flags to a connected [`Client`].

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use sluice_client::{Client, ClientIdentity, ClientOptions, Trust};

use crate::server::tls::dev_cert_path;

/// Flags shared by every client subcommand.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Broker address, host:port; or the nodes of a cluster, separated by
    /// commas (a:4433,b:4433): the client connects to the first that
    /// answers and fails over to the next when its connection is lost.
    #[arg(
        long,
        env = "SLUICE_SERVER",
        default_value = "127.0.0.1:4433",
        global = true
    )]
    pub server: String,
    /// Trust the broker certificate(s) in this PEM file.
    #[arg(long, env = "SLUICE_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// The broker's data directory on this machine: trust its development certificate.
    #[arg(
        long,
        env = "SLUICE_DATA",
        default_value = "./sluice-data",
        global = true
    )]
    pub data: PathBuf,
    /// Do not check the broker's certificate (development only).
    #[arg(long, global = true)]
    pub insecure: bool,
    /// Bearer token (the secret whose hash is in the broker's [[auth.principal]]).
    #[arg(long, env = "SLUICE_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Client certificate (PEM) for brokers with mutual TLS; with --client-key.
    #[arg(long, env = "SLUICE_CLIENT_CERT", global = true)]
    pub client_cert: Option<PathBuf>,
    /// Private key (PEM) of --client-cert.
    #[arg(long, env = "SLUICE_CLIENT_KEY", global = true)]
    pub client_key: Option<PathBuf>,
}

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
