//! Keeps PROTOCOL.md true to proto. The document is the contract other
//! clients are written from, so each claim it makes in a checkable form is
//! checked here against the code:
//!
//! - every `<!-- example: NAME -->` hex block decodes, with proto's own
//!   decoder, to the frame `examples::all` builds under that name, and
//!   that frame encodes back to the same bytes;
//! - the error table lists every [`ErrorCode`] (from `ErrorCode::ALL`,
//!   which is made from the same list as the enum) with its wire value and
//!   name, and nothing else;
//! - each wire type has a section headed ``### `Name` `` whose table lists
//!   its fields, positions or variants in encoding order with their types,
//!   as read from the serde derive (`wire_shape`), so an added field,
//!   variant or type fails here until the document describes it;
//! - the constants table matches proto's constants.

#[path = "protocol_doc/examples.rs"]
mod examples;
#[path = "protocol_doc/wire_shape.rs"]
mod wire_shape;

use std::collections::{BTreeMap, BTreeSet};

use sluice_proto::*;
use wire_shape::{describe, Content, Shape};

fn document() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../PROTOCOL.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The hex blocks of the document by example name, each as bytes.
/// A block follows its `<!-- example: NAME -->` line and is fenced as
/// ```` ```hex ````; `#` starts a comment.
fn hex_examples(doc: &str) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut found: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    let mut lines = doc.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let Some(name) = line
            .trim()
            .strip_prefix("<!-- example:")
            .and_then(|rest| rest.strip_suffix("-->"))
        else {
            continue;
        };
        let fence = lines.next().map(|(_, l)| l.trim());
        assert_eq!(
            fence,
            Some("```hex"),
            "line {}: a ```hex block must follow",
            n + 1
        );
        let mut bytes = Vec::new();
        for (m, line) in lines.by_ref() {
            if line.trim() == "```" {
                break;
            }
            let data = line.split('#').next().unwrap_or_default();
            for pair in data.split_whitespace() {
                let byte = u8::from_str_radix(pair, 16)
                    .ok()
                    .filter(|_| pair.len() == 2)
                    .unwrap_or_else(|| panic!("line {}: {pair:?} is not a hex byte", m + 1));
                bytes.push(byte);
            }
        }
        found.entry(name.trim().to_owned()).or_default().push(bytes);
    }
    found
}

/// The text under each ``### `Name` `` (or deeper) heading, up to the
/// next heading.
fn type_sections(doc: &str) -> BTreeMap<String, String> {
    let mut sections = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in doc.lines() {
        if line.starts_with('#') {
            if let Some((name, text)) = current.take() {
                sections.insert(name, text);
            }
            let title = line.trim_start_matches('#').trim();
            let name = title
                .strip_prefix('`')
                .and_then(|t| t.strip_suffix('`'))
                .filter(|t| line.starts_with("###") && !t.contains('`'));
            current = name.map(|n| (n.to_owned(), String::new()));
        } else if let Some((_, text)) = current.as_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    sections.extend(current);
    sections
}

/// The body rows of the first table in `text`, as trimmed cells.
fn table_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            let inner = l.trim_matches('|');
            inner.split('|').map(|c| c.trim().to_owned()).collect()
        })
        .collect()
}

/// A row's first two cells (empty where it has fewer).
fn first_two(row: &[String]) -> (String, String) {
    let cell = |i: usize| row.get(i).cloned().unwrap_or_default();
    (cell(0), cell(1))
}

fn code(s: &str) -> String {
    format!("`{s}`")
}

/// The first two cells of each row a section's table must have: for a
/// struct, field and type; for a tuple struct, position and type; for an
/// enum, variant and what it carries.
fn expected_rows(shape: &Shape) -> Vec<(String, String)> {
    match shape {
        Shape::Struct(fields) => fields.iter().map(|(f, t)| (code(f), code(t))).collect(),
        Shape::Tuple(items) => items
            .iter()
            .enumerate()
            .map(|(i, t)| (i.to_string(), code(t)))
            .collect(),
        Shape::Enum(variants) => variants
            .iter()
            .map(|(v, content)| {
                let carried = match content {
                    Content::Unit => "unit".to_owned(),
                    Content::Newtype(t) => code(t),
                    Content::Struct(fields) => fields
                        .iter()
                        .map(|(f, t)| format!("{}: {}", code(f), code(t)))
                        .collect::<Vec<_>>()
                        .join(", "),
                    Content::Tuple(items) => format!("[{}]", items.join(", ")),
                };
                (code(v), carried)
            })
            .collect(),
    }
}

