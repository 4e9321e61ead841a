//! Crash safety for real: a child process writes and reports each acknowledged delta, the
//! test kills it with SIGKILL mid-stream, reopens the journal and checks that every
//! acknowledged delta is there with all its index entries, and that nothing is half-written.
//!
//! The child is this same test binary, re-run with `--exact crash_child_writer --ignored`.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::{key, set};
use hypha_delta_store::{Durability, Store};
use hypha_primitives::{DeltaId, Seq};

const DIR_VAR: &str = "HYPHA_CRASH_DIR";
const DURABILITY_VAR: &str = "HYPHA_CRASH_DURABILITY";

fn durability_from(name: &str) -> Durability {
    match name {
        "fsync" => Durability::Fsync,
        _ => Durability::Buffered,
    }
}

/// The child: writes batches of 1–5 deltas forever, printing `ack <id>` after each batch
/// is acknowledged. Does nothing unless started by the crash test.
#[test]
#[ignore = "child process of acknowledged_writes_survive_sigkill"]
fn crash_child_writer() {
    let Some(dir) = std::env::var_os(DIR_VAR) else {
        return;
    };
    let durability = durability_from(&std::env::var(DURABILITY_VAR).unwrap_or_default());
    let store = Store::builder(&dir).durability(durability).open().unwrap();
    let (author, host) = (key(1), key(9));
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        let batch: Vec<_> = (0..(i % 5 + 1))
            .map(|j| set(&author, i * 10 + j, &format!("e{}", i % 7), "p", j as i64))
            .collect();
        let ids: Vec<DeltaId> = batch.iter().map(|d| d.id()).collect();
        store.put_local_batch(batch, &host).unwrap();
        for id in ids {
            writeln!(out, "ack {id}").unwrap();
        }
        out.flush().unwrap();
    }
}

fn crash_and_check(durability: &str, kill_after: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child_writer",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_VAR, dir.path())
        .env(DURABILITY_VAR, durability)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        if let Some(id) = line.unwrap().strip_prefix("ack ") {
            acked.push(id.parse::<DeltaId>().unwrap());
            if acked.len() == kill_after {
                // Child::kill sends SIGKILL: no destructors, no flush, no goodbye.
                child.kill().unwrap();
                break;
            }
        }
    }
    child.wait().unwrap();
    assert_eq!(
        acked.len(),
        kill_after,
        "the child stopped before it was killed"
    );

    let store = Store::open(dir.path()).unwrap();
    // Every acknowledged delta is there, with its index entries.
    let host = key(9).host_id();
    for id in &acked {
        let stored = store
            .get(*id)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged delta {id} lost"));
        let (entity, _) = stored.delta.target_entities().next().unwrap();
        assert!(
            store
                .scan_entity_ids(entity.as_str(), Some("p"))
                .any(|e| e.unwrap() == *id),
            "entity index lost {id}"
        );
        assert_eq!(stored.stamps.len(), 1);
        assert_eq!(
            store.delta_at_origin(host, stored.stamps[0].seq()).unwrap(),
            Some(*id),
            "origin index lost {id}"
        );
    }
    // Nothing is half-written: every arrival entry loads its record, arrivals and origin
    // sequence numbers are gap-free, and the author index lists exactly the same deltas.
    let by_arrival: Vec<_> = store.scan_arrival(None).collect::<Result<_, _>>().unwrap();
    assert!(by_arrival.len() >= acked.len());
    assert_eq!(
        by_arrival
            .iter()
            .map(|s| s.arrival.get())
            .collect::<Vec<_>>(),
        (1..=by_arrival.len() as u64).collect::<Vec<_>>()
    );
    let seqs: Vec<u64> = store
        .scan_origin(host, Seq::FIRST, Seq::new(u64::MAX))
        .map(|r| r.unwrap().0.get())
        .collect();
    assert_eq!(seqs, (1..=by_arrival.len() as u64).collect::<Vec<_>>());
    let arrival_ids: BTreeSet<_> = by_arrival.iter().map(|s| s.delta.id()).collect();
    let author_ids: BTreeSet<_> = store
        .scan_author(key(1).author())
        .map(|s| s.unwrap().delta.id())
        .collect();
    assert_eq!(arrival_ids, author_ids);
    for stored in &by_arrival {
        for (entity, context) in stored.delta.target_entities() {
            assert!(store
                .scan_entity_ids(entity.as_str(), context)
                .any(|e| e.unwrap() == stored.delta.id()));
        }
    }
    // And the journal carries on where it stopped.
    let next = set(&key(1), u64::MAX / 2, "after", "p", 1);
    let outcome = store.put_local_batch(vec![next], &key(9)).unwrap();
    assert_eq!(outcome[0].arrival().get(), by_arrival.len() as u64 + 1);
}

#[test]
fn acknowledged_writes_survive_sigkill_with_buffered_durability() {
    crash_and_check("buffered", 2_000);
}

#[test]
fn acknowledged_writes_survive_sigkill_with_fsync_durability() {
    crash_and_check("fsync", 300);
}
