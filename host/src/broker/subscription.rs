//! [`Subscription`]: what one subscriber receives, in offset order per topic.
//!
//! A *live* subscription (start `Latest`) takes committed batches from its
//! sink; when it falls behind, batches are dropped for it and counted
//! (at-most-once, publishers never wait). A *replaying* subscription first
//! reads the log from its start position, then follows live batches; it
//! tracks the next offset per topic, skips what it already sent and refills
//! any gap (dropped batches) from the log, so it misses nothing. A client
//! that resumes after a lost connection names the next offset per topic;
//! those topics replay from there, whatever the start (a resumed live
//! subscription replays too, so it misses nothing stored meanwhile).
//!
//! What is held for a subscriber is bounded in messages and in bytes
//! ([`BufferLimits`]): the feed counts a live batch until the subscription
//! hands it out in a chunk, so the subscription's own queue is inside the
//! bound; a chunk is at most `CHUNK_MESSAGES` or about `CHUNK_BYTES`;
//! and a catch-up after an overflow replaces the queued work it covers by
//! one log read range per topic.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use sluice_proto::{Pattern, StartPosition};

use crate::delivery::{Chunk, Slice};
use crate::error::BrokerError;
use crate::metrics::Metrics;
use crate::plugin::delivery::DeliveryFilter;
use crate::store::feed::Queued;
use crate::store::{Feed, Store, StoredBatch, TopicMeta};

/// Most messages handed out in one chunk.
const CHUNK_MESSAGES: usize = 1024;
/// Bytes after which a chunk takes no more live batches, and most payload
/// bytes read from the log for one chunk: what one chunk holds beyond the
/// feed's bounds, once in the subscription and once encoded.
const CHUNK_BYTES: usize = 512 * 1024;

/// How much may be held in memory for one subscriber.
#[derive(Debug, Clone, Copy)]
pub struct BufferLimits {
    /// Messages (`limits.subscriber_buffer_messages`).
    pub messages: usize,
    /// Bytes (`limits.subscriber_buffer_bytes`), as
    /// [`StoredBatch::memory_bytes`] counts them.
    pub bytes: usize,
}

enum Work {
    Replay {
        topic: TopicMeta,
        from: u64,
        until: u64,
    },
    /// Counted against the feed's bounds until handed out or dropped.
    Live(Queued),
}

impl Work {
    /// Whether reading `topic` (this incarnation) up to `until` from the
    /// log delivers everything this work would.
    fn covered_by(&self, topic: &TopicMeta, until: u64) -> bool {
        match self {
            Work::Replay {
                topic: t, until: u, ..
            } => t.name == topic.name && t.incarnation == topic.incarnation && *u <= until,
            Work::Live(batch) => {
                batch.topic == topic.name
                    && batch.incarnation == topic.incarnation
                    && batch.end_offset() <= until
            }
        }
    }
}

/// A subscription on the broker side.
pub struct Subscription {
    store: Arc<dyn Store>,
    feed: Feed,
    /// Replaying subscriptions never lose messages; live ones may.
    lossless: bool,
    /// Started from a position rather than `Latest`: messages whose
    /// time-to-live ran out are delivered marked, not skipped.
    replay: bool,
    /// Per topic: the incarnation seen and the next offset to send.
    next: HashMap<Arc<str>, (u64, u64)>,
    work: VecDeque<Work>,
    /// A plugin that filters or transforms what is delivered.
    filter: Option<Arc<DeliveryFilter>>,
    /// Where messages dropped for this subscriber are counted.
    metrics: Arc<Metrics>,
}

