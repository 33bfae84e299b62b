//! Running a pipeline's stages over a batch: one call per stage (two when
//! a canary takes part of the batch), each message's outcome applied, and
//! a shadow handed a copy of what the current version saw.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::super::answer::{self, Answer, CallError};
use super::super::bindings::Outcome;
use super::super::instance::LoadedPlugin;
use super::super::rollout::canary::Side;
use super::super::rollout::Rollout;
use super::super::stats::OUTCOMES;
use super::{to_batch, Destination, Disposition, OnError, Pipeline, VERSIONS_HEADER};
use crate::store::NewRecord;
use crate::trace::record::{RunReport, StageRun, Step, StepOutcome};

/// Where `outcome` is counted in [`super::super::stats::Outcomes`], and
/// its name in the event record.
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

/// A message on its way through the stages.
struct Item {
    origin: usize,
    record: NewRecord,
    /// Stages (by index) that handled it, for the versions header.
    handled: u64,
    /// Of those, the stages whose canary handled it.
    canaried: u64,
}

/// The bit of stage `index` in [`Item::handled`].
fn bit(index: usize) -> u64 {
    1u64 << index.min(63)
}

/// Where a stage's results go: each message's disposition, the event
/// record's report, and the items that go on to the next stage.
struct Out<'a> {
    dispositions: &'a mut [Disposition],
    report: &'a mut RunReport,
    next: Vec<Item>,
}

/// One call of a stage: the version, the items it got, and which side of
/// a canary it is.
struct Part<'a> {
    version: &'a Arc<LoadedPlugin>,
    side: Side,
    items: Vec<Item>,
}

impl Pipeline {
    /// The rollout of stage `index`, if one runs.
    fn rollout(&self, index: usize) -> Option<&Arc<Rollout>> {
        self.rollouts.get(index).and_then(Option::as_ref)
    }

    /// Sets the versions header of `item` to the stages that handled it.
    fn stamp(&self, item: &mut Item) {
        let mut value = String::new();
        for (i, stage) in self.stages.iter().enumerate() {
            if item.handled & bit(i) == 0 {
                continue;
            }
            let hash = match self.rollout(i) {
                Some(r) if item.canaried & bit(i) != 0 => &r.candidate.hash,
                _ => &stage.hash,
            };
            if !value.is_empty() {
                value.push(',');
            }
            value.push_str(stage.name());
            value.push('@');
            value.push_str(hash);
        }
        let headers = &mut item.record.headers;
        headers.retain(|(name, _)| name != VERSIONS_HEADER);
        headers.push((VERSIONS_HEADER.to_owned(), value));
    }

