//! The examples of README.md: each `sluice ...` line with the output and
//! exit code shown under it, split into words as `sh` would.

use super::*;

/// One command of a README `sh` block.
#[derive(Debug)]
pub(super) struct Example {
    /// Where it starts in README.md (1-based).
    pub(super) line: usize,
    /// As written, continuation lines joined, without its comment.
    pub(super) text: String,
    /// Its words, quotes removed, starting with `sluice`; without `&`.
    pub(super) words: Vec<String>,
    /// Ends with `&`.
    pub(super) background: bool,
    /// The `# ...` lines right under it: lines it prints.
    pub(super) prints: Vec<String>,
    /// `(exit code N)` in those lines; 0 without.
    pub(super) exit_code: i32,
}

impl std::fmt::Display for Example {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "README.md:{}: `{}`", self.line, self.text)
    }
}

/// The commands of every `sh` block in the README section under `heading`.
pub(super) fn examples(heading: &str) -> Vec<Example> {
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
    pub(super) fn shows(&mut self, comment: &str) {
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
pub(super) fn shell_words(line: &str) -> (Vec<String>, &str) {
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
