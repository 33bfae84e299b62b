//! The glue between the generated bindings and the SDK types, compiled
//! only for wasm32. Moving the flat buffers between the two is free: the
//! same vectors change owner, nothing is copied.

use std::cell::RefCell;

use crate::__bindings::sluice::plugin::types as wit;
use crate::output::Outcome;
use crate::{Batch, Output, Plugin};

fn from_wit(b: wit::Batch) -> Batch {
    Batch {
        topic: b.topic,
        payloads: b.payloads,
        payload_ends: b.payload_ends,
        keys: b.keys,
        key_ends: b.key_ends,
        headers: b.headers,
        header_ends: b.header_ends,
        timestamps: b.timestamps,
        offsets: b.offsets,
        flags: b.flags,
    }
}

fn to_wit(out: Output) -> wit::Outcomes {
    let span = |start: u32, len: u32| wit::Span { start, len };
    wit::Outcomes {
        results: out
            .results
            .into_iter()
            .map(|r| match r {
                Outcome::Pass => wit::Outcome::Pass,
                Outcome::Drop => wit::Outcome::Drop,
                Outcome::Replace { start, len } => wit::Outcome::Replace(span(start, len)),
                Outcome::Route { start, len } => wit::Outcome::Route(span(start, len)),
                Outcome::Reject(reason) => wit::Outcome::Reject(reason),
                Outcome::DeadLetter(reason) => wit::Outcome::DeadLetter(reason),
            })
            .collect(),
        output: wit::Messages {
            payloads: out.output.payloads,
            payload_ends: out.output.payload_ends,
            keys: out.output.keys,
            key_ends: out.output.key_ends,
            headers: out.output.headers,
            header_ends: out.output.header_ends,
            flags: out.output.flags,
        },
        topics: out.topics,
    }
}

/// `init`: builds the plugin from its JSON config and keeps it.
pub fn init<P: Plugin>(slot: &RefCell<Option<P>>, config: &str) -> Result<(), String> {
    let plugin = crate::plugin::instantiate::<P>(config)?;
    *slot.borrow_mut() = Some(plugin);
    Ok(())
}

/// `handle`: runs the plugin over one batch.
pub fn handle<P: Plugin>(slot: &RefCell<Option<P>>, batch: wit::Batch) -> wit::Outcomes {
    let batch = from_wit(batch);
    let slot = slot.borrow();
    let out = match slot.as_ref() {
        Some(plugin) => crate::plugin::run(plugin, &batch),
        None => {
            let mut out = Output::with_capacity(batch.len());
            for _ in 0..batch.len() {
                out.reject("plugin was not initialised (init was not called or failed)");
            }
            out
        }
    };
    to_wit(out)
}
