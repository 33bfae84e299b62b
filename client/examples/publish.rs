//! Publishes a few messages to a broker started with `cargo xtask run`.
//!
//! ```sh
//! cargo run -p sluice-client --example publish -- [SERVER] [CA_FILE]
//! ```

use sluice_client::{Client, ClientOptions, Message, Trust};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let server = args.next().unwrap_or_else(|| "127.0.0.1:4433".into());
    let ca = args
        .next()
        .unwrap_or_else(|| "sluice-data/tls/cert.pem".into());
    let client =
        Client::connect(ClientOptions::new(server).trust(Trust::CaFile(ca.into()))).await?;

    let stored = client.publish("orders.created", r#"{"order": 1}"#).await?;
    println!("stored {}@{}", stored.topic, stored.offset);

    let ack = client
        .publish_batch(
            (2..=5)
                .map(|n| {
                    Message::new("orders.created", format!(r#"{{"order": {n}}}"#))
                        .key(format!("customer-{}", n % 2))
                        .header("region", "eu")
                })
                .collect(),
        )
        .await?;
    println!("batch stored: {:?}", ack.outcomes);
    client.close().await;
    Ok(())
}
