//! How a record is held in a JetStream message: the message's payload is
//! the record's fields in MessagePack (key, headers, id, payload and the
//! node's timestamp), so any key, header or payload survives unchanged; the
//! id also goes in `Nats-Msg-Id` for JetStream's de-duplication. The offset
//! is the stream sequence minus 1 and is not stored.
//!
//! This is a compatibility contract between the nodes of a cluster: change
//! it only with a new [`VERSION`].

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::store::{NewRecord, Record};

/// The envelope's version, its first field.
const VERSION: u8 = 1;

#[derive(Serialize)]
struct Out<'a> {
    version: u8,
    timestamp_ms: i64,
    key: Option<&'a [u8]>,
    headers: &'a [(String, String)],
    id: Option<&'a str>,
    #[serde(with = "serde_bytes")]
    payload: &'a [u8],
}

#[derive(Deserialize)]
struct In {
    version: u8,
    timestamp_ms: i64,
    key: Option<Bytes>,
    headers: Vec<(String, String)>,
    id: Option<String>,
    payload: Bytes,
}

/// A message that is not a sluice record.
#[derive(Debug, thiserror::Error)]
#[error("message {sequence} of stream {stream} is not a sluice record: {reason}")]
pub struct BadEnvelope {
    /// The stream.
    pub stream: String,
    /// Its sequence.
    pub sequence: u64,
    /// What is wrong.
    pub reason: String,
}

/// The payload of the JetStream message holding `record`, stamped with
/// `timestamp_ms`.
pub fn encode(record: &NewRecord, timestamp_ms: i64) -> Bytes {
    let out = Out {
        version: VERSION,
        timestamp_ms,
        key: record.key.as_deref(),
        headers: &record.headers,
        id: record.id.as_deref(),
        payload: &record.payload,
    };
    // Serialising plain fields into a Vec cannot fail.
    Bytes::from(rmp_serde::to_vec(&out).unwrap_or_default())
}

/// The record held by message `sequence` of `stream`.
pub fn decode(stream: &str, sequence: u64, payload: &[u8]) -> Result<Record, BadEnvelope> {
    let bad = |reason: String| BadEnvelope {
        stream: stream.to_owned(),
        sequence,
        reason,
    };
    let record: In = rmp_serde::from_slice(payload).map_err(|e| bad(e.to_string()))?;
    if record.version != VERSION {
        return Err(bad(format!("unknown envelope version {}", record.version)));
    }
    Ok(Record {
        offset: sequence.saturating_sub(1),
        timestamp_ms: record.timestamp_ms,
        key: record.key,
        headers: record.headers,
        payload: record.payload,
        id: record.id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_survives_the_envelope() {
        let record = NewRecord {
            key: Some(Bytes::from_static(b"\x00\xffkey")),
            headers: vec![("trace".into(), "a\r\nb".into())],
            payload: Bytes::from_static(b"\x00binary\xff"),
            id: Some("id-1".into()),
        };
        let back = decode("S", 8, &encode(&record, 42)).expect("decodes");
        assert_eq!(back.offset, 7);
        assert_eq!(back.timestamp_ms, 42);
        assert_eq!(back.key, record.key);
        assert_eq!(back.headers, record.headers);
        assert_eq!(back.payload, record.payload);
        assert_eq!(back.id, record.id);
    }

    #[test]
    fn foreign_messages_are_refused_not_panicked_on() {
        for junk in [&b""[..], b"hello", b"\x93\x02\x00\x00"] {
            let err = decode("S", 1, junk).expect_err("refused");
            assert!(err.to_string().contains("not a sluice record"), "{err}");
        }
    }
}
