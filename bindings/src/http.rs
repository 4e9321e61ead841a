//! The node's plain HTTP API: health, writes, signed-delta submission, reads by id, peers
//! (metrics are rendered in `metrics.rs`).
//! Every route answers JSON; every failure is `{"error": "…"}` with a 4xx or 5xx status.
//!
//! | route | what |
//! |---|---|
//! | `GET /health` | `{"status": "ok", "host", "deltas"}` |
//! | `POST /write` | `{"pointers": […], "min_confidence"?: k, "timeout_ms"?: t}`: the node signs, stamps and stores the delta, waits until `k` peers hold it or `t` ms pass, and answers `{"id", "seq", "confidence", "reached"}` |
//! | `POST /deltas` | JSON lines of deltas signed by their authors: verified, stamped by this node and stored, all or nothing; answers `[{"id", "new"}]`. Lines that carry `stamps` (as `hypha export` prints them) keep those origin stamps instead (a request holds either kind, not both). An error names the line: `line N: …` |
//! | `GET /deltas?after=N&limit=M` | JSON lines of stored deltas after arrival `N` (at most `M`, default 1,000, at most 10,000), with stamps and arrival |
//! | `GET /deltas/{id}` | the stored delta with its stamps and arrival; `?fetch=true` asks the linked peers when it is not held here (and stores it) |
//! | `GET /who-has/{entity}` | `{"holders": [{"peer", "deltas"}]}`: how many deltas about the entity each linked peer holds |
//! | `GET /peers` | `{"peers": [host ids]}` |
//! | `GET /metrics` | Prometheus text: deltas, bytes, views lag, subscriptions, peers, messages |
//! | `POST /graphql` | GraphQL (see [`crate::graphql`]) |
//! | `GET /graphql/ws` | GraphQL subscriptions over a websocket |
//! | `GET /` | the GraphiQL page (assets served by the node) |

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_graphql::dynamic::Schema;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::ws::{Message as WsMessage, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use hypha_delta_store::{LocalWriter, PutOutcome, StampedDelta, Store};
use hypha_net::Network;
use hypha_primitives::{
    check_integer_literals, Delta, DeltaBuilder, DeltaId, KeyPair, Pointer, Seq,
};
use hypha_views::RecordChange;
use rayon::prelude::*;
use serde_json::{json, Value};

use crate::graphql::GraphQl;

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 16 << 20;
/// Longest a write may wait for confidence.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// How long a fetch from peers or a who-has question waits for answers.
pub const FETCH_WAIT: Duration = Duration::from_secs(5);
/// How long a write waits for confidence when the request does not say.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);

/// What the routes share: the journal, the node key, the local writer (key and clock), and
/// the network if any.
#[derive(Debug)]
pub struct NodeApi {
    pub(crate) store: Store,
    key: KeyPair,
    /// Signs the node's own writes at the node clock's readings.
    writer: LocalWriter,
    pub(crate) network: Option<Arc<Network>>,
    /// When set, writes (mutations, `POST /write`, `POST /deltas`) need
    /// `Authorization: Bearer <token>`.
    token: Option<String>,
    /// Records the views wrote, as (type, entity), for `changed` subscriptions.
    changes: Option<tokio::sync::broadcast::Sender<RecordChange>>,
    /// The reader that feeds live `deltas` subscriptions, started by the first one.
    hub: Mutex<Option<crate::hub::DeltaHub>>,
}

impl NodeApi {
    /// Where the node announces the records its views write (see `Materializer::take_changes`).
    pub fn with_changes(
        mut self,
        changes: tokio::sync::broadcast::Sender<RecordChange>,
    ) -> NodeApi {
        self.changes = Some(changes);
        self
    }

    /// Record changes as they are announced, if the node announces them.
    pub fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<RecordChange>> {
        self.changes.as_ref().map(|c| c.subscribe())
    }

    /// The subscription hub, started on first use (on the current tokio runtime).
    pub(crate) fn delta_hub(&self) -> Result<crate::hub::DeltaHub, ApiError> {
        let mut hub = self.hub.lock().unwrap_or_else(|e| e.into_inner());
        if hub.is_none() {
            *hub = Some(crate::hub::DeltaHub::start(self.store.clone()).map_err(internal)?);
        }
        Ok(hub.clone().expect("just started"))
    }

    /// Live delta subscriptions fed by the hub, and how many of them have no anchored filter.
    pub fn hub_subscribers(&self) -> (usize, usize) {
        let hub = self.hub.lock().unwrap_or_else(|e| e.into_inner()).clone();
        hub.map_or((0, 0), |hub| (hub.live(), hub.unanchored()))
    }

    /// Requires `Authorization: Bearer <token>` for every write from now on.
    pub fn with_token(mut self, token: Option<String>) -> NodeApi {
        self.token = token.filter(|t| !t.is_empty());
        self
    }

    /// Whether a request with these headers may write.
    pub fn may_write(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes()))
    }

    /// The API of a node with this journal and key; `network` is `None` for a node without
    /// peers (writes then report confidence 0 at once).
    pub fn new(
        store: Store,
        key: KeyPair,
        network: Option<Arc<Network>>,
    ) -> hypha_delta_store::Result<NodeApi> {
        let writer = LocalWriter::new(store.clone(), key.clone())?;
        Ok(NodeApi {
            store,
            key,
            writer,
            network,
            token: None,
            changes: None,
            hub: Mutex::new(None),
        })
    }
}

