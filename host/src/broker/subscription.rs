//! [`Subscription`]: what one subscriber receives, in offset order per topic.
//!
//! A *live* subscription (start `Latest`) takes committed batches from its
//! sink; when it falls behind, batches are dropped for it and counted
//! (at-most-once, publishers never wait). A *replaying* subscription first
//! reads the log from its start position, then follows live batches; it
//! tracks the next offset per topic, skips what it already sent and refills
//! any gap (dropped batches) from the log, so it misses nothing.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use sluice_proto::StartPosition;
use tokio::sync::mpsc;

use super::error::BrokerError;
use super::fanout::Sink;
use super::topic::{StoredBatch, Topic};
use super::Broker;

/// Most messages handed out in one chunk.
const CHUNK_MESSAGES: usize = 1024;
/// Most payload bytes read from the log for one chunk.
const CHUNK_READ_BYTES: usize = 512 * 1024;

/// Records to send: `batch.records[skip..]`.
#[derive(Debug, Clone)]
pub struct Slice {
    /// The batch.
    pub batch: Arc<StoredBatch>,
    /// Records at the front already sent.
    pub skip: usize,
    /// Delivery attempt (consumer groups); 0 for subscriptions.
    pub attempt: u32,
}

impl Slice {
    /// The records to send.
    pub fn records(&self) -> &[crate::store::Record] {
        &self.batch.records[self.skip.min(self.batch.records.len())..]
    }
}

/// What a subscription yields at a time.
#[derive(Debug, Default)]
pub struct Chunk {
    /// Records in order.
    pub slices: Vec<Slice>,
    /// Messages missed since the previous chunk (live subscriptions).
    pub dropped: u64,
}

enum Work {
    Replay {
        topic: Arc<Topic>,
        from: u64,
        until: u64,
    },
    Live(Arc<StoredBatch>),
}

/// A subscription on the broker side.
pub struct Subscription {
    broker: Broker,
    sink: Arc<Sink>,
    rx: mpsc::UnboundedReceiver<Arc<StoredBatch>>,
    /// Replaying subscriptions never lose messages; live ones may.
    lossless: bool,
    /// Per topic: the incarnation seen and the next offset to send.
    next: HashMap<Arc<str>, (u64, u64)>,
    work: VecDeque<Work>,
    /// A plugin that filters or transforms what is delivered.
    filter: Option<Arc<crate::plugin::delivery::DeliveryFilter>>,
}

impl Subscription {
    pub(crate) fn new(
        broker: Broker,
        sink: Arc<Sink>,
        rx: mpsc::UnboundedReceiver<Arc<StoredBatch>>,
        from: StartPosition,
        topics: Vec<Arc<Topic>>,
        filter: Option<Arc<crate::plugin::delivery::DeliveryFilter>>,
    ) -> Result<Subscription, BrokerError> {
        let mut sub = Subscription {
            broker,
            sink,
            rx,
            lossless: from != StartPosition::Latest,
            next: HashMap::new(),
            work: VecDeque::new(),
            filter,
        };
        if sub.lossless {
            for topic in topics {
                let from =
                    match from {
                        StartPosition::Earliest | StartPosition::Latest => topic.log.start_offset(),
                        StartPosition::Offset(o) => o,
                        StartPosition::Timestamp(ts) => topic
                            .log
                            .offset_for_timestamp(ts)
                            .map_err(|e| BrokerError::Storage {
                                topic: topic.name.to_string(),
                                source: e,
                            })?,
                    };
                let until = topic.committed_end();
                sub.next
                    .insert(topic.name.clone(), (topic.incarnation, from));
                if from < until {
                    sub.work.push_back(Work::Replay { topic, from, until });
                }
            }
        }
        Ok(sub)
    }

    /// The pattern.
    pub fn pattern(&self) -> &str {
        self.sink.pattern.as_str()
    }

    /// Waits for the next chunk of messages, through the subscription's
    /// plugin if it has one. Cancel-safe.
    pub async fn next_chunk(&mut self) -> Result<Chunk, BrokerError> {
        let chunk = self.next_raw_chunk().await?;
        let Some(filter) = self.filter.clone() else {
            return Ok(chunk);
        };
        tokio::task::spawn_blocking(move || crate::plugin::delivery::apply(&filter, chunk))
            .await
            .map_err(|e| BrokerError::Internal(format!("delivery plugin task failed: {e}")))
    }

