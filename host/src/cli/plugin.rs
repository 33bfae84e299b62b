//! `sluice plugin new` and `sluice plugin build`: from nothing to a built
//! component in two commands.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use sluice_client::RolloutRequest;

use super::args::{ClientArgs, PluginAction, PluginArgs, PluginKind};
use super::connect::connect;
use super::scaffold;

/// The WebAssembly target plugins are built for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// Runs `sluice plugin ...`.
pub async fn run(args: PluginArgs) -> anyhow::Result<()> {
    match args.action {
        PluginAction::New {
            name,
            kind,
            dir,
            sdk,
        } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            let created = new_plugin(&name, kind, &dir, sdk.as_deref())?;
            println!(
                "created {} plugin {name} in {}",
                format!("{kind:?}").to_lowercase(),
                created.display()
            );
            println!(
                "next: cd {} && cargo test && sluice plugin build",
                created.display()
            );
            Ok(())
        }
        PluginAction::Build { dir } => {
            let wasm = build_plugin(&dir.unwrap_or_else(|| PathBuf::from(".")))?;
            let size = std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0);
            println!("{}", wasm.display());
            eprintln!("built {} ({} KiB)", wasm.display(), size / 1024);
            Ok(())
        }
        PluginAction::List { json, client } => list(json, &client).await,
        PluginAction::Logs {
            name,
            follow,
            since,
            json,
            client,
        } => super::plugin_logs::run(&name, follow, since.as_deref(), json, &client).await,
        PluginAction::Deploy { file, name, client } => deploy(&file, &name, &client).await,
        PluginAction::Shadow(args) => super::rollout::shadow(args).await,
        PluginAction::Canary(args) => super::rollout::canary(args).await,
        PluginAction::Diff(args) => {
            let name = args.name.clone();
            super::rollout::named(args, RolloutRequest::Status { name }).await
        }
        PluginAction::Promote(args) => {
            let name = args.name.clone();
            super::rollout::named(args, RolloutRequest::Promote { name }).await
        }
        PluginAction::Rollback(args) => {
            let name = args.name.clone();
            super::rollout::named(args, RolloutRequest::Rollback { name }).await
        }
        PluginAction::Test {
            file,
            input,
            config,
            topic,
            timeout,
        } => {
            let lines = tokio::task::spawn_blocking(move || {
                test_plugin(&file, &input, &config, &topic, timeout)
            })
            .await
            .context("plugin test task failed")??;
            for line in lines {
                println!("{line}");
            }
            Ok(())
        }
    }
}

async fn deploy(file: &Path, name: &str, args: &ClientArgs) -> anyhow::Result<()> {
    let wasm = tokio::fs::read(file)
        .await
        .with_context(|| format!("failed to read {}", file.display()))?;
    let client = connect(args).await?;
    let hash = client
        .deploy_plugin(name, wasm)
        .await
        .with_context(|| format!("failed to deploy {} as plugin {name}", file.display()))?;
    client.close().await;
    println!("deployed {name} version {hash}");
    Ok(())
}

async fn list(json: bool, args: &ClientArgs) -> anyhow::Result<()> {
    let client = connect(args).await?;
    let plugins = client.list_plugins().await?;
    client.close().await;
    let time = |ms: i64| {
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64),
        )
        .to_string()
    };
    if json {
        for p in &plugins {
            println!(
                "{}",
                serde_json::json!({
                    "node": p.node, "name": p.name, "path": p.path, "hash": p.hash, "loaded_at": time(p.loaded_at_ms),
                    "calls": p.calls, "messages": p.messages, "errors": p.errors, "busy_us": p.busy_us,
                    "p50_us": p.p50_us, "p99_us": p.p99_us, "last_error": p.last_error,
                    "last_error_at": p.last_error_at_ms.map(time),
                    "loaded_from": p.loaded_from, "load_ms": p.load_ms, "versions": p.versions,
                    "compiles": p.compiles, "cache_hits": p.cache_hits, "last_reload_ms": p.last_reload_ms,
                    "log_lines": p.log_lines, "logs_dropped": p.logs_dropped,
                    "refused": p.refused.as_ref().map(|r| serde_json::json!({
                        "hash": r.hash, "at": time(r.at_ms), "error": r.error,
                    })),
                })
            );
        }
        return Ok(());
    }
    if plugins.is_empty() {
        println!("no plugins loaded");
    }
    for p in &plugins {
        match &p.node {
            Some(node) => println!("[{node}] {}  {}  (version {})", p.name, p.path, p.hash),
            None => println!("{}  {}  (version {})", p.name, p.path, p.hash),
        }
        println!(
            "  loaded   {}  ({} in {} ms)",
            time(p.loaded_at_ms),
            p.loaded_from,
            p.load_ms
        );
        println!(
            "  versions {} since start  compiled {}  from cache {}{}",
            p.versions,
            p.compiles,
            p.cache_hits,
            p.last_reload_ms
                .map(|ms| format!("  last reload live {ms} ms after the file changed"))
                .unwrap_or_default()
        );
        println!(
            "  calls    {}  messages {}  errors {}  busy {} ms  batch p50 {} µs  p99 {} µs",
            p.calls,
            p.messages,
            p.errors,
            p.busy_us / 1000,
            p.p50_us,
            p.p99_us
        );
        if p.log_lines + p.logs_dropped > 0 {
            println!(
                "  logs     {} lines in {}  {} dropped past the rate limit",
                p.log_lines,
                crate::plugin::logs::topic_for(&p.name),
                p.logs_dropped
            );
        }
        if let Some(error) = &p.last_error {
            println!(
                "  last error {}: {error}",
                p.last_error_at_ms.map(time).unwrap_or_default()
            );
        }
        if let Some(r) = &p.refused {
            println!(
                "  REFUSED  version {} at {}: {}  (version {} keeps running)",
                r.hash,
                time(r.at_ms),
                r.error,
                p.hash
            );
        }
    }
    Ok(())
}

