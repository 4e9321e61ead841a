//! GraphQL over HTTP: `POST /graphql` and subscriptions on `GET /graphql/ws`.

use std::sync::Arc;

use async_graphql::dynamic::Schema;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::rejection::StringRejection;
use axum::extract::ws::{Message as WsMessage, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use hypha_primitives::check_integer_literals;
use serde_json::Value;

use super::{GraphQl, MayWrite};
use crate::api::Error;

/// The read buffer of a GraphQL websocket, in bytes.
const WEBSOCKET_READ_BUFFER: usize = 4 * 1024;
/// The largest message a GraphQL websocket takes (a query is bounded far below it).
const WEBSOCKET_MAX_MESSAGE: usize = 256 * 1024;

/// `POST /graphql`: `{"query", "variables"?, "operationName"?}`, answered as GraphQL does
/// (errors in the body's `errors`, status 200), except a body that is not a GraphQL
/// request at all (400).
pub(crate) async fn request(
    State(graphql): State<Arc<GraphQl>>,
    headers: HeaderMap,
    body: Result<String, StringRejection>,
) -> Result<Json<async_graphql::Response>, Error> {
    let body = body.map_err(|r| crate::http::refused(r.status(), r.body_text()))?;
    // Integers outside i64 in the variables would be rounded by the parser: refused first,
    // as a GraphQL error like the same literal written in the query.
    if let Err(e) = check_integer_literals(&body) {
        let refused = async_graphql::Response::from_errors(vec![async_graphql::ServerError::new(
            e.to_string(),
            None,
        )]);
        return Ok(Json(refused));
    }
    let request: async_graphql::Request = serde_json::from_str(&body)
        .map_err(|e| Error::bad_input(format!("not a GraphQL request: {e}")))?;
    let may_write = graphql.api().may_write(crate::http::bearer(&headers));
    // Serialized straight into the body, with no JSON tree in between.
    Ok(Json(
        graphql.execute(request.data(MayWrite(may_write))).await,
    ))
}

/// `GET /graphql/ws`: subscriptions over a websocket, in the graphql-transport-ws protocol
/// or the older graphql-ws. A connection keeps the generated types it opened with.
pub(crate) async fn websocket(
    State(graphql): State<Arc<GraphQl>>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    // Mutations sent over the socket carry no headers: refused when a token is set.
    let schema = match graphql.schema() {
        Ok(schema) => Schema::clone(&schema),
        Err(e) => return e.into_response(),
    };
    upgrade
        // tungstenite's defaults reserve 128 KiB per connection for reading; GraphQL
        // frames are small. (Its write buffer grows only as frames need.) A frame or
        // message past the limits closes the socket.
        .read_buffer_size(WEBSOCKET_READ_BUFFER)
        .max_message_size(WEBSOCKET_MAX_MESSAGE)
        .max_frame_size(WEBSOCKET_MAX_MESSAGE)
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| {
            let (sink, frames) = socket.split();
            let frames = frames.map(|frame| frame.map(refuse_unrepresentable_integers));
            GraphQLWebSocket::new_with_pair(sink, frames, schema, protocol).serve()
        })
}

/// A websocket frame whose JSON holds an integer literal no 64-bit integer holds would be
/// rounded by async-graphql's parser: its request is marked refused instead, and the
/// query guard answers it with the reason (`crate::guard`).
fn refuse_unrepresentable_integers(frame: WsMessage) -> WsMessage {
    let WsMessage::Text(text) = &frame else {
        return frame;
    };
    let Err(e) = check_integer_literals(text.as_str()) else {
        return frame;
    };
    let Ok(mut message) = serde_json::from_str::<Value>(text.as_str()) else {
        return frame;
    };
    let Some(payload) = message.get_mut("payload").and_then(Value::as_object_mut) else {
        return frame;
    };
    let extensions = payload
        .entry("extensions")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(extensions) = extensions.as_object_mut() {
        extensions.insert(crate::guard::REFUSED.into(), Value::String(e.to_string()));
    }
    WsMessage::Text(message.to_string().into())
}
