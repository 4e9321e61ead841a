//! The one error type of `hypha-views`.

/// Everything that can go wrong building views.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A schema cannot be used (resolver dependency cycle, missing dependency, unknown property).
    #[error("invalid schema: {0}")]
    Schema(String),
    /// No schema is registered for the entity type asked for.
    #[error("no schema for type {0:?}")]
    UnknownType(String),
    /// Stored view data does not decode: disk corruption or a bug; a rebuild repairs it.
    #[error("corrupt materialized view: {0}")]
    Corrupt(String),
    /// Reading the journal failed.
    #[error("journal: {0}")]
    Store(#[from] hypha_delta_store::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
