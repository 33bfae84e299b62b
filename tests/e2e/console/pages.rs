//! What the console's pages show and what their actions do, through the
//! same API the page uses: a topic's last messages and the publish form,
//! live rates, a group's lag as its consumer acks and a confirmed reset,
//! dead letters redriven once and discarded, and the plugins page.

use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use sluice_client::{ConsumeOptions, Message, MessageOutcome, StartPosition};
use sluice_tests::{bounded, collect, plugin_dist, wait_until, Http, TestBroker, WAIT};

use super::open_session;

fn text_of(b64: &Value) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.as_str().unwrap_or_default())
        .expect("base64");
    String::from_utf8(bytes).expect("utf-8")
}

/// Polls `path` until `check` holds of its JSON, as the page does.
async fn until(http: &Http, what: &str, path: &str, check: impl Fn(&Value) -> bool) -> Value {
    wait_until(what, WAIT, || async {
        let reply = http.get(path).await.json();
        if check(&reply) {
            Ok(reply)
        } else {
            Err(reply)
        }
    })
    .await
}

#[tokio::test]
async fn a_topic_page_shows_its_last_messages_and_publishes_from_the_form() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    for i in 0..3 {
        client
            .publish_message(
                Message::new("orders.eu", format!("{{\"n\":{i}}}"))
                    .key(format!("k{i}"))
                    .header("region", "eu"),
            )
            .await?;
    }
    let http = open_session(&broker).await;
    let page = http
        .get("/api/topics/orders.eu/messages?last=2")
        .await
        .json();
    let messages = page["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 2, "{page}");
    assert_eq!(
        (
            messages[0]["offset"].as_u64(),
            messages[1]["offset"].as_u64()
        ),
        (Some(1), Some(2))
    );
    assert_eq!(text_of(&messages[1]["payload"]), "{\"n\":2}");
    assert_eq!(text_of(&messages[1]["key"]), "k2");
    assert_eq!(messages[1]["headers"], json!([["region", "eu"]]));

    // The form: stored at the next offset; the same message id twice is
    // stored once.
    let form = json!({ "payload": "from the console", "key": "k", "headers": [["source", "console"]], "message_id": "c-1" });
    let first = http
        .act("POST", "/api/topics/orders.eu/messages", Some(form.clone()))
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(
        first.json()["Stored"][0],
        json!({ "topic": "orders.eu", "offset": 3, "duplicate": false })
    );
    let again = http
        .act("POST", "/api/topics/orders.eu/messages", Some(form))
        .await;
    assert_eq!(
        again.json()["Stored"][0],
        json!({ "topic": "orders.eu", "offset": 3, "duplicate": true })
    );
    let stored = client
        .fetch("orders.eu", StartPosition::Offset(3), 10)
        .await?;
    assert_eq!(stored.messages.len(), 1);
    assert_eq!(&stored.messages[0].payload[..], b"from the console");

    // The list and the overview count them; rates come within a sample.
    let topics = http.get("/api/topics").await.json();
    assert_eq!(
        (topics[0]["name"].as_str(), topics[0]["messages"].as_u64()),
        (Some("orders.eu"), Some(4))
    );
    for i in 0..50 {
        client.publish("orders.eu", format!("more {i}")).await?;
    }
    let overview = until(
        &http,
        "a publish rate on the overview",
        "/api/overview",
        |o| {
            o["points"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["published"].as_f64() > Some(0.0)))
        },
    )
    .await;
    assert_eq!(overview["messages"], 54);
    assert_eq!(overview["topics"], 1);
    assert!(overview["connections"].as_i64() >= Some(1), "{overview}");
    Ok(())
}