/// A 401 unless the request may write.
fn authorize(api: &NodeApi, headers: &HeaderMap) -> Result<(), ApiError> {
    if api.may_write(headers) {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "this node requires \"Authorization: Bearer <token>\" for writes".into(),
        ))
    }
}

/// Compares secrets without an early exit that would leak how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A failed request: the HTTP status and a message for the client.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

pub(crate) fn bad_request(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, e.to_string())
}

pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// Maps a store error to 400 (the input was bad) or 500 (the node failed).
fn store_error(e: hypha_delta_store::Error) -> ApiError {
    match e {
        hypha_delta_store::Error::Invalid { .. }
        | hypha_delta_store::Error::UnknownAuthor { .. } => bad_request(e),
        e => internal(e),
    }
}

/// The routes, ready to serve: the plain HTTP API and `POST /graphql`.
pub fn router(api: Arc<NodeApi>) -> Result<Router, ApiError> {
    let graphql = Arc::new(GraphQl::new(api.clone())?);
    let plain = Router::new()
        .route("/health", get(health))
        .route("/write", post(write))
        .route("/deltas", post(submit).get(export))
        .route("/deltas/{id}", get(delta))
        .route("/who-has/{entity}", get(who_has))
        .route("/peers", get(peers))
        .route("/metrics", get(crate::metrics::metrics))
        .with_state(api);
    let graphql = Router::new()
        .route("/graphql", post(graphql_request))
        .route("/graphql/ws", get(graphql_websocket))
        .with_state(graphql);
    Ok(plain
        .merge(graphql)
        .merge(crate::graphiql::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)))
}

