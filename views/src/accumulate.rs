//! The fast path of the materialized view store: folding one new delta into a stored
//! record's field in O(1) (plus the length of `decided_by`), when that gives exactly the
//! record a from-scratch resolution would.
//!
//! It applies only to a delta that sorts after everything already deciding the field (or,
//! for lww, fww, min and max, anywhere), that gives the property one non-null value of the
//! right kind, and to the built-in resolvers whose result can be extended without the other
//! inputs. Everything else (negations, transactions, out-of-order deltas for sums and
//! sets, `average`, `concat`, `majority`, a first value for an entity) takes the slow path:
//! re-resolving the entity from the journal.

use hypha_primitives::{Delta, DeltaId, Hlc, Primitive, ResolverName, Target};
use serde_json::Value;

use crate::resolve::FieldValue;

/// What the fast path needs of a field's provenance: its first and last deciding ids, how
/// many there are, and the latest time among them.
struct Deciders {
    count: usize,
    first: Option<DeltaId>,
    last: Option<DeltaId>,
    updated_at: Option<Hlc>,
}

impl Deciders {
    fn read(field: &Value) -> Option<Deciders> {
        let ids = field["decided_by"].as_array()?;
        let parse = |v: Option<&Value>| -> Option<Option<DeltaId>> {
            match v {
                None => Some(None),
                Some(v) => v.as_str()?.parse().ok().map(Some),
            }
        };
        let updated_at = match &field["updated_at"] {
            Value::Null => None,
            v => Some(v.as_str()?.parse().ok()?),
        };
        Some(Deciders {
            count: ids.len(),
            first: parse(ids.first())?,
            last: parse(ids.last())?,
            updated_at,
        })
    }

    /// The order key of the single decider (lww, fww, min, max): its time is `updated_at`.
    fn single(&self) -> Option<(Hlc, DeltaId)> {
        match (self.count, self.first, self.updated_at) {
            (1, Some(id), Some(t)) => Some((t, id)),
            _ => None,
        }
    }

    /// True when `key` sorts after every decider (the last decider has the latest time).
    fn is_after_all(&self, key: (Hlc, DeltaId)) -> bool {
        match (self.last, self.updated_at) {
            (None, _) => self.count == 0,
            (Some(last), Some(t)) => key > (t, last),
            (Some(_), None) => false,
        }
    }
}

/// How a fold changes `decided_by`.
enum Decided {
    /// The new delta alone decides.
    Only(DeltaId),
    /// The new delta joins the deciders, last.
    Append(DeltaId),
}

fn number(value: &Value) -> Option<f64> {
    value.as_f64()
}

/// Folds `delta` (giving `value` to `property`) into `record` if the result is exactly
/// what re-resolving would give; returns false, leaving `record` unchanged, otherwise.
pub(crate) fn absorb(
    record: &mut Value,
    property: &str,
    resolver: ResolverName,
    delta: &Delta,
    value: &Target,
) -> bool {
    // A null value is indistinguishable from "no value" in the record's JSON.
    if matches!(value, Target::Value(Primitive::Null)) {
        return false;
    }
    let Some(field) = record.get("fields").and_then(|f| f.get(property)) else {
        return false;
    };
    if field["skipped"].as_array().is_none_or(|s| !s.is_empty()) {
        return false;
    }
    let Some(deciders) = Deciders::read(field) else {
        return false;
    };
    let key = (delta.time(), delta.id());
    let new = FieldValue::from_target(value).to_json();
    let current = &field["value"];
    let updated = match resolver {
        ResolverName::Lww | ResolverName::Fww => {
            let replace = match deciders.single() {
                None if deciders.count == 0 => true,
                None => return false,
                Some(k) => (resolver == ResolverName::Lww) == (key > k),
            };
            replace.then(|| (new, Decided::Only(delta.id()), delta.time()))
        }
        ResolverName::Max | ResolverName::Min => {
            let Some(n) = number(&new) else { return false };
            let replace = match (deciders.single(), number(current)) {
                (None, _) if deciders.count == 0 => true,
                (Some(k), Some(c)) => {
                    // Integers compare exactly, as in the resolver.
                    let order = match (new.as_i64(), current.as_i64()) {
                        (Some(x), Some(y)) => x.cmp(&y),
                        _ => n.partial_cmp(&c).unwrap_or(std::cmp::Ordering::Equal),
                    };
                    let better = if resolver == ResolverName::Max {
                        order == std::cmp::Ordering::Greater
                    } else {
                        order == std::cmp::Ordering::Less
                    };
                    // Among equal extremes the earliest decides.
                    better || (order == std::cmp::Ordering::Equal && key < k)
                }
                _ => return false,
            };
            replace.then(|| (new, Decided::Only(delta.id()), delta.time()))
        }
        ResolverName::Count | ResolverName::Sum | ResolverName::Set => {
            if !deciders.is_after_all(key) {
                return false;
            }
            let total = match resolver {
                ResolverName::Count => match current.as_i64() {
                    Some(c) => Value::from(c + 1),
                    None => return false,
                },
                ResolverName::Sum => match (current, &new) {
                    (Value::Number(c), Value::Number(n)) if c.is_i64() && n.is_i64() => match c
                        .as_i64()
                        .and_then(|c| n.as_i64().and_then(|n| c.checked_add(n)))
                    {
                        Some(sum) => Value::from(sum),
                        None => return false,
                    },
                    // A float sum folds left in (time, id) order; appending continues it.
                    (Value::Number(c), Value::Number(n)) if c.is_f64() => {
                        match serde_json::Number::from_f64(
                            c.as_f64().unwrap_or(0.0) + n.as_f64().unwrap_or(0.0),
                        ) {
                            Some(sum) => Value::Number(sum),
                            None => return false,
                        }
                    }
                    _ => return false,
                },
                _ => {
                    let Some(items) = current.as_array() else {
                        return false;
                    };
                    // Identity is the JSON text, as in the resolver: -0.0 and 0.0 differ.
                    let text = new.to_string();
                    if items.iter().map(Value::to_string).any(|item| item == text) {
                        // A later duplicate neither changes the set nor decides it.
                        return true;
                    }
                    let mut items = items.clone();
                    items.push(new);
                    Value::Array(items)
                }
            };
            Some((total, Decided::Append(delta.id()), delta.time()))
        }
        _ => return false,
    };
    if let Some((value, decided, time)) = updated {
        let field = &mut record["fields"][property];
        field["value"] = value;
        match decided {
            Decided::Only(id) => {
                field["decided_by"] = Value::Array(vec![Value::String(id.to_string())]);
            }
            Decided::Append(id) => {
                if let Some(ids) = field["decided_by"].as_array_mut() {
                    ids.push(Value::String(id.to_string()));
                }
            }
        }
        field["updated_at"] = Value::String(time.to_string());
        if let Some(missing) = record["missing_required"].as_array_mut() {
            missing.retain(|p| p.as_str() != Some(property));
        }
    }
    true
}
