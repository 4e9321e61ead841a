//! GraphQL subscriptions executed in process against a real journal.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::futures_util::StreamExt;
use hypha_bindings::api::NodeApi;
use hypha_bindings::graphql::GraphQl;
use hypha_delta_store::{Durability, Store};
use hypha_primitives::{DeltaBuilder, Hlc, KeyPair, Pointer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deltas_subscription_replays_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .durability(Durability::Buffered)
        .open()
        .unwrap();
    let key = KeyPair::from_seed([1; 32]);
    let delta = DeltaBuilder::new(Hlc::new(1, 0))
        .pointer(Pointer::value("n", 1i64))
        .sign(&key)
        .unwrap();
    store.put(delta.clone()).unwrap();
    let api = Arc::new(NodeApi::new(store, key, None).unwrap());
    let graphql = GraphQl::new(api).unwrap();
    let schema = graphql.schema().unwrap();
    let mut stream = schema.execute_stream("subscription { deltas }");
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an event in time")
        .expect("an event");
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    let data = first.data.into_json().unwrap();
    assert_eq!(data["deltas"]["id"], delta.id().to_string());
}

fn open_store(dir: &std::path::Path) -> Store {
    Store::builder(dir)
        .durability(Durability::Buffered)
        .open()
        .unwrap()
}

fn targeting(key: &KeyPair, n: u64, entity: &str) -> hypha_primitives::Delta {
    DeltaBuilder::new(Hlc::new(1_000 + n, 0))
        .pointer(Pointer::entity("subject", entity, "seen"))
        .pointer(Pointer::value("n", n as i64))
        .sign(key)
        .unwrap()
}

async fn next_delta(
    stream: &mut (impl async_graphql::futures_util::Stream<Item = async_graphql::Response> + Unpin),
) -> serde_json::Value {
    let response = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("an event in time")
        .expect("an event");
    assert!(response.errors.is_empty(), "{:?}", response.errors);
    response.data.into_json().unwrap()["deltas"].clone()
}

/// Polls `stream` until it waits for new deltas (as a websocket connection would), which
/// is when it joins the hub; nothing may arrive meanwhile.
async fn settle(
    stream: &mut (impl async_graphql::futures_util::Stream<Item = async_graphql::Response> + Unpin),
) {
    let quiet = tokio::time::timeout(Duration::from_millis(20), stream.next()).await;
    assert!(quiet.is_err(), "nothing more to read yet: {quiet:?}");
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..400 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Many live subscriptions, most with indexed filters and some evaluated one by one: each
/// receives exactly the deltas its filter matches, in arrival order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_subscriptions_each_receive_exactly_their_deltas() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let key = KeyPair::from_seed([2; 32]);
    let api = Arc::new(NodeApi::new(store.clone(), key.clone(), None).unwrap());
    let schema = GraphQl::new(api.clone()).unwrap().schema().unwrap();
    const ENTITIES: u64 = 100;
    let mut streams = Vec::new();
    for i in 0..ENTITIES {
        let request = async_graphql::Request::new("subscription($f: JSON) { deltas(filter: $f) }")
            .variables(async_graphql::Variables::from_json(serde_json::json!({
                "f": {"in": [format!("e{i}"), {"var": "targets"}]}
            })));
        streams.push(Box::pin(schema.execute_stream(request)));
    }
    // Not anchored: evaluated against every delta.
    let request = async_graphql::Request::new("subscription($f: JSON) { deltas(filter: $f) }")
        .variables(async_graphql::Variables::from_json(serde_json::json!({
            "f": {">=": [{"var": "values.0"}, 2 * ENTITIES]}
        })));
    let mut high = Box::pin(schema.execute_stream(request));

    // A first delta for each entity, read by each subscription from the journal or the hub.
    for i in 0..ENTITIES {
        store.put(targeting(&key, i, &format!("e{i}"))).unwrap();
    }
    for (i, stream) in streams.iter_mut().enumerate() {
        assert_eq!(
            next_delta(stream).await["pointers"][1]["target"]["value"],
            i as u64
        );
        settle(stream).await;
    }
    settle(&mut high).await;
    eventually("every subscription fed by the hub", || {
        api.hub_subscribers().0 == ENTITIES as usize + 1
    })
    .await;
    // Live: two more rounds, then deltas only the unanchored filter takes.
    for n in ENTITIES..3 * ENTITIES {
        store
            .put(targeting(&key, n, &format!("e{}", n % ENTITIES)))
            .unwrap();
    }
    for (i, stream) in streams.iter_mut().enumerate() {
        for round in 1..3 {
            let delta = next_delta(stream).await;
            assert_eq!(delta["pointers"][0]["target"]["entity"], format!("e{i}"));
            assert_eq!(
                delta["pointers"][1]["target"]["value"],
                round * ENTITIES + i as u64
            );
        }
    }
    for n in 2 * ENTITIES..3 * ENTITIES {
        let delta = next_delta(&mut high).await;
        assert_eq!(delta["pointers"][1]["target"]["value"], n);
    }
    // Nothing else arrived on any indexed subscription.
    store.put(targeting(&key, 0, "elsewhere")).unwrap();
    let quiet = tokio::time::timeout(Duration::from_millis(300), streams[0].next()).await;
    assert!(
        quiet.is_err(),
        "an unrelated delta reached a subscription: {quiet:?}"
    );
    assert_eq!(api.hub_subscribers().1, 1, "one filter has no anchor");
    drop(streams);
    eventually("closed subscriptions leave the hub", || {
        api.hub_subscribers().0 == 1
    })
    .await;
}

