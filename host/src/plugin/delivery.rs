//! Plugins on the delivery side: a subscription may name a loaded plugin
//! that filters or transforms what it receives. What is stored does not
//! change. `pass` delivers, `replace` delivers the replacements (same
//! topic, offset and time), anything else (`drop`, `route`, `reject`,
//! `dead-letter`) means "not for this subscriber". A failing call fails
//! closed: that chunk is not delivered and is counted as dropped.

use std::sync::Arc;

use bytes::Bytes;

use super::bindings::{Batch, Outcome};
use super::instance::LoadedPlugin;
use super::pipeline::{decode_headers, lay_out, BatchEntry};
use crate::broker::{Chunk, Slice, StoredBatch};
use crate::store::Record;

fn to_batch(topic: &str, records: &[Record]) -> Batch {
    lay_out(
        topic,
        records.iter().map(|r| BatchEntry {
            key: r.key.as_deref(),
            headers: &r.headers,
            payload: &r.payload,
            timestamp_ms: r.timestamp_ms,
            offset: Some(r.offset),
        }),
    )
}

/// Runs `plugin` over a chunk about to be delivered (blocking).
pub fn apply(plugin: &LoadedPlugin, chunk: Chunk) -> Chunk {
    let mut out = Chunk {
        slices: Vec::with_capacity(chunk.slices.len()),
        dropped: chunk.dropped,
    };
    for slice in chunk.slices {
        let records = slice.records();
        if records.is_empty() {
            continue;
        }
        let batch = to_batch(&slice.batch.topic, records);
        let outcomes = match plugin.call(&batch) {
            Ok(outcomes) => outcomes,
            Err(error) => {
                tracing::warn!(plugin = plugin.name(), topic = %slice.batch.topic, error = %error, "delivery plugin failed; not delivering its batch");
                out.dropped += records.len() as u64;
                continue;
            }
        };
        let mut kept = Vec::with_capacity(records.len());
        for (record, outcome) in records.iter().zip(&outcomes.results) {
            match outcome {
                Outcome::Pass => kept.push(record.clone()),
                Outcome::Replace(span) => {
                    let o = &outcomes.output;
                    for j in
                        span.start as usize..(span.start as usize).saturating_add(span.len as usize)
                    {
                        let part = |data: &[u8], ends: &[u32]| -> Option<Vec<u8>> {
                            let end = *ends.get(j)? as usize;
                            let start = if j == 0 {
                                0
                            } else {
                                *ends.get(j - 1)? as usize
                            };
                            data.get(start..end).map(<[u8]>::to_vec)
                        };
                        let (Some(payload), Some(headers)) = (
                            part(&o.payloads, &o.payload_ends),
                            part(&o.headers, &o.header_ends),
                        ) else {
                            break;
                        };
                        let key = if o.flags.get(j).is_some_and(|f| f & 1 != 0) {
                            part(&o.keys, &o.key_ends).map(Bytes::from)
                        } else {
                            None
                        };
                        kept.push(Record {
                            offset: record.offset,
                            timestamp_ms: record.timestamp_ms,
                            key,
                            headers: decode_headers(&headers).unwrap_or_default(),
                            payload: Bytes::from(payload),
                            id: record.id.clone(),
                        });
                    }
                }
                _ => {}
            }
        }
        if !kept.is_empty() {
            out.slices.push(Slice {
                batch: Arc::new(StoredBatch {
                    topic: slice.batch.topic.clone(),
                    incarnation: slice.batch.incarnation,
                    records: kept,
                }),
                skip: 0,
                attempt: slice.attempt,
            });
        }
    }
    out
}
