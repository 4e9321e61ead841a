//! Hypha's bindings: the application service of a running node ([`api::NodeApi`]) and the
//! transports over it, the plain HTTP API ([`http`]) and the GraphQL endpoint
//! ([`graphql`]). [`server::router`] assembles every route; the node binary serves it
//! with [`server::serve`].
#![deny(missing_docs)]

pub mod api;
mod graphiql;
pub mod graphql;
mod guard;
pub mod http;
mod hub;
mod metrics;
pub mod server;
