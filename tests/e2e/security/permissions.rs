//! Permissions: a principal publishes, subscribes, consumes, fetches and
//! administers only where its allow lists say, and a routing plugin cannot
//! write for it where it may not.

use std::time::Duration;

use sluice_client::{ConsumeOptions, ErrorCode, Message, MessageOutcome, StartPosition};
use sluice_tests::{collect, fetch_all, TestBroker};

use super::{connect, principals_toml, sample, scrape, with_config, ADMIN_TOKEN, ORDERS_TOKEN};

#[tokio::test]
async fn a_principal_may_only_publish_and_subscribe_where_it_is_allowed() -> anyhow::Result<()> {
    let broker = TestBroker::start_with(with_config(&principals_toml(""))).await?;
    let orders = connect(&broker, Some(ORDERS_TOKEN)).await?;
    let admin = connect(&broker, Some(ADMIN_TOKEN)).await?;
    admin.publish("billing.x", "b-0").await?;

    orders.publish("orders.eu", "o-1").await?;
    let mut sub = orders
        .subscribe("orders.>", StartPosition::Earliest)
        .await?;
    assert_eq!(collect(&mut sub, 1, Duration::from_secs(5)).await.len(), 1);

    // Publish: refused, names the topic and the action; a batch with one
    // forbidden topic stores nothing.
    let err = orders.publish("billing.x", "b-1").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("billing.x") && text.contains("publish") && text.contains("orders"),
        "{text}"
    );
    let err = orders
        .publish_batch(vec![
            Message::new("orders.eu", "o-2"),
            Message::new("billing.x", "b-2"),
        ])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");

    // Subscribe, consume, fetch: the pattern must lie inside an allowed one.
    for pattern in ["billing.>", "billing.x", ">", "*.x", "orders"] {
        let err = orders
            .subscribe(pattern, StartPosition::Earliest)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{pattern}: {err}");
        assert!(err.to_string().contains("subscribe"), "{err}");
    }
    let err = orders
        .consume("billing.>", "billing-workers", ConsumeOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
    let err = orders
        .fetch("billing.x", StartPosition::Earliest, 10)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");

    // Admin requests need admin rights.
    let err = orders
        .create_topic("orders.new", None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
    let err = orders.delete_topic("billing.x").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
    let err = orders.list_groups().await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
    let err = orders.list_plugins().await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
    // Topic listings show only what the principal may use.
    let visible: Vec<_> = orders
        .list_topics()
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(visible, ["orders.eu"]);
    let err = orders.topic_info("billing.x").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");

    // The connection stays usable, and billing.x holds only the admin's message.
    orders.ping().await?;
    let billing = fetch_all(&admin, "billing.x", StartPosition::Earliest).await?;
    assert_eq!(billing.len(), 1);
    assert_eq!(billing[0].payload, b"b-0"[..]);
    let eu = fetch_all(&admin, "orders.eu", StartPosition::Earliest).await?;
    assert_eq!(eu.len(), 1, "the refused batch stored nothing");

    let metrics = scrape(&broker).await;
    assert!(
        sample(
            &metrics,
            "sluice_permission_denials_total{action=\"publish\"}"
        ) >= 2.0,
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            "sluice_permission_denials_total{action=\"subscribe\"}"
        ) >= 7.0,
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn a_routing_plugin_cannot_write_where_the_publisher_may_not() -> anyhow::Result<()> {
    let route = sluice_tests::plugin_dist("route_by_header.wasm");
    let toml = format!(
        r#"
{principals}

[[plugin]]
name = "route"
path = "{route}"
config = {{ header = "to", prefix = "billing.", fallback = "orders.unrouted" }}

[[pipeline]]
topics = "orders.in"
stages = ["route"]
"#,
        principals = principals_toml(""),
        route = route.display(),
    );
    let broker = TestBroker::start_with(with_config(&toml)).await?;
    let orders = connect(&broker, Some(ORDERS_TOKEN)).await?;
    let admin = connect(&broker, Some(ADMIN_TOKEN)).await?;

    let ack = orders
        .publish_batch(vec![
            Message::new("orders.in", "to billing").header("to", "x"),
            Message::new("orders.in", "no header"),
        ])
        .await?;
    match &ack.outcomes[0] {
        MessageOutcome::Rejected(reason) => {
            assert!(
                reason.contains("billing.x") && reason.contains("orders"),
                "{reason}"
            )
        }
        other => panic!("routed to billing.x: {other:?}"),
    }
    match &ack.outcomes[1] {
        MessageOutcome::Stored(places) => assert_eq!(places[0].topic, "orders.unrouted"),
        other => panic!("{other:?}"),
    }
    let err = admin.topic_info("billing.x").await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(ErrorCode::TopicNotFound),
        "nothing stored at billing.x: {err}"
    );

    // The same rule routes for a publisher that may write there.
    let ack = admin
        .publish_batch(vec![
            Message::new("orders.in", "to billing").header("to", "x")
        ])
        .await?;
    match &ack.outcomes[0] {
        MessageOutcome::Stored(places) => assert_eq!(places[0].topic, "billing.x"),
        other => panic!("{other:?}"),
    }
    let metrics = scrape(&broker).await;
    assert!(
        sample(
            &metrics,
            "sluice_permission_denials_total{action=\"route\"}"
        ) >= 1.0,
        "{metrics}"
    );
    Ok(())
}

/// A group's own dead-letter topic is a place its creator writes to: it
/// needs publish rights there, like a routed output.
#[tokio::test]
async fn a_group_dead_letter_topic_needs_publish_rights() -> anyhow::Result<()> {
    let broker = TestBroker::start_with(with_config(&principals_toml(""))).await?;
    let orders = connect(&broker, Some(ORDERS_TOKEN)).await?;
    orders.publish("orders.eu", "o-1").await?;
    let elsewhere = ConsumeOptions::default().dead_letter_topic("billing.poison");
    let err = orders
        .consume("orders.>", "orders.fulfil", elsewhere)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
    assert!(err.to_string().contains("billing.poison"), "{err}");
    let inside = ConsumeOptions::default().dead_letter_topic("orders.poison");
    orders.consume("orders.>", "orders.fulfil", inside).await?;
    Ok(())
}
