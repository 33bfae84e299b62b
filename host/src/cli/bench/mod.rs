//! `sluice bench`: throughput and latency scenarios, against a running
//! broker or one started in this process on a temporary directory
//! (`--embedded`). Every scenario is bounded in messages (`--count`) or
//! runs a warm-up and a steady window (`--duration`, see [`window`]), and
//! is bounded in time (`--max-time`).
//!
//! - `publish`: acked durable publishes (producers, batch, window, payload).
//! - `pubsub`: live fan-out, one publisher to N subscribers, as received;
//!   latency is publish to receive (payloads carry their send time).
//! - `queue`: a consumer group of N workers acking a preloaded topic.
//! - `latency`: one message at a time at a fixed rate (open loop: a late
//!   ack does not delay the next send), ack round trip percentiles.
//! - `pipeline`: publish throughput through no plugin, one pass-through
//!   stage, and the example order pipeline (`--embedded` only: the broker
//!   is configured with `--plugins-dir`).
//! - `connections`: idle connections held open (and the broker's memory).
//! - `plugin-costs` (not in `all`): a pass-through stage alone, with a
//!   shadow version, and doing one state get + set per message.
//! - `request` (not in `all`): request-reply round trips, one echoing
//!   responder and `--producers` requester connections.
//!
//! Results: a table at the end, or `--json`, one object per line.
//!
//! # Layout
//!
//! - [`target`]: where clients connect; the embedded broker and its config.
//! - [`window`]: how long a scenario runs and what its figure counts.
//! - [`load`]: the pipelined publisher every throughput scenario shares.
//! - [`publish`], [`pubsub`], [`queue`], [`connections`],
//!   [`plugin_costs`], [`request`]: the scenarios.
//! - [`report`]: one [`report::Outcome`] per scenario, as JSON or a table.

mod connections;
mod load;
mod plugin_costs;
mod publish;
mod pubsub;
mod queue;
mod report;
mod request;
mod target;
mod window;

use anyhow::bail;

use super::args::{BenchArgs, Scenario};
use report::Outcome;

/// Every scenario `all` stands for, in the order they run.
const ALL: [Scenario; 6] = [
    Scenario::Publish,
    Scenario::Pubsub,
    Scenario::Queue,
    Scenario::Latency,
    Scenario::Pipeline,
    Scenario::Connections,
];

/// Runs `sluice bench`.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.batch == 0 || args.window == 0 || args.count == Some(0) {
        bail!("--batch, --window and --count must be at least 1");
    }
    if let Some(window) = args.duration {
        if window.is_zero() {
            bail!("--duration must be longer than 0 s");
        }
        if args.warmup + window > args.max_time {
            bail!(
                "--warmup {} and --duration {} run longer than --max-time {}; raise --max-time",
                humantime::format_duration(args.warmup),
                humantime::format_duration(window),
                humantime::format_duration(args.max_time)
            );
        }
    }
    if args.producers == 0 || args.subscribers == 0 || args.workers == 0 || args.rate == 0 {
        bail!("--producers, --subscribers, --workers and --rate must be at least 1");
    }
    let mut scenarios = Vec::new();
    for s in &args.scenarios {
        match s {
            Scenario::All => scenarios.extend(ALL),
            other => scenarios.push(*other),
        }
    }
    for needs in [Scenario::Pipeline, Scenario::PluginCosts] {
        if scenarios.contains(&needs) && !args.embedded {
            let name = clap::ValueEnum::to_possible_value(&needs)
                .map_or_else(String::new, |v| v.get_name().to_owned());
            bail!("the {name} scenario needs --embedded (the broker must have the bench pipelines configured)");
        }
    }
    let target = target::Target::new(&args).await?;
    let mut results: Vec<Outcome> = Vec::new();
    for scenario in scenarios {
        let rows = match scenario {
            Scenario::Publish => vec![publish::publish(&args, &target).await?],
            Scenario::Pubsub => vec![pubsub::pubsub(&args, &target).await?],
            Scenario::Queue => vec![queue::queue(&args, &target).await?],
            Scenario::Latency => vec![publish::latency(&args, &target).await?],
            Scenario::Pipeline => publish::pipeline(&args, &target).await?,
            Scenario::Connections => vec![connections::connections(&args, &target).await?],
            Scenario::PluginCosts => plugin_costs::plugin_costs(&args, &target).await?,
            Scenario::Request => vec![request::request(&args, &target).await?],
            Scenario::All => unreachable!("expanded above"),
        };
        for row in rows {
            if args.json {
                println!("{}", serde_json::to_string(&row)?);
            }
            results.push(row);
        }
    }
    if !args.json {
        report::print_table(&args, &results);
    }
    target.stop().await
}
