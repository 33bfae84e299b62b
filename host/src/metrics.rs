//! Prometheus metrics of the broker, encoded by `prometheus-client`.
//!
//! Counters on the hot paths are plain atomics behind `prometheus-client`
//! handles (a topic keeps its own handles, so an append does no look-up).
//! Everything that is state rather than events (group lag and pending,
//! plugin status, topic sizes) is read at scrape time from the broker, so
//! the broker keeps one source of truth.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels: `[("topic", name)]` and the like.
type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Counters of one topic, held by the topic.
#[derive(Debug, Clone, Default)]
pub struct TopicCounters {
    /// Messages stored.
    pub messages_in: Counter,
    /// Payload bytes stored.
    pub bytes_in: Counter,
    /// 1 while the topic refuses writes after a storage failure.
    pub storage_failed: Gauge,
    /// Writes refused because the disk was full.
    pub storage_full: Counter,
    /// De-duplication ids forgotten early for the memory cap.
    pub dedup_evicted: Counter,
}

impl TopicCounters {
    /// Counts a stored batch.
    pub fn stored(&self, messages: usize, bytes: usize) {
        self.messages_in.inc_by(messages as u64);
        self.bytes_in.inc_by(bytes as u64);
    }

    /// The topic refuses writes until a restart (a failed fsync).
    pub fn storage_failed(&self) {
        self.storage_failed.set(1);
    }

    /// A write was refused because the disk was full.
    pub fn storage_full(&self) {
        self.storage_full.inc();
    }
}

/// What is held in memory for one subscriber (its feed's queue and the
/// batches its subscription holds), read at scrape time.
pub trait SubscriberQueue: Send + Sync {
    /// Messages and bytes held now.
    fn held(&self) -> (usize, usize);
}

/// The queues of live subscribers, as weak references: a subscription
/// that ends takes its queue with it.
#[derive(Default)]
struct SubscriberQueues {
    queues: Mutex<Vec<Weak<dyn SubscriberQueue>>>,
    /// Queues alive at the last clean-up; the next one comes at twice as
    /// many entries, so subscribing costs O(1) amortised.
    live_at_cleanup: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for SubscriberQueues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriberQueues").finish_non_exhaustive()
    }
}

impl SubscriberQueues {
    fn add(&self, queue: Weak<dyn SubscriberQueue>) {
        use std::sync::atomic::Ordering;
        let mut queues = crate::sync::lock(&self.queues);
        queues.push(queue);
        if queues.len() >= 2 * self.live_at_cleanup.load(Ordering::Relaxed).max(64) {
            queues.retain(|q| q.strong_count() > 0);
            self.live_at_cleanup.store(queues.len(), Ordering::Relaxed);
        }
    }

    /// (messages, bytes, largest bytes of one subscriber), summed over the
    /// live queues.
    fn held(&self) -> (usize, usize, usize) {
        let live: Vec<Arc<dyn SubscriberQueue>> = {
            let mut queues = crate::sync::lock(&self.queues);
            queues.retain(|q| q.strong_count() > 0);
            queues.iter().filter_map(Weak::upgrade).collect()
        };
        live.iter()
            .map(|q| q.held())
            .fold((0, 0, 0), |(m, b, most), (qm, qb)| {
                (m + qm, b + qb, most.max(qb))
            })
    }
}

/// The broker's state at scrape time, gathered by the admin listener.
#[derive(Debug, Default)]
pub struct State {
    /// Every topic.
    pub topics: Vec<sluice_proto::TopicInfo>,
    /// Every consumer group.
    pub groups: Vec<sluice_proto::GroupInfo>,
    /// Every loaded plugin.
    pub plugins: Vec<sluice_proto::PluginStatus>,
    /// Spans exported, dropped on a full queue, and failed to export.
    pub spans: [u64; 3],
    /// Published messages and estimated bytes the event record holds.
    pub record: [u64; 2],
    /// Plugin canaries rolled back automatically.
    pub rollbacks: u64,
}

