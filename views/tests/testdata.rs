//! Data-driven view cases from `views/testdata/*.json`, each checked under many arrival
//! orders (forward, reverse, and seeded shuffles with duplicates).
//!
//! A case lists labelled deltas (`"@LABEL"` in a delta target names an earlier delta),
//! schemas, optional lww tie-breaks (`"type.property": "author" | "value"`), and what to
//! expect: the live labels, lossless views (entity → property → labels in order), the
//! entities with filed deltas, and lossy records (`"type/entity"` → fields with value and
//! deciding labels, plus `errors` and `missing_required` when given). In expectations,
//! `max_id(A,B)` / `max_author(A,B)` name whichever of A and B has the larger id / author,
//! and `max_id_value(A,B)` / `max_author_value(A,B)` that delta's value.

use std::collections::BTreeMap;
use std::sync::Arc;

use hypha_primitives::{
    Delta, DeltaBuilder, DeltaId, EntityId, Hlc, KeyPair, Pointer, ResolverName, Schema,
};
use hypha_views::{
    Builtin, DeltaIndex, FieldValue, Liveness, LocalOnly, Record, Resolver, SchemaSet, TieBreak,
    ViewSchema,
};
use serde_json::{json, Map, Value};

struct Case {
    name: String,
    deltas: Vec<(String, Delta)>,
    schemas: SchemaSet,
    expect: Value,
}

fn load_cases() -> Vec<Case> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let list: Vec<Value> =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for case in list {
            cases.push(parse_case(&case, &file.display().to_string()));
        }
    }
    assert!(
        cases.len() >= 10,
        "expected the testdata cases, found {}",
        cases.len()
    );
    cases
}

fn parse_case(case: &Value, file: &str) -> Case {
    let name = format!("{file}: {}", case["name"].as_str().unwrap());
    let mut labels: BTreeMap<String, DeltaId> = BTreeMap::new();
    let mut deltas = Vec::new();
    for d in case["deltas"].as_array().unwrap() {
        let mut pointers = d["pointers"].clone();
        for p in pointers.as_array_mut().unwrap() {
            if let Some(label) = p["target"]["delta"]
                .as_str()
                .and_then(|s| s.strip_prefix('@'))
            {
                p["target"]["delta"] = Value::String(labels[label].to_string());
            }
        }
        let pointers = Pointer::list_from_json_str(&pointers.to_string()).unwrap();
        let author = KeyPair::from_seed([d["author"].as_u64().unwrap_or(1) as u8; 32]);
        let delta = DeltaBuilder::new(Hlc::new(d["time"].as_u64().unwrap(), 0))
            .pointers(pointers)
            .sign(&author)
            .unwrap();
        let label = d["label"].as_str().unwrap().to_owned();
        labels.insert(label.clone(), delta.id());
        deltas.push((label, delta));
    }
    let mut schemas = SchemaSet::new();
    for s in case["schemas"].as_array().unwrap() {
        let schema = Schema::from_json(s).unwrap();
        let type_name = schema.entity_type().to_owned();
        let mut view = ViewSchema::new(schema).unwrap();
        if let Some(ties) = case.get("tie_breaks").and_then(Value::as_object) {
            for (key, tie) in ties {
                let (t, property) = key.split_once('.').unwrap();
                if t == type_name {
                    let tie = match tie.as_str().unwrap() {
                        "author" => TieBreak::Author,
                        "value" => TieBreak::Value,
                        other => panic!("unknown tie-break {other}"),
                    };
                    view = view
                        .with_resolver(
                            property,
                            Arc::new(Builtin::new(ResolverName::Lww).with_tie_break(tie)),
                        )
                        .unwrap();
                }
            }
        }
        schemas.insert(view);
    }
    Case {
        name,
        deltas,
        schemas,
        expect: case["expect"].clone(),
    }
}

