//! Origin stamps signed per batch, in a real journal: one signature per batch of local
//! writes, relayed batches checked once however they arrive, proofs rebuilt for deltas
//! leaving the journal, and forged proofs refused before anything is stored.

mod common;

use std::sync::Arc;

use common::{key, set};
use hypha_delta_store::{Durability, Error, StampedDelta, Store};
use hypha_primitives::{BatchStamp, Delta, Seq, Stamp, StampProof};

fn open(dir: &tempfile::TempDir) -> Store {
    Store::builder(dir.path())
        .durability(Durability::Buffered)
        .open()
        .unwrap()
}

fn writes(n: u64) -> Vec<Delta> {
    (0..n)
        .map(|i| set(&key(1), i + 1, &format!("e{}", i % 7), "p", i as i64))
        .collect()
}

/// Every delta of `store` stamped by `host`, in seq order, with its proofs filled in.
fn exported(store: &Store, host: hypha_primitives::HostId) -> Vec<StampedDelta> {
    let mut out: Vec<StampedDelta> = store
        .scan_origin(host, Seq::FIRST, Seq::new(u64::MAX))
        .map(|r| {
            let (_, stored) = r.unwrap();
            StampedDelta {
                delta: stored.delta,
                stamps: stored.stamps,
            }
        })
        .collect();
    store.prove(&mut out).unwrap();
    out
}

#[test]
fn local_writes_cost_one_signature_per_batch_and_a_relay_checks_each_batch_once() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (open(&a_dir), open(&b_dir));
    let host = key(9);
    // 2,500 writes in one put: batches of 1,024, 1,024 and 452 seqs.
    a.put_local_batch(writes(2_500), &host).unwrap();
    let sent = exported(&a, host.host_id());
    assert_eq!(sent.len(), 2_500);
    let batches: std::collections::BTreeSet<(u64, u64)> = sent
        .iter()
        .map(|d| {
            let batch = d.stamps[0].batch().expect("a stamp of a batch");
            (batch.first().get(), batch.last().get())
        })
        .collect();
    assert_eq!(
        batches.into_iter().collect::<Vec<_>>(),
        vec![(1, 1_024), (1_025, 2_048), (2_049, 2_500)]
    );
    // B receives them in the worst order for a cache: lone deltas and odd slices,
    // backwards, some twice.
    let mut pieces: Vec<Vec<StampedDelta>> = Vec::new();
    let mut rest = &sent[..];
    let mut size = 1;
    while !rest.is_empty() {
        let n = size.min(rest.len());
        pieces.push(rest[..n].to_vec());
        rest = &rest[n..];
        size = size * 3 % 97 + 1;
    }
    pieces.reverse();
    pieces.push(sent[10..20].to_vec());
    for piece in pieces {
        b.put_batch(piece).unwrap();
    }
    assert_eq!(
        b.stamps_verified(),
        3,
        "one signature check per batch, however the batch arrived"
    );
    // What B sends on is what A sent: every stamp proven, each against its one batch.
    let relayed = exported(&b, host.host_id());
    assert_eq!(relayed, sent);
    for d in &relayed {
        d.stamps[0].verify(d.delta.id()).unwrap();
    }
    // A third journal takes B's export whole, and also checks three signatures.
    let c_dir = tempfile::tempdir().unwrap();
    let c = open(&c_dir);
    c.put_batch(relayed).unwrap();
    assert_eq!(c.stamps_verified(), 3);
}

#[test]
fn a_forged_truncated_or_moved_proof_is_refused_and_stores_nothing() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (open(&a_dir), open(&b_dir));
    let host = key(9);
    a.put_local_batch(writes(40), &host).unwrap();
    let sent = exported(&a, host.host_id());
    let parts = |d: &StampedDelta| match d.stamps[0].proof().clone() {
        StampProof::Batch { batch, path } => (batch, path),
        other => panic!("{other:?}"),
    };
    let (batch, path) = parts(&sent[5]);
    let mut flipped = path.to_vec();
    flipped[0][0] ^= 1;
    let forgeries = [
        // A changed hash in the path.
        Stamp::in_batch(Arc::clone(&batch), Seq::new(6), flipped.into()),
        // A path cut short.
        Stamp::in_batch(Arc::clone(&batch), Seq::new(6), path[1..].to_vec().into()),
        // Another delta's proof.
        sent[6].stamps[0].clone(),
        // The right proof under a changed batch signature.
        Stamp::in_batch(
            Arc::new(
                BatchStamp::decode(&{
                    let mut bytes = batch.encode();
                    bytes[100] ^= 1;
                    bytes
                })
                .unwrap(),
            ),
            Seq::new(6),
            path,
        ),
    ];
    for forged in forgeries {
        let mut item = sent[5].clone();
        item.stamps = vec![forged];
        let err = b
            .put_batch(vec![sent[4].clone(), item])
            .expect_err("a forged proof");
        assert!(
            matches!(err, Error::Invalid { index: 1, .. }),
            "names the forged item: {err}"
        );
        assert!(err.is_rejected_input());
        assert!(
            b.get(sent[4].delta.id()).unwrap().is_none(),
            "nothing stored"
        );
    }
    // A stamp that only names its batch proves nothing and is refused too.
    let mut named = sent[5].clone();
    named.stamps = vec![named.stamps[0].to_named()];
    assert!(b.put_batch(vec![named]).is_err());
    b.put_batch(sent).unwrap();
}

#[test]
fn a_second_batch_from_the_same_seq_is_dropped_as_equivocation() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (open(&a_dir), open(&b_dir));
    let host = key(9);
    a.put_local_batch(writes(4), &host).unwrap();
    let sent = exported(&a, host.host_id());
    b.put_batch(sent.clone()).unwrap();
    // The same host signs other deltas as seqs 1..=2.
    let others = vec![
        set(&key(1), 100, "x", "p", 1),
        set(&key(1), 101, "x", "p", 2),
    ];
    let ids: Vec<_> = others.iter().map(Delta::id).collect();
    let stamps = Stamp::sign_batch(&ids, Seq::FIRST, &host).unwrap();
    let items: Vec<StampedDelta> = others
        .into_iter()
        .zip(stamps)
        .map(|(delta, stamp)| StampedDelta {
            delta,
            stamps: vec![stamp],
        })
        .collect();
    let out = b.put_batch(items).unwrap();
    assert!(out.iter().all(|o| o.is_new()), "the deltas are stored");
    for id in ids {
        assert!(
            b.get(id).unwrap().unwrap().stamps.is_empty(),
            "without the equivocating stamps"
        );
    }
    assert_eq!(
        exported(&b, host.host_id()),
        sent,
        "the first batch still proves"
    );
}
