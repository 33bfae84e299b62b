//! Frames on QUIC streams: a reader that yields whole frame bodies and
//! checks the size limit before buffering, used by the client and the
//! broker alike.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use sluice_proto::{frame, CodecError, FrameDecoder};

/// Largest chunk taken from a stream at once.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The stream or connection failed.
    #[error(transparent)]
    Read(#[from] quinn::ReadError),
    /// The bytes are not a valid frame.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// Splits a receive stream into frames.
#[derive(Debug)]
pub struct FrameReader {
    stream: quinn::RecvStream,
    decoder: FrameDecoder,
}

impl FrameReader {
    /// Reads frames of at most `max_frame_bytes` from `stream`.
    pub fn new(stream: quinn::RecvStream, max_frame_bytes: u32) -> Self {
        FrameReader {
            stream,
            decoder: FrameDecoder::new(max_frame_bytes),
        }
    }

    /// The next frame body, or `None` when the peer finished the stream
    /// cleanly between frames.
    pub async fn next_body(&mut self) -> Result<Option<Bytes>, WireError> {
        loop {
            if let Some(body) = self.decoder.next_body()? {
                return Ok(Some(body));
            }
            match self.stream.read_chunk(READ_CHUNK_BYTES, true).await? {
                Some(chunk) => self.decoder.extend(&chunk.bytes),
                None if self.decoder.buffered() == 0 => return Ok(None),
                None => {
                    return Err(CodecError::Truncated {
                        missing: self.decoder.missing(),
                    }
                    .into())
                }
            }
        }
    }

    /// The next frame, decoded.
    pub async fn next_frame<T: DeserializeOwned>(&mut self) -> Result<Option<T>, WireError> {
        match self.next_body().await? {
            Some(body) => Ok(Some(frame::decode_body(&body)?)),
            None => Ok(None),
        }
    }

    /// The underlying stream (to stop it).
    pub fn stream_mut(&mut self) -> &mut quinn::RecvStream {
        &mut self.stream
    }
}
