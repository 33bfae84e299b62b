//! Plugins on the delivery side: a subscription or a consumer-group member
//! may name a loaded plugin that filters or transforms what it receives.
//! What is stored does not change. `pass` delivers, `replace` delivers the
//! replacements (same topic, offset and time), anything else (`drop`,
//! `route`, `reject`, `dead-letter`) means "not for this receiver".
//!
//! A [`DeliveryFilter`] follows reloads: before each chunk it checks which
//! version of its plugin is in force and switches to it (with its own
//! `init` when the receiver gave its own config).
//!
//! A call fails the way it does on the publish path: trap, timeout, out of
//! memory, wrong number of outcomes, or a malformed replacement (see
//! [`super::answer`]; never delivered in part).
//!
//! Subscriptions fail closed: a chunk whose call fails is not delivered and
//! is counted as dropped. Consumer groups must settle every delivery, so a
//! message the plugin filters out is acked for the member, and a chunk
//! whose call fails is nacked (redelivered after the group's backoff, and
//! dead-lettered after `max_deliver`, like any message that keeps failing).

use std::sync::{Arc, Mutex};

use sluice_proto::SettleAction;

use super::answer::{self, CallError};
use super::bindings::{Batch, Outcome};
use super::error::PluginError;
use super::instance::LoadedPlugin;
use super::pipeline::{lay_out, BatchEntry};
use super::registry::PluginRegistry;
use crate::delivery::{Chunk, Slice};
use crate::store::Record;
use crate::sync::lock;

/// Why a receiver cannot have the plugin it asked for.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryPluginError {
    /// No plugin of that name is loaded.
    #[error("no plugin named {0:?} is loaded in this broker")]
    NotLoaded(String),
    /// The plugin refused the receiver's config (its `init` failed) or
    /// could not be instantiated.
    #[error(transparent)]
    Refused(#[from] PluginError),
}

/// A receiver's plugin, following reloads.
pub struct DeliveryFilter {
    registry: Arc<PluginRegistry>,
    name: String,
    config: Option<String>,
    active: Mutex<Active>,
}

struct Active {
    /// The version in force when last checked.
    base: Arc<LoadedPlugin>,
    /// What is called: `base`, or its instance with the receiver's config.
    used: Arc<LoadedPlugin>,
}

impl std::fmt::Debug for DeliveryFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryFilter")
            .field("plugin", &self.name)
            .finish()
    }
}

