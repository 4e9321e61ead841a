//! Following the journal: every stored delta in arrival order from a cursor, with no gap and
//! no duplicate, taken from the live feed while the follower keeps up and read from the
//! journal when it starts behind or falls behind. Each consumer of new deltas (the views,
//! the subscription hub, each subscription's replay, the network) follows the journal this
//! way instead of treating the feed as a wake-up and reading every delta again; those that
//! hand deltas out of the node use a proving follower ([`Follower::proving`]).

use std::sync::Arc;

use tokio::sync::broadcast::{self, error::TryRecvError};

use crate::{Arrival, Result, Store, StoredDelta};

/// A reader of the journal in arrival order; see [`Store::follow`].
pub struct Follower {
    store: Store,
    feed: broadcast::Receiver<Arc<StoredDelta>>,
    /// The arrival of the last delta handed out.
    cursor: Option<Arrival>,
    /// True until the journal has been read up to its end since the feed was last trusted:
    /// at the start, and after the feed lagged.
    behind: bool,
    /// A delta taken from the feed while waiting, not handed out yet.
    early: Option<Arc<StoredDelta>>,
    /// Whether deltas read back from the journal get their stamps' proofs
    /// ([`Follower::proving`]).
    prove: bool,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("cursor", &self.cursor)
            .field("behind", &self.behind)
            .finish_non_exhaustive()
    }
}

fn read_journal(
    store: &Store,
    cursor: Option<Arrival>,
    max: usize,
    prove: bool,
) -> Result<Vec<Arc<StoredDelta>>> {
    let mut chunk = store
        .scan_arrival(cursor)
        .take(max)
        .collect::<Result<Vec<StoredDelta>>>()?;
    if prove {
        store.prove_stored(&mut chunk)?;
    }
    Ok(chunk.into_iter().map(Arc::new).collect())
}

impl Store {
    /// Follows the journal from just after `cursor` (from its start for `None`).
    pub fn follow(&self, cursor: Option<Arrival>) -> Follower {
        Follower {
            // Subscribed before anything is read, so nothing stored in between is missed.
            feed: self.subscribe(),
            store: self.clone(),
            cursor,
            behind: true,
            early: None,
            prove: false,
        }
    }
}

impl Follower {
    /// A follower whose deltas always carry their stamps' proofs, ready to leave the node:
    /// the feed's already do, and those read back from the journal (where a stamp of a
    /// batch only names it) are proven in the same read (`Store::prove_stored`).
    pub fn proving(mut self) -> Follower {
        self.prove = true;
        self
    }

    /// The arrival of the last delta handed out (`None` before the first).
    pub fn cursor(&self) -> Option<Arrival> {
        self.cursor
    }

    /// Up to `max` of the deltas stored after the cursor, in arrival order, without
    /// waiting: empty when there are none yet. Reads the journal (blocking) only when the
    /// follower is behind; otherwise it takes what the feed holds.
    pub fn ready(&mut self, max: usize) -> Result<Vec<Arc<StoredDelta>>> {
        let max = max.max(1);
        if !self.behind {
            let out = self.take_from_feed(max);
            if !out.is_empty() || !self.behind {
                return Ok(out);
            }
        }
        let chunk = read_journal(&self.store, self.cursor, max, self.prove)?;
        Ok(self.caught_up_with(chunk, max))
    }

    /// [`Follower::ready`] for async callers: a read of the journal, when the follower is
    /// behind (or finds out it is), runs on the blocking pool.
    pub async fn ready_async(&mut self, max: usize) -> Result<Vec<Arc<StoredDelta>>> {
        let max = max.max(1);
        if !self.behind {
            let out = self.take_from_feed(max);
            if !out.is_empty() || !self.behind {
                return Ok(out);
            }
        }
        let (store, cursor, prove) = (self.store.clone(), self.cursor, self.prove);
        let chunk = tokio::task::spawn_blocking(move || read_journal(&store, cursor, max, prove))
            .await
            .map_err(|e| crate::Error::Corrupt(format!("reading the journal stopped: {e}")))??;
        Ok(self.caught_up_with(chunk, max))
    }

    /// Up to `max` deltas from the feed without waiting; on a lag or a gap it stops and the
    /// follower is behind.
    fn take_from_feed(&mut self, max: usize) -> Vec<Arc<StoredDelta>> {
        let mut out = Vec::new();
        while out.len() < max {
            let next = match self.early.take() {
                Some(stored) => stored,
                None => match self.feed.try_recv() {
                    Ok(stored) => stored,
                    Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                    Err(TryRecvError::Lagged(_)) => {
                        self.behind = true;
                        break;
                    }
                },
            };
            if !self.take(next, &mut out) {
                break;
            }
        }
        out
    }

    /// Takes a chunk read from the journal after the cursor.
    fn caught_up_with(
        &mut self,
        chunk: Vec<Arc<StoredDelta>>,
        max: usize,
    ) -> Vec<Arc<StoredDelta>> {
        self.early = None;
        if chunk.len() < max {
            // The journal's end as of the read; everything after it comes through the
            // feed, which was subscribed before the read.
            self.behind = false;
        }
        if let Some(last) = chunk.last() {
            self.cursor = Some(last.arrival);
        }
        chunk
    }

    /// Hands out `stored` if it is the next delta; false (and behind) on a gap.
    fn take(&mut self, stored: Arc<StoredDelta>, out: &mut Vec<Arc<StoredDelta>>) -> bool {
        let next = self.cursor.map_or(1, |c| c.get() + 1);
        if stored.arrival.get() < next {
            return true;
        }
        if stored.arrival.get() > next {
            self.behind = true;
            return false;
        }
        self.cursor = Some(stored.arrival);
        out.push(stored);
        true
    }

    /// Waits until there may be something after the cursor for [`Follower::ready`]: at
    /// once when behind, else until the feed brings a delta. False when the store's feed
    /// has closed and nothing more will come.
    pub async fn changed(&mut self) -> bool {
        if self.behind || self.early.is_some() {
            return true;
        }
        match self.feed.recv().await {
            Ok(stored) => {
                self.early = Some(stored);
                true
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                self.behind = true;
                true
            }
            Err(broadcast::error::RecvError::Closed) => false,
        }
    }
}
