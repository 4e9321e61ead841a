//! Deltas: immutable, signed statements made of pointers; building, encoding and verifying them.

use crate::codec::{Reader, Writer, FORMAT_VERSION};
use crate::verify::{verify_many, verify_one};
use crate::{AuthorKey, DeltaId, EntityId, Error, Hlc, KeyPair, Result, Signature};

/// The most pointers one delta may carry.
pub const MAX_POINTERS: usize = 4096;

/// The bytes a signature adds to a delta's canonical body in its stored and wire form.
const SIGNATURE_LEN: usize = 64;

/// A primitive value a pointer can target.
///
/// Integers and floats are distinct: `1` and `1.0` are different values, as in the JSON form.
#[derive(Clone, Debug, PartialEq)]
pub enum Primitive {
    /// UTF-8 text.
    String(String),
    /// A signed 64-bit integer.
    Int(i64),
    /// A finite 64-bit float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// The null value (a value, not an absence).
    Null,
}

impl From<&str> for Primitive {
    fn from(s: &str) -> Self {
        Primitive::String(s.to_owned())
    }
}
impl From<String> for Primitive {
    fn from(s: String) -> Self {
        Primitive::String(s)
    }
}
impl From<i64> for Primitive {
    fn from(v: i64) -> Self {
        Primitive::Int(v)
    }
}
impl From<f64> for Primitive {
    fn from(v: f64) -> Self {
        Primitive::Float(v)
    }
}
impl From<bool> for Primitive {
    fn from(v: bool) -> Self {
        Primitive::Bool(v)
    }
}

/// What a pointer points at.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// An entity, by id; entities exist only through the pointers that name them.
    Entity(EntityId),
    /// A primitive value.
    Value(Primitive),
    /// Another delta (negations and meta-statements).
    Delta(DeltaId),
}

/// One statement inside a delta: "my `local_context` is `target`, filed under its
/// `target_context`".
#[derive(Clone, Debug, PartialEq)]
pub struct Pointer {
    /// The role the target plays in this delta ("user", "name", "negates").
    pub local_context: String,
    /// What is pointed at.
    pub target: Target,
    /// The property of the target entity this delta is filed under ("name"); only
    /// meaningful for entity targets.
    pub target_context: Option<String>,
}

impl Pointer {
    /// A pointer to an entity property: `local_context` → `entity`.`target_context`.
    pub fn entity(
        local_context: impl Into<String>,
        entity: impl Into<EntityId>,
        target_context: impl Into<String>,
    ) -> Self {
        Self {
            local_context: local_context.into(),
            target: Target::Entity(entity.into()),
            target_context: Some(target_context.into()),
        }
    }

    /// A pointer to a primitive value.
    pub fn value(local_context: impl Into<String>, value: impl Into<Primitive>) -> Self {
        Self {
            local_context: local_context.into(),
            target: Target::Value(value.into()),
            target_context: None,
        }
    }

    /// A pointer to another delta.
    pub fn delta(local_context: impl Into<String>, id: DeltaId) -> Self {
        Self {
            local_context: local_context.into(),
            target: Target::Delta(id),
            target_context: None,
        }
    }

    /// The pointer that makes a delta a negation of `id`.
    pub fn negates(id: DeltaId) -> Self {
        Self::delta(NEGATES, id)
    }
}

/// The local context that marks a pointer as a negation.
pub const NEGATES: &str = "negates";

/// An immutable statement signed by its author.
///
/// A `Delta` obtained from [`DeltaBuilder::sign`] is valid by construction; one obtained
/// from [`Delta::decode`] or from JSON has a well-formed shape but must pass
/// [`Delta::verify`] (or [`verify_batch`]) before it is trusted.
#[derive(Clone, Debug, PartialEq)]
pub struct Delta {
    id: DeltaId,
    author: AuthorKey,
    time: Hlc,
    pointers: Vec<Pointer>,
    signature: Signature,
    /// The canonical body, kept because id, signature and storage all need it.
    body: Vec<u8>,
}

