//! What a comparison runs: each figure's [`Key`], and the [`Stage`]s that
//! measure them, one broker at a time. The NATS side runs first, then
//! sluice under each fsync policy, then the pipeline rows (a broker
//! embedded in `sluice bench`).

use std::fmt;

use super::servers::NatsMode;

/// Payload sizes.
pub const SMALL: u32 = 128;
pub const KIB: u32 = 1024;

/// Subscribers of the fan-out rows.
pub const FAN_OUT: u32 = 10;

/// The open-loop rate of the latency rows (messages per second).
pub const LATENCY_RATE: u32 = 5_000;

/// Idle connections the memory row holds.
pub const CONNECTIONS: u32 = 1_000;

/// JetStream's sync setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Sync {
    /// The default: acked before it is fsynced.
    Default,
    /// `sync_interval: always`: fsynced before it is acked.
    Always,
}

/// sluice's `storage.fsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fsync {
    Always,
    Interval,
    Never,
}

impl Fsync {
    /// As the config and `sluice bench --fsync` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::Interval => "interval",
            Fsync::Never => "never",
        }
    }
}

/// The variants of `sluice bench pipeline`, in the order it reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stages {
    None,
    PassThrough,
    Orders,
}

/// One figure of the comparison (the runs behind one cell).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    /// Core NATS, one publisher to `subscribers`, received.
    NatsCore {
        tls: bool,
        size: u32,
        subscribers: u32,
    },
    /// JetStream async publish, acked.
    NatsPublish { sync: Sync, size: u32 },
    /// JetStream acked publish at [`LATENCY_RATE`], 1 KiB.
    NatsLatency { sync: Sync },
    /// JetStream pull consumer with explicit acks, 1 KiB, default sync.
    NatsConsume { workers: u32 },
    /// `sluice bench publish`.
    SluicePublish { fsync: Fsync, size: u32 },
    /// `sluice bench pubsub`, fsync=never.
    SluicePubsub { size: u32, subscribers: u32 },
    /// `sluice bench queue`, 1 KiB.
    SluiceConsume { fsync: Fsync, workers: u32 },
    /// `sluice bench latency` at [`LATENCY_RATE`], 1 KiB.
    SluiceLatency { fsync: Fsync },
    /// `sluice bench connections`: [`CONNECTIONS`] idle, fsync=always.
    SluiceConnections,
    /// `sluice bench pipeline --embedded --fsync never`.
    Pipeline { stages: Stages, size: u32 },
    /// Core NATS request-reply, 128 B, `conns` requester connections.
    NatsRequest { tls: bool, conns: u32 },
    /// `sluice bench request`, 128 B, `conns` requester connections.
    SluiceRequest { conns: u32 },
}

/// Requester connections of the request-reply rows.
pub const REQUESTERS: [u32; 2] = [1, 16];

/// `1 worker`, `4 workers`.
pub fn count(n: u32, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        n => format!("{n} {what}s"),
    }
}

/// `128 B`, `1 KiB`.
pub fn bytes(size: u32) -> String {
    match size {
        KIB => "1 KiB".into(),
        n => format!("{n} B"),
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sync = |s: Sync| match s {
            Sync::Default => "default sync",
            Sync::Always => "sync_interval always",
        };
        match *self {
            Key::NatsCore {
                tls,
                size,
                subscribers,
            } => {
                let port = if tls { "TLS" } else { "plaintext" };
                write!(
                    f,
                    "NATS core {port}, pub/sub 1:{subscribers}, {}",
                    bytes(size)
                )
            }
            Key::NatsPublish { sync: s, size } => {
                write!(f, "JetStream {}, async publish, {}", sync(s), bytes(size))
            }
            Key::NatsLatency { sync: s } => write!(
                f,
                "JetStream {}, acked publish at {LATENCY_RATE}/s, 1 KiB",
                sync(s)
            ),
            Key::NatsConsume { workers } => {
                write!(
                    f,
                    "JetStream pull consume, {}, 1 KiB",
                    count(workers, "worker")
                )
            }
            Key::SluicePublish { fsync, size } => {
                write!(f, "sluice fsync={}, publish, {}", fsync.name(), bytes(size))
            }
            Key::SluicePubsub { size, subscribers } => {
                write!(f, "sluice pub/sub 1:{subscribers}, {}", bytes(size))
            }
            Key::SluiceConsume { fsync, workers } => write!(
                f,
                "sluice fsync={}, consume, {}, 1 KiB",
                fsync.name(),
                count(workers, "worker")
            ),
            Key::SluiceLatency { fsync } => write!(
                f,
                "sluice fsync={}, acked publish at {LATENCY_RATE}/s, 1 KiB",
                fsync.name()
            ),
            Key::SluiceConnections => write!(f, "sluice, {CONNECTIONS} idle connections"),
            Key::NatsRequest { tls, conns } => {
                let port = if tls { "TLS" } else { "plaintext" };
                write!(
                    f,
                    "NATS core {port}, request-reply, {}, 128 B",
                    count(conns, "connection")
                )
            }
            Key::SluiceRequest { conns } => {
                write!(
                    f,
                    "sluice request-reply, {}, 128 B",
                    count(conns, "connection")
                )
            }
            Key::Pipeline { stages, size } => {
                let what = match stages {
                    Stages::None => "no plugin",
                    Stages::PassThrough => "one pass-through stage",
                    Stages::Orders => "the order pipeline",
                };
                write!(f, "sluice pipeline, {what}, {}", bytes(size))
            }
        }
    }
}

