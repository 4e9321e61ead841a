//! The journal's public behaviour against a real RocksDB in a temp dir.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::{forged, key, set};
use hypha_delta_store::{Arrival, Durability, Error, PutOutcome, StampedDelta, Store};
use hypha_primitives::{DeltaBuilder, Filter, Hlc, Pointer, Seq, Stamp};

fn open(dir: &tempfile::TempDir) -> Store {
    Store::builder(dir.path())
        .durability(Durability::Buffered)
        .open()
        .unwrap()
}

#[test]
fn put_then_get_returns_the_same_delta_and_puts_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let d = set(&key(1), 10, "alice", "age", 30);
    let first = store.put(d.clone()).unwrap();
    assert_eq!((first.is_new(), first.arrival()), (true, Arrival::new(1)));
    let again = store.put(d.clone()).unwrap();
    assert_eq!((again.is_new(), again.arrival()), (false, Arrival::new(1)));
    assert_eq!(first.local_seq(), None, "a put that does not stamp");
    let got = store.get(d.id()).unwrap().unwrap();
    assert_eq!(got.delta, d);
    assert_eq!(got.arrival, Arrival::new(1));
    assert_eq!(store.scan_arrival(None).count(), 1);
}

#[test]
fn duplicates_inside_one_batch_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let d = set(&key(1), 10, "alice", "age", 30);
    let out = store
        .put_batch(vec![d.clone().into(), d.clone().into()])
        .unwrap();
    let seen: Vec<(bool, Arrival)> = out.iter().map(|o| (o.is_new(), o.arrival())).collect();
    assert_eq!(
        seen,
        vec![(true, Arrival::new(1)), (false, Arrival::new(1))]
    );
    assert_eq!(store.last_arrival().unwrap(), Some(Arrival::new(1)));
}

#[test]
fn scans_find_deltas_by_arrival_entity_author_and_filter() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let (a, b) = (key(1), key(2));
    let d1 = set(&a, 1, "alice", "age", 30);
    let d2 = set(&b, 2, "bob", "age", 40);
    let d3 = set(&a, 3, "alice", "name", 1);
    store
        .put_batch(vec![
            d1.clone().into(),
            d2.clone().into(),
            d3.clone().into(),
        ])
        .unwrap();

    let ids = |it: Vec<hypha_delta_store::StoredDelta>| {
        it.into_iter().map(|s| s.delta.id()).collect::<Vec<_>>()
    };
    let all: Vec<_> = store.scan_arrival(None).collect::<Result<_, _>>().unwrap();
    assert_eq!(ids(all), vec![d1.id(), d2.id(), d3.id()]);
    let after_first: Vec<_> = store
        .scan_arrival(Some(Arrival::new(1)))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(ids(after_first), vec![d2.id(), d3.id()]);

    let alice: BTreeSet<_> = store
        .scan_entity("alice", None)
        .map(|s| s.unwrap().delta.id())
        .collect();
    assert_eq!(alice, [d1.id(), d3.id()].into_iter().collect());
    let alice_age: Vec<_> = store
        .scan_entity("alice", Some("age"))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(ids(alice_age), vec![d1.id()]);
    let entities: Vec<String> = store.entities().collect::<Result<_, _>>().unwrap();
    assert_eq!(
        entities,
        vec!["bob".to_owned(), "alice".to_owned()],
        "ordered by length-prefixed key"
    );
    // "alic" is a string prefix of "alice" but not the same entity.
    assert_eq!(store.scan_entity("alic", None).count(), 0);

    let by_a: Vec<_> = store
        .scan_author(a.author())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(ids(by_a), vec![d1.id(), d3.id()]);
    assert_eq!(store.last_by_author(a.author()).unwrap().unwrap().delta, d3);
    assert_eq!(store.last_by_author(b.author()).unwrap().unwrap().delta, d2);
    assert!(store.last_by_author(key(3).author()).unwrap().is_none());

    let filter = Filter::from_json_str(r#"{"in": ["bob", {"var": "targets"}]}"#).unwrap();
    let matched: Vec<_> = store
        .scan_filter(&filter, None)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(ids(matched), vec![d2.id()]);
}

