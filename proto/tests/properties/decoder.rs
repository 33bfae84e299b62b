//! The frame decoder, fed however the bytes are cut: the same frames as in
//! one piece, an accounting that adds up, and no panic on arbitrary bytes.

use proptest::collection::vec;
use proptest::prelude::*;
use sluice_proto::frame::{self, FrameDecoder, LENGTH_PREFIX_BYTES};
use sluice_proto::*;

use crate::config;
use crate::strategies::{client_frame, delivery_frame, server_frame};

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

proptest! {
    #![proptest_config(config())]

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