/// Where a stage's scenarios run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broker {
    /// nats-server in a mode; the harness drives it.
    Nats(NatsMode),
    /// `sluice serve` under a policy; `sluice bench` drives it.
    Sluice(Fsync),
    /// A broker inside `sluice bench --embedded` (the pipeline rows).
    Embedded,
}

/// One scenario: the figures its output lines are, in order, and the
/// arguments of the harness or of `sluice bench` (without the timing
/// flags, which [`Job::timed`] scenarios get).
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// What the progress lines call it.
    pub name: String,
    pub keys: Vec<Key>,
    pub args: Vec<String>,
    /// Run with `--warmup` and `--duration`.
    pub timed: bool,
    /// Each run gets a broker of its own, started for it: the job reads
    /// the broker's memory, which the runs before it would have grown.
    pub fresh_broker: bool,
}

fn job(key: Key, args: &[&str]) -> Job {
    Job {
        name: key.to_string(),
        keys: vec![key],
        args: args.iter().map(|a| a.to_string()).collect(),
        timed: true,
        fresh_broker: false,
    }
}

/// One broker's scenarios.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub broker: Broker,
    pub jobs: Vec<Job>,
}

/// The NATS core pub/sub jobs on a server with or without TLS.
fn core_jobs(tls: bool) -> Vec<Job> {
    let fan = FAN_OUT.to_string();
    let core = |size: u32, subscribers: u32| Key::NatsCore {
        tls,
        size,
        subscribers,
    };
    let mut jobs = vec![
        job(core(SMALL, 1), &["core-pubsub", "128", "0"]),
        job(core(KIB, 1), &["core-pubsub", "1024", "0"]),
        job(
            core(KIB, FAN_OUT),
            &["core-pubsub", "1024", "0", "--subscribers", &fan],
        ),
    ];
    for conns in REQUESTERS {
        let key = Key::NatsRequest { tls, conns };
        jobs.push(job(key, &["core-request", "128", "0", &conns.to_string()]));
    }
    jobs
}

/// The JetStream publish and latency jobs under `sync`.
fn jetstream_jobs(sync: Sync) -> Vec<Job> {
    let rate = LATENCY_RATE.to_string();
    vec![
        job(
            Key::NatsPublish { sync, size: KIB },
            &["js-publish", "1024", "0"],
        ),
        job(
            Key::NatsPublish { sync, size: SMALL },
            &["js-publish", "128", "0"],
        ),
        job(
            Key::NatsLatency { sync },
            &["js-latency", "1024", "0", &rate],
        ),
    ]
}

/// The durable jobs of sluice under `fsync`.
fn sluice_durable_jobs(fsync: Fsync) -> Vec<Job> {
    let rate = LATENCY_RATE.to_string();
    let publish = |size: u32| {
        let key = Key::SluicePublish { fsync, size };
        job(key, &["publish", "--size", &size.to_string()])
    };
    let consume = |workers: u32| {
        let key = Key::SluiceConsume { fsync, workers };
        let w = workers.to_string();
        job(key, &["queue", "--size", "1024", "--workers", &w])
    };
    let latency = job(
        Key::SluiceLatency { fsync },
        &["latency", "--size", "1024", "--rate", &rate],
    );
    vec![
        publish(KIB),
        publish(SMALL),
        consume(1),
        consume(4),
        latency,
    ]
}

