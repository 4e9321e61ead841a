//! Which deltas are live: the negation and transaction rules, order-independent.
//!
//! - A delta is **live** iff every transaction it belongs to is complete and it is not hidden.
//! - A delta is **hidden** iff at least one live delta negates it (so a negation of a
//!   negation restores, and a negation that arrived first still applies). A cycle counts as
//!   not negated (content-addressed ids make cycles impossible, but the rule is total).
//! - A transaction is **complete** iff all its size declarations agree and the number of
//!   distinct members present equals that size.

use std::collections::{HashMap, HashSet};

use hypha_primitives::{DeltaId, EntityId};

use crate::index::{transactions_of, DeltaIndex};

/// Where a transaction stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxState {
    /// All declared members are present: members are visible.
    Complete,
    /// Fewer members than declared: members stay invisible until the rest arrive.
    Pending {
        /// Members present.
        members: usize,
        /// Declared size.
        size: u64,
    },
    /// No size declaration yet: members stay invisible.
    Undeclared {
        /// Members present.
        members: usize,
    },
    /// More members than declared: an error; members stay invisible and views report it.
    Overfull {
        /// Members present.
        members: usize,
        /// Declared size.
        size: u64,
    },
    /// Declarations disagree on the size: an error; members stay invisible and views report it.
    ConflictingSizes {
        /// The sizes declared.
        sizes: Vec<u64>,
    },
}

impl TxState {
    /// True when the state is an error a reader should see (not merely waiting).
    pub fn is_error(&self) -> bool {
        matches!(
            self,
            TxState::Overfull { .. } | TxState::ConflictingSizes { .. }
        )
    }

    /// A short description for error reports.
    pub fn describe(&self, tx: &EntityId) -> String {
        match self {
            TxState::Complete => format!("transaction {tx} is complete"),
            TxState::Pending { members, size } => {
                format!("transaction {tx} has {members} of {size} members")
            }
            TxState::Undeclared { members } => {
                format!("transaction {tx} has {members} members and no size")
            }
            TxState::Overfull { members, size } => {
                format!("transaction {tx} declares {size} members but has {members}")
            }
            TxState::ConflictingSizes { sizes } => {
                format!("transaction {tx} declares conflicting sizes {sizes:?}")
            }
        }
    }
}

/// Answers liveness questions over one [`DeltaIndex`], memoizing as it goes.
#[derive(Debug)]
pub struct Liveness<'a> {
    index: &'a DeltaIndex,
    live: HashMap<DeltaId, bool>,
    in_progress: HashSet<DeltaId>,
}

impl<'a> Liveness<'a> {
    /// Liveness over `index`.
    pub fn new(index: &'a DeltaIndex) -> Self {
        Self {
            index,
            live: HashMap::new(),
            in_progress: HashSet::new(),
        }
    }

    /// The state of transaction `tx`.
    pub fn tx_state(&self, tx: &EntityId) -> TxState {
        let members = self.index.tx_members(tx);
        let sizes = self.index.tx_declared_sizes(tx);
        match sizes.len() {
            0 => TxState::Undeclared { members },
            1 => {
                let size = sizes.into_iter().next().unwrap_or_default();
                match (members as u64).cmp(&size) {
                    std::cmp::Ordering::Less => TxState::Pending { members, size },
                    std::cmp::Ordering::Equal => TxState::Complete,
                    std::cmp::Ordering::Greater => TxState::Overfull { members, size },
                }
            }
            _ => TxState::ConflictingSizes {
                sizes: sizes.into_iter().collect(),
            },
        }
    }

    /// The transactions `id` belongs to that are not complete, with their states.
    pub fn blocking_transactions(&self, id: DeltaId) -> Vec<(EntityId, TxState)> {
        let Some(delta) = self.index.get(id) else {
            return Vec::new();
        };
        transactions_of(delta)
            .map(|tx| (tx.clone(), self.tx_state(tx)))
            .filter(|(_, state)| *state != TxState::Complete)
            .collect()
    }

    /// True when the delta is present, in no incomplete transaction, and not hidden.
    pub fn is_live(&mut self, id: DeltaId) -> bool {
        if let Some(live) = self.live.get(&id) {
            return *live;
        }
        let live = self.index.get(id).is_some()
            && self.blocking_transactions(id).is_empty()
            && !self.is_hidden(id);
        self.live.insert(id, live);
        live
    }

    /// True when at least one live delta negates `id`.
    pub fn is_hidden(&mut self, id: DeltaId) -> bool {
        if !self.in_progress.insert(id) {
            return false;
        }
        let negators: Vec<DeltaId> = self.index.negations_of(id).collect();
        let hidden = negators.into_iter().any(|n| self.is_live(n));
        self.in_progress.remove(&id);
        hidden
    }
}
