//! The NATS cluster harness ([`NatsCluster`]) against the real nats-server
//! 2.15 binary: the cluster forms with a meta leader and the settings it
//! was given, a paused server answers nothing until resumed, a killed
//! leader is replaced and rejoins after a restart, and a replicated stream
//! keeps its messages when its leader is killed.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream;
use sluice_tests::{bounded, wait_until, NatsCluster, NatsOptions};

/// Bound of a change in the cluster (an election after a SIGKILL takes
/// nats-server a few seconds: missed heartbeats, then a vote; a rejoin, a
/// stop); generous for a loaded 2-core machine.
const CHANGE_LIMIT: Duration = Duration::from_secs(30);

/// How long one JetStream API request may wait for its answer before it
/// is sent again.
const API_ATTEMPT_LIMIT: Duration = Duration::from_secs(2);

/// A JetStream API call made until it is answered, bounded: a new client's
/// reply subscription reaches the other servers of a cluster
/// asynchronously, so its first requests may go unanswered. Only for
/// calls that are safe to repeat.
async fn until_answered<T, E, F, Fut>(what: &str, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    wait_until(what, CHANGE_LIMIT, || {
        let attempt = tokio::time::timeout(API_ATTEMPT_LIMIT, call());
        async move {
            match attempt.await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {API_ATTEMPT_LIMIT:?}")),
            }
        }
    })
    .await
}

