//! `sluice trace` for a delivered and acked message, a rejected one (found
//! by its id: it has no offset) and one a group dead-lettered.

use std::time::Duration;

use serde_json::Value;
use sluice_client::{ConsumeOptions, Message, StartPosition};
use sluice_tests::{bounded, run_command, TestBroker};

use super::{configure, pipeline};

/// Runs `sluice trace ARGS --json` against `broker`: (success, JSON or
/// null, stderr).
async fn trace(broker: &TestBroker, args: &[&str]) -> anyhow::Result<(bool, Value, String)> {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sluice-under-test"));
    command
        .arg("trace")
        .args(args)
        .arg("--json")
        .arg("--server")
        .arg(broker.addr().to_string())
        .arg("--ca")
        .arg(broker.cert_path())
        .env("RUST_LOG", "warn");
    let out = run_command(command, "", Duration::from_secs(20)).await?;
    let json = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
    Ok((out.success, json, out.stderr))
}

#[tokio::test]
async fn sluice_trace_shows_what_became_of_a_delivered_a_rejected_and_a_dead_lettered_message(
) -> anyhow::Result<()> {
    let broker = TestBroker::start_with(configure(&pipeline(), |_| {})).await?;
    let client = broker.client().await?;
    client.create_topic("orders.eu", None, None).await?;
    let options = ConsumeOptions::default()
        .start(StartPosition::Earliest)
        .max_deliver(2)
        .backoff([Duration::from_millis(10)]);
    let mut billing = client.consume("orders.eu", "billing", options).await?;
    let mut dead = client
        .subscribe("dlq.orders.eu", StartPosition::Earliest)
        .await?;

    let order = |id: &str, total: i64| {
        Message::new("orders.in", format!(r#"{{"id":"{id}","total":{total}}}"#))
            .header("region", "eu")
            .id(id)
    };
    client
        .publish_batch(vec![order("o-1", 5), order("o-2", -1), order("o-3", 7)])
        .await?;

    // o-1 (orders.eu@0) is acked; o-3 (orders.eu@1) is nacked until the
    // group gives up on it.
    let mut settled = 0;
    while settled < 3 {
        let delivery = bounded("a delivery", billing.recv()).await.expect("open")?;
        if delivery.offset == 0 {
            delivery.ack().await?;
        } else {
            delivery.nack(None).await?;
        }
        settled += 1;
    }
    bounded("the dead letter", dead.recv())
        .await
        .expect("open")?;

    let (ok, delivered, err) = trace(&broker, &["orders.eu@0"]).await?;
    assert!(ok, "{err}");
    let m = &delivered["messages"][0];
    assert_eq!(m["topic"], "orders.in");
    assert_eq!(m["id"], "o-1");
    assert_eq!(m["principal"], "anonymous");
    assert_eq!(m["outcome"], "routed");
    let stages: Vec<(&str, &str)> = m["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["plugin"].as_str().unwrap(),
                s["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        stages,
        [("validate-order", "pass"), ("route-by-region", "route")]
    );
    assert_eq!(m["stored"][0]["topic"], "orders.eu");
    assert_eq!(m["stored"][0]["offset"], 0);
    assert_eq!(m["deliveries"][0]["group"], "billing");
    assert_eq!(m["deliveries"][0]["attempt"], 1);
    assert_eq!(m["settlements"][0]["action"], "ack");
    assert!(m["dead_letters"].as_array().unwrap().is_empty());

    let (ok, rejected, err) = trace(&broker, &["--id", "o-2"]).await?;
    assert!(ok, "{err}");
    let m = &rejected["messages"][0];
    assert_eq!(m["outcome"], "rejected");
    assert!(m["reason"].as_str().unwrap().contains("/total"), "{m}");
    assert_eq!(m["stages"][0]["outcome"], "reject");
    assert_eq!(
        m["stages"].as_array().unwrap().len(),
        1,
        "the router never saw it"
    );
    assert!(m["stored"].as_array().unwrap().is_empty());

    let (ok, lettered, err) = trace(&broker, &["orders.eu@1"]).await?;
    assert!(ok, "{err}");
    let m = &lettered["messages"][0];
    assert_eq!(m["id"], "o-3");
    let attempts: Vec<u64> = m["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2]);
    assert_eq!(m["settlements"][0]["action"], "nack");
    let letter = &m["dead_letters"][0];
    assert_eq!(letter["group"], "billing");
    assert_eq!(letter["topic"], "dlq.orders.eu");
    assert_eq!(letter["attempt"], 2);

    // What the record does not hold is an error that says so.
    let (ok, _, err) = trace(&broker, &["orders.eu@99"]).await?;
    assert!(!ok);
    assert!(err.contains("no record of orders.eu@99"), "{err}");
    let (ok, _, err) = trace(&broker, &["--trace", "xyz"]).await?;
    assert!(!ok);
    assert!(err.contains("is not a trace id"), "{err}");
    Ok(())
}
