//! The fast path of the materialized view store: folding one new delta into a stored
//! record's field in O(1) (`decided_by` is bounded), when that gives exactly the record a
//! from-scratch resolution would.
//!
//! It applies only to a delta that sorts after everything already deciding the field (or,
//! for lww, fww, min and max, anywhere), that gives the property one non-null value of the
//! right kind, and to the built-in resolvers whose result can be extended without the other
//! inputs. Everything else (negations, transactions, out-of-order deltas for sums and
//! sets, `average`, `concat`, `majority`, a first value for an entity) takes the slow path:
//! re-resolving the entity from the journal.

use std::cmp::Ordering;

use hypha_primitives::{Delta, Primitive, ResolverName, Target};

use crate::lossy::{Record, DECIDERS_KEPT};
use crate::resolve::{compare_numbers, FieldValue};

/// How a fold changes `decided_by`.
enum Decided {
    /// The new delta alone decides.
    Only,
    /// The new delta joins the deciders, last.
    Append,
}

/// The resolver's order of two numbers; `None` when either is not a number.
fn compare(a: &FieldValue, b: &FieldValue) -> Option<Ordering> {
    Some(compare_numbers(a, a.as_number()?, b, b.as_number()?))
}

/// A value's identity in a set: its JSON text.
fn json_text(value: &FieldValue) -> String {
    value.to_json().to_string()
}

/// Folds `delta` (giving `value` to `property`) into `record` if the result is exactly
/// what re-resolving would give; returns false, leaving `record` unchanged, otherwise.
pub(crate) fn absorb(
    record: &mut Record,
    property: &str,
    resolver: ResolverName,
    delta: &Delta,
    value: &Target,
) -> bool {
    // Kept on the slow path: null is a value for some resolvers and skipped by others.
    if matches!(value, Target::Value(Primitive::Null)) {
        return false;
    }
    let Some(field) = record.fields.get_mut(property) else {
        return false;
    };
    if !field.skipped.is_empty() {
        return false;
    }
    let key = (delta.time(), delta.id());
    // The order key of the single decider (lww, fww, min, max): its time is `updated_at`.
    let single = match (field.deciders, field.decided_by.first(), field.updated_at) {
        (1, Some(id), Some(t)) => Some((t, *id)),
        _ => None,
    };
    // True when `key` sorts after every decider (the last one listed has the latest time).
    let after_all = match (field.decided_by.last(), field.updated_at) {
        (None, _) => field.deciders == 0,
        (Some(last), Some(t)) => key > (t, *last),
        (Some(_), None) => false,
    };
    let new = FieldValue::from_target(value);
    let (value, decided) = match resolver {
        ResolverName::Lww | ResolverName::Fww => {
            let replace = match single {
                None if field.deciders == 0 => true,
                None => return false,
                Some(k) => (resolver == ResolverName::Lww) == (key > k),
            };
            if !replace {
                return true;
            }
            (new, Decided::Only)
        }
        ResolverName::Max | ResolverName::Min => {
            let replace = match (single, &field.value) {
                (None, _) if field.deciders == 0 => {
                    if new.as_number().is_none() {
                        return false;
                    }
                    true
                }
                (Some(k), Some(current)) => {
                    let Some(order) = compare(&new, current) else {
                        return false;
                    };
                    let wanted = if resolver == ResolverName::Max {
                        Ordering::Greater
                    } else {
                        Ordering::Less
                    };
                    // Among equal extremes the earliest decides.
                    order == wanted || (order == Ordering::Equal && key < k)
                }
                _ => return false,
            };
            if !replace {
                return true;
            }
            (new, Decided::Only)
        }
        ResolverName::Count | ResolverName::Sum | ResolverName::Set => {
            if !after_all {
                return false;
            }
            use FieldValue::Primitive as P;
            let total = match (resolver, &field.value, &new) {
                (ResolverName::Count, Some(P(Primitive::Int(c))), _) => P(Primitive::Int(c + 1)),
                (ResolverName::Sum, Some(P(Primitive::Int(c))), P(Primitive::Int(n))) => {
                    match c.checked_add(*n) {
                        Some(sum) => P(Primitive::Int(sum)),
                        None => return false,
                    }
                }
                // A float sum folds left in (time, id) order; appending continues it.
                (ResolverName::Sum, Some(P(Primitive::Float(c))), P(n)) => {
                    let n = match n {
                        Primitive::Int(i) => *i as f64,
                        Primitive::Float(f) => *f,
                        _ => return false,
                    };
                    let sum = c + n;
                    if !sum.is_finite() {
                        return false;
                    }
                    P(Primitive::Float(sum))
                }
                (ResolverName::Set, Some(FieldValue::List(items)), _) => {
                    // Identity is the JSON text, as in the resolver: -0.0 and 0.0 differ.
                    let text = json_text(&new);
                    if items.iter().any(|item| json_text(item) == text) {
                        // A later duplicate neither changes the set nor decides it.
                        return true;
                    }
                    let mut items = items.clone();
                    items.push(new);
                    FieldValue::List(items)
                }
                _ => return false,
            };
            (total, Decided::Append)
        }
        _ => return false,
    };
    field.value = Some(value);
    match decided {
        Decided::Only => {
            field.decided_by = vec![delta.id()];
            field.deciders = 1;
        }
        Decided::Append => {
            field.decided_by.push(delta.id());
            field.deciders += 1;
            let excess = field.decided_by.len().saturating_sub(DECIDERS_KEPT);
            field.decided_by.drain(..excess);
        }
    }
    field.updated_at = Some(delta.time());
    record.missing_required.retain(|p| p != property);
    true
}
