//! The storing thread: deltas from peers verified and stored in arrival order, and
//! fetched deltas stored for the caller that asked.

use hypha_delta_store::{StampedDelta, Store, VerifiedBatch};
use hypha_primitives::{Filter, HostId};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Inbound;

/// Stores deltas fetched on request, whatever slice the node replicates; returns those
/// stored (a forged one is left out).
pub(super) fn store_fetched(store: &Store, found: Vec<StampedDelta>) -> Vec<StampedDelta> {
    if store.put_batch(found.clone()).is_ok() {
        return found;
    }
    found
        .into_iter()
        .filter(|d| store.put_batch(vec![d.clone()]).is_ok())
        .collect()
}

/// Messages from peers waiting to be verified and stored. Relayed deltas come one per
/// message, so this must hold several coalesced writes' worth, or live traffic is dropped
/// and left to catch-up (measured: 64 capped replication at 7k deltas/s).
pub(super) const STORE_QUEUE: usize = 16_384;

/// The storing thread: it verifies deltas from peers, a coalesced batch at a time in the
/// order they came, and hands each verified batch to a writing thread, so the next batch
/// is verified while the previous one is written.
pub(super) fn run_storer(
    store: Store,
    mut queue: mpsc::Receiver<(HostId, Vec<StampedDelta>)>,
    inbound: mpsc::Sender<Inbound>,
    slice: Option<Filter>,
    span: tracing::Span,
) -> JoinHandle<()> {
    // A partial replica keeps only its slice of what peers send.
    let in_slice = move |d: &StampedDelta| {
        slice
            .as_ref()
            .is_none_or(|f| f.matches(&d.delta.filter_document(&d.stamps)))
    };
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        // One batch waits while another is written: verification runs at most one ahead.
        let (to_writer, verified) = std::sync::mpsc::sync_channel::<VerifiedBatch>(1);
        let writer = {
            let (store, span) = (store.clone(), span.clone());
            std::thread::Builder::new()
                .name("hypha-net-writer".into())
                .spawn(move || {
                    let _entered = span.enter();
                    for batch in verified {
                        if let Err(e) = store.put_verified(batch) {
                            tracing::error!(error = %e, "storing deltas from peers");
                        }
                    }
                })
        };
        let writer = match writer {
            Ok(writer) => writer,
            Err(e) => {
                tracing::error!(error = %e, "starting the writing thread");
                return;
            }
        };
        while let Some(mut first) = queue.blocking_recv() {
            first.1.retain(&in_slice);
            // Whatever else is queued goes in the same write: relayed deltas arrive one per
            // message, and one write per delta would cap ingest far below verification.
            let mut batches = vec![first];
            let mut total = batches[0].1.len();
            while total < STORE_COALESCE {
                match queue.try_recv() {
                    Ok(mut batch) => {
                        batch.1.retain(&in_slice);
                        total += batch.1.len();
                        batches.push(batch);
                    }
                    Err(_) => break,
                }
            }
            let all: Vec<StampedDelta> = batches
                .iter()
                .flat_map(|(_, deltas)| deltas.iter().cloned())
                .collect();
            match store.verify_batch(all) {
                Ok(batch) => {
                    if to_writer.send(batch).is_err() {
                        break;
                    }
                }
                // Some delta is invalid: one by one, to store the rest and blame the sender.
                Err(_) => {
                    for (from, deltas) in batches {
                        store_from_peer(&store, from, deltas, &inbound);
                    }
                }
            }
        }
        drop(to_writer);
        let _ = writer.join();
    })
}

/// Most deltas stored in one write by the storing thread.
const STORE_COALESCE: usize = 4096;

/// Stores deltas from a peer: all at once when all are valid, else one by one, counting
/// each invalid one against the peer. New deltas reach the state machine through the feed.
pub(super) fn store_from_peer(
    store: &Store,
    from: HostId,
    deltas: Vec<StampedDelta>,
    inbound: &mpsc::Sender<Inbound>,
) {
    if store.put_batch(deltas.clone()).is_ok() {
        return;
    }
    for delta in deltas {
        if let Err(e) = store.put_batch(vec![delta]) {
            if matches!(e, hypha_delta_store::Error::Invalid { .. }) {
                let _ = inbound.blocking_send(Inbound::Invalid {
                    from,
                    what: e.to_string(),
                });
            } else {
                tracing::error!(error = %e, "storing a delta from a peer");
            }
        }
    }
}
