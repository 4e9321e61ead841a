//! GraphQL subscriptions executed in process against a real journal.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::futures_util::StreamExt;
use hypha_bindings::graphql::GraphQl;
use hypha_bindings::http::NodeApi;
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