impl DeliveryFilter {
    /// The filter a receiver asked for; refused if no such plugin is loaded
    /// or its `init` refuses the receiver's config (blocking when a config
    /// is given: makes an instance).
    pub fn new(
        registry: Arc<PluginRegistry>,
        spec: &sluice_proto::DeliveryPlugin,
    ) -> Result<Arc<DeliveryFilter>, DeliveryPluginError> {
        let base = registry
            .current()
            .plugins
            .get(&spec.name)
            .cloned()
            .ok_or_else(|| DeliveryPluginError::NotLoaded(spec.name.clone()))?;
        let used = match &spec.config {
            None => base.clone(),
            Some(config) => Arc::new(base.reconfigured(config)?),
        };
        Ok(Arc::new(DeliveryFilter {
            registry,
            name: spec.name.clone(),
            config: spec.config.clone(),
            active: Mutex::new(Active { base, used }),
        }))
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version to call for the next chunk (blocking: a new version with
    /// the receiver's own config is initialised here). A plugin removed
    /// from the config keeps its last version for the receivers that use it.
    fn version(&self) -> Arc<LoadedPlugin> {
        let mut active = lock(&self.active);
        let set = self.registry.current();
        if let Some(now) = set.plugins.get(&self.name) {
            if !Arc::ptr_eq(now, &active.base) {
                let old = active.base.hash.clone();
                active.base = now.clone();
                match &self.config {
                    None => active.used = now.clone(),
                    Some(config) => match now.reconfigured(config) {
                        Ok(p) => active.used = Arc::new(p),
                        Err(e) => {
                            tracing::warn!(plugin = %self.name, from = %old, to = %now.hash, error = %e, "the new plugin version refuses this receiver's config; it keeps the old version")
                        }
                    },
                }
            }
        }
        active.used.clone()
    }
}

fn to_batch(topic: &str, records: &[&Record]) -> Batch {
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

/// Calls the plugin over records of one topic; per record, the records to
/// deliver in its place (none: filtered out). A replacement keeps the
/// topic, offset, time and id of the record it replaces.
fn run(
    plugin: &LoadedPlugin,
    topic: &str,
    records: &[&Record],
) -> Result<Vec<Vec<Record>>, CallError> {
    let answer = answer::call(plugin, &std::sync::Arc::new(to_batch(topic, records)))?;
    let outcomes = answer.results.into_iter().zip(answer.replacements);
    Ok(records
        .iter()
        .zip(outcomes)
        .map(|(&record, (outcome, replacements))| match outcome {
            Outcome::Pass => vec![record.clone()],
            Outcome::Replace(_) => replacements
                .into_iter()
                .map(|new| Record {
                    offset: record.offset,
                    timestamp_ms: record.timestamp_ms,
                    key: new.key,
                    headers: new.headers,
                    payload: new.payload,
                    id: record.id.clone(),
                })
                .collect(),
            _ => Vec::new(),
        })
        .collect())
}

fn slice_of(topic: &Arc<str>, incarnation: u64, records: Vec<Record>, attempt: u32) -> Slice {
    Slice::of(topic, incarnation, records, attempt)
}

/// Runs a subscription's filter over a chunk about to be delivered
/// (blocking).
pub fn apply(filter: &DeliveryFilter, chunk: Chunk) -> Chunk {
    let plugin = filter.version();
    let mut out = Chunk {
        slices: Vec::with_capacity(chunk.slices.len()),
        dropped: chunk.dropped,
    };
    for slice in chunk.slices {
        let records: Vec<&Record> = slice.records().iter().collect();
        if records.is_empty() {
            continue;
        }
        match run(&plugin, &slice.batch.topic, &records) {
            Ok(kept) => {
                let kept: Vec<Record> = kept.into_iter().flatten().collect();
                if !kept.is_empty() {
                    out.slices.push(slice_of(
                        &slice.batch.topic,
                        slice.batch.incarnation,
                        kept,
                        slice.attempt,
                    ));
                }
            }
            Err(error) => {
                tracing::warn!(plugin = plugin.name(), topic = %slice.batch.topic, error = %error, "delivery plugin failed; not delivering its batch");
                out.dropped += records.len() as u64;
            }
        }
    }
    out
}

/// A settlement the broker makes for a group member: (topic, offset, action).
pub type AutoSettle = (Arc<str>, u64, SettleAction);

/// Runs a group member's filter over a chunk of deliveries (blocking).
/// Returns what to deliver and what to settle on the member's behalf:
/// filtered-out messages are acked, those of a failed call nacked.
pub fn apply_group(filter: &DeliveryFilter, chunk: Chunk) -> (Chunk, Vec<AutoSettle>) {
    let plugin = filter.version();
    let mut out = Chunk {
        slices: Vec::with_capacity(chunk.slices.len()),
        dropped: chunk.dropped,
    };
    let mut settles = Vec::new();
    // Group deliveries come one record a slice: call once per run of one topic.
    let mut slices = chunk.slices.into_iter().peekable();
    while let Some(first) = slices.next() {
        let topic = first.batch.topic.clone();
        let mut run_slices = vec![first];
        while let Some(next) = slices.next_if(|s| s.batch.topic == topic) {
            run_slices.push(next);
        }
        let records: Vec<(&Record, u32, u64)> = run_slices
            .iter()
            .flat_map(|s| {
                s.records()
                    .iter()
                    .map(move |r| (r, s.attempt, s.batch.incarnation))
            })
            .collect();
        let just_records: Vec<&Record> = records.iter().map(|(r, _, _)| *r).collect();
        match run(&plugin, &topic, &just_records) {
            Ok(kept) => {
                for ((record, attempt, incarnation), kept) in records.iter().zip(kept) {
                    if kept.is_empty() {
                        settles.push((topic.clone(), record.offset, SettleAction::Ack));
                    } else {
                        out.slices
                            .push(slice_of(&topic, *incarnation, kept, *attempt));
                    }
                }
            }
            Err(error) => {
                tracing::warn!(plugin = plugin.name(), %topic, messages = records.len(), error = %error, "delivery plugin failed on group deliveries; they are nacked for redelivery after the group's backoff");
                for (record, _, _) in &records {
                    settles.push((
                        topic.clone(),
                        record.offset,
                        SettleAction::Nack { delay_ms: None },
                    ));
                }
            }
        }
    }
    (out, settles)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::hostile;
    use super::*;

    /// A filter over `test_hostile` in `mode` (kept alive: the registry's
    /// cache dir).
    fn filter(mode: &str) -> (Arc<DeliveryFilter>, tempfile::TempDir) {
        let (registry, dir) = hostile(mode);
        let spec = sluice_proto::DeliveryPlugin {
            name: "hostile".into(),
            config: None,
        };
        (DeliveryFilter::new(registry, &spec).expect("filter"), dir)
    }

    fn records() -> Vec<Record> {
        ["a", "b", "c"]
            .into_iter()
            .enumerate()
            .map(|(i, p)| Record {
                offset: 10 + i as u64,
                timestamp_ms: 1_000,
                key: None,
                headers: Vec::new(),
                payload: Bytes::from(p),
                id: None,
            })
            .collect()
    }

    fn topic() -> Arc<str> {
        Arc::from("t")
    }

    /// One slice of three records, as a subscription gets them.
    fn subscription_chunk() -> Chunk {
        Chunk {
            slices: vec![slice_of(&topic(), 1, records(), 0)],
            dropped: 2,
        }
    }

    /// Three slices of one record each, as a group member gets them.
    fn group_chunk() -> Chunk {
        Chunk {
            slices: records()
                .into_iter()
                .map(|r| slice_of(&topic(), 1, vec![r], 1))
                .collect(),
            dropped: 0,
        }
    }

    fn delivered(chunk: &Chunk) -> Vec<&Record> {
        chunk.slices.iter().flat_map(|s| s.records()).collect()
    }

    #[test]
    fn well_formed_replacements_are_delivered_in_place() {
        let (filter, _dir) = filter("stamp");
        let out = apply(&filter, subscription_chunk());
        assert_eq!(out.dropped, 2);
        let got = delivered(&out);
        assert_eq!(got.len(), 3);
        for (got, want) in got.iter().zip(records()) {
            assert_eq!((got.offset, &got.payload), (want.offset, &want.payload));
            assert!(got.headers.iter().any(|(n, _)| n == "x-stamp"));
        }

        let (out, settles) = apply_group(&filter, group_chunk());
        assert_eq!(delivered(&out).len(), 3);
        assert!(settles.is_empty(), "{settles:?}");
    }

    /// Only the last message's replacement is malformed; the whole chunk
    /// fails as a call does, nothing of it is delivered.
    #[test]
    fn a_malformed_replacement_is_a_failed_call() {
        for mode in ["replace-past-end", "replace-bad-headers"] {
            let (filter, _dir) = filter(mode);
            let out = apply(&filter, subscription_chunk());
            assert!(out.slices.is_empty(), "{mode}: {:?}", delivered(&out));
            assert_eq!(out.dropped, 2 + 3, "{mode}: counted as dropped");

            let (out, settles) = apply_group(&filter, group_chunk());
            assert!(out.slices.is_empty(), "{mode}: {:?}", delivered(&out));
            let nacked: Vec<u64> = settles
                .iter()
                .map(|(t, offset, action)| {
                    assert_eq!(
                        (&**t, action),
                        ("t", &SettleAction::Nack { delay_ms: None })
                    );
                    *offset
                })
                .collect();
            assert_eq!(nacked, vec![10, 11, 12], "{mode}");
        }
    }
}
