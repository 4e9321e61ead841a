//! Confidence carried into views: on a network of three node processes, a record read
//! through GraphQL, `GET /records`, `hypha view` and a `changed` subscription goes from
//! provisional to confirmed as peers catch up, against thresholds set per node, per type
//! and per read.

use std::time::Duration;

use serde_json::{json, Value};

use crate::gql::{data, gql, set, Subscriber, PUT_SCHEMA, WRITE};
use crate::support::{eventually, ok, NodeProcess};

const META: &str = r#"query($id: ID!) {
    note(id: $id) { text _meta { provisional confidence confirmAt } strict: _meta(confirmAt: 3) { provisional } }
    tally(id: "t1") { _meta { provisional confirmAt } }
}"#;

/// A note's `_meta` (and the tally's) as the node answers now.
fn meta(node: &NodeProcess, id: &str) -> Value {
    data(node, META, json!({"id": id}))
}

/// The next `changed` event for note `id` (others are skipped).
fn next_change(sub: &mut Subscriber, id: &str) -> Value {
    loop {
        let event = sub.next("changed");
        if event["id"] == id {
            return event["record"].clone();
        }
    }
}

#[test]
fn a_record_goes_from_provisional_to_confirmed_as_peers_catch_up() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    // The node's threshold: two peers.
    let options = ["--confirm-at", "2"];
    let a = NodeProcess::start_with(dirs[0].path(), &[], &options);
    data(
        &a,
        PUT_SCHEMA,
        json!({"s": {"type": "note", "properties": {"text": {"resolver": "lww", "type": "string"}}}}),
    );
    // This type's schema asks for one peer only.
    data(
        &a,
        PUT_SCHEMA,
        json!({"s": {"type": "tally", "confirm_at": 1, "properties": {"n": {"resolver": "max"}}}}),
    );
    data(&a, WRITE, json!({"p": set("n1", "text", json!("hello"))}));
    data(&a, WRITE, json!({"p": set("t1", "n", json!(5))}));
    eventually(
        "the views to apply the writes",
        Duration::from_secs(20),
        || !meta(&a, "n1")["note"].is_null() && !meta(&a, "n1")["tally"].is_null(),
    );
    let alone = meta(&a, "n1");
    assert_eq!(
        alone["note"]["_meta"],
        json!({"provisional": true, "confidence": 0, "confirmAt": 2}),
        "{alone}"
    );
    assert_eq!(alone["tally"]["_meta"]["provisional"], true, "{alone}");

    // A subscriber sees a new note provisional, then again each time its confidence rises.
    let mut sub = Subscriber::open(&a, r#"subscription { changed(type: "note") }"#, json!({}));
    // The subscription is live once it has seen a change made after it opened.
    data(&a, WRITE, json!({"p": set("n2", "text", json!("later"))}));
    let first = next_change(&mut sub, "n2");
    assert_eq!(first["provisional"], true, "{first}");
    assert_eq!(first["fields"]["text"]["confidence"], 0, "{first}");

    // One peer: confidence 1, still provisional at the node's 2, confirmed for the tally
    // (its schema says 1) and for a read that asks for 1.
    let b = NodeProcess::start_with(dirs[1].path(), &[&a.router], &options);
    eventually(
        "A to learn that B holds the notes",
        Duration::from_secs(30),
        || meta(&a, "n1")["note"]["_meta"]["confidence"] == 1,
    );
    let one = meta(&a, "n1");
    assert_eq!(one["note"]["_meta"]["provisional"], true, "{one}");
    assert_eq!(one["tally"]["_meta"]["provisional"], false, "{one}");
    let relaxed = data(
        &a,
        r#"{ note(id: "n1") { _meta(field: "text", confirmAt: 1) { provisional confirmAt } } }"#,
        json!({}),
    );
    assert_eq!(
        relaxed["note"]["_meta"],
        json!({"provisional": false, "confirmAt": 1}),
        "{relaxed}"
    );
    let risen = next_change(&mut sub, "n2");
    assert_eq!(risen["fields"]["text"]["confidence"], 1, "{risen}");
    assert_eq!(risen["provisional"], true, "{risen}");

    // Two peers: confirmed everywhere the node's threshold applies.
    let c = NodeProcess::start_with(dirs[2].path(), &[&a.router], &options);
    eventually(
        "A to learn that C holds the notes",
        Duration::from_secs(30),
        || meta(&a, "n1")["note"]["_meta"]["confidence"] == 2,
    );
    let two = meta(&a, "n1");
    assert_eq!(two["note"]["_meta"]["provisional"], false, "{two}");
    assert_eq!(
        two["note"]["strict"]["provisional"], true,
        "a read asking for 3: {two}"
    );
    let confirmed = next_change(&mut sub, "n2");
    assert_eq!(confirmed["provisional"], false, "{confirmed}");
    assert_eq!(
        confirmed["fields"]["text"]["provisional"], false,
        "{confirmed}"
    );
    assert_eq!(confirmed["fields"]["text"]["confidence"], 2, "{confirmed}");

    // The plain HTTP API and the CLI say the same, through the node.
    let record = a.get("/records/note/n1").unwrap();
    assert_eq!(record["provisional"], false, "{record}");
    assert_eq!(record["fields"]["text"]["confidence"], 2, "{record}");
    let strict = a.get("/records/note/n1?confirm_at=3").unwrap();
    assert_eq!(strict["fields"]["text"]["provisional"], true, "{strict}");
    let page = a.get("/records/note?limit=1").unwrap();
    assert_eq!(page["records"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["next"], "n1", "{page}");
    let cli = |args: &[&str]| -> Value {
        let mut argv = vec!["--node", a.http.as_str(), "view", "note"];
        argv.extend_from_slice(args);
        serde_json::from_str(ok(dirs[0].path(), &argv).lines().next().unwrap()).unwrap()
    };
    let viewed = cli(&["n1"]);
    assert_eq!(viewed["fields"]["text"]["value"], "hello", "{viewed}");
    assert_eq!(viewed["fields"]["text"]["confidence"], 2, "{viewed}");
    assert_eq!(viewed["provisional"], false, "{viewed}");
    assert_eq!(cli(&["n1", "--confirm-at", "3"])["provisional"], true);
    let listed = cli(&["--filter", r#"{"==": [{"var": "id"}, "n2"]}"#]);
    assert_eq!(listed["id"], "n2", "{listed}");
    assert_eq!(listed["provisional"], false, "{listed}");
    // A query string that does not parse is refused in the API's form too.
    let (status, body) = a.get("/records/note?limit=many").unwrap_err();
    assert_eq!(status, 400, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], "BAD_INPUT", "{body}");
    let (status, body) = a.get("/records/ghost/x").unwrap_err();
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no schema for type"), "{body}");
    for node in [a, b, c] {
        node.stop();
    }
}

#[test]
fn a_provisional_value_is_confirmed_once_a_second_node_holds_it() {
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = NodeProcess::start(dirs[0].path(), &[]);
    data(
        &a,
        PUT_SCHEMA,
        json!({"s": {"type": "user", "properties": {"name": {"resolver": "lww", "type": "string"}}}}),
    );
    data(
        &a,
        WRITE,
        json!({"p": set("alice", "name", json!("Alice"))}),
    );
    let query = r#"{ user(id: "alice") { name _meta(field: "name") { provisional confidence } } }"#;
    eventually("alice's record", Duration::from_secs(20), || {
        gql(&a, query, json!({}))["data"]["user"]["name"] == json!("Alice")
    });
    let meta = data(&a, query, json!({}))["user"]["_meta"].clone();
    assert_eq!(meta, json!({"provisional": true, "confidence": 0}));

    // A second node joins and catches up: the value is confirmed.
    let b = NodeProcess::start(dirs[1].path(), &[&a.router]);
    eventually("the value to be confirmed", Duration::from_secs(20), || {
        gql(&a, query, json!({}))["data"]["user"]["_meta"]
            == json!({"provisional": false, "confidence": 1})
    });
    // A's metrics agree: both its deltas are held by one peer, and B lags by nothing.
    eventually(
        "B's coverage in A's metrics",
        Duration::from_secs(20),
        || {
            a.get_text("/metrics")
                .contains("hypha_confidence_bucket{le=\"0\"} 0")
        },
    );
    let text = a.get_text("/metrics");
    for line in [
        "hypha_confidence_bucket{le=\"1\"} 2",
        "hypha_confidence_count 2",
        "hypha_confidence_sum 2",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    eventually("B caught up", Duration::from_secs(20), || {
        b.get_text("/metrics").contains("hypha_catch_up_lag 0")
    });
    b.stop();
    a.stop();
}
