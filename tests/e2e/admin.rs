//! Topic administration: create, list, info, delete, auto-creation.

use sluice_client::{ErrorCode, RetentionSpec, StartPosition};
use sluice_tests::{fetch_all, now_ms, summary, TestBroker};

#[tokio::test]
async fn create_list_info_and_delete_topics() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    assert!(client.list_topics().await?.is_empty());

    let retention = RetentionSpec {
        max_age_ms: Some(3_600_000),
        max_bytes: None,
        max_messages: Some(1_000),
    };
    let created = client
        .create_topic("admin.a", Some(retention), Some(8192))
        .await?;
    assert_eq!(created.name, "admin.a");
    assert_eq!(
        (created.start_offset, created.next_offset, created.messages),
        (0, 0, 0)
    );
    assert_eq!(created.retention, retention);
    assert_eq!(created.segment_bytes, 8192);
    assert_eq!(created.oldest_timestamp_ms, None);

    let err = client
        .create_topic("admin.a", None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TopicExists), "{err}");
    assert!(err.to_string().contains("admin.a"), "{err}");
    let err = client
        .create_topic("admin.bad-size", None, Some(10))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidArgument), "{err}");
    assert!(err.to_string().contains("segment_bytes"), "{err}");

    let default = client.create_topic("admin.b", None, None).await?;
    assert_eq!(default.retention, RetentionSpec::default());
    assert_eq!(default.segment_bytes, broker.config().storage.segment_bytes);

    let before = now_ms();
    for i in 0..3 {
        client.publish("admin.a", format!("a{i}")).await?;
    }
    client.publish("admin.c", "auto-created").await?;

    let names: Vec<_> = client
        .list_topics()
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, vec!["admin.a", "admin.b", "admin.c"]);

    let info = client.topic_info("admin.a").await?;
    assert_eq!(
        (info.start_offset, info.next_offset, info.messages),
        (0, 3, 3)
    );
    assert_eq!(info.segments, 1);
    assert!(info.bytes > 3 * 2, "{} bytes on disk", info.bytes);
    let oldest = info.oldest_timestamp_ms.expect("oldest timestamp");
    let newest = info.newest_timestamp_ms.expect("newest timestamp");
    assert!(
        before <= oldest && oldest <= newest && newest <= now_ms(),
        "{info:?}"
    );
    assert_eq!((info.retention, info.segment_bytes), (retention, 8192));
    let listed = client
        .list_topics()
        .await?
        .into_iter()
        .find(|t| t.name == "admin.a")
        .unwrap();
    assert_eq!(listed, info);

    client.delete_topic("admin.a").await?;
    let err = client.topic_info("admin.a").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TopicNotFound), "{err}");
    assert!(err.to_string().contains("admin.a"), "{err}");
    let err = client
        .fetch("admin.a", StartPosition::Earliest, 10)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TopicNotFound), "{err}");
    let err = client.delete_topic("admin.a").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TopicNotFound), "{err}");
    let names: Vec<_> = client
        .list_topics()
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, vec!["admin.b", "admin.c"]);
    assert!(!broker.data_dir().join("topics").join("admin.a").exists());

    // Publishing again auto-creates it, fresh, with the default settings.
    let stored = client.publish("admin.a", "reborn").await?;
    assert_eq!(stored.offset, 0);
    let info = client.topic_info("admin.a").await?;
    assert_eq!((info.start_offset, info.next_offset), (0, 1));
    assert_eq!(info.retention, RetentionSpec::default());
    assert_eq!(
        summary(&fetch_all(&client, "admin.a", StartPosition::Earliest).await?),
        vec![("admin.a".to_owned(), 0, "reborn".to_owned())]
    );

    // Topic settings survive a restart.
    let mut broker = broker;
    client.close().await;
    broker.restart().await?;
    let client = broker.client().await?;
    let names: Vec<_> = client
        .list_topics()
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, vec!["admin.a", "admin.b", "admin.c"]);
    Ok(())
}

#[tokio::test]
async fn a_deleted_topic_ends_nothing_else_and_subscribers_see_the_new_one() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    for i in 0..5 {
        client.publish("del.x", format!("old{i}")).await?;
    }
    client.publish("del.y", "keep").await?;
    client.delete_topic("del.x").await?;
    let stored = client.publish("del.x", "new0").await?;
    assert_eq!(stored.offset, 0);
    let mut sub = client.subscribe("del.*", StartPosition::Earliest).await?;
    let got = sluice_tests::collect(&mut sub, 2, std::time::Duration::from_secs(10)).await;
    let mut got = summary(&got);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("del.x".to_owned(), 0, "new0".to_owned()),
            ("del.y".to_owned(), 0, "keep".to_owned())
        ]
    );
    Ok(())
}

#[tokio::test]
async fn without_auto_create_publishing_to_an_unknown_topic_fails() -> anyhow::Result<()> {
    let broker = TestBroker::start_with(|c| c.topics.auto_create = false).await?;
    let client = broker.client().await?;
    let err = client.publish("manual.t", "x").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TopicNotFound), "{err}");
    assert!(err.to_string().contains("manual.t"), "{err}");
    assert!(client.list_topics().await?.is_empty(), "nothing created");

    client.create_topic("manual.t", None, None).await?;
    assert_eq!(client.publish("manual.t", "x").await?.offset, 0);
    // A batch naming an unknown topic stores nothing, not even for the known one.
    let err = client
        .publish_batch(vec![
            sluice_client::Message::new("manual.t", "y"),
            sluice_client::Message::new("manual.unknown", "z"),
        ])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TopicNotFound), "{err}");
    assert_eq!(client.topic_info("manual.t").await?.next_offset, 1);
    Ok(())
}

#[tokio::test]
async fn a_replaying_subscription_sees_a_deleted_and_recreated_topic() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    for i in 0..5 {
        client.publish("again.x", format!("old{i}")).await?;
    }
    let mut sub = client.subscribe("again.*", StartPosition::Earliest).await?;
    let old = sluice_tests::collect(&mut sub, 5, std::time::Duration::from_secs(10)).await;
    assert_eq!(sluice_tests::offsets(&old), vec![0, 1, 2, 3, 4]);

    client.delete_topic("again.x").await?;
    for i in 0..3 {
        assert_eq!(
            client.publish("again.x", format!("new{i}")).await?.offset,
            i
        );
    }
    // A marker on another matching topic: whatever comes before it is what
    // the subscriber was given of the new topic.
    client.publish("again.marker", "marker").await?;
    let got = sluice_tests::collect_until(&mut sub, std::time::Duration::from_secs(10), |m| {
        m.topic == "again.marker"
    })
    .await;
    assert_eq!(
        summary(&got),
        vec![
            ("again.x".to_owned(), 0, "new0".to_owned()),
            ("again.x".to_owned(), 1, "new1".to_owned()),
            ("again.x".to_owned(), 2, "new2".to_owned()),
            ("again.marker".to_owned(), 0, "marker".to_owned()),
        ],
        "the subscriber must get the recreated topic's messages"
    );
    Ok(())
}
