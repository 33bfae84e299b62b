//! Masks personal data before it is stored: e-mail addresses and payment
//! card numbers anywhere in the text (cards are checked with the Luhn
//! digit, so order ids are left alone), and whole JSON fields named in the
//! config. JSON payloads stay valid JSON; other text is masked in place.
//! A message that needed no change passes untouched (no copy); a changed
//! one gets a header `sluice-redacted` with the number of masks applied.
//!
//! ```toml
//! [[plugin]]
//! name = "redact-pii"
//! path = "plugins/dist/redact_pii.wasm"
//! config = { fields = ["customer.phone", "customer.address"] }
//! ```

use serde::Deserialize;
use serde_json::Value;
use sluice_sdk::{Message, MessageBuilder, Transform, Transformed};

/// The plugin's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Mask e-mail addresses (default true).
    #[serde(default = "yes")]
    pub emails: bool,
    /// Mask payment card numbers (default true).
    #[serde(default = "yes")]
    pub cards: bool,
    /// JSON fields to mask whole (dotted paths like `customer.phone`).
    #[serde(default)]
    pub fields: Vec<String>,
    /// The replacement text.
    #[serde(default = "default_mask")]
    pub mask: String,
    /// What to do with a payload that is not UTF-8 text: `"dead-letter"`
    /// (default: it cannot be checked, so it is not stored) or `"pass"`.
    #[serde(default)]
    pub binary: Binary,
}

/// Handling of payloads that are not text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Binary {
    /// Not stored: sent to the dead-letter topic.
    #[default]
    DeadLetter,
    /// Stored as is.
    Pass,
}

fn yes() -> bool {
    true
}

fn default_mask() -> String {
    "[redacted]".into()
}

/// The header added to changed messages.
pub const REDACTED_HEADER: &str = "sluice-redacted";

/// The transform.
#[derive(Debug)]
pub struct RedactPii {
    config: Config,
    fields: Vec<Vec<String>>,
}

fn is_email_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._%+-".contains(&b)
}

fn is_email_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'-'
}

/// Byte ranges of e-mail addresses in `text`.
fn find_emails(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'@' {
            i += 1;
            continue;
        }
        let mut start = i;
        while start > 0 && is_email_local(bytes[start - 1]) {
            start -= 1;
        }
        let mut end = i + 1;
        while end < bytes.len() && is_email_domain(bytes[end]) {
            end += 1;
        }
        // Trailing dots belong to the sentence, not the domain.
        while end > i + 1 && bytes[end - 1] == b'.' {
            end -= 1;
        }
        let domain = &text[i + 1..end];
        let plausible = start < i
            && domain.contains('.')
            && !domain.starts_with('.')
            && domain.rsplit('.').next().is_some_and(|tld| tld.len() >= 2);
        if plausible {
            found.push((start, end));
            i = end;
        } else {
            i += 1;
        }
    }
    found
}

fn luhn_valid(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(*d);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// Byte ranges of card numbers: 13 to 19 digits, optionally grouped by
/// single spaces or dashes, passing the Luhn check.
fn find_cards(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts_number =
            bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric());
        if !starts_number {
            i += 1;
            continue;
        }
        let mut digits = Vec::with_capacity(19);
        let mut end = i;
        let mut j = i;
        while j < bytes.len() {
            let b = bytes[j];
            if b.is_ascii_digit() {
                digits.push(b - b'0');
                j += 1;
                end = j;
            } else if (b == b' ' || b == b'-')
                && j + 1 < bytes.len()
                && bytes[j + 1].is_ascii_digit()
                && digits.len() < 19
            {
                j += 1;
            } else {
                break;
            }
            if digits.len() > 19 {
                break;
            }
        }
        let ends_number = end == bytes.len() || !bytes[end].is_ascii_alphanumeric();
        if (13..=19).contains(&digits.len()) && ends_number && luhn_valid(&digits) {
            found.push((i, end));
            i = end;
        } else {
            i = end.max(i + 1);
        }
    }
    found
}

