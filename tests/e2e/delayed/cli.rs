//! The command line: `sluice pub --delay / --at / --ttl`, `sluice topics
//! create --default-ttl --dead-letter-expired`, and what `sluice topics
//! info` shows of them.

use sluice_client::{StartPosition, TTL_HEADER};
use sluice_tests::{cli_command, fetch_all, run_command, CommandOutput, TestBroker};

use super::{header, payloads, LIMIT};

async fn sluice(broker: &TestBroker, args: &[&str]) -> anyhow::Result<CommandOutput> {
    let command = cli_command(env!("CARGO_BIN_EXE_sluice-under-test"), broker, args);
    run_command(command, "", LIMIT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_pub_delays_and_expires_and_topics_info_counts_what_waits() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    // Due in an hour: it waits for the whole test.
    let delayed = sluice(&broker, &["pub", "later", "hi", "--delay", "1h"]).await?;
    assert!(delayed.success, "{delayed:?}");
    assert!(
        delayed.stdout.starts_with("delayed for later, due "),
        "{}",
        delayed.stdout
    );
    let info = sluice(&broker, &["topics", "info", "later"]).await?;
    assert!(
        info.stdout.contains("waiting:       1 delayed"),
        "{}",
        info.stdout
    );
    let json = sluice(&broker, &["topics", "info", "later", "--json"]).await?;
    let json: serde_json::Value = serde_json::from_str(&json.stdout)?;
    assert_eq!(
        (json["waiting"].as_u64(), json["messages"].as_u64()),
        (Some(1), Some(0))
    );

    let past = sluice(
        &broker,
        &["pub", "now", "past", "--at", "2020-01-01T00:00:00Z"],
    )
    .await?;
    assert_eq!(past.stdout.trim(), "stored now@0", "{past:?}");
    let ttl = sluice(&broker, &["pub", "now", "brief", "--ttl", "30s"]).await?;
    assert_eq!(ttl.stdout.trim(), "stored now@1", "{ttl:?}");
    let bad = sluice(&broker, &["pub", "now", "x", "--at", "tomorrow"]).await?;
    assert!(!bad.success);
    assert!(bad.stderr.contains("sluice-deliver-at"), "{}", bad.stderr);
    let client = broker.client().await?;
    let all = fetch_all(&client, "now", StartPosition::Earliest).await?;
    assert_eq!(payloads(&all), ["past", "brief"]);
    assert_eq!(header(&all[1], TTL_HEADER), Some("30000"));

    let created = sluice(
        &broker,
        &[
            "topics",
            "create",
            "brief",
            "--default-ttl",
            "1h",
            "--dead-letter-expired",
        ],
    )
    .await?;
    assert!(created.success, "{created:?}");
    let info = sluice(&broker, &["topics", "info", "brief"]).await?;
    assert!(info.stdout.contains("default_ttl:   1h"), "{}", info.stdout);
    assert!(
        info.stdout
            .contains("expired:       dead-lettered by consumer groups"),
        "{}",
        info.stdout
    );
    Ok(())
}
