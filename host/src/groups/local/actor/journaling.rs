//! A round's events to the journal, then its effects out: deliveries are
//! sent and settlements answered only once the events behind them are
//! written (and fsynced under `fsync = "always"`; under `"interval"` the
//! journal is fsynced every `fsync_interval`).
//!
//! A write or fsync that fails *fails the group*: the state in memory is
//! no longer what the disk holds, so nothing more is delivered, every
//! settlement and reset is answered with a storage error, and the group
//! stays so until a restart recovers it from the journal.
//!
//! The write runs on the blocking pool. At most one is in flight; while it
//! runs the actor keeps taking commands, and their events, deliveries and
//! answers go with the next write. So the journal is group-committed, and
//! the actor never waits on the disk between two rounds.

use tokio::task::{JoinError, JoinHandle};

use super::{Actor, Reply};
use crate::config::FsyncPolicy;
use crate::error::BrokerError;
use crate::groups::local::journal::Journal;
use crate::groups::GroupDelivery;
use crate::store::StoreError;

/// What a write gives back: the journal, the write's result, and the
/// compaction's if one was due.
type Written = (
    Journal,
    Result<(), StoreError>,
    Option<Result<(), StoreError>>,
);

/// A journal write in flight, and the effects that wait for it.
pub(super) struct Flight {
    pub(super) task: JoinHandle<Written>,
    outbox: Vec<(u64, GroupDelivery)>,
    replies: Vec<Reply>,
}

/// Waits for the write in flight (cancel-safe; pending forever if none).
pub(super) async fn landed(flight: &mut Option<Flight>) -> Result<Written, JoinError> {
    match flight {
        Some(flight) => (&mut flight.task).await,
        None => std::future::pending().await,
    }
}

impl Actor {
    /// Starts writing what the rounds since the last write recorded, with
    /// their deliveries and answers waiting for it; with nothing to write,
    /// lets them out at once.
    pub(super) fn start_write(&mut self) -> Option<Flight> {
        let outbox = std::mem::take(&mut self.outbox);
        let replies = std::mem::take(&mut self.replies);
        if self.failed.is_some() {
            self.events.clear();
            self.release(outbox, replies);
            return None;
        }
        if self.events.is_empty() {
            self.release(outbox, replies);
            return None;
        }
        let Some(mut journal) = self.journal.take() else {
            self.fail("the group journal was lost with a failed write task".into());
            self.events.clear();
            self.release(outbox, replies);
            return None;
        };
        let events = std::mem::take(&mut self.events);
        let fsync = self.fsync == FsyncPolicy::Always;
        self.unsynced |= !fsync;
        // The state after these events, for a compaction (rare: every
        // 50,000 events).
        let state = journal
            .wants_compaction_after(events.len())
            .then(|| self.state.clone());
        let write = move || {
            let result =
                journal
                    .append(&events)
                    .and_then(|()| if fsync { journal.sync() } else { Ok(()) });
            let compacted = state.map(|state| journal.compact(&state));
            (journal, result, compacted)
        };
        Some(Flight {
            task: tokio::task::spawn_blocking(write),
            outbox,
            replies,
        })
    }

    /// A write finished: the journal comes back and what waited goes out.
    pub(super) fn land(&mut self, flight: Flight, written: Result<Written, JoinError>) {
        self.land_written(written);
        self.release(flight.outbox, flight.replies);
    }

    /// The journal back from a write; a failed write or compaction fails
    /// the group.
    fn land_written(&mut self, written: Result<Written, JoinError>) {
        match written {
            Ok((journal, result, compacted)) => {
                self.journal = Some(journal);
                if let Err(e) = result {
                    self.fail(format!("cannot write the group journal: {e}"));
                }
                if let Some(Err(e)) = compacted {
                    self.fail(format!("cannot compact the group journal: {e}"));
                }
            }
            Err(e) => self.fail(format!("group journal task failed: {e}")),
        }
    }

    /// Fails the group (once): see the module docs.
    pub(super) fn fail(&mut self, reason: String) {
        if self.failed.is_none() {
            tracing::error!(group = %self.name, %reason, "consumer group failed: it delivers nothing and refuses settlements until a restart recovers it");
            self.failed = Some(reason.into());
        }
    }

    /// The error a failed group answers with.
    fn failure(&self, reason: &str) -> BrokerError {
        BrokerError::Storage {
            topic: format!("group {}", self.name),
            source: StoreError::Failed(reason.to_owned()),
        }
    }

    /// fsyncs journal writes made without one (`fsync = "interval"`).
    pub(super) fn sync_journal(&mut self) {
        if !self.unsynced || self.failed.is_some() {
            return;
        }
        let Some(journal) = self.journal.as_ref() else {
            return;
        };
        let synced = if tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread
        {
            tokio::task::block_in_place(|| journal.sync())
        } else {
            journal.sync()
        };
        match synced {
            Ok(()) => self.unsynced = false,
            Err(e) => self.fail(format!("cannot fsync the group journal: {e}")),
        }
    }

    /// Writes what is recorded and waits for it.
    pub(super) async fn write_now(&mut self) {
        if let Some(mut flight) = self.start_write() {
            let written = (&mut flight.task).await;
            self.land(flight, written);
        }
    }

    /// Sends deliveries and answers whose events are written; a failed
    /// group sends no delivery and answers with its error.
    fn release(&mut self, outbox: Vec<(u64, GroupDelivery)>, replies: Vec<Reply>) {
        if let Some(reason) = self.failed.clone() {
            for reply in replies {
                match reply {
                    Reply::Reset(tx) => {
                        let _ = tx.send(Err(self.failure(&reason)));
                    }
                    Reply::SettleMany(tx, results) => {
                        let _ =
                            tx.send(results.iter().map(|_| Err(self.failure(&reason))).collect());
                    }
                }
            }
            return;
        }
        let mut gone = Vec::new();
        for (member, delivery) in outbox {
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
        for reply in replies {
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
}
