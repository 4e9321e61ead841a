//! Lossy views: a schema's resolvers applied to lossless views, with provenance on every
//! field and nested resolution of references.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use hypha_primitives::{DeltaId, EntityId, Hlc, Schema, ValueType};
use serde_json::{json, Map, Value};

use crate::index::DeltaIndex;
use crate::liveness::Liveness;
use crate::lossless::{Filed, LosslessView};
use crate::resolve::{Builtin, FieldValue, Input, Resolve, Skipped};
use crate::{Error, Result};

/// How far a value has propagated: the number of peers known to hold the deciding deltas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Confidence {
    /// Peers known to hold every deciding delta; 0 means this node only.
    pub peers: u32,
}

impl Confidence {
    /// Known to be held by this node only.
    pub const LOCAL_ONLY: Confidence = Confidence { peers: 0 };
}

/// Where views learn propagation confidence; the network layer implements it.
pub trait ConfidenceSource {
    /// How many peers are known to hold delta `id`.
    fn confidence(&self, id: DeltaId) -> Confidence;
}

/// The confidence source of a node without peers: everything is local only.
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalOnly;

impl ConfidenceSource for LocalOnly {
    fn confidence(&self, _: DeltaId) -> Confidence {
        Confidence::LOCAL_ONLY
    }
}

/// How many deciding deltas a [`Field`] lists: the latest ones.
pub const DECIDERS_KEPT: usize = 16;

/// One resolved property with its provenance.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Field {
    /// The value; `None` when the property has none.
    pub value: Option<FieldValue>,
    /// The deltas that decided it: the last [`DECIDERS_KEPT`] of them in the resolver's
    /// order, which for the built-in resolvers is (time, id) order.
    pub decided_by: Vec<DeltaId>,
    /// How many deltas decided it (an aggregate such as `sum` can have millions; only the
    /// latest are listed, so records stay small and update in constant time).
    pub deciders: usize,
    /// The latest time among the deciding deltas.
    pub updated_at: Option<Hlc>,
    /// The lowest confidence among the deciding deltas listed in `decided_by`.
    pub confidence: Confidence,
    /// Deltas the resolver could not use, with the reason.
    pub skipped: Vec<Skipped>,
}

impl Field {
    /// True when fewer than `threshold` peers are known to hold what decided the value.
    pub fn is_provisional(&self, threshold: u32) -> bool {
        self.confidence.peers < threshold
    }

    /// JSON: value (null when absent), decided_by, deciders, updated_at, confidence, skipped.
    pub fn to_json(&self) -> Value {
        json!({
            "value": self.value.as_ref().map_or(Value::Null, FieldValue::to_json),
            "decided_by": self.decided_by.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "deciders": self.deciders,
            "updated_at": self.updated_at.map(|t| t.to_string()),
            "confidence": self.confidence.peers,
            "skipped": self.skipped.iter().map(|s| json!({"id": s.id.to_string(), "reason": s.reason})).collect::<Vec<_>>(),
        })
    }
}

/// An entity resolved by a schema.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// The entity.
    pub entity: EntityId,
    /// The schema's entity type.
    pub entity_type: String,
    /// Every property of the schema, resolved.
    pub fields: BTreeMap<String, Field>,
    /// Required properties without a value.
    pub missing_required: Vec<String>,
    /// Error conditions that touch this entity (over-full or conflicting transactions).
    pub errors: Vec<String>,
}

impl Record {
    /// JSON: `{"id", "type", "fields": {…}, "missing_required", "errors"}`.
    pub fn to_json(&self) -> Value {
        let fields: Map<String, Value> = self
            .fields
            .iter()
            .map(|(k, f)| (k.clone(), f.to_json()))
            .collect();
        json!({
            "id": self.entity.as_str(),
            "type": self.entity_type,
            "fields": fields,
            "missing_required": self.missing_required,
            "errors": self.errors,
        })
    }

    /// Replaces each field's confidence with what `source` knows now: the lowest over the
    /// field's listed deciding deltas (0 when nothing decided it). Materialized records
    /// are stored as a node knowing no peers sees them, so that they are a function of the
    /// journal alone; readers join the network's knowledge in as they read.
    pub fn join_confidence(&mut self, source: &dyn ConfidenceSource) {
        for field in self.fields.values_mut() {
            field.confidence = field
                .decided_by
                .iter()
                .map(|id| source.confidence(*id))
                .min()
                .unwrap_or_default();
        }
    }

