//! A Merkle tree over delta ids in sequence order: the root an origin signs for a batch of
//! consecutive stamps, the path that proves one id is the batch's `index`-th, and the
//! hashes that prove a contiguous run of ids without the rest.
//!
//! The shape is RFC 6962's: a tree over `n` leaves splits at the largest power of two
//! below `n`, so any `n` (not only powers of two) has one tree, and a proof for a leaf or a
//! run of leaves needs at most about `2 log2 n` hashes. Leaves and inner nodes are hashed
//! with BLAKE3 under different prefixes, so a leaf can never pass for an inner node.

use crate::DeltaId;

/// A node of the tree.
pub type Hash = [u8; 32];

const LEAF: &[u8] = b"hypha-merkle-leaf";
const NODE: &[u8] = b"hypha-merkle-node";

fn leaf(id: &DeltaId) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(LEAF);
    h.update(id.as_bytes());
    *h.finalize().as_bytes()
}

fn node(left: &Hash, right: &Hash) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(NODE);
    h.update(left);
    h.update(right);
    *h.finalize().as_bytes()
}

/// Where a tree of `n` leaves (n ≥ 2) splits: the largest power of two below `n`.
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// The root of the tree over `ids`, in order (`None` for no ids).
pub fn root(ids: &[DeltaId]) -> Option<Hash> {
    let leaves: Vec<Hash> = ids.iter().map(leaf).collect();
    (!leaves.is_empty()).then(|| subtree(&leaves))
}

fn subtree(leaves: &[Hash]) -> Hash {
    match leaves {
        [one] => *one,
        _ => {
            let k = split(leaves.len());
            node(&subtree(&leaves[..k]), &subtree(&leaves[k..]))
        }
    }
}

/// The hashes that prove `ids[index]` is the `index`-th of `ids`: the siblings on the way
/// from its leaf to the root, lowest first. `None` when `index` is out of range.
pub fn path(ids: &[DeltaId], index: usize) -> Option<Vec<Hash>> {
    if index >= ids.len() {
        return None;
    }
    let leaves: Vec<Hash> = ids.iter().map(leaf).collect();
    let mut siblings = Vec::new();
    collect_path(&leaves, index, &mut siblings);
    Some(siblings)
}

fn collect_path(leaves: &[Hash], index: usize, siblings: &mut Vec<Hash>) {
    if leaves.len() < 2 {
        return;
    }
    let k = split(leaves.len());
    if index < k {
        collect_path(&leaves[..k], index, siblings);
        siblings.push(subtree(&leaves[k..]));
    } else {
        collect_path(&leaves[k..], index - k, siblings);
        siblings.push(subtree(&leaves[..k]));
    }
}

/// The root a [`path`] leads to from `id` as leaf `index` of `len`; `None` when the path
/// has the wrong length for that place (so a proof cannot be moved to another index).
pub fn root_from_path(id: &DeltaId, index: usize, len: usize, path: &[Hash]) -> Option<Hash> {
    if index >= len {
        return None;
    }
    let mut hashes = path.iter().rev();
    let hash = fold_path(leaf(id), index, len, &mut hashes)?;
    hashes.next().is_none().then_some(hash)
}

/// Walks from the root's split down to the leaf, taking siblings from the top of the path.
fn fold_path<'a>(
    leaf_hash: Hash,
    index: usize,
    len: usize,
    top_down: &mut impl Iterator<Item = &'a Hash>,
) -> Option<Hash> {
    if len == 1 {
        return Some(leaf_hash);
    }
    let k = split(len);
    let sibling = *top_down.next()?;
    if index < k {
        let left = fold_path(leaf_hash, index, k, top_down)?;
        Some(node(&left, &sibling))
    } else {
        let right = fold_path(leaf_hash, index - k, len - k, top_down)?;
        Some(node(&sibling, &right))
    }
}

/// The hashes that prove the run `ids[start..end]` without the other ids: the roots of the
/// largest subtrees outside the run, in the order [`root_from_run`] takes them. Empty when
/// the run is the whole of `ids`; `None` for an empty or out-of-range run.
pub fn run_proof(ids: &[DeltaId], start: usize, end: usize) -> Option<Vec<Hash>> {
    if start >= end || end > ids.len() {
        return None;
    }
    let leaves: Vec<Hash> = ids.iter().map(leaf).collect();
    let mut proof = Vec::new();
    collect_run(&leaves, start, end, &mut proof);
    Some(proof)
}