/// Every type that crosses the wire, with its shape.
fn wire_types() -> Vec<(&'static str, Shape)> {
    vec![
        ("ClientFrame", describe::<ClientFrame>()),
        ("ServerFrame", describe::<ServerFrame>()),
        ("DeliveryFrame", describe::<DeliveryFrame>()),
        ("Hello", describe::<Hello>()),
        ("Welcome", describe::<Welcome>()),
        ("Request", describe::<Request>()),
        ("RequestBody", describe::<RequestBody>()),
        ("Response", describe::<Response>()),
        ("ResponseBody", describe::<ResponseBody>()),
        ("ErrorBody", describe::<ErrorBody>()),
        ("Publish", describe::<Publish>()),
        ("PublishMessage", describe::<PublishMessage>()),
        ("PublishAck", describe::<PublishAck>()),
        ("MessageOutcome", describe::<MessageOutcome>()),
        ("StoredAt", describe::<StoredAt>()),
        ("PublishCompact", describe::<PublishCompact>()),
        ("PublishRun", describe::<PublishRun>()),
        ("CompactMessage", describe::<CompactMessage>()),
        ("CompactAck", describe::<CompactAck>()),
        ("StoredRange", describe::<StoredRange>()),
        ("DeliveryRun", describe::<DeliveryRun>()),
        ("CompactDelivered", describe::<CompactDelivered>()),
        ("Delivered", describe::<Delivered>()),
        ("Subscribe", describe::<Subscribe>()),
        ("StartPosition", describe::<StartPosition>()),
        ("DeliveryPlugin", describe::<DeliveryPlugin>()),
        ("Fetch", describe::<Fetch>()),
        ("FetchBatch", describe::<FetchBatch>()),
        ("CreateTopic", describe::<CreateTopic>()),
        ("RetentionSpec", describe::<RetentionSpec>()),
        ("TopicInfo", describe::<TopicInfo>()),
        ("Consume", describe::<Consume>()),
        ("GroupOptions", describe::<GroupOptions>()),
        ("Settle", describe::<Settle>()),
        ("SettleAction", describe::<SettleAction>()),
        ("SettleBatch", describe::<SettleBatch>()),
        ("SettleItem", describe::<SettleItem>()),
        ("Respond", describe::<Respond>()),
        ("Ask", describe::<Ask>()),
        ("Reply", describe::<Reply>()),
        ("ReplyTo", describe::<ReplyTo>()),
        ("GroupInfo", describe::<GroupInfo>()),
        ("MemberInfo", describe::<MemberInfo>()),
        ("GroupTopicInfo", describe::<GroupTopicInfo>()),
        ("PluginStatus", describe::<PluginStatus>()),
        ("RefusedVersion", describe::<RefusedVersion>()),
        ("RolloutRequest", describe::<RolloutRequest>()),
        ("CanaryPlan", describe::<CanaryPlan>()),
        ("RolloutState", describe::<RolloutState>()),
        ("RolloutStatus", describe::<RolloutStatus>()),
        ("ShadowDiff", describe::<ShadowDiff>()),
        ("DiffSample", describe::<DiffSample>()),
        ("CanaryWindow", describe::<CanaryWindow>()),
        ("VersionWindow", describe::<VersionWindow>()),
        ("TraceKey", describe::<TraceKey>()),
        ("TraceReport", describe::<TraceReport>()),
        ("MessageTrace", describe::<MessageTrace>()),
        ("StageTrace", describe::<StageTrace>()),
        ("PlaceTrace", describe::<PlaceTrace>()),
        ("DeliveryTrace", describe::<DeliveryTrace>()),
        ("SettleTrace", describe::<SettleTrace>()),
        ("DeadLetterTrace", describe::<DeadLetterTrace>()),
    ]
}

/// Every type notation in a shape: of fields, positions and variant
/// contents.
fn notations(shape: &Shape) -> Vec<&str> {
    fn named(fields: &[(String, String)]) -> Vec<&str> {
        fields.iter().map(|(_, t)| t.as_str()).collect()
    }
    match shape {
        Shape::Struct(fields) => named(fields),
        Shape::Tuple(items) => items.iter().map(String::as_str).collect(),
        Shape::Enum(variants) => variants
            .iter()
            .flat_map(|(_, content)| match content {
                Content::Unit => vec![],
                Content::Newtype(t) => vec![t.as_str()],
                Content::Struct(fields) => named(fields),
                Content::Tuple(items) => items.iter().map(String::as_str).collect(),
            })
            .collect(),
    }
}

/// Names in a type notation that are not MessagePack types: the types it
/// refers to.
fn referenced_types(notation: &str) -> impl Iterator<Item = &str> {
    const PRIMITIVES: &[&str] = &[
        "bool", "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "f32", "f64", "str", "bin",
        "nil",
    ];
    notation
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty() && !PRIMITIVES.contains(w))
}

#[test]
fn byte_examples_decode_to_the_frames_the_doc_names() {
    let found = hex_examples(&document());
    let expected = examples::all();
    let names: BTreeSet<&str> = expected.iter().map(|(n, _)| *n).collect();
    let in_doc: BTreeSet<&str> = found.keys().map(String::as_str).collect();
    assert_eq!(
        in_doc, names,
        "the examples of PROTOCOL.md and of this test"
    );
    for (name, example) in &expected {
        for bytes in &found[*name] {
            if let Err(e) = example.check(bytes) {
                panic!("example {name:?}: {e}");
            }
        }
    }
}

