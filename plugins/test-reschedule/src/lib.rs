//! Test fixture: a stage that works on delayed delivery's header. For each
//! message it copies the due time it sees (`sluice-deliver-at`, or `none`)
//! into the header `x-seen-deliver-at`; a message with the header
//! `x-reschedule` gets that value as its new due time, or none at all
//! (delivered at once) when the value is `now`.

use sluice_sdk::{Batch, MessageBuilder, Output, Plugin};

/// The header of a message's due time.
const DELIVER_AT: &str = "sluice-deliver-at";

/// See the module.
pub struct Reschedule;

impl Plugin for Reschedule {
    type Config = serde_json::Value;

    fn new(_config: serde_json::Value) -> Result<Self, String> {
        Ok(Reschedule)
    }

    fn handle(&self, batch: &Batch, out: &mut Output) {
        for message in batch.messages() {
            let seen = message.header(DELIVER_AT).unwrap_or("none").to_owned();
            let mut copy =
                MessageBuilder::from_message(&message).set_header("x-seen-deliver-at", seen);
            match message.header("x-reschedule") {
                Some("now") => copy = copy.without_header(DELIVER_AT),
                Some(at) => copy = copy.set_header(DELIVER_AT, at),
                None => {}
            }
            out.replace([copy]);
        }
    }
}

sluice_sdk::export!(plugin: Reschedule);

#[cfg(test)]
mod tests {
    use sluice_sdk::testing::{run_plugin, BatchBuilder, TestMessage, TestOutcome};

    use super::*;

    #[test]
    fn it_shows_the_due_time_and_moves_or_clears_it_on_request() {
        let batch = BatchBuilder::new("t")
            .message(TestMessage::new("a").header(DELIVER_AT, "2030-01-01T00:00:00Z"))
            .message(
                TestMessage::new("b")
                    .header(DELIVER_AT, "2030-01-01T00:00:00Z")
                    .header("x-reschedule", "now"),
            )
            .message(TestMessage::new("c").header("x-reschedule", "2031-01-01T00:00:00Z"))
            .build();
        let outcomes = run_plugin::<Reschedule>("{}", &batch).unwrap();
        let headers: Vec<Vec<(String, String)>> = outcomes
            .into_iter()
            .map(|o| match o {
                TestOutcome::Replace(mut m) => m.remove(0).headers,
                other => panic!("{other:?}"),
            })
            .collect();
        let get = |h: &[(String, String)], n: &str| {
            h.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone())
        };
        assert_eq!(
            get(&headers[0], "x-seen-deliver-at").as_deref(),
            Some("2030-01-01T00:00:00Z")
        );
        assert_eq!(
            get(&headers[0], DELIVER_AT).as_deref(),
            Some("2030-01-01T00:00:00Z")
        );
        assert_eq!(get(&headers[1], DELIVER_AT), None);
        assert_eq!(
            get(&headers[2], "x-seen-deliver-at").as_deref(),
            Some("none")
        );
        assert_eq!(
            get(&headers[2], DELIVER_AT).as_deref(),
            Some("2031-01-01T00:00:00Z")
        );
    }
}
