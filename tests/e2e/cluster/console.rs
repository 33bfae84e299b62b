//! The console of a cluster node: it shows what any node stored, and a
//! redrive through one node's console is seen, stored once, by the other's.

use serde_json::json;
use sluice_client::ConsumeOptions;
use sluice_tests::{bounded, wait_until, Http, WAIT};

use super::Cluster;

#[tokio::test]
async fn a_nodes_console_shows_and_redrives_what_the_other_node_stored() -> anyhow::Result<()> {
    let cluster = Cluster::start(2).await?;
    let a = cluster.client(0).await?;
    a.publish("payments", "p-0").await?;
    let mut member = a
        .consume("payments", "billing", ConsumeOptions::default())
        .await?;
    bounded("a payment", member.recv())
        .await
        .expect("open")?
        .reject("bad amount")
        .await?;

    // Node 1's console: the topic and the dead letter node 0 stored.
    let mut b = Http::new(cluster.nodes[1].admin_addr().expect("admin"));
    assert_eq!(b.session().await.status, 200);
    let shown = b.get("/api/topics/payments/messages").await.json();
    assert_eq!(shown["messages"][0]["offset"], 0, "{shown}");
    let letters = wait_until("the dead letter on node 1", WAIT, || async {
        let letters = b.get("/api/dead-letters/dlq.payments").await.json();
        if letters[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("bad amount"))
        {
            Ok(letters)
        } else {
            Err(letters)
        }
    })
    .await;
    assert_eq!(letters[0]["original_topic"], "payments");

    // Redriven through node 1, marked on node 0 too; once, both ways.
    let pick = json!({ "offsets": [0] });
    let done = b
        .act(
            "POST",
            "/api/dead-letters/dlq.payments/redrive",
            Some(pick.clone()),
        )
        .await
        .json();
    assert_eq!(done[0]["outcome"]["Stored"][0]["offset"], 1, "{done}");
    let mut a_http = Http::new(cluster.nodes[0].admin_addr().expect("admin"));
    assert_eq!(a_http.session().await.status, 200);
    let again = a_http
        .act("POST", "/api/dead-letters/dlq.payments/redrive", Some(pick))
        .await
        .json();
    assert_eq!(
        again[0]["outcome"]["Stored"][0],
        json!({ "topic": "payments", "offset": 1, "duplicate": true }),
        "{again}"
    );
    let marked = wait_until("the mark on node 0", WAIT, || async {
        let letters = a_http.get("/api/dead-letters/dlq.payments").await.json();
        if letters[0]["handled"]["action"] == "redriven" {
            Ok(letters)
        } else {
            Err(letters)
        }
    })
    .await;
    assert_eq!(marked[0]["handled"]["to_offset"], 1);
    let redriven = bounded("the redriven payment", member.recv())
        .await
        .expect("open")?;
    assert_eq!(
        (redriven.message.offset, &redriven.message.payload[..]),
        (1, &b"p-0"[..])
    );
    Ok(())
}