/// A subscriber that stops reading is dropped by the hub, then reads the journal from its
/// cursor: it receives every delta once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let key = KeyPair::from_seed([3; 32]);
    let api = Arc::new(NodeApi::new(store.clone(), key.clone(), None).unwrap());
    let schema = GraphQl::new(api.clone()).unwrap().schema().unwrap();
    let mut stream = Box::pin(schema.execute_stream("subscription { deltas }"));
    store.put(targeting(&key, 0, "e")).unwrap();
    next_delta(&mut stream).await;
    settle(&mut stream).await;
    eventually("the subscription fed by the hub", || {
        api.hub_subscribers().0 == 1
    })
    .await;
    // More than the subscriber's buffer, while it does not read.
    let total = 3_000u64;
    let batch: Vec<_> = (1..total).map(|n| targeting(&key, n, "e")).collect();
    for chunk in batch.chunks(100) {
        store
            .put_batch(chunk.iter().cloned().map(Into::into).collect())
            .unwrap();
    }
    eventually("the stalled subscriber dropped from the hub", || {
        api.hub_subscribers().0 == 0
    })
    .await;
    for n in 1..total {
        let delta = next_delta(&mut stream).await;
        assert_eq!(
            delta["pointers"][1]["target"]["value"], n,
            "in order, none lost"
        );
    }
    settle(&mut stream).await;
    eventually("the subscriber back in the hub", || {
        api.hub_subscribers().0 == 1
    })
    .await;
    store.put(targeting(&key, total, "e")).unwrap();
    assert_eq!(
        next_delta(&mut stream).await["pointers"][1]["target"]["value"],
        total
    );
}

/// The hub falls behind a tiny feed and reads new deltas back from the journal, where a
/// stamp of a batch only names it: subscribers still get every delta, each stamp with its
/// proof (a line that imports elsewhere).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_deltas_read_back_after_a_lag_carry_their_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .durability(Durability::Buffered)
        .feed_capacity(2)
        .open()
        .unwrap();
    let key = KeyPair::from_seed([4; 32]);
    let api = Arc::new(NodeApi::new(store.clone(), key.clone(), None).unwrap());
    let schema = GraphQl::new(api).unwrap().schema().unwrap();
    let mut stream = Box::pin(schema.execute_stream("subscription { deltas }"));
    settle(&mut stream).await;
    // Far more than the feed holds, stamped as one batch.
    let deltas: Vec<_> = (0..40).map(|n| targeting(&key, n, "lagged")).collect();
    store.put_local_batch(deltas.clone(), &key).unwrap();
    for delta in &deltas {
        let line = next_delta(&mut stream).await;
        assert_eq!(line["id"], delta.id().to_string());
        let stamp = &line["stamps"][0];
        assert!(stamp.get("batch_first").is_none(), "a named stamp: {line}");
        assert!(stamp["batch"]["signature"].is_string(), "{line}");
        let parsed = hypha_primitives::StampedDelta::from_json_str(&line.to_string()).unwrap();
        assert_eq!(parsed.delta.id(), delta.id());
    }
}
