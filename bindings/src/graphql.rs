//! The GraphQL endpoint: a schema generated from the registered Hypha schemas (one GraphQL
//! type per entity type), regenerated when a schema delta changes them, over the node's
//! materialized records, journal and network.
//!
//! For an entity type `user` with properties `name` and `age`:
//!
//! ```graphql
//! type User { id: ID!  name: String  age: Float  _meta(field: String): Meta! }
//! type UserConnection { nodes: [User!]!  endCursor: String  hasNextPage: Boolean! }
//! type Query {
//!   user(id: ID!): User
//!   users(filter: JSON, first: Int, after: String): UserConnection!
//!   entity(id: ID!, asOf: String): JSON      delta(id: ID!, fetch: Boolean): JSON
//!   deltas(filter: JSON, after: String, first: Int): DeltaPage!
//!   schemas: [JSON!]!  peers: [ID!]!  node: NodeInfo!  whoHas(entity: ID!): [JSON!]!
//! }
//! type Mutation { write(...) submit(...) negate(...) putSchema(...): WriteResult! }
//! ```
//!
//! `_meta` without an argument describes the whole record (provisional if any field is);
//! `_meta(field: "name")` describes one field. See `markdown/GRAPHQL.md`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_graphql::dynamic::{
    Field, FieldFuture, FieldValue, InputObject, InputValue, Object, ResolverContext, Scalar,
    Schema, SchemaError, Subscription, SubscriptionField, SubscriptionFieldFuture, TypeRef,
};
use async_graphql::futures_util::stream::{self, Stream};
use async_graphql::{Error as GqlError, Value as GqlValue};
use hypha_delta_store::{Arrival, Store, StoredDelta};
use hypha_primitives::{
    Delta, DeltaId, EntityId, Filter, Hlc, Pointer, Primitive, ResolverName, Schema as HyphaSchema,
    Target, ValueType,
};
use hypha_views::{
    load_index, AsOf, FieldValue as HyphaValue, LocalOnly, Materializer, Record, RecordChange,
    Resolver, SchemaSet,
};
use serde_json::{json, Value};

use crate::http::{blocking, internal, ApiError, NodeApi, DEFAULT_WAIT};
use crate::hub::{DeltaHub, Membership};

/// Deepest query accepted.
pub const MAX_DEPTH: usize = 12;
/// Most complex query accepted (async-graphql's field-count measure).
pub const MAX_COMPLEXITY: usize = 2_000;
/// Largest page a connection returns.
const MAX_PAGE: usize = 1_000;
/// Records a filtered connection may scan for one page before it stops early.
const MAX_SCAN: usize = 100_000;

/// The GraphQL service: the current generated schema and what it reads.
pub struct GraphQl {
    api: Arc<NodeApi>,
    current: RwLock<(Fingerprint, Arc<Schema>)>,
}

/// A hash of the stored schema definitions (`Materializer::definitions_fingerprint`).
type Fingerprint = u64;

impl std::fmt::Debug for GraphQl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphQl").finish_non_exhaustive()
    }
}

/// Request data: whether the request may write (see [`NodeApi::may_write`]).
#[derive(Clone, Copy, Debug)]
pub struct MayWrite(pub bool);

/// Refuses a mutation unless the request may write.
fn check_write(ctx: &ResolverContext<'_>) -> Result<(), GqlError> {
    let allowed = match ctx.data_opt::<MayWrite>() {
        Some(MayWrite(allowed)) => *allowed,
        // No HTTP headers (a websocket, or in process): allowed only without a token.
        None => shared(ctx)?.api.may_write(&axum::http::HeaderMap::new()),
    };
    if allowed {
        Ok(())
    } else {
        Err(gql_error(
            "this node requires \"Authorization: Bearer <token>\" for mutations",
        ))
    }
}

/// What resolvers reach through the schema's data.
struct Shared {
    api: Arc<NodeApi>,
    /// The registered schemas, by entity type, as the generated types were built from.
    types: BTreeMap<String, HyphaSchema>,
    /// Peers that must hold a value's deciding deltas for it not to be provisional.
    confirmed_at: usize,
}

impl GraphQl {
    /// The service over a node's API; the schema is generated now and again whenever the
    /// registered schemas change.
    pub fn new(api: Arc<NodeApi>) -> Result<GraphQl, ApiError> {
        let fingerprint = Materializer::definitions_fingerprint(api.store()).map_err(internal)?;
        let types = registered(&api)?;
        let schema = build(api.clone(), types).map_err(internal)?;
        Ok(GraphQl {
            api,
            current: RwLock::new((fingerprint, Arc::new(schema))),
        })
    }

    /// The schema to run a request with, regenerated first if a schema delta changed the
    /// registered types since the last request (checked by a hash of the stored definitions,
    /// so the usual request parses nothing).
    pub fn schema(&self) -> Result<Arc<Schema>, ApiError> {
        let fingerprint =
            Materializer::definitions_fingerprint(self.api.store()).map_err(internal)?;
        {
            let current = self.current.read().map_err(|_| internal("schema lock"))?;
            if current.0 == fingerprint {
                return Ok(current.1.clone());
            }
        }
        let types = registered(&self.api)?;
        let schema = Arc::new(build(self.api.clone(), types).map_err(internal)?);
        let mut current = self.current.write().map_err(|_| internal("schema lock"))?;
        *current = (fingerprint, schema.clone());
        Ok(schema)
    }

    /// The node API it serves.
    pub fn api(&self) -> &NodeApi {
        &self.api
    }

    /// Runs one request.
    pub async fn execute(&self, request: async_graphql::Request) -> async_graphql::Response {
        match self.schema() {
            Ok(schema) => schema.execute(request).await,
            Err(e) => async_graphql::Response::from_errors(vec![async_graphql::ServerError::new(
                e.1, None,
            )]),
        }
    }
}

