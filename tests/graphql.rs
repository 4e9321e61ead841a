//! The GraphQL endpoint of a real `hypha node` process, through a real HTTP client:
//! schema registration, mutations, generated types with `_meta`, nested references,
//! filtered connections, generic queries, schema regeneration, and bad input.

use std::time::Duration;

use serde_json::{json, Value};

use crate::gql::{data, error, gql, set, Subscriber, PUT_SCHEMA, WRITE};
use crate::support::{eventually, NodeProcess};

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
    let (status, body) = node.post("/graphql", &huge).unwrap_err();
    assert_eq!(status, 413);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], "TOO_LARGE", "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("over the limit"),
        "{body}"
    );
    assert_eq!(stored(), json!(0));
    node.stop();
}

#[test]
fn a_filtered_subscription_replays_then_follows_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), &[]);
    let write = |entity: &str, n: i64| {
        data(&node, WRITE, json!({"p": set(entity, "n", json!(n))}))["write"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // Before anyone subscribes: two matching deltas and one that is not.
    let early = [write("watched", 1), write("other", 2), write("watched", 3)];
    let filter = json!({"in": ["watched", {"var": "targets"}]});
    // The query form filters the same way.
    let page = data(
        &node,
        "query($f: JSON) { deltas(filter: $f) { deltas } }",
        json!({"f": filter}),
    );
    let ids: Vec<&str> = page["deltas"]["deltas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![early[0].as_str(), early[2].as_str()]);
    let query = "subscription($f: JSON) { deltas(filter: $f) }";
    let mut sub = Subscriber::open(&node, query, json!({"f": filter}));
    let first = sub.next("deltas");
    assert_eq!(first["id"], json!(early[0]));
    let second = sub.next("deltas");
    assert_eq!(second["id"], json!(early[2]));
    // Live: only matching deltas arrive, in order.
    let live_other = write("other", 4);
    let live = write("watched", 5);
    let third = sub.next("deltas");
    assert_eq!(third["id"], json!(live), "not {live_other}");

    // Resuming from the cursor of the second delta replays exactly what came after it.
    let cursor = second["arrival"].as_u64().unwrap().to_string();
    let mut resumed = Subscriber::open(
        &node,
        "subscription($f: JSON, $after: String) { deltas(filter: $f, after: $after) }",
        json!({"f": filter, "after": cursor}),
    );
    assert_eq!(resumed.next("deltas")["id"], json!(live));
    let after_resume = write("watched", 6);
    assert_eq!(resumed.next("deltas")["id"], json!(after_resume));
    assert_eq!(sub.next("deltas")["id"], json!(after_resume));
    node.stop();
}

/// The page at `url` as headless Chromium renders it, with no way out to the internet:
/// every host name but the node's own fails to resolve, so no CDN can be reached.
fn headless_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let output = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            // The result pane renders only the lines in view: make room for a delta.
            "--window-size=1280,2000",
            "--virtual-time-budget=15000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .output()
        .expect("chromium must be installed (./dev test installs it)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The GraphiQL page loads in headless Chromium with networking to anything but the node
/// disabled, runs a query, and shows the answer.
#[test]
fn the_graphiql_page_runs_a_query_offline_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), &[]);
    let dom = headless_dom(&format!(
        "{}/?query=%7B%20node%20%7B%20id%20version%20%7D%20%7D&run",
        node.http
    ));
    assert!(
        dom.contains("graphiql-container"),
        "GraphiQL did not render"
    );
    // The result pane shows the node's id, which only the query can have put there.
    assert!(
        dom.contains(&node.host),
        "the query result is not on the page"
    );
    node.stop();
}