/// The scheduler state of a process (`T` when stopped), from
/// `/proc/<pid>/stat`: the field after the command name in parentheses.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Waits until the meta leader, as the leader itself says, is not `not`.
async fn wait_for_meta_leader(cluster: &NatsCluster, not: Option<&str>) -> String {
    wait_until("a meta leader", CHANGE_LIMIT, || async move {
        match cluster.meta_leader().await {
            Ok(Some(leader)) if Some(leader.as_str()) != not => Ok(leader),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

#[tokio::test]
async fn three_servers_form_one_jetstream_cluster_with_a_meta_leader() -> anyhow::Result<()> {
    let mut cluster = NatsCluster::start(NatsOptions::default()).await?;
    assert_eq!(cluster.len(), 3);
    let urls = cluster.urls();
    assert_eq!(urls.len(), 3);
    assert!(urls.iter().all(|u| u.starts_with("nats://127.0.0.1:")));
    assert!(cluster
        .monitor_urls()
        .iter()
        .all(|u| u.starts_with("http://127.0.0.1:")));
    assert!(cluster.dir().join("n1.conf").is_file());

    let leader = wait_for_meta_leader(&cluster, None).await;
    let cluster_ref = &cluster;
    for i in 0..3 {
        let jsz = wait_until("every server to follow the leader", CHANGE_LIMIT, || {
            let leader = leader.clone();
            async move {
                let jsz = cluster_ref.jsz(i).await.map_err(|e| format!("{e:#}"))?;
                if jsz["meta_cluster"]["leader"] == leader.as_str() {
                    Ok(jsz)
                } else {
                    Err(jsz["meta_cluster"].to_string())
                }
            }
        })
        .await;
        assert_eq!(jsz["meta_cluster"]["name"], "sluice-test");
        assert_eq!(jsz["meta_cluster"]["cluster_size"], 3);
        let varz = cluster.varz(i).await?;
        assert_eq!(varz["server_name"], cluster.name(i));
        assert_eq!(
            varz["jetstream"]["config"]["sync_always"], true,
            "{}",
            varz["jetstream"]["config"]
        );
    }

    // A paused server holds its port but answers nothing until resumed.
    let follower = (0..3).find(|&i| cluster.name(i) != leader).unwrap();
    let pid = cluster.pid(follower).unwrap();
    cluster.pause(follower)?;
    wait_until("the paused server to stop", CHANGE_LIMIT, || async move {
        match process_state(pid) {
            Some('T') => Ok(()),
            other => Err(other),
        }
    })
    .await;
    assert!(cluster.varz(follower).await.is_err());
    cluster.resume(follower)?;
    let varz = cluster.varz(follower).await?;
    assert_eq!(varz["server_name"], cluster.name(follower));
    Ok(())
}

#[tokio::test]
async fn without_sync_always_jetstream_keeps_its_default_sync_interval() -> anyhow::Result<()> {
    let options = NatsOptions {
        servers: 2,
        sync_always: false,
        ..NatsOptions::default()
    };
    let cluster = NatsCluster::start(options).await?;
    let config = &cluster.varz(0).await?["jetstream"]["config"];
    // 2.15 leaves `sync_always` out when it is off.
    assert_ne!(config["sync_always"], true, "{config}");
    assert_eq!(config["sync_interval"], 120_000_000_000u64, "{config}");
    Ok(())
}

#[tokio::test]
async fn a_killed_meta_leader_is_replaced_and_rejoins_after_restart() -> anyhow::Result<()> {
    let mut cluster = NatsCluster::start(NatsOptions::default()).await?;
    let old = wait_for_meta_leader(&cluster, None).await;
    let old_index = cluster.index_of(&old).unwrap();

    cluster.kill(old_index)?;
    assert_eq!(cluster.pid(old_index), None);
    let new = wait_for_meta_leader(&cluster, Some(&old)).await;
    assert_ne!(new, old);

    cluster.restart(old_index).await?;
    assert!(cluster.pid(old_index).is_some());
    let (cluster_ref, new_ref, old_ref) = (&cluster, &new, &old);
    let new_index = cluster.index_of(&new).unwrap();
    wait_until(
        "the leader to count the restarted server as current",
        CHANGE_LIMIT,
        || async move {
            let jsz = cluster_ref
                .jsz(new_index)
                .await
                .map_err(|e| e.to_string())?;
            let meta = &jsz["meta_cluster"];
            let current = meta["replicas"].as_array().is_some_and(|replicas| {
                replicas
                    .iter()
                    .any(|r| r["name"] == old_ref.as_str() && r["current"] == true)
            });
            if meta["leader"] == new_ref.as_str() && current {
                Ok(())
            } else {
                Err(meta.to_string())
            }
        },
    )
    .await;
    Ok(())
}

#[tokio::test]
async fn a_replicated_stream_keeps_its_messages_when_its_leader_is_killed() -> anyhow::Result<()> {
    let mut cluster = NatsCluster::start(NatsOptions::default()).await?;
    let client = bounded("connect", async_nats::connect(cluster.urls())).await?;
    let js = jetstream::new(client);
    let config = jetstream::stream::Config {
        name: "ORDERS".into(),
        subjects: vec!["orders.>".into()],
        num_replicas: 3,
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    };
    until_answered("an R3 stream", || js.get_or_create_stream(config.clone())).await;
    // A message id makes a repeated publish a duplicate, not a second message.
    let ack = until_answered("the publish ack", || async {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", "one");
        let pending = js.publish_with_headers("orders.one", headers, "hello".into());
        pending.await?.await
    })
    .await;
    assert_eq!((ack.stream.as_str(), ack.sequence), ("ORDERS", 1));

    let cluster_ref = &cluster;
    let leader = wait_until("a stream leader", CHANGE_LIMIT, || async move {
        match cluster_ref.stream_leader("ORDERS").await {
            Ok(Some(leader)) => Ok(leader),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let leader_index = cluster.index_of(&leader).unwrap();
    cluster.kill(leader_index)?;
    let (cluster_ref, leader_ref) = (&cluster, &leader);
    let new_leader = wait_until("a new stream leader", CHANGE_LIMIT, || async move {
        match cluster_ref.stream_leader("ORDERS").await {
            Ok(Some(new)) if new != *leader_ref => Ok(new),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_ne!(new_leader, leader);

    // Read back through the survivors only.
    let survivors: Vec<String> = (cluster.urls().into_iter().enumerate())
        .filter(|&(i, _)| i != leader_index)
        .map(|(_, url)| url)
        .collect();
    let client = bounded("connect to the survivors", async_nats::connect(survivors)).await?;
    let js = jetstream::new(client);
    let stream = until_answered("the stream", || js.get_stream("ORDERS")).await;
    let message = until_answered("message 1", || stream.get_raw_message(1)).await;
    assert_eq!(message.subject.as_str(), "orders.one");
    assert_eq!(message.payload.as_ref(), b"hello");
    Ok(())
}
