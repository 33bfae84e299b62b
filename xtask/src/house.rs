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

/// The workspace's crates, relative to the root.
const CRATES: &[&str] = &["host", "client", "sdk", "proto", "tests", "xtask"];
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

/// The workspace crates, then each crate in `plugins/`.
fn default_dirs(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut dirs: Vec<String> = CRATES.iter().map(|c| c.to_string()).collect();
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

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The code without comments, and with every string and character literal
/// emptied, so that neither is read as a path.
fn strip(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let at = |i: usize| c.get(i).copied();
    // The first index from `i` on where `end` holds, or the end of the text.
    let scan =
        |i: usize, end: &dyn Fn(usize) -> bool| (i..c.len()).find(|&k| end(k)).unwrap_or(c.len());
    // A quote after an odd number of backslashes is inside the string.
    let escaped = |k: usize| c[..k].iter().rev().take_while(|&&ch| ch == '\\').count() % 2 == 1;
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < c.len() {
        let (next, replacement) = match (c[i], at(i + 1)) {
            ('/', Some('/')) => (scan(i, &|k| c[k] == '\n'), ""),
            ('/', Some('*')) => (block_comment_end(&c, i), " "),
            ('"', _) => (scan(i + 1, &|k| c[k] == '"' && !escaped(k)) + 1, "\"\""),
            ('r', _) if raw_string_hashes(&c, i).is_some() => {
                let hashes = raw_string_hashes(&c, i).unwrap_or(0);
                let closed = |k: usize| c[k] == '"' && (1..=hashes).all(|h| at(k + h) == Some('#'));
                (scan(i + hashes + 2, &closed) + hashes + 1, "\"\"")
            }
            // A character literal: 'x', '\'', '\u{1F600}'.
            ('\'', Some('\\')) => (scan(i + 3, &|k| c[k] == '\'') + 1, "''"),
            ('\'', _) if at(i + 2) == Some('\'') => (i + 3, "''"),
            // Code, a lifetime or a label.
            (ch, _) => {
                out.push(ch);
                i += 1;
                continue;
            }
        };
        out.push_str(replacement);
        i = next;
    }
    out
}

/// Just past the block comment opening at `i` (they nest in Rust).
fn block_comment_end(c: &[char], mut i: usize) -> usize {
    let mut depth = 0;
    while i < c.len() {
        match (c[i], c.get(i + 1)) {
            ('/', Some('*')) => depth += 1,
            ('*', Some('/')) => depth -= 1,
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
        if depth == 0 {
            break;
        }
    }
    i
}

/// At the `r` of a raw string (`r"`, `r#"`, `br##"` ...): its number of `#`.
fn raw_string_hashes(c: &[char], i: usize) -> Option<usize> {
    let starts_word = |k: usize| k == 0 || !is_word(c[k - 1]);
    if c[i] != 'r' || !(starts_word(i) || (c[i - 1] == 'b' && starts_word(i - 1))) {
        return None;
    }
    let hashes = c[i + 1..].iter().take_while(|&&ch| ch == '#').count();
    (c.get(i + 1 + hashes) == Some(&'"')).then_some(hashes)
}

/// Every `crate::`, `super::` or `self::` path in stripped code; a brace
/// list gives one path per item (`crate::a::{b, c::{d}}`: `crate::a::b`,
/// `crate::a::c::d`, and `crate::a` itself).
fn references(code: &str) -> Vec<String> {
    let c: Vec<char> = code.chars().collect();
    let starts = |i: usize, s: &str| {
        s.chars()
            .enumerate()
            .all(|(k, ch)| c.get(i + k) == Some(&ch))
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let keyword = ["crate", "super", "self"]
            .into_iter()
            .find(|k| (i == 0 || !is_word(c[i - 1])) && starts(i, k) && starts(i + k.len(), "::"));
        let Some(keyword) = keyword else {
            i += 1;
            continue;
        };
        let mut path = keyword.to_owned();
        let mut segments = 0;
        i += keyword.len();
        while starts(i, "::") && c.get(i + 2).is_some_and(|&ch| is_word(ch)) {
            let end = (i + 2..c.len())
                .find(|&k| !is_word(c[k]))
                .unwrap_or(c.len());
            path.push_str("::");
            path.extend(&c[i + 2..end]);
            segments += 1;
            i = end;
        }
        if segments > 0 {
            out.push(path.clone());
        }
        if starts(i, "::{") {
            let start = i + 3;
            let mut depth = 1;
            let mut end = start;
            while end < c.len() && depth > 0 {
                match c[end] {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                end += 1;
            }
            let body: String = c[start..end.saturating_sub(1).max(start)].iter().collect();
            expand(&path, &body, &mut out);
        }
    }
    out
}

/// `prefix` joined to each item of a brace list's `body`.
fn expand(prefix: &str, body: &str, out: &mut Vec<String>) {
    let mut depth = 0;
    let mut item = String::new();
    for ch in body.chars().chain([',']) {
        if ch == ',' && depth == 0 {
            let whole = item.trim();
            if let Some((head, inner)) = nested_list(whole) {
                expand(&format!("{prefix}::{head}"), inner, out);
            } else if !whole.is_empty() {
                let name = whole.split(" as ").next().unwrap_or(whole).trim();
                out.push(format!("{prefix}::{name}"));
            }
            item.clear();
            continue;
        }
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        item.push(ch);
    }
}

/// `a::b::{c, d}` as `("a::b", "c, d")`.
fn nested_list(item: &str) -> Option<(&str, &str)> {
    let open = item.find("::{")?;
    let head = &item[..open];
    let list = head.chars().all(|ch| is_word(ch) || ch == ':') && item.ends_with('}');
    list.then(|| (head, &item[open + 3..item.len() - 1]))
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
