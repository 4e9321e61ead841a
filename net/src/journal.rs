//! What the protocol reads from a journal, as a trait: the node's RocksDB store implements
//! it, and so does the simulation's in-memory journal, so the answers to peers' requests
//! (catch-up pages, fetches, who-has counts, reconciliation slices) are the same code in
//! both.

use std::collections::HashSet;

use hypha_delta_store::Store;
use hypha_primitives::{DeltaId, Filter, HostId, Seq, StampedDelta};

use crate::reconcile::Item;
use crate::Coverage;

/// The reads the protocol makes of a journal.
pub trait Journal {
    /// A failed read (the journal's own error).
    type Error: std::fmt::Display;

    /// Every origin stamp held.
    fn coverage(&self) -> Result<Coverage, Self::Error>;

    /// The deltas stamped in `ranges` (per host, `from..=to`, in seq order), at most
    /// `limit` of them, their stamps carrying their proofs; true when the limit cut the
    /// answer short.
    fn page(
        &self,
        ranges: &[(HostId, Seq, Seq)],
        limit: usize,
    ) -> Result<(Vec<StampedDelta>, bool), Self::Error>;

    /// The delta `id` with its stamps (carrying their proofs), if held.
    fn get(&self, id: DeltaId) -> Result<Option<StampedDelta>, Self::Error>;

    /// How many distinct deltas point at `entity`, counting up to `cap`.
    fn entity_count(&self, entity: &str, cap: u64) -> Result<u64, Self::Error>;

    /// Every delta `filter` selects (all of them without one), as reconciliation items.
    fn slice_items(&self, filter: Option<&Filter>) -> Result<Vec<Item>, Self::Error>;
}

impl Journal for Store {
    type Error = hypha_delta_store::Error;

    fn coverage(&self) -> Result<Coverage, Self::Error> {
        let mut coverage = Coverage::new();
        for origin in self.origins() {
            let (host, seq) = origin?;
            coverage.insert(host, seq);
        }
        Ok(coverage)
    }

    fn page(
        &self,
        ranges: &[(HostId, Seq, Seq)],
        limit: usize,
    ) -> Result<(Vec<StampedDelta>, bool), Self::Error> {
        // The ids from the origin index, then the records in one batched lookup.
        let mut ids = Vec::new();
        let mut more = false;
        'ranges: for (host, from, to) in ranges {
            for entry in self.scan_origin_ids(*host, *from, *to) {
                let (_, id) = entry?;
                if ids.len() >= limit {
                    more = true;
                    break 'ranges;
                }
                ids.push(id);
            }
        }
        let mut deltas = Vec::with_capacity(ids.len());
        for (id, stored) in ids.iter().zip(self.get_many(&ids)?) {
            let stored = stored.ok_or_else(|| {
                hypha_delta_store::Error::Corrupt(format!(
                    "origin index names delta {id}, which is not stored"
                ))
            })?;
            deltas.push(StampedDelta {
                delta: stored.delta,
                stamps: stored.stamps,
            });
        }
        self.prove(&mut deltas)?;
        Ok((deltas, more))
    }

    fn get(&self, id: DeltaId) -> Result<Option<StampedDelta>, Self::Error> {
        let Some(stored) = Store::get(self, id)? else {
            return Ok(None);
        };
        let mut deltas = [StampedDelta {
            delta: stored.delta,
            stamps: stored.stamps,
        }];
        self.prove(&mut deltas)?;
        let [delta] = deltas;
        Ok(Some(delta))
    }

    fn entity_count(&self, entity: &str, cap: u64) -> Result<u64, Self::Error> {
        // A delta is filed once per property it sets on the entity: count each once.
        let mut seen = HashSet::new();
        for id in self.scan_entity_ids(entity, None) {
            seen.insert(id?);
            if seen.len() as u64 >= cap {
                break;
            }
        }
        Ok(seen.len() as u64)
    }

    fn slice_items(&self, filter: Option<&Filter>) -> Result<Vec<Item>, Self::Error> {
        let mut items = Vec::new();
        for stored in self.scan_arrival(None) {
            let stored = stored?;
            if filter.is_none_or(|f| f.matches(&stored.delta.filter_document(&stored.stamps))) {
                items.push(Item {
                    time: stored.delta.time().ms(),
                    id: stored.delta.id(),
                });
            }
        }
        Ok(items)
    }
}
