//! [`Campaign`]: the rounds of the crash test against one child broker.
//! A round runs the load for a random time, SIGKILLs the broker, collects
//! what the clients saw and restarts it; a check after each restart reads
//! the logs back and compares them with the history; at the end the group
//! is drained and everything is checked from the start.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sluice_client::{Client, GroupInfo, StartPosition};
use sluice_tests::history::Violation;
use sluice_tests::{fetch_all_within, ChildBroker, WAIT};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::load::{self, lock, History, MemberEnd, GROUP, TOPICS};

/// The broker's settings: acked means fsynced, and small segments so that
/// rolls happen every round. The de-duplication window is far longer than
/// a round, so every retry of an unacked message (made in the next round)
/// is within it; and no longer, since each restart reads the ids of the
/// whole window back from the log.
const BROKER_CONFIG: &str =
    "[storage]\nfsync = \"always\"\nsegment_bytes = 262144\n\n[topics]\ndedup_window = \"2m\"\n";
/// How long a load task may take to end once its connection is closed.
const TASK_END_LIMIT: Duration = Duration::from_secs(10);
/// How long reading a topic back may take (the final check reads it all).
const READ_LIMIT: Duration = Duration::from_secs(300);
/// How often the drain looks at the group's progress.
const DRAIN_POLL: Duration = Duration::from_millis(200);
/// The drain fails when the group has not come closer to done for this long.
const DRAIN_STALL: Duration = Duration::from_secs(30);
/// The drain fails after this long in all.
const DRAIN_LIMIT: Duration = Duration::from_secs(600);

/// How the rounds are run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Kill rounds.
    pub rounds: u32,
    /// Shortest load before a kill.
    pub min_load: Duration,
    /// Longest load before a kill.
    pub max_load: Duration,
    /// Publishers, each on its own connection.
    pub publishers: usize,
    /// Group members, each on its own connection.
    pub members: usize,
    /// Deliveries a member nacks, in percent.
    pub nack_percent: u8,
}

/// What one round did, for its progress line.
#[derive(Debug, Default)]
pub struct RoundReport {
    /// Load time before the kill.
    pub load: Duration,
    /// Deliveries held unsettled by the members at the kill.
    pub held: usize,
    /// Settles sent and not answered at the kill.
    pub unanswered_settles: usize,
    /// Settles the broker refused during the round.
    pub refused_settles: usize,
    /// Publish batches sent and not answered at the kill (sent again in
    /// the next round).
    pub unanswered_batches: usize,
    /// Load tasks that stopped before the kill, and why.
    pub early_stops: Vec<String>,
    /// Time from the kill until the broker took clients again.
    pub restart: Duration,
}

/// The rounds against one broker and what the clients recorded.
pub struct Campaign {
    broker: ChildBroker,
    history: Arc<History>,
    rng: fastrand::Rng,
    settings: Settings,
    /// Per topic, its end at each check; a round's check reads from the
    /// end two checks back, so each record is read after two restarts.
    ends: BTreeMap<&'static str, Vec<u64>>,
}

impl Campaign {
    /// Starts the broker (`binary`) in `dir` and creates the topics.
    pub async fn start(
        binary: &Path,
        dir: &Path,
        seed: u64,
        settings: Settings,
    ) -> anyhow::Result<Campaign> {
        let broker = ChildBroker::start(binary, dir, BROKER_CONFIG).await?;
        let client = broker.client().await?;
        for topic in TOPICS {
            tokio::time::timeout(WAIT, client.create_topic(topic, None, None))
                .await
                .context("creating a topic timed out")?
                .with_context(|| format!("failed to create {topic}"))?;
        }
        client.close().await;
        Ok(Campaign {
            broker,
            history: Arc::new(History::default()),
            rng: fastrand::Rng::with_seed(seed),
            settings,
            ends: BTreeMap::new(),
        })
    }

    /// The history so far.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Connects `n` clients.
    async fn clients(&self, n: usize, what: &str) -> anyhow::Result<Vec<Client>> {
        let mut clients = Vec::with_capacity(n);
        for _ in 0..n {
            clients.push(
                self.broker
                    .client()
                    .await
                    .with_context(|| format!("failed to connect a {what}"))?,
            );
        }
        Ok(clients)
    }

