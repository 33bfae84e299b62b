//! Time-to-live: counted from the due time; an expired message is skipped
//! by live subscriptions and groups, dead-lettered (reason `expired`) by
//! groups of topics that ask for it, and shown marked by replays; a
//! topic's default is given to messages without their own.

use std::time::{Duration, SystemTime};

use sluice_client::{
    ConsumeOptions, CreateTopic, Message, StartPosition, EXPIRED_HEADER, TTL_HEADER,
};
use sluice_tests::{bounded, collect, fetch_all, TestBroker};

use super::{header, payloads, LIMIT};

/// A message due ten seconds ago with a five-second TTL: expired when
/// stored (the TTL counts from the due time).
fn expired(topic: &str, payload: &str) -> Message {
    Message::new(topic, payload.to_owned())
        .deliver_at(SystemTime::now() - Duration::from_secs(10))
        .ttl(Duration::from_secs(5))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_messages_are_skipped_live_dead_lettered_when_asked_and_marked_in_replay(
) -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    let created = client
        .create_topic_with(CreateTopic {
            name: "ttl.jobs".into(),
            retention: None,
            segment_bytes: None,
            dedup_window_ms: None,
            default_ttl_ms: None,
            dead_letter_expired: Some(true),
        })
        .await?;
    assert!(created.dead_letter_expired);
    let mut live = client.subscribe("ttl.>", StartPosition::Latest).await?;

    for topic in ["ttl.jobs", "ttl.quiet"] {
        let gone = client.publish_message(expired(topic, "gone")).await?;
        assert_eq!(
            (gone.offset, gone.deliver_at_ms),
            (0, None),
            "stored at once"
        );
        client.publish_message(Message::new(topic, "plain")).await?;
        client
            .publish_message(Message::new(topic, "fresh").ttl(Duration::from_secs(600)))
            .await?;
    }
    // Live: the expired ones are not delivered.
    let seen = collect(&mut live, 4, LIMIT).await;
    assert_eq!(payloads(&seen), ["plain", "fresh", "plain", "fresh"]);

    // Groups: skipped; dead-lettered where the topic says so.
    for topic in ["ttl.jobs", "ttl.quiet"] {
        let mut group = client
            .consume(
                topic,
                format!("g-{}", topic.replace('.', "-")),
                ConsumeOptions::default(),
            )
            .await?;
        let mut got = Vec::new();
        for _ in 0..2 {
            let d = bounded("a delivery", group.recv()).await.expect("open")?;
            d.ack().await?;
            got.push(d.message.clone());
        }
        assert_eq!(payloads(&got), ["plain", "fresh"], "{topic}");
    }
    let letters = sluice_tests::wait_until("the expired message's dead letter", LIMIT, || async {
        match fetch_all(&client, "dlq.ttl.jobs", StartPosition::Earliest).await {
            Ok(letters) if !letters.is_empty() => Ok(letters),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(payloads(&letters), ["gone"]);
    assert_eq!(header(&letters[0], "sluice-dlq-reason"), Some("expired"));
    assert_eq!(header(&letters[0], "sluice-dlq-offset"), Some("0"));
    // A dead letter does not expire with its message.
    assert_eq!(header(&letters[0], TTL_HEADER), None);
    assert!(
        client.topic_info("dlq.ttl.quiet").await.is_err(),
        "a topic without dead_letter_expired dead-letters nothing"
    );

    // Replay shows what is stored, the expired one marked.
    let mut replay = client
        .subscribe("ttl.quiet", StartPosition::Earliest)
        .await?;
    let replayed = collect(&mut replay, 3, LIMIT).await;
    assert_eq!(payloads(&replayed), ["gone", "plain", "fresh"]);
    let marks: Vec<Option<&str>> = replayed.iter().map(|m| header(m, EXPIRED_HEADER)).collect();
    assert_eq!(marks, [Some("true"), None, None]);
    let fetched = fetch_all(&client, "ttl.jobs", StartPosition::Earliest).await?;
    assert_eq!(header(&fetched[0], EXPIRED_HEADER), Some("true"));
    assert_eq!(header(&fetched[1], EXPIRED_HEADER), None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topics_default_ttl_goes_with_messages_without_their_own() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    let info = client
        .create_topic_with(CreateTopic {
            name: "short".into(),
            retention: None,
            segment_bytes: None,
            dedup_window_ms: None,
            default_ttl_ms: Some(60_000),
            dead_letter_expired: None,
        })
        .await?;
    assert_eq!(
        (info.default_ttl_ms, info.dead_letter_expired),
        (Some(60_000), false)
    );
    client
        .publish_message(Message::new("short", "default"))
        .await?;
    client
        .publish_message(Message::new("short", "own").ttl(Duration::from_millis(1500)))
        .await?;
    // A delayed one gets it too, when it is stored in the schedule.
    client
        .publish_message(Message::new("short", "later").delay(Duration::from_millis(300)))
        .await?;
    let all = sluice_tests::wait_until("the delayed one stored", LIMIT, || async {
        match fetch_all(&client, "short", StartPosition::Earliest).await {
            Ok(all) if all.len() == 3 => Ok(all),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let ttls: Vec<Option<&str>> = all.iter().map(|m| header(m, TTL_HEADER)).collect();
    assert_eq!(ttls, [Some("60000"), Some("1500"), Some("60000")]);
    Ok(())
}
