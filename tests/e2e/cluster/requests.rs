//! Request-reply across nodes: a request reaches responders on another
//! node, no responder on any node answers at once, and a queue group
//! with members on both nodes answers each request once.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use sluice_client::{ErrorCode, Reply, Responder};
use sluice_tests::bounded;

use super::Cluster;

/// Longer than any bound the test waits with.
const LONG: Duration = Duration::from_secs(120);

/// Answers each request with its payload and `by` in header `x-by`.
fn serve(mut responder: Responder, by: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(Ok(request)) = responder.next().await {
            let reply = Reply {
                headers: vec![("x-by".into(), by.into())],
                payload: request.payload.clone(),
            };
            let _ = request.reply_with(reply).await;
        }
    })
}

fn by(reply: &Reply) -> String {
    reply
        .headers
        .iter()
        .find(|(k, _)| k == "x-by")
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_reach_responders_on_any_node() -> anyhow::Result<()> {
    let cluster = Cluster::start(2).await?;
    let (a, b) = (cluster.client(0).await?, cluster.client(1).await?);

    // Nobody listens anywhere: at once, not after the timeout.
    let none = bounded("no responders", b.request("svc.none", "x", LONG)).await;
    let err = none.expect_err("no responder");
    assert_eq!(err.code(), Some(ErrorCode::NoResponders), "{err}");

    // A responder on node 0 answers a request made on node 1.
    let plain = serve(a.respond("svc.>").await?, "node-0");
    let reply = bounded(
        "a reply from the other node",
        b.request("svc.echo", "hi", LONG),
    )
    .await?;
    assert_eq!(
        (reply.payload.as_ref(), by(&reply).as_str()),
        (&b"hi"[..], "node-0")
    );
    plain.abort();

    // A queue group with a member on each node: each request is answered
    // once, and both nodes take part.
    let workers = [
        serve(a.respond_in_group("jobs.>", "workers").await?, "node-0"),
        serve(b.respond_in_group("jobs.>", "workers").await?, "node-1"),
    ];
    let mut served: BTreeMap<String, u32> = BTreeMap::new();
    for i in 0..40 {
        let reply = bounded(
            "a job's reply",
            a.request("jobs.run", format!("j{i}"), LONG),
        )
        .await?;
        assert_eq!(reply.payload, format!("j{i}"));
        *served.entry(by(&reply)).or_default() += 1;
    }
    assert_eq!(served.values().sum::<u32>(), 40);
    assert_eq!(served.len(), 2, "both nodes' members answered: {served:?}");
    for worker in workers {
        worker.abort();
    }
    Ok(())
}
