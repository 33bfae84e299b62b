//! Limits: connections per principal and broker-wide, subscriptions and
//! consumers per connection, messages per batch; one client hits them while
//! a well-behaved one keeps working.

use std::time::Duration;

use sluice_client::{ConsumeOptions, ErrorCode, Message, StartPosition};
use sluice_tests::{fetch_all, wait_until, Steady, TestBroker};

use super::{
    connect, principals_toml, refused, sample, scrape, with_config, ADMIN_TOKEN, ORDERS_TOKEN,
    STEADY_TOKEN,
};

#[tokio::test]
async fn connections_past_the_per_principal_limit_are_refused_while_others_work(
) -> anyhow::Result<()> {
    let toml = principals_toml("") + "\n[limits]\nmax_connections_per_principal = 3\n";
    let broker = TestBroker::start_with(with_config(&toml)).await?;
    let steady = Steady::start(connect(&broker, Some(STEADY_TOKEN)).await?).await?;

    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(&broker, Some(ORDERS_TOKEN)).await?);
    }
    for _ in 0..3 {
        let message = refused(
            connect(&broker, Some(ORDERS_TOKEN)).await,
            ErrorCode::LimitExceeded,
        );
        assert!(
            message.contains("max_connections_per_principal") && message.contains("orders"),
            "{message}"
        );
    }
    // Another principal is not affected; one closed connection frees a slot.
    connect(&broker, Some(ADMIN_TOKEN)).await?.ping().await?;
    let closing = held.pop().expect("three held");
    closing.close().await;
    drop(closing);
    let again = wait_until(
        "a freed connection slot",
        Duration::from_secs(5),
        || async { connect(&broker, Some(ORDERS_TOKEN)).await },
    )
    .await;
    again.publish("orders.eu", "after").await?;
    for client in &held {
        client.ping().await?;
    }
    assert!(steady.finish().await? > 0);
    Ok(())
}

#[tokio::test]
async fn subscriptions_consumers_and_batches_past_their_limits_are_refused_per_client(
) -> anyhow::Result<()> {
    let toml = principals_toml("")
        + "\n[limits]\nmax_subscriptions_per_connection = 3\nmax_consumers_per_connection = 2\nmax_batch_messages = 100\n";
    let broker = TestBroker::start_with(with_config(&toml)).await?;
    let steady = Steady::start(connect(&broker, Some(STEADY_TOKEN)).await?).await?;
    let greedy = connect(&broker, Some(ORDERS_TOKEN)).await?;

    let mut subs = Vec::new();
    for i in 0..3 {
        subs.push(
            greedy
                .subscribe(format!("orders.s{i}"), StartPosition::Latest)
                .await?,
        );
    }
    let err = greedy
        .subscribe("orders.s3", StartPosition::Latest)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::LimitExceeded), "{err}");
    assert!(
        err.to_string().contains("max_subscriptions_per_connection"),
        "{err}"
    );

    // Group members count on their own.
    greedy.publish("orders.jobs", "job").await?;
    let mut members = Vec::new();
    for i in 0..2 {
        members.push(
            greedy
                .consume(
                    "orders.jobs",
                    format!("orders.g{i}"),
                    ConsumeOptions::default(),
                )
                .await?,
        );
    }
    let err = greedy
        .consume("orders.jobs", "orders.g2", ConsumeOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::LimitExceeded), "{err}");
    assert!(
        err.to_string().contains("max_consumers_per_connection"),
        "{err}"
    );

    // A batch over the limit is refused whole; one at the limit is stored.
    let batch = |n: usize| {
        (0..n)
            .map(|i| Message::new("orders.batch", format!("b{i}")))
            .collect::<Vec<_>>()
    };
    let err = greedy.publish_batch(batch(101)).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::LimitExceeded), "{err}");
    assert!(err.to_string().contains("max_batch_messages"), "{err}");
    greedy.publish_batch(batch(100)).await?;
    let admin = connect(&broker, Some(ADMIN_TOKEN)).await?;
    let stored = fetch_all(&admin, "orders.batch", StartPosition::Earliest).await?;
    assert_eq!(stored.len(), 100);

    // The limits are per connection: another connection of the same
    // principal subscribes freely, and freeing a slot makes room again.
    let other = connect(&broker, Some(ORDERS_TOKEN)).await?;
    other.subscribe("orders.s9", StartPosition::Latest).await?;
    drop(subs.remove(0));
    wait_until("a freed subscription slot", Duration::from_secs(5), || {
        greedy.subscribe("orders.s3", StartPosition::Latest)
    })
    .await;

    assert!(steady.finish().await? > 0);
    let metrics = scrape(&broker).await;
    assert!(
        sample(
            &metrics,
            "sluice_limits_hit_total{limit=\"max_batch_messages\"}"
        ) >= 1.0,
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn connections_past_the_broker_wide_limit_are_refused_while_others_work() -> anyhow::Result<()>
{
    let broker = TestBroker::start_with(|c| c.limits.max_connections = 3).await?;
    let steady = Steady::start(connect(&broker, None).await?).await?;
    let held = [connect(&broker, None).await?, connect(&broker, None).await?];
    for _ in 0..3 {
        let message = refused(connect(&broker, None).await, ErrorCode::LimitExceeded);
        assert!(message.contains("limits.max_connections"), "{message}");
    }
    for client in &held {
        client.ping().await?;
    }
    held[0].close().await;
    let again = wait_until(
        "a freed connection slot",
        Duration::from_secs(5),
        || async { connect(&broker, None).await },
    )
    .await;
    again.ping().await?;
    assert!(steady.finish().await? > 0);
    let metrics = scrape(&broker).await;
    assert!(
        sample(
            &metrics,
            "sluice_limits_hit_total{limit=\"max_connections\"}"
        ) >= 3.0,
        "{metrics}"
    );
    Ok(())
}
