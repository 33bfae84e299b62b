//! Plugins that misbehave: one that loops, hoards memory, traps or
//! miscounts affects only its own batch, by its `on_error`; a plugin that
//! cannot start stops the broker's start-up with a clear error.

use std::time::Duration;

use sluice_client::{ErrorCode, Message, MessageOutcome, StartPosition};
use sluice_tests::{collect, fetch_all, TestBroker};

use super::{dist, with_plugins};

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
