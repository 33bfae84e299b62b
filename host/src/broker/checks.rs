//! Request arguments, checked before the broker does anything with them,
//! so that a bad one fails alone with a clear error.

use sluice_proto::{validate_topic, GroupOptions, Pattern, SettleAction};

use crate::error::BrokerError;
use crate::groups::MAX_NACK_DELAY_MS;

/// A topic name.
pub(crate) fn topic(name: &str) -> Result<(), BrokerError> {
    validate_topic(name).map_err(|reason| BrokerError::InvalidTopic {
        name: name.to_owned(),
        reason,
    })
}

/// A consumer group's name.
pub(crate) fn group(name: &str) -> Result<(), BrokerError> {
    validate_topic(name).map_err(|reason| BrokerError::InvalidGroup {
        name: name.to_owned(),
        reason,
    })
}

/// A subscription or group pattern, parsed.
pub(crate) fn pattern(pattern: &str) -> Result<Pattern, BrokerError> {
    Pattern::parse(pattern).map_err(|reason| BrokerError::InvalidPattern {
        pattern: pattern.to_owned(),
        reason,
    })
}

/// What a settlement must satisfy before it reaches the group.
pub(crate) fn settle(topic_name: &str, action: &SettleAction) -> Result<(), BrokerError> {
    if let SettleAction::Nack {
        delay_ms: Some(delay),
    } = action
    {
        if *delay > MAX_NACK_DELAY_MS {
            return Err(BrokerError::InvalidArgument(format!(
                "nack delay of {delay} ms is over the limit of {MAX_NACK_DELAY_MS} ms (one day)"
            )));
        }
    }
    topic(topic_name)
}

/// The options of a group being created.
pub(crate) fn group_options(options: &GroupOptions) -> Result<(), BrokerError> {
    let invalid = |m: String| Err(BrokerError::InvalidArgument(m));
    if options.max_deliver == 0 {
        return invalid("max_deliver must be at least 1".into());
    }
    if options.ack_wait_ms == 0 || options.ack_wait_ms > MAX_NACK_DELAY_MS {
        return invalid(format!(
            "ack_wait_ms must be between 1 and {MAX_NACK_DELAY_MS}"
        ));
    }
    if options.backoff_ms.iter().any(|ms| *ms > MAX_NACK_DELAY_MS) {
        return invalid(format!(
            "backoff delays must be at most {MAX_NACK_DELAY_MS} ms"
        ));
    }
    if let Some(name) = &options.dead_letter_topic {
        topic(name)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_arguments_get_their_own_codes() {
        use sluice_proto::ErrorCode;
        assert_eq!(topic("a..b").unwrap_err().code(), ErrorCode::InvalidTopic);
        assert_eq!(group("").unwrap_err().code(), ErrorCode::InvalidGroup);
        assert_eq!(
            pattern("a.>.b").unwrap_err().code(),
            ErrorCode::InvalidPattern
        );
        let too_late = SettleAction::Nack {
            delay_ms: Some(MAX_NACK_DELAY_MS + 1),
        };
        assert_eq!(
            settle("t", &too_late).unwrap_err().code(),
            ErrorCode::InvalidArgument
        );
        let options = GroupOptions {
            max_deliver: 0,
            ..GroupOptions::default()
        };
        assert_eq!(
            group_options(&options).unwrap_err().code(),
            ErrorCode::InvalidArgument
        );
        assert!(group_options(&GroupOptions::default()).is_ok());
    }
}
