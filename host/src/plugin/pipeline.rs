//! [`Pipeline`]: the stages attached to a topic pattern, run in order on
//! each publish before anything is stored.
//!
//! Each stage gets one `handle` call per batch. `pass` keeps a message for
//! the next stage, `replace` swaps it for new messages (which go on through
//! the later stages), `route` finishes it into other topics (whose own
//! pipelines do not run), `drop`, `reject` and `dead-letter` finish it too.
//! A stage that fails (trap, timeout, out of memory, wrong number of
//! outcomes, a malformed replacement: see [`super::answer`]) is handled by
//! the pipeline's `on_error` for that batch only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sluice_proto::Pattern;

use super::answer;
use super::bindings::{Batch, Outcome};
use super::instance::LoadedPlugin;
use super::stats::OUTCOMES;
use crate::store::NewRecord;
use crate::trace::record::{RunReport, StageRun, Step, StepOutcome};

/// Header stamped on what a pipeline stores when `[plugins]
/// version_header` is on: `name@hash` of each stage that handled the
/// message, comma-separated, in order.
pub const VERSIONS_HEADER: &str = "sluice-plugin-versions";

pub use crate::config::OnError;

/// Where an output of the pipeline goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// The topic it was published to.
    Own,
    /// Another topic (a `route` outcome).
    Topic(String),
    /// The dead-letter topic, with the reason and the stage.
    DeadLetter { reason: String, stage: String },
}

/// What became of one published message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Disposition {
    /// Set if a stage rejected it: the publish of this message fails.
    pub rejected: Option<String>,
    /// What to store, and where. Empty (and not rejected): dropped.
    pub outputs: Vec<(Destination, NewRecord)>,
}

/// A run that took less than this may run on an async worker: handing the
/// worker over (`block_in_place`) costs more than a pass-through stage's
/// whole run of a 64-message batch (BENCHMARKS.md, "Latest run").
pub const QUICK_RUN: Duration = Duration::from_micros(200);

/// How long a pipeline's last run took, in nanoseconds. A new pipeline
/// (or one over new plugin versions) starts as slow, so a stage that
/// spins does not hold an async worker even once.
#[derive(Debug)]
pub struct LastRun(AtomicU64);

impl Default for LastRun {
    fn default() -> Self {
        LastRun(AtomicU64::new(u64::MAX))
    }
}

impl LastRun {
    fn record(&self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.0.store(nanos, Ordering::Relaxed);
    }

    fn quick(&self) -> bool {
        self.0.load(Ordering::Relaxed) < QUICK_RUN.as_nanos() as u64
    }
}

/// Where `outcome` is counted in [`super::stats::Outcomes`], and its
/// name in the event record.
fn outcome_index(outcome: &Outcome) -> (usize, StepOutcome) {
    match outcome {
        Outcome::Pass => (0, StepOutcome::Pass),
        Outcome::Drop => (1, StepOutcome::Drop),
        Outcome::Replace(_) => (2, StepOutcome::Replace),
        Outcome::Route(_) => (3, StepOutcome::Route),
        Outcome::Reject(_) => (4, StepOutcome::Reject),
        Outcome::DeadLetter(_) => (5, StepOutcome::DeadLetter),
    }
}

/// One pipeline from the config.
#[derive(Debug)]
pub struct Pipeline {
    /// The topics it applies to.
    pub pattern: Pattern,
    /// Its stages, in order.
    pub stages: Vec<Arc<LoadedPlugin>>,
    /// What a failing stage does.
    pub on_error: OnError,
    /// Stamp [`VERSIONS_HEADER`] on outputs.
    pub version_header: bool,
    /// How long its last run took: where the next one runs.
    pub last_run: LastRun,
}

struct Item {
    origin: usize,
    record: NewRecord,
    /// Stages (by index) that handled it, for the versions header.
    handled: u64,
}

fn encode_headers(out: &mut Vec<u8>, headers: &[(String, String)]) {
    for (name, value) in headers {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value.as_bytes());
    }
}

/// One message as it is laid out into a [`Batch`].
pub(crate) struct BatchEntry<'a> {
    pub key: Option<&'a [u8]>,
    pub headers: &'a [(String, String)],
    pub payload: &'a [u8],
    pub timestamp_ms: i64,
    /// Known for deliveries, not for publishes.
    pub offset: Option<u64>,
}

