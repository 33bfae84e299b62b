//! The payloads `sluice pub` sends: a template in which `{n}` becomes the
//! message number (padded with spaces to `--size` bytes when given), the
//! bytes of a file, or `--size` bytes of filler.

use anyhow::bail;
use bytes::Bytes;

/// What `{n}` in a template, key or id is replaced with.
const NUMBER: &str = "{n}";

/// The payload of every message of one `sluice pub`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A template with `{n}` in it, rendered per message.
    Template {
        /// The text, `{n}` included.
        text: String,
        /// Pad each rendering with spaces to this many bytes (`--size`).
        pad_to: Option<usize>,
    },
    /// The same bytes for every message.
    Fixed(Bytes),
}

impl Payload {
    /// `--size` alone: `size` bytes of `x`.
    pub fn filler(size: usize) -> Payload {
        Payload::Fixed(Bytes::from(vec![b'x'; size]))
    }

    /// A message template for messages `1..=count`, padded with spaces to
    /// `pad_to` bytes (spaces keep a JSON template valid JSON). Refuses a
    /// template that would be longer than `pad_to` for some message rather
    /// than truncating it: a cut payload is a different message, and a
    /// load test should not change size half way through.
    pub fn template(text: String, pad_to: Option<usize>, count: u64) -> anyhow::Result<Payload> {
        if let Some(size) = pad_to {
            // `{n}` never renders longer than for the last (largest) number.
            let longest = render(&text, count.max(1));
            if longest.len() > size {
                bail!(
                    "the message is {} bytes once {{n}} is replaced ({longest:?}), longer than --size {size}: raise --size or shorten the message",
                    longest.len()
                );
            }
        }
        if text.contains(NUMBER) {
            return Ok(Payload::Template { text, pad_to });
        }
        // Rendered once: every message is the same.
        let mut bytes = text.into_bytes();
        if let Some(size) = pad_to {
            bytes.resize(size, b' ');
        }
        Ok(Payload::Fixed(Bytes::from(bytes)))
    }

    /// The payload of message `n` (1-based).
    pub fn render(&self, n: u64) -> Bytes {
        match self {
            Payload::Template { text, pad_to } => {
                let mut bytes = render(text, n).into_bytes();
                if let Some(size) = pad_to {
                    bytes.resize((*size).max(bytes.len()), b' ');
                }
                Bytes::from(bytes)
            }
            Payload::Fixed(bytes) => bytes.clone(),
        }
    }
}

/// `text` with every `{n}` replaced by `n` (also used for keys and ids).
pub fn render(text: &str, n: u64) -> String {
    if text.contains(NUMBER) {
        text.replace(NUMBER, &n.to_string())
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(payload: &Payload, n: u64) -> String {
        String::from_utf8(payload.render(n).to_vec()).unwrap()
    }

    #[test]
    fn a_template_without_size_is_rendered_as_is() {
        let p = Payload::template("order {n} of {n}".into(), None, 10).unwrap();
        assert_eq!(text(&p, 7), "order 7 of 7");
        let p = Payload::template("plain".into(), None, 10).unwrap();
        assert_eq!(p, Payload::Fixed(Bytes::from_static(b"plain")));
    }

    #[test]
    fn a_template_with_size_is_padded_with_spaces_to_exactly_size() {
        let p = Payload::template("order {n}".into(), Some(1024), 100_000).unwrap();
        for n in [1, 9, 10, 99_999, 100_000] {
            let rendered = p.render(n);
            assert_eq!(rendered.len(), 1024, "message {n}");
            assert_eq!(text(&p, n).trim_end(), format!("order {n}"));
        }
        // Without `{n}` the padded payload is built once.
        let p = Payload::template(r#"{"id": 1}"#.into(), Some(16), 3).unwrap();
        assert_eq!(p, Payload::Fixed(Bytes::from_static(b"{\"id\": 1}       ")));
        let json: serde_json::Value = serde_json::from_slice(&p.render(1)).unwrap();
        assert_eq!(json["id"], 1, "padding keeps JSON valid");
    }

    #[test]
    fn a_template_exactly_size_long_for_the_last_message_fits() {
        let p = Payload::template("m{n}".into(), Some(4), 100).unwrap();
        assert_eq!(text(&p, 1), "m1  ");
        assert_eq!(text(&p, 100), "m100");
    }

    #[test]
    fn a_template_longer_than_size_is_refused_before_anything_is_sent() {
        // Fits for message 1 ("order 1", 7 bytes) but not for message 100.
        let err = Payload::template("order {n}".into(), Some(8), 100).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("9 bytes"), "{msg}");
        assert!(msg.contains("\"order 100\""), "{msg}");
        assert!(msg.contains("--size 8"), "{msg}");
        let err = Payload::template("too long".into(), Some(3), 1).unwrap_err();
        assert!(err.to_string().contains("raise --size"), "{err}");
    }

    #[test]
    fn size_alone_is_filler() {
        assert_eq!(Payload::filler(3).render(5), Bytes::from_static(b"xxx"));
    }

    #[test]
    fn keys_and_ids_use_the_same_substitution() {
        assert_eq!(render("charge-{n}", 12), "charge-12");
        assert_eq!(render("charge-1", 12), "charge-1");
    }
}
