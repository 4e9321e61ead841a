//! The application service's one error, and what a caller should do about it. Each
//! transport maps it to its own form: HTTP to a status and `{"error": …}`
//! (`crate::http`), GraphQL to an error with a `code` extension (`crate::graphql`).

/// A request the service could not carry out.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is wrong as sent: malformed JSON, a bad argument, a delta that fails
    /// verification. Sending it again will fail again.
    #[error("{0}")]
    BadInput(String),
    /// A write without the bearer token this node requires.
    #[error("this node requires \"Authorization: Bearer <token>\" for writes")]
    Unauthorized,
    /// What was asked for is not held here.
    #[error("{0}")]
    NotFound(String),
    /// The request is over a size limit.
    #[error("{0}")]
    TooLarge(String),
    /// The journal failed or refused the input (its error says which).
    #[error(transparent)]
    Store(#[from] hypha_delta_store::Error),
    /// The views failed or refused the input.
    #[error(transparent)]
    Views(#[from] hypha_views::Error),
    /// The node failed in a way the client cannot fix (a task that panicked).
    #[error("{0}")]
    Internal(String),
}

/// The service's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A [`Error::BadInput`] from any message.
    pub fn bad_input(message: impl std::fmt::Display) -> Error {
        Error::BadInput(message.to_string())
    }

    /// True when the same request may succeed later (the journal was busy or locked).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Store(e) => e.is_retryable(),
            Error::Views(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// True when the request itself was refused: sending it again cannot succeed.
    pub fn is_rejected_input(&self) -> bool {
        match self {
            Error::BadInput(_) | Error::TooLarge(_) => true,
            Error::Store(e) => e.is_rejected_input(),
            Error::Views(e) => e.is_rejected_input(),
            _ => false,
        }
    }

    /// A short, stable name of the error's kind, for clients to branch on
    /// (`BAD_INPUT`, `UNAUTHORIZED`, `NOT_FOUND`, `TOO_LARGE`, `UNAVAILABLE`, `INTERNAL`).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Unauthorized => "UNAUTHORIZED",
            Error::NotFound(_) => "NOT_FOUND",
            Error::TooLarge(_) => "TOO_LARGE",
            e if e.is_rejected_input() => "BAD_INPUT",
            e if e.is_retryable() => "UNAVAILABLE",
            _ => "INTERNAL",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_code_and_predicates() {
        let bad = Error::bad_input("first must not be negative");
        assert!(bad.is_rejected_input() && !bad.is_retryable());
        assert_eq!(bad.code(), "BAD_INPUT");
        assert_eq!(bad.to_string(), "first must not be negative");
        assert_eq!(Error::Unauthorized.code(), "UNAUTHORIZED");
        assert!(!Error::Unauthorized.is_rejected_input());
        assert_eq!(Error::NotFound("no delta".into()).code(), "NOT_FOUND");
        let large = Error::TooLarge("over 16 MiB".into());
        assert!(large.is_rejected_input());
        assert_eq!(large.code(), "TOO_LARGE");
        let views = Error::from(hypha_views::Error::UnknownType("user".into()));
        assert!(views.is_rejected_input());
        assert_eq!(views.code(), "BAD_INPUT");
        let internal = Error::Internal("task panicked".into());
        assert!(!internal.is_retryable() && !internal.is_rejected_input());
        assert_eq!(internal.code(), "INTERNAL");
    }
}
