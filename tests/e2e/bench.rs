//! `sluice bench` smoke run: every scenario, a few hundred messages, an
//! embedded broker, JSON out. (Benchmarks proper are not run in CI.)

use std::process::Command;

/// Runs `sluice bench ARGS... --json --plugins-dir plugins/dist`, which
/// must succeed: its rows, and its standard error.
fn bench_rows(args: &[&str]) -> anyhow::Result<(Vec<serde_json::Value>, String)> {
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-under-test"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .arg("--plugins-dir")
        .arg(&dist)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let rows = stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    Ok((rows, stderr))
}

/// The scenario names of `rows`.
fn names(rows: &[serde_json::Value]) -> Vec<&str> {
    rows.iter()
        .map(|r| r["scenario"].as_str().unwrap())
        .collect()
}

#[test]
fn sluice_bench_runs_every_scenario_and_reports_json() -> anyhow::Result<()> {
    let (rows, _) = bench_rows(&[
        "all",
        "--embedded",
        "--fsync",
        "never",
        "--connections",
        "20",
        "--count",
        "300",
        "--rate",
        "2000",
        "--max-time",
        "30s",
    ])?;
    assert_eq!(
        names(&rows),
        [
            "publish",
            "pubsub 1:1",
            "queue 4 workers",
            "latency @2000/s",
            "pipeline none",
            "pipeline pass-through",
            "pipeline orders (4 stages)",
            "connections (setup + ping)"
        ]
    );
    assert_eq!(rows[7]["messages"], 20, "{}", rows[7]);
    for row in &rows[..7] {
        for key in [
            "scenario",
            "payload_bytes",
            "messages",
            "msgs_per_s",
            "mb_per_s",
            "p50_us",
            "p99_us",
            "p999_us",
        ] {
            assert!(row.get(key).is_some(), "{key} missing in {row}");
        }
        assert_eq!(row["payload_bytes"], 1024, "{row}");
        assert_eq!(row["messages"], 300, "{row}");
        assert!(row["msgs_per_s"].as_f64().unwrap() > 0.0, "{row}");
    }
    // Latency is measured where it means something, null where not.
    assert!(rows[0]["p99_us"].as_u64().is_some());
    assert!(rows[2]["p50_us"].is_null());
    assert!(rows[3]["p999_us"].as_u64().unwrap() >= rows[3]["p50_us"].as_u64().unwrap());

    // Bad flags are refused with a clear error.
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-under-test"))
        .args(["bench", "pipeline", "--server", "127.0.0.1:1", "--insecure"])
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --embedded"));
    Ok(())
}

#[test]
fn sluice_bench_plugin_costs_runs_a_shadow_and_a_stateful_stage() -> anyhow::Result<()> {
    let (rows, stderr) = bench_rows(&[
        "plugin-costs",
        "--embedded",
        "--fsync",
        "never",
        "--count",
        "300",
        "--max-time",
        "30s",
    ])?;
    assert_eq!(
        names(&rows),
        ["pass-through", "pass-through + shadow", "state get + set"]
    );
    for row in &rows {
        // Every message was stored: the stateful stage rejects any whose
        // state call failed, and a rejected publish fails the run.
        assert_eq!(row["messages"], 300, "{row}");
    }
    assert!(stderr.contains("shadow: compared"), "{stderr}");

    let out = Command::new(env!("CARGO_BIN_EXE_sluice-under-test"))
        .args([
            "bench",
            "plugin-costs",
            "--server",
            "127.0.0.1:1",
            "--insecure",
        ])
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the plugin-costs scenario needs --embedded"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn sluice_bench_request_measures_round_trips() -> anyhow::Result<()> {
    let (rows, _) = bench_rows(&[
        "request",
        "--embedded",
        "--fsync",
        "never",
        "--count",
        "300",
        "--producers",
        "2",
        "--size",
        "128",
        "--max-time",
        "30s",
    ])?;
    let [row] = rows.as_slice() else {
        panic!("one row: {rows:?}")
    };
    assert_eq!(row["scenario"], "request-reply 2 conn");
    assert_eq!(row["messages"], 300, "{row}");
    assert!(row["p99_us"].as_u64().is_some_and(|p| p > 0), "{row}");
    Ok(())
}
