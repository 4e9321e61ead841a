//! The node's plain HTTP API: each handler parses its request, calls the application
//! service (`crate::api`) and renders the answer as JSON. Every failure is
//! `{"error": "…", "code": "…"}` with a 4xx or 5xx status (see [`crate::api::Error::code`]).
//!
//! | route | what |
//! |---|---|
//! | `GET /health` | `{"status": "ok", "host", "deltas"}` |
//! | `GET /status` | `{"host", "version", "last_arrival", "stored_bytes", "coverage": {host: seq}, "views": {"cursor", "types"}, "peers"}`: what `hypha status` prints |
//! | `POST /write` | `{"pointers": […], "min_confidence"?: k, "timeout_ms"?: t}`: the node signs, stamps and stores the delta, waits until `k` peers hold it or `t` ms pass, and answers `{"id", "seq", "confidence", "reached"}` |
//! | `POST /deltas` | JSON lines of deltas signed by their authors: verified, stamped by this node and stored, all or nothing; answers `[{"id", "new"}]`. Lines that carry `stamps` (as `hypha export` prints them) keep those origin stamps instead (a request holds either kind, not both). An error names the line: `line N: …` |
//! | `GET /deltas?after=N&limit=M` | JSON lines of stored deltas after arrival `N` (at most `M`, default 1,000, at most 10,000), with stamps and arrival; `&author=K` reads one author's deltas from the author index, `&origin=H` one host's from the origin index (in its seq order, `after` a seq), `&filter=F` keeps those a JSON-Logic filter selects; the `x-hypha-cursor` header is the next page's `after` |
//! | `GET /deltas/{id}` | the stored delta with its stamps and arrival; `?fetch=true` asks the linked peers when it is not held here (and stores it) |
//! | `GET /records/{type}/{id}` | the materialized record, each field with its `confidence` (peers known to hold what decided it) and `provisional`; `?confirm_at=k` sets the threshold for this read; `?at=T` gives the record as it stood at HLC time `T` (`MS` or `MS.LOGICAL`) or arrival position `@N`, resolved from the journal |
//! | `GET /records/{type}?filter=F&after=E&limit=N&confirm_at=k&at=T` | `{"records": […], "next"}`: records of the type in entity order (at most `N`, default 100, at most 1,000), filtered by JSON-Logic over each record; `next` is the `after` of the next page, if any; with `at`, the records as they stood then (every entity the journal knows is a candidate, in the entity index's order, at most 10,000 looked at per page) |
//! | `GET /who-has/{entity}` | `{"holders": [{"peer", "deltas"}]}`: how many deltas about the entity each linked peer holds |
//! | `GET /peers` | `{"peers": [host ids]}` |
//! | `GET /metrics` | Prometheus text (`crate::metrics`) |
//! | `POST /graphql`, `GET /graphql/ws` | GraphQL (`crate::graphql`) |
//! | `GET /` | the GraphiQL page (assets served by the node) |

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{QueryRejection, StringRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hypha_primitives::{check_integer_literals, DeltaId, Filter, Pointer};
use serde_json::{json, Value};

use crate::api::{DeltaSource, Error, NodeApi, Wait};

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = match &self {
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            e if e.is_rejected_input() => StatusCode::BAD_REQUEST,
            e if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = json!({"error": self.to_string(), "code": self.code()});
        (status, Json(body)).into_response()
    }
}

/// An extractor's refusal (a body over the limit or not UTF-8, a query string that does
/// not parse) in the API's form, so that every failure answers `{"error", "code"}`.
pub(crate) fn refused(status: StatusCode, text: String) -> Error {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        Error::TooLarge(text)
    } else {
        Error::BadInput(text)
    }
}

/// A `filter` query parameter, compiled.
fn filter_param(text: Option<&str>) -> Result<Option<Filter>, Error> {
    text.map(Filter::from_json_str)
        .transpose()
        .map_err(|e| Error::bad_input(format!("filter: {e}")))
}