#[test]
fn negations_are_indexed_even_before_their_target_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let target = set(&key(1), 1, "alice", "age", 30);
    let negation = DeltaBuilder::new(Hlc::new(2, 0))
        .pointer(Pointer::negates(target.id()))
        .sign(&key(1))
        .unwrap();
    store.put(negation.clone()).unwrap();
    assert_eq!(
        store.negations_of(target.id()).unwrap(),
        vec![negation.id()]
    );
    assert!(store.get(target.id()).unwrap().is_none());
}

#[test]
fn local_writes_get_gap_free_origin_stamps_that_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let host = key(9);
    {
        let store = open(&dir);
        store
            .put_local_batch(
                vec![set(&key(1), 1, "e", "p", 1), set(&key(1), 2, "e", "p", 2)],
                &host,
            )
            .unwrap();
        // A delta already held is not stamped again.
        store
            .put_local_batch(vec![set(&key(1), 1, "e", "p", 1)], &host)
            .unwrap();
    }
    let store = open(&dir);
    let third = set(&key(1), 3, "e", "p", 3);
    store.put_local_batch(vec![third.clone()], &host).unwrap();
    let seqs: Vec<u64> = store
        .scan_origin(host.host_id(), Seq::FIRST, Seq::new(u64::MAX))
        .map(|r| r.unwrap().0.get())
        .collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    let stored = store.get(third.id()).unwrap().unwrap();
    assert_eq!(stored.stamps.len(), 1);
    assert!(
        stored.stamps[0].verify(third.id()).is_err(),
        "as stored, a stamp of a batch only names its batch"
    );
    proven_stamps(&store, &stored)[0]
        .verify(third.id())
        .unwrap();
    assert_eq!(
        store.highest_seq(host.host_id()).unwrap(),
        Some(Seq::new(3))
    );
    let origins: Vec<(hypha_primitives::HostId, u64)> = store
        .origins()
        .map(|o| o.map(|(h, s)| (h, s.get())))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        origins,
        vec![
            (host.host_id(), 1),
            (host.host_id(), 2),
            (host.host_id(), 3)
        ]
    );
    let window: Vec<u64> = store
        .scan_origin(host.host_id(), Seq::new(2), Seq::new(2))
        .map(|r| r.unwrap().0.get())
        .collect();
    assert_eq!(window, vec![2]);
}

#[test]
fn a_duplicate_with_a_new_stamp_gains_the_stamp() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let d = set(&key(1), 1, "e", "p", 1);
    let (h1, h2) = (key(7), key(8));
    let s1 = Stamp::sign(d.id(), Seq::new(1), &h1);
    let s2 = Stamp::sign(d.id(), Seq::new(1), &h2);
    store
        .put_batch(vec![StampedDelta {
            delta: d.clone(),
            stamps: vec![s1.clone()],
        }])
        .unwrap();
    let out = store
        .put_batch(vec![StampedDelta {
            delta: d.clone(),
            stamps: vec![s2.clone(), s1.clone()],
        }])
        .unwrap();
    assert!(!out[0].is_new());
    let stored = store.get(d.id()).unwrap().unwrap();
    assert_eq!(stored.stamps, vec![s1, s2]);
    assert_eq!(
        store.delta_at_origin(h2.host_id(), Seq::new(1)).unwrap(),
        Some(d.id())
    );
}

#[test]
fn an_equivocating_stamp_is_dropped_and_the_first_claim_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let host = key(7);
    let (d1, d2) = (set(&key(1), 1, "e", "p", 1), set(&key(1), 2, "e", "p", 2));
    let s1 = Stamp::sign(d1.id(), Seq::new(1), &host);
    let s2 = Stamp::sign(d2.id(), Seq::new(1), &host);
    store
        .put_batch(vec![StampedDelta {
            delta: d1.clone(),
            stamps: vec![s1],
        }])
        .unwrap();
    store
        .put_batch(vec![StampedDelta {
            delta: d2.clone(),
            stamps: vec![s2],
        }])
        .unwrap();
    assert_eq!(
        store.delta_at_origin(host.host_id(), Seq::new(1)).unwrap(),
        Some(d1.id())
    );
    assert!(store.get(d2.id()).unwrap().unwrap().stamps.is_empty());
}

