//! The one-shot commands: keygen, write, get, scan, import, and their errors.

use crate::support::{fails, json_lines, ok, run};

const ALICE_NAME: &str = r#"[{"local_context":"user","target":{"entity":"alice"},"target_context":"name"},
                              {"local_context":"name","target":{"value":"Alice"}}]"#;
const BOB_AGE: &str = r#"[{"local_context":"user","target":{"entity":"bob"},"target_context":"age"},
                           {"local_context":"age","target":{"value":41}}]"#;

#[test]
fn write_get_and_scan_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let host = ok(data, &["keygen"]).trim().to_owned();
    assert_eq!(host.len(), 64);

    let alice_id = ok(data, &["write", ALICE_NAME]).trim().to_owned();
    // Pointers can come on stdin too.
    let r = run(data, &["write"], BOB_AGE);
    assert!(r.ok, "{}", r.stderr);
    let bob_id = r.stdout.trim().to_owned();
    assert_ne!(alice_id, bob_id);

    let got: serde_json::Value = serde_json::from_str(&ok(data, &["get", &alice_id])).unwrap();
    assert_eq!(got["id"], alice_id.as_str());
    assert_eq!(got["author"], host.as_str(), "the node key signs writes");
    assert_eq!(got["pointers"][1]["target"]["value"], "Alice");
    assert_eq!(got["stamps"][0]["host"], host.as_str());
    assert_eq!(got["stamps"][0]["seq"], 1);

    let all = json_lines(&ok(data, &["scan"]));
    assert_eq!(
        all.iter()
            .map(|d| d["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec![&alice_id, &bob_id]
    );
    let later = json_lines(&ok(data, &["scan", "--after", "1"]));
    assert_eq!(later.len(), 1);
    assert_eq!(later[0]["id"], bob_id.as_str());

    let bob = json_lines(&ok(data, &["scan", "--entity", "bob"]));
    assert_eq!(bob.len(), 1);
    assert_eq!(bob[0]["id"], bob_id.as_str());
    assert!(json_lines(&ok(data, &["scan", "--entity", "bob", "--context", "name"])).is_empty());

    let older = json_lines(&ok(
        data,
        &["scan", "--filter", r#"{">": [{"var": "values.0"}, 40]}"#],
    ));
    assert_eq!(older.len(), 1);
    assert_eq!(older[0]["id"], bob_id.as_str());
    assert_eq!(json_lines(&ok(data, &["scan", "--limit", "1"])).len(), 1);
}

#[test]
fn status_reports_identity_position_coverage_and_views() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let host = ok(data, &["keygen"]).trim().to_owned();
    ok(data, &["write", ALICE_NAME]);
    ok(data, &["write", BOB_AGE]);
    let status: serde_json::Value = serde_json::from_str(&ok(data, &["status"])).unwrap();
    assert_eq!(status["host"], host.as_str());
    assert_eq!(status["last_arrival"], 2);
    assert_eq!(status["coverage"][&host], 2);
    assert_eq!(status["views"]["cursor"], serde_json::Value::Null);
    ok(
        data,
        &[
            "schema",
            "put",
            r#"{"type":"user","properties":{"name":{"resolver":"lww"}}}"#,
        ],
    );
    ok(data, &["view", "user"]);
    let status: serde_json::Value = serde_json::from_str(&ok(data, &["status"])).unwrap();
    assert_eq!(status["views"]["cursor"], 3);
    assert_eq!(status["views"]["types"], serde_json::json!(["user"]));
}

#[test]
fn the_second_write_continues_the_clock_and_the_origin_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let first = ok(data, &["write", ALICE_NAME]).trim().to_owned();
    let second = ok(data, &["write", BOB_AGE]).trim().to_owned();
    let a: serde_json::Value = serde_json::from_str(&ok(data, &["get", &first])).unwrap();
    let b: serde_json::Value = serde_json::from_str(&ok(data, &["get", &second])).unwrap();
    let time = |v: &serde_json::Value| {
        (
            v["time"]["ms"].as_u64().unwrap(),
            v["time"]["logical"].as_u64().unwrap(),
        )
    };
    assert!(time(&b) > time(&a));
    assert_eq!(b["stamps"][0]["seq"], 2);
}

