//! Origin stamps: a host's signed claim "I accepted this delta as my number `seq`",
//! signed for the delta alone or, with one signature for many, for a batch of seqs.

use std::collections::HashMap;
use std::sync::Arc;

use crate::codec::{Reader, Writer};
use crate::merkle::{self, Hash};
use crate::verify::verify_many;
use crate::BATCH_STAMP_LEN;
use crate::{BatchStamp, DeltaId, Error, HostId, KeyPair, Result, Seq, Signature};

/// Domain separation: a stamp signature can never be mistaken for a delta signature,
/// whose message starts with the format version byte.
const STAMP_DOMAIN: &[u8] = b"hypha-stamp-v1";

/// The encoded length of a signed stamp in its first form ([`Stamp::decode_v1`]): host,
/// seq, signature.
pub const STAMP_LEN: usize = 32 + 8 + 64;

/// The most hashes a leaf path of a batch of [`crate::MAX_BATCH`] has.
const MAX_PATH: usize = 10;

const TAG_SIGNED: u8 = 0;
const TAG_BATCH: u8 = 1;
const TAG_NAMED: u8 = 2;

/// A host's signed claim that it first accepted a delta from a client as number `seq` in
/// its origin sequence.
///
/// Stamps travel with the delta but are not part of its id; a delta accepted by two hosts
/// independently carries two stamps, and each host's sequence stays gap-free.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Stamp {
    host: HostId,
    seq: Seq,
    proof: StampProof,
}

/// What proves a stamp: the host's signature over the delta alone, or over a batch of its
/// seqs with the delta's place in it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum StampProof {
    /// The host's signature over this delta and seq alone.
    Signed(Signature),
    /// The host's batch stamp over a run of seqs including this one, and the delta's leaf
    /// path in the batch's Merkle tree.
    Batch {
        /// The batch stamp.
        batch: Arc<BatchStamp>,
        /// The delta's leaf path, lowest sibling first ([`merkle::path`]).
        path: Arc<[Hash]>,
    },
    /// A stamp of a batch as a journal keeps it: the batch is named by its first seq and
    /// its proof is kept once for the whole batch, beside the journal's other deltas of it.
    /// It proves nothing by itself; the journal fills in the proof before the stamp travels
    /// (`Store::prove` in `hypha-delta-store`).
    Named {
        /// The first seq of the batch.
        first: Seq,
    },
}

impl Stamp {
    /// Stamps delta `id` alone as number `seq` of the host whose key is `host_key`.
    pub fn sign(id: DeltaId, seq: Seq, host_key: &KeyPair) -> Stamp {
        let host = host_key.host_id();
        Stamp {
            host,
            seq,
            proof: StampProof::Signed(host_key.sign(&message(id, host, seq))),
        }
    }

    /// Stamps `ids`, in order, as numbers `first`, `first + 1`, … of the host, with one
    /// signature over all of them ([`BatchStamp`]); refused for no ids, more than
    /// [`crate::MAX_BATCH`], or a seq 0.
    pub fn sign_batch(ids: &[DeltaId], first: Seq, host_key: &KeyPair) -> Result<Vec<Stamp>> {
        let batch = Arc::new(BatchStamp::sign(ids, first, host_key)?);
        Ok(merkle::paths(ids)
            .into_iter()
            .zip(0..)
            .map(|(path, i)| {
                Stamp::in_batch(Arc::clone(&batch), Seq::new(first.get() + i), path.into())
            })
            .collect())
    }

    /// A signed stamp from its parts (decoded or parsed); check it with [`Stamp::verify`].
    pub fn from_parts(host: HostId, seq: Seq, signature: Signature) -> Stamp {
        Stamp {
            host,
            seq,
            proof: StampProof::Signed(signature),
        }
    }

