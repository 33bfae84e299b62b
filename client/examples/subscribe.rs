//! Replays `orders.>` from the start, then follows new messages; stops
//! after 10 messages or 10 seconds.
//!
//! ```sh
//! cargo run -p sluice-client --example subscribe -- [SERVER] [CA_FILE]
//! ```

use std::time::Duration;

use futures_util::StreamExt;
use sluice_client::{Client, ClientOptions, StartPosition, Trust};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let server = args.next().unwrap_or_else(|| "127.0.0.1:4433".into());
    let ca = args
        .next()
        .unwrap_or_else(|| "sluice-data/tls/cert.pem".into());
    let client =
        Client::connect(ClientOptions::new(server).trust(Trust::CaFile(ca.into()))).await?;

    let mut orders = client
        .subscribe("orders.>", StartPosition::Earliest)
        .await?
        .take(10);
    let deadline = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            message = orders.next() => match message {
                Some(message) => {
                    let m = message?;
                    println!("{}@{} {}", m.topic, m.offset, String::from_utf8_lossy(&m.payload));
                }
                None => break,
            },
            () = &mut deadline => break,
        }
    }
    client.close().await;
    Ok(())
}
