//! The GraphQL endpoint: a schema generated from the registered Hypha schemas (one GraphQL
//! type per entity type), regenerated when a schema delta changes them, over the node's
//! materialized records, journal and network.
//!
//! For an entity type `user` with properties `name` and `age`:
//!
//! ```graphql
//! type User { id: ID!  name: String  age: Float  _meta(field: String, confirmAt: Int): Meta! }
//! type UserConnection { nodes: [User!]!  endCursor: String  hasNextPage: Boolean! }
//! type Query {
//!   user(id: ID!): User
//!   users(filter: JSON, first: Int, after: String): UserConnection!
//!   entity(id: ID!, asOf: String): JSON      delta(id: ID!, fetch: Boolean): JSON
//!   deltas(filter: JSON, after: String, first: Int): DeltaPage!
//!   schemas: [JSON!]!  peers: [ID!]!  node: NodeInfo!  whoHas(entity: ID!): [JSON!]!
//! }
//! type Mutation {
//!   write(...) submit(...) negate(...) putSchema(...): WriteResult!
//!   transaction(...): TransactionResult!
//! }
//! type Subscription { deltas(filter, after): JSON!  changed(type, filter, confirmAt): JSON!  peerEvents: JSON! }
//! ```
//!
//! `_meta` without an argument describes the whole record (provisional if any field is);
//! `_meta(field: "name")` describes one field; either is provisional below `confirmAt`
//! peers (default: the type's schema's, else the node's). See `markdown/GRAPHQL.md`.
//!
//! The schema is assembled here; `args` reads arguments, `types` builds the output types,
//! and `queries`, `mutations` and `subscriptions` the three roots (`changes` feeds the
//! `changed` subscription). `transport` serves it over HTTP and websockets.

mod args;
mod changes;
mod mutations;
mod queries;
mod subscriptions;
pub(crate) mod transport;
mod types;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_graphql::dynamic::{Object, Scalar, Schema, SchemaError};

use crate::api::{self, NodeApi, Schemas};

pub use subscriptions::open_subscriptions;

/// Deepest query accepted.
pub const MAX_DEPTH: usize = 12;
/// Most complex query accepted (async-graphql's field-count measure).
pub const MAX_COMPLEXITY: usize = 2_000;

/// The GraphQL service: the current generated schema and what it reads.
pub struct GraphQl {
    api: Arc<NodeApi>,
    /// The generated schema, and the registered schemas it was generated from.
    current: RwLock<(Arc<Schemas>, Arc<Schema>)>,
}

impl std::fmt::Debug for GraphQl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphQl").finish_non_exhaustive()
    }
}

/// Request data: whether the request may write (see [`NodeApi::may_write`]).
#[derive(Clone, Copy, Debug)]
pub struct MayWrite(pub bool);

/// What resolvers reach through the schema's data.
struct Shared {
    api: Arc<NodeApi>,
    /// The registered schemas, by entity type, as the generated types were built from.
    types: Arc<Schemas>,
}

impl GraphQl {
    /// The service over a node's API; the schema is generated now and again whenever the
    /// registered schemas change.
    pub fn new(api: Arc<NodeApi>) -> api::Result<GraphQl> {
        let types = api.schemas()?;
        let schema = build(api.clone(), types.clone()).map_err(schema_error)?;
        Ok(GraphQl {
            api,
            current: RwLock::new((types, Arc::new(schema))),
        })
    }

    /// The schema to run a request with, generated again first if a schema delta changed
    /// the registered types since the last request ([`NodeApi::schemas`] hands out the
    /// same `Arc` until they change, so the usual request builds nothing).
    pub fn schema(&self) -> api::Result<Arc<Schema>> {
        let types = self.api.schemas()?;
        {
            let current = self.current.read().unwrap_or_else(|e| e.into_inner());
            if Arc::ptr_eq(&current.0, &types) {
                return Ok(current.1.clone());
            }
        }
        let schema = Arc::new(build(self.api.clone(), types.clone()).map_err(schema_error)?);
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        *current = (types, schema.clone());
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
                e.to_string(),
                None,
            )]),
        }
    }
}

/// A generated schema that async-graphql refuses: a bug in the generation.
fn schema_error(e: SchemaError) -> api::Error {
    api::Error::Internal(format!("generating the GraphQL schema: {e}"))
}

/// Generates the schema for `types`.
fn build(api: Arc<NodeApi>, types: Arc<Schemas>) -> Result<Schema, SchemaError> {
    let names: BTreeMap<String, String> = types
        .keys()
        .map(|t| (t.clone(), args::type_name(t)))
        .collect();
    let (query, typed) = queries::typed_queries(Object::new("Query"), &types, &names);
    let query = queries::generic_queries(query);
    let (fixed, pointer_input) = types::fixed_types();
    let mut builder = Schema::build("Query", Some("Mutation"), Some("Subscription"))
        .register(subscriptions::subscriptions())
        .register(Scalar::new("JSON").description("Any JSON value."))
        .register(query)
        .register(mutations::mutations())
        .register(pointer_input)
        .data(Shared { api, types })
        .extension(crate::guard::QueryGuard::default())
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY);
    for object in fixed.into_iter().chain(typed) {
        builder = builder.register(object);
    }
    builder.finish()
}