/// The registered schemas as the materialized views hold them, by entity type.
fn registered(api: &NodeApi) -> Result<BTreeMap<String, HyphaSchema>, ApiError> {
    let definitions = Materializer::definitions(api.store()).map_err(internal)?;
    Ok(definitions
        .into_iter()
        .map(|(schema, _)| (schema.entity_type().to_owned(), schema))
        .collect())
}

/// A GraphQL name from any text: letters, digits and underscores, not starting with a
/// digit (and never the reserved `__` prefix).
fn graphql_name(text: &str) -> String {
    let mut name: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) || name.starts_with("__") {
        name.insert(0, 'T');
    }
    name
}

/// `user` → `User`.
fn type_name(entity_type: &str) -> String {
    let name = graphql_name(entity_type);
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => name,
    }
}

/// `User` → `user`.
fn field_name(type_name: &str) -> String {
    let mut chars = type_name.chars();
    match chars.next() {
        Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

fn gql_error(e: impl std::fmt::Display) -> GqlError {
    GqlError::new(e.to_string())
}

fn api_error(e: ApiError) -> GqlError {
    GqlError::new(e.1)
}

fn to_gql(value: Value) -> GqlValue {
    GqlValue::from_json(value).unwrap_or(GqlValue::Null)
}

fn shared<'a>(ctx: &ResolverContext<'a>) -> Result<&'a Shared, GqlError> {
    ctx.data::<Shared>()
}

/// The JSON argument `name`, if given.
fn json_arg(ctx: &ResolverContext<'_>, name: &str) -> Result<Option<Value>, GqlError> {
    match ctx.args.get(name) {
        None => Ok(None),
        Some(v) if v.is_null() => Ok(None),
        Some(v) => Ok(Some(v.as_value().clone().into_json().map_err(gql_error)?)),
    }
}

fn filter_arg(ctx: &ResolverContext<'_>) -> Result<Option<Filter>, GqlError> {
    json_arg(ctx, "filter")?
        .map(|f| {
            Filter::from_json_str(&f.to_string()).map_err(|e| gql_error(format!("filter: {e}")))
        })
        .transpose()
}

fn first_arg(ctx: &ResolverContext<'_>, default: usize) -> Result<usize, GqlError> {
    match ctx.args.get("first") {
        None => Ok(default),
        Some(v) if v.is_null() => Ok(default),
        Some(v) => {
            let n = v.i64()?;
            if n < 0 {
                return Err(gql_error("first must not be negative"));
            }
            Ok((n as usize).min(MAX_PAGE))
        }
    }
}

fn id_arg(ctx: &ResolverContext<'_>) -> Result<DeltaId, GqlError> {
    ctx.args
        .try_get("id")?
        .string()?
        .parse()
        .map_err(|e| gql_error(format!("id: {e}")))
}

/// A record as a resolver's parent value.
struct RecordValue {
    record: Record,
}

/// The GraphQL type of a property.
fn property_type(
    spec: &hypha_primitives::PropertySpec,
    names: &BTreeMap<String, String>,
) -> TypeRef {
    fn scalar(value_type: &ValueType, names: &BTreeMap<String, String>) -> TypeRef {
        match value_type {
            ValueType::String => TypeRef::named(TypeRef::STRING),
            ValueType::Number => TypeRef::named(TypeRef::FLOAT),
            ValueType::Bool => TypeRef::named(TypeRef::BOOLEAN),
            ValueType::Any => TypeRef::named("JSON"),
            ValueType::Reference(t) => match names.get(t) {
                Some(name) => TypeRef::named(name.clone()),
                None => TypeRef::named("JSON"),
            },
            ValueType::List(inner) => TypeRef::List(Box::new(scalar(inner, names))),
        }
    }
    match (&spec.value_type, spec.resolver) {
        (ValueType::List(_), _) => scalar(&spec.value_type, names),
        // A set resolves to a list of the property's values.
        (t, ResolverName::Set) => TypeRef::List(Box::new(scalar(t, names))),
        (t, _) => scalar(t, names),
    }
}

/// A resolved value for GraphQL: primitives as themselves, references followed when the
/// property's type names a registered schema.
fn value_out<'a>(
    value: &HyphaValue,
    value_type: &ValueType,
    records: &[(EntityId, Option<Record>)],
) -> FieldValue<'a> {
    match value {
        HyphaValue::List(items) => {
            let inner = match value_type {
                ValueType::List(inner) => inner.as_ref(),
                t => t,
            };
            FieldValue::list(items.iter().map(|v| value_out(v, inner, records)))
        }
        HyphaValue::Entity(e) => match records.iter().find(|(id, _)| id == e) {
            Some((_, Some(record))) => FieldValue::owned_any(RecordValue {
                record: record.clone(),
            }),
            _ => FieldValue::value(to_gql(json!({"entity": e.as_str()}))),
        },
        other => FieldValue::value(to_gql(other.to_json())),
    }
}

/// Entities referenced by a field's value.
fn referenced(value: &HyphaValue, out: &mut Vec<EntityId>) {
    match value {
        HyphaValue::Entity(e) => out.push(e.clone()),
        HyphaValue::List(items) => items.iter().for_each(|v| referenced(v, out)),
        _ => {}
    }
}

/// The `_meta` object of a field or a whole record.
async fn meta(shared: &Shared, fields: Vec<&hypha_views::Field>) -> Value {
    let mut decided_by: Vec<DeltaId> = Vec::new();
    let mut deciders = 0;
    let mut updated_at: Option<Hlc> = None;
    for field in &fields {
        decided_by.extend(field.decided_by.iter().copied());
        deciders += field.deciders;
        updated_at = updated_at.max(field.updated_at);
    }
    decided_by.sort();
    decided_by.dedup();
    let mut confidence: Option<usize> = None;
    for id in &decided_by {
        let c = shared.api.confidence(*id).await;
        confidence = Some(confidence.map_or(c, |m| m.min(c)));
    }
    let confidence = confidence.unwrap_or(0);
    json!({
        "provisional": confidence < shared.confirmed_at,
        "confidence": confidence,
        "decidedBy": decided_by.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "deciders": deciders,
        "updatedAt": updated_at.map(|t| t.to_string()),
    })
}

