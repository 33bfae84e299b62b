//! Plugins in the publish path: real components from plugins/dist (built by
//! `cargo xtask plugins`), a real broker, the real client.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sluice_client::{ErrorCode, Message, MessageOutcome, StartPosition};
use sluice_tests::{collect, fetch_all, TestBroker};

fn dist(file: &str) -> String {
    sluice_tests::plugin_dist(file).display().to_string()
}

/// Applies the `[[plugin]]` and `[[pipeline]]` tables of `toml`.
fn with_plugins(toml: &str) -> impl FnOnce(&mut sluice::Config) {
    let parsed = sluice::Config::parse(toml, "<test>").expect("test config parses");
    move |c| {
        c.plugins = parsed.plugins;
        c.pipelines = parsed.pipelines;
    }
}

fn order_pipeline() -> String {
    format!(
        r#"
[[plugin]]
name = "validate-order"
path = "{validate}"
[plugin.config.schema]
type = "object"
required = ["id", "total"]
properties = {{ id = {{ type = "string" }}, total = {{ type = "number", minimum = 0 }} }}

[[plugin]]
name = "drop-test-orders"
path = "{filter}"
config = {{ conditions = [{{ field = "test", exists = false }}] }}

[[plugin]]
name = "redact-pii"
path = "{redact}"
config = {{ fields = ["customer.phone"] }}

[[plugin]]
name = "route-by-region"
path = "{route}"
config = {{ header = "region", prefix = "orders.", fallback = "orders.unrouted" }}

[[pipeline]]
topics = "orders.incoming"
stages = ["validate-order", "drop-test-orders", "redact-pii", "route-by-region"]
"#,
        validate = dist("validate_json_schema.wasm"),
        filter = dist("filter_json.wasm"),
        redact = dist("redact_pii.wasm"),
        route = dist("route_by_header.wasm"),
    )
}

