//! Convergence under loss, duplication, reordering and healed partitions, over many seeds.

use hypha_net::sim::{run, DeltaPool, SimConfig, Topology};

fn seeds(config: &SimConfig, count: u64) {
    let pool = DeltaPool::new(config.nodes, config.writes_per_node);
    let mut worst = 0;
    for seed in 0..count {
        match run(seed, config, &pool) {
            Ok(stats) => worst = worst.max(stats.converged_at_ms.unwrap_or(u64::MAX)),
            // The message names the seed, so a failure can be replayed with run(seed, …).
            Err(failure) => panic!("{failure}"),
        }
    }
    assert!(worst > 0);
}

#[test]
fn a_full_mesh_converges_for_a_thousand_seeds() {
    seeds(&SimConfig::default(), 1_000);
}

#[test]
fn a_chain_converges_through_relays() {
    seeds(
        &SimConfig {
            nodes: 5,
            topology: Topology::Chain,
            partition: false,
            ..SimConfig::default()
        },
        200,
    );
}

#[test]
fn heavy_loss_is_repaired_by_catch_up() {
    seeds(
        &SimConfig {
            drop: 0.6,
            duplicate: 0.3,
            max_delay_ms: 200,
            ..SimConfig::default()
        },
        200,
    );
}

#[test]
fn without_catch_up_repairs_nothing_lost_would_arrive() {
    // A control: with publishing only (catch-up pages of zero deltas are never useful) the
    // same losses leave nodes behind, so the tests above exercise catch-up, not luck.
    let config = SimConfig {
        drop: 0.6,
        ..SimConfig::default()
    };
    let pool = DeltaPool::new(config.nodes, config.writes_per_node);
    let no_catch_up = SimConfig {
        peer: hypha_net::PeerConfig {
            page_size: 0,
            ..config.peer.clone()
        },
        ..config.clone()
    };
    let failures = (0..50)
        .filter(|seed| run(*seed, &no_catch_up, &pool).is_err())
        .count();
    assert!(
        failures > 25,
        "only {failures} of 50 lossy runs failed without catch-up"
    );
}

/// After convergence, every peer's journal, applied to real materialized views in the
/// order that peer stored it (as a node's views follow its journal), gives the same
/// records, byte for byte. Each node needs its own RocksDB, so this runs 25 seeds (about
/// 7 s); the thousand-seed run above checks the deltas and coverage, and the views crate's
/// property tests check order independence over far more orders.
#[test]
fn every_peer_materializes_the_same_views() {
    use hypha_delta_store::{Durability, StampedDelta, Store};
    use hypha_primitives::{DeltaBuilder, Hlc, KeyPair, Schema};
    use hypha_views::Materializer;

    let config = SimConfig::default();
    let pool = DeltaPool::new(config.nodes, config.writes_per_node);
    // The pool's deltas set property `p` of entities e0, e1, e2.
    let schema = Schema::from_json(&serde_json::json!({
        "type": "thing", "properties": {"p": {"resolver": "lww"}}
    }))
    .unwrap();
    let schema_delta: StampedDelta = DeltaBuilder::new(Hlc::new(0, 0))
        .pointers(schema.to_pointers())
        .sign(&KeyPair::from_seed([99; 32]))
        .unwrap()
        .into();
    for seed in 0..25 {
        let stats = run(seed, &config, &pool).unwrap_or_else(|failure| panic!("{failure}"));
        let mut views = Vec::new();
        for (node, arrivals) in stats.arrivals.iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::builder(dir.path())
                .durability(Durability::Buffered)
                .open()
                .unwrap();
            store.put_batch(vec![schema_delta.clone()]).unwrap();
            let mut materializer = Materializer::open(store.clone()).unwrap();
            for stamped in arrivals {
                store.put_batch(vec![stamped.clone()]).unwrap();
                materializer.apply_pending().unwrap();
            }
            let records = materializer.records("thing", None, 100).unwrap();
            assert_eq!(records.len(), 3, "seed {seed}, node {node}");
            views.push(records);
        }
        for (node, records) in views.iter().enumerate() {
            assert_eq!(
                records, &views[0],
                "seed {seed}: node {node}'s views differ from node 0's"
            );
        }
    }
}
