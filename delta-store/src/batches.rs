//! Origin stamps of batches in the journal. A batch's stamp and the frontier of its Merkle
//! tree are kept once, in a row of [`CF_BATCHES`]; a stored delta's stamp only names its
//! batch. This module holds the rows a group commit updates, the cache of batch stamps
//! whose signature was checked, and [`Store::prove`], which fills the proofs back into
//! stamps that leave the journal.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use hypha_primitives::merkle::Hash;
use hypha_primitives::StampedDelta;
use hypha_primitives::{BatchStamp, DeltaId, Frontier, HostId, Seq, Stamp, StampProof};

use crate::layout::{self, CF_BATCHES};
use crate::{Error, Result, Store, StoredDelta};

/// How many verified batch stamps the cache remembers before it starts over.
const VERIFIED_CAPACITY: usize = 4_096;
/// How many batches' paths [`Store::prove`] remembers before it starts over.
const PROVEN_CAPACITY: usize = 1_024;

/// Batch stamps whose signature this store checked and found good.
#[derive(Default)]
pub(crate) struct VerifiedBatches(Mutex<HashSet<BatchStamp>>);

impl VerifiedBatches {
    /// Whether `stamp`'s signature was checked before.
    pub(crate) fn contains(&self, stamp: &BatchStamp) -> bool {
        crate::store::lock(&self.0).contains(stamp)
    }

    /// Remembers good batch stamps.
    pub(crate) fn extend(&self, stamps: impl IntoIterator<Item = BatchStamp>) {
        let mut set = crate::store::lock(&self.0);
        for stamp in stamps {
            if set.len() >= VERIFIED_CAPACITY {
                set.clear();
            }
            set.insert(stamp);
        }
    }
}

/// The paths of a batch's held deltas, by index, as [`Store::prove`] found them.
struct Proven {
    stamp: Arc<BatchStamp>,
    paths: HashMap<usize, Arc<[Hash]>>,
}

/// The paths [`Store::prove`] computed, by batch (a delta's path never changes once its
/// batch's root is fixed, so an entry never goes stale; it only misses deltas stored since).
#[derive(Default)]
pub(crate) struct ProvenBatches(Mutex<HashMap<(HostId, Seq), Arc<Proven>>>);

/// The batch rows one group commit touches, loaded on first use and written at its end.
pub(crate) struct Rows {
    rows: HashMap<(HostId, Seq), (BatchStamp, Frontier)>,
}

impl Rows {
    /// No rows touched yet.
    pub(crate) fn new() -> Rows {
        Rows {
            rows: HashMap::new(),
        }
    }

    /// Whether a stamp may be kept as far as its batch goes: a stamp signed alone always;
    /// a stamp of a batch when the journal has no other batch stamp of that host starting
    /// at that seq (a host that signs two batches from one seq equivocates, and the
    /// second is dropped, as a second stamp for one seq is).
    pub(crate) fn admit(&mut self, store: &Store, stamp: &Stamp) -> Result<bool> {
        let StampProof::Batch { batch, .. } = stamp.proof() else {
            return Ok(matches!(stamp.proof(), StampProof::Signed(_)));
        };
        let key = (batch.host(), batch.first());
        if let std::collections::hash_map::Entry::Vacant(slot) = self.rows.entry(key) {
            let row = match store.batch_row(batch.host(), batch.first())? {
                Some(row) => row,
                None => (**batch, Frontier::new(batch.len() as usize, batch.root())),
            };
            slot.insert(row);
        }
        let (held, _) = &self.rows[&key];
        if held != &**batch {
            tracing::warn!(host = %batch.host(), first = %batch.first(),
                "dropping an origin stamp of a second batch from the same seq");
            return Ok(false);
        }
        Ok(true)
    }

    /// Records that a stamp [`Rows::admit`] let in is kept.
    pub(crate) fn hold(&mut self, stamp: &Stamp) {
        if let StampProof::Batch { batch, path } = stamp.proof() {
            if let Some((_, frontier)) = self.rows.get_mut(&(batch.host(), batch.first())) {
                let index = (stamp.seq().get() - batch.first().get()) as usize;
                frontier.hold(index, path);
            }
        }
    }

    /// Every touched row, to be written with the group.
    pub(crate) fn encoded(&self) -> impl Iterator<Item = ([u8; 40], Vec<u8>)> + '_ {
        self.rows.iter().map(|((host, first), (stamp, frontier))| {
            (
                layout::batch_key(*host, *first),
                layout::encode_batch_row(stamp, frontier),
            )
        })
    }
}

