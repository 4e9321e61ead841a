//! The generated output types: one object per registered schema (with `_meta`), its
//! connection, and the fixed types (`Meta`, `WriteResult`, `TransactionResult`,
//! `DeltaPage`, `NodeInfo`, `PointerInput`).

use std::collections::BTreeMap;

use async_graphql::dynamic::{
    Field, FieldFuture, FieldValue, InputObject, InputValue, Object, TypeRef,
};
use async_graphql::Value as GqlValue;
use hypha_primitives::{DeltaId, EntityId, Hlc, ResolverName, Schema as HyphaSchema, ValueType};
use hypha_views::{FieldValue as HyphaValue, Record};
use serde_json::{json, Value};

use super::args::{api_error, confirm_at_arg, gql_error, graphql_name, shared, to_gql};
use super::Shared;
use crate::api::RecordPage;

/// A record as a resolver's parent value.
pub(super) struct RecordValue {
    pub(super) record: Record,
}

/// The GraphQL type of a property.
pub(super) fn property_type(
    spec: &hypha_primitives::PropertySpec,
    names: &BTreeMap<String, String>,
) -> TypeRef {
    fn scalar(value_type: &ValueType, names: &BTreeMap<String, String>) -> TypeRef {
        match value_type {
            ValueType::String => TypeRef::named(TypeRef::STRING),
            ValueType::Number => TypeRef::named(TypeRef::FLOAT),
            ValueType::Bool => TypeRef::named(TypeRef::BOOLEAN),
            ValueType::Any => TypeRef::named("JSON"),
            ValueType::Reference(t) => match names.get(t) {
                Some(name) => TypeRef::named(name.clone()),
                None => TypeRef::named("JSON"),
            },
            ValueType::List(inner) => TypeRef::List(Box::new(scalar(inner, names))),
        }
    }
    match (&spec.value_type, spec.resolver) {
        (ValueType::List(_), _) => scalar(&spec.value_type, names),
        // A set resolves to a list of the property's values.
        (t, ResolverName::Set) => TypeRef::List(Box::new(scalar(t, names))),
        (t, _) => scalar(t, names),
    }
}

/// A resolved value for GraphQL: primitives as themselves, references followed when the
/// property's type names a registered schema.
pub(super) fn value_out<'a>(
    value: &HyphaValue,
    value_type: &ValueType,
    records: &[(EntityId, Option<Record>)],
) -> FieldValue<'a> {
    match value {
        HyphaValue::List(items) => {
            let inner = match value_type {
                ValueType::List(inner) => inner.as_ref(),
                t => t,
            };
            FieldValue::list(items.iter().map(|v| value_out(v, inner, records)))
        }
        HyphaValue::Entity(e) => match records.iter().find(|(id, _)| id == e) {
            Some((_, Some(record))) => FieldValue::owned_any(RecordValue {
                record: record.clone(),
            }),
            _ => FieldValue::value(to_gql(json!({"entity": e.as_str()}))),
        },
        other => FieldValue::value(to_gql(other.to_json())),
    }
}

/// Entities referenced by a field's value.
pub(super) fn referenced(value: &HyphaValue, out: &mut Vec<EntityId>) {
    match value {
        HyphaValue::Entity(e) => out.push(e.clone()),
        HyphaValue::List(items) => items.iter().for_each(|v| referenced(v, out)),
        _ => {}
    }
}

/// What `_meta` answers about a field or a whole record.
pub(super) struct Meta {
    provisional: bool,
    confidence: u32,
    confirm_at: u32,
    decided_by: Vec<DeltaId>,
    deciders: usize,
    updated_at: Option<Hlc>,
}

/// The `_meta` of a field or a whole record of `entity_type`: confidence as the network
/// knows it now (joined at read, see `crate::api::confidence`), and provisional against
/// the threshold (the read's `confirm_at`, else the type's schema's, else the node's).
pub(super) fn meta(
    shared: &Shared,
    entity_type: &str,
    fields: Vec<&hypha_views::Field>,
    confirm_at: Option<u32>,
) -> Result<Meta, async_graphql::Error> {
    let mut decided_by: Vec<DeltaId> = Vec::new();
    let mut deciders = 0;
    let mut updated_at: Option<Hlc> = None;
    for field in &fields {
        decided_by.extend(field.decided_by.iter().copied());
        deciders += field.deciders;
        updated_at = updated_at.max(field.updated_at);
    }
    decided_by.sort();
    decided_by.dedup();
    let known = shared.api.confidences(&decided_by).map_err(api_error)?;
    let confidence = decided_by
        .iter()
        .map(|id| known.get(id).map_or(0, |c| c.peers))
        .min()
        .unwrap_or(0);
    let confirm_at = shared
        .api
        .confirm_at(shared.types.get(entity_type), confirm_at);
    Ok(Meta {
        provisional: confidence < confirm_at,
        confidence,
        confirm_at,
        decided_by,
        deciders,
        updated_at,
    })
}

