//! Loading what a view needs from the journal, optionally as of an earlier point.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use hypha_delta_store::{Arrival, Store, StoredDelta};
use hypha_primitives::{DeltaId, EntityId, Hlc, Target};

use crate::index::{transactions_of, DeltaIndex};
use crate::Result;

/// A point in the past to view the journal at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsOf {
    /// Everything stored.
    Now,
    /// Only deltas written at or before this HLC time (the same answer on every node).
    Time(Hlc),
    /// Only deltas that arrived at this node at or before this position (this node's own
    /// history).
    Arrival(Arrival),
}

impl AsOf {
    fn includes(&self, stored: &StoredDelta) -> bool {
        match self {
            AsOf::Now => true,
            AsOf::Time(t) => stored.delta.time() <= *t,
            AsOf::Arrival(a) => stored.arrival <= *a,
        }
    }
}

/// Loads into a [`DeltaIndex`] everything the views of `entities` need: the deltas filed
/// under them, their negations (recursively), the members and declarations of their
/// transactions, and, up to `reference_depth` levels, the entities they reference.
pub fn load_index(
    store: &Store,
    entities: &[EntityId],
    as_of: AsOf,
    reference_depth: usize,
) -> Result<DeltaIndex> {
    let mut index = DeltaIndex::new();
    let mut seen_entities: BTreeSet<EntityId> = BTreeSet::new();
    let mut entity_queue: VecDeque<(EntityId, usize)> =
        entities.iter().map(|e| (e.clone(), 0)).collect();
    let mut delta_queue: VecDeque<DeltaId> = VecDeque::new();
    let mut seen_txs: BTreeSet<EntityId> = BTreeSet::new();
    while let Some((entity, depth)) = entity_queue.pop_front() {
        if !seen_entities.insert(entity.clone()) {
            continue;
        }
        for stored in store.scan_entity(entity.as_str(), None) {
            let stored = stored?;
            if !as_of.includes(&stored) {
                continue;
            }
            let delta = Arc::new(stored.delta);
            if depth < reference_depth {
                for p in delta.pointers() {
                    if let Target::Entity(e) = &p.target {
                        if *e != entity {
                            entity_queue.push_back((e.clone(), depth + 1));
                        }
                    }
                }
            }
            delta_queue.push_back(delta.id());
            index.insert(delta);
        }
        // Follow negations and transactions of everything loaded so far.
        while let Some(id) = delta_queue.pop_front() {
            for negator in store.negations_of(id)? {
                if index.get(negator).is_some() {
                    continue;
                }
                if let Some(stored) = store.get(negator)? {
                    if as_of.includes(&stored) {
                        delta_queue.push_back(negator);
                        index.insert(Arc::new(stored.delta));
                    }
                }
            }
            let txs: Vec<EntityId> = index
                .get(id)
                .map(|d| transactions_of(d).cloned().collect())
                .unwrap_or_default();
            for tx in txs {
                if !seen_txs.insert(tx.clone()) {
                    continue;
                }
                for stored in store.scan_entity(tx.as_str(), None) {
                    let stored = stored?;
                    let id = stored.delta.id();
                    if as_of.includes(&stored) && index.insert(Arc::new(stored.delta)) {
                        delta_queue.push_back(id);
                    }
                }
            }
        }
    }
    Ok(index)
}
