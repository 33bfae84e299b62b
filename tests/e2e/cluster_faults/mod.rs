//! Fault tests of cluster mode (issue #16, deliverable 7): a cluster of 3
//! nats-servers (JetStream R3, `sync_interval: always`) and 2 sluice nodes
//! (the `sluice-under-test` binary, killable), under a steady load: one
//! publisher (keys, ids), one replaying subscriber and one group of two
//! members, each client given both nodes' addresses and the members on
//! different nodes. A fault is made while the load runs; after it the
//! load goes on, drains, and the history checker (`sluice_tests::history`,
//! `check`) judges every operation the clients recorded against what the
//! topic and the group hold at the end:
//!
//! - every acked publish is in the topic exactly once, offsets are dense,
//!   each key's messages keep their publishing order;
//! - the subscription received every offset once, in order, without a gap;
//! - every message is acked by the group or dead-lettered, once.
//!
//! The faults (`faults.rs`): SIGKILL of the stream's JetStream leader and
//! its restart; SIGKILL of each sluice node in turn while its clients use
//! it; SIGSTOP of the stream's leader for longer than an election takes;
//! the stream's leader cut off from the others with network namespaces
//! (skipped, saying so, where namespaces cannot be made).
//!
//! One scenario runs at a time (their clusters would starve each other on
//! a 2-core machine and call false elections); each prints a summary line.
//!
//! # Layout
//!
//! - `cluster.rs`: [`FaultCluster`](cluster::FaultCluster), the NATS
//!   cluster and the two sluice nodes.
//! - `load.rs`: [`Load`](load::Load), the clients and what they record.
//! - `run.rs`: [`Run`](run::Run), one scenario from start to verdict:
//!   progress between faults, drain, the final reads, the check.
//! - `faults.rs`: the scenarios.

mod cluster;
mod delayed;
mod faults;
mod load;
mod run;

/// The topic under load.
const TOPIC: &str = "faults.orders";
/// The consumer group.
const GROUP: &str = "faults-workers";
