//! `hypha-bench reconcile`: range-based set reconciliation (`hypha_net::reconcile`) of two
//! sets of `items` deltas where one side holds `differ` more, both sides in this process.
//! Round trips and bytes are what the wire would carry; the reference for bytes is
//! sending every id, and for time one pass fingerprinting the whole set.

use std::time::Instant;

use anyhow::{ensure, Result};
use hypha_net::reconcile::{Item, ReconcileConfig, Reconciler};
use hypha_primitives::DeltaId;

use crate::figure;

fn item(n: u64) -> Item {
    Item {
        time: 1_700_000_000_000 + n / 4,
        id: DeltaId::from_bytes(*blake3::hash(&n.to_le_bytes()).as_bytes()),
    }
}

pub(crate) fn run(items: usize, differ: usize) -> Result<()> {
    let shared: Vec<Item> = (0..items as u64).map(item).collect();
    // The extra items are spread over the whole range.
    let extra: Vec<Item> = (0..differ as u64)
        .map(|k| {
            let mut it = item(u64::MAX - k);
            it.time = 1_700_000_000_000 + (k * 7919) % (items as u64 / 4 + 1);
            it
        })
        .collect();
    let mut more = shared.clone();
    more.extend(extra.iter().copied());
    let config = ReconcileConfig::default();
    let started = Instant::now();
    let initiator = Reconciler::new(shared, config);
    let responder = Reconciler::new(more, config);
    let built = started.elapsed();

    let started = Instant::now();
    let mut message = initiator.initiate();
    let (mut messages, mut bytes, mut learnt) = (1usize, 0usize, Vec::new());
    let mut responder_turn = true;
    loop {
        bytes += message.len();
        let side = if responder_turn {
            &responder
        } else {
            &initiator
        };
        let step = side.reconcile(&message)?;
        if !responder_turn {
            learnt.extend(step.need);
        }
        match step.reply {
            Some(reply) => {
                message = reply;
                messages += 1;
                responder_turn = !responder_turn;
            }
            None => break,
        }
        ensure!(messages < 1_000, "the exchange did not end");
    }
    let elapsed = started.elapsed();
    learnt.sort();
    let mut expected: Vec<DeltaId> = extra.iter().map(|i| i.id).collect();
    expected.sort();
    ensure!(
        learnt == expected,
        "the initiator learnt the wrong difference"
    );

    // The first message fingerprints the whole set once: the cost of reading it.
    let started = Instant::now();
    let first = initiator.initiate();
    let one_pass = started.elapsed();
    ensure!(!first.is_empty());

    figure("reconcile", "items_per_side", items as f64, "count", None);
    figure("reconcile", "differing", differ as f64, "count", None);
    figure(
        "reconcile",
        "round_trips",
        messages.div_ceil(2) as f64,
        "count",
        Some(("target_round_trips", 3.0)),
    );
    figure(
        "reconcile",
        "bytes",
        bytes as f64,
        "bytes",
        Some(("every_id_bytes", (items * 32) as f64)),
    );
    figure(
        "reconcile",
        "exchange_ms",
        elapsed.as_secs_f64() * 1e3,
        "ms",
        Some(("one_pass_fingerprint_ms", one_pass.as_secs_f64() * 1e3)),
    );
    figure(
        "reconcile",
        "sort_both_sets_ms",
        built.as_secs_f64() * 1e3,
        "ms",
        None,
    );
    Ok(())
}
