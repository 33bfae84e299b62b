//! [`Shadow`]: a candidate version run on copies of live batches, on its
//! own thread, and compared message by message with what the current
//! version did.
//!
//! The publish path hands each batch (shared, not copied) and a summary
//! of the current version's outcomes to a bounded queue and goes on; when
//! the queue is full the batch is skipped and counted, so a slow shadow
//! never slows publishing. The thread ends when the rollout is dropped.

use std::collections::{BTreeMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use sluice_proto::{DiffSample, ShadowDiff};

use super::super::answer::{self, Answer, CallError};
use super::super::bindings::{Batch, Outcome};
use super::super::instance::LoadedPlugin;
use crate::sync::lock;

/// Batches waiting for the shadow before new ones are skipped.
const QUEUE: usize = 64;
/// Differing messages kept as samples.
pub const SAMPLES: usize = 20;
/// Payload bytes kept per sample.
const SAMPLE_PAYLOAD: usize = 256;

/// What a version did with one message, as far as comparing goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Summary {
    /// Kept unchanged.
    Pass,
    /// Discarded.
    Drop,
    /// Replaced: a digest of the new messages' keys, headers and payloads.
    Replace(u64),
    /// Stored in these topics.
    Route(Vec<String>),
    /// Refused.
    Reject(String),
    /// Dead-lettered.
    DeadLetter(String),
    /// The call failed on the whole batch.
    Failed(String),
}

impl Summary {
    /// One per message of a batch of `messages`, from a call's result.
    pub fn of(result: &Result<Answer, CallError>, messages: usize) -> Vec<Summary> {
        let answer = match result {
            Ok(answer) => answer,
            Err(e) => return vec![Summary::Failed(e.to_string()); messages],
        };
        answer
            .results
            .iter()
            .zip(&answer.replacements)
            .map(|(outcome, replacements)| match outcome {
                Outcome::Pass => Summary::Pass,
                Outcome::Drop => Summary::Drop,
                Outcome::Replace(_) => {
                    let mut h = std::hash::DefaultHasher::new();
                    for r in replacements {
                        (&r.key, &r.headers, &r.payload).hash(&mut h);
                    }
                    Summary::Replace(h.finish())
                }
                Outcome::Route(span) => {
                    let start = span.start as usize;
                    let end = start.saturating_add(span.len as usize);
                    Summary::Route(answer.topics.get(start..end).unwrap_or_default().to_vec())
                }
                Outcome::Reject(reason) => Summary::Reject(reason.clone()),
                Outcome::DeadLetter(reason) => Summary::DeadLetter(reason.clone()),
            })
            .collect()
    }

    fn describe(&self) -> String {
        match self {
            Summary::Pass => "pass".into(),
            Summary::Drop => "drop".into(),
            Summary::Replace(digest) => format!("replace (digest {digest:016x})"),
            Summary::Route(topics) => format!("route to {}", topics.join(", ")),
            Summary::Reject(reason) => format!("reject: {reason}"),
            Summary::DeadLetter(reason) => format!("dead-letter: {reason}"),
            Summary::Failed(error) => format!("failed: {error}"),
        }
    }
}

/// The kind of difference between two summaries, or `None` if they agree.
/// The more drastic side names it: a failure, then a reject, a dead
/// letter, a drop, a route, and last a replacement (or a pass).
pub fn difference(current: &Summary, candidate: &Summary) -> Option<&'static str> {
    use Summary::*;
    match (current, candidate) {
        (a, b) if a == b => None,
        // The same decision for other words is agreement.
        (Reject(_), Reject(_)) | (DeadLetter(_), DeadLetter(_)) | (Failed(_), Failed(_)) => None,
        (Failed(_), _) | (_, Failed(_)) => Some("error"),
        (Reject(_), _) | (_, Reject(_)) => Some("reject"),
        (DeadLetter(_), _) | (_, DeadLetter(_)) => Some("dead_letter"),
        (Drop, _) | (_, Drop) => Some("drop"),
        (Route(_), _) | (_, Route(_)) => Some("route"),
        _ => Some("replace"),
    }
}

#[derive(Debug, Default)]
struct Counts {
    compared: u64,
    agreed: u64,
    differences: BTreeMap<String, u64>,
    skipped: u64,
    samples: VecDeque<DiffSample>,
}

struct Job {
    batch: Arc<Batch>,
    current: Vec<Summary>,
}

/// A running shadow: its queue and what it found.
pub struct Shadow {
    queue: SyncSender<Job>,
    counts: Arc<Mutex<Counts>>,
}

