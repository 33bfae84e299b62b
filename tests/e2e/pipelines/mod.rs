//! Plugins in the publish and delivery paths: real components from
//! plugins/dist (built by `cargo xtask plugins`), a real broker, the real
//! client.
//!
//! Here: the shared helpers and the order pipeline (a schema check, a
//! filter, a redaction and a router in one publish path, with the outcome
//! of each message in the ack), the tour of the feature. By theme:
//!
//! - `hostile`: plugins that loop, hoard memory, trap or miscount affect
//!   only their own batch, and bad plugins stop start-up with a clear error;
//! - `delivery_side`: a plugin chosen by one subscriber or one group member
//!   changes what it sees and nothing else;
//! - `plugin_test_cli`: `sluice plugin test` shows each outcome.

mod delivery_side;
mod hostile;
mod plugin_test_cli;

use std::time::Duration;

use sluice_client::{ErrorCode, Message, MessageOutcome, StartPosition};
use sluice_tests::{collect, TestBroker};

/// The path of a component in plugins/dist, as text for a config file.
fn dist(file: &str) -> String {
    sluice_tests::plugin_dist(file).display().to_string()
}

/// Applies the `[[plugin]]` and `[[pipeline]]` tables of `toml`.
pub(crate) fn with_plugins(toml: &str) -> impl FnOnce(&mut sluice::Config) {
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