fn collect_run(leaves: &[Hash], start: usize, end: usize, proof: &mut Vec<Hash>) {
    if start == 0 && end == leaves.len() {
        return;
    }
    if end == 0 || start >= leaves.len() {
        proof.push(subtree(leaves));
        return;
    }
    let k = split(leaves.len());
    collect_run(&leaves[..k], start.min(k), end.min(k), proof);
    collect_run(
        &leaves[k..],
        start.saturating_sub(k),
        end.saturating_sub(k),
        proof,
    );
}

/// The root that the run `ids` (leaves `start..start + ids.len()` of a tree of `len`) and
/// its [`run_proof`] lead to; `None` when the proof does not fit that place.
pub fn root_from_run(ids: &[DeltaId], start: usize, len: usize, proof: &[Hash]) -> Option<Hash> {
    let end = start.checked_add(ids.len())?;
    if ids.is_empty() || end > len {
        return None;
    }
    let leaves: Vec<Hash> = ids.iter().map(leaf).collect();
    let mut proof = proof.iter();
    let root = fold_run(&leaves, start, end, 0, len, &mut proof)?;
    proof.next().is_none().then_some(root)
}

/// The hash of the subtree over leaves `lo..hi`, given the run's leaves (`start..end`) and
/// the proof's hashes for every maximal subtree outside the run, left to right.
fn fold_run<'a>(
    run: &[Hash],
    start: usize,
    end: usize,
    lo: usize,
    hi: usize,
    proof: &mut impl Iterator<Item = &'a Hash>,
) -> Option<Hash> {
    if start <= lo && hi <= end {
        // Wholly inside the run: computed from the run's leaves.
        return Some(subtree(&run[lo - start..hi - start]));
    }
    if hi <= start || end <= lo {
        // Wholly outside: the proof gives it.
        return proof.next().copied();
    }
    let k = split(hi - lo);
    let left = fold_run(run, start, end, lo, lo + k, proof)?;
    let right = fold_run(run, start, end, lo + k, hi, proof)?;
    Some(node(&left, &right))
}

/// Every leaf's [`path`] at once, in one pass over the tree (`paths[i]` proves `ids[i]`).
pub fn paths(ids: &[DeltaId]) -> Vec<Vec<Hash>> {
    let leaves: Vec<Hash> = ids.iter().map(leaf).collect();
    let mut paths = vec![Vec::new(); ids.len()];
    if !leaves.is_empty() {
        fill_paths(&leaves, &mut paths);
    }
    paths
}

fn fill_paths(leaves: &[Hash], paths: &mut [Vec<Hash>]) -> Hash {
    if leaves.len() == 1 {
        return leaves[0];
    }
    let k = split(leaves.len());
    let (left_paths, right_paths) = paths.split_at_mut(k);
    let left = fill_paths(&leaves[..k], left_paths);
    let right = fill_paths(&leaves[k..], right_paths);
    left_paths.iter_mut().for_each(|p| p.push(right));
    right_paths.iter_mut().for_each(|p| p.push(left));
    node(&left, &right)
}

/// The hashes that prove several leaves of a tree of `len` at once: the roots of the
/// maximal subtrees holding none of them, left to right, taken from the leaves' own paths.
/// `known` lists `(index, path)` by rising index; `None` if an index repeats, is out of
/// range or comes out of order, or a path has the wrong length for its place.
pub fn multiproof(len: usize, known: &[(usize, &[Hash])]) -> Option<Vec<Hash>> {
    if known.is_empty() || !sorted_within(known.iter().map(|(i, _)| *i), len) {
        return None;
    }
    let mut proof = Vec::new();
    collect_multi(0, len, 0, known, &mut proof)?;
    Some(proof)
}

fn sorted_within(mut indices: impl Iterator<Item = usize>, len: usize) -> bool {
    let Some(mut last) = indices.next() else {
        return true;
    };
    if last >= len {
        return false;
    }
    for i in indices {
        if i <= last || i >= len {
            return false;
        }
        last = i;
    }
    true
}

/// The sibling at depth `depth + 1` on a leaf's path (paths are lowest first).
fn sibling_at(path: &[Hash], depth: usize) -> Option<Hash> {
    path.len()
        .checked_sub(depth + 1)
        .and_then(|i| path.get(i).copied())
}

fn collect_multi(
    lo: usize,
    hi: usize,
    depth: usize,
    known: &[(usize, &[Hash])],
    proof: &mut Vec<Hash>,
) -> Option<()> {
    if hi - lo == 1 {
        return (known[0].1.len() == depth).then_some(());
    }
    let k = split(hi - lo);
    let at = known.partition_point(|(i, _)| *i < lo + k);
    let (left, right) = known.split_at(at);
    if left.is_empty() {
        proof.push(sibling_at(right[0].1, depth)?);
    } else {
        collect_multi(lo, lo + k, depth + 1, left, proof)?;
    }
    if right.is_empty() {
        proof.push(sibling_at(left[0].1, depth)?);
    } else {
        collect_multi(lo + k, hi, depth + 1, right, proof)?;
    }
    Some(())
}