/// The broker's event counters.
#[derive(Debug)]
pub struct Metrics {
    messages_in: Family<Labels, Counter>,
    bytes_in: Family<Labels, Counter>,
    storage_failed: Family<Labels, Gauge>,
    storage_full: Family<Labels, Counter>,
    dedup_evicted: Family<Labels, Counter>,
    messages_out: Family<Labels, Counter>,
    bytes_out: Family<Labels, Counter>,
    /// `messages_out` summed over topics (the console's deliver rate).
    delivered_total: Counter,
    publish_latency: Histogram,
    publish_errors: Counter,
    connections: Gauge,
    connections_total: Counter,
    connections_refused: Counter,
    auth_failures: Family<Labels, Counter>,
    denials: Family<Labels, Counter>,
    limits_hit: Family<Labels, Counter>,
    subscriber_queues: SubscriberQueues,
    subscriber_dropped: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            messages_in: Family::default(),
            bytes_in: Family::default(),
            storage_failed: Family::default(),
            storage_full: Family::default(),
            dedup_evicted: Family::default(),
            messages_out: Family::default(),
            bytes_out: Family::default(),
            delivered_total: Counter::default(),
            // 50 µs .. ~1.6 s
            publish_latency: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            publish_errors: Counter::default(),
            connections: Gauge::default(),
            connections_total: Counter::default(),
            connections_refused: Counter::default(),
            auth_failures: Family::default(),
            denials: Family::default(),
            limits_hit: Family::default(),
            subscriber_queues: SubscriberQueues::default(),
            subscriber_dropped: Family::default(),
        }
    }
}