    /// Starts the group members of life `life` on `clients`.
    fn spawn_members(
        &mut self,
        clients: &[Client],
        life: u32,
        nack_percent: u8,
        stop: &CancellationToken,
    ) -> Vec<JoinHandle<anyhow::Result<MemberEnd>>> {
        clients
            .iter()
            .map(|client| {
                tokio::spawn(load::member(
                    client.clone(),
                    life,
                    fastrand::Rng::with_seed(self.rng.u64(..)),
                    nack_percent,
                    self.history.clone(),
                    stop.clone(),
                ))
            })
            .collect()
    }

    /// Round (and broker life) `life`: load for a random time, SIGKILL,
    /// collect what the clients saw, restart.
    pub async fn round(&mut self, life: u32) -> anyhow::Result<RoundReport> {
        let (min, max) = (self.settings.min_load, self.settings.max_load);
        let load = min + (max - min).mul_f64(self.rng.f64());
        let publisher_clients = self.clients(self.settings.publishers, "publisher").await?;
        let member_clients = self.clients(self.settings.members, "group member").await?;
        let publishers: Vec<_> = publisher_clients
            .iter()
            .enumerate()
            .map(|(index, client)| {
                tokio::spawn(load::publisher(
                    client.clone(),
                    life,
                    index,
                    fastrand::Rng::with_seed(self.rng.u64(..)),
                    self.history.clone(),
                ))
            })
            .collect();
        // Never cancelled: the kill ends the members of a round.
        let stop = CancellationToken::new();
        let members = self.spawn_members(&member_clients, life, self.settings.nack_percent, &stop);

        // The load runs; the kill comes at a random moment of it.
        tokio::time::sleep(load).await;
        let mut report = RoundReport {
            load,
            ..RoundReport::default()
        };
        let stopped_early: Vec<bool> = publishers
            .iter()
            .map(JoinHandle::is_finished)
            .chain(members.iter().map(JoinHandle::is_finished))
            .collect();
        self.broker.kill()?;
        let killed = Instant::now();
        // A killed broker sends no close: end the connections here, so
        // every request still out fails now. Every answer recorded came
        // before the kill.
        for client in publisher_clients.iter().chain(&member_clients) {
            client.connection().close(0u32.into(), b"broker killed");
        }
        for (index, handle) in publishers.into_iter().enumerate() {
            let end = join(handle, "a publisher").await?;
            if stopped_early[index] {
                report
                    .early_stops
                    .push(format!("publisher {index}: {:#}", end.error));
            }
            report.unanswered_batches += end.unacked.len();
            lock(&self.history.retries).extend(end.unacked);
        }
        for (index, handle) in members.into_iter().enumerate() {
            let end = join(handle, "a group member").await??;
            report.held += end.held;
            report.unanswered_settles += end.unanswered;
            report.refused_settles += end.refused;
            if stopped_early[self.settings.publishers + index] {
                let why = end.error.unwrap_or_else(|| "stopped".into());
                report.early_stops.push(format!("member {index}: {why}"));
            }
        }
        self.broker.restart().await?;
        report.restart = killed.elapsed();
        Ok(report)
    }