#[test]
fn import_accepts_signed_deltas_and_rejects_forgeries_without_storing_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let id = ok(data, &["write", ALICE_NAME]).trim().to_owned();
    let original = ok(data, &["get", &id]);
    let mut delta: serde_json::Value = serde_json::from_str(&original).unwrap();
    delta.as_object_mut().unwrap().remove("arrival");
    delta.as_object_mut().unwrap().remove("stamps");

    // Importing the same delta into a fresh folder works and is idempotent.
    let other = tempfile::tempdir().unwrap();
    let line = format!("{delta}\n{delta}\n");
    let r = run(other.path(), &["import"], &line);
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(
        r.stdout.lines().collect::<Vec<_>>(),
        vec![id.as_str(), id.as_str()]
    );

    let mut bad_sig = delta.clone();
    bad_sig["signature"] = serde_json::Value::String("22".repeat(64));
    let fresh = tempfile::tempdir().unwrap();
    fails(
        fresh.path(),
        &["import"],
        &format!("{bad_sig}\n"),
        "bad signature",
    );

    let mut wrong_id = delta.clone();
    wrong_id["id"] = serde_json::Value::String("00".repeat(32));
    fails(
        fresh.path(),
        &["import"],
        &format!("{wrong_id}\n"),
        "does not match its content",
    );

    let mut unsigned = delta.clone();
    unsigned.as_object_mut().unwrap().remove("signature");
    fails(
        fresh.path(),
        &["import"],
        &format!("{unsigned}\n"),
        "not signed",
    );

    fails(fresh.path(), &["import"], "{not json\n", "malformed json");

    let mut forged_stamp: serde_json::Value = serde_json::from_str(&original).unwrap();
    forged_stamp["stamps"][0]["seq"] = serde_json::json!(99);
    fails(
        fresh.path(),
        &["import"],
        &format!("{forged_stamp}\n"),
        "bad origin stamp",
    );
    assert!(ok(fresh.path(), &["scan"]).is_empty(), "nothing was stored");
}

#[test]
fn get_output_imports_elsewhere_with_its_origin_stamps() {
    let dir = tempfile::tempdir().unwrap();
    let id = ok(dir.path(), &["write", ALICE_NAME]).trim().to_owned();
    let original: serde_json::Value = serde_json::from_str(&ok(dir.path(), &["get", &id])).unwrap();
    let other = tempfile::tempdir().unwrap();
    let r = run(other.path(), &["import"], &format!("{original}\n"));
    assert!(r.ok, "{}", r.stderr);
    let copy: serde_json::Value = serde_json::from_str(&ok(other.path(), &["get", &id])).unwrap();
    assert_eq!(copy["stamps"], original["stamps"]);
    assert_eq!(copy["pointers"], original["pointers"]);
}