fn meta_type() -> Object {
    let field = |name: &'static str, ty: TypeRef| {
        Field::new(name, ty, move |ctx| {
            FieldFuture::new(async move {
                let meta = ctx.parent_value.try_downcast_ref::<Value>()?;
                Ok(Some(FieldValue::value(to_gql(meta[name].clone()))))
            })
        })
    };
    Object::new("Meta")
        .description("How sure this node is of a value: provisional until enough peers hold what decided it.")
        .field(field("provisional", TypeRef::named_nn(TypeRef::BOOLEAN)))
        .field(field("confidence", TypeRef::named_nn(TypeRef::INT)))
        .field(field("decidedBy", TypeRef::named_nn_list_nn(TypeRef::ID)))
        .field(field("deciders", TypeRef::named_nn(TypeRef::INT)))
        .field(field("updatedAt", TypeRef::named(TypeRef::STRING)))
}

/// Reads the record of `entity` as `entity_type`.
async fn read_record(
    api: &NodeApi,
    entity_type: &str,
    entity: &str,
) -> Result<Option<Record>, GqlError> {
    // A point read of one record takes microseconds (the memtable or the block cache): done
    // on the async worker, it costs less than the two thread hand-offs of spawn_blocking,
    // which were most of a read's time under load (see markdown/GRAPHQL.md).
    Materializer::reader(api.store().clone())
        .typed_record(entity_type, entity)
        .map_err(|e| api_error(internal(e)))
}

/// The object type of one registered schema.
fn record_type(schema: &HyphaSchema, names: &BTreeMap<String, String>) -> Object {
    let name = names[schema.entity_type()].clone();
    let mut object = Object::new(name.clone())
        .description(format!(
            "Records of entity type {:?}.",
            schema.entity_type()
        ))
        .field(Field::new("id", TypeRef::named_nn(TypeRef::ID), |ctx| {
            FieldFuture::new(async move {
                let parent = ctx.parent_value.try_downcast_ref::<RecordValue>()?;
                Ok(Some(FieldValue::value(
                    parent.record.entity.as_str().to_owned(),
                )))
            })
        }))
        .field(
            Field::new("_meta", TypeRef::named_nn("Meta"), |ctx| {
                FieldFuture::new(async move {
                    let shared = shared(&ctx)?;
                    let parent = ctx.parent_value.try_downcast_ref::<RecordValue>()?;
                    let fields: Vec<&hypha_views::Field> = match ctx.args.get("field") {
                        Some(f) if !f.is_null() => {
                            let name = f.string()?;
                            vec![parent
                                .record
                                .fields
                                .get(name)
                                .ok_or_else(|| gql_error(format!("no field {name:?}")))?]
                        }
                        _ => parent.record.fields.values().collect(),
                    };
                    Ok(Some(FieldValue::owned_any(meta(shared, fields).await)))
                })
            })
            .argument(InputValue::new("field", TypeRef::named(TypeRef::STRING)))
            .description("Provenance and confidence of the record, or of one field."),
        );
    let mut used: Vec<String> = vec!["id".into(), "_meta".into()];
    for (property, spec) in schema.properties() {
        let field = graphql_name(property);
        if used.contains(&field) {
            continue;
        }
        used.push(field.clone());
        let property = property.clone();
        let value_type = spec.value_type.clone();
        let target = match &spec.value_type {
            ValueType::Reference(t) => Some(t.clone()),
            ValueType::List(inner) => match inner.as_ref() {
                ValueType::Reference(t) => Some(t.clone()),
                _ => None,
            },
            _ => None,
        }
        .filter(|t| names.contains_key(t));
        object = object.field(Field::new(field, property_type(spec, names), move |ctx| {
            let property = property.clone();
            let value_type = value_type.clone();
            let target = target.clone();
            FieldFuture::new(async move {
                let parent = ctx.parent_value.try_downcast_ref::<RecordValue>()?;
                let Some(value) = parent
                    .record
                    .fields
                    .get(&property)
                    .and_then(|f| f.value.clone())
                else {
                    return Ok(None);
                };
                // References to a registered type are followed (the query depth limit
                // bounds how far).
                let mut records = Vec::new();
                if let Some(target) = &target {
                    let shared = shared(&ctx)?;
                    let mut ids = Vec::new();
                    referenced(&value, &mut ids);
                    for id in ids {
                        let record = read_record(&shared.api, target, id.as_str()).await?;
                        records.push((id, record));
                    }
                }
                Ok(Some(value_out(&value, &value_type, &records)))
            })
        }));
    }
    object
}

fn connection_type(name: &str) -> Object {
    let connection = format!("{name}Connection");
    Object::new(connection)
        .field(Field::new(
            "nodes",
            TypeRef::named_nn_list_nn(name.to_owned()),
            |ctx| {
                FieldFuture::new(async move {
                    let page = ctx.parent_value.try_downcast_ref::<Page>()?;
                    Ok(Some(FieldValue::list(page.records.iter().map(|r| {
                        FieldValue::owned_any(RecordValue { record: r.clone() })
                    }))))
                })
            },
        ))
        .field(Field::new(
            "endCursor",
            TypeRef::named(TypeRef::STRING),
            |ctx| {
                FieldFuture::new(async move {
                    let page = ctx.parent_value.try_downcast_ref::<Page>()?;
                    Ok(page.end_cursor.clone().map(FieldValue::value))
                })
            },
        ))
        .field(Field::new(
            "hasNextPage",
            TypeRef::named_nn(TypeRef::BOOLEAN),
            |ctx| {
                FieldFuture::new(async move {
                    let page = ctx.parent_value.try_downcast_ref::<Page>()?;
                    Ok(Some(FieldValue::value(page.has_next)))
                })
            },
        ))
}

/// One page of a connection.
struct Page {
    records: Vec<Record>,
    end_cursor: Option<String>,
    has_next: bool,
}

