//! Failover of the client: several addresses, a broker restarted on the
//! same address and data (stopped, or killed), the nodes of a cluster on
//! one log, a node that does not come back. Publishes go on through the same client and are stored once,
//! subscriptions resume after the last message they delivered (per topic
//! of a pattern), consumers rejoin and every message ends up acked.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use sluice_client::{
    Client, ClientError, ClientOptions, ConsumeOptions, Delivered, ErrorCode, Message,
    StartPosition, Subscription, Trust,
};
use sluice_tests::{
    bounded, bounded_for, client_options, collect, fetch_all, free_udp_port, offsets, wait_until,
    ChildBroker, TestBroker, WAIT,
};
use tokio_util::sync::CancellationToken;

/// How long the clients here keep reconnecting: longer than any restart.
const RECONNECT: Duration = Duration::from_secs(30);
/// Publishes a steady publisher keeps in flight.
const WINDOW: usize = 8;
/// Bound of the waits that span a restart.
const ACROSS_RESTART: Duration = Duration::from_secs(30);

/// A broker on a port chosen now, so that a restart brings it back where
/// its clients look for it.
async fn broker_on_a_fixed_port() -> anyhow::Result<TestBroker> {
    let port = free_udp_port()?;
    TestBroker::start_with(move |c| c.server.listen = SocketAddr::from(([127, 0, 0, 1], port)))
        .await
}

/// Options that keep reconnecting for [`RECONNECT`].
fn failover_options(addr: SocketAddr, cert: &Path) -> ClientOptions {
    client_options(addr, cert).reconnect_timeout(RECONNECT)
}

async fn connect(options: ClientOptions) -> anyhow::Result<Client> {
    Ok(bounded("a client connection", Client::connect(options)).await?)
}

/// Reads a subscription on a task of its own (so a live one never falls
/// behind), keeping what arrives.
struct Reader {
    seen: Arc<Mutex<Vec<Delivered>>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<Subscription, ClientError>>,
}

impl Reader {
    fn spawn(mut sub: Subscription) -> Reader {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (seen, stop) = (seen.clone(), stop.clone());
            async move {
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return Ok(sub),
                        next = sub.recv() => match next {
                            Some(Ok(message)) => seen.lock().unwrap().push(message),
                            Some(Err(e)) => return Err(e),
                            None => return Err(ClientError::Closed),
                        },
                    }
                }
            }
        });
        Reader { seen, stop, task }
    }

    /// Waits until `n` messages came, then stops reading; what came.
    async fn finish_after(self, n: usize) -> anyhow::Result<(Vec<Delivered>, Subscription)> {
        wait_until(&format!("{n} deliveries"), ACROSS_RESTART, || async {
            let got = self.seen.lock().unwrap().len();
            if got >= n || self.task.is_finished() {
                Ok(())
            } else {
                Err(got)
            }
        })
        .await;
        self.stop.cancel();
        let sub = bounded("the reader to stop", self.task).await??;
        let seen = std::mem::take(&mut *self.seen.lock().unwrap());
        Ok((seen, sub))
    }
}

/// Publishes `m-0`, `m-1`, ... with [`WINDOW`] in flight until stopped;
/// every publish must be acked.
struct Publisher {
    acked: Arc<AtomicUsize>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<Vec<(u64, String)>>>,
}

impl Publisher {
    fn start(client: Client, topic: &'static str) -> Publisher {
        let acked = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (acked, stop) = (acked.clone(), stop.clone());
            async move {
                let mut pending = FuturesUnordered::new();
                let mut stored = Vec::new();
                let mut next = 0u64;
                loop {
                    while !stop.is_cancelled() && pending.len() < WINDOW {
                        let (client, body) = (client.clone(), format!("m-{next}"));
                        next += 1;
                        pending
                            .push(async move { (client.publish(topic, body.clone()).await, body) });
                    }
                    match pending.next().await {
                        Some((Ok(at), body)) => {
                            stored.push((at.offset, body));
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Some((Err(e), body)) => anyhow::bail!("publishing {body} failed: {e}"),
                        None => return Ok(stored),
                    }
                }
            }
        });
        Publisher { acked, stop, task }
    }

    async fn wait_for_acks(&self, n: usize) {
        wait_until(&format!("{n} acks"), ACROSS_RESTART, || async {
            let acked = self.acked.load(Ordering::Relaxed);
            assert!(
                !self.task.is_finished(),
                "the publisher stopped after {acked} acks"
            );
            if acked >= n {
                Ok(())
            } else {
                Err(acked)
            }
        })
        .await;
    }

    /// Stops publishing; every (offset, payload) acked.
    async fn finish(self) -> anyhow::Result<Vec<(u64, String)>> {
        self.stop.cancel();
        bounded("the publisher's last acks", self.task).await?
    }
}

