//! Generators: every frame kind with arbitrary contents, valid topic names,
//! and acknowledgements whose offsets often sit at the very end of the
//! range.

use bytes::Bytes;
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use sluice_proto::*;

/// Any string, including multi-byte and control characters.
fn text() -> impl Strategy<Value = String> {
    ".{0,12}"
}

fn blob() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..48).prop_map(Bytes::from)
}

pub(crate) fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,8}"
}

/// A valid topic name: one to five tokens.
pub(crate) fn topic() -> impl Strategy<Value = String> {
    vec(token(), 1..=5).prop_map(|t| t.join("."))
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    vec((text(), text()), 0..4)
}

fn start_position() -> impl Strategy<Value = StartPosition> {
    prop_oneof![
        Just(StartPosition::Earliest),
        Just(StartPosition::Latest),
        any::<u64>().prop_map(StartPosition::Offset),
        any::<i64>().prop_map(StartPosition::Timestamp),
    ]
}

fn error_body() -> impl Strategy<Value = ErrorBody> {
    (any::<u16>(), text()).prop_map(|(code, message)| ErrorBody { code, message })
}

fn publish_message() -> impl Strategy<Value = PublishMessage> {
    (
        topic(),
        option::of(blob()),
        headers(),
        blob(),
        option::of(text()),
    )
        .prop_map(|(topic, key, headers, payload, id)| PublishMessage {
            topic,
            key,
            headers,
            payload,
            id,
        })
}

fn compact_message() -> impl Strategy<Value = CompactMessage> {
    (option::of(blob()), headers(), blob(), option::of(text()))
        .prop_map(|(key, headers, payload, id)| CompactMessage(key, headers, payload, id))
}

fn delivery_plugin() -> impl Strategy<Value = DeliveryPlugin> {
    (text(), option::of(text())).prop_map(|(name, config)| DeliveryPlugin { name, config })
}

fn settle_action() -> impl Strategy<Value = SettleAction> {
    prop_oneof![
        Just(SettleAction::Ack),
        option::of(any::<u64>()).prop_map(|delay_ms| SettleAction::Nack { delay_ms }),
        text().prop_map(|reason| SettleAction::Reject { reason }),
        Just(SettleAction::InProgress),
    ]
}

fn retention() -> impl Strategy<Value = RetentionSpec> {
    (
        option::of(any::<u64>()),
        option::of(any::<u64>()),
        option::of(any::<u64>()),
    )
        .prop_map(|(max_age_ms, max_bytes, max_messages)| RetentionSpec {
            max_age_ms,
            max_bytes,
            max_messages,
        })
}

fn group_options() -> impl Strategy<Value = GroupOptions> {
    (
        start_position(),
        any::<u64>(),
        vec(any::<u64>(), 0..4),
        any::<u32>(),
        any::<bool>(),
        option::of(topic()),
    )
        .prop_map(
            |(start, ack_wait_ms, backoff_ms, max_deliver, key_ordered, dead_letter_topic)| {
                GroupOptions {
                    start,
                    ack_wait_ms,
                    backoff_ms,
                    max_deliver,
                    key_ordered,
                    dead_letter_topic,
                }
            },
        )
}