/// Checks that `result` is the typed rejection and that nothing was stored.
fn assert_rejected(store: &Store, result: Result<Vec<PutOutcome>, Error>, expect: &str) {
    let err = result.expect_err("bad input must be rejected");
    assert!(err.is_rejected_input(), "{err}");
    assert!(
        err.to_string().contains(expect),
        "expected {expect:?} in {err}"
    );
    assert_eq!(
        store.last_arrival().unwrap(),
        None,
        "store changed after a rejected put"
    );
    assert_eq!(store.scan_arrival(None).count(), 0);
}

#[test]
fn a_bad_signature_rejects_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let good = set(&key(1), 1, "e", "p", 1);
    let bad = forged(&set(&key(1), 2, "e", "p", 2));
    let result = store.put_batch(vec![good.clone().into(), bad.into()]);
    assert_rejected(
        &store,
        result,
        "delta 1 of the batch is invalid: bad signature",
    );
    assert!(store.get(good.id()).unwrap().is_none());
}

#[test]
fn an_oversized_delta_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .max_delta_bytes(1024)
        .open()
        .unwrap();
    let big = DeltaBuilder::new(Hlc::new(1, 0))
        .pointer(Pointer::value("blob", "x".repeat(2000)))
        .sign(&key(1))
        .unwrap();
    let result = store.put_batch(vec![big.into()]);
    assert_rejected(&store, result, "over the limit of 1024 bytes");
}

#[test]
fn an_unknown_author_is_rejected_under_an_allow_list() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .allowed_authors([key(1).author()])
        .open()
        .unwrap();
    let result = store.put_batch(vec![set(&key(2), 1, "e", "p", 1).into()]);
    assert_rejected(&store, result, "unknown author");
    assert!(store.put(set(&key(1), 1, "e", "p", 1)).unwrap().is_new());
}

#[test]
fn a_forged_stamp_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let d = set(&key(1), 1, "e", "p", 1);
    let other = set(&key(1), 2, "e", "p", 2);
    let stamp_for_other = Stamp::sign(other.id(), Seq::new(1), &key(7));
    let result = store.put_batch(vec![StampedDelta {
        delta: d,
        stamps: vec![stamp_for_other],
    }]);
    assert_rejected(&store, result, "bad origin stamp");
}

#[test]
fn a_second_open_of_the_same_folder_says_it_is_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(&dir);
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    assert!(err.to_string().contains("is a hypha node running"), "{err}");
}

#[test]
fn invalid_configuration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = Store::builder(dir.path())
        .max_delta_bytes(10)
        .open()
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
}

#[test]
fn reopening_keeps_every_delta_and_continues_the_arrival_order() {
    let dir = tempfile::tempdir().unwrap();
    let d1 = set(&key(1), 1, "e", "p", 1);
    {
        let store = Store::open(dir.path()).unwrap();
        store.put(d1.clone()).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.get(d1.id()).unwrap().unwrap().delta, d1);
    let out = store.put(set(&key(1), 2, "e", "p", 2)).unwrap();
    assert_eq!((out.is_new(), out.arrival()), (true, Arrival::new(2)));
}

#[test]
fn the_live_feed_announces_new_deltas_in_arrival_order_and_not_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut feed = store.subscribe();
    let (d1, d2) = (set(&key(1), 1, "e", "p", 1), set(&key(1), 2, "e", "p", 2));
    store.put(d1.clone()).unwrap();
    store.put(d1.clone()).unwrap();
    store.put(d2.clone()).unwrap();
    assert_eq!(feed.try_recv().unwrap().delta, d1);
    assert_eq!(feed.try_recv().unwrap().delta, d2);
    assert!(feed.try_recv().is_err());
}

