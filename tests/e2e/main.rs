//! End-to-end tests of sluice: a real broker (in process, or the
//! `sluice-under-test` binary as a child process), the real client over QUIC
//! on loopback, temporary data directories. One module per area.

mod admin;
mod bad_input;
mod bench;
mod cluster;
mod cluster_faults;
mod console;
mod crash;
mod dedup;
mod delayed;
mod failover;
mod following;
mod groups;
mod metrics;
mod nats_harness;
mod pipelines;
mod plugin_sdk;
mod plugin_state;
mod pubsub;
mod readme;
mod regressions;
mod reload;
mod replay;
mod request_reply;
mod retention;
mod rollout;
mod security;
mod shutdown;
mod slow_subscriber;