impl Delta {
    /// The content id.
    pub fn id(&self) -> DeltaId {
        self.id
    }
    /// Who signed it.
    pub fn author(&self) -> AuthorKey {
        self.author
    }
    /// When its author wrote it.
    pub fn time(&self) -> Hlc {
        self.time
    }
    /// What it says.
    pub fn pointers(&self) -> &[Pointer] {
        &self.pointers
    }
    /// The author's signature over the canonical body.
    pub fn signature(&self) -> Signature {
        self.signature
    }
    /// The canonical body: what the id hashes and the signature signs.
    pub fn canonical_body(&self) -> &[u8] {
        &self.body
    }
    /// The entity ids this delta points at, in pointer order (may repeat).
    pub fn target_entities(&self) -> impl Iterator<Item = (&EntityId, Option<&str>)> {
        self.pointers.iter().filter_map(|p| match &p.target {
            Target::Entity(e) => Some((e, p.target_context.as_deref())),
            _ => None,
        })
    }
    /// The deltas this delta negates.
    pub fn negated_ids(&self) -> impl Iterator<Item = DeltaId> + '_ {
        self.pointers
            .iter()
            .filter_map(|p| match (&p.target, p.local_context.as_str()) {
                (Target::Delta(id), NEGATES) => Some(*id),
                _ => None,
            })
    }

    /// The stored and wire form: canonical body then signature.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&self.body);
        out.extend_from_slice(self.signature.as_bytes());
        out
    }

    /// Length of [`Delta::encode`]'s output, without encoding.
    pub fn encoded_len(&self) -> usize {
        self.body.len() + SIGNATURE_LEN
    }

    /// Decodes the form written by [`Delta::encode`], computing the id from the body.
    ///
    /// The shape is checked (same rules as [`DeltaBuilder::sign`]); the signature is not:
    /// call [`Delta::verify`] before trusting the result.
    pub fn decode(bytes: &[u8]) -> Result<Delta> {
        if bytes.len() < SIGNATURE_LEN {
            return Err(Error::Decode(format!(
                "{} bytes is too short for a delta",
                bytes.len()
            )));
        }
        let (body, signature) = bytes.split_at(bytes.len() - SIGNATURE_LEN);
        let mut sig = [0u8; SIGNATURE_LEN];
        sig.copy_from_slice(signature);
        Self::decode_body(body, Signature::from_bytes(sig))
    }

    /// Builds a delta from a canonical body and a signature (the JSON form carries both).
    pub(crate) fn decode_body(body: &[u8], signature: Signature) -> Result<Delta> {
        let mut r = Reader::new(body);
        let version = r.u8("version")?;
        if version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let author = AuthorKey::from_bytes(r.array("author")?);
        let time = Hlc::new(r.u64("time")?, r.u32("time")?);
        let count = r.varint("pointer count")? as usize;
        // Each pointer takes at least three bytes, so a count beyond that is a lie that
        // must not drive an allocation.
        if count > r.remaining() / 3 {
            return Err(Error::Decode(format!(
                "pointer count {count} exceeds what {} bytes can hold",
                r.remaining()
            )));
        }
        let mut pointers = Vec::with_capacity(count);
        for _ in 0..count {
            pointers.push(decode_pointer(&mut r)?);
        }
        r.expect_end()?;
        validate(&pointers)?;
        Ok(Delta {
            id: DeltaId::from_bytes(*blake3::hash(body).as_bytes()),
            author,
            time,
            pointers,
            signature,
            body: body.to_vec(),
        })
    }

    /// Assembles a delta from parts that claim an id (the JSON form): the id must match.
    pub(crate) fn from_parts(
        claimed_id: Option<DeltaId>,
        author: AuthorKey,
        time: Hlc,
        pointers: Vec<Pointer>,
        signature: Signature,
    ) -> Result<Delta> {
        validate(&pointers)?;
        let body = encode_body(author, time, &pointers);
        let id = DeltaId::from_bytes(*blake3::hash(&body).as_bytes());
        if let Some(claimed) = claimed_id {
            if claimed != id {
                return Err(Error::IdMismatch {
                    claimed: claimed.to_string(),
                    actual: id.to_string(),
                });
            }
        }
        Ok(Delta {
            id,
            author,
            time,
            pointers,
            signature,
            body,
        })
    }

    /// Checks the signature (the id is always the hash of the body by construction).
    pub fn verify(&self) -> Result<()> {
        if verify_one(self.author.as_bytes(), &self.body, &self.signature) {
            Ok(())
        } else {
            Err(Error::BadSignature {
                id: self.id.to_string(),
            })
        }
    }
}