#[test]
fn concurrent_writers_all_land_with_unique_contiguous_arrivals() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .durability(Durability::Fsync)
        .open()
        .unwrap();
    let host = Arc::new(key(9));
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let store = store.clone();
            let host = Arc::clone(&host);
            std::thread::spawn(move || {
                for i in 0..50u64 {
                    let d = set(&key(t + 1), i, "e", "p", i as i64);
                    store.put_local_batch(vec![d], &host).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let arrivals: Vec<u64> = store
        .scan_arrival(None)
        .map(|s| s.unwrap().arrival.get())
        .collect();
    assert_eq!(arrivals, (1..=200).collect::<Vec<_>>());
    let seqs: Vec<u64> = store
        .scan_origin(host.host_id(), Seq::FIRST, Seq::new(u64::MAX))
        .map(|r| r.unwrap().0.get())
        .collect();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
}

mod model {
    //! The store against a model: whatever order and duplication puts come in, the stored
    //! set is the set of distinct deltas, each once, with arrivals 1..=n.
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn store_matches_a_set_model(picks in proptest::collection::vec((0usize..12, 1usize..4), 1..30)) {
            let pool: Vec<_> = (0..12).map(|i| set(&key(1), i as u64, "e", "p", i as i64)).collect();
            let dir = tempfile::tempdir().unwrap();
            let store = open(&dir);
            let mut model = BTreeSet::new();
            for (start, len) in picks {
                let batch: Vec<StampedDelta> = (start..start + len).map(|i| pool[i % 12].clone().into()).collect();
                let out = store.put_batch(batch.clone()).unwrap();
                for (item, outcome) in batch.iter().zip(out) {
                    prop_assert_eq!(outcome.is_new(), model.insert(item.delta.id()));
                }
            }
            let stored: BTreeSet<_> = store.scan_arrival(None).map(|s| s.unwrap().delta.id()).collect();
            prop_assert_eq!(&stored, &model);
            prop_assert_eq!(store.last_arrival().unwrap().map(|a| a.get()), Some(model.len() as u64));
        }
    }
}

#[test]
fn filters_see_the_stamping_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let (h1, h2) = (key(7), key(8));
    store
        .put_local_batch(vec![set(&key(1), 1, "e", "p", 1)], &h1)
        .unwrap();
    store
        .put_local_batch(vec![set(&key(1), 2, "e", "p", 2)], &h2)
        .unwrap();
    let rule = format!(r#"{{"in": ["{}", {{"var": "hosts"}}]}}"#, h2.host_id());
    let filter = Filter::from_json_str(&rule).unwrap();
    let matched: Vec<_> = store
        .scan_filter(&filter, None)
        .map(|s| s.unwrap().delta.time().ms())
        .collect();
    assert_eq!(matched, vec![2]);
}

#[test]
fn a_slow_feed_subscriber_is_told_it_lagged_and_can_resume_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .durability(Durability::Buffered)
        .feed_capacity(2)
        .open()
        .unwrap();
    let mut feed = store.subscribe();
    for i in 0..5u64 {
        store.put(set(&key(1), i, "e", "p", i as i64)).unwrap();
    }
    match feed.try_recv() {
        Err(tokio::sync::broadcast::error::TryRecvError::Lagged(missed)) => assert_eq!(missed, 3),
        other => panic!("expected a lag, got {other:?}"),
    }
    // The two newest are still in the feed; everything is in the journal.
    assert_eq!(feed.try_recv().unwrap().arrival, Arrival::new(4));
    let resumed: Vec<u64> = store
        .scan_arrival(Some(Arrival::new(1)))
        .map(|s| s.unwrap().arrival.get())
        .collect();
    assert_eq!(resumed, vec![2, 3, 4, 5]);
}

