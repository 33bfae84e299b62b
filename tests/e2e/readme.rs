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
use tokio::sync::watch;

const README: &str = include_str!("../../README.md");

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

/// One command of a README `sh` block.
#[derive(Debug)]
struct Example {
    /// Where it starts in README.md (1-based).
    line: usize,
    /// As written, continuation lines joined, without its comment.
    text: String,
    /// Its words, quotes removed, starting with `sluice`; without `&`.
    words: Vec<String>,
    /// Ends with `&`.
    background: bool,
    /// The `# ...` lines right under it: lines it prints.
    prints: Vec<String>,
    /// `(exit code N)` in those lines; 0 without.
    exit_code: i32,
}

impl std::fmt::Display for Example {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "README.md:{}: `{}`", self.line, self.text)
    }
}

/// The commands of every `sh` block in the README section under `heading`.
fn examples(heading: &str) -> Vec<Example> {
    let mut lines = README
        .lines()
        .enumerate()
        .skip_while(|(_, l)| *l != heading)
        .skip(1)
        .take_while(|(_, l)| !l.starts_with("## "))
        .map(|(i, l)| (i + 1, l.trim()));
    let mut out: Vec<Example> = Vec::new();
    // Inside a fenced block: Some(whether it is `sh`).
    let mut fence: Option<bool> = None;
    // The command the next `#` line shows the output of.
    let mut last: Option<usize> = None;
    while let Some((n, line)) = lines.next() {
        if line.starts_with("```") {
            fence = if fence.is_some() {
                None
            } else {
                Some(line == "```sh")
            };
            last = None;
            continue;
        }
        if fence != Some(true) {
            continue;
        }
        if line.is_empty() {
            last = None;
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            if let Some(example) = last.and_then(|i| out.get_mut(i)) {
                example.shows(comment.trim());
            }
            continue;
        }
        let mut text = line.to_owned();
        while let Some(joined) = text.strip_suffix('\\') {
            let next = lines.next().map_or("", |(_, l)| l);
            text = format!("{} {next}", joined.trim_end());
        }
        let (mut words, code) = shell_words(&text);
        let background = words.last().is_some_and(|w| w == "&");
        if background {
            words.pop();
        }
        assert!(
            words.first().is_some_and(|w| w == "sluice"),
            "README.md:{n}: `{code}` is not a sluice command: teach tests/e2e/readme.rs to run it, or move it out of the block"
        );
        out.push(Example {
            line: n,
            text: code.trim_end_matches('&').trim().to_owned(),
            words,
            background,
            prints: Vec::new(),
            exit_code: 0,
        });
        last = Some(out.len() - 1);
    }
    out
}

impl Example {
    /// Takes a `# ...` line under the command: what it prints, then after
    /// two or more spaces a remark, which may say `(exit code N)`.
    fn shows(&mut self, comment: &str) {
        let (printed, remark) = comment.split_once("  ").unwrap_or((comment, ""));
        if let Some(code) = remark
            .split_once("(exit code ")
            .and_then(|(_, rest)| rest.split_once(')'))
        {
            self.exit_code = code.0.trim().parse().expect("(exit code N) with a number");
        }
        self.prints.push(printed.trim_end().to_owned());
    }
}

/// Splits a shell line into words as sh would (single and double quotes,
/// backslashes, a `#` comment), without expansions; also returns the line
/// up to its comment.
fn shell_words(line: &str) -> (Vec<String>, &str) {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.char_indices();
    let mut code = line;
    while let Some((at, c)) = chars.next() {
        match c {
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                w.extend(chars.by_ref().map(|(_, c)| c).take_while(|&c| c != '\''));
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                while let Some((_, c)) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some((_, e)) if matches!(e, '"' | '\\' | '$' | '`') => w.push(e),
                            Some((_, e)) => w.extend(['\\', e]),
                            None => w.push('\\'),
                        },
                        c => w.push(c),
                    }
                }
            }
            '\\' => {
                if let Some((_, e)) = chars.next() {
                    word.get_or_insert_with(String::new).push(e);
                }
            }
            '#' if word.is_none() => {
                code = &line[..at];
                break;
            }
            c if c.is_whitespace() => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    (words, code.trim())
}