/// `GET /graphql/ws`: subscriptions over a websocket, in the graphql-transport-ws protocol
/// or the older graphql-ws. A connection keeps the generated types it opened with.
async fn graphql_websocket(
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

/// The read buffer of a GraphQL websocket, in bytes.
const WEBSOCKET_READ_BUFFER: usize = 4 * 1024;
/// The largest message a GraphQL websocket takes (a query is bounded far below it).
const WEBSOCKET_MAX_MESSAGE: usize = 256 * 1024;

/// A websocket frame whose JSON holds an integer literal no 64-bit integer holds would be
/// rounded by async-graphql's parser: its request is marked refused instead, and the
/// query guard answers it with the reason (`guard.rs`).
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

/// `POST /graphql`: `{"query", "variables"?, "operationName"?}`, answered as GraphQL does
/// (errors in the body's `errors`, status 200), except a body that is not a GraphQL
/// request at all (400).
async fn graphql_request(
    State(graphql): State<Arc<GraphQl>>,
    headers: HeaderMap,
    body: String,
) -> Result<Json<Value>, ApiError> {
    // Integers outside i64 in the variables would be rounded by the parser: refused first,
    // as a GraphQL error like the same literal written in the query.
    if let Err(e) = check_integer_literals(&body) {
        let refused = async_graphql::Response::from_errors(vec![async_graphql::ServerError::new(
            e.to_string(),
            None,
        )]);
        return Ok(Json(serde_json::to_value(&refused).map_err(internal)?));
    }
    let request: async_graphql::Request = serde_json::from_str(&body)
        .map_err(|e| bad_request(format!("not a GraphQL request: {e}")))?;
    let request = request.data(crate::graphql::MayWrite(graphql.api().may_write(&headers)));
    let response = graphql.execute(request).await;
    Ok(Json(serde_json::to_value(&response).map_err(internal)?))
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: Arc<NodeApi>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let router = router(api).map_err(|e| std::io::Error::other(e.1))?;
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

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(internal)?
}

async fn health(State(api): State<Arc<NodeApi>>) -> Result<Json<Value>, ApiError> {
    // One read of the journal's last key: cheaper inline than a hand-off to a blocking thread.
    let last = api.store.last_arrival().map_err(internal)?;
    Ok(Json(json!({
        "status": "ok",
        "host": api.key.host_id().to_string(),
        "deltas": last.map_or(0, |a| a.get()),
    })))
}

async fn write(
    State(api): State<Arc<NodeApi>>,
    headers: HeaderMap,
    body: String,
) -> Result<Json<Value>, ApiError> {
    authorize(&api, &headers)?;
    check_integer_literals(&body).map_err(bad_request)?;
    // Any content type: `curl -d` sends a form type, and the body is JSON either way.
    let body: Value =
        serde_json::from_str(&body).map_err(|e| bad_request(format!("malformed JSON: {e}")))?;
    let pointers = body
        .get("pointers")
        .ok_or_else(|| bad_request("missing \"pointers\""))?;
    let pointers = Pointer::list_from_json_str(&pointers.to_string()).map_err(bad_request)?;
    let min_confidence = match body.get("min_confidence") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| bad_request("\"min_confidence\" must be a non-negative integer"))?
            as usize,
    };
    let timeout = match body.get("timeout_ms") {
        None | Some(Value::Null) => DEFAULT_WAIT,
        Some(v) => Duration::from_millis(
            v.as_u64()
                .ok_or_else(|| bad_request("\"timeout_ms\" must be a non-negative integer"))?,
        ),
    };
    let answer = api.write(pointers, min_confidence, timeout).await?;
    Ok(Json(answer.to_json()))
}

/// What a write reached: its id, this node's origin seq for it, and how many peers hold it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteAnswer {
    /// The delta written.
    pub id: DeltaId,
    /// This node's origin stamp seq on it.
    pub seq: Option<Seq>,
    /// Peers known to hold it when the answer was given.
    pub confidence: usize,
    /// Whether that met the confidence asked for.
    pub reached: bool,
}

impl WriteAnswer {
    /// `{"id", "seq", "confidence", "reached"}`.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id.to_string(),
            "seq": self.seq.map(Seq::get),
            "confidence": self.confidence,
            "reached": self.reached,
        })
    }
}

impl NodeApi {
    /// The journal.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The node's key.
    pub fn key(&self) -> &KeyPair {
        &self.key
    }

    /// The network, if the node has one.
    pub fn network(&self) -> Option<&Network> {
        self.network.as_deref()
    }

