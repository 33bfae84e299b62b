//! [`Run`]: one fault scenario from start to verdict. It starts the
//! cluster and the load, lets the scenario make its faults (each one
//! [`mark`](Run::mark)ed in the history) with [`progress`](Run::progress)
//! waits between them, then [`finish`](Run::finish)es: stops publishing,
//! lets the subscriber and the group drain, reads the whole topic, the
//! dead letters and the group's state through a node, and runs the
//! history checker. It fails on any violation, or when the load made no
//! progress where it should have, after printing the summary line.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sluice_client::Client;
use sluice_tests::history::{check, GroupEnd, History, Observed, Recorder, Seen, Violation};
use sluice_tests::{fetch_all_within, Network};
use tokio::sync::{Mutex, MutexGuard};

use super::cluster::FaultCluster;
use super::load::Load;
use super::{GROUP, TOPIC};

/// One scenario at a time: two clusters at once would starve each other
/// on 2 cores.
pub(super) static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// How long the load may take to make the progress a scenario waits for
/// (after a fault heals: an election takes nats-server 4 to 9 s).
const PROGRESS_LIMIT: Duration = Duration::from_secs(30);
/// How often a scenario looks for the stream's new leader.
const LEADER_POLL: Duration = Duration::from_millis(200);
/// How long the subscriber and the group may take to drain once the
/// publisher stopped.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);
/// Drains at most, each after a read that ended further than the last.
const DRAINS: u32 = 3;
/// How often the drain is looked at.
const DRAIN_POLL: Duration = Duration::from_millis(200);
/// How long reading the whole topic back may take.
const READ_LIMIT: Duration = Duration::from_secs(60);
/// Violations shown in a failure (all are counted by kind).
const SHOWN_VIOLATIONS: usize = 40;

/// A scenario in progress.
pub struct Run {
    name: &'static str,
    pub cluster: FaultCluster,
    recorder: Arc<Recorder>,
    load: Load,
    started: Instant,
    /// Progress the load did not make, each said in a sentence.
    stalls: Vec<String>,
    _one_at_a_time: MutexGuard<'static, ()>,
}

impl Run {
    /// Starts the cluster on `network` and the load on it.
    pub async fn start(name: &'static str, network: Network) -> anyhow::Result<Run> {
        let one_at_a_time = ONE_AT_A_TIME.lock().await;
        let started = Instant::now();
        let cluster = FaultCluster::start(network).await?;
        let recorder = Arc::new(Recorder::new());
        let load = Load::start(&cluster, recorder.clone()).await?;
        Ok(Run {
            name,
            cluster,
            recorder,
            load,
            started,
            stalls: Vec::new(),
            _one_at_a_time: one_at_a_time,
        })
    }

    /// Records that `what` is done now (a fault, or its end).
    pub fn mark(&self, what: impl Into<String>) {
        let what = what.into();
        eprintln!(
            "{}: {what} at {:.1}s ({} acked so far)",
            self.name,
            self.recorder.now().as_secs_f64(),
            self.recorder.acked()
        );
        self.recorder.mark(what);
    }

