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

/// Partial replicas reconcile their slice, and every node fetches by id and asks who holds
/// an entity, under the same faults.
#[test]
fn partial_replicas_fetches_and_who_has_hold_for_a_thousand_seeds() {
    let config = SimConfig {
        nodes: 5,
        partial_nodes: 2,
        calls_per_node: 4,
        ..SimConfig::default()
    };
    let pool = DeltaPool::new(config.nodes, config.writes_per_node);
    let mut turns = 0;
    for seed in 0..1_000 {
        let stats = run(seed, &config, &pool).unwrap_or_else(|failure| panic!("{failure}"));
        assert_eq!(stats.calls, 5 * 4 + 5 + 2, "every call made (and answered)");
        turns += stats.reconcile_turns;
    }
    assert!(turns > 1_000, "partial replicas reconciled ({turns} turns)");
}

#[test]
#[ignore = "long: the CI-sized run above covers a thousand seeds"]
fn partial_replicas_fetches_and_who_has_hold_for_twenty_thousand_seeds() {
    let config = SimConfig {
        nodes: 5,
        partial_nodes: 2,
        calls_per_node: 4,
        ..SimConfig::default()
    };
    seeds(&config, 20_000);
}

/// Partial replicas only: what pushes lose, only reconciliation brings back.
fn partial_only(reconcile_every_ms: u64) -> SimConfig {
    let mut config = SimConfig {
        nodes: 4,
        partial_nodes: 4,
        calls_per_node: 2,
        drop: 0.6,
        partition: false,
        ..SimConfig::default()
    };
    config.peer.reconcile_every_ms = reconcile_every_ms;
    // Nobody leaves, so nobody's return starts a reconciliation either.
    config.peer.peer_timeout_ms = u64::MAX / 4;
    config
}

#[test]
fn partial_replicas_alone_repair_heavy_loss_by_reconciling() {
    seeds(&partial_only(1_000), 200);
}

#[test]
fn without_reconciling_partial_replicas_would_stay_behind() {
    // A control for the test above: reconciling only when a peer first links.
    let config = partial_only(u64::MAX / 4);
    let pool = DeltaPool::new(config.nodes, config.writes_per_node);
    let failures = (0..50)
        .filter(|seed| run(*seed, &config, &pool).is_err())
        .count();
    assert!(
        failures > 25,
        "only {failures} of 50 lossy runs failed without reconciling"
    );
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
