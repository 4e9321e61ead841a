//! Helpers the pure modules' unit tests share.

use std::sync::Arc;

use hypha_primitives::{DeltaBuilder, DeltaId, Hlc, HostId, KeyPair, Pointer, StampedDelta};

use crate::reconcile::{Item, ReconcileConfig, Reconciler};

/// A host id made of one repeated byte.
pub(crate) fn host(n: u8) -> HostId {
    HostId::from_bytes([n; 32])
}

/// A signed, unstamped delta setting `n`.
pub(crate) fn delta(n: i64) -> StampedDelta {
    DeltaBuilder::new(Hlc::new(1, 0))
        .pointer(Pointer::value("n", n))
        .sign(&KeyPair::from_seed([1; 32]))
        .expect("a valid delta")
        .into()
}

/// A reconciliation slice of the items with ids (and times) `n`.
pub(crate) fn slice(ids: impl IntoIterator<Item = u8>) -> Arc<Reconciler> {
    let items = ids.into_iter().map(|n| Item {
        time: u64::from(n),
        id: DeltaId::from_bytes([n; 32]),
    });
    Arc::new(Reconciler::new(items, ReconcileConfig::default()))
}
