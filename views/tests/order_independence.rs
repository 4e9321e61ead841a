//! Property: for random sets of deltas (values, negations, transactions) the views are the
//! same for every arrival order and any duplication.

use std::sync::Arc;

use hypha_primitives::{Delta, DeltaBuilder, EntityId, Hlc, KeyPair, Pointer, Schema};
use hypha_views::{
    DeltaIndex, LocalOnly, Resolver, SchemaSet, ViewSchema, TRANSACTION, TRANSACTION_MEMBER,
    TRANSACTION_SIZE,
};
use proptest::prelude::*;
use serde_json::{json, Value};

#[derive(Clone, Debug)]
enum Op {
    /// entity, property, value, optional transaction
    Set(u8, u8, i64, Option<u8>),
    /// negate the delta made by an earlier op (index modulo the number made so far)
    Negate(usize),
    /// transaction, declared size
    Declare(u8, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..2, 0u8..2, -5i64..5, proptest::option::weighted(0.3, 0u8..2)).prop_map(|(e, p, v, t)| Op::Set(e, p, v, t)),
        2 => any::<usize>().prop_map(Op::Negate),
        1 => (0u8..2, 0u8..4).prop_map(|(t, n)| Op::Declare(t, n)),
    ]
}

fn build(ops: &[Op]) -> Vec<Delta> {
    let keys = [KeyPair::from_seed([1; 32]), KeyPair::from_seed([2; 32])];
    let mut deltas: Vec<Delta> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        // Few distinct times, so ties happen.
        let builder = DeltaBuilder::new(Hlc::new((i % 4) as u64, 0));
        let builder = match op {
            Op::Set(e, p, v, tx) => {
                let prop = format!("p{p}");
                let b = builder
                    .pointer(Pointer::entity("subject", format!("e{e}"), prop.clone()))
                    .pointer(Pointer::value(prop, *v));
                match tx {
                    Some(t) => b.pointer(Pointer::entity(
                        TRANSACTION,
                        format!("tx{t}"),
                        TRANSACTION_MEMBER,
                    )),
                    None => b,
                }
            }
            Op::Negate(n) if !deltas.is_empty() => {
                builder.pointer(Pointer::negates(deltas[n % deltas.len()].id()))
            }
            Op::Negate(_) => continue,
            Op::Declare(t, n) => builder
                .pointer(Pointer::entity(
                    TRANSACTION,
                    format!("tx{t}"),
                    TRANSACTION_SIZE,
                ))
                .pointer(Pointer::value(TRANSACTION_SIZE, *n as i64)),
        };
        deltas.push(builder.sign(&keys[i % 2]).unwrap());
    }
    deltas
}

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
