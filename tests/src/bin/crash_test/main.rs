//! `sluice-crash-test`: SIGKILL rounds under publish and consume load,
//! checked by a history checker outside the broker. Run it with
//! `cargo xtask crash-test --rounds N`.
//!
//! Each round runs publishers (pipelined batches of messages with ids, the
//! unacked ones of the last round sent again first) and consumer-group
//! members (acking, now and then nacking) against the `sluice-under-test`
//! broker (`fsync = "always"`, small segments) for a random time, then
//! SIGKILLs it and restarts it. The clients record every publish ack and
//! every settle the broker answered. After each restart the topics are
//! read back and checked: every acked publish is there exactly once at its
//! offset with its bytes, offsets are dense, nothing is stored twice (a
//! retry is de-duplicated), and no group delivery came after a confirmed
//! ack of it. At the end the group is drained and every stored message
//! must have been acked. Any violation is printed and the exit code is 1.
//!
//! # Layout
//!
//! - `campaign.rs`: the rounds, the checks after each restart, the drain.
//! - `load.rs`: publishers and group members, and the shared history.
//! - here: arguments, the progress lines and the summary.

mod campaign;
mod load;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use sluice_tests::history::Violation;

use campaign::{Campaign, RoundReport, Settings};
use load::lock;

/// The shortest load of a round (or `--seconds-per-round`, if shorter).
const MIN_LOAD: Duration = Duration::from_millis(300);
/// Violations of one kind printed at most; the rest are counted.
const SHOWN_PER_KIND: usize = 10;