#[test]
fn a_relayed_delta_already_stored_is_not_verified_again_but_its_new_stamps_are() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let d = set(&key(1), 1, "e", "p", 1);
    let s7 = Stamp::sign(d.id(), Seq::new(1), &key(7));
    assert_eq!(store.stamps_verified(), 0);
    store
        .put_batch(vec![StampedDelta {
            delta: d.clone(),
            stamps: vec![s7.clone()],
        }])
        .unwrap();
    assert_eq!(store.stamps_verified(), 1, "the stamp was checked");
    // Relayed again (it carries its stamp) with a broken signature: the stored copy is
    // kept, so this is a plain duplicate, not an error, and costs no signature check.
    let out = store
        .put_batch(vec![StampedDelta {
            delta: forged(&d),
            stamps: vec![s7.clone()],
        }])
        .unwrap();
    assert!(!out[0].is_new());
    assert_eq!(
        store.stamps_verified(),
        1,
        "a known stamp is not checked again"
    );
    assert_eq!(store.get(d.id()).unwrap().unwrap().delta, d);
    // Without stamps it is checked like any client write, and refused.
    let err = store
        .put_batch(vec![forged(&d).into()])
        .expect_err("an unstamped forgery is verified");
    assert!(err.is_rejected_input(), "{err}");
    // A stamp from a host it has none from yet is still checked.
    let wrong = Stamp::sign(d.id(), Seq::new(1), &key(7));
    let claimed = Stamp::from_parts(key(8).host_id(), Seq::new(1), wrong.signature().unwrap());
    let err = store
        .put_batch(vec![StampedDelta {
            delta: d.clone(),
            stamps: vec![claimed],
        }])
        .expect_err("a forged stamp must be rejected");
    assert!(err.is_rejected_input(), "{err}");
    assert_eq!(store.get(d.id()).unwrap().unwrap().stamps, vec![s7]);
}

#[test]
fn a_large_local_batch_with_duplicates_gets_one_valid_stamp_per_delta_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let host = key(9);
    store
        .put_local_batch(vec![set(&key(1), 0, "e", "p", 0)], &host)
        .unwrap();
    // 300 new deltas, a repeat of one of them, and one already held: stamps are signed in
    // parallel ahead of staging, and must come out exactly as one-by-one signing would.
    let mut batch: Vec<_> = (1..=300)
        .map(|n| set(&key(1), n, "e", "p", n as i64))
        .collect();
    batch.push(batch[7].clone());
    batch.push(set(&key(1), 0, "e", "p", 0));
    store.put_local_batch(batch.clone(), &host).unwrap();
    let placed: Vec<(u64, hypha_primitives::DeltaId)> = store
        .scan_origin(host.host_id(), Seq::FIRST, Seq::new(u64::MAX))
        .map(|r| {
            let (seq, stored) = r.unwrap();
            (seq.get(), stored.delta.id())
        })
        .collect();
    assert_eq!(placed.len(), 301);
    for (i, (seq, id)) in placed.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1, "seqs are gap-free");
        let stored = store.get(*id).unwrap().unwrap();
        assert_eq!(stored.stamps.len(), 1);
        assert_eq!(stored.stamps[0].seq().get(), *seq);
        proven_stamps(&store, &stored)[0].verify(*id).unwrap();
    }
    assert_eq!(placed[1].1, batch[0].id(), "batch order is seq order");
}

#[test]
fn a_batch_verified_first_is_stored_later_and_a_forgery_is_refused_before_anything_is() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let good: Vec<StampedDelta> = (0..3)
        .map(|n| {
            let d = set(&key(1), 10 + n, "e", "p", n as i64);
            let stamp = Stamp::sign(d.id(), Seq::new(n + 1), &key(7));
            StampedDelta {
                delta: d,
                stamps: vec![stamp],
            }
        })
        .collect();
    let verified = store.verify_batch(good.clone()).unwrap();
    assert_eq!(verified.len(), 3);
    assert_eq!(store.stamps_verified(), 3);
    assert!(
        store.get(good[0].delta.id()).unwrap().is_none(),
        "verified, not stored"
    );
    let outcomes = store.put_verified(verified).unwrap();
    assert!(outcomes.iter().all(PutOutcome::is_new));
    for stamped in &good {
        let stored = store.get(stamped.delta.id()).unwrap().unwrap();
        assert_eq!(stored.stamps, stamped.stamps);
    }
    // A forgery anywhere in the batch is found at verification, naming its place.
    let mut bad: Vec<StampedDelta> = vec![set(&key(2), 20, "f", "p", 1).into()];
    bad.push(forged(&set(&key(2), 21, "f", "p", 2)).into());
    let err = store.verify_batch(bad).expect_err("a forged delta");
    assert!(matches!(err, Error::Invalid { index: 1, .. }), "{err}");
}