/// Reads a page of `entity_type` records after `after`, keeping those matching `filter`.
fn read_page(
    store: hypha_delta_store::Store,
    entity_type: &str,
    filter: Option<&Filter>,
    after: Option<String>,
    first: usize,
) -> Result<Page, ApiError> {
    let reader = Materializer::reader(store);
    let mut records = Vec::new();
    let mut cursor = after;
    let mut scanned = 0;
    loop {
        let chunk = reader
            .typed_records(entity_type, cursor.as_deref(), 256)
            .map_err(internal)?;
        let exhausted = chunk.len() < 256;
        for record in chunk {
            scanned += 1;
            cursor = Some(record.entity.as_str().to_owned());
            if filter.is_none_or(|f| f.matches(&record.to_json())) {
                if records.len() == first {
                    return Ok(Page {
                        end_cursor: records
                            .last()
                            .map(|r: &Record| r.entity.as_str().to_owned()),
                        records,
                        has_next: true,
                    });
                }
                records.push(record);
            }
        }
        if exhausted || scanned >= MAX_SCAN {
            return Ok(Page {
                end_cursor: records.last().map(|r| r.entity.as_str().to_owned()),
                records,
                has_next: !exhausted,
            });
        }
    }
}

fn write_result_type() -> Object {
    let field = |name: &'static str, ty: TypeRef| {
        Field::new(name, ty, move |ctx| {
            FieldFuture::new(async move {
                let answer = ctx.parent_value.try_downcast_ref::<Value>()?;
                Ok(Some(FieldValue::value(to_gql(answer[name].clone()))))
            })
        })
    };
    Object::new("WriteResult")
        .description("A stored delta and how far it had spread when the mutation answered.")
        .field(field("id", TypeRef::named_nn(TypeRef::ID)))
        .field(field("seq", TypeRef::named(TypeRef::INT)))
        .field(field("confidence", TypeRef::named_nn(TypeRef::INT)))
        .field(field("reached", TypeRef::named_nn(TypeRef::BOOLEAN)))
}

fn json_object(name: &str, fields: &[(&'static str, TypeRef)]) -> Object {
    let mut object = Object::new(name);
    for (field, ty) in fields {
        let field = *field;
        object = object.field(Field::new(field, ty.clone(), move |ctx| {
            FieldFuture::new(async move {
                let value = ctx.parent_value.try_downcast_ref::<Value>()?;
                Ok(Some(FieldValue::value(to_gql(value[field].clone()))))
            })
        }));
    }
    object
}

/// The confidence arguments of a mutation.
fn wait_args(ctx: &ResolverContext<'_>) -> Result<(usize, Duration), GqlError> {
    let min = match ctx.args.get("minConfidence") {
        Some(v) if !v.is_null() => usize::try_from(v.i64()?).map_err(gql_error)?,
        _ => 0,
    };
    let timeout = match ctx.args.get("timeoutMs") {
        Some(v) if !v.is_null() => {
            Duration::from_millis(u64::try_from(v.i64()?).map_err(gql_error)?)
        }
        _ => DEFAULT_WAIT,
    };
    Ok((min, timeout))
}

fn with_wait_args(field: Field) -> Field {
    field
        .argument(InputValue::new(
            "minConfidence",
            TypeRef::named(TypeRef::INT),
        ))
        .argument(InputValue::new("timeoutMs", TypeRef::named(TypeRef::INT)))
}

/// A pointer from a `PointerInput`.
fn pointer_from_input(
    input: async_graphql::dynamic::ObjectAccessor<'_>,
) -> Result<Pointer, GqlError> {
    let local = input.try_get("localContext")?.string()?.to_owned();
    let context = match input.get("targetContext") {
        Some(v) if !v.is_null() => Some(v.string()?.to_owned()),
        _ => None,
    };
    let entity = input.get("entity").filter(|v| !v.is_null());
    let delta = input.get("delta").filter(|v| !v.is_null());
    let value = input
        .get("value")
        .filter(|v| !v.is_null() || input.get("entity").is_none() && input.get("delta").is_none());
    let target = match (entity, delta, value) {
        (Some(e), None, None) => Target::Entity(EntityId::new(e.string()?)),
        (None, Some(d), None) => Target::Delta(d.string()?.parse().map_err(gql_error)?),
        (None, None, Some(v)) => {
            let json = v.as_value().clone().into_json().map_err(gql_error)?;
            Target::Value(Primitive::from_json(&json).map_err(gql_error)?)
        }
        _ => {
            return Err(gql_error(
                "a pointer needs exactly one of entity, delta or value",
            ))
        }
    };
    Ok(Pointer {
        local_context: local,
        target,
        target_context: context,
    })
}

/// Generates the schema for `types`.
fn build(api: Arc<NodeApi>, types: BTreeMap<String, HyphaSchema>) -> Result<Schema, SchemaError> {
    let names: BTreeMap<String, String> = types.keys().map(|t| (t.clone(), type_name(t))).collect();
    let mut query = Object::new("Query");
    let mut builder_types: Vec<Object> = vec![meta_type(), write_result_type()];
    let reserved = [
        "entity", "delta", "deltas", "schemas", "peers", "node", "whoHas",
    ];
    let mut taken: Vec<String> = reserved.iter().map(|s| s.to_string()).collect();
    for (entity_type, schema) in &types {
        let name = names[entity_type].clone();
        let one = field_name(&name);
        let many = format!("{one}s");
        if taken.contains(&one)
            || taken.contains(&many)
            || names.values().filter(|n| **n == name).count() > 1
        {
            tracing::warn!(
                entity_type,
                "no GraphQL type: its name collides with another"
            );
            continue;
        }
        taken.push(one.clone());
        taken.push(many.clone());
        builder_types.push(record_type(schema, &names));
        builder_types.push(connection_type(&name));
        let t = entity_type.clone();
        query = query.field(
            Field::new(one, TypeRef::named(name.clone()), move |ctx| {
                let t = t.clone();
                FieldFuture::new(async move {
                    let shared = shared(&ctx)?;
                    let id = ctx.args.try_get("id")?.string()?;
                    Ok(read_record(&shared.api, &t, id)
                        .await?
                        .map(|record| FieldValue::owned_any(RecordValue { record })))
                })
            })
            .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID))),
        );
        let t = entity_type.clone();
        query = query.field(
            Field::new(
                many,
                TypeRef::named_nn(format!("{name}Connection")),
                move |ctx| {
                    let t = t.clone();
                    FieldFuture::new(async move {
                        let shared = shared(&ctx)?;
                        let filter = filter_arg(&ctx)?;
                        let first = first_arg(&ctx, 100)?;
                        let after = match ctx.args.get("after") {
                            Some(v) if !v.is_null() => Some(v.string()?.to_owned()),
                            _ => None,
                        };
                        let store = shared.api.store().clone();
                        let page =
                            blocking(move || read_page(store, &t, filter.as_ref(), after, first))
                                .await
                                .map_err(api_error)?;
                        Ok(Some(FieldValue::owned_any(page)))
                    })
                },
            )
            .argument(InputValue::new("filter", TypeRef::named("JSON")))
            .argument(InputValue::new("first", TypeRef::named(TypeRef::INT)))
            .argument(InputValue::new("after", TypeRef::named(TypeRef::STRING))),
        );
    }
    query = generic_queries(query);
    let transaction_result = Object::new("TransactionResult")
        .field(Field::new(
            "transaction",
            TypeRef::named_nn(TypeRef::ID),
            |ctx| {
                FieldFuture::new(async move {
                    let v = ctx.parent_value.try_downcast_ref::<Value>()?;
                    Ok(Some(FieldValue::value(to_gql(v["transaction"].clone()))))
                })
            },
        ))
        .field(Field::new(
            "writes",
            TypeRef::named_nn_list_nn("WriteResult"),
            |ctx| {
                FieldFuture::new(async move {
                    let v = ctx.parent_value.try_downcast_ref::<Value>()?;
                    let writes = v["writes"].as_array().cloned().unwrap_or_default();
                    Ok(Some(FieldValue::list(
                        writes.into_iter().map(FieldValue::owned_any),
                    )))
                })
            },
        ));
    let delta_page = json_object(
        "DeltaPage",
        &[
            ("deltas", TypeRef::named_nn_list_nn("JSON")),
            ("cursor", TypeRef::named(TypeRef::STRING)),
            ("hasMore", TypeRef::named_nn(TypeRef::BOOLEAN)),
        ],
    );
    let node_info = json_object(
        "NodeInfo",
        &[
            ("id", TypeRef::named_nn(TypeRef::ID)),
            ("version", TypeRef::named_nn(TypeRef::STRING)),
            ("deltas", TypeRef::named_nn(TypeRef::INT)),
            ("storedBytes", TypeRef::named_nn(TypeRef::INT)),
        ],
    );
    let pointer_input = InputObject::new("PointerInput")
        .description("One pointer: a local context and exactly one of entity, delta or value.")
        .field(InputValue::new(
            "localContext",
            TypeRef::named_nn(TypeRef::STRING),
        ))
        .field(InputValue::new("entity", TypeRef::named(TypeRef::STRING)))
        .field(InputValue::new("delta", TypeRef::named(TypeRef::ID)))
        .field(InputValue::new("value", TypeRef::named("JSON")))
        .field(InputValue::new(
            "targetContext",
            TypeRef::named(TypeRef::STRING),
        ));
    let mut builder = Schema::build("Query", Some("Mutation"), Some("Subscription"))
        .register(subscriptions())
        .register(Scalar::new("JSON").description("Any JSON value."))
        .register(query)
        .register(mutations())
        .register(delta_page)
        .register(node_info)
        .register(pointer_input)
        .register(transaction_result)
        .data(Shared {
            api,
            types,
            confirmed_at: 1,
        })
        .extension(crate::guard::QueryGuard)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY);
    for t in builder_types {
        builder = builder.register(t);
    }
    builder.finish()
}

