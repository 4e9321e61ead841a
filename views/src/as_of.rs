//! Records as they stood at a time: resolved from the journal's indexes for the entities
//! involved, with the schema in force then, by the same rules as the materialized views,
//! without touching the materialized store.
//!
//! "At a time" is an HLC time (the same answer on every node) or an arrival position (this
//! node's own history): [`AsOf`]. A negation written after it does not hide a value, a
//! transaction completed only after it is not visible, and a schema change after it does
//! not apply.

use hypha_delta_store::Store;
use hypha_primitives::{EntityId, Schema, SCHEMA_DEFINITION_CONTEXT, SCHEMA_ENTITY_PREFIX};

use crate::{load_index, AsOf, LocalOnly, Record, Resolver, Result, SchemaSet, ViewSchema};

/// The schema of `entity_type` in force at `as_of`: of the valid schema deltas for the type
/// written (or arrived) by then, the latest by (time, id), as the materialized views pick
/// among all of them. `None` when the type had none yet.
pub fn schema_as_of(store: &Store, entity_type: &str, as_of: AsOf) -> Result<Option<Schema>> {
    let entity = format!("{SCHEMA_ENTITY_PREFIX}{entity_type}");
    let mut best: Option<(hypha_primitives::Hlc, hypha_primitives::DeltaId, Schema)> = None;
    for stored in store.scan_entity(&entity, Some(SCHEMA_DEFINITION_CONTEXT)) {
        let stored = stored?;
        let in_time = match as_of {
            AsOf::Now => true,
            AsOf::Time(t) => stored.delta.time() <= t,
            AsOf::Arrival(a) => stored.arrival <= a,
        };
        if !in_time {
            continue;
        }
        // A malformed schema delta is ignored, as the views ignore it.
        let Ok(Some(schema)) = Schema::from_delta(&stored.delta) else {
            continue;
        };
        if schema.entity_type() != entity_type {
            continue;
        }
        let key = (stored.delta.time(), stored.delta.id());
        if best.as_ref().is_none_or(|(t, id, _)| key > (*t, *id)) {
            best = Some((key.0, key.1, schema));
        }
    }
    Ok(best.map(|(_, _, schema)| schema))
}

/// The record of `entity` as an `entity_type` as it stood at `as_of`, resolved as the
/// materialized views resolve it (flat: references stay `{"entity": id}`, confidence
/// local only). `None` when the type had no schema then, or the entity was not one of its
/// instances (no live delta under any of its properties).
pub fn record_as_of(
    store: &Store,
    entity_type: &str,
    entity: &EntityId,
    as_of: AsOf,
) -> Result<Option<Record>> {
    AsOfReader::new(store, entity_type, as_of)?.record(entity)
}

/// Reads many records of one type as of one time: the schema in force then is found once.
#[derive(Debug)]
pub struct AsOfReader<'a> {
    store: &'a Store,
    entity_type: String,
    as_of: AsOf,
    /// The type's schema then, ready to resolve with; `None` when it had none.
    schemas: Option<(Schema, SchemaSet)>,
}

impl<'a> AsOfReader<'a> {
    /// A reader of `entity_type` records as of `as_of`.
    pub fn new(store: &'a Store, entity_type: &str, as_of: AsOf) -> Result<AsOfReader<'a>> {
        let schemas = match schema_as_of(store, entity_type, as_of)? {
            Some(schema) => {
                let mut set = SchemaSet::new();
                set.insert(ViewSchema::new(schema.clone())?);
                Some((schema, set))
            }
            None => None,
        };
        Ok(AsOfReader {
            store,
            entity_type: entity_type.to_owned(),
            as_of,
            schemas,
        })
    }

    /// Whether the type had a schema then (without one, no entity was one of its records).
    pub fn has_schema(&self) -> bool {
        self.schemas.is_some()
    }

    /// The record of `entity` then, as [`record_as_of`] answers.
    pub fn record(&self, entity: &EntityId) -> Result<Option<Record>> {
        let Some((schema, schemas)) = &self.schemas else {
            return Ok(None);
        };
        let index = load_index(self.store, std::slice::from_ref(entity), self.as_of, 0)?;
        let resolver = Resolver::new(&index, schemas, &LocalOnly).max_depth(0);
        let lossless = resolver.lossless(entity);
        let is_instance = schema
            .properties()
            .keys()
            .any(|p| lossless.properties.contains_key(p));
        if !is_instance {
            return Ok(None);
        }
        Ok(Some(resolver.record(entity, &self.entity_type)?))
    }
}
