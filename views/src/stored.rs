//! The stored form of a materialized record: a compact, versioned binary encoding, so that
//! folding a delta into a record costs a few hundred nanoseconds of decoding rather than a
//! JSON parse, and records take a third of the space.
//!
//! Layout (version 1), with the primitives of [`hypha_primitives::codec`]:
//!
//! ```text
//! version          u8 = 1
//! entity           string
//! type             string
//! fields           count, then for each, in name order:
//!   name           string
//!   value          0 none | 1 target | 2 list: count, then targets
//!   deciders       varint (how many deltas decided it)
//!   decided_by     count, then ids [u8; 32]
//!   updated_at     0 | 1 ms u64, logical u32
//!   confidence     u32
//!   skipped        count, then id [u8; 32] and reason string
//! missing_required count, then strings
//! errors           count, then strings
//! ```
//!
//! Records are stored flat: a reference is a target, never a nested record.

use std::collections::BTreeMap;

use hypha_primitives::codec::{Reader, Writer};
use hypha_primitives::{DeltaId, EntityId, Hlc, Target};

use crate::lossy::{Confidence, Field, Record};
use crate::resolve::{FieldValue, Skipped};
use crate::{Error, Result};

const VERSION: u8 = 1;

fn count(w: &mut Writer, n: usize) {
    // Counts are bounded by the delta size limit and DECIDERS_KEPT, far below u32::MAX.
    w.varint(u32::try_from(n).unwrap_or(u32::MAX));
}

fn put_target(w: &mut Writer, value: &FieldValue) -> Result<()> {
    let target = match value {
        FieldValue::Primitive(p) => Target::Value(p.clone()),
        FieldValue::Entity(e) => Target::Entity(e.clone()),
        FieldValue::Delta(d) => Target::Delta(*d),
        FieldValue::List(_) | FieldValue::Record(_) => {
            return Err(Error::Corrupt(
                "a stored record holds only flat values".to_owned(),
            ))
        }
    };
    w.target(&target);
    Ok(())
}

/// The stored bytes of a flat record (references not followed).
pub(crate) fn encode_record(record: &Record) -> Result<Vec<u8>> {
    let mut w = Writer::with_capacity(128 + record.fields.len() * 64);
    w.u8(VERSION);
    w.str(record.entity.as_str());
    w.str(&record.entity_type);
    count(&mut w, record.fields.len());
    for (name, field) in &record.fields {
        w.str(name);
        match &field.value {
            None => w.u8(0),
            Some(FieldValue::List(items)) => {
                w.u8(2);
                count(&mut w, items.len());
                for item in items {
                    put_target(&mut w, item)?;
                }
            }
            Some(value) => {
                w.u8(1);
                put_target(&mut w, value)?;
            }
        }
        count(&mut w, field.deciders);
        count(&mut w, field.decided_by.len());
        for id in &field.decided_by {
            w.raw(id.as_bytes());
        }
        match field.updated_at {
            None => w.u8(0),
            Some(t) => {
                w.u8(1);
                w.u64(t.ms());
                w.u32(t.logical());
            }
        }
        w.u32(field.confidence.peers);
        count(&mut w, field.skipped.len());
        for skipped in &field.skipped {
            w.raw(skipped.id.as_bytes());
            w.str(&skipped.reason);
        }
    }
    count(&mut w, record.missing_required.len());
    for name in &record.missing_required {
        w.str(name);
    }
    count(&mut w, record.errors.len());
    for error in &record.errors {
        w.str(error);
    }
    Ok(w.finish())
}

fn corrupt(e: hypha_primitives::Error) -> Error {
    Error::Corrupt(format!("stored record: {e}"))
}

fn get_value(r: &mut Reader<'_>) -> Result<FieldValue> {
    Ok(FieldValue::from_target(&r.target().map_err(corrupt)?))
}

fn get_strings(r: &mut Reader<'_>, what: &str) -> Result<Vec<String>> {
    let n = r.varint(what).map_err(corrupt)?;
    (0..n).map(|_| r.string(what).map_err(corrupt)).collect()
}

