//! Random delta sets for the views' property tests.
#![allow(dead_code, unreachable_pub)]

use hypha_primitives::{Delta, DeltaBuilder, Hlc, KeyPair, Pointer};
use hypha_views::{TRANSACTION, TRANSACTION_MEMBER, TRANSACTION_SIZE};
use proptest::prelude::*;

#[derive(Clone, Debug)]
pub enum Op {
    /// entity, property, value, optional transaction
    Set(u8, u8, i64, Option<u8>),
    /// negate the delta made by an earlier op (index modulo the number made so far)
    Negate(usize),
    /// transaction, declared size
    Declare(u8, u8),
}

pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..2, 0u8..2, -5i64..5, proptest::option::weighted(0.3, 0u8..2)).prop_map(|(e, p, v, t)| Op::Set(e, p, v, t)),
        2 => any::<usize>().prop_map(Op::Negate),
        1 => (0u8..2, 0u8..4).prop_map(|(t, n)| Op::Declare(t, n)),
    ]
}

pub fn build(ops: &[Op]) -> Vec<Delta> {
    let keys = [KeyPair::from_seed([1; 32]), KeyPair::from_seed([2; 32])];
    let mut deltas: Vec<Delta> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        // Few distinct times, so ties happen.
        let builder = DeltaBuilder::new(Hlc::new((i % 4) as u64, 0));
        let builder = match op {
            Op::Set(e, p, v, tx) => {
                let prop = format!("p{p}");
                let b = builder
                    .pointer(Pointer::entity("subject", format!("e{e}"), prop.clone()))
                    .pointer(Pointer::value(prop, *v));
                match tx {
                    Some(t) => b.pointer(Pointer::entity(
                        TRANSACTION,
                        format!("tx{t}"),
                        TRANSACTION_MEMBER,
                    )),
                    None => b,
                }
            }
            Op::Negate(n) if !deltas.is_empty() => {
                builder.pointer(Pointer::negates(deltas[n % deltas.len()].id()))
            }
            Op::Negate(_) => continue,
            Op::Declare(t, n) => builder
                .pointer(Pointer::entity(
                    TRANSACTION,
                    format!("tx{t}"),
                    TRANSACTION_SIZE,
                ))
                .pointer(Pointer::value(TRANSACTION_SIZE, *n as i64)),
        };
        deltas.push(builder.sign(&keys[i % 2]).unwrap());
    }
    deltas
}
