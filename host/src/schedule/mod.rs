//! Delayed delivery: a message published with a due time
//! ([`sluice_proto::DELIVER_AT_HEADER`]) waits in the broker's schedule and
//! is put in its topic when due, where it takes its offset.
//!
//! - The schedule is a log of its own (`<data_dir>/schedule` on one
//!   machine; streams of the `SLS_` namespace in cluster mode), outside the
//!   users' topics, so no pattern, group or replay ever sees a message
//!   before it is due. The publish is acknowledged once the message is
//!   stored there, under the same fsync policy as any topic.
//! - [`Index`] keeps every waiting message's due time and place in that
//!   log, not the message: it is read back when due.
//! - One firer at a time (`run`): every node follows the log and keeps the
//!   index; the one whose [`Turn`] it is appends what is due to its topics,
//!   in `(due, publish)` order, then records a checkpoint in the log. A
//!   firer that stops between the two leaves its last batch to be fired
//!   again; the copies carry the original message ids, so the topic's
//!   de-duplication (default 2 minutes) stores them once.

mod expiry;
mod headers;
mod index;
mod run;
mod turn;

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

pub(crate) use expiry::expire;
pub(crate) use headers::{due_ms, expired, format_ms, give_ttl, prepare};
use index::Index;
pub(crate) use turn::{Turn, LEASE_BUCKET};

use crate::store::{AppendTicket, NewRecord, Store, StoreError, TopicSettings};
use crate::sync::lock;

/// The schedule's one topic in its store.
const LOG: &str = "delayed";
/// On an entry: the topic it is for.
const TARGET_HEADER: &str = "sluice-schedule-topic";
/// On a checkpoint: what fired ([`index::Checkpoint::encode`]).
const CHECKPOINT_HEADER: &str = "sluice-schedule-fired";

/// The broker's schedule of delayed messages.
pub struct Schedule {
    store: Arc<dyn Store>,
    index: Mutex<Index>,
}

impl Schedule {
    /// The schedule kept in `store`, whose log is created (with `settings`,
    /// but never removing anything) if missing.
    pub(crate) async fn open(
        store: Arc<dyn Store>,
        settings: TopicSettings,
    ) -> Result<Arc<Schedule>, StoreError> {
        let settings = TopicSettings {
            retention: sluice_proto::RetentionSpec::default(),
            default_ttl_ms: None,
            dead_letter_expired: false,
            ..settings
        };
        if store.topic(LOG).is_none() {
            match store.create_topic(LOG, settings).await {
                Ok(_) | Err(StoreError::TopicExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Arc::new(Schedule {
            store,
            index: Mutex::new(Index::default()),
        }))
    }

    /// How many delayed messages wait for `topic` (as far as this node has
    /// read the schedule).
    pub fn waiting(&self, topic: &str) -> u64 {
        lock(&self.index).waiting(topic)
    }

    /// Stores delayed messages, each with its topic; the ticket resolves
    /// with their places in the schedule once durable. A message's id is
    /// kept per topic, so a publisher's retry is stored once.
    pub(crate) async fn append(
        &self,
        entries: Vec<(String, NewRecord)>,
    ) -> Result<AppendTicket, StoreError> {
        let records = entries
            .into_iter()
            .map(|(topic, mut record)| {
                record.id = record.id.map(|id| format!("{topic}/{id}"));
                record.headers.push((TARGET_HEADER.to_owned(), topic));
                record
            })
            .collect();
        self.store.append(LOG, records).await
    }

    /// Starts following the log and firing what is due into `topics` when
    /// it is this node's turn, until `stop`. A missing topic is created
    /// when `auto_create`; else its messages are dropped when due.
    pub(crate) fn start(
        self: &Arc<Self>,
        topics: Arc<dyn Store>,
        auto_create: bool,
        turn: Turn,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let runner = run::Runner::new(self.clone(), topics, auto_create, turn);
        tokio::spawn(runner.run(stop))
    }

    /// Makes the schedule's log durable and stops its store.
    pub(crate) async fn shutdown(&self) {
        self.store.shutdown().await;
    }
}
