//! The frames PROTOCOL.md shows as bytes, built here from proto's types:
//! each `<!-- example: NAME -->` block of the document must decode to the
//! frame of that name and encode back to the same bytes.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sluice_proto::frame::{self, LENGTH_PREFIX_BYTES};
use sluice_proto::*;

/// A frame of one of the three stream kinds.
#[derive(Debug)]
pub enum Example {
    /// Client to broker, control stream.
    Client(ClientFrame),
    /// Broker to client, control stream.
    Server(ServerFrame),
    /// Broker to client, delivery stream.
    Delivery(DeliveryFrame),
}

impl Example {
    /// Checks that `bytes` (a whole frame, prefix included) decodes to this
    /// frame and that this frame encodes to `bytes`.
    pub fn check(&self, bytes: &[u8]) -> Result<(), String> {
        match self {
            Example::Client(f) => {
                same(f, bytes)?;
                // A request's id is readable without knowing its kind.
                let id = match f {
                    ClientFrame::Request(r) => Some(r.id),
                    ClientFrame::Hello(_) => None,
                };
                let body = bytes.get(LENGTH_PREFIX_BYTES..).unwrap_or_default();
                match request_id_of(body) == id {
                    true => Ok(()),
                    false => Err(format!("request_id_of reads {:?}", request_id_of(body))),
                }
            }
            Example::Server(f) => same(f, bytes),
            Example::Delivery(f) => same(f, bytes),
        }
    }
}

fn same<T>(expected: &T, bytes: &[u8]) -> Result<(), String>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let max = DEFAULT_MAX_FRAME_BYTES;
    let decoded: T = frame::decode_one(bytes, max).map_err(|e| format!("does not decode: {e}"))?;
    if &decoded != expected {
        return Err(format!("decodes to {decoded:?}\nexpected {expected:?}"));
    }
    let encoded = frame::encode(expected, max).map_err(|e| e.to_string())?;
    if encoded.as_ref() != bytes {
        return Err(format!(
            "the frame encodes to other bytes:\n{}",
            encoded
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    Ok(())
}

fn text(s: &str) -> String {
    s.to_owned()
}

fn features() -> Vec<String> {
    vec![
        text(FEATURE_COMPACT_DELIVERY),
        text(FEATURE_COMPACT_PUBLISH),
    ]
}

fn request(id: u64, body: RequestBody) -> Example {
    Example::Client(ClientFrame::Request(Request { id, body }))
}

fn response(id: u64, result: Result<ResponseBody, ErrorBody>) -> Example {
    Example::Server(ServerFrame::Response(Response { id, result }))
}

/// Every example of the document, by name.
pub fn all() -> Vec<(&'static str, Example)> {
    let region = || vec![(text("region"), text("eu"))];
    vec![
        (
            "hello",
            Example::Client(ClientFrame::Hello(Hello {
                version: PROTOCOL_VERSION,
                token: Some(text("s3cret")),
                client_name: text("example"),
                features: features(),
            })),
        ),
        (
            "welcome",
            Example::Server(ServerFrame::Welcome(Welcome {
                version: PROTOCOL_VERSION,
                server: text("sluice/0.1.0"),
                max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
                features: features(),
            })),
        ),
        (
            "publish-request",
            request(
                1,
                RequestBody::Publish(Publish {
                    messages: vec![PublishMessage {
                        topic: text("orders.eu"),
                        key: Some(Bytes::from_static(b"k1")),
                        headers: region(),
                        payload: Bytes::from_static(b"hello"),
                        id: Some(text("m-1")),
                    }],
                }),
            ),
        ),
        (
            "publish-response",
            response(
                1,
                Ok(ResponseBody::Published(PublishAck {
                    outcomes: vec![MessageOutcome::Stored(vec![StoredAt {
                        topic: text("orders.eu"),
                        offset: 41,
                        duplicate: false,
                        deliver_at_ms: None,
                    }])],
                })),
            ),
        ),
        (
            "compact-publish-request",
            request(
                2,
                RequestBody::PublishCompact(PublishCompact {
                    runs: vec![PublishRun {
                        topic: text("orders.eu"),
                        messages: vec![
                            CompactMessage(
                                None,
                                vec![],
                                Bytes::from_static(b"a"),
                                Some(text("m-2")),
                            ),
                            CompactMessage(
                                Some(Bytes::from_static(b"k1")),
                                vec![],
                                Bytes::from_static(b"b"),
                                Some(text("m-3")),
                            ),
                        ],
                    }],
                }),
            ),
        ),
        (
            "compact-publish-response",
            response(
                2,
                Ok(ResponseBody::PublishedCompact(CompactAck {
                    stored: vec![StoredRange(0, 2, text("orders.eu"), 42)],
                    others: vec![],
                })),
            ),
        ),
        ("ping-request", request(3, RequestBody::Ping)),
        (
            "error-response",
            response(
                4,
                Err(ErrorBody::new(
                    ErrorCode::TopicNotFound,
                    "no topic \"audit\"",
                )),
            ),
        ),
        (
            "subscribe-request",
            request(
                5,
                RequestBody::Subscribe(Subscribe {
                    subscription: 1,
                    pattern: text("orders.>"),
                    from: StartPosition::Earliest,
                    plugin: None,
                    resume: Default::default(),
                }),
            ),
        ),
        (
            "delivery-start",
            Example::Delivery(DeliveryFrame::Start { subscription: 1 }),
        ),
        (
            "delivery-compact",
            Example::Delivery(DeliveryFrame::Compact {
                runs: vec![DeliveryRun {
                    topic: text("orders.eu"),
                    messages: vec![CompactDelivered(
                        41,
                        1_700_000_000_000,
                        Some(Bytes::from_static(b"k1")),
                        region(),
                        Bytes::from_static(b"hello"),
                        Some(text("m-1")),
                        0,
                    )],
                }],
                dropped: 0,
            }),
        ),
        (
            "settle-request",
            request(
                6,
                RequestBody::Settle(Settle {
                    group: text("workers"),
                    topic: text("orders.eu"),
                    offset: 41,
                    action: SettleAction::Nack {
                        delay_ms: Some(5000),
                    },
                    consumer: Some(2),
                    attempt: Some(1),
                }),
            ),
        ),
    ]
}
