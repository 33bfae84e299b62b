//! The delivery frames: encoded from shared batches, decoded as the
//! protocol's own types, split within the frame limit.

use std::sync::Arc;

use bytes::Bytes;
use sluice_proto::frame::FrameDecoder;

use super::*;
use crate::broker::{Slice, StoredBatch};

fn record(offset: u64, payload: &[u8]) -> Record {
    Record {
        offset,
        timestamp_ms: 1_700_000_000_000 + offset as i64,
        key: offset.is_multiple_of(2).then(|| Bytes::from_static(b"k")),
        headers: vec![("h".into(), offset.to_string())],
        payload: Bytes::copy_from_slice(payload),
        id: Some(format!("id-{offset}")),
    }
}

#[test]
fn borrowed_frames_decode_as_proto_frames() {
    let batch = Arc::new(StoredBatch {
        topic: "orders.eu".into(),
        incarnation: 1,
        records: (0..5).map(|i| record(i, &[i as u8; 100])).collect(),
    });
    let chunk = Chunk {
        slices: vec![Slice {
            batch,
            skip: 2,
            attempt: 3,
        }],
        dropped: 7,
    };
    let mut out = Vec::new();
    encode_chunk(&chunk, 1024 * 1024, Layout::Named, &mut out).unwrap();
    let mut decoder = FrameDecoder::new(2 * 1024 * 1024);
    decoder.extend(&out);
    let frame: DeliveryFrame = decoder.next_frame().unwrap().unwrap();
    let DeliveryFrame::Messages { messages, dropped } = frame else {
        panic!("expected Messages, got {frame:?}");
    };
    assert_eq!(dropped, 7);
    assert_eq!(
        messages.iter().map(|m| m.offset).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    assert_eq!(messages[0].topic, "orders.eu");
    assert_eq!(messages[0].key.as_deref(), Some(&b"k"[..]));
    assert_eq!(messages[1].key, None);
    assert_eq!(messages[0].payload.as_ref(), &[2u8; 100][..]);
    assert_eq!(messages[0].id.as_deref(), Some("id-2"));
    assert_eq!(messages[0].attempt, 3);
    assert_eq!(messages[2].headers, vec![("h".to_owned(), "4".to_owned())]);
}

#[test]
fn compact_frames_decode_as_proto_frames_with_one_run_per_topic() {
    let eu = Arc::new(StoredBatch {
        topic: "orders.eu".into(),
        incarnation: 1,
        records: (0..3).map(|i| record(i, &[i as u8; 10])).collect(),
    });
    let us = Arc::new(StoredBatch {
        topic: "orders.us".into(),
        incarnation: 1,
        records: (0..2).map(|i| record(i, b"us")).collect(),
    });
    let chunk = Chunk {
        slices: vec![
            Slice {
                batch: eu.clone(),
                skip: 1,
                attempt: 2,
            },
            Slice {
                batch: us,
                skip: 0,
                attempt: 0,
            },
            Slice {
                batch: eu,
                skip: 2,
                attempt: 0,
            },
        ],
        dropped: 4,
    };
    let mut out = Vec::new();
    encode_chunk(&chunk, 1024 * 1024, Layout::Compact, &mut out).unwrap();
    let mut decoder = FrameDecoder::new(2 * 1024 * 1024);
    decoder.extend(&out);
    let frame: DeliveryFrame = decoder.next_frame().unwrap().unwrap();
    let DeliveryFrame::Compact { runs, dropped } = frame else {
        panic!("expected Compact, got {frame:?}");
    };
    assert_eq!(dropped, 4);
    let topics: Vec<&str> = runs.iter().map(|r| r.topic.as_str()).collect();
    assert_eq!(topics, ["orders.eu", "orders.us", "orders.eu"]);
    let all: Vec<sluice_proto::Delivered> =
        runs.into_iter().flat_map(|r| r.into_delivered()).collect();
    assert_eq!(
        all.iter()
            .map(|m| (m.topic.as_str(), m.offset))
            .collect::<Vec<_>>(),
        [
            ("orders.eu", 1),
            ("orders.eu", 2),
            ("orders.us", 0),
            ("orders.us", 1),
            ("orders.eu", 2)
        ]
    );
    assert_eq!(all[0].attempt, 2);
    assert_eq!(all[0].payload.as_ref(), &[1u8; 10][..]);
    assert_eq!(all[0].key, None);
    assert_eq!(all[1].key.as_deref(), Some(&b"k"[..]));
    assert_eq!(all[1].id.as_deref(), Some("id-2"));
    assert_eq!(all[1].headers, vec![("h".to_owned(), "2".to_owned())]);
    assert_eq!(all[1].timestamp_ms, 1_700_000_000_002);
}

#[test]
fn compact_frames_are_split_within_the_limit_too() {
    let batch = Arc::new(StoredBatch {
        topic: "t".into(),
        incarnation: 1,
        records: (0..100).map(|i| record(i, &[0u8; 10_000])).collect(),
    });
    let chunk = Chunk {
        slices: vec![Slice {
            batch,
            skip: 0,
            attempt: 0,
        }],
        dropped: 0,
    };
    let mut out = Vec::new();
    encode_chunk(&chunk, 64 * 1024, Layout::Compact, &mut out).unwrap();
    let mut decoder = FrameDecoder::new(64 * 1024 + FRAME_SLACK_BYTES);
    decoder.extend(&out);
    let mut offsets = Vec::new();
    let mut frames = 0;
    while let Some(DeliveryFrame::Compact { runs, .. }) = decoder.next_frame().unwrap() {
        frames += 1;
        offsets.extend(
            runs.into_iter()
                .flat_map(|r| r.into_delivered())
                .map(|m| m.offset),
        );
    }
    assert!(frames > 10, "{frames} frames");
    assert_eq!(offsets, (0..100).collect::<Vec<_>>());
}

#[test]
fn a_chunk_is_encoded_one_frame_at_a_time() {
    let batch = Arc::new(StoredBatch {
        topic: "t".into(),
        incarnation: 1,
        records: (0..100).map(|i| record(i, &[0u8; 10_000])).collect(),
    });
    let chunk = Chunk {
        slices: vec![Slice {
            batch,
            skip: 0,
            attempt: 0,
        }],
        dropped: 3,
    };
    let mut frames = ChunkFrames::new(&chunk, 64 * 1024, Layout::Named, None);
    let (mut offsets, mut dropped) = (Vec::new(), 0);
    let mut buf = Vec::new();
    while frames.next_frame(&mut buf).unwrap() {
        assert!(buf.len() <= 64 * 1024 + FRAME_SLACK_BYTES as usize);
        let mut decoder = FrameDecoder::new(64 * 1024 + FRAME_SLACK_BYTES);
        decoder.extend(&buf);
        let Some(DeliveryFrame::Messages {
            messages,
            dropped: d,
        }) = decoder.next_frame().unwrap()
        else {
            panic!("expected one Messages frame");
        };
        assert!(
            decoder.next_frame::<DeliveryFrame>().unwrap().is_none(),
            "one frame"
        );
        offsets.extend(messages.iter().map(|m| m.offset));
        dropped += d;
        buf.clear();
    }
    assert_eq!(offsets, (0..100).collect::<Vec<_>>());
    assert_eq!(dropped, 3, "the drops are told once");
}

#[test]
fn large_chunks_are_split_into_frames_within_the_limit() {
    let batch = Arc::new(StoredBatch {
        topic: "t".into(),
        incarnation: 1,
        records: (0..100).map(|i| record(i, &[0u8; 10_000])).collect(),
    });
    let chunk = Chunk {
        slices: vec![Slice {
            batch,
            skip: 0,
            attempt: 0,
        }],
        dropped: 0,
    };
    let mut out = Vec::new();
    encode_chunk(&chunk, 64 * 1024, Layout::Named, &mut out).unwrap();
    let mut decoder = FrameDecoder::new(64 * 1024 + FRAME_SLACK_BYTES);
    decoder.extend(&out);
    let mut offsets = Vec::new();
    let mut frames = 0;
    while let Some(DeliveryFrame::Messages { messages, .. }) = decoder.next_frame().unwrap() {
        frames += 1;
        offsets.extend(messages.iter().map(|m| m.offset));
    }
    assert!(frames > 10, "{frames} frames");
    assert_eq!(offsets, (0..100).collect::<Vec<_>>());
}
