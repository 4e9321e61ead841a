//! The materialized view store against a real journal: incremental updates, schema
//! changes, restarts, rebuilds, paging and queries; and the property that it equals a
//! from-scratch rebuild whatever the arrival order.

mod common;

use std::sync::Arc;

use common::{build, op};
use hypha_delta_store::{Durability, Store};
use hypha_primitives::{Delta, DeltaBuilder, Filter, Hlc, KeyPair, Pointer, Schema};
use hypha_views::{Materializer, TRANSACTION, TRANSACTION_MEMBER, TRANSACTION_SIZE};
use proptest::prelude::*;
use serde_json::{json, Value};

fn key() -> KeyPair {
    KeyPair::from_seed([1; 32])
}

fn open(dir: &std::path::Path) -> Store {
    Store::builder(dir)
        .durability(Durability::Buffered)
        .open()
        .unwrap()
}

fn schema_delta(schema: Value, ms: u64) -> Delta {
    let schema = Schema::from_json(&schema).unwrap();
    DeltaBuilder::new(Hlc::new(ms, 0))
        .pointers(schema.to_pointers())
        .sign(&key())
        .unwrap()
}

fn set(
    entity: &str,
    property: &str,
    value: impl Into<hypha_primitives::Primitive>,
    ms: u64,
) -> Delta {
    DeltaBuilder::new(Hlc::new(ms, 0))
        .pointer(Pointer::entity("subject", entity, property))
        .pointer(Pointer::value(property, value))
        .sign(&key())
        .unwrap()
}

fn value_of(m: &Materializer, t: &str, entity: &str, property: &str) -> Value {
    m.record(t, entity)
        .unwrap()
        .map_or(Value::Null, |r| r["fields"][property]["value"].clone())
}

/// The raw bytes of every materialized record, for byte-for-byte comparisons.
fn record_bytes(store: &Store) -> Vec<(Vec<u8>, Vec<u8>)> {
    store
        .derived_scan(b"v1/rec/", None)
        .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
        .collect()
}

#[test]
fn records_follow_deltas_negations_transactions_and_schema_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut m = Materializer::open(store.clone()).unwrap();

    // Data before any schema: nothing to materialize yet.
    let name = set("alice", "name", "Alice", 10);
    store
        .put_batch(vec![
            name.clone().into(),
            set("alice", "score", 5i64, 11).into(),
            set("bob", "name", "Bob", 12).into(),
        ])
        .unwrap();
    m.apply_pending().unwrap();
    assert_eq!(m.record("user", "alice").unwrap(), None);

    // Registering a schema after the data exists materializes every instance.
    store.put(schema_delta(json!({"type": "user", "properties": {"name": {"resolver": "lww"}, "score": {"resolver": "sum"}}}), 1)).unwrap();
    m.apply_pending().unwrap();
    assert_eq!(value_of(&m, "user", "alice", "name"), json!("Alice"));
    assert_eq!(value_of(&m, "user", "alice", "score"), json!(5));
    assert_eq!(value_of(&m, "user", "bob", "name"), json!("Bob"));

    // A later write and a negation update only what they touch.
    store.put(set("alice", "score", 7i64, 13)).unwrap();
    let negation = DeltaBuilder::new(Hlc::new(14, 0))
        .pointer(Pointer::negates(name.id()))
        .sign(&key())
        .unwrap();
    store.put(negation).unwrap();
    m.apply_pending().unwrap();
    assert_eq!(value_of(&m, "user", "alice", "score"), json!(12));
    assert_eq!(value_of(&m, "user", "alice", "name"), json!(null));

    // A transaction becomes visible when its declaration arrives.
    let member = DeltaBuilder::new(Hlc::new(15, 0))
        .pointer(Pointer::entity("subject", "alice", "score"))
        .pointer(Pointer::value("score", 100i64))
        .pointer(Pointer::entity(TRANSACTION, "tx", TRANSACTION_MEMBER))
        .sign(&key())
        .unwrap();
    store.put(member).unwrap();
    m.apply_pending().unwrap();
    assert_eq!(value_of(&m, "user", "alice", "score"), json!(12));
    let declaration = DeltaBuilder::new(Hlc::new(16, 0))
        .pointer(Pointer::entity(TRANSACTION, "tx", TRANSACTION_SIZE))
        .pointer(Pointer::value(TRANSACTION_SIZE, 1i64))
        .sign(&key())
        .unwrap();
    store.put(declaration).unwrap();
    m.apply_pending().unwrap();
    assert_eq!(value_of(&m, "user", "alice", "score"), json!(112));

    // Changing the schema re-resolves the type.
    store.put(schema_delta(json!({"type": "user", "properties": {"name": {"resolver": "lww"}, "score": {"resolver": "max"}}}), 2)).unwrap();
    m.apply_pending().unwrap();
    assert_eq!(value_of(&m, "user", "alice", "score"), json!(100));
    // An older definition does not win.
    store
        .put(schema_delta(
            json!({"type": "user", "properties": {"score": {"resolver": "min"}}}),
            0,
        ))
        .unwrap();
    m.apply_pending().unwrap();
    assert_eq!(value_of(&m, "user", "alice", "score"), json!(100));
}

