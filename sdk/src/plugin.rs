//! The plugin kinds. Implement one, then export it with [`crate::export!`].
//!
//! Each kind has a typed `Config` (deserialized from the JSON the broker
//! passes to `init`; use [`crate::NoConfig`] for none) and a constructor
//! that may refuse it.

use serde::de::DeserializeOwned;

use crate::{Batch, Message, MessageBuilder, Output};

/// Keeps or drops each message.
pub trait Filter: Sized + 'static {
    /// The plugin's configuration.
    type Config: DeserializeOwned;
    /// Builds the filter; an error refuses the plugin at load.
    fn new(config: Self::Config) -> Result<Self, String>;
    /// True to keep the message, false to drop it.
    fn keep(&self, message: &Message<'_>) -> bool;
}

/// What a [`Transform`] made of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transformed {
    /// Keep the message as it is (allocates nothing).
    Unchanged,
    /// Replace it with these messages (none: drop it).
    Replace(Vec<MessageBuilder>),
}

impl Transformed {
    /// Replace the message with exactly one new message.
    pub fn one(message: MessageBuilder) -> Self {
        Transformed::Replace(vec![message])
    }
}

/// Turns each message into zero or more messages, or fails.
pub trait Transform: Sized + 'static {
    /// The plugin's configuration.
    type Config: DeserializeOwned;
    /// Builds the transform; an error refuses the plugin at load.
    fn new(config: Self::Config) -> Result<Self, String>;
    /// The new form of the message. An error sends the message to the
    /// dead-letter topic with that reason.
    fn transform(&self, message: &Message<'_>) -> Result<Transformed, String>;
}

/// Chooses where each message is stored.
pub trait Router: Sized + 'static {
    /// The plugin's configuration.
    type Config: DeserializeOwned;
    /// Builds the router; an error refuses the plugin at load.
    fn new(config: Self::Config) -> Result<Self, String>;
    /// Destination topics; empty leaves the message on its own topic.
    fn route(&self, message: &Message<'_>) -> Vec<String>;
}

/// Accepts or refuses each message.
pub trait Validator: Sized + 'static {
    /// The plugin's configuration.
    type Config: DeserializeOwned;
    /// Builds the validator; an error refuses the plugin at load.
    fn new(config: Self::Config) -> Result<Self, String>;
    /// `Ok` to accept; `Err(reason)` rejects the publish with that reason.
    fn validate(&self, message: &Message<'_>) -> Result<(), String>;
}

/// The raw kind: sees a whole batch and answers each message with any
/// outcome. For plugins that need the batch at once.
pub trait Plugin: Sized + 'static {
    /// The plugin's configuration.
    type Config: DeserializeOwned;
    /// Builds the plugin; an error refuses it at load.
    fn new(config: Self::Config) -> Result<Self, String>;
    /// Gives exactly one outcome per message of `batch`, in order.
    fn handle(&self, batch: &Batch, out: &mut Output);
}

/// Runs a [`Filter`] as a [`Plugin`].
#[derive(Debug)]
pub struct FilterPlugin<T>(pub T);
/// Runs a [`Transform`] as a [`Plugin`].
#[derive(Debug)]
pub struct TransformPlugin<T>(pub T);
/// Runs a [`Router`] as a [`Plugin`].
#[derive(Debug)]
pub struct RouterPlugin<T>(pub T);
/// Runs a [`Validator`] as a [`Plugin`].
#[derive(Debug)]
pub struct ValidatorPlugin<T>(pub T);

impl<T: Filter> Plugin for FilterPlugin<T> {
    type Config = T::Config;
    fn new(config: Self::Config) -> Result<Self, String> {
        T::new(config).map(FilterPlugin)
    }
    fn handle(&self, batch: &Batch, out: &mut Output) {
        for message in batch.messages() {
            if self.0.keep(&message) {
                out.pass();
            } else {
                out.drop_message();
            }
        }
    }
}

impl<T: Transform> Plugin for TransformPlugin<T> {
    type Config = T::Config;
    fn new(config: Self::Config) -> Result<Self, String> {
        T::new(config).map(TransformPlugin)
    }
    fn handle(&self, batch: &Batch, out: &mut Output) {
        for message in batch.messages() {
            match self.0.transform(&message) {
                Ok(Transformed::Unchanged) => out.pass(),
                Ok(Transformed::Replace(messages)) => out.replace(messages),
                Err(reason) => out.dead_letter(reason),
            }
        }
    }
}

impl<T: Router> Plugin for RouterPlugin<T> {
    type Config = T::Config;
    fn new(config: Self::Config) -> Result<Self, String> {
        T::new(config).map(RouterPlugin)
    }
    fn handle(&self, batch: &Batch, out: &mut Output) {
        for message in batch.messages() {
            let topics = self.0.route(&message);
            if topics.is_empty() {
                out.pass();
            } else {
                out.route(topics);
            }
        }
    }
}

impl<T: Validator> Plugin for ValidatorPlugin<T> {
    type Config = T::Config;
    fn new(config: Self::Config) -> Result<Self, String> {
        T::new(config).map(ValidatorPlugin)
    }
    fn handle(&self, batch: &Batch, out: &mut Output) {
        for message in batch.messages() {
            match self.0.validate(&message) {
                Ok(()) => out.pass(),
                Err(reason) => out.reject(reason),
            }
        }
    }
}

/// Parses a plugin's JSON configuration and builds it, with a clear error.
pub fn instantiate<P: Plugin>(config: &str) -> Result<P, String> {
    let text = if config.trim().is_empty() {
        "{}"
    } else {
        config
    };
    let config: P::Config =
        serde_json::from_str(text).map_err(|e| format!("invalid plugin config: {e}"))?;
    P::new(config)
}

/// Runs a plugin over a batch, checking it answered every message once.
pub fn run<P: Plugin>(plugin: &P, batch: &Batch) -> Output {
    let mut out = Output::with_capacity(batch.len());
    plugin.handle(batch, &mut out);
    out
}