#[test]
fn shell_words_split_as_sh_does() {
    let (words, code) =
        shell_words(r#"sluice pub t '{"a": 1}' -H k="v \"q\"" a\ b   # a comment, 'quoted'"#);
    assert_eq!(words.join("|"), r#"sluice|pub|t|{"a": 1}|-H|k=v "q"|a b"#);
    assert_eq!(code, r#"sluice pub t '{"a": 1}' -H k="v \"q\"" a\ b"#);
    assert_eq!(
        shell_words("sluice sub 'x.>' &").0.join("|"),
        "sluice|sub|x.>|&"
    );
}

#[test]
fn the_readme_sections_parse() {
    let tour = examples("## A tour");
    let first = &tour[0];
    assert_eq!(first.words[..3], ["sluice", "pub", "orders.eu"]);
    assert_eq!(
        (first.prints.as_slice(), first.exit_code),
        (&["stored orders.eu@0".to_owned()][..], 0)
    );
    let pipeline = examples("## The order pipeline");
    assert!(pipeline[0].background, "{}", pipeline[0]);
    let rejected = pipeline
        .iter()
        .find(|e| e.exit_code == 1)
        .expect("a refused order");
    assert!(rejected.prints[0].starts_with("rejected: "), "{rejected:?}");
    let test = pipeline.last().unwrap();
    assert!(
        test.words.contains(&"--config".to_owned()),
        "continuation joined: {test:?}"
    );
}

/// The command line as a user in a second terminal runs it.
struct Shell {
    server: String,
    data: PathBuf,
    /// The working directory (the test's files go here).
    cwd: PathBuf,
}

impl Shell {
    fn new(broker: &TestBroker) -> anyhow::Result<Shell> {
        let cwd = broker.scratch_dir().join("shell");
        std::fs::create_dir_all(&cwd)?;
        Ok(Shell {
            server: broker.addr().to_string(),
            data: broker.data_dir().to_path_buf(),
            cwd,
        })
    }

    /// Starts `sluice ARGS`.
    fn spawn(&self, args: &[String]) -> Process {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sluice-under-test"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SLUICE_") {
                command.env_remove(name);
            }
        }
        command
            .env_remove("RUST_LOG")
            .env("SLUICE_SERVER", &self.server)
            .env("SLUICE_DATA", &self.data)
            .current_dir(&self.cwd);
        for arg in args {
            match arg.strip_prefix("plugins/dist/") {
                Some(file) => command.arg(plugin_dist(file)),
                None => command.arg(arg),
            };
        }
        Process::spawn(command, format!("sluice {}", args.join(" ")))
    }
}

/// What a command printed so far, line by line.
#[derive(Debug, Clone, Default)]
struct Printed {
    /// The first [`KEEP_LINES`] lines of standard output.
    stdout: Vec<String>,
    /// The first [`KEEP_LINES`] lines of standard error.
    stderr: Vec<String>,
    /// Lines printed in all, both streams, kept or not.
    lines: usize,
    /// Output streams still open (both close when it exits).
    open: u8,
}

impl std::fmt::Display for Printed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shorten = |l: &String| l.chars().take(200).collect::<String>();
        writeln!(f, "stdout ({} lines in all):", self.lines)?;
        for line in self.stdout.iter().take(20) {
            writeln!(f, "  {}", shorten(line))?;
        }
        writeln!(f, "stderr:")?;
        for line in self.stderr.iter().take(20) {
            writeln!(f, "  {}", shorten(line))?;
        }
        Ok(())
    }
}

/// A running `sluice`, its output read on two threads; killed when dropped.
struct Process {
    what: String,
    child: Option<Child>,
    printed: watch::Receiver<Printed>,
}

impl Process {
    fn spawn(mut command: Command, what: String) -> Process {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("failed to run {what}: {e}"));
        let (sender, printed) = watch::channel(Printed {
            open: 2,
            ..Printed::default()
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        read_lines(stdout, sender.clone(), |p| &mut p.stdout);
        read_lines(stderr, sender, |p| &mut p.stderr);
        Process {
            what,
            child: Some(child),
            printed,
        }
    }

    /// Waits, at most `limit`, until what it printed satisfies `done`;
    /// returns what it printed so far either way.
    async fn wait_for(
        &mut self,
        limit: Duration,
        done: impl FnMut(&Printed) -> bool,
    ) -> Result<Printed, Printed> {
        let met = match tokio::time::timeout(limit, self.printed.wait_for(done)).await {
            Ok(Ok(printed)) => Some(printed.clone()),
            _ => None,
        };
        met.ok_or_else(|| self.printed.borrow().clone())
    }

    /// Waits, at most `limit`, for it to exit (its output ends first).
    async fn finish(mut self, limit: Duration, example: &Example) -> anyhow::Result<Finished> {
        let ended = self.wait_for(limit, |p| p.open == 0).await;
        let printed = match ended {
            Ok(printed) => printed,
            Err(_) => {
                let printed = self.stop().await;
                panic!(
                    "{example}: `{}` did not exit within {limit:?}\n{printed}",
                    self.what
                );
            }
        };
        let mut child = self.child.take().expect("not yet waited for");
        let status = tokio::task::spawn_blocking(move || child.wait()).await??;
        Ok(Finished {
            code: status.code(),
            stdout: printed.stdout,
            stderr: printed.stderr,
        })
    }

    /// Kills it; returns what it printed.
    async fn stop(&mut self) -> Printed {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        }
        self.printed.borrow().clone()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Reads `pipe` line by line into the stream `keep` picks, on a thread.
fn read_lines(
    pipe: impl Read + Send + 'static,
    printed: watch::Sender<Printed>,
    keep: fn(&mut Printed) -> &mut Vec<String>,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\n', '\r']).to_owned();
            printed.send_modify(|p| {
                p.lines += 1;
                let lines = keep(p);
                if lines.len() < KEEP_LINES {
                    lines.push(text);
                }
            });
            line.clear();
        }
        printed.send_modify(|p| p.open -= 1);
    });
}

/// A command that ran to its end.
struct Finished {
    /// Its exit code (none if killed by a signal).
    code: Option<i32>,
    stdout: Vec<String>,
    stderr: Vec<String>,
}

impl Finished {
    fn stdout_is(&self, lines: &[&str]) {
        assert_eq!(self.stdout, lines, "{self}");
    }

    fn stdout_has(&self, line: &str) {
        assert!(
            self.stdout.iter().any(|l| l == line),
            "no line {line:?}: {self}"
        );
    }

    /// The words of the stdout line whose first word is `first`.
    fn row(&self, first: &str) -> Vec<&str> {
        let mut rows = self
            .stdout
            .iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>());
        let row = rows.find(|words| words.first() == Some(&first));
        row.unwrap_or_else(|| panic!("no line starting {first:?}: {self}"))
    }

    fn stderr_has(&self, start: &str) {
        assert!(
            self.stderr.iter().any(|l| l.starts_with(start)),
            "no line starting {start:?} on stderr: {self}"
        );
    }
}

impl std::fmt::Display for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "exit code {:?}", self.code)?;
        writeln!(f, "stdout:\n{}", self.stdout.join("\n"))?;
        write!(f, "stderr:\n{}", self.stderr.join("\n"))
    }
}