/// The root that `leaves` (`(index, id)` by rising index, in a tree of `len`) and their
/// [`multiproof`] lead to, with each leaf's path; `None` when the proof does not fit.
pub fn open_multiproof(
    len: usize,
    leaves: &[(usize, DeltaId)],
    proof: &[Hash],
) -> Option<(Hash, Vec<Vec<Hash>>)> {
    let mut proof = proof.iter();
    let opened = open_with(len, leaves, |_, _| proof.next().copied())?;
    proof.next().is_none().then_some(opened)
}

/// The root over `leaves` (`(index, id)` by rising index, in a tree of `len`) with each
/// leaf's path, taking the hash of every maximal subtree without any of them, left to
/// right, from `outside(lo, hi)`. `None` for no leaves, a bad index, or a missing hash.
pub fn open_with(
    len: usize,
    leaves: &[(usize, DeltaId)],
    mut outside: impl FnMut(usize, usize) -> Option<Hash>,
) -> Option<(Hash, Vec<Vec<Hash>>)> {
    if leaves.is_empty() || !sorted_within(leaves.iter().map(|(i, _)| *i), len) {
        return None;
    }
    let mut paths = vec![Vec::new(); leaves.len()];
    let root = open_range(0, len, leaves, &mut paths, &mut outside)?;
    Some((root, paths))
}

fn open_range(
    lo: usize,
    hi: usize,
    leaves: &[(usize, DeltaId)],
    paths: &mut [Vec<Hash>],
    outside: &mut impl FnMut(usize, usize) -> Option<Hash>,
) -> Option<Hash> {
    if leaves.is_empty() {
        return outside(lo, hi);
    }
    if hi - lo == 1 {
        return Some(leaf(&leaves[0].1));
    }
    let k = split(hi - lo);
    let at = leaves.partition_point(|(i, _)| *i < lo + k);
    let (left_paths, right_paths) = paths.split_at_mut(at);
    let left = open_range(lo, lo + k, &leaves[..at], left_paths, outside)?;
    let right = open_range(lo + k, hi, &leaves[at..], right_paths, outside)?;
    left_paths.iter_mut().for_each(|p| p.push(right));
    right_paths.iter_mut().for_each(|p| p.push(left));
    Some(node(&left, &right))
}

/// The sibling subtrees along leaf `index`'s path in a tree of `len`, as `(lo, hi)` leaf
/// ranges, lowest first (the order of [`path`]).
pub fn sibling_ranges(len: usize, index: usize) -> Vec<(usize, usize)> {
    let (mut lo, mut hi) = (0, len);
    let mut ranges = Vec::new();
    while hi - lo > 1 {
        let k = split(hi - lo);
        if index < lo + k {
            ranges.push((lo + k, hi));
            hi = lo + k;
        } else {
            ranges.push((lo, lo + k));
            lo += k;
        }
    }
    ranges.reverse();
    ranges
}