    /// Signs `pointers` with the node key at the node's next clock reading, stores the
    /// delta with this node's origin stamp, and waits (up to `timeout`, capped at a minute)
    /// until `min_confidence` peers hold it.
    pub async fn write(
        &self,
        pointers: Vec<Pointer>,
        min_confidence: usize,
        timeout: Duration,
    ) -> Result<WriteAnswer, ApiError> {
        let delta = self.writer.sign(pointers).map_err(|e| match e {
            hypha_delta_store::Error::Invalid { source, .. } => bad_request(source),
            e => store_error(e),
        })?;
        let id = delta.id();
        let submitted = self.submit(vec![delta]).await?;
        let seq = submitted
            .first()
            .and_then(|(_, outcome)| outcome.local_seq());
        self.wait_for(id, seq, min_confidence, timeout).await
    }

    /// Writes a complete transaction atomically: one delta per entry of `writes`, each
    /// joining a fresh transaction entity, the first also declaring its size; all stored in
    /// one write or none. Answers the transaction's id and each member's answer.
    pub async fn transaction(
        &self,
        writes: Vec<Vec<Pointer>>,
        min_confidence: usize,
        timeout: Duration,
    ) -> Result<(String, Vec<WriteAnswer>), ApiError> {
        use hypha_views::{TRANSACTION, TRANSACTION_MEMBER, TRANSACTION_SIZE};
        if writes.is_empty() {
            return Err(bad_request("a transaction needs at least one write"));
        }
        let size = writes.len() as i64;
        let mut deltas = Vec::with_capacity(writes.len());
        let mut transaction = String::new();
        for (n, pointers) in writes.into_iter().enumerate() {
            let time = self.writer.tick();
            if n == 0 {
                // Unique per node and clock reading.
                transaction = format!("tx:{}:{time}", self.key.host_id());
            }
            let mut builder = DeltaBuilder::new(time)
                .pointers(pointers)
                .pointer(Pointer::entity(
                    TRANSACTION,
                    transaction.clone(),
                    TRANSACTION_MEMBER,
                ));
            if n == 0 {
                builder = builder
                    .pointer(Pointer::entity(
                        TRANSACTION,
                        transaction.clone(),
                        TRANSACTION_SIZE,
                    ))
                    .pointer(Pointer::value(TRANSACTION_SIZE, size));
            }
            deltas.push(builder.sign(&self.key).map_err(bad_request)?);
        }
        let submitted = self.submit(deltas).await?;
        let mut answers = Vec::with_capacity(submitted.len());
        for (id, outcome) in submitted {
            let seq = outcome.local_seq();
            answers.push(self.wait_for(id, seq, min_confidence, timeout).await?);
        }
        Ok((transaction, answers))
    }

    /// Verifies deltas signed by their authors, stamps them with this node's origin seqs
    /// and stores them, all or nothing; answers each id with what storing it did (whether
    /// it was new, and this node's stamp on it).
    pub async fn submit(&self, deltas: Vec<Delta>) -> Result<Vec<(DeltaId, PutOutcome)>, ApiError> {
        let ids: Vec<DeltaId> = deltas.iter().map(Delta::id).collect();
        let (store, key) = (self.store.clone(), self.key.clone());
        let outcomes =
            blocking(move || store.put_local_batch(deltas, &key).map_err(store_error)).await?;
        Ok(ids.into_iter().zip(outcomes).collect())
    }

    /// The stored delta `id` as JSON; when it is not held here and `fetch` is set, it is
    /// asked of the linked peers (for up to `FETCH_WAIT`) and stored.
    pub async fn delta(&self, id: DeltaId, fetch: bool) -> Result<Option<Value>, ApiError> {
        let read = |store: Store| async move {
            blocking(move || {
                let Some(stored) = store.get(id).map_err(internal)? else {
                    return Ok(None);
                };
                // With the stamps' proofs, so the answer imports elsewhere.
                let mut stored = [stored];
                store.prove_stored(&mut stored).map_err(internal)?;
                Ok(Some(stored[0].to_json()))
            })
            .await
        };
        if let Some(found) = read(self.store.clone()).await? {
            return Ok(Some(found));
        }
        match &self.network {
            Some(network) if fetch => {
                network.fetch(vec![id], FETCH_WAIT).await;
                read(self.store.clone()).await
            }
            _ => Ok(None),
        }
    }

