//! The materialized view store: resolved records kept in the journal's derived keyspace,
//! updated as deltas arrive and rebuilt from the journal on demand.
//!
//! Layout (all under the `v1/` prefix of the derived keyspace):
//! - `v1/cursor` → the arrival position of the last delta applied (u64, big-endian);
//! - `v1/schema/<type>` → the schema in force for the type and the delta that decided it;
//! - `v1/rec/<type>\0<entity>` → the record in its stored binary form (`stored.rs`).
//!
//! Records and the cursor are written in one atomic batch, so after a crash the store
//! resumes from the cursor and never double-applies or skips a delta. Records are
//! materialized flat: references stay `{"entity": id}` and readers nest at read time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use hypha_delta_store::{Arrival, DerivedWrite, Store, StoredDelta};
use hypha_primitives::{Delta, DeltaId, EntityId, Filter, Hlc, Schema};
use serde_json::{json, Value};

use crate::accumulate::absorb;
use crate::index::{is_negation, transactions_touched};
use crate::load::{load_index, AsOf};
use crate::lossless::value_filed_under;
use crate::lossy::{LocalOnly, Record, Resolver, SchemaSet, ViewSchema};
use crate::reader::{
    read_cursor, record_key, split_record_key, type_prefix, CURSOR_KEY, SCHEMAS_FINGERPRINT_KEY,
    SCHEMA_PREFIX,
};
use crate::stored::{decode_record, encode_record};
use crate::RecordReader;
use crate::{Error, Result};

/// Deltas applied per atomic write while catching up.
const APPLY_CHUNK: usize = 4096;
/// Decoded records kept in memory between chunks (about 1 KB each).
const CACHE_RECORDS: usize = 65_536;

/// The schema in force for a type: the latest schema delta by (time, id).
#[derive(Clone, Debug)]
struct Definition {
    time: Hlc,
    id: DeltaId,
    schema: Schema,
}

impl Definition {
    fn to_json(&self) -> Value {
        json!({"time": self.time.to_string(), "id": self.id.to_string(), "schema": self.schema.to_json()})
    }

    fn from_json(value: &Value) -> Result<Definition> {
        let corrupt = |what: &str| Error::Corrupt(format!("stored schema definition: {what}"));
        let time = value["time"]
            .as_str()
            .ok_or_else(|| corrupt("time"))?
            .parse()
            .map_err(|_| corrupt("time"))?;
        let id = value["id"]
            .as_str()
            .ok_or_else(|| corrupt("id"))?
            .parse()
            .map_err(|_| corrupt("id"))?;
        let schema = Schema::from_json(&value["schema"]).map_err(|e| corrupt(&e.to_string()))?;
        Ok(Definition { time, id, schema })
    }
}

/// Materialized records for every registered schema, kept up to date from the journal.
#[derive(Debug)]
pub struct Materializer {
    store: Store,
    definitions: BTreeMap<String, Definition>,
    schemas: SchemaSet,
    /// Records exactly as stored, by key, so the fast path need not read and decode them.
    /// Only this materializer writes records; it updates the cache after each successful
    /// write and empties it on any failure or rebuild.
    cache: HashMap<Vec<u8>, Record>,
    /// Records written since the last [`Materializer::take_changes`], when tracking is on.
    changes: Option<Vec<RecordChange>>,
}

/// A record a materializer wrote, as [`Materializer::take_changes`] hands it out, so that
/// whoever announces it need not read it back.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordChange {
    /// The record's type.
    pub entity_type: String,
    /// The entity.
    pub entity: String,
    /// The record as written; `None` when the entity stopped being one of this type.
    pub record: Option<Arc<Record>>,
}

impl Materializer {
    /// Starts recording which records each apply writes, for [`Materializer::take_changes`]
    /// (off by default, so a materializer nobody asks does not accumulate them).
    pub fn track_changes(&mut self) {
        self.changes.get_or_insert_with(Vec::new);
    }