#[test]
fn views_survive_a_restart_without_a_rebuild_and_a_rebuild_gives_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store
            .put(schema_delta(
                json!({"type": "user", "properties": {"name": {"resolver": "lww"}}}),
                1,
            ))
            .unwrap();
        store
            .put_batch(
                (0..50)
                    .map(|i| set(&format!("u{i:02}"), "name", format!("n{i}"), 10 + i).into())
                    .collect(),
            )
            .unwrap();
        Materializer::open(store).unwrap().apply_pending().unwrap();
    }
    let store = open(dir.path());
    let before = record_bytes(&store);
    assert_eq!(before.len(), 50);
    let mut m = Materializer::open(store.clone()).unwrap();
    // Readable straight away: nothing was rebuilt or re-applied.
    assert_eq!(value_of(&m, "user", "u07", "name"), json!("n7"));
    assert_eq!(m.apply_pending().unwrap(), 0);

    let mut calls = Vec::new();
    m.rebuild(&mut |done, total| calls.push((done, total)))
        .unwrap();
    assert_eq!(record_bytes(&store), before);
    assert!(!calls.is_empty());
    // Every entity is resolved once: the 50 users and the schema's own entity.
    assert_eq!(calls.last(), Some(&(51, 51)));
}

#[test]
fn records_page_by_type_and_queries_filter_with_a_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .put(schema_delta(
            json!({"type": "user", "properties": {"age": {"resolver": "lww"}}}),
            1,
        ))
        .unwrap();
    store
        .put_batch(
            (0..10)
                .map(|i| set(&format!("u{i}"), "age", i as i64 * 10, 10).into())
                .collect(),
        )
        .unwrap();
    let mut m = Materializer::open(store).unwrap();
    m.apply_pending().unwrap();
    let first = m.records("user", None, 4).unwrap();
    assert_eq!(
        first
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["u0", "u1", "u2", "u3"]
    );
    let next = m.records("user", Some("u3"), 4).unwrap();
    assert_eq!(next[0]["id"], "u4");
    // The typed page is the same page.
    let typed = m.typed_records("user", Some("u3"), 4).unwrap();
    assert_eq!(typed.iter().map(|r| r.to_json()).collect::<Vec<_>>(), next);
    assert!(m.records("nobody", None, 4).unwrap().is_empty());

    let filter = Filter::from_json_str(r#"{">=": [{"var": "fields.age.value"}, 50]}"#).unwrap();
    let result = m.query("user", &filter, 3).unwrap();
    assert_eq!(result.records.len(), 3);
    assert!(result
        .records
        .iter()
        .all(|r| r["fields"]["age"]["value"].as_i64().unwrap() >= 50));
    assert!(result.errors.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    /// Whatever the order, duplication and batching of arrival, incremental
    /// materialization ends with the same bytes as every other order and as a rebuild.
    #[test]
    fn materialized_views_equal_a_rebuild_for_every_arrival_order(
        ops in proptest::collection::vec(op(), 1..20),
        orders in proptest::collection::vec(proptest::collection::vec(any::<prop::sample::Index>(), 0..30), 2),
        cuts in proptest::collection::vec(1usize..6, 1..5),
    ) {
        let mut deltas = build(&ops);
        prop_assume!(!deltas.is_empty());
        let schema = schema_delta(json!({"type": "thing", "properties": {"p0": {"resolver": "lww"}, "p1": {"resolver": "sum"}}}), 2);
        deltas.push(schema);
        let deltas: Vec<Arc<Delta>> = deltas.into_iter().map(Arc::new).collect();
        let mut results = Vec::new();
        for picks in orders {
            let dir = tempfile::tempdir().unwrap();
            let store = open(dir.path());
            let mut m = Materializer::open(store.clone()).unwrap();
            let sequence: Vec<usize> = picks.iter().map(|i| i.index(deltas.len())).chain(0..deltas.len()).collect();
            let mut at = 0;
            for cut in cuts.iter().cycle() {
                if at >= sequence.len() { break; }
                let end = (at + cut).min(sequence.len());
                store.put_batch(sequence[at..end].iter().map(|i| Delta::clone(&deltas[*i]).into()).collect()).unwrap();
                m.apply_pending().unwrap();
                at = end;
            }
            let incremental = record_bytes(&store);
            m.rebuild(&mut |_, _| {}).unwrap();
            prop_assert_eq!(&record_bytes(&store), &incremental, "incremental differs from a rebuild");
            results.push(incremental);
        }
        prop_assert_eq!(&results[0], &results[1]);
    }
}

#[test]
fn folding_new_deltas_into_records_matches_a_rebuild_for_every_resolver() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let resolvers = [
        "lww", "fww", "max", "min", "count", "sum", "set", "average", "concat", "majority",
    ];
    let props: serde_json::Map<String, Value> = resolvers
        .iter()
        .map(|r| (r.to_string(), json!({"resolver": r})))
        .collect();
    store
        .put(schema_delta(json!({"type": "t", "properties": props}), 1))
        .unwrap();
    let mut m = Materializer::open(store.clone()).unwrap();
    // Rounds of writes in time order, one entity per resolver (so one resolver's slow path
    // does not hide another's fast path): integers, a tie, integers turning into floats,
    // floats, and finally a string, which numeric resolvers skip.
    let rounds: Vec<Vec<hypha_primitives::Primitive>> = vec![
        vec![3i64.into(), 7i64.into()],
        vec![(-2i64).into(), 7i64.into()],
        vec![2.5f64.into(), 1i64.into()],
        vec![0.5f64.into(), 0.125f64.into()],
        vec!["seven".into()],
    ];
    let mut ms = 100;
    for (round, values) in rounds.iter().enumerate() {
        let mut batch = Vec::new();
        for v in values {
            for r in resolvers {
                ms += 1;
                batch.push(set(&format!("e_{r}"), r, v.clone(), ms).into());
            }
        }
        if round == 1 {
            // A delta from the past: sums must take the slow path for it.
            batch.push(set("e_sum", "sum", 1000i64, 50).into());
        }
        store.put_batch(batch).unwrap();
        m.apply_pending().unwrap();
        // Checked every round: a later slow path would hide a wrong fold.
        let incremental = record_bytes(&store);
        m.rebuild(&mut |_, _| {}).unwrap();
        assert_eq!(
            record_bytes(&store),
            incremental,
            "folded records differ from a rebuild after round {round}"
        );
    }
    let field = |r: &str| m.record("t", &format!("e_{r}")).unwrap().unwrap()["fields"][r].clone();
    assert_eq!(field("count")["value"], json!(9));
    assert_eq!(field("lww")["value"], json!("seven"));
    assert_eq!(field("fww")["value"], json!(3));
    assert_eq!(field("max")["value"], json!(7));
    assert_eq!(field("min")["value"], json!(-2));
    assert_eq!(field("sum")["value"], json!(1019.125));
    assert_eq!(
        field("set")["value"],
        json!([3, 7, -2, 2.5, 1, 0.5, 0.125, "seven"])
    );
}

