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
