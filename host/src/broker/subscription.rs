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

use sluice_proto::{Pattern, StartPosition};

use crate::delivery::{Chunk, Slice};
use crate::error::BrokerError;
use crate::plugin::delivery::DeliveryFilter;
use crate::store::{Feed, Store, StoredBatch, TopicMeta};

/// Most messages handed out in one chunk.
const CHUNK_MESSAGES: usize = 1024;
/// Most payload bytes read from the log for one chunk.
const CHUNK_READ_BYTES: usize = 512 * 1024;

enum Work {
    Replay {
        topic: TopicMeta,
        from: u64,
        until: u64,
    },
    Live(Arc<StoredBatch>),
}

/// A subscription on the broker side.
pub struct Subscription {
    store: Arc<dyn Store>,
    feed: Feed,
    /// Replaying subscriptions never lose messages; live ones may.
    lossless: bool,
    /// Per topic: the incarnation seen and the next offset to send.
    next: HashMap<Arc<str>, (u64, u64)>,
    work: VecDeque<Work>,
    /// A plugin that filters or transforms what is delivered.
    filter: Option<Arc<DeliveryFilter>>,
}

impl Subscription {
    /// Starts a subscription on `pattern` from `from`: the feed is
    /// registered before the topics' ends are read, so whatever commits
    /// after this point arrives on the feed and whatever committed before
    /// is in the log.
    pub(crate) async fn start(
        store: Arc<dyn Store>,
        pattern: Pattern,
        from: StartPosition,
        max_queued: usize,
        filter: Option<Arc<DeliveryFilter>>,
    ) -> Result<Subscription, BrokerError> {
        let feed = store.feed(pattern, max_queued);
        let topics = store.topics(feed.pattern());
        let mut sub = Subscription {
            store,
            feed,
            lossless: from != StartPosition::Latest,
            next: HashMap::new(),
            work: VecDeque::new(),
            filter,
        };
        if sub.lossless {
            for topic in topics {
                let from = match from {
                    StartPosition::Earliest | StartPosition::Latest => topic.start_offset,
                    StartPosition::Offset(o) => o,
                    StartPosition::Timestamp(ts) => sub
                        .store
                        .offset_for_time(&topic.name, ts)
                        .await
                        .map_err(|e| BrokerError::store(&topic.name, e))?,
                };
                let until = topic.committed_end;
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
        self.feed.pattern().as_str()
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
            while let Some(batch) = self.feed.try_next() {
                self.work.push_back(Work::Live(batch));
            }
            if self.lossless && self.feed.take_overflowed() {
                self.schedule_catch_up();
            }
            let chunk = self.take_work().await?;
            if !chunk.slices.is_empty() || chunk.dropped > 0 {
                return Ok(chunk);
            }
            match self.feed.next().await {
                Ok(Some(batch)) => self.work.push_back(Work::Live(batch)),
                Ok(None) => {} // an overflow: looked at on the next turn
                Err(_) => return Err(BrokerError::ShuttingDown),
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

    /// Whether this incarnation of the topic still exists.
    fn still_there(&self, topic: &TopicMeta) -> bool {
        self.store
            .topic(&topic.name)
            .is_some_and(|t| t.incarnation == topic.incarnation)
    }

    /// After an overflow: read every matching topic up to its committed end.
    fn schedule_catch_up(&mut self) {
        for topic in self.store.topics(self.feed.pattern()) {
            let from = self.next_offset(&topic.name, topic.incarnation);
            let until = topic.committed_end;
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
                self.feed.take_dropped()
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
                        if let Some(topic) = self
                            .store
                            .topic(&batch.topic)
                            .filter(|t| t.incarnation == batch.incarnation)
                        {
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
                    let read = self
                        .store
                        .read(&topic.name, topic.incarnation, from, want, CHUNK_READ_BYTES)
                        .await;
                    let read = match read {
                        Ok(read) => read,
                        Err(e) if !self.still_there(&topic) => {
                            tracing::debug!(topic = %topic.name, error = %e, "topic deleted during replay");
                            continue;
                        }
                        Err(e) => return Err(BrokerError::store(&topic.name, e)),
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
