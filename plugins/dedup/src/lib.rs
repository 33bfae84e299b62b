//! Drops (or dead-letters) a message whose JSON field holds a value seen
//! in the last `window_secs`: de-duplication by a business key, such as an
//! order id that a producer may send twice. What was seen lives in the
//! broker's plugin state, so it survives hot reloads and restarts.
//!
//! A message whose payload is not JSON, or has no such field (or `null`),
//! passes. Each value is remembered from its first message for the
//! window; one batch holding the same value twice keeps the first. If the
//! state cannot be reached the message passes and a warning is logged.
//!
//! ```toml
//! [[plugin]]
//! name = "orders-once"
//! path = "plugins/dist/dedup.wasm"
//! config = { field = "order_id", window_secs = 86400 }
//! ```

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use sluice_sdk::{state, Batch, Output, Plugin};

/// What happens to a duplicate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Duplicate {
    /// Discard it.
    #[default]
    Drop,
    /// Store it in the dead-letter topic.
    DeadLetter,
}

/// The plugin's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The field that identifies a message (`order_id`, `order.id` or
    /// `/order/id`).
    pub field: String,
    /// How long a value is remembered, in seconds.
    #[serde(default = "default_window")]
    pub window_secs: u64,
    /// `drop` or `dead-letter`.
    #[serde(default)]
    pub duplicate: Duplicate,
}

fn default_window() -> u64 {
    24 * 60 * 60
}

/// The de-duplicator.
#[derive(Debug)]
pub struct Dedup {
    pointer: String,
    field: String,
    window: Duration,
    duplicate: Duplicate,
}

/// The field's value as a state key, if the payload has one.
fn identity(pointer: &str, payload: &[u8]) -> Option<String> {
    let doc: Value = serde_json::from_slice(payload).ok()?;
    match doc.pointer(pointer)? {
        Value::Null => None,
        Value::String(s) => Some(format!("s:{s}")),
        other => Some(format!("j:{other}")),
    }
}

impl Plugin for Dedup {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.field.is_empty() {
            return Err("`field` must name a field of the payload".into());
        }
        if config.window_secs == 0 {
            return Err("`window_secs` must be at least 1".into());
        }
        Ok(Dedup {
            pointer: sluice_sdk::json_pointer(&config.field),
            field: config.field,
            window: Duration::from_secs(config.window_secs),
            duplicate: config.duplicate,
        })
    }

    fn handle(&self, batch: &Batch, out: &mut Output) {
        for message in batch.messages() {
            let Some(id) = identity(&self.pointer, message.payload()) else {
                out.pass();
                continue;
            };
            // One call: the first message of a value creates its counter
            // (with the window as its TTL), later ones find it above 1.
            match state::incr_with_ttl(&id, 1, self.window) {
                Ok(1) => out.pass(),
                Ok(_) => match self.duplicate {
                    Duplicate::Drop => out.drop_message(),
                    Duplicate::DeadLetter => out.dead_letter(format!(
                        "duplicate: {} already seen in the last {} s",
                        self.field,
                        self.window.as_secs()
                    )),
                },
                Err(e) => {
                    sluice_sdk::warn!(message: message, "not checked for duplicates ({e}); let through");
                    out.pass();
                }
            }
        }
    }
}

sluice_sdk::export!(plugin: Dedup);

#[cfg(test)]
mod tests {
    use sluice_sdk::testing::{
        advance_time, reset_state, run_plugin, state_entries, BatchBuilder, TestOutcome,
    };

    use super::*;

    fn orders(ids: &[&str]) -> sluice_sdk::Batch {
        let mut b = BatchBuilder::new("orders");
        for id in ids {
            b = b.message(format!(r#"{{"order_id": {id}}}"#));
        }
        b.build()
    }

    #[test]
    fn a_value_seen_in_the_window_is_dropped() {
        reset_state();
        let config = r#"{"field": "order_id", "window_secs": 60}"#;
        use TestOutcome::{Drop, Pass};
        let run = |b| run_plugin::<Dedup>(config, &b).unwrap();
        assert_eq!(
            run(orders(&["\"a\"", "\"b\"", "\"a\"", "1", "\"1\""])),
            vec![Pass, Pass, Drop, Pass, Pass],
            "the string \"1\" and the number 1 are different values"
        );
        assert_eq!(run(orders(&["\"b\"", "null"])), vec![Drop, Pass]);
        assert_eq!(state_entries().len(), 4);
        advance_time(Duration::from_secs(60));
        assert_eq!(run(orders(&["\"a\""])), vec![Pass]);
    }

    #[test]
    fn duplicates_can_be_dead_lettered_and_other_payloads_pass() {
        reset_state();
        let config = r#"{"field": "order.id", "duplicate": "dead-letter"}"#;
        let batch = BatchBuilder::new("orders")
            .message(r#"{"order": {"id": 5}}"#)
            .message(r#"{"order": {"id": 5}}"#)
            .message("not json")
            .message("{}")
            .build();
        let outcomes = run_plugin::<Dedup>(config, &batch).unwrap();
        assert_eq!(outcomes[0], TestOutcome::Pass);
        assert!(
            matches!(&outcomes[1], TestOutcome::DeadLetter(r) if r.contains("order.id")),
            "{outcomes:?}"
        );
        assert_eq!(outcomes[2..], [TestOutcome::Pass, TestOutcome::Pass]);
        assert!(sluice_sdk::instantiate::<Dedup>(r#"{"field": ""}"#).is_err());
    }
}
