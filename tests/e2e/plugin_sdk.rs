//! The plugin author's path: `sluice plugin new` for each kind, the crate's
//! own tests, `sluice plugin build`, and a check that the component (and
//! each example plugin in plugins/dist) exports the sluice world.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use wit_component::DecodedWasm;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice-under-test"))
}

/// Builds share one target dir, so the SDK and its dependencies are
/// compiled once for every scaffolded crate.
fn shared_target() -> PathBuf {
    repo().join("target").join("scaffold")
}

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("failed to start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Checks that `wasm` is a component of the sluice world: it exports
/// `init` and `handle` and imports nothing but sluice:plugin interfaces
/// (the host's `log`, if it logs) and WASI.
fn check_sluice_component(wasm: &[u8]) -> anyhow::Result<()> {
    let decoded = wit_component::decode(wasm).context("not a valid WebAssembly component")?;
    let DecodedWasm::Component(resolve, world) = decoded else {
        bail!("this is WIT, not a component");
    };
    let world = &resolve.worlds[world];
    let exports: Vec<String> = world
        .exports
        .keys()
        .map(|k| resolve.name_world_key(k))
        .collect();
    for wanted in ["init", "handle"] {
        if !exports.iter().any(|e| e == wanted) {
            bail!("component does not export `{wanted}` (exports: {exports:?})");
        }
    }
    for (key, item) in &world.imports {
        let name = resolve.name_world_key(key);
        let provided = match item {
            wit_parser::WorldItem::Type { .. } => true,
            wit_parser::WorldItem::Interface { .. } => {
                name.starts_with("wasi:") || name.starts_with("sluice:plugin/")
            }
            _ => false,
        };
        if !provided {
            bail!("component imports {name}, which the broker does not provide");
        }
    }
    Ok(())
}

#[test]
fn a_plugin_of_each_kind_goes_from_new_to_a_tested_component() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for kind in ["filter", "transform", "router", "validator"] {
        let name = format!("demo-{kind}");
        let crate_dir = dir.path().join(&name);
        let out = run(sluice()
            .args(["plugin", "new", &name, "--kind", kind, "--dir"])
            .arg(&crate_dir))?;
        assert!(
            out.contains(&format!("created {kind} plugin {name}")),
            "{out}"
        );

        // The crate's own tests pass natively.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let tests = run(Command::new(&cargo)
            .args(["test", "--quiet", "--manifest-path"])
            .arg(crate_dir.join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", shared_target()))?;
        assert!(tests.contains("test result: ok"), "{tests}");

        // `sluice plugin build` prints the component's path.
        let built = run(sluice()
            .args(["plugin", "build"])
            .arg(&crate_dir)
            .env("CARGO_TARGET_DIR", shared_target()))?;
        let wasm = PathBuf::from(built.trim());
        assert!(
            wasm.ends_with(format!("wasm32-wasip2/release/demo_{kind}.wasm")),
            "{wasm:?}"
        );
        check_sluice_component(&std::fs::read(&wasm)?).with_context(|| format!("{kind} plugin"))?;
    }
    Ok(())
}

#[test]
fn the_example_plugins_are_sluice_components() -> anyhow::Result<()> {
    let dist = repo().join("plugins").join("dist");
    for name in [
        "route_by_header",
        "filter_json",
        "redact_pii",
        "validate_json_schema",
    ] {
        let path = dist.join(format!("{name}.wasm"));
        let wasm = std::fs::read(&path).with_context(|| {
            format!(
                "{} is missing: run `cargo xtask plugins` (cargo xtask test does)",
                path.display()
            )
        })?;
        check_sluice_component(&wasm).with_context(|| name.to_owned())?;
    }
    Ok(())
}

#[test]
fn plugin_commands_refuse_bad_input_clearly() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = sluice()
        .args(["plugin", "new", "9lives", "--kind", "filter", "--dir"])
        .arg(dir.path().join("x"))
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid plugin name"));
    let out = sluice()
        .args(["plugin", "build"])
        .arg(dir.path())
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no Cargo.toml"));
    let out = sluice()
        .args(["plugin", "new", "p", "--kind", "sorter"])
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value 'sorter'"));
    Ok(())
}