impl Store {
    /// The row of `host`'s batch from `first`, if held.
    fn batch_row(&self, host: HostId, first: Seq) -> Result<Option<(BatchStamp, Frontier)>> {
        match self
            .inner
            .db
            .get_pinned_cf(self.cf(CF_BATCHES), layout::batch_key(host, first))?
        {
            Some(bytes) => layout::decode_batch_row(&bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Fills in the proof of every stamp that only names its batch (as stamps read from
    /// the journal do), so the deltas can travel to a peer or into an export and be checked
    /// there. A stamp whose proof cannot be rebuilt is dropped with a warning; the delta
    /// itself still travels.
    pub fn prove(&self, deltas: &mut [StampedDelta]) -> Result<()> {
        self.prove_stamps(
            deltas
                .iter_mut()
                .map(|d| (d.delta.id(), &mut d.stamps))
                .collect(),
        )
    }

    /// [`Store::prove`] for deltas as the journal returns them.
    pub fn prove_stored(&self, deltas: &mut [StoredDelta]) -> Result<()> {
        self.prove_stamps(
            deltas
                .iter_mut()
                .map(|d| (d.delta.id(), &mut d.stamps))
                .collect(),
        )
    }

    fn prove_stamps(&self, mut deltas: Vec<(DeltaId, &mut Vec<Stamp>)>) -> Result<()> {
        let mut wanted: HashMap<(HostId, Seq), HashSet<usize>> = HashMap::new();
        for stamp in deltas.iter().flat_map(|(_, stamps)| stamps.iter()) {
            if let StampProof::Named { first } = stamp.proof() {
                let index = stamp.seq().get().saturating_sub(first.get()) as usize;
                wanted
                    .entry((stamp.host(), *first))
                    .or_default()
                    .insert(index);
            }
        }
        let mut proven: HashMap<(HostId, Seq), Option<Arc<Proven>>> = HashMap::new();
        for (key, indices) in wanted {
            proven.insert(key, self.proven(key, &indices)?);
        }
        for (id, stamps) in deltas.iter_mut() {
            let id = *id;
            stamps.retain_mut(|stamp| {
                let StampProof::Named { first } = stamp.proof() else {
                    return true;
                };
                let index = stamp.seq().get().saturating_sub(first.get()) as usize;
                let found = proven
                    .get(&(stamp.host(), *first))
                    .and_then(Option::as_ref)
                    .and_then(|p| Some((Arc::clone(&p.stamp), Arc::clone(p.paths.get(&index)?))));
                match found {
                    Some((batch, path)) => {
                        *stamp = Stamp::in_batch(batch, stamp.seq(), path);
                        true
                    }
                    None => {
                        tracing::warn!(host = %stamp.host(), seq = %stamp.seq(), delta = %id,
                            "an origin stamp whose batch proof could not be rebuilt is left off");
                        false
                    }
                }
            });
        }
        Ok(())
    }

    /// The paths of a batch's held deltas, from the cache when it has every index wanted,
    /// else rebuilt from the row and the origin index.
    fn proven(&self, key: (HostId, Seq), wanted: &HashSet<usize>) -> Result<Option<Arc<Proven>>> {
        let cache = &self.inner.proven.0;
        if let Some(p) = crate::store::lock(cache).get(&key) {
            if wanted.iter().all(|i| p.paths.contains_key(i)) {
                return Ok(Some(Arc::clone(p)));
            }
        }
        let Some((stamp, frontier)) = self.batch_row(key.0, key.1)? else {
            return Ok(None);
        };
        let mut held: Vec<(usize, DeltaId)> = Vec::new();
        for entry in self.scan_origin_ids(key.0, stamp.first(), stamp.last()) {
            let (seq, id) = entry?;
            let index = (seq.get() - stamp.first().get()) as usize;
            // A place held by a delta of another batch or stamp is outside this tree.
            if frontier.holds(index) {
                held.push((index, id));
            }
        }
        let Some((root, paths)) = frontier.open(&held) else {
            return Err(Error::Corrupt(format!(
                "batch row of {} from {}: the origin index lacks a delta the row holds",
                key.0, key.1
            )));
        };
        if root != stamp.root() {
            return Err(Error::Corrupt(format!(
                "batch row of {} from {}: held deltas do not lead to the signed root",
                key.0, key.1
            )));
        }
        let proven = Arc::new(Proven {
            stamp: Arc::new(stamp),
            paths: held
                .iter()
                .map(|(i, _)| *i)
                .zip(paths.into_iter().map(Arc::from))
                .collect(),
        });
        let mut cache = crate::store::lock(cache);
        if cache.len() >= PROVEN_CAPACITY {
            cache.clear();
        }
        cache.insert(key, Arc::clone(&proven));
        Ok(Some(proven))
    }
}
