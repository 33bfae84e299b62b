//! Plugin logs: what a plugin writes through the contract's `log` and
//! `log-for-message`, or to stdout and stderr, goes to the topic
//! `_sluice.logs.<plugin>` as one JSON entry per line, with the plugin's
//! version and the topic of the batch it was handling (and, for a line
//! about one message, its trace id and offset where known).
//!
//! Each plugin may write `[plugins] log_rate` lines a second (a token
//! bucket holding `log_burst`); lines past it are dropped and counted, so
//! a plugin logging in a loop costs the broker a lock and a counter per
//! line, not a write. Accepted lines go through a bounded queue to one
//! writer task that appends them in batches; when the queue is full they
//! are dropped and counted too. Without a broker (`sluice plugin test`),
//! lines go to the `tracing` output instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::store::{NewRecord, Store};
use crate::sync::lock;

/// Topics of plugin logs start with this; the plugin's name follows.
pub const TOPIC_PREFIX: &str = "_sluice.logs.";

/// Lines waiting for the writer at most.
const QUEUE_LINES: usize = 8192;

/// Lines appended in one write at most.
const WRITE_LINES: usize = 512;

/// Longest line kept, in bytes; the rest of a longer one is cut.
pub const MAX_LINE: usize = 4096;

/// How long a log topic keeps lines, and how many bytes at most.
const KEEP_FOR: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);
const KEEP_BYTES: u64 = 64 * 1024 * 1024;

/// The settings a log topic is created with: a week, at most 64 MiB.
fn topic_settings() -> crate::store::TopicSettings {
    crate::store::TopicSettings {
        retention: sluice_proto::RetentionSpec {
            max_age_ms: Some(KEEP_FOR.as_millis() as u64),
            max_bytes: Some(KEEP_BYTES),
            max_messages: None,
        },
        segment_bytes: 8 * 1024 * 1024,
        dedup_window_ms: 0,
        default_ttl_ms: None,
        dead_letter_expired: false,
    }
}

/// `line` cut to [`MAX_LINE`] bytes, at a character boundary.
fn cut(mut line: String) -> String {
    if line.len() > MAX_LINE {
        let mut end = MAX_LINE;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
    }
    line
}

/// The log topic of plugin `name`.
pub fn topic_for(plugin: &str) -> String {
    format!("{TOPIC_PREFIX}{plugin}")
}

/// One line of a plugin's log, as stored (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// When it was written (ms since the Unix epoch).
    pub time_ms: i64,
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// The plugin.
    pub plugin: String,
    /// Its version (content hash).
    pub version: String,
    /// `log` (the contract's functions), `stdout` or `stderr`.
    pub stream: String,
    /// The topic of the batch being handled; none during `init`.
    #[serde(default)]
    pub topic: Option<String>,
    /// The line.
    pub message: String,
    /// The message of the batch the line is about, if it names one.
    #[serde(default)]
    pub index: Option<u32>,
    /// That message's W3C trace id, if it has a `traceparent`.
    #[serde(default)]
    pub trace_id: Option<String>,
    /// That message's offset, if known (not on the publish path).
    #[serde(default)]
    pub offset: Option<u64>,
}

/// One plugin's token bucket and counts.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
    written: u64,
    dropped: u64,
}

/// Where every plugin's lines go: the rate limit, the counts and the
/// queue to the writer.
#[derive(Debug)]
pub struct PluginLogs {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
    queue: mpsc::Sender<LogEntry>,
    receiver: Mutex<Option<mpsc::Receiver<LogEntry>>>,
}

impl PluginLogs {
    /// `rate` lines a second per plugin, `burst` at once.
    pub fn new(rate: u32, burst: u32) -> PluginLogs {
        let (queue, receiver) = mpsc::channel(QUEUE_LINES);
        PluginLogs {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
            queue,
            receiver: Mutex::new(Some(receiver)),
        }
    }

