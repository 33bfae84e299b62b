//! Routes each message to `<prefix><value of a header>`, e.g. with
//! `header = "region"` and `prefix = "orders."`, a message with
//! `region: eu` goes to `orders.eu`. Messages without the header (or with a
//! value that is not a valid topic token) go to `fallback`, or stay on
//! their topic when no fallback is configured.
//!
//! ```toml
//! [[plugin]]
//! name = "route-by-region"
//! path = "plugins/dist/route_by_header.wasm"
//! config = { header = "region", prefix = "orders.", fallback = "orders.unrouted" }
//! ```

use serde::Deserialize;
use sluice_sdk::{Message, Router};

/// The plugin's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Header whose value picks the destination.
    pub header: String,
    /// Put before the value to make the topic name.
    #[serde(default)]
    pub prefix: String,
    /// Where messages without a usable header go; none: they stay put.
    #[serde(default)]
    pub fallback: Option<String>,
}

/// The router.
#[derive(Debug)]
pub struct RouteByHeader {
    config: Config,
}

/// A header value may become part of a topic name only if it is one token.
fn is_token(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Router for RouteByHeader {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.header.is_empty() {
            return Err("`header` must not be empty".into());
        }
        Ok(RouteByHeader { config })
    }

    fn route(&self, message: &Message<'_>) -> Vec<String> {
        match message.header(&self.config.header) {
            Some(value) if is_token(value) => vec![format!("{}{value}", self.config.prefix)],
            _ => self.config.fallback.iter().cloned().collect(),
        }
    }
}

sluice_sdk::export!(router: RouteByHeader);

#[cfg(test)]
mod tests {
    use sluice_sdk::testing::{run_plugin, BatchBuilder, TestMessage, TestOutcome};
    use sluice_sdk::RouterPlugin;

    use super::*;

    const CONFIG: &str =
        r#"{"header": "region", "prefix": "orders.", "fallback": "orders.unrouted"}"#;

    fn route(config: &str, batch: BatchBuilder) -> Result<Vec<TestOutcome>, String> {
        run_plugin::<RouterPlugin<RouteByHeader>>(config, &batch.build())
    }

    #[test]
    fn routes_by_header_value() {
        let batch = BatchBuilder::new("orders.incoming")
            .message(TestMessage::new("{}").header("region", "eu"))
            .message(TestMessage::new("{}").header("region", "us-east"));
        assert_eq!(
            route(CONFIG, batch).unwrap(),
            vec![
                TestOutcome::Route(vec!["orders.eu".into()]),
                TestOutcome::Route(vec!["orders.us-east".into()])
            ]
        );
    }

    #[test]
    fn missing_or_unusable_header_goes_to_the_fallback() {
        let batch = BatchBuilder::new("orders.incoming")
            .message("no header")
            .message(TestMessage::new("{}").header("region", "eu.west"))
            .message(TestMessage::new("{}").header("region", ""))
            .message(TestMessage::new("{}").header("region", "../etc"));
        let fallback = TestOutcome::Route(vec!["orders.unrouted".into()]);
        assert_eq!(route(CONFIG, batch).unwrap(), vec![fallback; 4]);
    }

    #[test]
    fn without_a_fallback_messages_stay() {
        let batch = BatchBuilder::new("orders.incoming").message("no header");
        assert_eq!(
            route(r#"{"header": "region"}"#, batch).unwrap(),
            vec![TestOutcome::Pass]
        );
    }

    #[test]
    fn bad_config_is_refused_clearly() {
        let batch = || BatchBuilder::new("t");
        let err = route(r#"{"prefix": "x."}"#, batch()).unwrap_err();
        assert!(err.contains("missing field `header`"), "{err}");
        let err = route(r#"{"header": ""}"#, batch()).unwrap_err();
        assert!(err.contains("must not be empty"), "{err}");
        let err = route(r#"{"header": "a", "prefx": "x"}"#, batch()).unwrap_err();
        assert!(err.contains("unknown field `prefx`"), "{err}");
    }
}