/// The same page runs a subscription over the node's websocket.
#[test]
fn the_graphiql_page_runs_a_subscription_over_the_websocket() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), &[]);
    data(
        &node,
        WRITE,
        json!({"p": set("page", "note", json!("seen-through-a-subscription"))}),
    );
    // subscription { deltas(after: "0") }: replays the journal, so the write above arrives.
    let dom = headless_dom(&format!(
        "{}/?query=subscription%20%7B%20deltas(after%3A%20%220%22)%20%7D&run",
        node.http
    ));
    assert!(
        dom.contains("graphiql-container"),
        "GraphiQL did not render"
    );
    assert!(
        dom.contains("seen-through-a-subscription"),
        "the subscription's first event is not on the page"
    );
    node.stop();
}

#[test]
fn a_transaction_is_stored_whole_and_becomes_visible_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), &[]);
    data(
        &node,
        PUT_SCHEMA,
        json!({"s": {"type": "account", "properties": {"balance": {"resolver": "sum", "type": "number"}}}}),
    );
    let answer = data(
        &node,
        "mutation($w: [[PointerInput!]!]!) { transaction(writes: $w) { transaction writes { id reached } } }",
        json!({"w": [set("a", "balance", json!(-10)), set("b", "balance", json!(10))]}),
    );
    let writes = answer["transaction"]["writes"].as_array().unwrap();
    assert_eq!(writes.len(), 2);
    let tx = answer["transaction"]["transaction"].as_str().unwrap();
    assert!(tx.starts_with("tx:"), "{tx}");
    eventually(
        "both sides of the transfer",
        Duration::from_secs(20),
        || {
            let d = gql(
                &node,
                r#"{ a: account(id: "a") { balance } b: account(id: "b") { balance } }"#,
                json!({}),
            );
            d["data"]["a"]["balance"] == json!(-10) && d["data"]["b"]["balance"] == json!(10)
        },
    );
    // The members point at the transaction, which the lossless view of it shows.
    let tx_view = data(
        &node,
        "query($id: ID!) { entity(id: $id) }",
        json!({"id": tx}),
    );
    assert_eq!(
        tx_view["entity"]["properties"]["member"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // An empty transaction is refused.
    let e = error(
        &node,
        "mutation($w: [[PointerInput!]!]!) { transaction(writes: $w) { transaction } }",
        json!({"w": []}),
    );
    assert!(e.contains("at least one"), "{e}");
    node.stop();
}

#[test]
fn with_a_token_writes_need_it_and_reads_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start_with(dir.path(), &[], &["--token", "s3cret"]);
    let write = json!({"query": WRITE, "variables": {"p": set("x", "n", json!(1))}}).to_string();
    let refused = node.post("/graphql", &write).unwrap();
    assert!(
        refused["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Bearer"),
        "{refused}"
    );
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "UNAUTHORIZED",
        "{refused}"
    );
    let (status, body) = node
        .post(
            "/write",
            r#"{"pointers": [{"local_context": "n", "target": {"value": 1}}]}"#,
        )
        .unwrap_err();
    assert_eq!(status, 401);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], "UNAUTHORIZED", "{body}");
    assert!(body["error"].as_str().unwrap().contains("Bearer"), "{body}");
    let (status, _) = node
        .post_with_token("/graphql", &write, "wrong")
        .map(|_| (200, String::new()))
        .unwrap_or_else(|e| e);
    assert_eq!(status, 200, "GraphQL answers errors in the body");
    assert_eq!(node.get("/health").unwrap()["deltas"], json!(0));
    let ok = node.post_with_token("/graphql", &write, "s3cret").unwrap();
    assert!(ok.get("errors").is_none(), "{ok}");
    // Reads stay open.
    assert_eq!(
        data(&node, "{ node { deltas } }", json!({}))["node"]["deltas"],
        json!(1)
    );
    node.stop();
}

#[test]
fn metrics_are_prometheus_text() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), &[]);
    data(&node, WRITE, json!({"p": set("x", "n", json!(1))}));
    eventually(
        "the views to apply the write",
        Duration::from_secs(20),
        || node.get_text("/metrics").contains("hypha_views_applied 1"),
    );
    let text = node.get_text("/metrics");
    for line in [
        "# TYPE hypha_deltas_stored counter",
        "hypha_deltas_stored 1",
        "hypha_views_lag 0",
        "hypha_peers 0",
        "hypha_subscriptions 0",
        "hypha_subscriptions_live 0",
        "hypha_catch_up_lag 0",
        "# TYPE hypha_confidence histogram",
        "hypha_confidence_bucket{le=\"0\"} 1",
        "hypha_confidence_bucket{le=\"+Inf\"} 1",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    node.stop();
}

