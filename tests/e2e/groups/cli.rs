//! The command line as a group member and an observer: `sluice sub --group`
//! and `sluice groups info|list`.

use std::collections::BTreeSet;
use std::time::Duration;

use sluice_tests::{cli_command, run_command, TestBroker};

use super::{publish_n, totals, wait_members};

/// How long one run of the command line may take.
const CLI_LIMIT: Duration = Duration::from_secs(20);

/// Runs the CLI with `args` against `broker`; returns (exit success, stdout, stderr).
async fn cli(broker: &TestBroker, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let command = cli_command(env!("CARGO_BIN_EXE_sluice-under-test"), broker, args);
    let out = run_command(command, "", CLI_LIMIT).await?;
    Ok((out.success, out.stdout, out.stderr))
}

#[tokio::test]
async fn the_cli_consumes_as_a_group_member_and_shows_groups() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    publish_n(&client, "cli.t", 5).await?;

    let (ok, out, err) = cli(
        &broker,
        &[
            "sub", "cli.t", "--group", "g", "--count", "3", "--from", "earliest",
        ],
    )
    .await?;
    assert!(ok, "sluice sub failed; stdout:\n{out}\nstderr:\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    for line in &lines {
        assert!(line.starts_with("cli.t@"), "{line}");
    }
    let printed: BTreeSet<u64> = lines
        .iter()
        .map(|l| {
            l["cli.t@".len()..]
                .split(':')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(printed.len(), 3, "{out}");

    // The CLI acked what it printed and left (the broker sees its connection
    // close on its own time); two messages are left to do (undelivered, or
    // handed back: see the next test).
    wait_members(&client, "g", 0).await;
    let info = client.group_info("g").await?;
    assert_eq!(info.members.len(), 0, "{info:?}");
    let (lag, pending) = totals(&info);
    assert_eq!(
        (lag + pending, info.topics[0].ack_floor),
        (2, 3),
        "{info:?}"
    );

    let (ok, out, err) = cli(&broker, &["groups", "info", "g"]).await?;
    assert!(ok, "groups info failed; stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("group:         g"), "{out}");
    assert!(out.contains("pattern:       cli.t"), "{out}");
    assert!(
        out.contains(&format!("pending:       {pending}\n")),
        "{out}"
    );
    assert!(out.contains(&format!("lag:           {lag}\n")), "{out}");
    assert!(out.contains("cli.t"), "{out}");

    let (ok, out, err) = cli(&broker, &["groups", "info", "g", "--json"]).await?;
    assert!(
        ok,
        "groups info --json failed; stdout:\n{out}\nstderr:\n{err}"
    );
    let json: serde_json::Value = serde_json::from_str(out.trim())?;
    assert_eq!(json["name"], "g", "{json}");
    assert_eq!(json["pattern"], "cli.t", "{json}");
    assert_eq!(json["pending"], pending, "{json}");
    assert_eq!(json["lag"], lag, "{json}");
    assert_eq!(json["members"].as_array().map(Vec::len), Some(0), "{json}");

    let (ok, out, err) = cli(&broker, &["groups", "list"]).await?;
    assert!(ok, "groups list failed; stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().take(2).eq(["g", "cli.t"])),
        "{out}"
    );

    // A second run gets the two that are left.
    let (ok, out, err) = cli(&broker, &["sub", "cli.t", "--group", "g", "--count", "2"]).await?;
    assert!(
        ok,
        "second sluice sub failed; stdout:\n{out}\nstderr:\n{err}"
    );
    let second: BTreeSet<u64> = out
        .lines()
        .map(|l| {
            l["cli.t@".len()..]
                .split([':', ' '])
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(second.len(), 2, "{out}");
    assert!(second.is_disjoint(&printed), "{out}");
    let info = client.group_info("g").await?;
    assert_eq!(totals(&info), (0, 0), "{info:?}");
    Ok(())
}

/// `sub --group --count N` takes no more than N credits "so nothing is held
/// and handed back (as a redelivery) at exit" (host/src/cli/subscribe.rs).
#[tokio::test]
async fn the_cli_with_a_count_leaves_nothing_half_done() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    publish_n(&client, "count.t", 5).await?;
    let (ok, out, err) = cli(&broker, &["sub", "count.t", "--group", "c", "--count", "3"]).await?;
    assert!(ok, "sluice sub failed; stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    let info = client.group_info("c").await?;
    assert_eq!(
        totals(&info),
        (2, 0),
        "after printing and acking 3 of 5, the other 2 should be untouched, not held and handed back: {info:?}"
    );
    let (ok, out, err) = cli(&broker, &["sub", "count.t", "--group", "c", "--count", "2"]).await?;
    assert!(ok, "sluice sub failed; stdout:\n{out}\nstderr:\n{err}");
    assert!(
        !out.contains("attempt"),
        "first deliveries expected:\n{out}"
    );
    Ok(())
}
