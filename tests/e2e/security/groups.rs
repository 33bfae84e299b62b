//! Consumer groups are a right of their own: joining a group or settling in
//! it needs the group's name in the principal's `groups` list, on top of
//! read rights on what it consumes; and a member needs publish rights on
//! the dead-letter topic its group writes its nacks and rejects to.

use sluice_client::{ConsumeOptions, ErrorCode};
use sluice_proto::{
    ClientFrame, Hello, RequestBody, ServerFrame, Settle, SettleAction, PROTOCOL_VERSION,
};
use sluice_tests::{bounded, RawClient, RawControl, TestBroker};

use super::{
    connect, principals_toml, sample, scrape, with_config, ADMIN_TOKEN, AUDITOR_TOKEN,
    ORDERS_TOKEN, STEADY_TOKEN,
};

/// A raw control stream authenticated with `token`.
async fn raw_control(broker: &TestBroker, token: &str) -> anyhow::Result<(RawClient, RawControl)> {
    let raw = RawClient::connect(broker.addr(), broker.cert_path()).await?;
    let mut control = raw.open_control().await?;
    control
        .send_frame(&ClientFrame::Hello(Hello {
            version: PROTOCOL_VERSION,
            token: Some(token.into()),
            client_name: "sluice-e2e-raw".into(),
            features: Vec::new(),
        }))
        .await?;
    match control.next().await? {
        Some(ServerFrame::Welcome(_)) => Ok((raw, control)),
        other => anyhow::bail!("expected Welcome, got {other:?}"),
    }
}

/// The code a raw request is refused with.
async fn refusal(control: &mut RawControl, id: u64, body: RequestBody) -> Option<ErrorCode> {
    control.send_request(id, body).await.expect("request sent");
    match control.next().await.expect("a frame") {
        Some(ServerFrame::Response(r)) if r.id == id => r.result.err()?.error_code(),
        other => panic!("expected the answer to {id}, got {other:?}"),
    }
}

#[tokio::test]
async fn joining_or_settling_in_a_group_needs_the_group_right() -> anyhow::Result<()> {
    let broker = TestBroker::start_with(with_config(&principals_toml(""))).await?;
    let orders = connect(&broker, Some(ORDERS_TOKEN)).await?;
    let auditor = connect(&broker, Some(AUDITOR_TOKEN)).await?;
    let steady = connect(&broker, Some(STEADY_TOKEN)).await?;
    orders.publish("orders.eu", "o-1").await?;
    let mut fulfil = orders
        .consume("orders.eu", "orders.fulfil", ConsumeOptions::default())
        .await?;
    let held = bounded("the delivery", fulfil.recv())
        .await
        .expect("a delivery")?;

    // Read rights on the topic do not make the auditor a member of the
    // orders team's group: it cannot take its deliveries.
    let err = auditor
        .consume("orders.eu", "orders.fulfil", ConsumeOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("auditor") && text.contains("orders.fulfil") && text.contains("group"),
        "{text}"
    );
    // Nor settle in it.
    let (_raw, mut control) = raw_control(&broker, AUDITOR_TOKEN).await?;
    let settle = |consumer| {
        RequestBody::Settle(Settle {
            group: "orders.fulfil".into(),
            topic: "orders.eu".into(),
            offset: 0,
            action: SettleAction::Nack { delay_ms: Some(0) },
            consumer,
            attempt: Some(1),
        })
    };
    assert_eq!(
        refusal(&mut control, 1, settle(None)).await,
        Some(ErrorCode::Forbidden)
    );
    // Its own groups it may join, on what it may read.
    let mut audit = auditor
        .consume("orders.eu", "audit.orders", ConsumeOptions::default())
        .await?;
    let copy = bounded("the audit copy", audit.recv())
        .await
        .expect("a delivery")?;
    assert_eq!(copy.payload, b"o-1"[..]);
    copy.ack().await?;

    // A principal without any group right joins none, even on its own topic.
    steady.publish("steady", "s-1").await?;
    let err = steady
        .consume("steady", "steady", ConsumeOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");

    // Another connection of the orders team, with every right, still
    // cannot settle what the first one holds: it is not its delivery.
    let (_raw2, mut control2) = raw_control(&broker, ORDERS_TOKEN).await?;
    assert_eq!(
        refusal(&mut control2, 1, settle(Some(1))).await,
        Some(ErrorCode::StaleSettle)
    );
    // The holder settles it; nothing else touched it.
    held.ack().await?;
    let admin = connect(&broker, Some(ADMIN_TOKEN)).await?;
    let info = admin.group_info("orders.fulfil").await?;
    assert_eq!(
        (
            info.members.len(),
            info.redeliveries,
            info.topics[0].pending
        ),
        (1, 0, 0),
        "{info:?}"
    );

    let metrics = scrape(&broker).await;
    assert!(
        sample(
            &metrics,
            "sluice_permission_denials_total{action=\"group\"}"
        ) >= 3.0,
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn joining_a_group_that_dead_letters_where_the_member_may_not_write_is_refused(
) -> anyhow::Result<()> {
    let broker = TestBroker::start_with(with_config(&principals_toml(""))).await?;
    let admin = connect(&broker, Some(ADMIN_TOKEN)).await?;
    let orders = connect(&broker, Some(ORDERS_TOKEN)).await?;
    admin.publish("orders.eu", "o-1").await?;
    // The admin creates the group, dead-lettering into billing.
    let _first = admin
        .consume(
            "orders.eu",
            "orders.shared",
            ConsumeOptions::default().dead_letter_topic("billing.poison"),
        )
        .await?;

    // A member's rejects would write to billing.poison: orders may not, so
    // it may not join, whatever dead-letter topic its own request names.
    for options in [
        ConsumeOptions::default(),
        ConsumeOptions::default().dead_letter_topic("orders.poison"),
    ] {
        let err = orders
            .consume("orders.eu", "orders.shared", options)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("billing.poison") && text.contains("orders.shared"),
            "{text}"
        );
    }
    let info = admin.group_info("orders.shared").await?;
    assert_eq!(info.members.len(), 1, "the refused never joined: {info:?}");
    assert_eq!(
        info.options.dead_letter_topic.as_deref(),
        Some("billing.poison")
    );

    // A group dead-lettering inside the team's topics takes it. (The
    // admin's member takes nothing, so the message is the new member's.)
    let _owned = admin
        .consume(
            "orders.eu",
            "orders.owned",
            ConsumeOptions::default()
                .dead_letter_topic("orders.poison")
                .limit(0),
        )
        .await?;
    let mut member = orders
        .consume("orders.eu", "orders.owned", ConsumeOptions::default())
        .await?;
    let delivery = bounded("a delivery", member.recv())
        .await
        .expect("a delivery")?;
    assert_eq!(delivery.payload, b"o-1"[..]);
    delivery.ack().await?;

    let metrics = scrape(&broker).await;
    assert!(
        sample(
            &metrics,
            "sluice_permission_denials_total{action=\"publish\"}"
        ) >= 2.0,
        "{metrics}"
    );
    Ok(())
}