    async fn next_raw_chunk(&mut self) -> Result<Chunk, BrokerError> {
        loop {
            while let Ok(batch) = self.rx.try_recv() {
                self.sink.taken(batch.records.len());
                self.work.push_back(Work::Live(batch));
            }
            if self.lossless && self.sink.take_overflowed() {
                self.schedule_catch_up();
            }
            let chunk = self.take_work().await?;
            if !chunk.slices.is_empty() || chunk.dropped > 0 {
                return Ok(chunk);
            }
            tokio::select! {
                batch = self.rx.recv() => match batch {
                    Some(batch) => {
                        self.sink.taken(batch.records.len());
                        self.work.push_back(Work::Live(batch));
                    }
                    None => return Err(BrokerError::ShuttingDown),
                },
                () = self.sink.wake.notified() => {}
            }
        }
    }

    /// The next offset to send of a topic's incarnation (0 for one not
    /// seen yet, such as a topic deleted and created again).
    fn next_offset(&self, topic: &str, incarnation: u64) -> u64 {
        match self.next.get(topic) {
            Some((seen, next)) if *seen == incarnation => *next,
            _ => 0,
        }
    }

    /// After an overflow: read every matching topic up to its committed end.
    fn schedule_catch_up(&mut self) {
        for topic in self.broker.matching_topics(&self.sink.pattern) {
            let from = self.next_offset(&topic.name, topic.incarnation);
            let until = topic.committed_end();
            if from < until {
                self.work.push_back(Work::Replay { topic, from, until });
            }
        }
    }

    async fn take_work(&mut self) -> Result<Chunk, BrokerError> {
        let mut chunk = Chunk {
            slices: Vec::new(),
            dropped: if self.lossless {
                0
            } else {
                self.sink.take_dropped()
            },
        };
        let mut messages = 0;
        while messages < CHUNK_MESSAGES {
            let Some(work) = self.work.pop_front() else {
                break;
            };
            match work {
                Work::Live(batch) => {
                    if !self.lossless {
                        messages += batch.records.len();
                        chunk.slices.push(Slice {
                            batch,
                            skip: 0,
                            attempt: 0,
                        });
                        continue;
                    }
                    let next = self.next_offset(&batch.topic, batch.incarnation);
                    let first = batch.first_offset();
                    if batch.end_offset() <= next {
                        continue; // already sent by a replay
                    }
                    if first > next {
                        // A gap: refill it from the log before this batch.
                        if let Some(topic) = self.broker.topic(&batch.topic) {
                            self.work.push_front(Work::Live(batch));
                            self.work.push_front(Work::Replay {
                                topic,
                                from: next,
                                until: first,
                            });
                            continue;
                        }
                    }
                    let skip = next.saturating_sub(first) as usize;
                    self.next
                        .insert(batch.topic.clone(), (batch.incarnation, batch.end_offset()));
                    messages += batch.records.len() - skip;
                    chunk.slices.push(Slice {
                        batch,
                        skip,
                        attempt: 0,
                    });
                }
                Work::Replay { topic, from, until } => {
                    if !chunk.slices.is_empty() {
                        // Keep log reads in their own chunk so a chunk never
                        // waits on I/O while holding live messages.
                        self.work.push_front(Work::Replay { topic, from, until });
                        break;
                    }
                    // Live batches may have moved past part of this range.
                    let from = from.max(self.next_offset(&topic.name, topic.incarnation));
                    if from >= until {
                        continue;
                    }
                    let want = (until - from).min(CHUNK_MESSAGES as u64) as usize;
                    let reader = topic.clone();
                    let read = tokio::task::spawn_blocking(move || {
                        reader.read_committed(from, want, CHUNK_READ_BYTES)
                    })
                    .await
                    .map_err(|e| BrokerError::Internal(e.to_string()))?;
                    let read = match read {
                        Ok(read) => read,
                        Err(e) if self.broker.topic(&topic.name).is_none() => {
                            tracing::debug!(topic = %topic.name, error = %e, "topic deleted during replay");
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    let mut records = read.records;
                    records.retain(|r| r.offset < until);
                    let Some(last) = records.last() else {
                        // Nothing there (removed by retention or deleted).
                        continue;
                    };
                    let reached = last.offset + 1;
                    if records[0].offset > from {
                        chunk.dropped += records[0].offset - from;
                    }
                    let prev = self.next_offset(&topic.name, topic.incarnation);
                    self.next
                        .insert(topic.name.clone(), (topic.incarnation, prev.max(reached)));
                    chunk.slices.push(Slice {
                        batch: Arc::new(StoredBatch {
                            topic: topic.name.clone(),
                            incarnation: topic.incarnation,
                            records,
                        }),
                        skip: 0,
                        attempt: 0,
                    });
                    if reached < until {
                        self.work.push_front(Work::Replay {
                            topic,
                            from: reached,
                            until,
                        });
                    }
                    break;
                }
            }
        }
        Ok(chunk)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.broker.unregister(self.sink.id);
    }
}
