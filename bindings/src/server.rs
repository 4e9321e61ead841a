//! Every route the node serves, assembled in one place, and the server that binds them.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::StreamExt;

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
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(refuse_oversized)))
}

/// The most of an oversized body read (and dropped) before it is refused.
const DRAIN_LIMIT: u64 = 64 << 20;

/// A request whose declared length is over [`MAX_BODY_BYTES`] is answered 413
/// `TOO_LARGE` once its body has been read and dropped (up to [`DRAIN_LIMIT`]): answered
/// while the client is still sending, the client would see its connection reset instead
/// of the answer. (A body without a declared length is cut at the limit by the handlers.)
async fn refuse_oversized(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > MAX_BODY_BYTES as u64 => {
            if length <= DRAIN_LIMIT {
                let mut body = request.into_body().into_data_stream();
                while let Some(Ok(_)) = body.next().await {}
            }
            api::Error::TooLarge(format!(
                "the body is {length} bytes, over the limit of {MAX_BODY_BYTES}"
            ))
            .into_response()
        }
        _ => next.run(request).await,
    }
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