    /// Whether `plugin` may write a line now: true within its rate (the
    /// line is counted as written), false past it (counted as dropped).
    /// Checked before the line is made, so a flood costs little.
    pub fn admit(&self, plugin: &str) -> bool {
        let mut buckets = lock(&self.buckets);
        if self.rate == 0.0 {
            // `log_rate = 0`: logging is off; every line is dropped.
            let bucket = buckets.entry(plugin.to_owned()).or_insert(Bucket {
                tokens: 0.0,
                refilled: Instant::now(),
                written: 0,
                dropped: 0,
            });
            bucket.dropped += 1;
            return false;
        }
        let now = Instant::now();
        if !buckets.contains_key(plugin) {
            buckets.insert(
                plugin.to_owned(),
                Bucket {
                    tokens: self.burst,
                    refilled: now,
                    written: 0,
                    dropped: 0,
                },
            );
        }
        let Some(bucket) = buckets.get_mut(plugin) else {
            return false;
        };
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.refilled = now;
        if bucket.tokens < 1.0 {
            bucket.dropped += 1;
            return false;
        }
        bucket.tokens -= 1.0;
        bucket.written += 1;
        true
    }

    /// Queues an admitted line for the writer; when the queue is full it
    /// is dropped, and counted as dropped instead of written.
    pub fn send(&self, entry: LogEntry) {
        if let Err(e) = self.queue.try_send(entry) {
            let entry = match e {
                mpsc::error::TrySendError::Full(entry)
                | mpsc::error::TrySendError::Closed(entry) => entry,
            };
            if let Some(bucket) = lock(&self.buckets).get_mut(&entry.plugin) {
                bucket.written -= 1;
                bucket.dropped += 1;
            }
        }
    }

    /// Lines of `plugin` written and dropped so far.
    pub fn counts(&self, plugin: &str) -> (u64, u64) {
        lock(&self.buckets)
            .get(plugin)
            .map_or((0, 0), |b| (b.written, b.dropped))
    }

    /// The writer's end of the queue (once).
    fn take_receiver(&self) -> Option<mpsc::Receiver<LogEntry>> {
        lock(&self.receiver).take()
    }
}

/// Appends queued lines to their plugins' log topics until `shutdown`,
/// then what is queued by then. Lines that cannot be stored are dropped
/// with a rate-limited warning: a log never stops the broker.
pub async fn write_logs(logs: Arc<PluginLogs>, store: Arc<dyn Store>, shutdown: CancellationToken) {
    let Some(mut queue) = logs.take_receiver() else {
        return;
    };
    let mut batch = Vec::with_capacity(WRITE_LINES);
    loop {
        tokio::select! {
            got = queue.recv_many(&mut batch, WRITE_LINES) => {
                if got == 0 {
                    return;
                }
            }
            () = shutdown.cancelled() => {
                while batch.len() < WRITE_LINES {
                    match queue.try_recv() {
                        Ok(entry) => batch.push(entry),
                        Err(_) => break,
                    }
                }
                append(&*store, std::mem::take(&mut batch)).await;
                return;
            }
        }
        append(&*store, std::mem::take(&mut batch)).await;
    }
}

/// Rate limit of the warnings about log lines that could not be stored.
static STORE_FAILURES_LOG: crate::auth::LogLimit =
    crate::auth::LogLimit::new(std::time::Duration::from_secs(10));

