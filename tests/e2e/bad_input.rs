//! Bad input gets a clear error (code and message) or a clean refusal, while
//! a well-behaved client on the same broker keeps publishing and
//! subscribing, and nothing stored is lost.

use std::time::Duration;

use serde::Serialize;
use sluice_client::{ClientError, ErrorCode, Message, StartPosition};
use sluice_proto::{
    Publish, PublishMessage, RequestBody, Response, ResponseBody, ServerFrame, PROTOCOL_VERSION,
};
use sluice_tests::{bounded, fetch_all, RawClient, RawControl, Steady, TestBroker};

/// Expects the broker to answer with an Error frame of `code`, then to close
/// the connection with that code; returns the message.
async fn expect_refusal(raw: &RawClient, control: &mut RawControl, code: ErrorCode) -> String {
    match control.next().await {
        Ok(Some(ServerFrame::Error(body))) => {
            assert_eq!(body.error_code(), Some(code), "error frame {body}");
            assert!(!body.message.is_empty(), "error frame without a message");
        }
        other => panic!("expected an Error frame with {code}, got {other:?}"),
    }
    let (close_code, reason) = raw.close_reason().await.expect("an application close");
    assert_eq!(
        close_code,
        u64::from(code.as_u16()),
        "close code ({reason})"
    );
    assert!(!reason.is_empty(), "close without a reason");
    reason
}

/// Deterministic noise.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

#[tokio::test]
async fn random_bytes_on_the_control_stream_are_refused() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let steady = Steady::start(broker.client().await?).await?;

    // Instead of Hello.
    for seed in [1u64, 0xDEAD_BEEF, 42] {
        let raw = RawClient::connect(broker.addr(), broker.cert_path()).await?;
        let mut control = raw.open_control().await?;
        let _ = control.write(&noise(4096, seed)).await;
        control.finish();
        match control.next().await {
            Ok(Some(ServerFrame::Error(body))) => {
                assert!(
                    matches!(
                        body.error_code(),
                        Some(ErrorCode::MalformedFrame | ErrorCode::FrameTooLarge)
                    ),
                    "{body}"
                );
                assert!(!body.message.is_empty());
            }
            other => panic!("expected an Error frame, got {other:?}"),
        }
        let (code, reason) = raw.close_reason().await.expect("an application close");
        assert!(code == 1 || code == 2, "close code {code}: {reason}");
    }

    // After Hello: a well-framed body that is not MessagePack.
    let raw = RawClient::connect(broker.addr(), broker.cert_path()).await?;
    let mut control = raw.open_control().await?;
    control.handshake().await?;
    let mut frame = vec![0, 0, 0, 64];
    frame.extend(std::iter::repeat_n(0xC1u8, 64)); // 0xC1 is never valid MessagePack
    control.write(&frame).await?;
    expect_refusal(&raw, &mut control, ErrorCode::MalformedFrame).await;

    steady.finish().await.map(drop)
}

#[tokio::test]
async fn a_frame_over_the_limit_closes_with_frame_too_large() -> anyhow::Result<()> {
    let broker = TestBroker::start_with(|c| c.limits.max_frame_bytes = 64 * 1024).await?;
    let steady = Steady::start(broker.client().await?).await?;

    let raw = RawClient::connect(broker.addr(), broker.cert_path()).await?;
    let mut control = raw.open_control().await?;
    let welcome = control.handshake().await?;
    assert_eq!(welcome.max_frame_bytes, 64 * 1024);
    let mut bytes = (welcome.max_frame_bytes + 1).to_be_bytes().to_vec();
    bytes.extend(vec![0u8; 1024]);
    let _ = control.write(&bytes).await;
    let reason = expect_refusal(&raw, &mut control, ErrorCode::FrameTooLarge).await;
    assert!(
        reason.contains("65537") && reason.contains("65536"),
        "{reason}"
    );

    // Before Hello too.
    let raw = RawClient::connect(broker.addr(), broker.cert_path()).await?;
    let mut control = raw.open_control().await?;
    let _ = control.write(&u32::MAX.to_be_bytes()).await;
    expect_refusal(&raw, &mut control, ErrorCode::FrameTooLarge).await;

    // The real client refuses to send a message over the broker's limit and
    // stays usable.
    let client = broker.client().await?;
    let err = client
        .publish("big", vec![0u8; 70 * 1024])
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Codec(_)), "{err}");
    client.ping().await?;
    let err = client.topic_info("big").await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(ErrorCode::TopicNotFound),
        "nothing stored: {err}"
    );

    steady.finish().await.map(drop)
}

