//! The GraphQL endpoint of a real `hypha node` process, through a real HTTP client:
//! schema registration, mutations, generated types with `_meta`, nested references,
//! filtered connections, generic queries, schema regeneration, and bad input.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{eventually, NodeProcess};

fn gql(node: &NodeProcess, query: &str, variables: Value) -> Value {
    node.post(
        "/graphql",
        &json!({"query": query, "variables": variables}).to_string(),
    )
    .expect("a GraphQL answer")
}

/// The data of a request that must succeed.
fn data(node: &NodeProcess, query: &str, variables: Value) -> Value {
    let answer = gql(node, query, variables);
    assert!(answer.get("errors").is_none(), "{answer}");
    answer["data"].clone()
}

/// The first error message of a request that must fail.
fn error(node: &NodeProcess, query: &str, variables: Value) -> String {
    let answer = gql(node, query, variables);
    answer["errors"][0]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error: {answer}"))
        .to_owned()
}

const PUT_SCHEMA: &str = "mutation($s: JSON!) { putSchema(schema: $s) { id } }";
const WRITE: &str =
    "mutation($p: [PointerInput!]!) { write(pointers: $p) { id seq confidence reached } }";

fn set(entity: &str, property: &str, value: Value) -> Value {
    json!([
        {"localContext": "subject", "entity": entity, "targetContext": property},
        {"localContext": property, "value": value}
    ])
}

fn link(entity: &str, property: &str, other: &str) -> Value {
    json!([
        {"localContext": "subject", "entity": entity, "targetContext": property},
        {"localContext": property, "entity": other}
    ])
}

