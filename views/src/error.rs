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

impl Error {
    /// True when trying the same operation again later may succeed (the input was fine).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Store(e) if e.is_retryable())
    }

    /// True when the request itself was at fault (a schema that cannot be used, a type with
    /// no schema, input the journal refused) and nothing was changed.
    pub fn is_rejected_input(&self) -> bool {
        match self {
            Error::Schema(_) | Error::UnknownType(_) => true,
            Error::Store(e) => e.is_rejected_input(),
            Error::Corrupt(_) => false,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_whether_the_input_or_the_moment_was_at_fault() {
        assert!(Error::UnknownType("x".into()).is_rejected_input());
        assert!(Error::Schema("cycle".into()).is_rejected_input());
        let corrupt = Error::Corrupt("bad bytes".into());
        assert!(!corrupt.is_rejected_input() && !corrupt.is_retryable());
        let locked = Error::Store(hypha_delta_store::Error::Locked {
            path: "data".into(),
        });
        assert!(locked.is_retryable() && !locked.is_rejected_input());
    }
}