/// A request kind from some future protocol version.
#[derive(Serialize)]
enum FutureClientFrame {
    Request(FutureRequest),
}

#[derive(Serialize)]
struct FutureRequest {
    id: u64,
    body: FutureBody,
}

#[derive(Serialize)]
enum FutureBody {
    Teleport { topic: String, to: String },
}

#[tokio::test]
async fn an_unknown_request_gets_unknown_request_and_the_connection_stays_usable(
) -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let steady = Steady::start(broker.client().await?).await?;

    let raw = RawClient::connect(broker.addr(), broker.cert_path()).await?;
    let mut control = raw.open_control().await?;
    control.handshake().await?;
    control
        .send_frame(&FutureClientFrame::Request(FutureRequest {
            id: 7,
            body: FutureBody::Teleport {
                topic: "steady".into(),
                to: "mars".into(),
            },
        }))
        .await?;
    match control.next().await? {
        Some(ServerFrame::Response(Response {
            id: 7,
            result: Err(body),
        })) => {
            assert_eq!(body.error_code(), Some(ErrorCode::UnknownRequest), "{body}");
            assert!(!body.message.is_empty());
        }
        other => panic!("expected an UnknownRequest response to request 7, got {other:?}"),
    }
    control.send_request(8, RequestBody::Ping).await?;
    match control.next().await? {
        Some(ServerFrame::Response(Response {
            id: 8,
            result: Ok(ResponseBody::Pong),
        })) => {}
        other => panic!("expected Pong for request 8, got {other:?}"),
    }
    control
        .send_request(
            9,
            RequestBody::Publish(Publish {
                messages: vec![PublishMessage {
                    topic: "raw.after".into(),
                    payload: "still here".into(),
                    ..PublishMessage::default()
                }],
            }),
        )
        .await?;
    match control.next().await? {
        Some(ServerFrame::Response(Response {
            id: 9,
            result: Ok(ResponseBody::Published(ack)),
        })) => assert_eq!(ack.outcomes.len(), 1),
        other => panic!("expected a publish ack for request 9, got {other:?}"),
    }

    // Requests the broker understands but refuses keep the connection usable too.
    control
        .send_request(10, RequestBody::Publish(Publish { messages: vec![] }))
        .await?;
    let subscribe = |id| sluice_proto::Subscribe {
        subscription: id,
        pattern: "steady".into(),
        from: StartPosition::Latest,
        plugin: None,
        resume: Default::default(),
    };
    control
        .send_request(11, RequestBody::Subscribe(subscribe(1)))
        .await?;
    control
        .send_request(12, RequestBody::Subscribe(subscribe(1)))
        .await?;
    control
        .send_request(13, RequestBody::Unsubscribe { subscription: 99 })
        .await?;
    control.send_request(14, RequestBody::Ping).await?;
    let mut answers = std::collections::BTreeMap::new();
    while answers.len() < 5 {
        match control.next().await? {
            Some(ServerFrame::Response(Response { id, result })) => {
                answers.insert(id, result.map_err(|e| e.error_code()));
            }
            other => panic!("expected responses, got {other:?}"),
        }
    }
    assert_eq!(answers[&10], Err(Some(ErrorCode::InvalidArgument)));
    assert_eq!(
        answers[&11],
        Ok(ResponseBody::Subscribed { subscription: 1 })
    );
    assert_eq!(answers[&12], Err(Some(ErrorCode::SubscriptionExists)));
    assert_eq!(answers[&13], Err(Some(ErrorCode::UnknownSubscription)));
    assert_eq!(answers[&14], Ok(ResponseBody::Pong));
    steady.finish().await.map(drop)
}

#[tokio::test]
async fn a_request_before_hello_gets_handshake_required() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let steady = Steady::start(broker.client().await?).await?;

    let raw = RawClient::connect(broker.addr(), broker.cert_path()).await?;
    let mut control = raw.open_control().await?;
    control
        .send_request(
            1,
            RequestBody::Publish(Publish {
                messages: vec![PublishMessage {
                    topic: "early".into(),
                    payload: "too soon".into(),
                    ..PublishMessage::default()
                }],
            }),
        )
        .await?;
    let reason = expect_refusal(&raw, &mut control, ErrorCode::HandshakeRequired).await;
    assert!(reason.contains("Hello"), "{reason}");
    let err = steady.client.topic_info("early").await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(ErrorCode::TopicNotFound),
        "nothing stored: {err}"
    );
    steady.finish().await.map(drop)
}

