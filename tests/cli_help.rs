//! The CLI against its own help: what `--help` and the README say each verb does, checked
//! on the real binary, a data folder and a running node.

use serde_json::Value;

use crate::support::{fails, json_lines, ok, run, NodeProcess};

/// A write of `property` on `entity` (one pointer to the entity, one value).
fn set(entity: &str, property: &str, value: i64) -> String {
    format!(
        r#"[{{"local_context":"subject","target":{{"entity":"{entity}"}},"target_context":"{property}"}},
            {{"local_context":"{property}","target":{{"value":{value}}}}}]"#
    )
}

#[test]
fn a_schema_put_into_a_folder_is_listed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let schema = r#"{"type":"user","properties":{"name":{"resolver":"lww"}}}"#;
    ok(data, &["schema", "put", schema]);
    let listed = json_lines(&ok(data, &["schema", "list"]));
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["type"], "user");
}

#[test]
fn an_entity_scan_is_in_arrival_order_with_each_delta_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    // Interleaved properties, so an index ordered by property would not be arrival order.
    for (n, property) in ["zeta", "alpha", "zeta", "mid", "alpha"].iter().enumerate() {
        ok(data, &["write", &set("e", property, n as i64)]);
    }
    // One delta filed under two properties of the entity.
    let both = r#"[{"local_context":"subject","target":{"entity":"e"},"target_context":"zeta"},
                   {"local_context":"subject","target":{"entity":"e"},"target_context":"alpha"},
                   {"local_context":"n","target":{"value":9}}]"#;
    ok(data, &["write", both]);
    ok(data, &["write", &set("other", "zeta", 7)]);
    let arrivals = |args: &[&str]| -> Vec<u64> {
        json_lines(&ok(data, args))
            .iter()
            .map(|d| d["arrival"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(arrivals(&["scan", "--entity", "e"]), [1, 2, 3, 4, 5, 6]);
    assert_eq!(
        arrivals(&["scan", "--entity", "e", "--context", "zeta"]),
        [1, 3, 6]
    );
    assert_eq!(arrivals(&["scan", "--entity", "e", "--limit", "2"]), [1, 2]);
    let help = ok(data, &["scan", "--help"]);
    assert!(help.contains("filter document"), "{help}");
    assert!(help.contains("arrival order"), "{help}");
}

#[test]
fn status_prints_the_same_fields_from_a_folder_and_through_a_node() {
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let folder = dirs[0].path();
    ok(folder, &["keygen"]);
    ok(folder, &["write", &set("e", "p", 1)]);
    let from_folder: Value = serde_json::from_str(&ok(folder, &["status"])).unwrap();
    let node = NodeProcess::start(dirs[1].path(), &[]);
    let through_node: Value =
        serde_json::from_str(&ok(dirs[1].path(), &["--node", &node.http, "status"])).unwrap();
    let keys = |v: &Value| -> Vec<String> {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.retain(|k| k != "data" && k != "node");
        keys.sort();
        keys
    };
    assert_eq!(keys(&from_folder), keys(&through_node));
    for field in [
        "host",
        "version",
        "last_arrival",
        "coverage",
        "views",
        "peers",
    ] {
        assert!(through_node.get(field).is_some(), "{field}: {through_node}");
    }
    assert_eq!(from_folder["last_arrival"], 1);
    assert_eq!(from_folder["coverage"].as_object().unwrap().len(), 1);
    assert_eq!(from_folder["data"], folder.display().to_string());
    assert_eq!(through_node["host"], node.host.as_str());
    assert_eq!(through_node["node"], node.http.as_str());
    assert!(through_node["views"]["types"].is_array(), "{through_node}");
    node.stop();
}

#[test]
fn a_rhizome_import_through_a_node_needs_a_key_and_makes_none() {
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let node = NodeProcess::start(dirs[0].path(), &[]);
    // A folder that is not the node's: the command must not make a key in it.
    let elsewhere = dirs[1].path().join("not-the-node");
    let line = r#"{"id":"r-1","timeCreated":1700000000000,"host":"h1","creator":"alice","pointers":[{"localContext":"user","target":"u1","targetContext":"name"},{"localContext":"name","target":"Alice"}]}"#;
    let stderr = fails(
        &elsewhere,
        &["--node", &node.http, "import", "--format", "rhizome"],
        line,
        "needs --key",
    );
    assert!(!elsewhere.join("node.key").exists(), "{stderr}");
    assert!(!elsewhere.exists(), "no folder made either");
    assert_eq!(node.get("/health").unwrap()["deltas"], 0, "nothing stored");
    // With a key, the same line goes in through the node.
    let key = dirs[1].path().join("import.key");
    let r = run(
        dirs[1].path(),
        &["keygen", "--out", key.to_str().unwrap()],
        "",
    );
    assert!(r.ok, "{}", r.stderr);
    let r = run(
        &elsewhere,
        &[
            "--node",
            &node.http,
            "import",
            "--format",
            "rhizome",
            "--key",
            key.to_str().unwrap(),
        ],
        line,
    );
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(node.get("/health").unwrap()["deltas"], 1);
    node.stop();
}

#[test]
fn verbs_that_read_refuse_a_missing_folder_and_folder_verbs_refuse_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo");
    for verb in [
        &["scan"][..],
        &["get", &"ab".repeat(32)],
        &["entity", "alice"],
        &["status"],
        &["schema", "list"],
        &["view", "user"],
        &["export"],
        &["rebuild"],
    ] {
        fails(&missing, verb, "", "no journal in");
    }
    assert!(!missing.exists(), "reading made no folder");
    let data = dir.path().join("real");
    ok(&data, &["write", &set("e", "p", 1)]);
    for verb in [
        &["scan"][..],
        &["get", &"ab".repeat(32)],
        &["entity", "e"],
        &["rebuild"],
    ] {
        let mut args = vec!["--node", "http://127.0.0.1:9"];
        args.extend_from_slice(verb);
        fails(&data, &args, "", "reads the data folder, not a node");
    }
}

#[test]
fn small_things_the_help_promises() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    // `--key` and `--map` belong to rhizome imports.
    fails(
        data,
        &["import", "--key", "k.key"],
        "",
        "--key and --map are for --format rhizome",
    );
    // A cause is said once, not once per level of the chain.
    let stderr = fails(data, &["write", "[]"], "", "at least one pointer");
    assert_eq!(
        stderr.matches("at least one pointer").count(),
        1,
        "{stderr}"
    );
    // `--node HOST:PORT` is the node's HTTP address, as `--http` takes it.
    let node = NodeProcess::start(&dir.path().join("node"), &[]);
    let bare = node.http.trim_start_matches("http://").to_owned();
    let status: Value = serde_json::from_str(&ok(data, &["--node", &bare, "status"])).unwrap();
    assert_eq!(status["host"], node.host.as_str());
    node.stop();
}

#[test]
fn a_node_refuses_a_peer_address_it_could_never_dial() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        "nonsense",
        "tcp://",
        "tcp://host",
        "tcp://:7400",
        "udp://h:1",
    ] {
        let mut args = vec!["node"];
        args.extend_from_slice(crate::support::ANY_PORTS);
        args.extend(["--peer", bad]);
        fails(dir.path(), &args, "", "tcp://HOST:PORT");
    }
    // Inline JSON that is not an object is read as JSON, not as a file name.
    fails(dir.path(), &["schema", "put", "[1]"], "", "JSON object");
}
