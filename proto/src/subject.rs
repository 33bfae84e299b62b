//! Topic names and subscription patterns.
//!
//! A topic name is dot-separated tokens of `[A-Za-z0-9_-]`, at most 255
//! bytes. A pattern is the same with two wildcards, as in NATS: `*` stands
//! for exactly one token, and `>` (last token only) for one or more tokens.

/// Longest topic name or pattern, in bytes.
pub const MAX_TOPIC_BYTES: usize = 255;

/// Why a topic name or pattern is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    /// Empty string.
    #[error("name is empty")]
    Empty,
    /// Over [`MAX_TOPIC_BYTES`].
    #[error("name is {0} bytes, the limit is 255")]
    TooLong(usize),
    /// Two dots in a row, or a dot at either end.
    #[error("name has an empty token (two dots in a row, or a dot at the start or end)")]
    EmptyToken,
    /// A character outside `[A-Za-z0-9_-]`.
    #[error("character {0:?} is not allowed (use letters, digits, '_' and '-', separated by '.')")]
    BadChar(char),
    /// A wildcard in a topic name, where only patterns may have them.
    #[error("wildcard {0:?} is only allowed in subscription patterns, not in topic names")]
    Wildcard(char),
    /// `>` somewhere other than the last token, or a wildcard inside a token.
    #[error("'>' may only be the last token and wildcards must be whole tokens")]
    MisplacedWildcard,
}

fn check_length(s: &str) -> Result<(), SubjectError> {
    if s.is_empty() {
        return Err(SubjectError::Empty);
    }
    if s.len() > MAX_TOPIC_BYTES {
        return Err(SubjectError::TooLong(s.len()));
    }
    Ok(())
}

fn check_token_chars(token: &str) -> Result<(), SubjectError> {
    if token.is_empty() {
        return Err(SubjectError::EmptyToken);
    }
    match token
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        None => Ok(()),
        Some(c @ ('*' | '>')) => Err(SubjectError::Wildcard(c)),
        Some(c) => Err(SubjectError::BadChar(c)),
    }
}

/// Checks a topic name.
pub fn validate_topic(name: &str) -> Result<(), SubjectError> {
    check_length(name)?;
    name.split('.').try_for_each(check_token_chars)
}

/// One token of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    /// `*`
    One,
    /// `>`
    Rest,
}

/// A parsed subscription pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    tokens: Vec<Token>,
}

impl Pattern {
    /// Parses and validates a pattern.
    pub fn parse(pattern: &str) -> Result<Pattern, SubjectError> {
        check_length(pattern)?;
        let parts: Vec<&str> = pattern.split('.').collect();
        let mut tokens = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let token = match *part {
                "*" => Token::One,
                ">" if i + 1 == parts.len() => Token::Rest,
                ">" => return Err(SubjectError::MisplacedWildcard),
                literal => match check_token_chars(literal) {
                    Ok(()) => Token::Literal(literal.to_owned()),
                    Err(SubjectError::Wildcard(_)) => return Err(SubjectError::MisplacedWildcard),
                    Err(e) => return Err(e),
                },
            };
            tokens.push(token);
        }
        Ok(Pattern {
            source: pattern.to_owned(),
            tokens,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True if the pattern has no wildcard (it names one topic).
    pub fn is_literal(&self) -> bool {
        self.tokens.iter().all(|t| matches!(t, Token::Literal(_)))
    }

    /// True if `topic` (a valid topic name) matches. Allocates nothing.
    pub fn matches(&self, topic: &str) -> bool {
        let mut parts = topic.split('.');
        for token in &self.tokens {
            match token {
                Token::Rest => return parts.next().is_some(),
                Token::One => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
                Token::Literal(lit) => match parts.next() {
                    Some(part) if part == lit => {}
                    _ => return false,
                },
            }
        }
        parts.next().is_none()
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

impl std::str::FromStr for Pattern {
    type Err = SubjectError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pattern::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_topics() {
        for name in [
            "orders",
            "orders.eu",
            "a-b_c.D9",
            "x.y.z.w",
            &"a".repeat(255),
        ] {
            assert_eq!(validate_topic(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn invalid_topics() {
        assert_eq!(validate_topic(""), Err(SubjectError::Empty));
        assert_eq!(
            validate_topic(&"a".repeat(256)),
            Err(SubjectError::TooLong(256))
        );
        assert_eq!(validate_topic("a..b"), Err(SubjectError::EmptyToken));
        assert_eq!(validate_topic(".a"), Err(SubjectError::EmptyToken));
        assert_eq!(validate_topic("a."), Err(SubjectError::EmptyToken));
        assert_eq!(validate_topic("a b"), Err(SubjectError::BadChar(' ')));
        assert_eq!(validate_topic("a/b"), Err(SubjectError::BadChar('/')));
        assert_eq!(validate_topic("é"), Err(SubjectError::BadChar('é')));
        assert_eq!(validate_topic("a.*"), Err(SubjectError::Wildcard('*')));
        assert_eq!(validate_topic("a.>"), Err(SubjectError::Wildcard('>')));
        assert_eq!(validate_topic(".."), Err(SubjectError::EmptyToken));
    }

    #[test]
    fn invalid_patterns() {
        assert_eq!(Pattern::parse(">.a"), Err(SubjectError::MisplacedWildcard));
        assert_eq!(Pattern::parse("a*"), Err(SubjectError::MisplacedWildcard));
        assert_eq!(Pattern::parse("a.b>"), Err(SubjectError::MisplacedWildcard));
        assert_eq!(Pattern::parse("a..*"), Err(SubjectError::EmptyToken));
        assert_eq!(Pattern::parse(""), Err(SubjectError::Empty));
    }

    #[test]
    fn matching() {
        let cases: &[(&str, &str, bool)] = &[
            ("orders", "orders", true),
            ("orders", "orders.eu", false),
            ("orders.*", "orders.eu", true),
            ("orders.*", "orders", false),
            ("orders.*", "orders.eu.paris", false),
            ("orders.>", "orders.eu", true),
            ("orders.>", "orders.eu.paris", true),
            ("orders.>", "orders", false),
            ("*.eu", "orders.eu", true),
            ("*.eu", "orders.us", false),
            ("*", "orders", true),
            ("*", "orders.eu", false),
            (">", "orders", true),
            (">", "a.b.c", true),
            ("*.*.c", "a.b.c", true),
            ("a.*.>", "a.b", false),
            ("a.*.>", "a.b.c", true),
            ("orders.eu", "orders.euro", false),
            ("dlq.>", "orders.x", false),
        ];
        for (pattern, topic, expected) in cases {
            let p = Pattern::parse(pattern).unwrap();
            assert_eq!(p.matches(topic), *expected, "{pattern} vs {topic}");
        }
    }

    #[test]
    fn literal_patterns() {
        assert!(Pattern::parse("a.b").unwrap().is_literal());
        assert!(!Pattern::parse("a.*").unwrap().is_literal());
        assert!(!Pattern::parse("a.>").unwrap().is_literal());
    }
}