async fn append(store: &dyn Store, entries: Vec<LogEntry>) {
    let mut by_topic: Vec<(String, Vec<NewRecord>)> = Vec::new();
    for entry in entries {
        let topic = topic_for(&entry.plugin);
        let record = NewRecord {
            key: Some(Bytes::from(entry.plugin.clone().into_bytes())),
            headers: vec![("sluice-log-level".to_owned(), entry.level.clone())],
            payload: Bytes::from(serde_json::to_vec(&entry).unwrap_or_default()),
            id: None,
        };
        match by_topic.iter_mut().find(|(t, _)| *t == topic) {
            Some((_, records)) => records.push(record),
            None => by_topic.push((topic, vec![record])),
        }
    }
    for (topic, records) in by_topic {
        let n = records.len();
        let stored = async {
            if store.topic(&topic).is_none() {
                match store.create_topic(&topic, topic_settings()).await {
                    Ok(_) | Err(crate::store::StoreError::TopicExists(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            store.append(&topic, records).await?.await
        };
        if let Err(error) = stored.await {
            if let Some(held) = STORE_FAILURES_LOG.allow() {
                tracing::warn!(%topic, lines = n, held_back = held, %error, "cannot store plugin log lines; dropped");
            }
        }
    }
}

/// The batch a plugin instance is handling, as its log lines name it
/// (implemented by the contract's batch, in `pipeline`, which knows its
/// layout).
pub trait Handling: Send + Sync {
    /// The batch's topic.
    fn topic(&self) -> &str;
    /// Message `index` of the batch: its trace id and offset, where known;
    /// `None` if the batch has no such message.
    fn message(&self, index: u32) -> Option<(Option<String>, Option<u64>)>;
}

/// What one plugin instance's lines are tagged with, and where they go:
/// shared by its store (the contract's `log`) and its stdout and stderr.
#[derive(Debug)]
pub struct LogContext {
    plugin: Arc<str>,
    version: Arc<str>,
    sink: Option<Arc<PluginLogs>>,
    /// The batch being handled, while a call runs.
    batch: Mutex<Option<Arc<dyn Handling>>>,
}

impl std::fmt::Debug for dyn Handling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "batch of {}", self.topic())
    }
}

impl LogContext {
    /// For an instance of `plugin` at `version`; without a sink lines go
    /// to `tracing`.
    pub fn new(plugin: Arc<str>, version: Arc<str>, sink: Option<Arc<PluginLogs>>) -> LogContext {
        LogContext {
            plugin,
            version,
            sink,
            batch: Mutex::new(None),
        }
    }

    /// The plugin's name.
    pub fn plugin(&self) -> &Arc<str> {
        &self.plugin
    }

    /// Sets (or clears) the batch being handled.
    pub fn handling(&self, batch: Option<Arc<dyn Handling>>) {
        *lock(&self.batch) = batch;
    }

    /// Writes one line at `level` (`trace` to `error`) from `stream`,
    /// about message `index` if given.
    pub fn line(&self, level: &'static str, stream: &str, index: Option<u32>, message: String) {
        let Some(sink) = &self.sink else {
            let plugin = &*self.plugin;
            match level {
                "trace" => tracing::trace!(plugin, stream, "{message}"),
                "debug" => tracing::debug!(plugin, stream, "{message}"),
                "info" => tracing::info!(plugin, stream, "{message}"),
                "warn" => tracing::warn!(plugin, stream, "{message}"),
                _ => tracing::error!(plugin, stream, "{message}"),
            }
            return;
        };
        if !sink.admit(&self.plugin) {
            return;
        }
        let batch = lock(&self.batch).clone();
        let about = batch.as_deref().zip(index).and_then(|(b, i)| b.message(i));
        let entry = LogEntry {
            time_ms: crate::store::now_ms(),
            level: level.to_owned(),
            plugin: self.plugin.to_string(),
            version: self.version.to_string(),
            stream: stream.to_owned(),
            topic: batch.as_ref().map(|b| b.topic().to_owned()),
            message: cut(message),
            index,
            trace_id: about.as_ref().and_then(|a| a.0.clone()),
            offset: about.and_then(|a| a.1),
        };
        sink.send(entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(plugin: &str) -> LogEntry {
        LogEntry {
            time_ms: 0,
            level: "info".into(),
            plugin: plugin.into(),
            version: "v".into(),
            stream: "log".into(),
            topic: None,
            message: "m".into(),
            index: None,
            trace_id: None,
            offset: None,
        }
    }

    #[test]
    fn each_plugin_writes_its_burst_then_drops_and_counts() {
        // A rate of 1 line a second: the test's few microseconds add none.
        let logs = PluginLogs::new(1, 5);
        let written = (0..50).filter(|_| logs.admit("noisy")).count();
        assert_eq!(written, 5);
        assert_eq!(logs.counts("noisy"), (5, 45));
        // Another plugin has a bucket of its own.
        assert!(logs.admit("quiet"));
        logs.send(entry("quiet"));
        assert_eq!(logs.counts("quiet"), (1, 0));
    }

    #[test]
    fn a_rate_of_zero_drops_every_line_and_long_lines_are_cut() {
        let logs = PluginLogs::new(0, 1000);
        assert!(!logs.admit("p"));
        assert_eq!(logs.counts("p"), (0, 1));
        let long = "é".repeat(MAX_LINE);
        let cut = cut(long);
        assert!(cut.len() <= MAX_LINE && cut.len() > MAX_LINE - 2);
    }

    #[test]
    fn lines_past_a_full_queue_are_counted_as_dropped() {
        let logs = PluginLogs::new(1, 10_000);
        for _ in 0..QUEUE_LINES + 10 {
            assert!(logs.admit("p"));
            logs.send(entry("p"));
        }
        assert_eq!(logs.counts("p"), (QUEUE_LINES as u64, 10));
    }
}
