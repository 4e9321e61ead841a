//! Views loaded from a real journal, now and as of earlier points.

use hypha_delta_store::{Arrival, Durability, Store};
use hypha_primitives::{DeltaBuilder, EntityId, Hlc, KeyPair, Pointer, Schema};
use hypha_views::{
    load_index, AsOf, LocalOnly, Resolver, SchemaSet, ViewSchema, TRANSACTION, TRANSACTION_MEMBER,
    TRANSACTION_SIZE,
};
use serde_json::json;

fn schemas() -> SchemaSet {
    let mut set = SchemaSet::new();
    let schema = Schema::from_json(&json!({"type": "user", "properties": {
        "name": {"resolver": "lww"},
        "friend": {"resolver": "lww", "type": {"ref": "user"}}
    }}))
    .unwrap();
    set.insert(ViewSchema::new(schema).unwrap());
    set
}

fn name_of(store: &Store, entity: &str, as_of: AsOf) -> serde_json::Value {
    let index = load_index(store, &[EntityId::new(entity)], as_of, 2).unwrap();
    let schemas = schemas();
    let record = Resolver::new(&index, &schemas, &LocalOnly)
        .record(&EntityId::new(entity), "user")
        .unwrap();
    record.fields["name"]
        .value
        .as_ref()
        .map_or(serde_json::Value::Null, |v| v.to_json())
}

#[test]
fn views_from_the_journal_follow_negations_transactions_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .durability(Durability::Buffered)
        .open()
        .unwrap();
    let key = KeyPair::from_seed([1; 32]);
    let set_name = |ms: u64, v: &str| {
        DeltaBuilder::new(Hlc::new(ms, 0))
            .pointer(Pointer::entity("user", "alice", "name"))
            .pointer(Pointer::value("name", v))
            .sign(&key)
            .unwrap()
    };
    let first = set_name(10, "Al");
    let second = set_name(20, "Alice");
    store.put(first.clone()).unwrap(); // arrival 1
    store.put(second.clone()).unwrap(); // arrival 2
    let negation = DeltaBuilder::new(Hlc::new(30, 0))
        .pointer(Pointer::negates(second.id()))
        .sign(&key)
        .unwrap();
    store.put(negation).unwrap(); // arrival 3

    assert_eq!(name_of(&store, "alice", AsOf::Now), json!("Al"));
    assert_eq!(
        name_of(&store, "alice", AsOf::Time(Hlc::new(25, 0))),
        json!("Alice")
    );
    assert_eq!(
        name_of(&store, "alice", AsOf::Time(Hlc::new(15, 0))),
        json!("Al")
    );
    assert_eq!(
        name_of(&store, "alice", AsOf::Arrival(Arrival::new(2))),
        json!("Alice")
    );
    assert_eq!(
        name_of(&store, "alice", AsOf::Time(Hlc::new(5, 0))),
        json!(null)
    );

    // A transaction whose declaration arrives last: invisible until it does.
    let member = DeltaBuilder::new(Hlc::new(40, 0))
        .pointer(Pointer::entity("user", "alice", "name"))
        .pointer(Pointer::value("name", "Alice B."))
        .pointer(Pointer::entity(TRANSACTION, "tx9", TRANSACTION_MEMBER))
        .sign(&key)
        .unwrap();
    store.put(member).unwrap();
    assert_eq!(name_of(&store, "alice", AsOf::Now), json!("Al"));
    let declaration = DeltaBuilder::new(Hlc::new(41, 0))
        .pointer(Pointer::entity(TRANSACTION, "tx9", TRANSACTION_SIZE))
        .pointer(Pointer::value(TRANSACTION_SIZE, 1i64))
        .sign(&key)
        .unwrap();
    store.put(declaration).unwrap();
    assert_eq!(name_of(&store, "alice", AsOf::Now), json!("Alice B."));

    // References are loaded and followed to the depth asked for.
    let friend = DeltaBuilder::new(Hlc::new(50, 0))
        .pointer(Pointer::entity("user", "alice", "friend"))
        .pointer(Pointer::entity("friend", "bob", "friend_of"))
        .sign(&key)
        .unwrap();
    let bob_name = DeltaBuilder::new(Hlc::new(50, 0))
        .pointer(Pointer::entity("user", "bob", "name"))
        .pointer(Pointer::value("name", "Bob"))
        .sign(&key)
        .unwrap();
    store
        .put_batch(vec![friend.into(), bob_name.into()])
        .unwrap();
    let index = load_index(&store, &[EntityId::new("alice")], AsOf::Now, 1).unwrap();
    let schemas = schemas();
    let alice = Resolver::new(&index, &schemas, &LocalOnly)
        .record(&EntityId::new("alice"), "user")
        .unwrap();
    let friend_json = alice.fields["friend"].value.as_ref().unwrap().to_json();
    assert_eq!(friend_json["id"], "bob");
    assert_eq!(friend_json["fields"]["name"]["value"], "Bob");
}
