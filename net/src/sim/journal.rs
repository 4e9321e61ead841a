//! The simulation's journal: the deltas a node holds, in memory, with the reads the
//! protocol makes of a journal ([`Journal`]) answered the way the store answers them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;

use hypha_primitives::{DeltaId, Filter, HostId, Seq, StampedDelta};

use crate::reconcile::Item;
use crate::{Coverage, Journal};

/// Deltas held in memory, by id and by origin stamp, with their arrival order.
#[derive(Debug, Default)]
pub(super) struct MemJournal {
    deltas: HashMap<DeltaId, StampedDelta>,
    /// Each delta's filter document, made once: slices are read often and the document
    /// is slow to build in an unoptimized build.
    documents: HashMap<DeltaId, serde_json::Value>,
    by_origin: BTreeMap<(HostId, Seq), DeltaId>,
    arrivals: Vec<DeltaId>,
}

impl MemJournal {
    /// Stores a delta; false if it was already held.
    pub(super) fn put(&mut self, stamped: StampedDelta) -> bool {
        let id = stamped.delta.id();
        if self.deltas.contains_key(&id) {
            return false;
        }
        for stamp in &stamped.stamps {
            self.by_origin.insert((stamp.host(), stamp.seq()), id);
        }
        let document = stamped.delta.filter_document(&stamped.stamps);
        self.documents.insert(id, document);
        self.deltas.insert(id, stamped);
        self.arrivals.push(id);
        true
    }

    /// The ids held.
    pub(super) fn ids(&self) -> HashSet<DeltaId> {
        self.deltas.keys().copied().collect()
    }

    /// The deltas in the order they were stored.
    pub(super) fn in_arrival_order(&self) -> Vec<StampedDelta> {
        self.arrivals
            .iter()
            .map(|id| self.deltas[id].clone())
            .collect()
    }
}

impl Journal for MemJournal {
    type Error = Infallible;

    fn coverage(&self) -> Result<Coverage, Infallible> {
        let mut coverage = Coverage::new();
        for (host, seq) in self.by_origin.keys() {
            coverage.insert(*host, *seq);
        }
        Ok(coverage)
    }

    fn page(
        &self,
        ranges: &[(HostId, Seq, Seq)],
        limit: usize,
    ) -> Result<(Vec<StampedDelta>, bool), Infallible> {
        let mut deltas = Vec::new();
        for (host, from, to) in ranges {
            for id in self
                .by_origin
                .range((*host, *from)..=(*host, *to))
                .map(|(_, id)| id)
            {
                if deltas.len() >= limit {
                    return Ok((deltas, true));
                }
                deltas.push(self.deltas[id].clone());
            }
        }
        Ok((deltas, false))
    }

    fn get(&self, id: DeltaId) -> Result<Option<StampedDelta>, Infallible> {
        Ok(self.deltas.get(&id).cloned())
    }

    fn entity_count(&self, entity: &str, cap: u64) -> Result<u64, Infallible> {
        let about = self
            .deltas
            .values()
            .filter(|d| d.delta.target_entities().any(|(e, _)| e.as_str() == entity))
            .count() as u64;
        Ok(about.min(cap))
    }

    fn slice_items(&self, filter: Option<&Filter>) -> Result<Vec<Item>, Infallible> {
        Ok(self
            .arrivals
            .iter()
            .filter(|id| filter.is_none_or(|f| f.matches(&self.documents[id])))
            .map(|id| Item {
                time: self.deltas[id].delta.time().ms(),
                id: *id,
            })
            .collect())
    }
}
