//! What an attacker tried against `hypha node` processes over their HTTP API, each found
//! once to work and now refused: a signature the batch check accepted and the single check
//! refused, integers rounded instead of refused, filters that are not rules, and a
//! GraphQL document whose fragments fan out.

use std::time::{Duration, Instant};

use hypha_primitives::{Delta, DeltaBuilder, Hlc, KeyPair, Pointer, Signature};
use serde_json::{json, Value};

use crate::gql::Subscriber;
use crate::support::{eventually, fails, ok, run, NodeProcess};

/// The JSON form of a delta signed by `key` with the identity point as its nonce R
/// (S = k·a): the equation holds, but R is of small order, which the signature rule refuses.
fn identity_nonce_delta(key_seed: [u8; 32], n: i64) -> String {
    use curve25519_dalek::scalar::Scalar;
    use sha2::{Digest, Sha512};
    let key = KeyPair::from_seed(key_seed);
    let honest = DeltaBuilder::new(Hlc::new(1_700_000_000_000, 0))
        .pointer(Pointer::entity("subject", "x", "n"))
        .pointer(Pointer::value("n", n))
        .sign(&key)
        .unwrap();
    // The secret scalar ed25519 derives from the seed.
    let mut expanded: [u8; 32] = Sha512::digest(key_seed)[..32].try_into().unwrap();
    expanded[0] &= 248;
    expanded[31] &= 127;
    expanded[31] |= 64;
    let a = Scalar::from_bytes_mod_order(expanded);
    let mut r = [0u8; 32];
    r[0] = 1; // the identity point
    let mut h = Sha512::new();
    h.update(r);
    h.update(key.author().as_bytes());
    h.update(honest.canonical_body());
    let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    let mut signature = [0u8; 64];
    signature[..32].copy_from_slice(&r);
    signature[32..].copy_from_slice((k * a).as_bytes());
    let mut json = honest.to_json();
    json["signature"] = json!(hex::encode(signature));
    // The JSON form reads back as a delta with that signature.
    let parsed = Delta::from_json_str(&json.to_string()).unwrap();
    assert_eq!(parsed.signature(), Signature::from_bytes(signature));
    json.to_string()
}

fn peers(node: &NodeProcess) -> Vec<Value> {
    node.get("/peers").unwrap()["peers"]
        .as_array()
        .unwrap()
        .clone()
}

fn stored(node: &NodeProcess) -> u64 {
    node.get("/health").unwrap()["deltas"].as_u64().unwrap()
}

#[test]
fn a_small_order_nonce_is_refused_alone_and_in_a_batch_and_the_peers_stay_linked() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let b = NodeProcess::start(dir_b.path(), &[]);
    let a = NodeProcess::start(dir_a.path(), &[&b.router]);
    eventually("the nodes to link", Duration::from_secs(20), || {
        peers(&a).len() == 1 && peers(&b).len() == 1
    });
    let bad = identity_nonce_delta([9; 32], 1);
    let honest = DeltaBuilder::new(Hlc::new(1_700_000_000_001, 0))
        .pointer(Pointer::value("n", 2i64))
        .sign(&KeyPair::from_seed([9; 32]))
        .unwrap()
        .to_json_string();

    // Alone, and beside an honest delta: the same verdict, and nothing of the batch kept.
    let (status, body) = a.post("/deltas", &format!("{bad}\n")).unwrap_err();
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("line 1") && body.contains("signature"),
        "{body}"
    );
    let (status, body) = a
        .post("/deltas", &format!("{honest}\n{bad}\n"))
        .unwrap_err();
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("line 2") && body.contains("signature"),
        "{body}"
    );
    assert_eq!(stored(&a), 0, "nothing of the batch is stored");

    // Nothing was relayed for the peer to refuse: the link holds and writes cross.
    let id = a.write(
        json!([{"local_context":"n","target":{"value":3}}]),
        0,
        1_000,
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually("the honest write to cross", Duration::from_secs(20), || {
        b.has(&id)
    });
    assert_eq!(peers(&a).len(), 1);
    assert_eq!(peers(&b).len(), 1);
    assert!(!b.logged(&["disconnecting misbehaving peer"]));
    a.stop();
    b.stop();
}

/// Integer literals around the edges of i64, for every way a value enters a node.
const REFUSED: [&str; 5] = [
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "-18446744073709551616",
];
const KEPT: [(&str, i64); 2] = [
    ("9223372036854775807", i64::MAX),
    ("-9223372036854775808", i64::MIN),
];

