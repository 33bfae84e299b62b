//! [`Answer`]: a plugin's answer to one batch, checked, with the new
//! messages of its `replace` outcomes turned into records.
//!
//! The publish pipeline and delivery plugins both read answers through
//! [`call`], so a malformed replacement is refused the same way on both
//! paths: the whole answer is refused and the call counts as failed
//! ([`CallError::Malformed`]), like a trap. Nothing of it is applied, so
//! nothing is half replaced or quietly truncated.

use std::ops::Range;

use bytes::Bytes;

use super::bindings::{Batch, Messages, Outcome, Outcomes, Span};
use super::instance::{LoadedPlugin, PluginError};
use crate::store::NewRecord;

/// Why the new messages of an answer cannot be turned into records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedReplacement {
    /// The `-ends` lists and `flags` do not all have one entry per new message.
    #[error("the lists of new messages disagree on their number ({payloads} payload ends, {keys} key ends, {headers} header ends, {flags} flags)")]
    Counts {
        /// Entries of `payload-ends`.
        payloads: usize,
        /// Entries of `key-ends`.
        keys: usize,
        /// Entries of `header-ends`.
        headers: usize,
        /// Entries of `flags`.
        flags: usize,
    },
    /// An end offset is before the one of the previous message or past its buffer.
    #[error("new message {index}: {field} end {end} is before the previous end {previous} or past the {len} bytes of {field}s")]
    Ends {
        /// The new message.
        index: usize,
        /// Which buffer: `payload`, `key` or `header`.
        field: &'static str,
        /// The previous message's end (0 for the first).
        previous: u32,
        /// This message's end.
        end: u32,
        /// The buffer's length.
        len: usize,
    },
    /// A new message's headers do not decode (a truncated field or a name
    /// or value that is not UTF-8).
    #[error("new message {index}: its headers do not decode")]
    Headers {
        /// The new message.
        index: usize,
    },
    /// A `replace` outcome refers to new messages the plugin did not return.
    #[error("outcome {outcome} replaces its message with new messages {start}..{start}+{len}, but there are {count}")]
    Span {
        /// The outcome (the message of the batch).
        outcome: usize,
        /// First new message it names.
        start: u32,
        /// How many.
        len: u32,
        /// New messages returned.
        count: usize,
    },
}

/// Why an answer is not used: either way, the call failed for its batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The call failed (trap, timeout, out of memory, wrong number of outcomes).
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The plugin answered, but its new messages are malformed.
    #[error("plugin {plugin}: malformed replacement: {error} (a bug in the plugin; sluice-sdk's Output always lays them out right)")]
    Malformed {
        /// The plugin.
        plugin: String,
        /// What is wrong.
        error: MalformedReplacement,
    },
}

/// A plugin's well-formed answer to one batch.
#[derive(Debug)]
pub struct Answer {
    /// One outcome per message of the batch, in order.
    pub results: Vec<Outcome>,
    /// Per message, the records its `replace` outcome stands for, in order
    /// (empty for other outcomes, and for a `replace` that drops).
    pub replacements: Vec<Vec<NewRecord>>,
    /// Topic names that `route` outcomes refer to.
    pub topics: Vec<String>,
}

/// Calls `plugin` on `batch` and checks its answer (blocking: run it on a
/// blocking thread).
pub fn call(plugin: &LoadedPlugin, batch: &std::sync::Arc<Batch>) -> Result<Answer, CallError> {
    let outcomes = plugin.call(batch)?;
    Answer::new(outcomes).map_err(|error| CallError::Malformed {
        plugin: plugin.name().to_owned(),
        error,
    })
}

impl Answer {
    /// Turns the new messages of `outcomes` into records. All or nothing:
    /// any malformed part of them (even one no outcome refers to) refuses
    /// the whole answer.
    pub fn new(outcomes: Outcomes) -> Result<Answer, MalformedReplacement> {
        let output = &outcomes.output;
        let count = check_layout(output)?;
        let replacements = outcomes
            .results
            .iter()
            .enumerate()
            .map(|(outcome, result)| match result {
                Outcome::Replace(span) => span_range(*span, count)
                    .ok_or(MalformedReplacement::Span {
                        outcome,
                        start: span.start,
                        len: span.len,
                        count,
                    })?
                    .map(|index| record(output, index))
                    .collect(),
                _ => Ok(Vec::new()),
            })
            .collect::<Result<_, _>>()?;
        Ok(Answer {
            results: outcomes.results,
            replacements,
            topics: outcomes.topics,
        })
    }
}

