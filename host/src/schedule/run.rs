//! The schedule's loop on every node: read what the log gained into the
//! index, and, on this node's turn, fire what is due.

use std::sync::Arc;
use std::time::Duration;

use sluice_proto::Pattern;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::index::{Checkpoint, Entry, Index};
use super::{Schedule, Turn, CHECKPOINT_HEADER, LOG, TARGET_HEADER};
use crate::store::{now_ms, NewRecord, Record, Store, StoreError};
use crate::sync::lock;

/// Most entries fired in one batch (one append per topic, one checkpoint).
const BATCH: usize = 1024;
/// Records read from the log at once.
const READ_RECORDS: usize = 4096;
/// About the most payload bytes read from the log at once.
const READ_BYTES: usize = 4 << 20;
/// Messages the log's feed holds before it drops (it is only a wake-up).
const FEED_MESSAGES: usize = 256;
/// How often the firer trims the log of what fired.
const TRIM_EVERY: Duration = Duration::from_secs(5);
/// Pause after a failed read or fire before trying again.
const RETRY: Duration = Duration::from_secs(1);

pub(super) struct Runner {
    schedule: Arc<Schedule>,
    topics: Arc<dyn Store>,
    auto_create: bool,
    turn: Turn,
    /// The incarnation of the log being read.
    incarnation: Option<u64>,
    /// The next log offset to read: every entry below it is in the index.
    next: u64,
    /// Whether the last step fired (so a new turn catches up first).
    firing: bool,
    /// The offset the log was last trimmed to, and when.
    trimmed: (u64, Instant),
}

impl Runner {
    pub(super) fn new(
        schedule: Arc<Schedule>,
        topics: Arc<dyn Store>,
        auto_create: bool,
        turn: Turn,
    ) -> Runner {
        Runner {
            schedule,
            topics,
            auto_create,
            turn,
            incarnation: None,
            next: 0,
            firing: false,
            trimmed: (0, Instant::now()),
        }
    }

    pub(super) async fn run(mut self, stop: CancellationToken) {
        // A feed of the log: its wake-up after each commit, and in cluster
        // mode what makes this node follow the log's stream at all. What
        // it carries is read from the log instead (a full feed drops).
        let Ok(log) = Pattern::parse(LOG) else {
            return;
        };
        let mut feed = self.schedule.store.feed(log, FEED_MESSAGES);
        let mut turns = self.turn.changes();
        loop {
            while feed.try_next().is_some() {}
            feed.take_overflowed();
            turns.borrow_and_update();
            // A stop ends a step half done: what it took is still in the
            // log, and fired again (de-duplicated) by the next firer.
            let stepped = tokio::select! {
                stepped = self.step() => stepped,
                () = stop.cancelled() => break,
            };
            let wake = match stepped {
                Ok(wake) => wake,
                Err(error) => {
                    tracing::warn!(%error, "delayed messages: cannot read the schedule or fire what is due; trying again in a second");
                    Some(Instant::now() + RETRY)
                }
            };
            tokio::select! {
                () = stop.cancelled() => break,
                next = feed.next() => if next.is_err() {
                    break;
                },
                _ = turns.changed() => {}
                () = sleep_until(wake) => {}
            }
        }
        self.turn.release().await;
    }

