//! Hypha's bindings (to be built by the GraphQL issue): the GraphQL endpoint and HTTP
//! extras served by the node.
//!
//! Nothing here yet: the crate exists so the workspace's dependency direction is fixed
//! (views ← bindings).
#![deny(missing_docs)]