/// Checks the shape rules every delta obeys, whichever way it was made.
fn validate(pointers: &[Pointer]) -> Result<()> {
    if pointers.is_empty() {
        return Err(Error::NoPointers);
    }
    if pointers.len() > MAX_POINTERS {
        return Err(Error::TooManyPointers {
            count: pointers.len(),
            limit: MAX_POINTERS,
        });
    }
    for (index, p) in pointers.iter().enumerate() {
        if p.local_context.is_empty() {
            return Err(Error::EmptyField {
                index,
                field: "local_context",
            });
        }
        if p.target_context.as_deref() == Some("") {
            return Err(Error::EmptyField {
                index,
                field: "target_context",
            });
        }
        match &p.target {
            Target::Entity(e) if e.as_str().is_empty() => {
                return Err(Error::EmptyField {
                    index,
                    field: "entity id",
                })
            }
            Target::Value(Primitive::Float(f)) if !f.is_finite() => {
                return Err(Error::NonFiniteNumber { index })
            }
            _ => {}
        }
    }
    Ok(())
}

fn encode_body(author: AuthorKey, time: Hlc, pointers: &[Pointer]) -> Vec<u8> {
    let mut w = Writer::with_capacity(64 + pointers.len() * 48);
    w.u8(FORMAT_VERSION);
    w.raw(author.as_bytes());
    w.u64(time.ms());
    w.u32(time.logical());
    w.varint(pointers.len() as u32);
    for p in pointers {
        w.str(&p.local_context);
        w.target(&p.target);
        match &p.target_context {
            None => w.u8(0),
            Some(c) => {
                w.u8(1);
                w.str(c);
            }
        }
    }
    w.finish()
}

fn decode_pointer(r: &mut Reader<'_>) -> Result<Pointer> {
    let local_context = r.string("local context")?;
    let target = r.target()?;
    let target_context = match r.u8("target context flag")? {
        0 => None,
        1 => Some(r.string("target context")?),
        flag => return Err(Error::Decode(format!("invalid target context flag {flag}"))),
    };
    Ok(Pointer {
        local_context,
        target,
        target_context,
    })
}

/// Builds and signs a delta.
///
/// ```
/// use hypha_primitives::{DeltaBuilder, Hlc, KeyPair, Pointer};
///
/// let key = KeyPair::from_seed([1; 32]);
/// let delta = DeltaBuilder::new(Hlc::new(1_700_000_000_000, 0))
///     .pointer(Pointer::entity("user", "alice", "name"))
///     .pointer(Pointer::value("name", "Alice"))
///     .sign(&key)
///     .unwrap();
/// assert!(delta.verify().is_ok());
/// ```
#[derive(Clone, Debug)]
pub struct DeltaBuilder {
    time: Hlc,
    pointers: Vec<Pointer>,
}

impl DeltaBuilder {
    /// A delta written at `time` (take it from the writer's [`crate::HlcClock`]).
    pub fn new(time: Hlc) -> Self {
        Self {
            time,
            pointers: Vec::new(),
        }
    }
    /// Adds a pointer.
    pub fn pointer(mut self, pointer: Pointer) -> Self {
        self.pointers.push(pointer);
        self
    }
    /// Adds several pointers.
    pub fn pointers(mut self, pointers: impl IntoIterator<Item = Pointer>) -> Self {
        self.pointers.extend(pointers);
        self
    }
    /// Validates, encodes, hashes and signs.
    pub fn sign(self, key: &KeyPair) -> Result<Delta> {
        validate(&self.pointers)?;
        let author = key.author();
        let body = encode_body(author, self.time, &self.pointers);
        let id = DeltaId::from_bytes(*blake3::hash(&body).as_bytes());
        let signature = key.sign(&body);
        Ok(Delta {
            id,
            author,
            time: self.time,
            pointers: self.pointers,
            signature,
            body,
        })
    }
}

/// Verifies many deltas' signatures at once, returning one result per delta in order.
///
/// Uses batch verification (about three times the single-verify rate) under the same
/// acceptance rule as [`Delta::verify`] (see `markdown/DATA-MODEL.md`); when a batch fails
/// it is split in halves until the bad signatures are found, so one forgery costs
/// O(log n) extra batch checks and never rejects its honest neighbours.
pub fn verify_batch(deltas: &[&Delta]) -> Vec<Result<()>> {
    let items: Vec<(&[u8; 32], &[u8], &Signature)> = deltas
        .iter()
        .map(|d| (d.author.as_bytes(), d.body.as_slice(), &d.signature))
        .collect();
    verify_many(&items)
        .into_iter()
        .zip(deltas)
        .map(|(ok, d)| {
            if ok {
                Ok(())
            } else {
                Err(Error::BadSignature {
                    id: d.id.to_string(),
                })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
