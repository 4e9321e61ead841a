//! Writes a node makes itself: pointers signed with the node key at the node clock's next
//! reading, then stamped with the node's origin seq and stored. The CLI and the node's API
//! both write through a [`LocalWriter`], and [`wall_ms`] is the one place the node reads
//! the wall clock.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use hypha_primitives::{Delta, DeltaBuilder, Hlc, HlcClock, KeyPair, Pointer};

use crate::{Error, PutOutcome, Result, Store};

/// Milliseconds since the Unix epoch by the wall clock (0 if it reads before the epoch).
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Signs and stores the node's own writes, with one hybrid logical clock.
#[derive(Debug)]
pub struct LocalWriter {
    store: Store,
    key: KeyPair,
    clock: Mutex<HlcClock>,
}

impl LocalWriter {
    /// A writer for `store` signing with `key`. Its clock continues after the newest delta
    /// the key authored in the journal, so a restarted node never writes back in time.
    pub fn new(store: Store, key: KeyPair) -> Result<LocalWriter> {
        let last = store
            .last_by_author(key.author())?
            .map(|s| s.delta.time())
            .unwrap_or_default();
        Ok(LocalWriter {
            store,
            key,
            clock: Mutex::new(HlcClock::resume_after(last)),
        })
    }

    /// The node key it signs and stamps with.
    pub fn key(&self) -> &KeyPair {
        &self.key
    }

    /// The node clock's next reading: later than every one before it.
    pub fn tick(&self) -> Hlc {
        let mut clock = self.clock.lock().unwrap_or_else(|e| e.into_inner());
        clock.tick(wall_ms())
    }

    /// A delta of `pointers`, signed with the node key at the clock's next reading.
    pub fn sign(&self, pointers: Vec<Pointer>) -> Result<Delta> {
        DeltaBuilder::new(self.tick())
            .pointers(pointers)
            .sign(&self.key)
            .map_err(|source| Error::Invalid { index: 0, source })
    }

    /// Signs a delta of `pointers` and stores it with this node's origin stamp.
    pub fn write(&self, pointers: Vec<Pointer>) -> Result<(Delta, PutOutcome)> {
        let delta = self.sign(pointers)?;
        let mut outcomes = self.store.put_local_batch(vec![delta.clone()], &self.key)?;
        Ok((delta, outcomes.remove(0)))
    }
}