#[test]
fn a_long_undo_redo_history_materializes_without_deep_recursion() {
    let outcome = std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(|| {
            let dir = tempfile::tempdir().unwrap();
            let store = open(dir.path());
            store
                .put(schema_delta(
                    json!({"type": "user", "properties": {"name": {"resolver": "lww"}}}),
                    1,
                ))
                .unwrap();
            let root = set("alice", "name", "Alice", 10);
            let mut previous = root.id();
            let mut chain = vec![root.into()];
            for i in 0..10_000u64 {
                let negation = DeltaBuilder::new(Hlc::new(20 + i, 0))
                    .pointer(Pointer::negates(previous))
                    .sign(&key())
                    .unwrap();
                previous = negation.id();
                chain.push(negation.into());
            }
            store.put_batch(chain).unwrap();
            let mut m = Materializer::open(store).unwrap();
            m.apply_pending().unwrap();
            // An even number of negations above the root: it is visible again.
            value_of(&m, "user", "alice", "name")
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(outcome, json!("Alice"));
}

#[test]
fn folding_a_set_keeps_zero_and_negative_zero_apart_like_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .put(schema_delta(
            json!({"type": "t", "properties": {"s": {"resolver": "set"}}}),
            1,
        ))
        .unwrap();
    let mut m = Materializer::open(store.clone()).unwrap();
    store.put(set("e", "s", 0.0f64, 10)).unwrap();
    m.apply_pending().unwrap();
    store.put(set("e", "s", -0.0f64, 11)).unwrap();
    m.apply_pending().unwrap();
    let folded = record_bytes(&store);
    m.rebuild(&mut |_, _| {}).unwrap();
    assert_eq!(record_bytes(&store), folded);
    assert_eq!(value_of(&m, "t", "e", "s"), json!([0.0, -0.0]));
}

#[test]
fn aggregates_list_their_latest_deciders_and_count_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .put(schema_delta(
            json!({"type": "t", "properties": {"total": {"resolver": "sum"}, "n": {"resolver": "count"}}}),
            1,
        ))
        .unwrap();
    let mut m = Materializer::open(store.clone()).unwrap();
    let mut ids = Vec::new();
    // One delta per round, so every one after the first takes the fast path.
    for i in 0..40i64 {
        let total = set("e", "total", i, 100 + i as u64);
        let n = set("e", "n", "x", 100 + i as u64);
        ids.push(total.id().to_string());
        store.put_batch(vec![total.into(), n.into()]).unwrap();
        m.apply_pending().unwrap();
    }
    let record = m.record("t", "e").unwrap().unwrap();
    let total = &record["fields"]["total"];
    assert_eq!(total["value"], json!((0..40).sum::<i64>()));
    assert_eq!(total["deciders"], json!(40));
    let listed: Vec<String> = serde_json::from_value(total["decided_by"].clone()).unwrap();
    assert_eq!(listed.len(), hypha_views::DECIDERS_KEPT);
    assert_eq!(listed, ids[40 - hypha_views::DECIDERS_KEPT..]);
    assert_eq!(record["fields"]["n"]["deciders"], json!(40));
    let incremental = record_bytes(&store);
    m.rebuild(&mut |_, _| {}).unwrap();
    assert_eq!(record_bytes(&store), incremental);
}

