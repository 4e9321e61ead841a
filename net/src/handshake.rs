//! The signed handshake by which peers prove their identity (their ed25519 host key) when a
//! link opens. Pure: encodings and checks only; the driver sends and receives.
//!
//! ```text
//! dialer                                   listener (ROUTER)
//!   Hello   { host A, nonce a, router, publish }   →
//!           ← Welcome { host B, nonce b, publish, sig_B("welcome" · a · A) }
//!   Proof   { sig_A("proof" · b · B) }     →
//! ```
//!
//! Each side signs the other's fresh nonce together with the other's host id, under a
//! domain prefix, so a signature can neither be replayed to another peer nor reused as a
//! delta or stamp signature.

use hypha_primitives::codec::{Reader, Writer};
use hypha_primitives::{HostId, KeyPair, Signature};

/// Prefix of every handshake signature.
const DOMAIN: &[u8] = b"hypha-handshake-v1";
/// Length of a nonce.
pub const NONCE_LEN: usize = 32;

/// A fresh random nonce.
pub fn nonce() -> [u8; NONCE_LEN] {
    let mut out = [0u8; NONCE_LEN];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut out);
    out
}

/// The dialer's opening: who it claims to be, a challenge, and where it can be reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The dialer's claimed host id.
    pub host: HostId,
    /// The challenge the listener must sign.
    pub nonce: [u8; NONCE_LEN],
    /// The dialer's ROUTER address (for the listener to connect back).
    pub router: String,
    /// The dialer's PUB address.
    pub publish: String,
}

/// The listener's answer: its identity, proven, and its own challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Welcome {
    /// The listener's host id.
    pub host: HostId,
    /// The challenge the dialer must sign.
    pub nonce: [u8; NONCE_LEN],
    /// The listener's PUB address.
    pub publish: String,
    /// The listener's signature of the dialer's nonce and host id.
    pub signature: Signature,
}

/// The dialer's proof of identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proof {
    /// The dialer's signature of the listener's nonce and host id.
    pub signature: Signature,
}

/// Why a handshake message was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandshakeError {
    /// The bytes do not decode.
    #[error("malformed handshake message: {0}")]
    Malformed(String),
    /// A signature does not verify: the peer is not who it claims to be.
    #[error("handshake signature of {0} does not verify")]
    BadSignature(HostId),
}

fn challenge(role: &[u8], nonce: &[u8; NONCE_LEN], other: HostId) -> Vec<u8> {
    [DOMAIN, role, nonce, other.as_bytes()].concat()
}

fn malformed(e: hypha_primitives::Error) -> HandshakeError {
    HandshakeError::Malformed(e.to_string())
}

impl Hello {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.raw(self.host.as_bytes());
        w.raw(&self.nonce);
        w.str(&self.router);
        w.str(&self.publish);
        w.finish()
    }

    /// Decodes a message.
    pub fn decode(bytes: &[u8]) -> Result<Hello, HandshakeError> {
        let mut r = Reader::new(bytes);
        let hello = Hello {
            host: HostId::from_bytes(r.array("host").map_err(malformed)?),
            nonce: r.array("nonce").map_err(malformed)?,
            router: r.string("router address").map_err(malformed)?,
            publish: r.string("publish address").map_err(malformed)?,
        };
        r.expect_end().map_err(malformed)?;
        Ok(hello)
    }

    /// The listener's answer to this hello, signed with its key.
    pub fn welcome(&self, key: &KeyPair, nonce: [u8; NONCE_LEN], publish: String) -> Welcome {
        Welcome {
            host: key.host_id(),
            nonce,
            publish,
            signature: key.sign(&challenge(b"welcome", &self.nonce, self.host)),
        }
    }

    /// Checks the dialer's proof against the nonce the listener sent.
    pub fn check(
        &self,
        proof: &Proof,
        sent: &[u8; NONCE_LEN],
        listener: HostId,
    ) -> Result<(), HandshakeError> {
        if self
            .host
            .verifies(&challenge(b"proof", sent, listener), &proof.signature)
        {
            Ok(())
        } else {
            Err(HandshakeError::BadSignature(self.host))
        }
    }
}