/// The number of new messages, once every list has one entry per message
/// and every end is in order and inside its buffer.
fn check_layout(out: &Messages) -> Result<usize, MalformedReplacement> {
    let count = out.payload_ends.len();
    if [out.key_ends.len(), out.header_ends.len(), out.flags.len()] != [count; 3] {
        return Err(MalformedReplacement::Counts {
            payloads: count,
            keys: out.key_ends.len(),
            headers: out.header_ends.len(),
            flags: out.flags.len(),
        });
    }
    check_ends("payload", &out.payloads, &out.payload_ends)?;
    check_ends("key", &out.keys, &out.key_ends)?;
    check_ends("header", &out.headers, &out.header_ends)?;
    Ok(count)
}

fn check_ends(field: &'static str, data: &[u8], ends: &[u32]) -> Result<(), MalformedReplacement> {
    let mut previous = 0;
    for (index, &end) in ends.iter().enumerate() {
        if end < previous || end as usize > data.len() {
            return Err(MalformedReplacement::Ends {
                index,
                field,
                previous,
                end,
                len: data.len(),
            });
        }
        previous = end;
    }
    Ok(())
}

/// The new messages `span` names, if all of them are there.
fn span_range(span: Span, count: usize) -> Option<Range<usize>> {
    let start = span.start as usize;
    let end = start.checked_add(span.len as usize)?;
    (end <= count).then_some(start..end)
}

/// New message `index` as a record; its ends were checked by
/// [`check_layout`].
fn record(out: &Messages, index: usize) -> Result<NewRecord, MalformedReplacement> {
    fn part<'a>(data: &'a [u8], ends: &[u32], index: usize) -> &'a [u8] {
        let start = index.checked_sub(1).map_or(0, |i| ends[i] as usize);
        &data[start..ends[index] as usize]
    }
    let headers = decode_headers(part(&out.headers, &out.header_ends, index))
        .ok_or(MalformedReplacement::Headers { index })?;
    let has_key = out.flags[index] & 1 != 0;
    Ok(NewRecord {
        key: has_key.then(|| Bytes::copy_from_slice(part(&out.keys, &out.key_ends, index))),
        headers,
        payload: Bytes::copy_from_slice(part(&out.payloads, &out.payload_ends, index)),
        id: None,
    })
}

/// Decodes one message's headers (`u32` LE length, UTF-8 name, `u32` LE
/// length, UTF-8 value, repeated); `None` if the encoding is broken.
pub(crate) fn decode_headers(mut data: &[u8]) -> Option<Vec<(String, String)>> {
    let mut headers = Vec::new();
    let field = |data: &mut &[u8]| -> Option<String> {
        let len = u32::from_le_bytes(data.get(..4)?.try_into().ok()?) as usize;
        let end = len.checked_add(4)?;
        let text = std::str::from_utf8(data.get(4..end)?).ok()?.to_owned();
        *data = &data[end..];
        Some(text)
    };
    while !data.is_empty() {
        let name = field(&mut data)?;
        let value = field(&mut data)?;
        headers.push((name, value));
    }
    Some(headers)
}

#[cfg(test)]
mod tests {
    use super::super::hostile;
    use super::super::pipeline::{lay_out, BatchEntry};
    use super::*;

