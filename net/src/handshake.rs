//! The signed handshake by which peers prove their identity (their ed25519 host key) when a
//! link opens. Pure: encodings and checks only; the driver sends and receives.
//!
//! ```text
//! dialer                                   listener (ROUTER)
//!   Hello   { host A, nonce a, router, publish, X25519 key x_A, encrypt e_A }   →
//!       ← Welcome { host B, nonce b, publish, x_B, e_B, sig_B("welcome" · a · A · x_A · e_A · x_B · e_B · addresses) }
//!   Proof   { sig_A("proof" · b · B · x_B · e_B · x_A · e_A · addresses) }     →
//!
//! (addresses: the dialer's ROUTER and PUB addresses and the listener's PUB address.)
//! ```
//!
//! Each side signs the other's fresh nonce together with the other's host id, under a
//! domain prefix, so a signature can neither be replayed to another peer nor reused as a
//! delta or stamp signature. The signatures also cover both X25519 keys and both
//! encryption wishes, so the link keys agreed from them (`seal.rs`) are authenticated by
//! both host keys, and nobody in between can swap a key or turn encryption off.

use hypha_primitives::codec::{Reader, Writer};
use hypha_primitives::{HostId, KeyPair, Signature};

use crate::seal::EPHEMERAL_LEN;
use crate::wire::WIRE_VERSION;

/// Prefix of every handshake signature.
const DOMAIN: &[u8] = b"hypha-handshake-v2";
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
    /// The dialer's X25519 key for this link.
    pub ephemeral: [u8; EPHEMERAL_LEN],
    /// Whether the dialer wants the link encrypted.
    pub encrypt: bool,
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
    /// The listener's X25519 key for this link.
    pub ephemeral: [u8; EPHEMERAL_LEN],
    /// Whether the listener wants the link encrypted.
    pub encrypt: bool,
    /// The listener's signature of the dialer's hello and its own key and wish.
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
    /// The peer speaks another version of the wire protocol.
    #[error("the peer speaks wire version {theirs}; this build speaks version {ours} only")]
    Version {
        /// The peer's version (1 for builds whose hello carries none).
        theirs: u8,
        /// This build's ([`WIRE_VERSION`]).
        ours: u8,
    },
}

/// What a side signs: the other's nonce and host, the other's key and wish, its own,
/// and the addresses both sides gave (the dialer's ROUTER and PUB, the listener's PUB), so
/// nobody in between can redirect a subscription or a dial-back.
fn challenge(
    role: &[u8],
    nonce: &[u8; NONCE_LEN],
    other: HostId,
    (their_key, their_wish): (&[u8; EPHEMERAL_LEN], bool),
    (own_key, own_wish): (&[u8; EPHEMERAL_LEN], bool),
    addresses: [&str; 3],
) -> Vec<u8> {
    let mut out = [
        DOMAIN,
        role,
        nonce,
        other.as_bytes(),
        their_key,
        &[u8::from(their_wish)],
        own_key,
        &[u8::from(own_wish)],
    ]
    .concat();
    for address in addresses {
        out.extend_from_slice(&(address.len() as u32).to_be_bytes());
        out.extend_from_slice(address.as_bytes());
    }
    out
}

/// The handshake both sides bind their link keys to.
pub fn transcript(hello: &Hello, welcome: &Welcome) -> Vec<u8> {
    [
        DOMAIN,
        &hello.nonce,
        &welcome.nonce,
        hello.host.as_bytes(),
        welcome.host.as_bytes(),
        &hello.ephemeral,
        &welcome.ephemeral,
    ]
    .concat()
}

/// Whether a link is encrypted: when either side wants it.
pub fn encrypted(hello: &Hello, welcome: &Welcome) -> bool {
    hello.encrypt || welcome.encrypt
}

fn malformed(e: hypha_primitives::Error) -> HandshakeError {
    HandshakeError::Malformed(e.to_string())
}

fn flag(r: &mut Reader<'_>) -> Result<bool, HandshakeError> {
    match r.u8("encrypt flag").map_err(malformed)? {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(HandshakeError::Malformed(format!("encrypt flag {other}"))),
    }
}

