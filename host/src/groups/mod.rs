//! Consumer groups behind one trait, [`Groups`]: named, durable cursors
//! over a topic or pattern whose messages are shared among competing
//! members, with acks, redelivery with backoff, dead letters and optional
//! per-key order.
//!
//! The broker reaches groups only through this trait, so a replicated
//! backend can stand where the local one ([`LocalGroups`]: an actor and a
//! journal per group) stands today. The decisions (backoff, max deliver,
//! redeliver or dead-letter, when to wake) are in [`policy`], pure, for
//! every backend.
//!
//! # Layout
//!
//! - [`policy`]: what happens to a message after a failure; when to wake.
//! - [`local`]: the local backend.
//! - [`jetstream`]: the backend of cluster mode, over NATS JetStream.

pub mod jetstream;
pub mod local;
pub mod policy;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use sluice_proto::{GroupInfo, GroupOptions, SettleAction, StartPosition};
use tokio::sync::mpsc;

pub use jetstream::JetStreamGroups;
pub use local::{GroupsOptions, LocalGroups};
pub use policy::MAX_NACK_DELAY_MS;

use crate::error::BrokerError;
use crate::store::Record;

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

/// A settlement: the message, what to do, and which delivery it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleItem {
    /// The message's topic.
    pub topic: String,
    /// Its offset.
    pub offset: u64,
    /// What to do.
    pub action: SettleAction,
    /// The delivery attempt it answers; `None` answers whichever attempt
    /// the settling member holds (clients that do not send it).
    pub attempt: Option<u32>,
}

/// Who joins a group, and how much it takes.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// The client's name, for group status.
    pub client: String,
    /// Most deliveries unsettled at once.
    pub max_in_flight: u32,
    /// Deliveries it takes in all, if limited.
    pub limit: Option<u64>,
}

/// Called once when a member is dropped: it leaves its group.
pub type Leave = Box<dyn FnOnce() + Send + Sync>;

/// A member of a group: its deliveries, in the order the group hands them
/// out. Dropping it leaves the group; its unsettled messages go to the
/// others.
pub struct Member {
    group: Arc<str>,
    id: u64,
    deliveries: mpsc::UnboundedReceiver<GroupDelivery>,
    leave: Option<Leave>,
}

impl Member {
    /// Member `id` of `group`, fed by `deliveries`; `leave` runs when it is
    /// dropped.
    pub fn new(
        group: Arc<str>,
        id: u64,
        deliveries: mpsc::UnboundedReceiver<GroupDelivery>,
        leave: Leave,
    ) -> Member {
        Member {
            group,
            id,
            deliveries,
            leave: Some(leave),
        }
    }

    /// The group's name.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Its id in the group: what its settlements are checked against.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Waits for the next delivery; `None` when the group stopped.
    /// Cancel-safe.
    pub async fn next(&mut self) -> Option<GroupDelivery> {
        self.deliveries.recv().await
    }

    /// A delivery if one is waiting.
    pub fn try_next(&mut self) -> Option<GroupDelivery> {
        self.deliveries.try_recv().ok()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(leave) = self.leave.take() {
            leave();
        }
    }
}

/// Consumer groups, behind which the local journal or a replicated engine
/// stands. Names, patterns and options are checked by the caller.
pub trait Groups: Send + Sync + 'static {
    /// Opens a group, creating it with `pattern` and `options` if it is
    /// new. An existing group must consume the same pattern. Resolves with
    /// the options in force: an existing group's own, not `options`.
    fn open(
        &self,
        name: &str,
        pattern: &str,
        options: GroupOptions,
    ) -> BoxFuture<'_, Result<GroupOptions, BrokerError>>;

    /// Adds a member to an open group.
    fn join(&self, name: &str, request: JoinRequest) -> Result<Member, BrokerError>;

    /// Settles messages of a group for one of `members` (the member whose
    /// consumer sent them, or every member a client has in the group when
    /// it names none); resolves when the settlements are durable, with one
    /// result per item (a bad item fails alone). A message that none of
    /// `members` holds, or whose attempt in flight is not the item's, is
    /// refused as stale and left alone.
    fn settle(
        &self,
        name: &str,
        members: Vec<u64>,
        items: Vec<SettleItem>,
    ) -> BoxFuture<'_, Result<Vec<Result<(), BrokerError>>, BrokerError>>;

    /// One group's status.
    fn info(&self, name: &str) -> BoxFuture<'_, Result<GroupInfo, BrokerError>>;

    /// Every group's status, by name.
    fn list(&self) -> BoxFuture<'_, Vec<GroupInfo>>;

    /// Moves a group to a position; pending deliveries are forgotten.
    fn reset(&self, name: &str, to: StartPosition)
        -> BoxFuture<'_, Result<GroupInfo, BrokerError>>;

    /// Stops every group, making its state durable.
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}

/// Stores a dead letter made by the group (no pipeline runs, and the topic
/// is created whatever `auto_create` says). Completes once committed.
pub(crate) async fn store_dead_letter(
    store: &dyn crate::store::Store,
    topic: &str,
    record: crate::store::NewRecord,
) -> Result<u64, crate::store::StoreError> {
    store.ensure_topic(topic).await?;
    let ticket = store.append(topic, vec![record]).await?;
    let appended = ticket.await?;
    appended
        .first()
        .map(|a| a.offset())
        .ok_or_else(|| crate::store::StoreError::Task("dead letter not appended".into()))
}
