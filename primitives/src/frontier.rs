//! What a journal keeps of a batch stamp's Merkle tree beside the deltas of the batch it
//! holds: the hash of every maximal subtree it holds no delta of. Together with the held
//! deltas' ids (which the journal's origin index lists) that gives the path of any held
//! delta, so a stored delta needs only name its batch, and a batch held whole keeps no
//! hashes at all.

use std::collections::BTreeMap;

use crate::codec::{Reader, Writer};
use crate::merkle::{self, Hash};
use crate::{DeltaId, Error, Result};

/// The hashes of a batch's subtrees without a held leaf, by leaf range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frontier {
    len: usize,
    /// `(lo, hi)` leaf range → the subtree's hash. The ranges are disjoint and cover
    /// exactly the leaves not held.
    outside: BTreeMap<(usize, usize), Hash>,
}

impl Frontier {
    /// A batch of `len` leaves with root `root` of which nothing is held yet.
    pub fn new(len: usize, root: Hash) -> Frontier {
        Frontier {
            len,
            outside: BTreeMap::from([((0, len), root)]),
        }
    }

    /// How many leaves the batch has.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch has no leaves (never, for a frontier built by [`Frontier::new`]
    /// of a batch stamp).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether leaf `index` is held.
    pub fn holds(&self, index: usize) -> bool {
        index < self.len && self.outside_containing(index).is_none()
    }

    /// Whether every leaf is held (no hash is kept).
    pub fn is_complete(&self) -> bool {
        self.outside.is_empty()
    }

    /// How many hashes it keeps.
    pub fn hashes(&self) -> usize {
        self.outside.len()
    }

    /// Records that leaf `index` is now held, given its path, which the caller has checked
    /// against the batch's root. Nothing changes for a leaf already held or a path of the
    /// wrong length.
    pub fn hold(&mut self, index: usize, path: &[Hash]) {
        let Some((lo, hi)) = self.outside_containing(index) else {
            return;
        };
        let ranges = merkle::sibling_ranges(self.len, index);
        if ranges.len() != path.len() {
            return;
        }
        self.outside.remove(&(lo, hi));
        for ((a, b), hash) in ranges.into_iter().zip(path) {
            if lo <= a && b <= hi {
                self.outside.insert((a, b), *hash);
            }
        }
    }

    /// The root, and each held leaf's path, from every held leaf (`(index, id)` by rising
    /// index). `None` when a held leaf is left out; the caller compares the root with the
    /// batch's, which differs when an id is not the one held in its place.
    pub fn open(&self, held: &[(usize, DeltaId)]) -> Option<(Hash, Vec<Vec<Hash>>)> {
        merkle::open_with(self.len, held, |lo, hi| {
            self.outside.get(&(lo, hi)).copied()
        })
    }

    fn outside_containing(&self, index: usize) -> Option<(usize, usize)> {
        self.outside
            .range(..=(index, usize::MAX))
            .next_back()
            .map(|(range, _)| *range)
            .filter(|(lo, hi)| *lo <= index && index < *hi)
    }

    /// The binary form: `len u16 | count u16 | (lo u16 | hi u16 | hash [32])*`.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(4 + self.outside.len() * 36);
        w.u16(self.len as u16);
        w.u16(self.outside.len() as u16);
        for ((lo, hi), hash) in &self.outside {
            w.u16(*lo as u16);
            w.u16(*hi as u16);
            w.raw(hash);
        }
        w.finish()
    }

    /// Decodes [`Frontier::encode`]'s form, checking that the ranges are disjoint and
    /// inside the batch.
    pub fn decode(bytes: &[u8]) -> Result<Frontier> {
        let mut r = Reader::new(bytes);
        let len = usize::from(r.u16("frontier length")?);
        let count = usize::from(r.u16("frontier count")?);
        let mut outside = BTreeMap::new();
        let mut end = 0;
        for _ in 0..count {
            let lo = usize::from(r.u16("frontier range")?);
            let hi = usize::from(r.u16("frontier range")?);
            if lo < end || hi <= lo || hi > len {
                return Err(Error::Decode(format!(
                    "frontier range {lo}..{hi} in a batch of {len}"
                )));
            }
            end = hi;
            outside.insert((lo, hi), r.array("frontier hash")?);
        }
        r.expect_end()?;
        Ok(Frontier { len, outside })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::merkle::sample_ids;

    proptest! {
        #[test]
        fn held_leaves_in_any_order_give_every_path_and_a_whole_batch_keeps_nothing(
            n in 1usize..150,
            order in proptest::collection::vec(any::<prop::sample::Index>(), 1..200),
        ) {
            let ids = sample_ids(n);
            let root = merkle::root(&ids).unwrap();
            let paths = merkle::paths(&ids);
            let mut frontier = Frontier::new(n, root);
            let mut held: Vec<usize> = Vec::new();
            for pick in order {
                let i = pick.index(n);
                frontier.hold(i, &paths[i]);
                if !held.contains(&i) {
                    held.push(i);
                    held.sort_unstable();
                }
                prop_assert!(frontier.holds(i));
                let leaves: Vec<(usize, DeltaId)> = held.iter().map(|&i| (i, ids[i])).collect();
                let (opened, opened_paths) = frontier.open(&leaves).unwrap();
                prop_assert_eq!(opened, root);
                for (k, &i) in held.iter().enumerate() {
                    prop_assert_eq!(&opened_paths[k], &paths[i]);
                }
                // Fewer hashes than a path per held leaf, and the encoding round trips.
                prop_assert!(frontier.hashes() <= held.len() * 8 + 1);
                prop_assert_eq!(Frontier::decode(&frontier.encode()).unwrap(), frontier.clone());
            }
            for (i, path) in paths.iter().enumerate() {
                frontier.hold(i, path);
            }
            prop_assert!(frontier.is_complete());
            let all: Vec<(usize, DeltaId)> = ids.iter().copied().enumerate().collect();
            prop_assert_eq!(frontier.open(&all).unwrap().0, root);
        }
    }

    #[test]
    fn opening_with_other_leaves_than_those_held_fails() {
        let ids = sample_ids(8);
        let paths = merkle::paths(&ids);
        let mut frontier = Frontier::new(8, merkle::root(&ids).unwrap());
        frontier.hold(2, &paths[2]);
        frontier.hold(5, &paths[5]);
        assert!(
            frontier.open(&[(2, ids[2])]).is_none(),
            "a held leaf left out"
        );
        let root = merkle::root(&ids).unwrap();
        let stranger = DeltaId::from_bytes([7; 32]);
        let opened = frontier.open(&[(2, ids[2]), (3, stranger), (5, ids[5])]);
        assert_ne!(
            opened.map(|o| o.0),
            Some(root),
            "another id in a place not held"
        );
        assert_eq!(
            frontier.open(&[(2, ids[2]), (5, ids[5])]).map(|o| o.0),
            Some(root)
        );
        assert!(!frontier.holds(3) && !frontier.holds(8));
    }

    #[test]
    fn overlapping_or_out_of_range_ranges_do_not_decode() {
        let mut w = Writer::default();
        w.u16(8);
        w.u16(2);
        for (lo, hi) in [(0u16, 4u16), (2, 6)] {
            w.u16(lo);
            w.u16(hi);
            w.raw(&[0; 32]);
        }
        assert!(Frontier::decode(&w.finish()).is_err());
        let mut w = Writer::default();
        w.u16(8);
        w.u16(1);
        w.u16(4);
        w.u16(9);
        w.raw(&[0; 32]);
        assert!(Frontier::decode(&w.finish()).is_err());
    }
}
