//! `cargo xtask house [--max-lines N] [DIR...]`: the shape of the
//! workspace, the checks of the project's `house.py` hook in Rust.
//!
//! - Circles: each `.rs` file under a crate's `src/` is a module
//!   (`src/broker/group/actor.rs` is `broker::group::actor`). Every
//!   `crate::`, `super::` and `self::` path, brace use-lists included, is
//!   resolved to the deepest module that exists. A path from module S to
//!   module T is an arrow between the two children of their common
//!   ancestor that lead to S and T; a set of siblings that reach each
//!   other through such arrows is a circle.
//! - Long files: `.rs` files anywhere in a crate (tests and benches too)
//!   over N lines (default 600), skipping `target/` and fuzz `corpus/`.
//!
//! Without DIRs it looks at the workspace crates and the example plugins.
//! Prints one line per finding and a summary, and fails if it found any.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

mod scan;

use scan::{references, strip};

/// Longest a source file may be (STYLE.md: 50 to 600 lines).
const MAX_LINES: usize = 600;
/// Directories that hold no source of ours.
const SKIPPED_DIRS: &[&str] = &["target", "corpus"];

/// A module, as the names from the crate root down (empty: the root).
type ModulePath = Vec<String>;
/// Arrows between sibling modules, by name.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// What is wrong with the house, one printable line per finding.
#[derive(Debug, Default)]
struct Report {
    circles: Vec<String>,
    long_files: Vec<String>,
}

pub fn house(args: &[String]) -> anyhow::Result<()> {
    let root = crate::root();
    let mut max_lines = MAX_LINES;
    let mut dirs = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--max-lines" => {
                let n = args.next().context("--max-lines needs a number")?;
                max_lines = n
                    .parse()
                    .with_context(|| format!("--max-lines {n:?} is not a number of lines"))?;
            }
            dir => dirs.push(dir.to_owned()),
        }
    }
    if dirs.is_empty() {
        dirs = default_dirs(&root)?;
    }
    let report = check(&root, &dirs, max_lines)?;
    for line in report.circles.iter().chain(&report.long_files) {
        println!("{line}");
    }
    println!(
        "house: {} circle(s), {} file(s) over {max_lines} lines in {}",
        report.circles.len(),
        report.long_files.len(),
        dirs.join(" ")
    );
    if !report.circles.is_empty() || !report.long_files.is_empty() {
        bail!("the house is not in order: break the circles and split the long files listed above");
    }
    Ok(())
}

/// The workspace's members (the root `Cargo.toml`), then each crate in
/// `plugins/`.
fn default_dirs(root: &Path) -> anyhow::Result<Vec<String>> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml"))?;
    let manifest: toml::Table = manifest.parse().context("failed to parse Cargo.toml")?;
    let mut dirs: Vec<String> = manifest
        .get("workspace")
        .and_then(|w| w.get("members")?.as_array())
        .context("Cargo.toml has no workspace.members")?
        .iter()
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect();
    let plugins = root.join("plugins");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&plugins)
        .with_context(|| format!("failed to list {}", plugins.display()))?
    {
        let path = entry?.path();
        if path.join("Cargo.toml").is_file() {
            if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                found.push(format!("plugins/{name}"));
            }
        }
    }
    found.sort();
    dirs.extend(found);
    Ok(dirs)
}

/// Checks the crates in `dirs` (relative to `root`).
fn check(root: &Path, dirs: &[String], max_lines: usize) -> anyhow::Result<Report> {
    let mut report = Report::default();
    for dir in dirs {
        report.circles.extend(crate_circles(root, dir)?);
    }
    let mut long = Vec::new();
    for dir in dirs {
        for file in rust_files(&root.join(dir))? {
            let lines = read(&file)?.lines().count();
            if lines > max_lines {
                long.push((lines, display(root, &file)));
            }
        }
    }
    long.sort_by(|a, b| b.cmp(a));
    report.long_files = long
        .into_iter()
        .map(|(n, path)| format!("over {max_lines} lines: {path} ({n})"))
        .collect();
    Ok(report)
}

