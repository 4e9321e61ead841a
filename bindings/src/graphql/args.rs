//! Reading resolver arguments and context: names, JSON arguments, filters, pages, the
//! confidence a mutation waits for, pointers, and the service's errors as GraphQL errors.

use std::time::Duration;

use async_graphql::dynamic::{Field, InputValue, ResolverContext, TypeRef};
use async_graphql::{Error as GqlError, ErrorExtensions, Value as GqlValue};
use hypha_primitives::{DeltaId, EntityId, Filter, Pointer, Primitive, Target};
use serde_json::Value;

use super::{MayWrite, Shared};
use crate::api::{self, Wait};

/// Largest page a connection returns.
const MAX_PAGE: usize = 1_000;

/// Refuses a mutation unless the request may write.
pub(super) fn check_write(ctx: &ResolverContext<'_>) -> Result<(), GqlError> {
    let allowed = match ctx.data_opt::<MayWrite>() {
        Some(MayWrite(allowed)) => *allowed,
        // No HTTP headers (a websocket, or in process): allowed only without a token.
        None => shared(ctx)?.api.may_write(None),
    };
    if allowed {
        Ok(())
    } else {
        Err(api_error(api::Error::Unauthorized))
    }
}

/// A GraphQL name from any text: letters, digits and underscores, not starting with a
/// digit (and never the reserved `__` prefix).
pub(super) fn graphql_name(text: &str) -> String {
    let mut name: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) || name.starts_with("__") {
        name.insert(0, 'T');
    }
    name
}

/// `user` → `User`.
pub(super) fn type_name(entity_type: &str) -> String {
    let name = graphql_name(entity_type);
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => name,
    }
}

/// `User` → `user`.
pub(super) fn field_name(type_name: &str) -> String {
    let mut chars = type_name.chars();
    match chars.next() {
        Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// A GraphQL error with this message.
pub(super) fn gql_error(e: impl std::fmt::Display) -> GqlError {
    GqlError::new(e.to_string())
}

/// A service error as a GraphQL error: its message, and its kind in the `code` extension
/// (see [`api::Error::code`]).
pub(super) fn api_error(e: api::Error) -> GqlError {
    GqlError::new(e.to_string()).extend_with(|_, extensions| extensions.set("code", e.code()))
}

/// A JSON value as a GraphQL value.
pub(super) fn to_gql(value: Value) -> GqlValue {
    GqlValue::from_json(value).unwrap_or(GqlValue::Null)
}

/// What resolvers share: the service and the registered types.
pub(super) fn shared<'a>(ctx: &ResolverContext<'a>) -> Result<&'a Shared, GqlError> {
    ctx.data::<Shared>()
}

/// The JSON argument `name`, if given.
pub(super) fn json_arg(ctx: &ResolverContext<'_>, name: &str) -> Result<Option<Value>, GqlError> {
    match ctx.args.get(name) {
        None => Ok(None),
        Some(v) if v.is_null() => Ok(None),
        Some(v) => Ok(Some(v.as_value().clone().into_json().map_err(gql_error)?)),
    }
}

/// The string argument `name`, if given.
pub(super) fn text_arg<'a>(
    ctx: &'a ResolverContext<'_>,
    name: &str,
) -> Result<Option<&'a str>, GqlError> {
    match ctx.args.get(name) {
        Some(v) if !v.is_null() => Ok(Some(v.string()?)),
        _ => Ok(None),
    }
}

/// The `after` argument: a cursor, a number sent as a string (an arrival, or a seq).
pub(super) fn cursor_arg(ctx: &ResolverContext<'_>) -> Result<Option<u64>, GqlError> {
    text_arg(ctx, "after")?
        .map(|v| {
            v.parse::<u64>()
                .map_err(|e| gql_error(format!("after: {e}")))
        })
        .transpose()
}

