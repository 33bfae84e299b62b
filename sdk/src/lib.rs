//! `sluice-sdk`: write plugins for the sluice message broker in plain Rust.
//!
//! A plugin runs inside the broker on every message of the topics its
//! pipeline is attached to, before the message is stored (or, for a
//! subscription's filter, before it is delivered). Pick the kind that fits,
//! implement its one method, export it with one macro, build it with
//! `cargo build --release --target wasm32-wasip2` (or `sluice plugin
//! build`), and point `sluice.toml` at the `.wasm`.
//!
//! | kind | you write | the broker does |
//! |---|---|---|
//! | [`Filter`] | `keep(&msg) -> bool` | drops what you do not keep |
//! | [`Transform`] | `transform(&msg) -> Result<Transformed, String>` | stores your replacement(s); an error dead-letters |
//! | [`Router`] | `route(&msg) -> Vec<String>` | stores the message in those topics |
//! | [`Validator`] | `validate(&msg) -> Result<(), String>` | rejects the publish with your reason |
//! | [`Plugin`] | `handle(&batch, &mut out)` | any outcome per message |
//!
//! ```
//! use serde::Deserialize;
//! use sluice_sdk::{Message, Router};
//!
//! /// Routes `region=eu` to `orders.eu`.
//! pub struct ByRegion {
//!     prefix: String,
//! }
//!
//! #[derive(Deserialize)]
//! pub struct Config {
//!     prefix: String,
//! }
//!
//! impl Router for ByRegion {
//!     type Config = Config;
//!     fn new(config: Config) -> Result<Self, String> {
//!         Ok(ByRegion { prefix: config.prefix })
//!     }
//!     fn route(&self, msg: &Message<'_>) -> Vec<String> {
//!         match msg.header("region") {
//!             Some(region) => vec![format!("{}{region}", self.prefix)],
//!             None => Vec::new(), // stays where it is
//!         }
//!     }
//! }
//!
//! sluice_sdk::export!(router: ByRegion);
//!
//! // Natively, test the logic with plain `cargo test`:
//! use sluice_sdk::testing::{run_plugin, BatchBuilder, TestMessage, TestOutcome};
//! let batch = BatchBuilder::new("orders.incoming")
//!     .message(TestMessage::new("{}").header("region", "eu"))
//!     .message("{}")
//!     .build();
//! let outcomes = run_plugin::<sluice_sdk::RouterPlugin<ByRegion>>(r#"{"prefix": "orders."}"#, &batch).unwrap();
//! assert_eq!(outcomes, vec![TestOutcome::Route(vec!["orders.eu".into()]), TestOutcome::Pass]);
//! ```
//!
//! A plugin that must remember things across messages (counters,
//! messages seen, a lookup table) keeps them in the broker with
//! [`state`]: durable, per plugin, kept across reloads and restarts.
//!
//! The plugin's configuration is the `config` table of its `[[plugin]]`
//! entry, passed as JSON and deserialized into your `Config` type; a bad
//! config refuses the plugin at load with serde's message.
//!
//! Under the hood messages cross into the plugin as flat buffers (one
//! payload buffer plus end offsets, and so on), which is about ten times
//! cheaper than a list of records; [`Message`] is a borrowed view into them
//! and `pass`/`drop` allocate nothing. The generated WIT bindings live in a
//! hidden module and exist only when compiling for wasm32, so plugin logic
//! builds and tests natively.

extern crate self as sluice_sdk;

mod batch;
pub mod log;
mod output;
mod plugin;
pub mod state;
pub mod testing;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
#[path = "runtime.rs"]
pub mod __runtime;

pub use batch::{Batch, Headers, Message};
pub use output::{MessageBuilder, Output};
pub use plugin::{
    instantiate, run, Filter, FilterPlugin, Plugin, Router, RouterPlugin, Transform,
    TransformPlugin, Transformed, Validator, ValidatorPlugin,
};
/// Re-exported so plugins need no direct dependency on it.
pub use serde;
/// Re-exported so plugins need no direct dependency on it.
pub use serde_json;
/// Re-exported so plugins need no direct dependency on it.
#[doc(hidden)]
pub use wit_bindgen;

/// A field of a JSON payload as plugins' configs name it, as the JSON
/// pointer `serde_json::Value::pointer` takes: a dotted path
/// (`customer.tier` → `/customer/tier`, escaping applied) or a pointer
/// already (`/customer/tier`, kept).
///
/// ```
/// assert_eq!(sluice_sdk::json_pointer("items.0.sku"), "/items/0/sku");
/// assert_eq!(sluice_sdk::json_pointer("/a~1b"), "/a~1b");
/// ```
pub fn json_pointer(field: &str) -> String {
    if field.starts_with('/') {
        return field.to_owned();
    }
    field
        .split('.')
        .map(|part| format!("/{}", part.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// `Config` type of a plugin that takes no configuration: accepts any JSON.
pub type NoConfig = serde::de::IgnoredAny;

/// An error with a message for people, as plugins return them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Error(message.into())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<Error> for String {
    fn from(e: Error) -> String {
        e.0
    }
}

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod __bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "sluice:plugin/plugin",
        export_macro_name: "__export_plugin_world",
        pub_export_macro: true,
        default_bindings_module: "sluice_sdk::__bindings",
        runtime_path: "sluice_sdk::wit_bindgen::rt",
    });
}

