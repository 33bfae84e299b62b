//! Dead letters: where they go and the headers that say why. Pipelines
//! (a message a stage sent to the dead-letter topic) and consumer groups
//! (a message that kept failing) both write them, with these names.

use crate::store::NewRecord;

/// The topic the message was published to or consumed from.
pub const TOPIC: &str = "sluice-dlq-topic";
/// Why it is a dead letter (the plugin's or the consumer's reason).
pub const REASON: &str = "sluice-dlq-reason";
/// The pipeline stage that sent it there (pipelines).
pub const STAGE: &str = "sluice-dlq-stage";
/// Its offset in the topic it was consumed from (groups).
pub const OFFSET: &str = "sluice-dlq-offset";
/// The group that gave up on it (groups).
pub const GROUP: &str = "sluice-dlq-group";
/// How many deliveries were made (groups).
pub const ATTEMPTS: &str = "sluice-dlq-attempts";

/// Dead-letter topics are `dlq.<topic>`: outside the topic's own
/// namespace, so `orders.>` never sees poison messages and `dlq.>` sees
/// them all.
const PREFIX: &str = "dlq.";

/// The default dead-letter topic of `topic`: `dlq.<topic>`, or for a
/// topic too long for that to be a valid name (over 251 bytes), a prefix
/// of it ending in `-` and a hash of the whole name, 255 bytes in all. The
/// topic itself is in every dead letter's [`TOPIC`] header.
pub fn topic_for(topic: &str) -> String {
    let name = format!("{PREFIX}{topic}");
    if name.len() <= sluice_proto::subject::MAX_TOPIC_BYTES {
        return name;
    }
    use sha2::Digest;
    let hash = sha2::Sha256::digest(topic.as_bytes());
    let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    // Topic names are ASCII; a cut that ends a token leaves no empty one.
    let keep = sluice_proto::subject::MAX_TOPIC_BYTES - PREFIX.len() - 1 - hex.len();
    let prefix = topic[..keep].trim_end_matches('.');
    format!("{PREFIX}{prefix}-{hex}")
}

/// True for a dead-letter topic (created by the broker whatever
/// `topics.auto_create` says).
pub fn is_dead_letter_topic(name: &str) -> bool {
    name.starts_with(PREFIX)
}

/// The headers a dead letter does not keep: its time-to-live (a dead
/// letter is kept for someone to look at; one of an expired message would
/// be expired too).
fn keeps(name: &str) -> bool {
    name != sluice_proto::TTL_HEADER
}

/// The dead letter of a message a pipeline stage refused, published to
/// `topic`. A dead letter is never a duplicate of anything: its id goes.
pub fn from_pipeline(mut record: NewRecord, topic: &str, reason: &str, stage: &str) -> NewRecord {
    record.headers.retain(|(name, _)| keeps(name));
    record.headers.push((TOPIC.into(), topic.to_owned()));
    record.headers.push((REASON.into(), reason.to_owned()));
    if !stage.is_empty() {
        record.headers.push((STAGE.into(), stage.to_owned()));
    }
    record.id = None;
    record
}

/// The dead letter of a message a consumer group gave up on.
pub fn from_group(
    record: &crate::store::Record,
    topic: &str,
    group: &str,
    attempts: u32,
    reason: &str,
) -> NewRecord {
    let mut headers: Vec<(String, String)> = record
        .headers
        .iter()
        .filter(|(name, _)| keeps(name))
        .cloned()
        .collect();
    headers.push((TOPIC.into(), topic.to_owned()));
    headers.push((OFFSET.into(), record.offset.to_string()));
    headers.push((GROUP.into(), group.to_owned()));
    headers.push((ATTEMPTS.into(), attempts.to_string()));
    headers.push((REASON.into(), reason.to_owned()));
    NewRecord {
        key: record.key.clone(),
        headers,
        payload: record.payload.clone(),
        id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_dead_letters_say_where_and_why_and_lose_their_id() {
        let record = NewRecord {
            id: Some("m-1".into()),
            ..NewRecord::default()
        };
        let letter = from_pipeline(record, "orders.in", "bad json", "validate");
        assert_eq!(letter.id, None);
        let header = |n: &str| {
            letter
                .headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header(TOPIC), Some("orders.in"));
        assert_eq!(header(REASON), Some("bad json"));
        assert_eq!(header(STAGE), Some("validate"));
        assert_eq!(topic_for("orders.in"), "dlq.orders.in");
        assert!(is_dead_letter_topic("dlq.orders.in"));
        assert!(!is_dead_letter_topic("orders.dlq"));
    }

    #[test]
    fn every_topic_has_a_valid_dead_letter_topic() {
        assert_eq!(topic_for("orders.eu"), "dlq.orders.eu");
        let edge = "a".repeat(251);
        assert_eq!(topic_for(&edge), format!("dlq.{edge}"));
        for len in 252..=255 {
            for dot_at in [len - 1, 234, 233, 10] {
                let mut name: Vec<u8> = vec![b'x'; len];
                if dot_at > 0 && dot_at < len - 1 {
                    name[dot_at] = b'.';
                }
                let name = String::from_utf8(name).unwrap();
                sluice_proto::validate_topic(&name).unwrap();
                let dlq = topic_for(&name);
                sluice_proto::validate_topic(&dlq).unwrap_or_else(|e| panic!("{dlq}: {e}"));
                assert!(is_dead_letter_topic(&dlq));
            }
        }
        let (a, b) = ("a".repeat(255), format!("{}b", "a".repeat(254)));
        assert_ne!(
            topic_for(&a),
            topic_for(&b),
            "distinct topics, distinct dead letters"
        );
    }
}
