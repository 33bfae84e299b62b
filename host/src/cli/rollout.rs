//! `sluice plugin shadow | canary | diff | promote | rollback`: trying a
//! new plugin version on live traffic before it takes all of it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use sluice_client::{CanaryPlan, RolloutRequest, RolloutState, RolloutStatus, VersionWindow};

use super::connect::{connect, ClientArgs};

/// `sluice plugin shadow NAME FILE | NAME --stop`
#[derive(Debug, Args)]
pub struct ShadowArgs {
    /// The plugin (a `[[plugin]]` of the broker).
    pub name: String,
    /// The new version's component (.wasm), uploaded to the broker.
    #[arg(required_unless_present = "stop", conflicts_with = "stop")]
    pub file: Option<PathBuf>,
    /// End the shadow run.
    #[arg(long)]
    pub stop: bool,
    /// Connection flags.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `sluice plugin canary NAME FILE (--percent P | --by-key P) ...`
#[derive(Debug, Args)]
pub struct CanaryArgs {
    /// The plugin (a `[[plugin]]` of the broker).
    pub name: String,
    /// The new version's component (.wasm), uploaded to the broker.
    pub file: PathBuf,
    /// Share of messages for the canary, in percent (`10` or `10%`).
    #[arg(long, value_parser = parse_percent, required_unless_present = "by_key", conflicts_with = "by_key")]
    pub percent: Option<f64>,
    /// Share of keys for the canary, in percent: one key always gets one
    /// version; messages without a key are split by percentage.
    #[arg(long, value_parser = parse_percent)]
    pub by_key: Option<f64>,
    /// Roll back when the canary's rate of failed messages (traps,
    /// timeouts) is this much above the current version's: `1%` or `0.01`.
    #[arg(long, default_value = "1%", value_parser = parse_rate)]
    pub max_error_rate: f64,
    /// Roll back when its rate of rejected and dead-lettered messages is
    /// this much above the current version's.
    #[arg(long, default_value = "5%", value_parser = parse_rate)]
    pub max_reject_rate: f64,
    /// Roll back when its p99 batch latency is this much above the current
    /// version's (`5ms`); not checked unless given.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub max_p99: Option<Duration>,
    /// The window the rates and latency are measured over.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub window: Duration,
    /// Messages the canary must handle in the window before it is judged.
    #[arg(long, default_value_t = 100)]
    pub min_messages: u64,
    /// Connection flags.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `sluice plugin diff | promote | rollback NAME`
#[derive(Debug, Args)]
pub struct PluginNameArgs {
    /// The plugin.
    pub name: String,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
    /// Connection flags.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `10`, `10%` or `2.5` as a percentage above 0 and at most 100.
fn parse_percent(s: &str) -> Result<f64, String> {
    let n: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{s:?} is not a percentage (10 or 10%)"))?;
    if n > 0.0 && n <= 100.0 {
        Ok(n)
    } else {
        Err(format!(
            "{s}: the share must be above 0 and at most 100 percent"
        ))
    }
}

/// `1%` or `0.01` as a fraction from 0 to 1.
fn parse_rate(s: &str) -> Result<f64, String> {
    let rate = match s.strip_suffix('%') {
        Some(p) => p.parse::<f64>().map(|p| p / 100.0),
        None => s.parse::<f64>(),
    }
    .map_err(|_| format!("{s:?} is not a rate (1% or 0.01)"))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("{s}: a rate is from 0% to 100%"))
    }
}

async fn read(file: &PathBuf) -> anyhow::Result<bytes::Bytes> {
    let wasm = tokio::fs::read(file)
        .await
        .with_context(|| format!("failed to read {}", file.display()))?;
    Ok(wasm.into())
}

async fn ask(client: &ClientArgs, request: RolloutRequest) -> anyhow::Result<RolloutStatus> {
    let client = connect(client).await?;
    let status = client.plugin_rollout(request).await;
    client.close().await;
    Ok(status?)
}

/// `sluice plugin shadow`.
pub async fn shadow(args: ShadowArgs) -> anyhow::Result<()> {
    let name = args.name.clone();
    let request = match &args.file {
        Some(file) => RolloutRequest::Shadow {
            name,
            wasm: read(file).await?,
        },
        None => RolloutRequest::Rollback { name },
    };
    let status = ask(&args.client, request)
        .await
        .with_context(|| format!("shadow of plugin {}", args.name))?;
    match status.state {
        RolloutState::Running => println!(
            "shadow of {} version {} started beside version {}; see `sluice plugin diff {}`",
            status.name, status.candidate, status.current, status.name
        ),
        _ => print!("{}", describe(&status)),
    }
    Ok(())
}

/// `sluice plugin canary`.
pub async fn canary(args: CanaryArgs) -> anyhow::Result<()> {
    let (percent, by_key) = match (args.percent, args.by_key) {
        (Some(p), None) => (p, false),
        (None, Some(p)) => (p, true),
        _ => bail!("give one of --percent and --by-key"),
    };
    let plan = CanaryPlan {
        percent,
        by_key,
        max_error_rate: args.max_error_rate,
        max_reject_rate: args.max_reject_rate,
        max_p99_us: args.max_p99.map(|d| d.as_micros() as u64),
        window_ms: args.window.as_millis() as u64,
        min_messages: args.min_messages,
    };
    let request = RolloutRequest::Canary {
        name: args.name.clone(),
        wasm: read(&args.file).await?,
        plan,
    };
    let status = ask(&args.client, request)
        .await
        .with_context(|| format!("canary of plugin {}", args.name))?;
    print!("{}", describe(&status));
    Ok(())
}

/// `sluice plugin diff | promote | rollback`.
pub async fn named(args: PluginNameArgs, request: RolloutRequest) -> anyhow::Result<()> {
    let status = ask(&args.client, request)
        .await
        .with_context(|| format!("plugin {}", args.name))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", describe(&status));
    }
    Ok(())
}

