//! The task that runs one consumer group. See the module docs of
//! [`super`] for the round structure.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use sluice_proto::{GroupInfo, GroupTopicInfo, MemberInfo, Pattern, SettleAction, StartPosition};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::journal::Journal;
use super::state::{Event, GroupState};
use super::{Command, GroupHandle, GroupSettings, MessageKey};
use crate::config::FsyncPolicy;
use crate::error::BrokerError;
use crate::groups::policy::{self, AfterFailure};
use crate::groups::GroupDelivery;
use crate::store::{Record, Store, StoreError, TopicMeta};

/// Messages read ahead from the log and not yet delivered.
const READ_AHEAD: usize = 4096;
/// Messages read from the log at once.
const READ_BATCH: usize = 512;
/// How far into the read-ahead a key-ordered group looks for a free key.
const KEY_SCAN: usize = 1024;
/// Commands taken in one round.
const ROUND_COMMANDS: usize = 512;
/// Retry delay when a dead letter cannot be stored.
const DEAD_LETTER_RETRY: Duration = Duration::from_secs(1);

type MessageId = (Arc<str>, u64);

struct Fresh {
    topic: Arc<str>,
    record: Record,
}

struct Pending {
    record: Record,
    attempt: u32,
    /// Holder while in flight.
    member: Option<u64>,
    deadline: Option<Instant>,
    due: Option<Instant>,
    last_reason: String,
}

struct Member {
    client: String,
    max_in_flight: u32,
    /// Deliveries this member still takes, if it set a limit.
    remaining: Option<u64>,
    in_flight: u32,
    delivered: u64,
    tx: mpsc::UnboundedSender<GroupDelivery>,
}

struct Actor {
    name: String,
    pattern: Pattern,
    settings: GroupSettings,
    store: Arc<dyn Store>,
    fsync: FsyncPolicy,
    /// Taken while a write runs on the blocking pool.
    journal: Option<Journal>,
    state: GroupState,
    /// Next offset to read ahead, per topic.
    read_pos: BTreeMap<Arc<str>, u64>,
    fresh: VecDeque<Fresh>,
    pending: BTreeMap<MessageId, Pending>,
    /// In flight, by ack deadline.
    deadlines: BTreeSet<(Instant, MessageId)>,
    /// Waiting for redelivery, by due time.
    ready: BTreeSet<(Instant, MessageId)>,
    /// Key-ordered groups: keys owned by a pending message.
    busy_keys: HashSet<MessageKey>,
    members: BTreeMap<u64, Member>,
    last_member: u64,
    dead_letters: Vec<(MessageId, String)>,
    /// When storing dead letters failed: not before this.
    dead_letter_retry: Option<Instant>,
    redeliveries: u64,
    dead_lettered: u64,
    // Per round:
    events: Vec<Event>,
    outbox: Vec<(u64, GroupDelivery)>,
    replies: Vec<Reply>,
}

enum Reply {
    Reset(oneshot::Sender<Result<GroupInfo, BrokerError>>),
    SettleMany(
        oneshot::Sender<Vec<Result<(), BrokerError>>>,
        Vec<Result<(), BrokerError>>,
    ),
}

/// What a group's actor starts from.
pub(crate) struct Spawn {
    pub store: Arc<dyn Store>,
    pub fsync: FsyncPolicy,
    pub name: String,
    pub dir: std::path::PathBuf,
    pub settings: GroupSettings,
    /// True for a group created now (it starts at its start position).
    pub created: bool,
    pub stop: CancellationToken,
    pub tasks: TaskTracker,
}

