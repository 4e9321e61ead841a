//! Schemas: an entity type, its properties and the resolver that collapses each; stored as
//! deltas so they replicate like data.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde_json::{json, Map, Value};

use crate::{Delta, EntityId, Error, Pointer, Primitive, Result, Target};

/// Prefix of the entity id a schema's delta points at: `schema:<type>`.
pub const SCHEMA_ENTITY_PREFIX: &str = "schema:";
/// Target context under which a schema's definition is filed on its entity.
pub const SCHEMA_DEFINITION_CONTEXT: &str = "definition";

/// How a property's many live deltas collapse into one value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResolverName {
    /// Last write wins (latest HLC time, ties by delta id).
    Lww,
    /// First write wins.
    Fww,
    /// Largest number.
    Max,
    /// Smallest number.
    Min,
    /// Sum of numbers.
    Sum,
    /// Number of live deltas.
    Count,
    /// Mean of numbers.
    Average,
    /// Strings joined in time order, without duplicates.
    Concat,
    /// The distinct values.
    Set,
    /// The most frequent value, ties by last write wins.
    Majority,
}

impl ResolverName {
    /// Every built-in resolver, in the order of the documentation.
    pub const ALL: [ResolverName; 10] = [
        ResolverName::Lww,
        ResolverName::Fww,
        ResolverName::Max,
        ResolverName::Min,
        ResolverName::Sum,
        ResolverName::Count,
        ResolverName::Average,
        ResolverName::Concat,
        ResolverName::Set,
        ResolverName::Majority,
    ];

    /// The name used in schema JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            ResolverName::Lww => "lww",
            ResolverName::Fww => "fww",
            ResolverName::Max => "max",
            ResolverName::Min => "min",
            ResolverName::Sum => "sum",
            ResolverName::Count => "count",
            ResolverName::Average => "average",
            ResolverName::Concat => "concat",
            ResolverName::Set => "set",
            ResolverName::Majority => "majority",
        }
    }
}

impl fmt::Display for ResolverName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ResolverName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ResolverName::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = ResolverName::ALL.iter().map(|r| r.as_str()).collect();
                Error::InvalidSchema(format!(
                    "unknown resolver {s:?} (known: {})",
                    known.join(", ")
                ))
            })
    }
}

/// The type of a property's resolved value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueType {
    /// Any primitive.
    Any,
    /// Text.
    String,
    /// An integer or a float.
    Number,
    /// A boolean.
    Bool,
    /// An entity of another schema, resolved by following the reference.
    Reference(String),
    /// A list of values of the inner type.
    List(Box<ValueType>),
}

impl ValueType {
    fn to_json(&self) -> Value {
        match self {
            ValueType::Any => json!("any"),
            ValueType::String => json!("string"),
            ValueType::Number => json!("number"),
            ValueType::Bool => json!("bool"),
            ValueType::Reference(name) => json!({ "ref": name }),
            ValueType::List(inner) => json!({ "list": inner.to_json() }),
        }
    }

    fn from_json(value: &Value, property: &str) -> Result<ValueType> {
        let bad = || {
            Error::InvalidSchema(format!(
                "property {property:?}: type must be \"any\", \"string\", \"number\", \"bool\", {{\"ref\": TYPE}} or {{\"list\": TYPE}}, got {value}"
            ))
        };
        match value {
            Value::String(s) => match s.as_str() {
                "any" => Ok(ValueType::Any),
                "string" => Ok(ValueType::String),
                "number" => Ok(ValueType::Number),
                "bool" => Ok(ValueType::Bool),
                _ => Err(bad()),
            },
            Value::Object(map) if map.len() == 1 => match map.iter().next() {
                Some((k, Value::String(name))) if k == "ref" => {
                    check_name(name, "referenced type")?;
                    Ok(ValueType::Reference(name.clone()))
                }
                Some((k, inner)) if k == "list" => Ok(ValueType::List(Box::new(
                    ValueType::from_json(inner, property)?,
                ))),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

/// One property of a schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PropertySpec {
    /// How the property's deltas collapse.
    pub resolver: ResolverName,
    /// The resolved value's type.
    pub value_type: ValueType,
    /// Whether a record without this property is incomplete.
    pub required: bool,
}

/// An entity type and how each of its properties resolves.
///
/// JSON form: `{"type":"user","properties":{"name":{"resolver":"lww","type":"string","required":true}}}`;
/// `type` defaults to `"any"` and `required` to false. An optional `"confirm_at": k` says
/// how many peers must hold what decided a value of this type before reads call it
/// confirmed rather than provisional (the node's setting applies when it is absent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schema {
    entity_type: String,
    properties: BTreeMap<String, PropertySpec>,
    confirm_at: Option<u32>,
}

/// Names are GraphQL-safe, because the GraphQL layer turns types and properties into fields.
fn check_name(name: &str, what: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidSchema(format!(
            "{what} {name:?} must start with a letter or _ and hold only letters, digits and _"
        )))
    }
}

