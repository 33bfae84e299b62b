//! `cargo xtask fuzz [--time SECS] [TARGET...]`: every cargo-fuzz target in
//! `fuzz/` (or the ones named) for SECS seconds each (default 60).
//!
//! Installs cargo-fuzz when it is missing. Only the stable toolchain is
//! here, so the targets are built with `RUSTC_BOOTSTRAP=1` and without a
//! sanitizer (`--sanitizer none`: libFuzzer's coverage needs no nightly
//! flag, and a Rust panic is the failure these targets look for). Before
//! the first run the frame decoder's corpus is seeded with valid frames of
//! every kind, so the fuzzer starts from the real format. Prints each
//! target's executions and verdict; fails if any target found a crash
//! (the input is kept in `fuzz/artifacts/<target>/`).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};
use bytes::Bytes;
use sluice_proto::frame;
use sluice_proto::*;

use super::{cargo, root, run};

fn fuzz_dir() -> PathBuf {
    root().join("fuzz")
}

/// `cargo fuzz` with the environment it needs on a stable toolchain.
fn cargo_fuzz() -> Command {
    let mut cmd = cargo();
    cmd.arg("fuzz").env("RUSTC_BOOTSTRAP", "1");
    cmd
}

fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let present = cargo_fuzz()
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    eprintln!("xtask: cargo-fuzz is missing; installing it");
    run(cargo().args(["install", "cargo-fuzz", "--locked"]))
}

/// The targets in `fuzz/fuzz_targets/`, sorted.
fn targets() -> anyhow::Result<Vec<String>> {
    let dir = fuzz_dir().join("fuzz_targets");
    let mut out = Vec::new();
    for entry in
        std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
    {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "rs") {
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                out.push(stem.to_owned());
            }
        }
    }
    out.sort();
    Ok(out)
}

fn message(i: u8) -> PublishMessage {
    PublishMessage {
        topic: format!("orders.eu.{i}"),
        key: i.is_multiple_of(2).then(|| Bytes::from(vec![i; 3])),
        headers: vec![("region".into(), "eu".into())],
        payload: Bytes::from(vec![0xA0 | i; 12]),
        id: Some(format!("m-{i}")),
    }
}

fn delivered(i: u8) -> Delivered {
    Delivered {
        topic: "orders.eu".into(),
        offset: u64::from(i),
        timestamp_ms: 1_700_000_000_000,
        key: Some(Bytes::from_static(b"k")),
        headers: vec![("h".into(), "v".into())],
        payload: Bytes::from(vec![i; 8]),
        id: None,
        attempt: 1,
    }
}