fn payloads(messages: &[Delivered]) -> Vec<String> {
    messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect()
}

#[tokio::test]
async fn a_client_given_a_dead_address_first_connects_to_the_next() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let dead = SocketAddr::from(([127, 0, 0, 1], free_udp_port()?));
    let mut options = failover_options(broker.addr(), broker.cert_path());
    options.server = format!("{dead},{}", broker.addr());
    let client = connect(options.clone()).await?;
    assert_eq!(client.address(), broker.addr().to_string());
    assert_eq!(client.publish("fo.first", "x").await?.offset, 0);

    // In order: a live first address is the one taken.
    options.server = format!("{},{dead}", broker.addr());
    let client = connect(options).await?;
    assert_eq!(client.address(), broker.addr().to_string());
    Ok(())
}

#[tokio::test]
async fn publishes_and_subscriptions_carry_on_across_a_broker_restart() -> anyhow::Result<()> {
    const TOPIC: &str = "fo.steady";
    let mut broker = broker_on_a_fixed_port().await?;
    let client = connect(failover_options(broker.addr(), broker.cert_path())).await?;
    let replaying = Reader::spawn(client.subscribe(TOPIC, StartPosition::Earliest).await?);
    let live = Reader::spawn(client.subscribe(TOPIC, StartPosition::Latest).await?);
    let publisher = Publisher::start(client.clone(), TOPIC);

    publisher.wait_for_acks(50).await;
    let before = client.connection().stable_id();
    broker.stop().await?;
    // Sent while the broker is down: it waits for the new connection.
    let while_down = tokio::spawn({
        let client = client.clone();
        async move { client.publish(TOPIC, "while-down").await }
    });
    broker.restart().await?;
    let acked = publisher.acked.load(Ordering::Relaxed);
    publisher.wait_for_acks(acked + 50).await;
    let acks = publisher.finish().await?;
    bounded("the publish sent while down", while_down).await??;
    assert_ne!(client.connection().stable_id(), before, "a new connection");

    // Every acked publish is stored, each message once, each with its own id.
    let stored = fetch_all(&client, TOPIC, StartPosition::Earliest).await?;
    assert_eq!(
        offsets(&stored),
        (0..stored.len() as u64).collect::<Vec<_>>()
    );
    assert_eq!(stored.len(), acks.len() + 1, "every publish stored once");
    let bodies = payloads(&stored);
    assert_eq!(bodies.iter().collect::<HashSet<_>>().len(), stored.len());
    for (offset, body) in &acks {
        assert_eq!(&bodies[*offset as usize], body, "offset {offset}");
    }
    // Pipelined publishes keep their order, those sent again too.
    let numbers: Vec<u64> = bodies
        .iter()
        .filter_map(|b| b.strip_prefix("m-").map(|n| n.parse().expect("a number")))
        .collect();
    assert_eq!(numbers, (0..acks.len() as u64).collect::<Vec<_>>());
    let ids: HashSet<_> = stored.iter().filter_map(|m| m.id.as_deref()).collect();
    assert_eq!(ids.len(), stored.len(), "one id per message, all different");

    // Both subscriptions saw every offset once, in order.
    for (name, reader) in [("replaying", replaying), ("live", live)] {
        let (seen, sub) = reader.finish_after(stored.len()).await?;
        assert_eq!(offsets(&seen), offsets(&stored), "{name}");
        assert_eq!(payloads(&seen), bodies, "{name}");
        assert_eq!(sub.dropped(), 0, "{name}");
    }
    Ok(())
}

