//! The query root: a field for one record and a connection per registered type, and the
//! generic queries (`entity`, `delta`, `deltas`, `whoHas`, `schemas`, `peers`, `node`).

use std::collections::BTreeMap;

use async_graphql::dynamic::{Field, FieldFuture, FieldValue, InputValue, Object, TypeRef};
use hypha_delta_store::StoredDelta;
use hypha_primitives::{EntityId, Schema as HyphaSchema};
use serde_json::{json, Value};

use super::args::{
    api_error, cursor_arg, field_name, filter_arg, first_arg, id_arg, shared, text_arg, to_gql,
};
use super::types::{connection_type, record_type, RecordValue};

/// Query fields taken by the generic queries, which no generated type may take.
const RESERVED: [&str; 7] = [
    "entity", "delta", "deltas", "schemas", "peers", "node", "whoHas",
];

/// Adds `user(id)` and `users(filter, first, after)` for each registered type to `query`,
/// and answers the object types they need. A type whose names collide with another's (or
/// with a generic query) gets none, with a warning.
pub(super) fn typed_queries(
    mut query: Object,
    types: &BTreeMap<String, HyphaSchema>,
    names: &BTreeMap<String, String>,
) -> (Object, Vec<Object>) {
    let mut objects = Vec::new();
    let mut taken: Vec<String> = RESERVED.iter().map(|s| s.to_string()).collect();
    for (entity_type, schema) in types {
        let name = names[entity_type].clone();
        let one = field_name(&name);
        let many = format!("{one}s");
        if taken.contains(&one)
            || taken.contains(&many)
            || names.values().filter(|n| **n == name).count() > 1
        {
            tracing::warn!(
                entity_type,
                "no GraphQL type: its name collides with another"
            );
            continue;
        }
        taken.push(one.clone());
        taken.push(many.clone());
        objects.push(record_type(schema, names));
        objects.push(connection_type(&name));
        let t = entity_type.clone();
        query = query.field(
            Field::new(one, TypeRef::named(name.clone()), move |ctx| {
                let t = t.clone();
                FieldFuture::new(async move {
                    let shared = shared(&ctx)?;
                    let id = ctx.args.try_get("id")?.string()?;
                    let at = crate::api::as_of(text_arg(&ctx, "asOf")?).map_err(api_error)?;
                    let record = shared.api.record_at(&t, id, at).await.map_err(api_error)?;
                    Ok(record.map(|record| FieldValue::owned_any(RecordValue { record })))
                })
            })
            .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
            .argument(InputValue::new("asOf", TypeRef::named(TypeRef::STRING)))
            .description("The record of an entity: now, or with asOf as it stood at an HLC time (\"MS\" or \"MS.LOGICAL\") or arrival position (\"@N\"), resolved from the journal with the schema in force then."),
        );
        let t = entity_type.clone();
        query = query.field(
            Field::new(
                many,
                TypeRef::named_nn(format!("{name}Connection")),
                move |ctx| {
                    let t = t.clone();
                    FieldFuture::new(async move {
                        let shared = shared(&ctx)?;
                        let filter = filter_arg(&ctx)?;
                        let first = first_arg(&ctx, 100)?;
                        let after = match ctx.args.get("after") {
                            Some(v) if !v.is_null() => Some(v.string()?.to_owned()),
                            _ => None,
                        };
                        let at =
                            crate::api::as_of(text_arg(&ctx, "asOf")?).map_err(api_error)?;
                        let page = shared
                            .api
                            .records_at(t, filter, after, first, at)
                            .await
                            .map_err(api_error)?;
                        Ok(Some(FieldValue::owned_any(page)))
                    })
                },
            )
            .argument(InputValue::new("filter", TypeRef::named("JSON")))
            .argument(InputValue::new("first", TypeRef::named(TypeRef::INT)))
            .argument(InputValue::new("after", TypeRef::named(TypeRef::STRING)))
            .argument(InputValue::new("asOf", TypeRef::named(TypeRef::STRING)))
            .description("Records in entity order; with asOf, as they stood then (every entity the journal knows is a candidate, in the entity index's order, at most 10,000 looked at per page)."),
        );
    }
    (query, objects)
}

