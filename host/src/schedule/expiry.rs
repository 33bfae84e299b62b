//! Messages whose time-to-live ran out, as a subscription sees them: a live
//! one skips them, a replay shows them marked with
//! [`sluice_proto::EXPIRED_HEADER`].

use sluice_proto::EXPIRED_HEADER;

use super::headers::expired;
use crate::delivery::{Chunk, Slice};

/// `chunk` without its expired messages, or with them marked when `mark`.
/// A chunk without any is returned as it is (no copy).
pub(crate) fn expire(chunk: Chunk, mark: bool, now_ms: i64) -> Chunk {
    let any = chunk.slices.iter().any(|slice| {
        slice
            .records()
            .iter()
            .any(|r| expired(&r.headers, r.timestamp_ms, now_ms))
    });
    if !any {
        return chunk;
    }
    let mut out = Chunk {
        slices: Vec::with_capacity(chunk.slices.len()),
        dropped: chunk.dropped,
    };
    for slice in chunk.slices {
        let records = slice.records();
        if !records
            .iter()
            .any(|r| expired(&r.headers, r.timestamp_ms, now_ms))
        {
            out.slices.push(slice);
            continue;
        }
        let kept: Vec<_> = records
            .iter()
            .filter_map(|r| {
                if !expired(&r.headers, r.timestamp_ms, now_ms) {
                    return Some(r.clone());
                }
                mark.then(|| {
                    let mut r = r.clone();
                    r.headers
                        .push((EXPIRED_HEADER.to_owned(), "true".to_owned()));
                    r
                })
            })
            .collect();
        if !kept.is_empty() {
            let batch = &slice.batch;
            out.slices.push(Slice::of(
                &batch.topic,
                batch.incarnation,
                kept,
                slice.attempt,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use sluice_proto::TTL_HEADER;

    use super::*;
    use crate::store::Record;

    fn record(offset: u64, ttl: Option<&str>) -> Record {
        Record {
            offset,
            timestamp_ms: 1_000,
            key: None,
            headers: ttl
                .map(|t| vec![(TTL_HEADER.to_owned(), t.to_owned())])
                .unwrap_or_default(),
            payload: Bytes::from_static(b"x"),
            id: None,
        }
    }

    fn chunk() -> Chunk {
        let topic: Arc<str> = Arc::from("t");
        let records = vec![
            record(0, Some("10")),
            record(1, None),
            record(2, Some("5000")),
        ];
        Chunk {
            slices: vec![Slice::of(&topic, 1, records, 0)],
            dropped: 0,
        }
    }

    fn offsets(chunk: &Chunk) -> Vec<(u64, bool)> {
        chunk
            .slices
            .iter()
            .flat_map(|s| s.records().iter())
            .map(|r| (r.offset, r.headers.iter().any(|(n, _)| n == EXPIRED_HEADER)))
            .collect()
    }

    #[test]
    fn live_subscriptions_skip_what_expired_and_replays_mark_it() {
        assert_eq!(
            offsets(&expire(chunk(), false, 1_011)),
            [(1, false), (2, false)]
        );
        assert_eq!(
            offsets(&expire(chunk(), true, 1_011)),
            [(0, true), (1, false), (2, false)]
        );
        assert_eq!(
            offsets(&expire(chunk(), false, 1_010)),
            [(0, false), (1, false), (2, false)]
        );
    }
}