fn generic_queries(query: Object) -> Object {
    query
        .field(
            Field::new("entity", TypeRef::named("JSON"), |ctx| {
                FieldFuture::new(async move {
                    let shared = shared(&ctx)?;
                    let entity = EntityId::new(ctx.args.try_get("id")?.string()?);
                    let as_of = match ctx.args.get("asOf") {
                        Some(v) if !v.is_null() => {
                            AsOf::Time(v.string()?.parse::<Hlc>().map_err(gql_error)?)
                        }
                        _ => AsOf::Now,
                    };
                    let store = shared.api.store().clone();
                    let view = blocking(move || {
                        let index = load_index(&store, std::slice::from_ref(&entity), as_of, 0)
                            .map_err(internal)?;
                        let schemas = SchemaSet::new();
                        Ok(Resolver::new(&index, &schemas, &LocalOnly)
                            .lossless(&entity)
                            .to_json())
                    })
                    .await
                    .map_err(api_error)?;
                    Ok(Some(FieldValue::value(to_gql(view))))
                })
            })
            .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
            .argument(InputValue::new("asOf", TypeRef::named(TypeRef::STRING)))
            .description("The lossless view: every live delta under each property, now or as of an HLC time."),
        )
        .field(
            Field::new("delta", TypeRef::named("JSON"), |ctx| {
                FieldFuture::new(async move {
                    let shared = shared(&ctx)?;
                    let id = id_arg(&ctx)?;
                    let fetch = match ctx.args.get("fetch") {
                        Some(v) if !v.is_null() => v.boolean()?,
                        _ => false,
                    };
                    let found = shared.api.delta(id, fetch).await.map_err(api_error)?;
                    Ok(found.map(|json| FieldValue::value(to_gql(json))))
                })
            })
            .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
            .argument(InputValue::new("fetch", TypeRef::named(TypeRef::BOOLEAN)))
            .description("A delta by id; with `fetch: true`, asked of the linked peers when it is not held here (and stored)."),
        )
        .field(
            Field::new("whoHas", TypeRef::named_nn_list_nn("JSON"), |ctx| {
                FieldFuture::new(async move {
                    let shared = shared(&ctx)?;
                    let entity = ctx.args.try_get("entity")?.string()?.to_owned();
                    let holders = shared.api.who_has(&entity).await;
                    Ok(Some(FieldValue::list(holders.into_iter().map(|(peer, deltas)| {
                        FieldValue::value(to_gql(json!({"peer": peer.to_string(), "deltas": deltas})))
                    }))))
                })
            })
            .argument(InputValue::new("entity", TypeRef::named_nn(TypeRef::ID)))
            .description("How many deltas about an entity each linked peer holds: [{\"peer\", \"deltas\"}], from their entity indexes."),
        )
        .field(
            Field::new("deltas", TypeRef::named_nn("DeltaPage"), |ctx| {
                FieldFuture::new(async move {
                    let shared = shared(&ctx)?;
                    let filter = filter_arg(&ctx)?;
                    let first = first_arg(&ctx, 100)?;
                    let after = match ctx.args.get("after") {
                        Some(v) if !v.is_null() => Some(hypha_delta_store::Arrival::new(
                            v.string()?.parse::<u64>().map_err(|e| gql_error(format!("after: {e}")))?,
                        )),
                        _ => None,
                    };
                    let store = shared.api.store().clone();
                    let page = blocking(move || {
                        let mut deltas = Vec::new();
                        let mut cursor = None;
                        let mut more = false;
                        for stored in store.scan_arrival(after) {
                            let stored = stored.map_err(internal)?;
                            let document = stored.delta.filter_document(&stored.stamps);
                            if filter.as_ref().is_some_and(|f| !f.matches(&document)) {
                                cursor = Some(stored.arrival.get());
                                continue;
                            }
                            if deltas.len() == first {
                                more = true;
                                break;
                            }
                            cursor = Some(stored.arrival.get());
                            deltas.push(stored);
                        }
                        // With their stamps' proofs, as every delta leaving the node is.
                        store.prove_stored(&mut deltas).map_err(internal)?;
                        let deltas: Vec<Value> = deltas.iter().map(StoredDelta::to_json).collect();
                        Ok(json!({"deltas": deltas, "cursor": cursor.map(|c| c.to_string()), "hasMore": more}))
                    })
                    .await
                    .map_err(api_error)?;
                    Ok(Some(FieldValue::owned_any(page)))
                })
            })
            .argument(InputValue::new("filter", TypeRef::named("JSON")))
            .argument(InputValue::new("after", TypeRef::named(TypeRef::STRING)))
            .argument(InputValue::new("first", TypeRef::named(TypeRef::INT)))
            .description("Deltas in arrival order after a cursor, optionally filtered by JSON-Logic over each delta's JSON."),
        )
        .field(Field::new("schemas", TypeRef::named_nn_list_nn("JSON"), |ctx| {
            FieldFuture::new(async move {
                let shared = shared(&ctx)?;
                Ok(Some(FieldValue::list(
                    shared
                        .types
                        .values()
                        .map(|s| FieldValue::value(to_gql(s.to_json()))),
                )))
            })
        }))
        .field(Field::new("peers", TypeRef::named_nn_list_nn(TypeRef::ID), |ctx| {
            FieldFuture::new(async move {
                let shared = shared(&ctx)?;
                let peers = match shared.api.network() {
                    Some(network) => network.peers().await,
                    None => Vec::new(),
                };
                Ok(Some(FieldValue::list(
                    peers.into_iter().map(|p| FieldValue::value(p.to_string())),
                )))
            })
        }))
        .field(Field::new("node", TypeRef::named_nn("NodeInfo"), |ctx| {
            FieldFuture::new(async move {
                let shared = shared(&ctx)?;
                let store = shared.api.store().clone();
                let (deltas, bytes) = blocking(move || {
                    let deltas = store.last_arrival().map_err(internal)?.map_or(0, |a| a.get());
                    Ok((deltas, store.disk_bytes().unwrap_or(0)))
                })
                .await
                .map_err(api_error)?;
                Ok(Some(FieldValue::owned_any(json!({
                    "id": shared.api.key().host_id().to_string(),
                    "version": env!("CARGO_PKG_VERSION"),
                    "deltas": deltas,
                    "storedBytes": bytes,
                }))))
            })
        }))
}

