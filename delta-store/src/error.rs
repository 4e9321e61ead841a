//! The one error type of `hypha-delta-store`.

use std::path::PathBuf;

use hypha_primitives::AuthorKey;

/// Everything that can go wrong opening, writing or reading the journal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A delta (or one of its stamps) failed validation or verification; nothing was stored.
    #[error("delta {index} of the batch is invalid: {source}")]
    Invalid {
        /// Position of the offending delta in the batch (0 for single puts).
        index: usize,
        /// Why it was rejected.
        #[source]
        source: hypha_primitives::Error,
    },
    /// The author is not on the configured allow-list; nothing was stored.
    #[error("delta {index} of the batch is by unknown author {author}")]
    UnknownAuthor {
        /// Position of the offending delta in the batch.
        index: usize,
        /// The author that is not allowed.
        author: AuthorKey,
    },
    /// Another process (usually a running `hypha node`) holds the database lock.
    #[error("the data folder {} is in use by another process (is a hypha node running on it? stop it or use another --data folder)", path.display())]
    Locked {
        /// The data folder.
        path: PathBuf,
    },
    /// The configuration is inconsistent.
    #[error("invalid store configuration: {0}")]
    Config(String),
    /// Bytes in the database do not decode: disk corruption or a bug.
    #[error("corrupt journal entry: {0}")]
    Corrupt(String),
    /// The database was written by a newer (or unknown) layout.
    #[error("journal layout version {found} is not supported (this build reads {supported})")]
    UnsupportedLayout {
        /// Version found on disk.
        found: u8,
        /// Version this build reads.
        supported: u8,
    },
    /// RocksDB failed.
    #[error("rocksdb: {0}")]
    Db(#[from] rocksdb::Error),
    /// File IO (key files, folders) failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// True when trying the same operation again later may succeed (the input was fine).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Locked { .. } => true,
            Error::Db(e) => matches!(
                e.kind(),
                rocksdb::ErrorKind::Busy
                    | rocksdb::ErrorKind::TimedOut
                    | rocksdb::ErrorKind::TryAgain
                    | rocksdb::ErrorKind::Incomplete
            ),
            Error::Io { .. } => true,
            _ => false,
        }
    }

    /// True when the input was rejected (invalid or unauthorised) and the store is unchanged.
    pub fn is_rejected_input(&self) -> bool {
        matches!(self, Error::Invalid { .. } | Error::UnknownAuthor { .. })
    }

    /// A copy of this error for every caller of a failed group commit.
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Db(e) => Error::Db(e.clone()),
            other => Error::Corrupt(other.to_string()),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
