//! One publish: messages grouped by topic, the pipelines of the topics that
//! have one (off the async workers), routed outputs checked against the
//! publisher's rights, every destination resolved before anything is
//! appended (a publish that fails stores nothing), then one append per
//! destination in order of first appearance. A message due later (see
//! [`crate::schedule`]) is appended to the schedule instead, for its topic.
//! [`PendingPublish::wait`] resolves when all of it is committed.

use std::sync::Arc;

use sluice_proto::{MessageOutcome, PublishAck, PublishMessage, PublishRun, StoredAt};

use super::checks;
use super::Broker;
use crate::auth::{Action, LogLimit, Principal};
use crate::dead_letter;
use crate::error::BrokerError;
use crate::plugin::{Destination, Disposition, PluginSet};
use crate::schedule;
use crate::store::{AppendTicket, NewRecord};
use crate::trace::record::RunReport;
use crate::trace::PublishTrace;

/// Rate limit of the log lines about routes refused by permissions.
static ROUTE_DENIALS_LOG: LogLimit = LogLimit::new(std::time::Duration::from_secs(1));

/// A publish as the broker takes it, whatever frame it came in: messages
/// grouped by topic (topics in order of first appearance), each with its
/// index in the publish. Every topic name is checked, so a publish with an
/// invalid one stores nothing.
#[derive(Debug, Default)]
pub struct PublishBatch {
    groups: Vec<(String, Vec<(usize, NewRecord)>)>,
    total: usize,
}

impl PublishBatch {
    /// From the full publish frame: one topic per message.
    pub fn from_messages(messages: Vec<PublishMessage>) -> Result<PublishBatch, BrokerError> {
        let mut batch = PublishBatch::default();
        for m in messages {
            let record = NewRecord {
                key: m.key,
                headers: m.headers,
                payload: m.payload,
                id: m.id,
            };
            batch.push(m.topic, std::iter::once(record))?;
        }
        Ok(batch)
    }

    /// From the compact publish frame: runs of messages of one topic.
    pub fn from_runs(runs: Vec<PublishRun>) -> Result<PublishBatch, BrokerError> {
        let mut batch = PublishBatch::default();
        for run in runs {
            let records = run.messages.into_iter().map(|m| NewRecord {
                key: m.0,
                headers: m.1,
                payload: m.2,
                id: m.3,
            });
            batch.push(run.topic, records)?;
        }
        // An empty run names a topic with no messages: nothing to store there.
        batch.groups.retain(|(_, records)| !records.is_empty());
        Ok(batch)
    }

    fn push(
        &mut self,
        topic: String,
        records: impl Iterator<Item = NewRecord>,
    ) -> Result<(), BrokerError> {
        let at = match self.groups.iter().position(|(t, _)| *t == topic) {
            Some(at) => at,
            None => {
                checks::topic(&topic)?;
                self.groups.push((topic, Vec::new()));
                self.groups.len() - 1
            }
        };
        for record in records {
            self.groups[at].1.push((self.total, record));
            self.total += 1;
        }
        Ok(())
    }

    /// Messages in the publish.
    pub fn len(&self) -> usize {
        self.total
    }

    /// True if it has no message.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The topics published to, each once.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.groups.iter().map(|(t, _)| t.as_str())
    }
}

/// One record to append: the index of the published message it comes
/// from, the record, and the dead-letter reason if it is one.
type Planned = (usize, NewRecord, Option<String>);

/// What an appended record stands for: the published message's index and
/// the dead-letter reason if it is one.
type Origin = (usize, Option<String>);

/// A delayed record: what it stands for, its topic, when it is due.
type Delayed = (usize, String, i64, NewRecord);

/// What a publish will append, grouped by destination topic in the order
/// destinations first appear.
#[derive(Default)]
struct Plan {
    by_topic: Vec<(String, Vec<Planned>)>,
}

/// One append: its topic, what each record stands for, and the ticket.
struct Append {
    topic: String,
    origins: Vec<Origin>,
    ticket: AppendTicket,
    /// The schedule's append: each record's topic and due time.
    delayed: Option<Vec<(String, i64)>>,
}

impl Plan {
    fn push(&mut self, topic: String, origin: usize, record: NewRecord, dead: Option<String>) {
        match self.by_topic.iter_mut().find(|(t, _)| *t == topic) {
            Some((_, entries)) => entries.push((origin, record, dead)),
            None => self.by_topic.push((topic, vec![(origin, record, dead)])),
        }
    }

