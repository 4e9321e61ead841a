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
    // A chain stays a chain only if nodes do not learn each other's addresses.
    let chain = ["--learn-peers", "0"];
    let a = NodeProcess::start_with(dirs[0].path(), &[], &chain);
    let b = NodeProcess::start_with(dirs[1].path(), &[&a.router], &chain);
    let c = NodeProcess::start_with(dirs[2].path(), &[&b.router], &chain);

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
    let c = NodeProcess::start_with(dirs[2].path(), &[&b.router], &chain);
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

#[test]
fn a_partial_replica_process_holds_its_slice_and_fetches_or_locates_the_rest() {
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = NodeProcess::start(dirs[0].path(), &[]);
    let about = |entity: &str, n: i64| {
        json!([
            {"local_context": "subject", "target": {"entity": entity}, "target_context": "n"},
            {"local_context": "n", "target": {"value": n}}
        ])
    };
    let mine: Vec<String> = (0..5)
        .map(|n| id_of(&a.write(about("mine", n), 0, 0)))
        .collect();
    let theirs: Vec<String> = (0..5)
        .map(|n| id_of(&a.write(about("theirs", n), 0, 0)))
        .collect();
    let b = NodeProcess::start_with(
        dirs[1].path(),
        &[&a.router],
        &["--replicate", r#"{"in": ["mine", {"var": "targets"}]}"#],
    );
    assert!(b.logged(&["partial replica"]));
    eventually("B to reconcile its slice", Duration::from_secs(20), || {
        mine.iter().all(|id| b.has(id))
    });
    // A live write outside the slice, then one inside: only the second is kept.
    let outside = id_of(&a.write(about("theirs", 9), 0, 0));
    let inside = id_of(&a.write(about("mine", 9), 0, 0));
    eventually(
        "B to receive its live slice",
        Duration::from_secs(10),
        || b.has(&inside),
    );
    for id in theirs.iter().chain([&outside]) {
        assert!(!b.has(id), "B stored {id}, outside its slice");
    }
    assert_eq!(b.get("/health").unwrap()["deltas"], json!(6));

    // Who holds deltas about "theirs"? A, six of them.
    let holders = b.get("/who-has/theirs").unwrap();
    assert_eq!(holders, json!({"holders": [{"peer": a.host, "deltas": 6}]}));
    let graphql = b
        .post(
            "/graphql",
            &json!({"query": "{ whoHas(entity: \"theirs\") }"}).to_string(),
        )
        .unwrap();
    assert_eq!(graphql["data"]["whoHas"], holders["holders"]);
    // Fetch by id brings one across on request.
    let (status, body) = b.get(&format!("/deltas/{}", theirs[0])).unwrap_err();
    assert_eq!(status, 404);
    assert!(body.contains("\"code\":\"NOT_FOUND\""), "{body}");
    let fetched = b.get(&format!("/deltas/{}?fetch=true", theirs[0])).unwrap();
    assert_eq!(fetched["id"], json!(theirs[0]));
    assert!(b.has(&theirs[0]));
    let query = json!({"query": "query($id: ID!) { delta(id: $id, fetch: true) }", "variables": {"id": theirs[1]}});
    let graphql = b.post("/graphql", &query.to_string()).unwrap();
    assert_eq!(graphql["data"]["delta"]["id"], json!(theirs[1]));
    a.stop();
    b.stop();
}

/// A peer that sends a `hypha node` process forged deltas is disconnected, and nothing it
/// sent is stored. The peer is played by this test over a raw ZeroMQ socket, with a real
/// handshake (`hypha_net::raw`).
#[test]
fn a_node_process_disconnects_a_peer_sending_forged_deltas() {
    use hypha_delta_store::StampedDelta;
    use hypha_net::raw::RawPeer;
    use hypha_net::Message;
    use hypha_primitives::{Delta, DeltaBuilder, Hlc, KeyPair, Pointer};

    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), &[]);
    let mallory = KeyPair::from_seed([66; 32]);
    let signed = |n: i64| -> Delta {
        DeltaBuilder::new(Hlc::new(1_700_000_000_000 + n as u64, 0))
            .pointer(Pointer::entity("subject", "victim", "n"))
            .pointer(Pointer::value("n", n))
            .sign(&mallory)
            .unwrap()
    };
    let forged: Vec<Delta> = (0..3)
        .map(|n| {
            let mut bytes = signed(n).encode();
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
            Delta::decode(&bytes).expect("well-formed, badly signed")
        })
        .collect();
    let honest = signed(99);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut raw = RawPeer::handshake(&node.router, &mallory, false).await;
        for delta in &forged {
            raw.send(&Message::Deltas(vec![StampedDelta::from(delta.clone())]))
                .await;
        }
        eventually(
            "the node to disconnect mallory",
            Duration::from_secs(20),
            || {
                node.logged(&[
                    "disconnecting misbehaving peer",
                    &mallory.host_id().to_string(),
                ])
            },
        );
        // Once banned, even a well-signed delta from mallory is ignored.
        raw.send(&Message::Deltas(vec![StampedDelta::from(honest.clone())]))
            .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    });
    for delta in forged.iter().chain([&honest]) {
        assert!(
            !node.has(&delta.id().to_string()),
            "{} was stored",
            delta.id()
        );
    }
    assert_eq!(node.get("/health").unwrap()["deltas"], json!(0));
    node.stop();
}
