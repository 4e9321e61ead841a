//! Hypha's durable journal: every delta a node holds, with its indexes, in RocksDB.
//!
//! [`Store`] verifies each delta (id, signature, origin stamps, size, allow-list) before it
//! stores it, deduplicates by id, and writes the delta and all its index entries in one
//! atomic RocksDB write batch; concurrent writers share one batch and one fsync. Reads scan
//! by arrival cursor, origin range, entity, author, negation and filter, and a live feed
//! announces each newly stored delta.
//!
//! It does not resolve views (`hypha-views`) or talk to peers (`hypha-net`), and it never
//! reads the clock. The layout is described in `markdown/DELTA-STORE.md`.
//!
//! ```
//! use hypha_delta_store::Store;
//! use hypha_primitives::{DeltaBuilder, Hlc, KeyPair, Pointer};
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path())?;
//! let key = KeyPair::from_seed([1; 32]);
//! let delta = DeltaBuilder::new(Hlc::new(1, 0))
//!     .pointer(Pointer::entity("user", "alice", "name"))
//!     .pointer(Pointer::value("name", "Alice"))
//!     .sign(&key)?;
//! let outcome = store.put(delta.clone())?;
//! assert!(outcome.is_new());
//! assert!(!store.put(delta.clone())?.is_new()); // idempotent
//! let found: Vec<_> = store.scan_entity("alice", Some("name")).collect::<Result<_, _>>()?;
//! assert_eq!(found[0].delta, delta);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod batches;
mod config;
mod derived;
mod error;
mod follow;
mod group;
mod identity;
mod layout;
mod local;
mod scan;
mod store;
mod verify;

use std::fmt;

use hypha_primitives::{Delta, Stamp};

pub use config::{Config, Durability, StoreBuilder};
pub use derived::DerivedWrite;
pub use error::{Error, Result};
pub use follow::Follower;
pub use identity::{
    load_or_create_node_key, node_key_path, read_key_file, write_key_file, NODE_KEY_FILE,
};
pub use local::{wall_ms, LocalWriter};
pub use store::{PutOutcome, StampedDelta, Store, MAX_STAMPS};
pub use verify::VerifiedBatch;

/// One raw key-value pair read from the database.
pub type KeyValue = (Box<[u8]>, Box<[u8]>);

/// A delta's position in this node's arrival order: 1, 2, 3… Local to the node; the cursor
/// for resuming scans and feeds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Arrival(u64);

impl Arrival {
    /// Wraps a raw position.
    pub const fn new(n: u64) -> Self {
        Self(n)
    }
    /// The raw position.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Arrival {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A delta as the journal holds it: where it arrived, and the origin stamps it carries.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredDelta {
    /// Its position in this node's arrival order.
    pub arrival: Arrival,
    /// The delta.
    pub delta: Delta,
    /// Origin stamps, in the order they were first stored.
    pub stamps: Vec<Stamp>,
}

impl StoredDelta {
    /// The JSON form of the delta plus `arrival` and `stamps`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut json = self.delta.to_json();
        if let Some(map) = json.as_object_mut() {
            map.insert("arrival".into(), self.arrival.get().into());
            map.insert(
                "stamps".into(),
                self.stamps.iter().map(Stamp::to_json).collect(),
            );
        }
        json
    }
}
