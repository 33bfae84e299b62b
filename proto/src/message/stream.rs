//! What each stream carries: the frames of a client's control stream in
//! both directions, and the frames of a subscription's (or consumer's)
//! delivery stream. Everything else in this module is what these frames
//! contain.

use serde::{Deserialize, Serialize};

use super::compact::DeliveryRun;
use super::delivery::Delivered;
use super::handshake::{Hello, Welcome};
use super::request::{Request, Response};
use crate::error::ErrorBody;

/// Frames a client sends on its control stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientFrame {
    /// The first frame of every connection.
    Hello(Hello),
    /// A request; answered by a [`ServerFrame::Response`] with the same id.
    Request(Request),
}

/// Frames the broker sends on a client's control stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ServerFrame {
    /// The answer to a successful Hello.
    Welcome(Welcome),
    /// The answer to one request.
    Response(Response),
    /// A connection-level error (bad handshake, malformed frame); the broker
    /// closes the stream or connection after sending it.
    Error(ErrorBody),
}

/// Frames the broker sends on a subscription's unidirectional stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DeliveryFrame {
    /// The first frame: which subscription this stream carries.
    Start {
        /// The id the client chose in
        /// [`Subscribe::subscription`](crate::Subscribe::subscription).
        subscription: u64,
    },
    /// Messages in offset order per topic.
    Messages {
        /// The messages.
        messages: Vec<Delivered>,
        /// Messages this live subscription missed since the previous frame
        /// because it fell behind (at-most-once delivery).
        #[serde(default)]
        dropped: u64,
    },
    /// Messages in offset order per topic, in the compact layout: the
    /// topic once per run, each message an array. Sent only to clients
    /// that asked for [`FEATURE_COMPACT_DELIVERY`](crate::FEATURE_COMPACT_DELIVERY)
    /// in their `Hello`.
    Compact {
        /// Runs of messages of one topic, in delivery order.
        runs: Vec<DeliveryRun>,
        /// As in `Messages`.
        #[serde(default)]
        dropped: u64,
    },
    /// The broker ended the subscription; no more frames follow.
    End {
        /// Why, if it was not a normal end.
        error: Option<ErrorBody>,
    },
}