    /// A stamp by `batch` of number `seq`, proven by the delta's leaf `path` (check it
    /// with [`Stamp::verify`]).
    pub fn in_batch(batch: Arc<BatchStamp>, seq: Seq, path: Arc<[Hash]>) -> Stamp {
        Stamp {
            host: batch.host(),
            seq,
            proof: StampProof::Batch { batch, path },
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
    /// What proves it.
    pub fn proof(&self) -> &StampProof {
        &self.proof
    }
    /// The host's signature of a stamp signed alone (`None` for one of a batch).
    pub fn signature(&self) -> Option<Signature> {
        match &self.proof {
            StampProof::Signed(signature) => Some(*signature),
            _ => None,
        }
    }
    /// The batch stamp of a stamp of a batch that carries its proof.
    pub fn batch(&self) -> Option<&BatchStamp> {
        match &self.proof {
            StampProof::Batch { batch, .. } => Some(batch),
            _ => None,
        }
    }
    /// The first seq of the batch of a stamp of a batch (carrying its proof or not).
    pub fn batch_first(&self) -> Option<Seq> {
        match &self.proof {
            StampProof::Signed(_) => None,
            StampProof::Batch { batch, .. } => Some(batch.first()),
            StampProof::Named { first } => Some(*first),
        }
    }
    /// A stamp of a batch as a journal keeps it ([`StampProof::Named`]).
    pub fn named(host: HostId, seq: Seq, first: Seq) -> Stamp {
        Stamp {
            host,
            seq,
            proof: StampProof::Named { first },
        }
    }
    /// This stamp as a journal keeps it: a stamp of a batch names its batch, a signed
    /// stamp stays as it is.
    pub fn to_named(&self) -> Stamp {
        match self.batch_first() {
            Some(first) => Stamp::named(self.host, self.seq, first),
            None => self.clone(),
        }
    }

    /// Checks that the host stamped delta `id` as number `seq`.
    pub fn verify(&self, id: DeltaId) -> Result<()> {
        Stamp::verify_all(&[(self.clone(), id)], |_| false)
            .verdicts
            .remove(0)
    }

    /// Verifies many stamps at once, one result per `(stamp, delta id)` pair, in order:
    /// signed stamps in one batch verification, and each distinct batch stamp once.
    pub fn verify_batch(stamps: &[(Stamp, DeltaId)]) -> Vec<Result<()>> {
        Stamp::verify_all(stamps, |_| false).verdicts
    }

    /// [`Stamp::verify_batch`], taking the batch stamps `trusted` says were verified
    /// before (a cache of verified batches) as good without checking their signature
    /// again. Leaf paths are always checked.
    pub fn verify_all(
        stamps: &[(Stamp, DeltaId)],
        trusted: impl Fn(&BatchStamp) -> bool,
    ) -> StampVerdicts {
        // Signed stamps: one batch verification.
        let signed: Vec<usize> = (0..stamps.len())
            .filter(|&i| matches!(stamps[i].0.proof, StampProof::Signed(_)))
            .collect();
        let messages: Vec<Vec<u8>> = signed
            .iter()
            .map(|&i| message(stamps[i].1, stamps[i].0.host, stamps[i].0.seq))
            .collect();
        let items: Vec<(&[u8; 32], &[u8], &Signature)> = signed
            .iter()
            .zip(&messages)
            .filter_map(|(&i, m)| match &stamps[i].0.proof {
                StampProof::Signed(sig) => Some((stamps[i].0.host.as_bytes(), m.as_slice(), sig)),
                _ => None,
            })
            .collect();
        let mut verdicts: Vec<Result<()>> = vec![Ok(()); stamps.len()];
        for (&i, ok) in signed.iter().zip(verify_many(&items)) {
            let (stamp, id) = &stamps[i];
            verdicts[i] = if stamp.seq.get() == 0 {
                Err(Error::Decode("origin sequence numbers start at 1".into()))
            } else if ok {
                Ok(())
            } else {
                Err(stamp.bad(*id))
            };
        }
        // Batch stamps: each distinct one not trusted is verified once.
        let mut batches: HashMap<&BatchStamp, bool> = HashMap::new();
        for (stamp, _) in stamps {
            if let StampProof::Batch { batch, .. } = &stamp.proof {
                if trusted(batch) {
                    batches.insert(batch, true);
                } else {
                    batches.entry(batch).or_insert(false);
                }
            }
        }
        let unchecked: Vec<BatchStamp> = batches
            .iter()
            .filter(|(_, trusted)| !**trusted)
            .map(|(b, _)| **b)
            .collect();
        let mut verified = Vec::new();
        for (batch, verdict) in unchecked.iter().zip(BatchStamp::verify_batch(&unchecked)) {
            if verdict.is_ok() {
                batches.insert(batch, true);
                verified.push(*batch);
            }
        }
        for (i, (stamp, id)) in stamps.iter().enumerate() {
            let good = match &stamp.proof {
                StampProof::Signed(_) => continue,
                StampProof::Batch { batch, path } => {
                    batches.get(&**batch).copied().unwrap_or(false)
                        && batch.proves(*id, stamp.seq, path)
                }
                StampProof::Named { .. } => false,
            };
            if !good {
                verdicts[i] = Err(stamp.bad(*id));
            }
        }
        StampVerdicts {
            verdicts,
            signatures: signed.len() + unchecked.len(),
            verified,
        }
    }

    fn bad(&self, id: DeltaId) -> Error {
        Error::BadStamp {
            host: self.host.to_string(),
            id: id.to_string(),
        }
    }

    /// The binary form: `0 | host [32] | seq u64 | signature [64]` for a signed stamp,
    /// `1 | batch stamp | seq u64 | count u8 | hash [32]*` for one of a batch with its
    /// proof, `2 | host [32] | seq u64 | first u64` for one that names its batch.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(1 + STAMP_LEN);
        match &self.proof {
            StampProof::Signed(signature) => {
                w.u8(TAG_SIGNED);
                w.raw(self.host.as_bytes());
                w.u64(self.seq.get());
                w.raw(signature.as_bytes());
            }
            StampProof::Batch { batch, path } => {
                w.u8(TAG_BATCH);
                w.raw(&batch.encode());
                w.u64(self.seq.get());
                w.u8(path.len() as u8);
                for hash in path.iter() {
                    w.raw(hash);
                }
            }
            StampProof::Named { first } => {
                w.u8(TAG_NAMED);
                w.raw(self.host.as_bytes());
                w.u64(self.seq.get());
                w.u64(first.get());
            }
        }
        w.finish()
    }

    /// Decodes [`Stamp::encode`]'s form (nothing is verified here).
    pub fn decode(bytes: &[u8]) -> Result<Stamp> {
        let mut r = Reader::new(bytes);
        let stamp = Stamp::read(&mut r)?;
        r.expect_end()?;
        Ok(stamp)
    }

    /// Reads one [`Stamp::encode`]d stamp from `r`.
    pub fn read(r: &mut Reader<'_>) -> Result<Stamp> {
        match r.u8("stamp tag")? {
            TAG_SIGNED => Ok(Stamp {
                host: HostId::from_bytes(r.array("stamp host")?),
                seq: Seq::new(r.u64("stamp seq")?),
                proof: StampProof::Signed(Signature::from_bytes(r.array("stamp signature")?)),
            }),
            TAG_BATCH => {
                let batch = BatchStamp::decode(r.take(BATCH_STAMP_LEN, "batch stamp")?)?;
                let seq = Seq::new(r.u64("stamp seq")?);
                let count = usize::from(r.u8("path length")?);
                if count > MAX_PATH {
                    return Err(Error::Decode(format!("a leaf path of {count} hashes")));
                }
                let path = (0..count)
                    .map(|_| r.array("path hash"))
                    .collect::<Result<Vec<Hash>>>()?;
                Ok(Stamp::in_batch(Arc::new(batch), seq, path.into()))
            }
            TAG_NAMED => Ok(Stamp::named(
                HostId::from_bytes(r.array("stamp host")?),
                Seq::new(r.u64("stamp seq")?),
                Seq::new(r.u64("batch first seq")?),
            )),
            tag => Err(Error::Decode(format!("unknown stamp tag {tag}"))),
        }
    }

    /// Decodes a signed stamp's first binary form, `host [32] | seq u64 | signature [64]`,
    /// as journal records and messages of the first formats hold it.
    pub fn decode_v1(bytes: &[u8]) -> Result<Stamp> {
        let mut r = Reader::new(bytes);
        let stamp = Stamp::from_parts(
            HostId::from_bytes(r.array("stamp host")?),
            Seq::new(r.u64("stamp seq")?),
            Signature::from_bytes(r.array("stamp signature")?),
        );
        r.expect_end()?;
        Ok(stamp)
    }

    /// The first binary form of a signed stamp ([`Stamp::decode_v1`]); `None` for a stamp
    /// of a batch, which that form cannot hold.
    pub fn encode_v1(&self) -> Option<[u8; STAMP_LEN]> {
        let signature = self.signature()?;
        let mut w = Writer::with_capacity(STAMP_LEN);
        w.raw(self.host.as_bytes());
        w.u64(self.seq.get());
        w.raw(signature.as_bytes());
        let mut out = [0u8; STAMP_LEN];
        out.copy_from_slice(&w.finish());
        Some(out)
    }
}

/// What [`Stamp::verify_all`] found.
#[derive(Debug)]
pub struct StampVerdicts {
    /// One verdict per stamp, in order.
    pub verdicts: Vec<Result<()>>,
    /// How many signatures it checked: one per signed stamp and per batch not trusted.
    pub signatures: usize,
    /// The batch stamps whose signature it checked and found good.
    pub verified: Vec<BatchStamp>,
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
        let forged = Stamp::from_parts(stamp.host(), Seq::new(8), stamp.signature().unwrap());
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
        let s = pairs[30].0.clone();
        pairs[30].0 = Stamp::from_parts(s.host(), Seq::new(1000), s.signature().unwrap());
        let results = Stamp::verify_batch(&pairs);
        for (i, r) in results.iter().enumerate() {
            assert_eq!(r.is_err(), i == 5 || i == 30, "stamp {i}: {r:?}");
            assert_eq!(r.is_ok(), pairs[i].0.verify(pairs[i].1).is_ok());
        }
    }