    /// Waits until `acks` more publishes are acked, at most
    /// [`PROGRESS_LIMIT`]; when they are not, says so in the verdict.
    pub async fn progress(&mut self, acks: u64, when: &str) {
        let from = self.recorder.acked();
        let deadline = Instant::now() + PROGRESS_LIMIT;
        while self.recorder.acked() < from + acks {
            if Instant::now() >= deadline {
                let got = self.recorder.acked() - from;
                self.stalls.push(format!(
                    "only {got} of {acks} publishes acked within {PROGRESS_LIMIT:?} {when}"
                ));
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The index of the server leading the topic's stream, as it says
    /// itself (waited for: after a fault there may be none for a while).
    pub async fn stream_leader(&self) -> anyhow::Result<usize> {
        let stream = sluice::nats::names::stream(TOPIC);
        let nats = &self.cluster.nats;
        let deadline = Instant::now() + PROGRESS_LIMIT;
        loop {
            match nats.stream_leader(&stream).await {
                Ok(Some(name)) => return nats.index_of(&name).context("an unknown server leads"),
                other if Instant::now() >= deadline => {
                    anyhow::bail!(
                        "no leader of stream {stream} within {PROGRESS_LIMIT:?}: {other:?}"
                    )
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Waits, at most [`PROGRESS_LIMIT`], until a server other than `old`
    /// says it leads the topic's stream, and marks it.
    pub async fn new_leader(&mut self, old: usize) {
        let deadline = Instant::now() + PROGRESS_LIMIT;
        while Instant::now() < deadline {
            if self.marked_new_leader(old).await {
                return;
            }
            tokio::time::sleep(LEADER_POLL).await;
        }
        self.stalls.push(format!(
            "no other server than {} led the stream within {PROGRESS_LIMIT:?}",
            self.cluster.nats.name(old)
        ));
    }

    /// Holds a fault of server `old` for `length` (the fault's length, not
    /// a wait for a result), marking when another server leads the stream.
    /// None doing so by the end is a stall: the fault did not take.
    pub async fn hold(&mut self, length: Duration, old: usize) {
        let until = Instant::now() + length;
        let mut marked = false;
        while Instant::now() < until {
            marked = marked || self.marked_new_leader(old).await;
            let left = until.saturating_duration_since(Instant::now());
            tokio::time::sleep(left.min(LEADER_POLL)).await;
        }
        if !marked {
            self.stalls.push(format!(
                "no other server than {} led the stream during the {length:?} fault",
                self.cluster.nats.name(old)
            ));
        }
    }

    /// Marks the stream's leader if it is another server than `old`.
    async fn marked_new_leader(&self, old: usize) -> bool {
        let stream = sluice::nats::names::stream(TOPIC);
        let nats = &self.cluster.nats;
        match nats.stream_leader(&stream).await {
            Ok(Some(name)) if nats.index_of(&name) != Some(old) => {
                self.mark(format!("{name} leads the stream"));
                true
            }
            _ => false,
        }
    }

    /// The nodes connected to NATS server `i`, for the marks.
    pub async fn clients_of(&self, i: usize) -> String {
        match self.cluster.nats.connections(i).await {
            Ok(names) => {
                let nodes: Vec<String> = names
                    .into_iter()
                    .filter_map(|n| n.strip_prefix("sluice ").map(str::to_owned))
                    .collect();
                format!("serving {nodes:?}")
            }
            Err(e) => format!("its clients unknown: {e:#}"),
        }
    }

    /// Stops the load, drains, reads, checks; panics on any violation or
    /// stall, keeping the logs, the stores and the history.
    pub async fn finish(mut self) -> anyhow::Result<()> {
        self.load.stop_publishing().await;
        let admin = self.cluster.client(1, "faults-check").await?;
        // A publish that failed may be stored after the drain looked (held
        // by a server that hung): then the read ends further than the
        // drain saw, and the subscriber and the group get time for it.
        let mut drains = 0;
        let observed = loop {
            drains += 1;
            let drained = self.drain(&admin).await;
            let observed = observe(&admin).await?;
            let read_end = observed.stored.last().map_or(0, |m| m.offset + 1);
            match drained {
                Ok(end) if end < read_end && drains < DRAINS => continue,
                Ok(_) => break observed,
                Err(state) => {
                    self.stalls
                        .push(format!("not drained within {DRAIN_LIMIT:?}: {state}"));
                    break observed;
                }
            }
        };
        // Bound first, dropped last: the next scenario waits until this
        // cluster is gone.
        let Run {
            _one_at_a_time,
            name,
            cluster,
            recorder,
            load,
            started,
            stalls,
        } = self;
        load.stop().await;
        let history = recorder.history();
        let report = check(&history, &observed);
        eprintln!(
            "{name}: {} (scenario {:.1}s)",
            report.summary,
            started.elapsed().as_secs_f64()
        );
        if report.violations.is_empty() && stalls.is_empty() {
            return Ok(());
        }
        let kept = keep_history(&cluster, &history, &observed);
        // A panic, not an error: the clusters keep their logs and stores
        // when dropped while panicking.
        panic!(
            "{name}: {} violations, {} stalls\n{}{}\n{kept}\nthe nodes' logs:\n{}",
            report.violations.len(),
            stalls.len(),
            stalls
                .iter()
                .map(|s| format!("stall: {s}\n"))
                .collect::<String>(),
            described(&report.violations),
            cluster.node_logs()
        )
    }

    /// Waits until the subscriber has the whole topic and the group has
    /// nothing left: the topic's end then, or the last state seen when it
    /// does not happen.
    async fn drain(&self, admin: &Client) -> Result<u64, String> {
        let deadline = Instant::now() + DRAIN_LIMIT;
        loop {
            let state = self.drain_state(admin).await;
            match state {
                Ok(end) => return Ok(end),
                Err(state) if Instant::now() >= deadline => return Err(state),
                Err(_) => tokio::time::sleep(DRAIN_POLL).await,
            }
        }
    }

    async fn drain_state(&self, admin: &Client) -> Result<u64, String> {
        let end = (admin.topic_info(TOPIC).await)
            .map_err(|e| format!("topic info: {e}"))?
            .next_offset;
        let group = (admin.group_info(GROUP).await).map_err(|e| format!("group info: {e}"))?;
        let subscribed = self.load.subscription_at();
        let topic = group.topics.iter().find(|t| t.topic == TOPIC);
        let (pending, lag) = topic.map_or((u64::MAX, u64::MAX), |t| (t.pending, t.lag));
        if subscribed >= end && pending == 0 && lag == 0 {
            Ok(end)
        } else {
            Err(format!(
                "the topic ends at {end}, the subscription at {subscribed}; the group has {pending} pending, {lag} not settled"
            ))
        }
    }
}

/// The whole topic, the offsets the group's dead letters name, and the
/// group's state, read through a node.
async fn observe(admin: &Client) -> anyhow::Result<Observed> {
    let stored = fetch_all_within(
        admin,
        TOPIC,
        sluice_client::StartPosition::Earliest,
        READ_LIMIT,
    )
    .await?
    .iter()
    .map(|m| Seen {
        offset: m.offset,
        id: m.id.clone(),
        key: (m.key.as_deref()).map(|k| String::from_utf8_lossy(k).into_owned()),
    })
    .collect();
    let dlq = sluice::dead_letter::topic_for(TOPIC);
    let topics = admin.list_topics().await?;
    let letters = match topics.iter().any(|t| t.name == dlq) {
        true => {
            fetch_all_within(
                admin,
                &dlq,
                sluice_client::StartPosition::Earliest,
                READ_LIMIT,
            )
            .await?
        }
        false => Vec::new(),
    };
    let header = |letter: &sluice_client::Delivered, name: &str| {
        (letter.headers.iter())
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let mut dead_letters = Vec::new();
    for letter in &letters {
        if header(letter, sluice::dead_letter::GROUP).as_deref() != Some(GROUP) {
            continue;
        }
        let offset = header(letter, sluice::dead_letter::OFFSET)
            .and_then(|o| o.parse().ok())
            .with_context(|| format!("dead letter {} names no offset", letter.offset))?;
        dead_letters.push(offset);
    }
    let group = admin.group_info(GROUP).await?;
    let topic = group.topics.iter().find(|t| t.topic == TOPIC);
    Ok(Observed {
        topic: TOPIC.to_owned(),
        stored,
        dead_letters,
        group: Some(topic.map_or(
            GroupEnd {
                pending: u64::MAX,
                lag: u64::MAX,
            },
            |t| GroupEnd {
                pending: t.pending,
                lag: t.lag,
            },
        )),
    })
}

/// The first violations in full, then how many of each kind.
fn described(violations: &[Violation]) -> String {
    let mut text: String = (violations.iter().take(SHOWN_VIOLATIONS))
        .map(|v| format!("violation: {v}\n"))
        .collect();
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for v in violations {
        match kinds.iter_mut().find(|(k, _)| *k == v.kind()) {
            Some((_, n)) => *n += 1,
            None => kinds.push((v.kind(), 1)),
        }
    }
    for (kind, n) in kinds {
        text.push_str(&format!("{n} x {kind}\n"));
    }
    text
}

/// Writes the history and what was observed next to the nodes' logs
/// (kept, as the test fails); where.
fn keep_history(cluster: &FaultCluster, history: &History, observed: &Observed) -> String {
    let Some(dir) = cluster.dir() else {
        return String::new();
    };
    let path = dir.join("history.txt");
    match std::fs::write(&path, format!("{history:#?}\n{observed:#?}\n")) {
        Ok(()) => format!("the history is in {}", path.display()),
        Err(e) => format!(
            "the history could not be written to {}: {e}",
            path.display()
        ),
    }
}