/// Lays entries out as the flat batch of the WIT contract (the one place
/// that knows the layout on the host side).
pub(crate) fn lay_out<'a>(
    topic: &str,
    entries: impl ExactSizeIterator<Item = BatchEntry<'a>>,
) -> Batch {
    let n = entries.len();
    let mut batch = Batch {
        topic: topic.to_owned(),
        payloads: Vec::new(),
        payload_ends: Vec::with_capacity(n),
        keys: Vec::new(),
        key_ends: Vec::with_capacity(n),
        headers: Vec::new(),
        header_ends: Vec::with_capacity(n),
        timestamps: Vec::with_capacity(n),
        offsets: Vec::with_capacity(n),
        flags: Vec::with_capacity(n),
    };
    for entry in entries {
        batch.payloads.extend_from_slice(entry.payload);
        batch.payload_ends.push(batch.payloads.len() as u32);
        if let Some(key) = entry.key {
            batch.keys.extend_from_slice(key);
        }
        batch.key_ends.push(batch.keys.len() as u32);
        encode_headers(&mut batch.headers, entry.headers);
        batch.header_ends.push(batch.headers.len() as u32);
        batch.timestamps.push(entry.timestamp_ms);
        batch.offsets.push(entry.offset.unwrap_or(0));
        batch
            .flags
            .push(u8::from(entry.key.is_some()) | if entry.offset.is_some() { 2 } else { 0 });
    }
    batch
}

/// Lays messages being published out as the flat batch of the WIT contract.
pub fn to_batch<'a>(
    topic: &str,
    records: impl ExactSizeIterator<Item = &'a NewRecord>,
    now_ms: i64,
) -> Batch {
    lay_out(
        topic,
        records.map(|r| BatchEntry {
            key: r.key.as_deref(),
            headers: &r.headers,
            payload: &r.payload,
            timestamp_ms: now_ms,
            offset: None,
        }),
    )
}

/// What a plugin's log lines say of the batch it handles: its topic, and a
/// message's trace id (from its `traceparent`) and offset, where known.
impl super::logs::Handling for Batch {
    fn topic(&self) -> &str {
        &self.topic
    }

    fn message(&self, index: u32) -> Option<(Option<String>, Option<u64>)> {
        let i = index as usize;
        let end = *self.header_ends.get(i)? as usize;
        let start = if i == 0 {
            0
        } else {
            self.header_ends[i - 1] as usize
        };
        let headers = self
            .headers
            .get(start..end)
            .and_then(answer::decode_headers)
            .unwrap_or_default();
        let trace = crate::trace::context::trace_id(&headers).map(|t| t.to_string());
        let offset = (self.flags.get(i).copied().unwrap_or(0) & 2 != 0)
            .then(|| self.offsets.get(i).copied())
            .flatten();
        Some((trace, offset))
    }
}

/// Sets the versions header of `record` to the stages in `handled`.
fn stamp(stages: &[Arc<LoadedPlugin>], handled: u64, record: &mut NewRecord) {
    let mut value = String::new();
    for (i, stage) in stages.iter().enumerate() {
        if handled & (1u64 << i.min(63)) != 0 {
            if !value.is_empty() {
                value.push(',');
            }
            value.push_str(stage.name());
            value.push('@');
            value.push_str(&stage.hash);
        }
    }
    record.headers.retain(|(name, _)| name != VERSIONS_HEADER);
    record.headers.push((VERSIONS_HEADER.to_owned(), value));
}

impl Pipeline {
    /// `pattern: a -> b -> c`, for logs.
    pub fn describe(&self) -> String {
        let stages: Vec<&str> = self.stages.iter().map(|s| s.name()).collect();
        format!("{}: {}", self.pattern, stages.join(" -> "))
    }

    /// True if the last run took under [`QUICK_RUN`]: the next may run on
    /// an async worker; otherwise it should leave the worker.
    pub fn runs_quickly(&self) -> bool {
        self.last_run.quick()
    }

    /// Runs every stage over `records` published to `topic`, blocking for
    /// as long as the stages take (see [`Pipeline::runs_quickly`]).
    /// Returns one disposition per record, and what each stage did.
    pub fn run(
        &self,
        topic: &str,
        records: Vec<NewRecord>,
        now_ms: i64,
    ) -> (Vec<Disposition>, RunReport) {
        let started = Instant::now();
        let mut report = RunReport::default();
        let dispositions = self.run_stages(topic, records, now_ms, &mut report);
        self.last_run.record(started.elapsed());
        (dispositions, report)
    }