/// The `Meta` type: each field reads its part of a [`Meta`] (the ids and the time are
/// rendered only when asked for).
pub(super) fn meta_type() -> Object {
    let field = |name: &'static str, ty: TypeRef, read: fn(&Meta) -> GqlValue| {
        Field::new(name, ty, move |ctx| {
            FieldFuture::new(async move {
                let meta = ctx.parent_value.try_downcast_ref::<Meta>()?;
                Ok(Some(FieldValue::value(read(meta))))
            })
        })
    };
    Object::new("Meta")
        .description("How sure this node is of a value: provisional until enough peers hold what decided it.")
        .field(field("provisional", TypeRef::named_nn(TypeRef::BOOLEAN), |m| {
            GqlValue::from(m.provisional)
        }))
        .field(field("confidence", TypeRef::named_nn(TypeRef::INT), |m| {
            GqlValue::from(m.confidence)
        }))
        .field(field("confirmAt", TypeRef::named_nn(TypeRef::INT), |m| {
            GqlValue::from(m.confirm_at)
        }))
        .field(field("decidedBy", TypeRef::named_nn_list_nn(TypeRef::ID), |m| {
            GqlValue::List(m.decided_by.iter().map(|id| GqlValue::from(id.to_string())).collect())
        }))
        .field(field("deciders", TypeRef::named_nn(TypeRef::INT), |m| {
            GqlValue::from(m.deciders as u64)
        }))
        .field(field("updatedAt", TypeRef::named(TypeRef::STRING), |m| {
            m.updated_at.map_or(GqlValue::Null, |t| GqlValue::from(t.to_string()))
        }))
}

/// The object type of one registered schema.
pub(super) fn record_type(schema: &HyphaSchema, names: &BTreeMap<String, String>) -> Object {
    let name = names[schema.entity_type()].clone();
    let mut object = Object::new(name.clone())
        .description(format!(
            "Records of entity type {:?}.",
            schema.entity_type()
        ))
        .field(Field::new("id", TypeRef::named_nn(TypeRef::ID), |ctx| {
            FieldFuture::new(async move {
                let parent = ctx.parent_value.try_downcast_ref::<RecordValue>()?;
                Ok(Some(FieldValue::value(
                    parent.record.entity.as_str().to_owned(),
                )))
            })
        }))
        .field(
            Field::new("_meta", TypeRef::named_nn("Meta"), |ctx| {
                FieldFuture::new(async move {
                    let shared = shared(&ctx)?;
                    let parent = ctx.parent_value.try_downcast_ref::<RecordValue>()?;
                    let fields: Vec<&hypha_views::Field> = match ctx.args.get("field") {
                        Some(f) if !f.is_null() => {
                            let name = f.string()?;
                            vec![parent
                                .record
                                .fields
                                .get(name)
                                .ok_or_else(|| gql_error(format!("no field {name:?}")))?]
                        }
                        _ => parent.record.fields.values().collect(),
                    };
                    let confirm_at = confirm_at_arg(&ctx)?;
                    let meta = meta(shared, &parent.record.entity_type, fields, confirm_at)?;
                    Ok(Some(FieldValue::owned_any(meta)))
                })
            })
            .argument(InputValue::new("field", TypeRef::named(TypeRef::STRING)))
            .argument(InputValue::new("confirmAt", TypeRef::named(TypeRef::INT)))
            .description("Provenance and confidence of the record, or of one field; provisional until confirmAt peers hold what decided it (default: the type's schema's confirm_at, else the node's --confirm-at)."),
        );
    let mut used: Vec<String> = vec!["id".into(), "_meta".into()];
    for (property, spec) in schema.properties() {
        let field = graphql_name(property);
        if used.contains(&field) {
            continue;
        }
        used.push(field.clone());
        let property = property.clone();
        let value_type = spec.value_type.clone();
        let target = match &spec.value_type {
            ValueType::Reference(t) => Some(t.clone()),
            ValueType::List(inner) => match inner.as_ref() {
                ValueType::Reference(t) => Some(t.clone()),
                _ => None,
            },
            _ => None,
        }
        .filter(|t| names.contains_key(t));
        object = object.field(Field::new(field, property_type(spec, names), move |ctx| {
            let property = property.clone();
            let value_type = value_type.clone();
            let target = target.clone();
            FieldFuture::new(async move {
                let parent = ctx.parent_value.try_downcast_ref::<RecordValue>()?;
                let Some(value) = parent
                    .record
                    .fields
                    .get(&property)
                    .and_then(|f| f.value.clone())
                else {
                    return Ok(None);
                };
                // References to a registered type are followed (the query depth limit
                // bounds how far).
                let mut records = Vec::new();
                if let Some(target) = &target {
                    let shared = shared(&ctx)?;
                    let mut ids = Vec::new();
                    referenced(&value, &mut ids);
                    for id in ids {
                        let record = shared.api.record(target, id.as_str()).map_err(api_error)?;
                        records.push((id, record));
                    }
                }
                Ok(Some(value_out(&value, &value_type, &records)))
            })
        }));
    }
    object
}