#[test]
fn the_error_table_lists_every_code_with_its_value_and_name() {
    let doc = document();
    let (_, section) = doc
        .split_once("\n## Error codes\n")
        .expect("PROTOCOL.md has a section \"## Error codes\"");
    let section = section.split("\n## ").next().unwrap_or_default();
    let table = section
        .split("\n| code |")
        .nth(1)
        .expect("the error section has a table whose first column is \"code\"");
    let rows = table_rows(&format!("| code |{table}"));
    let listed: Vec<(String, String)> = rows.iter().map(|r| first_two(r)).collect();
    let codes: Vec<(String, String)> = ErrorCode::ALL
        .iter()
        .map(|c| (c.as_u16().to_string(), code(c.name())))
        .collect();
    assert_eq!(listed, codes, "the error table, in wire-value order");
    for row in &rows {
        assert_eq!(row.len(), 4, "code, name, meaning, retry: {row:?}");
        assert!(row.iter().all(|c| !c.is_empty()), "an empty cell: {row:?}");
    }
}

#[test]
fn each_wire_type_has_a_section_listing_its_shape() {
    let sections = type_sections(&document());
    let types = wire_types();
    let mut wrong = Vec::new();
    for (name, shape) in &types {
        let Some(text) = sections.get(*name) else {
            wrong.push(format!("no section \"### `{name}`\""));
            continue;
        };
        let documented: Vec<(String, String)> =
            table_rows(text).iter().map(|r| first_two(r)).collect();
        let expected = expected_rows(shape);
        if documented != expected {
            let missing: Vec<_> = expected
                .iter()
                .filter(|r| !documented.contains(r))
                .collect();
            let extra: Vec<_> = documented
                .iter()
                .filter(|r| !expected.contains(r))
                .collect();
            wrong.push(format!(
                "`{name}`: rows proto has and the table lacks: {missing:?}; \
                 rows the table has and proto lacks: {extra:?}; \
                 (if both are empty, the order differs)"
            ));
        }
    }
    let known: BTreeSet<&str> = types.iter().map(|(n, _)| *n).collect();
    for headed in sections.keys().filter(|s| !known.contains(s.as_str())) {
        wrong.push(format!(
            "section `{headed}` is not a wire type this test knows"
        ));
    }
    assert!(wrong.is_empty(), "PROTOCOL.md:\n{}", wrong.join("\n"));
}

#[test]
fn every_type_a_field_refers_to_is_a_wire_type() {
    let types = wire_types();
    let known: BTreeSet<&str> = types.iter().map(|(n, _)| *n).collect();
    for (name, shape) in &types {
        for notation in notations(shape) {
            for referenced in referenced_types(notation) {
                // `Result` is serde's: `{"Ok": T}` or `{"Err": E}`.
                assert!(
                    known.contains(referenced) || referenced == "Result",
                    "`{name}` refers to `{referenced}`, which is not among the wire types"
                );
            }
        }
    }
}

#[test]
fn the_constants_table_matches_proto() {
    let doc = document();
    let section = doc
        .split_once("\n### Constants\n")
        .expect("PROTOCOL.md has a section \"### Constants\"")
        .1;
    let rows: BTreeMap<String, String> = table_rows(section).iter().map(|r| first_two(r)).collect();
    let alpn = std::str::from_utf8(ALPN).expect("ALPN is text");
    let constants = [
        ("PROTOCOL_VERSION", PROTOCOL_VERSION.to_string()),
        ("ALPN", alpn.to_owned()),
        (
            "DEFAULT_MAX_FRAME_BYTES",
            DEFAULT_MAX_FRAME_BYTES.to_string(),
        ),
        (
            "LENGTH_PREFIX_BYTES",
            frame::LENGTH_PREFIX_BYTES.to_string(),
        ),
        ("MAX_TOPIC_BYTES", subject::MAX_TOPIC_BYTES.to_string()),
        (
            "FEATURE_COMPACT_PUBLISH",
            FEATURE_COMPACT_PUBLISH.to_owned(),
        ),
        (
            "FEATURE_COMPACT_DELIVERY",
            FEATURE_COMPACT_DELIVERY.to_owned(),
        ),
        ("REPLY_HEADER", REPLY_HEADER.to_owned()),
        ("DELIVER_AT_HEADER", DELIVER_AT_HEADER.to_owned()),
        ("DELAY_HEADER", DELAY_HEADER.to_owned()),
        ("TTL_HEADER", TTL_HEADER.to_owned()),
        ("EXPIRED_HEADER", EXPIRED_HEADER.to_owned()),
    ];
    let expected: BTreeMap<String, String> = constants
        .into_iter()
        .map(|(name, value)| (code(name), code(&value)))
        .collect();
    assert_eq!(rows, expected, "the constants table");
}
