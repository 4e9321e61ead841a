//! Newtype identifiers: delta ids, author and host keys, entity ids, origin sequence numbers.

use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

fn parse_hex<const N: usize>(text: &str, what: &'static str) -> Result<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).map_err(|e| Error::InvalidHex {
        what,
        reason: if text.len() != N * 2 {
            format!("expected {} hex digits, got {}", N * 2, text.len())
        } else {
            e.to_string()
        },
    })?;
    Ok(out)
}

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident, $len:expr, $what:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name([u8; $len]);

        impl $name {
            /// Wraps raw bytes.
            pub const fn from_bytes(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }
            /// The raw bytes.
            pub const fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut buf = [0u8; $len * 2];
                // Encoding into a buffer of exactly twice the length cannot fail.
                hex::encode_to_slice(self.0, &mut buf).map_err(|_| fmt::Error)?;
                f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                parse_hex::<$len>(s, $what).map(Self)
            }
        }
    };
}

hex_id!(
    /// A delta's content id: the blake3 hash of its canonical bytes.
    DeltaId, 32, "delta id"
);
hex_id!(
    /// The ed25519 verifying key of a delta's author (a user, a service or a node).
    AuthorKey, 32, "author key"
);
hex_id!(
    /// A node's identity: the ed25519 verifying key it stamps and handshakes with.
    HostId, 32, "host id"
);
hex_id!(
    /// An ed25519 signature.
    Signature, 64, "signature"
);

impl HostId {
    /// The same key seen as the author of deltas the node writes itself.
    pub const fn as_author(&self) -> AuthorKey {
        AuthorKey(self.0)
    }

    /// True when `signature` is this host's strict ed25519 signature of `message` (used to
    /// prove a node's identity when peers connect).
    pub fn verifies(&self, message: &[u8], signature: &Signature) -> bool {
        crate::verify::verify_one(&self.0, message, signature)
    }
}

/// The id of an entity: any non-empty string chosen by the application ("alice", "film:42").
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntityId(String);

impl EntityId {
    /// Wraps a string; emptiness is checked when a delta is validated.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EntityId({:?})", self.0)
    }
}

impl FromStr for EntityId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if s.is_empty() {
            return Err(Error::EmptyField {
                index: 0,
                field: "entity id",
            });
        }
        Ok(Self(s.to_owned()))
    }
}

impl From<String> for EntityId {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for EntityId {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// A position in one host's origin sequence: 1, 2, 3… without gaps.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Seq(u64);

impl Seq {
    /// The first sequence number a host hands out.
    pub const FIRST: Seq = Seq(1);
    /// Wraps a raw number.
    pub const fn new(n: u64) -> Self {
        Self(n)
    }
    /// The raw number.
    pub const fn get(self) -> u64 {
        self.0
    }
    /// The number after this one.
    pub const fn next(self) -> Seq {
        Seq(self.0 + 1)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Seq {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        s.parse::<u64>()
            .map(Seq)
            .map_err(|e| Error::Json(format!("invalid sequence number {s:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids_round_trip_through_display_and_from_str() {
        let id = DeltaId::from_bytes([0xab; 32]);
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<DeltaId>().unwrap(), id);
    }

    #[test]
    fn hex_ids_reject_wrong_length_and_bad_digits() {
        let err = "abcd".parse::<DeltaId>().unwrap_err();
        assert!(err.to_string().contains("expected 64 hex digits"), "{err}");
        let err = "zz".repeat(32).parse::<AuthorKey>().unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidHex {
                    what: "author key",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn empty_entity_id_is_rejected() {
        assert!("".parse::<EntityId>().is_err());
        assert_eq!("alice".parse::<EntityId>().unwrap().as_str(), "alice");
    }
}