/// `n` distinct ids, for tests.
#[cfg(test)]
pub(crate) fn sample_ids(n: usize) -> Vec<DeltaId> {
    (0..n)
        .map(|i| DeltaId::from_bytes(*blake3::hash(&i.to_be_bytes()).as_bytes()))
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ids(n: usize) -> Vec<DeltaId> {
        sample_ids(n)
    }

    #[test]
    fn a_single_id_is_its_own_leaf_and_needs_no_path() {
        let one = ids(1);
        assert_eq!(root(&one), Some(leaf(&one[0])));
        assert_eq!(path(&one, 0), Some(Vec::new()));
        assert_eq!(root(&[]), None);
        assert_eq!(path(&one, 1), None);
    }

    #[test]
    fn every_leaf_of_every_size_proves_its_place_and_no_other() {
        for n in 1..=40 {
            let ids = ids(n);
            let root = root(&ids).unwrap();
            for i in 0..n {
                let path = path(&ids, i).unwrap();
                assert!(path.len() <= 6, "n {n}: {} hashes", path.len());
                assert_eq!(
                    root_from_path(&ids[i], i, n, &path),
                    Some(root),
                    "n {n} i {i}"
                );
                // The same path does not prove another id, or this id elsewhere.
                let other = ids[(i + 1) % n];
                if n > 1 {
                    assert_ne!(root_from_path(&other, i, n, &path), Some(root));
                    let moved = (i + 1) % n;
                    assert_ne!(root_from_path(&ids[i], moved, n, &path), Some(root));
                }
                // A longer or shorter path is refused, not folded.
                let mut long = path.clone();
                long.push([0; 32]);
                assert_eq!(root_from_path(&ids[i], i, n, &long), None);
            }
        }
    }

    #[test]
    fn the_root_depends_on_the_order_and_the_count() {
        let mut ids = ids(5);
        let first = root(&ids).unwrap();
        ids.swap(1, 2);
        assert_ne!(root(&ids).unwrap(), first);
        assert_ne!(root(&ids[..4]).unwrap(), root(&ids).unwrap());
    }

    #[test]
    fn paths_at_once_are_the_paths_one_by_one() {
        for n in 1..=40 {
            let ids = ids(n);
            let all = paths(&ids);
            for (i, p) in all.iter().enumerate() {
                assert_eq!(Some(p.clone()), path(&ids, i), "n {n} i {i}");
            }
        }
        assert!(paths(&[]).is_empty());
    }

    #[test]
    fn sibling_ranges_name_the_subtrees_a_path_hashes() {
        let ids = ids(13);
        for i in 0..13 {
            let ranges = sibling_ranges(13, i);
            let path = path(&ids, i).unwrap();
            assert_eq!(ranges.len(), path.len());
            for ((lo, hi), hash) in ranges.iter().zip(&path) {
                assert!(!(*lo..*hi).contains(&i));
                assert_eq!(
                    root(&ids[*lo..*hi]).as_ref(),
                    Some(hash),
                    "i {i} {lo}..{hi}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn a_multiproof_proves_any_set_of_leaves_and_gives_their_paths(
            n in 1usize..200,
            picks in proptest::collection::btree_set(0usize..200, 1..30),
        ) {
            let ids = ids(n);
            let root = root(&ids).unwrap();
            let chosen: Vec<usize> = picks.into_iter().filter(|i| *i < n).collect();
            prop_assume!(!chosen.is_empty());
            let all = paths(&ids);
            let known: Vec<(usize, &[Hash])> = chosen.iter().map(|&i| (i, all[i].as_slice())).collect();
            let proof = multiproof(n, &known).unwrap();
            // Never more than one hash per level per leaf.
            prop_assert!(proof.len() <= chosen.len() * 8);
            let leaves: Vec<(usize, DeltaId)> = chosen.iter().map(|&i| (i, ids[i])).collect();
            let (opened, opened_paths) = open_multiproof(n, &leaves, &proof).unwrap();
            prop_assert_eq!(opened, root);
            for (k, &i) in chosen.iter().enumerate() {
                prop_assert_eq!(&opened_paths[k], &all[i]);
            }
            // A changed id, a moved leaf, or a cut proof does not lead to the root.
            let mut changed = leaves.clone();
            changed[0].1 = DeltaId::from_bytes([7; 32]);
            prop_assert_ne!(open_multiproof(n, &changed, &proof).map(|o| o.0), Some(root));
            if !proof.is_empty() {
                prop_assert_eq!(open_multiproof(n, &leaves, &proof[1..]), None);
                let mut longer = proof.clone();
                longer.push([0; 32]);
                prop_assert_eq!(open_multiproof(n, &leaves, &longer), None);
            }
            let mut moved = leaves.clone();
            let last = moved.len() - 1;
            if moved[last].0 + 1 < n {
                moved[last].0 += 1;
                prop_assert_ne!(open_multiproof(n, &moved, &proof).map(|o| o.0), Some(root));
            }
        }

        #[test]
        fn every_run_proves_itself_in_few_hashes(n in 1usize..300, a in 0usize..300, b in 0usize..300) {
            let ids = ids(n);
            let (start, end) = (a.min(b) % n, (a.max(b) % n) + 1);
            prop_assume!(start < end);
            let root = root(&ids).unwrap();
            let proof = run_proof(&ids, start, end).unwrap();
            // Two boundaries, each at most one hash per level.
            prop_assert!(proof.len() <= 2 * 9, "{} hashes", proof.len());
            prop_assert_eq!(root_from_run(&ids[start..end], start, n, &proof), Some(root));
            // Shifted, shortened, or with a changed id, it does not.
            if end < n {
                prop_assert_ne!(root_from_run(&ids[start..end], start + 1, n, &proof), Some(root));
            }
            if end - start > 1 {
                prop_assert_ne!(root_from_run(&ids[start..end - 1], start, n, &proof), Some(root));
            }
            let mut changed = ids[start..end].to_vec();
            changed[0] = DeltaId::from_bytes([7; 32]);
            prop_assert_ne!(root_from_run(&changed, start, n, &proof), Some(root));
        }
    }
}