/// Exports a plugin from this crate: `export!(KIND: Type)` where KIND is
/// `filter`, `transform`, `router`, `validator` or `plugin`. Use it once per
/// plugin crate. It generates the WebAssembly exports when compiling for
/// wasm32 and only checks the type otherwise.
#[macro_export]
macro_rules! export {
    (filter: $t:ty) => {
        $crate::export!(plugin: $crate::FilterPlugin<$t>);
    };
    (transform: $t:ty) => {
        $crate::export!(plugin: $crate::TransformPlugin<$t>);
    };
    (router: $t:ty) => {
        $crate::export!(plugin: $crate::RouterPlugin<$t>);
    };
    (validator: $t:ty) => {
        $crate::export!(plugin: $crate::ValidatorPlugin<$t>);
    };
    (plugin: $t:ty) => {
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn(&str) -> ::std::result::Result<$t, ::std::string::String> = $crate::instantiate::<$t>;

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            ::std::thread_local! {
                static PLUGIN: ::std::cell::RefCell<::std::option::Option<$t>> =
                    const { ::std::cell::RefCell::new(::std::option::Option::None) };
            }
            struct SluiceGuest;
            impl $crate::__bindings::Guest for SluiceGuest {
                fn init(config: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                    PLUGIN.with(|slot| $crate::__runtime::init::<$t>(slot, &config))
                }
                fn handle(batch: $crate::__bindings::Batch) -> $crate::__bindings::Outcomes {
                    PLUGIN.with(|slot| $crate::__runtime::handle::<$t>(slot, batch))
                }
            }
            $crate::__bindings::__export_plugin_world!(SluiceGuest with_types_in $crate::__bindings);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::testing::{run_plugin, BatchBuilder, TestMessage, TestOutcome};
    use super::*;

    struct Upper;
    impl Transform for Upper {
        type Config = NoConfig;
        fn new(_: NoConfig) -> Result<Self, String> {
            Ok(Upper)
        }
        fn transform(&self, m: &Message<'_>) -> Result<Transformed, String> {
            let text = m.payload_str()?;
            if text.is_empty() {
                return Ok(Transformed::Unchanged);
            }
            if text == "split" {
                return Ok(Transformed::Replace(vec![
                    MessageBuilder::new("a"),
                    MessageBuilder::new("b").key("k"),
                ]));
            }
            Ok(Transformed::one(
                MessageBuilder::from_message(m)
                    .payload_bytes(text.to_uppercase())
                    .header("x", "1"),
            ))
        }
    }

    #[test]
    fn message_view_reads_every_field() {
        let batch = BatchBuilder::new("orders.eu")
            .message(
                TestMessage::new("{\"n\":1}")
                    .key("k1")
                    .header("a", "1")
                    .header("b", "2")
                    .offset(7),
            )
            .message("")
            .build();
        assert_eq!(batch.len(), 2);
        let m = batch.get(0).unwrap();
        assert_eq!(m.topic(), "orders.eu");
        assert_eq!(m.payload(), b"{\"n\":1}");
        assert_eq!(m.key(), Some(&b"k1"[..]));
        assert_eq!(m.header("b"), Some("2"));
        assert_eq!(
            m.headers().collect::<Vec<_>>(),
            vec![("a", "1"), ("b", "2")]
        );
        assert_eq!(m.offset(), Some(7));
        assert_eq!(m.json_value().unwrap()["n"], 1);
        let empty = batch.get(1).unwrap();
        assert_eq!(empty.key(), None);
        assert_eq!(empty.offset(), None);
        assert_eq!(empty.header("a"), None);
        assert!(empty.json_value().is_err());
        assert!(batch.get(2).is_none());
    }

    #[test]
    fn transform_outcomes_round_trip_through_the_flat_output() {
        let batch = BatchBuilder::new("t")
            .message("hi")
            .message("")
            .message("split")
            .message(vec![0xff])
            .build();
        let outcomes = run_plugin::<TransformPlugin<Upper>>("", &batch).unwrap();
        assert_eq!(
            outcomes,
            vec![
                TestOutcome::Replace(vec![TestMessage::new("HI").header("x", "1")]),
                TestOutcome::Pass,
                TestOutcome::Replace(vec![TestMessage::new("a"), TestMessage::new("b").key("k")]),
                TestOutcome::DeadLetter(
                    "payload is not UTF-8: invalid utf-8 sequence of 1 bytes from index 0".into()
                ),
            ]
        );
    }

    #[test]
    fn bad_config_is_a_clear_error() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Config {
            prefix: String,
        }
        #[derive(Debug)]
        struct R;
        impl Router for R {
            type Config = Config;
            fn new(_: Config) -> Result<Self, String> {
                Ok(R)
            }
            fn route(&self, _: &Message<'_>) -> Vec<String> {
                Vec::new()
            }
        }
        let err = instantiate::<RouterPlugin<R>>(r#"{"prefx": 1}"#).unwrap_err();
        assert!(err.contains("missing field `prefix`"), "{err}");
        let err = instantiate::<RouterPlugin<R>>("not json").unwrap_err();
        assert!(err.starts_with("invalid plugin config"), "{err}");
    }

    #[test]
    fn malformed_batches_do_not_panic() {
        let batch = Batch {
            topic: "t".into(),
            payloads: vec![1, 2],
            payload_ends: vec![5, 1],
            headers: vec![9, 0, 0, 0, b'x'],
            header_ends: vec![5, 5],
            flags: vec![3],
            ..Batch::default()
        };
        for m in batch.messages() {
            let _ = (
                m.payload(),
                m.key(),
                m.headers().count(),
                m.offset(),
                m.timestamp_ms(),
            );
        }
    }
}