#[tokio::test]
async fn the_order_pipeline_validates_drops_redacts_and_routes() -> anyhow::Result<()> {
    let broker = TestBroker::start_with(with_plugins(&order_pipeline())).await?;
    let client = broker.client().await?;
    let mut eu = client.subscribe("orders.eu", StartPosition::Latest).await?;
    let ack = client
        .publish_batch(vec![
            Message::new(
                "orders.incoming",
                r#"{"id":"o-1","total":42,"customer":{"email":"ann@example.com","phone":"+44 20 7946 0000"}}"#,
            )
            .header("region", "eu"),
            Message::new("orders.incoming", r#"{"id":"o-2","total":-1}"#).header("region", "eu"),
            Message::new("orders.incoming", r#"{"id":"o-3","total":5,"test":true}"#).header("region", "eu"),
            Message::new("orders.incoming", r#"{"id":"o-4","total":7}"#),
            Message::new("orders.incoming", "not json"),
        ])
        .await?;
    let MessageOutcome::Stored(places) = &ack.outcomes[0] else {
        panic!("valid order not stored: {:?}", ack.outcomes[0]);
    };
    assert_eq!(
        (places[0].topic.as_str(), places[0].offset),
        ("orders.eu", 0)
    );
    match &ack.outcomes[1] {
        MessageOutcome::Rejected(reason) => assert!(reason.contains("/total"), "{reason}"),
        other => panic!("invalid order: {other:?}"),
    }
    assert_eq!(ack.outcomes[2], MessageOutcome::Dropped);
    let MessageOutcome::Stored(places) = &ack.outcomes[3] else {
        panic!("order without region: {:?}", ack.outcomes[3]);
    };
    assert_eq!(places[0].topic, "orders.unrouted");
    assert!(matches!(&ack.outcomes[4], MessageOutcome::Rejected(r) if r.contains("JSON")));

    // The stored order is redacted; nothing stays on the incoming topic.
    let got = collect(&mut eu, 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    let doc: serde_json::Value = serde_json::from_slice(&got[0].payload)?;
    assert_eq!(doc["customer"]["email"], "[redacted]");
    assert_eq!(doc["customer"]["phone"], "[redacted]");
    assert_eq!(doc["id"], "o-1");
    assert!(got[0]
        .headers
        .iter()
        .any(|(n, v)| n == "sluice-redacted" && v == "2"));
    assert!(client.topic_info("orders.incoming").await.is_err());

    // The single-message API reports a rejection as an error with a code.
    let err = client
        .publish_message(Message::new("orders.incoming", r#"{"total": 1}"#))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Rejected), "{err}");
    assert!(
        err.to_string().contains("\"id\" is a required property"),
        "{err}"
    );

    // Status shows every plugin with its calls.
    let status = client.list_plugins().await?;
    let names: Vec<&str> = status.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "drop-test-orders",
            "redact-pii",
            "route-by-region",
            "validate-order"
        ]
    );
    let validate = status.iter().find(|p| p.name == "validate-order").unwrap();
    assert_eq!(
        (validate.calls, validate.messages, validate.errors),
        (2, 6, 0)
    );
    assert_eq!(validate.hash.len(), 12);
    Ok(())
}

fn hostile_pipelines() -> String {
    let hostile = dist("test_hostile.wasm");
    let route = dist("route_by_header.wasm");
    format!(
        r#"
[[plugin]]
name = "loops"
path = "{hostile}"
config = {{ mode = "loop" }}
timeout = "50ms"

[[plugin]]
name = "hoards"
path = "{hostile}"
config = {{ mode = "oom" }}
memory_bytes = 16777216

[[plugin]]
name = "traps"
path = "{hostile}"
config = {{ mode = "trap" }}

[[plugin]]
name = "miscounts"
path = "{hostile}"
config = {{ mode = "wrong-count" }}

[[plugin]]
name = "router"
path = "{route}"
config = {{ header = "region", prefix = "good." }}

[[pipeline]]
topics = "bad.loop"
stages = ["loops"]
on_error = "dead-letter"

[[pipeline]]
topics = "bad.oom"
stages = ["hoards"]
on_error = "reject"

[[pipeline]]
topics = "bad.trap"
stages = ["traps"]
on_error = "drop"

[[pipeline]]
topics = "bad.count"
stages = ["miscounts"]
on_error = "pass"

[[pipeline]]
topics = "good.in"
stages = ["router"]
"#
    )
}

#[tokio::test]
async fn misbehaving_plugins_affect_only_their_batch() -> anyhow::Result<()> {
    let broker = TestBroker::start_with(with_plugins(&hostile_pipelines())).await?;
    let client = broker.client().await?;
    let mut good = client.subscribe("good.>", StartPosition::Latest).await?;
    let good_one = |n: u32| Message::new("good.in", format!("ok {n}")).header("region", "eu");
    let mut sent_good = 0;

    for round in 0..2 {
        // An endless loop is cut at its deadline and dead-lettered.
        match client
            .publish_message(Message::new("bad.loop", "spin"))
            .await
        {
            Err(sluice_client::ClientError::NotStored(MessageOutcome::DeadLettered {
                reason,
                at,
            })) => {
                assert!(reason.contains("timed out"), "{reason}");
                assert_eq!(at.topic, "dlq.bad.loop");
            }
            other => panic!("round {round}: loop plugin gave {other:?}"),
        }
        client.publish_message(good_one(sent_good)).await?;
        sent_good += 1;

        // A memory bomb hits its cap; on_error = reject.
        let err = client
            .publish_message(Message::new("bad.oom", "hoard"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::Rejected), "{err}");
        assert!(err.to_string().contains("out of memory"), "{err}");

        // A trap drops the batch (on_error = drop).
        let ack = client
            .publish_batch(vec![Message::new("bad.trap", "x")])
            .await?;
        assert_eq!(ack.outcomes, vec![MessageOutcome::Dropped]);

        // A wrong number of outcomes skips the stage (on_error = pass).
        let stored = client.publish("bad.count", "through").await?;
        assert_eq!(stored.topic, "bad.count");

        client.publish_message(good_one(sent_good)).await?;
        sent_good += 1;
    }

    // The well-behaved pipeline kept publishing and delivering throughout.
    let got = collect(&mut good, sent_good as usize, Duration::from_secs(5)).await;
    let payloads: Vec<String> = got
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    assert_eq!(
        payloads,
        (0..sent_good)
            .map(|n| format!("ok {n}"))
            .collect::<Vec<_>>()
    );
    assert!(got.iter().all(|m| m.topic == "good.eu"));

    // The dead letters carry the reason and the stage.
    let dead = fetch_all(&client, "dlq.bad.loop", StartPosition::Earliest).await?;
    assert_eq!(dead.len(), 2);
    let header = |name: &str| {
        dead[0]
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("sluice-dlq-stage").as_deref(), Some("loops"));
    assert_eq!(header("sluice-dlq-topic").as_deref(), Some("bad.loop"));
    assert!(header("sluice-dlq-reason")
        .unwrap_or_default()
        .contains("timed out"));
    assert_eq!(dead[0].payload.as_ref(), b"spin");
    assert_eq!(
        client
            .fetch("bad.count", StartPosition::Earliest, 10)
            .await?
            .messages
            .len(),
        2
    );

    // Each failure is counted and the last one shown.
    let status = client.list_plugins().await?;
    for (name, error) in [
        ("loops", "timed out"),
        ("hoards", "out of memory"),
        ("traps", "trapped"),
        ("miscounts", "outcomes for 1 messages"),
    ] {
        let p = status.iter().find(|p| p.name == name).unwrap();
        assert_eq!(p.errors, 2, "{name}: {p:?}");
        assert!(
            p.last_error.as_deref().unwrap_or_default().contains(error),
            "{name}: {p:?}"
        );
    }
    let router = status.iter().find(|p| p.name == "router").unwrap();
    assert_eq!(router.errors, 0);
    Ok(())
}

async fn start_error(toml: String) -> String {
    match TestBroker::start_with(with_plugins(&toml)).await {
        Ok(_) => panic!("the broker started with {toml}"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn bad_plugins_stop_start_up_with_a_clear_error() -> anyhow::Result<()> {
    let hostile = dist("test_hostile.wasm");
    let err = start_error(format!(
        "[[plugin]]\nname = \"p\"\npath = \"{hostile}\"\nconfig = {{ mode = \"fail-init\" }}\n"
    ))
    .await;
    assert!(
        err.contains("init refused its config") && err.contains("refusing to start"),
        "{err}"
    );

    let err = start_error(format!(
        "[[plugin]]\nname = \"p\"\npath = \"{hostile}\"\nconfig = {{ mode = \"dance\" }}\n"
    ))
    .await;
    assert!(err.contains("unknown variant `dance`"), "{err}");

    let dir = tempfile::tempdir()?;
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm but not really")?;
    let err = start_error(format!(
        "[[plugin]]\nname = \"p\"\npath = \"{}\"\n",
        garbage.display()
    ))
    .await;
    assert!(err.contains("not a valid WebAssembly component"), "{err}");

    let err =
        start_error("[[plugin]]\nname = \"p\"\npath = \"/nonexistent/p.wasm\"\n".into()).await;
    assert!(err.contains("cannot read /nonexistent/p.wasm"), "{err}");
    Ok(())
}

fn plugin_test(file: &str, input: &Path, config: &str) -> anyhow::Result<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-under-test"))
        .args([
            "plugin",
            "test",
            file,
            "--config",
            config,
            "--topic",
            "orders.incoming",
            "--input",
        ])
        .arg(input)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

#[test]
fn sluice_plugin_test_shows_each_outcome() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let input: PathBuf = dir.path().join("messages.jsonl");
    std::fs::write(
        &input,
        concat!(
            r#"{"payload": {"id": "o-1", "total": 3, "email": "a@b.io"}, "headers": {"region": "eu"}}"#,
            "\n",
            r#"{"payload": {"total": -2}}"#,
            "\n",
            "plain text line\n",
        ),
    )?;
    let out = plugin_test(
        &dist("route_by_header.wasm"),
        &input,
        r#"{"header": "region", "prefix": "orders."}"#,
    )?;
    assert_eq!(out, "0: route -> orders.eu\n1: pass\n2: pass\n");
    let out = plugin_test(
        &dist("filter_json.wasm"),
        &input,
        r#"{"conditions": [{"field": "total", "gt": 0}]}"#,
    )?;
    assert_eq!(out, "0: pass\n1: drop\n2: drop\n");
    let out = plugin_test(&dist("redact_pii.wasm"), &input, "{}")?;
    assert!(out.starts_with("0: replace -> {"), "{out}");
    assert!(
        out.contains("[redacted]") && out.contains("1: pass\n2: pass\n"),
        "{out}"
    );
    let out = plugin_test(
        &dist("validate_json_schema.wasm"),
        &input,
        r#"{"schema": {"type": "object", "required": ["id"]}}"#,
    )?;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0: pass");
    assert!(
        lines[1].starts_with("1: reject: schema validation failed at /"),
        "{out}"
    );
    assert!(lines[2].starts_with("2: reject:"), "{out}");
    // A config the plugin refuses is a clear error.
    let err = plugin_test(&dist("route_by_header.wasm"), &input, "{}").unwrap_err();
    assert!(err.to_string().contains("missing field `header`"), "{err}");
    Ok(())
}

#[tokio::test]
async fn a_delivery_side_filter_changes_what_one_subscriber_sees() -> anyhow::Result<()> {
    let toml = format!(
        "[[plugin]]\nname = \"big-orders\"\npath = \"{}\"\nconfig = {{ conditions = [{{ field = \"total\", gt = 100 }}] }}\n\n[[plugin]]\nname = \"redact\"\npath = \"{}\"\n",
        dist("filter_json.wasm"),
        dist("redact_pii.wasm")
    );
    let broker = TestBroker::start_with(with_plugins(&toml)).await?;
    let client = broker.client().await?;
    let mut all = client
        .subscribe("shop.orders", StartPosition::Earliest)
        .await?;
    let mut big = client
        .subscribe_with(
            "shop.orders",
            StartPosition::Earliest,
            Some(sluice_client::DeliveryPlugin {
                name: "big-orders".into(),
                config: None,
            }),
        )
        .await?;
    // Its own instance with another config: only orders over 500.
    let mut huge = client
        .subscribe_with(
            "shop.orders",
            StartPosition::Earliest,
            Some(sluice_client::DeliveryPlugin {
                name: "big-orders".into(),
                config: Some(r#"{"conditions": [{"field": "total", "gt": 500}]}"#.into()),
            }),
        )
        .await?;
    let mut redacted = client
        .subscribe_with(
            "shop.orders",
            StartPosition::Earliest,
            Some(sluice_client::DeliveryPlugin {
                name: "redact".into(),
                config: None,
            }),
        )
        .await?;
    for total in [50, 150, 900, 20] {
        client
            .publish(
                "shop.orders",
                format!(r#"{{"total": {total}, "email": "x@y.io"}}"#),
            )
            .await?;
    }
    let totals = |ms: &[sluice_client::Delivered]| -> Vec<u64> {
        ms.iter()
            .map(|m| {
                serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap()["total"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    let got_all = collect(&mut all, 4, Duration::from_secs(5)).await;
    assert_eq!(totals(&got_all), vec![50, 150, 900, 20]);
    let got_big = collect(&mut big, 2, Duration::from_secs(5)).await;
    assert_eq!(totals(&got_big), vec![150, 900]);
    assert_eq!((got_big[0].offset, got_big[1].offset), (1, 2));
    let got_huge = collect(&mut huge, 1, Duration::from_secs(5)).await;
    assert_eq!(totals(&got_huge), vec![900]);
    let got_redacted = collect(&mut redacted, 4, Duration::from_secs(5)).await;
    assert!(got_redacted
        .iter()
        .all(|m| String::from_utf8_lossy(&m.payload).contains("[redacted]")));
    // What is stored is unchanged.
    assert!(String::from_utf8_lossy(&got_all[0].payload).contains("x@y.io"));

    // Unknown plugin, or a config the plugin refuses: clear errors.
    let err = client
        .subscribe_with(
            "shop.orders",
            StartPosition::Latest,
            Some(sluice_client::DeliveryPlugin {
                name: "nope".into(),
                config: None,
            }),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no plugin named \"nope\""),
        "{err}"
    );
    let err = client
        .subscribe_with(
            "shop.orders",
            StartPosition::Latest,
            Some(sluice_client::DeliveryPlugin {
                name: "big-orders".into(),
                config: Some("{}".into()),
            }),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("missing field `conditions`"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn a_delivery_side_plugin_on_a_consumer_group() -> anyhow::Result<()> {
    let toml = format!(
        "[[plugin]]\nname = \"big-orders\"\npath = \"{}\"\nconfig = {{ conditions = [{{ field = \"total\", gt = 100 }}] }}\n\n[[plugin]]\nname = \"redact\"\npath = \"{}\"\n\n[[plugin]]\nname = \"broken\"\npath = \"{}\"\nconfig = {{ mode = \"trap\" }}\n",
        dist("filter_json.wasm"),
        dist("redact_pii.wasm"),
        dist("test_hostile.wasm"),
    );
    let broker = TestBroker::start_with(with_plugins(&toml)).await?;
    let client = broker.client().await?;
    for total in [50, 150, 900, 20] {
        client
            .publish(
                "shop.orders",
                format!(r#"{{"total": {total}, "email": "x@y.io"}}"#),
            )
            .await?;
    }
    let total_of = |d: &sluice_client::Delivery| -> u64 {
        serde_json::from_slice::<serde_json::Value>(&d.payload).unwrap()["total"]
            .as_u64()
            .unwrap()
    };

    // A filtering member: sees only the big orders; the others are acked
    // for it, so nothing stays pending once it acked what it saw.
    let mut big = client
        .consume(
            "shop.orders",
            "billing",
            sluice_client::ConsumeOptions::default().plugin("big-orders", None),
        )
        .await?;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let d = sluice_tests::bounded("a filtered group delivery", big.recv())
            .await
            .expect("consumer open")?;
        seen.push((d.offset, total_of(&d)));
        d.ack().await?;
    }
    assert_eq!(seen, vec![(1, 150), (2, 900)]);
    let settled = sluice_tests::wait_until(
        "the group to settle all four",
        Duration::from_secs(10),
        || async {
            let info = client
                .group_info("billing")
                .await
                .map_err(|e| e.to_string())?;
            match info.topics.first() {
                Some(t) if t.ack_floor == 4 && t.pending == 0 => Ok(info),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert_eq!(settled.redeliveries, 0);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), big.recv())
            .await
            .is_err(),
        "nothing more is delivered"
    );

    // A transforming member: every order, redacted; acks settle the stored offsets.
    let mut redacted = client
        .consume(
            "shop.orders",
            "audit",
            sluice_client::ConsumeOptions::default().plugin("redact", None),
        )
        .await?;
    for offset in 0..4 {
        let d = sluice_tests::bounded("a redacted group delivery", redacted.recv())
            .await
            .expect("consumer open")?;
        assert_eq!(d.offset, offset);
        assert!(String::from_utf8_lossy(&d.payload).contains("[redacted]"));
        d.ack().await?;
    }

    // A plugin that fails: its deliveries are nacked, retried after the
    // backoff and dead-lettered at max_deliver, never lost or spun on.
    let _broken = client
        .consume(
            "shop.orders",
            "broken",
            sluice_client::ConsumeOptions::default()
                .plugin("broken", None)
                .max_deliver(2)
                .backoff([Duration::from_millis(50)]),
        )
        .await?;
    let dead = sluice_tests::wait_until(
        "the failing plugin's deliveries to be dead-lettered",
        Duration::from_secs(15),
        || async {
            match fetch_all(&client, "dlq.shop.orders", StartPosition::Earliest).await {
                Ok(m) if m.len() == 4 => Ok(m),
                Ok(m) => Err(format!("{} dead letters", m.len())),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await;
    assert!(dead.iter().all(|m| m
        .headers
        .iter()
        .any(|(n, v)| n == "sluice-dlq-group" && v == "broken")));
    let info = client.group_info("broken").await?;
    assert_eq!(info.dead_lettered, 4);
    assert_eq!(info.redeliveries, 4);

    // What is stored is unchanged, and a bad plugin name is a clear error.
    let stored = fetch_all(&client, "shop.orders", StartPosition::Earliest).await?;
    assert!(String::from_utf8_lossy(&stored[0].payload).contains("x@y.io"));
    let err = client
        .consume(
            "shop.orders",
            "billing",
            sluice_client::ConsumeOptions::default().plugin("nope", None),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no plugin named \"nope\""),
        "{err}"
    );
    Ok(())
}