impl Welcome {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.raw(self.host.as_bytes());
        w.raw(&self.nonce);
        w.str(&self.publish);
        w.raw(self.signature.as_bytes());
        w.finish()
    }

    /// Decodes a message.
    pub fn decode(bytes: &[u8]) -> Result<Welcome, HandshakeError> {
        let mut r = Reader::new(bytes);
        let welcome = Welcome {
            host: HostId::from_bytes(r.array("host").map_err(malformed)?),
            nonce: r.array("nonce").map_err(malformed)?,
            publish: r.string("publish address").map_err(malformed)?,
            signature: Signature::from_bytes(r.array("signature").map_err(malformed)?),
        };
        r.expect_end().map_err(malformed)?;
        Ok(welcome)
    }

    /// Checks the listener's signature of the dialer's hello, and answers with the dialer's
    /// proof.
    pub fn check(&self, hello: &Hello, key: &KeyPair) -> Result<Proof, HandshakeError> {
        if !self.host.verifies(
            &challenge(b"welcome", &hello.nonce, hello.host),
            &self.signature,
        ) {
            return Err(HandshakeError::BadSignature(self.host));
        }
        Ok(Proof {
            signature: key.sign(&challenge(b"proof", &self.nonce, self.host)),
        })
    }
}

impl Proof {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        self.signature.as_bytes().to_vec()
    }

    /// Decodes a message.
    pub fn decode(bytes: &[u8]) -> Result<Proof, HandshakeError> {
        let mut r = Reader::new(bytes);
        let signature = Signature::from_bytes(r.array("signature").map_err(malformed)?);
        r.expect_end().map_err(malformed)?;
        Ok(Proof { signature })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(key: &KeyPair) -> Hello {
        Hello {
            host: key.host_id(),
            nonce: nonce(),
            router: "tcp://127.0.0.1:7400".into(),
            publish: "tcp://127.0.0.1:7401".into(),
        }
    }

    #[test]
    fn honest_peers_complete_the_handshake_and_messages_round_trip() {
        let (a, b) = (KeyPair::from_seed([1; 32]), KeyPair::from_seed([2; 32]));
        let hello = hello(&a);
        assert_eq!(Hello::decode(&hello.encode()).unwrap(), hello);
        let sent = nonce();
        let welcome = hello.welcome(&b, sent, "tcp://127.0.0.1:7501".into());
        assert_eq!(Welcome::decode(&welcome.encode()).unwrap(), welcome);
        let proof = welcome.check(&hello, &a).unwrap();
        assert_eq!(Proof::decode(&proof.encode()).unwrap(), proof);
        assert_eq!(hello.check(&proof, &sent, b.host_id()), Ok(()));
    }

    #[test]
    fn an_impostor_is_refused_on_either_side() {
        let (a, b, mallory) = (
            KeyPair::from_seed([1; 32]),
            KeyPair::from_seed([2; 32]),
            KeyPair::from_seed([3; 32]),
        );
        // Mallory claims to be b, but signs with her own key.
        let hello_a = hello(&a);
        let mut forged = hello_a.welcome(&mallory, nonce(), String::new());
        forged.host = b.host_id();
        assert_eq!(
            forged.check(&hello_a, &a),
            Err(HandshakeError::BadSignature(b.host_id()))
        );
        // Mallory claims to be a towards b.
        let mut hello_m = hello(&mallory);
        hello_m.host = a.host_id();
        let sent = nonce();
        let welcome = hello_m.welcome(&b, sent, String::new());
        let proof = Proof {
            signature: mallory.sign(&challenge(b"proof", &welcome.nonce, b.host_id())),
        };
        assert!(hello_m.check(&proof, &sent, b.host_id()).is_err());
        // A proof replayed against another nonce fails too.
        let honest = welcome.check(&hello(&a), &a);
        assert!(honest.is_err(), "the welcome was for mallory's nonce");
    }

    #[test]
    fn malformed_messages_are_typed_errors() {
        let hello = hello(&KeyPair::from_seed([1; 32])).encode();
        for len in 0..hello.len() {
            assert!(matches!(
                Hello::decode(&hello[..len]),
                Err(HandshakeError::Malformed(_))
            ));
        }
        assert!(Proof::decode(&[0; 63]).is_err());
        assert!(Welcome::decode(&[0; 200]).is_err());
    }
}
