//! Propagation confidence: how many peers are known to hold a delta.

use hypha_primitives::DeltaId;

use super::{blocking, NodeApi};

impl NodeApi {
    /// How many peers are known to hold delta `id`: the most over its origin stamps.
    pub async fn confidence(&self, id: DeltaId) -> usize {
        let Some(network) = &self.network else {
            return 0;
        };
        let store = self.store.clone();
        let stamps = blocking(move || Ok(store.get(id)?))
            .await
            .ok()
            .flatten()
            .map(|s| s.stamps)
            .unwrap_or_default();
        let mut best = 0;
        for stamp in stamps {
            best = best.max(network.holders(stamp.host(), stamp.seq()).await);
        }
        best
    }
}