    fn run_stages(
        &self,
        topic: &str,
        records: Vec<NewRecord>,
        now_ms: i64,
        report: &mut RunReport,
    ) -> Vec<Disposition> {
        let mut dispositions = vec![Disposition::default(); records.len()];
        let mut active: Vec<Item> = records
            .into_iter()
            .enumerate()
            .map(|(origin, record)| Item {
                origin,
                record,
                handled: 0,
            })
            .collect();
        for (index, stage) in self.stages.iter().enumerate() {
            if active.is_empty() {
                break;
            }
            let bit = 1u64 << index.min(63);
            let batch = Arc::new(to_batch(topic, active.iter().map(|i| &i.record), now_ms));
            let (started, clock) = (SystemTime::now(), Instant::now());
            let called = answer::call(stage, &batch);
            let run = report.runs.len() as u32;
            report.runs.push(StageRun {
                plugin: stage.name().to_owned(),
                version: stage.hash.clone(),
                started,
                took_us: clock.elapsed().as_micros() as u64,
                error: called.as_ref().err().map(|e| e.to_string()),
            });
            let answer = match called {
                Ok(answer) => answer,
                Err(error) => {
                    let reason = error.to_string();
                    report.steps.extend(active.iter().map(|item| Step {
                        origin: item.origin as u32,
                        run,
                        outcome: StepOutcome::Failed,
                    }));
                    tracing::warn!(plugin = stage.name(), %topic, messages = active.len(), on_error = ?self.on_error, error = %reason, "pipeline stage failed");
                    match self.on_error {
                        OnError::Pass => continue,
                        OnError::Drop => active.clear(),
                        OnError::Reject => {
                            for item in active.drain(..) {
                                dispositions[item.origin].rejected = Some(reason.clone());
                            }
                        }
                        OnError::DeadLetter => {
                            for item in active.drain(..) {
                                let to = Destination::DeadLetter {
                                    reason: reason.clone(),
                                    stage: stage.name().to_owned(),
                                };
                                dispositions[item.origin].outputs.push((to, item.record));
                            }
                        }
                    }
                    continue;
                }
            };
            let mut next = Vec::with_capacity(active.len());
            // Counted per batch, added to the shared counters once.
            let mut counts = [0u64; OUTCOMES];
            let outcomes = answer.results.into_iter().zip(answer.replacements);
            for (mut item, (outcome, mut replacements)) in active.drain(..).zip(outcomes) {
                item.handled |= bit;
                let disposition = &mut dispositions[item.origin];
                if self.version_header {
                    stamp(&self.stages, item.handled, &mut item.record);
                }
                let (counted, step) = outcome_index(&outcome);
                counts[counted] += 1;
                report.steps.push(Step {
                    origin: item.origin as u32,
                    run,
                    outcome: step,
                });
                match outcome {
                    Outcome::Pass => next.push(item),
                    Outcome::Drop => {}
                    Outcome::Replace(_) => {
                        // One-for-one keeps the producer's id (de-duplication).
                        if let [only] = &mut replacements[..] {
                            only.id = item.record.id.clone();
                        }
                        next.extend(replacements.into_iter().map(|record| Item {
                            origin: item.origin,
                            record,
                            handled: item.handled,
                        }));
                    }
                    Outcome::Route(span) => {
                        let start = span.start as usize;
                        let topics = start
                            .checked_add(span.len as usize)
                            .and_then(|end| answer.topics.get(start..end));
                        match topics {
                            Some(topics) => {
                                for t in topics {
                                    disposition
                                        .outputs
                                        .push((Destination::Topic(t.clone()), item.record.clone()));
                                }
                            }
                            None => {
                                let to = Destination::DeadLetter {
                                    reason:
                                        "route outcome refers to topics the plugin did not return"
                                            .into(),
                                    stage: stage.name().to_owned(),
                                };
                                disposition.outputs.push((to, item.record));
                            }
                        }
                    }
                    Outcome::Reject(reason) => disposition.rejected = Some(reason),
                    Outcome::DeadLetter(reason) => {
                        let to = Destination::DeadLetter {
                            reason,
                            stage: stage.name().to_owned(),
                        };
                        disposition.outputs.push((to, item.record));
                    }
                }
            }
            stage.stats.record_outcomes(&counts);
            active = next;
        }
        for mut item in active {
            if self.version_header {
                stamp(&self.stages, item.handled, &mut item.record);
            }
            dispositions[item.origin]
                .outputs
                .push((Destination::Own, item.record));
        }
        for d in &mut dispositions {
            if d.rejected.is_some() {
                d.outputs.clear();
            }
        }
        dispositions
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::answer::{decode_headers, hostile};
    use super::*;

    #[test]
    fn a_log_line_about_a_message_names_its_trace_and_offset() {
        use super::super::logs::Handling;
        let records = [
            NewRecord::default(),
            NewRecord {
                headers: vec![(
                    "traceparent".into(),
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
                )],
                ..NewRecord::default()
            },
        ];
        let mut batch = to_batch("t", records.iter(), 0);
        batch.flags[1] |= 2;
        batch.offsets[1] = 7;
        assert_eq!(batch.message(0), Some((None, None)));
        assert_eq!(
            batch.message(1),
            Some((Some("4bf92f3577b34da6a3ce929d0e0e4736".into()), Some(7)))
        );
        assert_eq!(batch.message(2), None);
    }

    #[test]
    fn batches_are_laid_out_flat() {
        let records = [
            NewRecord {
                key: Some(Bytes::from_static(b"k")),
                headers: vec![("a".into(), "1".into())],
                payload: Bytes::from_static(b"hello"),
                id: None,
            },
            NewRecord {
                payload: Bytes::from_static(b"!"),
                ..NewRecord::default()
            },
        ];
        let b = to_batch("t", records.iter(), 5);
        assert_eq!(b.payloads, b"hello!");
        assert_eq!(b.payload_ends, vec![5, 6]);
        assert_eq!(b.key_ends, vec![1, 1]);
        assert_eq!(b.flags, vec![1, 0]);
        assert_eq!(
            decode_headers(&b.headers[..b.header_ends[0] as usize]).unwrap(),
            vec![("a".to_owned(), "1".to_owned())]
        );
        assert_eq!(b.timestamps, vec![5, 5]);
    }

    /// A pipeline of one `test_hostile` stage in `mode`, and what it makes
    /// of three messages (kept alive: the registry's cache dir).
    fn run_hostile(mode: &str, on_error: OnError) -> (Vec<NewRecord>, Vec<Disposition>) {
        let (registry, _dir) = hostile(mode);
        let pipeline = Pipeline {
            pattern: Pattern::parse("t").unwrap(),
            stages: vec![registry.current().plugins["hostile"].clone()],
            on_error,
            version_header: false,
            last_run: LastRun::default(),
        };
        let records: Vec<NewRecord> = ["a", "b", "c"]
            .into_iter()
            .map(|p| NewRecord {
                payload: Bytes::from(p),
                id: Some(format!("id-{p}")),
                ..NewRecord::default()
            })
            .collect();
        let (dispositions, _) = pipeline.run("t", records.clone(), 0);
        (records, dispositions)
    }

    #[test]
    fn a_pipeline_runs_on_an_async_worker_only_after_a_quick_run() {
        let (registry, _dir) = hostile("loop");
        let pipeline = Pipeline {
            pattern: Pattern::parse("t").unwrap(),
            stages: vec![registry.current().plugins["hostile"].clone()],
            on_error: OnError::Drop,
            version_header: false,
            last_run: LastRun::default(),
        };
        assert!(!pipeline.runs_quickly(), "a new pipeline's cost is unknown");
        pipeline.last_run.record(Duration::from_micros(20));
        assert!(pipeline.runs_quickly());
        // A stage that spins to its deadline (100 ms) makes it slow again.
        let records = vec![NewRecord::default()];
        let (dispositions, report) = pipeline.run("t", records, 0);
        assert!(dispositions[0].outputs.is_empty(), "dropped on the timeout");
        assert!(
            report.runs[0].error.is_some(),
            "the stage's error is reported"
        );
        assert_eq!(report.steps.len(), 1);
        assert_eq!(report.steps[0].outcome, StepOutcome::Failed);
        assert!(!pipeline.runs_quickly());
    }

    #[test]
    fn well_formed_replacements_go_on_in_place_of_the_message() {
        let (records, dispositions) = run_hostile("stamp", OnError::DeadLetter);
        for (record, d) in records.iter().zip(&dispositions) {
            let [(Destination::Own, stored)] = &d.outputs[..] else {
                panic!("replaced: {d:?}");
            };
            assert_eq!((&stored.payload, &stored.id), (&record.payload, &record.id));
            assert!(stored.headers.iter().any(|(n, _)| n == "x-stamp"));
        }
    }

    /// Only the last message's replacement is malformed; the whole batch is
    /// handled by `on_error`, like a trap, and nothing is replaced.
    #[test]
    fn a_malformed_replacement_fails_the_stage_for_the_whole_batch() {
        for mode in ["replace-past-end", "replace-bad-headers"] {
            let (records, dispositions) = run_hostile(mode, OnError::DeadLetter);
            for (record, d) in records.iter().zip(&dispositions) {
                match &d.outputs[..] {
                    [(Destination::DeadLetter { reason, stage }, original)] => {
                        assert_eq!(stage, "hostile");
                        assert!(reason.contains("malformed replacement"), "{reason}");
                        assert_eq!(original, record, "the message as published");
                    }
                    other => panic!("{mode}: dead-lettered: {other:?}"),
                }
                assert_eq!(d.rejected, None);
            }

            let (_, dispositions) = run_hostile(mode, OnError::Reject);
            for d in &dispositions {
                let reason = d.rejected.as_deref().expect("rejected");
                assert!(reason.contains("malformed replacement"), "{reason}");
                assert!(d.outputs.is_empty());
            }

            let (_, dispositions) = run_hostile(mode, OnError::Drop);
            assert!(dispositions.iter().all(|d| *d == Disposition::default()));

            let (records, dispositions) = run_hostile(mode, OnError::Pass);
            for (record, d) in records.iter().zip(&dispositions) {
                assert_eq!(d.outputs, vec![(Destination::Own, record.clone())]);
            }
        }
    }
}