#[tokio::test]
async fn a_groups_lag_falls_to_zero_as_its_consumer_acks_and_a_confirmed_reset_restores_it(
) -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    for i in 0..5 {
        client.publish("jobs", format!("job {i}")).await?;
    }
    let mut member = client
        .consume(
            "jobs",
            "workers",
            ConsumeOptions::default().max_in_flight(1),
        )
        .await?;
    let http = open_session(&broker).await;
    let lag = |g: &Value| {
        g["topics"].as_array().map(|t| {
            t.iter()
                .map(|t| t["lag"].as_u64().unwrap_or(0) + t["pending"].as_u64().unwrap_or(0))
                .sum::<u64>()
        })
    };
    until(&http, "five messages to do", "/api/groups/workers", |g| {
        lag(g) == Some(5)
    })
    .await;
    for _ in 0..5 {
        let delivery = bounded("a delivery", member.recv()).await.expect("open")?;
        delivery.ack().await?;
    }
    let group = until(&http, "nothing left to do", "/api/groups/workers", |g| {
        lag(g) == Some(0)
    })
    .await;
    assert_eq!(
        group["members"].as_array().map(Vec::len),
        Some(1),
        "{group}"
    );
    let list = http.get("/api/groups").await.json();
    assert_eq!(
        (
            list[0]["name"].as_str(),
            list[0]["lag"].as_u64(),
            list[0]["pending"].as_u64()
        ),
        (Some("workers"), Some(0), Some(0))
    );
    drop(member);

    // Unconfirmed: refused, nothing moves. Confirmed: back to the start.
    let refused = http
        .act(
            "POST",
            "/api/groups/workers/reset",
            Some(json!({ "to": "earliest", "confirm": "" })),
        )
        .await;
    assert_eq!(refused.status, 400);
    assert_eq!(lag(&http.get("/api/groups/workers").await.json()), Some(0));
    let reset = http
        .act(
            "POST",
            "/api/groups/workers/reset",
            Some(json!({ "to": "earliest", "confirm": "workers" })),
        )
        .await;
    assert_eq!(reset.status, 200, "{}", reset.body);
    assert_eq!(lag(&reset.json()), Some(5));
    let reset = http
        .act(
            "POST",
            "/api/groups/workers/reset",
            Some(json!({ "to": { "offset": 3 }, "confirm": "workers" })),
        )
        .await;
    assert_eq!(lag(&reset.json()), Some(2));
    Ok(())
}