#[test]
fn bad_input_exits_non_zero_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    fails(data, &["write", "[{"], "", "malformed json");
    fails(
        data,
        &["write", r#"[{"local_context":"","target":{"value":1}}]"#],
        "",
        "local_context must not be empty",
    );
    fails(data, &["write", "[]"], "", "at least one pointer");
    let oversized = format!(
        r#"[{{"local_context":"blob","target":{{"value":"{}"}}}}]"#,
        "x".repeat(70_000)
    );
    fails(
        data,
        &["write"],
        &oversized,
        "over the limit of 65536 bytes",
    );
    fails(data, &["get", "abc"], "", "invalid delta id");
    fails(data, &["get", &"00".repeat(32)], "", "no delta with id");
    fails(data, &["scan", "--filter", "{"], "", "--filter");
    fails(
        data,
        &["scan", "--filter", r#"{"inn": ["a", {"var": "targets"}]}"#],
        "",
        "unknown operator",
    );
    assert!(ok(data, &["scan"]).is_empty());
}

#[test]
fn keygen_refuses_to_overwrite_a_key() {
    let dir = tempfile::tempdir().unwrap();
    ok(dir.path(), &["keygen"]);
    fails(dir.path(), &["keygen"], "", "writing key file");
}

#[test]
fn schemas_views_and_lossless_entities_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    ok(
        data,
        &[
            "schema",
            "put",
            r#"{"type":"user","properties":{"name":{"resolver":"lww"},"age":{"resolver":"max"}}}"#,
        ],
    );
    let first = ok(data, &["write", ALICE_NAME]).trim().to_owned();
    ok(data, &["write", BOB_AGE]);
    let renamed = r#"[{"local_context":"user","target":{"entity":"alice"},"target_context":"name"},
                      {"local_context":"name","target":{"value":"Alice Liddell"}}]"#;
    ok(data, &["write", renamed]);

    let alice: serde_json::Value =
        serde_json::from_str(&ok(data, &["view", "user", "alice"])).unwrap();
    assert_eq!(alice["fields"]["name"]["value"], "Alice Liddell");
    assert_eq!(
        alice["fields"]["name"]["confidence"], 0,
        "local only until peers exist"
    );
    assert_eq!(alice["fields"]["name"]["provisional"], true);
    assert_eq!(alice["provisional"], true);
    let lenient: serde_json::Value =
        serde_json::from_str(&ok(data, &["view", "user", "alice", "--confirm-at", "0"])).unwrap();
    assert_eq!(lenient["provisional"], false, "nothing to wait for at 0");
    let all = json_lines(&ok(data, &["view", "user"]));
    assert_eq!(
        all.iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["alice", "bob"]
    );
    let older = json_lines(&ok(
        data,
        &[
            "view",
            "user",
            "--filter",
            r#"{">": [{"var": "fields.age.value"}, 40]}"#,
        ],
    ));
    assert_eq!(older.len(), 1);
    assert_eq!(older[0]["id"], "bob");
    assert_eq!(
        json_lines(&ok(data, &["view", "user", "--after", "alice"])).len(),
        1
    );

    let lossless: serde_json::Value =
        serde_json::from_str(&ok(data, &["entity", "alice"])).unwrap();
    let names = lossless["properties"]["name"].as_array().unwrap();
    assert_eq!(names.len(), 2);
    assert_eq!(names[0]["id"], first.as_str());

    // As of the first write's time, only the first name exists.
    let got: serde_json::Value = serde_json::from_str(&ok(data, &["get", &first])).unwrap();
    let at = format!("{}.{}", got["time"]["ms"], got["time"]["logical"]);
    let then: serde_json::Value =
        serde_json::from_str(&ok(data, &["entity", "alice", "--at", &at])).unwrap();
    assert_eq!(then["properties"]["name"].as_array().unwrap().len(), 1);

    // A rebuild reproduces the same records.
    let before = ok(data, &["view", "user"]);
    let r = run(data, &["rebuild"], "");
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stderr.contains("rebuilt views of"), "{}", r.stderr);
    assert_eq!(ok(data, &["view", "user"]), before);

    fails(data, &["view", "ghost"], "", "no schema for type");
    fails(data, &["view", "user", "carol"], "", "has no user record");
    fails(
        data,
        &[
            "schema",
            "put",
            r#"{"type":"user","properties":{"name":{"resolver":"newest"}}}"#,
        ],
        "",
        "unknown resolver",
    );
    fails(
        data,
        &["entity", "alice", "--at", "yesterday"],
        "",
        "invalid hlc time",
    );
}

#[test]
fn export_and_import_carry_a_journal_to_another_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    ok(data, &["write", ALICE_NAME]);
    ok(data, &["write", BOB_AGE]);
    let exported = ok(data, &["export"]);
    let lines = json_lines(&exported);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["arrival"], 2);
    assert_eq!(
        json_lines(&ok(data, &["export", "--after", "1"])),
        lines[1..].to_vec()
    );
    let only_bob = ok(
        data,
        &[
            "export",
            "--filter",
            r#"{"in": ["bob", {"var": "targets"}]}"#,
        ],
    );
    assert_eq!(json_lines(&only_bob), lines[1..].to_vec());

    // From a file, into a fresh folder: the same deltas with the same origin stamps.
    let file = data.join("export.jsonl");
    std::fs::write(&file, &exported).unwrap();
    let other = tempfile::tempdir().unwrap();
    let r = run(other.path(), &["import", file.to_str().unwrap()], "");
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stderr.contains("imported 2 deltas"), "{}", r.stderr);
    assert_eq!(json_lines(&ok(other.path(), &["export"])), lines);
}

