//! The headers of delayed delivery and time-to-live on a message: read,
//! checked and written here, nowhere else.

use sluice_proto::{DELAY_HEADER, DELIVER_AT_HEADER, TTL_HEADER};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::store::NewRecord;

/// The latest due time accepted: 9999-12-31T23:59:59Z.
const MAX_DUE_MS: i64 = 253_402_300_799_000;

/// Checks a published message's scheduling headers and turns a delay into
/// a due time counted from `now_ms` (the broker's clock), before any
/// plugin sees the message. The error says what is wrong, for the
/// publisher.
pub(crate) fn prepare(record: &mut NewRecord, now_ms: i64) -> Result<(), String> {
    if record.headers.is_empty() {
        return Ok(());
    }
    let count = |name: &str| record.headers.iter().filter(|(n, _)| n == name).count();
    for name in [DELAY_HEADER, DELIVER_AT_HEADER, TTL_HEADER] {
        if count(name) > 1 {
            return Err(format!("the header {name} is given more than once"));
        }
    }
    if let Some(ttl) = value(&record.headers, TTL_HEADER) {
        millis(TTL_HEADER, ttl)?;
    }
    let Some(at) = record.headers.iter().position(|(n, _)| n == DELAY_HEADER) else {
        return due_ms(&record.headers).map(|_| ());
    };
    if count(DELIVER_AT_HEADER) > 0 {
        return Err(format!(
            "give {DELAY_HEADER} or {DELIVER_AT_HEADER}, not both"
        ));
    }
    let (_, delay) = record.headers.remove(at);
    let delay = millis(DELAY_HEADER, &delay)?;
    let due = i64::try_from(delay)
        .ok()
        .and_then(|d| now_ms.checked_add(d))
        .filter(|due| *due <= MAX_DUE_MS)
        .ok_or_else(|| format!("{DELAY_HEADER} {delay} ms reaches past the year 9999"))?;
    record
        .headers
        .push((DELIVER_AT_HEADER.to_owned(), format_ms(due)));
    Ok(())
}

/// When the message is due (ms since the Unix epoch), if it names a time;
/// an error if that time is not RFC 3339.
pub(crate) fn due_ms(headers: &[(String, String)]) -> Result<Option<i64>, String> {
    let Some(text) = value(headers, DELIVER_AT_HEADER) else {
        return Ok(None);
    };
    let parsed = OffsetDateTime::parse(text, &Rfc3339).map_err(|e| {
        format!("{DELIVER_AT_HEADER} {text:?} is not an RFC 3339 time such as 2026-12-24T08:00:00Z ({e})")
    })?;
    let ms = (parsed.unix_timestamp_nanos() / 1_000_000) as i64;
    if ms > MAX_DUE_MS {
        return Err(format!(
            "{DELIVER_AT_HEADER} {text:?} is past the year 9999"
        ));
    }
    Ok(Some(ms))
}

/// The message's time-to-live in milliseconds, if it has a valid one.
fn ttl_ms(headers: &[(String, String)]) -> Option<u64> {
    value(headers, TTL_HEADER).and_then(|v| v.parse().ok())
}

/// Gives a message without a time-to-live its topic's default.
pub(crate) fn give_ttl(record: &mut NewRecord, ttl_ms: u64) {
    if value(&record.headers, TTL_HEADER).is_none() {
        record
            .headers
            .push((TTL_HEADER.to_owned(), ttl_ms.to_string()));
    }
}

/// Whether a stored message's time-to-live ran out by `now_ms`: counted
/// from its due time, or from when it was stored if it was not delayed.
pub(crate) fn expired(headers: &[(String, String)], stored_ms: i64, now_ms: i64) -> bool {
    if headers.is_empty() {
        return false;
    }
    let Some(ttl) = ttl_ms(headers) else {
        return false;
    };
    let from = due_ms(headers).ok().flatten().unwrap_or(stored_ms);
    let ttl = i64::try_from(ttl).unwrap_or(i64::MAX);
    now_ms > from.saturating_add(ttl)
}

/// `ms` since the Unix epoch as RFC 3339 in UTC, to the millisecond.
pub(crate) fn format_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

fn value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn millis(name: &str, value: &str) -> Result<u64, String> {
    value
        .parse()
        .map_err(|_| format!("{name} {value:?} is not a whole number of milliseconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(headers: &[(&str, &str)]) -> NewRecord {
        NewRecord {
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            ..NewRecord::default()
        }
    }

    #[test]
    fn a_delay_becomes_a_due_time_on_the_brokers_clock() {
        let mut record = with(&[("a", "b"), (DELAY_HEADER, "30000")]);
        prepare(&mut record, 1_000).unwrap();
        assert_eq!(due_ms(&record.headers), Ok(Some(31_000)));
        assert!(value(&record.headers, DELAY_HEADER).is_none());
        assert_eq!(
            value(&record.headers, DELIVER_AT_HEADER),
            Some("1970-01-01T00:00:31Z")
        );
    }

    #[test]
    fn a_due_time_with_an_offset_is_read() {
        let record = with(&[(DELIVER_AT_HEADER, "2026-12-24T09:00:00.250+01:00")]);
        let expected = 1_798_099_200_000 + 250;
        assert_eq!(due_ms(&record.headers), Ok(Some(expected)));
        assert_eq!(format_ms(expected), "2026-12-24T08:00:00.25Z");
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        let cases: &[&[(&str, &str)]] = &[
            &[(DELIVER_AT_HEADER, "tomorrow")],
            &[(DELAY_HEADER, "30s")],
            &[(DELAY_HEADER, "-5")],
            &[(TTL_HEADER, "1.5")],
            &[
                (DELAY_HEADER, "1"),
                (DELIVER_AT_HEADER, "2026-12-24T08:00:00Z"),
            ],
            &[(TTL_HEADER, "1"), (TTL_HEADER, "2")],
            &[(DELAY_HEADER, &u64::MAX.to_string())],
            &[(DELIVER_AT_HEADER, "+10000-01-01T00:00:00Z")],
        ];
        for headers in cases {
            let mut record = with(headers);
            let error = prepare(&mut record, 0).unwrap_err();
            assert!(error.contains("sluice-"), "{headers:?}: {error}");
        }
    }

    #[test]
    fn messages_without_these_headers_pass_untouched() {
        let mut record = with(&[("content-type", "text/plain")]);
        let before = record.clone();
        prepare(&mut record, 5).unwrap();
        assert_eq!(record, before);
        assert_eq!(due_ms(&record.headers), Ok(None));
        assert_eq!(ttl_ms(&with(&[(TTL_HEADER, "500")]).headers), Some(500));
    }

    #[test]
    fn a_ttl_counts_from_the_due_time_or_else_from_storing() {
        let plain = with(&[(TTL_HEADER, "100")]).headers;
        assert!(!expired(&plain, 1_000, 1_100));
        assert!(expired(&plain, 1_000, 1_101));
        let delayed = with(&[
            (TTL_HEADER, "100"),
            (DELIVER_AT_HEADER, "1970-01-01T00:00:05Z"),
        ])
        .headers;
        assert!(!expired(&delayed, 1_000, 5_100));
        assert!(expired(&delayed, 1_000, 5_101));
        assert!(!expired(&[], 0, i64::MAX));
        let mut record = with(&[(TTL_HEADER, "7")]);
        give_ttl(&mut record, 9);
        assert_eq!(ttl_ms(&record.headers), Some(7));
        let mut record = with(&[]);
        give_ttl(&mut record, 9);
        assert_eq!(ttl_ms(&record.headers), Some(9));
    }
}