    /// Reads the log's new records; on this node's turn fires every entry
    /// due. When to look again (besides a commit or a change of turn).
    async fn step(&mut self) -> Result<Option<Instant>, StoreError> {
        let mine = self.turn.is_mine();
        if mine && !self.firing {
            // The previous firer's last checkpoints first.
            let log = Pattern::parse(LOG).map_err(|e| StoreError::Failed(e.to_string()))?;
            self.schedule.store.catch_up(&log).await?;
        }
        self.firing = mine;
        self.ingest().await?;
        if !mine {
            return Ok(None);
        }
        loop {
            let batch = lock(&self.schedule.index).take_due(now_ms(), BATCH);
            if batch.is_empty() {
                break;
            }
            let end = self.next;
            if let Err(e) = self.fire(&batch, end).await {
                lock(&self.schedule.index).put_back(batch);
                return Err(e);
            }
            self.ingest().await?;
        }
        self.trim().await;
        let (next_due, trim_point) = {
            let index = lock(&self.schedule.index);
            (index.next_due(), index.trim_point())
        };
        let due = next_due.map(|due| {
            let wait = u64::try_from(due.saturating_sub(now_ms())).unwrap_or(0);
            // A due time far away is looked at again within an hour, so a
            // clock set forward meanwhile is noticed.
            Instant::now() + Duration::from_millis(wait.min(3_600_000))
        });
        // A trim still to make: at its time.
        let (trimmed, at) = self.trimmed;
        let trim = trim_point
            .filter(|point| *point > trimmed)
            .map(|_| at + TRIM_EVERY);
        Ok(match (due, trim) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// Every [`TRIM_EVERY`], removes from the log what nothing needs any
    /// more (see [`Index::trim_point`]). A failure only waits for the next
    /// time.
    async fn trim(&mut self) {
        let (trimmed, at) = self.trimmed;
        if at.elapsed() < TRIM_EVERY {
            return;
        }
        let point = lock(&self.schedule.index).trim_point();
        let Some(point) = point.filter(|p| *p > trimmed) else {
            return;
        };
        self.trimmed = match self.schedule.store.trim(LOG, point).await {
            Ok(()) => (point, Instant::now()),
            Err(error) => {
                tracing::warn!(%error, "delayed messages: cannot trim the schedule's log; trying again later");
                (trimmed, Instant::now())
            }
        };
    }

    /// Reads every record committed to the log since the last call.
    async fn ingest(&mut self) -> Result<(), StoreError> {
        let store = &self.schedule.store;
        let Some(meta) = store.topic(LOG) else {
            return Ok(());
        };
        if self.incarnation != Some(meta.incarnation) {
            self.incarnation = Some(meta.incarnation);
            self.next = meta.start_offset;
            *lock(&self.schedule.index) = Index::default();
        }
        while self.next < meta.committed_end {
            let batch = store
                .read(LOG, meta.incarnation, self.next, READ_RECORDS, READ_BYTES)
                .await?;
            if batch.records.is_empty() {
                break;
            }
            let mut index = lock(&self.schedule.index);
            for record in &batch.records {
                take(&mut index, record);
            }
            self.next = batch.next_offset;
        }
        Ok(())
    }

    /// Appends `batch` to its topics, then records the checkpoint.
    async fn fire(&self, batch: &[Entry], end: u64) -> Result<(), StoreError> {
        let records = self.read_entries(batch).await?;
        let mut by_topic: Vec<(Arc<str>, Vec<NewRecord>)> = Vec::new();
        {
            let index = lock(&self.schedule.index);
            for (entry, record) in batch.iter().zip(records) {
                let topic = index.topic(entry);
                let record = released(record, topic);
                match by_topic.iter_mut().find(|(t, _)| t == topic) {
                    Some((_, records)) => records.push(record),
                    None => by_topic.push((topic.clone(), vec![record])),
                }
            }
        }
        let mut tickets = Vec::with_capacity(by_topic.len());
        for (topic, records) in by_topic {
            if !self.resolve(&topic).await? {
                tracing::warn!(%topic, messages = records.len(), "delayed messages are due for a topic that no longer exists (and topics.auto_create is off): dropped");
                continue;
            }
            tickets.push(self.topics.append(&topic, records).await?);
        }
        for ticket in tickets {
            ticket.await?;
        }
        let last = batch[batch.len() - 1];
        let checkpoint = Checkpoint {
            due_ms: last.due_ms,
            seq: last.seq,
            end,
        };
        let record = NewRecord {
            headers: vec![(CHECKPOINT_HEADER.to_owned(), checkpoint.encode())],
            ..NewRecord::default()
        };
        self.schedule.store.append(LOG, vec![record]).await?.await?;
        let waiting = lock(&self.schedule.index).len();
        tracing::debug!(
            messages = batch.len(),
            ?checkpoint,
            waiting,
            "fired delayed messages"
        );
        Ok(())
    }

    /// The log records of `batch`, in its order; runs of consecutive
    /// offsets are read at once.
    async fn read_entries(&self, batch: &[Entry]) -> Result<Vec<Record>, StoreError> {
        let incarnation = self.incarnation.unwrap_or_default();
        let mut out = Vec::with_capacity(batch.len());
        let mut i = 0;
        while i < batch.len() {
            let first = batch[i].seq;
            let mut n = 1;
            while i + n < batch.len() && batch[i + n].seq == first + n as u64 {
                n += 1;
            }
            let end = first + n as u64;
            let mut from = first;
            while from < end {
                let read = self
                    .schedule
                    .store
                    .read(LOG, incarnation, from, (end - from) as usize, READ_BYTES)
                    .await?;
                let Some(record) = read.records.first() else {
                    return Err(StoreError::Failed(format!(
                        "the schedule's offset {from} cannot be read"
                    )));
                };
                if record.offset != from {
                    return Err(StoreError::Failed(format!(
                        "the schedule's offset {from} is missing (read {})",
                        record.offset
                    )));
                }
                for record in read.records.into_iter().take((end - from) as usize) {
                    from = record.offset + 1;
                    out.push(record);
                }
            }
            i += n;
        }
        Ok(out)
    }

    /// Whether `topic` exists, created if missing and allowed.
    async fn resolve(&self, topic: &str) -> Result<bool, StoreError> {
        if self.topics.topic(topic).is_some() {
            return Ok(true);
        }
        if !self.auto_create {
            return Ok(false);
        }
        self.topics.ensure_topic(topic).await.map(|_| true)
    }
}

/// Adds one log record to the index: an entry (its last header, written
/// by the broker, names its topic) or a checkpoint (that header alone, and
/// no id). Headers a publisher gave are never taken for either.
fn take(index: &mut Index, record: &Record) {
    match record.headers.as_slice() {
        [.., (name, topic)] if name == TARGET_HEADER => match super::due_ms(&record.headers) {
            Ok(Some(due)) => index.insert(due, record.offset, topic),
            _ => tracing::warn!(
                offset = record.offset,
                "schedule entry without a due time: ignored"
            ),
        },
        [(name, text)] if name == CHECKPOINT_HEADER && record.id.is_none() => {
            match Checkpoint::decode(text) {
                Some(checkpoint) => index.apply(checkpoint, record.offset),
                None => tracing::warn!(
                    offset = record.offset,
                    "unreadable checkpoint in the schedule: ignored"
                ),
            }
        }
        _ => tracing::warn!(
            offset = record.offset,
            "neither an entry nor a checkpoint in the schedule: ignored"
        ),
    }
}

/// The message as its topic gets it: without the schedule's header, with
/// the id it was published with (or one naming its place in the schedule,
/// so that firing it again is still one message).
fn released(record: Record, topic: &str) -> NewRecord {
    let mut headers = record.headers;
    if let Some(at) = headers.iter().rposition(|(n, _)| n == TARGET_HEADER) {
        headers.remove(at);
    }
    let id = match record.id {
        Some(id) => id
            .strip_prefix(topic)
            .and_then(|rest| rest.strip_prefix('/'))
            .map(str::to_owned)
            .unwrap_or(id),
        None => format!("sluice-delayed-{}", record.offset),
    };
    NewRecord {
        key: record.key,
        headers,
        payload: record.payload,
        id: Some(id),
    }
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn record(offset: u64, headers: &[(&str, &str)], id: Option<&str>) -> Record {
        Record {
            offset,
            timestamp_ms: 0,
            key: None,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            payload: Bytes::new(),
            id: id.map(str::to_owned),
        }
    }

    #[test]
    fn headers_a_publisher_gave_are_not_taken_for_the_schedules_own() {
        let at = (sluice_proto::DELIVER_AT_HEADER, "1970-01-01T00:00:01Z");
        let mut index = Index::default();
        // A message carrying a checkpoint's header of its own is an entry.
        take(
            &mut index,
            &record(
                0,
                &[(CHECKPOINT_HEADER, "99999 9 9"), at, (TARGET_HEADER, "t")],
                Some("t/a"),
            ),
        );
        // A message naming a topic of its own goes to the one the broker wrote last.
        take(
            &mut index,
            &record(
                1,
                &[(TARGET_HEADER, "evil"), at, (TARGET_HEADER, "t")],
                None,
            ),
        );
        assert_eq!((index.waiting("t"), index.waiting("evil")), (2, 0));
        // A real checkpoint removes them.
        take(
            &mut index,
            &record(2, &[(CHECKPOINT_HEADER, "1000 1 2")], None),
        );
        assert_eq!(index.waiting("t"), 0);
    }

    #[test]
    fn a_fired_message_gets_back_its_id_and_loses_the_schedules_header() {
        let fired = released(
            record(7, &[("a", "1"), (TARGET_HEADER, "t")], Some("t/m-1")),
            "t",
        );
        assert_eq!((fired.id.as_deref(), fired.headers.len()), (Some("m-1"), 1));
        let anonymous = released(record(7, &[(TARGET_HEADER, "t")], None), "t");
        assert_eq!(anonymous.id.as_deref(), Some("sluice-delayed-7"));
    }
}