/// Opens a group's journal (on the blocking pool), recovers its state and
/// starts its actor.
pub(crate) async fn spawn(spawn: Spawn) -> Result<Arc<GroupHandle>, BrokerError> {
    let Spawn {
        store,
        fsync,
        name,
        dir,
        settings,
        created,
        stop,
        tasks,
    } = spawn;
    let pattern =
        Pattern::parse(&settings.pattern).map_err(|reason| BrokerError::InvalidPattern {
            pattern: settings.pattern.clone(),
            reason,
        })?;
    let storage = |source| BrokerError::Storage {
        topic: format!("group {name}"),
        source,
    };
    let (journal, state) = tokio::task::spawn_blocking(move || Journal::open(&dir))
        .await
        .map_err(|e| storage(StoreError::Task(e.to_string())))?
        .map_err(storage)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let commits = store.commits();
    let mut actor = Actor {
        name: name.clone(),
        pattern,
        settings: settings.clone(),
        store,
        fsync,
        journal: Some(journal),
        state,
        read_pos: BTreeMap::new(),
        fresh: VecDeque::new(),
        pending: BTreeMap::new(),
        deadlines: BTreeSet::new(),
        ready: BTreeSet::new(),
        busy_keys: HashSet::new(),
        members: BTreeMap::new(),
        last_member: 0,
        dead_letters: Vec::new(),
        dead_letter_retry: None,
        redeliveries: 0,
        dead_lettered: 0,
        events: Vec::new(),
        outbox: Vec::new(),
        replies: Vec::new(),
    };
    actor.discover_topics(created).await;
    actor.recover_pending().await;
    actor.flush_events().await;
    let handle = Arc::new(GroupHandle {
        name,
        settings,
        commands: tx,
    });
    tasks.spawn(actor.run(rx, commits, stop));
    Ok(handle)
}

impl Actor {
    fn key_ordered(&self) -> bool {
        self.settings.options.key_ordered
    }

    fn ack_wait(&self) -> Duration {
        policy::ack_wait(&self.settings.options)
    }

    fn record_event(&mut self, event: Event) {
        self.state.apply(&event);
        self.events.push(event);
    }

    /// Starts reading topics that match and are new to the group. At
    /// creation, existing topics start at the group's start position; topics
    /// that appear later start at their beginning.
    async fn discover_topics(&mut self, at_creation: bool) {
        for topic in self.store.topics(&self.pattern) {
            if !self.state.topics.contains_key(&*topic.name) {
                let start = if at_creation {
                    resolve_position(&*self.store, &topic, self.settings.options.start).await
                } else {
                    topic.start_offset
                };
                self.record_event(Event::TopicAdded {
                    topic: topic.name.to_string(),
                    start,
                });
            }
            if !self.read_pos.contains_key(&topic.name) {
                let cursor = self.state.topics.get(&*topic.name).map_or(0, |c| c.cursor);
                self.read_pos.insert(topic.name.clone(), cursor);
            }
        }
    }