/// Reads the messages of `sluice plugin test`.
fn read_messages(input: &Path) -> anyhow::Result<Vec<crate::store::NewRecord>> {
    let text = std::fs::read_to_string(input)
        .with_context(|| format!("failed to read {}", input.display()))?;
    let mut records = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record = match serde_json::from_str::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(object)) if object.contains_key("payload") => {
                let payload = match &object["payload"] {
                    serde_json::Value::String(s) => s.clone().into_bytes(),
                    other => serde_json::to_vec(other)?,
                };
                let headers = match object.get("headers") {
                    Some(serde_json::Value::Object(h)) => h
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                            )
                        })
                        .collect(),
                    Some(_) => bail!("{}:{}: `headers` must be an object", input.display(), n + 1),
                    None => Vec::new(),
                };
                crate::store::NewRecord {
                    key: object
                        .get("key")
                        .and_then(|k| k.as_str())
                        .map(|k| bytes::Bytes::from(k.to_owned())),
                    headers,
                    payload: payload.into(),
                    id: None,
                }
            }
            _ => crate::store::NewRecord {
                payload: bytes::Bytes::from(line.to_owned()),
                ..Default::default()
            },
        };
        records.push(record);
    }
    Ok(records)
}

/// `sluice plugin test`: loads the component with the broker's engine,
/// runs it over the messages as one batch, describes each outcome.
pub fn test_plugin(
    file: &Path,
    input: &Path,
    config: &str,
    topic: &str,
    timeout: std::time::Duration,
) -> anyhow::Result<Vec<String>> {
    use crate::plugin::bindings::Outcome;
    serde_json::from_str::<serde_json::Value>(config).context("--config is not valid JSON")?;
    let records = read_messages(input)?;
    let engine = crate::plugin::PluginEngine::new()?;
    let name = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plugin")
        .to_owned();
    let plugin = engine.load(crate::plugin::PluginSpec {
        name,
        path: file.to_owned(),
        config_json: config.to_owned(),
        timeout,
        memory_bytes: 64 * 1024 * 1024,
    })?;
    let batch = crate::plugin::pipeline::to_batch(topic, records.iter(), crate::store::now_ms());
    // The same check of the answer as the broker's: a malformed
    // replacement is an error here too, not a truncated line.
    let answer = crate::plugin::answer::call(&plugin, &std::sync::Arc::new(batch))?;
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let mut lines = Vec::new();
    for (i, (outcome, replacements)) in answer.results.iter().zip(&answer.replacements).enumerate()
    {
        let line = match outcome {
            Outcome::Pass => "pass".to_owned(),
            Outcome::Drop => "drop".to_owned(),
            Outcome::Reject(reason) => format!("reject: {reason}"),
            Outcome::DeadLetter(reason) => format!("dead-letter: {reason}"),
            Outcome::Route(span) => {
                let start = span.start as usize;
                let topics = start
                    .checked_add(span.len as usize)
                    .and_then(|end| answer.topics.get(start..end))
                    .unwrap_or_default();
                format!("route -> {}", topics.join(", "))
            }
            Outcome::Replace(_) => {
                let payloads: Vec<String> = replacements.iter().map(|r| text(&r.payload)).collect();
                format!("replace -> {}", payloads.join(" | "))
            }
        };
        lines.push(format!("{i}: {line}"));
    }
    Ok(lines)
}

