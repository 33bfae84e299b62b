//! Templates of `sluice plugin new`: a ready crate per plugin kind, with a
//! working example and its tests.

use super::args::PluginKind;

/// `Cargo.toml` of a new plugin. `sdk` is the dependency spec of sluice-sdk.
pub fn cargo_toml(name: &str, sdk: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
# cdylib: the WebAssembly component; rlib: native `cargo test`.
crate-type = ["cdylib", "rlib"]

[dependencies]
sluice-sdk = {sdk}
serde = {{ version = "1", features = ["derive"] }}

# Small components load fast and ship easily.
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true
panic = "abort"

# A plugin is its own workspace, even when created inside another one.
[workspace]
"#
    )
}

/// `src/lib.rs` of a new plugin of `kind`.
pub fn lib_rs(kind: PluginKind, name: &str) -> String {
    let body = match kind {
        PluginKind::Filter => FILTER,
        PluginKind::Transform => TRANSFORM,
        PluginKind::Router => ROUTER,
        PluginKind::Validator => VALIDATOR,
    };
    format!("//! `{name}`: a sluice plugin.\n{body}")
}

/// `README.md` of a new plugin.
pub fn readme(kind: PluginKind, name: &str) -> String {
    let kind = format!("{kind:?}").to_lowercase();
    format!(
        r#"# {name}

A sluice {kind} plugin.

```sh
cargo test                          # the logic, natively
sluice plugin build                 # the component: target/wasm32-wasip2/release/{file}.wasm
sluice plugin test target/wasm32-wasip2/release/{file}.wasm --input messages.jsonl
```

Wire it into `sluice.toml`:

```toml
[[plugin]]
name = "{name}"
path = "target/wasm32-wasip2/release/{file}.wasm"
config = {{}}

[[pipeline]]
topics = "orders.>"
stages = ["{name}"]
```
"#,
        file = name.replace('-', "_")
    )
}

const FILTER: &str = r##"//!
//! Keeps messages whose payload contains `word` (from the config) and drops
//! the others.

use serde::Deserialize;
use sluice_sdk::{Filter, Message};

/// Configuration: the `config` table of the plugin in `sluice.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Keep messages whose payload contains this.
    pub word: String,
}

/// The filter.
pub struct KeepWord {
    word: String,
}

impl Filter for KeepWord {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.word.is_empty() {
            return Err("`word` must not be empty".into());
        }
        Ok(KeepWord { word: config.word })
    }

    fn keep(&self, message: &Message<'_>) -> bool {
        message
            .payload_str()
            .map(|text| text.contains(&self.word))
            .unwrap_or(false)
    }
}

sluice_sdk::export!(filter: KeepWord);

#[cfg(test)]
mod tests {
    use sluice_sdk::testing::{run_plugin, BatchBuilder, TestOutcome};
    use sluice_sdk::FilterPlugin;

    use super::*;

    #[test]
    fn keeps_only_messages_with_the_word() {
        let batch = BatchBuilder::new("orders").message("urgent: refund").message("hello").message(vec![0xff]).build();
        let outcomes = run_plugin::<FilterPlugin<KeepWord>>(r#"{"word": "urgent"}"#, &batch).unwrap();
        assert_eq!(outcomes, vec![TestOutcome::Pass, TestOutcome::Drop, TestOutcome::Drop]);
    }

    #[test]
    fn bad_config_is_refused() {
        let batch = BatchBuilder::new("orders").build();
        assert!(run_plugin::<FilterPlugin<KeepWord>>(r#"{"word": ""}"#, &batch).is_err());
        assert!(run_plugin::<FilterPlugin<KeepWord>>("{}", &batch).is_err());
    }
}
"##;

const TRANSFORM: &str = r##"//!
//! Upper-cases text payloads and marks them with a header; other payloads
//! pass unchanged.

use serde::Deserialize;
use sluice_sdk::{Message, MessageBuilder, Transform, Transformed};

/// Configuration: the `config` table of the plugin in `sluice.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Header added to changed messages.
    #[serde(default = "default_header")]
    pub header: String,
}

fn default_header() -> String {
    "shouted".into()
}

/// The transform.
pub struct Shout {
    header: String,
}

impl Transform for Shout {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        Ok(Shout { header: config.header })
    }

    fn transform(&self, message: &Message<'_>) -> Result<Transformed, String> {
        let Ok(text) = message.payload_str() else {
            return Ok(Transformed::Unchanged);
        };
        if text.chars().all(|c| !c.is_lowercase()) {
            return Ok(Transformed::Unchanged);
        }
        Ok(Transformed::one(
            MessageBuilder::from_message(message)
                .payload_bytes(text.to_uppercase())
                .set_header(self.header.clone(), "true"),
        ))
    }
}

sluice_sdk::export!(transform: Shout);

#[cfg(test)]
mod tests {
    use sluice_sdk::testing::{run_plugin, BatchBuilder, TestMessage, TestOutcome};
    use sluice_sdk::TransformPlugin;

