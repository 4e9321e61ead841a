//! Hypha's views (to be built by the views issue): lossless views of an entity, lossy views
//! resolved by a schema's resolvers, and the materialized view store.
//!
//! Nothing here yet: the crate exists so the workspace's dependency direction is fixed
//! (primitives ← delta-store ← views ← bindings).
#![deny(missing_docs)]