#[tokio::test]
async fn dead_letters_show_why_and_are_redriven_once_or_discarded() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    for i in 0..3 {
        client
            .publish_message(
                Message::new("payments", format!("p{i}"))
                    .key("acct-1")
                    .header("trace", format!("t{i}")),
            )
            .await?;
    }
    let mut member = client
        .consume("payments", "billing", ConsumeOptions::default())
        .await?;
    for _ in 0..3 {
        let d = bounded("a delivery", member.recv()).await.expect("open")?;
        if d.message.offset < 2 {
            d.reject(format!("bad amount in p{}", d.message.offset))
                .await?;
        } else {
            d.ack().await?;
        }
    }
    let http = open_session(&broker).await;
    let topics = until(&http, "the dead-letter topic", "/api/dead-letters", |t| {
        t[0]["messages"] == 2
    })
    .await;
    assert_eq!(topics[0]["name"], "dlq.payments");
    let letters = http.get("/api/dead-letters/dlq.payments").await.json();
    let first = &letters[0];
    assert_eq!(first["original_topic"], "payments");
    assert_eq!(first["original_offset"], 0);
    assert_eq!(first["group"], "billing");
    assert_eq!(first["attempts"], 1);
    assert!(
        first["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("bad amount in p0"),
        "{first}"
    );
    assert!(first["handled"].is_null());

    // Redrive: stored back in payments once, however often it is asked.
    let mut again = client
        .subscribe("payments", StartPosition::Offset(3))
        .await?;
    let pick = json!({ "offsets": [0] });
    let done = http
        .act(
            "POST",
            "/api/dead-letters/dlq.payments/redrive",
            Some(pick.clone()),
        )
        .await
        .json();
    assert_eq!(
        done[0]["outcome"]["Stored"][0],
        json!({ "topic": "payments", "offset": 3, "duplicate": false }),
        "{done}"
    );
    let twice = http
        .act("POST", "/api/dead-letters/dlq.payments/redrive", Some(pick))
        .await
        .json();
    assert_eq!(
        twice[0]["outcome"]["Stored"][0]["duplicate"], true,
        "{twice}"
    );
    let redriven = collect(&mut again, 1, WAIT).await;
    let m = &redriven[0];
    assert_eq!(
        (m.offset, &m.payload[..], m.key.as_deref()),
        (3, &b"p0"[..], Some(&b"acct-1"[..]))
    );
    assert!(
        m.headers.iter().all(|(n, _)| !n.starts_with("sluice-dlq-")),
        "{:?}",
        m.headers
    );
    assert!(m.headers.contains(&("trace".into(), "t0".into())));
    assert!(m
        .headers
        .contains(&("sluice-redriven-from".into(), "dlq.payments@0".into())));
    // The group sees it again, and it can be acked this time.
    let d = bounded("the redriven delivery", member.recv())
        .await
        .expect("open")?;
    assert_eq!((d.message.offset, &d.message.payload[..]), (3, &b"p0"[..]));
    d.ack().await?;

    // Discard the other; both are marked, nothing else is published.
    let done = http
        .act(
            "POST",
            "/api/dead-letters/dlq.payments/discard",
            Some(json!({ "offsets": [1, 9] })),
        )
        .await
        .json();
    assert!(done[0]["error"].is_null(), "{done}");
    assert_eq!(done[1]["error"]["code"], "not_found", "{done}");
    let letters = http.get("/api/dead-letters/dlq.payments").await.json();
    assert_eq!(letters[0]["handled"]["action"], "redriven");
    assert_eq!(letters[0]["handled"]["to_offset"], 3);
    assert_eq!(letters[1]["handled"]["action"], "discarded");
    assert_eq!(letters[1]["handled"]["by"], "anonymous");
    assert_eq!(client.topic_info("payments").await?.messages, 4);

    // A "dead letter" a client wrote itself, naming a topic whose dead
    // letters go elsewhere, is not redriven there.
    let forged = client
        .publish_message(
            Message::new("dlq.payments", "transfer everything")
                .header("sluice-dlq-topic", "billing.charge"),
        )
        .await?;
    let done = http
        .act(
            "POST",
            "/api/dead-letters/dlq.payments/redrive",
            Some(json!({ "offsets": [forged.offset] })),
        )
        .await
        .json();
    assert_eq!(done[0]["error"]["code"], "bad_request", "{done}");
    assert!(
        done[0]["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("refused"),
        "{done}"
    );
    assert!(
        client.topic_info("billing.charge").await.is_err(),
        "nothing went there"
    );
    assert!(
        bounded("no more redrives", async {
            tokio::time::timeout(Duration::from_millis(300), again.recv())
                .await
                .is_err()
        })
        .await
    );
    Ok(())
}

#[tokio::test]
async fn the_plugins_page_shows_stages_outcomes_errors_and_refused_versions() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let filter = dir.path().join("filter.wasm");
    std::fs::copy(plugin_dist("filter_json.wasm"), &filter)?;
    let toml = format!(
        r#"
[[plugin]]
name = "drop-tests"
path = "{filter}"
config = {{ conditions = [{{ field = "test", exists = false }}] }}

[[plugin]]
name = "crash"
path = "{hostile}"
config = {{ mode = "trap" }}

[[pipeline]]
topics = "orders.>"
stages = ["drop-tests"]

[[pipeline]]
topics = "fragile"
stages = ["crash"]
on_error = "dead-letter"
"#,
        filter = filter.display(),
        hostile = plugin_dist("test_hostile.wasm").display(),
    );
    let parsed = sluice::Config::parse(&toml, "<test>")?;
    let broker = TestBroker::start_with(move |c| {
        c.plugins = parsed.plugins;
        c.pipelines = parsed.pipelines;
    })
    .await?;
    let client = broker.client().await?;
    let ack = client
        .publish_batch(vec![
            Message::new("orders.eu", r#"{"id":1}"#),
            Message::new("orders.eu", r#"{"id":2,"test":true}"#),
        ])
        .await?;
    assert_eq!(ack.outcomes[1], MessageOutcome::Dropped);
    let ack = client
        .publish_batch(vec![Message::new("fragile", "x")])
        .await?;
    assert!(
        matches!(ack.outcomes[0], MessageOutcome::DeadLettered { .. }),
        "{ack:?}"
    );

    let http = open_session(&broker).await;
    let page = http.get("/api/plugins").await.json();
    assert_eq!(page["pipelines"][0]["pattern"], "orders.>");
    assert_eq!(page["pipelines"][0]["stages"][0]["plugin"], "drop-tests");
    let plugin = |page: &Value, name: &str| {
        page["plugins"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == name).cloned())
            .expect("the plugin")
    };
    let drop_tests = plugin(&page, "drop-tests");
    assert_eq!(
        (
            drop_tests["outcomes"]["pass"].as_u64(),
            drop_tests["outcomes"]["drop"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(drop_tests["calls"], 1, "one batch");
    assert!(
        drop_tests["history"][0]["loaded_from"].is_string(),
        "{drop_tests}"
    );
    let crash = plugin(&page, "crash");
    assert_eq!(crash["errors"], 1);
    assert!(
        crash["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("trap"),
        "{crash}"
    );
    let overview = http.get("/api/overview").await.json();
    assert_eq!(
        overview["failing_plugins"][0]["name"], "crash",
        "{overview}"
    );

    // A broken new version is refused; the history says so and why.
    std::fs::write(&filter, b"not a component")?;
    let page = until(&http, "the refused version", "/api/plugins", |p| {
        plugin(p, "drop-tests")["history"]
            .as_array()
            .is_some_and(|h| h.iter().any(|e| e["refused"].is_string()))
    })
    .await;
    let history = plugin(&page, "drop-tests")["history"].clone();
    assert_eq!(history.as_array().map(Vec::len), Some(2), "{history}");
    assert!(history[0]["refused"].is_null());
    assert!(
        !history[1]["refused"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{history}"
    );
    // The running version stays.
    assert_eq!(plugin(&page, "drop-tests")["hash"], drop_tests["hash"]);
    Ok(())
}
