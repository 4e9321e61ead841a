//! Records as they stood at a time: `hypha view --at`, `GET /records/…?at=` and GraphQL
//! `asOf:`, on a data folder and through a node.

use serde_json::{json, Value};

use crate::gql::data;
use crate::support::{fails, ok, NodeProcess};

fn name(value: &str) -> String {
    format!(
        r#"[{{"local_context":"user","target":{{"entity":"alice"}},"target_context":"name"}},
            {{"local_context":"name","target":{{"value":"{value}"}}}}]"#
    )
}

/// The HLC time of a stored delta, as `MS.LOGICAL`.
fn time_of(data: &std::path::Path, id: &str) -> String {
    let delta: Value = serde_json::from_str(&ok(data, &["get", id])).unwrap();
    format!("{}.{}", delta["time"]["ms"], delta["time"]["logical"])
}

#[test]
fn a_record_reads_as_it_stood_at_a_time_or_an_arrival() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    ok(data, &["keygen"]);
    ok(
        data,
        &[
            "schema",
            "put",
            r#"{"type":"user","properties":{"name":{"resolver":"lww"}}}"#,
        ],
    );
    let first = ok(data, &["write", &name("Ada")]).trim().to_owned();
    let second = ok(data, &["write", &name("Ada Lovelace")])
        .trim()
        .to_owned();
    let (t1, t2) = (time_of(data, &first), time_of(data, &second));
    // Bob is a user for a while, then his one delta is negated: no record now, one then.
    let bob = ok(data, &["write", &name("Bob").replace("alice", "bob")])
        .trim()
        .to_owned();
    let t_bob = time_of(data, &bob);
    let negation = format!(r#"[{{"local_context":"negates","target":{{"delta":"{bob}"}}}}]"#);
    ok(data, &["write", &negation]);
    let listed = |args: &[&str]| -> Vec<String> {
        let mut argv = vec!["view", "user"];
        argv.extend_from_slice(args);
        crate::support::json_lines(&ok(data, &argv))
            .iter()
            .map(|r| {
                format!(
                    "{}={}",
                    r["id"].as_str().unwrap(),
                    r["fields"]["name"]["value"]
                )
            })
            .collect()
    };
    assert_eq!(listed(&[]), ["alice=\"Ada Lovelace\""]);
    assert_eq!(
        listed(&["--at", &t_bob]),
        ["alice=\"Ada Lovelace\"", "bob=\"Bob\""]
    );
    assert_eq!(listed(&["--at", &t1]), ["alice=\"Ada\""]);
    // In id order, as the lists now are, and `--after` starts after any id, held or not.
    assert_eq!(
        listed(&["--at", &t_bob, "--after", "alice"]),
        ["bob=\"Bob\""]
    );
    assert_eq!(listed(&["--at", &t_bob, "--after", "b"]), ["bob=\"Bob\""]);
    let view = |args: &[&str]| -> Value {
        let mut argv = vec!["view", "user", "alice"];
        argv.extend_from_slice(args);
        serde_json::from_str(&ok(data, &argv)).unwrap()
    };
    let value = |record: &Value| record["fields"]["name"]["value"].clone();
    assert_eq!(value(&view(&[])), "Ada Lovelace");
    assert_eq!(value(&view(&["--at", &t1])), "Ada");
    assert_eq!(value(&view(&["--at", &t2])), "Ada Lovelace");
    // Arrival positions: 1 is the schema, 2 the first write.
    assert_eq!(value(&view(&["--at", "@2"])), "Ada");
    fails(
        data,
        &["view", "user", "alice", "--at", "@1"],
        "",
        "had no user record then",
    );
    fails(
        data,
        &["view", "user", "alice", "--at", "soon"],
        "",
        "arrival position",
    );

    // Through a node: the same answers over HTTP, GraphQL and the CLI.
    let node = NodeProcess::start(data, &[]);
    let record = node.get(&format!("/records/user/alice?at={t1}")).unwrap();
    assert_eq!(value(&record), "Ada", "{record}");
    let record = node.get("/records/user/alice?at=@2").unwrap();
    assert_eq!(value(&record), "Ada", "{record}");
    let (status, body) = node.get("/records/user/alice?at=soon").unwrap_err();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("BAD_INPUT"), "{body}");
    let answer = data_of(&node, &t1);
    assert_eq!(answer["then"]["name"], "Ada", "{answer}");
    assert_eq!(answer["now"]["name"], "Ada Lovelace", "{answer}");
    let lists = crate::gql::data(
        &node,
        r#"query($at: String) { then: users(asOf: $at) { nodes { id name } } now: users { nodes { id } } }"#,
        json!({"at": t_bob}),
    );
    assert_eq!(
        lists["then"]["nodes"],
        json!([{"id": "alice", "name": "Ada Lovelace"}, {"id": "bob", "name": "Bob"}]),
        "{lists}"
    );
    assert_eq!(lists["now"]["nodes"], json!([{"id": "alice"}]), "{lists}");
    let through: Value = serde_json::from_str(&ok(
        data,
        &["--node", &node.http, "view", "user", "alice", "--at", &t1],
    ))
    .unwrap();
    assert_eq!(value(&through), "Ada");
    node.stop();
}

fn data_of(node: &NodeProcess, at: &str) -> Value {
    data(
        node,
        r#"query($at: String) { then: user(id: "alice", asOf: $at) { name } now: user(id: "alice") { name } }"#,
        json!({"at": at}),
    )
}