    type Message<'a> = (&'a str, Option<&'a str>, &'a [(String, String)]);

    /// New messages laid out the way the SDK does.
    fn messages(list: &[Message<'_>]) -> Messages {
        let b = lay_out(
            "t",
            list.iter().map(|(payload, key, headers)| BatchEntry {
                key: key.map(str::as_bytes),
                headers,
                payload: payload.as_bytes(),
                timestamp_ms: 0,
                offset: None,
            }),
        );
        Messages {
            payloads: b.payloads,
            payload_ends: b.payload_ends,
            keys: b.keys,
            key_ends: b.key_ends,
            headers: b.headers,
            header_ends: b.header_ends,
            flags: b.flags,
        }
    }

    fn replace(start: u32, len: u32) -> Outcome {
        Outcome::Replace(Span { start, len })
    }

    fn outcomes(results: Vec<Outcome>, output: Messages) -> Outcomes {
        Outcomes {
            results,
            output,
            topics: Vec::new(),
        }
    }

    fn good() -> Messages {
        let h = [("a".to_owned(), "1".to_owned())];
        messages(&[("one", Some("k"), &h), ("two", None, &[]), ("", None, &[])])
    }

    #[test]
    fn well_formed_replacements_become_records() {
        let answer = Answer::new(outcomes(
            vec![Outcome::Pass, replace(0, 2), replace(3, 0), replace(2, 1)],
            good(),
        ))
        .unwrap();
        assert_eq!(answer.results.len(), 4);
        let r = &answer.replacements;
        assert!(r[0].is_empty() && r[2].is_empty());
        assert_eq!(r[1].len(), 2);
        assert_eq!(r[1][0].payload.as_ref(), b"one");
        assert_eq!(r[1][0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(r[1][0].headers, vec![("a".to_owned(), "1".to_owned())]);
        assert_eq!(r[1][1].payload.as_ref(), b"two");
        assert_eq!(r[1][1].key, None);
        assert_eq!(r[3][0].payload.as_ref(), b"");
    }

    /// Each shape of malformed answer, and the error it is refused with.
    #[test]
    fn malformed_replacements_are_refused_whole() {
        let results = || vec![replace(0, 1), replace(1, 2)];
        let refused = |output: Messages| Answer::new(outcomes(results(), output)).unwrap_err();

        let mut short_flags = good();
        short_flags.flags.pop();
        assert!(matches!(
            refused(short_flags),
            MalformedReplacement::Counts {
                flags: 2,
                payloads: 3,
                ..
            }
        ));

        let mut decreasing = good();
        decreasing.payload_ends = vec![3, 1, 6];
        assert!(matches!(
            refused(decreasing),
            MalformedReplacement::Ends {
                index: 1,
                field: "payload",
                previous: 3,
                end: 1,
                ..
            }
        ));

        let mut past_buffer = good();
        past_buffer.key_ends[2] = 9;
        assert!(matches!(
            refused(past_buffer),
            MalformedReplacement::Ends {
                index: 2,
                field: "key",
                end: 9,
                len: 1,
                ..
            }
        ));

        // Message 2 is named by no outcome: the answer is refused anyway.
        let mut unreferenced = good();
        unreferenced.header_ends[2] = 0;
        let error = Answer::new(outcomes(vec![replace(0, 1)], unreferenced)).unwrap_err();
        assert!(matches!(
            error,
            MalformedReplacement::Ends {
                index: 2,
                field: "header",
                ..
            }
        ));

        let mut stray_byte = good();
        stray_byte.headers.push(0xff);
        *stray_byte.header_ends.last_mut().unwrap() += 1;
        assert_eq!(
            refused(stray_byte),
            MalformedReplacement::Headers { index: 2 }
        );

        let not_utf8 = [("a".to_owned(), "1".to_owned())];
        let mut not_utf8 = messages(&[("x", None, &not_utf8)]);
        not_utf8.headers[4] = 0xff;
        let error = Answer::new(outcomes(vec![replace(0, 1)], not_utf8)).unwrap_err();
        assert_eq!(error, MalformedReplacement::Headers { index: 0 });

        let past_end = Answer::new(outcomes(vec![replace(0, 1), replace(2, 2)], good()));
        assert_eq!(
            past_end.unwrap_err(),
            MalformedReplacement::Span {
                outcome: 1,
                start: 2,
                len: 2,
                count: 3
            }
        );
        let wrapping = Answer::new(outcomes(vec![replace(u32::MAX, 2)], good()));
        assert!(matches!(
            wrapping.unwrap_err(),
            MalformedReplacement::Span { outcome: 0, .. }
        ));
        let empty_but_out_of_range = Answer::new(outcomes(vec![replace(4, 0)], good()));
        assert!(matches!(
            empty_but_out_of_range.unwrap_err(),
            MalformedReplacement::Span { .. }
        ));
    }

    #[test]
    fn a_malformed_answer_from_a_component_is_a_failed_call() {
        let (registry, _dir) = hostile("replace-past-end");
        let plugin = registry.current().plugins["hostile"].clone();
        let batch = std::sync::Arc::new(lay_out(
            "t",
            ["a", "b"].iter().map(|p| BatchEntry {
                key: None,
                headers: &[],
                payload: p.as_bytes(),
                timestamp_ms: 0,
                offset: None,
            }),
        ));
        match call(&plugin, &batch) {
            Err(CallError::Malformed { plugin, error }) => {
                assert_eq!(plugin, "hostile");
                assert_eq!(
                    error,
                    MalformedReplacement::Span {
                        outcome: 1,
                        start: 1,
                        len: 2,
                        count: 2
                    }
                );
            }
            other => panic!("refused as malformed: {other:?}"),
        }
    }
}
