//! The frame codec: a `u32` big-endian length prefix, then a MessagePack body
//! (rmp-serde, structs as maps so fields can be added compatibly).
//!
//! The decoder is a plain buffer: feed it bytes as they arrive, take whole
//! frames out. It checks the length prefix against the maximum before it
//! waits for (or allocates) the body, so a peer cannot make the broker buffer
//! more than one maximum-sized frame.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{de::DeserializeOwned, Serialize};

/// Size of the length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// Why a frame could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The length prefix announces more than the allowed maximum.
    #[error("frame of {len} bytes is over the limit of {max} bytes")]
    TooLarge {
        /// The announced (or encoded) body length.
        len: u64,
        /// The limit in force.
        max: u32,
    },
    /// The body is not a valid MessagePack encoding of the expected frame.
    #[error("malformed frame: {0}")]
    Malformed(#[from] rmp_serde::decode::Error),
    /// The value could not be encoded.
    #[error("cannot encode frame: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// The input ended inside a frame.
    #[error("input ended inside a frame ({missing} more bytes expected)")]
    Truncated {
        /// Bytes still expected.
        missing: usize,
    },
}

/// Appends one frame (prefix and body) to `out`. Fails if the body would be
/// larger than `max_frame_bytes`; `out` is then left as it was.
pub fn encode_into<T: Serialize>(
    frame: &T,
    max_frame_bytes: u32,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let start = out.len();
    out.put_u32(0);
    if let Err(e) = rmp_serde::encode::write_named(out, frame) {
        out.truncate(start);
        return Err(e.into());
    }
    let len = out.len() - start - LENGTH_PREFIX_BYTES;
    if len > max_frame_bytes as usize {
        out.truncate(start);
        return Err(CodecError::TooLarge {
            len: len as u64,
            max: max_frame_bytes,
        });
    }
    out[start..start + LENGTH_PREFIX_BYTES].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// Encodes one frame (prefix and body).
pub fn encode<T: Serialize>(frame: &T, max_frame_bytes: u32) -> Result<Bytes, CodecError> {
    let mut out = Vec::with_capacity(128);
    encode_into(frame, max_frame_bytes, &mut out)?;
    Ok(out.into())
}

/// Decodes a frame body (without its length prefix).
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, CodecError> {
    Ok(rmp_serde::from_slice(body)?)
}

/// Reads a length prefix and checks it against the limit.
pub fn body_len(
    prefix: [u8; LENGTH_PREFIX_BYTES],
    max_frame_bytes: u32,
) -> Result<usize, CodecError> {
    let len = u32::from_be_bytes(prefix);
    if len > max_frame_bytes {
        return Err(CodecError::TooLarge {
            len: u64::from(len),
            max: max_frame_bytes,
        });
    }
    Ok(len as usize)
}

/// Decodes exactly one whole frame from `input` (prefix and body, nothing
/// after it). Handy for tests and for one-shot tools.
pub fn decode_one<T: DeserializeOwned>(
    input: &[u8],
    max_frame_bytes: u32,
) -> Result<T, CodecError> {
    let mut decoder = FrameDecoder::new(max_frame_bytes);
    decoder.extend(input);
    match decoder.next_body()? {
        Some(body) => decode_body(&body),
        None => Err(CodecError::Truncated {
            missing: decoder.missing(),
        }),
    }
}

/// An incremental frame splitter over a byte buffer.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max_frame_bytes: u32,
}

impl FrameDecoder {
    /// A decoder that refuses frames whose body is over `max_frame_bytes`.
    pub fn new(max_frame_bytes: u32) -> Self {
        FrameDecoder {
            buf: BytesMut::new(),
            max_frame_bytes,
        }
    }

    /// The limit in force.
    pub fn max_frame_bytes(&self) -> u32 {
        self.max_frame_bytes
    }