    /// How many deltas about `entity` each linked peer holds (those answering within
    /// `FETCH_WAIT`).
    pub async fn who_has(&self, entity: &str) -> Vec<(hypha_primitives::HostId, u64)> {
        match &self.network {
            Some(network) => network.who_has(entity, FETCH_WAIT).await,
            None => Vec::new(),
        }
    }

    /// Waits until `min_confidence` peers hold stored delta `id`, which this node stamped
    /// as `seq` (as [`NodeApi::submit`] answers), or `timeout` (capped at a minute); with 0,
    /// answers at once with the confidence known now. Without a stamp of this node there is
    /// nothing to wait for: confidence 0.
    pub async fn wait_for(
        &self,
        id: DeltaId,
        seq: Option<Seq>,
        min_confidence: usize,
        timeout: Duration,
    ) -> Result<WriteAnswer, ApiError> {
        let (confidence, reached) = match (&self.network, seq) {
            (Some(network), Some(seq)) if min_confidence > 0 => {
                network
                    .await_confidence(
                        self.key.host_id(),
                        seq,
                        min_confidence,
                        timeout.min(MAX_WAIT),
                    )
                    .await
            }
            (Some(network), Some(seq)) => (network.holders(self.key.host_id(), seq).await, true),
            _ => (0, min_confidence == 0),
        };
        Ok(WriteAnswer {
            id,
            seq,
            confidence,
            reached,
        })
    }

    /// How many peers are known to hold delta `id`: the most over its origin stamps.
    pub async fn confidence(&self, id: DeltaId) -> usize {
        let Some(network) = &self.network else {
            return 0;
        };
        let store = self.store.clone();
        let stamps = blocking(move || store.get(id).map_err(internal))
            .await
            .ok()
            .flatten()
            .map(|s| s.stamps)
            .unwrap_or_default();
        let mut best = 0;
        for stamp in stamps {
            best = best.max(network.holders(stamp.host(), stamp.seq()).await);
        }
        best
    }
}

/// Parses the non-blank lines of a `POST /deltas` body, in parallel: their line numbers
/// and deltas, or an error naming the first line that does not parse.
fn parse_lines(body: &str) -> Result<(Vec<usize>, Vec<StampedDelta>), ApiError> {
    let lines: Vec<(usize, &str)> = body
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| (n + 1, line))
        .collect();
    let parsed: Vec<_> = lines
        .par_iter()
        .map(|(n, line)| StampedDelta::from_json_str(line).map_err(|e| (*n, e)))
        .collect();
    let mut deltas = Vec::with_capacity(parsed.len());
    for delta in parsed {
        deltas.push(delta.map_err(|(n, e)| bad_request(format!("line {n}: {e}")))?);
    }
    Ok((lines.into_iter().map(|(n, _)| n).collect(), deltas))
}