/// The `filter` argument, parsed as a JSON-Logic filter.
pub(super) fn filter_arg(ctx: &ResolverContext<'_>) -> Result<Option<Filter>, GqlError> {
    json_arg(ctx, "filter")?
        .map(|f| {
            Filter::from_json_str(&f.to_string()).map_err(|e| gql_error(format!("filter: {e}")))
        })
        .transpose()
}

/// The `first` argument: a page size, `default` when absent, at most the largest page.
pub(super) fn first_arg(ctx: &ResolverContext<'_>, default: usize) -> Result<usize, GqlError> {
    match ctx.args.get("first") {
        None => Ok(default),
        Some(v) if v.is_null() => Ok(default),
        Some(v) => {
            let n = v.i64()?;
            if n < 0 {
                return Err(gql_error("first must not be negative"));
            }
            Ok((n as usize).min(MAX_PAGE))
        }
    }
}

/// The `id` argument, as a delta id.
pub(super) fn id_arg(ctx: &ResolverContext<'_>) -> Result<DeltaId, GqlError> {
    ctx.args
        .try_get("id")?
        .string()?
        .parse()
        .map_err(|e| gql_error(format!("id: {e}")))
}

/// The `confirmAt` argument: the peers a read asks to hold what decided a value before it
/// is called confirmed.
pub(super) fn confirm_at_arg(ctx: &ResolverContext<'_>) -> Result<Option<u32>, GqlError> {
    match ctx.args.get("confirmAt").filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(v) => u32::try_from(v.i64()?)
            .map(Some)
            .map_err(|_| gql_error("confirmAt must be a non-negative number of peers")),
    }
}

/// The confidence arguments of a mutation.
pub(super) fn wait_args(ctx: &ResolverContext<'_>) -> Result<Wait, GqlError> {
    let mut wait = Wait::default();
    if let Some(v) = ctx.args.get("minConfidence").filter(|v| !v.is_null()) {
        wait.min_confidence = usize::try_from(v.i64()?).map_err(gql_error)?;
    }
    if let Some(v) = ctx.args.get("timeoutMs").filter(|v| !v.is_null()) {
        wait.timeout = Duration::from_millis(u64::try_from(v.i64()?).map_err(gql_error)?);
    }
    Ok(wait)
}

/// Adds a mutation's `minConfidence` and `timeoutMs` arguments.
pub(super) fn with_wait_args(field: Field) -> Field {
    field
        .argument(InputValue::new(
            "minConfidence",
            TypeRef::named(TypeRef::INT),
        ))
        .argument(InputValue::new("timeoutMs", TypeRef::named(TypeRef::INT)))
}

/// A pointer from a `PointerInput`.
pub(super) fn pointer_from_input(
    input: async_graphql::dynamic::ObjectAccessor<'_>,
) -> Result<Pointer, GqlError> {
    let local = input.try_get("localContext")?.string()?.to_owned();
    let context = match input.get("targetContext") {
        Some(v) if !v.is_null() => Some(v.string()?.to_owned()),
        _ => None,
    };
    let entity = input.get("entity").filter(|v| !v.is_null());
    let delta = input.get("delta").filter(|v| !v.is_null());
    let value = input
        .get("value")
        .filter(|v| !v.is_null() || input.get("entity").is_none() && input.get("delta").is_none());
    let target = match (entity, delta, value) {
        (Some(e), None, None) => Target::Entity(EntityId::new(e.string()?)),
        (None, Some(d), None) => Target::Delta(d.string()?.parse().map_err(gql_error)?),
        (None, None, Some(v)) => {
            let json = v.as_value().clone().into_json().map_err(gql_error)?;
            Target::Value(Primitive::from_json(&json).map_err(gql_error)?)
        }
        _ => {
            return Err(gql_error(
                "a pointer needs exactly one of entity, delta or value",
            ))
        }
    };
    Ok(Pointer {
        local_context: local,
        target,
        target_context: context,
    })
}