/// The bearer token a request presents, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// `GET /health`.
pub(crate) async fn health(State(api): State<Arc<NodeApi>>) -> Result<Json<Value>, Error> {
    Ok(Json(json!({
        "status": "ok",
        "host": api.key().host_id().to_string(),
        "deltas": api.journal_length()?,
    })))
}

/// `GET /status`: the node's state (see [`NodeApi::status`]).
pub(crate) async fn status(State(api): State<Arc<NodeApi>>) -> Result<Json<Value>, Error> {
    Ok(Json(api.status().await?))
}

/// `POST /write`.
pub(crate) async fn write(
    State(api): State<Arc<NodeApi>>,
    headers: HeaderMap,
    body: Result<String, StringRejection>,
) -> Result<Json<Value>, Error> {
    api.authorize(bearer(&headers))?;
    let body = body.map_err(|r| refused(r.status(), r.body_text()))?;
    check_integer_literals(&body).map_err(Error::bad_input)?;
    // Any content type: `curl -d` sends a form type, and the body is JSON either way.
    let body: Value = serde_json::from_str(&body)
        .map_err(|e| Error::bad_input(format!("malformed JSON: {e}")))?;
    let pointers = body
        .get("pointers")
        .ok_or_else(|| Error::bad_input("missing \"pointers\""))?;
    let pointers = Pointer::list_from_json_str(&pointers.to_string()).map_err(Error::bad_input)?;
    let count = |name: &str| match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| Error::bad_input(format!("\"{name}\" must be a non-negative integer"))),
    };
    let mut wait = Wait::default();
    if let Some(min) = count("min_confidence")? {
        wait.min_confidence = min as usize;
    }
    if let Some(ms) = count("timeout_ms")? {
        wait.timeout = Duration::from_millis(ms);
    }
    Ok(Json(api.write(pointers, wait).await?.to_json()))
}

/// `POST /deltas`: JSON lines of signed deltas.
pub(crate) async fn import(
    State(api): State<Arc<NodeApi>>,
    headers: HeaderMap,
    body: Result<String, StringRejection>,
) -> Result<Json<Value>, Error> {
    api.authorize(bearer(&headers))?;
    let body = body.map_err(|r| refused(r.status(), r.body_text()))?;
    let answer: Vec<Value> = api
        .import(body)
        .await?
        .into_iter()
        .map(|(id, new)| json!({"id": id.to_string(), "new": new}))
        .collect();
    Ok(Json(Value::Array(answer)))
}

/// Most deltas one `GET /deltas` answers.
const MAX_EXPORT_PAGE: usize = 10_000;

/// `GET /deltas` query parameters.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ExportQuery {
    after: Option<u64>,
    limit: Option<usize>,
    author: Option<String>,
    origin: Option<String>,
    filter: Option<String>,
}

/// `GET /deltas?after=N&limit=M[&author=K|&origin=H][&filter=F]`: stored deltas as JSON
/// lines, each with its stamps (with their proofs) and arrival: the whole journal or one
/// author's deltas in arrival order, or one origin host's in its seq order. The
/// `x-hypha-cursor` header is the `after` of the next page (an arrival, or a seq for
/// `origin`), and `x-hypha-more` whether one may follow.
pub(crate) async fn export(
    State(api): State<Arc<NodeApi>>,
    query: Result<Query<ExportQuery>, QueryRejection>,
) -> Result<Response, Error> {
    let Query(query) = query.map_err(|r| refused(r.status(), r.body_text()))?;
    let limit = query.limit.unwrap_or(1_000).clamp(1, MAX_EXPORT_PAGE);
    let source = DeltaSource::named(query.author.as_deref(), query.origin.as_deref())?;
    let filter = filter_param(query.filter.as_deref())?;
    let page = api.deltas(source, query.after, filter, limit).await?;
    let mut body = String::new();
    for stored in page.deltas {
        body.push_str(&stored.to_json().to_string());
        body.push('\n');
    }
    let cursor = page.cursor.map_or(String::new(), |c| c.to_string());
    let headers = [
        (header::CONTENT_TYPE, "application/x-ndjson".to_owned()),
        (header::HeaderName::from_static("x-hypha-cursor"), cursor),
        (
            header::HeaderName::from_static("x-hypha-more"),
            page.more.to_string(),
        ),
    ];
    Ok((headers, body).into_response())
}