#[test]
fn tracked_changes_name_the_records_each_apply_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .put(schema_delta(
            json!({"type": "user", "properties": {"name": {"resolver": "lww"}}}),
            1,
        ))
        .unwrap();
    let mut m = Materializer::open(store.clone()).unwrap();
    m.apply_pending().unwrap();
    // Untracked, nothing accumulates.
    assert!(m.take_changes().is_empty());
    m.track_changes();
    store.put(set("alice", "name", "Alice", 10)).unwrap();
    store.put(set("bob", "name", "Bob", 11)).unwrap();
    m.apply_pending().unwrap();
    let changes = m.take_changes();
    let mut named: Vec<(String, String)> = changes
        .iter()
        .map(|c| (c.entity_type.clone(), c.entity.clone()))
        .collect();
    named.sort();
    assert_eq!(
        named,
        vec![
            ("user".to_owned(), "alice".to_owned()),
            ("user".to_owned(), "bob".to_owned())
        ]
    );
    // Each change carries the record as written, the same the views hold.
    for change in &changes {
        let held = m.record("user", &change.entity).unwrap();
        assert_eq!(
            change.record.as_ref().map(|r| r.to_json()),
            held,
            "{}",
            change.entity
        );
        assert!(change.record.is_some());
    }
    assert!(m.take_changes().is_empty(), "taken once");
    // A negation removes bob's record: a change too.
    let bob = store
        .scan_entity("bob", None)
        .next()
        .unwrap()
        .unwrap()
        .delta
        .id();
    store
        .put(
            DeltaBuilder::new(Hlc::new(12, 0))
                .pointer(Pointer::negates(bob))
                .sign(&key())
                .unwrap(),
        )
        .unwrap();
    m.apply_pending().unwrap();
    let changes = m.take_changes();
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (changes[0].entity_type.as_str(), changes[0].entity.as_str()),
        ("user", "bob")
    );
    assert_eq!(
        changes[0].record, None,
        "the record is gone, and the change says so"
    );
    assert!(m.record("user", "bob").unwrap().is_none());
}