fn valid_crate_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Where this build of sluice finds the SDK, when run from its source tree.
fn bundled_sdk() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?.join("sdk");
    sdk.join("Cargo.toml").exists().then_some(sdk)
}

/// Writes a new plugin crate into `dir` (which must not exist or be empty).
pub fn new_plugin(
    name: &str,
    kind: PluginKind,
    dir: &Path,
    sdk: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    if !valid_crate_name(name) {
        bail!("{name:?} is not a valid plugin name: use letters, digits, '-' and '_', starting with a letter");
    }
    if dir.exists()
        && std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "{} already exists and is not empty; choose another --dir",
            dir.display()
        );
    }
    let sdk_spec = match sdk.map(Path::to_path_buf).or_else(bundled_sdk) {
        Some(path) => {
            let path = path
                .canonicalize()
                .with_context(|| format!("SDK not found at {}", path.display()))?;
            format!("{{ path = {:?} }}", path.display().to_string())
        }
        None => r#""0.1""#.to_owned(),
    };
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("failed to create {}", dir.display()))?;
    let write = |file: &str, text: String| {
        let path = dir.join(file);
        std::fs::write(&path, text).with_context(|| format!("failed to write {}", path.display()))
    };
    write("Cargo.toml", scaffold::cargo_toml(name, &sdk_spec))?;
    write("src/lib.rs", scaffold::lib_rs(kind, name))?;
    write("README.md", scaffold::readme(kind, name))?;
    write(".gitignore", "/target\n".into())?;
    Ok(dir.to_path_buf())
}

fn target_installed() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == WASM_TARGET)
        })
        .unwrap_or(true)
}

/// Builds the plugin crate in `dir` for wasm32-wasip2 (release) and returns
/// the component's path.
pub fn build_plugin(dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.exists() {
        bail!(
            "no Cargo.toml in {}: give the plugin's directory",
            dir.display()
        );
    }
    if !target_installed() {
        eprintln!("adding the {WASM_TARGET} target (rustup target add {WASM_TARGET})");
        let status = Command::new("rustup")
            .args(["target", "add", WASM_TARGET])
            .status();
        if !status.is_ok_and(|s| s.success()) {
            bail!("the {WASM_TARGET} target is missing and could not be added: run `rustup target add {WASM_TARGET}`");
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut child = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            WASM_TARGET,
            "--message-format=json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest)
        .stdout(Stdio::piped())
        .spawn()
        .context("failed to run cargo")?;
    let stdout = child.stdout.take().context("no cargo output")?;
    let mut wasm = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("failed to read cargo's output")?;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let is_local = message["manifest_path"].as_str().is_some_and(|p| {
            Path::new(p) == manifest.canonicalize().unwrap_or_else(|_| manifest.clone())
        });
        if let Some(files) = message["filenames"].as_array() {
            for file in files.iter().filter_map(|f| f.as_str()) {
                if is_local && file.ends_with(".wasm") {
                    wasm = Some(PathBuf::from(file));
                }
            }
        }
    }
    let status = child.wait().context("cargo did not finish")?;
    if !status.success() {
        bail!("cargo build failed ({status}); see the errors above");
    }
    wasm.context("cargo built no .wasm: is crate-type \"cdylib\" set in [lib]?")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_names() {
        assert!(valid_crate_name("route-by-tenant"));
        assert!(valid_crate_name("a_1"));
        for bad in ["", "1abc", "a b", "a/b", "ä"] {
            assert!(!valid_crate_name(bad), "{bad}");
        }
    }

    #[test]
    fn new_refuses_a_non_empty_directory_and_bad_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x"), "").unwrap();
        let err = new_plugin("p", PluginKind::Filter, dir.path(), None).unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
        let err = new_plugin("1p", PluginKind::Filter, &dir.path().join("new"), None).unwrap_err();
        assert!(err.to_string().contains("not a valid plugin name"), "{err}");
    }

    #[test]
    fn new_writes_a_crate_pointing_at_the_sdk() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("my-router");
        new_plugin("my-router", PluginKind::Router, &target, None).unwrap();
        let manifest = std::fs::read_to_string(target.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"my-router\""));
        assert!(manifest.contains("sluice-sdk = { path = "), "{manifest}");
        let lib = std::fs::read_to_string(target.join("src/lib.rs")).unwrap();
        assert!(lib.contains("sluice_sdk::export!(router: ByHeader);"));
    }
}