#[tokio::test]
async fn a_pattern_subscription_resumes_each_topic_where_it_stopped() -> anyhow::Result<()> {
    let mut broker = broker_on_a_fixed_port().await?;
    let client = connect(failover_options(broker.addr(), broker.cert_path())).await?;
    let publish = |topic: &'static str, n: u64| {
        let client = client.clone();
        async move {
            let batch = (0..n).map(|i| Message::new(topic, format!("{topic} {i}")));
            client.publish_batch(batch.collect()).await
        }
    };
    publish("fo.a", 8).await?;
    publish("fo.b", 5).await?;
    let mut sub = client.subscribe("fo.*", StartPosition::Earliest).await?;
    // Part of it read; the rest is buffered in the client or still on its way.
    let mut seen = collect(&mut sub, 6, WAIT).await;

    broker.restart().await?;
    publish("fo.a", 2).await?;
    publish("fo.b", 2).await?;
    seen.extend(collect(&mut sub, 17 - 6, ACROSS_RESTART).await);
    let mut per_topic: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for m in &seen {
        per_topic.entry(m.topic.clone()).or_default().push(m.offset);
    }
    assert_eq!(per_topic["fo.a"], (0..10).collect::<Vec<_>>());
    assert_eq!(per_topic["fo.b"], (0..7).collect::<Vec<_>>());
    // And nothing more: the next message is a new one.
    publish("fo.b", 1).await?;
    let next = collect(&mut sub, 1, WAIT).await;
    assert_eq!((next[0].topic.as_str(), next[0].offset), ("fo.b", 7));
    Ok(())
}

#[tokio::test]
async fn a_consumer_keeps_consuming_across_a_restart_and_every_message_is_acked(
) -> anyhow::Result<()> {
    const TOPIC: &str = "fo.work";
    let mut broker = broker_on_a_fixed_port().await?;
    let client = connect(failover_options(broker.addr(), broker.cert_path())).await?;
    for i in 0..20 {
        client.publish(TOPIC, format!("job {i}")).await?;
    }
    let options = ConsumeOptions::default()
        .ack_wait(Duration::from_secs(60))
        .max_in_flight(10);
    let mut consumer = client.consume(TOPIC, "fo-workers", options).await?;
    let mut first = Vec::new();
    for _ in 0..10 {
        first.push(
            bounded("a delivery", consumer.recv())
                .await
                .expect("open")?,
        );
    }
    let held = first.split_off(5);
    let mut acked = HashSet::new();
    for delivery in &first {
        delivery.ack().await?;
        acked.insert(delivery.offset);
    }

    broker.restart().await?;
    // What came over the lost connection can no longer be settled.
    for delivery in &held {
        let err = bounded("a stale ack", delivery.ack()).await.unwrap_err();
        assert!(matches!(err, ClientError::DeliveryLost { .. }), "{err:?}");
        assert_eq!(err.code(), Some(ErrorCode::StaleSettle));
        assert!(err.to_string().contains("lost"), "{err}");
    }
    for i in 20..25 {
        client.publish(TOPIC, format!("job {i}")).await?;
    }
    // The consumer rejoined: the held messages come again, then the rest.
    while acked.len() < 25 {
        let delivery = bounded_for(
            "a delivery after the restart",
            ACROSS_RESTART,
            consumer.recv(),
        )
        .await
        .expect("the consumer goes on")?;
        delivery.ack().await?;
        acked.insert(delivery.offset);
    }
    let info = client.group_info("fo-workers").await?;
    let topic = &info.topics[0];
    assert_eq!(
        (topic.ack_floor, topic.pending, topic.lag),
        (25, 0, 0),
        "{info:?}"
    );
    Ok(())
}

