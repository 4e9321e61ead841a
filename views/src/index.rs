//! The deltas a view sees, indexed for the liveness rules: negations by target, transaction
//! members and size declarations, and filing by entity and property.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use hypha_primitives::{Delta, DeltaId, EntityId, Primitive, Target};

/// Local context of the pointer by which a delta joins a transaction, or declares its size.
pub const TRANSACTION: &str = "transaction";
/// Target context, on the transaction entity, of a member's pointer.
pub const TRANSACTION_MEMBER: &str = "member";
/// Target context, on the transaction entity, of a size declaration's pointer; the
/// declaration's `size` pointer holds the expected number of members.
pub const TRANSACTION_SIZE: &str = "size";

/// A set of deltas with the indexes liveness and views need. Insertion order does not
/// matter: every query answers the same for the same set.
#[derive(Clone, Debug, Default)]
pub struct DeltaIndex {
    deltas: HashMap<DeltaId, Arc<Delta>>,
    /// negated id → ids of the deltas that negate it (present or not yet).
    negations: HashMap<DeltaId, BTreeSet<DeltaId>>,
    /// transaction → ids of its members.
    tx_members: HashMap<EntityId, BTreeSet<DeltaId>>,
    /// transaction → (declared size, declaring delta).
    tx_sizes: HashMap<EntityId, BTreeSet<(u64, DeltaId)>>,
    /// entity → property → ids of the deltas filed under it.
    filed: BTreeMap<EntityId, BTreeMap<String, BTreeSet<DeltaId>>>,
}

/// The transactions a delta points at under a target context `accept` takes.
fn transaction_pointers<'d>(
    delta: &'d Delta,
    accept: impl Fn(&str) -> bool + 'd,
) -> impl Iterator<Item = &'d EntityId> + 'd {
    delta
        .pointers()
        .iter()
        .filter_map(move |p| match (&p.target, p.target_context.as_deref()) {
            (Target::Entity(t), Some(context))
                if p.local_context == TRANSACTION && accept(context) =>
            {
                Some(t)
            }
            _ => None,
        })
}

/// The transactions a delta is a member of.
pub(crate) fn transactions_of(delta: &Delta) -> impl Iterator<Item = &EntityId> {
    transaction_pointers(delta, |c| c == TRANSACTION_MEMBER)
}

/// Every transaction a delta joins or declares the size of.
pub(crate) fn transactions_touched(delta: &Delta) -> impl Iterator<Item = &EntityId> {
    transaction_pointers(delta, |c| c == TRANSACTION_MEMBER || c == TRANSACTION_SIZE)
}

/// The size declarations a delta makes: (transaction, size).
fn size_declarations(delta: &Delta) -> Vec<(EntityId, u64)> {
    let size = delta
        .pointers()
        .iter()
        .find_map(|p| match (&p.target, p.local_context.as_str()) {
            (Target::Value(Primitive::Int(n)), TRANSACTION_SIZE) if *n >= 0 => Some(*n as u64),
            _ => None,
        });
    let Some(size) = size else { return Vec::new() };
    transaction_pointers(delta, |c| c == TRANSACTION_SIZE)
        .map(|t| (t.clone(), size))
        .collect()
}

/// True for deltas that negate something; they never show as values.
pub(crate) fn is_negation(delta: &Delta) -> bool {
    delta.negated_ids().next().is_some()
}

impl DeltaIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a delta; false if it was already there.
    pub fn insert(&mut self, delta: Arc<Delta>) -> bool {
        let id = delta.id();
        if self.deltas.contains_key(&id) {
            return false;
        }
        for negated in delta.negated_ids() {
            self.negations.entry(negated).or_default().insert(id);
        }
        for tx in transactions_of(&delta) {
            self.tx_members.entry(tx.clone()).or_default().insert(id);
        }
        for (tx, size) in size_declarations(&delta) {
            self.tx_sizes.entry(tx).or_default().insert((size, id));
        }
        if !is_negation(&delta) {
            for (entity, context) in delta.target_entities() {
                if let Some(property) = context {
                    self.filed
                        .entry(entity.clone())
                        .or_default()
                        .entry(property.to_owned())
                        .or_default()
                        .insert(id);
                }
            }
        }
        self.deltas.insert(id, delta);
        true
    }

    /// The delta with this id, if present.
    pub fn get(&self, id: DeltaId) -> Option<&Arc<Delta>> {
        self.deltas.get(&id)
    }

    /// How many deltas the index holds.
    pub fn len(&self) -> usize {
        self.deltas.len()
    }

    /// True when the index holds no delta.
    pub fn is_empty(&self) -> bool {
        self.deltas.is_empty()
    }

    /// Ids of the present deltas that negate `id`.
    pub fn negations_of(&self, id: DeltaId) -> impl Iterator<Item = DeltaId> + '_ {
        self.negations
            .get(&id)
            .into_iter()
            .flatten()
            .copied()
            .filter(|n| self.deltas.contains_key(n))
    }

    /// The members present for transaction `tx`.
    pub(crate) fn tx_members(&self, tx: &EntityId) -> usize {
        self.tx_members.get(tx).map_or(0, BTreeSet::len)
    }

    /// The distinct sizes declared for transaction `tx`.
    pub(crate) fn tx_declared_sizes(&self, tx: &EntityId) -> BTreeSet<u64> {
        self.tx_sizes
            .get(tx)
            .into_iter()
            .flatten()
            .map(|(size, _)| *size)
            .collect()
    }

    /// The properties of `entity` with the ids filed under each, in property order.
    pub fn filed(&self, entity: &EntityId) -> impl Iterator<Item = (&str, &BTreeSet<DeltaId>)> {
        self.filed
            .get(entity)
            .into_iter()
            .flatten()
            .map(|(p, ids)| (p.as_str(), ids))
    }

    /// The entities with at least one delta filed under them, in id order.
    pub fn entities(&self) -> impl Iterator<Item = &EntityId> {
        self.filed.keys()
    }
}
