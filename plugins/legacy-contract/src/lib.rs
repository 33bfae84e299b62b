//! A component of the `sluice:plugin@0.1.0` contract: it passes every
//! message and logs one line per batch through the 0.1.0 `log` import.
//! Built for wasm32 only; natively the crate is empty.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({
        path: "wit",
        world: "sluice:plugin/plugin",
    });

    use self::sluice::plugin::host::{log, Level};
    use self::sluice::plugin::types::{Messages, Outcome};

    struct Legacy;

    impl Guest for Legacy {
        fn init(_config: String) -> Result<(), String> {
            log(Level::Info, "legacy plugin ready");
            Ok(())
        }

        fn handle(batch: Batch) -> Outcomes {
            let n = batch.payload_ends.len();
            log(
                Level::Info,
                &format!("legacy plugin passed {n} messages of {}", batch.topic),
            );
            Outcomes {
                results: (0..n).map(|_| Outcome::Pass).collect(),
                output: Messages {
                    payloads: Vec::new(),
                    payload_ends: Vec::new(),
                    keys: Vec::new(),
                    key_ends: Vec::new(),
                    headers: Vec::new(),
                    header_ends: Vec::new(),
                    flags: Vec::new(),
                },
                topics: Vec::new(),
            }
        }
    }

    export!(Legacy);
}