    /// Takes out the records due after `now_ms` (dead letters are never
    /// delayed).
    fn take_delayed(&mut self, now_ms: i64) -> Vec<Delayed> {
        let mut delayed = Vec::new();
        for (topic, entries) in &mut self.by_topic {
            let later = |record: &NewRecord| {
                schedule::due_ms(&record.headers)
                    .ok()
                    .flatten()
                    .filter(|due| *due > now_ms)
            };
            if dead_letter::is_dead_letter_topic(topic)
                || !entries.iter().any(|(_, r, _)| later(r).is_some())
            {
                continue;
            }
            let mut now = Vec::with_capacity(entries.len());
            for (origin, record, dead) in entries.drain(..) {
                match later(&record) {
                    Some(due) => delayed.push((origin, topic.clone(), due, record)),
                    None => now.push((origin, record, dead)),
                }
            }
            *entries = now;
        }
        self.by_topic.retain(|(_, entries)| !entries.is_empty());
        delayed
    }

    fn push_dead_letter(
        &mut self,
        topic: &str,
        origin: usize,
        record: NewRecord,
        reason: String,
        stage: &str,
    ) {
        let record = dead_letter::from_pipeline(record, topic, &reason, stage);
        self.push(dead_letter::topic_for(topic), origin, record, Some(reason));
    }
}

/// A publish whose messages are appended and whose acks are pending.
pub struct PendingPublish {
    /// Per destination: what each appended record stands for, and the
    /// ticket of its append.
    appends: Vec<Append>,
    /// Per published message: the reason it was rejected, if it was.
    rejected: Vec<Option<String>>,
    /// What the event record and the spans keep of it.
    trace: Option<PublishTrace>,
}

impl PendingPublish {
    /// Waits until every message is stored under the fsync policy; one
    /// outcome per published message, in order.
    pub async fn wait(self) -> Result<PublishAck, BrokerError> {
        let mut places: Vec<Vec<(StoredAt, Option<String>)>> =
            vec![Vec::new(); self.rejected.len()];
        let mut rejected = self.rejected;
        let several = self.appends.len() > 1;
        let mut stored_any = false;
        let mut first_error = None;
        let mut trace = self.trace;
        for append in self.appends {
            let Append {
                topic,
                origins: meta,
                ticket,
                delayed,
            } = append;
            let appended = match ticket.await {
                Ok(appended) => appended,
                // Several topics are not one transaction: when one fails
                // after another was stored, each message says which.
                Err(e) if several => {
                    let error = BrokerError::store(&topic, e);
                    for (origin, _) in &meta {
                        rejected[*origin] = Some(format!("not stored: {error}"));
                    }
                    first_error.get_or_insert(error);
                    continue;
                }
                Err(e) => {
                    let error = BrokerError::store(&topic, e);
                    if let Some(trace) = trace.take() {
                        trace.failed(&error);
                    }
                    return Err(error);
                }
            };
            stored_any = true;
            let mut delayed = delayed.map(Vec::into_iter);
            for ((origin, dead), appended) in meta.into_iter().zip(appended) {
                let (topic, deliver_at_ms) = match delayed.as_mut().and_then(Iterator::next) {
                    Some((topic, due)) => (topic, Some(due)),
                    None => (topic.clone(), None),
                };
                let at = StoredAt {
                    topic,
                    offset: appended.offset(),
                    duplicate: appended.is_duplicate(),
                    deliver_at_ms,
                };
                places[origin].push((at, dead));
            }
        }
        if let (false, Some(error)) = (stored_any, first_error) {
            if let Some(trace) = trace {
                trace.failed(&error);
            }
            return Err(error);
        }
        if let Some(trace) = trace {
            trace.finish(&places, &rejected);
        }
        let outcomes = places
            .into_iter()
            .zip(rejected)
            .map(|(places, rejected)| outcome(places, rejected))
            .collect();
        Ok(PublishAck { outcomes })
    }
}

/// What became of one published message.
fn outcome(places: Vec<(StoredAt, Option<String>)>, rejected: Option<String>) -> MessageOutcome {
    if let Some(reason) = rejected {
        return MessageOutcome::Rejected(reason);
    }
    if places.iter().all(|(_, dead)| dead.is_some()) {
        let mut places = places.into_iter();
        return match places.next() {
            Some((at, dead)) => MessageOutcome::DeadLettered {
                reason: dead.unwrap_or_default(),
                at,
            },
            None => MessageOutcome::Dropped,
        };
    }
    MessageOutcome::Stored(places.into_iter().map(|(at, _)| at).collect())
}