/// `GET /deltas/{id}` query parameters.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct DeltaQuery {
    /// Ask the linked peers when the delta is not held here.
    #[serde(default)]
    fetch: bool,
}

/// `GET /deltas/{id}`.
pub(crate) async fn delta(
    State(api): State<Arc<NodeApi>>,
    Path(id): Path<String>,
    query: Result<Query<DeltaQuery>, QueryRejection>,
) -> Result<Json<Value>, Error> {
    let Query(query) = query.map_err(|r| refused(r.status(), r.body_text()))?;
    let id: DeltaId = id.parse().map_err(Error::bad_input)?;
    match api.delta(id, query.fetch).await? {
        Some(found) => Ok(Json(found.to_json())),
        None if query.fetch => Err(Error::NotFound(format!(
            "no delta {id} here or at any linked peer"
        ))),
        None => Err(Error::NotFound(format!(
            "no delta {id} here (?fetch=true asks the peers)"
        ))),
    }
}

/// `GET /records/…` query parameters.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct RecordQuery {
    confirm_at: Option<u32>,
    at: Option<String>,
    filter: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

/// `GET /records/{type}/{id}`.
pub(crate) async fn record(
    State(api): State<Arc<NodeApi>>,
    Path((entity_type, entity)): Path<(String, String)>,
    query: Result<Query<RecordQuery>, QueryRejection>,
) -> Result<Json<Value>, Error> {
    let Query(query) = query.map_err(|r| refused(r.status(), r.body_text()))?;
    let at = crate::api::as_of(query.at.as_deref())?;
    match api
        .confirmed_record(&entity_type, &entity, query.confirm_at, at)
        .await?
    {
        Some(record) => Ok(Json(record)),
        None if query.at.is_some() => Err(Error::NotFound(format!(
            "{entity} had no {entity_type} record then"
        ))),
        None => Err(Error::NotFound(format!(
            "{entity} has no {entity_type} record"
        ))),
    }
}

/// Most records one `GET /records/{type}` answers.
const MAX_RECORD_PAGE: usize = 1_000;

/// `GET /records/{type}`.
pub(crate) async fn records(
    State(api): State<Arc<NodeApi>>,
    Path(entity_type): Path<String>,
    query: Result<Query<RecordQuery>, QueryRejection>,
) -> Result<Json<Value>, Error> {
    let Query(query) = query.map_err(|r| refused(r.status(), r.body_text()))?;
    let filter = filter_param(query.filter.as_deref())?;
    let at = crate::api::as_of(query.at.as_deref())?;
    let limit = query.limit.unwrap_or(100).clamp(1, MAX_RECORD_PAGE);
    let (records, next) = api
        .confirmed_records(
            entity_type,
            filter,
            query.after,
            limit,
            query.confirm_at,
            at,
        )
        .await?;
    Ok(Json(json!({"records": records, "next": next})))
}

/// `GET /who-has/{entity}`: `{"holders": [{"peer", "deltas"}]}`, every linked peer that
/// answered, with how many deltas about the entity it holds.
pub(crate) async fn who_has(
    State(api): State<Arc<NodeApi>>,
    Path(entity): Path<String>,
) -> Json<Value> {
    let holders: Vec<Value> = api
        .who_has(&entity)
        .await
        .into_iter()
        .map(|(peer, deltas)| json!({"peer": peer.to_string(), "deltas": deltas}))
        .collect();
    Json(json!({ "holders": holders }))
}

/// `GET /peers`.
pub(crate) async fn peers(State(api): State<Arc<NodeApi>>) -> Json<Value> {
    let peers: Vec<String> = api.peers().await.iter().map(ToString::to_string).collect();
    Json(json!({ "peers": peers }))
}
