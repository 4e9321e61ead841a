//! Link encryption: the keys the signed handshake agrees on, and the sealing of frames.
//!
//! Each side of a handshake sends a fresh X25519 public key, covered by its ed25519
//! handshake signature (`handshake.rs`), so the Diffie-Hellman secret is authenticated by
//! both host keys and forgotten with the link (forward secrecy). From it and the handshake
//! transcript, BLAKE3's key derivation makes one key per direction. A frame on a link is
//! sealed with ChaCha20-Poly1305 under its direction's key, with an explicit 64-bit
//! counter as the nonce; the receiver accepts only counters above the last it opened, so
//! a frame cannot be replayed or reordered into the stream.
//!
//! The PUB stream goes to many subscribers at once, so it cannot use per-link keys: each
//! node draws a random *publish key* when it starts and hands it to each peer that has
//! proven its identity, sealed under that link's key. PUB frames are sealed with
//! XChaCha20-Poly1305 under the publish key, with a random 24-byte nonce (frames may be
//! dropped, so no counter), and the topic and sender as associated data.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, XChaCha20Poly1305};
use rand_core::{OsRng, RngCore};
use x25519_dalek::{PublicKey, StaticSecret};

/// Length of a public key in the handshake.
pub const EPHEMERAL_LEN: usize = 32;
/// Bytes a sealed link frame adds: the counter and the tag.
pub const LINK_OVERHEAD: usize = 8 + 16;
/// Bytes a sealed PUB frame adds: the nonce and the tag.
pub const GROUP_OVERHEAD: usize = 24 + 16;

/// Why a frame could not be opened or a key agreed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The frame was altered, sealed under another key, or is cut short.
    #[error("a sealed frame does not open (tampered, truncated or under another key)")]
    Unsealed,
    /// The frame's counter is not above the last one opened: a replay or a reordering.
    #[error("a sealed frame repeats or goes back in the stream (counter {0})")]
    Replayed(u64),
    /// The peer's key agreement gives no secret (a low-order point).
    #[error("the peer's key agreement is degenerate")]
    Degenerate,
}

/// This side's half of a key agreement.
pub struct Ephemeral {
    secret: StaticSecret,
    /// The public key to send.
    pub public: [u8; EPHEMERAL_LEN],
}

impl std::fmt::Debug for Ephemeral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ephemeral")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl Ephemeral {
    /// A fresh key pair for one handshake.
    pub fn new() -> Ephemeral {
        let secret = StaticSecret::random_from_rng(OsRng);
        let public = PublicKey::from(&secret).to_bytes();
        Ephemeral { secret, public }
    }

    /// The two keys of a link: `transcript` binds them to the handshake (both nonces,
    /// hosts and public keys), `dialer` says which side this is.
    pub fn agree(
        &self,
        theirs: &[u8; EPHEMERAL_LEN],
        transcript: &[u8],
        dialer: bool,
    ) -> Result<LinkKeys, SealError> {
        let shared = self.secret.diffie_hellman(&PublicKey::from(*theirs));
        if !shared.was_contributory() {
            return Err(SealError::Degenerate);
        }
        let material = [shared.as_bytes().as_slice(), transcript].concat();
        let outbound = blake3::derive_key("hypha-link-v1 dialer to listener", &material);
        let inbound = blake3::derive_key("hypha-link-v1 listener to dialer", &material);
        let (send, open) = if dialer {
            (outbound, inbound)
        } else {
            (inbound, outbound)
        };
        Ok(LinkKeys {
            send: Sealer {
                cipher: ChaCha20Poly1305::new(&send.into()),
                counter: 0,
            },
            open: Opener {
                cipher: ChaCha20Poly1305::new(&open.into()),
                last: None,
            },
        })
    }
}

impl Default for Ephemeral {
    fn default() -> Self {
        Self::new()
    }
}

/// Both directions of an encrypted link.
#[derive(Debug)]
pub struct LinkKeys {
    /// Seals what this side sends.
    pub send: Sealer,
    /// Opens what the other side sends.
    pub open: Opener,
}

/// Seals frames in one direction.
pub struct Sealer {
    cipher: ChaCha20Poly1305,
    counter: u64,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

fn counter_nonce(counter: u64) -> chacha20poly1305::Nonce {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&counter.to_be_bytes());
    nonce.into()
}

impl Sealer {
    /// `counter (8) · ciphertext · tag (16)`.
    pub fn seal(&mut self, plaintext: &[u8]) -> Vec<u8> {
        self.counter += 1;
        let sealed = self
            .cipher
            .encrypt(&counter_nonce(self.counter), plaintext)
            .expect("ChaCha20-Poly1305 seals any length a frame can have");
        [self.counter.to_be_bytes().as_slice(), &sealed].concat()
    }
}

/// Opens frames from one direction, refusing replays.
pub struct Opener {
    cipher: ChaCha20Poly1305,
    last: Option<u64>,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl Opener {
    /// Opens a frame sealed by the other side's [`Sealer`].
    pub fn open(&mut self, frame: &[u8]) -> Result<Vec<u8>, SealError> {
        if frame.len() < LINK_OVERHEAD {
            return Err(SealError::Unsealed);
        }
        let (counter, sealed) = frame.split_at(8);
        let counter = u64::from_be_bytes(counter.try_into().expect("8 bytes"));
        if self.last.is_some_and(|last| counter <= last) {
            return Err(SealError::Replayed(counter));
        }
        let plain = self
            .cipher
            .decrypt(&counter_nonce(counter), sealed)
            .map_err(|_| SealError::Unsealed)?;
        self.last = Some(counter);
        Ok(plain)
    }
}

/// A node's publish key, shared with its authenticated subscribers.
#[derive(Clone)]
pub struct GroupKey {
    key: [u8; 32],
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for GroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupKey(…)")
    }
}

