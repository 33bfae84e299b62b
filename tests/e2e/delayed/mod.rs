//! Delayed delivery on one broker: messages wait in the schedule (stored
//! and acked), come due in due order and never early, to subscribers and
//! groups alike; nobody reads them before, replay included; they keep
//! their schedule across a SIGKILL and fire once; a subscription resuming
//! after a reconnect skips and repeats nothing; a plugin sees and moves the
//! due time; bad scheduling headers are refused. TTL is in `ttl.rs`, the
//! memory bound with a million waiting in `memory.rs`.

mod cli;
mod memory;
mod ttl;

use std::path::Path;
use std::time::{Duration, SystemTime};

use sluice_client::{
    ClientError, ConsumeOptions, Delivered, ErrorCode, Message, MessageOutcome, StartPosition,
    DELIVER_AT_HEADER,
};
use sluice_tests::{
    bounded, collect, fetch_all, free_udp_port, now_ms, offsets, wait_until, ChildBroker,
    TestBroker,
};

/// Long enough for every bounded wait here.
const LIMIT: Duration = Duration::from_secs(20);

pub(crate) fn header<'a>(m: &'a Delivered, name: &str) -> Option<&'a str> {
    m.headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

pub(crate) fn payloads(messages: &[Delivered]) -> Vec<String> {
    messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect()
}

/// `ms` since the Unix epoch in RFC 3339.
pub(crate) fn rfc3339(ms: i64) -> String {
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap());
    humantime::format_rfc3339_millis(at).to_string()
}