#[tokio::test]
async fn messages_without_ids_get_distinct_ids_that_the_broker_deduplicates_by(
) -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    client.publish("fo.ids", "one").await?;
    client.publish("fo.ids", "two").await?;
    let stored = fetch_all(&client, "fo.ids", StartPosition::Earliest).await?;
    let ids: Vec<&str> = stored.iter().filter_map(|m| m.id.as_deref()).collect();
    assert_eq!(ids.len(), 2, "{stored:?}");
    assert_ne!(ids[0], ids[1]);
    assert!(ids.iter().all(|id| id.len() == 22), "{ids:?}");
    // A publish sent again carries the id it was first sent with: stored once.
    let again = client
        .publish_message(Message::new("fo.ids", "one").id(ids[0]))
        .await?;
    assert!(again.duplicate && again.offset == 0, "{again:?}");
    assert_eq!(
        fetch_all(&client, "fo.ids", StartPosition::Earliest)
            .await?
            .len(),
        2
    );
    Ok(())
}

#[tokio::test]
async fn a_client_fails_over_to_the_next_node_when_its_node_stops() -> anyhow::Result<()> {
    let mut first = TestBroker::start().await?;
    let second = TestBroker::start().await?;
    let mut trusted = std::fs::read(first.cert_path())?;
    trusted.extend(std::fs::read(second.cert_path())?);
    let options = ClientOptions::new(format!("{},{}", first.addr(), second.addr()))
        .trust(Trust::CaPem(trusted))
        .reconnect_timeout(RECONNECT);
    let client = connect(options).await?;
    let mut sub = client.subscribe("fo.nodes", StartPosition::Latest).await?;
    client.publish("fo.nodes", "on the first").await?;
    assert_eq!(collect(&mut sub, 1, WAIT).await[0].offset, 0);

    first.stop().await?;
    let stored = bounded_for(
        "a publish after the failover",
        ACROSS_RESTART,
        client.publish("fo.nodes", "on the second"),
    )
    .await?;
    assert_eq!(client.address(), second.addr().to_string());
    // The second node has its own log: the subscription, resumed there,
    // gets its message although its offset is below the first node's.
    assert_eq!(stored.offset, 0);
    let moved = collect(&mut sub, 1, WAIT).await;
    assert_eq!(payloads(&moved), ["on the second"]);
    Ok(())
}

#[tokio::test]
async fn a_client_fails_over_between_cluster_nodes_and_goes_on_in_the_shared_log(
) -> anyhow::Result<()> {
    const TOPIC: &str = "fo.cluster";
    let mut cluster = crate::cluster::Cluster::start(2).await?;
    let (first, second) = (cluster.nodes[0].addr(), cluster.nodes[1].addr());
    // The nodes present one certificate, as the nodes of a cluster do.
    let options = ClientOptions::new(format!("{first},{second}"))
        .trust(Trust::CaFile(cluster.nodes[0].cert_path().to_path_buf()))
        .reconnect_timeout(RECONNECT);
    let client = connect(options).await?;
    assert_eq!(client.address(), first.to_string());
    let reader = Reader::spawn(client.subscribe(TOPIC, StartPosition::Earliest).await?);
    let publisher = Publisher::start(client.clone(), TOPIC);

    publisher.wait_for_acks(30).await;
    cluster.nodes[0].stop().await?;
    let acked = publisher.acked.load(Ordering::Relaxed);
    publisher.wait_for_acks(acked + 30).await;
    let acks = publisher.finish().await?;
    assert_eq!(client.address(), second.to_string());

    // One log behind both nodes: every acked publish once, in order, and
    // the subscription went on where it was.
    let stored = fetch_all(&client, TOPIC, StartPosition::Earliest).await?;
    assert_eq!(stored.len(), acks.len(), "every publish stored once");
    let expected: Vec<String> = (0..acks.len()).map(|i| format!("m-{i}")).collect();
    assert_eq!(payloads(&stored), expected);
    let (seen, _) = reader.finish_after(stored.len()).await?;
    assert_eq!(offsets(&seen), offsets(&stored));
    assert_eq!(payloads(&seen), expected);
    Ok(())
}