#[test]
fn integers_outside_i64_are_refused_on_every_input_path_and_the_edges_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), &[]);
    let pointers = |literal: &str| {
        format!(
            r#"[{{"local_context":"subject","target":{{"entity":"e"}},"target_context":"n"}},{{"local_context":"n","target":{{"value":{literal}}}}}]"#
        )
    };
    let gql = |query: &str, variables: &str| -> Value {
        let body = format!(r#"{{"query": {}, "variables": {variables}}}"#, json!(query));
        node.post("/graphql", &body).unwrap()
    };
    let gql_error = |answer: Value| -> String {
        answer["errors"][0]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("expected an error: {answer}"))
            .to_owned()
    };
    for literal in REFUSED {
        // HTTP write.
        let (status, body) = node
            .post(
                "/write",
                &format!(r#"{{"pointers": {}}}"#, pointers(literal)),
            )
            .unwrap_err();
        assert_eq!(status, 400, "{literal}: {body}");
        assert!(body.contains("out of range"), "{literal}: {body}");
        // GraphQL, written in the query and passed as a variable.
        let inline = format!(
            r#"mutation {{ write(pointers: [{{localContext: "n", value: {literal}}}]) {{ id }} }}"#
        );
        let e = gql_error(gql(&inline, "{}"));
        assert!(e.contains("out of range"), "{literal}: {e}");
        let e = gql_error(gql(
            "mutation($v: JSON) { write(pointers: [{localContext: \"n\", value: $v}]) { id } }",
            &format!(r#"{{"v": {literal}}}"#),
        ));
        assert!(e.contains("out of range"), "{literal}: {e}");
        // The same variable over the websocket.
        let subscribe = format!(
            r#"{{"id": "1", "type": "subscribe", "payload": {{"query": "mutation($v: JSON) {{ write(pointers: [{{localContext: \"n\", value: $v}}]) {{ id }} }}", "variables": {{"v": {literal}}}}}}}"#
        );
        let answer = Subscriber::open_with(&node, &subscribe).next_message();
        assert!(
            answer.to_string().contains("out of range"),
            "{literal}: {answer}"
        );
        // A signed delta posted as JSON (its signature never gets checked: the number is
        // refused first).
        let signed = DeltaBuilder::new(Hlc::new(1, 0))
            .pointer(Pointer::value("n", 1234567i64))
            .sign(&KeyPair::from_seed([3; 32]))
            .unwrap()
            .to_json_string()
            .replace("1234567", literal);
        let (status, body) = node.post("/deltas", &signed).unwrap_err();
        assert_eq!(status, 400, "{literal}: {body}");
        assert!(body.contains("out of range"), "{literal}: {body}");
        // The CLI on a data folder: write, import, rhizome import.
        let folder = tempfile::tempdir().unwrap();
        fails(
            folder.path(),
            &["write", &pointers(literal)],
            "",
            "out of range",
        );
        fails(folder.path(), &["import"], &signed, "out of range");
        let rhizome = format!(
            r#"{{"id":"r-1","timeCreated":1700000000000,"host":"h","creator":"c","pointers":[{{"localContext":"n","target":{literal}}}]}}"#
        );
        let key = folder.path().join("import.key");
        ok(folder.path(), &["keygen", "--out", key.to_str().unwrap()]);
        let r = run(
            folder.path(),
            &[
                "import",
                "--format",
                "rhizome",
                "--key",
                key.to_str().unwrap(),
            ],
            &rhizome,
        );
        assert!(
            !r.ok && r.stderr.contains("out of range"),
            "{literal}: {}",
            r.stderr
        );
        assert_eq!(
            ok(folder.path(), &["export"]),
            "",
            "{literal}: nothing stored"
        );
    }
    assert_eq!(stored(&node), 0, "nothing refused is stored");

    // The edges of i64 are kept exactly, through HTTP and GraphQL.
    for (literal, value) in KEPT {
        let answer = node
            .post(
                "/write",
                &format!(r#"{{"pointers": {}}}"#, pointers(literal)),
            )
            .unwrap();
        let id = answer["id"].as_str().unwrap();
        let delta = node.get(&format!("/deltas/{id}")).unwrap();
        assert_eq!(delta["pointers"][1]["target"]["value"], json!(value));
        let answer = gql(
            &format!(
                r#"mutation {{ write(pointers: [{{localContext: "m", value: {literal}}}]) {{ id }} }}"#
            ),
            "{}",
        );
        let id = answer["data"]["write"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{answer}"));
        let delta = node.get(&format!("/deltas/{id}")).unwrap();
        assert_eq!(delta["pointers"][0]["target"]["value"], json!(value));
    }
    node.stop();
}

#[test]
fn a_filter_that_is_not_a_rule_is_refused_in_queries_subscriptions_and_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), &[]);
    node.write(
        json!([{"local_context":"n","target":{"value":1}}]),
        0,
        1_000,
    );
    let not_rules = [
        (json!({}), "an empty object"),
        (json!("hello"), "a string"),
        (
            json!(r#"{"in": ["x", {"var": "targets"}]}"#),
            "encoded twice",
        ),
        (json!(7), "a number"),
    ];
    for (filter, received) in &not_rules {
        let answer = node
            .post(
                "/graphql",
                &json!({
                    "query": "query($f: JSON) { deltas(filter: $f) { deltas } }",
                    "variables": {"f": filter}
                })
                .to_string(),
            )
            .unwrap();
        let e = answer["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(
            e.contains("JSON-Logic rule") && e.contains(received),
            "{filter}: {answer}"
        );
        let mut sub = Subscriber::open(
            &node,
            "subscription($f: JSON) { deltas(filter: $f) }",
            json!({"f": filter}),
        );
        // graphql-transport-ws carries a resolver's error in a "next" payload's errors.
        let message = sub.next_message();
        let text = message.to_string();
        let error = message["payload"]["errors"][0]["message"]
            .as_str()
            .unwrap_or_default();
        assert!(
            error.contains("JSON-Logic rule") && error.contains(received),
            "{filter}: {text}"
        );
    }
    // A boolean is a rule: true selects everything.
    let answer = node
        .post(
            "/graphql",
            &json!({"query": "{ deltas(filter: true) { deltas } }"}).to_string(),
        )
        .unwrap();
    assert_eq!(
        answer["data"]["deltas"]["deltas"].as_array().unwrap().len(),
        1
    );
    node.stop();

    // A partial replica and a scan refuse it too, naming what they got.
    let folder = tempfile::tempdir().unwrap();
    let r = run(folder.path(), &["node", "--replicate", "{}"], "");
    assert!(
        !r.ok && r.stderr.contains("--replicate") && r.stderr.contains("an empty object"),
        "{}",
        r.stderr
    );
    fails(
        folder.path(),
        &["scan", "--filter", "\"hello\""],
        "",
        "a string",
    );
}

#[test]
fn a_websocket_message_over_the_limit_closes_the_connection_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), &[]);
    // A mutation padded past 256 KiB with a string value.
    let padding = "x".repeat(300 * 1024);
    let subscribe = json!({"id": "1", "type": "subscribe", "payload": {
        "query": "mutation($v: JSON) { write(pointers: [{localContext: \"n\", value: $v}]) { id } }",
        "variables": {"v": padding},
    }});
    let mut socket = Subscriber::open_with(&node, &subscribe.to_string());
    assert!(socket.closed_by_node(), "an oversized message was answered");
    assert_eq!(stored(&node), 0);
    // The node goes on serving.
    assert_eq!(node.get("/health").unwrap()["status"], json!("ok"));
    node.stop();
}

