//! Store configuration: plain data with defaults and validation, and the builder that opens
//! a store with it.

use std::collections::BTreeSet;
use std::path::PathBuf;

use hypha_primitives::AuthorKey;

use crate::{Error, Result, Store};

/// When a write is acknowledged relative to the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// The write-ahead log is fsynced before a batch is acknowledged: survives power loss.
    /// Concurrent writers share one fsync (group commit).
    #[default]
    Fsync,
    /// The write-ahead log is written (to the OS) before a batch is acknowledged, without
    /// fsync: survives a crash or `kill -9` of the process, not a power loss.
    Buffered,
}

/// How a store behaves; see each field. Build with [`Store::builder`].
#[derive(Clone, Debug)]
pub struct Config {
    /// The data folder (RocksDB's files live in `<path>/journal`).
    pub path: PathBuf,
    /// When writes are acknowledged.
    pub durability: Durability,
    /// Largest accepted delta, in encoded bytes.
    pub max_delta_bytes: usize,
    /// If set, only deltas by these authors are accepted.
    pub allowed_authors: Option<BTreeSet<AuthorKey>>,
    /// How many stored deltas the live feed buffers for a slow subscriber before it lags.
    pub feed_capacity: usize,
}

impl Config {
    /// The defaults for a data folder.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            durability: Durability::default(),
            max_delta_bytes: 64 * 1024,
            allowed_authors: None,
            feed_capacity: 4096,
        }
    }

    /// Checks the values are usable.
    pub fn validate(&self) -> Result<()> {
        if self.max_delta_bytes < 128 {
            return Err(Error::Config(format!(
                "max_delta_bytes is {}, below the 128 bytes even a one-pointer delta needs",
                self.max_delta_bytes
            )));
        }
        if self.feed_capacity == 0 {
            return Err(Error::Config("feed_capacity must be at least 1".into()));
        }
        Ok(())
    }
}

/// Opens a [`Store`]: `Store::builder(path).durability(Durability::Buffered).open()?`.
#[derive(Clone, Debug)]
pub struct StoreBuilder {
    config: Config,
}

impl StoreBuilder {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            config: Config::new(path),
        }
    }
    /// Sets when writes are acknowledged.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.config.durability = durability;
        self
    }
    /// Sets the largest accepted delta, in encoded bytes.
    pub fn max_delta_bytes(mut self, bytes: usize) -> Self {
        self.config.max_delta_bytes = bytes;
        self
    }
    /// Accepts only deltas by these authors.
    pub fn allowed_authors(mut self, authors: impl IntoIterator<Item = AuthorKey>) -> Self {
        self.config.allowed_authors = Some(authors.into_iter().collect());
        self
    }
    /// Sets the live feed's buffer.
    pub fn feed_capacity(mut self, capacity: usize) -> Self {
        self.config.feed_capacity = capacity;
        self
    }
    /// Uses a whole configuration.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }
    /// Opens (or creates) the store.
    pub fn open(self) -> Result<Store> {
        self.config.validate()?;
        Store::open_with(self.config)
    }
}
