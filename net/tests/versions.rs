//! A peer of another wire version, against a real node over ZeroMQ on 127.0.0.1.

use std::time::Duration;

use hypha_delta_store::{Durability, Store};
use hypha_net::raw::RawPeer;
use hypha_net::{NetConfig, Network};
use hypha_primitives::KeyPair;

/// A peer of wire version 1 is refused at the handshake, counted, and the node still links
/// peers of its own version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_of_the_old_wire_version_is_refused_at_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .durability(Durability::Buffered)
        .open()
        .unwrap();
    let config = NetConfig {
        listen: "tcp://127.0.0.1:0".into(),
        publish: "tcp://127.0.0.1:0".into(),
        ..NetConfig::default()
    };
    let net = Network::start(store, KeyPair::from_seed([23; 32]), config)
        .await
        .unwrap();
    let router = net.endpoints().router.clone();
    let old = KeyPair::from_seed([24; 32]);
    let welcomed = RawPeer::hello_of_version_1(&router, &old, Duration::from_millis(500)).await;
    assert!(!welcomed, "a hello of version 1 gets no welcome");
    assert_eq!(net.stats().handshakes_refused, 1);
    // A peer of this version still links.
    let _current = RawPeer::handshake(&router, &KeyPair::from_seed([25; 32]), false).await;
    assert_eq!(net.stats().handshakes_refused, 1);
    net.stop().await;
}