impl Broker {
    /// Publishes on behalf of `publisher`: runs the pipelines of the topics
    /// that have one, appends, and returns the pending acks. A message a
    /// plugin routes where the publisher may not publish is rejected.
    /// Callers that await each publish before starting the next keep their
    /// publishes in order; the acks can then be awaited concurrently.
    pub async fn publish(
        &self,
        mut batch: PublishBatch,
        publisher: &Principal,
    ) -> Result<PendingPublish, BrokerError> {
        if batch.is_empty() {
            return Err(BrokerError::InvalidArgument(
                "a publish needs at least one message".into(),
            ));
        }
        let now = crate::store::now_ms();
        for (_, records) in &mut batch.groups {
            for (index, record) in records {
                schedule::prepare(record, now)
                    .map_err(|e| BrokerError::InvalidArgument(format!("message {index}: {e}")))?;
            }
        }
        let mut rejected = vec![None; batch.total];
        let mut trace = PublishTrace::begin(
            &self.inner.observer,
            &publisher.name,
            batch.total,
            batch.groups.iter().flat_map(|(topic, records)| {
                records.iter().map(move |(i, r)| (*i, topic.as_str(), r))
            }),
        );
        let planned = match self.pipelines_for(&batch) {
            Some(set) => {
                self.run_pipelines(set, batch, publisher, &mut rejected, trace.as_mut())
                    .await
            }
            None => Ok(Plan {
                by_topic: batch
                    .groups
                    .into_iter()
                    .map(|(topic, records)| {
                        let entries = records.into_iter().map(|(i, r)| (i, r, None)).collect();
                        (topic, entries)
                    })
                    .collect(),
            }),
        };
        let appended = match planned {
            Ok(plan) => self.append_plan(plan, &mut rejected, trace.as_mut()).await,
            Err(e) => Err(e),
        };
        let appends = match appended {
            Ok(appends) => appends,
            Err(e) => {
                if let Some(trace) = trace {
                    trace.failed(&e);
                }
                return Err(e);
            }
        };
        Ok(PendingPublish {
            appends,
            rejected,
            trace,
        })
    }

    /// The plugins in force if a pipeline runs on one of the batch's
    /// topics: one generation for the whole publish, so a reload that lands
    /// meanwhile takes effect from the next publish on.
    fn pipelines_for(&self, batch: &PublishBatch) -> Option<Arc<PluginSet>> {
        if !self.inner.plugins.has_pipelines() {
            return None;
        }
        let set = self.inner.plugins.current();
        batch
            .topics()
            .any(|t| set.pipeline_for(t).is_some())
            .then_some(set)
    }

    async fn run_pipelines(
        &self,
        plugins: Arc<PluginSet>,
        batch: PublishBatch,
        publisher: &Principal,
        rejected: &mut [Option<String>],
        mut trace: Option<&mut PublishTrace>,
    ) -> Result<Plan, BrokerError> {
        let mut plan = Plan::default();
        for (topic, items) in batch.groups {
            let Some(pipeline) = plugins
                .pipelines
                .iter()
                .position(|p| p.pattern.matches(&topic))
            else {
                for (origin, record) in items {
                    plan.push(topic.clone(), origin, record, None);
                }
                continue;
            };
            let (origins, records): (Vec<usize>, Vec<NewRecord>) = items.into_iter().unzip();
            let (dispositions, report) = run_pipeline(&plugins, pipeline, &topic, records).await?;
            if let Some(trace) = trace.as_deref_mut() {
                trace.pipeline_ran(report, &origins);
            }
            for (origin, disposition) in origins.into_iter().zip(dispositions) {
                if let Some(reason) = disposition.rejected {
                    rejected[origin] = Some(reason);
                    continue;
                }
                // A routing rule cannot write where its publisher may not.
                let forbidden = disposition.outputs.iter().find_map(|(d, _)| match d {
                    Destination::Topic(to) => {
                        crate::auth::authorize(publisher, Action::Publish, to).err()
                    }
                    _ => None,
                });
                if let Some(denied) = forbidden {
                    self.inner.metrics.denied("route");
                    let reason = format!("a plugin routed the message: {denied}");
                    if let Some(held) = ROUTE_DENIALS_LOG.allow() {
                        tracing::warn!(topic = %topic, principal = %publisher.name, held_back = held, "{reason}");
                    }
                    rejected[origin] = Some(reason);
                    continue;
                }
                for (destination, record) in disposition.outputs {
                    // A due time a stage wrote must be one.
                    if let Err(reason) = schedule::due_ms(&record.headers) {
                        let reason = format!("a plugin set {reason}");
                        plan.push_dead_letter(&topic, origin, record, reason, "");
                        continue;
                    }
                    match destination {
                        Destination::Own => plan.push(topic.clone(), origin, record, None),
                        Destination::Topic(to) if checks::topic(&to).is_ok() => {
                            plan.push(to, origin, record, None)
                        }
                        Destination::Topic(to) => {
                            let reason = format!("a plugin routed the message to {to:?}, which is not a valid topic name");
                            plan.push_dead_letter(&topic, origin, record, reason, "");
                        }
                        Destination::DeadLetter { reason, stage } => {
                            plan.push_dead_letter(&topic, origin, record, reason, &stage)
                        }
                    }
                }
            }
        }
        Ok(plan)
    }