    /// Reads the topics back and checks them against the history: from the
    /// end two checks back, or (`full`) from the start. Returns the
    /// violations found and how many messages were read.
    pub async fn check(&mut self, full: bool) -> anyhow::Result<(Vec<Violation>, usize)> {
        let client = self.broker.client().await?;
        let mut violations = lock(&self.history.publishes).take_violations();
        violations.extend(lock(&self.history.group).take_violations());
        let mut read = 0;
        for topic in TOPICS {
            let info = tokio::time::timeout(WAIT, client.topic_info(topic))
                .await
                .context("topic info timed out")??;
            let ends = self.ends.entry(topic).or_default();
            let from = if full {
                0
            } else {
                ends.iter().rev().nth(1).copied().unwrap_or(0)
            };
            let from = from.min(info.next_offset);
            let stored =
                fetch_all_within(&client, topic, StartPosition::Offset(from), READ_LIMIT).await?;
            violations.extend(lock(&self.history.publishes).check_log(topic, from, &stored));
            violations.extend(lock(&self.history.group).check_log(topic, from, &stored));
            let read_end = stored.last().map_or(from, |m| m.offset + 1);
            if read_end != info.next_offset || info.start_offset != 0 {
                violations.push(Violation::Other(format!(
                    "{topic} says it holds {}..{}, but reading it from {from} ends at {read_end}",
                    info.start_offset, info.next_offset
                )));
            }
            if let Some(last) = ends.last().filter(|last| **last > info.next_offset) {
                violations.push(Violation::Other(format!(
                    "{topic} ended at {last} before the kill and at {} after the restart",
                    info.next_offset
                )));
            }
            ends.push(info.next_offset);
            read += stored.len();
        }
        let group = group_info(&client).await?;
        violations.extend(check_positions(&group));
        client.close().await;
        Ok((violations, read))
    }

    /// After the last round: members that ack everything run until the
    /// group has nothing left (no lag, nothing pending), then every stored
    /// message must have been acked. Returns the violations found.
    pub async fn drain(&mut self, life: u32) -> anyhow::Result<Vec<Violation>> {
        let clients = self.clients(self.settings.members, "group member").await?;
        let stop = CancellationToken::new();
        let members = self.spawn_members(&clients, life, 0, &stop);
        let client = self.broker.client().await?;
        let started = Instant::now();
        let mut closest = (u64::MAX, Instant::now());
        let mut violations = Vec::new();
        let info = loop {
            let info = group_info(&client).await?;
            let left: u64 = info.topics.iter().map(|t| t.lag + t.pending).sum();
            let every_topic = TOPICS
                .iter()
                .all(|t| info.topics.iter().any(|g| g.topic == *t));
            if left == 0 && every_topic {
                break info;
            }
            if left < closest.0 {
                closest = (left, Instant::now());
            } else if closest.1.elapsed() > DRAIN_STALL || started.elapsed() > DRAIN_LIMIT {
                violations.push(Violation::Other(format!(
                    "the group stopped delivering with {left} messages left (lag and pending) \
                     after {:.0?} of draining: {info:?}",
                    started.elapsed()
                )));
                break info;
            }
            tokio::time::sleep(DRAIN_POLL).await;
        };
        // The members wait for the answers to their last acks, then leave.
        stop.cancel();
        for handle in members {
            join(handle, "a draining member").await??;
        }
        for c in clients {
            c.close().await;
        }
        client.close().await;
        if violations.is_empty() {
            let group = lock(&self.history.group);
            for topic in &info.topics {
                violations.extend(group.check_all_acked(&topic.topic, topic.end_offset));
            }
        }
        Ok(violations)
    }

    /// The broker's output of every life.
    pub fn broker_log_path(&self) -> std::path::PathBuf {
        self.broker.data_dir().with_file_name("broker.log")
    }
}

/// A task's end, bounded: it must end soon after its connection closed.
async fn join<T>(handle: JoinHandle<T>, what: &str) -> anyhow::Result<T> {
    tokio::time::timeout(TASK_END_LIMIT, handle)
        .await
        .with_context(|| format!("{what} did not stop within {TASK_END_LIMIT:?} of the kill"))?
        .with_context(|| format!("{what} panicked"))
}

async fn group_info(client: &Client) -> anyhow::Result<GroupInfo> {
    tokio::time::timeout(WAIT, client.group_info(GROUP))
        .await
        .context("group info timed out")?
        .context("failed to read the group's info")
}

/// The group's positions are inside the log: floor ≤ cursor ≤ end.
fn check_positions(info: &GroupInfo) -> Vec<Violation> {
    info.topics
        .iter()
        .filter(|t| t.ack_floor > t.cursor || t.cursor > t.end_offset)
        .map(|t| {
            Violation::Other(format!(
                "group position on {} is outside the log: ack floor {}, cursor {}, log end {}",
                t.topic, t.ack_floor, t.cursor, t.end_offset
            ))
        })
        .collect()
}
