//! Origin stamps: a host's signed claim "I accepted this delta as my number `seq`".

use crate::codec::{Reader, Writer};
use crate::verify::{verify_many, verify_one};
use crate::{DeltaId, Error, HostId, KeyPair, Result, Seq, Signature};

/// Domain separation: a stamp signature can never be mistaken for a delta signature,
/// whose message starts with the format version byte.
const STAMP_DOMAIN: &[u8] = b"hypha-stamp-v1";

/// The encoded length of a stamp: host, seq, signature.
pub const STAMP_LEN: usize = 32 + 8 + 64;

/// A host's signed claim that it first accepted a delta from a client as number `seq` in
/// its origin sequence.
///
/// Stamps travel with the delta but are not part of its id; a delta accepted by two hosts
/// independently carries two stamps, and each host's sequence stays gap-free.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stamp {
    host: HostId,
    seq: Seq,
    signature: Signature,
}

impl Stamp {
    /// Stamps delta `id` as number `seq` of the host whose key is `host_key`.
    pub fn sign(id: DeltaId, seq: Seq, host_key: &KeyPair) -> Stamp {
        let host = host_key.host_id();
        Stamp {
            host,
            seq,
            signature: host_key.sign(&message(id, host, seq)),
        }
    }

    /// Verifies many stamps at once (batch verification), one result per `(stamp, delta
    /// id)` pair, in order.
    pub fn verify_batch(stamps: &[(Stamp, DeltaId)]) -> Vec<Result<()>> {
        let messages: Vec<Vec<u8>> = stamps
            .iter()
            .map(|(s, id)| message(*id, s.host, s.seq))
            .collect();
        let items: Vec<(&[u8; 32], &[u8], &Signature)> = stamps
            .iter()
            .zip(&messages)
            .map(|((s, _), m)| (s.host.as_bytes(), m.as_slice(), &s.signature))
            .collect();
        verify_many(&items)
            .into_iter()
            .zip(stamps)
            .map(|(ok, (s, id))| {
                if s.seq.get() == 0 {
                    Err(Error::Decode("origin sequence numbers start at 1".into()))
                } else if ok {
                    Ok(())
                } else {
                    Err(Error::BadStamp {
                        host: s.host.to_string(),
                        id: id.to_string(),
                    })
                }
            })
            .collect()
    }

    /// A stamp from its parts (decoded or parsed); check it with [`Stamp::verify`].
    pub fn from_parts(host: HostId, seq: Seq, signature: Signature) -> Stamp {
        Stamp {
            host,
            seq,
            signature,
        }
    }

    /// The stamping host.
    pub fn host(&self) -> HostId {
        self.host
    }
    /// The position in the host's origin sequence.
    pub fn seq(&self) -> Seq {
        self.seq
    }
    /// The host's signature.
    pub fn signature(&self) -> Signature {
        self.signature
    }

    /// Checks that the host signed this stamp for delta `id`.
    pub fn verify(&self, id: DeltaId) -> Result<()> {
        if self.seq.get() == 0 {
            return Err(Error::Decode("origin sequence numbers start at 1".into()));
        }
        if verify_one(
            self.host.as_bytes(),
            &message(id, self.host, self.seq),
            &self.signature,
        ) {
            Ok(())
        } else {
            Err(Error::BadStamp {
                host: self.host.to_string(),
                id: id.to_string(),
            })
        }
    }

    /// The fixed-length binary form (see [`STAMP_LEN`]).
    pub fn encode(&self) -> [u8; STAMP_LEN] {
        let mut w = Writer::with_capacity(STAMP_LEN);
        w.raw(self.host.as_bytes());
        w.u64(self.seq.get());
        w.raw(self.signature.as_bytes());
        let mut out = [0u8; STAMP_LEN];
        out.copy_from_slice(&w.finish());
        out
    }

    /// Decodes [`Stamp::encode`]'s form.
    pub fn decode(bytes: &[u8]) -> Result<Stamp> {
        let mut r = Reader::new(bytes);
        let stamp = Stamp {
            host: HostId::from_bytes(r.array("stamp host")?),
            seq: Seq::new(r.u64("stamp seq")?),
            signature: Signature::from_bytes(r.array("stamp signature")?),
        };
        r.expect_end()?;
        Ok(stamp)
    }
}

fn message(id: DeltaId, host: HostId, seq: Seq) -> Vec<u8> {
    let mut w = Writer::with_capacity(STAMP_DOMAIN.len() + 72);
    w.raw(STAMP_DOMAIN);
    w.raw(id.as_bytes());
    w.raw(host.as_bytes());
    w.u64(seq.get());
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_verify_for_their_delta_only_and_round_trip() {
        let host = KeyPair::from_seed([3; 32]);
        let id = DeltaId::from_bytes([1; 32]);
        let stamp = Stamp::sign(id, Seq::new(7), &host);
        assert!(stamp.verify(id).is_ok());
        assert!(matches!(
            stamp.verify(DeltaId::from_bytes([2; 32])),
            Err(Error::BadStamp { .. })
        ));
        let back = Stamp::decode(&stamp.encode()).unwrap();
        assert_eq!(back, stamp);
        assert!(Stamp::decode(&stamp.encode()[..50]).is_err());
    }

    #[test]
    fn a_stamp_with_a_changed_seq_fails() {
        let host = KeyPair::from_seed([3; 32]);
        let id = DeltaId::from_bytes([1; 32]);
        let stamp = Stamp::sign(id, Seq::new(7), &host);
        let forged = Stamp::from_parts(stamp.host(), Seq::new(8), stamp.signature());
        assert!(forged.verify(id).is_err());
    }

    #[test]
    fn batch_verification_finds_exactly_the_bad_stamps() {
        let host = KeyPair::from_seed([3; 32]);
        let mut pairs: Vec<(Stamp, DeltaId)> = (1..=40u8)
            .map(|n| {
                let id = DeltaId::from_bytes([n; 32]);
                (Stamp::sign(id, Seq::new(u64::from(n)), &host), id)
            })
            .collect();
        // Two forgeries: a stamp moved to another delta, and a changed seq.
        pairs[5].1 = DeltaId::from_bytes([99; 32]);
        let s = pairs[30].0;
        pairs[30].0 = Stamp::from_parts(s.host(), Seq::new(1000), s.signature());
        let results = Stamp::verify_batch(&pairs);
        for (i, r) in results.iter().enumerate() {
            assert_eq!(r.is_err(), i == 5 || i == 30, "stamp {i}: {r:?}");
            assert_eq!(r.is_ok(), pairs[i].0.verify(pairs[i].1).is_ok());
        }
    }
}