    use super::*;

    #[test]
    fn shouts_text_and_leaves_the_rest() {
        let batch = BatchBuilder::new("orders").message("hi").message("OK").message(vec![0xff]).build();
        let outcomes = run_plugin::<TransformPlugin<Shout>>("{}", &batch).unwrap();
        assert_eq!(
            outcomes,
            vec![
                TestOutcome::Replace(vec![TestMessage::new("HI").header("shouted", "true")]),
                TestOutcome::Pass,
                TestOutcome::Pass,
            ]
        );
    }
}
"##;

const ROUTER: &str = r##"//!
//! Routes each message to `<prefix><value of the header>`; messages without
//! the header stay on their topic.

use serde::Deserialize;
use sluice_sdk::{Message, Router};

/// Configuration: the `config` table of the plugin in `sluice.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The header whose value picks the topic.
    pub header: String,
    /// Put before the value.
    #[serde(default)]
    pub prefix: String,
}

/// The router.
pub struct ByHeader {
    config: Config,
}

impl Router for ByHeader {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        Ok(ByHeader { config })
    }

    fn route(&self, message: &Message<'_>) -> Vec<String> {
        match message.header(&self.config.header) {
            Some(value) if !value.is_empty() && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') => {
                vec![format!("{}{value}", self.config.prefix)]
            }
            _ => Vec::new(),
        }
    }
}

sluice_sdk::export!(router: ByHeader);

#[cfg(test)]
mod tests {
    use sluice_sdk::testing::{run_plugin, BatchBuilder, TestMessage, TestOutcome};
    use sluice_sdk::RouterPlugin;

    use super::*;

    #[test]
    fn routes_by_the_header() {
        let batch = BatchBuilder::new("orders.in")
            .message(TestMessage::new("{}").header("region", "eu"))
            .message("no header")
            .build();
        let outcomes = run_plugin::<RouterPlugin<ByHeader>>(r#"{"header": "region", "prefix": "orders."}"#, &batch).unwrap();
        assert_eq!(outcomes, vec![TestOutcome::Route(vec!["orders.eu".into()]), TestOutcome::Pass]);
    }
}
"##;

const VALIDATOR: &str = r##"//!
//! Accepts JSON objects that have every field listed in `required`, and
//! rejects everything else with a reason naming what is missing.

use serde::Deserialize;
use sluice_sdk::serde_json::Value;
use sluice_sdk::{Message, Validator};

/// Configuration: the `config` table of the plugin in `sluice.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Fields every message must have.
    pub required: Vec<String>,
}

/// The validator.
pub struct RequireFields {
    required: Vec<String>,
}

impl Validator for RequireFields {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        Ok(RequireFields { required: config.required })
    }

    fn validate(&self, message: &Message<'_>) -> Result<(), String> {
        let doc: Value = message.json().map_err(|e| e.to_string())?;
        let Some(object) = doc.as_object() else {
            return Err("payload must be a JSON object".into());
        };
        match self.required.iter().find(|field| !object.contains_key(field.as_str())) {
            Some(missing) => Err(format!("missing field `{missing}`")),
            None => Ok(()),
        }
    }
}

sluice_sdk::export!(validator: RequireFields);

#[cfg(test)]
mod tests {
    use sluice_sdk::testing::{run_plugin, BatchBuilder, TestOutcome};
    use sluice_sdk::ValidatorPlugin;

    use super::*;

    #[test]
    fn rejects_what_lacks_a_field() {
        let batch = BatchBuilder::new("orders").message(r#"{"id": 1}"#).message(r#"{"x": 1}"#).message("nope").build();
        let outcomes = run_plugin::<ValidatorPlugin<RequireFields>>(r#"{"required": ["id"]}"#, &batch).unwrap();
        assert_eq!(outcomes[0], TestOutcome::Pass);
        assert_eq!(outcomes[1], TestOutcome::Reject("missing field `id`".into()));
        assert!(matches!(&outcomes[2], TestOutcome::Reject(r) if r.contains("JSON")));
    }
}
"##;
