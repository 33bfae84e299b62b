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
use std::time::{Duration, Instant};

use sluice_proto::Pattern;

use super::answer;
use super::bindings::Batch;
use super::instance::LoadedPlugin;
use super::rollout::Rollout;
use crate::store::NewRecord;
use crate::trace::record::RunReport;

mod run;
#[cfg(test)]
mod tests;

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

/// One pipeline from the config.
#[derive(Debug)]
pub struct Pipeline {
    /// The topics it applies to.
    pub pattern: Pattern,
    /// Its stages, in order.
    pub stages: Vec<Arc<LoadedPlugin>>,
    /// The rollout of each stage's plugin, if one runs (as many as
    /// `stages`).
    pub rollouts: Vec<Option<Arc<Rollout>>>,
    /// What a failing stage does.
    pub on_error: OnError,
    /// Stamp [`VERSIONS_HEADER`] on outputs.
    pub version_header: bool,
    /// How long its last run took: where the next one runs.
    pub last_run: LastRun,
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

impl Pipeline {
    /// `pattern: a -> b -> c`, for logs.
    pub fn describe(&self) -> String {
        let stages: Vec<&str> = self.stages.iter().map(|s| s.name()).collect();
        format!("{}: {}", self.pattern, stages.join(" -> "))
    }

    /// True if the last run took under [`QUICK_RUN`]: the next may run on
    /// an async worker; otherwise it should leave the worker.
    /// Never for a stage (or a rollout's candidate) that may wait inside
    /// a call ([`LoadedPlugin::may_run_on_worker`]).
    pub fn runs_quickly(&self) -> bool {
        self.last_run.quick()
            && self.stages.iter().all(|s| s.may_run_on_worker())
            && self
                .rollouts
                .iter()
                .flatten()
                .all(|r| r.candidate.may_run_on_worker())
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
}