fn request_body() -> impl Strategy<Value = RequestBody> {
    prop_oneof![
        vec(publish_message(), 0..4)
            .prop_map(|messages| RequestBody::Publish(Publish { messages })),
        vec((topic(), vec(compact_message(), 0..3)), 0..3).prop_map(|runs| {
            RequestBody::PublishCompact(PublishCompact {
                runs: runs
                    .into_iter()
                    .map(|(topic, messages)| PublishRun { topic, messages })
                    .collect(),
            })
        }),
        (
            any::<u64>(),
            text(),
            start_position(),
            option::of(delivery_plugin()),
            btree_map(topic(), any::<u64>(), 0..3)
        )
            .prop_map(|(subscription, pattern, from, plugin, resume)| {
                RequestBody::Subscribe(Subscribe {
                    subscription,
                    pattern,
                    from,
                    plugin,
                    resume,
                })
            }),
        any::<u64>().prop_map(|subscription| RequestBody::Unsubscribe { subscription }),
        (topic(), start_position(), any::<u32>(), any::<u32>()).prop_map(
            |(topic, from, max_messages, max_bytes)| RequestBody::Fetch(Fetch {
                topic,
                from,
                max_messages,
                max_bytes,
            })
        ),
        (
            topic(),
            option::of(retention()),
            option::of(any::<u64>()),
            option::of(any::<u64>())
        )
            .prop_map(|(name, retention, segment_bytes, dedup_window_ms)| {
                RequestBody::CreateTopic(CreateTopic {
                    name,
                    retention,
                    segment_bytes,
                    dedup_window_ms,
                    default_ttl_ms: None,
                    dead_letter_expired: None,
                })
            }),
        text().prop_map(|name| RequestBody::DeleteTopic { name }),
        Just(RequestBody::ListTopics),
        text().prop_map(|name| RequestBody::TopicInfo { name }),
        Just(RequestBody::Ping),
        (
            any::<u64>(),
            text(),
            text(),
            group_options(),
            any::<u32>(),
            option::of(any::<u64>()),
            option::of(delivery_plugin()),
        )
            .prop_map(
                |(consumer, group, pattern, options, max_in_flight, limit, plugin)| {
                    RequestBody::Consume(Consume {
                        consumer,
                        group,
                        pattern,
                        options,
                        max_in_flight,
                        limit,
                        plugin,
                    })
                }
            ),
        (
            (text(), topic(), any::<u64>(), settle_action()),
            (option::of(any::<u64>()), option::of(any::<u32>()))
        )
            .prop_map(|((group, topic, offset, action), (consumer, attempt))| {
                RequestBody::Settle(Settle {
                    group,
                    topic,
                    offset,
                    action,
                    consumer,
                    attempt,
                })
            }),
        (
            text(),
            vec(
                (
                    topic(),
                    any::<u64>(),
                    settle_action(),
                    option::of(any::<u32>())
                ),
                0..4
            ),
            option::of(any::<u64>())
        )
            .prop_map(|(group, items, consumer)| {
                RequestBody::SettleBatch(SettleBatch {
                    group,
                    items: items
                        .into_iter()
                        .map(|(topic, offset, action, attempt)| SettleItem {
                            topic,
                            offset,
                            action,
                            attempt,
                        })
                        .collect(),
                    consumer,
                })
            }),
        Just(RequestBody::ListGroups),
        text().prop_map(|name| RequestBody::GroupInfo { name }),
        Just(RequestBody::ListPlugins),
        (text(), start_position()).prop_map(|(name, to)| RequestBody::ResetGroup { name, to }),
    ]
}

fn hello() -> impl Strategy<Value = Hello> {
    (any::<u16>(), option::of(text()), text(), vec(text(), 0..3)).prop_map(
        |(version, token, client_name, features)| Hello {
            version,
            token,
            client_name,
            features,
        },
    )
}

pub(crate) fn client_frame() -> impl Strategy<Value = ClientFrame> {
    prop_oneof![
        hello().prop_map(ClientFrame::Hello),
        (any::<u64>(), request_body())
            .prop_map(|(id, body)| ClientFrame::Request(Request { id, body })),
    ]
}

/// Offsets anywhere, and often at the very end of the range.
fn offset() -> impl Strategy<Value = u64> {
    prop_oneof![any::<u64>(), 0u64..4, (u64::MAX - 3)..=u64::MAX]
}

/// Mostly the same few topics, so that runs of one topic form.
fn ack_topic() -> impl Strategy<Value = String> {
    prop_oneof![Just("a".to_owned()), Just("b".to_owned()), topic()]
}

fn stored_at() -> impl Strategy<Value = StoredAt> {
    (ack_topic(), offset(), any::<bool>()).prop_map(|(topic, offset, duplicate)| StoredAt {
        topic,
        offset,
        duplicate,
        deliver_at_ms: None,
    })
}

fn outcome() -> impl Strategy<Value = MessageOutcome> {
    prop_oneof![
        vec(stored_at(), 0..3).prop_map(MessageOutcome::Stored),
        Just(MessageOutcome::Dropped),
        text().prop_map(MessageOutcome::Rejected),
        (text(), stored_at()).prop_map(|(reason, at)| MessageOutcome::DeadLettered { reason, at }),
    ]
}

pub(crate) fn publish_ack() -> impl Strategy<Value = PublishAck> {
    let due = prop_oneof![3 => Just(None), 1 => any::<i64>().prop_map(Some)];
    let once = (ack_topic(), offset(), any::<bool>(), due).prop_map(
        |(topic, offset, duplicate, deliver_at_ms)| {
            MessageOutcome::Stored(vec![StoredAt {
                topic,
                offset,
                duplicate,
                deliver_at_ms,
            }])
        },
    );
    vec(prop_oneof![2 => once, 1 => outcome()], 0..8).prop_map(|outcomes| PublishAck { outcomes })
}

fn delivered() -> impl Strategy<Value = Delivered> {
    (
        topic(),
        any::<u64>(),
        any::<i64>(),
        option::of(blob()),
        headers(),
        blob(),
        option::of(text()),
        any::<u32>(),
    )
        .prop_map(
            |(topic, offset, timestamp_ms, key, headers, payload, id, attempt)| Delivered {
                topic,
                offset,
                timestamp_ms,
                key,
                headers,
                payload,
                id,
                attempt,
            },
        )
}