impl Schema {
    /// A schema with no properties yet.
    pub fn new(entity_type: impl Into<String>) -> Result<Schema> {
        let entity_type = entity_type.into();
        check_name(&entity_type, "type name")?;
        Ok(Schema {
            entity_type,
            properties: BTreeMap::new(),
            confirm_at: None,
        })
    }

    /// Sets how many peers must hold what decided a value of this type for reads to call
    /// it confirmed.
    pub fn with_confirm_at(mut self, peers: u32) -> Schema {
        self.confirm_at = Some(peers);
        self
    }

    /// How many peers must hold what decided a value of this type for reads to call it
    /// confirmed, if the schema says.
    pub fn confirm_at(&self) -> Option<u32> {
        self.confirm_at
    }

    /// Adds (or replaces) a property.
    pub fn property(mut self, name: impl Into<String>, spec: PropertySpec) -> Result<Schema> {
        let name = name.into();
        check_name(&name, "property name")?;
        self.properties.insert(name, spec);
        Ok(self)
    }

    /// The entity type this schema describes.
    pub fn entity_type(&self) -> &str {
        &self.entity_type
    }

    /// The properties, by name.
    pub fn properties(&self) -> &BTreeMap<String, PropertySpec> {
        &self.properties
    }

    /// The entity whose `definition` property holds this schema.
    pub fn entity_id(&self) -> EntityId {
        EntityId::new(format!("{SCHEMA_ENTITY_PREFIX}{}", self.entity_type))
    }

    /// The JSON form.
    pub fn to_json(&self) -> Value {
        let props: Map<String, Value> = self
            .properties
            .iter()
            .map(|(name, spec)| {
                let v = json!({
                    "resolver": spec.resolver.as_str(),
                    "type": spec.value_type.to_json(),
                    "required": spec.required,
                });
                (name.clone(), v)
            })
            .collect();
        let mut json = json!({ "type": self.entity_type, "properties": props });
        if let Some(peers) = self.confirm_at {
            json["confirm_at"] = json!(peers);
        }
        json
    }

