//! Plugin logs: what a plugin writes (the contract's `log` functions and
//! its stdout) lands in `_sluice.logs.<plugin>` with its version, the
//! batch's topic and the message it is about; a noisy plugin is limited
//! and counted; a component of the previous contract still loads and logs;
//! `sluice plugin logs` prints them.

use std::time::Duration;

use serde_json::Value;
use sluice_client::{Client, Message, StartPosition};
use sluice_tests::{fetch_all, plugin_dist, run_command, wait_until, TestBroker};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// The log lines of `plugin` stored so far, as JSON.
async fn stored_lines(client: &Client, plugin: &str) -> Vec<Value> {
    match fetch_all(
        client,
        &format!("_sluice.logs.{plugin}"),
        StartPosition::Earliest,
    )
    .await
    {
        Ok(lines) => lines
            .iter()
            .map(|l| serde_json::from_slice(&l.payload).expect("a log line is JSON"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Waits until `plugin` has at least `n` stored lines.
async fn wait_lines(client: &Client, plugin: &str, n: usize) -> Vec<Value> {
    wait_until(
        &format!("{n} log lines of {plugin}"),
        Duration::from_secs(15),
        || async {
            let lines = stored_lines(client, plugin).await;
            if lines.len() >= n {
                Ok(lines)
            } else {
                Err(lines)
            }
        },
    )
    .await
}

fn hostile(name: &str, config: &str, topics: &str) -> String {
    format!(
        r#"
[[plugin]]
name = "{name}"
path = "{path}"
config = {config}

[[pipeline]]
topics = "{topics}"
stages = ["{name}"]
"#,
        path = plugin_dist("test_hostile.wasm").display(),
    )
}

#[tokio::test]
async fn plugin_lines_carry_version_topic_and_message_and_the_cli_prints_them() -> anyhow::Result<()>
{
    let toml = hostile("chatty", r#"{ mode = "log" }"#, "logs.in");
    let broker = TestBroker::start_with(super::configure(&toml, |_| {})).await?;
    let client = broker.client().await?;
    client
        .publish_batch(vec![
            Message::new("logs.in", "a"),
            Message::new("logs.in", "b")
                .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01")),
        ])
        .await?;
    // The batch line, the stdout line and one line per message.
    let lines = wait_lines(&client, "chatty", 4).await;
    let version = client
        .list_plugins()
        .await?
        .into_iter()
        .find(|p| p.name == "chatty")
        .expect("listed")
        .hash;
    for line in &lines {
        assert_eq!(line["plugin"], "chatty");
        assert_eq!(line["version"], version.as_str());
        assert_eq!(line["topic"], "logs.in", "{line}");
    }
    let about: Vec<&Value> = lines.iter().filter(|l| !l["index"].is_null()).collect();
    assert_eq!(about.len(), 2, "{lines:#?}");
    assert_eq!(about[1]["index"], 1);
    assert_eq!(about[1]["level"], "warn");
    assert_eq!(about[1]["message"], "about message 1");
    assert_eq!(about[1]["trace_id"], TRACE);
    assert!(
        about[1]["offset"].is_null(),
        "a message being published has no offset yet"
    );
    assert!(about[0]["trace_id"].is_null());
    assert!(
        lines
            .iter()
            .any(|l| l["stream"] == "stdout" && l["message"] == "hostile plugin stdout: 2 messages"),
        "{lines:#?}"
    );

    // The same plugin on a subscription's deliveries: there the offset
    // is known.
    let plugin = sluice_proto::DeliveryPlugin {
        name: "chatty".into(),
        config: None,
    };
    let mut sub = client
        .subscribe_with("logs.in", StartPosition::Earliest, Some(plugin))
        .await?;
    for _ in 0..2 {
        sluice_tests::bounded("a delivery", sub.recv())
            .await
            .expect("open")?;
    }
    let lines = wait_lines(&client, "chatty", 8).await;
    let delivered = lines
        .iter()
        .find(|l| l["index"] == 1 && !l["offset"].is_null())
        .unwrap_or_else(|| panic!("a delivery-side line about message 1: {lines:#?}"));
    assert_eq!(delivered["offset"], 1);
    assert_eq!(delivered["trace_id"], TRACE);

    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sluice-under-test"));
    command
        .args(["plugin", "logs", "chatty", "--since", "1h", "--server"])
        .arg(broker.addr().to_string())
        .arg("--ca")
        .arg(broker.cert_path())
        .env("RUST_LOG", "warn");
    let out = run_command(command, "", Duration::from_secs(20)).await?;
    assert!(out.success, "{}", out.stderr);
    assert!(
        out.stdout.contains(&format!(
            "WARN  chatty@{version} [logs.in #1 trace {TRACE}] about message 1"
        )),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("stdout] hostile plugin stdout: 2 messages"),
        "{}",
        out.stdout
    );

    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sluice-under-test"));
    command
        .args(["plugin", "logs", "nobody", "--server"])
        .arg(broker.addr().to_string())
        .arg("--ca")
        .arg(broker.cert_path());
    let out = run_command(command, "", Duration::from_secs(20)).await?;
    assert!(out.success, "{}", out.stderr);
    assert!(
        out.stderr.contains("plugin nobody has logged nothing yet"),
        "{}",
        out.stderr
    );
    Ok(())
}

#[tokio::test]
async fn a_noisy_plugin_is_limited_and_counted_and_others_go_on() -> anyhow::Result<()> {
    let toml = hostile("noisy", r#"{ mode = "noisy", lines = 50 }"#, "noise.in");
    let toml = format!("{toml}\n[plugins]\nlog_rate = 1\nlog_burst = 20\n");
    let parsed = sluice::Config::parse(&toml, "<test>")?;
    let broker = TestBroker::start_with(move |c| {
        c.plugins = parsed.plugins;
        c.pipelines = parsed.pipelines;
        c.plugin_runtime = parsed.plugin_runtime;
    })
    .await?;
    let client = broker.client().await?;
    let messages: Vec<Message> = (0..10)
        .map(|i| Message::new("noise.in", format!("{i}")))
        .collect();
    let ack = client.publish_batch(messages).await?;
    assert_eq!(ack.outcomes.len(), 10);
    // Other topics are not held up by the noise.
    client
        .publish_batch(vec![Message::new("quiet", "q")])
        .await?;

    let status = wait_until(
        "the noisy plugin's counts",
        Duration::from_secs(15),
        || async {
            let plugins = client.list_plugins().await.map_err(|e| e.to_string())?;
            let noisy = plugins
                .into_iter()
                .find(|p| p.name == "noisy")
                .ok_or("not listed")?;
            if noisy.log_lines + noisy.logs_dropped >= 500 {
                Ok(noisy)
            } else {
                Err(format!(
                    "{} written, {} dropped",
                    noisy.log_lines, noisy.logs_dropped
                ))
            }
        },
    )
    .await;
    // 500 lines in well under a second at 1 a second with a burst of 20.
    assert!(
        status.log_lines >= 20 && status.log_lines <= 22,
        "{status:?}"
    );
    assert_eq!(status.log_lines + status.logs_dropped, 500, "{status:?}");
    let lines = wait_lines(&client, "noisy", status.log_lines as usize).await;
    assert_eq!(lines.len() as u64, status.log_lines);
    Ok(())
}

#[tokio::test]
async fn a_component_of_the_previous_contract_still_loads_and_logs() -> anyhow::Result<()> {
    let toml = format!(
        r#"
[[plugin]]
name = "legacy"
path = "{path}"

[[pipeline]]
topics = "old.in"
stages = ["legacy"]
"#,
        path = plugin_dist("legacy_contract.wasm").display(),
    );
    let broker = TestBroker::start_with(super::configure(&toml, |_| {})).await?;
    let client = broker.client().await?;
    let ack = client
        .publish_batch(vec![Message::new("old.in", "x")])
        .await?;
    assert!(
        matches!(ack.outcomes[0], sluice_client::MessageOutcome::Stored(_)),
        "{ack:?}"
    );
    let lines = wait_lines(&client, "legacy", 2).await;
    assert_eq!(lines[0]["message"], "legacy plugin ready");
    assert!(lines[0]["topic"].is_null(), "init handles no batch");
    assert_eq!(
        lines[1]["message"],
        "legacy plugin passed 1 messages of old.in"
    );
    Ok(())
}

#[tokio::test]
async fn sluice_plugin_logs_follows_new_lines() -> anyhow::Result<()> {
    use tokio::io::AsyncBufReadExt;
    let toml = hostile("chatty", r#"{ mode = "log" }"#, "follow.in");
    let broker = TestBroker::start_with(super::configure(&toml, |_| {})).await?;
    let client = broker.client().await?;
    let mut follow = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice-under-test"))
        .args(["plugin", "logs", "chatty", "--follow", "--server"])
        .arg(broker.addr().to_string())
        .arg("--ca")
        .arg(broker.cert_path())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = tokio::io::BufReader::new(follow.stdout.take().expect("piped")).lines();
    // Published after the command started: whenever its subscription
    // begins, the log topic is read from its first line.
    for n in 1..=2 {
        let batch = (0..n)
            .map(|i| Message::new("follow.in", format!("{i}")))
            .collect();
        client.publish_batch(batch).await?;
    }
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await? {
            let done = line.contains("hostile plugin saw 2 messages on follow.in");
            seen.push(line);
            if done {
                return anyhow::Ok(true);
            }
        }
        Ok(false)
    })
    .await;
    assert!(matches!(found, Ok(Ok(true))), "{seen:#?}");
    assert!(
        seen.iter()
            .any(|l| l.contains("hostile plugin saw 1 messages on follow.in")),
        "{seen:#?}"
    );
    follow.kill().await?;
    Ok(())
}
