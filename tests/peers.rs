//! Several `hypha node` processes replicating over loopback ZeroMQ: a chain, a restart with
//! catch-up, confidence waits, and join/leave events. Writes go through the HTTP API.

use std::time::Duration;

use serde_json::json;

use crate::support::{eventually, NodeProcess};

fn set(n: i64) -> serde_json::Value {
    json!([
        {"local_context": "subject", "target": {"entity": "counter"}, "target_context": "n"},
        {"local_context": "n", "target": {"value": n}}
    ])
}

fn id_of(answer: &serde_json::Value) -> String {
    answer["id"].as_str().expect("an id").to_owned()
}

#[test]
fn a_chain_replicates_survives_a_restart_and_reports_confidence() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = NodeProcess::start(dirs[0].path(), &[]);
    let b = NodeProcess::start(dirs[1].path(), &[&a.router]);
    let c = NodeProcess::start(dirs[2].path(), &[&b.router]);

    // A write on A is readable on C through B (C never dials A).
    let first = id_of(&a.write(set(1), 0, 0));
    eventually("A's write to reach C", Duration::from_secs(20), || {
        c.has(&first)
    });
    // Join events: B saw both neighbours join.
    eventually("B to log both joins", Duration::from_secs(10), || {
        b.logged(&["peer joined", &a.host]) && b.logged(&["peer joined", &c.host])
    });
    assert_eq!(
        b.get("/peers").unwrap()["peers"].as_array().unwrap().len(),
        2
    );

    // B writes and waits for both its peers to hold the write.
    let answer = b.write(set(2), 2, 10_000);
    assert_eq!(answer["reached"], json!(true), "{answer}");
    assert_eq!(answer["confidence"], json!(2), "{answer}");

    // C is killed; writes go on; B notices C leave.
    let c_host = c.host.clone();
    c.kill();
    eventually("B to log C leaving", Duration::from_secs(20), || {
        b.logged(&["peer left", &c_host])
    });
    // With C gone, B asking for two peers gets one, at the timeout.
    let answer = b.write(set(3), 2, 1_000);
    assert_eq!(answer["reached"], json!(false), "{answer}");
    assert_eq!(answer["confidence"], json!(1), "{answer}");
    let later: Vec<String> = (10..30).map(|n| id_of(&a.write(set(n), 0, 0))).collect();

    // C restarts on its folder and catches up what it missed.
    let c = NodeProcess::start(dirs[2].path(), &[&b.router]);
    eventually(
        "the restarted C to catch up",
        Duration::from_secs(30),
        || later.iter().all(|id| c.has(id)),
    );
    assert!(c.has(&first));
    for node in [a, b, c] {
        node.stop();
    }
}

#[test]
fn a_fresh_node_catches_up_a_hundred_thousand_deltas() {
    use hypha_primitives::{DeltaBuilder, Hlc, KeyPair, Pointer};
    const COUNT: usize = 100_000;
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = NodeProcess::start(dirs[0].path(), &[]);
    let client = KeyPair::from_seed([7; 32]);
    let lines: Vec<String> = (0..COUNT)
        .map(|n| {
            DeltaBuilder::new(Hlc::new(1_700_000_000_000 + n as u64, 0))
                .pointer(Pointer::entity("subject", format!("e{}", n % 1000), "n"))
                .pointer(Pointer::value("n", n as i64))
                .sign(&client)
                .unwrap()
                .to_json_string()
        })
        .collect();
    for chunk in lines.chunks(10_000) {
        let answer = a.post("/deltas", &chunk.join("\n")).expect("submit");
        assert_eq!(answer.as_array().unwrap().len(), chunk.len());
    }
    assert_eq!(a.get("/health").unwrap()["deltas"], json!(COUNT));

    let d = NodeProcess::start(dirs[1].path(), &[&a.router]);
    eventually(
        "the fresh node to catch up",
        Duration::from_secs(120),
        || d.get("/health").unwrap()["deltas"] == json!(COUNT),
    );
    for node in [a, d] {
        node.stop();
    }
}
