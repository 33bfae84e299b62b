//! `sluice sub`: prints what a subscription receives, as text or JSON lines.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use base64::Engine;
use sluice_client::{Delivered, StartPosition};

use super::args::SubArgs;
use super::connect::connect;

/// Parses `--from`: earliest, latest, an offset, an RFC 3339 time, or a
/// duration meaning that long ago.
pub fn parse_start(s: &str) -> anyhow::Result<StartPosition> {
    match s {
        "earliest" | "first" | "beginning" => return Ok(StartPosition::Earliest),
        "latest" | "new" | "now" => return Ok(StartPosition::Latest),
        _ => {}
    }
    if let Ok(offset) = s.parse::<u64>() {
        return Ok(StartPosition::Offset(offset));
    }
    if let Ok(time) = humantime::parse_rfc3339_weak(s) {
        let ms = time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        return Ok(StartPosition::Timestamp(ms));
    }
    if let Ok(ago) = humantime::parse_duration(s) {
        let then = SystemTime::now().checked_sub(ago).unwrap_or(UNIX_EPOCH);
        let ms = then
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        return Ok(StartPosition::Timestamp(ms));
    }
    bail!("--from {s:?}: expected earliest, latest, an offset, an RFC 3339 time (2026-01-31T12:00:00Z) or a duration ago (10m)")
}

fn bytes_field(map: &mut serde_json::Map<String, serde_json::Value>, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            map.insert(name.to_owned(), text.into());
        }
        Err(_) => {
            map.insert(
                format!("{name}_base64"),
                base64::engine::general_purpose::STANDARD
                    .encode(bytes)
                    .into(),
            );
        }
    }
}

fn timestamp_text(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

/// One delivery as a JSON object.
pub fn to_json(m: &Delivered) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    map.insert("topic".into(), m.topic.clone().into());
    map.insert("offset".into(), m.offset.into());
    map.insert("timestamp".into(), timestamp_text(m.timestamp_ms).into());
    map.insert("timestamp_ms".into(), m.timestamp_ms.into());
    match &m.key {
        Some(key) => bytes_field(&mut map, "key", key),
        None => {
            map.insert("key".into(), serde_json::Value::Null);
        }
    }
    let headers: serde_json::Map<String, serde_json::Value> = m
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into()))
        .collect();
    map.insert("headers".into(), headers.into());
    if let Some(id) = &m.id {
        map.insert("id".into(), id.clone().into());
    }
    bytes_field(&mut map, "payload", &m.payload);
    serde_json::Value::Object(map)
}

/// Runs `sluice sub`.
pub async fn run(args: SubArgs) -> anyhow::Result<()> {
    let default_from = if args.group.is_some() {
        "earliest"
    } else {
        "latest"
    };
    let from_text = args.from.as_deref().unwrap_or(default_from);
    let from = parse_start(from_text)?;
    if args.count == Some(0) {
        return Ok(());
    }
    let client = connect(&args.client).await?;
    if let Some(group) = args.group.clone() {
        let result = consume(&client, &args, group, from).await;
        client.close().await;
        return result;
    }
    let plugin = args
        .plugin
        .clone()
        .map(|name| sluice_client::DeliveryPlugin {
            name,
            config: args.plugin_config.clone(),
        });
    let mut subscription = client
        .subscribe_with(args.pattern.clone(), from, plugin)
        .await
        .with_context(|| format!("failed to subscribe to {}", args.pattern))?;
    // On stderr, so stdout stays the messages alone. From here on nothing
    // published is missed: scripts and tests wait for this line.
    eprintln!("subscribed to {} from {from_text}", args.pattern);
    let stdout = std::io::stdout();
    let mut received = 0u64;
    let mut reported_dropped = 0;
    while let Some(delivery) = subscription.recv().await {
        let m = delivery.context("subscription failed")?;
        let mut out = stdout.lock();
        let written = if args.json {
            writeln!(out, "{}", to_json(&m))
        } else {
            writeln!(
                out,
                "{}@{}: {}",
                m.topic,
                m.offset,
                String::from_utf8_lossy(&m.payload)
            )
        };
        if written.and_then(|()| out.flush()).is_err() {
            // Reader went away (e.g. piped into head).
            break;
        }
        if subscription.dropped() > reported_dropped {
            eprintln!(
                "warning: {} messages dropped so far: this live subscriber is falling behind",
                subscription.dropped()
            );
            reported_dropped = subscription.dropped();
        }
        received += 1;
        if Some(received) == args.count {
            break;
        }
    }
    drop(subscription);
    client.close().await;
    Ok(())
}

