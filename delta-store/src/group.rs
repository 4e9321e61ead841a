//! One group commit's write batch: the deltas of every queued job staged with their index
//! entries and stamps, deduplicated against the journal and within the group.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use hypha_primitives::{DeltaId, HostId, KeyPair, Seq, Stamp, MAX_BATCH};
use rayon::prelude::*;
use rocksdb::WriteBatch;

use crate::batches::Rows;
use crate::layout::{
    self, CF_ARRIVAL, CF_AUTHOR, CF_BATCHES, CF_DELTAS, CF_ENTITY, CF_NEGATION, CF_ORIGIN,
};
use crate::store::{CommitState, PutOutcome, MAX_STAMPS};
use crate::verify::Prepared;
use crate::{Arrival, Result, Store, StoredDelta};

/// The write batch one commit builds, with what it has staged so far.
pub(crate) struct Group<'s> {
    store: &'s Store,
    pub(crate) batch: WriteBatch,
    /// Records staged in this group, so duplicates inside the group dedupe too.
    written: HashMap<DeltaId, Arc<StoredDelta>>,
    /// Records already in the journal for the group's ids, read by `preload`.
    stored: HashMap<DeltaId, Arc<StoredDelta>>,
    /// Origin places claimed in this group.
    claimed: HashMap<(HostId, Seq), DeltaId>,
    /// The journal's holder of each origin place the group's stamps claim, read by
    /// `preload` (`None`: free).
    origin: HashMap<(HostId, Seq), Option<DeltaId>>,
    /// This host's stamps for the group's local writes, signed per batch ahead of staging.
    presigned: HashMap<(DeltaId, Seq), Stamp>,
    /// The batch rows the group's stamps touch.
    rows: Rows,
    /// Newly stored deltas, in arrival order, for the live feed.
    pub(crate) fresh: Vec<Arc<StoredDelta>>,
}

impl<'s> Group<'s> {
    pub(crate) fn new(store: &'s Store) -> Self {
        Self {
            store,
            batch: WriteBatch::default(),
            written: HashMap::new(),
            stored: HashMap::new(),
            claimed: HashMap::new(),
            origin: HashMap::new(),
            presigned: HashMap::new(),
            rows: Rows::new(),
            fresh: Vec::new(),
        }
    }

    /// The write batch with the touched batch rows, and the newly stored deltas.
    pub(crate) fn finish(mut self) -> (WriteBatch, Vec<Arc<StoredDelta>>) {
        let rows: Vec<([u8; 40], Vec<u8>)> = self.rows.encoded().collect();
        for (key, row) in rows {
            self.put(CF_BATCHES, key, row);
        }
        (self.batch, self.fresh)
    }

    fn put(&mut self, cf: &str, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.batch.put_cf(self.store.cf(cf), key, value);
    }

