//! [`LocalGroups`]: the consumer groups of one machine, each with its
//! state in `<data>/groups/<name>/` (`group.json`, a snapshot and a
//! journal).
//!
//! Each group is an actor: one task owns its state and serves commands
//! (join, leave, settle, info, reset) in rounds. A round applies what is
//! queued, expires ack deadlines, reads new messages from the log, hands
//! messages to members with credit, writes the round's events to the
//! group's journal (one write, one fsync under `fsync = "always"`), and only
//! then sends deliveries and answers settlements. So a settlement that was
//! answered is durable, and a delivery is journaled before it leaves.
//!
//! Group creation writes `group.json` on the blocking pool, serialised by
//! an async admin lock; the map of groups is only locked to look up and
//! insert.
//!
//! # Layout
//!
//! - [`state`]: the durable state as a pure state machine over events.
//! - [`journal`]: snapshot + journal files.
//! - [`actor`]: the task that runs one group.

mod actor;
mod journal;
pub(crate) mod state;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use serde::{Deserialize, Serialize};
use sluice_proto::{GroupInfo, GroupOptions, StartPosition};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use actor::Spawn;

use super::{GroupDelivery, Groups, JoinRequest, Member, SettleItem};
use crate::config::FsyncPolicy;
use crate::disk::{self, Disk, SharedDisk};
use crate::error::BrokerError;
use crate::store::{Store, StoreError};
use crate::sync::lock;

/// Settings file of a group.
const SETTINGS_FILE: &str = "group.json";

/// What is fixed at creation, kept beside the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct GroupSettings {
    pub pattern: String,
    pub options: GroupOptions,
}

/// Why a group's `group.json` cannot be used (the group is skipped; the
/// cause is in the message because this error is logged, not chained).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SettingsError {
    /// The file could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The file is not the settings JSON this broker writes.
    #[error("cannot parse {path}: {error}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        error: serde_json::Error,
    },
}

impl GroupSettings {
    pub fn load(disk: &dyn Disk, dir: &Path) -> Result<GroupSettings, SettingsError> {
        let path = dir.join(SETTINGS_FILE);
        let bytes = match disk.read(&path) {
            Ok(bytes) => bytes,
            Err(error) => return Err(SettingsError::Read { path, error }),
        };
        serde_json::from_slice(&bytes).map_err(|error| SettingsError::Parse { path, error })
    }

    /// Writes `group.json` durably, making the group's directory (and its
    /// name in the groups directory) durable first.
    pub fn save(&self, disk: &dyn Disk, dir: &Path) -> Result<(), StoreError> {
        disk::create_dir_durably(disk, dir).map_err(|e| StoreError::io("create", dir, e))?;
        let path = dir.join(SETTINGS_FILE);
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| StoreError::io("encode", &path, std::io::Error::other(e)))?;
        disk::replace_file(disk, &path, &json).map_err(|e| StoreError::io("write", &path, e))
    }
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
    /// Several settlements by one of `members`, answered together (after
    /// one journal write).
    SettleMany {
        members: Vec<u64>,
        items: Vec<SettleItem>,
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
struct GroupHandle {
    pub name: String,
    pub settings: GroupSettings,
    pub commands: mpsc::UnboundedSender<Command>,
}

/// The groups saved under `dir`: name, directory and settings. A group
/// whose settings cannot be read is skipped with an error in the log.
fn list_saved(
    disk: &dyn Disk,
    dir: &Path,
) -> Result<Vec<(String, PathBuf, GroupSettings)>, StoreError> {
    let entries = match disk.read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io("list", dir, e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = dir.join(&entry.name);
        if !entry.is_dir || sluice_proto::validate_topic(&entry.name).is_err() {
            continue;
        }
        match GroupSettings::load(disk, &path) {
            Ok(settings) => found.push((entry.name, path, settings)),
            Err(e) => {
                tracing::error!(group = %entry.name, error = %e, "cannot load consumer group; skipping it")
            }
        }
    }
    Ok(found)
}

impl GroupHandle {
    /// Adds a member; it leaves when the returned [`Member`] is dropped.
    fn join(&self, member: u64, request: JoinRequest) -> Result<Member, BrokerError> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.send(Command::Join {
            member,
            client: request.client,
            max_in_flight: request.max_in_flight,
            limit: request.limit,
            deliveries: tx,
        })?;
        let commands = self.commands.clone();
        Ok(Member::new(
            self.name.as_str().into(),
            member,
            rx,
            Box::new(move || {
                let _ = commands.send(Command::Leave { member });
            }),
        ))
    }

    fn send(&self, command: Command) -> Result<(), BrokerError> {
        self.commands
            .send(command)
            .map_err(|_| BrokerError::ShuttingDown)
    }

    pub async fn settle_many(
        &self,
        members: Vec<u64>,
        items: Vec<SettleItem>,
    ) -> Result<Vec<Result<(), BrokerError>>, BrokerError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::SettleMany {
            members,
            items,
            reply,
        })?;
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