/// Adds the queries every schema has.
pub(super) fn generic_queries(query: Object) -> Object {
    query
        .field(
            Field::new("entity", TypeRef::named("JSON"), |ctx| {
                FieldFuture::new(async move {
                    let shared = shared(&ctx)?;
                    let entity = EntityId::new(ctx.args.try_get("id")?.string()?);
                    let as_of = crate::api::as_of(text_arg(&ctx, "asOf")?).map_err(api_error)?;
                    let view = shared.api.lossless(entity, as_of).await.map_err(api_error)?;
                    Ok(Some(FieldValue::value(to_gql(view))))
                })
            })
            .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
            .argument(InputValue::new("asOf", TypeRef::named(TypeRef::STRING)))
            .description("The lossless view: every live delta under each property, now or as of an HLC time (\"MS\" or \"MS.LOGICAL\") or arrival position (\"@N\")."),
        )
        .field(
            Field::new("delta", TypeRef::named("JSON"), |ctx| {
                FieldFuture::new(async move {
                    let shared = shared(&ctx)?;
                    let id = id_arg(&ctx)?;
                    let fetch = match ctx.args.get("fetch") {
                        Some(v) if !v.is_null() => v.boolean()?,
                        _ => false,
                    };
                    let found = shared.api.delta(id, fetch).await.map_err(api_error)?;
                    Ok(found.map(|stored| FieldValue::value(to_gql(stored.to_json()))))
                })
            })
            .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
            .argument(InputValue::new("fetch", TypeRef::named(TypeRef::BOOLEAN)))
            .description("A delta by id; with `fetch: true`, asked of the linked peers when it is not held here (and stored)."),
        )
        .field(
            Field::new("whoHas", TypeRef::named_nn_list_nn("JSON"), |ctx| {
                FieldFuture::new(async move {
                    let shared = shared(&ctx)?;
                    let entity = ctx.args.try_get("entity")?.string()?.to_owned();
                    let holders = shared.api.who_has(&entity).await;
                    Ok(Some(FieldValue::list(holders.into_iter().map(|(peer, deltas)| {
                        FieldValue::value(to_gql(json!({"peer": peer.to_string(), "deltas": deltas})))
                    }))))
                })
            })
            .argument(InputValue::new("entity", TypeRef::named_nn(TypeRef::ID)))
            .description("How many deltas about an entity each linked peer holds: [{\"peer\", \"deltas\"}], from their entity indexes."),
        )
        .field(
            Field::new("deltas", TypeRef::named_nn("DeltaPage"), |ctx| {
                FieldFuture::new(async move {
                    let shared = shared(&ctx)?;
                    let filter = filter_arg(&ctx)?;
                    let first = first_arg(&ctx, 100)?;
                    let after = cursor_arg(&ctx)?;
                    let source = crate::api::DeltaSource::named(
                        text_arg(&ctx, "author")?,
                        text_arg(&ctx, "origin")?,
                    )
                    .map_err(api_error)?;
                    let page = shared
                        .api
                        .deltas(source, after, filter, first)
                        .await
                        .map_err(api_error)?;
                    let deltas: Vec<Value> = page.deltas.iter().map(StoredDelta::to_json).collect();
                    Ok(Some(FieldValue::owned_any(json!({
                        "deltas": deltas,
                        "cursor": page.cursor.map(|c| c.to_string()),
                        "hasMore": page.more,
                    }))))
                })
            })
            .argument(InputValue::new("filter", TypeRef::named("JSON")))
            .argument(InputValue::new("after", TypeRef::named(TypeRef::STRING)))
            .argument(InputValue::new("first", TypeRef::named(TypeRef::INT)))
            .argument(InputValue::new("author", TypeRef::named(TypeRef::ID)))
            .argument(InputValue::new("origin", TypeRef::named(TypeRef::ID)))
            .description("Deltas after a cursor, optionally filtered by JSON-Logic over each delta's filter document: the whole journal in arrival order, one author's deltas (author, from the author index) in arrival order, or one host's (origin, from the origin index) in its seq order, where the cursor is a seq."),
        )
        .field(Field::new("schemas", TypeRef::named_nn_list_nn("JSON"), |ctx| {
            FieldFuture::new(async move {
                let shared = shared(&ctx)?;
                Ok(Some(FieldValue::list(
                    shared
                        .types
                        .values()
                        .map(|s| FieldValue::value(to_gql(s.to_json()))),
                )))
            })
        }))
        .field(Field::new("peers", TypeRef::named_nn_list_nn(TypeRef::ID), |ctx| {
            FieldFuture::new(async move {
                let shared = shared(&ctx)?;
                let peers = shared.api.peers().await;
                Ok(Some(FieldValue::list(
                    peers.into_iter().map(|p| FieldValue::value(p.to_string())),
                )))
            })
        }))
        .field(Field::new("node", TypeRef::named_nn("NodeInfo"), |ctx| {
            FieldFuture::new(async move {
                let shared = shared(&ctx)?;
                let info = shared.api.node_info().await.map_err(api_error)?;
                Ok(Some(FieldValue::owned_any(json!({
                    "id": shared.api.key().host_id().to_string(),
                    "version": env!("CARGO_PKG_VERSION"),
                    "deltas": info.deltas,
                    "storedBytes": info.stored_bytes,
                }))))
            })
        }))
}
