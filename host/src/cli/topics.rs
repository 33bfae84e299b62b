//! `sluice topics`: list, create, info, delete.

use sluice_client::{RetentionSpec, TopicInfo};

use super::args::{TopicsAction, TopicsArgs};
use super::connect::connect;

fn info_json(t: &TopicInfo) -> serde_json::Value {
    serde_json::json!({
        "name": t.name,
        "start_offset": t.start_offset,
        "next_offset": t.next_offset,
        "messages": t.messages,
        "bytes": t.bytes,
        "segments": t.segments,
        "oldest_timestamp_ms": t.oldest_timestamp_ms,
        "newest_timestamp_ms": t.newest_timestamp_ms,
        "segment_bytes": t.segment_bytes,
        "dedup_window_ms": t.dedup_window_ms,
        "waiting": t.waiting,
        "default_ttl_ms": t.default_ttl_ms,
        "dead_letter_expired": t.dead_letter_expired,
        "retention": {
            "max_age_ms": t.retention.max_age_ms,
            "max_bytes": t.retention.max_bytes,
            "max_messages": t.retention.max_messages,
        },
    })
}

fn or_unlimited(v: Option<u64>) -> String {
    v.map_or_else(|| "unlimited".to_owned(), |v| v.to_string())
}

fn print_info(t: &TopicInfo) {
    println!("name:          {}", t.name);
    println!("messages:      {}", t.messages);
    println!("offsets:       {}..{}", t.start_offset, t.next_offset);
    println!("bytes:         {}", t.bytes);
    println!("segments:      {}", t.segments);
    println!("segment_bytes: {}", t.segment_bytes);
    println!(
        "dedup_window:  {}",
        humantime::format_duration(std::time::Duration::from_millis(t.dedup_window_ms))
    );
    println!(
        "retention:     max_age={} max_bytes={} max_messages={}",
        t.retention.max_age_ms.map_or_else(
            || "unlimited".to_owned(),
            |ms| humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
        ),
        or_unlimited(t.retention.max_bytes),
        or_unlimited(t.retention.max_messages)
    );
    println!(
        "default_ttl:   {}",
        t.default_ttl_ms.map_or_else(
            || "none".to_owned(),
            |ms| humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
        )
    );
    println!(
        "expired:       {}",
        if t.dead_letter_expired {
            "dead-lettered by consumer groups"
        } else {
            "skipped"
        }
    );
    println!("waiting:       {} delayed", t.waiting);
}

/// Runs `sluice topics`.
pub async fn run(args: TopicsArgs) -> anyhow::Result<()> {
    let client = connect(&args.client).await?;
    match args.action.unwrap_or(TopicsAction::List { json: false }) {
        TopicsAction::List { json } => {
            let topics = client.list_topics().await?;
            if json {
                for t in &topics {
                    println!("{}", info_json(t));
                }
            } else {
                println!(
                    "{:<40} {:>12} {:>12} {:>12} {:>14} {:>8}",
                    "TOPIC", "MESSAGES", "START", "NEXT", "BYTES", "SEGMENTS"
                );
                for t in &topics {
                    println!(
                        "{:<40} {:>12} {:>12} {:>12} {:>14} {:>8}",
                        t.name, t.messages, t.start_offset, t.next_offset, t.bytes, t.segments
                    );
                }
            }
        }
        TopicsAction::Create {
            name,
            max_age,
            max_bytes,
            max_messages,
            segment_bytes,
            dedup_window,
            default_ttl,
            dead_letter_expired,
        } => {
            let retention = (max_age.is_some() || max_bytes.is_some() || max_messages.is_some())
                .then(|| RetentionSpec {
                    max_age_ms: max_age.map(|d| d.as_millis() as u64),
                    max_bytes,
                    max_messages,
                });
            let info = client
                .create_topic_with(sluice_client::CreateTopic {
                    name,
                    retention,
                    segment_bytes,
                    dedup_window_ms: dedup_window.map(|d| d.as_millis() as u64),
                    default_ttl_ms: default_ttl.map(|d| d.as_millis() as u64),
                    dead_letter_expired: dead_letter_expired.then_some(true),
                })
                .await?;
            println!("created {}", info.name);
        }
        TopicsAction::Delete { name } => {
            client.delete_topic(name.clone()).await?;
            println!("deleted {name}");
        }
        TopicsAction::Info { name, json } => {
            let info = client.topic_info(name).await?;
            if json {
                println!("{}", info_json(&info));
            } else {
                print_info(&info);
            }
        }
    }
    client.close().await;
    Ok(())
}