impl RedactPii {
    /// Masks e-mails and cards in one string; returns how many.
    fn redact_text(&self, text: &str) -> Option<(String, usize)> {
        let mut ranges = Vec::new();
        if self.config.emails {
            ranges.extend(find_emails(text));
        }
        if self.config.cards {
            ranges.extend(find_cards(text));
        }
        if ranges.is_empty() {
            return None;
        }
        ranges.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        let mut count = 0;
        for (start, end) in ranges {
            if start < at {
                continue; // overlapping match
            }
            out.push_str(&text[at..start]);
            out.push_str(&self.config.mask);
            at = end;
            count += 1;
        }
        out.push_str(&text[at..]);
        Some((out, count))
    }

    /// Masks inside a JSON document; returns how many masks were applied.
    fn redact_json(&self, doc: &mut Value) -> usize {
        let mut count = 0;
        for path in &self.fields {
            if let Some(value) = lookup_mut(doc, path) {
                if !value.is_null() {
                    *value = Value::String(self.config.mask.clone());
                    count += 1;
                }
            }
        }
        count + self.redact_strings(doc)
    }

    fn redact_strings(&self, value: &mut Value) -> usize {
        match value {
            Value::String(s) => match self.redact_text(s) {
                Some((masked, n)) => {
                    *s = masked;
                    n
                }
                None => 0,
            },
            Value::Array(items) => items.iter_mut().map(|v| self.redact_strings(v)).sum(),
            Value::Object(map) => map.values_mut().map(|v| self.redact_strings(v)).sum(),
            _ => 0,
        }
    }
}

fn lookup_mut<'v>(doc: &'v mut Value, path: &[String]) -> Option<&'v mut Value> {
    path.iter().try_fold(doc, |v, part| match v {
        Value::Object(map) => map.get_mut(part),
        Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
        _ => None,
    })
}

impl Transform for RedactPii {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config
            .fields
            .iter()
            .any(|f| f.is_empty() || f.split('.').any(str::is_empty))
        {
            return Err("`fields` entries must be dotted paths like `customer.phone`".into());
        }
        let fields = config
            .fields
            .iter()
            .map(|f| f.split('.').map(str::to_owned).collect())
            .collect();
        Ok(RedactPii { config, fields })
    }

    fn transform(&self, message: &Message<'_>) -> Result<Transformed, String> {
        let Ok(text) = message.payload_str() else {
            return match self.config.binary {
                Binary::Pass => Ok(Transformed::Unchanged),
                Binary::DeadLetter => Err(
                    "payload is not UTF-8 text, so it cannot be checked for personal data".into(),
                ),
            };
        };
        let (payload, count) = match serde_json::from_str::<Value>(text) {
            Ok(mut doc) if doc.is_object() || doc.is_array() => {
                let count = self.redact_json(&mut doc);
                if count == 0 {
                    return Ok(Transformed::Unchanged);
                }
                (serde_json::to_vec(&doc).map_err(|e| e.to_string())?, count)
            }
            _ => match self.redact_text(text) {
                Some((masked, count)) => (masked.into_bytes(), count),
                None => return Ok(Transformed::Unchanged),
            },
        };
        Ok(Transformed::one(
            MessageBuilder::from_message(message)
                .payload_bytes(payload)
                .set_header(REDACTED_HEADER, count.to_string()),
        ))
    }
}

sluice_sdk::export!(transform: RedactPii);

#[cfg(test)]
mod tests {
    use sluice_sdk::testing::{run_plugin, BatchBuilder, TestMessage, TestOutcome};
    use sluice_sdk::TransformPlugin;

    use super::*;

    fn run(config: &str, payload: impl Into<Vec<u8>>) -> TestOutcome {
        let batch = BatchBuilder::new("orders")
            .message(TestMessage::new(payload).header("region", "eu"))
            .build();
        run_plugin::<TransformPlugin<RedactPii>>(config, &batch)
            .unwrap()
            .remove(0)
    }