    #[test]
    fn a_batch_costs_one_signature_and_each_stamp_proves_only_its_delta() {
        let host = KeyPair::from_seed([3; 32]);
        let ids: Vec<DeltaId> = (1..=100u8).map(|n| DeltaId::from_bytes([n; 32])).collect();
        let stamps = Stamp::sign_batch(&ids, Seq::new(11), &host).unwrap();
        assert_eq!(stamps[0].seq(), Seq::new(11));
        assert_eq!(stamps[99].seq(), Seq::new(110));
        let mut pairs: Vec<(Stamp, DeltaId)> = stamps.iter().cloned().zip(ids.clone()).collect();
        let all = Stamp::verify_all(&pairs, |_| false);
        assert!(all.verdicts.iter().all(Result::is_ok));
        assert_eq!(
            (all.signatures, all.verified.len()),
            (1, 1),
            "one check for the batch"
        );
        let trusted = all.verified[0];
        let again = Stamp::verify_all(&pairs, |b| *b == trusted);
        assert_eq!(again.signatures, 0, "a trusted batch is not checked again");
        // A stamp moved to another delta, or to another seq, fails alone.
        pairs[5].1 = ids[6];
        let moved = pairs[7].0.clone();
        let StampProof::Batch { batch, path } = moved.proof().clone() else {
            unreachable!()
        };
        pairs[7].0 = Stamp::in_batch(batch, Seq::new(19), path);
        let verdicts = Stamp::verify_all(&pairs, |b| *b == trusted).verdicts;
        for (i, v) in verdicts.iter().enumerate() {
            assert_eq!(v.is_err(), i == 5 || i == 7, "stamp {i}");
        }
        assert!(stamps[3].verify(ids[3]).is_ok());
        assert!(stamps[3].verify(ids[4]).is_err());
        // A batch with a changed signature fails for every stamp that names it.
        let forged_batch = BatchStamp::decode(&{
            let mut b = trusted.encode();
            b[BATCH_STAMP_LEN - 1] ^= 1;
            b
        })
        .unwrap();
        let StampProof::Batch { path, .. } = stamps[0].proof().clone() else {
            unreachable!()
        };
        let forged = Stamp::in_batch(Arc::new(forged_batch), Seq::new(11), path);
        assert!(matches!(forged.verify(ids[0]), Err(Error::BadStamp { .. })));
    }