    /// Adds received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered and not yet taken out as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// How many more bytes the next frame needs (0 if one is complete).
    pub fn missing(&self) -> usize {
        if self.buf.len() < LENGTH_PREFIX_BYTES {
            return LENGTH_PREFIX_BYTES - self.buf.len();
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        (LENGTH_PREFIX_BYTES + len).saturating_sub(self.buf.len())
    }

    /// Takes the next complete frame body out of the buffer, if there is
    /// one. An oversized length prefix is an error as soon as the prefix is
    /// seen; the connection should then be closed.
    pub fn next_body(&mut self) -> Result<Option<Bytes>, CodecError> {
        if self.buf.len() < LENGTH_PREFIX_BYTES {
            return Ok(None);
        }
        let prefix = [self.buf[0], self.buf[1], self.buf[2], self.buf[3]];
        let len = body_len(prefix, self.max_frame_bytes)?;
        if self.buf.len() < LENGTH_PREFIX_BYTES + len {
            self.buf.reserve(LENGTH_PREFIX_BYTES + len - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(LENGTH_PREFIX_BYTES);
        Ok(Some(self.buf.split_to(len).freeze()))
    }

    /// Takes and decodes the next complete frame, if there is one.
    pub fn next_frame<T: DeserializeOwned>(&mut self) -> Result<Option<T>, CodecError> {
        match self.next_body()? {
            Some(body) => decode_body(&body).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    /// A frame shaped like the protocol's (an enum of maps with bytes,
    /// strings and options), so that the codec is tested on its own; the
    /// protocol's frames are tested in `message`.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum TestFrame {
        Publish {
            id: u64,
            topic: String,
            key: Option<Bytes>,
            headers: Vec<(String, String)>,
            payload: Bytes,
        },
        Ping {
            id: u64,
        },
    }

    fn publish_frame(payload: &[u8]) -> TestFrame {
        TestFrame::Publish {
            id: 7,
            topic: "orders.eu".into(),
            key: Some(Bytes::from_static(b"k1")),
            headers: vec![("region".into(), "eu".into())],
            payload: Bytes::copy_from_slice(payload),
        }
    }

    #[test]
    fn round_trip() {
        let frame = publish_frame(b"hello");
        let bytes = encode(&frame, 1024).unwrap();
        let back: TestFrame = decode_one(&bytes, 1024).unwrap();
        assert_eq!(back, frame);
    }

    #[test]
    fn decoder_splits_frames_fed_byte_by_byte() {
        let a = publish_frame(b"a");
        let b = TestFrame::Ping { id: 8 };
        let mut wire = Vec::new();
        encode_into(&a, 1024, &mut wire).unwrap();
        encode_into(&b, 1024, &mut wire).unwrap();
        let mut decoder = FrameDecoder::new(1024);
        let mut got = Vec::new();
        for byte in wire {
            decoder.extend(&[byte]);
            while let Some(frame) = decoder.next_frame::<TestFrame>().unwrap() {
                got.push(frame);
            }
        }
        assert_eq!(got, vec![a, b]);
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn truncated_input_is_reported() {
        let bytes = encode(&publish_frame(b"hello"), 1024).unwrap();
        for cut in [0, 2, 4, bytes.len() - 1] {
            let err = decode_one::<TestFrame>(&bytes[..cut], 1024).unwrap_err();
            assert!(
                matches!(err, CodecError::Truncated { missing } if missing > 0),
                "{err}"
            );
        }
    }

    #[test]
    fn oversized_length_prefix_is_refused_before_the_body_arrives() {
        let mut decoder = FrameDecoder::new(1024);
        decoder.extend(&(1025u32).to_be_bytes());
        let err = decoder.next_body().unwrap_err();
        assert!(matches!(
            err,
            CodecError::TooLarge {
                len: 1025,
                max: 1024
            }
        ));
        let mut decoder = FrameDecoder::new(1024);
        decoder.extend(&u32::MAX.to_be_bytes());
        assert!(decoder.next_body().is_err());
    }

    #[test]
    fn encoding_over_the_limit_fails_and_leaves_the_buffer_alone() {
        let mut out = vec![1, 2, 3];
        let err = encode_into(&publish_frame(&[0u8; 2000]), 1024, &mut out).unwrap_err();
        assert!(matches!(err, CodecError::TooLarge { max: 1024, .. }));
        assert_eq!(out, vec![1, 2, 3]);
    }

    #[test]
    fn a_malformed_body_is_an_error() {
        assert!(matches!(
            decode_body::<TestFrame>(&[0xc1]),
            Err(CodecError::Malformed(_))
        ));
    }
}