    /// Looks up, in one batched read each, which of the group's deltas are already stored
    /// and which delta holds each origin place its stamps claim: one lookup per key, made
    /// in one call, costs far less than a point read per stamp while staging.
    pub(crate) fn preload<'a>(&mut self, items: impl Iterator<Item = &'a Prepared>) -> Result<()> {
        let items: Vec<&Prepared> = items.collect();
        let ids: Vec<DeltaId> = items.iter().map(|item| item.delta.id()).collect();
        let found = self.store.inner.db.batched_multi_get_cf(
            self.store.cf(CF_DELTAS),
            ids.iter().map(|id| id.as_bytes()),
            false,
        );
        for (id, value) in ids.into_iter().zip(found) {
            if let Some(bytes) = value? {
                self.stored
                    .insert(id, Arc::new(layout::decode_record(&bytes)?));
            }
        }
        let mut places: Vec<(HostId, Seq)> = items
            .iter()
            .flat_map(|item| item.stamps.iter().map(|s| (s.host(), s.seq())))
            .collect();
        places.sort_unstable();
        places.dedup();
        let keys: Vec<[u8; 40]> = places
            .iter()
            .map(|(host, seq)| layout::origin_key(*host, *seq))
            .collect();
        let found =
            self.store
                .inner
                .db
                .batched_multi_get_cf(self.store.cf(CF_ORIGIN), keys.iter(), true);
        for (place, value) in places.into_iter().zip(found) {
            let holder = match value? {
                Some(bytes) => Some(layout::id_at_end(&bytes)?),
                None => None,
            };
            self.origin.insert(place, holder);
        }
        Ok(())
    }

    /// Signs the origin stamps staging will give the group's local writes: one batch stamp
    /// per run of up to [`MAX_BATCH`] consecutive seqs, in parallel. It predicts the seqs
    /// staging assigns (same order, same rules); a prediction that does not hold (an
    /// equivocating stamp in the input, say) is signed again, alone, in staging. One
    /// signature per local write was the largest cost of ingest through the HTTP API.
    pub(crate) fn presign(
        &mut self,
        state: &mut CommitState,
        work: &[(Option<&KeyPair>, &[Prepared])],
    ) -> Result<()> {
        let mut planned: Vec<(DeltaId, Seq, &KeyPair)> = Vec::new();
        let mut seen: HashSet<DeltaId> = HashSet::new();
        let mut next: HashMap<HostId, Seq> = HashMap::new();
        for (host, items) in work {
            let Some(host) = host else { continue };
            let host_id = host.host_id();
            for item in items.iter() {
                let id = item.delta.id();
                let held = self.stored.contains_key(&id) || !seen.insert(id);
                if held || item.stamps.iter().any(|s| s.host() == host_id) {
                    continue;
                }
                let seq = match next.get(&host_id) {
                    Some(last) => last.next(),
                    None => self
                        .store
                        .last_seq(state, host_id)?
                        .map_or(Seq::FIRST, Seq::next),
                };
                next.insert(host_id, seq);
                planned.push((id, seq, host));
            }
        }
        // Runs of consecutive seqs of one host, at most MAX_BATCH long.
        let mut runs: Vec<&[(DeltaId, Seq, &KeyPair)]> = Vec::new();
        let mut start = 0;
        for i in 1..=planned.len() {
            let cut = i == planned.len()
                || i - start == MAX_BATCH as usize
                || planned[i].2.host_id() != planned[i - 1].2.host_id()
                || planned[i].1 != planned[i - 1].1.next();
            if cut {
                runs.push(&planned[start..i]);
                start = i;
            }
        }
        let signed: Vec<Vec<((DeltaId, Seq), Stamp)>> = runs
            .par_iter()
            .map(|run| {
                let ids: Vec<DeltaId> = run.iter().map(|(id, _, _)| *id).collect();
                let stamps = Stamp::sign_batch(&ids, run[0].1, run[0].2)?;
                Ok(run
                    .iter()
                    .map(|(id, seq, _)| (*id, *seq))
                    .zip(stamps)
                    .collect())
            })
            .collect::<hypha_primitives::Result<_>>()
            .map_err(|e| crate::Error::Corrupt(format!("signing a batch of stamps: {e}")))?;
        self.presigned = signed.into_iter().flatten().collect();
        Ok(())
    }

    /// Adds one delta (or, for one already held, its new stamps) to the batch.
    pub(crate) fn stage(
        &mut self,
        state: &mut CommitState,
        item: Prepared,
        stamp_with: Option<&KeyPair>,
    ) -> Result<PutOutcome> {
        let id = item.delta.id();
        let existing = self
            .written
            .get(&id)
            .or_else(|| self.stored.get(&id))
            .map(|s| StoredDelta::clone(s));
        if let Some(stored) = existing {
            return self.add_stamps(state, stored, &item.stamps, stamp_with);
        }

        let arrival = Arrival::new(state.next_arrival);
        state.next_arrival += 1;
        let mut stamps = Vec::with_capacity(item.stamps.len() + 1);
        for stamp in &item.stamps {
            if !stamps.iter().any(|s: &Stamp| s.host() == stamp.host())
                && self.rows.admit(self.store, stamp)?
                && self
                    .store
                    .claim_stamp(state, &mut self.claimed, &self.origin, stamp, id)?
            {
                self.rows.hold(stamp);
                stamps.push(stamp.clone());
            }
        }
        if let Some(host) = stamp_with {
            let host_id = host.host_id();
            if !stamps.iter().any(|s| s.host() == host_id) {
                let seq = self
                    .store
                    .last_seq(state, host_id)?
                    .map_or(Seq::FIRST, Seq::next);
                state.last_seq.insert(host_id, seq);
                self.claimed.insert((host_id, seq), id);
                let mut stamp = self
                    .presigned
                    .remove(&(id, seq))
                    .unwrap_or_else(|| Stamp::sign(id, seq, host));
                if !self.rows.admit(self.store, &stamp)? {
                    stamp = Stamp::sign(id, seq, host);
                }
                self.rows.hold(&stamp);
                stamps.push(stamp);
            }
        }
        let delta = item.delta;
        self.put(
            CF_DELTAS,
            id.as_bytes(),
            layout::encode_record(arrival, &stamps, &delta),
        );
        self.put(CF_ARRIVAL, layout::arrival_key(arrival), id.as_bytes());
        self.put(
            CF_AUTHOR,
            layout::author_key(delta.author(), arrival),
            id.as_bytes(),
        );
        for stamp in &stamps {
            self.put(
                CF_ORIGIN,
                layout::origin_key(stamp.host(), stamp.seq()),
                id.as_bytes(),
            );
        }
        for (entity, context) in delta.target_entities() {
            self.put(
                CF_ENTITY,
                layout::entity_key(entity.as_str(), context.unwrap_or(""), id),
                [],
            );
        }
        for negated in delta.negated_ids() {
            self.put(CF_NEGATION, layout::negation_key(negated, id), []);
        }
        let stored = Arc::new(StoredDelta {
            arrival,
            delta,
            stamps,
        });
        let local_seq = local_seq(&stored.stamps, stamp_with);
        self.written.insert(id, Arc::clone(&stored));
        self.fresh.push(stored);
        Ok(PutOutcome::new(arrival, true, local_seq))
    }

    /// A delta already held gains the stamps of hosts it had none from.
    fn add_stamps(
        &mut self,
        state: &mut CommitState,
        mut stored: StoredDelta,
        stamps: &[Stamp],
        stamp_with: Option<&KeyPair>,
    ) -> Result<PutOutcome> {
        let id = stored.delta.id();
        let mut changed = false;
        for stamp in stamps {
            if stored.stamps.iter().any(|s| s.host() == stamp.host()) {
                continue;
            }
            if stored.stamps.len() >= MAX_STAMPS {
                tracing::warn!(delta = %id, "dropping origin stamps beyond the limit of {MAX_STAMPS}");
                break;
            }
            if self.rows.admit(self.store, stamp)?
                && self
                    .store
                    .claim_stamp(state, &mut self.claimed, &self.origin, stamp, id)?
            {
                self.put(
                    CF_ORIGIN,
                    layout::origin_key(stamp.host(), stamp.seq()),
                    id.as_bytes(),
                );
                self.rows.hold(stamp);
                stored.stamps.push(stamp.clone());
                changed = true;
            }
        }
        let arrival = stored.arrival;
        let local_seq = local_seq(&stored.stamps, stamp_with);
        if changed {
            self.put(
                CF_DELTAS,
                id.as_bytes(),
                layout::encode_record(arrival, &stored.stamps, &stored.delta),
            );
            self.written.insert(id, Arc::new(stored));
        }
        Ok(PutOutcome::new(arrival, false, local_seq))
    }
}

/// The seq of the stamp `stamp_with`'s host put on a delta, if it stamps and did.
fn local_seq(stamps: &[Stamp], stamp_with: Option<&KeyPair>) -> Option<Seq> {
    let host = stamp_with?.host_id();
    stamps.iter().find(|s| s.host() == host).map(Stamp::seq)
}
