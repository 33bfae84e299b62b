//! Plugins and pipelines in cluster mode: they live in the cluster, so a
//! node runs the cluster's pipeline whatever its own file says.

use std::time::Duration;

use sluice_client::{Message, MessageOutcome, StartPosition};
use sluice_tests::{fetch_all, stamp_build, wait_until};

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

fn stamp_of(message: &sluice_client::Delivered) -> String {
    message
        .headers
        .iter()
        .find(|(k, _)| k == "x-stamp")
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_through_one_node_reaches_every_node_and_a_bad_one_is_refused(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let v1 = dir.path().join("stamp.wasm");
    std::fs::write(&v1, stamp_build("v1"))?;
    let toml = format!(
        "[[plugin]]\nname = \"stamp\"\npath = \"{}\"\nconfig = {{ mode = \"stamp\" }}\n\n[[pipeline]]\ntopics = \"events\"\nstages = [\"stamp\"]\n",
        v1.display()
    );
    let parsed = sluice::Config::parse(&toml, "<test>")?;
    let cluster = Cluster::start_with(2, |i, c| {
        if i == 0 {
            c.plugins = parsed.plugins.clone();
            c.pipelines = parsed.pipelines.clone();
        }
    })
    .await?;
    let (a, b) = (cluster.client(0).await?, cluster.client(1).await?);
    a.publish("events", "one").await?;
    let stored = fetch_all(&b, "events", StartPosition::Earliest).await?;
    assert_eq!(stamp_of(&stored[0]), "v1");

    // Deployed through node B: both nodes load it.
    let hash = b.deploy_plugin("stamp", stamp_build("v2")).await?;
    for (node, client) in [(0, &a), (1, &b)] {
        wait_until(
            &format!("node {node} to run v2"),
            Duration::from_secs(15),
            || async {
                let stamped = client
                    .publish_message(Message::new("events", "probe"))
                    .await
                    .map_err(|e| e.to_string())?;
                let offset = stamped.offset;
                let got = fetch_all(client, "events", StartPosition::Offset(offset))
                    .await
                    .map_err(|e| e.to_string())?;
                match got.first().map(stamp_of).as_deref() {
                    Some("v2") => Ok(()),
                    other => Err(format!("stamp {other:?}")),
                }
            },
        )
        .await;
    }
    // `plugin list` on either node shows both nodes on the new version.
    let plugins = a.list_plugins().await?;
    let mut nodes: Vec<(Option<String>, String)> = plugins
        .iter()
        .filter(|p| p.name == "stamp")
        .map(|p| (p.node.clone(), p.hash.clone()))
        .collect();
    nodes.sort();
    assert_eq!(
        nodes,
        vec![
            (Some("node-0".to_owned()), hash.clone()),
            (Some("node-1".to_owned()), hash.clone())
        ],
        "{plugins:?}"
    );

    // A component that does not accept the plugin's config is refused
    // before it reaches anyone; the running version stays.
    let bad = std::fs::read(sluice_tests::plugin_dist("redact_pii.wasm"))?;
    let refused = a.deploy_plugin("stamp", bad).await.expect_err("refused");
    assert!(refused.to_string().contains("stamp"), "{refused}");
    let unknown = a
        .deploy_plugin("nope", stamp_build("v3"))
        .await
        .expect_err("no such plugin");
    assert!(
        unknown.to_string().contains("no plugin \"nope\""),
        "{unknown}"
    );
    let after = a.publish("events", "after").await?;
    let got = fetch_all(&b, "events", StartPosition::Offset(after.offset)).await?;
    assert_eq!(stamp_of(&got[0]), "v2");
    Ok(())
}
