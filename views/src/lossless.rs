//! The lossless view of an entity: every live delta filed under each of its properties.

use std::collections::BTreeMap;
use std::sync::Arc;

use hypha_primitives::{Delta, EntityId, Target};
use serde_json::{json, Map, Value};

/// A live delta filed under one property of an entity.
#[derive(Clone, Debug, PartialEq)]
pub struct Filed {
    /// The delta.
    pub delta: Arc<Delta>,
    /// The local context of the pointer that filed it here (how the delta refers to the
    /// entity, e.g. "user").
    pub filed_as: String,
    /// The value the delta gives the property, if it gives exactly one.
    pub value: Option<Target>,
}

/// The index of the pointer filing `delta` under `entity`.`property`, if any.
fn filing_pointer(delta: &Delta, entity: &EntityId, property: &str) -> Option<usize> {
    delta.pointers().iter().position(|p| {
        matches!(&p.target, Target::Entity(e) if e == entity)
            && p.target_context.as_deref() == Some(property)
    })
}

/// The value `delta` gives `entity`.`property`: `None` if the delta is not filed there,
/// `Some(None)` if it is filed there but gives no single value (see `VIEWS.md`).
pub(crate) fn value_filed_under<'d>(
    delta: &'d Delta,
    entity: &EntityId,
    property: &str,
) -> Option<Option<&'d Target>> {
    let filing = filing_pointer(delta, entity, property)?;
    let others = delta
        .pointers()
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != filing)
        .map(|(_, p)| p);
    let named = others.clone().find(|p| p.local_context == property);
    let mut rest = others;
    let only = match (rest.next(), rest.next()) {
        (Some(p), None) => Some(p),
        _ => None,
    };
    Some(named.or(only).map(|p| &p.target))
}

impl Filed {
    /// Files `delta` under `entity`.`property`, or `None` if no pointer of it does.
    pub(crate) fn new(delta: Arc<Delta>, entity: &EntityId, property: &str) -> Option<Filed> {
        let filing = filing_pointer(&delta, entity, property)?;
        let value = value_filed_under(&delta, entity, property)
            .flatten()
            .cloned();
        let filed_as = delta.pointers()[filing].local_context.clone();
        Some(Filed {
            delta,
            filed_as,
            value,
        })
    }

    /// The local contexts of the delta's other pointers (how it refers to everything else).
    pub fn referenced_as(&self) -> Vec<&str> {
        let mut skipped_filing = false;
        self.delta
            .pointers()
            .iter()
            .filter(|p| {
                if !skipped_filing && p.local_context == self.filed_as {
                    skipped_filing = true;
                    return false;
                }
                true
            })
            .map(|p| p.local_context.as_str())
            .collect()
    }

    /// JSON: id, author, time, `as`, `value` (when single) and the other pointers.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("id".into(), self.delta.id().to_string().into());
        map.insert("author".into(), self.delta.author().to_string().into());
        map.insert("time".into(), self.delta.time().to_string().into());
        map.insert("as".into(), self.filed_as.clone().into());
        if let Some(v) = &self.value {
            map.insert("value".into(), crate::FieldValue::from_target(v).to_json());
        }
        map.insert("referenced_as".into(), json!(self.referenced_as()));
        Value::Object(map)
    }
}

/// Every live delta filed under each property of one entity, in (time, id) order.
#[derive(Clone, Debug, PartialEq)]
pub struct LosslessView {
    /// The entity.
    pub entity: EntityId,
    /// Property → its live deltas; properties with none are absent.
    pub properties: BTreeMap<String, Vec<Filed>>,
}

impl LosslessView {
    /// JSON: `{"entity": id, "properties": {property: [filed…]}}`.
    pub fn to_json(&self) -> Value {
        let props: Map<String, Value> = self
            .properties
            .iter()
            .map(|(p, filed)| {
                (
                    p.clone(),
                    Value::Array(filed.iter().map(Filed::to_json).collect()),
                )
            })
            .collect();
        json!({ "entity": self.entity.as_str(), "properties": props })
    }
}
