//! Every route the node serves, assembled in one place, and the server that binds them.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::api::{self, NodeApi};
use crate::graphql::{self, GraphQl};
use crate::{graphiql, http, metrics};

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// The routes, ready to serve: the plain HTTP API, GraphQL and the GraphiQL page.
pub fn router(api: Arc<NodeApi>) -> api::Result<Router> {
    let graphql = Arc::new(GraphQl::new(api.clone())?);
    let plain = Router::new()
        .route("/health", get(http::health))
        .route("/status", get(http::status))
        .route("/write", post(http::write))
        .route("/deltas", post(http::import).get(http::export))
        .route("/deltas/{id}", get(http::delta))
        .route("/records/{type}", get(http::records))
        .route("/records/{type}/{id}", get(http::record))
        .route("/who-has/{entity}", get(http::who_has))
        .route("/peers", get(http::peers))
        .route("/metrics", get(metrics::metrics))
        .with_state(api);
    let graphql = Router::new()
        .route("/graphql", post(graphql::transport::request))
        .route("/graphql/ws", get(graphql::transport::websocket))
        .with_state(graphql);
    let page = Router::new()
        .route("/", get(graphiql::page))
        .route("/assets/{file}", get(graphiql::asset));
    Ok(plain
        .merge(graphql)
        .merge(page)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)))
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: Arc<NodeApi>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let router = router(api).map_err(std::io::Error::other)?;
    // Small answers and websocket frames go out at once: with Nagle's algorithm a frame
    // sent while the previous one is unacknowledged waits for the peer's delayed ACK.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