#[test]
fn the_cli_queries_subscribes_and_lists_peers_on_a_running_node() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), &[]);
    let http = node.http.clone();
    let cli = |args: &[&str]| {
        let mut all = vec!["--node", http.as_str()];
        all.extend_from_slice(args);
        crate::support::run(dir.path(), &all, "")
    };
    let out = cli(&["query", "{ node { deltas } }"]);
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(
        serde_json::from_str::<Value>(&out.stdout).unwrap(),
        json!({"node": {"deltas": 0}})
    );
    let out = cli(&["query", "{ nonsense }"]);
    assert!(!out.ok);
    assert!(out.stderr.contains("nonsense"), "{}", out.stderr);
    let out = cli(&["peers"]);
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(
        serde_json::from_str::<Value>(&out.stdout).unwrap(),
        json!({"peers": []})
    );

    // A subscription prints matching deltas as JSON lines.
    let mut sub = crate::support::hypha(dir.path())
        .args(["--node", &node.http, "subscribe", "--filter"])
        .arg(r#"{"in": ["watched", {"var": "targets"}]}"#)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(sub.stdout.take().unwrap()).lines();
    data(&node, WRITE, json!({"p": set("other", "n", json!(1))}));
    let watched =
        data(&node, WRITE, json!({"p": set("watched", "n", json!(2))}))["write"]["id"].clone();
    let line = lines.next().expect("a line").unwrap();
    let delta: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(delta["id"], watched);
    sub.kill().unwrap();
    let _ = sub.wait();

    // Without a node to talk to, the error says what to check.
    node.stop();
    let out = cli(&["peers"]);
    assert!(!out.ok);
    assert!(
        out.stderr.contains("is `hypha node` running"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_cli_writes_imports_and_exports_through_a_running_node() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start_with(dir.path(), &[], &["--token", "s3cret"]);
    let elsewhere = tempfile::tempdir().unwrap();
    let http = node.http.clone();
    let cli = |args: &[&str], stdin: &str| {
        let mut all = vec!["--node", http.as_str(), "--token", "s3cret"];
        all.extend_from_slice(args);
        crate::support::run(elsewhere.path(), &all, stdin)
    };
    let schema = elsewhere.path().join("user.json");
    std::fs::write(
        &schema,
        r#"{"type":"user","properties":{"name":{"resolver":"lww","type":"string"}}}"#,
    )
    .unwrap();
    let out = cli(&["schema", "put", schema.to_str().unwrap()], "");
    assert!(out.ok, "{}", out.stderr);
    let out = cli(&["schema", "list"], "");
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.contains("\"user\""), "{}", out.stdout);
    let pointers = r#"[{"local_context":"user","target":{"entity":"ann"},"target_context":"name"},{"local_context":"name","target":{"value":"Ann"}}]"#;
    let out = cli(&["write", pointers], "");
    assert!(out.ok, "{}", out.stderr);
    let written = out.stdout.trim().to_owned();
    assert_eq!(
        node.get(&format!("/deltas/{written}")).unwrap()["id"],
        written.as_str()
    );

    // Export from the node, import into a second node: the same journal, stamps and all.
    let out = cli(&["export"], "");
    assert!(out.ok, "{}", out.stderr);
    let exported = out.stdout;
    assert_eq!(exported.lines().count(), 2);
    let second_dir = tempfile::tempdir().unwrap();
    let second = NodeProcess::start(second_dir.path(), &[]);
    let out = crate::support::run(
        elsewhere.path(),
        &["--node", &second.http, "import"],
        &exported,
    );
    assert!(out.ok, "{}", out.stderr);
    let copied = crate::support::run(elsewhere.path(), &["--node", &second.http, "export"], "");
    assert_eq!(
        crate::support::json_lines(&copied.stdout),
        crate::support::json_lines(&exported)
    );
    // The second node's views pick the imported schema and record up.
    crate::support::eventually("the imported record", Duration::from_secs(30), || {
        second
            .post(
                "/graphql",
                &json!({"query": "{ user(id: \"ann\") { name } }"}).to_string(),
            )
            .is_ok_and(|a| a["data"]["user"]["name"] == "Ann")
    });

    // A refused line is named, and nothing of its batch is stored.
    let mut forged: Value = serde_json::from_str(exported.lines().nth(1).unwrap()).unwrap();
    forged["pointers"][1]["target"]["value"] = json!("Forged");
    let out = cli(&["import"], &format!("\n{forged}\n"));
    assert!(!out.ok);
    assert!(out.stderr.contains("line 2"), "{}", out.stderr);

    let out = cli(&["status"], "");
    assert!(out.ok, "{}", out.stderr);
    let status: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(status["host"], node.host.as_str());
    assert_eq!(status["last_arrival"], 2);

    // Writes without the token are refused, with the node's reason.
    let out = crate::support::run(elsewhere.path(), &["--node", &http, "write", pointers], "");
    assert!(!out.ok);
    assert!(
        out.stderr.contains("401") && out.stderr.contains("Bearer"),
        "{}",
        out.stderr
    );

    // The node's own folder is locked; without --node the command says what to do.
    let out = crate::support::run(dir.path(), &["write", pointers], "");
    assert!(!out.ok);
    assert!(out.stderr.contains("--node"), "{}", out.stderr);
    node.stop();
    second.stop();
}

#[test]
fn a_changed_subscription_sends_records_whose_values_change() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), &[]);
    data(
        &node,
        PUT_SCHEMA,
        json!({"s": {"type": "user", "properties": {"name": {"resolver": "lww", "type": "string"}, "age": {"resolver": "max", "type": "number"}}}}),
    );
    eventually("the user type", Duration::from_secs(20), || {
        gql(&node, r#"{ users { hasNextPage } }"#, json!({}))
            .get("errors")
            .is_none()
    });
    let mut sub = Subscriber::open(
        &node,
        "subscription($f: JSON) { changed(type: \"user\", filter: $f) }",
        json!({"f": {">=": [{"var": "fields.age.value"}, 18]}}),
    );
    // The subscription is registered asynchronously and record changes are not journaled:
    // write until the first event shows it listens. The kid never matches the filter.
    let mut age = 30;
    let first = loop {
        data(&node, WRITE, json!({"p": set("kid", "age", json!(9))}));
        data(&node, WRITE, json!({"p": set("alice", "age", json!(age))}));
        if let Some(event) = sub.try_next("changed", Duration::from_millis(1_000)) {
            break event;
        }
        age += 1;
        assert!(age < 60, "the subscription never delivered");
    };
    assert_eq!(
        first["id"],
        json!("alice"),
        "the kid does not match the filter"
    );
    let first_age = first["record"]["fields"]["age"]["value"].as_i64().unwrap();
    assert!((30..=age).contains(&first_age), "{first}");
    // A lower age does not change max(age): no event for it; a name does. (A slow
    // machine may still deliver an earlier age from the loop above first.)
    data(&node, WRITE, json!({"p": set("alice", "age", json!(20))}));
    data(
        &node,
        WRITE,
        json!({"p": set("alice", "name", json!("Alice"))}),
    );
    let named = (0..5)
        .map(|_| sub.next("changed"))
        .find(|e| {
            assert_eq!(e["id"], json!("alice"), "{e}");
            assert_ne!(
                e["record"]["fields"]["age"]["value"],
                json!(20),
                "max(age) fell"
            );
            e["record"]["fields"]["name"]["value"] == json!("Alice")
        })
        .expect("the name change");
    assert_eq!(named["record"]["fields"]["age"]["value"], json!(age));
    node.stop();
}