/// Fragments F0…F23, each spreading the next twice: 2²⁴ selections when expanded.
fn fan_out(levels: usize) -> String {
    let mut text = String::from("query { ...F0 }\n");
    for level in 0..levels {
        let body = if level + 1 == levels {
            "__typename".to_owned()
        } else {
            format!("...F{next} ...F{next}", next = level + 1)
        };
        text.push_str(&format!("fragment F{level} on Query {{ {body} }}\n"));
    }
    text
}

#[test]
fn a_fragment_fan_out_is_refused_before_it_costs_and_health_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), &[]);
    let body = json!({"query": fan_out(24)}).to_string();
    // Warm the connection path once, then time one refusal.
    node.get("/health").unwrap();
    let started = Instant::now();
    let answer = node.post("/graphql", &body).unwrap();
    let took = started.elapsed();
    let e = answer["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(e.contains("too complex"), "{answer}");
    assert!(took < Duration::from_millis(50), "refused after {took:?}");

    // Eight at once: /health still answers promptly.
    let attackers: Vec<_> = (0..8)
        .map(|_| {
            let (url, body) = (node.http.clone(), body.clone());
            std::thread::spawn(move || {
                ureq::post(&format!("{url}/graphql"))
                    .send_string(&body)
                    .map(|r| r.into_string().unwrap_or_default())
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
    let started = Instant::now();
    node.get("/health").unwrap();
    let health = started.elapsed();
    for attacker in attackers {
        let answer = attacker.join().unwrap().expect("an answer");
        assert!(answer.contains("too complex"), "{answer}");
    }
    assert!(
        health < Duration::from_millis(100),
        "/health took {health:?}"
    );
    node.stop();
}

#[test]
fn a_large_body_names_its_first_malformed_line_and_stores_nothing() {
    // The lines of `POST /deltas` are parsed in parallel; the answer must still name the
    // first bad line, not whichever a thread reached first.
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), &[]);
    let key = KeyPair::from_seed([21; 32]);
    let mut lines: Vec<String> = (0..2_000i64)
        .map(|n| {
            DeltaBuilder::new(Hlc::new(1_700_000_000_000 + n as u64, 0))
                .pointer(Pointer::value("n", n))
                .sign(&key)
                .unwrap()
                .to_json_string()
        })
        .collect();
    lines[1_500] = "{not json".to_owned();
    lines[700] = r#"{"id": "also wrong"}"#.to_owned();
    lines.insert(10, String::new());
    let (status, body) = node.post("/deltas", &lines.join("\n")).unwrap_err();
    assert_eq!(status, 400, "{body}");
    // Line numbers count the blank line: the 701st delta is on line 702.
    assert!(body.contains("line 702"), "{body}");
    assert_eq!(stored(&node), 0, "nothing of the batch is stored");
}
