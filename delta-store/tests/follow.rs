//! Following the journal: every delta once, in arrival order, whether the follower starts
//! behind, keeps up through the feed, or falls behind the feed.

mod common;

use std::time::Duration;

use common::{key, set};
use hypha_delta_store::{Arrival, Durability, Store};

fn open(dir: &tempfile::TempDir, feed_capacity: usize) -> Store {
    Store::builder(dir.path())
        .durability(Durability::Buffered)
        .feed_capacity(feed_capacity)
        .open()
        .unwrap()
}

fn write(store: &Store, from: u64, count: u64) {
    for n in from..from + count {
        store.put(set(&key(1), n, "e", "p", n as i64)).unwrap();
    }
}

fn arrivals(batch: &[std::sync::Arc<hypha_delta_store::StoredDelta>]) -> Vec<u64> {
    batch.iter().map(|d| d.arrival.get()).collect()
}

#[test]
fn a_follower_reads_what_came_before_then_takes_the_feed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 1024);
    write(&store, 1, 10);
    let mut follower = store.follow(None);
    assert_eq!(arrivals(&follower.ready(4).unwrap()), [1, 2, 3, 4]);
    assert_eq!(arrivals(&follower.ready(4).unwrap()), [5, 6, 7, 8]);
    // Stored while the follower was reading the journal: in the feed and in the journal.
    write(&store, 100, 3);
    assert_eq!(arrivals(&follower.ready(100).unwrap()), [9, 10, 11, 12, 13]);
    assert!(follower.ready(100).unwrap().is_empty(), "caught up");
    write(&store, 200, 2);
    assert_eq!(arrivals(&follower.ready(100).unwrap()), [14, 15]);
    assert_eq!(follower.cursor(), Some(Arrival::new(15)));
    // Resuming from a cursor starts right after it.
    let mut resumed = store.follow(Some(Arrival::new(12)));
    assert_eq!(arrivals(&resumed.ready(100).unwrap()), [13, 14, 15]);
}

#[test]
fn a_follower_that_falls_behind_the_feed_reads_the_journal_and_misses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 4);
    let mut follower = store.follow(None);
    assert!(follower.ready(10).unwrap().is_empty());
    // Far more than the feed holds.
    write(&store, 1, 50);
    let mut seen = Vec::new();
    loop {
        let batch = follower.ready(7).unwrap();
        if batch.is_empty() {
            break;
        }
        seen.extend(arrivals(&batch));
    }
    assert_eq!(seen, (1..=50).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_waits_for_the_next_delta() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 1024);
    let mut follower = store.follow(None);
    assert!(follower.ready(10).unwrap().is_empty());
    let waiting = tokio::time::timeout(Duration::from_millis(100), follower.changed()).await;
    assert!(waiting.is_err(), "nothing stored: still waiting");
    let writer = store.clone();
    tokio::task::spawn_blocking(move || write(&writer, 1, 1));
    assert!(
        tokio::time::timeout(Duration::from_secs(5), follower.changed())
            .await
            .unwrap()
    );
    assert_eq!(arrivals(&follower.ready(10).unwrap()), [1]);
}

#[test]
fn a_proving_follower_hands_out_stamps_with_their_proofs() {
    use hypha_primitives::{KeyPair, StampProof};
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 1024);
    let host = KeyPair::from_seed([9; 32]);
    // Stamped in one batch: the journal keeps each stamp as a name of its batch.
    let deltas = (1..=5)
        .map(|n| set(&key(1), n, "e", "p", n as i64))
        .collect();
    store.put_local_batch(deltas, &host).unwrap();
    let named = |batch: &[std::sync::Arc<hypha_delta_store::StoredDelta>]| {
        batch
            .iter()
            .flat_map(|d| &d.stamps)
            .filter(|s| matches!(s.proof(), StampProof::Named { .. }))
            .count()
    };
    let plain = store.follow(None).ready(10).unwrap();
    assert_eq!(plain.len(), 5);
    assert_eq!(named(&plain), 5, "read back as stored");
    let proven = store.follow(None).proving().ready(10).unwrap();
    assert_eq!(arrivals(&proven), [1, 2, 3, 4, 5]);
    assert_eq!(named(&proven), 0, "every stamp carries its proof");
    for stored in &proven {
        for stamp in &stored.stamps {
            assert!(
                matches!(stamp.proof(), StampProof::Batch { .. }),
                "{stamp:?}"
            );
        }
    }
}