fn print(m: &Delivered, json: bool) -> bool {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let written = if json {
        writeln!(out, "{}", to_json(m))
    } else if m.attempt > 1 {
        writeln!(
            out,
            "{}@{} (attempt {}): {}",
            m.topic,
            m.offset,
            m.attempt,
            String::from_utf8_lossy(&m.payload)
        )
    } else {
        writeln!(
            out,
            "{}@{}: {}",
            m.topic,
            m.offset,
            String::from_utf8_lossy(&m.payload)
        )
    };
    written.and_then(|()| out.flush()).is_ok()
}

/// `sluice sub --group`: prints each delivery, then acks it (or nacks or
/// rejects it with `--nack` / `--reject`).
async fn consume(
    client: &sluice_client::Client,
    args: &SubArgs,
    group: String,
    from: StartPosition,
) -> anyhow::Result<()> {
    let mut options = sluice_client::ConsumeOptions::default()
        .start(from)
        .max_in_flight(args.max_in_flight)
        .key_ordered(args.key_ordered);
    if let Some(n) = args.max_deliver {
        options = options.max_deliver(n);
    }
    if let Some(wait) = args.ack_wait {
        options = options.ack_wait(wait);
    }
    if let Some(name) = &args.plugin {
        options = options.plugin(name.clone(), args.plugin_config.clone());
    } else if let Some(n) = args.count {
        // Take no more than will be processed, so nothing is held and
        // handed back (as a redelivery) at exit. (Not with a plugin: what it
        // filters out would count against the limit.)
        options = options.limit(n);
    }
    let mut consumer = client
        .consume(args.pattern.clone(), group.clone(), options)
        .await
        .with_context(|| format!("failed to join group {group} on {}", args.pattern))?;
    eprintln!("joined group {group} on {}", args.pattern);
    let mut received = 0u64;
    while let Some(delivery) = consumer.recv().await {
        let delivery = delivery.context("consumer failed")?;
        if !print(&delivery, args.json) {
            break;
        }
        let settled = if args.nack {
            delivery.nack(None).await
        } else if args.reject {
            delivery.reject("rejected by sluice sub --reject").await
        } else {
            delivery.ack().await
        };
        settled
            .with_context(|| format!("failed to settle {}@{}", delivery.topic, delivery.offset))?;
        received += 1;
        if Some(received) == args.count {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_positions() {
        assert_eq!(parse_start("earliest").unwrap(), StartPosition::Earliest);
        assert_eq!(parse_start("latest").unwrap(), StartPosition::Latest);
        assert_eq!(parse_start("42").unwrap(), StartPosition::Offset(42));
        assert_eq!(
            parse_start("2026-01-01T00:00:00Z").unwrap(),
            StartPosition::Timestamp(1_767_225_600_000)
        );
        assert!(matches!(
            parse_start("10m").unwrap(),
            StartPosition::Timestamp(_)
        ));
        let err = parse_start("yesterday-ish").unwrap_err();
        assert!(err.to_string().contains("expected earliest"), "{err}");
    }

    #[test]
    fn json_has_the_documented_fields() {
        let m = Delivered {
            topic: "orders.eu".into(),
            offset: 3,
            timestamp_ms: 1_767_225_600_000,
            key: Some(bytes::Bytes::from_static(&[0xff, 0x00])),
            headers: vec![("region".into(), "eu".into())],
            payload: bytes::Bytes::from_static(b"{\"id\":1}"),
            id: None,
            attempt: 0,
        };
        let j = to_json(&m);
        assert_eq!(j["topic"], "orders.eu");
        assert_eq!(j["offset"], 3);
        assert_eq!(j["timestamp"], "2026-01-01T00:00:00.000Z");
        assert_eq!(j["key_base64"], "/wA=");
        assert_eq!(j["headers"]["region"], "eu");
        assert_eq!(j["payload"], "{\"id\":1}");
    }
}