/// One valid frame of (nearly) every kind, encoded with its length prefix.
fn seed_frames() -> anyhow::Result<Vec<(&'static str, Vec<u8>)>> {
    let max = DEFAULT_MAX_FRAME_BYTES;
    let request = |id, body| ClientFrame::Request(Request { id, body });
    let mut frames: Vec<(&'static str, Bytes)> = vec![
        (
            "hello",
            frame::encode(
                &ClientFrame::Hello(Hello {
                    version: PROTOCOL_VERSION,
                    token: Some("secret".into()),
                    client_name: "fuzz".into(),
                    features: vec![
                        FEATURE_COMPACT_DELIVERY.into(),
                        FEATURE_COMPACT_PUBLISH.into(),
                    ],
                }),
                max,
            )?,
        ),
        (
            "publish",
            frame::encode(
                &request(
                    1,
                    RequestBody::Publish(Publish {
                        messages: vec![message(1), message(2)],
                    }),
                ),
                max,
            )?,
        ),
        (
            "publish-compact",
            frame::encode(
                &request(
                    2,
                    RequestBody::PublishCompact(PublishCompact {
                        runs: vec![PublishRun {
                            topic: "orders".into(),
                            messages: vec![CompactMessage(
                                Some(Bytes::from_static(b"k")),
                                vec![("a".into(), "b".into())],
                                Bytes::from_static(b"payload"),
                                None,
                            )],
                        }],
                    }),
                ),
                max,
            )?,
        ),
        (
            "subscribe",
            frame::encode(
                &request(
                    3,
                    RequestBody::Subscribe(Subscribe {
                        subscription: 7,
                        pattern: "orders.*.>".into(),
                        from: StartPosition::Offset(5),
                        plugin: Some(DeliveryPlugin {
                            name: "filter".into(),
                            config: Some("{}".into()),
                        }),
                        resume: Default::default(),
                    }),
                ),
                max,
            )?,
        ),
        (
            "consume",
            frame::encode(
                &request(
                    4,
                    RequestBody::Consume(Consume {
                        consumer: 9,
                        group: "workers".into(),
                        pattern: "orders.>".into(),
                        options: GroupOptions::default(),
                        max_in_flight: 10,
                        limit: Some(100),
                        plugin: None,
                    }),
                ),
                max,
            )?,
        ),
        (
            "settle",
            frame::encode(
                &request(
                    5,
                    RequestBody::Settle(Settle {
                        group: "workers".into(),
                        topic: "orders".into(),
                        offset: 3,
                        action: SettleAction::Nack { delay_ms: Some(10) },
                        consumer: Some(2),
                        attempt: Some(1),
                    }),
                ),
                max,
            )?,
        ),
        (
            "settle-batch",
            frame::encode(
                &request(
                    6,
                    RequestBody::SettleBatch(SettleBatch {
                        group: "workers".into(),
                        items: vec![SettleItem {
                            topic: "orders".into(),
                            offset: 4,
                            action: SettleAction::Reject {
                                reason: "poison".into(),
                            },
                            attempt: Some(2),
                        }],
                        consumer: Some(2),
                    }),
                ),
                max,
            )?,
        ),
        (
            "fetch",
            frame::encode(
                &request(
                    7,
                    RequestBody::Fetch(Fetch {
                        topic: "orders".into(),
                        from: StartPosition::Timestamp(-1),
                        max_messages: 10,
                        max_bytes: 1000,
                    }),
                ),
                max,
            )?,
        ),
        (
            "create-topic",
            frame::encode(
                &request(
                    8,
                    RequestBody::CreateTopic(CreateTopic {
                        name: "orders".into(),
                        retention: Some(RetentionSpec {
                            max_age_ms: Some(1000),
                            max_bytes: None,
                            max_messages: Some(5),
                        }),
                        segment_bytes: Some(4096),
                        dedup_window_ms: None,
                        default_ttl_ms: None,
                        dead_letter_expired: None,
                    }),
                ),
                max,
            )?,
        ),
        ("ping", frame::encode(&request(9, RequestBody::Ping), max)?),
        (
            "reset-group",
            frame::encode(
                &request(
                    10,
                    RequestBody::ResetGroup {
                        name: "workers".into(),
                        to: StartPosition::Latest,
                    },
                ),
                max,
            )?,
        ),
        (
            "welcome",
            frame::encode(
                &ServerFrame::Welcome(Welcome {
                    version: PROTOCOL_VERSION,
                    server: "sluice".into(),
                    max_frame_bytes: max,
                    features: vec![FEATURE_COMPACT_DELIVERY.into()],
                }),
                max,
            )?,
        ),
        (
            "published-compact",
            frame::encode(
                &ServerFrame::Response(Response {
                    id: 2,
                    result: Ok(ResponseBody::PublishedCompact(CompactAck {
                        stored: vec![StoredRange(0, 3, "orders".into(), 40)],
                        others: vec![(3, MessageOutcome::Dropped)],
                    })),
                }),
                max,
            )?,
        ),
        (
            "fetched",
            frame::encode(
                &ServerFrame::Response(Response {
                    id: 7,
                    result: Ok(ResponseBody::Fetched(FetchBatch {
                        messages: vec![delivered(1)],
                        next_offset: 2,
                        end_offset: 9,
                    })),
                }),
                max,
            )?,
        ),
        (
            "error",
            frame::encode(
                &ServerFrame::Response(Response {
                    id: 3,
                    result: Err(ErrorBody::new(ErrorCode::TopicNotFound, "no such topic")),
                }),
                max,
            )?,
        ),
        (
            "deliveries",
            frame::encode(
                &DeliveryFrame::Messages {
                    messages: vec![delivered(1), delivered(2)],
                    dropped: 1,
                },
                max,
            )?,
        ),
        (
            "deliveries-compact",
            frame::encode(
                &DeliveryFrame::Compact {
                    runs: vec![DeliveryRun {
                        topic: "orders".into(),
                        messages: vec![CompactDelivered(
                            1,
                            2,
                            None,
                            vec![],
                            Bytes::from_static(b"x"),
                            Some("id".into()),
                            1,
                        )],
                    }],
                    dropped: 0,
                },
                max,
            )?,
        ),
    ];
    // And two frames back to back, the way they arrive on a stream.
    let pair = [frames[0].1.clone(), frames[1].1.clone()].concat();
    frames.push(("hello-publish", Bytes::from(pair)));
    // Chunk size 7; limit 4096 (settings & 3 == 2), compact ack count 4.
    Ok(frames
        .into_iter()
        .map(|(name, bytes)| (name, [&[7u8, 2 | (4 << 2)][..], &bytes].concat()))
        .collect())
}