    /// Resolves every destination first (a publish that fails must not have
    /// stored part of its messages), then appends to each in order. Each
    /// topic takes its messages all or nothing; across topics there is no
    /// transaction, so when the disk fails or fills between two of them the
    /// messages of the refused topic are answered as not stored, one by one.
    async fn append_plan(
        &self,
        mut plan: Plan,
        rejected: &mut [Option<String>],
        mut trace: Option<&mut PublishTrace>,
    ) -> Result<Vec<Append>, BrokerError> {
        let mut delayed = plan.take_delayed(crate::store::now_ms());
        // A topic's default time-to-live goes with each message without one.
        for (destination, entries) in &mut plan.by_topic {
            let always = dead_letter::is_dead_letter_topic(destination);
            if let Some(ttl) = self.resolve_topic(destination, always).await? {
                for (_, record, _) in entries {
                    schedule::give_ttl(record, ttl);
                }
            }
        }
        for (_, topic, _, record) in &mut delayed {
            if let Some(ttl) = self.resolve_topic(topic, false).await? {
                schedule::give_ttl(record, ttl);
            }
        }
        let mut appends = Vec::with_capacity(plan.by_topic.len() + 1);
        if !delayed.is_empty() {
            let mut origins = Vec::with_capacity(delayed.len());
            let mut places = Vec::with_capacity(delayed.len());
            let mut entries = Vec::with_capacity(delayed.len());
            for (origin, topic, due, mut record) in delayed {
                if let Some(trace) = trace.as_deref_mut() {
                    trace.appending(origin, &topic, &mut record);
                }
                origins.push((origin, None));
                places.push((topic.clone(), due));
                entries.push((topic, record));
            }
            let ticket = self
                .inner
                .schedule
                .append(entries)
                .await
                .map_err(|e| BrokerError::store("the schedule of delayed messages", e))?;
            appends.push(Append {
                topic: String::new(),
                origins,
                ticket,
                delayed: Some(places),
            });
        }
        for (destination, entries) in plan.by_topic {
            let (meta, records): (Vec<Origin>, Vec<NewRecord>) = entries
                .into_iter()
                .map(|(origin, mut record, dead)| {
                    if let Some(trace) = trace.as_deref_mut() {
                        trace.appending(origin, &destination, &mut record);
                    }
                    ((origin, dead), record)
                })
                .unzip();
            match self.inner.store.append(&destination, records).await {
                Ok(ticket) => appends.push(Append {
                    topic: destination,
                    origins: meta,
                    ticket,
                    delayed: None,
                }),
                // Nothing stored yet: the publish fails whole.
                Err(e) if appends.is_empty() => return Err(BrokerError::store(&destination, e)),
                // Some topics took their messages already: these are
                // refused one by one (see `PendingPublish::wait`).
                Err(e) => {
                    let error = BrokerError::store(&destination, e);
                    for (origin, _) in meta {
                        rejected[origin] = Some(format!("not stored: {error}"));
                    }
                }
            }
        }
        Ok(appends)
    }

    /// Makes sure a topic exists before appending: created if missing when
    /// `topics.auto_create` is on, or always for the broker's own writes
    /// (dead letters). Its default time-to-live, if it has one.
    async fn resolve_topic(&self, name: &str, always: bool) -> Result<Option<u64>, BrokerError> {
        let store = &self.inner.store;
        if let Some(topic) = store.topic(name) {
            return Ok(topic.default_ttl_ms);
        }
        if !always && !self.inner.config.topics.auto_create {
            return Err(BrokerError::TopicNotFound(name.to_owned()));
        }
        store
            .ensure_topic(name)
            .await
            .map(|topic| topic.default_ttl_ms)
            .map_err(|e| BrokerError::store(name, e))
    }
}

/// Runs pipeline `index` of `plugins` over `records` of `topic`: here if
/// its last run was quick (handing the worker over costs more), else off
/// the async worker.
pub(super) async fn run_pipeline(
    plugins: &Arc<PluginSet>,
    index: usize,
    topic: &str,
    records: Vec<NewRecord>,
) -> Result<(Vec<Disposition>, RunReport), BrokerError> {
    let chosen = &plugins.pipelines[index];
    if chosen.runs_quickly() {
        return Ok(chosen.run(topic, records, crate::store::now_ms()));
    }
    let plugins = plugins.clone();
    let name = topic.to_owned();
    let run = move || plugins.pipelines[index].run(&name, records, crate::store::now_ms());
    if tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::MultiThread
    {
        Ok(tokio::task::block_in_place(run))
    } else {
        tokio::task::spawn_blocking(run)
            .await
            .map_err(|e| BrokerError::Internal(format!("pipeline task failed: {e}")))
    }
}
