//! Plugin rollouts on a real broker: a shadow that routes differently is
//! counted and sampled and changes nothing consumers receive; a canary
//! that traps on some messages is rolled back automatically with nothing
//! lost or doubled; a canary by key keeps each key on one version, is
//! resumed after a restart, and once promoted stays promoted across a
//! restart until the plugin's file changes.
//!
//! Two versions come from one build of the `test-hostile` fixture, its
//! build stamp patched (`stamp_build`): in `stamp` mode each version
//! stamps `x-stamp: <version>`, in `route-stamped` mode it routes to
//! `<topic>.<version>`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use sluice_client::{
    Client, Delivered, Message, RolloutRequest, RolloutState, RolloutStatus, StartPosition,
};
use sluice_tests::{cli_command, fetch_all, run_command, stamp_build, wait_until, TestBroker};

/// A broker with plugin `p` (the fixture built as `v1`, in `dir/p.wasm`,
/// with `config`) on the pipeline of `orders`.
async fn broker(dir: &Path, config: &str, on_error: &str) -> anyhow::Result<TestBroker> {
    let path = dir.join("p.wasm");
    std::fs::write(&path, stamp_build("v1"))?;
    let toml = format!(
        r#"
[[plugin]]
name = "p"
path = "{}"
config = {config}

[[pipeline]]
topics = "orders"
stages = ["p"]
on_error = "{on_error}"
"#,
        path.display()
    );
    let plugins = crate::pipelines::with_plugins(&toml);
    TestBroker::start_with(|c| {
        plugins(c);
        c.plugin_runtime.debounce = Duration::from_millis(10);
    })
    .await
}

/// Runs `sluice plugin ARGS...` against `broker`; its standard output.
async fn cli(broker: &TestBroker, args: &[&str]) -> anyhow::Result<String> {
    let args: Vec<&str> = std::iter::once("plugin")
        .chain(args.iter().copied())
        .collect();
    let command = cli_command(env!("CARGO_BIN_EXE_sluice-under-test"), broker, &args);
    let out = run_command(command, "", Duration::from_secs(30)).await?;
    anyhow::ensure!(out.success, "sluice plugin {args:?}: {}", out.stderr);
    Ok(out.stdout)
}

async fn status(client: &Client) -> RolloutStatus {
    client
        .plugin_rollout(RolloutRequest::Status { name: "p".into() })
        .await
        .expect("rollout status")
}

fn stamp(m: &Delivered) -> &str {
    m.header("x-stamp").unwrap_or("none")
}