/// Damage kinds of `log_recovery`: mode byte, a 16-bit position, bytes.
fn seed_damages() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("garbage-tail", vec![0, 0, 0, 0xAB, 0xCD, 0xEF, 0x01]),
        ("cut", vec![1, 0, 100, 1, 0, 0, 0]),
        ("bit-flip", vec![2, 0, 60, 0x10]),
        ("new-segment", vec![3, 0, 1, 0x30, 0, 0, 0, 0, 0, 0, 0]),
        ("index-garbage", vec![4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
        ("index-flip", vec![5, 0, 20, 0x08]),
    ]
}

/// Framings of `group_recovery`: mode byte, a 16-bit split, bytes.
fn seed_journals() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "raw",
            vec![0, 0, 4, 0x53, 0x4C, 0x47, 0x53, 0x91, 0xA1, 0x74],
        ),
        (
            "checked-snapshot",
            vec![1, 0, 3, 0x92, 0x80, 0x80, 0x81, 0xA1, 0x74],
        ),
        (
            "framed-entries",
            vec![2, 0, 0, 0x81, 0xA9, 0x44, 0x65, 0x6C, 0x69],
        ),
        ("damage-between", vec![3, 0, 2, 0xFF, 0x00, 0x81, 0xA7]),
    ]
}

/// Writes the seeds of `target` into its corpus (cheap; overwrites).
fn seed(target: &str) -> anyhow::Result<()> {
    let seeds = match target {
        "frame_decoder" => seed_frames()?,
        "log_recovery" => seed_damages(),
        "group_recovery" => seed_journals(),
        _ => return Ok(()),
    };
    let dir = fuzz_dir().join("corpus").join(target);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, bytes) in seeds {
        std::fs::write(dir.join(format!("seed-{name}")), bytes)?;
    }
    Ok(())
}

/// What one run printed that matters.
#[derive(Default)]
struct Outcome {
    executions: Option<u64>,
    corpus: Option<String>,
    artifact: Option<String>,
    reason: Option<String>,
}

/// Keeps the lines worth showing: not libFuzzer's stream of new inputs, new functions and
/// recommended dictionary entries.
fn noisy(line: &str) -> bool {
    let progress = line.starts_with('#')
        && ["NEW", "REDUCE", "pulse"]
            .iter()
            .any(|w| line.split_whitespace().nth(1) == Some(*w));
    progress
        || line.trim_start().starts_with("NEW_FUNC")
        || (line.starts_with('"') && line.contains("# Uses:"))
}

fn fuzz_one(target: &str, secs: u64) -> anyhow::Result<(bool, Outcome)> {
    seed(target)?;
    let corpus = fuzz_dir().join("corpus").join(target);
    let mut child = cargo_fuzz()
        .args(["run", target, "--sanitizer", "none"])
        .arg(&corpus)
        .arg("--")
        .arg(format!("-max_total_time={secs}"))
        .args(["-print_final_stats=1", "-timeout=20", "-rss_limit_mb=4096"])
        .stderr(Stdio::piped())
        .spawn()
        .context("failed to start cargo fuzz")?;
    let mut out = Outcome::default();
    let stderr = child.stderr.take().context("no stderr")?;
    for line in BufReader::new(stderr).lines() {
        let line = line?;
        if !noisy(&line) {
            eprintln!("{line}");
        }
        if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
            out.executions = n.trim().parse().ok();
        } else if let Some(rest) = line.strip_prefix("Done ") {
            // "Done 123 runs in 60 second(s)"
            if out.executions.is_none() {
                out.executions = rest.split_whitespace().next().and_then(|n| n.parse().ok());
            }
        } else if line.contains("Test unit written to") {
            out.artifact = line.rsplit(' ').next().map(str::to_owned);
        } else if line.contains("panicked at") || line.starts_with("==") && line.contains("ERROR") {
            out.reason.get_or_insert(line.trim().to_owned());
        } else if line.starts_with('#') && line.contains("DONE") {
            // "#123456 DONE cov: 812 ft: 3001 corp: 210/9Kb ..."
            out.corpus = line.split_once("DONE").map(|(_, s)| s.trim().to_owned());
        }
    }
    let status = child.wait()?;
    Ok((status.success(), out))
}

