//! Delivery-side plugins: a filter or a transformation chosen by one
//! subscriber or one group member changes what it sees, not what is stored
//! nor what the others see; a failing one dead-letters, never loses.

use std::time::Duration;

use sluice_client::StartPosition;
use sluice_tests::{collect, fetch_all, TestBroker};

use super::{dist, with_plugins};

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