fn mutations() -> Object {
    let answer = |a: crate::http::WriteAnswer| Some(FieldValue::owned_any(a.to_json()));
    Object::new("Mutation")
        .field(with_wait_args(
            Field::new("transaction", TypeRef::named_nn("TransactionResult"), move |ctx| {
                FieldFuture::new(async move {
                    check_write(&ctx)?;
                    let shared = shared(&ctx)?;
                    let writes = ctx
                        .args
                        .try_get("writes")?
                        .list()?
                        .iter()
                        .map(|w| {
                            w.list()?
                                .iter()
                                .map(|p| pointer_from_input(p.object()?))
                                .collect::<Result<Vec<Pointer>, GqlError>>()
                        })
                        .collect::<Result<Vec<_>, GqlError>>()?;
                    let (min, timeout) = wait_args(&ctx)?;
                    let (transaction, answers) = shared
                        .api
                        .transaction(writes, min, timeout)
                        .await
                        .map_err(api_error)?;
                    Ok(Some(FieldValue::owned_any(json!({
                        "transaction": transaction,
                        "writes": answers.iter().map(|a| a.to_json()).collect::<Vec<_>>(),
                    }))))
                })
            })
            .argument(InputValue::new(
                "writes",
                TypeRef::NonNull(Box::new(TypeRef::List(Box::new(TypeRef::named_nn_list_nn(
                    "PointerInput",
                ))))),
            ))
            .description("Writes several deltas as one transaction: stored together or not at all, and invisible in views until every member is held."),
        ))
        .field(with_wait_args(
            Field::new("write", TypeRef::named_nn("WriteResult"), move |ctx| {
                FieldFuture::new(async move {
                    check_write(&ctx)?;
                    let shared = shared(&ctx)?;
                    let pointers = ctx
                        .args
                        .try_get("pointers")?
                        .list()?
                        .iter()
                        .map(|p| pointer_from_input(p.object()?))
                        .collect::<Result<Vec<Pointer>, GqlError>>()?;
                    let (min, timeout) = wait_args(&ctx)?;
                    let written = shared.api.write(pointers, min, timeout).await.map_err(api_error)?;
                    Ok(answer(written))
                })
            })
            .argument(InputValue::new("pointers", TypeRef::named_nn_list_nn("PointerInput")))
            .description("Builds, signs and stores a delta with the node key; waits for minConfidence peers, at most timeoutMs."),
        ))
        .field(with_wait_args(
            Field::new("submit", TypeRef::named_nn("WriteResult"), move |ctx| {
                FieldFuture::new(async move {
                    check_write(&ctx)?;
                    let shared = shared(&ctx)?;
                    let json = json_arg(&ctx, "delta")?.ok_or_else(|| gql_error("delta is required"))?;
                    let delta = Delta::from_json(&json).map_err(gql_error)?;
                    let id = delta.id();
                    let submitted = shared.api.submit(vec![delta]).await.map_err(api_error)?;
                    let seq = submitted.first().and_then(|(_, outcome)| outcome.local_seq());
                    let (min, timeout) = wait_args(&ctx)?;
                    let written = shared.api.wait_for(id, seq, min, timeout).await.map_err(api_error)?;
                    Ok(answer(written))
                })
            })
            .argument(InputValue::new("delta", TypeRef::named_nn("JSON")))
            .description("Stores a delta signed by the client's own key, verified like any delta from the network."),
        ))
        .field(with_wait_args(
            Field::new("negate", TypeRef::named_nn("WriteResult"), move |ctx| {
                FieldFuture::new(async move {
                    check_write(&ctx)?;
                    let shared = shared(&ctx)?;
                    let id = id_arg(&ctx)?;
                    let (min, timeout) = wait_args(&ctx)?;
                    let written = shared
                        .api
                        .write(vec![Pointer::negates(id)], min, timeout)
                        .await
                        .map_err(api_error)?;
                    Ok(answer(written))
                })
            })
            .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
            .description("Writes a negation of a delta: its values stop counting in views."),
        ))
        .field(with_wait_args(
            Field::new("putSchema", TypeRef::named_nn("WriteResult"), move |ctx| {
                FieldFuture::new(async move {
                    check_write(&ctx)?;
                    let shared = shared(&ctx)?;
                    let json = json_arg(&ctx, "schema")?.ok_or_else(|| gql_error("schema is required"))?;
                    let schema = HyphaSchema::from_json(&json).map_err(gql_error)?;
                    let (min, timeout) = wait_args(&ctx)?;
                    let written = shared
                        .api
                        .write(schema.to_pointers(), min, timeout)
                        .await
                        .map_err(api_error)?;
                    Ok(answer(written))
                })
            })
            .argument(InputValue::new("schema", TypeRef::named_nn("JSON")))
            .description("Registers or replaces an entity type's schema (stored as a delta, so it replicates)."),
        ))
}