/// `TConnection`: a page of `T` records with its end cursor.
pub(super) fn connection_type(name: &str) -> Object {
    let connection = format!("{name}Connection");
    Object::new(connection)
        .field(Field::new(
            "nodes",
            TypeRef::named_nn_list_nn(name.to_owned()),
            |ctx| {
                FieldFuture::new(async move {
                    let page = ctx.parent_value.try_downcast_ref::<RecordPage>()?;
                    Ok(Some(FieldValue::list(page.records.iter().map(|r| {
                        FieldValue::owned_any(RecordValue { record: r.clone() })
                    }))))
                })
            },
        ))
        .field(Field::new(
            "endCursor",
            TypeRef::named(TypeRef::STRING),
            |ctx| {
                FieldFuture::new(async move {
                    let page = ctx.parent_value.try_downcast_ref::<RecordPage>()?;
                    Ok(page.end_cursor.clone().map(FieldValue::value))
                })
            },
        ))
        .field(Field::new(
            "hasNextPage",
            TypeRef::named_nn(TypeRef::BOOLEAN),
            |ctx| {
                FieldFuture::new(async move {
                    let page = ctx.parent_value.try_downcast_ref::<RecordPage>()?;
                    Ok(Some(FieldValue::value(page.has_next)))
                })
            },
        ))
}

/// `WriteResult`: what a mutation answers.
pub(super) fn write_result_type() -> Object {
    let field = |name: &'static str, ty: TypeRef| {
        Field::new(name, ty, move |ctx| {
            FieldFuture::new(async move {
                let answer = ctx.parent_value.try_downcast_ref::<Value>()?;
                Ok(Some(FieldValue::value(to_gql(answer[name].clone()))))
            })
        })
    };
    Object::new("WriteResult")
        .description("A stored delta and how far it had spread when the mutation answered.")
        .field(field("id", TypeRef::named_nn(TypeRef::ID)))
        .field(field("seq", TypeRef::named(TypeRef::INT)))
        .field(field("confidence", TypeRef::named_nn(TypeRef::INT)))
        .field(field("reached", TypeRef::named_nn(TypeRef::BOOLEAN)))
}

/// An object whose fields read the same keys of a JSON parent value.
pub(super) fn json_object(name: &str, fields: &[(&'static str, TypeRef)]) -> Object {
    let mut object = Object::new(name);
    for (field, ty) in fields {
        let field = *field;
        object = object.field(Field::new(field, ty.clone(), move |ctx| {
            FieldFuture::new(async move {
                let value = ctx.parent_value.try_downcast_ref::<Value>()?;
                Ok(Some(FieldValue::value(to_gql(value[field].clone()))))
            })
        }));
    }
    object
}

/// The fixed types every generated schema has, besides the per-schema ones.
pub(super) fn fixed_types() -> (Vec<Object>, InputObject) {
    let transaction_result = Object::new("TransactionResult")
        .field(Field::new(
            "transaction",
            TypeRef::named_nn(TypeRef::ID),
            |ctx| {
                FieldFuture::new(async move {
                    let v = ctx.parent_value.try_downcast_ref::<Value>()?;
                    Ok(Some(FieldValue::value(to_gql(v["transaction"].clone()))))
                })
            },
        ))
        .field(Field::new(
            "writes",
            TypeRef::named_nn_list_nn("WriteResult"),
            |ctx| {
                FieldFuture::new(async move {
                    let v = ctx.parent_value.try_downcast_ref::<Value>()?;
                    let writes = v["writes"].as_array().cloned().unwrap_or_default();
                    Ok(Some(FieldValue::list(
                        writes.into_iter().map(FieldValue::owned_any),
                    )))
                })
            },
        ));
    let delta_page = json_object(
        "DeltaPage",
        &[
            ("deltas", TypeRef::named_nn_list_nn("JSON")),
            ("cursor", TypeRef::named(TypeRef::STRING)),
            ("hasMore", TypeRef::named_nn(TypeRef::BOOLEAN)),
        ],
    );
    let node_info = json_object(
        "NodeInfo",
        &[
            ("id", TypeRef::named_nn(TypeRef::ID)),
            ("version", TypeRef::named_nn(TypeRef::STRING)),
            ("deltas", TypeRef::named_nn(TypeRef::INT)),
            ("storedBytes", TypeRef::named_nn(TypeRef::INT)),
        ],
    );
    let pointer_input = InputObject::new("PointerInput")
        .description("One pointer: a local context and exactly one of entity, delta or value.")
        .field(InputValue::new(
            "localContext",
            TypeRef::named_nn(TypeRef::STRING),
        ))
        .field(InputValue::new("entity", TypeRef::named(TypeRef::STRING)))
        .field(InputValue::new("delta", TypeRef::named(TypeRef::ID)))
        .field(InputValue::new("value", TypeRef::named("JSON")))
        .field(InputValue::new(
            "targetContext",
            TypeRef::named(TypeRef::STRING),
        ));
    let objects = vec![
        meta_type(),
        write_result_type(),
        transaction_result,
        delta_page,
        node_info,
    ];
    (objects, pointer_input)
}
