//! What a node refuses at start in cluster mode, each with an error that
//! says what is wrong and what to do: servers that do not fsync before
//! acknowledging, too few servers for the replica count, servers that
//! cannot be reached.

use std::time::Duration;

use sluice_tests::{NatsCluster, NatsOptions, TestBroker};

use super::cluster_config;

/// The whole error chain of a failed start, as `sluice serve` prints it.
fn chain(error: &anyhow::Error) -> String {
    format!("{error:#}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_servers_without_fsync_unless_told_and_too_few_servers() -> anyhow::Result<()>
{
    let nats = NatsCluster::start(NatsOptions {
        sync_always: false,
        ..NatsOptions::default()
    })
    .await?;

    let config = cluster_config(&nats);
    let refused = TestBroker::start_with(|c| c.cluster = Some(config))
        .await
        .err()
        .expect("servers without sync_interval: always are refused");
    let message = chain(&refused);
    assert!(
        message.contains("does not fsync before acknowledging")
            && message.contains("require_fsync = false"),
        "{message}"
    );

    // Three replicas need three servers; one monitoring URL is one server.
    let mut config = cluster_config(&nats);
    config.require_fsync = false;
    config.monitor.truncate(1);
    let refused = TestBroker::start_with(|c| c.cluster = Some(config))
        .await
        .err()
        .expect("too few servers");
    let message = chain(&refused);
    assert!(
        message.contains("cluster.replicas = 3 needs 3 JetStream servers, but 1 were found"),
        "{message}"
    );

    // Told to accept it, the node starts and serves.
    let mut config = cluster_config(&nats);
    config.require_fsync = false;
    let node = TestBroker::start_with(|c| c.cluster = Some(config)).await?;
    let client = node.client().await?;
    client.publish("accepted", "stored").await?;
    assert_eq!(client.topic_info("accepted").await?.messages, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_nats_servers_cannot_be_reached_says_so() -> anyhow::Result<()> {
    // Ports nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let refused = TestBroker::start_with(|c| {
        c.cluster = Some(sluice::config::ClusterConfig {
            nats: vec![format!("nats://127.0.0.1:{port}")],
            replicas: 1,
            node: None,
            creds: None,
            token: None,
            tls_ca: None,
            monitor: Vec::new(),
            require_fsync: false,
            request_timeout: Duration::from_secs(2),
        })
    })
    .await
    .err()
    .expect("no NATS there");
    let message = chain(&refused);
    assert!(
        message.contains("cannot connect to NATS at") && message.contains("cluster.nats"),
        "{message}"
    );
    Ok(())
}
