//! Resolvers: how a property's live deltas collapse into one value.
//!
//! Every resolver sees its inputs in the one total order every node shares — HLC time, then
//! delta id — so the result depends only on the set of live deltas, never on arrival order.

use std::collections::BTreeMap;
use std::fmt;

use hypha_primitives::{AuthorKey, DeltaId, EntityId, Hlc, Primitive, ResolverName, Target};
use serde_json::{json, Value};

use crate::lossy::{Field, Record};

/// A resolved value.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldValue {
    /// A primitive, with its type kept (0, false and null are values).
    Primitive(Primitive),
    /// A reference to an entity (not followed).
    Entity(EntityId),
    /// A reference to a delta.
    Delta(DeltaId),
    /// Several values (`set`).
    List(Vec<FieldValue>),
    /// A referenced entity, resolved by its schema (nested resolution).
    Record(Box<Record>),
}

impl FieldValue {
    /// The value a pointer target stands for.
    pub fn from_target(target: &Target) -> FieldValue {
        match target {
            Target::Value(p) => FieldValue::Primitive(p.clone()),
            Target::Entity(e) => FieldValue::Entity(e.clone()),
            Target::Delta(d) => FieldValue::Delta(*d),
        }
    }

    /// The JSON form: primitives as JSON values, references as `{"entity": id}` or
    /// `{"delta": id}`, lists as arrays, nested records as records.
    pub fn to_json(&self) -> Value {
        match self {
            FieldValue::Primitive(p) => p.to_json(),
            FieldValue::Entity(e) => json!({ "entity": e.as_str() }),
            FieldValue::Delta(d) => json!({ "delta": d.to_string() }),
            FieldValue::List(items) => {
                Value::Array(items.iter().map(FieldValue::to_json).collect())
            }
            FieldValue::Record(r) => r.to_json(),
        }
    }

    pub(crate) fn as_number(&self) -> Option<f64> {
        match self {
            FieldValue::Primitive(Primitive::Int(i)) => Some(*i as f64),
            FieldValue::Primitive(Primitive::Float(f)) => Some(*f),
            _ => None,
        }
    }

    /// A key equal for equal values and different for different ones (1 and 1.0 differ).
    fn identity(&self) -> String {
        self.to_json().to_string()
    }
}

/// The order in which last-write-wins ranks deltas: time, the tie-break key, then id.
type LwwKey = (Hlc, Vec<u8>, DeltaId);

/// Majority's count for one value: occurrences, the value, its latest lww key, its deltas.
type Tally = (usize, FieldValue, LwwKey, Vec<DeltaId>);

/// Orders two numbers: integers exactly (2^53 and 2^53 + 1 differ), anything involving a
/// float as f64. The numbers are finite, so the order is total.
pub(crate) fn compare_numbers(
    a: &FieldValue,
    a_f64: f64,
    b: &FieldValue,
    b_f64: f64,
) -> std::cmp::Ordering {
    match (a, b) {
        (FieldValue::Primitive(Primitive::Int(x)), FieldValue::Primitive(Primitive::Int(y))) => {
            x.cmp(y)
        }
        _ => a_f64
            .partial_cmp(&b_f64)
            .unwrap_or(std::cmp::Ordering::Equal),
    }
}

/// One live delta filed under the property being resolved.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    /// The delta.
    pub id: DeltaId,
    /// Its author.
    pub author: AuthorKey,
    /// Its time.
    pub time: Hlc,
    /// The value it gives the property, if it gives exactly one (see `VIEWS.md`).
    pub value: Option<&'a Target>,
}

/// A delta a resolver could not use, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The delta.
    pub id: DeltaId,
    /// Why it was skipped ("not a number", …).
    pub reason: String,
}

/// What a resolver decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resolution {
    /// The value; `None` when the property has no value (absent, not null).
    pub value: Option<FieldValue>,
    /// The deltas that decided it.
    pub decided_by: Vec<DeltaId>,
    /// Deltas that were skipped, with the reason.
    pub skipped: Vec<Skipped>,
}