/// Decodes a stored record; any damage is [`Error::Corrupt`].
pub(crate) fn decode_record(bytes: &[u8]) -> Result<Record> {
    let mut r = Reader::new(bytes);
    let version = r.u8("version").map_err(corrupt)?;
    if version != VERSION {
        return Err(Error::Corrupt(format!(
            "stored record version {version}, this build reads {VERSION}"
        )));
    }
    let entity = EntityId::new(r.string("entity").map_err(corrupt)?);
    let entity_type = r.string("type").map_err(corrupt)?;
    let mut fields = BTreeMap::new();
    for _ in 0..r.varint("field count").map_err(corrupt)? {
        let name = r.string("field name").map_err(corrupt)?;
        let value = match r.u8("value tag").map_err(corrupt)? {
            0 => None,
            1 => Some(get_value(&mut r)?),
            2 => {
                let n = r.varint("list length").map_err(corrupt)?;
                let items = (0..n).map(|_| get_value(&mut r)).collect::<Result<_>>()?;
                Some(FieldValue::List(items))
            }
            tag => return Err(Error::Corrupt(format!("stored record: value tag {tag}"))),
        };
        let deciders = r.varint("deciders").map_err(corrupt)? as usize;
        let listed = r.varint("decided_by length").map_err(corrupt)?;
        let decided_by = (0..listed)
            .map(|_| Ok(DeltaId::from_bytes(r.array("decider").map_err(corrupt)?)))
            .collect::<Result<_>>()?;
        let updated_at = match r.u8("updated_at flag").map_err(corrupt)? {
            0 => None,
            1 => {
                let ms = r.u64("updated_at").map_err(corrupt)?;
                let logical = r.u32("updated_at").map_err(corrupt)?;
                Some(Hlc::new(ms, logical))
            }
            flag => {
                return Err(Error::Corrupt(format!(
                    "stored record: updated_at flag {flag}"
                )))
            }
        };
        let confidence = Confidence {
            peers: r.u32("confidence").map_err(corrupt)?,
        };
        let n = r.varint("skipped length").map_err(corrupt)?;
        let skipped = (0..n)
            .map(|_| {
                Ok(Skipped {
                    id: DeltaId::from_bytes(r.array("skipped id").map_err(corrupt)?),
                    reason: r.string("skip reason").map_err(corrupt)?,
                })
            })
            .collect::<Result<_>>()?;
        fields.insert(
            name,
            Field {
                value,
                decided_by,
                deciders,
                updated_at,
                confidence,
                skipped,
            },
        );
    }
    let missing_required = get_strings(&mut r, "missing required")?;
    let errors = get_strings(&mut r, "errors")?;
    r.expect_end().map_err(corrupt)?;
    Ok(Record {
        entity,
        entity_type,
        fields,
        missing_required,
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypha_primitives::Primitive;

    fn sample() -> Record {
        let id = |n: u8| DeltaId::from_bytes([n; 32]);
        let field = |value, deciders, decided_by: Vec<DeltaId>| Field {
            value,
            deciders,
            decided_by,
            updated_at: Some(Hlc::new(1_700_000_000_000, 3)),
            confidence: Confidence { peers: 2 },
            skipped: vec![],
        };
        let mut fields = BTreeMap::new();
        fields.insert(
            "name".to_owned(),
            field(
                Some(FieldValue::Primitive(Primitive::String("Alice".into()))),
                1,
                vec![id(1)],
            ),
        );
        fields.insert(
            "tags".to_owned(),
            field(
                Some(FieldValue::List(vec![
                    FieldValue::Primitive(Primitive::Float(-0.0)),
                    FieldValue::Primitive(Primitive::Null),
                    FieldValue::Entity(EntityId::new("bob")),
                    FieldValue::Delta(id(9)),
                ])),
                40,
                vec![id(2), id(3)],
            ),
        );
        let mut empty = field(None, 0, vec![]);
        empty.updated_at = None;
        empty.skipped = vec![Skipped {
            id: id(4),
            reason: "not a number".into(),
        }];
        fields.insert("age".to_owned(), empty);
        Record {
            entity: EntityId::new("alice"),
            entity_type: "user".to_owned(),
            fields,
            missing_required: vec!["age".to_owned()],
            errors: vec!["transaction t is over-full".to_owned()],
        }
    }

    #[test]
    fn records_round_trip() {
        let record = sample();
        let bytes = encode_record(&record).unwrap();
        assert_eq!(decode_record(&bytes).unwrap(), record);
    }

    #[test]
    fn every_truncation_and_extension_is_corrupt_not_a_panic() {
        let bytes = encode_record(&sample()).unwrap();
        for len in 0..bytes.len() {
            assert!(matches!(
                decode_record(&bytes[..len]),
                Err(Error::Corrupt(_))
            ));
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(decode_record(&longer), Err(Error::Corrupt(_))));
        let mut other_version = bytes;
        other_version[0] = 2;
        assert!(matches!(
            decode_record(&other_version),
            Err(Error::Corrupt(_))
        ));
    }

    #[test]
    fn nested_records_are_refused() {
        let mut record = sample();
        let inner = sample();
        record.fields.get_mut("name").unwrap().value = Some(FieldValue::Record(Box::new(inner)));
        assert!(encode_record(&record).is_err());
    }
}
