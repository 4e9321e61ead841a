//! Origin stamps signed per batch: a host's one signature over a run of consecutive seqs it
//! accepted together, "the deltas whose ids, in this order, have Merkle root `root` are my
//! numbers `first..=last`". A delta of the run is then proven by its leaf path
//! ([`BatchStamp::proves`]) and a contiguous part of the run by the hashes around it
//! ([`BatchStamp::proves_run`]), so checking a page of a thousand deltas from one origin
//! costs one or two signature checks instead of a thousand.

use crate::codec::{Reader, Writer};
use crate::merkle::{self, Hash};
use crate::verify::{verify_many, verify_one};
use crate::{DeltaId, Error, HostId, KeyPair, Result, Seq, Signature};

/// Domain separation from delta, per-delta stamp and handshake signatures.
const DOMAIN: &[u8] = b"hypha-stamp-batch-v1";

/// The most seqs one batch stamp covers.
pub const MAX_BATCH: u64 = 1_024;

/// The encoded length of a batch stamp: host, first, last, root, signature.
pub const BATCH_STAMP_LEN: usize = 32 + 8 + 8 + 32 + 64;

/// A host's signature over a run of its consecutive origin seqs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BatchStamp {
    host: HostId,
    first: Seq,
    last: Seq,
    root: Hash,
    signature: Signature,
}

impl BatchStamp {
    /// Stamps `ids`, in order, as the host's numbers `first`, `first + 1`, …; refused for
    /// no ids, more than [`MAX_BATCH`], or a seq 0.
    pub fn sign(ids: &[DeltaId], first: Seq, host_key: &KeyPair) -> Result<BatchStamp> {
        let count = ids.len() as u64;
        if first.get() == 0 {
            return Err(Error::Decode("origin sequence numbers start at 1".into()));
        }
        if count == 0 || count > MAX_BATCH {
            return Err(Error::Decode(format!(
                "a batch stamp covers 1 to {MAX_BATCH} deltas, not {count}"
            )));
        }
        let root = merkle::root(ids).expect("at least one id");
        let host = host_key.host_id();
        let last = Seq::new(first.get() + count - 1);
        let signature = host_key.sign(&message(host, first, last, &root));
        Ok(BatchStamp {
            host,
            first,
            last,
            root,
            signature,
        })
    }

    /// A batch stamp from its parts (parsed); refused for a range that is not 1 to
    /// [`MAX_BATCH`] seqs from 1 on. Check its signature with [`BatchStamp::verify`].
    pub fn from_parts(
        host: HostId,
        first: Seq,
        last: Seq,
        root: Hash,
        signature: Signature,
    ) -> Result<BatchStamp> {
        let stamp = BatchStamp {
            host,
            first,
            last,
            root,
            signature,
        };
        stamp.check_shape()?;
        Ok(stamp)
    }

    /// The host's signature.
    pub fn signature(&self) -> Signature {
        self.signature
    }

    /// The stamping host.
    pub fn host(&self) -> HostId {
        self.host
    }
    /// The first seq covered.
    pub fn first(&self) -> Seq {
        self.first
    }
    /// The last seq covered.
    pub fn last(&self) -> Seq {
        self.last
    }
    /// How many seqs it covers.
    pub fn len(&self) -> u64 {
        self.last.get() - self.first.get() + 1
    }
    /// Never: a batch stamp covers at least one seq (for symmetry with [`BatchStamp::len`]).
    pub fn is_empty(&self) -> bool {
        false
    }
    /// The Merkle root of the covered ids in seq order.
    pub fn root(&self) -> Hash {
        self.root
    }

    /// Checks the host's signature and the shape (a seq range of 1 to [`MAX_BATCH`]
    /// starting at 1 or later). Says nothing of any delta: see [`BatchStamp::proves`].
    pub fn verify(&self) -> Result<()> {
        self.check_shape()?;
        let message = message(self.host, self.first, self.last, &self.root);
        if verify_one(self.host.as_bytes(), &message, &self.signature) {
            Ok(())
        } else {
            Err(self.bad())
        }
    }

    /// Checks many batch stamps at once, one verdict per stamp, the same as
    /// [`BatchStamp::verify`] gives each alone.
    pub fn verify_batch(stamps: &[BatchStamp]) -> Vec<Result<()>> {
        let messages: Vec<Vec<u8>> = stamps
            .iter()
            .map(|s| message(s.host, s.first, s.last, &s.root))
            .collect();
        let items: Vec<(&[u8; 32], &[u8], &Signature)> = stamps
            .iter()
            .zip(&messages)
            .map(|(s, m)| (s.host.as_bytes(), m.as_slice(), &s.signature))
            .collect();
        verify_many(&items)
            .into_iter()
            .zip(stamps)
            .map(|(ok, s)| {
                s.check_shape()?;
                if ok {
                    Ok(())
                } else {
                    Err(s.bad())
                }
            })
            .collect()
    }

    /// Whether `path` proves that `id` is this batch's delta number `seq` (the signature
    /// is checked separately, once per batch, by [`BatchStamp::verify`]).
    pub fn proves(&self, id: DeltaId, seq: Seq, path: &[Hash]) -> bool {
        self.index_of(seq).is_some_and(|index| {
            merkle::root_from_path(&id, index, self.len() as usize, path) == Some(self.root)
        })
    }

    /// Whether `proof` proves that `ids` are this batch's deltas numbered `start`,
    /// `start + 1`, … (see [`merkle::run_proof`]).
    pub fn proves_run(&self, ids: &[DeltaId], start: Seq, proof: &[Hash]) -> bool {
        self.index_of(start).is_some_and(|index| {
            merkle::root_from_run(ids, index, self.len() as usize, proof) == Some(self.root)
        })
    }

