//! [`Cursor`]: walks a segment's records forward from a known record
//! boundary, checking each one. Reads, time lookups and recovery all go
//! through it, so a record is validated the same way everywhere.

use std::path::Path;

use bytes::Bytes;

use super::error::StoreError;
use super::record::{self, BodyLayout, FRAME_HEADER_LEN, MIN_BODY_LEN};
use crate::disk::DiskFile;

/// Why a cursor stopped early.
pub(crate) enum CursorError {
    /// The file could not be read.
    Io(StoreError),
    /// The bytes at `position` are not the next valid record.
    Bad { position: u64, reason: &'static str },
}

/// One validated record as seen by a cursor.
pub(crate) struct Framed {
    pub position: u64,
    pub total_len: u64,
    pub body: Bytes,
    pub layout: BodyLayout,
}

/// Walks records forward from a known record boundary, reading the file in big chunks.
/// Every record is checked: frame within bounds, CRC, body layout, and dense offsets.
pub(crate) struct Cursor<'a> {
    file: &'a dyn DiskFile,
    path: &'a Path,
    buf: Bytes,
    buf_pos: u64,
    at: usize,
    end: u64,
    chunk: usize,
    expected: u64,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(
        file: &'a dyn DiskFile,
        path: &'a Path,
        position: u64,
        offset: u64,
        end: u64,
        chunk: usize,
    ) -> Self {
        Cursor {
            file,
            path,
            buf: Bytes::new(),
            buf_pos: position,
            at: 0,
            end,
            chunk: chunk.max(FRAME_HEADER_LEN + MIN_BODY_LEN),
            expected: offset,
        }
    }

    fn position(&self) -> u64 {
        self.buf_pos + self.at as u64
    }

    /// Makes sure `need` bytes from the current position are buffered; `need` must fit before `end`.
    fn ensure(&mut self, need: usize) -> Result<(), CursorError> {
        if self.buf.len() - self.at >= need {
            return Ok(());
        }
        let position = self.position();
        let len = need.max(self.chunk) as u64;
        let len = len.min(self.end - position) as usize;
        let mut fresh = vec![0u8; len];
        read_exact_at(self.file, &mut fresh, position)
            .map_err(|e| CursorError::Io(StoreError::io("read", self.path, e)))?;
        self.buf = Bytes::from(fresh);
        self.buf_pos = position;
        self.at = 0;
        Ok(())
    }

    /// The next record, `Ok(None)` at the end of the readable range.
    pub(crate) fn next_record(&mut self) -> Result<Option<Framed>, CursorError> {
        let position = self.position();
        if position >= self.end {
            return Ok(None);
        }
        let bad = |reason| CursorError::Bad { position, reason };
        let remaining = self.end - position;
        if remaining < FRAME_HEADER_LEN as u64 {
            return Err(bad("truncated record header"));
        }
        self.ensure(FRAME_HEADER_LEN)?;
        let (body_len, crc) = record::frame_header(&self.buf[self.at..])
            .ok_or_else(|| bad("truncated record header"))?;
        if body_len < MIN_BODY_LEN {
            return Err(bad("record length too small"));
        }
        let total = FRAME_HEADER_LEN + body_len;
        if total as u64 > remaining {
            return Err(bad("record extends past end of segment"));
        }
        self.ensure(total)?;
        let body = self.buf.slice(self.at + FRAME_HEADER_LEN..self.at + total);
        if crc32c::crc32c(&body) != crc {
            return Err(bad("crc mismatch"));
        }
        let layout = record::parse_body(&body).map_err(bad)?;
        if layout.offset != self.expected {
            return Err(bad("unexpected offset"));
        }
        self.at += total;
        self.expected += 1;
        Ok(Some(Framed {
            position,
            total_len: total as u64,
            body,
            layout,
        }))
    }

    /// Past damage at the current position: moves to the next record that
    /// checks out (frame, CRC, layout) with an offset at or above the one
    /// expected, and returns its position, offset and timestamp; `None` if
    /// there is none before the end. The offsets in between are lost.
    pub(crate) fn resync(&mut self) -> Result<Option<(u64, u64, i64)>, CursorError> {
        let from = self.position() + 1;
        if from >= self.end {
            return Ok(None);
        }
        let len = usize::try_from(self.end - from).unwrap_or(usize::MAX);
        let mut rest = vec![0u8; len];
        read_exact_at(self.file, &mut rest, from)
            .map_err(|e| CursorError::Io(StoreError::io("read", self.path, e)))?;
        let rest = Bytes::from(rest);
        for at in 0..rest.len() {
            let Some((body_len, crc)) = record::frame_header(&rest[at..]) else {
                continue;
            };
            let total = FRAME_HEADER_LEN + body_len;
            if body_len < MIN_BODY_LEN || at + total > rest.len() {
                continue;
            }
            let body = &rest[at + FRAME_HEADER_LEN..at + total];
            if crc32c::crc32c(body) != crc {
                continue;
            }
            match record::parse_body(body) {
                Ok(layout) if layout.offset >= self.expected => {
                    self.buf = rest;
                    self.buf_pos = from;
                    self.at = at;
                    self.expected = layout.offset;
                    return Ok(Some((from + at as u64, layout.offset, layout.timestamp_ms)));
                }
                _ => continue,
            }
        }
        Ok(None)
    }
}

/// Fills `buf` from `position`; a file shorter than that is an error.
pub(crate) fn read_exact_at(
    file: &dyn DiskFile,
    mut buf: &mut [u8],
    mut position: u64,
) -> std::io::Result<()> {
    while !buf.is_empty() {
        match file.read_at(buf, position)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                position += n as u64;
            }
        }
    }
    Ok(())
}
