//! Helpers shared by the store's integration tests.
#![allow(dead_code, unreachable_pub)]

use hypha_primitives::{Delta, DeltaBuilder, Hlc, KeyPair, Pointer};

pub fn key(seed: u8) -> KeyPair {
    KeyPair::from_seed([seed; 32])
}

/// "entity.property = value", written by `author` at time `ms`.
pub fn set(author: &KeyPair, ms: u64, entity: &str, property: &str, value: i64) -> Delta {
    DeltaBuilder::new(Hlc::new(ms, 0))
        .pointer(Pointer::entity("subject", entity, property))
        .pointer(Pointer::value(property, value))
        .sign(author)
        .unwrap()
}

/// A delta whose signature is not its author's.
pub fn forged(template: &Delta) -> Delta {
    let json = template.to_json();
    let mut json = json;
    json["signature"] = serde_json::Value::String("11".repeat(64));
    Delta::from_json(&json).unwrap()
}