    fn index_of(&self, seq: Seq) -> Option<usize> {
        (self.first <= seq && seq <= self.last).then(|| (seq.get() - self.first.get()) as usize)
    }

    fn check_shape(&self) -> Result<()> {
        let (first, last) = (self.first.get(), self.last.get());
        if first == 0 || last < first || last - first >= MAX_BATCH {
            return Err(Error::Decode(format!(
                "a batch stamp over seqs {first} to {last}"
            )));
        }
        Ok(())
    }

    fn bad(&self) -> Error {
        Error::BadStamp {
            host: self.host.to_string(),
            id: format!("batch {}..={}", self.first.get(), self.last.get()),
        }
    }

    /// The fixed-length binary form (see [`BATCH_STAMP_LEN`]).
    pub fn encode(&self) -> [u8; BATCH_STAMP_LEN] {
        let mut w = Writer::with_capacity(BATCH_STAMP_LEN);
        w.raw(self.host.as_bytes());
        w.u64(self.first.get());
        w.u64(self.last.get());
        w.raw(&self.root);
        w.raw(self.signature.as_bytes());
        let mut out = [0u8; BATCH_STAMP_LEN];
        out.copy_from_slice(&w.finish());
        out
    }

    /// Decodes [`BatchStamp::encode`]'s form (the signature is not checked here).
    pub fn decode(bytes: &[u8]) -> Result<BatchStamp> {
        let mut r = Reader::new(bytes);
        let stamp = BatchStamp {
            host: HostId::from_bytes(r.array("batch stamp host")?),
            first: Seq::new(r.u64("batch stamp first")?),
            last: Seq::new(r.u64("batch stamp last")?),
            root: r.array("batch stamp root")?,
            signature: Signature::from_bytes(r.array("batch stamp signature")?),
        };
        r.expect_end()?;
        stamp.check_shape()?;
        Ok(stamp)
    }
}

fn message(host: HostId, first: Seq, last: Seq, root: &Hash) -> Vec<u8> {
    let mut w = Writer::with_capacity(DOMAIN.len() + 80);
    w.raw(DOMAIN);
    w.raw(host.as_bytes());
    w.u64(first.get());
    w.u64(last.get());
    w.raw(root);
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::sample_ids as ids;

    #[test]
    fn a_batch_proves_each_of_its_deltas_in_its_place_and_nothing_else() {
        let key = KeyPair::from_seed([3; 32]);
        let ids = ids(10);
        let stamp = BatchStamp::sign(&ids, Seq::new(41), &key).unwrap();
        assert_eq!(
            (stamp.first(), stamp.last(), stamp.len()),
            (Seq::new(41), Seq::new(50), 10)
        );
        assert!(stamp.verify().is_ok());
        for (i, id) in ids.iter().enumerate() {
            let path = merkle::path(&ids, i).unwrap();
            let seq = Seq::new(41 + i as u64);
            assert!(stamp.proves(*id, seq, &path), "delta {i}");
            assert!(!stamp.proves(*id, seq.next(), &path), "another place");
            assert!(
                !stamp.proves(DeltaId::from_bytes([7; 32]), seq, &path),
                "another id"
            );
        }
        assert!(
            !stamp.proves(ids[0], Seq::new(40), &[]),
            "outside the batch"
        );
        let proof = merkle::run_proof(&ids, 3, 8).unwrap();
        assert!(stamp.proves_run(&ids[3..8], Seq::new(44), &proof));
        assert!(!stamp.proves_run(&ids[3..8], Seq::new(45), &proof));
    }

    #[test]
    fn a_changed_range_root_or_host_fails_and_the_encoding_round_trips() {
        let key = KeyPair::from_seed([3; 32]);
        let stamp = BatchStamp::sign(&ids(4), Seq::new(1), &key).unwrap();
        let back = BatchStamp::decode(&stamp.encode()).unwrap();
        assert_eq!(back, stamp);
        let mut longer = stamp;
        longer.last = Seq::new(5);
        let mut rooted = stamp;
        rooted.root = [9; 32];
        let mut claimed = stamp;
        claimed.host = KeyPair::from_seed([4; 32]).host_id();
        for forged in [longer, rooted, claimed] {
            assert!(
                matches!(forged.verify(), Err(Error::BadStamp { .. })),
                "{forged:?}"
            );
        }
        let verdicts = BatchStamp::verify_batch(&[stamp, longer, back, rooted, claimed]);
        let ok: Vec<bool> = verdicts.iter().map(Result::is_ok).collect();
        assert_eq!(
            ok,
            [true, false, true, false, false],
            "alone and in a batch alike"
        );
        assert!(
            BatchStamp::decode(&stamp.encode()[..100]).is_err(),
            "truncated"
        );
    }

    #[test]
    fn batches_are_one_to_max_batch_seqs_from_one_on() {
        let key = KeyPair::from_seed([3; 32]);
        assert!(BatchStamp::sign(&[], Seq::new(1), &key).is_err());
        assert!(BatchStamp::sign(&ids(2), Seq::new(0), &key).is_err());
        assert!(BatchStamp::sign(&ids(MAX_BATCH as usize + 1), Seq::new(1), &key).is_err());
        let full = BatchStamp::sign(&ids(MAX_BATCH as usize), Seq::new(1), &key).unwrap();
        assert!(full.verify().is_ok());
        // A decoded stamp over too long a range is refused before any signature work.
        let mut bytes = full.encode();
        bytes[40..48].copy_from_slice(&(MAX_BATCH + 1).to_be_bytes());
        assert!(matches!(BatchStamp::decode(&bytes), Err(Error::Decode(_))));
    }
}
