//! `GET /metrics`: the node's Prometheus text, rendered from the journal, the views'
//! cursor, the subscriptions and the network's counters.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::api::{blocking, Error, NodeApi};

/// `GET /metrics`: Prometheus text. Rates (ingest, messages) are for Prometheus to derive
/// from the counters.
pub(crate) async fn metrics(State(api): State<Arc<NodeApi>>) -> Result<Response, Error> {
    let store = api.store().clone();
    let (deltas, bytes, views_cursor) = blocking(move || {
        let deltas = store.last_arrival()?.map_or(0, |a| a.get());
        let bytes = store.disk_bytes()?;
        let cursor = hypha_views::Materializer::reader(store)
            .cursor()?
            .map_or(0, |a| a.get());
        Ok((deltas, bytes, cursor))
    })
    .await?;
    let mut out = String::new();
    let mut histogram = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    metric(
        "hypha_deltas_stored",
        "counter",
        "Deltas in the journal (its last arrival position).",
        deltas,
    );
    metric(
        "hypha_stored_bytes",
        "gauge",
        "Bytes the journal takes (table files and memtables).",
        bytes,
    );
    metric(
        "hypha_views_applied",
        "counter",
        "Arrival position the materialized views have applied.",
        views_cursor,
    );
    metric(
        "hypha_views_lag",
        "gauge",
        "Deltas stored but not yet applied to the views.",
        deltas.saturating_sub(views_cursor),
    );
    metric(
        "hypha_subscriptions",
        "gauge",
        "Open GraphQL delta subscriptions.",
        crate::graphql::open_subscriptions(),
    );
    let (live, unanchored) = api.hub_subscribers();
    metric(
        "hypha_subscriptions_live",
        "gauge",
        "Delta subscriptions caught up and fed by the subscription hub.",
        live as u64,
    );
    metric(
        "hypha_subscriptions_unindexed",
        "gauge",
        "Live delta subscriptions whose filter has no indexed equality, so is evaluated against every delta.",
        unanchored as u64,
    );
    if let Some(network) = api.network() {
        let replication = network.replication().await;
        metric(
            "hypha_catch_up_lag",
            "gauge",
            "Deltas peers have announced holding that this node lacks.",
            replication.lag,
        );
        histogram = confidence_histogram(&replication.held_by);
        let stats = network.stats();
        metric(
            "hypha_peers",
            "gauge",
            "Linked peers.",
            network.peers().await.len() as u64,
        );
        metric(
            "hypha_messages_published_total",
            "counter",
            "Messages published to subscribers.",
            stats.published,
        );
        metric(
            "hypha_messages_sent_total",
            "counter",
            "Messages sent to one peer (catch-up).",
            stats.sent,
        );
        metric(
            "hypha_messages_received_total",
            "counter",
            "Messages received from peers.",
            stats.received,
        );
        metric(
            "hypha_bytes_published_total",
            "counter",
            "Bytes published.",
            stats.published_bytes,
        );
        metric(
            "hypha_bytes_sent_total",
            "counter",
            "Bytes sent to one peer.",
            stats.sent_bytes,
        );
        metric(
            "hypha_bytes_received_total",
            "counter",
            "Bytes received from peers.",
            stats.received_bytes,
        );
        metric(
            "hypha_handshakes_refused_total",
            "counter",
            "Handshakes refused: malformed, of another wire version, or unproven.",
            stats.handshakes_refused,
        );
    }
    out.push_str(&histogram);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

/// The `hypha_confidence` histogram: the deltas this node holds, by how many peers are
/// known to hold each (`held_by[k]` deltas are held by exactly `k`).
fn confidence_histogram(held_by: &[u64]) -> String {
    const NAME: &str = "hypha_confidence";
    let mut out = format!(
        "# HELP {NAME} Deltas held here, by how many peers are known to hold each.\n# TYPE {NAME} histogram\n"
    );
    let at_most = |k: usize| held_by.iter().take(k + 1).sum::<u64>();
    for bound in [0, 1, 2, 3, 5, 10] {
        out.push_str(&format!(
            "{NAME}_bucket{{le=\"{bound}\"}} {}\n",
            at_most(bound)
        ));
    }
    let count: u64 = held_by.iter().sum();
    let sum: u64 = held_by.iter().enumerate().map(|(k, n)| k as u64 * n).sum();
    out.push_str(&format!(
        "{NAME}_bucket{{le=\"+Inf\"}} {count}\n{NAME}_sum {sum}\n{NAME}_count {count}\n"
    ));
    out
}
