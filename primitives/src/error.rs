//! The one error type of `hypha-primitives`.

use crate::filter::FilterError;

/// Everything that can go wrong when building, decoding, parsing or verifying primitives.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Text that should have been JSON of a known shape is not.
    #[error("malformed json: {0}")]
    Json(String),
    /// Bytes that should hold a canonical encoding do not.
    #[error("malformed encoding: {0}")]
    Decode(String),
    /// The encoding starts with a format version this build does not know.
    #[error("unsupported format version {found} (this build reads version {supported})")]
    UnsupportedVersion {
        /// The version byte found.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// A hex string (id, key or signature) is malformed or has the wrong length.
    #[error("invalid {what}: {reason}")]
    InvalidHex {
        /// What the string should have been ("delta id", "author key", …).
        what: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// The bytes are not a valid ed25519 public key.
    #[error("invalid public key {0}")]
    InvalidKey(String),
    /// A delta has no pointers.
    #[error("a delta needs at least one pointer")]
    NoPointers,
    /// A delta has more pointers than the limit.
    #[error("too many pointers: {count} (limit {limit})")]
    TooManyPointers {
        /// Pointers in the delta.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A pointer's local context, target context or entity id is empty.
    #[error("pointer {index}: {field} must not be empty")]
    EmptyField {
        /// Which pointer (0-based).
        index: usize,
        /// Which field is empty.
        field: &'static str,
    },
    /// A number is NaN or infinite, which JSON and the canonical order cannot hold.
    #[error("pointer {index}: number is not finite")]
    NonFiniteNumber {
        /// Which pointer (0-based).
        index: usize,
    },
    /// A JSON number does not fit i64 or f64 exactly.
    #[error("number {0} is out of range (integers must fit in i64)")]
    NumberOutOfRange(String),
    /// The encoded delta is larger than the configured bound.
    #[error("delta is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Encoded size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The delta's id is not the hash of its canonical bytes.
    #[error("delta id {claimed} does not match its content (expected {actual})")]
    IdMismatch {
        /// The id the delta carries.
        claimed: String,
        /// The id its content hashes to.
        actual: String,
    },
    /// The delta has no signature.
    #[error("delta is not signed")]
    MissingSignature,
    /// The signature does not verify against the author key.
    #[error("bad signature on delta {id}")]
    BadSignature {
        /// The delta whose signature failed.
        id: String,
    },
    /// An origin stamp's signature does not verify against its host key.
    #[error("bad origin stamp from host {host} on delta {id}")]
    BadStamp {
        /// The stamping host.
        host: String,
        /// The stamped delta.
        id: String,
    },
    /// A hybrid logical clock string is malformed.
    #[error("invalid hlc time {0:?} (expected MS.LOGICAL)")]
    InvalidHlc(String),
    /// A schema is malformed.
    #[error("invalid schema: {0}")]
    InvalidSchema(String),
    /// A key file is malformed.
    #[error("invalid key file: {0}")]
    InvalidKeyFile(String),
    /// A filter does not parse.
    #[error("invalid filter: {0}")]
    Filter(#[from] FilterError),
}

impl Error {
    /// Never: every error here is about the input, which will fail the same way again.
    pub fn is_retryable(&self) -> bool {
        false
    }

    /// Always: every error here says the input (bytes, JSON, a key file, a filter, a
    /// schema) is malformed, forged or out of bounds.
    pub fn is_rejected_input(&self) -> bool {
        true
    }

    /// True when the failure is about authenticity (id, signature, stamp) rather than shape.
    pub fn is_forgery(&self) -> bool {
        matches!(
            self,
            Error::IdMismatch { .. } | Error::BadSignature { .. } | Error::BadStamp { .. }
        )
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_primitive_error_is_about_its_input() {
        let decode = crate::Delta::decode(b"not a delta").expect_err("garbage");
        assert!(
            decode.is_rejected_input() && !decode.is_retryable(),
            "{decode}"
        );
        let forged = Error::BadSignature { id: "x".into() };
        assert!(forged.is_rejected_input() && forged.is_forgery());
    }
}