pub fn fuzz(args: &[String]) -> anyhow::Result<()> {
    let mut secs = 60u64;
    let mut chosen = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--time" => {
                secs = it
                    .next()
                    .context("--time needs a number of seconds")?
                    .parse()
                    .context("--time needs a number of seconds")?;
            }
            name if !name.starts_with('-') => chosen.push(name.to_owned()),
            other => bail!("unknown fuzz option {other:?}; usage: fuzz [--time SECS] [TARGET...]"),
        }
    }
    ensure_cargo_fuzz()?;
    let all = targets()?;
    if let Some(unknown) = chosen.iter().find(|t| !all.contains(t)) {
        bail!("no fuzz target {unknown:?}; there are: {}", all.join(", "));
    }
    let targets = if chosen.is_empty() { all } else { chosen };
    // One build for all targets first, so that each run's time is fuzzing.
    run(cargo_fuzz().args(["build", "--sanitizer", "none"]))?;

    let mut report = Vec::new();
    for target in &targets {
        eprintln!("xtask: fuzzing {target} for {secs} s");
        let started = Instant::now();
        let (ok, outcome) = fuzz_one(target, secs)?;
        report.push((target.clone(), ok, started.elapsed().as_secs(), outcome));
    }
    eprintln!();
    eprintln!("xtask: fuzz results ({secs} s per target)");
    let mut failed = Vec::new();
    for (target, ok, took, o) in &report {
        let runs = o
            .executions
            .map_or_else(|| "?".to_owned(), |n| n.to_string());
        let verdict = if *ok { "ok" } else { "FAILED" };
        eprintln!("  {target:<16} {verdict:<6} {runs:>10} executions in {took} s");
        if let Some(c) = &o.corpus {
            eprintln!("  {:<16} {c}", "");
        }
        if !ok {
            if let Some(r) = &o.reason {
                eprintln!("  {:<16} {r}", "");
            }
            if let Some(a) = &o.artifact {
                eprintln!(
                    "  {:<16} input: {a} (replay: RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none {target} {a})",
                    ""
                );
            }
            failed.push(target.as_str());
        }
    }
    if !failed.is_empty() {
        bail!("fuzz target(s) failed: {}", failed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_whole_frames() {
        for (name, seed) in seed_frames().unwrap() {
            let mut decoder = frame::FrameDecoder::new(4096);
            decoder.extend(&seed[2..]);
            let mut n = 0;
            while decoder.next_body().unwrap().is_some() {
                n += 1;
            }
            assert!(n >= 1, "{name}");
            assert_eq!(decoder.buffered(), 0, "{name}");
        }
    }

    #[test]
    fn libfuzzer_progress_lines_are_hidden() {
        assert!(noisy("#1024\tNEW    cov: 10 ft: 12 corp: 3/30b"));
        assert!(noisy("#2048\tpulse  cov: 10"));
        assert!(!noisy("#123456\tDONE   cov: 10"));
        assert!(noisy("\tNEW_FUNC[1/2]: 0x558fcc76e9a1"));
        assert!(noisy("\"\\001\\000\" # Uses: 280"));
        assert!(!noisy("stat::number_of_executed_units: 5"));
        assert!(!noisy("###### Recommended dictionary. ######"));
    }

    #[test]
    fn fuzz_dir_is_next_to_the_workspace() {
        assert!(fuzz_dir().join("Cargo.toml").exists());
    }
}