#[test]
fn records_are_written_and_read_through_graphql() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), &[]);
    data(
        &node,
        PUT_SCHEMA,
        json!({"s": {"type": "user", "properties": {
            "name": {"resolver": "lww", "type": "string", "required": true},
            "age": {"resolver": "max", "type": "number"},
            "friend": {"resolver": "lww", "type": {"ref": "user"}}
        }}}),
    );
    let written = data(
        &node,
        WRITE,
        json!({"p": set("alice", "name", json!("Alice"))}),
    );
    assert_eq!(written["write"]["reached"], json!(true));
    assert_eq!(written["write"]["confidence"], json!(0));
    let name_id = written["write"]["id"].as_str().unwrap().to_owned();
    for (entity, property, value) in [
        ("alice", "age", json!(30)),
        ("alice", "age", json!(41)),
        ("bob", "name", json!("Bob")),
        ("bob", "age", json!(25)),
    ] {
        data(&node, WRITE, json!({"p": set(entity, property, value)}));
    }
    data(&node, WRITE, json!({"p": link("alice", "friend", "bob")}));

    // The views follow the journal asynchronously; the generated type appears with the
    // schema, without a restart.
    let query = r#"{ user(id: "alice") {
        id name age friend { id name }
        _meta { provisional confidence deciders }
        nameMeta: _meta(field: "name") { decidedBy updatedAt }
    } }"#;
    eventually("alice's record", Duration::from_secs(20), || {
        let answer = gql(&node, query, json!({}));
        answer["data"]["user"]["friend"]["name"] == json!("Bob")
    });
    let alice = data(&node, query, json!({}))["user"].clone();
    assert_eq!(alice["name"], json!("Alice"));
    assert_eq!(alice["age"], json!(41));
    assert_eq!(
        alice["_meta"]["provisional"],
        json!(true),
        "no peer holds it"
    );
    assert_eq!(alice["_meta"]["confidence"], json!(0));
    assert_eq!(alice["nameMeta"]["decidedBy"], json!([name_id]));

    // A filtered, paged connection.
    let page = data(
        &node,
        r#"query($f: JSON) { users(filter: $f, first: 1) { nodes { id } hasNextPage endCursor } }"#,
        json!({"f": {">=": [{"var": "fields.age.value"}, 20]}}),
    );
    assert_eq!(page["users"]["nodes"], json!([{"id": "alice"}]));
    assert_eq!(page["users"]["hasNextPage"], json!(true));
    let next = data(
        &node,
        r#"query($f: JSON) { users(filter: $f, first: 5, after: "alice") { nodes { id } hasNextPage } }"#,
        json!({"f": {">=": [{"var": "fields.age.value"}, 20]}}),
    );
    assert_eq!(next["users"]["nodes"], json!([{"id": "bob"}]));
    assert_eq!(next["users"]["hasNextPage"], json!(false));

    // Generic queries.
    let generic = data(
        &node,
        r#"query($id: ID!) { delta(id: $id) node { id deltas } schemas entity(id: "bob") deltas(first: 2) { deltas hasMore cursor } }"#,
        json!({"id": name_id}),
    );
    assert_eq!(generic["delta"]["id"], json!(name_id));
    assert_eq!(generic["node"]["deltas"], json!(7));
    assert_eq!(generic["schemas"][0]["type"], json!("user"));
    assert_eq!(
        generic["entity"]["properties"]["name"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(generic["deltas"]["deltas"].as_array().unwrap().len(), 2);
    assert_eq!(generic["deltas"]["hasMore"], json!(true));

    // Negation hides a value.
    let bob_age = data(&node, r#"{ entity(id: "bob") }"#, json!({}))["entity"]["properties"]["age"]
        [0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    data(
        &node,
        "mutation($id: ID!) { negate(id: $id) { id } }",
        json!({"id": bob_age}),
    );
    eventually("bob's age to be negated", Duration::from_secs(20), || {
        gql(&node, r#"{ user(id: "bob") { age } }"#, json!({}))["data"]["user"]["age"].is_null()
    });

    // A new schema makes a new type, at once.
    data(
        &node,
        PUT_SCHEMA,
        json!({"s": {"type": "film", "properties": {"title": {"resolver": "lww", "type": "string"}}}}),
    );
    data(
        &node,
        WRITE,
        json!({"p": set("f1", "title", json!("Alien"))}),
    );
    eventually("the film type", Duration::from_secs(20), || {
        gql(&node, r#"{ film(id: "f1") { title } }"#, json!({}))["data"]["film"]["title"]
            == json!("Alien")
    });
    node.stop();
}

#[test]
fn bad_graphql_input_is_a_clear_error_and_stores_nothing() {
    use hypha_primitives::{DeltaBuilder, Hlc, KeyPair, Pointer};
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), &[]);
    let stored = || node.get("/health").unwrap()["deltas"].clone();

    let e = error(
        &node,
        "query($f: JSON) { deltas(filter: $f) { hasMore } }",
        json!({"f": {"no_such_operator": [1]}}),
    );
    assert!(e.contains("filter"), "{e}");
    let e = error(&node, r#"{ bogus(id: "x") { id } }"#, json!({}));
    assert!(e.contains("bogus"), "{e}");
    let deep = format!(
        "{{ __schema {{ types {{ fields {{ type {{ {} name {} }} }} }} }} }}",
        "ofType { ".repeat(10),
        "} ".repeat(10)
    );
    let e = error(&node, &deep, json!({}));
    assert!(
        e.to_lowercase().contains("depth") || e.to_lowercase().contains("nested"),
        "{e}"
    );

    // A delta whose signature does not verify.
    let key = KeyPair::from_seed([5; 32]);
    let mut delta = DeltaBuilder::new(Hlc::new(1_700_000_000_000, 0))
        .pointer(Pointer::value("n", 1i64))
        .sign(&key)
        .unwrap()
        .to_json();
    delta["signature"] = json!("11".repeat(64));
    let e = error(
        &node,
        "mutation($d: JSON!) { submit(delta: $d) { id } }",
        json!({"d": delta}),
    );
    assert!(e.contains("signature"), "{e}");
    let e = error(
        &node,
        "mutation($p: [PointerInput!]!) { write(pointers: $p) { id } }",
        json!({"p": [{"localContext": "x", "entity": "e", "value": 1}]}),
    );
    assert!(e.contains("exactly one"), "{e}");
    let e = error(
        &node,
        "mutation($s: JSON!) { putSchema(schema: $s) { id } }",
        json!({"s": {"type": "t", "properties": {"p": {"resolver": "nope"}}}}),
    );
    assert!(e.contains("nope") || e.contains("resolver"), "{e}");
    assert_eq!(stored(), json!(0), "nothing may be stored");

    // Not a GraphQL request at all, and a request over the size limit.
    let (status, body) = node.post("/graphql", "{not json").unwrap_err();
    assert_eq!(status, 400, "{body}");
    let huge = format!(
        "{{\"query\": \"{{ node {{ id }} }}\", \"pad\": \"{}\"}}",
        "x".repeat(17 << 20)
    );
    let (status, _) = node.post("/graphql", &huge).unwrap_err();
    assert_eq!(status, 413);
    assert_eq!(stored(), json!(0));
    node.stop();
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
    b.stop();
    a.stop();
}