/// Key of a message for key-ordered groups.
pub(crate) type MessageKey = Bytes;

/// The consumer groups of one machine. Cheap to clone.
#[derive(Clone)]
pub struct LocalGroups {
    inner: Arc<Inner>,
}

/// How the local groups run.
#[derive(Debug, Clone)]
pub struct GroupsOptions {
    /// The file system the journals are written to.
    pub disk: SharedDisk,
    /// Where groups live: `<dir>/<group>/`.
    pub dir: PathBuf,
    /// When journal writes are fsynced.
    pub fsync: FsyncPolicy,
    /// Period of the journal fsync under [`FsyncPolicy::Interval`].
    pub fsync_interval: Duration,
    /// Where dead letters are recorded for `sluice trace`.
    pub record: Arc<crate::trace::Journal>,
}

impl GroupsOptions {
    /// The options `sluice.toml` sets.
    pub fn from_config(config: &crate::config::Config) -> GroupsOptions {
        GroupsOptions {
            disk: disk::real(),
            dir: config.server.data_dir.join("groups"),
            fsync: config.storage.fsync,
            fsync_interval: config.storage.fsync_interval,
            record: Arc::new(crate::trace::Journal::off()),
        }
    }
}

struct Inner {
    store: Arc<dyn Store>,
    options: GroupsOptions,
    groups: Mutex<HashMap<String, Arc<GroupHandle>>>,
    /// Serialises group creation (whose file work runs on the blocking pool).
    admin: tokio::sync::Mutex<()>,
    next_member: AtomicU64,
    /// Group actors.
    tasks: TaskTracker,
    /// Stops the actors.
    stop: CancellationToken,
}

impl LocalGroups {
    /// Recovers the groups saved under `dir` and starts them, reading
    /// topics through `store`.
    pub async fn open(
        store: Arc<dyn Store>,
        options: GroupsOptions,
    ) -> Result<LocalGroups, BrokerError> {
        let groups = LocalGroups {
            inner: Arc::new(Inner {
                store,
                options,
                groups: Mutex::new(HashMap::new()),
                admin: tokio::sync::Mutex::new(()),
                next_member: AtomicU64::new(1),
                tasks: TaskTracker::new(),
                stop: CancellationToken::new(),
            }),
        };
        let (disk, dir) = (groups.disk(), groups.inner.options.dir.clone());
        let found = tokio::task::spawn_blocking(move || list_saved(&*disk, &dir))
            .await
            .map_err(|e| BrokerError::Internal(e.to_string()))?
            .map_err(|source| BrokerError::Storage {
                topic: String::new(),
                source,
            })?;
        for (name, path, settings) in found {
            match groups.spawn(name.clone(), path, settings, false).await {
                Ok(handle) => {
                    lock(&groups.inner.groups).insert(name, handle);
                }
                // One damaged group does not keep the others, or the
                // broker, from starting; its files stay for an operator.
                Err(error) => {
                    tracing::error!(group = %name, %error, "cannot recover consumer group; it is not started")
                }
            }
        }
        Ok(groups)
    }

    fn disk(&self) -> SharedDisk {
        self.inner.options.disk.clone()
    }

    async fn spawn(
        &self,
        name: String,
        dir: PathBuf,
        settings: GroupSettings,
        created: bool,
    ) -> Result<Arc<GroupHandle>, BrokerError> {
        actor::spawn(Spawn {
            store: self.inner.store.clone(),
            disk: self.disk(),
            fsync: self.inner.options.fsync,
            fsync_interval: self.inner.options.fsync_interval,
            record: self.inner.options.record.clone(),
            name,
            dir,
            settings,
            created,
            stop: self.inner.stop.child_token(),
            tasks: self.inner.tasks.clone(),
        })
        .await
    }

