//! Settle batches: acks sent together are settled in batch requests, each
//! item with its own result. A raw batch that names no consumer settles
//! only what the connection's own consumers hold.

use sluice_client::{ConsumeOptions, ErrorCode};
use sluice_tests::{TestBroker, WAIT};

use super::recv_n;

#[tokio::test]
async fn pipelined_acks_are_settled_in_batches_each_with_its_own_result() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    for i in 0..200 {
        client.publish("batched", format!("m{i}")).await?;
    }
    let mut consumer = client
        .consume(
            "batched",
            "acks",
            ConsumeOptions::default().max_in_flight(200),
        )
        .await?;
    let deliveries = recv_n(&mut consumer, 200, WAIT).await;
    // All at once: the client coalesces them into batch requests. A second
    // ack of the first message fails alone, with its own code.
    let mut settles: Vec<_> = deliveries.iter().map(|d| d.ack()).collect();
    settles.push(deliveries[0].ack());
    let results = futures_util::future::join_all(settles).await;
    let failed: Vec<_> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().err().map(|e| (i, e.code())))
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].1, Some(ErrorCode::UnknownDelivery));
    let info = client.group_info("acks").await?;
    assert_eq!(info.topics[0].ack_floor, 200, "{info:?}");
    assert_eq!(info.topics[0].pending, 0);

    // The raw request: per-item results, a bad item does not fail the rest.
    publish_and_settle_raw(&broker).await
}

async fn publish_and_settle_raw(broker: &TestBroker) -> anyhow::Result<()> {
    use sluice_proto::{
        RequestBody, ResponseBody, ServerFrame, SettleAction, SettleBatch, SettleItem,
    };
    let client = broker.client().await?;
    client.publish("raw.batched", "x").await?;
    let mut consumer = client
        .consume("raw.batched", "raw", ConsumeOptions::default())
        .await?;
    let d = recv_n(&mut consumer, 1, WAIT).await;
    assert_eq!(d[0].offset, 0);
    let raw = sluice_tests::RawClient::connect(broker.addr(), broker.cert_path()).await?;
    let mut control = raw.open_control().await?;
    control.handshake().await?;
    let item = |topic: &str, offset| SettleItem {
        topic: topic.into(),
        offset,
        action: SettleAction::Ack,
        attempt: None,
    };
    control
        .send_request(
            9,
            RequestBody::SettleBatch(SettleBatch {
                group: "raw".into(),
                items: vec![
                    item("raw.batched", 0),
                    item("bad topic!", 0),
                    item("raw.batched", 7),
                ],
                consumer: None,
            }),
        )
        .await?;
    let Some(ServerFrame::Response(response)) =
        sluice_tests::bounded("the batch answer", control.next()).await?
    else {
        anyhow::bail!("no response");
    };
    assert_eq!(response.id, 9);
    let Ok(ResponseBody::SettledBatch { errors }) = response.result else {
        anyhow::bail!("unexpected {:?}", response.result);
    };
    assert_eq!(errors.len(), 3);
    // Held by the client's consumer, not by anything of this connection.
    assert_eq!(
        errors[0].as_ref().and_then(|e| e.error_code()),
        Some(ErrorCode::StaleSettle),
        "{errors:?}"
    );
    assert_eq!(
        errors[1].as_ref().and_then(|e| e.error_code()),
        Some(ErrorCode::InvalidTopic)
    );
    assert_eq!(
        errors[2].as_ref().and_then(|e| e.error_code()),
        Some(ErrorCode::UnknownDelivery)
    );
    // A batch for a group that does not exist fails as a whole.
    control
        .send_request(
            10,
            RequestBody::SettleBatch(SettleBatch {
                group: "nope".into(),
                items: vec![item("raw.batched", 0)],
                consumer: None,
            }),
        )
        .await?;
    let Some(ServerFrame::Response(response)) =
        sluice_tests::bounded("the batch answer", control.next()).await?
    else {
        anyhow::bail!("no response");
    };
    assert_eq!(
        response.result.unwrap_err().error_code(),
        Some(ErrorCode::GroupNotFound)
    );
    // The message is still the consumer's to settle.
    d[0].ack().await?;
    let info = client.group_info("raw").await?;
    assert_eq!(info.topics[0].pending, 0, "{info:?}");
    Ok(())
}
