//! Ed25519 key pairs: signing deltas and origin stamps, and the text form of a key file.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey};

#[cfg(test)]
use crate::verify::verify_one;
use crate::{AuthorKey, Error, HostId, Result, Signature};

/// The first word of a key file; the version lets the format change later.
const KEY_FILE_HEADER: &str = "hypha-secret-key-v1";

/// An ed25519 signing key with its public half.
///
/// The same key pair serves as an author key (signing deltas) and, for a node,
/// as its host identity (signing origin stamps and handshakes).
#[derive(Clone)]
pub struct KeyPair {
    signing: SigningKey,
}

impl KeyPair {
    /// A fresh key pair from the operating system's random source.
    pub fn generate() -> Self {
        Self {
            signing: SigningKey::generate(&mut rand_core::OsRng),
        }
    }

    /// A deterministic key pair from a 32-byte seed (tests, simulations, benchmarks).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// The public key, as the author of what this pair signs.
    pub fn author(&self) -> AuthorKey {
        AuthorKey::from_bytes(self.signing.verifying_key().to_bytes())
    }

    /// The public key, as a node identity.
    pub fn host_id(&self) -> HostId {
        HostId::from_bytes(self.signing.verifying_key().to_bytes())
    }

    /// Signs a message.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature::from_bytes(self.signing.sign(message).to_bytes())
    }

    /// The key file's text: a header word and the secret seed in hex.
    ///
    /// Whoever writes it must keep it private (mode 0600).
    pub fn to_key_file(&self) -> String {
        format!(
            "{KEY_FILE_HEADER} {}\n",
            hex::encode(self.signing.to_bytes())
        )
    }

    /// Parses the text written by [`KeyPair::to_key_file`].
    pub fn from_key_file(text: &str) -> Result<Self> {
        let mut words = text.split_whitespace();
        match words.next() {
            Some(KEY_FILE_HEADER) => {}
            Some(other) => {
                return Err(Error::InvalidKeyFile(format!(
                    "expected header {KEY_FILE_HEADER:?}, found {other:?}"
                )))
            }
            None => return Err(Error::InvalidKeyFile("file is empty".into())),
        }
        let seed_hex = words
            .next()
            .ok_or_else(|| Error::InvalidKeyFile("secret key is missing".into()))?;
        if words.next().is_some() {
            return Err(Error::InvalidKeyFile(
                "unexpected text after the secret key".into(),
            ));
        }
        let mut seed = [0u8; 32];
        hex::decode_to_slice(seed_hex, &mut seed)
            .map_err(|e| Error::InvalidKeyFile(format!("secret key is not 64 hex digits: {e}")))?;
        Ok(Self::from_seed(seed))
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret half.
        f.debug_struct("KeyPair")
            .field("public", &self.author())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trips_and_keeps_the_public_key() {
        let pair = KeyPair::from_seed([7; 32]);
        let back = KeyPair::from_key_file(&pair.to_key_file()).unwrap();
        assert_eq!(back.author(), pair.author());
    }

    #[test]
    fn malformed_key_files_are_rejected_with_a_reason() {
        for (text, expect) in [
            ("", "empty"),
            ("other-header 00", "expected header"),
            ("hypha-secret-key-v1", "missing"),
            ("hypha-secret-key-v1 abcd", "64 hex digits"),
        ] {
            let err = KeyPair::from_key_file(text).unwrap_err();
            assert!(err.to_string().contains(expect), "{text:?}: {err}");
        }
        let trailing = format!("hypha-secret-key-v1 {} trailing", "00".repeat(32));
        let err = KeyPair::from_key_file(&trailing).unwrap_err();
        assert!(err.to_string().contains("unexpected text"), "{err}");
    }

    #[test]
    fn signatures_verify_only_for_their_message_and_key() {
        let pair = KeyPair::from_seed([1; 32]);
        let other = KeyPair::from_seed([2; 32]);
        let sig = pair.sign(b"hello");
        assert!(verify_one(pair.author().as_bytes(), b"hello", &sig));
        assert!(!verify_one(pair.author().as_bytes(), b"hellO", &sig));
        assert!(!verify_one(other.author().as_bytes(), b"hello", &sig));
    }

    #[test]
    fn debug_does_not_leak_the_secret() {
        let pair = KeyPair::from_seed([9; 32]);
        let secret_hex = hex::encode([9u8; 32]);
        assert!(!format!("{pair:?}").contains(&secret_hex));
    }
}
