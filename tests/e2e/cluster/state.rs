//! Plugin state in cluster mode: kept in the cluster's key-value bucket,
//! so a node that starts after another is gone reads what it wrote, and a
//! running node sees other nodes' writes through its watch.

use sluice_client::{Client, Message, MessageOutcome};
use sluice_tests::TestBroker;

use super::{cluster_config, Cluster};

/// The rate limiter on `limited`, at most `limit` messages per key an hour.
fn limiter(limit: u32) -> impl Fn(usize, &mut sluice::Config) {
    let toml = format!(
        r#"
[[plugin]]
name = "limiter"
path = "{}"
config = {{ limit = {limit}, window_secs = 3600 }}

[[pipeline]]
topics = "limited"
stages = ["limiter"]
"#,
        sluice_tests::plugin_dist("rate_limiter.wasm").display()
    );
    let parsed = sluice::Config::parse(&toml, "<test>").expect("test config parses");
    move |_, c| {
        c.plugins = parsed.plugins.clone();
        c.pipelines = parsed.pipelines.clone();
    }
}

/// What the pipeline made of one message with `key`.
async fn publish_keyed(client: &Client, key: &str) -> anyhow::Result<MessageOutcome> {
    let ack = client
        .publish_batch(vec![Message::new("limited", "x").key(key.to_owned())])
        .await?;
    Ok(ack.outcomes[0].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_state_is_kept_in_the_cluster_and_seen_by_every_node() -> anyhow::Result<()> {
    const LIMIT: u32 = 40;
    let mut cluster = Cluster::start_with(2, limiter(LIMIT)).await?;
    let a = cluster.client(0).await?;
    for i in 0..LIMIT {
        let outcome = publish_keyed(&a, "k").await?;
        assert!(
            matches!(outcome, MessageOutcome::Stored(_)),
            "{i}: {outcome:?}"
        );
    }
    assert_eq!(publish_keyed(&a, "k").await?, MessageOutcome::Dropped);

    // Node 1 ran all along: its copy follows the bucket. Until node 0's
    // counts reach it, it counts k from where its copy is; so it lets
    // through far fewer than LIMIT before dropping (were its copy never
    // updated, it would let LIMIT through).
    let b = cluster.client(1).await?;
    let mut passed = 0;
    while publish_keyed(&b, "k").await? != MessageOutcome::Dropped {
        passed += 1;
        assert!(passed < LIMIT / 2, "node 1 never saw node 0's counts");
    }

    // Node 0 leaves; a node started afterwards, with an empty data
    // directory, reads k's count from the bucket: k stays over its limit,
    // a new key is not.
    a.close().await;
    drop(cluster.nodes.remove(0));
    let configure = limiter(LIMIT);
    let mut config = cluster_config(&cluster.nats);
    config.node = Some("node-late".into());
    let late = TestBroker::start_with(move |c| {
        configure(2, c);
        c.cluster = Some(config);
    })
    .await?;
    let c = late.client().await?;
    assert_eq!(publish_keyed(&c, "k").await?, MessageOutcome::Dropped);
    assert!(matches!(
        publish_keyed(&c, "fresh").await?,
        MessageOutcome::Stored(_)
    ));
    c.close().await;
    b.close().await;
    Ok(())
}