    /// Parses the JSON form.
    pub fn from_json(value: &Value) -> Result<Schema> {
        let obj = value
            .as_object()
            .ok_or_else(|| Error::InvalidSchema("a schema is a JSON object".into()))?;
        if let Some(unknown) = obj
            .keys()
            .find(|k| !matches!(k.as_str(), "type" | "properties" | "confirm_at"))
        {
            return Err(Error::InvalidSchema(format!("unknown field {unknown:?}")));
        }
        let entity_type = obj
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::InvalidSchema("missing string field \"type\"".into()))?;
        let mut schema = Schema::new(entity_type)?;
        if let Some(peers) = obj.get("confirm_at") {
            let peers = peers
                .as_u64()
                .and_then(|p| u32::try_from(p).ok())
                .ok_or_else(|| {
                    Error::InvalidSchema(
                        "\"confirm_at\" must be a non-negative integer (a number of peers)".into(),
                    )
                })?;
            schema = schema.with_confirm_at(peers);
        }
        let props = match obj.get("properties") {
            Some(Value::Object(p)) => p,
            Some(_) => {
                return Err(Error::InvalidSchema(
                    "\"properties\" must be an object".into(),
                ))
            }
            None => return Ok(schema),
        };
        for (name, spec) in props {
            let spec_obj = spec.as_object().ok_or_else(|| {
                Error::InvalidSchema(format!("property {name:?} must be an object"))
            })?;
            if let Some(unknown) = spec_obj
                .keys()
                .find(|k| !matches!(k.as_str(), "resolver" | "type" | "required"))
            {
                return Err(Error::InvalidSchema(format!(
                    "property {name:?}: unknown field {unknown:?}"
                )));
            }
            let resolver = spec_obj
                .get("resolver")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    Error::InvalidSchema(format!("property {name:?}: missing \"resolver\""))
                })?
                .parse()?;
            let value_type = match spec_obj.get("type") {
                Some(t) => ValueType::from_json(t, name)?,
                None => ValueType::Any,
            };
            let required = match spec_obj.get("required") {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    return Err(Error::InvalidSchema(format!(
                        "property {name:?}: \"required\" must be true or false"
                    )))
                }
            };
            schema = schema.property(
                name.clone(),
                PropertySpec {
                    resolver,
                    value_type,
                    required,
                },
            )?;
        }
        Ok(schema)
    }

    /// The pointers of the delta that registers this schema.
    pub fn to_pointers(&self) -> Vec<Pointer> {
        vec![
            Pointer::entity("schema", self.entity_id(), SCHEMA_DEFINITION_CONTEXT),
            Pointer::value(SCHEMA_DEFINITION_CONTEXT, self.to_json().to_string()),
        ]
    }

    /// Reads a schema back from its delta; `Ok(None)` when the delta is not a schema.
    pub fn from_delta(delta: &Delta) -> Result<Option<Schema>> {
        let is_schema = delta.pointers().iter().any(|p| {
            matches!(&p.target, Target::Entity(e) if e.as_str().starts_with(SCHEMA_ENTITY_PREFIX))
                && p.target_context.as_deref() == Some(SCHEMA_DEFINITION_CONTEXT)
        });
        if !is_schema {
            return Ok(None);
        }
        let text = delta
            .pointers()
            .iter()
            .find_map(|p| match (&p.target, p.local_context.as_str()) {
                (Target::Value(Primitive::String(s)), SCHEMA_DEFINITION_CONTEXT) => Some(s),
                _ => None,
            })
            .ok_or_else(|| Error::InvalidSchema("schema delta has no definition value".into()))?;
        let value: Value = serde_json::from_str(text).map_err(|e| Error::Json(e.to_string()))?;
        Schema::from_json(&value).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeltaBuilder, Hlc, KeyPair};

    fn user_schema() -> Schema {
        Schema::new("user")
            .unwrap()
            .property(
                "name",
                PropertySpec {
                    resolver: ResolverName::Lww,
                    value_type: ValueType::String,
                    required: true,
                },
            )
            .unwrap()
            .property(
                "friends",
                PropertySpec {
                    resolver: ResolverName::Set,
                    value_type: ValueType::List(Box::new(ValueType::Reference("user".into()))),
                    required: false,
                },
            )
            .unwrap()
    }

    #[test]
    fn json_form_round_trips() {
        let schema = user_schema();
        assert_eq!(Schema::from_json(&schema.to_json()).unwrap(), schema);
        assert!(
            schema.to_json().get("confirm_at").is_none(),
            "absent unless set"
        );
        let confirmed = user_schema().with_confirm_at(2);
        assert_eq!(confirmed.to_json()["confirm_at"], 2);
        let back = Schema::from_json(&confirmed.to_json()).unwrap();
        assert_eq!(back.confirm_at(), Some(2));
        assert_eq!(back, confirmed);
    }

    #[test]
    fn delta_form_round_trips() {
        let schema = user_schema();
        let delta = DeltaBuilder::new(Hlc::new(1, 0))
            .pointers(schema.to_pointers())
            .sign(&KeyPair::from_seed([5; 32]))
            .unwrap();
        assert_eq!(Schema::from_delta(&delta).unwrap(), Some(schema));
    }

    #[test]
    fn non_schema_delta_is_not_a_schema() {
        let delta = DeltaBuilder::new(Hlc::new(1, 0))
            .pointer(Pointer::entity("user", "alice", "name"))
            .sign(&KeyPair::from_seed([5; 32]))
            .unwrap();
        assert_eq!(Schema::from_delta(&delta).unwrap(), None);
    }

    #[test]
    fn every_resolver_name_parses_back() {
        for r in ResolverName::ALL {
            assert_eq!(r.as_str().parse::<ResolverName>().unwrap(), r);
        }
    }

    #[test]
    fn bad_schemas_say_what_is_wrong() {
        for (doc, expect) in [
            (json!([]), "JSON object"),
            (json!({"properties": {}}), "\"type\""),
            (json!({"type": "9lives"}), "must start with a letter"),
            (json!({"type": "user", "extra": 1}), "unknown field"),
            (json!({"type": "user", "confirm_at": -1}), "confirm_at"),
            (json!({"type": "user", "confirm_at": "2"}), "confirm_at"),
            (
                json!({"type": "user", "properties": {"name": {"resolver": "lwww"}}}),
                "unknown resolver",
            ),
            (
                json!({"type": "user", "properties": {"name": {}}}),
                "missing \"resolver\"",
            ),
            (
                json!({"type": "user", "properties": {"name": {"resolver": "lww", "type": "str"}}}),
                "type must be",
            ),
            (
                json!({"type": "user", "properties": {"name": {"resolver": "lww", "required": "yes"}}}),
                "true or false",
            ),
            (
                json!({"type": "user", "properties": {"bad-name": {"resolver": "lww"}}}),
                "property name",
            ),
        ] {
            let err = Schema::from_json(&doc).unwrap_err();
            assert!(err.to_string().contains(expect), "{doc}: {err}");
        }
    }
}
