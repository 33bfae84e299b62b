//! Consumer groups: named, durable cursors over a topic or pattern whose
//! messages are shared among competing members, with acks, redelivery with
//! backoff, dead letters and optional per-key order.
//!
//! Each group is an actor: one task owns its state and serves commands
//! (join, leave, settle, info, reset) in rounds. A round applies what is
//! queued, expires ack deadlines, reads new messages from the log, hands
//! messages to members with credit, writes the round's events to the
//! group's journal (one write, one fsync under `fsync = "always"`), and only
//! then sends deliveries and answers settlements. So a settlement that was
//! answered is durable, and a delivery is journaled before it leaves.
//!
//! # Layout
//!
//! - [`state`]: the durable state as a pure state machine over events.
//! - [`journal`]: snapshot + journal files.
//! - [`actor`]: the task that runs one group.

mod actor;
mod journal;
pub(crate) mod state;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sluice_proto::{GroupInfo, GroupOptions, SettleAction, StartPosition};
use tokio::sync::{mpsc, oneshot};

pub(crate) use actor::{spawn, Spawn};

use super::BrokerError;
use crate::delivery::{Chunk, Slice};
use crate::plugin::delivery::DeliveryFilter;
use crate::store::{Record, StoreError, StoredBatch};

/// Longest `nack` delay accepted (one day).
pub const MAX_NACK_DELAY_MS: u64 = 24 * 60 * 60 * 1000;
/// Most deliveries handed to the server for one member at once.
const CHUNK_DELIVERIES: usize = 256;

/// Settings file of a group.
const SETTINGS_FILE: &str = "group.json";

/// What is fixed at creation, kept beside the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct GroupSettings {
    pub pattern: String,
    pub options: GroupOptions,
}

impl GroupSettings {
    pub fn load(dir: &Path) -> Result<GroupSettings, String> {
        let path = dir.join(SETTINGS_FILE);
        let bytes =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("cannot parse {}: {e}", path.display()))
    }

    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!("{SETTINGS_FILE}.tmp"));
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?,
        )?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, dir.join(SETTINGS_FILE))
    }
}

/// One message handed to a member.
#[derive(Debug)]
pub struct GroupDelivery {
    /// Its topic.
    pub topic: Arc<str>,
    /// The message.
    pub record: Record,
    /// 1 for the first delivery.
    pub attempt: u32,
}

/// Requests to a group's actor.
pub(crate) enum Command {
    Join {
        member: u64,
        client: String,
        max_in_flight: u32,
        limit: Option<u64>,
        deliveries: mpsc::UnboundedSender<GroupDelivery>,
    },
    Leave {
        member: u64,
    },
    Settle {
        topic: String,
        offset: u64,
        action: SettleAction,
        reply: oneshot::Sender<Result<(), BrokerError>>,
    },
    /// Several settlements, answered together (after one journal write).
    SettleMany {
        items: Vec<(String, u64, SettleAction)>,
        reply: oneshot::Sender<Vec<Result<(), BrokerError>>>,
    },
    Info {
        reply: oneshot::Sender<GroupInfo>,
    },
    Reset {
        to: StartPosition,
        reply: oneshot::Sender<Result<GroupInfo, BrokerError>>,
    },
}

/// The broker's handle on a running group.
pub(crate) struct GroupHandle {
    pub name: String,
    pub settings: GroupSettings,
    pub commands: mpsc::UnboundedSender<Command>,
}

/// The groups saved under `dir`: name, directory and settings. A group
/// whose settings cannot be read is skipped with an error in the log.
pub(crate) fn list_saved(dir: &Path) -> Result<Vec<(String, PathBuf, GroupSettings)>, StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io("list", dir, e)),
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if !path.is_dir() || sluice_proto::validate_topic(&name).is_err() {
            continue;
        }
        match GroupSettings::load(&path) {
            Ok(settings) => found.push((name, path, settings)),
            Err(e) => {
                tracing::error!(group = %name, error = %e, "cannot load consumer group; skipping it")
            }
        }
    }
    Ok(found)
}