#[tokio::test]
async fn a_consumer_rejoins_its_group_on_another_cluster_node() -> anyhow::Result<()> {
    const TOPIC: &str = "fo.cluster-work";
    let mut cluster = crate::cluster::Cluster::start(2).await?;
    let (first, second) = (cluster.nodes[0].addr(), cluster.nodes[1].addr());
    let options = ClientOptions::new(format!("{first},{second}"))
        .trust(Trust::CaFile(cluster.nodes[0].cert_path().to_path_buf()))
        .reconnect_timeout(RECONNECT);
    let client = connect(options).await?;
    for i in 0..10 {
        client.publish(TOPIC, format!("job {i}")).await?;
    }
    let options = ConsumeOptions::default()
        .ack_wait(Duration::from_secs(60))
        .max_in_flight(4);
    let mut consumer = client.consume(TOPIC, "fo-cluster", options).await?;
    let mut first_four = Vec::new();
    for _ in 0..4 {
        first_four.push(
            bounded("a delivery", consumer.recv())
                .await
                .expect("open")?,
        );
    }
    let held = first_four.split_off(2);
    let mut acked = HashSet::new();
    for delivery in &first_four {
        delivery.ack().await?;
        acked.insert(delivery.offset);
    }

    cluster.nodes[0].stop().await?;
    for delivery in &held {
        let err = bounded("a stale ack", delivery.ack()).await.unwrap_err();
        assert!(matches!(err, ClientError::DeliveryLost { .. }), "{err:?}");
    }
    while acked.len() < 10 {
        let delivery = bounded_for(
            "a delivery from the other node",
            ACROSS_RESTART,
            consumer.recv(),
        )
        .await
        .expect("the consumer goes on")?;
        delivery.ack().await?;
        acked.insert(delivery.offset);
    }
    assert_eq!(client.address(), second.to_string());
    let info = client.group_info("fo-cluster").await?;
    let topic = &info.topics[0];
    assert_eq!((topic.ack_floor, topic.pending), (10, 0), "{info:?}");
    Ok(())
}

#[tokio::test]
async fn a_client_that_cannot_reconnect_fails_what_waits_clearly() -> anyhow::Result<()> {
    let mut broker = TestBroker::start().await?;
    let options =
        client_options(broker.addr(), broker.cert_path()).reconnect_timeout(Duration::from_secs(1));
    let client = connect(options).await?;
    let mut sub = client.subscribe("fo.gone", StartPosition::Earliest).await?;
    broker.stop().await?;
    let err = bounded("a publish to a gone broker", client.publish("fo.gone", "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Unreachable(_)), "{err:?}");
    assert_eq!(err.code(), Some(ErrorCode::ShuttingDown), "{err}");
    let text = err.to_string();
    assert!(text.contains(&broker.addr().to_string()), "{text}");
    assert!(text.contains("answered within"), "{text}");
    match bounded("the subscription's end", sub.recv()).await {
        Some(Err(ClientError::Unreachable(_))) => {}
        other => panic!("expected the subscription to end unreachable, got {other:?}"),
    }
    assert!(bounded("the subscription's end", sub.recv())
        .await
        .is_none());
    Ok(())
}

#[tokio::test]
async fn a_killed_broker_is_noticed_and_its_restart_resumes_everything() -> anyhow::Result<()> {
    sluice_tests::init_tracing();
    let binary = Path::new(env!("CARGO_BIN_EXE_sluice-under-test"));
    let dir = tempfile::tempdir()?;
    let mut broker = ChildBroker::start(binary, dir.path(), "").await?;
    let cert = broker.data_dir().join("tls").join("cert.pem");
    let options = failover_options(broker.addr(), &cert).idle_timeout(Duration::from_secs(2));
    let client = connect(options).await?;
    let mut sub = client
        .subscribe("fo.killed", StartPosition::Earliest)
        .await?;
    client.publish("fo.killed", "before").await?;
    assert_eq!(collect(&mut sub, 1, WAIT).await[0].offset, 0);

    broker.kill()?;
    let while_dead = tokio::spawn({
        let client = client.clone();
        async move { client.publish("fo.killed", "while dead").await }
    });
    broker.restart().await?;
    let stored = bounded_for("the publish sent while dead", ACROSS_RESTART, while_dead).await??;
    assert_eq!(stored.offset, 1);
    let after = collect(&mut sub, 1, ACROSS_RESTART).await;
    assert_eq!(payloads(&after), ["while dead"]);
    Ok(())
}
