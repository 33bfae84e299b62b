//! Records and their binary encoding: `u32 body_len | u32 crc32c(body) | body`.

use std::ops::Range;

use bytes::Bytes;

use super::error::StoreError;

/// One stored message.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Position of the record in its topic; dense, starting at 0.
    pub offset: u64,
    /// Milliseconds since the Unix epoch, assigned at append.
    pub timestamp_ms: i64,
    /// Optional partitioning / compaction key.
    pub key: Option<Bytes>,
    /// Application headers, in the order given by the producer.
    pub headers: Vec<(String, String)>,
    /// The message body.
    pub payload: Bytes,
    /// Optional producer message id (used for de-duplication later).
    pub id: Option<String>,
}

/// A message to append (offset and timestamp are assigned by the log).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewRecord {
    /// Optional partitioning / compaction key.
    pub key: Option<Bytes>,
    /// Application headers.
    pub headers: Vec<(String, String)>,
    /// The message body.
    pub payload: Bytes,
    /// Optional producer message id.
    pub id: Option<String>,
}

/// Bytes before the body: `u32 body_len | u32 crc`.
pub(crate) const FRAME_HEADER_LEN: usize = 8;
/// The only body version written and accepted.
pub(crate) const VERSION: u8 = 1;
/// Smallest possible body: version, offset, timestamp, key_len, header_count, id_len, payload_len.
pub(crate) const MIN_BODY_LEN: usize = 1 + 8 + 8 + 4 + 2 + 2 + 4;
const NO_KEY: u32 = u32::MAX;
const NO_ID: u16 = u16::MAX;

/// Size of `record` once framed, or why it cannot be stored.
pub(crate) fn encoded_len(record: &NewRecord) -> Result<usize, StoreError> {
    let mut body = MIN_BODY_LEN;
    if let Some(key) = &record.key {
        // u32::MAX is the "no key" marker, so the longest key is one byte shorter.
        if key.len() >= NO_KEY as usize {
            return Err(StoreError::RecordTooLarge("key too long"));
        }
        body += key.len();
    }
    if record.headers.len() > usize::from(u16::MAX) {
        return Err(StoreError::RecordTooLarge("too many headers"));
    }
    for (name, value) in &record.headers {
        if name.len() > usize::from(u16::MAX) {
            return Err(StoreError::RecordTooLarge("header name too long"));
        }
        if value.len() > u32::MAX as usize {
            return Err(StoreError::RecordTooLarge("header value too long"));
        }
        body += 2 + name.len() + 4 + value.len();
    }
    if let Some(id) = &record.id {
        if id.len() >= usize::from(NO_ID) {
            return Err(StoreError::RecordTooLarge("id too long"));
        }
        body += id.len();
    }
    if record.payload.len() > u32::MAX as usize {
        return Err(StoreError::RecordTooLarge("payload too long"));
    }
    body += record.payload.len();
    if body > u32::MAX as usize {
        return Err(StoreError::RecordTooLarge("record too long"));
    }
    Ok(FRAME_HEADER_LEN + body)
}

/// Appends the framed record to `buf`. `record` must have passed [`encoded_len`].
pub(crate) fn encode_into(buf: &mut Vec<u8>, offset: u64, timestamp_ms: i64, record: &NewRecord) {
    let start = buf.len();
    // Length and CRC are patched in once the body is written.
    buf.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    buf.push(VERSION);
    buf.extend_from_slice(&offset.to_le_bytes());
    buf.extend_from_slice(&timestamp_ms.to_le_bytes());
    match &record.key {
        Some(key) => {
            buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
            buf.extend_from_slice(key);
        }
        None => buf.extend_from_slice(&NO_KEY.to_le_bytes()),
    }
    buf.extend_from_slice(&(record.headers.len() as u16).to_le_bytes());
    for (name, value) in &record.headers {
        buf.extend_from_slice(&(name.len() as u16).to_le_bytes());
        buf.extend_from_slice(name.as_bytes());
        buf.extend_from_slice(&(value.len() as u32).to_le_bytes());
        buf.extend_from_slice(value.as_bytes());
    }
    match &record.id {
        Some(id) => {
            buf.extend_from_slice(&(id.len() as u16).to_le_bytes());
            buf.extend_from_slice(id.as_bytes());
        }
        None => buf.extend_from_slice(&NO_ID.to_le_bytes()),
    }
    buf.extend_from_slice(&(record.payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&record.payload);

    let body_start = start + FRAME_HEADER_LEN;
    let body_len = (buf.len() - body_start) as u32;
    let crc = crc32c::crc32c(&buf[body_start..]);
    buf[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    buf[start + 4..body_start].copy_from_slice(&crc.to_le_bytes());
}

/// Reads the frame header at the start of `bytes`: `(body_len, crc)`.
pub(crate) fn frame_header(bytes: &[u8]) -> Option<(usize, u32)> {
    let len = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?);
    let crc = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    Some((len as usize, crc))
}

/// Where the fields of a validated body are, relative to the body start.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BodyLayout {
    pub offset: u64,
    pub timestamp_ms: i64,
    key: Option<Range<usize>>,
    headers: Range<usize>,
    header_count: u16,
    id: Option<Range<usize>>,
    payload: Range<usize>,
}

/// Bounds-checked little-endian cursor over a body.
struct Fields<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Fields<'_> {
    fn take(&mut self, n: usize) -> Result<Range<usize>, &'static str> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or("field lengths exceed body")?;
        let range = self.at..end;
        self.at = end;
        Ok(range)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let range = self.take(N)?;
        self.bytes[range]
            .try_into()
            .map_err(|_| "field lengths exceed body")
    }

    fn u16(&mut self) -> Result<u16, &'static str> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, &'static str> {
        self.array().map(u32::from_le_bytes)
    }
}