    fn handle(&self, name: &str) -> Result<Arc<GroupHandle>, BrokerError> {
        lock(&self.inner.groups)
            .get(name)
            .cloned()
            .ok_or_else(|| BrokerError::GroupNotFound(name.to_owned()))
    }

    async fn open_group(
        &self,
        name: &str,
        pattern: &str,
        options: GroupOptions,
    ) -> Result<GroupOptions, BrokerError> {
        let existing = |handle: &GroupHandle| {
            if handle.settings.pattern != pattern {
                return Err(BrokerError::InvalidArgument(format!(
                    "group {name:?} consumes {:?}, not {pattern:?} (use another group name)",
                    handle.settings.pattern
                )));
            }
            Ok(handle.settings.options.clone())
        };
        if let Ok(handle) = self.handle(name) {
            return existing(&handle);
        }
        let _admin = self.inner.admin.lock().await;
        if let Ok(handle) = self.handle(name) {
            return existing(&handle);
        }
        let literal = sluice_proto::Pattern::parse(pattern).is_ok_and(|p| p.is_literal());
        if literal && self.inner.store.topic(pattern).is_none() {
            return Err(BrokerError::TopicNotFound(pattern.to_owned()));
        }
        let settings = GroupSettings {
            pattern: pattern.to_owned(),
            options: options.clone(),
        };
        let dir = self.inner.options.dir.join(name);
        let (saved, to, disk) = (settings.clone(), dir.clone(), self.disk());
        tokio::task::spawn_blocking(move || saved.save(&*disk, &to))
            .await
            .map_err(|e| BrokerError::Internal(e.to_string()))?
            .map_err(|source| BrokerError::Storage {
                topic: format!("group {name}"),
                source,
            })?;
        let handle = self.spawn(name.to_owned(), dir, settings, true).await?;
        lock(&self.inner.groups).insert(name.to_owned(), handle);
        tracing::info!(group = %name, %pattern, "consumer group created");
        Ok(options)
    }
}

impl Groups for LocalGroups {
    fn open(
        &self,
        name: &str,
        pattern: &str,
        options: GroupOptions,
    ) -> BoxFuture<'_, Result<GroupOptions, BrokerError>> {
        let (name, pattern) = (name.to_owned(), pattern.to_owned());
        async move { self.open_group(&name, &pattern, options).await }.boxed()
    }

    fn join(&self, name: &str, request: JoinRequest) -> Result<Member, BrokerError> {
        let member = self.inner.next_member.fetch_add(1, Ordering::Relaxed);
        self.handle(name)?.join(member, request)
    }

    fn settle(
        &self,
        name: &str,
        members: Vec<u64>,
        items: Vec<SettleItem>,
    ) -> BoxFuture<'_, Result<Vec<Result<(), BrokerError>>, BrokerError>> {
        let handle = self.handle(name);
        async move { handle?.settle_many(members, items).await }.boxed()
    }

    fn info(&self, name: &str) -> BoxFuture<'_, Result<GroupInfo, BrokerError>> {
        let handle = self.handle(name);
        async move { handle?.info().await }.boxed()
    }

    fn list(&self) -> BoxFuture<'_, Vec<GroupInfo>> {
        let handles: Vec<_> = lock(&self.inner.groups).values().cloned().collect();
        async move {
            let mut infos = Vec::with_capacity(handles.len());
            for handle in handles {
                if let Ok(info) = handle.info().await {
                    infos.push(info);
                }
            }
            infos.sort_by(|a, b| a.name.cmp(&b.name));
            infos
        }
        .boxed()
    }

    fn reset(
        &self,
        name: &str,
        to: StartPosition,
    ) -> BoxFuture<'_, Result<GroupInfo, BrokerError>> {
        let handle = self.handle(name);
        async move { handle?.reset(to).await }.boxed()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        async move {
            self.inner.stop.cancel();
            self.inner.tasks.close();
            self.inner.tasks.wait().await;
        }
        .boxed()
    }
}

#[cfg(test)]
mod crash_states;
#[cfg(test)]
mod tests;
