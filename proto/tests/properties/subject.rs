//! Topic names and patterns against a reference model written from the
//! rules (`*` one token, `>` one or more trailing tokens).

use proptest::collection::vec;
use proptest::prelude::*;
use sluice_proto::{validate_topic, Pattern};

use crate::config;
use crate::strategies::{token, topic};

/// A pattern token of the reference model.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Lit(String),
    One,
    Rest,
}

/// The reference matcher: `*` one token, `>` (last only) one or more.
fn model_matches(pattern: &[Tok], topic: &[&str]) -> bool {
    match (pattern.split_first(), topic.split_first()) {
        (None, None) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some((Tok::Rest, _)), Some(_)) => true,
        (Some((Tok::One, p)), Some((_, t))) => model_matches(p, t),
        (Some((Tok::Lit(l), p)), Some((s, t))) => l == s && model_matches(p, t),
    }
}

fn token_ok(t: &str) -> bool {
    !t.is_empty()
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The validity rules of topic names, as the module docs state them.
fn model_topic_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && s.split('.').all(token_ok)
}

/// The validity rules of patterns; the parsed tokens when valid.
fn model_pattern(s: &str) -> Option<Vec<Tok>> {
    if s.is_empty() || s.len() > 255 {
        return None;
    }
    let parts: Vec<&str> = s.split('.').collect();
    let mut out = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        out.push(match *p {
            "*" => Tok::One,
            ">" if i + 1 == parts.len() => Tok::Rest,
            lit if token_ok(lit) => Tok::Lit(lit.to_owned()),
            _ => return None,
        });
    }
    Some(out)
}

/// Few distinct literals, so that patterns and topics often meet.
fn small_token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_owned()),
        Just("b".to_owned()),
        Just("ab".to_owned()),
        Just("c-1".to_owned()),
        token(),
    ]
}

fn small_topic() -> impl Strategy<Value = Vec<String>> {
    vec(small_token(), 1..=5)
}

fn pattern_tokens() -> impl Strategy<Value = Vec<Tok>> {
    (
        vec(
            prop_oneof![
                3 => small_token().prop_map(Tok::Lit),
                1 => Just(Tok::One),
            ],
            0..=4,
        ),
        any::<bool>(),
    )
        .prop_filter_map("empty pattern", |(mut toks, rest)| {
            if rest {
                toks.push(Tok::Rest);
            }
            (!toks.is_empty()).then_some(toks)
        })
}

fn render(pattern: &[Tok]) -> String {
    pattern
        .iter()
        .map(|t| match t {
            Tok::Lit(l) => l.as_str(),
            Tok::One => "*",
            Tok::Rest => ">",
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// A topic the pattern matches: each `*` filled by a token, `>` by one to
/// three.
fn instantiate(pattern: Vec<Tok>) -> impl Strategy<Value = (Vec<Tok>, String)> {
    let fills = pattern
        .iter()
        .map(|t| match t {
            Tok::Lit(l) => Just(vec![l.clone()]).boxed(),
            Tok::One => vec(small_token(), 1..=1).boxed(),
            Tok::Rest => vec(small_token(), 1..=3).boxed(),
        })
        .collect::<Vec<_>>();
    (Just(pattern), fills).prop_map(|(p, parts)| (p, parts.concat().join(".")))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn generated_topics_are_valid(t in topic()) {
        prop_assert_eq!(validate_topic(&t), Ok(()));
        let p = Pattern::parse(&t).unwrap();
        prop_assert!(p.is_literal());
        prop_assert!(p.matches(&t));
    }

    #[test]
    fn a_literal_pattern_matches_only_itself(a in topic(), b in topic()) {
        let p = Pattern::parse(&a).unwrap();
        prop_assert_eq!(p.matches(&b), a == b);
    }

    #[test]
    fn matching_agrees_with_the_model(p in pattern_tokens(), t in small_topic()) {
        let source = render(&p);
        let pattern = Pattern::parse(&source).unwrap();
        prop_assert_eq!(pattern.as_str(), source.as_str());
        prop_assert_eq!(pattern.is_literal(), p.iter().all(|t| matches!(t, Tok::Lit(_))));
        let topic = t.join(".");
        let parts: Vec<&str> = topic.split('.').collect();
        prop_assert_eq!(
            pattern.matches(&topic),
            model_matches(&p, &parts),
            "{} vs {}",
            source,
            topic
        );
    }

    #[test]
    fn a_pattern_matches_its_instances(
        (p, topic) in pattern_tokens().prop_flat_map(instantiate)
    ) {
        prop_assert_eq!(validate_topic(&topic), Ok(()));
        let pattern = Pattern::parse(&render(&p)).unwrap();
        prop_assert!(pattern.matches(&topic), "{} vs {}", render(&p), topic);
    }

    /// Strings over the characters that matter (and a few that are never
    /// allowed): valid exactly when the model says, and never a panic.
    #[test]
    fn validity_agrees_with_the_model(s in "[ab*>.\\- é/]{0,12}") {
        prop_assert_eq!(validate_topic(&s).is_ok(), model_topic_ok(&s), "topic {:?}", s);
        let parsed = Pattern::parse(&s);
        let model = model_pattern(&s);
        prop_assert_eq!(parsed.is_ok(), model.is_some(), "pattern {:?}", s);
        if let (Ok(pattern), Some(model)) = (parsed, model) {
            for topic in ["a", "b", "a.b", "a.a.a", "ab.b"] {
                let parts: Vec<&str> = topic.split('.').collect();
                prop_assert_eq!(pattern.matches(topic), model_matches(&model, &parts));
            }
        }
    }

    #[test]
    fn long_names_are_refused(t in vec(token(), 40..60)) {
        let name = t.join(".");
        prop_assert_eq!(validate_topic(&name).is_ok(), name.len() <= 255);
        prop_assert_eq!(Pattern::parse(&name).is_ok(), name.len() <= 255);
    }
}
