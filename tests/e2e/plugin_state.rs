//! Plugins' key-value state, with the example plugins that use it: the
//! rate limiter's counters survive a hot reload and a SIGKILLed broker; a
//! plugin past its quota gets the error (and says so in its log) while the
//! broker goes on.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use sluice_client::{Client, Message, StartPosition};
use sluice_tests::{fetch_all, plugin_dist, wait_until, ChildBroker, TestBroker};

/// The payloads stored in `topic`.
async fn stored(client: &Client, topic: &str) -> Vec<String> {
    fetch_all(client, topic, StartPosition::Earliest)
        .await
        .map(|ms| {
            ms.iter()
                .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Publishes one message (as a batch of one: a message a plugin drops is
/// acknowledged as dropped, not an error).
async fn publish(client: &Client, message: Message) -> anyhow::Result<()> {
    client.publish_batch(vec![message]).await?;
    Ok(())
}

/// Publishes one message with `key` to `limited`.
async fn publish_keyed(client: &Client, key: &str, payload: &str) -> anyhow::Result<()> {
    publish(
        client,
        Message::new("limited", payload.to_owned()).key(key.to_owned()),
    )
    .await
}

fn limiter_config(limit: u32) -> String {
    format!(
        r#"[storage]
fsync = "never"

[plugins]
debounce = "10ms"

[[plugin]]
name = "limiter"
path = "{}"
config = {{ limit = {limit}, window_secs = 3600 }}

[[pipeline]]
topics = "limited"
stages = ["limiter"]
"#,
        plugin_dist("rate_limiter.wasm").display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limiters_counters_survive_a_hot_reload_and_a_sigkill() -> anyhow::Result<()> {
    sluice_tests::init_tracing();
    let dir = tempfile::Builder::new()
        .prefix("sluice-e2e-state-")
        .tempdir()?;
    let binary = Path::new(env!("CARGO_BIN_EXE_sluice-under-test"));
    let mut broker = ChildBroker::start(binary, dir.path(), &limiter_config(3)).await?;
    let client = broker.client().await?;
    for i in 0..2 {
        publish_keyed(&client, "k", &format!("k{i}")).await?;
    }
    assert_eq!(stored(&client, "limited").await, ["k0", "k1"]);

    // A hot reload: the config's limit goes from 3 to 4, a new version of
    // the plugin takes over, its counters are the old version's.
    let config_path = dir.path().join("sluice.toml");
    let config = std::fs::read_to_string(&config_path)?;
    std::fs::write(&config_path, config.replace("limit = 3", "limit = 4"))?;
    wait_until("the reload to limit 4", Duration::from_secs(15), || async {
        let plugins = client.list_plugins().await.map_err(|e| e.to_string())?;
        match plugins.iter().find(|p| p.name == "limiter") {
            Some(p) if p.versions >= 2 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    for i in 2..5 {
        publish_keyed(&client, "k", &format!("k{i}")).await?;
    }
    // k's counter went on from 2: the third and fourth pass, the fifth is
    // over the new limit of 4.
    assert_eq!(stored(&client, "limited").await, ["k0", "k1", "k2", "k3"]);
    client.close().await;

    // SIGKILL right after the last acknowledged publish: the counter is in
    // the plugin's journal, written before the plugin's call returned.
    broker.restart().await?;
    let client = broker.client().await?;
    publish_keyed(&client, "k", "k5").await?;
    publish_keyed(&client, "j", "j0").await?;
    assert_eq!(
        stored(&client, "limited").await,
        ["k0", "k1", "k2", "k3", "j0"],
        "k is still over its limit after the restart; j is new"
    );
    assert!(broker
        .data_dir()
        .join("plugin-state/limiter/journal")
        .exists());
    client.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_past_its_state_quota_gets_the_error_and_the_broker_goes_on() -> anyhow::Result<()>
{
    let toml = format!(
        r#"
[[plugin]]
name = "once"
path = "{}"
config = {{ field = "id" }}

[[pipeline]]
topics = "orders"
stages = ["once"]
"#,
        plugin_dist("dedup.wasm").display()
    );
    let plugins = crate::pipelines::with_plugins(&toml);
    let broker = TestBroker::start_with(|c| {
        plugins(c);
        // Room for three remembered ids (each about 40 bytes).
        c.plugin_runtime.state_max_bytes = 130;
    })
    .await?;
    let client = broker.client().await?;
    let order = |i: u32| Message::new("orders", format!(r#"{{"id": "order-{i}"}}"#));
    for i in 0..6 {
        publish(&client, order(i)).await?;
    }
    // The first three were remembered, the rest passed unremembered: so a
    // second copy of order-0 is dropped, one of order-5 is not.
    publish(&client, order(0)).await?;
    publish(&client, order(5)).await?;
    let ids: Vec<String> = stored(&client, "orders")
        .await
        .iter()
        .map(|p| {
            let v: Value = serde_json::from_str(p).expect("JSON");
            v["id"].as_str().expect("id").to_owned()
        })
        .collect();
    assert_eq!(
        ids,
        ["order-0", "order-1", "order-2", "order-3", "order-4", "order-5", "order-5"]
    );
    // The plugin got the quota error and logged it, per message.
    let warnings = wait_until(
        "the plugin's quota warnings",
        Duration::from_secs(15),
        || async {
            let lines: Vec<Value> =
                fetch_all(&client, "_sluice.logs.once", StartPosition::Earliest)
                    .await
                    .map_err(|e| e.to_string())?
                    .iter()
                    .map(|l| serde_json::from_slice(&l.payload).expect("a log line is JSON"))
                    .collect();
            if lines.len() >= 4 {
                Ok(lines)
            } else {
                Err(format!("{lines:?}"))
            }
        },
    )
    .await;
    let text = warnings[0]["message"].as_str().unwrap_or_default();
    assert!(text.contains("quota of 130 bytes"), "{}", warnings[0]);
    assert_eq!(warnings[0]["level"], "warn");
    // The broker is unaffected: other topics work, and so does the plugin.
    client.publish("elsewhere", "fine").await?;
    assert_eq!(stored(&client, "elsewhere").await, ["fine"]);
    publish(&client, order(1)).await?;
    assert_eq!(
        stored(&client, "orders").await.len(),
        7,
        "order-1 again is dropped"
    );
    client.close().await;
    Ok(())
}
