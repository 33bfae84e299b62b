//! Test fixture: a plugin that waits now and then. It sleeps 1 ms for each
//! message whose payload starts with `nap` and passes every message. A
//! sleep is a WASI poll, which wasmtime-wasi runs through tokio: the
//! broker must never call this plugin on an async worker.

use sluice_sdk::{Batch, Output, Plugin};

/// Passes everything, napping on `nap…` messages.
pub struct Sleepy;

impl Plugin for Sleepy {
    type Config = serde_json::Value;

    fn new(_config: serde_json::Value) -> Result<Self, String> {
        Ok(Sleepy)
    }

    fn handle(&self, batch: &Batch, out: &mut Output) {
        for message in batch.messages() {
            if message.payload().starts_with(b"nap") {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            out.pass();
        }
    }
}

sluice_sdk::export!(plugin: Sleepy);
