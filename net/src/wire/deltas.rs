//! The deltas of a message with their origin stamps. A stamp signed alone travels whole.
//! The stamps of a batch travel as a reference into a table that carries each batch stamp
//! once, with one Merkle multiproof for all of that batch's deltas in the message
//! ([`merkle::multiproof`]): a page of a whole batch needs no hash at all, a run of it two
//! or so per level cut, and a lone delta its leaf path.
//!
//! ```text
//! deltas  = batches | count u32 | (length u32 | delta bytes | stamp count u8 | stamp*)*
//! batches = count u16 | (batch stamp [136] | hash count u16 | hash [32]*)*
//! stamp   = 0 | host [32] | seq u64 | signature [64]     signed alone
//!         | 1 | batch u16 | place u16                    the batch's seq first + place
//! ```
//!
//! Decoding checks every multiproof against its batch's root, so a forged, truncated or
//! mismatched proof is [`WireError::Proof`]; the batch signature is left to the journal,
//! which checks each batch once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use hypha_primitives::merkle::{self, Hash};
use hypha_primitives::{
    BatchStamp, Delta, DeltaId, HostId, Seq, Signature, Stamp, StampProof, StampedDelta,
    BATCH_STAMP_LEN,
};

use super::{put_u32, Reader, WireError};

const TAG_SIGNED: u8 = 0;
const TAG_BATCH: u8 = 1;

/// A batch of the table, with the places of its deltas in the message and their paths.
struct TableEntry<'a> {
    stamp: &'a BatchStamp,
    paths: BTreeMap<usize, &'a [Hash]>,
    proof: Option<Vec<Hash>>,
}

/// Writes the deltas section. Stamps that cannot travel (one that only names its batch,
/// or whose path does not fit its place) are left off with a warning: the journal fills in
/// proofs before deltas leave it, so this does not happen to deltas read from it.
pub(super) fn put_deltas(out: &mut Vec<u8>, deltas: &[StampedDelta]) {
    let mut table: Vec<TableEntry<'_>> = Vec::new();
    let mut index: HashMap<&BatchStamp, usize> = HashMap::new();
    for stamp in deltas.iter().flat_map(|d| &d.stamps) {
        if let (StampProof::Batch { batch, path }, Some(place)) = (stamp.proof(), place(stamp)) {
            let i = *index.entry(batch).or_insert_with(|| {
                table.push(TableEntry {
                    stamp: batch,
                    paths: BTreeMap::new(),
                    proof: None,
                });
                table.len() - 1
            });
            table[i].paths.entry(place).or_insert(path);
        }
    }
    for entry in &mut table {
        let known: Vec<(usize, &[Hash])> = entry.paths.iter().map(|(p, h)| (*p, *h)).collect();
        entry.proof = merkle::multiproof(entry.stamp.len() as usize, &known);
    }
    // Only batches whose proof could be made go in the table.
    let mut kept: HashMap<&BatchStamp, u16> = HashMap::new();
    let usable: Vec<&TableEntry<'_>> = table.iter().filter(|e| e.proof.is_some()).collect();
    out.extend_from_slice(&(usable.len() as u16).to_be_bytes());
    for (i, entry) in usable.iter().enumerate() {
        kept.insert(entry.stamp, i as u16);
        out.extend_from_slice(&entry.stamp.encode());
        let proof = entry.proof.as_deref().unwrap_or_default();
        out.extend_from_slice(&(proof.len() as u16).to_be_bytes());
        for hash in proof {
            out.extend_from_slice(hash);
        }
    }
    put_u32(out, deltas.len());
    for d in deltas {
        let bytes = d.delta.encode();
        put_u32(out, bytes.len());
        out.extend_from_slice(&bytes);
        let travelling: Vec<&Stamp> = d
            .stamps
            .iter()
            .filter(|s| match s.proof() {
                StampProof::Signed(_) => true,
                StampProof::Batch { batch, .. } => kept.contains_key(&**batch),
                StampProof::Named { .. } => false,
            })
            .take(u8::MAX as usize)
            .collect();
        if travelling.len() < d.stamps.len() {
            tracing::warn!(delta = %d.delta.id(), "origin stamps without a proof are left off a message");
        }
        out.push(travelling.len() as u8);
        for stamp in travelling {
            match stamp.proof() {
                StampProof::Signed(signature) => {
                    out.push(TAG_SIGNED);
                    out.extend_from_slice(stamp.host().as_bytes());
                    out.extend_from_slice(&stamp.seq().get().to_be_bytes());
                    out.extend_from_slice(signature.as_bytes());
                }
                StampProof::Batch { batch, .. } => {
                    out.push(TAG_BATCH);
                    out.extend_from_slice(&kept[&**batch].to_be_bytes());
                    let place = place(stamp).unwrap_or_default() as u16;
                    out.extend_from_slice(&place.to_be_bytes());
                }
                StampProof::Named { .. } => {}
            }
        }
    }
}