/// The due time the broker put on a delivered message.
fn due_of(m: &Delivered) -> i64 {
    let text = header(m, DELIVER_AT_HEADER).expect("a delayed message names its due time");
    let at = humantime::parse_rfc3339(text).expect("RFC 3339");
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Each delayed message was stored in its topic, and received, no earlier
/// than due.
fn assert_not_early(messages: &[Delivered], received_ms: &[i64]) {
    for (m, received) in messages.iter().zip(received_ms) {
        if header(m, DELIVER_AT_HEADER).is_none() {
            continue;
        }
        let due = due_of(m);
        assert!(
            m.timestamp_ms >= due,
            "stored {} before due {due}",
            m.timestamp_ms
        );
        assert!(*received >= due, "received {received} before due {due}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_messages_come_due_in_order_never_early_to_subscribers_and_groups(
) -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    client.create_topic("jobs", None, None).await?;
    let mut live = client.subscribe("jobs", StartPosition::Latest).await?;
    let mut group = client
        .consume("jobs", "workers", ConsumeOptions::default())
        .await?;

    let start = now_ms();
    // Published in this order, due in another; two share a delay and keep
    // their publishing order.
    let plan: [(&str, u64); 4] = [
        ("d3000", 3000),
        ("d2000", 2000),
        ("d2500", 2500),
        ("d2000b", 2000),
    ];
    for (payload, delay) in plan {
        let stored = client
            .publish_message(Message::new("jobs", payload).delay(Duration::from_millis(delay)))
            .await?;
        let due = stored.deliver_at_ms.expect("acked as delayed");
        assert!(
            due >= start + delay as i64,
            "{payload} due {due}, published at {start}"
        );
        assert_eq!(stored.topic, "jobs");
    }
    let at = SystemTime::now() + Duration::from_millis(2700);
    let stored = client
        .publish_message(Message::new("jobs", "at2700").deliver_at(at))
        .await?;
    assert!(stored.deliver_at_ms.is_some());
    let now = client.publish_message(Message::new("jobs", "now")).await?;
    assert_eq!((now.offset, now.deliver_at_ms), (0, None));

    // Stored and waiting: counted, and read by nobody yet, replay included.
    let info = client.topic_info("jobs").await?;
    assert_eq!((info.waiting, info.next_offset), (5, 1), "{info:?}");
    let early = fetch_all(&client, "jobs", StartPosition::Earliest).await?;
    assert_eq!(payloads(&early), ["now"]);

    let expected = ["now", "d2000", "d2000b", "d2500", "at2700", "d3000"];
    let mut received = Vec::new();
    let mut times = Vec::new();
    for _ in 0..expected.len() {
        received.extend(collect(&mut live, 1, LIMIT).await);
        times.push(now_ms());
    }
    assert_eq!(payloads(&received), expected);
    assert_eq!(offsets(&received), [0, 1, 2, 3, 4, 5]);
    assert_not_early(&received, &times);

    let mut consumed = Vec::new();
    for _ in 0..expected.len() {
        let delivery = bounded("a group delivery", group.recv())
            .await
            .expect("the group goes on")?;
        delivery.ack().await?;
        consumed.push(delivery.message.clone());
    }
    assert_eq!(payloads(&consumed), expected);
    assert_eq!(client.topic_info("jobs").await?.waiting, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_messages_survive_a_kill_and_fire_once() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let binary = Path::new(env!("CARGO_BIN_EXE_sluice-under-test"));
    let mut broker = ChildBroker::start(binary, dir.path(), "").await?;
    let client = broker.client().await?;
    // Ten due soon, ten due a few seconds later.
    let mut batch = Vec::new();
    for i in 0..20u64 {
        let delay = if i < 10 { 800 + i * 10 } else { 4000 + i * 10 };
        batch.push(
            Message::new("kept", format!("m{i:02}"))
                .id(format!("id-{i}"))
                .delay(Duration::from_millis(delay)),
        );
    }
    let ack = client.publish_batch(batch).await?;
    assert!(ack
        .outcomes
        .iter()
        .all(|o| matches!(o, MessageOutcome::Stored(p) if p[0].deliver_at_ms.is_some())));
    // The first ten come due; then the broker is killed with the second
    // ten still waiting.
    wait_until("the first ten are due and stored", LIMIT, || async {
        let n = fetch_all(&client, "kept", StartPosition::Earliest)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        if n >= 10 {
            Ok(())
        } else {
            Err(n)
        }
    })
    .await;
    client.close().await;
    broker.kill()?;
    broker.restart().await?;
    let client = broker.client().await?;
    let all = wait_until("all twenty stored", LIMIT, || async {
        let all = fetch_all(&client, "kept", StartPosition::Earliest)
            .await
            .map_err(|e| e.to_string())?;
        if all.len() >= 20 {
            Ok(all)
        } else {
            Err(format!("{} stored", all.len()))
        }
    })
    .await;
    let expected: Vec<String> = (0..20).map(|i| format!("m{i:02}")).collect();
    assert_eq!(payloads(&all), expected, "each once, in due order");
    assert_eq!(offsets(&all), (0..20).collect::<Vec<u64>>());
    let stored_at: Vec<i64> = all.iter().map(|m| m.timestamp_ms).collect();
    assert_not_early(&all, &stored_at);
    assert_eq!(client.topic_info("kept").await?.waiting, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_resuming_after_a_reconnect_skips_and_repeats_nothing() -> anyhow::Result<()>
{
    let port = free_udp_port()?;
    let mut broker = TestBroker::start_with(|c| {
        c.server.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    })
    .await?;
    let client = broker.client().await?;
    let mut sub = client.subscribe("feed", StartPosition::Latest).await?;
    client.publish_message(Message::new("feed", "a")).await?;
    // Published before `b`, due after it: it takes its offset when due.
    let later = client
        .publish_message(Message::new("feed", "later").delay(Duration::from_millis(3000)))
        .await?;
    assert!(later.deliver_at_ms.is_some());
    client.publish_message(Message::new("feed", "b")).await?;
    let first = collect(&mut sub, 2, LIMIT).await;
    assert_eq!(
        (payloads(&first), offsets(&first)),
        (vec!["a".into(), "b".into()], vec![0, 1])
    );

    // The connection is lost; the message comes due while the broker is
    // down or starting, and the subscription resumes after offset 1.
    broker.restart().await?;
    let rest = collect(&mut sub, 1, LIMIT).await;
    assert_eq!(
        (payloads(&rest), offsets(&rest)),
        (vec!["later".into()], vec![2])
    );
    client.publish_message(Message::new("feed", "c")).await?;
    let last = collect(&mut sub, 1, LIMIT).await;
    // Nothing repeated in between: the next one is `c`.
    assert_eq!(
        (payloads(&last), offsets(&last)),
        (vec!["c".into()], vec![3])
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_sees_the_due_time_and_may_move_it() -> anyhow::Result<()> {
    let toml = format!(
        r#"
[[plugin]]
name = "reschedule"
path = "{reschedule}"

[[plugin]]
name = "route-by-region"
path = "{route}"
config = {{ header = "region", prefix = "orders." }}

[[pipeline]]
topics = "in"
stages = ["reschedule", "route-by-region"]
"#,
        reschedule = sluice_tests::plugin_dist("test_reschedule.wasm").display(),
        route = sluice_tests::plugin_dist("route_by_header.wasm").display(),
    );
    let broker = TestBroker::start_with(crate::pipelines::with_plugins(&toml)).await?;
    let client = broker.client().await?;
    let mut eu = client.subscribe("orders.eu", StartPosition::Latest).await?;

    // Delayed and routed: the stage saw its due time.
    let routed = client
        .publish_message(
            Message::new("in", "routed")
                .header("region", "eu")
                .delay(Duration::from_millis(2500)),
        )
        .await?;
    assert_eq!(routed.topic, "orders.eu");
    let due = routed.deliver_at_ms.expect("still delayed");
    // A long delay the stage clears: stored at once.
    let cleared = client
        .publish_message(
            Message::new("in", "cleared")
                .header("region", "eu")
                .header("x-reschedule", "now")
                .delay(Duration::from_secs(3600)),
        )
        .await?;
    assert_eq!(
        (cleared.topic.as_str(), cleared.deliver_at_ms),
        ("orders.eu", None)
    );
    // Not delayed by its publisher, delayed by the stage.
    let target = rfc3339(now_ms() + 3000);
    let moved = client
        .publish_message(
            Message::new("in", "moved")
                .header("region", "eu")
                .header("x-reschedule", target.clone()),
        )
        .await?;
    assert!(moved.deliver_at_ms.is_some(), "{moved:?}");
    // A due time that is not one: dead-lettered, saying why.
    let bad = client
        .publish_batch(vec![Message::new("in", "bad")
            .header("region", "eu")
            .header("x-reschedule", "soon")])
        .await?;
    match &bad.outcomes[0] {
        MessageOutcome::DeadLettered { reason, .. } => {
            assert!(reason.contains("sluice-deliver-at"), "{reason}")
        }
        other => panic!("{other:?}"),
    }

    let got = collect(&mut eu, 3, LIMIT).await;
    assert_eq!(payloads(&got), ["cleared", "routed", "moved"]);
    let seen = header(&got[0], "x-seen-deliver-at").expect("seen");
    assert!(humantime::parse_rfc3339(seen).is_ok(), "{seen}");
    assert_eq!(header(&got[0], DELIVER_AT_HEADER), None);
    assert_eq!(due_of(&got[1]), due);
    assert_eq!(
        header(&got[1], "x-seen-deliver-at"),
        header(&got[1], DELIVER_AT_HEADER)
    );
    assert_eq!(header(&got[2], "x-seen-deliver-at"), Some("none"));
    assert_eq!(header(&got[2], DELIVER_AT_HEADER), Some(target.as_str()));
    assert_not_early(&got[1..], &[now_ms(), now_ms()]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_scheduling_headers_are_refused_and_nothing_is_stored() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    let cases = [
        ("sluice-delay", "30s"),
        ("sluice-deliver-at", "tomorrow"),
        ("sluice-ttl", "-1"),
    ];
    for (name, value) in cases {
        let refused = client
            .publish_message(Message::new("strict", "x").header(name, value))
            .await;
        match refused {
            Err(e @ ClientError::Server(_)) => {
                assert_eq!(e.code(), Some(ErrorCode::InvalidArgument), "{e}");
                assert!(e.to_string().contains(name), "{e}");
            }
            other => panic!("{name}: {value}: {other:?}"),
        }
    }
    // Nothing stored, nothing waiting.
    let info = client.topic_info("strict").await;
    assert!(info.is_err() || info.is_ok_and(|i| i.next_offset == 0 && i.waiting == 0));
    Ok(())
}

/// The segment files of the schedule's log on one machine.
fn schedule_segments(broker: &TestBroker) -> usize {
    let dir = broker.data_dir().join("schedule/topics/delayed");
    std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedules_log_is_trimmed_of_what_fired_and_read_back_after_a_restart(
) -> anyhow::Result<()> {
    let mut broker = TestBroker::start_with(|c| c.storage.segment_bytes = 4096).await?;
    let client = broker.client().await?;
    let payload = "x".repeat(200);
    let batch = (0..100)
        .map(|i| {
            Message::new("trimmed", payload.clone())
                .id(format!("t-{i}"))
                .delay(Duration::from_millis(2000))
        })
        .collect();
    client.publish_batch(batch).await?;
    let grown = schedule_segments(&broker);
    assert!(grown >= 4, "the log rolled: {grown} segments");
    wait_until("all fired", LIMIT, || async {
        let n = fetch_all(&client, "trimmed", StartPosition::Earliest)
            .await
            .map_or(0, |m| m.len());
        if n == 100 {
            Ok(())
        } else {
            Err(n)
        }
    })
    .await;
    // Every sealed segment held only what fired: they go.
    wait_until("the log trimmed", LIMIT, || async {
        match schedule_segments(&broker) {
            n if n <= 1 => Ok(()),
            n => Err(n),
        }
    })
    .await;

    // Read back from what is left: nothing fires again, new ones fire.
    client.close().await;
    broker.restart().await?;
    let client = broker.client().await?;
    client
        .publish_message(Message::new("trimmed", "after").delay(Duration::from_millis(300)))
        .await?;
    let all = wait_until("the new one fired", LIMIT, || async {
        match fetch_all(&client, "trimmed", StartPosition::Earliest).await {
            Ok(all) if all.len() > 100 => Ok(all),
            other => Err(format!("{:?}", other.map(|m| m.len()))),
        }
    })
    .await;
    assert_eq!(all.len(), 101, "nothing fired twice");
    assert_eq!(payloads(&all[100..]), ["after"]);
    assert_eq!(client.topic_info("trimmed").await?.waiting, 0);
    Ok(())
}