/// Checks that the inner lengths of `body` add up exactly and says where each field is.
/// The CRC is the caller's business.
pub(crate) fn parse_body(body: &[u8]) -> Result<BodyLayout, &'static str> {
    let mut f = Fields { bytes: body, at: 0 };
    let [version] = f.array::<1>()?;
    if version != VERSION {
        return Err("unknown record version");
    }
    let offset = u64::from_le_bytes(f.array()?);
    let timestamp_ms = i64::from_le_bytes(f.array()?);
    let key = match f.u32()? {
        NO_KEY => None,
        n => Some(f.take(n as usize)?),
    };
    let header_count = f.u16()?;
    let headers_start = f.at;
    for _ in 0..header_count {
        let name = f.u16()?;
        f.take(usize::from(name))?;
        let value = f.u32()?;
        f.take(value as usize)?;
    }
    let headers = headers_start..f.at;
    let id = match f.u16()? {
        NO_ID => None,
        n => Some(f.take(usize::from(n))?),
    };
    let payload_len = f.u32()?;
    let payload = f.take(payload_len as usize)?;
    if f.at != body.len() {
        return Err("trailing bytes after payload");
    }
    Ok(BodyLayout {
        offset,
        timestamp_ms,
        key,
        headers,
        header_count,
        id,
        payload,
    })
}

fn utf8(bytes: &[u8]) -> Result<String, &'static str> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| "header or id is not utf-8")
}

impl BodyLayout {
    /// Builds the record; key and payload share `body`'s buffer instead of being copied.
    pub(crate) fn decode(&self, body: &Bytes) -> Result<Record, &'static str> {
        let mut headers = Vec::with_capacity(usize::from(self.header_count));
        let mut f = Fields {
            bytes: body
                .get(self.headers.clone())
                .ok_or("field lengths exceed body")?,
            at: 0,
        };
        for _ in 0..self.header_count {
            let name_len = f.u16()?;
            let name = f.take(usize::from(name_len))?;
            let value_len = f.u32()?;
            let value = f.take(value_len as usize)?;
            headers.push((utf8(&f.bytes[name])?, utf8(&f.bytes[value])?));
        }
        let id = match &self.id {
            Some(range) => Some(utf8(
                body.get(range.clone()).ok_or("field lengths exceed body")?,
            )?),
            None => None,
        };
        Ok(Record {
            offset: self.offset,
            timestamp_ms: self.timestamp_ms,
            key: self.key.clone().map(|range| body.slice(range)),
            headers,
            payload: body.slice(self.payload.clone()),
            id,
        })
    }

    /// Length of the payload, for read budgeting.
    pub(crate) fn payload_len(&self) -> usize {
        self.payload.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NewRecord {
        NewRecord {
            key: Some(Bytes::from_static(b"k")),
            headers: vec![("a".into(), "1".into()), ("".into(), "".into())],
            payload: Bytes::from_static(b"hello"),
            id: Some("id-1".into()),
        }
    }

    fn roundtrip(rec: &NewRecord) -> Record {
        let mut buf = Vec::new();
        encode_into(&mut buf, 42, -7, rec);
        assert_eq!(buf.len(), encoded_len(rec).unwrap());
        let (len, crc) = frame_header(&buf).unwrap();
        assert_eq!(len, buf.len() - FRAME_HEADER_LEN);
        assert_eq!(crc, crc32c::crc32c(&buf[FRAME_HEADER_LEN..]));
        let body = Bytes::copy_from_slice(&buf[FRAME_HEADER_LEN..]);
        parse_body(&body).unwrap().decode(&body).unwrap()
    }

    #[test]
    fn encode_decode_roundtrip() {
        let rec = sample();
        let out = roundtrip(&rec);
        assert_eq!(out.offset, 42);
        assert_eq!(out.timestamp_ms, -7);
        assert_eq!(out.key, rec.key);
        assert_eq!(out.headers, rec.headers);
        assert_eq!(out.payload, rec.payload);
        assert_eq!(out.id, rec.id);

        let empty = NewRecord::default();
        let out = roundtrip(&empty);
        assert_eq!(out.key, None);
        assert_eq!(out.id, None);
        assert!(out.payload.is_empty());
        assert_eq!(
            encoded_len(&empty).unwrap(),
            FRAME_HEADER_LEN + MIN_BODY_LEN
        );
    }

    #[test]
    fn inconsistent_lengths_are_rejected_not_panicking() {
        let mut buf = Vec::new();
        encode_into(&mut buf, 1, 1, &sample());
        let body = &buf[FRAME_HEADER_LEN..];
        // Every truncation and every single-byte extension must be rejected.
        for cut in 0..body.len() {
            assert!(parse_body(&body[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = body.to_vec();
        longer.push(0);
        assert!(parse_body(&longer).is_err());
        // Blow up each length field in turn.
        for i in 0..body.len() {
            let mut bad = body.to_vec();
            bad[i] = 0xff;
            let _ = parse_body(&bad).map(|l| l.decode(&Bytes::from(bad.clone())));
        }
    }

    #[test]
    fn oversized_fields_are_refused() {
        let rec = NewRecord {
            id: Some("x".repeat(usize::from(u16::MAX))),
            ..NewRecord::default()
        };
        assert!(matches!(
            encoded_len(&rec),
            Err(StoreError::RecordTooLarge(_))
        ));
    }
}
