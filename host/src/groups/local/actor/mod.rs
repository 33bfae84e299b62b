//! The task that runs one consumer group. See the module docs of
//! [`super`] for the round structure.
//!
//! # Layout
//!
//! - this file: the actor's state, start-up and its round loop.
//! - [`deliver`]: reading ahead and handing messages out.
//! - [`settle`]: settlements, failures, dead letters.
//! - [`journaling`]: the round's events to the journal, then its effects out.
//! - [`recovery`]: start positions, restart recovery, reset, status.

mod deliver;
mod journaling;
mod recovery;
mod settle;

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use sluice_proto::{GroupInfo, Pattern};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::journal::Journal;
use super::state::{Event, GroupState};
use super::{Command, GroupHandle, GroupSettings, MessageKey};
use crate::config::FsyncPolicy;
use crate::error::BrokerError;
use crate::groups::policy;
use crate::groups::GroupDelivery;
use crate::store::{Record, Store, StoreError, TopicEvent};
use journaling::Flight;

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
/// Retry delay when a pending message cannot be read.
const UNREADABLE_RETRY: Duration = Duration::from_secs(1);
/// Most offsets of a topic between the group's ack floor and its read
/// position. A message left unsettled that long holds the group's reading
/// of the topic until it is settled, redelivered or dead-lettered, so what
/// the group keeps of settled offsets above the floor stays bounded.
const MAX_WINDOW: u64 = 262_144;

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
    fsync_interval: Duration,
    /// Where dead letters are recorded for `sluice trace`.
    record: Arc<crate::trace::Journal>,
    /// Journal writes made without an fsync (`fsync = "interval"`).
    unsynced: bool,
    /// Why the group refuses work after its journal failed (see `journaling`).
    failed: Option<Arc<str>>,
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
    /// Pending messages that could not be read (a read error), to retry.
    unreadable: Vec<(String, u64)>,
    /// When to retry them.
    unreadable_retry: Option<Instant>,
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
    pub disk: crate::disk::SharedDisk,
    pub fsync: FsyncPolicy,
    pub fsync_interval: Duration,
    /// Where dead letters are recorded for `sluice trace`.
    pub record: Arc<crate::trace::Journal>,
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
        disk,
        fsync,
        fsync_interval,
        record,
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
    let (journal, state) = tokio::task::spawn_blocking(move || Journal::open(disk, &dir))
        .await
        .map_err(|e| storage(StoreError::Task(e.to_string())))?
        .map_err(storage)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let commits = store.commits();
    // Subscribed before the first look at the topics: a topic created
    // after it is announced, one created before it is found.
    let topics = store.events();
    let mut actor = Actor {
        name: name.clone(),
        pattern,
        settings: settings.clone(),
        store,
        fsync,
        fsync_interval,
        record,
        unsynced: false,
        failed: None,
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
        unreadable: Vec::new(),
        unreadable_retry: None,
        redeliveries: 0,
        dead_lettered: 0,
        events: Vec::new(),
        outbox: Vec::new(),
        replies: Vec::new(),
    };
    actor.discover_topics(created).await;
    actor.check_positions();
    actor.recover_pending().await;
    actor.write_now().await;
    let handle = Arc::new(GroupHandle {
        name,
        settings,
        commands: tx,
    });
    tasks.spawn(actor.run(rx, commits, topics, stop));
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

    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut commits: watch::Receiver<u64>,
        mut topics: broadcast::Receiver<TopicEvent>,
        stop: CancellationToken,
    ) {
        tracing::info!(group = %self.name, pattern = %self.pattern, "consumer group started");
        // At most one journal write in flight: while it runs the group
        // goes on taking commands, whose events, deliveries and answers
        // wait for the next write.
        let mut flight: Option<Flight> = None;
        let mut sync_tick = tokio::time::interval(self.fsync_interval);
        sync_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.fill().await;
            self.pump(Instant::now());
            if flight.is_none() {
                flight = self.start_write();
            }
            self.store_dead_letters().await;
            if flight.is_none() && !self.events.is_empty() {
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
                // New messages: the next round reads them.
                changed = commits.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                event = topics.recv() => match event {
                    Ok(TopicEvent::Created(topic)) if self.pattern.matches(&topic.name) => {
                        self.discover_topics(false).await;
                    }
                    // Its messages are gone: nothing of it is delivered any more.
                    Ok(TopicEvent::Deleted { name, .. }) if self.pattern.matches(&name) => {
                        self.forget_topic(&name);
                    }
                    Ok(_) => {}
                    // Events were missed: look at every topic again.
                    Err(broadcast::error::RecvError::Lagged(_)) => self.discover_topics(false).await,
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                written = journaling::landed(&mut flight), if flight.is_some() => {
                    if let Some(landed) = flight.take() {
                        self.land(landed, written);
                    }
                }
                _ = sync_tick.tick(), if self.unsynced && flight.is_none() => self.sync_journal(),
                () = sleep => {}
                () = stop.cancelled() => break,
            }
            self.expire(Instant::now());
        }
        if let Some(mut landed) = flight.take() {
            let written = (&mut landed.task).await;
            self.land(landed, written);
        }
        self.write_now().await;
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
        .into_iter()
        .chain(self.unreadable_retry)
        .min()
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
            Command::SettleMany {
                members,
                items,
                reply,
            } => {
                let now = Instant::now();
                let results = items
                    .into_iter()
                    .map(|item| self.settle(&members, item, now))
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
}