/// Reads just the request id of a control-stream frame body, for answering
/// a request whose kind this version does not know.
pub fn request_id_of(body: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct IdOnly {
        id: u64,
    }
    #[derive(Deserialize)]
    enum Envelope {
        Request(IdOnly),
    }
    match rmp_serde::from_slice::<Envelope>(body) {
        Ok(Envelope::Request(r)) => Some(r.id),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::frame::{decode_body, decode_one, encode, LENGTH_PREFIX_BYTES};
    use crate::message::delivery::{DeliveryPlugin, Fetch, StartPosition, Subscribe};
    use crate::message::handshake::FEATURE_COMPACT_DELIVERY;
    use crate::message::publish::{MessageOutcome, Publish, PublishAck, PublishMessage, StoredAt};
    use crate::message::request::{RequestBody, ResponseBody};
    use crate::message::topic::{CreateTopic, RetentionSpec};

    fn round_trip<T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(v: T) {
        let bytes = encode(&v, crate::DEFAULT_MAX_FRAME_BYTES).unwrap();
        let back: T = decode_one(&bytes, crate::DEFAULT_MAX_FRAME_BYTES).unwrap();
        assert_eq!(back, v);
    }

    fn publish_frame(payload: &[u8]) -> ClientFrame {
        ClientFrame::Request(Request {
            id: 7,
            body: RequestBody::Publish(Publish {
                messages: vec![PublishMessage {
                    topic: "orders.eu".into(),
                    key: Some(Bytes::from_static(b"k1")),
                    headers: vec![("region".into(), "eu".into())],
                    payload: Bytes::copy_from_slice(payload),
                    id: Some("m-1".into()),
                }],
            }),
        })
    }

    #[test]
    fn a_publish_round_trips() {
        round_trip(publish_frame(b"hello"));
    }

    #[test]
    fn payload_is_encoded_as_binary_not_an_array() {
        let payload = vec![0xAB; 200];
        let bytes = encode(&publish_frame(&payload), 4096).unwrap();
        // As msgpack bin the payload appears verbatim; as an array of numbers
        // each 0xAB would be prefixed by 0xCC (uint8).
        assert!(bytes.windows(200).any(|w| w == payload.as_slice()));
        assert!(bytes.len() < 200 + 120, "frame is {} bytes", bytes.len());
    }

    #[test]
    fn every_frame_kind_round_trips() {
        round_trip(ClientFrame::Hello(Hello {
            version: 1,
            token: Some("t".into()),
            client_name: "test".into(),
            features: vec![FEATURE_COMPACT_DELIVERY.into()],
        }));
        for body in [
            RequestBody::Ping,
            RequestBody::ListTopics,
            RequestBody::Unsubscribe { subscription: 3 },
            RequestBody::Subscribe(Subscribe {
                subscription: 1,
                pattern: "orders.>".into(),
                from: StartPosition::Timestamp(-5),
                plugin: Some(DeliveryPlugin {
                    name: "f".into(),
                    config: None,
                }),
                resume: [("orders.eu".to_owned(), 17)].into(),
            }),
            RequestBody::Fetch(Fetch {
                topic: "a".into(),
                from: StartPosition::Offset(10),
                max_messages: 5,
                max_bytes: 100,
            }),
            RequestBody::CreateTopic(CreateTopic {
                name: "a".into(),
                retention: Some(RetentionSpec {
                    max_age_ms: Some(1),
                    max_bytes: None,
                    max_messages: Some(3),
                }),
                segment_bytes: Some(4096),
                dedup_window_ms: Some(1000),
                default_ttl_ms: None,
                dead_letter_expired: None,
            }),
            RequestBody::DeleteTopic { name: "a".into() },
            RequestBody::TopicInfo { name: "a".into() },
        ] {
            round_trip(ClientFrame::Request(Request { id: 42, body }));
        }
        round_trip(ServerFrame::Response(Response {
            id: 1,
            result: Ok(ResponseBody::Published(PublishAck {
                outcomes: vec![MessageOutcome::Stored(vec![StoredAt {
                    topic: "a".into(),
                    offset: 9,
                    duplicate: false,
                    deliver_at_ms: None,
                }])],
            })),
        }));
        round_trip(ServerFrame::Response(Response {
            id: 2,
            result: Err(ErrorBody::new(
                crate::ErrorCode::TopicNotFound,
                "no such topic",
            )),
        }));
        round_trip(DeliveryFrame::Messages {
            messages: vec![Delivered {
                topic: "a".into(),
                offset: 1,
                timestamp_ms: 1_700_000_000_000,
                key: None,
                headers: vec![],
                payload: Bytes::from_static(b"x"),
                id: None,
                attempt: 0,
            }],
            dropped: 2,
        });
        round_trip(DeliveryFrame::End { error: None });
    }

    #[test]
    fn request_id_is_read_from_valid_frames_too() {
        let bytes = encode(
            &ClientFrame::Request(Request {
                id: 5,
                body: RequestBody::Ping,
            }),
            1024,
        )
        .unwrap();
        assert_eq!(request_id_of(&bytes[4..]), Some(5));
        assert_eq!(request_id_of(b"\xc1garbage"), None);
    }

    #[test]
    fn garbage_body_is_malformed_not_a_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..200usize {
            let mut body = Vec::with_capacity(len);
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                body.push(seed as u8);
            }
            let _ = decode_body::<ClientFrame>(&body);
            let _ = decode_body::<ServerFrame>(&body);
            let _ = decode_body::<DeliveryFrame>(&body);
        }
        assert!(matches!(
            decode_body::<ClientFrame>(&[0xc1]),
            Err(crate::CodecError::Malformed(_))
        ));
    }

    #[test]
    fn resume_positions_are_optional_both_ways() {
        // The subscribe of a client before resume positions, field for field.
        #[derive(serde::Serialize, serde::Deserialize)]
        struct OldSubscribe {
            subscription: u64,
            pattern: String,
            from: StartPosition,
            plugin: Option<DeliveryPlugin>,
        }
        let old = OldSubscribe {
            subscription: 3,
            pattern: "orders.>".into(),
            from: StartPosition::Earliest,
            plugin: None,
        };
        let new: Subscribe = decode_body(&encode(&old, 1024).unwrap()[LENGTH_PREFIX_BYTES..])
            .expect("a newer broker reads an older client's subscribe");
        assert!(new.resume.is_empty());
        // Without positions the frame is what older brokers always read;
        // with them, they ignore the field.
        let plain = encode(&new, 1024).unwrap();
        assert_eq!(plain, encode(&old, 1024).unwrap());
        let resumed = Subscribe {
            resume: [("orders.eu".to_owned(), 41)].into(),
            ..new
        };
        let read: OldSubscribe =
            decode_body(&encode(&resumed, 1024).unwrap()[LENGTH_PREFIX_BYTES..])
                .expect("an older broker reads a resuming subscribe");
        assert_eq!((read.subscription, read.pattern), (3, "orders.>".into()));
    }

    #[test]
    fn unknown_request_still_yields_its_id() {
        // A newer client may send a request kind this broker does not know:
        // the id must still be readable so the broker can answer it.
        #[derive(serde::Serialize)]
        enum FutureBody {
            Teleport { to: String },
        }
        #[derive(serde::Serialize)]
        struct FutureRequest {
            id: u64,
            body: FutureBody,
        }
        #[derive(serde::Serialize)]
        enum FutureFrame {
            Request(FutureRequest),
        }
        let bytes = encode(
            &FutureFrame::Request(FutureRequest {
                id: 99,
                body: FutureBody::Teleport { to: "mars".into() },
            }),
            1024,
        )
        .unwrap();
        let body = &bytes[LENGTH_PREFIX_BYTES..];
        assert!(decode_body::<ClientFrame>(body).is_err());
        assert_eq!(request_id_of(body), Some(99));
    }
}