impl GroupKey {
    /// A fresh random key.
    pub fn random() -> GroupKey {
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        GroupKey::from_bytes(key)
    }

    /// The key from its bytes (as handed over a link).
    pub fn from_bytes(key: [u8; 32]) -> GroupKey {
        GroupKey {
            key,
            cipher: XChaCha20Poly1305::new(&key.into()),
        }
    }

    /// The key's bytes, to hand to a peer over a sealed link.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.key
    }

    /// `nonce (24) · ciphertext · tag (16)`, bound to `aad` (topic and sender).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 24];
        OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("XChaCha20-Poly1305 seals any length a frame can have");
        [nonce.as_slice(), &sealed].concat()
    }

    /// Opens a frame sealed by [`GroupKey::seal`] with the same `aad`.
    pub fn open(&self, aad: &[u8], frame: &[u8]) -> Result<Vec<u8>, SealError> {
        if frame.len() < GROUP_OVERHEAD {
            return Err(SealError::Unsealed);
        }
        let (nonce, sealed) = frame.split_at(24);
        let nonce: [u8; 24] = nonce.try_into().expect("24 bytes");
        self.cipher
            .decrypt(&nonce.into(), Payload { msg: sealed, aad })
            .map_err(|_| SealError::Unsealed)
    }
}

/// Whether an address (`tcp://host:port`) is on this machine: links to it are not
/// encrypted unless asked for.
pub fn is_loopback(address: &str) -> bool {
    let host = address
        .strip_prefix("tcp://")
        .unwrap_or(address)
        .rsplit_once(':')
        .map_or(address, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (LinkKeys, LinkKeys) {
        let (a, b) = (Ephemeral::new(), Ephemeral::new());
        let transcript = b"both nonces, hosts and keys";
        (
            a.agree(&b.public, transcript, true).unwrap(),
            b.agree(&a.public, transcript, false).unwrap(),
        )
    }

    #[test]
    fn both_sides_agree_and_frames_open_only_once_in_order() {
        let (mut dialer, mut listener) = pair();
        let first = dialer.send.seal(b"hello");
        let second = dialer.send.seal(b"again");
        assert_ne!(&first[8..], b"hello", "sealed, not plain");
        assert_eq!(listener.open.open(&first).unwrap(), b"hello");
        assert_eq!(listener.open.open(&second).unwrap(), b"again");
        assert_eq!(listener.open.open(&first), Err(SealError::Replayed(1)));
        // The other direction has its own key.
        let back = listener.send.seal(b"welcome");
        assert_eq!(dialer.open.open(&back).unwrap(), b"welcome");
        assert_eq!(dialer.send.seal(b"x")[..8], 3u64.to_be_bytes());
        // A frame sealed by the dialer does not open as the listener's.
        let mut mine = pair().0;
        assert_eq!(
            mine.open.open(&mine.send.seal(b"x")),
            Err(SealError::Unsealed)
        );
    }

    #[test]
    fn tampering_truncation_and_other_transcripts_fail() {
        let (mut dialer, mut listener) = pair();
        let mut frame = dialer.send.seal(b"payload");
        let last = frame.len() - 1;
        frame[last] ^= 1;
        assert_eq!(listener.open.open(&frame), Err(SealError::Unsealed));
        assert_eq!(listener.open.open(&frame[..10]), Err(SealError::Unsealed));
        // A different transcript gives different keys.
        let (a, b) = (Ephemeral::new(), Ephemeral::new());
        let mut one = a.agree(&b.public, b"one", true).unwrap();
        let mut two = b.agree(&a.public, b"two", false).unwrap();
        assert_eq!(
            two.open.open(&one.send.seal(b"x")),
            Err(SealError::Unsealed)
        );
        // A low-order public key agrees on nothing.
        assert!(matches!(
            a.agree(&[0; 32], b"t", true),
            Err(SealError::Degenerate)
        ));
    }

    #[test]
    fn publish_frames_open_under_the_same_key_topic_and_sender() {
        let key = GroupKey::random();
        let frame = key.seal(b"dp3f|sender", b"deltas");
        assert_eq!(key.open(b"dp3f|sender", &frame).unwrap(), b"deltas");
        assert_ne!(
            key.seal(b"a", b"same"),
            key.seal(b"a", b"same"),
            "fresh nonces"
        );
        assert_eq!(key.open(b"dp00|sender", &frame), Err(SealError::Unsealed));
        let copy = GroupKey::from_bytes(key.to_bytes());
        assert_eq!(copy.open(b"dp3f|sender", &frame).unwrap(), b"deltas");
        assert_eq!(
            GroupKey::random().open(b"dp3f|sender", &frame),
            Err(SealError::Unsealed)
        );
    }

    #[test]
    fn loopback_addresses_are_recognised() {
        for address in [
            "tcp://127.0.0.1:7400",
            "tcp://127.3.2.1:1",
            "tcp://localhost:7400",
            "tcp://[::1]:7400",
        ] {
            assert!(is_loopback(address), "{address}");
        }
        for address in [
            "tcp://10.0.0.2:7400",
            "tcp://example.org:7400",
            "tcp://0.0.0.0:7400",
        ] {
            assert!(!is_loopback(address), "{address}");
        }
    }
}
