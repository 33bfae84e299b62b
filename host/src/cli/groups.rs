//! `sluice groups`: list, info, reset.

use anyhow::Context;
use sluice_client::GroupInfo;

use super::args::{GroupsAction, GroupsArgs};
use super::connect::connect;
use super::subscribe::parse_start;

fn totals(g: &GroupInfo) -> (u64, u64) {
    g.topics.iter().fold((0, 0), |(lag, pending), t| {
        (lag + t.lag, pending + t.pending)
    })
}

fn to_json(g: &GroupInfo) -> serde_json::Value {
    let (lag, pending) = totals(g);
    serde_json::json!({
        "name": g.name,
        "pattern": g.pattern,
        "lag": lag,
        "pending": pending,
        "redeliveries": g.redeliveries,
        "dead_lettered": g.dead_lettered,
        "members": g.members.iter().map(|m| serde_json::json!({
            "id": m.id, "client": m.client, "in_flight": m.in_flight,
            "max_in_flight": m.max_in_flight, "delivered": m.delivered,
        })).collect::<Vec<_>>(),
        "topics": g.topics.iter().map(|t| serde_json::json!({
            "topic": t.topic, "ack_floor": t.ack_floor, "cursor": t.cursor,
            "end_offset": t.end_offset, "lag": t.lag, "pending": t.pending,
        })).collect::<Vec<_>>(),
        "options": {
            "start": format!("{:?}", g.options.start),
            "ack_wait_ms": g.options.ack_wait_ms,
            "backoff_ms": g.options.backoff_ms,
            "max_deliver": g.options.max_deliver,
            "key_ordered": g.options.key_ordered,
            "dead_letter_topic": g.options.dead_letter_topic,
        },
    })
}

fn print_info(g: &GroupInfo) {
    let (lag, pending) = totals(g);
    println!("group:         {}", g.name);
    println!("pattern:       {}", g.pattern);
    println!("lag:           {lag}");
    println!("pending:       {pending}");
    println!("redeliveries:  {}", g.redeliveries);
    println!("dead-lettered: {}", g.dead_lettered);
    println!(
        "settings:      ack_wait={}ms backoff={:?}ms max_deliver={} key_ordered={} dead_letter_topic={}",
        g.options.ack_wait_ms,
        g.options.backoff_ms,
        g.options.max_deliver,
        g.options.key_ordered,
        g.options.dead_letter_topic.as_deref().unwrap_or("dlq.<topic>")
    );
    println!("members:       {}", g.members.len());
    for m in &g.members {
        println!(
            "  #{:<6} {:<32} in flight {}/{}  delivered {}",
            m.id, m.client, m.in_flight, m.max_in_flight, m.delivered
        );
    }
    println!("topics:");
    for t in &g.topics {
        println!(
            "  {:<40} floor {:>10}  cursor {:>10}  end {:>10}  lag {:>8}  pending {:>6}",
            t.topic, t.ack_floor, t.cursor, t.end_offset, t.lag, t.pending
        );
    }
}

/// Runs `sluice groups`.
pub async fn run(args: GroupsArgs) -> anyhow::Result<()> {
    let client = connect(&args.client).await?;
    match args.action.unwrap_or(GroupsAction::List { json: false }) {
        GroupsAction::List { json } => {
            let groups = client.list_groups().await?;
            if json {
                for g in &groups {
                    println!("{}", to_json(g));
                }
            } else {
                println!(
                    "{:<32} {:<32} {:>8} {:>10} {:>10} {:>12} {:>8}",
                    "GROUP", "PATTERN", "MEMBERS", "LAG", "PENDING", "REDELIVERED", "DLQ"
                );
                for g in &groups {
                    let (lag, pending) = totals(g);
                    println!(
                        "{:<32} {:<32} {:>8} {:>10} {:>10} {:>12} {:>8}",
                        g.name,
                        g.pattern,
                        g.members.len(),
                        lag,
                        pending,
                        g.redeliveries,
                        g.dead_lettered
                    );
                }
            }
        }
        GroupsAction::Info { name, json } => {
            let info = client.group_info(name).await?;
            if json {
                println!("{}", to_json(&info));
            } else {
                print_info(&info);
            }
        }
        GroupsAction::Reset { name, to } => {
            let position = parse_start(&to).context("--to")?;
            let info = client.reset_group(name, position).await?;
            println!("reset {} to {to}", info.name);
            print_info(&info);
        }
    }
    client.close().await;
    Ok(())
}