/// SIGKILL rounds under load against a sluice broker, checked from outside.
#[derive(Debug, Parser)]
#[command(name = "sluice-crash-test")]
struct Args {
    /// Kill rounds.
    #[arg(long, default_value_t = 100)]
    rounds: u32,
    /// Longest load of a round before the kill, in seconds; each round
    /// runs a random time between 0.3 s and this.
    #[arg(long, default_value_t = 2.0)]
    seconds_per_round: f64,
    /// Seed of every random choice (load times, batches, nacks); printed,
    /// taken from the clock when not given.
    #[arg(long)]
    seed: Option<u64>,
    /// Publishers, each on its own connection.
    #[arg(long, default_value_t = 3)]
    publishers: usize,
    /// Consumer-group members, each on its own connection.
    #[arg(long, default_value_t = 3)]
    members: usize,
    /// Deliveries each member nacks, in percent.
    #[arg(long, default_value_t = 5)]
    nack_percent: u8,
    /// The broker binary (default: `sluice-under-test` beside this one).
    #[arg(long)]
    broker: Option<PathBuf>,
    /// Directory for the broker's data and log, kept afterwards (default:
    /// a temporary one, kept only when the test fails).
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(&args, seed)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("crash test: error (seed {seed}): {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Where the broker's data goes, and whether to keep it in the end.
struct WorkDir {
    path: PathBuf,
    temp: Option<tempfile::TempDir>,
}

impl WorkDir {
    fn new(chosen: Option<&PathBuf>) -> anyhow::Result<WorkDir> {
        match chosen {
            Some(path) => {
                std::fs::create_dir_all(path)
                    .with_context(|| format!("failed to create {}", path.display()))?;
                Ok(WorkDir {
                    path: path.clone(),
                    temp: None,
                })
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("sluice-crash-test-")
                    .tempdir()
                    .context("failed to create a temporary directory")?;
                Ok(WorkDir {
                    path: temp.path().to_path_buf(),
                    temp: Some(temp),
                })
            }
        }
    }

    /// Keeps the directory (a failed run is looked at afterwards).
    fn keep(&mut self) {
        if let Some(temp) = self.temp.take() {
            let _ = temp.keep();
        }
    }
}

/// Runs the rounds, the drain and the final check; true if no violation.
async fn run(args: &Args, seed: u64) -> anyhow::Result<bool> {
    let max_load = Duration::from_secs_f64(args.seconds_per_round.max(0.01));
    let settings = Settings {
        rounds: args.rounds,
        min_load: MIN_LOAD.min(max_load),
        max_load,
        publishers: args.publishers,
        members: args.members,
        nack_percent: args.nack_percent.min(100),
    };
    let broker = match &args.broker {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .context("cannot find this binary's path")?
            .with_file_name("sluice-under-test"),
    };
    let mut dir = WorkDir::new(args.dir.as_ref())?;
    println!(
        "crash test: {} rounds of {:.1}-{:.1} s of load, {} publishers, {} members, seed {seed} (again: --seed {seed})",
        settings.rounds,
        settings.min_load.as_secs_f64(),
        settings.max_load.as_secs_f64(),
        settings.publishers,
        settings.members,
    );
    println!(
        "crash test: broker {} in {}",
        broker.display(),
        dir.path.display()
    );
    let started = Instant::now();
    let outcome = rounds(&broker, &dir.path, seed, settings, started).await;
    match &outcome {
        Ok(true) => {}
        _ => {
            dir.keep();
            println!(
                "crash test: data and broker log kept in {}",
                dir.path.display()
            );
        }
    }
    outcome
}

async fn rounds(
    broker: &std::path::Path,
    dir: &std::path::Path,
    seed: u64,
    settings: Settings,
    started: Instant,
) -> anyhow::Result<bool> {
    let rounds = settings.rounds;
    let mut campaign = Campaign::start(broker, dir, seed, settings).await?;
    for round in 1..=rounds {
        let report = campaign.round(round).await?;
        let (violations, read) = campaign.check(false).await?;
        print_round(&campaign, round, rounds, &report, read, started);
        if !violations.is_empty() {
            return Ok(report_violations(
                &campaign,
                &violations,
                seed,
                &format!("round {round}"),
            ));
        }
    }
    println!("crash test: draining the group");
    let mut violations = campaign.drain(rounds + 1).await?;
    let (full, read) = campaign.check(true).await?;
    violations.extend(full);
    let history = campaign.history();
    let (acks, sent) = {
        let publishes = lock(&history.publishes);
        (publishes.acks(), publishes.sent_count())
    };
    let group = lock(&history.group);
    println!(
        "crash test: {rounds} rounds in {:.1} s, seed {seed}: {acks} publishes acked ({sent} messages sent), \
         {} group acks confirmed, {} deliveries ({} redeliveries); final check read {read} messages",
        started.elapsed().as_secs_f64(),
        group.confirmed_acks(),
        group.deliveries(),
        group.redeliveries(),
    );
    drop(group);
    if !violations.is_empty() {
        return Ok(report_violations(
            &campaign,
            &violations,
            seed,
            "the final check",
        ));
    }
    println!("crash test: PASSED, no violation");
    Ok(true)
}

fn print_round(
    campaign: &Campaign,
    round: u32,
    rounds: u32,
    report: &RoundReport,
    read: usize,
    started: Instant,
) {
    let history = campaign.history();
    let acks = lock(&history.publishes).acks();
    let settles = lock(&history.group).confirmed_acks();
    println!(
        "round {round:>3}/{rounds}: {:.2} s load, SIGKILL; publishes acked {acks}, group acks confirmed {settles}; \
         at the kill {} deliveries held, {} settles and {} publish batches unanswered; \
         restart {:.2} s, {read} messages checked; {:.1} s",
        report.load.as_secs_f64(),
        report.held,
        report.unanswered_settles,
        report.unanswered_batches,
        report.restart.as_secs_f64(),
        started.elapsed().as_secs_f64(),
    );
    if report.refused_settles > 0 {
        println!(
            "  note: the broker refused {} settles (stale)",
            report.refused_settles
        );
    }
    for stop in &report.early_stops {
        println!("  warning: stopped before the kill: {stop}");
    }
}

/// Prints the violations, by kind; returns false (the test failed).
fn report_violations(campaign: &Campaign, violations: &[Violation], seed: u64, when: &str) -> bool {
    let mut by_kind: BTreeMap<&str, Vec<&Violation>> = BTreeMap::new();
    for violation in violations {
        by_kind.entry(violation.kind()).or_default().push(violation);
    }
    println!(
        "crash test: FAILED: {} violations found in {when} (seed {seed}):",
        violations.len()
    );
    for (kind, found) in &by_kind {
        println!("  {} x {kind}", found.len());
    }
    for (kind, found) in &by_kind {
        for violation in found.iter().take(SHOWN_PER_KIND) {
            println!("  VIOLATION: {violation}");
        }
        if found.len() > SHOWN_PER_KIND {
            println!("  ... and {} more: {kind}", found.len() - SHOWN_PER_KIND);
        }
    }
    println!(
        "crash test: broker output: {}",
        campaign.broker_log_path().display()
    );
    false
}