fn topic_info() -> impl Strategy<Value = TopicInfo> {
    (
        (
            topic(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        ),
        (
            any::<u32>(),
            option::of(any::<i64>()),
            option::of(any::<i64>()),
            retention(),
            any::<u64>(),
            any::<u64>(),
        ),
        (any::<u64>(), option::of(any::<u64>()), any::<bool>()),
    )
        .prop_map(
            |(
                (name, start_offset, next_offset, messages, bytes),
                (segments, oldest, newest, retention, segment_bytes, dedup_window_ms),
                (waiting, default_ttl_ms, dead_letter_expired),
            )| TopicInfo {
                name,
                start_offset,
                next_offset,
                messages,
                bytes,
                segments,
                oldest_timestamp_ms: oldest,
                newest_timestamp_ms: newest,
                retention,
                segment_bytes,
                dedup_window_ms,
                waiting,
                default_ttl_ms,
                dead_letter_expired,
            },
        )
}

pub(crate) fn compact_ack() -> impl Strategy<Value = CompactAck> {
    (
        vec(
            (
                prop_oneof![0u32..8, any::<u32>()],
                prop_oneof![0u32..8, any::<u32>()],
                ack_topic(),
                offset(),
            )
                .prop_map(|(a, b, c, d)| StoredRange(a, b, c, d)),
            0..3,
        ),
        vec((prop_oneof![0u32..8, any::<u32>()], outcome()), 0..3),
    )
        .prop_map(|(stored, others)| CompactAck { stored, others })
}

fn response_body() -> impl Strategy<Value = ResponseBody> {
    prop_oneof![
        publish_ack().prop_map(ResponseBody::Published),
        any::<u64>().prop_map(|subscription| ResponseBody::Subscribed { subscription }),
        Just(ResponseBody::Unsubscribed),
        (vec(delivered(), 0..3), any::<u64>(), any::<u64>()).prop_map(
            |(messages, next_offset, end_offset)| ResponseBody::Fetched(FetchBatch {
                messages,
                next_offset,
                end_offset,
            })
        ),
        topic_info().prop_map(ResponseBody::TopicCreated),
        Just(ResponseBody::TopicDeleted),
        vec(topic_info(), 0..3).prop_map(ResponseBody::Topics),
        topic_info().prop_map(ResponseBody::TopicInfo),
        Just(ResponseBody::Pong),
        any::<u64>().prop_map(|consumer| ResponseBody::Consuming { consumer }),
        Just(ResponseBody::Settled),
        compact_ack().prop_map(ResponseBody::PublishedCompact),
        vec(option::of(error_body()), 0..4)
            .prop_map(|errors| ResponseBody::SettledBatch { errors }),
    ]
}

pub(crate) fn server_frame() -> impl Strategy<Value = ServerFrame> {
    prop_oneof![
        (any::<u16>(), text(), any::<u32>(), vec(text(), 0..3)).prop_map(
            |(version, server, max_frame_bytes, features)| ServerFrame::Welcome(Welcome {
                version,
                server,
                max_frame_bytes,
                features,
            })
        ),
        (
            any::<u64>(),
            prop_oneof![response_body().prop_map(Ok), error_body().prop_map(Err)]
        )
            .prop_map(|(id, result)| ServerFrame::Response(Response { id, result })),
        error_body().prop_map(ServerFrame::Error),
    ]
}

fn compact_delivered() -> impl Strategy<Value = CompactDelivered> {
    (
        any::<u64>(),
        any::<i64>(),
        option::of(blob()),
        headers(),
        blob(),
        option::of(text()),
        any::<u32>(),
    )
        .prop_map(|(a, b, c, d, e, f, g)| CompactDelivered(a, b, c, d, e, f, g))
}

pub(crate) fn delivery_frame() -> impl Strategy<Value = DeliveryFrame> {
    prop_oneof![
        any::<u64>().prop_map(|subscription| DeliveryFrame::Start { subscription }),
        (vec(delivered(), 0..4), any::<u64>())
            .prop_map(|(messages, dropped)| DeliveryFrame::Messages { messages, dropped }),
        (
            vec((topic(), vec(compact_delivered(), 0..3)), 0..3),
            any::<u64>()
        )
            .prop_map(|(runs, dropped)| DeliveryFrame::Compact {
                runs: runs
                    .into_iter()
                    .map(|(topic, messages)| DeliveryRun { topic, messages })
                    .collect(),
                dropped,
            }),
        option::of(error_body()).prop_map(|error| DeliveryFrame::End { error }),
    ]
}
