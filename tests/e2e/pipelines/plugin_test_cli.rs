//! `sluice plugin test`: a plugin run on a file of messages without a
//! broker, one outcome per line.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::dist;

fn plugin_test(file: &str, input: &Path, config: &str) -> anyhow::Result<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-under-test"))
        .args([
            "plugin",
            "test",
            file,
            "--config",
            config,
            "--topic",
            "orders.incoming",
            "--input",
        ])
        .arg(input)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

#[test]
fn sluice_plugin_test_shows_each_outcome() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let input: PathBuf = dir.path().join("messages.jsonl");
    std::fs::write(
        &input,
        concat!(
            r#"{"payload": {"id": "o-1", "total": 3, "email": "a@b.io"}, "headers": {"region": "eu"}}"#,
            "\n",
            r#"{"payload": {"total": -2}}"#,
            "\n",
            "plain text line\n",
        ),
    )?;
    let out = plugin_test(
        &dist("route_by_header.wasm"),
        &input,
        r#"{"header": "region", "prefix": "orders."}"#,
    )?;
    assert_eq!(out, "0: route -> orders.eu\n1: pass\n2: pass\n");
    let out = plugin_test(
        &dist("filter_json.wasm"),
        &input,
        r#"{"conditions": [{"field": "total", "gt": 0}]}"#,
    )?;
    assert_eq!(out, "0: pass\n1: drop\n2: drop\n");
    let out = plugin_test(&dist("redact_pii.wasm"), &input, "{}")?;
    assert!(out.starts_with("0: replace -> {"), "{out}");
    assert!(
        out.contains("[redacted]") && out.contains("1: pass\n2: pass\n"),
        "{out}"
    );
    let out = plugin_test(
        &dist("validate_json_schema.wasm"),
        &input,
        r#"{"schema": {"type": "object", "required": ["id"]}}"#,
    )?;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0: pass");
    assert!(
        lines[1].starts_with("1: reject: schema validation failed at /"),
        "{out}"
    );
    assert!(lines[2].starts_with("2: reject:"), "{out}");
    // A config the plugin refuses is a clear error.
    let err = plugin_test(&dist("route_by_header.wasm"), &input, "{}").unwrap_err();
    assert!(err.to_string().contains("missing field `header`"), "{err}");
    Ok(())
}