/// Delta subscriptions open now (for `/metrics`).
static OPEN_SUBSCRIPTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many delta subscriptions are open.
pub fn open_subscriptions() -> u64 {
    OPEN_SUBSCRIPTIONS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Counts one open subscription for as long as it lives.
struct Open;

impl Open {
    fn new() -> Open {
        OPEN_SUBSCRIPTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Open
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        OPEN_SUBSCRIPTIONS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Deltas read per journal scan by a subscription.
const SUBSCRIPTION_CHUNK: usize = 256;

/// Where a `deltas` subscription stands.
struct DeltaFeed {
    store: Store,
    hub: DeltaHub,
    filter: Option<Filter>,
    /// The last arrival delivered (or skipped by the filter).
    cursor: Option<Arrival>,
    ready: std::collections::VecDeque<StoredDelta>,
    /// Fed by the hub once caught up; `None` while reading the journal.
    live: Option<(Membership, tokio::sync::mpsc::Receiver<Arc<StoredDelta>>)>,
    _open: Open,
}

/// Every delta after `after` (replayed from the journal), then every new one, matching
/// `filter`. The subscription reads the journal from its cursor until it reaches the
/// hub's position, then joins the hub (`crate::hub`), which feeds it the new deltas its
/// filter matches; so replay and live meet without a gap or a duplicate. If it falls
/// behind, the hub drops it and it reads the journal again at its own pace: a slow
/// subscriber loses nothing, and the node never waits for it.
fn delta_stream(
    store: Store,
    hub: DeltaHub,
    filter: Option<Filter>,
    after: Option<Arrival>,
) -> impl Stream<Item = Result<GqlValue, GqlError>> {
    let state = DeltaFeed {
        store,
        hub,
        filter,
        cursor: after,
        ready: Default::default(),
        live: None,
        _open: Open::new(),
    };
    stream::unfold(state, |mut state| async move {
        loop {
            if let Some(stored) = state.ready.pop_front() {
                return Some((Ok(to_gql(stored.to_json())), state));
            }
            if let Some((_, receiver)) = &mut state.live {
                match receiver.recv().await {
                    Some(stored) if Some(stored.arrival) > state.cursor => {
                        state.cursor = Some(stored.arrival);
                        return Some((Ok(to_gql(stored.to_json())), state));
                    }
                    // Already read from the journal before joining.
                    Some(_) => continue,
                    // Dropped by the hub for falling behind: back to the journal.
                    None => {
                        state.live = None;
                        continue;
                    }
                }
            }
            // Join the hub when it has dispatched nothing after the cursor: at once for a
            // subscription from the journal's end (no scan on a blocking thread, which many
            // opening together would each take), else once the journal is read up to it.
            if let Some(live) = state.hub.join(state.filter.clone(), state.cursor) {
                state.live = Some(live);
                continue;
            }
            let (store, cursor, filter) = (state.store.clone(), state.cursor, state.filter.clone());
            let scanned = blocking(move || {
                let mut last = cursor;
                let mut matching = Vec::new();
                for stored in store.scan_arrival(cursor).take(SUBSCRIPTION_CHUNK) {
                    let stored = stored.map_err(internal)?;
                    last = Some(stored.arrival);
                    let document = stored.delta.filter_document(&stored.stamps);
                    if filter.as_ref().is_none_or(|f| f.matches(&document)) {
                        matching.push(stored);
                    }
                }
                store.prove_stored(&mut matching).map_err(internal)?;
                Ok((last, matching))
            })
            .await;
            match scanned {
                Ok((last, matching)) => {
                    state.cursor = last;
                    state.ready.extend(matching);
                }
                Err(e) => return Some((Err(api_error(e)), state)),
            }
        }
    })
}

fn subscriptions() -> Subscription {
    Subscription::new("Subscription")
        .field(
            SubscriptionField::new("deltas", TypeRef::named_nn("JSON"), |ctx| {
                SubscriptionFieldFuture::new(async move {
                    let shared = shared(&ctx)?;
                    let filter = filter_arg(&ctx)?;
                    let after = match ctx.args.get("after") {
                        Some(v) if !v.is_null() => Some(Arrival::new(
                            v.string()?
                                .parse::<u64>()
                                .map_err(|e| gql_error(format!("after: {e}")))?,
                        )),
                        _ => None,
                    };
                    let hub = shared.api.delta_hub().map_err(api_error)?;
                    Ok(delta_stream(shared.api.store().clone(), hub, filter, after))
                })
            })
            .argument(InputValue::new("filter", TypeRef::named("JSON")))
            .argument(InputValue::new("after", TypeRef::named(TypeRef::STRING)))
            .description("Every delta matching a JSON-Logic filter: those after the arrival cursor `after` first, then new ones as they are stored. Each carries its `arrival`, the cursor to resume from."),
        )
        .field(
            SubscriptionField::new("changed", TypeRef::named_nn("JSON"), |ctx| {
                SubscriptionFieldFuture::new(async move {
                    let shared = shared(&ctx)?;
                    let entity_type = ctx.args.try_get("type")?.string()?.to_owned();
                    if !shared.types.contains_key(&entity_type) {
                        return Err(gql_error(format!("no schema for type {entity_type:?}")));
                    }
                    let filter = filter_arg(&ctx)?;
                    let changes = shared
                        .api
                        .changes()
                        .ok_or_else(|| gql_error("this node does not announce record changes"))?;
                    let state = ChangeFeed {
                        changes,
                        entity_type,
                        filter,
                        last_sent: HashMap::new(),
                    };
                    Ok(stream::unfold(state, |mut state| async move {
                        let item = state.next().await?;
                        Some((item, state))
                    }))
                })
            })
            .argument(InputValue::new("type", TypeRef::named_nn(TypeRef::STRING)))
            .argument(InputValue::new("filter", TypeRef::named("JSON")))
            .description("Records of a type as their resolved values change: {\"id\", \"record\"} (record null when the entity stopped being one), filtered by JSON-Logic over the record; {\"missed\": n} if this subscriber fell behind by n changes."),
        )
        .field(
            SubscriptionField::new("peerEvents", TypeRef::named_nn("JSON"), |ctx| {
                SubscriptionFieldFuture::new(async move {
                    let shared = shared(&ctx)?;
                    let events = shared
                        .api
                        .network()
                        .map(|n| n.events())
                        .ok_or_else(|| gql_error("this node has no network"))?;
                    Ok(stream::unfold(events, |mut events| async move {
                        loop {
                            let event = match events.recv().await {
                                Ok(hypha_net::Event::PeerJoined(peer)) => {
                                    json!({"event": "joined", "peer": peer.to_string()})
                                }
                                Ok(hypha_net::Event::PeerLeft(peer)) => {
                                    json!({"event": "left", "peer": peer.to_string()})
                                }
                                Ok(_) => continue,
                                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                                    json!({"event": "missed", "count": n})
                                }
                                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                    return None
                                }
                            };
                            return Some((Ok::<_, GqlError>(to_gql(event)), events));
                        }
                    }))
                })
            })
            .description("Peers joining and leaving: {\"event\": \"joined\"|\"left\", \"peer\"}; {\"event\": \"missed\", \"count\"} if this subscriber fell behind."),
        )
}

/// Most entities a `changed` subscription remembers the last sent record of.
const CHANGED_MEMORY: usize = 65_536;

/// Where a `changed` subscription stands.
struct ChangeFeed {
    changes: tokio::sync::broadcast::Receiver<RecordChange>,
    entity_type: String,
    filter: Option<Filter>,
    /// The last record sent per entity, so a rewrite with the same value is not sent again.
    last_sent: HashMap<String, Value>,
}

impl ChangeFeed {
    async fn next(&mut self) -> Option<Result<GqlValue, GqlError>> {
        loop {
            let change = match self.changes.recv().await {
                Ok(change) => change,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    // Changes are not journaled: say how many were missed.
                    self.last_sent.clear();
                    return Some(Ok(to_gql(json!({"missed": n}))));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            };
            if change.entity_type != self.entity_type {
                continue;
            }
            // The record as the views wrote it: nothing is read back.
            let entity = change.entity;
            let record = change.record.map(|r| r.to_json());
            if let (Some(filter), Some(json)) = (&self.filter, &record) {
                if !filter.matches(json) {
                    continue;
                }
            }
            let sent = record.clone().unwrap_or(Value::Null);
            if self.last_sent.get(&entity) == Some(&sent) {
                continue;
            }
            if self.last_sent.len() >= CHANGED_MEMORY {
                self.last_sent.clear();
            }
            self.last_sent.insert(entity.clone(), sent);
            return Some(Ok(to_gql(json!({"id": entity, "record": record}))));
        }
    }
}
