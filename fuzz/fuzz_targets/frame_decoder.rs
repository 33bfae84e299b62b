//! Arbitrary bytes, cut into arbitrary pieces, through the frame decoder
//! and the frame types of both directions. Never a panic; the pieces give
//! the same frames as the whole; the decoder's accounting adds up; and
//! whatever decodes encodes back to an equal value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_proto::frame::{self, CodecError, FrameDecoder, LENGTH_PREFIX_BYTES};
use sluice_proto::{request_id_of, ClientFrame, DeliveryFrame, ResponseBody, ServerFrame};

/// Small enough that the fuzzer reaches the limits often.
const LIMITS: [u32; 4] = [0, 16, 4096, sluice_proto::DEFAULT_MAX_FRAME_BYTES];

/// Re-encodes a decoded frame and decodes it again: the same value. The
/// limit is the largest there is: a frame read as arrays may grow when
/// written back as maps.
fn round_trip<T>(value: &T) -> bytes::Bytes
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = frame::encode(value, u32::MAX).expect("a decoded frame encodes again");
    let back: T = frame::decode_one(&bytes, u32::MAX).expect("and decodes again");
    assert_eq!(&back, value, "round trip changed the frame");
    bytes
}

fn check_body(body: &[u8], count: usize) {
    // Must not panic; its value is only meaningful for frames that fail to
    // decode as a known request.
    let _ = request_id_of(body);
    if let Ok(f) = frame::decode_body::<ClientFrame>(body) {
        let again = round_trip(&f);
        if let ClientFrame::Request(r) = &f {
            assert_eq!(
                request_id_of(&again[LENGTH_PREFIX_BYTES..]),
                Some(r.id),
                "the id of an encoded request is readable on its own"
            );
        }
    }
    if let Ok(f) = frame::decode_body::<ServerFrame>(body) {
        round_trip(&f);
        // A hostile broker's compact acknowledgement: checked, not trusted.
        if let ServerFrame::Response(r) = f {
            if let Ok(ResponseBody::PublishedCompact(ack)) = r.result {
                if let Ok(plain) = ack.into_ack(count) {
                    assert_eq!(plain.outcomes.len(), count);
                }
            }
        }
    }
    if let Ok(f) = frame::decode_body::<DeliveryFrame>(body) {
        round_trip(&f);
        if let DeliveryFrame::Compact { runs, .. } = f {
            for run in runs {
                run.into_delivered().for_each(drop);
            }
        }
    }
}

/// Every body of `stream` decoded in one piece, and whether it ended in an
/// oversized prefix.
fn whole(stream: &[u8], max: u32) -> (Vec<bytes::Bytes>, bool) {
    let mut decoder = FrameDecoder::new(max);
    decoder.extend(stream);
    let mut bodies = Vec::new();
    loop {
        match decoder.next_body() {
            Ok(Some(body)) => bodies.push(body),
            Ok(None) => return (bodies, false),
            Err(_) => return (bodies, true),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // Two bytes of settings, the rest is the stream.
    let [chunk, settings, stream @ ..] = data else {
        return;
    };
    let chunk = usize::from(*chunk).max(1);
    let max = LIMITS[usize::from(settings & 3)];
    let count = usize::from(settings >> 2);

    let (expected, refused) = whole(stream, max);
    let mut decoder = FrameDecoder::new(max);
    let mut typed = FrameDecoder::new(max);
    let mut bodies = Vec::new();
    let (mut fed, mut taken) = (0usize, 0usize);
    let mut failed = false;
    'feed: for piece in stream.chunks(chunk) {
        decoder.extend(piece);
        typed.extend(piece);
        fed += piece.len();
        loop {
            match decoder.next_body() {
                Ok(Some(body)) => {
                    assert!(body.len() <= max as usize, "a body over the limit");
                    taken += LENGTH_PREFIX_BYTES + body.len();
                    check_body(&body, count);
                    // The typed path takes the same frame out, decoded or not.
                    match typed.next_frame::<ClientFrame>() {
                        Ok(Some(f)) => {
                            assert_eq!(frame::decode_body::<ClientFrame>(&body).ok(), Some(f))
                        }
                        Err(CodecError::Malformed(_)) => {
                            assert!(frame::decode_body::<ClientFrame>(&body).is_err())
                        }
                        other => panic!("typed decoder disagrees: {other:?}"),
                    }
                    bodies.push(body);
                }
                Ok(None) => {
                    assert!(decoder.missing() > 0, "no frame, yet none missing");
                    assert!(matches!(typed.next_frame::<ClientFrame>(), Ok(None)));
                    break;
                }
                Err(e) => {
                    assert!(matches!(e, CodecError::TooLarge { .. }), "{e}");
                    failed = true;
                    break 'feed;
                }
            }
        }
        assert_eq!(decoder.buffered(), fed - taken, "bytes lost or invented");
        assert_eq!(typed.buffered(), decoder.buffered());
    }
    assert_eq!(bodies, expected, "cutting the stream changed the frames");
    assert_eq!(failed, refused, "cutting the stream changed the verdict");
});
