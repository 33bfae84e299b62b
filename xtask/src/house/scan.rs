//! Reading Rust source for the paths it names: comments and literals
//! stripped ([`strip`]), then every path of a `use` or an expression
//! ([`references`]), nested `use` lists expanded.

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The code without comments, and with every string and character literal
/// emptied, so that neither is read as a path.
pub(super) fn strip(text: &str) -> String {
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
pub(super) fn references(code: &str) -> Vec<String> {
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