/// The circles among the modules of the crate in `root/dir`.
fn crate_circles(root: &Path, dir: &str) -> anyhow::Result<Vec<String>> {
    let src = root.join(dir).join("src");
    if !src.is_dir() {
        return Ok(Vec::new());
    }
    let files: Vec<(ModulePath, PathBuf)> = rust_files(&src)?
        .into_iter()
        .map(|file| (module_path(&src, &file), file))
        .collect();
    let modules: BTreeSet<ModulePath> = files.iter().map(|(m, _)| m.clone()).collect();
    // Arrows between siblings, by their parent.
    let mut levels: BTreeMap<ModulePath, Graph> = BTreeMap::new();
    for (here, file) in &files {
        let text =
            std::fs::read(file).with_context(|| format!("failed to read {}", file.display()))?;
        for reference in references(&strip(&String::from_utf8_lossy(&text))) {
            let target = resolve(&reference, here, &modules);
            let common = here.iter().zip(&target).take_while(|(a, b)| a == b).count();
            if common < here.len() && common < target.len() {
                levels
                    .entry(here[..common].to_vec())
                    .or_default()
                    .entry(here[common].clone())
                    .or_default()
                    .insert(target[common].clone());
            }
        }
    }
    let mut out = Vec::new();
    for (parent, graph) in &levels {
        let place = if parent.is_empty() {
            "(top)".to_owned()
        } else {
            parent.join("::")
        };
        for circle in strongly_connected(graph) {
            out.push(format!("circle in {dir} {place}: {}", circle.join(" <-> ")));
        }
    }
    Ok(out)
}

