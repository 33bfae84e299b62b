//! The fault scenarios, each on a cluster of its own under the steady
//! load of [`Load`](super::load::Load), each ending with the history
//! checker's verdict and a summary line. The stream's leader is the
//! server a fault hurts most: it orders and acknowledges every write.

use std::time::Duration;

use sluice_tests::Network;

use super::run::Run;

/// Publishes acked before the first fault, and after each step: two
/// seconds of load or so.
const STEADY: u64 = 200;
/// How long a server stays paused: past nats-server's longest election
/// timeout (9 s) and a vote, so the others elect a new leader meanwhile.
const PAUSE: Duration = Duration::from_secs(12);
/// How long a server stays cut off: past its lost-quorum interval (10 s),
/// so a leader on the cut side steps down before it is back.
const CUT: Duration = Duration::from_secs(12);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streams_leader_sigkilled_and_restarted_loses_no_acked_message() -> anyhow::Result<()> {
    let mut run = Run::start("stream leader SIGKILL", Network::Loopback).await?;
    run.progress(STEADY, "before the fault").await;
    let leader = run.stream_leader().await?;
    let name = run.cluster.nats.name(leader).to_owned();
    let clients = run.clients_of(leader).await;
    run.mark(format!("SIGKILL {name} (stream leader, {clients})"));
    run.cluster.nats.kill(leader)?;
    run.new_leader(leader).await;
    run.progress(STEADY, "with the old stream leader dead")
        .await;
    run.cluster.nats.restart(leader).await?;
    run.mark(format!("{name} restarted"));
    run.progress(STEADY, "after the restart").await;
    run.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sluice_node_sigkilled_in_turn_its_clients_fail_over_and_nothing_is_lost(
) -> anyhow::Result<()> {
    let mut run = Run::start("sluice node SIGKILL", Network::Loopback).await?;
    run.progress(STEADY, "before the fault").await;
    // The publisher and a member are on node-0 first; then everyone is on
    // node-1, the subscriber since the start.
    for (killed, other) in [(0, 1), (1, 0)] {
        run.mark(format!("SIGKILL node-{killed}"));
        run.cluster.nodes[killed].kill()?;
        run.progress(
            STEADY,
            &format!("with node-{killed} dead, through node-{other}"),
        )
        .await;
        run.cluster.nodes[killed].restart().await?;
        run.mark(format!("node-{killed} restarted"));
        run.progress(STEADY / 2, &format!("after node-{killed} restarted"))
            .await;
    }
    run.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streams_leader_paused_past_an_election_loses_no_acked_message() -> anyhow::Result<()> {
    let mut run = Run::start("stream leader SIGSTOP", Network::Loopback).await?;
    run.progress(STEADY, "before the fault").await;
    let leader = run.stream_leader().await?;
    let name = run.cluster.nats.name(leader).to_owned();
    let clients = run.clients_of(leader).await;
    run.mark(format!("SIGSTOP {name} (stream leader, {clients})"));
    run.cluster.nats.pause(leader)?;
    run.hold(PAUSE, leader).await;
    run.cluster.nats.resume(leader)?;
    run.mark(format!("SIGCONT {name} after {PAUSE:?}"));
    run.progress(STEADY, "after the pause").await;
    run.finish().await
}

/// Skipped where network namespaces cannot be made (not root, no
/// iproute2): it prints `SKIPPED:` and why, and passes without a verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streams_leader_cut_off_by_a_partition_loses_no_acked_message_or_skips_saying_why(
) -> anyhow::Result<()> {
    if let Some(why) = sluice_tests::namespaces_unavailable() {
        eprintln!("SKIPPED: the partition scenario needs network namespaces: {why}");
        return Ok(());
    }
    let mut run = Run::start("stream leader partitioned", Network::Namespaces).await?;
    run.progress(STEADY, "before the fault").await;
    let leader = run.stream_leader().await?;
    let name = run.cluster.nats.name(leader).to_owned();
    let clients = run.clients_of(leader).await;
    run.mark(format!("cut {name} off (stream leader, {clients})"));
    run.cluster.nats.cut(leader)?;
    run.hold(CUT, leader).await;
    run.cluster.nats.heal(leader)?;
    run.mark(format!("{name} joined again after {CUT:?}"));
    run.progress(STEADY, "after the partition healed").await;
    run.finish().await
}