#[tokio::test]
async fn a_hello_with_another_protocol_version_gets_unsupported_version() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let steady = Steady::start(broker.client().await?).await?;
    let raw = RawClient::connect(broker.addr(), broker.cert_path()).await?;
    let mut control = raw.open_control().await?;
    control.send_hello(PROTOCOL_VERSION + 41).await?;
    let reason = expect_refusal(&raw, &mut control, ErrorCode::UnsupportedVersion).await;
    assert!(
        reason.contains(&(PROTOCOL_VERSION + 41).to_string()),
        "{reason}"
    );
    steady.finish().await.map(drop)
}

#[tokio::test]
async fn a_second_hello_is_a_protocol_violation() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let raw = RawClient::connect(broker.addr(), broker.cert_path()).await?;
    let mut control = raw.open_control().await?;
    control.handshake().await?;
    control.send_hello(PROTOCOL_VERSION).await?;
    expect_refusal(&raw, &mut control, ErrorCode::ProtocolViolation).await;
    Ok(())
}

#[tokio::test]
async fn invalid_names_are_refused_and_store_nothing() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let steady = Steady::start(broker.client().await?).await?;
    let client = broker.client().await?;

    for bad in ["bad topic", "a..b", "orders.*", "orders.>", "", ".x", "é"] {
        let err = client.publish(bad, "x").await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::InvalidTopic), "{bad:?}: {err}");
        assert!(
            err.to_string().contains("invalid topic name"),
            "{bad:?}: {err}"
        );
        let err = client.create_topic(bad, None, None).await.unwrap_err();
        assert_eq!(
            err.code(),
            Some(ErrorCode::InvalidTopic),
            "create {bad:?}: {err}"
        );
    }
    let long = "a".repeat(256);
    let err = client.publish(long, "x").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidTopic), "{err}");

    // One bad name in a batch refuses the whole batch.
    let err = client
        .publish_batch(vec![
            Message::new("good.one", "x"),
            Message::new("bad one", "y"),
        ])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidTopic), "{err}");
    assert!(
        err.to_string().contains("bad one"),
        "the message names the topic: {err}"
    );

    for bad in ["a.>.b", "a*", "", "a..b"] {
        let err = client
            .subscribe(bad, StartPosition::Latest)
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Some(ErrorCode::InvalidPattern),
            "{bad:?}: {err}"
        );
    }

    client.ping().await?;
    let topics: Vec<_> = client
        .list_topics()
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(topics, vec!["steady".to_owned()], "nothing else stored");
    let on_disk: Vec<_> = std::fs::read_dir(broker.data_dir().join("topics"))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    assert_eq!(on_disk, vec!["steady".to_owned()]);
    steady.finish().await.map(drop)
}

#[tokio::test]
async fn a_wrong_alpn_fails_the_handshake() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let steady = Steady::start(broker.client().await?).await?;

    for alpn in [&b"sluice/2"[..], b"h3"] {
        let result =
            RawClient::connect_with_alpn(broker.addr(), broker.cert_path(), &[alpn]).await?;
        match result {
            Err(e) => assert!(
                matches!(
                    e,
                    quinn::ConnectionError::TransportError(_)
                        | quinn::ConnectionError::ConnectionClosed(_)
                ),
                "{alpn:?}: {e:?}"
            ),
            Ok(_) => panic!(
                "the handshake with ALPN {:?} succeeded",
                String::from_utf8_lossy(alpn)
            ),
        }
    }
    // No ALPN at all: refused by TLS, or closed right away with a reason.
    match RawClient::connect_with_alpn(broker.addr(), broker.cert_path(), &[]).await? {
        Err(_) => {}
        Ok(raw) => {
            let (code, reason) = raw.close_reason().await.expect("an application close");
            assert_eq!(
                code,
                u64::from(ErrorCode::ProtocolViolation.as_u16()),
                "{reason}"
            );
            assert!(reason.contains("ALPN"), "{reason}");
        }
    }
    // The broker is unaffected.
    broker.client().await?.ping().await?;
    steady.finish().await.map(drop)
}

