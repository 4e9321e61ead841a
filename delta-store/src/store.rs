//! The journal: opening RocksDB, the verified and group-committed write path, and the live
//! feed.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub use hypha_primitives::StampedDelta;
use hypha_primitives::{Delta, DeltaId, HostId, KeyPair, Seq, Stamp};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, IteratorMode, Options,
    WriteOptions, DB,
};
use tokio::sync::broadcast;

use crate::batches::{ProvenBatches, VerifiedBatches};
use crate::group::Group;
use crate::layout::{self, ALL_CFS, CF_ARRIVAL, CF_DELTAS, CF_META, CF_ORIGIN};
use crate::verify::{Prepared, VerifiedBatch};
use crate::{Arrival, Config, Durability, Error, Result, StoreBuilder, StoredDelta};

/// The most origin stamps one delta may carry; more is a sign of abuse, not of honest
/// independent acceptance.
pub const MAX_STAMPS: usize = 64;

/// What a put did with one delta: stored it new, or found it stored (adding any new
/// stamps), and at which arrival position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PutOutcome {
    arrival: Arrival,
    new: bool,
    local_seq: Option<Seq>,
}

impl PutOutcome {
    pub(crate) fn new(arrival: Arrival, new: bool, local_seq: Option<Seq>) -> Self {
        Self {
            arrival,
            new,
            local_seq,
        }
    }

    /// The arrival position of the delta, new or old.
    pub fn arrival(&self) -> Arrival {
        self.arrival
    }

    /// True when the delta was new.
    pub fn is_new(&self) -> bool {
        self.new
    }

    /// For a put that stamps with this node's key (`put_local_batch`): the seq of this
    /// node's origin stamp on the delta, new or held before. `None` for other puts, and for
    /// a delta this node had stored from elsewhere without stamping it.
    pub fn local_seq(&self) -> Option<Seq> {
        self.local_seq
    }
}

/// One caller's batch in the group-commit queue.
struct Job {
    /// Taken by the committing thread.
    items: Mutex<Vec<Prepared>>,
    stamp_with: Option<KeyPair>,
    result: Mutex<Option<Result<Vec<PutOutcome>>>>,
}

/// State only the committing thread touches.
pub(crate) struct CommitState {
    /// The arrival position the next stored delta gets.
    pub(crate) next_arrival: u64,
    /// Highest origin seq stored per host, loaded lazily from the origin index.
    pub(crate) last_seq: HashMap<HostId, Seq>,
}

pub(crate) struct Inner {
    pub(crate) db: DB,
    pub(crate) config: Config,
    commit: Mutex<CommitState>,
    queue: Mutex<Vec<Arc<Job>>>,
    feed: broadcast::Sender<Arc<StoredDelta>>,
    /// Origin stamp signatures checked since the store was opened.
    pub(crate) stamps_verified: AtomicU64,
    /// Batch stamps whose signature was checked and found good.
    pub(crate) verified: VerifiedBatches,
    /// Paths rebuilt by [`Store::prove`].
    pub(crate) proven: ProvenBatches,
}

/// The durable journal of one node: every delta it holds, with indexes, in RocksDB.
///
/// Cheap to clone (shared handle). Writes verify before they store, are idempotent by delta
/// id, and write each delta with all its index entries in one atomic RocksDB batch;
/// concurrent writers are grouped into one batch and (with [`Durability::Fsync`]) one fsync.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.config.path)
            .finish_non_exhaustive()
    }
}

