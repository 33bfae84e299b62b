//! The README, run: every `sluice ...` line of "A tour" and of "The order
//! pipeline" is read out of README.md and run, in order, as the real
//! command line (`sluice-under-test`) against a real broker, each bounded
//! in time. The `# ...` lines the README shows right under a command are
//! what it must print (`(exit code N)` its exit code); [`Plan`]s add checks
//! for the commands whose output the README only describes. So the README
//! cannot drift from the CLI: a changed command runs as changed, and a plan
//! whose command is no longer in the README fails the test.
//!
//! Commands that run until interrupted are run deliberately, never left to
//! a sleep: a following `sluice sub` (or a README `&` line) runs in the
//! background as if in another terminal, from its `subscribed to` line on,
//! until it has printed what its plan waits for; a consumer-group member
//! gets a `--count`. An unplanned `sluice sub` without `--count` fails the
//! test rather than hang it.
//!
//! The commands run in a scratch directory with `SLUICE_SERVER` and
//! `SLUICE_DATA` naming the test's broker (the README's defaults name
//! `cargo xtask run`'s), and `plugins/dist/...` arguments pointing at the
//! components `cargo xtask plugins` built.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sluice_tests::{plugin_dist, TestBroker};

mod example;
mod shell;

use example::{examples, shell_words, Example};
use shell::{Finished, Printed, Process, Shell};
use tokio::sync::watch;

const README: &str = include_str!("../../../README.md");

/// Bound of one command run to its end.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// Bound of a background command's wait for its `subscribed` line or for
/// the output its plan expects.
const WATCH_LIMIT: Duration = Duration::from_secs(30);

/// Lines of each output stream kept for checks; later ones are counted only
/// (a subscriber of the load prints 100 MB).
const KEEP_LINES: usize = 1000;

/// The file `sluice plugin test --input orders.jsonl` reads: the line the
/// README says its output is for.
const ORDERS_JSONL: &str = r#"{"payload": "{\"id\":\"o-9\"}", "headers": {"region": "eu"}}"#;

#[tokio::test]
async fn the_readme_tour_runs_as_written() -> anyhow::Result<()> {
    // The tour never publishes to orders.incoming, the only topic with a
    // pipeline in examples/sluice.toml, and every other setting there is the
    // default: a default broker is the same to it and starts without
    // compiling the example plugins.
    let broker = TestBroker::start().await?;
    run_in("## A tour", &Shell::new(&broker)?, &tour_plans()).await
}

#[tokio::test]
async fn the_readme_order_pipeline_runs_as_written() -> anyhow::Result<()> {
    for file in [
        "validate_json_schema.wasm",
        "filter_json.wasm",
        "redact_pii.wasm",
        "route_by_header.wasm",
    ] {
        plugin_dist(file);
    }
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/sluice.toml");
    let broker = TestBroker::start_from_file(&config).await?;
    assert!(
        README.contains(&format!("`{ORDERS_JSONL}`")),
        "README.md no longer shows the orders.jsonl line this test writes: {ORDERS_JSONL}"
    );
    let shell = Shell::new(&broker)?;
    std::fs::write(shell.cwd.join("orders.jsonl"), format!("{ORDERS_JSONL}\n"))?;
    run_in("## The order pipeline", &shell, &pipeline_plans()).await
}

/// What the test adds to one README command.
#[derive(Default)]
struct Plan {
    /// The command as the README writes it (without comment or `&`).
    command: &'static str,
    /// Flags added to a command that would run until interrupted.
    add: &'static [&'static str],
    /// Words replaced (the README's, the test's): a smaller load.
    replace: &'static [(&'static str, &'static str)],
    /// Run in the background (like another terminal) until this README
    /// command has run and it printed what [`Watch::check`] looks at.
    watch: Option<Watch>,
    /// Checks what it printed (run to its end).
    check: Option<fn(&Finished)>,
}

/// How a background command is ended.
struct Watch {
    /// The README command after which it has printed what is checked.
    after: &'static str,
    /// The standard-output lines awaited (bounded) before it is stopped.
    lines: usize,
    /// Checks those lines.
    check: fn(&[String]),
}

impl Plan {
    /// Runs as written, then `check`.
    fn check(command: &'static str, check: fn(&Finished)) -> Plan {
        let check = Some(check);
        Plan {
            command,
            check,
            ..Plan::default()
        }
    }