impl Subscription {
    /// Starts a subscription on `pattern` from `from`, except for the
    /// topics `resume` gives the next offset of (a client resuming after a
    /// lost connection): the feed is registered before the topics' ends
    /// are read, so whatever commits after this point arrives on the feed
    /// and whatever committed before is in the log. What the feed holds is
    /// shown in `metrics`.
    ///
    /// A resumed subscription replays even from `Latest`: what was stored
    /// after the offsets the client had reached is what it came back for.
    /// An offset past a topic's end means the log is not the one the client
    /// read (deleted and created again): that topic starts as `from` says.
    pub(crate) async fn start(
        store: Arc<dyn Store>,
        pattern: Pattern,
        from: StartPosition,
        resume: &BTreeMap<String, u64>,
        limits: BufferLimits,
        filter: Option<Arc<DeliveryFilter>>,
        metrics: Arc<Metrics>,
    ) -> Result<Subscription, BrokerError> {
        // A replicated store's view of its topics may lag a moment: brought
        // up to date first, so "latest" means after what is stored now, and
        // a resume position seen through another node is within this one's
        // committed end.
        store
            .catch_up(&pattern)
            .await
            .map_err(|e| BrokerError::store(pattern.as_str(), e))?;
        let feed = store.feed(pattern, limits.messages);
        feed.set_max_bytes(limits.bytes);
        metrics.watch_subscriber_queue(feed.queue());
        let topics = store.topics(feed.pattern());
        let mut sub = Subscription {
            store,
            feed,
            lossless: from != StartPosition::Latest || !resume.is_empty(),
            replay: from != StartPosition::Latest,
            next: HashMap::new(),
            work: VecDeque::new(),
            filter,
            metrics,
        };
        if sub.lossless {
            for topic in topics {
                let resumed = resume
                    .get(&*topic.name)
                    .copied()
                    .filter(|next| *next <= topic.committed_end);
                let from = match (resumed, from) {
                    (Some(next), _) => next,
                    (None, StartPosition::Earliest) => topic.start_offset,
                    (None, StartPosition::Latest) => topic.committed_end,
                    (None, StartPosition::Offset(o)) => o,
                    (None, StartPosition::Timestamp(ts)) => sub
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
        let chunk = loop {
            let raw = self.next_raw_chunk().await?;
            let chunk = crate::schedule::expire(raw, self.replay, crate::store::now_ms());
            if !chunk.slices.is_empty() || chunk.dropped > 0 {
                break chunk;
            }
        };
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
                let dropped = self.feed.take_dropped();
                self.metrics.subscriber_dropped("replaying", dropped);
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

    /// After an overflow: read every matching topic up to its committed
    /// end. The queued work this covers (live batches, earlier ranges) is
    /// dropped, releasing it from the feed's bounds, so repeated overflows
    /// leave one range per topic rather than piling up.
    fn schedule_catch_up(&mut self) {
        let ranges: Vec<(TopicMeta, u64, u64)> = self
            .store
            .topics(self.feed.pattern())
            .into_iter()
            .map(|topic| {
                let from = self.next_offset(&topic.name, topic.incarnation);
                let until = topic.committed_end;
                (topic, from, until)
            })
            .collect();
        let earlier = std::mem::take(&mut self.work);
        // Committed ends only grow and a batch is fanned out after its
        // topic's end moved past it, so whatever is left comes after the
        // new ranges in its topic.
        let left: Vec<Work> = earlier
            .into_iter()
            .filter(|work| {
                !ranges
                    .iter()
                    .any(|(topic, _, until)| work.covered_by(topic, *until))
            })
            .collect();
        self.work = ranges
            .into_iter()
            .filter(|(_, from, until)| from < until)
            .map(|(topic, from, until)| Work::Replay { topic, from, until })
            .chain(left)
            .collect();
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
        if chunk.dropped > 0 {
            self.metrics.subscriber_dropped("live", chunk.dropped);
        }
        let (mut messages, mut bytes) = (0, 0);
        while messages < CHUNK_MESSAGES && bytes < CHUNK_BYTES {
            let Some(work) = self.work.pop_front() else {
                break;
            };
            match work {
                Work::Live(batch) => {
                    // Handing the batch out (or skipping it) drops `batch`,
                    // which releases it from the feed's bounds.
                    if !self.lossless {
                        messages += batch.records.len();
                        bytes += batch.bytes();
                        chunk.slices.push(Slice {
                            batch: batch.batch().clone(),
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
                    bytes += batch.bytes();
                    chunk.slices.push(Slice {
                        batch: batch.batch().clone(),
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
                        .read(&topic.name, topic.incarnation, from, want, CHUNK_BYTES)
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use tempfile::TempDir;

    use super::*;
    use crate::config::{Config, FsyncPolicy};
    use crate::store::{LocalOptions, LocalStore, NewRecord};

    const WAIT: Duration = Duration::from_secs(20);
    const TOPICS: [&str; 3] = ["t.a", "t.b", "t.c"];
    /// Big against a chunk, so a chunk a round takes less than comes.
    const PAYLOAD: usize = 64 * 1024;

    async fn store(dir: &TempDir) -> Arc<dyn Store> {
        let mut config = Config::default();
        config.server.data_dir = dir.path().to_owned();
        config.storage.fsync = FsyncPolicy::Never;
        let options = LocalOptions::from_config(&config);
        let store = LocalStore::open(options, Arc::new(Metrics::default()))
            .await
            .expect("store opens");
        Arc::new(store)
    }

    async fn publish(store: &Arc<dyn Store>, topic: &str) {
        let record = NewRecord {
            payload: Bytes::from(vec![b'x'; PAYLOAD]),
            ..NewRecord::default()
        };
        let ticket = store.append(topic, vec![record]).await.expect("appended");
        tokio::time::timeout(WAIT, ticket)
            .await
            .expect("committed in time")
            .expect("committed");
    }

    /// A subscription on `t.*` with default buffers.
    async fn subscribe(
        store: &Arc<dyn Store>,
        from: StartPosition,
        resume: &[(&str, u64)],
    ) -> Subscription {
        let resume = resume.iter().map(|(t, o)| (t.to_string(), *o)).collect();
        let limits = BufferLimits {
            messages: 1_000,
            bytes: 64 * 1024 * 1024,
        };
        Subscription::start(
            store.clone(),
            Pattern::parse("t.*").expect("pattern"),
            from,
            &resume,
            limits,
            None,
            Arc::new(Metrics::default()),
        )
        .await
        .expect("subscribed")
    }

    /// Takes chunks until `total` messages came; per topic, their offsets.
    async fn take_total(sub: &mut Subscription, total: usize) -> HashMap<Arc<str>, Vec<u64>> {
        let mut seen = HashMap::new();
        while seen.values().map(Vec::len).sum::<usize>() < total {
            take(sub, &mut seen).await;
        }
        seen
    }

    fn offsets(seen: &HashMap<Arc<str>, Vec<u64>>, topic: &str) -> Vec<u64> {
        seen.get(topic).cloned().unwrap_or_default()
    }

    /// `t.a` and `t.b` with five messages each.
    async fn two_topics_of_five(dir: &TempDir) -> Arc<dyn Store> {
        let store = store(dir).await;
        for topic in ["t.a", "t.b"] {
            store.ensure_topic(topic).await.expect("created");
            for _ in 0..5 {
                publish(&store, topic).await;
            }
        }
        store
    }

    #[tokio::test]
    async fn resume_positions_override_the_start_per_topic() {
        let dir = TempDir::new().expect("temp dir");
        let store = two_topics_of_five(&dir).await;
        let mut sub = subscribe(&store, StartPosition::Earliest, &[("t.a", 3)]).await;
        let seen = take_total(&mut sub, 7).await;
        assert_eq!(offsets(&seen, "t.a"), vec![3, 4]);
        assert_eq!(offsets(&seen, "t.b"), vec![0, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn a_resumed_live_subscription_replays_what_it_missed() {
        let dir = TempDir::new().expect("temp dir");
        let store = two_topics_of_five(&dir).await;
        let mut sub = subscribe(&store, StartPosition::Latest, &[("t.a", 2)]).await;
        publish(&store, "t.a").await;
        publish(&store, "t.b").await;
        // t.a from its position; t.b, which it names no offset for, only
        // from its end at the start.
        let seen = take_total(&mut sub, 5).await;
        assert_eq!(offsets(&seen, "t.a"), vec![2, 3, 4, 5]);
        assert_eq!(offsets(&seen, "t.b"), vec![5]);
    }

    #[tokio::test]
    async fn a_resume_position_past_the_end_starts_as_the_start_position_says() {
        let dir = TempDir::new().expect("temp dir");
        let store = two_topics_of_five(&dir).await;
        // An offset the log never reached: not the log the client read.
        let mut sub = subscribe(&store, StartPosition::Earliest, &[("t.a", 99)]).await;
        let seen = take_total(&mut sub, 10).await;
        assert_eq!(offsets(&seen, "t.a"), vec![0, 1, 2, 3, 4]);
        assert_eq!(offsets(&seen, "t.b"), vec![0, 1, 2, 3, 4]);
    }

    /// Takes a chunk; per topic, the offsets it holds.
    async fn take(sub: &mut Subscription, seen: &mut HashMap<Arc<str>, Vec<u64>>) {
        let chunk = tokio::time::timeout(WAIT, sub.next_chunk())
            .await
            .expect("a chunk in time")
            .expect("a chunk");
        for slice in &chunk.slices {
            let offsets = seen.entry(slice.batch.topic.clone()).or_default();
            offsets.extend(slice.records().iter().map(|r| r.offset));
        }
    }

    #[tokio::test]
    async fn a_replaying_subscriber_far_behind_holds_bounded_work_and_misses_nothing() {
        const ROUNDS: u64 = 20;
        const PER_ROUND: u64 = 4;
        let dir = TempDir::new().expect("temp dir");
        let store = store(&dir).await;
        for topic in TOPICS {
            store.ensure_topic(topic).await.expect("created");
        }
        let one = PAYLOAD + 64;
        let limits = BufferLimits {
            messages: 1_000,
            bytes: 4 * one,
        };
        let metrics = Arc::new(Metrics::default());
        let mut sub = Subscription::start(
            store.clone(),
            Pattern::parse("t.*").expect("pattern"),
            StartPosition::Earliest,
            &BTreeMap::new(),
            limits,
            None,
            metrics,
        )
        .await
        .expect("subscribed");
        let mut seen = HashMap::new();
        for round in 0..ROUNDS {
            for topic in TOPICS {
                for _ in 0..PER_ROUND {
                    publish(&store, topic).await;
                }
            }
            // The subscriber takes one chunk a round, less than comes: it
            // falls ever further behind, and overflows each round.
            take(&mut sub, &mut seen).await;
            let (messages, bytes) = sub.feed.held();
            assert!(bytes <= limits.bytes, "round {round}: {bytes} bytes held");
            assert!(
                sub.work.len() <= TOPICS.len() + 2 * messages,
                "round {round}: {} pieces of work for {messages} messages held",
                sub.work.len()
            );
        }
        let total = TOPICS.len() * (ROUNDS * PER_ROUND) as usize;
        while seen.values().map(Vec::len).sum::<usize>() < total {
            take(&mut sub, &mut seen).await;
        }
        for topic in TOPICS {
            assert_eq!(
                seen.get(topic).map(Vec::as_slice),
                Some(&(0..ROUNDS * PER_ROUND).collect::<Vec<_>>()[..]),
                "{topic}: every offset once, in order"
            );
        }
    }
}
