//! One publish with a `traceparent`, through two stages to a group
//! member: the collector gets connected spans, and the member gets the
//! trace with the broker's delivery span as its parent.

use std::time::Duration;

use sluice_client::{ConsumeOptions, Message, StartPosition};
use sluice_tests::{bounded, wait_until, Collector, ReceivedSpan, TestBroker};

use super::{configure, pipeline};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PUBLISHER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traced_publish_yields_connected_spans_to_the_delivery() -> anyhow::Result<()> {
    let collector = Collector::start().await?;
    let endpoint = collector.endpoint();
    let broker = TestBroker::start_with(configure(&pipeline(), move |t| {
        t.endpoint = Some(endpoint);
        t.service_name = "sluice-test".into();
    }))
    .await?;
    let client = broker.client().await?;
    client.create_topic("orders.eu", None, None).await?;
    let options = ConsumeOptions::default().start(StartPosition::Earliest);
    let mut billing = client.consume("orders.eu", "billing", options).await?;
    client
        .publish_batch(vec![Message::new("orders.in", r#"{"id":"o-1","total":5}"#)
            .header("region", "eu")
            .trace_context(
                format!("00-{TRACE}-{PUBLISHER_SPAN}-01"),
                Some("vendor=1".into()),
            )])
        .await?;
    // An untraced message makes no span (sampling is off by default).
    client
        .publish_batch(vec![
            Message::new("orders.in", r#"{"id":"o-2","total":1}"#).header("region", "eu")
        ])
        .await?;

    let delivery = bounded("the delivery", billing.recv())
        .await
        .expect("open")?;
    delivery.ack().await?;
    let parent = delivery.traceparent().expect("the trace is delivered");
    let parts: Vec<&str> = parent.split('-').collect();
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", TRACE, "01"),
        "{parent}"
    );
    assert_ne!(
        parts[2], PUBLISHER_SPAN,
        "the parent is the broker's delivery span"
    );
    assert_eq!(delivery.header("tracestate"), Some("vendor=1"));
    let untraced = bounded("the second delivery", billing.recv())
        .await
        .expect("open")?;
    assert_eq!(untraced.traceparent(), None);

    let spans: Vec<ReceivedSpan> =
        wait_until("five spans of the trace", Duration::from_secs(15), || {
            let spans: Vec<ReceivedSpan> = collector
                .spans()
                .into_iter()
                .filter(|s| s.trace_id == TRACE)
                .collect();
            async move {
                if spans.len() >= 5 {
                    Ok(spans)
                } else {
                    Err(spans)
                }
            }
        })
        .await;
    let named =
        |name: &str| -> Vec<&ReceivedSpan> { spans.iter().filter(|s| s.name == name).collect() };
    let [receive] = named("receive")[..] else {
        panic!("one receive span: {spans:#?}")
    };
    assert_eq!(receive.parent_id, PUBLISHER_SPAN);
    assert_eq!(receive.service, "sluice-test");
    assert_eq!(
        receive.attribute("messaging.destination.name"),
        Some("orders.in")
    );
    assert_eq!(receive.attribute("sluice.outcome"), Some("routed"));
    let stages = named("stage");
    let outcomes: Vec<(Option<&str>, Option<&str>)> = stages
        .iter()
        .map(|s| (s.attribute("sluice.plugin"), s.attribute("sluice.outcome")))
        .collect();
    assert_eq!(
        outcomes,
        [
            (Some("validate-order"), Some("pass")),
            (Some("route-by-region"), Some("route"))
        ]
    );
    assert!(stages.iter().all(|s| s.parent_id == receive.span_id));
    assert!(
        stages[0].end_ns <= stages[1].start_ns,
        "the stages run in order"
    );
    let [store] = named("store")[..] else {
        panic!("one store span: {spans:#?}")
    };
    assert_eq!(store.parent_id, receive.span_id);
    assert_eq!(
        store.attribute("messaging.destination.name"),
        Some("orders.eu")
    );
    assert_eq!(store.attribute("sluice.offset"), Some("0"));
    let [deliver] = named("deliver")[..] else {
        panic!("one deliver span: {spans:#?}")
    };
    assert_eq!(deliver.parent_id, store.span_id);
    assert_eq!(
        deliver.span_id, parts[2],
        "the member's parent is the deliver span"
    );
    assert_eq!(
        deliver.attribute("messaging.consumer.group.name"),
        Some("billing")
    );
    assert_eq!(deliver.attribute("sluice.attempt"), Some("1"));
    assert_eq!(
        collector.spans().len(),
        spans.len(),
        "only the traced message has spans"
    );
    Ok(())
}