/// Expands `max_id(A,B)`-style expressions against the case's deltas.
fn expand(expr: &Value, deltas: &[(String, Delta)]) -> Value {
    let find = |l: &str| {
        deltas
            .iter()
            .find(|(label, _)| label == l)
            .map(|(_, d)| d)
            .unwrap()
    };
    let pick = |args: &str, by_author: bool| {
        let (a, b) = args.trim_end_matches(')').split_once(',').unwrap();
        let key = |l: &str| {
            let d = find(l);
            (
                if by_author {
                    d.author().to_string()
                } else {
                    String::new()
                },
                d.id(),
            )
        };
        if key(a) > key(b) {
            a.to_owned()
        } else {
            b.to_owned()
        }
    };
    let value_of =
        |label: &str| FieldValue::from_target(&find(label).pointers()[1].target).to_json();
    match expr {
        Value::String(s) => {
            if let Some(args) = s.strip_prefix("max_id_value(") {
                value_of(&pick(args, false))
            } else if let Some(args) = s.strip_prefix("max_author_value(") {
                value_of(&pick(args, true))
            } else if let Some(args) = s.strip_prefix("max_id(") {
                Value::String(pick(args, false))
            } else if let Some(args) = s.strip_prefix("max_author(") {
                Value::String(pick(args, true))
            } else {
                expr.clone()
            }
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| expand(v, deltas)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), expand(v, deltas)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn label_of(id: DeltaId, deltas: &[(String, Delta)]) -> String {
    deltas
        .iter()
        .find(|(_, d)| d.id() == id)
        .map(|(l, _)| l.clone())
        .unwrap_or_else(|| id.to_string())
}

/// A record in the expectation's shape: fields as {value, decided_by labels}, nested
/// records as {id, fields}.
fn project_record(record: &Record, deltas: &[(String, Delta)], top: bool) -> Value {
    let fields: Map<String, Value> = record
        .fields
        .iter()
        .map(|(name, f)| {
            let value = f
                .value
                .as_ref()
                .map_or(Value::Null, |v| project_value(v, deltas));
            let by: Vec<String> = f
                .decided_by
                .iter()
                .map(|id| label_of(*id, deltas))
                .collect();
            (name.clone(), json!({"value": value, "decided_by": by}))
        })
        .collect();
    if top {
        json!({"fields": fields, "errors": record.errors, "missing_required": record.missing_required})
    } else {
        json!({"id": record.entity.as_str(), "fields": fields})
    }
}

fn project_value(value: &FieldValue, deltas: &[(String, Delta)]) -> Value {
    match value {
        FieldValue::Record(r) => project_record(r, deltas, false),
        FieldValue::List(items) => {
            Value::Array(items.iter().map(|v| project_value(v, deltas)).collect())
        }
        other => other.to_json(),
    }
}

/// Everything the case's expectations talk about, observed on one index.
fn observe(case: &Case, index: &DeltaIndex) -> Value {
    let deltas = &case.deltas;
    let mut out = Map::new();
    let mut liveness = Liveness::new(index);
    let live: Vec<String> = deltas
        .iter()
        .filter(|(_, d)| liveness.is_live(d.id()))
        .map(|(l, _)| l.clone())
        .collect();
    out.insert("live".into(), json!(live));
    let resolver = Resolver::new(index, &case.schemas, &LocalOnly);
    if let Some(lossless) = case.expect.get("lossless").and_then(Value::as_object) {
        let mut views = Map::new();
        for entity in lossless.keys() {
            let view = resolver.lossless(&EntityId::new(entity.as_str()));
            let props: Map<String, Value> = view
                .properties
                .iter()
                .map(|(p, filed)| {
                    (
                        p.clone(),
                        json!(filed
                            .iter()
                            .map(|f| label_of(f.delta.id(), deltas))
                            .collect::<Vec<_>>()),
                    )
                })
                .collect();
            views.insert(entity.clone(), Value::Object(props));
        }
        out.insert("lossless".into(), Value::Object(views));
    }
    let mut entities: Vec<&str> = index.entities().map(EntityId::as_str).collect();
    entities.sort();
    out.insert("entities".into(), json!(entities));
    if let Some(lossy) = case.expect.get("lossy").and_then(Value::as_object) {
        let mut records = Map::new();
        for (key, expected) in lossy {
            let (t, entity) = key.split_once('/').unwrap();
            let record = resolver.record(&EntityId::new(entity), t).unwrap();
            let mut projected = project_record(&record, deltas, true);
            // Compare only the record-level keys the expectation names.
            let names: Vec<&String> = expected.as_object().unwrap().keys().collect();
            projected
                .as_object_mut()
                .unwrap()
                .retain(|k, _| names.contains(&k));
            records.insert(key.clone(), projected);
        }
        out.insert("lossy".into(), Value::Object(records));
    }
    out.retain(|k, _| case.expect.get(k).is_some());
    Value::Object(out)
}

/// Arrival orders: forward, reverse, and seeded shuffles that also repeat some deltas.
fn orders(n: usize) -> Vec<Vec<usize>> {
    let mut orders = vec![(0..n).collect::<Vec<_>>(), (0..n).rev().collect()];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..16 {
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            order.swap(i, (next() % (i as u64 + 1)) as usize);
        }
        for _ in 0..(next() % 3) {
            if n > 0 {
                let dup = order[(next() % n as u64) as usize];
                order.insert((next() % (order.len() as u64 + 1)) as usize, dup);
            }
        }
        orders.push(order);
    }
    orders
}

#[test]
fn every_testdata_case_holds_under_every_arrival_order() {
    for case in load_cases() {
        let expected = expand(&case.expect, &case.deltas);
        for order in orders(case.deltas.len()) {
            let mut index = DeltaIndex::new();
            for i in &order {
                index.insert(Arc::new(case.deltas[*i].1.clone()));
            }
            let observed = observe(&case, &index);
            assert_eq!(
                observed, expected,
                "case {:?} in arrival order {order:?}",
                case.name
            );
        }
    }
}
