//! Property tests of the wire protocol: every frame kind survives the codec
//! unchanged, however the bytes are cut on the way; arbitrary bytes never
//! panic the decoder; and pattern matching and name validation agree with
//! a reference model written from the rules (`*` one token, `>` one or more
//! trailing tokens).

use bytes::Bytes;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use sluice_proto::frame::{self, FrameDecoder, LENGTH_PREFIX_BYTES};
use sluice_proto::*;

/// Cases per property: enough to matter, few enough for a debug build.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 128,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------

/// Any string, including multi-byte and control characters.
fn text() -> impl Strategy<Value = String> {
    ".{0,12}"
}

fn blob() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..48).prop_map(Bytes::from)
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,8}"
}

/// A valid topic name: one to five tokens.
fn topic() -> impl Strategy<Value = String> {
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
            option::of(delivery_plugin())
        )
            .prop_map(|(subscription, pattern, from, plugin)| {
                RequestBody::Subscribe(Subscribe {
                    subscription,
                    pattern,
                    from,
                    plugin,
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
        (text(), topic(), any::<u64>(), settle_action()).prop_map(
            |(group, topic, offset, action)| RequestBody::Settle(Settle {
                group,
                topic,
                offset,
                action,
            })
        ),
        (text(), vec((topic(), any::<u64>(), settle_action()), 0..4)).prop_map(|(group, items)| {
            RequestBody::SettleBatch(SettleBatch {
                group,
                items: items
                    .into_iter()
                    .map(|(topic, offset, action)| SettleItem {
                        topic,
                        offset,
                        action,
                    })
                    .collect(),
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

fn client_frame() -> impl Strategy<Value = ClientFrame> {
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

fn publish_ack() -> impl Strategy<Value = PublishAck> {
    let once = (ack_topic(), offset(), any::<bool>()).prop_map(|(topic, offset, duplicate)| {
        MessageOutcome::Stored(vec![StoredAt {
            topic,
            offset,
            duplicate,
        }])
    });
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
    )
        .prop_map(
            |(
                (name, start_offset, next_offset, messages, bytes),
                (segments, oldest, newest, retention, segment_bytes, dedup_window_ms),
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
            },
        )
}

fn compact_ack() -> impl Strategy<Value = CompactAck> {
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

fn server_frame() -> impl Strategy<Value = ServerFrame> {
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

fn delivery_frame() -> impl Strategy<Value = DeliveryFrame> {
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

/// Sizes to cut a byte stream into (the last one repeats).
fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    vec(1usize..64, 1..16)
}

fn chunks<'a>(bytes: &'a [u8], sizes: &'a [usize]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = bytes;
    let mut i = 0;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = sizes[i.min(sizes.len() - 1)].min(rest.len());
        i += 1;
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        Some(piece)
    })
}

// ---------------------------------------------------------------------------
// Codec
// ---------------------------------------------------------------------------

fn round_trip<T>(value: &T) -> Result<(), TestCaseError>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = frame::encode(value, DEFAULT_MAX_FRAME_BYTES)
        .map_err(|e| TestCaseError::fail(format!("encode: {e}")))?;
    let prefix: [u8; LENGTH_PREFIX_BYTES] = bytes[..LENGTH_PREFIX_BYTES].try_into().unwrap();
    prop_assert_eq!(
        u32::from_be_bytes(prefix) as usize,
        bytes.len() - LENGTH_PREFIX_BYTES
    );
    let back: T = frame::decode_one(&bytes, DEFAULT_MAX_FRAME_BYTES)
        .map_err(|e| TestCaseError::fail(format!("decode: {e}")))?;
    prop_assert_eq!(&back, value);
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn client_frames_round_trip(f in client_frame()) {
        round_trip(&f)?;
        // The id of a request is readable without knowing its kind.
        let bytes = frame::encode(&f, DEFAULT_MAX_FRAME_BYTES).unwrap();
        let id = match &f {
            ClientFrame::Request(r) => Some(r.id),
            ClientFrame::Hello(_) => None,
        };
        prop_assert_eq!(request_id_of(&bytes[LENGTH_PREFIX_BYTES..]), id);
    }

    #[test]
    fn server_frames_round_trip(f in server_frame()) {
        round_trip(&f)?;
    }

    #[test]
    fn delivery_frames_round_trip(f in delivery_frame()) {
        round_trip(&f)?;
    }

    #[test]
    fn compact_acks_convert_back_exactly(ack in publish_ack()) {
        let n = ack.outcomes.len();
        let compact = CompactAck::from_ack(ack.clone());
        round_trip(&compact)?;
        prop_assert_eq!(compact.into_ack(n), Ok(ack));
    }

    /// A compact acknowledgement from a peer is checked, never trusted:
    /// whatever its ranges say, no panic, and success means one outcome
    /// per message.
    #[test]
    fn hostile_compact_acks_are_refused_not_panicking(ack in compact_ack(), n in 0usize..8) {
        if let Ok(plain) = ack.into_ack(n) {
            prop_assert_eq!(plain.outcomes.len(), n);
        }
    }

    #[test]
    fn chunked_requests_yield_the_same_frames(
        frames in vec(client_frame(), 0..6),
        sizes in chunk_sizes(),
    ) {
        let mut wire = Vec::new();
        for f in &frames {
            frame::encode_into(f, DEFAULT_MAX_FRAME_BYTES, &mut wire).unwrap();
        }
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
        let mut got = Vec::new();
        for piece in chunks(&wire, &sizes) {
            decoder.extend(piece);
            while let Some(f) = decoder.next_frame::<ClientFrame>().unwrap() {
                got.push(f);
            }
        }
        prop_assert_eq!(decoder.buffered(), 0);
        prop_assert_eq!(decoder.missing(), LENGTH_PREFIX_BYTES);
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn chunked_responses_yield_the_same_frames(
        frames in vec(server_frame(), 0..6),
        sizes in chunk_sizes(),
    ) {
        let mut wire = Vec::new();
        for f in &frames {
            frame::encode_into(f, DEFAULT_MAX_FRAME_BYTES, &mut wire).unwrap();
        }
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
        let mut got = Vec::new();
        for piece in chunks(&wire, &sizes) {
            decoder.extend(piece);
            while let Some(f) = decoder.next_frame::<ServerFrame>().unwrap() {
                got.push(f);
            }
        }
        prop_assert_eq!(decoder.buffered(), 0);
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn chunked_deliveries_yield_the_same_frames(
        frames in vec(delivery_frame(), 0..6),
        sizes in chunk_sizes(),
    ) {
        let mut wire = Vec::new();
        for f in &frames {
            frame::encode_into(f, DEFAULT_MAX_FRAME_BYTES, &mut wire).unwrap();
        }
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
        let mut got = Vec::new();
        for piece in chunks(&wire, &sizes) {
            decoder.extend(piece);
            while let Some(f) = decoder.next_frame::<DeliveryFrame>().unwrap() {
                got.push(f);
            }
        }
        prop_assert_eq!(decoder.buffered(), 0);
        prop_assert_eq!(got, frames);
    }

    /// Whatever the bytes and however they are cut: no panic, the same
    /// bodies as decoding them in one piece, and an accounting that adds up.
    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(
        bytes in vec(any::<u8>(), 0..512),
        sizes in chunk_sizes(),
        max in prop_oneof![Just(0u32), 1u32..64, Just(DEFAULT_MAX_FRAME_BYTES)],
    ) {
        let whole = {
            let mut d = FrameDecoder::new(max);
            d.extend(&bytes);
            let mut bodies = Vec::new();
            while let Ok(Some(b)) = d.next_body() {
                bodies.push(b);
            }
            bodies
        };
        let mut decoder = FrameDecoder::new(max);
        let mut bodies = Vec::new();
        let mut fed = 0usize;
        let mut taken = 0usize;
        'feed: for piece in chunks(&bytes, &sizes) {
            decoder.extend(piece);
            fed += piece.len();
            loop {
                match decoder.next_body() {
                    Ok(Some(body)) => {
                        prop_assert!(body.len() <= max as usize);
                        taken += LENGTH_PREFIX_BYTES + body.len();
                        let _ = request_id_of(&body);
                        let _ = frame::decode_body::<ClientFrame>(&body);
                        let _ = frame::decode_body::<ServerFrame>(&body);
                        let _ = frame::decode_body::<DeliveryFrame>(&body);
                        bodies.push(body);
                    }
                    Ok(None) => {
                        prop_assert!(decoder.missing() > 0);
                        break;
                    }
                    Err(_) => break 'feed,
                }
            }
            prop_assert_eq!(decoder.buffered(), fed - taken);
        }
        prop_assert_eq!(bodies, whole);
    }

    #[test]
    fn oversized_prefix_is_refused_at_once(max in 0u32..4096, extra in 1u32..1000) {
        let mut decoder = FrameDecoder::new(max);
        decoder.extend(&(max + extra).to_be_bytes());
        prop_assert!(decoder.next_body().is_err());
    }
}

// ---------------------------------------------------------------------------
// Topics and patterns
// ---------------------------------------------------------------------------

/// A pattern token of the reference model.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Lit(String),
    One,
    Rest,
}

/// The reference matcher: `*` one token, `>` (last only) one or more.
fn model_matches(pattern: &[Tok], topic: &[&str]) -> bool {
    match (pattern.split_first(), topic.split_first()) {
        (None, None) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some((Tok::Rest, _)), Some(_)) => true,
        (Some((Tok::One, p)), Some((_, t))) => model_matches(p, t),
        (Some((Tok::Lit(l), p)), Some((s, t))) => l == s && model_matches(p, t),
    }
}

fn token_ok(t: &str) -> bool {
    !t.is_empty()
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The validity rules of topic names, as the module docs state them.
fn model_topic_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && s.split('.').all(token_ok)
}

/// The validity rules of patterns; the parsed tokens when valid.
fn model_pattern(s: &str) -> Option<Vec<Tok>> {
    if s.is_empty() || s.len() > 255 {
        return None;
    }
    let parts: Vec<&str> = s.split('.').collect();
    let mut out = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        out.push(match *p {
            "*" => Tok::One,
            ">" if i + 1 == parts.len() => Tok::Rest,
            lit if token_ok(lit) => Tok::Lit(lit.to_owned()),
            _ => return None,
        });
    }
    Some(out)
}

/// Few distinct literals, so that patterns and topics often meet.
fn small_token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_owned()),
        Just("b".to_owned()),
        Just("ab".to_owned()),
        Just("c-1".to_owned()),
        token(),
    ]
}

fn small_topic() -> impl Strategy<Value = Vec<String>> {
    vec(small_token(), 1..=5)
}

fn pattern_tokens() -> impl Strategy<Value = Vec<Tok>> {
    (
        vec(
            prop_oneof![
                3 => small_token().prop_map(Tok::Lit),
                1 => Just(Tok::One),
            ],
            0..=4,
        ),
        any::<bool>(),
    )
        .prop_filter_map("empty pattern", |(mut toks, rest)| {
            if rest {
                toks.push(Tok::Rest);
            }
            (!toks.is_empty()).then_some(toks)
        })
}

fn render(pattern: &[Tok]) -> String {
    pattern
        .iter()
        .map(|t| match t {
            Tok::Lit(l) => l.as_str(),
            Tok::One => "*",
            Tok::Rest => ">",
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// A topic the pattern matches: each `*` filled by a token, `>` by one to
/// three.
fn instantiate(pattern: Vec<Tok>) -> impl Strategy<Value = (Vec<Tok>, String)> {
    let fills = pattern
        .iter()
        .map(|t| match t {
            Tok::Lit(l) => Just(vec![l.clone()]).boxed(),
            Tok::One => vec(small_token(), 1..=1).boxed(),
            Tok::Rest => vec(small_token(), 1..=3).boxed(),
        })
        .collect::<Vec<_>>();
    (Just(pattern), fills).prop_map(|(p, parts)| (p, parts.concat().join(".")))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn generated_topics_are_valid(t in topic()) {
        prop_assert_eq!(validate_topic(&t), Ok(()));
        let p = Pattern::parse(&t).unwrap();
        prop_assert!(p.is_literal());
        prop_assert!(p.matches(&t));
    }

    #[test]
    fn a_literal_pattern_matches_only_itself(a in topic(), b in topic()) {
        let p = Pattern::parse(&a).unwrap();
        prop_assert_eq!(p.matches(&b), a == b);
    }

    #[test]
    fn matching_agrees_with_the_model(p in pattern_tokens(), t in small_topic()) {
        let source = render(&p);
        let pattern = Pattern::parse(&source).unwrap();
        prop_assert_eq!(pattern.as_str(), source.as_str());
        prop_assert_eq!(pattern.is_literal(), p.iter().all(|t| matches!(t, Tok::Lit(_))));
        let topic = t.join(".");
        let parts: Vec<&str> = topic.split('.').collect();
        prop_assert_eq!(
            pattern.matches(&topic),
            model_matches(&p, &parts),
            "{} vs {}",
            source,
            topic
        );
    }

    #[test]
    fn a_pattern_matches_its_instances(
        (p, topic) in pattern_tokens().prop_flat_map(instantiate)
    ) {
        prop_assert_eq!(validate_topic(&topic), Ok(()));
        let pattern = Pattern::parse(&render(&p)).unwrap();
        prop_assert!(pattern.matches(&topic), "{} vs {}", render(&p), topic);
    }

    /// Strings over the characters that matter (and a few that are never
    /// allowed): valid exactly when the model says, and never a panic.
    #[test]
    fn validity_agrees_with_the_model(s in "[ab*>.\\- é/]{0,12}") {
        prop_assert_eq!(validate_topic(&s).is_ok(), model_topic_ok(&s), "topic {:?}", s);
        let parsed = Pattern::parse(&s);
        let model = model_pattern(&s);
        prop_assert_eq!(parsed.is_ok(), model.is_some(), "pattern {:?}", s);
        if let (Ok(pattern), Some(model)) = (parsed, model) {
            for topic in ["a", "b", "a.b", "a.a.a", "ab.b"] {
                let parts: Vec<&str> = topic.split('.').collect();
                prop_assert_eq!(pattern.matches(topic), model_matches(&model, &parts));
            }
        }
    }

    #[test]
    fn long_names_are_refused(t in vec(token(), 40..60)) {
        let name = t.join(".");
        prop_assert_eq!(validate_topic(&name).is_ok(), name.len() <= 255);
        prop_assert_eq!(Pattern::parse(&name).is_ok(), name.len() <= 255);
    }
}