fn time(ms: i64) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64),
    )
    .to_string()
}

fn percent(part: u64, of: u64) -> String {
    if of == 0 {
        return "-".into();
    }
    format!("{:.1}%", part as f64 * 100.0 / of as f64)
}

fn window_line(who: &str, w: &VersionWindow) -> String {
    format!(
        "  {who:<8} {:>8} messages  {:>6} failed  {:>6} rejected  p99 {} µs\n",
        w.messages,
        percent(w.failed, w.messages),
        percent(w.rejected, w.messages),
        w.p99_us
    )
}

/// A rollout as text.
pub fn describe(s: &RolloutStatus) -> String {
    let mut out = String::new();
    let share = s.plan.as_ref().map(|p| {
        format!(
            " ({}% {})",
            p.percent,
            if p.by_key { "of keys" } else { "of messages" }
        )
    });
    out.push_str(&format!(
        "plugin {}: {}{} of version {} beside {}, since {}\n",
        s.name,
        s.mode,
        share.unwrap_or_default(),
        s.candidate,
        s.current,
        time(s.started_at_ms)
    ));
    match (s.state, s.ended_at_ms) {
        (RolloutState::Running, _) => out.push_str("state: running\n"),
        (RolloutState::Promoted, at) => out.push_str(&format!(
            "state: promoted at {}: {} is the current version\n",
            at.map(time).unwrap_or_default(),
            s.candidate
        )),
        (RolloutState::RolledBack, at) => out.push_str(&format!(
            "state: rolled back at {}{}\n",
            at.map(time).unwrap_or_default(),
            s.reason
                .as_ref()
                .map(|r| format!(" automatically: {r}"))
                .unwrap_or_default()
        )),
    }
    if let Some(d) = &s.diff {
        let differ = d.compared - d.agreed;
        let kinds: Vec<String> = d
            .differences
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect();
        out.push_str(&format!(
            "compared {} messages: {} agree, {} differ{}; {} not compared (the shadow fell behind)\n",
            d.compared,
            d.agreed,
            differ,
            if kinds.is_empty() {
                String::new()
            } else {
                format!(" ({})", kinds.join(", "))
            },
            d.skipped
        ));
        if !d.samples.is_empty() {
            out.push_str(&format!("last {} differences:\n", d.samples.len()));
        }
        for x in &d.samples {
            out.push_str(&format!(
                "  {} {} {}{}: current {} | shadow {} | payload {:?}\n",
                time(x.at_ms),
                x.topic,
                x.kind,
                x.key
                    .as_ref()
                    .map(|k| format!(" key {k:?}"))
                    .unwrap_or_default(),
                x.current,
                x.candidate,
                x.payload
            ));
        }
    }
    if let (Some(w), Some(p)) = (&s.canary, &s.plan) {
        out.push_str(&format!(
            "last {}:\n",
            humantime::format_duration(Duration::from_millis(p.window_ms))
        ));
        out.push_str(&window_line("current", &w.current));
        out.push_str(&window_line("canary", &w.candidate));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_rates_parse_with_or_without_a_percent_sign() {
        assert_eq!(parse_percent("10"), Ok(10.0));
        assert_eq!(parse_percent("2.5%"), Ok(2.5));
        assert!(parse_percent("0").is_err());
        assert!(parse_percent("150%").is_err());
        assert!(parse_percent("ten")
            .unwrap_err()
            .contains("not a percentage"));
        assert_eq!(parse_rate("1%"), Ok(0.01));
        assert_eq!(parse_rate("0.05"), Ok(0.05));
        assert!(parse_rate("120%").is_err());
        assert!(parse_rate("x").is_err());
    }
}