#[tokio::test]
async fn a_client_that_never_says_hello_is_closed_at_the_handshake_timeout() -> anyhow::Result<()> {
    let broker =
        TestBroker::start_with(|c| c.limits.handshake_timeout = Duration::from_millis(300)).await?;
    let steady = Steady::start(broker.client().await?).await?;

    // Opens no stream at all.
    let silent = RawClient::connect(broker.addr(), broker.cert_path()).await?;
    // Sends half a Hello and stops.
    let partial = RawClient::connect(broker.addr(), broker.cert_path()).await?;
    let mut control = partial.open_control().await?;
    control.write(&[0, 0]).await?;

    for raw in [&silent, &partial] {
        let (code, reason) = raw.close_reason().await.expect("an application close");
        assert_eq!(
            code,
            u64::from(ErrorCode::HandshakeRequired.as_u16()),
            "{reason}"
        );
        assert!(reason.contains("handshake_timeout"), "{reason}");
    }
    // The well-behaved client connected before them, so its own handshake
    // timeout ran out before theirs did: it is not affected, now or for a
    // while after.
    if let Ok(reason) = tokio::time::timeout(
        Duration::from_millis(400),
        steady.client.connection().closed(),
    )
    .await
    {
        anyhow::bail!("the handshake timeout closed a client that said hello: {reason}");
    }
    steady.client.ping().await?;
    steady.finish().await.map(drop)
}

#[tokio::test]
async fn compact_publishes_store_runs_in_order_and_refuse_a_bad_topic_whole() -> anyhow::Result<()>
{
    use sluice_proto::{CompactMessage, PublishCompact, PublishRun};
    let broker = TestBroker::start().await?;
    let raw = RawClient::connect(broker.addr(), broker.cert_path()).await?;
    let mut control = raw.open_control().await?;
    control.handshake().await?;
    let run = |topic: &str, bodies: &[&str]| PublishRun {
        topic: topic.into(),
        messages: bodies
            .iter()
            .map(|b| {
                CompactMessage(
                    None,
                    vec![("h".into(), "v".into())],
                    b.to_string().into(),
                    None,
                )
            })
            .collect(),
    };
    // Two runs of one topic around another: one topic's messages keep
    // publish order; the ack has one outcome per message, by index.
    control
        .send_request(
            1,
            RequestBody::PublishCompact(PublishCompact {
                runs: vec![
                    run("c.a", &["a0", "a1"]),
                    run("c.b", &["b0"]),
                    run("c.a", &["a2"]),
                    run("c.b", &[]),
                ],
            }),
        )
        .await?;
    let ack = match bounded("a compact ack", control.next()).await? {
        Some(ServerFrame::Response(Response {
            id: 1,
            result: Ok(ResponseBody::PublishedCompact(ack)),
        })) => ack.into_ack(4).map_err(anyhow::Error::msg)?,
        other => panic!("expected a compact ack, got {other:?}"),
    };
    let places: Vec<(String, u64)> = ack
        .outcomes
        .iter()
        .map(|o| match o {
            sluice_client::MessageOutcome::Stored(at) => (at[0].topic.clone(), at[0].offset),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        places,
        [
            ("c.a".to_owned(), 0),
            ("c.a".to_owned(), 1),
            ("c.b".to_owned(), 0),
            ("c.a".to_owned(), 2)
        ]
    );
    let client = broker.client().await?;
    let stored = fetch_all(&client, "c.a", StartPosition::Earliest).await?;
    let bodies: Vec<String> = stored
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    assert_eq!(bodies, ["a0", "a1", "a2"]);
    assert_eq!(stored[0].headers, vec![("h".to_owned(), "v".to_owned())]);

    // One bad topic refuses the whole publish; an empty one is refused too.
    control
        .send_request(
            2,
            RequestBody::PublishCompact(PublishCompact {
                runs: vec![run("c.a", &["a3"]), run("bad topic!", &["x"])],
            }),
        )
        .await?;
    control
        .send_request(
            3,
            RequestBody::PublishCompact(PublishCompact { runs: vec![] }),
        )
        .await?;
    let mut answers = std::collections::BTreeMap::new();
    while answers.len() < 2 {
        match bounded("an answer", control.next()).await? {
            Some(ServerFrame::Response(Response { id, result })) => {
                answers.insert(id, result.err().and_then(|e| e.error_code()));
            }
            other => panic!("expected responses, got {other:?}"),
        }
    }
    assert_eq!(answers[&2], Some(ErrorCode::InvalidTopic));
    assert_eq!(answers[&3], Some(ErrorCode::InvalidArgument));
    assert_eq!(
        fetch_all(&client, "c.a", StartPosition::Earliest)
            .await?
            .len(),
        3
    );
    Ok(())
}
