//! The delta subscription hub: one reader of the journal for every live `deltas`
//! subscription.
//!
//! Without it, each subscription would read every new delta and evaluate its filter, so a
//! write would cost as many journal reads and filter evaluations as there are
//! subscriptions. The hub follows the journal once (`Store::follow`: new deltas come from
//! the live feed, read again only if the hub fell behind), builds each delta's filter
//! document once, and asks a [`FilterIndex`] which subscriptions match: filters anchored on an equality
//! (`{"in": ["alice", {"var": "targets"}]}`, `{"==": [{"var": "author"}, "…"]}`) are found
//! by lookup, and only the rest are evaluated one by one.
//!
//! A subscription joins the hub once it has read the journal up to the hub's position
//! ([`DeltaHub::join`]), and from then on receives matching deltas on a bounded channel.
//! The hub never waits for a subscriber: one whose channel is full is dropped from the hub,
//! and goes back to reading the journal from its own cursor until it catches up and joins
//! again. So a slow subscriber costs the node nothing and loses nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hypha_delta_store::{Arrival, Follower, Store, StoredDelta};
use hypha_primitives::{Filter, FilterIndex};
use tokio::sync::mpsc;

/// Deltas a live subscriber may have waiting before the hub drops it back to the journal.
pub(crate) const SUBSCRIBER_BUFFER: usize = 1024;
/// The most deltas the hub dispatches per pass.
const HUB_CHUNK: usize = 512;

/// One reader of new deltas for all live delta subscriptions.
#[derive(Debug, Clone)]
pub(crate) struct DeltaHub {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Every delta up to here has been dispatched.
    position: Option<Arrival>,
    index: FilterIndex<u64>,
    subscribers: HashMap<u64, mpsc::Sender<Arc<StoredDelta>>>,
    next_key: u64,
}

/// A subscriber's place in the hub; dropping it leaves the hub.
#[derive(Debug)]
pub(crate) struct Membership {
    shared: Arc<Shared>,
    key: u64,
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.index.remove(&self.key);
        state.subscribers.remove(&self.key);
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent maps: carry on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl DeltaHub {
    /// Starts the hub at the journal's current end; its reader runs on the current tokio
    /// runtime until the store's feed closes.
    pub(crate) fn start(store: Store) -> hypha_delta_store::Result<DeltaHub> {
        let position = store.last_arrival()?;
        // The follower subscribes to the feed at once, so nothing stored after `position`
        // is missed; a proving one, because subscribers send the deltas out as they are.
        let follower = store.follow(position).proving();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                position,
                ..State::default()
            }),
        });
        tokio::spawn(dispatch(shared.clone(), follower));
        Ok(DeltaHub { shared })
    }

    /// Joins a subscriber that has seen every delta up to `seen`, if the hub has dispatched
    /// nothing after `seen` (otherwise `None`: read the journal further, then try again).
    /// The receiver may also carry deltas at or before `seen`, which the subscriber skips.
    pub(crate) fn join(
        &self,
        filter: Option<Filter>,
        seen: Option<Arrival>,
    ) -> Option<(Membership, mpsc::Receiver<Arc<StoredDelta>>)> {
        let mut state = self.shared.lock();
        if state.position > seen {
            return None;
        }
        let key = state.next_key;
        state.next_key += 1;
        let (sender, receiver) = mpsc::channel(SUBSCRIBER_BUFFER);
        state.index.insert(key, filter);
        state.subscribers.insert(key, sender);
        let membership = Membership {
            shared: self.shared.clone(),
            key,
        };
        Some((membership, receiver))
    }

    /// Subscribers currently fed by the hub.
    pub(crate) fn live(&self) -> usize {
        self.shared.lock().subscribers.len()
    }

    /// Subscribers whose filter has no anchor, evaluated against every delta.
    pub(crate) fn unanchored(&self) -> usize {
        self.shared.lock().index.unanchored()
    }
}

/// The hub's reader: follows the journal (`Store::follow`) and dispatches each batch of new
/// deltas to the subscribers whose filters match.
async fn dispatch(shared: Arc<Shared>, mut follower: Follower) {
    loop {
        // The follower reads the journal (on the blocking pool) only when behind.
        match follower.ready_async(HUB_CHUNK).await {
            Ok(batch) if batch.is_empty() => {
                if !follower.changed().await {
                    return;
                }
            }
            Ok(batch) => dispatch_batch(&shared, &batch),
            Err(e) => {
                tracing::warn!(error = %e, "subscription hub: reading the journal failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Hands a batch of new deltas to every live subscriber whose filter matches it.
fn dispatch_batch(shared: &Shared, batch: &[Arc<StoredDelta>]) {
    let Some(last) = batch.last().map(|stored| stored.arrival) else {
        return;
    };
    let documents_of = || -> Vec<serde_json::Value> {
        batch
            .iter()
            .map(|stored| stored.delta.filter_document(&stored.stamps))
            .collect()
    };
    // Filter documents are built outside the lock, and not at all with nobody to feed.
    let idle = shared.lock().subscribers.is_empty();
    let mut documents = if idle { Vec::new() } else { documents_of() };
    let mut state = shared.lock();
    if documents.is_empty() && !state.subscribers.is_empty() {
        // Someone joined meanwhile, at the position before this batch: it is owed it.
        documents = documents_of();
    }
    let mut dropped = Vec::new();
    for (stored, document) in batch.iter().zip(&documents) {
        for key in state.index.matching(document) {
            let Some(sender) = state.subscribers.get(&key) else {
                continue;
            };
            // Full or closed: the subscriber reads the journal from its own cursor.
            if sender.try_send(stored.clone()).is_err() {
                dropped.push(key);
            }
        }
        for key in dropped.drain(..) {
            state.index.remove(&key);
            state.subscribers.remove(&key);
        }
    }
    state.position = Some(last);
}