/// Every `.rs` file under `dir`, sorted. Outside `src/` (where a module
/// may be called `target`) it skips [`SKIPPED_DIRS`].
fn rust_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![(dir.to_path_buf(), dir.ends_with("src"))];
    while let Some((dir, in_src)) = todo.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("failed to list {}", dir.display()))?
        {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name();
            if entry.file_type()?.is_dir() {
                if in_src || !SKIPPED_DIRS.iter().any(|s| name == *s) {
                    todo.push((path, in_src || name == "src"));
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A source file's text (bytes that are not UTF-8 replaced).
fn read(file: &Path) -> anyhow::Result<String> {
    let bytes =
        std::fs::read(file).with_context(|| format!("failed to read {}", file.display()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `file` relative to `root`, with `/` between the parts.
fn display(root: &Path, file: &Path) -> String {
    match file.strip_prefix(root) {
        Ok(relative) => {
            let parts: Vec<_> = relative.iter().map(|p| p.to_string_lossy()).collect();
            parts.join("/")
        }
        Err(_) => file.display().to_string(),
    }
}

/// `src/a/b.rs` and `src/a/b/mod.rs` are `a::b`; `lib.rs` and `main.rs`
/// the root.
fn module_path(src: &Path, file: &Path) -> ModulePath {
    let mut parts: ModulePath = file
        .strip_prefix(src)
        .unwrap_or(file)
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.last().map(String::as_str);
    if last == Some("mod") || (parts.len() == 1 && matches!(last, Some("lib" | "main"))) {
        parts.pop();
    }
    parts
}

/// The deepest existing module `reference` names, seen from module `here`.
fn resolve(reference: &str, here: &[String], modules: &BTreeSet<ModulePath>) -> ModulePath {
    let parts: Vec<&str> = reference.split("::").collect();
    let (mut path, mut rest) = match parts.split_first() {
        Some((&"crate", rest)) => (Vec::new(), rest),
        _ => (here.to_vec(), &parts[..]),
    };
    if rest.first() == Some(&"self") {
        rest = &rest[1..];
    }
    while let Some((&"super", tail)) = rest.split_first() {
        path.pop();
        rest = tail;
    }
    for part in rest {
        path.push(part.to_string());
        if !modules.contains(&path) {
            path.pop();
            break;
        }
    }
    path
}

/// The strongly connected sets of more than one node (Tarjan), each sorted.
fn strongly_connected(graph: &Graph) -> Vec<Vec<String>> {
    #[derive(Default)]
    struct Search<'g> {
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<Vec<String>>,
    }

    fn visit<'g>(graph: &'g Graph, v: &'g str, s: &mut Search<'g>) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(graph, w, s);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }

    let mut search = Search::default();
    for v in graph.keys() {
        if !search.index.contains_key(v.as_str()) {
            visit(graph, v, &mut search);
        }
    }
    search.found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of made-up crates, removed afterwards.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("xtask-house-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn file(&self, path: &str, text: &str) -> &Scratch {
            let path = self.0.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
            self
        }

        fn report(&self, max_lines: usize) -> Report {
            check(&self.0, &["demo".to_owned()], max_lines).unwrap()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn two_modules_that_use_each_other_are_a_circle() {
        let scratch = Scratch::new("circle");
        scratch
            .file("demo/src/lib.rs", "mod a;\nmod b;\nmod c;\n")
            .file("demo/src/a.rs", "use crate::b::B;\npub struct A;\n")
            .file(
                "demo/src/b.rs",
                "pub struct B(crate::c::C);\nfn f() { crate::a::A; }\n",
            )
            .file("demo/src/c.rs", "pub struct C;\n");
        let report = scratch.report(MAX_LINES);
        assert_eq!(report.circles, ["circle in demo (top): a <-> b"]);
        assert!(report.long_files.is_empty());
    }

    #[test]
    fn one_way_dependencies_comments_and_strings_are_no_circle() {
        let scratch = Scratch::new("clean");
        scratch
            .file("demo/src/lib.rs", "mod a;\nmod b;\nuse crate::a::A;\n")
            .file("demo/src/a.rs", "use crate::b::B;\nuse self::inner::X;\nmod inner;\n")
            .file("demo/src/a/inner.rs", "use crate::b::B;\npub struct X;\n")
            .file(
                "demo/src/b.rs",
                "/* use crate::a::A; */\nconst S: &str = \"crate::a::A\";\nfn f<'a>(_: &'a str) {}\n",
            );
        let report = scratch.report(MAX_LINES);
        assert!(report.circles.is_empty(), "{:?}", report.circles);
    }

    #[test]
    fn brace_use_lists_count_every_item() {
        let scratch = Scratch::new("braces");
        scratch
            .file("demo/src/lib.rs", "mod a;\nmod b;\nmod c;\n")
            .file("demo/src/a.rs", "use crate::{c::C, b::{self, B}};\n")
            .file("demo/src/b.rs", "use crate::{a::{A as Other}};\n")
            .file("demo/src/c.rs", "pub struct C;\n");
        assert_eq!(
            scratch.report(MAX_LINES).circles,
            ["circle in demo (top): a <-> b"]
        );
        assert_eq!(
            references("use crate::{a::A, b::{c, d as e}, f::{g::{h}}};"),
            [
                "crate::a::A",
                "crate::b::c",
                "crate::b::d",
                "crate::f::g::h"
            ]
        );
    }

    #[test]
    fn super_in_a_nested_module_names_a_sibling() {
        let scratch = Scratch::new("super");
        scratch
            .file("demo/src/lib.rs", "mod net;\n")
            .file("demo/src/net/mod.rs", "mod codec;\nmod conn;\n")
            .file(
                "demo/src/net/conn.rs",
                "use super::codec::Frame;\npub struct Conn;\n",
            )
            .file(
                "demo/src/net/codec.rs",
                "pub struct Frame(super::conn::Conn);\n",
            );
        assert_eq!(
            scratch.report(MAX_LINES).circles,
            ["circle in demo net: codec <-> conn"]
        );
    }

    #[test]
    fn long_files_are_listed_outside_target() {
        let scratch = Scratch::new("long");
        let long = "fn f() {}\n".repeat(11);
        scratch
            .file("demo/src/lib.rs", "mod a;\n")
            .file("demo/src/a.rs", &long)
            .file("demo/tests/t.rs", &long)
            .file("demo/target/debug/build/x.rs", &long)
            .file("demo/src/target/x.rs", &long)
            .file("demo/src/short.rs", "fn f() {}\n");
        assert_eq!(
            scratch.report(10).long_files,
            [
                "over 10 lines: demo/tests/t.rs (11)",
                "over 10 lines: demo/src/target/x.rs (11)",
                "over 10 lines: demo/src/a.rs (11)"
            ]
        );
    }

    #[test]
    fn strip_empties_literals_and_keeps_lifetimes() {
        assert_eq!(
            strip("let s = r#\"a \"b\" c\"#; let p = r\"\\\"; let q = \"\\\\\"; let c = '\\''; let d = '{'; fn f<'a>() {} /* x /* y */ z */.\n"),
            "let s = \"\"; let p = \"\"; let q = \"\"; let c = ''; let d = ''; fn f<'a>() {}  .\n"
        );
    }
}