    fn replaced(outcome: TestOutcome) -> (String, String) {
        match outcome {
            TestOutcome::Replace(mut m) => {
                let m = m.remove(0);
                let header = m
                    .headers
                    .iter()
                    .find(|(n, _)| n == REDACTED_HEADER)
                    .map(|(_, v)| v.clone());
                assert_eq!(
                    m.headers[0],
                    ("region".to_owned(), "eu".to_owned()),
                    "headers kept"
                );
                (
                    String::from_utf8(m.payload).unwrap(),
                    header.unwrap_or_default(),
                )
            }
            other => panic!("expected a replacement, got {other:?}"),
        }
    }

    #[test]
    fn masks_emails_and_cards_in_text() {
        let (text, n) = replaced(run(
            "{}",
            "mail ann.lee+x@example.co.uk, card 4111 1111 1111 1111.",
        ));
        assert_eq!(text, "mail [redacted], card [redacted].");
        assert_eq!(n, "2");
    }

    #[test]
    fn leaves_look_alikes_alone() {
        for clean in [
            "order 1234567890123 ready",
            "user@localhost",
            "@handle",
            "4111 1111 1111 1112",
            "v1.2@3",
        ] {
            assert_eq!(run("{}", clean), TestOutcome::Pass, "{clean}");
        }
    }

    #[test]
    fn masks_json_fields_and_strings_inside_json() {
        let config = r#"{"fields": ["customer.phone", "items.0.note"]}"#;
        let payload = r#"{"customer":{"phone":"+44 20 7946 0000","email":"a@b.io","name":"Ann"},"items":[{"note":"x","sku":"A"}],"total":12}"#;
        let (text, n) = replaced(run(config, payload));
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["customer"]["phone"], "[redacted]");
        assert_eq!(doc["customer"]["email"], "[redacted]");
        assert_eq!(doc["customer"]["name"], "Ann");
        assert_eq!(doc["items"][0]["note"], "[redacted]");
        assert_eq!(doc["items"][0]["sku"], "A");
        assert_eq!(doc["total"], 12);
        assert_eq!(n, "3");
    }

    #[test]
    fn clean_json_and_missing_fields_pass_untouched() {
        let config = r#"{"fields": ["customer.phone"]}"#;
        assert_eq!(
            run(config, r#"{"customer": {"name": "Ann"}}"#),
            TestOutcome::Pass
        );
        assert_eq!(run(config, r#"{"customer": "flat"}"#), TestOutcome::Pass);
        assert_eq!(run(config, "[]"), TestOutcome::Pass);
    }

    #[test]
    fn binary_payloads_follow_the_config() {
        match run("{}", vec![0xff, 0xfe]) {
            TestOutcome::DeadLetter(reason) => assert!(reason.contains("not UTF-8"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(run(r#"{"binary": "pass"}"#, vec![0xff]), TestOutcome::Pass);
    }

    #[test]
    fn custom_mask_and_switches() {
        let (text, _) = replaced(run(
            r#"{"mask": "***", "cards": false}"#,
            "a@b.io 4111111111111111",
        ));
        assert_eq!(text, "*** 4111111111111111");
    }

    #[test]
    fn bad_config_is_refused_clearly() {
        let batch = BatchBuilder::new("t").build();
        let err = run_plugin::<TransformPlugin<RedactPii>>(r#"{"fields": ["a..b"]}"#, &batch)
            .unwrap_err();
        assert!(err.contains("dotted paths"), "{err}");
        let err =
            run_plugin::<TransformPlugin<RedactPii>>(r#"{"emails": "yes"}"#, &batch).unwrap_err();
        assert!(err.contains("invalid plugin config"), "{err}");
        let err =
            run_plugin::<TransformPlugin<RedactPii>>(r#"{"binary": "drop"}"#, &batch).unwrap_err();
        assert!(err.contains("unknown variant"), "{err}");
    }
}
