//! `sluice trace`: what happened to a message, from the broker's event
//! record: received from whom, each stage's outcome and time, where it was
//! stored, its deliveries, settlements and dead letters.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::{bail, Context};
use sluice_proto::{MessageTrace, TraceKey, TraceReport};

use super::args::TraceArgs;
use super::connect::connect;

/// The key a command line names.
fn key(args: &TraceArgs) -> anyhow::Result<TraceKey> {
    if let Some(id) = &args.id {
        return Ok(TraceKey::Id(id.clone()));
    }
    if let Some(trace) = &args.trace {
        return Ok(TraceKey::Trace(trace.clone()));
    }
    let at = args.at.as_deref().unwrap_or_default();
    let Some((topic, offset)) = at.rsplit_once('@') else {
        bail!("{at:?} is not TOPIC@OFFSET (for example orders@42)");
    };
    let offset = offset
        .parse()
        .with_context(|| format!("{offset:?} in {at:?} is not an offset"))?;
    Ok(TraceKey::At {
        topic: topic.to_owned(),
        offset,
    })
}

pub async fn run(args: TraceArgs) -> anyhow::Result<()> {
    let key = key(&args)?;
    let client = connect(&args.client).await?;
    let report = client.trace(key.clone()).await.context("failed to trace")?;
    client.close().await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for message in &report.messages {
            print_message(message);
        }
    }
    if report.truncated && !args.json {
        eprintln!(
            "more messages matched; these are the oldest {}",
            report.messages.len()
        );
    }
    if report.messages.is_empty() {
        bail!("{}", not_found(&key, &report));
    }
    Ok(())
}

/// Why nothing was found, with what the record covers.
fn not_found(key: &TraceKey, report: &TraceReport) -> String {
    let what = match key {
        TraceKey::At { topic, offset } => format!("{topic}@{offset}"),
        TraceKey::Id(id) => format!("message id {id:?}"),
        TraceKey::Trace(trace) => format!("trace {trace}"),
    };
    if report.record_off {
        return format!(
            "no record of {what}: the broker keeps none ([telemetry.record] enabled = false)"
        );
    }
    let since = report
        .record_oldest_ms
        .map(|ms| format!(" since {}", time(ms)))
        .unwrap_or_default();
    format!(
        "no record of {what} on this broker: it remembers the last {} messages{since}, and only topics you may read",
        report.record_messages
    )
}

fn time(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(at).to_string()
}

fn print_message(m: &MessageTrace) {
    let place = m
        .stored
        .first()
        .map(|p| format!("{}@{}", p.topic, p.offset))
        .unwrap_or_else(|| m.topic.clone());
    let mut names = Vec::new();
    if let Some(id) = &m.id {
        names.push(format!("id {id}"));
    }
    if let Some(trace) = &m.trace_id {
        names.push(format!("trace {trace}"));
    }
    let names = if names.is_empty() {
        String::new()
    } else {
        format!(" ({})", names.join(", "))
    };
    println!("message {place}{names}");
    if m.outcome == crate::trace::query::UNRECORDED {
        println!("  received     (not in the record: published earlier or on another node)");
    } else {
        println!(
            "  received     {} from {} on {}",
            time(m.received_ms),
            m.principal,
            m.topic
        );
    }
    for s in &m.stages {
        let version: String = s.version.chars().take(12).collect();
        let error = s
            .error
            .as_deref()
            .map(|e| format!("  ({e})"))
            .unwrap_or_default();
        println!(
            "  stage        {}@{version}  {:<11} {} µs{error}",
            s.plugin, s.outcome, s.took_us
        );
    }
    let places: Vec<String> = m
        .stored
        .iter()
        .map(|p| {
            let mut text = format!("{}@{}", p.topic, p.offset);
            if p.duplicate {
                text.push_str(" (duplicate)");
            }
            if let Some(reason) = &p.dead_letter {
                text.push_str(&format!(" (dead letter: {reason})"));
            }
            text
        })
        .collect();
    match (m.outcome.as_str(), &m.reason) {
        ("rejected", Some(reason)) => println!("  outcome      rejected: {reason}"),
        ("dropped", _) => println!("  outcome      dropped (not stored)"),
        (outcome, _) => println!("  outcome      {outcome}: {}", places.join(", ")),
    }
    for d in &m.deliveries {
        let to = match (&d.group, d.member, d.subscription) {
            (Some(group), Some(member), _) => {
                format!(
                    "group {group} member {member} ({}), attempt {}",
                    d.principal, d.attempt
                )
            }
            (_, _, Some(sub)) => format!("subscription {sub} ({})", d.principal),
            _ => d.principal.clone(),
        };
        println!(
            "  delivered    {} {}@{} to {to}",
            time(d.at_ms),
            d.topic,
            d.offset
        );
    }
    for s in &m.settlements {
        let member = s.member.map(|m| format!(" member {m}")).unwrap_or_default();
        println!(
            "  settled      {} group {}{member}: {}",
            time(s.at_ms),
            s.group,
            s.action
        );
    }
    for l in &m.dead_letters {
        println!(
            "  dead letter  {} group {} after {} attempts: {} -> {}@{}",
            time(l.at_ms),
            l.group,
            l.attempt,
            l.reason,
            l.topic,
            l.offset
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(at: &str) -> TraceArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            trace: TraceArgs,
        }
        Cli::parse_from(["trace", at]).trace
    }

    #[test]
    fn a_place_is_topic_at_offset() {
        assert_eq!(
            key(&args("orders.eu@42")).unwrap(),
            TraceKey::At {
                topic: "orders.eu".into(),
                offset: 42
            }
        );
        assert!(key(&args("orders")).is_err());
        assert!(key(&args("orders@x")).is_err());
    }
}