/// A resolver: collapses a property's live deltas, in (time, id) order, into one value.
///
/// A resolver may depend on other properties of the same record; they are resolved first
/// and passed in. Dependencies that are missing or form a cycle are rejected when the
/// schema is registered.
pub trait Resolve: Send + Sync + fmt::Debug {
    /// Other properties whose resolved fields this resolver reads.
    fn dependencies(&self) -> &[String] {
        &[]
    }

    /// Resolves `inputs` (sorted by time, then id).
    fn resolve(&self, inputs: &[Input<'_>], dependencies: &BTreeMap<String, Field>) -> Resolution;
}

/// How last-write-wins breaks a tie between deltas with the same HLC time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TieBreak {
    /// The larger delta id wins (the default).
    #[default]
    DeltaId,
    /// The larger author key wins, then the larger delta id.
    Author,
    /// The larger value (by its JSON text) wins, then the larger delta id.
    Value,
}

/// The built-in resolvers named in schemas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Builtin {
    name: ResolverName,
    tie_break: TieBreak,
}

impl Builtin {
    /// The built-in resolver with this name and the default tie-break.
    pub fn new(name: ResolverName) -> Self {
        Self {
            name,
            tie_break: TieBreak::default(),
        }
    }

    /// The same resolver with another tie-break (used by `lww` and `majority`).
    pub fn with_tie_break(mut self, tie_break: TieBreak) -> Self {
        self.tie_break = tie_break;
        self
    }

    /// The resolver's name.
    pub fn name(&self) -> ResolverName {
        self.name
    }
}

/// The inputs that carry one value, with the rest reported as skipped.
fn valued<'i, 'a>(
    inputs: &'i [Input<'a>],
    skipped: &mut Vec<Skipped>,
) -> Vec<(&'i Input<'a>, FieldValue)> {
    inputs
        .iter()
        .filter_map(|input| match input.value {
            Some(target) => Some((input, FieldValue::from_target(target))),
            None => {
                skipped.push(Skipped {
                    id: input.id,
                    reason: "gives no single value".into(),
                });
                None
            }
        })
        .collect()
}

fn numeric<'i, 'a>(
    values: Vec<(&'i Input<'a>, FieldValue)>,
    skipped: &mut Vec<Skipped>,
) -> Vec<(&'i Input<'a>, FieldValue, f64)> {
    values
        .into_iter()
        .filter_map(|(input, value)| match value.as_number() {
            Some(n) => Some((input, value, n)),
            None => {
                skipped.push(Skipped {
                    id: input.id,
                    reason: "not a number".into(),
                });
                None
            }
        })
        .collect()
}

impl Builtin {
    /// The key under which ties at equal time are broken; larger wins.
    fn tie_key(&self, input: &Input<'_>, value: &FieldValue) -> LwwKey {
        let extra = match self.tie_break {
            TieBreak::DeltaId => Vec::new(),
            TieBreak::Author => input.author.as_bytes().to_vec(),
            TieBreak::Value => value.identity().into_bytes(),
        };
        (input.time, extra, input.id)
    }
}

