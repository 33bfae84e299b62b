//! Plugins and pipelines in cluster mode: they live in the cluster, so a
//! node runs the cluster's pipeline whatever its own file says.

use sluice_client::{Message, MessageOutcome};

use super::Cluster;

/// A pipeline dropping test orders on `orders.>`.
fn drop_test_orders(c: &mut sluice::Config) {
    let toml = format!(
        r#"
[[plugin]]
name = "drop-test-orders"
path = "{filter}"
config = {{ conditions = [{{ field = "test", exists = false }}] }}

[[pipeline]]
topics = "orders.>"
stages = ["drop-test-orders"]
"#,
        filter = sluice_tests::plugin_dist("filter_json.wasm").display()
    );
    let parsed = sluice::Config::parse(&toml, "<test>").expect("test config parses");
    c.plugins = parsed.plugins;
    c.pipelines = parsed.pipelines;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_node_seeds_the_pipeline_and_every_node_runs_it() -> anyhow::Result<()> {
    // Node 0 has the pipeline in its file; node 1 has none.
    let cluster = Cluster::start_with(2, |i, c| {
        if i == 0 {
            drop_test_orders(c);
        }
    })
    .await?;
    for node in 0..2 {
        let client = cluster.client(node).await?;
        let ack = client
            .publish_batch(vec![
                Message::new("orders.in", r#"{"id":1}"#),
                Message::new("orders.in", r#"{"id":2,"test":true}"#),
            ])
            .await?;
        assert!(
            matches!(ack.outcomes[0], MessageOutcome::Stored(_)),
            "node {node}: {:?}",
            ack.outcomes
        );
        assert_eq!(
            ack.outcomes[1],
            MessageOutcome::Dropped,
            "node {node} runs the cluster's pipeline"
        );
        let plugins = client.list_plugins().await?;
        assert!(
            plugins.iter().any(|p| p.name == "drop-test-orders"),
            "node {node}: {plugins:?}"
        );
    }
    Ok(())
}