async fn current_hash(client: &Client) -> String {
    let plugins = client.list_plugins().await.expect("plugin list");
    plugins.into_iter().find(|p| p.name == "p").expect("p").hash
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_that_routes_differently_is_counted_and_changes_nothing_delivered(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let broker = broker(dir.path(), r#"{ mode = "route-stamped" }"#, "reject").await?;
    let client = broker.client().await?;
    let v2 = dir.path().join("v2.wasm");
    std::fs::write(&v2, stamp_build("v2"))?;
    let started = cli(&broker, &["shadow", "p", v2.to_str().unwrap()]).await?;
    assert!(started.contains("shadow of p version"), "{started}");

    let mut subscription = client
        .subscribe("orders.>", StartPosition::Earliest)
        .await?;
    for i in 0..50 {
        client
            .publish_message(
                Message::new("orders", format!("order {i}")).key(format!("k{}", i % 5)),
            )
            .await?;
    }
    let diff = wait_until(
        "the shadow compared 50 messages",
        Duration::from_secs(15),
        || async {
            let s = status(&client).await;
            match &s.diff {
                Some(d) if d.compared + d.skipped >= 50 => Ok(s),
                _ => Err(format!("{s:?}")),
            }
        },
    )
    .await;
    let d = diff.diff.expect("a shadow's diff");
    assert_eq!(d.skipped, 0, "a quiet broker keeps up");
    assert_eq!(d.agreed, 0);
    assert_eq!(d.differences, BTreeMap::from([("route".to_owned(), 50)]));
    assert_eq!(d.samples.len(), 20, "the last 20 are kept");
    let last = d.samples.last().unwrap();
    assert_eq!(last.current, "route to orders.v1");
    assert_eq!(last.candidate, "route to orders.v2");
    assert_eq!(
        (last.payload.as_str(), last.key.as_deref()),
        ("order 49", Some("k4"))
    );

    // Consumers get only what the current version did.
    let mut topics = BTreeSet::new();
    for _ in 0..50 {
        let m = tokio::time::timeout(Duration::from_secs(10), subscription.recv())
            .await?
            .expect("a delivery")?;
        topics.insert(m.topic.clone());
    }
    assert_eq!(topics, BTreeSet::from(["orders.v1".to_owned()]));
    let listed: Vec<String> = client
        .list_topics()
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert!(!listed.contains(&"orders.v2".to_owned()), "{listed:?}");

    let text = cli(&broker, &["diff", "p"]).await?;
    assert!(
        text.contains("compared 50 messages: 0 agree, 50 differ (route 50)"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&cli(&broker, &["diff", "p", "--json"]).await?)?;
    assert_eq!(json["diff"]["differences"]["route"], 50);
    // The console's plugins page shows the same, with the samples.
    let page = crate::console::open_session(&broker)
        .await
        .get("/api/plugins")
        .await
        .json();
    let shown = &page["rollouts"][0];
    assert_eq!(shown["name"], "p", "{page}");
    assert_eq!(shown["mode"], "shadow");
    assert_eq!(shown["diff"]["differences"]["route"], 50);
    assert_eq!(shown["diff"]["samples"][0]["kind"], "route");

    let stopped = cli(&broker, &["shadow", "p", "--stop"]).await?;
    assert!(stopped.contains("rolled back"), "{stopped}");
    client.publish("orders", "after").await?;
    assert_eq!(status(&client).await.state, RolloutState::RolledBack);
    client.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_that_traps_on_some_messages_is_rolled_back_with_nothing_lost_or_doubled(
) -> anyhow::Result<()> {
    const MESSAGES: usize = 400;
    let dir = tempfile::tempdir()?;
    // Only the v2 build traps, on about 5% of payloads; a failed batch is
    // rejected, and the publisher sends it again.
    let config = r#"{ mode = "stamp", trap_stamp = "v2", trap_percent = 5 }"#;
    let broker = broker(dir.path(), config, "reject").await?;
    let client = broker.client().await?;
    let v2 = dir.path().join("v2.wasm");
    std::fs::write(&v2, stamp_build("v2"))?;
    let args = [
        "canary",
        "p",
        v2.to_str().unwrap(),
        "--percent",
        "50",
        "--min-messages",
        "20",
    ];
    let started = cli(&broker, &args).await?;
    assert!(started.contains("canary (50% of messages)"), "{started}");

    let mut rejected = 0;
    for i in 0..MESSAGES {
        let message = Message::new("orders", format!("m-{i}")).id(format!("id-{i}"));
        let mut attempts = 0;
        loop {
            attempts += 1;
            match client.publish_message(message.clone()).await {
                Ok(_) => break,
                Err(e) if attempts < 10 => {
                    assert!(e.to_string().contains("trapped"), "{e}");
                    rejected += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    assert!(rejected > 0, "the canary trapped at least once");
    let s = status(&client).await;
    assert_eq!(s.state, RolloutState::RolledBack, "{s:?}");
    let reason = s.reason.clone().unwrap_or_default();
    assert!(reason.contains("failed"), "{reason}");
    let window = s.canary.expect("a canary's window");
    assert!(
        window.candidate.failed > 0 && window.current.failed == 0,
        "{window:?}"
    );

    // Every message stored once, v1 for all after the rollback.
    let stored = fetch_all(&client, "orders", StartPosition::Earliest).await?;
    let payloads: BTreeSet<String> = stored
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    assert_eq!(stored.len(), MESSAGES, "nothing doubled");
    assert_eq!(payloads.len(), MESSAGES, "nothing lost");
    assert_eq!(stamp(stored.last().unwrap()), "v1");
    let after: Vec<&str> = stored[stored.len() - 50..].iter().map(stamp).collect();
    assert!(after.iter().all(|s| *s == "v1"), "{after:?}");
    assert_eq!(
        current_hash(&client).await,
        s.current,
        "the current version stays"
    );

    let metrics = sluice_tests::Http::new(broker.admin_addr().unwrap())
        .get("/metrics")
        .await
        .body;
    assert!(
        metrics.contains("sluice_plugin_rollbacks_total"),
        "{metrics}"
    );
    // Promoting a rolled-back canary is refused; rolling back clears it.
    let refused = client
        .plugin_rollout(RolloutRequest::Promote { name: "p".into() })
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("rolled back automatically"),
        "{refused}"
    );
    cli(&broker, &["rollback", "p"]).await?;
    client.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_by_key_keeps_each_key_on_one_version_and_its_promotion_outlives_restarts(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut broker = broker(dir.path(), r#"{ mode = "stamp" }"#, "reject").await?;
    let client = broker.client().await?;
    let v1_hash = current_hash(&client).await;
    let v2 = dir.path().join("v2.wasm");
    std::fs::write(&v2, stamp_build("v2"))?;
    cli(
        &broker,
        &["canary", "p", v2.to_str().unwrap(), "--by-key", "50"],
    )
    .await?;

    let publish_round = |client: Client, round: usize| async move {
        for i in 0..200 {
            let m = Message::new("orders", format!("{round}-{i}")).key(format!("k{}", i % 20));
            client.publish_message(m).await.expect("published");
        }
        client
    };
    let client = publish_round(client, 0).await;
    let stored = fetch_all(&client, "orders", StartPosition::Earliest).await?;
    let mut by_key: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in &stored {
        let key = String::from_utf8_lossy(m.key.as_deref().unwrap_or_default()).into_owned();
        by_key.entry(key).or_default().insert(stamp(m).to_owned());
    }
    assert_eq!(by_key.len(), 20);
    assert!(
        by_key.values().all(|v| v.len() == 1),
        "one version per key: {by_key:?}"
    );
    let versions: BTreeSet<&String> = by_key.values().flatten().collect();
    assert_eq!(versions.len(), 2, "both versions took keys: {by_key:?}");
    client.close().await;

    // The canary runs again after a restart, with the same split.
    broker.restart().await?;
    let client = broker.client().await?;
    let s = status(&client).await;
    assert_eq!(
        (s.mode.as_str(), s.state),
        ("canary", RolloutState::Running)
    );
    let client = publish_round(client, 1).await;
    let stored = fetch_all(&client, "orders", StartPosition::Earliest).await?;
    for m in &stored[200..] {
        let key = String::from_utf8_lossy(m.key.as_deref().unwrap_or_default()).into_owned();
        assert!(
            by_key[&key].contains(stamp(m)),
            "key {key} changed version after the restart"
        );
    }

    // Promoted: v2 takes everything, and stays after a restart.
    let promoted = client
        .plugin_rollout(RolloutRequest::Promote { name: "p".into() })
        .await?;
    assert_eq!(promoted.state, RolloutState::Promoted);
    let v2_hash = promoted.candidate.clone();
    assert_eq!(current_hash(&client).await, v2_hash);
    client.publish("orders", "after promotion").await?;
    client.close().await;
    broker.restart().await?;
    let client = broker.client().await?;
    assert_eq!(
        current_hash(&client).await,
        v2_hash,
        "the promotion outlives a restart"
    );
    client.publish("orders", "after restart").await?;
    let stored = fetch_all(&client, "orders", StartPosition::Earliest).await?;
    let last: Vec<&str> = stored[stored.len() - 2..].iter().map(stamp).collect();
    assert_eq!(last, ["v2", "v2"]);

    // A new file at the configured path wins over the promotion.
    std::fs::write(dir.path().join("p.wasm"), stamp_build("v3"))?;
    wait_until(
        "the new file's version",
        Duration::from_secs(15),
        || async {
            let hash = current_hash(&client).await;
            if hash != v2_hash && hash != v1_hash {
                Ok(())
            } else {
                Err(hash)
            }
        },
    )
    .await;
    client.publish("orders", "v3").await?;
    let stored = fetch_all(&client, "orders", StartPosition::Earliest).await?;
    assert_eq!(stamp(stored.last().unwrap()), "v3");
    client.close().await;
    Ok(())
}