#[test]
fn many_deltas_are_read_at_once_in_the_order_asked() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let a = set(&key(1), 1, "e", "p", 1);
    let b = set(&key(1), 2, "e", "p", 2);
    store
        .put_batch(vec![a.clone().into(), b.clone().into()])
        .unwrap();
    let absent = hypha_primitives::DeltaId::from_bytes([9; 32]);
    let got = store.get_many(&[b.id(), absent, a.id()]).unwrap();
    assert_eq!(got[0].as_ref().map(|s| s.delta.id()), Some(b.id()));
    assert!(got[1].is_none());
    assert_eq!(got[2].as_ref().map(|s| s.delta.id()), Some(a.id()));
    assert!(store.get_many(&[]).unwrap().is_empty());
    // Their stamps alone, in the same order, as the full reads have them.
    let host = hypha_primitives::KeyPair::from_seed([3; 32]);
    let c = set(&key(1), 3, "e", "p", 3);
    store.put_local_batch(vec![c.clone()], &host).unwrap();
    let stamps = store.stamps_many(&[c.id(), absent, a.id()]).unwrap();
    let full = store.get(c.id()).unwrap().unwrap();
    assert_eq!(stamps[0].as_deref(), Some(full.stamps.as_slice()));
    assert_eq!(stamps[0].as_ref().unwrap()[0].host(), host.host_id());
    assert!(stamps[1].is_none());
    assert_eq!(
        stamps[2].as_deref(),
        Some(&[][..]),
        "stored without a stamp"
    );
}

#[test]
fn a_local_writer_signs_stamps_and_stores_and_its_clock_survives_a_restart() {
    use hypha_delta_store::LocalWriter;
    use hypha_primitives::Pointer;

    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let writer = LocalWriter::new(store.clone(), key(5)).unwrap();
    let (first, outcome) = writer.write(vec![Pointer::value("n", 1)]).unwrap();
    assert!(outcome.is_new());
    assert_eq!(
        outcome.local_seq(),
        Some(Seq::new(1)),
        "the write's own stamp, at once"
    );
    let (second, outcome) = writer.write(vec![Pointer::value("n", 2)]).unwrap();
    assert_eq!(outcome.local_seq(), Some(Seq::new(2)));
    assert!(second.time() > first.time(), "its clock only moves on");
    let stored = store.get(second.id()).unwrap().unwrap();
    assert_eq!(stored.delta.author(), key(5).author());
    assert_eq!(
        (stored.stamps[0].host(), stored.stamps[0].seq()),
        (key(5).host_id(), Seq::new(2)),
        "stamped by the node as its second"
    );
    // A writer made again over the same journal continues after what the key wrote.
    let again = LocalWriter::new(store.clone(), key(5)).unwrap();
    assert!(again.tick() > second.time());
    // What cannot be signed is refused as invalid input, and nothing is stored.
    let huge = Pointer::value("n", "x".repeat(2 << 20));
    let err = again.write(vec![huge]).expect_err("too large a delta");
    assert!(err.is_rejected_input(), "{err}");
    assert_eq!(store.last_arrival().unwrap().map(|a| a.get()), Some(2));
}

/// A stored delta's stamps with their proofs filled in, as they leave the journal.
fn proven_stamps(store: &Store, stored: &hypha_delta_store::StoredDelta) -> Vec<Stamp> {
    let mut deltas = vec![StampedDelta {
        delta: stored.delta.clone(),
        stamps: stored.stamps.clone(),
    }];
    store.prove(&mut deltas).unwrap();
    deltas.remove(0).stamps
}