fn part<'a>(data: &'a [u8], ends: &[u32], i: usize) -> &'a [u8] {
    let start = i.checked_sub(1).map_or(0, |p| ends[p] as usize);
    data.get(start..ends[i] as usize).unwrap_or_default()
}

fn sample(
    batch: &Batch,
    i: usize,
    kind: &str,
    current: &Summary,
    candidate: &Summary,
) -> DiffSample {
    let has_key = batch.flags.get(i).is_some_and(|f| f & 1 != 0);
    let payload = part(&batch.payloads, &batch.payload_ends, i);
    DiffSample {
        at_ms: SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
        topic: batch.topic.clone(),
        kind: kind.to_owned(),
        key: has_key
            .then(|| String::from_utf8_lossy(part(&batch.keys, &batch.key_ends, i)).into_owned()),
        payload: String::from_utf8_lossy(&payload[..payload.len().min(SAMPLE_PAYLOAD)])
            .into_owned(),
        current: current.describe(),
        candidate: candidate.describe(),
    }
}

fn compare(counts: &Mutex<Counts>, job: &Job, candidate: &[Summary]) {
    let mut counts = lock(counts);
    for (i, (a, b)) in job.current.iter().zip(candidate).enumerate() {
        counts.compared += 1;
        match difference(a, b) {
            None => counts.agreed += 1,
            Some(kind) => {
                *counts.differences.entry(kind.to_owned()).or_default() += 1;
                if counts.samples.len() == SAMPLES {
                    counts.samples.pop_front();
                }
                let s = sample(&job.batch, i, kind, a, b);
                counts.samples.push_back(s);
            }
        }
    }
}

impl Shadow {
    /// Starts the thread that runs `candidate`.
    pub fn start(candidate: Arc<LoadedPlugin>) -> Shadow {
        let (queue, jobs) = mpsc::sync_channel::<Job>(QUEUE);
        let counts = Arc::new(Mutex::new(Counts::default()));
        let found = counts.clone();
        let name = format!("sluice-shadow-{}", candidate.name());
        let spawned = std::thread::Builder::new().name(name).spawn(move || {
            for job in jobs {
                let result = answer::call(&candidate, &job.batch);
                let summaries = Summary::of(&result, job.current.len());
                compare(&found, &job, &summaries);
            }
        });
        if let Err(e) = spawned {
            // The queue's receiver is gone with the closure: every batch
            // is counted as skipped.
            tracing::error!(error = %e, "cannot start the shadow's thread; its batches are skipped");
        }
        Shadow { queue, counts }
    }

    /// Hands a batch the current version answered to the shadow; skipped
    /// (and counted) when the shadow is behind.
    pub fn offer(&self, batch: &Arc<Batch>, current: &Result<Answer, CallError>) {
        let messages = batch.payload_ends.len();
        let job = Job {
            batch: batch.clone(),
            current: Summary::of(current, messages),
        };
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                lock(&self.counts).skipped += messages as u64;
            }
        }
    }

    /// What it found so far.
    pub fn diff(&self) -> ShadowDiff {
        let counts = lock(&self.counts);
        ShadowDiff {
            compared: counts.compared,
            agreed: counts.agreed,
            differences: counts.differences.clone(),
            skipped: counts.skipped,
            samples: counts.samples.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Summary::*;

    #[test]
    fn differences_are_named_by_the_more_drastic_side() {
        let route = |t: &str| Route(vec![t.to_owned()]);
        let cases = [
            (Pass, Pass, None),
            (route("a"), route("a"), None),
            (Reject("x".into()), Reject("y".into()), None),
            (Failed("x".into()), Failed("y".into()), None),
            (route("a"), route("b"), Some("route")),
            (Pass, route("b"), Some("route")),
            (Pass, Drop, Some("drop")),
            (route("a"), Drop, Some("drop")),
            (Pass, Reject("no".into()), Some("reject")),
            (Drop, DeadLetter("no".into()), Some("dead_letter")),
            (Pass, Failed("trap".into()), Some("error")),
            (Reject("no".into()), Failed("trap".into()), Some("error")),
            (Replace(1), Replace(2), Some("replace")),
            (Pass, Replace(2), Some("replace")),
        ];
        for (a, b, kind) in cases {
            assert_eq!(difference(&a, &b), kind, "{a:?} vs {b:?}");
            assert_eq!(difference(&b, &a), kind, "{b:?} vs {a:?}");
        }
    }
}