/// Locks `m`, carrying on past a poisoned lock.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock cannot leave RocksDB half-written (batches are atomic),
    // so the state behind a poisoned lock is still usable.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Store {
    /// Starts configuring a store in the data folder `path`.
    pub fn builder(path: impl AsRef<Path>) -> StoreBuilder {
        StoreBuilder::new(path.as_ref().to_path_buf())
    }

    /// Opens (or creates) a store with default settings.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Self::builder(path).open()
    }

    pub(crate) fn open_with(config: Config) -> Result<Store> {
        std::fs::create_dir_all(&config.path)
            .map_err(|e| Error::io(format!("creating {}", config.path.display()), e))?;
        let db_path = config.path.join("journal");
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let cfs = ALL_CFS
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, column_family_options(name, &cache)));
        let db = DB::open_cf_descriptors(&opts, &db_path, cfs).map_err(|e| {
            if e.to_string().contains("lock") {
                Error::Locked {
                    path: config.path.clone(),
                }
            } else {
                Error::Db(e)
            }
        })?;
        check_layout(&db)?;
        let next_arrival = last_arrival(&db)?.map_or(1, |a| a.get() + 1);
        let (feed, _) = broadcast::channel(config.feed_capacity);
        tracing::debug!(path = %config.path.display(), next_arrival, "journal opened");
        Ok(Store {
            inner: Arc::new(Inner {
                stamps_verified: AtomicU64::new(0),
                verified: VerifiedBatches::default(),
                proven: ProvenBatches::default(),
                db,
                config,
                commit: Mutex::new(CommitState {
                    next_arrival,
                    last_seq: HashMap::new(),
                }),
                queue: Mutex::new(Vec::new()),
                feed,
            }),
        })
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// A receiver of every delta stored from now on, in arrival order.
    ///
    /// A receiver that falls more than `feed_capacity` behind gets a `Lagged` error and
    /// should resume from its last arrival with [`Store::scan_arrival`].
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredDelta>> {
        self.inner.feed.subscribe()
    }

    /// Verifies and stores one delta (no stamps).
    pub fn put(&self, delta: Delta) -> Result<PutOutcome> {
        let mut out = self.put_batch(vec![delta.into()])?;
        Ok(out.remove(0))
    }

    /// How many origin stamp signatures this store has checked since it was opened (the
    /// cost of replication the benchmark reports per delta caught up).
    pub fn stamps_verified(&self) -> u64 {
        self.inner.stamps_verified.load(Ordering::Relaxed)
    }

    /// Verifies and stores deltas with their stamps, all or nothing: if any delta or stamp
    /// is invalid, nothing is stored and the error names the first bad one.
    pub fn put_batch(&self, batch: Vec<StampedDelta>) -> Result<Vec<PutOutcome>> {
        let items = self.prepare(batch)?;
        self.submit(Job {
            items: Mutex::new(items),
            stamp_with: None,
            result: Mutex::new(None),
        })
    }

    /// Verifies deltas with their stamps without storing them: the first half of
    /// [`Store::put_batch`], for callers that verify one batch while the previous is being
    /// written ([`Store::put_verified`] is the second half).
    pub fn verify_batch(&self, batch: Vec<StampedDelta>) -> Result<VerifiedBatch> {
        Ok(VerifiedBatch {
            items: self.prepare(batch)?,
        })
    }

    /// Stores a batch [`Store::verify_batch`] checked, all or nothing.
    pub fn put_verified(&self, batch: VerifiedBatch) -> Result<Vec<PutOutcome>> {
        self.submit(Job {
            items: Mutex::new(batch.items),
            stamp_with: None,
            result: Mutex::new(None),
        })
    }

    /// Verifies and stores deltas accepted from a client of this node, giving each new one
    /// the next origin stamp of `host` (deltas already held are not stamped again).
    pub fn put_local_batch(&self, deltas: Vec<Delta>, host: &KeyPair) -> Result<Vec<PutOutcome>> {
        let items = self.prepare(deltas.into_iter().map(StampedDelta::from).collect())?;
        self.submit(Job {
            items: Mutex::new(items),
            stamp_with: Some(host.clone()),
            result: Mutex::new(None),
        })
    }

    /// Group commit: queue the job; whoever takes the commit lock writes every queued job
    /// in one batch, so concurrent writers share one write and one fsync.
    fn submit(&self, job: Job) -> Result<Vec<PutOutcome>> {
        let job = Arc::new(job);
        lock(&self.inner.queue).push(Arc::clone(&job));
        let mut state = lock(&self.inner.commit);
        if let Some(done) = lock(&job.result).take() {
            return done;
        }
        let jobs = std::mem::take(&mut *lock(&self.inner.queue));
        self.commit_group(&mut state, &jobs);
        drop(state);
        let result = lock(&job.result).take();
        result.unwrap_or_else(|| Err(Error::Corrupt("group commit lost a job".into())))
    }

    pub(crate) fn cf(&self, name: &str) -> &ColumnFamily {
        // Every name in ALL_CFS is created at open.
        self.inner
            .db
            .cf_handle(name)
            .unwrap_or_else(|| panic!("column family {name} exists"))
    }

    fn commit_group(&self, state: &mut CommitState, jobs: &[Arc<Job>]) {
        let before = (state.next_arrival, state.last_seq.clone());
        let mut group = Group::new(self);
        let items: Vec<Vec<Prepared>> = jobs
            .iter()
            .map(|job| std::mem::take(&mut *lock(&job.items)))
            .collect();
        let staged: Result<Vec<Vec<PutOutcome>>> = group
            .preload(items.iter().flatten())
            .and_then(|()| {
                let work: Vec<(Option<&KeyPair>, &[Prepared])> = jobs
                    .iter()
                    .zip(&items)
                    .map(|(job, items)| (job.stamp_with.as_ref(), items.as_slice()))
                    .collect();
                group.presign(state, &work)
            })
            .and_then(|()| {
                jobs.iter()
                    .zip(items)
                    .map(|(job, items)| {
                        items
                            .into_iter()
                            .map(|item| group.stage(state, item, job.stamp_with.as_ref()))
                            .collect()
                    })
                    .collect()
            });
        let (batch, fresh) = group.finish();
        let written = staged.and_then(|outcomes| {
            let mut write_opts = WriteOptions::default();
            write_opts.set_sync(self.inner.config.durability == Durability::Fsync);
            self.inner.db.write_opt(batch, &write_opts)?;
            Ok(outcomes)
        });
        match written {
            Ok(outcomes) => {
                for (job, outcome) in jobs.iter().zip(outcomes) {
                    *lock(&job.result) = Some(Ok(outcome));
                }
                for delta in fresh {
                    // No receivers is fine: nobody is listening yet.
                    let _ = self.inner.feed.send(delta);
                }
            }
            Err(e) => {
                // Nothing was written: undo the counters so arrivals and sequences stay gap-free.
                tracing::error!(error = %e, "journal write failed");
                (state.next_arrival, state.last_seq) = before;
                for job in jobs {
                    *lock(&job.result) = Some(Err(e.duplicate()));
                }
            }
        }
    }

    /// Records that `stamp` claims its (host, seq) for `id`; false if that place already
    /// belongs to another delta (an equivocating host), in which case the stamp is dropped.
    pub(crate) fn claim_stamp(
        &self,
        state: &mut CommitState,
        claimed: &mut HashMap<(HostId, Seq), DeltaId>,
        preloaded: &HashMap<(HostId, Seq), Option<DeltaId>>,
        stamp: &Stamp,
        id: DeltaId,
    ) -> Result<bool> {
        let place = (stamp.host(), stamp.seq());
        let holder = match (claimed.get(&place), preloaded.get(&place)) {
            (Some(holder), _) => Some(*holder),
            (None, Some(holder)) => *holder,
            (None, None) => self.delta_at_origin(stamp.host(), stamp.seq())?,
        };
        match holder {
            Some(holder) if holder != id => {
                tracing::warn!(host = %stamp.host(), seq = %stamp.seq(), delta = %id, holder = %holder,
                    "dropping an origin stamp whose place is held by another delta");
                Ok(false)
            }
            _ => {
                claimed.insert(place, id);
                // Load the host's counter before raising it, so a later local stamp in
                // the same group cannot reuse this place.
                let last = self.last_seq(state, stamp.host())?;
                if last.is_none_or(|l| l < stamp.seq()) {
                    state.last_seq.insert(stamp.host(), stamp.seq());
                }
                Ok(true)
            }
        }
    }

    pub(crate) fn last_seq(&self, state: &mut CommitState, host: HostId) -> Result<Option<Seq>> {
        if let Some(seq) = state.last_seq.get(&host) {
            return Ok(Some(*seq));
        }
        let seq = self.highest_seq(host)?;
        if let Some(seq) = seq {
            state.last_seq.insert(host, seq);
        }
        Ok(seq)
    }

    /// The highest origin seq stored for `host`, gaps or not.
    pub fn highest_seq(&self, host: HostId) -> Result<Option<Seq>> {
        let start = layout::origin_key(host, Seq::new(u64::MAX));
        match self.last_with_prefix(CF_ORIGIN, &start, host.as_bytes())? {
            Some((key, _)) => {
                let raw: [u8; 8] = key
                    .get(32..40)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| Error::Corrupt("origin key".into()))?;
                Ok(Some(Seq::new(u64::from_be_bytes(raw))))
            }
            None => Ok(None),
        }
    }

    /// The delta stamped as (`host`, `seq`), if stored.
    pub fn delta_at_origin(&self, host: HostId, seq: Seq) -> Result<Option<DeltaId>> {
        match self
            .inner
            .db
            .get_pinned_cf(self.cf(CF_ORIGIN), layout::origin_key(host, seq))?
        {
            Some(v) => layout::id_at_end(&v).map(Some),
            None => Ok(None),
        }
    }

    /// The stored delta with this id.
    pub fn get(&self, id: DeltaId) -> Result<Option<StoredDelta>> {
        match self
            .inner
            .db
            .get_pinned_cf(self.cf(CF_DELTAS), id.as_bytes())?
        {
            Some(bytes) => layout::decode_record(&bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The stored deltas `ids`, in the same order (`None` for one not held), read in one
    /// batched lookup: cheaper than a [`Store::get`] per id for a page of them.
    pub fn get_many(&self, ids: &[DeltaId]) -> Result<Vec<Option<StoredDelta>>> {
        self.multi_get_records(ids, layout::decode_record)
    }

    /// The origin stamps of the stored deltas `ids`, in the same order (`None` for one not
    /// held), in one batched lookup and without decoding the deltas: what confidence needs.
    /// A stamp of a batch comes back naming its batch, without its proof.
    pub fn stamps_many(&self, ids: &[DeltaId]) -> Result<Vec<Option<Vec<Stamp>>>> {
        self.multi_get_records(ids, layout::decode_stamps)
    }

    /// The stored records of `ids` in one batched lookup, each decoded by `decode`.
    fn multi_get_records<T>(
        &self,
        ids: &[DeltaId],
        decode: impl Fn(&[u8]) -> Result<T>,
    ) -> Result<Vec<Option<T>>> {
        let found = self.inner.db.batched_multi_get_cf(
            self.cf(CF_DELTAS),
            ids.iter().map(|id| id.as_bytes()),
            false,
        );
        found
            .into_iter()
            .map(|value| match value? {
                Some(bytes) => decode(&bytes).map(Some),
                None => Ok(None),
            })
            .collect()
    }

    /// Flushes memtables to disk files (the WAL already makes writes durable; this shortens
    /// recovery after a restart).
    pub fn flush(&self) -> Result<()> {
        for name in ALL_CFS {
            self.inner.db.flush_cf(self.cf(name))?;
        }
        Ok(())
    }

    /// Bytes the journal takes: table files plus memtables, over every column family
    /// (RocksDB's own accounting; the write-ahead log is not counted).
    pub fn disk_bytes(&self) -> Result<u64> {
        let mut total = 0;
        for name in ALL_CFS {
            for property in [
                "rocksdb.total-sst-files-size",
                "rocksdb.cur-size-all-mem-tables",
            ] {
                total += self
                    .inner
                    .db
                    .property_int_value_cf(self.cf(name), property)?
                    .unwrap_or(0);
            }
        }
        Ok(total)
    }

    pub(crate) fn cf_handle(&self, name: &str) -> &ColumnFamily {
        self.cf(name)
    }
}

/// Shared block cache for every column family.
const BLOCK_CACHE_BYTES: usize = 64 << 20;

fn column_family_options(name: &str, cache: &Cache) -> Options {
    let mut opts = Options::default();
    // Index entries are hashes and counters, which do not compress; only records might.
    opts.set_compression_type(if name == CF_DELTAS {
        rocksdb::DBCompressionType::Lz4
    } else {
        rocksdb::DBCompressionType::None
    });
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    if name == CF_DELTAS || name == CF_ORIGIN {
        // Every put first looks up its id (and its stamps' places); almost all of those
        // lookups miss, and a bloom filter answers a miss without reading a block per file,
        // or, in the memtable, without a search of its skip list.
        table.set_bloom_filter(10.0, false);
        opts.set_memtable_whole_key_filtering(true);
        opts.set_memtable_prefix_bloom_ratio(0.05);
    }
    opts.set_block_based_table_factory(&table);
    opts
}

fn check_layout(db: &DB) -> Result<()> {
    let meta = db
        .cf_handle(CF_META)
        .ok_or_else(|| Error::Corrupt("meta column family missing".into()))?;
    match db.get_cf(meta, layout::META_LAYOUT)? {
        None => db.put_cf(meta, layout::META_LAYOUT, [layout::LAYOUT_VERSION])?,
        Some(v) if v.as_slice() == [layout::LAYOUT_VERSION] => {}
        Some(v) if v.as_slice() == [1] => {
            // Layout 1 differs only in how records hold stamps, and its records still
            // decode: raise it, so that builds of layout 1 refuse the folder from now on.
            tracing::info!("raising the journal's layout from version 1 to 2");
            db.put_cf(meta, layout::META_LAYOUT, [layout::LAYOUT_VERSION])?;
        }
        Some(v) => {
            return Err(Error::UnsupportedLayout {
                found: v.first().copied().unwrap_or(0),
                supported: layout::LAYOUT_VERSION,
            })
        }
    }
    Ok(())
}

/// The arrival position of the newest delta in the journal, if any.
pub(crate) fn last_arrival(db: &DB) -> Result<Option<Arrival>> {
    let cf = db
        .cf_handle(CF_ARRIVAL)
        .ok_or_else(|| Error::Corrupt("arrival column family missing".into()))?;
    match db.iterator_cf(cf, IteratorMode::End).next() {
        Some(entry) => {
            let (key, _) = entry?;
            let bytes: [u8; 8] = key
                .as_ref()
                .try_into()
                .map_err(|_| Error::Corrupt("arrival key".into()))?;
            Ok(Some(Arrival::new(u64::from_be_bytes(bytes))))
        }
        None => Ok(None),
    }
}

// The names below are used by scans in a sibling module.
pub(crate) use layout::{
    CF_ARRIVAL as ARRIVAL, CF_AUTHOR as AUTHOR, CF_ENTITY as ENTITY, CF_NEGATION as NEGATION,
    CF_ORIGIN as ORIGIN,
};

#[cfg(test)]
mod tests {
    use hypha_primitives::{DeltaBuilder, Hlc, Pointer};

    use super::*;

    fn delta(n: i64) -> Delta {
        DeltaBuilder::new(Hlc::new(n as u64, 0))
            .pointer(Pointer::value("n", n))
            .sign(&KeyPair::from_seed([1; 32]))
            .unwrap()
    }

    /// A delta that arrives carrying this host's own stamp (restored from a backup, say)
    /// and a new local write in the same commit group must not share a sequence number.
    #[test]
    fn a_group_never_reuses_a_place_claimed_earlier_in_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let host = KeyPair::from_seed([9; 32]);
        let (x, y) = (delta(1), delta(2));
        let own = Stamp::sign(x.id(), Seq::FIRST, &host);
        let items = vec![
            Prepared {
                delta: x.clone(),
                stamps: vec![own],
            },
            Prepared {
                delta: y.clone(),
                stamps: vec![],
            },
        ];
        store
            .submit(Job {
                items: Mutex::new(items),
                stamp_with: Some(host.clone()),
                result: Mutex::new(None),
            })
            .unwrap();
        assert_eq!(
            store.delta_at_origin(host.host_id(), Seq::FIRST).unwrap(),
            Some(x.id())
        );
        assert_eq!(
            store.delta_at_origin(host.host_id(), Seq::new(2)).unwrap(),
            Some(y.id())
        );
        assert_eq!(
            store.get(y.id()).unwrap().unwrap().stamps[0].seq(),
            Seq::new(2)
        );
    }

    #[test]
    fn stamps_per_delta_stay_bounded_across_puts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = delta(1);
        for round in 0..3u8 {
            let stamps = (0..MAX_STAMPS as u8)
                .map(|i| {
                    Stamp::sign(
                        d.id(),
                        Seq::FIRST,
                        &KeyPair::from_seed([
                            round, i, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
                            7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
                        ]),
                    )
                })
                .collect();
            store
                .put_batch(vec![StampedDelta {
                    delta: d.clone(),
                    stamps,
                }])
                .unwrap();
        }
        assert_eq!(store.get(d.id()).unwrap().unwrap().stamps.len(), MAX_STAMPS);
    }
}