    /// The records written (updated, created or removed) since the last call, in write
    /// order, each as written; a record may appear although its value did not change.
    pub fn take_changes(&mut self) -> Vec<RecordChange> {
        self.changes
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Opens the materialized views of `store` as they were last written (no rebuild);
    /// call [`Materializer::apply_pending`] to bring them up to date.
    pub fn open(store: Store) -> Result<Materializer> {
        let mut definitions = BTreeMap::new();
        for entry in store.derived_scan(SCHEMA_PREFIX, None) {
            let (_, value) = entry?;
            let value: Value =
                serde_json::from_slice(&value).map_err(|e| Error::Corrupt(e.to_string()))?;
            let definition = Definition::from_json(&value)?;
            definitions.insert(definition.schema.entity_type().to_owned(), definition);
        }
        let mut materializer = Materializer {
            store,
            definitions,
            schemas: SchemaSet::new(),
            cache: HashMap::new(),
            changes: None,
        };
        materializer.refresh_schema_set()?;
        // Views written before the fingerprint was stored, or by a build that did not keep
        // it, get the right one now.
        let write = materializer.fingerprint_write();
        if let DerivedWrite::Put(key, value) = &write {
            if materializer.store.derived_get(key)?.as_ref() != Some(value) {
                materializer.store.derived_write(&[write])?;
            }
        }
        Ok(materializer)
    }

    fn refresh_schema_set(&mut self) -> Result<()> {
        let mut set = SchemaSet::new();
        for definition in self.definitions.values() {
            set.insert(ViewSchema::new(definition.schema.clone())?);
        }
        self.schemas = set;
        Ok(())
    }

    /// The schemas in force, by type.
    pub fn schemas(&self) -> impl Iterator<Item = &Schema> {
        self.definitions.values().map(|d| &d.schema)
    }

    /// The arrival position of the last delta applied.
    pub fn cursor(&self) -> Result<Option<Arrival>> {
        read_cursor(&self.store)
    }

    /// Applies every delta stored after the cursor; returns how many were applied.
    pub fn apply_pending(&mut self) -> Result<usize> {
        let mut applied = 0;
        loop {
            let after = self.cursor()?;
            let chunk: Vec<Arc<StoredDelta>> = self
                .store
                .scan_arrival(after)
                .take(APPLY_CHUNK)
                .map(|stored| stored.map(Arc::new))
                .collect::<Result<_, _>>()?;
            let Some(last) = chunk.last().map(|s| s.arrival) else {
                return Ok(applied);
            };
            self.apply_chunk(&chunk, last)?;
            applied += chunk.len();
        }
    }

    /// Applies deltas a follower of the journal handed out (`Store::follow` from this
    /// materializer's cursor), without reading them again; those at or before the cursor
    /// are skipped. Returns how many were applied; a gap after the cursor is
    /// [`Error::Corrupt`](crate::Error), as the follower never leaves one.
    pub fn apply(&mut self, deltas: &[Arc<StoredDelta>]) -> Result<usize> {
        let next = self.cursor()?.map_or(1, |c| c.get() + 1);
        let start = deltas.partition_point(|d| d.arrival.get() < next);
        let fresh = &deltas[start..];
        let Some(last) = fresh.last().map(|s| s.arrival) else {
            return Ok(0);
        };
        if fresh[0].arrival.get() != next
            || fresh
                .windows(2)
                .any(|w| w[1].arrival.get() != w[0].arrival.get() + 1)
        {
            return Err(crate::Error::Corrupt(format!(
                "views were handed deltas from arrival {} while expecting {next}",
                fresh[0].arrival
            )));
        }
        for chunk in fresh.chunks(APPLY_CHUNK) {
            let last_of_chunk = chunk.last().map_or(last, |s| s.arrival);
            self.apply_chunk(chunk, last_of_chunk)?;
        }
        Ok(fresh.len())
    }

    fn apply_chunk(&mut self, chunk: &[Arc<StoredDelta>], last: Arrival) -> Result<()> {
        // Schema changes take effect in memory before the write; if the chunk fails they
        // must be undone, or the retry would no longer see them as changes.
        let definitions = self.definitions.clone();
        let result = self.apply_chunk_inner(chunk, last);
        if result.is_err() {
            self.cache.clear();
            self.definitions = definitions;
            self.refresh_schema_set()?;
        }
        result
    }

    fn apply_chunk_inner(&mut self, chunk: &[Arc<StoredDelta>], last: Arrival) -> Result<()> {
        let mut writes = Vec::new();
        let mut changed_types = BTreeSet::new();
        let mut affected = BTreeSet::new();
        // Records updated in place by the fast path in this chunk, by key.
        let mut folded: BTreeMap<Vec<u8>, (EntityId, Record)> = BTreeMap::new();
        // Shared by the whole chunk: a delta already walked has contributed its entities,
        // so a chain of negations is walked once, not once per link.
        let mut visited = BTreeSet::new();
        for stored in chunk {
            if let Some(t) = self.consider_schema(&stored.delta, &mut writes) {
                changed_types.insert(t);
            }
            if changed_types.is_empty() && self.fold(&stored.delta, &affected, &mut folded)? {
                continue;
            }
            self.affected_entities(&stored.delta, &mut visited, &mut affected)?;
        }
        if !changed_types.is_empty() {
            self.refresh_schema_set()?;
            for t in &changed_types {
                writes.push(DerivedWrite::DeletePrefix(type_prefix(t)));
            }
            // A changed schema re-resolves every entity for that type.
            for entity in self.store.entities() {
                affected.insert(EntityId::new(entity?));
            }
        }
        // What the cache holds once the write has succeeded.
        let mut fresh = Vec::new();
        for (key, (entity, record)) in folded {
            // Entities re-resolved below are written from the journal instead.
            if !affected.contains(&entity) {
                writes.push(DerivedWrite::Put(key.clone(), encode_record(&record)?));
                fresh.push((key, Some(record)));
            }
        }
        for entity in &affected {
            self.recompute(entity, last, &mut writes, &mut fresh)?;
        }
        writes.push(DerivedWrite::Put(
            CURSOR_KEY.to_vec(),
            last.get().to_be_bytes().to_vec(),
        ));
        self.store.derived_write(&writes)?;
        if !changed_types.is_empty() || self.cache.len() + fresh.len() > CACHE_RECORDS {
            self.cache.clear();
        }
        if let Some(changes) = &mut self.changes {
            changes.extend(fresh.iter().filter_map(|(key, record)| {
                let (entity_type, entity) = split_record_key(key)?;
                Some(RecordChange {
                    entity_type,
                    entity,
                    record: record.clone().map(Arc::new),
                })
            }));
        }
        for (key, record) in fresh {
            match record {
                Some(record) if self.cache.len() < CACHE_RECORDS => {
                    self.cache.insert(key, record);
                }
                _ => {
                    self.cache.remove(&key);
                }
            }
        }
        Ok(())
    }

    /// The fast path: folds a plain delta (no negation, no transaction, not negated) into
    /// the stored records it touches, if every one of them can absorb it exactly (see
    /// `accumulate`). Returns false, changing nothing, when the delta needs the slow path.
    fn fold(
        &mut self,
        delta: &Delta,
        affected: &BTreeSet<EntityId>,
        folded: &mut BTreeMap<Vec<u8>, (EntityId, Record)>,
    ) -> Result<bool> {
        if is_negation(delta) || transactions_touched(delta).next().is_some() {
            return Ok(false);
        }
        if !self.store.negations_of(delta.id())?.is_empty() {
            return Ok(false);
        }
        // Records are changed in place: if any of them cannot absorb the delta, the caller
        // re-resolves every entity it touches, and those folded records are dropped.
        for (entity, context) in delta.target_entities() {
            let Some(property) = context else { continue };
            if affected.contains(entity) {
                return Ok(false);
            }
            let Some(filed_value) = value_filed_under(delta, entity, property) else {
                continue;
            };
            let Some(value) = filed_value else {
                return Ok(false);
            };
            for (entity_type, definition) in &self.definitions {
                let Some(spec) = definition.schema.properties().get(property) else {
                    continue;
                };
                let key = record_key(entity_type, entity.as_str());
                if !folded.contains_key(&key) {
                    // Taken out of the cache: it is put back after the chunk is written.
                    let record = match self.cache.remove(&key) {
                        Some(record) => record,
                        None => match self.store.derived_get(&key)? {
                            Some(bytes) => decode_record(&bytes)?,
                            // A first value for this entity and type: the slow path makes
                            // the record.
                            None => return Ok(false),
                        },
                    };
                    folded.insert(key.clone(), (entity.clone(), record));
                }
                let Some((_, record)) = folded.get_mut(&key) else {
                    return Ok(false);
                };
                if !absorb(record, property, spec.resolver, delta, value) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Registers a schema delta if it is newer than the type's current definition.
    fn consider_schema(&mut self, delta: &Delta, writes: &mut Vec<DerivedWrite>) -> Option<String> {
        let schema = match Schema::from_delta(delta) {
            Ok(Some(schema)) => schema,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(delta = %delta.id(), error = %e, "ignoring a malformed schema delta");
                return None;
            }
        };
        let entity_type = schema.entity_type().to_owned();
        let newer = self
            .definitions
            .get(&entity_type)
            .is_none_or(|d| (delta.time(), delta.id()) > (d.time, d.id));
        if !newer {
            return None;
        }
        let definition = Definition {
            time: delta.time(),
            id: delta.id(),
            schema,
        };
        writes.push(DerivedWrite::Put(
            [SCHEMA_PREFIX, entity_type.as_bytes()].concat(),
            definition.to_json().to_string().into_bytes(),
        ));
        self.definitions.insert(entity_type.clone(), definition);
        // Later puts of the key in the same batch win: it ends up describing them all.
        writes.push(self.fingerprint_write());
        Some(entity_type)
    }

    /// The write that stores the fingerprint of the definitions in memory.
    fn fingerprint_write(&self) -> DerivedWrite {
        let stored = self.definitions.iter().map(|(entity_type, definition)| {
            let key = [SCHEMA_PREFIX, entity_type.as_bytes()].concat();
            (key, definition.to_json().to_string().into_bytes())
        });
        DerivedWrite::Put(
            SCHEMAS_FINGERPRINT_KEY.to_vec(),
            fingerprint(stored).to_be_bytes().to_vec(),
        )
    }

    /// The entities whose views a delta can change: those it is filed under, those of the
    /// deltas it negates (recursively), and those of its transactions' members.
    ///
    /// A worklist rather than recursion: negation chains can be thousands of deltas long.
    fn affected_entities(
        &self,
        delta: &Delta,
        visited: &mut BTreeSet<DeltaId>,
        out: &mut BTreeSet<EntityId>,
    ) -> Result<()> {
        let mut work = vec![delta.clone()];
        while let Some(delta) = work.pop() {
            if !visited.insert(delta.id()) {
                continue;
            }
            for (entity, context) in delta.target_entities() {
                if context.is_some() {
                    out.insert(entity.clone());
                }
            }
            for negated in delta.negated_ids() {
                if let Some(stored) = self.store.get(negated)? {
                    work.push(stored.delta);
                }
            }
            for tx in transactions_touched(&delta) {
                for member in self.store.scan_entity(tx.as_str(), None) {
                    work.push(member?.delta);
                }
            }
        }
        Ok(())
    }

    /// Re-resolves `entity` for every type; an entity with no live delta under any of a
    /// type's properties is not an instance of it.
    fn recompute(
        &self,
        entity: &EntityId,
        as_of: Arrival,
        writes: &mut Vec<DerivedWrite>,
        fresh: &mut Vec<(Vec<u8>, Option<Record>)>,
    ) -> Result<()> {
        if self.definitions.is_empty() {
            return Ok(());
        }
        // As of the cursor being written, so that deltas after it are applied exactly once.
        let index = load_index(
            &self.store,
            std::slice::from_ref(entity),
            AsOf::Arrival(as_of),
            0,
        )?;
        let resolver = Resolver::new(&index, &self.schemas, &LocalOnly).max_depth(0);
        let lossless = resolver.lossless(entity);
        for (entity_type, definition) in &self.definitions {
            let key = record_key(entity_type, entity.as_str());
            let is_instance = definition
                .schema
                .properties()
                .keys()
                .any(|p| lossless.properties.contains_key(p));
            if is_instance {
                let record = resolver.record(entity, entity_type)?;
                writes.push(DerivedWrite::Put(key.clone(), encode_record(&record)?));
                fresh.push((key, Some(record)));
            } else {
                writes.push(DerivedWrite::Delete(key.clone()));
                fresh.push((key, None));
            }
        }
        Ok(())
    }

    /// Throws the materialized views away and recomputes them from the journal, calling
    /// `progress(done, total)` as entities are resolved.
    pub fn rebuild(&mut self, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
        self.cache.clear();
        self.store
            .derived_write(&[DerivedWrite::DeletePrefix(b"v1/".to_vec())])?;
        self.definitions.clear();
        let last = self.store.last_arrival()?;
        let mut writes = Vec::new();
        let store = self.store.clone();
        for stored in store.scan_arrival(None) {
            let stored = stored?;
            if last.is_some_and(|l| stored.arrival > l) {
                break;
            }
            self.consider_schema(&stored.delta, &mut writes);
        }
        writes.push(self.fingerprint_write());
        self.refresh_schema_set()?;
        let entities: Vec<EntityId> = self
            .store
            .entities()
            .map(|e| e.map(EntityId::new))
            .collect::<Result<_, _>>()?;
        let total = entities.len() as u64;
        let Some(last) = last else {
            return Ok(());
        };
        for (done, entity) in entities.iter().enumerate() {
            // Rebuilt records are not cached: there can be far more than the cache holds.
            self.recompute(entity, last, &mut writes, &mut Vec::new())?;
            if writes.len() >= APPLY_CHUNK {
                self.store.derived_write(&std::mem::take(&mut writes))?;
            }
            progress(done as u64 + 1, total);
        }
        writes.push(DerivedWrite::Put(
            CURSOR_KEY.to_vec(),
            last.get().to_be_bytes().to_vec(),
        ));
        self.store.derived_write(&writes)?;
        Ok(())
    }

    /// The materialized record of `entity` as an `entity_type`, as JSON.
    pub fn record(&self, entity_type: &str, entity: &str) -> Result<Option<Value>> {
        Ok(self.typed_record(entity_type, entity)?.map(|r| r.to_json()))
    }

    /// The materialized record of `entity` as an `entity_type`.
    pub fn typed_record(&self, entity_type: &str, entity: &str) -> Result<Option<Record>> {
        Materializer::reader(self.store.clone()).typed_record(entity_type, entity)
    }

    /// Up to `limit` records of a type, in entity order, after entity `after`, as JSON.
    pub fn records(
        &self,
        entity_type: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Value>> {
        Ok(self
            .typed_records(entity_type, after, limit)?
            .iter()
            .map(Record::to_json)
            .collect())
    }

    /// Up to `limit` typed records of a type, in entity order, after entity `after`.
    pub fn typed_records(
        &self,
        entity_type: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Record>> {
        Materializer::reader(self.store.clone()).typed_records(entity_type, after, limit)
    }

    /// A reader of `store`'s materialized records, for anyone but the materializer.
    pub fn reader(store: Store) -> RecordReader {
        RecordReader { store }
    }

    /// A number that changes whenever the schemas in force change: a hash of the stored
    /// definitions' bytes, which the materializer stores beside them in the same writes,
    /// so checking it is one point read, cheap enough for every request. Opening a
    /// materializer writes it when it is missing or wrong (views written before it was
    /// stored, or by a build that did not keep it); until then it is computed from the
    /// definitions.
    pub fn definitions_fingerprint(store: &Store) -> Result<u64> {
        if let Some(bytes) = store.derived_get(SCHEMAS_FINGERPRINT_KEY)? {
            let bytes: [u8; 8] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| Error::Corrupt("the schemas' fingerprint is not 8 bytes".into()))?;
            return Ok(u64::from_be_bytes(bytes));
        }
        let stored = store
            .derived_scan(SCHEMA_PREFIX, None)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(fingerprint(
            stored
                .into_iter()
                .map(|(k, v)| (k.into_vec(), v.into_vec())),
        ))
    }

    /// The schemas in force in `store`'s materialized views, with the delta that decided
    /// each: what a reader generates types from (the id changes exactly when the schema does).
    pub fn definitions(store: &Store) -> Result<Vec<(Schema, DeltaId)>> {
        store
            .derived_scan(SCHEMA_PREFIX, None)
            .map(|entry| {
                let (_, value) = entry?;
                let value: Value =
                    serde_json::from_slice(&value).map_err(|e| Error::Corrupt(e.to_string()))?;
                let definition = Definition::from_json(&value)?;
                Ok((definition.schema, definition.id))
            })
            .collect()
    }

    /// Records of a type matching a JSON-Logic filter over each record's JSON, up to
    /// `limit`; a record that cannot be read is reported beside the results instead of
    /// failing the query.
    pub fn query(&self, entity_type: &str, filter: &Filter, limit: usize) -> Result<QueryResult> {
        let prefix = type_prefix(entity_type);
        let mut result = QueryResult::default();
        for entry in self.store.derived_scan(&prefix, None) {
            if result.records.len() >= limit {
                break;
            }
            let (key, bytes) = entry?;
            match decode_record(&bytes).map(|r| r.to_json()) {
                Ok(record) => {
                    if filter.matches(&record) {
                        result.records.push(record);
                    }
                }
                Err(e) => result.errors.push((
                    String::from_utf8_lossy(&key[prefix.len()..]).into_owned(),
                    e.to_string(),
                )),
            }
        }
        Ok(result)
    }
}

/// A stable hash of stored definitions (key and value bytes, in key order).
fn fingerprint(stored: impl Iterator<Item = (Vec<u8>, Vec<u8>)>) -> u64 {
    let mut hasher = blake3::Hasher::new();
    for (key, value) in stored {
        hasher.update(&(key.len() as u64).to_be_bytes());
        hasher.update(&key);
        hasher.update(&(value.len() as u64).to_be_bytes());
        hasher.update(&value);
    }
    let hash = hasher.finalize();
    u64::from_be_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// The answer to a query over materialized records.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueryResult {
    /// The matching records.
    pub records: Vec<Value>,
    /// Records that could not be read: (entity, error).
    pub errors: Vec<(String, String)>,
}