    /// Runs with `add` appended, then `check`.
    fn bounded(command: &'static str, add: &'static [&'static str], check: fn(&Finished)) -> Plan {
        Plan {
            add,
            ..Plan::check(command, check)
        }
    }

    /// Runs in the background until `after` ran and it printed `lines`
    /// lines, then `check` on them.
    fn watch(
        command: &'static str,
        after: &'static str,
        lines: usize,
        check: fn(&[String]),
    ) -> Plan {
        let watch = Some(Watch {
            after,
            lines,
            check,
        });
        Plan {
            command,
            watch,
            ..Plan::default()
        }
    }
}

const LOAD: &str = "sluice pub orders.eu 'order {n}' --count 100000 --size 1024";

/// How many messages the test's run of [`LOAD`] publishes. The README's
/// 100,000 × 1 KiB took 9.5 to 16 s in a debug build with the tour's two
/// subscribers printing every message (2.7 s alone), on two cores shared
/// with other builds; 10,000 go through the same pipelined batches (64 per
/// request, 16 requests in flight) in about 2 s.
const LOAD_COUNT: u64 = 10_000;

fn tour_plans() -> Vec<Plan> {
    vec![
        Plan::watch(
            "sluice sub 'orders.>' --from earliest --json",
            LOAD,
            2,
            |lines| {
                // Replays the first message, then follows the load live.
                let json = |l: &str| serde_json::from_str::<serde_json::Value>(l).unwrap();
                let (first, second) = (json(&lines[0]), json(&lines[1]));
                let fields = ["topic", "offset", "key", "payload"].map(|f| first[f].to_string());
                let expected = [r#""orders.eu""#, "0", r#""customer-7""#, r#""{\"id\": 1}""#];
                assert_eq!(fields, expected, "{first}");
                assert_eq!(first["headers"]["region"], "eu", "{first}");
                assert_eq!(second["offset"], 1, "{second}");
                let payload = second["payload"].as_str().unwrap();
                assert_eq!((payload.len(), payload.trim_end()), (1024, "order 1"));
            },
        ),
        Plan::watch("sluice sub 'orders.*'", LOAD, 1, |lines| {
            // Live only: the load, not what was stored before.
            let payload = lines[0].strip_prefix("orders.eu@1: ");
            let payload = payload.unwrap_or_else(|| panic!("not orders.eu@1: {:.80}", lines[0]));
            assert_eq!((payload.len(), payload.trim_end()), (1024, "order 1"));
        }),
        Plan {
            replace: &[("100000", "10000")],
            ..Plan::check(LOAD, |done| {
                let to = format!("{LOAD_COUNT} messages to orders.eu (offsets 1..={LOAD_COUNT})");
                done.stderr_has(&format!("published {to} in "))
            })
        },
        Plan::check("sluice topics", |done| {
            assert_eq!(
                done.row("orders.eu")[1],
                (LOAD_COUNT + 1).to_string(),
                "{done}"
            );
        }),
        Plan::check(
            "sluice topics create audit --max-age 7days --segment-bytes 16777216",
            |done| done.stdout_is(&["created audit"]),
        ),
        Plan::check("sluice topics info orders.eu", |done| {
            done.stdout_has("name:          orders.eu");
            done.stdout_has(&format!("messages:      {}", LOAD_COUNT + 1));
        }),
        Plan::check("sluice topics delete audit", |done| {
            done.stdout_is(&["deleted audit"])
        }),
        Plan::check("sluice pub order.created 'order {n}' --count 10", |done| {
            done.stderr_has("published 10 messages to order.created (offsets 0..=9) in ")
        }),
        Plan::bounded(
            "sluice sub order.created --group inventory",
            &["--count", "5"],
            |done| {
                let expected = (0..5).map(|i| format!("order.created@{i}: order {}", i + 1));
                assert_eq!(done.stdout, expected.collect::<Vec<_>>(), "{done}");
                done.stderr_has("joined group inventory on order.created");
            },
        ),
        Plan::bounded(
            "sluice sub order.created --group inventory --nack",
            &["--count", "1"],
            |done| done.stdout_is(&["order.created@5: order 6"]),
        ),
        Plan::check("sluice groups", |done| {
            // 5 acked, 1 nacked (pending until its retry): 5 still to do.
            let row = done.row("inventory");
            assert_eq!(row[1..3], ["order.created", "0"], "{done}");
            let n = |i: usize| row[i].parse::<u64>().unwrap();
            assert_eq!(n(3) + n(4), 5, "lag + pending: {done}");
        }),
        Plan::check("sluice groups info inventory", |done| {
            done.stdout_has("group:         inventory");
            done.stdout_has("pattern:       order.created");
        }),
        Plan::check("sluice groups reset inventory --to earliest", |done| {
            done.stdout_has("reset inventory to earliest");
            done.stdout_has("lag:           10");
        }),
    ]
}

const LAST_ORDER: &str =
    r#"sluice pub orders.incoming '{"id":"o-3","region":"us","total":5,"test":true}' -H region=us"#;

fn pipeline_plans() -> Vec<Plan> {
    vec![
        Plan::watch("sluice sub 'orders.>'", LAST_ORDER, 1, |lines| {
            // o-1 lands in orders.eu masked; o-2 (rejected) and o-3
            // (dropped) land nowhere.
            assert_eq!(lines.len(), 1, "{lines:#?}");
            assert!(lines[0].starts_with("orders.eu@0: "), "{}", lines[0]);
            assert!(lines[0].contains(r#""id":"o-1""#), "{}", lines[0]);
            for personal in ["ann@example.com", "7946 0000"] {
                assert!(!lines[0].contains(personal), "not masked: {}", lines[0]);
            }
        }),
        Plan::check("sluice plugin list", |done| {
            for name in [
                "validate-order",
                "drop-test-orders",
                "redact-pii",
                "route-by-region",
            ] {
                done.row(name);
            }
        }),
    ]
}

/// Runs the commands of the README section under `heading` with `shell`.
async fn run_in(heading: &str, shell: &Shell, plans: &[Plan]) -> anyhow::Result<()> {
    let examples = examples(heading);
    assert!(
        !examples.is_empty(),
        "no `sluice` commands under {heading:?} in README.md"
    );
    let plan_words: Vec<Vec<String>> = plans.iter().map(|p| shell_words(p.command).0).collect();
    let mut planned = vec![false; plans.len()];
    let mut watching: Vec<(Process, &Watch, &Example)> = Vec::new();
    let started = Instant::now();
    for example in &examples {
        let plan = plan_words.iter().position(|w| *w == example.words);
        if let Some(i) = plan {
            planned[i] = true;
        }
        let plan = plan.map(|i| &plans[i]);
        let mut args = example.words[1..].to_vec();
        for (readme, test) in plan.iter().flat_map(|p| p.replace) {
            let word = args.iter_mut().find(|a| a == readme);
            *word.unwrap_or_else(|| panic!("{example}: no {readme:?} to replace")) =
                test.to_string();
        }
        args.extend(plan.iter().flat_map(|p| p.add).map(|a| a.to_string()));
        let watch = plan.and_then(|p| p.watch.as_ref());
        if example.background || watch.is_some() {
            let Some(watch) = watch else {
                panic!("{example}: runs in the background; give it a Plan with what it prints");
            };
            let mut process = shell.spawn(&args);
            let subscribed = |p: &Printed| p.stderr.iter().any(|l| l.starts_with("subscribed to "));
            if let Err(printed) = process.wait_for(WATCH_LIMIT, subscribed).await {
                panic!("{example}: no `subscribed to` line within {WATCH_LIMIT:?}:\n{printed}");
            }
            watching.push((process, watch, example));
            continue;
        }
        let is_sub = args.first().is_some_and(|a| a == "sub");
        if is_sub && !args.iter().any(|a| a == "--count" || a == "-n") {
            panic!("{example}: runs until interrupted; give it a Plan (background or --count)");
        }
        let command_start = Instant::now();
        let done = shell.spawn(&args).finish(COMMAND_LIMIT, example).await?;
        eprintln!(
            "README.md:{} took {:?}: sluice {}",
            example.line,
            command_start.elapsed(),
            args.join(" ")
        );
        assert_eq!(
            done.code,
            Some(example.exit_code),
            "{example}: exit code\n{done}"
        );
        // What the README shows under it, in that order.
        let mut printed = done.stdout.iter();
        for line in &example.prints {
            assert!(
                printed.any(|l| l.trim_end() == line),
                "{example}: README.md shows {line:?}\n{done}"
            );
        }
        if let Some(check) = plan.and_then(|p| p.check) {
            check(&done);
        }
        // Background commands that should now have printed what they check.
        let (ready, rest): (Vec<_>, Vec<_>) = watching
            .into_iter()
            .partition(|(_, w, _)| shell_words(w.after).0 == example.words);
        watching = rest;
        for (mut process, watch, background) in ready {
            let enough = |p: &Printed| p.stdout.len() >= watch.lines;
            let waited = process.wait_for(WATCH_LIMIT, enough).await;
            let printed = process.stop().await;
            if waited.is_err() {
                panic!(
                    "{background}: printed {} of the {} lines expected after `{}`:\n{printed}",
                    printed.stdout.len(),
                    watch.lines,
                    watch.after
                );
            }
            (watch.check)(&printed.stdout);
        }
    }
    if let Some((_, watch, example)) = watching.first() {
        panic!(
            "{example}: `{}` (which it waits for) is not in the README",
            watch.after
        );
    }
    for (plan, used) in plans.iter().zip(planned) {
        assert!(
            used,
            "the plan for `{}` matches no README command under {heading:?}",
            plan.command
        );
    }
    eprintln!(
        "{heading}: {} commands in {:?}",
        examples.len(),
        started.elapsed()
    );
    Ok(())
}