/// A stamp's place in its batch, if its seq is inside it.
fn place(stamp: &Stamp) -> Option<usize> {
    let batch = stamp.batch()?;
    (batch.first() <= stamp.seq() && stamp.seq() <= batch.last())
        .then(|| (stamp.seq().get() - batch.first().get()) as usize)
}

/// A stamp being decoded: whole, or waiting for its batch's proof to be opened.
enum Pending {
    Whole(Stamp),
    InBatch { batch: usize, place: usize },
}

impl<'a> Reader<'a> {
    /// Reads the deltas section, opening each batch's proof.
    pub(super) fn deltas(&mut self) -> Result<Vec<StampedDelta>, WireError> {
        let batches = usize::from(self.u16()?);
        if batches.saturating_mul(BATCH_STAMP_LEN + 2) > self.bytes.len() - self.at {
            return Err(WireError::Malformed(format!(
                "{batches} batch stamps cannot fit"
            )));
        }
        let mut table: Vec<(Arc<BatchStamp>, Vec<Hash>)> = Vec::with_capacity(batches);
        for _ in 0..batches {
            let stamp = BatchStamp::decode(self.take(BATCH_STAMP_LEN)?)?;
            let hashes = usize::from(self.u16()?);
            let proof = (0..hashes)
                .map(|_| self.array())
                .collect::<Result<Vec<Hash>, _>>()?;
            table.push((Arc::new(stamp), proof));
        }
        // A delta takes at least a length, a minimal body, a signature and a stamp count.
        let n = self.count(4 + 64 + 1)?;
        let mut deltas: Vec<(Delta, Vec<Pending>)> = Vec::with_capacity(n);
        let mut leaves: Vec<Vec<(usize, DeltaId)>> = vec![Vec::new(); table.len()];
        for _ in 0..n {
            let len = self.count(1)?;
            let delta = Delta::decode(self.take(len)?)?;
            let count = usize::from(self.u8()?);
            let mut stamps = Vec::with_capacity(count.min(self.bytes.len() - self.at));
            for _ in 0..count {
                stamps.push(match self.u8()? {
                    TAG_SIGNED => Pending::Whole(Stamp::from_parts(
                        HostId::from_bytes(self.array()?),
                        Seq::new(self.u64()?),
                        Signature::from_bytes(self.array()?),
                    )),
                    TAG_BATCH => {
                        let batch = usize::from(self.u16()?);
                        let place = usize::from(self.u16()?);
                        let stamp = table.get(batch).map(|(s, _)| s).ok_or_else(|| {
                            WireError::Malformed(format!("batch {batch} of {}", table.len()))
                        })?;
                        if place as u64 >= stamp.len() {
                            return Err(WireError::Malformed(format!(
                                "place {place} in a batch of {}",
                                stamp.len()
                            )));
                        }
                        leaves[batch].push((place, delta.id()));
                        Pending::InBatch { batch, place }
                    }
                    tag => return Err(WireError::Malformed(format!("stamp tag {tag}"))),
                });
            }
            deltas.push((delta, stamps));
        }
        let paths = open(&table, leaves)?;
        Ok(deltas
            .into_iter()
            .map(|(delta, stamps)| StampedDelta {
                delta,
                stamps: stamps
                    .into_iter()
                    .map(|s| match s {
                        Pending::Whole(stamp) => stamp,
                        Pending::InBatch { batch, place } => {
                            let stamp = Arc::clone(&table[batch].0);
                            let seq = Seq::new(stamp.first().get() + place as u64);
                            Stamp::in_batch(stamp, seq, Arc::clone(&paths[batch][&place]))
                        }
                    })
                    .collect(),
            })
            .collect())
    }
}

