//! Lets at most `limit` messages per key through in each window; the rest
//! are dropped or dead-lettered. The counters live in the broker's plugin
//! state, so they survive hot reloads and restarts, and shadow versions
//! count apart from the live one.
//!
//! What a message is counted by (`by`):
//! - `"key"` (default): its key;
//! - `"header:NAME"`: the value of header NAME;
//! - `"field:PATH"`: a field of its JSON payload (`customer.id` or
//!   `/customer/id`).
//!
//! Messages without one (no key, no such header or field, a payload that
//! is not JSON) pass uncounted. Windows are fixed: a key's window starts
//! at its first message and lasts `window_secs`. If the state cannot be
//! reached the message passes (the limiter fails open) and a warning is
//! logged.
//!
//! ```toml
//! [[plugin]]
//! name = "per-customer"
//! path = "plugins/dist/rate_limiter.wasm"
//! config = { limit = 100, window_secs = 60, by = "field:customer.id", over = "dead-letter" }
//! ```

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use sluice_sdk::{state, Batch, Message, Output, Plugin};

/// What happens to a message past the limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Over {
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
    /// Messages per key per window.
    pub limit: u64,
    /// Length of a window, in seconds.
    #[serde(default = "default_window")]
    pub window_secs: u64,
    /// `key`, `header:NAME` or `field:PATH`.
    #[serde(default = "default_by")]
    pub by: String,
    /// `drop` or `dead-letter`.
    #[serde(default)]
    pub over: Over,
}

fn default_window() -> u64 {
    60
}

fn default_by() -> String {
    "key".into()
}

#[derive(Debug, Clone)]
enum By {
    Key,
    Header(String),
    Field(String),
}

/// The limiter.
#[derive(Debug)]
pub struct RateLimiter {
    limit: i64,
    window: Duration,
    by: By,
    over: Over,
}

/// What a message is counted by, if it has it.
fn counted_by(by: &By, message: &Message<'_>) -> Option<String> {
    match by {
        By::Key => message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned()),
        By::Header(name) => message.header(name).map(str::to_owned),
        By::Field(pointer) => {
            let doc: Value = serde_json::from_slice(message.payload()).ok()?;
            match doc.pointer(pointer)? {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            }
        }
    }
}

impl Plugin for RateLimiter {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.limit == 0 {
            return Err("`limit` must be at least 1".into());
        }
        if config.window_secs == 0 {
            return Err("`window_secs` must be at least 1".into());
        }
        let by = if config.by == "key" {
            By::Key
        } else if let Some(name) = config.by.strip_prefix("header:") {
            By::Header(name.to_owned())
        } else if let Some(field) = config.by.strip_prefix("field:") {
            By::Field(sluice_sdk::json_pointer(field))
        } else {
            return Err(format!(
                "`by` must be \"key\", \"header:NAME\" or \"field:PATH\", not {:?}",
                config.by
            ));
        };
        Ok(RateLimiter {
            limit: i64::try_from(config.limit).unwrap_or(i64::MAX),
            window: Duration::from_secs(config.window_secs),
            by,
            over: config.over,
        })
    }

    fn handle(&self, batch: &Batch, out: &mut Output) {
        for message in batch.messages() {
            let Some(who) = counted_by(&self.by, &message) else {
                out.pass();
                continue;
            };
            match state::incr_with_ttl(&format!("n:{who}"), 1, self.window) {
                Ok(n) if n > self.limit => match self.over {
                    Over::Drop => out.drop_message(),
                    Over::DeadLetter => out.dead_letter(format!(
                        "rate limit: more than {} messages for {who:?} in {} s",
                        self.limit,
                        self.window.as_secs()
                    )),
                },
                Ok(_) => out.pass(),
                Err(e) => {
                    sluice_sdk::warn!(message: message, "not counted ({e}); let through");
                    out.pass();
                }
            }
        }
    }
}

sluice_sdk::export!(plugin: RateLimiter);

#[cfg(test)]
mod tests {
    use sluice_sdk::testing::{
        advance_time, reset_state, run_plugin, state_quota, take_logs, BatchBuilder, TestMessage,
        TestOutcome,
    };

    use super::*;

    fn run(config: &str, batch: &sluice_sdk::Batch) -> Vec<TestOutcome> {
        run_plugin::<RateLimiter>(config, batch).unwrap()
    }

    fn keyed(keys: &[&str]) -> sluice_sdk::Batch {
        let mut b = BatchBuilder::new("orders");
        for k in keys {
            b = b.message(TestMessage::new("{}").key(*k));
        }
        b.build()
    }

    #[test]
    fn past_the_limit_per_key_messages_are_dropped_until_the_window_ends() {
        reset_state();
        let config = r#"{"limit": 2, "window_secs": 10}"#;
        use TestOutcome::{Drop, Pass};
        assert_eq!(
            run(config, &keyed(&["a", "a", "b", "a"])),
            vec![Pass, Pass, Pass, Drop]
        );
        assert_eq!(run(config, &keyed(&["b", "b"])), vec![Pass, Drop]);
        advance_time(Duration::from_secs(10));
        assert_eq!(run(config, &keyed(&["a", "b"])), vec![Pass, Pass]);
    }

    #[test]
    fn counts_by_header_or_field_and_dead_letters() {
        reset_state();
        let config = r#"{"limit": 1, "by": "field:customer.id", "over": "dead-letter"}"#;
        let batch = BatchBuilder::new("orders")
            .message(r#"{"customer": {"id": 7}}"#)
            .message(r#"{"customer": {"id": 7}}"#)
            .message(r#"{"customer": {"id": "x"}}"#)
            .message("not json")
            .build();
        let outcomes = run(config, &batch);
        assert_eq!(outcomes[0], TestOutcome::Pass);
        assert!(
            matches!(&outcomes[1], TestOutcome::DeadLetter(r) if r.contains("\"7\"")),
            "{outcomes:?}"
        );
        assert_eq!(outcomes[2..], [TestOutcome::Pass, TestOutcome::Pass]);

        let config = r#"{"limit": 1, "by": "header:tenant"}"#;
        let batch = BatchBuilder::new("t")
            .message(TestMessage::new("").header("tenant", "acme"))
            .message(TestMessage::new("").header("tenant", "acme"))
            .message("")
            .build();
        assert_eq!(
            run(config, &batch),
            vec![TestOutcome::Pass, TestOutcome::Drop, TestOutcome::Pass]
        );
    }

    #[test]
    fn fails_open_when_the_state_is_full() {
        reset_state();
        state_quota(50);
        let _ = take_logs();
        let outcomes = run(r#"{"limit": 1}"#, &keyed(&["a-rather-long-key"; 3]));
        assert_eq!(outcomes, vec![TestOutcome::Pass; 3]);
        assert!(take_logs()[0].text.contains("quota"));
    }

    #[test]
    fn bad_configs_are_refused() {
        for (config, says) in [
            (r#"{"limit": 0}"#, "limit"),
            (r#"{"limit": 1, "window_secs": 0}"#, "window_secs"),
            (r#"{"limit": 1, "by": "payload"}"#, "`by`"),
            (r#"{"limit": 1, "over": "reject"}"#, "dead-letter"),
        ] {
            let error = sluice_sdk::instantiate::<RateLimiter>(config).unwrap_err();
            assert!(error.contains(says), "{config}: {error}");
        }
    }
}