#[test]
fn the_schemas_fingerprint_is_stored_moves_with_schema_changes_and_survives_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut m = Materializer::open(store.clone()).unwrap();
    let stored = |store: &Store| store.derived_get(b"v1/schemas-fingerprint").unwrap();
    assert!(stored(&store).is_some(), "written when the views open");
    let empty = Materializer::definitions_fingerprint(&store).unwrap();

    let user = json!({"type": "user", "properties": {"name": {"resolver": "lww"}}});
    store.put(schema_delta(user, 10)).unwrap();
    m.apply_pending().unwrap();
    let one = Materializer::definitions_fingerprint(&store).unwrap();
    assert_ne!(one, empty, "a new schema moves it");
    // Data moves records, not the fingerprint.
    store.put(set("alice", "name", "Alice", 11)).unwrap();
    m.apply_pending().unwrap();
    assert_eq!(Materializer::definitions_fingerprint(&store).unwrap(), one);
    let changed =
        json!({"type": "user", "confirm_at": 2, "properties": {"name": {"resolver": "lww"}}});
    store.put(schema_delta(changed, 12)).unwrap();
    m.apply_pending().unwrap();
    let two = Materializer::definitions_fingerprint(&store).unwrap();
    assert_ne!(two, one, "a replaced schema moves it");

    // A rebuild stores the same fingerprint; so does opening views that lack it (written
    // before it was stored), and it equals the one computed from the definitions.
    let before = stored(&store);
    m.rebuild(&mut |_, _| {}).unwrap();
    assert_eq!(stored(&store), before);
    store
        .derived_write(&[hypha_delta_store::DerivedWrite::Delete(
            b"v1/schemas-fingerprint".to_vec(),
        )])
        .unwrap();
    assert_eq!(
        Materializer::definitions_fingerprint(&store).unwrap(),
        two,
        "computed from the definitions when absent"
    );
    Materializer::open(store.clone()).unwrap();
    assert_eq!(stored(&store), before);
    // A wrong one (left by a build that did not keep it) is put right on opening.
    store
        .derived_write(&[hypha_delta_store::DerivedWrite::Put(
            b"v1/schemas-fingerprint".to_vec(),
            vec![0; 8],
        )])
        .unwrap();
    Materializer::open(store.clone()).unwrap();
    assert_eq!(stored(&store), before);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// A record as of a time (or an arrival position), computed from the journal's
    /// indexes, equals the record a fresh node materializes from only the deltas written
    /// by then (or arrived by then): overwrites, negations, transactions and a schema that
    /// changes halfway included.
    #[test]
    fn a_record_as_of_equals_a_fresh_node_fed_only_what_came_before(
        ops in proptest::collection::vec(op(), 1..20),
        at in 0u64..5,
        cut in 0u64..26,
    ) {
        use hypha_primitives::EntityId;
        use hypha_views::{record_as_of, AsOf};
        let first = schema_delta(json!({"type": "thing", "properties": {"p0": {"resolver": "lww"}, "p1": {"resolver": "sum"}}}), 1);
        let second = schema_delta(json!({"type": "thing", "properties": {"p0": {"resolver": "lww"}, "p1": {"resolver": "max"}}}), 3);
        let all: Vec<Delta> = build(&ops).into_iter().chain([first, second]).collect();
        let dir = tempfile::tempdir().unwrap();
        let full = open(dir.path());
        for delta in &all {
            full.put(delta.clone()).unwrap();
        }
        // By time: a node fed only the deltas written at or before `at`.
        let fed = |keep: &dyn Fn(&hypha_delta_store::StoredDelta) -> bool| {
            let dir = tempfile::tempdir().unwrap();
            let store = open(dir.path());
            for stored in full.scan_arrival(None) {
                let stored = stored.unwrap();
                if keep(&stored) {
                    store.put(stored.delta).unwrap();
                }
            }
            let mut m = Materializer::open(store.clone()).unwrap();
            m.apply_pending().unwrap();
            (dir, store)
        };
        let (_by_time, by_time) = fed(&|s| s.delta.time() <= Hlc::new(at, 0));
        let (_by_arrival, by_arrival) = fed(&|s| s.arrival.get() <= cut);
        for entity in ["e0", "e1"] {
            let id = EntityId::new(entity);
            let expected = Materializer::reader(by_time.clone()).typed_record("thing", entity).unwrap();
            let got = record_as_of(&full, "thing", &id, AsOf::Time(Hlc::new(at, 0))).unwrap();
            prop_assert_eq!(got, expected, "as of time {}", at);
            let expected = Materializer::reader(by_arrival.clone()).typed_record("thing", entity).unwrap();
            let got = record_as_of(&full, "thing", &id, AsOf::Arrival(hypha_delta_store::Arrival::new(cut))).unwrap();
            prop_assert_eq!(got, expected, "as of arrival {}", cut);
        }
    }
}