impl GroupHandle {
    /// Adds a member; its deliveries come through the returned consumer.
    pub fn join(
        self: Arc<Self>,
        member: u64,
        client: &str,
        max_in_flight: u32,
        limit: Option<u64>,
        filter: Option<Arc<DeliveryFilter>>,
    ) -> Result<Consumer, BrokerError> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.send(Command::Join {
            member,
            client: client.to_owned(),
            max_in_flight,
            limit,
            deliveries: tx,
        })?;
        Ok(Consumer {
            group: self,
            member,
            deliveries: rx,
            filter,
        })
    }

    fn send(&self, command: Command) -> Result<(), BrokerError> {
        self.commands
            .send(command)
            .map_err(|_| BrokerError::ShuttingDown)
    }

    pub async fn settle(
        &self,
        topic: String,
        offset: u64,
        action: SettleAction,
    ) -> Result<(), BrokerError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Settle {
            topic,
            offset,
            action,
            reply,
        })?;
        rx.await.map_err(|_| BrokerError::ShuttingDown)?
    }

    pub async fn settle_many(
        &self,
        items: Vec<(String, u64, SettleAction)>,
    ) -> Result<Vec<Result<(), BrokerError>>, BrokerError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::SettleMany { items, reply })?;
        rx.await.map_err(|_| BrokerError::ShuttingDown)
    }

    pub async fn info(&self) -> Result<GroupInfo, BrokerError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Info { reply })?;
        rx.await.map_err(|_| BrokerError::ShuttingDown)
    }

    pub async fn reset(&self, to: StartPosition) -> Result<GroupInfo, BrokerError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Reset { to, reply })?;
        rx.await.map_err(|_| BrokerError::ShuttingDown)?
    }
}

/// A member of a group as the server sees it: a source of deliveries.
/// Dropping it leaves the group; its unsettled messages go to the others.
pub struct Consumer {
    pub(crate) group: Arc<GroupHandle>,
    pub(crate) member: u64,
    pub(crate) deliveries: mpsc::UnboundedReceiver<GroupDelivery>,
    /// A plugin that filters or transforms what this member receives.
    pub(crate) filter: Option<Arc<DeliveryFilter>>,
}

impl Consumer {
    /// The group's name.
    pub fn group(&self) -> &str {
        &self.group.name
    }

    /// Waits for the next deliveries, through the member's plugin if it
    /// has one (messages it filters out are acked for the member and never
    /// reach it). Cancel-safe: deliveries lost to a cancel are this
    /// member's, which is leaving, and go to the others.
    pub async fn next_chunk(&mut self) -> Result<Chunk, BrokerError> {
        loop {
            let chunk = self.next_raw_chunk().await?;
            let Some(filter) = self.filter.clone() else {
                return Ok(chunk);
            };
            let (chunk, settles) = tokio::task::spawn_blocking(move || {
                crate::plugin::delivery::apply_group(&filter, chunk)
            })
            .await
            .map_err(|e| BrokerError::Internal(format!("delivery plugin task failed: {e}")))?;
            for (topic, offset, action) in settles {
                // Answered once journaled; nobody waits for it here.
                let (reply, _) = oneshot::channel();
                self.group.send(Command::Settle {
                    topic: topic.to_string(),
                    offset,
                    action,
                    reply,
                })?;
            }
            if !chunk.slices.is_empty() {
                return Ok(chunk);
            }
        }
    }

    async fn next_raw_chunk(&mut self) -> Result<Chunk, BrokerError> {
        let first = self
            .deliveries
            .recv()
            .await
            .ok_or(BrokerError::ShuttingDown)?;
        let mut slices = vec![slice(first)];
        while slices.len() < CHUNK_DELIVERIES {
            match self.deliveries.try_recv() {
                Ok(delivery) => slices.push(slice(delivery)),
                Err(_) => break,
            }
        }
        Ok(Chunk { slices, dropped: 0 })
    }
}

fn slice(delivery: GroupDelivery) -> Slice {
    Slice {
        batch: Arc::new(StoredBatch {
            topic: delivery.topic,
            incarnation: 0,
            records: vec![delivery.record],
        }),
        skip: 0,
        attempt: delivery.attempt,
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.group.commands.send(Command::Leave {
            member: self.member,
        });
    }
}

/// Key of a message for key-ordered groups.
pub(crate) type MessageKey = Bytes;
