//! `sluice plugin logs NAME [--follow] [--since 10m] [--json]`: what a
//! plugin logged, read from its log topic `_sluice.logs.NAME`.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::{bail, Context};
use sluice_client::{Client, Delivered, ErrorCode, StartPosition};

use super::args::ClientArgs;
use super::connect::connect;
use super::subscribe::parse_start;
use crate::plugin::logs::{topic_for, LogEntry};

/// Lines fetched per request.
const FETCH_LINES: u32 = 1000;

pub async fn run(
    name: &str,
    follow: bool,
    since: Option<&str>,
    json: bool,
    args: &ClientArgs,
) -> anyhow::Result<()> {
    let topic = topic_for(name);
    if sluice_proto::validate_topic(&topic).is_err() {
        bail!("{name:?} is not a plugin name (one a topic name can end with)");
    }
    let from = match since {
        Some(since) => parse_start(since).with_context(|| format!("--since {since:?}"))?,
        None => StartPosition::Earliest,
    };
    let client = connect(args).await?;
    let next = print_stored(&client, &topic, from, json).await?;
    if follow {
        // A topic that does not exist yet is followed from its first line.
        let start = next.map_or(StartPosition::Earliest, StartPosition::Offset);
        let mut lines = client
            .subscribe(topic.as_str(), start)
            .await
            .with_context(|| format!("failed to follow {topic}"))?;
        while let Some(line) = lines.recv().await {
            print(&line.context("the log stream failed")?, json);
        }
    } else if next.is_none() {
        eprintln!("plugin {name} has logged nothing yet ({topic} does not exist)");
    }
    client.close().await;
    Ok(())
}

/// Prints the lines stored from `from` to the end; the offset after the
/// last, or `None` if the topic does not exist yet.
async fn print_stored(
    client: &Client,
    topic: &str,
    mut from: StartPosition,
    json: bool,
) -> anyhow::Result<Option<u64>> {
    loop {
        let batch = match client.fetch(topic, from, FETCH_LINES).await {
            Ok(batch) => batch,
            Err(e) if e.code() == Some(ErrorCode::TopicNotFound) => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("failed to read {topic}")),
        };
        for line in &batch.messages {
            print(line, json);
        }
        if batch.messages.is_empty() || batch.next_offset >= batch.end_offset {
            return Ok(Some(batch.next_offset));
        }
        from = StartPosition::Offset(batch.next_offset);
    }
}

fn print(line: &Delivered, json: bool) {
    if json {
        println!("{}", String::from_utf8_lossy(&line.payload));
        return;
    }
    match serde_json::from_slice::<LogEntry>(&line.payload) {
        Ok(entry) => println!("{}", describe(&entry)),
        Err(_) => println!("{}", String::from_utf8_lossy(&line.payload)),
    }
}

/// One line as text: time, level, plugin@version, topic, message it is
/// about, stream, text.
fn describe(e: &LogEntry) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(e.time_ms.max(0) as u64);
    let mut about = Vec::new();
    if let Some(topic) = &e.topic {
        about.push(topic.clone());
    }
    if let Some(index) = e.index {
        about.push(format!("#{index}"));
    }
    if let Some(offset) = e.offset {
        about.push(format!("@{offset}"));
    }
    if let Some(trace) = &e.trace_id {
        about.push(format!("trace {trace}"));
    }
    if e.stream != "log" {
        about.push(e.stream.clone());
    }
    format!(
        "{} {:<5} {}@{} [{}] {}",
        humantime::format_rfc3339_millis(at),
        e.level.to_uppercase(),
        e.plugin,
        e.version,
        about.join(" "),
        e.message
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_names_its_plugin_topic_and_message() {
        let line = describe(&LogEntry {
            time_ms: 0,
            level: "warn".into(),
            plugin: "router".into(),
            version: "abc".into(),
            stream: "log".into(),
            topic: Some("orders".into()),
            message: "no region".into(),
            index: Some(2),
            trace_id: None,
            offset: Some(9),
        });
        assert_eq!(
            line,
            "1970-01-01T00:00:00.000Z WARN  router@abc [orders #2 @9] no region"
        );
    }
}