impl Resolve for Builtin {
    fn resolve(&self, inputs: &[Input<'_>], _: &BTreeMap<String, Field>) -> Resolution {
        let mut skipped = Vec::new();
        let one = |input: &Input<'_>, value: FieldValue, skipped: Vec<Skipped>| Resolution {
            value: Some(value),
            decided_by: vec![input.id],
            skipped,
        };
        match self.name {
            ResolverName::Lww => {
                let values = valued(inputs, &mut skipped);
                match values
                    .into_iter()
                    .max_by(|(a, av), (b, bv)| self.tie_key(a, av).cmp(&self.tie_key(b, bv)))
                {
                    Some((input, value)) => one(input, value, skipped),
                    None => Resolution {
                        skipped,
                        ..Default::default()
                    },
                }
            }
            ResolverName::Fww => match valued(inputs, &mut skipped).into_iter().next() {
                Some((input, value)) => one(input, value, skipped),
                None => Resolution {
                    skipped,
                    ..Default::default()
                },
            },
            ResolverName::Max | ResolverName::Min => {
                let values = numeric(valued(inputs, &mut skipped), &mut skipped);
                let want_max = self.name == ResolverName::Max;
                // The earliest of equal extremes decides, so the answer is order-free.
                let best = values.into_iter().reduce(|best, next| {
                    let order = compare_numbers(&next.1, next.2, &best.1, best.2);
                    let better = if want_max {
                        order == std::cmp::Ordering::Greater
                    } else {
                        order == std::cmp::Ordering::Less
                    };
                    if better {
                        next
                    } else {
                        best
                    }
                });
                match best {
                    Some((input, value, _)) => one(input, value, skipped),
                    None => Resolution {
                        skipped,
                        ..Default::default()
                    },
                }
            }
            ResolverName::Sum => {
                let values = numeric(valued(inputs, &mut skipped), &mut skipped);
                let decided_by = values.iter().map(|(i, _, _)| i.id).collect();
                let ints: Option<i64> = values.iter().try_fold(0i64, |acc, (_, v, _)| match v {
                    FieldValue::Primitive(Primitive::Int(i)) => acc.checked_add(*i),
                    _ => None,
                });
                let value = match ints {
                    Some(total) => Primitive::Int(total),
                    None => Primitive::Float(values.iter().map(|(_, _, n)| n).sum()),
                };
                Resolution {
                    value: Some(FieldValue::Primitive(value)),
                    decided_by,
                    skipped,
                }
            }
            ResolverName::Average => {
                let values = numeric(valued(inputs, &mut skipped), &mut skipped);
                if values.is_empty() {
                    return Resolution {
                        skipped,
                        ..Default::default()
                    };
                }
                let mean = values.iter().map(|(_, _, n)| n).sum::<f64>() / values.len() as f64;
                Resolution {
                    value: Some(FieldValue::Primitive(Primitive::Float(mean))),
                    decided_by: values.iter().map(|(i, _, _)| i.id).collect(),
                    skipped,
                }
            }
            ResolverName::Count => Resolution {
                value: Some(FieldValue::Primitive(Primitive::Int(inputs.len() as i64))),
                decided_by: inputs.iter().map(|i| i.id).collect(),
                skipped,
            },
            ResolverName::Concat => {
                let mut text = String::new();
                let mut seen = std::collections::HashSet::new();
                let mut decided_by = Vec::new();
                for (input, value) in valued(inputs, &mut skipped) {
                    match value {
                        FieldValue::Primitive(Primitive::String(s)) => {
                            if seen.insert(s.clone()) {
                                text.push_str(&s);
                                decided_by.push(input.id);
                            }
                        }
                        _ => skipped.push(Skipped {
                            id: input.id,
                            reason: "not a string".into(),
                        }),
                    }
                }
                Resolution {
                    value: Some(FieldValue::Primitive(Primitive::String(text))),
                    decided_by,
                    skipped,
                }
            }
            ResolverName::Set => {
                let mut items = Vec::new();
                let mut seen = std::collections::HashSet::new();
                let mut decided_by = Vec::new();
                for (input, value) in valued(inputs, &mut skipped) {
                    if seen.insert(value.identity()) {
                        items.push(value);
                        decided_by.push(input.id);
                    }
                }
                Resolution {
                    value: Some(FieldValue::List(items)),
                    decided_by,
                    skipped,
                }
            }
            ResolverName::Majority => {
                // value identity → (count, the value, its lww key, its deltas)
                let mut tally: BTreeMap<String, Tally> = BTreeMap::new();
                for (input, value) in valued(inputs, &mut skipped) {
                    let key = self.tie_key(input, &value);
                    let entry = tally
                        .entry(value.identity())
                        .or_insert_with(|| (0, value, key.clone(), Vec::new()));
                    entry.0 += 1;
                    entry.2 = entry.2.clone().max(key);
                    entry.3.push(input.id);
                }
                match tally
                    .into_values()
                    .max_by(|a, b| (a.0, &a.2).cmp(&(b.0, &b.2)))
                {
                    Some((_, value, _, decided_by)) => Resolution {
                        value: Some(value),
                        decided_by,
                        skipped,
                    },
                    None => Resolution {
                        skipped,
                        ..Default::default()
                    },
                }
            }
            _ => Resolution {
                skipped: inputs
                    .iter()
                    .map(|i| Skipped {
                        id: i.id,
                        reason: format!("resolver {} is not supported", self.name),
                    })
                    .collect(),
                ..Default::default()
            },
        }
    }
}
