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
    ///
    /// Evaluated with an explicit stack: undo/redo histories can make negation chains
    /// thousands of deltas long.
    pub fn is_live(&mut self, id: DeltaId) -> bool {
        if let Some(live) = self.live.get(&id) {
            return *live;
        }
        let Some(root) = self.open(id) else {
            return false;
        };
        let mut stack = vec![root];
        loop {
            let Some(top) = stack.last_mut() else {
                return false;
            };
            if top.hidden || top.next == top.negators.len() {
                let done = stack
                    .pop()
                    .map(|f| (f.id, !f.hidden))
                    .unwrap_or((id, false));
                self.in_progress.remove(&done.0);
                self.live.insert(done.0, done.1);
                match stack.last_mut() {
                    Some(parent) => parent.hidden |= done.1,
                    None => return done.1,
                }
                continue;
            }
            let negator = top.negators[top.next];
            top.next += 1;
            if let Some(live) = self.live.get(&negator) {
                top.hidden |= *live;
            } else if self.in_progress.contains(&negator) {
                // A cycle counts as not negated: the negator stands on its own.
                top.hidden |= self.index.get(negator).is_some()
                    && self.blocking_transactions(negator).is_empty();
            } else if let Some(frame) = self.open(negator) {
                stack.push(frame);
            }
        }
    }

    /// Starts evaluating `id`: `None` (and memoized as not live) when it is absent or held
    /// back by a transaction; otherwise a frame over its negators.
    fn open(&mut self, id: DeltaId) -> Option<Frame> {
        if self.index.get(id).is_none() || !self.blocking_transactions(id).is_empty() {
            self.live.insert(id, false);
            return None;
        }
        self.in_progress.insert(id);
        Some(Frame {
            id,
            negators: self.index.negations_of(id).collect(),
            next: 0,
            hidden: false,
        })
    }

    /// True when at least one live delta negates `id`.
    pub fn is_hidden(&mut self, id: DeltaId) -> bool {
        let negators: Vec<DeltaId> = self.index.negations_of(id).collect();
        negators.into_iter().any(|n| self.is_live(n))
    }
}

/// A delta whose negators are being evaluated by [`Liveness::is_live`].
#[derive(Debug)]
struct Frame {
    id: DeltaId,
    negators: Vec<DeltaId>,
    next: usize,
    hidden: bool,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hypha_primitives::{DeltaBuilder, Hlc, KeyPair, Pointer};

    use super::*;

    /// An undo/redo history thousands of steps long must not exhaust the stack of a
    /// (small-stacked) worker thread.
    #[test]
    fn long_negation_chains_resolve_without_deep_recursion() {
        let handle = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                let key = KeyPair::from_seed([1; 32]);
                let mut index = DeltaIndex::new();
                let root = DeltaBuilder::new(Hlc::new(0, 0))
                    .pointer(Pointer::entity("user", "alice", "name"))
                    .pointer(Pointer::value("name", "Alice"))
                    .sign(&key)
                    .unwrap();
                let root_id = root.id();
                index.insert(Arc::new(root));
                let mut previous = root_id;
                for i in 1..=20_001u64 {
                    let negation = DeltaBuilder::new(Hlc::new(i, 0))
                        .pointer(Pointer::negates(previous))
                        .sign(&key)
                        .unwrap();
                    previous = negation.id();
                    index.insert(Arc::new(negation));
                }
                // 20,001 negations: the last is live, so the root (an odd distance away) is hidden.
                let mut liveness = Liveness::new(&index);
                (liveness.is_live(root_id), liveness.is_live(previous))
            })
            .unwrap();
        assert_eq!(handle.join().unwrap(), (false, true));
    }
}