    /// After a restart every pending message is delivered again, first and
    /// in offset order (so key order holds), with its attempt count kept.
    async fn recover_pending(&mut self) {
        let mut missing = Vec::new();
        let mut recovered = Vec::new();
        let pending: Vec<(String, Vec<u64>)> = self
            .state
            .topics
            .iter()
            .map(|(t, c)| (t.clone(), c.pending_offsets().collect()))
            .collect();
        for (topic_name, offsets) in pending {
            let Some(topic) = self.store.topic(&topic_name) else {
                continue;
            };
            for offset in offsets {
                let read = self
                    .store
                    .read(&topic.name, topic.incarnation, offset, 1, 1)
                    .await;
                match read {
                    Ok(batch) if batch.records.first().is_some_and(|r| r.offset == offset) => {
                        let Some(record) = batch.records.into_iter().next() else {
                            continue;
                        };
                        let attempt = self.state.attempts(&topic_name, offset);
                        if let Some(reason) =
                            policy::exhausted_at_restart(&self.settings.options, attempt)
                        {
                            // Its last delivery ended with the broker: that
                            // was the last attempt it had.
                            let id: MessageId = (topic.name.clone(), offset);
                            if self.key_ordered() {
                                if let Some(key) = &record.key {
                                    self.busy_keys.insert(key.clone());
                                }
                            }
                            self.pending.insert(
                                id.clone(),
                                Pending {
                                    record,
                                    attempt,
                                    member: None,
                                    deadline: None,
                                    due: None,
                                    last_reason: "broker restarted".into(),
                                },
                            );
                            self.dead_letters.push((id, reason));
                            continue;
                        }
                        recovered.push(Fresh {
                            topic: topic.name.clone(),
                            record,
                        });
                    }
                    _ => missing.push((topic_name.clone(), offset)),
                }
            }
        }
        if !recovered.is_empty() {
            tracing::info!(group = %self.name, messages = recovered.len(), "redelivering messages pending at the last stop");
        }
        recovered.extend(self.fresh.drain(..));
        self.fresh = recovered.into();
        for (topic, offset) in missing {
            // Removed by retention while pending: nothing left to deliver.
            self.record_event(Event::Skipped {
                topic,
                from: offset,
                to: offset + 1,
            });
        }
    }

    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut commits: watch::Receiver<u64>,
        stop: CancellationToken,
    ) {
        tracing::info!(group = %self.name, pattern = %self.pattern, "consumer group started");
        loop {
            self.fill().await;
            self.pump(Instant::now());
            self.finish_round().await;
            self.store_dead_letters().await;
            if !self.events.is_empty() {
                continue;
            }
            let next_timer = self.next_timer();
            let sleep = tokio::time::sleep_until(
                next_timer.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
            );
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => {
                        self.handle(command).await;
                        let mut taken = 1;
                        while taken < ROUND_COMMANDS {
                            match commands.try_recv() {
                                Ok(command) => self.handle(command).await,
                                Err(_) => break,
                            }
                            taken += 1;
                        }
                    }
                    None => break,
                },
                changed = commits.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    self.discover_topics(false).await;
                }
                () = sleep => {}
                () = stop.cancelled() => break,
            }
            self.expire(Instant::now());
        }
        self.finish_round().await;
        if let Some(journal) = self.journal.take() {
            let synced = tokio::task::spawn_blocking(move || journal.sync()).await;
            if let Ok(Err(e)) = synced {
                tracing::error!(group = %self.name, error = %e, "final fsync of the group journal failed");
            }
        }
        tracing::debug!(group = %self.name, "consumer group stopped");
    }

    fn next_timer(&self) -> Option<Instant> {
        // A due redelivery only needs a wake-up if a member can take it; a
        // join or a settlement that frees credit wakes the loop anyway.
        policy::next_wake(
            self.deadlines.first().map(|(t, _)| *t),
            self.ready.first().map(|(t, _)| *t),
            self.member_with_credit().is_some(),
            self.dead_letter_retry,
        )
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Join {
                member,
                client,
                max_in_flight,
                limit,
                deliveries,
            } => {
                tracing::debug!(group = %self.name, member, %client, "member joined");
                self.members.insert(
                    member,
                    Member {
                        client,
                        max_in_flight: max_in_flight.max(1),
                        remaining: limit,
                        in_flight: 0,
                        delivered: 0,
                        tx: deliveries,
                    },
                );
            }
            Command::Leave { member } => self.member_left(member),
            Command::SettleMany { items, reply } => {
                let now = Instant::now();
                let results = items
                    .into_iter()
                    .map(|(topic, offset, action)| self.settle(&topic, offset, action, now))
                    .collect();
                self.replies.push(Reply::SettleMany(reply, results));
            }
            Command::Info { reply } => {
                let _ = reply.send(self.info());
            }
            Command::Reset { to, reply } => {
                self.reset(to).await;
                self.replies.push(Reply::Reset(reply));
            }
        }
    }

    /// A member left: what it held goes to the others at once.
    fn member_left(&mut self, member: u64) {
        if self.members.remove(&member).is_none() {
            return;
        }
        let now = Instant::now();
        let held: Vec<MessageId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.member == Some(member))
            .map(|(id, _)| id.clone())
            .collect();
        tracing::debug!(group = %self.name, member, handed_over = held.len(), "member left");
        for id in held {
            // A delivery to a member that went away counts as a failed
            // attempt: at max_deliver the message is dead-lettered (it may
            // be what brings workers down), otherwise it is due at once.
            self.retry(&id, "member left", Some(Duration::ZERO), now);
        }
    }

    fn release_member_credit(&mut self, member: Option<u64>) {
        if let Some(m) = member.and_then(|m| self.members.get_mut(&m)) {
            m.in_flight = m.in_flight.saturating_sub(1);
        }
    }

    fn settle(
        &mut self,
        topic: &str,
        offset: u64,
        action: SettleAction,
        now: Instant,
    ) -> Result<(), BrokerError> {
        let id: MessageId = (Arc::from(topic), offset);
        let ack_wait = self.ack_wait();
        let Some(p) = self.pending.get_mut(&id) else {
            return Err(BrokerError::UnknownDelivery(format!(
                "{topic}@{offset} is not pending in group {} (never delivered, or already settled)",
                self.name
            )));
        };
        match action {
            SettleAction::Ack => {
                let member = p.member;
                self.release_member_credit(member);
                self.finish(&id);
            }
            SettleAction::Nack { delay_ms } => {
                let Some(member) = p.member else {
                    return Ok(()); // already waiting for redelivery
                };
                self.release_member_credit(Some(member));
                self.retry(&id, "nacked", delay_ms.map(Duration::from_millis), now);
            }
            SettleAction::Reject { reason } => {
                let member = p.member;
                self.release_member_credit(member);
                self.unschedule(&id);
                self.dead_letters.push((id, policy::rejected(&reason)));
            }
            SettleAction::InProgress => {
                if p.member.is_some() {
                    let new_deadline = now + ack_wait;
                    if let Some(old) = p.deadline.replace(new_deadline) {
                        self.deadlines.remove(&(old, id.clone()));
                    }
                    self.deadlines.insert((new_deadline, id));
                }
            }
        }
        Ok(())
    }

    /// Removes a pending message from the timers.
    fn unschedule(&mut self, id: &MessageId) {
        if let Some(p) = self.pending.get_mut(id) {
            if let Some(deadline) = p.deadline.take() {
                self.deadlines.remove(&(deadline, id.clone()));
            }
            if let Some(due) = p.due.take() {
                self.ready.remove(&(due, id.clone()));
            }
            p.member = None;
        }
    }

    /// The message is done (acked or dead-lettered).
    fn finish(&mut self, id: &MessageId) {
        self.unschedule(id);
        if let Some(p) = self.pending.remove(id) {
            if self.key_ordered() {
                if let Some(key) = &p.record.key {
                    self.busy_keys.remove(key);
                }
            }
        }
        self.record_event(Event::Settled {
            topic: id.0.to_string(),
            offset: id.1,
        });
    }

    /// Schedules a redelivery, or a dead letter after `max_deliver` attempts.
    fn retry(&mut self, id: &MessageId, reason: &str, delay: Option<Duration>, now: Instant) {
        self.unschedule(id);
        let Some(p) = self.pending.get_mut(id) else {
            return;
        };
        p.last_reason = reason.to_owned();
        match policy::after_failure(&self.settings.options, p.attempt, reason, delay) {
            AfterFailure::DeadLetter { reason } => self.dead_letters.push((id.clone(), reason)),
            AfterFailure::Redeliver { after } => {
                let due = now + after;
                p.due = Some(due);
                self.ready.insert((due, id.clone()));
            }
        }
    }

    /// Ack deadlines that passed.
    fn expire(&mut self, now: Instant) {
        while let Some((deadline, id)) = self.deadlines.first().cloned() {
            if deadline > now {
                break;
            }
            self.deadlines.remove(&(deadline, id.clone()));
            let member = self.pending.get_mut(&id).and_then(|p| {
                p.deadline = None;
                p.member
            });
            self.release_member_credit(member);
            self.retry(&id, "ack wait expired", None, now);
        }
    }

    /// Reads ahead from the topics with new committed messages.
    async fn fill(&mut self) {
        if self.fresh.len() >= READ_AHEAD / 2 {
            return;
        }
        let topics: Vec<(Arc<str>, u64)> =
            self.read_pos.iter().map(|(t, p)| (t.clone(), *p)).collect();
        for (name, pos) in topics {
            if self.fresh.len() >= READ_AHEAD {
                break;
            }
            let Some(topic) = self.store.topic(&name) else {
                continue;
            };
            if topic.committed_end <= pos {
                continue;
            }
            let want = READ_BATCH.min(READ_AHEAD - self.fresh.len());
            let read = self
                .store
                .read(&name, topic.incarnation, pos, want, 4 * 1024 * 1024)
                .await;
            let batch = match read {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(group = %self.name, topic = %name, error = %e, "cannot read topic");
                    continue;
                }
            };
            if let Some(first) = batch.records.first() {
                if first.offset > pos {
                    self.record_event(Event::Skipped {
                        topic: name.to_string(),
                        from: pos,
                        to: first.offset,
                    });
                }
            }
            let next = batch
                .records
                .last()
                .map_or(batch.next_offset.max(pos), |r| r.offset + 1);
            self.read_pos.insert(name.clone(), next);
            for record in batch.records {
                self.fresh.push_back(Fresh {
                    topic: name.clone(),
                    record,
                });
            }
        }
    }

    /// The next member with credit, round robin.
    fn member_with_credit(&self) -> Option<u64> {
        let has_credit = |(id, m): (&u64, &Member)| {
            (m.in_flight < m.max_in_flight && m.remaining != Some(0)).then_some(*id)
        };
        self.members
            .range(self.last_member + 1..)
            .find_map(has_credit)
            .or_else(|| self.members.range(..=self.last_member).find_map(has_credit))
    }

    /// Hands messages to members while both exist.
    fn pump(&mut self, now: Instant) {
        while let Some(member) = self.member_with_credit() {
            // Redeliveries first: they own their keys already.
            if let Some((due, id)) = self.ready.first().cloned() {
                if due <= now {
                    self.ready.remove(&(due, id.clone()));
                    if let Some(p) = self.pending.get_mut(&id) {
                        p.due = None;
                    }
                    self.redeliveries += 1;
                    self.deliver(id, member, now);
                    continue;
                }
            }
            let Some(fresh) = self.take_fresh() else {
                break;
            };
            let id: MessageId = (fresh.topic.clone(), fresh.record.offset);
            if self.key_ordered() {
                if let Some(key) = &fresh.record.key {
                    self.busy_keys.insert(key.clone());
                }
            }
            let attempt = self.state.attempts(&fresh.topic, fresh.record.offset);
            self.pending.insert(
                id.clone(),
                Pending {
                    record: fresh.record,
                    attempt,
                    member: None,
                    deadline: None,
                    due: None,
                    last_reason: String::new(),
                },
            );
            self.deliver(id, member, now);
        }
    }

    /// The first read-ahead message that may go now (key order respected).
    fn take_fresh(&mut self) -> Option<Fresh> {
        let keys = self.fresh.iter().map(|f| f.record.key.as_ref());
        let index = policy::next_to_deliver(self.key_ordered(), keys, &self.busy_keys, KEY_SCAN)?;
        self.fresh.remove(index)
    }

    fn deliver(&mut self, id: MessageId, member: u64, now: Instant) {
        let deadline = now + self.ack_wait();
        let Some(p) = self.pending.get_mut(&id) else {
            return;
        };
        p.attempt += 1;
        p.member = Some(member);
        p.deadline = Some(deadline);
        let attempt = p.attempt;
        let record = p.record.clone();
        self.deadlines.insert((deadline, id.clone()));
        if let Some(m) = self.members.get_mut(&member) {
            m.in_flight += 1;
            m.delivered += 1;
            if let Some(remaining) = m.remaining.as_mut() {
                *remaining = remaining.saturating_sub(1);
            }
        }
        self.last_member = member;
        self.record_event(Event::Delivered {
            topic: id.0.to_string(),
            offset: id.1,
            attempt,
        });
        self.outbox.push((
            member,
            GroupDelivery {
                topic: id.0,
                record,
                attempt,
            },
        ));
    }

    /// Writes the round's events to the journal (one write, and one fsync
    /// under `fsync = "always"`), compacting it when due, on the blocking
    /// pool.
    async fn flush_events(&mut self) {
        if self.events.is_empty() {
            return;
        }
        let Some(mut journal) = self.journal.take() else {
            return;
        };
        let events = std::mem::take(&mut self.events);
        let fsync = self.fsync == FsyncPolicy::Always;
        // The state after these events, for a compaction (rare: every
        // 50,000 events).
        let state = journal
            .wants_compaction_after(events.len())
            .then(|| self.state.clone());
        let written = tokio::task::spawn_blocking(move || {
            let result =
                journal
                    .append(&events)
                    .and_then(|()| if fsync { journal.sync() } else { Ok(()) });
            let compacted = state.map(|state| journal.compact(&state));
            (journal, result, compacted)
        })
        .await;
        let (journal, result, compacted) = match written {
            Ok(written) => written,
            Err(e) => {
                tracing::error!(group = %self.name, error = %e, "group journal task failed");
                return;
            }
        };
        self.journal = Some(journal);
        if let Err(e) = result {
            // The state in memory is still right; a crash now may redeliver.
            tracing::error!(group = %self.name, error = %e, "cannot write the group journal");
        }
        if let Some(Err(e)) = compacted {
            tracing::error!(group = %self.name, error = %e, "cannot compact the group journal");
        }
    }

    /// Makes the round's events durable, then lets its effects out.
    async fn finish_round(&mut self) {
        self.flush_events().await;
        let mut gone = Vec::new();
        for (member, delivery) in self.outbox.drain(..) {
            let sent = self
                .members
                .get(&member)
                .is_some_and(|m| m.tx.send(delivery).is_ok());
            if !sent {
                gone.push(member);
            }
        }
        for member in gone {
            self.member_left(member);
        }
        for reply in std::mem::take(&mut self.replies) {
            match reply {
                Reply::Reset(tx) => {
                    let _ = tx.send(Ok(self.info()));
                }
                Reply::SettleMany(tx, results) => {
                    let _ = tx.send(results);
                }
            }
        }
    }

    /// Stores queued dead letters, then settles them.
    async fn store_dead_letters(&mut self) {
        for (id, reason) in std::mem::take(&mut self.dead_letters) {
            let Some(p) = self.pending.get(&id) else {
                continue;
            };
            let dlq_topic = self
                .settings
                .options
                .dead_letter_topic
                .clone()
                .unwrap_or_else(|| crate::dead_letter::topic_for(&id.0));
            let record =
                crate::dead_letter::from_group(&p.record, &id.0, &self.name, p.attempt, &reason);
            let stored = store_dead_letter(&*self.store, &dlq_topic, record).await;
            match stored {
                Ok(_) => {
                    tracing::info!(group = %self.name, topic = %id.0, offset = id.1, dead_letter_topic = %dlq_topic, %reason, "message dead-lettered");
                    self.dead_lettered += 1;
                    self.finish(&id);
                }
                Err(e) => {
                    tracing::error!(group = %self.name, topic = %id.0, offset = id.1, error = %e, "cannot store dead letter; will retry");
                    self.dead_letter_retry = Some(Instant::now() + DEAD_LETTER_RETRY);
                    self.dead_letters.push((id, reason));
                }
            }
        }
    }

    async fn reset(&mut self, to: StartPosition) {
        let topics = self.store.topics(&self.pattern);
        // Everything pending is forgotten; members' credits are restored.
        let ids: Vec<MessageId> = self.pending.keys().cloned().collect();
        for id in ids {
            self.unschedule(&id);
        }
        self.pending.clear();
        self.busy_keys.clear();
        self.fresh.clear();
        for m in self.members.values_mut() {
            m.in_flight = 0;
        }
        for topic in topics {
            let position = resolve_position(&*self.store, &topic, to).await;
            self.record_event(Event::Reset {
                topic: topic.name.to_string(),
                position,
            });
            self.read_pos.insert(topic.name.clone(), position);
        }
        tracing::info!(group = %self.name, to = ?to, "consumer group reset");
    }

    fn info(&self) -> GroupInfo {
        let topics = self
            .state
            .topics
            .iter()
            .map(|(name, c)| {
                let end = self.store.topic(name).map_or(c.cursor, |t| t.committed_end);
                GroupTopicInfo {
                    topic: name.clone(),
                    ack_floor: c.floor,
                    cursor: c.cursor,
                    end_offset: end,
                    lag: end.saturating_sub(c.cursor),
                    pending: c.pending(),
                }
            })
            .collect();
        GroupInfo {
            name: self.name.clone(),
            pattern: self.settings.pattern.clone(),
            options: self.settings.options.clone(),
            members: self
                .members
                .iter()
                .map(|(id, m)| MemberInfo {
                    id: *id,
                    client: m.client.clone(),
                    in_flight: m.in_flight,
                    max_in_flight: m.max_in_flight,
                    delivered: m.delivered,
                })
                .collect(),
            topics,
            redeliveries: self.redeliveries,
            dead_lettered: self.dead_lettered,
        }
    }
}

/// Where `position` is on `topic` now.
async fn resolve_position(store: &dyn Store, topic: &TopicMeta, position: StartPosition) -> u64 {
    match position {
        StartPosition::Earliest => topic.start_offset,
        StartPosition::Latest => topic.committed_end,
        StartPosition::Offset(o) => o,
        StartPosition::Timestamp(ts) => store
            .offset_for_time(&topic.name, ts)
            .await
            .unwrap_or(topic.committed_end),
    }
}

/// Stores a dead letter made by the group (no pipeline runs, and the topic
/// is created whatever `auto_create` says). Completes once committed.
async fn store_dead_letter(
    store: &dyn Store,
    topic: &str,
    record: crate::store::NewRecord,
) -> Result<u64, StoreError> {
    store.ensure_topic(topic).await?;
    let ticket = store.append(topic, vec![record]).await?;
    let appended = ticket.await?;
    appended
        .first()
        .map(|a| a.offset())
        .ok_or_else(|| StoreError::Task("dead letter not appended".into()))
}