impl Hello {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.raw(self.host.as_bytes());
        w.raw(&self.nonce);
        w.str(&self.router);
        w.str(&self.publish);
        w.raw(&self.ephemeral);
        w.u8(u8::from(self.encrypt));
        w.u8(WIRE_VERSION);
        w.finish()
    }

    /// Decodes a message; a hello of another wire version (builds of version 1 sent none)
    /// is [`HandshakeError::Version`].
    pub fn decode(bytes: &[u8]) -> Result<Hello, HandshakeError> {
        let mut r = Reader::new(bytes);
        let hello = Hello {
            host: HostId::from_bytes(r.array("host").map_err(malformed)?),
            nonce: r.array("nonce").map_err(malformed)?,
            router: r.string("router address").map_err(malformed)?,
            publish: r.string("publish address").map_err(malformed)?,
            ephemeral: r.array("key").map_err(malformed)?,
            encrypt: flag(&mut r)?,
        };
        let theirs = match r.remaining() {
            0 => 1,
            _ => r.u8("wire version").map_err(malformed)?,
        };
        if theirs != WIRE_VERSION {
            return Err(HandshakeError::Version {
                theirs,
                ours: WIRE_VERSION,
            });
        }
        r.expect_end().map_err(malformed)?;
        Ok(hello)
    }

    /// The listener's answer to this hello, signed with its key: its own nonce, PUB
    /// address, X25519 key and encryption wish.
    pub fn welcome(
        &self,
        key: &KeyPair,
        nonce: [u8; NONCE_LEN],
        publish: String,
        ephemeral: [u8; EPHEMERAL_LEN],
        encrypt: bool,
    ) -> Welcome {
        let signed = challenge(
            b"welcome",
            &self.nonce,
            self.host,
            (&self.ephemeral, self.encrypt),
            (&ephemeral, encrypt),
            [&self.router, &self.publish, &publish],
        );
        Welcome {
            host: key.host_id(),
            nonce,
            publish,
            ephemeral,
            encrypt,
            signature: key.sign(&signed),
        }
    }

    /// Checks the dialer's proof against the welcome the listener sent.
    pub fn check(&self, proof: &Proof, sent: &Welcome) -> Result<(), HandshakeError> {
        let signed = challenge(
            b"proof",
            &sent.nonce,
            sent.host,
            (&sent.ephemeral, sent.encrypt),
            (&self.ephemeral, self.encrypt),
            [&self.router, &self.publish, &sent.publish],
        );
        if self.host.verifies(&signed, &proof.signature) {
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
        w.raw(&self.ephemeral);
        w.u8(u8::from(self.encrypt));
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
            ephemeral: r.array("key").map_err(malformed)?,
            encrypt: flag(&mut r)?,
            signature: Signature::from_bytes(r.array("signature").map_err(malformed)?),
        };
        r.expect_end().map_err(malformed)?;
        Ok(welcome)
    }

    /// Checks the listener's signature of the dialer's hello, and answers with the dialer's
    /// proof.
    pub fn check(&self, hello: &Hello, key: &KeyPair) -> Result<Proof, HandshakeError> {
        let signed = challenge(
            b"welcome",
            &hello.nonce,
            hello.host,
            (&hello.ephemeral, hello.encrypt),
            (&self.ephemeral, self.encrypt),
            [&hello.router, &hello.publish, &self.publish],
        );
        if !self.host.verifies(&signed, &self.signature) {
            return Err(HandshakeError::BadSignature(self.host));
        }
        let proof = challenge(
            b"proof",
            &self.nonce,
            self.host,
            (&self.ephemeral, self.encrypt),
            (&hello.ephemeral, hello.encrypt),
            [&hello.router, &hello.publish, &self.publish],
        );
        Ok(Proof {
            signature: key.sign(&proof),
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
    use crate::seal::Ephemeral;

    fn hello(key: &KeyPair, ephemeral: &Ephemeral, encrypt: bool) -> Hello {
        Hello {
            host: key.host_id(),
            nonce: nonce(),
            router: "tcp://127.0.0.1:7400".into(),
            publish: "tcp://127.0.0.1:7401".into(),
            ephemeral: ephemeral.public,
            encrypt,
        }
    }

    #[test]
    fn honest_peers_complete_the_handshake_and_agree_on_link_keys() {
        let (a, b) = (KeyPair::from_seed([1; 32]), KeyPair::from_seed([2; 32]));
        let (xa, xb) = (Ephemeral::new(), Ephemeral::new());
        let hello = hello(&a, &xa, true);
        assert_eq!(Hello::decode(&hello.encode()).unwrap(), hello);
        let welcome = hello.welcome(&b, nonce(), "tcp://127.0.0.1:7501".into(), xb.public, false);
        assert_eq!(Welcome::decode(&welcome.encode()).unwrap(), welcome);
        let proof = welcome.check(&hello, &a).unwrap();
        assert_eq!(Proof::decode(&proof.encode()).unwrap(), proof);
        assert_eq!(hello.check(&proof, &welcome), Ok(()));
        assert!(encrypted(&hello, &welcome), "the dialer asked");
        let t = transcript(&hello, &welcome);
        let mut dialer = xa.agree(&welcome.ephemeral, &t, true).unwrap();
        let mut listener = xb.agree(&hello.ephemeral, &t, false).unwrap();
        assert_eq!(listener.open.open(&dialer.send.seal(b"m")).unwrap(), b"m");
    }

    #[test]
    fn an_impostor_is_refused_on_either_side() {
        let (a, b, mallory) = (
            KeyPair::from_seed([1; 32]),
            KeyPair::from_seed([2; 32]),
            KeyPair::from_seed([3; 32]),
        );
        let x = Ephemeral::new();
        // Mallory claims to be b, but signs with her own key.
        let hello_a = hello(&a, &x, false);
        let mut forged = hello_a.welcome(&mallory, nonce(), String::new(), x.public, false);
        forged.host = b.host_id();
        assert_eq!(
            forged.check(&hello_a, &a),
            Err(HandshakeError::BadSignature(b.host_id()))
        );
        // Mallory claims to be a towards b.
        let mut hello_m = hello(&mallory, &x, false);
        hello_m.host = a.host_id();
        let welcome = hello_m.welcome(&b, nonce(), String::new(), x.public, false);
        let proof = welcome.check(&hello_m, &mallory).unwrap();
        assert!(hello_m.check(&proof, &welcome).is_err());
        // A welcome made for one hello does not answer another.
        assert!(welcome.check(&hello(&a, &x, false), &a).is_err());
    }

    #[test]
    fn keys_and_wishes_cannot_be_swapped_in_between() {
        let (a, b) = (KeyPair::from_seed([1; 32]), KeyPair::from_seed([2; 32]));
        let (xa, xb, xm) = (Ephemeral::new(), Ephemeral::new(), Ephemeral::new());
        let hello = hello(&a, &xa, true);
        let welcome = hello.welcome(&b, nonce(), String::new(), xb.public, false);
        // Someone in between swaps the listener's key for their own: the dialer notices.
        let mut swapped = welcome.clone();
        swapped.ephemeral = xm.public;
        assert!(swapped.check(&hello, &a).is_err());
        // Or turns the dialer's wish for encryption off on the way to the listener: the
        // listener signed what it received, so the dialer notices.
        let mut downgraded = hello.clone();
        downgraded.encrypt = false;
        let welcome = downgraded.welcome(&b, nonce(), String::new(), xb.public, false);
        assert!(welcome.check(&hello, &a).is_err());
        // Or redirects the dialer's subscription to its own PUB socket.
        let mut redirected =
            hello.welcome(&b, nonce(), "tcp://127.0.0.1:1".into(), xb.public, false);
        redirected.publish = "tcp://10.6.6.6:7401".into();
        assert!(redirected.check(&hello, &a).is_err());
        // And the proof covers the welcome's key: the listener notices a swapped one.
        let welcome = hello.welcome(&b, nonce(), String::new(), xb.public, false);
        let proof = swapped_proof(&welcome, &hello, &a, &xm);
        assert!(hello.check(&proof, &welcome).is_err());
    }

    /// The proof a dialer would send had it seen `welcome` with `other`'s key instead.
    fn swapped_proof(welcome: &Welcome, hello: &Hello, key: &KeyPair, other: &Ephemeral) -> Proof {
        let mut seen = welcome.clone();
        seen.ephemeral = other.public;
        let signed = challenge(
            b"proof",
            &seen.nonce,
            seen.host,
            (&seen.ephemeral, seen.encrypt),
            (&hello.ephemeral, hello.encrypt),
            [&hello.router, &hello.publish, &seen.publish],
        );
        Proof {
            signature: key.sign(&signed),
        }
    }

    #[test]
    fn malformed_messages_are_typed_errors() {
        let hello = hello(&KeyPair::from_seed([1; 32]), &Ephemeral::new(), false).encode();
        for len in 0..hello.len() - 1 {
            assert!(matches!(
                Hello::decode(&hello[..len]),
                Err(HandshakeError::Malformed(_))
            ));
        }
        let mut bad_flag = hello.clone();
        let flag_at = bad_flag.len() - 2;
        bad_flag[flag_at] = 7;
        assert!(matches!(
            Hello::decode(&bad_flag),
            Err(HandshakeError::Malformed(_))
        ));
        assert!(Proof::decode(&[0; 63]).is_err());
        assert!(Welcome::decode(&[0; 200]).is_err());
    }

    #[test]
    fn a_hello_of_another_wire_version_is_refused_naming_both() {
        let hello = hello(&KeyPair::from_seed([1; 32]), &Ephemeral::new(), false).encode();
        // A build of version 1 sent the same fields without a version byte.
        let old = Hello::decode(&hello[..hello.len() - 1]).unwrap_err();
        assert_eq!(
            old,
            HandshakeError::Version {
                theirs: 1,
                ours: WIRE_VERSION
            }
        );
        assert_eq!(
            old.to_string(),
            format!(
                "the peer speaks wire version 1; this build speaks version {WIRE_VERSION} only"
            )
        );
        let mut newer = hello.clone();
        *newer.last_mut().unwrap() = WIRE_VERSION + 1;
        assert!(matches!(
            Hello::decode(&newer),
            Err(HandshakeError::Version { theirs, .. }) if theirs == WIRE_VERSION + 1
        ));
        let mut longer = hello.clone();
        longer.push(0);
        assert!(matches!(
            Hello::decode(&longer),
            Err(HandshakeError::Malformed(_))
        ));
    }
}
