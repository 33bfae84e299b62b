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

/// Without a `traceparent`, a sampled message gets a trace the broker
/// starts: its stored copy carries the broker's `traceparent`, and the
/// receive span is the root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_starts_a_trace_for_sampled_messages_without_one() -> anyhow::Result<()> {
    let collector = Collector::start().await?;
    let endpoint = collector.endpoint();
    let broker = TestBroker::start_with(move |c| {
        c.telemetry.endpoint = Some(endpoint);
        c.telemetry.sampling = 1.0;
    })
    .await?;
    let client = broker.client().await?;
    let mut sub = client.subscribe("sampled", StartPosition::Earliest).await?;
    client
        .publish_batch(vec![Message::new("sampled", "x")])
        .await?;
    let delivered = bounded("the delivery", sub.recv()).await.expect("open")?;
    let parent = delivered.traceparent().expect("a trace was started");
    let trace = parent.split('-').nth(1).expect("a trace id").to_owned();
    let stored = client
        .fetch("sampled", StartPosition::Earliest, 1)
        .await?
        .messages
        .remove(0);
    let stored_parent = stored
        .traceparent()
        .expect("stored with the broker's context");
    assert!(stored_parent.contains(&trace), "{stored_parent}");

    let spans: Vec<ReceivedSpan> = wait_until("the started trace", Duration::from_secs(15), || {
        let spans: Vec<ReceivedSpan> = collector
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == trace)
            .collect();
        async move {
            if spans.len() >= 3 {
                Ok(spans)
            } else {
                Err(spans)
            }
        }
    })
    .await;
    let receive = spans.iter().find(|s| s.name == "receive").expect("receive");
    assert_eq!(
        receive.parent_id, "",
        "the broker's receive span is the root"
    );
    assert!(stored_parent.contains(&receive.span_id), "{stored_parent}");
    let deliver = spans.iter().find(|s| s.name == "deliver").expect("deliver");
    assert!(parent.contains(&deliver.span_id));
    Ok(())
}

/// A collector that takes connections and never answers: spans pile up to
/// `queue_spans`, the rest are dropped and counted, and publishes go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_past_the_queue_are_dropped_and_counted_without_slowing_publishes(
) -> anyhow::Result<()> {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", silent.local_addr()?);
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let broker = TestBroker::start_with(move |c| {
        c.telemetry.endpoint = Some(endpoint);
        c.telemetry.sampling = 1.0;
        c.telemetry.queue_spans = 8;
        c.telemetry.export_timeout = Duration::from_secs(2);
        c.admin.enabled = true;
    })
    .await?;
    let client = broker.client().await?;
    for i in 0..50 {
        client
            .publish_batch(vec![Message::new("dropped.spans", format!("{i}"))])
            .await?;
    }
    let admin = sluice_tests::Http::new(broker.admin_addr().expect("admin on"));
    let dropped = wait_until(
        "spans counted as dropped",
        Duration::from_secs(10),
        || async {
            let metrics = admin.get("/metrics").await.body;
            let dropped = metrics
                .lines()
                .find_map(|l| l.strip_prefix("sluice_telemetry_spans_dropped_total "))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
            if dropped > 0 {
                Ok(dropped)
            } else {
                Err(metrics)
            }
        },
    )
    .await;
    // 50 messages made 100 spans (receive and store); at most the queue
    // and one export batch were taken.
    assert!(dropped >= 100 - 8 - 8, "{dropped}");
    held.abort();
    Ok(())
}