    #[test]
    fn both_forms_round_trip_and_bad_bytes_are_errors() {
        let host = KeyPair::from_seed([3; 32]);
        let ids: Vec<DeltaId> = (1..=5u8).map(|n| DeltaId::from_bytes([n; 32])).collect();
        let batch = Stamp::sign_batch(&ids, Seq::new(1), &host).unwrap();
        let signed = Stamp::sign(ids[0], Seq::new(9), &host);
        let named = batch[2].to_named();
        assert_eq!(named.batch_first(), Some(Seq::new(1)));
        assert!(
            named.verify(ids[2]).is_err(),
            "a named stamp proves nothing alone"
        );
        for stamp in [&batch[2], &signed, &named] {
            let bytes = stamp.encode();
            assert_eq!(&Stamp::decode(&bytes).unwrap(), stamp);
            for cut in 0..bytes.len() {
                assert!(Stamp::decode(&bytes[..cut]).is_err(), "cut at {cut}");
            }
        }
        assert_eq!(
            Stamp::decode_v1(&signed.encode_v1().unwrap()).unwrap(),
            signed
        );
        assert!(batch[0].encode_v1().is_none());
        let mut tagged = signed.encode();
        tagged[0] = 7;
        assert!(Stamp::decode(&tagged).is_err());
        assert!(Stamp::sign_batch(&[], Seq::new(1), &host).is_err());
    }

    #[test]
    fn both_forms_have_a_json_form_that_parses_back() {
        let host = KeyPair::from_seed([3; 32]);
        let ids: Vec<DeltaId> = (1..=3u8).map(|n| DeltaId::from_bytes([n; 32])).collect();
        let batch = Stamp::sign_batch(&ids, Seq::new(1), &host).unwrap();
        let signed = Stamp::sign(ids[0], Seq::new(9), &host);
        for stamp in [&batch[1], &signed] {
            assert_eq!(&Stamp::from_json(&stamp.to_json()).unwrap(), stamp);
        }
        let mut both = batch[1].to_json();
        both["signature"] = signed.to_json()["signature"].clone();
        assert!(matches!(Stamp::from_json(&both), Err(Error::Json(_))));
    }
}