/// Decrements the open-connection gauge when dropped.
pub struct ConnectionGuard(Gauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    /// The counters a topic keeps (created, or found again after a restart
    /// of the topic object).
    pub fn topic(&self, topic: &str) -> TopicCounters {
        let l = labels(&[("topic", topic)]);
        TopicCounters {
            messages_in: self.messages_in.get_or_create_owned(&l),
            bytes_in: self.bytes_in.get_or_create_owned(&l),
            storage_failed: self.storage_failed.get_or_create_owned(&l),
            storage_full: self.storage_full.get_or_create_owned(&l),
            dedup_evicted: self.dedup_evicted.get_or_create_owned(&l),
        }
    }

    /// Forgets a deleted topic's series.
    pub fn topic_deleted(&self, topic: &str) {
        let l = labels(&[("topic", topic)]);
        for family in [
            &self.messages_in,
            &self.bytes_in,
            &self.messages_out,
            &self.bytes_out,
            &self.storage_full,
            &self.dedup_evicted,
        ] {
            family.remove(&l);
        }
        self.storage_failed.remove(&l);
    }

    /// Counts messages sent to a subscriber or group member.
    pub fn delivered(&self, topic: &str, messages: usize, bytes: usize) {
        let l = labels(&[("topic", topic)]);
        self.messages_out.get_or_create(&l).inc_by(messages as u64);
        self.bytes_out.get_or_create(&l).inc_by(bytes as u64);
        self.delivered_total.inc_by(messages as u64);
    }

    /// Messages delivered since start, over all topics.
    pub fn delivered_total(&self) -> u64 {
        self.delivered_total.get()
    }

    /// Client connections open now.
    pub fn open_connections(&self) -> i64 {
        self.connections.get()
    }

    /// Publish requests that failed since start.
    pub fn publish_errors(&self) -> u64 {
        self.publish_errors.get()
    }

    /// Records one publish request: receipt to ack.
    pub fn published(&self, took: Duration, ok: bool) {
        self.publish_latency.observe(took.as_secs_f64());
        if !ok {
            self.publish_errors.inc();
        }
    }

    /// Counts an accepted connection until the guard drops.
    pub fn connection(&self) -> ConnectionGuard {
        self.connections.inc();
        self.connections_total.inc();
        ConnectionGuard(self.connections.clone())
    }

    /// Counts a connection refused at a limit.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// Counts a client refused at authentication (`reason`: `no_credentials`,
    /// `bad_token`, `bad_certificate`, `unknown_principal`, `mismatch`).
    pub fn auth_failed(&self, reason: &str) {
        self.auth_failures
            .get_or_create(&labels(&[("reason", reason)]))
            .inc();
    }

    /// Counts a request refused by the principal's permissions (`action`:
    /// `publish`, `route`, `subscribe`, `admin`).
    pub fn denied(&self, action: &str) {
        self.denials
            .get_or_create(&labels(&[("action", action)]))
            .inc();
    }

    /// Counts a request or connection refused at a configured limit.
    pub fn limit_hit(&self, limit: &str) {
        self.limits_hit
            .get_or_create(&labels(&[("limit", limit)]))
            .inc();
    }

    /// Reads what `queue` holds at each scrape, for as long as it lives.
    pub fn watch_subscriber_queue(&self, queue: Weak<dyn SubscriberQueue>) {
        self.subscriber_queues.add(queue);
    }

    /// Counts messages a slow subscriber had no room for (`subscription`:
    /// `live`, lost and reported to it; `replaying`, read back from the log).
    pub fn subscriber_dropped(&self, subscription: &str, messages: u64) {
        self.subscriber_dropped
            .get_or_create(&labels(&[("subscription", subscription)]))
            .inc_by(messages);
    }

    /// The Prometheus (OpenMetrics) text of the counters and of `state`.
    pub fn render(self: &Arc<Self>, state: &State) -> String {
        let mut registry = Registry::with_prefix("sluice");
        registry.register(
            "messages_in",
            "Messages stored, per topic",
            self.messages_in.clone(),
        );
        registry.register(
            "bytes_in",
            "Payload bytes stored, per topic",
            self.bytes_in.clone(),
        );
        registry.register(
            "topic_storage_failed",
            "1 while a topic refuses writes after a failed fsync (until a restart recovers it)",
            self.storage_failed.clone(),
        );
        registry.register(
            "storage_full",
            "Publishes refused because the disk was full, per topic",
            self.storage_full.clone(),
        );
        registry.register(
            "dedup_evicted",
            "De-duplication ids forgotten before their window ended, for the memory cap, per topic",
            self.dedup_evicted.clone(),
        );
        registry.register(
            "messages_out",
            "Messages sent to subscribers and group members, per topic",
            self.messages_out.clone(),
        );
        registry.register(
            "bytes_out",
            "Payload bytes sent to subscribers and group members, per topic",
            self.bytes_out.clone(),
        );
        registry.register(
            "publish_latency_seconds",
            "Publish requests from receipt to ack (stored, and fsynced under fsync=always)",
            self.publish_latency.clone(),
        );
        registry.register(
            "publish_errors",
            "Publish requests answered with an error",
            self.publish_errors.clone(),
        );
        registry.register(
            "connections",
            "Open client connections",
            self.connections.clone(),
        );
        registry.register(
            "connections_accepted",
            "Client connections accepted",
            self.connections_total.clone(),
        );
        registry.register(
            "connections_refused",
            "Client connections refused at limits.max_connections",
            self.connections_refused.clone(),
        );
        registry.register(
            "auth_failures",
            "Clients refused at authentication, per reason",
            self.auth_failures.clone(),
        );
        registry.register(
            "permission_denials",
            "Requests refused by the principal's permissions, per action",
            self.denials.clone(),
        );
        registry.register(
            "limits_hit",
            "Requests and connections refused at a configured limit, per limit",
            self.limits_hit.clone(),
        );

        registry.register(
            "subscriber_dropped",
            "Messages dropped for subscribers past limits.subscriber_buffer_messages or _bytes: lost for live subscriptions (and reported to them), read back from the log for replaying ones",
            self.subscriber_dropped.clone(),
        );

        let [exported, dropped, failed] = state.spans;
        for (name, help, value) in [
            (
                "telemetry_spans_exported",
                "Spans of traced messages the OTLP collector accepted",
                exported,
            ),
            (
                "telemetry_spans_dropped",
                "Spans dropped because telemetry.queue_spans were waiting for export",
                dropped,
            ),
            (
                "telemetry_spans_failed",
                "Spans whose export failed (collector down, refused or slow)",
                failed,
            ),
            (
                "plugin_rollbacks",
                "Plugin canaries rolled back automatically",
                state.rollbacks,
            ),
        ] {
            let counter = Counter::<u64>::default();
            counter.inc_by(value);
            registry.register(name, help, counter);
        }
        let [messages, bytes] = state.record;
        for (name, help, value) in [
            (
                "trace_record_messages",
                "Published messages the event record behind `sluice trace` covers",
                messages,
            ),
            (
                "trace_record_bytes",
                "Estimated memory of the event record behind `sluice trace`",
                bytes,
            ),
        ] {
            let gauge = Gauge::<i64>::default();
            gauge.set(value as i64);
            registry.register(name, help, gauge);
        }

        // State, read now.
        let (queued_messages, queued_bytes, most_bytes) = self.subscriber_queues.held();
        for (name, help, value) in [
            (
                "subscriber_queued_messages",
                "Messages held in memory for subscribers (committed, not yet handed to their streams)",
                queued_messages,
            ),
            (
                "subscriber_queued_bytes",
                "Bytes held in memory for subscribers (key, headers, id and payload, plus 64 per message)",
                queued_bytes,
            ),
            (
                "subscriber_queued_bytes_max",
                "Bytes held in memory for the subscriber that holds the most",
                most_bytes,
            ),
        ] {
            let g = Gauge::<i64>::default();
            g.set(i64::try_from(value).unwrap_or(i64::MAX));
            registry.register(name, help, g);
        }
        let topic_messages = Family::<Labels, Gauge>::default();
        let topic_bytes = Family::<Labels, Gauge>::default();
        for t in &state.topics {
            let l = labels(&[("topic", &t.name)]);
            topic_messages.get_or_create(&l).set(t.messages as i64);
            topic_bytes.get_or_create(&l).set(t.bytes as i64);
        }
        registry.register(
            "topic_messages",
            "Messages retained, per topic",
            topic_messages,
        );
        registry.register("topic_bytes", "Bytes on disk, per topic", topic_bytes);

        let lag = Family::<Labels, Gauge>::default();
        let pending = Family::<Labels, Gauge>::default();
        let members = Family::<Labels, Gauge>::default();
        let redeliveries = Family::<Labels, Counter>::default();
        let dead_letters = Family::<Labels, Counter>::default();
        for g in &state.groups {
            let gl = labels(&[("group", &g.name)]);
            members.get_or_create(&gl).set(g.members.len() as i64);
            redeliveries.get_or_create(&gl).inc_by(g.redeliveries);
            dead_letters.get_or_create(&gl).inc_by(g.dead_lettered);
            for t in &g.topics {
                let l = labels(&[("group", &g.name), ("topic", &t.topic)]);
                lag.get_or_create(&l).set(t.lag as i64);
                pending.get_or_create(&l).set(t.pending as i64);
            }
        }
        registry.register(
            "group_lag",
            "Messages not yet delivered, per group and topic",
            lag,
        );
        registry.register(
            "group_pending",
            "Delivered and not settled, per group and topic",
            pending,
        );
        registry.register("group_members", "Connected members, per group", members);
        registry.register(
            "group_redeliveries",
            "Redeliveries since the broker started, per group",
            redeliveries,
        );
        registry.register(
            "group_dead_letters",
            "Messages moved to the dead-letter topic since the broker started, per group",
            dead_letters,
        );

        let calls = Family::<Labels, Counter>::default();
        let messages = Family::<Labels, Counter>::default();
        let errors = Family::<Labels, Counter>::default();
        let busy = Family::<Labels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
        let latency = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let reloads = Family::<Labels, Counter>::default();
        let refused = Family::<Labels, Gauge>::default();
        let log_lines = Family::<Labels, Counter>::default();
        let logs_dropped = Family::<Labels, Counter>::default();
        for p in &state.plugins {
            let l = labels(&[("plugin", &p.name)]);
            log_lines.get_or_create(&l).inc_by(p.log_lines);
            logs_dropped.get_or_create(&l).inc_by(p.logs_dropped);
            calls.get_or_create(&l).inc_by(p.calls);
            messages.get_or_create(&l).inc_by(p.messages);
            errors.get_or_create(&l).inc_by(p.errors);
            busy.get_or_create(&l).inc_by(p.busy_us as f64 / 1e6);
            for (q, us) in [("0.5", p.p50_us), ("0.99", p.p99_us)] {
                let ql = labels(&[("plugin", &p.name), ("quantile", q)]);
                latency.get_or_create(&ql).set(us as f64 / 1e6);
            }
            reloads
                .get_or_create(&l)
                .inc_by(p.versions.saturating_sub(1));
            refused
                .get_or_create(&l)
                .set(i64::from(p.refused.is_some()));
        }
        registry.register(
            "plugin_log_lines",
            "Lines plugins wrote to _sluice.logs.<plugin>",
            log_lines,
        );
        registry.register(
            "plugin_logs_dropped",
            "Plugin log lines dropped past plugins.log_rate or a full queue",
            logs_dropped,
        );
        registry.register(
            "plugin_calls",
            "Plugin handle calls (one per batch), current version",
            calls,
        );
        registry.register(
            "plugin_messages",
            "Messages handled by the plugin, current version",
            messages,
        );
        registry.register(
            "plugin_errors",
            "Plugin calls that failed (trap, timeout, out of memory, wrong outcomes), current version",
            errors,
        );
        registry.register(
            "plugin_busy_seconds",
            "Time spent in plugin calls, current version",
            busy,
        );
        registry.register(
            "plugin_batch_latency_seconds",
            "Plugin batch latency quantiles (bucket upper bounds), current version",
            latency,
        );
        registry.register(
            "plugin_reloads",
            "New versions taken into service since the broker started",
            reloads,
        );
        registry.register(
            "plugin_refused",
            "1 while the last new version of the plugin was refused",
            refused,
        );

        if let Some(rss) = resident_memory_bytes() {
            let g = Gauge::<i64>::default();
            g.set(rss as i64);
            registry.register(
                "process_resident_memory_bytes",
                "Resident memory of the broker process",
                g,
            );
        }

        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &registry);
        out
    }
}

/// Resident memory of this process (Linux: `/proc/self/statm`).
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
