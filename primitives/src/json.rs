//! The JSON form of deltas, pointers and stamps (the API and CLI form), and the document a
//! filter sees.
//!
//! Keys, ids and signatures are lowercase hex; values are plain JSON values:
//!
//! ```json
//! {"id":"…","author":"…","time":{"ms":1700000000000,"logical":0},
//!  "pointers":[{"local_context":"user","target":{"entity":"alice"},"target_context":"name"},
//!              {"local_context":"name","target":{"value":"Alice"}}],
//!  "signature":"…"}
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Number, Value};

use std::sync::Arc;

use crate::{
    AuthorKey, BatchStamp, Delta, DeltaId, EntityId, Error, Hlc, HostId, Pointer, Primitive,
    Result, Seq, Signature, Stamp, StampProof, Target,
};

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeltaJson {
    #[serde(default)]
    id: Option<String>,
    author: String,
    time: TimeJson,
    pointers: Vec<PointerJson>,
    #[serde(default)]
    signature: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeJson {
    ms: u64,
    logical: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PointerJson {
    local_context: String,
    target: TargetJson,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target_context: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum TargetJson {
    Entity(String),
    Value(Value),
    Delta(String),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StampJson {
    host: String,
    seq: u64,
    #[serde(default)]
    signature: Option<String>,
    #[serde(default)]
    batch: Option<BatchJson>,
    #[serde(default)]
    path: Option<Vec<String>>,
    #[serde(default)]
    batch_first: Option<u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchJson {
    first: u64,
    last: u64,
    root: String,
    signature: String,
}

fn hash_from_hex(text: &str) -> Result<crate::merkle::Hash> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).map_err(|e| Error::InvalidHex {
        what: "hash",
        reason: e.to_string(),
    })?;
    Ok(out)
}

fn json_error(e: serde_json::Error) -> Error {
    Error::Json(e.to_string())
}

impl Primitive {
    /// The JSON value of this primitive.
    pub fn to_json(&self) -> Value {
        match self {
            Primitive::String(s) => Value::String(s.clone()),
            Primitive::Int(i) => Value::Number((*i).into()),
            // Non-finite floats never pass validation; null is the JSON-safe fallback.
            Primitive::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Primitive::Bool(b) => Value::Bool(*b),
            Primitive::Null => Value::Null,
        }
    }

    /// The primitive for a JSON scalar; arrays and objects are not primitives.
    pub fn from_json(value: &Value) -> Result<Primitive> {
        Ok(match value {
            Value::String(s) => Primitive::String(s.clone()),
            Value::Bool(b) => Primitive::Bool(*b),
            Value::Null => Primitive::Null,
            Value::Number(n) => match (n.as_i64(), n.is_u64(), n.as_f64()) {
                (Some(i), _, _) => Primitive::Int(i),
                (None, true, _) => return Err(Error::NumberOutOfRange(n.to_string())),
                (None, false, Some(f)) if f.is_finite() => Primitive::Float(f),
                _ => return Err(Error::NumberOutOfRange(n.to_string())),
            },
            Value::Array(_) | Value::Object(_) => {
                return Err(Error::Json(
                    "a value must be a string, number, boolean or null".into(),
                ))
            }
        })
    }
}

impl Pointer {
    /// The JSON form of this pointer.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(pointer_to_json(self)).unwrap_or(Value::Null)
    }

    /// Parses a JSON array of pointers (what `hypha write` takes).
    pub fn list_from_json_str(text: &str) -> Result<Vec<Pointer>> {
        crate::check_integer_literals(text)?;
        let list: Vec<PointerJson> = serde_json::from_str(text).map_err(json_error)?;
        list.into_iter().map(pointer_from_json).collect()
    }
}

fn pointer_to_json(p: &Pointer) -> PointerJson {
    PointerJson {
        local_context: p.local_context.clone(),
        target: match &p.target {
            Target::Entity(e) => TargetJson::Entity(e.as_str().to_owned()),
            Target::Value(v) => TargetJson::Value(v.to_json()),
            Target::Delta(id) => TargetJson::Delta(id.to_string()),
        },
        target_context: p.target_context.clone(),
    }
}

fn pointer_from_json(p: PointerJson) -> Result<Pointer> {
    Ok(Pointer {
        local_context: p.local_context,
        target: match p.target {
            TargetJson::Entity(e) => Target::Entity(EntityId::new(e)),
            TargetJson::Value(v) => Target::Value(Primitive::from_json(&v)?),
            TargetJson::Delta(id) => Target::Delta(id.parse()?),
        },
        target_context: p.target_context,
    })
}

impl Delta {
    /// The JSON form of this delta.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.to_json_mirror()).unwrap_or(Value::Null)
    }

    /// The JSON form as compact text.
    pub fn to_json_string(&self) -> String {
        self.to_json().to_string()
    }

    fn to_json_mirror(&self) -> DeltaJson {
        DeltaJson {
            id: Some(self.id().to_string()),
            author: self.author().to_string(),
            time: TimeJson {
                ms: self.time().ms(),
                logical: self.time().logical(),
            },
            pointers: self.pointers().iter().map(pointer_to_json).collect(),
            signature: Some(self.signature().to_string()),
        }
    }

    /// Parses the JSON form. The id, if present, must match the content; the signature
    /// must be present. The signature itself is not checked: call [`Delta::verify`].
    pub fn from_json_str(text: &str) -> Result<Delta> {
        crate::check_integer_literals(text)?;
        let mirror: DeltaJson = serde_json::from_str(text).map_err(json_error)?;
        Self::from_json_mirror(mirror)
    }

    /// Like [`Delta::from_json_str`], from a parsed JSON value.
    pub fn from_json(value: &Value) -> Result<Delta> {
        let mirror = DeltaJson::deserialize(value).map_err(json_error)?;
        Self::from_json_mirror(mirror)
    }

    fn from_json_mirror(m: DeltaJson) -> Result<Delta> {
        let claimed_id = m.id.as_deref().map(str::parse::<DeltaId>).transpose()?;
        let author: AuthorKey = m.author.parse()?;
        let signature: Signature = m
            .signature
            .as_deref()
            .ok_or(Error::MissingSignature)?
            .parse()?;
        let pointers = m
            .pointers
            .into_iter()
            .map(pointer_from_json)
            .collect::<Result<Vec<_>>>()?;
        Delta::from_parts(
            claimed_id,
            author,
            Hlc::new(m.time.ms, m.time.logical),
            pointers,
            signature,
        )
    }

    /// The document filters are evaluated against: the JSON form, plus the origin `hosts`
    /// and the convenience fields `targets` (entity ids pointed at), `contexts` (local
    /// contexts), `target_contexts` and `values` (primitive values).
    pub fn filter_document(&self, stamps: &[Stamp]) -> Value {
        let mut doc = match self.to_json() {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        let mut targets = Vec::new();
        let mut contexts = Vec::with_capacity(self.pointers().len());
        let mut target_contexts = Vec::new();
        let mut values = Vec::new();
        for p in self.pointers() {
            contexts.push(Value::String(p.local_context.clone()));
            if let Some(tc) = &p.target_context {
                target_contexts.push(Value::String(tc.clone()));
            }
            match &p.target {
                Target::Entity(e) => targets.push(Value::String(e.as_str().to_owned())),
                Target::Value(v) => values.push(v.to_json()),
                Target::Delta(_) => {}
            }
        }
        let hosts = stamps
            .iter()
            .map(|s| Value::String(s.host().to_string()))
            .collect();
        doc.insert("hosts".into(), Value::Array(hosts));
        doc.insert("targets".into(), Value::Array(targets));
        doc.insert("contexts".into(), Value::Array(contexts));
        doc.insert("target_contexts".into(), Value::Array(target_contexts));
        doc.insert("values".into(), Value::Array(values));
        Value::Object(doc)
    }
}

impl Stamp {
    /// The JSON form: `{"host":"…","seq":1,"signature":"…"}` for a stamp signed alone,
    /// `{"host":"…","seq":1,"batch":{"first":1,"last":9,"root":"…","signature":"…"},
    /// "path":["…",…]}` for one of a batch, and `{"host":"…","seq":1,"batch_first":1}` for
    /// one that only names its batch (which does not parse back: it proves nothing).
    pub fn to_json(&self) -> Value {
        match self.proof() {
            StampProof::Signed(signature) => {
                json!({"host": self.host().to_string(), "seq": self.seq().get(), "signature": signature.to_string()})
            }
            StampProof::Batch { batch, path } => json!({
                "host": self.host().to_string(),
                "seq": self.seq().get(),
                "batch": {
                    "first": batch.first().get(),
                    "last": batch.last().get(),
                    "root": hex::encode(batch.root()),
                    "signature": batch.signature().to_string(),
                },
                "path": path.iter().map(hex::encode).collect::<Vec<_>>(),
            }),
            StampProof::Named { first } => {
                json!({"host": self.host().to_string(), "seq": self.seq().get(), "batch_first": first.get()})
            }
        }
    }

    /// Parses [`Stamp::to_json`]'s form (not verified: call [`Stamp::verify`]).
    pub fn from_json(value: &Value) -> Result<Stamp> {
        let m = StampJson::deserialize(value).map_err(json_error)?;
        let host = m.host.parse::<HostId>()?;
        let seq = Seq::new(m.seq);
        if let Some(first) = m.batch_first {
            return Err(Error::Json(format!(
                "the stamp of seq {} names its batch (from seq {first}) but carries no proof",
                m.seq
            )));
        }
        match (m.signature, m.batch, m.path) {
            (Some(signature), None, None) => Ok(Stamp::from_parts(host, seq, signature.parse()?)),
            (None, Some(b), Some(path)) => {
                let batch = BatchStamp::from_parts(
                    host,
                    Seq::new(b.first),
                    Seq::new(b.last),
                    hash_from_hex(&b.root)?,
                    b.signature.parse()?,
                )?;
                let path = path
                    .iter()
                    .map(|h| hash_from_hex(h))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Stamp::in_batch(Arc::new(batch), seq, path.into()))
            }
            _ => Err(Error::Json(
                "a stamp has either \"signature\", or \"batch\" and \"path\"".into(),
            )),
        }
    }
}
