//! The broker without QUIC: a [`Broker`] over a [`LocalStore`] in a temp
//! dir, with real plugins from `plugins/dist` where a test needs them
//! (`cargo xtask plugins` builds them; `cargo xtask test` does it first).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sluice_proto::{
    Consume, CreateTopic, ErrorCode, GroupOptions, MessageOutcome, PublishAck, PublishMessage,
    SettleAction, StartPosition,
};
use tempfile::TempDir;

use super::{Broker, BrokerError, PublishBatch};
use crate::auth::Principal;
use crate::config::Config;
use crate::groups::{GroupsOptions, LocalGroups};
use crate::metrics::Metrics;
use crate::plugin::PluginRegistry;
use crate::store::{LocalOptions, LocalStore, Store};

/// Bound on every wait in these tests.
const WAIT: Duration = Duration::from_secs(20);

struct Harness {
    broker: Broker,
    _dir: TempDir,
}

fn plugin_path(file: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/dist")
        .join(file);
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask plugins` first",
        path.display()
    );
    path.display().to_string()
}

async fn broker(extra_toml: &str) -> Harness {
    broker_on(crate::disk::real(), extra_toml).await
}

async fn broker_on(disk: crate::disk::SharedDisk, extra_toml: &str) -> Harness {
    let dir = TempDir::new().expect("temp dir");
    let text = format!(
        "[server]\ndata_dir = {:?}\n{extra_toml}",
        dir.path().display().to_string()
    );
    let config = Config::parse(&text, "test").expect("valid config");
    let plugins = Arc::new(PluginRegistry::load(&config).expect("plugins load"));
    let metrics = Arc::new(Metrics::default());
    let options = LocalOptions {
        disk,
        ..LocalOptions::from_config(&config)
    };
    let store_metrics = metrics.clone();
    let schedule_options = LocalOptions {
        data_dir: options.data_dir.join("schedule"),
        ..options.clone()
    };
    let store = LocalStore::open(options, store_metrics)
        .await
        .expect("store opens");
    let store: Arc<dyn Store> = Arc::new(store);
    let schedule = LocalStore::open(schedule_options, metrics.clone())
        .await
        .expect("schedule opens");
    let schedule = crate::schedule::Schedule::open(
        Arc::new(schedule),
        crate::store::TopicSettings::defaults(&config),
    )
    .await
    .expect("schedule opens");
    let groups = LocalGroups::open(store.clone(), GroupsOptions::from_config(&config))
        .await
        .expect("groups open");
    let distribution = Arc::new(crate::plugin::LocalDistribution::new(plugins.clone()));
    let broker = Broker::new(
        config,
        super::Backing {
            store,
            groups: Arc::new(groups),
            schedule,
        },
        plugins,
        distribution,
        metrics,
        Arc::new(crate::trace::Observer::off()),
    );
    Harness { broker, _dir: dir }
}

fn message(topic: &str, payload: &str) -> PublishMessage {
    PublishMessage {
        topic: topic.into(),
        key: None,
        headers: Vec::new(),
        payload: Bytes::from(payload.to_owned()),
        id: None,
    }
}

async fn publish_as(
    broker: &Broker,
    messages: Vec<PublishMessage>,
    principal: &Principal,
) -> Result<PublishAck, BrokerError> {
    let batch = PublishBatch::from_messages(messages)?;
    broker.publish(batch, principal).await?.wait().await
}

async fn publish(broker: &Broker, messages: Vec<PublishMessage>) -> PublishAck {
    publish_as(broker, messages, &Principal::anonymous())
        .await
        .expect("publish succeeds")
}

/// `(topic, offset)` of each stored outcome.
fn places(ack: &PublishAck) -> Vec<(String, u64)> {
    ack.outcomes
        .iter()
        .flat_map(|o| match o {
            MessageOutcome::Stored(at) => at
                .iter()
                .map(|a| (a.topic.clone(), a.offset))
                .collect::<Vec<_>>(),
            other => panic!("not stored: {other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_is_grouped_by_topic_and_acked_in_message_order() {
    let h = broker("").await;
    let ack = publish(
        &h.broker,
        vec![message("a", "1"), message("b", "1"), message("a", "2")],
    )
    .await;
    assert_eq!(
        places(&ack),
        vec![("a".into(), 0), ("b".into(), 0), ("a".into(), 1)]
    );
    let fetched = h
        .broker
        .fetch("a", StartPosition::Earliest, 10, 1 << 20)
        .await
        .expect("fetch");
    let payloads: Vec<_> = fetched.messages.iter().map(|m| m.payload.clone()).collect();
    assert_eq!(payloads, vec![Bytes::from("1"), Bytes::from("2")]);
    assert_eq!(fetched.end_offset, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_with_a_bad_topic_or_nothing_in_it_stores_nothing() {
    let h = broker("").await;
    let err = publish_as(
        &h.broker,
        vec![message("good", "x"), message("bad..name", "y")],
        &Principal::anonymous(),
    )
    .await
    .expect_err("refused");
    assert_eq!(err.code(), ErrorCode::InvalidTopic);
    assert!(h.broker.list_topics().await.is_empty(), "nothing stored");
    let err = publish_as(&h.broker, Vec::new(), &Principal::anonymous())
        .await
        .expect_err("empty publish refused");
    assert_eq!(err.code(), ErrorCode::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auto_create_an_unknown_topic_is_not_found() {
    let h = broker("[topics]\nauto_create = false\n").await;
    let err = publish_as(
        &h.broker,
        vec![message("nope", "x")],
        &Principal::anonymous(),
    )
    .await
    .expect_err("refused");
    assert_eq!(err.code(), ErrorCode::TopicNotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_message_id_is_acked_with_the_first_offset() {
    let h = broker("").await;
    let with_id = |p: &str| PublishMessage {
        id: Some("order-1".into()),
        ..message("pay", p)
    };
    publish(&h.broker, vec![message("pay", "before")]).await;
    let first = publish(&h.broker, vec![with_id("one")]).await;
    let again = publish(&h.broker, vec![with_id("two"), with_id("three")]).await;
    let dup = |ack: &PublishAck, i: usize| match &ack.outcomes[i] {
        MessageOutcome::Stored(at) => (at[0].offset, at[0].duplicate),
        other => panic!("{other:?}"),
    };
    assert_eq!(dup(&first, 0), (1, false));
    assert_eq!(dup(&again, 0), (1, true));
    assert_eq!(dup(&again, 1), (1, true));
    let info = h.broker.topic_info("pay").await.expect("info");
    assert_eq!(info.messages, 2, "the duplicates were not stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_listed_deleted_and_reborn_empty() {
    let h = broker("").await;
    let create = CreateTopic {
        name: "audit".into(),
        retention: None,
        segment_bytes: Some(4096),
        dedup_window_ms: None,
        default_ttl_ms: None,
        dead_letter_expired: None,
    };
    let info = h.broker.create_topic(&create).await.expect("created");
    assert_eq!(info.segment_bytes, 4096);
    let again = h.broker.create_topic(&create).await.expect_err("exists");
    assert_eq!(again.code(), ErrorCode::TopicExists);
    let bad = CreateTopic {
        segment_bytes: Some(10),
        ..create.clone()
    };
    assert_eq!(
        h.broker
            .create_topic(&bad)
            .await
            .expect_err("too small")
            .code(),
        ErrorCode::InvalidArgument
    );
    publish(
        &h.broker,
        vec![message("audit", "a"), message("audit", "b")],
    )
    .await;
    let store = h.broker.store().clone();
    let before = store.topic("audit").expect("exists").incarnation;
    h.broker.delete_topic("audit").await.expect("deleted");
    assert_eq!(
        h.broker.topic_info("audit").await.expect_err("gone").code(),
        ErrorCode::TopicNotFound
    );
    let ack = publish(&h.broker, vec![message("audit", "new")]).await;
    assert_eq!(
        places(&ack),
        vec![("audit".into(), 0)],
        "offsets start over"
    );
    let after = store.topic("audit").expect("re-created").incarnation;
    assert_ne!(before, after, "a re-created topic is a new incarnation");
    let names: Vec<_> = h
        .broker
        .list_topics()
        .await
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, vec!["audit".to_owned()]);
}

fn pipeline_config(principal_publish: &str) -> String {
    format!(
        r#"
[[plugin]]
name = "route"
path = {route:?}
config = {{ header = "to", prefix = "orders.", fallback = "orders.unrouted" }}

[[plugin]]
name = "validate"
path = {validate:?}
config = {{ schema = {{ type = "object", required = ["id"] }} }}

[[plugin]]
name = "hostile"
path = {hostile:?}
config = {{ mode = "trap" }}

[[pipeline]]
topics = "orders.in"
stages = ["validate", "route"]
on_error = "dead-letter"

[[pipeline]]
topics = "broken.in"
stages = ["hostile"]
on_error = "dead-letter"

[[auth.principal]]
name = "shop"
publish = [{principal_publish}]
"#,
        route = plugin_path("route_by_header.wasm"),
        validate = plugin_path("validate_json_schema.wasm"),
        hostile = plugin_path("test_hostile.wasm"),
    )
}

fn header(to: &str, payload: &str) -> PublishMessage {
    PublishMessage {
        headers: vec![("to".into(), to.into())],
        ..message("orders.in", payload)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_route_dead_letter_and_refuse_routes_the_publisher_may_not_write() {
    let h = broker(&pipeline_config(r#""orders.in", "orders.eu""#)).await;
    let config =
        Config::parse(&pipeline_config(r#""orders.in", "orders.eu""#), "t").expect("config parses");
    let shop = Principal::configured(&config.auth.principals[0]);
    let ack = publish_as(
        &h.broker,
        vec![
            header("eu", r#"{"id":1}"#),
            header("us", r#"{"id":2}"#),
            header("eu", r#"{"no id":3}"#),
        ],
        &shop,
    )
    .await
    .expect("publish answered");
    match &ack.outcomes[0] {
        MessageOutcome::Stored(at) => {
            assert_eq!((at[0].topic.as_str(), at[0].offset), ("orders.eu", 0))
        }
        other => panic!("routed to orders.eu: {other:?}"),
    }
    match &ack.outcomes[1] {
        MessageOutcome::Rejected(reason) => {
            assert!(
                reason.contains("orders.us") && reason.contains("shop"),
                "{reason}"
            )
        }
        other => panic!("orders.us is not the shop's to write: {other:?}"),
    }
    match &ack.outcomes[2] {
        MessageOutcome::Rejected(reason) => assert!(reason.contains("id"), "{reason}"),
        other => panic!("an order without id is refused by the schema: {other:?}"),
    }
    assert!(
        h.broker.store().topic("orders.us").is_none(),
        "nothing stored there"
    );
    // A stage that traps sends its batch to the dead-letter topic.
    let ack = publish(&h.broker, vec![message("broken.in", "x")]).await;
    match &ack.outcomes[0] {
        MessageOutcome::DeadLettered { at, .. } => assert_eq!(at.topic, "dlq.broken.in"),
        other => panic!("dead-lettered: {other:?}"),
    }
    let letters = h
        .broker
        .fetch("dlq.broken.in", StartPosition::Earliest, 10, 1 << 20)
        .await
        .expect("dead letters");
    let headers = &letters.messages[0].headers;
    assert!(headers
        .iter()
        .any(|(n, v)| n == crate::dead_letter::TOPIC && v == "broken.in"));
    assert!(headers
        .iter()
        .any(|(n, v)| n == crate::dead_letter::STAGE && v == "hostile"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_delivers_each_message_once_and_an_ack_moves_its_floor() {
    let h = broker("").await;
    publish(&h.broker, vec![message("jobs", "1"), message("jobs", "2")]).await;
    let consume = Consume {
        group: "workers".into(),
        pattern: "jobs".into(),
        options: GroupOptions {
            start: StartPosition::Earliest,
            ..GroupOptions::default()
        },
        max_in_flight: 10,
        limit: None,
        plugin: None,
        consumer: 1,
    };
    let anonymous = crate::auth::Principal::anonymous();
    let mut member = h
        .broker
        .consume(consume, "test", &anonymous)
        .await
        .expect("joined");
    let mut offsets = Vec::new();
    while offsets.len() < 2 {
        let chunk = tokio::time::timeout(WAIT, member.next_chunk())
            .await
            .expect("deliveries in time")
            .expect("deliveries");
        for slice in &chunk.slices {
            offsets.extend(slice.records().iter().map(|r| r.offset));
        }
    }
    assert_eq!(offsets, vec![0, 1]);
    for offset in offsets {
        let settle = sluice_proto::Settle {
            group: "workers".into(),
            topic: "jobs".into(),
            offset,
            action: SettleAction::Ack,
            consumer: None,
            attempt: Some(1),
        };
        let by = vec![member.member_id()];
        h.broker.settle(settle, by).await.expect("acked");
    }
    let info = h.broker.group_info("workers").await.expect("info");
    assert_eq!(info.topics[0].ack_floor, 2);
    assert_eq!(info.topics[0].pending, 0);
    let unknown = sluice_proto::Settle {
        group: "workers".into(),
        topic: "jobs".into(),
        offset: 0,
        action: SettleAction::Ack,
        consumer: None,
        attempt: None,
    };
    assert_eq!(
        h.broker
            .settle(unknown, vec![member.member_id()])
            .await
            .expect_err("settled twice")
            .code(),
        ErrorCode::UnknownDelivery
    );
    h.broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_to_several_topics_says_which_were_stored_when_one_fails() {
    use crate::disk::fault::{Call, Fault, FaultDisk, ENOSPC};
    let faults = FaultDisk::new(crate::disk::real());
    let h = broker_on(Arc::new(faults.clone()), "").await;
    publish(
        &h.broker,
        vec![message("multi.a", "a0"), message("multi.b", "b0")],
    )
    .await;
    faults.inject(Call::Write, "topics/multi.b/", Fault::Errno(ENOSPC), None);
    let ack = publish(
        &h.broker,
        vec![
            message("multi.a", "a1"),
            message("multi.b", "b1"),
            message("multi.a", "a2"),
        ],
    )
    .await;
    assert!(matches!(&ack.outcomes[0], MessageOutcome::Stored(at) if at[0].offset == 1));
    assert!(
        matches!(&ack.outcomes[1], MessageOutcome::Rejected(reason) if reason.contains("storage full")),
        "{:?}",
        ack.outcomes[1]
    );
    assert!(matches!(&ack.outcomes[2], MessageOutcome::Stored(at) if at[0].offset == 2));
    // Only the full topic's publishes fail outright; the space comes back.
    let full = publish_as(
        &h.broker,
        vec![message("multi.b", "b2")],
        &Principal::anonymous(),
    )
    .await;
    assert_eq!(full.err().map(|e| e.code()), Some(ErrorCode::StorageFull));
    faults.clear();
    assert_eq!(
        places(&publish(&h.broker, vec![message("multi.b", "b3")]).await),
        [("multi.b".to_owned(), 1)]
    );
}
