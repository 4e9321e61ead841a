//! The mutation root: writes signed by the node (`write`, `transaction`, `negate`,
//! `putSchema`) or by the client (`submit`), each answering how far it had spread.

use async_graphql::dynamic::{Field, FieldFuture, FieldValue, InputValue, Object, TypeRef};
use async_graphql::Error as GqlError;
use hypha_primitives::{Delta, Pointer, Schema as HyphaSchema};
use serde_json::json;

use super::args::{
    api_error, check_write, gql_error, id_arg, json_arg, pointer_from_input, shared, wait_args,
    with_wait_args,
};
use crate::api::WriteAnswer;

/// The mutation root.
pub(super) fn mutations() -> Object {
    let answer = |a: WriteAnswer| Some(FieldValue::owned_any(a.to_json()));
    Object::new("Mutation")
        .field(with_wait_args(
            Field::new("transaction", TypeRef::named_nn("TransactionResult"), move |ctx| {
                FieldFuture::new(async move {
                    check_write(&ctx)?;
                    let shared = shared(&ctx)?;
                    let writes = ctx
                        .args
                        .try_get("writes")?
                        .list()?
                        .iter()
                        .map(|w| {
                            w.list()?
                                .iter()
                                .map(|p| pointer_from_input(p.object()?))
                                .collect::<Result<Vec<Pointer>, GqlError>>()
                        })
                        .collect::<Result<Vec<_>, GqlError>>()?;
                    let (transaction, answers) = shared
                        .api
                        .transaction(writes, wait_args(&ctx)?)
                        .await
                        .map_err(api_error)?;
                    Ok(Some(FieldValue::owned_any(json!({
                        "transaction": transaction,
                        "writes": answers.iter().map(|a| a.to_json()).collect::<Vec<_>>(),
                    }))))
                })
            })
            .argument(InputValue::new(
                "writes",
                TypeRef::NonNull(Box::new(TypeRef::List(Box::new(TypeRef::named_nn_list_nn(
                    "PointerInput",
                ))))),
            ))
            .description("Writes several deltas as one transaction: stored together or not at all, and invisible in views until every member is held."),
        ))
        .field(with_wait_args(
            Field::new("write", TypeRef::named_nn("WriteResult"), move |ctx| {
                FieldFuture::new(async move {
                    check_write(&ctx)?;
                    let shared = shared(&ctx)?;
                    let pointers = ctx
                        .args
                        .try_get("pointers")?
                        .list()?
                        .iter()
                        .map(|p| pointer_from_input(p.object()?))
                        .collect::<Result<Vec<Pointer>, GqlError>>()?;
                    let written = shared.api.write(pointers, wait_args(&ctx)?).await.map_err(api_error)?;
                    Ok(answer(written))
                })
            })
            .argument(InputValue::new("pointers", TypeRef::named_nn_list_nn("PointerInput")))
            .description("Builds, signs and stores a delta with the node key; waits for minConfidence peers, at most timeoutMs."),
        ))
        .field(with_wait_args(
            Field::new("submit", TypeRef::named_nn("WriteResult"), move |ctx| {
                FieldFuture::new(async move {
                    check_write(&ctx)?;
                    let shared = shared(&ctx)?;
                    let json = json_arg(&ctx, "delta")?.ok_or_else(|| gql_error("delta is required"))?;
                    let delta = Delta::from_json(&json).map_err(gql_error)?;
                    let written = shared.api.submit_one(delta, wait_args(&ctx)?).await.map_err(api_error)?;
                    Ok(answer(written))
                })
            })
            .argument(InputValue::new("delta", TypeRef::named_nn("JSON")))
            .description("Stores a delta signed by the client's own key, verified like any delta from the network."),
        ))
        .field(with_wait_args(
            Field::new("negate", TypeRef::named_nn("WriteResult"), move |ctx| {
                FieldFuture::new(async move {
                    check_write(&ctx)?;
                    let shared = shared(&ctx)?;
                    let id = id_arg(&ctx)?;
                    let written = shared
                        .api
                        .write(vec![Pointer::negates(id)], wait_args(&ctx)?)
                        .await
                        .map_err(api_error)?;
                    Ok(answer(written))
                })
            })
            .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
            .description("Writes a negation of a delta: its values stop counting in views."),
        ))
        .field(with_wait_args(
            Field::new("putSchema", TypeRef::named_nn("WriteResult"), move |ctx| {
                FieldFuture::new(async move {
                    check_write(&ctx)?;
                    let shared = shared(&ctx)?;
                    let json = json_arg(&ctx, "schema")?.ok_or_else(|| gql_error("schema is required"))?;
                    let schema = HyphaSchema::from_json(&json).map_err(gql_error)?;
                    let written = shared
                        .api
                        .write(schema.to_pointers(), wait_args(&ctx)?)
                        .await
                        .map_err(api_error)?;
                    Ok(answer(written))
                })
            })
            .argument(InputValue::new("schema", TypeRef::named_nn("JSON")))
            .description("Registers or replaces an entity type's schema (stored as a delta, so it replicates)."),
        ))
}
