//! Request-reply on a real broker: round trips with a key and headers,
//! nothing stored or seen by subscribers and groups, no responders, a
//! timeout, a responder dying mid-request, an error reply, a late second
//! reply, and a queue group taking turns.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use sluice_client::{ClientError, ConsumeOptions, ErrorCode, Message, Responder, StartPosition};
use sluice_tests::{bounded, cli_command, run_command, TestBroker};

/// A request's own timeout when the test expects an answer well before
/// it: the bound the test waits with is far shorter.
const LONG: Duration = Duration::from_secs(120);

fn code(result: Result<sluice_client::Reply, ClientError>) -> (Option<ErrorCode>, String) {
    match result {
        Ok(reply) => panic!("a reply came: {reply:?}"),
        Err(e) => (e.code(), e.to_string()),
    }
}

/// Answers every request of `responder` with its payload upper-cased and
/// `by` in header `x-by`, until the responder ends.
fn serve(mut responder: Responder, by: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(Ok(request)) = responder.next().await {
            let upper = String::from_utf8_lossy(&request.payload).to_uppercase();
            let reply = sluice_client::Reply {
                headers: vec![("x-by".into(), by.into())],
                payload: upper.into(),
            };
            let _ = request.reply_with(reply).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_answered_and_leaves_no_trace_in_the_log() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let (requester, answerer) = (broker.client().await?, broker.client().await?);
    // A subscriber and a durable group on everything see no request.
    let mut everything = requester.subscribe(">", StartPosition::Latest).await?;
    let mut group = requester
        .consume(">", "audit", ConsumeOptions::default())
        .await?;

    let mut responder = answerer.respond("svc.>").await?;
    let asking = {
        let requester = requester.clone();
        tokio::spawn(async move {
            requester
                .request_message(
                    Message::new("svc.upper", "hello")
                        .key("k-1")
                        .header("x-trace", "t1"),
                    LONG,
                )
                .await
        })
    };
    let request = bounded("the request", responder.next())
        .await
        .expect("one")?;
    assert_eq!(request.topic, "svc.upper");
    assert_eq!(request.payload, "hello");
    assert_eq!(request.key.as_deref(), Some(&b"k-1"[..]));
    assert_eq!(request.header("x-trace"), Some("t1"));
    assert_eq!(
        request.header(sluice_client::REPLY_HEADER),
        None,
        "the token is the client's"
    );
    request.reply("HELLO").await?;
    let reply = bounded("the reply", asking).await??;
    assert_eq!(reply.payload, "HELLO");

    // A second reply to the same request is refused.
    let late = request.reply("again").await.expect_err("answered already");
    assert_eq!(late.code(), Some(ErrorCode::NotWaiting), "{late}");

    // An error reply reaches the requester as one.
    let asking = {
        let requester = requester.clone();
        tokio::spawn(async move { requester.request("svc.fail", "x", LONG).await })
    };
    let request = bounded("the second request", responder.next())
        .await
        .expect("one")?;
    request.reply_error("the ledger is closed").await?;
    let (error, text) = code(bounded("the error reply", asking).await?);
    assert_eq!(error, Some(ErrorCode::ResponderError));
    assert!(text.contains("the ledger is closed"), "{text}");

    // Nothing was stored, listed, delivered or handed to the group.
    let topics = requester.list_topics().await?;
    assert!(
        topics.iter().all(|t| !t.name.starts_with("svc")),
        "{topics:?}"
    );
    requester.publish("marker", "after the requests").await?;
    let first = bounded("the marker", everything.next())
        .await
        .expect("one")?;
    assert_eq!(first.topic, "marker", "the subscriber saw only the marker");
    let delivery = bounded("the group's marker", group.next())
        .await
        .expect("one")?;
    assert_eq!(delivery.topic, "marker", "the group saw only the marker");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_responders_a_timeout_and_a_dying_responder_each_get_a_clear_error() -> anyhow::Result<()>
{
    let broker = TestBroker::start().await?;
    let requester = broker.client().await?;

    // Nobody listens: answered at once, not after the timeout.
    let (error, text) =
        code(bounded("no responders", requester.request("svc.none", "x", LONG)).await);
    assert_eq!(error, Some(ErrorCode::NoResponders));
    assert!(text.contains("svc.none"), "{text}");

    // A responder that never answers: the request times out.
    let silent_client = broker.client().await?;
    let _silent = silent_client.respond("svc.silent").await?;
    let (error, _) = code(
        requester
            .request("svc.silent", "x", Duration::from_millis(300))
            .await,
    );
    assert_eq!(error, Some(ErrorCode::RequestTimeout));

    // A responder whose process dies holding the request: the requester
    // hears at once that no responder is left.
    let doomed = broker.client().await?;
    let mut responder = doomed.respond("svc.doomed").await?;
    let asking = {
        let requester = requester.clone();
        tokio::spawn(async move { requester.request("svc.doomed", "x", LONG).await })
    };
    let _held = bounded("the request", responder.next())
        .await
        .expect("one")?;
    doomed.close().await;
    let (error, text) = code(bounded("the responder's death", asking).await?);
    assert_eq!(error, Some(ErrorCode::NoResponders), "{text}");

    // Bad requests get clear errors.
    let (error, _) = code(requester.request("svc.*", "x", LONG).await);
    assert_eq!(error, Some(ErrorCode::InvalidTopic));
    let (error, text) = code(
        requester
            .request("svc.silent", "x", Duration::from_secs(3600))
            .await,
    );
    assert_eq!(error, Some(ErrorCode::InvalidArgument));
    assert!(text.contains("timeout"), "{text}");
    let forged = requester
        .request_message(
            Message::new("svc.silent", "x").header("sluice-reply", "someone-elses-token"),
            LONG,
        )
        .await;
    let (error, text) = code(forged);
    assert_eq!(error, Some(ErrorCode::InvalidArgument));
    assert!(text.contains("sluice-reply"), "{text}");
    let bad = requester
        .respond("svc.>.x")
        .await
        .expect_err("a bad pattern");
    assert_eq!(bad.code(), Some(ErrorCode::InvalidPattern), "{bad}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_group_shares_requests_and_plain_responders_see_them_all() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let (a, b, requester) = (
        broker.client().await?,
        broker.client().await?,
        broker.client().await?,
    );
    let workers = [
        serve(a.respond_in_group("jobs.>", "workers").await?, "a"),
        serve(b.respond_in_group("jobs.>", "workers").await?, "b"),
    ];
    let mut by: BTreeMap<String, u32> = BTreeMap::new();
    for i in 0..20 {
        let reply = bounded(
            "a job's reply",
            requester.request("jobs.run", format!("job {i}"), LONG),
        )
        .await?;
        assert_eq!(reply.payload, format!("JOB {i}"));
        let who = reply
            .headers
            .iter()
            .find(|(k, _)| k == "x-by")
            .map(|(_, v)| v.clone())
            .expect("x-by");
        *by.entry(who).or_default() += 1;
    }
    assert_eq!(
        by,
        BTreeMap::from([("a".into(), 10), ("b".into(), 10)]),
        "in turn"
    );

    // A plain responder gets every request beside the group's member; the
    // first reply wins (here the watcher never answers, the group does).
    let watcher_client = broker.client().await?;
    let mut watcher = watcher_client.respond("jobs.>").await?;
    for i in 0..3 {
        let reply = bounded(
            "a job's reply",
            requester.request("jobs.run", format!("w{i}"), LONG),
        )
        .await?;
        assert_eq!(reply.payload, format!("W{i}"));
        let seen = bounded("the watcher's copy", watcher.next())
            .await
            .expect("one")?;
        assert_eq!(seen.payload, format!("w{i}"));
    }
    for worker in workers {
        worker.abort();
    }
    Ok(())
}

/// `sluice ARGS...` against `broker`.
fn sluice(broker: &TestBroker, args: &[&str]) -> std::process::Command {
    cli_command(env!("CARGO_BIN_EXE_sluice-under-test"), broker, args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_req_and_sluice_reply_answer_from_the_shell() -> anyhow::Result<()> {
    use tokio::io::AsyncBufReadExt;
    let broker = TestBroker::start().await?;
    let limit = Duration::from_secs(30);

    // `sluice reply` runs its command once per request; it says when it
    // listens, on standard error.
    let mut replier = tokio::process::Command::from(sluice(
        &broker,
        &[
            "reply",
            "svc.>",
            "--exec",
            r#"if [ "$SLUICE_TOPIC" = svc.fail ]; then echo "no such account" >&2; exit 3; fi; tr a-z A-Z"#,
            "--count",
            "2",
        ],
    ))
    .stderr(std::process::Stdio::piped())
    .stdout(std::process::Stdio::null())
    .kill_on_drop(true)
    .spawn()?;
    let mut lines = tokio::io::BufReader::new(replier.stderr.take().expect("piped")).lines();
    let ready = bounded("the replier to listen", async {
        while let Some(line) = lines.next_line().await? {
            if line.contains("answering requests on svc.>") {
                return Ok::<_, std::io::Error>(true);
            }
        }
        Ok(false)
    })
    .await?;
    assert!(ready, "the replier ended before it listened");

    let out = run_command(
        sluice(&broker, &["req", "svc.upper", "hello world"]),
        "",
        limit,
    )
    .await?;
    assert!(out.success, "{}", out.stderr);
    assert_eq!(out.stdout, "HELLO WORLD\n");

    let out = run_command(sluice(&broker, &["req", "svc.fail", "x"]), "", limit).await?;
    assert!(!out.success);
    assert!(
        out.stderr.contains("responder_error") && out.stderr.contains("no such account"),
        "{}",
        out.stderr
    );

    // Two answered: the replier exits by itself.
    let status = bounded("the replier to finish", replier.wait()).await?;
    assert!(status.success(), "{status}");

    // Nobody listens now: at once, exit 1 and why.
    let out = run_command(
        sluice(&broker, &["req", "svc.upper", "x", "--timeout", "60s"]),
        "",
        limit,
    )
    .await?;
    assert!(!out.success);
    assert!(out.stderr.contains("no_responders"), "{}", out.stderr);

    // A responder that never answers: the timeout, exit 1.
    let client = broker.client().await?;
    let _silent = client.respond("svc.slow").await?;
    let out = run_command(
        sluice(&broker, &["req", "svc.slow", "x", "--timeout", "200ms"]),
        "",
        limit,
    )
    .await?;
    assert!(!out.success);
    assert!(out.stderr.contains("request_timeout"), "{}", out.stderr);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routing_plugin_routes_a_request_and_a_validator_refuses_a_bad_one() -> anyhow::Result<()>
{
    let toml = format!(
        r#"
[[plugin]]
name = "route-by-region"
path = "{route}"
config = {{ header = "region", prefix = "svc.", fallback = "svc.unrouted" }}

[[plugin]]
name = "validate"
path = "{validate}"
[plugin.config.schema]
type = "object"
required = ["sku"]

[[pipeline]]
topics = "ask.>"
stages = ["validate", "route-by-region"]
"#,
        route = sluice_tests::plugin_dist("route_by_header.wasm").display(),
        validate = sluice_tests::plugin_dist("validate_json_schema.wasm").display(),
    );
    let broker = TestBroker::start_with(crate::pipelines::with_plugins(&toml)).await?;
    let (requester, answerer) = (broker.client().await?, broker.client().await?);
    let _eu = serve(answerer.respond("svc.eu").await?, "eu");
    let _us = serve(answerer.respond("svc.us").await?, "us");

    for (region, by) in [("eu", "eu"), ("us", "us")] {
        let reply = bounded(
            "a routed reply",
            requester.request_message(
                Message::new("ask.price", r#"{"sku":"a-1"}"#).header("region", region),
                LONG,
            ),
        )
        .await?;
        assert_eq!(reply.payload, r#"{"SKU":"A-1"}"#);
        assert!(
            reply.headers.contains(&("x-by".into(), by.into())),
            "{reply:?}"
        );
    }
    // Routed where nobody listens: no responders, at once.
    let (error, text) = code(
        bounded(
            "no responders after the route",
            requester.request_message(
                Message::new("ask.price", r#"{"sku":"a-1"}"#).header("region", "apac"),
                LONG,
            ),
        )
        .await,
    );
    assert_eq!(error, Some(ErrorCode::NoResponders));
    assert!(text.contains("svc.apac"), "{text}");
    // A request the validator refuses never reaches a responder.
    let (error, text) = code(
        bounded(
            "the validator's refusal",
            requester.request_message(
                Message::new("ask.price", r#"{"id":1}"#).header("region", "eu"),
                LONG,
            ),
        )
        .await,
    );
    assert_eq!(error, Some(ErrorCode::Rejected));
    assert!(text.contains("sku"), "{text}");
    Ok(())
}
