//! Reads by author and by origin: each reads its own index, is paged with a cursor, and
//! combines with a filter, through the HTTP API, GraphQL and the CLI.

use serde_json::{json, Value};

use crate::gql::data;
use crate::support::{json_lines, ok, NodeProcess};
use hypha_primitives::{Delta, DeltaBuilder, Hlc, KeyPair, Pointer, Seq, Stamp};

fn delta(key: &KeyPair, entity: &str, n: i64) -> Delta {
    DeltaBuilder::new(Hlc::new(1_000 + n as u64, 0))
        .pointer(Pointer::entity("subject", entity, "n"))
        .pointer(Pointer::value("n", n))
        .sign(key)
        .unwrap()
}

/// `GET path` as JSON lines, with the page's cursor and whether more may follow.
fn lines(node: &NodeProcess, path: &str) -> (Vec<Value>, String, String) {
    let response = ureq::get(&format!("{}{path}", node.http)).call().unwrap();
    let cursor = response.header("x-hypha-cursor").unwrap_or("").to_owned();
    let more = response.header("x-hypha-more").unwrap_or("").to_owned();
    (json_lines(&response.into_string().unwrap()), cursor, more)
}

fn ids(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn deltas_by_author_and_by_origin_read_their_indexes_in_pages() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), &[]);
    let (writer, other, host) = (
        KeyPair::from_seed([21; 32]),
        KeyPair::from_seed([22; 32]),
        KeyPair::from_seed([23; 32]),
    );
    // The writer's deltas, interleaved with another author's, all stamped by the node.
    let mine: Vec<Delta> = (0..3).map(|n| delta(&writer, "k", n)).collect();
    let theirs: Vec<Delta> = (10..13).map(|n| delta(&other, "k", n)).collect();
    let body: Vec<String> = mine
        .iter()
        .zip(&theirs)
        .flat_map(|(a, b)| [a.to_json_string(), b.to_json_string()])
        .collect();
    node.post("/deltas", &body.join("\n")).unwrap();
    // Two deltas stamped elsewhere, by `host`, seqs 1 and 2 (imported with their stamps).
    let far: Vec<Delta> = (20..22).map(|n| delta(&other, "far", n)).collect();
    let stamped: Vec<String> = far
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut line = d.to_json();
            line["stamps"] = json!([Stamp::sign(d.id(), Seq::new(i as u64 + 1), &host).to_json()]);
            line.to_string()
        })
        .collect();
    node.post("/deltas", &stamped.join("\n")).unwrap();

    let author = writer.author().to_string();
    let (all, _, _) = lines(&node, &format!("/deltas?author={author}"));
    let expect: Vec<String> = mine.iter().map(|d| d.id().to_string()).collect();
    assert_eq!(ids(&all), expect, "the author's deltas, in arrival order");
    // Paged: two, then the rest from the cursor.
    let (first, cursor, more) = lines(&node, &format!("/deltas?author={author}&limit=2"));
    assert_eq!(ids(&first), expect[..2]);
    assert_eq!(more, "true");
    assert_eq!(
        cursor,
        all[1]["arrival"].to_string(),
        "the second line's arrival"
    );
    let (rest, _, more) = lines(&node, &format!("/deltas?author={author}&after={cursor}"));
    assert_eq!(ids(&rest), expect[2..]);
    assert_eq!(more, "false");
    // With a filter: only the writer's deltas whose value is 1.
    let filter = r#"{"in":[1,{"var":"values"}]}"#;
    let (filtered, _, _) = lines(
        &node,
        &format!("/deltas?author={author}&filter={}", urlencode(filter)),
    );
    assert_eq!(ids(&filtered), [mine[1].id().to_string()]);

    // By origin: the host's deltas in its seq order, the cursor a seq.
    let origin = host.host_id().to_string();
    let (stamped_by_host, _, _) = lines(&node, &format!("/deltas?origin={origin}"));
    assert_eq!(
        ids(&stamped_by_host),
        far.iter().map(|d| d.id().to_string()).collect::<Vec<_>>()
    );
    let (after_one, cursor, _) = lines(&node, &format!("/deltas?origin={origin}&after=1"));
    assert_eq!(ids(&after_one), [far[1].id().to_string()]);
    assert_eq!(cursor, "2");
    // Both at once, or a key that does not parse: a clear refusal.
    let (status, body) = node
        .get(&format!("/deltas?author={author}&origin={origin}"))
        .unwrap_err();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not both"), "{body}");
    let (status, body) = node.get("/deltas?author=nothex").unwrap_err();
    assert_eq!(status, 400, "{body}");

    // GraphQL: the same index, the same cursor.
    let page = data(
        &node,
        "query($a: ID!) { deltas(author: $a, first: 2) { deltas cursor hasMore } }",
        json!({"a": author}),
    );
    let page = &page["deltas"];
    assert_eq!(page["deltas"].as_array().unwrap().len(), 2, "{page}");
    assert_eq!(page["deltas"][0]["id"], expect[0].as_str());
    assert_eq!(page["hasMore"], true);
    assert_eq!(page["cursor"], cursor_of(&all[1]));
    let by_origin = data(
        &node,
        "query($o: ID!) { deltas(origin: $o, after: \"1\") { deltas cursor } }",
        json!({"o": origin}),
    );
    assert_eq!(
        by_origin["deltas"]["deltas"][0]["id"],
        far[1].id().to_string()
    );
    node.stop();

    // The CLI on the data folder reads the same indexes.
    let scanned = json_lines(&ok(dir.path(), &["scan", "--author", &author]));
    assert_eq!(ids(&scanned), expect);
    let scanned = json_lines(&ok(
        dir.path(),
        &["scan", "--origin", &origin, "--after", "1"],
    ));
    assert_eq!(ids(&scanned), [far[1].id().to_string()]);
    let scanned = json_lines(&ok(
        dir.path(),
        &["scan", "--author", &author, "--filter", filter],
    ));
    assert_eq!(ids(&scanned), [mine[1].id().to_string()]);
}

/// A line's arrival as GraphQL's string cursor.
fn cursor_of(line: &Value) -> String {
    line["arrival"].to_string()
}

/// `text` for a URL query string.
fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}
