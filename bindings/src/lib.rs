//! Hypha's bindings: the HTTP API and the GraphQL endpoint a running node serves.
//!
//! [`http::router`] builds the routes over a [`http::NodeApi`]: the node's journal, key and
//! network. The node binary binds it to its HTTP address.
#![deny(missing_docs)]

mod graphiql;
pub mod graphql;
mod guard;
pub mod http;
mod hub;
mod metrics;