    /// The record's confidence: the lowest over the fields something decided (0 when
    /// nothing decided any).
    pub fn confidence(&self) -> Confidence {
        self.fields
            .values()
            .filter(|f| !f.decided_by.is_empty())
            .map(|f| f.confidence)
            .min()
            .unwrap_or_default()
    }

    /// [`Record::to_json`] with `"provisional"` on the record and on each field: true when
    /// fewer than `threshold` peers are known to hold what decided it.
    pub fn to_json_at(&self, threshold: u32) -> Value {
        let mut json = self.to_json();
        for (name, field) in &self.fields {
            json["fields"][name]["provisional"] = Value::Bool(field.is_provisional(threshold));
        }
        json["provisional"] = Value::Bool(self.confidence().peers < threshold);
        json
    }
}

/// A schema with a resolver per property, checked for dependency cycles and missing
/// dependencies, and the order to resolve properties in.
#[derive(Clone, Debug)]
pub struct ViewSchema {
    schema: Schema,
    resolvers: BTreeMap<String, Arc<dyn Resolve>>,
    order: Vec<String>,
}

impl ViewSchema {
    /// The schema with its built-in resolvers.
    pub fn new(schema: Schema) -> Result<ViewSchema> {
        let resolvers = schema
            .properties()
            .iter()
            .map(|(name, spec)| {
                (
                    name.clone(),
                    Arc::new(Builtin::new(spec.resolver)) as Arc<dyn Resolve>,
                )
            })
            .collect();
        Self::checked(schema, resolvers)
    }

    /// Replaces one property's resolver with a custom one.
    pub fn with_resolver(self, property: &str, resolver: Arc<dyn Resolve>) -> Result<ViewSchema> {
        if !self.schema.properties().contains_key(property) {
            return Err(Error::Schema(format!(
                "type {} has no property {property:?}",
                self.schema.entity_type()
            )));
        }
        let mut resolvers = self.resolvers;
        resolvers.insert(property.to_owned(), resolver);
        Self::checked(self.schema, resolvers)
    }

    /// The underlying schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    fn checked(
        schema: Schema,
        resolvers: BTreeMap<String, Arc<dyn Resolve>>,
    ) -> Result<ViewSchema> {
        // Depth-first topological order; a grey node met again is a cycle.
        fn visit(
            name: &str,
            resolvers: &BTreeMap<String, Arc<dyn Resolve>>,
            state: &mut BTreeMap<String, bool>,
            order: &mut Vec<String>,
            type_name: &str,
        ) -> Result<()> {
            match state.get(name) {
                Some(true) => return Ok(()),
                Some(false) => {
                    return Err(Error::Schema(format!(
                        "type {type_name}: resolver dependencies form a cycle through {name:?}"
                    )))
                }
                None => {}
            }
            state.insert(name.to_owned(), false);
            let resolver = resolvers.get(name).ok_or_else(|| {
                Error::Schema(format!(
                    "type {type_name}: a resolver depends on missing property {name:?}"
                ))
            })?;
            for dep in resolver.dependencies() {
                visit(dep, resolvers, state, order, type_name)?;
            }
            state.insert(name.to_owned(), true);
            order.push(name.to_owned());
            Ok(())
        }
        let mut state = BTreeMap::new();
        let mut order = Vec::new();
        for name in resolvers.keys() {
            visit(
                name,
                &resolvers,
                &mut state,
                &mut order,
                schema.entity_type(),
            )?;
        }
        Ok(ViewSchema {
            schema,
            resolvers,
            order,
        })
    }
}

/// The schemas a resolver knows, by entity type.
#[derive(Clone, Debug, Default)]
pub struct SchemaSet {
    schemas: BTreeMap<String, ViewSchema>,
}

impl SchemaSet {
    /// No schemas.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds or replaces a schema.
    pub fn insert(&mut self, schema: ViewSchema) {
        self.schemas
            .insert(schema.schema.entity_type().to_owned(), schema);
    }
    /// The schema of an entity type.
    pub fn get(&self, entity_type: &str) -> Option<&ViewSchema> {
        self.schemas.get(entity_type)
    }
}

/// The default limit on nested resolution.
pub const DEFAULT_MAX_DEPTH: usize = 3;

