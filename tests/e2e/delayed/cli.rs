//! The command line: `sluice pub --delay / --at / --ttl`, `sluice topics
//! create --default-ttl --dead-letter-expired`, and what `sluice topics
//! info` shows of them.

use sluice_client::{StartPosition, DELIVER_AT_HEADER, TTL_HEADER};
use sluice_tests::{cli_command, fetch_all, run_command, wait_until, CommandOutput, TestBroker};

use super::{header, payloads, LIMIT};

async fn sluice(broker: &TestBroker, args: &[&str]) -> anyhow::Result<CommandOutput> {
    let command = cli_command(env!("CARGO_BIN_EXE_sluice-under-test"), broker, args);
    run_command(command, "", LIMIT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_pub_delays_and_expires_and_topics_info_counts_what_waits() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let delayed = sluice(&broker, &["pub", "later", "hi", "--delay", "2s"]).await?;
    assert!(delayed.success, "{delayed:?}");
    assert!(
        delayed.stdout.starts_with("delayed for later, due "),
        "{}",
        delayed.stdout
    );
    let past = sluice(
        &broker,
        &["pub", "later", "past", "--at", "2020-01-01T00:00:00Z"],
    )
    .await?;
    assert_eq!(past.stdout.trim(), "stored later@0", "{past:?}");
    let ttl = sluice(&broker, &["pub", "later", "brief", "--ttl", "30s"]).await?;
    assert_eq!(ttl.stdout.trim(), "stored later@1", "{ttl:?}");
    let bad = sluice(&broker, &["pub", "later", "x", "--at", "tomorrow"]).await?;
    assert!(!bad.success);
    assert!(bad.stderr.contains("sluice-deliver-at"), "{}", bad.stderr);

    let info = sluice(&broker, &["topics", "info", "later"]).await?;
    assert!(
        info.stdout.contains("waiting:       1 delayed"),
        "{}",
        info.stdout
    );
    let json = sluice(&broker, &["topics", "info", "later", "--json"]).await?;
    let json: serde_json::Value = serde_json::from_str(&json.stdout)?;
    assert_eq!(json["waiting"], 1);

    let client = broker.client().await?;
    let all = wait_until("the delayed one stored", LIMIT, || async {
        match fetch_all(&client, "later", StartPosition::Earliest).await {
            Ok(all) if all.len() == 3 => Ok(all),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(payloads(&all), ["past", "brief", "hi"]);
    assert_eq!(header(&all[1], TTL_HEADER), Some("30000"));
    assert!(header(&all[2], DELIVER_AT_HEADER).is_some());

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