/// Everything a comparison runs, in order.
pub fn stages() -> Vec<Stage> {
    let mut nats_default = core_jobs(false);
    nats_default.extend(jetstream_jobs(Sync::Default));
    for workers in [1, 4] {
        let w = workers.to_string();
        let key = Key::NatsConsume { workers };
        nats_default.push(job(key, &["js-consume", "1024", "0", &w]));
    }
    let connections = Job {
        name: Key::SluiceConnections.to_string(),
        keys: vec![Key::SluiceConnections],
        args: vec![
            "connections".into(),
            "--connections".into(),
            CONNECTIONS.to_string(),
        ],
        timed: false,
        fresh_broker: true,
    };
    let mut always = vec![connections];
    always.extend(sluice_durable_jobs(Fsync::Always));
    let fan = FAN_OUT.to_string();
    let pubsub = |size: u32, subscribers: u32| Key::SluicePubsub { size, subscribers };
    let publish = |size: u32| Key::SluicePublish {
        fsync: Fsync::Never,
        size,
    };
    let mut never = vec![
        job(publish(KIB), &["publish", "--size", "1024"]),
        job(publish(SMALL), &["publish", "--size", "128"]),
        job(pubsub(SMALL, 1), &["pubsub", "--size", "128"]),
        job(pubsub(KIB, 1), &["pubsub", "--size", "1024"]),
        job(
            pubsub(KIB, FAN_OUT),
            &["pubsub", "--size", "1024", "--subscribers", &fan],
        ),
    ];
    for conns in REQUESTERS {
        let key = Key::SluiceRequest { conns };
        let producers = conns.to_string();
        never.push(job(
            key,
            &["request", "--size", "128", "--producers", &producers],
        ));
    }
    let pipeline = |size: u32| {
        let keys = [Stages::None, Stages::PassThrough, Stages::Orders]
            .map(|stages| Key::Pipeline { stages, size });
        let name = format!(
            "sluice pipeline (no plugin, pass-through, orders), {}",
            bytes(size)
        );
        let size = size.to_string();
        let args = [
            "pipeline",
            "--embedded",
            "--fsync",
            "never",
            "--size",
            &size,
        ];
        Job {
            name,
            keys: keys.to_vec(),
            ..job(keys[0], &args)
        }
    };
    vec![
        Stage {
            broker: Broker::Nats(NatsMode::Default),
            jobs: nats_default,
        },
        Stage {
            broker: Broker::Nats(NatsMode::Tls),
            jobs: core_jobs(true),
        },
        Stage {
            broker: Broker::Nats(NatsMode::SyncAlways),
            jobs: jetstream_jobs(Sync::Always),
        },
        Stage {
            broker: Broker::Sluice(Fsync::Always),
            jobs: always,
        },
        Stage {
            broker: Broker::Sluice(Fsync::Interval),
            jobs: sluice_durable_jobs(Fsync::Interval),
        },
        Stage {
            broker: Broker::Sluice(Fsync::Never),
            jobs: never,
        },
        Stage {
            broker: Broker::Embedded,
            jobs: vec![pipeline(SMALL), pipeline(KIB)],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_figure_is_measured_once() {
        let keys: Vec<Key> = stages()
            .iter()
            .flat_map(|s| &s.jobs)
            .flat_map(|j| j.keys.clone())
            .collect();
        let mut unique = keys.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), keys.len(), "a key is measured twice");
        assert_eq!(keys.len(), 18 + 18 + 6);
    }

    #[test]
    fn keys_read_as_their_rows() {
        let key = Key::NatsCore {
            tls: true,
            size: KIB,
            subscribers: FAN_OUT,
        };
        assert_eq!(key.to_string(), "NATS core TLS, pub/sub 1:10, 1 KiB");
        let key = Key::SluicePublish {
            fsync: Fsync::Interval,
            size: SMALL,
        };
        assert_eq!(key.to_string(), "sluice fsync=interval, publish, 128 B");
    }
}