/// The paths of one batch's deltas in a message, by place.
type Paths = HashMap<usize, Arc<[Hash]>>;

/// Opens each batch's multiproof over its deltas in the message: the path of every place.
fn open(
    table: &[(Arc<BatchStamp>, Vec<Hash>)],
    leaves: Vec<Vec<(usize, DeltaId)>>,
) -> Result<Vec<Paths>, WireError> {
    table
        .iter()
        .zip(leaves)
        .map(|((stamp, proof), mut leaves)| {
            let bad = |why: &str| {
                WireError::Proof(format!(
                    "batch of {} from seq {}: {why}",
                    stamp.host(),
                    stamp.first()
                ))
            };
            leaves.sort_unstable();
            leaves.dedup();
            if leaves.is_empty() {
                return Err(bad("no delta of the message names it"));
            }
            if leaves.windows(2).any(|w| w[0].0 == w[1].0) {
                return Err(bad("two deltas in one place"));
            }
            let (root, paths) = merkle::open_multiproof(stamp.len() as usize, &leaves, proof)
                .ok_or_else(|| bad("the proof does not fit the places of its deltas"))?;
            if root != stamp.root() {
                return Err(bad("the deltas and proof do not lead to the signed root"));
            }
            Ok(leaves
                .iter()
                .map(|(place, _)| *place)
                .zip(paths.into_iter().map(Arc::from))
                .collect())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use hypha_primitives::{DeltaBuilder, Hlc, KeyPair, Pointer};

    use super::*;
    use crate::wire::{decode, encode, DEFAULT_MAX_MESSAGE_BYTES};
    use crate::Message;

    fn batch(n: u64) -> Vec<StampedDelta> {
        let author = KeyPair::from_seed([1; 32]);
        let deltas: Vec<Delta> = (1..=n)
            .map(|i| {
                DeltaBuilder::new(Hlc::new(i, 0))
                    .pointer(Pointer::entity("subject", format!("e{i}"), "p"))
                    .pointer(Pointer::value("p", i as i64))
                    .sign(&author)
                    .unwrap()
            })
            .collect();
        let ids: Vec<DeltaId> = deltas.iter().map(Delta::id).collect();
        let stamps = Stamp::sign_batch(&ids, Seq::new(100), &KeyPair::from_seed([60; 32])).unwrap();
        deltas
            .into_iter()
            .zip(stamps)
            .map(|(delta, stamp)| StampedDelta {
                delta,
                stamps: vec![stamp],
            })
            .collect()
    }

    fn round_trip(deltas: &[StampedDelta]) -> Vec<StampedDelta> {
        let bytes = encode(&Message::Deltas(deltas.to_vec()));
        match decode(&bytes, DEFAULT_MAX_MESSAGE_BYTES).unwrap() {
            Message::Deltas(back) => back,
            other => panic!("{other:?}"),
        }
    }

    /// The bytes a message of `deltas` spends beyond the deltas' own encodings.
    fn overhead(deltas: &[StampedDelta]) -> usize {
        let bytes = encode(&Message::Deltas(deltas.to_vec()));
        bytes.len() - deltas.iter().map(|d| d.delta.encoded_len()).sum::<usize>()
    }

    #[test]
    fn a_whole_batch_carries_its_stamp_once_and_no_hash() {
        let deltas = batch(1_000);
        let back = round_trip(&deltas);
        assert_eq!(back, deltas, "every path rebuilt from the ids alone");
        for d in &back {
            d.stamps[0].verify(d.delta.id()).unwrap();
        }
        // Header, table (count, stamp, hash count), delta count; then per delta a length,
        // a stamp count and a 5-byte stamp.
        assert_eq!(
            overhead(&deltas),
            2 + 2 + BATCH_STAMP_LEN + 2 + 4 + 1_000 * (4 + 1 + 5)
        );
    }

    #[test]
    fn a_run_or_a_lone_delta_carries_few_hashes_and_still_proves() {
        let deltas = batch(1_000);
        let run = &deltas[300..700];
        assert_eq!(round_trip(run), run);
        let run_hashes = (overhead(run) - (2 + 2 + BATCH_STAMP_LEN + 2 + 4 + 400 * 10)) / 32;
        assert!(run_hashes <= 2 * 10, "{run_hashes} hashes for a run");
        let lone = &deltas[517..518];
        let back = round_trip(lone);
        assert_eq!(back, lone);
        back[0].stamps[0].verify(back[0].delta.id()).unwrap();
        let scattered: Vec<StampedDelta> = deltas.iter().step_by(97).cloned().collect();
        assert_eq!(round_trip(&scattered), scattered);
    }

    #[test]
    fn a_forged_truncated_or_mismatched_proof_is_a_typed_error() {
        let deltas = batch(8);
        let lone = encode(&Message::Deltas(deltas[2..3].to_vec()));
        // The first proof hash sits after the header, the table count, the stamp and the
        // hash count.
        let first_hash = 2 + 2 + BATCH_STAMP_LEN + 2;
        let mut forged = lone.clone();
        forged[first_hash] ^= 1;
        assert!(matches!(
            decode(&forged, DEFAULT_MAX_MESSAGE_BYTES),
            Err(WireError::Proof(_))
        ));
        // One hash fewer: the count says so and the rest shifts.
        let mut cut = lone.clone();
        cut[first_hash - 1] -= 1;
        cut.drain(first_hash..first_hash + 32);
        assert!(matches!(
            decode(&cut, DEFAULT_MAX_MESSAGE_BYTES),
            Err(WireError::Proof(_))
        ));
        // The right proof for another place.
        let mut moved = lone.clone();
        let place_at = moved.len() - 2;
        moved[place_at + 1] ^= 1;
        assert!(matches!(
            decode(&moved, DEFAULT_MAX_MESSAGE_BYTES),
            Err(WireError::Proof(_))
        ));
        // Two deltas swapped between their places.
        let mut swapped = deltas[..2].to_vec();
        let (a, b) = (swapped[0].stamps[0].clone(), swapped[1].stamps[0].clone());
        swapped[0].stamps[0] = b;
        swapped[1].stamps[0] = a;
        let bytes = encode(&Message::Deltas(swapped));
        assert!(matches!(
            decode(&bytes, DEFAULT_MAX_MESSAGE_BYTES),
            Err(WireError::Proof(_))
        ));
        // A stamp naming a batch the table does not have, or a place outside it.
        let mut ghost = lone.clone();
        let batch_at = ghost.len() - 4;
        ghost[batch_at + 1] = 1;
        assert!(matches!(
            decode(&ghost, DEFAULT_MAX_MESSAGE_BYTES),
            Err(WireError::Malformed(_))
        ));
        let mut outside = lone;
        let place_at = outside.len() - 2;
        outside[place_at + 1] = 8;
        assert!(matches!(
            decode(&outside, DEFAULT_MAX_MESSAGE_BYTES),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn a_stamp_that_only_names_its_batch_is_left_off() {
        let mut deltas = batch(2);
        deltas[0].stamps[0] = deltas[0].stamps[0].to_named();
        let back = round_trip(&deltas);
        assert!(back[0].stamps.is_empty());
        assert_eq!(back[1], deltas[1]);
    }
}