async fn submit(
    State(api): State<Arc<NodeApi>>,
    headers: HeaderMap,
    body: String,
) -> Result<Json<Value>, ApiError> {
    authorize(&api, &headers)?;
    let (store, key) = (api.store.clone(), api.key.clone());
    // Parsing thousands of lines is a good share of the work: it runs on the blocking pool,
    // in parallel, beside the store's verification, not on the async workers.
    let (lines, ids, stored) = blocking(move || {
        let (lines, deltas) = parse_lines(&body)?;
        if deltas.is_empty() {
            return Err(bad_request("no deltas in the body"));
        }
        let stamped = deltas.iter().filter(|d| !d.stamps.is_empty()).count();
        if stamped != 0 && stamped != deltas.len() {
            return Err(bad_request(
                "some lines carry origin stamps and some do not: send them in separate requests",
            ));
        }
        let ids: Vec<DeltaId> = deltas.iter().map(|d| d.delta.id()).collect();
        let stored = if stamped == 0 {
            store.put_local_batch(deltas.into_iter().map(|d| d.delta).collect(), &key)
        } else {
            store.put_batch(deltas)
        };
        Ok((lines, ids, stored))
    })
    .await?;
    let outcomes: Vec<(DeltaId, bool)> = match stored {
        Ok(outcomes) => ids
            .into_iter()
            .zip(outcomes)
            .map(|(id, outcome)| (id, outcome.is_new()))
            .collect(),
        // Name the line, not the position in the batch.
        Err(hypha_delta_store::Error::Invalid { index, source }) => {
            return Err(bad_request(format!("line {}: {source}", lines[index])))
        }
        Err(hypha_delta_store::Error::UnknownAuthor { index, author }) => {
            return Err(bad_request(format!(
                "line {}: unknown author {author}",
                lines[index]
            )))
        }
        Err(e) => return Err(store_error(e)),
    };
    let answer: Vec<Value> = outcomes
        .into_iter()
        .map(|(id, new)| json!({"id": id.to_string(), "new": new}))
        .collect();
    Ok(Json(Value::Array(answer)))
}

/// Most deltas one `GET /deltas` answers.
const MAX_EXPORT_PAGE: usize = 10_000;

/// `GET /deltas` query parameters.
#[derive(Debug, serde::Deserialize)]
struct ExportQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

/// `GET /deltas?after=N&limit=M`: stored deltas in arrival order as JSON lines, each with
/// its stamps (with their proofs) and arrival (the next page starts after the last line's arrival).
async fn export(
    State(api): State<Arc<NodeApi>>,
    axum::extract::Query(query): axum::extract::Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let limit = query.limit.unwrap_or(1_000).clamp(1, MAX_EXPORT_PAGE);
    let store = api.store.clone();
    let body = blocking(move || {
        let mut page = store
            .scan_arrival(query.after.map(hypha_delta_store::Arrival::new))
            .take(limit)
            .collect::<Result<Vec<_>, _>>()
            .map_err(internal)?;
        // Stamps carry their proofs, so that a node importing the page can check them.
        store.prove_stored(&mut page).map_err(internal)?;
        let mut body = String::new();
        for stored in page {
            body.push_str(&stored.to_json().to_string());
            body.push('\n');
        }
        Ok(body)
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// `GET /deltas/{id}` query parameters.
#[derive(Debug, serde::Deserialize)]
struct DeltaQuery {
    /// Ask the linked peers when the delta is not held here.
    #[serde(default)]
    fetch: bool,
}

async fn delta(
    State(api): State<Arc<NodeApi>>,
    Path(id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<DeltaQuery>,
) -> Result<Json<Value>, ApiError> {
    let id: DeltaId = id.parse().map_err(bad_request)?;
    match api.delta(id, query.fetch).await? {
        Some(found) => Ok(Json(found)),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            if query.fetch {
                format!("no delta {id} here or at any linked peer")
            } else {
                format!("no delta {id} here (?fetch=true asks the peers)")
            },
        )),
    }
}

/// `GET /who-has/{entity}`: `{"holders": [{"peer", "deltas"}]}`, every linked peer that
/// answered, with how many deltas about the entity it holds.
async fn who_has(State(api): State<Arc<NodeApi>>, Path(entity): Path<String>) -> Json<Value> {
    let holders: Vec<Value> = api
        .who_has(&entity)
        .await
        .into_iter()
        .map(|(peer, deltas)| json!({"peer": peer.to_string(), "deltas": deltas}))
        .collect();
    Json(json!({ "holders": holders }))
}

async fn peers(State(api): State<Arc<NodeApi>>) -> Json<Value> {
    let peers = match &api.network {
        Some(network) => network.peers().await,
        None => Vec::new(),
    };
    let peers: Vec<String> = peers.iter().map(ToString::to_string).collect();
    Json(json!({ "peers": peers }))
}