#[test]
fn rhizome_deltas_import_re_signed_with_a_map_of_ids() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let importer = ok(
        data,
        &["keygen", "--out", data.join("import.key").to_str().unwrap()],
    );
    let map = data.join("ids.jsonl");
    let (key, map_arg) = (
        data.join("import.key").to_str().unwrap().to_owned(),
        map.to_str().unwrap().to_owned(),
    );
    let rhizome = |args: &[&str], stdin: &str| {
        let mut all = vec![
            "import", "--format", "rhizome", "--key", &key, "--map", &map_arg,
        ];
        all.extend_from_slice(args);
        run(data, &all, stdin)
    };
    let first = concat!(
        r#"{"id":"r-1","timeCreated":1700000000000,"host":"h1","creator":"alice","pointers":[{"localContext":"user","target":"u1","targetContext":"name"},{"localContext":"name","target":"Alice"}]}"#,
        "\n",
        r#"{"id":"r-2","timeCreated":1700000000500,"host":"h1","creator":"alice","pointers":[{"localContext":"user","target":"u1","targetContext":"age"},{"localContext":"age","target":41},{"localContext":"verified","target":true}]}"#,
        "\n"
    );
    let r = rhizome(&[], first);
    assert!(r.ok, "{}", r.stderr);
    let ids: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(ids.len(), 2);
    let name: serde_json::Value = serde_json::from_str(&ok(data, &["get", ids[0]])).unwrap();
    assert_eq!(name["author"], importer.trim(), "the import key signs");
    assert_eq!(name["time"]["ms"], 1_700_000_000_000u64);
    assert_eq!(
        name["pointers"],
        serde_json::json!([
            {"local_context": "user", "target": {"entity": "u1"}, "target_context": "name"},
            {"local_context": "name", "target": {"value": "Alice"}}
        ])
    );
    let age: serde_json::Value = serde_json::from_str(&ok(data, &["get", ids[1]])).unwrap();
    assert_eq!(age["pointers"][1]["target"]["value"], 41);
    assert_eq!(age["pointers"][2]["target"]["value"], true);
    let mapped = json_lines(&std::fs::read_to_string(&map).unwrap());
    assert_eq!(mapped.len(), 2);
    assert_eq!(mapped[0]["rhizome"], "r-1");
    assert_eq!(mapped[0]["id"], ids[0]);
    assert_eq!(mapped[0]["creator"], "alice");
    assert_eq!(mapped[0]["host"], "h1");

    // A later import negates a delta of the first: the map resolves the old id.
    let negation = r#"{"id":"r-3","timeCreated":1700000001000,"host":"h2","creator":"bob","pointers":[{"localContext":"negates","target":"r-1","targetContext":"negated_by"}]}"#;
    let r = rhizome(&[], negation);
    assert!(r.ok, "{}", r.stderr);
    let negating: serde_json::Value =
        serde_json::from_str(&ok(data, &["get", r.stdout.trim()])).unwrap();
    assert_eq!(negating["pointers"][0]["target"]["delta"], ids[0]);
    assert_eq!(json_lines(&std::fs::read_to_string(&map).unwrap()).len(), 3);

    // Bad lines name themselves and store nothing of their batch.
    let stderr = rhizome(&[], "\n{\"id\":\"r-4\",\"pointers\":[]}\n").stderr;
    assert!(
        stderr.contains("line 2") && stderr.contains("timeCreated"),
        "{stderr}"
    );
    let r = rhizome(
        &[],
        r#"{"id":"r-5","timeCreated":1,"pointers":[{"localContext":"x","target":null}]}"#,
    );
    assert!(
        !r.ok && r.stderr.contains("unsupported target"),
        "{}",
        r.stderr
    );
    assert_eq!(json_lines(&ok(data, &["export"])).len(), 3);
}
