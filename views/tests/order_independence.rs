//! Property: for random sets of deltas (values, negations, transactions) the views are the
//! same for every arrival order and any duplication.

use std::sync::Arc;

use hypha_primitives::{EntityId, Schema};
use hypha_views::{DeltaIndex, LocalOnly, Resolver, SchemaSet, ViewSchema};
use proptest::prelude::*;
use serde_json::{json, Value};

mod common;

use common::{build, op};

fn schemas() -> SchemaSet {
    let mut set = SchemaSet::new();
    let schema = Schema::from_json(&json!({"type": "thing", "properties": {
        "p0": {"resolver": "lww"}, "p1": {"resolver": "sum"}
    }}))
    .unwrap();
    set.insert(ViewSchema::new(schema).unwrap());
    let all = Schema::from_json(&json!({"type": "every", "properties": {
        "p0": {"resolver": "majority"}, "p1": {"resolver": "set"}
    }}))
    .unwrap();
    set.insert(ViewSchema::new(all).unwrap());
    set
}

fn views(index: &DeltaIndex, schemas: &SchemaSet) -> Value {
    let resolver = Resolver::new(index, schemas, &LocalOnly);
    let mut out = Vec::new();
    for e in ["e0", "e1"] {
        let entity = EntityId::new(e);
        out.push(resolver.lossless(&entity).to_json());
        out.push(resolver.record(&entity, "thing").unwrap().to_json());
        out.push(resolver.record(&entity, "every").unwrap().to_json());
    }
    Value::Array(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn views_do_not_depend_on_arrival_order_or_duplication(
        ops in proptest::collection::vec(op(), 1..24),
        orders in proptest::collection::vec(proptest::collection::vec(any::<prop::sample::Index>(), 0..40), 3),
    ) {
        let deltas = build(&ops);
        prop_assume!(!deltas.is_empty());
        let schemas = schemas();
        let mut reference = DeltaIndex::new();
        for d in &deltas {
            reference.insert(Arc::new(d.clone()));
        }
        let expected = views(&reference, &schemas);
        for picks in orders {
            // An arbitrary order with repeats, followed by everything (so the set is complete).
            let mut index = DeltaIndex::new();
            for pick in picks.iter().map(|i| i.index(deltas.len())).chain((0..deltas.len()).rev()) {
                index.insert(Arc::new(deltas[pick].clone()));
            }
            prop_assert_eq!(&views(&index, &schemas), &expected);
        }
    }
}