/// Builds lossless and lossy views over one [`DeltaIndex`].
pub struct Resolver<'a> {
    index: &'a DeltaIndex,
    schemas: &'a SchemaSet,
    confidence: &'a dyn ConfidenceSource,
    max_depth: usize,
    liveness: RefCell<Liveness<'a>>,
}

impl std::fmt::Debug for Resolver<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("deltas", &self.index.len())
            .field("max_depth", &self.max_depth)
            .finish()
    }
}

impl<'a> Resolver<'a> {
    /// A resolver over `index` with these schemas and confidence source.
    pub fn new(
        index: &'a DeltaIndex,
        schemas: &'a SchemaSet,
        confidence: &'a dyn ConfidenceSource,
    ) -> Self {
        Self {
            index,
            schemas,
            confidence,
            max_depth: DEFAULT_MAX_DEPTH,
            liveness: RefCell::new(Liveness::new(index)),
        }
    }

    /// Limits how many levels of references lossy views follow.
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth;
        self
    }

    /// The lossless view of `entity`.
    pub fn lossless(&self, entity: &EntityId) -> LosslessView {
        let mut liveness = self.liveness.borrow_mut();
        let mut properties = BTreeMap::new();
        for (property, ids) in self.index.filed(entity) {
            let mut filed: Vec<Filed> = ids
                .iter()
                .filter(|id| liveness.is_live(**id))
                .filter_map(|id| self.index.get(*id))
                .filter_map(|d| Filed::new(Arc::clone(d), entity, property))
                .collect();
            if filed.is_empty() {
                continue;
            }
            filed.sort_by_key(|f| (f.delta.time(), f.delta.id()));
            properties.insert(property.to_owned(), filed);
        }
        LosslessView {
            entity: entity.clone(),
            properties,
        }
    }

    /// The record of `entity` as an `entity_type`.
    pub fn record(&self, entity: &EntityId, entity_type: &str) -> Result<Record> {
        let mut path = BTreeSet::new();
        self.record_at(entity, entity_type, 0, &mut path)
    }

    fn record_at(
        &self,
        entity: &EntityId,
        entity_type: &str,
        depth: usize,
        path: &mut BTreeSet<EntityId>,
    ) -> Result<Record> {
        let schema = self
            .schemas
            .get(entity_type)
            .ok_or_else(|| Error::UnknownType(entity_type.to_owned()))?;
        let lossless = self.lossless(entity);
        path.insert(entity.clone());
        let mut fields = BTreeMap::new();
        for property in &schema.order {
            let inputs: Vec<Input<'_>> = lossless
                .properties
                .get(property)
                .into_iter()
                .flatten()
                .map(|f| Input {
                    id: f.delta.id(),
                    author: f.delta.author(),
                    time: f.delta.time(),
                    value: f.value.as_ref(),
                })
                .collect();
            let resolution = schema.resolvers[property].resolve(&inputs, &fields);
            let value_type = &schema.schema.properties()[property].value_type;
            let value = match resolution.value {
                Some(v) => Some(self.follow(v, value_type, depth, path)?),
                None => None,
            };
            let mut decided_by = resolution.decided_by;
            let updated_at = decided_by
                .iter()
                .filter_map(|id| self.index.get(*id))
                .map(|d| d.time())
                .max();
            let deciders = decided_by.len();
            decided_by.drain(..deciders.saturating_sub(DECIDERS_KEPT));
            let confidence = decided_by
                .iter()
                .map(|id| self.confidence.confidence(*id))
                .min()
                .unwrap_or_default();
            fields.insert(
                property.clone(),
                Field {
                    value,
                    decided_by,
                    deciders,
                    updated_at,
                    confidence,
                    skipped: resolution.skipped,
                },
            );
        }
        path.remove(entity);
        let missing_required = schema
            .schema
            .properties()
            .iter()
            .filter(|(name, spec)| {
                spec.required && fields.get(*name).is_none_or(|f| f.value.is_none())
            })
            .map(|(name, _)| name.clone())
            .collect();
        Ok(Record {
            entity: entity.clone(),
            entity_type: entity_type.to_owned(),
            fields,
            missing_required,
            errors: self.errors_touching(entity),
        })
    }

    /// Replaces entity references by nested records where the type says so, within the
    /// depth limit and without revisiting an entity on the current path.
    fn follow(
        &self,
        value: FieldValue,
        value_type: &ValueType,
        depth: usize,
        path: &mut BTreeSet<EntityId>,
    ) -> Result<FieldValue> {
        Ok(match (value, value_type) {
            (FieldValue::Entity(e), ValueType::Reference(t))
                if depth < self.max_depth
                    && !path.contains(&e)
                    && self.schemas.get(t).is_some() =>
            {
                FieldValue::Record(Box::new(self.record_at(&e, t, depth + 1, path)?))
            }
            (FieldValue::List(items), ValueType::List(inner)) => FieldValue::List(
                items
                    .into_iter()
                    .map(|v| self.follow(v, inner, depth, path))
                    .collect::<Result<_>>()?,
            ),
            (FieldValue::List(items), t @ ValueType::Reference(_)) => FieldValue::List(
                items
                    .into_iter()
                    .map(|v| self.follow(v, t, depth, path))
                    .collect::<Result<_>>()?,
            ),
            (other, _) => other,
        })
    }

    /// Descriptions of transaction errors among the deltas filed under `entity`.
    fn errors_touching(&self, entity: &EntityId) -> Vec<String> {
        let liveness = self.liveness.borrow();
        let mut errors = BTreeSet::new();
        for (_, ids) in self.index.filed(entity) {
            for id in ids {
                for (tx, state) in liveness.blocking_transactions(*id) {
                    if state.is_error() {
                        errors.insert(state.describe(&tx));
                    }
                }
            }
        }
        errors.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::Resolution;
    use hypha_primitives::{DeltaBuilder, KeyPair, Pointer, Primitive};

    /// A custom resolver: the `first` field's value, upper-cased, if it is a string.
    #[derive(Debug)]
    struct Shout {
        deps: Vec<String>,
    }

    impl Resolve for Shout {
        fn dependencies(&self) -> &[String] {
            &self.deps
        }
        fn resolve(&self, _: &[Input<'_>], deps: &BTreeMap<String, Field>) -> Resolution {
            let value = deps.get(&self.deps[0]).and_then(|f| match &f.value {
                Some(FieldValue::Primitive(Primitive::String(s))) => {
                    Some(FieldValue::Primitive(Primitive::String(s.to_uppercase())))
                }
                _ => None,
            });
            Resolution {
                value,
                ..Default::default()
            }
        }
    }

    fn schema() -> Schema {
        Schema::from_json(&serde_json::json!({"type": "user", "properties": {
            "name": {"resolver": "lww"}, "loud": {"resolver": "lww"}, "other": {"resolver": "lww"}
        }}))
        .unwrap()
    }

    #[test]
    fn custom_resolvers_read_their_dependencies_resolved_first() {
        let view = ViewSchema::new(schema())
            .unwrap()
            .with_resolver(
                "loud",
                Arc::new(Shout {
                    deps: vec!["name".into()],
                }),
            )
            .unwrap();
        let mut schemas = SchemaSet::new();
        schemas.insert(view);
        let mut index = DeltaIndex::new();
        let delta = DeltaBuilder::new(Hlc::new(1, 0))
            .pointer(Pointer::entity("user", "alice", "name"))
            .pointer(Pointer::value("name", "alice"))
            .sign(&KeyPair::from_seed([1; 32]))
            .unwrap();
        index.insert(Arc::new(delta));
        let record = Resolver::new(&index, &schemas, &LocalOnly)
            .record(&EntityId::new("alice"), "user")
            .unwrap();
        assert_eq!(
            record.fields["loud"].value.as_ref().unwrap().to_json(),
            "ALICE"
        );
        assert!(
            record.fields["loud"].is_provisional(1),
            "local-only values are provisional"
        );
        assert!(!record.fields["loud"].is_provisional(0));
    }

    #[test]
    fn dependency_cycles_and_missing_dependencies_are_schema_errors() {
        let cycle = ViewSchema::new(schema())
            .unwrap()
            .with_resolver(
                "loud",
                Arc::new(Shout {
                    deps: vec!["other".into()],
                }),
            )
            .unwrap()
            .with_resolver(
                "other",
                Arc::new(Shout {
                    deps: vec!["loud".into()],
                }),
            );
        assert!(matches!(cycle, Err(Error::Schema(m)) if m.contains("cycle")));
        let missing = ViewSchema::new(schema()).unwrap().with_resolver(
            "loud",
            Arc::new(Shout {
                deps: vec!["nope".into()],
            }),
        );
        assert!(matches!(missing, Err(Error::Schema(m)) if m.contains("missing property")));
        let unknown = ViewSchema::new(schema())
            .unwrap()
            .with_resolver("nope", Arc::new(Shout { deps: vec![] }));
        assert!(matches!(unknown, Err(Error::Schema(_))));
    }

    #[test]
    fn confidence_is_joined_at_read_and_marks_provisional_fields() {
        use std::collections::HashMap;
        struct Known(HashMap<DeltaId, Confidence>);
        impl ConfidenceSource for Known {
            fn confidence(&self, id: DeltaId) -> Confidence {
                self.0.get(&id).copied().unwrap_or_default()
            }
        }
        let key = KeyPair::generate();
        let d1 = DeltaBuilder::new(Hlc::new(1, 0))
            .pointer(Pointer::entity("user", "u1", "name"))
            .pointer(Pointer::value("name", "ada"))
            .sign(&key)
            .unwrap();
        let d2 = DeltaBuilder::new(Hlc::new(2, 0))
            .pointer(Pointer::entity("user", "u1", "age"))
            .pointer(Pointer::value("age", 36i64))
            .sign(&key)
            .unwrap();
        let mut index = DeltaIndex::new();
        index.insert(Arc::new(d1.clone()));
        index.insert(Arc::new(d2.clone()));
        let user = Schema::from_json(&serde_json::json!({"type": "user", "properties": {
            "name": {"resolver": "lww"}, "age": {"resolver": "lww"}
        }}))
        .unwrap();
        let mut schemas = SchemaSet::new();
        schemas.insert(ViewSchema::new(user).unwrap());
        let mut record = Resolver::new(&index, &schemas, &LocalOnly)
            .record(&EntityId::new("u1"), "user")
            .unwrap();
        assert_eq!(record.confidence(), Confidence::LOCAL_ONLY);
        let json = record.to_json_at(1);
        assert_eq!(json["provisional"], true);
        assert_eq!(json["fields"]["name"]["provisional"], true);
        let known = Known(HashMap::from([
            (d1.id(), Confidence { peers: 2 }),
            (d2.id(), Confidence { peers: 1 }),
        ]));
        record.join_confidence(&known);
        assert_eq!(record.fields["name"].confidence.peers, 2);
        assert_eq!(record.fields["age"].confidence.peers, 1);
        assert_eq!(record.confidence().peers, 1, "the least confirmed field");
        let json = record.to_json_at(2);
        assert_eq!(json["fields"]["name"]["provisional"], false);
        assert_eq!(json["fields"]["age"]["provisional"], true);
        assert_eq!(json["provisional"], true);
        assert_eq!(record.to_json_at(1)["provisional"], false);
        assert_eq!(json["fields"]["name"]["confidence"], 2);
    }

    #[test]
    fn unknown_types_are_an_error() {
        let index = DeltaIndex::new();
        let schemas = SchemaSet::new();
        let err = Resolver::new(&index, &schemas, &LocalOnly)
            .record(&EntityId::new("a"), "ghost")
            .unwrap_err();
        assert!(matches!(err, Error::UnknownType(_)));
    }

    #[test]
    fn nesting_stops_at_the_depth_limit() {
        let schema = Schema::from_json(&serde_json::json!({"type": "node", "properties": {
            "next": {"resolver": "lww", "type": {"ref": "node"}}
        }}))
        .unwrap();
        let mut schemas = SchemaSet::new();
        schemas.insert(ViewSchema::new(schema).unwrap());
        let mut index = DeltaIndex::new();
        let key = KeyPair::from_seed([1; 32]);
        for i in 0..6 {
            let d = DeltaBuilder::new(Hlc::new(1, 0))
                .pointer(Pointer::entity("node", format!("n{i}"), "next"))
                .pointer(Pointer::entity("next", format!("n{}", i + 1), "prev"))
                .sign(&key)
                .unwrap();
            index.insert(Arc::new(d));
        }
        let record = Resolver::new(&index, &schemas, &LocalOnly)
            .max_depth(2)
            .record(&EntityId::new("n0"), "node")
            .unwrap();
        let json = record.to_json();
        let level2 = &json["fields"]["next"]["value"]["fields"]["next"]["value"];
        assert_eq!(level2["id"], "n2");
        assert_eq!(
            level2["fields"]["next"]["value"],
            serde_json::json!({"entity": "n3"})
        );
    }
}
