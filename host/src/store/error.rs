//! The error type of the store: the log's own failures and those of the
//! [`super::Store`] operations.

use std::path::PathBuf;

/// Everything that can go wrong while opening, writing or reading a topic log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file system operation failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done, e.g. "write" or "open".
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The disk (or the quota) is full: nothing of the write was stored.
    /// Writing resumes by itself once there is space again.
    #[error("storage full: cannot {op} {path}")]
    Full {
        /// What was being done.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error (ENOSPC or EDQUOT).
        #[source]
        source: std::io::Error,
    },
    /// The topic's log refuses writes: an fsync failed (what it was to make
    /// durable may be lost), or a failed write could not be undone. A
    /// restart recovers the log from what is really on disk.
    #[error("storage failed: {0}")]
    Failed(String),
    /// Bytes on disk are not a valid record (bad CRC, impossible lengths, unexpected offset).
    #[error("corrupt record in {path} at position {position}: {reason}")]
    Corrupt {
        /// The segment file holding the bad record.
        path: PathBuf,
        /// Byte position of the record within the segment file.
        position: u64,
        /// What check failed.
        reason: &'static str,
    },
    /// A `.log` file in the topic directory is not named `<20 digits>.log`.
    #[error("invalid segment file name {path}")]
    BadSegmentName {
        /// The offending file.
        path: PathBuf,
    },
    /// A record to append does not fit the on-disk format limits.
    #[error("record cannot be stored: {0}")]
    RecordTooLarge(&'static str),
    /// No such topic (or not the incarnation asked for).
    #[error("topic {0:?} does not exist")]
    TopicNotFound(String),
    /// The topic exists already.
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    /// A topic name is not valid.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopic {
        /// The name.
        name: String,
        /// Why.
        reason: sluice_proto::SubjectError,
    },
    /// The store is shutting down: nothing more is appended.
    #[error("the store is shutting down")]
    Closed,
    /// The cluster's storage (NATS JetStream) did not answer or refused:
    /// the operation may be retried.
    #[error("cluster storage unavailable: {0}")]
    Unavailable(String),
    /// A task of the store's failed (panicked or was cancelled).
    #[error("store task failed: {0}")]
    Task(String),
}

impl StoreError {
    /// Wraps an I/O error with the operation and path it happened on.
    /// A full disk is [`StoreError::Full`].
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if crate::disk::is_full(&source) {
            return StoreError::Full { op, path, source };
        }
        StoreError::Io { op, path, source }
    }
}
