//! The admin listener: `/metrics` scraped over HTTP after known traffic,
//! `/healthz`, and bad requests.

use std::net::SocketAddr;
use std::time::Duration;

use sluice_client::{ConsumeOptions, StartPosition};
use sluice_tests::{bounded, collect, TestBroker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP request; (status, body).
async fn get(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = bounded("an admin connection", tokio::net::TcpStream::connect(addr))
        .await
        .expect("admin listener reachable");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    bounded("an admin response", stream.read_to_end(&mut response))
        .await
        .unwrap();
    let text = String::from_utf8(response).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a full response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, body.to_owned())
}

/// The value of the sample line `name` (with its labels) in `text`.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_count_known_traffic() -> anyhow::Result<()> {
    let pass = sluice_tests::plugin_dist("test_hostile.wasm");
    let toml = format!(
        "[[plugin]]\nname = \"pass\"\npath = \"{}\"\nconfig = {{ mode = \"pass\" }}\n\n[[pipeline]]\ntopics = \"p.>\"\nstages = [\"pass\"]\n",
        pass.display()
    );
    let parsed = sluice::Config::parse(&toml, "<test>")?;
    let broker = TestBroker::start_with(move |c| {
        c.plugins = parsed.plugins;
        c.pipelines = parsed.pipelines;
    })
    .await?;
    let admin = broker.admin_addr().expect("admin listener on by default");
    let client = broker.client().await?;

    for i in 0..10 {
        client.publish("m.t", vec![b'a' + i; 100]).await?;
    }
    client.publish("p.x", "one").await?;
    client.publish("p.x", "two").await?;
    let mut sub = client.subscribe("m.t", StartPosition::Earliest).await?;
    collect(&mut sub, 10, Duration::from_secs(10)).await;
    let mut member = client
        .consume("m.t", "g", ConsumeOptions::default().max_in_flight(3))
        .await?;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(
            bounded("a group delivery", member.recv())
                .await
                .expect("open")?,
        );
    }

    let (status, text) = get(
        admin,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let expect = [
        ("sluice_messages_in_total{topic=\"m.t\"}", 10.0),
        ("sluice_bytes_in_total{topic=\"m.t\"}", 1000.0),
        ("sluice_messages_out_total{topic=\"m.t\"}", 13.0),
        ("sluice_bytes_out_total{topic=\"m.t\"}", 1300.0),
        ("sluice_messages_in_total{topic=\"p.x\"}", 2.0),
        ("sluice_topic_messages{topic=\"m.t\"}", 10.0),
        ("sluice_publish_latency_seconds_count", 12.0),
        ("sluice_publish_errors_total", 0.0),
        ("sluice_connections", 1.0),
        ("sluice_group_members{group=\"g\"}", 1.0),
        ("sluice_group_pending{group=\"g\",topic=\"m.t\"}", 3.0),
        ("sluice_group_lag{group=\"g\",topic=\"m.t\"}", 7.0),
        ("sluice_group_redeliveries_total{group=\"g\"}", 0.0),
        ("sluice_plugin_calls_total{plugin=\"pass\"}", 2.0),
        ("sluice_plugin_messages_total{plugin=\"pass\"}", 2.0),
        ("sluice_plugin_errors_total{plugin=\"pass\"}", 0.0),
        ("sluice_plugin_reloads_total{plugin=\"pass\"}", 0.0),
    ];
    for (name, value) in expect {
        assert_eq!(sample(&text, name), Some(value), "{name} in:\n{text}");
    }
    assert!(
        text.contains("# TYPE sluice_publish_latency_seconds histogram"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"), "{text}");

    // An ack frees a credit: one more delivery, so the same pending count
    // and the lag down by one.
    held[0].ack().await?;
    held.push(
        bounded("the next group delivery", member.recv())
            .await
            .expect("open")?,
    );
    let (_, text) = get(admin, "GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    for (name, value) in [
        ("sluice_messages_out_total{topic=\"m.t\"}", 14.0),
        ("sluice_group_pending{group=\"g\",topic=\"m.t\"}", 3.0),
        ("sluice_group_lag{group=\"g\",topic=\"m.t\"}", 6.0),
    ] {
        assert_eq!(sample(&text, name), Some(value), "{name} in:\n{text}");
    }

    // A second connection shows up; health and bad requests.
    let other = broker.client().await?;
    let (_, text) = get(admin, "GET /metrics HTTP/1.0\r\n\r\n").await;
    assert_eq!(sample(&text, "sluice_connections"), Some(2.0), "{text}");
    assert_eq!(
        sample(&text, "sluice_connections_accepted_total"),
        Some(2.0),
        "{text}"
    );
    drop(other);
    assert_eq!(
        get(admin, "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n").await,
        (200, "ok\n".into())
    );
    assert_eq!(
        get(admin, "GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n")
            .await
            .0,
        404
    );
    assert_eq!(
        get(admin, "POST /metrics HTTP/1.1\r\nConnection: close\r\n\r\n")
            .await
            .0,
        405
    );
    assert_eq!(get(admin, "garbage\r\n\r\n").await.0, 400);
    Ok(())
}
