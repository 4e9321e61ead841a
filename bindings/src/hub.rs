//! The delta subscription hub: one reader of the journal for every live `deltas`
//! subscription.
//!
//! Without it, each subscription would read every new delta and evaluate its filter, so a
//! write would cost as many journal reads and filter evaluations as there are
//! subscriptions. The hub reads each new delta once, builds its filter document once, and
//! asks a [`FilterIndex`] which subscriptions match: filters anchored on an equality
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

use hypha_delta_store::{Arrival, Store, StoredDelta};
use hypha_primitives::{Filter, FilterIndex};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};

/// Deltas a live subscriber may have waiting before the hub drops it back to the journal.
pub(crate) const SUBSCRIBER_BUFFER: usize = 1024;
/// Deltas the hub reads from the journal per pass.
const HUB_CHUNK: usize = 512;

/// One reader of new deltas for all live delta subscriptions.
#[derive(Debug, Clone)]
pub(crate) struct DeltaHub {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    store: Store,
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
        // Subscribed before reading the position, so nothing stored in between is missed.
        let feed = store.subscribe();
        let position = store.last_arrival()?;
        let shared = Arc::new(Shared {
            store,
            state: Mutex::new(State {
                position,
                ..State::default()
            }),
        });
        tokio::spawn(dispatch(shared.clone(), feed));
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

/// The hub's reader: on every wake-up of the feed, dispatches what the journal holds
/// after the hub's position.
async fn dispatch(shared: Arc<Shared>, mut feed: broadcast::Receiver<Arc<StoredDelta>>) {
    loop {
        loop {
            match dispatch_chunk(&shared).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "subscription hub: reading the journal failed; retrying on the next delta");
                    break;
                }
            }
        }
        match feed.recv().await {
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Dispatches one chunk after the hub's position; `false` when there was nothing to read.
async fn dispatch_chunk(shared: &Arc<Shared>) -> Result<bool, String> {
    let (from, idle) = {
        let state = shared.lock();
        (state.position, state.subscribers.is_empty())
    };
    let store = shared.store.clone();
    if idle {
        // Nobody to feed: skip ahead without reading.
        let last = tokio::task::spawn_blocking(move || store.last_arrival())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let mut state = shared.lock();
        if state.subscribers.is_empty() {
            state.position = state.position.max(last);
        }
        return Ok(false);
    }
    let chunk = tokio::task::spawn_blocking(move || {
        store
            .scan_arrival(from)
            .take(HUB_CHUNK)
            .map(|stored| {
                let stored = stored?;
                let document = stored.delta.filter_document(&stored.stamps);
                Ok((Arc::new(stored), document))
            })
            .collect::<hypha_delta_store::Result<Vec<(Arc<StoredDelta>, Value)>>>()
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    let Some(last) = chunk.last().map(|(stored, _)| stored.arrival) else {
        return Ok(false);
    };
    let mut state = shared.lock();
    if state.position != from {
        // Cannot happen with one reader; re-read rather than dispatch twice.
        return Ok(true);
    }
    let mut dropped = Vec::new();
    for (stored, document) in &chunk {
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
    Ok(true)
}