    /// The calls stage `index` makes over `active`: one, or a canary's two.
    fn parts<'a>(&'a self, index: usize, active: Vec<Item>) -> Vec<Part<'a>> {
        let stage = &self.stages[index];
        let rollout = self.rollout(index);
        let Some(canary) = rollout.and_then(|r| r.running_canary()) else {
            return vec![Part {
                version: stage,
                side: Side::Current,
                items: active,
            }];
        };
        let (mut current, mut candidate) = (Vec::new(), Vec::new());
        for item in active {
            match canary.side(item.record.key.as_deref()) {
                Side::Current => current.push(item),
                Side::Canary => candidate.push(item),
            }
        }
        let candidate_version = rollout.map(|r| &r.candidate).unwrap_or(stage);
        vec![
            Part {
                version: stage,
                side: Side::Current,
                items: current,
            },
            Part {
                version: candidate_version,
                side: Side::Canary,
                items: candidate,
            },
        ]
    }

    pub(super) fn run_stages(
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
                canaried: 0,
            })
            .collect();
        for index in 0..self.stages.len() {
            if active.is_empty() {
                break;
            }
            let mut out = Out {
                next: Vec::with_capacity(active.len()),
                dispositions: &mut dispositions,
                report,
            };
            for part in self.parts(index, active) {
                if !part.items.is_empty() {
                    self.call_part(index, part, topic, now_ms, &mut out);
                }
            }
            active = out.next;
        }
        for mut item in active {
            if self.version_header {
                self.stamp(&mut item);
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

    /// Calls one version of stage `index` on its part of the batch and
    /// applies the answer: what goes on to the next stage lands in `next`.
    fn call_part(&self, index: usize, part: Part<'_>, topic: &str, now_ms: i64, out: &mut Out<'_>) {
        let Part {
            version,
            side,
            items,
        } = part;
        let batch = Arc::new(to_batch(topic, items.iter().map(|i| &i.record), now_ms));
        let (started, clock) = (SystemTime::now(), Instant::now());
        let called = answer::call(version, &batch);
        let took = clock.elapsed();
        let rollout = self.rollout(index);
        if let Some(shadow) = rollout.and_then(|r| r.running_shadow()) {
            shadow.offer(&batch, &called);
        }
        let run = out.report.runs.len() as u32;
        out.report.runs.push(StageRun {
            plugin: version.name().to_owned(),
            version: version.hash.clone(),
            started,
            took_us: took.as_micros() as u64,
            error: called.as_ref().err().map(|e| e.to_string()),
        });
        let messages = items.len();
        let rejected = match called {
            Ok(answer) => Some(self.apply(index, side, version, items, answer, run, out)),
            Err(error) => {
                self.failed(version, items, &error, topic, run, out);
                None
            }
        };
        if let Some(r) = rollout.filter(|r| r.running_canary().is_some()) {
            if let Some(canary) = r.running_canary() {
                canary.record(
                    side,
                    messages,
                    rejected.is_none(),
                    rejected.unwrap_or(0),
                    took,
                );
            }
            if side == Side::Canary {
                r.judge(&self.stages[index]);
            }
        }
    }

    /// Applies a version's answer to `items`. Returns how many it rejected
    /// or dead-lettered.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        index: usize,
        side: Side,
        version: &LoadedPlugin,
        mut items: Vec<Item>,
        answer: Answer,
        run: u32,
        out: &mut Out<'_>,
    ) -> u64 {
        let canaried = if side == Side::Canary { bit(index) } else { 0 };
        // Counted per batch, added to the shared counters once.
        let mut counts = [0u64; OUTCOMES];
        let outcomes = answer.results.into_iter().zip(answer.replacements);
        for (mut item, (outcome, mut replacements)) in items.drain(..).zip(outcomes) {
            item.handled |= bit(index);
            item.canaried |= canaried;
            if self.version_header {
                self.stamp(&mut item);
            }
            let (counted, step) = outcome_index(&outcome);
            counts[counted] += 1;
            out.report.steps.push(Step {
                origin: item.origin as u32,
                run,
                outcome: step,
            });
            let disposition = &mut out.dispositions[item.origin];
            match outcome {
                Outcome::Pass => out.next.push(item),
                Outcome::Drop => {}
                Outcome::Replace(_) => {
                    // One-for-one keeps the producer's id (de-duplication).
                    if let [only] = &mut replacements[..] {
                        only.id = item.record.id.clone();
                    }
                    out.next.extend(replacements.into_iter().map(|record| Item {
                        origin: item.origin,
                        record,
                        handled: item.handled,
                        canaried: item.canaried,
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
                                reason: "route outcome refers to topics the plugin did not return"
                                    .into(),
                                stage: version.name().to_owned(),
                            };
                            disposition.outputs.push((to, item.record));
                        }
                    }
                }
                Outcome::Reject(reason) => disposition.rejected = Some(reason),
                Outcome::DeadLetter(reason) => {
                    let to = Destination::DeadLetter {
                        reason,
                        stage: version.name().to_owned(),
                    };
                    disposition.outputs.push((to, item.record));
                }
            }
        }
        version.stats.record_outcomes(&counts);
        counts[4] + counts[5]
    }

    /// A failed call: the pipeline's `on_error` for `items`.
    fn failed(
        &self,
        version: &LoadedPlugin,
        items: Vec<Item>,
        error: &CallError,
        topic: &str,
        run: u32,
        out: &mut Out<'_>,
    ) {
        let reason = error.to_string();
        out.report.steps.extend(items.iter().map(|item| Step {
            origin: item.origin as u32,
            run,
            outcome: StepOutcome::Failed,
        }));
        tracing::warn!(plugin = version.name(), version = %version.hash, %topic, messages = items.len(), on_error = ?self.on_error, error = %reason, "pipeline stage failed");
        match self.on_error {
            OnError::Pass => out.next.extend(items),
            OnError::Drop => {}
            OnError::Reject => {
                for item in items {
                    out.dispositions[item.origin].rejected = Some(reason.clone());
                }
            }
            OnError::DeadLetter => {
                for item in items {
                    let to = Destination::DeadLetter {
                        reason: reason.clone(),
                        stage: version.name().to_owned(),
                    };
                    out.dispositions[item.origin]
                        .outputs
                        .push((to, item.record));
                }
            }
        }
    }
}
