//! Hypha's views: what the journal says about an entity, losslessly and resolved.
//!
//! - A [`DeltaIndex`] holds a set of deltas with the indexes the rules need; the same set
//!   gives the same views whatever order it was filled in.
//! - [`Liveness`] applies negation and transaction rules: which deltas count.
//! - A [`LosslessView`] lists, per property of an entity, every live delta filed under it.
//! - A [`Record`] (lossy view) applies a schema's resolvers to the lossless view, keeps
//!   provenance on every [`Field`], and follows references to nested records.
//! - [`load_index`] fills an index from the journal, now or [`AsOf`] an earlier point.
//!
//! - A [`Materializer`] keeps resolved records in the journal's derived keyspace, updated
//!   as deltas arrive, rebuilt on demand and when a schema changes.
//!
//! The rules are in `markdown/VIEWS.md`.
//!
//! ```
//! use std::sync::Arc;
//! use hypha_primitives::{DeltaBuilder, EntityId, Hlc, KeyPair, Pointer, Schema};
//! use hypha_views::{DeltaIndex, LocalOnly, Resolver, SchemaSet, ViewSchema};
//!
//! let key = KeyPair::from_seed([1; 32]);
//! let name = |ms, v: &str| DeltaBuilder::new(Hlc::new(ms, 0))
//!     .pointer(Pointer::entity("user", "alice", "name"))
//!     .pointer(Pointer::value("name", v))
//!     .sign(&key).unwrap();
//! let mut index = DeltaIndex::new();
//! // Arrival order does not matter: the later write wins.
//! index.insert(Arc::new(name(2, "Alice")));
//! index.insert(Arc::new(name(1, "Al")));
//!
//! let schema = Schema::from_json(&serde_json::json!(
//!     {"type": "user", "properties": {"name": {"resolver": "lww"}}}))?;
//! let mut schemas = SchemaSet::new();
//! schemas.insert(ViewSchema::new(schema)?);
//! let resolver = Resolver::new(&index, &schemas, &LocalOnly);
//! let alice = resolver.record(&EntityId::new("alice"), "user")?;
//! assert_eq!(alice.fields["name"].value.as_ref().unwrap().to_json(), "Alice");
//! assert_eq!(resolver.lossless(&EntityId::new("alice")).properties["name"].len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod accumulate;
mod as_of;
mod error;
mod index;
mod liveness;
mod load;
mod lossless;
mod lossy;
mod materialize;
mod reader;
mod resolve;
mod stored;

pub use as_of::{record_as_of, schema_as_of, AsOfReader};
pub use error::{Error, Result};
pub use index::{DeltaIndex, TRANSACTION, TRANSACTION_MEMBER, TRANSACTION_SIZE};
pub use liveness::{Liveness, TxState};
pub use load::{load_index, AsOf};
pub use lossless::{Filed, LosslessView};
pub use lossy::{
    Confidence, ConfidenceSource, Field, LocalOnly, Record, Resolver, SchemaSet, ViewSchema,
    DECIDERS_KEPT, DEFAULT_MAX_DEPTH,
};
pub use materialize::{Materializer, QueryResult, RecordChange};
pub use reader::RecordReader;
pub use resolve::{Builtin, FieldValue, Input, Resolution, Resolve, Skipped, TieBreak};
