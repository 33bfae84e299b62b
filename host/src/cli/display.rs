//! How the client commands show what happened: one line per publish
//! outcome, and progress bars that appear only on a terminal (so piped
//! output and test logs stay clean).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use sluice_client::MessageOutcome;

/// One line per message: what the broker (and its plugins) did with it.
pub fn describe(outcome: &MessageOutcome) -> String {
    match outcome {
        MessageOutcome::Stored(places) => places
            .iter()
            .map(|p| {
                let dup = if p.duplicate { " (duplicate)" } else { "" };
                match p.deliver_at_ms {
                    Some(due) => format!(
                        "delayed for {}, due {} (schedule #{}){dup}",
                        p.topic,
                        crate::schedule::format_ms(due),
                        p.offset
                    ),
                    None => format!("stored {}@{}{dup}", p.topic, p.offset),
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
        MessageOutcome::Dropped => "dropped by a plugin (not stored)".into(),
        MessageOutcome::Rejected(reason) => format!("rejected: {reason}"),
        MessageOutcome::DeadLettered { reason, at } => {
            format!("dead-lettered to {}@{}: {reason}", at.topic, at.offset)
        }
    }
}

/// A progress bar of `total` steps drawn with the indicatif `template`, or
/// a hidden one when standard error is not a terminal.
pub fn progress_bar(total: u64, template: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use sluice_client::StoredAt;

    use super::*;

    #[test]
    fn outcomes_read_as_the_readme_shows_them() {
        let stored = |offset, duplicate| StoredAt {
            topic: "orders.eu".into(),
            offset,
            duplicate,
            deliver_at_ms: None,
        };
        assert_eq!(
            describe(&MessageOutcome::Stored(vec![stored(0, false)])),
            "stored orders.eu@0"
        );
        assert_eq!(
            describe(&MessageOutcome::Stored(vec![
                stored(3, true),
                stored(4, false)
            ])),
            "stored orders.eu@3 (duplicate), stored orders.eu@4"
        );
        assert_eq!(
            describe(&MessageOutcome::Dropped),
            "dropped by a plugin (not stored)"
        );
        assert_eq!(
            describe(&MessageOutcome::Rejected("no".into())),
            "rejected: no"
        );
    }
}
